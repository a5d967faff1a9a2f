/* SPDX-License-Identifier: MIT */
/* Generated decoders: a list or map count is checked against the least size of its
 * elements before anything is allocated (a body cannot make the server allocate many
 * times its size), JSON maps of maps decode in linear time, and errors name the field
 * that holds a failing element. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "counts.h"

/* --- msgpack: counts against the bytes left --- */

typedef struct body {
    uint8_t *p;
    size_t len;
} body;

static body body_of(const uint8_t *head, size_t n_head, uint8_t fill, size_t n_fill)
{
    body b = {test_malloc(n_head + n_fill), n_head + n_fill};
    memcpy(b.p, head, n_head);
    memset(b.p + n_head, fill, n_fill);
    return b;
}

/* An array32 that claims one element per byte of a 1 MiB body, in an arena capped at
 * 4 MiB: the old 1-byte-per-element check let it through to a ~56 MiB allocation. */
static void lying_counts_allocate_nothing(void **state)
{
    (void)state;
    enum { N = 1 << 20 };
    const uint8_t head[] = {0xdd, N >> 24, (N >> 16) & 0xff, (N >> 8) & 0xff, N & 0xff};
    body b = body_of(head, sizeof head, 0x00, N);
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_arena_set_limit(a, 4u << 20);

    shmrpc_mp_reader r;
    limits_list_Wide lw;
    shmrpc_mp_reader_init(&r, b.p, b.len);
    assert_int_equal(Limits_list_Wide_mp_read(&r, a, &lw), SHMRPC_EINVAL);
    assert_string_equal(r.why, "count larger than the bytes left");
    assert_int_equal(shmrpc_arena_used(a), 0);

    limits_list_Bytes lb;
    shmrpc_mp_reader_init(&r, b.p, b.len);
    assert_int_equal(Limits_list_Bytes_mp_read(&r, a, &lb), SHMRPC_EINVAL);
    assert_string_equal(r.why, "count larger than the bytes left");
    assert_int_equal(shmrpc_arena_used(a), 0);

    b.p[0] = 0xdf; /* map32: entries of at least 1 + 6 bytes */
    limits_map_String_Wide mw;
    shmrpc_mp_reader_init(&r, b.p, b.len);
    assert_int_equal(Limits_map_String_Wide_mp_read(&r, a, &mw), SHMRPC_EINVAL);
    assert_string_equal(r.why, "count larger than the bytes left");
    assert_int_equal(shmrpc_arena_used(a), 0);

    shmrpc_arena_free(a);
    test_free(b.p);
}

/* The bound is exact: n elements of the least size pass, one byte less does not. */
static void counts_at_the_bound(void **state)
{
    (void)state;
    static const uint8_t wide[] = {0x94, 0x00, 0x00, 0xa0, 0xc4, 0x00};
    uint8_t msg[1 + 3 * sizeof wide];
    msg[0] = 0x93;
    for (int i = 0; i < 3; i++)
        memcpy(msg + 1 + i * sizeof wide, wide, sizeof wide);
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_mp_reader r;
    limits_list_Wide lw;
    shmrpc_mp_reader_init(&r, msg, sizeof msg);
    assert_int_equal(Limits_list_Wide_mp_read(&r, a, &lw), 0);
    assert_int_equal(lw.len, 3);
    assert_int_equal(lw.items[2].d.len, 0);
    assert_int_equal(shmrpc_mp_finish(&r), 0);
    shmrpc_mp_reader_init(&r, msg, sizeof msg - 1);
    assert_int_equal(Limits_list_Wide_mp_read(&r, a, &lw), SHMRPC_EINVAL);
    assert_string_equal(r.why, "count larger than the bytes left");

    /* A Node is at least 3 bytes, and its kids list is checked against that. */
    static const uint8_t node[] = {0x92, 0x01, 0x92, 0x92, 0x02, 0x90, 0x92, 0x03, 0x90};
    limits_Node n;
    shmrpc_mp_reader_init(&r, node, sizeof node);
    assert_int_equal(Limits_Node_mp_read(&r, a, &n), 0);
    assert_int_equal(n.kids.len, 2);
    assert_int_equal(n.kids.items[1].v, 3);
    shmrpc_mp_reader_init(&r, node, sizeof node - 1);
    assert_int_equal(Limits_Node_mp_read(&r, a, &n), SHMRPC_EINVAL);
    assert_string_equal(r.why, "count larger than the bytes left");
    assert_string_equal(r.field, "Node.kids");
    shmrpc_arena_free(a);
}

/* --- JSON: a map of 40,000 maps --- */

