/* SPDX-License-Identifier: MIT */
/* A tcp:// worker's connections: frames read within the budget and served in order, answers
 * sent, epoll events, the answers the threads give back, and each connection's deadlines. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/tcp/tcp_int.h"
#include "core/wait.h"
#include "transport/tcp/tcp_server_int.h"

/* Answers to pipelined requests are sent together up to this many bytes (peer_read). */
#define OUT_BATCH ((size_t)64 << 10)
/* The most frames of one connection served in a row (peer_read): then the worker's other
 * connections have their turn, and this one its next after them (worker.again). */
#define FRAMES_PER_TURN 256

/* The manager's count drops before the close: a client that sees the close and connects
 * again must find the room it left. */
void shmrpc__tcp_peer_free(worker *w, peer *p)
{
    if (p->gone) return;
    shmrpc__tcp_count_open(w, -1);
    if (p->counted) shmrpc__tcp_addr_count(w, p->addr, -1);
    shmrpc__tcp_shaking_drop(w, p);
    shmrpc__tcp_budget_charge(w, p->charged, 0);
    epoll_ctl(w->ep, EPOLL_CTL_DEL, p->fd, NULL);
    shmrpc__io_close(&p->io, true);
    shmrpc_buf_destroy(&p->in);
    shmrpc_buf_destroy(&p->out);
    for (int i = 0; i < w->n_peers; i++) {
        if (w->peers[i] == p) {
            w->peers[i] = w->peers[--w->n_peers];
            break;
        }
    }
    shmrpc__auth_wipe(p->proof, sizeof p->proof);
    for (peer **at = &w->again; p->again && *at; at = &(*at)->next_again)
        if (*at == p) {
            *at = p->next_again;
            p->again = false;
            break; /* at may be the end now: not stepped past it (UBSan) */
        }
    /* Its calls still running hold it: their answers are dropped, and the last frees it.
     * Its streams' handlers, which may wait for its window, learn at once. */
    atomic_store_explicit(&p->left, true, memory_order_release);
    shmrpc__tcp_stream_stop(w, p, 0);
    if (p->running) shmrpc__tcp_drop_waiting(w, p);
    p->gone = true;
    if (!p->running) shmrpc__tcp_bury(w, p);
}

/* Sends what it can; false when the connection is gone. Answers that wait for room in the
 * socket must keep moving (docs/wire.md, "Limits"): their deadline is the progress timeout
 * ahead when the socket is first full, and moves on with each byte sent (kept_up). */
