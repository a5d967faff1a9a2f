/* SPDX-License-Identifier: MIT */
/* The hybrid wait: spin, yield or sleep on a futex word in shared memory until it
 * changes, and wake sleepers without a syscall when there are none. */
#ifndef SHMRPC_SRC_WAIT_H
#define SHMRPC_SRC_WAIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <shmrpc/wait.h>

/* A word that waiters sleep on, with a count of sleepers. Lives in shared memory;
 * both fields are written by any process that waits or wakes. */
/* The pause inside a spin: it tells the CPU that this is a spin (so it does not
 * mis-speculate and lets the sibling hyperthread run) without giving up the CPU. The
 * benchmark's spin baseline uses it too, so that it spins as the runtime does. */
static inline void shmrpc__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

typedef struct shmrpc__futex {
    _Atomic uint32_t word;
    _Atomic uint32_t sleepers;
} shmrpc__futex;

/* What a process publishes about itself so that its peers can choose to spin or yield:
 * the CPU it last ran on and whether it is asleep. Written by its owner, read by peers. */
typedef struct shmrpc__presence {
    _Atomic int32_t cpu;
    _Atomic uint32_t asleep;
} shmrpc__presence;

/* Called now and then during a long wait (every few ms, and at least every
 * SHMRPC__CHECK_NS while asleep); a non-zero status ends the wait with that status. */
typedef int (*shmrpc__wait_check)(void *arg);
#define SHMRPC__CHECK_NS ((int64_t)20 * 1000 * 1000)

/* A call's deadline, computed at the first clock read of its wait rather than before it,
 * so that a call answered within the first turns of its spin reads no clock for it (a
 * read costs 20-50 ns here, a third of a one-line handoff; issue 18): at, or 0 until
 * then; and the timeout that it then adds (ms; SHMRPC_TIMEOUT_INFINITE (-1): none). */
typedef struct shmrpc__deadline {
    int64_t at;
    int64_t timeout_ms;
} shmrpc__deadline;

/* d->at, computed from now and d->timeout_ms first if it is not yet. */
int64_t shmrpc__deadline_at(shmrpc__deadline *d, int64_t now);

typedef struct shmrpc__waiter {
    const shmrpc_wait_opts *opts;
    const shmrpc__presence *peer; /* the process that will change the word, or NULL */
    shmrpc__presence *self;       /* where this process publishes itself, or NULL */
    shmrpc__wait_check check;     /* or NULL */
    void *check_arg;
    /* The processes of a group (a service's clients in calls and its workers) that are
     * running rather than asleep, or NULL. ADAPTIVE skips spinning while it exceeds the
     * CPU count, so waiters that outnumber CPUs sleep instead of starving the workers;
     * the wait lowers it while it sleeps and raises it again after. */
    _Atomic uint32_t *awake;
    /* Where a waiter that counts itself in awake only once its wait lasts records that it
     * does, or NULL (it counts from the start). Set at the wait's first clock read (after
     * 64 turns of its spin, or its first yield) or before it sleeps: a handoff that comes
     * sooner writes nothing on awake's line, which every process of the group reads. The
     * awake is raised first and then *counted set, and the caller, done, clears *counted
     * before it lowers awake (and *counted_mark, a copy in shared memory for whoever takes
     * back a dead waiter's share, with it): a death between the two leaves the count
     * above the truth, where it is repaired. */
    bool *counted;
    _Atomic uint32_t *counted_mark;
    /* How often the check runs while asleep; 0: SHMRPC__CHECK_NS. A waiter that is woken
     * for everything it must notice can sleep longer and cost less when idle. */
    int64_t check_ns;
    /* Where this waiter records that it sleeps, instead of the futex's sleeper count: its
     * own bit in a mask, set before each sleep and cleared after, or NULL. A count that a
     * bad write left too low loses wake-ups for good; a bit lost so costs one sleep. */
    _Atomic uint64_t *sleeping;
    uint64_t sleeping_bit;
    /* A bit of the word itself that this waiter sets before each sleep, instead of
     * counting itself anywhere, or 0. The waiter sleeps on the word with the bit set, the
     * wait goes on while the word differs from old only in that bit, and the waker learns
     * from the word it swaps whether to wake (the kernel's robust futexes do the same with
     * FUTEX_WAITERS). The bit is cleared with the word, so one that a bad write left set
     * costs one useless wake, and one that a bad write cleared costs one sleep. */
    uint32_t flag;
    bool *slept; /* set when the wait sleeps on the futex, or NULL */
    /* Counts the futex sleeps that ended by their timer (the check's period or the
     * deadline), not by a wake-up, a signal or a changed word, or NULL. */
    uint64_t *timer_ends;
    /* While it spins, the longest the waiter goes without looking at the word, or 0: it
     * looks after every pause. A waiter with a backoff looks after 1, 2, 4... pauses up to
     * this. For a lock that its holder takes again at once (the map's writers): every look
     * takes the word's line from the holder, whose next write to it then waits for the
     * line to come back, and a waiter that looks every few nanoseconds also catches each
     * moment the lock is free and takes it, so that two lockers hand it (and all it
     * guards) back and forth on almost every acquire. Past the spin budget, it looks
     * after every pause for one last backoff_ns before it sleeps. */
    int64_t backoff_ns;
    /* A PI futex word (a thread id, or 0) that the process which will change the word
     * holds until it has, or NULL. Past its spin, the waiter sleeps locking it instead of
     * on the word: the kernel wakes it when the holder lets go, and also when the holder
     * dies, so a dead peer is noticed at once rather than at the next check. Once let go
     * of with the word unchanged, the check runs at once; if it finds nothing wrong (the
     * lock was not held, or a bad write let it go), the wait sleeps on the word again. */
    _Atomic uint32_t *owner_lock;
    /* Whether owner_lock is held for this wait yet (called with check_arg before each
     * sleep on it), or NULL: always. Until it is, the waiter sleeps on the word. */
    bool (*owner_ready)(void *arg);
    /* The wait's deadline, computed at its first clock read, or NULL: then the deadline
     * given to shmrpc__wait_while is ignored. */
    shmrpc__deadline *lazy;
    /* A second word whose change ends the wait as well (while it differs from also_old),
     * or NULL. Looked at as the word is, and again after the waiter counted itself asleep,
     * but never slept on: a waiter that sets it gives a deadline within its spin (a worker
     * watching a channel as well as its doorbell), or a waker that changes it alone wakes
     * the word's sleepers (a stream's writer, shmrpc__ring_publish). */
    const _Atomic uint32_t *also;
    uint32_t also_old;
    /* Called with check_arg once the wait has lasted late_ns past its first clock read, or
     * before it first sleeps, or NULL: a client whose request a watching worker should
     * have taken by then rings the doorbell after all. */
    void (*lasts)(void *arg);
    int64_t late_ns;
    /* Whether the wakers of the word publish it lightly (shmrpc__publish_light: a release
     * store, and a look at the sleepers with no fence between, which would otherwise let a
     * waiter that counted itself in meanwhile sleep through the change). The waiter then
     * makes the fence for them before each sleep (shmrpc__fence_wakers), and where it
     * cannot, sleeps a millisecond at most. */
    bool fence_wakers;
} shmrpc__waiter;

