/* SPDX-License-Identifier: MIT */
/* Single producer and single consumer work queues: the roles' leases, taken over from a
 * dead holder with what it left behind; the single producer's claim and commit, and the
 * single consumer's take and give-back, with plain stores where nobody else writes. */
#include <inttypes.h>
#include <string.h>

#include "queue/queue_int.h"

/* A single producer's queue: whether message p, at the tail, was committed already (its
 * producer died between the commit and the move of the tail; it may be taken, even given
 * back, since). */
bool shmrpc__q_published(const shmrpc_queue *q, uint32_t p)
{
    uint64_t s = atomic_load(&desc_at(q, p)->state);
    int32_t ahead = (int32_t)(lap_of(s) - p);
    return ahead > 0 || (ahead == 0 && st_of(s) != S_FREE && st_of(s) != S_CLAIMED);
}

/* What a new holder of the producer's role finds: the tail, moved past the messages that a
 * dead holder committed but did not move it past, and the count of pushes. */
static void take_over_producing(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    uint64_t t = atomic_load(&h->tail), f = atomic_load(&h->freed);
    /* A tail that a bad write sent out of the frontier's reach (on either side: the
     * frontier may pass a single producer's tail) is rebuilt from the descriptors; the
     * role's lease is the lock over it (docs/queue.md, "Positions written over"). */
    int64_t dm = (int32_t)(msg_of(t) - msg_of(f)), db = (int32_t)(byte_of(t) - byte_of(f));
    if (dm > q->n || dm < -(int64_t)q->n || db > q->b || db < -(int64_t)q->b) {
        struct rebuilt r;
        uint32_t known[2] = {msg_of(f), cons_head(atomic_load(&h->cons))};
        shmrpc__q_rebuild(q, known, q->sc ? 2 : 0, &r);
        t = r.tail;
        atomic_store(&h->tail, t);
        bump(&h->repairs, 1);
    }
    /* A batch publishes its run before it moves the tail once: a holder killed between
     * the two left up to a run of committed messages there, in order. */
    uint32_t moved = 0;
    for (uint32_t i = 0; i < q->n && shmrpc__q_published(q, msg_of(t)); i++) {
        uint32_t p = msg_of(t);
        struct q_desc *d = desc_at(q, p);
        uint32_t start = atomic_load(&d->start), len = atomic_load(&d->len);
        uint32_t end = atomic_load(&d->end);
        /* A bad write (its start, length and end do not add up): where its bytes end is
         * not known, and a consumer may be reading them (it took the message while it was
         * sound): it takes all the room the frontier left, so that nothing with arena
         * bytes lands on them before the frontier passes it, which then frees them at once
         * (freed_to: the tail at p + 1, or a later message's end). No bytes for it let the
         * next push write over a message being read; its end alone sent the tail out of
         * the frontier's reach. */
        if (end - byte_of(t) > q->b || !sound(q, start, len, end)) end = byte_of(f) + q->b;
        t = mkpos(p + 1, end);
        atomic_store(&h->tail, t);
        bump(&h->repairs, 1);
        moved++;
    }
    /* A frontier that waited at a message written over until the tail passed it (freed_to)
     * moves now; a single consumer's moves when it looks (check_consuming). */
    if (moved) shmrpc__q_advance_frontier(q);
    q->sp_tail = t;
    q->sp_count = extend(atomic_load(&h->pushed), msg_of(t));
    atomic_store_explicit(&h->pushed, q->sp_count, memory_order_relaxed);
}

/* A new single consumer's head and frontier that a bad write sent where no step leads (the
 * head behind the frontier or past the tail, the frontier out of the tail's reach) are
 * rebuilt from the descriptors under the role's lease: the frontier at the first message
 * not given back (with a single producer too, whose slots are not freed: the frontier as
 * it was if within the tail's reach, else the head if that is, else the tail), the head
 * kept if it lies between the frontier and the tail, else at the frontier. */
