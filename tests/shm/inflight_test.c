/* SPDX-License-Identifier: MIT */
/* Many calls in flight over shm:// from one client thread (issue 37): shmrpc_client_start
 * and _wait against real server processes, each call on a lane of its own or, while two
 * lanes are busy, in a batch on one. Calls run side by side on the workers and are answered
 * in any order, each with its own deadline; a call behind a held batch says it did not run;
 * a cancelled call's lane serves again once its handler is done; a worker, a client or a
 * server killed with calls in flight fails only the calls it must, each saying whether it
 * ran, and no call runs twice. Every wait is bounded. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "batch.h"
#include "calls_handlers.h"
#include "procs.h"
#include "transport/shm/shm.h"

static char addr[64];

static int setup(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://inflight_test_%d", (int)getpid());
    sh->calls = 0;
    sh->running = 0;
    sh->most = 0;
    sh->naps_begun = 0;
    sh->wake = 0;
    return 0;
}

static pid_t start_server(int workers)
{
    test_server ts = {&Calls_service, &calls_test_handlers, addr, workers, 0, NULL, NULL, NULL};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    return pid;
}

static void stop_server(pid_t srv)
{
    sh->wake = 1; /* any nap still held ends */
    assert_true(test_stop_server(srv));
    assert_int_equal(test_shm_segments(addr), 0);
}

static shmrpc_client *connect_to(void)
{
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &rc);
    if (!c || rc) fail_msg("connect %s: %s: %s", addr, shmrpc_strerror(rc), shmrpc_errmsg());
    return c;
}

/* Starts a nap of ms with a deadline of timeout_ms. */
static int nap_start(shmrpc_client *c, uint32_t ms, int64_t timeout_ms, shmrpc_call **call)
{
    shmrpc_client_next_timeout(c, timeout_ms);
    return calls_nap_start(c, ms, call);
}

/* How many times a nap of ms began, by the workers' log of naps. */
static int naps_of(uint32_t ms)
{
    int32_t n = sh->naps_begun, runs = 0;
    assert_true(n <= CALLS_NAPS_LOGGED);
    for (int32_t i = 0; i < n; i++)
        runs += sh->nap_ms[i] == ms;
    return runs;
}

