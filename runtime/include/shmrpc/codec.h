/* SPDX-License-Identifier: MIT */
/* Codec helpers for generated code: a bounds-checked msgpack reader, and a small JSON
 * API (backed by jansson) for @json methods. Encoding msgpack uses msgpack-c's packer
 * directly over a shmrpc_buf (see buf.h).
 *
 * Nothing here trusts its input: every length and count is checked against the bytes
 * that are left before it is used, so a body that lies costs a status, not memory. */
#ifndef SHMRPC_CODEC_H
#define SHMRPC_CODEC_H

#include <float.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/arena.h>
#include <shmrpc/buf.h>
#include <shmrpc/decls.h>
#include <shmrpc/status.h>

SHMRPC_BEGIN_DECLS

/* Room for n items of size bytes each for a decoder that writes every item before
 * anything reads it, so not zeroed (shmrpc_arena_calloc would touch every byte that a
 * lying count asks for). NULL when out of memory or when n * size overflows. */
static inline void *shmrpc_arena_alloc_items(shmrpc_arena *a, size_t n, size_t size, size_t align)
{
    if (size != 0 && n > SIZE_MAX / size) return NULL;
    return shmrpc_arena_alloc(a, n * size, align);
}

/* --- msgpack ----------------------------------------------------------------------
 * A cursor over one message. Each read consumes one value and returns 0, or returns
 * SHMRPC_EINVAL with why set to a static description ("truncated", "expected string,
 * got integer", "integer out of range for i8", ...). Generated code records the field
 * it was reading with shmrpc_mp_fail_at(), innermost first. */
typedef struct shmrpc_mp_reader {
    const uint8_t *p;
    const uint8_t *end;
    const char *why;   /* static text: why the first failure happened */
    const char *field; /* static text: the innermost field being read, or NULL */
    unsigned depth;    /* structs being read; generated code caps it at SHMRPC_MAX_DEPTH */
} shmrpc_mp_reader;

/* How deeply (recursive) structs may nest in a message, so that a hostile body cannot
 * exhaust the stack of a decoder. */
#define SHMRPC_MAX_DEPTH 512u

static inline void shmrpc_mp_reader_init(shmrpc_mp_reader *r, const void *p, size_t n)
{
    r->p = (const uint8_t *)p;
    r->end = r->p + n;
    r->why = NULL;
    r->field = NULL;
    r->depth = 0;
}

/* Records field as the place of a failure unless a more inner one is known; returns rc. */
static inline int shmrpc_mp_fail_at(shmrpc_mp_reader *r, int rc, const char *field)
{
    if (!r->field) r->field = field;
    return rc;
}

/* 1 and consumes it if the next value is nil, 0 if it is something else, or
 * SHMRPC_EINVAL when nothing is left. */
int shmrpc_mp_try_nil(shmrpc_mp_reader *r);
int shmrpc_mp_read_nil(shmrpc_mp_reader *r);
int shmrpc_mp_read_bool(shmrpc_mp_reader *r, bool *v);
/* Any msgpack integer whose value is in [min, max]. */
int shmrpc_mp_read_int(shmrpc_mp_reader *r, int64_t min, int64_t max, int64_t *v);
/* Any msgpack integer whose value is in [0, max]. */
int shmrpc_mp_read_uint(shmrpc_mp_reader *r, uint64_t max, uint64_t *v);
/* float 32 or 64, or an integer (converted). */
int shmrpc_mp_read_f64(shmrpc_mp_reader *r, double *v);
int shmrpc_mp_read_f32(shmrpc_mp_reader *r, float *v);
/* str; v points into the message and is not NUL-terminated. */
int shmrpc_mp_read_str(shmrpc_mp_reader *r, shmrpc_str *v);
/* bin; v points into the message. */
int shmrpc_mp_read_bin(shmrpc_mp_reader *r, shmrpc_bytes *v);
/* An array header; *n is at most the bytes left (every element takes one or more). */
int shmrpc_mp_read_array(shmrpc_mp_reader *r, uint32_t *n);
/* A map header; *n is at most half the bytes left. */
int shmrpc_mp_read_map(shmrpc_mp_reader *r, uint32_t *n);
/* The same, for decoders that know the least number of bytes an element (or a map
 * entry, key and value together) takes on the wire: *n * min_elem_bytes is at most the
 * bytes left, so a count cannot make the caller allocate more than the body could fill.
 * A minimum of 0 reads as 1. why: "count larger than the bytes left". */
