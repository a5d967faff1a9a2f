/* SPDX-License-Identifier: MIT */
/* The msgpack reader: values written by msgpack-c's packer read back, and a table of
 * malformed inputs each fail with the expected why and consume nothing. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "unit.h"

/* --- helpers --- */

typedef struct packed {
    shmrpc_buf buf;
    msgpack_packer pk;
} packed;

static void pack_begin(packed *p)
{
    shmrpc_buf_init(&p->buf);
    msgpack_packer_init(&p->pk, &p->buf, shmrpc_buf_msgpack_write);
}

static shmrpc_mp_reader reader_of(const packed *p)
{
    shmrpc_mp_reader r;
    shmrpc_mp_reader_init(&r, p->buf.data, p->buf.len);
    return r;
}

/* --- the table of malformed inputs --- */

enum op { OP_NIL, OP_BOOL, OP_INT, OP_UINT, OP_F64, OP_F32, OP_STR, OP_BIN, OP_ARRAY, OP_MAP };

typedef struct bad_case {
    const char *name;
    const uint8_t *bytes;
    size_t n;
    enum op op;
    int64_t min, max; /* OP_INT; OP_UINT uses max as unsigned */
    const char *why;
} bad_case;

#define I8 INT8_MIN, INT8_MAX
#define I16 INT16_MIN, INT16_MAX
#define I32 INT32_MIN, INT32_MAX
#define I64 INT64_MIN, INT64_MAX
#define U(m) 0, (int64_t)(m)
#define NO 0, 0

