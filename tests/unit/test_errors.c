/* SPDX-License-Identifier: MIT */
/* The one error rule of the public API (shmrpc/status.h, docs/errors.md): a failed call
 * returns a negative status and leaves why on the calling thread, in shmrpc_errmsg(),
 * for each kind of function: a call on a handle, a call that fails before its handle
 * exists, the lock, and the calls that take no handle (statistics, the secret). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "calc_service.h"
#include "unit.h"

static char lock_name[64];

static int setup(void **state)
{
    (void)state;
    snprintf(lock_name, sizeof lock_name, "errors-test-%d", (int)getpid());
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    shmrpc_lock_unlink(lock_name); /* the segment goes even when a case failed */
    return 0;
}

static bool has(const char *text, const char *part)
{
    if (strstr(text, part)) return true;
    print_error("'%s' does not contain '%s'\n", text, part);
    return false;
}

/* A handle's call: the handler's message reaches the calling thread; so does a failure
 * of the client's own (no connection), and a failure with nothing to add reads as its
 * status's text. */
static void handle_call_failure(void **state)
{
    (void)state;
    shmrpc_server *s;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &calc_service, &calc_default_handlers, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s, "inproc://errors-test"), 0);
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &calc_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(c, "inproc://errors-test"), 0);
    assert_string_equal(shmrpc_errmsg(), "");

    assert_int_equal(calc_fail(c), SHMRPC_EHANDLER);
    assert_string_equal(shmrpc_errmsg(), "boom 7");
    int64_t sum;
    assert_int_equal(calc_add(c, 1, 2, &sum), 0);
    assert_string_equal(shmrpc_errmsg(), ""); /* a call clears what an older one left */

    /* Register and listen on a handle: the same place. */
    assert_int_equal(shmrpc_server_listen(s, "inproc://other"), SHMRPC_EBUSY);
    assert_string_equal(shmrpc_errmsg(), "the server is already listening");
    shmrpc_client_free(c);
    shmrpc_server_free(s);

    assert_int_equal(shmrpc_client_new(&c, &calc_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(c, "inproc://errors-test"), SHMRPC_EUNAVAIL);
    assert_string_equal(shmrpc_errmsg(), "no server at inproc://errors-test");
    assert_int_equal(calc_add(c, 1, 2, &sum), SHMRPC_ECLOSED);
    assert_string_equal(shmrpc_errmsg(), "not connected");
    shmrpc_client_free(c);
}

/* An inproc:// handler runs on the caller's thread: a call of its own that fails is not
 * the failure of the call that ran it, which succeeds and leaves no message. */
static int add_after_a_failure(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *sum)
{
    (void)ctx;
    if (shmrpc_lock_acquire(NULL, 0) != SHMRPC_EINVAL) return SHMRPC_EPROTO;
    *sum = a + b;
    return 0;
}

static void handler_failures_stay_in_the_handler(void **state)
{
    (void)state;
    calc_handlers h = calc_default_handlers;
    h.add = add_after_a_failure;
    shmrpc_server *s;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &calc_service, &h, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s, "inproc://errors-nested"), 0);
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &calc_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(c, "inproc://errors-nested"), 0);
    int64_t sum = 0;
    assert_int_equal(calc_add(c, 40, 2, &sum), 0);
    assert_int_equal(sum, 42);
    assert_string_equal(shmrpc_errmsg(), "");
    shmrpc_client_free(c);
    shmrpc_server_free(s);
}

/* Opening fails before a handle exists, and the message says why all the same (before,
 * a client's or a server's message lived in a handle that a failed open never made). */
