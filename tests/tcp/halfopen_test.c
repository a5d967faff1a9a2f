/* SPDX-License-Identifier: MIT */
/* Connections that never finish their handshake against a tcp:// server (issue 33,
 * findings 1 and 3): floods of half-open connections from eight source addresses and from
 * 127.0.0.1, each reopened as soon as the server drops it, while a client calls through
 * them (plain, with a shared secret, over TLS); only finished connections count against an
 * address's limit; and a call in flight outlives a flood at the worker's cap. Real
 * processes on loopback; every wait is bounded, and the flood child is killed and reaped
 * whatever the test's outcome. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "transport/tcp/frame.h"
#include "hello.h"
#include "kids.h"
#include "procs.h"

/* The flood: 256 connections from each of 127.0.0.2-9 (at a worker of the default
 * 1024), and the calls of a client through it. */
enum { FLOOD_ADDRS = 8, FLOOD_PER_ADDR = 256, ROUNDS = 5 };

static char addr[64];
static int port;
static shmrpc_tcp_opts server_tcp;
static pid_t server; /* the running server, stopped by teardown when a test failed */
static char dir[] = "/tmp/shmrpc-halfopen-XXXXXX"; /* TLS certificates */
static const char secret[] = "a secret the flood does not hold";

/* --- a handler that blocks until released ------------------------------------------------ */

/* Shared with the servers' workers (mapped before they fork). */
typedef struct gate {
    _Atomic int inside; /* calls of gated_nap in their handler */
    _Atomic int open;   /* set by the test: they return */
} gate;
static gate *g;
static Calls_handlers gated; /* calls_test_handlers, with nap waiting for the gate */

/* Waits for the gate, at most ms (a call the test forgot still ends); returns its pid. */
static int gated_nap(shmrpc_ctx *ctx, uint32_t ms, int32_t *out)
{
    (void)ctx;
    g->inside++;
    int64_t end = test_now_ms() + ms;
    while (!g->open && test_now_ms() < end)
        usleep(1000);
    g->inside--;
    *out = getpid();
    return 0;
}

/* --- the flood --------------------------------------------------------------------------- */

enum { SILENT, HELLO_ONLY, FINISHED };

typedef struct flood {
    int first, addrs, per_addr; /* from 127.0.0.first ... 127.0.0.(first + addrs - 1) */
    int mode;                   /* SILENT: never a byte; HELLO_ONLY: a HELLO with a nonce
                                 * (a server with a secret then waits for its proof);
                                 * FINISHED: a HELLO without one (a plain server's handshake
                                 * ends), then nothing */
} flood;

/* The flood child's counts, in memory shared with the test. */
typedef struct flood_count {
    _Atomic long connected; /* connects that completed */
    _Atomic long dropped;   /* connections the server closed */
    _Atomic long failed;    /* connects that failed */
    _Atomic int all_up;     /* every socket has connected at least once */
} flood_count;
static flood_count *fc;
static pid_t flooder;

