/* shmrpcctl call: the signature parser, JSON <-> msgpack/JSON/raw conversions checked
 * against it, and the subcommand that connects, learns the method table and calls. */
#include "ctl_call.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include <shmrpc/client.h>
#include <shmrpc/codec.h>
#include <shmrpc/status.h>
#include <shmrpc/tcp.h>

/* --- types ----------------------------------------------------------------------------- */

typedef enum ctl_kind {
    K_VOID,
    K_BOOL,
    K_I8,
    K_I16,
    K_I32,
    K_I64,
    K_U8,
    K_U16,
    K_U32,
    K_U64,
    K_F32,
    K_F64,
    K_STRING,
    K_BYTES,
    K_LIST,
    K_MAP,
    K_OPT,
    K_STRUCT,
    K_ENUM,
} ctl_kind;

typedef struct ctl_enumval {
    const char *name;
    int64_t value;
} ctl_enumval;

struct ctl_type {
    ctl_kind kind;
    const ctl_type *elem; /* list, map (value), optional */
    const ctl_type *key;  /* map */
    const char *name;     /* struct, enum */
    bool defined;         /* struct, enum: its body has been read */
    size_t n;             /* fields or values */
    ctl_param *fields;
    ctl_enumval *values;
};

static const char *const scalar_names[] = {
    [K_VOID] = "void",     [K_BOOL] = "bool",   [K_I8] = "i8",   [K_I16] = "i16",
    [K_I32] = "i32",       [K_I64] = "i64",     [K_U8] = "u8",   [K_U16] = "u16",
    [K_U32] = "u32",       [K_U64] = "u64",     [K_F32] = "f32", [K_F64] = "f64",
    [K_STRING] = "string", [K_BYTES] = "bytes",
};

static bool is_int(ctl_kind k)
{
    return k >= K_I8 && k <= K_U64;
}

static bool is_signed(ctl_kind k)
{
    return k >= K_I8 && k <= K_I64;
}

static int64_t int_min(ctl_kind k)
{
    switch (k) {
    case K_I8:
        return INT8_MIN;
    case K_I16:
        return INT16_MIN;
    case K_I32:
        return INT32_MIN;
    case K_I64:
        return INT64_MIN;
    default:
        return 0;
    }
}

static uint64_t int_max(ctl_kind k)
{
    switch (k) {
    case K_I8:
        return INT8_MAX;
    case K_I16:
        return INT16_MAX;
    case K_I32:
        return INT32_MAX;
    case K_I64:
        return INT64_MAX;
    case K_U8:
        return UINT8_MAX;
    case K_U16:
        return UINT16_MAX;
    case K_U32:
        return UINT32_MAX;
    default:
        return UINT64_MAX;
    }
}

/* How deeply values may nest, in either direction: JSON's bound, checked before jansson
 * parses, and the bound of what a msgpack result may become, since its JSON is read
 * again (by the page's script, by a shell's tools). The conversions recurse once a level
 * and the gateway runs them on civetweb's 100 KiB stacks. */
#define MAX_DEPTH SHMRPC_JSON_MAX_DEPTH

/* --- the signature parser --------------------------------------------------------------
 * sig   = NAME "(" [ type " " NAME { "," type " " NAME } ] ")->" type " @" ENCODING
 * type  = base [ "?" ]
 * base  = SCALAR | "list<" type ">" | "map<" type "," type ">"
 *       | "struct " NAME [ "{" { type " " NAME ";" } "}" ]
 *       | "enum " NAME [ "{" [ NAME "=" INT { "," NAME "=" INT } ] "}" ]
 * A struct or enum is spelled out the first time a signature names it, by name after,
 * also inside itself (a recursive struct). */

typedef struct named {
    ctl_type *t;
    struct named *next;
} named;

typedef struct parser {
    shmrpc_arena *a;
    const char *p;
    const char *start;
    named *types;
    unsigned depth;
    char *err;
    size_t cap;
    bool failed;
} parser;

static int perr(parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(parser *ps, const char *fmt, ...)
{
    if (ps->failed) return -1;
    ps->failed = true;
    char why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->cap, "signature, at byte %zu: %s", (size_t)(ps->p - ps->start), why);
    return -1;
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
    if (s == NULL) perr(ps, "out of memory");
    return s;
}

static ctl_type *new_type(parser *ps, ctl_kind k)
{
    ctl_type *t = shmrpc_arena_calloc(ps->a, 1, sizeof *t, _Alignof(ctl_type));
    if (t == NULL) {
        perr(ps, "out of memory");
        return NULL;
    }
    t->kind = k;
    return t;
}

static const ctl_type *parse_type(parser *ps);

static int parse_struct_body(parser *ps, ctl_type *t)
{
    size_t cap = 0;
    while (!lit(ps, "}")) {
        if (*ps->p == '\0') return perr(ps, "unterminated struct %s", t->name);
        const ctl_type *ft = parse_type(ps);
        if (ft == NULL || expect(ps, " ") != 0) return -1;
        const char *fname = ident(ps);
        if (fname == NULL || expect(ps, ";") != 0) return -1;
        if (t->n == cap) {
            cap = cap ? cap * 2 : 8;
            ctl_param *f = shmrpc_arena_alloc(ps->a, cap * sizeof *f, _Alignof(ctl_param));
            if (f == NULL) return perr(ps, "out of memory");
            if (t->n) memcpy(f, t->fields, t->n * sizeof *f);
            t->fields = f;
        }
        t->fields[t->n++] = (ctl_param){fname, ft};
    }
    return 0;
}

static int parse_enum_body(parser *ps, ctl_type *t)
{
    size_t cap = 0;
    do {
        const char *vname = ident(ps);
        if (vname == NULL || expect(ps, "=") != 0) return -1;
        char *end;
        errno = 0;
        long long v = strtoll(ps->p, &end, 10);
        if (end == ps->p || errno != 0 || v < INT32_MIN || v > INT32_MAX)
            return perr(ps, "bad value of enum %s", t->name);
        ps->p = end;
        if (t->n == cap) {
            cap = cap ? cap * 2 : 8;
            ctl_enumval *e = shmrpc_arena_alloc(ps->a, cap * sizeof *e, _Alignof(ctl_enumval));
            if (e == NULL) return perr(ps, "out of memory");
            if (t->n) memcpy(e, t->values, t->n * sizeof *e);
            t->values = e;
        }
        t->values[t->n++] = (ctl_enumval){vname, v};
    } while (lit(ps, ","));
    return expect(ps, "}");
}

