/* SPDX-License-Identifier: MIT */
/* The dynamic codec's parser of canonical signatures and of the descriptions of a method
 * table's types (shmrpc/dynamic.h; the text idl/signature.c writes, docs/dynamic.md), and
 * what its halves share. The checks of a whole table of types are in dynamic_types.c, the
 * conversions in dynamic_json.c, the copy of a table in dynamic_info.c, the handle that
 * connects in api/dyn_client.c. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/dyn.h"

const char *const shmrpc__dyn_scalar_names[SHMRPC_DYN_BYTES + 1] = {
    [SHMRPC_DYN_VOID] = "void",     [SHMRPC_DYN_BOOL] = "bool",   [SHMRPC_DYN_I8] = "i8",
    [SHMRPC_DYN_I16] = "i16",       [SHMRPC_DYN_I32] = "i32",     [SHMRPC_DYN_I64] = "i64",
    [SHMRPC_DYN_U8] = "u8",         [SHMRPC_DYN_U16] = "u16",     [SHMRPC_DYN_U32] = "u32",
    [SHMRPC_DYN_U64] = "u64",       [SHMRPC_DYN_F32] = "f32",     [SHMRPC_DYN_F64] = "f64",
    [SHMRPC_DYN_STRING] = "string", [SHMRPC_DYN_BYTES] = "bytes",
};

int64_t shmrpc__dyn_int_min(shmrpc_dyn_kind k)
{
    switch (k) {
    case SHMRPC_DYN_I8:
        return INT8_MIN;
    case SHMRPC_DYN_I16:
        return INT16_MIN;
    case SHMRPC_DYN_I32:
        return INT32_MIN;
    case SHMRPC_DYN_I64:
        return INT64_MIN;
    default:
        return 0;
    }
}

uint64_t shmrpc__dyn_int_max(shmrpc_dyn_kind k)
{
    switch (k) {
    case SHMRPC_DYN_I8:
        return INT8_MAX;
    case SHMRPC_DYN_I16:
        return INT16_MAX;
    case SHMRPC_DYN_I32:
        return INT32_MAX;
    case SHMRPC_DYN_I64:
        return INT64_MAX;
    case SHMRPC_DYN_U8:
        return UINT8_MAX;
    case SHMRPC_DYN_U16:
        return UINT16_MAX;
    case SHMRPC_DYN_U32:
        return UINT32_MAX;
    default:
        return UINT64_MAX;
    }
}

int shmrpc__dyn_note(char *err, size_t cap, bool *failed, const char *where, const char *fmt,
                     va_list ap)
{
    if (*failed) return -1;
    *failed = true;
    /* Written in place, cut at cap. */
    int n = snprintf(err, cap, "%s: ", where);
    if (n >= 0 && (size_t)n < cap) vsnprintf(err + n, cap - (size_t)n, fmt, ap);
    return -1;
}

/* --- the signature parser --------------------------------------------------------------
 * sig   = NAME "(" [ "stream<" type "> " NAME | type " " NAME { "," type " " NAME } ]
 *         ")->" ( "stream<" type ">" | type ) " @" ENCODING [ " @idempotent" ]
 * type  = base [ "?" ]
 * base  = SCALAR | "any" | "list<" type ">" | "map<" type "," type ">"
 *       | "struct " NAME [ "{" { type " " NAME ";" } "}" ]
 *       | "enum " NAME [ "{" [ NAME "=" INT { "," NAME "=" INT } ] "}" ]
 * A struct or enum is spelled out the first time a signature names it, by name after,
 * also inside itself (a recursive struct); or, with a table of types, named alone there.
 * A description of the table's is "struct " NAME "{" ... "}" or "enum " NAME "{" ... "}",
 * what it holds named alone. */

/* How deeply types may nest in a signature: the parser recurses once a level. */
#define MAX_TYPE_DEPTH 200

typedef struct named {
    shmrpc_dyn_type *t;
    struct named *next;
} named;

