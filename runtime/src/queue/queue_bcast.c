/* SPDX-License-Identifier: MIT */
/* Broadcast queues: a subscriber takes a slot and a cursor, reads each message without
 * taking it (try_read, finish_read), and is reaped when it dies; with the drop policy, a
 * producer short of room drops the oldest message for those that have not read it. */
#include <inttypes.h>

#include "queue/queue_int.h"

/* Frees subscriber slot i, whose owner was seen as `owner`. The slot is first made ours
 * (one CAS from exactly that owner to our own owner word), so that only one freer clears
 * its bit and nobody takes the slot before the bit is clear; then the bit, then the owner.
 * Clearing the bit first, as before, let a freer that had read the dead owner before
 * another freed the slot and a new subscriber took it clear the new subscriber's bit: its
 * cursor then held nothing back and it could lose messages. A freer that dies holding the
 * slot leaves it to a dead owner, freed the same way. */
static void free_sub(shmrpc_queue *q, int i, uint64_t owner)
{
    uint64_t mine = shmrpc__q_owner_word();
    if (!atomic_compare_exchange_strong(&q->subs[i].owner, &owner, mine)) return;
    atomic_fetch_and(&q->hdr->subs, ~(UINT64_C(1) << i));
    atomic_compare_exchange_strong(&q->subs[i].owner, &mine, 0);
}

/* Unsubscribes dead subscribers that hold the frontier back. Whether any was. */
bool shmrpc__q_reap_subscribers(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    uint32_t m = msg_of(atomic_load(&h->freed));
    uint64_t mask = atomic_load(&h->subs);
    bool reaped = false;
    while (mask) {
        int i = __builtin_ctzll(mask);
        mask &= mask - 1;
        struct q_sub *sb = &q->subs[i];
        if ((int32_t)(atomic_load(&sb->cursor) - m) > 0) continue;
        uint64_t owner = atomic_load(&sb->owner);
        if (!shmrpc__q_owner_dead(owner)) continue;
        free_sub(q, i, owner);
        bump(&h->repairs, 1);
        reaped = true;
    }
    if (reaped) shmrpc__q_advance_frontier(q);
    return reaped;
}

/* The drop policy: drops the oldest message for the subscribers that have not read it, so
 * that the frontier passes it. Whether there was one to drop (not one being written). */
bool shmrpc__q_drop_oldest(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    uint32_t m = msg_of(atomic_load(&h->freed));
    uint64_t s = atomic_load(&desc_at(q, m)->state);
    if (lap_of(s) != m || (st_of(s) != S_COMMITTED && st_of(s) != S_ABANDONED)) return false;
    uint64_t mask = atomic_load(&h->subs);
    while (mask) {
        int i = __builtin_ctzll(mask);
        mask &= mask - 1;
        struct q_sub *sb = &q->subs[i];
        uint32_t c = atomic_load(&sb->cursor);
        while ((int32_t)(c - m) <= 0)
            if (atomic_compare_exchange_weak(&sb->cursor, &c, m + 1)) {
                bump(&sb->missed, m + 1 - c);
                bump(&h->drops, 1);
                break;
            }
    }
    shmrpc__q_advance_frontier(q);
    return true;
}

/* Takes a subscriber slot; its cursor starts at the frontier (which its bit then holds)
 * and moves to the tail: it sees what is committed from now on. */
int shmrpc__q_subscribe(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    uint64_t me = shmrpc__q_owner_word();
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < SUBS; i++) {
            struct q_sub *sb = &q->subs[i];
            uint64_t cur = atomic_load(&sb->owner);
            if (cur != 0) {
                /* A second pass takes the slots of dead subscribers. */
                if (pass == 0 || !shmrpc__q_owner_dead(cur)) continue;
                free_sub(q, i, cur);
                cur = 0;
            }
            if (!atomic_compare_exchange_strong(&sb->owner, &cur, me)) continue;
            atomic_store(&sb->missed, 0);
            atomic_store(&sb->cursor, msg_of(atomic_load(&h->freed)));
            atomic_fetch_or(&h->subs, UINT64_C(1) << i);
            atomic_store(&sb->cursor, msg_of(atomic_load(&h->tail)));
            q->sub = i;
            return 0;
        }
    return fail(SHMRPC_EBUSY, "queue '%s' has %d subscribers already", q->name, SUBS);
}

