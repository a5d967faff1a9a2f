/* SPDX-License-Identifier: MIT */
/* The dynamic codec (shmrpc/dynamic.h) against the generated one, on every.svc, which uses
 * every type of the language: for each method the generated stub sends C values and the
 * dynamic codec encodes the same values from JSON, and the request bodies must be the same
 * bytes; the generated server's response must read back as the expected JSON; and a call
 * through shmrpc_dyn_connect's client must give that JSON too. All over inproc://, where
 * the server's method table is tapped to record each request and response body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <shmrpc/dynamic.h>

#include "every_handlers.h"

/* --- C values, spelled without the generated container types' names ------------------ */

/* A list or map field f of struct s, from its items. */
#define ITEM_T(s, f) __typeof__(*((s *)0)->f.items)
#define LIST(s, f, ...)                                                                            \
    {                                                                                              \
        .items = (ITEM_T(s, f)[]){__VA_ARGS__},                                                    \
        .len = sizeof((ITEM_T(s, f)[]){__VA_ARGS__}) / sizeof(ITEM_T(s, f))                        \
    }
/* Brace initializers, so that the values below are constant. */
#define STR(lit)                                                                                   \
    {                                                                                              \
        (lit), sizeof(lit) - 1                                                                     \
    }
#define BYTES(lit)                                                                                 \
    {                                                                                              \
        (const uint8_t *)(lit), sizeof(lit) - 1                                                    \
    }

/* Scalars for msgpack: every range's ends, u64 above what JSON integers hold, a float that
 * no decimal is exactly, and a string with what JSON escapes. */
static const every_Scalars scalars_mp = {
    .b = true,
    .i8v = INT8_MIN,
    .i16v = INT16_MIN,
    .i32v = INT32_MIN,
    .i64v = INT64_MIN,
    .u8v = UINT8_MAX,
    .u16v = UINT16_MAX,
    .u32v = UINT32_MAX,
    .u64v = UINT64_MAX,
    .f32v = 0.1f,
    .f64v = -2.5e-300,
    .s = STR("h\xc3\xa9llo \"q\"\n\x01\x7f/"),
    .data = BYTES("\x00\xff\x10"),
    .c = every_Color_blue,
    .sign = every_Sign_minus,
};
#define SCALARS_HEAD                                                                               \
    "{\"b\":true,\"i8v\":-128,\"i16v\":-32768,\"i32v\":-2147483648,"                               \
    "\"i64v\":-9223372036854775808,\"u8v\":255,\"u16v\":65535,\"u32v\":4294967295,"
#define SCALARS_TAIL                                                                               \
    "\"s\":\"h\xc3\xa9llo \\\"q\\\"\\n\\u0001\\u007f/\",\"data\":\"AP8Q\",\"c\":\"blue\","         \
    "\"sign\":\"minus\"}"
#define SCALARS_MP_ARGS                                                                            \
    SCALARS_HEAD "\"u64v\":\"18446744073709551615\",\"f32v\":0.1,\"f64v\":-2.5e-300," SCALARS_TAIL
#define SCALARS_MP_RESULT                                                                          \
    SCALARS_HEAD "\"u64v\":18446744073709551615,\"f32v\":0.1,\"f64v\":-2.5e-300," SCALARS_TAIL

/* The same for @json, whose integers stop at INT64_MAX; 0.1 is written with 17 digits. */
static const every_Scalars scalars_json = {
    .b = true,
    .i8v = INT8_MIN,
    .i16v = INT16_MIN,
    .i32v = INT32_MIN,
    .i64v = INT64_MIN,
    .u8v = UINT8_MAX,
    .u16v = UINT16_MAX,
    .u32v = UINT32_MAX,
    .u64v = INT64_MAX,
    .f32v = 0.1f,
    .f64v = 0.1,
    .s = STR("h\xc3\xa9llo \"q\"\n\x01\x7f/"),
    .data = BYTES("\x00\xff\x10"),
    .c = every_Color_blue,
    .sign = every_Sign_minus,
};
#define SCALARS_JSON                                                                               \
    SCALARS_HEAD "\"u64v\":9223372036854775807,\"f32v\":0.1,\"f64v\":0.1," SCALARS_TAIL

static const every_Node leaf4 = {.value = 4};
static const every_Node leaf5 = {.value = -5};
static const every_Node tree = {
    .value = 1,
    .children = LIST(every_Node, children, {.value = 2},
                     {.value = 3, .children = {.items = &leaf4, .len = 1}}),
    .next = &leaf5,
};
#define LEAF(v) "{\"value\":" #v ",\"children\":[],\"next\":null}"
#define TREE                                                                                       \
    "{\"value\":1,\"children\":[" LEAF(2) ",{\"value\":3,\"children\":[" LEAF(                     \
        4) "],\"next\":null}],\"next\":" LEAF(-5) "}"

static const every_Keys keys = {
    .s = LIST(every_Keys, s, {STR("a"), 1}, {STR("b"), -2}),
    .i8k = LIST(every_Keys, i8k, {INT8_MIN, true}, {INT8_MAX, false}),
    .i16k = LIST(every_Keys, i16k,
                 {INT16_MIN, {.items = (const shmrpc_str[]){STR("x"), STR("y")}, .len = 2}},
                 {INT16_MAX, {0}}),
    .i32k = LIST(every_Keys, i32k, {INT32_MIN, STR("min")}, {0, STR("zero")}),
    .i64k = LIST(every_Keys, i64k, {INT64_MIN, 1.5}, {INT64_MAX, -0.25}),
    .u8k = LIST(every_Keys, u8k, {0, true}, {UINT8_MAX, false}),
    .u16k = LIST(every_Keys, u16k, {UINT16_MAX, true}),
    .u32k = LIST(every_Keys, u32k, {UINT32_MAX, 0.5f}),
    .u64k = LIST(every_Keys, u64k, {UINT64_MAX, {.items = (const double[]){1.0, 2.5}, .len = 2}},
                 {0, {0}}),
    .ck = LIST(every_Keys, ck, {every_Color_red, {.value = 4}}, {every_Color_blue, {.value = -5}}),
    .sk = LIST(every_Keys, sk, {every_Sign_minus, {true, STR("m")}}, {every_Sign_plus, {0}}),
};
#define KEYS                                                                                       \
    "{\"s\":{\"a\":1,\"b\":-2},\"i8k\":{\"-128\":true,\"127\":false},"                             \
    "\"i16k\":{\"-32768\":[\"x\",\"y\"],\"32767\":[]},"                                            \
    "\"i32k\":{\"-2147483648\":\"min\",\"0\":\"zero\"},"                                           \
    "\"i64k\":{\"-9223372036854775808\":1.5,\"9223372036854775807\":-0.25},"                       \
    "\"u8k\":{\"0\":true,\"255\":false},\"u16k\":{\"65535\":true},"                                \
    "\"u32k\":{\"4294967295\":0.5},\"u64k\":{\"18446744073709551615\":[1.0,2.5],\"0\":[]},"        \
    "\"ck\":{\"red\":" LEAF(4) ",\"blue\":" LEAF(-5) "},\"sk\":{\"minus\":\"m\",\"plus\":null}}"

/* A holder of everything: s is the scalars, given once in maybe and once in sparse. */
#define HOLDER(s)                                                                                  \
    {                                                                                              \
        .maybe = &s, .oi = {true, 42}, .ob = {true, BYTES("\x01\x02\x03")},                        \
        .oc = {true, every_Color_green}, .osg = {true, every_Sign_zero},                           \
        .ol = {true, {.items = (const int64_t[]){1, -2}, .len = 2}}, .on = &tree,                  \
        .names = LIST(every_Holder, names, STR("a"), STR(""), STR("\xc3\xbc")),                    \
        .grid = LIST(every_Holder, grid, {.items = (const int32_t[]){1, 2}, .len = 2}, {0},        \
                     {.items = (const int32_t[]){3}, .len = 1}),                                   \
        .sparse = LIST(every_Holder, sparse, &s, NULL),                                            \
        .nested = LIST(every_Holder, nested,                                                       \
                       {STR("x"), LIST(every_Holder, nested.items->value, {STR("t"), true},        \
                                       {STR("f"), false})},                                        \
                       {STR("y"), {0}}),                                                           \
        .k = keys,                                                                                 \
    }
/* os is left out of the arguments, and comes back as null. */
#define HOLDER_JSON(s, os)                                                                         \
    "{\"maybe\":" s ",\"oi\":42," os "\"ob\":\"AQID\",\"oc\":\"green\",\"osg\":\"zero\","          \
    "\"ol\":[1,-2],\"on\":" TREE ",\"names\":[\"a\",\"\",\"\xc3\xbc\"],"                           \
    "\"grid\":[[1,2],[],[3]],\"sparse\":[" s ",null],"                                             \
    "\"nested\":{\"x\":{\"t\":true,\"f\":false},\"y\":{}},\"e\":{},\"k\":" KEYS "}"

/* --- the server: every_identity (Every_handlers.c), behind a tap on every method ----- */

/* The last request and response bodies the server saw; inproc:// runs the server on the
 * caller's thread. */
static shmrpc_buf tapped_req, tapped_resp;

#define N_TAPS 20
static shmrpc_invoke_fn real_invoke[N_TAPS];

static int tap(int i, shmrpc_ctx *ctx, const void *h, shmrpc_bytes req, shmrpc_buf *resp)
{
    shmrpc_buf_clear(&tapped_req);
    shmrpc_buf_append(&tapped_req, req.ptr, req.len);
    size_t at = resp->len;
    int rc = real_invoke[i](ctx, h, req, resp);
    shmrpc_buf_clear(&tapped_resp);
    if (resp->len > at) shmrpc_buf_append(&tapped_resp, resp->data + at, resp->len - at);
    return rc;
}

#define TAP(i)                                                                                     \
    static int tap##i(shmrpc_ctx *ctx, const void *h, shmrpc_bytes req, shmrpc_buf *resp)          \
    {                                                                                              \
        return tap(i, ctx, h, req, resp);                                                          \
    }
TAP(0)
TAP(1)
TAP(2)
TAP(3)
TAP(4)
TAP(5)
TAP(6)
TAP(7)
TAP(8)
TAP(9)
TAP(10)
TAP(11)
TAP(12)
TAP(13)
TAP(14)
TAP(15)
TAP(16)
TAP(17)
TAP(18)
TAP(19)
static const shmrpc_invoke_fn taps[N_TAPS] = {tap0,  tap1,  tap2,  tap3,  tap4,  tap5,  tap6,
                                              tap7,  tap8,  tap9,  tap10, tap11, tap12, tap13,
                                              tap14, tap15, tap16, tap17, tap18, tap19};

/* --- the cases --------------------------------------------------------------------------- */

typedef struct fixture {
    shmrpc_server *s;
    shmrpc_client *gen; /* generated stubs */
    shmrpc_dyn *d;      /* the dynamic codec, connected without the table */
} fixture;

typedef struct one_case {
    const char *method;
    const char *args;             /* as shmrpcctl call takes them */
    const char *result;           /* as the dynamic codec prints it */
    int (*gen)(shmrpc_client *c); /* the same call through the generated stub */
} one_case;

typedef __typeof__(((every_Holder *)0)->os) opt_string;
typedef __typeof__(((every_Holder *)0)->osg) opt_sign;
typedef __typeof__(((every_Keys *)0)->i16k) i16_map;

