/* SPDX-License-Identifier: MIT */
/* The dynamic codec's conversions (shmrpc/dynamic.h): JSON arguments checked against a
 * parsed signature and written as msgpack, as JSON text or as raw bytes, and results read
 * back to JSON text, with messages that name the place of a failure. */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>
#include <sodium.h>

#include "codec/dyn.h"

/* How deeply values may nest, in either direction: JSON's bound, checked before jansson
 * parses, and the bound of what a msgpack result may become, since its JSON is read
 * again (by the page's script, by a shell's tools). The conversions recurse once a level
 * and the page's gateway runs them on civetweb's 100 KiB stacks. */
#define MAX_DEPTH SHMRPC_JSON_MAX_DEPTH

/* --- messages ----------------------------------------------------------------------------
 * Every conversion carries a path to the value it is at ("argument 'points'[1].x") and a
 * depth; a failure writes "PATH: WHY" into err once, and its status: SHMRPC_EINVAL for a
 * value the type refuses, SHMRPC_ENOMEM when memory ran out (nomem), the buffer's own
 * error when it could not take what was written. */

typedef struct cx {
    char path[200];
    size_t plen;
    unsigned depth;
    char *err;
    size_t cap;
    bool failed;
    /* Writing a @json request: strings and reals as jansson writes them, so that the body
     * is the generated stub's to the byte. Results are printed for people instead: the
     * shortest text that reads back as the same real. */
    bool wire;
    /* The text was read with its integers above INT64_MAX marked (mark_bigs). */
    bool big;
    int status; /* of the failure, when not SHMRPC_EINVAL */
} cx;

static size_t path_push(cx *c, const char *fmt, ...) SHMRPC__FMT(2, 3);
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

static int fail(cx *c, const char *fmt, ...) SHMRPC__FMT(2, 3);
static int fail(cx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = shmrpc__dyn_note(c->err, c->cap, &c->failed, c->path, fmt, ap);
    va_end(ap);
    return rc;
}

static int nomem(cx *c)
{
    if (!c->failed) c->status = SHMRPC_ENOMEM;
    return fail(c, "out of memory");
}

/* The status of a conversion that returned rc, after the buffer b it wrote to (NULL: none)
 * had its say: a write the buffer refused fails the conversion with the buffer's error,
 * whatever the conversion made of the -1 msgpack's packer returned then. */
static int status_of(cx *c, int rc, const shmrpc_buf *b)
{
    if (b && b->err != 0 && !c->failed) {
        c->status = b->err;
        fail(c, "cannot encode: %s", shmrpc_strerror(b->err));
    }
    if (rc == 0 && !c->failed) return 0;
    if (!c->failed) fail(c, "cannot encode"); /* a packer's -1 with no buffer error: none */
    return c->status ? c->status : SHMRPC_EINVAL;
}

/* A type as the signature spells it, by name for structs and enums. */
static void type_text(const shmrpc_dyn_type *t, char *out, size_t cap)
{
    char a[128], b[128];
    switch (t->kind) {
    case SHMRPC_DYN_LIST:
        type_text(t->elem, a, sizeof a);
        snprintf(out, cap, "list<%s>", a);
        return;
    case SHMRPC_DYN_MAP:
        type_text(t->key, a, sizeof a);
        type_text(t->elem, b, sizeof b);
        snprintf(out, cap, "map<%.60s,%.60s>", a, b);
        return;
    case SHMRPC_DYN_OPT:
        type_text(t->elem, a, sizeof a);
        snprintf(out, cap, "%s?", a);
        return;
    case SHMRPC_DYN_STRUCT:
        snprintf(out, cap, "struct %s", t->name);
        return;
    case SHMRPC_DYN_ENUM:
        snprintf(out, cap, "enum %s", t->name);
        return;
    case SHMRPC_DYN_ANY:
        snprintf(out, cap, "any");
        return;
    default:
        snprintf(out, cap, "%s", shmrpc__dyn_scalar_names[t->kind]);
        return;
    }
}

/* What JSON a type wants: "an integer (i64)". */
static const char *wanted(const shmrpc_dyn_type *t, char *out, size_t cap)
{
    char tt[160];
    type_text(t, tt, sizeof tt);
    const char *what = "a value";
    switch (t->kind) {
    case SHMRPC_DYN_BOOL:
        what = "true or false";
        break;
    case SHMRPC_DYN_F32:
    case SHMRPC_DYN_F64:
        what = "a number";
        break;
    case SHMRPC_DYN_STRING:
        what = "a string";
        break;
    case SHMRPC_DYN_BYTES:
        what = "a base64 string";
        break;
    case SHMRPC_DYN_LIST:
        what = "an array";
        break;
    case SHMRPC_DYN_MAP:
    case SHMRPC_DYN_STRUCT:
        what = "an object";
        break;
    case SHMRPC_DYN_ENUM:
        what = "the name of a value";
        break;
    case SHMRPC_DYN_VOID:
        what = "null";
        break;
    default:
        if (shmrpc__dyn_is_int(t->kind)) what = "an integer";
        break;
    }
    snprintf(out, cap, "%s (%s)", what, tt);
    return out;
}

/* An integer above INT64_MAX in JSON that jansson refuses ("too big integer") although
 * decode_result prints a u64 so: arguments and values are read with each such bare
 * integer turned into a string that starts with BIG (mark_bigs), which no string of the
 * text starts with then (none starts with a NUL). Only an
 * integer type (the range check) and a real take it. */
#define BIG "\0u64:"
#define BIG_LEN 5

/* The digits of v when it is such an integer, else NULL. */
static const char *big_digits(const cx *c, const json_t *v)
{
    if (!c->big || !json_is_string(v) || json_string_length(v) <= BIG_LEN) return NULL;
    const char *s = json_string_value(v);
    return memcmp(s, BIG, BIG_LEN) == 0 ? s + BIG_LEN : NULL;
}

