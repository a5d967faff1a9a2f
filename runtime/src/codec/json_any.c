/* SPDX-License-Identifier: MIT */
/* An any on a @json method's wire (shmrpc/codec.h): plain JSON, no bytes, keys strings
 * only. Written here; read through the dynamic codec's conversion of a JSON value
 * (shmrpc__json_any_to_mp, dynamic_json.c), which json.c's readers do not need. */
#include <math.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "codec/codec.h"

/* A reader's first failure is the one it keeps, as json.c's readers keep theirs. */
static int reader_fail(shmrpc_json_reader *r, int rc, const char *why)
{
    if (!r->why) r->why = why;
    return rc;
}

static json_t *any_to_json(shmrpc_any a, unsigned depth)
{
    if (depth > SHMRPC_ANY_MAX_DEPTH) return NULL;
    shmrpc_any_iter it;
    shmrpc_any k, v;
    int rc;
    switch (shmrpc_any_kind_of(a)) {
    case SHMRPC_ANY_NULL:
        return json_null();
    case SHMRPC_ANY_BOOL: {
        bool b;
        return shmrpc_any_bool(a, &b) == 0 ? json_boolean(b) : NULL;
    }
    case SHMRPC_ANY_INT: {
        int64_t i;
        return shmrpc_any_int(a, &i) == 0 ? json_integer((json_int_t)i) : NULL;
    }
    case SHMRPC_ANY_FLOAT: {
        double d;
        return shmrpc_any_float(a, &d) == 0 && isfinite(d) ? json_real(d) : NULL;
    }
    case SHMRPC_ANY_STRING: {
        shmrpc_str s;
        return shmrpc_any_str(a, &s) == 0 ? json_stringn(s.ptr, s.len) : NULL;
    }
    case SHMRPC_ANY_LIST: {
        json_t *arr = json_array();
        if (arr == NULL || shmrpc_any_iter_init(&it, a) != 0) {
            json_decref(arr);
            return NULL;
        }
        while ((rc = shmrpc_any_next(&it, &v)) == 1)
            if (json_array_append_new(arr, any_to_json(v, depth + 1)) != 0) break;
        if (rc == 0) return arr;
        json_decref(arr);
        return NULL;
    }
    case SHMRPC_ANY_MAP: {
        json_t *obj = json_object();
        if (obj == NULL || shmrpc_any_iter_init(&it, a) != 0) {
            json_decref(obj);
            return NULL;
        }
        while ((rc = shmrpc_any_next(&it, &k)) == 1 && (rc = shmrpc_any_next(&it, &v)) == 1) {
            shmrpc_str s;
            json_t *jv = NULL;
            /* A key twice has no form either: an object would keep one of them. */
            if (shmrpc_any_str(k, &s) != 0 || memchr(s.ptr, '\0', s.len) != NULL ||
                json_object_getn(obj, s.ptr, s.len) != NULL ||
                (jv = any_to_json(v, depth + 1)) == NULL ||
                json_object_setn_new(obj, s.ptr, s.len, jv) != 0) {
                rc = -1;
                break;
            }
        }
        if (rc == 0) return obj;
        json_decref(obj);
        return NULL;
    }
    default: /* bytes have no JSON form; nor has what is no value */
        return NULL;
    }
}

shmrpc_json *shmrpc_json_any(shmrpc_any a)
{
    /* Checked whole first, as shmrpc_mp_write_any checks it: the walk below would stop at the
     * first value of a view that takes in two, and print it alone. */
    shmrpc_any ok;
    if (a.n != 0 && shmrpc_any_parse(a.p, a.n, &ok) != 0) return NULL;
    return (shmrpc_json *)any_to_json(a, 0);
}

/* The parser bounded the depth (SHMRPC_JSON_MAX_DEPTH, the any's own bound) and checked
 * UTF-8, so the msgpack written is a value; its bytes go to the arena, like strings. */
int shmrpc_json_read_any(shmrpc_json_reader *r, const shmrpc_json *v, shmrpc_any *out)
{
    if (!v) return reader_fail(r, SHMRPC_EINVAL, "missing");
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, shmrpc_buf_msgpack_write);
    if (shmrpc__json_any_to_mp((const json_t *)v, &pk) != 0 && !b.err) {
        shmrpc_buf_destroy(&b);
        return reader_fail(r, SHMRPC_EINVAL, "nested more than 128 deep"); /* the parser bounds it */
    }
    uint8_t *p = b.err ? NULL : shmrpc_arena_alloc(r->arena, b.len ? b.len : 1, 1);
    if (p) memcpy(p, b.data, b.len);
    *out = (shmrpc_any){p, b.len};
    shmrpc_buf_destroy(&b);
    return p ? 0 : reader_fail(r, SHMRPC_ENOMEM, "out of memory");
}