/* A non-blocking connect from 127.0.0.src; its fd, or -1. */
static int flood_open(int src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1; /* the port is chosen at connect, by the whole address pair */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(0x7f000000u | (unsigned)src)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The flood child: keeps addrs * per_addr connections open, each opened again as soon as
 * the server closes it, until it is killed (its alarm, or the parent's death). */
static int flood_main(void *arg)
{
    const flood *f = arg;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int n = f->addrs * f->per_addr;
    struct pollfd *pf = calloc((size_t)n, sizeof *pf);
    bool *up = calloc((size_t)n, sizeof *up);
    shmrpc_buf hello;
    shmrpc_buf_init(&hello);
    static const uint8_t nonce[32] = {1};
    shmrpc__hello h = {.proto = SHMRPC__WIRE_PROTO,
                       .info = Calls_service_info,
                       .threshold = 4096,
                       .max_msg = 1 << 20,
                       .auth = f->mode == HELLO_ONLY ? shmrpc_bytes_of(nonce, sizeof nonce)
                                                     : shmrpc_bytes_of(NULL, 0)};
    if (!pf || !up || test_put_hello(&hello, &h) != 0) return 2;
    int n_up = 0;
    for (int i = 0; i < n; i++) {
        pf[i].fd = flood_open(f->first + i / f->per_addr);
        pf[i].events = POLLOUT;
    }
    static uint8_t sink[1 << 16];
    for (;;) {
        for (int i = 0; i < n; i++) /* those whose connect failed, again */
            if (pf[i].fd < 0) {
                pf[i].fd = flood_open(f->first + i / f->per_addr);
                pf[i].events = POLLOUT;
            }
        int k = poll(pf, (nfds_t)n, 100);
        if (k < 0 && errno != EINTR) return 3;
        for (int i = 0; i < n && k > 0; i++) {
            if (!pf[i].revents) continue;
            k--;
            bool drop = false;
            if (pf[i].events & POLLOUT) { /* the connect ended */
                int e = 0;
                socklen_t len = sizeof e;
                getsockopt(pf[i].fd, SOL_SOCKET, SO_ERROR, &e, &len);
                if (e) {
                    fc->failed++;
                    close(pf[i].fd);
                    pf[i].fd = -1;
                    continue;
                }
                fc->connected++;
                if (!up[i] && ++n_up == n) fc->all_up = 1;
                up[i] = true;
                pf[i].events = POLLIN;
                if (f->mode != SILENT && send(pf[i].fd, hello.data, hello.len, MSG_NOSIGNAL) < 0)
                    drop = true;
            } else { /* what the server sent is read and dropped; its close ends it */
                for (;;) {
                    ssize_t got = recv(pf[i].fd, sink, sizeof sink, MSG_DONTWAIT);
                    if (got > 0) continue;
                    drop = got == 0 || (errno != EAGAIN && errno != EINTR);
                    break;
                }
            }
            if (drop) {
                fc->dropped++;
                close(pf[i].fd);
                pf[i].fd = flood_open(f->first + i / f->per_addr);
                pf[i].events = POLLOUT;
            }
        }
    }
}

/* Starts the flood and waits until every one of its sockets has connected once (the
 * server has held them or dropped them), up to 60 s: the kernel takes a connect into its
 * queue at once, so that waits for the flood child's own start. */
static void flood_start(const flood *f)
{
    memset(fc, 0, sizeof *fc);
    flooder = test_kid_spawn(flood_main, (void *)f, 240);
    int64_t until = test_now_ms() + 60000;
    while (!fc->all_up && test_now_ms() < until)
        usleep(10000);
    if (!fc->all_up)
        fail_msg("the flood did not connect all its %d sockets in 60 s (%ld connects, %ld failed)",
                 f->addrs * f->per_addr, fc->connected, fc->failed);
    usleep(300 * 1000); /* and it has run a while */
}

static void flood_stop(void)
{
    if (flooder > 0) {
        kill(flooder, SIGKILL);
        test_kid_reap(flooder, 5000);
    }
    flooder = 0;
}

/* --- the server -------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    port = test_free_port();
    server_tcp = (shmrpc_tcp_opts){0};
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", port);
    g->open = 0;
    g->inside = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    flood_stop();
    test_kids_kill_all();
    g->open = 1;
    if (server > 0) { /* a test that failed before it stopped its server */
        kill(server, SIGKILL);
        test_reap(server, 2000);
        test_tcp_stats_forget(addr);
    }
    server = 0;
    return 0;
}

static shmrpc_client_opts client_opts(bool with_secret, bool tls)
{
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.timeout_ms = 10000;
    if (with_secret) {
        o.tcp.secret = secret;
        o.tcp.secret_len = strlen(secret);
    }
    if (tls) {
        static char ca[128];
        snprintf(ca, sizeof ca, "%s/ca.pem", dir);
        o.tcp.tls = SHMRPC_TLS_ON;
        o.tcp.tls_verify = SHMRPC_TLS_VERIFY_ON;
        o.tcp.tls_ca = ca;
    }
    return o;
}