/* A JSON value for a message, cut to a readable length. */
static const char *shown(const cx *c, const json_t *v, char *out, size_t cap)
{
    const char *digits = big_digits(c, v);
    if (digits != NULL) {
        snprintf(out, cap, "%.40s", digits);
        return out;
    }
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

static int mismatch(cx *c, const shmrpc_dyn_type *t, const json_t *v)
{
    char w[200], g[64];
    return fail(c, "expected %s, got %s", wanted(t, w, sizeof w), shown(c, v, g, sizeof g));
}

/* --- JSON text out ------------------------------------------------------------------------ */

static void out_str(shmrpc_buf *b, const char *s)
{
    shmrpc_buf_append(b, s, strlen(s));
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

static int dump_to_buf(const char *p, size_t n, void *b)
{
    return shmrpc_buf_append(b, p, n) ? -1 : 0;
}

/* v (taken, NULL for out of memory) as jansson writes it into a generated @json body. */
static int out_jansson(cx *c, shmrpc_buf *b, json_t *v)
{
    int rc = v ? json_dump_callback(v, dump_to_buf, b, JSON_COMPACT | JSON_ENCODE_ANY) : -1;
    json_decref(v);
    return rc == 0 ? 0 : nomem(c);
}

/* A string of n bytes of valid UTF-8, escaped as c->wire wants. */
static int out_string(cx *c, shmrpc_buf *b, const char *p, size_t n)
{
    if (c->wire) return out_jansson(c, b, json_stringn_nocheck(p, n));
    out_json_str(b, p, n);
    return 0;
}

/* --- base64 (RFC 4648, standard alphabet, padded), by libsodium ----------------------- */

static void out_base64(cx *c, shmrpc_buf *b, const uint8_t *p, size_t n)
{
    size_t len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *text = n < SIZE_MAX / 2 ? malloc(len) : NULL;
    if (text == NULL) {
        nomem(c);
        return;
    }
    sodium_bin2base64(text, len, p, n, sodium_base64_VARIANT_ORIGINAL);
    out_json_str(b, text, len - 1);
    free(text);
}

/* A base64 JSON string decoded into malloc'd memory (*out, *n); -1 with a message.
 * Canonical base64 only: padded, nothing outside the alphabet, no bits set in the
 * padding (libsodium refuses the rest). */
static int json_base64(cx *c, const shmrpc_dyn_type *t, const json_t *v, uint8_t **out, size_t *n)
{
    if (!json_is_string(v)) return mismatch(c, t, v);
    size_t len = json_string_length(v), got;
    uint8_t *p = malloc(len / 4 * 3 + 1);
    if (p == NULL) return nomem(c);
    if (sodium_base642bin(p, len / 4 * 3 + 1, json_string_value(v), len, NULL, &got, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        free(p);
        return fail(c, "not valid base64 (RFC 4648, with padding)");
    }
    *out = p;
    *n = got;
    return 0;
}

/* --- checking a JSON value ----------------------------------------------------------------- */

/* x in the range of t's integer kind, or a message. */
static int int_in_range(cx *c, const shmrpc_dyn_type *t, int64_t x, int64_t *sv, uint64_t *uv)
{
    bool in_range = shmrpc__dyn_is_signed(t->kind)
                        ? x >= shmrpc__dyn_int_min(t->kind) &&
                              (x < 0 || (uint64_t)x <= shmrpc__dyn_int_max(t->kind))
                        : x >= 0 && (uint64_t)x <= shmrpc__dyn_int_max(t->kind);
    if (!in_range)
        return fail(c, "%" PRId64 " is out of range for %s", x, shmrpc__dyn_scalar_names[t->kind]);
    *sv = x;
    *uv = (uint64_t)x;
    return 0;
}

/* A JSON integer (or, for u64, a string of decimal digits, since JSON parsers hold
 * integers as int64) in the type's range. */
static int json_int(cx *c, const shmrpc_dyn_type *t, const json_t *v, int64_t *sv, uint64_t *uv)
{
    const char *digits = big_digits(c, v);
    if (digits != NULL) {
        errno = 0;
        unsigned long long u = strtoull(digits, NULL, 10);
        if (t->kind != SHMRPC_DYN_U64 || errno != 0)
            return fail(c, "%.40s is out of range for %s", digits,
                        shmrpc__dyn_scalar_names[t->kind]);
        *uv = u;
        return 0;
    }
    if (t->kind == SHMRPC_DYN_U64 && json_is_string(v)) {
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
    return int_in_range(c, t, json_integer_value(v), sv, uv);
}

static const shmrpc_dyn_enumval *enum_by_name(const shmrpc_dyn_type *t, const char *s)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->values[i].name, s) == 0) return &t->values[i];
    return NULL;
}

static const shmrpc_dyn_enumval *enum_by_value(const shmrpc_dyn_type *t, int64_t v)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->values[i].value == v) return &t->values[i];
    return NULL;
}

static int json_enum(cx *c, const shmrpc_dyn_type *t, const json_t *v,
                     const shmrpc_dyn_enumval **out)
{
    if (!json_is_string(v)) return mismatch(c, t, v);
    if ((*out = enum_by_name(t, json_string_value(v))) != NULL) return 0;
    char names[160] = "";
    for (size_t i = 0; i < t->n && strlen(names) < sizeof names - 40; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                 t->values[i].name);
    char g[64];
    return fail(c, "%s is not a value of enum %s (%s)", shown(c, v, g, sizeof g), t->name, names);
}

/* A map key from a JSON object's key: the integer in canonical decimal (the rule of
 * shmrpc_json_key_int, which generated code reads keys with), or the enum value. */
static int json_key(cx *c, const shmrpc_dyn_type *k, const char *key, int64_t *sv, uint64_t *uv)
{
    if (k->kind == SHMRPC_DYN_ENUM) {
        const shmrpc_dyn_enumval *e = enum_by_name(k, key);
        if (e == NULL) return fail(c, "key \"%.40s\" is not a value of enum %s", key, k->name);
        *sv = e->value;
        return 0;
    }
    shmrpc_json_reader r = {0};
    shmrpc_str s = shmrpc_str_c(key);
    int64_t x;
    if (shmrpc_json_key_int(&r, s, INT64_MIN, INT64_MAX, &x) == 0)
        return int_in_range(c, k, x, sv, uv);
    if (k->kind == SHMRPC_DYN_U64) {
        /* Above INT64_MAX only a u64 has room; above UINT64_MAX it is a u64 no more. */
        r.why = NULL;
        if (shmrpc_json_key_uint(&r, s, UINT64_MAX, uv) == 0) return 0;
        if (key[0] != '-' && r.why == shmrpc__uint_range_why(UINT64_MAX)) {
            json_t *v = json_string(key);
            int rc = v ? mismatch(c, k, v) : nomem(c);
            json_decref(v);
            return rc;
        }
    }
    return fail(c, "key \"%.40s\" is not an integer", key);
}

