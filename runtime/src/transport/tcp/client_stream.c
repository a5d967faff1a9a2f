/* SPDX-License-Identifier: MIT */
/* A tcp:// client's stream (revision 8; docs/wire.md, "Streams"): opened by a REQUEST with
 * the stream flag, its items read from ITEMS frames by whichever reader of the connection
 * comes first (route), delivered one by one with the window given back as they go, and
 * ended by its answer, a failure, or the client. A stream of the client's items (revision
 * 9) sends each in an ITEMS frame within the server's window (corked, several in one),
 * reading the WINDOWs that give it back, and its last flag when the client is done. A stream both
 * ways may be sent on by one thread while another receives (tcp_cstream.mu). */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/tcp/tcp_int.h"
#include "core/proc.h"
#include "core/wait.h"
#include "transport/tcp/tcp_client_int.h"

#define W ((int64_t)SHMRPC__STREAM_WINDOW)

/* --- open ----------------------------------------------------------------------------- */

int shmrpc__tcp_stream_open(shmrpc__conn *base, uint32_t sid, int ways, shmrpc_bytes req,
                            int64_t timeout_ms, shmrpc_buf *err)
{
    tcp_pool *p = (tcp_pool *)base;
    if (shmrpc__self_pid() != p->pid) {
        shmrpc__msg_set(err, "this connection belongs to process %d", (int)p->pid);
        return SHMRPC_EINVAL;
    }
    int64_t now = shmrpc__now_ns();
    int64_t deadline = shmrpc__deadline_at(&(shmrpc__deadline){0, timeout_ms}, now);
    /* The client's method id: each endpoint maps it to its own server's id. */
    int64_t j = shmrpc__tcp_method_index(p, sid);
    tcp_cstream *st = calloc(1, sizeof *st);
    if (!st) {
        shmrpc__msg_set(err, "out of memory");
        return SHMRPC_ENOMEM;
    }
    shmrpc_buf_init(&st->items);
    shmrpc_buf_init(&st->seen);
    shmrpc_buf_init(&st->scratch);
    shmrpc_buf_init(&st->msg);
    shmrpc_buf_init(&st->answer);
    shmrpc_buf_init(&st->held);
    /* The client's items come in ITEMS frames, which a server reads from revision 9. */
    uint32_t needs = ways & SHMRPC__STREAM_IN ? 9 : 8;
    shmrpc__tcp_maybe_resolve(p, now, err);
    shmrpc__tcp_tend(p, now, err);
    tcp_search s = {.deadline = deadline};
    int tries = 0;
    shmrpc_buf_clear(&p->why);
    while (tries < 2 * SHMRPC_TCP_MAX_ENDPOINTS) {
        if (shmrpc__conn_cancelled(base)) {
            shmrpc__msg_set(err, "the stream was cancelled by its client before it was sent; it "
                                 "did not run");
            free(st);
            return SHMRPC_ECANCELLED;
        }
        int i = shmrpc__tcp_choose(p, s.tried, false, NULL);
        if (i < 0) break;
        tries++;
        tcp_conn *c = p->eps[i];
        shmrpc__tcp_refresh(c, now, err);
        int rc;
        if (!shmrpc__tcp_connected(c) && !(c = shmrpc__tcp_race(p, i, &s, &i, err))) break;
        if (c->proto < needs) { /* an older server: refused before anything is sent */
            shmrpc__msg_set(
                err,
                "tcp://%s agreed protocol revision %" PRIu32 ", and %s need revision %" PRIu32
                ": the stream was not opened (it did not run)",
                c->where, c->proto, needs == 9 ? "streams of the parameter" : "streams", needs);
            rc = SHMRPC_EVERSION;
        } else {
            uint32_t esid = j >= 0 ? c->map[j] : sid;
            uint64_t id = ++c->next_id;
            rc = shmrpc__tcp_send_request(c, esid, id, SHMRPC__FLAG_STREAM, p->base.meta, req,
                                          deadline, err);
            if (c->fd < 0 && c->inflight) shmrpc__tcp_fail_sending(c, rc, err);
            if (rc == 0) {
                /* Open once its request is out whole: what follows is recv's to say. */
                st->c = c;
                st->gen = c->gen;
                st->rid = id;
                st->sid = esid;
                st->deadline = deadline;
                st->avail = W;
                st->ways = ways;
                st->send_avail = W;
                if (ways == SHMRPC__STREAM_WAYS) {
                    pthread_condattr_t ca;
                    pthread_condattr_init(&ca);
                    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
                    pthread_cond_init(&st->cv, &ca);
                    pthread_condattr_destroy(&ca);
                    pthread_mutex_init(&st->mu, NULL);
                }
                c->stream = st;
                c->outstanding++; /* calls prefer other endpoints meanwhile */
                p->stream = st;
                return 0;
            }
            /* Written whole or not, a failure that is no broken connection ends it here. */
            if (!((rc == SHMRPC_EUNAVAIL || rc == SHMRPC_EPROTO) && c->fd < 0)) {
                free(st);
                return rc;
            }
        }
        shmrpc__tcp_try_failed(p, &s, i, rc, err);
        now = shmrpc__now_ns();
        if (now >= deadline) break;
    }
    free(st);
    return shmrpc__tcp_none_took(p, &s, tries, "stream", "was not opened", err);
}