/* Starts the server and waits until it answers (a call over a connection then let go). */
static void start_server(int workers, const shmrpc_client_opts *o)
{
    test_server ts = {&Calls_service, &gated, addr, workers, 0, NULL, &server_tcp, NULL};
    server = test_start_server(&ts);
    assert_true(server > 0);
    int rc = 0;
    shmrpc_client *c = test_connect(&Calls_service_info, o, addr, &rc);
    if (!c || rc) fail_msg("connect: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    int64_t sum;
    assert_int_equal(calls_add(c, 1, 2, &sum), 0);
    shmrpc_client_free(c);
    usleep(50 * 1000); /* the workers have seen that connection close */
}

static void stop_server(void)
{
    pid_t pid = server;
    server = 0;
    assert_true(test_stop_server(pid));
}

static void with_secret(void)
{
    server_tcp.secret = secret;
    server_tcp.secret_len = strlen(secret);
}

static void with_tls(void)
{
    static char cert[128], key[128];
    snprintf(cert, sizeof cert, "%s/server.pem", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    server_tcp.tls_cert = cert;
    server_tcp.tls_key = key;
}

/* --- a client calling through it --------------------------------------------------------- */

/* ROUNDS calls, each on a new connection (connect, one add, let go) a tenth of a second
 * apart, while the flood runs: prints each one's status and time, and returns how many
 * were answered right. Each is bounded by the client's connect timeout (5 s) and call
 * deadline (10 s). */
static int calls_through(const char *what, const shmrpc_client_opts *o)
{
    int ok = 0;
    long dropped = fc->dropped;
    int64_t start = test_now_ms();
    for (int i = 0; i < ROUNDS; i++) {
        int64_t t0 = test_now_ms();
        shmrpc_client *c = NULL;
        int rc = shmrpc_client_new(&c, &Calls_service_info, o);
        if (rc == 0) rc = shmrpc_client_connect(c, addr);
        int64_t sum = 0;
        if (rc == 0) rc = calls_add(c, i, 40, &sum);
        if (rc == 0 && sum == i + 40) ok++;
        printf("%s: call %d: %s in %lld ms%s%s\n", what, i + 1,
               rc ? shmrpc_strerror(rc) : "answered", (long long)(test_now_ms() - t0),
               rc ? ": " : "", rc ? shmrpc_errmsg() : "");
        shmrpc_client_free(c);
        usleep(100 * 1000);
    }
    int64_t took = test_now_ms() - start;
    printf("%s: %d of %d calls answered; the flood had %ld connections dropped by the server in "
           "those %lld ms (%ld connects, %ld failed, in all)\n",
           what, ok, ROUNDS, fc->dropped - dropped, (long long)took, fc->connected, fc->failed);
    return ok;
}

/* --- raw peers --------------------------------------------------------------------------- */

/* A connection to the server from 127.0.0.src (any 127.x.y.z is this host). */
static int raw_connect_from(int src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(0x7f000000u | (unsigned)src)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static int raw_connect(void)
{
    return raw_connect_from(1);
}

static void raw_send(int fd, const void *p, size_t n)
{
    assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* The next frame's header and body (into b), within 5 s. */
static shmrpc__frame_hdr raw_frame(int fd, shmrpc_buf *b)
{
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    if (!test_raw_recv(fd, hdr, sizeof hdr, test_now_ms() + 5000)) fail_msg("no frame in 5 s");
    shmrpc__frame_hdr h;
    shmrpc_buf_clear(b);
    assert_int_equal(shmrpc__frame_hdr_decode(hdr, sizeof hdr, 1 << 20, 0, &h, b), 0);
    assert_int_equal(shmrpc__buf_grow(b, (size_t)h.body_len + 1), 0);
    assert_true(test_raw_recv(fd, b->data, h.body_len, test_now_ms() + 2000));
    b->len = h.body_len;
    return h;
}

/* The next frame is an ERROR with status and a message holding msg, then the close. */
static void expect_refusal(int fd, int status, const char *msg)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc__frame_hdr h = raw_frame(fd, &b);
    assert_int_equal(h.kind, SHMRPC__KIND_ERROR);
    int got;
    shmrpc_str text;
    assert_int_equal(shmrpc__error_parse(shmrpc_bytes_of(b.data, b.len), &got, &text, &b), 0);
    if (got != status || !memmem(text.ptr, text.len, msg, strlen(msg)))
        fail_msg("got %s: %.*s", shmrpc_strerror(got), (int)text.len, text.ptr);
    uint8_t byte;
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 2000), 1);
    ssize_t k = recv(fd, &byte, 1, 0);
    assert_true(k == 0 || (k < 0 && errno == ECONNRESET));
    shmrpc_buf_destroy(&b);
}

/* A HELLO (with a nonce when nonce), and the server's HELLO_ACK read back. */
static void raw_hello(int fd, bool nonce)
{
    static const uint8_t n[32] = {7};
    shmrpc__hello hello = {.proto = SHMRPC__WIRE_PROTO,
                           .info = Calls_service_info,
                           .threshold = 4096,
                           .max_msg = 1 << 20,
                           .auth = nonce ? shmrpc_bytes_of(n, sizeof n) : shmrpc_bytes_of(NULL, 0)};
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    assert_int_equal(test_put_hello(&b, &hello), 0);
    raw_send(fd, b.data, b.len);
    assert_int_equal(raw_frame(fd, &b).kind, SHMRPC__KIND_HELLO_ACK);
    shmrpc_buf_destroy(&b);
}

/* Nothing came from the server on fd (it holds the connection). */
static void expect_quiet(int fd)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 0), 0);
}