static const ctl_type *parse_named(parser *ps, ctl_kind k)
{
    const char *name = ident(ps);
    if (name == NULL) return NULL;
    ctl_type *t = NULL;
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
    if (!body) {
        perr(ps, "'%s' used before it is spelled out", name);
        return NULL;
    }
    ps->p++;
    named *n = shmrpc_arena_alloc(ps->a, sizeof *n, _Alignof(named));
    if ((t = new_type(ps, k)) == NULL || n == NULL) {
        perr(ps, "out of memory");
        return NULL;
    }
    t->name = name;
    *n = (named){t, ps->types};
    ps->types = n; /* before the body: a struct may hold itself through a list or optional */
    int rc = k == K_STRUCT ? parse_struct_body(ps, t) : parse_enum_body(ps, t);
    t->defined = true;
    return rc == 0 ? t : NULL;
}

static const ctl_type *parse_base(parser *ps)
{
    ctl_type *t;
    if (lit(ps, "list<")) {
        if ((t = new_type(ps, K_LIST)) == NULL || (t->elem = parse_type(ps)) == NULL ||
            expect(ps, ">") != 0)
            return NULL;
        return t;
    }
    if (lit(ps, "map<")) {
        if ((t = new_type(ps, K_MAP)) == NULL || (t->key = parse_type(ps)) == NULL ||
            expect(ps, ",") != 0 || (t->elem = parse_type(ps)) == NULL || expect(ps, ">") != 0)
            return NULL;
        ctl_kind kk = t->key->kind;
        if (kk != K_STRING && kk != K_ENUM && !is_int(kk)) {
            perr(ps, "a map's key must be a string, an integer or an enum");
            return NULL;
        }
        return t;
    }
    if (lit(ps, "struct ")) return parse_named(ps, K_STRUCT);
    if (lit(ps, "enum ")) return parse_named(ps, K_ENUM);
    const char *b = ps->p;
    const char *name = ident(ps);
    if (name == NULL) return NULL;
    for (size_t k = 0; k < sizeof scalar_names / sizeof *scalar_names; k++)
        if (scalar_names[k] && strcmp(scalar_names[k], name) == 0) return new_type(ps, k);
    ps->p = b;
    perr(ps, "unknown type '%s'", name);
    return NULL;
}

static const ctl_type *parse_type(parser *ps)
{
    if (++ps->depth > 200) {
        perr(ps, "types nested too deeply");
        return NULL;
    }
    const ctl_type *t = parse_base(ps);
    if (t != NULL && lit(ps, "?")) {
        ctl_type *o = new_type(ps, K_OPT);
        if (o == NULL) return NULL;
        if (t->kind == K_OPT || t->kind == K_VOID) {
            perr(ps, "bad optional");
            return NULL;
        }
        o->elem = t;
        t = o;
    }
    ps->depth--;
    return t;
}

int ctl_sig_parse(shmrpc_arena *a, const char *text, ctl_sig *out, char *err, size_t cap)
{
    parser ps = {.a = a, .p = text, .start = text, .err = err, .cap = cap};
    memset(out, 0, sizeof *out);
    if ((out->method = ident(&ps)) == NULL || expect(&ps, "(") != 0) return -1;
    size_t n_cap = 0;
    ctl_param *params = NULL;
    while (!lit(&ps, ")")) {
        if (out->n_params > 0 && expect(&ps, ",") != 0) return -1;
        const ctl_type *t = parse_type(&ps);
        if (t == NULL || expect(&ps, " ") != 0) return -1;
        const char *name = ident(&ps);
        if (name == NULL) return -1;
        if (t->kind == K_VOID) return perr(&ps, "a parameter cannot be void");
        if (out->n_params == n_cap) {
            n_cap = n_cap ? n_cap * 2 : 8;
            ctl_param *p = shmrpc_arena_alloc(a, n_cap * sizeof *p, _Alignof(ctl_param));
            if (p == NULL) return perr(&ps, "out of memory");
            if (out->n_params) memcpy(p, params, out->n_params * sizeof *p);
            params = p;
        }
        params[out->n_params++] = (ctl_param){name, t};
    }
    out->params = params;
    if (expect(&ps, "->") != 0 || (out->result = parse_type(&ps)) == NULL || expect(&ps, " @") != 0)
        return -1;
    if (lit(&ps, "msgpack"))
        out->encoding = SHMRPC_ENC_MSGPACK;
    else if (lit(&ps, "json"))
        out->encoding = SHMRPC_ENC_JSON;
    else if (lit(&ps, "raw"))
        out->encoding = SHMRPC_ENC_RAW;
    else
        return perr(&ps, "unknown encoding");
    if (*ps.p != '\0') return perr(&ps, "trailing text");
    if (out->encoding == SHMRPC_ENC_RAW &&
        (out->n_params != 1 || out->params[0].type->kind != K_BYTES ||
         out->result->kind != K_BYTES))
        return perr(&ps, "a @raw method takes bytes and returns bytes");
    return 0;
}

/* --- messages ----------------------------------------------------------------------------
 * Every conversion carries a path to the value it is at ("argument 'points'[1].x") and a
 * depth; a failure writes "PATH: WHY" into err once. */

typedef struct cx {
    char path[200];
    size_t plen;
    unsigned depth;
    char *err;
    size_t cap;
    bool failed;
} cx;

static size_t path_push(cx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(cx *c, const char *fmt, ...)
{
    size_t old = c->plen;
    if (c->plen < sizeof c->path - 1) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(c->path + c->plen, sizeof c->path - c->plen, fmt, ap);
        va_end(ap);
        if (n > 0) c->plen += (size_t)n;
        if (c->plen > sizeof c->path - 1) c->plen = sizeof c->path - 1;
    }
    return old;
}