/* Waits for one of the n calls (at most 20 s): its index. */
static size_t wait_one(shmrpc_client *c, shmrpc_call **calls, size_t n)
{
    size_t which;
    int rc = shmrpc_client_wait(c, calls, n, 20000, &which);
    if (rc) fail_msg("wait: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    return which;
}

/* Waits for all n calls, in whatever order they end. */
static void wait_all(shmrpc_client *c, shmrpc_call **calls, size_t n)
{
    shmrpc_call **left = calloc(n, sizeof *left);
    memcpy(left, calls, n * sizeof *left);
    for (size_t m = n; m > 0; m--) {
        size_t which = wait_one(c, left, m);
        left[which] = left[m - 1];
    }
    free(left);
}

/* Waits for all n calls, each of which must succeed, and frees them. */
static void wait_all_ok(shmrpc_client *c, shmrpc_call **calls, size_t n)
{
    wait_all(c, calls, n);
    for (size_t i = 0; i < n; i++) {
        if (shmrpc_call_status(calls[i]) != 0)
            fail_msg("call %zu: %s", i, shmrpc_strerror(shmrpc_call_status(calls[i])));
        shmrpc_call_free(calls[i]);
    }
}

/* Polls (every ms, at most 20 s) until *v reaches at least want. */
static void await_at_least(_Atomic int32_t *v, int32_t want, const char *what)
{
    for (int i = 0; i < 20000 && *v < want; i++)
        usleep(1000);
    if (*v < want) fail_msg("%s: %d, not %d, after 20 s", what, (int)*v, (int)want);
}

/* 64 adds in flight from one thread on two workers: each answered with its own sum, and
 * run once. */
static void sixty_four_each_answered(void **state)
{
    (void)state;
    pid_t srv = start_server(2);
    shmrpc_client *c = connect_to();
    shmrpc_call *calls[64];
    for (int round = 0; round < 3; round++) { /* the lanes are kept and used again */
        sh->calls = 0;
        for (int i = 0; i < 64; i++)
            assert_int_equal(calls_add_start(c, i, 1000 * round, &calls[i]), 0);
        wait_all(c, calls, 64);
        for (int i = 0; i < 64; i++) {
            int64_t sum;
            assert_int_equal(calls_add_finish(c, calls[i], &sum), 0);
            assert_int_equal(sum, i + 1000 * round);
        }
        assert_int_equal(sh->calls, 64);
    }
    /* A blocking call after them, on the same client. */
    int64_t sum;
    assert_int_equal(calls_add(c, 40, 2, &sum), 0);
    assert_int_equal(sum, 42);
    shmrpc_client_free(c);
    stop_server(srv);
}

/* Two naps held on two workers run at once, and a fast call started after them is
 * answered first: one client thread keeps both workers busy. Before issue 37, start ran
 * each call to its end over shm://, and no two ran at once. */
static void side_by_side_any_order(void **state)
{
    (void)state;
    pid_t srv = start_server(2);
    shmrpc_client *c = connect_to();
    shmrpc_call *calls[3];
    assert_int_equal(nap_start(c, CALLS_NAP_HELD, 30000, &calls[0]), 0);
    assert_int_equal(nap_start(c, CALLS_NAP_HELD, 30000, &calls[1]), 0);
    await_at_least(&sh->running, 2, "naps running at once");
    /* Both workers hold a nap: the add waits untaken until one is let go. */
    assert_int_equal(calls_add_start(c, 2, 3, &calls[2]), 0);
    size_t which;
    assert_int_equal(shmrpc_client_wait(c, calls, 3, 100, &which), SHMRPC_ETIMEDOUT);
    sh->wake = 1;
    wait_all_ok(c, calls, 3);
    assert_int_equal(sh->most, 2);
    shmrpc_client_free(c);
    stop_server(srv);
}

/* The fast call first: a held nap, then an add, which is answered while the nap runs. */
static void answered_out_of_order(void **state)
{
    (void)state;
    pid_t srv = start_server(2);
    shmrpc_client *c = connect_to();
    shmrpc_call *calls[2];
    assert_int_equal(nap_start(c, CALLS_NAP_HELD, 30000, &calls[0]), 0);
    await_at_least(&sh->running, 1, "the held nap running");
    assert_int_equal(calls_add_start(c, 20, 22, &calls[1]), 0);
    assert_int_equal(wait_one(c, calls, 2), 1);
    int64_t sum;
    assert_int_equal(calls_add_finish(c, calls[1], &sum), 0);
    assert_int_equal(sum, 42);
    assert_int_equal(shmrpc_call_status(calls[0]), SHMRPC_CALL_PENDING);
    sh->wake = 1;
    int32_t pid;
    assert_int_equal(calls_nap_finish(c, calls[0], &pid), 0);
    assert_true(pid > 0);
    shmrpc_client_free(c);
    stop_server(srv);
}

/* Each call has its own deadline: a held nap of 200 ms times out (it ran), an add beside
 * it does not; the nap's lane is taken again only once its handler let go of it. */
static void deadlines_of_their_own(void **state)
{
    (void)state;
    pid_t srv = start_server(2);
    shmrpc_client *c = connect_to();
    shmrpc_call *calls[2];
    assert_int_equal(nap_start(c, CALLS_NAP_HELD, 200, &calls[0]), 0);
    await_at_least(&sh->running, 1, "the held nap running");
    assert_int_equal(calls_add_start(c, 1, 2, &calls[1]), 0);
    wait_all(c, calls, 2);
    assert_int_equal(shmrpc_call_status(calls[1]), 0);
    shmrpc_bytes b;
    assert_int_equal(shmrpc_call_result(calls[0], &b), SHMRPC_ETIMEDOUT);
    assert_non_null(strstr(shmrpc_errmsg(), "while the call ran"));
    shmrpc_call_free(calls[0]);
    shmrpc_call_free(calls[1]);
    /* The abandoned nap still runs; calls go on beside it, on other lanes. */
    for (int i = 0; i < 10; i++) {
        int64_t sum;
        assert_int_equal(calls_add_start(c, i, 1, &calls[1]), 0);
        assert_int_equal(calls_add_finish(c, calls[1], &sum), 0);
        assert_int_equal(sum, i + 1);
    }
    assert_int_equal(sh->running, 1);
    sh->wake = 1;
    shmrpc_client_free(c);
    stop_server(srv);
}

/* 64 held naps on one worker, sent two alone and the others in batches (a call started while
 * two lanes are busy waits for the next batch): a nap sent after them ends at its deadline
 * saying it did not run, and never runs (the worker begins no call past its deadline); once
 * the naps are let go, all 64 succeed, each run once. */
static void behind_a_held_batch(void **state)
{
    (void)state;
    pid_t srv = start_server(1);
    shmrpc_client *c = connect_to();
    shmrpc_call *calls[65];
    for (int i = 0; i < 64; i++)
        assert_int_equal(nap_start(c, CALLS_NAP_HELD, 30000, &calls[i]), 0);
    assert_int_equal(nap_start(c, 7, 300, &calls[64]), 0);
    int32_t pid;
    assert_int_equal(calls_nap_finish(c, calls[64], &pid), SHMRPC_ETIMEDOUT);
    assert_non_null(strstr(shmrpc_errmsg(), "did not run"));
    await_at_least(&sh->running, 1, "a held nap running");
    sh->wake = 1;
    wait_all_ok(c, calls, 64);
    /* Its batch was taken after its deadline: the worker answered it without running it. */
    shmrpc_client_free(c);
    stop_server(srv);
    assert_int_equal(naps_of(CALLS_NAP_HELD), 64);
    assert_int_equal(naps_of(7), 0);
    assert_int_equal(sh->naps_begun, 64);
}

/* A call cancelled while it runs is done at once; its handler goes on, and its lane takes
 * no call until the handler is done, while the others serve. */
static void cancelled_one_of_many(void **state)
{
    (void)state;
    pid_t srv = start_server(2);
    shmrpc_client *c = connect_to();
    shmrpc_call *calls[2];
    assert_int_equal(nap_start(c, CALLS_NAP_HELD, 30000, &calls[0]), 0);
    await_at_least(&sh->running, 1, "the held nap running");
    assert_int_equal(nap_start(c, 50, 30000, &calls[1]), 0);
    shmrpc_call_cancel(calls[0]);
    assert_int_equal(shmrpc_call_status(calls[0]), SHMRPC_ECANCELLED);
    int32_t pid;
    assert_int_equal(calls_nap_finish(c, calls[1], &pid), 0);
    shmrpc_call_free(calls[0]);
    assert_int_equal(naps_of(CALLS_NAP_HELD), 1); /* it ran, and runs still */
    assert_int_equal(sh->running, 1);
    sh->wake = 1;
    for (int i = 0; i < 8; i++) {
        int64_t sum;
        assert_int_equal(calls_add_start(c, i, i, &calls[0]), 0);
        assert_int_equal(calls_add_finish(c, calls[0], &sum), 0);
        assert_int_equal(sum, 2 * i);
    }
    shmrpc_client_free(c);
    stop_server(srv);
}

/* A held nap and seven more in flight on two workers, and the held nap's worker SIGKILLed
 * while the other worker serves: the held call fails saying its worker died, the seven
 * succeed (the manager starts a new worker), and none ran twice (each nap's ms is its own,
 * the workers' log counts its runs). */
static void worker_killed_with_calls_in_flight(void **state)
{
    (void)state;
    pid_t srv = start_server(2);
    shmrpc_client *c = connect_to();
    enum { N = 8, MS0 = 100 };
    shmrpc_call *calls[N];
    assert_int_equal(nap_start(c, CALLS_NAP_HELD, 30000, &calls[0]), 0);
    await_at_least(&sh->running, 1, "the held nap running");
    pid_t victim = sh->napping;
    assert_true(victim > 0);
    for (int i = 1; i < N; i++)
        assert_int_equal(nap_start(c, MS0 + i, 30000, &calls[i]), 0);
    await_at_least(&sh->running, 2, "a second nap running");
    assert_int_equal(kill(victim, SIGKILL), 0);
    wait_all(c, calls, N);
    shmrpc_bytes b;
    assert_int_equal(shmrpc_call_result(calls[0], &b), SHMRPC_EPEERDIED);
    assert_non_null(strstr(shmrpc_errmsg(), "died during the call"));
    shmrpc_call_free(calls[0]);
    for (int i = 1; i < N; i++) {
        int rc = shmrpc_call_status(calls[i]), runs = naps_of(MS0 + (uint32_t)i);
        if (rc != 0 || runs != 1)
            fail_msg("call %d ended with %s and ran %d times", i, shmrpc_strerror(rc), runs);
        shmrpc_call_free(calls[i]);
    }
    assert_int_equal(naps_of(CALLS_NAP_HELD), 1);
    shmrpc_client_free(c);
    stop_server(srv);
}

/* A batch's worker SIGKILLed during its second call: the first was answered, the second fails
 * as a call whose worker died, and the third fails saying it did not run, and never runs (by
 * the log); the two calls sent alone before the batch succeed. */
static void worker_killed_during_a_batch(void **state)
{
    (void)state;
    pid_t srv = start_server(2);
    shmrpc_client *c = connect_to();
    shmrpc_call *calls[5];
    const uint32_t ms[5] = {300, 301, 101, CALLS_NAP_HELD, 103};
    for (int i = 0; i < 5; i++) /* two lanes busy: the last three go in a batch */
        assert_int_equal(nap_start(c, ms[i], 30000, &calls[i]), 0);
    int32_t victim;
    assert_int_equal(calls_nap_finish(c, calls[2], &victim), 0); /* the batch's worker */
    await_at_least(&sh->naps_begun, 4, "the held nap begun");
    assert_int_equal(kill(victim, SIGKILL), 0);
    wait_all(c, (shmrpc_call *[]){calls[0], calls[1], calls[3], calls[4]}, 4);
    shmrpc_bytes b;
    assert_int_equal(shmrpc_call_status(calls[0]), 0);
    assert_int_equal(shmrpc_call_status(calls[1]), 0);
    assert_int_equal(shmrpc_call_result(calls[3], &b), SHMRPC_EPEERDIED);
    assert_non_null(strstr(shmrpc_errmsg(), "died during the call"));
    assert_int_equal(shmrpc_call_result(calls[4], &b), SHMRPC_EPEERDIED);
    assert_non_null(strstr(shmrpc_errmsg(), "did not run"));
    for (int i = 0; i < 5; i++)
        if (i != 2) shmrpc_call_free(calls[i]);
    assert_int_equal(naps_of(101), 1);
    assert_int_equal(naps_of(CALLS_NAP_HELD), 1);
    assert_int_equal(naps_of(103), 0);
    shmrpc_client_free(c);
    stop_server(srv);
}

/* The Batch service's handlers (batch.svc): fills counted in shared memory. */
static _Atomic int32_t *fills;

static int h_fill(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    static uint8_t room[4 << 20];
    uint32_t n = 0;
    if (data.len >= sizeof n) memcpy(&n, data.ptr, sizeof n);
    if (n > sizeof room) return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "at most 4 MiB");
    (*fills)++;
    memset(room, 'f', n);
    *out = shmrpc_bytes_of(room, n);
    return 0;
}

