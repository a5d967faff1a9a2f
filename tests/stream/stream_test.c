/* SPDX-License-Identifier: MIT */
/* Streams end to end (docs/streams.md) through the generated stubs of stream.svc: every
 * item once and in order, then the handler's status; a handler that fails mid-stream; a
 * client that closes early, cancels, or lets its deadline pass, and the handler that learns
 * it; a reader that does not read (what waits in transit stays bounded); an item that does
 * not decode, or is too big; a server that stops under a stream; and a client that calls
 * while a stream is open. Each runs over inproc://, then over shm:// and tcp://, whose
 * servers serve on a thread of this process (so the handlers' globals are read here; tcp://
 * then runs the stream on a thread of its own, holding other calls meanwhile); a peer of
 * wire revision 7 refuses to open a stream over tcp://. Every wait is bounded. */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <malloc.h>

#include "port.h"
#include "stream.h"
#include "streamer_handlers.h"

/* The transport the tests run over: "inproc", then "shm", then "tcp". */
static const char *scheme;

/* What the handlers saw, for the tests to read: they run on a thread of the transport's
 * (inproc://) or of the server's (shm://). */
static _Atomic int64_t sent;     /* items forever's handler sent */
static _Atomic int last_status;  /* what forever's or quiet's handler returned */
static _Atomic int handler_done; /* set when one of them returned */

static void done(int rc)
{
    atomic_store(&last_status, rc);
    atomic_store(&handler_done, 1);
}

static int forever(shmrpc_ctx *ctx, int64_t pad)
{
    (void)pad;
    for (int64_t i = 0;; i++) {
        int rc = streamer_forever_write(ctx, i);
        if (rc) {
            done(rc);
            return rc;
        }
        atomic_fetch_add(&sent, 1);
    }
}

static int quiet(shmrpc_ctx *ctx)
{
    int rc = shmrpc_ctx_wait_cancelled(ctx, 10000);
    done(rc);
    return rc ? rc : SHMRPC_EHANDLER;
}

static _Atomic int released; /* deaf's handler returns once it is set */

static int deaf(shmrpc_ctx *ctx)
{
    (void)ctx;
    for (int i = 0; i < 20000 && !atomic_load(&released); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    done(0);
    return 0;
}

static int chunks(shmrpc_ctx *ctx, shmrpc_bytes spec)
{
    char text[64];
    snprintf(text, sizeof text, "%.*s", (int)(spec.len < 63 ? spec.len : 63),
             (const char *)spec.ptr);
    /* "N SIZE", or "N SIZE SIZE..." (up to 3): item k has the size k % 3 of them. */
    long n, sizes[3], max = 0;
    int got = sscanf(text, "%ld %ld %ld %ld", &n, &sizes[0], &sizes[1], &sizes[2]) - 1;
    if (got < 1 || n < 0) return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "bad spec '%s'", text);
    for (int i = 0; i < got; i++) {
        if (sizes[i] < 0) return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "bad spec '%s'", text);
        if (sizes[i] > max) max = sizes[i];
    }
    uint8_t *item = shmrpc_arena_alloc(shmrpc_ctx_arena(ctx), (size_t)max + 1, 1);
    if (!item) return SHMRPC_ENOMEM;
    for (long k = 0; k < n; k++) {
        size_t size = (size_t)sizes[k % got];
        memset(item, (int)(k & 0xff), size);
        int rc = streamer_chunks_write(ctx, shmrpc_bytes_of(item, size));
        if (rc) return rc;
    }
    return 0;
}

static const Streamer_handlers handlers = {.ticks = test_ticks,
                                           .forever = forever,
                                           .quiet = quiet,
                                           .deaf = deaf,
                                           .chunks = chunks,
                                           .slow = test_slow,
                                           .twice = test_twice};

typedef struct fixture {
    shmrpc_server *s;
    shmrpc_client *c;
    char addr[64];
    bool serves; /* a thread serves s (shm://, tcp://) */
    pthread_t server;
} fixture;

