/* SPDX-License-Identifier: MIT */
/* Hostile and odd peers at a tcp:// socket, both ways (issue 40): what a server does with
 * the frames a client may send it once connected (PING, PONG, ERROR, kinds a server does
 * not take, compressed requests run on its threads, a refusal behind calls that run), the
 * answers a draining worker still owes when its drain ends, and what a client does with
 * the frames a stand-in server sends it (the handshake answered wrongly, PINGs between
 * answers, an answer out of turn, an ERROR that closes the connection with calls in
 * flight); and the secret files shmrpc_secret_load refuses. Real processes on 127.0.0.1;
 * every wait is bounded. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "transport/tcp/frame.h"
#include "hello.h"
#include "procs.h"
#include "standin.h"

static char addr[64];
static int port;
static shmrpc_tcp_opts server_tcp; /* the next server's tcp settings */

static int setup(void **state)
{
    (void)state;
    port = test_free_port();
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", port);
    server_tcp = (shmrpc_tcp_opts){0};
    sh->calls = 0;
    sh->naps_begun = 0;
    sh->napping = 0;
    sh->most = 0;
    sh->running = 0;
    sh->wake = 0;
    return 0;
}

static pid_t start_server(int workers)
{
    test_server ts = {&Calls_service, &calls_test_handlers, addr, workers, 0,
                      NULL,           &server_tcp,          NULL};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    return pid;
}

static shmrpc_client *connect_to(const char *at)
{
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, at, &rc);
    if (!c || rc) fail_msg("connect %s: %s: %s", at, shmrpc_strerror(rc), shmrpc_errmsg());
    return c;
}

static void check_add(shmrpc_client *c, int64_t a, int64_t b)
{
    int64_t sum = 0;
    int rc = calls_add(c, a, b, &sum);
    if (rc) fail_msg("add: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(sum, a + b);
}

static uint32_t method_id(const char *name)
{
    for (uint32_t i = 0; i < Calls_service_info.n_methods; i++)
        if (strcmp(Calls_service_info.methods[i].name, name) == 0) return i;
    fail_msg("no method %s", name);
    return 0;
}

/* --- a raw client --- */

/* A connection to the server at port, tried for up to five seconds while it starts;
 * rcvbuf > 0 sets SO_RCVBUF first (a small window keeps answers in the server). */
static int raw_connect(int rcvbuf)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int64_t until = test_now_ms() + 5000;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
        close(fd);
        if (test_now_ms() > until) fail_msg("no server on port %d", port);
        usleep(10000);
    }
}

/* Sends all of p within 10 s: a peer that stops reading without closing fails the test
 * with what was left, never hangs it. */
static void raw_send(int fd, const void *p, size_t n)
{
    const uint8_t *at = p;
    size_t all = n;
    int64_t deadline = test_now_ms() + 10000;
    while (n) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int64_t left = deadline - test_now_ms();
        int ready = left > 0 ? poll(&pf, 1, (int)left) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready == 0)
            fail_msg("send: the peer took %zu of %zu bytes in 10 s, then nothing", all - n, all);
        if (ready < 0) fail_msg("poll: %s", strerror(errno));
        ssize_t k = send(fd, at, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) fail_msg("send: %s", strerror(errno));
        at += k, n -= (size_t)k;
    }
}

/* Reads a frame (body into b) within ms; fails the test on EOF or timeout. */
static shmrpc__frame_hdr raw_frame_within(int fd, shmrpc_buf *b, int ms)
{
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    int64_t deadline = test_now_ms() + ms;
    if (!test_raw_recv(fd, hdr, sizeof hdr, deadline)) fail_msg("no frame header within %d ms", ms);
    shmrpc__frame_hdr h;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    if (shmrpc__frame_hdr_decode(hdr, sizeof hdr, UINT32_MAX, SHMRPC__FLAG_COMPRESSION, &h, &err))
        fail_msg("a frame header that does not decode: %s", shmrpc__msg_get(&err));
    shmrpc_buf_destroy(&err);
    shmrpc_buf_clear(b);
    assert_int_equal(shmrpc__buf_grow(b, (size_t)h.body_len + 1), 0);
    if (!test_raw_recv(fd, b->data, h.body_len, deadline))
        fail_msg("the %s frame's body (%u bytes) did not come within %d ms",
                 shmrpc__frame_kind_name(h.kind), h.body_len, ms);
    b->len = h.body_len;
    return h;
}

static shmrpc__frame_hdr raw_frame(int fd, shmrpc_buf *b)
{
    return raw_frame_within(fd, b, 5000);
}

/* The peer closes, with nothing sent before, within 5 s. */
static void expect_eof(int fd)
{
    uint8_t byte;
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 5000), 1);
    ssize_t k = recv(fd, &byte, 1, 0);
    if (k > 0) fail_msg("a byte (0x%02x) came where the close was due", byte);
    assert_true(k == 0 || (k < 0 && errno == ECONNRESET));
}

/* Nothing has come from the peer (a frame would be waiting by now). */
static void check_frame_pending(int fd)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 100), 0);
}

static void put_hdr(shmrpc_buf *b, uint8_t kind, uint16_t flags, uint32_t method, uint64_t rid,
                    uint32_t len)
{
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    shmrpc__frame_hdr h = {kind, flags, method, rid, len};
    shmrpc__frame_hdr_encode(&h, hdr);
    assert_int_equal(shmrpc_buf_append(b, hdr, sizeof hdr), 0);
}

static void put_frame(shmrpc_buf *b, uint8_t kind, uint16_t flags, uint32_t method, uint64_t rid,
                      const void *body, size_t len)
{
    put_hdr(b, kind, flags, method, rid, (uint32_t)len);
    if (len) assert_int_equal(shmrpc_buf_append(b, body, len), 0);
}

/* A HELLO offering compression (SHMRPC__FLAG_* bits), and the HELLO_ACK read back: the
 * compression the server chose. */
static uint16_t raw_handshake_of(int fd, uint16_t compression, uint32_t proto)
{
    shmrpc__hello hello = {.proto = proto,
                           .info = Calls_service_info,
                           .compression = compression,
                           .threshold = 4096,
                           .max_msg = 64u << 20};
    shmrpc_buf b, err;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&err);
    assert_int_equal(test_put_hello(&b, &hello), 0);
    raw_send(fd, b.data, b.len);
    shmrpc__frame_hdr h = raw_frame(fd, &b);
    assert_int_equal(h.kind, SHMRPC__KIND_HELLO_ACK);
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc__hello ack;
    assert_int_equal(
        shmrpc__hello_parse(shmrpc_bytes_of(b.data, b.len), SHMRPC__KIND_HELLO_ACK, a, &ack, &err),
        0);
    assert_int_equal(ack.proto, proto);
    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&err);
    return ack.compression;
}

static uint16_t raw_handshake(int fd, uint16_t compression)
{
    return raw_handshake_of(fd, compression, SHMRPC__WIRE_PROTO);
}

/* add(a, b) with small a and b (msgpack fixints), request id rid. */
static void put_add(shmrpc_buf *b, uint64_t rid, uint8_t x, uint8_t y)
{
    const uint8_t body[] = {0x92, x, y};
    put_frame(b, SHMRPC__KIND_REQUEST, 0, method_id("add"), rid, body, sizeof body);
}

/* nap(ms), request id rid. */
static void put_nap(shmrpc_buf *b, uint64_t rid, uint16_t ms)
{
    const uint8_t body[] = {0x91, 0xcd, (uint8_t)(ms >> 8), (uint8_t)ms};
    put_frame(b, SHMRPC__KIND_REQUEST, 0, method_id("nap"), rid, body, sizeof body);
}

/* The next frame is the RESPONSE of add request rid, whose sum (a fixint) is sum. */
static void expect_sum(int fd, uint64_t rid, uint8_t sum)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc__frame_hdr h = raw_frame(fd, &b);
    if (h.kind != SHMRPC__KIND_RESPONSE || h.request_id != rid)
        fail_msg("a %s frame for request %llu, not the RESPONSE of %llu",
                 shmrpc__frame_kind_name(h.kind), (unsigned long long)h.request_id,
                 (unsigned long long)rid);
    assert_int_equal(h.method, method_id("add"));
    assert_int_equal(b.len, 1);
    assert_int_equal(b.data[0], sum);
    shmrpc_buf_destroy(&b);
}

/* The next frame is an ERROR for request rid with status want and part in its message. */
static void expect_error(int fd, uint64_t rid, int want, const char *part)
{
    shmrpc_buf b, err;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&err);
    shmrpc__frame_hdr h = raw_frame(fd, &b);
    if (h.kind != SHMRPC__KIND_ERROR)
        fail_msg("a %s frame, not the ERROR '%s'", shmrpc__frame_kind_name(h.kind), part);
    assert_int_equal(h.request_id, rid);
    int status;
    shmrpc_str msg;
    assert_int_equal(shmrpc__error_parse(shmrpc_bytes_of(b.data, b.len), &status, &msg, &err), 0);
    if (status != want || !memmem(msg.ptr, msg.len, part, strlen(part)))
        fail_msg("got %s '%.*s', not %s '%s'", shmrpc_strerror(status), (int)msg.len, msg.ptr,
                 shmrpc_strerror(want), part);
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&err);
}

/* --- what a server does with a client's frames --- */

/* Once connected, a client may send PING (answered with a PONG of the same id), PONG
 * (nothing is sent for it) and ERROR (it leaves: the server closes without a word); a
 * kind that a server does not take (HELLO_ACK, RESPONSE, DRAIN, a second HELLO) is
 * refused with an ERROR of request id 0 that names it, and the connection closed. The
 * worker serves on throughout, and nothing ran but the adds. */
