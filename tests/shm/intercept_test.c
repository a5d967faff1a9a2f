/* SPDX-License-Identifier: MIT */
/* Interceptors (shmrpc/intercept.h, issue 36) on a client and a server over inproc://, shm://
 * and tcp://: the order they compose in (befores in registration order, afters the other
 * way, the client's around the server's), a refusal by a client's before (the call is not
 * sent: no handler runs), by a server's before (the client gets its status and message), an
 * after that sees the handler's status and one that replaces it, started calls. Servers of
 * shm:// and tcp:// are real processes with a forked worker; every hook writes into one log
 * mapped shared before any fork, so the test reads the whole onion in order. Every wait is
 * bounded and every process reaped, even when a check fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls.h"
#include "procs.h"

/* What the hooks and handlers of every process write, in the order they run. */
typedef struct shared {
    char log[256];    /* a letter per hook and 'h' per handler run */
    _Atomic int n;    /* letters in log */
    int32_t seen[32]; /* the status each after was handed, in order */
    _Atomic int n_seen;
    _Atomic int32_t handled; /* handler runs */
} shared;
static shared *sh;

static void put(char ch)
{
    int i = atomic_fetch_add(&sh->n, 1);
    if (i < (int)sizeof sh->log - 1) sh->log[i] = ch;
}

static void reset_log(void)
{
    memset(sh->log, 0, sizeof sh->log);
    sh->n = 0;
    sh->n_seen = 0;
    sh->handled = 0;
}

/* One interceptor's behaviour, handed as its arg. */
typedef struct hook {
    char in, out;         /* what its before and its after log */
    const char *refuse;   /* a method its before refuses with SHMRPC_EPERM, or NULL */
    int map_from, map_to; /* its after replaces status map_from with map_to (0: none) */
} hook;

static int before(void *arg, const shmrpc_call_info *call)
{
    const hook *h = arg;
    /* No assert here: this may run in a server's process. */
    put(strcmp(call->service->name, "Calls") == 0 && call->method->id < CALLS_METHODS ? h->in
                                                                                      : '?');
    if (h->refuse && strcmp(call->method->name, h->refuse) == 0)
        return shmrpc_intercept_error(call, SHMRPC_EPERM, "%c refuses %s", h->in,
                                      call->method->name);
    return 0;
}

static int after(void *arg, const shmrpc_call_info *call, int status)
{
    const hook *h = arg;
    put(h->out);
    int i = atomic_fetch_add(&sh->n_seen, 1);
    if (i < 32) sh->seen[i] = status;
    if (h->map_from && status == h->map_from)
        return shmrpc_intercept_error(call, h->map_to, "%c maps %d on %s", h->out, status,
                                      call->method->name);
    return status;
}

static const shmrpc_interceptor icpt = {.before = before, .after = after};

static int h_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    put('h');
    sh->handled++;
    if (a == -1) return shmrpc_ctx_error(ctx, SHMRPC_EHANDLER, "a is -1");
    *out = a + b;
    return 0;
}

static int h_echo(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    (void)ctx;
    put('h');
    sh->handled++;
    *out = data;
    return 0;
}

static int h_nap(shmrpc_ctx *ctx, uint32_t ms, int32_t *out)
{
    (void)ctx;
    (void)ms;
    put('h');
    sh->handled++;
    *out = 1;
    return 0;
}

static const Calls_handlers handlers = {.add = h_add, .echo = h_echo, .nap = h_nap};

/* The server's interceptors: A then B; B refuses nap, A maps a handler's error to EINVAL. */
static const hook srv_a = {'A', 'a', NULL, SHMRPC_EHANDLER, SHMRPC_EINVAL};
static const hook srv_b = {'B', 'b', "nap", 0, 0};
/* The client's: X then Y; Y refuses echo. */
static const hook cli_x = {'X', 'x', NULL, 0, 0};
static const hook cli_y = {'Y', 'y', "echo", 0, 0};

static int configure(shmrpc_server *s)
{
    int rc = shmrpc_server_intercept(s, &icpt, (void *)&srv_a);
    return rc ? rc : shmrpc_server_intercept(s, &icpt, (void *)&srv_b);
}

static pid_t server;
static shmrpc_server *inproc;
static char addr[64];

/* A server of Calls with the interceptors A and B over the test's transport (its state). */
static int start(void **state)
{
    static int n;
    const char *t = *state;
    reset_log();
    if (strcmp(t, "inproc") == 0) {
        snprintf(addr, sizeof addr, "inproc://icpt%d", n++);
        assert_int_equal(shmrpc_server_new(&inproc, NULL), 0);
        assert_int_equal(shmrpc_server_register(inproc, &Calls_service, &handlers, NULL), 0);
        assert_int_equal(configure(inproc), 0);
        assert_int_equal(shmrpc_server_listen(inproc, addr), 0);
        /* Too late now: its transport reads them without a lock. */
        assert_int_equal(shmrpc_server_intercept(inproc, &icpt, (void *)&srv_a), SHMRPC_EBUSY);
        return 0;
    }
    if (strcmp(t, "tcp") == 0)
        snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    else
        snprintf(addr, sizeof addr, "shm://icpt%d_%d", (int)getpid(), n++);
    test_server ts = {.svc = &Calls_service,
                      .handlers = &handlers,
                      .addr = addr,
                      .workers = 1,
                      .configure = configure};
    server = test_start_server(&ts);
    assert_true(server > 0);
    return 0;
}

