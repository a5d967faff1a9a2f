/* SPDX-License-Identifier: MIT */
/* Batches: shmrpc_queue_push_batch and shmrpc_queue_pop_batch, whose runs of messages are
 * claimed or taken with one move of the tail or the head and given back with one move of
 * the frontier. */
#include <stdbool.h>
#include <string.h>

#include "queue/queue_int.h"

/* The most messages a batch claims with one move of the tail. */
#define RUN 32u

/* A single producer's batch: the first of lens[0..k) waits for room as a push does, the
 * others follow while they fit against the frontier known; all are written, then
 * published in order (COMMITTED, release stores) and the tail moved past them once. A
 * consumer that keeps up then finds the whole run at once and takes it as one (its batch
 * would otherwise take what one push had published, a message or two, per call). Killed
 * before the tail moved, the holder left a prefix of the run committed at the tail: its
 * successor moves the tail past it (take_over_producing). 0 with *pushed >= 1, or the
 * status of the first. */
static int sp_push_run(shmrpc_queue *q, const shmrpc_queue_msg *msgs, const uint32_t *lens,
                       uint32_t k, bool small, due *dl, struct producing *pr, uint32_t *pushed)
{
    uint32_t pos, start;
    int rc = shmrpc__q_sp_claim(q, lens[0], dl, pr, &pos, &start);
    if (rc != 0) return rc;
    uint64_t f = atomic_load_explicit(&q->freed_seen, memory_order_relaxed);
    uint32_t c = 0, end = q->sp_end; /* not read back: another process may write there */
    struct q_desc *desc = q->desc;
    if (small) {
        /* All in their descriptors (small: each of lens <= INLINE_MAX): no room in the
         * arena, so only slots, those the frontier known leaves from pos on (pos's own
         * among them, and its fields written by the claim). */
        uint32_t room = q->n - (pos - msg_of(f));
        for (; c < k && c < room; c++) {
            struct q_desc *d = &desc[(pos + c) & q->mask];
            copy_small(d->inl, msgs[c].data, lens[c]);
            if (c == 0) continue;
            atomic_store_explicit(&d->start, end, memory_order_relaxed);
            atomic_store_explicit(&d->len, lens[c], memory_order_relaxed);
            atomic_store_explicit(&d->end, end, memory_order_relaxed);
        }
    } else {
        for (;;) {
            if (lens[c]) memcpy(payload(q, pos + c, start, lens[c]), msgs[c].data, lens[c]);
            if (++c == k) break;
            uint32_t next;
            place(q, end, lens[c], &start, &next);
            if (!fits(q, pos + c, next, f)) break;
            struct q_desc *d = desc_at(q, pos + c);
            atomic_store_explicit(&d->start, start, memory_order_relaxed);
            atomic_store_explicit(&d->len, lens[c], memory_order_relaxed);
            atomic_store_explicit(&d->end, next, memory_order_relaxed);
            end = next;
        }
    }
    for (uint32_t j = 0; j < c; j++)
        atomic_store_explicit(&desc[(pos + j) & q->mask].state, mkstate(pos + j, S_COMMITTED, 0),
                              memory_order_release);
    q->sp_tail = mkpos(pos + c, end);
    atomic_store_explicit(&q->hdr->tail, q->sp_tail, memory_order_release);
    uint64_t was = q->sp_count;
    q->sp_count += c;
    if (crossed((uint32_t)was, (uint32_t)q->sp_count))
        atomic_store_explicit(&q->hdr->pushed, q->sp_count, memory_order_relaxed);
    pr->unsignalled += c;
    *pushed = c;
    return 0;
}

