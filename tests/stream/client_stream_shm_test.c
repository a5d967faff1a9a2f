/* SPDX-License-Identifier: MIT */
/* Client streams over shm:// against real server processes (docs/streams.md, "How shm://
 * carries it"): a worker SIGKILLed while the client sends (each item the handler read, it
 * read once, the open does not run again, and the sends fail saying so), a client SIGKILLed
 * while its handler waits for items (the handler learns so and returns); a client's ring
 * whose counts or records lie (the handler's read fails with SHMRPC_EPROTO, or
 * SHMRPC_ETOOBIG for an item above the server's maximum, and the client's answer says so),
 * a worker's count that lies (the client's send fails with SHMRPC_EPROTO), and an open whose
 * head names other ways than its method streams, or none. The handlers note what they did in
 * memory shared with the test. Every wait is bounded; every server is stopped and its files
 * checked. */
#define _GNU_SOURCE
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
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "gather.h"
#include "procs.h"
#include "ring_peer.h"

enum { MAX_N = 100000 };

/* What the servers' handlers did, in memory shared with the forked servers. */
typedef struct shared {
    _Atomic int32_t opened;      /* handlers that began */
    _Atomic int32_t returned;    /* ... and returned */
    _Atomic int32_t status;      /* what the last of them returned */
    _Atomic int32_t pid;         /* the worker that runs the last of them */
    _Atomic int32_t read;        /* the items sum's handler read */
    _Atomic int32_t hold_after;  /* sum's handler stops reading after so many (0: never) */
    _Atomic int32_t released;    /* deaf's handler returns once it is set */
    _Atomic uint8_t seen[MAX_N]; /* how often sum's handler read the part n */
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

/* Reads every part, noting each; holds (reads no more, for 20 s at most) after hold_after. */
static int sum(shmrpc_ctx *ctx, gather_Total *out)
{
    began();
    gather_Part p;
    int rc;
    while ((rc = gather_sum_read(ctx, &p)) == 1) {
        if (p.n >= 0 && p.n < MAX_N) atomic_fetch_add(&sh->seen[p.n], 1);
        out->sum += p.n;
        out->count++;
        int32_t hold = atomic_load(&sh->hold_after);
        if (atomic_fetch_add(&sh->read, 1) + 1 == hold)
            for (int i = 0; i < 20000; i++)
                usleep(1000);
    }
    return ended(rc);
}

/* Reads nothing until the test lets it go, or the stream is no longer wanted. */
static int deaf(shmrpc_ctx *ctx, int64_t *out)
{
    began();
    int rc = 0;
    for (int i = 0; i < 20000 && !atomic_load(&sh->released) && rc == 0; i++) {
        usleep(1000);
        rc = shmrpc_ctx_cancelled(ctx);
    }
    *out = rc;
    return ended(rc);
}

static int doubled(shmrpc_ctx *ctx)
{
    int64_t v;
    int rc;
    while ((rc = gather_doubled_read(ctx, &v)) == 1)
        if ((rc = gather_doubled_write(ctx, 2 * v)) != 0) break;
    return rc;
}

static int concat(shmrpc_ctx *ctx, shmrpc_bytes *out)
{
    (void)ctx;
    *out = shmrpc_bytes_of("", 0);
    return 0;
}

static int drain(shmrpc_ctx *ctx)
{
    int64_t v;
    int rc;
    while ((rc = gather_drain_read(ctx, &v)) == 1)
        ;
    return rc;
}

static const Gather_handlers handlers = {
    .sum = sum, .deaf = deaf, .doubled = doubled, .concat = concat, .drain = drain};

static char addr[64];

static int setup(void **state)
{
    (void)state;
    static int n;
    snprintf(addr, sizeof addr, "shm://gather_shm_%d_%d", (int)getpid(), n++);
    memset(sh, 0, sizeof *sh);
    return 0;
}

static pid_t start_server(int workers)
{
    test_server ts = {&Gather_service, &handlers, addr, workers, 0, NULL, NULL, NULL};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    return pid;
}

static void stop_server(pid_t srv)
{
    atomic_store(&sh->released, 1); /* a deaf handler still held ends */
    assert_true(test_stop_server(srv));
    assert_int_equal(test_shm_segments(addr), 0);
}

static shmrpc_client *connect_to(void)
{
    int rc;
    shmrpc_client *c = test_connect(&Gather_service_info, NULL, addr, &rc);
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

/* A whole stream of parts 0 .. n-1 on c, summed. */
static void parts_sum(shmrpc_client *c, int64_t n)
{
    shmrpc_stream *st;
    assert_int_equal(gather_sum_open(c, &st), 0);
    for (int64_t i = 0; i < n; i++) {
        gather_Part p = {.n = i};
        assert_int_equal(gather_sum_send(st, &p), 0);
    }
    gather_Total t;
    assert_int_equal(gather_sum_done(st, &t), 0);
    assert_int_equal(t.count, n);
    assert_int_equal(t.sum, n * (n - 1) / 2);
    shmrpc_stream_close(st);
}

/* The worker that runs sum's handler is SIGKILLed once it read 10 parts and holds: the
 * client's sends fill the ring, then fail with SHMRPC_EPEERDIED, saying so; the handler read
 * each of those 10 once and no other; the open ran once; and the client's next stream runs on
 * the other worker. */
static void worker_killed_mid_stream(void **state)
{
    (void)state;
    pid_t srv = start_server(2);
    shmrpc_client *c = connect_to();
    atomic_store(&sh->hold_after, 10);
    shmrpc_stream *st;
    assert_int_equal(gather_sum_open(c, &st), 0);
    int64_t n = 0;
    for (; n < 10; n++) {
        gather_Part p = {.n = n};
        assert_int_equal(gather_sum_send(st, &p), 0);
    }
    await_at_least(&sh->read, 10, "sum's handler read");
    pid_t victim = atomic_load(&sh->pid);
    assert_true(victim > 0 && victim != srv);
    assert_int_equal(kill(victim, SIGKILL), 0);
    int rc = 0;
    for (; n < 1000000 && rc == 0; n++) {
        gather_Part p = {.n = n % MAX_N};
        rc = gather_sum_send(st, &p);
    }
    assert_int_equal(rc, SHMRPC_EPEERDIED);
    char want[100];
    snprintf(want, sizeof want, "the worker (pid %d) died during the call", (int)victim);
    assert_string_equal(shmrpc_errmsg(), want);
    assert_true(n > 1000); /* the ring filled first: a send fails when it waits */
    gather_Total t;
    assert_int_equal(gather_sum_done(st, &t), SHMRPC_EPEERDIED); /* the end, said again */
    assert_string_equal(shmrpc_errmsg(), want);
    shmrpc_stream_close(st);
    for (int i = 0; i < MAX_N; i++)
        if (atomic_load(&sh->seen[i]) != (i < 10))
            fail_msg("part %d was read %d times", i, (int)atomic_load(&sh->seen[i]));
    assert_int_equal(atomic_load(&sh->opened), 1); /* not sent again */
    assert_int_equal(atomic_load(&sh->returned), 0);
    atomic_store(&sh->hold_after, 0);
    parts_sum(c, 1000);
    shmrpc_client_free(c);
    stop_server(srv);
}

/* A client SIGKILLed while its stream's handler waits for the next part: the handler's read
 * fails with SHMRPC_EPEERDIED, it returns, and the worker serves the next client's stream. */
static void client_killed_mid_stream(void **state)
{
    (void)state;
    pid_t srv = start_server(1);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        alarm(30);
        shmrpc_client *c = connect_to();
        shmrpc_stream *st;
        if (gather_sum_open(c, &st) != 0) _exit(2);
        for (int64_t i = 0; i < 5; i++) {
            gather_Part p = {.n = i};
            if (gather_sum_send(st, &p) != 0) _exit(3);
        }
        for (int i = 0; i < 20000 && atomic_load(&sh->read) < 5; i++)
            usleep(1000);
        raise(SIGKILL);
        _exit(4);
    }
    int status = test_reap(child, 20000);
    await_at_least(&sh->returned, 1, "sum's handler returned");
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(atomic_load(&sh->read), 5);
    assert_int_equal(atomic_load(&sh->status), SHMRPC_EPEERDIED);
    shmrpc_client *c = connect_to();
    parts_sum(c, 100); /* on the one worker, free again */
    shmrpc_client_free(c);
    stop_server(srv);
}

/* A client's ring that lies to the worker, written while sum's handler waits for parts: a
 * count of more than the ring holds, a record longer than the ring, a piece that does not
 * continue its item, an item above the server's maximum, and a piece of no bytes with more
 * to come. Each fails the handler's read, which it returns, and the client's answer says
 * so. */
static void a_client_that_lies_about_its_ring(void **state)
{
    (void)state;
    pid_t srv = start_server(1);
    shmrpc_client *c = connect_to();
    static const struct {
        int rc;
        const char *msg;
    } want[] = {
        {SHMRPC_EPROTO, "the client's count of the stream's ring is off"},
        {SHMRPC_EPROTO, "the client's ring of the stream is off"},
        {SHMRPC_EPROTO, "the client's ring of the stream is off"},
        {SHMRPC_ETOOBIG, "an item of 4294967295 bytes is larger than the server's maximum of "
                         "67108864 bytes"},
        {SHMRPC_EPROTO, "the client's ring of the stream is off"},
    };
    for (int k = 0; k < TEST_RING_LIES; k++) {
        shmrpc_stream *st;
        assert_int_equal(gather_sum_open(c, &st), 0);
        await_at_least(&sh->opened, k + 1, "sum's handler began");
        size_t size;
        shmrpc__shm_chan *h =
            test_stream_channel(addr, SHMRPC__RING_MAX | SHMRPC__STREAM_IN, true, &size);
        shmrpc__stream_ring *r = test_stream_ring(h, 0);
        uint32_t tail = test_ring_lie(r, k);
        atomic_store(&r->tail.word, tail); /* the handler's wait looks every 20 ms */
        await_at_least(&sh->returned, k + 1, "sum's handler returned");
        assert_int_equal(atomic_load(&sh->status), want[k].rc);
        gather_Total t;
        int rc = gather_sum_done(st, &t);
        if (rc != want[k].rc || strcmp(shmrpc_errmsg(), want[k].msg) != 0)
            fail_msg("lie %d: %d (%s), not %d (%s)", k, rc, shmrpc_errmsg(), want[k].rc,
                     want[k].msg);
        shmrpc_stream_close(st);
        munmap(h, size);
    }
    parts_sum(c, 100); /* the worker serves on */
    shmrpc_client_free(c);
    stop_server(srv);
}

/* A worker's count that says it read more of the client's ring than was written, set while
 * deaf's handler reads nothing: the client's next send fails with SHMRPC_EPROTO, and the
 * handler learns the stream was ended. */
static void a_worker_that_lies_about_the_clients_ring(void **state)
{
    (void)state;
    pid_t srv = start_server(1);
    shmrpc_client *c = connect_to();
    shmrpc_stream *st;
    assert_int_equal(gather_deaf_open(c, &st), 0);
    await_at_least(&sh->opened, 1, "deaf's handler began");
    assert_int_equal(gather_deaf_send(st, 1), 0);
    size_t size;
    shmrpc__shm_chan *h =
        test_stream_channel(addr, SHMRPC__RING_MAX | SHMRPC__STREAM_IN, true, &size);
    shmrpc__stream_ring *r = test_stream_ring(h, 0);
    atomic_store(&r->head.word, atomic_load(&r->tail.word) + 4096);
    assert_int_equal(gather_deaf_send(st, 2), SHMRPC_EPROTO);
    assert_string_equal(shmrpc_errmsg(), "the worker's count of the stream's ring is off");
    assert_int_equal(gather_deaf_send(st, 3), SHMRPC_EPROTO); /* said again */
    int64_t why;
    assert_int_equal(gather_deaf_done(st, &why), SHMRPC_EPROTO);
    await_at_least(&sh->returned, 1, "deaf's handler returned");
    assert_int_equal(atomic_load(&sh->status), SHMRPC_ECANCELLED);
    shmrpc_stream_close(st);
    munmap(h, size);
    parts_sum(c, 100);
    shmrpc_client_free(c);
    stop_server(srv);
}

/* An open of sum whose head, written over while it waits for the one worker, names the
 * ways of a result that streams, no way, or no stream: the server refuses each, saying why,
 * and its handler does not run. */
static void an_open_that_names_other_ways(void **state)
{
    (void)state;
    pid_t srv = start_server(1);
    shmrpc_client *holder = connect_to(), *c = connect_to();
    static const struct {
        uint32_t stream;
        int rc;
        const char *msg;
    } cases[] = {
        {SHMRPC__RING_MAX | SHMRPC__STREAM_OUT, SHMRPC_EINVAL,
         "'sum' streams otherwise than the stream opened"},
        {SHMRPC__RING_MAX, SHMRPC_EPROTO, "the stream's ring is malformed"},
        {0, SHMRPC_EINVAL, "'sum' streams its parameter: it is opened, not called"},
    };
    for (int k = 0; k < 3; k++) {
        atomic_store(&sh->released, 0);
        int32_t opened = atomic_load(&sh->opened), returned = atomic_load(&sh->returned);
        shmrpc_stream *held, *st;
        assert_int_equal(gather_deaf_open(holder, &held), 0);
        await_at_least(&sh->opened, opened + 1, "deaf's handler began");
        assert_int_equal(gather_sum_open(c, &st), 0);
        size_t size;
        shmrpc__shm_chan *h =
            test_stream_channel(addr, SHMRPC__RING_MAX | SHMRPC__STREAM_IN, false, &size);
        atomic_store(&h->stream, cases[k].stream);
        atomic_store(&sh->released, 1);
        await_at_least(&sh->returned, returned + 1, "deaf's handler returned");
        gather_Total t;
        int rc = gather_sum_done(st, &t);
        if (rc != cases[k].rc || strcmp(shmrpc_errmsg(), cases[k].msg) != 0)
            fail_msg("case %d: %d (%s), not %d (%s)", k, rc, shmrpc_errmsg(), cases[k].rc,
                     cases[k].msg);
        assert_int_equal(atomic_load(&sh->opened), opened + 1); /* sum's handler did not run */
        shmrpc_stream_close(st);
        shmrpc_stream_close(held);
        /* Put back: the client writes the head's stream only when it changes. */
        atomic_store(&h->stream, SHMRPC__RING_MAX | SHMRPC__STREAM_IN);
        munmap(h, size);
        parts_sum(c, 10);
    }
    shmrpc_client_free(holder);
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
        cmocka_unit_test_setup(a_client_that_lies_about_its_ring, setup),
        cmocka_unit_test_setup(a_worker_that_lies_about_the_clients_ring, setup),
        cmocka_unit_test_setup(an_open_that_names_other_ways, setup),
    };
    return cmocka_run_group_tests_name("shm", tests, NULL, NULL);
}
