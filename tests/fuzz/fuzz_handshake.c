/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the TCP transport's connection state machine (runtime/src/tcp*.c) as
 * a whole, over real loopback sockets, both ways. The fuzzer talks to a real server that
 * serves tests/common/calls.svc on a thread of this process, or plays the server for a
 * real client that connects to it and makes a call. A crash, a leak, a hang (no answer
 * and no close within a few seconds), an answer the wire format does not allow or nobody
 * asked for, a status that is not one, a deadline overrun, or a server that no longer
 * serves a good client is a finding.
 *
 * The first byte of an input picks the side and what the rest is (enum mode, modulo its
 * size), the second is a parameter of the mode, the rest is what the fuzzer says. The
 * seed corpus (corpus/handshake) is written by the target itself, with the codec of
 * frame.c, so that it follows the format:
 *     SHMRPC_FUZZ_WRITE_SEEDS=tests/fuzz/corpus/handshake build/bin/fuzz-handshake */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "calls.h"
#include "transport/tcp/frame.h"

enum mode {
    SERVER_RAW,         /* the rest goes to the server as it is */
    SERVER_AFTER_HELLO, /* a good HELLO offering the compression bits PARAM_COMP first */
    SERVER_HELLO_BODY,  /* the rest is the body of a HELLO frame */
    CLIENT_RAW,         /* the rest answers the client's HELLO */
    CLIENT_ACK_BODY,    /* the rest is the body of a HELLO_ACK frame answering it; a client
                         * that takes it makes a call (PARAM_METHOD), left unanswered */
    CLIENT_AFTER_ACK,   /* a good HELLO_ACK, then the client makes a call (PARAM_*) and
                         * the rest answers its REQUEST */
    N_MODES
};

/* The parameter: the compression bits a SERVER_AFTER_HELLO offers or the one a
 * CLIENT_AFTER_ACK chooses (none, snappy, zlib, none), the method a connected client
 * calls (add, echo, nap, nap), and for the client's modes whether the fuzzer holds the
 * connection open after the rest, so that the client must give up by its timeout,
 * rather than closing it. */
#define PARAM_COMP(p) ((p)&3u)
#define PARAM_METHOD(p) ((p) >> 2 & 3u)
#define PARAM_HOLD 0x10u

static const uint16_t comps[] = {0, SHMRPC__FLAG_SNAPPY, SHMRPC__FLAG_ZLIB, 0};
static const int methods[] = {CALLS_METHOD_ADD, CALLS_METHOD_ECHO, CALLS_METHOD_NAP,
                              CALLS_METHOD_NAP};

#define MAX_MSG (1u << 20) /* both sides' maximum message: large bodies cost little */
#define CALL_RID 1         /* a new client's first call (client_call.c counts from 1), for seeds */

/* Time limits. The waits that detect a hang are generous (the machine may be busy), and
 * cost nothing when nothing hangs; HELD_MS is what a held input costs. */
#define SERVER_WAIT_MS 3000 /* the server answers and closes within this */
#define CLIENT_WAIT_MS 5000 /* the client is done within this */
#define CONNECT_MS 2000     /* the client's connect and handshake timeout */
#define CALL_MS 200         /* the client's call timeout */
#define HELD_MS 5           /* both, when the connection is held */
#define LATE_MS 1000        /* how much later than its timeout a client may return */

static const uint8_t add_args[] = {0x92, 0x28, 0x02}; /* msgpack [40, 2] */
static const uint8_t nap_args[] = {0x91, 0x00};       /* msgpack [0] */
static const char echo_arg[] = "hello";

static shmrpc_buf err, scratch;
static shmrpc_arena *arena;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz-handshake: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* --- frames ----------------------------------------------------------------------------- */

static void put_frame(shmrpc_buf *b, uint8_t kind, uint16_t flags, uint32_t method, uint64_t rid,
                      shmrpc_bytes body)
{
    size_t at = shmrpc__frame_begin(b, kind, flags, method, rid);
    shmrpc_buf_append(b, body.ptr, body.len);
    if (shmrpc__frame_end(b, at) != 0) fail("cannot write a frame");
}

/* A HELLO or HELLO_ACK, framed or the body alone. */
static void put_handshake(shmrpc_buf *b, unsigned kind, const shmrpc__hello *h, bool framed)
{
    size_t at = framed ? shmrpc__frame_begin(b, (uint8_t)kind, 0, 0, 0) : 0;
    if (shmrpc__hello_write(b, kind, h, &err) != 0 || (framed && shmrpc__frame_end(b, at) != 0))
        fail("cannot write a handshake body: %s", shmrpc__msg_get(&err));
}

/* The handshake body of a side of this target: info, and compression comp. */
static shmrpc__hello hello_of(const shmrpc_service_info *info, uint16_t comp)
{
    shmrpc__hello h = {.proto = SHMRPC__WIRE_PROTO,
                       .info = *info,
                       .compression = comp,
                       .threshold = SHMRPC__WIRE_DEFAULT_THRESHOLD,
                       .max_msg = MAX_MSG};
    return h;
}

static void put_hello(shmrpc_buf *b, unsigned kind, const shmrpc_service_info *info, uint16_t comp,
                      bool framed)
{
    shmrpc__hello h = hello_of(info, comp);
    put_handshake(b, kind, &h, framed);
}

/* A REQUEST or RESPONSE whose message is compressed with flag. */
static void put_compressed(shmrpc_buf *b, uint8_t kind, uint16_t flag, uint32_t method,
                           uint64_t rid, shmrpc_bytes msg)
{
    uint16_t used;
    size_t at = shmrpc__frame_begin(b, kind, flag, method, rid);
    if (shmrpc__body_compress(flag, msg, b, &used) != 0 || used != flag ||
        shmrpc__frame_end(b, at) != 0)
        fail("cannot compress a seed");
}

static void put_error(shmrpc_buf *b, uint32_t method, uint64_t rid, int status, const char *msg)
{
    size_t at = shmrpc__frame_begin(b, SHMRPC__KIND_ERROR, 0, method, rid);
    if (shmrpc__error_write(b, status, shmrpc_str_c(msg)) != 0 || shmrpc__frame_end(b, at) != 0)
        fail("cannot write an ERROR frame");
}

