/* SPDX-License-Identifier: MIT */
/* A tcp:// server's side of streams (revision 8; docs/wire.md, "Streams"), spoken to by a
 * raw client against real server processes: the items of a stream stay within the window
 * until the client grants more, a stream ends with its items and then an empty RESPONSE
 * (or an ERROR), a WINDOW that grants nothing or more than was sent closes the connection,
 * a connection at its bound still reads its streams' WINDOWs while its next REQUEST waits,
 * and a worker that runs its calls one at a time (max_running 1) holds every request while
 * its stream runs. Both ways a server runs calls: forked workers with a pool of threads,
 * and one at a time. Every wait is bounded; every server is stopped. */
#define _GNU_SOURCE
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "procs.h"
#include "raw_peer.h"
#include "stream.h"
#include "streamer_handlers.h"

/* What the servers' handlers did, in memory shared with the forked servers. */
typedef struct shared {
    _Atomic int32_t returned; /* forever's and quiet's handlers that returned */
    _Atomic int32_t status;   /* what the last of them returned */
} shared;
static shared *sh;

static int ended(int rc)
{
    atomic_store(&sh->status, rc);
    atomic_fetch_add(&sh->returned, 1);
    return rc;
}

static int forever(shmrpc_ctx *ctx, int64_t pad)
{
    (void)pad;
    for (int64_t i = 0;; i++) {
        int rc = streamer_forever_write(ctx, i);
        if (rc) return ended(rc);
    }
}

static int quiet(shmrpc_ctx *ctx)
{
    return ended(shmrpc_ctx_wait_cancelled(ctx, 20000));
}

static int not_here(shmrpc_ctx *ctx)
{
    return shmrpc_ctx_error(ctx, SHMRPC_EHANDLER, "not served here");
}

static int chunks(shmrpc_ctx *ctx, shmrpc_bytes spec)
{
    (void)spec;
    return not_here(ctx);
}

static const Streamer_handlers handlers = {.ticks = test_ticks,
                                           .forever = forever,
                                           .quiet = quiet,
                                           .deaf = not_here,
                                           .chunks = chunks,
                                           .slow = test_slow,
                                           .twice = test_twice};

static int port;
static pid_t srv;

/* A server of workers forked workers (0: one at a time, in place), max_running calls of a
 * connection at once and a progress timeout of progress_ms (0: the defaults). */
static void server_up_with(int workers, uint32_t max_running, int64_t progress_ms)
{
    char addr[64];
    port = test_free_port();
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", port);
    static shmrpc_tcp_opts tcp;
    memset(&tcp, 0, sizeof tcp);
    tcp.max_running = max_running;
    tcp.progress_timeout_ms = progress_ms;
    test_server ts = {&Streamer_service, &handlers, addr, workers, 0, NULL, &tcp, NULL};
    memset(sh, 0, sizeof *sh);
    srv = test_start_server(&ts);
    assert_true(srv > 0);
}

static void server_up(int workers, uint32_t max_running)
{
    server_up_with(workers, max_running, 0);
}

static void server_down(void)
{
    assert_true(test_stop_server(srv));
}

/* A raw connection that agreed revision proto, with no compression. */
static int dial(uint32_t proto)
{
    int fd = test_raw_connect(port, 5000);
    assert_true(fd >= 0);
    assert_true(test_raw_handshake_at(fd, &Streamer_service_info, proto));
    return fd;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Sends a frame of kind with body (n bytes). */
static void send_frame(int fd, uint8_t kind, uint16_t flags, uint32_t method, uint64_t rid,
                       const void *body, size_t n)
{
    assert_true(test_raw_send_frame(fd, kind, flags, method, rid, body, n));
}

static void open_stream(int fd, uint32_t method, uint64_t rid, const void *args, size_t n)
{
    send_frame(fd, SHMRPC__KIND_REQUEST, SHMRPC__FLAG_STREAM, method, rid, args, n);
}

static void grant(int fd, uint64_t rid, uint32_t bytes)
{
    uint8_t g[4];
    put_be32(g, bytes);
    send_frame(fd, SHMRPC__KIND_WINDOW, 0, 0, rid, g, sizeof g);
}

static const uint8_t pad0[] = {0x91, 0x00}; /* msgpack [0]: forever's pad */
static const uint8_t none[] = {0x90};       /* msgpack []: quiet's */

/* Whether a frame comes on fd within ms. */
static bool comes_within(int fd, int ms)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    return poll(&pf, 1, ms) == 1;
}

