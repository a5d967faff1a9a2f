/* SPDX-License-Identifier: MIT */
/* The public hybrid lock: a futex word holding the owner's thread id in a POSIX shared
 * memory segment, taken with shmrpc__wait_while and recovered from owners that die
 * holding it. The layout and the reasoning are in docs/lock.md. */
#include <shmrpc/lock.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "core/core.h"
#include "core/proc.h"
#include "core/lock_seg.h"
#include "core/segment.h"
#include "core/wait.h"

#define PATH_PREFIX "/shmrpc.lock."
#define PATH_CAP (sizeof PATH_PREFIX + SHMRPC_LOCK_NAME_MAX)

/* How often a waiter reads /proc to see whether the owner still lives (and, for try and
 * timed-out acquires, at most this often per handle). Below SHMRPC__CHECK_NS, so a death
 * is noticed within about 25 ms of the wait's next check. */
#define PROBE_NS ((int64_t)5 * 1000 * 1000)
/* How long a live thread that the word names may go without its tag before it counts as
 * no owner, when /proc/TID/maps cannot be read to tell. An owner writes its tag right
 * after it takes the word; a second without it means a bad write. */
#define UNTAGGED_GRACE_NS ((int64_t)1000 * 1000 * 1000)
/* The longest a spinning waiter goes without looking at the word (doubling up to it from
 * one pause): each look takes the word's line from a holder that keeps taking the lock
 * again, and one every pause caught it free between two of its acquires often enough that
 * two processes putting into a map handed it (and every line of the map) to each other on
 * 25-40% of their puts, at 2 M puts per CPU-second each against 18 M alone (issue 14;
 * docs/lock.md). A release is noticed at most this late, or as late as the wait so far
 * when shorter; a futex wake-up takes 5-50 us. */
#define BACKOFF_NS ((int64_t)4000)
/* How often opening retries when others create or remove the name at the same time. */
#define OPEN_ATTEMPTS 100
#define REPLACE_HINT "CREATE_NEW_OVERWRITE or shmrpc_lock_unlink replaces it"

/* Not statuses (those are 0 or negative): the word changed under a CAS, look again; the
 * holder acquired a re-entrant lock once more. */
#define WORD_CHANGED 1
#define REENTERED 2

static inline uint32_t owner_of(uint32_t word)
{
    return word & ~WAITERS;
}

#define SEG_SIZE sizeof(struct lock_seg)

/* A mapped segment and which file it is: owner checks look for it in /proc/TID/maps. */
struct mapped {
    struct lock_seg *seg;
    dev_t dev;
    ino_t ino;
    uid_t uid;
    bool private; /* no group or other access: only its owner's processes can map it */
};

struct shmrpc_lock {
    struct lock_seg *seg;
    struct mapped file;
    shmrpc_wait_opts wait;
    _Atomic int64_t next_probe_ns; /* rate limit of owner checks by try and timeouts */
    /* A live thread seen holding the word without its tag, whose maps we cannot read, and
     * since when (written in that order; a race between threads of the handle only moves
     * the moment it counts as no owner). */
    _Atomic int64_t untagged_since_ns;
    _Atomic uint32_t untagged_tid;
    bool reentrant;
    /* The holder's thread id << 32 | its re-entrant acquires beyond the first: written by
     * the holder, and by a thread of the same handle that takes the lock from it (a steal),
     * so a compare-and-swap, and a count that names another thread is not the caller's. */
    _Atomic uint64_t depth;
    int64_t steal_after_ns; /* 0: never */
    char name[SHMRPC_LOCK_NAME_MAX + 1];
};

/* --- messages ---------------------------------------------------------------------- */

/* Failures go to the calling thread (status.h). A public function fails through fail(),
 * or its slow path begins the thread's message and ends it with the status; the fast
 * paths that succeed leave the thread's message alone. */
#define fail shmrpc__err_set
#define syserr shmrpc__seg_syserr

/* --- who we are -------------------------------------------------------------------- */

/* The calling thread's id and owner tag, learnt on first use. A forked child is a new
 * thread with the id of its process, so fork forgets them. */
static _Thread_local uint32_t self_id;
static _Thread_local uint64_t self_tag;
static pthread_once_t fork_watch = PTHREAD_ONCE_INIT;

static void forget_self(void)
{
    self_id = 0;
    self_tag = 0;
}

static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, forget_self);
}

static uint64_t make_tag(uint32_t tid, uint64_t start)
{
    if (tid > TAG_TID_MASK) return 0;
    return (start & TAG_START_MASK) << TAG_TID_BITS | tid;
}