/* g_NAME: method NAME called through its stub with value, which it hands back. */
#define PASS(name, type, value)                                                                    \
    static int g_##name(shmrpc_client *c)                                                          \
    {                                                                                              \
        const type v_ = value;                                                                     \
        type out;                                                                                  \
        return every_##name(c, &v_, &out);                                                         \
    }
PASS(pass_scalars, every_Scalars, scalars_mp)
PASS(pass_scalars_json, every_Scalars, scalars_json)
PASS(pass_holder, every_Holder, HOLDER(scalars_mp))
PASS(pass_holder_json, every_Holder, HOLDER(scalars_json))
PASS(pass_keys, every_Keys, keys)
PASS(pass_keys_json, every_Keys, keys)
PASS(pass_node, every_Node, tree)
PASS(pass_node_json, every_Node, tree)

/* Dynamic values as msgpack written by hand: {"a": [1, 2.5, nil, true, "s"], 7: bin 00 ff}
 * (msgpack only: JSON has no bytes and no key 7), and the same without the 7 for @json. */
#define ANY_A                                                                                      \
    "\xa1"                                                                                         \
    "a\x95\x01\xcb\x40\x04\x00\x00\x00\x00\x00\x00\xc0\xc3\xa1s"
#define DYNAMIC(v_lit)                                                                             \
    {                                                                                              \
        .v = BYTES(v_lit), .l = {(const shmrpc_any[]){BYTES("\xff"), BYTES("\xa1x")}, 2},          \
        .m = {(const every_map_String_Any_entry[]){{STR("k"), BYTES("\xc0")}}, 1},                 \
    }
PASS(pass_any, every_Dynamic, DYNAMIC("\x82" ANY_A "\x07\xc4\x02\x00\xff"))
PASS(pass_any_json, every_Dynamic, DYNAMIC("\x81" ANY_A))
#define ANY_ARGS(v) "[{\"v\":" v ",\"l\":[-1,\"x\"],\"m\":{\"k\":null}}]"
#define ANY_RESULT(v) "{\"v\":" v ",\"l\":[-1,\"x\"],\"m\":{\"k\":null}}"

static int g_first(shmrpc_client *c)
{
    int8_t out;
    return every_first(c, -5, 65535, every_Color_blue, -1.5f, true, (opt_string){true, STR("opt")},
                       (opt_sign){0}, &out);
}

static int g_fourth_json(shmrpc_client *c)
{
    float out;
    return every_fourth_json(c, -5, 65535, every_Color_blue, 0.1f, false, (opt_string){0},
                             (opt_sign){true, every_Sign_plus}, &out);
}

static int g_sign_none(shmrpc_client *c)
{
    opt_sign out;
    return every_pass_sign(c, (opt_sign){0}, &out);
}

static int g_sign_zero(shmrpc_client *c)
{
    opt_sign out;
    return every_pass_sign(c, (opt_sign){true, every_Sign_zero}, &out);
}

static int g_map(shmrpc_client *c)
{
    const i16_map m =
        LIST(every_Keys, i16k, {-1, {.items = (const shmrpc_str[]){STR("a"), STR("b")}, .len = 2}},
             {7, {0}});
    i16_map out;
    return every_pass_map(c, m, &out);
}

static int g_nothing(shmrpc_client *c)
{
    return every_nothing(c);
}

static int g_nothing_json(shmrpc_client *c)
{
    return every_nothing_json(c);
}

static int g_raw_text(shmrpc_client *c)
{
    shmrpc_bytes out;
    return every_raw(c, shmrpc_bytes_of("hi", 2), &out);
}

static int g_raw_bin(shmrpc_client *c)
{
    shmrpc_bytes out;
    return every_raw(c, shmrpc_bytes_of("\xff\x00", 2), &out);
}

static const one_case cases[] = {
    {"pass_scalars", "[" SCALARS_MP_ARGS "]", SCALARS_MP_RESULT, g_pass_scalars},
    {"pass_scalars_json", "{\"v\":" SCALARS_JSON "}", SCALARS_JSON, g_pass_scalars_json},
    {"pass_holder", "[" HOLDER_JSON(SCALARS_MP_ARGS, "") "]",
     HOLDER_JSON(SCALARS_MP_RESULT, "\"os\":null,"), g_pass_holder},
    {"pass_holder_json", "[" HOLDER_JSON(SCALARS_JSON, "") "]",
     HOLDER_JSON(SCALARS_JSON, "\"os\":null,"), g_pass_holder_json},
    {"pass_keys", "[" KEYS "]", KEYS, g_pass_keys},
    {"pass_keys_json", "[" KEYS "]", KEYS, g_pass_keys_json},
    {"pass_node", "[" TREE "]", TREE, g_pass_node},
    {"pass_node_json", "[" TREE "]", TREE, g_pass_node_json},
    /* g left out of the array: an optional parameter may be. */
    {"first", "[-5,65535,\"blue\",-1.5,true,\"opt\"]", "-5", g_first},
    {"fourth_json", "{\"a\":-5,\"b\":65535,\"c\":\"blue\",\"d\":0.1,\"e\":false,\"g\":\"plus\"}",
     "0.1", g_fourth_json},
    {"pass_sign", "[]", "null", g_sign_none},
    {"pass_sign", "[\"zero\"]", "\"zero\"", g_sign_zero},
    {"pass_map", "[{\"-1\":[\"a\",\"b\"],\"7\":[]}]", "{\"-1\":[\"a\",\"b\"],\"7\":[]}", g_map},
    {"nothing", "[]", "null", g_nothing},
    {"nothing_json", "[]", "null", g_nothing_json},
    {"raw", "[\"hi\"]", "\"hi\"", g_raw_text},
    {"raw", "[{\"base64\":\"/wA=\"}]", "{\"base64\":\"/wA=\"}", g_raw_bin},
    {"pass_any", ANY_ARGS("{\"map\":[[\"a\",[1,2.5,null,true,\"s\"]],[7,{\"base64\":\"AP8=\"}]]}"),
     ANY_RESULT("{\"map\":[[\"a\",[1,2.5,null,true,\"s\"]],[7,{\"base64\":\"AP8=\"}]]}"),
     g_pass_any},
    {"pass_any_json", ANY_ARGS("{\"a\":[1,2.5,null,true,\"s\"]}"),
     ANY_RESULT("{\"a\":[1,2.5,null,true,\"s\"]}"), g_pass_any_json},
};

