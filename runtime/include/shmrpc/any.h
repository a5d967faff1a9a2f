/* SPDX-License-Identifier: MIT */
/* The .svc type `any`, a dynamic value (null, bool, integer, float, string, bytes, list,
 * map, nested), held as the msgpack bytes it travels in: a read-only view over received
 * bytes, checked once when it is decoded, and a builder that writes one into a shmrpc_buf
 * with no allocation per node. docs/svc-language.md ("any") and docs/dynamic.md. */
#ifndef SHMRPC_ANY_H
#define SHMRPC_ANY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/buf.h>
#include <shmrpc/codec.h>
#include <shmrpc/decls.h>

SHMRPC_BEGIN_DECLS

/* One value's msgpack bytes. A decoded any points into the message it came in (the
 * request, until the handler returns; the response, until the client's next call; a
 * queue's or map's buffer, until it is used again), as strings and bytes do. The zero
 * value {NULL, 0} is null. */
typedef struct shmrpc_any {
    const uint8_t *p;
    size_t n;
} shmrpc_any;

typedef enum shmrpc_any_kind {
    SHMRPC_ANY_NULL,
    SHMRPC_ANY_BOOL,
    SHMRPC_ANY_INT, /* from INT64_MIN to UINT64_MAX */
    SHMRPC_ANY_FLOAT,
    SHMRPC_ANY_STRING, /* UTF-8 */
    SHMRPC_ANY_BYTES,
    SHMRPC_ANY_LIST,
    SHMRPC_ANY_MAP,     /* keys are scalars: null, bool, integer, float, string or bytes */
    SHMRPC_ANY_INVALID, /* bytes that do not start with a value of the kinds above */
} shmrpc_any_kind;

/* How deeply lists and maps may nest in one any, counted from the any: JSON's bound
 * (SHMRPC_JSON_MAX_DEPTH), so that whatever one side accepts every side can read, the
 * dynamic codec, the page and Python included. */
#define SHMRPC_ANY_MAX_DEPTH 128u

/* --- checking --------------------------------------------------------------------------
 * A value is checked whole before anyone reads it: every header and length against the
 * bytes left, every count against the least bytes its elements take, strings UTF-8, map
 * keys scalars, no msgpack extension types, at most SHMRPC_ANY_MAX_DEPTH deep. Checked
 * without recursion. */

/* Reads one value at r (consumed) into *out, pointing into r's bytes. SHMRPC_EINVAL with
 * r->why ("truncated", "string is not UTF-8", "nested more than 128 deep", ...). */
int shmrpc_mp_read_any(shmrpc_mp_reader *r, shmrpc_any *out);
/* The n bytes at p as exactly one value (nothing after it). SHMRPC_EINVAL with the reason
 * in shmrpc_errmsg(). */
int shmrpc_any_parse(const void *p, size_t n, shmrpc_any *out);

/* --- reading ---------------------------------------------------------------------------
 * Each read checks its own bytes against a.n again (the bytes may sit in memory another
 * process can write), so no read goes past them whatever they hold: malformed bytes give
 * SHMRPC_EINVAL, a value of another kind too. None allocates. */

shmrpc_any_kind shmrpc_any_kind_of(shmrpc_any a);
bool shmrpc_any_is_null(shmrpc_any a);
int shmrpc_any_bool(shmrpc_any a, bool *out);
/* An integer in int64's range (SHMRPC_EINVAL above INT64_MAX: read it with _uint). */
int shmrpc_any_int(shmrpc_any a, int64_t *out);
/* A non-negative integer. */
int shmrpc_any_uint(shmrpc_any a, uint64_t *out);
/* A float (a 32-bit one widened) or an integer converted. */
int shmrpc_any_float(shmrpc_any a, double *out);
/* Both point into a's bytes; a string is not NUL-terminated. */
int shmrpc_any_str(shmrpc_any a, shmrpc_str *out);
int shmrpc_any_bytes(shmrpc_any a, shmrpc_bytes *out);
/* The elements of a list, or the entries (pairs) of a map. */
int shmrpc_any_len(shmrpc_any a, size_t *n);
/* Element i of a list (walks the i before it: a loop over all of them is the iterator's). */
int shmrpc_any_at(shmrpc_any a, size_t i, shmrpc_any *out);
/* Entry i of a map, in wire order. */
int shmrpc_any_entry(shmrpc_any a, size_t i, shmrpc_any *key, shmrpc_any *val);
/* The value of the first entry whose key is the string key: 0, SHMRPC_ENOENT when there is
 * none, SHMRPC_EINVAL when a is not a map. */