static int h_batch_nap(shmrpc_ctx *ctx, uint32_t ms, uint32_t *out)
{
    (void)ctx;
    usleep(ms * 1000);
    *out = ms;
    return 0;
}

static const Batch_handlers batch_handlers = {.fill = h_fill, .nap = h_batch_nap};

/* A batch whose answers would not all fit its channel (a server of 1 MiB messages, whose
 * channels hold 2 MiB): its worker stops before the call whose answer might not fit, and the
 * client sends the calls left again; each is answered whole, and runs once. */
static void answers_past_the_channel(void **state)
{
    (void)state;
    test_server ts = {&Batch_service, &batch_handlers, addr, 1, 1 << 20, NULL, NULL, NULL};
    pid_t srv = test_start_server(&ts);
    assert_true(srv > 0);
    *fills = 0;
    int rc;
    shmrpc_client *c = test_connect(&Batch_service_info, NULL, addr, &rc);
    if (!c || rc) fail_msg("connect %s: %s: %s", addr, shmrpc_strerror(rc), shmrpc_errmsg());
    shmrpc_call *calls[6];
    assert_int_equal(batch_nap_start(c, 100, &calls[0]), 0);
    assert_int_equal(batch_nap_start(c, 1, &calls[1]), 0);
    uint32_t n = 600 * 1024;
    for (int i = 2; i < 6; i++) /* two lanes busy: a batch of four */
        assert_int_equal(batch_fill_start(c, shmrpc_bytes_of(&n, sizeof n), &calls[i]), 0);
    wait_all(c, calls, 2);
    for (int i = 2; i < 6; i++) {
        shmrpc_bytes out;
        rc = batch_fill_finish(c, calls[i], &out);
        if (rc != 0) fail_msg("fill %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
        assert_int_equal(out.len, n);
        assert_true(out.ptr[0] == 'f' && out.ptr[n - 1] == 'f');
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(shmrpc_call_status(calls[i]), 0);
        shmrpc_call_free(calls[i]);
    }
    shmrpc_client_free(c);
    sh->wake = 1;
    assert_true(test_stop_server(srv));
    assert_int_equal(test_shm_segments(addr), 0);
    assert_int_equal(*fills, 4);
}

/* A forked child that frees the client it inherited with calls in flight leaves them to
 * the parent: nothing in the channels changes, the child's own look at them fails (they are
 * not its process's), and the parent's calls are answered, each run once. */
static void forked_child_leaves_the_calls(void **state)
{
    (void)state;
    pid_t srv = start_server(1);
    shmrpc_client *c = connect_to();
    shmrpc_call *calls[2];
    assert_int_equal(nap_start(c, CALLS_NAP_HELD, 30000, &calls[0]), 0);
    await_at_least(&sh->running, 1, "the held nap running");
    assert_int_equal(calls_add_start(c, 40, 2, &calls[1]), 0); /* waits, untaken */
    for (int way = 0; way < 2; way++) { /* the child waits first, or frees at once */
        pid_t child = fork();
        if (child == 0) {
            size_t which = 0;
            int rc = way == 0 ? shmrpc_client_wait(c, calls, 2, 1000, &which) : 0;
            int st = way == 0 ? shmrpc_call_status(calls[which]) : SHMRPC_EINVAL;
            shmrpc_client_free(c);
            _exit(rc == 0 && st == SHMRPC_EINVAL ? 0 : 1);
        }
        assert_true(child > 0);
        int status = test_reap(child, 10000);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(shmrpc_call_status(calls[1]), SHMRPC_CALL_PENDING);
    sh->wake = 1;
    int64_t sum;
    assert_int_equal(calls_add_finish(c, calls[1], &sum), 0);
    assert_int_equal(sum, 42);
    int32_t pid;
    assert_int_equal(calls_nap_finish(c, calls[0], &pid), 0);
    assert_int_equal(sh->calls, 2); /* the nap and the add, once each */
    shmrpc_client_free(c);
    stop_server(srv);
}

static void *cancel_later(void *arg)
{
    usleep(100 * 1000);
    shmrpc_client_cancel(arg);
    return NULL;
}

/* Calls that wait for the next batch (two lanes busy with held naps) are not sent yet: one
 * cancelled by its caller ends at once saying it did not run, and never runs; one waited for
 * is sent before the waiter sleeps, and shmrpc_client_cancel from another thread ends it. */
static void cancelled_before_it_was_sent(void **state)
{
    (void)state;
    pid_t srv = start_server(1);
    shmrpc_client *c = connect_to();
    shmrpc_call *calls[4];
    for (int i = 0; i < 2; i++)
        assert_int_equal(nap_start(c, CALLS_NAP_HELD, 30000, &calls[i]), 0);
    assert_int_equal(nap_start(c, 1, 30000, &calls[2]), 0);
    shmrpc_call_cancel(calls[2]);
    assert_int_equal(shmrpc_call_status(calls[2]), SHMRPC_ECANCELLED);
    shmrpc_bytes b;
    assert_int_equal(shmrpc_call_result(calls[2], &b), SHMRPC_ECANCELLED);
    assert_non_null(strstr(shmrpc_errmsg(), "before it was sent; it did not run"));
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_later, c), 0);
    shmrpc_client_next_timeout(c, SHMRPC_TIMEOUT_INFINITE);
    assert_int_equal(calls_add_start(c, 1, 2, &calls[3]), 0);
    int64_t sum;
    assert_int_equal(calls_add_finish(c, calls[3], &sum), SHMRPC_ECANCELLED);
    pthread_join(t, NULL);
    await_at_least(&sh->running, 1, "a held nap running");
    sh->wake = 1;
    for (int i = 0; i < 2; i++)
        shmrpc_call_free(calls[i]);
    shmrpc_call_free(calls[2]);
    shmrpc_client_free(c);
    stop_server(srv);
    assert_int_equal(naps_of(1), 0); /* the cancelled nap never ran */
}