static const bad_case bad_cases[] = {
    /* empty and truncated headers and payloads */
    {"empty int", B(""), OP_INT, I64, "truncated"},
    {"empty nil", B(""), OP_NIL, NO, "truncated"},
    {"empty bool", B(""), OP_BOOL, NO, "truncated"},
    {"empty str", B(""), OP_STR, NO, "truncated"},
    {"empty array", B(""), OP_ARRAY, NO, "truncated"},
    {"uint8 no body", B("\xcc"), OP_INT, I64, "truncated"},
    {"uint16 short", B("\xcd\x01"), OP_INT, I64, "truncated"},
    {"uint32 short", B("\xce\x01\x02\x03"), OP_UINT, U(UINT32_MAX), "truncated"},
    {"uint64 short", B("\xcf\x01\x02\x03\x04\x05\x06\x07"), OP_UINT, U(UINT64_MAX), "truncated"},
    {"int8 no body", B("\xd0"), OP_INT, I64, "truncated"},
    {"int16 short", B("\xd1\xff"), OP_INT, I64, "truncated"},
    {"int32 short", B("\xd2\xff\xff\xff"), OP_INT, I64, "truncated"},
    {"int64 short", B("\xd3\xff\xff\xff\xff\xff\xff\xff"), OP_INT, I64, "truncated"},
    {"float32 short", B("\xca\x00\x00\x00"), OP_F64, NO, "truncated"},
    {"float64 short", B("\xcb\x00\x00\x00\x00\x00\x00\x00"), OP_F64, NO, "truncated"},
    {"float64 short as f32", B("\xcb\x00"), OP_F32, NO, "truncated"},
    {"fixstr short", B("\xa5hell"), OP_STR, NO, "truncated"},
    {"str8 no length", B("\xd9"), OP_STR, NO, "truncated"},
    {"str8 short",
     B("\xd9\x03"
       "ab"),
     OP_STR, NO, "truncated"},
    {"str16 short length", B("\xda\x00"), OP_STR, NO, "truncated"},
    {"str32 huge",
     B("\xdb\xff\xff\xff\xff"
       "abc"),
     OP_STR, NO, "truncated"},
    {"bin8 short", B("\xc4\x02\x00"), OP_BIN, NO, "truncated"},
    {"bin16 short length", B("\xc5\x01"), OP_BIN, NO, "truncated"},
    {"bin32 huge", B("\xc6\xff\xff\xff\xff\x00"), OP_BIN, NO, "truncated"},
    {"array16 no count", B("\xdc\x00"), OP_ARRAY, NO, "truncated"},
    {"array32 no count", B("\xdd\xff\xff"), OP_ARRAY, NO, "truncated"},
    {"map16 no count", B("\xde"), OP_MAP, NO, "truncated"},
    /* counts larger than the bytes left: refused before anyone allocates */
    {"fixarray 3, 2 left", B("\x93\x01\x02"), OP_ARRAY, NO, "count larger than the bytes left"},
    {"array16 65535", B("\xdc\xff\xff\x01"), OP_ARRAY, NO, "count larger than the bytes left"},
    {"array32 4G", B("\xdd\xff\xff\xff\xff"), OP_ARRAY, NO, "count larger than the bytes left"},
    {"array32 4G some bytes", B("\xdd\xff\xff\xff\xff\x01\x02\x03"), OP_ARRAY, NO,
     "count larger than the bytes left"},
    {"fixmap 2, 3 left", B("\x82\x01\x02\x03"), OP_MAP, NO, "count larger than the bytes left"},
    {"map32 4G", B("\xdf\xff\xff\xff\xff\x00\x00"), OP_MAP, NO, "count larger than the bytes left"},
    {"map16 1, 1 left", B("\xde\x00\x01\x01"), OP_MAP, NO, "count larger than the bytes left"},
    /* the reserved byte */
    {"0xc1 as int", B("\xc1"), OP_INT, I64, "invalid msgpack byte"},
    {"0xc1 as str", B("\xc1\x00"), OP_STR, NO, "invalid msgpack byte"},
    {"0xc1 as array", B("\xc1"), OP_ARRAY, NO, "invalid msgpack byte"},
    {"0xc1 as nil", B("\xc1"), OP_NIL, NO, "invalid msgpack byte"},
    /* wrong types */
    {"str as int", B("\xa1x"), OP_INT, I64, "expected integer, got string"},
    {"nil as int", B("\xc0"), OP_INT, I64, "expected integer, got nil"},
    {"float as int", B("\xca\x3f\x80\x00\x00"), OP_INT, I64, "expected integer, got float"},
    {"bool as uint", B("\xc3"), OP_UINT, U(UINT64_MAX), "expected integer, got boolean"},
    {"int as str", B("\x01"), OP_STR, NO, "expected string, got integer"},
    {"bin as str", B("\xc4\x00"), OP_STR, NO, "expected string, got binary"},
    {"str as bin", B("\xa0"), OP_BIN, NO, "expected binary, got string"},
    {"map as array", B("\x80"), OP_ARRAY, NO, "expected array, got map"},
    {"array as map", B("\x90"), OP_MAP, NO, "expected map, got array"},
    {"ext as str", B("\xd4\x01\x00"), OP_STR, NO, "expected string, got extension"},
    {"ext8 as int", B("\xc7\x00\x01"), OP_INT, I64, "expected integer, got extension"},
    {"str as f64", B("\xa0"), OP_F64, NO, "expected number, got string"},
    {"nil as f32", B("\xc0"), OP_F32, NO, "expected number, got nil"},
    {"int as bool", B("\x00"), OP_BOOL, NO, "expected boolean, got integer"},
    {"false as nil", B("\xc2"), OP_NIL, NO, "expected nil, got boolean"},
    {"negative fixint as array", B("\xff"), OP_ARRAY, NO, "expected array, got integer"},
    /* ranges at every integer width boundary, in the encodings msgpack-c does not pick */
    {"i8: 128 as uint8", B("\xcc\x80"), OP_INT, I8, "integer out of range for i8"},
    {"i8: -129 as int16", B("\xd1\xff\x7f"), OP_INT, I8, "integer out of range for i8"},
    {"i16: 32768", B("\xcd\x80\x00"), OP_INT, I16, "integer out of range for i16"},
    {"i16: -32769", B("\xd2\xff\xff\x7f\xff"), OP_INT, I16, "integer out of range for i16"},
    {"i32: 2^31", B("\xce\x80\x00\x00\x00"), OP_INT, I32, "integer out of range for i32"},
    {"i32: -2^31-1", B("\xd3\xff\xff\xff\xff\x7f\xff\xff\xff"), OP_INT, I32,
     "integer out of range for i32"},
    {"i64: 2^63", B("\xcf\x80\x00\x00\x00\x00\x00\x00\x00"), OP_INT, I64,
     "integer out of range for i64"},
    {"i64: 2^64-1", B("\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), OP_INT, I64,
     "integer out of range for i64"},
    {"u8: 256", B("\xcd\x01\x00"), OP_UINT, U(UINT8_MAX), "integer out of range for u8"},
    {"u8: -1", B("\xff"), OP_UINT, U(UINT8_MAX), "integer out of range for u8"},
    {"u16: 65536", B("\xce\x00\x01\x00\x00"), OP_UINT, U(UINT16_MAX),
     "integer out of range for u16"},
    {"u32: 2^32", B("\xcf\x00\x00\x00\x01\x00\x00\x00\x00"), OP_UINT, U(UINT32_MAX),
     "integer out of range for u32"},
    {"u64: -1 as int8", B("\xd0\xff"), OP_UINT, U(UINT64_MAX), "integer out of range for u64"},
    {"u64: int64 min", B("\xd3\x80\x00\x00\x00\x00\x00\x00\x00"), OP_UINT, U(UINT64_MAX),
     "integer out of range for u64"},
    {"enum range: 5 of [0,3]", B("\x05"), OP_INT, 0, 3, "integer out of range"},
    {"range [1,10]: 0", B("\x00"), OP_INT, 1, 10, "integer out of range"},
    {"range [-5,-1]: 0", B("\x00"), OP_INT, -5, -1, "integer out of range"},
    {"range [-5,-1]: -6", B("\xfa"), OP_INT, -5, -1, "integer out of range"},
    /* A range that starts where a width's does but ends elsewhere is no width's. */
    {"range [i8 min,0]: 5", B("\x05"), OP_INT, INT8_MIN, 0, "integer out of range"},
    {"range [i16 min,0]: 5", B("\x05"), OP_INT, INT16_MIN, 0, "integer out of range"},
    {"range [i32 min,0]: 5", B("\x05"), OP_INT, INT32_MIN, 0, "integer out of range"},
    {"range [i64 min,0]: 5", B("\x05"), OP_INT, INT64_MIN, 0, "integer out of range"},
    {"range [0,u8 max]: 256", B("\xcd\x01\x00"), OP_INT, 0, UINT8_MAX,
     "integer out of range for u8"},
    /* f32 cannot hold every double */
    {"f32: 1e300", B("\xcb\x7e\x37\xe4\x3c\x88\x00\x75\x9c"), OP_F32, NO,
     "float out of range for f32"},
    {"f32: -1e39", B("\xcb\xc8\x07\x82\x87\xf4\x9c\x4a\x1d"), OP_F32, NO,
     "float out of range for f32"},
};

static int run_op(shmrpc_mp_reader *r, const bad_case *c)
{
    bool b;
    int64_t i;
    uint64_t u;
    double d;
    float f;
    shmrpc_str s;
    shmrpc_bytes by;
    uint32_t n;
    switch (c->op) {
    case OP_NIL:
        return shmrpc_mp_read_nil(r);
    case OP_BOOL:
        return shmrpc_mp_read_bool(r, &b);
    case OP_INT:
        return shmrpc_mp_read_int(r, c->min, c->max, &i);
    case OP_UINT:
        return shmrpc_mp_read_uint(r, (uint64_t)c->max, &u);
    case OP_F64:
        return shmrpc_mp_read_f64(r, &d);
    case OP_F32:
        return shmrpc_mp_read_f32(r, &f);
    case OP_STR:
        return shmrpc_mp_read_str(r, &s);
    case OP_BIN:
        return shmrpc_mp_read_bin(r, &by);
    case OP_ARRAY:
        return shmrpc_mp_read_array(r, &n);
    case OP_MAP:
        return shmrpc_mp_read_map(r, &n);
    }
    return 0;
}

static void malformed_table(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof bad_cases / sizeof bad_cases[0]; k++) {
        const bad_case *c = &bad_cases[k];
        /* A heap copy of exactly n bytes, so ASan sees any read past the end. */
        uint8_t *copy = malloc(c->n ? c->n : 1);
        memcpy(copy, c->bytes, c->n);
        shmrpc_mp_reader r;
        shmrpc_mp_reader_init(&r, copy, c->n);
        int rc = run_op(&r, c);
        if (rc != SHMRPC_EINVAL || !r.why || strcmp(r.why, c->why) != 0)
            fail_msg("case '%s': rc %d, why '%s', expected '%s'", c->name, rc,
                     r.why ? r.why : "(null)", c->why);
        /* Nothing consumed: a failed read leaves the cursor where it was. */
        assert_ptr_equal(r.p, copy);
        free(copy);
    }
}

