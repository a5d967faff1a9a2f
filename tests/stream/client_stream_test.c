/* SPDX-License-Identifier: MIT */
/* Client streams (docs/streams.md) through the generated stubs of gather.svc: a method whose
 * parameter is stream<T> reads every item once and in order, then answers; one that
 * answers early or fails ends the client's sends; a handler that reads nothing holds the
 * client within the bound until the deadline; a close or a cancel tells the handler; an
 * item that does not decode; @raw items; a large answer while the client still sends; a
 * void answer; and a stream both ways. They run over inproc://, or to a server in this
 * process over shm:// or tcp:// with CLIENT_STREAM_TEST_TRANSPORT=shm or tcp. A call of such
 * a method is refused by its server, and a tcp:// server of revision 8 refuses to open one.
 * Every wait is bounded. The handlers are gather_handlers.c. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gather.h"
#include "gather_handlers.h"
#include "port.h"

/* The transport the group runs over: "inproc", "shm" or "tcp". */
static const char *transport = "inproc";

typedef struct fixture {
    shmrpc_server *s;
    shmrpc_client *c;
    char addr[64];
    pthread_t serving; /* over shm:// */
} fixture;

static void *serve(void *s)
{
    return (void *)(intptr_t)shmrpc_server_serve(s, 0);
}