/* The fields of a header as they are, unchecked: what a peer meant, whatever it is. */
static shmrpc__frame_hdr peek_hdr(const uint8_t *p)
{
    shmrpc__frame_hdr h = {.kind = p[5]};
    for (int i = 0; i < 4; i++)
        h.method = h.method << 8 | p[8 + i];
    for (int i = 0; i < 8; i++)
        h.request_id = h.request_id << 8 | p[12 + i];
    for (int i = 0; i < 4; i++)
        h.body_len = h.body_len << 8 | p[20 + i];
    return h;
}

/* --- sockets ------------------------------------------------------------------------------ */

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail("connect: %s", strerror(errno));
    return fd;
}

/* A listening socket on 127.0.0.1 and a port the kernel picked. */
static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &n) != 0)
        fail("listen: %s", strerror(errno));
    *port = ntohs(a.sin_port);
    return fd;
}

/* Waits for events on fd until deadline; false when it passed. */
static bool wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) return false;
        struct pollfd pf = {.fd = fd, .events = events};
        int n = poll(&pf, 1, (int)left);
        if (n > 0) return true;
        if (n < 0 && errno != EINTR) fail("poll: %s", strerror(errno));
    }
}

/* Sends what the peer takes before deadline; stops quietly once it has gone. */
static void send_some(int fd, const uint8_t *p, size_t n, int64_t deadline)
{
    while (n && wait_fd(fd, POLLOUT, deadline)) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) return;
        p += k, n -= (size_t)k;
    }
}

/* Reads n bytes into b before deadline; false at the peer's close or the deadline. */
static bool recv_n(int fd, shmrpc_buf *b, size_t n, int64_t deadline)
{
    if (shmrpc__buf_grow(b, n) != 0) fail("out of memory");
    while (n) {
        if (!wait_fd(fd, POLLIN, deadline)) return false;
        ssize_t k = recv(fd, b->data + b->len, n, MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) return false;
        b->len += (size_t)k, n -= (size_t)k;
    }
    return true;
}

/* Reads one frame of the client into b (cleared first), its header checked with the
 * compression agreed. */
static bool recv_frame(int fd, shmrpc_buf *b, shmrpc__frame_hdr *h, uint16_t comp, int64_t deadline)
{
    shmrpc_buf_clear(b);
    if (!recv_n(fd, b, SHMRPC__FRAME_HDR_SIZE, deadline)) return false;
    if (shmrpc__frame_hdr_decode(b->data, b->len, MAX_MSG, comp, h, &err) != 0)
        fail("the client sent a bad frame header: %s", shmrpc__msg_get(&err));
    return recv_n(fd, b, h->body_len, deadline);
}

/* Sends out while reading what comes back into in, half-closes once all is sent, and
 * reads on until the peer closes (a reset counts: the answer came before it). False
 * when that has not happened by deadline. */
static bool converse(int fd, shmrpc_bytes out, shmrpc_buf *in, int64_t deadline)
{
    size_t off = 0;
    bool shut = false;
    for (;;) {
        if (off == out.len && !shut) {
            shutdown(fd, SHUT_WR);
            shut = true;
        }
        if (!wait_fd(fd, (short)(POLLIN | (shut ? 0 : POLLOUT)), deadline)) return false;
        if (!shut) {
            ssize_t k = send(fd, out.ptr + off, out.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (k > 0) off += (size_t)k;
            if (k < 0 && errno != EAGAIN && errno != EINTR) off = out.len; /* it hung up */
        }
        if (shmrpc__buf_grow(in, 65536) != 0) fail("out of memory");
        ssize_t k = recv(fd, in->data + in->len, in->cap - in->len, MSG_DONTWAIT);
        if (k > 0) in->len += (size_t)k;
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) return true;
    }
}

/* --- the server side --------------------------------------------------------------------- */

/* nap does not sleep (a fuzzed nap(4e9) would stall the only worker and read as a hang),
 * and add wraps around (signed overflow is undefined). */
static int h_echo(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    (void)ctx;
    *out = data;
    return 0;
}

static int h_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    (void)ctx;
    *out = (int64_t)((uint64_t)a + (uint64_t)b);
    return 0;
}

static int h_nap(shmrpc_ctx *ctx, uint32_t ms, int32_t *out)
{
    (void)ctx;
    *out = (int32_t)(ms & INT32_MAX);
    return 0;
}

static const Calls_handlers handlers = {.echo = h_echo, .add = h_add, .nap = h_nap};

static struct {
    shmrpc_server *s;
    pthread_t thread;
    int port;
    char addr[64];
    shmrpc_client *good; /* calls between inputs: the server still serves */
    shmrpc_buf sent, got;
} srv;

static void *serve(void *arg)
{
    (void)arg;
    int rc = shmrpc_server_serve(srv.s, 0);
    if (rc) fail("serve: %s", shmrpc_strerror(rc));
    return NULL;
}

static void start_server(void)
{
    shmrpc_server_opts o;
    shmrpc_server_opts_init(&o);
    o.max_msg_bytes = MAX_MSG;
    if (shmrpc_server_new(&srv.s, &o) != 0 ||
        shmrpc_server_register(srv.s, &Calls_service, &handlers, NULL) != 0)
        fail("cannot make the server: %s", shmrpc_errmsg());
    /* A port that was free a moment ago may have been taken since: try another. */
    int rc = SHMRPC_EBUSY;
    for (int i = 0; i < 20 && rc == SHMRPC_EBUSY; i++) {
        close(listen_any(&srv.port));
        snprintf(srv.addr, sizeof srv.addr, "tcp://127.0.0.1:%d", srv.port);
        rc = shmrpc_server_listen(srv.s, srv.addr);
    }
    if (rc) fail("listen: %s", shmrpc_errmsg());
    if (pthread_create(&srv.thread, NULL, serve, NULL) != 0) fail("pthread_create");
    shmrpc_client_opts co;
    shmrpc_client_opts_init(&co);
    co.timeout_ms = SERVER_WAIT_MS;
    if (shmrpc_client_new(&srv.good, &Calls_service_info, &co) != 0 ||
        shmrpc_client_connect(srv.good, srv.addr) != 0)
        fail("cannot connect to the server: %s", shmrpc_errmsg());
    shmrpc_buf_init(&srv.sent);
    shmrpc_buf_init(&srv.got);
}