static void print_body(const char *what, const shmrpc_buf *b)
{
    fprintf(stderr, "  %s (%zu bytes):", what, b->len);
    for (size_t i = 0; i < b->len; i++) {
        uint8_t c = b->data[i];
        if (c >= 0x20 && c < 0x7f)
            fprintf(stderr, "%c", c);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\n");
}

static void assert_same_bytes(const char *method, const char *what, const shmrpc_buf *want,
                              const shmrpc_buf *got)
{
    if (want->len == got->len && (want->len == 0 || memcmp(want->data, got->data, want->len) == 0))
        return;
    fprintf(stderr, "%s: %s differ\n", method, what);
    print_body("generated", want);
    print_body("dynamic", got);
    fail_msg("%s: %s differ", method, what);
}

static void assert_text(const char *method, const char *what, const char *want,
                        const shmrpc_buf *got)
{
    if (got->len == strlen(want) && memcmp(got->data, want, got->len) == 0) return;
    fprintf(stderr, "%s: %s\n  want: %s\n", method, what, want);
    print_body("got", got);
    fail_msg("%s: %s is not the expected JSON", method, what);
}

static int setup(void **state)
{
    static fixture f;
    static shmrpc_service tapped;
    const shmrpc_service_info *info = Every_service.info;
    assert_true(info->n_methods <= N_TAPS);
    for (uint32_t i = 0; i < info->n_methods; i++)
        real_invoke[i] = Every_service.invoke[i];
    tapped = Every_service;
    tapped.invoke = taps;
    shmrpc_buf_init(&tapped_req);
    shmrpc_buf_init(&tapped_resp);
    assert_int_equal(shmrpc_server_new(&f.s, NULL), 0);
    assert_int_equal(shmrpc_server_register(f.s, &tapped, &every_identity, NULL), 0);
    assert_int_equal(shmrpc_server_listen(f.s, "inproc://every-dyn"), 0);
    assert_int_equal(shmrpc_client_new(&f.gen, &Every_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(f.gen, "inproc://every-dyn"), 0);
    assert_int_equal(shmrpc_dyn_new(&f.d, NULL), 0);
    int rc = shmrpc_dyn_connect(f.d, "inproc://every-dyn");
    if (rc != 0) fail_msg("connect: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    shmrpc_dyn_free(f->d);
    shmrpc_client_free(f->gen);
    shmrpc_server_free(f->s);
    shmrpc_buf_destroy(&tapped_req);
    shmrpc_buf_destroy(&tapped_resp);
    return 0;
}

/* The table the dynamic handle learned is the generated one, fingerprints included. */
static void learns_the_table(void **state)
{
    fixture *f = *state;
    const shmrpc_service_info *info = shmrpc_dyn_info(f->d), *gen = &Every_service_info;
    assert_non_null(info);
    assert_string_equal(info->name, gen->name);
    assert_true(info->fingerprint == gen->fingerprint);
    assert_int_equal(info->n_methods, gen->n_methods);
    for (uint32_t i = 0; i < gen->n_methods; i++) {
        assert_string_equal(info->methods[i].signature, gen->methods[i].signature);
        assert_int_equal(info->methods[i].id, gen->methods[i].id);
    }
    /* Every method is in a case. */
    for (uint32_t i = 0; i < gen->n_methods; i++) {
        size_t k = 0;
        while (k < sizeof cases / sizeof *cases && strcmp(cases[k].method, gen->methods[i].name))
            k++;
        if (k == sizeof cases / sizeof *cases) fail_msg("no case for %s", gen->methods[i].name);
    }
}

static void same_bytes_as_generated(void **state)
{
    fixture *f = *state;
    shmrpc_buf gen_req, gen_resp, dyn_req, out;
    shmrpc_buf_init(&gen_req);
    shmrpc_buf_init(&gen_resp);
    shmrpc_buf_init(&dyn_req);
    shmrpc_buf_init(&out);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const one_case *k = &cases[i];
        /* The generated stub, from C values. */
        int rc = k->gen(f->gen);
        if (rc != 0)
            fail_msg("%s (generated): %s: %s", k->method, shmrpc_strerror(rc), shmrpc_errmsg());
        shmrpc_buf_clear(&gen_req);
        shmrpc_buf_clear(&gen_resp);
        shmrpc_buf_append(&gen_req, tapped_req.data, tapped_req.len);
        shmrpc_buf_append(&gen_resp, tapped_resp.data, tapped_resp.len);

        /* The dynamic codec, from JSON: the same request, and the response as JSON. */
        const shmrpc_method_info *m;
        const shmrpc_dyn_sig *sig;
        if (shmrpc_dyn_method(f->d, k->method, &m, &sig) != 0)
            fail_msg("%s: %s", k->method, shmrpc_errmsg());
        shmrpc_buf_clear(&dyn_req);
        if (shmrpc_dyn_encode_args(sig, k->args, strlen(k->args), &dyn_req) != 0)
            fail_msg("%s: %s", k->method, shmrpc_errmsg());
        assert_same_bytes(k->method, "request bodies", &gen_req, &dyn_req);
        shmrpc_buf_clear(&out);
        if (shmrpc_dyn_decode_result(sig, gen_resp.data, gen_resp.len, &out) != 0)
            fail_msg("%s: %s", k->method, shmrpc_errmsg());
        assert_text(k->method, "the generated server's result", k->result, &out);

        /* A whole call through the dynamic handle's own client. */
        shmrpc_client *c = shmrpc_dyn_client(f->d);
        shmrpc_buf *req = shmrpc_client_request(c);
        assert_int_equal(shmrpc_dyn_encode_args(sig, k->args, strlen(k->args), req), 0);
        shmrpc_bytes resp;
        if ((rc = shmrpc_client_call(c, m->id, &resp)) != 0)
            fail_msg("%s (dynamic): %s: %s", k->method, shmrpc_strerror(rc), shmrpc_errmsg());
        assert_same_bytes(k->method, "requests on the wire", &gen_req, &tapped_req);
        shmrpc_buf_clear(&out);
        assert_int_equal(shmrpc_dyn_decode_result(sig, resp.ptr, resp.len, &out), 0);
        assert_text(k->method, "the dynamic call's result", k->result, &out);
    }
    shmrpc_buf_destroy(&gen_req);
    shmrpc_buf_destroy(&gen_resp);
    shmrpc_buf_destroy(&dyn_req);
    shmrpc_buf_destroy(&out);
}

/* What the handle says when asked for what is not there. */
static void unknown_method_and_bad_signature(void **state)
{
    fixture *f = *state;
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    assert_int_equal(shmrpc_dyn_method(f->d, "nope", &m, &sig), SHMRPC_ENOENT);
    assert_null(m);
    const char *msg = shmrpc_errmsg();
    assert_non_null(strstr(msg, "Every has no method 'nope' (it has: first, fourth_json, "));
    assert_int_equal(shmrpc_dyn_sig_parse(f->d, "x(i64 a)->i64", &sig), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "signature, at byte 13: expected ' @'");
    /* What the generator never writes. */
    const char *bad[] = {"x(void a)->void @msgpack",
                         "x(list<void> a)->void @msgpack",
                         "x(struct S{void v;} a)->void @msgpack",
                         "x()->i64? ? @json",
                         "x(map<f64,i8> a)->void @json",
                         "x(struct P a)->void @msgpack",
                         "x(bytes a)->string @raw",
                         "x(i64 a)->bytes @raw",
                         "x(bytes a,bytes b)->bytes @raw",
                         "x()->string @raw",
                         "x(i64 a)->i64 @msgpack trailing"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (shmrpc_dyn_sig_parse(f->d, bad[i], &sig) != SHMRPC_EINVAL)
            fail_msg("accepted %s", bad[i]);
    /* A @raw queue's type (docs/queue.md): bytes out, no parameter. */
    assert_int_equal(shmrpc_dyn_sig_parse(f->d, "blobs()->bytes @raw", &sig), 0);
    assert_int_equal(sig->n_params, 0);
    assert_int_equal(sig->encoding, SHMRPC_ENC_RAW);

    shmrpc_dyn *lone;
    assert_int_equal(shmrpc_dyn_new(&lone, NULL), 0);
    assert_null(shmrpc_dyn_info(lone));
    assert_int_equal(shmrpc_dyn_method(lone, "first", &m, &sig), SHMRPC_ECLOSED);
    assert_int_equal(shmrpc_dyn_connect(lone, "inproc://nobody-here"), SHMRPC_EUNAVAIL);
    assert_int_equal(shmrpc_dyn_connect(lone, "bogus://x"), SHMRPC_EINVAL);
    assert_null(shmrpc_dyn_info(lone));
    shmrpc_dyn_free(lone);
}

/* Signatures the generator never writes, and where the parser stops and why. */
static const struct {
    const char *text, *why;
} bad_signatures[] = {
    {"(i64 a)->void @msgpack", "signature, at byte 0: expected a name"},
    {"x[i64 a]->void @msgpack", "signature, at byte 1: expected '('"},
    {"x(i64 a i64 b)->void @msgpack", "signature, at byte 7: expected ','"},
    {"x(i64 a,i64)->void @msgpack", "signature, at byte 11: expected ' '"},
    {"x(i64 )->void @msgpack", "signature, at byte 6: expected a name"},
    {"x(i64 a)=>void @msgpack", "signature, at byte 8: expected '->'"},
    {"x(i64 a)->void @cbor", "signature, at byte 16: unknown encoding"},
    {"x(i64 a)->i64?? @json", "signature, at byte 14: expected ' @'"},
    {"x(struct S{i64 v;i64? w;} a)->void @msgpack", NULL},
    {"x(any a,list<any> b,map<string,any> c)->any @msgpack", NULL},
    {"x(any? a)->void @msgpack", "signature, at byte 6: 'any' holds null already: no 'any?'"},
    {"x(map<any,i64> a)->void @msgpack",
     "signature, at byte 14: a map's key must be a string, an integer or an enum"},
    {"x(anything a)->void @msgpack", "signature, at byte 2: unknown type 'anything'"},
    {"x(struct S{i64 v;i64 w} a)->void @msgpack", "signature, at byte 22: expected ';'"},
    {"x(struct S{i64;} a)->void @msgpack", "signature, at byte 14: expected ' '"},
    {"x(struct S{i64 ;} a)->void @msgpack", "signature, at byte 15: expected a name"},
    {"x(struct S{i64 v;", "signature, at byte 17: unterminated struct S"},
    {"x(struct {i64 v;} a)->void @msgpack", "signature, at byte 9: expected a name"},
    {"x(struct S{i64 v;} a,struct S{i64 v;} b)->void @msgpack",
     "signature, at byte 29: 'S' declared twice"},
    {"x(struct S{i64 v;} a,enum S b)->void @msgpack", "signature, at byte 27: 'S' declared twice"},
    {"x(enum E{a=1,b} c)->void @msgpack", "signature, at byte 14: expected '='"},
    {"x(enum E{a=1;b=2} c)->void @msgpack", "signature, at byte 12: expected '}'"},
    {"x(enum E{=1} c)->void @msgpack", "signature, at byte 9: expected a name"},
    {"x(enum E{a=x} c)->void @msgpack", "signature, at byte 11: bad value of enum E"},
    {"x(enum E{a=2147483648} c)->void @msgpack", "signature, at byte 11: bad value of enum E"},
    {"x(enum E{a=-2147483649} c)->void @msgpack", "signature, at byte 11: bad value of enum E"},
    {"x(enum E{a=99999999999999999999} c)->void @msgpack",
     "signature, at byte 11: bad value of enum E"},
    {"x(enum E c)->void @msgpack", "signature, at byte 8: 'E' used before it is spelled out"},
    {"x(list<i64 a)->void @msgpack", "signature, at byte 10: expected '>'"},
    {"x(list<> a)->void @msgpack", "signature, at byte 7: expected a name"},
    {"x(map<string;i64> a)->void @msgpack", "signature, at byte 12: expected ','"},
    {"x(map<,i64> a)->void @msgpack", "signature, at byte 6: expected a name"},
    {"x(map<string,> a)->void @msgpack", "signature, at byte 13: expected a name"},
    {"x(map<string,i64 a)->void @msgpack", "signature, at byte 16: expected '>'"},
    {"x(map<string,void> a)->void @msgpack", "signature, at byte 17: only a result can be void"},
    {"x(i64? ? a)->void @msgpack", "signature, at byte 7: expected a name"},
    {"x()->void? @msgpack", "signature, at byte 10: bad optional"},
    {"x(i64 9a)->void @msgpack", "signature, at byte 6: expected a name"},
    {"x(i64 a_9)->void @msgpack", NULL},
    {"x()->bytes @raw", NULL},
    {"x(bytes a)->bytes @raw", NULL},
    /* Streams (docs/streams.md): a result, or the one parameter, of @msgpack or @raw. */
    {"x(i64 a)->stream<i64> @msgpack", NULL},
    {"x(stream<i64> a)->stream<struct S{i64 v;}> @msgpack", NULL},
    {"x(stream<bytes> a)->bytes @raw", NULL},
    {"x(stream<i64> a,i64 b)->void @msgpack",
     "signature, at byte 16: a stream is a method's one parameter"},
    {"x(i64 a,stream<i64> b)->void @msgpack",
     "signature, at byte 8: a stream is a method's one parameter"},
    {"x(stream<i64 a)->void @msgpack", "signature, at byte 12: expected '>'"},
    {"x(list<stream<i64>> a)->void @msgpack", "signature, at byte 7: unknown type 'stream'"},
    {"x()->stream<stream<i64>> @msgpack", "signature, at byte 12: unknown type 'stream'"},
    {"x()->stream<i64>? @msgpack", "signature, at byte 16: expected ' @'"},
    {"x()->stream<void> @msgpack", "signature, at byte 16: only a result can be void"},
    {"x()->stream<i64> @json",
     "signature, at byte 22: a stream is @msgpack or @raw, and never @idempotent"},
    {"x()->stream<i64> @msgpack @idempotent",
     "signature, at byte 37: a stream is @msgpack or @raw, and never @idempotent"},
    {"x()->stream<bytes> @pickle",
     "signature, at byte 26: a stream is @msgpack or @raw, and never @idempotent"},
    {"x(bytes a)->stream<i64> @raw",
     "signature, at byte 28: a @raw method takes bytes and returns bytes"},
};

/* Each signature above, and types nested more deeply than the parser follows (it recurses
 * once a level, 200 levels at most): 199 lists around an i64 (200 types deep) are read, 200
 * (201 deep) are not. */
static void signature_errors(void **state)
{
    fixture *f = *state;
    const shmrpc_dyn_sig *sig;
    for (int lists = 199; lists <= 200; lists++) {
        char text[2048];
        size_t n = (size_t)snprintf(text, sizeof text, "x(");
        for (int i = 0; i < lists; i++)
            n += (size_t)snprintf(text + n, sizeof text - n, "list<");
        n += (size_t)snprintf(text + n, sizeof text - n, "i64");
        for (int i = 0; i < lists; i++)
            n += (size_t)snprintf(text + n, sizeof text - n, ">");
        snprintf(text + n, sizeof text - n, " a)->void @msgpack");
        int rc = shmrpc_dyn_sig_parse(f->d, text, &sig);
        if (lists == 199) {
            if (rc != 0) fail_msg("%d lists: %s", lists, shmrpc_errmsg());
            continue;
        }
        assert_int_equal(rc, SHMRPC_EINVAL);
        assert_string_equal(shmrpc_errmsg(), "signature, at byte 1002: types nested too deeply");
    }
    int wrong = 0;
    for (size_t i = 0; i < sizeof bad_signatures / sizeof *bad_signatures; i++) {
        const char *text = bad_signatures[i].text, *why = bad_signatures[i].why;
        int rc = shmrpc_dyn_sig_parse(f->d, text, &sig);
        if (why == NULL ? rc == 0 : rc == SHMRPC_EINVAL && strcmp(shmrpc_errmsg(), why) == 0)
            continue;
        fprintf(stderr, "%s (%d):\n  want %s\n  got  %s\n", text, rc, why ? why : "success",
                rc ? shmrpc_errmsg() : "success");
        wrong++;
    }
    assert_int_equal(wrong, 0);
}

/* A msgpack result whose map<string, V> has a key with a NUL byte in it: "\u0000" is valid
 * JSON, but jansson (which encode_result, shmrpcctl and @json peers read JSON with) refuses
 * it in a key, so the codec refuses the result and names the map rather than printing JSON
 * its own reverse cannot read. A NUL in a string value reads back, and prints. */
static void nul_in_a_key(void **state)
{
    fixture *f = *state;
    every_Keys k = {.s = LIST(every_Keys, s, {STR("a"), 1}, {STR("b\0c"), -2})};
    every_Keys back;
    int rc = every_pass_keys(f->gen, &k, &back);
    if (rc != 0) fail_msg("pass_keys (generated): %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    assert_int_equal(shmrpc_dyn_method(f->d, "pass_keys", &m, &sig), 0);
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    assert_int_equal(shmrpc_dyn_decode_result(sig, tapped_resp.data, tapped_resp.len, &out),
                     SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(),
                        "result.s: a key holds a NUL byte, which jansson refuses in an object key");

    /* The same map through the dynamic client's own call fails the same way. */
    shmrpc_client *c = shmrpc_dyn_client(f->d);
    shmrpc_buf *req = shmrpc_client_request(c);
    shmrpc_buf_append(req, tapped_req.data, tapped_req.len);
    shmrpc_bytes resp;
    assert_int_equal(shmrpc_client_call(c, m->id, &resp), 0);
    shmrpc_buf_clear(&out);
    assert_int_equal(shmrpc_dyn_decode_result(sig, resp.ptr, resp.len, &out), SHMRPC_EINVAL);

    /* In a value, NUL is a string's byte like any other: it prints, and reads back. */
    every_Scalars sc = scalars_mp;
    sc.s = (shmrpc_str)STR("x\0y");
    every_Scalars sback;
    assert_int_equal(every_pass_scalars(f->gen, &sc, &sback), 0);
    assert_int_equal(shmrpc_dyn_method(f->d, "pass_scalars", &m, &sig), 0);
    shmrpc_buf_clear(&out);
    assert_int_equal(shmrpc_dyn_decode_result(sig, tapped_resp.data, tapped_resp.len, &out), 0);
    char *text = strndup((const char *)out.data, out.len);
    assert_non_null(strstr(text, "\"s\":\"x\\u0000y\""));
    free(text);
    shmrpc_buf body;
    shmrpc_buf_init(&body);
    rc = shmrpc_dyn_encode_result(sig, (const char *)out.data, out.len, &body);
    if (rc != 0) fail_msg("encode_result: %s", shmrpc_errmsg());
    assert_int_equal(body.len, tapped_resp.len);
    assert_memory_equal(body.data, tapped_resp.data, body.len);
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&out);
}

/* A u64 above INT64_MAX prints as a bare number, and what decode_result prints
 * encode_result and encode_args read back (jansson alone refuses such an integer), as a
 * u64 or a real and as nothing else. */
static void big_u64_reads_back(void **state)
{
    fixture *f = *state;
    every_Scalars back;
    assert_int_equal(every_pass_scalars(f->gen, &scalars_mp, &back), 0);
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    assert_int_equal(shmrpc_dyn_method(f->d, "pass_scalars", &m, &sig), 0);
    shmrpc_buf out, body;
    shmrpc_buf_init(&out);
    shmrpc_buf_init(&body);
    assert_int_equal(shmrpc_dyn_decode_result(sig, tapped_resp.data, tapped_resp.len, &out), 0);
    assert_text("pass_scalars", "the result", SCALARS_MP_RESULT, &out);
    int rc = shmrpc_dyn_encode_result(sig, (const char *)out.data, out.len, &body);
    if (rc != 0) fail_msg("encode_result: %s", shmrpc_errmsg());
    assert_same_bytes("pass_scalars", "bodies", &tapped_resp, &body);
    /* As an argument too, bare or in an array. */
    shmrpc_buf_clear(&body);
    const char *args = "[" SCALARS_MP_RESULT "]";
    assert_int_equal(shmrpc_dyn_encode_args(sig, args, strlen(args), &body), 0);
    assert_same_bytes("pass_scalars", "requests", &tapped_req, &body);

    /* Elsewhere it is the number it is. */
    struct {
        const char *method, *args, *err;
    } refused[] = {
        {"first", "[9223372036854775808,1,\"red\",1.0,true]",
         "argument 'a': 9223372036854775808 is out of range for i8"},
        {"first", "[1,1,\"red\",1.0,true,18446744073709551616]",
         "argument 'f': expected a string (string), got 18446744073709551616"},
        {"first", "[1,1,\"red\",1.0,true,\"\\u0000\",1,9223372036854775808]",
         "arguments: bad JSON at line 1, column 50: too big integer near '9223372036854775808'"},
        {"first", "{\"a\":1,\"b\":1,\"c\":\"red\",\"d\":1.0,\"e\":true,99999999999999999999:1}",
         "arguments: bad JSON at line 1, column 60: too big integer near "
         "'99999999999999999999'"},
        {"pass_map", "[{\"1\":[18446744073709551615]}]",
         "argument 'm'[\"1\"][0]: expected a string (string), got 18446744073709551615"},
        {"raw", "[18446744073709551615]",
         "argument 'data': expected a string (its UTF-8 bytes) or {\"base64\": \"...\"}, got "
         "18446744073709551615"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        assert_int_equal(shmrpc_dyn_method(f->d, refused[i].method, &m, &sig), 0);
        shmrpc_buf_clear(&body);
        rc = shmrpc_dyn_encode_args(sig, refused[i].args, strlen(refused[i].args), &body);
        if (rc != SHMRPC_EINVAL) fail_msg("accepted %s", refused[i].args);
        if (strcmp(shmrpc_errmsg(), refused[i].err) != 0)
            fail_msg("%s:\n  want %s\n  got  %s", refused[i].args, refused[i].err, shmrpc_errmsg());
    }
    /* A real takes it (an f32 as the float nearest). */
    assert_int_equal(shmrpc_dyn_method(f->d, "first", &m, &sig), 0);
    shmrpc_buf_clear(&body);
    const char *real = "[1,1,\"red\",18446744073709551616,true]";
    assert_int_equal(shmrpc_dyn_encode_args(sig, real, strlen(real), &body), 0);
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&out);
}

/* What a void method answers, encode_result writes from the null decode_result prints
 * (it refused: "void has no value"), in each encoding. */
static void void_reads_back(void **state)
{
    fixture *f = *state;
    const char *methods[] = {"nothing", "nothing_json"};
    shmrpc_buf out, body;
    shmrpc_buf_init(&out);
    shmrpc_buf_init(&body);
    for (size_t i = 0; i < 2; i++) {
        const shmrpc_method_info *m;
        const shmrpc_dyn_sig *sig;
        assert_int_equal(shmrpc_dyn_method(f->d, methods[i], &m, &sig), 0);
        assert_int_equal(i ? g_nothing_json(f->gen) : g_nothing(f->gen), 0);
        shmrpc_buf_clear(&out);
        shmrpc_buf_clear(&body);
        assert_int_equal(shmrpc_dyn_decode_result(sig, tapped_resp.data, tapped_resp.len, &out), 0);
        assert_text(methods[i], "the result", "null", &out);
        int rc = shmrpc_dyn_encode_result(sig, (const char *)out.data, out.len, &body);
        if (rc != 0) fail_msg("%s: encode_result: %s", methods[i], shmrpc_errmsg());
        assert_same_bytes(methods[i], "bodies", &tapped_resp, &body);
        assert_int_equal(shmrpc_dyn_encode_result(sig, "1", 1, &body), SHMRPC_EINVAL);
    }
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&out);
}

/* A server whose table holds a signature that does not parse: the method is refused with
 * the parser's message each time it is asked for (parsed once), the others still work. */
static void broken_signature(void **state)
{
    (void)state;
    const shmrpc_service_info *gen = &Every_service_info;
    static shmrpc_method_info methods[N_TAPS];
    memcpy(methods, gen->methods, gen->n_methods * sizeof *methods);
    assert_string_equal(methods[0].name, "first");
    methods[0].signature = "first(int a)->void @msgpack";
    shmrpc_service_info info = *gen;
    info.methods = methods;
    shmrpc_service svc = Every_service;
    svc.info = &info;
    shmrpc_server *s;
    shmrpc_dyn *d;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &svc, &every_identity, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s, "inproc://every-broken"), 0);
    assert_int_equal(shmrpc_dyn_new(&d, NULL), 0);
    assert_int_equal(shmrpc_dyn_connect(d, "inproc://every-broken"), 0);
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(shmrpc_dyn_method(d, "first", &m, &sig), SHMRPC_EPROTO);
        assert_non_null(m);
        assert_null(sig);
        assert_string_equal(shmrpc_errmsg(), "signature, at byte 6: unknown type 'int'");
    }
    assert_int_equal(shmrpc_dyn_method(d, "pass_sign", &m, &sig), 0);
    shmrpc_dyn_free(d);
    shmrpc_server_free(s);
}

