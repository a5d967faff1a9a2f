/* SPDX-License-Identifier: MIT */
/* Server streams over shm:// against real server processes (docs/streams.md, "How shm://
 * carries it"): a worker SIGKILLed mid-stream (every item it wrote comes once and in order,
 * then SHMRPC_EPEERDIED, and the open does not run again), a client SIGKILLed mid-stream
 * (its handler learns so and returns), and a stream closed early whose handler goes on
 * (the client's calls go on beside it); and a ring whose counts or records lie, on either
 * side: the side that reads them ends the stream with SHMRPC_EPROTO (or SHMRPC_ETOOBIG for
 * an item above the client's maximum) and tells the other. The first three run over
 * tcp:// too (docs/wire.md, "Streams"), where the items in transit when a worker dies are
 * lost but none comes twice. The handlers note what they did in memory shared with the
 * test. Every wait is bounded; every server is stopped and its files checked. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "port.h"
#include "procs.h"
#include "ring_peer.h"
#include "stream.h"
#include "streamer_handlers.h"
#include "transport/shm/shm.h"

/* What the servers' handlers did, in memory shared with the forked servers. */
typedef struct shared {
    _Atomic int32_t opened;   /* forever's and deaf's handlers that began */
    _Atomic int32_t returned; /* ... and returned */
    _Atomic int32_t status;   /* what the last of them returned */
    _Atomic int32_t pid;      /* the worker that runs the last of them */
    _Atomic int32_t released; /* deaf's handler returns once it is set */
    _Atomic int32_t kid;      /* a child of the client that outlives it */
    _Atomic int32_t written;  /* the items forever's handler wrote */
} shared;
static shared *sh;

static void began(void)
{
    atomic_store(&sh->pid, (int32_t)getpid());
    atomic_fetch_add(&sh->opened, 1);
}

static int ended(int rc)
{
    atomic_store(&sh->status, rc);
    atomic_fetch_add(&sh->returned, 1);
    return rc;
}

static int forever(shmrpc_ctx *ctx, int64_t pad)
{
    (void)pad;
    began();
    for (int64_t i = 0;; i++) {
        int rc = streamer_forever_write(ctx, i);
        if (rc) return ended(rc);
        atomic_fetch_add(&sh->written, 1);
    }
}

static int quiet(shmrpc_ctx *ctx)
{
    began();
    return ended(shmrpc_ctx_wait_cancelled(ctx, 10000));
}

static int deaf(shmrpc_ctx *ctx)
{
    (void)ctx;
    began();
    for (int i = 0; i < 20000 && !atomic_load(&sh->released); i++)
        usleep(1000);
    return ended(0);
}

static int chunks(shmrpc_ctx *ctx, shmrpc_bytes spec)
{
    (void)ctx;
    (void)spec;
    return 0;
}

static const Streamer_handlers handlers = {.ticks = test_ticks,
                                           .forever = forever,
                                           .quiet = quiet,
                                           .deaf = deaf,
                                           .chunks = chunks,
                                           .slow = test_slow,
                                           .twice = test_twice};

static char addr[64];
static bool tcp; /* the group over tcp:// (its forked servers run streams on their pools) */

static int setup(void **state)
{
    (void)state;
    static int n;
    if (tcp)
        snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    else
        snprintf(addr, sizeof addr, "shm://stream_shm_%d_%d", (int)getpid(), n++);
    memset(sh, 0, sizeof *sh);
    return 0;
}

static pid_t start_server(int workers)
{
    test_server ts = {&Streamer_service, &handlers, addr, workers, 0, NULL, NULL, NULL};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    return pid;
}

static void stop_server(pid_t srv)
{
    atomic_store(&sh->released, 1); /* a deaf handler still held ends */
    assert_true(test_stop_server(srv));
    if (!tcp) assert_int_equal(test_shm_segments(addr), 0);
}

static shmrpc_client *connect_to(void)
{
    int rc;
    shmrpc_client *c = test_connect(&Streamer_service_info, NULL, addr, &rc);
    if (!c || rc) fail_msg("connect %s: %s: %s", addr, shmrpc_strerror(rc), shmrpc_errmsg());
    return c;
}