/* --- recv ----------------------------------------------------------------------------- */

/* Gives the server back the bytes of the items delivered since the last WINDOW, without
 * waiting: when there is no room now, the next turn tries again. */
static void give_window(tcp_pool *p, tcp_cstream *st)
{
    tcp_conn *c = st->c;
    if (!st->delivered || st->ended || !c || c->gen != st->gen) return;
    int rc = shmrpc__tcp_send_window(c, st->rid, st->delivered, &p->scratch);
    if (rc == 0) {
        st->avail += st->delivered;
        st->delivered = 0;
    } else if (rc < 0 && c->inflight) { /* broken: the stream sees it through gen */
        shmrpc__tcp_fail_sending(c, rc, &p->scratch);
    }
}

/* The client gives up on st, which has not ended: what still comes of it is dropped
 * (c->dead), and with tell its server is told (a CANCEL now, or before the next REQUEST when
 * there is no room). At its deadline it is not: the server has the deadline too, and its
 * handler's sends fail with SHMRPC_ETIMEDOUT, as over the other transports (and as for a call,
 * docs/wire.md, "Cancellation"). */
static void give_up(tcp_pool *p, tcp_cstream *st, bool tell)
{
    tcp_conn *c = st->c;
    if (st->ended || st->gone) return;
    st->gone = true;
    if (!c) return;
    if (c->stream == st) c->stream = NULL;
    if (c->gen != st->gen || !shmrpc__tcp_connected(c)) return;
    int rc = tell ? shmrpc__tcp_send_cancel(c, st->rid, &p->scratch) : 0;
    if (rc < 0) { /* broken: nothing more comes of it */
        if (c->inflight) shmrpc__tcp_fail_sending(c, rc, &p->scratch);
        return;
    }
    if (rc == 1 && c->proto >= 5) c->cancel_due = st->rid;
    if (c->n_dead == TCP_DEAD_STREAMS) {
        if (!c->inflight) { /* nothing else to lose: a new connection owes nothing */
            shmrpc__tcp_conn_break(c);
            return;
        }
        shmrpc__tcp_dead_forget(c, c->dead[0]);
        c->dead_lost = true;
    }
    c->dead[c->n_dead++] = st->rid;
}

/* The index of c among p's endpoints. */
static int index_of(const tcp_pool *p, const tcp_conn *c)
{
    for (int i = 0; i < p->n_eps; i++)
        if (p->eps[i] == c) return i;
    return -1;
}

