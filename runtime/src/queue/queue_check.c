/* SPDX-License-Identifier: MIT */
/* Positions no step leads to (a bad write, docs/queue.md "Positions written over"): found
 * and said by the pushes and pops that meet them (SHMRPC_ECORRUPT, or a slot skipped with
 * SHMRPC_EPROTO), and rebuilt from the descriptors' own laps (rebuild) for the repair and
 * for a single role's take-over. */
#include <inttypes.h>
#include <stdio.h>

#include "queue/queue_int.h"

/* A header position that a bad write left where no step leads (docs/queue.md, "Positions
 * written over"): every push and pop that meets it says so, naming the word and its value,
 * instead of waiting on a queue that cannot move; shmrpc_queue_repair rebuilds it from the
 * descriptors' own laps, which say which of the words is wrong. */
int shmrpc__q_corrupt(const shmrpc_queue *q, const char *what)
{
    return fail(SHMRPC_ECORRUPT,
                "queue '%s' is corrupt: %s (written over); `shmrpcctl queue repair %s` "
                "rebuilds it",
                q->name, what, q->name);
}

/* Whether the header's positions are ones that steps lead to: the tail at most N messages
 * and B bytes past the frontier (a single producer moves it after its commits, so the
 * frontier may be past it as far); the head at most N behind the frontier (abandoned
 * messages given back before a consumer helped the head past them) and not past the tail
 * (a single producer's: not past the frontier's N). Each only grows, and others move them
 * while they are read, so the frontier is read twice, before the head or this subscriber's
 * cursor and the tail and after them: a bound below a later word is checked against the
 * first frontier, one above it against the second, each as it was when that word was read
 * or older on the safe side. (With one read, a frontier read before a tail that moved on
 * meanwhile made a live queue look corrupt: the tail 35 past a frontier 32 slots allow, in
 * queue_test kill_at_random under ASan.) A single consumer's head and frontier, and a
 * single producer's tail, are its handle's own. 0 or SHMRPC_ECORRUPT. Only slow paths run
 * it. */
int shmrpc__q_check_positions(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    bool sc_own = q->sc && q->cons_pid == self(), sp_own = q->sp && q->prod_pid == self();
    uint64_t f = sc_own ? q->sc_freed : atomic_load(&h->freed);
    bool has_head = !q->bcast || q->sub >= 0;
    uint32_t hd = q->bcast ? (has_head ? atomic_load(&q->subs[q->sub].cursor) : 0)
                  : q->sc  ? (sc_own ? cons_head(q->sc_cons) : cons_head(atomic_load(&h->cons)))
                           : atomic_load(&h->head);
    uint64_t t = sp_own ? q->sp_tail : atomic_load(&h->tail);
    uint64_t f2 = sc_own ? f : atomic_load(&h->freed);
    uint32_t fm = msg_of(f), fm2 = msg_of(f2), tm = msg_of(t);
    /* Past the later frontier, and short of the earlier one. */
    int64_t dm = (int32_t)(tm - fm2), db = (int32_t)(byte_of(t) - byte_of(f2));
    int64_t sm = (int32_t)(tm - fm), sb = (int32_t)(byte_of(t) - byte_of(f));
    char what[256];
    if (dm > q->n || sm < (q->sp ? -(int64_t)q->n : 0) || db > q->b ||
        sb < (q->sp ? -(int64_t)q->b : 0)) {
        bool over = dm > q->n || db > q->b;
        snprintf(what, sizeof what,
                 "its tail {message %" PRIu32 ", byte %" PRIu32 "} is %" PRId64
                 " messages and %" PRId64 " bytes from its frontier {message %" PRIu32
                 ", byte %" PRIu32 "}, which %" PRIu32 " slots and %" PRIu32 " bytes do not allow",
                 tm, byte_of(t), over ? dm : sm, over ? db : sb, over ? fm2 : fm,
                 byte_of(over ? f2 : f), q->n, q->b);
        return shmrpc__q_corrupt(q, what);
    }
    if (!has_head) return 0;
    int64_t behind = (int32_t)(hd - fm), past = (int32_t)(hd - (q->sp ? fm2 + q->n : tm));
    if (behind < -(int64_t)q->n || past > 0) {
        snprintf(what, sizeof what,
                 "its %s is %" PRIu32 " (0x%08" PRIx32 "), outside [%" PRIu32 ", %" PRIu32
                 "] (the frontier less %" PRIu32 " slots, %s)",
                 q->bcast ? "subscriber's cursor"
                 : q->sc  ? "single consumer's head"
                          : "head",
                 hd, hd, fm - q->n, q->sp ? fm2 + q->n : tm, q->n,
                 q->sp ? "the frontier plus them" : "the tail");
        return shmrpc__q_corrupt(q, what);
    }
    return 0;
}

/* A consumer found the slot of message hd (its state s) empty for now. If the tail is past
 * hd, though, hd was claimed, and its slot holds lap hd or a later one from then on: FREE of
 * lap hd or an earlier lap there is a bad write (a scribbled head descriptor). The tail is
 * read after the state, and the state again after the tail, so that a producer's claim and
 * move of the tail in between is seen. Such a slot is skipped as abandoned (what it held is
 * lost and counted) with SHMRPC_EPROTO naming it; 0 while the slot may be empty. */
