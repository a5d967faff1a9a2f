/* SPDX-License-Identifier: MIT */
/* One tcp:// connection's bytes, blocking-style over a non-blocking socket with every wait
 * bounded by one deadline: a request sent while what the server sends meanwhile is read and
 * checked, frames read, a blocking call's answer awaited, and the asynchronous calls in
 * flight on the connection failed when it breaks. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "transport/tcp/tcp_int.h"
#include "core/wait.h"
#include "transport/tcp/tcp_client_int.h"

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
    size_t items;  /* bytes of the open stream's ITEMS frames checked */
    bool full;     /* a correct server would have sent no more: none is read */
} meanwhile;

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

bool shmrpc__tcp_connected(const tcp_conn *c)
{
    return c->fd >= 0 && c->dial == DIAL_NONE;
}

bool shmrpc__tcp_streaming(const tcp_conn *c)
{
    return c->stream && c->stream->gen == c->gen;
}

/* Lets go of a broken connection, or one being made, and of what was read from it: the
 * next owes nothing. */
void shmrpc__tcp_conn_break(tcp_conn *c)
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
    c->skip_answer = false;
    c->gen++;
    c->n_dead = 0;
    c->dead_lost = false;
    c->cancel_due = 0;
    c->deaf = false;
}

int shmrpc__tcp_broken(tcp_conn *c, shmrpc_buf *err, const char *what)
{
    int e = errno;
    if (c->io.failed) { /* TLS failed: OpenSSL says why (a certificate refused, say) */
        int rc = shmrpc__io_error(&c->io, c->where, err);
        shmrpc__tcp_conn_break(c);
        return rc;
    }
    shmrpc__tcp_conn_break(c);
    shmrpc__msg_set(err, "the connection to tcp://%s broke %s", c->where, what);
    if (e) shmrpc__msg_append(err, ": %s", strerror(e));
    return SHMRPC_EUNAVAIL;
}

/* The largest frame body a connection with calls in flight reads: the client's maximum. */
uint32_t shmrpc__tcp_max_body(const tcp_conn *c)
{
    return shmrpc__tcp_cap32(c->cfg->max_msg);
}

/* Whether request id's caller still waits for its answer: a call in flight on c, or the
 * last request sent (the one going out, or the blocking call whose answer is awaited). */
static bool awaited(const tcp_conn *c, uint64_t id)
{
    if (id == c->next_id || (c->stream && c->stream->rid == id)) return true;
    for (const shmrpc__pending *k = c->inflight; k; k = k->next)
        if (k->rid == id) return true;
    return false;
}

/* Lets go of the frame whose header is at m->at in c->in: what came of it is dropped,
 * and the rest of its body (c->skip) is read past as it comes. answer: it is the answer of
 * a call that gave up (owed until it is read whole), not a dead stream's ITEMS. */
static void skip_answer(tcp_conn *c, const meanwhile *m, uint32_t body_len, bool answer)
{
    size_t here = c->in.len - m->at - SHMRPC__FRAME_HDR_SIZE;
    size_t drop = SHMRPC__FRAME_HDR_SIZE + (here < body_len ? here : body_len);
    memmove(c->in.data + m->at, c->in.data + m->at + drop, c->in.len - m->at - drop);
    c->in.len -= drop;
    c->skip = body_len - (drop - SHMRPC__FRAME_HDR_SIZE);
    c->skip_answer = answer;
    if (c->skip == 0 && answer) shmrpc__tcp_answer_read(c);
}

/* Reads and lets go of at most room bytes of the answer being skipped (c->skip), through
 * the room past c->in's end: k as recv returns it. */
