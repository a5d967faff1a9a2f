/* SPDX-License-Identifier: MIT */
/* What the dynamic codec's conversions share (dynamic_values.c: a value's place and
 * message, its JSON text, its checks against a type; dynamic_any.c: the any; dynamic_json.c:
 * the conversions of arguments and results; here, inline: the walk of a JSON array or
 * object into msgpack, which the typed conversion and the any's take alike). */
#ifndef SHMRPC_SRC_DYN_JSON_H
#define SHMRPC_SRC_DYN_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <msgpack.h>

#include "codec/dyn.h"

/* How deeply values may nest, in either direction: JSON's bound, checked before jansson
 * parses, and the bound of what a msgpack result may become, since its JSON is read
 * again (by the page's script, by a shell's tools). The conversions recurse once a level
 * and the page's gateway runs them on civetweb's 100 KiB stacks. */
#define MAX_DEPTH SHMRPC_JSON_MAX_DEPTH

/* Every conversion carries a path to the value it is at ("argument 'points'[1].x") and a
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

size_t shmrpc__dj_path_push(cx *c, const char *fmt, ...) SHMRPC__FMT(2, 3);

void shmrpc__dj_path_pop(cx *c, size_t old);

int shmrpc__dj_fail(cx *c, const char *fmt, ...) SHMRPC__FMT(2, 3);

int shmrpc__dj_nomem(cx *c);

/* The status of a conversion that returned rc, after the buffer b it wrote to (NULL: none)
 * had its say: a write the buffer refused fails the conversion with the buffer's error,
 * whatever the conversion made of the -1 msgpack's packer returned then. */
int shmrpc__dj_status_of(cx *c, int rc, const shmrpc_buf *b);

/* The digits of v when it is such an integer, else NULL. */
const char *shmrpc__dj_big_digits(const cx *c, const json_t *v);

/* A JSON value for a message, cut to a readable length. */
const char *shmrpc__dj_shown(const cx *c, const json_t *v, char *out, size_t cap);

int shmrpc__dj_mismatch(cx *c, const shmrpc_dyn_type *t, const json_t *v);

/* What a walk of a JSON array or object into msgpack does with each value it reaches, and
 * with each key of an object: writes it to pk as arg says (a type, or the any's forms). 0,
 * or -1 (after a message, or the packer's -1). */
typedef int shmrpc__dj_value_to_mp(cx *c, const void *arg, const json_t *v, msgpack_packer *pk);
typedef int shmrpc__dj_key_to_mp(cx *c, const void *arg, const char *key, msgpack_packer *pk);

/* A JSON array as a msgpack array, each element by put one level deeper at "[I]"; the typed
 * conversion and the any's walk it alike. 0, or -1 where an element failed. (inline, so
 * that put is called directly: it runs once an element.) */
static inline int shmrpc__dj_array_to_mp(cx *c, const json_t *v, msgpack_packer *pk,
                                         shmrpc__dj_value_to_mp *put, const void *arg)
{
    size_t n = json_array_size(v);
    if (n > UINT32_MAX) return shmrpc__dj_fail(c, "too many elements");
    msgpack_pack_array(pk, n);
    c->depth++;
    for (size_t i = 0; i < n; i++) {
        size_t old = shmrpc__dj_path_push(c, "[%zu]", i);
        if (put(c, arg, json_array_get(v, i), pk) != 0) return -1;
        shmrpc__dj_path_pop(c, old);
    }
    c->depth--;
    return 0;
}

/* A JSON object as a msgpack map, each member's key by key and value by put, one level
 * deeper at "[\"KEY\"]"; as the array above. */
static inline int shmrpc__dj_object_to_mp(cx *c, const json_t *v, msgpack_packer *pk,
                                          shmrpc__dj_key_to_mp *key, shmrpc__dj_value_to_mp *put,
                                          const void *arg)
{
    msgpack_pack_map(pk, json_object_size(v));
    const char *k;
    json_t *val;
    c->depth++;
    json_object_foreach((json_t *)v, k, val)
    {
        size_t old = shmrpc__dj_path_push(c, "[\"%.40s\"]", k);
        if (key(c, arg, k, pk) != 0 || put(c, arg, val, pk) != 0) return -1;
        shmrpc__dj_path_pop(c, old);
    }
    c->depth--;
    return 0;
}

void shmrpc__dj_out_str(shmrpc_buf *b, const char *s);

/* A JSON string of n bytes of valid UTF-8. */
void shmrpc__dj_out_json_str(shmrpc_buf *b, const char *p, size_t n);

/* The shortest text that reads back as the same double (or float), with ".0" on whole
 * numbers so the value stays a real. NaN and infinities have no JSON form. */
int shmrpc__dj_out_real(cx *c, shmrpc_buf *b, double d, bool single);

void shmrpc__dj_out_i64(shmrpc_buf *b, int64_t v);

void shmrpc__dj_out_u64(shmrpc_buf *b, uint64_t v);

/* v (taken, NULL for out of memory) as jansson writes it into a generated @json body. */
int shmrpc__dj_out_jansson(cx *c, shmrpc_buf *b, json_t *v);

/* A string of n bytes of valid UTF-8, escaped as c->wire wants. */
int shmrpc__dj_out_string(cx *c, shmrpc_buf *b, const char *p, size_t n);

void shmrpc__dj_out_base64(cx *c, shmrpc_buf *b, const uint8_t *p, size_t n);

/* A base64 JSON string decoded into malloc'd memory (*out, *n); -1 with a message.
 * Canonical base64 only: padded, nothing outside the alphabet, no bits set in the
 * padding (libsodium refuses the rest). */
int shmrpc__dj_json_base64(cx *c, const shmrpc_dyn_type *t, const json_t *v, uint8_t **out,
                           size_t *n);

/* A JSON integer (or, for u64, a string of decimal digits, since JSON parsers hold
 * integers as int64) in the type's range. */
int shmrpc__dj_json_int(cx *c, const shmrpc_dyn_type *t, const json_t *v, int64_t *sv,
                        uint64_t *uv);

const shmrpc_dyn_enumval *shmrpc__dj_enum_by_value(const shmrpc_dyn_type *t, int64_t v);

int shmrpc__dj_json_enum(cx *c, const shmrpc_dyn_type *t, const json_t *v,
                         const shmrpc_dyn_enumval **out);

/* A map key from a JSON object's key: the integer in canonical decimal (the rule of
 * shmrpc_json_key_int, which generated code reads keys with), or the enum value. */
int shmrpc__dj_json_key(cx *c, const shmrpc_dyn_type *k, const char *key, int64_t *sv,
                        uint64_t *uv);

/* A JSON number as a real (an integer above INT64_MAX included); -1 when v is not one. */
int shmrpc__dj_number_value(const cx *c, const json_t *v, double *d);

/* Whether a marked big integer may stand for a value of type t (any other type refuses
 * it as the number it is, not as the string it was read as). */
bool shmrpc__dj_takes_big(const shmrpc_dyn_type *t);

int shmrpc__dj_json_to_any(cx *c, const json_t *v, msgpack_packer *pk, bool forms, bool key);

/* A checked any as JSON text: with c->wire, a @json method's plain JSON (bytes and keys
 * other than strings fail); else the codec's JSON with its forms. */
int shmrpc__dj_any_out(cx *c, shmrpc_any a, shmrpc_buf *b);

/* A JSON value of an any (forms read as the codec's JSON, or not as on a @json wire) to
 * JSON text as any_out writes it. */
int shmrpc__dj_any_json_to_json(cx *c, const json_t *v, bool forms, shmrpc_buf *out);

#endif
