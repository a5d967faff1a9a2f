/* SPDX-License-Identifier: MIT */
/* Pushing: a producer claims the tail's slots and bytes with one CAS, writes the message
 * and commits it (publish), waiting for room or for a producer that claimed before it;
 * shmrpc_queue_push. */
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "queue/queue_int.h"

int shmrpc__q_check_len(const shmrpc_queue *q, size_t len)
{
    if (len > q->max_msg)
        return fail(SHMRPC_ETOOBIG, "queue '%s': a message of %zu bytes, the maximum is %" PRIu32,
                    q->name, len, q->max_msg);
    return 0;
}

/* The slot of the tail's message p holds s, neither FREE nor CLAIMED of lap p. A state of
 * this slot's laps that steps lead to says that a header word is wrong, not the slot:
 * message p or a later one committed (or given back) here, the tail was sent back behind
 * them; the message of the lap before not given back, the frontier was sent past it.
 * Resetting the slot, as for a state no step leads to, lost what it held; SHMRPC_ECORRUPT
 * instead, or 0 for a slot that a bad write broke. */
static int tail_behind(shmrpc_queue *q, uint64_t t, uint64_t s)
{
    uint32_t p = msg_of(t), lap = lap_of(s);
    unsigned st = st_of(s);
    if (st > S_ABANDONED || ((lap ^ p) & q->mask) != 0) return 0;
    int32_t ahead = (int32_t)(lap - p);
    char what[200];
    if (ahead > 0 || (ahead == 0 && st > S_CLAIMED))
        snprintf(what, sizeof what,
                 "its tail {message %" PRIu32 ", byte %" PRIu32 "} is behind message %" PRIu32
                 ", queued in the tail's slot already",
                 p, byte_of(t), lap);
    else if (ahead == -(int32_t)q->n && st != S_FREE)
        snprintf(what, sizeof what,
                 "its frontier (message %" PRIu32 ") is past message %" PRIu32
                 ", which was not given back",
                 msg_of(atomic_load(&q->hdr->freed)), lap);
    else
        return 0;
    return shmrpc__q_corrupt(q, what);
}

/* A producer lost the claim of slot p (tail t) to another: wait for that one to move the
 * tail, briefly spinning, then yielding, then napping; take the slot back if it died, or
 * if the slot is in a state no step leads to while the tail stays. */
static int wait_claimer(shmrpc_queue *q, uint64_t t, due *dl)
{
    int64_t deadline = shmrpc__q_due_at(dl);
    struct q_hdr *h = q->hdr;
    uint32_t p = msg_of(t);
    struct q_desc *d = desc_at(q, p);
    int64_t start = shmrpc__now_ns(), next_probe = start + PROBE_NS;
    /* Even a try waits the moment another producer takes to move the tail. */
    if (deadline < start + CLAIM_GRACE_NS) deadline = start + CLAIM_GRACE_NS;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&h->tail, memory_order_acquire) != t) return 0;
        if (i % 64 != 0) {
            cpu_relax();
            continue;
        }
        int64_t now = shmrpc__now_ns();
        if (cut(q)) return SHMRPC_ECUT;
        if (now >= deadline) return SHMRPC_ETIMEDOUT;
        if (now >= next_probe) {
            next_probe = now + PROBE_NS;
            uint64_t s = atomic_load(&d->state);
            /* The state is judged only if the tail was still at p after it was read. */
            if (atomic_load(&h->tail) != t) return 0;
            if (lap_of(s) == p && st_of(s) == S_FREE) return 0;
            int rc = tail_behind(q, t, s);
            if (rc != 0) return rc;
            if (lap_of(s) != p || st_of(s) != S_CLAIMED) {
                /* The tail is at p, so nothing but FREE or CLAIMED of lap p can be here. */
                if (atomic_compare_exchange_strong(&d->state, &s, mkstate(p, S_FREE, 0)))
                    bump(&h->repairs, 1);
                return 0;
            }
            if (shmrpc__q_repair_at(q, p)) return 0;
        }
        if (now - start > q->wait.spin_ns) {
            struct timespec ts = {0, 50 * 1000};
            nanosleep(&ts, NULL);
        } else if (now - start > q->wait.spin_ns / 2) {
            sched_yield();
        }
    }
}

/* Claims the next slots and their bytes for k >= 1 messages of lens[] (<= max_msg each),
 * moving the tail past them with one CAS: 0 with the first position, each payload's byte
 * position and how many were claimed (at least 1: those that fit at once, after the first,
 * which may wait). The slots after the first are claimed while the tail is still at the
 * first, so nobody else can (the tail must be at a slot to claim it); one left CLAIMED by a
 * producer that died before it moved the tail is freed by the one that next finds the tail
 * at it (repair_at: the tail is not past it). */