/* Polls (every ms, at most 20 s) until *v reaches at least want. */
static void await_at_least(_Atomic int32_t *v, int32_t want, const char *what)
{
    for (int i = 0; i < 20000 && atomic_load(v) < want; i++)
        usleep(1000);
    if (atomic_load(v) < want) fail_msg("%s: %d, not %d, after 20 s", what, (int)*v, (int)want);
}

/* A stream of ticks 0 .. n-1 on c, whole and in order. */
static void ticks_come(shmrpc_client *c, int64_t n)
{
    shmrpc_stream *st;
    assert_int_equal(streamer_ticks_open(c, n, -1, 0, &st), 0);
    streamer_Tick t;
    for (int64_t i = 0; i < n; i++) {
        assert_int_equal(streamer_ticks_recv(st, &t), 1);
        assert_int_equal(t.at, i);
    }
    assert_int_equal(streamer_ticks_recv(st, &t), 0);
    shmrpc_stream_close(st);
}

/* The worker that runs forever's handler is SIGKILLed after the client read 10 items and
 * the handler wrote 100: every item it wrote comes, once and in order, then
 * SHMRPC_EPEERDIED, saying so; the open ran once; and the client's next stream runs on the
 * other worker. Over tcp://, the items in transit at the kill are lost. */
static void worker_killed_mid_stream(void **state)
{
    (void)state;
    pid_t srv = start_server(2);
    shmrpc_client *c = connect_to();
    shmrpc_stream *st;
    assert_int_equal(streamer_forever_open(c, 0, &st), 0);
    int64_t v, n = 0;
    for (; n < 10; n++) {
        assert_int_equal(streamer_forever_recv(st, &v), 1);
        assert_int_equal(v, n);
    }
    await_at_least(&sh->written, 100, "forever's items written");
    pid_t victim = atomic_load(&sh->pid);
    assert_true(victim > 0 && victim != srv);
    assert_int_equal(kill(victim, SIGKILL), 0);
    int rc;
    while ((rc = streamer_forever_recv(st, &v)) == 1) {
        if (v != n) fail_msg("item %lld came where %lld was due", (long long)v, (long long)n);
        n++;
    }
    assert_int_equal(rc, SHMRPC_EPEERDIED);
    char want[300];
    if (tcp) /* what was in transit when it died is lost, but none comes twice */
        snprintf(want, sizeof want,
                 "the connection to %s broke during the stream, after %lld items: it may have "
                 "run (it is not opened again)",
                 addr, (long long)n);
    else
        snprintf(want, sizeof want, "the worker (pid %d) died during the call", (int)victim);
    if (strncmp(shmrpc_errmsg(), want, strlen(want)) != 0)
        fail_msg("'%s', not '%s'", shmrpc_errmsg(), want);
    /* A write that returned was published, so over shm:// every one comes; one more may
     * have come whose handler was killed before it counted it. Over tcp://, the items past
     * the 10 read may all have been in transit (a server slowed by ASan had sent no more by
     * the kill in 2 runs of 60, when the test asked for more than 10). */
    int32_t written = atomic_load(&sh->written);
    if (n > written + 1) fail_msg("%lld items came of %d written", (long long)n, (int)written);
    if (!tcp && n < written) fail_msg("%lld items came of %d written", (long long)n, (int)written);
    shmrpc_stream_close(st);
    assert_int_equal(atomic_load(&sh->opened), 1); /* not sent again */
    assert_int_equal(atomic_load(&sh->returned), 0);
    ticks_come(c, 100);
    shmrpc_client_free(c);
    stop_server(srv);
}

/* A client SIGKILLed while its stream's handler waits for room, with a child of it alive
 * (keep_child) or not: the handler's write fails with SHMRPC_EPEERDIED within a few checks,
 * it returns, and the worker serves the next client's stream. A child holds a copy of the
 * client's rendezvous socket, so the manager sees no hang-up and keeps the slot, and the
 * worker, serving the stream, runs no sweep: the handler learns by the client's process
 * that it is gone. */
