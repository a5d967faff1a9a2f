/* SPDX-License-Identifier: MIT */
/* How a push or pop waits: its deadline (read from the clock only when it first has to
 * wait), a spin in one of the spinners' seats, then a sleep on the futex word with a look
 * now and then for a dead process that blocks it; and a producer's wait for room. */
#include <inttypes.h>
#include <sched.h>

#include "queue/queue_int.h"

int64_t shmrpc__q_deadline_in(int64_t timeout_ms)
{
    if (timeout_ms < 0 || timeout_ms > INT64_MAX / 2000000) return INT64_MAX;
    return shmrpc__now_ns() + timeout_ms * 1000000;
}

int64_t shmrpc__q_due_at(due *d)
{
    if (d->at == 0) d->at = shmrpc__q_deadline_in(d->ms);
    return d->at;
}

bool shmrpc__q_due_passed(due *d)
{
    int64_t at = shmrpc__q_due_at(d);
    return at == INT64_MIN || (at != INT64_MAX && shmrpc__now_ns() >= at);
}

int shmrpc__q_check_timeout(int64_t timeout_ms)
{
    if (timeout_ms < 0 && timeout_ms != SHMRPC_QUEUE_WAIT_FOREVER)
        return fail(SHMRPC_EINVAL, "negative timeout %" PRId64 " ms", timeout_ms);
    return 0;
}

int shmrpc__q_timed_out(shmrpc_queue *q, int64_t timeout_ms, const char *what)
{
    if (timeout_ms != 0) bump(&q->hdr->timeouts, 1);
    return fail(SHMRPC_ETIMEDOUT, "queue '%s' stayed %s for %" PRId64 " ms", q->name, what,
                timeout_ms);
}

/* The wait's check: now and then, and before every sleep, look whether a dead process
 * blocks us and take its slot back. */
static int on_check(void *arg)
{
    struct waiting *w = arg;
    int64_t now = shmrpc__now_ns();
    if (now < w->next_probe_ns) return cut(w->q) ? SHMRPC_ECUT : 0;
    /* A waiter may touch no page past a cut (an empty queue's wait reads the first page
     * alone): its last page then says so. Zero pages move no more: the wait ends. */
    (void)*(volatile const unsigned char *)((const unsigned char *)w->q->hdr + w->q->map_size - 1);
    if (cut(w->q)) return SHMRPC_ECUT;
    w->next_probe_ns = now + PROBE_NS;
    shmrpc_queue *q = w->q;
    bool fixed = false;
    int rc = w->what == FOR_MESSAGE ? shmrpc__q_check_consuming(q) : shmrpc__q_check_positions(q);
    if (rc != 0) return rc;
    if (w->what == FOR_MESSAGE) {
        fixed =
            shmrpc__q_repair_at(q, q->bcast ? atomic_load(&q->subs[q->sub].cursor) : head_now(q));
        fixed |= shmrpc__q_repair_frontier(q);
    } else {
        fixed = shmrpc__q_repair_frontier(q);
        if (q->bcast) fixed |= shmrpc__q_reap_subscribers(q);
        shmrpc__q_advance_frontier(q);
    }
    return fixed ? READY : 0;
}

/* Waits until the futex f moves from old (or the check finds a repair), the deadline
 * passes (SHMRPC_ETIMEDOUT), or 0 for "look again". */
int shmrpc__q_wait_on(shmrpc_queue *q, shmrpc__futex *f, uint32_t old, int64_t deadline,
                      struct waiting *w)
{
    bool slept = false;
    uint64_t timer_ends = 0; /* sleeps that ended by their timer, not by a wake-up */
    const shmrpc__waiter waiter = {
        .opts = &q->wait_after_spin,
        .check = on_check,
        .check_arg = w,
        .flag = SLEEPING,
        .slept = &slept,
        .timer_ends = &timer_ends,
        .check_ns = q->wait.sleep_ns,
    };
    int rc = shmrpc__wait_while(f, old, deadline, &waiter);
    if (slept) bump(&q->hdr->sleeps, 1);
    if (timer_ends) bump(&q->hdr->timer_wakes, timer_ends);
    return rc == READY ? 0 : rc;
}