int shmrpc_mp_read_array_of(shmrpc_mp_reader *r, size_t min_elem_bytes, uint32_t *n);
int shmrpc_mp_read_map_of(shmrpc_mp_reader *r, size_t min_entry_bytes, uint32_t *n);
/* SHMRPC_EINVAL ("trailing bytes") unless the whole message was read. */
int shmrpc_mp_finish(shmrpc_mp_reader *r);
/* Skips count values of any kind: the fields and arguments a newer peer appended, which
 * this side does not know (docs/svc-language.md, "Compatible evolution"). Without
 * recursion; nested no deeper than SHMRPC_MAX_DEPTH counted from r->depth (why: "nested
 * too deeply"); a cut or invalid value fails as a read does. */
int shmrpc_mp_skip(shmrpc_mp_reader *r, uint32_t count);

/* --- JSON -------------------------------------------------------------------------
 * Values are opaque. Writing builds a tree and dumps it compactly into a buffer;
 * reading parses a whole document and copies what the caller keeps into an arena, so
 * nothing refers to the parser's memory once the reader is released. */
typedef struct shmrpc_json shmrpc_json;

/* Constructors return NULL when out of memory, or for a string that is not UTF-8. */
shmrpc_json *shmrpc_json_object(void);
shmrpc_json *shmrpc_json_array(void);
shmrpc_json *shmrpc_json_null(void);
shmrpc_json *shmrpc_json_bool(bool v);
shmrpc_json *shmrpc_json_int(int64_t v);
/* NULL above INT64_MAX: the JSON library holds integers as int64 (docs/svc-language.md). */
shmrpc_json *shmrpc_json_uint(uint64_t v);
/* NaN and infinities have no JSON form: NULL. */
shmrpc_json *shmrpc_json_real(double v);
shmrpc_json *shmrpc_json_string(shmrpc_str s);
/* bytes as a base64 string (RFC 4648, with padding). */
shmrpc_json *shmrpc_json_base64(shmrpc_bytes b);

/* Both take ownership of val, also when they fail; a NULL val fails with SHMRPC_EINVAL,
 * so constructors can be nested without checking each one. A key that is not UTF-8 or
 * holds a NUL byte (which the parser could not read back) fails with SHMRPC_EINVAL. */
int shmrpc_json_set(shmrpc_json *obj, const char *key, shmrpc_json *val);
int shmrpc_json_setn(shmrpc_json *obj, shmrpc_str key, shmrpc_json *val);
int shmrpc_json_append(shmrpc_json *arr, shmrpc_json *val);

/* Appends v as compact JSON to out and frees v, also when it fails. */
int shmrpc_json_dump(shmrpc_json *v, shmrpc_buf *out);
void shmrpc_json_free(shmrpc_json *v);

typedef struct shmrpc_json_reader {
    shmrpc_json *root;
    shmrpc_arena *arena; /* where strings, bytes, lists and maps are put */
    const char *why;     /* as in shmrpc_mp_reader */
    const char *field;
    char detail[96]; /* the parser's own message, when parsing failed */
    /* Private to the runtime: where the last shmrpc_json_member() stopped, so reading
     * an object member by member costs O(n), not O(n^2). */
    const shmrpc_json *iter_obj;
    void *iter;
    size_t iter_i;
} shmrpc_json_reader;

/* How deeply arrays and objects may nest in JSON that the library, the management page,
 * its gateway and shmrpcctl parse. The parser (jansson) recurses once per level, and
 * some threads that parse have small stacks (civetweb's are 100 KiB): the depth is
 * checked before parsing, by shmrpc_json_check_depth, which does not recurse. */
#define SHMRPC_JSON_MAX_DEPTH 128u

/* Whether the arrays and objects of the n bytes of JSON text at p nest at most max deep:
 * 0, or SHMRPC_EINVAL when they nest deeper. Brackets are counted outside strings
 * (escapes honoured), in one pass and without recursion; the text is not otherwise
 * checked, so on a prefix that a parser would accept the count is exactly the parser's
 * depth, and a parser stops at the first error before it could go deeper. */
int shmrpc_json_check_depth(const void *p, size_t n, unsigned max);

/* Parses n bytes at p (any JSON value at the top; duplicate keys, NaN, invalid UTF-8 and
 * nesting deeper than SHMRPC_JSON_MAX_DEPTH are refused, the depth checked before parsing
 * starts). On failure why is "malformed JSON" (or "nested too deeply") and detail says
 * where, and root is NULL (releasing such a reader is harmless, not needed). */
