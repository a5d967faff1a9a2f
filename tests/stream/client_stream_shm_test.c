/* SPDX-License-Identifier: MIT */
/* Client streams over shm:// against real server processes (docs/streams.md, "How shm://
 * carries it"): a worker SIGKILLed while the client sends (each item the handler read, it
 * read once, the open does not run again, and the sends fail saying so), a client SIGKILLed
 * while its handler waits for items (the handler learns so and returns); a client's ring
 * whose counts or records lie (the handler's read fails with SHMRPC_EPROTO, or
 * SHMRPC_ETOOBIG for an item above the server's maximum, and the client's answer says so),
 * a worker's count that lies (the client's send fails with SHMRPC_EPROTO), and an open whose
 * head names other ways than its method streams, or none. The two kills run over tcp://
 * too (docs/wire.md, "Streams", revision 9), and there a raw client's frames lie instead:
 * items past the window, cut short, after the last, naming another method, of a client of
 * revision 8; and the window the server gives back, whole. The handlers note what they did
 * in memory shared with the test. Every wait is bounded; every server is stopped and its
 * files checked. */
#define _GNU_SOURCE
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
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "gather.h"
#include "port.h"
#include "procs.h"
#include "raw_peer.h"
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

/* Reads every part, and answers with none of them. */
static int concat(shmrpc_ctx *ctx, shmrpc_bytes *out)
{
    began();
    shmrpc_bytes part;
    int rc;
    while ((rc = gather_concat_read(ctx, &part)) == 1)
        ;
    *out = shmrpc_bytes_of("", 0);
    return ended(rc);
}

static int drain(shmrpc_ctx *ctx)
{
    began();
    int64_t v;
    int rc;
    while ((rc = gather_drain_read(ctx, &v)) == 1)
        ;
    return ended(rc);
}

/* Reads and writes nothing until the test lets it go, or the stream is no longer wanted. */
static int stuck(shmrpc_ctx *ctx)
{
    int64_t rc;
    return deaf(ctx, &rc);
}

static const Gather_handlers handlers = {
    .sum = sum, .deaf = deaf, .doubled = doubled, .concat = concat, .drain = drain, .stuck = stuck};

static char addr[64];
static int port; /* over tcp:// */
static bool tcp; /* the group over tcp:// */

static int setup(void **state)
{
    (void)state;
    static int n;
    port = test_free_port();
    if (tcp)
        snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", port);
    else
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
    if (!tcp) assert_int_equal(test_shm_segments(addr), 0);
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
 * client's sends fill the ring, then fail with SHMRPC_EPEERDIED, saying so (over tcp://, as
 * soon as the connection's end is seen); the handler read each of those 10 once and no
 * other; the open ran once; and the client's next stream runs on the other worker. */
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
    char want[200];
    if (tcp)
        snprintf(want, sizeof want, "the connection to %s broke during the stream", addr);
    else
        snprintf(want, sizeof want, "the worker (pid %d) died during the call", (int)victim);
    if (strncmp(shmrpc_errmsg(), want, strlen(want)) != 0)
        fail_msg("'%s', not '%s'", shmrpc_errmsg(), want);
    if (!tcp) assert_true(n > 1000); /* the ring filled first: a send fails when it waits */
    gather_Total t;
    assert_int_equal(gather_sum_done(st, &t), SHMRPC_EPEERDIED); /* the end, said again */
    if (strncmp(shmrpc_errmsg(), want, strlen(want)) != 0)
        fail_msg("'%s', not '%s'", shmrpc_errmsg(), want);
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

/* The sending thread of a stream both ways (of stuck): until a send fails. */
typedef struct sender {
    shmrpc_stream *st;
    _Atomic int64_t sent;
    int rc;
} sender;

static void *send_until_failed(void *arg)
{
    sender *s = arg;
    int rc;
    while ((rc = gather_stuck_send(s->st, atomic_load(&s->sent))) == 0)
        atomic_fetch_add(&s->sent, 1);
    s->rc = rc;
    return NULL;
}

/* The worker of a stream both ways SIGKILLed while one thread of the client waits for room
 * to send and another for an item: both fail with SHMRPC_EPEERDIED, and the client's next
 * stream runs on the other worker. */
static void worker_killed_while_both_wait(void **state)
{
    (void)state;
    pid_t srv = start_server(2);
    shmrpc_client *c = connect_to();
    shmrpc_client_set_timeout(c, 60000);
    sender s = {.sent = 0};
    assert_int_equal(gather_stuck_open(c, &s.st), 0);
    await_at_least(&sh->opened, 1, "stuck's handler began");
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_until_failed, &s), 0);
    int64_t last = -1; /* the sends wait for room: none for 200 ms (10 s at most) */
    for (int i = 0; i < 50 && atomic_load(&s.sent) != last; i++) {
        last = atomic_load(&s.sent);
        usleep(200000);
    }
    pid_t victim = atomic_load(&sh->pid);
    assert_true(victim > 0 && victim != srv);
    assert_int_equal(kill(victim, SIGKILL), 0);
    int64_t v;
    int rc = gather_stuck_recv(s.st, &v);
    pthread_join(t, NULL);
    if (rc != SHMRPC_EPEERDIED) fail_msg("recv: %d %s", rc, shmrpc_errmsg());
    assert_int_equal(s.rc, SHMRPC_EPEERDIED);
    assert_true(atomic_load(&s.sent) > 0);
    shmrpc_stream_close(s.st);
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
 * continue its item, an item above the server's maximum, a piece of no bytes with more to
 * come, and a piece that reaches past the room the worker gave back (ring_peer.h). Each fails the
 * handler's read, which it returns, and the client's answer says so. */
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
 * handler learns the stream was ended. Before, the ring says that its worker fences before it
 * sleeps for an item, so that the client publishes its items lightly (shm.h, fences). */
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
    assert_int_equal(atomic_load(&r->fences), 1);
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

