/* SPDX-License-Identifier: MIT */
/* The any view and builder (shmrpc/any.h): msgpack values read in place, checked once
 * without recursion, and read again with every header bounded by the view's own bytes,
 * since those may sit in shared memory that the peer can rewrite (RELIABILITY.md, 4). */
#include <string.h>

#include <msgpack.h>

#include <shmrpc/any.h>

#include "codec/codec.h"

static const char WHY_TRUNCATED[] = "truncated";
static const char WHY_COUNT[] = "count larger than the bytes left";
static const char WHY_EXT[] = "a msgpack extension type is no value of an any";
static const char WHY_BAD[] = "invalid msgpack byte";
static const char WHY_UTF8[] = "string is not UTF-8";
static const char WHY_KEY[] = "a map key must be a scalar (not a list or a map)";
static const char WHY_DEEP[] = "nested more than 128 deep";
static const char WHY_KIND[] = "not a value of that kind";
static const char WHY_RANGE[] = "integer out of range";
static const char WHY_INDEX[] = "index past the end";

_Static_assert(SHMRPC_ANY_MAX_DEPTH == 128, "WHY_DEEP says 128");
_Static_assert(SHMRPC_ANY_MAX_DEPTH == SHMRPC_JSON_MAX_DEPTH, "one bound for JSON and any");

/* --- one header ---------------------------------------------------------------------- */

typedef struct head {
    shmrpc_any_kind kind;
    size_t size;   /* of the header, payload excluded */
    size_t len;    /* payload bytes after the header (string, bytes, numbers' own bytes: 0) */
    uint64_t kids; /* values that follow: a list's n, a map's 2n */
    bool neg;      /* an integer below zero: i holds it */
    int64_t i;
    uint64_t u;
    double d;
} head;

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* The header at p (before end): 0, or the static reason it is not one. The payload is
 * checked against end too, a count only against the least its values take (1 byte each). */
static const char *read_head(const uint8_t *p, const uint8_t *end, head *h)
{
    if (p >= end) return WHY_TRUNCATED;
    size_t left = (size_t)(end - p);
    uint8_t b = p[0];
    memset(h, 0, sizeof *h);
    h->size = 1;
    size_t w = 0; /* width of a length, count or number after the type byte */
    if (b <= 0x7f) {
        h->kind = SHMRPC_ANY_INT;
        h->i = b;
        h->u = b;
        return NULL;
    }
    if (b >= 0xe0) {
        h->kind = SHMRPC_ANY_INT;
        h->neg = true;
        h->i = (int8_t)b;
        return NULL;
    }
    if (b <= 0x8f) {
        h->kind = SHMRPC_ANY_MAP;
        h->kids = 2u * (b & 0x0f);
    } else if (b <= 0x9f) {
        h->kind = SHMRPC_ANY_LIST;
        h->kids = b & 0x0f;
    } else if (b <= 0xbf) {
        h->kind = SHMRPC_ANY_STRING;
        h->len = b & 0x1f;
    } else {
        switch (b) {
        case 0xc0:
            h->kind = SHMRPC_ANY_NULL;
            return NULL;
        case 0xc2:
        case 0xc3:
            h->kind = SHMRPC_ANY_BOOL;
            h->u = b == 0xc3;
            return NULL;
        case 0xc4:
        case 0xc5:
        case 0xc6:
            h->kind = SHMRPC_ANY_BYTES;
            w = (size_t)1 << (b - 0xc4);
            break;
        case 0xd9:
        case 0xda:
        case 0xdb:
            h->kind = SHMRPC_ANY_STRING;
            w = (size_t)1 << (b - 0xd9);
            break;
        case 0xdc:
        case 0xdd:
            h->kind = SHMRPC_ANY_LIST;
            w = b == 0xdc ? 2 : 4;
            break;
        case 0xde:
        case 0xdf:
            h->kind = SHMRPC_ANY_MAP;
            w = b == 0xde ? 2 : 4;
            break;
        case 0xca:
        case 0xcb: {
            w = b == 0xca ? 4 : 8;
            if (left < 1 + w) return WHY_TRUNCATED;
            uint64_t bits = be(p + 1, w);
            h->kind = SHMRPC_ANY_FLOAT;
            h->size = 1 + w;
            if (w == 4) {
                uint32_t b32 = (uint32_t)bits;
                float f;
                memcpy(&f, &b32, sizeof f);
                h->d = f;
            } else {
                memcpy(&h->d, &bits, sizeof h->d);
            }
            return NULL;
        }
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf:
        case 0xd0:
        case 0xd1:
        case 0xd2:
        case 0xd3: {
            bool sgn = b >= 0xd0;
            w = (size_t)1 << ((b - 0xcc) & 3);
            if (left < 1 + w) return WHY_TRUNCATED;
            uint64_t v = be(p + 1, w);
            h->kind = SHMRPC_ANY_INT;
            h->size = 1 + w;
            if (sgn && w < 8 && (v >> (8 * w - 1)) & 1) v |= ~UINT64_C(0) << (8 * w);
            if (sgn && (int64_t)v < 0) {
                h->neg = true;
                h->i = (int64_t)v;
            } else {
                h->u = v;
                h->i = (int64_t)v; /* meaningful when u <= INT64_MAX */
            }
            return NULL;
        }
        case 0xc1:
            return WHY_BAD;
        default: /* 0xc7-0xc9, 0xd4-0xd8 */
            return WHY_EXT;
        }
        if (left < 1 + w) return WHY_TRUNCATED;
        uint64_t v = be(p + 1, w);
        h->size = 1 + w;
        if (h->kind == SHMRPC_ANY_LIST)
            h->kids = v;
        else if (h->kind == SHMRPC_ANY_MAP)
            h->kids = 2 * v;
        else
            h->len = (size_t)v;
    }
    if (h->len > left - h->size) return WHY_TRUNCATED;
    if (h->kids > left - h->size) return WHY_COUNT;
    return NULL;
}

