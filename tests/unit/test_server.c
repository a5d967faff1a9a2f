/* SPDX-License-Identifier: MIT */
/* The server: registering descriptors (and refusing broken ones with a message that
 * names the problem), listening, the call context, and dispatch. */
#include <string.h>

#include <msgpack.h>

#include "calc_service.h"
#include "unit.h"

static shmrpc_server *new_server(size_t max_msg)
{
    shmrpc_server_opts o;
    shmrpc_server_opts_init(&o);
    assert_int_equal(o.max_msg_bytes, SHMRPC_DEFAULT_MAX_MSG);
    if (max_msg) o.max_msg_bytes = max_msg;
    shmrpc_server *s;
    assert_int_equal(shmrpc_server_new(&s, &o), 0);
    return s;
}

static void register_ok(void **state)
{
    (void)state;
    shmrpc_server *s = new_server(0);
    assert_int_equal(shmrpc_server_register(s, &calc_service, &calc_default_handlers, NULL), 0);
    assert_string_equal(shmrpc_errmsg(), "");
    /* One service per server. */
    assert_int_equal(shmrpc_server_register(s, &calc_service, &calc_default_handlers, NULL),
                     SHMRPC_EBUSY);
    assert_string_equal(shmrpc_errmsg(),
                        "service 'Calc' is already registered; a server serves one service");
    /* Before the server listens, setting its worker count (only within 1 to
     * SHMRPC_MAX_WORKERS) and stopping it have no listener to tell, and are safe. */
    assert_int_equal(shmrpc_server_set_workers(s, 2), 0);
    assert_int_equal(shmrpc_server_set_workers(s, 0), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_server_set_workers(s, SHMRPC_MAX_WORKERS + 1), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_server_set_workers(NULL, 1), SHMRPC_EINVAL);
    shmrpc_server_stop(s);
    shmrpc_server_stop(NULL);
    shmrpc_server_free(s);
    shmrpc_server_free(NULL);
    assert_int_equal(shmrpc_server_new(&s, NULL), 0); /* default opts */
    shmrpc_server_free(s);
}

static void missing_handlers_are_named(void **state)
{
    (void)state;
    shmrpc_server *s = new_server(0);
    calc_handlers h = calc_default_handlers;
    h.fail = NULL;
    assert_int_equal(shmrpc_server_register(s, &calc_service, &h, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "service 'Calc': no handler for method 'fail'");
    h.add = NULL;
    h.positive = NULL;
    assert_int_equal(shmrpc_server_register(s, &calc_service, &h, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(),
                        "service 'Calc': no handlers for methods 'add', 'fail', 'positive'");
    assert_int_equal(shmrpc_server_register(s, &calc_service, NULL, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "service 'Calc': no handler table");
    /* A failed register leaves the server free for a good one. */
    assert_int_equal(shmrpc_server_register(s, &calc_service, &calc_default_handlers, NULL), 0);
    shmrpc_server_free(s);
}

static void bad_descriptors(void **state)
{
    (void)state;
    shmrpc_server *s = new_server(0);
    shmrpc_service svc = calc_service;
    svc.magic = 0x12345678;
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "bad magic"));
    svc = calc_service;
    svc.version = 1; /* before the table of types (issue 36) */
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL),
                     SHMRPC_EVERSION);
    assert_non_null(strstr(shmrpc_errmsg(), "regenerate"));

    shmrpc_service_info info = calc_service_info;
    svc = calc_service;
    svc.info = &info;
    info.magic = 0;
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL), SHMRPC_EINVAL);
    info = calc_service_info;
    info.version = 99;
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL),
                     SHMRPC_EVERSION);
    assert_string_equal(shmrpc_errmsg(),
                        "service 'Calc' has descriptor version 99; this runtime reads version 2 "
                        "(regenerate it)");

    /* Unsorted, duplicate, misnumbered. */
    shmrpc_method_info m[CALC_N];
    memcpy(m, calc_methods, sizeof m);
    info = calc_service_info;
    info.methods = m;
    m[0].name = "zzz";
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(),
                        "service 'Calc': method table is not sorted by name ('zzz' before 'big')");
    memcpy(m, calc_methods, sizeof m);
    m[1].name = "add";
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL), SHMRPC_EINVAL);
    memcpy(m, calc_methods, sizeof m);
    m[2].id = 7;
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "service 'Calc': method 'echo' has id 7 at index 2");
    memcpy(m, calc_methods, sizeof m);
    m[3].signature = NULL;
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL), SHMRPC_EINVAL);
    memcpy(m, calc_methods, sizeof m);
    m[3].encoding = (shmrpc_encoding)9;
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL), SHMRPC_EINVAL);

    /* Handler offsets outside the table. */
    size_t offsets[CALC_N] = {0, 8, 16, 24, 4096};
    svc = calc_service;
    svc.handler_offset = offsets;
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "'positive' lies outside the handler table"));
    /* One that ends inside the table: its pointer would cross the end. */
    offsets[4] = sizeof calc_default_handlers - 1;
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "'positive' lies outside the handler table"));
    svc = calc_service;
    svc.invoke = NULL;
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "service 'Calc': no invoke or handler offset table");
    svc = calc_service;
    svc.handler_offset = NULL;
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "service 'Calc': no invoke or handler offset table");
    shmrpc_invoke_fn invoke[CALC_N];
    memcpy(invoke, calc_service.invoke, sizeof invoke);
    invoke[2] = NULL;
    svc = calc_service;
    svc.invoke = invoke;
    assert_int_equal(shmrpc_server_register(s, &svc, &calc_default_handlers, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "service 'Calc': no invoke function for method 'echo'");
    assert_int_equal(shmrpc_server_register(s, NULL, &calc_default_handlers, NULL), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_server_register(NULL, &calc_service, &calc_default_handlers, NULL),
                     SHMRPC_EINVAL);
    shmrpc_server_free(s);
}