/* A server of a service with no method: connecting learns an empty table, and every
 * method asked for is refused with a message that says it has none. */
static void no_methods(void **state)
{
    (void)state;
    shmrpc_service_info info = Every_service_info;
    info.n_methods = 0;
    shmrpc_service svc = Every_service;
    svc.info = &info;
    shmrpc_server *s;
    shmrpc_dyn *d;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &svc, &every_identity, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s, "inproc://every-none"), 0);
    assert_int_equal(shmrpc_dyn_new(&d, NULL), 0);
    int rc = shmrpc_dyn_connect(d, "inproc://every-none");
    if (rc != 0) fail_msg("connect: %s", shmrpc_errmsg());
    assert_int_equal(shmrpc_dyn_info(d)->n_methods, 0);
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    assert_int_equal(shmrpc_dyn_method(d, "first", &m, &sig), SHMRPC_ENOENT);
    assert_string_equal(shmrpc_errmsg(), "Every has no method 'first' (it has: none)");
    shmrpc_dyn_free(d);
    shmrpc_server_free(s);
}

/* --- what each type refuses, and what it says ------------------------------------------ */

/* The types of the refusals below, one parameter a (and one result) of each. */
#define ENUM_C "enum C{red=0,green=5}"
#define STRUCT_P "struct P{i64 v;string? s;}"
/* An enum of long names, and the ones of them a message has room for. */
#define ENUM_LONG                                                                                  \
    "enum L{first_of_the_long_value_names=0,second_of_the_long_value_names=1,"                     \
    "third_of_the_long_value_names=2,fourth_of_the_long_value_names=3,"                            \
    "fifth_of_the_long_value_names=4}"
#define LONG_NAMES                                                                                 \
    "first_of_the_long_value_names, second_of_the_long_value_names, "                              \
    "third_of_the_long_value_names, fourth_of_the_long_value_names"

typedef struct refusal {
    const char *type; /* as a signature spells it */
    const char *json; /* the argument a, as JSON */
    const char *why;  /* the whole message, in each encoding it is said in */
} refusal;