/* --- checking a value whole -------------------------------------------------------- */

typedef struct level {
    uint64_t left; /* values still to come at this level */
    bool map;
} level;

/* Checks the value at p (before end) and sets *used to its length; NULL, or why not. */
static const char *check(const uint8_t *p, const uint8_t *end, size_t *used)
{
    level st[SHMRPC_ANY_MAX_DEPTH];
    int top = -1;
    const uint8_t *start = p;
    do {
        head h;
        const char *why = read_head(p, end, &h);
        if (why) return why;
        bool is_key = top >= 0 && st[top].map && st[top].left % 2 == 0;
        bool container = h.kind == SHMRPC_ANY_LIST || h.kind == SHMRPC_ANY_MAP;
        if (is_key && container) return WHY_KEY;
        if (h.kind == SHMRPC_ANY_STRING && !shmrpc__utf8_valid(p + h.size, h.len)) return WHY_UTF8;
        p += h.size + h.len;
        if (top >= 0) st[top].left--;
        if (container) {
            if (top + 1 >= (int)SHMRPC_ANY_MAX_DEPTH) return WHY_DEEP;
            st[++top] = (level){h.kids, h.kind == SHMRPC_ANY_MAP};
        }
        while (top >= 0 && st[top].left == 0)
            top--;
    } while (top >= 0);
    *used = (size_t)(p - start);
    return NULL;
}

int shmrpc_mp_read_any(shmrpc_mp_reader *r, shmrpc_any *out)
{
    size_t used = 0;
    const char *why = check(r->p, r->end, &used);
    if (why) {
        if (!r->why) r->why = why;
        return SHMRPC_EINVAL;
    }
    *out = (shmrpc_any){r->p, used};
    r->p += used;
    return 0;
}

int shmrpc_any_parse(const void *p, size_t n, shmrpc_any *out)
{
    *out = (shmrpc_any){NULL, 0};
    size_t used = 0;
    const uint8_t *b = p;
    const char *why = check(b, b + n, &used);
    if (why) return shmrpc__err_set(SHMRPC_EINVAL, "any: %s", why);
    if (used != n)
        return shmrpc__err_set(SHMRPC_EINVAL, "any: %zu bytes after the value", n - used);
    *out = (shmrpc_any){b, n};
    return 0;
}

/* --- reading ----------------------------------------------------------------------------- */

static int bad(const char *why)
{
    return shmrpc__err_set(SHMRPC_EINVAL, "any: %s", why);
}

/* The end of the value at p (before end), skipped without recursion: each value read adds
 * the values it holds to those still to skip, each takes a byte at least. */
static const char *skip(const uint8_t *p, const uint8_t *end, const uint8_t **after)
{
    uint64_t left = 1;
    while (left) {
        head h;
        const char *why = read_head(p, end, &h);
        if (why) return why;
        p += h.size + h.len;
        left = left - 1 + h.kids;
        if (left > (uint64_t)(end - p)) return WHY_COUNT;
    }
    *after = p;
    return NULL;
}

/* The header of a (a zero any reads as null). */
static const char *head_of(shmrpc_any a, head *h)
{
    if (a.n == 0) {
        memset(h, 0, sizeof *h);
        h->kind = SHMRPC_ANY_NULL;
        return NULL;
    }
    return read_head(a.p, a.p + a.n, h);
}

shmrpc_any_kind shmrpc_any_kind_of(shmrpc_any a)
{
    head h;
    return head_of(a, &h) ? SHMRPC_ANY_INVALID : h.kind;
}

bool shmrpc_any_is_null(shmrpc_any a)
{
    return shmrpc_any_kind_of(a) == SHMRPC_ANY_NULL;
}