/* Waits until c has bytes to read (or a frame already read), until the stream's deadline,
 * looking at the client's cancels every SHMRPC__CHECK_NS: 0, or SHMRPC_ETIMEDOUT,
 * SHMRPC_ECANCELLED, or 1 when poll failed. */
static int wait_readable(tcp_pool *p, tcp_conn *c, int64_t deadline)
{
    for (;;) {
        if (c->in.len - c->used >= SHMRPC__FRAME_HDR_SIZE || shmrpc__io_pending(&c->io)) return 0;
        int64_t now = shmrpc__now_ns();
        if (now >= deadline) return SHMRPC_ETIMEDOUT;
        if (shmrpc__conn_cancelled(&p->base)) return SHMRPC_ECANCELLED;
        int64_t until = deadline - now > SHMRPC__CHECK_NS ? now + SHMRPC__CHECK_NS : deadline;
        int ms = (int)((until - now + NS_PER_MS - 1) / NS_PER_MS);
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        int n = poll(&pf, 1, ms);
        if (n > 0) return 0;
        if (n < 0 && errno != EINTR) return 1;
    }
}

/* Whether a frame of c came, whole or begun, without waiting for one. */
static bool frame_came(tcp_conn *c)
{
    if (c->in.len - c->used >= SHMRPC__FRAME_HDR_SIZE || shmrpc__io_pending(&c->io)) return true;
    struct pollfd pf = {.fd = c->fd, .events = POLLIN};
    return poll(&pf, 1, 0) == 1;
}

/* A stream both ways is under its mu, but while a thread polls; a stream one way has one
 * thread. */
static void stream_lock(tcp_cstream *st)
{
    if (st->ways == SHMRPC__STREAM_WAYS) pthread_mutex_lock(&st->mu);
}

static void stream_unlock(tcp_cstream *st)
{
    if (st->ways == SHMRPC__STREAM_WAYS) pthread_mutex_unlock(&st->mu);
}

/* poll(2) of pf for at most ms, with st->mu (held) let go of meanwhile. */
static int poll_unlocked(tcp_cstream *st, struct pollfd *pf, int ms)
{
    pthread_mutex_unlock(&st->mu);
    int n = poll(pf, 1, ms);
    int e = errno;
    pthread_mutex_lock(&st->mu);
    errno = e;
    return n;
}

/* wait_readable for a stream both ways, with st->mu held: the thread whose turn it is polls
 * the connection with mu let go of, for at most SHMRPC__CHECK_NS, and the other naps on cv
 * meanwhile. 0 when a frame came, LOOK_AGAIN when the caller is to look at the stream again
 * (the other thread may have read the frame, or may now), or wait_readable's other status. */
#define LOOK_AGAIN 2
static int wait_turn(tcp_pool *p, tcp_cstream *st)
{
    tcp_conn *c = st->c;
    if (frame_came(c)) return 0;
    int64_t now = shmrpc__now_ns();
    if (now >= st->deadline) return SHMRPC_ETIMEDOUT;
    if (shmrpc__conn_cancelled(&p->base)) return SHMRPC_ECANCELLED;
    int64_t until = st->deadline - now > SHMRPC__CHECK_NS ? now + SHMRPC__CHECK_NS : st->deadline;
    if (st->polling) {
        struct timespec ts = {until / NS_PER_S, until % NS_PER_S};
        pthread_cond_timedwait(&st->cv, &st->mu, &ts);
        return LOOK_AGAIN;
    }
    st->polling = true;
    struct pollfd pf = {.fd = c->fd, .events = POLLIN};
    int n = poll_unlocked(st, &pf, (int)((until - now + NS_PER_MS - 1) / NS_PER_MS));
    st->polling = false;
    pthread_cond_broadcast(&st->cv);
    if (n < 0 && errno != EINTR) return 1;
    /* What the poll saw, the other thread may have read meanwhile (a send reads frames while
     * it waits for room), and the connection may have broken. */
    return c->gen == st->gen && frame_came(c) ? 0 : LOOK_AGAIN;
}

