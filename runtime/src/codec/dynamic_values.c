/* SPDX-License-Identifier: MIT */
/* The pieces of the dynamic codec's conversions (dyn_json.h): a value's place and the
 * message that names it, a value's JSON text, base64, and a JSON value's checks against a
 * type. */
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

#include "codec/dyn_json.h"

/* --- messages ----------------------------------------------------------------------------
 * Every conversion carries a path to the value it is at ("argument 'points'[1].x") and a
 * depth; a failure writes "PATH: WHY" into err once, and its status: SHMRPC_EINVAL for a
 * value the type refuses, SHMRPC_ENOMEM when memory ran out (nomem), the buffer's own
 * error when it could not take what was written. */

size_t shmrpc__dj_path_push(cx *c, const char *fmt, ...) SHMRPC__FMT(2, 3);
size_t shmrpc__dj_path_push(cx *c, const char *fmt, ...)
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

void shmrpc__dj_path_pop(cx *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

int shmrpc__dj_fail(cx *c, const char *fmt, ...) SHMRPC__FMT(2, 3);
int shmrpc__dj_fail(cx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = shmrpc__dyn_note(c->err, c->cap, &c->failed, c->path, fmt, ap);
    va_end(ap);
    return rc;
}

int shmrpc__dj_nomem(cx *c)
{
    if (!c->failed) c->status = SHMRPC_ENOMEM;
    return shmrpc__dj_fail(c, "out of memory");
}

/* The status of a conversion that returned rc, after the buffer b it wrote to (NULL: none)
 * had its say: a write the buffer refused fails the conversion with the buffer's error,
 * whatever the conversion made of the -1 msgpack's packer returned then. */
int shmrpc__dj_status_of(cx *c, int rc, const shmrpc_buf *b)
{
    if (b && b->err != 0 && !c->failed) {
        c->status = b->err;
        shmrpc__dj_fail(c, "cannot encode: %s", shmrpc_strerror(b->err));
    }
    if (rc == 0 && !c->failed) return 0;
    if (!c->failed)
        shmrpc__dj_fail(c, "cannot encode"); /* a packer's -1 with no buffer error: none */
    return c->status ? c->status : SHMRPC_EINVAL;
}

/* A type as the signature spells it, by name for structs and enums. */
void shmrpc__dyn_type_text(const shmrpc_dyn_type *t, char *out, size_t cap)
{
    char a[128], b[128];
    switch (t->kind) {
    case SHMRPC_DYN_LIST:
        shmrpc__dyn_type_text(t->elem, a, sizeof a);
        snprintf(out, cap, "list<%s>", a);
        return;
    case SHMRPC_DYN_MAP:
        shmrpc__dyn_type_text(t->key, a, sizeof a);
        shmrpc__dyn_type_text(t->elem, b, sizeof b);
        snprintf(out, cap, "map<%.60s,%.60s>", a, b);
        return;
    case SHMRPC_DYN_OPT:
        shmrpc__dyn_type_text(t->elem, a, sizeof a);
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
    shmrpc__dyn_type_text(t, tt, sizeof tt);
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
        if (shmrpc_dyn_is_int(t->kind)) what = "an integer";
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
const char *shmrpc__dj_big_digits(const cx *c, const json_t *v)
{
    if (!c->big || !json_is_string(v) || json_string_length(v) <= BIG_LEN) return NULL;
    const char *s = json_string_value(v);
    return memcmp(s, BIG, BIG_LEN) == 0 ? s + BIG_LEN : NULL;
}

/* A JSON value for a message, cut to a readable length. */
const char *shmrpc__dj_shown(const cx *c, const json_t *v, char *out, size_t cap)
{
    const char *digits = shmrpc__dj_big_digits(c, v);
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

int shmrpc__dj_mismatch(cx *c, const shmrpc_dyn_type *t, const json_t *v)
{
    char w[200], g[64];
    return shmrpc__dj_fail(c, "expected %s, got %s", wanted(t, w, sizeof w),
                           shmrpc__dj_shown(c, v, g, sizeof g));
}

/* --- JSON text out ------------------------------------------------------------------------ */

void shmrpc__dj_out_str(shmrpc_buf *b, const char *s)
{
    shmrpc_buf_append(b, s, strlen(s));
}

/* A JSON string of n bytes of valid UTF-8. */
void shmrpc__dj_out_json_str(shmrpc_buf *b, const char *p, size_t n)
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
        shmrpc__dj_out_str(b, esc);
        run = i + 1;
    }
    shmrpc_buf_append(b, p + run, n - run);
    shmrpc_buf_append(b, "\"", 1);
}

/* The shortest text that reads back as the same double (or float), with ".0" on whole
 * numbers so the value stays a real. NaN and infinities have no JSON form. */
int shmrpc__dj_out_real(cx *c, shmrpc_buf *b, double d, bool single)
{
    if (!isfinite(d))
        return shmrpc__dj_fail(c, "%s has no JSON form", isnan(d) ? "NaN" : "an infinity");
    char s[48];
    for (int prec = single ? 6 : 15; prec <= (single ? 9 : 17); prec++) {
        snprintf(s, sizeof s, "%.*g", prec, d);
        if (single ? strtof(s, NULL) == (float)d : strtod(s, NULL) == d) break;
    }
    if (strpbrk(s, ".e") == NULL) strcat(s, ".0");
    shmrpc__dj_out_str(b, s);
    return 0;
}

void shmrpc__dj_out_i64(shmrpc_buf *b, int64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRId64, v);
    shmrpc__dj_out_str(b, s);
}

void shmrpc__dj_out_u64(shmrpc_buf *b, uint64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, v);
    shmrpc__dj_out_str(b, s);
}

