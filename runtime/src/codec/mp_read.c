/* SPDX-License-Identifier: MIT */
/* The msgpack cursor that generated decoders read requests and responses with.
 *
 * Written by hand on purpose: msgpack-c's unpacker allocates from an array's or map's
 * declared count before it checks that the message holds that many elements, and it
 * builds a tree of objects for every message. The first lets a 6-byte body ask for
 * gigabytes (RELIABILITY.md promises 4 and 5); the second costs a malloc per call on
 * the fast path. This reader checks every length and count against the bytes left,
 * allocates nothing, and consumes a value only when it was read whole. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "codec/codec.h"

/* --- why texts ------------------------------------------------------------------- */

enum kind { K_NIL, K_BOOL, K_INT, K_FLOAT, K_STR, K_BIN, K_ARRAY, K_MAP, K_EXT, K_BAD, K_COUNT };
enum want { W_NIL, W_BOOL, W_INT, W_NUMBER, W_STR, W_BIN, W_ARRAY, W_MAP, W_COUNT };

/* One static text per expected and found kind, so generated code can pass why on. */
#define GOT(exp)                                                                                   \
    {                                                                                              \
        "expected " exp ", got nil", "expected " exp ", got boolean",                              \
            "expected " exp ", got integer", "expected " exp ", got float",                        \
            "expected " exp ", got string", "expected " exp ", got binary",                        \
            "expected " exp ", got array", "expected " exp ", got map",                            \
            "expected " exp ", got extension", "invalid msgpack byte",                             \
    }

static const char *const mismatch_why[W_COUNT][K_COUNT] = {
    [W_NIL] = GOT("nil"),       [W_BOOL] = GOT("boolean"), [W_INT] = GOT("integer"),
    [W_NUMBER] = GOT("number"), [W_STR] = GOT("string"),   [W_BIN] = GOT("binary"),
    [W_ARRAY] = GOT("array"),   [W_MAP] = GOT("map"),
};

static const char WHY_TRUNCATED[] = "truncated";
static const char WHY_COUNT[] = "count larger than the bytes left";
static const char WHY_RANGE[] = "integer out of range";

static enum kind kind_of(uint8_t b)
{
    if (b <= 0x7f || b >= 0xe0) return K_INT;
    if (b <= 0x8f) return K_MAP;
    if (b <= 0x9f) return K_ARRAY;
    if (b <= 0xbf) return K_STR;
    switch (b) {
    case 0xc0:
        return K_NIL;
    case 0xc1:
        return K_BAD;
    case 0xc2:
    case 0xc3:
        return K_BOOL;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return K_BIN;
    case 0xca:
    case 0xcb:
        return K_FLOAT;
    case 0xd9:
    case 0xda:
    case 0xdb:
        return K_STR;
    case 0xdc:
    case 0xdd:
        return K_ARRAY;
    case 0xde:
    case 0xdf:
        return K_MAP;
    }
    if (b >= 0xcc && b <= 0xd3) return K_INT;
    return K_EXT; /* 0xc7-0xc9, 0xd4-0xd8 */
}

static int fail(shmrpc_mp_reader *r, const char *why)
{
    if (!r->why) r->why = why;
    return SHMRPC_EINVAL;
}

static int mismatch(shmrpc_mp_reader *r, enum want w, uint8_t b)
{
    return fail(r, mismatch_why[w][kind_of(b)]);
}

const char *shmrpc__int_range_why(int64_t min, int64_t max)
{
    if (min == INT8_MIN && max == INT8_MAX) return "integer out of range for i8";
    if (min == INT16_MIN && max == INT16_MAX) return "integer out of range for i16";
    if (min == INT32_MIN && max == INT32_MAX) return "integer out of range for i32";
    if (min == INT64_MIN && max == INT64_MAX) return "integer out of range for i64";
    if (min == 0) return shmrpc__uint_range_why((uint64_t)max);
    return WHY_RANGE;
}

const char *shmrpc__uint_range_why(uint64_t max)
{
    if (max == UINT8_MAX) return "integer out of range for u8";
    if (max == UINT16_MAX) return "integer out of range for u16";
    if (max == UINT32_MAX) return "integer out of range for u32";
    if (max == UINT64_MAX) return "integer out of range for u64";
    return WHY_RANGE;
}

