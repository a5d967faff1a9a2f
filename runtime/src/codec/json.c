/* SPDX-License-Identifier: MIT */
/* The shmrpc_json API for @json methods: jansson behind opaque values, plus base64 for
 * bytes (libsodium's) and decimal map keys. jansson validates UTF-8 and rejects duplicate keys when
 * asked; its cap on nesting (2048) is too deep for a small thread stack, so the depth is
 * bounded before it parses (shmrpc_json_check_depth). Nothing of jansson leaks through
 * the public headers. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>
#include <sodium.h>

#include "codec/codec.h"

/* shmrpc_json is jansson's json_t under another name. */
static json_t *J(const shmrpc_json *v)
{
    return (json_t *)v;
}

static shmrpc_json *S(json_t *v)
{
    return (shmrpc_json *)v;
}

/* --- why texts ------------------------------------------------------------------- */

enum kind { K_OBJECT, K_ARRAY, K_STRING, K_INTEGER, K_REAL, K_BOOL, K_NULL, K_COUNT };
enum want { W_BOOL, W_INT, W_NUMBER, W_STRING, W_ARRAY, W_OBJECT, W_COUNT };

#define GOT(exp)                                                                                   \
    {                                                                                              \
        "expected " exp ", got object", "expected " exp ", got array",                             \
            "expected " exp ", got string", "expected " exp ", got integer",                       \
            "expected " exp ", got float", "expected " exp ", got boolean",                        \
            "expected " exp ", got null",                                                          \
    }

static const char *const mismatch_why[W_COUNT][K_COUNT] = {
    [W_BOOL] = GOT("boolean"),  [W_INT] = GOT("integer"), [W_NUMBER] = GOT("number"),
    [W_STRING] = GOT("string"), [W_ARRAY] = GOT("array"), [W_OBJECT] = GOT("object"),
};

static const char WHY_MISSING[] = "missing";
static const char WHY_NOMEM[] = "out of memory";

static enum kind kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return K_OBJECT;
    case JSON_ARRAY:
        return K_ARRAY;
    case JSON_STRING:
        return K_STRING;
    case JSON_INTEGER:
        return K_INTEGER;
    case JSON_REAL:
        return K_REAL;
    case JSON_TRUE:
    case JSON_FALSE:
        return K_BOOL;
    case JSON_NULL:
        break;
    }
    return K_NULL;
}

static int fail(shmrpc_json_reader *r, int rc, const char *why)
{
    if (!r->why) r->why = why;
    return rc;
}

static int mismatch(shmrpc_json_reader *r, enum want w, const shmrpc_json *v)
{
    if (!v) return fail(r, SHMRPC_EINVAL, WHY_MISSING);
    return fail(r, SHMRPC_EINVAL, mismatch_why[w][kind_of(J(v))]);
}

/* --- building ---------------------------------------------------------------------- */

shmrpc_json *shmrpc_json_object(void)
{
    return S(json_object());
}

shmrpc_json *shmrpc_json_array(void)
{
    return S(json_array());
}

shmrpc_json *shmrpc_json_null(void)
{
    return S(json_null());
}

shmrpc_json *shmrpc_json_bool(bool v)
{
    return S(json_boolean(v));
}

shmrpc_json *shmrpc_json_int(int64_t v)
{
    return S(json_integer((json_int_t)v));
}

shmrpc_json *shmrpc_json_uint(uint64_t v)
{
    if (v > (uint64_t)INT64_MAX) return NULL;
    return S(json_integer((json_int_t)v));
}

shmrpc_json *shmrpc_json_real(double v)
{
    if (!isfinite(v)) return NULL;
    return S(json_real(v));
}

shmrpc_json *shmrpc_json_string(shmrpc_str s)
{
    /* json_stringn checks UTF-8 and returns NULL for anything else. */
    return S(json_stringn(s.ptr ? s.ptr : "", s.len));
}

/* base64 is libsodium's (RFC 4648, standard alphabet, with padding). */
shmrpc_json *shmrpc_json_base64(shmrpc_bytes b)
{
    if (b.len > SIZE_MAX / 4 * 3 - 3) return NULL; /* its text would not fit in a size_t */
    size_t n = sodium_base64_ENCODED_LEN(b.len, sodium_base64_VARIANT_ORIGINAL);
    char *text = malloc(n);
    if (!text) return NULL;
    sodium_bin2base64(text, n, b.ptr, b.len, sodium_base64_VARIANT_ORIGINAL);
    json_t *v = json_stringn_nocheck(text, n - 1);
    free(text);
    return S(v);
}