static void stop_server(void)
{
    shmrpc_client_free(srv.good);
    shmrpc_server_stop(srv.s);
    pthread_join(srv.thread, NULL);
    shmrpc_server_free(srv.s);
    shmrpc_buf_destroy(&srv.sent);
    shmrpc_buf_destroy(&srv.got);
}

/* What the server must answer first to the n bytes at p: nothing (0: they were empty),
 * a HELLO_ACK whose fields are in ack (hello: what it answers), or an ERROR frame with
 * *status and a close. The server reads frames one by one, so the first one decides. */
static unsigned first_answer(const uint8_t *p, size_t n, shmrpc__hello *hello, shmrpc__hello *ack,
                             int *status)
{
    shmrpc__frame_hdr h;
    if (n == 0) return 0;
    *status = shmrpc__frame_hdr_decode(p, n, SHMRPC__WIRE_MAX_HELLO, 0, &h, &err);
    if (*status) return SHMRPC__KIND_ERROR;
    *status = SHMRPC_EPROTO; /* half a frame, or not a HELLO */
    if (n - SHMRPC__FRAME_HDR_SIZE < h.body_len || h.kind != SHMRPC__KIND_HELLO)
        return SHMRPC__KIND_ERROR;
    shmrpc_bytes body = shmrpc_bytes_of(p + SHMRPC__FRAME_HDR_SIZE, h.body_len);
    *status = shmrpc__hello_parse(body, SHMRPC__KIND_HELLO, arena, hello, &err);
    if (*status == 0)
        *status = shmrpc__hello_answer(hello, &Calls_service_info, SHMRPC__FLAG_COMPRESSION,
                                       SHMRPC__WIRE_DEFAULT_THRESHOLD, MAX_MSG, arena, ack, &err);
    return *status ? SHMRPC__KIND_ERROR : SHMRPC__KIND_HELLO_ACK;
}

/* The offset past the first whole frame of the n bytes at p, from at, of kind with request
 * id rid (and method id *method unless NULL), or 0 when there is none. The frames are
 * walked as a peer reads them, unchecked: past the first bad one there is only more to
 * match, never less. */
static size_t find_frame(const uint8_t *p, size_t n, size_t at, uint8_t kind, uint64_t rid,
                         const uint32_t *method)
{
    while (n - at >= SHMRPC__FRAME_HDR_SIZE) {
        shmrpc__frame_hdr h = peek_hdr(p + at);
        if (h.body_len > n - at - SHMRPC__FRAME_HDR_SIZE) return 0;
        at += SHMRPC__FRAME_HDR_SIZE + h.body_len;
        if (h.kind == kind && h.request_id == rid && (!method || h.method == *method)) return at;
    }
    return 0;
}

/* What an answer of the server (a RESPONSE, an ERROR or a PONG) answers in sent, from
 * at: the first REQUEST or PING with its ids. */
static size_t answered(shmrpc_bytes sent, size_t at, const shmrpc__frame_hdr *a)
{
    uint8_t kind = a->kind == SHMRPC__KIND_PONG ? SHMRPC__KIND_PING : SHMRPC__KIND_REQUEST;
    return find_frame(sent.ptr, sent.len, at, kind, a->request_id, &a->method);
}

/* Checks the server's answer (got) to what was sent: whole frames that decode, the first
 * one as first_answer says, then only answers to REQUEST and PING frames that were sent,
 * in order, each once, and at most an ERROR with request id 0 last. */
static void check_answer(shmrpc_bytes sent, shmrpc_bytes got)
{
    shmrpc__hello hello, ack, told;
    int status;
    unsigned first = first_answer(sent.ptr, sent.len, &hello, &ack, &status);
    uint16_t comp = 0;
    size_t at = 0;        /* in sent: the frames before it have been answered or skipped */
    bool greeted = false; /* a HELLO_ACK was answered */
    for (size_t off = 0; off < got.len;) {
        shmrpc__frame_hdr h;
        const uint8_t *p = got.ptr + off;
        if (shmrpc__frame_hdr_decode(p, got.len - off, UINT32_MAX, comp, &h, &err) != 0)
            fail("the server sent a bad frame header: %s", shmrpc__msg_get(&err));
        if (h.body_len > got.len - off - SHMRPC__FRAME_HDR_SIZE)
            fail("the server closed inside a frame");
        shmrpc_bytes body = shmrpc_bytes_of(p + SHMRPC__FRAME_HDR_SIZE, h.body_len);
        off += SHMRPC__FRAME_HDR_SIZE + h.body_len;
        bool last = off == got.len;
        if (!greeted && h.kind != first)
            fail("the server answered first with a %s frame, not a %s",
                 shmrpc__frame_kind_name(h.kind), shmrpc__frame_kind_name(first));
        switch (h.kind) {
        case SHMRPC__KIND_HELLO_ACK: {
            if (greeted) fail("a second HELLO_ACK");
            if (shmrpc__hello_parse(body, SHMRPC__KIND_HELLO_ACK, arena, &told, &err) != 0)
                fail("the HELLO_ACK does not parse: %s", shmrpc__msg_get(&err));
            if (told.compression != ack.compression || told.threshold != ack.threshold ||
                told.max_msg != ack.max_msg || told.proto != ack.proto ||
                told.info.fingerprint != Calls_service_info.fingerprint)
                fail("the HELLO_ACK differs from the handshake's answer");
            uint32_t *map = shmrpc_arena_calloc(arena, hello.info.n_methods + 1, 4, 4);
            if (!map || shmrpc__hello_accept(&hello, &told, &err) != 0 ||
                shmrpc__method_map(&hello.info, &told.info, map, &err, NULL) != 0)
                fail("the client that sent the HELLO would refuse the HELLO_ACK: %s",
                     shmrpc__msg_get(&err));
            greeted = true;
            comp = told.compression;
            at = SHMRPC__FRAME_HDR_SIZE + peek_hdr(sent.ptr).body_len; /* past the HELLO */
            break;
        }
        case SHMRPC__KIND_ERROR: {
            shmrpc_str msg;
            int st;
            if (shmrpc__error_parse(body, &st, &msg, &err) != 0)
                fail("the ERROR body does not parse: %s", shmrpc__msg_get(&err));
            if (!greeted && st != status)
                fail("the server refused with %s (%.*s), not %s", shmrpc_strerror(st), (int)msg.len,
                     msg.ptr, shmrpc_strerror(status));
            size_t next = greeted ? answered(sent, at, &h) : 0;
            if (next) {
                at = next;
            } else if (!last || h.request_id || h.method) {
                fail("an ERROR frame that answers nothing sent: request %llu, method %u",
                     (unsigned long long)h.request_id, h.method);
            }
            break;
        }
        case SHMRPC__KIND_RESPONSE:
        case SHMRPC__KIND_PONG: {
            size_t next = greeted ? answered(sent, at, &h) : 0;
            if (!next)
                fail("a %s frame that answers nothing sent: request %llu",
                     shmrpc__frame_kind_name(h.kind), (unsigned long long)h.request_id);
            at = next;
            uint16_t flag = h.flags & SHMRPC__FLAG_COMPRESSION;
            shmrpc_buf_clear(&scratch);
            if (flag && shmrpc__body_decompress(flag, body, hello.max_msg, &scratch, &err) != 0)
                fail("a compressed RESPONSE that the client cannot take: %s",
                     shmrpc__msg_get(&err));
            if (!flag && body.len > hello.max_msg) fail("a RESPONSE above the client's maximum");
            break;
        }
        default:
            fail("the server sent a %s frame", shmrpc__frame_kind_name(h.kind));
        }
    }
    if (got.len == 0 && first != 0) fail("the server closed without a word");
}

