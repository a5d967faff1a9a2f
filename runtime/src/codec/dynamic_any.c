/* SPDX-License-Identifier: MIT */
/* The dynamic codec's any (dyn_json.h): a JSON value as an any's msgpack, and an any as
 * JSON text, with the two forms JSON lacks (docs/dynamic.md, "any"). */
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

/* --- any ---------------------------------------------------------------------------------
 * An any's JSON (docs/dynamic.md, "any"): JSON's own values as they are, and two forms JSON
 * lacks, each an object of one member: {"base64": "..."} for bytes, and {"map": [[key,
 * value], ...]} for a map whose keys are not all strings. A map that would read back as one
 * of them (one entry, keyed "base64" or "map") or whose key holds a NUL byte prints in the
 * second form too, so that any value prints to JSON that reads back to the same value.
 * On a @json method's wire an any is plain JSON: no forms, and no bytes nor other keys. */

int shmrpc__dj_json_to_any(cx *c, const json_t *v, msgpack_packer *pk, bool forms, bool key);

/* A JSON object in one of the two forms: its member, or NULL. */
static const json_t *form_of(const json_t *v, const char *name)
{
    if (!json_is_object(v) || json_object_size(v) != 1) return NULL;
    return json_object_get(v, name);
}

static int any_pairs(cx *c, const json_t *pairs, msgpack_packer *pk)
{
    size_t n = json_array_size(pairs);
    if (n > UINT32_MAX) return shmrpc__dj_fail(c, "too many entries");
    msgpack_pack_map(pk, n);
    c->depth++;
    for (size_t i = 0; i < n; i++) {
        const json_t *kv = json_array_get(pairs, i);
        size_t old = shmrpc__dj_path_push(c, ".map[%zu]", i);
        if (!json_is_array(kv) || json_array_size(kv) != 2)
            return shmrpc__dj_fail(c, "expected a [key, value] pair");
        if (shmrpc__dj_json_to_any(c, json_array_get(kv, 0), pk, true, true) != 0 ||
            shmrpc__dj_json_to_any(c, json_array_get(kv, 1), pk, true, false) != 0)
            return -1;
        shmrpc__dj_path_pop(c, old);
    }
    c->depth--;
    return 0;
}

/* An element of an array or a member's value of an object, for the walks of dyn_json.h
 * (arg: the forms, as the array or object has them). */
static int any_value(cx *c, const void *arg, const json_t *v, msgpack_packer *pk)
{
    return shmrpc__dj_json_to_any(c, v, pk, *(const bool *)arg, false);
}

/* An object's key: a string, as it is. */
static int any_key(cx *c, const void *arg, const char *key, msgpack_packer *pk)
{
    (void)c, (void)arg;
    msgpack_pack_str_with_body(pk, key, strlen(key));
    return 0;
}

/* A JSON value to an any's msgpack; forms: read the two forms above (not on a @json wire);
 * key: the value is a map's key, so a scalar. */
int shmrpc__dj_json_to_any(cx *c, const json_t *v, msgpack_packer *pk, bool forms, bool key)
{
    if (c->depth > MAX_DEPTH) return shmrpc__dj_fail(c, "nested more than %u deep", MAX_DEPTH);
    const char *digits = shmrpc__dj_big_digits(c, v);
    if (digits != NULL) {
        errno = 0;
        unsigned long long u = strtoull(digits, NULL, 10);
        if (errno != 0) return shmrpc__dj_fail(c, "%.40s is out of range (u64 at most)", digits);
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
    case JSON_ARRAY:
        if (key) return shmrpc__dj_fail(c, "a map's key must be a scalar, not an array");
        return shmrpc__dj_array_to_mp(c, v, pk, any_value, &forms);
    case JSON_OBJECT:
        if (forms && (f = form_of(v, "base64")) != NULL && json_is_string(f)) {
            static const shmrpc_dyn_type bytes = {.kind = SHMRPC_DYN_BYTES};
            uint8_t *p;
            size_t n;
            size_t old = shmrpc__dj_path_push(c, ".base64");
            if (shmrpc__dj_json_base64(c, &bytes, f, &p, &n) != 0) return -1;
            shmrpc__dj_path_pop(c, old);
            msgpack_pack_bin_with_body(pk, p, n);
            free(p);
            return 0;
        }
        if (key) return shmrpc__dj_fail(c, "a map's key must be a scalar, not an object");
        if (forms && (f = form_of(v, "map")) != NULL && json_is_array(f))
            return any_pairs(c, f, pk);
        return shmrpc__dj_object_to_mp(c, v, pk, any_key, any_value, &forms);
    }
    return shmrpc__dj_fail(c, "not a JSON value");
}