void shmrpc__q_unsubscribe(shmrpc_queue *q)
{
    if (q->sub < 0) return;
    free_sub(q, q->sub, atomic_load(&q->subs[q->sub].owner));
    q->sub = -1;
    shmrpc__q_advance_frontier(q);
}

/* Broadcast: one look at the subscriber's next message, as try_take: 0 (its position, not
 * yet passed: finish_read does), TAKE_AGAIN, TAKE_EMPTY, SHMRPC_ETOOBIG, SHMRPC_EPROTO. */
int shmrpc__q_try_read(shmrpc_queue *q, size_t cap, uint32_t *pos, uint32_t *start, uint32_t *len)
{
    struct q_sub *me = &q->subs[q->sub];
    uint32_t c = atomic_load(&me->cursor);
    struct q_desc *d = desc_at(q, c);
    uint64_t s = atomic_load_explicit(&d->state, memory_order_acquire);
    int32_t ahead = (int32_t)(lap_of(s) - c);
    if (ahead < 0) return TAKE_EMPTY; /* the slot's last message is not given back yet */
    if (ahead > 0) {
        /* The slot was reused: the frontier passed this cursor (only a bad write lets it);
         * catch up with the frontier, counting what was missed. */
        uint32_t was = c, fm = msg_of(atomic_load(&q->hdr->freed));
        if ((int32_t)(fm - c) > 0 && atomic_compare_exchange_strong(&me->cursor, &c, fm))
            bump(&me->missed, fm - was);
        return TAKE_AGAIN;
    }
    if (st_of(s) == S_ABANDONED) {
        atomic_compare_exchange_strong(&me->cursor, &c, c + 1);
        shmrpc__q_advance_frontier(q);
        return TAKE_AGAIN;
    }
    if (st_of(s) != S_COMMITTED) return TAKE_EMPTY;
    uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
    uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
    uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
    /* Still this message after the reads (with the drop policy, the slot can be reused
     * as soon as a producer has moved this cursor). */
    if (atomic_load(&d->state) != s || atomic_load(&me->cursor) != c) return TAKE_AGAIN;
    if (!sound(q, st, l, end)) {
        if (atomic_compare_exchange_strong(&me->cursor, &c, c + 1)) bump(&q->hdr->drops, 1);
        shmrpc__q_advance_frontier(q);
        return fail(SHMRPC_EPROTO,
                    "queue '%s': message %" PRIu32 " has a broken descriptor (start %" PRIu32
                    ", length %" PRIu32 ", end %" PRIu32 "); skipped",
                    q->name, c, st, l, end);
    }
    if (l > cap) {
        *len = l;
        return fail(SHMRPC_ETOOBIG,
                    "queue '%s': the next message has %" PRIu32 " bytes, the buffer %zu", q->name,
                    l, cap);
    }
    *pos = c;
    *start = st;
    *len = l;
    return 0;
}

/* Broadcast: the subscriber is done with message pos: 0, or TAKE_AGAIN when a producer
 * dropped it meanwhile (what was read of it may be torn: the caller reads again). */
int shmrpc__q_finish_read(shmrpc_queue *q, uint32_t pos)
{
    uint32_t c = pos;
    if (!atomic_compare_exchange_strong(&q->subs[q->sub].cursor, &c, pos + 1)) return TAKE_AGAIN;
    bump(&q->hdr->popped, 1);
    shmrpc__q_advance_frontier(q);
    return 0;
}

int shmrpc__queue_subscribe(shmrpc_queue *q)
{
    if (!q->bcast || q->sub >= 0) return SHMRPC_EINVAL;
    return shmrpc__q_subscribe(q);
}