/* A JSON number as a real (an integer above INT64_MAX included); -1 when v is not one. */
static int number_value(const cx *c, const json_t *v, double *d)
{
    const char *digits = big_digits(c, v);
    if (digits != NULL) {
        *d = strtod(digits, NULL);
        return 0;
    }
    if (!json_is_number(v)) return -1;
    *d = json_number_value(v);
    return 0;
}

/* Whether a marked big integer may stand for a value of type t (any other type refuses
 * it as the number it is, not as the string it was read as). */
static bool takes_big(const shmrpc_dyn_type *t)
{
    return shmrpc__dyn_is_int(t->kind) || t->kind == SHMRPC_DYN_F32 || t->kind == SHMRPC_DYN_F64 ||
           t->kind == SHMRPC_DYN_OPT || t->kind == SHMRPC_DYN_ANY;
}

/* --- any ---------------------------------------------------------------------------------
 * An any's JSON (docs/dynamic.md, "any"): JSON's own values as they are, and two forms JSON
 * lacks, each an object of one member: {"base64": "..."} for bytes, and {"map": [[key,
 * value], ...]} for a map whose keys are not all strings. A map that would read back as one
 * of them (one entry, keyed "base64" or "map") or whose key holds a NUL byte prints in the
 * second form too, so that any value prints to JSON that reads back to the same value.
 * On a @json method's wire an any is plain JSON: no forms, and no bytes nor other keys. */

static int json_to_any(cx *c, const json_t *v, msgpack_packer *pk, bool forms, bool key);

/* A JSON object in one of the two forms: its member, or NULL. */
static const json_t *form_of(const json_t *v, const char *name)
{
    if (!json_is_object(v) || json_object_size(v) != 1) return NULL;
    return json_object_get(v, name);
}

static int any_pairs(cx *c, const json_t *pairs, msgpack_packer *pk)
{
    size_t n = json_array_size(pairs);
    if (n > UINT32_MAX) return fail(c, "too many entries");
    msgpack_pack_map(pk, n);
    c->depth++;
    for (size_t i = 0; i < n; i++) {
        const json_t *kv = json_array_get(pairs, i);
        size_t old = path_push(c, ".map[%zu]", i);
        if (!json_is_array(kv) || json_array_size(kv) != 2)
            return fail(c, "expected a [key, value] pair");
        if (json_to_any(c, json_array_get(kv, 0), pk, true, true) != 0 ||
            json_to_any(c, json_array_get(kv, 1), pk, true, false) != 0)
            return -1;
        path_pop(c, old);
    }
    c->depth--;
    return 0;
}

/* A JSON value to an any's msgpack; forms: read the two forms above (not on a @json wire);
 * key: the value is a map's key, so a scalar. */
static int json_to_any(cx *c, const json_t *v, msgpack_packer *pk, bool forms, bool key)
{
    if (c->depth > MAX_DEPTH) return fail(c, "nested more than %u deep", MAX_DEPTH);
    const char *digits = big_digits(c, v);
    if (digits != NULL) {
        errno = 0;
        unsigned long long u = strtoull(digits, NULL, 10);
        if (errno != 0) return fail(c, "%.40s is out of range (u64 at most)", digits);
        return msgpack_pack_uint64(pk, u);
    }
    const json_t *f;
    switch (json_typeof(v)) {
    case JSON_NULL:
        return msgpack_pack_nil(pk);
    case JSON_TRUE:
        return msgpack_pack_true(pk);
    case JSON_FALSE:
        return msgpack_pack_false(pk);
    case JSON_INTEGER:
        return msgpack_pack_int64(pk, json_integer_value(v));
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(v));
    case JSON_STRING:
        return msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
    case JSON_ARRAY: {
        if (key) return fail(c, "a map's key must be a scalar, not an array");
        size_t n = json_array_size(v);
        if (n > UINT32_MAX) return fail(c, "too many elements");
        msgpack_pack_array(pk, n);
        c->depth++;
        for (size_t i = 0; i < n; i++) {
            size_t old = path_push(c, "[%zu]", i);
            if (json_to_any(c, json_array_get(v, i), pk, forms, false) != 0) return -1;
            path_pop(c, old);
        }
        c->depth--;
        return 0;
    }
    case JSON_OBJECT:
        if (forms && (f = form_of(v, "base64")) != NULL && json_is_string(f)) {
            static const shmrpc_dyn_type bytes = {.kind = SHMRPC_DYN_BYTES};
            uint8_t *p;
            size_t n;
            size_t old = path_push(c, ".base64");
            if (json_base64(c, &bytes, f, &p, &n) != 0) return -1;
            path_pop(c, old);
            msgpack_pack_bin_with_body(pk, p, n);
            free(p);
            return 0;
        }
        if (key) return fail(c, "a map's key must be a scalar, not an object");
        if (forms && (f = form_of(v, "map")) != NULL && json_is_array(f))
            return any_pairs(c, f, pk);
        msgpack_pack_map(pk, json_object_size(v));
        const char *k;
        json_t *val;
        c->depth++;
        json_object_foreach((json_t *)v, k, val)
        {
            size_t old = path_push(c, "[\"%.40s\"]", k);
            msgpack_pack_str_with_body(pk, k, strlen(k));
            if (json_to_any(c, val, pk, forms, false) != 0) return -1;
            path_pop(c, old);
        }
        c->depth--;
        return 0;
    }
    return fail(c, "not a JSON value");
}

int shmrpc__json_any_to_mp(const json_t *v, msgpack_packer *pk)
{
    char err[256];
    cx c = {.err = err, .cap = sizeof err};
    c.plen = (size_t)snprintf(c.path, sizeof c.path, "any");
    if (json_to_any(&c, v, pk, false, false) == 0) return 0;
    return shmrpc__err_set(SHMRPC_EINVAL, "%s", err);
}

/* How an any's map prints: plainly, as a JSON object, only when every key is a string
 * without a NUL, none twice (a map may hold a key twice, but the codec reads JSON with
 * duplicate keys refused), and the object could not be taken for one of the forms. */