/* The server answers a good call, so whatever came before did not break it. Going
 * through the server's loop once also lets it finish freeing the connection it closed. */
static void check_served(void)
{
    int64_t sum = 0;
    int rc = calls_add(srv.good, 40, 2, &sum);
    if (rc || sum != 42) fail("the server no longer serves: %s", shmrpc_errmsg());
}

static void fuzz_server(enum mode mode, uint8_t param, shmrpc_bytes rest)
{
    shmrpc_arena_reset(arena);
    shmrpc_buf_clear(&srv.sent);
    shmrpc_buf_clear(&srv.got);
    if (mode == SERVER_AFTER_HELLO)
        put_hello(&srv.sent, SHMRPC__KIND_HELLO, &Calls_service_info, PARAM_COMP(param), true);
    if (mode == SERVER_HELLO_BODY)
        put_frame(&srv.sent, SHMRPC__KIND_HELLO, 0, 0, 0, rest);
    else
        shmrpc_buf_append(&srv.sent, rest.ptr, rest.len);
    if (srv.sent.err) fail("out of memory");
    shmrpc_bytes sent = shmrpc_bytes_of(srv.sent.data, srv.sent.len);

    int fd = connect_to(srv.port);
    if (!converse(fd, sent, &srv.got, now_ms() + SERVER_WAIT_MS))
        fail("the server neither answered nor closed");
    close(fd);
    check_answer(sent, shmrpc_bytes_of(srv.got.data, srv.got.len));
    check_served();
}

/* --- the client side ------------------------------------------------------------------ */

/* What the client thread does for one input, and what came of it. */
typedef struct client_job {
    int method; /* called once connected, or -1 */
    int64_t connect_timeout, call_timeout;
    int connect_rc, call_rc;
    int64_t connect_ms, call_ms;
    bool done;
} client_job;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    client_job *job; /* handed to the thread, NULL once done */
    bool quit;
    int fd; /* where the fuzzer listens as the server */
    char addr[64];
    shmrpc_buf in, out;
} fake;

static int call(shmrpc_client *c, int method)
{
    int64_t sum;
    int32_t pid;
    shmrpc_bytes echoed;
    switch (method) {
    case CALLS_METHOD_ADD:
        return calls_add(c, 40, 2, &sum);
    case CALLS_METHOD_ECHO:
        return calls_echo(c, shmrpc_bytes_of(echo_arg, strlen(echo_arg)), &echoed);
    default:
        return calls_nap(c, 0, &pid);
    }
}

static void run_client(client_job *job)
{
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.timeout_ms = job->call_timeout;
    o.max_msg_bytes = MAX_MSG;
    o.tcp.connect_timeout_ms = job->connect_timeout;
    /* Offered explicitly: over loopback the default offers none. */
    o.tcp.compression = SHMRPC_COMPRESS_SNAPPY | SHMRPC_COMPRESS_ZLIB;
    shmrpc_client *c;
    if (shmrpc_client_new(&c, &Calls_service_info, &o) != 0) fail("shmrpc_client_new");
    int64_t t0 = now_ms();
    job->connect_rc = shmrpc_client_connect(c, fake.addr);
    int64_t t1 = now_ms();
    job->connect_ms = t1 - t0;
    if (job->connect_rc == 0 && job->method >= 0) {
        job->call_rc = call(c, job->method);
        job->call_ms = now_ms() - t1;
    }
    if (strlen(shmrpc_errmsg()) > 8192) fail("a message of unbounded length");
    shmrpc_client_free(c);
}

static void *client_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&fake.mu);
    for (;;) {
        while (!fake.job && !fake.quit)
            pthread_cond_wait(&fake.cv, &fake.mu);
        if (fake.quit) break;
        client_job *job = fake.job;
        pthread_mutex_unlock(&fake.mu);
        run_client(job);
        pthread_mutex_lock(&fake.mu);
        job->done = true;
        fake.job = NULL;
        pthread_cond_broadcast(&fake.cv);
    }
    pthread_mutex_unlock(&fake.mu);
    return NULL;
}