/* What a stream sent: its items' bytes as the window counts them, and the items. */
typedef struct seen {
    uint64_t bytes;
    uint64_t items;
} seen;

/* Checks an ITEMS body (every item whole, nothing left over) and counts it into s. */
static void count_items(const shmrpc__frame_hdr *h, const shmrpc_buf *b, uint64_t rid,
                        uint32_t method, seen *s)
{
    assert_int_equal(h->kind, SHMRPC__KIND_ITEMS);
    assert_true(h->request_id == rid);
    assert_int_equal(h->method, method);
    assert_int_equal(h->flags, 0);
    size_t at = 0;
    while (at < b->len) {
        assert_true(b->len - at >= 4);
        uint32_t n = get_be32(b->data + at);
        assert_true(n <= b->len - at - 4);
        at += 4 + n;
        s->bytes += 4 + n;
        s->items++;
    }
}

/* Reads ITEMS of the stream rid until nothing comes for quiet_ms; more than no test grants
 * (8 windows) fails at once, not when the test's time is out. */
static void read_until_quiet(int fd, uint64_t rid, uint32_t method, seen *s, int quiet_ms)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc__frame_hdr h;
    while (comes_within(fd, quiet_ms)) {
        assert_true(test_raw_frame(fd, &h, &b));
        count_items(&h, &b, rid, method, s);
        if (s->bytes > 8 * (uint64_t)SHMRPC__STREAM_WINDOW)
            fail_msg("%llu bytes of items came, beyond any grant", (unsigned long long)s->bytes);
    }
    shmrpc_buf_destroy(&b);
}

/* Reads the stream rid's ITEMS up to its end, which is returned with its body in b. */
static shmrpc__frame_hdr read_to_end(int fd, uint64_t rid, uint32_t method, seen *s,
                                     shmrpc_buf *b)
{
    shmrpc__frame_hdr h;
    for (;;) {
        assert_true(test_raw_frame(fd, &h, b));
        if (h.kind != SHMRPC__KIND_ITEMS) break;
        count_items(&h, b, rid, method, s);
    }
    assert_true(h.request_id == rid);
    return h;
}

static void expect_error(const shmrpc__frame_hdr *h, const shmrpc_buf *b, int want,
                         const char *part)
{
    char text[256];
    int rc = test_raw_answer(h, b, text, sizeof text);
    if (rc != want || !strstr(text, part))
        fail_msg("got %s '%s', not %s '%s'", shmrpc_strerror(rc), text, shmrpc_strerror(want),
                 part);
}

/* Polls (every ms, at most 10 s) until the handlers that returned reach want. */
static void await_returned(int32_t want)
{
    for (int i = 0; i < 10000 && atomic_load(&sh->returned) < want; i++)
        usleep(1000);
    assert_int_equal(atomic_load(&sh->returned), want);
}

/* forever's items fill the window and stop; a grant of 1000 bytes lets about that much more
 * through, never more; a CANCEL ends it with what the handler returned. */
