/* SPDX-License-Identifier: MIT */
/* A service of 100 structs and 300 methods (big_svc.py, issue 36), whose method table
 * spelled out in every signature needs more than the 1 MiB a tcp:// handshake carries:
 * described once per type it compiles, connects and calls over shm:// and tcp://. Prints
 * its HELLO body both ways (the table of revision 6, and the table spelled out as a peer of
 * revision 5 reads it), and checks the spelled-out signatures hash to the fingerprints.
 * Every wait is bounded, the server is reaped, nothing is left in /dev/shm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "big.h"
#include "shop_v2.h"
#include "codec/dyn.h"
#include "procs.h"
#include "transport/tcp/frame.h"

extern const Big_handlers big_handlers;

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    return h;
}

/* The HELLO body of a client of Big, with its table as given. */
static size_t hello_bytes(const shmrpc_service_info *info)
{
    shmrpc_buf body, err;
    shmrpc_buf_init(&body);
    shmrpc_buf_init(&err);
    shmrpc__hello h = {.proto = SHMRPC__WIRE_PROTO, .info = *info, .max_msg = 1 << 20};
    int rc = shmrpc__hello_write(&body, SHMRPC__KIND_HELLO, &h, &err);
    if (rc) fail_msg("hello_write: %s", shmrpc__msg_get(&err));
    size_t n = body.len;
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&err);
    return n;
}

static void handshake_bytes(void **state)
{
    (void)state;
    const shmrpc_service_info *info = &Big_service_info;
    assert_int_equal(info->n_methods, 300);
    assert_int_equal(info->n_types, 101); /* 100 structs and the enum */
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    shmrpc_service_info spelled;
    /* What a peer of revision 5 would have to read: refused, as shmrpcgen refused it. */
    int rc = shmrpc__info_spelled(a, info, SIZE_MAX, &spelled, &err);
    if (rc) fail_msg("spelled: %s", shmrpc__msg_get(&err));
    size_t now = hello_bytes(info), before = 0, sigs = 0;
    for (uint32_t i = 0; i < info->n_methods; i++) {
        const char *s = spelled.methods[i].signature;
        sigs += strlen(s);
        /* The canonical text the runtime spells out is the generator's: same fingerprint. */
        assert_true(fnv1a((const uint8_t *)s, strlen(s)) == info->methods[i].fingerprint);
    }
    shmrpc_buf body;
    shmrpc_buf_init(&body);
    shmrpc__hello h = {.proto = 5, .info = spelled, .max_msg = 1 << 20};
    rc = shmrpc__hello_write(&body, SHMRPC__KIND_HELLO, &h, &err);
    assert_int_equal(rc, 0);
    before = body.len;
    print_message("Big (100 structs, 300 methods): HELLO body %zu bytes with each type described "
                  "once (revision 6); %zu bytes with every signature spelling its types out "
                  "(revision 5, above the %u-byte limit: %s), %.1fx\n",
                  now, before, SHMRPC__WIRE_MAX_HELLO,
                  before > SHMRPC__WIRE_MAX_HELLO ? "refused" : "fits", (double)before / now);
    printf("handshake-bytes big revision6=%zu revision5=%zu\n", now, before);
    assert_true(before > SHMRPC__WIRE_MAX_HELLO);
    assert_true(now * 10 < SHMRPC__WIRE_MAX_HELLO);
    (void)sigs;
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&err);
    shmrpc_arena_free(a);
}

/* A table of n types and m methods, each type's and method's text made by fmt-like
 * callbacks; its strings in a. */
static shmrpc_service_info table_of(shmrpc_arena *a, uint32_t n, uint32_t m,
                                    const char *(*type)(shmrpc_arena *, uint32_t, uint32_t),
                                    const char *(*method)(shmrpc_arena *, uint32_t))
{
    const char **types = shmrpc_arena_alloc_items(a, n, sizeof *types, _Alignof(char *));
    shmrpc_method_info *ms =
        shmrpc_arena_alloc_items(a, m, sizeof *ms, _Alignof(shmrpc_method_info));
    assert_non_null(types);
    assert_non_null(ms);
    for (uint32_t i = 0; i < n; i++)
        assert_non_null(types[i] = type(a, i, n));
    for (uint32_t i = 0; i < m; i++) {
        char *name = shmrpc_arena_alloc(a, 16, 1);
        assert_non_null(name);
        snprintf(name, 16, "m%05u", i);
        ms[i] = (shmrpc_method_info){name, i, SHMRPC_ENC_MSGPACK, 1, method(a, i)};
    }
    return (shmrpc_service_info){.magic = SHMRPC_SERVICE_MAGIC,
                                 .version = SHMRPC_DESCRIPTOR_VERSION,
                                 .name = "S",
                                 .svc_name = "s",
                                 .n_methods = m,
                                 .methods = ms,
                                 .n_types = n,
                                 .types = types};
}

