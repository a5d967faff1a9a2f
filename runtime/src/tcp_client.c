/* SPDX-License-Identifier: MIT */
/* The TCP transport's client side: blocking-style calls over a non-blocking socket, every
 * wait bounded by one deadline; a broken connection is made again before a later call,
 * never to resend the one that failed. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "tcp_int.h"
#include "tls.h"
#include "wait.h"

typedef struct tcp_conn {
    shmrpc__conn base;
    char where[ADDR_MAX];
    struct sockaddr_storage addr;
    socklen_t addr_len;
    const shmrpc_service_info *info;
    const shmrpc__client_cfg *cfg;
    uint32_t *map;        /* the client's, refilled on every reconnect */
    shmrpc__table *table; /* the server's, likewise */
    pid_t pid;            /* the process that opened it */
    int fd;               /* -1 while broken */
    shmrpc__io io;        /* fd's bytes, plain or TLS */
    shmrpc__tls *tls;     /* the TLS settings, or NULL: plain */
    uint16_t comp;
    uint32_t threshold, peer_max;
    uint64_t next_id;    /* the last request's id */
    uint64_t answered;   /* the last request whose answer was read (or that failed) */
    int64_t answered_ns; /* when */
    int64_t rcvtimeo_ms; /* the socket's SO_RCVTIMEO: 0 none, -1 not set yet */
    int64_t retry_ns, backoff_ns;
    shmrpc_buf out, in; /* in: frames read, the one in hand first */
    size_t used;        /* bytes of the frame in hand at the front of in, or 0 */
    shmrpc_arena *arena;
} tcp_conn;

/* Waits for events on fd until deadline (INT64_MAX: none); EINTR resumes with the time
 * that is left. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int ms = -1;
        if (deadline != INT64_MAX) {
            int64_t left = deadline - shmrpc__now_ns();
            if (left <= 0) return SHMRPC_ETIMEDOUT;
            ms = (int)((left + NS_PER_MS - 1) / NS_PER_MS);
            if (left > (int64_t)INT32_MAX * NS_PER_MS) ms = INT32_MAX;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, ms);
        if (n > 0) return 0;
        if (n < 0 && errno != EINTR) return SHMRPC_ESYS(errno);
    }
}

/* Lets go of a broken connection, and of what was read from it. */
static void conn_break(tcp_conn *c)
{
    if (c->fd >= 0) shmrpc__io_close(&c->io, true);
    c->fd = -1;
    shmrpc_buf_clear(&c->in);
    c->used = 0;
}

static int broken(tcp_conn *c, shmrpc_buf *err, const char *what)
{
    int e = errno;
    if (c->io.failed) { /* TLS failed: OpenSSL says why (a certificate refused, say) */
        int rc = shmrpc__io_error(&c->io, c->where, err);
        conn_break(c);
        return rc;
    }
    conn_break(c);
    shmrpc__msg_set(err, "the connection to tcp://%s broke %s", c->where, what);
    if (e) shmrpc__msg_append(err, ": %s", strerror(e));
    return SHMRPC_EUNAVAIL;
}

static int send_all(tcp_conn *c, const uint8_t *p, size_t n, int64_t deadline, shmrpc_buf *err)
{
    while (n) {
        ssize_t k = shmrpc__io_send(&c->io, p, n);
        if (k > 0) {
            p += k, n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(c->fd, POLLOUT, deadline);
            if (rc == SHMRPC_ETIMEDOUT) { /* half a frame sent: the stream is unusable */
                conn_break(c);
                shmrpc__msg_set(err, "the deadline passed while sending to tcp://%s", c->where);
                return rc;
            }
            if (rc) return broken(c, err, "while sending");
            continue;
        }
        return broken(c, err, "while sending");
    }
    return 0;
}

/* Waits for the server, then reads at least min more bytes into c->in (and what else
 * has come, up to READ_AHEAD more). */
/* How early a blocking recv's timeout must end so that it ends before the deadline: the
 * kernel ends an SO_RCVTIMEO wait on its timer wheel, which rounds a timeout up to the
 * granularity of the wheel's level that holds it, up to an eighth of it (measured: a 1 s
 * recv returned up to 32 ms late), and a short one by up to a tick (10 ms at HZ 100). */
static int64_t rcvtimeo_early_ns(int64_t left)
{
    return left / 8 + 10 * NS_PER_MS;
}