int shmrpc__q_claim(shmrpc_queue *q, const uint32_t *lens, uint32_t k, due *dl,
                    struct producing *pr, uint32_t *pos, uint32_t *starts, uint32_t *claimed)
{
    uint32_t len = lens[0];
    struct q_hdr *h = q->hdr;
    uint32_t me = self();
    bool spun = false, looked = false;
    for (;;) {
        uint64_t t = atomic_load_explicit(&h->tail, memory_order_acquire);
        uint32_t p = msg_of(t), start, end;
        place(q, byte_of(t), len, &start, &end);
        uint64_t f = atomic_load_explicit(&q->freed_seen, memory_order_relaxed);
        if (!fits(q, p, end, f)) {
            f = atomic_load(&h->freed);
            if (!fits(q, p, end, f) && q->bcast) {
                /* Subscribers that moved on, or none: the frontier may pass more. */
                shmrpc__q_advance_frontier(q);
                f = atomic_load(&h->freed);
            }
            atomic_store_explicit(&q->freed_seen, f, memory_order_relaxed);
            if (!fits(q, p, end, f)) {
                /* Again only when the drop moved the frontier: one that cannot pass the
                 * message (a descriptor written over) would drop it forever. */
                if (q->bcast && q->drop && shmrpc__q_drop_oldest(q) && atomic_load(&h->freed) != f)
                    continue;
                int rc = shmrpc__q_wait_for_room(q, p, len, end, dl, pr, &spun, &looked);
                if (rc != LOOK_AGAIN) return rc;
                continue;
            }
        }
        struct q_desc *d = desc_at(q, p);
        uint64_t s = mkstate(p, S_FREE, 0);
        if (atomic_compare_exchange_strong(&d->state, &s, mkstate(p, S_CLAIMED, me))) {
            uint32_t c = 0, run_end;
            for (;;) {
                atomic_store_explicit(&d->prod_tag, self_tag(p + c), memory_order_relaxed);
                atomic_store_explicit(&d->start, start, memory_order_relaxed);
                atomic_store_explicit(&d->len, lens[c], memory_order_relaxed);
                atomic_store_explicit(&d->end, end, memory_order_relaxed);
                starts[c++] = start;
                run_end = end;
                if (c == k) break;
                /* The next of the run, if it fits at once (against the frontier known). */
                uint32_t b = end;
                place(q, b, lens[c], &start, &end);
                if (!fits(q, p + c, end, f)) break;
                d = desc_at(q, p + c);
                s = mkstate(p + c, S_FREE, 0);
                if (!atomic_compare_exchange_strong(&d->state, &s, mkstate(p + c, S_CLAIMED, me)))
                    break; /* a dead batch's claim, or a bad write: its repair is the next's */
            }
            uint64_t seen = t;
            if (atomic_compare_exchange_strong(&h->tail, &seen, mkpos(p + c, run_end))) {
                if (crossed(p, p + c)) shmrpc__q_raise_base(&h->pushed, p + c);
                *pos = p;
                *claimed = c;
                return 0;
            }
            /* Only the claimer moves the tail from p: a bad write did. Give the slots back
             * and start over from the tail as it is. */
            for (uint32_t j = c; j-- > 0;)
                shmrpc__q_unclaim(desc_at(q, p + j), p + j, mkstate(p + j, S_CLAIMED, me));
            continue;
        }
        int rc = wait_claimer(q, t, dl);
        if (rc != 0) return rc;
    }
}

/* Makes message pos visible: CLAIMED by us -> COMMITTED. */
int shmrpc__q_publish(shmrpc_queue *q, uint32_t pos, struct producing *pr)
{
    struct q_desc *d = desc_at(q, pos);
    uint64_t s = mkstate(pos, S_CLAIMED, self());
    if (!atomic_compare_exchange_strong_explicit(&d->state, &s, mkstate(pos, S_COMMITTED, 0),
                                                 memory_order_release, memory_order_relaxed))
        return fail(SHMRPC_EPROTO,
                    "queue '%s': message %" PRIu32 " was taken from this process before it "
                    "was committed (its slot was written over)",
                    q->name, pos);
    pr->unsignalled++;
    return 0;
}

static int push_one(shmrpc_queue *q, const void *data, size_t len, due *dl, struct producing *pr)
{
    if (q->sp) return shmrpc__q_sp_push(q, data, len, dl, pr);
    uint32_t pos, start, one = (uint32_t)len, c;
    int rc = shmrpc__q_claim(q, &one, 1, dl, pr, &pos, &start, &c);
    if (rc != 0) return rc;
    if (len) memcpy(payload(q, pos, start, one), data, len);
    return shmrpc__q_publish(q, pos, pr);
}

int shmrpc_queue_push(shmrpc_queue *q, const void *data, size_t len, int64_t timeout_ms)
{
    if (!q || (!data && len)) return fail(SHMRPC_EINVAL, "queue or data is NULL");
    int rc = shmrpc__q_check_len(q, len);
    if (rc == 0) rc = shmrpc__q_check_timeout(timeout_ms);
    if (rc == 0 && gone(q)) rc = shmrpc__q_cut_fail(q);
    if (rc != 0) return rc;
    struct producing pr = {0};
    due dl = due_in(timeout_ms);
    rc = push_one(q, data, len, &dl, &pr);
    shmrpc__q_flush_signal(q, &pr);
    /* A push that went through is not looked at again: one that met the cut is lost as one
     * just before it, which no look could tell; the next call says so. A push that failed
     * is: what it found wrong (a slot written over, a position out of range) may be the
     * zero pages', and then the cut is what to say. */
    if (rc == 0) return 0;
    if (cut(q)) return shmrpc__q_cut_fail(q);
    if (rc == SHMRPC_ETIMEDOUT) return shmrpc__q_timed_out(q, timeout_ms, "full");
    return rc;
}