static void open_failure_before_a_handle(void **state)
{
    (void)state;
    shmrpc_service_info info = calc_service_info;
    info.magic = 1;
    shmrpc_client *c = (shmrpc_client *)&info; /* not left dangling */
    assert_int_equal(shmrpc_client_new(&c, &info, NULL), SHMRPC_EINVAL);
    assert_null(c);
    assert_true(has(shmrpc_errmsg(), "magic"));

    shmrpc_client_opts co;
    shmrpc_client_opts_init(&co);
    co.tcp.secret = "short";
    co.tcp.secret_len = 5; /* below SHMRPC_SECRET_MIN */
    assert_int_equal(shmrpc_client_new(&c, &calc_service_info, &co), SHMRPC_EINVAL);
    assert_null(c);
    assert_true(has(shmrpc_errmsg(), "tcp settings out of range"));

    shmrpc_server_opts so;
    shmrpc_server_opts_init(&so);
    so.tcp.secret = "short";
    so.tcp.secret_len = 5;
    shmrpc_server *s = (shmrpc_server *)&so;
    assert_int_equal(shmrpc_server_new(&s, &so), SHMRPC_EINVAL);
    assert_null(s);
    assert_true(has(shmrpc_errmsg(), "tcp settings out of range"));

    shmrpc_lock_opts lo;
    shmrpc_lock_opts_init(&lo);
    lo.mode = SHMRPC_LOCK_CONNECT_TO_EXISTING;
    shmrpc_lock *l = (shmrpc_lock *)&lo;
    assert_int_equal(shmrpc_lock_open(&l, lock_name, &lo), SHMRPC_ENOENT);
    assert_null(l);
    assert_true(has(shmrpc_errmsg(), lock_name));
}

/* The lock: every failure says its own why, never the one of an older failure (before,
 * a failure without a message of its own left the last one's in place). */
static void lock_failures_are_their_own(void **state)
{
    (void)state;
    shmrpc_lock *l;
    assert_int_equal(shmrpc_lock_open(&l, "bad name!", NULL), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "outside [A-Za-z0-9_.-]"));
    assert_int_equal(shmrpc_lock_acquire(NULL, 0), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no lock");

    assert_int_equal(shmrpc_lock_open(&l, lock_name, NULL), 0);
    assert_int_equal(shmrpc_lock_release(l), SHMRPC_EPERM);
    assert_true(has(shmrpc_errmsg(), "is not held"));
    assert_int_equal(shmrpc_lock_acquire(l, 0), 0);
    assert_int_equal(shmrpc_lock_acquire(l, 0), SHMRPC_EBUSY);
    assert_true(has(shmrpc_errmsg(), "already held by this thread"));
    pid_t owner = 0;
    assert_int_equal(shmrpc_lock_owner(l, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no place for the owner");
    assert_int_equal(shmrpc_lock_owner(l, &owner), 0);
    assert_int_equal(shmrpc_lock_release(l), 0);
    shmrpc_lock_close(l);
    assert_int_equal(shmrpc_lock_unlink(lock_name), 0);
    assert_int_equal(shmrpc_lock_unlink(lock_name), SHMRPC_ENOENT);
    assert_true(has(shmrpc_errmsg(), "no lock"));
}

/* The calls without a handle: statistics and the shared secret. */
static void calls_without_a_handle(void **state)
{
    (void)state;
    shmrpc_stats *st = NULL;
    assert_int_equal(shmrpc_stats_read("shm://errors-test-nobody", &st), SHMRPC_EUNAVAIL);
    assert_string_equal(shmrpc_errmsg(),
                        "no statistics at shm://errors-test-nobody: no server keeps any there");
    assert_int_equal(shmrpc_stats_read("nowhere", &st), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "'nowhere'"));

    char path[64];
    snprintf(path, sizeof path, "/tmp/shmrpc-errors-test-%d-absent", (int)getpid());
    unsigned char secret[SHMRPC_SECRET_MAX];
    size_t len;
    assert_int_equal(shmrpc_secret_load(path, secret, sizeof secret, &len), SHMRPC_ESYS(ENOENT));
    assert_true(has(shmrpc_errmsg(), path));
}

/* The async-signal-safe calls leave the message alone: a signal handler must not
 * overwrite the message of the code it interrupted. */
static void signal_safe_calls_leave_the_message(void **state)
{
    (void)state;
    shmrpc_stats *st = NULL;
    assert_int_equal(shmrpc_stats_read("shm://errors-test-nobody", &st), SHMRPC_EUNAVAIL);
    char before[200];
    snprintf(before, sizeof before, "%s", shmrpc_errmsg());
    assert_int_equal(shmrpc_server_set_workers(NULL, 1), SHMRPC_EINVAL);
    shmrpc_server_stop(NULL);
    assert_string_equal(shmrpc_errmsg(), before);
}

/* Each thread has its own message; a thread's message is freed when it ends (the
 * sanitizer build's leak check sees it). */
struct other {
    char msg[256];
    int rc;
};

static void *fail_elsewhere(void *arg)
{
    struct other *o = arg;
    shmrpc_server *s;
    o->rc = shmrpc_server_new(&s, NULL);
    if (o->rc) return NULL;
    calc_handlers none = {0};
    o->rc = shmrpc_server_register(s, &calc_service, &none, NULL);
    snprintf(o->msg, sizeof o->msg, "%s", shmrpc_errmsg());
    shmrpc_server_free(s);
    return NULL;
}

static void messages_belong_to_threads(void **state)
{
    (void)state;
    shmrpc_lock *l;
    assert_int_equal(shmrpc_lock_open(&l, "", NULL), SHMRPC_EINVAL);
    char mine[200];
    snprintf(mine, sizeof mine, "%s", shmrpc_errmsg());
    for (int i = 0; i < 4; i++) {
        struct other o = {.rc = 1};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, fail_elsewhere, &o), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(o.rc, SHMRPC_EINVAL);
        assert_string_equal(o.msg, "service 'Calc': no handlers for methods 'add', 'big', "
                                   "'echo', 'fail', 'positive'");
    }
    assert_string_equal(shmrpc_errmsg(), mine);
}