bool shmrpc__tcp_peer_flush(worker *w, peer *p)
{
    size_t sent = 0;
    while (shmrpc__tcp_out_left(p)) {
        ssize_t n = shmrpc__io_send(&p->io, p->out.data + p->out_off, shmrpc__tcp_out_left(p));
        if (n > 0) {
            p->out_off += (size_t)n;
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return false;
        int64_t now = shmrpc__now_ns();
        p->out_due_ns = p->out_due_ns ? shmrpc__tcp_kept_up(w, p->out_due_ns, sent, now)
                                      : now + w->l->cfg.progress_ns;
        return true;
    }
    p->out_due_ns = 0;
    shmrpc_buf_clear(&p->out);
    p->out_off = 0;
    if (p->out.cap > KEEP_BYTES) {
        shmrpc__tcp_buf_trim(&p->out);
        shmrpc__tcp_peer_recharge(w, p);
    }
    return true;
}

/* Whether p's next REQUEST waits: its calls are at their bound, or a stream runs on a worker
 * that runs its calls one at a time (solo; docs/wire.md, "Streams"). */
static bool held(const worker *w, const peer *p)
{
    return p->running >= (uint32_t)w->l->cfg.max_running || (w->solo && w->running);
}

/* Whether the frame at the front of p->in is a REQUEST that waits (read_frame left its header
 * there). */
static bool request_waits(const worker *w, const peer *p)
{
    return !p->have_hdr && p->in.len >= SHMRPC__FRAME_HDR_SIZE &&
           p->in.data[5] == SHMRPC__KIND_REQUEST && held(w, p);
}

/* Whether p, its requests held, is still read up to its next REQUEST: it has a stream, whose
 * WINDOWs, CANCELs and PINGs must come (a client sends no REQUEST behind a stream's WINDOWs
 * that the stream needs), or its worker runs one solo, which a client that connects then must
 * be able to reach (its handshake, its PINGs). Else it is not read at all. */
static bool reads_to_request(const worker *w, const peer *p)
{
    return p->n_streams || w->solo;
}

static bool can_read(const worker *w, const peer *p)
{
    if (p->closing || p->drain_due) return false;
    return !held(w, p) || (reads_to_request(w, p) && !request_waits(w, p));
}

/* A whole frame has arrived in p->in. */
static void serve_frame(worker *w, peer *p)
{
    const shmrpc__frame_hdr *h = &p->hdr;
    shmrpc_bytes body = shmrpc_bytes_of(p->in.data + SHMRPC__FRAME_HDR_SIZE, h->body_len);
    const char *kind = shmrpc__frame_kind_name(h->kind);
    char msg[128];
    if (p->state == P_HELLO && h->kind == SHMRPC__KIND_HELLO) {
        shmrpc__tcp_serve_hello(w, p, body);
        return;
    }
    if (p->state == P_AUTH && h->kind == SHMRPC__KIND_AUTH) {
        shmrpc__tcp_serve_auth(w, p, body);
        return;
    }
    if (p->state != P_READY) {
        snprintf(msg, sizeof msg, "a %s frame before the handshake", kind);
        shmrpc__tcp_peer_refuse(p, SHMRPC_EPROTO, msg);
        return;
    }
    switch (h->kind) {
    case SHMRPC__KIND_REQUEST:
        shmrpc__tcp_serve_request(w, p, h, body);
        return;
    case SHMRPC__KIND_PING: {
        size_t at = shmrpc__frame_begin(&p->out, SHMRPC__KIND_PONG, 0, 0, h->request_id);
        shmrpc__frame_end(&p->out, at);
        return;
    }
    case SHMRPC__KIND_PONG:
        return;
    case SHMRPC__KIND_CANCEL: /* revision 5 (the decoder checked it was agreed) */
        shmrpc__tcp_serve_cancel(w, p, h->request_id);
        return;
    case SHMRPC__KIND_WINDOW: /* revision 8 (the same) */
        shmrpc__tcp_serve_window(w, p, h, body);
        return;
    case SHMRPC__KIND_ITEMS: /* revision 9 (serve_items checks it was agreed) */
        shmrpc__tcp_serve_items(w, p, h, body);
        return;
    case SHMRPC__KIND_ERROR: /* the client explains why it leaves */
        p->closing = true;
        return;
    default:
        snprintf(msg, sizeof msg, "a %s frame sent to a server", kind);
        shmrpc__tcp_peer_refuse(p, SHMRPC_EPROTO, msg);
        return;
    }
}

/* The end of the stream: a clean close between frames (-1), or half a frame, which is
 * answered with an ERROR saying so before the close (0). */
static int peer_eof(worker *w, peer *p)
{
    if (p->in.len == 0) return -1;
    shmrpc__msg_clear(&w->err);
    if (!p->have_hdr)
        shmrpc__frame_hdr_decode(p->in.data, p->in.len, 0, 0, &p->hdr, &w->err);
    else
        shmrpc__msg_set(&w->err, "truncated %s frame: %zu of %zu body bytes",
                        shmrpc__frame_kind_name(p->hdr.kind), p->in.len - SHMRPC__FRAME_HDR_SIZE,
                        (size_t)p->hdr.body_len);
    shmrpc__tcp_peer_refuse(p, SHMRPC_EPROTO, shmrpc__msg_get(&w->err));
    return 0;
}

/* The room a frame wants in p->in: all of it, and READ_AHEAD past it. */
static size_t frame_room(const peer *p)
{
    return SHMRPC__FRAME_HDR_SIZE + (size_t)p->hdr.body_len + READ_AHEAD;
}

/* Whether the frame whose header came is read at all: one above a connection's own
 * KEEP_BYTES only while the budget has room for all of it now. Nothing is charged for it
 * yet (room_for_frame charges its bytes as they come), so a peer that announces much and
 * sends little does not hold the room it announced. */
static bool frame_fits(const worker *w, const peer *p)
{
    size_t total = frame_room(p);
    if (total <= KEEP_BYTES) return true;
    return shmrpc__tcp_budget_used(w->l) + total - shmrpc__tcp_buf_cost(&p->in) <= w->l->cfg.budget;
}

/* Makes room in p->in for more of the frame in hand. Within KEEP_BYTES, all of it at once;
 * above, the buffer grows only once it is full, doubling up to frame_room, and each step
 * above KEEP_BYTES is taken from the server's budget: a connection holds at most about
 * twice what its peer has sent of a frame. 1 when the budget has no room for the step
 * (nothing was grown), -1 out of memory, else 0. */
static int room_for_frame(worker *w, peer *p)
{
    size_t total = frame_room(p);
    if (total <= p->in.cap) return 0;
    if (total <= KEEP_BYTES) return shmrpc__buf_grow(&p->in, total - p->in.len) ? -1 : 0;
    if (p->in.cap < KEEP_BYTES) return shmrpc__tcp_buf_resize(&p->in, KEEP_BYTES) ? -1 : 0;
    if (p->in.len < p->in.cap) return 0;
    size_t cap = p->in.cap < total / 2 ? 2 * p->in.cap : total;
    size_t more = cap - shmrpc__tcp_buf_cost(&p->in);
    if (!shmrpc__tcp_budget_take(w, more)) return 1;
    int rc = shmrpc__tcp_buf_resize(&p->in, cap);
    /* The buffer's charge before the room taken is given back: between the two, the room
     * counts twice, never not at all (another worker could take it then). */
    shmrpc__tcp_peer_recharge(w, p);
    shmrpc__tcp_budget_charge(w, more, 0);
    return rc ? -1 : 0;
}

/* A frame the budget has no room for, at its header (frame_fits) or at a step of its
 * buffer midway through its body (room_for_frame), the same way: what came of it is let go
 * at once, a REQUEST's body is read and dropped, then the call fails with SHMRPC_EBUSY
 * (answer_refused) and the connection goes on; any other kind closes the connection. 0
 * when the frame is to be skipped, 1 when it was refused. */
static int refuse_frame(worker *w, peer *p)
{
    const char *kind = shmrpc__frame_kind_name(p->hdr.kind);
    char msg[200];
    snprintf(msg, sizeof msg,
             "a %s frame of %" PRIu32 " bytes does not fit the server's memory for buffered "
             "frames (%" PRIu64 " of %zu bytes in use)",
             kind, p->hdr.body_len, shmrpc__tcp_budget_used(w->l), w->l->cfg.budget);
    shmrpc__tcp_log_limit(w, "refused a frame from %s: %s", p->from, msg);
    if (p->hdr.kind != SHMRPC__KIND_REQUEST) {
        shmrpc__tcp_peer_refuse(p, SHMRPC_EBUSY, msg);
        return 1;
    }
    size_t frame = SHMRPC__FRAME_HDR_SIZE + (size_t)p->hdr.body_len;
    if (p->in.len >= frame) { /* all here already (not for a frame this large) */
        memmove(p->in.data, p->in.data + frame, p->in.len - frame);
        p->in.len -= frame;
        p->skip = 0;
    } else {
        p->skip = (uint32_t)(frame - p->in.len);
        p->in.len = 0;
        shmrpc__tcp_buf_trim(&p->in); /* what a slow sender had sent goes back to the budget */
        shmrpc__tcp_peer_recharge(w, p);
    }
    p->refused = true;
    return 0;
}

/* Answers a refused REQUEST once its body has been skipped. */
static void answer_refused(worker *w, peer *p)
{
    char msg[200];
    snprintf(msg, sizeof msg,
             "a request of %" PRIu32 " bytes does not fit the server's memory for buffered "
             "frames (%zu bytes): it was not run; try again later",
             p->hdr.body_len, w->l->cfg.budget);
    shmrpc__tcp_put_error_frame(&p->out, p->hdr.method, p->hdr.request_id, SHMRPC_EBUSY, msg);
    p->refused = false;
    p->have_hdr = false;
    p->last_ns = shmrpc__now_ns();
    if (p->in.len) shmrpc__tcp_frame_begins(w, p, p->last_ns);
}

/* Makes p->in start with a whole frame, reading at most READ_AHEAD bytes past it (so a
 * connection holds at most one frame and that much). 1 when it does (or a refused
 * frame's body has been skipped), 0 when more must come (or the frame was refused), -1
 * when the connection is to be dropped at once. */
static int read_frame(worker *w, peer *p)
{
    for (;;) {
        if (p->refused) { /* skipping a refused body, into the room in hand */
            if (p->skip == 0) return 1;
            if (shmrpc__buf_grow(&p->in, READ_AHEAD)) return -1;
            size_t room = p->in.cap - p->in.len < p->skip ? p->in.cap - p->in.len : p->skip;
            ssize_t n = shmrpc__io_recv(&p->io, p->in.data + p->in.len, room, MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
            if (n == 0) return -1; /* gone in the middle of the frame: nothing to answer */
            p->skip -= (uint32_t)n;
            shmrpc__tcp_frame_came(w, p, (size_t)n, shmrpc__now_ns());
            continue;
        }
        if (!p->have_hdr && p->in.len >= SHMRPC__FRAME_HDR_SIZE) {
            uint32_t max = p->state == P_READY ? w->l->max_msg : SHMRPC__WIRE_MAX_HELLO;
            shmrpc__msg_clear(&w->err);
            uint16_t agreed = p->comp | (p->proto >= 3 ? SHMRPC__FLAG_LONE : 0) |
                              (p->proto >= 4 ? SHMRPC__FLAG_DEADLINE : 0) |
                              (p->proto >= 5 ? SHMRPC__AGREED_CANCEL : 0) |
                              (p->proto >= 7 ? SHMRPC__FLAG_META : 0) |
                              (p->proto >= 8 ? SHMRPC__AGREED_STREAMS : 0) |
                              (p->proto >= 9 ? SHMRPC__AGREED_CLIENT_STREAMS : 0);
            int rc = shmrpc__frame_hdr_decode(p->in.data, SHMRPC__FRAME_HDR_SIZE, max, agreed,
                                              &p->hdr, &w->err);
            if (rc) {
                shmrpc__tcp_peer_refuse(p, rc, shmrpc__msg_get(&w->err));
                return 0;
            }
            /* Read up to a REQUEST that waits: its header stays in p->in, unread (can_read). */
            if (p->hdr.kind == SHMRPC__KIND_REQUEST && held(w, p)) return 0;
            p->have_hdr = true;
            if (!frame_fits(w, p) && refuse_frame(w, p)) return 0;
            if (p->refused) continue;
        }
        size_t need = SHMRPC__FRAME_HDR_SIZE + (p->have_hdr ? p->hdr.body_len : 0);
        if (p->have_hdr && p->in.len >= need) return 1;
        if (p->have_hdr) {
            int rc = room_for_frame(w, p);
            if (rc < 0) return -1;
            if (rc > 0 && refuse_frame(w, p)) return 0;
            if (rc > 0) continue;
        } else if (shmrpc__buf_grow(&p->in, need - p->in.len + READ_AHEAD)) {
            return -1;
        }
        size_t room = need - p->in.len + READ_AHEAD;
        if (room > p->in.cap - p->in.len) room = p->in.cap - p->in.len;
        ssize_t n = shmrpc__io_recv(&p->io, p->in.data + p->in.len, room, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        if (n == 0) return peer_eof(w, p);
        int64_t now = shmrpc__now_ns();
        if (p->in.len == 0) shmrpc__tcp_frame_begins(w, p, now);
        p->in.len += (size_t)n;
        shmrpc__tcp_frame_came(w, p, (size_t)n, now);
    }
}

/* Drops the frame just served from the front of p->in, keeping what was read past it. */
static void consume_frame(worker *w, peer *p)
{
    size_t used = p->taken ? 0 : SHMRPC__FRAME_HDR_SIZE + p->hdr.body_len;
    p->taken = false;
    size_t left = p->in.len - used;
    if (left) memmove(p->in.data, p->in.data + used, left);
    p->in.len = left;
    p->have_hdr = false;
    p->last_ns = shmrpc__now_ns();
    if (left) shmrpc__tcp_frame_begins(w, p, p->last_ns);
    if (!left && p->in.cap > KEEP_BYTES) { /* an idle connection holds little */
        shmrpc__tcp_buf_trim(&p->in);
        shmrpc__tcp_peer_recharge(w, p);
    }
}

/* Serves the frames that have come, in order (a client may send many requests before it
 * reads an answer: docs/wire.md, "Calls in flight"), handing the calls to the worker's
 * threads, up to cfg.max_running of the connection's at once. Answers collect in p->out
 * while more requests are already read, and go out together (one send for many small
 * answers) once nothing more is buffered or OUT_BATCH bytes are waiting; the next frame is
 * read only once they are sent and fewer than cfg.max_running calls run, so a connection
 * holds at most one frame in, its running calls, and OUT_BATCH plus one answer out, and a
 * client that does not read its answers stops the server reading its requests. */
static void peer_read(worker *w, peer *p)
{
    unsigned served = 0;
    for (;;) {
        bool starved = false;
        while (can_read(w, p) && shmrpc__tcp_out_left(p) < OUT_BATCH && served < FRAMES_PER_TURN) {
            int rc = read_frame(w, p);
            if (rc < 0) {
                if (p->io.failed)
                    shmrpc__tcp_log_limit(w, "TLS with %s failed: %s", p->from, p->io.why);
                shmrpc__tcp_peer_free(w, p);
                return;
            }
            if (rc == 0) {
                starved = true;
                break;
            }
            if (p->refused) {
                answer_refused(w, p);
            } else {
                serve_frame(w, p);
                consume_frame(w, p);
            }
            served++;
            /* Level-triggered epoll says when more comes, but not of what TLS holds. */
            if (p->in.len == 0 && !shmrpc__io_pending(&p->io)) {
                starved = true;
                break;
            }
        }
        if (shmrpc__tcp_out_left(p) && !shmrpc__tcp_peer_flush(w, p)) {
            shmrpc__tcp_peer_free(w, p);
            return;
        }
        if (shmrpc__tcp_out_left(p)) {
            p->frame_ns = shmrpc__now_ns();
            return;
        }
        if (starved || !can_read(w, p)) return;
        /* Frames that start nothing (PONGs, refused requests) end none of the loops above:
         * a client streaming them kept the worker from its other connections for seconds
         * (a helper's review). Its next turn comes after theirs. */
        if (served >= FRAMES_PER_TURN) {
            if (!p->again) {
                p->again = true;
                p->next_again = w->again;
                w->again = p;
            }
            return;
        }
    }
}

/* Closes p if it is done, else sets its epoll interest: writing while a frame is unsent,
 * reading otherwise. */
void shmrpc__tcp_peer_settle(worker *w, peer *p)
{
    if (p->gone) return; /* freed by peer_read (its connection broke) */
    /* A connection that closes reads no WINDOW again: its streams end (their ends still go
     * out before the close). */
    if (p->closing && p->n_streams) shmrpc__tcp_stream_stop(w, p, SHMRPC_EPEERDIED);
    if (shmrpc__tcp_out_left(p) && !shmrpc__tcp_peer_flush(w, p)) {
        shmrpc__tcp_peer_free(w, p);
        return;
    }
    if (p->closing && shmrpc__tcp_out_left(p) == 0 && p->running == 0) {
        shutdown(p->fd, SHUT_WR);
        shmrpc__tcp_peer_free(w, p);
        return;
    }
    /* Neither while its calls are at the bound (collect looks again as each ends). While
     * it is neither read nor written, its end of stream is still watched for (EPOLLRDHUP):
     * a client that died with calls waiting for the pool has them dropped at once
     * (drop_waiting). Not on a connection that is closing (an ERROR waits for its calls'
     * answers, as for half a frame before the end of the stream), and not while answers
     * go out, which a client that shut its writing side may still read whole. */
    uint32_t want = shmrpc__tcp_out_left(p) ? EPOLLOUT
                    : can_read(w, p)        ? EPOLLIN
                    : p->closing            ? 0
                                            : EPOLLRDHUP;
    if (want == p->events) return;
    /* Read again after a wait of the server's own: the frame in hand was not late. */
    if (want == EPOLLIN && (p->in.len || p->refused))
        shmrpc__tcp_frame_begins(w, p, shmrpc__now_ns());
    struct epoll_event ev = {.events = want, .data.ptr = p};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, p->fd, &ev);
    p->events = want;
}

/* Serves the connections whose turn was cut, again (from worker_run, after a batch). */
void shmrpc__tcp_serve_again(worker *w)
{
    peer *list = w->again;
    w->again = NULL;
    while (list) {
        peer *p = list;
        list = p->next_again;
        p->again = false;
        p->next_again = NULL;
        if (p->gone) continue;
        if (shmrpc__tcp_out_left(p) == 0) peer_read(w, p);
        shmrpc__tcp_peer_settle(w, p);
    }
}

void shmrpc__tcp_peer_event(worker *w, peer *p, uint32_t events)
{
    if (p->gone) return; /* closed earlier in this batch of events */
    /* A reset, a socket shut both ways (epoll reports these even with no interest set) or
     * the client's end of stream, while nothing is read from it: its calls' answers have
     * nowhere to go. A client shuts its side only when it is gone, as when the end of
     * stream is read (peer_read). */
    if ((events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) && !(p->events & EPOLLIN)) {
        shmrpc__tcp_peer_free(w, p);
        return;
    }
    if (events & EPOLLIN) p->heard = true; /* in its handshake: not one to close first */
    /* TLS is made ready when the first bytes come, so that a connection which never sends
     * one costs no TLS state (a flood of them is closed as cheaply as over plain TCP). */
    if ((events & EPOLLIN) && p->tls_due) {
        p->tls_due = false;
        if (shmrpc__io_tls(&p->io, w->l->tls) != 0) {
            shmrpc__tcp_peer_free(w, p);
            return;
        }
    }
    if (events & EPOLLOUT) {
        if (!shmrpc__tcp_peer_flush(w, p)) {
            shmrpc__tcp_peer_free(w, p);
            return;
        }
        if (shmrpc__tcp_out_left(p) == 0) p->last_ns = shmrpc__now_ns();
    }
    bool readable = events & (EPOLLIN | EPOLLHUP | EPOLLERR);
    /* A connection whose turn was cut waits for serve_again, after the others. */
    if (shmrpc__tcp_out_left(p) == 0 && !p->again &&
        (readable || p->in.len || shmrpc__io_pending(&p->io)))
        peer_read(w, p);
    shmrpc__tcp_peer_settle(w, p);
}

void shmrpc__tcp_serve_touched(worker *w, peer *list)
{
    while (list) {
        peer *p = list;
        list = p->touched == p ? NULL : p->touched;
        p->touched = NULL;
        if (can_read(w, p) && (p->in.len || shmrpc__io_pending(&p->io))) peer_read(w, p);
        shmrpc__tcp_peer_settle(w, p);
    }
}

/* Takes back the jobs the pool ran, and serves their connections again: their answers go
 * out, and what waited for the bound or for their end (a DRAIN, an ERROR) follows. */
void shmrpc__tcp_collect(worker *w)
{
    uint64_t n;
    if (read(w->done_fd, &n, sizeof n) < 0) {
        /* EAGAIN: taken with an earlier one */
    }
    pthread_mutex_lock(&w->mu);
    job *j = w->done;
    w->done = NULL;
    job *pulls = shmrpc__tcp_stream_take(w);
    pthread_mutex_unlock(&w->mu);
    peer *touched = NULL;
    for (; pulls; pulls = pulls->taken_next) {
        shmrpc__tcp_stream_grant(pulls);
        if (!pulls->p->gone) shmrpc__tcp_touch(&touched, pulls->p);
    }
    while (j) {
        job *next = j->next;
        peer *p = j->p;
        bool gone = p->gone;
        shmrpc__tcp_finish_job(w, j); /* may bury a gone p */
        if (!gone) shmrpc__tcp_touch(&touched, p);
        j = next;
    }
    shmrpc__tcp_serve_touched(w, touched);
}

/* The deadline of p: the handshake's, a partial frame's progress, or idleness. */
int64_t shmrpc__tcp_peer_deadline(const worker *w, const peer *p)
{
    const shmrpc__tcp_cfg *cfg = &w->l->cfg;
    if (p->state != P_READY) return p->accepted_ns + cfg->handshake_ns;
    /* Calls at the connection's bound, or a solo worker's stream: the server reads no
     * request, so a frame waiting in p->in is not late (pipelined calls beyond max_running
     * were cut by the progress timeout while their handlers ran, their answers lost; a
     * helper's review). A connection with a stream is read up to its next REQUEST. */
    if (held(w, p) && !shmrpc__tcp_out_left(p) && !p->refused &&
        (!reads_to_request(w, p) || request_waits(w, p)))
        return INT64_MAX;
    /* Answers waiting for room: the server reads nothing meanwhile (peer_settle). Those
     * not tried yet (the next flush starts their clock) have the timeout and 1 s per MiB. */
    if (shmrpc__tcp_out_left(p) && p->out_due_ns) return p->out_due_ns;
    if (shmrpc__tcp_out_left(p))
        return p->frame_ns + cfg->progress_ns + (int64_t)(shmrpc__tcp_out_left(p) >> 20) * NS_PER_S;
    /* A frame being read (frame_came). */
    if (p->in.len || p->refused) return p->in_due_ns;
    if (p->running) return INT64_MAX; /* not idle: the client waits for its calls */
    return p->last_ns + cfg->idle_ns;
}

void shmrpc__tcp_sweep(worker *w, int64_t now)
{
    for (int i = w->n_peers; i-- > 0;) {
        peer *p = w->peers[i];
        if (now < shmrpc__tcp_peer_deadline(w, p)) continue;
        /* Not while calls of p run: a client takes an ERROR with request id 0 to mean that
         * its calls in flight did not run. Without it they may have (SHMRPC_EPEERDIED). */
        if (!p->closing && shmrpc__tcp_out_left(p) == 0 && !p->running) { /* say why, best effort */
            shmrpc__tcp_put_error_frame(&p->out, 0, 0, SHMRPC_ETIMEDOUT,
                                        p->state != P_READY ? "handshake timeout"
                                        : p->in.len || p->refused
                                            ? "the frame made no progress in time"
                                            : "idle timeout");
            shmrpc__tcp_peer_flush(w, p);
        }
        shmrpc__tcp_peer_free(w, p);
    }
}