/* --- scanning ---------------------------------------------------------------------
 * Each scanner looks at the value at r->p without consuming it and returns its size
 * in bytes (header and payload), or 0 with why set. Readers consume only on success. */

static size_t left_of(const shmrpc_mp_reader *r)
{
    return (size_t)(r->end - r->p);
}

static uint64_t load_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* An integer: *neg says whether it is below zero; *u holds it, as two's complement
 * when negative. */
static size_t scan_int(shmrpc_mp_reader *r, enum want w, bool *neg, uint64_t *u)
{
    size_t left = left_of(r);
    if (left == 0) return fail(r, WHY_TRUNCATED), 0;
    uint8_t b = r->p[0];
    if (b <= 0x7f) {
        *neg = false;
        *u = b;
        return 1;
    }
    if (b >= 0xe0) {
        *neg = true;
        *u = (uint64_t)(int64_t)(int8_t)b;
        return 1;
    }
    if (b < 0xcc || b > 0xd3) return mismatch(r, w, b), 0;
    bool is_signed = b >= 0xd0;
    unsigned width = 1u << (b - (is_signed ? 0xd0 : 0xcc));
    if (left - 1 < width) return fail(r, WHY_TRUNCATED), 0;
    uint64_t v = load_be(r->p + 1, width);
    bool top = v >> (8 * width - 1);
    if (is_signed && top && width < 8) v |= ~(uint64_t)0 << (8 * width);
    *neg = is_signed && top;
    *u = v;
    return 1 + width;
}

/* A str, bin, array or map header of the form fix / 8 / 16 / 32-bit length:
 * *n is the length or count, and the header's size is returned. */
static size_t scan_len(shmrpc_mp_reader *r, unsigned width, uint32_t *n)
{
    if (left_of(r) - 1 < width) return fail(r, WHY_TRUNCATED), 0;
    *n = (uint32_t)load_be(r->p + 1, width);
    return 1 + width;
}

static bool take_byte(shmrpc_mp_reader *r, uint8_t *b)
{
    if (r->p == r->end) return fail(r, WHY_TRUNCATED), false;
    *b = r->p[0];
    return true;
}

/* --- readers ----------------------------------------------------------------------- */

int shmrpc_mp_try_nil(shmrpc_mp_reader *r)
{
    uint8_t b;
    if (!take_byte(r, &b)) return SHMRPC_EINVAL;
    if (b != 0xc0) return 0;
    r->p++;
    return 1;
}

int shmrpc_mp_read_nil(shmrpc_mp_reader *r)
{
    uint8_t b;
    if (!take_byte(r, &b)) return SHMRPC_EINVAL;
    if (b != 0xc0) return mismatch(r, W_NIL, b);
    r->p++;
    return 0;
}

int shmrpc_mp_read_bool(shmrpc_mp_reader *r, bool *v)
{
    uint8_t b;
    if (!take_byte(r, &b)) return SHMRPC_EINVAL;
    if (b != 0xc2 && b != 0xc3) return mismatch(r, W_BOOL, b);
    *v = b == 0xc3;
    r->p++;
    return 0;
}

int shmrpc_mp_read_int(shmrpc_mp_reader *r, int64_t min, int64_t max, int64_t *v)
{
    bool neg;
    uint64_t u;
    size_t n = scan_int(r, W_INT, &neg, &u);
    if (!n) return SHMRPC_EINVAL;
    if (!neg && u > (uint64_t)INT64_MAX) return fail(r, shmrpc__int_range_why(min, max));
    int64_t s = (int64_t)u;
    if (s < min || s > max) return fail(r, shmrpc__int_range_why(min, max));
    *v = s;
    r->p += n;
    return 0;
}

int shmrpc_mp_read_uint(shmrpc_mp_reader *r, uint64_t max, uint64_t *v)
{
    bool neg;
    uint64_t u;
    size_t n = scan_int(r, W_INT, &neg, &u);
    if (!n) return SHMRPC_EINVAL;
    if (neg || u > max) return fail(r, shmrpc__uint_range_why(max));
    *v = u;
    r->p += n;
    return 0;
}

