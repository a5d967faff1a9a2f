/* SPDX-License-Identifier: MIT */
/* A tcp:// worker's streams (revision 8; docs/wire.md, "Streams"): a handler on a thread of
 * the pool writes its items within the client's window in a ring of the stream's own; the
 * worker's own thread, the only one that touches the socket, frames them as ITEMS and reads
 * the WINDOWs that give the window back. A client's items (revision 9) go the other way: the
 * worker's thread queues them for the handler as their ITEMS frames come, within the server's
 * window, and grants back what the handler read in WINDOWs. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "transport/tcp/tcp_int.h"
#include "core/wait.h"
#include "transport/tcp/tcp_server_int.h"

#define WINDOW ((int64_t)SHMRPC__STREAM_WINDOW)

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

/* Why the stream j may send no more, or 0; now 0: the clock was not read. */
static int stream_why(job *j, int64_t deadline, int64_t now)
{
    int stopped = atomic_load_explicit(&j->stopped, memory_order_relaxed);
    if (stopped) return stopped;
    /* The client's going after its CANCEL (its close, then its connection's) reads as the
     * close: left is looked at first, so that a CANCEL served before it is seen after. */
    bool left = atomic_load_explicit(&j->p->left, memory_order_acquire);
    if (atomic_load_explicit(&j->cancelled, memory_order_acquire)) return SHMRPC_ECANCELLED;
    if (left) return SHMRPC_EPEERDIED;
    return now != 0 && now >= deadline ? SHMRPC_ETIMEDOUT : 0;
}

/* Waits on j's scv until wake or until (CLOCK_MONOTONIC ns), w->mu held. */
static void stream_nap(job *j, int64_t until)
{
    struct timespec ts = {.tv_sec = until / NS_PER_S, .tv_nsec = until % NS_PER_S};
    pthread_cond_timedwait(&j->scv, &j->w->mu, &ts);
}

/* Puts j on the worker's list of jobs with something for its thread to send (w->mu held):
 * true when the worker must be woken for it (done_fd), false when it was already. */
static bool pull(worker *w, job *j)
{
    if (j->pull_due) return false;
    j->pull_due = true;
    j->pull_next = w->pulls;
    bool wake = !w->pulls && !w->done; /* else the worker was woken already */
    w->pulls = j;
    return wake;
}

static void wake_worker(worker *w)
{
    uint64_t one = 1;
    if (write(w->done_fd, &one, sizeof one) < 0) {
        /* the counter is far from full: never */
    }
}

/* Why the stream j ended: its handler's status, with a message (ctx). */
static int stream_failed(job *j, int why)
{
    return shmrpc_ctx_error(j->ctx, why, "%s",
                            why == SHMRPC_ENOMEM       ? "out of memory for an item"
                            : why == SHMRPC_EPROTO     ? "the client broke the stream's window, or "
                                                         "sent items that break the protocol"
                            : why == SHMRPC_ETIMEDOUT  ? "the stream's deadline passed"
                            : why == SHMRPC_EPEERDIED  ? "the stream's client went away, or its "
                                                         "connection closes"
                            : why == SHMRPC_ECANCELLED ? "the client closed or cancelled the "
                                                         "stream, or the server stops"
                                                       : shmrpc_strerror(why));
}

/* The bytes the handler read go back to the client (w->mu held): once a quarter of the
 * window was read, or when the handler is about to wait, since the client may be waiting for
 * them. True when the worker must be woken to send them. */
static bool give_back(worker *w, job *j, bool waits)
{
    if (j->in_taken == 0 || (!waits && j->in_taken < SHMRPC__STREAM_WINDOW / 4)) return false;
    j->grant += j->in_taken;
    j->in_taken = 0;
    return pull(w, j);
}

/* Whether an item of need bytes may be written after tail: within the window's credit, or
 * one larger than the window alone, once nothing else is in transit. */
static bool fits(const stream_out *o, uint64_t tail, uint64_t need)
{
    uint64_t granted = atomic_load_explicit(&o->granted, memory_order_acquire);
    return need <= WINDOW ? tail + need - granted <= WINDOW : tail == granted;
}

/* Waits until an item of need bytes fits after tail (see fits), or the stream ends: 0, or
 * why. */
static int wait_credit(job *j, uint64_t tail, uint64_t need, int64_t deadline)
{
    worker *w = j->w;
    int why;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        int64_t now = shmrpc__now_ns();
        if ((why = stream_why(j, deadline, now)) != 0 || fits(j->out, tail, need)) break;
        /* Both ways: what the handler read goes back first, since the client may wait for it
         * to send, and read this handler's items only after. */
        if ((j->ways & SHMRPC__STREAM_IN) && give_back(w, j, true)) wake_worker(w);
        stream_nap(j, deadline < now + SHMRPC__CHECK_NS ? deadline : now + SHMRPC__CHECK_NS);
    }
    pthread_mutex_unlock(&w->mu);
    return why;
}