int shmrpc_json_parse(shmrpc_json_reader *r, shmrpc_arena *arena, const void *p, size_t n);
void shmrpc_json_release(shmrpc_json_reader *r);

static inline int shmrpc_json_fail_at(shmrpc_json_reader *r, int rc, const char *field)
{
    if (!r->field) r->field = field;
    return rc;
}

/* Navigation: NULL when absent or of another kind. */
const shmrpc_json *shmrpc_json_get(const shmrpc_json *obj, const char *key);
bool shmrpc_json_is_null(const shmrpc_json *v); /* also true for v == NULL (absent) */
/* Array: *n elements; element i with shmrpc_json_at(). */
int shmrpc_json_read_array(shmrpc_json_reader *r, const shmrpc_json *v, size_t *n);
const shmrpc_json *shmrpc_json_at(const shmrpc_json *arr, size_t i);
/* Object: *n members; member i's key (copied into the arena) and value. Member order is
 * the parser's, not necessarily the document's. */
int shmrpc_json_read_object(shmrpc_json_reader *r, const shmrpc_json *v, size_t *n);
int shmrpc_json_member(shmrpc_json_reader *r, const shmrpc_json *obj, size_t i, shmrpc_str *key,
                       const shmrpc_json **val);

/* Walks an object's members in the parser's order, each in O(1). The iterator lives in
 * the caller's frame, so walks of nested objects do not disturb each other (which the
 * single cache of shmrpc_json_member cannot promise). */
typedef struct shmrpc_json_iter {
    const shmrpc_json *obj;
    void *it; /* the next member, or NULL when the walk is over */
} shmrpc_json_iter;

/* Starts a walk of obj; a value that is not an object walks as empty. */
void shmrpc_json_iter_init(shmrpc_json_iter *it, const shmrpc_json *obj);
/* 1 with the next member's key (copied into r->arena) and value, 0 when there are no
 * more, or a negative status (SHMRPC_ENOMEM, with why set). */
int shmrpc_json_iter_next(shmrpc_json_reader *r, shmrpc_json_iter *it, shmrpc_str *key,
                          const shmrpc_json **val);

/* Scalars; each fails with SHMRPC_EINVAL and sets why for a wrong kind or range. */
int shmrpc_json_read_bool(shmrpc_json_reader *r, const shmrpc_json *v, bool *out);
int shmrpc_json_read_int(shmrpc_json_reader *r, const shmrpc_json *v, int64_t min, int64_t max,
                         int64_t *out);
int shmrpc_json_read_uint(shmrpc_json_reader *r, const shmrpc_json *v, uint64_t max, uint64_t *out);
int shmrpc_json_read_f64(shmrpc_json_reader *r, const shmrpc_json *v, double *out);

static inline int shmrpc_json_read_f32(shmrpc_json_reader *r, const shmrpc_json *v, float *out)
{
    double d;
    int rc = shmrpc_json_read_f64(r, v, &d);
    if (rc != 0) return rc;
    if (d > FLT_MAX || d < -FLT_MAX) {
        r->why = "number out of range for f32";
        return SHMRPC_EINVAL;
    }
    *out = (float)d;
    return 0;
}
/* The string copied into the arena (NUL-terminated, though len is authoritative). */
int shmrpc_json_read_str(shmrpc_json_reader *r, const shmrpc_json *v, shmrpc_str *out);
/* A base64 string decoded into the arena. */
int shmrpc_json_read_base64(shmrpc_json_reader *r, const shmrpc_json *v, shmrpc_bytes *out);

/* Map keys that are integers travel as decimal strings in JSON, in canonical form only:
 * "-12" is read, "+12", "012", "-0" and " 12" are not ("map key is not an integer"). */
int shmrpc_json_key_int(shmrpc_json_reader *r, shmrpc_str key, int64_t min, int64_t max,
                        int64_t *out);
int shmrpc_json_key_uint(shmrpc_json_reader *r, shmrpc_str key, uint64_t max, uint64_t *out);
/* Writes the decimal form of v into a 24-byte buffer and returns it. */
shmrpc_str shmrpc_json_int_key(int64_t v, char buf[24]);
shmrpc_str shmrpc_json_uint_key(uint64_t v, char buf[24]);

SHMRPC_END_DECLS
#endif