/* --- tests ------------------------------------------------------------------------------- */

/* The flood (finding 1): 2048 connections that never send a byte, 256 from each of
 * 127.0.0.2-9, each opened again as soon as the server drops it, at a worker of 1024. They
 * kept it at its cap and 0 of 5 calls got in ("too many connections (a worker serves at
 * most 1024)"), only idle finished connections making room. Now every call is answered. */
static void flood_of_eight(const char *what, int workers, bool secret_too, bool tls, int mode)
{
    if (secret_too) with_secret();
    if (tls) with_tls();
    shmrpc_client_opts o = client_opts(secret_too, tls);
    start_server(workers, &o);
    flood f = {.first = 2, .addrs = FLOOD_ADDRS, .per_addr = FLOOD_PER_ADDR, .mode = mode};
    flood_start(&f);
    int ok = calls_through(what, &o);
    flood_stop();
    assert_int_equal(ok, ROUNDS);
    stop_server();
}

static void eight_addresses_plain(void **state)
{
    (void)state;
    flood_of_eight("plain, 1 worker", 1, false, false, SILENT);
}

static void eight_addresses_with_a_secret(void **state)
{
    (void)state;
    flood_of_eight("shared secret, 2 workers", 2, true, false, SILENT);
}

static void eight_addresses_over_tls(void **state)
{
    (void)state;
    flood_of_eight("TLS, 1 worker", 1, false, true, SILENT);
}

/* The same flood sending its HELLO and never the proof of the secret: connections that
 * have spoken, which make room too (those of the address that holds the most). */
static void eight_addresses_owing_the_proof(void **state)
{
    (void)state;
    flood_of_eight("HELLO without the proof, 1 worker", 1, true, false, HELLO_ONLY);
}