/* Reads one frame of st's connection and acts on it (routing delivers items to st, answers
 * to the calls in flight): 0, or the status that ends st (its message in err). */
static int read_turn(tcp_pool *p, tcp_cstream *st, shmrpc_buf *err)
{
    tcp_conn *c = st->c;
    int rc = st->ways == SHMRPC__STREAM_WAYS ? wait_turn(p, st) : wait_readable(p, c, st->deadline);
    if (rc == LOOK_AGAIN) return 0;
    if (rc == SHMRPC_ETIMEDOUT || rc == SHMRPC_ECANCELLED) return rc;
    /* Within the stream's deadline, and its cancel, as a blocking call reads its answer: a
     * frame cut there breaks the connection (the rest of it cannot be read later), and the
     * calls in flight on it with it. */
    shmrpc__frame_hdr h;
    if (rc == 0) {
        c->cancel_of = &p->base;
        rc = shmrpc__tcp_read_frame(c, shmrpc__tcp_max_body(c), &h, st->deadline, err);
        c->cancel_of = NULL;
    } else {
        rc = shmrpc__tcp_broken(c, err, "while waiting");
    }
    if (rc == SHMRPC_ETIMEDOUT || rc == SHMRPC_ECANCELLED) {
        if (c->fd < 0) {
            shmrpc__tcp_fail_inflight(c, SHMRPC_EPEERDIED,
                                      rc == SHMRPC_ETIMEDOUT
                                          ? "the connection was cut in the middle of a frame at "
                                            "its stream's deadline"
                                          : "the connection was cut in the middle of a frame when "
                                            "its stream was cancelled");
            p->resolve_due = true;
        }
        return rc;
    }
    if (rc) {
        char why[400];
        if (shmrpc__tcp_read_broke(p, c, rc, err, why, sizeof why) == SHMRPC_EPROTO) {
            shmrpc__msg_set(
                err, "tcp://%s broke the protocol during the stream, after %" PRIu64 " items: %s",
                c->where, st->received, why);
            shmrpc__tcp_stream_set_end(st, SHMRPC_EPROTO, shmrpc__msg_get(err));
        } else {
            shmrpc__msg_set(&st->msg, "%s", why); /* said when the break is seen */
        }
        return 0;
    }
    shmrpc__tcp_on_frame(p, c, index_of(p, c), &h, err);
    return 0;
}

static int send_held(tcp_pool *p, tcp_cstream *st, uint16_t flags, shmrpc_buf *err);

/* The next item of st, or its end; with st->mu held (both ways): 1 and the item, in place in
 * st->items until the next call; 0 at the end, with the answer of a result that is no stream
 * (st->answer); or the stream's status. The room of the item delivered last goes only now,
 * since it was read in place. */