int64_t shmrpc__now_ns(void); /* CLOCK_MONOTONIC */

/* The pauses a spin makes before it first reads the clock. */
#define SHMRPC__SPIN_QUIET 64u

/* Waits while f->word == old (ignoring w->flag). Returns 0 once it differs, SHMRPC_ETIMEDOUT when
 * deadline_ns (CLOCK_MONOTONIC; INT64_MAX: none) passes first, or the check's status.
 * Signals do not end the wait: it resumes with the time that is left. */
int shmrpc__wait_while(shmrpc__futex *f, uint32_t old, int64_t deadline_ns,
                       const shmrpc__waiter *w);

/* Sleeps while each of the n words fs[i]->word is old[i] (n at most
 * SHMRPC__SLEEP_ANY_MAX), for at most ns: until one changes and its waker wakes it, a
 * signal or the time is up. Each futex's sleeper count is raised before the words are read
 * again, as for one (shmrpc__wake). The caller looks at the words and the clock after.
 * Where futex_waitv fails (a kernel before 5.16, a seccomp filter that refuses it), from
 * then on it sleeps on the first word alone, for at most a millisecond. */
#define SHMRPC__SLEEP_ANY_MAX 128
void shmrpc__sleep_any(shmrpc__futex *const *fs, const uint32_t *old, unsigned n, int64_t ns);

/* Wakes up to n sleepers on f (INT32_MAX: all) after the caller changed f->word; makes
 * the futex syscall only when someone sleeps. */
void shmrpc__wake(shmrpc__futex *f, int n);

/* Registers this process as a light waker (shmrpc__publish_light), once a process: true when it is,
 * false where the kernel refuses it (membarrier's MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED:
 * before Linux 4.16, or a seccomp filter), and the process must publish with
 * shmrpc__wake's fence. */
bool shmrpc__fence_register(void);

/* A full fence on every CPU that runs a thread of a process registered so, which orders
 * each one's light publish against its look at the sleepers as a fence of its own would
 * (MEMBARRIER_CMD_GLOBAL_EXPEDITED): true, or false where the kernel refuses it. */
bool shmrpc__fence_wakers(void);

/* Stores v into f->word (release) and wakes up to n sleepers when the mask sleeping (see
 * shmrpc__waiter), read with no fence, says there are: for a process registered by
 * shmrpc__fence_register, waking waiters whose fence_wakers is set. A store and a load,
 * where shmrpc__wake's protocol costs the stall of a sequentially consistent store (a
 * batch's worker publishes so each answer; a stream's ring, shmrpc__ring_publish, so). */
void shmrpc__publish_light(shmrpc__futex *f, uint32_t v, const _Atomic uint64_t *sleeping, int n);

/* Wakes up to n sleepers on f that record themselves in the mask sleeping (see
 * shmrpc__waiter); makes the futex syscall only when a bit is set. */
void shmrpc__wake_mask(shmrpc__futex *f, _Atomic uint64_t *sleeping, int n);

/* Wakes up to n sleepers on f with the syscall, for words that say themselves whether
 * anyone sleeps (shmrpc__waiter's flag). */
void shmrpc__futex_wake(shmrpc__futex *f, int n);
/* Lets go of a PI futex word that tid holds (see owner_lock): no syscall unless someone
 * waits on it. A word that names another thread is left alone. */
void shmrpc__lock_release(_Atomic uint32_t *lock, uint32_t tid);

/* Publishes the CPU this process runs on now. */
void shmrpc__presence_update(shmrpc__presence *self);

/* Takes one from a count that a dead process left raised, never below zero. */
void shmrpc__count_down(_Atomic uint32_t *count);

/* The CPUs this process may run on (at least 1), read once. */
int shmrpc__ncpus(void);

#endif