static void first_why_wins(void **state)
{
    (void)state;
    shmrpc_mp_reader r;
    shmrpc_mp_reader_init(&r, "\xc1", 1);
    int64_t v;
    assert_int_equal(shmrpc_mp_read_int(&r, I64, &v), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_mp_finish(&r), SHMRPC_EINVAL);
    assert_string_equal(r.why, "invalid msgpack byte");
    /* fail_at records the innermost field only. */
    assert_int_equal(shmrpc_mp_fail_at(&r, SHMRPC_EINVAL, "Point.x"), SHMRPC_EINVAL);
    shmrpc_mp_fail_at(&r, SHMRPC_EINVAL, "points");
    assert_string_equal(r.field, "Point.x");
}

/* --- integer boundaries with msgpack-c's own (smallest) encodings --- */

typedef struct range {
    int64_t min, max;
} range;

static int read_packed_int(int64_t v, bool as_unsigned, uint64_t uv, range rg, int64_t *out,
                           const char **why)
{
    packed p;
    pack_begin(&p);
    if (as_unsigned)
        msgpack_pack_uint64(&p.pk, uv);
    else
        msgpack_pack_int64(&p.pk, v);
    shmrpc_mp_reader r = reader_of(&p);
    int rc = shmrpc_mp_read_int(&r, rg.min, rg.max, out);
    if (rc == 0) assert_int_equal(shmrpc_mp_finish(&r), 0);
    *why = r.why;
    shmrpc_buf_destroy(&p.buf);
    return rc;
}