/* A server of opts o (NULL: the defaults) and its client. */
static int start(void **state, const shmrpc_server_opts *o)
{
    static int n;
    fixture *f = calloc(1, sizeof *f);
    if (strcmp(transport, "tcp") == 0)
        snprintf(f->addr, sizeof f->addr, "tcp://127.0.0.1:%d", test_free_port());
    else
        snprintf(f->addr, sizeof f->addr, "%s://gather-%d-%d", transport, (int)getpid(), n++);
    assert_int_equal(shmrpc_server_new(&f->s, o), 0);
    assert_int_equal(shmrpc_server_register(f->s, &Gather_service, &test_gather_handlers, NULL), 0);
    if (shmrpc_server_listen(f->s, f->addr) != 0) fail_msg("%s", shmrpc_errmsg());
    if (strcmp(transport, "inproc") != 0)
        assert_int_equal(pthread_create(&f->serving, NULL, serve, f->s), 0);
    assert_int_equal(shmrpc_client_new(&f->c, &Gather_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(f->c, f->addr), 0);
    atomic_store(&test_gather_read, 0);
    atomic_store(&test_gather_returned, 0);
    atomic_store(&test_gather_status, 1);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return start(state, NULL);
}

/* A server whose largest message is 100 bytes. */
static int setup_small(void **state)
{
    shmrpc_server_opts o;
    shmrpc_server_opts_init(&o);
    o.max_msg_bytes = 100;
    return start(state, &o);
}

static int teardown(void **state)
{
    fixture *f = *state;
    shmrpc_client_free(f->c);
    if (strcmp(transport, "inproc") != 0) {
        shmrpc_server_stop(f->s);
        void *rc;
        pthread_join(f->serving, &rc); /* a serve that does not stop fails by ctest's timeout */
        assert_int_equal((intptr_t)rc, 0);
    }
    shmrpc_server_free(f->s);
    free(f);
    return 0;
}

/* Waits up to 10 s for a handler to return; what it saw last. */
static int handler_returned(void)
{
    for (int i = 0; i < 10000 && !atomic_load(&test_gather_returned); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (!atomic_load(&test_gather_returned)) fail_msg("the handler did not return within 10 s");
    return atomic_load(&test_gather_status);
}

static void every_item_once_in_order(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(gather_sum_open(f->c, &st), 0);
    int64_t want = 0;
    for (int64_t i = 0; i < 10000; i++) {
        char note[16];
        snprintf(note, sizeof note, "%lld", (long long)i);
        bool noted = i % 1000 == 0;
        gather_Part p = {.n = i, .note = {note, noted ? strlen(note) : 0}};
        assert_int_equal(gather_sum_send(st, &p), 0);
        want += i;
    }
    gather_Total t;
    assert_int_equal(gather_sum_done(st, &t), 0);
    assert_int_equal(t.sum, want);
    assert_int_equal(t.count, 10000);
    assert_int_equal(t.notes.len, 10);
    for (size_t k = 0; k < t.notes.len; k++) {
        char note[16];
        snprintf(note, sizeof note, "%zu", k * 1000);
        assert_int_equal(t.notes.items[k].len, strlen(note));
        assert_memory_equal(t.notes.items[k].ptr, note, strlen(note));
    }
    assert_int_equal(gather_sum_done(st, &t), 0); /* the end, again */
    assert_int_equal(t.count, 10000);
    gather_Part late = {.n = 1};
    assert_int_equal(gather_sum_send(st, &late), SHMRPC_ECLOSED);
    shmrpc_stream_close(st);
    /* No item at all. */
    assert_int_equal(gather_sum_open(f->c, &st), 0);
    assert_int_equal(gather_sum_done(st, &t), 0);
    assert_int_equal(t.count, 0);
    assert_int_equal(t.sum, 0);
    shmrpc_stream_close(st);
}

static void the_handler_answers_early(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(gather_sum_open(f->c, &st), 0);
    int rc = 0;
    int64_t sent = 0;
    for (; sent < 100000 && rc == 0; sent++) {
        gather_Part p = {.n = 1, .note = {sent == 9 ? "enough" : "", sent == 9 ? 6 : 0}};
        rc = gather_sum_send(st, &p);
    }
    /* The sends fail once the handler returned: some went into the room before. */
    assert_int_equal(rc, SHMRPC_ECLOSED);
    assert_non_null(strstr(shmrpc_errmsg(), "returned before it read"));
    assert_int_equal(handler_returned(), 0);
    assert_int_equal(atomic_load(&test_gather_read), 10);
    gather_Total t;
    assert_int_equal(gather_sum_done(st, &t), 0);
    assert_int_equal(t.count, 10);
    assert_int_equal(t.sum, 10);
    shmrpc_stream_close(st);
}

static void the_handler_fails(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(gather_sum_open(f->c, &st), 0);
    for (int64_t i = 0; i < 5; i++) {
        gather_Part p = {.n = i, .note = {i == 4 ? "fail" : "", i == 4 ? 4 : 0}};
        assert_int_equal(gather_sum_send(st, &p), 0);
    }
    assert_int_equal(handler_returned(), SHMRPC_EBUSY);
    /* The handler noted its status just before it returned: a send may still find it
     * running, and go into the room. */
    gather_Part p = {.n = 1};
    int rc = 0;
    for (int i = 0; i < 5000 && (rc = gather_sum_send(st, &p)) == 0; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(rc, SHMRPC_ECLOSED);
    gather_Total t;
    assert_int_equal(gather_sum_done(st, &t), SHMRPC_EBUSY);
    assert_string_equal(shmrpc_errmsg(), "told to fail at part 5");
    /* Once ended, a send says how. */
    assert_int_equal(gather_sum_send(st, &p), SHMRPC_EBUSY);
    assert_string_equal(shmrpc_errmsg(), "told to fail at part 5");
    shmrpc_stream_close(st);
}

/* A handler that reads nothing: the client's sends stop within the room, and the deadline
 * ends both sides. The room is 64 KiB of items: over inproc://, each with 4 bytes of length;
 * over shm://, each with 8 bytes of header and padded to 8 bytes, 8 bytes kept for the end. */
static void a_handler_that_does_not_read(void **state)
{
    fixture *f = *state;
    shmrpc_client_set_timeout(f->c, 300);
    shmrpc_stream *st;
    assert_int_equal(gather_deaf_open(f->c, &st), 0);
    int rc = 0;
    int64_t sent = 0;
    for (; sent < 1000000 && (rc = gather_deaf_send(st, INT64_MAX)) == 0; sent++)
        ;
    /* Over shm://, the worker's clock may end the handler first (its deadline counts from
     * when it took the call): the send then fails as the handler returned. */
    if (rc != SHMRPC_ECLOSED || strcmp(transport, "shm") != 0)
        assert_int_equal(rc, SHMRPC_ETIMEDOUT);
    /* Each item is 9 bytes of msgpack. */
    int64_t room = strcmp(transport, "shm") == 0 ? (64 * 1024 - 8) / 24 : 64 * 1024 / 13;
    assert_in_range(sent, room - 1, room + 1);
    assert_int_equal(handler_returned(), SHMRPC_ETIMEDOUT);
    int64_t why;
    assert_int_equal(gather_deaf_done(st, &why), SHMRPC_ETIMEDOUT);
    shmrpc_stream_close(st);
}

static void closed_early_the_handler_learns(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(gather_drain_open(f->c, &st), 0);
    for (int64_t i = 0; i < 100; i++)
        assert_int_equal(gather_drain_send(st, i), 0);
    /* Read first: over shm://, a close withdraws a call that no worker took yet. */
    for (int i = 0; i < 10000 && atomic_load(&test_gather_read) < 100; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(atomic_load(&test_gather_read), 100);
    shmrpc_stream_close(st); /* waits for the handler over inproc:// only */
    assert_int_equal(handler_returned(), SHMRPC_ECANCELLED);
    /* The client goes on. */
    assert_int_equal(gather_drain_open(f->c, &st), 0);
    assert_int_equal(gather_drain_send(st, 1), 0);
    assert_int_equal(gather_drain_done(st), 0);
    assert_int_equal(gather_drain_done(st), 0);
    shmrpc_stream_close(st);
}

typedef struct canceller {
    shmrpc_client *c;
    _Atomic int go;
} canceller;

static void *cancel_soon(void *arg)
{
    canceller *k = arg;
    for (int i = 0; i < 10000 && !atomic_load(&k->go); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    shmrpc_client_cancel(k->c);
    return NULL;
}

/* A cancel from another thread ends a send that waits for room, and the handler learns. */
static void cancelled_while_sending(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(gather_deaf_open(f->c, &st), 0);
    canceller k = {.c = f->c};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_soon, &k), 0);
    atomic_store(&k.go, 1);
    int rc = 0;
    for (int64_t i = 0; i < 1000000 && (rc = gather_deaf_send(st, i)) == 0; i++)
        ;
    pthread_join(t, NULL);
    assert_int_equal(rc, SHMRPC_ECANCELLED);
    assert_int_equal(handler_returned(), SHMRPC_ECANCELLED);
    shmrpc_stream_close(st);
}

static void an_item_that_does_not_decode(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(gather_sum_open(f->c, &st), 0);
    gather_Part p = {.n = 7, .note = {"ok", 2}};
    assert_int_equal(gather_sum_send(st, &p), 0);
    static const uint8_t bad[] = {0x92, 0xa1, 'x', 0xa1, 'y'}; /* ["x", "y"]: n a string */
    assert_int_equal(shmrpc_stream_send(st, bad, sizeof bad), 0);
    gather_Total t;
    assert_int_equal(gather_sum_done(st, &t), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(),
                        "Gather.sum: item, field 'Part.n': expected integer, got string");
    assert_int_equal(atomic_load(&test_gather_read), 1);
    shmrpc_stream_close(st);
}

static void raw_parts(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(gather_concat_open(f->c, &st), 0);
    enum { PARTS = 300, SIZE = 1000 }; /* 300 KB: more than the room, less than the maximum */
    uint8_t part[SIZE];
    for (int k = 0; k < PARTS; k++) {
        memset(part, k & 0xff, sizeof part);
        assert_int_equal(gather_concat_send(st, shmrpc_bytes_of(part, k % 7 ? SIZE : 0)), 0);
    }
    shmrpc_bytes all;
    assert_int_equal(gather_concat_done(st, &all), 0);
    size_t at = 0;
    for (int k = 0; k < PARTS; k++) {
        if (k % 7 == 0) continue;
        for (int i = 0; i < SIZE; i++)
            if (all.ptr[at + (size_t)i] != (k & 0xff)) fail_msg("part %d byte %d", k, i);
        at += SIZE;
    }
    assert_int_equal(all.len, at);
    assert_int_equal(atomic_load(&test_gather_read), PARTS);
    shmrpc_stream_close(st);
}

/* Waits up to 10 s for the handler to have read n items: whether it did. */
static bool handler_read(int64_t n)
{
    for (int i = 0; i < 10000 && atomic_load(&test_gather_read) < n; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return atomic_load(&test_gather_read) == n;
}

/* A corked stream (shmrpc_stream_cork): every item once and in order, past the window (every
 * seventh noted, so that several notes share each frame of items over tcp://); over tcp://
 * the items wait until the uncork, which sends them before the end; a stream closed with
 * items held ends its handler as a close does, and the connection goes on; a cork of no
 * stream is refused. */
static void corked(void **state)
{
    fixture *f = *state;
    shmrpc_client_set_timeout(f->c, 20000);
    shmrpc_stream *st;
    assert_int_equal(gather_sum_open(f->c, &st), 0);
    assert_int_equal(shmrpc_stream_cork(st, 1), 0);
    int64_t want = 0;
    for (int64_t i = 0; i < 5; i++) {
        gather_Part p = {.n = i};
        assert_int_equal(gather_sum_send(st, &p), 0);
        want += i;
    }
    if (strcmp(transport, "tcp") == 0) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        assert_int_equal(atomic_load(&test_gather_read), 0); /* held */
    }
    assert_int_equal(shmrpc_stream_cork(st, 0), 0);
    if (!handler_read(5)) fail_msg("the handler read %" PRId64 " items, not 5", test_gather_read);
    assert_int_equal(shmrpc_stream_cork(st, 1), 0);
    for (int64_t i = 5; i < 20000; i++) { /* about 24 bytes each: seven times the window */
        char note[16];
        snprintf(note, sizeof note, "%lld", (long long)i);
        gather_Part p = {.n = i, .note = {note, i % 7 ? 0 : strlen(note)}};
        assert_int_equal(gather_sum_send(st, &p), 0);
        want += i;
    }
    gather_Total t;
    assert_int_equal(gather_sum_done(st, &t), 0); /* what is held goes with the end */
    assert_int_equal(t.count, 20000);
    assert_int_equal(t.sum, want);
    assert_int_equal(t.notes.len, 19999 / 7);
    for (size_t k = 0; k < t.notes.len; k++) {
        char note[16];
        snprintf(note, sizeof note, "%zu", 7 * (k + 1));
        if (t.notes.items[k].len != strlen(note) ||
            memcmp(t.notes.items[k].ptr, note, strlen(note)) != 0)
            fail_msg("note %zu: '%.*s', not %s", k, (int)t.notes.items[k].len, t.notes.items[k].ptr,
                     note);
    }
    assert_int_equal(shmrpc_stream_cork(st, 0), SHMRPC_ECLOSED);
    shmrpc_stream_close(st);

    atomic_store(&test_gather_returned, 0);
    atomic_store(&test_gather_read, 0);
    assert_int_equal(gather_sum_open(f->c, &st), 0);
    assert_int_equal(gather_sum_send(st, &(gather_Part){.n = 1}), 0);
    if (!handler_read(1)) fail_msg("the handler read %" PRId64 " items, not 1", test_gather_read);
    assert_int_equal(shmrpc_stream_cork(st, 1), 0);
    for (int64_t i = 0; i < 3; i++)
        assert_int_equal(gather_sum_send(st, &(gather_Part){.n = i}), 0);
    shmrpc_stream_close(st);
    assert_int_equal(handler_returned(), SHMRPC_ECANCELLED);
    if (strcmp(transport, "tcp") == 0) /* what was held went nowhere */
        assert_int_equal(atomic_load(&test_gather_read), 1);
    assert_int_equal(gather_sum_open(f->c, &st), 0);
    assert_int_equal(gather_sum_send(st, &(gather_Part){.n = 7}), 0);
    assert_int_equal(gather_sum_done(st, &t), 0);
    assert_int_equal(t.sum, 7);
    shmrpc_stream_close(st);
    assert_int_equal(shmrpc_stream_cork(NULL, 1), SHMRPC_EINVAL);
}

/* Corked, to a server whose largest message is 100 bytes: a frame of items holds no more
 * than one of its largest items (the server's check), so many small items go in many. */
static void corked_to_a_server_of_small_items(void **state)
{
    fixture *f = *state;
    shmrpc_client_set_timeout(f->c, 10000);
    shmrpc_stream *st;
    assert_int_equal(gather_sum_open(f->c, &st), 0);
    assert_int_equal(shmrpc_stream_cork(st, 1), 0);
    int64_t want = 0;
    for (int64_t i = 0; i < 2000; i++) {
        gather_Part p = {.n = i, .note = {"0123456789", i % 1000 ? 0 : 10}};
        if (gather_sum_send(st, &p) != 0) fail_msg("send %" PRId64 ": %s", i, shmrpc_errmsg());
        want += i;
    }
    gather_Total t;
    if (gather_sum_done(st, &t) != 0) fail_msg("done: %s", shmrpc_errmsg());
    assert_int_equal(t.count, 2000);
    assert_int_equal(t.sum, want);
    shmrpc_stream_close(st);
}

/* Corked, a handler that answers early ends the sends all the same, at the next frame. */
static void corked_the_handler_answers_early(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(gather_sum_open(f->c, &st), 0);
    assert_int_equal(shmrpc_stream_cork(st, 1), 0);
    int rc = 0;
    for (int64_t sent = 0; sent < 1000000 && rc == 0; sent++) {
        gather_Part p = {.n = 1, .note = {sent == 9 ? "enough" : "", sent == 9 ? 6 : 0}};
        rc = gather_sum_send(st, &p);
    }
    assert_int_equal(rc, SHMRPC_ECLOSED);
    assert_int_equal(handler_returned(), 0);
    gather_Total t;
    assert_int_equal(gather_sum_done(st, &t), 0);
    assert_int_equal(t.count, 10);
    shmrpc_stream_close(st);
}

/* Corked, an item larger than the window, which goes alone once nothing is in transit:
 * what is held goes first, or it would wait for itself. */
static void corked_a_part_above_the_window(void **state)
{
    fixture *f = *state;
    shmrpc_client_set_timeout(f->c, 10000);
    shmrpc_stream *st;
    assert_int_equal(gather_concat_open(f->c, &st), 0);
    assert_int_equal(shmrpc_stream_cork(st, 1), 0);
    static uint8_t big[100000];
    memset(big, 'b', sizeof big);
    assert_int_equal(gather_concat_send(st, shmrpc_bytes_of("a", 1)), 0);
    assert_int_equal(gather_concat_send(st, shmrpc_bytes_of(big, sizeof big)), 0);
    assert_int_equal(gather_concat_send(st, shmrpc_bytes_of("c", 1)), 0);
    shmrpc_bytes all;
    if (gather_concat_done(st, &all) != 0) fail_msg("done: %s", shmrpc_errmsg());
    assert_int_equal(all.len, 2 + sizeof big);
    assert_int_equal(all.ptr[0], 'a');
    assert_memory_equal(all.ptr + 1, big, sizeof big);
    assert_int_equal(all.ptr[1 + sizeof big], 'c');
    shmrpc_stream_close(st);
}

/* A large answer while the client still sends: its sends fail once the handler returned,
 * and the answer comes whole, though over shm:// it lies where the client's items went. */
static void a_large_answer_before_the_end(void **state)
{
    fixture *f = *state;
    for (int round = 0; round < 20; round++) {
        atomic_store(&test_gather_read, 0);
        atomic_store(&test_gather_returned, 0);
        shmrpc_stream *st;
        assert_int_equal(gather_concat_open(f->c, &st), 0);
        enum { BEFORE = 50, SIZE = 4000 }; /* 200 KB of answer, past the ring */
        uint8_t part[SIZE];
        int rc = 0, k = 0;
        for (; k < 100000 && rc == 0; k++) {
            memset(part, k & 0xff, sizeof part);
            if (k == BEFORE) memcpy(part, "stop", 4);
            rc = gather_concat_send(st, shmrpc_bytes_of(part, k == BEFORE ? 4 : SIZE));
        }
        assert_int_equal(rc, SHMRPC_ECLOSED);
        shmrpc_bytes all;
        assert_int_equal(gather_concat_done(st, &all), 0);
        assert_int_equal(all.len, BEFORE * SIZE);
        for (k = 0; k < BEFORE; k++)
            for (int i = 0; i < SIZE; i++)
                if (all.ptr[k * SIZE + i] != (k & 0xff))
                    fail_msg("round %d: part %d byte %d is %d", round, k, i, all.ptr[k * SIZE + i]);
        assert_int_equal(handler_returned(), 0);
        assert_int_equal(atomic_load(&test_gather_read), BEFORE + 1);
        shmrpc_stream_close(st);
    }
}

/* A large answer while the client, alive, neither sends nor ends until the deadline passed:
 * over shm:// the answer would lie where the client may still write, so the call fails with
 * the deadline, saying the answer is lost; over tcp:// the answer came, but the deadline
 * ends the stream before it is read; over inproc:// the answer waits for the client. */
static void a_large_answer_past_the_deadline(void **state)
{
    fixture *f = *state;
    shmrpc_client_set_timeout(f->c, 300);
    shmrpc_stream *st;
    assert_int_equal(gather_concat_open(f->c, &st), 0);
    uint8_t part[4000];
    memset(part, 'a', sizeof part);
    for (int k = 0; k < 50; k++)
        assert_int_equal(gather_concat_send(st, shmrpc_bytes_of(part, sizeof part)), 0);
    assert_int_equal(gather_concat_send(st, shmrpc_bytes_of("stop", 4)), 0);
    assert_int_equal(handler_returned(), 0);
    struct timespec ts = {0, 700 * 1000 * 1000}; /* past the deadline, by both clocks */
    nanosleep(&ts, NULL);
    shmrpc_bytes all;
    int rc = gather_concat_done(st, &all);
    if (strcmp(transport, "shm") == 0) {
        assert_int_equal(rc, SHMRPC_ETIMEDOUT);
        assert_string_equal(shmrpc_errmsg(), "the stream's deadline passed before the client's "
                                             "last item; the answer is lost");
    } else if (strcmp(transport, "tcp") == 0) {
        assert_int_equal(rc, SHMRPC_ETIMEDOUT);
        assert_string_equal(shmrpc_errmsg(), "the stream's deadline passed");
    } else {
        assert_int_equal(rc, 0);
        assert_int_equal(all.len, 50 * sizeof part);
    }
    shmrpc_stream_close(st);
}

/* Both ways: items in order, interleaved with the client's, then the ends. */
static void both_ways(void **state)
{
    fixture *f = *state;
    shmrpc_client_set_timeout(f->c, 60000); /* 10,000 round trips on a loaded machine */
    shmrpc_stream *st;
    assert_int_equal(gather_doubled_open(f->c, &st), 0);
    int64_t v;
    for (int64_t i = 0; i < 10000; i++) {
        assert_int_equal(gather_doubled_send(st, i), 0);
        assert_int_equal(gather_doubled_recv(st, &v), 1);
        assert_int_equal(v, 2 * i);
    }
    for (int64_t i = 0; i < 100; i++)
        assert_int_equal(gather_doubled_send(st, i), 0);
    assert_int_equal(gather_doubled_done(st), 0);
    for (int64_t i = 0; i < 100; i++) {
        assert_int_equal(gather_doubled_recv(st, &v), 1);
        assert_int_equal(v, 2 * i);
    }
    assert_int_equal(gather_doubled_recv(st, &v), 0);
    assert_int_equal(handler_returned(), 0);
    shmrpc_stream_close(st);
}

/* Both ways, corked: an item held goes before the receive that waits for its answer. */
static void both_ways_corked(void **state)
{
    fixture *f = *state;
    shmrpc_client_set_timeout(f->c, 10000);
    shmrpc_stream *st;
    assert_int_equal(gather_doubled_open(f->c, &st), 0);
    assert_int_equal(shmrpc_stream_cork(st, 1), 0);
    int64_t v;
    for (int64_t i = 0; i < 1000; i++) {
        assert_int_equal(gather_doubled_send(st, i), 0);
        if (gather_doubled_recv(st, &v) != 1) fail_msg("recv %" PRId64 ": %s", i, shmrpc_errmsg());
        assert_int_equal(v, 2 * i);
    }
    assert_int_equal(gather_doubled_done(st), 0);
    assert_int_equal(gather_doubled_recv(st, &v), 0);
    shmrpc_stream_close(st);
}

/* A sending thread beside the test's, which receives (a stream both ways, of doubled or of
 * stuck: their items are alike). */
typedef struct sender {
    shmrpc_stream *st;
    int64_t n;    /* values to send, then the end; or -1: until a send fails */
    int64_t last; /* sent after the n values instead of the end, when not 0 */
    _Atomic int64_t sent;
    int rc; /* the send or done that ended it */
    char why[256];
} sender;

static void *send_all(void *arg)
{
    sender *s = arg;
    int rc = 0;
    for (int64_t i = 0; rc == 0 && (s->n < 0 || i < s->n); i++)
        if ((rc = gather_doubled_send(s->st, i)) == 0) atomic_store(&s->sent, i + 1);
    if (rc == 0 && s->last != 0) {
        rc = gather_doubled_send(s->st, s->last);
        for (int64_t i = 0; rc == 0 && i < 1000000; i++) /* until the handler's end is seen */
            rc = gather_doubled_send(s->st, i);
    }
    if (rc == 0) rc = gather_doubled_done(s->st);
    s->rc = rc;
    snprintf(s->why, sizeof s->why, "%s", shmrpc_errmsg());
    return NULL;
}

/* Waits up to 10 s for s's sends to stop: none for 200 ms (its send waits for room). */
static void sends_stopped(sender *s)
{
    int64_t last = -1;
    for (int i = 0; i < 50; i++) {
        struct timespec ts = {0, 200000000};
        nanosleep(&ts, NULL);
        int64_t now = atomic_load(&s->sent);
        if (now > 0 && now == last) return;
        last = now;
    }
    fail_msg("the sends did not stop within 10 s");
}

/* Both ways from two threads: one sends more than each way's room holds while the other
 * receives, and every item comes once and in order, then the end. The receives begin once
 * both ways are full and the send waits for room: a send that held the stream while it
 * waits would keep the receives out, and the handler, which waits to write, reads nothing. */
static void both_ways_from_two_threads(void **state)
{
    fixture *f = *state;
    /* 30 000 items of 13 bytes each way, six times the room: a second or two under ASan. The
     * deadline bounds how long a break of the two threads' locking waits (its mutants). */
    shmrpc_client_set_timeout(f->c, 20000);
    sender s = {.n = 30000};
    assert_int_equal(gather_doubled_open(f->c, &s.st), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_all, &s), 0);
    sends_stopped(&s);
    int64_t v, i = 0;
    int rc;
    while ((rc = gather_doubled_recv(s.st, &v)) == 1) {
        if (v != 2 * i) fail_msg("item %" PRId64 " is %" PRId64, i, v);
        i++;
    }
    pthread_join(t, NULL);
    if (rc != 0) fail_msg("recv: %s", shmrpc_errmsg());
    if (s.rc != 0) fail_msg("send: %s", s.why);
    assert_int_equal(i, s.n);
    assert_int_equal(handler_returned(), 0);
    shmrpc_stream_close(s.st);
}

/* Both ways from two threads: a cancel ends the send that waits for room (the test's thread
 * receives nothing, so the handler waits to write), and the receive after it says so. */
static void both_ways_cancelled_while_sending(void **state)
{
    fixture *f = *state;
    sender s = {.n = -1};
    assert_int_equal(gather_doubled_open(f->c, &s.st), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_all, &s), 0);
    sends_stopped(&s);
    shmrpc_client_cancel(f->c);
    pthread_join(t, NULL);
    assert_int_equal(s.rc, SHMRPC_ECANCELLED);
    int64_t v;
    assert_int_equal(gather_doubled_recv(s.st, &v), SHMRPC_ECANCELLED);
    assert_int_equal(handler_returned(), SHMRPC_ECANCELLED);
    shmrpc_stream_close(s.st);
}

/* Both ways from two threads: the deadline ends the send that waits for room, and the
 * receives after it give items in order, then the deadline. The handler's own wait ends at
 * the same deadline, and its return may come first: the send then fails with ECLOSED, and
 * the receives end with the handler's status, the deadline's too. */
static void both_ways_past_the_deadline(void **state)
{
    fixture *f = *state;
    shmrpc_client_set_timeout(f->c, 1000);
    sender s = {.n = -1};
    assert_int_equal(gather_doubled_open(f->c, &s.st), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_all, &s), 0);
    pthread_join(t, NULL); /* the deadline bounds it */
    if (s.rc != SHMRPC_ETIMEDOUT && s.rc != SHMRPC_ECLOSED) fail_msg("send: %d %s", s.rc, s.why);
    int64_t v, i = 0;
    int rc;
    while ((rc = gather_doubled_recv(s.st, &v)) == 1) {
        if (v != 2 * i) fail_msg("item %" PRId64 " is %" PRId64, i, v);
        i++;
    }
    assert_int_equal(rc, SHMRPC_ETIMEDOUT);
    assert_true(i <= atomic_load(&s.sent));
    shmrpc_stream_close(s.st);
}

