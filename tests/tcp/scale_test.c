/* SPDX-License-Identifier: MIT */
/* A server's worker count changed while it serves (shmrpc_server_set_workers), over shm://
 * and tcp://: the manager starts the missing workers, and asks those above the count to
 * leave; clients keep calling throughout, those of a worker that left connecting again by
 * themselves. Real processes, every wait bounded, every child reaped. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "procs.h"

enum { CLIENTS = 4 };

static char addr[64];
static pid_t server;

/* The server's workers: its children. */
static int count_workers(void)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)server, (int)server);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, pid;
    while (fscanf(f, "%d", &pid) == 1)
        n++;
    fclose(f);
    return n;
}

/* Waits up to five seconds for n workers. */
static void expect_workers(int n)
{
    int64_t until = test_now_ms() + 5000;
    int got;
    while ((got = count_workers()) != n && test_now_ms() < until)
        usleep(10000);
    if (got != n) fail_msg("%d workers, not %d", got, n);
}

/* A call that may meet its worker leaving: the connection it had is gone, so at most a
 * few tries connect again (the failed call did not run). */
static void call_through(shmrpc_client *c)
{
    int64_t sum = 0;
    int rc = SHMRPC_EUNAVAIL;
    int64_t until = test_now_ms() + 5000;
    while (rc == SHMRPC_EUNAVAIL && test_now_ms() < until) {
        rc = calls_add(c, 40, 2, &sum);
        if (rc == SHMRPC_EUNAVAIL) usleep(20000);
    }
    if (rc) fail_msg("add: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(sum, 42);
}

static shmrpc_client *connect_client(void)
{
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &rc);
    if (rc) fail_msg("connect %s: %s: %s", addr, shmrpc_strerror(rc), shmrpc_errmsg());
    return c;
}

static void scale_up_and_down(void)
{
    test_server ts = {&Calls_service, &calls_test_handlers, addr, 1, 0, NULL, NULL, NULL};
    server = test_start_server(&ts);
    assert_true(server > 0);
    shmrpc_client *c[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        c[i] = connect_client();
    expect_workers(1);

    assert_int_equal(test_scale_server(server, 3), 0);
    expect_workers(3);
    for (int i = 0; i < CLIENTS; i++)
        call_through(c[i]);

    assert_int_equal(test_scale_server(server, 1), 0);
    expect_workers(1);
    for (int i = 0; i < CLIENTS; i++)
        call_through(c[i]);

    /* Out of range: refused in the server, which goes on with one worker. */
    assert_int_equal(test_scale_server(server, 0), 0);
    assert_int_equal(test_scale_server(server, SHMRPC_MAX_WORKERS + 1), 0);
    usleep(100 * 1000);
    expect_workers(1);
    for (int i = 0; i < CLIENTS; i++) {
        call_through(c[i]);
        shmrpc_client_free(c[i]);
    }
    assert_true(test_stop_server(server));
    server = 0;
}

static int teardown(void **state)
{
    (void)state;
    if (server > 0) test_stop_server(server); /* a failed test's: SIGTERM, so that it cleans up */
    server = 0;
    return 0;
}

static void over_shm(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://scale-%d", (int)getpid());
    scale_up_and_down();
}

static void over_tcp(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    scale_up_and_down();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(over_shm, teardown),
        cmocka_unit_test_teardown(over_tcp, teardown),
    };
    if (calls_shared_map() != 0) return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
