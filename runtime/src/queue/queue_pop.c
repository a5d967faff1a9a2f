/* SPDX-License-Identifier: MIT */
/* Popping: a consumer takes the head's message (READING), copies it out and gives it back
 * (a single consumer and a subscriber take theirs through queue_single.c and
 * queue_bcast.c), waiting for one until its deadline; shmrpc_queue_pop and
 * shmrpc_queue_look. */
#include <inttypes.h>
#include <sched.h>
#include <string.h>

#include "queue/queue_int.h"

/* One look at the head: 0 (taken: READING by us, head moved past it), TAKE_AGAIN (the
 * head moved, or we helped it past a message others hold), TAKE_EMPTY, SHMRPC_ETOOBIG
 * (longer than cap, left queued; *len says how long) or SHMRPC_EPROTO (a descriptor a
 * bad write broke: dropped). */
static int try_take(shmrpc_queue *q, size_t cap, uint32_t *pos, uint32_t *start, uint32_t *len)
{
    struct q_hdr *h = q->hdr;
    uint32_t hd = atomic_load_explicit(&h->head, memory_order_acquire);
    struct q_desc *d = desc_at(q, hd);
    uint64_t s = atomic_load_explicit(&d->state, memory_order_acquire);
    int32_t ahead = (int32_t)(lap_of(s) - hd);
    if (ahead < 0) return TAKE_EMPTY; /* the slot's last message is still being read */
    if (ahead > 0) {                  /* taken and given back already */
        /* Unless the head is further behind the frontier than steps leave it: said, not
         * walked one message at a time (for up to 2^31 of them). */
        if ((int32_t)(hd - msg_of(atomic_load(&h->freed))) < -(int32_t)q->n) {
            int rc = shmrpc__q_check_positions(q);
            if (rc != 0) return rc;
        }
        shmrpc__q_help_head(q, hd);
        return TAKE_AGAIN;
    }
    switch (st_of(s)) {
    case S_COMMITTED:
        break;
    case S_READING:
    case S_RELEASED:
    case S_ABANDONED:
        shmrpc__q_help_head(q, hd);
        return TAKE_AGAIN;
    default: /* FREE, CLAIMED: not yet; anything else waits for a repair */
        return TAKE_EMPTY;
    }
    uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
    if (l > cap) {
        if (atomic_load(&d->state) != s) return TAKE_AGAIN; /* l was of another message */
        *len = l;
        return fail(SHMRPC_ETOOBIG,
                    "queue '%s': the next message has %" PRIu32 " bytes, the buffer %zu", q->name,
                    l, cap);
    }
    if (!atomic_compare_exchange_strong(&d->state, &s, mkstate(hd, S_READING, self())))
        return TAKE_AGAIN;
    atomic_store_explicit(&d->cons_tag, self_tag(hd), memory_order_relaxed);
    shmrpc__q_help_head(q, hd);
    uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
    l = atomic_load_explicit(&d->len, memory_order_relaxed);
    uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
    if (!sound(q, st, l, end) || l > cap) {
        s = mkstate(hd, S_READING, self());
        atomic_compare_exchange_strong(&d->state, &s, mkstate(hd, S_RELEASED, 0));
        bump(&h->drops, 1);
        shmrpc__q_advance_frontier(q);
        return fail(SHMRPC_EPROTO,
                    "queue '%s': message %" PRIu32 " has a broken descriptor (start %" PRIu32
                    ", length %" PRIu32 ", end %" PRIu32 "); dropped",
                    q->name, hd, st, l, end);
    }
    *pos = hd;
    *start = st;
    *len = l;
    return 0;
}

static int try_next(shmrpc_queue *q, size_t cap, uint32_t *pos, uint32_t *start, uint32_t *len)
{
    if (q->sc) return shmrpc__q_sc_try_take(q, cap, pos, start, len);
    return q->bcast ? shmrpc__q_try_read(q, cap, pos, start, len)
                    : try_take(q, cap, pos, start, len);
}