static void rebuild_consuming(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    uint64_t t = atomic_load(&h->tail);
    uint32_t hd = cons_head(q->sc_cons), fm = msg_of(q->sc_freed), tm = msg_of(t);
    int64_t slack = q->sp ? q->n : 0, n = q->n;
    int64_t hf = (int32_t)(hd - fm), th = (int32_t)(tm - hd), tf = (int32_t)(tm - fm),
            db = (int32_t)(byte_of(t) - byte_of(q->sc_freed));
    if (hf >= 0 && hf <= n && th >= -slack && tf >= -slack && tf <= n && db <= q->b &&
        db >= -(q->sp ? (int64_t)q->b : 0))
        return;
    struct rebuilt r;
    uint32_t known[2] = {fm, hd}; /* with a single producer: the frontier, else the head */
    shmrpc__q_rebuild(q, known, q->sp ? 2 : 0, &r);
    uint32_t nf = msg_of(r.freed);
    if ((int32_t)(hd - nf) < 0 || (int32_t)(msg_of(r.tail) - hd) < 0) hd = nf;
    q->sc_freed = r.freed;
    q->sc_cons = mkcons(hd, cons_popped(q->sc_cons));
    atomic_store(&h->freed, q->sc_freed);
    atomic_store(&h->cons, q->sc_cons);
    bump(&h->repairs, 1);
}

/* What a new holder of the consumer's role finds: what the last holder took and did not
 * give back (it died, or closed while it held a peek) is lost, counted and given back;
 * and the count of pops. */
static void take_over_consuming(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    q->sc_cons = atomic_load(&h->cons);
    q->sc_freed = atomic_load(&h->freed);
    rebuild_consuming(q);
    q->sc_count = extend(atomic_load(&h->popped), cons_popped(q->sc_cons));
    atomic_store_explicit(&h->popped, q->sc_count, memory_order_relaxed);
    uint32_t hd = cons_head(q->sc_cons), m = msg_of(q->sc_freed);
    for (uint32_t i = 0; i < q->n && m + i != hd; i++) {
        struct q_desc *d = desc_at(q, m + i);
        uint64_t s = mkstate(m + i, S_COMMITTED, 0);
        if (atomic_compare_exchange_strong(&d->state, &s, mkstate(m + i, S_RELEASED, 0))) {
            bump(&h->drops, 1);
            bump(&h->repairs, 1);
        }
    }
    shmrpc__q_sc_free(q, 0);
}

/* Takes the lease of a single producer's (or consumer's) role for this handle: from nobody,
 * or from a dead holder (then repaired as above); SHMRPC_EBUSY, naming the holder, while a
 * live one holds it. */
static int take_role(shmrpc_queue *q, unsigned role)
{
    bool prod = role == ROLE_PRODUCER;
    struct q_hdr *h = q->hdr;
    _Atomic uint64_t *w = prod ? &h->prod_owner : &h->cons_owner;
    uint64_t me = shmrpc__q_owner_word(), cur = atomic_load(w);
    for (;;) {
        if (cur != 0 && !shmrpc__q_owner_dead(cur))
            return fail(SHMRPC_EBUSY,
                        "queue '%s' has a single %s, and process %" PRIu32 "%s holds the role",
                        q->name, prod ? "producer" : "consumer", (uint32_t)cur,
                        (uint32_t)cur == self() ? " (this one, through another handle)" : "");
        if (atomic_compare_exchange_strong(w, &cur, me)) break;
    }
    if (cur != 0) bump(&h->repairs, 1); /* taken from a dead holder */
    (void)shmrpc__membarrier_register();
    if (prod) {
        take_over_producing(q);
        q->prod_pid = self();
    } else {
        take_over_consuming(q);
        q->cons_pid = self();
    }
    return 0;
}

int shmrpc__q_hold(shmrpc_queue *q, unsigned role)
{
    uint32_t held = role == ROLE_PRODUCER ? q->prod_pid : q->cons_pid;
    return held == self() ? 0 : take_role(q, role);
}

/* Gives a role this handle holds back (at close, and after a repair that took it). */
void shmrpc__q_let_go_of(shmrpc_queue *q, unsigned role)
{
    struct q_hdr *h = q->hdr;
    uint64_t me = shmrpc__q_owner_word();
    if (role == ROLE_PRODUCER && q->prod_pid == self()) {
        atomic_store_explicit(&h->pushed, q->sp_count, memory_order_relaxed);
        atomic_compare_exchange_strong(&h->prod_owner, &me, 0);
    }
    if (role == ROLE_CONSUMER && q->cons_pid == self()) {
        atomic_store_explicit(&h->popped, q->sc_count, memory_order_relaxed);
        atomic_compare_exchange_strong(&h->cons_owner, &me, 0);
    }
    if (role == ROLE_PRODUCER)
        q->prod_pid = 0;
    else
        q->cons_pid = 0;
}