static int stop(void **state)
{
    (void)state;
    shmrpc_server_free(inproc);
    inproc = NULL;
    if (server > 0 && !test_stop_server(server)) test_reap(server, 0);
    if (server > 0) assert_int_equal(test_shm_segments(addr), 0);
    server = 0;
    return 0;
}

/* A client with the interceptors X and Y (with = false: none). */
static shmrpc_client *client(bool with)
{
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &rc);
    assert_int_equal(rc, 0);
    if (with) {
        assert_int_equal(shmrpc_client_intercept(c, &icpt, (void *)&cli_x), 0);
        assert_int_equal(shmrpc_client_intercept(c, &icpt, (void *)&cli_y), 0);
    }
    reset_log();
    return c;
}

/* How many times ch is in the log. */
static int count(char ch)
{
    int n = 0;
    for (const char *p = sh->log; *p; p++)
        n += *p == ch;
    return n;
}

static void seen(int n, ...)
{
    assert_int_equal(sh->n_seen, n);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        assert_int_equal(sh->seen[i], va_arg(ap, int));
    va_end(ap);
}

/* Befores in registration order, afters the other way, the client's around the server's;
 * every after sees the status. */
static void composes_in_order(void **state)
{
    (void)state;
    shmrpc_client *c = client(true);
    int64_t sum = 0;
    assert_int_equal(calls_add(c, 2, 3, &sum), 0);
    assert_int_equal(sum, 5);
    assert_string_equal(sh->log, "XYABhbayx");
    seen(4, 0, 0, 0, 0);
    shmrpc_client_free(c);
}

/* The server's afters see the handler's status and message; A replaces it, and the client
 * (and its own afters) get A's. */
static void after_sees_the_handlers_status(void **state)
{
    (void)state;
    shmrpc_client *c = client(true);
    int64_t sum = 0;
    assert_int_equal(calls_add(c, -1, 3, &sum), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "a maps -6 on add");
    assert_string_equal(sh->log, "XYABhbayx");
    seen(4, SHMRPC_EHANDLER, SHMRPC_EHANDLER, SHMRPC_EINVAL, SHMRPC_EINVAL);
    /* Without the client's: what the server's after made of it reaches the caller as such. */
    shmrpc_client *bare = client(false);
    assert_int_equal(calls_add(bare, -1, 3, &sum), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "a maps -6 on add");
    assert_string_equal(sh->log, "ABhba");
    shmrpc_client_free(bare);
    shmrpc_client_free(c);
}

/* A server's before refuses: no handler runs, the client gets the status and the message,
 * the interceptors before it see the refusal and the refuser has no after. */
static void server_refuses(void **state)
{
    (void)state;
    shmrpc_client *c = client(true);
    int32_t pid = 0;
    assert_int_equal(calls_nap(c, 0, &pid), SHMRPC_EPERM);
    assert_string_equal(shmrpc_errmsg(), "B refuses nap");
    assert_int_equal(sh->handled, 0);
    assert_string_equal(sh->log, "XYABayx"); /* B logs, then refuses */
    seen(3, SHMRPC_EPERM, SHMRPC_EPERM, SHMRPC_EPERM);
    /* The server serves on. */
    int64_t sum = 0;
    assert_int_equal(calls_add(c, 1, 1, &sum), 0);
    assert_int_equal(sum, 2);
    assert_int_equal(sh->handled, 1);
    shmrpc_client_free(c);
}

/* A client's before refuses: nothing is sent (no server hook, no handler), X sees it. */
static void client_refuses(void **state)
{
    (void)state;
    shmrpc_client *c = client(true);
    shmrpc_bytes out;
    assert_int_equal(calls_echo(c, shmrpc_bytes_of("hi", 2), &out), SHMRPC_EPERM);
    assert_string_equal(shmrpc_errmsg(), "Y refuses echo");
    assert_int_equal(out.len, 0);
    assert_int_equal(sh->handled, 0);
    assert_string_equal(sh->log, "XYx");
    seen(1, SHMRPC_EPERM);
    shmrpc_client_free(c);
}

/* Started calls pass through the client's interceptors: before at start, after once the
 * call is done and returned; a refused one is returned done with its status. */