static void *serve(void *s)
{
    return (void *)(intptr_t)shmrpc_server_serve(s, 0);
}

/* A server of the Streamer at f->addr, served on a thread where the transport needs one. */
static void server_up(fixture *f)
{
    assert_int_equal(shmrpc_server_new(&f->s, NULL), 0);
    assert_int_equal(shmrpc_server_register(f->s, &Streamer_service, &handlers, NULL), 0);
    if (shmrpc_server_listen(f->s, f->addr) != 0) fail_msg("listen: %s", shmrpc_errmsg());
    f->serves = strncmp(f->addr, "inproc:", 7) != 0;
    if (f->serves) assert_int_equal(pthread_create(&f->server, NULL, serve, f->s), 0);
}

/* Stops and frees f's server: once its handlers returned (a serve that does not end within
 * 10 s fails the test). */
static void server_down(fixture *f)
{
    if (f->s == NULL) return;
    if (f->serves) {
        shmrpc_server_stop(f->s);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        void *rc;
        if (pthread_timedjoin_np(f->server, &rc, &until) != 0)
            fail_msg("the server did not stop within 10 s");
        assert_int_equal((intptr_t)rc, 0);
    }
    shmrpc_server_free(f->s);
    f->s = NULL;
}

static int setup(void **state)
{
    static int n;
    fixture *f = calloc(1, sizeof *f);
    if (strcmp(scheme, "tcp") == 0)
        snprintf(f->addr, sizeof f->addr, "tcp://127.0.0.1:%d", test_free_port());
    else
        snprintf(f->addr, sizeof f->addr, "%s://streamer-%d-%d", scheme, (int)getpid(), n++);
    server_up(f);
    assert_int_equal(shmrpc_client_new(&f->c, &Streamer_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(f->c, f->addr), 0);
    atomic_store(&sent, 0);
    atomic_store(&handler_done, 0);
    atomic_store(&last_status, 1);
    atomic_store(&released, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    shmrpc_client_free(f->c);
    server_down(f);
    free(f);
    return 0;
}

/* Waits up to 10 s for a handler of forever or quiet to return; its status. */
static int handler_returned(void)
{
    for (int i = 0; i < 10000 && !atomic_load(&handler_done); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (!atomic_load(&handler_done)) fail_msg("the handler did not return within 10 s");
    return atomic_load(&last_status);
}

static void every_item_once_in_order(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(streamer_ticks_open(f->c, 1000, -1, 0, &st), 0);
    streamer_Tick t;
    int64_t n = 0;
    int rc;
    while ((rc = streamer_ticks_recv(st, &t)) == 1) {
        char note[32];
        snprintf(note, sizeof note, "tick %lld", (long long)n);
        assert_int_equal(t.at, n);
        assert_int_equal(t.note.len, strlen(note));
        assert_memory_equal(t.note.ptr, note, t.note.len);
        assert_int_equal(t.seen.len, (size_t)(n % 4));
        for (size_t k = 0; k < t.seen.len; k++)
            assert_int_equal(t.seen.items[k], n * 10 + (int64_t)k);
        n++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, 1000);
    assert_int_equal(streamer_ticks_recv(st, &t), 0); /* the end, again */
    shmrpc_stream_close(st);
    /* An empty stream, and the client calls again once it is closed. */
    assert_int_equal(streamer_ticks_open(f->c, 0, -1, 0, &st), 0);
    assert_int_equal(streamer_ticks_recv(st, &t), 0);
    shmrpc_stream_close(st);
    int64_t x;
    assert_int_equal(streamer_twice(f->c, 21, &x), 0);
    assert_int_equal(x, 42);
}

static void the_handler_fails_mid_stream(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(streamer_ticks_open(f->c, 10, 3, SHMRPC_EHANDLER, &st), 0);
    streamer_Tick t;
    for (int64_t i = 0; i < 3; i++) {
        assert_int_equal(streamer_ticks_recv(st, &t), 1);
        assert_int_equal(t.at, i);
    }
    assert_int_equal(streamer_ticks_recv(st, &t), SHMRPC_EHANDLER);
    assert_string_equal(shmrpc_errmsg(), "failed after 3");
    assert_int_equal(streamer_ticks_recv(st, &t), SHMRPC_EHANDLER);
    assert_string_equal(shmrpc_errmsg(), "failed after 3");
    shmrpc_stream_close(st);
}

/* The client closes after 10 items: the handler's next send fails, and it returns. */
static void closed_early_the_handler_learns(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(streamer_forever_open(f->c, 0, &st), 0);
    int64_t v;
    for (int64_t i = 0; i < 10; i++) {
        assert_int_equal(streamer_forever_recv(st, &v), 1);
        assert_int_equal(v, i);
    }
    shmrpc_stream_close(st);
    assert_int_equal(handler_returned(), SHMRPC_ECANCELLED);
}

/* A client that does not read: the handler waits for room, and what it sent meanwhile
 * stays within what the transport holds (64 KiB of items, each at least 1 byte of msgpack
 * and 4 of length). */
static void a_reader_that_does_not_read(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(streamer_forever_open(f->c, 0, &st), 0);
    int64_t before = -1, now = atomic_load(&sent);
    for (int i = 0; i < 1000 && now != before; i++) { /* until it stops growing */
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
        before = now;
        now = atomic_load(&sent);
    }
    assert_int_equal(now, before);
    /* 64 KiB of items of at least 5 bytes each, and the one that waits. */
    assert_true(now > 0 && now <= 64 * 1024 / 5 + 1);
    assert_int_equal(atomic_load(&handler_done), 0);
    /* Every item sent comes, in order, once reading starts. */
    int64_t v;
    for (int64_t i = 0; i < now + 100; i++) {
        assert_int_equal(streamer_forever_recv(st, &v), 1);
        assert_int_equal(v, i);
    }
    shmrpc_stream_close(st);
    assert_int_equal(handler_returned(), SHMRPC_ECANCELLED);
}

/* The bytes malloc has given out: from its arena, and mapped for large blocks. */
static size_t in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

/* A reader that stays behind but reads: the room of what it read is given back, so the
 * memory in use stays within a few rooms (before, it grew by each item read). */
static void a_reader_that_stays_behind(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(streamer_forever_open(f->c, 0, &st), 0);
    struct timespec ts = {0, 50000000}; /* the room fills */
    nanosleep(&ts, NULL);
    size_t before = in_use(), most = before;
    int64_t v;
    for (int64_t i = 0; i < 100000; i++) {
        assert_int_equal(streamer_forever_recv(st, &v), 1);
        assert_int_equal(v, i);
        if (i % 1000 == 0 && in_use() > most) most = in_use();
        /* Slower than the handler, so that the queue seldom runs dry (which gives its room
         * back whole): 10 us an item. */
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do
            clock_gettime(CLOCK_MONOTONIC, &t);
        while ((t.tv_sec - t0.tv_sec) * 1000000000 + t.tv_nsec - t0.tv_nsec < 10000);
    }
    shmrpc_stream_close(st);
    assert_int_equal(handler_returned(), SHMRPC_ECANCELLED);
    /* 100,000 items of 5 to 9 bytes: 900 KB or so, had the room of none been given back;
     * about one room more (70 KB) as it is. */
    if (most - before > 256 * 1024)
        fail_msg("%zu bytes more in use while reading behind", most - before);
}

/* A cancel ends a reader that is behind at once, and tells the handler. */
static void cancelled_while_behind(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(streamer_forever_open(f->c, 0, &st), 0);
    int64_t v;
    for (int64_t i = 0; i < 10; i++)
        assert_int_equal(streamer_forever_recv(st, &v), 1);
    shmrpc_client_cancel(f->c);
    assert_int_equal(streamer_forever_recv(st, &v), SHMRPC_ECANCELLED);
    assert_int_equal(handler_returned(), SHMRPC_ECANCELLED);
    shmrpc_stream_close(st);
}

/* The deadline bounds the whole stream: the client's recv ends with SHMRPC_ETIMEDOUT, and
 * the handler's sends fail so. The deadlines leave the open room under stress-ng (100 ms
 * did not, at times, over shm://). */
static void the_deadline_ends_it(void **state)
{
    fixture *f = *state;
    shmrpc_client_next_timeout(f->c, 500);
    shmrpc_stream *st;
    assert_int_equal(streamer_forever_open(f->c, 0, &st), 0);
    int64_t v, n = 0;
    int rc;
    while ((rc = streamer_forever_recv(st, &v)) == 1) {
        assert_int_equal(v, n);
        n++;
    }
    assert_int_equal(rc, SHMRPC_ETIMEDOUT);
    assert_int_equal(handler_returned(), SHMRPC_ETIMEDOUT);
    shmrpc_stream_close(st);
    /* quiet's handler sees it too, in shmrpc_ctx_cancelled. */
    atomic_store(&handler_done, 0);
    shmrpc_client_next_timeout(f->c, 500);
    assert_int_equal(streamer_quiet_open(f->c, &st), 0);
    assert_int_equal(streamer_quiet_recv(st, &v), SHMRPC_ETIMEDOUT);
    assert_int_equal(handler_returned(), SHMRPC_ETIMEDOUT);
    shmrpc_stream_close(st);
}

/* A handler that asks nothing still cannot hold its client past the deadline: recv says
 * SHMRPC_ETIMEDOUT while the handler still runs. */
static void the_deadline_holds_against_a_deaf_handler(void **state)
{
    fixture *f = *state;
    shmrpc_client_next_timeout(f->c, 500);
    shmrpc_stream *st;
    assert_int_equal(streamer_deaf_open(f->c, &st), 0);
    int64_t v;
    assert_int_equal(streamer_deaf_recv(st, &v), SHMRPC_ETIMEDOUT);
    assert_int_equal(atomic_load(&handler_done), 0);
    atomic_store(&released, 1);
    shmrpc_stream_close(st);
    assert_int_equal(handler_returned(), 0);
}

static void *cancel_soon(void *arg)
{
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    shmrpc_client_cancel(arg);
    return NULL;
}

/* shmrpc_client_cancel from another thread ends a recv that waits, and tells the handler. */
static void cancelled_from_another_thread(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(streamer_quiet_open(f->c, &st), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_soon, f->c), 0);
    int64_t v;
    assert_int_equal(streamer_quiet_recv(st, &v), SHMRPC_ECANCELLED);
    pthread_join(th, NULL);
    assert_int_equal(handler_returned(), SHMRPC_ECANCELLED);
    assert_int_equal(streamer_quiet_recv(st, &v), SHMRPC_ECANCELLED);
    shmrpc_stream_close(st);
}

/* What the interceptors of the client saw: the before at the open, the after at the end. */
static char seen_by[256];

static int before(void *arg, const shmrpc_call_info *call)
{
    size_t n = strlen(seen_by);
    snprintf(seen_by + n, sizeof seen_by - n, "before %s; ", call->method->name);
    return arg ? shmrpc_intercept_error(call, SHMRPC_EPERM, "not %s", call->method->name) : 0;
}

static int after(void *arg, const shmrpc_call_info *call, int status)
{
    (void)arg;
    size_t n = strlen(seen_by);
    snprintf(seen_by + n, sizeof seen_by - n, "after %s %d; ", call->method->name, status);
    return status;
}

static void interceptors_around_a_stream(void **state)
{
    fixture *f = *state;
    static const shmrpc_interceptor i = {before, after};
    assert_int_equal(shmrpc_client_intercept(f->c, &i, NULL), 0);
    seen_by[0] = 0;
    shmrpc_stream *st;
    streamer_Tick t;
    assert_int_equal(streamer_ticks_open(f->c, 2, -1, 0, &st), 0);
    assert_string_equal(seen_by, "before ticks; ");
    assert_int_equal(streamer_ticks_recv(st, &t), 1);
    assert_int_equal(streamer_ticks_recv(st, &t), 1);
    assert_string_equal(seen_by, "before ticks; ");
    assert_int_equal(streamer_ticks_recv(st, &t), 0);
    assert_string_equal(seen_by, "before ticks; after ticks 0; ");
    shmrpc_stream_close(st);
    seen_by[0] = 0;
    assert_int_equal(streamer_ticks_open(f->c, 5, 1, SHMRPC_EHANDLER, &st), 0);
    assert_int_equal(streamer_ticks_recv(st, &t), 1);
    assert_int_equal(streamer_ticks_recv(st, &t), SHMRPC_EHANDLER);
    assert_string_equal(seen_by, "before ticks; after ticks -6; ");
    shmrpc_stream_close(st);
    seen_by[0] = 0;
    assert_int_equal(streamer_forever_open(f->c, 0, &st), 0);
    shmrpc_stream_close(st); /* closed before its end */
    assert_string_equal(seen_by, "before forever; after forever -19; ");
    /* A before that refuses: nothing opens, and nothing after it runs (its own after
     * neither, as for a call). */
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &Streamer_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(c, f->addr), 0);
    assert_int_equal(shmrpc_client_intercept(c, &i, c), 0);
    seen_by[0] = 0;
    assert_int_equal(streamer_ticks_open(c, 2, -1, 0, &st), SHMRPC_EPERM);
    assert_string_equal(shmrpc_errmsg(), "not ticks");
    assert_null(st);
    assert_string_equal(seen_by, "before ticks; ");
    shmrpc_client_free(c);
}

/* SHMRPC_FAULTS' client entries apply at the open, as to a call's send: nothing opens. */
static void a_fault_at_the_open(void **state)
{
    fixture *f = *state;
    setenv("SHMRPC_FAULTS", "client:ticks:status=EPERM", 1);
    shmrpc_client *c;
    int rc = shmrpc_client_new(&c, &Streamer_service_info, NULL);
    unsetenv("SHMRPC_FAULTS");
    assert_int_equal(rc, 0);
    assert_int_equal(shmrpc_client_connect(c, f->addr), 0);
    shmrpc_stream *st;
    assert_int_equal(streamer_ticks_open(c, 2, -1, 0, &st), SHMRPC_EPERM);
    assert_non_null(strstr(shmrpc_errmsg(), "injected by SHMRPC_FAULTS"));
    assert_null(st);
    assert_int_equal(streamer_forever_open(c, 0, &st), 0); /* another method's entry: none */
    shmrpc_stream_close(st);
    shmrpc_client_free(c);
}

/* One stream at a time, and no call beside it; a call is no stream and the other way. */
static void one_thing_at_a_time(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st, *other;
    assert_int_equal(streamer_ticks_open(f->c, 5, -1, 0, &st), 0);
    int64_t x;
    assert_int_equal(streamer_twice(f->c, 1, &x), SHMRPC_EBUSY);
    assert_string_equal(shmrpc_errmsg(), "a stream is open on this client");
    assert_int_equal(streamer_ticks_open(f->c, 5, -1, 0, &other), SHMRPC_EBUSY);
    assert_null(other);
    streamer_Tick t;
    assert_int_equal(streamer_ticks_recv(st, &t), 1);
    shmrpc_stream_close(st);
    assert_int_equal(streamer_twice(f->c, 2, &x), 0);
    assert_int_equal(x, 4);

    shmrpc_bytes resp;
    shmrpc_buf *req = shmrpc_client_request(f->c);
    msgpack_packer pk;
    msgpack_packer_init(&pk, req, shmrpc_buf_msgpack_write);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_int64(&pk, 0);
    assert_int_equal(shmrpc_client_call(f->c, STREAMER_METHOD_FOREVER, &resp), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(),
                        "'forever' answers with a stream: it is opened, not called");
    req = shmrpc_client_request(f->c);
    msgpack_packer_init(&pk, req, shmrpc_buf_msgpack_write);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_int64(&pk, 3);
    assert_int_equal(shmrpc_client_open(f->c, STREAMER_METHOD_TWICE, &st), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(),
                        "'twice' answers once: it is called, not opened as a stream");
    assert_null(st);
}

/* @raw items of 0 B to 1 MiB come whole, each once; an item above the client's maximum
 * ends the stream with SHMRPC_ETOOBIG. */
static void raw_items_of_every_size(void **state)
{
    fixture *f = *state;
    static const long sizes[] = {0, 1, 100, 65536, 70000, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char spec[32];
        int n = snprintf(spec, sizeof spec, "5 %ld", sizes[i]);
        shmrpc_stream *st;
        assert_int_equal(streamer_chunks_open(f->c, shmrpc_bytes_of(spec, (size_t)n), &st), 0);
        shmrpc_bytes item;
        for (int k = 0; k < 5; k++) {
            assert_int_equal(streamer_chunks_recv(st, &item), 1);
            assert_int_equal(item.len, (size_t)sizes[i]);
            for (size_t b = 0; b < item.len; b++)
                if (item.ptr[b] != k) fail_msg("size %ld, item %d, byte %zu", sizes[i], k, b);
        }
        assert_int_equal(streamer_chunks_recv(st, &item), 0);
        shmrpc_stream_close(st);
    }
    shmrpc_client *small;
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.max_msg_bytes = 4096;
    assert_int_equal(shmrpc_client_new(&small, &Streamer_service_info, &o), 0);
    assert_int_equal(shmrpc_client_connect(small, f->addr), 0);
    shmrpc_stream *st;
    assert_int_equal(streamer_chunks_open(small, shmrpc_bytes_of("3 5000", 6), &st), 0);
    shmrpc_bytes item;
    assert_int_equal(streamer_chunks_recv(st, &item), SHMRPC_ETOOBIG);
    assert_string_equal(shmrpc_errmsg(),
                        "an item of 5000 bytes is larger than the client's maximum of 4096 bytes");
    shmrpc_stream_close(st);
    shmrpc_client_free(small);
}

/* An item that does not decode ends the stream with SHMRPC_EINVAL, the items before it
 * delivered. */
static void an_item_that_does_not_decode(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(streamer_ticks_open(f->c, 10, 2, 1, &st), 0);
    streamer_Tick t;
    assert_int_equal(streamer_ticks_recv(st, &t), 1);
    assert_int_equal(streamer_ticks_recv(st, &t), 1);
    assert_int_equal(streamer_ticks_recv(st, &t), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "Streamer.ticks: item"));
    assert_int_equal(streamer_ticks_recv(st, &t), SHMRPC_EINVAL);
    shmrpc_stream_close(st);
}