/* Bounds the next blocking recv by what is left until deadline, less what the kernel may
 * add (rcvtimeo_early_ns), in whole milliseconds; false when too little is left for that:
 * then poll, whose timer is exact, waits for the rest. Calls with one timeout come to the
 * same value, so the socket option is set once rather than per call. */
static bool recv_timeout(tcp_conn *c, int64_t deadline)
{
    int64_t ms = 0;
    if (deadline != INT64_MAX) {
        int64_t left = deadline - shmrpc__now_ns();
        ms = (left - rcvtimeo_early_ns(left)) / NS_PER_MS;
        if (ms < 1) return false;
    }
    if (ms == c->rcvtimeo_ms) return true;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) return false;
    c->rcvtimeo_ms = ms;
    return true;
}

/* Reads at least min more bytes into c->in (and what else has come, up to READ_AHEAD
 * more) with blocking recv calls, each bounded by what is left of the deadline: one
 * system call for an answer that fits, where poll and recv would be two. Once a recv's
 * timeout has ended (early, see recv_timeout), poll waits exactly for what is left. */
static int fill(tcp_conn *c, size_t min, int64_t deadline, shmrpc_buf *err)
{
    size_t room = min + READ_AHEAD;
    if (shmrpc__buf_grow(&c->in, room)) return c->in.err;
    size_t want = c->in.len + min;
    bool exact = false;
    while (c->in.len < want) {
        if (deadline != INT64_MAX && shmrpc__now_ns() >= deadline) {
            shmrpc__msg_set(err, "the deadline passed waiting for tcp://%s", c->where);
            return SHMRPC_ETIMEDOUT;
        }
        int flags = 0;
        if (exact || !recv_timeout(c, deadline)) {
            flags = MSG_DONTWAIT; /* TLS may read more than poll saw */
            /* TLS may hold what came already, where poll does not see it. */
            int rc = shmrpc__io_pending(&c->io) ? 0 : wait_fd(c->fd, POLLIN, deadline);
            if (rc == SHMRPC_ETIMEDOUT) continue; /* said above */
            if (rc) return broken(c, err, "while receiving");
        }
        ssize_t k = shmrpc__io_recv(&c->io, c->in.data + c->in.len, c->in.cap - c->in.len, flags);
        if (k > 0) {
            c->in.len += (size_t)k;
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) exact = true;
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k == 0) errno = 0;
        return broken(c, err, k == 0 ? "(the server closed it)" : "while receiving");
    }
    return 0;
}

/* Drops the last frame read from the front of c->in, keeping what came after it. */
static void consume(tcp_conn *c)
{
    size_t left = c->in.len - c->used;
    if (left) memmove(c->in.data, c->in.data + c->used, left);
    c->in.len = left;
    c->used = 0;
    if (!left && c->in.cap > ((size_t)1 << 20)) {
        shmrpc_buf_destroy(&c->in);
        shmrpc_buf_init(&c->in);
    }
}

/* Reads one frame to the front of c->in. A timeout before any of its bytes came leaves
 * the stream usable (a late answer is skipped when it comes); later, it does not. */
static int read_frame(tcp_conn *c, uint32_t max_body, shmrpc__frame_hdr *h, int64_t deadline,
                      shmrpc_buf *err)
{
    consume(c);
    int rc = 0;
    if (c->in.len < SHMRPC__FRAME_HDR_SIZE)
        rc = fill(c, SHMRPC__FRAME_HDR_SIZE - c->in.len, deadline, err);
    if (rc == SHMRPC_ETIMEDOUT && c->in.len) conn_break(c);
    if (rc) return rc;
    rc = shmrpc__frame_hdr_decode(c->in.data, SHMRPC__FRAME_HDR_SIZE, max_body, c->comp, h, err);
    if (rc) {
        conn_break(c);
        return rc;
    }
    size_t need = SHMRPC__FRAME_HDR_SIZE + (size_t)h->body_len;
    if (c->in.len < need) rc = fill(c, need - c->in.len, deadline, err);
    if (rc == SHMRPC_ETIMEDOUT) conn_break(c);
    if (rc == 0) c->used = need;
    return rc;
}

static shmrpc_bytes frame_body(const tcp_conn *c)
{
    return shmrpc_bytes_of(c->in.data + SHMRPC__FRAME_HDR_SIZE, c->used - SHMRPC__FRAME_HDR_SIZE);
}