static void path_pop(cx *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

static int fail(cx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(cx *c, const char *fmt, ...)
{
    if (c->failed) return -1;
    c->failed = true;
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->cap, "%s: %s", c->path, why);
    return -1;
}

/* A type as the signature spells it, by name for structs and enums. */
static void type_text(const ctl_type *t, char *out, size_t cap)
{
    char a[128], b[128];
    switch (t->kind) {
    case K_LIST:
        type_text(t->elem, a, sizeof a);
        snprintf(out, cap, "list<%s>", a);
        return;
    case K_MAP:
        type_text(t->key, a, sizeof a);
        type_text(t->elem, b, sizeof b);
        snprintf(out, cap, "map<%.60s,%.60s>", a, b);
        return;
    case K_OPT:
        type_text(t->elem, a, sizeof a);
        snprintf(out, cap, "%s?", a);
        return;
    case K_STRUCT:
        snprintf(out, cap, "struct %s", t->name);
        return;
    case K_ENUM:
        snprintf(out, cap, "enum %s", t->name);
        return;
    default:
        snprintf(out, cap, "%s", scalar_names[t->kind]);
        return;
    }
}

/* What JSON a type wants: "an integer (i64)". */
static const char *wanted(const ctl_type *t, char *out, size_t cap)
{
    char tt[160];
    type_text(t, tt, sizeof tt);
    const char *what = "a value";
    switch (t->kind) {
    case K_BOOL:
        what = "true or false";
        break;
    case K_F32:
    case K_F64:
        what = "a number";
        break;
    case K_STRING:
        what = "a string";
        break;
    case K_BYTES:
        what = "a base64 string";
        break;
    case K_LIST:
        what = "an array";
        break;
    case K_MAP:
    case K_STRUCT:
        what = "an object";
        break;
    case K_ENUM:
        what = "the name of a value";
        break;
    case K_OPT:
        what = "a value or null";
        break;
    case K_VOID:
        what = "null";
        break;
    default:
        if (is_int(t->kind)) what = "an integer";
        break;
    }
    snprintf(out, cap, "%s (%s)", what, tt);
    return out;
}

/* A JSON value for a message, cut to a readable length. */
static const char *shown(const json_t *v, char *out, size_t cap)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s == NULL) {
        snprintf(out, cap, "?");
        return out;
    }
    if (strlen(s) > 40)
        snprintf(out, cap, "%.37s...", s);
    else
        snprintf(out, cap, "%s", s);
    free(s);
    return out;
}

static int mismatch(cx *c, const ctl_type *t, const json_t *v)
{
    char w[200], g[64];
    return fail(c, "expected %s, got %s", wanted(t, w, sizeof w), shown(v, g, sizeof g));
}

/* --- JSON text out ------------------------------------------------------------------------ */

static void out_str(shmrpc_buf *b, const char *s)
{
    shmrpc_buf_append(b, s, strlen(s));
}

static bool utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0)
            len = 2, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            len = 3, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            len = 4, cp = c & 0x07, min = 0x10000;
        else
            return false;
        if (n - i < len) return false;
        for (size_t j = 1; j < len; j++) {
            if ((p[i + j] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

/* A JSON string of n bytes of valid UTF-8. */
static void out_json_str(shmrpc_buf *b, const char *p, size_t n)
{
    shmrpc_buf_append(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        const char *esc = NULL;
        char u[8];
        switch (ch) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (ch < 0x20 || ch == 0x7f) {
                snprintf(u, sizeof u, "\\u%04x", ch);
                esc = u;
            }
        }
        if (esc == NULL) continue;
        shmrpc_buf_append(b, p + run, i - run);
        out_str(b, esc);
        run = i + 1;
    }
    shmrpc_buf_append(b, p + run, n - run);
    shmrpc_buf_append(b, "\"", 1);
}

/* The shortest text that reads back as the same double (or float), with ".0" on whole
 * numbers so the value stays a real. NaN and infinities have no JSON form. */
static int out_real(cx *c, shmrpc_buf *b, double d, bool single)
{
    if (!isfinite(d)) return fail(c, "%s has no JSON form", isnan(d) ? "NaN" : "an infinity");
    char s[48];
    for (int prec = single ? 6 : 15; prec <= (single ? 9 : 17); prec++) {
        snprintf(s, sizeof s, "%.*g", prec, d);
        if (single ? strtof(s, NULL) == (float)d : strtod(s, NULL) == d) break;
    }
    if (strpbrk(s, ".e") == NULL) strcat(s, ".0");
    out_str(b, s);
    return 0;
}

static void out_i64(shmrpc_buf *b, int64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRId64, v);
    out_str(b, s);
}

static void out_u64(shmrpc_buf *b, uint64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, v);
    out_str(b, s);
}

/* --- base64 (RFC 4648, standard alphabet, padded) --------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void out_base64(shmrpc_buf *b, const uint8_t *p, size_t n)
{
    shmrpc_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        char q[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63], i + 1 < n ? b64[v >> 6 & 63] : '=',
                     i + 2 < n ? b64[v & 63] : '='};
        shmrpc_buf_append(b, q, 4);
    }
    shmrpc_buf_append(b, "\"", 1);
}

static int b64_value(char ch)
{
    const char *at = ch ? strchr(b64, ch) : NULL;
    return at ? (int)(at - b64) : -1;
}

/* Canonical base64 only; the bytes go to out (at least n / 4 * 3 of room). Their count,
 * or -1. */
static ptrdiff_t unbase64(const char *s, size_t n, uint8_t *out)
{
    if (n % 4 != 0) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            if (s[i + j] == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
            } else if (pad || (v[j] = b64_value(s[i + j])) < 0) {
                return -1;
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2) out[o++] = (uint8_t)(w >> 8);
        if (pad < 1) out[o++] = (uint8_t)w;
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff))) return -1; /* not canonical */
    }
    return (ptrdiff_t)o;
}

/* A base64 JSON string decoded into malloc'd memory (*out, *n); -1 with a message. */
static int json_base64(cx *c, const ctl_type *t, const json_t *v, uint8_t **out, size_t *n)
{
    if (!json_is_string(v)) return mismatch(c, t, v);
    size_t len = json_string_length(v);
    uint8_t *p = malloc(len / 4 * 3 + 1);
    if (p == NULL) return fail(c, "out of memory");
    ptrdiff_t got = unbase64(json_string_value(v), len, p);
    if (got < 0) {
        free(p);
        return fail(c, "not valid base64 (RFC 4648, with padding)");
    }
    *out = p;
    *n = (size_t)got;
    return 0;
}

/* --- checking a JSON value ----------------------------------------------------------------- */

/* A JSON integer (or, for u64, a string of decimal digits, since JSON parsers hold
 * integers as int64) in the type's range. */