static void client_killed(bool keep_child)
{
    pid_t srv = start_server(1);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        alarm(30);
        shmrpc_client *c = connect_to();
        shmrpc_stream *st;
        int64_t v;
        if (streamer_forever_open(c, 0, &st) != 0) _exit(2);
        for (int i = 0; i < 5; i++)
            if (streamer_forever_recv(st, &v) != 1 || v != i) _exit(3);
        pid_t kid = keep_child ? fork() : 0;
        if (keep_child && kid == 0) { /* the fds held, until the test lets go of it */
            alarm(30);
            for (;;)
                pause();
        }
        atomic_store(&sh->kid, kid);
        raise(SIGKILL);
        _exit(4);
    }
    int status = test_reap(child, 20000);
    for (int i = 0; i < 20000 && atomic_load(&sh->returned) < 1; i++)
        usleep(1000);
    int returned = atomic_load(&sh->returned);
    pid_t kid = atomic_load(&sh->kid);
    if (kid > 0) kill(kid, SIGKILL); /* before any failure: nothing left behind */
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_true(!keep_child || kid > 0);
    assert_int_equal(returned, 1);
    assert_int_equal(atomic_load(&sh->status), SHMRPC_EPEERDIED);
    shmrpc_client *c = connect_to();
    ticks_come(c, 100); /* on the one worker, free again */
    shmrpc_client_free(c);
    stop_server(srv);
}

static void client_killed_mid_stream(void **state)
{
    (void)state;
    client_killed(false);
}

static void client_killed_with_a_child_alive(void **state)
{
    (void)state;
    client_killed(true);
}

/* A stream closed while its handler neither writes nor asks: the close returns at once,
 * and the client's calls go on beside the handler, which keeps its lane and its worker
 * until it returns. */
static void closed_early_calls_go_on(void **state)
{
    (void)state;
    pid_t srv = start_server(2);
    shmrpc_client *c = connect_to();
    shmrpc_stream *st;
    assert_int_equal(streamer_deaf_open(c, &st), 0);
    await_at_least(&sh->opened, 1, "deaf's handler began");
    shmrpc_stream_close(st);
    shmrpc_client_next_timeout(c, 10000); /* deaf's handler holds on for 20 s */
    int64_t x;
    assert_int_equal(streamer_twice(c, 21, &x), 0);
    assert_int_equal(x, 42);
    assert_int_equal(atomic_load(&sh->returned), 0); /* answered beside it */
    /* A second stream takes another lane, and the other worker. */
    ticks_come(c, 10);
    assert_int_equal(atomic_load(&sh->returned), 0);
    atomic_store(&sh->released, 1);
    await_at_least(&sh->returned, 1, "deaf's handler returned");
    ticks_come(c, 10);
    shmrpc_client_free(c);
    stop_server(srv);
}

/* The channel of this process's stream to addr whose open a worker runs, mapped here as a
 * hostile peer would, and its ring. */
static shmrpc__shm_chan *stream_channel(size_t *size, shmrpc__stream_ring **ring)
{
    shmrpc__shm_chan *h =
        test_stream_channel(addr, SHMRPC__RING_MAX | SHMRPC__STREAM_OUT, true, size);
    *ring = test_stream_ring(h, 0);
    assert_true((uint8_t *)(*ring + 1) + SHMRPC__RING_MAX <= (uint8_t *)h + *size);
    return h;
}

/* A ring that lies to the client, written while quiet's handler writes nothing: a count of
 * more than the ring holds, a record longer than the ring, a piece that does not continue
 * its item, an item above the client's maximum, a piece of no bytes with more to come, and a
 * piece that reaches past the room the client gave back (ring_peer.h). Each ends the stream
 * on the client's side, saying so, and its handler learns it was ended. */