int shmrpc_json_set(shmrpc_json *obj, const char *key, shmrpc_json *val)
{
    if (!key) {
        json_decref(J(val));
        return SHMRPC_EINVAL;
    }
    return shmrpc_json_setn(obj, shmrpc_str_c(key), val);
}

int shmrpc_json_setn(shmrpc_json *obj, shmrpc_str key, shmrpc_json *val)
{
    if (!val) return SHMRPC_EINVAL;
    /* A NUL in a key would dump fine but jansson's parser refuses it: refuse it here,
     * so what one side writes the other can read. */
    if (!json_is_object(J(obj)) || (!key.ptr && key.len) ||
        (key.len && memchr(key.ptr, '\0', key.len))) {
        json_decref(J(val));
        return SHMRPC_EINVAL;
    }
    /* Takes val also when it fails: a key that is not UTF-8, or no memory. */
    if (json_object_setn_new(J(obj), key.ptr ? key.ptr : "", key.len, J(val))) return SHMRPC_EINVAL;
    return 0;
}

int shmrpc_json_append(shmrpc_json *arr, shmrpc_json *val)
{
    if (!val) return SHMRPC_EINVAL;
    if (!json_is_array(J(arr))) {
        json_decref(J(val));
        return SHMRPC_EINVAL;
    }
    if (json_array_append_new(J(arr), J(val))) return SHMRPC_ENOMEM;
    return 0;
}

static int dump_to_buf(const char *p, size_t n, void *out)
{
    return shmrpc_buf_append(out, p, n) ? -1 : 0;
}

