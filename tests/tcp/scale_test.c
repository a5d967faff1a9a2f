/* SPDX-License-Identifier: MIT */
/* A server's worker count changed while it serves (shmrpc_server_set_workers), over shm://
 * and tcp://: the manager starts the missing workers, and asks those above the count to
 * leave; clients keep calling throughout, from their own threads, while the steps happen,
 * those of a worker that left connecting again by themselves. What the docs promise of
 * those calls is asserted: over shm:// any worker serves any connection, so no call fails
 * (docs/shm-transport.md); over tcp:// a leaving worker drains (docs/wire.md, "Drain"), so
 * a call fails only with SHMRPC_EUNAVAIL, for one that crossed the DRAIN and did not run,
 * at most one a client for each worker that leaves;
 * over both, every call that succeeded ran exactly once and no failed one ran: the
 * handlers' count of calls equals the calls that succeeded. Every result is counted and
 * printed, none retried. Real processes, every wait bounded, every child reaped. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
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
/* Calls each client completes after each step before the next one: calls go on while the
 * workers change, and the clients are shown to call in every phase. */
#define CALLS_PER_STEP 20

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

/* A client thread: calls back to back until told to stop, each call once, counting what
 * each returned. The adds' tags are the client's own, so an answer that is not tag + 1 is
 * another call's. */
typedef struct caller {
    pthread_t thread;
    bool started;
    int index;
    _Atomic bool *stop;
    int connect_rc;
    _Atomic uint64_t ok; /* read by the test while the thread calls */
    uint64_t unavailable, wrong, other;
    int first_other;     /* the status of the first other failure */
    char first_msg[256]; /* and its message (or the first unavailable one's) */
} caller;

static void *call_until_stopped(void *arg)
{
    caller *k = arg;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &k->connect_rc);
    if (!c || k->connect_rc) return NULL;
    for (int64_t seq = 0; !atomic_load(k->stop); seq++) {
        int64_t tag = (int64_t)k->index << 40 | seq, sum = 0;
        int32_t pid = 0;
        /* Every other call a nap of 2 ms, so that workers are in a call when asked to
         * leave (it is finished first); the adds answer with their own tag + 1. */
        int rc = seq % 2 ? calls_nap(c, 2, &pid) : calls_add(c, tag, 1, &sum);
        if (rc == 0 && (seq % 2 ? pid > 0 : sum == tag + 1)) {
            atomic_fetch_add(&k->ok, 1);
        } else if (rc == 0) {
            k->wrong++;
        } else if (rc == SHMRPC_EUNAVAIL) {
            if (!k->unavailable++ && !k->first_msg[0])
                snprintf(k->first_msg, sizeof k->first_msg, "%s", shmrpc_errmsg());
            usleep(1000); /* no spin on a transport that refuses */
        } else {
            if (!k->other++) {
                k->first_other = rc;
                snprintf(k->first_msg, sizeof k->first_msg, "%s", shmrpc_errmsg());
            }
            usleep(1000);
        }
    }
    shmrpc_client_free(c);
    return NULL;
}

/* Waits (up to 10 s) until each of the first n clients has CALLS_PER_STEP more successful
 * calls than at its last step. */
static void each_calls_on(caller *k, uint64_t *seen, int n)
{
    int64_t until = test_now_ms() + 10000;
    for (int i = 0; i < n; i++) {
        while (atomic_load(&k[i].ok) < seen[i] + CALLS_PER_STEP && test_now_ms() < until)
            usleep(1000);
        uint64_t ok = atomic_load(&k[i].ok);
        if (ok < seen[i] + CALLS_PER_STEP)
            fail_msg("client %d: %llu calls succeeded since the last step, not %d (connect: %s)", i,
                     (unsigned long long)(ok - seen[i]), CALLS_PER_STEP,
                     shmrpc_strerror(k[i].connect_rc));
        seen[i] = ok;
    }
}

/* The client threads, module-wide so that a failed test's teardown stops them. */
static caller callers[CLIENTS];
static _Atomic bool stop_calls;

static void stop_callers(void)
{
    atomic_store(&stop_calls, true);
    for (int i = 0; i < CLIENTS; i++)
        if (callers[i].started) {
            pthread_join(callers[i].thread, NULL);
            callers[i].started = false;
        }
}

