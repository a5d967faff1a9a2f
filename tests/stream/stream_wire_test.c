/* SPDX-License-Identifier: MIT */
/* Streams over tcp:// (revision 8; docs/wire.md, "Streams") against a raw server on a thread
 * of this process, which sends ITEMS, RESPONSE and ERROR frames by hand: good items come back
 * in order (one larger than the window alone, compressed ones), WINDOW frames give back
 * exactly what was sent, a stream closed early is cancelled and its tail dropped, an older
 * server is refused, and each lie of a server (section 6 of the design: the client's checks)
 * ends the stream with SHMRPC_EPROTO after the good items. Every wait is bounded. */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "hello.h"
#include "port.h"
#include "procs.h"
#include "raw_peer.h"
#include "stream.h"

#define W ((int64_t)SHMRPC__STREAM_WINDOW)
/* The streams closed early a tcp:// client remembers per connection (TCP_DEAD_STREAMS). */
#define TCP_DEAD_STREAMS_TEST 8

/* --- the raw server ------------------------------------------------------------------- */

typedef struct peer peer;
typedef void (*script_fn)(peer *);

struct peer {
    int port, lfd, fd;
    uint32_t proto; /* the revision its HELLO_ACK chooses */
    uint16_t comp;  /* the compression it chooses */
    script_fn script;
    const void *arg;
    /* The stream's REQUEST, once it came (the last one's, and how many came). */
    int opens;
    uint64_t first_rid;
    bool opened;
    uint64_t rid;
    uint32_t method;
    /* Flow control as the server sees it. */
    int64_t credit; /* W - sent + granted */
    uint64_t sent, granted;
    int windows;
    uint32_t min_grant;
    bool bad_window; /* a grant of 0, or one beyond what was sent */
    int cancels;
    uint64_t cancel_rid;
    int calls; /* other REQUESTs, each answered (twice's 10) unless held */
    bool hold; /* other REQUESTs are not answered: the last one is kept here */
    uint64_t held_rid;
    uint32_t held_method;
    bool failed;
    char why[200];
    pthread_t thread;
    bool joined;
};

static void peer_fail(peer *p, const char *fmt, ...)
{
    if (p->failed) return;
    p->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, sizeof p->why, fmt, ap);
    va_end(ap);
}

static void put_be32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)(v >> 24), b[1] = (uint8_t)(v >> 16), b[2] = (uint8_t)(v >> 8),
    b[3] = (uint8_t)v;
}

/* Sends a frame with body (len bytes; body_len as given, which may lie). */
static void peer_send(peer *p, uint8_t kind, uint16_t flags, uint32_t method, uint64_t rid,
                      uint32_t body_len, const void *body, size_t len)
{
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    shmrpc__frame_hdr h = {
        .kind = kind, .flags = flags, .method = method, .request_id = rid, .body_len = body_len};
    shmrpc__frame_hdr_encode(&h, hdr);
    if (!test_raw_send(p->fd, hdr, sizeof hdr) || (len && !test_raw_send(p->fd, body, len)))
        peer_fail(p, "send failed: %s", strerror(errno));
}

/* Reads the next frame from the client within ms: false at EOF, on a failure or after ms. */
static bool peer_read(peer *p, shmrpc__frame_hdr *h, shmrpc_buf *b, int ms)
{
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    int64_t deadline = test_now_ms() + ms;
    if (!test_raw_recv(p->fd, hdr, sizeof hdr, deadline)) return false;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    uint16_t agreed = p->comp | SHMRPC__FLAG_LONE | SHMRPC__FLAG_DEADLINE | SHMRPC__FLAG_META |
                      SHMRPC__AGREED_CANCEL | (p->proto >= 8 ? SHMRPC__AGREED_STREAMS : 0);
    int rc = shmrpc__frame_hdr_decode(hdr, sizeof hdr, 1 << 20, agreed, h, &err);
    if (rc) peer_fail(p, "the client sent a frame that does not decode: %s", shmrpc__msg_get(&err));
    shmrpc_buf_destroy(&err);
    shmrpc_buf_clear(b);
    if (rc || shmrpc_buf_reserve(b, (size_t)h->body_len + 1) != 0) return false;
    /* A frame begun is read whole (2 s at most), even past ms: a header read at the end of a
     * turn would otherwise leave its body to be read as the next header. */
    int64_t body_deadline = test_now_ms() + 2000;
    if (body_deadline < deadline) body_deadline = deadline;
    if (!test_raw_recv(p->fd, b->data, h->body_len, body_deadline)) return false;
    b->len = h->body_len;
    return true;
}

/* Reads one frame and acts on it: WINDOWs counted and checked, CANCELs counted, a stream's
 * REQUEST noted, any other REQUEST answered as twice(5) is. False when none came. */
static bool peer_turn(peer *p, int ms)
{
    shmrpc__frame_hdr h;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    bool got = peer_read(p, &h, &b, ms);
    if (got && h.kind == SHMRPC__KIND_WINDOW) {
        uint32_t g = (uint32_t)b.data[0] << 24 | (uint32_t)b.data[1] << 16 |
                     (uint32_t)b.data[2] << 8 | b.data[3];
        if (h.request_id != p->rid || g == 0 || p->granted + g > p->sent) p->bad_window = true;
        if (p->windows == 0 || g < p->min_grant) p->min_grant = g;
        p->windows++;
        p->granted += g;
        p->credit += g;
    } else if (got && h.kind == SHMRPC__KIND_CANCEL) {
        p->cancels++;
        p->cancel_rid = h.request_id;
    } else if (got && h.kind == SHMRPC__KIND_REQUEST && (h.flags & SHMRPC__FLAG_STREAM)) {
        if (p->opens++ == 0) p->first_rid = h.request_id;
        p->opened = true;
        p->rid = h.request_id;
        p->method = h.method;
        p->credit = W;
    } else if (got && h.kind == SHMRPC__KIND_REQUEST) {
        p->calls++;
        p->held_rid = h.request_id;
        p->held_method = h.method;
        uint8_t ten = 10; /* msgpack's 10 */
        if (!p->hold) peer_send(p, SHMRPC__KIND_RESPONSE, 0, h.method, h.request_id, 1, &ten, 1);
    }
    shmrpc_buf_destroy(&b);
    return got;
}