int shmrpc__json_any_to_mp(const json_t *v, msgpack_packer *pk)
{
    char err[256];
    cx c = {.err = err, .cap = sizeof err};
    c.plen = (size_t)snprintf(c.path, sizeof c.path, "any");
    if (shmrpc__dj_json_to_any(&c, v, pk, false, false) == 0) return 0;
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
    if (n > 1 && seen == NULL) return shmrpc__dj_nomem(c), false;
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
            shmrpc__dj_nomem(c);
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
    return shmrpc__dj_fail(c, "%s", shmrpc_errmsg());
}

/* A checked any as JSON text: with c->wire, a @json method's plain JSON (bytes and keys
 * other than strings fail); else the codec's JSON with its forms. */
int shmrpc__dj_any_out(cx *c, shmrpc_any a, shmrpc_buf *b)
{
    if (c->depth > MAX_DEPTH) return shmrpc__dj_fail(c, "nested more than %u deep", MAX_DEPTH);
    shmrpc_any_iter it;
    shmrpc_any e, v;
    size_t n = 0, i = 0;
    int rc;
    switch (shmrpc_any_kind_of(a)) {
    case SHMRPC_ANY_NULL:
        shmrpc__dj_out_str(b, "null");
        return 0;
    case SHMRPC_ANY_BOOL: {
        bool x = false;
        shmrpc_any_bool(a, &x);
        shmrpc__dj_out_str(b, x ? "true" : "false");
        return 0;
    }
    case SHMRPC_ANY_INT: {
        int64_t x;
        uint64_t u;
        if (shmrpc_any_int(a, &x) == 0) {
            shmrpc__dj_out_i64(b, x);
        } else if (shmrpc_any_uint(a, &u) == 0) {
            if (c->wire)
                return shmrpc__dj_fail(c,
                                       "%" PRIu64
                                       " has no JSON form in a @json method (integers travel "
                                       "as int64)",
                                       u);
            shmrpc__dj_out_u64(b, u);
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
                return shmrpc__dj_fail(c, "%s has no JSON form", isnan(d) ? "NaN" : "an infinity");
            return shmrpc__dj_out_jansson(c, b, json_real(d));
        }
        return shmrpc__dj_out_real(c, b, d, false);
    }
    case SHMRPC_ANY_STRING: {
        shmrpc_str s = {0};
        if (shmrpc_any_str(a, &s) != 0) return any_fail(c);
        return shmrpc__dj_out_string(c, b, s.ptr, s.len);
    }
    case SHMRPC_ANY_BYTES: {
        shmrpc_bytes x = {0};
        if (shmrpc_any_bytes(a, &x) != 0) return any_fail(c);
        if (c->wire)
            return shmrpc__dj_fail(
                c, "bytes have no JSON form in a @json method (send them in a @msgpack "
                   "one, or as a string)");
        shmrpc__dj_out_str(b, "{\"base64\":");
        shmrpc__dj_out_base64(c, b, x.ptr, x.len);
        shmrpc__dj_out_str(b, "}");
        return c->failed ? -1 : 0;
    }
    case SHMRPC_ANY_LIST:
        if (shmrpc_any_iter_init(&it, a) != 0) return any_fail(c);
        shmrpc__dj_out_str(b, "[");
        c->depth++;
        while ((rc = shmrpc_any_next(&it, &e)) == 1) {
            size_t old = shmrpc__dj_path_push(c, "[%zu]", i);
            if (i++) shmrpc__dj_out_str(b, ",");
            if (shmrpc__dj_any_out(c, e, b) != 0) return -1;
            shmrpc__dj_path_pop(c, old);
        }
        if (rc < 0) return any_fail(c);
        c->depth--;
        shmrpc__dj_out_str(b, "]");
        return 0;
    case SHMRPC_ANY_MAP: {
        if (shmrpc_any_len(a, &n) != 0 || shmrpc_any_iter_init(&it, a) != 0) return any_fail(c);
        bool plain, twice;
        if (!plain_map(c, a, n, &plain, &twice)) return -1;
        if (twice && c->wire)
            return shmrpc__dj_fail(c,
                                   "a key appears twice, which a @json peer refuses in an object");
        if (!plain && c->wire) {
            /* A @json peer reads an object: a string key with a NUL is refused as jansson
             * refuses it; one keyed "map" or "base64" is plain JSON there. */
            plain = true;
        }
        shmrpc__dj_out_str(b, plain ? "{" : "{\"map\":[");
        c->depth++;
        while ((rc = shmrpc_any_next(&it, &e)) == 1 && (rc = shmrpc_any_next(&it, &v)) == 1) {
            shmrpc_str ks;
            bool str_key = shmrpc_any_str(e, &ks) == 0;
            size_t old = str_key ? shmrpc__dj_path_push(c, "[\"%.*s\"]",
                                                        ks.len > 40 ? 40 : (int)ks.len, ks.ptr)
                                 : shmrpc__dj_path_push(c, ".map[%zu]", i);
            if (i++) shmrpc__dj_out_str(b, ",");
            if (plain) {
                if (!str_key)
                    return shmrpc__dj_fail(
                        c, "a map key that is not a string has no JSON form in a @json "
                           "method");
                if (memchr(ks.ptr, 0, ks.len) != NULL)
                    return shmrpc__dj_fail(
                        c, "a key holds a NUL byte, which jansson refuses in an object "
                           "key");
                if (shmrpc__dj_out_string(c, b, ks.ptr, ks.len) != 0) return -1;
                shmrpc__dj_out_str(b, ":");
            } else {
                shmrpc__dj_out_str(b, "[");
                if (shmrpc__dj_any_out(c, e, b) != 0) return -1;
                shmrpc__dj_out_str(b, ",");
            }
            if (shmrpc__dj_any_out(c, v, b) != 0) return -1;
            if (!plain) shmrpc__dj_out_str(b, "]");
            shmrpc__dj_path_pop(c, old);
        }
        if (rc < 0) return any_fail(c);
        c->depth--;
        shmrpc__dj_out_str(b, plain ? "}" : "]}");
        return 0;
    }
    default:
        return shmrpc__dj_fail(c, "the bytes of an any are malformed");
    }
}

/* A JSON value of an any (forms read as the codec's JSON, or not as on a @json wire) to
 * JSON text as any_out writes it. */
int shmrpc__dj_any_json_to_json(cx *c, const json_t *v, bool forms, shmrpc_buf *out)
{
    shmrpc_buf tmp;
    shmrpc_buf_init(&tmp);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &tmp, shmrpc_buf_msgpack_write);
    unsigned depth = c->depth;
    int rc = shmrpc__dj_json_to_any(c, v, &pk, forms, false);
    c->depth = depth;
    shmrpc_any a;
    if (rc == 0 && tmp.err) {
        c->status = tmp.err;
        rc = shmrpc__dj_fail(c, "cannot encode: %s", shmrpc_strerror(tmp.err));
    }
    if (rc == 0 && shmrpc_any_parse(tmp.data, tmp.len, &a) != 0) rc = any_fail(c);
    if (rc == 0) rc = shmrpc__dj_any_out(c, a, out);
    shmrpc_buf_destroy(&tmp);
    return rc;
}