/* --- over tcp:// ---------------------------------------------------------------------- */

/* A raw connection to the server that agreed revision proto, with no compression. */
static int dial(uint32_t proto)
{
    int fd = test_raw_connect(port, 5000);
    assert_true(fd >= 0);
    assert_true(test_raw_handshake_at(fd, &Gather_service_info, proto));
    return fd;
}

/* n items of drain's (msgpack i64 k, 1 byte each for k < 128) into b, as an ITEMS body. */
static void put_items(shmrpc_buf *b, int n)
{
    for (int k = 0; k < n; k++) {
        const uint8_t item[] = {0, 0, 0, 1, (uint8_t)(k & 0x7f)};
        assert_int_equal(shmrpc_buf_append(b, item, sizeof item), 0);
    }
}

/* An ITEMS body of one item of n bytes of fill, into b. */
static void one_item(shmrpc_buf *b, uint32_t n, char fill)
{
    shmrpc_buf_clear(b);
    const uint8_t len[] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    assert_int_equal(shmrpc_buf_append(b, len, sizeof len), 0);
    assert_int_equal(shmrpc_buf_reserve(b, n), 0);
    memset(b->data + b->len, fill, n);
    b->len += n;
}

/* Reads the WINDOWs of stream rid on fd into *granted until it reaches want; the next frame
 * that is no WINDOW, with want 0 (into *h). */
static void windows_until(int fd, uint64_t rid, uint64_t *granted, uint64_t want,
                          shmrpc__frame_hdr *h, shmrpc_buf *b)
{
    while (want == 0 || *granted < want) {
        assert_true(test_raw_frame(fd, h, b));
        if (h->kind != SHMRPC__KIND_WINDOW && want == 0) return;
        assert_int_equal(h->kind, SHMRPC__KIND_WINDOW);
        assert_true(h->request_id == rid);
        *granted += (uint32_t)b->data[0] << 24 | (uint32_t)b->data[1] << 16 |
                    (uint32_t)b->data[2] << 8 | b->data[3];
    }
}

/* The next frame on fd is the ERROR that closes the connection, saying msg. */
static void refused(int fd, const char *msg)
{
    shmrpc__frame_hdr h;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    char text[300];
    for (;;) { /* past what the server sent before (WINDOWs, the stream's end) */
        assert_true(test_raw_frame(fd, &h, &b));
        if (h.kind == SHMRPC__KIND_ERROR && h.request_id == 0) break;
    }
    int rc = test_raw_answer(&h, &b, text, sizeof text);
    if (rc != SHMRPC_EPROTO || strcmp(text, msg) != 0)
        fail_msg("%s (%s), not SHMRPC_EPROTO (%s)", shmrpc_strerror(rc), text, msg);
    shmrpc_buf_destroy(&b);
}

static const uint8_t no_args[] = {0x90}; /* msgpack []: an open of a client stream */