static void signed_boundaries(void **state)
{
    (void)state;
    static const range ranges[] = {{I8}, {I16}, {I32}};
    for (size_t k = 0; k < 3; k++) {
        range rg = ranges[k];
        int64_t out;
        const char *why;
        assert_int_equal(read_packed_int(rg.min, false, 0, rg, &out, &why), 0);
        assert_int_equal(out, rg.min);
        assert_int_equal(read_packed_int(rg.max, false, 0, rg, &out, &why), 0);
        assert_int_equal(out, rg.max);
        assert_int_equal(read_packed_int(0, false, 0, rg, &out, &why), 0);
        assert_int_equal(read_packed_int(-1, false, 0, rg, &out, &why), 0);
        assert_int_equal(out, -1);
        assert_int_equal(read_packed_int(rg.min - 1, false, 0, rg, &out, &why), SHMRPC_EINVAL);
        assert_string_equal(why, shmrpc__int_range_why(rg.min, rg.max));
        assert_int_equal(read_packed_int(rg.max + 1, false, 0, rg, &out, &why), SHMRPC_EINVAL);
        assert_string_equal(why, shmrpc__int_range_why(rg.min, rg.max));
    }
    range i64 = {I64};
    int64_t out;
    const char *why;
    assert_int_equal(read_packed_int(INT64_MIN, false, 0, i64, &out, &why), 0);
    assert_true(out == INT64_MIN);
    assert_int_equal(read_packed_int(INT64_MAX, false, 0, i64, &out, &why), 0);
    assert_true(out == INT64_MAX);
    assert_int_equal(read_packed_int(0, true, (uint64_t)INT64_MAX + 1, i64, &out, &why),
                     SHMRPC_EINVAL);
    assert_string_equal(why, "integer out of range for i64");
    /* Every fixint and every encoding width around it. */
    for (int64_t v = -40000; v <= 70000; v += 1 + (v > -300 && v < 300 ? 0 : 97)) {
        assert_int_equal(read_packed_int(v, false, 0, i64, &out, &why), 0);
        assert_int_equal(out, v);
    }
}

static void unsigned_boundaries(void **state)
{
    (void)state;
    static const uint64_t maxes[] = {UINT8_MAX, UINT16_MAX, UINT32_MAX};
    for (size_t k = 0; k < 3; k++) {
        uint64_t max = maxes[k];
        for (int d = -1; d <= 1; d++) {
            packed p;
            pack_begin(&p);
            msgpack_pack_uint64(&p.pk, max + (uint64_t)(int64_t)d);
            shmrpc_mp_reader r = reader_of(&p);
            uint64_t out;
            int rc = shmrpc_mp_read_uint(&r, max, &out);
            if (d <= 0) {
                assert_int_equal(rc, 0);
                assert_true(out == max + (uint64_t)(int64_t)d);
            } else {
                assert_int_equal(rc, SHMRPC_EINVAL);
                assert_string_equal(r.why, shmrpc__uint_range_why(max));
            }
            shmrpc_buf_destroy(&p.buf);
        }
    }
    packed p;
    pack_begin(&p);
    msgpack_pack_uint64(&p.pk, UINT64_MAX);
    msgpack_pack_int64(&p.pk, -1);
    msgpack_pack_uint64(&p.pk, 0);
    shmrpc_mp_reader r = reader_of(&p);
    uint64_t out;
    assert_int_equal(shmrpc_mp_read_uint(&r, UINT64_MAX, &out), 0);
    assert_true(out == UINT64_MAX);
    assert_int_equal(shmrpc_mp_read_uint(&r, UINT64_MAX, &out), SHMRPC_EINVAL);
    assert_string_equal(r.why, "integer out of range for u64");
    shmrpc_buf_destroy(&p.buf);
}