static const char *chain_type(shmrpc_arena *a, uint32_t i, uint32_t n)
{
    char *t = shmrpc_arena_alloc(a, 64, 1);
    if (t && i + 1 < n) snprintf(t, 64, "struct S%05u{struct S%05u? next;}", i, i + 1);
    if (t && i + 1 == n) snprintf(t, 64, "struct S%05u{i64 v;}", i);
    return t;
}

static const char *chain_method(shmrpc_arena *a, uint32_t i)
{
    (void)a, (void)i;
    return "m(struct S00000 x)->i64 @msgpack";
}

/* 1000 fields of i64: a description of about 9 KB. */
static const char *wide_type(shmrpc_arena *a, uint32_t i, uint32_t n)
{
    (void)i, (void)n;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc_buf_appendf(&b, "struct W{");
    for (int f = 0; f < 1000; f++)
        shmrpc_buf_appendf(&b, "i64 f%d;", f);
    shmrpc_buf_appendf(&b, "}");
    char *t = shmrpc_arena_strndup(a, (const char *)b.data, b.len);
    shmrpc_buf_destroy(&b);
    return t;
}

static const char *wide_method(shmrpc_arena *a, uint32_t i)
{
    (void)a, (void)i;
    return "m(struct W w)->i64 @msgpack";
}

/* What a table makes its spelling out cost is bounded (issue 36, bad input): a chain of
 * structs deeper than SHMRPC_MAX_DEPTH is refused, not followed down the stack, and a
 * table whose spelled-out text outgrows a handshake stops at the handshake's bytes. */
static void spelling_is_bounded(void **state)
{
    (void)state;
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    shmrpc_service_info out;
    shmrpc_service_info deep = table_of(a, 20000, 1, chain_type, chain_method);
    int rc = shmrpc__info_spelled(a, &deep, SIZE_MAX, &out, &err);
    assert_int_equal(rc, SHMRPC_EPROTO);
    assert_non_null(
        strstr(shmrpc__msg_get(&err), "the signature of 'm00000' nests types more than 512 deep"));
    shmrpc__msg_clear(&err);
    /* 200 methods of one 9 KB struct: 1.8 MB spelled out, 9 KB described once. */
    shmrpc_service_info wide = table_of(a, 1, 200, wide_type, wide_method);
    rc = shmrpc__info_spelled(a, &wide, SHMRPC__WIRE_MAX_HELLO, &out, &err);
    assert_int_equal(rc, SHMRPC_ETOOBIG);
    assert_non_null(
        strstr(shmrpc__msg_get(&err), "needs more than the 1048576 bytes a handshake carries"));
    shmrpc__msg_clear(&err);
    assert_int_equal(shmrpc__info_spelled(a, &wide, SIZE_MAX, &out, &err), 0);
    assert_true(strlen(out.methods[199].signature) > 8000);
    shmrpc_buf_destroy(&err);
    shmrpc_arena_free(a);
}

