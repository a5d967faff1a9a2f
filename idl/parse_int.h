/* SPDX-License-Identifier: MIT */
/* What the lexer, the lemon grammar, its actions (tree.c), the parse driver and the checks
 * share; not part of the API. */
#ifndef SVC_PARSE_INT_H
#define SVC_PARSE_INT_H

#include "svc.h"

/* A token as the lexer hands it to the grammar: the /// lines above it come along. */
typedef struct svc_ltok {
    svc_tok t;
    const char *doc;
} svc_ltok;

/* A type and the doc of its first token, which documents the field, parameter or method
 * that the type begins. */
typedef struct svc_ltype {
    svc_type *t;
    const char *doc;
} svc_ltype;

typedef struct svc_annots {
    svc_annot *head, *tail;
    const char *doc;
} svc_annots;

typedef struct svc_lexer {
    const unsigned char *cur, *lim, *line_start;
    int line;
    svc_arena *a;
    svc_diag *d;
    char *doc; /* the pending /// lines, joined by '\n'; malloc'd, reused */
    size_t doc_len, doc_cap;
    bool has_doc;
    int end_line, end_col; /* just past the last token: where "end of input" is reported */
    int errors0;           /* d->errors at the start, to count this input's errors */
    bool gave_up;          /* too many lexical errors: the rest is not worth reading */
} svc_lexer;

void svc_lexer_init(svc_lexer *lx, svc_arena *a, svc_diag *d, const char *src, size_t len);
void svc_lexer_fini(svc_lexer *lx);
/* The next token's lemon code, 0 at the end of the input. */
int svc_lex(svc_lexer *lx, svc_ltok *tok);

/* The parse in progress, lemon's extra argument. Members are appended to the service,
 * struct, enum or method being built, so the grammar needs no list-valued symbols. */
typedef struct svc_pstate {
    svc_arena *a;
    svc_diag *d;
    svc_file *file;
    svc_service *svc;    /* the service being built */
    svc_decl *decl;      /* the struct or enum being built */
    svc_method *meth;    /* the method whose parameters are being read */
    svc_ltok cur;        /* the token being fed, for errors lemon reports without one */
    svc_ltok prev;       /* the token fed before it (line 0: none) */
    bool failed;         /* OOM, too deep, too many errors, or no way to recover: stop */
    int errors0;         /* d->errors before this parse */
    int syntax_errors;   /* reported so far */
    bool lex_error_near; /* the lexer complained just before or while reading cur */
    int lex_error_line;  /* the line of its latest complaint, 0 if none */
    svc_decl *decl_tail;
    svc_method *meth_tail;
    svc_method *queue_tail;
    svc_method *map_tail;
    svc_option *opt_tail;
    svc_field *field_tail;
    svc_enumval *val_tail;
} svc_pstate;

/* Grammar actions, in tree.c. */
/* semi: a ';' would have been taken instead of tok (said after the token before it). */
void svc_p_syntax_error(svc_pstate *ps, int major, const svc_ltok *tok, bool semi);
void svc_p_overflow(svc_pstate *ps);
void svc_p_parse_failed(svc_pstate *ps);
void svc_p_error(svc_pstate *ps, svc_tok at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void svc_p_service(svc_pstate *ps, svc_ltok kw, svc_ltok name);
void svc_p_option(svc_pstate *ps, svc_ltok name, svc_ltok value, bool is_string);
void svc_p_struct(svc_pstate *ps, svc_ltok kw, svc_ltok name);
void svc_p_enum(svc_pstate *ps, svc_ltok kw, svc_ltok name);
void svc_p_field(svc_pstate *ps, svc_ltype type, svc_ltok name);
void svc_p_enumval(svc_pstate *ps, svc_ltok name, const svc_ltok *value);
void svc_p_method(svc_pstate *ps, const svc_annots *annots, svc_ltype result, svc_ltok name);
void svc_p_queue(svc_pstate *ps, const svc_annots *annots, svc_ltype type, svc_ltok name);
void svc_p_param(svc_pstate *ps, svc_ltype type, svc_ltok name);
svc_annots svc_p_annot(svc_pstate *ps, svc_annots list, svc_ltok at);
svc_ltype svc_p_type_name(svc_pstate *ps, svc_ltok name);
svc_ltype svc_p_type_args(svc_pstate *ps, svc_ltok name, svc_ltype a, const svc_ltype *b);
svc_ltype svc_p_type_opt(svc_pstate *ps, svc_ltype elem, svc_ltok q);

/* lemon's parser, with %name svc_parser. */
void *svc_parserAlloc(void *(*alloc)(size_t));
void svc_parserFree(void *p, void (*dealloc)(void *));
void svc_parser(void *p, int major, svc_ltok minor, svc_pstate *ps);

/* Literals, in literal.c. */
/* An integer literal: decimal or 0x hex, with an optional '-'. 0, or -1 if malformed, or
 * -2 if it does not fit in 64 bits. */
int svc_number(const char *p, int n, int64_t *out);
/* The contents of a string literal token (quotes included, or the opening one only when
 * unterminated), unescaped. */
char *svc_unquote(svc_arena *a, const char *p, int n);
/* Text fit to quote in a message: non-printable bytes as \xNN. */
const char *svc_printable(svc_arena *a, const char *p, int n);

#endif