typedef struct parser {
    shmrpc_arena *a;
    const char *p;
    const char *start;
    named *types;
    const shmrpc__types *table; /* the method table's types, or NULL */
    bool describing;            /* a description of the table: nothing spelled out inside */
    unsigned depth;
    char err[256];
    bool failed;
    bool nomem; /* the failure was memory's: SHMRPC_ENOMEM, not SHMRPC_EINVAL */
} parser;

static int perr(parser *ps, const char *fmt, ...) SHMRPC__FMT(2, 3);
static int perr(parser *ps, const char *fmt, ...)
{
    char where[48];
    snprintf(where, sizeof where, "%s, at byte %zu", ps->describing ? "description" : "signature",
             (size_t)(ps->p - ps->start));
    va_list ap;
    va_start(ap, fmt);
    int rc = shmrpc__dyn_note(ps->err, sizeof ps->err, &ps->failed, where, fmt, ap);
    va_end(ap);
    return rc;
}

static int out_of_memory(parser *ps)
{
    if (!ps->failed) ps->nomem = true;
    return perr(ps, "out of memory");
}

static bool lit(parser *ps, const char *s)
{
    size_t n = strlen(s);
    if (strncmp(ps->p, s, n) != 0) return false;
    ps->p += n;
    return true;
}

static int expect(parser *ps, const char *s)
{
    return lit(ps, s) ? 0 : perr(ps, "expected '%s'", s);
}

static const char *ident(parser *ps)
{
    const char *b = ps->p;
    while ((*ps->p >= 'a' && *ps->p <= 'z') || (*ps->p >= 'A' && *ps->p <= 'Z') ||
           (*ps->p >= '0' && *ps->p <= '9' && ps->p > b) || *ps->p == '_')
        ps->p++;
    if (ps->p == b) {
        perr(ps, "expected a name");
        return NULL;
    }
    char *s = shmrpc_arena_strndup(ps->a, b, (size_t)(ps->p - b));
    if (s == NULL) out_of_memory(ps);
    return s;
}

static shmrpc_dyn_type *new_type(parser *ps, shmrpc_dyn_kind k)
{
    shmrpc_dyn_type *t = shmrpc_arena_calloc(ps->a, 1, sizeof *t, _Alignof(shmrpc_dyn_type));
    if (t == NULL) {
        out_of_memory(ps);
        return NULL;
    }
    t->kind = k;
    return t;
}

/* Room for one more of n items of size bytes at *items (cap of them), doubling. */
static int grow(parser *ps, void *items, size_t n, size_t *cap, size_t size, size_t align)
{
    if (n < *cap) return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p = shmrpc_arena_alloc(ps->a, ncap * size, align);
    if (p == NULL) return out_of_memory(ps);
    if (n) memcpy(p, *(void **)items, n * size);
    *(void **)items = p;
    *cap = ncap;
    return 0;
}

static const shmrpc_dyn_type *parse_type(parser *ps);

/* A type that holds a value: anything but void, which only a result may be. */
static const shmrpc_dyn_type *parse_value_type(parser *ps)
{
    const shmrpc_dyn_type *t = parse_type(ps);
    if (t != NULL && t->kind == SHMRPC_DYN_VOID) {
        perr(ps, "only a result can be void");
        return NULL;
    }
    return t;
}

static int parse_struct_body(parser *ps, shmrpc_dyn_type *t)
{
    size_t cap = 0;
    shmrpc_dyn_field *fields = NULL;
    while (!lit(ps, "}")) {
        if (*ps->p == '\0') return perr(ps, "unterminated struct %s", t->name);
        const shmrpc_dyn_type *ft = parse_value_type(ps);
        if (ft == NULL || expect(ps, " ") != 0) return -1;
        const char *fname = ident(ps);
        if (fname == NULL || expect(ps, ";") != 0) return -1;
        if (grow(ps, &fields, t->n, &cap, sizeof *fields, _Alignof(shmrpc_dyn_field)) != 0)
            return -1;
        fields[t->n++] = (shmrpc_dyn_field){fname, ft};
        t->fields = fields;
    }
    return 0;
}

