/* SPDX-License-Identifier: MIT */
/* Round trips of every .svc type through the generated msgpack and JSON codecs, and
 * malformed bodies refused with the failing field named, all over inproc://. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "types_handlers.h"

/* --- equality --- */

static bool str_eq(shmrpc_str a, shmrpc_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool bytes_eq(shmrpc_bytes a, shmrpc_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool scalars_eq(const types_Scalars *a, const types_Scalars *b)
{
    return a->b == b->b && a->i8v == b->i8v && a->i16v == b->i16v && a->i32v == b->i32v &&
           a->i64v == b->i64v && a->u8v == b->u8v && a->u16v == b->u16v && a->u32v == b->u32v &&
           a->u64v == b->u64v && a->f32v == b->f32v && a->f64v == b->f64v && str_eq(a->s, b->s) &&
           bytes_eq(a->data, b->data) && a->c == b->c && a->sign == b->sign;
}

static bool node_eq(const types_Node *a, const types_Node *b)
{
    if (a->value != b->value || a->children.len != b->children.len) return false;
    for (size_t i = 0; i < a->children.len; i++)
        if (!node_eq(&a->children.items[i], &b->children.items[i])) return false;
    if ((a->next == NULL) != (b->next == NULL)) return false;
    return a->next == NULL || node_eq(a->next, b->next);
}

static bool opt_scalars_eq(const types_Scalars *a, const types_Scalars *b)
{
    if ((a == NULL) != (b == NULL)) return false;
    return a == NULL || scalars_eq(a, b);
}

static void assert_holder_eq(const types_Holder *a, const types_Holder *b)
{
    assert_true(opt_scalars_eq(a->maybe, b->maybe));
    assert_int_equal(a->oi.has, b->oi.has);
    if (a->oi.has) assert_int_equal(a->oi.value, b->oi.value);
    assert_int_equal(a->os.has, b->os.has);
    if (a->os.has) assert_true(str_eq(a->os.value, b->os.value));
    assert_int_equal(a->ob.has, b->ob.has);
    if (a->ob.has) assert_true(bytes_eq(a->ob.value, b->ob.value));
    assert_int_equal(a->oc.has, b->oc.has);
    if (a->oc.has) assert_int_equal(a->oc.value, b->oc.value);
    assert_int_equal(a->ol.has, b->ol.has);
    if (a->ol.has) {
        assert_int_equal(a->ol.value.len, b->ol.value.len);
        for (size_t i = 0; i < a->ol.value.len; i++)
            assert_int_equal(a->ol.value.items[i], b->ol.value.items[i]);
    }
    assert_int_equal(a->names.len, b->names.len);
    for (size_t i = 0; i < a->names.len; i++)
        assert_true(str_eq(a->names.items[i], b->names.items[i]));
    assert_int_equal(a->grid.len, b->grid.len);
    for (size_t i = 0; i < a->grid.len; i++) {
        assert_int_equal(a->grid.items[i].len, b->grid.items[i].len);
        for (size_t j = 0; j < a->grid.items[i].len; j++)
            assert_int_equal(a->grid.items[i].items[j], b->grid.items[i].items[j]);
    }
    assert_int_equal(a->sparse.len, b->sparse.len);
    for (size_t i = 0; i < a->sparse.len; i++)
        assert_true(opt_scalars_eq(a->sparse.items[i], b->sparse.items[i]));
    /* Maps: JSON objects need not keep member order, so look each key up. */
    assert_int_equal(a->counts.len, b->counts.len);
    for (size_t i = 0; i < a->counts.len; i++) {
        bool found = false;
        for (size_t j = 0; j < b->counts.len; j++)
            if (str_eq(a->counts.items[i].key, b->counts.items[j].key)) {
                assert_int_equal(a->counts.items[i].value, b->counts.items[j].value);
                found = true;
            }
        assert_true(found);
    }
    assert_int_equal(a->by_id.len, b->by_id.len);
    for (size_t i = 0; i < a->by_id.len; i++) {
        bool found = false;
        for (size_t j = 0; j < b->by_id.len; j++)
            if (a->by_id.items[i].key == b->by_id.items[j].key) {
                assert_true(str_eq(a->by_id.items[i].value, b->by_id.items[j].value));
                found = true;
            }
        assert_true(found);
    }
    assert_int_equal(a->series.len, b->series.len);
    for (size_t i = 0; i < a->series.len; i++) {
        bool found = false;
        for (size_t j = 0; j < b->series.len; j++)
            if (a->series.items[i].key == b->series.items[j].key) {
                const types_list_F64 *x = &a->series.items[i].value, *y = &b->series.items[j].value;
                assert_int_equal(x->len, y->len);
                for (size_t k = 0; k < x->len; k++)
                    assert_true(x->items[k] == y->items[k]);
                found = true;
            }
        assert_true(found);
    }
    assert_int_equal(a->by_color.len, b->by_color.len);
    for (size_t i = 0; i < a->by_color.len; i++) {
        bool found = false;
        for (size_t j = 0; j < b->by_color.len; j++)
            if (a->by_color.items[i].key == b->by_color.items[j].key) {
                assert_true(node_eq(&a->by_color.items[i].value, &b->by_color.items[j].value));
                found = true;
            }
        assert_true(found);
    }
    assert_int_equal(a->nested.len, b->nested.len);
    for (size_t i = 0; i < a->nested.len; i++) {
        bool found = false;
        for (size_t j = 0; j < b->nested.len; j++)
            if (str_eq(a->nested.items[i].key, b->nested.items[j].key)) {
                const types_map_String_Bool *x = &a->nested.items[i].value,
                                            *y = &b->nested.items[j].value;
                assert_int_equal(x->len, y->len);
                for (size_t k = 0; k < x->len; k++) {
                    bool inner = false;
                    for (size_t l = 0; l < y->len; l++)
                        if (str_eq(x->items[k].key, y->items[l].key)) {
                            assert_int_equal(x->items[k].value, y->items[l].value);
                            inner = true;
                        }
                    assert_true(inner);
                }
                found = true;
            }
        assert_true(found);
    }
}

/* --- fixture: a server and a client over inproc:// --- */

typedef struct fixture {
    shmrpc_server *s;
    shmrpc_client *c;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(shmrpc_server_new(&f->s, NULL), 0);
    assert_int_equal(shmrpc_server_register(f->s, &Types_service, &types_identity_handlers, NULL),
                     0);
    assert_int_equal(shmrpc_server_listen(f->s, "inproc://types"), 0);
    assert_int_equal(shmrpc_client_new(&f->c, &Types_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(f->c, "inproc://types"), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    shmrpc_client_free(f->c);
    shmrpc_server_free(f->s);
    free(f);
    return 0;
}

#define OK(call, c)                                                                                \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0) fail_msg("%s: %s: %s", #call, shmrpc_strerror(rc_), shmrpc_errmsg());        \
    } while (0)

/* A Node with a fourth field, unknown here, that nests arrays 10,000 deep: skipped without
 * recursion, and refused past SHMRPC_MAX_DEPTH (issue 36). */
#define DEEP_EXTRA deep_extra, sizeof deep_extra
static char deep_extra[5 + 10000 + 1] = "\x91\x94\x01\x90\xc0";

static const uint8_t blob[] = {0, 1, 2, 0xff, 0, 0x80};

static types_Scalars scalars_max(void)
{
    return (types_Scalars){.b = true,
                           .i8v = INT8_MAX,
                           .i16v = INT16_MAX,
                           .i32v = INT32_MAX,
                           .i64v = INT64_MAX,
                           .u8v = UINT8_MAX,
                           .u16v = UINT16_MAX,
                           .u32v = UINT32_MAX,
                           .u64v = UINT64_MAX,
                           .f32v = FLT_MAX,
                           .f64v = DBL_MAX,
                           .s = SHMRPC_STR("\xe2\x82\xac \xf0\x9f\x98\x80 \"q\" \\ \n"),
                           .data = {blob, sizeof blob},
                           .c = types_Color_blue,
                           .sign = types_Sign_plus};
}

static types_Scalars scalars_min(void)
{
    return (types_Scalars){.b = false,
                           .i8v = INT8_MIN,
                           .i16v = INT16_MIN,
                           .i32v = INT32_MIN,
                           .i64v = INT64_MIN,
                           .f32v = -FLT_MAX,
                           .f64v = -DBL_MIN,
                           .s = {"", 0},
                           .data = {NULL, 0},
                           .c = types_Color_red,
                           .sign = types_Sign_minus};
}

static void test_scalars_msgpack(void **state)
{
    fixture *f = *state;
    types_Scalars zero = {.c = types_Color_green, .sign = types_Sign_zero}, cases[3], out;
    cases[0] = zero;
    cases[1] = scalars_max();
    cases[2] = scalars_min();
    for (int i = 0; i < 3; i++) {
        memset(&out, 0x55, sizeof out);
        OK(types_pass_scalars(f->c, &cases[i], &out), f->c);
        assert_true(scalars_eq(&cases[i], &out));
    }
}

static void test_scalars_json(void **state)
{
    fixture *f = *state;
    types_Scalars cases[2] = {scalars_max(), scalars_min()}, out;
    cases[0].u64v = INT64_MAX; /* the JSON library holds integers as int64 */
    for (int i = 0; i < 2; i++) {
        memset(&out, 0x55, sizeof out);
        OK(types_pass_scalars_json(f->c, &cases[i], &out), f->c);
        assert_true(scalars_eq(&cases[i], &out));
    }
    cases[0].u64v = UINT64_MAX;
    assert_int_equal(types_pass_scalars_json(f->c, &cases[0], &out), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "'v'"));
}

/* A chain of depth nodes, each the only child of the one before; with next, every third
 * one also has a next node. The pool is static: tests run one at a time. */
static types_Node pool[SHMRPC_MAX_DEPTH + 1], nexts[SHMRPC_MAX_DEPTH + 1];

static types_Node *chain_of(int depth, bool next)
{
    for (int i = depth - 1; i >= 0; i--) {
        pool[i] = (types_Node){.value = i * 1000 - 7};
        if (i + 1 < depth) pool[i].children = (types_list_Node){&pool[i + 1], 1};
        if (next && i % 3 == 0) {
            nexts[i] = (types_Node){.value = -i};
            pool[i].next = &nexts[i];
        }
    }
    return &pool[0];
}

static types_Node *chain(int depth)
{
    return chain_of(depth, true);
}

static types_Holder full_holder(types_Scalars *sc, types_Node *nodes)
{
    static const char *const names[] = {"a", "\xc3\xa9t\xc3\xa9", ""};
    static shmrpc_str name_strs[3];
    for (int i = 0; i < 3; i++)
        name_strs[i] = shmrpc_str_c(names[i]);
    static const int32_t row0[] = {1, -2, 3}, row1[] = {INT32_MIN};
    static types_list_I32 rows[3];
    rows[0] = (types_list_I32){row0, 3};
    rows[1] = (types_list_I32){row1, 1};
    rows[2] = (types_list_I32){NULL, 0};
    static const int64_t longs[] = {INT64_MIN, 0, INT64_MAX};
    static const types_Scalars *sparse[3];
    sparse[0] = NULL;
    sparse[1] = sc;
    sparse[2] = NULL;
    static types_map_String_I64_entry counts[2];
    counts[0] = (types_map_String_I64_entry){SHMRPC_STR("x"), -7};
    counts[1] = (types_map_String_I64_entry){SHMRPC_STR("y"), 1LL << 40};
    static types_map_I32_String_entry by_id[2];
    by_id[0] = (types_map_I32_String_entry){-1, SHMRPC_STR("minus one")};
    by_id[1] = (types_map_I32_String_entry){INT32_MAX, SHMRPC_STR("max")};
    static const double s1[] = {0.5, -1e300};
    static types_map_U64_list_F64_entry series[2];
    series[0] = (types_map_U64_list_F64_entry){0, {s1, 2}};
    series[1] = (types_map_U64_list_F64_entry){INT64_MAX, {NULL, 0}};
    static types_map_Color_Node_entry by_color[2];
    by_color[0] = (types_map_Color_Node_entry){types_Color_green, nodes[0]};
    by_color[1] = (types_map_Color_Node_entry){types_Color_red, nodes[1]};
    static types_map_String_Bool_entry inner[2];
    inner[0] = (types_map_String_Bool_entry){SHMRPC_STR("t"), true};
    inner[1] = (types_map_String_Bool_entry){SHMRPC_STR("f"), false};
    static types_map_String_map_String_Bool_entry nested[2];
    nested[0] = (types_map_String_map_String_Bool_entry){SHMRPC_STR("k"), {inner, 2}};
    nested[1] = (types_map_String_map_String_Bool_entry){SHMRPC_STR("empty"), {NULL, 0}};
    return (types_Holder){
        .maybe = sc,
        .oi = {true, -5},
        .os = {true, SHMRPC_STR("opt")},
        .ob = {true, {blob, sizeof blob}},
        .oc = {true, types_Color_blue},
        .ol = {true, {longs, 3}},
        .names = {name_strs, 3},
        .grid = {rows, 3},
        .sparse = {sparse, 3},
        .counts = {counts, 2},
        .by_id = {by_id, 2},
        .series = {series, 2},
        .by_color = {by_color, 2},
        .nested = {nested, 2},
    };
}

static void test_holder_absent(void **state)
{
    fixture *f = *state;
    types_Holder empty, out;
    memset(&empty, 0, sizeof empty);
    OK(types_pass_holder(f->c, &empty, &out), f->c);
    assert_holder_eq(&empty, &out);
    OK(types_pass_holder_json(f->c, &empty, &out), f->c);
    assert_holder_eq(&empty, &out);
}

static void test_holder_present(void **state)
{
    fixture *f = *state;
    types_Scalars sc = scalars_max();
    sc.u64v = 12345; /* JSON: see test_scalars_json */
    types_Node nodes[2] = {*chain(5), {.value = 99}};
    types_Holder h = full_holder(&sc, nodes), out;
    OK(types_pass_holder(f->c, &h, &out), f->c);
    assert_holder_eq(&h, &out);
    OK(types_pass_holder_json(f->c, &h, &out), f->c);
    assert_holder_eq(&h, &out);
}

static void test_recursion_depth(void **state)
{
    fixture *f = *state;
    types_Node out;
    OK(types_pass_node(f->c, chain(40), &out), f->c);
    assert_true(node_eq(&pool[0], &out));
    OK(types_pass_node_json(f->c, chain(40), &out), f->c);
    assert_true(node_eq(&pool[0], &out));
    /* Nesting beyond SHMRPC_MAX_DEPTH is refused, not followed down the stack. */
    OK(types_pass_node(f->c, chain_of((int)SHMRPC_MAX_DEPTH, false), &out), f->c);
    assert_int_equal(types_pass_node(f->c, chain_of((int)SHMRPC_MAX_DEPTH + 1, false), &out),
                     SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "nested too deeply"));
}

static void test_large_lists(void **state)
{
    fixture *f = *state;
    enum { N = 200000 };
    uint8_t *bytes = malloc(N);
    assert_non_null(bytes);
    for (int i = 0; i < N; i++)
        bytes[i] = (uint8_t)(i * 7);
    types_list_U8 out;
    OK(types_many(f->c, (types_list_U8){bytes, N}, &out), f->c);
    assert_int_equal(out.len, N);
    assert_memory_equal(out.items, bytes, N);
    OK(types_many(f->c, (types_list_U8){NULL, 0}, &out), f->c);
    assert_int_equal(out.len, 0);
    free(bytes);

    enum { M = 20000 };
    shmrpc_str *strs = malloc(M * sizeof *strs);
    assert_non_null(strs);
    for (int i = 0; i < M; i++)
        strs[i] = (i % 2) ? SHMRPC_STR("odd \u00e9Ã©") : SHMRPC_STR("");
    types_list_String sout;
    OK(types_many_json(f->c, (types_list_String){strs, M}, &sout), f->c);
    assert_int_equal(sout.len, M);
    for (int i = 0; i < M; i++)
        assert_true(str_eq(strs[i], sout.items[i]));
    free(strs);
}

static void test_void_narrow_optional(void **state)
{
    fixture *f = *state;
    types_nothing_calls = 0;
    OK(types_nothing(f->c), f->c);
    OK(types_nothing_json(f->c), f->c);
    assert_int_equal(types_nothing_calls, 2);
    int8_t a;
    OK(types_narrow(f->c, INT8_MIN, 65535, types_Color_blue, -1.5f, true, &a), f->c);
    assert_int_equal(a, INT8_MIN);
    assert_int_equal(types_narrow(f->c, 1, 2, types_Color_red, 0, false, &a), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "narrow: unexpected arguments");
    types_opt_Sign s;
    OK(types_maybe_sign(f->c, (types_opt_Sign){false, types_Sign_plus}, &s), f->c);
    assert_false(s.has);
    OK(types_maybe_sign(f->c, (types_opt_Sign){true, types_Sign_minus}, &s), f->c);
    assert_true(s.has);
    assert_int_equal(s.value, types_Sign_minus);
    shmrpc_bytes raw;
    OK(types_raw(f->c, (shmrpc_bytes){blob, sizeof blob}, &raw), f->c);
    assert_true(bytes_eq(raw, (shmrpc_bytes){blob, sizeof blob}));
}

/* --- malformed bodies: each is refused with SHMRPC_EINVAL and a message naming where --- */

typedef struct bad_body {
    const char *name;
    uint32_t method;
    const char *body; /* bytes */
    size_t len;
    const char *expect; /* a part of the client's message */
} bad_body;

#define B(s) s, sizeof(s) - 1

static const bad_body bad_bodies[] = {
    {"empty body", TYPES_METHOD_NARROW, B(""), ": truncated"},
    {"not an array", TYPES_METHOD_NARROW, B("\x05"), "expected array, got integer"},
    {"too few arguments", TYPES_METHOD_NARROW, B("\x91\x01"), "expected 5 arguments"},
    {"i8 out of range", TYPES_METHOD_NARROW, B("\x95\xcc\x80\x01\x06\x01\xc3"), "field 'a'"},
    {"u16 negative", TYPES_METHOD_NARROW, B("\x95\x01\xff\x06\x01\xc3"), "field 'b'"},
    {"not an enum value", TYPES_METHOD_NARROW, B("\x95\x01\x01\x03\x01\xc3"),
     "not a value of enum Color"},
    {"bool expected", TYPES_METHOD_NARROW, B("\x95\x01\x01\x06\x01\x01"), "field 'e'"},
    {"trailing bytes", TYPES_METHOD_NOTHING, B("\x90\x00"), "trailing"},
    {"arguments to void()", TYPES_METHOD_NOTHING, B("\x91\x00"), "expected no arguments"},
    {"array count beyond the body", TYPES_METHOD_MANY, B("\x91\xdd\xff\xff\xff\xff\x01"),
     "field 'v': count larger than the bytes left"},
    {"string length beyond the body", TYPES_METHOD_PASS_SCALARS,
     B("\x91\x9f\xc2\x00\x00\x00\x00\x00\x00\x00\x00\xca\x00\x00\x00\x00\x00\xdb\x7f\xff\xff\xff"),
     "Scalars.s"},
    {"wrong field count", TYPES_METHOD_PASS_NODE, B("\x91\x91\x01"), "expected at least 2 fields"},
    {"a newer peer's field nested too deeply", TYPES_METHOD_PASS_NODE, DEEP_EXTRA,
     "nested too deeply"},
    {"list of the wrong type", TYPES_METHOD_PASS_NODE, B("\x91\x93\x01\xa1x\xc0"), "Node.children"},
    {"reserved byte", TYPES_METHOD_MANY, B("\x91\xc1"), "field 'v': invalid msgpack byte"},
    {"json: malformed", TYPES_METHOD_NOTHING_JSON, B("{"), "malformed JSON"},
    {"json: not an object", TYPES_METHOD_MANY_JSON, B("[1]"), "expected object, got array"},
    {"json: missing argument", TYPES_METHOD_MANY_JSON, B("{}"), "field 'v': missing"},
    /* An unknown argument is a newer client's, skipped (compatible evolution); a required
     * one missing is refused. */
    {"json: missing argument", TYPES_METHOD_MANY_JSON, B("{\"w\":1}"), "missing"},
    {"json: wrong type", TYPES_METHOD_MANY_JSON, B("{\"v\":[1]}"),
     "field 'v': expected string, got integer"},
    {"json: bad enum name", TYPES_METHOD_PASS_SCALARS_JSON,
     B("{\"v\":{\"b\":true,\"i8v\":0,\"i16v\":0,\"i32v\":0,\"i64v\":0,\"u8v\":0,\"u16v\":0,"
       "\"u32v\":0,\"u64v\":0,\"f32v\":0,\"f64v\":0,\"s\":\"\",\"data\":\"\",\"c\":\"purple\","
       "\"sign\":\"zero\"}}"),
     "not a value of enum Color"},
    {"json: bad base64", TYPES_METHOD_PASS_SCALARS_JSON,
     B("{\"v\":{\"b\":true,\"i8v\":0,\"i16v\":0,\"i32v\":0,\"i64v\":0,\"u8v\":0,\"u16v\":0,"
       "\"u32v\":0,\"u64v\":0,\"f32v\":0,\"f64v\":0,\"s\":\"\",\"data\":\"!!!\",\"c\":\"red\","
       "\"sign\":\"zero\"}}"),
     "Scalars.data"},
    {"json: i8 out of range", TYPES_METHOD_PASS_SCALARS_JSON,
     B("{\"v\":{\"b\":true,\"i8v\":128,\"i16v\":0,\"i32v\":0,\"i64v\":0,\"u8v\":0,\"u16v\":0,"
       "\"u32v\":0,\"u64v\":0,\"f32v\":0,\"f64v\":0,\"s\":\"\",\"data\":\"\",\"c\":\"red\","
       "\"sign\":\"zero\"}}"),
     "Scalars.i8v"},
    {"json: missing field", TYPES_METHOD_PASS_NODE_JSON, B("{\"v\":{\"children\":[],\"nope\":0}}"),
     "missing"},
};

static void test_malformed_bodies(void **state)
{
    fixture *f = *state;
    memset(deep_extra + 5, (char)0x91, 10000); /* [[[...nil...]]] */
    deep_extra[sizeof deep_extra - 1] = (char)0xc0;
    for (size_t i = 0; i < sizeof bad_bodies / sizeof bad_bodies[0]; i++) {
        const bad_body *b = &bad_bodies[i];
        shmrpc_buf *req = shmrpc_client_request(f->c);
        assert_int_equal(shmrpc_buf_append(req, b->body, b->len), 0);
        shmrpc_bytes resp;
        int rc = shmrpc_client_call(f->c, b->method, &resp);
        const char *msg = shmrpc_errmsg();
        if (rc != SHMRPC_EINVAL || strstr(msg, b->expect) == NULL)
            fail_msg("%s: got %s \"%s\", want invalid argument with \"%s\"", b->name,
                     shmrpc_strerror(rc), msg, b->expect);
        /* The connection survives a bad body. */
        OK(types_nothing(f->c), f->c);
    }
}

static int h_bad_enum(shmrpc_ctx *ctx, const types_Scalars *v, types_Scalars *out)
{
    (void)ctx;
    *out = *v;
    out->c = (types_Color)99; /* no name: no JSON form */
    return 0;
}

/* A result that cannot be written as JSON is the handler's fault: EHANDLER, not EINVAL. */
static void test_result_without_json_form(void **state)
{
    (void)state;
    Types_handlers h = types_identity_handlers;
    h.pass_scalars_json = h_bad_enum;
    shmrpc_server *s;
    shmrpc_client *c;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &Types_service, &h, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s, "inproc://types-bad-result"), 0);
    assert_int_equal(shmrpc_client_new(&c, &Types_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(c, "inproc://types-bad-result"), 0);
    types_Scalars in = scalars_min(), out;
    assert_int_equal(types_pass_scalars_json(c, &in, &out), SHMRPC_EHANDLER);
    assert_non_null(strstr(shmrpc_errmsg(), "the result has no JSON form"));
    shmrpc_client_free(c);
    shmrpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scalars_msgpack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scalars_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holder_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holder_present, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recursion_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_void_narrow_optional, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_bodies, setup, teardown),
        cmocka_unit_test(test_result_without_json_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