static bool plain_map(cx *c, shmrpc_any m, size_t n, bool *plain, bool *twice)
{
    shmrpc_any_iter it;
    shmrpc_any k, v;
    *plain = *twice = false;
    if (shmrpc_any_iter_init(&it, m) != 0) return true;
    json_t *seen = n > 1 ? json_object() : NULL;
    if (n > 1 && seen == NULL) return nomem(c), false;
    bool ok = true;
    while (shmrpc_any_next(&it, &k) == 1 && shmrpc_any_next(&it, &v) == 1) {
        shmrpc_str s;
        if (shmrpc_any_str(k, &s) != 0 || memchr(s.ptr, 0, s.len) != NULL) goto done;
        if (n == 1 && ((s.len == 6 && memcmp(s.ptr, "base64", 6) == 0) ||
                       (s.len == 3 && memcmp(s.ptr, "map", 3) == 0)))
            goto done;
        if (seen == NULL) continue;
        if ((*twice = json_object_getn(seen, s.ptr, s.len) != NULL)) goto done;
        if (json_object_setn_new_nocheck(seen, s.ptr, s.len, json_null()) != 0) {
            ok = false;
            nomem(c);
            goto done;
        }
    }
    *plain = true;
done:
    json_decref(seen);
    return ok;
}

static int any_fail(cx *c)
{
    return fail(c, "%s", shmrpc_errmsg());
}

/* A checked any as JSON text: with c->wire, a @json method's plain JSON (bytes and keys
 * other than strings fail); else the codec's JSON with its forms. */
static int any_out(cx *c, shmrpc_any a, shmrpc_buf *b)
{
    if (c->depth > MAX_DEPTH) return fail(c, "nested more than %u deep", MAX_DEPTH);
    shmrpc_any_iter it;
    shmrpc_any e, v;
    size_t n = 0, i = 0;
    int rc;
    switch (shmrpc_any_kind_of(a)) {
    case SHMRPC_ANY_NULL:
        out_str(b, "null");
        return 0;
    case SHMRPC_ANY_BOOL: {
        bool x = false;
        shmrpc_any_bool(a, &x);
        out_str(b, x ? "true" : "false");
        return 0;
    }
    case SHMRPC_ANY_INT: {
        int64_t x;
        uint64_t u;
        if (shmrpc_any_int(a, &x) == 0) {
            out_i64(b, x);
        } else if (shmrpc_any_uint(a, &u) == 0) {
            if (c->wire)
                return fail(c,
                            "%" PRIu64 " has no JSON form in a @json method (integers travel "
                            "as int64)",
                            u);
            out_u64(b, u);
        } else {
            return any_fail(c);
        }
        return 0;
    }
    case SHMRPC_ANY_FLOAT: {
        double d = 0;
        shmrpc_any_float(a, &d);
        if (c->wire) {
            if (!isfinite(d))
                return fail(c, "%s has no JSON form", isnan(d) ? "NaN" : "an infinity");
            return out_jansson(c, b, json_real(d));
        }
        return out_real(c, b, d, false);
    }
    case SHMRPC_ANY_STRING: {
        shmrpc_str s = {0};
        if (shmrpc_any_str(a, &s) != 0) return any_fail(c);
        return out_string(c, b, s.ptr, s.len);
    }
    case SHMRPC_ANY_BYTES: {
        shmrpc_bytes x = {0};
        if (shmrpc_any_bytes(a, &x) != 0) return any_fail(c);
        if (c->wire)
            return fail(c, "bytes have no JSON form in a @json method (send them in a @msgpack "
                           "one, or as a string)");
        out_str(b, "{\"base64\":");
        out_base64(c, b, x.ptr, x.len);
        out_str(b, "}");
        return c->failed ? -1 : 0;
    }
    case SHMRPC_ANY_LIST:
        if (shmrpc_any_iter_init(&it, a) != 0) return any_fail(c);
        out_str(b, "[");
        c->depth++;
        while ((rc = shmrpc_any_next(&it, &e)) == 1) {
            size_t old = path_push(c, "[%zu]", i);
            if (i++) out_str(b, ",");
            if (any_out(c, e, b) != 0) return -1;
            path_pop(c, old);
        }
        if (rc < 0) return any_fail(c);
        c->depth--;
        out_str(b, "]");
        return 0;
    case SHMRPC_ANY_MAP: {
        if (shmrpc_any_len(a, &n) != 0 || shmrpc_any_iter_init(&it, a) != 0) return any_fail(c);
        bool plain, twice;
        if (!plain_map(c, a, n, &plain, &twice)) return -1;
        if (twice && c->wire)
            return fail(c, "a key appears twice, which a @json peer refuses in an object");
        if (!plain && c->wire) {
            /* A @json peer reads an object: a string key with a NUL is refused as jansson
             * refuses it; one keyed "map" or "base64" is plain JSON there. */
            plain = true;
        }
        out_str(b, plain ? "{" : "{\"map\":[");
        c->depth++;
        while ((rc = shmrpc_any_next(&it, &e)) == 1 && (rc = shmrpc_any_next(&it, &v)) == 1) {
            shmrpc_str ks;
            bool str_key = shmrpc_any_str(e, &ks) == 0;
            size_t old = str_key
                             ? path_push(c, "[\"%.*s\"]", ks.len > 40 ? 40 : (int)ks.len, ks.ptr)
                             : path_push(c, ".map[%zu]", i);
            if (i++) out_str(b, ",");
            if (plain) {
                if (!str_key)
                    return fail(c, "a map key that is not a string has no JSON form in a @json "
                                   "method");
                if (memchr(ks.ptr, 0, ks.len) != NULL)
                    return fail(c, "a key holds a NUL byte, which jansson refuses in an object "
                                   "key");
                if (out_string(c, b, ks.ptr, ks.len) != 0) return -1;
                out_str(b, ":");
            } else {
                out_str(b, "[");
                if (any_out(c, e, b) != 0) return -1;
                out_str(b, ",");
            }
            if (any_out(c, v, b) != 0) return -1;
            if (!plain) out_str(b, "]");
            path_pop(c, old);
        }
        if (rc < 0) return any_fail(c);
        c->depth--;
        out_str(b, plain ? "}" : "]}");
        return 0;
    }
    default:
        return fail(c, "the bytes of an any are malformed");
    }
}

/* A JSON value of an any (forms read as the codec's JSON, or not as on a @json wire) to
 * JSON text as any_out writes it. */
