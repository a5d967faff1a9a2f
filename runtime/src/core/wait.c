/* SPDX-License-Identifier: MIT */
/* The hybrid wait. Across cores a spinning handoff costs a cache line transfer (about
 * 0.1 us here) while a futex sleep costs tens of microseconds to wake an idle CPU, so
 * waiting spins first; but a spin on the CPU the peer needs only delays the peer, so a
 * waiter that shares the peer's CPU yields instead; and past the spin budget it sleeps,
 * so an idle process costs nothing. */
#include "core/wait.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/client.h> /* SHMRPC_TIMEOUT_INFINITE */
#include <shmrpc/status.h>

void shmrpc_wait_opts_init(shmrpc_wait_opts *o)
{
    o->mode = SHMRPC_WAIT_ADAPTIVE;
    o->spin_ns = SHMRPC_DEFAULT_SPIN_NS;
    o->sleep_ns = 0;
    const char *mode = getenv("SHMRPC_WAIT");
    if (mode && strcmp(mode, "adaptive") == 0) o->mode = SHMRPC_WAIT_ADAPTIVE;
    if (mode && strcmp(mode, "spin") == 0) o->mode = SHMRPC_WAIT_SPIN;
    if (mode && strcmp(mode, "sleep") == 0) o->mode = SHMRPC_WAIT_SLEEP;
    const char *spin = getenv("SHMRPC_SPIN_NS");
    if (spin && *spin) {
        char *end;
        errno = 0;
        long long v = strtoll(spin, &end, 10);
        if (errno == 0 && *end == '\0' && v >= 0) o->spin_ns = v;
    }
}

int64_t shmrpc__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t shmrpc__deadline_at(shmrpc__deadline *d, int64_t now)
{
    if (d->at == 0)
        d->at =
            d->timeout_ms == SHMRPC_TIMEOUT_INFINITE || d->timeout_ms > (INT64_MAX - now) / 1000000
                ? INT64_MAX
                : now + d->timeout_ms * 1000000;
    return d->at;
}

void shmrpc__presence_update(shmrpc__presence *self)
{
    if (!self) return;
    int cpu = sched_getcpu(); /* written only when it changed: peers read this line */
    if (atomic_load_explicit(&self->cpu, memory_order_relaxed) != cpu)
        atomic_store_explicit(&self->cpu, cpu, memory_order_relaxed);
}

/* Whether the word differs from old in more than the waiter's flag. */
static bool changed(shmrpc__futex *f, uint32_t old, const shmrpc__waiter *w)
{
    return ((atomic_load_explicit(&f->word, memory_order_acquire) ^ old) & ~w->flag) != 0 ||
           (w->also && atomic_load_explicit(w->also, memory_order_acquire) != w->also_old);
}

/* Sleeps while the word is old, for at most ns. The sleeper count (or the waiter's bit)
 * is raised before the word is read again, and a waker changes the word before it reads
 * the count, so one of the two always sees the other (both sequentially consistent). */
static void futex_sleep(shmrpc__futex *f, uint32_t old, int64_t ns, const shmrpc__waiter *w)
{
    struct timespec rel = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    if (w->flag) {
        /* The flag is set in the word by a CAS that fails when the word changed, and the
         * kernel compares the word with the flagged value: either the waker's swap sees the
         * flag, or the sleep does not begin. Nobody clears the flag but a change of word. */
        uint32_t cur = atomic_load(&f->word);
        if (((cur ^ old) & ~w->flag) != 0) return;
        if (!(cur & w->flag) && !atomic_compare_exchange_strong(&f->word, &cur, cur | w->flag))
            return; /* it changed: the caller looks again */
        if (w->slept) *w->slept = true;
        if (syscall(SYS_futex, &f->word, FUTEX_WAIT, cur | w->flag, &rel, NULL, 0) != 0 &&
            errno == ETIMEDOUT && w->timer_ends)
            ++*w->timer_ends;
        return;
    }
    if (w->sleeping)
        atomic_fetch_or(w->sleeping, w->sleeping_bit);
    else
        atomic_fetch_add(&f->sleepers, 1);
    /* A light waker's store may still be on its way, its look at the sleepers done: the
     * fence on its CPU makes it seen here, or its look see this sleeper. */
    if (w->fence_wakers && !shmrpc__fence_wakers() && (rel.tv_sec > 0 || rel.tv_nsec > 1000000))
        rel = (struct timespec){0, 1000000};
    /* The second word too: a waker that changes it alone wakes the word's sleepers. */
    if (atomic_load(&f->word) == old && !(w->also && atomic_load(w->also) != w->also_old)) {
        /* Not FUTEX_PRIVATE: the word is shared between processes. EINTR, EAGAIN and
         * ETIMEDOUT all return to the caller, which looks at the word and the clock. */
        if (syscall(SYS_futex, &f->word, FUTEX_WAIT, old, &rel, NULL, 0) != 0 &&
            errno == ETIMEDOUT && w->timer_ends)
            ++*w->timer_ends;
    }
    if (w->sleeping)
        atomic_fetch_and(w->sleeping, ~w->sleeping_bit);
    else
        atomic_fetch_sub(&f->sleepers, 1);
}

