/* SPDX-License-Identifier: MIT */
/* The .svc lexer (re2c): turns source text into lemon's token codes, reports bad input
 * and carries /// doc lines along to the token they document. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "parse_int.h"

void svc_lexer_init(svc_lexer *lx, svc_arena *a, svc_diag *d, const char *src, size_t len)
{
    memset(lx, 0, sizeof *lx);
    lx->cur = lx->line_start = (const unsigned char *)src;
    lx->lim = lx->cur + len; /* src[len] is the NUL sentinel re2c stops on */
    lx->line = 1;
    lx->a = a;
    lx->d = d;
    lx->end_line = 1;
    lx->end_col = 1;
    lx->errors0 = d->errors;
}

void svc_lexer_fini(svc_lexer *lx)
{
    free(lx->doc);
    lx->doc = NULL;
}

static int col_of(const svc_lexer *lx, const unsigned char *p)
{
    return (int)(p - lx->line_start) + 1;
}

/* Past this many errors the input is probably not a .svc file at all (a binary, say), and
 * reporting every byte of it helps no one. */
enum { MAX_LEX_ERRORS = 100 };

static void error_at(svc_lexer *lx, const unsigned char *p, const char *fmt, const char *arg)
{
    svc_error(lx->d, lx->line, col_of(lx, p), fmt, arg);
    if (!lx->gave_up && lx->d->errors - lx->errors0 >= MAX_LEX_ERRORS) {
        svc_error(lx->d, lx->line, col_of(lx, p), "too many errors; giving up");
        lx->gave_up = true;
    }
}

/* Adds one /// line (the text after the slashes) to the pending doc. */
static void add_doc(svc_lexer *lx, const unsigned char *p, const unsigned char *e)
{
    if (p < e && *p == ' ')
        p++;
    if (p < e && e[-1] == '\r')
        e--;
    size_t n = (size_t)(e - p), need = lx->doc_len + n + 2;
    if (need > lx->doc_cap) {
        size_t cap = lx->doc_cap ? lx->doc_cap : 128;
        while (cap < need)
            cap *= 2;
        char *nd = realloc(lx->doc, cap);
        if (!nd)
            return; /* a lost doc line is not worth failing the parse over */
        lx->doc = nd;
        lx->doc_cap = cap;
    }
    if (lx->has_doc)
        lx->doc[lx->doc_len++] = '\n';
    memcpy(lx->doc + lx->doc_len, p, n);
    lx->doc_len += n;
    lx->has_doc = true;
}

/* Skips a block comment whose opening ends at lx->cur; false if it never ends. */
static bool skip_block_comment(svc_lexer *lx)
{
    for (const unsigned char *p = lx->cur; p < lx->lim; p++) {
        if (*p == '\n') {
            lx->line++;
            lx->line_start = p + 1;
        } else if (*p == '*' && p + 1 < lx->lim && p[1] == '/') {
            lx->cur = p + 2;
            return true;
        }
    }
    lx->cur = lx->lim;
    return false;
}

/* Reports escapes other than \" \\ \n \t in a string literal. */
static void check_escapes(svc_lexer *lx, const unsigned char *p, const unsigned char *e)
{
    for (; p < e; p++) {
        if (*p != '\\' || p + 1 >= e)
            continue;
        unsigned char c = p[1];
        if (c != '"' && c != '\\' && c != 'n' && c != 't') {
            const char *s = svc_printable(lx->a, (const char *)p, 2);
            error_at(lx, p, "invalid escape '%s' in string", s ? s : "?");
        }
        p++;
    }
}

static void bad_char(svc_lexer *lx, const unsigned char *p, const unsigned char *e)
{
    const char *s = svc_printable(lx->a, (const char *)p, (int)(e - p));
    error_at(lx, p, "unexpected character '%s'", s ? s : "?");
}

/* Fills tok for the text [s, lx->cur) and hands it the pending doc. */
static int emit(svc_lexer *lx, int code, const unsigned char *s, svc_ltok *tok)
{
    tok->t.p = (const char *)s;
    tok->t.n = (int)(lx->cur - s);
    tok->t.line = lx->line;
    tok->t.col = col_of(lx, s);
    tok->doc = NULL;
    if (lx->has_doc) {
        tok->doc = svc_arena_strndup(lx->a, lx->doc, lx->doc_len);
        lx->has_doc = false;
        lx->doc_len = 0;
    }
    lx->end_line = tok->t.line;
    lx->end_col = tok->t.col + tok->t.n;
    return code;
}