static uint32_t learn_self(void)
{
    pthread_once(&fork_watch, watch_forks);
    uint32_t tid = (uint32_t)gettid();
    shmrpc__proc_stat ps;
    self_tag = make_tag(tid, shmrpc__read_proc_stat(tid, &ps) == 0 ? ps.start : 0);
    self_id = tid;
    return tid;
}

/* Also makes self_tag valid. */
static inline uint32_t self_tid(void)
{
    uint32_t t = self_id;
    return t ? t : learn_self();
}

/* --- the owner's life ---------------------------------------------------------------- */

/* Whether the live thread tid may hold the lock though the tag is not its own (not yet
 * written, or written over by a bad write): only a process that maps the segment may, and
 * of a private segment only one of its owner's. When its maps cannot be read (another
 * user's, or not dumpable), one seen untagged for UNTAGGED_GRACE_NS may not. A thread that
 * holds the lock after closing its handle maps nothing, and counts as dead once its tag
 * is lost. */
static bool may_hold(shmrpc_lock *l, uint32_t tid)
{
    int maps = shmrpc__proc_maps(tid, l->file.dev, l->file.ino);
    if (maps >= 0) return maps == 1;
    uid_t owner;
    if (l->file.private && shmrpc__proc_owner(tid, &owner) == 0 && owner != l->file.uid)
        return false;
    int64_t now = shmrpc__now_ns();
    if (atomic_load_explicit(&l->untagged_tid, memory_order_acquire) != tid) {
        atomic_store_explicit(&l->untagged_since_ns, now, memory_order_relaxed);
        atomic_store_explicit(&l->untagged_tid, tid, memory_order_release);
        return true;
    }
    return now - atomic_load_explicit(&l->untagged_since_ns, memory_order_relaxed) <
           UNTAGGED_GRACE_NS;
}

/* Whether the thread `tid`, which holds the word, is dead: gone from /proc, a zombie,
 * or a later thread with the same id (its start time is later than the owner's tag).
 * kill(tid, 0) cannot tell: it finds processes, not threads, and a zombie answers. When
 * /proc cannot say (not mounted, not allowed), the owner counts as alive. A tag that is
 * not this thread's, or that says it started later than it did (a bad write), cannot
 * tell either: then the thread is the owner only if it may hold the lock at all, so a
 * word that a bad write pointed at some live stranger is taken over, not waited on for
 * as long as the stranger lives, and a live owner is never taken from for its tag. */
static bool owner_dead(shmrpc_lock *l, uint32_t tid)
{
    shmrpc__proc_stat ps;
    if (shmrpc__read_proc_stat(tid, &ps) != 0) return errno == ENOENT || errno == ESRCH;
    if (shmrpc__proc_ended(&ps)) return true;
    uint64_t tag = atomic_load_explicit(&l->seg->owner_tag, memory_order_acquire);
    uint64_t start = tag >> TAG_TID_BITS, live = ps.start & TAG_START_MASK;
    if ((tag & TAG_TID_MASK) == tid && start != 0 && start <= live) {
        atomic_store_explicit(&l->untagged_tid, 0, memory_order_relaxed);
        return start < live;
    }
    return !may_hold(l, tid);
}

/* Whether this handle may check an owner now: try and timed-out acquires check at most
 * every PROBE_NS, so that a loop of them does not read /proc at full speed. */
static bool probe_due(shmrpc_lock *l)
{
    int64_t now = shmrpc__now_ns();
    int64_t next = atomic_load_explicit(&l->next_probe_ns, memory_order_relaxed);
    return now >= next &&
           atomic_compare_exchange_strong_explicit(&l->next_probe_ns, &next, now + PROBE_NS,
                                                   memory_order_relaxed, memory_order_relaxed);
}

/* --- taking and freeing the word ------------------------------------------------------ */

/* CAS of the word from *expect (0, or a dead owner) to me; on failure *expect is the
 * word's value. */
static inline bool take(struct lock_seg *s, uint32_t *expect, uint32_t me)
{
    return atomic_compare_exchange_strong_explicit(&s->futex.word, expect, me, memory_order_acquire,
                                                   memory_order_acquire);
}

/* Takes the word while it names owner (0: free), keeping its WAITERS; on failure *cur is
 * a word naming another. `mine` is my id, with WAITERS if I slept: the release that woke
 * me cleared the flag, and others may sleep still. */
static bool take_from(struct lock_seg *s, uint32_t *cur, uint32_t owner, uint32_t mine)
{
    while (owner_of(*cur) == owner)
        if (take(s, cur, mine | (*cur & WAITERS))) return true;
    return false;
}