static int stream_next(tcp_pool *p, tcp_cstream *st, shmrpc_bytes *item, shmrpc_buf *err)
{
    shmrpc__conn *base = &p->base;
    *item = shmrpc_bytes_of(NULL, 0);
    shmrpc__tcp_queue_read(&st->items, &st->head);
    if (st->items.len == 0 && st->items.cap > ((size_t)1 << 20)) { /* all read */
        shmrpc_buf_destroy(&st->items);
        shmrpc_buf_init(&st->items);
    }
    int rc = 0;
    for (;;) {
        /* Before an item: a cancel ends a stream that is behind. */
        if (shmrpc__conn_cancelled(base)) {
            rc = SHMRPC_ECANCELLED;
            shmrpc__msg_set(err, "the stream was cancelled (shmrpc_client_cancel)");
            break;
        }
        if (st->head < st->items.len) { /* whole and within the maximum: take_items checked */
            const uint8_t *at = st->items.data + st->head;
            uint32_t len =
                (uint32_t)at[0] << 24 | (uint32_t)at[1] << 16 | (uint32_t)at[2] << 8 | at[3];
            *item = shmrpc_bytes_of(at + SHMRPC__ITEM_LEN_SIZE, len);
            st->head += SHMRPC__ITEM_LEN_SIZE + (size_t)len;
            st->taken++;
            st->delivered += SHMRPC__ITEM_LEN_SIZE + len;
            if (st->delivered >= SHMRPC__STREAM_WINDOW / 4) give_window(p, st);
            return 1;
        }
        if (st->ended) {
            if (st->status) shmrpc__msg_set(err, "%s", shmrpc__msg_get(&st->msg));
            /* A result that is no stream: its answer, with the end. */
            if (st->status == 0) *item = shmrpc_bytes_of(st->answer.data, st->answer.len);
            return st->status;
        }
        tcp_conn *c = st->c;
        if (!c || c->gen != st->gen) {
            rc = SHMRPC_EPEERDIED;
            shmrpc__msg_set(err,
                            "the connection to tcp://%s broke during the stream, after %" PRIu64
                            " items: it may have run (it is not opened again)",
                            c ? c->where : p->list, st->taken);
            if (shmrpc__msg_get(&st->msg)[0])
                shmrpc__msg_append(err, " (%s)", shmrpc__msg_get(&st->msg));
            shmrpc__tcp_stream_set_end(st, rc, shmrpc__msg_get(err));
            return rc;
        }
        if (shmrpc__now_ns() >= st->deadline) {
            rc = SHMRPC_ETIMEDOUT;
            shmrpc__msg_set(err, "the stream's deadline passed");
            break;
        }
        /* Always before a wait: the server may be waiting for this room, or for the items
         * held (a failure ends the stream, said above); not to a server that closed its side
         * (deaf), whose end is still to be read and a send's break would drop. */
        give_window(p, st);
        if (!c->deaf) send_held(p, st, 0, err);
        if (c->gen != st->gen) continue;
        rc = read_turn(p, st, err);
        if (rc == SHMRPC_ETIMEDOUT) shmrpc__msg_set(err, "the stream's deadline passed");
        if (rc == SHMRPC_ECANCELLED)
            shmrpc__msg_set(err, "the stream was cancelled (shmrpc_client_cancel)");
        if (rc) break;
    }
    /* The client gives up on it (a cancel, its deadline), and it ends so: a send of another
     * thread (both ways) says the same. */
    give_up(p, st, rc != SHMRPC_ETIMEDOUT);
    if (!st->ended) shmrpc__tcp_stream_set_end(st, rc, shmrpc__msg_get(err));
    return rc;
}

/* The next item of p's stream, as stream_next gives it, with the checks of both kinds of
 * recv. */
static int stream_read(tcp_pool *p, shmrpc_bytes *item, shmrpc_buf *err)
{
    *item = shmrpc_bytes_of(NULL, 0);
    if (shmrpc__self_pid() != p->pid) {
        shmrpc__msg_set(err, "this connection belongs to process %d", (int)p->pid);
        return SHMRPC_EINVAL;
    }
    if (!p->stream) {
        shmrpc__msg_set(err, "no stream is open");
        return SHMRPC_EINVAL;
    }
    /* client.c asks no more after the end; a send that failed ended it first. */
    if (p->stream->gone && !p->stream->ended) {
        shmrpc__msg_set(err, "no stream is open");
        return SHMRPC_EINVAL;
    }
    return stream_next(p, p->stream, item, err);
}

int shmrpc__tcp_stream_recv(shmrpc__conn *base, shmrpc_buf *item, shmrpc_buf *err)
{
    tcp_pool *p = (tcp_pool *)base;
    tcp_cstream *st = p->stream;
    if (!st) {
        shmrpc__msg_set(err, "no stream is open");
        return SHMRPC_EINVAL;
    }
    stream_lock(st);
    shmrpc_bytes got;
    int rc = stream_read(p, &got, err);
    if ((rc == 1 || (rc == 0 && got.len)) && shmrpc_buf_append(item, got.ptr, got.len)) {
        int why = item->err == SHMRPC_ETOOBIG ? SHMRPC_ETOOBIG : SHMRPC_ENOMEM;
        if (why == SHMRPC_ETOOBIG)
            shmrpc__msg_set(err,
                            "an item of %zu bytes is larger than the client's maximum of %zu bytes",
                            got.len, item->max);
        else
            shmrpc__msg_set(err, "out of memory for an item of %zu bytes", got.len);
        if (rc == 1) { /* it ends here, as one the server failed */
            give_up(p, st, true);
            if (!st->ended) shmrpc__tcp_stream_set_end(st, why, shmrpc__msg_get(err));
        }
        rc = why;
    }
    stream_unlock(st);
    return rc;
}

