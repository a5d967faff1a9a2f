/* SPDX-License-Identifier: MIT */
/* The generator's model of a checked .svc file: every distinct type with its C names, and
 * the pieces that render the four files: the header (header.c), the method table
 * (descriptor.c), the codec glue (codec.c), the client stubs and the server glue. */
#ifndef SHMRPCGEN_GEN_H
#define SHMRPCGEN_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ast.h"
#include "emit.h"
#include "sbuf.h"
#include "svc.h"

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

/* The C names (docs/svc-language.md, "C names"): the user's names become echo_<method>,
 * echo_<Type> and echo_<Type>_<value>; the generator's own public names are containers,
 * echo_list_<Tag> (lower case, then an upper-case tag, which neither a method nor a type
 * can spell), and everything else it declares begins with the service's name as written
 * and capitalized, Echo_ (the handlers, the codec glue, the tables), which no name made
 * from the user's can begin with. None holds "__". */
typedef struct gtype {
    gkind kind;
    svc_type_kind scalar;    /* GK_SCALAR: which */
    const char *canon;       /* the type as the .svc spells it: "list<Point>" */
    const char *tag;         /* unique within the service: "Point", "I64", "list_Point" */
    const char *ctype;       /* the C type of a value: "echo_list_Point", "const echo_Point *" */
    const char *display;     /* GK_STRUCT, GK_ENUM: its name in messages ("Point", "add") */
    const svc_decl *decl;    /* GK_STRUCT, GK_ENUM: the declaration (NULL for arguments) */
    const svc_field *fields; /* GK_STRUCT: fields, or a method's parameters */
    int n_fields;
    bool is_args;       /* GK_STRUCT: a method's arguments, private to the server */
    struct gtype *elem; /* GK_LIST, GK_OPT: element; GK_MAP: value */
    struct gtype *key;  /* GK_MAP */
    unsigned need;      /* NEED_* bits of the file being generated */
    size_t mp_min;      /* GK_STRUCT: gen_mp_min_size, once min_state is 2 */
    int min_state;      /* 0: not computed, 1: being computed, 2: done */
    bool defined;       /* GK_STRUCT: its definition is written (gen_header) */
    struct gtype *next; /* registry order: elements before their containers */
} gtype;

typedef struct gen {
    svc_arena *a;
    const svc_file *file;
    const svc_service *svc;
    const char *src_base; /* "echo.svc" */
    const char *stem;     /* "echo": names the output files */
    const char *name;     /* the service's name as written: "Echo" */
    const char *p;        /* the prefix of the user's names: "echo" */
    const char *P;        /* the same upper case, of the macros: "ECHO" */
    const char *own;      /* the prefix of the generator's own names: "Echo" */
    gtype *types, *last_type;
    svc_ntab by_canon;         /* every type but the arguments, by canon */
    svc_ntab by_tag;           /* every tag taken, by tag */
    const svc_method **sorted; /* methods sorted by name: index = method id */
    int n_methods;
} gen;

/* An arena-printed string, never NULL (gen_must); needs a `gen *g` in scope. */
#define S(...) ((const char *)gen_must(svc_arena_printf(g->a, __VA_ARGS__)))

/* types.c */
void gen_init(gen *g, svc_arena *a, const svc_file *f);
gtype *gen_type(gen *g, const svc_type *t);
gtype *gen_args_type(gen *g, const svc_method *m);
const char *gen_method_cname(gen *g, const svc_method *m); /* "getX" -> "get_x" */
const char *gen_method_id(gen *g, const svc_method *m);    /* "ECHO_METHOD_GET_X" */
const char *gen_int_min(svc_type_kind k);
const char *gen_int_max(svc_type_kind k);
bool gen_is_signed(svc_type_kind k);
bool gen_is_unsigned(svc_type_kind k);
/* "T name", without a space after a pointer's star. */
const char *gen_decl(gen *g, const char *ctype, const char *name);
/* "T *name", "const T *name" (konst), with the const in its place for pointer types. */
const char *gen_ptr_decl(gen *g, const char *ctype, const char *name, bool konst);
/* The text of a token, NUL-terminated. */
const char *gen_tokstr(gen *g, svc_tok t);
/* A C comment holding doc, at the emitter's indentation; nothing when doc is NULL. */
void gen_doc(gen *g, emitter *e, const char *doc);
/* The comment every file begins with: its name, the generator and the source, and what
 * it holds (a format with one %s, the service's name), or nothing more when what is NULL. */
void gen_banner(gen *g, emitter *e, const char *suffix, const char *what);
/* A queue's or map's head in NAME.h: its doc, macro (the shared-memory name, the service's
 * name and its own) and the extern of its type's signature, type. */