/* A counter that only the lock's holder writes. */
static inline void bump_held(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* What a new owner publishes (after self_tid()). */
static inline int won(struct lock_seg *s, int rc)
{
    atomic_store_explicit(&s->owner_tag, self_tag, memory_order_relaxed);
    atomic_store_explicit(&s->owner_cpu.cpu, sched_getcpu(), memory_order_relaxed);
    bump_held(&s->acquisitions);
    if (rc == SHMRPC_EOWNERDEAD) bump_held(&s->owner_deaths);
    return rc;
}

static inline uint64_t depth_word(uint32_t tid, uint32_t n)
{
    return (uint64_t)tid << 32 | n;
}

/* A fresh acquire by tid: no re-entries yet. */
static inline void fresh(shmrpc_lock *l, uint32_t tid)
{
    atomic_store_explicit(&l->depth, depth_word(tid, 0), memory_order_relaxed);
}

static int already_mine(const shmrpc_lock *l)
{
    return fail(SHMRPC_EBUSY, "lock '%s' is already held by this thread", l->name);
}

/* The word names the calling thread: it holds the lock, if its tag says so; otherwise a
 * bad write put its id there, and it takes the lock as from a dead owner (instead of
 * being told "busy" by every acquire for good). WORD_CHANGED: the word changed. */
static int named_me(shmrpc_lock *l, uint32_t *cur, uint32_t me, uint32_t mine)
{
    struct lock_seg *s = l->seg;
    if (atomic_load_explicit(&s->owner_tag, memory_order_relaxed) == self_tag) {
        if (!l->reentrant) return already_mine(l);
        uint64_t d = atomic_load(&l->depth);
        for (;;) {
            /* A count of another thread: one of this handle took the lock since (a steal),
             * unless the word still names this one. */
            if ((uint32_t)(d >> 32) != me) {
                *cur = atomic_load_explicit(&s->futex.word, memory_order_relaxed);
                if (owner_of(*cur) != me) return WORD_CHANGED;
            }
            uint64_t n = (uint32_t)(d >> 32) == me ? d + 1 : depth_word(me, 1);
            if (atomic_compare_exchange_weak(&l->depth, &d, n)) return REENTERED;
        }
    }
    if (take_from(s, cur, me, mine)) return won(s, SHMRPC_EOWNERDEAD);
    return WORD_CHANGED;
}

/* A waiter that slept and leaves without the lock may have taken the wake-up that the
 * release meant for another sleeper: it passes it on. */
static void pass_on(struct lock_seg *s)
{
    shmrpc__futex_wake(&s->futex, 1);
}

/* --- acquire -------------------------------------------------------------------------- */

/* One contended acquire, seen by the wait's check callback. */
struct waiting {
    shmrpc_lock *lock;
    const shmrpc_wait_opts *opts;
    uint32_t owner;        /* the thread waited for */
    int64_t call_ns;       /* when the current shmrpc__wait_while began */
    int64_t next_probe_ns; /* when the owner's life is next read */
    bool probed;
    uint64_t sleeps;
    uint64_t timer_ends; /* sleeps that ended by their timer, not by a wake-up */
};

/* wait.c calls the check before each futex sleep, and while spinning only until the
 * spin budget is spent; so a check past the budget announces a sleep. */
static bool sleep_follows(const struct waiting *w, int64_t now)
{
    switch (w->opts->mode) {
    case SHMRPC_WAIT_SLEEP:
        return true;
    case SHMRPC_WAIT_SPIN:
        return false;
    default:
        return now - w->call_ns >= w->opts->spin_ns;
    }
}

static int on_check(void *arg)
{
    struct waiting *w = arg;
    int64_t now = shmrpc__now_ns();
    if (now >= w->next_probe_ns) {
        w->next_probe_ns = now + PROBE_NS;
        w->probed = true;
        if (owner_dead(w->lock, w->owner)) return SHMRPC_EOWNERDEAD;
    }
    if (sleep_follows(w, now)) w->sleeps++;
    return 0;
}

/* The deadline passed with the word held: a last look, so that short timeouts in a loop
 * also free a lock whose owner died. */
static int timed_out(shmrpc_lock *l, const struct waiting *w, uint32_t me, uint32_t mine)
{
    struct lock_seg *s = l->seg;
    uint32_t cur = atomic_load_explicit(&s->futex.word, memory_order_relaxed);
    if (take_from(s, &cur, 0, mine)) return won(s, 0);
    uint32_t owner = owner_of(cur);
    if (owner != me && !w->probed && probe_due(l) && owner_dead(l, owner) &&
        take_from(s, &cur, owner, mine))
        return won(s, SHMRPC_EOWNERDEAD);
    return fail(SHMRPC_ETIMEDOUT, "lock '%s' is held by thread %" PRIu32, l->name, owner);
}

/* Takes the word from the live owner it names (as take_from), and says so. */
static int stole(shmrpc_lock *l, uint32_t victim)
{
    struct lock_seg *s = l->seg;
    won(s, SHMRPC_ESTOLEN);
    bump_held(&s->steals);
    return fail(SHMRPC_ESTOLEN, "lock '%s' was taken from thread %" PRIu32 ", which held it",
                l->name, victim);
}

/* The slow path: the word was cur (not 0) when the fast path tried. An acquire that may
 * steal does so once steal_at passes (INT64_MAX: never). */
static int contend(shmrpc_lock *l, uint32_t me, uint32_t cur, int64_t deadline, int64_t steal_at)
{
    struct lock_seg *s = l->seg;
    atomic_fetch_add_explicit(&s->contended, 1, memory_order_relaxed);
    bool slept = false;
    struct waiting w = {
        .lock = l,
        .opts = &l->wait,
        .next_probe_ns = shmrpc__now_ns() + PROBE_NS,
    };
    const shmrpc__waiter waiter = {
        .opts = &l->wait,
        .peer = &s->owner_cpu,
        .check = on_check,
        .check_arg = &w,
        .flag = WAITERS,
        .slept = &slept,
        .timer_ends = &w.timer_ends,
        .check_ns = l->wait.sleep_ns,
        .backoff_ns = BACKOFF_NS,
    };
    int rc;
    for (;;) {
        uint32_t owner = owner_of(cur), mine = slept ? me | WAITERS : me;
        if (owner == 0) {
            if (take_from(s, &cur, 0, mine)) {
                rc = won(s, 0);
                break;
            }
            continue;
        }
        if (owner == me) {
            rc = named_me(l, &cur, me, mine);
            if (rc == WORD_CHANGED) continue;
            break;
        }
        if (steal_at < deadline && shmrpc__now_ns() >= steal_at) {
            /* A dead owner is taken over as dead, whether or not a probe saw it yet: with a
             * steal due before the first probe, one long gone was reported stolen from. */
            bool dead = owner_dead(l, owner);
            if (take_from(s, &cur, owner, mine)) {
                rc = dead ? won(s, SHMRPC_EOWNERDEAD) : stole(l, owner);
                break;
            }
            continue; /* cur names someone else now */
        }
        w.owner = owner;
        w.call_ns = shmrpc__now_ns();
        rc = shmrpc__wait_while(&s->futex, cur, steal_at < deadline ? steal_at : deadline, &waiter);
        mine = slept ? me | WAITERS : me;
        cur = atomic_load_explicit(&s->futex.word, memory_order_relaxed);
        if (rc == SHMRPC_EOWNERDEAD) {
            if (take_from(s, &cur, owner, mine)) { /* else cur names the new owner */
                rc = won(s, rc);
                break;
            }
        } else if (rc == SHMRPC_ETIMEDOUT) {
            if (steal_at < deadline && shmrpc__now_ns() < deadline) continue; /* steals */
            rc = timed_out(l, &w, me, mine);
            break;
        } else if (rc != 0) {
            break;
        }
    }
    if (slept && rc != 0 && rc != SHMRPC_EOWNERDEAD && rc != SHMRPC_ESTOLEN) pass_on(s);
    if (w.sleeps) atomic_fetch_add_explicit(&s->sleeps, w.sleeps, memory_order_relaxed);
    if (w.timer_ends)
        atomic_fetch_add_explicit(&s->timer_wakes, w.timer_ends, memory_order_relaxed);
    return rc;
}

static int64_t deadline_in(int64_t ns)
{
    int64_t now = shmrpc__now_ns();
    return ns >= INT64_MAX - now ? INT64_MAX : now + ns;
}

/* What a public acquire returns: a re-entrant acquire is a success; a fresh one starts
 * the count of re-entries again (a stale count of a thread stolen from included). */
static int settle(shmrpc_lock *l, uint32_t me, int rc)
{
    if (rc == REENTERED) return 0;
    if (rc == 0 || rc == SHMRPC_EOWNERDEAD || rc == SHMRPC_ESTOLEN) fresh(l, me);
    return rc;
}

static int acquire_ns(shmrpc_lock *l, uint32_t me, uint32_t cur, int64_t ns)
{
    int64_t deadline = deadline_in(ns);
    int64_t steal_at = l->steal_after_ns > 0 ? deadline_in(l->steal_after_ns) : INT64_MAX;
    shmrpc__err_begin();
    return shmrpc__err_end(settle(l, me, contend(l, me, cur, deadline, steal_at)));
}

int shmrpc_lock_acquire(shmrpc_lock *l, int64_t timeout_ms)
{
    if (!l) return fail(SHMRPC_EINVAL, "no lock");
    if (timeout_ms < 0 && timeout_ms != SHMRPC_LOCK_WAIT_FOREVER)
        return fail(SHMRPC_EINVAL, "negative timeout %" PRId64 " ms", timeout_ms);
    uint32_t me = self_tid(), cur = 0;
    if (take(l->seg, &cur, me)) {
        fresh(l, me);
        return won(l->seg, 0);
    }
    int64_t ns =
        timeout_ms < 0 || timeout_ms > INT64_MAX / 1000000 ? INT64_MAX : timeout_ms * 1000000;
    return acquire_ns(l, me, cur, ns);
}

int shmrpc_lock_acquire_secs(shmrpc_lock *l, double seconds)
{
    if (!l) return fail(SHMRPC_EINVAL, "no lock");
    bool forever = seconds == -1.0 || seconds == INFINITY;
    if (!forever && !(seconds >= 0)) /* NaN too */
        return fail(SHMRPC_EINVAL, "bad timeout %g s", seconds);
    uint32_t me = self_tid(), cur = 0;
    if (take(l->seg, &cur, me)) {
        fresh(l, me);
        return won(l->seg, 0);
    }
    double ns = seconds * 1e9;
    return acquire_ns(l, me, cur, forever || ns >= 9.2e18 ? INT64_MAX : (int64_t)ns);
}

static int try_contended(shmrpc_lock *l, uint32_t me, uint32_t cur);

int shmrpc_lock_try(shmrpc_lock *l)
{
    if (!l) return fail(SHMRPC_EINVAL, "no lock");
    uint32_t me = self_tid(), cur = 0;
    if (take(l->seg, &cur, me)) {
        fresh(l, me);
        return won(l->seg, 0);
    }
    shmrpc__err_begin();
    return shmrpc__err_end(settle(l, me, try_contended(l, me, cur)));
}

int shmrpc_lock_steal(shmrpc_lock *l)
{
    if (!l) return fail(SHMRPC_EINVAL, "no lock");
    struct lock_seg *s = l->seg;
    uint32_t me = self_tid();
    shmrpc__err_begin();
    uint32_t cur = atomic_load_explicit(&s->futex.word, memory_order_relaxed);
    int rc;
    for (;;) {
        uint32_t owner = owner_of(cur);
        if (owner == 0) {
            if (take_from(s, &cur, 0, me)) {
                rc = won(s, 0);
                break;
            }
        } else if (owner == me) {
            rc = named_me(l, &cur, me, me);
            if (rc != WORD_CHANGED) break;
        } else {
            bool dead = owner_dead(l, owner);
            if (take_from(s, &cur, owner, me)) {
                rc = dead ? won(s, SHMRPC_EOWNERDEAD) : stole(l, owner);
                break;
            }
        }
    }
    return shmrpc__err_end(settle(l, me, rc));
}

/* The slow path of try: the word was cur (not 0) when the fast path tried. */
static int try_contended(shmrpc_lock *l, uint32_t me, uint32_t cur)
{
    struct lock_seg *s = l->seg;
    uint32_t owner;
    for (;;) {
        owner = owner_of(cur);
        if (owner == 0) {
            if (take_from(s, &cur, 0, me)) return won(s, 0);
        } else if (owner == me) {
            int rc = named_me(l, &cur, me, me);
            if (rc != WORD_CHANGED) return rc;
        } else {
            break;
        }
    }
    atomic_fetch_add_explicit(&s->contended, 1, memory_order_relaxed);
    if (probe_due(l) && owner_dead(l, owner) && take_from(s, &cur, owner, me))
        return won(s, SHMRPC_EOWNERDEAD);
    return fail(SHMRPC_EBUSY, "lock '%s' is held by thread %" PRIu32, l->name, owner);
}

int shmrpc_lock_release(shmrpc_lock *l)
{
    if (!l) return fail(SHMRPC_EINVAL, "no lock");
    struct lock_seg *s = l->seg;
    uint32_t me = self_tid();
    uint32_t cur = atomic_load_explicit(&s->futex.word, memory_order_relaxed);
    if (owner_of(cur) != me) goto not_mine;
    /* A re-entrant acquire's release: the lock stays held. */
    uint64_t d = atomic_load(&l->depth);
    while ((uint32_t)(d >> 32) == me && (uint32_t)d > 0)
        if (atomic_compare_exchange_weak(&l->depth, &d, d - 1)) return 0;
    /* The tag only while it is this thread's: a thief that took the word since wrote its
     * own, which a plain store here erased (its re-entrant acquire then took its own lock
     * for a dead owner's, and its next release freed it mid-section). */
    uint64_t tag = self_tag;
    atomic_compare_exchange_strong(&s->owner_tag, &tag, 0);
    /* A waiter adds WAITERS by a CAS and sleeps only while the word has it, so the word
     * swapped here says whether anyone may sleep. */
    while (!atomic_compare_exchange_strong(&s->futex.word, &cur, 0))
        if (owner_of(cur) != me) goto not_mine;
    if (cur & WAITERS) shmrpc__futex_wake(&s->futex, 1);
    return 0;
not_mine:
    if (owner_of(cur) == 0) return fail(SHMRPC_EPERM, "lock '%s' is not held", l->name);
    return fail(SHMRPC_EPERM,
                "lock '%s' is held by thread %" PRIu32 ", not by this one (%" PRIu32 ")", l->name,
                owner_of(cur), me);
}

bool shmrpc_lock_is_mine(const shmrpc_lock *l)
{
    return l &&
           owner_of(atomic_load_explicit(&l->seg->futex.word, memory_order_relaxed)) == self_tid();
}

int shmrpc_lock_owner(const shmrpc_lock *l, pid_t *owner)
{
    if (!l || !owner) return fail(SHMRPC_EINVAL, l ? "no place for the owner" : "no lock");
    *owner = (pid_t)owner_of(atomic_load_explicit(&l->seg->futex.word, memory_order_relaxed));
    return 0;
}

int shmrpc_lock_get_stats(const shmrpc_lock *l, shmrpc_lock_stats *out)
{
    if (!l || !out) return fail(SHMRPC_EINVAL, l ? "no place for the statistics" : "no lock");
    const struct lock_seg *s = l->seg;
    out->acquisitions = atomic_load_explicit(&s->acquisitions, memory_order_relaxed);
    out->contended = atomic_load_explicit(&s->contended, memory_order_relaxed);
    out->sleeps = atomic_load_explicit(&s->sleeps, memory_order_relaxed);
    out->owner_deaths = atomic_load_explicit(&s->owner_deaths, memory_order_relaxed);
    out->steals = atomic_load_explicit(&s->steals, memory_order_relaxed);
    out->timer_wakes = atomic_load_explicit(&s->timer_wakes, memory_order_relaxed);
    return 0;
}

int shmrpc_lock_blocking_pid(const shmrpc_lock *l, pid_t *pid)
{
    if (!l || !pid) return fail(SHMRPC_EINVAL, l ? "no place for the pid" : "no lock");
    uint32_t tid = owner_of(atomic_load_explicit(&l->seg->futex.word, memory_order_relaxed));
    *pid = (pid_t)tid;
    if (tid == 0) return 0;
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%" PRIu32 "/status", tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return fail(SHMRPC_ENOENT, "lock '%s': its owner, thread %" PRIu32 ", is gone", l->name,
                    tid);
    while (fgets(line, sizeof line, f)) {
        long tgid;
        if (sscanf(line, "Tgid: %ld", &tgid) == 1) {
            *pid = (pid_t)tgid;
            break;
        }
    }
    fclose(f);
    return 0;
}