int shmrpc__tcp_stream_view(shmrpc__conn *base, shmrpc_bytes *item, shmrpc_buf *err)
{
    tcp_pool *p = (tcp_pool *)base;
    tcp_cstream *st = p->stream;
    /* What may read frames into st->items while the caller holds the item, and move it:
     * another thread, both ways, or a wait for a call started before the open (no call
     * starts while the stream is open). Then the item is copied out. */
    if (!st || (!(st->ways & SHMRPC__STREAM_IN) && !(st->c && st->c->n_inflight)))
        return stream_read(p, item, err);
    shmrpc_buf_clear(&st->seen);
    int rc = shmrpc__tcp_stream_recv(base, &st->seen, err);
    *item = shmrpc_bytes_of(st->seen.data, st->seen.len);
    return rc;
}

/* --- end ------------------------------------------------------------------------------ */

void shmrpc__tcp_stream_end(shmrpc__conn *base)
{
    tcp_pool *p = (tcp_pool *)base;
    tcp_cstream *st = p->stream;
    if (!st) return;
    /* In a forked child the stream is the parent's: only the child's record of it goes. */
    if (shmrpc__self_pid() == p->pid) give_up(p, st, true);
    if (st->c) {
        st->c->outstanding--;
        if (st->c->stream == st) st->c->stream = NULL;
    }
    shmrpc_buf_destroy(&st->items);
    shmrpc_buf_destroy(&st->seen);
    shmrpc_buf_destroy(&st->scratch);
    shmrpc_buf_destroy(&st->msg);
    shmrpc_buf_destroy(&st->answer);
    shmrpc_buf_destroy(&st->held);
    if (st->ways == SHMRPC__STREAM_WAYS) {
        pthread_cond_destroy(&st->cv);
        pthread_mutex_destroy(&st->mu);
    }
    free(st);
    p->stream = NULL;
}

/* --- send (revision 9) ------------------------------------------------------------------ */

/* Why st can send no more, with err, or 0: its end came (the handler returned, or it
 * failed), its connection broke, or the client gave up on it. */
static int cannot_send(tcp_pool *p, tcp_cstream *st, shmrpc_buf *err)
{
    if (!st || (st->gone && !st->ended)) {
        shmrpc__msg_set(err, "no stream is open");
        return SHMRPC_EINVAL;
    }
    tcp_conn *c = st->c;
    if (!st->ended && (!c || c->gen != st->gen)) {
        shmrpc__msg_set(err,
                        "the connection to tcp://%s broke during the stream, after %" PRIu64
                        " items sent: it may have run (it is not opened again)",
                        c ? c->where : p->list, st->sent);
        if (shmrpc__msg_get(&st->msg)[0])
            shmrpc__msg_append(err, " (%s)", shmrpc__msg_get(&st->msg));
        shmrpc__tcp_stream_set_end(st, SHMRPC_EPEERDIED, shmrpc__msg_get(err));
    }
    if (!st->ended) return 0;
    if (st->answered) { /* its answer (or the refusal of its open) says the rest */
        shmrpc__msg_set(err, st->status == 0 ? "the handler returned before it read the item"
                                             : "the stream ended before the item was read: its "
                                               "answer says why");
        return SHMRPC_ECLOSED;
    }
    shmrpc__msg_set(err, "%s", shmrpc__msg_get(&st->msg));
    return st->status;
}