static const refusal refused_args[] = {
    {"bool", "1", "argument 'a': expected true or false (bool), got 1"},
    {"f64", "\"1\"", "argument 'a': expected a number (f64), got \"1\""},
    {"f32", "1e39", "argument 'a': 1e+39 is out of range for f32"},
    {"f32", "-1e39", "argument 'a': -1e+39 is out of range for f32"},
    {"string", "true", "argument 'a': expected a string (string), got true"},
    {"bytes", "[]", "argument 'a': expected a base64 string (bytes), got []"},
    {"bytes", "\"AP8\"", "argument 'a': not valid base64 (RFC 4648, with padding)"},
    {"i8", "128", "argument 'a': 128 is out of range for i8"},
    {"i8", "1.5", "argument 'a': expected an integer (i8), got 1.5"},
    {"u8", "-1", "argument 'a': -1 is out of range for u8"},
    {"u32", "4294967296", "argument 'a': 4294967296 is out of range for u32"},
    {"u64", "\"012\"", "argument 'a': expected an integer (u64), got \"012\""},
    {"u64", "\"1x\"", "argument 'a': expected an integer (u64), got \"1x\""},
    {"u64", "\"-1\"", "argument 'a': expected an integer (u64), got \"-1\""},
    {"u64", "\"18446744073709551616\"",
     "argument 'a': expected an integer (u64), got \"18446744073709551616\""},
    {"list<i64?>", "{}", "argument 'a': expected an array (list<i64?>), got {}"},
    {"list<i64?>", "[1,null,\"x\"]", "argument 'a'[2]: expected an integer (i64), got \"x\""},
    {"map<string,bytes>", "[]", "argument 'a': expected an object (map<string,bytes>), got []"},
    {"map<i8,bool>", "{\"300\":true}", "argument 'a'[\"300\"]: 300 is out of range for i8"},
    {"map<i8,bool>", "{\"x\":true}", "argument 'a'[\"x\"]: key \"x\" is not an integer"},
    {"map<i8,bool>", "{\"01\":true}", "argument 'a'[\"01\"]: key \"01\" is not an integer"},
    {"map<u64,bool>", "{\"18446744073709551616\":true}",
     "argument 'a'[\"18446744073709551616\"]: expected an integer (u64), got "
     "\"18446744073709551616\""},
    {"map<u64,bool>", "{\"-1\":true}", "argument 'a'[\"-1\"]: -1 is out of range for u64"},
    {"map<" ENUM_C ",bool>", "{\"blue\":true}",
     "argument 'a'[\"blue\"]: key \"blue\" is not a value of enum C"},
    {"map<" ENUM_C ",list<string>>", "{\"red\":[1]}",
     "argument 'a'[\"red\"][0]: expected a string (string), got 1"},
    {ENUM_C, "0", "argument 'a': expected the name of a value (enum C), got 0"},
    {ENUM_C, "\"blue\"", "argument 'a': \"blue\" is not a value of enum C (red, green)"},
    {STRUCT_P, "[]", "argument 'a': expected an object (struct P), got []"},
    {STRUCT_P, "{\"v\":1,\"w\":2}", "argument 'a': struct P has no field 'w'"},
    {STRUCT_P, "{\"s\":\"x\"}", "argument 'a': missing field 'v'"},
    {STRUCT_P, "{\"v\":1,\"s\":[\"a very long value that is cut short when it is shown\"]}",
     "argument 'a'.s: expected a string (string), got [\"a very long value that is cut short..."},
    /* A u64 above UINT64_MAX, bare (read past jansson as a marked big integer) or as a string
     * that does not start with a digit; a u64 key that is no integer at all, or one below
     * INT64_MIN. */
    {"u64", "18446744073709551616", "argument 'a': 18446744073709551616 is out of range for u64"},
    {"u64", "\"x1\"", "argument 'a': expected an integer (u64), got \"x1\""},
    {"map<u64,bool>", "{\"x\":true}", "argument 'a'[\"x\"]: key \"x\" is not an integer"},
    {"map<u64,bool>", "{\"-99999999999999999999\":true}",
     "argument 'a'[\"-99999999999999999999\"]: key \"-99999999999999999999\" is not an integer"},
    /* An enum whose names do not all fit the message: the first ones, then no more. */
    {ENUM_LONG, "\"x\"", "argument 'a': \"x\" is not a value of enum L (" LONG_NAMES ")"},
    /* A value of each kind where a value of another is wanted, nested. */
    {"list<bool>", "[null]", "argument 'a'[0]: expected true or false (bool), got null"},
    {"map<string,f32>", "{\"k\":{}}", "argument 'a'[\"k\"]: expected a number (f32), got {}"},
    {"list<" ENUM_C ">", "[\"red\",[]]",
     "argument 'a'[1]: expected the name of a value (enum C), got []"},
    {"list<" STRUCT_P ">", "[{\"v\":1},1]",
     "argument 'a'[1]: expected an object (struct P), got 1"},
    {"list<list<i16>>", "[[],[1,40000]]", "argument 'a'[1][1]: 40000 is out of range for i16"},
};

/* A parameter of each type, given a JSON value that type refuses: each encoding that reads
 * JSON (msgpack and @json) refuses it with SHMRPC_EINVAL, with the same message naming the
 * place, the type and the value, and writes nothing a caller could send. */
static void each_type_refuses(void **state)
{
    fixture *f = *state;
    shmrpc_buf req;
    shmrpc_buf_init(&req);
    for (size_t i = 0; i < sizeof refused_args / sizeof *refused_args; i++) {
        const refusal *r = &refused_args[i];
        for (int json = 0; json < 2; json++) {
            char text[512], args[512];
            snprintf(text, sizeof text, "x(%s a)->void @%s", r->type, json ? "json" : "msgpack");
            snprintf(args, sizeof args, "[%s]", r->json);
            const shmrpc_dyn_sig *sig;
            if (shmrpc_dyn_sig_parse(f->d, text, &sig) != 0)
                fail_msg("%s: %s", text, shmrpc_errmsg());
            shmrpc_buf_clear(&req);
            int rc = shmrpc_dyn_encode_args(sig, args, strlen(args), &req);
            if (rc != SHMRPC_EINVAL) fail_msg("%s took %s (%d)", text, args, rc);
            if (strcmp(shmrpc_errmsg(), r->why) != 0)
                fail_msg("%s, %s:\n  want %s\n  got  %s", text, args, r->why, shmrpc_errmsg());
        }
    }
    shmrpc_buf_destroy(&req);
}

/* A msgpack body read as the result type (decode_result): what it prints, or the message it
 * refuses it with. */
typedef struct reading {
    const char *type;
    const char *body; /* msgpack */
    size_t len;
    const char *json; /* what it prints, or NULL when refused */
    const char *why;  /* the message when refused */
} reading;
#define MP(lit) lit, sizeof(lit) - 1

static const reading readings[] = {
    /* Each escape JSON has a short form for, and the rest of the control characters. */
    {"string", MP("\xa7\r\t\b\f\x1f\"\\"), "\"\\r\\t\\b\\f\\u001f\\\"\\\\\"", NULL},
    /* UTF-8 of 2, 3 and 4 bytes reads; overlong, surrogate, past U+10FFFF, cut short and a
     * lone continuation byte do not. */
    {"string", MP("\xa9\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"),
     "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", NULL},
    {"string", MP("\xa2\xc0\xaf"), NULL, "result: string is not UTF-8"},
    {"string", MP("\xa3\xe0\x80\xaf"), NULL, "result: string is not UTF-8"},
    {"string", MP("\xa3\xed\xa0\x80"), NULL, "result: string is not UTF-8"},
    {"string", MP("\xa4\xf4\x90\x80\x80"), NULL, "result: string is not UTF-8"},
    {"string", MP("\xa2\xe2\x82"), NULL, "result: string is not UTF-8"},
    {"string", MP("\xa2\xe2\x41"), NULL, "result: string is not UTF-8"},
    {"string", MP("\xa1\x80"), NULL, "result: string is not UTF-8"},
    {"string", MP("\xa1\xff"), NULL, "result: string is not UTF-8"},
    {"map<string,bool>", MP("\x81\xa1\xff\xc3"), NULL, "result: a key is not UTF-8"},
    /* Reals with no JSON form. */
    {"f64", MP("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"), NULL, "result: NaN has no JSON form"},
    {"f64", MP("\xcb\xff\xf0\x00\x00\x00\x00\x00\x00"), NULL,
     "result: an infinity has no JSON form"},
    {"f32", MP("\xca\x7f\x80\x00\x00"), NULL, "result: an infinity has no JSON form"},
    {"f32", MP("\xca\x3f\xc0\x00\x00"), "1.5", NULL},
    /* Enums by value, in a value and as a key. */
    {ENUM_C, MP("\x05"), "\"green\"", NULL},
    {ENUM_C, MP("\x07"), NULL, "result: 7 is not a value of enum C"},
    {"map<" ENUM_C ",bool>", MP("\x81\x05\xc3"), "{\"green\":true}", NULL},
    {"map<" ENUM_C ",bool>", MP("\x81\x09\xc3"), NULL, "result: key 9 is not a value of enum C"},
    /* A struct with the wrong number of fields. */
    {STRUCT_P, MP("\x92\x01\xc0"), "{\"v\":1,\"s\":null}", NULL},
    /* A newer peer's fields are skipped, an older one's missing optional ones are null
     * (compatible evolution); a required one missing is not. */
    {STRUCT_P, MP("\x93\x01\xc0\xc0"), "{\"v\":1,\"s\":null}", NULL},
    {STRUCT_P, MP("\x94\x01\xa1x\x92\x91\x90\x81\x01\x02\xc3"), "{\"v\":1,\"s\":\"x\"}", NULL},
    {STRUCT_P, MP("\x91\x01"), "{\"v\":1,\"s\":null}", NULL},
    {STRUCT_P, MP("\x90"), NULL, "result: struct P: expected at least 1 fields, got 0"},
    {STRUCT_P, MP("\x93\x01\xc0\xc1"), NULL, "result: invalid msgpack byte"},
    /* A 3-byte sequence whose second byte is no continuation byte. */
    {"string", MP("\xa3\xe2\x41\x41"), NULL, "result: string is not UTF-8"},
    /* Each kind given a msgpack value of another kind, and the message of the reader. */
    {"void", MP("\x01"), NULL, "result: expected nil, got integer"},
    {"bool", MP("\xc0"), NULL, "result: expected boolean, got nil"},
    {"f32", MP("\xa0"), NULL, "result: expected number, got string"},
    {"f64", MP("\xc3"), NULL, "result: expected number, got boolean"},
    {"string", MP("\xc4\x00"), NULL, "result: expected string, got binary"},
    {"bytes", MP("\xa0"), NULL, "result: expected binary, got string"},
    {"i64?", MP(""), NULL, "result: truncated"},
    {ENUM_C, MP("\xa3red"), NULL, "result: expected integer, got string"},
    {ENUM_C, MP("\xce\x80\x00\x00\x00"), NULL, "result: integer out of range for i32"},
    {"list<i64>", MP("\x80"), NULL, "result: expected array, got map"},
    {"list<i64>", MP("\x92\x01\xa0"), NULL, "result[1]: expected integer, got string"},
    {"map<string,bool>", MP("\x90"), NULL, "result: expected map, got array"},
    {"map<string,bool>", MP("\x81\x01\xc3"), NULL, "result: expected string, got integer"},
    {"map<string,bool>", MP("\x81\xa1k\x01"), NULL, "result[\"k\"]: expected boolean, got integer"},
    /* A key is cut to 40 bytes where it names the place. */
    {"map<string,bool>",
     MP("\x81\xd9\x32"
        "0123456789012345678901234567890123456789abcdefghij"
        "\xc0"),
     NULL, "result[\"0123456789012345678901234567890123456789\"]: expected boolean, got nil"},
    {"map<" ENUM_C ",bool>", MP("\x81\xa3red\xc3"), NULL, "result: expected integer, got string"},
    {"map<i8,bool>", MP("\x81\xcc\xc8\xc3"), NULL, "result: integer out of range for i8"},
    {"map<i8,bool>", MP("\x81\x7f\xc3\x01"), NULL, "result: trailing bytes"},
    {"map<i16,bool>", MP("\x81\xd1\x80\x00\xc2"), "{\"-32768\":false}", NULL},
    {"map<u8,bool>", MP("\x81\xff\xc3"), NULL, "result: integer out of range for u8"},
    {"map<u64,bool>", MP("\x81\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xc3"),
     "{\"18446744073709551615\":true}", NULL},
    {STRUCT_P, MP("\x81\x01\x01"), NULL, "result: expected array, got map"},
    {STRUCT_P, MP("\x92\x01\x01"), NULL, "result.s: expected string, got integer"},
    {"i16", MP("\xcd\xff\xff"), NULL, "result: integer out of range for i16"},
    {"i64", MP("\xcf\x80\x00\x00\x00\x00\x00\x00\x00"), NULL,
     "result: integer out of range for i64"},
    {"u64", MP("\xa0"), NULL, "result: expected integer, got string"},
    {"u16", MP("\xff"), NULL, "result: integer out of range for u16"},
    /* One value, and nothing after it. */
    {"i64", MP("\x01\x02"), NULL, "result: trailing bytes"},
    /* any: each kind, a float 32 as the double it is, bytes and maps with keys that are no
     * strings in the codec's forms, and maps that would read back as a form escaped. */
    {"any", MP("\xc0"), "null", NULL},
    {"any", MP("\x93\xc3\xd0\x85\xcf\xff\xff\xff\xff\xff\xff\xff\xff"),
     "[true,-123,18446744073709551615]", NULL},
    {"any", MP("\x92\xca\x3f\xc0\x00\x00\xcb\x40\x00\x00\x00\x00\x00\x00\x00"), "[1.5,2.0]", NULL},
    {"any", MP("\x82\xa1k\xc4\x02\x00\x01\xa1s\xa2\xc3\xa9"),
     "{\"k\":{\"base64\":\"AAE=\"},\"s\":\"\xc3\xa9\"}", NULL},
    {"any",
     MP("\x82\x01\xa1"
        "a\xc4\x01\xff\x90"),
     "{\"map\":[[1,\"a\"],[{\"base64\":\"/w==\"},[]]]}", NULL},
    {"any",
     MP("\x81\xa6"
        "base64\xa1x"),
     "{\"map\":[[\"base64\",\"x\"]]}", NULL},
    {"any", MP("\x81\xa3map\x90"), "{\"map\":[[\"map\",[]]]}", NULL},
    {"any",
     MP("\x82\xa3map\x90\xa1"
        "b\xc0"),
     "{\"map\":[],\"b\":null}", NULL},
    {"any",
     MP("\x81\xa3"
        "a\x00"
        "b\x01"),
     "{\"map\":[[\"a\\u0000b\",1]]}", NULL},
    {"list<any>", MP("\x92\x80\x81\xc0\xc2"), "[{},{\"map\":[[null,false]]}]", NULL},
    /* What an any refuses: bad UTF-8, extension types, containers as keys, lengths and
     * counts past the end, NaN (no JSON form). */
    {"any", MP("\x91\xa1\xff"), NULL, "result: string is not UTF-8"},
    {"any", MP("\xd4\x01\x00"), NULL, "result: a msgpack extension type is no value of an any"},
    {"any", MP("\x81\x90\x01"), NULL, "result: a map key must be a scalar (not a list or a map)"},
    {"any", MP("\xdd\xff\xff\xff\xff\x01"), NULL, "result: count larger than the bytes left"},
    {"any", MP("\xdb\x00\x00\x01\x00ab"), NULL, "result: truncated"},
    {"any", MP("\x92\x01"), NULL, "result: count larger than the bytes left"},
    {"any", MP("\x92\x01\xa2"), NULL, "result: truncated"},
    {"any", MP("\xc1"), NULL, "result: invalid msgpack byte"},
    {"any", MP("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"), NULL, "result: NaN has no JSON form"},
    {"any", MP("\x01\x02"), NULL, "result: trailing bytes"},
};

