/* SPDX-License-Identifier: MIT */
/* Repair after a death: whether the process that holds a slot, a subscriber's place or a
 * role's lease is dead (or a later process with its pid), and the slot of a dead holder
 * taken back (repair_at), at the frontier too (repair_frontier). Every step is one CAS, so
 * a process killed between two steps leaves a state that the others recognise here. */
#include <errno.h>

#include "queue/queue_int.h"

/* Whether the process pid, which holds a slot of lap with this tag, is dead: gone from
 * /proc, a zombie, or a later process with its pid (the tag is of this lap and names
 * another start time). When /proc cannot say, it lives. Our own pid lives (another thread
 * of ours may hold the slot). */
static bool proc_dead(uint32_t pid, bool know_start, uint32_t start)
{
    if (pid == self()) return false;
    if (pid == 0) return true; /* no process holds a slot as pid 0: a bad write */
    shmrpc__proc_stat ps;
    if (shmrpc__read_proc_stat(pid, &ps) != 0) return errno == ENOENT || errno == ESRCH;
    if (ps.state == 'Z' || ps.state == 'X' || ps.state == 'x') return true;
    return know_start && start != (uint32_t)ps.start;
}

bool shmrpc__q_holder_dead(uint32_t pid, uint64_t tag, uint32_t lap)
{
    return proc_dead(pid, lap_of(tag) == lap, (uint32_t)tag);
}

/* Gives the claim of the slot of message pos, state s, back (FREE of the same lap): its
 * producer's tag first goes to another lap. The next claimer writes its own tag only after
 * its claim, and with the last one's still of this lap, a repairer in between judged it by
 * that start, took it for dead, and freed its slot under it (the queue then stalled at a
 * FREE slot behind the tail; a helper's review). */
bool shmrpc__q_unclaim(struct q_desc *d, uint32_t pos, uint64_t s)
{
    atomic_store(&d->prod_tag, (uint64_t)(pos - 1) << 32);
    return atomic_compare_exchange_strong(&d->state, &s, mkstate(pos, S_FREE, 0));
}

uint64_t shmrpc__q_owner_word(void)
{
    uint32_t pid = self();
    return (uint64_t)(uint32_t)shmrpc__self_start() << 32 | pid;
}

bool shmrpc__q_owner_dead(uint64_t owner)
{
    return owner == 0 || proc_dead((uint32_t)owner, true, (uint32_t)(owner >> 32));
}

/* Takes back the slot of message pos from a process that died holding it: a claim whose
 * producer never moved the tail becomes FREE again (nothing was queued); one that did
 * becomes ABANDONED (skipped, never delivered half-written); a message a consumer was
 * reading becomes RELEASED (lost: at most once). A state no step leads to (a bad write)
 * is treated as its holder's death. Returns whether it changed anything. */
bool shmrpc__q_repair_at(shmrpc_queue *q, uint32_t pos)
{
    struct q_hdr *h = q->hdr;
    struct q_desc *d = desc_at(q, pos);
    uint64_t s = atomic_load(&d->state);
    if (lap_of(s) != pos) return false;
    unsigned st = st_of(s);
    uint64_t to;
    bool lost;
    if (st == S_CLAIMED || st > S_ABANDONED) {
        if (st == S_CLAIMED && !shmrpc__q_holder_dead(pid_of(s), atomic_load(&d->prod_tag), pos))
            return false;
        /* A batch claims a run of slots before it moves the tail past them all. */
        bool tail_moved = (int32_t)(msg_of(atomic_load(&h->tail)) - pos) > 0;
        to = tail_moved ? mkstate(pos, S_ABANDONED, 0) : mkstate(pos, S_FREE, 0);
        lost = tail_moved;
    } else if (st == S_READING) {
        if (!shmrpc__q_holder_dead(pid_of(s), atomic_load(&d->cons_tag), pos)) return false;
        to = mkstate(pos, S_RELEASED, 0);
        lost = true;
    } else {
        return false;
    }
    bool done = st_of(to) == S_FREE ? shmrpc__q_unclaim(d, pos, s)
                                    : atomic_compare_exchange_strong(&d->state, &s, to);
    if (!done) return true; /* changed anyway */
    bump(&h->repairs, 1);
    if (lost) bump(&h->drops, 1);
    if (st_of(to) == S_ABANDONED) bump(&h->abandoned, 1);
    /* A single consumer skips an abandoned message itself. */
    if (st_of(to) != S_FREE && !q->sc) {
        shmrpc__q_help_head(q, pos);
        shmrpc__q_advance_frontier(q);
    }
    /* Consumers asleep at this slot wait for it, and no commit may come to wake them: the
     * producers may all be waiting for room that only they can make (a repair by one of
     * those producers left them asleep with messages queued behind the slot). */
    if (st_of(to) == S_ABANDONED) shmrpc__q_signal_waiters(&h->nonempty, q->bcast ? 0 : 1);
    return true;
}

/* What blocks the frontier: a dead holder at it, or a committed message that the head
 * went past (only a bad write moves the head so): the head is sent back to it, and the
 * consumers help it past what they took since (dropping the message, as before, lost every
 * message between). */
bool shmrpc__q_repair_frontier(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    /* The head before the state: a consumer takes a message (READING) before it moves the
     * head, so a state read after the head went past m is COMMITTED only by a bad write. */
    uint32_t hd = atomic_load(&h->head);
    uint32_t m = msg_of(atomic_load(&h->freed));
    if (shmrpc__q_repair_at(q, m)) return true;
    if (q->sc) return false; /* a single consumer's taken messages stay COMMITTED */
    struct q_desc *d = desc_at(q, m);
    uint64_t s = atomic_load(&d->state);
    if (!q->bcast && lap_of(s) == m && st_of(s) == S_COMMITTED && (int32_t)(hd - m) > 0 &&
        atomic_compare_exchange_strong(&h->head, &hd, m)) {
        bump(&h->repairs, 1);
        shmrpc__q_signal_waiters(&h->nonempty, 0);
        return true;
    }
    return false;
}