/* Both ways from two threads, each waiting (stuck reads and writes nothing): the sender for
 * room, the test's thread for an item. The deadline ends both waits with its status (the
 * send's may be ECLOSED: the handler, at the same deadline, may return first); and so does a
 * cancel. */
static void both_ways_both_wait(void **state)
{
    fixture *f = *state;
    static const int ends[] = {SHMRPC_ETIMEDOUT, SHMRPC_ECANCELLED};
    for (int k = 0; k < 2; k++) {
        shmrpc_client_set_timeout(f->c, ends[k] == SHMRPC_ETIMEDOUT ? 1000 : 60000);
        sender s = {.n = -1};
        assert_int_equal(gather_stuck_open(f->c, &s.st), 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, send_all, &s), 0);
        canceller k_ = {.c = f->c};
        pthread_t kt;
        if (ends[k] == SHMRPC_ECANCELLED) {
            sends_stopped(&s);
            assert_int_equal(pthread_create(&kt, NULL, cancel_soon, &k_), 0);
            atomic_store(&k_.go, 1);
        }
        int64_t v;
        int rc = gather_doubled_recv(s.st, &v);
        pthread_join(t, NULL);
        if (ends[k] == SHMRPC_ECANCELLED) pthread_join(kt, NULL);
        if (rc != ends[k]) fail_msg("recv: %d %s", rc, shmrpc_errmsg());
        if (s.rc != ends[k] && !(ends[k] == SHMRPC_ETIMEDOUT && s.rc == SHMRPC_ECLOSED))
            fail_msg("send: %d %s", s.rc, s.why);
        assert_true(atomic_load(&s.sent) > 0);
        shmrpc_stream_close(s.st);
        assert_int_equal(handler_returned(),
                         ends[k] == SHMRPC_ETIMEDOUT ? SHMRPC_ETIMEDOUT : SHMRPC_ECANCELLED);
        atomic_store(&test_gather_returned, 0);
    }
}