int shmrpc_json_dump(shmrpc_json *v, shmrpc_buf *out)
{
    if (!v) return SHMRPC_EINVAL;
    /* Straight into the buffer: no intermediate string. */
    int rc = json_dump_callback(J(v), dump_to_buf, out, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(J(v));
    if (out->err) return out->err;
    return rc ? SHMRPC_EINVAL : 0;
}

void shmrpc_json_free(shmrpc_json *v)
{
    json_decref(J(v));
}

/* --- reading ----------------------------------------------------------------------- */

int shmrpc_json_check_depth(const void *p, size_t n, unsigned max)
{
    const unsigned char *s = p, *end = p ? s + n : s;
    unsigned depth = 0;
    bool in_string = false;
    for (; s < end; s++) {
        unsigned char c = *s;
        if (in_string) {
            if (c == '\\')
                s++; /* the escaped character, '"' or '\\' included, is no delimiter */
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max) return SHMRPC_EINVAL;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return 0;
}

int shmrpc_json_parse(shmrpc_json_reader *r, shmrpc_arena *arena, const void *p, size_t n)
{
    memset(r, 0, sizeof *r);
    r->arena = arena;
    /* Before jansson, whose parser recurses once per level. */
    if (shmrpc_json_check_depth(p, n, SHMRPC_JSON_MAX_DEPTH) != 0) {
        snprintf(r->detail, sizeof r->detail, "arrays and objects nest more than %u deep",
                 SHMRPC_JSON_MAX_DEPTH);
        return fail(r, SHMRPC_EINVAL, "nested too deeply");
    }
    json_error_t e;
    /* Duplicate keys are rejected: which one wins differs between parsers, and a
     * value the receiver does not see is a way to smuggle one past a check. */
    size_t flags = JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_t *root = json_loadb(p ? p : "", p ? n : 0, flags, &e);
    if (!root) {
        /* A long parser message is cut short, on purpose. */
        if (snprintf(r->detail, sizeof r->detail, "line %d, column %d: %s", e.line, e.column,
                     e.text) >= (int)sizeof r->detail)
            r->detail[sizeof r->detail - 1] = '\0';
        return fail(r, SHMRPC_EINVAL, "malformed JSON");
    }
    r->root = S(root);
    return 0;
}

void shmrpc_json_release(shmrpc_json_reader *r)
{
    json_decref(J(r->root));
    r->root = NULL;
    r->iter_obj = NULL;
    r->iter = NULL;
}

const shmrpc_json *shmrpc_json_get(const shmrpc_json *obj, const char *key)
{
    if (!json_is_object(J(obj)) || !key) return NULL;
    return S(json_object_get(J(obj), key));
}

bool shmrpc_json_is_null(const shmrpc_json *v)
{
    return !v || json_is_null(J(v));
}

int shmrpc_json_read_array(shmrpc_json_reader *r, const shmrpc_json *v, size_t *n)
{
    if (!json_is_array(J(v))) return mismatch(r, W_ARRAY, v);
    *n = json_array_size(J(v));
    return 0;
}

const shmrpc_json *shmrpc_json_at(const shmrpc_json *arr, size_t i)
{
    return S(json_array_get(J(arr), i));
}

int shmrpc_json_read_object(shmrpc_json_reader *r, const shmrpc_json *v, size_t *n)
{
    if (!json_is_object(J(v))) return mismatch(r, W_OBJECT, v);
    *n = json_object_size(J(v));
    return 0;
}

int shmrpc_json_member(shmrpc_json_reader *r, const shmrpc_json *obj, size_t i, shmrpc_str *key,
                       const shmrpc_json **val)
{
    if (!json_is_object(J(obj))) return mismatch(r, W_OBJECT, obj);
    if (i >= json_object_size(J(obj))) return fail(r, SHMRPC_EINVAL, "no such member");
    /* jansson has no member-by-index: continue from the last member read when the
     * caller walks in order, else walk from the start. */
    void *it;
    size_t at;
    if (r->iter_obj == obj && r->iter && r->iter_i <= i) {
        it = r->iter;
        at = r->iter_i;
    } else {
        it = json_object_iter(J(obj));
        at = 0;
    }
    for (; it && at < i; at++)
        it = json_object_iter_next(J(obj), it);
    if (!it) return fail(r, SHMRPC_EINVAL, "no such member");

    const char *k = json_object_iter_key(it);
    size_t klen = json_object_iter_key_len(it);
    char *copy = shmrpc_arena_strndup(r->arena, k, klen);
    if (!copy) return fail(r, SHMRPC_ENOMEM, WHY_NOMEM);
    key->ptr = copy;
    key->len = klen;
    *val = S(json_object_iter_value(it));

    r->iter_obj = obj;
    r->iter = json_object_iter_next(J(obj), it);
    r->iter_i = i + 1;
    return 0;
}

void shmrpc_json_iter_init(shmrpc_json_iter *it, const shmrpc_json *obj)
{
    it->obj = obj;
    it->it = json_is_object(J(obj)) ? json_object_iter(J(obj)) : NULL;
}

int shmrpc_json_iter_next(shmrpc_json_reader *r, shmrpc_json_iter *it, shmrpc_str *key,
                          const shmrpc_json **val)
{
    if (!it->it) return 0;
    const char *k = json_object_iter_key(it->it);
    size_t klen = json_object_iter_key_len(it->it);
    char *copy = shmrpc_arena_strndup(r->arena, k, klen);
    if (!copy) return fail(r, SHMRPC_ENOMEM, WHY_NOMEM);
    key->ptr = copy;
    key->len = klen;
    *val = S(json_object_iter_value(it->it));
    it->it = json_object_iter_next(J(it->obj), it->it);
    return 1;
}

int shmrpc_json_read_bool(shmrpc_json_reader *r, const shmrpc_json *v, bool *out)
{
    if (!json_is_boolean(J(v))) return mismatch(r, W_BOOL, v);
    *out = json_is_true(J(v));
    return 0;
}

int shmrpc_json_read_int(shmrpc_json_reader *r, const shmrpc_json *v, int64_t min, int64_t max,
                         int64_t *out)
{
    if (!json_is_integer(J(v))) return mismatch(r, W_INT, v);
    int64_t x = json_integer_value(J(v));
    if (x < min || x > max) return fail(r, SHMRPC_EINVAL, shmrpc__int_range_why(min, max));
    *out = x;
    return 0;
}

int shmrpc_json_read_uint(shmrpc_json_reader *r, const shmrpc_json *v, uint64_t max, uint64_t *out)
{
    if (!json_is_integer(J(v))) return mismatch(r, W_INT, v);
    int64_t x = json_integer_value(J(v));
    if (x < 0 || (uint64_t)x > max) return fail(r, SHMRPC_EINVAL, shmrpc__uint_range_why(max));
    *out = (uint64_t)x;
    return 0;
}

int shmrpc_json_read_f64(shmrpc_json_reader *r, const shmrpc_json *v, double *out)
{
    if (!json_is_number(J(v))) return mismatch(r, W_NUMBER, v);
    *out = json_number_value(J(v));
    return 0;
}

int shmrpc_json_read_str(shmrpc_json_reader *r, const shmrpc_json *v, shmrpc_str *out)
{
    if (!json_is_string(J(v))) return mismatch(r, W_STRING, v);
    size_t n = json_string_length(J(v));
    char *s = shmrpc_arena_strndup(r->arena, json_string_value(J(v)), n);
    if (!s) return fail(r, SHMRPC_ENOMEM, WHY_NOMEM);
    out->ptr = s;
    out->len = n;
    return 0;
}

int shmrpc_json_read_base64(shmrpc_json_reader *r, const shmrpc_json *v, shmrpc_bytes *out)
{
    if (!json_is_string(J(v))) return mismatch(r, W_STRING, v);
    size_t n = json_string_length(J(v)), len;
    if (n % 4) return fail(r, SHMRPC_EINVAL, "invalid base64");
    uint8_t *p = shmrpc_arena_alloc(r->arena, n / 4 * 3 + 1, 1);
    if (!p) return fail(r, SHMRPC_ENOMEM, WHY_NOMEM);
    /* Canonical base64 only: padded, no whitespace, no bits set in the padding. */
    if (sodium_base642bin(p, n / 4 * 3 + 1, json_string_value(J(v)), n, NULL, &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return fail(r, SHMRPC_EINVAL, "invalid base64");
    out->ptr = p;
    out->len = len;
    return 0;
}

/* --- integer map keys ---------------------------------------------------------------- */

enum dec { DEC_OK, DEC_NOT_INT, DEC_TOO_BIG };

/* The canonical decimal form only ("-12", not "+12", "012", "-0" or " 12"), so each
 * integer has one key and two keys never name the same entry. */
static enum dec parse_decimal(shmrpc_str key, bool *neg, uint64_t *u)
{
    const char *p = key.ptr;
    size_t n = key.len, i = 0;
    if (!p || n == 0) return DEC_NOT_INT;
    *neg = p[0] == '-';
    if (*neg) i++;
    if (i == n) return DEC_NOT_INT;
    if (p[i] == '0' && (n - i > 1 || *neg)) return DEC_NOT_INT;
    uint64_t v = 0;
    bool big = false;
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)p[i] - '0';
        if (d > 9) return DEC_NOT_INT;
        if (v > (UINT64_MAX - d) / 10) big = true;
        v = v * 10 + d;
    }
    *u = v;
    return big ? DEC_TOO_BIG : DEC_OK;
}

static const char WHY_KEY[] = "map key is not an integer";

/* key as a decimal integer: its sign and magnitude, or a failure with why (not an integer,
 * or range when it has too many digits). */
static int read_key(shmrpc_json_reader *r, shmrpc_str key, const char *range, bool *neg,
                    uint64_t *u)
{
    switch (parse_decimal(key, neg, u)) {
    case DEC_NOT_INT:
        return fail(r, SHMRPC_EINVAL, WHY_KEY);
    case DEC_TOO_BIG:
        return fail(r, SHMRPC_EINVAL, range);
    case DEC_OK:
        break;
    }
    return 0;
}

int shmrpc_json_key_int(shmrpc_json_reader *r, shmrpc_str key, int64_t min, int64_t max,
                        int64_t *out)
{
    bool neg;
    uint64_t u;
    const char *range = shmrpc__int_range_why(min, max);
    if (read_key(r, key, range, &neg, &u) != 0) return SHMRPC_EINVAL;
    int64_t v;
    if (neg) {
        if (u > (uint64_t)INT64_MAX + 1) return fail(r, SHMRPC_EINVAL, range);
        v = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
    } else {
        if (u > (uint64_t)INT64_MAX) return fail(r, SHMRPC_EINVAL, range);
        v = (int64_t)u;
    }
    if (v < min || v > max) return fail(r, SHMRPC_EINVAL, range);
    *out = v;
    return 0;
}

int shmrpc_json_key_uint(shmrpc_json_reader *r, shmrpc_str key, uint64_t max, uint64_t *out)
{
    bool neg;
    uint64_t u;
    const char *range = shmrpc__uint_range_why(max);
    if (read_key(r, key, range, &neg, &u) != 0) return SHMRPC_EINVAL;
    if (neg || u > max) return fail(r, SHMRPC_EINVAL, range);
    *out = u;
    return 0;
}

shmrpc_str shmrpc_json_int_key(int64_t v, char buf[24])
{
    int n = snprintf(buf, 24, "%" PRId64, v);
    return (shmrpc_str){buf, (size_t)n};
}

shmrpc_str shmrpc_json_uint_key(uint64_t v, char buf[24])
{
    int n = snprintf(buf, 24, "%" PRIu64, v);
    return (shmrpc_str){buf, (size_t)n};
}