static void window_holds(int workers)
{
    server_up(workers, 0);
    int fd = dial(SHMRPC__WIRE_PROTO);
    open_stream(fd, STREAMER_METHOD_FOREVER, 7, pad0, sizeof pad0);
    seen s = {0};
    read_until_quiet(fd, 7, STREAMER_METHOD_FOREVER, &s, 300);
    if (s.bytes > SHMRPC__STREAM_WINDOW || s.bytes + 13 < SHMRPC__STREAM_WINDOW)
        fail_msg("%llu bytes of items came before a grant, not the window's 65536",
                 (unsigned long long)s.bytes);
    grant(fd, 7, 1000); /* with what the window had left, less than an item */
    read_until_quiet(fd, 7, STREAMER_METHOD_FOREVER, &s, 300);
    if (s.bytes > SHMRPC__STREAM_WINDOW + 1000 || s.bytes + 13 < SHMRPC__STREAM_WINDOW + 1000)
        fail_msg("%llu bytes of items came in all for a grant of 1000",
                 (unsigned long long)s.bytes);
    send_frame(fd, SHMRPC__KIND_CANCEL, 0, 0, 7, NULL, 0);
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc__frame_hdr h = read_to_end(fd, 7, STREAMER_METHOD_FOREVER, &s, &b);
    expect_error(&h, &b, SHMRPC_ECANCELLED, "closed or cancelled");
    await_returned(1);
    assert_int_equal(atomic_load(&sh->status), SHMRPC_ECANCELLED);
    /* The connection goes on: a call, then a stream to its end. */
    static const uint8_t x[] = {0x91, 0x15}; /* [21] */
    send_frame(fd, SHMRPC__KIND_REQUEST, 0, STREAMER_METHOD_TWICE, 8, x, sizeof x);
    assert_true(test_raw_frame(fd, &h, &b));
    assert_int_equal(h.kind, SHMRPC__KIND_RESPONSE);
    assert_true(h.request_id == 8);
    shmrpc_buf_destroy(&b);
    close(fd);
    server_down();
}

static void window_holds_pooled(void **state)
{
    (void)state;
    window_holds(1);
}

static void window_holds_one_at_a_time(void **state)
{
    (void)state;
    window_holds(0);
}

/* ticks(5000): every item, in order of the grants the client gives back as it reads, then a
 * RESPONSE with no body; a handler's failure is an ERROR after the items it sent. */
static void ends_after_its_items(int workers)
{
    server_up(workers, 0);
    int fd = dial(SHMRPC__WIRE_PROTO);
    static const uint8_t args[] = {0x93, 0xcd, 0x13, 0x88, 0xff, 0x00}; /* [5000, -1, 0] */
    open_stream(fd, STREAMER_METHOD_TICKS, 9, args, sizeof args);
    seen s = {0};
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc__frame_hdr h;
    for (;;) {
        assert_true(test_raw_frame(fd, &h, &b));
        if (h.kind != SHMRPC__KIND_ITEMS) break;
        uint64_t had = s.bytes;
        count_items(&h, &b, 9, STREAMER_METHOD_TICKS, &s);
        grant(fd, 9, (uint32_t)(s.bytes - had));
    }
    assert_int_equal(h.kind, SHMRPC__KIND_RESPONSE);
    assert_true(h.request_id == 9);
    assert_int_equal(h.body_len, 0);
    assert_int_equal(s.items, 5000);
    assert_true(s.bytes > SHMRPC__STREAM_WINDOW); /* it needed the grants */
    /* [5, 3, -10]: fails with status -10 after 3 items */
    static const uint8_t fail[] = {0x93, 0x05, 0x03, 0xd0, 0xf6};
    open_stream(fd, STREAMER_METHOD_TICKS, 10, fail, sizeof fail);
    seen f = {0};
    h = read_to_end(fd, 10, STREAMER_METHOD_TICKS, &f, &b);
    assert_int_equal(f.items, 3);
    expect_error(&h, &b, -10, "failed after 3");
    shmrpc_buf_destroy(&b);
    close(fd);
    server_down();
}

static void ends_after_its_items_pooled(void **state)
{
    (void)state;
    ends_after_its_items(1);
}

static void ends_after_its_items_one_at_a_time(void **state)
{
    (void)state;
    ends_after_its_items(0);
}