static int json_int(cx *c, const ctl_type *t, const json_t *v, int64_t *sv, uint64_t *uv)
{
    if (t->kind == K_U64 && json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        unsigned long long u = strtoull(s, &end, 10);
        if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || (s[0] == '0' && s[1]))
            return mismatch(c, t, v);
        *uv = u;
        return 0;
    }
    if (!json_is_integer(v)) return mismatch(c, t, v);
    json_int_t x = json_integer_value(v);
    bool in_range = is_signed(t->kind)
                        ? x >= int_min(t->kind) && (x < 0 || (uint64_t)x <= int_max(t->kind))
                        : x >= 0 && (uint64_t)x <= int_max(t->kind);
    if (!in_range)
        return fail(c, "%lld is out of range for %s", (long long)x, scalar_names[t->kind]);
    *sv = x;
    *uv = (uint64_t)x;
    return 0;
}

static const ctl_enumval *enum_by_name(const ctl_type *t, const char *s)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->values[i].name, s) == 0) return &t->values[i];
    return NULL;
}

static const ctl_enumval *enum_by_value(const ctl_type *t, int64_t v)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->values[i].value == v) return &t->values[i];
    return NULL;
}

static int json_enum(cx *c, const ctl_type *t, const json_t *v, const ctl_enumval **out)
{
    if (!json_is_string(v)) return mismatch(c, t, v);
    if ((*out = enum_by_name(t, json_string_value(v))) != NULL) return 0;
    char names[160] = "";
    for (size_t i = 0; i < t->n && strlen(names) < sizeof names - 40; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                 t->values[i].name);
    char g[64];
    return fail(c, "%s is not a value of enum %s (%s)", shown(v, g, sizeof g), t->name, names);
}

/* A map key from a JSON object's key: the integer in canonical decimal, or the enum value. */
static int json_key(cx *c, const ctl_type *k, const char *key, int64_t *sv, uint64_t *uv)
{
    if (k->kind == K_ENUM) {
        const ctl_enumval *e = enum_by_name(k, key);
        if (e == NULL) return fail(c, "key \"%.40s\" is not a value of enum %s", key, k->name);
        *sv = e->value;
        return 0;
    }
    json_t *num = NULL;
    const char *d = key[0] == '-' ? key + 1 : key;
    bool canonical = d[0] >= '1' && d[0] <= '9';
    if (strcmp(key, "0") == 0) canonical = true;
    for (const char *p = d + 1; canonical && *d && *p; p++)
        canonical = *p >= '0' && *p <= '9';
    if (canonical && k->kind == K_U64 && key[0] != '-') {
        json_t *s = json_string(key);
        int rc = s ? json_int(c, k, s, sv, uv) : fail(c, "out of memory");
        json_decref(s);
        return rc;
    }
    if (canonical) {
        errno = 0;
        long long x = strtoll(key, NULL, 10);
        if (errno == 0) num = json_integer(x);
    }
    if (num == NULL) return fail(c, "key \"%.40s\" is not an integer", key);
    int rc = json_int(c, k, num, sv, uv);
    json_decref(num);
    return rc;
}

/* --- JSON -> msgpack ------------------------------------------------------------------------ */

static int to_mp(cx *c, const ctl_type *t, const json_t *v, msgpack_packer *pk);

static int struct_to(cx *c, const ctl_type *t, const json_t *v, msgpack_packer *pk, shmrpc_buf *jb);

static int to_mp(cx *c, const ctl_type *t, const json_t *v, msgpack_packer *pk)
{
    if (c->depth > MAX_DEPTH) return fail(c, "nested more than %u deep", MAX_DEPTH);
    int64_t sv = 0;
    uint64_t uv = 0;
    switch (t->kind) {
    case K_VOID:
        return fail(c, "void has no value");
    case K_BOOL:
        if (!json_is_boolean(v)) return mismatch(c, t, v);
        return json_is_true(v) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case K_F32:
    case K_F64: {
        if (!json_is_number(v)) return mismatch(c, t, v);
        double d = json_number_value(v);
        if (t->kind == K_F64) return msgpack_pack_double(pk, d);
        if (d > FLT_MAX || d < -FLT_MAX) return fail(c, "%g is out of range for f32", d);
        return msgpack_pack_float(pk, (float)d);
    }
    case K_STRING:
        if (!json_is_string(v)) return mismatch(c, t, v);
        return msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
    case K_BYTES: {
        uint8_t *p;
        size_t n;
        if (json_base64(c, t, v, &p, &n) != 0) return -1;
        msgpack_pack_bin_with_body(pk, p, n);
        free(p);
        return 0;
    }
    case K_OPT:
        return json_is_null(v) ? msgpack_pack_nil(pk) : to_mp(c, t->elem, v, pk);
    case K_ENUM: {
        const ctl_enumval *e;
        if (json_enum(c, t, v, &e) != 0) return -1;
        return msgpack_pack_int64(pk, e->value);
    }
    case K_LIST: {
        if (!json_is_array(v)) return mismatch(c, t, v);
        size_t n = json_array_size(v);
        if (n > UINT32_MAX) return fail(c, "too many elements");
        msgpack_pack_array(pk, n);
        c->depth++;
        for (size_t i = 0; i < n; i++) {
            size_t old = path_push(c, "[%zu]", i);
            if (to_mp(c, t->elem, json_array_get(v, i), pk) != 0) return -1;
            path_pop(c, old);
        }
        c->depth--;
        return 0;
    }
    case K_MAP: {
        if (!json_is_object(v)) return mismatch(c, t, v);
        msgpack_pack_map(pk, json_object_size(v));
        const char *key;
        json_t *val;
        c->depth++;
        json_object_foreach((json_t *)v, key, val)
        {
            size_t old = path_push(c, "[\"%.40s\"]", key);
            if (t->key->kind == K_STRING) {
                msgpack_pack_str_with_body(pk, key, strlen(key));
            } else {
                if (json_key(c, t->key, key, &sv, &uv) != 0) return -1;
                if (t->key->kind == K_U64)
                    msgpack_pack_uint64(pk, uv);
                else
                    msgpack_pack_int64(pk, sv);
            }
            if (to_mp(c, t->elem, val, pk) != 0) return -1;
            path_pop(c, old);
        }
        c->depth--;
        return 0;
    }
    case K_STRUCT:
        return struct_to(c, t, v, pk, NULL);
    default:
        if (json_int(c, t, v, &sv, &uv) != 0) return -1;
        return is_signed(t->kind) ? msgpack_pack_int64(pk, sv) : msgpack_pack_uint64(pk, uv);
    }
}