/* Both ways from two threads: the handler returns (at -1) while the sender still sends; the
 * receives give every item before it, then the end, and the sends fail with ECLOSED. */
static void both_ways_the_handler_returns_while_sending(void **state)
{
    fixture *f = *state;
    shmrpc_client_set_timeout(f->c, 60000);
    sender s = {.n = 1000, .last = -1};
    assert_int_equal(gather_doubled_open(f->c, &s.st), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_all, &s), 0);
    int64_t v, i = 0;
    int rc;
    while ((rc = gather_doubled_recv(s.st, &v)) == 1) {
        if (v != 2 * i) fail_msg("item %" PRId64 " is %" PRId64, i, v);
        i++;
    }
    pthread_join(t, NULL);
    if (rc != 0) fail_msg("recv: %s", shmrpc_errmsg());
    assert_int_equal(i, 1000);
    if (s.rc != SHMRPC_ECLOSED) fail_msg("send: %d %s", s.rc, s.why);
    assert_int_equal(handler_returned(), 0);
    shmrpc_stream_close(s.st);
}

/* Both ways from two threads: an item that does not decode in the receiving thread ends the
 * stream while the sender waits for room; the send fails (cancelled), the handler is told,
 * and the close after both frees it. */
static void both_ways_an_item_that_does_not_decode(void **state)
{
    fixture *f = *state;
    shmrpc_client_set_timeout(f->c, 60000);
    sender s = {.n = -1};
    assert_int_equal(gather_doubled_open(f->c, &s.st), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_all, &s), 0);
    sends_stopped(&s); /* the handler waits to write what the test does not read */
    assert_int_equal(shmrpc_stream_decode_error(s.st, "Gather.doubled", "item", "planted"),
                     SHMRPC_EINVAL);
    pthread_join(t, NULL);
    if (s.rc != SHMRPC_ECANCELLED) fail_msg("send: %d %s", s.rc, s.why);
    int64_t v;
    assert_int_equal(gather_doubled_recv(s.st, &v), SHMRPC_EINVAL);
    assert_int_equal(handler_returned(), SHMRPC_ECANCELLED);
    shmrpc_stream_close(s.st);
}

