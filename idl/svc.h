/* SPDX-License-Identifier: MIT */
/* The .svc front end: an arena for the tree, compiler-style diagnostics, the parser,
 * the semantic checks, and the C naming rules that the checks and the generator share. */
#ifndef SVC_H
#define SVC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ast.h"

/* A bump allocator: every node and string of one parse, freed at once. */
typedef struct svc_arena svc_arena;

svc_arena *svc_arena_new(void);
void svc_arena_free(svc_arena *a);
/* Zeroed, 16-byte aligned; NULL when memory runs out (callers report it). */
void *svc_arena_alloc(svc_arena *a, size_t n);
/* A NUL-terminated copy of p[0..n); p may hold NUL bytes. NULL on OOM. */
char *svc_arena_strndup(svc_arena *a, const char *p, size_t n);
char *svc_arena_printf(svc_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A string-keyed hash table in an arena (open addressing; keys are not copied). Zero
 * initialised is empty. */
typedef struct svc_ntab {
    const char **keys;
    void **vals;
    size_t cap, n;
} svc_ntab;

/* The value under key (NULL when key is NULL or absent). */
void *svc_ntab_get(const svc_ntab *t, const char *key);
/* Adds key -> val (val not NULL) unless key is there: returns what was there, or NULL
 * once added. A NULL key or running out of memory sets *oom and adds nothing. */
void *svc_ntab_put(svc_arena *a, svc_ntab *t, const char *key, void *val, bool *oom);

/* Where errors go and the text they quote. out may be NULL: errors are then only counted. */
typedef struct svc_diag {
    FILE *out;
    const char *path;
    const char *src;
    size_t len;
    int errors;
} svc_diag;

void svc_diag_init(svc_diag *d, FILE *out, const char *path, const char *src, size_t len);
/* Prints "path:line:col: error: msg", the source line, and a caret under col, and counts
 * the error. line 0 means no position: "path: error: msg". */
void svc_error(svc_diag *d, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void svc_verror(svc_diag *d, int line, int col, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* Parses src[0..len) (copied into the arena; it need not be NUL-terminated) and points d
 * at it. Returns the tree, or NULL or a partial tree when there were errors (d->errors>0).
 * After a syntax error the parse resumes at the next ';' or '}' of the body it was in,
 * so each mistake gets its message; lexical errors are all reported. */
svc_file *svc_parse(svc_arena *a, svc_diag *d, const char *path, const char *src, size_t len);
/* The semantic checks; resolves NAMED types (type->decl) and sets method->enc. Reports
 * every error, sorted by position. True iff there were none. */
bool svc_check(svc_arena *a, svc_diag *d, svc_file *f);
/* An encoding as its annotation spells it, without the '@': "msgpack", "pickle". */
const char *svc_encoding_name(svc_encoding enc);
/* Reads path, parses and checks it, errors to errout. NULL if there was any error;
 * *nerrors (when not NULL) gets their number. */
svc_file *svc_load(svc_arena *a, FILE *errout, const char *path, int *nerrors);

/* C naming, shared by the checks and the generator.
 * svc_snake: lower snake case. An '_' goes before an upper-case letter that follows a
 * lower-case letter or a digit, or that starts a word after an acronym (followed by a
 * lower-case letter): "EchoService"->"echo_service", "HTTPServer"->"http_server",
 * "getX"->"get_x", "Point3D"->"point3_d", "echo_raw"->"echo_raw". Never doubles an '_'
 * that is already there. n < 0 means p is NUL-terminated. NULL on OOM. */
const char *svc_snake(svc_arena *a, const char *p, int n);
/* ASCII upper case: "echo_service"->"ECHO_SERVICE". NULL on OOM. */
const char *svc_upper(svc_arena *a, const char *s);

/* The name as written with its first letter upper case: "point"->"Point", the C spelling
 * of a type (echo_Point). n < 0 means p is NUL-terminated. NULL on OOM. */
const char *svc_cap(svc_arena *a, const char *p, int n);

/* Whether p[0..n) is a C keyword (C11 and C23, plus bool, true, false and NULL). */
bool svc_is_c_keyword(const char *p, int n);
/* Whether p[0..n) is a macro that C compilers or the headers generated code includes
 * predefine in lower case or as a plain word (unix, linux, errno, EOF, stdin, assert...),
 * which would replace the name in the generated code. */
bool svc_is_c_macro(const char *p, int n);
/* Whether p[0..n) is a standard C type name that generated code uses (int64_t, size_t...),
 * which a parameter of that name would hide. */
bool svc_is_c_type_name(const char *p, int n);

/* The built-in types, one table for the parser, the checks and the generator. */
typedef struct svc_builtin {
    const char *name; /* as written in a .svc: "i32", "list" */
    svc_type_kind kind;
} svc_builtin;
/* The built-in type named p[0..n) (n < 0: NUL-terminated), or NULL. list and map are
 * among them. */
const svc_builtin *svc_builtin_by_name(const char *p, int n);
/* The name of a built-in kind ("i32", "list"), or NULL for OPTIONAL and NAMED. */
const char *svc_builtin_name(svc_type_kind kind);
/* The built-in types, *n of them. */
const svc_builtin *svc_builtins(size_t *n);

/* The limits that keep the generator's work (and its recursion) bounded. */
enum {
    SVC_MAX_TYPES = 10000,   /* structs and enums in a service */
    SVC_MAX_METHODS = 10000, /* methods in a service */
    SVC_MAX_MEMBERS = 10000, /* fields of a struct, parameters of a method, values of an enum */
};

/* The longest name tcp:// carries (docs/wire.md: service and method names), and so the
 * longest identifier of any kind (a field's or struct's name is part of a signature); the
 * longest signature, and the largest handshake body, which holds the method table. */
enum {
    SVC_MAX_NAME = 255,
    SVC_MAX_SHM_NAME = 64, /* the service's name "..." option, its name in shm:// */
    SVC_MAX_SIGNATURE = 65535,
    SVC_MAX_HELLO = 1 << 20,
};

/* A checked method's canonical signature, "add(i64 a,i64 b)->i64 @msgpack" (an @idempotent
 * one ends "... @msgpack @idempotent")
 * (docs/svc-language.md), and its length in *len when len is not NULL. NULL when it is
 * longer than max bytes (*len = max + 1: the walk stops there, so that a huge one costs
 * no more than max) or memory ran out (*len = 0). */
const char *svc_signature(svc_arena *a, const svc_method *m, size_t max, size_t *len);

/* The same signature as the method table carries it, each struct and enum by name only
 * ("centroid(list<struct Point> points)->struct Point @msgpack"), as svc_signature. */
const char *svc_table_signature(svc_arena *a, const svc_method *m, size_t max, size_t *len);

/* A struct or enum as the method table describes it once, what it holds by name only
 * ("struct Line{struct Point a;struct Point b;}"), as svc_signature. */
const char *svc_type_text(svc_arena *a, const svc_decl *d, size_t max, size_t *len);

/* The structs and enums the service's methods reach (not its queues' or maps'), each once,
 * sorted by name (byte order): the method table's types. *n of them and a NULL, in a;
 * NULL when memory ran out. */
const svc_decl **svc_table_types(svc_arena *a, const svc_service *s, int *n);

/* The service's methods in name order, the method table's order (index = method id):
 * n_methods pointers and a NULL, in a; NULL when memory ran out. */
const svc_method **svc_methods_by_name(svc_arena *a, const svc_service *s);

/* FNV-1a (64 bits) of a text: a method's fingerprint over its signature, a service's over
 * every signature in name order, each followed by a newline (docs/wire.md). */
uint64_t svc_fingerprint(const char *text);

/* The text of a type as it would be written: "map<string, list<i64>>", "Point?". */
const char *svc_type_str(svc_arena *a, const svc_type *t);

#endif