/* A NULL where a handle or a place for the answer belongs is refused with SHMRPC_EINVAL and
 * a message that names what is missing, and the answer's place, when there is one, is left
 * empty: nothing is written through a pointer the caller did not give, and nothing crashes. */
static void missing_arguments_refused(void **state)
{
    (void)state;
    assert_int_equal(shmrpc_client_new(NULL, &calc_service_info, NULL), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "out is NULL"));
    assert_int_equal(shmrpc_server_new(NULL, NULL), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "out is NULL"));

    shmrpc_bytes resp = shmrpc_bytes_of("x", 1);
    assert_int_equal(shmrpc_client_call(NULL, 0, &resp), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "no client"));
    assert_int_equal(shmrpc_client_connect(NULL, "inproc://x"), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "no client"));
    void *ptr = &resp;
    assert_int_equal(shmrpc_client_loan(NULL, 0, 8, &ptr), SHMRPC_EINVAL);
    assert_null(ptr);
    assert_int_equal(shmrpc_client_call_loaned(NULL, 8, &resp), SHMRPC_EINVAL);
    assert_int_equal(resp.len, 0);
    shmrpc_health h = SHMRPC_HEALTH_SERVING;
    assert_int_equal(shmrpc_client_health(NULL, &h), SHMRPC_EINVAL);
    assert_int_equal(h, 0);
    shmrpc_call *call = (shmrpc_call *)&resp;
    assert_int_equal(shmrpc_client_start(NULL, 0, 100, &call), SHMRPC_EINVAL);
    assert_null(call);
    size_t which = 7;
    assert_int_equal(shmrpc_client_wait(NULL, &call, 1, 100, &which), SHMRPC_EINVAL);
    assert_int_equal(which, 0);
    assert_true(has(shmrpc_errmsg(), "no client, no calls or no place for which"));
    assert_int_equal(shmrpc_call_status(NULL), SHMRPC_EINVAL);
    resp = shmrpc_bytes_of("x", 1);
    assert_int_equal(shmrpc_call_result(NULL, &resp), SHMRPC_EINVAL);
    assert_int_equal(resp.len, 0);
    assert_true(has(shmrpc_errmsg(), "no call"));
    assert_int_equal(shmrpc_client_finish(NULL, NULL, &resp), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "no client or no call"));
    assert_null(shmrpc_client_request(NULL));
    assert_null(shmrpc_client_arena(NULL));
    assert_null(shmrpc_client_server_info(NULL));
    shmrpc_call_free(NULL);
    shmrpc_client_free(NULL);

    assert_int_equal(shmrpc_server_register(NULL, &calc_service, &calc_default_handlers, NULL),
                     SHMRPC_EINVAL);
    assert_int_equal(shmrpc_server_listen(NULL, "inproc://x"), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "no server"));
    assert_int_equal(shmrpc_server_serve(NULL, 1), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "no server"));
    assert_int_equal(shmrpc_server_set_in_place(NULL, 0, 1), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "no server"));
    shmrpc_server_free(NULL);

    /* The names of the health states, and of one that is not. */
    assert_string_equal(shmrpc_health_name(SHMRPC_HEALTH_SERVING), "serving");
    assert_string_equal(shmrpc_health_name(SHMRPC_HEALTH_NOT_SERVING), "not_serving");
    assert_string_equal(shmrpc_health_name(SHMRPC_HEALTH_DRAINING), "draining");
    assert_string_equal(shmrpc_health_name(0), "unknown");
    assert_string_equal(shmrpc_health_name(99), "unknown");
}