static void start_fake(void)
{
    int port;
    fake.fd = listen_any(&port);
    snprintf(fake.addr, sizeof fake.addr, "tcp://127.0.0.1:%d", port);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&fake.mu, NULL);
    pthread_cond_init(&fake.cv, &ca);
    pthread_condattr_destroy(&ca);
    shmrpc_buf_init(&fake.in);
    shmrpc_buf_init(&fake.out);
    if (pthread_create(&fake.thread, NULL, client_main, NULL) != 0) fail("pthread_create");
}

static void stop_fake(void)
{
    pthread_mutex_lock(&fake.mu);
    fake.quit = true;
    pthread_cond_broadcast(&fake.cv);
    pthread_mutex_unlock(&fake.mu);
    pthread_join(fake.thread, NULL);
    close(fake.fd);
    shmrpc_buf_destroy(&fake.in);
    shmrpc_buf_destroy(&fake.out);
}

/* Waits for the client thread to finish job; a client that does not is a hang. */
static void await_client(client_job *job, int64_t deadline)
{
    struct timespec ts = {(time_t)(deadline / 1000), (long)(deadline % 1000) * 1000000};
    pthread_mutex_lock(&fake.mu);
    while (!job->done)
        if (pthread_cond_timedwait(&fake.cv, &fake.mu, &ts) == ETIMEDOUT && !job->done)
            fail("the client hangs");
    pthread_mutex_unlock(&fake.mu);
}

/* The body of the REQUEST that call(method) makes (calls_client.c). */
static shmrpc_bytes call_args(int method)
{
    switch (method) {
    case CALLS_METHOD_ADD:
        return shmrpc_bytes_of(add_args, sizeof add_args);
    case CALLS_METHOD_ECHO:
        return shmrpc_bytes_of(echo_arg, strlen(echo_arg));
    default:
        return shmrpc_bytes_of(nap_args, sizeof nap_args);
    }
}

/* Whether a client that sent hello takes the HELLO_ACK frame in out (the client's checks
 * in client_dial.c: the body parses, the client's methods map onto the server's, filling map,
 * and the server asks for no shared secret, which this client does not have). */
static bool acceptable(const shmrpc__hello *hello, const shmrpc_buf *out, shmrpc__hello *ack,
                       uint32_t *map)
{
    shmrpc_bytes body =
        shmrpc_bytes_of(out->data + SHMRPC__FRAME_HDR_SIZE, out->len - SHMRPC__FRAME_HDR_SIZE);
    return shmrpc__hello_parse(body, SHMRPC__KIND_HELLO_ACK, arena, ack, &err) == 0 &&
           shmrpc__hello_accept(hello, ack, &err) == 0 &&
           shmrpc__method_map(&hello->info, &ack->info, map, &err, NULL) == 0 && ack->auth.len == 0;
}

/* The client's REQUEST (header h, body) must be its call of method as the HELLO_ACK
 * says: the server's id for it, compressed only as agreed and above the threshold, and
 * never above the server's maximum. */
static void check_request(const shmrpc__frame_hdr *h, shmrpc_bytes body, int method,
                          const shmrpc__hello *ack, const uint32_t *map)
{
    shmrpc_bytes args = call_args(method);
    uint16_t flag = h->flags & SHMRPC__FLAG_COMPRESSION;
    if (h->kind != SHMRPC__KIND_REQUEST || h->method != map[method])
        fail("the client sent a %s frame for method %u, not its call of %u (server id %u)",
             shmrpc__frame_kind_name(h->kind), h->method, (unsigned)method, map[method]);
    if (args.len > ack->max_msg)
        fail("the client sent a request of %zu bytes to a server that takes at most %u", args.len,
             ack->max_msg);
    /* Every call here has a deadline: sent once revision 4 was agreed, and only then. */
    bool dl = h->flags & SHMRPC__FLAG_DEADLINE;
    if (dl != (ack->proto >= 4))
        fail("the client %s a deadline on a connection of revision %u", dl ? "sent" : "left out",
             ack->proto);
    if (dl) {
        if (shmrpc__deadline_decode(body.ptr) > (int64_t)CALL_MS * 1000000)
            fail("the client's deadline is %" PRId64 " ns, more than its call's timeout",
                 shmrpc__deadline_decode(body.ptr));
        body = shmrpc_bytes_of(body.ptr + SHMRPC__DEADLINE_LEN, body.len - SHMRPC__DEADLINE_LEN);
    }
    if (flag && args.len < ack->threshold)
        fail("the client compressed %zu bytes, below the threshold of %u", args.len,
             ack->threshold);
    shmrpc_buf_clear(&scratch);
    if (flag && shmrpc__body_decompress(flag, body, MAX_MSG, &scratch, &err) != 0)
        fail("the client's compressed REQUEST does not decompress: %s", shmrpc__msg_get(&err));
    shmrpc_bytes msg = flag ? shmrpc_bytes_of(scratch.data, scratch.len) : body;
    if (msg.len != args.len || memcmp(msg.ptr, args.ptr, args.len) != 0)
        fail("the client's REQUEST does not carry the call's arguments");
}