/* A float32, a float64 or an integer, as a double: the common part of read_f64/f32. */
static size_t scan_number(shmrpc_mp_reader *r, double *v)
{
    size_t left = left_of(r);
    if (left == 0) return fail(r, WHY_TRUNCATED), 0;
    uint8_t b = r->p[0];
    if (b == 0xca) {
        if (left < 5) return fail(r, WHY_TRUNCATED), 0;
        uint32_t bits = (uint32_t)load_be(r->p + 1, 4);
        float f;
        memcpy(&f, &bits, sizeof f);
        *v = f;
        return 5;
    }
    if (b == 0xcb) {
        if (left < 9) return fail(r, WHY_TRUNCATED), 0;
        uint64_t bits = load_be(r->p + 1, 8);
        memcpy(v, &bits, sizeof *v);
        return 9;
    }
    bool neg;
    uint64_t u;
    size_t n = scan_int(r, W_NUMBER, &neg, &u);
    if (n) *v = neg ? (double)(int64_t)u : (double)u;
    return n;
}

int shmrpc_mp_read_f64(shmrpc_mp_reader *r, double *v)
{
    size_t n = scan_number(r, v);
    if (!n) return SHMRPC_EINVAL;
    r->p += n;
    return 0;
}

int shmrpc_mp_read_f32(shmrpc_mp_reader *r, float *v)
{
    double d;
    size_t n = scan_number(r, &d);
    if (!n) return SHMRPC_EINVAL;
    /* Converting a finite double beyond FLT_MAX to float is undefined behaviour. */
    if (isfinite(d) && fabs(d) > FLT_MAX) return fail(r, "float out of range for f32");
    *v = (float)d;
    r->p += n;
    return 0;
}

/* The payload of a str or bin whose header is hdr bytes and whose length is len. */
static int take_payload(shmrpc_mp_reader *r, size_t hdr, uint32_t len, const uint8_t **p)
{
    if (len > left_of(r) - hdr) return fail(r, WHY_TRUNCATED);
    *p = r->p + hdr;
    r->p += hdr + len;
    return 0;
}

int shmrpc_mp_read_str(shmrpc_mp_reader *r, shmrpc_str *v)
{
    uint8_t b;
    if (!take_byte(r, &b)) return SHMRPC_EINVAL;
    uint32_t len;
    size_t hdr;
    if (b >= 0xa0 && b <= 0xbf) {
        len = b & 0x1f;
        hdr = 1;
    } else if (b >= 0xd9 && b <= 0xdb) {
        hdr = scan_len(r, 1u << (b - 0xd9), &len);
    } else {
        return mismatch(r, W_STR, b);
    }
    const uint8_t *p;
    if (!hdr || take_payload(r, hdr, len, &p)) return SHMRPC_EINVAL;
    v->ptr = (const char *)p;
    v->len = len;
    return 0;
}

int shmrpc_mp_read_bin(shmrpc_mp_reader *r, shmrpc_bytes *v)
{
    uint8_t b;
    if (!take_byte(r, &b)) return SHMRPC_EINVAL;
    if (b < 0xc4 || b > 0xc6) return mismatch(r, W_BIN, b);
    uint32_t len;
    size_t hdr = scan_len(r, 1u << (b - 0xc4), &len);
    const uint8_t *p;
    if (!hdr || take_payload(r, hdr, len, &p)) return SHMRPC_EINVAL;
    v->ptr = p;
    v->len = len;
    return 0;
}

/* An array or map header: fix is the fix form's first byte, b16 the 16-bit form's;
 * each element needs at least per bytes, so a count the message cannot hold fails
 * before anyone allocates for it. */
static int read_count(shmrpc_mp_reader *r, enum want w, uint8_t fix, uint8_t b16, size_t per,
                      uint32_t *n)
{
    uint8_t b;
    if (!take_byte(r, &b)) return SHMRPC_EINVAL;
    uint32_t count;
    size_t hdr;
    if (b >= fix && b <= fix + 0x0f) {
        count = b & 0x0f;
        hdr = 1;
    } else if (b == b16 || b == b16 + 1) {
        hdr = scan_len(r, b == b16 ? 2 : 4, &count);
        if (!hdr) return SHMRPC_EINVAL;
    } else {
        return mismatch(r, w, b);
    }
    /* count * per > left, without the product (per may be anything up to SIZE_MAX). */
    if (per == 0) per = 1;
    if (count > (left_of(r) - hdr) / per) return fail(r, WHY_COUNT);
    *n = count;
    r->p += hdr;
    return 0;
}