/* A raw client's frames that break the rules of a client's items: each closes the
 * connection after an ERROR saying why, and the stream's handler, reading, learns so
 * (SHMRPC_EPROTO); and a client of revision 8 may neither send items nor open such a
 * stream, whose handler does not run. */
static void a_client_that_lies_on_the_wire(void **state)
{
    (void)state;
    pid_t srv = start_server(1);
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    /* drain's handler waits for items; deaf's, which reads none, keeps its stream open
     * after the last came. */
    static const struct {
        const char *what;
        uint32_t open;   /* the method opened */
        int before;      /* items sent first, in a frame of their own (5 bytes each) */
        int items;       /* of 5 bytes each, in one frame; -1: one item of 70 000 bytes */
        uint32_t cut;    /* bytes cut off the body's end */
        bool last_first; /* the last flag was sent before */
        uint32_t method; /* of the lie's frame */
        const char *msg;
    } lies[] = {
        {"past the window", GATHER_METHOD_DRAIN, 0, 13108, 0, false, GATHER_METHOD_DRAIN,
         "the client sent 65540 bytes of items for stream 7, beyond its credit of 65536"},
        {"past what is left of it", GATHER_METHOD_DEAF, 8000, 6000, 0, false, GATHER_METHOD_DEAF,
         "the client sent 30000 bytes of items for stream 7, beyond its credit of 25536"},
        {"one large item, not alone", GATHER_METHOD_DEAF, 1, -1, 0, false, GATHER_METHOD_DEAF,
         "the client sent 70004 bytes of items for stream 7, beyond its credit of 65531"},
        {"cut short", GATHER_METHOD_DRAIN, 0, 2, 1, false, GATHER_METHOD_DRAIN,
         "the client sent an item of 1 bytes for stream 7 at offset 5, past the end of its "
         "ITEMS body of 9 bytes"},
        {"a length cut short", GATHER_METHOD_DRAIN, 0, 2, 3, false, GATHER_METHOD_DRAIN,
         "the client sent an ITEMS frame for stream 7 whose item length at offset 5 is cut "
         "short (2 of 4 bytes)"},
        {"after the last", GATHER_METHOD_DEAF, 0, 1, 0, true, GATHER_METHOD_DEAF,
         "an ITEMS frame for stream 7 after its last (method 1)"},
        {"of another method", GATHER_METHOD_DRAIN, 0, 1, 0, false, GATHER_METHOD_SUM,
         "an ITEMS frame for stream 7 names method 5, not its own"},
    };
    for (size_t k = 0; k < sizeof lies / sizeof lies[0]; k++) {
        int32_t opened = atomic_load(&sh->opened), returned = atomic_load(&sh->returned);
        int fd = dial(SHMRPC__WIRE_PROTO);
        assert_true(test_raw_send_frame(fd, SHMRPC__KIND_REQUEST, SHMRPC__FLAG_STREAM, lies[k].open,
                                        7, no_args, sizeof no_args));
        await_at_least(&sh->opened, opened + 1, "the handler began");
        if (lies[k].last_first)
            assert_true(test_raw_send_frame(fd, SHMRPC__KIND_ITEMS, SHMRPC__FLAG_LAST, lies[k].open,
                                            7, NULL, 0));
        if (lies[k].before) {
            shmrpc_buf_clear(&b);
            put_items(&b, lies[k].before);
            assert_true(
                test_raw_send_frame(fd, SHMRPC__KIND_ITEMS, 0, lies[k].open, 7, b.data, b.len));
        }
        shmrpc_buf_clear(&b);
        if (lies[k].items < 0)
            one_item(&b, 70000, 'x');
        else
            put_items(&b, lies[k].items);
        assert_true(test_raw_send_frame(fd, SHMRPC__KIND_ITEMS, 0, lies[k].method, 7, b.data,
                                        b.len - lies[k].cut));
        refused(fd, lies[k].msg);
        close(fd);
        await_at_least(&sh->returned, returned + 1, "the handler returned");
        if (atomic_load(&sh->status) != SHMRPC_EPROTO)
            fail_msg("%s: the handler returned %d, not SHMRPC_EPROTO", lies[k].what,
                     (int)atomic_load(&sh->status));
    }
    /* Revision 8: no items, and no open of a stream of the parameter. */
    int32_t opened = atomic_load(&sh->opened);
    int fd = dial(8);
    shmrpc_buf_clear(&b);
    put_items(&b, 1);
    assert_true(
        test_raw_send_frame(fd, SHMRPC__KIND_ITEMS, 0, GATHER_METHOD_DRAIN, 7, b.data, b.len));
    refused(fd, "an ITEMS frame from a client needs protocol revision 9 (not agreed)");
    close(fd);
    fd = dial(8);
    assert_true(test_raw_send_frame(fd, SHMRPC__KIND_ITEMS, SHMRPC__FLAG_LAST, GATHER_METHOD_DRAIN,
                                    7, NULL, 0));
    refused(fd, "ITEMS frame has the last flag, which needs protocol revision 9 (not agreed)");
    close(fd);
    fd = dial(8);
    assert_true(test_raw_send_frame(fd, SHMRPC__KIND_REQUEST, SHMRPC__FLAG_STREAM,
                                    GATHER_METHOD_DRAIN, 7, no_args, sizeof no_args));
    shmrpc__frame_hdr h;
    assert_true(test_raw_frame(fd, &h, &b));
    char text[200];
    assert_int_equal(test_raw_answer(&h, &b, text, sizeof text), SHMRPC_EVERSION);
    assert_true(h.request_id == 7);
    assert_string_equal(text, "a stream of the parameter needs protocol revision 9 (8 agreed): "
                              "it was not run");
    close(fd);
    assert_int_equal(atomic_load(&sh->opened), opened);
    shmrpc_buf_destroy(&b);
    stop_server(srv);
}