/* --- JSON -> checked JSON text (@json arguments and results) ------------------------------- */

static int to_json(cx *c, const ctl_type *t, const json_t *v, shmrpc_buf *b)
{
    if (c->depth > MAX_DEPTH) return fail(c, "nested more than %u deep", MAX_DEPTH);
    int64_t sv = 0;
    uint64_t uv = 0;
    switch (t->kind) {
    case K_VOID:
        if (!json_is_null(v)) return mismatch(c, t, v);
        out_str(b, "null");
        return 0;
    case K_BOOL:
        if (!json_is_boolean(v)) return mismatch(c, t, v);
        out_str(b, json_is_true(v) ? "true" : "false");
        return 0;
    case K_F32:
    case K_F64:
        if (!json_is_number(v)) return mismatch(c, t, v);
        if (t->kind == K_F32 && fabs(json_number_value(v)) > FLT_MAX)
            return fail(c, "%g is out of range for f32", json_number_value(v));
        return out_real(c, b, json_number_value(v), t->kind == K_F32);
    case K_STRING:
        if (!json_is_string(v)) return mismatch(c, t, v);
        out_json_str(b, json_string_value(v), json_string_length(v));
        return 0;
    case K_BYTES: {
        uint8_t *p;
        size_t n;
        if (json_base64(c, t, v, &p, &n) != 0) return -1;
        free(p);
        out_json_str(b, json_string_value(v), json_string_length(v));
        return 0;
    }
    case K_OPT:
        if (json_is_null(v)) {
            out_str(b, "null");
            return 0;
        }
        return to_json(c, t->elem, v, b);
    case K_ENUM: {
        const ctl_enumval *e;
        if (json_enum(c, t, v, &e) != 0) return -1;
        out_json_str(b, e->name, strlen(e->name));
        return 0;
    }
    case K_LIST: {
        if (!json_is_array(v)) return mismatch(c, t, v);
        out_str(b, "[");
        c->depth++;
        for (size_t i = 0; i < json_array_size(v); i++) {
            size_t old = path_push(c, "[%zu]", i);
            if (i) out_str(b, ",");
            if (to_json(c, t->elem, json_array_get(v, i), b) != 0) return -1;
            path_pop(c, old);
        }
        c->depth--;
        out_str(b, "]");
        return 0;
    }
    case K_MAP: {
        if (!json_is_object(v)) return mismatch(c, t, v);
        out_str(b, "{");
        const char *key;
        json_t *val;
        bool first = true;
        c->depth++;
        json_object_foreach((json_t *)v, key, val)
        {
            size_t old = path_push(c, "[\"%.40s\"]", key);
            if (t->key->kind != K_STRING && json_key(c, t->key, key, &sv, &uv) != 0) return -1;
            if (t->key->kind == K_U64 && uv > INT64_MAX)
                return fail(c, "key %" PRIu64 " has no JSON form (integers travel as int64)", uv);
            if (!first) out_str(b, ",");
            first = false;
            out_json_str(b, key, strlen(key));
            out_str(b, ":");
            if (to_json(c, t->elem, val, b) != 0) return -1;
            path_pop(c, old);
        }
        c->depth--;
        out_str(b, "}");
        return 0;
    }
    case K_STRUCT:
        return struct_to(c, t, v, NULL, b);
    default:
        if (json_int(c, t, v, &sv, &uv) != 0) return -1;
        if (t->kind == K_U64 && uv > INT64_MAX)
            return fail(
                c, "%" PRIu64 " has no JSON form in a @json method (integers travel as int64)", uv);
        if (is_signed(t->kind))
            out_i64(b, sv);
        else
            out_u64(b, uv);
        return 0;
    }
}

/* A struct from a JSON object by field name, to msgpack (pk) or to JSON text (jb): unknown
 * members are refused, absent optional fields are null. */
static int struct_to(cx *c, const ctl_type *t, const json_t *v, msgpack_packer *pk, shmrpc_buf *jb)
{
    if (!json_is_object(v)) return mismatch(c, t, v);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val)
    {
        size_t i = 0;
        while (i < t->n && strcmp(t->fields[i].name, key) != 0)
            i++;
        if (i == t->n) return fail(c, "struct %s has no field '%.40s'", t->name, key);
    }
    if (pk) msgpack_pack_array(pk, t->n);
    if (jb) out_str(jb, "{");
    c->depth++;
    for (size_t i = 0; i < t->n; i++) {
        const ctl_param *f = &t->fields[i];
        json_t *fv = json_object_get(v, f->name);
        if (fv == NULL && f->type->kind != K_OPT) return fail(c, "missing field '%s'", f->name);
        json_t *null = json_null();
        size_t old = path_push(c, ".%s", f->name);
        if (jb) {
            if (i) out_str(jb, ",");
            out_json_str(jb, f->name, strlen(f->name));
            out_str(jb, ":");
        }
        int rc =
            pk ? to_mp(c, f->type, fv ? fv : null, pk) : to_json(c, f->type, fv ? fv : null, jb);
        if (rc != 0) return -1;
        path_pop(c, old);
    }
    c->depth--;
    if (jb) out_str(jb, "}");
    return 0;
}

/* --- msgpack -> JSON text ------------------------------------------------------------------- */

static int mp_fail(cx *c, const shmrpc_mp_reader *r)
{
    return fail(c, "%s", r->why ? r->why : "invalid");
}