static void each_type_reads(void **state)
{
    fixture *f = *state;
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    for (size_t i = 0; i < sizeof readings / sizeof *readings; i++) {
        const reading *r = &readings[i];
        char text[256];
        snprintf(text, sizeof text, "x()->%s @msgpack", r->type);
        const shmrpc_dyn_sig *sig;
        if (shmrpc_dyn_sig_parse(f->d, text, &sig) != 0) fail_msg("%s: %s", text, shmrpc_errmsg());
        shmrpc_buf_clear(&out);
        int rc = shmrpc_dyn_decode_result(sig, r->body, r->len, &out);
        if (r->json) {
            if (rc != 0) fail_msg("readings[%zu] %s: %s", i, text, shmrpc_errmsg());
            assert_text(text, "the result", r->json, &out);
        } else {
            if (rc != SHMRPC_EINVAL) fail_msg("readings[%zu] %s: read it (%d)", i, text, rc);
            if (strcmp(shmrpc_errmsg(), r->why) != 0)
                fail_msg("readings[%zu] %s:\n  want %s\n  got  %s", i, text, r->why,
                         shmrpc_errmsg());
        }
    }
    shmrpc_buf_destroy(&out);
}

/* Whole argument texts: their form (array, object, neither), their white space, and the
 * integers above INT64_MAX that are read past jansson, or left for it to refuse. */
typedef struct text_case {
    const char *sig;
    const char *args;
    const char *body; /* the request it makes, or NULL when refused */
    size_t len;
    const char *why; /* the message when refused */
} text_case;

#define MANY_PARAMS                                                                                \
    "x(i64 the_first_parameter,i64 the_second_parameter,i64 the_third_parameter,"                  \
    "i64 the_fourth_parameter,i64 the_fifth_parameter,i64 the_sixth_parameter,"                    \
    "i64 the_seventh_parameter,i64 the_eighth_parameter,i64 the_ninth_parameter,"                  \
    "i64 the_tenth_parameter,i64 the_eleventh_parameter,i64 the_twelfth_parameter)->void @msgpack"