int shmrpc_queue_push_batch(shmrpc_queue *q, const shmrpc_queue_msg *msgs, size_t n, size_t *done,
                            int64_t timeout_ms)
{
    if (done) *done = 0;
    if (!q || (!msgs && n)) return fail(SHMRPC_EINVAL, "queue or msgs is NULL");
    int rc = shmrpc__q_check_timeout(timeout_ms);
    if (rc == 0 && gone(q)) rc = shmrpc__q_cut_fail(q);
    if (rc != 0) return rc;
    due dl = due_in(timeout_ms);
    struct producing pr = {0};
    size_t i = 0;
    while (i < n) {
        /* A run of valid messages, claimed with one move of the tail. */
        uint32_t lens[RUN], starts[RUN], k = 0, c = 0, pos;
        bool small = true; /* every one of the run in its descriptor */
        for (; k < RUN && i + k < n; k++) {
            const shmrpc_queue_msg *m = &msgs[i + k];
            if (!m->data && m->len) {
                rc = fail(SHMRPC_EINVAL, "message %zu of the batch has no data", i + k);
                break;
            }
            if (m->len > q->max_msg && (rc = shmrpc__q_check_len(q, m->len)) != 0) break;
            lens[k] = (uint32_t)m->len;
            small = small && m->len <= INLINE_MAX;
        }
        if (k == 0) break;
        rc = 0; /* a bad message after the run is reported once the run is pushed */
        if (q->sp) {
            if ((rc = sp_push_run(q, msgs + i, lens, k, small, &dl, &pr, &c)) != 0) break;
            i += c;
            continue;
        }
        if ((rc = shmrpc__q_claim(q, lens, k, &dl, &pr, &pos, starts, &c)) != 0) break;
        /* Every claimed slot is committed, even after one that failed (it was taken from
         * us: a repairer judged us dead), so none stays claimed. */
        uint32_t ok = c;
        for (uint32_t j = 0; j < c; j++) {
            if (lens[j]) memcpy(payload(q, pos + j, starts[j], lens[j]), msgs[i + j].data, lens[j]);
            int prc = shmrpc__q_publish(q, pos + j, &pr);
            if (prc != 0 && rc == 0) {
                rc = prc;
                ok = j;
            }
        }
        i += ok;
        if (rc != 0) break;
    }
    shmrpc__q_flush_signal(q, &pr);
    if (cut(q)) i = 0; /* not one of them is in the queue */
    if (done) *done = i;
    if (cut(q)) return shmrpc__q_cut_fail(q);
    if (rc == SHMRPC_ETIMEDOUT) return shmrpc__q_timed_out(q, timeout_ms, "full");
    return rc;
}

/* A work queue's pop_batch, after its first message (READING by us at pos, head moved):
 * takes the messages right behind it that are committed and fit their buffers, up to n
 * more, each by a CAS of its state, and moves the head past them all with one CAS (or
 * leaves it to the helpers, which move it past a message taken). Returns how many. */
static uint32_t take_run(shmrpc_queue *q, uint32_t pos, shmrpc_queue_msg *msgs, uint32_t n,
                         uint32_t *starts)
{
    struct q_hdr *h = q->hdr;
    uint32_t c = 0, me = self();
    while (c < n) {
        uint32_t at = pos + 1 + c;
        struct q_desc *d = desc_at(q, at);
        uint64_t s = atomic_load_explicit(&d->state, memory_order_acquire);
        if (s != mkstate(at, S_COMMITTED, 0)) break;
        uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
        if (l > msgs[c].cap) break; /* left queued: the next call says ETOOBIG */
        if (!atomic_compare_exchange_strong(&d->state, &s, mkstate(at, S_READING, me))) break;
        atomic_store_explicit(&d->cons_tag, self_tag(at), memory_order_relaxed);
        uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
        l = atomic_load_explicit(&d->len, memory_order_relaxed);
        uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
        if (!sound(q, st, l, end) || l > msgs[c].cap) {
            /* A broken descriptor: dropped and counted, as a pop drops it (the run ends
             * before it; the head's helpers and the frontier pass it). */
            s = mkstate(at, S_READING, me);
            if (atomic_compare_exchange_strong(&d->state, &s, mkstate(at, S_RELEASED, 0)))
                bump(&h->drops, 1);
            break;
        }
        starts[c] = st;
        msgs[c].len = l;
        c++;
    }
    if (c == 0) return 0;
    uint32_t hd = atomic_load(&h->head);
    while ((int32_t)(hd - (pos + 1)) >= 0 && (int32_t)(pos + 1 + c - hd) > 0) {
        if (atomic_compare_exchange_weak(&h->head, &hd, pos + 1 + c)) {
            if (crossed(hd, pos + 1 + c)) shmrpc__q_raise_base(&h->popped, pos + 1 + c);
            break;
        }
    }
    return c;
}

/* Gives back messages pos..pos+c-1, all READING by us: at the frontier, each freed
 * directly and the frontier moved past them all with one CAS; else each RELEASED, then
 * the frontier. */
static void give_back_run(shmrpc_queue *q, uint32_t pos, uint32_t c)
{
    struct q_hdr *h = q->hdr;
    uint64_t f = atomic_load(&h->freed);
    uint32_t j = 0, b = byte_of(f), me = self();
    if (msg_of(f) == pos) {
        for (; j < c; j++) {
            struct q_desc *d = desc_at(q, pos + j);
            uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
            uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
            uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
            uint64_t s = mkstate(pos + j, S_READING, me);
            if (!placed(q, b, st, l, end)) break; /* written over: the advance (freed_to) */
            if (!atomic_compare_exchange_strong(&d->state, &s, mkstate(pos + j + q->n, S_FREE, 0)))
                break;
            b = end;
        }
        if (j > 0) {
            bool moved = atomic_compare_exchange_strong(&h->freed, &f, mkpos(pos + j, b));
            if (j == c) {
                shmrpc__q_advance_frontier_by(q, moved ? j : 0);
                return;
            }
        }
    }
    for (; j < c; j++) {
        uint64_t s = mkstate(pos + j, S_READING, me);
        atomic_compare_exchange_strong(&desc_at(q, pos + j)->state, &s,
                                       mkstate(pos + j, S_RELEASED, 0));
    }
    shmrpc__q_advance_frontier(q);
}