/* Takes a message, waiting until the deadline: 0, or a status. */
int shmrpc__q_take(shmrpc_queue *q, size_t cap, due *dl, uint32_t *pos, uint32_t *start,
                   uint32_t *len)
{
    struct q_hdr *h = q->hdr;
    bool spun = false;
    for (unsigned again = 0;;) {
        int rc = try_next(q, cap, pos, start, len);
        if (rc <= 0) return rc;
        if (rc == TAKE_AGAIN) {
            /* Each time, another consumer moved on; bounded by the deadline anyway, and a
             * head that a bad write sent far behind is said, not walked for minutes. */
            if (++again % 64 == 0) {
                if ((rc = shmrpc__q_check_positions(q)) != 0) return rc;
                if (shmrpc__q_due_passed(dl)) return SHMRPC_ETIMEDOUT;
            }
            continue;
        }
        if (shmrpc__q_due_passed(dl)) {
            rc = shmrpc__q_check_consuming(q); /* empty, or stuck where no step leads? */
            return rc != 0 ? rc : SHMRPC_ETIMEDOUT;
        }
        if (!spun) {
            spun = true;
            shmrpc__q_spin_for_message(q, dl);
            continue;
        }
        uint32_t old = shmrpc__q_announce(&h->nonempty);
        if (old == 0) continue;
        if (q->sp) (void)shmrpc__membarrier_all();
        rc = try_next(q, cap, pos, start, len);
        if (rc <= 0) return rc;
        if (rc == TAKE_AGAIN) continue;
        struct waiting w = {q, FOR_MESSAGE, shmrpc__now_ns() + PROBE_NS};
        rc = shmrpc__q_wait_on(q, &h->nonempty, old, shmrpc__q_due_at(dl), &w);
        if (rc != 0 && rc != SHMRPC_ETIMEDOUT) return rc;
        if (rc == SHMRPC_ETIMEDOUT) {
            rc = try_next(q, cap, pos, start, len); /* a last look */
            if (rc <= 0) return rc;
            rc = shmrpc__q_check_consuming(q);
            return rc != 0 ? rc : SHMRPC_ETIMEDOUT;
        }
    }
}

/* Gives message pos back: READING by us -> RELEASED, then the frontier; or, when the
 * frontier is at pos (a consumer that keeps up), READING -> FREE of the next lap and the
 * frontier moved past it at once, one CAS fewer. Nobody else moves the frontier past a
 * message we read, so the frontier loaded stays at pos until we move it. */
int shmrpc__q_give_back(shmrpc_queue *q, uint32_t pos)
{
    if (q->sc) return shmrpc__q_sc_give_back(q, pos);
    struct q_hdr *h = q->hdr;
    struct q_desc *d = desc_at(q, pos);
    uint64_t s = mkstate(pos, S_READING, self());
    uint64_t f = atomic_load(&h->freed);
    uint32_t start = atomic_load_explicit(&d->start, memory_order_relaxed);
    uint32_t len = atomic_load_explicit(&d->len, memory_order_relaxed);
    uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
    /* A descriptor written over since the take goes the slow way: the advance asks the
     * tail where it ends (freed_to). */
    if (msg_of(f) == pos && placed(q, byte_of(f), start, len, end)) {
        if (atomic_compare_exchange_strong(&d->state, &s, mkstate(pos + q->n, S_FREE, 0))) {
            /* A failed CAS: another advancer finished our step (FREE, frontier at pos). */
            bool moved = atomic_compare_exchange_strong(&h->freed, &f, mkpos(pos + 1, end));
            shmrpc__q_advance_frontier_by(q, moved);
            return 0;
        }
    }
    /* Sequentially consistent: the frontier's advancer reads this state after its CAS of
     * the frontier, and we read the frontier after this (docs/queue.md). */
    s = mkstate(pos, S_READING, self());
    if (!atomic_compare_exchange_strong(&d->state, &s, mkstate(pos, S_RELEASED, 0)))
        return fail(SHMRPC_EPROTO,
                    "queue '%s': message %" PRIu32 " was taken back from this process before "
                    "it was released",
                    q->name, pos);
    shmrpc__q_advance_frontier(q);
    return 0;
}

int shmrpc__q_pop_one(shmrpc_queue *q, void *buf, size_t cap, size_t *len, due *dl)
{
    for (;;) {
        uint32_t pos, start, l = 0;
        int rc = shmrpc__q_take(q, cap, dl, &pos, &start, &l);
        if (rc == SHMRPC_ETOOBIG) *len = l;
        if (rc != 0) return rc;
        if (l) memcpy(buf, payload(q, pos, start, l), l);
        *len = l;
        if (!q->bcast) return shmrpc__q_give_back(q, pos);
        if (shmrpc__q_finish_read(q, pos) == 0) return 0;
        /* Dropped while we copied it: the next one. */
    }
}