/* Whether futex_waitv failed for a reason other than the words or the time (a kernel
 * before 5.16, or a seccomp filter that refuses syscalls it does not know). */
static _Atomic bool no_waitv;

void shmrpc__sleep_any(shmrpc__futex *const *fs, const uint32_t *old, unsigned n, int64_t ns)
{
    if (n == 0 || n > SHMRPC__SLEEP_ANY_MAX) return;
    struct futex_waitv v[SHMRPC__SLEEP_ANY_MAX];
    for (unsigned i = 0; i < n; i++)
        atomic_fetch_add(&fs[i]->sleepers, 1);
    unsigned i = 0;
    while (i < n && atomic_load(&fs[i]->word) == old[i])
        i++;
    if (i == n) {
        struct timespec at;
        clock_gettime(CLOCK_MONOTONIC, &at); /* futex_waitv's timeout is absolute */
        at.tv_sec += (time_t)(ns / 1000000000);
        at.tv_nsec += (long)(ns % 1000000000);
        if (at.tv_nsec >= 1000000000) at.tv_sec++, at.tv_nsec -= 1000000000;
        for (i = 0; i < n; i++) /* not FUTEX_PRIVATE_FLAG: the words are shared */
            v[i] = (struct futex_waitv){.val = old[i], .uaddr = (uintptr_t)&fs[i]->word,
                                        .flags = FUTEX_32};
        if (!atomic_load_explicit(&no_waitv, memory_order_relaxed) &&
            syscall(SYS_futex_waitv, v, n, 0, &at, CLOCK_MONOTONIC) != 0 && errno != EAGAIN &&
            errno != ETIMEDOUT && errno != EINTR)
            atomic_store_explicit(&no_waitv, true, memory_order_relaxed);
        if (atomic_load_explicit(&no_waitv, memory_order_relaxed)) {
            struct timespec rel = {0, ns < 1000000 ? (long)ns : 1000000};
            syscall(SYS_futex, &fs[0]->word, FUTEX_WAIT, old[0], &rel, NULL, 0);
        }
    }
    for (i = 0; i < n; i++)
        atomic_fetch_sub(&fs[i]->sleepers, 1);
}

void shmrpc__lock_release(_Atomic uint32_t *lock, uint32_t tid)
{
    uint32_t v = tid;
    if (!atomic_compare_exchange_strong(lock, &v, 0) && (v & FUTEX_TID_MASK) == tid)
        syscall(SYS_futex, lock, FUTEX_UNLOCK_PI, 0, NULL, NULL, 0); /* a waiter: hand it over */
}

enum { LOCK_SLEPT, LOCK_LET_GO, LOCK_FREE, LOCK_UNUSABLE };

/* Sleeps until the holder of the PI futex word lets go of it, or dies (the kernel hands
 * a PI futex to its waiter when its owner exits), for at most ns. LOCK_LET_GO: it did,
 * or it is gone; LOCK_FREE: nobody holds it (yet: the caller sleeps on the word this
 * once); LOCK_SLEPT: the time is up, or a signal came; LOCK_UNUSABLE: the word cannot be
 * waited on (this thread's, or not a lock: a bad write). */