/* An ERROR frame's status, its message into err. */
static int error_frame(tcp_conn *c, shmrpc_buf *err)
{
    int status;
    shmrpc_str msg;
    int rc = shmrpc__error_parse(frame_body(c), &status, &msg, err);
    if (rc) return rc;
    /* Only statuses of status.h pass: a peer does not choose what our calls return. */
    if (!shmrpc__status_known(status)) {
        shmrpc__msg_set(err, "tcp://%s sent an ERROR frame with the unknown status %d: %.*s",
                        c->where, status, (int)msg.len, msg.ptr);
        return SHMRPC_EPROTO;
    }
    shmrpc__msg_set(err, "%.*s", (int)msg.len, msg.ptr);
    return status;
}

static int connect_socket(tcp_conn *c, int64_t deadline, shmrpc_buf *err)
{
    int fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return shmrpc__tcp_sys_error(err, errno, "cannot open a socket for", c->where);
    c->fd = fd;
    shmrpc__io_init(&c->io, fd);
    c->rcvtimeo_ms = -1;
    shmrpc__tcp_set_nodelay(fd);
    if (connect(fd, (const struct sockaddr *)&c->addr, c->addr_len) == 0) goto connected;
    if (errno != EINPROGRESS && errno != EINTR) goto failed;
    int rc = wait_fd(fd, POLLOUT, deadline);
    if (rc == SHMRPC_ETIMEDOUT) {
        conn_break(c);
        shmrpc__msg_set(err, "connecting to tcp://%s timed out", c->where);
        return rc;
    }
    int e = 0;
    socklen_t el = sizeof e;
    if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0) goto connected;
    errno = e ? e : errno;
failed:
    shmrpc__msg_set(err, "no server at tcp://%s: %s", c->where, strerror(errno));
    conn_break(c);
    return SHMRPC_EUNAVAIL;
connected: /* from now on receives block (see fill) and sends do not (MSG_DONTWAIT) */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return 0;
}

/* TLS's handshake over the connected socket, within deadline. The server's certificate
 * is checked here; whether it accepts ours, a TLS 1.3 client learns at its first read
 * (broken() then says why). */
static int tls_handshake(tcp_conn *c, int64_t deadline, shmrpc_buf *err)
{
    int rc = shmrpc__io_tls(&c->io, c->tls);
    while (rc == 0) {
        int step = shmrpc__io_handshake(&c->io);
        if (step == 0) return 0;
        if (step < 0) return shmrpc__io_error(&c->io, c->where, err);
        rc = wait_fd(c->fd, step == 1 ? POLLIN : POLLOUT, deadline);
        if (rc == SHMRPC_ETIMEDOUT)
            shmrpc__msg_set(err, "the TLS handshake with tcp://%s did not end in time", c->where);
        else if (rc)
            shmrpc__msg_set(err, "the TLS handshake with tcp://%s broke: %s", c->where,
                            shmrpc_strerror(rc));
    }
    return rc;
}

/* With a shared secret: sends the client's proof and checks the server's. hello and ack
 * are the handshake's bodies as they went over the wire. */
static int authenticate(tcp_conn *c, shmrpc_bytes hello, shmrpc_bytes ack, int64_t deadline,
                        shmrpc_buf *err)
{
    uint8_t proof[2][SHMRPC__AUTH_LEN];
    shmrpc__auth_proofs(&c->cfg->tcp, hello, ack, proof[0], proof[1]);
    uint8_t frame[SHMRPC__FRAME_HDR_SIZE + SHMRPC__AUTH_LEN];
    shmrpc__frame_hdr h = {.kind = SHMRPC__KIND_AUTH, .body_len = SHMRPC__AUTH_LEN};
    shmrpc__frame_hdr_encode(&h, frame);
    memcpy(frame + SHMRPC__FRAME_HDR_SIZE, proof[0], SHMRPC__AUTH_LEN);
    int rc = send_all(c, frame, sizeof frame, deadline, err);
    if (rc == 0) rc = read_frame(c, SHMRPC__WIRE_MAX_HELLO, &h, deadline, err);
    if (rc == 0 && h.kind == SHMRPC__KIND_ERROR) {
        rc = error_frame(c, err);
    } else if (rc == 0 && h.kind != SHMRPC__KIND_AUTH) {
        shmrpc__msg_set(err, "tcp://%s answered the AUTH with a %s frame", c->where,
                        shmrpc__frame_kind_name(h.kind));
        rc = SHMRPC_EPROTO;
    } else if (rc == 0 && !shmrpc__auth_equal(frame_body(c).ptr, proof[1])) {
        shmrpc__msg_set(err, "tcp://%s does not hold the same shared secret (its proof is wrong)",
                        c->where);
        rc = SHMRPC_EPERM;
    }
    shmrpc__auth_wipe(proof, sizeof proof);
    return rc;
}