static void non_minimal_encodings(void **state)
{
    (void)state;
    /* Other packers need not pick the smallest form; every form of 5 reads as 5. */
    static const struct {
        const uint8_t *b;
        size_t n;
    } forms[] = {
        {B("\x05")},
        {B("\xcc\x05")},
        {B("\xcd\x00\x05")},
        {B("\xce\x00\x00\x00\x05")},
        {B("\xcf\x00\x00\x00\x00\x00\x00\x00\x05")},
        {B("\xd0\x05")},
        {B("\xd1\x00\x05")},
        {B("\xd2\x00\x00\x00\x05")},
        {B("\xd3\x00\x00\x00\x00\x00\x00\x00\x05")},
    };
    for (size_t k = 0; k < sizeof forms / sizeof forms[0]; k++) {
        shmrpc_mp_reader r;
        shmrpc_mp_reader_init(&r, forms[k].b, forms[k].n);
        int64_t v;
        assert_int_equal(shmrpc_mp_read_int(&r, I8, &v), 0);
        assert_int_equal(v, 5);
        assert_int_equal(shmrpc_mp_finish(&r), 0);
        shmrpc_mp_reader_init(&r, forms[k].b, forms[k].n);
        uint64_t u;
        assert_int_equal(shmrpc_mp_read_uint(&r, UINT8_MAX, &u), 0);
        assert_int_equal(u, 5);
        shmrpc_mp_reader_init(&r, forms[k].b, forms[k].n);
        double d;
        assert_int_equal(shmrpc_mp_read_f64(&r, &d), 0);
        assert_true(d == 5.0);
    }
    /* Negative values in each signed width. */
    static const struct {
        const uint8_t *b;
        size_t n;
        int64_t v;
    } negs[] = {
        {B("\xe0"), -32},
        {B("\xd0\x80"), -128},
        {B("\xd1\x80\x00"), -32768},
        {B("\xd2\x80\x00\x00\x00"), INT32_MIN},
        {B("\xd3\x80\x00\x00\x00\x00\x00\x00\x00"), INT64_MIN},
        {B("\xd1\xff\xff"), -1},
    };
    for (size_t k = 0; k < sizeof negs / sizeof negs[0]; k++) {
        shmrpc_mp_reader r;
        shmrpc_mp_reader_init(&r, negs[k].b, negs[k].n);
        int64_t v;
        assert_int_equal(shmrpc_mp_read_int(&r, I64, &v), 0);
        assert_true(v == negs[k].v);
    }
}

/* --- valid values from msgpack-c --- */

