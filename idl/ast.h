/* SPDX-License-Identifier: MIT */
/* The .svc syntax tree. Nodes live in one svc_arena and tokens point into the
 * source text, so the whole tree is freed at once and nothing is copied. */
#ifndef SVC_AST_H
#define SVC_AST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A token: a slice of the source with its 1-based position. */
typedef struct svc_tok {
    const char *p;
    int n, line, col;
} svc_tok;

typedef enum svc_type_kind {
    SVC_T_VOID,
    SVC_T_BOOL,
    SVC_T_I8,
    SVC_T_I16,
    SVC_T_I32,
    SVC_T_I64,
    SVC_T_U8,
    SVC_T_U16,
    SVC_T_U32,
    SVC_T_U64,
    SVC_T_F32,
    SVC_T_F64,
    SVC_T_STRING,
    SVC_T_BYTES,
    SVC_T_LIST,     /* elem */
    SVC_T_MAP,      /* key, elem (the value type) */
    SVC_T_OPTIONAL, /* elem; never itself optional */
    SVC_T_NAMED,    /* a struct or enum name; svc_check sets decl */
    SVC_T_ANY,      /* a dynamic value: null, bool, number, string, bytes, list, map */
    SVC_T_STREAM,   /* elem, one after another: only a method's result or its one parameter */
} svc_type_kind;

typedef struct svc_decl svc_decl;

typedef struct svc_type {
    svc_type_kind kind;
    svc_tok tok;           /* where the type was written; for NAMED, the name */
    struct svc_type *elem; /* LIST, OPTIONAL: element; MAP: value */
    struct svc_type *key;  /* MAP: key */
    svc_decl *decl;        /* NAMED, after svc_check: the struct or enum */
    bool queue;            /* LIST written as queue<T>: only a queue declaration may be */
    bool bad_args;         /* list or map with the wrong number of type arguments: said
                              already, so a member written with it needs no second error */
} svc_type;

/* A struct field or a method parameter. */
typedef struct svc_field {
    svc_tok name;
    svc_type *type;
    const char *doc; /* the /// lines above it without the slashes, or NULL */
    struct svc_field *next;
} svc_field;

typedef struct svc_enumval {
    svc_tok name;
    int64_t value; /* explicit, or the previous value + 1 (first: 0) */
    bool explicit_value;
    svc_tok value_tok; /* the number, when explicit */
    const char *doc;
    struct svc_enumval *next;
} svc_enumval;

typedef enum svc_decl_kind { SVC_DECL_STRUCT, SVC_DECL_ENUM } svc_decl_kind;

struct svc_decl {
    svc_decl_kind kind;
    svc_tok name;
    const char *doc;
    svc_field *fields; /* STRUCT, in declaration order */
    int n_fields;
    svc_enumval *values; /* ENUM, in declaration order */
    int n_values;
    struct svc_decl *next;
};

/* @pickle and @marshal are Python's (shmrpc.ServerMethodsBase, docs/python.md): shaped as
 * @raw (bytes in, bytes out) and carried as @raw, named so in the signature so that the
 * dynamic codec refuses them and only Python calls them. */
typedef enum svc_encoding {
    SVC_ENC_MSGPACK,
    SVC_ENC_JSON,
    SVC_ENC_RAW,
    SVC_ENC_PICKLE,
    SVC_ENC_MARSHAL
} svc_encoding;

/* Whether a method of enc takes one bytes parameter and returns bytes, sent as they are. */
static inline bool svc_enc_is_raw(svc_encoding enc)
{
    return enc == SVC_ENC_RAW || enc == SVC_ENC_PICKLE || enc == SVC_ENC_MARSHAL;
}

typedef struct svc_annot {
    svc_tok name; /* without the '@' */
    struct svc_annot *next;
} svc_annot;

typedef struct svc_method {
    svc_tok name;
    const char *doc;
    svc_annot *annots;
    svc_encoding enc; /* set by svc_check from annots; SVC_ENC_MSGPACK when none */
    bool idempotent;  /* @idempotent, set by svc_check: a client may retry it (docs/retries.md) */
    /* Set by svc_check: the result is stream<T> (the server streams), or the one parameter
     * is (the client streams); docs/streams.md. */
    bool server_stream, client_stream;
    svc_type *result; /* SVC_T_VOID for void */
    svc_field *params;
    int n_params;
    struct svc_method *next;
} svc_method;

/* A service option as written ("port 5555;"), kept so that svc_check can report unknown,
 * mistyped and repeated options in source order with the others. */
typedef struct svc_option {
    svc_tok name;   /* the option's name: 'port', 'name', or whatever was written */
    svc_tok value;  /* the number, or the string literal with its quotes */
    bool is_string; /* value is a string literal rather than a number */
    struct svc_option *next;
} svc_option;

typedef struct svc_service {
    svc_tok name;
    const char *doc;
    bool has_port, has_name;
    svc_tok port_tok;     /* the number after 'port' */
    long port;            /* its value (may be out of range until svc_check) */
    svc_tok name_tok;     /* the string literal after 'name', quotes included */
    const char *svc_name; /* its contents, unescaped, NUL-terminated */
    svc_decl *decls;      /* structs and enums in declaration order */
    int n_decls;
    svc_method *methods; /* in declaration order */
    int n_methods;
    svc_option *options; /* every option in source order (added for svc_check) */
    /* Queues, "queue<T> name;", in declaration order: each a method without parameters
     * whose result is the element type T, so that names, annotations and the signature
     * are checked and written as a method's are. */
    svc_method *queues;
    int n_queues;
    /* Maps, "map<K, V> name;", in declaration order: each a method of one parameter, 'key'
     * of type K, whose result is the value type V, for the same reasons. */
    svc_method *maps;
    int n_maps;
} svc_service;

typedef struct svc_file {
    const char *path;
    const char *src; /* NUL-terminated */
    size_t len;
    svc_service *service; /* NULL if the file held none (an error) */
} svc_file;

#endif