static int dump_to_buf(const char *p, size_t n, void *b)
{
    return shmrpc_buf_append(b, p, n) ? -1 : 0;
}

/* v (taken, NULL for out of memory) as jansson writes it into a generated @json body. */
int shmrpc__dj_out_jansson(cx *c, shmrpc_buf *b, json_t *v)
{
    int rc = v ? json_dump_callback(v, dump_to_buf, b, JSON_COMPACT | JSON_ENCODE_ANY) : -1;
    json_decref(v);
    return rc == 0 ? 0 : shmrpc__dj_nomem(c);
}

/* A string of n bytes of valid UTF-8, escaped as c->wire wants. */
int shmrpc__dj_out_string(cx *c, shmrpc_buf *b, const char *p, size_t n)
{
    if (c->wire) return shmrpc__dj_out_jansson(c, b, json_stringn_nocheck(p, n));
    shmrpc__dj_out_json_str(b, p, n);
    return 0;
}

/* --- base64 (RFC 4648, standard alphabet, padded), by libsodium ----------------------- */

void shmrpc__dj_out_base64(cx *c, shmrpc_buf *b, const uint8_t *p, size_t n)
{
    size_t len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *text = n < SIZE_MAX / 2 ? malloc(len) : NULL;
    if (text == NULL) {
        shmrpc__dj_nomem(c);
        return;
    }
    sodium_bin2base64(text, len, p, n, sodium_base64_VARIANT_ORIGINAL);
    shmrpc__dj_out_json_str(b, text, len - 1);
    free(text);
}

/* A base64 JSON string decoded into malloc'd memory (*out, *n); -1 with a message.
 * Canonical base64 only: padded, nothing outside the alphabet, no bits set in the
 * padding (libsodium refuses the rest). */