/* A server stopped under a stream whose handler waits for room: its sends fail, it
 * returns, and the stop does too; the client reads what was sent, then the status. */
static void the_server_stops_under_it(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(streamer_forever_open(f->c, 0, &st), 0);
    int64_t v;
    assert_int_equal(streamer_forever_recv(st, &v), 1);
    server_down(f); /* returns once the handler did */
    assert_int_equal(handler_returned(), SHMRPC_ECANCELLED);
    int rc, n = 1;
    while ((rc = streamer_forever_recv(st, &v)) == 1)
        assert_int_equal(v, n++);
    if (rc != SHMRPC_ECANCELLED) fail_msg("rc %d: %s (after %d)", rc, shmrpc_errmsg(), n);
    shmrpc_stream_close(st);
}

/* A server stopped while its handler writes an item larger than what the transport holds
 * at once (shm:// sends it in pieces): the item cut short is dropped, and the client reads
 * what came whole, then SHMRPC_ECANCELLED. */
static void the_server_stops_amid_an_item(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(streamer_chunks_open(f->c, shmrpc_bytes_of("1000 1048576", 12), &st), 0);
    shmrpc_bytes item;
    assert_int_equal(streamer_chunks_recv(st, &item), 1);
    assert_int_equal(item.len, 1048576);
    struct timespec ts = {0, 50000000}; /* the handler fills the room with the next item's */
    nanosleep(&ts, NULL);
    server_down(f);
    int rc, n = 1;
    while ((rc = streamer_chunks_recv(st, &item)) == 1) {
        assert_int_equal(item.len, 1048576);
        assert_int_equal(item.ptr[0], n);
        assert_int_equal(item.ptr[item.len - 1], n++);
    }
    if (rc != SHMRPC_ECANCELLED) fail_msg("rc %d: %s (after %d)", rc, shmrpc_errmsg(), n);
    shmrpc_stream_close(st);
}