static void scalars_round_trip(void **state)
{
    (void)state;
    packed p;
    pack_begin(&p);
    msgpack_packer *pk = &p.pk;
    msgpack_pack_nil(pk);
    msgpack_pack_true(pk);
    msgpack_pack_false(pk);
    msgpack_pack_float(pk, 1.5f);
    msgpack_pack_double(pk, -2.25);
    msgpack_pack_int64(pk, -7);
    msgpack_pack_double(pk, 1e300);
    msgpack_pack_double(pk, NAN);
    msgpack_pack_float(pk, INFINITY);
    msgpack_pack_double(pk, FLT_MAX);
    msgpack_pack_uint64(pk, UINT64_MAX);
    msgpack_pack_nil(pk);
    msgpack_pack_int(pk, 3);
    assert_int_equal(p.buf.err, 0);

    shmrpc_mp_reader r = reader_of(&p);
    bool b;
    float f;
    double d;
    assert_int_equal(shmrpc_mp_try_nil(&r), 1);
    assert_int_equal(shmrpc_mp_read_bool(&r, &b), 0);
    assert_true(b);
    assert_int_equal(shmrpc_mp_try_nil(&r), 0);
    assert_int_equal(shmrpc_mp_read_bool(&r, &b), 0);
    assert_false(b);
    assert_int_equal(shmrpc_mp_read_f32(&r, &f), 0);
    assert_true(f == 1.5f);
    assert_int_equal(shmrpc_mp_read_f32(&r, &f), 0); /* float64 into f32 */
    assert_true(f == -2.25f);
    assert_int_equal(shmrpc_mp_read_f64(&r, &d), 0); /* an int as f64 */
    assert_true(d == -7.0);
    assert_int_equal(shmrpc_mp_read_f64(&r, &d), 0);
    assert_true(d == 1e300);
    assert_int_equal(shmrpc_mp_read_f32(&r, &f), 0); /* NaN passes as NaN */
    assert_true(isnan(f));
    assert_int_equal(shmrpc_mp_read_f32(&r, &f), 0); /* and infinity as infinity */
    assert_true(isinf(f));
    assert_int_equal(shmrpc_mp_read_f32(&r, &f), 0); /* FLT_MAX as a double still fits */
    assert_true(f == FLT_MAX);
    assert_int_equal(shmrpc_mp_read_f64(&r, &d), 0);
    assert_true(d == 18446744073709551615.0);
    assert_int_equal(shmrpc_mp_read_nil(&r), 0);
    assert_int_equal(shmrpc_mp_finish(&r), SHMRPC_EINVAL);
    assert_string_equal(r.why, "trailing bytes");
    r.why = NULL;
    assert_int_equal(shmrpc_mp_read_f32(&r, &f), 0);
    assert_true(f == 3.0f);
    assert_int_equal(shmrpc_mp_finish(&r), 0);
    assert_int_equal(shmrpc_mp_try_nil(&r), SHMRPC_EINVAL);
    assert_string_equal(r.why, "truncated");
    shmrpc_buf_destroy(&p.buf);
}

static void strings_of_every_width(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 100000};
    char *text = malloc(100000);
    for (size_t i = 0; i < 100000; i++)
        text[i] = (char)('a' + i % 26);
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        packed p;
        pack_begin(&p);
        msgpack_pack_str_with_body(&p.pk, text, lens[k]);
        msgpack_pack_bin_with_body(&p.pk, text, lens[k]);
        shmrpc_mp_reader r = reader_of(&p);
        shmrpc_str s;
        shmrpc_bytes b;
        assert_int_equal(shmrpc_mp_read_str(&r, &s), 0);
        assert_int_equal(s.len, lens[k]);
        if (lens[k]) assert_memory_equal(s.ptr, text, lens[k]);
        assert_int_equal(shmrpc_mp_read_bin(&r, &b), 0);
        assert_int_equal(b.len, lens[k]);
        if (lens[k]) assert_memory_equal(b.ptr, text, lens[k]);
        assert_int_equal(shmrpc_mp_finish(&r), 0);
        shmrpc_buf_destroy(&p.buf);
    }
    free(text);
}

static void containers_of_every_width(void **state)
{
    (void)state;
    static const uint32_t counts[] = {0, 15, 16, 65535, 65536};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        uint32_t c = counts[k];
        packed p;
        pack_begin(&p);
        msgpack_pack_array(&p.pk, c);
        for (uint32_t i = 0; i < c; i++)
            msgpack_pack_int(&p.pk, (int)(i & 0x3f));
        msgpack_pack_map(&p.pk, c);
        for (uint32_t i = 0; i < c; i++) {
            msgpack_pack_int(&p.pk, 1);
            msgpack_pack_nil(&p.pk);
        }
        shmrpc_mp_reader r = reader_of(&p);
        uint32_t n;
        assert_int_equal(shmrpc_mp_read_array(&r, &n), 0);
        assert_int_equal(n, c);
        for (uint32_t i = 0; i < c; i++) {
            int64_t v;
            assert_int_equal(shmrpc_mp_read_int(&r, I64, &v), 0);
        }
        assert_int_equal(shmrpc_mp_read_map(&r, &n), 0);
        assert_int_equal(n, c);
        for (uint32_t i = 0; i < c; i++) {
            int64_t v;
            assert_int_equal(shmrpc_mp_read_int(&r, I64, &v), 0);
            assert_int_equal(shmrpc_mp_read_nil(&r), 0);
        }
        assert_int_equal(shmrpc_mp_finish(&r), 0);
        shmrpc_buf_destroy(&p.buf);
    }
}

/* --- every truncated prefix of a valid message --- */