static void frames_a_server_reads(void **state)
{
    (void)state;
    pid_t server = start_server(1);
    shmrpc_client *good = connect_to(addr);
    shmrpc_buf b;
    shmrpc_buf_init(&b);

    int fd = raw_connect(0);
    raw_handshake(fd, 0);
    put_frame(&b, SHMRPC__KIND_PING, 0, 0, 77, NULL, 0);
    put_frame(&b, SHMRPC__KIND_PONG, 0, 0, 78, NULL, 0);
    put_add(&b, 9, 4, 5);
    raw_send(fd, b.data, b.len);
    shmrpc__frame_hdr h = raw_frame(fd, &b);
    assert_int_equal(h.kind, SHMRPC__KIND_PONG);
    assert_int_equal(h.request_id, 77);
    assert_int_equal(h.body_len, 0);
    expect_sum(fd, 9, 9); /* the PONG was taken without an answer */
    shmrpc_buf_clear(&b);
    size_t at = shmrpc__frame_begin(&b, SHMRPC__KIND_ERROR, 0, 0, 0);
    assert_int_equal(shmrpc__error_write(&b, SHMRPC_ECLOSED, shmrpc_str_c("leaving")), 0);
    assert_int_equal(shmrpc__frame_end(&b, at), 0);
    raw_send(fd, b.data, b.len);
    expect_eof(fd);
    close(fd);
    check_add(good, 1, 2);

    static const struct {
        uint8_t kind;
        const char *msg;
    } wrong[] = {
        {SHMRPC__KIND_HELLO_ACK, "a HELLO_ACK frame sent to a server"},
        {SHMRPC__KIND_RESPONSE, "a RESPONSE frame sent to a server"},
        {SHMRPC__KIND_DRAIN, "a DRAIN frame sent to a server"},
        {SHMRPC__KIND_HELLO, "a HELLO frame sent to a server"},
        {SHMRPC__KIND_AUTH, "AUTH frame sent to a server"},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        fd = raw_connect(0);
        raw_handshake(fd, 0);
        shmrpc_buf_clear(&b);
        uint32_t method = wrong[i].kind == SHMRPC__KIND_RESPONSE ? method_id("add") : 0;
        uint64_t rid = wrong[i].kind == SHMRPC__KIND_RESPONSE ? 3 : 0;
        const uint8_t body[SHMRPC__AUTH_LEN] = {0x03};
        size_t len = wrong[i].kind == SHMRPC__KIND_RESPONSE ? 1
                     : wrong[i].kind == SHMRPC__KIND_AUTH   ? SHMRPC__AUTH_LEN
                                                            : 0;
        put_frame(&b, wrong[i].kind, 0, method, rid, body, len);
        if (wrong[i].kind == SHMRPC__KIND_HELLO || wrong[i].kind == SHMRPC__KIND_HELLO_ACK) {
            shmrpc__hello again = {
                .proto = SHMRPC__WIRE_PROTO, .info = Calls_service_info, .max_msg = 1 << 20};
            shmrpc_buf_clear(&b);
            shmrpc_buf err;
            shmrpc_buf_init(&err);
            size_t at = shmrpc__frame_begin(&b, wrong[i].kind, 0, 0, 0);
            assert_int_equal(shmrpc__hello_write(&b, wrong[i].kind, &again, &err), 0);
            assert_int_equal(shmrpc__frame_end(&b, at), 0);
            shmrpc_buf_destroy(&err);
        }
        put_add(&b, 10, 1, 1); /* behind it: never run */
        raw_send(fd, b.data, b.len);
        print_message("%s\n", wrong[i].msg);
        expect_error(fd, 0, SHMRPC_EPROTO, wrong[i].msg);
        expect_eof(fd);
        close(fd);
        check_add(good, 2, 3);
    }
    /* the raw add, and the good client's; none of the adds behind a refused frame */
    assert_int_equal(sh->calls, 2 + sizeof wrong / sizeof wrong[0]);
    shmrpc_buf_destroy(&b);
    shmrpc_client_free(good);
    assert_true(test_stop_server(server));
}

/* A frame refused while calls of its connection run on the worker's threads: the ERROR of
 * request id 0 (which a client takes to mean that its calls still in flight did not run)
 * comes only after the answers of the calls that ran, then the close. */
static void refusal_after_the_calls_that_run(void **state)
{
    (void)state;
    pid_t server = start_server(1);
    int fd = raw_connect(0);
    raw_handshake(fd, 0);
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    put_nap(&b, 1, 300);
    put_nap(&b, 2, 301);
    const uint8_t body[] = {0x03};
    put_frame(&b, SHMRPC__KIND_RESPONSE, 0, method_id("add"), 5, body, sizeof body);
    raw_send(fd, b.data, b.len);
    bool seen[3] = {false};
    for (int i = 0; i < 2; i++) {
        shmrpc__frame_hdr h = raw_frame(fd, &b);
        if (h.kind != SHMRPC__KIND_RESPONSE || h.request_id < 1 || h.request_id > 2 ||
            seen[h.request_id])
            fail_msg("a %s frame for request %llu where a nap's answer was due",
                     shmrpc__frame_kind_name(h.kind), (unsigned long long)h.request_id);
        seen[h.request_id] = true;
    }
    expect_error(fd, 0, SHMRPC_EPROTO, "a RESPONSE frame sent to a server");
    expect_eof(fd);
    close(fd);
    assert_int_equal(sh->calls, 2);
    assert_int_equal(sh->naps_begun, 2);
    shmrpc_buf_destroy(&b);
    assert_true(test_stop_server(server));
}

/* An echo request of msg, compressed with flag (which must make it smaller), id rid. */
static void put_echo_compressed(shmrpc_buf *b, uint64_t rid, uint16_t flag, shmrpc_bytes msg)
{
    size_t at = shmrpc__frame_begin(b, SHMRPC__KIND_REQUEST, flag, method_id("echo"), rid);
    uint16_t used = 0;
    assert_int_equal(shmrpc__body_compress(flag, msg, b, &used), 0);
    assert_int_equal(used, flag);
    assert_int_equal(shmrpc__frame_end(b, at), 0);
}

/* The message of echo call i: n bytes of text that compresses, its own for each i. */
static void echo_text(shmrpc_buf *b, int i, size_t n)
{
    shmrpc_buf_clear(b);
    char line[64];
    while (b->len < n) {
        int k = snprintf(line, sizeof line, "call %d, at %zu; ", i, b->len);
        assert_int_equal(shmrpc_buf_append(b, line, (size_t)k), 0);
    }
    b->len = n;
}

/* Reads the answers of n echo calls of ids 1..n in any order: each a RESPONSE whose body,
 * decompressed with the flag it carries (the one agreed: answers of 4096 bytes and more
 * are compressed), is its own call's message. */
static void expect_echoes(int fd, int n, const shmrpc_buf *msgs, uint16_t agreed)
{
    shmrpc_buf b, plain, err;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&plain);
    shmrpc_buf_init(&err);
    bool seen[8] = {false};
    for (int i = 0; i < n; i++) {
        shmrpc__frame_hdr h = raw_frame(fd, &b);
        if (h.kind != SHMRPC__KIND_RESPONSE || h.request_id < 1 || h.request_id > (uint64_t)n ||
            seen[h.request_id])
            fail_msg("a %s frame for request %llu where an echo's answer was due",
                     shmrpc__frame_kind_name(h.kind), (unsigned long long)h.request_id);
        seen[h.request_id] = true;
        const shmrpc_buf *want = &msgs[h.request_id - 1];
        assert_int_equal(h.flags & SHMRPC__FLAG_COMPRESSION, want->len >= 4096 ? agreed : 0);
        shmrpc_bytes got = shmrpc_bytes_of(b.data, b.len);
        if (h.flags & SHMRPC__FLAG_COMPRESSION) {
            assert_int_equal(shmrpc__body_decompress(h.flags & SHMRPC__FLAG_COMPRESSION, got,
                                                     64u << 20, &plain, &err),
                             0);
            got = shmrpc_bytes_of(plain.data, plain.len);
        }
        assert_int_equal(got.len, want->len);
        assert_memory_equal(got.ptr, want->data, want->len);
    }
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&plain);
    shmrpc_buf_destroy(&err);
}

/* Compressed requests, run on the worker's threads (no lone flag), or on its own thread
 * (max_running 1): with snappy and with zlib, each call gets its own message back,
 * compressed as agreed; one that declares more than the server's memory for buffered
 * calls (1 MiB here) is refused with SHMRPC_EBUSY before it runs and the connection goes
 * on, one within it runs; a body that does not decompress is refused with an ERROR of
 * request id 0 after the answer of the call that runs beside it, then the close; and a
 * frame of another kind larger than that memory is refused at its header (SHMRPC_EBUSY,
 * request id 0), and the connection closed. */