static int from_mp(cx *c, const ctl_type *t, shmrpc_mp_reader *r, shmrpc_buf *b)
{
    if (c->depth > MAX_DEPTH) return fail(c, "nested more than %u deep", MAX_DEPTH);
    switch (t->kind) {
    case K_VOID:
        if (shmrpc_mp_read_nil(r) != 0) return mp_fail(c, r);
        out_str(b, "null");
        return 0;
    case K_BOOL: {
        bool v;
        if (shmrpc_mp_read_bool(r, &v) != 0) return mp_fail(c, r);
        out_str(b, v ? "true" : "false");
        return 0;
    }
    case K_F32: {
        float f;
        if (shmrpc_mp_read_f32(r, &f) != 0) return mp_fail(c, r);
        return out_real(c, b, f, true);
    }
    case K_F64: {
        double d;
        if (shmrpc_mp_read_f64(r, &d) != 0) return mp_fail(c, r);
        return out_real(c, b, d, false);
    }
    case K_STRING: {
        shmrpc_str s;
        if (shmrpc_mp_read_str(r, &s) != 0) return mp_fail(c, r);
        if (!utf8_valid((const uint8_t *)s.ptr, s.len)) return fail(c, "string is not UTF-8");
        out_json_str(b, s.ptr, s.len);
        return 0;
    }
    case K_BYTES: {
        shmrpc_bytes v;
        if (shmrpc_mp_read_bin(r, &v) != 0) return mp_fail(c, r);
        out_base64(b, v.ptr, v.len);
        return 0;
    }
    case K_OPT: {
        int nil = shmrpc_mp_try_nil(r);
        if (nil < 0) return mp_fail(c, r);
        if (nil) {
            out_str(b, "null");
            return 0;
        }
        return from_mp(c, t->elem, r, b);
    }
    case K_ENUM: {
        int64_t v;
        if (shmrpc_mp_read_int(r, INT32_MIN, INT32_MAX, &v) != 0) return mp_fail(c, r);
        const ctl_enumval *e = enum_by_value(t, v);
        if (e == NULL) return fail(c, "%" PRId64 " is not a value of enum %s", v, t->name);
        out_json_str(b, e->name, strlen(e->name));
        return 0;
    }
    case K_LIST: {
        uint32_t n;
        if (shmrpc_mp_read_array(r, &n) != 0) return mp_fail(c, r);
        out_str(b, "[");
        c->depth++;
        for (uint32_t i = 0; i < n; i++) {
            size_t old = path_push(c, "[%" PRIu32 "]", i);
            if (i) out_str(b, ",");
            if (from_mp(c, t->elem, r, b) != 0) return -1;
            path_pop(c, old);
        }
        c->depth--;
        out_str(b, "]");
        return 0;
    }
    case K_MAP: {
        uint32_t n;
        if (shmrpc_mp_read_map(r, &n) != 0) return mp_fail(c, r);
        out_str(b, "{");
        c->depth++;
        for (uint32_t i = 0; i < n; i++) {
            if (i) out_str(b, ",");
            char key[64];
            const ctl_type *k = t->key;
            if (k->kind == K_STRING) {
                shmrpc_str s;
                if (shmrpc_mp_read_str(r, &s) != 0) return mp_fail(c, r);
                if (!utf8_valid((const uint8_t *)s.ptr, s.len))
                    return fail(c, "a key is not UTF-8");
                out_json_str(b, s.ptr, s.len);
                snprintf(key, sizeof key, "\"%.*s\"", s.len > 40 ? 40 : (int)s.len, s.ptr);
            } else if (k->kind == K_ENUM) {
                int64_t v;
                if (shmrpc_mp_read_int(r, INT32_MIN, INT32_MAX, &v) != 0) return mp_fail(c, r);
                const ctl_enumval *e = enum_by_value(k, v);
                if (e == NULL)
                    return fail(c, "key %" PRId64 " is not a value of enum %s", v, k->name);
                out_json_str(b, e->name, strlen(e->name));
                snprintf(key, sizeof key, "\"%.40s\"", e->name);
            } else if (is_signed(k->kind)) {
                int64_t v;
                if (shmrpc_mp_read_int(r, int_min(k->kind), (int64_t)int_max(k->kind), &v) != 0)
                    return mp_fail(c, r);
                snprintf(key, sizeof key, "\"%" PRId64 "\"", v);
                out_str(b, key);
            } else {
                uint64_t v;
                if (shmrpc_mp_read_uint(r, int_max(k->kind), &v) != 0) return mp_fail(c, r);
                snprintf(key, sizeof key, "\"%" PRIu64 "\"", v);
                out_str(b, key);
            }
            out_str(b, ":");
            size_t old = path_push(c, "[%s]", key);
            if (from_mp(c, t->elem, r, b) != 0) return -1;
            path_pop(c, old);
        }
        c->depth--;
        out_str(b, "}");
        return 0;
    }
    case K_STRUCT: {
        uint32_t n;
        if (shmrpc_mp_read_array(r, &n) != 0) return mp_fail(c, r);
        if (n != t->n)
            return fail(c, "struct %s: expected %zu fields, got %" PRIu32, t->name, t->n, n);
        out_str(b, "{");
        c->depth++;
        for (size_t i = 0; i < t->n; i++) {
            const ctl_param *f = &t->fields[i];
            if (i) out_str(b, ",");
            out_json_str(b, f->name, strlen(f->name));
            out_str(b, ":");
            size_t old = path_push(c, ".%s", f->name);
            if (from_mp(c, f->type, r, b) != 0) return -1;
            path_pop(c, old);
        }
        c->depth--;
        out_str(b, "}");
        return 0;
    }
    default:
        if (is_signed(t->kind)) {
            int64_t v;
            if (shmrpc_mp_read_int(r, int_min(t->kind), (int64_t)int_max(t->kind), &v) != 0)
                return mp_fail(c, r);
            out_i64(b, v);
        } else {
            uint64_t v;
            if (shmrpc_mp_read_uint(r, int_max(t->kind), &v) != 0) return mp_fail(c, r);
            out_u64(b, v);
        }
        return 0;
    }
}

/* --- arguments and results ------------------------------------------------------------------ */

/* Parses n bytes of JSON; NULL with a message naming the line and column, or the depth
 * (checked first: jansson recurses once a level). */