/* Sends an ITEMS frame of st: body (its items, or none) and flags, within the stream's
 * deadline, reading what comes meanwhile. A failure breaks the connection, and so ends st. */
static int send_items(tcp_cstream *st, uint16_t flags, shmrpc_bytes body, shmrpc_buf *err)
{
    tcp_conn *c = st->c;
    shmrpc_buf_clear(&c->out);
    int rc = shmrpc__tcp_put_msg_frame(&c->out, SHMRPC__KIND_ITEMS, flags, st->sid, st->rid, -1,
                                       shmrpc_bytes_of(NULL, 0), body, c->comp, c->threshold);
    if (rc) {
        shmrpc__msg_set(err, "cannot frame the item: %s", shmrpc_strerror(rc));
        return rc;
    }
    rc = shmrpc__tcp_send_all(c, c->out.data, c->out.len, st->deadline, err);
    if (c->out.cap > ((size_t)1 << 20)) {
        shmrpc_buf_destroy(&c->out);
        shmrpc_buf_init(&c->out);
    }
    return rc;
}

/* Sends the items st holds in one ITEMS frame, with flags (the last flag at done): 0, or
 * why not (err), which ends st: a failure to send breaks the connection, and one to frame
 * them (no memory) loses items that their sends said were sent, so st ends there, its
 * handler told. */
static int send_held(tcp_pool *p, tcp_cstream *st, uint16_t flags, shmrpc_buf *err)
{
    if (st->held.len == 0 && flags == 0) return 0;
    int rc = send_items(st, flags, shmrpc_bytes_of(st->held.data, st->held.len), err);
    shmrpc_buf_clear(&st->held);
    if (st->held.cap > ((size_t)1 << 20)) { /* a large item keeps no memory */
        shmrpc_buf_destroy(&st->held);
        shmrpc_buf_init(&st->held);
    }
    uint64_t n = st->n_held;
    st->n_held = 0;
    if (rc) { /* a broken connection says so, with why */
        int why = cannot_send(p, st, err);
        if (why) return why;
        shmrpc__msg_append(err, " (%" PRIu64 " items after the %" PRIu64 " sent were lost)", n,
                           st->sent);
        give_up(p, st, true);
        shmrpc__tcp_stream_set_end(st, rc, shmrpc__msg_get(err));
        return rc;
    }
    st->sent += n;
    return 0;
}