static int parse_enum_body(parser *ps, shmrpc_dyn_type *t)
{
    size_t cap = 0;
    shmrpc_dyn_enumval *values = NULL;
    do {
        const char *vname = ident(ps);
        if (vname == NULL || expect(ps, "=") != 0) return -1;
        char *end;
        errno = 0;
        long long v = strtoll(ps->p, &end, 10);
        if (end == ps->p || errno != 0 || v < INT32_MIN || v > INT32_MAX)
            return perr(ps, "bad value of enum %s", t->name);
        ps->p = end;
        if (grow(ps, &values, t->n, &cap, sizeof *values, _Alignof(shmrpc_dyn_enumval)) != 0)
            return -1;
        values[t->n++] = (shmrpc_dyn_enumval){vname, v};
        t->values = values;
    } while (lit(ps, ","));
    return expect(ps, "}");
}

static const char *kind_word(shmrpc_dyn_kind k)
{
    return k == SHMRPC_DYN_STRUCT ? "a struct" : "an enum";
}

static const shmrpc_dyn_type *parse_named(parser *ps, shmrpc_dyn_kind k)
{
    const char *name = ident(ps);
    if (name == NULL) return NULL;
    shmrpc_dyn_type *t = NULL;
    for (named *n = ps->types; n; n = n->next)
        if (strcmp(n->t->name, name) == 0) t = n->t;
    bool body = *ps->p == '{';
    if (t != NULL) {
        if (t->kind != k || body) {
            perr(ps, "'%s' declared twice", name);
            return NULL;
        }
        return t;
    }
    if (body && ps->describing) {
        perr(ps, "'%s' is spelled out inside a description (name it alone)", name);
        return NULL;
    }
    if (!body) {
        const shmrpc_dyn_type *d = shmrpc__types_find(ps->table, name);
        if (d != NULL && d->kind != k) {
            perr(ps, "'%s' is %s, not %s", name, kind_word(d->kind), kind_word(k));
            return NULL;
        }
        if (d == NULL)
            perr(ps,
                 ps->table && ps->table->n ? "'%s' is not among the table's types"
                                           : "'%s' used before it is spelled out",
                 name);
        return d;
    }
    ps->p++;
    named *n = shmrpc_arena_alloc(ps->a, sizeof *n, _Alignof(named));
    if ((t = new_type(ps, k)) == NULL || n == NULL) {
        out_of_memory(ps);
        return NULL;
    }
    t->name = name;
    *n = (named){t, ps->types};
    ps->types = n; /* before the body: a struct may hold itself through a list or optional */
    int rc = k == SHMRPC_DYN_STRUCT ? parse_struct_body(ps, t) : parse_enum_body(ps, t);
    return rc == 0 ? t : NULL;
}

static const shmrpc_dyn_type *parse_base(parser *ps)
{
    shmrpc_dyn_type *t;
    if (lit(ps, "list<")) {
        if ((t = new_type(ps, SHMRPC_DYN_LIST)) == NULL ||
            (t->elem = parse_value_type(ps)) == NULL || expect(ps, ">") != 0)
            return NULL;
        return t;
    }
    if (lit(ps, "map<")) {
        if ((t = new_type(ps, SHMRPC_DYN_MAP)) == NULL || (t->key = parse_type(ps)) == NULL ||
            expect(ps, ",") != 0 || (t->elem = parse_value_type(ps)) == NULL ||
            expect(ps, ">") != 0)
            return NULL;
        shmrpc_dyn_kind kk = t->key->kind;
        if (kk != SHMRPC_DYN_STRING && kk != SHMRPC_DYN_ENUM && !shmrpc_dyn_is_int(kk)) {
            perr(ps, "a map's key must be a string, an integer or an enum");
            return NULL;
        }
        return t;
    }
    if (lit(ps, "struct ")) return parse_named(ps, SHMRPC_DYN_STRUCT);
    if (lit(ps, "enum ")) return parse_named(ps, SHMRPC_DYN_ENUM);
    const char *b = ps->p;
    const char *name = ident(ps);
    if (name == NULL) return NULL;
    for (int k = 0; k <= SHMRPC_DYN_BYTES; k++)
        if (strcmp(shmrpc__dyn_scalar_names[k], name) == 0) return new_type(ps, (shmrpc_dyn_kind)k);
    if (strcmp(name, "any") == 0) return new_type(ps, SHMRPC_DYN_ANY);
    ps->p = b;
    perr(ps, "unknown type '%s'", name);
    return NULL;
}