static ssize_t skip_some(tcp_conn *c, size_t room, int flags)
{
    if (room > c->skip) room = c->skip;
    ssize_t k = shmrpc__io_recv(&c->io, c->in.data + c->in.len, room, flags);
    if (k > 0) c->skip -= (size_t)k;
    if (k > 0 && c->skip == 0 && c->skip_answer) shmrpc__tcp_answer_read(c);
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
        if (shmrpc__frame_hdr_decode(c->in.data + m->at, SHMRPC__FRAME_HDR_SIZE,
                                     shmrpc__tcp_max_body(c), c->agreed, &h, err)) {
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
        size_t n = SHMRPC__FRAME_HDR_SIZE + (size_t)h.body_len;
        if (h.kind == SHMRPC__KIND_ITEMS) {
            /* The open stream's: kept, as much as its window and a frame's header allow
             * (or its one large item); a stream's closed early: let go as they come. */
            if (c->stream && h.request_id == c->stream->rid) {
                m->items += n;
                m->full = m->items > SHMRPC__STREAM_WINDOW + SHMRPC__FRAME_HDR_SIZE;
                m->at += n;
                continue;
            }
            if (shmrpc__tcp_dead_stream(c, h.request_id) ||
                (c->dead_lost && h.request_id <= c->next_id && !awaited(c, h.request_id))) {
                skip_answer(c, m, h.body_len, false);
                continue;
            }
            shmrpc__msg_set(err,
                            "tcp://%s sent an ITEMS frame for request %" PRIu64
                            ", which opened no stream, while a request went out",
                            c->where, h.request_id);
            return SHMRPC_EPROTO;
        }
        /* A WINDOW (revision 9) is a small frame: the open stream's, or a dead one's, which
         * its reader checks. */
        if (!answer && h.kind != SHMRPC__KIND_ERROR && h.kind != SHMRPC__KIND_PING &&
            h.kind != SHMRPC__KIND_PONG && h.kind != SHMRPC__KIND_DRAIN &&
            h.kind != SHMRPC__KIND_WINDOW) {
            shmrpc__msg_set(err, "tcp://%s sent a %s frame, which a server does not send", c->where,
                            kind);
            return SHMRPC_EPROTO;
        }
        /* Owed to a call no longer in flight (the answers owed less the calls in flight
         * count those): not kept. */
        if (answer && !awaited(c, h.request_id) && c->owed > (uint32_t)c->n_inflight) {
            shmrpc__tcp_dead_forget(c, h.request_id); /* a stream closed early ends so */
            skip_answer(c, m, h.body_len, true);
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

int shmrpc__tcp_send_all(tcp_conn *c, const uint8_t *p, size_t n, int64_t deadline, shmrpc_buf *err)
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
                shmrpc__tcp_conn_break(c);
                shmrpc__msg_set(err, "the deadline passed while sending to tcp://%s", c->where);
                return rc;
            }
            if (rc == SHMRPC_EPROTO) { /* the server broke the protocol: said in err */
                shmrpc__tcp_conn_break(c);
                return rc;
            }
            if (rc) return shmrpc__tcp_broken(c, err, "while sending");
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(c->fd, POLLOUT, deadline);
            if (rc == SHMRPC_ETIMEDOUT) { /* half a frame sent: the stream is unusable */
                shmrpc__tcp_conn_break(c);
                shmrpc__msg_set(err, "the deadline passed while sending to tcp://%s", c->where);
                return rc;
            }
            if (rc) return shmrpc__tcp_broken(c, err, "while sending");
            continue;
        }
        return shmrpc__tcp_broken(c, err, "while sending");
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

/* The longest one wait of a call that may be cancelled lasts (tcp_conn.cancel_of): it looks
 * whether it was between two. */
#define CANCEL_LOOK_MS (SHMRPC__CHECK_NS / NS_PER_MS)

/* Bounds the next blocking recv by what is left until deadline, less what the kernel may
 * add (rcvtimeo_early_ns), in whole milliseconds, and for a call that may be cancelled by
 * CANCEL_LOOK_MS (then *look is set); false when too little is left for that: then poll,
 * whose timer is exact, waits for the rest. Calls with one timeout come to the same value,
 * so the socket option is set once rather than per call. */
static bool recv_timeout(tcp_conn *c, int64_t deadline, bool *look)
{
    int64_t ms = 0;
    *look = false;
    if (deadline != INT64_MAX) {
        int64_t left = deadline - shmrpc__now_ns();
        ms = (left - rcvtimeo_early_ns(left)) / NS_PER_MS;
        if (ms < 1) return false;
    }
    if (c->cancel_of && (ms == 0 || ms > CANCEL_LOOK_MS)) {
        ms = CANCEL_LOOK_MS;
        *look = true;
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
    bool exact = false, look = false;
    while (c->in.len < want) {
        int64_t now = deadline != INT64_MAX || c->cancel_of ? shmrpc__now_ns() : 0;
        if (deadline != INT64_MAX && now >= deadline) {
            shmrpc__msg_set(err, "the deadline passed waiting for tcp://%s", c->where);
            return SHMRPC_ETIMEDOUT;
        }
        if (c->cancel_of && shmrpc__conn_cancelled(c->cancel_of)) {
            shmrpc__msg_set(err, "the call was cancelled by its client waiting for tcp://%s",
                            c->where);
            return SHMRPC_ECANCELLED;
        }
        int flags = 0;
        if (exact || !recv_timeout(c, deadline, &look)) {
            flags = MSG_DONTWAIT; /* TLS may read more than poll saw */
            int64_t until = deadline;
            if (c->cancel_of && deadline - now > SHMRPC__CHECK_NS) until = now + SHMRPC__CHECK_NS;
            /* TLS may hold what came already, where poll does not see it. */
            int rc = shmrpc__io_pending(&c->io) ? 0 : wait_fd(c->fd, POLLIN, until);
            if (rc == SHMRPC_ETIMEDOUT) continue; /* said above */
            if (rc) return shmrpc__tcp_broken(c, err, "while receiving");
        }
        bool skipping = c->skip != 0; /* an answer let go comes first */
        ssize_t k = skipping ? skip_some(c, c->in.cap - c->in.len, flags)
                             : shmrpc__io_recv(&c->io, c->in.data + c->in.len,
                                               c->in.cap - c->in.len, flags);
        if (k > 0) {
            if (!skipping) c->in.len += (size_t)k;
            continue;
        }
        /* A recv that waited its whole timeout: poll waits exactly for the rest, unless
         * the timeout was only the time between two looks at the cancels. */
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !look) exact = true;
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k == 0) errno = 0;
        return shmrpc__tcp_broken(c, err, k == 0 ? "(the server closed it)" : "while receiving");
    }
    return 0;
}

