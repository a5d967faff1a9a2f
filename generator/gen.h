/* The generator's model of a checked .svc file: every distinct type with its C name,
 * and the pieces (types, codecs, client, server, descriptor) that render it. */
#ifndef SHMRPCGEN_GEN_H
#define SHMRPCGEN_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ast.h"
#include "sbuf.h"
#include "svc.h"
#include "tmpl.h"

typedef enum gkind { GK_SCALAR, GK_STRUCT, GK_ENUM, GK_LIST, GK_MAP, GK_OPT } gkind;

/* What a codec function is needed for; one bit per function. */
enum {
    NEED_MP_WRITE = 1,
    NEED_MP_READ = 2,
    NEED_JSON_WRITE = 4,
    NEED_JSON_READ = 8,
    NEED_ENUM_NAME = 16,      /* an enum's name of a value, for JSON */
    NEED_ENUM_FROM_NAME = 32, /* and the value of a name */
};

typedef struct gtype {
    gkind kind;
    svc_type_kind scalar;    /* GK_SCALAR: which */
    const char *canon;       /* the type as the .svc spells it: "list<Point>" */
    const char *tag;         /* unique within the service: "list_point"; names functions */
    const char *ctype;       /* the C type of a value: "echo_list_point", "const echo_point *" */
    const char *display;     /* GK_STRUCT: name in messages ("Point", or a method's name) */
    const svc_decl *decl;    /* GK_STRUCT, GK_ENUM: the declaration (NULL for arguments) */
    const svc_field *fields; /* GK_STRUCT: fields, or a method's parameters */
    int n_fields;
    bool is_args;       /* GK_STRUCT: a method's arguments, private to the server */
    struct gtype *elem; /* GK_LIST, GK_OPT: element; GK_MAP: value */
    struct gtype *key;  /* GK_MAP */
    unsigned need;      /* NEED_* bits of the file being generated */
    size_t mp_min;      /* GK_STRUCT: gen_mp_min_size, once min_state is 2 */
    int min_state;      /* 0: not computed, 1: being computed, 2: done */
    bool defined;       /* GK_STRUCT: its definition is written (gen_type_defs) */
    struct gtype *next; /* registry order: elements before their containers */
} gtype;

/* A string-keyed hash table of types, in the arena. */
typedef struct gmap {
    const char **keys;
    gtype **vals;
    size_t cap, n;
} gmap;

typedef struct gen {
    svc_arena *a;
    const svc_file *file;
    const svc_service *svc;
    const char *src_base; /* "echo.svc" */
    const char *stem;     /* "echo": names the output files */
    const char *p;        /* the C prefix: "echo" */
    const char *P;        /* the same upper case: "ECHO" */
    gtype *types, *last_type;
    gmap by_canon;             /* every type but the arguments, by canon */
    gmap by_tag;               /* every type, by tag */
    const svc_method **sorted; /* methods sorted by name: index = method id */
    int n_methods;
} gen;

/* An arena-printed string, never NULL (gen_must); needs a `gen *g` in scope. */
#define S(...) ((const char *)gen_must(svc_arena_printf(g->a, __VA_ARGS__)))

/* types.c */
void gen_init(gen *g, svc_arena *a, const svc_file *f);
gtype *gen_type(gen *g, const svc_type *t);
gtype *gen_args_type(gen *g, const svc_method *m);
/* The C type of a parameter (structs by const pointer, the rest by value). */
const char *gen_param_ctype(gen *g, const gtype *t);
/* The expression that passes a decoded value v of type t as a parameter. */
const char *gen_param_arg(gen *g, const gtype *t, const char *v);
const char *gen_method_cname(gen *g, const svc_method *m); /* "add" -> snake */
const char *gen_int_min(svc_type_kind k);
const char *gen_int_max(svc_type_kind k);
bool gen_is_signed(svc_type_kind k);
bool gen_is_unsigned(svc_type_kind k);
/* The header's type definitions, in an order C accepts. */
void gen_type_defs(gen *g, sbuf *o);
/* "T name" for a declaration, without a space after a pointer's star. */
const char *gen_decl(gen *g, const char *ctype, const char *name);
/* The text of a token, NUL-terminated. */
const char *gen_tokstr(gen *g, svc_tok t);
/* A C comment holding doc, indented, or "" when doc is NULL. */
const char *gen_doc(gen *g, const char *doc, const char *indent);
/* A C string literal with the quotes. */
const char *gen_cstr(gen *g, const char *s);
/* The C constant of an enum value: ECHO_COLOR_RED. */
const char *gen_enum_const(gen *g, const gtype *t, const svc_enumval *v);

/* codec.c: static codec functions for the types marked in need, and the snippets that
 * stubs and invokers use. cx names the variables in scope. */
typedef struct cx {
    const char *pk; /* msgpack_packer * */
    const char *r;  /* shmrpc_mp_reader * or shmrpc_json_reader * */
    const char *a;  /* shmrpc_arena * */
    const char *rc; /* int */
} cx;
void gen_clear_needs(gen *g);
void gen_mark(gen *g, gtype *t, unsigned need);
/* Prototypes and definitions of the functions marked needed: of the shared types, or
 * (args) of the methods' arguments. */
void gen_codec_prototypes(gen *g, sbuf *o, bool args);
void gen_codec_functions(gen *g, sbuf *o, bool args);
/* The fewest bytes a msgpack value of t takes as the generated decoders read it: what
 * a list's or map's count is checked against before anything is allocated for it. */
size_t gen_mp_min_size(gen *g, gtype *t);
void gen_mp_write(gen *g, sbuf *o, const char *ind, const cx *c, const gtype *t, const char *v);
void gen_mp_read(gen *g, sbuf *o, const char *ind, const cx *c, const gtype *t, const char *v,
                 const char *fail);
const char *gen_json_write_expr(gen *g, const gtype *t, const char *v);
void gen_json_read(gen *g, sbuf *o, const char *ind, const cx *c, const gtype *t, const char *j,
                   const char *v, const char *fail);

/* descriptor.c */
const char *gen_signature(gen *g, const svc_method *m);
uint64_t gen_fnv1a64(const char *s);
uint64_t gen_service_fingerprint(gen *g);
void gen_descriptor(gen *g, tmpl_dict *d);

/* client.c, server.c: one method's stub or invoker. */
void gen_client_stub(gen *g, const svc_method *m, tmpl_dict *d);
void gen_server_invoke(gen *g, const svc_method *m, tmpl_dict *d);
/* The codec glue: shared functions for NAME.h and NAME.c, the arguments' for the server. */
void gen_codec(gen *g, tmpl_dict *d);

#endif