/* A WINDOW that grants no bytes, or more than the stream was sent, closes the connection
 * with SHMRPC_EPROTO after its calls' answers; one for no stream is the race with a
 * stream's end and is let be; one on a connection of revision 7 does not decode. */
static void hostile_windows(void **state)
{
    (void)state;
    server_up(1, 0);
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc__frame_hdr h;
    seen s = {0};

    int fd = dial(SHMRPC__WIRE_PROTO);
    grant(fd, 99, 100); /* no stream 99: nothing */
    grant(fd, 7, 0);
    assert_true(test_raw_frame(fd, &h, &b));
    assert_true(h.request_id == 0);
    expect_error(&h, &b, SHMRPC_EPROTO, "a WINDOW frame for stream 7 grants no bytes");
    assert_false(test_raw_frame(fd, &h, &b)); /* closed */
    close(fd);

    fd = dial(SHMRPC__WIRE_PROTO);
    open_stream(fd, STREAMER_METHOD_QUIET, 5, none, sizeof none);
    usleep(50 * 1000); /* its handler waits */
    grant(fd, 5, 1);   /* nothing was sent: the window is whole */
    h = read_to_end(fd, 5, STREAMER_METHOD_QUIET, &s, &b);
    expect_error(&h, &b, SHMRPC_EPROTO, "");
    assert_true(test_raw_frame(fd, &h, &b));
    assert_true(h.request_id == 0);
    expect_error(&h, &b, SHMRPC_EPROTO,
                 "a WINDOW frame grants stream 5 more than it was sent (65536 + 1 is above 65536)");
    assert_false(test_raw_frame(fd, &h, &b));
    close(fd);
    await_returned(1);
    assert_int_equal(atomic_load(&sh->status), SHMRPC_EPROTO);

    /* The next stream on that worker (very likely on the same job) is not stopped by it. */
    fd = dial(SHMRPC__WIRE_PROTO);
    open_stream(fd, STREAMER_METHOD_QUIET, 6, none, sizeof none);
    assert_false(comes_within(fd, 300));
    send_frame(fd, SHMRPC__KIND_CANCEL, 0, 0, 6, NULL, 0);
    assert_true(test_raw_frame(fd, &h, &b));
    expect_error(&h, &b, SHMRPC_ECANCELLED, "");
    close(fd);
    await_returned(2);

    fd = dial(7); /* before streams: no WINDOW, and no stream flag */
    grant(fd, 5, 1);
    assert_true(test_raw_frame(fd, &h, &b));
    expect_error(&h, &b, SHMRPC_EPROTO, "WINDOW frame needs protocol revision 8 (not agreed)");
    close(fd);
    fd = dial(7);
    open_stream(fd, STREAMER_METHOD_QUIET, 5, none, sizeof none);
    assert_true(test_raw_frame(fd, &h, &b));
    expect_error(&h, &b, SHMRPC_EPROTO, "REQUEST frame has the stream flag, which needs protocol "
                                        "revision 8 (not agreed)");
    close(fd);

    /* A stream method called as one call, and a call opened as a stream: that call fails. */
    fd = dial(SHMRPC__WIRE_PROTO);
    send_frame(fd, SHMRPC__KIND_REQUEST, 0, STREAMER_METHOD_QUIET, 3, none, sizeof none);
    assert_true(test_raw_frame(fd, &h, &b));
    expect_error(&h, &b, SHMRPC_EINVAL, "answers with a stream");
    static const uint8_t x[] = {0x91, 0x15};
    open_stream(fd, STREAMER_METHOD_TWICE, 4, x, sizeof x);
    assert_true(test_raw_frame(fd, &h, &b));
    assert_true(h.request_id == 4);
    expect_error(&h, &b, SHMRPC_EINVAL, "");
    close(fd);
    shmrpc_buf_destroy(&b);
    server_down();
}

/* max_running 2, both taken by streams: the connection still reads the WINDOWs of one, whose
 * items go on flowing, while a REQUEST sent after them waits for a call to end, however
 * long: the server, not the client, keeps it waiting (a progress timeout of 100 ms). */