/* Copies n bytes to the ring at the byte count at, wrapping at its end. */
static void ring_put(stream_out *o, uint64_t at, const void *bytes, size_t n)
{
    size_t off = (size_t)(at % WINDOW), first = (size_t)WINDOW - off < n ? (size_t)WINDOW - off : n;
    memcpy(o->ring + off, bytes, first);
    memcpy(o->ring, (const uint8_t *)bytes + first, n - first);
}

/* An item larger than the window, once the ring is empty and framed (fits: every byte before
 * it was granted back, and the worker grants only what it framed): it waits in items, and its
 * bytes count in tail, which the worker passes over once it framed them. */
static int write_alone(job *j, const void *item, size_t n, uint64_t tail, uint64_t need)
{
    worker *w = j->w;
    uint8_t len[SHMRPC__ITEM_LEN_SIZE];
    put_be32(len, (uint32_t)n);
    pthread_mutex_lock(&w->mu);
    int rc = shmrpc_buf_append(&j->items, len, sizeof len) ? j->items.err
             : shmrpc_buf_append(&j->items, item, n)       ? j->items.err
                                                           : 0;
    if (rc == 0) {
        atomic_store_explicit(&j->out->alone, need, memory_order_relaxed);
        atomic_store_explicit(&j->out->tail, tail + need, memory_order_release);
    } else {
        shmrpc_buf_clear(&j->items);
        j->items.err = 0;
    }
    pthread_mutex_unlock(&w->mu);
    if (rc == 0) wake_worker(w);
    return rc;
}

/* An item waits for the window to hold it; one larger than the whole window goes alone,
 * once nothing else is in transit. The handler writes it in the ring with no lock, and wakes
 * the worker only when the worker armed itself to sleep (stream_look). Its fence between the
 * publish and its look at armed pairs with the worker's between arming and its last look at
 * tail, so that one of the two sees the other. (The fence costs a third of a small item's send;
 * membarrier in the worker before each sleep instead, as shm:// makes it, cost more: the
 * worker catches up with its handler and sleeps at almost every batch.) A handler that runs ahead
 * of the worker (which is busy framing) reads the clock at every 64th item only (a read costs 20-50
 * ns, as much as the rest of a small item's send), and its deadline waits that long at most; one
 * that the worker keeps up with reads it at each, as does every wait for credit (shm://'s
 * worker_send does the same). */
int shmrpc__tcp_stream_write(void *arg, const void *item, size_t n)
{
    job *j = arg;
    stream_out *o = j->out;
    if (n > j->peer_max)
        return shmrpc_ctx_error(j->ctx, SHMRPC_ETOOBIG,
                                "an item of %zu bytes is larger than the client's maximum of "
                                "%" PRIu32 " bytes",
                                n, j->peer_max);
    int64_t deadline = shmrpc_ctx_deadline(j->ctx);
    uint64_t need = SHMRPC__ITEM_LEN_SIZE + n;
    uint64_t tail = atomic_load_explicit(&o->tail, memory_order_relaxed); /* its own */
    bool look = j->hint || j->sends++ % 64 == 0;
    int why = stream_why(j, deadline, look ? shmrpc__now_ns() : 0);
    if (why == 0 && !fits(o, tail, need)) why = wait_credit(j, tail, need, deadline);
    if (why == 0 && need > WINDOW && write_alone(j, item, n, tail, need) != 0) why = SHMRPC_ENOMEM;
    if (why) return stream_failed(j, why);
    if (need > WINDOW) return 0;
    uint8_t len[SHMRPC__ITEM_LEN_SIZE];
    put_be32(len, (uint32_t)n);
    ring_put(o, tail, len, sizeof len);
    ring_put(o, tail + sizeof len, item, n);
    atomic_store_explicit(&o->tail, tail + need, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    j->hint = atomic_load_explicit(&o->armed, memory_order_relaxed);
    if (j->hint && atomic_exchange_explicit(&o->armed, false, memory_order_relaxed))
        wake_worker(j->w);
    return 0;
}

/* An item waits for its ITEMS frame; the worker's thread queued it whole. Each item read
 * is copied out of the queue, which then drops what was read (shmrpc__tcp_queue_read). */
int shmrpc__tcp_stream_read(void *arg, shmrpc_buf *item)
{
    job *j = arg;
    worker *w = j->w;
    int64_t deadline = shmrpc_ctx_deadline(j->ctx);
    bool wake = false;
    int rc = 0;
    uint32_t len = 0;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        /* Before an item: a stream ended (a lie of its client, a cancel, the client gone, the
         * server's stop) ends the reads, whatever is queued. */
        if ((rc = stream_why(j, deadline, 0)) != 0) break;
        if (j->in_head < j->in.len) {
            memcpy(&len, j->in.data + j->in_head, sizeof len);
            const uint8_t *at = j->in.data + j->in_head + sizeof len;
            rc = shmrpc_buf_append(item, at, len) ? item->err : 1;
            j->in_head += sizeof len + (size_t)len;
            j->in_taken += SHMRPC__ITEM_LEN_SIZE + len;
            shmrpc__tcp_queue_read(&j->in, &j->in_head);
            wake |= give_back(w, j, false);
            break;
        }
        if (j->in_done) break; /* 0: the client's last came */
        int64_t now = shmrpc__now_ns();
        if ((rc = stream_why(j, deadline, now)) != 0) break;
        /* Woken now, not after the wait: the client may wait for these bytes to send more. */
        if (give_back(w, j, true) || wake) wake_worker(w);
        wake = false;
        stream_nap(j, deadline < now + SHMRPC__CHECK_NS ? deadline : now + SHMRPC__CHECK_NS);
    }
    pthread_mutex_unlock(&w->mu);
    if (wake) wake_worker(w);
    if (rc == SHMRPC_ETOOBIG)
        return shmrpc_ctx_error(j->ctx, rc,
                                "an item of %" PRIu32 " bytes is larger than the server's maximum "
                                "of %zu bytes",
                                len, item->max);
    return rc < 0 ? stream_failed(j, rc) : rc;
}