int shmrpc_mp_read_array(shmrpc_mp_reader *r, uint32_t *n)
{
    return read_count(r, W_ARRAY, 0x90, 0xdc, 1, n);
}

int shmrpc_mp_read_map(shmrpc_mp_reader *r, uint32_t *n)
{
    return read_count(r, W_MAP, 0x80, 0xde, 2, n);
}

int shmrpc_mp_read_array_of(shmrpc_mp_reader *r, size_t min_elem_bytes, uint32_t *n)
{
    return read_count(r, W_ARRAY, 0x90, 0xdc, min_elem_bytes, n);
}

int shmrpc_mp_read_map_of(shmrpc_mp_reader *r, size_t min_entry_bytes, uint32_t *n)
{
    return read_count(r, W_MAP, 0x80, 0xde, min_entry_bytes, n);
}

int shmrpc_mp_finish(shmrpc_mp_reader *r)
{
    if (r->p != r->end) return fail(r, "trailing bytes");
    return 0;
}

/* --- skipping what a newer peer added -------------------------------------------------- */

/* Consumes the header of one value, and its payload when it has no elements; *children: the
 * values inside it (an array's elements, a map's keys and values), whose count was checked
 * against the bytes left. */
static int skip_head(shmrpc_mp_reader *r, uint64_t *children)
{
    *children = 0;
    if (r->p == r->end) return fail(r, WHY_TRUNCATED);
    uint8_t b = r->p[0];
    uint32_t n;
    switch (kind_of(b)) {
    case K_MAP:
        if (shmrpc_mp_read_map(r, &n)) return SHMRPC_EINVAL;
        *children = 2 * (uint64_t)n;
        return 0;
    case K_ARRAY:
        if (shmrpc_mp_read_array(r, &n)) return SHMRPC_EINVAL;
        *children = n;
        return 0;
    case K_INT: {
        bool neg;
        uint64_t u;
        size_t used = scan_int(r, W_INT, &neg, &u);
        if (used == 0) return SHMRPC_EINVAL;
        r->p += used;
        return 0;
    }
    case K_STR: {
        shmrpc_str s;
        return shmrpc_mp_read_str(r, &s);
    }
    case K_BIN: {
        shmrpc_bytes v;
        return shmrpc_mp_read_bin(r, &v);
    }
    case K_BOOL: {
        bool v;
        return shmrpc_mp_read_bool(r, &v);
    }
    case K_FLOAT: {
        double v;
        return shmrpc_mp_read_f64(r, &v);
    }
    case K_NIL:
        return shmrpc_mp_read_nil(r);
    case K_EXT: {
        size_t left = left_of(r);
        if (b >= 0xd4 && b <= 0xd8) { /* fixext: type, 1 to 16 bytes */
            size_t need = 2 + ((size_t)1 << (b - 0xd4));
            if (left < need) return fail(r, WHY_TRUNCATED);
            r->p += need;
            return 0;
        }
        unsigned w = 1u << (b - 0xc7); /* ext 8/16/32: length, type, data */
        if (left < 2 + w) return fail(r, WHY_TRUNCATED);
        uint64_t len = load_be(r->p + 1, w);
        if (len > left - 2 - w) return fail(r, WHY_TRUNCATED);
        r->p += 2 + w + len;
        return 0;
    }
    default:
        return fail(r, "invalid msgpack byte");
    }
}

int shmrpc_mp_skip(shmrpc_mp_reader *r, uint32_t count)
{
    /* What is left to skip at each level: no recursion, and the nesting bounded as the
     * decoders bound it, counted from where the reader is. */
    uint64_t left[SHMRPC_MAX_DEPTH + 1];
    unsigned top = 0, room = r->depth < SHMRPC_MAX_DEPTH ? SHMRPC_MAX_DEPTH - r->depth : 0;
    left[0] = count;
    for (;;) {
        while (left[top] == 0) {
            if (top == 0) return 0;
            top--;
        }
        left[top]--;
        uint64_t children;
        if (skip_head(r, &children) != 0) return SHMRPC_EINVAL;
        if (children == 0) continue;
        if (top + 1 > room) return fail(r, "nested too deeply");
        left[++top] = children;
    }
}