void gen_shared_head(gen *g, emitter *e, const svc_method *m, const char *macro, const char *type);
/* A C string literal with the quotes. */
const char *gen_cstr(gen *g, const char *s);
/* ISO C promises string literals of 4095 characters only (-Woverlength-strings). */
enum { GEN_MAX_LITERAL = 4095 };
/* Defines decl ("static const char name[]") as text: a string literal when one may hold it,
 * else a char array of its bytes and the NUL. */
void gen_string_def(gen *g, emitter *e, const char *decl, const char *text);
/* The C constant of an enum value: echo_Color_red. */
const char *gen_enum_const(gen *g, const gtype *t, const svc_enumval *v);
/* A method's parameters in a prototype: ", int64_t a, const echo_Point *p"; "" for a client
 * stream's, whose items are sent (NAME_send) and read (NAME_read) one by one. */
const char *gen_params_decl(gen *g, const svc_method *m);
/* The result parameter in a prototype: ", int64_t *out_", or "" for void and for a stream,
 * whose handler writes its items (NAME_write) and whose client receives them (NAME_recv). */
const char *gen_out_decl(gen *g, const svc_method *m);
/* What a method answers with: its result type, or its stream's item type. */
static inline const svc_type *gen_answer(const svc_method *m)
{
    return m->server_stream ? m->result->elem : m->result;
}
/* What a client stream's items are (its one parameter is stream<T>: T), or NULL. */
static inline const svc_type *gen_item_in(const svc_method *m)
{
    return m->client_stream ? m->params->type->elem : NULL;
}
/* A value of type t as a parameter named name: structs by const pointer, the rest by
 * value ("const echo_Point *p", "int64_t a"). */
const char *gen_value_decl(gen *g, const gtype *t, const char *name);

/* A part of the output, each written by its own file: what it makes of the service, into e. */
typedef void gen_part(gen *g, emitter *e);

/* header.c: NAME.h */
gen_part gen_header;

/* codec.c: the codec functions of the types marked needed, and the snippets that stubs
 * and invokers inline for scalars. cx names the variables in scope. */
typedef struct cx {
    const char *pk; /* msgpack_packer * */
    const char *r;  /* shmrpc_mp_reader * or shmrpc_json_reader * */
    const char *a;  /* shmrpc_arena * */
    const char *rc; /* int */
} cx;
/* Marks what every method's encoding needs of its arguments and result. */
void gen_mark_needs(gen *g);
/* Prototypes and definitions of the functions marked needed: of the shared types, or
 * (args) of the methods' arguments. */
void gen_codec_prototypes(gen *g, emitter *e, bool args);
void gen_codec_functions(gen *g, emitter *e, bool args);
/* The name of t's codec function op: "Echo_Point_mp_write". */
const char *gen_codec_fn(gen *g, const gtype *t, const char *op);
void gen_mp_write(gen *g, emitter *e, const cx *c, const gtype *t, const char *v);
void gen_mp_read(gen *g, emitter *e, const cx *c, const gtype *t, const char *v, const char *fail);
/* Decodes bytes (a shmrpc_bytes in scope) as a value of t into v, or as a nil when t is
 * NULL, with a reader r_ and rc_; fail returns the failure, else `return ok;`. */
void gen_mp_decode(gen *g, emitter *e, const cx *c, const char *bytes, const gtype *t,
                   const char *v, const char *fail, const char *ok);
/* A stream's function proto that takes its next item by recv ("shmrpc_stream_recv(stream_",
 * completed with the item's address) and decodes it (msgpack: as t into *item_, within
 * arena; fail returns the failure) or gives it as it is (@raw): 1, 0 at the end, or the
 * status. */
void gen_item_reader(gen *g, emitter *e, const char *proto, const char *recv, const svc_method *m,
                     const gtype *t, const char *arena, const char *fail);
const char *gen_json_write_expr(gen *g, const gtype *t, const char *v);
void gen_json_read(gen *g, emitter *e, const cx *c, const gtype *t, const char *j, const char *v,
                   const char *fail);

/* descriptor.c: NAME.c, the method table and the shared codec */
uint64_t gen_service_fingerprint(gen *g);
gen_part gen_descriptor;

/* shmrpcgen --check-compat OLD NEW (compat.c): prints both ways' verdicts; 0 when each
 * build's clients can call the other's server, 1 when the old file's clients cannot call a
 * server of the new one, 2 when only the new file's clients cannot call an old server
 * (deploy servers first), 3 when a file does not check out. */
int gen_check_compat(const char *old_path, const char *new_path);

/* queue.c and map.c: the typed queues' and maps' declarations (NAME.h) and functions
 * (NAME.c) */
gen_part gen_queue_decls, gen_queue_functions, gen_map_decls, gen_map_functions;

/* client.c, server.c: NAME_client.c and NAME_server.c */
gen_part gen_client, gen_server;

#endif