static void compressed_calls(int max_running)
{
    server_tcp.buffer_budget = 1 << 20;
    server_tcp.max_running = max_running;
    pid_t server = start_server(1);
    enum { N = 4 };
    shmrpc_buf msgs[N], b;
    shmrpc_buf_init(&b);
    for (int i = 0; i < N; i++) {
        shmrpc_buf_init(&msgs[i]);
        echo_text(&msgs[i], i, i == 0 ? 200 : 5000 * (size_t)i);
    }
    static const uint16_t flags[] = {SHMRPC__FLAG_SNAPPY, SHMRPC__FLAG_ZLIB};
    int64_t calls = 0;
    for (int f = 0; f < 2; f++) {
        int fd = raw_connect(0);
        assert_int_equal(raw_handshake(fd, flags[f]), flags[f]);
        shmrpc_buf_clear(&b);
        for (int i = 0; i < N; i++)
            put_echo_compressed(&b, (uint64_t)i + 1, flags[f],
                                shmrpc_bytes_of(msgs[i].data, msgs[i].len));
        raw_send(fd, b.data, b.len);
        expect_echoes(fd, N, msgs, flags[f]);
        calls += N;
        assert_int_equal(sh->calls, calls);
        close(fd);
    }

    int fd = raw_connect(0);
    assert_int_equal(raw_handshake(fd, SHMRPC__FLAG_SNAPPY), SHMRPC__FLAG_SNAPPY);
    shmrpc_buf big;
    shmrpc_buf_init(&big);
    assert_int_equal(shmrpc__buf_grow(&big, 2 << 20), 0);
    memset(big.data, 0, 2 << 20);
    big.len = 2 << 20; /* zeros: a small body that declares 2 MiB */
    shmrpc_buf_clear(&b);
    put_echo_compressed(&b, 1, SHMRPC__FLAG_SNAPPY, shmrpc_bytes_of(big.data, big.len));
    raw_send(fd, b.data, b.len);
    expect_error(fd, 1, SHMRPC_EBUSY, "the server's memory for buffered calls is spent");
    assert_int_equal(sh->calls, calls); /* not run */
    shmrpc_buf_clear(&b);
    put_add(&b, 2, 20, 22);
    raw_send(fd, b.data, b.len);
    expect_sum(fd, 2, 42);
    big.len = 512 << 10; /* within the budget: runs */
    shmrpc_buf_clear(&b);
    put_echo_compressed(&b, 1, SHMRPC__FLAG_SNAPPY, shmrpc_bytes_of(big.data, big.len));
    raw_send(fd, b.data, b.len);
    expect_echoes(fd, 1, &big, SHMRPC__FLAG_SNAPPY);
    calls += 2;
    assert_int_equal(sh->calls, calls);

    shmrpc_buf_clear(&b);
    put_nap(&b, 3, 200);
    static const uint8_t junk[] = {0x20, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff}; /* 32 bytes, declared */
    put_frame(&b, SHMRPC__KIND_REQUEST, SHMRPC__FLAG_SNAPPY, method_id("echo"), 4, junk,
              sizeof junk);
    raw_send(fd, b.data, b.len);
    shmrpc__frame_hdr h = raw_frame(fd, &b);
    assert_int_equal(h.kind, SHMRPC__KIND_RESPONSE);
    assert_int_equal(h.request_id, 3);
    expect_error(fd, 0, SHMRPC_EPROTO, "snappy body");
    expect_eof(fd);
    close(fd);
    assert_int_equal(sh->calls, calls + 1); /* the nap; not the echo */

    fd = raw_connect(0);
    raw_handshake(fd, 0);
    shmrpc_buf_clear(&b);
    put_hdr(&b, SHMRPC__KIND_ERROR, 0, 0, 0, 2 << 20);
    assert_int_equal(shmrpc__error_write(&b, SHMRPC_ECLOSED, shmrpc_str_c("a long goodbye")), 0);
    raw_send(fd, b.data, b.len);
    expect_error(fd, 0, SHMRPC_EBUSY,
                 "ERROR frame of 2097152 bytes does not fit the server's memory for buffered "
                 "frames");
    expect_eof(fd);
    close(fd);
    shmrpc_buf_destroy(&big);
    shmrpc_buf_destroy(&b);
    for (int i = 0; i < N; i++)
        shmrpc_buf_destroy(&msgs[i]);
    assert_true(test_stop_server(server));
}

static void compressed_calls_on_the_threads(void **state)
{
    (void)state;
    compressed_calls(0);
}

static void compressed_calls_in_place(void **state)
{
    (void)state;
    compressed_calls(1);
}

/* Whether process pid's main thread is in poll (its /proc/PID/syscall), or pid has ended
 * (a zombie, or gone): a server serving in place waits in epoll_pwait, and in poll only in
 * send_what_ran, once its drain is over. */
static bool in_poll_or_ended(pid_t pid)
{
    char path[64], text[64] = "";
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return true;
    char state = 0;
    if (fscanf(f, "%*d %*s %c", &state) != 1) state = 0;
    fclose(f);
    if (state == 'Z' || state == 'X') return true;
    snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
    f = fopen(path, "r");
    if (!f) return true;
    bool got = fgets(text, sizeof text, f) != NULL;
    fclose(f);
    long nr = got ? strtol(text, NULL, 10) : -1;
#ifdef SYS_poll
    if (nr == SYS_poll) return true;
#endif
    return nr == SYS_ppoll;
}

/* A client that reads nothing while its server drains: the answer of its call that ran
 * (16 MiB, far more than the sockets hold) is still in the server when the drain's time is
 * over (docs/wire.md, "Drain"), and the server sends it before it closes the connection,
 * within its progress deadline (send_what_ran): the client then reads the whole answer,
 * the DRAIN, and the close; and the server exits cleanly. It serves in place, so that no
 * manager kills it 2 s after its SIGTERM. */
static void answers_outlast_the_drain(void **state)
{
    (void)state;
    pid_t server = start_server(0);
    int fd = raw_connect(64 << 10);
    raw_handshake(fd, 0);
    shmrpc_buf msg, b;
    shmrpc_buf_init(&msg);
    shmrpc_buf_init(&b);
    echo_text(&msg, 7, 16 << 20);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, method_id("echo"), 1, msg.data, msg.len);
    raw_send(fd, b.data, b.len);
    int64_t until = test_now_ms() + 10000;
    while (sh->calls == 0 && test_now_ms() < until)
        usleep(1000);
    assert_int_equal(sh->calls, 1);
    assert_int_equal(kill(server, SIGTERM), 0);
    until = test_now_ms() + 10000;
    while (!in_poll_or_ended(server) && test_now_ms() < until)
        usleep(1000);
    shmrpc__frame_hdr h = raw_frame_within(fd, &b, 10000);
    assert_int_equal(h.kind, SHMRPC__KIND_RESPONSE);
    assert_int_equal(h.request_id, 1);
    assert_int_equal(b.len, msg.len);
    assert_memory_equal(b.data, msg.data, msg.len);
    h = raw_frame(fd, &b);
    assert_int_equal(h.kind, SHMRPC__KIND_DRAIN);
    expect_eof(fd);
    close(fd);
    int status = test_reap(server, 5000);
    assert_true(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(sh->calls, 1);
    shmrpc_buf_destroy(&msg);
    shmrpc_buf_destroy(&b);
}

/* What a stopping server tells each of its connections (docs/wire.md, "Drain"): one still
 * in its handshake is refused with SHMRPC_EUNAVAIL "the server is stopping"; one of
 * revision 1 is closed without a word; an idle one of revision 2 or later gets a DRAIN,
 * then the close once it has been quiet; one in the middle of a request gets the DRAIN,
 * and the request it then finishes is answered "not run" (SHMRPC_EUNAVAIL); one already
 * closing, behind a call that runs, gets that call's answer, then its refusal and the
 * close. Nothing runs but the nap that was running. */
static void what_a_stopping_server_says(void **state)
{
    (void)state;
    pid_t server = start_server(1);
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    int shaking = raw_connect(0);
    int old = raw_connect(0);
    raw_handshake_of(old, 0, 1);
    int idle = raw_connect(0);
    raw_handshake(idle, 0);
    int half = raw_connect(0);
    raw_handshake(half, 0);
    put_add(&b, 7, 2, 3);
    raw_send(half, b.data, b.len - 1); /* all but the last byte */
    int closing = raw_connect(0);
    raw_handshake(closing, 0);
    shmrpc_buf_clear(&b);
    put_nap(&b, 1, 400);
    const uint8_t body[] = {0x03};
    put_frame(&b, SHMRPC__KIND_RESPONSE, 0, method_id("add"), 5, body, sizeof body);
    raw_send(closing, b.data, b.len);
    int64_t until = test_now_ms() + 5000;
    while (sh->napping == 0 && test_now_ms() < until)
        usleep(1000);
    assert_int_not_equal(sh->napping, 0);
    check_frame_pending(half); /* nothing came for the half request */

    assert_int_equal(kill(server, SIGTERM), 0);
    expect_error(shaking, 0, SHMRPC_EUNAVAIL, "the server is stopping");
    expect_eof(shaking);
    expect_eof(old);
    shmrpc__frame_hdr h = raw_frame(idle, &b);
    assert_int_equal(h.kind, SHMRPC__KIND_DRAIN);
    h = raw_frame(half, &b);
    assert_int_equal(h.kind, SHMRPC__KIND_DRAIN);
    uint8_t last = 3;
    raw_send(half, &last, 1);
    expect_error(half, 7, SHMRPC_EUNAVAIL, "is draining (its server stops): the call was not run");
    h = raw_frame(closing, &b);
    assert_int_equal(h.kind, SHMRPC__KIND_RESPONSE);
    assert_int_equal(h.request_id, 1);
    expect_error(closing, 0, SHMRPC_EPROTO, "a RESPONSE frame sent to a server");
    expect_eof(closing);
    expect_eof(idle);
    expect_eof(half);
    int status = test_reap(server, 5000);
    assert_true(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(sh->calls, 1);
    assert_int_equal(sh->naps_begun, 1);
    int fds[] = {shaking, old, idle, half, closing};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        close(fds[i]);
    shmrpc_buf_destroy(&b);
}

/* Waits up to 5 s for sh->naps_begun to reach n. */
static void naps_begin(int n)
{
    int64_t until = test_now_ms() + 5000;
    while (sh->naps_begun < n && test_now_ms() < until)
        usleep(1000);
    assert_int_equal(sh->naps_begun, n);
}

/* At its cap of connections, with none in its handshake, a worker closes the one idle
 * longest to make room, telling it why (docs/wire.md, "Limits"); never one that is busy:
 * with answers waiting for room, a request skipped for want of memory, half a frame, calls
 * running, a refusal waiting for the answers of its calls. With no idle one, the new
 * connection is refused with SHMRPC_EBUSY. The naps last until the test wakes them, so
 * that they still run when the last connections come, however slow the machine. */
static void room_at_the_cap_from_idle_connections_only(void **state)
{
    (void)state;
    server_tcp.max_conns = 6;
    server_tcp.buffer_budget = 24u << 20;
    pid_t server = start_server(1);
    shmrpc_buf b, msg;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&msg);

    int full = raw_connect(4096); /* reads nothing: its answer stays in the server */
    raw_handshake(full, 0);
    echo_text(&msg, 1, 16 << 20);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, method_id("echo"), 1, msg.data, msg.len);
    raw_send(full, b.data, b.len);
    struct pollfd pf = {.fd = full, .events = POLLIN}; /* the answer has begun to come */
    assert_int_equal(poll(&pf, 1, 10000), 1);
    assert_int_equal(sh->calls, 1);
    int skipping = raw_connect(0); /* a request the budget has no room for, being skipped */
    raw_handshake(skipping, 0);
    shmrpc_buf_clear(&b);
    put_hdr(&b, SHMRPC__KIND_REQUEST, 0, method_id("echo"), 1, 16u << 20);
    raw_send(skipping, b.data, b.len);
    int half = raw_connect(0);
    raw_handshake(half, 0);
    shmrpc_buf_clear(&b);
    put_add(&b, 1, 2, 3);
    raw_send(half, b.data, 10); /* part of a header */
    int running = raw_connect(0);
    raw_handshake(running, 0);
    shmrpc_buf_clear(&b);
    put_nap(&b, 1, CALLS_NAP_HELD); /* runs until the test wakes it */
    raw_send(running, b.data, b.len);
    naps_begin(1);
    int closing = raw_connect(0);
    raw_handshake(closing, 0);
    const uint8_t body[] = {0x03};
    put_frame(&b, SHMRPC__KIND_RESPONSE, 0, method_id("add"), 5, body, sizeof body);
    raw_send(closing, b.data, b.len);
    naps_begin(2);
    int idle = raw_connect(0);
    raw_handshake(idle, 0);

    int next = raw_connect(0); /* the seventh: the idle one makes room */
    expect_error(idle, 0, SHMRPC_ETIMEDOUT,
                 "idle connection closed to make room (a worker serves at most 6)");
    expect_eof(idle);
    raw_handshake(next, 0);
    shmrpc_buf_clear(&b);
    put_nap(&b, 1, CALLS_NAP_HELD); /* runs until the test wakes it */
    raw_send(next, b.data, b.len);
    naps_begin(3);
    int refused = raw_connect(0); /* none idle now */
    expect_error(refused, 0, SHMRPC_EBUSY, "too many connections (a worker serves at most 6)");
    expect_eof(refused);
    assert_int_equal(sh->running, 3); /* each nap held to here */
    sh->wake = 1;
    int fds[] = {full, skipping, half, running, closing, idle, next, refused};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        close(fds[i]);
    int64_t until = test_now_ms() + 10000; /* the naps end */
    while (sh->calls < 4 && test_now_ms() < until)
        usleep(1000);
    assert_int_equal(sh->calls, 4); /* the echo and three naps; the half add never ran */
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&msg);
    assert_true(test_stop_server(server));
}