static int check_head_slot(shmrpc_queue *q, uint32_t hd, uint64_t s)
{
    int32_t ahead = (int32_t)(lap_of(s) - hd);
    if (ahead > 0 || (ahead == 0 && st_of(s) != S_FREE)) return 0;
    uint64_t t = q->sp && q->prod_pid == self() ? q->sp_tail : atomic_load(&q->hdr->tail);
    if ((int32_t)(msg_of(t) - hd) <= 0) return 0;
    struct q_desc *d = desc_at(q, hd);
    uint64_t seen = s;
    if (!atomic_compare_exchange_strong(&d->state, &seen, mkstate(hd, S_ABANDONED, 0))) return 0;
    bump(&q->hdr->repairs, 1);
    bump(&q->hdr->drops, 1);
    if (!q->sc && !q->bcast) shmrpc__q_help_head(q, hd);
    if (!q->sc) shmrpc__q_advance_frontier(q);
    return fail(SHMRPC_EPROTO,
                "queue '%s': the slot of message %" PRIu32 " held 0x%016" PRIx64
                " with the tail at %" PRIu32 ", a state no step leads to (written over); "
                "skipped",
                q->name, hd, s, msg_of(t));
}

/* A consumer's look before it reports empty, and a waiter's now and then: the positions,
 * and the state at the head (a subscriber's cursor). A single consumer's frontier may wait
 * at a message whose descriptor was written over until its producer moved the tail past it
 * (freed_to): it looks again here, since nobody else moves it and the producers may wait
 * for that room. */
int shmrpc__q_check_consuming(shmrpc_queue *q)
{
    int rc = shmrpc__q_check_positions(q);
    if (rc != 0 || (q->bcast && q->sub < 0)) return rc;
    uint32_t hd = q->bcast ? atomic_load(&q->subs[q->sub].cursor)
                  : q->sc  ? cons_head(q->sc_cons)
                           : atomic_load(&q->hdr->head);
    if (q->sc && q->cons_pid != self()) return 0; /* not taken the role yet */
    if (q->sc) shmrpc__q_sc_free(q, 0);
    return check_head_slot(q, hd, atomic_load(&desc_at(q, hd)->state));
}

/* Scans the descriptors around anchor, a position from the header: a slot's laps are
 * within N of the tail, and a state of another lap is broken. A FREE slot was last claimed
 * a lap before its own (the first lap's FREE states say N..1 before message 0). */
static void rebuild_around(const shmrpc_queue *q, uint32_t anchor, const uint32_t *known,
                           int n_known, struct rebuilt *r)
{
    int64_t n = q->n, last = INT64_MIN, first = INT64_MAX;
    r->broken = 0;
    for (uint32_t i = 0; i < q->n; i++) {
        uint64_t s = atomic_load(&q->desc[i].state);
        int64_t d = (int32_t)(lap_of(s) - anchor);
        if (st_of(s) > S_ABANDONED || (lap_of(s) & q->mask) != i || d < -2 * n || d > 2 * n) {
            r->broken++;
            continue;
        }
        int64_t claimed = st_of(s) == S_FREE ? d - n : d;
        if (claimed > last) last = claimed;
        if (st_of(s) != S_FREE && d < first) first = d;
    }
    uint32_t tm = last == INT64_MIN ? anchor : anchor + (uint32_t)(last + 1);
    uint32_t fm = first == INT64_MAX || first > last ? tm : anchor + (uint32_t)first;
    if (n_known > 0) { /* the first of the frontiers known that is within the tail's reach */
        fm = tm;
        for (int i = n_known; i-- > 0;)
            if ((int32_t)(tm - known[i]) >= 0 && (int32_t)(tm - known[i]) <= (int32_t)q->n)
                fm = known[i];
    }
    if ((int32_t)(tm - fm) < 0 || (int32_t)(tm - fm) > (int32_t)q->n) fm = tm;
    /* The bytes: the tail's after the last message's end; the frontier's at the first
     * message's start (the padding before it, if any, is then free: nobody uses it), or
     * the tail's when none is queued. */
    const struct q_desc *dl = desc_at(q, tm - 1), *df = desc_at(q, fm);
    uint32_t tb = atomic_load(&dl->end), fb = tb;
    if (fm != tm) fb = atomic_load(&df->start);
    if (tb - fb > q->b) fb = tb - q->b; /* broken ends: room for nothing rather than overlap */
    r->tail = mkpos(tm, tb);
    r->freed = mkpos(fm, fb);
    /* The head: at the first message from the frontier that is not taken yet. */
    r->head = tm;
    for (uint32_t m = fm; m != tm; m++) {
        uint64_t s = atomic_load(&desc_at(q, m)->state);
        if (lap_of(s) != m ||
            (st_of(s) != S_FREE && st_of(s) != S_CLAIMED && st_of(s) != S_COMMITTED))
            continue;
        r->head = m;
        break;
    }
}

/* The scan around whichever of the header's positions (or two slots' own laps) leaves the
 * fewest slots broken: a bad write rarely hits them all. */
void shmrpc__q_rebuild(const shmrpc_queue *q, const uint32_t *known, int n_known, struct rebuilt *r)
{
    const struct q_hdr *h = q->hdr;
    uint32_t anchors[5] = {msg_of(atomic_load(&h->tail)), msg_of(atomic_load(&h->freed)),
                           q->sc ? cons_head(atomic_load(&h->cons)) : atomic_load(&h->head),
                           lap_of(atomic_load(&q->desc[0].state)),
                           lap_of(atomic_load(&q->desc[q->n / 2].state))};
    r->broken = UINT32_MAX;
    for (int i = 0; i < 5; i++) {
        struct rebuilt c;
        rebuild_around(q, anchors[i], known, n_known, &c);
        if (c.broken < r->broken) *r = c;
    }
}