static void pack_sample(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 12);
    msgpack_pack_int64(pk, 300);
    msgpack_pack_int64(pk, -70000);
    msgpack_pack_str_with_body(pk, "hello", 5);
    msgpack_pack_bin_with_body(pk, "\x00\x01\x02", 3);
    msgpack_pack_map(pk, 1);
    msgpack_pack_int(pk, 1);
    msgpack_pack_true(pk);
    msgpack_pack_float(pk, 1.5f);
    msgpack_pack_double(pk, 2.5);
    msgpack_pack_nil(pk);
    msgpack_pack_uint64(pk, UINT64_MAX);
    msgpack_pack_array(pk, 20);
    for (int i = 0; i < 20; i++)
        msgpack_pack_int(pk, i * 1000);
    msgpack_pack_str_with_body(pk, "a string longer than thirty-one bytes", 37);
    msgpack_pack_int64(pk, INT64_MIN);
}

/* Decodes the sample as a generated decoder would: stop at the first failure. */
static int decode_sample(shmrpc_mp_reader *r)
{
    uint32_t n;
    int64_t i;
    uint64_t u;
    shmrpc_str s;
    shmrpc_bytes b;
    bool t;
    float f;
    double d;
    if (shmrpc_mp_read_array(r, &n) || n != 12) return SHMRPC_EINVAL;
    if (shmrpc_mp_read_int(r, I64, &i) || i != 300) return SHMRPC_EINVAL;
    if (shmrpc_mp_read_int(r, I32, &i) || i != -70000) return SHMRPC_EINVAL;
    if (shmrpc_mp_read_str(r, &s) || s.len != 5) return SHMRPC_EINVAL;
    if (shmrpc_mp_read_bin(r, &b) || b.len != 3) return SHMRPC_EINVAL;
    if (shmrpc_mp_read_map(r, &n) || n != 1) return SHMRPC_EINVAL;
    if (shmrpc_mp_read_uint(r, UINT8_MAX, &u) || shmrpc_mp_read_bool(r, &t)) return SHMRPC_EINVAL;
    if (shmrpc_mp_read_f32(r, &f) || shmrpc_mp_read_f64(r, &d)) return SHMRPC_EINVAL;
    int nil = shmrpc_mp_try_nil(r);
    if (nil != 1) return SHMRPC_EINVAL;
    if (shmrpc_mp_read_uint(r, UINT64_MAX, &u)) return SHMRPC_EINVAL;
    if (shmrpc_mp_read_array(r, &n) || n != 20) return SHMRPC_EINVAL;
    for (uint32_t k = 0; k < n; k++)
        if (shmrpc_mp_read_int(r, I32, &i)) return SHMRPC_EINVAL;
    if (shmrpc_mp_read_str(r, &s)) return SHMRPC_EINVAL;
    if (shmrpc_mp_read_int(r, I64, &i) || i != INT64_MIN) return SHMRPC_EINVAL;
    return shmrpc_mp_finish(r);
}

static void every_truncated_prefix_fails(void **state)
{
    (void)state;
    packed p;
    pack_begin(&p);
    pack_sample(&p.pk);
    assert_int_equal(p.buf.err, 0);
    size_t full = p.buf.len;
    for (size_t n = 0; n <= full + 1; n++) {
        uint8_t *copy = malloc(n + 1);
        memcpy(copy, p.buf.data, n <= full ? n : full);
        if (n > full) copy[full] = 0x00; /* one trailing byte */
        shmrpc_mp_reader r;
        shmrpc_mp_reader_init(&r, copy, n);
        int rc = decode_sample(&r);
        if (n == full) {
            assert_int_equal(rc, 0);
        } else {
            if (rc != SHMRPC_EINVAL || !r.why) fail_msg("prefix of %zu bytes: rc %d", n, rc);
            const char *want = n < full ? "truncated" : "trailing bytes";
            if (strcmp(r.why, want) != 0 && strcmp(r.why, "count larger than the bytes left"))
                fail_msg("prefix of %zu bytes: why '%s'", n, r.why);
        }
        free(copy);
    }
    shmrpc_buf_destroy(&p.buf);
}

/* Random bytes and random corruptions of the sample: never a crash or a read out of
 * bounds (ASan watches), always 0 or SHMRPC_EINVAL with a why. */