static void windows_are_read_at_the_bound(void **state)
{
    (void)state;
    server_up_with(1, 2, 100);
    int fd = dial(SHMRPC__WIRE_PROTO);
    open_stream(fd, STREAMER_METHOD_FOREVER, 1, pad0, sizeof pad0);
    open_stream(fd, STREAMER_METHOD_QUIET, 2, none, sizeof none);
    seen s = {0};
    read_until_quiet(fd, 1, STREAMER_METHOD_FOREVER, &s, 300);
    for (int i = 0; i < 4; i++) {
        uint64_t before = s.bytes;
        grant(fd, 1, (uint32_t)(before > 30000 ? 30000 : before));
        read_until_quiet(fd, 1, STREAMER_METHOD_FOREVER, &s, 300);
        assert_true(s.bytes > before);
    }
    static const uint8_t x[] = {0x91, 0x15};
    send_frame(fd, SHMRPC__KIND_REQUEST, 0, STREAMER_METHOD_TWICE, 3, x, sizeof x);
    assert_false(comes_within(fd, 600)); /* held: both calls of its bound run */
    close(fd);
    await_returned(2); /* its client went: both handlers learn */
    assert_int_equal(atomic_load(&sh->status), SHMRPC_EPEERDIED);
    server_down();
}

/* A worker that runs its calls one at a time (max_running 1) runs a stream on a thread of
 * its own and reads no request while it runs: another connection's call is answered after
 * the stream's end, not beside it. */
static void a_stream_holds_a_one_at_a_time_worker(void **state)
{
    (void)state;
    server_up(1, 1);
    int a = dial(SHMRPC__WIRE_PROTO), b = dial(SHMRPC__WIRE_PROTO);
    static const uint8_t slow[] = {0x92, 0x05, 0x32}; /* [5, 50]: 5 items, 50 ms apart */
    open_stream(a, STREAMER_METHOD_SLOW, 1, slow, sizeof slow);
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    shmrpc__frame_hdr h;
    seen s = {0};
    assert_true(test_raw_frame(a, &h, &buf)); /* the first item: it runs */
    count_items(&h, &buf, 1, STREAMER_METHOD_SLOW, &s);
    static const uint8_t x[] = {0x91, 0x15};
    send_frame(b, SHMRPC__KIND_REQUEST, 0, STREAMER_METHOD_TWICE, 2, x, sizeof x);
    /* A client that connects now does: its handshake and its PINGs are answered. */
    int c = dial(SHMRPC__WIRE_PROTO);
    send_frame(c, SHMRPC__KIND_PING, 0, 0, 77, NULL, 0);
    assert_true(test_raw_frame(c, &h, &buf));
    assert_int_equal(h.kind, SHMRPC__KIND_PONG);
    assert_false(comes_within(b, 100));
    h = read_to_end(a, 1, STREAMER_METHOD_SLOW, &s, &buf);
    assert_int_equal(h.kind, SHMRPC__KIND_RESPONSE);
    assert_int_equal(s.items, 5);
    assert_true(test_raw_frame(b, &h, &buf));
    assert_int_equal(h.kind, SHMRPC__KIND_RESPONSE);
    assert_true(h.request_id == 2);
    shmrpc_buf_destroy(&buf);
    close(a);
    close(b);
    close(c);
    server_down();
}

/* A connection that closes ends its streams, which would wait for its WINDOWs for ever: one
 * refused for a WINDOW that grants too much (both of its streams end, then its ERROR), and
 * one whose client says it leaves (an ERROR frame) but keeps its socket open. */