/* Handles used out of order: a client not connected, a server not listening or with no
 * service, a negative count of workers; each refused with why, and the handle still usable. */
static void calls_out_of_order_refused(void **state)
{
    (void)state;
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &calc_service_info, NULL), 0);
    void *ptr = c;
    assert_int_equal(shmrpc_client_loan(c, 0, 8, &ptr), SHMRPC_ECLOSED);
    assert_null(ptr);
    assert_true(has(shmrpc_errmsg(), "not connected"));
    shmrpc_bytes resp = shmrpc_bytes_of("x", 1);
    assert_int_equal(shmrpc_client_call_loaned(c, 8, &resp), SHMRPC_EINVAL);
    assert_int_equal(resp.len, 0);
    assert_true(has(shmrpc_errmsg(), "no loan to send"));
    shmrpc_health h;
    assert_int_equal(shmrpc_client_health(c, &h), SHMRPC_ECLOSED);
    assert_true(has(shmrpc_errmsg(), "not connected"));
    assert_int_equal(shmrpc_client_health(c, NULL), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "no place for the state"));
    assert_null(shmrpc_client_server_info(c));

    shmrpc_server *s;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_set_in_place(s, 0, 1), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "register a service first"));
    assert_int_equal(shmrpc_server_serve(s, 1), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "listen before serving"));
    assert_int_equal(shmrpc_server_serve(s, -1), SHMRPC_EINVAL);
    assert_true(has(shmrpc_errmsg(), "a negative count of workers (-1)"));

    /* Both still work: registered, listening and connected, a call is answered. */
    char addr[64];
    snprintf(addr, sizeof addr, "inproc://errors-order-%d", (int)getpid());
    assert_int_equal(shmrpc_server_register(s, &calc_service, &calc_default_handlers, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s, addr), 0);
    assert_int_equal(shmrpc_client_connect(c, addr), 0);
    assert_int_equal(shmrpc_client_health(c, &h), 0);
    assert_int_equal(h, SHMRPC_HEALTH_SERVING);
    assert_non_null(shmrpc_client_server_info(c));
    shmrpc_client_free(c);
    shmrpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(handle_call_failure),
        cmocka_unit_test(handler_failures_stay_in_the_handler),
        cmocka_unit_test(open_failure_before_a_handle),
        cmocka_unit_test(lock_failures_are_their_own),
        cmocka_unit_test(calls_without_a_handle),
        cmocka_unit_test(signal_safe_calls_leave_the_message),
        cmocka_unit_test(messages_belong_to_threads),
        cmocka_unit_test(missing_arguments_refused),
        cmocka_unit_test(calls_out_of_order_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