/* The header of a when it is of kind k: 0, or SHMRPC_EINVAL. */
static int want(shmrpc_any a, shmrpc_any_kind k, head *h)
{
    const char *why = head_of(a, h);
    if (why) return bad(why);
    if (h->kind != k) return bad(WHY_KIND);
    return 0;
}

int shmrpc_any_bool(shmrpc_any a, bool *out)
{
    head h;
    int rc = want(a, SHMRPC_ANY_BOOL, &h);
    if (rc == 0) *out = h.u != 0;
    return rc;
}

int shmrpc_any_int(shmrpc_any a, int64_t *out)
{
    head h;
    int rc = want(a, SHMRPC_ANY_INT, &h);
    if (rc != 0) return rc;
    if (!h.neg && h.u > INT64_MAX) return bad(WHY_RANGE);
    *out = h.i;
    return 0;
}

int shmrpc_any_uint(shmrpc_any a, uint64_t *out)
{
    head h;
    int rc = want(a, SHMRPC_ANY_INT, &h);
    if (rc != 0) return rc;
    if (h.neg) return bad(WHY_RANGE);
    *out = h.u;
    return 0;
}

int shmrpc_any_float(shmrpc_any a, double *out)
{
    head h;
    const char *why = head_of(a, &h);
    if (why) return bad(why);
    if (h.kind == SHMRPC_ANY_FLOAT)
        *out = h.d;
    else if (h.kind == SHMRPC_ANY_INT)
        *out = h.neg ? (double)h.i : (double)h.u;
    else
        return bad(WHY_KIND);
    return 0;
}

int shmrpc_any_str(shmrpc_any a, shmrpc_str *out)
{
    head h;
    int rc = want(a, SHMRPC_ANY_STRING, &h);
    if (rc == 0) *out = (shmrpc_str){(const char *)a.p + h.size, h.len};
    return rc;
}

int shmrpc_any_bytes(shmrpc_any a, shmrpc_bytes *out)
{
    head h;
    int rc = want(a, SHMRPC_ANY_BYTES, &h);
    if (rc == 0) *out = (shmrpc_bytes){a.p + h.size, h.len};
    return rc;
}

int shmrpc_any_iter_init(shmrpc_any_iter *it, shmrpc_any a)
{
    head h;
    const char *why = head_of(a, &h);
    if (why) return bad(why);
    if (h.kind != SHMRPC_ANY_LIST && h.kind != SHMRPC_ANY_MAP) return bad(WHY_KIND);
    *it = (shmrpc_any_iter){a.p + h.size, a.p + a.n, h.kids};
    return 0;
}

int shmrpc_any_next(shmrpc_any_iter *it, shmrpc_any *out)
{
    if (it->left == 0) return 0;
    const uint8_t *after;
    const char *why = skip(it->p, it->end, &after);
    if (why) return bad(why);
    *out = (shmrpc_any){it->p, (size_t)(after - it->p)};
    it->p = after;
    it->left--;
    return 1;
}

int shmrpc_any_len(shmrpc_any a, size_t *n)
{
    head h;
    const char *why = head_of(a, &h);
    if (why) return bad(why);
    if (h.kind != SHMRPC_ANY_LIST && h.kind != SHMRPC_ANY_MAP) return bad(WHY_KIND);
    *n = (size_t)(h.kind == SHMRPC_ANY_MAP ? h.kids / 2 : h.kids);
    return 0;
}

int shmrpc_any_at(shmrpc_any a, size_t i, shmrpc_any *out)
{
    shmrpc_any_iter it;
    int rc = shmrpc_any_iter_init(&it, a);
    if (rc != 0) return rc;
    if (shmrpc_any_kind_of(a) != SHMRPC_ANY_LIST) return bad(WHY_KIND);
    if (i >= it.left) return bad(WHY_INDEX);
    for (size_t k = 0; k <= i; k++)
        if ((rc = shmrpc_any_next(&it, out)) < 0) return rc;
    return 0;
}

int shmrpc_any_entry(shmrpc_any a, size_t i, shmrpc_any *key, shmrpc_any *val)
{
    shmrpc_any_iter it;
    int rc = shmrpc_any_iter_init(&it, a);
    if (rc != 0) return rc;
    if (shmrpc_any_kind_of(a) != SHMRPC_ANY_MAP) return bad(WHY_KIND);
    if (i >= it.left / 2) return bad(WHY_INDEX);
    for (size_t k = 0; k <= i; k++)
        if ((rc = shmrpc_any_next(&it, key)) < 0 || (rc = shmrpc_any_next(&it, val)) < 0) return rc;
    return 0;
}