static void empty_service(void **state)
{
    (void)state;
    static const shmrpc_service_info info = {
        .magic = SHMRPC_SERVICE_MAGIC, .version = SHMRPC_DESCRIPTOR_VERSION, .name = "Empty"};
    static const shmrpc_service svc = {
        .magic = SHMRPC_SERVICE_MAGIC, .version = SHMRPC_DESCRIPTOR_VERSION, .info = &info};
    shmrpc_server *s = new_server(0);
    assert_int_equal(shmrpc_server_register(s, &svc, NULL, NULL), 0);
    shmrpc_server_free(s);
}

static void listen_checks(void **state)
{
    (void)state;
    shmrpc_server *s = new_server(0);
    assert_int_equal(shmrpc_server_listen(s, "inproc://x"), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "register a service before listening");
    assert_int_equal(shmrpc_server_register(s, &calc_service, &calc_default_handlers, NULL), 0);
    static const struct {
        const char *addr, *msg;
    } bad[] = {
        {"calc", "malformed address 'calc': expected SCHEME://WHERE, e.g. inproc://echo"},
        {"://calc", "malformed address '://calc': expected SCHEME://WHERE, e.g. inproc://echo"},
        {"IN PROC://x", "malformed address 'IN PROC://x': expected SCHEME://WHERE, e.g. "
                        "inproc://echo"},
        {"udp://calc", "unknown transport 'udp' in address 'udp://calc'"},
        {"udp://127.0.0.1:5555", "unknown transport 'udp' in address 'udp://127.0.0.1:5555'"},
        {"udp://x", "unknown transport 'udp' in address 'udp://x'"},
        {"inprocx://x", "unknown transport 'inprocx' in address 'inprocx://x'"},
        {"inproc://", "malformed address 'inproc://': the name must be 1 to 255 printable "
                      "characters without spaces"},
        {"inproc://a b", "malformed address 'inproc://a b': the name must be 1 to 255 printable "
                         "characters without spaces"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        assert_int_equal(shmrpc_server_listen(s, bad[k].addr), SHMRPC_EINVAL);
        assert_string_equal(shmrpc_errmsg(), bad[k].msg);
    }
    assert_int_equal(shmrpc_server_listen(s, NULL), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_server_listen(s, "inproc://server-test"), 0);
    assert_string_equal(shmrpc_errmsg(), "");
    assert_int_equal(shmrpc_server_listen(s, "inproc://other"), SHMRPC_EBUSY);
    shmrpc_server_free(s);
}

/* --- dispatch, through the internal API every transport uses --- */

typedef struct fixture {
    shmrpc_server *s;
    shmrpc_ctx ctx;
    shmrpc_buf req, resp;
    unsigned long calls;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    shmrpc_server_opts o;
    shmrpc_server_opts_init(&o);
    o.max_msg_bytes = 1000;
    if (shmrpc_server_new(&f->s, &o)) return -1;
    if (shmrpc_server_register(f->s, &calc_service, &calc_default_handlers, &f->calls)) return -1;
    if (shmrpc__ctx_init(&f->ctx, f->s)) return -1;
    shmrpc_buf_init(&f->req);
    shmrpc_buf_init(&f->resp);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    shmrpc__ctx_destroy(&f->ctx);
    shmrpc_buf_destroy(&f->req);
    shmrpc_buf_destroy(&f->resp);
    shmrpc_server_free(f->s);
    free(f);
    return 0;
}

static shmrpc_bytes req_bytes(const fixture *f)
{
    return shmrpc_bytes_of(f->req.data ? f->req.data : (const uint8_t *)"", f->req.len);
}

static int dispatch_add(fixture *f, int64_t a, int64_t b, int64_t *sum)
{
    shmrpc_buf_clear(&f->req);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f->req, shmrpc_buf_msgpack_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int64(&pk, a);
    msgpack_pack_int64(&pk, b);
    int rc = shmrpc__dispatch(f->s, &f->ctx, CALC_ADD, req_bytes(f), &f->resp);
    if (rc) return rc;
    shmrpc_mp_reader r;
    shmrpc_mp_reader_init(&r, f->resp.data, f->resp.len);
    assert_int_equal(shmrpc_mp_read_int(&r, INT64_MIN, INT64_MAX, sum), 0);
    assert_int_equal(shmrpc_mp_finish(&r), 0);
    return 0;
}

static void dispatch_calls_the_handler(void **state)
{
    fixture *f = *state;
    int64_t sum;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(dispatch_add(f, 40, i, &sum), 0);
        assert_int_equal(sum, 40 + i);
        /* The call's arena is reset once the call is done. */
        assert_int_equal(shmrpc_arena_used(shmrpc_ctx_arena(&f->ctx)), 0);
    }
    assert_int_equal(f->calls, 100);
    assert_ptr_equal(shmrpc_ctx_user(&f->ctx), &f->calls);
    assert_int_equal(dispatch_add(f, INT64_MAX, 1, &sum), SHMRPC_EHANDLER);
    assert_string_equal(shmrpc__ctx_msg(&f->ctx), "9223372036854775807 + 1 overflows");
}