/* Reads what fd gets until its end (at most 20 s): the bytes that came. */
static size_t read_to_end(int fd)
{
    static uint8_t sink[1 << 16];
    size_t got = 0;
    int64_t until = test_now_ms() + 20000;
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 1000) < 0 && errno != EINTR) fail_msg("poll: %s", strerror(errno));
        ssize_t k = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (k == 0 || (k < 0 && errno == ECONNRESET)) return got;
        if (k > 0) got += (size_t)k;
        if (test_now_ms() > until) fail_msg("no end after %zu bytes", got);
    }
}

/* Stopping, a server still sends the answers of calls that ran, but each only within its
 * connection's progress deadline (docs/wire.md, "Drain"): clients that never read their
 * answers (16 MiB each) are cut once theirs passes, after the drain, and the server exits
 * cleanly; what they read then is less than their answer. */
static void answers_nobody_reads_are_cut_at_the_stop(void **state)
{
    (void)state;
    server_tcp.progress_timeout_ms = 1500; /* beyond the drain's second */
    pid_t server = start_server(0);
    int late = raw_connect(4096), early = raw_connect(4096);
    raw_handshake(late, 0);
    raw_handshake(early, 0);
    shmrpc_buf msg, b;
    shmrpc_buf_init(&msg);
    shmrpc_buf_init(&b);
    echo_text(&msg, 3, 16 << 20);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, method_id("echo"), 1, msg.data, msg.len);
    int order[] = {early, late}; /* the later connection's answer stalls first */
    for (int i = 0; i < 2; i++) {
        raw_send(order[i], b.data, b.len);
        struct pollfd pf = {.fd = order[i], .events = POLLIN}; /* its answer has begun */
        assert_int_equal(poll(&pf, 1, 10000), 1);
    }
    assert_int_equal(sh->calls, 2);
    assert_int_equal(kill(server, SIGTERM), 0);
    int status = test_reap(server, 15000);
    assert_true(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < 2; i++) {
        size_t got = read_to_end(order[i]);
        print_message("read %zu bytes of the %zu of an answer\n", got,
                      msg.len + SHMRPC__FRAME_HDR_SIZE);
        assert_true(got > 0 && got < msg.len + SHMRPC__FRAME_HDR_SIZE);
        close(order[i]);
    }
    shmrpc_buf_destroy(&msg);
    shmrpc_buf_destroy(&b);
}

/* A peer that stops making progress is cut at its progress deadline (docs/wire.md,
 * "Limits"), told why when nothing else is on its way: one whose request is being skipped
 * for want of memory reads ETIMEDOUT "the frame made no progress in time" and the close;
 * one that stops reading its answers (16 MiB) is closed with its answer cut (the ERROR
 * could not go after it). Others are served throughout. */
static void peers_that_stop_making_progress(void **state)
{
    (void)state;
    server_tcp.progress_timeout_ms = 300;
    server_tcp.buffer_budget = 1u << 20;
    pid_t server = start_server(1);
    shmrpc_client *good = connect_to(addr);
    shmrpc_buf b, msg;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&msg);
    int fd = raw_connect(0);
    raw_handshake(fd, 0);
    put_hdr(&b, SHMRPC__KIND_REQUEST, 0, method_id("echo"), 4, 2u << 20);
    uint8_t some[100] = {0};
    assert_int_equal(shmrpc_buf_append(&b, some, sizeof some), 0);
    raw_send(fd, b.data, b.len);
    expect_error(fd, 0, SHMRPC_ETIMEDOUT, "the frame made no progress in time");
    expect_eof(fd);
    close(fd);
    check_add(good, 1, 2);
    shmrpc_client_free(good);
    assert_true(test_stop_server(server));

    server_tcp.buffer_budget = 0;
    server = start_server(0); /* in place: its descriptors say when it closed one */
    good = connect_to(addr);
    check_add(good, 3, 4);
    int fds = test_fd_count(server);
    fd = raw_connect(4096);
    raw_handshake(fd, 0);
    echo_text(&msg, 5, 16 << 20);
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, method_id("echo"), 1, msg.data, msg.len);
    raw_send(fd, b.data, b.len);
    struct pollfd pf = {.fd = fd, .events = POLLIN}; /* its answer has begun */
    assert_int_equal(poll(&pf, 1, 10000), 1);
    int64_t until = test_now_ms() + 10000; /* the server closes it */
    while (test_fd_count(server) > fds && test_now_ms() < until)
        usleep(5000);
    assert_int_equal(test_fd_count(server), fds);
    size_t got = read_to_end(fd);
    print_message("read %zu bytes of the %zu of an answer\n", got,
                  msg.len + SHMRPC__FRAME_HDR_SIZE);
    assert_true(got > 0 && got < msg.len + SHMRPC__FRAME_HDR_SIZE);
    close(fd);
    check_add(good, 5, 6);
    assert_int_equal(sh->calls, 4);
    shmrpc_client_free(good);
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&msg);
    assert_true(test_stop_server(server));
}

/* --- what a client does with a stand-in server's frames (common/standin.h) --- */

/* The handshake answered wrongly (stand_in_case): the kind, the status, the table. */
static int wrong_handshake(int fd)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc__frame_hdr h;
    switch (stand_in_case) {
    case 0:
        put_frame(&b, SHMRPC__KIND_PONG, 0, 0, 0, NULL, 0);
        break;
    case 1:
        put_error(&b, 0, 0, SHMRPC_EBUSY, "the stand-in is full");
        break;
    case 2:
        put_error(&b, 0, 0, -9999, "a status of its own");
        break;
    case 3: /* a challenge, to a client without a secret */
        put_ack(&b, 0, 1 << 20, true);
        break;
    case 4: /* half a HELLO_ACK, then the close */
        put_ack(&b, 0, 1 << 20, false);
        b.len = SHMRPC__FRAME_HDR_SIZE + 3;
        break;
    case 5:
        shmrpc_buf_append(&b, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
        break;
    case 6: /* a client with a secret: its AUTH answered with a PING */
    case 7: /* ... with an ERROR */
        put_ack(&b, 0, 1 << 20, true);
        if (!ssend(fd, &b) || !sread_frame(fd, &h, &b) || h.kind != SHMRPC__KIND_AUTH) return 202;
        shmrpc_buf_clear(&b);
        if (stand_in_case == 6)
            put_frame(&b, SHMRPC__KIND_PING, 0, 0, 0, NULL, 0);
        else
            put_error(&b, 0, 0, SHMRPC_EPERM, "authentication failed: wrong shared secret");
        break;
    }
    bool ok = ssend(fd, &b);
    if (stand_in_case == 4) shutdown(fd, SHUT_RDWR);
    shmrpc_buf_destroy(&b);
    return ok ? 0 : 203;
}

/* A client refuses a server whose handshake is wrong, with what was wrong: a frame of
 * another kind for the HELLO_ACK or the AUTH, an ERROR (its status and message; one of a
 * status the library does not know is a protocol error), a challenge to a client without
 * a secret, half a HELLO_ACK then the close, a peer that is not a shmrpc server. */
static void handshakes_a_client_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *secret;
        int status;
        const char *msg;
    } cases[] = {
        {NULL, SHMRPC_EPROTO, "answered the HELLO with a PONG frame"},
        {NULL, SHMRPC_EBUSY, "the stand-in is full"},
        {NULL, SHMRPC_EPROTO,
         "sent an ERROR frame with the unknown status -9999: a status of its own"},
        {NULL, SHMRPC_EPERM, "requires a shared secret, and this client has none"},
        {NULL, SHMRPC_EUNAVAIL, "broke (the server closed it)"},
        {NULL, SHMRPC_EPROTO, "bad frame magic"},
        {"correct horse battery staple", SHMRPC_EPROTO, "answered the AUTH with a PING frame"},
        {"correct horse battery staple", SHMRPC_EPERM,
         "authentication failed: wrong shared secret"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        stand_in_case = (int)i;
        stand_in s = stand_in_start(wrong_handshake);
        shmrpc_client_opts o;
        shmrpc_client_opts_init(&o);
        o.tcp.secret = cases[i].secret;
        o.tcp.secret_len = cases[i].secret ? strlen(cases[i].secret) : 0;
        shmrpc_client *c = NULL;
        assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, &o), 0);
        char at[64];
        snprintf(at, sizeof at, "tcp://127.0.0.1:%d", s.port);
        int rc = shmrpc_client_connect(c, at);
        print_message("%s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
        if (rc != cases[i].status || !strstr(shmrpc_errmsg(), cases[i].msg))
            fail_msg("case %zu: %s '%s', not %s '%s'", i, shmrpc_strerror(rc), shmrpc_errmsg(),
                     shmrpc_strerror(cases[i].status), cases[i].msg);
        shmrpc_client_free(c);
        assert_int_equal(stand_in_end(&s), 0);
    }
}