int shmrpc_any_get(shmrpc_any a, const char *key, shmrpc_any *val)
{
    shmrpc_any_iter it;
    int rc = shmrpc_any_iter_init(&it, a);
    if (rc != 0) return rc;
    if (shmrpc_any_kind_of(a) != SHMRPC_ANY_MAP) return bad(WHY_KIND);
    size_t kn = strlen(key);
    shmrpc_any k;
    while ((rc = shmrpc_any_next(&it, &k)) == 1) {
        if ((rc = shmrpc_any_next(&it, val)) < 0) return rc;
        shmrpc_str s;
        head h;
        if (head_of(k, &h) == NULL && h.kind == SHMRPC_ANY_STRING && shmrpc_any_str(k, &s) == 0 &&
            s.len == kn && memcmp(s.ptr, key, kn) == 0)
            return 0;
    }
    if (rc < 0) return rc;
    *val = (shmrpc_any){NULL, 0};
    return shmrpc__err_code(SHMRPC_ENOENT);
}

/* --- building ---------------------------------------------------------------------------- */

static msgpack_packer packer(shmrpc_buf *b)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, shmrpc_buf_msgpack_write);
    return pk;
}

int shmrpc_any_put_null(shmrpc_buf *b)
{
    msgpack_packer pk = packer(b);
    msgpack_pack_nil(&pk);
    return b->err;
}

int shmrpc_any_put_bool(shmrpc_buf *b, bool v)
{
    msgpack_packer pk = packer(b);
    if (v)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    return b->err;
}

int shmrpc_any_put_int(shmrpc_buf *b, int64_t v)
{
    msgpack_packer pk = packer(b);
    msgpack_pack_int64(&pk, v);
    return b->err;
}

int shmrpc_any_put_uint(shmrpc_buf *b, uint64_t v)
{
    msgpack_packer pk = packer(b);
    msgpack_pack_uint64(&pk, v);
    return b->err;
}

int shmrpc_any_put_float(shmrpc_buf *b, double v)
{
    msgpack_packer pk = packer(b);
    msgpack_pack_double(&pk, v);
    return b->err;
}

int shmrpc_any_put_str(shmrpc_buf *b, const char *s, size_t n)
{
    if (b->err) return b->err;
    if (n > UINT32_MAX || !shmrpc__utf8_valid((const uint8_t *)s, n)) {
        b->err = SHMRPC_EINVAL;
        return shmrpc__err_set(SHMRPC_EINVAL, "any: %s",
                               n > UINT32_MAX ? "string longer than 4 GiB" : WHY_UTF8);
    }
    msgpack_packer pk = packer(b);
    msgpack_pack_str_with_body(&pk, s, n);
    return b->err;
}

int shmrpc_any_put_cstr(shmrpc_buf *b, const char *s)
{
    return shmrpc_any_put_str(b, s, strlen(s));
}

int shmrpc_any_put_bytes(shmrpc_buf *b, const void *p, size_t n)
{
    if (b->err) return b->err;
    if (n > UINT32_MAX) {
        b->err = SHMRPC_EINVAL;
        return shmrpc__err_set(SHMRPC_EINVAL, "any: bytes longer than 4 GiB");
    }
    msgpack_packer pk = packer(b);
    msgpack_pack_bin_with_body(&pk, p, n);
    return b->err;
}

int shmrpc_any_put_list(shmrpc_buf *b, uint32_t n)
{
    msgpack_packer pk = packer(b);
    msgpack_pack_array(&pk, n);
    return b->err;
}

int shmrpc_any_put_map(shmrpc_buf *b, uint32_t n)
{
    msgpack_packer pk = packer(b);
    msgpack_pack_map(&pk, n);
    return b->err;
}

int shmrpc_any_put(shmrpc_buf *b, shmrpc_any a)
{
    if (a.n == 0) return shmrpc_any_put_null(b);
    shmrpc_buf_append(b, a.p, a.n);
    return b->err;
}

void shmrpc_mp_write_any(struct msgpack_packer *pk, shmrpc_any a)
{
    shmrpc_buf *b = pk->data;
    shmrpc_any ok;
    if (b->err) return;
    if (a.n == 0)
        msgpack_pack_nil(pk);
    else if (shmrpc_any_parse(a.p, a.n, &ok) != 0)
        b->err = SHMRPC_EINVAL;
    else
        shmrpc_buf_append(b, a.p, a.n);
}

int shmrpc_any_built(const shmrpc_buf *b, size_t start, shmrpc_any *out)
{
    *out = (shmrpc_any){NULL, 0};
    if (b->err)
        return shmrpc__err_set(b->err, "any: the buffer failed: %s", shmrpc_strerror(b->err));
    if (start > b->len) return shmrpc__err_set(SHMRPC_EINVAL, "any: start past the buffer's end");
    return shmrpc_any_parse(b->data + start, b->len - start, out);
}
