/* SPDX-License-Identifier: MIT */
/* The shm:// transport while a broken process writes random values over the state of the
 * control segment (the doorbell, the sleepers, awake, the sweep's time, every worker's and
 * every client's slot: what clients and workers write) as clients call: no process may
 * crash, no call may outlast its deadline by seconds or return a status the API lacks,
 * and once the writes stop the service heals by its sweeps (RELIABILITY.md 3, 4 and 12):
 * the clients that were calling and a new one get answers again, and the server stops
 * cleanly. The written-once part (magic, fingerprint, the method table) is left alone: a
 * process that rewrites that has replaced the service's identity, which a restart mends.
 * Every wait is bounded, every child reaped, every segment checked gone. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "kids.h"
#include "procs.h"
#include "scribble.h"
#include "transport/shm/shm.h"

#define CHILD_ALARM_S 60
#define RUN_MS 2000       /* how long the clients and the scribbler run together */
#define CALL_MS 200       /* each call's deadline... */
#define CALL_HANG_MS 3000 /* ...and a call that takes this long has hung */
#define HEAL_MS 10000     /* after the writes, how long the service may take to answer again */
#define CLIENTS 3

static char addr[64];
/* The scribbler's random seed: SCRIBBLE_SEED from the environment, else the test's pid and
 * time; printed with every failure, so that a run that failed can be run again with it. */
static uint64_t seed;

static int setup(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://shmscribble-%d", (int)getpid());
    const char *env = getenv("SCRIBBLE_SEED");
    seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)getpid() << 32 ^ (uint64_t)test_now_ms();
    if (seed == 0) seed = 1; /* xorshift stays at 0 */
    if (test_scribble_setup() != 0 || calls_shared_map() != 0) return -1;
    return 0;
}

static int leftovers(void)
{
    return test_shm_segments(addr);
}

static int teardown(void **state)
{
    (void)state;
    test_kids_kill_all();
    test_scribble_teardown();
    if (leftovers() != 0) {
        fprintf(stderr, "segments of %s left behind\n", addr);
        return -1;
    }
    return 0;
}

static shmrpc_client *connect_for(int ms)
{
    shmrpc_client *c;
    if (shmrpc_client_new(&c, &Calls_service_info, NULL) != 0) return NULL;
    int64_t until = test_now_ms() + ms;
    while (shmrpc_client_connect(c, addr) != 0)
        if (test_now_ms() > until) {
            shmrpc_client_free(c);
            return NULL;
        } else {
            usleep(20000);
        }
    return c;
}

/* One call of add with a deadline of CALL_MS, judged; *ok set when it was answered right. */
static int call_once(shmrpc_client *c, int64_t a, bool *ok)
{
    int64_t sum = 0, t0 = test_kid_now_ms();
    shmrpc_client_next_timeout(c, CALL_MS);
    int rc = calls_add(c, a, 1, &sum);
    *ok = rc == 0 && sum == a + 1;
    return test_scribble_judge("add", rc, t0, CALL_HANG_MS);
}

/* A client: calls while the scribbler writes, then must get answers again in HEAL_MS. */
static int client(void *arg)
{
    (void)arg;
    shmrpc_client *c = connect_for(5000);
    if (!c) return 2;
    test_scribble_user_ready();
    int bad = 0;
    bool ok;
    for (int64_t a = 0; !bad && !test_scribble_is_done(); a++)
        bad = call_once(c, a, &ok);
    int64_t until = test_kid_now_ms() + HEAL_MS;
    int answered = 0;
    while (!bad && answered < 20 && test_kid_now_ms() < until) {
        bad = call_once(c, answered, &ok);
        answered += ok;
    }
    test_scribble_tally("client");
    if (!bad && answered < 20) {
        fprintf(stderr,
                "client %d: %d right answers in the %d ms after the writes: %s "
                "(SCRIBBLE_SEED=%#" PRIx64 ")\n",
                (int)getpid(), answered, HEAL_MS, shmrpc_errmsg(), seed);
        bad = 1;
    }
    shmrpc_client_free(c);
    return bad;
}

/* The scribbler: every millisecond, four random values into the control segment's state
 * (from the doorbell to the end of the client slots), for RUN_MS. */
static int scribble(void *arg)
{
    (void)arg;
    if (test_scribble_wait_users(CLIENTS) != 0) return 4;
    char name[128], path[400];
    snprintf(name, sizeof name, "shmrpc:%s", addr + strlen("shm://"));
    test_names_path(path, sizeof path, name);
    size_t size;
    unsigned char *m = test_scribble_map(path, &size);
    if (!m || size < sizeof(shmrpc__shm_ctl)) return 3;
    /* A write a millisecond into each of: the shared lines (doorbell, sleepers, awake,
     * sweep), the two workers' entries, the first clients' slots (where these clients
     * are), and anywhere in the state. */
    struct {
        size_t off, len;
    } parts[] = {
        {offsetof(shmrpc__shm_ctl, pending), offsetof(shmrpc__shm_ctl, workers)},
        {offsetof(shmrpc__shm_ctl, workers), 2 * sizeof(shmrpc__shm_worker)},
        {offsetof(shmrpc__shm_ctl, slots), 2 * CLIENTS * sizeof(shmrpc__shm_slot)},
        {offsetof(shmrpc__shm_ctl, pending), offsetof(shmrpc__shm_ctl, service)},
    };
    parts[0].len -= parts[0].off;
    parts[3].len -= parts[3].off;
    uint64_t x = seed;
    for (int64_t end = test_kid_now_ms() + RUN_MS; test_kid_now_ms() < end; usleep(1000))
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
            test_scribble(m + parts[i].off, parts[i].len, parts[i].len, 1, &x);
    munmap(m, size);
    test_scribble_done();
    return 0;
}

static void service_heals(void **state)
{
    (void)state;
    test_server ts = {&Calls_service, &calls_test_handlers, addr, 2, 0, NULL, NULL, NULL};
    pid_t server = test_start_server(&ts);
    assert_true(server > 0);
    pid_t kids[CLIENTS + 1];
    for (int i = 0; i < CLIENTS; i++)
        kids[i] = test_kid_spawn(client, NULL, CHILD_ALARM_S);
    kids[CLIENTS] = test_kid_spawn(scribble, NULL, CHILD_ALARM_S);
    int failed = 0;
    for (int i = 0; i <= CLIENTS; i++) {
        int st = test_kid_reap(kids[i], (RUN_MS + HEAL_MS) * 2);
        if (st != 0) {
            print_error("child %d (%s) ended with %d (128 + signal when killed; -1: hung); "
                        "SCRIBBLE_SEED=%#" PRIx64 "\n",
                        (int)kids[i], i < CLIENTS ? "client" : "scribbler", st, seed);
            failed++;
        }
    }
    /* A client that comes after the writes is served too. */
    shmrpc_client *c = connect_for(HEAL_MS);
    int64_t sum = 0;
    int rc = c ? calls_add(c, 40, 2, &sum) : SHMRPC_EUNAVAIL;
    if (rc != 0) print_error("a new client: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
    if (c) shmrpc_client_free(c);
    bool stopped = test_stop_server(server);
    assert_int_equal(failed, 0);
    assert_int_equal(rc, 0);
    assert_int_equal(sum, 42);
    assert_true(stopped);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(service_heals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