static const text_case texts[] = {
    /* Integers of 19 digits at and below INT64_MAX (an i64 has them), and the largest u64,
     * bare, and "0". */
    {"x(i64 a,i64 b,u64 c,u64 d)->void @msgpack",
     "[9223372036854775807,1000000000000000000,18446744073709551615,\"0\"]",
     MP("\x94\xcf\x7f\xff\xff\xff\xff\xff\xff\xff\xcf\x0d\xe0\xb6\xb3\xa7\x64\x00\x00"
        "\xcf\xff\xff\xff\xff\xff\xff\xff\xff\x00"),
     NULL},
    /* Tabs, carriage returns and newlines between the values. */
    {"x(i64 a,i64 b)->void @msgpack", "[\t1,\r\n-2 ]", MP("\x92\x01\xfe"), NULL},
    /* Digits that go on as a real are no big integer: jansson reads the real. */
    {"x(f64 a,f64 b)->void @msgpack", "[99999999999999999999.5,99999999999999999999E1]",
     MP("\x92\xcb\x44\x15\xaf\x1d\x78\xb5\x8c\x40\xcb\x44\x4b\x1a\xe4\xd6\xe2\xef\x50"), NULL},
    /* A big integer where the arguments should be: shown as the number it is. */
    {"x(u64 a)->void @msgpack", "99999999999999999999", NULL, 0,
     "arguments: expected a JSON array of the arguments in order or an object by name, got "
     "99999999999999999999"},
    {"x(u64 a)->void @msgpack", "[1]]", NULL, 0,
     "arguments: bad JSON at line 1, column 4: end of file expected near ']'"},
    {"x(string a)->void @msgpack", "[\"a\\", NULL, 0,
     "arguments: bad JSON at line 1, column 4: invalid escape near '\"a\\'"},
    /* After a comma at the top, a big integer is no argument: jansson refuses the text. */
    {"x(u64 a)->void @msgpack", "[1],99999999999999999999", NULL, 0,
     "arguments: bad JSON at line 1, column 4: end of file expected near ','"},
    {"x(i64 a)->void @msgpack", "[1,2]", NULL, 0, "arguments: 2 given, but x takes 1 (a)"},
    {"x()->void @json", "{\"y\":1}", NULL, 0,
     "arguments: x has no parameter 'y' (it takes: nothing)"},
    /* Names that do not all fit the message: the first ones, then no more. */
    {MANY_PARAMS, "{}", NULL, 0,
     "arguments: missing argument 'the_first_parameter' (x takes: the_first_parameter, "
     "the_second_parameter, the_third_parameter, the_fourth_parameter, the_fifth_parameter, "
     "the_sixth_parameter, the_seventh_parameter, the_eighth_parameter, the_ninth_parameter, "
     "the_tenth_parameter, the_eleventh_parameter)"},
    /* A @raw argument: text, {"base64": ...} and nothing else. */
    {"x(bytes a)->bytes @raw", "[{\"base64\":\"AP8=\"}]", MP("\x00\xff"), NULL},
    {"x(bytes a)->bytes @raw", "[\"\xc3\xa9\"]", MP("\xc3\xa9"), NULL},
    {"x(bytes a)->bytes @raw", "[{\"base64\":1}]", NULL, 0,
     "argument 'a': expected a string (its UTF-8 bytes) or {\"base64\": \"...\"}, got "
     "{\"base64\":1}"},
    {"x(bytes a)->bytes @raw", "[{\"base64\":\"AA==\",\"x\":1}]", NULL, 0,
     "argument 'a': expected a string (its UTF-8 bytes) or {\"base64\": \"...\"}, got "
     "{\"base64\":\"AA==\",\"x\":1}"},
    {"x(bytes a)->bytes @raw", "[{\"base64\":\"A\"}]", NULL, 0,
     "argument 'a': not valid base64 (RFC 4648, with padding)"},
    {"x(bytes a)->bytes @raw", "[[]]", NULL, 0,
     "argument 'a': expected a string (its UTF-8 bytes) or {\"base64\": \"...\"}, got []"},
    /* any: JSON's values as they are (integers in their smallest form, reals as float 64),
     * the two forms, and a u64 above INT64_MAX. */
    {"x(any a)->void @msgpack", "[{\"n\":[1,-1,2.5,null,true,\"s\"]}]",
     MP("\x91\x81\xa1n\x96\x01\xff\xcb\x40\x04\x00\x00\x00\x00\x00\x00\xc0\xc3\xa1s"), NULL},
    {"x(any a)->void @msgpack", "[{\"base64\":\"AAE=\"}]", MP("\x91\xc4\x02\x00\x01"), NULL},
    {"x(any a)->void @msgpack", "[{\"map\":[[1,2],[{\"base64\":\"/w==\"},null],[\"map\",[]]]}]",
     MP("\x91\x83\x01\x02\xc4\x01\xff\xc0\xa3map\x90"), NULL},
    {"x(any a)->void @msgpack", "[18446744073709551615]",
     MP("\x91\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), NULL},
    {"x(any a)->void @msgpack", "[{\"base64\":\"A\"}]", NULL, 0,
     "argument 'a'.base64: not valid base64 (RFC 4648, with padding)"},
    {"x(any a)->void @msgpack", "[{\"map\":[[1,2,3]]}]", NULL, 0,
     "argument 'a'.map[0]: expected a [key, value] pair"},
    {"x(any a)->void @msgpack", "[{\"map\":[[[1],2]]}]", NULL, 0,
     "argument 'a'.map[0]: a map's key must be a scalar, not an array"},
    /* not a form: "map" with no array is the plain map it is, as "base64" with no string */
    {"x(any a)->void @msgpack", "[{\"map\":{}}]", MP("\x91\x81\xa3map\x80"), NULL},
    {"x(any a)->void @msgpack", "[[1,[2,{\"x\":100000000000000000000}]]]", NULL, 0,
     "argument 'a'[1][1][\"x\"]: 100000000000000000000 is out of range (u64 at most)"},
    /* On a @json method's wire an any is plain JSON: the forms are read, and what JSON
     * cannot hold is refused, naming the place. */
    {"x(any a)->void @json", "[{\"k\":[1,2.5,\"s\",null]}]",
     MP("{\"a\":{\"k\":[1,2.5,\"s\",null]}}"), NULL},
    {"x(any a)->void @json", "[{\"map\":[[\"base64\",\"x\"]]}]", MP("{\"a\":{\"base64\":\"x\"}}"),
     NULL},
    {"x(any a)->void @json", "[[0,{\"base64\":\"AA==\"}]]", NULL, 0,
     "argument 'a'[1]: bytes have no JSON form in a @json method (send them in a @msgpack one, "
     "or as a string)"},
    {"x(any a)->void @json", "[{\"v\":{\"map\":[[7,1]]}}]", NULL, 0,
     "argument 'a'[\"v\"].map[0]: a map key that is not a string has no JSON form in a @json "
     "method"},
    {"x(any a)->void @json", "[18446744073709551615]", NULL, 0,
     "argument 'a': 18446744073709551615 has no JSON form in a @json method (integers travel as "
     "int64)"},
};

/* What decode_result prints of an any, encode_result reads back to the same bytes, and
 * prints the same again: the codec's JSON for an any loses nothing. */
static void any_reads_back(void **state)
{
    fixture *f = *state;
    /* Each value, and whether a @json wire holds it: no bytes, no key but strings, nothing
     * above INT64_MAX. */
    static const struct {
        const char *text;
        bool json;
    } values[] = {
        {"null", true},
        {"[true,false,0,-1,127,-129,9223372036854775807,18446744073709551615]", false},
        {"[true,false,0,-1,127,-129,9223372036854775807]", true},
        {"[0.5,2.0,-1e+300,1.0000000000000002]", true},
        {"{\"a\":{\"b\":[[],{}]},\"c\":\"\\u0000\"}", true},
        {"{\"map\":[[1,{\"base64\":\"AAE=\"}],[null,1],[2.5,[]],[true,{}]]}", false},
        {"{\"map\":[[\"base64\",\"AA==\"]]}", true},
        {"{\"map\":[[\"map\",[[1,2]]]]}", true},
        {"{\"map\":[[{\"base64\":\"\"},\"\"],[\"k\\u0000\",0]]}", false},
        {"{\"sequence_number\":7,\"samples\":[1.5,2,-3],\"name\":\"x\",\"raw\":{\"base64\":"
         "\"AAE=\"},\"nested\":{\"a\":[[1],{}]}}",
         false},
    };
    const shmrpc_dyn_sig *sig;
    for (int json = 0; json < 2; json++) {
        const char *text = json ? "q()->any @json" : "q()->any @msgpack";
        assert_int_equal(shmrpc_dyn_sig_parse(f->d, text, &sig), 0);
        shmrpc_buf body, out;
        shmrpc_buf_init(&body);
        shmrpc_buf_init(&out);
        for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
            shmrpc_buf_clear(&body);
            shmrpc_buf_clear(&out);
            const char *v = values[i].text;
            int rc = shmrpc_dyn_encode_result(sig, v, strlen(v), &body);
            if (json && !values[i].json) {
                if (rc != SHMRPC_EINVAL) fail_msg("@json took %s (%d)", v, rc);
                continue;
            }
            if (rc != 0) fail_msg("%s: %s: %s", text, v, shmrpc_errmsg());
            if (shmrpc_dyn_decode_result(sig, body.data, body.len, &out) != 0)
                fail_msg("%s: %s: %s", text, v, shmrpc_errmsg());
            assert_text(text, v, v, &out);
        }
        shmrpc_buf_destroy(&body);
        shmrpc_buf_destroy(&out);
    }
    /* Lists and maps nest at most 128 deep in an any (SHMRPC_ANY_MAX_DEPTH). */
    assert_int_equal(shmrpc_dyn_sig_parse(f->d, "q()->any @msgpack", &sig), 0);
    for (int levels = 128; levels <= 129; levels++) {
        uint8_t deep[200];
        memset(deep, 0x91, (size_t)levels);
        deep[levels] = 0xc0;
        shmrpc_buf out;
        shmrpc_buf_init(&out);
        int rc = shmrpc_dyn_decode_result(sig, deep, (size_t)levels + 1, &out);
        if (levels == 128) {
            if (rc != 0) fail_msg("128 deep: %s", shmrpc_errmsg());
            assert_int_equal(out.len, 128 * 2 + 4);
        } else {
            assert_int_equal(rc, SHMRPC_EINVAL);
            assert_string_equal(shmrpc_errmsg(), "result: nested more than 128 deep");
        }
        shmrpc_buf_destroy(&out);
    }
    /* A map may hold a key twice (the builder, a peer): it prints in the map form, which
     * reads back to the same bytes, since the codec refuses an object with a key twice;
     * a @json wire has no form for it. */
    {
        static const uint8_t twice[] = {0x83, 0xa1, 'a', 0x01, 0xa1, 'b', 0x02, 0xa1, 'a', 0x03};
        const char *want = "{\"map\":[[\"a\",1],[\"b\",2],[\"a\",3]]}";
        shmrpc_buf out, back;
        shmrpc_buf_init(&out);
        shmrpc_buf_init(&back);
        if (shmrpc_dyn_decode_result(sig, twice, sizeof twice, &out) != 0)
            fail_msg("a key twice: %s", shmrpc_errmsg());
        assert_text("a key twice", want, want, &out);
        if (shmrpc_dyn_encode_result(sig, (const char *)out.data, out.len, &back) != 0)
            fail_msg("a key twice, read back: %s", shmrpc_errmsg());
        assert_int_equal(back.len, sizeof twice);
        assert_memory_equal(back.data, twice, sizeof twice);
        const shmrpc_dyn_sig *jsig;
        assert_int_equal(shmrpc_dyn_sig_parse(f->d, "q()->any @json", &jsig), 0);
        shmrpc_buf_clear(&back);
        assert_int_equal(shmrpc_dyn_encode_result(jsig, want, strlen(want), &back), SHMRPC_EINVAL);
        assert_string_equal(shmrpc_errmsg(),
                            "value: a key appears twice, which a @json peer refuses in an object");
        shmrpc_buf_destroy(&out);
        shmrpc_buf_destroy(&back);
    }
    /* Only a one-entry object of "base64" with a string or "map" with an array is a form
     * (dynamic.md, as Python reads them): another is the plain map it is. */
    static const char *const not_forms[][2] = {
        {"{\"map\":1}", "{\"map\":[[\"map\",1]]}"},
        {"{\"base64\":1}", "{\"map\":[[\"base64\",1]]}"},
        {"{\"map\":{}}", "{\"map\":[[\"map\",{}]]}"},
    };
    for (size_t i = 0; i < sizeof not_forms / sizeof *not_forms; i++) {
        shmrpc_buf body, out;
        shmrpc_buf_init(&body);
        shmrpc_buf_init(&out);
        const char *v = not_forms[i][0];
        if (shmrpc_dyn_encode_result(sig, v, strlen(v), &body) != 0)
            fail_msg("%s: %s", v, shmrpc_errmsg());
        assert_int_equal(shmrpc_dyn_decode_result(sig, body.data, body.len, &out), 0);
        assert_text("not a form", v, not_forms[i][1], &out);
        shmrpc_buf_destroy(&body);
        shmrpc_buf_destroy(&out);
    }
    /* The shape of seed 004's values, built with the builder, reads through the view. */
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc_any_put_map(&b, 2);
    shmrpc_any_put_cstr(&b, "sequence_number");
    shmrpc_any_put_int(&b, 7);
    shmrpc_any_put_cstr(&b, "raw");
    shmrpc_any_put_bytes(&b, "\x00\x01", 2);
    shmrpc_any a;
    assert_int_equal(shmrpc_any_built(&b, 0, &a), 0);
    assert_int_equal(shmrpc_dyn_sig_parse(f->d, "q()->any @msgpack", &sig), 0);
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    assert_int_equal(shmrpc_dyn_decode_result(sig, a.p, a.n, &out), 0);
    assert_text("built", "the result", "{\"sequence_number\":7,\"raw\":{\"base64\":\"AAE=\"}}",
                &out);
    shmrpc_buf_destroy(&out);
    shmrpc_buf_destroy(&b);
}

static void whole_texts(void **state)
{
    fixture *f = *state;
    shmrpc_buf req;
    shmrpc_buf_init(&req);
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        const text_case *t = &texts[i];
        const shmrpc_dyn_sig *sig;
        if (shmrpc_dyn_sig_parse(f->d, t->sig, &sig) != 0)
            fail_msg("%s: %s", t->sig, shmrpc_errmsg());
        shmrpc_buf_clear(&req);
        int rc = shmrpc_dyn_encode_args(sig, t->args, strlen(t->args), &req);
        if (t->body) {
            if (rc != 0) fail_msg("texts[%zu] %s: %s", i, t->args, shmrpc_errmsg());
            shmrpc_buf want = {.data = (uint8_t *)t->body, .len = t->len};
            assert_same_bytes(t->args, "requests", &want, &req);
        } else {
            if (rc != SHMRPC_EINVAL) fail_msg("texts[%zu] took %s (%d)", i, t->args, rc);
            if (strcmp(shmrpc_errmsg(), t->why) != 0)
                fail_msg("texts[%zu] %s:\n  want %s\n  got  %s", i, t->args, t->why,
                         shmrpc_errmsg());
        }
    }
    shmrpc_buf_destroy(&req);
}

/* A table a hostile peer could send (issue 36): each refused with its reason, as the verdict
 * a client gets when one of its methods meets the server's other fingerprint
 * (shmrpc_service_compat, the check of every connect); the same comparison with a sound
 * table tells what changed. */