/* The first part of a wait: spin (pause) for the spin budget, watching the head's slot or
 * the frontier itself, without announcing the waiter, so that the other side pays nothing
 * for it (no CAS on the waiters' word, no syscall). Then the caller announces itself and
 * waits through wait_on, whose own spin this one replaces (wait_after_spin). */
struct spin {
    int64_t until, yield_after;
    int seat;          /* the spinner's seat, or -1 */
    uint64_t occupant; /* what this waiter wrote in it */
};

/* Takes a free seat for this waiter (one per CPU, the first SEATS at most): a spin beside
 * as many spinners as CPUs only keeps the processes it waits for from running, so past
 * them a waiter sleeps at once. Its index, or -1 when every seat is held. A seat held
 * longer than a spin can last (a dead or stopped spinner's) is free. */
static int take_seat(shmrpc_queue *q, int64_t now, uint64_t *occupant)
{
    int n = shmrpc__ncpus() < SEATS ? shmrpc__ncpus() : SEATS;
    int64_t budget_ms = q->wait.spin_ns / 1000000;
    if (budget_ms < 0) budget_ms = 0;
    if (budget_ms > INT32_MAX / 2) budget_ms = INT32_MAX / 2;
    int32_t stale = (int32_t)budget_ms + SEAT_GRACE_MS;
    uint32_t ms = (uint32_t)(now / 1000000);
    *occupant = (uint64_t)ms << 32 | self();
    for (int i = 0; i < n; i++) {
        uint64_t s = atomic_load_explicit(&q->hdr->seats[i], memory_order_relaxed);
        /* Held: for at most stale so far, or taken after our clock read (as long ago as
         * that at most: a stamp further ahead was written by no spinner of this clock, or
         * wrapped around in the 49 days of a 32-bit millisecond count). */
        int32_t age = (int32_t)(ms - (uint32_t)(s >> 32));
        if (s != 0 && age <= stale && age >= -stale) continue;
        if (atomic_compare_exchange_strong(&q->hdr->seats[i], &s, *occupant)) return i;
    }
    return -1;
}

/* Whether the waiter spins, and for how long (in SPIN mode always, beside any number of
 * spinners: the user asked for it; in ADAPTIVE mode only in a seat; in SLEEP mode never). */
static bool spin_begin(shmrpc_queue *q, due *dl, struct spin *sp)
{
    sp->seat = -1;
    if (q->wait.mode == SHMRPC_WAIT_SLEEP) return false;
    int64_t now = shmrpc__now_ns(), at = shmrpc__q_due_at(dl);
    /* Any budget the options hold: a sum past INT64_MAX (a signed overflow) is forever. */
    int64_t end = q->wait.spin_ns < INT64_MAX - now ? now + q->wait.spin_ns : INT64_MAX;
    if (q->wait.mode == SHMRPC_WAIT_ADAPTIVE && (sp->seat = take_seat(q, now, &sp->occupant)) < 0)
        return false;
    sp->yield_after = now + SPIN_YIELD_NS;
    sp->until = end < at ? end : at;
    return true;
}

static void spin_end(shmrpc_queue *q, const struct spin *sp)
{
    uint64_t s = sp->occupant;
    if (sp->seat >= 0) atomic_compare_exchange_strong(&q->hdr->seats[sp->seat], &s, 0);
}

/* A spin's pause; every 64th also a look at the clock: true once the budget is spent.
 * After the first SPIN_YIELD_NS each look also yields the CPU: when the process the
 * spinner waits for shares its CPU (a busy machine), a spin that never yields keeps it
 * from running for the whole budget (measured: a queue echo with both processes on one
 * CPU took 205 us per call, two budgets). */
static bool spin_pause(unsigned i, const struct spin *sp)
{
    cpu_relax();
    if (i % 64 != 0) return false;
    int64_t now = shmrpc__now_ns();
    if (now >= sp->until) return true;
    if (now >= sp->yield_after) sched_yield();
    return false;
}

