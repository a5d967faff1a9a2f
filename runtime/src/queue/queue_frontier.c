/* SPDX-License-Identifier: MIT */
/* The release frontier: room given back in order, by whoever releases a message or moves
 * a cursor (advance_frontier), or by a single consumer alone (sc_free); the head helped
 * past a message taken (help_head), and the counts' bases raised as positions move. */

#include "queue/queue_int.h"

/* Where the frontier goes from byte *b past message m, given back, whose descriptor says
 * start, len and end (each read once): its end when the message lies where a producer put
 * it after *b (placed). Else a bad write moved or broke them (the message was dropped with
 * EPROTO for it, or written over while lent), or one did so to a message before it, whose
 * end the frontier did not learn; and the tail says, read only then: its message and byte
 * halves move together, so a tail at m + 1 sits at m's end; a tail further on is past m's
 * successor, whose own end frees m's bytes with its own: none now (the bytes come back
 * once the frontier reaches the message before the tail). A tail not yet past m (a single
 * producer moves it after its commits) says nothing: false, and the frontier waits at m
 * until it does. Trusting an end that a bad write moved on sent the frontier past the tail
 * or into the next message's bytes; freeing nothing for it whatever the tail said left a
 * queue with nothing behind it full for good. */
static bool freed_to(const shmrpc_queue *q, uint32_t m, uint32_t start, uint32_t len, uint32_t end,
                     uint32_t *b)
{
    if (placed(q, *b, start, len, end)) {
        *b = end;
        return true;
    }
    uint64_t t = atomic_load(&q->hdr->tail);
    int32_t ahead = (int32_t)(msg_of(t) - (m + 1));
    if (ahead < 0) return false;
    if (ahead == 0 && byte_of(t) - *b <= q->b) *b = byte_of(t);
    return true;
}

/* Moves a count's base up to position lo (never back): run by whoever moves the tail or
 * the head across a multiple of 2^16, so that the base lags the position by little. */
void shmrpc__q_raise_base(_Atomic uint64_t *base, uint32_t lo)
{
    uint64_t b = atomic_load_explicit(base, memory_order_relaxed);
    for (;;) {
        int32_t ahead = (int32_t)(lo - (uint32_t)b);
        if (ahead <= 0 ||
            atomic_compare_exchange_weak_explicit(base, &b, b + (uint64_t)ahead,
                                                  memory_order_relaxed, memory_order_relaxed))
            return;
    }
}

/* Broadcast: whether every subscriber has read message m (its cursor is past it). */
static bool all_past(const shmrpc_queue *q, uint32_t m)
{
    uint64_t mask = atomic_load(&q->hdr->subs);
    while (mask) {
        int i = __builtin_ctzll(mask);
        mask &= mask - 1;
        if ((int32_t)(atomic_load(&q->subs[i].cursor) - m) <= 0) return false;
    }
    return true;
}

/* Gives back, in order, the space of messages released or abandoned (broadcast: committed
 * or abandoned, and read by every subscriber), and wakes producers waiting for room if any
 * was (already: messages the caller gave back itself). Whoever releases (or moves a cursor)
 * runs it, so the last of a run of releases carries the frontier past all of it. A run of
 * such messages is freed one CAS of state each, then one CAS of the frontier past them all;
 * the state after the run is read again after that CAS. */
void shmrpc__q_advance_frontier_by(shmrpc_queue *q, uint32_t already)
{
    /* A single consumer's frontier is its own (sc_free): nobody else moves it. */
    if (q->sc) return;
    struct q_hdr *h = q->hdr;
    uint32_t moved = already;
    uint64_t f = atomic_load(&h->freed);
    for (uint32_t i = 0; i <= q->n + 64; i++) {
        uint32_t m0 = msg_of(f), m = m0, b = byte_of(f);
        for (unsigned tries = 0; m - m0 < 64 && tries < 64; tries++) {
            struct q_desc *d = desc_at(q, m);
            uint64_t s = atomic_load(&d->state);
            unsigned st = st_of(s);
            bool mine = lap_of(s) == m &&
                        (q->bcast ? (st == S_COMMITTED || st == S_ABANDONED) && all_past(q, m)
                                  : st == S_RELEASED || st == S_ABANDONED);
            /* FREE of the next lap: freed by another that has not moved the frontier yet
             * (or died before it); finish its advance. */
            if (!mine && !(lap_of(s) == m + q->n && st == S_FREE)) break;
            /* end before the desc is freed: once FREE, a producer may reuse it, but not
             * before the frontier passes it (it needs m + N - freed < N). */
            uint32_t start = atomic_load_explicit(&d->start, memory_order_relaxed);
            uint32_t len = atomic_load_explicit(&d->len, memory_order_relaxed);
            uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed), to = b;
            if (!freed_to(q, m, start, len, end, &to)) break; /* until the tail passes m */
            if (mine &&
                !atomic_compare_exchange_strong(&d->state, &s, mkstate(m + q->n, S_FREE, 0)))
                continue; /* changed meanwhile: look at it again */
            b = to;
            m++;
        }
        if (m == m0) break;
        uint64_t next = mkpos(m, b);
        if (atomic_compare_exchange_strong(&h->freed, &f, next)) { /* else f is the new one */
            moved += m - m0;
            f = next;
        }
    }
    if (moved) shmrpc__q_signal_waiters(&h->nonfull, moved);
}

void shmrpc__q_advance_frontier(shmrpc_queue *q)
{
    shmrpc__q_advance_frontier_by(q, 0);
}

void shmrpc__q_help_head(shmrpc_queue *q, uint32_t hd)
{
    uint32_t seen = hd;
    if (atomic_compare_exchange_strong(&q->hdr->head, &seen, hd + 1) && crossed(hd, hd + 1))
        shmrpc__q_raise_base(&q->hdr->popped, hd + 1);
}

/* A single consumer's frontier: gives back, in order from it, the messages released (or
 * abandoned by a dead producer) behind its head, with plain stores (nobody else moves it),
 * then wakes producers waiting for room if any was (already: given back by the caller). */
void shmrpc__q_sc_free(shmrpc_queue *q, uint32_t already)
{
    uint64_t f = q->sc_freed;
    uint32_t m = msg_of(f), b = byte_of(f), hd = cons_head(q->sc_cons), moved = already;
    while (m != hd && moved < q->n) {
        struct q_desc *d = desc_at(q, m);
        uint64_t s = atomic_load_explicit(&d->state, memory_order_acquire);
        bool done = lap_of(s) == m && (st_of(s) == S_RELEASED || st_of(s) == S_ABANDONED);
        /* FREE of the next lap: freed by a holder that died before moving the frontier. */
        if (!done && !(lap_of(s) == m + q->n && st_of(s) == S_FREE)) break;
        uint32_t start = atomic_load_explicit(&d->start, memory_order_relaxed);
        uint32_t len = atomic_load_explicit(&d->len, memory_order_relaxed);
        uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed), to = b;
        if (!freed_to(q, m, start, len, end, &to)) break; /* until the tail passes m */
        if (done && !q->sp)
            atomic_store_explicit(&d->state, mkstate(m + q->n, S_FREE, 0), memory_order_release);
        b = to;
        m++;
        moved++;
    }
    if (moved == 0) return;
    q->sc_freed = mkpos(m, b);
    atomic_store_explicit(&q->hdr->freed, q->sc_freed, memory_order_release);
    fence_for_waiters();
    shmrpc__q_signal_waiters(&q->hdr->nonfull, moved);
}