/* Drops the last frame read from the front of c->in, keeping what came after it. */
void shmrpc__tcp_consume(tcp_conn *c)
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

/* Reads one frame to the front of c->in. A timeout or a cancel before any of its bytes
 * came leaves the stream usable (a late answer is skipped when it comes); later, it does
 * not. */
int shmrpc__tcp_read_frame(tcp_conn *c, uint32_t max, shmrpc__frame_hdr *h, int64_t deadline,
                           shmrpc_buf *err)
{
    shmrpc__tcp_consume(c);
    int rc = 0;
    if (c->in.len < SHMRPC__FRAME_HDR_SIZE)
        rc = fill(c, SHMRPC__FRAME_HDR_SIZE - c->in.len, deadline, err);
    if ((rc == SHMRPC_ETIMEDOUT || rc == SHMRPC_ECANCELLED) && c->in.len) shmrpc__tcp_conn_break(c);
    if (rc) return rc;
    rc = shmrpc__frame_hdr_decode(c->in.data, SHMRPC__FRAME_HDR_SIZE, max, c->agreed, h, err);
    if (rc) {
        shmrpc__tcp_conn_break(c);
        return rc;
    }
    size_t need = SHMRPC__FRAME_HDR_SIZE + (size_t)h->body_len;
    if (c->in.len < need) rc = fill(c, need - c->in.len, deadline, err);
    if (rc == SHMRPC_ETIMEDOUT || rc == SHMRPC_ECANCELLED) shmrpc__tcp_conn_break(c);
    if (rc == 0) c->used = need;
    return rc;
}

int shmrpc__tcp_send_request(tcp_conn *c, uint32_t sid, uint64_t id, uint16_t flags,
                             shmrpc_bytes meta, shmrpc_bytes req, int64_t deadline, shmrpc_buf *err)
{
    if (req.len > c->peer_max) {
        shmrpc__msg_set(err, "a request of %zu bytes is above the server's maximum of %" PRIu32,
                        req.len, c->peer_max);
        return SHMRPC_ETOOBIG;
    }
    /* A CANCEL that found no room earlier goes first: the server then learns of it before
     * any later call, and its handler stops before that call runs beside it. */
    if (c->cancel_due && c->proto >= 5) {
        uint64_t due = c->cancel_due;
        c->cancel_due = 0;
        uint8_t frame[SHMRPC__FRAME_HDR_SIZE];
        shmrpc__frame_hdr_encode(
            &(shmrpc__frame_hdr){.kind = SHMRPC__KIND_CANCEL, .request_id = due}, frame);
        int rc = shmrpc__tcp_send_all(c, frame, sizeof frame, deadline, err);
        if (rc) return rc;
    }
    shmrpc_buf_clear(&c->out);
    /* What is left of the call's time, for its handler (revision 4; docs/wire.md). */
    int64_t budget = -1;
    if (c->proto >= 4 && deadline != INT64_MAX) {
        budget = deadline - shmrpc__now_ns();
        if (budget < 1) budget = 1;
    }
    /* A server of revision 6 or less hears no metadata: the call goes without it. */
    if (c->proto < 7) meta.len = 0;
    int rc = shmrpc__tcp_put_msg_frame(&c->out, SHMRPC__KIND_REQUEST, flags, sid, id, budget, meta,
                                       req, c->comp, c->threshold);
    if (rc) {
        shmrpc__msg_set(err, "cannot frame the request: %s", shmrpc_strerror(rc));
        return rc;
    }
    rc = shmrpc__tcp_send_all(c, c->out.data, c->out.len, deadline, err);
    if (rc == 0) c->owed++;
    if (c->out.cap > ((size_t)1 << 20)) {
        shmrpc_buf_destroy(&c->out);
        shmrpc_buf_init(&c->out);
    }
    return rc;
}