static void a_closing_connection_ends_its_streams(void **state)
{
    (void)state;
    server_up(1, 0);
    int fd = dial(SHMRPC__WIRE_PROTO);
    open_stream(fd, STREAMER_METHOD_FOREVER, 1, pad0, sizeof pad0);
    open_stream(fd, STREAMER_METHOD_FOREVER, 2, pad0, sizeof pad0);
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc__frame_hdr h;
    seen both = {0};
    while (comes_within(fd, 300) && both.bytes <= 2 * SHMRPC__STREAM_WINDOW) { /* both fill */
        assert_true(test_raw_frame(fd, &h, &b));
        both.bytes += h.body_len;
    }
    assert_true(both.bytes <= 2 * SHMRPC__STREAM_WINDOW);
    grant(fd, 1, SHMRPC__STREAM_WINDOW);
    int ends = 0;
    while (ends < 2) {
        assert_true(test_raw_frame(fd, &h, &b));
        if (h.kind == SHMRPC__KIND_ITEMS) continue;
        assert_true(h.request_id == 1 || h.request_id == 2);
        ends++;
    }
    assert_true(test_raw_frame(fd, &h, &b));
    assert_true(h.request_id == 0);
    expect_error(&h, &b, SHMRPC_EPROTO, "more than it was sent");
    await_returned(2);
    close(fd);

    fd = dial(SHMRPC__WIRE_PROTO);
    open_stream(fd, STREAMER_METHOD_FOREVER, 3, pad0, sizeof pad0);
    seen s = {0};
    read_until_quiet(fd, 3, STREAMER_METHOD_FOREVER, &s, 300);
    shmrpc_buf_clear(&b);
    size_t at = shmrpc__frame_begin(&b, SHMRPC__KIND_ERROR, 0, 0, 0);
    shmrpc__error_write(&b, SHMRPC_ECANCELLED, shmrpc_str_c("the client leaves"));
    assert_int_equal(shmrpc__frame_end(&b, at), 0);
    assert_true(test_raw_send(fd, b.data, b.len));
    await_returned(3);
    assert_int_equal(atomic_load(&sh->status), SHMRPC_EPEERDIED);
    shmrpc_buf_destroy(&b);
    close(fd);
    server_down();
}

/* The server stops (SIGTERM) under a stream that waits for its window: the stream ends with
 * the items sent and SHMRPC_ECANCELLED, then the DRAIN, and the server exits in time. */
static void the_server_stops_under_it(int workers)
{
    server_up(workers, 0);
    int fd = dial(SHMRPC__WIRE_PROTO);
    open_stream(fd, STREAMER_METHOD_FOREVER, 7, pad0, sizeof pad0);
    seen s = {0};
    read_until_quiet(fd, 7, STREAMER_METHOD_FOREVER, &s, 300);
    assert_int_equal(kill(srv, SIGTERM), 0);
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc__frame_hdr h = read_to_end(fd, 7, STREAMER_METHOD_FOREVER, &s, &b);
    expect_error(&h, &b, SHMRPC_ECANCELLED, "or the server stops");
    assert_true(test_raw_frame(fd, &h, &b));
    assert_int_equal(h.kind, SHMRPC__KIND_DRAIN);
    shmrpc_buf_destroy(&b);
    close(fd);
    assert_int_equal(atomic_load(&sh->status), SHMRPC_ECANCELLED);
    int st = test_reap(srv, 5000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void the_server_stops_under_it_pooled(void **state)
{
    (void)state;
    the_server_stops_under_it(1);
}

static void the_server_stops_under_it_one_at_a_time(void **state)
{
    (void)state;
    the_server_stops_under_it(0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(window_holds_pooled),
        cmocka_unit_test(window_holds_one_at_a_time),
        cmocka_unit_test(ends_after_its_items_pooled),
        cmocka_unit_test(ends_after_its_items_one_at_a_time),
        cmocka_unit_test(hostile_windows),
        cmocka_unit_test(windows_are_read_at_the_bound),
        cmocka_unit_test(a_stream_holds_a_one_at_a_time_worker),
        cmocka_unit_test(a_closing_connection_ends_its_streams),
        cmocka_unit_test(the_server_stops_under_it_pooled),
        cmocka_unit_test(the_server_stops_under_it_one_at_a_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