static void fuzz_client(enum mode mode, uint8_t param, shmrpc_bytes rest)
{
    bool hold = param & PARAM_HOLD;
    client_job job = {.method = mode == CLIENT_RAW ? -1 : methods[PARAM_METHOD(param)],
                      .connect_timeout = hold && mode != CLIENT_AFTER_ACK ? HELD_MS : CONNECT_MS,
                      .call_timeout = hold ? HELD_MS : CALL_MS};
    int64_t deadline = now_ms() + CLIENT_WAIT_MS;
    pthread_mutex_lock(&fake.mu);
    fake.job = &job;
    pthread_cond_broadcast(&fake.cv);
    pthread_mutex_unlock(&fake.mu);

    if (!wait_fd(fake.fd, POLLIN, deadline)) fail("the client does not connect");
    int fd = accept4(fake.fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) fail("accept: %s", strerror(errno));
    shmrpc__frame_hdr h;
    shmrpc__hello hello, ack;
    shmrpc_arena_reset(arena);
    if (!recv_frame(fd, &fake.in, &h, 0, deadline)) {
        close(fd);
        await_client(&job, deadline);
        /* A held client may run out of time before its socket is writable. */
        if (!hold || job.connect_rc != SHMRPC_ETIMEDOUT)
            fail("the client sent no HELLO (connect: %s)", shmrpc_strerror(job.connect_rc));
        return;
    }
    shmrpc_bytes body = shmrpc_bytes_of(fake.in.data + SHMRPC__FRAME_HDR_SIZE, h.body_len);
    if (h.kind != SHMRPC__KIND_HELLO ||
        shmrpc__hello_parse(body, SHMRPC__KIND_HELLO, arena, &hello, &err) != 0)
        fail("the client's HELLO does not parse: %s", shmrpc__msg_get(&err));

    shmrpc_buf_clear(&fake.out);
    if (mode == CLIENT_RAW)
        shmrpc_buf_append(&fake.out, rest.ptr, rest.len);
    else if (mode == CLIENT_ACK_BODY)
        put_frame(&fake.out, SHMRPC__KIND_HELLO_ACK, 0, 0, 0, rest);
    else
        put_hello(&fake.out, SHMRPC__KIND_HELLO_ACK, &Calls_service_info, comps[PARAM_COMP(param)],
                  true);
    if (fake.out.err) fail("out of memory");
    send_some(fd, fake.out.data, fake.out.len, deadline);
    bool ok = false;
    uint64_t rid = 0;         /* of the client's REQUEST */
    if (mode != CLIENT_RAW) { /* the client calls if it takes the HELLO_ACK */
        uint32_t *map = shmrpc_arena_calloc(arena, hello.info.n_methods + 1, 4, 4);
        if (!map || (unsigned)job.method >= hello.info.n_methods) fail("a HELLO without calls");
        ok = acceptable(&hello, &fake.out, &ack, map);
        if (mode == CLIENT_AFTER_ACK && !ok) fail("our HELLO_ACK: %s", shmrpc__msg_get(&err));
        /* The client closes when it gave up, or could not send the call. */
        /* A blocking call sets the lone flag once revision 3 was agreed, and the deadline flag
         * once 4 was, never before (the decoder refuses them then). */
        uint16_t agreed = ok ? ack.compression | (ack.proto >= 3 ? SHMRPC__FLAG_LONE : 0) |
                                   (ack.proto >= 4 ? SHMRPC__FLAG_DEADLINE : 0)
                             : 0;
        if (recv_frame(fd, &fake.in, &h, agreed, deadline)) {
            if (!ok) fail("the client called after a HELLO_ACK that it should refuse");
            body = shmrpc_bytes_of(fake.in.data + SHMRPC__FRAME_HDR_SIZE, h.body_len);
            check_request(&h, body, job.method, &ack, map);
            rid = h.request_id;
        } else if (mode == CLIENT_AFTER_ACK) {
            fail("the client sent no REQUEST after a good HELLO_ACK");
        }
    }
    if (mode == CLIENT_AFTER_ACK) send_some(fd, rest.ptr, rest.len, deadline);
    if (hold) await_client(&job, deadline);
    shutdown(fd, SHUT_WR);
    close(fd);
    await_client(&job, deadline);

    /* Statuses are negative; those of ERROR frames are the peer's, any negative int32. */
    if (job.connect_rc > 0 || job.call_rc > 0)
        fail("the client returned %d, %d: not statuses", job.connect_rc, job.call_rc);
    /* A call succeeds with its RESPONSE only, which only CLIENT_AFTER_ACK's rest may hold.
     * Its method id is not checked: the request id says what it answers. */
    if (mode != CLIENT_RAW && job.connect_rc == 0 && job.call_rc == 0 &&
        (mode != CLIENT_AFTER_ACK ||
         !find_frame(rest.ptr, rest.len, 0, SHMRPC__KIND_RESPONSE, rid, NULL)))
        fail("the client's call succeeded, but no RESPONSE answered it");
    if (mode != CLIENT_RAW && (job.connect_rc == 0) != ok &&
        !(hold && job.connect_rc == SHMRPC_ETIMEDOUT))
        fail("the client %s a HELLO_ACK that it should %s: %s", ok ? "refused" : "took",
             ok ? "take" : "refuse", shmrpc_strerror(job.connect_rc));
    if (job.connect_ms > job.connect_timeout + LATE_MS || job.call_ms > job.call_timeout + LATE_MS)
        fail("the client took %lld ms to connect (timeout %lld) and %lld ms to call (%lld)",
             (long long)job.connect_ms, (long long)job.connect_timeout, (long long)job.call_ms,
             (long long)job.call_timeout);
}

/* --- the seed corpus -------------------------------------------------------------------- */

static void write_seed(const char *dir, const char *name, enum mode mode, uint8_t param,
                       const shmrpc_buf *rest)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    uint8_t head[2] = {(uint8_t)mode, param};
    if (!f || fwrite(head, 1, 2, f) != 2 || fwrite(rest->data, 1, rest->len, f) != rest->len ||
        fclose(f) != 0)
        fail("cannot write: %s", path);
}