/* A single consumer's pop_batch after its first message (taken at pos): takes those
 * already queued right behind it, up to RUN in all, copies them out, and gives them back
 * as a run, with one move of the frontier and one look at the producers' waiters' word.
 * Returns how many. */
static size_t sc_pop_run(shmrpc_queue *q, shmrpc_queue_msg *msgs, size_t n, uint32_t pos,
                         uint32_t start)
{
    uint32_t starts[RUN], c = 1;
    starts[0] = start;
    /* Only committed messages with a sound descriptor that fit their buffers, so that
     * nothing fails here (the next take reports the one that ends the run); taken with one
     * move of the head (cons) for the run. */
    while (c < RUN && c < n) {
        struct q_desc *d = desc_at(q, pos + c);
        if (atomic_load_explicit(&d->state, memory_order_acquire) !=
            mkstate(pos + c, S_COMMITTED, 0))
            break;
        uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
        uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
        uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
        if (l > msgs[c].cap || !sound(q, st, l, end)) break;
        starts[c] = st;
        msgs[c].len = l;
        c++;
    }
    if (c > 1) {
        sc_advance(q, pos + c, cons_popped(q->sc_cons) + (c - 1));
        uint64_t was = q->sc_count;
        q->sc_count += c - 1;
        if (crossed((uint32_t)was, (uint32_t)q->sc_count))
            atomic_store_explicit(&q->hdr->popped, q->sc_count, memory_order_relaxed);
    }
    for (uint32_t j = 0; j < c; j++)
        if (msgs[j].len)
            memcpy(msgs[j].data, payload(q, pos + j, starts[j], (uint32_t)msgs[j].len),
                   msgs[j].len);
    if (msg_of(q->sc_freed) != pos) { /* a peek held before them: the frontier waits for it */
        for (uint32_t j = 0; j < c; j++)
            shmrpc__q_sc_give_back(q, pos + j);
        return c;
    }
    uint32_t b = byte_of(q->sc_freed), j = 0;
    for (; j < c; j++) {
        struct q_desc *d = desc_at(q, pos + j);
        uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
        uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
        uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
        if (!placed(q, b, st, l, end)) break; /* written over since: below */
        if (!q->sp)
            atomic_store_explicit(&d->state, mkstate(pos + j + q->n, S_FREE, 0),
                                  memory_order_release);
        b = end;
    }
    q->sc_freed = mkpos(pos + j, b);
    shmrpc__q_sc_free(q, j);
    for (; j < c; j++)
        shmrpc__q_sc_give_back(q, pos + j);
    return c;
}

/* A queue with both roles (single producer, single consumer), its stream: takes the
 * messages before the tail (what the producer published, one store a run), up to RUN and
 * n, in one pass that checks each one's state (a tail written ahead finds old laps there),
 * descriptor and buffer and copies it out, then moves cons and the frontier once each for
 * them all. Copying before taking is safe: the producer writes a slot again only once the
 * frontier passes it. Returns how many (0: none so, the caller takes the next as a pop
 * does: nothing before the tail, a held peek, a message that needs its status said). */
static size_t stream_run(shmrpc_queue *q, shmrpc_queue_msg *msgs, size_t n)
{
    struct q_hdr *h = q->hdr;
    uint32_t hd = cons_head(q->sc_cons);
    if (msg_of(q->sc_freed) != hd) return 0; /* a peek held: the frontier waits for it */
    uint32_t avail = msg_of(atomic_load_explicit(&h->tail, memory_order_acquire)) - hd;
    if (avail == 0 || avail > q->n) return 0; /* empty, or behind the head or too far on */
    uint32_t c = avail < RUN ? avail : RUN, b = byte_of(q->sc_freed), j = 0;
    if (c > n) c = (uint32_t)n;
    struct q_desc *desc = q->desc;
    for (; j < c; j++) {
        struct q_desc *d = &desc[(hd + j) & q->mask];
        if (atomic_load_explicit(&d->state, memory_order_relaxed) !=
            mkstate(hd + j, S_COMMITTED, 0))
            break;
        uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
        uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
        uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
        /* Sound and at b: placed(), but for a message that starts the arena again, which
         * is rare enough (once a lap) to go the way of a pop, and costs a third of the
         * instructions placed() does here. */
        if (l > msgs[j].cap || !sound(q, st, l, end) || st != b) break;
        if (l <= INLINE_MAX)
            copy_small(msgs[j].data, d->inl, l);
        else
            memcpy(msgs[j].data, q->arena + (st & q->bmask), l);
        msgs[j].len = l;
        b = end;
    }
    if (j == 0) return 0;
    sc_advance(q, hd + j, cons_popped(q->sc_cons) + j);
    uint64_t was = q->sc_count;
    q->sc_count += j;
    if (crossed((uint32_t)was, (uint32_t)q->sc_count))
        atomic_store_explicit(&h->popped, q->sc_count, memory_order_relaxed);
    q->sc_freed = mkpos(hd + j, b);
    atomic_store_explicit(&h->freed, q->sc_freed, memory_order_release);
    fence_for_waiters();
    shmrpc__q_signal_waiters(&h->nonfull, j);
    return j;
}