/* An identifier or annotation: one longer than tcp:// carries a name (docs/wire.md) is
 * refused here, before anything is built from it (a 1 MB name once cost 404 MB to
 * compile), whatever it names, since every name is part of a signature. */
static int name_tok(svc_lexer *lx, int code, const unsigned char *s, svc_ltok *tok)
{
    size_t n = (size_t)(lx->cur - s) - (code == SVC_TK_ANNOT);
    if (n > SVC_MAX_NAME) {
        char msg[128];
        snprintf(msg, sizeof msg, "name is %zu bytes long; the limit is %d (the longest tcp:// carries)",
                 n, SVC_MAX_NAME);
        error_at(lx, s, "%s", msg);
    }
    return emit(lx, code, s, tok);
}

/* The end-of-input token sits just past the last token, where something is missing. */
static int end_of_input(svc_lexer *lx, svc_ltok *tok)
{
    tok->t.p = (const char *)lx->lim;
    tok->t.n = 0;
    tok->t.line = lx->end_line;
    tok->t.col = lx->end_col;
    tok->doc = NULL;
    return 0;
}

int svc_lex(svc_lexer *lx, svc_ltok *tok)
{
    const unsigned char *YYMARKER = NULL;
    for (;;) {
        if (lx->gave_up)
            return end_of_input(lx, tok);
        const unsigned char *s = lx->cur;
        /*!re2c
            re2c:define:YYCTYPE = "unsigned char";
            re2c:define:YYCURSOR = "lx->cur";
            re2c:define:YYLIMIT = "lx->lim";
            re2c:yyfill:enable = 0;
            re2c:eof = 0;

            ident = [A-Za-z_][A-Za-z0-9_]*;
            strchar = [^"\\\n] | "\\" [^\n];

            $ { return end_of_input(lx, tok); }
            [ \t\r\f\v]+ { continue; }
            "\n" { lx->line++; lx->line_start = lx->cur; continue; }
            "///" ([^/\n] [^\n]*)? { add_doc(lx, s + 3, lx->cur); continue; }
            "//" [^\n]* { continue; }
            "/*" {
                int line = lx->line, col = col_of(lx, s);
                if (skip_block_comment(lx))
                    continue;
                svc_error(lx->d, line, col, "unterminated comment");
                return end_of_input(lx, tok);
            }

            "service" { return emit(lx, SVC_TK_SERVICE, s, tok); }
            "struct"  { return emit(lx, SVC_TK_STRUCT, s, tok); }
            "enum"    { return emit(lx, SVC_TK_ENUM, s, tok); }
            ident     { return name_tok(lx, SVC_TK_IDENT, s, tok); }
            "@" ident { return name_tok(lx, SVC_TK_ANNOT, s, tok); }
            "-"? [0-9] [A-Za-z0-9_]* { return emit(lx, SVC_TK_NUMBER, s, tok); }

            ["] strchar* ["] {
                check_escapes(lx, s + 1, lx->cur - 1);
                return emit(lx, SVC_TK_STRING, s, tok);
            }
            ["] strchar* "\\"? {
                error_at(lx, s, "%s", "unterminated string");
                check_escapes(lx, s + 1, lx->cur);
                return emit(lx, SVC_TK_STRING, s, tok);
            }

            "{" { return emit(lx, SVC_TK_LBRACE, s, tok); }
            "}" { return emit(lx, SVC_TK_RBRACE, s, tok); }
            "(" { return emit(lx, SVC_TK_LPAREN, s, tok); }
            ")" { return emit(lx, SVC_TK_RPAREN, s, tok); }
            "<" { return emit(lx, SVC_TK_LT, s, tok); }
            ">" { return emit(lx, SVC_TK_GT, s, tok); }
            "," { return emit(lx, SVC_TK_COMMA, s, tok); }
            ";" { return emit(lx, SVC_TK_SEMI, s, tok); }
            "?" { return emit(lx, SVC_TK_QUESTION, s, tok); }
            "=" { return emit(lx, SVC_TK_EQ, s, tok); }

            [\x80-\xff] [\x80-\xbf]* { bad_char(lx, s, lx->cur); continue; }
            * { bad_char(lx, s, lx->cur); continue; }
        */
    }
}