static int lock_sleep(_Atomic uint32_t *lock, int64_t ns)
{
    if ((atomic_load(lock) & FUTEX_TID_MASK) == 0) return LOCK_FREE;
    struct timespec at;
    clock_gettime(CLOCK_MONOTONIC, &at); /* FUTEX_LOCK_PI2 measures on CLOCK_MONOTONIC */
    at.tv_sec += (time_t)(ns / 1000000000);
    at.tv_nsec += (long)(ns % 1000000000);
    if (at.tv_nsec >= 1000000000) at.tv_sec++, at.tv_nsec -= 1000000000;
    if (syscall(SYS_futex, lock, FUTEX_LOCK_PI2, 0, &at, NULL, 0) == 0) {
        /* Ours now: given back at once, since it is only a way to be woken. */
        shmrpc__lock_release(lock, (uint32_t)gettid());
        return LOCK_LET_GO;
    }
    switch (errno) {
    case ETIMEDOUT:
    case EINTR:
    case EAGAIN: /* the word changed meanwhile: the caller looks again */
        return LOCK_SLEPT;
    case ESRCH: /* the holder is gone already */
        return LOCK_LET_GO;
    default: /* EDEADLK, EINVAL, EPERM, ENOSYS: not a lock we can wait on */
        return LOCK_UNUSABLE;
    }
}