/* What a stream's functions refuse, each with its reason. */
static void misuse(void **state)
{
    fixture *f = *state;
    shmrpc_stream *st;
    assert_int_equal(gather_sum_open(f->c, &st), 0);
    shmrpc_bytes b;
    assert_int_equal(shmrpc_stream_recv(st, &b), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "shmrpc_stream_answer gives it"));
    assert_int_equal(shmrpc_stream_send(st, NULL, 3), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_stream_done(st), 0);
    assert_int_equal(shmrpc_stream_send(st, "\x90", 1), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "sent already"));
    /* A call while it is open. */
    shmrpc_stream *other;
    assert_int_equal(gather_drain_open(f->c, &other), SHMRPC_EBUSY);
    gather_Total t;
    assert_int_equal(gather_sum_done(st, &t), 0);
    shmrpc_stream_close(st);

    assert_int_equal(gather_doubled_open(f->c, &st), 0);
    assert_int_equal(shmrpc_stream_answer(st, &b), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "shmrpc_stream_recv gives its items"));
    shmrpc_stream_close(st);
    assert_null(shmrpc_stream_item(NULL));

    /* An item above the client's maximum. */
    shmrpc_client *small;
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.max_msg_bytes = 1000;
    assert_int_equal(shmrpc_client_new(&small, &Gather_service_info, &o), 0);
    assert_int_equal(shmrpc_client_connect(small, f->addr), 0);
    assert_int_equal(gather_concat_open(small, &st), 0);
    uint8_t big[1001] = {0};
    assert_int_equal(gather_concat_send(st, shmrpc_bytes_of(big, sizeof big)), SHMRPC_ETOOBIG);
    assert_int_equal(gather_concat_send(st, shmrpc_bytes_of(big, 1000)), 0);
    shmrpc_bytes all;
    assert_int_equal(gather_concat_done(st, &all), 0);
    assert_int_equal(all.len, 1000);
    shmrpc_stream_close(st);
    shmrpc_client_free(small);

    /* A call of the method, which the server refuses. */
    assert_int_equal(shmrpc_client_request(f->c)->err, 0);
    assert_int_equal(shmrpc_buf_append(shmrpc_client_request(f->c), "\x90", 1), 0);
    assert_int_equal(shmrpc_client_call(f->c, GATHER_METHOD_SUM, &b), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "'sum' streams its parameter: it is opened, not called");
}