/* Sends the HELLO and checks the HELLO_ACK; with a shared secret, both sides then prove
 * they hold it. Only then are the server's methods mapped (c->map) and its table kept. */
static int handshake(tcp_conn *c, int64_t deadline, shmrpc_buf *err)
{
    const shmrpc__tcp_cfg *cfg = &c->cfg->tcp;
    uint8_t nonce[SHMRPC__AUTH_LEN];
    /* Over loopback, copying is faster than any compressor (bench: tcp/text-snappy): by
     * default a client offers compression to other hosts only. */
    bool local = cfg->compression_auto && shmrpc__tcp_is_loopback(&c->addr);
    shmrpc__hello hello = {.proto = SHMRPC__WIRE_PROTO,
                           .info = *c->info,
                           .compression = local ? 0 : cfg->compression,
                           .threshold = cfg->threshold,
                           .max_msg = shmrpc__tcp_cap32(c->cfg->max_msg)};
    if (cfg->secret_len) {
        int rc = shmrpc__auth_nonce(nonce);
        if (rc) return rc;
        hello.auth = shmrpc_bytes_of(nonce, sizeof nonce);
    }
    shmrpc_buf_clear(&c->out);
    size_t at = shmrpc__frame_begin(&c->out, SHMRPC__KIND_HELLO, 0, 0, 0);
    int rc = shmrpc__hello_write(&c->out, SHMRPC__KIND_HELLO, &hello, err);
    if (rc == 0) rc = shmrpc__frame_end(&c->out, at);
    if (rc == 0) rc = send_all(c, c->out.data, c->out.len, deadline, err);
    shmrpc__frame_hdr h;
    if (rc == 0) rc = read_frame(c, SHMRPC__WIRE_MAX_HELLO, &h, deadline, err);
    if (rc) return rc;
    if (h.kind == SHMRPC__KIND_ERROR) return error_frame(c, err);
    if (h.kind != SHMRPC__KIND_HELLO_ACK) {
        shmrpc__msg_set(err, "tcp://%s answered the HELLO with a %s frame", c->where,
                        shmrpc__frame_kind_name(h.kind));
        return SHMRPC_EPROTO;
    }
    shmrpc__hello ack;
    shmrpc_arena_reset(c->arena);
    rc = shmrpc__hello_parse(frame_body(c), SHMRPC__KIND_HELLO_ACK, c->arena, &ack, err);
    if (rc == 0) rc = shmrpc__hello_accept(&hello, &ack, err);
    if (rc == 0 && ack.auth.len && !cfg->secret_len) {
        shmrpc__msg_set(err,
                        "tcp://%s requires a shared secret, and this client has none "
                        "(shmrpc_tcp_opts.secret)",
                        c->where);
        rc = SHMRPC_EPERM;
    } else if (rc == 0 && cfg->secret_len && ack.auth.len != SHMRPC__AUTH_LEN) {
        shmrpc__msg_set(err,
                        "tcp://%s does not ask for the shared secret: it may not be the "
                        "server this client is meant for",
                        c->where);
        rc = SHMRPC_EPERM;
    }
    if (rc == 0 && cfg->secret_len) {
        shmrpc_bytes sent = shmrpc_bytes_of(c->out.data + SHMRPC__FRAME_HDR_SIZE,
                                            c->out.len - SHMRPC__FRAME_HDR_SIZE);
        rc = authenticate(c, sent, frame_body(c), deadline, err);
    }
    if (rc == 0) rc = shmrpc__table_accept(c->info, &ack.info, c->map, c->table, err);
    if (rc == 0) {
        c->comp = ack.compression;
        c->threshold = ack.threshold;
        c->peer_max = ack.max_msg;
    }
    shmrpc_arena_reset(c->arena);
    return rc;
}

static int attach(tcp_conn *c, int64_t deadline, shmrpc_buf *err)
{
    int64_t limit = shmrpc__now_ns() + c->cfg->tcp.connect_ns;
    if (deadline > limit) deadline = limit;
    c->comp = 0;
    int rc = connect_socket(c, deadline, err);
    if (rc == 0 && c->tls) rc = tls_handshake(c, deadline, err);
    if (rc == 0) rc = handshake(c, deadline, err);
    if (rc) conn_break(c);
    return rc;
}