/* Finding 3: 300 connections from 127.0.0.1 that never finish their handshake, opened
 * again as soon as they are dropped, against the per-address limit of 256: they counted
 * against it and another local client got 1 call of 5 in. Now only finished connections
 * count, and every call is answered; also against a server that requires TLS and a secret
 * the flood does not have. */
static void local_flood(const char *what, bool secret_and_tls)
{
    if (secret_and_tls) with_secret(), with_tls();
    shmrpc_client_opts o = client_opts(secret_and_tls, secret_and_tls);
    start_server(1, &o);
    flood f = {.first = 1, .addrs = 1, .per_addr = 300, .mode = SILENT};
    flood_start(&f);
    int ok = calls_through(what, &o);
    flood_stop();
    assert_int_equal(ok, ROUNDS);
    stop_server();
}

static void local_address_plain(void **state)
{
    (void)state;
    local_flood("127.0.0.1, plain", false);
}

static void local_address_tls_and_secret(void **state)
{
    (void)state;
    local_flood("127.0.0.1, TLS and a secret", true);
}

/* Only connections that passed AUTH count against max_conns_per_addr (here 4): beside ten
 * from 127.0.0.1 still in their handshake (five silent, five that sent a HELLO and owe
 * the proof of the secret), four clients with the secret get in, and the fifth is refused
 * when its handshake ends, with the per-address message; once one of the four leaves, it
 * gets in. The ten are still held (none was closed to make room). */