static const shmrpc_dyn_type *parse_type(parser *ps)
{
    if (++ps->depth > MAX_TYPE_DEPTH) {
        perr(ps, "types nested too deeply");
        return NULL;
    }
    const shmrpc_dyn_type *t = parse_base(ps);
    if (t != NULL && lit(ps, "?")) {
        shmrpc_dyn_type *o = new_type(ps, SHMRPC_DYN_OPT);
        if (o == NULL) return NULL;
        if (t->kind == SHMRPC_DYN_ANY) {
            perr(ps, "'any' holds null already: no 'any?'");
            return NULL;
        }
        if (t->kind == SHMRPC_DYN_OPT || t->kind == SHMRPC_DYN_VOID) {
            perr(ps, "bad optional");
            return NULL;
        }
        o->elem = t;
        t = o;
    }
    ps->depth--;
    return t;
}

static int parse_sig(parser *ps, shmrpc_dyn_sig *out)
{
    if ((out->method = ident(ps)) == NULL || expect(ps, "(") != 0) return -1;
    size_t cap = 0;
    shmrpc_dyn_field *params = NULL;
    while (!lit(ps, ")")) {
        if (out->n_params > 0 && expect(ps, ",") != 0) return -1;
        if (out->client_stream || (out->n_params > 0 && strncmp(ps->p, "stream<", 7) == 0))
            return perr(ps, "a stream is a method's one parameter");
        out->client_stream = lit(ps, "stream<");
        const shmrpc_dyn_type *t = parse_value_type(ps);
        if (t == NULL || (out->client_stream && expect(ps, ">") != 0) || expect(ps, " ") != 0)
            return -1;
        const char *name = ident(ps);
        if (name == NULL) return -1;
        if (grow(ps, &params, out->n_params, &cap, sizeof *params, _Alignof(shmrpc_dyn_field)) != 0)
            return -1;
        params[out->n_params++] = (shmrpc_dyn_field){name, t};
        out->params = params;
    }
    if (expect(ps, "->") != 0) return -1;
    out->server_stream = lit(ps, "stream<");
    out->result = out->server_stream ? parse_value_type(ps) : parse_type(ps);
    if (out->result == NULL || (out->server_stream && expect(ps, ">") != 0) ||
        expect(ps, " @") != 0)
        return -1;
    if (lit(ps, "msgpack"))
        out->encoding = SHMRPC_ENC_MSGPACK;
    else if (lit(ps, "json"))
        out->encoding = SHMRPC_ENC_JSON;
    else if (lit(ps, "raw"))
        out->encoding = SHMRPC_ENC_RAW;
    else if (lit(ps, "pickle"))
        out->encoding = SHMRPC_ENC_RAW, out->python_only = "pickle";
    else if (lit(ps, "marshal"))
        out->encoding = SHMRPC_ENC_RAW, out->python_only = "marshal";
    else
        return perr(ps, "unknown encoding");
    out->idempotent = lit(ps, " @idempotent");
    if (*ps->p != '\0') return perr(ps, "trailing text");
    if ((out->client_stream || out->server_stream) &&
        (out->idempotent || out->python_only || out->encoding == SHMRPC_ENC_JSON))
        return perr(ps, "a stream is @msgpack or @raw, and never @idempotent");
    /* No parameter at all is a @raw queue's type, "q()->bytes @raw" (docs/queue.md). */
    if (out->encoding == SHMRPC_ENC_RAW &&
        (out->n_params > 1 ||
         (out->n_params == 1 && out->params[0].type->kind != SHMRPC_DYN_BYTES) ||
         out->result->kind != SHMRPC_DYN_BYTES))
        return perr(ps, out->python_only
                            ? "a @pickle or @marshal method takes bytes and returns bytes"
                            : "a @raw method takes bytes and returns bytes");
    return 0;
}