/* --- opening ------------------------------------------------------------------------- */

void shmrpc_lock_opts_init(shmrpc_lock_opts *o)
{
    memset(o, 0, sizeof *o);
    o->mode = SHMRPC_LOCK_CONNECT_OR_CREATE;
    o->initially_locked = false;
    o->perms = 0600;
    shmrpc_wait_opts_init(&o->wait);
}

static int check_name(const char *name)
{
    return shmrpc__seg_check_name("lock", name, SHMRPC_LOCK_NAME_MAX);
}

static int check_opts(const shmrpc_lock_opts *o)
{
    int rc = shmrpc__seg_check_mode("lock", o->mode, o->perms);
    if (rc != 0) return rc;
    if (o->steal_after_ms < 0)
        return fail(SHMRPC_EINVAL, "negative steal_after_ms %" PRId64, o->steal_after_ms);
    if (o->wait.sleep_ns < 0)
        return fail(SHMRPC_EINVAL, "negative wait.sleep_ns %" PRId64, o->wait.sleep_ns);
    return 0;
}

/* The creator's part: everything but the magic, then the magic with a release store, so
 * an opener that sees the magic sees the rest. */
static void init_segment(struct lock_seg *s, bool locked)
{
    s->version = LOCK_VERSION;
    s->size = (uint32_t)SEG_SIZE;
    if (locked) {
        atomic_store_explicit(&s->futex.word, self_tid(), memory_order_relaxed);
        won(s, 0);
    }
    atomic_store_explicit(&s->magic, LOCK_MAGIC, memory_order_release);
}