/* The control segment of addr, mapped whole (its header is what these tests read). */
static shmrpc__shm_ctl *map_ctl(size_t *len)
{
    char name[128], path[400];
    snprintf(name, sizeof name, "shmrpc:%s", addr + strlen("shm://"));
    test_names_path(path, sizeof path, name);
    int fd = open(path, O_RDWR);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(shmrpc__shm_ctl)) {
        if (fd >= 0) close(fd);
        return NULL;
    }
    *len = (size_t)st.st_size;
    void *p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

/* Polls (every ms, at most 10 s) until the service's awake is want: whether it got there. */
static bool awake_reaches(shmrpc__shm_ctl *ctl, uint32_t want)
{
    for (int i = 0; i < 10000 && atomic_load(&ctl->awake) != want; i++)
        usleep(1000);
    return atomic_load(&ctl->awake) == want;
}

/* How many open slots name pid as their client. */
static int slots_of(shmrpc__shm_ctl *ctl, pid_t pid)
{
    int n = 0;
    for (int i = 0; i < SHMRPC__MAX_CONNS; i++)
        n += atomic_load(&ctl->slots[i].client.pid) == pid &&
             atomic_load(&ctl->slots[i].state) != SHM_SLOT_FREE;
    return n;
}

/* The slots of pid that are open: handed over to the manager, which frees them at the
 * client's hang-up. A slot still being claimed is freed only by a sweep. */