/* After the connection broke, a later call connects again (never the failed call: it is
 * not sent twice), no more often than a jittered backoff that doubles up to a second. */
static int reconnect(tcp_conn *c, int64_t deadline, shmrpc_buf *err)
{
    int64_t now = shmrpc__now_ns();
    if (now < c->retry_ns) {
        shmrpc__msg_set(err, "the connection to tcp://%s broke; trying again shortly", c->where);
        return SHMRPC_EUNAVAIL;
    }
    int rc = attach(c, deadline, err);
    if (rc == 0) {
        c->backoff_ns = 0;
        return 0;
    }
    c->backoff_ns = c->backoff_ns ? c->backoff_ns * 2 : 10 * NS_PER_MS;
    if (c->backoff_ns > NS_PER_S) c->backoff_ns = NS_PER_S;
    c->retry_ns = now + c->backoff_ns / 2 + (int64_t)((uint64_t)now % (uint64_t)c->backoff_ns);
    return rc;
}

static int send_request(tcp_conn *c, uint32_t sid, uint64_t id, shmrpc_bytes req, int64_t deadline,
                        shmrpc_buf *err)
{
    if (req.len > c->peer_max) {
        shmrpc__msg_set(err, "a request of %zu bytes is above the server's maximum of %" PRIu32,
                        req.len, c->peer_max);
        return SHMRPC_ETOOBIG;
    }
    shmrpc_buf_clear(&c->out);
    int rc = shmrpc__tcp_put_msg_frame(&c->out, SHMRPC__KIND_REQUEST, sid, id, req, c->comp,
                                       c->threshold);
    if (rc) {
        shmrpc__msg_set(err, "cannot frame the request: %s", shmrpc_strerror(rc));
        return rc;
    }
    rc = send_all(c, c->out.data, c->out.len, deadline, err);
    if (c->out.cap > ((size_t)1 << 20)) {
        shmrpc_buf_destroy(&c->out);
        shmrpc_buf_init(&c->out);
    }
    return rc;
}

/* Reads frames until the answer to request id of method sid: the result into resp. */
static int await_answer(tcp_conn *c, uint32_t sid, uint64_t id, shmrpc_buf *resp, int64_t deadline,
                        shmrpc_buf *err)
{
    uint32_t max = shmrpc__tcp_cap32(resp->max ? resp->max : SHMRPC_DEFAULT_MAX_MSG);
    for (;;) {
        shmrpc__frame_hdr h;
        int rc = read_frame(c, max, &h, deadline, err);
        if (rc) return rc;
        if (h.kind == SHMRPC__KIND_PING) {
            uint8_t pong[SHMRPC__FRAME_HDR_SIZE];
            shmrpc__frame_hdr p = {.kind = SHMRPC__KIND_PONG, .request_id = h.request_id};
            shmrpc__frame_hdr_encode(&p, pong);
            rc = send_all(c, pong, sizeof pong, deadline, err);
            if (rc) return rc;
            continue;
        }
        if (h.kind == SHMRPC__KIND_PONG) continue;
        if (h.kind == SHMRPC__KIND_ERROR && h.request_id == 0) { /* the server leaves */
            rc = error_frame(c, err);
            conn_break(c);
            if (rc == SHMRPC_ETIMEDOUT) { /* its timeout, not the call's deadline */
                char why[160];
                snprintf(why, sizeof why, "%s", shmrpc__msg_get(err));
                shmrpc__msg_set(err, "tcp://%s closed the connection: %s", c->where, why);
                rc = SHMRPC_EUNAVAIL;
            }
            return rc;
        }
        bool answer = h.kind == SHMRPC__KIND_RESPONSE || h.kind == SHMRPC__KIND_ERROR;
        if (answer && h.request_id < id) continue; /* a call that timed out earlier */
        if (!answer || h.request_id != id || h.method != sid) {
            conn_break(c);
            shmrpc__msg_set(err,
                            "tcp://%s sent a %s frame for request %" PRIu64 " of method %" PRIu32
                            " out of turn",
                            c->where, shmrpc__frame_kind_name(h.kind), h.request_id, h.method);
            return SHMRPC_EPROTO;
        }
        if (h.kind == SHMRPC__KIND_ERROR) return error_frame(c, err);
        uint16_t comp = h.flags & SHMRPC__FLAG_COMPRESSION;
        if (comp) {
            rc = shmrpc__body_decompress(comp, frame_body(c), max, resp, err);
            if (rc) conn_break(c);
            return rc;
        }
        shmrpc_bytes body = frame_body(c);
        return shmrpc_buf_append(resp, body.ptr, body.len);
    }
}