/* Sends a small frame without waiting: 0 once sent, 1 when there was no room for any of
 * it (or, for a window, the server closed its side), or the status of the connection that
 * broke. A socket with no room for it (a server
 * that reads nothing) is not told, rather than hold the caller up for seconds. Only a frame
 * begun must be ended, and TLS must finish a record it began: then it waits, as a PONG
 * does. */
static int send_now(tcp_conn *c, const uint8_t *frame, size_t n, bool window, shmrpc_buf *err)
{
    ssize_t k = shmrpc__io_send(&c->io, frame, n);
    if (k == (ssize_t)n) return 0;
    /* A server that closed the connection (it stopped after a stream's end, say) cannot be
     * told of a window, but the frames it sent before are still to be read (the stream's end
     * among them): not broken here (deaf). */
    if (window && k < 0 && (errno == EPIPE || errno == ECONNRESET)) {
        c->deaf = true;
        return 1;
    }
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && c->io.ssl == NULL) return 1;
    size_t done = k > 0 ? (size_t)k : 0;
    if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return shmrpc__tcp_broken(c, err, "while sending");
    return shmrpc__tcp_send_all(c, frame + done, n - done,
                                shmrpc__now_ns() + c->cfg->tcp.connect_ns, err);
}

int shmrpc__tcp_send_cancel(tcp_conn *c, uint64_t id, shmrpc_buf *err)
{
    if (c->proto < 5 || !shmrpc__tcp_connected(c)) return 1;
    uint8_t frame[SHMRPC__FRAME_HDR_SIZE];
    shmrpc__frame_hdr h = {.kind = SHMRPC__KIND_CANCEL, .request_id = id};
    shmrpc__frame_hdr_encode(&h, frame);
    return send_now(c, frame, sizeof frame, false, err);
}

int shmrpc__tcp_send_window(tcp_conn *c, uint64_t id, uint32_t n, shmrpc_buf *err)
{
    if (c->proto < 8 || !shmrpc__tcp_connected(c) || c->deaf) return 1;
    uint8_t frame[SHMRPC__FRAME_HDR_SIZE + SHMRPC__WINDOW_LEN];
    shmrpc__frame_hdr h = {
        .kind = SHMRPC__KIND_WINDOW, .request_id = id, .body_len = SHMRPC__WINDOW_LEN};
    shmrpc__frame_hdr_encode(&h, frame);
    for (unsigned i = 0; i < SHMRPC__WINDOW_LEN; i++) /* big-endian */
        frame[SHMRPC__FRAME_HDR_SIZE + i] = (uint8_t)(n >> (8 * (SHMRPC__WINDOW_LEN - 1 - i)));
    return send_now(c, frame, sizeof frame, true, err);
}