static int open_slots_of(shmrpc__shm_ctl *ctl, pid_t pid)
{
    int n = 0;
    for (int i = 0; i < SHMRPC__MAX_CONNS; i++)
        n += atomic_load(&ctl->slots[i].client.pid) == pid &&
             atomic_load(&ctl->slots[i].state) == SHM_SLOT_OPEN;
    return n;
}

/* The waiter of calls in flight counts once in the service's awake while it spins: with
 * every call answered and the workers asleep, awake is back at 0, after a client that
 * sleeps past its spin and one that only spins (SHMRPC_WAIT=spin, counted from its first
 * clock read to its return); and the lanes are the client's open slots. */
static void awake_comes_back(void **state)
{
    (void)state;
    pid_t srv = start_server(2);
    shmrpc_client *c = connect_to();
    setenv("SHMRPC_WAIT", "spin", 1);
    shmrpc_client *spinner = connect_to();
    unsetenv("SHMRPC_WAIT");
    size_t len;
    shmrpc__shm_ctl *ctl = map_ctl(&len);
    assert_non_null(ctl);
    for (int round = 0; round < 20; round++) {
        shmrpc_client *k = round % 2 ? spinner : c;
        shmrpc_call *calls[16];
        for (int i = 0; i < 16; i++)
            assert_int_equal(nap_start(k, i % 2, 30000, &calls[i]), 0);
        wait_all_ok(k, calls, 16);
    }
    int lanes = slots_of(ctl, getpid());
    bool back = awake_reaches(ctl, 0);
    uint32_t awake = atomic_load(&ctl->awake);
    munmap(ctl, len);
    shmrpc_client_free(c);
    shmrpc_client_free(spinner);
    stop_server(srv);
    if (!back) fail_msg("awake stayed at %u with the clients idle and the workers asleep", awake);
    /* At most two lanes a client for the calls sent alone and two for the batches of the
     * others (how many depends on how soon the naps end): opened at the first rounds, used
     * again, never one a call. */
    if (lanes < 2 || lanes > 8) fail_msg("the clients hold %d slots, not 2 to 8", lanes);
}