/* A work queue's pop_batch: the first message as a pop (it may wait), then runs of those
 * queued right behind it, each taken with one move of the head and given back with one
 * move of the frontier. 0 or the status that ended it; *done: how many were taken. */
static int pop_run(shmrpc_queue *q, shmrpc_queue_msg *msgs, size_t n, size_t *done,
                   int64_t timeout_ms)
{
    size_t i = 0;
    int rc = 0;
    while (i < n) {
        if (q->sp && q->sc) {
            if ((rc = shmrpc__q_hold(q, ROLE_CONSUMER)) != 0) break;
            size_t c = stream_run(q, msgs + i, n - i);
            i += c;
            if (c > 0) continue;
        }
        uint32_t pos, start, l = 0, starts[RUN];
        due dl = due_in(i == 0 ? timeout_ms : 0);
        rc = shmrpc__q_take(q, msgs[i].cap, &dl, &pos, &start, &l);
        if (rc == SHMRPC_ETOOBIG) msgs[i].len = l;
        if (rc != 0) break;
        msgs[i].len = l;
        if (q->sc) {
            i += sc_pop_run(q, msgs + i, n - i, pos, start);
            continue;
        }
        size_t more = n - i - 1;
        uint32_t c = 1 + take_run(q, pos, msgs + i + 1, more < RUN - 1 ? (uint32_t)more : RUN - 1,
                                  starts + 1);
        starts[0] = start;
        for (uint32_t j = 0; j < c; j++)
            if (msgs[i + j].len)
                memcpy(msgs[i + j].data, payload(q, pos + j, starts[j], (uint32_t)msgs[i + j].len),
                       msgs[i + j].len);
        give_back_run(q, pos, c);
        i += c;
    }
    *done = i;
    return rc;
}

int shmrpc_queue_pop_batch(shmrpc_queue *q, shmrpc_queue_msg *msgs, size_t n, size_t *done,
                           int64_t timeout_ms)
{
    if (done) *done = 0;
    if (!q || !msgs || n == 0) return fail(SHMRPC_EINVAL, "queue or msgs is NULL, or n is 0");
    int rc = shmrpc__q_check_timeout(timeout_ms);
    if (rc == 0) rc = shmrpc__q_may_pop(q);
    if (rc == 0 && gone(q)) rc = shmrpc__q_cut_fail(q);
    if (rc != 0) return rc;
    size_t valid = 0, i = 0;
    for (; valid < n && (msgs[valid].data || !msgs[valid].cap); valid++)
        msgs[valid].len = 0;
    if (!q->bcast) {
        rc = pop_run(q, msgs, valid, &i, timeout_ms);
    } else {
        for (; i < valid; i++) {
            /* The first waits; the rest are taken only if queued already. */
            due dl = due_in(i == 0 ? timeout_ms : 0);
            rc = shmrpc__q_pop_one(q, msgs[i].data, msgs[i].cap, &msgs[i].len, &dl);
            if (rc != 0) break;
        }
    }
    if (rc == 0 && i == valid && valid < n) {
        msgs[valid].len = 0;
        rc = fail(SHMRPC_EINVAL, "message %zu of the batch has no buffer", valid);
    }
    if (cut(q)) { /* what was copied may be the zero pages' */
        for (size_t j = 0; j < i; j++)
            msgs[j].len = 0;
        return shmrpc__q_cut_fail(q);
    }
    if (done) *done = i;
    if (i > 0 && (rc == SHMRPC_ETIMEDOUT || rc == SHMRPC_ETOOBIG)) return 0;
    if (rc == SHMRPC_ETIMEDOUT) return shmrpc__q_timed_out(q, timeout_ms, "empty");
    return rc;
}