/* Reads frames until the answer to request id of method sid: the result into resp. */
int shmrpc__tcp_await_answer(tcp_conn *c, uint32_t sid, uint64_t id, shmrpc_buf *resp,
                             int64_t deadline, shmrpc_buf *err)
{
    uint32_t max = shmrpc__tcp_cap32(resp->max ? resp->max : SHMRPC_DEFAULT_MAX_MSG);
    for (;;) {
        shmrpc__frame_hdr h;
        int rc = shmrpc__tcp_read_frame(c, max, &h, deadline, err);
        if (rc) return rc;
        if (h.kind == SHMRPC__KIND_PING) {
            uint8_t pong[SHMRPC__FRAME_HDR_SIZE];
            shmrpc__frame_hdr p = {.kind = SHMRPC__KIND_PONG, .request_id = h.request_id};
            shmrpc__frame_hdr_encode(&p, pong);
            rc = shmrpc__tcp_send_all(c, pong, sizeof pong, deadline, err);
            if (rc) return rc;
            continue;
        }
        if (h.kind == SHMRPC__KIND_PONG) continue;
        /* The server ran no request it read after the DRAIN, and answered the ones it ran
         * before it: this call did not run there. */
        if (h.kind == SHMRPC__KIND_DRAIN) {
            c->drained = true;
            shmrpc__tcp_conn_break(c);
            shmrpc__msg_set(err, "tcp://%s is draining (its server stops): the call did not run",
                            c->where);
            return SHMRPC_EUNAVAIL;
        }
        if (h.kind == SHMRPC__KIND_ERROR && h.request_id == 0) { /* the server leaves */
            rc = shmrpc__tcp_error_frame(c, err);
            c->left = true; /* answers to what it ran come before this: ours did not */
            shmrpc__tcp_conn_break(c);
            if (rc == SHMRPC_ETIMEDOUT) { /* its timeout, not the call's deadline */
                char why[160];
                snprintf(why, sizeof why, "%s", shmrpc__msg_get(err));
                shmrpc__msg_set(err, "tcp://%s closed the connection: %s", c->where, why);
                rc = SHMRPC_EUNAVAIL;
            }
            return rc;
        }
        /* What comes of a stream closed before this call (its items, its answer) is
         * dropped; ITEMS of no stream break the protocol. */
        rc = shmrpc__tcp_stream_route(c, &h, err);
        if (rc < 0) {
            shmrpc__tcp_conn_break(c);
            return rc;
        }
        if (rc) continue;
        bool answer = h.kind == SHMRPC__KIND_RESPONSE || h.kind == SHMRPC__KIND_ERROR;
        if (answer && h.request_id < id) { /* a call that gave up on it earlier */
            shmrpc__tcp_answer_read(c);
            continue;
        }
        if (!answer || h.request_id != id || h.method != sid) {
            shmrpc__tcp_conn_break(c);
            shmrpc__msg_set(err,
                            "tcp://%s sent a %s frame for request %" PRIu64 " of method %" PRIu32
                            " out of turn",
                            c->where, shmrpc__frame_kind_name(h.kind), h.request_id, h.method);
            return SHMRPC_EPROTO;
        }
        shmrpc__tcp_answer_read(c);
        if (h.kind == SHMRPC__KIND_ERROR) return shmrpc__tcp_error_frame(c, err);
        uint16_t comp = h.flags & SHMRPC__FLAG_COMPRESSION;
        if (comp) {
            rc = shmrpc__body_decompress(comp, shmrpc__tcp_frame_body(c), max, resp, err);
            if (rc) shmrpc__tcp_conn_break(c);
            return rc;
        }
        shmrpc_bytes body = shmrpc__tcp_frame_body(c);
        return shmrpc_buf_append(resp, body.ptr, body.len);
    }
}

/* Takes p off the connection it waits on. */
void shmrpc__tcp_pend_unlink(tcp_conn *c, shmrpc__pending *p)
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

void shmrpc__tcp_pend_done(shmrpc__pending *p, int status)
{
    p->done = true;
    p->status = status;
    if (status == 0) shmrpc_buf_clear(&p->msg);
}

/* Fails every call in flight on c, whose requests were written whole: they may have run. */
void shmrpc__tcp_fail_inflight(tcp_conn *c, int status, const char *why)
{
    while (c->inflight) {
        shmrpc__pending *p = c->inflight;
        shmrpc__tcp_pend_unlink(c, p);
        shmrpc__msg_set(&p->msg, "%s", why);
        if (status == SHMRPC_EPEERDIED)
            shmrpc__msg_append(&p->msg, "; the request had been sent, so the call may have run "
                                        "(it is not sent again)");
        shmrpc__tcp_pend_done(p, status);
    }
}

/* Fails the calls in flight on c, whose connection was let go while something was sent:
 * they may have run. SHMRPC_EPROTO when the server broke the protocol meanwhile (send_all),
 * as when a frame it should not have sent is read (read_one); else SHMRPC_EPEERDIED. */
void shmrpc__tcp_fail_sending(tcp_conn *c, int rc, const shmrpc_buf *err)
{
    if (rc != SHMRPC_EPROTO) {
        shmrpc__tcp_fail_inflight(c, SHMRPC_EPEERDIED, shmrpc__msg_get(err));
        return;
    }
    char why[400];
    snprintf(why, sizeof why, "%s; the calls in flight may have run", shmrpc__msg_get(err));
    shmrpc__tcp_fail_inflight(c, SHMRPC_EPROTO, why);
}

int shmrpc__tcp_read_broke(tcp_pool *p, tcp_conn *c, int rc, const shmrpc_buf *err, char *why,
                           size_t cap)
{
    int status = rc == SHMRPC_EPROTO || rc == SHMRPC_ETOOBIG || rc == SHMRPC_EVERSION
                     ? SHMRPC_EPROTO
                     : SHMRPC_EPEERDIED;
    snprintf(why, cap, "%s", shmrpc__msg_get(err));
    shmrpc__tcp_conn_break(c);
    shmrpc__tcp_fail_inflight(c, status, why);
    p->resolve_due = true;
    return status;
}