static void a_worker_that_lies_about_its_ring(void **state)
{
    (void)state;
    pid_t srv = start_server(1);
    shmrpc_client *c = connect_to();
    static const struct {
        int rc;
        const char *msg;
    } want[] = {
        {SHMRPC_EPROTO, "the worker's count of the stream's ring is off"},
        {SHMRPC_EPROTO, "the worker's ring of the stream is off"},
        {SHMRPC_EPROTO, "the worker's ring of the stream is off"},
        {SHMRPC_ETOOBIG, "an item of 4294967295 bytes is larger than the client's maximum of "
                         "67108864 bytes"},
        {SHMRPC_EPROTO, "the worker's ring of the stream is off"},
        {SHMRPC_EPROTO, "the worker's ring of the stream is off"},
    };
    for (int k = 0; k < TEST_RING_LIES; k++) {
        shmrpc_stream *st;
        assert_int_equal(streamer_quiet_open(c, &st), 0);
        await_at_least(&sh->opened, k + 1, "quiet's handler began");
        size_t size;
        shmrpc__stream_ring *r;
        shmrpc__shm_chan *h = stream_channel(&size, &r);
        uint32_t tail = test_ring_lie(r, k);
        atomic_store(&r->tail.word, tail);
        int64_t v;
        int rc = streamer_quiet_recv(st, &v);
        if (rc != want[k].rc || strcmp(shmrpc_errmsg(), want[k].msg) != 0)
            fail_msg("lie %d: %d (%s), not %d (%s)", k, rc, shmrpc_errmsg(), want[k].rc,
                     want[k].msg);
        await_at_least(&sh->returned, k + 1, "quiet's handler returned");
        assert_int_equal(atomic_load(&sh->status), SHMRPC_ECANCELLED);
        shmrpc_stream_close(st);
        munmap(h, size);
    }
    ticks_come(c, 100); /* the worker serves on */
    shmrpc_client_free(c);
    stop_server(srv);
}

/* A client whose count says it read more than was written, set while forever's handler
 * waits for room: the handler's write fails with SHMRPC_EPROTO, and the client reads what
 * was written, then that status. */
static void a_client_that_lies_about_its_ring(void **state)
{
    (void)state;
    pid_t srv = start_server(1);
    shmrpc_client *c = connect_to();
    shmrpc_stream *st;
    assert_int_equal(streamer_forever_open(c, 0, &st), 0);
    await_at_least(&sh->opened, 1, "forever's handler began");
    size_t size;
    shmrpc__stream_ring *r;
    shmrpc__shm_chan *h = stream_channel(&size, &r);
    /* The ring fills (the worker's count stops), and then the lie. */
    uint32_t tail = 0, before;
    do {
        before = tail;
        usleep(20000);
        tail = atomic_load(&r->tail.word);
    } while (tail == 0 || tail != before);
    atomic_store(&r->head.word, tail + 4096);
    await_at_least(&sh->returned, 1, "forever's handler returned");
    assert_int_equal(atomic_load(&sh->status), SHMRPC_EPROTO);
    int64_t v, n = 0;
    int rc;
    while ((rc = streamer_forever_recv(st, &v)) == 1)
        assert_int_equal(v, n++);
    assert_int_equal(rc, SHMRPC_EPROTO);
    assert_string_equal(shmrpc_errmsg(), "the client's count of the stream's ring is off");
    assert_true(n > 1000); /* a ring's worth */
    shmrpc_stream_close(st);
    munmap(h, size);
    ticks_come(c, 100);
    shmrpc_client_free(c);
    stop_server(srv);
}

int main(void)
{
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(worker_killed_mid_stream, setup),
        cmocka_unit_test_setup(client_killed_mid_stream, setup),
        cmocka_unit_test_setup(client_killed_with_a_child_alive, setup),
        cmocka_unit_test_setup(closed_early_calls_go_on, setup),
        cmocka_unit_test_setup(a_worker_that_lies_about_its_ring, setup),
        cmocka_unit_test_setup(a_client_that_lies_about_its_ring, setup),
    };
    /* Over tcp://, what does not depend on the ring: a child that keeps a killed client's
     * socket keeps its connection open too, so its server cannot tell (its deadline ends
     * the stream). */
    const struct CMUnitTest over_tcp[] = {
        cmocka_unit_test_setup(worker_killed_mid_stream, setup),
        cmocka_unit_test_setup(client_killed_mid_stream, setup),
        cmocka_unit_test_setup(closed_early_calls_go_on, setup),
    };
    int failed = cmocka_run_group_tests_name("shm", tests, NULL, NULL);
    tcp = true;
    return failed + cmocka_run_group_tests_name("tcp", over_tcp, NULL, NULL);
}