static void hostile_tables(void **state)
{
    (void)state;
    static const char *const mine_types[] = {"struct A{i64 x;}"};
    static const shmrpc_method_info mine_m[] = {{"m", 0, SHMRPC_ENC_MSGPACK, 1, "m(struct A a)->i64 @msgpack"}};
    const shmrpc_service_info mine = {SHMRPC_SERVICE_MAGIC, SHMRPC_DESCRIPTOR_VERSION, "S", "s", 0, 0,
                                      1, mine_m, 1, mine_types};
    static const struct {
        const char *types[3];
        const char *sig, *why;
    } cases[] = {
        {{"struct A{i64 x;}", "struct A{}"}, NULL, "the server's table: types, 'A': described twice"},
        {{"struct A{struct B b;}"}, NULL,
         "the server's table: types, 'A': description, at byte 17: 'B' is not among the "
         "table's types"},
        {{"struct A{enum E e;}", "struct E{}"}, NULL,
         "the server's table: types, 'A': description, at byte 15: 'E' is a struct, not an "
         "enum"},
        {{"struct A{struct B b;}", "struct B{struct A a;}"}, NULL,
         "the server's table: types, 'A': holds itself through 'B' with no list, map or "
         "optional between (a value of it would never end)"},
        /* A cycle that the first struct only reaches. */
        {{"struct A{struct B b;}", "struct B{struct C c;}", "struct C{list<i64> l;struct B b;}"},
         NULL,
         "the server's table: types, 'B': holds itself through 'C' with no list, map or "
         "optional between (a value of it would never end)"},
        {{"struct A{struct C{i64 y;} c;}"}, NULL,
         "the server's table: types, 'A': description, at byte 17: 'C' is spelled out inside "
         "a description (name it alone)"},
        {{"A{}"}, NULL, "the server's table: types, entry 'A{}': expected 'struct NAME{' or "
                        "'enum NAME{'"},
        {{"struct A{i64 x;}"}, "m(struct Z a)->i64 @msgpack",
         "the server's signature, at byte 10: 'Z' is not among the table's types"},
        {{"struct A{i64 x;f64? y;}"}, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint32_t n = 0;
        while (n < 3 && cases[i].types[n])
            n++;
        shmrpc_method_info m = {"m", 0, SHMRPC_ENC_MSGPACK, 2,
                                cases[i].sig ? cases[i].sig : "m(struct A a)->i64 @msgpack"};
        const shmrpc_service_info theirs = {SHMRPC_SERVICE_MAGIC, SHMRPC_DESCRIPTOR_VERSION, "S",
                                            "s", 0, 0, 1, &m, n, cases[i].types};
        shmrpc_buf v;
        shmrpc_buf_init(&v);
        int rc = shmrpc_service_compat(&mine, &theirs, &v);
        const char *text = v.len ? (const char *)v.data : "";
        if (cases[i].why == NULL) {
            if (rc != 0 || !strstr(text, "compatible, with these differences: 'm': struct A: "
                                         "field 'y' (f64?) only on the server"))
                fail_msg("case %zu: %d %s", i, rc, text);
        } else if (rc != SHMRPC_EMISMATCH || !strstr(text, cases[i].why)) {
            fail_msg("case %zu: got %d '%s'\n  want '%s'", i, rc, text, cases[i].why);
        }
        shmrpc_buf_destroy(&v);
    }
}

/* One service of one method m of signature sig, and the verdict of a client of mine on it. */
static int compat_of(const char *mine, const char *theirs, shmrpc_buf *v)
{
    shmrpc_method_info mm = {"m", 0, SHMRPC_ENC_MSGPACK, 1, mine};
    shmrpc_method_info tm = {"m", 0, SHMRPC_ENC_MSGPACK, 2, theirs};
    const shmrpc_service_info a = {SHMRPC_SERVICE_MAGIC, SHMRPC_DESCRIPTOR_VERSION, "S", "s", 0, 0,
                                   1, &mm, 0, NULL};
    const shmrpc_service_info b = {SHMRPC_SERVICE_MAGIC, SHMRPC_DESCRIPTOR_VERSION, "S", "s", 0, 0,
                                   1, &tm, 0, NULL};
    shmrpc_buf_init(v);
    return shmrpc_service_compat(&a, &b, v);
}

/* Streams (docs/streams.md): their signatures read back as written, a stream never meets a
 * method that answers or asks once, and one call's JSON carries no stream. */
static void streams_read_back(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *text;
        bool client, server;
    } good[] = {
        {"m(i64 n)->stream<i64> @msgpack", false, true},
        {"m(stream<struct P{i64 x;f64? y;}> points)->struct P @msgpack", true, false},
        {"m(stream<bytes> data)->stream<bytes> @raw", true, true},
        {"m(stream<list<string>> a)->void @msgpack", true, false},
    };
    shmrpc_buf text;
    shmrpc_buf_init(&text);
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        const shmrpc_dyn_sig *sig;
        if (shmrpc_dyn_sig_parse(f->d, good[i].text, &sig) != 0)
            fail_msg("%s: %s", good[i].text, shmrpc_errmsg());
        assert_int_equal(sig->client_stream, good[i].client);
        assert_int_equal(sig->server_stream, good[i].server);
        shmrpc_buf_clear(&text);
        assert_int_equal(shmrpc_dyn_sig_text(sig, &text), 0);
        shmrpc_buf_append(&text, "", 1);
        assert_string_equal((const char *)text.data, good[i].text);
    }
    shmrpc_buf_destroy(&text);

    const shmrpc_dyn_sig *sig;
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    /* A streamed result: its open's arguments, and its items, are read and written; it is
     * no one call's result. */
    assert_int_equal(shmrpc_dyn_sig_parse(f->d, "ticks(i64 n)->stream<i64> @msgpack", &sig), 0);
    assert_int_equal(shmrpc_dyn_encode_args(sig, "[3]", 3, &out), 0);
    assert_int_equal(out.len, 2);
    assert_memory_equal(out.data, "\x91\x03", 2);
    shmrpc_buf_clear(&out);
    assert_int_equal(shmrpc_dyn_decode_item(sig, "\x03", 1, &out), 0);
    assert_int_equal(out.len, 1);
    assert_memory_equal(out.data, "3", 1);
    assert_int_equal(shmrpc_dyn_decode_item(sig, "\xa1x", 2, &out), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "item"));
    assert_int_equal(shmrpc_dyn_decode_result(sig, "\x03", 1, &out), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "the method streams its result, which one call's "
                                         "JSON cannot carry");
    assert_int_equal(shmrpc_dyn_sig_parse(f->d, "twice(i64 x)->i64 @msgpack", &sig), 0);
    assert_int_equal(shmrpc_dyn_decode_item(sig, "\x03", 1, &out), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "the method answers once: it has no items");
    assert_int_equal(shmrpc_dyn_encode_item(sig, "3", 1, &out), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "the method's parameter does not stream: it takes no "
                                         "items");
    /* A streamed parameter: its open sends no argument, its items are the client's, and its
     * answer is one call's. */
    assert_int_equal(shmrpc_dyn_sig_parse(f->d, "sum(stream<i64> v)->i64 @msgpack", &sig), 0);
    shmrpc_buf_clear(&out);
    assert_int_equal(shmrpc_dyn_encode_args(sig, "[]", 2, &out), 0);
    assert_int_equal(shmrpc_dyn_encode_args(sig, "{}", 2, &out), 0);
    assert_int_equal(out.len, 2);
    assert_memory_equal(out.data, "\x90\x90", 2);
    assert_int_equal(shmrpc_dyn_encode_args(sig, "[3]", 3, &out), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "arguments: sum's parameter 'v' streams: its open takes "
                                         "no arguments (its items are sent one by one)");
    shmrpc_buf_clear(&out);
    assert_int_equal(shmrpc_dyn_encode_item(sig, "-3", 2, &out), 0);
    assert_int_equal(out.len, 1);
    assert_memory_equal(out.data, "\xfd", 1);
    assert_int_equal(shmrpc_dyn_encode_item(sig, "\"x\"", 3, &out), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "item: expected an integer (i64), got \"x\"");
    assert_int_equal(shmrpc_dyn_encode_item(sig, "3 4", 3, &out), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_dyn_decode_item(sig, "\x03", 1, &out), SHMRPC_EINVAL);
    shmrpc_buf_clear(&out);
    assert_int_equal(shmrpc_dyn_decode_result(sig, "\x03", 1, &out), 0);
    assert_int_equal(out.len, 1);
    assert_memory_equal(out.data, "3", 1);
    /* Both ways: the open sends no argument, the client its items, the server its own. */
    assert_int_equal(
        shmrpc_dyn_sig_parse(f->d, "doubled(stream<i64> v)->stream<i64> @msgpack", &sig), 0);
    shmrpc_buf_clear(&out);
    assert_int_equal(shmrpc_dyn_encode_item(sig, "3", 1, &out), 0);
    assert_int_equal(shmrpc_dyn_decode_item(sig, "\x06", 1, &out), 0);
    assert_int_equal(out.len, 2);
    assert_memory_equal(out.data, "\x03\x36", 2); /* 3, then the JSON "6" */
    assert_int_equal(shmrpc_dyn_decode_result(sig, "\x03", 1, &out), SHMRPC_EINVAL);
    /* @raw items: a string's UTF-8 bytes, or base64. */
    assert_int_equal(shmrpc_dyn_sig_parse(f->d, "cat(stream<bytes> p)->bytes @raw", &sig), 0);
    shmrpc_buf_clear(&out);
    assert_int_equal(shmrpc_dyn_encode_args(sig, "[]", 2, &out), 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(shmrpc_dyn_encode_item(sig, "\"ab\"", 4, &out), 0);
    assert_int_equal(shmrpc_dyn_encode_item(sig, "{\"base64\": \"AA==\"}", 18, &out), 0);
    assert_int_equal(out.len, 3);
    assert_memory_equal(out.data, "ab\0", 3);
    shmrpc_buf_destroy(&out);

    static const struct {
        const char *mine, *theirs, *why;
    } cases[] = {
        {"m(i64 n)->stream<i64> @msgpack", "m(i64 n)->i64 @msgpack",
         "the result is a stream on the client only"},
        {"m(i64 n)->i64 @msgpack", "m(i64 n)->stream<i64> @msgpack",
         "the result is a stream on the server only"},
        {"m(stream<i64> n)->i64 @msgpack", "m(i64 n)->i64 @msgpack",
         "the parameter is a stream on the client only"},
        {"m(list<i64> n)->i64 @msgpack", "m(stream<list<i64>> n)->i64 @msgpack",
         "the parameter is a stream on the server only"},
        {"m(stream<i64> n)->stream<i64> @msgpack", "m(stream<string> n)->stream<i64> @msgpack",
         "parameter 'n'"},
        {"m(stream<i64> n)->stream<i64> @msgpack", "m(stream<i64> n)->stream<i64> @msgpack", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        shmrpc_buf v;
        int rc = compat_of(cases[i].mine, cases[i].theirs, &v);
        shmrpc_buf_append(&v, "", 1);
        const char *got = (const char *)v.data;
        if (cases[i].why ? rc != SHMRPC_EMISMATCH || !strstr(got, cases[i].why) : rc != 0)
            fail_msg("case %zu: got %d '%s'\n  want '%s'", i, rc, got,
                     cases[i].why ? cases[i].why : "compatible");
        shmrpc_buf_destroy(&v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostile_tables),
        cmocka_unit_test(learns_the_table),
        cmocka_unit_test(same_bytes_as_generated),
        cmocka_unit_test(unknown_method_and_bad_signature),
        cmocka_unit_test(nul_in_a_key),
        cmocka_unit_test(big_u64_reads_back),
        cmocka_unit_test(void_reads_back),
        cmocka_unit_test(broken_signature),
        cmocka_unit_test(no_methods),
        cmocka_unit_test(each_type_refuses),
        cmocka_unit_test(each_type_reads),
        cmocka_unit_test(whole_texts),
        cmocka_unit_test(any_reads_back),
        cmocka_unit_test(signature_errors),
        cmocka_unit_test(streams_read_back),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
