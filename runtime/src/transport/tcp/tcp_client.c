/* SPDX-License-Identifier: MIT */
/* The TCP transport's client side: blocking-style calls over a non-blocking socket, every
 * wait bounded by one deadline, and asynchronous calls (start, progress), many in flight
 * on one connection and matched to their answers by request id. An address may list endpoints (and
 * DNS names with several addresses): a call goes to the least loaded one that is not left out, and
 * to another only when it never started where it went; a call that may have run is never resent. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "transport/tcp/auth.h"
#include "transport/tcp/tcp_int.h"
#include "transport/tcp/tls.h"
#include "core/proc.h"
#include "core/wait.h"

/* One endpoint of a client's address, and its connection (opened when a call first goes
 * there). */
typedef struct tcp_conn {
    char where[ADDR_MAX];
    struct sockaddr_storage addr;
    socklen_t addr_len;
    const shmrpc_service_info *info;
    const shmrpc__client_cfg *cfg;
    uint32_t *map;        /* this endpoint's: client method id -> its server's id */
    shmrpc__table *table; /* its server's table (own_table), refilled on every reconnect */
    pid_t pid;            /* the process that opened it */
    int fd;               /* -1 while broken */
    shmrpc__io io;        /* fd's bytes, plain or TLS */
    shmrpc__tls *tls;     /* the TLS settings, or NULL: plain */
    uint16_t comp;
    uint32_t threshold, peer_max;
    uint32_t proto;   /* the revision agreed (3: a blocking call says it is alone) */
    uint64_t next_id; /* the last request's id */
    /* Requests written whole on this connection whose answers have not been read: the calls
     * in flight, and those that gave up on theirs (a deadline passed, an asynchronous call
     * freed), which may still come, in any order. While one is owed, what the server sends
     * may be it: no look for the server's close (server_left), and no lone flag. */
    uint32_t owed;
    /* Bytes still to come of the answer of a call no longer in flight, skipped while a
     * request went out (meanwhile_check): read and let go before the next frame, and owed
     * until then. The bytes in c->in all came before it. */
    size_t skip;
    int64_t answered_ns; /* when an answer was last read */
    int64_t rcvtimeo_ms; /* the socket's SO_RCVTIMEO: 0 none, -1 not set yet */
    shmrpc_buf out, in;  /* in: frames read, the one in hand first */
    size_t used;         /* bytes of the frame in hand at the front of in, or 0 */
    shmrpc_arena *arena;
    /* Its place among the client's endpoints (tcp_pool): */
    shmrpc__table own_table;
    int entry;       /* the list entry it was resolved from */
    bool seen;       /* found again by the latest resolution */
    int outstanding; /* calls in flight on it */
    int fails;       /* failures in a row: its backoff */
    /* Left out of the choice (it refused, failed or stalled) until a probe of it ends its
     * handshake, or until an answer comes on its connection; the probe starts at
     * eject_until (tend). */
    bool suspect;
    int64_t eject_until;
    bool drained;  /* the last call read a DRAIN: its server takes no new call */
    bool left;     /* the last call read an ERROR that closes the connection */
    char why[200]; /* why it was last left out */
    /* A connection being made (docs/wire.md, "Endpoint lists"): its step, DIAL_NONE once
     * made (fd >= 0) or when there is none (fd < 0). A call's attempt (race) lives within
     * the call; a probe (the endpoint is suspect) in the background, stepped by the calls
     * that follow (tend) and waited for by none unless every endpoint is left out. */
    int dial;
    bool probe;
    bool heard;           /* the server's process answered it (a HELLO_ACK, TLS's flight) */
    short dial_events;    /* what its socket waits for */
    int64_t dial_start;   /* when it began */
    int64_t dial_end;     /* when it gives up: connect_timeout_ms after it began */
    int64_t dial_patient; /* until then the next endpoint's attempt waits for it (race) */
    size_t sent;          /* bytes of out (a HELLO, an AUTH) sent */
    uint8_t nonce[SHMRPC__AUTH_LEN]; /* the HELLO's, with a secret */
    uint8_t proof[SHMRPC__AUTH_LEN]; /* the server's proof expected (DIAL_AUTH) */
    shmrpc__hello ack;               /* the server's HELLO_ACK, its table in arena */
    /* Asynchronous calls whose requests went out whole on this connection (newest first). */
    shmrpc__pending *inflight;
    int n_inflight;
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

/* The steps of a connection being made (tcp_conn.dial). */
enum { DIAL_NONE, DIAL_TCP, DIAL_TLS, DIAL_HELLO, DIAL_AUTH };

static bool connected(const tcp_conn *c)
{
    return c->fd >= 0 && c->dial == DIAL_NONE;
}

/* Lets go of a broken connection, or one being made, and of what was read from it: the
 * next owes nothing. */
static void conn_break(tcp_conn *c)
{
    if (c->fd >= 0) shmrpc__io_close(&c->io, true);
    c->fd = -1;
    if (c->dial == DIAL_AUTH) shmrpc__auth_wipe(c->proof, sizeof c->proof);
    c->dial = DIAL_NONE;
    c->probe = false;
    shmrpc_buf_clear(&c->in);
    c->used = 0;
    c->owed = 0;
    c->skip = 0;
}

/* The answer of one of c's requests was read (an answer sent twice, which a server should
 * not, can only end what is owed early: then a late answer is taken for a close, and the
 * connection made again). */
static void answer_read(tcp_conn *c)
{
    if (c->owed) c->owed--;
    c->answered_ns = shmrpc__now_ns();
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

/* The largest frame body a connection with calls in flight reads: the client's maximum. */
static uint32_t max_body(const tcp_conn *c)
{
    return shmrpc__tcp_cap32(c->cfg->max_msg);
}

/* Bytes of frames other than answers (PINGs, PONGs, a DRAIN, an ERROR that closes) that a
 * server sends while a request goes out: a few, never this many. */
#define SMALL_FRAMES ((size_t)64 << 10)

/* What came from the server while a request goes out (send_all), checked frame by frame
 * as it comes. A correct server sends then the answers owed, the request going out
 * included (a server may refuse a request before reading it whole), each at most the
 * client's maximum and a header, and a few small frames. Only the answers of calls still
 * waiting for them are kept: those of the calls in flight and of the request going out
 * (the blocking call's, the last request sent). The answers of calls that gave up on
 * theirs are read past and let go as they come (c->skip), so what is kept meanwhile stays
 * within the calls in flight, one more, the small frames and READ_AHEAD, and the rest
 * waits in the socket until the request is out (TCP's flow control then holds the
 * server). */
typedef struct meanwhile {
    size_t at;     /* the next header in c->in (past the frame in hand) */
    uint32_t kept; /* RESPONSE and ERROR frames for a request kept, among those checked */
    size_t small;  /* bytes of the other frames checked */
    bool full;     /* a correct server would have sent no more: none is read */
} meanwhile;

/* Whether request id's caller still waits for its answer: a call in flight on c, or the
 * last request sent (the one going out, or the blocking call whose answer is awaited). */
static bool awaited(const tcp_conn *c, uint64_t id)
{
    if (id == c->next_id) return true;
    for (const shmrpc__pending *k = c->inflight; k; k = k->next)
        if (k->rid == id) return true;
    return false;
}

/* Lets go of the answer whose header is at m->at in c->in: what came of it is dropped,
 * and the rest of its body (c->skip) is read past as it comes. */
static void skip_answer(tcp_conn *c, const meanwhile *m, uint32_t body_len)
{
    size_t here = c->in.len - m->at - SHMRPC__FRAME_HDR_SIZE;
    size_t drop = SHMRPC__FRAME_HDR_SIZE + (here < body_len ? here : body_len);
    memmove(c->in.data + m->at, c->in.data + m->at + drop, c->in.len - m->at - drop);
    c->in.len -= drop;
    c->skip = body_len - (drop - SHMRPC__FRAME_HDR_SIZE);
    if (c->skip == 0) answer_read(c);
}

/* Reads and lets go of at most room bytes of the answer being skipped (c->skip), through
 * the room past c->in's end: k as recv returns it. */
static ssize_t skip_some(tcp_conn *c, size_t room, int flags)
{
    if (room > c->skip) room = c->skip;
    ssize_t k = shmrpc__io_recv(&c->io, c->in.data + c->in.len, room, flags);
    if (k > 0) c->skip -= (size_t)k;
    if (k > 0 && c->skip == 0) answer_read(c);
    return k;
}

/* Checks the headers that have come whole. A frame no correct server sends then (a
 * header that does not decode or is above the client's maximum, a kind a server does not
 * send, an answer to a request never sent) fails the connection: SHMRPC_EPROTO, its
 * message into err. The answer of a call that gave up on it is skipped while such answers
 * are owed. More answers than that, or more small frames than SMALL_FRAMES, only stop the
 * reading: an answer sent twice is dropped when it is read, not refused. */
static int meanwhile_check(tcp_conn *c, meanwhile *m, shmrpc_buf *err)
{
    while (!m->full && !c->skip && c->in.len >= m->at + SHMRPC__FRAME_HDR_SIZE) {
        shmrpc__frame_hdr h;
        if (shmrpc__frame_hdr_decode(c->in.data + m->at, SHMRPC__FRAME_HDR_SIZE, max_body(c),
                                     c->comp, &h, err)) {
            char why[200];
            snprintf(why, sizeof why, "%s", shmrpc__msg_get(err));
            shmrpc__msg_set(err, "tcp://%s, while a request went out: %s", c->where, why);
            return SHMRPC_EPROTO;
        }
        const char *kind = shmrpc__frame_kind_name(h.kind);
        bool answer =
            h.kind == SHMRPC__KIND_RESPONSE || (h.kind == SHMRPC__KIND_ERROR && h.request_id != 0);
        if (answer && (h.request_id == 0 || h.request_id > c->next_id)) {
            shmrpc__msg_set(err,
                            "tcp://%s sent a %s frame for request %" PRIu64
                            ", which was never sent, while a request went out",
                            c->where, kind, h.request_id);
            return SHMRPC_EPROTO;
        }
        if (!answer && h.kind != SHMRPC__KIND_ERROR && h.kind != SHMRPC__KIND_PING &&
            h.kind != SHMRPC__KIND_PONG && h.kind != SHMRPC__KIND_DRAIN) {
            shmrpc__msg_set(err, "tcp://%s sent a %s frame, which a server does not send", c->where,
                            kind);
            return SHMRPC_EPROTO;
        }
        size_t n = SHMRPC__FRAME_HDR_SIZE + (size_t)h.body_len;
        /* Owed to a call no longer in flight (the answers owed less the calls in flight
         * count those): not kept. */
        if (answer && !awaited(c, h.request_id) && c->owed > (uint32_t)c->n_inflight) {
            skip_answer(c, m, h.body_len);
            continue;
        }
        if (answer) {
            m->full = ++m->kept > (uint32_t)c->n_inflight + 1;
        } else {
            m->small += n;
            m->full = m->small > SMALL_FRAMES;
        }
        m->at += n;
    }
    return 0;
}

/* Waits until c can be written to, reading what comes meanwhile into c->in, as far as a
 * correct server sends (meanwhile_check): the rest of the frames checked and READ_AHEAD
 * past them, and past an answer being skipped, READ_AHEAD at a time. Then only the send
 * is waited for, within deadline as always. */
static int read_while_sending(tcp_conn *c, meanwhile *m, int64_t deadline, shmrpc_buf *err)
{
    int rc = meanwhile_check(c, m, err);
    if (rc) return rc;
    size_t end = m->full ? c->in.len : c->skip ? c->in.len + READ_AHEAD : m->at + READ_AHEAD;
    if (end < c->in.len) end = c->in.len;
    rc = wait_fd(c->fd, end > c->in.len ? POLLOUT | POLLIN : POLLOUT, deadline);
    if (rc || end == c->in.len) return rc;
    if (shmrpc__buf_grow(&c->in, end - c->in.len)) return c->in.err;
    bool skipping = c->skip != 0;
    ssize_t k =
        skipping ? skip_some(c, end - c->in.len, MSG_DONTWAIT)
                 : shmrpc__io_recv(&c->io, c->in.data + c->in.len, end - c->in.len, MSG_DONTWAIT);
    if (k > 0 && !skipping) c->in.len += (size_t)k;
    if (k == 0) {
        errno = 0;
        return SHMRPC_EUNAVAIL;
    }
    if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return SHMRPC_EUNAVAIL;
    return 0;
}

static int send_all(tcp_conn *c, const uint8_t *p, size_t n, int64_t deadline, shmrpc_buf *err)
{
    meanwhile m = {.at = c->used};
    while (n) {
        ssize_t k = shmrpc__io_send(&c->io, p, n);
        if (k > 0) {
            p += k, n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && c->owed) {
            /* Answers owed (calls in flight, or calls that gave up on theirs): they are read
             * (kept in c->in) while the request waits for room, or a server that stops
             * reading until its answers are sent and this client would wait for each other
             * until the deadline (owed_answer_read_while_sending). */
            int rc = read_while_sending(c, &m, deadline, err);
            if (rc == SHMRPC_ETIMEDOUT) {
                conn_break(c);
                shmrpc__msg_set(err, "the deadline passed while sending to tcp://%s", c->where);
                return rc;
            }
            if (rc == SHMRPC_EPROTO) { /* the server broke the protocol: said in err */
                conn_break(c);
                return rc;
            }
            if (rc) return broken(c, err, "while sending");
            continue;
        }
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
 * more), after the rest of an answer being skipped (c->skip), with blocking recv calls,
 * each bounded by what is left of the deadline: one
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
        bool skipping = c->skip != 0; /* an answer let go comes first */
        ssize_t k = skipping ? skip_some(c, c->in.cap - c->in.len, flags)
                             : shmrpc__io_recv(&c->io, c->in.data + c->in.len,
                                               c->in.cap - c->in.len, flags);
        if (k > 0) {
            if (!skipping) c->in.len += (size_t)k;
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
static int read_frame(tcp_conn *c, uint32_t max, shmrpc__frame_hdr *h, int64_t deadline,
                      shmrpc_buf *err)
{
    consume(c);
    int rc = 0;
    if (c->in.len < SHMRPC__FRAME_HDR_SIZE)
        rc = fill(c, SHMRPC__FRAME_HDR_SIZE - c->in.len, deadline, err);
    if (rc == SHMRPC_ETIMEDOUT && c->in.len) conn_break(c);
    if (rc) return rc;
    rc = shmrpc__frame_hdr_decode(c->in.data, SHMRPC__FRAME_HDR_SIZE, max, c->comp, h, err);
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

/* --- making a connection: a dial, one step at a time ---------------------------------- */

/* Begins a dial of c: a non-blocking connect, given up at end. 0 with c->dial set, else a
 * status with err (nothing is left open). */
static int dial_begin(tcp_conn *c, int64_t now, int64_t end, shmrpc_buf *err)
{
    int fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return shmrpc__tcp_sys_error(err, errno, "cannot open a socket for", c->where);
    c->fd = fd;
    shmrpc__io_init(&c->io, fd);
    c->rcvtimeo_ms = -1;
    c->comp = 0;
    c->proto = 0;
    c->dial = DIAL_TCP;
    c->dial_events = POLLOUT;
    c->dial_start = now;
    c->dial_end = end;
    c->dial_patient = now;
    c->heard = false;
    shmrpc__tcp_set_nodelay(fd);
    if (connect(fd, (const struct sockaddr *)&c->addr, c->addr_len) == 0 || errno == EINPROGRESS ||
        errno == EINTR) /* the connect goes on: poll says when it ended */
        return 0;
    shmrpc__msg_set(err, "no server at tcp://%s: %s", c->where, strerror(errno));
    conn_break(c);
    return SHMRPC_EUNAVAIL;
}

/* The HELLO that c sends (and checks the HELLO_ACK against). */
static void hello_of(const tcp_conn *c, shmrpc__hello *hello)
{
    const shmrpc__tcp_cfg *cfg = &c->cfg->tcp;
    /* Over loopback, copying is faster than any compressor (bench: tcp/text-snappy): by
     * default a client offers compression to other hosts only. */
    bool local = cfg->compression_auto && shmrpc__tcp_is_loopback(&c->addr);
    *hello = (shmrpc__hello){.proto = cfg->wire_proto,
                             .info = *c->info,
                             .compression = local ? 0 : cfg->compression,
                             .threshold = cfg->threshold,
                             .max_msg = shmrpc__tcp_cap32(c->cfg->max_msg)};
    if (cfg->secret_len) hello->auth = shmrpc_bytes_of(c->nonce, sizeof c->nonce);
}

/* Puts the HELLO in c->out, to be sent by the next steps. */
static int hello_begin(tcp_conn *c, shmrpc_buf *err)
{
    if (c->cfg->tcp.secret_len) {
        int rc = shmrpc__auth_nonce(c->nonce);
        if (rc) return rc;
    }
    shmrpc__hello hello;
    hello_of(c, &hello);
    shmrpc_buf_clear(&c->out);
    size_t at = shmrpc__frame_begin(&c->out, SHMRPC__KIND_HELLO, 0, 0, 0);
    int rc = shmrpc__hello_write(&c->out, SHMRPC__KIND_HELLO, &hello, err);
    if (rc == 0) rc = shmrpc__frame_end(&c->out, at);
    c->sent = 0;
    c->dial = DIAL_HELLO;
    return rc;
}

/* The connection is made: the server's table (checked only now, once the server proved
 * it holds the secret) is mapped into c->map and kept. */
static int dial_done(tcp_conn *c, shmrpc_buf *err)
{
    int rc = shmrpc__table_accept(c->info, &c->ack.info, c->map, c->table, err);
    if (rc == 0) {
        c->comp = c->ack.compression;
        c->threshold = c->ack.threshold;
        c->peer_max = c->ack.max_msg;
        c->proto = c->ack.proto;
        c->drained = false;
        c->dial = DIAL_NONE;
    }
    shmrpc_arena_reset(c->arena);
    memset(&c->ack, 0, sizeof c->ack);
    return rc;
}

/* The HELLO_ACK (or an ERROR) in hand: checked; with a shared secret, both sides then
 * prove they hold it (the client's AUTH goes out next), else the connection is made. */
static int hello_acked(tcp_conn *c, const shmrpc__frame_hdr *h, shmrpc_buf *err)
{
    const shmrpc__tcp_cfg *cfg = &c->cfg->tcp;
    c->heard = true;
    if (h->kind == SHMRPC__KIND_ERROR) return error_frame(c, err);
    if (h->kind != SHMRPC__KIND_HELLO_ACK) {
        shmrpc__msg_set(err, "tcp://%s answered the HELLO with a %s frame", c->where,
                        shmrpc__frame_kind_name(h->kind));
        return SHMRPC_EPROTO;
    }
    shmrpc__hello hello;
    hello_of(c, &hello);
    shmrpc_arena_reset(c->arena);
    int rc = shmrpc__hello_parse(frame_body(c), SHMRPC__KIND_HELLO_ACK, c->arena, &c->ack, err);
    if (rc == 0) rc = shmrpc__hello_accept(&hello, &c->ack, err);
    if (rc == 0 && c->ack.auth.len && !cfg->secret_len) {
        shmrpc__msg_set(err,
                        "tcp://%s requires a shared secret, and this client has none "
                        "(shmrpc_tcp_opts.secret)",
                        c->where);
        rc = SHMRPC_EPERM;
    } else if (rc == 0 && cfg->secret_len && c->ack.auth.len != SHMRPC__AUTH_LEN) {
        shmrpc__msg_set(err,
                        "tcp://%s does not ask for the shared secret: it may not be the "
                        "server this client is meant for",
                        c->where);
        rc = SHMRPC_EPERM;
    }
    if (rc) return rc;
    if (!cfg->secret_len) return dial_done(c, err);
    /* The proofs are over both bodies as they went over the wire: the HELLO still in out,
     * the HELLO_ACK in hand. */
    uint8_t proof[2][SHMRPC__AUTH_LEN];
    shmrpc_bytes sent =
        shmrpc_bytes_of(c->out.data + SHMRPC__FRAME_HDR_SIZE, c->out.len - SHMRPC__FRAME_HDR_SIZE);
    shmrpc__auth_proofs(cfg, sent, frame_body(c), proof[0], proof[1]);
    c->ack.auth = shmrpc_bytes_of(NULL, 0); /* it pointed into the frame in hand */
    shmrpc_buf_clear(&c->out);
    shmrpc__frame_hdr a = {.kind = SHMRPC__KIND_AUTH, .body_len = SHMRPC__AUTH_LEN};
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    shmrpc__frame_hdr_encode(&a, hdr);
    if (shmrpc_buf_append(&c->out, hdr, sizeof hdr) == 0)
        shmrpc_buf_append(&c->out, proof[0], SHMRPC__AUTH_LEN);
    memcpy(c->proof, proof[1], sizeof c->proof);
    shmrpc__auth_wipe(proof, sizeof proof);
    if (c->out.err) return c->out.err;
    c->sent = 0;
    c->dial = DIAL_AUTH;
    return 0;
}

/* The server's AUTH (or an ERROR) in hand: its proof must be the one expected. */
static int auth_answered(tcp_conn *c, const shmrpc__frame_hdr *h, shmrpc_buf *err)
{
    int rc = 0;
    if (h->kind == SHMRPC__KIND_ERROR) {
        rc = error_frame(c, err);
    } else if (h->kind != SHMRPC__KIND_AUTH) {
        shmrpc__msg_set(err, "tcp://%s answered the AUTH with a %s frame", c->where,
                        shmrpc__frame_kind_name(h->kind));
        rc = SHMRPC_EPROTO;
    } else if (frame_body(c).len != SHMRPC__AUTH_LEN ||
               !shmrpc__auth_equal(frame_body(c).ptr, c->proof)) {
        shmrpc__msg_set(err, "tcp://%s does not hold the same shared secret (its proof is wrong)",
                        c->where);
        rc = SHMRPC_EPERM;
    }
    shmrpc__auth_wipe(c->proof, sizeof c->proof);
    return rc ? rc : dial_done(c, err);
}

/* Reads what has come of the next handshake frame, without waiting: 0 once it is whole
 * at the front of c->in (c->used), 1 while more must come, else a status with err. */
static int dial_read(tcp_conn *c, shmrpc__frame_hdr *h, shmrpc_buf *err)
{
    consume(c);
    for (;;) {
        size_t need = SHMRPC__FRAME_HDR_SIZE;
        if (c->in.len >= need) {
            int rc = shmrpc__frame_hdr_decode(c->in.data, SHMRPC__FRAME_HDR_SIZE,
                                              SHMRPC__WIRE_MAX_HELLO, c->comp, h, err);
            if (rc) return rc;
            need += h->body_len;
            if (c->in.len >= need) {
                c->used = need;
                return 0;
            }
        }
        if (shmrpc__buf_grow(&c->in, need - c->in.len + READ_AHEAD)) return c->in.err;
        ssize_t k =
            shmrpc__io_recv(&c->io, c->in.data + c->in.len, c->in.cap - c->in.len, MSG_DONTWAIT);
        if (k > 0) {
            c->in.len += (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        if (k == 0) errno = 0;
        return broken(c, err, k == 0 ? "(the server closed it)" : "while receiving");
    }
}

/* Why c's dial, at its step now, has not ended after its time (ms). */
static void dial_late(const tcp_conn *c, int64_t ms, shmrpc_buf *err)
{
    if (c->dial == DIAL_TCP)
        shmrpc__msg_set(err, "connecting to tcp://%s timed out (%" PRId64 " ms)", c->where, ms);
    else if (c->dial == DIAL_TLS)
        shmrpc__msg_set(err, "the TLS handshake with tcp://%s did not end in time (%" PRId64 " ms)",
                        c->where, ms);
    else
        shmrpc__msg_set(err,
                        "tcp://%s took the connection but did not answer its handshake within "
                        "%" PRId64 " ms",
                        c->where, ms);
}

/* Moves c's dial on as far as it goes without waiting, from what poll said of its socket
 * (revents; 0: nothing). 0 once the connection is made; while it waits, the events its
 * socket waits for; else a status with err, and c let go. It gives up at c->dial_end. */
static int dial_step(tcp_conn *c, short revents, int64_t now, shmrpc_buf *err)
{
    int rc = 0;
    if (!revents && !shmrpc__io_pending(&c->io)) goto waits;
    while (rc == 0 && c->dial != DIAL_NONE) {
        if (c->dial == DIAL_TCP) {
            int e = 0;
            socklen_t el = sizeof e;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0) e = errno;
            if (e == 0 && !(revents & POLLOUT)) e = ECONNREFUSED; /* a hang-up, no error */
            if (e) {
                shmrpc__msg_set(err, "no server at tcp://%s: %s", c->where, strerror(e));
                rc = SHMRPC_EUNAVAIL;
                break;
            }
            /* From now on receives block (see fill) and sends do not (MSG_DONTWAIT); the
             * dial's receives say MSG_DONTWAIT. */
            fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) & ~O_NONBLOCK);
            if (c->tls) {
                rc = shmrpc__io_tls(&c->io, c->tls);
                c->dial = DIAL_TLS;
            } else {
                rc = hello_begin(c, err);
            }
        } else if (c->dial == DIAL_TLS) {
            /* The server's certificate is checked here; whether it accepts ours, a TLS 1.3
             * client learns at its first read (broken() then says why). */
            int step = shmrpc__io_handshake(&c->io);
            if (step < 0) {
                rc = shmrpc__io_error(&c->io, c->where, err);
                break;
            }
            if (step > 0) {
                c->dial_events = step == 1 ? POLLIN : POLLOUT;
                goto waits;
            }
            c->heard = true; /* the server's flight came, and checked */
            rc = hello_begin(c, err);
        } else {
            while (c->sent < c->out.len) {
                ssize_t k = shmrpc__io_send(&c->io, c->out.data + c->sent, c->out.len - c->sent);
                if (k > 0) {
                    c->sent += (size_t)k;
                } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    c->dial_events = POLLOUT;
                    goto waits;
                } else if (k >= 0 || errno != EINTR) {
                    return broken(c, err, "while sending the handshake");
                }
            }
            shmrpc__frame_hdr h;
            rc = dial_read(c, &h, err);
            if (rc == 1) {
                c->dial_events = POLLIN;
                goto waits;
            }
            if (rc == 0)
                rc = c->dial == DIAL_HELLO ? hello_acked(c, &h, err) : auth_answered(c, &h, err);
        }
    }
    if (rc) conn_break(c);
    return rc;
waits:
    if (now < c->dial_end) return c->dial_events;
    dial_late(c, (c->dial_end - c->dial_start) / NS_PER_MS, err);
    conn_break(c);
    return SHMRPC_ETIMEDOUT;
}

static int send_request(tcp_conn *c, uint32_t sid, uint64_t id, uint16_t flags, shmrpc_bytes req,
                        int64_t deadline, shmrpc_buf *err)
{
    if (req.len > c->peer_max) {
        shmrpc__msg_set(err, "a request of %zu bytes is above the server's maximum of %" PRIu32,
                        req.len, c->peer_max);
        return SHMRPC_ETOOBIG;
    }
    shmrpc_buf_clear(&c->out);
    int rc = shmrpc__tcp_put_msg_frame(&c->out, SHMRPC__KIND_REQUEST, flags, sid, id, req, c->comp,
                                       c->threshold);
    if (rc) {
        shmrpc__msg_set(err, "cannot frame the request: %s", shmrpc_strerror(rc));
        return rc;
    }
    rc = send_all(c, c->out.data, c->out.len, deadline, err);
    if (rc == 0) c->owed++;
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
        /* The server ran no request it read after the DRAIN, and answered the ones it ran
         * before it: this call did not run there. */
        if (h.kind == SHMRPC__KIND_DRAIN) {
            c->drained = true;
            conn_break(c);
            shmrpc__msg_set(err, "tcp://%s is draining (its server stops): the call did not run",
                            c->where);
            return SHMRPC_EUNAVAIL;
        }
        if (h.kind == SHMRPC__KIND_ERROR && h.request_id == 0) { /* the server leaves */
            rc = error_frame(c, err);
            c->left = true; /* answers to what it ran come before this: ours did not */
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
        if (answer && h.request_id < id) { /* a call that gave up on it earlier */
            answer_read(c);
            continue;
        }
        if (!answer || h.request_id != id || h.method != sid) {
            conn_break(c);
            shmrpc__msg_set(err,
                            "tcp://%s sent a %s frame for request %" PRIu64 " of method %" PRIu32
                            " out of turn",
                            c->where, shmrpc__frame_kind_name(h.kind), h.request_id, h.method);
            return SHMRPC_EPROTO;
        }
        answer_read(c);
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

/* --- endpoints ------------------------------------------------------------------------ */

/* An entry of the address's list, as written: a host (a numeric address or a DNS name)
 * and a port. */
typedef struct tcp_entry {
    char host[256];
    char port[6];
    bool numeric;
} tcp_entry;

/* The connection a client holds: its endpoints, each with a connection of its own. */
typedef struct tcp_pool {
    shmrpc__conn base;
    const shmrpc_service_info *info;
    const shmrpc__client_cfg *cfg;
    uint32_t *map;        /* the client's: that of the endpoint connected last */
    shmrpc__table *table; /* likewise */
    pid_t pid;            /* the process that opened it */
    char *list;           /* WHERE as given, for messages */
    tcp_entry entries[SHMRPC_TCP_MAX_ENDPOINTS];
    int n_entries;
    bool names;                /* some entry is a DNS name */
    bool resolve_due;          /* an endpoint failed: resolve again soon */
    int64_t resolved_ns;       /* when the names were last resolved */
    struct tcp_lookup *lookup; /* a round of resolving them, under way */
    tcp_conn *eps[SHMRPC_TCP_MAX_ENDPOINTS];
    int n_eps;
    unsigned cursor;    /* where the next choice starts among equals (round robin) */
    int64_t tended_ns;  /* when the background work (tend) was last done */
    shmrpc_buf why;     /* the reasons of a call's failed tries */
    shmrpc_buf scratch; /* messages of the background work (tend) while calls wait */
    /* The first failure to make an endpoint's TLS context (a file that cannot be read, a
     * CA store that cannot be loaded): connect fails with it; a later round of resolving
     * leaves such an endpoint out. */
    int tls_rc;
    shmrpc_buf tls_why;
    bool ep_nomem; /* an endpoint could not be made for lack of memory */
} tcp_pool;

/* Takes p off the connection it waits on. */
static void pend_unlink(tcp_conn *c, shmrpc__pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        c->inflight = p->next;
    if (p->next) p->next->prev = p->prev;
    p->next = p->prev = NULL;
    p->where = NULL;
    c->n_inflight--;
    c->outstanding--;
}

static void pend_done(shmrpc__pending *p, int status)
{
    p->done = true;
    p->status = status;
    if (status == 0) shmrpc_buf_clear(&p->msg);
}

/* Fails every call in flight on c, whose requests were written whole: they may have run. */
static void fail_inflight(tcp_conn *c, int status, const char *why)
{
    while (c->inflight) {
        shmrpc__pending *p = c->inflight;
        pend_unlink(c, p);
        shmrpc__msg_set(&p->msg, "%s", why);
        if (status == SHMRPC_EPEERDIED)
            shmrpc__msg_append(&p->msg, "; the request had been sent, so the call may have run "
                                        "(it is not sent again)");
        pend_done(p, status);
    }
}

/* Fails the calls in flight on c, whose connection was let go while something was sent:
 * they may have run. SHMRPC_EPROTO when the server broke the protocol meanwhile (send_all),
 * as when a frame it should not have sent is read (read_one); else SHMRPC_EPEERDIED. */
static void fail_sending(tcp_conn *c, int rc, const shmrpc_buf *err)
{
    if (rc != SHMRPC_EPROTO) {
        fail_inflight(c, SHMRPC_EPEERDIED, shmrpc__msg_get(err));
        return;
    }
    char why[400];
    snprintf(why, sizeof why, "%s; the calls in flight may have run", shmrpc__msg_get(err));
    fail_inflight(c, SHMRPC_EPROTO, why);
}

static void ep_free(tcp_conn *c)
{
    fail_inflight(c, SHMRPC_EPEERDIED,
                  "the endpoint was dropped (its name no longer resolves to it)");
    if (c->pid == getpid())
        conn_break(c);
    else if (c->fd >= 0) /* the parent's socket stays open (and its TLS unclosed) there */
        shmrpc__io_close(&c->io, false);
    shmrpc__tls_free(c->tls);
    shmrpc_buf_destroy(&c->out);
    shmrpc_buf_destroy(&c->in);
    shmrpc_arena_free(c->arena);
    shmrpc_arena_free(c->own_table.arena);
    free(c->map);
    free(c);
}

static tcp_conn *ep_new(tcp_pool *p, int entry, const struct sockaddr *sa, socklen_t len)
{
    tcp_conn *c = calloc(1, sizeof *c);
    if (!c) {
        p->ep_nomem = true;
        return NULL;
    }
    c->fd = -1;
    c->pid = p->pid;
    c->info = p->info;
    c->cfg = p->cfg;
    c->entry = entry;
    c->seen = true;
    shmrpc_buf_init(&c->out);
    shmrpc_buf_init(&c->in);
    c->map = calloc(p->info->n_methods ? p->info->n_methods : 1, sizeof *c->map);
    c->table = &c->own_table;
    c->own_table.arena = shmrpc_arena_new(0);
    c->arena = shmrpc_arena_new(0);
    if (!c->map || !c->own_table.arena || !c->arena) {
        ep_free(c);
        p->ep_nomem = true;
        return NULL;
    }
    shmrpc_arena_set_limit(c->arena, (size_t)SHMRPC__WIRE_MAX_HELLO * 8);
    memcpy(&c->addr, sa, len);
    c->addr_len = len;
    /* Named as written; an address found through a DNS name also by what it resolved to. */
    const tcp_entry *e = &p->entries[entry];
    bool v6 = strchr(e->host, ':') != NULL;
    if (e->numeric) {
        snprintf(c->where, sizeof c->where, v6 ? "[%s]:%s" : "%s:%s", e->host, e->port);
    } else {
        char ip[INET6_ADDRSTRLEN] = "?";
        const void *in = sa->sa_family == AF_INET
                             ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                             : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        inet_ntop(sa->sa_family, in, ip, sizeof ip);
        snprintf(c->where, sizeof c->where, "%s:%s (%s)", e->host, e->port, ip);
    }
    /* TLS per endpoint: its certificate must name the entry as written (unless the options
     * name the server), and whether it is checked depends on its address (loopback). */
    if (p->cfg->tcp.tls) {
        char name[ADDR_MAX];
        snprintf(name, sizeof name, v6 ? "[%s]:%s" : "%s:%s", e->host, e->port);
        shmrpc_buf err;
        shmrpc_buf_init(&err);
        int rc = shmrpc__tls_client_new(&p->cfg->tcp, name, shmrpc__tcp_is_loopback(&c->addr),
                                        &c->tls, &err);
        if (rc != 0 && p->tls_rc == 0) {
            p->tls_rc = rc;
            shmrpc__msg_set(&p->tls_why, "%s", shmrpc__msg_get(&err));
        }
        shmrpc_buf_destroy(&err);
        if (rc != 0) {
            ep_free(c);
            return NULL;
        }
    }
    return c;
}

static bool same_addr(const tcp_conn *c, const struct sockaddr *sa, socklen_t len)
{
    return c->addr_len == len && memcmp(&c->addr, sa, len) == 0;
}

/* One round of resolving the DNS names of a list, asked of glibc's resolver without
 * waiting (getaddrinfo_a): a call never waits for DNS (it applies a round once done), and
 * a connect waits for one at most its connect timeout. It holds copies of what it asks, so
 * that a request that cannot be cancelled may outlive the client (see lookup_free). */
typedef struct tcp_lookup {
    int n;
    int entry[SHMRPC_TCP_MAX_ENDPOINTS];
    char host[SHMRPC_TCP_MAX_ENDPOINTS][256];
    char port[SHMRPC_TCP_MAX_ENDPOINTS][6];
    struct addrinfo hints;
    struct gaicb cb[SHMRPC_TCP_MAX_ENDPOINTS];
    struct gaicb *list[SHMRPC_TCP_MAX_ENDPOINTS];
} tcp_lookup;

static tcp_lookup *lookup_start(const tcp_pool *p)
{
    tcp_lookup *lk = calloc(1, sizeof *lk);
    if (!lk) return NULL;
    lk->hints = (struct addrinfo){
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    for (int e = 0; e < p->n_entries; e++) {
        if (p->entries[e].numeric) continue;
        int k = lk->n++;
        lk->entry[k] = e;
        memcpy(lk->host[k], p->entries[e].host, sizeof lk->host[k]);
        memcpy(lk->port[k], p->entries[e].port, sizeof lk->port[k]);
        lk->cb[k] = (struct gaicb){
            .ar_name = lk->host[k], .ar_service = lk->port[k], .ar_request = &lk->hints};
        lk->list[k] = &lk->cb[k];
    }
    /* A request it could not queue reads as done with no result (its gaicb is zeroed). */
    if (getaddrinfo_a(GAI_NOWAIT, lk->list, lk->n, NULL) != 0) {
        /* the requests' own statuses say which ones run */
    }
    return lk;
}

static bool lookup_done(tcp_lookup *lk)
{
    for (int k = 0; k < lk->n; k++)
        if (gai_error(&lk->cb[k]) == EAI_INPROGRESS) return false;
    return true;
}

/* Waits until the round is done or deadline passes, looking once a millisecond. Not with
 * gai_suspend: glibc's (2.36) waits for an absolute CLOCK_MONOTONIC time on a condition
 * variable of CLOCK_REALTIME, so it returns at once, again and again; and when a request
 * ends as it returns, it leaves its waiter (on its stack) with the request, which the
 * resolver's thread then writes through: a crash, seen with a name that does not resolve
 * (client_test, names_that_do_not_resolve). */
static void lookup_wait(tcp_lookup *lk, int64_t deadline)
{
    while (!lookup_done(lk)) {
        int64_t left = deadline - shmrpc__now_ns();
        if (left <= 0) return;
        struct timespec ts = {0, (long)(left < NS_PER_MS ? left : NS_PER_MS)};
        nanosleep(&ts, NULL);
    }
}

/* Frees a round and its results. A request still running is cancelled; one that cannot be
 * (a resolver thread has it) is left to finish on its own, and its round is not freed: a
 * leak of one round, for as long as the resolver's own timeouts, is the price of never
 * waiting for it. */
static void lookup_free(tcp_lookup *lk)
{
    bool running = false;
    for (int k = 0; k < lk->n; k++)
        if (gai_error(&lk->cb[k]) == EAI_INPROGRESS && gai_cancel(&lk->cb[k]) == EAI_NOTCANCELED)
            running = true;
    if (running) return;
    for (int k = 0; k < lk->n; k++)
        if (lk->cb[k].ar_result) freeaddrinfo(lk->cb[k].ar_result);
    free(lk);
}

/* Adds an endpoint for each address of entry e in ai that it has not, and marks those it
 * has as seen. */
static void add_addrs(tcp_pool *p, int e, const struct addrinfo *ai)
{
    for (const struct addrinfo *a = ai; a; a = a->ai_next) {
        if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
        tcp_conn *found = NULL;
        for (int i = 0; i < p->n_eps && !found; i++)
            if (same_addr(p->eps[i], a->ai_addr, a->ai_addrlen)) found = p->eps[i];
        if (found) {
            found->seen = true;
        } else if (p->n_eps < SHMRPC_TCP_MAX_ENDPOINTS) {
            tcp_conn *c = ep_new(p, e, a->ai_addr, a->ai_addrlen);
            if (c) p->eps[p->n_eps++] = c;
        }
    }
}

/* Keeps one endpoint per address of every entry, up to SHMRPC_TCP_MAX_ENDPOINTS: numeric
 * entries are resolved here (never asking DNS), names from the round lk (NULL only when
 * the list has no name). Endpoints found again keep their connections, those no longer
 * found are dropped, and an entry that failed to resolve keeps what it had. 0 when at
 * least one endpoint is left; else SHMRPC_ENOENT (no such name) or SHMRPC_EUNAVAIL, with
 * the resolver's message. */
static int apply(tcp_pool *p, tcp_lookup *lk, shmrpc_buf *err)
{
    int rc = SHMRPC_EUNAVAIL;
    shmrpc__msg_clear(err);
    for (int i = 0; i < p->n_eps; i++)
        p->eps[i]->seen = false;
    for (int e = 0, k = 0; e < p->n_entries; e++) {
        const tcp_entry *en = &p->entries[e];
        struct addrinfo *ai = NULL;
        int g;
        if (en->numeric) {
            struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                     .ai_socktype = SOCK_STREAM,
                                     .ai_flags = AI_NUMERICSERV | AI_NUMERICHOST};
            g = getaddrinfo(en->host, en->port, &hints, &ai);
        } else { /* a name: then p->names, so lk is a round, whose k-th request is this one */
            g = gai_error(&lk->cb[k]);
            ai = g == 0 ? lk->cb[k].ar_result : NULL;
            k++;
        }
        if (g == 0 && ai) {
            add_addrs(p, e, ai);
        } else {
            for (int i = 0; i < p->n_eps; i++)
                if (p->eps[i]->entry == e) p->eps[i]->seen = true;
            if (g == EAI_INPROGRESS)
                shmrpc__msg_set(err, "cannot resolve '%s': no answer within the connect timeout",
                                en->host);
            else
                shmrpc__msg_set(err, "cannot resolve '%s': %s", en->host,
                                g == EAI_SYSTEM ? strerror(errno)
                                : g             ? gai_strerror(g)
                                                : "no address");
            if (g == EAI_NONAME) rc = SHMRPC_ENOENT;
        }
        if (en->numeric && ai) freeaddrinfo(ai);
    }
    for (int i = p->n_eps; i-- > 0;) {
        if (p->eps[i]->seen) continue;
        ep_free(p->eps[i]);
        memmove(&p->eps[i], &p->eps[i + 1], (size_t)(p->n_eps - i - 1) * sizeof p->eps[0]);
        p->n_eps--;
    }
    p->resolved_ns = shmrpc__now_ns();
    if (p->n_eps > 0) return 0;
    if (!shmrpc__msg_get(err)[0]) shmrpc__msg_set(err, "tcp://%s has no address", p->list);
    return rc;
}

/* The first resolution, at connect: DNS names within the connect timeout. */
static int resolve(tcp_pool *p, shmrpc_buf *err)
{
    tcp_lookup *lk = p->names ? lookup_start(p) : NULL;
    if (p->names && !lk) return SHMRPC_ENOMEM;
    if (lk) lookup_wait(lk, shmrpc__now_ns() + p->cfg->tcp.connect_ns);
    int rc = apply(p, lk, err);
    if (lk) lookup_free(lk);
    if (p->ep_nomem) { /* not "no address": the list's endpoints were not all made */
        shmrpc__msg_set(err, "out of memory for the endpoints of tcp://%s", p->list);
        return SHMRPC_ENOMEM;
    }
    return rc;
}

/* Names are resolved again every resolve_interval_ms, and after an endpoint failed at most
 * once a second, in the background: a round is started by one call and applied by the
 * first call that finds it done (a failed resolution keeps the endpoints it had). */
static void maybe_resolve(tcp_pool *p, int64_t now, shmrpc_buf *scratch)
{
    if (!p->names) return;
    if (p->lookup) {
        if (!lookup_done(p->lookup)) return;
        apply(p, p->lookup, scratch);
        lookup_free(p->lookup);
        p->lookup = NULL;
        return;
    }
    int64_t next = p->resolved_ns + p->cfg->tcp.resolve_ns;
    if (p->resolve_due && p->resolved_ns + NS_PER_S < next) next = p->resolved_ns + NS_PER_S;
    if (now < next) return;
    p->resolve_due = false;
    p->lookup = lookup_start(p);
    p->resolved_ns = now; /* a round that cannot start is tried again an interval later */
}

/* --- the address: tcp://ENTRY[,ENTRY...] ---------------------------------------------------- */

static int entry_error(shmrpc_buf *err, const char *list, int i, size_t n, const char *e,
                       const char *why)
{
    shmrpc__msg_set(err, "malformed address 'tcp://%s': entry %d ('%.*s') %s", list, i, (int)n, e,
                    why);
    return SHMRPC_EINVAL;
}

/* One entry, n bytes at e: HOST:PORT, [V6]:PORT, PORT alone (127.0.0.1), or HOST alone
 * when the .svc has a port. */
static int parse_entry(const char *list, int i, const char *e, size_t n,
                       const shmrpc_service_info *info, tcp_entry *out, shmrpc_buf *err)
{
    const char *host = e, *port = NULL;
    size_t hn = n, pn = 0;
    if (n == 0) {
        shmrpc__msg_set(err, "malformed address 'tcp://%s': entry %d is empty", list, i);
        return SHMRPC_EINVAL;
    }
    const char *colon = memchr(e, ':', n);
    if (e[0] == '[') {
        const char *close = memchr(e, ']', n);
        if (!close) return entry_error(err, list, i, n, e, "has no ']' after its IPv6 address");
        host = e + 1;
        hn = (size_t)(close - e - 1);
        size_t rest = n - (size_t)(close - e) - 1;
        if (rest && close[1] != ':')
            return entry_error(err, list, i, n, e, "has something other than :PORT after ']'");
        if (rest) port = close + 2, pn = rest - 1;
    } else if (colon) {
        if (memchr(colon + 1, ':', n - (size_t)(colon - e) - 1))
            return entry_error(err, list, i, n, e,
                               "is an IPv6 address without brackets: write [ADDRESS]:PORT");
        hn = (size_t)(colon - e);
        port = colon + 1;
        pn = n - hn - 1;
    } else if (strspn(e, "0123456789") >= n) { /* a port alone */
        hn = 0;
        port = e;
        pn = n;
    }
    char num[16];
    if (!port || pn == 0) {
        if (!info || info->port == 0)
            return entry_error(err, list, i, n, e,
                               "names no port, and the service's .svc has no `port`: write "
                               "HOST:PORT");
        snprintf(num, sizeof num, "%u", (unsigned)info->port);
        port = num;
        pn = strlen(num);
    }
    unsigned long v = 0;
    bool digits = pn <= 5;
    for (size_t k = 0; k < pn && digits; k++) {
        digits = port[k] >= '0' && port[k] <= '9';
        v = v * 10 + (unsigned long)(port[k] - '0');
    }
    if (!digits || v == 0 || v > 65535)
        return entry_error(err, list, i, n, e, "has a port that is not a number from 1 to 65535");
    if (hn >= sizeof out->host)
        return entry_error(err, list, i, n, e, "has a host name longer than 255 bytes");
    if (hn == 0) host = "127.0.0.1", hn = strlen(host);
    memcpy(out->host, host, hn);
    out->host[hn] = '\0';
    snprintf(out->port, sizeof out->port, "%lu", v);
    unsigned char buf[sizeof(struct in6_addr)];
    out->numeric =
        inet_pton(AF_INET, out->host, buf) == 1 || inet_pton(AF_INET6, out->host, buf) == 1;
    if (!out->numeric && e[0] == '[')
        return entry_error(err, list, i, n, e, "has brackets around something not an IPv6 address");
    return 0;
}

static int parse_list(tcp_pool *p, const char *where, shmrpc_buf *err)
{
    int n = 1;
    for (const char *s = where; *s; s++)
        n += *s == ',';
    if (n > SHMRPC_TCP_MAX_ENDPOINTS) {
        shmrpc__msg_set(err,
                        "malformed address 'tcp://%s': %d entries, and a list may have at most %d",
                        where, n, SHMRPC_TCP_MAX_ENDPOINTS);
        return SHMRPC_EINVAL;
    }
    const char *e = where;
    for (int i = 0; i < n; i++) {
        const char *end = strchr(e, ',');
        size_t len = end ? (size_t)(end - e) : strlen(e);
        int rc = parse_entry(where, i + 1, e, len, p->info, &p->entries[i], err);
        if (rc) return rc;
        p->names |= !p->entries[i].numeric;
        e += len + 1;
    }
    p->n_entries = n;
    return 0;
}

/* --- choosing an endpoint ----------------------------------------------------------------- */

/* Whether calls go to c: it is not left out (a probe of it takes it back). */
static bool usable(const tcp_conn *c)
{
    return !c->suspect;
}

/* Whether an endpoint but c takes calls. */
static bool others_usable(const tcp_pool *p, const tcp_conn *c)
{
    for (int i = 0; i < p->n_eps; i++)
        if (p->eps[i] != c && usable(p->eps[i])) return true;
    return false;
}

/* The endpoint for the next try (its index, -1 when none is left): of those not left out
 * and not in mask (tried by this call, or being connected for it), the one with the fewest
 * calls in flight, the first from the cursor among equals, so that a client with one call
 * at a time goes round them; with room (calls in flight on it below tcp.max_in_flight) when
 * room is set, and then *full says whether an endpoint had none. When every endpoint is
 * left out, the probes under way are all there is, and the call may wait for them. */
static int choose(tcp_pool *p, uint64_t mask, bool room, bool *full)
{
    bool any = false;
    for (int i = 0; i < p->n_eps && !any; i++)
        any = usable(p->eps[i]);
    int best = -1;
    if (full) *full = false;
    for (int k = 0; k < p->n_eps; k++) {
        int i = (int)((p->cursor + (unsigned)k) % (unsigned)p->n_eps);
        tcp_conn *c = p->eps[i];
        if ((mask >> i & 1) || (any ? !usable(c) : !c->probe)) continue;
        if (room && c->n_inflight >= p->cfg->tcp.max_in_flight) {
            *full = true;
            continue;
        }
        if (best < 0 || c->outstanding < p->eps[best]->outstanding) best = i;
    }
    if (best >= 0) p->cursor = (unsigned)best + 1;
    return best;
}

/* How long c stays left out before its next probe: the probe interval, doubled per failure
 * in a row up to 16 times, with jitter (half to one and a half of it). */
static int64_t backoff(const tcp_pool *p, const tcp_conn *c, int64_t now)
{
    int n = c->fails > 0 ? c->fails - 1 : 0;
    int64_t b = p->cfg->tcp.probe_ns << (n < 4 ? n : 4);
    return b / 2 + (int64_t)((uint64_t)now % (uint64_t)b);
}

/* Leaves c out of the choice (why says why) until a probe of it, begun after its backoff,
 * ends its handshake (tend), or an answer comes on its connection. */
static void eject(tcp_pool *p, tcp_conn *c, int64_t now, const char *why)
{
    c->fails++;
    c->suspect = true;
    c->eject_until = now + backoff(p, c, now);
    if (why != c->why) snprintf(c->why, sizeof c->why, "%s", why);
    p->resolve_due = true;
}

/* A connection to c was made (by a call's attempt or by a probe): c is taken back if it was
 * left out (its failures in a row still count until a call succeeds there, so a host that
 * takes connections and stalls calls is probed less and less often), and the client's
 * table is that of the server it connected to last. */
static int made(tcp_pool *p, tcp_conn *c)
{
    c->probe = false;
    c->suspect = false;
    c->eject_until = 0;
    memcpy(p->map, c->map, (p->info->n_methods ? p->info->n_methods : 1) * sizeof *p->map);
    return shmrpc__table_keep(p->table, &c->table->info);
}

/* A call's deadline passed waiting on c. While another endpoint takes calls, c is left out
 * as a host that stalls: the next calls go elsewhere, and a probe takes it back once a new
 * connection's handshake ends. Its connection is let go (the answers owed with it: the calls
 * that timed out may have run, and are never sent again), unless asynchronous calls are
 * still in flight on it: those go on to their answers or deadlines, and an answer takes c
 * back. With no other endpoint, the calls go on waiting on it as before. */
static void stalled(tcp_pool *p, tcp_conn *c, int64_t now, const char *why)
{
    if (c->suspect || !others_usable(p, c)) return;
    if (!c->n_inflight) conn_break(c);
    eject(p, c, now, why);
}

/* Between calls with no answer outstanding the server has nothing to say but a DRAIN:
 * anything else readable is its close (an idle timeout, a restart), so a new connection is
 * made before the request is sent rather than failing a call the server never saw. Calls
 * that follow an answer within a millisecond skip the look (a system call): a server that
 * closed in that millisecond fails the call with SHMRPC_EPEERDIED, which is never resent;
 * one that drains answers the request with its DRAIN, and the call goes elsewhere. */
#define SERVER_LEFT_AFTER_NS NS_PER_MS

static bool server_left(const tcp_conn *c, int64_t now)
{
    if (now - c->answered_ns < SERVER_LEFT_AFTER_NS) return false;
    if (shmrpc__io_pending(&c->io)) return true;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}

/* The server sent something while no call was outstanding: a DRAIN (read within a bounded
 * wait, as the rest of a frame may still come), or its close. The connection is let go. */
static void look_at_close(tcp_conn *c, shmrpc_buf *scratch)
{
    shmrpc__frame_hdr h;
    int64_t deadline = shmrpc__now_ns() + 10 * NS_PER_MS;
    if (read_frame(c, SHMRPC__WIRE_MAX_ERRMSG + 64, &h, deadline, scratch) == 0 &&
        h.kind == SHMRPC__KIND_DRAIN)
        c->drained = true;
    conn_break(c);
}

/* Before a call goes to c: a connection whose server closed it or drains meanwhile is let
 * go (c->drained says which), so that one is made again for the call, never sent there. */
static void refresh(tcp_conn *c, int64_t now, shmrpc_buf *scratch)
{
    c->drained = c->left = false;
    if (connected(c) && c->owed == 0 && server_left(c, now)) look_at_close(c, scratch);
}

/* One call's (or the connect's) search for an endpoint that takes it. */
typedef struct tcp_search {
    int64_t deadline;
    bool room;      /* only endpoints with room for one more call in flight */
    uint64_t tried; /* endpoints it went to and did not run on, or could not connect to */
    int status;     /* the most telling failure of its tries */
    int attempts;   /* endpoints it went to, connected or not */
} tcp_search;

/* An attempt to connect to c (index i) failed with rc (err says why): c is left out, the
 * search does not go there again, and the reason joins the call's (p->why). */
static void lost(tcp_pool *p, tcp_conn *c, int i, int rc, tcp_search *s, int64_t now,
                 shmrpc_buf *err)
{
    if (rc == SHMRPC_EUNAVAIL && c->drained) {
        char why[200];
        snprintf(why, sizeof why, "%s", shmrpc__msg_get(err));
        shmrpc__msg_set(err,
                        "tcp://%s is draining (its server stops), and connecting again "
                        "failed: %s",
                        c->where, why);
    }
    eject(p, c, now, shmrpc__msg_get(err));
    s->tried |= (uint64_t)1 << i;
    if (s->status == 0 || s->status == SHMRPC_EUNAVAIL) s->status = rc;
    shmrpc__msg_append(&p->why, "%s%s", shmrpc__msg_get(&p->why)[0] ? "; " : "",
                       shmrpc__msg_get(err));
}

/* Milliseconds for poll until at (INT64_MAX: -1, no end). */
static int poll_ms(int64_t at, int64_t now)
{
    if (at == INT64_MAX) return -1;
    if (at <= now) return 0;
    int64_t ms = (at - now + NS_PER_MS - 1) / NS_PER_MS;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* Connects a call to an endpoint, beginning with i (chosen, and not connected), as Happy
 * Eyeballs (RFC 8305) and gRPC's pick_first do: an attempt runs alone for
 * tcp.attempt_delay_ms (at most half the time left) before the next endpoint's attempt
 * begins beside it, the next begins at once when one fails, and the first to end its
 * handshake takes the call (an endpoint already connected ends it as soon as its turn
 * comes). The attempts still under way then are let go, and those that had had their time
 * are left out, as stalled. An attempt that fails leaves its endpoint out (lost). The
 * endpoint, its index in *won_at; NULL when none is left or the deadline passed (then the
 * attempts under way are let go in the same way). A probe (the call waits for it only when
 * every endpoint is left out) goes on in the background either way. */
static tcp_conn *race(tcp_pool *p, int i, tcp_search *s, int *won_at, shmrpc_buf *err)
{
    uint64_t racing = 0;
    tcp_conn *won = NULL;
    int64_t now = shmrpc__now_ns(), next = now; /* when the next attempt may begin */
    bool more = true;                           /* choose may find another endpoint */
    bool dialed = false;                        /* the winner's connection is new */
    int cand = i;
    while (!won && now < s->deadline) {
        if (cand < 0 && more && (now >= next || !racing)) {
            cand = choose(p, s->tried | racing, s->room, NULL);
            more = cand >= 0;
        }
        if (cand >= 0) {
            tcp_conn *c = p->eps[cand];
            int at = cand;
            cand = -1;
            s->attempts++;
            if (at != i) refresh(c, now, err);
            if (connected(c)) {
                won = c, *won_at = at;
                break;
            }
            if (c->dial == DIAL_NONE) {
                int rc = dial_begin(c, now, now + p->cfg->tcp.connect_ns, err);
                if (rc) {
                    lost(p, c, at, rc, s, now, err);
                    next = now;
                    continue;
                }
            }
            racing |= (uint64_t)1 << at;
            int64_t wait = p->cfg->tcp.attempt_delay_ns;
            if (s->deadline != INT64_MAX && (s->deadline - now) / 2 < wait)
                wait = (s->deadline - now) / 2;
            /* A probe joined began earlier: its time runs from then. */
            c->dial_patient = c->dial_start + wait > now ? c->dial_start + wait : now;
            next = c->dial_patient;
            continue;
        }
        if (!racing) break; /* nothing under way, and nothing left to try */
        /* Wait for the sockets, until the next attempt's time, a dial's end or the deadline. */
        struct pollfd fds[SHMRPC_TCP_MAX_ENDPOINTS];
        int at[SHMRPC_TCP_MAX_ENDPOINTS], n = 0;
        int64_t wake = s->deadline;
        if (more && next < wake) wake = next;
        for (int k = 0; k < p->n_eps; k++) {
            if (!(racing >> k & 1)) continue;
            tcp_conn *c = p->eps[k];
            if (c->dial_end < wake) wake = c->dial_end;
            fds[n] = (struct pollfd){.fd = c->fd, .events = c->dial_events};
            at[n++] = k;
        }
        int r = poll(fds, (nfds_t)n, poll_ms(wake, now));
        int e = errno;
        now = shmrpc__now_ns();
        for (int k = 0; k < n; k++) {
            tcp_conn *c = p->eps[at[k]];
            int rc = r < 0 && e != EINTR ? shmrpc__tcp_sys_error(err, e, "cannot poll", c->where)
                                         : dial_step(c, r > 0 ? fds[k].revents : 0, now, err);
            if (rc > 0) continue;
            racing &= ~((uint64_t)1 << at[k]);
            if (rc < 0) {
                if (c->dial) conn_break(c);
                lost(p, c, at[k], rc, s, now, err);
                next = now;
            } else if (!won) {
                won = c, *won_at = at[k];
                dialed = true;
            } else if ((rc = made(p, c)) != 0) { /* connected too: kept */
                conn_break(c);
            }
        }
    }
    /* The attempts still under way: let go, those that had had their time left out as
     * stalled, and said among the call's reasons when none took it. */
    for (int k = 0; k < p->n_eps; k++) {
        tcp_conn *c = p->eps[k];
        if (!(racing >> k & 1) || c->probe) continue;
        dial_late(c, (now - c->dial_start) / NS_PER_MS, err);
        if (won) shmrpc__msg_append(err, "; tcp://%s answered first", won->where);
        if (!won)
            shmrpc__msg_append(&p->why, "%s%s", shmrpc__msg_get(&p->why)[0] ? "; " : "",
                               shmrpc__msg_get(err));
        bool late = now >= c->dial_patient;
        conn_break(c);
        if (late) eject(p, c, now, shmrpc__msg_get(err));
    }
    if (won && dialed) {
        int rc = made(p, won);
        if (rc) {
            conn_break(won);
            lost(p, won, *won_at, rc, s, now, err);
            won = NULL;
        }
    }
    return won;
}

/* The background work of a client's endpoints, done by each call before it chooses one
 * (the client has no thread of its own, and nothing here waits): a probe begins for each
 * endpoint whose backoff ended, and those under way move on as far as their sockets allow
 * (one poll that does not wait). A probe that ends its handshake takes its endpoint back;
 * one that fails, or has not ended within tcp.connect_timeout_ms, leaves it out for a
 * longer backoff, unless the server's process had answered it (its HELLO_ACK, or TLS's
 * flight) and then let it go or let it wait: a probe moves only when calls come, and a
 * client that calls less often than the server's handshake timeout (5 s) sends its AUTH,
 * or TLS's second flight, too late. Such a host answers: it is taken back without a
 * connection, and the next call that goes there makes one (race, which bounds the wait
 * by the attempt delay). An endpoint left out with asynchronous calls still in flight on
 * its connection waits for them first. Done at most once a millisecond, so that a client
 * calling back to back pays one poll per millisecond while a probe is under way. */
#define TEND_EVERY_NS NS_PER_MS

static void tend(tcp_pool *p, int64_t now, shmrpc_buf *scratch)
{
    if (now - p->tended_ns < TEND_EVERY_NS) return;
    p->tended_ns = now;
    struct pollfd fds[SHMRPC_TCP_MAX_ENDPOINTS];
    int at[SHMRPC_TCP_MAX_ENDPOINTS], n = 0;
    for (int i = 0; i < p->n_eps; i++) {
        tcp_conn *c = p->eps[i];
        if (!c->suspect || (!c->probe && now < c->eject_until)) continue;
        if (!c->probe) {
            if (connected(c) && c->n_inflight) {
                c->eject_until = now + backoff(p, c, now);
                continue;
            }
            conn_break(c);
            int rc = dial_begin(c, now, now + p->cfg->tcp.connect_ns, scratch);
            if (rc) {
                eject(p, c, now, shmrpc__msg_get(scratch));
                continue;
            }
            c->probe = true;
        }
        fds[n] = (struct pollfd){.fd = c->fd, .events = c->dial_events};
        at[n++] = i;
    }
    if (n == 0) return;
    int r = poll(fds, (nfds_t)n, 0);
    for (int k = 0; k < n; k++) {
        tcp_conn *c = p->eps[at[k]];
        int rc = dial_step(c, r > 0 ? fds[k].revents : 0, now, scratch);
        if (rc == 0 && (rc = made(p, c)) != 0) conn_break(c);
        if (rc < 0 && c->heard && (rc == SHMRPC_EUNAVAIL || rc == SHMRPC_ETIMEDOUT)) {
            c->suspect = false; /* it answered, too soon for this client */
            c->eject_until = 0;
        } else if (rc < 0) {
            eject(p, c, now, shmrpc__msg_get(scratch));
        }
    }
}

enum { FATE_DONE, FATE_NOT_RUN };

/* One try of a call on c, which is connected. FATE_NOT_RUN when the call cannot have run
 * there (a request not written whole, a DRAIN or a closing ERROR read before its answer):
 * then a try of another endpoint may follow. Else FATE_DONE with the call's status: a
 * connection that broke after the whole request was written fails it with
 * SHMRPC_EPEERDIED, since it may have run; a deadline that passed leaves c out as stalled
 * when another endpoint takes calls. */
static int attempt(tcp_pool *p, tcp_conn *c, int64_t j, uint32_t sid, shmrpc_bytes req,
                   shmrpc_buf *resp, int64_t deadline, int *fate, shmrpc_buf *err)
{
    *fate = FATE_NOT_RUN;
    bool health = sid == SHMRPC_HEALTH_METHOD_ID;
    uint32_t esid = j >= 0 ? c->map[j] : sid;
    /* Alone on the connection (no answer owed: no asynchronous call, and none that gave up
     * on its answer, which may still come): the server may run it on the thread that reads
     * the connection, without a handoff (docs/wire.md, "Calls in flight"). Only a server of
     * revision 3 knows the flag; older ones refuse it. */
    uint16_t flags = c->proto >= 3 && c->owed == 0 ? SHMRPC__FLAG_LONE : 0;
    uint64_t id = ++c->next_id;
    int rc = send_request(c, esid, id, flags, req, deadline, err);
    bool sent = rc == 0;
    if (sent) rc = await_answer(c, esid, id, resp, deadline, err);
    consume(c);
    if (rc == 0) {
        c->fails = 0;
        *fate = FATE_DONE;
        return 0;
    }
    if (c->drained && health) {
        *fate = FATE_DONE;
        shmrpc_buf_clear(resp);
        uint8_t state = SHMRPC_HEALTH_DRAINING;
        return shmrpc_buf_append(resp, &state, 1) ? SHMRPC_ENOMEM : 0;
    }
    if (c->drained || c->left || (!sent && rc == SHMRPC_EUNAVAIL && c->fd < 0)) return rc;
    *fate = FATE_DONE;
    if (rc == SHMRPC_ETIMEDOUT) stalled(p, c, shmrpc__now_ns(), shmrpc__msg_get(err));
    if (sent && rc == SHMRPC_EUNAVAIL && c->fd < 0) {
        /* Not left out: the next call connects again, and only a failed connect (the
         * server is gone, not just one of its workers) leaves it out. */
        shmrpc__msg_append(err, "; the request had been sent, so the call may have run (it is "
                                "not sent again)");
        p->resolve_due = true;
        return SHMRPC_EPEERDIED;
    }
    return rc;
}

/* Why a call found no endpoint to try: each endpoint left out, and for how long. */
static void left_out(tcp_pool *p, int64_t now, shmrpc_buf *why)
{
    for (int i = 0; i < p->n_eps; i++) {
        const tcp_conn *c = p->eps[i];
        if (!c->suspect) continue;
        const char *sep = shmrpc__msg_get(why)[0] ? "; " : "";
        if (c->probe)
            shmrpc__msg_append(why, "%stcp://%s is left out while a probe of it is under way (%s)",
                               sep, c->where, c->why);
        else
            shmrpc__msg_append(
                why, "%stcp://%s is left out for %" PRId64 " ms more (%s)", sep, c->where,
                c->eject_until > now ? (c->eject_until - now + NS_PER_MS - 1) / NS_PER_MS : 0,
                c->why);
    }
}

static void tcp_progress(shmrpc__conn *base, int64_t deadline);

static int tcp_call(shmrpc__conn *base, uint32_t sid, shmrpc_bytes req, shmrpc_buf *resp,
                    int64_t timeout_ms, shmrpc_buf *err)
{
    tcp_pool *p = (tcp_pool *)base;
    if (shmrpc__self_pid() != p->pid) {
        shmrpc__msg_set(err, "this connection belongs to process %d", (int)p->pid);
        return SHMRPC_EINVAL;
    }
    int64_t now = shmrpc__now_ns();
    int64_t deadline = shmrpc__deadline_at(&(shmrpc__deadline){0, timeout_ms}, now);
    bool health = sid == SHMRPC_HEALTH_METHOD_ID;
    /* The client's method id: each endpoint maps it to its own server's id. */
    int64_t j = -1;
    for (uint32_t i = 0; !health && i < p->info->n_methods; i++)
        if (p->map[i] == sid) {
            j = i;
            break;
        }
    maybe_resolve(p, now, err);
    tend(p, now, err);
    tcp_search s = {.deadline = deadline};
    int tries = 0;
    shmrpc_buf_clear(&p->why);
    while (tries < 2 * SHMRPC_TCP_MAX_ENDPOINTS) {
        int i = choose(p, s.tried, false, NULL);
        if (i < 0) break;
        tries++;
        tcp_conn *c = p->eps[i];
        refresh(c, now, err);
        if (c->drained && health) { /* the server this client was connected to stops */
            uint8_t state = SHMRPC_HEALTH_DRAINING;
            return shmrpc_buf_append(resp, &state, 1) ? SHMRPC_ENOMEM : 0;
        }
        if (!connected(c) && !(c = race(p, i, &s, &i, err))) break;
        int fate;
        c->outstanding++;
        int rc = attempt(p, c, j, sid, req, resp, deadline, &fate, err);
        c->outstanding--;
        if (fate == FATE_DONE) return rc;
        /* An endpoint is tried once per call: a connection found closed or drained before
         * the request was sent is made again within the try (refresh, race), as it always
         * was, but a call is never sent over a second new connection to the same endpoint. */
        s.tried |= (uint64_t)1 << i;
        if (s.status == 0 || s.status == SHMRPC_EUNAVAIL) s.status = rc;
        shmrpc__msg_append(&p->why, "%s%s", shmrpc__msg_get(&p->why)[0] ? "; " : "",
                           shmrpc__msg_get(err));
        shmrpc_buf_clear(resp);
        now = shmrpc__now_ns();
        if (now >= deadline) break;
    }
    now = shmrpc__now_ns();
    if (now >= deadline) {
        shmrpc__msg_set(err,
                        "the deadline passed before an endpoint took the call, which did not "
                        "run: %s",
                        shmrpc__msg_get(&p->why)[0] ? shmrpc__msg_get(&p->why) : "no try ended");
        return SHMRPC_ETIMEDOUT;
    }
    if (tries == 1 && p->n_eps == 1 && s.status) { /* as a single address always said it */
        shmrpc__msg_set(err, "%s", shmrpc__msg_get(&p->why));
        return s.status;
    }
    left_out(p, now, &p->why);
    if (tries == 0 && p->n_eps == 1) {
        shmrpc__msg_set(err, "%s: the call was not sent", shmrpc__msg_get(&p->why));
        return SHMRPC_EUNAVAIL;
    }
    shmrpc__msg_set(err, "no endpoint of tcp://%s took the call, which did not run: %s", p->list,
                    shmrpc__msg_get(&p->why));
    return s.status ? s.status : SHMRPC_EUNAVAIL;
}

/* --- many calls in flight (docs/wire.md, "Calls in flight") ------------------------------ */

/* Sends k's request on c, which is connected: FATE_DONE once it went out whole (k waits on
 * c) or failed in a way that ends it (k->done); FATE_NOT_RUN when it cannot have run there. */
static int send_async(tcp_conn *c, shmrpc__pending *k, int *fate, shmrpc_buf *err)
{
    *fate = FATE_NOT_RUN;
    uint32_t esid = k->j >= 0 ? c->map[k->j] : k->sid;
    uint64_t id = ++c->next_id;
    int rc =
        send_request(c, esid, id, 0, shmrpc_bytes_of(k->req.data, k->req.len), k->deadline, err);
    if (c->fd < 0 && c->inflight) fail_sending(c, rc, err);
    /* Not written whole (it broke, or the server broke the protocol meanwhile): it did not
     * run there. */
    if ((rc == SHMRPC_EUNAVAIL || rc == SHMRPC_EPROTO) && c->fd < 0) return rc;
    *fate = FATE_DONE;
    if (rc) {
        shmrpc__msg_set(&k->msg, "%s", shmrpc__msg_get(err));
        pend_done(k, rc);
        return rc;
    }
    k->rid = id;
    k->sid = esid;
    k->where = c;
    k->prev = NULL;
    k->next = c->inflight;
    if (c->inflight) c->inflight->prev = k;
    c->inflight = k;
    c->n_inflight++;
    c->outstanding++;
    return 0;
}

/* Sends k to an endpoint it has not been tried on (k->tried), waiting for room (answers)
 * while every endpoint that could take it is full. Ends with k in flight or done. */
static void place(tcp_pool *p, shmrpc__pending *k, shmrpc_buf *err)
{
    tcp_search s = {.deadline = k->deadline, .room = true};
    shmrpc_buf_clear(&p->why);
    for (int tries = 0; tries < 2 * SHMRPC_TCP_MAX_ENDPOINTS;) {
        int64_t now = shmrpc__now_ns();
        if (now >= k->deadline) {
            shmrpc__msg_set(&k->msg, "the deadline passed before an endpoint took the call, "
                                     "which did not run");
            if (shmrpc__msg_get(&p->why)[0])
                shmrpc__msg_append(&k->msg, ": %s", shmrpc__msg_get(&p->why));
            pend_done(k, SHMRPC_ETIMEDOUT);
            return;
        }
        bool full;
        s.tried = k->tried;
        int i = choose(p, s.tried, true, &full);
        if (i < 0 && full) { /* room comes with answers */
            tcp_progress(&p->base, k->deadline);
            continue;
        }
        if (i < 0) break;
        tries++;
        tcp_conn *c = p->eps[i];
        refresh(c, now, err);
        if (!connected(c)) {
            c = race(p, i, &s, &i, err);
            k->tried = s.tried;
            if (!c) continue; /* the deadline passed, or no endpoint is left */
        }
        int fate;
        int rc = send_async(c, k, &fate, err);
        if (fate == FATE_DONE) return;
        k->tried |= (uint64_t)1 << i;
        if (s.status == 0 || s.status == SHMRPC_EUNAVAIL) s.status = rc;
        shmrpc__msg_append(&p->why, "%s%s", shmrpc__msg_get(&p->why)[0] ? "; " : "",
                           shmrpc__msg_get(err));
    }
    left_out(p, shmrpc__now_ns(), &p->why);
    shmrpc__msg_set(&k->msg, "no endpoint of tcp://%s took the call, which did not run: %s",
                    p->list, shmrpc__msg_get(&p->why));
    pend_done(k, s.status ? s.status : SHMRPC_EUNAVAIL);
}

static int tcp_start(shmrpc__conn *base, shmrpc__pending *k, shmrpc_buf *err)
{
    tcp_pool *p = (tcp_pool *)base;
    if (shmrpc__self_pid() != p->pid) {
        shmrpc__msg_set(&k->msg, "this connection belongs to process %d", (int)p->pid);
        pend_done(k, SHMRPC_EINVAL);
        return 0;
    }
    int64_t now = shmrpc__now_ns();
    maybe_resolve(p, now, err);
    tend(p, now, err);
    place(p, k, err);
    return 0;
}

/* The server of c takes no more calls (a DRAIN, or an ERROR that closes): it answered
 * every call it ran before saying so, so those still in flight did not run there and go
 * elsewhere within their deadlines. */
static void move_inflight(tcp_pool *p, tcp_conn *c, int index, shmrpc_buf *err)
{
    shmrpc__pending *moving = NULL;
    while (c->inflight) {
        shmrpc__pending *k = c->inflight;
        pend_unlink(c, k);
        k->tried |= (uint64_t)1 << index;
        k->next = moving;
        moving = k;
    }
    while (moving) {
        shmrpc__pending *k = moving;
        moving = k->next;
        k->next = NULL;
        place(p, k, err);
    }
}

/* One frame read from c, where calls are in flight. */
static void on_frame(tcp_pool *p, tcp_conn *c, int index, const shmrpc__frame_hdr *h,
                     shmrpc_buf *err)
{
    if (h->kind == SHMRPC__KIND_PING) {
        uint8_t pong[SHMRPC__FRAME_HDR_SIZE];
        shmrpc__frame_hdr q = {.kind = SHMRPC__KIND_PONG, .request_id = h->request_id};
        shmrpc__frame_hdr_encode(&q, pong);
        int rc = send_all(c, pong, sizeof pong, shmrpc__now_ns() + c->cfg->tcp.connect_ns, err);
        if (rc) fail_sending(c, rc, err);
        return;
    }
    if (h->kind == SHMRPC__KIND_PONG) return;
    if (h->kind == SHMRPC__KIND_DRAIN || (h->kind == SHMRPC__KIND_ERROR && h->request_id == 0)) {
        if (h->kind == SHMRPC__KIND_DRAIN) {
            c->drained = true;
            shmrpc__msg_set(err, "tcp://%s is draining (its server stops): the call did not run",
                            c->where);
        } else {
            c->left = true;
            error_frame(c, err);
        }
        conn_break(c);
        move_inflight(p, c, index, err);
        return;
    }
    shmrpc__pending *k = NULL;
    bool answer = h->kind == SHMRPC__KIND_RESPONSE || h->kind == SHMRPC__KIND_ERROR;
    for (shmrpc__pending *q = c->inflight; answer && q && !k; q = q->next)
        if (q->rid == h->request_id) k = q;
    if (answer && !k && h->request_id != 0 && h->request_id <= c->next_id) {
        answer_read(c); /* a call that timed out or was abandoned, or an answer given twice */
        return;
    }
    if (!k || h->method != k->sid) {
        char why[ADDR_MAX + 200];
        snprintf(why, sizeof why,
                 "tcp://%s sent a %s frame for request %" PRIu64 " of method %" PRIu32
                 ", which no call in flight waits for; the calls in flight may have run",
                 c->where, shmrpc__frame_kind_name(h->kind), h->request_id, h->method);
        conn_break(c);
        fail_inflight(c, SHMRPC_EPROTO, why);
        return;
    }
    pend_unlink(c, k);
    answer_read(c);
    if (h->kind == SHMRPC__KIND_ERROR) {
        int rc = error_frame(c, &k->msg);
        pend_done(k, rc ? rc : SHMRPC_EPROTO);
        return;
    }
    uint16_t comp = h->flags & SHMRPC__FLAG_COMPRESSION;
    int rc;
    if (comp) {
        uint32_t max = shmrpc__tcp_cap32(k->resp.max ? k->resp.max : SHMRPC_DEFAULT_MAX_MSG);
        rc = shmrpc__body_decompress(comp, frame_body(c), max, &k->resp, &k->msg);
    } else {
        shmrpc_bytes body = frame_body(c);
        rc = shmrpc_buf_append(&k->resp, body.ptr, body.len);
    }
    c->fails = 0;
    if (c->suspect) { /* it stalled a call, and answers: taken back */
        c->suspect = false;
        c->eject_until = 0;
    }
    pend_done(k, rc);
}

/* Whether c->in holds, past the frame in hand, a whole frame or a header that fails to
 * decode: read_one acts on either at once (a bad header that came with the frame before it
 * would otherwise wait for bytes that may never come). */
static bool frame_buffered(const tcp_conn *c, shmrpc_buf *scratch)
{
    size_t left = c->in.len - c->used;
    if (left < SHMRPC__FRAME_HDR_SIZE) return false;
    shmrpc__frame_hdr h;
    if (shmrpc__frame_hdr_decode(c->in.data + c->used, SHMRPC__FRAME_HDR_SIZE, max_body(c), c->comp,
                                 &h, scratch))
        return true;
    return left - SHMRPC__FRAME_HDR_SIZE >= h.body_len;
}

/* Reads one frame from c and acts on it; a connection that breaks fails what is in flight
 * on it with SHMRPC_EPEERDIED (a frame it should not have sent: SHMRPC_EPROTO). */
static void read_one(tcp_pool *p, tcp_conn *c, int index, shmrpc_buf *err)
{
    int64_t until = INT64_MIN; /* the rest of a begun frame: until the last call's deadline */
    for (shmrpc__pending *k = c->inflight; k; k = k->next)
        if (k->deadline > until) until = k->deadline;
    if (until == INT64_MIN) until = INT64_MAX;
    shmrpc__frame_hdr h;
    int rc = read_frame(c, max_body(c), &h, until, err);
    if (rc) {
        int status = rc == SHMRPC_EPROTO || rc == SHMRPC_ETOOBIG || rc == SHMRPC_EVERSION
                         ? SHMRPC_EPROTO
                         : SHMRPC_EPEERDIED;
        char why[400];
        snprintf(why, sizeof why, "%s", shmrpc__msg_get(err));
        conn_break(c);
        fail_inflight(c, status, why);
        p->resolve_due = true;
        return;
    }
    on_frame(p, c, index, &h, err);
}

/* Finishes the calls whose deadlines passed (their endpoints stalled them); true when any
 * did. */
static bool expire(tcp_pool *p, int64_t now)
{
    bool any = false;
    for (int i = 0; i < p->n_eps; i++) {
        tcp_conn *c = p->eps[i];
        bool late = false;
        for (shmrpc__pending *k = c->inflight, *next; k; k = next) {
            next = k->next;
            if (now < k->deadline) continue;
            pend_unlink(c, k);
            shmrpc__msg_set(&k->msg,
                            "the deadline passed waiting for tcp://%s (the call may have run; "
                            "its answer will be dropped)",
                            c->where);
            pend_done(k, SHMRPC_ETIMEDOUT);
            any = late = true;
        }
        if (late) {
            char why[ADDR_MAX + 64];
            snprintf(why, sizeof why, "the deadline passed waiting for tcp://%s", c->where);
            stalled(p, c, now, why);
        }
    }
    return any;
}

/* One round: frames already read are acted on; else poll waits for the connections with
 * calls in flight until one is readable, a call's deadline, or deadline. */
static void tcp_progress(shmrpc__conn *base, int64_t deadline)
{
    tcp_pool *p = (tcp_pool *)base;
    shmrpc_buf *err = &p->why;
    int64_t now = shmrpc__now_ns();
    if (expire(p, now)) return;
    tend(p, now, &p->scratch);
    bool acted = false;
    for (int i = 0; i < p->n_eps; i++) {
        tcp_conn *c = p->eps[i];
        while (c->inflight && c->fd >= 0 &&
               (frame_buffered(c, err) || shmrpc__io_pending(&c->io))) {
            read_one(p, c, i, err);
            acted = true;
        }
    }
    if (acted) return;
    struct pollfd fds[SHMRPC_TCP_MAX_ENDPOINTS];
    int at[SHMRPC_TCP_MAX_ENDPOINTS], n = 0;
    int64_t wake = deadline;
    for (int i = 0; i < p->n_eps; i++) {
        tcp_conn *c = p->eps[i];
        if (!c->inflight || c->fd < 0) continue;
        for (shmrpc__pending *k = c->inflight; k; k = k->next)
            if (k->deadline < wake) wake = k->deadline;
        fds[n] = (struct pollfd){.fd = c->fd, .events = POLLIN};
        at[n++] = i;
    }
    if (n == 0) return;
    int ms = -1;
    if (wake != INT64_MAX) {
        int64_t left = wake - now;
        ms = left <= 0 ? 0 : (int)((left + NS_PER_MS - 1) / NS_PER_MS);
        if (left > (int64_t)INT32_MAX * NS_PER_MS) ms = INT32_MAX;
    }
    int r = poll(fds, (nfds_t)n, ms);
    if (r <= 0) {
        expire(p, shmrpc__now_ns());
        return;
    }
    for (int k = 0; k < n; k++) {
        tcp_conn *c = p->eps[at[k]];
        if (fds[k].revents && c->inflight && c->fd == fds[k].fd) read_one(p, c, at[k], err);
    }
}

static void tcp_abandon(shmrpc__conn *base, shmrpc__pending *k)
{
    (void)base;
    if (k->where) pend_unlink(k->where, k);
}

static void tcp_conn_close(shmrpc__conn *base)
{
    tcp_pool *p = (tcp_pool *)base;
    for (int i = 0; i < p->n_eps; i++)
        ep_free(p->eps[i]);
    if (p->lookup) lookup_free(p->lookup);
    shmrpc_buf_destroy(&p->why);
    shmrpc_buf_destroy(&p->scratch);
    shmrpc_buf_destroy(&p->tls_why);
    free(p->list);
    free(p);
}

static const shmrpc__conn_ops tcp_conn_ops = {.call = tcp_call,
                                              .close = tcp_conn_close,
                                              .start = tcp_start,
                                              .progress = tcp_progress,
                                              .abandon = tcp_abandon};

/* Parses and resolves the list, then connects to its endpoints in the order calls would
 * choose them (the list's), Happy Eyeballs style (race), within connect_timeout_ms and the
 * client's call timeout: the first to end its handshake takes the connection, and its table
 * is the client's. The others connect when a call first goes to them. */
int shmrpc__tcp_connect(const char *where, const shmrpc_service_info *info,
                        const shmrpc__client_cfg *cfg, uint32_t *map, shmrpc__table *table,
                        shmrpc__conn **out, shmrpc_buf *err)
{
    tcp_pool *p = calloc(1, sizeof *p);
    if (!p) return SHMRPC_ENOMEM;
    p->base.ops = &tcp_conn_ops;
    p->pid = getpid();
    p->info = info;
    p->cfg = cfg;
    p->map = map;
    p->table = table;
    shmrpc_buf_init(&p->why);
    shmrpc_buf_init(&p->tls_why);
    shmrpc_buf_init(&p->scratch);
    p->list = strdup(where);
    int rc = p->list ? parse_list(p, where, err) : SHMRPC_ENOMEM;
    if (rc == 0) rc = resolve(p, err);
    if (p->tls_rc != 0) {
        rc = p->tls_rc;
        shmrpc__msg_set(err, "%s", shmrpc__msg_get(&p->tls_why));
    }
    if (rc == 0) {
        int64_t now = shmrpc__now_ns();
        tcp_search s = {.deadline = now + cfg->tcp.connect_ns};
        if (cfg->connect_call_ms >= 0) {
            int64_t at = shmrpc__deadline_at(&(shmrpc__deadline){0, cfg->connect_call_ms}, now);
            if (at < s.deadline) s.deadline = at;
        }
        int i = choose(p, 0, false, NULL);
        if (i >= 0 && race(p, i, &s, &i, err)) {
            p->cursor = (unsigned)i; /* the first call goes where the table came from */
        } else {
            rc = s.status ? s.status : SHMRPC_ETIMEDOUT;
            if (s.attempts > 1)
                shmrpc__msg_set(err, "no endpoint of tcp://%s could be connected: %s", p->list,
                                shmrpc__msg_get(&p->why));
            else
                shmrpc__msg_set(err, "%s", shmrpc__msg_get(&p->why));
        }
    }
    if (rc) {
        tcp_conn_close(&p->base);
        return rc;
    }
    *out = &p->base;
    return 0;
}