static void dispatch_failures(void **state)
{
    fixture *f = *state;
    shmrpc_buf_clear(&f->req);
    assert_int_equal(shmrpc__dispatch(f->s, &f->ctx, CALC_N, req_bytes(f), &f->resp),
                     SHMRPC_ENOENT);
    assert_string_equal(shmrpc__ctx_msg(&f->ctx), "no method with id 5");
    assert_int_equal(shmrpc__dispatch(f->s, &f->ctx, UINT32_MAX - 1, req_bytes(f), &f->resp),
                     SHMRPC_ENOENT);
    /* The top id is the built-in health method, answered without a handler. */
    assert_int_equal(
        shmrpc__dispatch(f->s, &f->ctx, SHMRPC_HEALTH_METHOD_ID, req_bytes(f), &f->resp), 0);
    assert_int_equal(f->resp.len, 1);
    assert_int_equal(f->resp.data[0], SHMRPC_HEALTH_SERVING);

    assert_int_equal(shmrpc__dispatch(f->s, &f->ctx, CALC_FAIL, req_bytes(f), &f->resp),
                     SHMRPC_EHANDLER);
    assert_string_equal(shmrpc__ctx_msg(&f->ctx), "boom 7");
    /* The context names the method it ran (one invoke function may serve several). */
    assert_int_equal(shmrpc_ctx_method(&f->ctx), CALC_FAIL);

    assert_int_equal(shmrpc__dispatch(f->s, &f->ctx, CALC_POSITIVE, req_bytes(f), &f->resp),
                     SHMRPC_EHANDLER);
    assert_string_equal(shmrpc__ctx_msg(&f->ctx),
                        "the handler of 'positive' returned 3, which is not a status");

    /* A request above the server's maximum never reaches the handler. */
    char big[1001] = {0};
    assert_int_equal(
        shmrpc__dispatch(f->s, &f->ctx, CALC_ECHO, shmrpc_bytes_of(big, 1001), &f->resp),
        SHMRPC_ETOOBIG);
    assert_string_equal(shmrpc__ctx_msg(&f->ctx),
                        "a request of 1001 bytes is larger than the server's maximum of 1000 "
                        "bytes");
    assert_int_equal(
        shmrpc__dispatch(f->s, &f->ctx, CALC_ECHO, shmrpc_bytes_of(big, 1000), &f->resp), 0);
    assert_int_equal(f->resp.len, 1000);

    /* So does a response. */
    shmrpc_buf_clear(&f->req);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f->req, shmrpc_buf_msgpack_write);
    msgpack_pack_uint64(&pk, 5000);
    assert_int_equal(shmrpc__dispatch(f->s, &f->ctx, CALC_BIG, req_bytes(f), &f->resp),
                     SHMRPC_ETOOBIG);
    assert_string_equal(shmrpc__ctx_msg(&f->ctx),
                        "the result of 'big' is larger than the server's maximum of 1000 bytes");

    /* A body that does not decode: the decoder's message names the argument. */
    shmrpc_buf_clear(&f->req);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_str_with_body(&pk, "x", 1);
    msgpack_pack_int(&pk, 1);
    assert_int_equal(shmrpc__dispatch(f->s, &f->ctx, CALC_ADD, req_bytes(f), &f->resp),
                     SHMRPC_EINVAL);
    assert_string_equal(shmrpc__ctx_msg(&f->ctx),
                        "Calc.add: argument 'a': expected integer, got string");
    shmrpc_buf_clear(&f->req);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 1);
    assert_int_equal(shmrpc__dispatch(f->s, &f->ctx, CALC_ADD, req_bytes(f), &f->resp),
                     SHMRPC_EINVAL);
    assert_string_equal(shmrpc__ctx_msg(&f->ctx),
                        "Calc.add: arguments: count larger than the bytes left");

    /* A success clears the message of the failure before it. */
    int64_t sum;
    assert_int_equal(dispatch_add(f, 1, 2, &sum), 0);
    assert_string_equal(shmrpc__ctx_msg(&f->ctx), "");
}