/* The lock's words for a system call that failed on its segment (seg_open.c). */
static int sys_fail(const shmrpc__seg_how *how, enum shmrpc__seg_step step, int err, uint64_t size)
{
    (void)size;
    switch (step) {
    case SHMRPC__SEG_SIZE:
        return fail(SHMRPC_ESYS(err), "cannot set up lock '%s': %s", how->name, syserr(err));
    case SHMRPC__SEG_STAT:
        return fail(SHMRPC_ESYS(err), "fstat of a lock: %s", syserr(err));
    case SHMRPC__SEG_MAP:
    default:
        return fail(SHMRPC_ESYS(err), "mmap of a lock: %s", syserr(err));
    }
}

/* An existing segment's size, once its creator sized it or the wait for that ended. */
static int check_size(const shmrpc__seg_how *how, const struct stat *st)
{
    if (st->st_size == (off_t)SEG_SIZE) return 0;
    if (st->st_size != 0)
        return fail(SHMRPC_EPROTO, "'%s' is not a lock segment (size %lld, expected %zu)",
                    how->name, (long long)st->st_size, SEG_SIZE);
    return fail(SHMRPC_EPROTO, "lock '%s' was never sized (its creator died?); %s", how->name,
                REPLACE_HINT);
}

/* Its header, once the creator's magic is there or the wait for it ended. */
static int check_header(const shmrpc__seg_how *how, const shmrpc__seg_mapping *m, uint32_t magic)
{
    const struct lock_seg *s = m->base;
    const char *name = how->name;
    if (magic == 0)
        return fail(SHMRPC_EPROTO, "lock '%s' was never initialised (its creator died?); %s", name,
                    REPLACE_HINT);
    uint32_t version = s->version, size = s->size;
    if (magic != LOCK_MAGIC || size != SEG_SIZE)
        return fail(SHMRPC_EPROTO, "'%s' is not a lock segment (magic 0x%08x, size %u)", name,
                    magic, size);
    if (version != LOCK_VERSION)
        return fail(SHMRPC_EVERSION, "lock '%s' has layout version %u, this library %u", name,
                    version, LOCK_VERSION);
    return 0;
}