int shmrpc_any_get(shmrpc_any a, const char *key, shmrpc_any *val);

/* A walk over a list's elements, or a map's keys and values in turn (key, value, key, ...). */
typedef struct shmrpc_any_iter {
    const uint8_t *p, *end;
    uint64_t left;
} shmrpc_any_iter;

/* SHMRPC_EINVAL unless a is a list or a map. */
int shmrpc_any_iter_init(shmrpc_any_iter *it, shmrpc_any a);
/* 1 with the next value, 0 at the end, SHMRPC_EINVAL on malformed bytes. */
int shmrpc_any_next(shmrpc_any_iter *it, shmrpc_any *out);

/* --- building --------------------------------------------------------------------------
 * Appends to a buffer, msgpack as the readers above take it: a list or map is its count
 * first, then that many values (map: key, value, key, value ...). Each returns 0 or the
 * buffer's sticky error (buf.h); a string that is not UTF-8 sets SHMRPC_EINVAL there. */

int shmrpc_any_put_null(shmrpc_buf *b);
int shmrpc_any_put_bool(shmrpc_buf *b, bool v);
int shmrpc_any_put_int(shmrpc_buf *b, int64_t v);
int shmrpc_any_put_uint(shmrpc_buf *b, uint64_t v);
int shmrpc_any_put_float(shmrpc_buf *b, double v);
int shmrpc_any_put_str(shmrpc_buf *b, const char *s, size_t n);
int shmrpc_any_put_cstr(shmrpc_buf *b, const char *s);
int shmrpc_any_put_bytes(shmrpc_buf *b, const void *p, size_t n);
int shmrpc_any_put_list(shmrpc_buf *b, uint32_t n);
int shmrpc_any_put_map(shmrpc_buf *b, uint32_t n);
/* A copy of a (a zero one writes null); a is not checked again. */
int shmrpc_any_put(shmrpc_buf *b, shmrpc_any a);
/* For generated encoders, whose pk writes into a shmrpc_buf (shmrpc_buf_msgpack_write): a's
 * msgpack (a zero any: nil) once it is checked as one value. A malformed one (a count that
 * promised more values than followed, bytes past the value, what shmrpc_any_parse refuses)
 * writes nothing and sets SHMRPC_EINVAL in the buffer, its sticky error, with the reason in
 * shmrpc_errmsg(): a value built wrongly fails where it is sent, not at every reader of the
 * queue or map it would have gone into. */
struct msgpack_packer; /* msgpack.h's, which generated code includes */
void shmrpc_mp_write_any(struct msgpack_packer *pk, shmrpc_any a);
/* The value written into b from offset start to its end, checked as one value
 * (shmrpc_any_parse): a count that promised more values than followed fails here. The
 * view lives until b is next changed. */
int shmrpc_any_built(const shmrpc_buf *b, size_t start, shmrpc_any *out);

/* --- @json ------------------------------------------------------------------------------
 * For generated @json codecs: an any as plain JSON, NULL when it has none (bytes, a map key
 * that is not a string, holds a NUL byte or comes twice, an integer above INT64_MAX, NaN or
 * an infinity, deeper than SHMRPC_ANY_MAX_DEPTH, malformed bytes); and a JSON value as an
 * any, its msgpack copied into r->arena (JSON integers as integers, reals as floats, objects
 * as maps with string keys). */
shmrpc_json *shmrpc_json_any(shmrpc_any a);
int shmrpc_json_read_any(shmrpc_json_reader *r, const shmrpc_json *v, shmrpc_any *out);

SHMRPC_END_DECLS
#endif