/* A tcp:// server of revision 8 reads no client's items: the open says so, before anything
 * is sent. (The revision is read when the server listens.) */
static void tcp_revision_8_refuses(void **state)
{
    (void)state;
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    shmrpc_server *s;
    atomic_store(&test_gather_returned, 0);
    assert_int_equal(setenv("SHMRPC_TEST_WIRE_PROTO", "8", 1), 0);
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &Gather_service, &test_gather_handlers, NULL), 0);
    if (shmrpc_server_listen(s, addr) != 0) fail_msg("%s", shmrpc_errmsg());
    unsetenv("SHMRPC_TEST_WIRE_PROTO");
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, serve, s), 0);
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &Gather_service_info, NULL), 0);
    shmrpc_client_set_timeout(c, 2000);
    if (shmrpc_client_connect(c, addr) != 0) fail_msg("%s", shmrpc_errmsg());
    shmrpc_stream *st;
    assert_int_equal(gather_sum_open(c, &st), SHMRPC_EVERSION);
    char want[200];
    snprintf(want, sizeof want,
             "%s agreed protocol revision 8, and streams of the parameter need revision 9: the "
             "stream was not opened (it did not run)",
             addr);
    assert_string_equal(shmrpc_errmsg(), want);
    assert_null(st);
    assert_int_equal(atomic_load(&test_gather_returned), 0);
    shmrpc_client_free(c);
    shmrpc_server_stop(s);
    void *rc;
    pthread_join(t, &rc); /* a serve that does not stop fails by ctest's timeout */
    assert_int_equal((intptr_t)rc, 0);
    shmrpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(every_item_once_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(the_handler_answers_early, setup, teardown),
        cmocka_unit_test_setup_teardown(the_handler_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(a_handler_that_does_not_read, setup, teardown),
        cmocka_unit_test_setup_teardown(closed_early_the_handler_learns, setup, teardown),
        cmocka_unit_test_setup_teardown(cancelled_while_sending, setup, teardown),
        cmocka_unit_test_setup_teardown(an_item_that_does_not_decode, setup, teardown),
        cmocka_unit_test_setup_teardown(raw_parts, setup, teardown),
        cmocka_unit_test_setup_teardown(corked, setup, teardown),
        cmocka_unit_test_setup_teardown(corked_the_handler_answers_early, setup, teardown),
        cmocka_unit_test_setup_teardown(corked_to_a_server_of_small_items, setup_small, teardown),
        cmocka_unit_test_setup_teardown(corked_a_part_above_the_window, setup, teardown),
        cmocka_unit_test_setup_teardown(a_large_answer_before_the_end, setup, teardown),
        cmocka_unit_test_setup_teardown(a_large_answer_past_the_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(both_ways_corked, setup, teardown),
        cmocka_unit_test_setup_teardown(both_ways_from_two_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(both_ways_cancelled_while_sending, setup, teardown),
        cmocka_unit_test_setup_teardown(both_ways_past_the_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(both_ways_both_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(both_ways_the_handler_returns_while_sending, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(both_ways_an_item_that_does_not_decode, setup, teardown),
        cmocka_unit_test_setup_teardown(misuse, setup, teardown),
        cmocka_unit_test(tcp_revision_8_refuses),
    };
    if (getenv("CLIENT_STREAM_TEST_TRANSPORT")) transport = getenv("CLIENT_STREAM_TEST_TRANSPORT");
    if (strcmp(transport, "inproc") != 0 && strcmp(transport, "shm") != 0 &&
        strcmp(transport, "tcp") != 0)
        fail_msg("CLIENT_STREAM_TEST_TRANSPORT: inproc, shm or tcp, not '%s'", transport);
    if (getenv("CLIENT_STREAM_TEST_ONLY"))
        cmocka_set_test_filter(getenv("CLIENT_STREAM_TEST_ONLY"));
    return cmocka_run_group_tests_name(transport, tests, NULL, NULL);
}