static void calls_over(const char *addr)
{
    test_server ts = {&Big_service, &big_handlers, addr, 1, 0, NULL, NULL, NULL};
    pid_t server = test_start_server(&ts);
    assert_true(server > 0);
    int rc;
    shmrpc_client *c = test_connect(&Big_service_info, NULL, addr, &rc);
    if (rc) fail_msg("connect %s: %s: %s", addr, shmrpc_strerror(rc), shmrpc_errmsg());
    const char *compat = shmrpc_client_compat(c);
    assert_string_equal(compat, ""); /* one build: every fingerprint equal */
    big_S7 a7 = {.id = 40, .name = shmrpc_str_c("a")};
    big_S1 r1;
    rc = big_call1(c, &a7, 2, &r1);
    if (rc) fail_msg("call1: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(r1.id, 42);
    assert_true(r1.name.len == 5 && memcmp(r1.name.ptr, "call1", 5) == 0);
    big_S93 a93 = {.id = 7};
    big_S99 r99;
    rc = big_call299(c, &a93, 3, &r99);
    if (rc) fail_msg("call299: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(r99.id, 10);
    /* The dynamic codec reads the same table: the types once, the signatures naming them. */
    shmrpc_dyn *d;
    assert_int_equal(shmrpc_dyn_new(&d, NULL), 0);
    rc = shmrpc_dyn_connect(d, addr);
    if (rc) fail_msg("dyn connect: %s", shmrpc_errmsg());
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    assert_int_equal(shmrpc_dyn_method(d, "call150", &m, &sig), 0);
    shmrpc_client *dc = shmrpc_dyn_client(d);
    const char args[] = "[{\"id\":5,\"name\":\"x\",\"weight\":1.5,\"kind\":\"rich\",\"prev\":[],"
                        "\"half\":null},1]";
    shmrpc_bytes resp;
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    assert_int_equal(shmrpc_dyn_encode_args(sig, args, sizeof args - 1, shmrpc_client_request(dc)),
                     0);
    rc = shmrpc_client_call(dc, m->id, &resp);
    if (rc) fail_msg("dyn call150: %s", shmrpc_errmsg());
    assert_int_equal(shmrpc_dyn_decode_result(sig, resp.ptr, resp.len, &out), 0);
    assert_non_null(strstr((const char *)out.data, "\"id\":6,\"name\":\"call150\""));
    shmrpc_buf_destroy(&out);
    shmrpc_dyn_free(d);
    shmrpc_client_free(c);
    assert_true(test_stop_server(server));
    assert_int_equal(test_shm_segments(addr), 0);
}

/* A client of protocol revision 5 reads no types: a server spells its table out for it,
 * and refuses it with a message that says why when the table then outgrows a handshake
 * (Big's does); Shop's fits, and its client is served as before. */
static void revision_4_clients(void **state)
{
    (void)state;
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    test_server ts = {&Big_service, &big_handlers, addr, 1, 0, NULL, NULL, NULL};
    pid_t server = test_start_server(&ts);
    assert_true(server > 0);
    int rc;
    shmrpc_client *good = test_connect(&Big_service_info, NULL, addr, &rc); /* the server is up */
    assert_int_equal(rc, 0);
    setenv("SHMRPC_TEST_WIRE_PROTO", "5", 1);
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &Big_service_info, NULL), 0);
    unsetenv("SHMRPC_TEST_WIRE_PROTO");
    rc = shmrpc_client_connect(c, addr);
    char msg[400];
    snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    print_message("a client of revision 5: %s: %s\n", shmrpc_strerror(rc), msg);
    assert_int_equal(rc, SHMRPC_ETOOBIG);
    assert_non_null(strstr(msg, "the method table spelled out for a peer of protocol revision 5 "
                                "or less needs more than the 1048576 bytes a handshake carries"));
    shmrpc_client_free(c);
    shmrpc_client_free(good);
    assert_true(test_stop_server(server));

    extern const Shop_handlers shop_handlers;
    test_server ss = {&Shop_service, &shop_handlers, addr, 1, 0, NULL, NULL, NULL};
    server = test_start_server(&ss);
    assert_true(server > 0);
    setenv("SHMRPC_TEST_WIRE_PROTO", "5", 1);
    shmrpc_dyn *d;
    assert_int_equal(shmrpc_dyn_new(&d, NULL), 0);
    unsetenv("SHMRPC_TEST_WIRE_PROTO");
    rc = shmrpc_dyn_connect(d, addr);
    for (int i = 0; i < 500 && rc == SHMRPC_EUNAVAIL; i++) {
        usleep(10000);
        rc = shmrpc_dyn_connect(d, addr);
    }
    if (rc) fail_msg("dyn connect: %s", shmrpc_errmsg());
    const shmrpc_service_info *info = shmrpc_dyn_info(d);
    assert_int_equal(info->n_types, 0); /* spelled out: */
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    assert_int_equal(shmrpc_dyn_method(d, "get", &m, &sig), 0);
    assert_string_equal(m->signature,
                        "get(i64 id)->struct Item{i64 id;string name;string? note;} @msgpack");
    shmrpc_client *dc = shmrpc_dyn_client(d);
    shmrpc_bytes resp;
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    assert_int_equal(shmrpc_dyn_encode_args(sig, "[3]", 3, shmrpc_client_request(dc)), 0);
    assert_int_equal(shmrpc_client_call(dc, m->id, &resp), 0);
    assert_int_equal(shmrpc_dyn_decode_result(sig, resp.ptr, resp.len, &out), 0);
    assert_int_equal(shmrpc_buf_append(&out, "", 1), 0);
    assert_string_equal((const char *)out.data, "{\"id\":3,\"name\":\"item3\",\"note\":null}");
    shmrpc_buf_destroy(&out);
    shmrpc_dyn_free(d);
    assert_true(test_stop_server(server));
}

static void calls_over_shm(void **state)
{
    (void)state;
    char addr[64];
    snprintf(addr, sizeof addr, "shm://big-%d", (int)getpid());
    calls_over(addr);
}

static void calls_over_tcp(void **state)
{
    (void)state;
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    calls_over(addr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(handshake_bytes),    cmocka_unit_test(spelling_is_bounded),
        cmocka_unit_test(calls_over_shm),     cmocka_unit_test(calls_over_tcp),
        cmocka_unit_test(revision_4_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