int shmrpc__dj_json_base64(cx *c, const shmrpc_dyn_type *t, const json_t *v, uint8_t **out,
                           size_t *n)
{
    if (!json_is_string(v)) return shmrpc__dj_mismatch(c, t, v);
    size_t len = json_string_length(v), got;
    uint8_t *p = malloc(len / 4 * 3 + 1);
    if (p == NULL) return shmrpc__dj_nomem(c);
    if (sodium_base642bin(p, len / 4 * 3 + 1, json_string_value(v), len, NULL, &got, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        free(p);
        return shmrpc__dj_fail(c, "not valid base64 (RFC 4648, with padding)");
    }
    *out = p;
    *n = got;
    return 0;
}

/* --- checking a JSON value ----------------------------------------------------------------- */

/* x in the range of t's integer kind, or a message. */
static int int_in_range(cx *c, const shmrpc_dyn_type *t, int64_t x, int64_t *sv, uint64_t *uv)
{
    bool in_range = shmrpc_dyn_is_signed(t->kind)
                        ? x >= shmrpc__dyn_int_min(t->kind) &&
                              (x < 0 || (uint64_t)x <= shmrpc__dyn_int_max(t->kind))
                        : x >= 0 && (uint64_t)x <= shmrpc__dyn_int_max(t->kind);
    if (!in_range)
        return shmrpc__dj_fail(c, "%" PRId64 " is out of range for %s", x,
                               shmrpc__dyn_scalar_names[t->kind]);
    *sv = x;
    *uv = (uint64_t)x;
    return 0;
}

/* A JSON integer (or, for u64, a string of decimal digits, since JSON parsers hold
 * integers as int64) in the type's range. */
int shmrpc__dj_json_int(cx *c, const shmrpc_dyn_type *t, const json_t *v, int64_t *sv, uint64_t *uv)
{
    const char *digits = shmrpc__dj_big_digits(c, v);
    if (digits != NULL) {
        errno = 0;
        unsigned long long u = strtoull(digits, NULL, 10);
        if (t->kind != SHMRPC_DYN_U64 || errno != 0)
            return shmrpc__dj_fail(c, "%.40s is out of range for %s", digits,
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
            return shmrpc__dj_mismatch(c, t, v);
        *uv = u;
        return 0;
    }
    if (!json_is_integer(v)) return shmrpc__dj_mismatch(c, t, v);
    return int_in_range(c, t, json_integer_value(v), sv, uv);
}

static const shmrpc_dyn_enumval *enum_by_name(const shmrpc_dyn_type *t, const char *s)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->values[i].name, s) == 0) return &t->values[i];
    return NULL;
}

const shmrpc_dyn_enumval *shmrpc__dj_enum_by_value(const shmrpc_dyn_type *t, int64_t v)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->values[i].value == v) return &t->values[i];
    return NULL;
}

int shmrpc__dj_json_enum(cx *c, const shmrpc_dyn_type *t, const json_t *v,
                         const shmrpc_dyn_enumval **out)
{
    if (!json_is_string(v)) return shmrpc__dj_mismatch(c, t, v);
    if ((*out = enum_by_name(t, json_string_value(v))) != NULL) return 0;
    char names[160] = "";
    for (size_t i = 0; i < t->n && strlen(names) < sizeof names - 40; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                 t->values[i].name);
    char g[64];
    return shmrpc__dj_fail(c, "%s is not a value of enum %s (%s)",
                           shmrpc__dj_shown(c, v, g, sizeof g), t->name, names);
}

/* A map key from a JSON object's key: the integer in canonical decimal (the rule of
 * shmrpc_json_key_int, which generated code reads keys with), or the enum value. */
int shmrpc__dj_json_key(cx *c, const shmrpc_dyn_type *k, const char *key, int64_t *sv, uint64_t *uv)
{
    if (k->kind == SHMRPC_DYN_ENUM) {
        const shmrpc_dyn_enumval *e = enum_by_name(k, key);
        if (e == NULL)
            return shmrpc__dj_fail(c, "key \"%.40s\" is not a value of enum %s", key, k->name);
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
            int rc = v ? shmrpc__dj_mismatch(c, k, v) : shmrpc__dj_nomem(c);
            json_decref(v);
            return rc;
        }
    }
    return shmrpc__dj_fail(c, "key \"%.40s\" is not an integer", key);
}

/* A JSON number as a real (an integer above INT64_MAX included); -1 when v is not one. */
int shmrpc__dj_number_value(const cx *c, const json_t *v, double *d)
{
    const char *digits = shmrpc__dj_big_digits(c, v);
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
bool shmrpc__dj_takes_big(const shmrpc_dyn_type *t)
{
    return shmrpc_dyn_is_int(t->kind) || t->kind == SHMRPC_DYN_F32 || t->kind == SHMRPC_DYN_F64 ||
           t->kind == SHMRPC_DYN_OPT || t->kind == SHMRPC_DYN_ANY;
}