/* Sends an item of st, or holds it (corked); with st->mu held (both ways). */
static int stream_send(tcp_pool *p, tcp_cstream *st, const void *item, size_t n, shmrpc_buf *err)
{
    shmrpc__conn *base = &p->base;
    int rc = cannot_send(p, st, err);
    if (rc) return rc;
    tcp_conn *c = st->c;
    if (n > c->peer_max) { /* the stream goes on without it */
        shmrpc__msg_set(err, "an item of %zu bytes is above the server's maximum of %" PRIu32, n,
                        c->peer_max);
        return SHMRPC_ETOOBIG;
    }
    /* An item waits for the window to hold it; one larger than the whole window goes alone,
     * once nothing else is in transit. Meanwhile the connection is read: the WINDOWs, the
     * server's own items, and its end. A frame that came already is read before each item
     * (corked, before the first of each ITEMS frame), so that a handler that returned ends the
     * sends at once, not once the window is spent. */
    int64_t need = (int64_t)(SHMRPC__ITEM_LEN_SIZE + n);
    bool look = !st->corked || st->held.len == 0;
    while (shmrpc__conn_cancelled(base) || (look && frame_came(c)) ||
           (need > st->send_avail && !(need > W && st->send_avail == W))) {
        if (shmrpc__conn_cancelled(base)) {
            rc = SHMRPC_ECANCELLED;
            shmrpc__msg_set(err, "the stream was cancelled (shmrpc_client_cancel)");
        } else if (shmrpc__now_ns() >= st->deadline) {
            rc = SHMRPC_ETIMEDOUT;
        } else {
            give_window(p, st); /* the server may wait for room too (both ways) */
            if ((rc = cannot_send(p, st, err)) != 0) return rc;
            if ((rc = send_held(p, st, 0, err)) != 0) return rc; /* it may wait for them */
            rc = read_turn(p, st, err);
        }
        if (rc == SHMRPC_ETIMEDOUT) shmrpc__msg_set(err, "the stream's deadline passed");
        if (rc) { /* given up, and ended here: its answer says so */
            give_up(p, st, rc != SHMRPC_ETIMEDOUT);
            shmrpc__tcp_stream_set_end(st, rc, shmrpc__msg_get(err));
            return rc;
        }
        if ((rc = cannot_send(p, st, err)) != 0) return rc;
        look = true;
    }
    /* An ITEMS frame holds no more than the server's largest item and its length (its check,
     * shmrpc__items_check): what is held goes first when this one would pass that. */
    if (st->held.len && st->held.len + n > c->peer_max && (rc = send_held(p, st, 0, err)) != 0)
        return rc;
    uint8_t len[SHMRPC__ITEM_LEN_SIZE];
    for (unsigned i = 0; i < sizeof len; i++) /* big-endian */
        len[i] = (uint8_t)(n >> (8 * (sizeof len - 1 - i)));
    size_t was = st->held.len;
    if (shmrpc_buf_append(&st->held, len, sizeof len) || shmrpc_buf_append(&st->held, item, n)) {
        st->held.len = was; /* what it held still goes */
        st->held.err = 0;
        shmrpc__msg_set(err, "out of memory for an item of %zu bytes", n);
        return SHMRPC_ENOMEM;
    }
    st->send_avail -= need;
    st->n_held++;
    return st->corked && st->held.len < TCP_HELD_MAX ? 0 : send_held(p, st, 0, err);
}

int shmrpc__tcp_stream_send(shmrpc__conn *base, const void *item, size_t n, shmrpc_buf *err)
{
    tcp_pool *p = (tcp_pool *)base;
    tcp_cstream *st = p->stream;
    if (shmrpc__self_pid() != p->pid) {
        shmrpc__msg_set(err, "this connection belongs to process %d", (int)p->pid);
        return SHMRPC_EINVAL;
    }
    if (!st) return cannot_send(p, st, err);
    stream_lock(st);
    int rc = stream_send(p, st, item, n, err);
    stream_unlock(st);
    return rc;
}

void shmrpc__tcp_stream_done(shmrpc__conn *base)
{
    tcp_pool *p = (tcp_pool *)base;
    tcp_cstream *st = p->stream;
    if (shmrpc__self_pid() != p->pid || !st) return;
    stream_lock(st);
    /* The server has the deadline too: its reads end. */
    if (!st->done && shmrpc__now_ns() < st->deadline) {
        shmrpc_buf err;
        shmrpc_buf_init(&err);
        /* Said by the stream's answer: a failure here ends it, through its connection. The
         * items held go with the last flag. */
        if (cannot_send(p, st, &err) == 0) send_held(p, st, SHMRPC__FLAG_LAST, &err);
        shmrpc_buf_destroy(&err);
    }
    st->done = true;
    stream_unlock(st);
}

int shmrpc__tcp_stream_cork(shmrpc__conn *base, bool on, shmrpc_buf *err)
{
    tcp_pool *p = (tcp_pool *)base;
    tcp_cstream *st = p->stream;
    if (shmrpc__self_pid() != p->pid) {
        shmrpc__msg_set(err, "this connection belongs to process %d", (int)p->pid);
        return SHMRPC_EINVAL;
    }
    if (!st) return cannot_send(p, st, err);
    stream_lock(st);
    st->corked = on;
    int rc = 0;
    if (!on && st->held.len && (rc = cannot_send(p, st, err)) == 0) rc = send_held(p, st, 0, err);
    stream_unlock(st);
    return rc;
}