static json_t *parse_json(const char *p, size_t n, const char *what, char *err, size_t cap)
{
    if (shmrpc_json_check_depth(p, n, MAX_DEPTH) != 0) {
        snprintf(err, cap, "%s: JSON nested more than %u deep", what, MAX_DEPTH);
        return NULL;
    }
    json_error_t je;
    json_t *v = json_loadb(p, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (v == NULL)
        snprintf(err, cap, "%s: bad JSON at line %d, column %d: %s", what, je.line, je.column,
                 je.text);
    return v;
}

/* The arguments in parameter order: args[i] is a borrowed value or NULL when not given. */
static int order_args(const ctl_sig *s, const json_t *in, const json_t **args, cx *c)
{
    char names[256] = "";
    for (size_t i = 0; i < s->n_params && strlen(names) < sizeof names - 40; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                 s->params[i].name);
    if (json_is_array(in)) {
        size_t n = json_array_size(in);
        if (n > s->n_params)
            return fail(c, "%zu given, but %s takes %zu (%s)", n, s->method, s->n_params, names);
        for (size_t i = 0; i < n; i++)
            args[i] = json_array_get(in, i);
    } else if (json_is_object(in)) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)in, key, val)
        {
            size_t i = 0;
            while (i < s->n_params && strcmp(s->params[i].name, key) != 0)
                i++;
            if (i == s->n_params)
                return fail(c, "%s has no parameter '%.40s' (it takes: %s)", s->method, key,
                            s->n_params ? names : "nothing");
            args[i] = val;
        }
    } else {
        char g[64];
        return fail(c,
                    "expected a JSON array of the arguments in order or an object by name, got %s",
                    shown(in, g, sizeof g));
    }
    for (size_t i = 0; i < s->n_params; i++)
        if (args[i] == NULL && s->params[i].type->kind != K_OPT)
            return fail(c, "missing argument '%s' (%s takes: %s)", s->params[i].name, s->method,
                        names);
    return 0;
}

static int raw_arg(cx *c, const json_t *v, shmrpc_buf *req)
{
    if (json_is_string(v))
        return shmrpc_buf_append(req, json_string_value(v), json_string_length(v));
    const json_t *b64v = json_object_get(v, "base64");
    if (json_is_object(v) && json_object_size(v) == 1 && json_is_string(b64v)) {
        static const ctl_type bytes = {.kind = K_BYTES};
        uint8_t *p;
        size_t n;
        if (json_base64(c, &bytes, b64v, &p, &n) != 0) return -1;
        int rc = shmrpc_buf_append(req, p, n);
        free(p);
        return rc;
    }
    char g[64];
    return fail(c, "expected a string (its UTF-8 bytes) or {\"base64\": \"...\"}, got %s",
                shown(v, g, sizeof g));
}

int ctl_encode_args(const ctl_sig *s, const char *json, size_t n, shmrpc_buf *req, char *err,
                    size_t cap)
{
    cx c = {.err = err, .cap = cap};
    json_t *in = parse_json(json, n, "arguments", err, cap);
    if (in == NULL) return -1;
    const json_t **args = calloc(s->n_params + 1, sizeof *args);
    json_t *null = json_null();
    int rc = args ? 0 : fail(&c, "out of memory");
    snprintf(c.path, sizeof c.path, "arguments");
    c.plen = strlen(c.path);
    if (rc == 0) rc = order_args(s, in, args, &c);
    msgpack_packer pk;
    msgpack_packer_init(&pk, req, shmrpc_buf_msgpack_write);
    if (rc == 0 && s->encoding == SHMRPC_ENC_MSGPACK) msgpack_pack_array(&pk, s->n_params);
    if (rc == 0 && s->encoding == SHMRPC_ENC_JSON) out_str(req, "{");
    for (size_t i = 0; rc == 0 && i < s->n_params; i++) {
        const ctl_param *p = &s->params[i];
        const json_t *v = args[i] ? args[i] : null;
        c.plen = (size_t)snprintf(c.path, sizeof c.path, "argument '%.100s'", p->name);
        if (s->encoding == SHMRPC_ENC_RAW) {
            rc = raw_arg(&c, v, req);
        } else if (s->encoding == SHMRPC_ENC_JSON) {
            if (i) out_str(req, ",");
            out_json_str(req, p->name, strlen(p->name));
            out_str(req, ":");
            rc = to_json(&c, p->type, v, req);
        } else {
            rc = to_mp(&c, p->type, v, &pk);
        }
    }
    if (rc == 0 && s->encoding == SHMRPC_ENC_JSON) out_str(req, "}");
    if (rc == 0 && req->err != 0) rc = fail(&c, "cannot encode: %s", shmrpc_strerror(req->err));
    free(args);
    json_decref(in);
    return rc == 0 ? 0 : -1;
}

int ctl_decode_result(const ctl_sig *s, const void *body, size_t n, shmrpc_buf *out, char *err,
                      size_t cap)
{
    cx c = {.err = err, .cap = cap};
    c.plen = (size_t)snprintf(c.path, sizeof c.path, "result");
    int rc = 0;
    if (s->encoding == SHMRPC_ENC_RAW) {
        if (utf8_valid(body, n)) {
            out_json_str(out, body, n);
        } else {
            out_str(out, "{\"base64\":");
            out_base64(out, body, n);
            out_str(out, "}");
        }
    } else if (s->encoding == SHMRPC_ENC_JSON) {
        json_t *v = parse_json(body, n, "result", err, cap);
        if (v == NULL) return -1;
        rc = to_json(&c, s->result, v, out);
        json_decref(v);
    } else {
        shmrpc_mp_reader r;
        shmrpc_mp_reader_init(&r, body, n);
        rc = from_mp(&c, s->result, &r, out);
        if (rc == 0 && shmrpc_mp_finish(&r) != 0) rc = mp_fail(&c, &r);
    }
    if (rc == 0 && out->err != 0) rc = fail(&c, "%s", shmrpc_strerror(out->err));
    return rc == 0 ? 0 : -1;
}

/* --- the subcommand --------------------------------------------------------------------------- */

#define USAGE                                                                                      \
    "usage: shmrpcctl call [--timeout MS] [--secret-file PATH] ADDRESS METHOD [ARGS-AS-JSON|-]\n"

/* Reads all of stdin for ARGS "-". */
static char *read_stdin(size_t *n)
{
    size_t cap = 4096, len = 0;
    char *p = malloc(cap);
    while (p != NULL) {
        size_t got = fread(p + len, 1, cap - len, stdin);
        len += got;
        if (got == 0) break;
        if (len == cap) {
            char *q = cap < SIZE_MAX / 2 ? realloc(p, cap *= 2) : NULL;
            if (q == NULL) free(p);
            p = q;
        }
    }
    *n = len;
    return p;
}

