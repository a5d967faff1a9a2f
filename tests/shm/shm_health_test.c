/* SPDX-License-Identifier: MIT */
/* The health method of a shm:// server process while it drains: a worker is inside a long
 * call when the server gets SIGTERM; a client connected before asks its health and is
 * told draining (the control segment's STOPPING, which the manager wrote), and the call
 * in hand still returns its result. And what shmrpcctl prints of a server's words (a
 * failed call's message, a failed probe's reason) reaches the terminal escaped: a server
 * can neither forge a line of its output nor send an escape sequence to the terminal.
 * Every wait is bounded; the server is reaped even when a check fails. */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "calls.h"
#include "calls_handlers.h"
#include "procs.h"

static char addr[64];
static pid_t server;

typedef struct napper {
    shmrpc_client *c;
    int rc;
    int32_t pid;
} napper;

static void *nap_call(void *arg)
{
    napper *n = arg;
    n->rc = calls_nap(n->c, 1500, &n->pid);
    return NULL;
}

/* Static, with its thread: a failed check leaves the function while the call runs. */
static napper n;
static pthread_t napping_thread;
static bool napping_started;

static int reap_server(void **state)
{
    (void)state;
    if (server > 0 && !test_stop_server(server)) test_reap(server, 0);
    server = 0;
    if (napping_started) pthread_join(napping_thread, NULL); /* its server is gone: it ends */
    napping_started = false;
    return 0;
}

static void draining_while_a_call_finishes(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://health_drain%d", (int)getpid());
    test_server ts = {
        .svc = &Calls_service, .handlers = &calls_test_handlers, .addr = addr, .workers = 1};
    server = test_start_server(&ts);
    assert_true(server > 0);
    int rc;
    n = (napper){.c = test_connect(&Calls_service_info, NULL, addr, &rc)};
    assert_int_equal(rc, 0);
    shmrpc_client *probe = test_connect(&Calls_service_info, NULL, addr, &rc);
    assert_int_equal(rc, 0);
    shmrpc_health h;
    assert_int_equal(shmrpc_client_health(probe, &h), 0);
    assert_int_equal(h, SHMRPC_HEALTH_SERVING);

    atomic_store(&sh->napping, 0);
    assert_int_equal(pthread_create(&napping_thread, NULL, nap_call, &n), 0);
    napping_started = true;
    int64_t end = test_now_ms() + 5000;
    while (atomic_load(&sh->napping) == 0 && test_now_ms() < end)
        usleep(1000);
    assert_int_not_equal(atomic_load(&sh->napping), 0);

    assert_int_equal(kill(server, SIGTERM), 0);
    bool drained = false;
    for (end = test_now_ms() + 1000; !drained && test_now_ms() < end; usleep(2000))
        drained = shmrpc_client_health(probe, &h) == 0 && h == SHMRPC_HEALTH_DRAINING;
    assert_true(drained);
    /* shmrpcctl cannot connect to a stopping server, but reads the same field. */
    char cmd[256], out[64] = "";
    snprintf(cmd, sizeof cmd, "timeout 10 %s health --timeout 500 %s; echo $?", SHMRPCCTL, addr);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t got = fread(out, 1, sizeof out - 1, f);
    out[got] = '\0';
    pclose(f);
    assert_string_equal(out, "draining\n1\n");

    /* What it took, it finishes. */
    pthread_join(napping_thread, NULL);
    napping_started = false;
    assert_int_equal(n.rc, 0);
    assert_int_not_equal(n.pid, 0);
    shmrpc_client_free(probe);
    shmrpc_client_free(n.c);
    assert_true(test_reap(server, 5000) >= 0);
    server = 0;
}

/* A handler whose failure says what a hostile server would: an escape sequence and a line
 * of its own. */
static int h_hostile(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    (void)data, (void)out;
    return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "no\x1b[2J\nshmrpcctl: forged\\");
}

static void ctl_escapes_what_the_server_says(void **state)
{
    (void)state;
    static Calls_handlers hostile;
    hostile = calls_test_handlers;
    hostile.echo = h_hostile;
    snprintf(addr, sizeof addr, "shm://health_test_esc_%d", (int)getpid());
    test_server ts = {.svc = &Calls_service, .handlers = &hostile, .addr = addr, .workers = 1};
    server = test_start_server(&ts);
    assert_true(server > 0);
    char cmd[256], out[256] = "";
    snprintf(cmd, sizeof cmd, "timeout 10 %s call %s echo '[\"x\"]' 2>&1; echo $?", SHMRPCCTL,
             addr);
    for (int64_t end = test_now_ms() + 5000; test_now_ms() < end; usleep(20000)) {
        FILE *f = popen(cmd, "r"); /* until the server serves */
        assert_non_null(f);
        size_t got = fread(out, 1, sizeof out - 1, f);
        out[got] = '\0';
        pclose(f);
        if (strstr(out, "invalid argument")) break;
    }
    assert_string_equal(out, "shmrpcctl: echo: invalid argument: "
                             "no\\x1b[2J\\x0ashmrpcctl: forged\\x5c\n1\n");
    assert_true(test_stop_server(server));
    server = 0;
}

int main(void)
{
    if (calls_shared_map() != 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(draining_while_a_call_finishes, reap_server),
        cmocka_unit_test_teardown(ctl_escapes_what_the_server_says, reap_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