static void only_finished_connections_count(void **state)
{
    (void)state;
    enum { LIMIT = 4, HALF = 5 };
    with_secret();
    server_tcp.max_conns_per_addr = LIMIT;
    shmrpc_client_opts o = client_opts(true, false);
    start_server(1, &o);
    int fds[2 * HALF];
    for (int i = 0; i < HALF; i++)
        fds[i] = raw_connect();
    for (int i = HALF; i < 2 * HALF; i++) {
        fds[i] = raw_connect();
        raw_hello(fds[i], true); /* the server now waits for its proof */
    }
    shmrpc_client *c[LIMIT + 1];
    int64_t sum;
    for (int i = 0; i < LIMIT; i++) {
        int rc = 0;
        c[i] = test_connect(&Calls_service_info, &o, addr, &rc);
        if (rc) fail_msg("client %d: %s: %s", i + 1, shmrpc_strerror(rc), shmrpc_errmsg());
        assert_int_equal(calls_add(c[i], i, 1, &sum), 0);
    }
    int rc = shmrpc_client_new(&c[LIMIT], &Calls_service_info, &o);
    assert_int_equal(rc, 0);
    rc = shmrpc_client_connect(c[LIMIT], addr);
    if (rc != SHMRPC_EBUSY ||
        !strstr(shmrpc_errmsg(), "too many connections from 127.0.0.1 (the server admits at "
                                 "most 4 from one address)"))
        fail_msg("the fifth: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    for (int i = 0; i < 2 * HALF; i++)
        expect_quiet(fds[i]);
    shmrpc_client_free(c[0]);
    /* the worker sees c[0] close within a moment: up to 2 s */
    int64_t until = test_now_ms() + 2000;
    while ((rc = shmrpc_client_connect(c[LIMIT], addr)) == SHMRPC_EBUSY && test_now_ms() < until)
        usleep(10 * 1000);
    if (rc) fail_msg("after one left: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(calls_add(c[LIMIT], 2, 3, &sum), 0);
    assert_int_equal(sum, 5);
    for (int i = 1; i <= LIMIT; i++)
        shmrpc_client_free(c[i]);
    for (int i = 0; i < 2 * HALF; i++)
        close(fds[i]);
    stop_server();
}

/* Which connection in its handshake makes room, at a worker whose quota of them is 8 (of
 * max_conns 16; an address with 2 makes room for its own), with a secret so that one which
 * sent its HELLO stays in its handshake. While there is room nothing is closed, not even
 * for an address past 2. Past the quota, a new connection of an address with none closes
 * one of the address that holds the most, the oldest that has sent nothing (not the
 * oldest of all, of an address with one, nor the older one of that address that has
 * spoken); a new one of an address at its quota closes that address's own, the one that
 * has spoken when it is the last. Each closed connection is told why; the others are
 * held. */
static void who_makes_room(void **state)
{
    (void)state;
    with_secret();
    server_tcp.max_conns = 16;
    shmrpc_client_opts o = client_opts(true, false);
    start_server(1, &o);
    const char *why = "handshake timeout: closed to make room for a new connection (a worker "
                      "holds at most 8 connections in their handshake)";
    int oldest = raw_connect_from(3); /* the oldest of all, of an address with one */
    int spoke = raw_connect_from(2);  /* the oldest of 127.0.0.2, which has spoken */
    raw_hello(spoke, true);
    int s2 = raw_connect_from(2), s3 = raw_connect_from(2);
    int fill[4];
    for (int i = 0; i < 4; i++) { /* 5 to 8 of the quota, one from each of 127.0.0.5-8 */
        fill[i] = raw_connect_from(5 + i);
        raw_hello(fill[i], true); /* and the worker has taken s2 and s3 */
    }
    expect_quiet(s2);
    expect_quiet(s3);
    int n1 = raw_connect_from(4); /* the 9th: 127.0.0.2 holds the most */
    raw_hello(n1, true);
    expect_refusal(s2, SHMRPC_ETIMEDOUT, why);
    int n2 = raw_connect_from(2); /* 127.0.0.2 holds 2 (spoke, s3): its own */
    raw_hello(n2, true);
    expect_refusal(s3, SHMRPC_ETIMEDOUT, why);
    int n3 = raw_connect_from(2); /* 127.0.0.2 holds 2 that have spoken: the older */
    raw_hello(n3, true);
    expect_refusal(spoke, SHMRPC_ETIMEDOUT, why);
    int held[] = {oldest, fill[0], fill[1], fill[2], fill[3], n1, n2, n3};
    for (size_t i = 0; i < sizeof held / sizeof held[0]; i++) {
        expect_quiet(held[i]);
        close(held[i]);
    }
    close(spoke);
    close(s2);
    close(s3);
    stop_server();
}

/* A connection whose call runs is never closed to make room: at a worker of 8, one
 * client's call blocks in its handler, seven finished connections idle, and a flood of
 * connections that finish their handshake and idle arrives (reopened as they are closed).
 * The seven are closed to make room, each told why; the call's answer arrives once it is
 * released, and the client's next call is answered. */
static void call_in_flight_outlives_a_flood(void **state)
{
    (void)state;
    enum { MAX = 8, IDLE = MAX - 1 };
    server_tcp.max_conns = MAX;
    shmrpc_client_opts o = client_opts(false, false);
    o.timeout_ms = 60000;
    start_server(1, &o);
    int rc = 0;
    shmrpc_client *a = test_connect(&Calls_service_info, &o, addr, &rc);
    assert_int_equal(rc, 0);
    shmrpc_call *call = NULL;
    assert_int_equal(calls_nap_start(a, 30000, &call), 0);
    int64_t until = test_now_ms() + 5000;
    while (!g->inside && test_now_ms() < until)
        usleep(1000);
    assert_int_equal(g->inside, 1);
    int fds[IDLE];
    for (int i = 0; i < IDLE; i++) {
        fds[i] = raw_connect();
        raw_hello(fds[i], false);
    }
    flood f = {.first = 3, .addrs = 2, .per_addr = 8, .mode = FINISHED};
    flood_start(&f);
    for (int i = 0; i < IDLE; i++)
        expect_refusal(fds[i], SHMRPC_ETIMEDOUT, "idle connection closed to make room");
    /* and the flood goes on closing its own to make room, a while */
    long dropped = fc->dropped;
    until = test_now_ms() + 10000;
    while (fc->dropped < dropped + 100 && test_now_ms() < until)
        usleep(10 * 1000);
    assert_true(fc->dropped >= dropped + 100);
    assert_int_equal(g->inside, 1); /* the call still runs */
    g->open = 1;
    int32_t pid = 0;
    rc = calls_nap_finish(a, call, &pid);
    if (rc) fail_msg("the call in flight: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_true(pid > 0);
    flood_stop();
    /* Its call over, the connection idles, and a connection of the flood still on its way
     * may have closed it to make room: its client connects again by itself. */
    int64_t sum = 0;
    until = test_now_ms() + 5000;
    while ((rc = calls_add(a, 20, 22, &sum)) == SHMRPC_EUNAVAIL && test_now_ms() < until)
        usleep(20 * 1000);
    if (rc) fail_msg("the next call: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(sum, 42);
    shmrpc_client_free(a);
    for (int i = 0; i < IDLE; i++)
        close(fds[i]);
    stop_server();
}

/* --- the group --------------------------------------------------------------------------- */

/* Runs a shell command in dir, bounded by timeout(1); true when it succeeded. */
static bool sh_in_dir(const char *cmd)
{
    char line[2048];
    snprintf(line, sizeof line, "cd '%s' && timeout 60 sh -c '%s' >/dev/null 2>&1", dir, cmd);
    int st = system(line);
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Descriptors for the flood (2048), the server's worker (1024) and the rest: the soft
 * limit is raised for this process, whose children (the servers, the flood) inherit it. */
static int raise_nofile(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
    rlim_t want = 2 * FLOOD_ADDRS * FLOOD_PER_ADDR + 1024;
    if (r.rlim_cur >= want) return 0;
    if (r.rlim_max != RLIM_INFINITY && r.rlim_max < want) {
        fprintf(stderr,
                "halfopen_test: RLIMIT_NOFILE's hard limit %llu is below the %llu "
                "descriptors the flood needs\n",
                (unsigned long long)r.rlim_max, (unsigned long long)want);
        return -1;
    }
    r.rlim_cur = want;
    return setrlimit(RLIMIT_NOFILE, &r);
}

/* The shared pages, the handlers, the descriptors, and a CA with a server certificate for
 * IP 127.0.0.1 (ECDSA P-256, two days) made with the openssl program. */
static int group_setup(void **state)
{
    (void)state;
    if (calls_shared_map() != 0) return -1;
    g = mmap(NULL, sizeof *g, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    fc = mmap(NULL, sizeof *fc, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g == MAP_FAILED || fc == MAP_FAILED) return -1;
    gated = calls_test_handlers;
    gated.nap = gated_nap;
    if (raise_nofile() != 0) return -1;
    if (!mkdtemp(dir)) return -1;
    const char *key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj /CN=shmrpc-test-ca"
             " && printf \"subjectAltName=IP:127.0.0.1\\n\" > san.ext"
             " && openssl req %s -keyout server.key -out server.csr -subj /CN=127.0.0.1"
             " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
             " -out server.pem -days 2 -extfile san.ext",
             key, key);
    if (!sh_in_dir(cmd)) {
        fprintf(stderr, "halfopen_test: the openssl program could not make the certificates\n");
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(eight_addresses_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(eight_addresses_with_a_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(eight_addresses_over_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(eight_addresses_owing_the_proof, setup, teardown),
        cmocka_unit_test_setup_teardown(local_address_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(local_address_tls_and_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(only_finished_connections_count, setup, teardown),
        cmocka_unit_test_setup_teardown(who_makes_room, setup, teardown),
        cmocka_unit_test_setup_teardown(call_in_flight_outlives_a_flood, setup, teardown),
    };
    /* TCP_TEST_ONLY=GLOB runs only the matching tests (the mutant kit narrows by it). */
    if (getenv("TCP_TEST_ONLY")) cmocka_set_test_filter(getenv("TCP_TEST_ONLY"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