void shmrpc__tcp_stream_stop(worker *w, peer *p, int why)
{
    if (!p->n_streams) return;
    pthread_mutex_lock(&w->mu);
    for (job *j = p->jobs; j; j = j->peer_next) {
        if (!j->stream) continue;
        if (why && !atomic_load_explicit(&j->stopped, memory_order_relaxed))
            atomic_store_explicit(&j->stopped, why, memory_order_relaxed);
        pthread_cond_broadcast(&j->scv);
    }
    pthread_mutex_unlock(&w->mu);
}

job *shmrpc__tcp_stream_take(worker *w)
{
    job *list = w->pulls;
    w->pulls = NULL;
    for (job *j = list; j; j = j->pull_next) {
        j->taken_next = j->pull_next;
        j->pull_due = false;
        j->granting = j->grant;
        j->grant = 0;
    }
    return list;
}

void shmrpc__tcp_stream_grant(job *j)
{
    peer *p = j->p;
    if (j->granting && !p->gone && !p->closing) {
        size_t at = shmrpc__frame_begin(&p->out, SHMRPC__KIND_WINDOW, 0, 0, j->rid);
        uint8_t grant[SHMRPC__WINDOW_LEN];
        put_be32(grant, j->granting);
        shmrpc_buf_append(&p->out, grant, sizeof grant);
        shmrpc__frame_end(&p->out, at);
        j->in_held -= j->granting;
    }
    j->granting = 0;
}

/* Items go in frames of at most the client's largest message and their lengths, cut
 * between items; none to a connection that closes (its client goes, or broke the
 * protocol: what follows would not be read in order). */
static void frame_items(job *j, const uint8_t *items, size_t len)
{
    peer *p = j->p;
    size_t max = (size_t)p->peer_max + SHMRPC__ITEM_LEN_SIZE;
    for (size_t at = 0, end; !p->gone && !p->closing && at < len; at = end) {
        end = at + SHMRPC__ITEM_LEN_SIZE + get_be32(items + at);
        while (end < len && end + SHMRPC__ITEM_LEN_SIZE + get_be32(items + end) - at <= max)
            end += SHMRPC__ITEM_LEN_SIZE + get_be32(items + end);
        int rc = shmrpc__tcp_put_msg_frame(
            &p->out, SHMRPC__KIND_ITEMS, 0, j->method, j->rid, -1, shmrpc_bytes_of(NULL, 0),
            shmrpc_bytes_of(items + at, end - at), p->comp, p->threshold);
        if (rc) /* out of memory: the client cannot be told in order, so it is let go */
            shmrpc__tcp_peer_refuse(p, rc, "out of memory for a stream's items");
    }
}