static void scale_up_and_down(bool tcp)
{
    test_server ts = {&Calls_service, &calls_test_handlers, addr, 1, 0, NULL, NULL, NULL};
    server = test_start_server(&ts);
    assert_true(server > 0);
    expect_workers(1);
    shmrpc_client_free(test_connect(&Calls_service_info, NULL, addr, &(int){0})); /* it serves */
    sh->calls = 0;
    atomic_store(&stop_calls, false);
    caller *k = callers;
    memset(callers, 0, sizeof callers);
    uint64_t seen[CLIENTS] = {0};
    /* Half the clients connect to the one worker, and call while the server grows to
     * three; the other half connect then, to the new workers (tcp:// hands connections
     * out by load), so that the workers that leave at the next step have clients. */
    for (int i = 0; i < CLIENTS; i++) {
        k[i].index = i;
        k[i].stop = &stop_calls;
    }
    for (int i = 0; i < CLIENTS / 2; i++) {
        assert_int_equal(pthread_create(&k[i].thread, NULL, call_until_stopped, &k[i]), 0);
        k[i].started = true;
    }
    each_calls_on(k, seen, CLIENTS / 2);

    /* Each step while the clients call. */
    assert_int_equal(test_scale_server(server, 3), 0);
    expect_workers(3);
    each_calls_on(k, seen, CLIENTS / 2);
    for (int i = CLIENTS / 2; i < CLIENTS; i++) {
        assert_int_equal(pthread_create(&k[i].thread, NULL, call_until_stopped, &k[i]), 0);
        k[i].started = true;
    }
    each_calls_on(k, seen, CLIENTS);

    assert_int_equal(test_scale_server(server, 1), 0);
    expect_workers(1);
    each_calls_on(k, seen, CLIENTS);

    /* Out of range: refused in the server, which goes on with one worker. */
    assert_int_equal(test_scale_server(server, 0), 0);
    assert_int_equal(test_scale_server(server, SHMRPC_MAX_WORKERS + 1), 0);
    usleep(100 * 1000);
    expect_workers(1);
    each_calls_on(k, seen, CLIENTS);

    stop_callers();
    uint64_t ok = 0, unavailable = 0, bad = 0;
    for (int i = 0; i < CLIENTS; i++) {
        printf("client %d: %llu calls succeeded, %llu unavailable, %llu wrong answers, %llu other "
               "failures%s%s%s%s\n",
               i, (unsigned long long)k[i].ok, (unsigned long long)k[i].unavailable,
               (unsigned long long)k[i].wrong, (unsigned long long)k[i].other,
               k[i].other ? " (first: " : "", k[i].other ? shmrpc_strerror(k[i].first_other) : "",
               k[i].first_msg[0] ? ": " : "", k[i].first_msg);
        if (k[i].connect_rc)
            fail_msg("client %d: connect: %s", i, shmrpc_strerror(k[i].connect_rc));
        ok += k[i].ok;
        unavailable += k[i].unavailable;
        /* Over tcp://, each of the two workers that leave can cost each of its clients the
         * one call that crossed its DRAIN; over shm://, nothing. */
        bad += k[i].wrong + k[i].other +
               (tcp ? (k[i].unavailable > 2 ? k[i].unavailable : 0) : k[i].unavailable);
    }
    int64_t ran = sh->calls;
    printf("%s: %llu calls succeeded, %llu unavailable; the handlers ran %lld calls\n", addr,
           (unsigned long long)ok, (unsigned long long)unavailable, (long long)ran);
    /* No call failed but as the transport's docs allow, and the handlers ran exactly the
     * calls that succeeded: a success runs at least once, so any run of a failed call or
     * second run of a successful one would show here. */
    assert_int_equal(bad, 0);
    assert_int_equal(ran, (int64_t)ok);
    assert_true(test_stop_server(server));
    server = 0;
}

static int teardown(void **state)
{
    (void)state;
    stop_callers(); /* a failed test's: its calls end within their deadlines */
    if (server > 0) test_stop_server(server); /* a failed test's: SIGTERM, so that it cleans up */
    server = 0;
    return 0;
}

static void over_shm(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://scale-%d", (int)getpid());
    scale_up_and_down(false);
}

static void over_tcp(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    scale_up_and_down(true);
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