/* Items of three sizes in turn, each item k filled with the byte k: small ones, ones that
 * wrap a tcp:// server's ring of the window's bytes most times, and ones larger than the
 * window, which go alone once everything before them was read (server_stream.c): each comes
 * whole and in order. */
static void raw_items_of_mixed_sizes(void **state)
{
    fixture *f = *state;
    static const char spec[] = "90 16 40000 70000";
    static const size_t sizes[] = {16, 40000, 70000};
    shmrpc_stream *st;
    assert_int_equal(streamer_chunks_open(f->c, shmrpc_bytes_of(spec, strlen(spec)), &st), 0);
    shmrpc_bytes item;
    for (int k = 0; k < 90; k++) {
        assert_int_equal(streamer_chunks_recv(st, &item), 1);
        assert_int_equal(item.len, sizes[k % 3]);
        for (size_t b = 0; b < item.len; b++)
            if (item.ptr[b] != (uint8_t)k) fail_msg("item %d, byte %zu: %u", k, b, item.ptr[b]);
    }
    assert_int_equal(streamer_chunks_recv(st, &item), 0);
    shmrpc_stream_close(st);
}

/* A new client connects while a stream runs, its items coming slowly and never waiting for
 * room: over shm:// the test's server serves on its listening thread (serve(s, 0)), whose
 * worker must answer the rendezvous between the items (it did at every 64th only, and
 * the connect waited for the stream's end, past its 3 s); over tcp:// the server serves
 * in place, and reads the handshake while a thread runs the stream. The stream would take
 * 4 s, longer than the connect may; it goes on after the connect, and is closed then. */