void shmrpc__q_spin_for_message(shmrpc_queue *q, due *dl)
{
    struct spin sp;
    if (!spin_begin(q, dl, &sp)) return;
    for (unsigned i = 1;; i++) {
        uint32_t hd = q->bcast ? atomic_load(&q->subs[q->sub].cursor) : head_now(q);
        uint64_t s = atomic_load_explicit(&desc_at(q, hd)->state, memory_order_acquire);
        int32_t ahead = (int32_t)(lap_of(s) - hd);
        if (ahead > 0 || (ahead == 0 && st_of(s) != S_FREE && st_of(s) != S_CLAIMED)) break;
        if (spin_pause(i, &sp)) break;
    }
    spin_end(q, &sp);
}

/* A producer that found the queue full spins until a quarter of it is free (or its
 * message fits when the spin budget ends): it then pushes that quarter without reading
 * the frontier, which consumers write, once per message. */
static void spin_for_room(shmrpc_queue *q, uint32_t p, uint32_t len, uint32_t end, due *dl)
{
    struct spin sp;
    if (!spin_begin(q, dl, &sp)) return;
    uint32_t need = room_for(len);
    uint32_t slack_msgs = q->n / 4, slack_bytes = need && need <= q->b / 4 ? q->b / 4 : 0;
    for (unsigned i = 1;; i++) {
        uint64_t f = atomic_load_explicit(&q->hdr->freed, memory_order_acquire);
        if (fits(q, p + slack_msgs, end + slack_bytes, f) ||
            msg_of(atomic_load_explicit(&q->hdr->tail, memory_order_relaxed)) != p)
            break;
        if (spin_pause(i, &sp)) break;
    }
    spin_end(q, &sp);
}

/* A producer that found no room by its deadline: full, or the positions say why not; or
 * LOOK_AGAIN, once a call (*looked), when its move of the frontier freed some. A frontier
 * waiting at a message whose descriptor was written over until the tail passed it
 * (freed_to) is moved by a release or a waiter's check alone: a push that does not wait
 * (or not long enough for a check) said full for good on an empty queue. */
static int full_or_corrupt(shmrpc_queue *q, bool *looked)
{
    if (!*looked) {
        *looked = true;
        uint64_t f = atomic_load(&q->hdr->freed);
        shmrpc__q_advance_frontier(q); /* none for a single consumer's (check_consuming moves it) */
        if (atomic_load(&q->hdr->freed) != f) return LOOK_AGAIN;
    }
    int rc = shmrpc__q_check_positions(q);
    return rc != 0 ? rc : SHMRPC_ETIMEDOUT;
}

/* A producer (claim, a single one's sp_claim) that found no room for message p, of len
 * bytes whose room ends at byte end, waits for some, once: past its deadline it is full
 * (or the positions say why not); before, it spins for room, then announces itself and
 * sleeps on nonfull. LOOK_AGAIN: look at the frontier again; else the status to return.
 * A wait that timed out says full only if the tail is still at p (other producers may have
 * moved it; a single producer's is its own). */
int shmrpc__q_wait_for_room(shmrpc_queue *q, uint32_t p, uint32_t len, uint32_t end, due *dl,
                            struct producing *pr, bool *spun, bool *looked)
{
    struct q_hdr *h = q->hdr;
    if (shmrpc__q_due_passed(dl)) return full_or_corrupt(q, looked);
    shmrpc__q_flush_signal(q, pr); /* consumers must see what we queued to make room */
    if (!*spun) {
        *spun = true;
        spin_for_room(q, p, len, end, dl);
        return LOOK_AGAIN;
    }
    uint32_t old = shmrpc__q_announce(&h->nonfull);
    if (old == 0) return LOOK_AGAIN;
    if (q->sc) (void)shmrpc__membarrier_all();
    if (fits(q, p, end, atomic_load(&h->freed))) return LOOK_AGAIN;
    struct waiting w = {q, FOR_ROOM, shmrpc__now_ns() + PROBE_NS};
    int rc = shmrpc__q_wait_on(q, &h->nonfull, old, shmrpc__q_due_at(dl), &w);
    if (rc != 0 && rc != SHMRPC_ETIMEDOUT) return rc;
    if (rc == SHMRPC_ETIMEDOUT && !fits(q, p, end, atomic_load(&h->freed)) &&
        (q->sp || msg_of(atomic_load(&h->tail)) == p))
        return full_or_corrupt(q, looked);
    return LOOK_AGAIN;
}