static void random_garbage(void **state)
{
    (void)state;
    packed p;
    pack_begin(&p);
    pack_sample(&p.pk);
    unsigned seed = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t n = p.buf.len;
        uint8_t *copy = malloc(n);
        memcpy(copy, p.buf.data, n);
        int flips = 1 + rand_r(&seed) % 4;
        for (int k = 0; k < flips; k++)
            copy[rand_r(&seed) % n] = (uint8_t)rand_r(&seed);
        size_t cut = round % 3 ? n : (size_t)rand_r(&seed) % n;
        shmrpc_mp_reader r;
        shmrpc_mp_reader_init(&r, copy, cut);
        int rc = decode_sample(&r);
        assert_true(rc == 0 || rc == SHMRPC_EINVAL);
        assert_true(r.p >= copy && r.p <= copy + cut);
        free(copy);
    }
    shmrpc_buf_destroy(&p.buf);
}

/* --- counts checked against the least size of an element --- */

static void counts_against_element_size(void **state)
{
    (void)state;
    /* An array of 4 in a body of 1 + 8 bytes: fine for 2-byte elements, not for 3. */
    static const uint8_t arr[] = {0x94, 1, 2, 3, 4, 5, 6, 7, 8};
    shmrpc_mp_reader r;
    uint32_t n = 99;
    shmrpc_mp_reader_init(&r, arr, sizeof arr);
    assert_int_equal(shmrpc_mp_read_array_of(&r, 2, &n), 0);
    assert_int_equal(n, 4);
    assert_ptr_equal(r.p, arr + 1);
    shmrpc_mp_reader_init(&r, arr, sizeof arr);
    assert_int_equal(shmrpc_mp_read_array_of(&r, 3, &n), SHMRPC_EINVAL);
    assert_string_equal(r.why, "count larger than the bytes left");
    assert_ptr_equal(r.p, arr);
    /* 0 reads as 1; a huge minimum cannot overflow into a pass. */
    shmrpc_mp_reader_init(&r, arr, sizeof arr);
    assert_int_equal(shmrpc_mp_read_array_of(&r, 0, &n), 0);
    shmrpc_mp_reader_init(&r, arr, sizeof arr);
    assert_int_equal(shmrpc_mp_read_array_of(&r, SIZE_MAX, &n), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_mp_read_array_of(&r, (SIZE_MAX / 4) + 1, &n), SHMRPC_EINVAL);
    static const uint8_t empty[] = {0x90};
    shmrpc_mp_reader_init(&r, empty, sizeof empty);
    assert_int_equal(shmrpc_mp_read_array_of(&r, SIZE_MAX, &n), 0);
    assert_int_equal(n, 0);

    /* array32 of 2^32-1 in a short body, whatever the element size. */
    static const uint8_t big[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0, 0, 0};
    for (size_t min = 1; min < 64; min *= 3) {
        shmrpc_mp_reader_init(&r, big, sizeof big);
        assert_int_equal(shmrpc_mp_read_array_of(&r, min, &n), SHMRPC_EINVAL);
        assert_string_equal(r.why, "count larger than the bytes left");
    }

    /* A map of 2 entries of at least 3 bytes: 6 bytes needed after the header. */
    static const uint8_t map[] = {0x82, 1, 2, 3, 4, 5, 6};
    shmrpc_mp_reader_init(&r, map, sizeof map);
    assert_int_equal(shmrpc_mp_read_map_of(&r, 3, &n), 0);
    assert_int_equal(n, 2);
    shmrpc_mp_reader_init(&r, map, sizeof map - 1);
    assert_int_equal(shmrpc_mp_read_map_of(&r, 3, &n), SHMRPC_EINVAL);
    assert_string_equal(r.why, "count larger than the bytes left");
    shmrpc_mp_reader_init(&r, map, sizeof map);
    assert_int_equal(shmrpc_mp_read_map_of(&r, 4, &n), SHMRPC_EINVAL);
    /* The wrong kind still says so. */
    shmrpc_mp_reader_init(&r, arr, sizeof arr);
    assert_int_equal(shmrpc_mp_read_map_of(&r, 1, &n), SHMRPC_EINVAL);
    assert_string_equal(r.why, "expected map, got array");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(malformed_table),
        cmocka_unit_test(first_why_wins),
        cmocka_unit_test(signed_boundaries),
        cmocka_unit_test(unsigned_boundaries),
        cmocka_unit_test(non_minimal_encodings),
        cmocka_unit_test(scalars_round_trip),
        cmocka_unit_test(strings_of_every_width),
        cmocka_unit_test(containers_of_every_width),
        cmocka_unit_test(every_truncated_prefix_fails),
        cmocka_unit_test(random_garbage),
        cmocka_unit_test(counts_against_element_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