static void a_client_connects_during_a_stream(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(streamer_slow_open(f->c, 40, 100, &st), 0); /* 4 s */
    int64_t v;
    assert_int_equal(streamer_slow_recv(st, &v), 1);
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &Streamer_service_info, NULL), 0);
    if (shmrpc_client_connect(c, f->addr) != 0) fail_msg("connect: %s", shmrpc_errmsg());
    for (int64_t n = 1; n < 3; n++) {
        assert_int_equal(streamer_slow_recv(st, &v), 1);
        assert_int_equal(v, n);
    }
    shmrpc_stream_close(st);
    int64_t x;
    assert_int_equal(streamer_twice(c, 4, &x), 0);
    assert_int_equal(x, 8);
    shmrpc_client_free(c);
}

/* A stream left open when its client is freed ends with it. Over tcp:// its handler may
 * learn that its client went (SHMRPC_EPEERDIED) rather than closed it: the client's socket
 * closes with the items it did not read, so its kernel resets the connection, and the
 * server, which was not reading while its items waited to go out, may see the reset before
 * the CANCEL ahead of it. */
static void freed_with_a_stream_open(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(streamer_forever_open(f->c, 0, &st), 0);
    int64_t v;
    assert_int_equal(streamer_forever_recv(st, &v), 1); /* its handler runs */
    shmrpc_client_free(f->c);
    f->c = NULL;
    int why = handler_returned();
    if (why != SHMRPC_ECANCELLED && !(strcmp(scheme, "tcp") == 0 && why == SHMRPC_EPEERDIED))
        fail_msg("the handler returned %s", shmrpc_strerror(why));
    assert_int_equal(streamer_forever_recv(st, &v), SHMRPC_ECLOSED);
    shmrpc_stream_close(st);
    assert_int_equal(shmrpc_client_new(&f->c, &Streamer_service_info, NULL), 0);
}