static int any_json_to_json(cx *c, const json_t *v, bool forms, shmrpc_buf *out)
{
    shmrpc_buf tmp;
    shmrpc_buf_init(&tmp);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &tmp, shmrpc_buf_msgpack_write);
    unsigned depth = c->depth;
    int rc = json_to_any(c, v, &pk, forms, false);
    c->depth = depth;
    shmrpc_any a;
    if (rc == 0 && tmp.err) {
        c->status = tmp.err;
        rc = fail(c, "cannot encode: %s", shmrpc_strerror(tmp.err));
    }
    if (rc == 0 && shmrpc_any_parse(tmp.data, tmp.len, &a) != 0) rc = any_fail(c);
    if (rc == 0) rc = any_out(c, a, out);
    shmrpc_buf_destroy(&tmp);
    return rc;
}

/* --- JSON -> msgpack ------------------------------------------------------------------------ */

static int to_mp(cx *c, const shmrpc_dyn_type *t, const json_t *v, msgpack_packer *pk);

static int struct_to(cx *c, const shmrpc_dyn_type *t, const json_t *v, msgpack_packer *pk,
                     shmrpc_buf *jb);

static int to_mp(cx *c, const shmrpc_dyn_type *t, const json_t *v, msgpack_packer *pk)
{
    if (c->depth > MAX_DEPTH) return fail(c, "nested more than %u deep", MAX_DEPTH);
    if (!takes_big(t) && big_digits(c, v) != NULL) return mismatch(c, t, v);
    int64_t sv = 0;
    uint64_t uv = 0;
    switch (t->kind) {
    case SHMRPC_DYN_VOID: /* a result only: what a void method answers, as in to_json */
        if (!json_is_null(v)) return mismatch(c, t, v);
        return msgpack_pack_nil(pk);
    case SHMRPC_DYN_BOOL:
        if (!json_is_boolean(v)) return mismatch(c, t, v);
        return json_is_true(v) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case SHMRPC_DYN_F32:
    case SHMRPC_DYN_F64: {
        double d;
        if (number_value(c, v, &d) != 0) return mismatch(c, t, v);
        if (t->kind == SHMRPC_DYN_F64) return msgpack_pack_double(pk, d);
        if (d > FLT_MAX || d < -FLT_MAX) return fail(c, "%g is out of range for f32", d);
        return msgpack_pack_float(pk, (float)d);
    }
    case SHMRPC_DYN_STRING:
        if (!json_is_string(v)) return mismatch(c, t, v);
        return msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
    case SHMRPC_DYN_BYTES: {
        uint8_t *p;
        size_t n;
        if (json_base64(c, t, v, &p, &n) != 0) return -1;
        msgpack_pack_bin_with_body(pk, p, n);
        free(p);
        return 0;
    }
    case SHMRPC_DYN_OPT:
        return json_is_null(v) ? msgpack_pack_nil(pk) : to_mp(c, t->elem, v, pk);
    case SHMRPC_DYN_ENUM: {
        const shmrpc_dyn_enumval *e;
        if (json_enum(c, t, v, &e) != 0) return -1;
        return msgpack_pack_int64(pk, e->value);
    }
    case SHMRPC_DYN_LIST: {
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
    case SHMRPC_DYN_MAP: {
        if (!json_is_object(v)) return mismatch(c, t, v);
        msgpack_pack_map(pk, json_object_size(v));
        const char *key;
        json_t *val;
        c->depth++;
        json_object_foreach((json_t *)v, key, val)
        {
            size_t old = path_push(c, "[\"%.40s\"]", key);
            if (t->key->kind == SHMRPC_DYN_STRING) {
                msgpack_pack_str_with_body(pk, key, strlen(key));
            } else {
                if (json_key(c, t->key, key, &sv, &uv) != 0) return -1;
                if (t->key->kind == SHMRPC_DYN_U64)
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
    case SHMRPC_DYN_STRUCT:
        return struct_to(c, t, v, pk, NULL);
    case SHMRPC_DYN_ANY: {
        /* Its depth counts from the any, as its decoder counts it. */
        unsigned depth = c->depth;
        c->depth = 0;
        int rc = json_to_any(c, v, pk, true, false);
        c->depth = depth;
        return rc;
    }
    default:
        if (json_int(c, t, v, &sv, &uv) != 0) return -1;
        return shmrpc__dyn_is_signed(t->kind) ? msgpack_pack_int64(pk, sv)
                                              : msgpack_pack_uint64(pk, uv);
    }
}

/* --- JSON -> checked JSON text (@json arguments and results) ------------------------------- */

static int to_json(cx *c, const shmrpc_dyn_type *t, const json_t *v, shmrpc_buf *b)
{
    if (c->depth > MAX_DEPTH) return fail(c, "nested more than %u deep", MAX_DEPTH);
    if (!takes_big(t) && big_digits(c, v) != NULL) return mismatch(c, t, v);
    int64_t sv = 0;
    uint64_t uv = 0;
    switch (t->kind) {
    case SHMRPC_DYN_VOID:
        if (!json_is_null(v)) return mismatch(c, t, v);
        out_str(b, "null");
        return 0;
    case SHMRPC_DYN_BOOL:
        if (!json_is_boolean(v)) return mismatch(c, t, v);
        out_str(b, json_is_true(v) ? "true" : "false");
        return 0;
    case SHMRPC_DYN_F32:
    case SHMRPC_DYN_F64: {
        double d;
        if (number_value(c, v, &d) != 0) return mismatch(c, t, v);
        if (t->kind == SHMRPC_DYN_F32 && fabs(d) > FLT_MAX)
            return fail(c, "%g is out of range for f32", d);
        /* Generated code writes an f32 as the double it widens to. */
        if (c->wire) return out_jansson(c, b, json_real(t->kind == SHMRPC_DYN_F32 ? (float)d : d));
        return out_real(c, b, d, t->kind == SHMRPC_DYN_F32);
    }
    case SHMRPC_DYN_STRING:
        if (!json_is_string(v)) return mismatch(c, t, v);
        return out_string(c, b, json_string_value(v), json_string_length(v));
    case SHMRPC_DYN_BYTES: {
        uint8_t *p;
        size_t n;
        if (json_base64(c, t, v, &p, &n) != 0) return -1;
        free(p);
        out_json_str(b, json_string_value(v), json_string_length(v));
        return 0;
    }
    case SHMRPC_DYN_OPT:
        if (json_is_null(v)) {
            out_str(b, "null");
            return 0;
        }
        return to_json(c, t->elem, v, b);
    case SHMRPC_DYN_ENUM: {
        const shmrpc_dyn_enumval *e;
        if (json_enum(c, t, v, &e) != 0) return -1;
        out_json_str(b, e->name, strlen(e->name));
        return 0;
    }
    case SHMRPC_DYN_LIST: {
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
    case SHMRPC_DYN_MAP: {
        if (!json_is_object(v)) return mismatch(c, t, v);
        out_str(b, "{");
        const char *key;
        json_t *val;
        bool first = true;
        c->depth++;
        json_object_foreach((json_t *)v, key, val)
        {
            size_t old = path_push(c, "[\"%.40s\"]", key);
            /* Keys are strings: a u64 key above INT64_MAX has a JSON form, as a value has not. */
            if (t->key->kind != SHMRPC_DYN_STRING && json_key(c, t->key, key, &sv, &uv) != 0)
                return -1;
            if (!first) out_str(b, ",");
            first = false;
            if (out_string(c, b, key, strlen(key)) != 0) return -1;
            out_str(b, ":");
            if (to_json(c, t->elem, val, b) != 0) return -1;
            path_pop(c, old);
        }
        c->depth--;
        out_str(b, "}");
        return 0;
    }
    case SHMRPC_DYN_STRUCT:
        return struct_to(c, t, v, NULL, b);
    case SHMRPC_DYN_ANY:
        /* To the wire the codec's forms are read and refused there; from it, plain JSON is
         * printed with them. */
        return any_json_to_json(c, v, c->wire, b);
    default:
        if (json_int(c, t, v, &sv, &uv) != 0) return -1;
        if (t->kind == SHMRPC_DYN_U64 && uv > INT64_MAX)
            return fail(
                c, "%" PRIu64 " has no JSON form in a @json method (integers travel as int64)", uv);
        if (shmrpc__dyn_is_signed(t->kind))
            out_i64(b, sv);
        else
            out_u64(b, uv);
        return 0;
    }
}

/* A struct from a JSON object by field name, to msgpack (pk) or to JSON text (jb): unknown
 * members are refused, absent optional fields are null. */
static int struct_to(cx *c, const shmrpc_dyn_type *t, const json_t *v, msgpack_packer *pk,
                     shmrpc_buf *jb)
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
        const shmrpc_dyn_field *f = &t->fields[i];
        json_t *fv = json_object_get(v, f->name);
        if (fv == NULL && f->type->kind != SHMRPC_DYN_OPT)
            return fail(c, "missing field '%s'", f->name);
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

static int from_mp(cx *c, const shmrpc_dyn_type *t, shmrpc_mp_reader *r, shmrpc_buf *b)
{
    if (c->depth > MAX_DEPTH) return fail(c, "nested more than %u deep", MAX_DEPTH);
    switch (t->kind) {
    case SHMRPC_DYN_VOID:
        if (shmrpc_mp_read_nil(r) != 0) return mp_fail(c, r);
        out_str(b, "null");
        return 0;
    case SHMRPC_DYN_BOOL: {
        bool v;
        if (shmrpc_mp_read_bool(r, &v) != 0) return mp_fail(c, r);
        out_str(b, v ? "true" : "false");
        return 0;
    }
    case SHMRPC_DYN_F32: {
        float f;
        if (shmrpc_mp_read_f32(r, &f) != 0) return mp_fail(c, r);
        return out_real(c, b, f, true);
    }
    case SHMRPC_DYN_F64: {
        double d;
        if (shmrpc_mp_read_f64(r, &d) != 0) return mp_fail(c, r);
        return out_real(c, b, d, false);
    }
    case SHMRPC_DYN_STRING: {
        shmrpc_str s;
        if (shmrpc_mp_read_str(r, &s) != 0) return mp_fail(c, r);
        if (!shmrpc__utf8_valid((const uint8_t *)s.ptr, s.len))
            return fail(c, "string is not UTF-8");
        out_json_str(b, s.ptr, s.len);
        return 0;
    }
    case SHMRPC_DYN_BYTES: {
        shmrpc_bytes v;
        if (shmrpc_mp_read_bin(r, &v) != 0) return mp_fail(c, r);
        out_base64(c, b, v.ptr, v.len);
        return 0;
    }
    case SHMRPC_DYN_OPT: {
        int nil = shmrpc_mp_try_nil(r);
        if (nil < 0) return mp_fail(c, r);
        if (nil) {
            out_str(b, "null");
            return 0;
        }
        return from_mp(c, t->elem, r, b);
    }
    case SHMRPC_DYN_ENUM: {
        int64_t v;
        if (shmrpc_mp_read_int(r, INT32_MIN, INT32_MAX, &v) != 0) return mp_fail(c, r);
        const shmrpc_dyn_enumval *e = enum_by_value(t, v);
        if (e == NULL) return fail(c, "%" PRId64 " is not a value of enum %s", v, t->name);
        out_json_str(b, e->name, strlen(e->name));
        return 0;
    }
    case SHMRPC_DYN_LIST: {
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
    case SHMRPC_DYN_MAP: {
        uint32_t n;
        if (shmrpc_mp_read_map(r, &n) != 0) return mp_fail(c, r);
        out_str(b, "{");
        c->depth++;
        for (uint32_t i = 0; i < n; i++) {
            if (i) out_str(b, ",");
            char key[64];
            const shmrpc_dyn_type *k = t->key;
            if (k->kind == SHMRPC_DYN_STRING) {
                shmrpc_str s;
                if (shmrpc_mp_read_str(r, &s) != 0) return mp_fail(c, r);
                if (!shmrpc__utf8_valid((const uint8_t *)s.ptr, s.len))
                    return fail(c, "a key is not UTF-8");
                /* Valid JSON, but jansson keeps keys as C strings: encode_args and
                 * encode_result, a @json peer and shmrpcctl could not read it back. */
                if (memchr(s.ptr, 0, s.len) != NULL)
                    return fail(c, "a key holds a NUL byte, which jansson refuses in an "
                                   "object key");
                out_json_str(b, s.ptr, s.len);
                snprintf(key, sizeof key, "\"%.*s\"", s.len > 40 ? 40 : (int)s.len, s.ptr);
            } else if (k->kind == SHMRPC_DYN_ENUM) {
                int64_t v;
                if (shmrpc_mp_read_int(r, INT32_MIN, INT32_MAX, &v) != 0) return mp_fail(c, r);
                const shmrpc_dyn_enumval *e = enum_by_value(k, v);
                if (e == NULL)
                    return fail(c, "key %" PRId64 " is not a value of enum %s", v, k->name);
                out_json_str(b, e->name, strlen(e->name));
                snprintf(key, sizeof key, "\"%.40s\"", e->name);
            } else if (shmrpc__dyn_is_signed(k->kind)) {
                int64_t v;
                if (shmrpc_mp_read_int(r, shmrpc__dyn_int_min(k->kind),
                                       (int64_t)shmrpc__dyn_int_max(k->kind), &v) != 0)
                    return mp_fail(c, r);
                snprintf(key, sizeof key, "\"%" PRId64 "\"", v);
                out_str(b, key);
            } else {
                uint64_t v;
                if (shmrpc_mp_read_uint(r, shmrpc__dyn_int_max(k->kind), &v) != 0)
                    return mp_fail(c, r);
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
    case SHMRPC_DYN_STRUCT: {
        uint32_t n;
        if (shmrpc_mp_read_array(r, &n) != 0) return mp_fail(c, r);
        if (n != t->n)
            return fail(c, "struct %s: expected %zu fields, got %" PRIu32, t->name, t->n, n);
        out_str(b, "{");
        c->depth++;
        for (size_t i = 0; i < t->n; i++) {
            const shmrpc_dyn_field *f = &t->fields[i];
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
    case SHMRPC_DYN_ANY: {
        shmrpc_any a;
        if (shmrpc_mp_read_any(r, &a) != 0) return mp_fail(c, r);
        return any_out(c, a, b);
    }
    default:
        if (shmrpc__dyn_is_signed(t->kind)) {
            int64_t v;
            if (shmrpc_mp_read_int(r, shmrpc__dyn_int_min(t->kind),
                                   (int64_t)shmrpc__dyn_int_max(t->kind), &v) != 0)
                return mp_fail(c, r);
            out_i64(b, v);
        } else {
            uint64_t v;
            if (shmrpc_mp_read_uint(r, shmrpc__dyn_int_max(t->kind), &v) != 0) return mp_fail(c, r);
            out_u64(b, v);
        }
        return 0;
    }
}

/* --- arguments and results ------------------------------------------------------------------ */

/* Whether c may end a number or a word (so that a digit after it does not start one). */
static bool in_token(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
           c == '-' || c == '+';
}

/* The n bytes of JSON p with each bare integer above INT64_MAX in a value's place made a
 * string starting with BIG (see there), or NULL when there is none, or a string of the
 * text starts with a NUL (then BIG would not be unambiguous), or it nests too deep to follow (it
 * was checked against MAX_DEPTH already): the text is then read as it is. NULL with *nomem set when
 * memory ran out. A token in a key's place is left for jansson to refuse. */
static char *mark_bigs(const char *p, size_t n, size_t *out_n, bool *nomem)
{
    bool in_object[MAX_DEPTH + 2];
    unsigned depth = 0;
    bool in_str = false, marked = false;
    char prev = '\0'; /* the last character outside strings and white space */
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (in_str) {
            if (ch == '\\') {
                shmrpc_buf_append(&b, p + i, i + 1 < n ? 2 : 1);
                i++;
                continue;
            }
            if (ch == '"') in_str = false;
            shmrpc_buf_append(&b, &ch, 1);
            continue;
        }
        bool value_place = prev == '\0' || prev == ':' || prev == '[' ||
                           (prev == ',' && depth > 0 && !in_object[depth - 1]);
        if (ch >= '1' && ch <= '9' && value_place && (i == 0 || !in_token(p[i - 1]))) {
            size_t j = i;
            while (j < n && p[j] >= '0' && p[j] <= '9')
                j++;
            size_t len = j - i;
            bool big = (len > 19 || (len == 19 && memcmp(p + i, "9223372036854775807", 19) > 0)) &&
                       (j == n || !in_token(p[j]));
            if (big) shmrpc_buf_append(&b, "\"\\u0000u64:", 11);
            shmrpc_buf_append(&b, p + i, len);
            if (big) shmrpc_buf_append(&b, "\"", 1);
            marked |= big;
            prev = p[j - 1];
            i = j - 1;
            continue;
        }
        if (ch == '"') {
            /* Only a string written starting "\u0000" starts with a NUL (a raw one is not
             * JSON), so only such a string could be taken for BIG. */
            if (i + 6 < n && memcmp(p + i + 1, "\\u0000", 6) == 0) goto none;
            in_str = true;
        }
        if (ch == '{' || ch == '[') {
            if (depth == MAX_DEPTH + 2) goto none;
            in_object[depth++] = ch == '{';
        } else if ((ch == '}' || ch == ']') && depth > 0) {
            depth--;
        }
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') prev = ch;
        shmrpc_buf_append(&b, &ch, 1);
    }
    *nomem = b.err != 0;
    if (!marked || b.err != 0) goto none;
    *out_n = b.len;
    return (char *)b.data;
none:
    shmrpc_buf_destroy(&b);
    return NULL;
}

/* Parses n bytes of JSON; NULL with a message naming the line and column, or the depth
 * (checked first: jansson recurses once a level), and c's status when memory ran out.
 * With c->big asked for, integers above INT64_MAX are marked (mark_bigs) and c->big says
 * whether any was. */
static json_t *parse_json(cx *c, const char *p, size_t n, const char *what)
{
    if (shmrpc_json_check_depth(p, n, MAX_DEPTH) != 0) {
        snprintf(c->err, c->cap, "%s: JSON nested more than %u deep", what, MAX_DEPTH);
        return NULL;
    }
    size_t mn = 0;
    bool out_of_memory = false;
    char *marked = c->big ? mark_bigs(p, n, &mn, &out_of_memory) : NULL;
    c->big = marked != NULL;
    json_error_t je;
    const char *text = marked ? marked : p;
    size_t len = marked ? mn : n;
    const size_t flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL;
    json_t *v = out_of_memory ? NULL : json_loadb(text, len, flags, &je);
    /* jansson 2.14 says so for some of its allocations only: its lexer drops a character
     * when its buffer cannot grow (jansson issue #362), which nobody after it can tell. */
    out_of_memory |= v == NULL && json_error_code(&je) == json_error_out_of_memory;
    free(marked);
    if (out_of_memory) {
        c->status = SHMRPC_ENOMEM;
        snprintf(c->err, c->cap, "%s: out of memory", what);
    } else if (v == NULL) {
        snprintf(c->err, c->cap, "%s: bad JSON at line %d, column %d: %s", what, je.line, je.column,
                 je.text);
    }
    return v;
}

/* The arguments in parameter order: args[i] is a borrowed value or NULL when not given. */
static int order_args(const shmrpc_dyn_sig *s, const json_t *in, const json_t **args, cx *c)
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
                    shown(c, in, g, sizeof g));
    }
    for (size_t i = 0; i < s->n_params; i++)
        if (args[i] == NULL && s->params[i].type->kind != SHMRPC_DYN_OPT)
            return fail(c, "missing argument '%s' (%s takes: %s)", s->params[i].name, s->method,
                        names);
    return 0;
}

static int raw_arg(cx *c, const json_t *v, shmrpc_buf *req)
{
    if (json_is_string(v) && big_digits(c, v) == NULL)
        return shmrpc_buf_append(req, json_string_value(v), json_string_length(v));
    const json_t *b64v = json_object_get(v, "base64");
    if (json_is_object(v) && json_object_size(v) == 1 && json_is_string(b64v)) {
        static const shmrpc_dyn_type bytes = {.kind = SHMRPC_DYN_BYTES};
        uint8_t *p;
        size_t n;
        if (json_base64(c, &bytes, b64v, &p, &n) != 0) return -1;
        int rc = shmrpc_buf_append(req, p, n);
        free(p);
        return rc;
    }
    char g[64];
    return fail(c, "expected a string (its UTF-8 bytes) or {\"base64\": \"...\"}, got %s",
                shown(c, v, g, sizeof g));
}

static int encode_args(const shmrpc_dyn_sig *s, const char *json, size_t n, shmrpc_buf *req,
                       char *err, size_t cap)
{
    cx c = {.err = err, .cap = cap, .wire = true, .big = true};
    json_t *in = parse_json(&c, json, n, "arguments");
    if (in == NULL) return c.status ? c.status : SHMRPC_EINVAL;
    const json_t **args = calloc(s->n_params + 1, sizeof *args);
    json_t *null = json_null();
    int rc = args ? 0 : nomem(&c);
    snprintf(c.path, sizeof c.path, "arguments");
    c.plen = strlen(c.path);
    if (rc == 0) rc = order_args(s, in, args, &c);
    msgpack_packer pk;
    msgpack_packer_init(&pk, req, shmrpc_buf_msgpack_write);
    if (rc == 0 && s->encoding == SHMRPC_ENC_MSGPACK) msgpack_pack_array(&pk, s->n_params);
    if (rc == 0 && s->encoding == SHMRPC_ENC_JSON) out_str(req, "{");
    for (size_t i = 0; rc == 0 && i < s->n_params; i++) {
        const shmrpc_dyn_field *p = &s->params[i];
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
    free(args);
    json_decref(in);
    return status_of(&c, rc, req);
}

static int decode_result(const shmrpc_dyn_sig *s, const void *body, size_t n, shmrpc_buf *out,
                         char *err, size_t cap)
{
    cx c = {.err = err, .cap = cap};
    c.plen = (size_t)snprintf(c.path, sizeof c.path, "result");
    int rc = 0;
    if (s->encoding == SHMRPC_ENC_RAW) {
        if (shmrpc__utf8_valid(body, n)) {
            out_json_str(out, body, n);
        } else {
            out_str(out, "{\"base64\":");
            out_base64(&c, out, body, n);
            out_str(out, "}");
        }
    } else if (s->encoding == SHMRPC_ENC_JSON) {
        json_t *v = parse_json(&c, body, n, "result");
        if (v == NULL) return c.status ? c.status : SHMRPC_EINVAL;
        rc = to_json(&c, s->result, v, out);
        json_decref(v);
    } else {
        shmrpc_mp_reader r;
        shmrpc_mp_reader_init(&r, body, n);
        rc = from_mp(&c, s->result, &r, out);
        if (rc == 0 && shmrpc_mp_finish(&r) != 0) rc = mp_fail(&c, &r);
    }
    return status_of(&c, rc, out);
}

/* The result's encoding of a JSON value: what a server answers, and a typed queue's
 * message (docs/queue.md). */
static int encode_result(const shmrpc_dyn_sig *s, const char *json, size_t n, shmrpc_buf *out,
                         char *err, size_t cap)
{
    cx c = {.err = err, .cap = cap, .wire = true, .big = true};
    json_t *v = parse_json(&c, json, n, "value");
    if (v == NULL) return c.status ? c.status : SHMRPC_EINVAL;
    c.plen = (size_t)snprintf(c.path, sizeof c.path, "value");
    int rc;
    if (s->encoding == SHMRPC_ENC_RAW) {
        rc = raw_arg(&c, v, out);
    } else if (s->encoding == SHMRPC_ENC_JSON) {
        rc = to_json(&c, s->result, v, out);
    } else {
        msgpack_packer pk;
        msgpack_packer_init(&pk, out, shmrpc_buf_msgpack_write);
        rc = to_mp(&c, s->result, v, &pk);
    }
    json_decref(v);
    return status_of(&c, rc, out);
}

/* The messages name a place and a value cut short, so this is room enough. */
#define ERR_CAP 768

/* A @pickle or @marshal method's bytes are Python objects serialised by Python, which
 * nothing here can write or read (docs/python.md, "speedysvc's API"). */
static int python_only(const shmrpc_dyn_sig *s)
{
    return shmrpc__err_set(SHMRPC_EINVAL, "a @%s method is called from Python only",
                           s->python_only);
}

int shmrpc_dyn_encode_args(const shmrpc_dyn_sig *s, const char *json, size_t n, shmrpc_buf *req)
{
    if (s->python_only) return python_only(s);
    char err[ERR_CAP];
    int rc = encode_args(s, json, n, req, err, sizeof err);
    return rc == 0 ? 0 : shmrpc__err_set(rc, "%s", err);
}

int shmrpc_dyn_encode_result(const shmrpc_dyn_sig *s, const char *json, size_t n, shmrpc_buf *out)
{
    if (s->python_only) return python_only(s);
    char err[ERR_CAP];
    int rc = encode_result(s, json, n, out, err, sizeof err);
    return rc == 0 ? 0 : shmrpc__err_set(rc, "%s", err);
}

int shmrpc_dyn_decode_result(const shmrpc_dyn_sig *s, const void *body, size_t n, shmrpc_buf *out)
{
    if (s->python_only) return python_only(s);
    char err[ERR_CAP];
    int rc = decode_result(s, body, n, out, err, sizeof err);
    return rc == 0 ? 0 : shmrpc__err_set(rc, "%s", err);
}