/* Gives the roles this handle holds back (at close). */
void shmrpc__q_let_go(shmrpc_queue *q)
{
    shmrpc__q_let_go_of(q, ROLE_PRODUCER);
    shmrpc__q_let_go_of(q, ROLE_CONSUMER);
}

/* A single producer's claim of the slot at its tail, waiting for room as shmrpc__q_claim() does.
 * Nothing in the segment changes until the message is whole (sp_publish): a producer
 * killed before that leaves the slot FREE and the tail where it was. */
int shmrpc__q_sp_claim(shmrpc_queue *q, uint32_t len, due *dl, struct producing *pr, uint32_t *pos,
                       uint32_t *start)
{
    int rc = shmrpc__q_hold(q, ROLE_PRODUCER);
    if (rc != 0) return rc;
    if (q->sp_reserved)
        return fail(SHMRPC_EBUSY, "queue '%s': this single producer holds a reservation", q->name);
    struct q_hdr *h = q->hdr;
    uint32_t p = msg_of(q->sp_tail), end;
    place(q, byte_of(q->sp_tail), len, start, &end);
    bool spun = false, looked = false;
    uint64_t f = atomic_load_explicit(&q->freed_seen, memory_order_relaxed);
    while (!fits(q, p, end, f)) {
        f = atomic_load_explicit(&h->freed, memory_order_acquire);
        atomic_store_explicit(&q->freed_seen, f, memory_order_relaxed);
        if (fits(q, p, end, f)) break;
        rc = shmrpc__q_wait_for_room(q, p, len, end, dl, pr, &spun, &looked);
        if (rc != LOOK_AGAIN) return rc;
    }
    /* The frontier passed message p - N, so the slot is FREE{p}: nobody reads these
     * until the state says COMMITTED{p}. */
    struct q_desc *d = desc_at(q, p);
    atomic_store_explicit(&d->start, *start, memory_order_relaxed);
    atomic_store_explicit(&d->len, len, memory_order_relaxed);
    atomic_store_explicit(&d->end, end, memory_order_relaxed);
    q->sp_end = end;
    *pos = p;
    return 0;
}

/* Publishes a single producer's message pos (written): COMMITTED{pos}, a release store,
 * then the tail (which only the producer and get_stats read) and, every 2^16 messages, the
 * base of the pushed count. A producer killed between the two stores left a committed
 * message behind the tail: its successor moves the tail past it (take_over_producing). */
void shmrpc__q_sp_publish(shmrpc_queue *q, uint32_t pos, struct producing *pr)
{
    struct q_hdr *h = q->hdr;
    struct q_desc *d = desc_at(q, pos);
    atomic_store_explicit(&d->state, mkstate(pos, S_COMMITTED, 0), memory_order_release);
    q->sp_tail = mkpos(pos + 1, q->sp_end);
    atomic_store_explicit(&h->tail, q->sp_tail, memory_order_release);
    if ((++q->sp_count & 0xffff) == 0)
        atomic_store_explicit(&h->pushed, q->sp_count, memory_order_relaxed);
    pr->unsignalled++;
}

int shmrpc__q_sp_push(shmrpc_queue *q, const void *data, size_t len, due *dl, struct producing *pr)
{
    uint32_t pos, start;
    int rc = shmrpc__q_sp_claim(q, (uint32_t)len, dl, pr, &pos, &start);
    if (rc != 0) return rc;
    if (len) memcpy(payload(q, pos, start, (uint32_t)len), data, len);
    shmrpc__q_sp_publish(q, pos, pr);
    return 0;
}

/* A single consumer's look at its head, as try_take: 0 (taken: the head moved past it,
 * which stays COMMITTED until given back), TAKE_AGAIN, TAKE_EMPTY, SHMRPC_ETOOBIG,
 * SHMRPC_EPROTO. A consumer killed after the move of the head loses that message. */