/* A client killed -9 while it spins over 16 calls in flight (one held nap running, one
 * waiting alone and 14 in a batch): the manager frees all its slots at the hang-up and takes its
 * share of awake back then, by its mark, and none of the waiting calls runs after. */
static void client_killed_with_calls_in_flight(void **state)
{
    (void)state;
    pid_t srv = start_server(1);
    shmrpc_client *probe = connect_to(); /* the server is up */
    shmrpc_client_free(probe);
    size_t len;
    shmrpc__shm_ctl *ctl = map_ctl(&len);
    assert_non_null(ctl);
    pid_t child = fork();
    if (child == 0) {
        alarm(30);
        setenv("SHMRPC_WAIT", "spin", 1); /* counted all through its wait */
        int rc;
        shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &rc);
        shmrpc_call *calls[16];
        if (!c || nap_start(c, CALLS_NAP_HELD, 30000, &calls[0])) _exit(2);
        for (int i = 0; i < 10000 && sh->running < 1; i++) /* the held nap first */
            usleep(1000);
        for (int i = 1; i < 16; i++)
            if (nap_start(c, 500 + (uint32_t)i, 30000, &calls[i])) _exit(2);
        size_t which;
        if (c) shmrpc_client_wait(c, calls, 16, 30000, &which);
        _exit(1);
    }
    assert_true(child > 0);
    /* The held nap runs, the child's lanes are open and it spins, counted (the worker runs
     * a handler, so it is awake too). Open, not only claimed: a lane killed during its claim
     * is the sweep's to free, and the one worker sweeps only after the held nap (CI once
     * killed the child between the third lane's claim and its hand-over). */
    int64_t until = test_now_ms() + 10000;
    while (test_now_ms() < until &&
           (sh->running < 1 || open_slots_of(ctl, child) < 3 || atomic_load(&ctl->awake) < 2))
        usleep(1000);
    int held = slots_of(ctl, child);
    uint32_t before = atomic_load(&ctl->awake);
    kill(child, SIGKILL);
    test_reap(child, 5000);
    until = test_now_ms() + 10000;
    while (test_now_ms() < until && slots_of(ctl, child) > 0)
        usleep(1000);
    int left = slots_of(ctl, child);
    /* Taken back with the slots, by the mark: the one worker runs the held nap, so no
     * sweep (which would repair the count too) runs before it ends. */
    uint32_t after = atomic_load(&ctl->awake);
    sh->wake = 1; /* the held nap ends; its worker then sleeps */
    bool back = awake_reaches(ctl, 0);
    int32_t naps = sh->naps_begun;
    munmap(ctl, len);
    stop_server(srv);
    assert_int_equal(held, 3); /* two calls alone, the 14 others in a batch */
    assert_int_equal(before, 2);
    assert_int_equal(left, 0);
    assert_int_equal(after, 1); /* the worker */
    assert_true(back);
    assert_int_equal(naps, 1);
}