/* The window a raw client's items take, given back whole as the handler reads them: a few
 * small items, given back before the handler waits for more (the client may be waiting for
 * them); a window's worth in three frames; then one item larger than the window, sent once
 * all was given back. The WINDOWs add up to what was sent, never more, and the end comes
 * after them, the handler having read every item. */
static void the_window_comes_back_whole(void **state)
{
    (void)state;
    pid_t srv = start_server(1);
    int fd = dial(SHMRPC__WIRE_PROTO);
    assert_true(test_raw_send_frame(fd, SHMRPC__KIND_REQUEST, SHMRPC__FLAG_STREAM,
                                    GATHER_METHOD_CONCAT, 9, NULL, 0));
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    uint64_t sent = 0, granted = 0;
    shmrpc__frame_hdr h;
    put_items(&b, 3); /* 15 bytes, far below a quarter of the window */
    assert_true(
        test_raw_send_frame(fd, SHMRPC__KIND_ITEMS, 0, GATHER_METHOD_CONCAT, 9, b.data, b.len));
    sent += b.len;
    windows_until(fd, 9, &granted, sent, &h, &b);
    for (int k = 0; k < 3; k++) { /* 3 items of 21841 bytes and their lengths: 65535 */
        one_item(&b, 21841, (char)('a' + k));
        assert_true(
            test_raw_send_frame(fd, SHMRPC__KIND_ITEMS, 0, GATHER_METHOD_CONCAT, 9, b.data, b.len));
        sent += b.len;
    }
    windows_until(fd, 9, &granted, sent, &h, &b);
    assert_true(granted == sent);
    /* Nothing in transit: one item of 100 000 bytes may go alone. */
    one_item(&b, 100000, 'z');
    assert_true(test_raw_send_frame(fd, SHMRPC__KIND_ITEMS, SHMRPC__FLAG_LAST, GATHER_METHOD_CONCAT,
                                    9, b.data, b.len));
    sent += b.len;
    windows_until(fd, 9, &granted, 0, &h, &b);
    assert_true(granted <= sent);
    assert_int_equal(h.kind, SHMRPC__KIND_RESPONSE); /* concat of this file answers "" */
    assert_true(h.request_id == 9);
    close(fd);
    shmrpc_buf_destroy(&b);
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
        cmocka_unit_test_setup(worker_killed_while_both_wait, setup),
    };
    const struct CMUnitTest over_tcp[] = {
        cmocka_unit_test_setup(worker_killed_mid_stream, setup),
        cmocka_unit_test_setup(client_killed_mid_stream, setup),
        cmocka_unit_test_setup(a_client_that_lies_on_the_wire, setup),
        cmocka_unit_test_setup(the_window_comes_back_whole, setup),
        cmocka_unit_test_setup(worker_killed_while_both_wait, setup),
    };
    int failed = cmocka_run_group_tests_name("shm", tests, NULL, NULL);
    tcp = true;
    return failed + cmocka_run_group_tests_name("tcp", over_tcp, NULL, NULL);
}