void shmrpc__wake(shmrpc__futex *f, int n)
{
    if (atomic_load(&f->sleepers) > 0) syscall(SYS_futex, &f->word, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* membarrier(2), which glibc 2.36 does not wrap. */
static int membarrier(int cmd)
{
    return (int)syscall(SYS_membarrier, cmd, 0, 0);
}

bool shmrpc__fence_register(void)
{
    /* The process that registered: a forked child is a process of its own, to register. */
    static _Atomic int32_t registered, refused;
    int32_t me = (int32_t)getpid();
    if (atomic_load(&registered) == me) return true;
    if (atomic_load(&refused) == me) return false;
    bool ok = membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
    atomic_store(ok ? &registered : &refused, me);
    return ok;
}

bool shmrpc__fence_wakers(void)
{
    return membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
}

void shmrpc__publish_light(shmrpc__futex *f, uint32_t v, const _Atomic uint64_t *sleeping, int n)
{
    atomic_store_explicit(&f->word, v, memory_order_release);
    /* The store before the look, as the program says: the compiler may not swap them (a
     * release orders what comes before it only); the waiter's fence does the CPU's part. */
    atomic_signal_fence(memory_order_seq_cst);
    if (atomic_load_explicit(sleeping, memory_order_relaxed) != 0)
        syscall(SYS_futex, &f->word, FUTEX_WAKE, n, NULL, NULL, 0);
}

void shmrpc__futex_wake(shmrpc__futex *f, int n)
{
    syscall(SYS_futex, &f->word, FUTEX_WAKE, n, NULL, NULL, 0);
}

void shmrpc__wake_mask(shmrpc__futex *f, _Atomic uint64_t *sleeping, int n)
{
    if (atomic_load(sleeping) != 0) syscall(SYS_futex, &f->word, FUTEX_WAKE, n, NULL, NULL, 0);
}

void shmrpc__count_down(_Atomic uint32_t *count)
{
    uint32_t v = atomic_load(count);
    while (v > 0 && !atomic_compare_exchange_weak(count, &v, v - 1)) {
    }
}

int shmrpc__ncpus(void)
{
    static _Atomic int n;
    int v = atomic_load_explicit(&n, memory_order_relaxed);
    if (v == 0) {
        cpu_set_t set;
        v = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
        if (v < 1) v = 1;
        atomic_store_explicit(&n, v, memory_order_relaxed);
    }
    return v;
}

/* Whether spinning may pay: not while more processes of the group run than CPUs. */
static bool crowded(const shmrpc__waiter *w)
{
    return w->awake && (int)atomic_load_explicit(w->awake, memory_order_relaxed) > shmrpc__ncpus();
}

/* The wait lasts: a waiter that counts itself in awake once its wait lasts does now
 * (shmrpc__waiter). */
static void count_in(const shmrpc__waiter *w)
{
    if (w->counted == NULL || *w->counted) return;
    atomic_fetch_add(w->awake, 1);
    *w->counted = true;
    if (w->counted_mark) atomic_store_explicit(w->counted_mark, 1, memory_order_relaxed);
}

static int check(const shmrpc__waiter *w)
{
    return w->check ? w->check(w->check_arg) : 0;
}

/* Picoseconds one shmrpc__cpu_relax takes, measured once per process: it differs tenfold
 * between CPUs (11 ns on this machine's Xeon; about 40 ns on Skylake, a few on older
 * cores), and the backoff is meant in time. The shortest of three tries, so that a
 * preemption during one makes it no longer. */
static int64_t relax_ps(void)
{
    static _Atomic int64_t ps;
    int64_t v = atomic_load_explicit(&ps, memory_order_relaxed);
    if (v == 0) {
        for (int t = 0; t < 3; t++) {
            int64_t t0 = shmrpc__now_ns();
            for (int i = 0; i < 128; i++)
                shmrpc__cpu_relax();
            int64_t d = (shmrpc__now_ns() - t0) * 1000 / 128;
            if (v == 0 || d < v) v = d;
        }
        if (v < 1) v = 1;
        atomic_store_explicit(&ps, v, memory_order_relaxed);
    }
    return v;
}

/* The most pauses between two looks at the word of a waiter that backs off (1: none). At
 * most 1024: a clock too coarse to time 128 pauses must not make it thousands of times the
 * backoff (with 1024, at most 40 us where a pause takes 40 ns). */
static unsigned backoff_pauses(const shmrpc__waiter *w)
{
    if (w->backoff_ns <= 0) return 1;
    int64_t n = w->backoff_ns * 1000 / relax_ps();
    return n < 1 ? 1 : n > 1024 ? 1024 : (unsigned)n;
}

/* Spins, or yields while the peer shares our CPU, until the word changes, the deadline
 * or the budget passes (budget < 0: spin until the deadline). Returns 0 (changed), 1 (time
 * is up) or a check's status. The clock is first read after SHMRPC__SPIN_QUIET pauses or
 * a yield, and the budget counts from there: a handoff that comes sooner costs no clock
 * read (20-50 ns each here, a third of the one-line limit; issue 18). A waiter with a
 * backoff doubles the pauses between its looks up to w->backoff_ns (shmrpc__waiter). */
static int spin(shmrpc__futex *f, uint32_t old, int64_t deadline, int64_t budget,
                const shmrpc__waiter *w, bool may_yield)
{
    int64_t until = 0, next_check = 0; /* 0: the clock was not read yet */
    int64_t late = 0;                  /* when the hook runs; 0: it ran, or there is none */
    bool yield = false;
    unsigned pauses = 1, most = 0, spent = 0; /* most: 0 until the backoff is wanted */
    for (unsigned i = 1;; i++) {
        if (changed(f, old, w)) return 0;
        /* Yield rather than spin while the peer shares our CPU (spinning only keeps it
         * away), and while more of the group are awake than there are CPUs (spinning
         * takes a CPU that a worker needs; yielding hands it over and lets the
         * scheduler share the CPUs fairly among the waiters). Looked at every 8 turns:
         * the peer's line is written by the peer, and reading it each turn would pull
         * it away from the peer that many times. */
        if (may_yield && (yield || i % 8 == 1))
            yield = (w->peer &&
                     atomic_load_explicit(&w->peer->cpu, memory_order_relaxed) == sched_getcpu()) ||
                    crowded(w);
        bool yielded = yield;
        if (yielded) {
            sched_yield();
        } else {
            for (unsigned k = 0; k < pauses; k++)
                shmrpc__cpu_relax();
            spent += pauses;
            if (w->backoff_ns > 0) {
                if (most == 0) most = backoff_pauses(w);
                pauses = pauses >= most / 2 ? most : pauses * 2;
            }
        }
        /* A yield can give the CPU away for a whole timeslice when other work is runnable:
         * look at the clock after every one, not every SHMRPC__SPIN_QUIET pauses (that
         * overran a 100 us budget and 50 ms deadlines by about 90 ms under load). */
        if (yielded || spent >= SHMRPC__SPIN_QUIET) {
            spent = 0;
            int64_t now = shmrpc__now_ns();
            if (until == 0) {
                count_in(w);
                if (w->lazy) deadline = shmrpc__deadline_at(w->lazy, now);
                /* Compared, not added: a huge SHMRPC_SPIN_NS must not overflow. */
                until = budget < 0 || budget >= deadline - now ? deadline : now + budget;
                next_check = now + SHMRPC__CHECK_NS / 4;
                late = w->lasts ? now + w->late_ns : 0;
            }
            if (late != 0 && now >= late) {
                late = 0;
                w->lasts(w->check_arg);
            }
            if (now >= until) {
                /* A waiter that backed off looks after every pause for one last backoff
                 * before it sleeps: a holder that keeps taking the lock again leaves it
                 * free for moments that sparse looks miss, and a sleep costs the holder a
                 * wake-up call and the waiter its CPU. */
                if (most <= 1 || until >= deadline) return 1;
                most = pauses = 1;
                until = deadline - now > w->backoff_ns ? now + w->backoff_ns : deadline;
            }
            if (now >= next_check) {
                int rc = check(w);
                if (rc != 0) return rc;
                next_check = now + SHMRPC__CHECK_NS / 4;
            }
        }
    }
}

int shmrpc__wait_while(shmrpc__futex *f, uint32_t old, int64_t deadline_ns, const shmrpc__waiter *w)
{
    if (changed(f, old, w)) return 0;
    shmrpc_wait_mode mode = w->opts ? w->opts->mode : SHMRPC_WAIT_ADAPTIVE;
    int64_t budget = w->opts ? w->opts->spin_ns : SHMRPC_DEFAULT_SPIN_NS;
    shmrpc__presence_update(w->self);
    if (mode != SHMRPC_WAIT_SLEEP) {
        int rc = spin(f, old, deadline_ns, mode == SHMRPC_WAIT_SPIN ? -1 : budget, w,
                      mode == SHMRPC_WAIT_ADAPTIVE);
        if (rc != 1) return rc;
    }
    count_in(w); /* it sleeps lowering awake: it must be counted first */
    if (w->lasts) w->lasts(w->check_arg); /* it may have run in the spin already */
    if (w->lazy) deadline_ns = shmrpc__deadline_at(w->lazy, shmrpc__now_ns());
    bool lock = w->owner_lock != NULL;
    for (;;) {
        if (changed(f, old, w)) return 0;
        int64_t now = shmrpc__now_ns();
        if (now >= deadline_ns) return SHMRPC_ETIMEDOUT;
        int rc = check(w);
        if (rc != 0) return rc;
        now = shmrpc__now_ns(); /* the check reads /proc: it takes time of its own */
        if (now >= deadline_ns) return changed(f, old, w) ? 0 : SHMRPC_ETIMEDOUT;
        int64_t slice = deadline_ns - now, every = w->check_ns > 0 ? w->check_ns : SHMRPC__CHECK_NS;
        if (slice > every) slice = every;
        if (w->self) atomic_store_explicit(&w->self->asleep, 1, memory_order_relaxed);
        if (w->awake) atomic_fetch_sub_explicit(w->awake, 1, memory_order_relaxed);
        int slept = !lock ? LOCK_UNUSABLE
                    : w->owner_ready && !w->owner_ready(w->check_arg)
                        ? LOCK_FREE
                        : lock_sleep(w->owner_lock, slice);
        if (slept == LOCK_UNUSABLE || slept == LOCK_FREE) futex_sleep(f, old, slice, w);
        if (w->awake) atomic_fetch_add_explicit(w->awake, 1, memory_order_relaxed);
        if (w->self) {
            atomic_store_explicit(&w->self->asleep, 0, memory_order_relaxed);
            shmrpc__presence_update(w->self);
        }
        /* Let go of without the word changing: its holder died, or never held it. The
         * check says which; if nothing is wrong, the lock tells no more in this wait. */
        if (slept == LOCK_LET_GO && !changed(f, old, w)) {
            rc = check(w);
            if (rc != 0) return rc;
        }
        if (slept == LOCK_LET_GO || slept == LOCK_UNUSABLE) lock = false;
    }
}