/* Waits (5 s at most) until cond holds, reading what the client sends meanwhile. */
#define PEER_UNTIL(p, cond)                                                                        \
    do {                                                                                           \
        int64_t until_ = test_now_ms() + 5000;                                                     \
        while (!(cond) && !(p)->failed && test_now_ms() < until_)                                  \
            peer_turn((p), 100);                                                                   \
        if (!(cond)) peer_fail((p), "%s did not come true in 5 s", #cond);                         \
    } while (0)

/* Sends an ITEMS frame of the stream with n items (item i: lens[i] bytes of fill + i),
 * compressed with the agreed compression when comp. */
static void peer_items(peer *p, int n, const size_t *lens, char fill, bool comp)
{
    shmrpc_buf body, z;
    shmrpc_buf_init(&body);
    shmrpc_buf_init(&z);
    for (int i = 0; i < n; i++) {
        uint8_t len[4];
        put_be32(len, (uint32_t)lens[i]);
        shmrpc_buf_append(&body, len, 4);
        size_t at = body.len;
        shmrpc_buf_reserve(&body, at + lens[i] + 1);
        memset(body.data + at, fill + i, lens[i]);
        body.len = at + lens[i];
    }
    uint16_t used = 0;
    if (comp && shmrpc__body_compress(p->comp, shmrpc_bytes_of(body.data, body.len), &z, &used))
        peer_fail(p, "cannot compress");
    if (used)
        peer_send(p, SHMRPC__KIND_ITEMS, used, p->method, p->rid, (uint32_t)z.len, z.data, z.len);
    else
        peer_send(p, SHMRPC__KIND_ITEMS, 0, p->method, p->rid, (uint32_t)body.len, body.data,
                  body.len);
    if (comp && !used) peer_fail(p, "the items did not compress");
    p->credit -= (int64_t)body.len;
    p->sent += body.len;
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&z);
}

/* The stream's end: an empty RESPONSE. */
static void peer_end(peer *p)
{
    peer_send(p, SHMRPC__KIND_RESPONSE, 0, p->method, p->rid, 0, NULL, 0);
}

/* An ERROR frame for request rid with status and msg. */
static void peer_error(peer *p, uint64_t rid, int status, const char *msg)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc__error_write(&b, status, (shmrpc_str){msg, strlen(msg)});
    peer_send(p, SHMRPC__KIND_ERROR, 0, rid ? p->method : 0, rid, (uint32_t)b.len, b.data, b.len);
    shmrpc_buf_destroy(&b);
}

static void *peer_main(void *arg)
{
    peer *p = arg;
    struct pollfd pf = {.fd = p->lfd, .events = POLLIN};
    if (poll(&pf, 1, 5000) != 1 || (p->fd = accept(p->lfd, NULL, NULL)) < 0) {
        peer_fail(p, "no client came");
        return NULL;
    }
    shmrpc__frame_hdr h;
    shmrpc_buf b, out, err;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&out);
    shmrpc_buf_init(&err);
    shmrpc__hello ack = {.proto = p->proto,
                         .info = Streamer_service_info,
                         .compression = p->comp,
                         .threshold = 64,
                         .max_msg = 1 << 20};
    if (!test_raw_frame(p->fd, &h, &b) || h.kind != SHMRPC__KIND_HELLO) peer_fail(p, "no HELLO");
    size_t at = shmrpc__frame_begin(&out, SHMRPC__KIND_HELLO_ACK, 0, 0, 0);
    if (shmrpc__hello_write(&out, SHMRPC__KIND_HELLO_ACK, &ack, &err) ||
        shmrpc__frame_end(&out, at) || !test_raw_send(p->fd, out.data, out.len))
        peer_fail(p, "no HELLO_ACK: %s", shmrpc__msg_get(&err));
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&out);
    shmrpc_buf_destroy(&err);
    if (!p->failed) p->script(p);
    /* What the client sends until it closes (its last WINDOWs, a CANCEL). */
    int64_t until = test_now_ms() + 5000;
    while (test_now_ms() < until && peer_turn(p, 200)) {
    }
    close(p->fd);
    return NULL;
}

/* The peer of the test that runs, and its client: the teardown lets them go when a test
 * failed before it did (the peer's thread then still runs, on memory of its own). */
static peer *live_peer, *live_peer2; /* a second, for a client of two endpoints */
static shmrpc_client *live_client;

/* Listens on a free port and starts a peer with script. */
static peer *peer_start(script_fn script, const void *arg, uint32_t proto, uint16_t comp)
{
    peer *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->script = script;
    p->arg = arg;
    p->proto = proto;
    p->comp = comp;
    p->fd = -1;
    p->port = test_free_port();
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(p->lfd >= 0);
    int one = 1;
    setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)p->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(p->lfd, 4), 0);
    assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
    live_peer = p;
    return p;
}

/* Waits for the peer's thread (10 s at most): false when it did not end. */
static bool peer_wait(peer *p)
{
    if (p->joined) return true;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    if (pthread_timedjoin_np(p->thread, NULL, &ts) != 0) return false;
    close(p->lfd);
    p->joined = true;
    return true;
}

/* Waits for the peer and checks it saw nothing wrong; the caller frees it. */
static void peer_join(peer *p)
{
    assert_true(peer_wait(p));
    if (p->failed) fail_msg("the raw server: %s", p->why);
}

static int teardown(void **state)
{
    (void)state;
    if (live_client) shmrpc_client_free(live_client); /* the peer then sees its close */
    live_client = NULL;
    if (live_peer && !peer_wait(live_peer)) return -1; /* left running: not freed */
    free(live_peer);
    live_peer = NULL;
    if (live_peer2 && !peer_wait(live_peer2)) return -1;
    free(live_peer2);
    live_peer2 = NULL;
    return 0;
}

/* A client of the peer: compression offered when comp, max_msg when not 0. */
static shmrpc_client *client_of(const peer *p, unsigned comp, size_t max_msg)
{
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.compression = comp ? comp : SHMRPC_COMPRESS_NONE;
    if (max_msg) o.max_msg_bytes = max_msg;
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &Streamer_service_info, &o), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", p->port);
    live_client = c;
    if (shmrpc_client_connect(c, addr)) fail_msg("connect: %s", shmrpc_errmsg());
    return c;
}