const shmrpc_service_info *ctl_info_copy(shmrpc_arena *a, const shmrpc_service_info *in)
{
    shmrpc_service_info *out = shmrpc_arena_alloc(a, sizeof *out, _Alignof(shmrpc_service_info));
    shmrpc_method_info *m = shmrpc_arena_calloc(a, in->n_methods ? in->n_methods : 1, sizeof *m,
                                                _Alignof(shmrpc_method_info));
    if (out == NULL || m == NULL) return NULL;
    *out = *in;
    out->name = shmrpc_arena_strndup(a, in->name, strlen(in->name));
    out->svc_name =
        in->svc_name ? shmrpc_arena_strndup(a, in->svc_name, strlen(in->svc_name)) : NULL;
    for (uint32_t i = 0; i < in->n_methods; i++) {
        m[i] = in->methods[i];
        m[i].name = shmrpc_arena_strndup(a, in->methods[i].name, strlen(in->methods[i].name));
        m[i].signature =
            shmrpc_arena_strndup(a, in->methods[i].signature, strlen(in->methods[i].signature));
        if (m[i].name == NULL || m[i].signature == NULL) return NULL;
    }
    out->methods = m;
    return out->name ? out : NULL;
}

static int connect_failed(const char *addr, int rc)
{
    const char *msg = shmrpc_errmsg();
    fprintf(stderr, "shmrpcctl: %s: %s%s%s\n", addr, shmrpc_strerror(rc), *msg ? ": " : "", msg);
    return 1;
}

int ctl_call_main(int argc, char **argv)
{
    shmrpc_client_opts opts;
    shmrpc_client_opts_init(&opts);
    static uint8_t secret[SHMRPC_SECRET_MAX];
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            long long ms = strtoll(argv[++i], &end, 10);
            if (*end != '\0' || end == argv[i] || ms < 1 || ms > INT32_MAX) {
                fprintf(stderr, "shmrpcctl: call: --timeout takes milliseconds, 1 or more\n");
                return 2;
            }
            opts.timeout_ms = ms;
        } else if (strcmp(argv[i], "--secret-file") == 0 && i + 1 < argc) {
            int rc = shmrpc_secret_load(argv[++i], secret, sizeof secret, &opts.tcp.secret_len);
            if (rc != 0) {
                fprintf(stderr, "shmrpcctl: call: %s\n", shmrpc_errmsg());
                return 2;
            }
            opts.tcp.secret = secret;
        } else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else {
            fprintf(stderr, "%s", USAGE);
            return 2;
        }
    }
    if (argc - i < 2 || argc - i > 3) {
        fprintf(stderr, "%s", USAGE);
        return 2;
    }
    const char *addr = argv[i], *method = argv[i + 1];
    const char *args_text = argc - i == 3 ? argv[i + 2] : "[]";
    size_t args_len = strlen(args_text);
    char *stdin_args = NULL;
    if (strcmp(args_text, "-") == 0) {
        if ((stdin_args = read_stdin(&args_len)) == NULL) {
            fprintf(stderr, "shmrpcctl: call: cannot read the arguments from stdin\n");
            return 2;
        }
        args_text = stdin_args;
    }

    static const shmrpc_service_info probe_info = {
        SHMRPC_SERVICE_MAGIC, SHMRPC_DESCRIPTOR_VERSION, "Probe", "probe", 0, 0, 0, NULL};
    shmrpc_client *probe = NULL, *c = NULL;
    shmrpc_arena *a = shmrpc_arena_new(4096);
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    char err[768];
    int status = 1, rc;
    if (a == NULL) {
        fprintf(stderr, "shmrpcctl: out of memory\n");
        goto done;
    }
    if ((rc = shmrpc_client_new(&probe, &probe_info, &opts)) != 0) {
        fprintf(stderr, "shmrpcctl: call: %s\n", shmrpc_strerror(rc));
        status = 2;
        goto done;
    }
    if ((rc = shmrpc_client_connect(probe, addr)) != 0) {
        status = connect_failed(addr, rc);
        if (rc == SHMRPC_EINVAL) status = 2;
        goto done;
    }
    const shmrpc_service_info *info = ctl_info_copy(a, shmrpc_client_server_info(probe));
    shmrpc_client_free(probe);
    probe = NULL;
    if (info == NULL) {
        fprintf(stderr, "shmrpcctl: out of memory\n");
        goto done;
    }
    const shmrpc_method_info *m = NULL;
    for (uint32_t k = 0; k < info->n_methods; k++)
        if (strcmp(info->methods[k].name, method) == 0) m = &info->methods[k];
    if (m == NULL) {
        fprintf(stderr, "shmrpcctl: %s has no method '%s' (it has:", info->name, method);
        for (uint32_t k = 0; k < info->n_methods; k++)
            fprintf(stderr, "%s %s", k ? "," : "", info->methods[k].name);
        fprintf(stderr, "%s)\n", info->n_methods ? "" : " none");
        status = 2;
        goto done;
    }
    ctl_sig sig;
    if (ctl_sig_parse(a, m->signature, &sig, err, sizeof err) != 0) {
        fprintf(stderr, "shmrpcctl: %s: cannot read its %s\n  %s\n", method, err, m->signature);
        goto done;
    }
    if ((rc = shmrpc_client_new(&c, info, &opts)) != 0 ||
        (rc = shmrpc_client_connect(c, addr)) != 0) {
        status = connect_failed(addr, rc);
        goto done;
    }
    shmrpc_buf *req = shmrpc_client_request(c);
    if (ctl_encode_args(&sig, args_text, args_len, req, err, sizeof err) != 0) {
        fprintf(stderr, "shmrpcctl: %s: %s\n", method, err);
        status = 2;
        goto done;
    }
    shmrpc_bytes resp;
    if ((rc = shmrpc_client_call(c, m->id, &resp)) != 0) {
        const char *msg = shmrpc_errmsg();
        fprintf(stderr, "shmrpcctl: %s: %s%s%s\n", method, shmrpc_strerror(rc), *msg ? ": " : "",
                msg);
        goto done;
    }
    if (ctl_decode_result(&sig, resp.ptr, resp.len, &out, err, sizeof err) != 0) {
        fprintf(stderr, "shmrpcctl: %s: %s\n", method, err);
        goto done;
    }
    fwrite(out.data, 1, out.len, stdout);
    fputc('\n', stdout);
    status = fflush(stdout) == 0 ? 0 : 1;
done:
    shmrpc_client_free(probe);
    shmrpc_client_free(c);
    shmrpc_buf_destroy(&out);
    shmrpc_arena_free(a);
    free(stdin_args);
    return status;
}