/* The lock's segment, for seg_open.c. */
static const shmrpc__seg_ops lock_seg_ops = {.kind = "lock",
                                             .wait_ns = SHMRPC__SEG_INIT_WAIT_NS,
                                             .sys_fail = sys_fail,
                                             .check_size = check_size,
                                             .check_header = check_header};

/* The segment mapped, and which file it is. */
static void keep(const shmrpc__seg_mapping *s, struct mapped *out)
{
    out->seg = s->base;
    out->dev = s->st.st_dev;
    out->ino = s->st.st_ino;
    out->uid = s->st.st_uid;
    out->private = (s->st.st_mode & 077) == 0;
}

/* Creates the segment; SHMRPC_ESYS(EEXIST) (without a message) when it exists. */
static int create(const char *path, const char *name, const shmrpc_lock_opts *o, struct mapped *out)
{
    shmrpc__seg_how how = {.ops = &lock_seg_ops, .path = path, .name = name, .perms = o->perms};
    shmrpc__seg_mapping s;
    int rc = shmrpc__seg_make(&how, SEG_SIZE, &s);
    if (rc != 0) return rc;
    keep(&s, out);
    init_segment(out->seg, o->initially_locked);
    return 0;
}

/* Opens an existing segment; SHMRPC_ENOENT when there is none. */
static int attach(const char *path, const char *name, const shmrpc_lock_opts *o, struct mapped *out)
{
    int fd;
    int rc = shmrpc__seg_open("lock", path, name, &fd);
    if (rc != 0) return rc;
    shmrpc__seg_how how = {.ops = &lock_seg_ops, .path = path, .name = name, .perms = o->perms};
    shmrpc__seg_mapping s;
    rc = shmrpc__seg_attach(&how, fd, &s);
    close(fd);
    if (rc == 0) keep(&s, out);
    return rc;
}