int shmrpc__q_sc_try_take(shmrpc_queue *q, size_t cap, uint32_t *pos, uint32_t *start,
                          uint32_t *len)
{
    int rc = shmrpc__q_hold(q, ROLE_CONSUMER);
    if (rc != 0) return rc;
    uint32_t hd = cons_head(q->sc_cons), popped = cons_popped(q->sc_cons);
    struct q_desc *d = desc_at(q, hd);
    uint64_t s = atomic_load_explicit(&d->state, memory_order_acquire);
    if (s != mkstate(hd, S_COMMITTED, 0)) {
        int32_t ahead = (int32_t)(lap_of(s) - hd);
        unsigned st = st_of(s);
        if (ahead < 0 || (ahead == 0 && (st == S_FREE || st == S_CLAIMED || st > S_ABANDONED)))
            return TAKE_EMPTY; /* not yet; an unknown state waits for a repair (on_check) */
        /* ABANDONED: a producer died before its commit; skip it. READING, RELEASED or a
         * later lap: only a bad write leaves them here; skip them too. */
        if (ahead == 0 && st == S_READING)
            atomic_store_explicit(&d->state, mkstate(hd, S_RELEASED, 0), memory_order_relaxed);
        sc_advance(q, hd + 1, popped);
        shmrpc__q_sc_free(q, 0);
        return TAKE_AGAIN;
    }
    uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
    if (l > cap) {
        *len = l;
        return fail(SHMRPC_ETOOBIG,
                    "queue '%s': the next message has %" PRIu32 " bytes, the buffer %zu", q->name,
                    l, cap);
    }
    uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
    uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
    if (!sound(q, st, l, end)) {
        atomic_store_explicit(&d->state, mkstate(hd, S_RELEASED, 0), memory_order_relaxed);
        bump(&q->hdr->drops, 1);
        sc_advance(q, hd + 1, popped);
        shmrpc__q_sc_free(q, 0);
        return fail(SHMRPC_EPROTO,
                    "queue '%s': message %" PRIu32 " has a broken descriptor (start %" PRIu32
                    ", length %" PRIu32 ", end %" PRIu32 "); dropped",
                    q->name, hd, st, l, end);
    }
    sc_advance(q, hd + 1, popped + 1);
    if ((++q->sc_count & 0xffff) == 0)
        atomic_store_explicit(&q->hdr->popped, q->sc_count, memory_order_relaxed);
    *pos = hd;
    *start = st;
    *len = l;
    return 0;
}

/* A single consumer gives message pos back: at its frontier, FREE of the next lap and the
 * frontier moved (plain stores, release); else RELEASED, freed when the frontier gets
 * there (peeks released out of order). */
int shmrpc__q_sc_give_back(shmrpc_queue *q, uint32_t pos)
{
    struct q_desc *d = desc_at(q, pos);
    /* Behind the frontier it was given back already: with a single producer too, its state
     * stays COMMITTED until the slot's next message. */
    if (q->cons_pid != self() || (int32_t)(cons_head(q->sc_cons) - pos) <= 0 ||
        (int32_t)(pos - msg_of(q->sc_freed)) < 0 ||
        atomic_load_explicit(&d->state, memory_order_relaxed) != mkstate(pos, S_COMMITTED, 0))
        return fail(SHMRPC_EPROTO,
                    "queue '%s': message %" PRIu32 " is not one this single consumer took", q->name,
                    pos);
    /* Its descriptor read again: one written over since the take frees what the tail says
     * (sc_free, freed_to); its end alone sent the frontier past the tail, and the producers
     * wrote over messages not yet read. */
    uint32_t b = byte_of(q->sc_freed);
    uint32_t start = atomic_load_explicit(&d->start, memory_order_relaxed);
    uint32_t len = atomic_load_explicit(&d->len, memory_order_relaxed);
    uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
    if (msg_of(q->sc_freed) != pos || !placed(q, b, start, len, end)) {
        atomic_store_explicit(&d->state, mkstate(pos, S_RELEASED, 0), memory_order_release);
        shmrpc__q_sc_free(q, 0);
        return 0;
    }
    /* Only other producers need to see FREE (they claim by a CAS from it); a single
     * producer goes by the frontier alone, so the slot's line stays the producer's to
     * write, and a message behind the frontier is old whatever its state says. */
    if (!q->sp)
        atomic_store_explicit(&d->state, mkstate(pos + q->n, S_FREE, 0), memory_order_release);
    q->sc_freed = mkpos(pos + 1, end);
    shmrpc__q_sc_free(q, 1);
    return 0;
}