/* The call context's API refuses what it cannot serve: no context or no place for the
 * pointer, a loan with no call being served; a server without a service answers the
 * health method "not serving" and every other id "no service registered"; a draining one
 * answers "draining". */
static void context_outside_a_call(void **state)
{
    fixture *f = *state;
    void *p = &p;
    assert_int_equal(shmrpc_ctx_loan(NULL, 8, &p), SHMRPC_EINVAL);
    assert_null(p);
    assert_int_equal(shmrpc_ctx_loan(&f->ctx, 8, NULL), SHMRPC_EINVAL);
    p = &p;
    assert_int_equal(shmrpc_ctx_loan(&f->ctx, 8, &p), SHMRPC_EINVAL);
    assert_null(p);
    assert_string_equal(shmrpc__ctx_msg(&f->ctx), "no call is being served");
    assert_int_equal(shmrpc_ctx_decode_error(NULL, "Calc.add", "argument", "a", "bad"),
                     SHMRPC_EINVAL);

    f->ctx.draining = true;
    assert_int_equal(
        shmrpc__dispatch(f->s, &f->ctx, SHMRPC_HEALTH_METHOD_ID, req_bytes(f), &f->resp), 0);
    assert_int_equal(f->resp.len, 1);
    assert_int_equal(f->resp.data[0], SHMRPC_HEALTH_DRAINING);
    f->ctx.draining = false;

    shmrpc_server *bare = new_server(0);
    shmrpc_ctx ctx;
    assert_int_equal(shmrpc__ctx_init(&ctx, bare), 0);
    assert_int_equal(shmrpc__dispatch(bare, &ctx, SHMRPC_HEALTH_METHOD_ID, req_bytes(f), &f->resp),
                     0);
    assert_int_equal(f->resp.len, 1);
    assert_int_equal(f->resp.data[0], SHMRPC_HEALTH_NOT_SERVING);
    assert_int_equal(shmrpc__dispatch(bare, &ctx, 0, req_bytes(f), &f->resp), SHMRPC_ENOENT);
    assert_string_equal(shmrpc__ctx_msg(&ctx), "no service registered");
    shmrpc__ctx_destroy(&ctx);
    shmrpc_server_free(bare);
}

static int h_status_only(shmrpc_ctx *ctx)
{
    (void)ctx;
    return SHMRPC_ENOENT;
}

static int h_not_a_status(shmrpc_ctx *ctx)
{
    (void)ctx;
    return -100;
}

/* A negative number that is no status of status.h is the handler's mistake too: the
 * client must not receive a code it cannot name. */
