/* SPDX-License-Identifier: MIT */
/* A tcp:// worker's streams (revision 8; docs/wire.md, "Streams"): a handler on a thread of
 * the pool queues its items within the client's window; the worker's own thread, the only
 * one that touches the socket, frames them as ITEMS and reads the WINDOWs that give the
 * window back. A client's items (revision 9) go the other way: the worker's thread queues
 * them for the handler as their ITEMS frames come, within the server's window, and grants
 * back what the handler read in WINDOWs. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
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

/* Why the stream j may send no more (w->mu held), or 0; now 0: the clock was not read. */
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

/* An item waits for the window to hold it; one larger than the whole window goes alone,
 * once nothing else is in transit. The worker is woken (done_fd) when the first items
 * since its last look are queued, so a batch of items costs one wake-up. A handler that
 * runs ahead of the worker (its last items not yet taken) reads the clock at every 64th
 * item only (a read costs 20-50 ns, as much as the rest of a small item's send), and its
 * deadline waits that long at most; one that the worker keeps up with reads it at each, as
 * does every wait for credit (shm://'s worker_send does the same). */
int shmrpc__tcp_stream_write(void *arg, const void *item, size_t n)
{
    job *j = arg;
    worker *w = j->w;
    if (n > j->peer_max)
        return shmrpc_ctx_error(j->ctx, SHMRPC_ETOOBIG,
                                "an item of %zu bytes is larger than the client's maximum of "
                                "%" PRIu32 " bytes",
                                n, j->peer_max);
    int64_t deadline = shmrpc_ctx_deadline(j->ctx);
    int64_t need = (int64_t)(SHMRPC__ITEM_LEN_SIZE + n);
    bool wake = false;
    int why;
    pthread_mutex_lock(&w->mu);
    bool look = j->items.len == 0 || j->sends++ % 64 == 0;
    for (;;) {
        int64_t now = look ? shmrpc__now_ns() : 0;
        if ((why = stream_why(j, deadline, now)) != 0) break;
        if (need <= j->credit || (need > WINDOW && j->credit == WINDOW)) break;
        if (!look) {
            look = true;
            continue;
        }
        /* Both ways: what the handler read goes back first, since the client may wait for it
         * to send, and read this handler's items only after. */
        if ((j->ways & SHMRPC__STREAM_IN) && give_back(w, j, true)) wake_worker(w);
        stream_nap(j, deadline < now + SHMRPC__CHECK_NS ? deadline : now + SHMRPC__CHECK_NS);
    }
    if (why == 0) {
        size_t at = j->items.len;
        uint8_t len[SHMRPC__ITEM_LEN_SIZE];
        put_be32(len, (uint32_t)n);
        if (shmrpc_buf_append(&j->items, len, sizeof len) == 0 &&
            shmrpc_buf_append(&j->items, item, n) == 0) {
            j->credit -= need;
            wake = pull(w, j);
        } else {
            j->items.len = at;
            j->items.err = 0;
            why = SHMRPC_ENOMEM;
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (wake) wake_worker(w);
    return why == 0 ? 0 : stream_failed(j, why);
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
        shmrpc_buf t = j->framing; /* empty: framed at the last look */
        j->framing = j->items;
        j->items = t;
        j->granting = j->grant;
        j->grant = 0;
    }
    return list;
}

/* The bytes of the item at off in items: its length and itself. */
static size_t item_size(const shmrpc_buf *items, size_t off)
{
    return SHMRPC__ITEM_LEN_SIZE + get_be32(items->data + off);
}

/* Items go in frames of at most the client's largest message and their lengths, cut
 * between items; none to a connection that closes (its client goes, or broke the
 * protocol: what follows would not be read in order). */
void shmrpc__tcp_stream_frame(job *j)
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
    const shmrpc_buf *items = &j->framing;
    size_t max = (size_t)p->peer_max + SHMRPC__ITEM_LEN_SIZE;
    for (size_t at = 0, end; !p->gone && !p->closing && at < items->len; at = end) {
        end = at + item_size(items, at);
        while (end < items->len && end + item_size(items, end) - at <= max)
            end += item_size(items, end);
        int rc = shmrpc__tcp_put_msg_frame(
            &p->out, SHMRPC__KIND_ITEMS, 0, j->method, j->rid, -1, shmrpc_bytes_of(NULL, 0),
            shmrpc_bytes_of(items->data + at, end - at), p->comp, p->threshold);
        if (rc) /* out of memory: the client cannot be told in order, so it is let go */
            shmrpc__tcp_peer_refuse(p, rc, "out of memory for a stream's items");
    }
    shmrpc_buf_clear(&j->framing); /* shed with the job's other buffers (job_put) */
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
    pthread_mutex_lock(&w->mu);
    int64_t credit = j->credit;
    bool over = credit + grant > WINDOW;
    if (over)
        atomic_store_explicit(&j->stopped, SHMRPC_EPROTO, memory_order_relaxed);
    else
        j->credit += grant;
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