/* "held by thread T" / "free" for the EBUSY message, when we may look. */
static const char *holder(const char *path, char *buf, size_t cap)
{
    int fd = shm_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return "";
    struct stat st;
    void *p = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size == (off_t)SEG_SIZE)
        p = mmap(NULL, SEG_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return "";
    const struct lock_seg *s = p;
    uint32_t word = owner_of(atomic_load_explicit(&s->futex.word, memory_order_relaxed));
    if (atomic_load_explicit(&s->magic, memory_order_acquire) != LOCK_MAGIC)
        snprintf(buf, cap, ", not initialised");
    else if (word)
        snprintf(buf, cap, ", held by thread %" PRIu32, word);
    else
        snprintf(buf, cap, ", free");
    munmap(p, SEG_SIZE);
    return buf;
}

static int exists(const char *path, const char *name)
{
    char who[PATH_CAP + 64], held[64];
    shmrpc__seg_describe(path, who, sizeof who);
    return fail(SHMRPC_EBUSY, "lock '%s' already exists (%s%s)", name, who,
                holder(path, held, sizeof held));
}

static int overwrite(const char *path, const char *name, const shmrpc_lock_opts *o,
                     struct mapped *out)
{
    for (int i = 0; i < OPEN_ATTEMPTS; i++) {
        int rc = shmrpc__seg_remove("lock", path, name);
        if (rc != 0) return rc;
        rc = create(path, name, o, out);
        if (rc != SHMRPC_ESYS(EEXIST)) return rc;
    }
    return fail(SHMRPC_EBUSY, "lock '%s' keeps being recreated by others", name);
}