/* Blocking calls against a stand-in that takes messages of 1 KiB at most: it PINGs before
 * the first add's answer (the PONG must come back with its id: else exit 210), then
 * answers the second add with another method's id. 0 when no other request came (an echo
 * above its maximum must not have been sent: else 211). */
static int blocking_calls(int fd)
{
    shmrpc_buf b, in;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&in);
    shmrpc__frame_hdr h, q;
    put_ack(&b, 0, 1024, false);
    int rc = 0;
    if (!ssend(fd, &b) || !sread_frame(fd, &h, &in)) rc = 212;
    if (!rc && add_body_sum(&in) < 0) rc = 211;
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_PING, 0, 0, 4242, NULL, 0);
    if (!rc && (!ssend(fd, &b) || !sread_frame(fd, &q, &in))) rc = 213;
    if (!rc && (q.kind != SHMRPC__KIND_PONG || q.request_id != 4242)) rc = 210;
    shmrpc_buf_clear(&b);
    put_sum(&b, &h, 5);
    if (!rc && (!ssend(fd, &b) || !sread_frame(fd, &h, &in))) rc = 214;
    if (!rc && add_body_sum(&in) < 0) rc = 211;
    h.method++; /* out of turn */
    shmrpc_buf_clear(&b);
    put_sum(&b, &h, 2);
    if (!rc && !ssend(fd, &b)) rc = 215;
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&in);
    return rc;
}

/* A blocking call reads past a PING, answering it with a PONG of its id, to its own
 * answer; a request above the server's maximum fails with SHMRPC_ETOOBIG and is not sent;
 * an answer for the call's id but another method is refused (SHMRPC_EPROTO) and the
 * connection let go. */
static void blocking_calls_and_a_stand_in(void **state)
{
    (void)state;
    stand_in s = stand_in_start(blocking_calls);
    char at[64];
    snprintf(at, sizeof at, "tcp://127.0.0.1:%d", s.port);
    shmrpc_client *c = connect_to(at);
    int64_t sum = -1;
    assert_int_equal(calls_add(c, 2, 3, &sum), 0);
    assert_int_equal(sum, 5);
    uint8_t big[1025] = {0};
    shmrpc_bytes out;
    assert_int_equal(calls_echo(c, shmrpc_bytes_of(big, sizeof big), &out), SHMRPC_ETOOBIG);
    assert_non_null(strstr(shmrpc_errmsg(), "a request of 1025 bytes is above the server's "
                                            "maximum of 1024"));
    assert_int_equal(calls_add(c, 1, 1, &sum), SHMRPC_EPROTO);
    assert_non_null(strstr(shmrpc_errmsg(), "out of turn"));
    shmrpc_client_free(c);
    assert_int_equal(stand_in_end(&s), 0);
}

/* The first endpoint of a list, with calls in flight on it: it takes requests until two
 * have come, PINGs (the PONG must come back with its id: else exit 210), answers the
 * first with its sum, and leaves with an ERROR of request id 0, which says that it ran
 * none of the others. Exit code: the requests it took (more may have come than two). */
static int leaves_with_calls(int fd)
{
    shmrpc_buf b, in;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&in);
    put_ack(&b, 0, 1 << 20, false);
    if (!ssend(fd, &b)) return 212;
    shmrpc__frame_hdr h, first = {0};
    int took = 0, sum = -1;
    bool ponged = false;
    shmrpc_buf_clear(&b);
    while (!ponged) {
        if (!sread_frame(fd, &h, &in)) return 213;
        if (h.kind == SHMRPC__KIND_REQUEST) {
            if (took++ == 0) first = h, sum = add_body_sum(&in);
            if (sum < 0) return 211;
            if (took == 2) {
                put_frame(&b, SHMRPC__KIND_PING, 0, 0, 99, NULL, 0);
                if (!ssend(fd, &b)) return 214;
            }
        } else if (h.kind == SHMRPC__KIND_PONG && h.request_id == 99 && took >= 2) {
            ponged = true;
        } else {
            return 210;
        }
    }
    /* Whatever else came before the answer is taken too: it is in flight, and not run. */
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    while (poll(&pf, 1, 100) == 1 && sread_frame(fd, &h, &in) && h.kind == SHMRPC__KIND_REQUEST)
        took++;
    shmrpc_buf_clear(&b);
    put_sum(&b, &first, sum);
    put_error(&b, 0, 0, SHMRPC_EUNAVAIL, "the stand-in leaves");
    if (!ssend(fd, &b)) return 215;
    shutdown(fd, SHUT_WR);
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&in);
    return took;
}

/* A server that leaves (an ERROR of request id 0) with calls in flight on its connection
 * that it did not run (it answered those it ran first): they move to the other endpoint,
 * and every call gets its own sum; the stand-in answered one, the real server ran the
 * others, each once (docs/wire.md, "Drain"; move_inflight). The PING on the way is
 * answered from the calls' wait. */
static void leave_moves_calls_in_flight(void **state)
{
    (void)state;
    pid_t server = start_server(1);
    shmrpc_client_free(connect_to(addr)); /* it is up */
    sh->calls = 0;
    stand_in s = stand_in_start(leaves_with_calls);
    char list[128];
    snprintf(list, sizeof list, "tcp://127.0.0.1:%d,127.0.0.1:%d", s.port, port);
    shmrpc_client *c = connect_to(list);
    enum { N = 8 };
    shmrpc_call *calls[N];
    for (int i = 0; i < N; i++) {
        shmrpc_client_next_timeout(c, 10000);
        assert_int_equal(calls_add_start(c, i, 7, &calls[i]), 0);
    }
    shmrpc_call *left[N];
    int idx[N];
    for (int i = 0; i < N; i++)
        left[i] = calls[i], idx[i] = i;
    for (int m = N; m > 0; m--) {
        size_t which;
        int rc = shmrpc_client_wait(c, left, (size_t)m, 20000, &which);
        if (rc) fail_msg("wait: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
        int64_t sum = -1;
        rc = calls_add_finish(c, left[which], &sum);
        if (rc) fail_msg("add %d: %s: %s", idx[which], shmrpc_strerror(rc), shmrpc_errmsg());
        assert_int_equal(sum, idx[which] + 7);
        left[which] = left[m - 1], idx[which] = idx[m - 1];
    }
    shmrpc_client_free(c);
    int took = stand_in_end(&s);
    printf("the stand-in took %d of %d calls, answered 1; the server ran %lld\n", took, N,
           (long long)sh->calls);
    assert_true(took >= 2 && took < 200);
    assert_int_equal(sh->calls, N - 1);
    assert_true(test_stop_server(server));
}

/* The first request it reads is answered with an ERROR of request id 0, as a server that
 * closes the connection for its own reason (here its idle timeout) says it: the call did
 * not run there. Exit code: the requests it took (the last is not waited for). */
static int leaves_at_the_first_call(int fd)
{
    shmrpc_buf b, in;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&in);
    put_ack(&b, 0, 1 << 20, false);
    shmrpc__frame_hdr h;
    if (!ssend(fd, &b) || !sread_frame(fd, &h, &in)) return 212;
    if (h.kind != SHMRPC__KIND_REQUEST || add_body_sum(&in) < 0) return 211;
    shmrpc_buf_clear(&b);
    put_error(&b, 0, 0, SHMRPC_ETIMEDOUT, "idle timeout");
    if (!ssend(fd, &b)) return 215;
    shutdown(fd, SHUT_WR);
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&in);
    return 1;
}

/* A blocking call answered with an ERROR of request id 0 did not run: alone, it fails with
 * SHMRPC_EUNAVAIL, and the server's timeout is not taken for the call's (the message says
 * the server closed the connection); with another endpoint, it goes there, and runs once.
 * Every call of the client gets its own sum. */
static void leave_moves_a_blocking_call(void **state)
{
    (void)state;
    stand_in s = stand_in_start(leaves_at_the_first_call);
    char at[128];
    snprintf(at, sizeof at, "tcp://127.0.0.1:%d", s.port);
    shmrpc_client *c = connect_to(at);
    int64_t sum = -1;
    assert_int_equal(calls_add(c, 2, 3, &sum), SHMRPC_EUNAVAIL);
    char want[256];
    snprintf(want, sizeof want, "%s closed the connection: idle timeout", at);
    assert_string_equal(shmrpc_errmsg(), want);
    shmrpc_client_free(c);
    assert_int_equal(stand_in_end(&s), 1);

    pid_t server = start_server(1);
    shmrpc_client_free(connect_to(addr)); /* it is up */
    sh->calls = 0;
    s = stand_in_start(leaves_at_the_first_call);
    snprintf(at, sizeof at, "tcp://127.0.0.1:%d,127.0.0.1:%d", s.port, port);
    c = connect_to(at);
    enum { N = 4 };
    for (int i = 0; i < N; i++) /* round robin: one of the first two goes to the stand-in */
        check_add(c, i, 10);
    shmrpc_client_free(c);
    assert_int_equal(stand_in_end(&s), 1);
    assert_int_equal(sh->calls, N); /* each ran once, on the server */
    assert_true(test_stop_server(server));
}

/* Reads the first request (an add), then reads nothing more, and (stand_in_case): sends a
 * REQUEST, which a server does not send; an answer to request 999, never sent; the end of
 * its stream; nothing. Exit code: 1 (the requests it read). */