/* Good conversations of each mode, and a few broken ones. */
static void write_seeds(const char *dir)
{
    shmrpc_buf b, big;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&big);
    for (int i = 0; i < 4096; i++) /* compresses well */
        shmrpc_buf_append(&big, &"abcdefg"[i % 7], 1);
    shmrpc_bytes add = shmrpc_bytes_of(add_args, sizeof add_args);
    shmrpc_bytes nap = shmrpc_bytes_of(nap_args, sizeof nap_args);
    shmrpc_bytes echo = shmrpc_bytes_of(echo_arg, strlen(echo_arg));
    shmrpc_bytes none = shmrpc_bytes_of(NULL, 0);
    shmrpc_bytes big_msg = shmrpc_bytes_of(big.data, big.len);
    shmrpc_method_info changed[CALLS_METHODS];
    memcpy(changed, Calls_service_info.methods, sizeof changed);
    changed[CALLS_METHOD_ADD].fingerprint ^= 1;
    shmrpc_service_info mismatch = Calls_service_info, older = Calls_service_info;
    mismatch.methods = changed;
    older.n_methods = CALLS_METHOD_ECHO + 1; /* nap is missing */
    uint8_t nonce[SHMRPC__AUTH_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
    shmrpc__hello h;
    static const uint8_t bad_add[] = {0x91, 0xa1, 'x'}; /* ["x"] */
    static const uint8_t sum[] = {0x2a};                /* 42 */
    static const uint8_t pid[] = {0xcd, 0x04, 0xd2};    /* 1234 */
    /* The parameter of the client's modes that calls each method. */
    enum { M_ADD = 0 << 2, M_ECHO = 1 << 2, M_NAP = 2 << 2 };

    /* The server's side: a whole conversation, then one after the HELLO per compression. */
    shmrpc_buf_clear(&b);
    put_hello(&b, SHMRPC__KIND_HELLO, &Calls_service_info, SHMRPC__FLAG_COMPRESSION, true);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_ADD, 1, add);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_ECHO, 2, echo);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_NAP, 3, nap);
    put_frame(&b, SHMRPC__KIND_PING, 0, 0, 4, none);
    write_seed(dir, "server_conversation", SERVER_RAW, 0, &b);
    b.len = SHMRPC__FRAME_HDR_SIZE + peek_hdr(b.data).body_len; /* the HELLO alone */
    write_seed(dir, "server_hello", SERVER_RAW, 0, &b);
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_ADD, 1, add);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_ECHO, 2, echo);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_NAP, 3, nap);
    put_frame(&b, SHMRPC__KIND_PING, 0, 0, 4, none);
    put_frame(&b, SHMRPC__KIND_PONG, 0, 0, 5, none);
    write_seed(dir, "server_calls", SERVER_AFTER_HELLO, 0, &b);
    shmrpc_buf_clear(&b);
    put_compressed(&b, SHMRPC__KIND_REQUEST, SHMRPC__FLAG_SNAPPY, CALLS_METHOD_ECHO, 1, big_msg);
    write_seed(dir, "server_snappy", SERVER_AFTER_HELLO, SHMRPC__FLAG_SNAPPY, &b);
    shmrpc_buf_clear(&b);
    put_compressed(&b, SHMRPC__KIND_REQUEST, SHMRPC__FLAG_ZLIB, CALLS_METHOD_ECHO, 1, big_msg);
    write_seed(dir, "server_zlib", SERVER_AFTER_HELLO, SHMRPC__FLAG_ZLIB, &b);
    shmrpc_buf_clear(&b);
    h = hello_of(&Calls_service_info, SHMRPC__FLAG_COMPRESSION);
    h.auth = shmrpc_bytes_of(nonce, sizeof nonce);
    put_handshake(&b, SHMRPC__KIND_HELLO, &h, false);
    write_seed(dir, "server_hello_body", SERVER_HELLO_BODY, 0, &b);
    shmrpc_buf_clear(&b);
    h = hello_of(&Calls_service_info, 0);
    h.max_msg = 4; /* echo's result does not fit */
    put_handshake(&b, SHMRPC__KIND_HELLO, &h, true);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_ECHO, 1, echo);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_ADD, 2, add);
    write_seed(dir, "server_small_client", SERVER_RAW, 0, &b);

    /* ... and broken ones. */
    shmrpc_buf_clear(&b);
    put_hello(&b, SHMRPC__KIND_HELLO, &mismatch, 0, true);
    write_seed(dir, "server_mismatch", SERVER_RAW, 0, &b);
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_ADD, 1, add);
    write_seed(dir, "server_before_hello", SERVER_RAW, 0, &b);
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_PING, 0, 0, 1, none);
    put_hello(&b, SHMRPC__KIND_HELLO, &Calls_service_info, 0, true);
    write_seed(dir, "server_ping_first", SERVER_RAW, 0, &b);
    shmrpc_buf_clear(&b);
    shmrpc_buf_append(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    write_seed(dir, "server_http", SERVER_RAW, 0, &b);
    shmrpc_buf_clear(&b);
    put_hello(&b, SHMRPC__KIND_HELLO, &Calls_service_info, 0, true);
    b.data[4] = 2; /* another frame version */
    write_seed(dir, "server_version", SERVER_RAW, 0, &b);
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, 99, 1, add);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_ADD, 2, shmrpc_bytes_of(bad_add, 3));
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_NAP, 3, echo);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_ADD, 4, add);
    write_seed(dir, "server_bad_calls", SERVER_AFTER_HELLO, 0, &b);
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_ECHO, 1, echo);
    b.data[23] = 100; /* a body of 100 bytes, of which 5 come */
    write_seed(dir, "server_truncated", SERVER_AFTER_HELLO, 0, &b);
    shmrpc_buf_clear(&b);
    put_hello(&b, SHMRPC__KIND_HELLO, &Calls_service_info, 0, true);
    write_seed(dir, "server_second_hello", SERVER_AFTER_HELLO, 0, &b);
    shmrpc_buf_clear(&b);
    put_error(&b, 0, 0, SHMRPC_ECLOSED, "bye");
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_ADD, 1, add);
    write_seed(dir, "server_goodbye", SERVER_AFTER_HELLO, 0, &b);
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_AUTH, 0, 0, 0, shmrpc_bytes_of(nonce, sizeof nonce));
    put_frame(&b, SHMRPC__KIND_REQUEST, 0, CALLS_METHOD_ADD, 1, add);
    write_seed(dir, "server_auth", SERVER_AFTER_HELLO, 0, &b);

    /* The client's side: answers to its HELLO. */
    shmrpc_buf_clear(&b);
    put_hello(&b, SHMRPC__KIND_HELLO_ACK, &Calls_service_info, SHMRPC__FLAG_SNAPPY, true);
    write_seed(dir, "client_ack", CLIENT_RAW, 0, &b);
    shmrpc_buf_clear(&b);
    put_error(&b, 0, 0, SHMRPC_EMISMATCH,
              "method table differs from the server's: 'reset' is missing on the server");
    write_seed(dir, "client_refused", CLIENT_RAW, 0, &b);
    shmrpc_buf_clear(&b);
    put_hello(&b, SHMRPC__KIND_HELLO_ACK, &Calls_service_info, SHMRPC__FLAG_ZLIB, false);
    write_seed(dir, "client_ack_body", CLIENT_ACK_BODY, 0, &b);
    shmrpc_buf_clear(&b);
    h = hello_of(&Calls_service_info, 0);
    h.auth = shmrpc_bytes_of(nonce, sizeof nonce);
    put_handshake(&b, SHMRPC__KIND_HELLO_ACK, &h, false);
    write_seed(dir, "client_challenge", CLIENT_ACK_BODY, 0, &b);
    shmrpc_buf_clear(&b);
    put_hello(&b, SHMRPC__KIND_HELLO_ACK, &older, 0, false);
    write_seed(dir, "client_older_server", CLIENT_ACK_BODY, 0, &b);
    shmrpc_buf_clear(&b);
    h = hello_of(&Calls_service_info, SHMRPC__FLAG_SNAPPY);
    h.threshold = 1; /* every call is compressed */
    put_handshake(&b, SHMRPC__KIND_HELLO_ACK, &h, false);
    write_seed(dir, "client_low_threshold", CLIENT_ACK_BODY, M_ECHO, &b);
    shmrpc_buf_clear(&b);
    h = hello_of(&Calls_service_info, 0);
    h.max_msg = 2; /* add's arguments do not fit */
    put_handshake(&b, SHMRPC__KIND_HELLO_ACK, &h, false);
    write_seed(dir, "client_small_server", CLIENT_ACK_BODY, M_ADD, &b);

    /* ... and to its call, after a good HELLO_ACK. */
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_RESPONSE, 0, CALLS_METHOD_ADD, CALL_RID, shmrpc_bytes_of(sum, 1));
    write_seed(dir, "client_add", CLIENT_AFTER_ACK, M_ADD, &b);
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_RESPONSE, 0, CALLS_METHOD_ECHO, CALL_RID, echo);
    write_seed(dir, "client_echo", CLIENT_AFTER_ACK, M_ECHO, &b);
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_RESPONSE, 0, CALLS_METHOD_NAP, CALL_RID, shmrpc_bytes_of(pid, 3));
    write_seed(dir, "client_nap", CLIENT_AFTER_ACK, M_NAP, &b);
    shmrpc_buf_clear(&b);
    put_compressed(&b, SHMRPC__KIND_RESPONSE, SHMRPC__FLAG_SNAPPY, CALLS_METHOD_ECHO, CALL_RID,
                   big_msg);
    write_seed(dir, "client_echo_snappy", CLIENT_AFTER_ACK, M_ECHO | SHMRPC__FLAG_SNAPPY, &b);
    shmrpc_buf_clear(&b);
    put_compressed(&b, SHMRPC__KIND_RESPONSE, SHMRPC__FLAG_ZLIB, CALLS_METHOD_ECHO, CALL_RID,
                   big_msg);
    write_seed(dir, "client_echo_zlib", CLIENT_AFTER_ACK, M_ECHO | SHMRPC__FLAG_ZLIB, &b);
    shmrpc_buf_clear(&b);
    put_error(&b, CALLS_METHOD_ADD, CALL_RID, SHMRPC_EHANDLER, "add: overflow");
    write_seed(dir, "client_call_fails", CLIENT_AFTER_ACK, M_ADD, &b);
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_PING, 0, 0, 9, none);
    put_frame(&b, SHMRPC__KIND_RESPONSE, 0, CALLS_METHOD_ADD, 0, shmrpc_bytes_of(sum, 1));
    put_frame(&b, SHMRPC__KIND_RESPONSE, 0, CALLS_METHOD_ADD, CALL_RID, shmrpc_bytes_of(sum, 1));
    write_seed(dir, "client_ping_late_answer", CLIENT_AFTER_ACK, M_ADD, &b);
    shmrpc_buf_clear(&b);
    put_error(&b, 0, 0, SHMRPC_ETIMEDOUT, "idle timeout");
    write_seed(dir, "client_closed", CLIENT_AFTER_ACK, M_ADD, &b);
    shmrpc_buf_clear(&b);
    put_frame(&b, SHMRPC__KIND_RESPONSE, 0, CALLS_METHOD_ADD, CALL_RID + 1,
              shmrpc_bytes_of(sum, 1));
    write_seed(dir, "client_out_of_turn", CLIENT_AFTER_ACK, M_ADD, &b);

    /* ... and held open: the client gives up by its timeout. */
    shmrpc_buf_clear(&b);
    write_seed(dir, "client_held_no_answer", CLIENT_AFTER_ACK, M_ADD | PARAM_HOLD, &b);
    put_frame(&b, SHMRPC__KIND_RESPONSE, 0, CALLS_METHOD_ECHO, CALL_RID, echo);
    b.len -= 2;
    write_seed(dir, "client_held_half_answer", CLIENT_AFTER_ACK, M_ECHO | PARAM_HOLD, &b);
    shmrpc_buf_clear(&b);
    put_hello(&b, SHMRPC__KIND_HELLO_ACK, &Calls_service_info, 0, true);
    b.len -= 10;
    write_seed(dir, "client_held_half_ack", CLIENT_RAW, PARAM_HOLD, &b);
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&big);
}

/* --- libFuzzer --------------------------------------------------------------------------- */

static void teardown(void)
{
    stop_fake();
    stop_server();
    shmrpc_arena_free(arena);
    shmrpc_buf_destroy(&err);
    shmrpc_buf_destroy(&scratch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    shmrpc_buf_init(&err);
    shmrpc_buf_init(&scratch);
    const char *seeds = getenv("SHMRPC_FUZZ_WRITE_SEEDS");
    if (seeds) {
        write_seeds(seeds);
        exit(0);
    }
    arena = shmrpc_arena_new(0);
    if (!arena) fail("out of memory");
    start_server();
    start_fake();
    atexit(teardown);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    enum mode mode = data[0] % N_MODES;
    shmrpc_bytes rest = shmrpc_bytes_of(data + 2, size - 2);
    if (mode <= SERVER_HELLO_BODY)
        fuzz_server(mode, data[1], rest);
    else
        fuzz_client(mode, data[1], rest);
    return 0;
}