/* Create first (O_EXCL decides the race between openers), else open what another made. */
static int connect_or_create(const char *path, const char *name, const shmrpc_lock_opts *o,
                             struct mapped *out)
{
    for (int i = 0; i < OPEN_ATTEMPTS; i++) {
        int rc = create(path, name, o, out);
        if (rc != SHMRPC_ESYS(EEXIST)) return rc;
        rc = attach(path, name, o, out);
        if (rc != SHMRPC_ENOENT) return rc;
    }
    return fail(SHMRPC_EBUSY, "lock '%s' keeps being removed and recreated by others", name);
}

static int open_segment(const char *path, const char *name, const shmrpc_lock_opts *o,
                        struct mapped *out)
{
    switch (o->mode) {
    case SHMRPC_LOCK_CONNECT_TO_EXISTING:
        return attach(path, name, o, out);
    case SHMRPC_LOCK_CREATE_NEW_EXCLUSIVE: {
        int rc = create(path, name, o, out);
        return rc == SHMRPC_ESYS(EEXIST) ? exists(path, name) : rc;
    }
    case SHMRPC_LOCK_CREATE_NEW_OVERWRITE:
        return overwrite(path, name, o, out);
    case SHMRPC_LOCK_CONNECT_OR_CREATE:
    default:
        return connect_or_create(path, name, o, out);
    }
}

static int open_lock(shmrpc_lock **out, const char *name, const shmrpc_lock_opts *o)
{
    if (!out) return fail(SHMRPC_EINVAL, "out is NULL");
    *out = NULL;
    shmrpc_lock_opts defaults;
    if (!o) {
        shmrpc_lock_opts_init(&defaults);
        o = &defaults;
    }
    int rc = check_name(name);
    if (rc == 0) rc = check_opts(o);
    if (rc != 0) return rc;
    shmrpc_lock *l = calloc(1, sizeof *l);
    if (!l) return fail(SHMRPC_ENOMEM, "out of memory");
    l->wait = o->wait;
    l->reentrant = o->reentrant;
    l->steal_after_ns =
        o->steal_after_ms > INT64_MAX / 1000000 ? INT64_MAX : o->steal_after_ms * 1000000;
    snprintf(l->name, sizeof l->name, "%s", name);
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s%s", PATH_PREFIX, name);
    rc = open_segment(path, name, o, &l->file);
    if (rc != 0) {
        free(l);
        return rc;
    }
    l->seg = l->file.seg;
    *out = l;
    return 0;
}

int shmrpc_lock_open(shmrpc_lock **out, const char *name, const shmrpc_lock_opts *o)
{
    shmrpc__err_begin();
    return shmrpc__err_end(open_lock(out, name, o));
}

void shmrpc_lock_close(shmrpc_lock *l)
{
    if (!l) return;
    munmap(l->seg, SEG_SIZE);
    free(l);
}

int shmrpc_lock_unlink(const char *name)
{
    int rc = check_name(name);
    if (rc != 0) return rc;
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s%s", PATH_PREFIX, name);
    if (shm_unlink(path) == 0) return 0;
    if (errno == ENOENT) return fail(SHMRPC_ENOENT, "no lock '%s'", name);
    int err = errno;
    return fail(SHMRPC_ESYS(err), "cannot remove lock '%s': %s", name, syserr(err));
}