static shmrpc_stream *open_chunks(shmrpc_client *c)
{
    shmrpc_stream *st;
    int rc = streamer_chunks_open(c, shmrpc_bytes_of("1 1", 3), &st);
    if (rc) fail_msg("open: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    return st;
}

/* The next item is n bytes of c. */
static void expect_item(shmrpc_stream *st, size_t n, char c)
{
    shmrpc_bytes item;
    int rc = streamer_chunks_recv(st, &item);
    if (rc != 1) fail_msg("recv: %d %s: %s", rc, shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(item.len, n);
    for (size_t i = 0; i < n; i++)
        if (((const char *)item.ptr)[i] != c) fail_msg("byte %zu of an item of %zu is off", i, n);
}

/* --- good streams --------------------------------------------------------------------- */

enum { MANY = 300, MANY_LEN = 1000, LARGE = 100000 };

/* Three small items, one larger than the window alone, then MANY within the credit the
 * client gives back, then the end. */
static void script_good(peer *p)
{
    PEER_UNTIL(p, p->opened);
    size_t small[3] = {1, 2, 3};
    peer_items(p, 3, small, 'a', false);
    PEER_UNTIL(p, p->credit == W); /* the large item goes alone, with nothing in transit */
    size_t large = LARGE;
    peer_items(p, 1, &large, 'L', false);
    PEER_UNTIL(p, p->credit == W);
    size_t ten[10];
    for (int i = 0; i < 10; i++)
        ten[i] = MANY_LEN;
    for (int k = 0; k < MANY / 10 && !p->failed; k++) {
        PEER_UNTIL(p, p->credit >= 10 * (MANY_LEN + 4));
        peer_items(p, 10, ten, (char)('0' + k % 10), false);
    }
    peer_end(p);
}

/* Every item once and in order, and the WINDOWs give back exactly what was sent, each grant
 * above 0 and none beyond what had come. */
static void good_items_in_order(void **state)
{
    (void)state;
    peer *p = peer_start(script_good, NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_stream *st = open_chunks(c);
    expect_item(st, 1, 'a');
    expect_item(st, 2, 'b');
    expect_item(st, 3, 'c');
    expect_item(st, LARGE, 'L');
    for (int k = 0; k < MANY / 10; k++)
        for (int i = 0; i < 10; i++)
            expect_item(st, MANY_LEN, (char)('0' + k % 10 + i));
    shmrpc_bytes item;
    int rc = streamer_chunks_recv(st, &item);
    if (rc) fail_msg("end: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    shmrpc_stream_close(st);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
    assert_false(p->bad_window);
    assert_int_equal(p->granted, p->sent);
    assert_true(p->windows >= 3);
    assert_int_equal(p->cancels, 0);
}

static void script_compressed(peer *p)
{
    PEER_UNTIL(p, p->opened);
    size_t lens[5] = {5000, 5000, 5000, 5000, 5000};
    peer_items(p, 5, lens, 'z', true);
    PEER_UNTIL(p, p->credit == W);
    size_t one = 40000;
    peer_items(p, 1, &one, 'y', true);
    peer_end(p);
}

/* ITEMS compressed as a RESPONSE is, with the compression of state (a SHMRPC__FLAG_*):
 * decompressed, their credit counted before. */
static void compressed_items(void **state)
{
    uint16_t flag = (uint16_t)(uintptr_t)*state;
    peer *p = peer_start(script_compressed, NULL, 8, flag);
    shmrpc_client *c = client_of(
        p, flag == SHMRPC__FLAG_SNAPPY ? SHMRPC_COMPRESS_SNAPPY : SHMRPC_COMPRESS_ZLIB, 0);
    shmrpc_stream *st = open_chunks(c);
    for (int i = 0; i < 5; i++)
        expect_item(st, 5000, (char)('z' + i));
    expect_item(st, 40000, 'y');
    shmrpc_bytes item;
    assert_int_equal(streamer_chunks_recv(st, &item), 0);
    shmrpc_stream_close(st);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
    assert_false(p->bad_window);
    assert_int_equal(p->granted, p->sent);
}

static void compressed_snappy(void **state)
{
    (void)state;
    void *flag = (void *)(uintptr_t)SHMRPC__FLAG_SNAPPY;
    compressed_items(&flag);
}

static void compressed_zlib(void **state)
{
    (void)state;
    void *flag = (void *)(uintptr_t)SHMRPC__FLAG_ZLIB;
    compressed_items(&flag);
}

static void script_silent(peer *p)
{
    PEER_UNTIL(p, p->opened);
    PEER_UNTIL(p, p->cancels == 1);
}

/* Its stream opened, reads what comes until the client closes the connection (5 s at most). */
static void script_until_closed(peer *p)
{
    PEER_UNTIL(p, p->opened);
    int64_t until = test_now_ms() + 5000;
    uint8_t byte;
    while (test_now_ms() < until && !p->failed) {
        if (peer_turn(p, 100)) continue;
        if (recv(p->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0) return;
    }
    peer_fail(p, "the client did not close the connection in 5 s");
}

/* The stream's deadline passes while nothing comes: SHMRPC_ETIMEDOUT on time, and its
 * server is not told (no CANCEL: it has the deadline too). */
static void deadline_passes(void **state)
{
    (void)state;
    peer *p = peer_start(script_until_closed, NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_client_set_timeout(c, 300);
    int64_t t0 = test_now_ms();
    shmrpc_stream *st = open_chunks(c);
    shmrpc_bytes item;
    assert_int_equal(streamer_chunks_recv(st, &item), SHMRPC_ETIMEDOUT);
    int64_t took = test_now_ms() - t0;
    assert_string_equal(shmrpc_errmsg(), "the stream's deadline passed");
    if (took < 280 || took > 1500)
        fail_msg("the deadline of 300 ms passed after %lld ms", (long long)took);
    /* Not told, then or at the close: the server has the deadline too (its handler's sends
     * fail with SHMRPC_ETIMEDOUT), as for a call. */
    shmrpc_stream_close(st);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
    assert_int_equal(p->cancels, 0);
}

static void *cancel_later(void *arg)
{
    usleep(200 * 1000);
    shmrpc_client_cancel(arg);
    return NULL;
}

/* shmrpc_client_cancel while recv waits: SHMRPC_ECANCELLED within a look at the cancels,
 * and its server is told. */
static void cancelled_while_waiting(void **state)
{
    (void)state;
    peer *p = peer_start(script_silent, NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_stream *st = open_chunks(c);
    pthread_t t;
    int64_t t0 = test_now_ms();
    assert_int_equal(pthread_create(&t, NULL, cancel_later, c), 0);
    shmrpc_bytes item;
    int rc = streamer_chunks_recv(st, &item);
    pthread_join(t, NULL);
    assert_int_equal(rc, SHMRPC_ECANCELLED);
    assert_string_equal(shmrpc_errmsg(), "the stream was cancelled (shmrpc_client_cancel)");
    assert_true(test_now_ms() - t0 < 1500);
    shmrpc_stream_close(st);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
    assert_int_equal(p->cancels, 1);
}

static void script_handler_fails(peer *p)
{
    PEER_UNTIL(p, p->opened);
    size_t two[2] = {4, 4};
    peer_items(p, 2, two, 'q', false);
    peer_error(p, p->rid, SHMRPC_EINVAL, "n must be at least 0");
}

/* An ERROR ends the stream with its status and message, after the items. */
static void handler_error_after_items(void **state)
{
    (void)state;
    peer *p = peer_start(script_handler_fails, NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_stream *st = open_chunks(c);
    expect_item(st, 4, 'q');
    expect_item(st, 4, 'r');
    shmrpc_bytes item;
    assert_int_equal(streamer_chunks_recv(st, &item), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "n must be at least 0");
    shmrpc_stream_close(st);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
}

static void script_closed_early(peer *p)
{
    PEER_UNTIL(p, p->opened);
    size_t two[2] = {8, 8};
    peer_items(p, 2, two, 'k', false);
    PEER_UNTIL(p, p->cancels == 1);
    /* What was in transit, then the handler's answer: the client drops both. */
    peer_items(p, 2, two, 'm', false);
    peer_error(p, p->rid, SHMRPC_ECANCELLED, "the client closed the stream");
    PEER_UNTIL(p, p->calls == 1);
}

/* A stream closed early: its server gets a CANCEL naming it, and what still comes of it
 * (items, its answer) is dropped by the next call, which succeeds on the same connection. */
static void closed_early_tail_dropped(void **state)
{
    (void)state;
    peer *p = peer_start(script_closed_early, NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_stream *st = open_chunks(c);
    expect_item(st, 8, 'k');
    shmrpc_stream_close(st);
    int64_t x = 0;
    int rc = streamer_twice(c, 5, &x);
    if (rc) fail_msg("twice: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(x, 10);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
    assert_int_equal(p->cancels, 1);
    assert_int_equal(p->cancel_rid, p->rid);
    assert_int_equal(p->calls, 1);
}

static void script_calls_only(peer *p)
{
    PEER_UNTIL(p, p->calls == 1);
}

/* A server that agreed revision 7: the open is refused before anything is sent, and calls
 * go on. */
static void old_server_refuses(void **state)
{
    (void)state;
    peer *p = peer_start(script_calls_only, NULL, 7, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_stream *st;
    assert_int_equal(streamer_chunks_open(c, shmrpc_bytes_of("1 1", 3), &st), SHMRPC_EVERSION);
    char want[200];
    snprintf(want, sizeof want,
             "tcp://127.0.0.1:%d agreed protocol revision 7, and streams need revision 8: the "
             "stream was not opened (it did not run)",
             p->port);
    assert_string_equal(shmrpc_errmsg(), want);
    int64_t x = 0;
    assert_int_equal(streamer_twice(c, 5, &x), 0);
    assert_int_equal(x, 10);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
    assert_false(p->opened);
}

static void script_items_to_an_old_client(peer *p)
{
    shmrpc__frame_hdr h;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    int64_t until = test_now_ms() + 5000;
    while (test_now_ms() < until && !peer_read(p, &h, &b, 100)) {
    }
    if (h.kind != SHMRPC__KIND_REQUEST) peer_fail(p, "no call came");
    p->method = h.method;
    p->rid = h.request_id;
    size_t one = 1;
    peer_items(p, 1, &one, 'o', false);
    shmrpc_buf_destroy(&b);
}

/* ITEMS on a connection agreed at revision 7 are refused by the decoder: the call that
 * reads them fails with SHMRPC_EPROTO. */
static void items_below_revision_8(void **state)
{
    (void)state;
    peer *p = peer_start(script_items_to_an_old_client, NULL, 7, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    int64_t x = 0;
    assert_int_equal(streamer_twice(c, 5, &x), SHMRPC_EPROTO);
    if (!strstr(shmrpc_errmsg(), "ITEMS frame needs protocol revision 8 (not agreed)"))
        fail_msg("%s", shmrpc_errmsg());
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
}

static void script_drain_first(peer *p)
{
    PEER_UNTIL(p, p->opened);
    peer_send(p, SHMRPC__KIND_DRAIN, 0, 0, 0, 0, NULL, 0);
}

/* A DRAIN before any item: the stream did not run (the server runs nothing it reads
 * after it). */
static void drain_before_items(void **state)
{
    (void)state;
    peer *p = peer_start(script_drain_first, NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_stream *st = open_chunks(c);
    shmrpc_bytes item;
    assert_int_equal(streamer_chunks_recv(st, &item), SHMRPC_EUNAVAIL);
    char want[200];
    snprintf(want, sizeof want,
             "tcp://127.0.0.1:%d is draining (its server stops): the stream did not run", p->port);
    assert_string_equal(shmrpc_errmsg(), want);
    shmrpc_stream_close(st);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
}

static void script_items_after_end(peer *p)
{
    PEER_UNTIL(p, p->opened);
    size_t one = 3;
    peer_items(p, 1, &one, 'e', false);
    peer_end(p);
    /* Before the next call's answer, more items of the stream that ended. */
    uint64_t calls = (uint64_t)p->calls;
    int64_t until = test_now_ms() + 5000;
    shmrpc__frame_hdr h;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    while (calls == (uint64_t)p->calls && test_now_ms() < until) {
        if (!peer_read(p, &h, &b, 100)) continue;
        if (h.kind == SHMRPC__KIND_REQUEST) {
            peer_items(p, 1, &one, 'f', false);
            uint8_t ten = 10;
            peer_send(p, SHMRPC__KIND_RESPONSE, 0, h.method, h.request_id, 1, &ten, 1);
            p->calls++;
        }
    }
    shmrpc_buf_destroy(&b);
}

/* ITEMS of a stream that has ended are ITEMS of no stream: the next call fails with
 * SHMRPC_EPROTO. */
static void items_after_the_end(void **state)
{
    (void)state;
    peer *p = peer_start(script_items_after_end, NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_stream *st = open_chunks(c);
    expect_item(st, 3, 'e');
    shmrpc_bytes item;
    assert_int_equal(streamer_chunks_recv(st, &item), 0);
    shmrpc_stream_close(st);
    int64_t x = 0;
    assert_int_equal(streamer_twice(c, 5, &x), SHMRPC_EPROTO);
    if (!strstr(shmrpc_errmsg(), "which opened no stream")) fail_msg("%s", shmrpc_errmsg());
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
}

static void script_dies(peer *p)
{
    PEER_UNTIL(p, p->opened);
    size_t two[2] = {5, 6};
    peer_items(p, 2, two, 'd', false);
    shutdown(p->fd, SHUT_RDWR); /* as a server killed mid-stream: FIN after the items */
}

/* A connection that breaks mid-stream: the items that came, then SHMRPC_EPEERDIED (the
 * stream may have run, and is not opened again). */
static void server_dies_mid_stream(void **state)
{
    (void)state;
    peer *p = peer_start(script_dies, NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_stream *st = open_chunks(c);
    expect_item(st, 5, 'd');
    expect_item(st, 6, 'e');
    shmrpc_bytes item;
    int64_t t0 = test_now_ms();
    assert_int_equal(streamer_chunks_recv(st, &item), SHMRPC_EPEERDIED);
    assert_true(test_now_ms() - t0 < 2000);
    char want[200];
    snprintf(want, sizeof want,
             "the connection to tcp://127.0.0.1:%d broke during the stream, after 2 items: it may "
             "have run (it is not opened again)",
             p->port);
    if (strncmp(shmrpc_errmsg(), want, strlen(want)) != 0) fail_msg("%s", shmrpc_errmsg());
    shmrpc_stream_close(st);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
    assert_int_equal(p->cancels, 0);
}

/* --- a server lying to the client ----------------------------------------------------- */

typedef struct lie {
    const char *name;
    void (*send)(peer *p); /* after the good items */
    const char *want;      /* in the message of the SHMRPC_EPROTO */
    size_t max_msg;        /* the client's, when not the default */
    uint16_t comp;         /* agreed */
} lie;

static void body_lie(peer *p, uint16_t flags, uint32_t method, uint64_t rid, const void *b,
                     size_t n)
{
    peer_send(p, SHMRPC__KIND_ITEMS, flags, method, rid, (uint32_t)n, b, n);
}

static const uint8_t one_x[5] = {0, 0, 0, 1, 'x'};

static void lie_rid0(peer *p)
{
    body_lie(p, 0, p->method, 0, one_x, 5);
}
static void lie_empty(peer *p)
{
    body_lie(p, 0, p->method, p->rid, NULL, 0);
}
static void lie_both_comp(peer *p)
{
    body_lie(p, SHMRPC__FLAG_COMPRESSION, p->method, p->rid, one_x, 5);
}
static void lie_comp_not_agreed(peer *p)
{
    body_lie(p, SHMRPC__FLAG_SNAPPY, p->method, p->rid, one_x, 5);
}
static void lie_too_big(peer *p) /* the header alone, to a client of 4096: refused so */
{
    peer_send(p, SHMRPC__KIND_ITEMS, 0, p->method, p->rid, 4096 + 5, NULL, 0);
}
static void lie_never_sent(peer *p)
{
    body_lie(p, 0, p->method, p->rid + 5, one_x, 5);
}
static void lie_other_method(peer *p)
{
    body_lie(p, 0, p->method + 1, p->rid, one_x, 5);
}
static void lie_beyond_credit(peer *p) /* two items, together above the window */
{
    size_t two[2] = {40000, 40000};
    peer_items(p, 2, two, 'o', false);
}
static void lie_cut_short(peer *p)
{
    static const uint8_t b[7] = {0, 0, 0, 1, 'x', 0, 0};
    body_lie(p, 0, p->method, p->rid, b, sizeof b);
}
static void lie_past_body(peer *p)
{
    static const uint8_t b[5] = {0, 0, 0, 9, 'x'};
    body_lie(p, 0, p->method, p->rid, b, sizeof b);
}
static void lie_over_max(peer *p) /* an item of 5000 in a client of 4096 */
{
    uint8_t b[104] = {0, 0, 0x13, 0x88};
    body_lie(p, 0, p->method, p->rid, b, sizeof b);
}
static void lie_comp_over_credit(peer *p) /* declares 80008 bytes of two items */
{
    size_t two[2] = {40000, 40000};
    peer_items(p, 2, two, 'c', true);
}
static void lie_comp_over_max(peer *p) /* declares one item of 10000 to a client of 4096 */
{
    size_t one = 10000;
    peer_items(p, 1, &one, 'c', true);
}
static void lie_comp_mismatch(peer *p) /* a snappy body whose declared length is off */
{
    uint8_t item[4 + 100] = {0, 0, 0, 100};
    memset(item + 4, 'm', 100);
    shmrpc_buf z;
    shmrpc_buf_init(&z);
    uint16_t used = 0;
    shmrpc__body_compress(SHMRPC__FLAG_SNAPPY, shmrpc_bytes_of(item, sizeof item), &z, &used);
    /* snappy begins with the length as a varint: 104, one byte; it now says 110 */
    if (!used || z.data[0] != 104) peer_fail(p, "unexpected snappy body");
    z.data[0] = 110;
    body_lie(p, SHMRPC__FLAG_SNAPPY, p->method, p->rid, z.data, z.len);
    shmrpc_buf_destroy(&z);
}
static void lie_response_body(peer *p)
{
    uint8_t nil = 0xc0;
    peer_send(p, SHMRPC__KIND_RESPONSE, 0, p->method, p->rid, 1, &nil, 1);
}
static void lie_drain(peer *p)
{
    peer_send(p, SHMRPC__KIND_DRAIN, 0, 0, 0, 0, NULL, 0);
}
static void lie_closing_error(peer *p)
{
    peer_error(p, 0, SHMRPC_EUNAVAIL, "the server stops");
}

static void script_call_beside(peer *p)
{
    p->hold = true;
    PEER_UNTIL(p, p->calls == 1 && p->opened);
    size_t one = 7;
    peer_items(p, 1, &one, 'a', false);
    uint8_t ten = 10;
    peer_send(p, SHMRPC__KIND_RESPONSE, 0, p->held_method, p->held_rid, 1, &ten, 1);
    peer_items(p, 1, &one, 'b', false);
    peer_end(p);
}

/* A call started before the open is answered while the stream runs: its answer, read by
 * the stream's reads, finishes it. */
static void a_call_answered_during_a_stream(void **state)
{
    (void)state;
    peer *p = peer_start(script_call_beside, NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_call *call;
    assert_int_equal(streamer_twice_start(c, 5, &call), 0);
    shmrpc_stream *st = open_chunks(c);
    expect_item(st, 7, 'a');
    expect_item(st, 7, 'b');
    shmrpc_bytes item;
    assert_int_equal(streamer_chunks_recv(st, &item), 0);
    assert_int_equal(shmrpc_call_status(call), 0);
    shmrpc_stream_close(st);
    int64_t x = 0;
    assert_int_equal(streamer_twice_finish(c, call, &x), 0);
    assert_int_equal(x, 10);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
}

static void script_call_after_items(peer *p)
{
    p->hold = true;
    PEER_UNTIL(p, p->calls == 1 && p->opened);
    size_t one = 7, many[20];
    peer_items(p, 1, &one, 'a', false);
    for (int i = 0; i < 20; i++)
        many[i] = 2000;
    peer_items(p, 20, many, 'c', false);
    uint8_t ten = 10;
    peer_send(p, SHMRPC__KIND_RESPONSE, 0, p->held_method, p->held_rid, 1, &ten, 1);
    peer_end(p);
}

/* An item stays whole until the next recv though a wait for a call started before the open
 * reads the stream's next 40 KB of items meanwhile (the client hands items out in place,
 * and copies them only while such a call may read: the items read would move it). */
static void an_item_held_across_a_call_beside_the_stream(void **state)
{
    (void)state;
    peer *p = peer_start(script_call_after_items, NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_call *call;
    assert_int_equal(streamer_twice_start(c, 5, &call), 0);
    shmrpc_stream *st = open_chunks(c);
    shmrpc_bytes held;
    assert_int_equal(streamer_chunks_recv(st, &held), 1);
    assert_int_equal(held.len, 7);
    int64_t x = 0;
    assert_int_equal(streamer_twice_finish(c, call, &x), 0); /* reads the 20 items first */
    assert_int_equal(x, 10);
    for (size_t b = 0; b < held.len; b++)
        if (held.ptr[b] != 'a') fail_msg("byte %zu of the held item: %u", b, held.ptr[b]);
    shmrpc_bytes item;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(streamer_chunks_recv(st, &item), 1);
        assert_int_equal(item.len, 2000);
        assert_int_equal(item.ptr[1999], 'c' + i);
    }
    assert_int_equal(streamer_chunks_recv(st, &item), 0);
    shmrpc_stream_close(st);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
}

static void script_call_then_lie(peer *p)
{
    p->hold = true;
    PEER_UNTIL(p, p->calls == 1 && p->opened);
    size_t two[2] = {1, 2};
    peer_items(p, 2, two, 'g', false);
    body_lie(p, 0, p->method, p->rid + 5, one_x, 5); /* ITEMS of no stream */
}

/* A lie ends the stream and fails the calls in flight on the connection with
 * SHMRPC_EPROTO. */
static void a_lie_fails_the_calls_in_flight(void **state)
{
    (void)state;
    peer *p = peer_start(script_call_then_lie, NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_call *call;
    assert_int_equal(streamer_twice_start(c, 5, &call), 0);
    shmrpc_stream *st = open_chunks(c);
    expect_item(st, 1, 'g');
    expect_item(st, 2, 'h');
    shmrpc_bytes item;
    assert_int_equal(streamer_chunks_recv(st, &item), SHMRPC_EPROTO);
    assert_int_equal(shmrpc_call_status(call), SHMRPC_EPROTO);
    shmrpc_stream_close(st);
    int64_t x = 0;
    assert_int_equal(streamer_twice_finish(c, call, &x), SHMRPC_EPROTO);
    if (!strstr(shmrpc_errmsg(), "which opened no stream; the calls in flight may have run"))
        fail_msg("%s", shmrpc_errmsg());
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
}

enum { CLOSED = TCP_DEAD_STREAMS_TEST + 1 };

static void script_many_closed(peer *p)
{
    p->hold = true;
    PEER_UNTIL(p, p->calls == 1 && p->opens == CLOSED && p->cancels == CLOSED);
    /* Items of the first stream (forgotten: one more than the client remembers) and of the
     * second, then every stream's answer, then the call's. */
    uint64_t rid = p->rid;
    size_t one = 3;
    p->rid = p->first_rid;
    peer_items(p, 1, &one, 'x', false);
    p->rid = p->first_rid + 1;
    peer_items(p, 1, &one, 'y', false);
    for (int i = 0; i < CLOSED; i++) {
        p->rid = p->first_rid + (uint64_t)i;
        peer_error(p, p->rid, SHMRPC_ECANCELLED, "the client closed the stream");
    }
    p->rid = rid;
    uint8_t ten = 10;
    peer_send(p, SHMRPC__KIND_RESPONSE, 0, p->held_method, p->held_rid, 1, &ten, 1);
    p->hold = false;
    PEER_UNTIL(p, p->calls == 2);
}

/* More streams closed early than the client remembers, beside a call in flight: what comes
 * of the one it forgot is dropped all the same, and the call and the next one succeed. */
static void more_closed_early_than_remembered(void **state)
{
    (void)state;
    peer *p = peer_start(script_many_closed, NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_call *call;
    assert_int_equal(streamer_twice_start(c, 5, &call), 0);
    for (int i = 0; i < CLOSED; i++)
        shmrpc_stream_close(open_chunks(c));
    int64_t x = 0;
    int rc = streamer_twice_finish(c, call, &x);
    if (rc) fail_msg("finish: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(x, 10);
    x = 0;
    rc = streamer_twice(c, 5, &x);
    if (rc) fail_msg("twice: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(x, 10);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
}

/* --- a stream beside calls that time out, frames cut, credit read ahead -------------- */

/* Set by the test once the call it waits for timed out: the peers then go on. */
static int stall_go;

static bool stall_went(void)
{
    return __atomic_load_n(&stall_go, __ATOMIC_ACQUIRE) != 0;
}

/* Endpoint A: holds the call that comes (it times out), sends the stream's first item, and
 * once the call timed out the second and the end. */
static void script_stalled_a(peer *p)
{
    p->hold = true;
    PEER_UNTIL(p, p->calls == 1 && p->opened);
    size_t one = 7;
    peer_items(p, 1, &one, 'a', false);
    PEER_UNTIL(p, stall_went());
    peer_items(p, 1, &one, 'b', false);
    peer_end(p);
}

/* Endpoint B: holds the call that comes (so that it stays outstanding, and the stream goes
 * to A) until the call on A timed out, then answers it. */
static void script_stalled_b(peer *p)
{
    p->hold = true;
    PEER_UNTIL(p, p->calls == 1);
    PEER_UNTIL(p, stall_went());
    uint8_t ten = 10;
    peer_send(p, SHMRPC__KIND_RESPONSE, 0, p->held_method, p->held_rid, 1, &ten, 1);
}

/* A call that times out on the endpoint of an open stream, while another endpoint takes
 * calls: the endpoint is left out (the next calls go elsewhere), but its connection, which
 * carries the stream, is not let go, neither then nor by a probe once its backoff ended: the
 * stream goes on to its items and its end (before, it broke: SHMRPC_EPEERDIED, 'broke
 * during the stream'). Call X goes to A (the first endpoint, where the connect went), call
 * Y to B (the least loaded), and the stream, tied, to A again (the cursor is past B); both
 * calls are held by their servers. */
static void a_call_timing_out_beside_a_stream(void **state)
{
    (void)state;
    __atomic_store_n(&stall_go, 0, __ATOMIC_RELEASE);
    peer *a = peer_start(script_stalled_a, NULL, 8, 0);
    peer *b = peer_start(script_stalled_b, NULL, 8, 0);
    live_peer2 = a; /* live_peer is b */
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.compression = SHMRPC_COMPRESS_NONE;
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &Streamer_service_info, &o), 0);
    live_client = c;
    char addr[96];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d,127.0.0.1:%d", a->port, b->port);
    if (shmrpc_client_connect(c, addr)) fail_msg("connect: %s", shmrpc_errmsg());
    shmrpc_call *x, *y;
    shmrpc_client_set_timeout(c, 300);
    assert_int_equal(streamer_twice_start(c, 5, &x), 0);
    shmrpc_client_set_timeout(c, 5000);
    assert_int_equal(streamer_twice_start(c, 6, &y), 0);
    shmrpc_stream *st = open_chunks(c);
    expect_item(st, 7, 'a'); /* the stream is on A */
    size_t which = 9;
    int64_t t0 = test_now_ms();
    int rc = shmrpc_client_wait(c, &x, 1, 2000, &which);
    if (rc) fail_msg("wait: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(which, 0);
    assert_true(test_now_ms() - t0 < 1500);
    assert_int_equal(shmrpc_call_status(x), SHMRPC_ETIMEDOUT);
    __atomic_store_n(&stall_go, 1, __ATOMIC_RELEASE);
    /* Past A's backoff (the probe interval, 100 ms, with jitter: 150 ms at most), Y's wait
     * tends the endpoints: A, left out, is not probed while its stream runs (a probe would
     * let its connection go). */
    usleep(300 * 1000);
    int64_t v = 0;
    rc = streamer_twice_finish(c, y, &v);
    if (rc) fail_msg("Y: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(v, 10);
    shmrpc_bytes item;
    rc = streamer_chunks_recv(st, &item);
    if (rc != 1)
        fail_msg("recv after the call timed out: %d %s: %s", rc, shmrpc_strerror(rc),
                 shmrpc_errmsg());
    assert_int_equal(item.len, 7);
    assert_int_equal(((const char *)item.ptr)[0], 'b');
    rc = streamer_chunks_recv(st, &item);
    if (rc) fail_msg("end: %d %s: %s", rc, shmrpc_strerror(rc), shmrpc_errmsg());
    shmrpc_stream_close(st);
    assert_int_equal(streamer_twice_finish(c, x, &v), SHMRPC_ETIMEDOUT);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(a);
    peer_join(b);
    assert_int_equal(a->calls, 1);
    assert_int_equal(b->calls, 1);
    assert_int_equal(a->opens, 1);
    assert_int_equal(b->opens, 0);
    free(a);
    live_peer2 = NULL;
}

/* The stream opened (and, when arg is set, a call held), one item, then, once it was
 * delivered, 10 bytes of an ITEMS frame's header, and nothing more until the client closes. */
static void script_cut(peer *p)
{
    if (p->arg) p->hold = true;
    PEER_UNTIL(p, p->opened && (!p->arg || p->calls == 1));
    size_t one = 6;
    peer_items(p, 1, &one, 'u', false);
    /* Once the item was delivered (its WINDOW came), so that the client reads the cut frame
     * on its own, not with the item's frame. */
    PEER_UNTIL(p, p->windows == 1);
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    shmrpc__frame_hdr h = {.kind = SHMRPC__KIND_ITEMS,
                           .method = p->method,
                           .request_id = p->rid,
                           .body_len = 5};
    shmrpc__frame_hdr_encode(&h, hdr);
    if (!test_raw_send(p->fd, hdr, 10)) peer_fail(p, "send failed: %s", strerror(errno));
    script_until_closed(p);
}

/* A frame cut in the middle when the stream's deadline passes: SHMRPC_ETIMEDOUT on time,
 * the stream's deadline's message (before: SHMRPC_EPEERDIED), and with call (a call of 3 s
 * started before the open, on the same connection) still on the stream's deadline (before:
 * the frame was read until the call's, 3 s), the call failing with SHMRPC_EPEERDIED (the
 * connection cannot go on without the rest of the frame). */
static void frame_cut_at_the_deadline_with(bool call)
{
    static const int with_call = 1;
    peer *p = peer_start(script_cut, call ? &with_call : NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_call *k = NULL;
    if (call) {
        shmrpc_client_set_timeout(c, 3000);
        assert_int_equal(streamer_twice_start(c, 5, &k), 0);
    }
    shmrpc_client_set_timeout(c, 300);
    int64_t t0 = test_now_ms();
    shmrpc_stream *st = open_chunks(c);
    expect_item(st, 6, 'u');
    shmrpc_bytes item;
    int rc = streamer_chunks_recv(st, &item);
    int64_t took = test_now_ms() - t0;
    if (rc != SHMRPC_ETIMEDOUT)
        fail_msg("recv: %d %s: %s (after %lld ms)", rc, shmrpc_strerror(rc), shmrpc_errmsg(),
                 (long long)took);
    assert_string_equal(shmrpc_errmsg(), "the stream's deadline passed");
    if (took < 280 || took > 1500)
        fail_msg("the deadline of 300 ms passed after %lld ms", (long long)took);
    if (call) {
        assert_int_equal(shmrpc_call_status(k), SHMRPC_EPEERDIED);
        int64_t x = 0;
        assert_int_equal(streamer_twice_finish(c, k, &x), SHMRPC_EPEERDIED);
        if (!strstr(shmrpc_errmsg(), "cut in the middle of a frame"))
            fail_msg("%s", shmrpc_errmsg());
    }
    shmrpc_stream_close(st);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
}

static void frame_cut_at_the_deadline(void **state)
{
    (void)state;
    frame_cut_at_the_deadline_with(false);
}

static void frame_cut_at_the_deadline_beside_a_call(void **state)
{
    (void)state;
    frame_cut_at_the_deadline_with(true);
}

/* A call held, the stream opened: two ITEMS of one item of 40000 bytes each (the second
 * beyond the credit left, 65536 - 40004, while the first is not delivered), then the call's
 * answer, which may find the connection closed. */
static void script_credit_read_ahead(peer *p)
{
    p->hold = true;
    PEER_UNTIL(p, p->calls == 1 && p->opened);
    size_t one = 40000;
    peer_items(p, 1, &one, 'o', false);
    peer_items(p, 1, &one, 'p', false);
    uint8_t frame[SHMRPC__FRAME_HDR_SIZE + 1];
    shmrpc__frame_hdr h = {.kind = SHMRPC__KIND_RESPONSE,
                           .method = p->held_method,
                           .request_id = p->held_rid,
                           .body_len = 1};
    shmrpc__frame_hdr_encode(&h, frame);
    frame[SHMRPC__FRAME_HDR_SIZE] = 10;
    (void)test_raw_send(p->fd, frame, sizeof frame); /* the client may have closed */
}

/* One item beyond the credit left while other items are still undelivered (read ahead by
 * the wait for a call, which reads for the stream too) is a lie, though it is a single
 * item: a large item goes alone only while the whole window is free. The call fails with
 * SHMRPC_EPROTO, and the stream gives the first item, then SHMRPC_EPROTO. */
static void one_item_beyond_the_credit_left(void **state)
{
    (void)state;
    peer *p = peer_start(script_credit_read_ahead, NULL, 8, 0);
    shmrpc_client *c = client_of(p, 0, 0);
    shmrpc_call *call;
    assert_int_equal(streamer_twice_start(c, 5, &call), 0);
    shmrpc_stream *st = open_chunks(c);
    int64_t x = 0;
    int rc = streamer_twice_finish(c, call, &x);
    if (rc != SHMRPC_EPROTO)
        fail_msg("the call: %d %s: %s (x %lld)", rc, shmrpc_strerror(rc), shmrpc_errmsg(),
                 (long long)x);
    expect_item(st, 40000, 'o');
    shmrpc_bytes item;
    rc = streamer_chunks_recv(st, &item);
    if (rc != SHMRPC_EPROTO || !strstr(shmrpc_errmsg(), "sent 40004 bytes of items for stream") ||
        !strstr(shmrpc_errmsg(), "beyond its credit of 25532"))
        fail_msg("recv: %d %s: %s", rc, shmrpc_strerror(rc), shmrpc_errmsg());
    shmrpc_stream_close(st);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
}

static const lie lies[] = {
    {"rid0", lie_rid0, "ITEMS frame has no request id", 0, 0},
    {"empty", lie_empty, "ITEMS frame has a body of 0 bytes, too short for an item's length", 0, 0},
    {"both_comp", lie_both_comp, "has both the snappy and the zlib flag", 0, SHMRPC__FLAG_SNAPPY},
    {"comp_not_agreed", lie_comp_not_agreed, "compressed with snappy, which was not agreed", 0, 0},
    {"too_big", lie_too_big, "ITEMS frame body of 4101 bytes is above the maximum of 4100", 4096,
     0},
    {"never_sent", lie_never_sent, "which opened no stream", 0, 0},
    {"other_method", lie_other_method, "which is method", 0, 0},
    {"beyond_credit", lie_beyond_credit,
     "sent 80008 bytes of items for stream 1, beyond its credit", 0, 0},
    {"cut_short", lie_cut_short, "item length at offset 5 is cut short (2 of 4 bytes)", 0, 0},
    {"past_body", lie_past_body, "an item of 9 bytes for stream 1 at offset 0, past the end", 0, 0},
    {"over_max", lie_over_max, "an item of 5000 bytes for stream 1 at offset 0, above the client's",
     4096, 0},
    {"comp_over_credit", lie_comp_over_credit, "sent 80008 bytes of items for stream 1, beyond", 0,
     SHMRPC__FLAG_SNAPPY},
    {"comp_over_max", lie_comp_over_max, "of 10004 bytes, above the client's maximum item of 4096",
     4096, SHMRPC__FLAG_SNAPPY},
    {"comp_mismatch", lie_comp_mismatch, "does not decompress", 0, SHMRPC__FLAG_SNAPPY},
    {"response_body", lie_response_body,
     "the RESPONSE that ends stream 1 has a body of 1 bytes (it has none)", 0, 0},
    {"drain", lie_drain, "sent a DRAIN before the end of stream 1, after 2 items", 0, 0},
    {"closing_error", lie_closing_error, "sent a closing ERROR before the end of stream 1", 0, 0},
};

static void script_lie(peer *p)
{
    const lie *l = p->arg;
    PEER_UNTIL(p, p->opened);
    size_t two[2] = {1, 2};
    peer_items(p, 2, two, 'g', false);
    PEER_UNTIL(p, p->credit == W); /* both delivered */
    l->send(p);
}

/* Each lie: the good items, then SHMRPC_EPROTO with the message, and the stream stays ended. */
static void a_lie(void **state)
{
    const lie *l = *state;
    peer *p = peer_start(script_lie, l, 8, l->comp);
    shmrpc_client *c = client_of(p, l->comp ? SHMRPC_COMPRESS_SNAPPY : 0, l->max_msg);
    shmrpc_stream *st = open_chunks(c);
    expect_item(st, 1, 'g');
    expect_item(st, 2, 'h');
    shmrpc_bytes item;
    int rc = streamer_chunks_recv(st, &item);
    if (rc != SHMRPC_EPROTO || !strstr(shmrpc_errmsg(), l->want))
        fail_msg("%s: %d %s: %s (wanted EPROTO: ...%s...)", l->name, rc, shmrpc_strerror(rc),
                 shmrpc_errmsg(), l->want);
    assert_int_equal(streamer_chunks_recv(st, &item), SHMRPC_EPROTO);
    shmrpc_stream_close(st);
    shmrpc_client_free(c);
    live_client = NULL;
    peer_join(p);
    assert_false(p->bad_window);
}

int main(void)
{
    enum { N_LIES = sizeof lies / sizeof lies[0] };
    struct CMUnitTest tests[21 + N_LIES] = {
        cmocka_unit_test_teardown(good_items_in_order, teardown),
        cmocka_unit_test_teardown(compressed_snappy, teardown),
        cmocka_unit_test_teardown(compressed_zlib, teardown),
        cmocka_unit_test_teardown(deadline_passes, teardown),
        cmocka_unit_test_teardown(cancelled_while_waiting, teardown),
        cmocka_unit_test_teardown(handler_error_after_items, teardown),
        cmocka_unit_test_teardown(closed_early_tail_dropped, teardown),
        cmocka_unit_test_teardown(old_server_refuses, teardown),
        cmocka_unit_test_teardown(drain_before_items, teardown),
        cmocka_unit_test_teardown(items_after_the_end, teardown),
        cmocka_unit_test_teardown(server_dies_mid_stream, teardown),
        cmocka_unit_test_teardown(a_call_answered_during_a_stream, teardown),
        cmocka_unit_test_teardown(an_item_held_across_a_call_beside_the_stream, teardown),
        cmocka_unit_test_teardown(a_lie_fails_the_calls_in_flight, teardown),
        cmocka_unit_test_teardown(more_closed_early_than_remembered, teardown),
        cmocka_unit_test_teardown(items_below_revision_8, teardown),
        cmocka_unit_test_teardown(a_call_timing_out_beside_a_stream, teardown),
        cmocka_unit_test_teardown(frame_cut_at_the_deadline, teardown),
        cmocka_unit_test_teardown(frame_cut_at_the_deadline_beside_a_call, teardown),
        cmocka_unit_test_teardown(one_item_beyond_the_credit_left, teardown),
    };
    int n = 20;
    for (int i = 0; i < N_LIES; i++)
        tests[n++] = (struct CMUnitTest){.name = lies[i].name,
                                         .test_func = a_lie,
                                         .teardown_func = teardown,
                                         .initial_state = (void *)&lies[i]};
    return _cmocka_run_group_tests("stream_wire", tests, (size_t)n, NULL, NULL);
}