/* A server of revision 7 (SHMRPC_TEST_WIRE_PROTO, read when it listens), or a client of
 * revision 7 (read when it is made), agrees no streams over tcp://: the open is refused before
 * anything is sent, and says so; the calls go on. */
static void old_peer_refuses(bool old_server)
{
    fixture f = {0};
    snprintf(f.addr, sizeof f.addr, "tcp://127.0.0.1:%d", test_free_port());
    setenv("SHMRPC_TEST_WIRE_PROTO", "7", 1);
    if (old_server) server_up(&f);
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &Streamer_service_info, NULL), 0);
    unsetenv("SHMRPC_TEST_WIRE_PROTO");
    if (!old_server) server_up(&f);
    int rc = shmrpc_client_connect(c, f.addr);
    if (rc) fail_msg("connect: %s", shmrpc_errmsg());
    shmrpc_stream *st;
    assert_int_equal(streamer_ticks_open(c, 1, -1, 0, &st), SHMRPC_EVERSION);
    char want[300];
    snprintf(want, sizeof want,
             "%s agreed protocol revision 7, and streams need revision 8: the stream was not "
             "opened (it did not run)",
             f.addr);
    assert_string_equal(shmrpc_errmsg(), want);
    int64_t x;
    assert_int_equal(streamer_twice(c, 5, &x), 0);
    assert_int_equal(x, 10);
    shmrpc_client_free(c);
    server_down(&f);
}