/* --- a table's types by name ------------------------------------------------------------ */

uint32_t shmrpc__types_index(const shmrpc__types *t, const char *name)
{
    uint32_t lo = 0, hi = t->n; /* the name, if there, is in [lo, hi) */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, t->byname[mid]->name);
        if (c == 0) return mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return t->n;
}

const shmrpc_dyn_type *shmrpc__types_find(const shmrpc__types *t, const char *name)
{
    if (t == NULL) return NULL;
    uint32_t i = shmrpc__types_index(t, name);
    return i < t->n ? t->byname[i] : NULL;
}

int shmrpc__dyn_parse_description(shmrpc_arena *a, const char *text, const shmrpc__types *types,
                                  shmrpc_dyn_type *node, char *err, size_t cap, bool *nomem)
{
    parser ps = {.a = a, .p = text, .start = text, .table = types, .describing = true};
    shmrpc_dyn_kind k = lit(&ps, "struct ") ? SHMRPC_DYN_STRUCT
                        : lit(&ps, "enum ")
                            ? SHMRPC_DYN_ENUM
                            : (perr(&ps, "expected 'struct ' or 'enum '"), SHMRPC_DYN_VOID);
    const char *name = ps.failed ? NULL : ident(&ps);
    if (name != NULL && (k != node->kind || strcmp(name, node->name) != 0))
        perr(&ps, "not the description of %s", node->name);
    if (!ps.failed && expect(&ps, "{") == 0) {
        ps.depth = 1; /* a field's type is one level in, as in a signature */
        int rc = k == SHMRPC_DYN_STRUCT ? parse_struct_body(&ps, node) : parse_enum_body(&ps, node);
        if (rc == 0 && *ps.p != '\0') perr(&ps, "trailing text");
    }
    if (!ps.failed) return 0;
    *nomem = ps.nomem;
    snprintf(err, cap, "%s", ps.err);
    return -1;
}

int shmrpc__dyn_parse(shmrpc_arena *a, const char *text, const shmrpc__types *types,
                      const shmrpc_dyn_sig **out, char *err, size_t cap)
{
    *out = NULL;
    parser ps = {.a = a, .p = text, .start = text, .table = types};
    shmrpc_dyn_sig *s = shmrpc_arena_calloc(a, 1, sizeof *s, _Alignof(shmrpc_dyn_sig));
    if (s == NULL) {
        snprintf(err, cap, "out of memory");
        return SHMRPC_ENOMEM;
    }
    if (parse_sig(&ps, s) != 0) {
        snprintf(err, cap, "%s", ps.err);
        return ps.nomem ? SHMRPC_ENOMEM : SHMRPC_EINVAL;
    }
    *out = s;
    return 0;
}

int shmrpc_dyn_sig_parse(shmrpc_dyn *d, const char *text, const shmrpc_dyn_sig **out)
{
    /* On its own: a connection's table is its methods' (shmrpc_dyn_method). */
    char err[256];
    int rc = shmrpc__dyn_parse(d->a, text, NULL, out, err, sizeof err);
    return rc ? shmrpc__err_set(rc, "%s", err) : 0;
}