int shmrpc__q_may_pop(shmrpc_queue *q)
{
    if (q->bcast && q->sub < 0)
        return fail(SHMRPC_EINVAL, "queue '%s' is a broadcast queue: only a subscribed handle pops",
                    q->name);
    return 0;
}

int shmrpc_queue_pop(shmrpc_queue *q, void *buf, size_t cap, size_t *len, int64_t timeout_ms)
{
    if (!q || !len || (!buf && cap)) return fail(SHMRPC_EINVAL, "queue, buf or len is NULL");
    *len = 0;
    int rc = shmrpc__q_check_timeout(timeout_ms);
    if (rc == 0) rc = shmrpc__q_may_pop(q);
    if (rc == 0 && gone(q)) rc = shmrpc__q_cut_fail(q);
    if (rc != 0) return rc;
    due dl = due_in(timeout_ms);
    rc = shmrpc__q_pop_one(q, buf, cap, len, &dl);
    if (cut(q)) { /* what was copied may be the zero pages' */
        *len = 0;
        return shmrpc__q_cut_fail(q);
    }
    if (rc == SHMRPC_ETIMEDOUT) return shmrpc__q_timed_out(q, timeout_ms, "empty");
    return rc;
}

/* How long a look tries while consumers take the head from under it: 2 ms. */
#define LOOK_TRIES_NS 2000000

static int look(shmrpc_queue *q, void *buf, size_t cap, size_t *len);

int shmrpc_queue_look(shmrpc_queue *q, void *buf, size_t cap, size_t *len)
{
    if (!q || !len || (!buf && cap)) return fail(SHMRPC_EINVAL, "queue, buf or len is NULL");
    *len = 0;
    if (gone(q)) return shmrpc__q_cut_fail(q);
    int rc = look(q, buf, cap, len);
    if (cut(q)) *len = 0;
    return unless_cut(q, rc);
}

static int look(shmrpc_queue *q, void *buf, size_t cap, size_t *len)
{
    if (q->bcast) return fail(SHMRPC_EINVAL, "queue '%s' is a broadcast queue", q->name);
    /* A seqlock read: the bytes are ours to trust only if, after they were copied, the
     * message was still COMMITTED and still at the head, so neither taken nor its room
     * given back. Both: a single consumer and a single producer leave the state COMMITTED
     * when they take the message and write the next into its slot, and only the head
     * says it was taken. It tries for at most LOOK_TRIES_NS, by the clock rather than by a
     * count alone: on a loaded host each sched_yield can give the CPU away for a time
     * slice, and a thousand of them took two seconds under a scribbler (issue 36's CI). */
    int64_t until = shmrpc__now_ns() + LOOK_TRIES_NS;
    for (int tries = 0; tries < 1000 && ((tries & 15) || shmrpc__now_ns() < until); tries++) {
        uint32_t hd = head_now(q);
        struct q_desc *d = desc_at(q, hd);
        uint64_t s = atomic_load_explicit(&d->state, memory_order_acquire);
        if (lap_of(s) != hd || st_of(s) != S_COMMITTED) {
            /* An earlier lap's state, whatever it is (a single consumer leaves COMMITTED
             * behind its frontier), or FREE or CLAIMED of this one: nothing at the head. */
            int32_t ahead = (int32_t)(lap_of(s) - hd);
            if (ahead < 0 || (ahead == 0 && (st_of(s) == S_FREE || st_of(s) == S_CLAIMED)))
                return fail(SHMRPC_ETIMEDOUT, "queue '%s' is empty", q->name);
            sched_yield(); /* taken: the head is about to move */
            continue;
        }
        uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
        uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
        uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
        bool sane = sound(q, st, l, end);
        if (sane && l <= cap && l) memcpy(buf, payload(q, hd, st, l), l);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&d->state, memory_order_relaxed) != s || head_now(q) != hd)
            continue;
        if (!sane)
            return fail(SHMRPC_EPROTO, "queue '%s': message %" PRIu32 " has a broken descriptor",
                        q->name, hd);
        *len = l;
        if (l > cap)
            return fail(SHMRPC_ETOOBIG,
                        "queue '%s': the next message has %" PRIu32 " bytes, the buffer %zu",
                        q->name, l, cap);
        return 0;
    }
    return fail(SHMRPC_EBUSY, "queue '%s': the head kept moving", q->name);
}