static void started_calls(void **state)
{
    (void)state;
    shmrpc_client *c = client(true);
    shmrpc_call *k = NULL;
    assert_int_equal(calls_add_start(c, 20, 22, &k), 0);
    assert_non_null(k);
    int64_t sum = 0;
    assert_int_equal(calls_add_finish(c, k, &sum), 0);
    assert_int_equal(sum, 42);
    assert_string_equal(sh->log, "XYABhbayx");
    seen(4, 0, 0, 0, 0);

    reset_log();
    assert_int_equal(calls_add_start(c, -1, 0, &k), 0);
    assert_int_equal(calls_add_finish(c, k, &sum), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "a maps -6 on add");
    assert_string_equal(sh->log, "XYABhbayx");

    reset_log();
    assert_int_equal(calls_echo_start(c, shmrpc_bytes_of("hi", 2), &k), 0);
    assert_non_null(k);
    assert_int_equal(shmrpc_call_status(k), SHMRPC_EPERM);
    assert_string_equal(sh->log, "XYx");
    shmrpc_bytes out;
    assert_int_equal(calls_echo_finish(c, k, &out), SHMRPC_EPERM);
    assert_string_equal(shmrpc_errmsg(), "Y refuses echo");
    assert_string_equal(sh->log, "XYx"); /* one after per call */
    assert_int_equal(sh->handled, 0);

    /* A call freed before it is waited for still has its after. */
    reset_log();
    assert_int_equal(calls_add_start(c, 1, 2, &k), 0);
    shmrpc_call_free(k);
    assert_int_equal(strncmp(sh->log, "XY", 2), 0);
    assert_int_equal(count('y'), 1);
    assert_int_equal(count('x'), 1);
    shmrpc_client_free(c);
}

/* Loaned calls pass through the client's interceptors too (the loan itself does not): over
 * shm:// the request is sent from the channel. */
static void loaned_calls(void **state)
{
    (void)state;
    void *room;
    shmrpc_bytes out;
    /* X alone lets echo through. */
    shmrpc_client *x = client(false);
    assert_int_equal(shmrpc_client_intercept(x, &icpt, (void *)&cli_x), 0);
    assert_int_equal(shmrpc_client_loan(x, CALLS_METHOD_ECHO, 5, &room), 0);
    assert_string_equal(sh->log, ""); /* nothing yet */
    memcpy(room, "hello", 5);
    assert_int_equal(shmrpc_client_call_loaned(x, 5, &out), 0);
    assert_int_equal(out.len, 5);
    assert_memory_equal(out.ptr, "hello", 5);
    assert_string_equal(sh->log, "XABhbax");
    shmrpc_client_free(x);

    /* Y refuses it: not sent. */
    shmrpc_client *c = client(true);
    assert_int_equal(shmrpc_client_loan(c, CALLS_METHOD_ECHO, 2, &room), 0);
    memcpy(room, "hi", 2);
    assert_int_equal(shmrpc_client_call_loaned(c, 2, &out), SHMRPC_EPERM);
    assert_string_equal(shmrpc_errmsg(), "Y refuses echo");
    assert_int_equal(out.len, 0);
    assert_string_equal(sh->log, "XYx");
    assert_int_equal(sh->handled, 0);
    /* The client calls on. */
    int64_t sum = 0;
    assert_int_equal(calls_add(c, 1, 2, &sum), 0);
    assert_int_equal(sum, 3);
    shmrpc_client_free(c);
}

/* Bad registrations. */
static void registration(void **state)
{
    (void)state;
    shmrpc_client *c = client(false);
    assert_int_equal(shmrpc_client_intercept(c, NULL, NULL), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_client_intercept(c, &(shmrpc_interceptor){0}, NULL), SHMRPC_EINVAL);
    for (int i = 0; i < SHMRPC_MAX_INTERCEPTORS; i++)
        assert_int_equal(shmrpc_client_intercept(c, &icpt, (void *)&cli_x), 0);
    assert_int_equal(shmrpc_client_intercept(c, &icpt, (void *)&cli_x), SHMRPC_EINVAL);
    int64_t sum;
    assert_int_equal(calls_add(c, 1, 2, &sum), 0);
    assert_int_equal(strspn(sh->log, "X"), SHMRPC_MAX_INTERCEPTORS);
    shmrpc_client_free(c);
    assert_int_equal(shmrpc_client_intercept(NULL, &icpt, NULL), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_server_intercept(NULL, &icpt, NULL), SHMRPC_EINVAL);
}

#define ON(test, t) cmocka_unit_test_prestate_setup_teardown(test, start, stop, t)
#define EVERYWHERE(test) ON(test, "inproc"), ON(test, "shm"), ON(test, "tcp")

int main(void)
{
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) return 1;
    const struct CMUnitTest tests[] = {
        EVERYWHERE(composes_in_order), EVERYWHERE(after_sees_the_handlers_status),
        EVERYWHERE(server_refuses),    EVERYWHERE(client_refuses),
        EVERYWHERE(started_calls),     EVERYWHERE(loaned_calls),
        ON(registration, "inproc"),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