static void an_old_server_refuses(void **state)
{
    (void)state;
    old_peer_refuses(true);
}

static void an_old_client_refuses(void **state)
{
    (void)state;
    old_peer_refuses(false);
}

int main(void)
{
    /* One malloc arena for every thread, so that mallinfo2 counts the memory the
     * transport's threads hold too (a_reader_that_stays_behind). */
    mallopt(M_ARENA_MAX, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(every_item_once_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(the_handler_fails_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(closed_early_the_handler_learns, setup, teardown),
        cmocka_unit_test_setup_teardown(a_reader_that_does_not_read, setup, teardown),
        cmocka_unit_test_setup_teardown(a_reader_that_stays_behind, setup, teardown),
        cmocka_unit_test_setup_teardown(cancelled_while_behind, setup, teardown),
        cmocka_unit_test_setup_teardown(the_deadline_ends_it, setup, teardown),
        cmocka_unit_test_setup_teardown(the_deadline_holds_against_a_deaf_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(cancelled_from_another_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(interceptors_around_a_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(a_fault_at_the_open, setup, teardown),
        cmocka_unit_test_setup_teardown(one_thing_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(raw_items_of_every_size, setup, teardown),
        cmocka_unit_test_setup_teardown(raw_items_of_mixed_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(an_item_that_does_not_decode, setup, teardown),
        cmocka_unit_test_setup_teardown(the_server_stops_under_it, setup, teardown),
        cmocka_unit_test_setup_teardown(the_server_stops_amid_an_item, setup, teardown),
        cmocka_unit_test_setup_teardown(a_client_connects_during_a_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(freed_with_a_stream_open, setup, teardown),
    };
    const struct CMUnitTest others[] = {cmocka_unit_test(an_old_server_refuses),
                                        cmocka_unit_test(an_old_client_refuses)};
    scheme = "inproc";
    int failed = cmocka_run_group_tests_name("inproc", tests, NULL, NULL);
    scheme = "shm";
    failed += cmocka_run_group_tests_name("shm", tests, NULL, NULL);
    scheme = "tcp"; /* served in place: a stream on a thread of its own (docs/wire.md) */
    failed += cmocka_run_group_tests_name("tcp", tests, NULL, NULL);
    return failed + cmocka_run_group_tests_name("others", others, NULL, NULL);
}