static void unknown_negative_status(void **state)
{
    (void)state;
    shmrpc_server *s = new_server(0);
    calc_handlers h = calc_default_handlers;
    h.positive = h_not_a_status;
    assert_int_equal(shmrpc_server_register(s, &calc_service, &h, NULL), 0);
    shmrpc_ctx ctx;
    assert_int_equal(shmrpc__ctx_init(&ctx, s), 0);
    shmrpc_buf resp;
    shmrpc_buf_init(&resp);
    assert_int_equal(shmrpc__dispatch(s, &ctx, CALC_POSITIVE, shmrpc_bytes_of("", 0), &resp),
                     SHMRPC_EHANDLER);
    assert_string_equal(shmrpc__ctx_msg(&ctx),
                        "the handler of 'positive' returned -100, which is not a status");
    shmrpc_buf_destroy(&resp);
    shmrpc__ctx_destroy(&ctx);
    shmrpc_server_free(s);
}

static void handler_table_is_copied(void **state)
{
    (void)state;
    shmrpc_server *s = new_server(0);
    calc_handlers h = calc_default_handlers;
    h.fail = h_status_only;
    assert_int_equal(shmrpc_server_register(s, &calc_service, &h, NULL), 0);
    h.fail = NULL; /* the server kept its own copy */
    shmrpc_ctx ctx;
    assert_int_equal(shmrpc__ctx_init(&ctx, s), 0);
    shmrpc_buf resp;
    shmrpc_buf_init(&resp);
    /* A status without a message gets shmrpc_strerror's text. */
    assert_int_equal(shmrpc__dispatch(s, &ctx, CALC_FAIL, shmrpc_bytes_of("", 0), &resp),
                     SHMRPC_ENOENT);
    assert_string_equal(shmrpc__ctx_msg(&ctx), shmrpc_strerror(SHMRPC_ENOENT));
    shmrpc_buf_destroy(&resp);
    shmrpc__ctx_destroy(&ctx);
    shmrpc_server_free(s);
}

static void decode_error_format(void **state)
{
    fixture *f = *state;
    shmrpc_ctx *ctx = &f->ctx;
    assert_int_equal(shmrpc_ctx_decode_error(ctx, "Echo.add", "argument 'a'", NULL,
                                             "expected integer, got string"),
                     SHMRPC_EINVAL);
    assert_string_equal(shmrpc__ctx_msg(ctx),
                        "Echo.add: argument 'a': expected integer, got string");
    shmrpc_ctx_decode_error(ctx, "Echo.centroid", "argument 'points'", "Point.label",
                            "expected string, got integer");
    assert_string_equal(shmrpc__ctx_msg(ctx), "Echo.centroid: argument 'points', field "
                                              "'Point.label': expected string, got integer");
    shmrpc_ctx_decode_error(ctx, "Echo.centroid", "result", NULL, "truncated");
    assert_string_equal(shmrpc__ctx_msg(ctx), "Echo.centroid: result: truncated");
    shmrpc_ctx_decode_error(ctx, NULL, NULL, NULL, NULL);
    assert_string_equal(shmrpc__ctx_msg(ctx), "invalid");
    /* Long messages are cut to the ctx's buffer, not overflowed. */
    char longname[600];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    shmrpc_ctx_decode_error(ctx, longname, "result", longname, "why");
    assert_int_equal(strlen(shmrpc__ctx_msg(ctx)), SHMRPC__CTX_MSG_CAP - 1);
    assert_int_equal(shmrpc_ctx_error(ctx, SHMRPC_EPERM, "%s", longname), SHMRPC_EPERM);
    assert_int_equal(strlen(shmrpc__ctx_msg(ctx)), SHMRPC__CTX_MSG_CAP - 1);
    assert_int_equal(shmrpc_ctx_error(NULL, SHMRPC_EPERM, "x"), SHMRPC_EPERM);
    assert_null(shmrpc_ctx_arena(NULL));
    assert_null(shmrpc_ctx_user(NULL));
    assert_int_equal(shmrpc_ctx_method(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(register_ok),
        cmocka_unit_test(missing_handlers_are_named),
        cmocka_unit_test(bad_descriptors),
        cmocka_unit_test(empty_service),
        cmocka_unit_test(listen_checks),
        cmocka_unit_test_setup_teardown(dispatch_calls_the_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(dispatch_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(context_outside_a_call, setup, teardown),
        cmocka_unit_test(handler_table_is_copied),
        cmocka_unit_test(unknown_negative_status),
        cmocka_unit_test_setup_teardown(decode_error_format, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
