/* SPDX-License-Identifier: MIT */
/* The statistics segment of a server (shmrpc/stats.h) over shm:// and tcp://: calls,
 * errors and latencies counted by the workers, read by another process, gone with the
 * server. Real processes, every wait bounded, every child reaped. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "procs.h"

static char addr[64];
static pid_t server;

static shmrpc_client *connect_client(void)
{
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &rc);
    if (rc) fail_msg("connect %s: %s: %s", addr, shmrpc_strerror(rc), shmrpc_errmsg());
    return c;
}

static const shmrpc_method_stats *method(const shmrpc_stats *s, const char *name)
{
    for (uint32_t i = 0; i < s->n_methods; i++)
        if (strcmp(s->methods[i].name, name) == 0) return &s->methods[i];
    fail_msg("no method %s in the statistics", name);
    return NULL;
}

static void check_buckets(const shmrpc_method_stats *m)
{
    uint64_t sum = 0;
    for (int b = 0; b < SHMRPC_STATS_BUCKETS; b++)
        sum += m->buckets[b];
    assert_true(sum == m->calls);
}

static void counted(void)
{
    test_server ts = {&Calls_service, &calls_test_handlers, addr, 2, 0, NULL, NULL, NULL};
    server = test_start_server(&ts);
    assert_true(server > 0);
    shmrpc_client *c = connect_client();
    int64_t sum;
    for (int i = 0; i < 10; i++)
        assert_int_equal(calls_add(c, i, 1, &sum), 0);
    int32_t pid;
    for (int i = 0; i < 3; i++)
        assert_int_equal(calls_nap(c, 2, &pid), 0);
    for (int i = 0; i < 2; i++) { /* an add whose arguments do not decode: an error */
        shmrpc_buf *req = shmrpc_client_request(c);
        shmrpc_buf_append(req, "\xc1", 1);
        shmrpc_bytes resp;
        assert_int_equal(shmrpc_client_call(c, CALLS_METHOD_ADD, &resp), SHMRPC_EINVAL);
    }

    shmrpc_stats *s;
    int rc = shmrpc_stats_read(addr, &s);
    if (rc) fail_msg("stats: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_string_equal(s->service, "Calls");
    assert_int_equal(s->pid, server);
    assert_int_equal(s->n_methods, 3);
    const shmrpc_method_stats *add = method(s, "add"), *nap = method(s, "nap");
    assert_true(add->calls == 12 && add->errors == 2);
    assert_true(nap->calls == 3 && nap->errors == 0);
    assert_true(method(s, "echo")->calls == 0);
    check_buckets(add);
    check_buckets(nap);
    /* a nap of 2 ms takes at least that: the bucket it lands in says so */
    assert_true(nap->total_ns >= 3 * 2000000u);
    assert_true(shmrpc_stats_percentile(nap, 0.5) >= 2000000u);
    assert_true(shmrpc_stats_percentile(add, 0.5) < shmrpc_stats_percentile(nap, 0.5));
    shmrpc_stats_free(s);

    shmrpc_client_free(c);
    assert_true(test_stop_server(server));
    server = 0;
    /* gone with the server */
    assert_int_equal(shmrpc_stats_read(addr, &s), SHMRPC_EUNAVAIL);
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
    snprintf(addr, sizeof addr, "shm://stats-%d", (int)getpid());
    counted();
}

static void over_tcp(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    counted();
}

/* Calls that follow each other closely over shm://, where a worker times one in
 * SHMRPC__TIME_EVERY and counts the others with the method's last time (docs/stats.md):
 * the slow ones among fast ones still count as slow, every one of them. */
static void close_calls_keep_their_time(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://stats-close-%d", (int)getpid());
    test_server ts = {&Calls_service, &calls_test_handlers, addr, 1, 0, NULL, NULL, NULL};
    server = test_start_server(&ts);
    assert_true(server > 0);
    shmrpc_client *c = connect_client();
    int32_t pid;
    enum { CALLS = 120, EVERY = 12, SLOW_MS = 3 };
    for (int i = 0; i < CALLS; i++)
        assert_int_equal(calls_nap(c, i % EVERY == EVERY - 1 ? SLOW_MS : 0, &pid), 0);

    shmrpc_stats *s;
    int rc = shmrpc_stats_read(addr, &s);
    if (rc) fail_msg("stats: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    const shmrpc_method_stats *nap = method(s, "nap");
    assert_true(nap->calls == CALLS && nap->errors == 0);
    check_buckets(nap);
    /* Each slow call counts at least its nap, less the few microseconds a worker may wait
     * before it takes a close call; a held time of a fast one would count far less. */
    uint64_t slow = 0;
    for (int b = 21 - 9; b < SHMRPC_STATS_BUCKETS; b++) /* from 2^21 ns, 2.1 ms */
        slow += nap->buckets[b];
    if (slow < CALLS / EVERY || nap->total_ns < (CALLS / EVERY) * (SLOW_MS * 1000000u - 100000u))
        fail_msg("%llu calls counted from 2.1 ms, %llu ns in all; %d naps of %d ms were made",
                 (unsigned long long)slow, (unsigned long long)nap->total_ns, CALLS / EVERY,
                 SLOW_MS);
    shmrpc_stats_free(s);
    shmrpc_client_free(c);
    assert_true(test_stop_server(server));
    server = 0;
}

/* Nothing there, and a malformed address. */
static void nothing_there(void **state)
{
    (void)state;
    shmrpc_stats *s;
    assert_int_equal(shmrpc_stats_read("shm://nobody-here", &s), SHMRPC_EUNAVAIL);
    assert_string_equal(shmrpc_errmsg(),
                        "no statistics at shm://nobody-here: no server keeps any there");
    assert_int_equal(shmrpc_stats_read("nowhere", &s), SHMRPC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(over_shm, teardown),
        cmocka_unit_test_teardown(over_tcp, teardown),
        cmocka_unit_test_teardown(close_calls_keep_their_time, teardown),
        cmocka_unit_test(nothing_there),
    };
    if (calls_shared_map() != 0) return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