static int stops_reading(int fd)
{
    shmrpc_buf b, in;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&in);
    put_ack(&b, 0, 64u << 20, false);
    shmrpc__frame_hdr h;
    if (!ssend(fd, &b) || !sread_frame(fd, &h, &in)) return 212;
    if (h.kind != SHMRPC__KIND_REQUEST || add_body_sum(&in) < 0) return 211;
    shmrpc_buf_clear(&b);
    static const uint8_t three[] = {0x03};
    if (stand_in_case == 0)
        put_frame(&b, SHMRPC__KIND_REQUEST, 0, h.method, 1, three, sizeof three);
    else if (stand_in_case == 1)
        put_frame(&b, SHMRPC__KIND_RESPONSE, 0, h.method, 999, three, sizeof three);
    if (b.len && !ssend(fd, &b)) return 215;
    if (stand_in_case == 2) shutdown(fd, SHUT_WR);
    /* Nothing more is read until the test is done with the client. */
    struct pollfd pf = {.fd = stand_in_go, .events = POLLIN};
    poll(&pf, 1, 15000);
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&in);
    return 1;
}

/* A large request goes out while a call is in flight, to a server that stops reading
 * (16 MiB: far more than the sockets hold), so the client reads what comes meanwhile:
 * a frame a server does not send, or an answer to a request never sent, fails the
 * connection with SHMRPC_EPROTO (the call in flight may have run; the large one, not
 * written whole, did not, and finds no other endpoint); the end of the server's stream
 * fails them with SHMRPC_EPEERDIED and SHMRPC_EUNAVAIL; a server that says nothing holds
 * the large call to its deadline (SHMRPC_ETIMEDOUT), and the call in flight then fails
 * with SHMRPC_EPEERDIED, as it may have run. */