/* Frames what j's handler wrote up to tail (read with acquire): first an item that went
 * alone, which was the only one in transit when it was written; then the ring's bytes from
 * head, made one span where they wrap. True when something was. */
static bool frame_out(worker *w, job *j, uint64_t tail)
{
    stream_out *o = j->out;
    if (tail == j->head) return false;
    uint64_t alone = atomic_load_explicit(&o->alone, memory_order_relaxed);
    if (alone) { /* taken under the lock, framed (and compressed) outside it */
        pthread_mutex_lock(&w->mu);
        shmrpc_buf t = j->framing; /* empty */
        j->framing = j->items;
        j->items = t;
        atomic_store_explicit(&o->alone, 0, memory_order_relaxed);
        pthread_mutex_unlock(&w->mu);
        frame_items(j, j->framing.data, j->framing.len);
        shmrpc_buf_clear(&j->framing);
        j->head += alone;
    }
    size_t off = (size_t)(j->head % WINDOW), len = (size_t)(tail - j->head);
    if (off + len <= WINDOW) {
        frame_items(j, o->ring + off, len);
    } else if (shmrpc_buf_append(&j->framing, o->ring + off, (size_t)WINDOW - off) == 0 &&
               shmrpc_buf_append(&j->framing, o->ring, off + len - (size_t)WINDOW) == 0) {
        frame_items(j, j->framing.data, len);
    } else {
        shmrpc__tcp_peer_refuse(j->p, SHMRPC_ENOMEM, "out of memory for a stream's items");
    }
    shmrpc_buf_clear(&j->framing);
    j->head = tail;
    return true;
}

/* Frames what each stream wrote; the connections that got items, or NULL. */
static peer *look_outs(worker *w)
{
    peer *touched = NULL;
    for (job *j = w->outs; j; j = j->out_next)
        if (frame_out(w, j, atomic_load_explicit(&j->out->tail, memory_order_acquire)) &&
            !j->p->gone)
            shmrpc__tcp_touch(&touched, j->p);
    return touched;
}