/* Between calls with no answer outstanding the server has nothing to say: anything
 * readable is its close (an idle timeout, a restart), so a new connection is made before
 * the request is sent rather than failing a call the server never saw. Calls that follow
 * an answer within a millisecond skip the look (a system call): a server that closed in
 * that millisecond fails the call with SHMRPC_EUNAVAIL, which is never resent. */
#define SERVER_LEFT_AFTER_NS NS_PER_MS

static bool server_left(const tcp_conn *c, int64_t now)
{
    if (now - c->answered_ns < SERVER_LEFT_AFTER_NS) return false;
    if (shmrpc__io_pending(&c->io)) return true;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}

static int tcp_call(shmrpc__conn *base, uint32_t sid, shmrpc_bytes req, shmrpc_buf *resp,
                    int64_t timeout_ms, shmrpc_buf *err)
{
    tcp_conn *c = (tcp_conn *)base;
    if (getpid() != c->pid) {
        shmrpc__msg_set(err, "this connection belongs to process %d", (int)c->pid);
        return SHMRPC_EINVAL;
    }
    int64_t now = shmrpc__now_ns();
    bool forever = timeout_ms < 0 || timeout_ms > (INT64_MAX - now) / NS_PER_MS;
    int64_t deadline = forever ? INT64_MAX : now + timeout_ms * NS_PER_MS;
    if (c->fd >= 0 && c->answered == c->next_id && server_left(c, now)) conn_break(c);
    int rc = c->fd < 0 ? reconnect(c, deadline, err) : 0;
    uint64_t id = ++c->next_id;
    if (rc == 0) rc = send_request(c, sid, id, req, deadline, err);
    if (rc == 0) rc = await_answer(c, sid, id, resp, deadline, err);
    if (rc != SHMRPC_ETIMEDOUT) {
        c->answered = id;
        c->answered_ns = shmrpc__now_ns();
    }
    consume(c);
    return rc;
}

static void tcp_conn_close(shmrpc__conn *base)
{
    tcp_conn *c = (tcp_conn *)base;
    if (c->pid == getpid())
        conn_break(c);
    else if (c->fd >= 0) /* the parent's socket stays open (and its TLS unclosed) there */
        shmrpc__io_close(&c->io, false);
    shmrpc__tls_free(c->tls);
    shmrpc_buf_destroy(&c->out);
    shmrpc_buf_destroy(&c->in);
    shmrpc_arena_free(c->arena);
    free(c);
}

static const shmrpc__conn_ops tcp_conn_ops = {.call = tcp_call, .close = tcp_conn_close};

int shmrpc__tcp_connect(const char *where, const shmrpc_service_info *info,
                        const shmrpc__client_cfg *cfg, uint32_t *map, shmrpc__table *table,
                        shmrpc__conn **out, shmrpc_buf *err)
{
    tcp_conn *c = calloc(1, sizeof *c);
    if (!c) return SHMRPC_ENOMEM;
    c->base.ops = &tcp_conn_ops;
    c->fd = -1;
    c->pid = getpid();
    c->info = info;
    c->cfg = cfg;
    c->map = map;
    c->table = table;
    shmrpc_buf_init(&c->out);
    shmrpc_buf_init(&c->in);
    c->arena = shmrpc_arena_new(0);
    int rc = c->arena ? shmrpc__tcp_parse_addr(where, &c->addr, &c->addr_len, err) : SHMRPC_ENOMEM;
    if (rc == 0) {
        snprintf(c->where, sizeof c->where, "%s", where);
        if (cfg->tcp.tls)
            rc = shmrpc__tls_client_new(&cfg->tcp, where, shmrpc__tcp_is_loopback(&c->addr),
                                        &c->tls, err);
    }
    if (rc == 0) {
        shmrpc_arena_set_limit(c->arena, (size_t)SHMRPC__WIRE_MAX_HELLO * 8);
        rc = attach(c, INT64_MAX, err);
    }
    if (rc) {
        tcp_conn_close(&c->base);
        return rc;
    }
    *out = &c->base;
    return 0;
}