static void request_out_to_a_server_that_stops_reading(void **state)
{
    (void)state;
    static const struct {
        int big, flight;
        const char *big_says, *flight_says;
    } cases[] = {
        {SHMRPC_EPROTO, SHMRPC_EPROTO, "which did not run",
         "sent a REQUEST frame, which a server does not send; the calls in flight may have run"},
        {SHMRPC_EPROTO, SHMRPC_EPROTO, "which did not run",
         "sent a RESPONSE frame for request 999, which was never sent, while a request went out"},
        {SHMRPC_EUNAVAIL, SHMRPC_EPEERDIED, "which did not run", "may have run"},
        {SHMRPC_ETIMEDOUT, SHMRPC_EPEERDIED, "the deadline passed while sending to",
         "may have run"},
    };
    shmrpc_buf big;
    shmrpc_buf_init(&big);
    echo_text(&big, 1, 16 << 20);
    stand_in_rcvbuf = 64 << 10;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        stand_in_case = (int)i;
        stand_in s = stand_in_start(stops_reading);
        char at[64];
        snprintf(at, sizeof at, "tcp://127.0.0.1:%d", s.port);
        shmrpc_client *c = connect_to(at);
        shmrpc_call *flight, *large;
        shmrpc_client_next_timeout(c, 10000);
        assert_int_equal(calls_add_start(c, 1, 2, &flight), 0);
        shmrpc_client_next_timeout(c, i == 3 ? 2000 : 10000);
        assert_int_equal(calls_echo_start(c, shmrpc_bytes_of(big.data, big.len), &large), 0);
        shmrpc_bytes out;
        int rc = calls_echo_finish(c, large, &out);
        print_message("the large call: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
        if (rc != cases[i].big || !strstr(shmrpc_errmsg(), cases[i].big_says))
            fail_msg("case %zu: the large call: %s '%s'", i, shmrpc_strerror(rc), shmrpc_errmsg());
        int64_t sum;
        rc = calls_add_finish(c, flight, &sum);
        print_message("the call in flight: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
        if (rc != cases[i].flight || !strstr(shmrpc_errmsg(), cases[i].flight_says))
            fail_msg("case %zu: the call in flight: %s '%s'", i, shmrpc_strerror(rc),
                     shmrpc_errmsg());
        shmrpc_client_free(c);
        assert_int_equal(stand_in_end(&s), 1);
    }
    stand_in_rcvbuf = 0;
    shmrpc_buf_destroy(&big);
}

/* A client of at with opts o: its connect's status. */
static int connect_status(const char *at, const shmrpc_client_opts *o, shmrpc_client **out)
{
    assert_int_equal(shmrpc_client_new(out, &Calls_service_info, o), 0);
    int rc = shmrpc_client_connect(*out, at);
    print_message("%s: %s: %s\n", at, shmrpc_strerror(rc), shmrpc_errmsg());
    return rc;
}

/* Endpoints that never take a call: an address no connection can go to (multicast:
 * refused at once, with the system's reason), a peer that takes the connection and says
 * nothing (the TLS handshake gives up at the connect timeout, and says which step did);
 * and a call whose every endpoint fails (its only server stopped, the other unreachable)
 * is said not to have run, and did not. */
static void endpoints_that_never_take_the_call(void **state)
{
    (void)state;
    shmrpc_client *c;
    assert_int_equal(connect_status("tcp://224.0.0.1:5000", NULL, &c), SHMRPC_EUNAVAIL);
    assert_string_equal(shmrpc_errmsg(),
                        "no server at tcp://224.0.0.1:5000: Network is unreachable");
    shmrpc_client_free(c);

    stand_in s = stand_in_start(NULL);
    char at[128];
    snprintf(at, sizeof at, "tcp://127.0.0.1:%d", s.port);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.tls = SHMRPC_TLS_ON;
    o.tcp.tls_verify = SHMRPC_TLS_VERIFY_OFF;
    o.tcp.connect_timeout_ms = 300;
    assert_int_equal(connect_status(at, &o, &c), SHMRPC_ETIMEDOUT);
    char want[256];
    snprintf(want, sizeof want, "the TLS handshake with %s did not end in time (300 ms)", at);
    if (!strstr(shmrpc_errmsg(), want)) fail_msg("'%s', not '%s'", shmrpc_errmsg(), want);
    shmrpc_client_free(c);
    assert_int_equal(stand_in_end(&s), 0);

    pid_t server = start_server(1);
    snprintf(at, sizeof at, "tcp://127.0.0.1:%d,224.0.0.1:5000", port);
    c = connect_to(at);
    check_add(c, 1, 2);
    assert_true(test_stop_server(server));
    int64_t sum;
    int rc = calls_add(c, 3, 4, &sum);
    print_message("%s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(rc, SHMRPC_EUNAVAIL);
    snprintf(want, sizeof want, "no endpoint of %s took the call, which did not run", at);
    if (!strstr(shmrpc_errmsg(), want)) fail_msg("'%s', not '%s'", shmrpc_errmsg(), want);
    shmrpc_client_free(c);
    assert_int_equal(sh->calls, 1);
}

/* Answers the HELLO, then reads nothing until the test is done with it. */
static int takes_no_request(int fd)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    put_ack(&b, 0, 64u << 20, false);
    int rc = ssend(fd, &b) ? 0 : 212;
    shmrpc_buf_destroy(&b);
    struct pollfd pf = {.fd = stand_in_go, .events = POLLIN};
    poll(&pf, 1, 15000);
    return rc;
}

/* A blocking call alone on its connection whose request (16 MiB) the server does not read:
 * the deadline passes while it is being sent, and the half-sent stream is let go: the next
 * call makes a new connection (which this server takes and never answers), rather than
 * writing its request into the middle of the first. */
static void request_out_alone_to_a_server_that_reads_nothing(void **state)
{
    (void)state;
    shmrpc_buf big;
    shmrpc_buf_init(&big);
    echo_text(&big, 2, 16 << 20);
    stand_in_rcvbuf = 64 << 10;
    stand_in s = stand_in_start(takes_no_request);
    stand_in_rcvbuf = 0;
    char at[64];
    snprintf(at, sizeof at, "tcp://127.0.0.1:%d", s.port);
    shmrpc_client *c = connect_to(at);
    shmrpc_client_next_timeout(c, 2000); /* framing 16 MiB takes far less, even loaded */
    shmrpc_bytes out;
    assert_int_equal(calls_echo(c, shmrpc_bytes_of(big.data, big.len), &out), SHMRPC_ETIMEDOUT);
    char want[128];
    snprintf(want, sizeof want, "the deadline passed while sending to %s", at);
    assert_string_equal(shmrpc_errmsg(), want);
    shmrpc_client_next_timeout(c, 500);
    int64_t sum;
    int rc = calls_add(c, 1, 2, &sum);
    print_message("the next call: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(rc, SHMRPC_ETIMEDOUT);
    assert_non_null(
        strstr(shmrpc_errmsg(), "took the connection but did not answer its handshake"));
    shmrpc_call *k = NULL; /* started: the same, said by its finish */
    shmrpc_client_next_timeout(c, 300);
    assert_int_equal(calls_add_start(c, 3, 4, &k), 0);
    rc = calls_add_finish(c, k, &sum);
    print_message("a started call: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_true(rc == SHMRPC_ETIMEDOUT || rc == SHMRPC_EUNAVAIL);
    assert_non_null(strstr(shmrpc_errmsg(), "which did not run"));
    shmrpc_client_free(c);
    assert_int_equal(stand_in_end(&s), 0);
    shmrpc_buf_destroy(&big);
}

/* --- what a client promises with a real server --- */

/* In a child of the process that made client c: a blocking call and a started one must
 * fail with SHMRPC_EINVAL, saying whose the connection is; then c is freed. Exit code 0
 * when they did. */
static pid_t child_calls(shmrpc_client *c)
{
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int64_t sum;
        int code = calls_add(c, 3, 4, &sum) == SHMRPC_EINVAL ? 0 : 1;
        if (!strstr(shmrpc_errmsg(), "belongs to process")) code |= 2;
        shmrpc_call *k = NULL;
        if (calls_add_start(c, 5, 6, &k) != 0 || calls_add_finish(c, k, &sum) != SHMRPC_EINVAL)
            code |= 4;
        shmrpc_client_free(c);
        _exit(code);
    }
    return child;
}

/* A client inherited by a forked child is the parent's: in the child a call fails with
 * SHMRPC_EINVAL (blocking or started; with no call in flight and with one) and runs
 * nowhere, and freeing it there leaves the parent's connection as it was: a call the
 * parent has in flight on it meanwhile ends with its answer, and the parent calls on. */
static void a_client_in_a_child(void **state)
{
    (void)state;
    pid_t server = start_server(1);
    shmrpc_client *c = connect_to(addr);
    check_add(c, 1, 2);
    int status = test_reap(child_calls(c), 10000);
    assert_true(status >= 0 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    shmrpc_call *nap;
    assert_int_equal(calls_nap_start(c, 300, &nap), 0);
    int64_t until = test_now_ms() + 5000;
    while (sh->napping == 0 && test_now_ms() < until)
        usleep(1000);
    assert_true(sh->napping != 0); /* the request was read: it is in flight */
    status = test_reap(child_calls(c), 10000);
    assert_true(status >= 0 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    int32_t pid = 0;
    int rc = calls_nap_finish(c, nap, &pid);
    if (rc) fail_msg("the nap in flight: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_true(pid > 0);
    check_add(c, 7, 8);
    assert_int_equal(sh->calls, 3); /* the parent's two adds and its nap, not the child's */
    shmrpc_client_free(c);
    assert_true(test_stop_server(server));
}

/* With max_in_flight 2, a start beyond it waits for an answer to make room: all 6 naps
 * end with success, each ran once, and never more than 2 ran at once on the server (which
 * would run 16 of one connection's at once). */
static void starts_wait_for_room(void **state)
{
    (void)state;
    pid_t server = start_server(1);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.max_in_flight = 2;
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, &o, addr, &rc);
    assert_non_null(c);
    assert_int_equal(rc, 0);
    sh->most = 0;
    enum { N = 6 };
    shmrpc_call *calls[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(calls_nap_start(c, 50 + (uint32_t)i, &calls[i]), 0);
    for (int i = 0; i < N; i++) {
        int32_t pid = 0;
        rc = calls_nap_finish(c, calls[i], &pid);
        if (rc) fail_msg("nap %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
    }
    for (int i = 0; i < N; i++) {
        int runs = 0;
        for (int32_t k = 0; k < sh->naps_begun; k++)
            runs += sh->nap_ms[k] == 50 + (uint32_t)i;
        assert_int_equal(runs, 1);
    }
    printf("at most %d naps ran at once\n", (int)sh->most);
    assert_true(sh->most >= 1 && sh->most <= 2);
    shmrpc_client_free(c);
    assert_true(test_stop_server(server));
}

/* A client that asks for compression (snappy, zlib) to a loopback server gets its answers
 * of calls in flight compressed, and each is its own message once decompressed. */
static void compressed_answers_in_flight(void **state)
{
    (void)state;
    pid_t server = start_server(1);
    static const unsigned comp[] = {SHMRPC_COMPRESS_SNAPPY, SHMRPC_COMPRESS_ZLIB};
    enum { N = 4 };
    shmrpc_buf msgs[N];
    for (int i = 0; i < N; i++) {
        shmrpc_buf_init(&msgs[i]);
        echo_text(&msgs[i], i, 64 << 10);
    }
    for (int k = 0; k < 2; k++) {
        shmrpc_client_opts o;
        shmrpc_client_opts_init(&o);
        o.tcp.compression = comp[k];
        int rc;
        shmrpc_client *c = test_connect(&Calls_service_info, &o, addr, &rc);
        assert_non_null(c);
        assert_int_equal(rc, 0);
        shmrpc_call *calls[N];
        for (int i = 0; i < N; i++)
            assert_int_equal(
                calls_echo_start(c, shmrpc_bytes_of(msgs[i].data, msgs[i].len), &calls[i]), 0);
        for (int i = N; i-- > 0;) {
            shmrpc_bytes out;
            rc = calls_echo_finish(c, calls[i], &out);
            if (rc) fail_msg("echo %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
            assert_int_equal(out.len, msgs[i].len);
            assert_memory_equal(out.ptr, msgs[i].data, out.len);
        }
        shmrpc_client_free(c);
    }
    for (int i = 0; i < N; i++)
        shmrpc_buf_destroy(&msgs[i]);
    assert_int_equal(sh->calls, 2 * N);
    assert_true(test_stop_server(server));
}

/* A result larger than the client said it takes (its HELLO's max_msg) is not sent: the
 * call ran, and its answer is an ERROR with SHMRPC_ETOOBIG that says the sizes; the
 * connection goes on. */
static void result_above_the_clients_maximum(void **state)
{
    (void)state;
    pid_t server = start_server(1);
    int fd = raw_connect(0);
    shmrpc__hello hello = {
        .proto = SHMRPC__WIRE_PROTO, .info = Calls_service_info, .threshold = 4096, .max_msg = 100};
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    assert_int_equal(test_put_hello(&b, &hello), 0);
    raw_send(fd, b.data, b.len);
    assert_int_equal(raw_frame(fd, &b).kind, SHMRPC__KIND_HELLO_ACK);
    uint8_t body[200] = {1};
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, method_id("echo"), 3, body, sizeof body);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, method_id("echo"), 4, body, 100); /* fits */
    raw_send(fd, b.data, b.len);
    for (int i = 0; i < 2; i++) { /* in either order: they ran on the worker's threads */
        shmrpc__frame_hdr h = raw_frame(fd, &b);
        if (h.request_id == 3) {
            assert_int_equal(h.kind, SHMRPC__KIND_ERROR);
            int status;
            shmrpc_str msg;
            shmrpc_buf err;
            shmrpc_buf_init(&err);
            assert_int_equal(
                shmrpc__error_parse(shmrpc_bytes_of(b.data, b.len), &status, &msg, &err), 0);
            shmrpc_buf_destroy(&err);
            assert_int_equal(status, SHMRPC_ETOOBIG);
            const char *want = "a result of 200 bytes is above the client's maximum of 100";
            assert_int_equal(msg.len, strlen(want));
            assert_memory_equal(msg.ptr, want, msg.len);
        } else {
            assert_int_equal(h.request_id, 4);
            assert_int_equal(h.kind, SHMRPC__KIND_RESPONSE);
            assert_int_equal(b.len, 100);
            assert_memory_equal(b.data, body, 100);
        }
    }
    assert_int_equal(sh->calls, 2);
    shmrpc_buf_clear(&b);
    put_add(&b, 5, 1, 2);
    raw_send(fd, b.data, b.len);
    expect_sum(fd, 5, 3);
    close(fd);
    shmrpc_buf_destroy(&b);
    assert_true(test_stop_server(server));
}

/* The client refuses entry 1 of list with says in its message (SHMRPC_EINVAL). */
static void expect_bad_list(const char *list, const char *says)
{
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, NULL), 0);
    int rc = shmrpc_client_connect(c, list);
    if (rc != SHMRPC_EINVAL || !strstr(shmrpc_errmsg(), says))
        fail_msg("%s: %s: '%s', not '%s'", list, shmrpc_strerror(rc), shmrpc_errmsg(), says);
    shmrpc_client_free(c);
}

/* IPv6: a server on [::1] serves a client of [::1] (alone, and in a list after a dead
 * endpoint), and counts its connections per address as an IPv6 peer's (a limit of 2 from
 * ::1 refuses the third, naming ::1); one on [::] (with a secret, as an address that is
 * not loopback needs) counts a client of 127.0.0.1 (mapped) as that address. Entries that
 * cannot be right are refused: something after ']' but a port, brackets around a name, a
 * host name above 255 bytes. */
static void ipv6_endpoints(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "tcp://[::1]:%d", port);
    server_tcp.max_conns_per_addr = 2;
    pid_t server = start_server(1);
    shmrpc_client *c = connect_to(addr);
    check_add(c, 1, 2);
    char list[128];
    snprintf(list, sizeof list, "tcp://[::1]:%d,[::1]:%d", test_free_port(), port);
    shmrpc_client *d = connect_to(list);
    check_add(d, 3, 4);
    shmrpc_client *e = NULL;
    assert_int_equal(shmrpc_client_new(&e, &Calls_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(e, addr), SHMRPC_EBUSY);
    assert_non_null(strstr(shmrpc_errmsg(), "too many connections from ::1 (the server admits "
                                            "at most 2 from one address)"));
    shmrpc_client_free(e);
    shmrpc_client_free(d);
    shmrpc_client_free(c);
    shmrpc_server *taken = NULL; /* the port is held: the message names who holds it */
    assert_int_equal(shmrpc_server_new(&taken, NULL), 0);
    assert_int_equal(shmrpc_server_register(taken, &Calls_service, &calls_test_handlers, NULL), 0);
    assert_int_equal(shmrpc_server_listen(taken, addr), SHMRPC_EBUSY);
    char held[64];
    snprintf(held, sizeof held, "pid %d", (int)server);
    print_message("%s\n", shmrpc_errmsg());
    if (!strstr(shmrpc_errmsg(), held)) fail_msg("'%s' does not name %s", shmrpc_errmsg(), held);
    shmrpc_server_free(taken);
    assert_true(test_stop_server(server));

    static const char secret[] = "correct horse battery staple";
    port = test_free_port();
    snprintf(addr, sizeof addr, "tcp://[::]:%d", port);
    server_tcp.max_conns_per_addr = 1;
    server_tcp.secret = secret;
    server_tcp.secret_len = strlen(secret);
    server = start_server(1);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.secret = secret;
    o.tcp.secret_len = strlen(secret);
    char v4[64];
    snprintf(v4, sizeof v4, "tcp://127.0.0.1:%d", port);
    int rc;
    c = test_connect(&Calls_service_info, &o, v4, &rc);
    assert_non_null(c);
    assert_int_equal(rc, 0);
    check_add(c, 5, 6);
    assert_int_equal(shmrpc_client_new(&e, &Calls_service_info, &o), 0);
    assert_int_equal(shmrpc_client_connect(e, v4), SHMRPC_EBUSY);
    assert_non_null(strstr(shmrpc_errmsg(), "too many connections from ::ffff:127.0.0.1"));
    shmrpc_client_free(e);
    shmrpc_client_free(c);
    assert_true(test_stop_server(server));
    assert_int_equal(sh->calls, 3);

    expect_bad_list("tcp://[::1]x:5000", "has something other than :PORT after ']'");
    expect_bad_list("tcp://[localhost]:5000", "has brackets around something not an IPv6 address");
    char longer[300] = "tcp://";
    memset(longer + 6, 'a', 256);
    strcpy(longer + 6 + 256, ":5000");
    expect_bad_list(longer, "has a host name longer than 255 bytes");
}

/* How many naps of ms began, by the servers' log of naps. */
static int naps_of(uint32_t ms)
{
    int32_t n = sh->naps_begun, runs = 0;
    assert_true(n <= CALLS_NAPS_LOGGED);
    for (int32_t i = 0; i < n; i++)
        runs += sh->nap_ms[i] == ms;
    return runs;
}

/* Reads the answers of the naps of fd, ids first..first+n-1 in any order. */
static void expect_naps(int fd, uint64_t first, int n)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    uint64_t seen = 0;
    for (int i = 0; i < n; i++) {
        shmrpc__frame_hdr h = raw_frame_within(fd, &b, 10000);
        if (h.kind != SHMRPC__KIND_RESPONSE || h.request_id < first ||
            h.request_id >= first + (uint64_t)n || (seen >> (h.request_id - first) & 1))
            fail_msg("a %s frame for request %llu where a nap's answer was due",
                     shmrpc__frame_kind_name(h.kind), (unsigned long long)h.request_id);
        seen |= (uint64_t)1 << (h.request_id - first);
    }
    shmrpc_buf_destroy(&b);
}

/* The calls of a client that left while they waited for a thread of the worker (both busy)
 * are not run; the calls of another client waiting with them are, and are answered. */
static void waiting_calls_of_a_gone_client(void **state)
{
    (void)state;
    server_tcp.max_running = 2; /* two threads */
    pid_t server = start_server(1);
    int a = raw_connect(0), b = raw_connect(0), c = raw_connect(0);
    raw_handshake(a, 0);
    raw_handshake(b, 0);
    raw_handshake(c, 0);
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    /* 2 s each: the gone client's close is seen long before they end (a stall of the
     * machine longer than that would let its calls start: said by the counts below) */
    put_nap(&out, 1, 2000);
    put_nap(&out, 2, 2001);
    raw_send(a, out.data, out.len);
    int64_t until = test_now_ms() + 5000;
    while (sh->running < 2 && test_now_ms() < until)
        usleep(1000);
    assert_int_equal(sh->running, 2); /* both threads are busy */
    shmrpc_buf_clear(&out);
    put_nap(&out, 1, 201);
    put_nap(&out, 2, 202);
    raw_send(b, out.data, out.len);
    shmrpc_buf_clear(&out);
    put_nap(&out, 1, 301);
    put_nap(&out, 2, 302);
    raw_send(c, out.data, out.len);
    close(c); /* gone while its calls wait */
    expect_naps(a, 1, 2);
    expect_naps(b, 1, 2);
    shmrpc_buf_clear(&out);
    put_nap(&out, 3, 0); /* behind where the gone client's calls would have been */
    raw_send(b, out.data, out.len);
    expect_naps(b, 3, 1);
    printf("naps begun: %d (the gone client's: %d)\n", (int)sh->naps_begun,
           naps_of(301) + naps_of(302));
    assert_int_equal(naps_of(2000) + naps_of(2001), 2);
    assert_int_equal(naps_of(201) + naps_of(202), 2);
    assert_int_equal(naps_of(301) + naps_of(302), 0);
    close(a);
    close(b);
    shmrpc_buf_destroy(&out);
    assert_true(test_stop_server(server));
}

/* Digits alone are a port on 127.0.0.1 (docs/wire.md, "Addresses"), alone and as entries
 * of a list (here after a port nobody serves): the calls get there and run. */
static void ports_alone(void **state)
{
    (void)state;
    pid_t server = start_server(1);
    char at[64];
    snprintf(at, sizeof at, "tcp://%d", port);
    shmrpc_client *c = connect_to(at);
    check_add(c, 1, 2);
    shmrpc_client_free(c);
    snprintf(at, sizeof at, "tcp://%d,%d", test_free_port(), port);
    c = connect_to(at);
    for (int i = 0; i < 3; i++)
        check_add(c, i, 5);
    shmrpc_client_free(c);
    assert_int_equal(sh->calls, 4);
    assert_true(test_stop_server(server));
}

/* --- the secret files a server or client is given --- */

/* The secret file at path is refused with status and exactly msg; what the caller gave
 * for the secret is left as it was. */
static void refused_secret(const char *path, size_t cap, int status, const char *msg)
{
    uint8_t got[SHMRPC_SECRET_MAX + 8];
    memset(got, 0xa5, sizeof got);
    size_t len = 12345;
    int rc = shmrpc_secret_load(path, got, cap, &len);
    if (rc != status || strcmp(shmrpc_errmsg(), msg) != 0)
        fail_msg("%s: %s '%s', not %s '%s'", path, shmrpc_strerror(rc), shmrpc_errmsg(),
                 shmrpc_strerror(status), msg);
    assert_int_equal(len, 12345);
    for (size_t i = 0; i < sizeof got; i++)
        assert_int_equal(got[i], 0xa5);
}

static void write_file(const char *path, const void *p, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* Not a regular file (a FIFO, opened without waiting for a writer; a folder; a device),
 * another user's file, a secret above the largest or above the caller's room: each refused
 * with what is wrong, and nothing given back. The largest secret, with its newline, is
 * taken whole. */
static void secret_file_refusals(void **state)
{
    (void)state;
    char dir[] = "/tmp/shmrpc-wire-XXXXXX", path[96], msg[256];
    assert_non_null(mkdtemp(dir));

    snprintf(path, sizeof path, "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    snprintf(msg, sizeof msg, "the secret file %s is a FIFO, not a regular file", path);
    refused_secret(path, SHMRPC_SECRET_MAX, SHMRPC_EINVAL, msg);
    unlink(path);

    snprintf(msg, sizeof msg, "the secret file %s is a folder, not a regular file", dir);
    refused_secret(dir, SHMRPC_SECRET_MAX, SHMRPC_EINVAL, msg);
    refused_secret("/dev/null", SHMRPC_SECRET_MAX, SHMRPC_EINVAL,
                   "the secret file /dev/null is a device or socket, not a regular file");

    /* Another user's file: as root, one given to uid 65534; else one of root's. */
    char text[SHMRPC_SECRET_MAX + 2];
    memset(text, 's', sizeof text);
    snprintf(path, sizeof path, "%s/theirs", dir);
    write_file(path, text, 20, 0600);
    const char *theirs = path;
    unsigned uid = 65534;
    if (geteuid() == 0) {
        assert_int_equal(chown(path, 65534, 65534), 0);
    } else {
        theirs = "/etc/passwd";
        uid = 0;
    }
    snprintf(msg, sizeof msg, "the secret file %s belongs to uid %u, not to this user (%u)", theirs,
             uid, (unsigned)geteuid());
    refused_secret(theirs, SHMRPC_SECRET_MAX, SHMRPC_EPERM, msg);
    unlink(path);

    snprintf(path, sizeof path, "%s/secret", dir);
    write_file(path, text, SHMRPC_SECRET_MAX + 1, 0600); /* one byte too many */
    snprintf(msg, sizeof msg, "the secret in %s is longer than %d bytes", path, SHMRPC_SECRET_MAX);
    refused_secret(path, SHMRPC_SECRET_MAX, SHMRPC_EINVAL, msg);
    write_file(path, text, sizeof text, 0600); /* more than the file is read for */
    refused_secret(path, SHMRPC_SECRET_MAX, SHMRPC_EINVAL, msg);

    text[SHMRPC_SECRET_MAX] = '\n'; /* the largest, with its newline: taken */
    write_file(path, text, SHMRPC_SECRET_MAX + 1, 0600);
    uint8_t got[SHMRPC_SECRET_MAX];
    size_t len = 0;
    assert_int_equal(shmrpc_secret_load(path, got, sizeof got, &len), 0);
    assert_int_equal(len, SHMRPC_SECRET_MAX);
    assert_memory_equal(got, text, SHMRPC_SECRET_MAX);

    write_file(path, text, 32, 0600); /* 32 bytes for room of 31 */
    snprintf(msg, sizeof msg, "the secret in %s is 32 bytes, more than the 31 given for it", path);
    refused_secret(path, 31, SHMRPC_EINVAL, msg);
    assert_int_equal(shmrpc_secret_load(path, got, 32, &len), 0);
    assert_int_equal(len, 32);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    if (calls_shared_map() != 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(frames_a_server_reads, setup),
        cmocka_unit_test_setup(refusal_after_the_calls_that_run, setup),
        cmocka_unit_test_setup(what_a_stopping_server_says, setup),
        cmocka_unit_test_setup(room_at_the_cap_from_idle_connections_only, setup),
        cmocka_unit_test_setup(answers_nobody_reads_are_cut_at_the_stop, setup),
        cmocka_unit_test_setup(peers_that_stop_making_progress, setup),
        cmocka_unit_test_setup(compressed_calls_on_the_threads, setup),
        cmocka_unit_test_setup(compressed_calls_in_place, setup),
        cmocka_unit_test_setup(answers_outlast_the_drain, setup),
        cmocka_unit_test(handshakes_a_client_refuses),
        cmocka_unit_test(blocking_calls_and_a_stand_in),
        cmocka_unit_test_setup(leave_moves_calls_in_flight, setup),
        cmocka_unit_test_setup(leave_moves_a_blocking_call, setup),
        cmocka_unit_test(request_out_to_a_server_that_stops_reading),
        cmocka_unit_test(request_out_alone_to_a_server_that_reads_nothing),
        cmocka_unit_test_setup(endpoints_that_never_take_the_call, setup),
        cmocka_unit_test_setup(a_client_in_a_child, setup),
        cmocka_unit_test_setup(starts_wait_for_room, setup),
        cmocka_unit_test_setup(compressed_answers_in_flight, setup),
        cmocka_unit_test_setup(result_above_the_clients_maximum, setup),
        cmocka_unit_test_setup(ipv6_endpoints, setup),
        cmocka_unit_test_setup(waiting_calls_of_a_gone_client, setup),
        cmocka_unit_test_setup(ports_alone, setup),
        cmocka_unit_test(secret_file_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