static void json_map_of_maps_is_linear(void **state)
{
    (void)state;
    enum { N = 40000 };
    shmrpc_buf text;
    shmrpc_buf_init(&text);
    assert_int_equal(shmrpc_buf_append(&text, "{", 1), 0);
    char item[64];
    for (int i = 0; i < N; i++) {
        int k = snprintf(item, sizeof item, "%s\"k%d\":{\"a\":true,\"b\":%s}", i ? "," : "", i,
                         i % 2 ? "true" : "false");
        assert_int_equal(shmrpc_buf_append(&text, item, (size_t)k), 0);
    }
    assert_int_equal(shmrpc_buf_append(&text, "}", 1), 0);

    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_json_reader r;
    assert_int_equal(shmrpc_json_parse(&r, a, text.data, text.len), 0);
    limits_map_String_map_String_Bool m;
    /* Quadratic before (one shared member cache, reset by every inner map): minutes. */
    assert_int_equal(Limits_map_String_map_String_Bool_json_read(&r, r.root, &m), 0);
    assert_int_equal(m.len, N);
    int trues = 0;
    for (size_t i = 0; i < m.len; i++) {
        assert_int_equal(m.items[i].value.len, 2);
        for (size_t j = 0; j < 2; j++)
            trues += m.items[i].value.items[j].value;
    }
    assert_int_equal(trues, N + N / 2);
    shmrpc_json_release(&r);
    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&text);
}

/* --- error labels, end to end --- */

static int h_wides(shmrpc_ctx *ctx, limits_list_Wide v, limits_list_Wide *out)
{
    (void)ctx;
    *out = v;
    return 0;
}

static int h_by_name(shmrpc_ctx *ctx, limits_map_String_Wide v, limits_map_String_Wide *out)
{
    (void)ctx;
    *out = v;
    return 0;
}

static int h_blobs(shmrpc_ctx *ctx, limits_list_Bytes v, limits_list_Bytes *out)
{
    (void)ctx;
    *out = v;
    return 0;
}

static int h_tree(shmrpc_ctx *ctx, const limits_Node *v, limits_Node *out)
{
    (void)ctx;
    *out = *v;
    return 0;
}

static int h_nested(shmrpc_ctx *ctx, limits_map_String_map_String_Bool v,
                    limits_map_String_map_String_Bool *out)
{
    (void)ctx;
    *out = v;
    return 0;
}

static const Limits_handlers handlers = {
    .wides = h_wides,
    .by_name = h_by_name,
    .blobs = h_blobs,
    .tree = h_tree,
    .nested = h_nested,
    .tree_json = h_tree,
};

typedef struct bad {
    const char *name;
    uint32_t method;
    const char *body;
    size_t len;
    const char *want; /* the client's whole message */
} bad;

#define BODY(s) s, sizeof(s) - 1

static const bad bads[] = {
    /* A kid that is not a Node (padded to the 3 bytes a Node needs at least): the list
     * that holds it is named, not the struct. */
    {"msgpack element", LIMITS_METHOD_TREE, BODY("\x91\x92\x01\x91\x05\x05\x05"),
     "Limits.tree: arguments, field 'Node.kids': expected array, got integer"},
    {"msgpack element field count", LIMITS_METHOD_TREE, BODY("\x91\x92\x01\x91\x91\x01\x00"),
     "Limits.tree: arguments, field 'Node.kids': expected 2 fields"},
    {"json element", LIMITS_METHOD_TREE_JSON, BODY("{\"v\":{\"v\":1,\"kids\":[5]}}"),
     "Limits.tree_json: arguments, field 'Node.kids': expected object, got integer"},
    /* An unknown field is a newer peer's, and skipped (compatible evolution); a field
     * missing that is not optional is not an older peer's. */
    {"json missing field", LIMITS_METHOD_TREE_JSON, BODY("{\"v\":{\"kids\":[]}}"),
     "Limits.tree_json: arguments, field 'Node.v': missing"},
    /* The arguments themselves: no field to name, and never the method's own name. */
    {"json arguments", LIMITS_METHOD_NESTED, BODY("[1]"),
     "Limits.nested: arguments: expected object, got array"},
    {"json missing argument", LIMITS_METHOD_NESTED, BODY("{\"w\":1}"),
     "Limits.nested: arguments, field 'v': missing"},
    {"msgpack arguments", LIMITS_METHOD_TREE, BODY("\x05"),
     "Limits.tree: arguments: expected array, got integer"},
};

static void errors_name_the_holding_field(void **state)
{
    (void)state;
    shmrpc_server *s;
    shmrpc_client *c;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &Limits_service, &handlers, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s, "inproc://decoders_test"), 0);
    assert_int_equal(shmrpc_client_new(&c, &Limits_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(c, "inproc://decoders_test"), 0);
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        shmrpc_buf *req = shmrpc_client_request(c);
        assert_int_equal(shmrpc_buf_append(req, bads[i].body, bads[i].len), 0);
        shmrpc_bytes resp;
        int rc = shmrpc_client_call(c, bads[i].method, &resp);
        const char *msg = shmrpc_errmsg();
        if (rc != SHMRPC_EINVAL || strcmp(msg, bads[i].want) != 0)
            fail_msg("%s: got %d \"%s\", want \"%s\"", bads[i].name, rc, msg, bads[i].want);
    }
    shmrpc_client_free(c);
    shmrpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lying_counts_allocate_nothing),
        cmocka_unit_test(counts_at_the_bound),
        cmocka_unit_test(json_map_of_maps_is_linear),
        cmocka_unit_test(errors_name_the_holding_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