/* The server killed -9 (its manager; the workers die with it) while a batch waits for the
 * one worker, busy with a held nap: the held nap may have run, and the call that waited alone
 * and the batch's calls, its first as the others, say that they did not run; none ran. */
static void server_killed_with_a_batch_waiting(void **state)
{
    (void)state;
    pid_t srv = start_server(1);
    shmrpc_client *c = connect_to();
    size_t len;
    shmrpc__shm_ctl *ctl = map_ctl(&len);
    assert_non_null(ctl);
    shmrpc_call *calls[6];
    assert_int_equal(nap_start(c, CALLS_NAP_HELD, 30000, &calls[0]), 0);
    await_at_least(&sh->running, 1, "the held nap running");
    for (int i = 1; i < 6; i++) /* one alone on the second lane, four in a batch */
        assert_int_equal(nap_start(c, 600 + (uint32_t)i, 30000, &calls[i]), 0);
    /* A wait that lasts sends the batch, on a third lane (opened within the wait's step). */
    size_t which;
    for (int i = 0; i < 50 && open_slots_of(ctl, getpid()) < 3; i++)
        assert_int_equal(shmrpc_client_wait(c, calls, 6, 200, &which), SHMRPC_ETIMEDOUT);
    int lanes = open_slots_of(ctl, getpid());
    munmap(ctl, len);
    assert_int_equal(kill(srv, SIGKILL), 0);
    test_reap(srv, 5000);
    test_shm_forget(addr); /* what the killed server leaves, even when an assert fails below */
    wait_all(c, calls, 6);
    assert_int_equal(lanes, 3);
    shmrpc_bytes b;
    int rc = shmrpc_call_result(calls[0], &b);
    if (rc != SHMRPC_EPEERDIED && rc != SHMRPC_EUNAVAIL)
        fail_msg("the held nap: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    char gone[200]; /* each call's own reason: none ran */
    snprintf(gone, sizeof gone, "the server of %s went away during the call; it did not run", addr);
    for (int i = 1; i < 6; i++) {
        rc = shmrpc_call_result(calls[i], &b);
        const char *msg = shmrpc_errmsg();
        if (rc != SHMRPC_EUNAVAIL || strcmp(msg, gone) != 0)
            fail_msg("nap %d: %s: %s", 600 + i, shmrpc_strerror(rc), msg);
    }
    for (int i = 0; i < 6; i++)
        shmrpc_call_free(calls[i]);
    shmrpc_client_free(c);
    for (int i = 1; i < 6; i++)
        assert_int_equal(naps_of(600 + (uint32_t)i), 0);
}

int main(void)
{
    if (calls_shared_map() != 0) return 1;
    fills = mmap(NULL, sizeof *fills, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (fills == MAP_FAILED) return 1;
    signal(SIGPIPE, SIG_IGN);
    alarm(280);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(sixty_four_each_answered, setup),
        cmocka_unit_test_setup(side_by_side_any_order, setup),
        cmocka_unit_test_setup(answered_out_of_order, setup),
        cmocka_unit_test_setup(deadlines_of_their_own, setup),
        cmocka_unit_test_setup(behind_a_held_batch, setup),
        cmocka_unit_test_setup(cancelled_one_of_many, setup),
        cmocka_unit_test_setup(worker_killed_with_calls_in_flight, setup),
        cmocka_unit_test_setup(worker_killed_during_a_batch, setup),
        cmocka_unit_test_setup(answers_past_the_channel, setup),
        cmocka_unit_test_setup(forked_child_leaves_the_calls, setup),
        cmocka_unit_test_setup(cancelled_before_it_was_sent, setup),
        cmocka_unit_test_setup(awake_comes_back, setup),
        cmocka_unit_test_setup(client_killed_with_calls_in_flight, setup),
        cmocka_unit_test_setup(server_killed_with_a_batch_waiting, setup),
    };
    if (getenv("INFLIGHT_TEST_ONLY")) cmocka_set_test_filter(getenv("INFLIGHT_TEST_ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