peer *shmrpc__tcp_stream_look(worker *w)
{
    peer *touched = look_outs(w);
    if (touched) return touched;
    for (job *j = w->outs; j; j = j->out_next)
        atomic_store_explicit(&j->out->armed, true, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    return look_outs(w);
}

int shmrpc__tcp_results_open(worker *w, job *j)
{
    j->out = aligned_alloc(_Alignof(stream_out), sizeof *j->out);
    if (!j->out) return SHMRPC_ENOMEM;
    atomic_init(&j->out->tail, 0);
    atomic_init(&j->out->granted, 0);
    atomic_init(&j->out->alone, 0);
    atomic_init(&j->out->armed, true); /* its first item wakes the worker, whatever it does */
    j->head = 0;
    j->hint = false;
    j->sends = 0;
    j->out_prev = NULL;
    j->out_next = w->outs;
    if (w->outs) w->outs->out_prev = j;
    w->outs = j;
    return 0;
}

void shmrpc__tcp_results_close(worker *w, job *j)
{
    if (!j->out) return;
    frame_out(w, j, atomic_load_explicit(&j->out->tail, memory_order_acquire));
    if (j->out_prev)
        j->out_prev->out_next = j->out_next;
    else
        w->outs = j->out_next;
    if (j->out_next) j->out_next->out_prev = j->out_prev;
    free(j->out);
    j->out = NULL;
}

void shmrpc__tcp_serve_window(worker *w, peer *p, const shmrpc__frame_hdr *h, shmrpc_bytes body)
{
    uint32_t grant = get_be32(body.ptr); /* the decoder checked its 4 bytes */
    char msg[160];
    if (grant == 0) {
        snprintf(msg, sizeof msg, "a WINDOW frame for stream %" PRIu64 " grants no bytes",
                 h->request_id);
        shmrpc__tcp_peer_refuse(p, SHMRPC_EPROTO, msg);
        return;
    }
    job *j = p->jobs;
    while (j && !(j->stream && j->rid == h->request_id))
        j = j->peer_next;
    if (!j) return; /* its stream ended while the WINDOW came: nothing is owed */
    /* Counted against the bytes framed, which alone the client can have read. */
    uint64_t granted = j->out ? atomic_load_explicit(&j->out->granted, memory_order_relaxed) : 0;
    int64_t credit = j->out ? WINDOW - (int64_t)(j->head - granted) : WINDOW;
    pthread_mutex_lock(&w->mu);
    bool over = credit + grant > WINDOW;
    if (over) /* always for a stream of the client's items only, which has no out */
        atomic_store_explicit(&j->stopped, SHMRPC_EPROTO, memory_order_relaxed);
    else
        atomic_store_explicit(&j->out->granted, granted + grant, memory_order_release);
    pthread_cond_broadcast(&j->scv);
    pthread_mutex_unlock(&w->mu);
    if (over) {
        snprintf(msg, sizeof msg,
                 "a WINDOW frame grants stream %" PRIu64 " more than it was sent (%" PRId64
                 " + %" PRIu32 " is above %" PRId64 ")",
                 h->request_id, credit, grant, WINDOW);
        shmrpc__tcp_peer_refuse(p, SHMRPC_EPROTO, msg);
    }
}

void shmrpc__tcp_serve_items(worker *w, peer *p, const shmrpc__frame_hdr *h, shmrpc_bytes body)
{
    char msg[300];
    int rc = SHMRPC_EPROTO;
    if (p->proto < 9) {
        shmrpc__tcp_peer_refuse(p, SHMRPC_EPROTO,
                                "an ITEMS frame from a client needs protocol revision 9 (not "
                                "agreed)");
        return;
    }
    job *j = p->jobs;
    while (j && !(j->stream && j->rid == h->request_id))
        j = j->peer_next;
    /* Its stream ended while they came, or was stopped (a lie before, no memory): nobody
     * reads them. */
    if (!j || atomic_load_explicit(&j->stopped, memory_order_relaxed)) return;
    if (h->method != j->method || !(j->ways & SHMRPC__STREAM_IN) || j->in_done) {
        snprintf(msg, sizeof msg,
                 h->method != j->method ? "an ITEMS frame for stream %" PRIu64
                                          " names method %" PRIu32 ", not its own"
                 : !(j->ways & SHMRPC__STREAM_IN)
                     ? "an ITEMS frame for stream %" PRIu64
                       ", whose parameter does not stream (method %" PRIu32 ")"
                     : "an ITEMS frame for stream %" PRIu64 " after its last (method %" PRIu32 ")",
                 h->request_id, h->method);
        goto refused;
    }
    shmrpc_bytes items;
    uint64_t count;
    shmrpc__msg_clear(&w->err);
    rc = shmrpc__items_check("the client", "server's", h->request_id,
                                 h->flags & SHMRPC__FLAG_COMPRESSION, body, WINDOW - j->in_held,
                                 WINDOW, w->l->max_msg, &w->unz, &items, &count, &w->err);
    if (rc) {
        snprintf(msg, sizeof msg, "%s", shmrpc__msg_get(&w->err));
        goto refused;
    }
    /* Queued with native lengths, as the handler reads them. */
    pthread_mutex_lock(&w->mu);
    size_t was = j->in.len;
    for (size_t at = 0; at < items.len && rc == 0;) {
        uint32_t len = get_be32(items.ptr + at);
        if (shmrpc_buf_append(&j->in, &len, sizeof len) ||
            shmrpc_buf_append(&j->in, items.ptr + at + SHMRPC__ITEM_LEN_SIZE, len))
            rc = SHMRPC_ENOMEM;
        at += SHMRPC__ITEM_LEN_SIZE + len;
    }
    if (rc) { /* the handler cannot be given them in order: it ends */
        j->in.len = was;
        j->in.err = 0;
        atomic_store_explicit(&j->stopped, SHMRPC_ENOMEM, memory_order_relaxed);
    } else {
        j->in_held += (int64_t)items.len;
        j->in_done = h->flags & SHMRPC__FLAG_LAST;
    }
    pthread_cond_broadcast(&j->scv);
    pthread_mutex_unlock(&w->mu);
    shmrpc_buf_clear(&w->unz); /* after the items it held were queued */
    shmrpc__tcp_buf_trim(&w->unz);
    return;
refused: /* its handler's next read fails, and the connection closes after the answers */
    shmrpc_buf_clear(&w->unz);
    shmrpc__tcp_buf_trim(&w->unz);
    rc = rc == SHMRPC_ENOMEM ? rc : SHMRPC_EPROTO;
    pthread_mutex_lock(&w->mu);
    atomic_store_explicit(&j->stopped, rc, memory_order_relaxed);
    pthread_cond_broadcast(&j->scv);
    pthread_mutex_unlock(&w->mu);
    shmrpc__tcp_peer_refuse(p, rc, msg);
}

void shmrpc__tcp_stream_ended(worker *w)
{
    if (!w->solo || w->n_streams) return;
    for (int i = 0; i < w->n_peers; i++) {
        peer *p = w->peers[i];
        if (p->gone || p->again) continue;
        p->again = true;
        p->next_again = w->again;
        w->again = p;
    }
}
