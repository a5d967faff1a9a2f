/* SPDX-License-Identifier: MIT */
/* A named lock shared by processes: a futex word in a POSIX shared-memory segment, taken
 * with the hybrid spin, yield, sleep wait, and handed to the next locker with
 * SHMRPC_EOWNERDEAD when its owner dies holding it. See docs/lock.md. */
#ifndef SHMRPC_LOCK_H
#define SHMRPC_LOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <shmrpc/decls.h>
#include <shmrpc/open_mode.h>
#include <shmrpc/wait.h>

SHMRPC_BEGIN_DECLS

/* The lock is owned by a thread (its kernel thread id, which is the process id for a
 * single-threaded process), so it excludes threads of one process from each other as
 * well as processes. A handle may be shared by the threads of its process. */
typedef struct shmrpc_lock shmrpc_lock;

/* What shmrpc_lock_open does when the lock exists or does not: shmrpc/open_mode.h, under
 * the lock's own names. */
typedef shmrpc_open_mode shmrpc_lock_mode;
#define SHMRPC_LOCK_CONNECT_OR_CREATE SHMRPC_CONNECT_OR_CREATE
#define SHMRPC_LOCK_CONNECT_TO_EXISTING SHMRPC_CONNECT_TO_EXISTING
#define SHMRPC_LOCK_CREATE_NEW_OVERWRITE SHMRPC_CREATE_NEW_OVERWRITE
#define SHMRPC_LOCK_CREATE_NEW_EXCLUSIVE SHMRPC_CREATE_NEW_EXCLUSIVE

/* A name is 1..SHMRPC_LOCK_NAME_MAX characters of [A-Za-z0-9_.-]; the segment is
 * /dev/shm/shmrpc.lock.NAME. */
#define SHMRPC_LOCK_NAME_MAX 200

/* Timeouts: milliseconds, or this to wait for as long as it takes (shmrpc/wait.h). */
#define SHMRPC_LOCK_WAIT_FOREVER SHMRPC_WAIT_FOREVER

typedef struct shmrpc_lock_opts {
    shmrpc_lock_mode mode; /* default SHMRPC_LOCK_CONNECT_OR_CREATE */
    bool initially_locked; /* created held by the creating thread; only when this open
                              creates the lock (shmrpc_lock_is_mine tells) */
    mode_t perms;          /* of a created segment, regardless of the umask; default 0600.
                              An existing one is refused when its mode grants group or
                              other bits that perms does not, or when another user owns
                              it and perms grants no group or other access */
    shmrpc_wait_opts wait; /* how a contended acquire waits (wait.sleep_ns: UltraDict's
                              sleep_time, how often a sleeping waiter looks again) */
    /* Re-entrant: the holding thread may acquire again (each acquire then counts, and the
     * lock is freed by the release that matches the first); otherwise such an acquire is
     * SHMRPC_EBUSY. Per handle. Default false. */
    bool reentrant;
    /* UltraDict's steal_after_timeout: an acquire that has waited this long for a live
     * holder takes the lock from it (SHMRPC_ESTOLEN) instead of waiting on, if its own
     * timeout has not passed first. 0 (the default): never. */
    int64_t steal_after_ms;
} shmrpc_lock_opts;

/* The defaults; the wait options honour SHMRPC_WAIT and SHMRPC_SPIN_NS. */
void shmrpc_lock_opts_init(shmrpc_lock_opts *o);

/* Opens the lock called name; o may be NULL for the defaults. Failures: SHMRPC_EINVAL
 * (bad name or opts), SHMRPC_ENOENT (CONNECT_TO_EXISTING, missing), SHMRPC_EBUSY
 * (CREATE_NEW_EXCLUSIVE, exists), SHMRPC_EPERM (owner or mode refused), SHMRPC_EPROTO
 * (not a lock segment, or never initialised), SHMRPC_EVERSION, SHMRPC_ESYS(errno).
 * shmrpc_errmsg() then says why, naming the segment's owner and mode (status.h). */
int shmrpc_lock_open(shmrpc_lock **out, const char *name, const shmrpc_lock_opts *o);

/* Unmaps the lock. A lock held by the caller stays held until its thread ends; the next
 * locker then gets SHMRPC_EOWNERDEAD. NULL is ignored. */
void shmrpc_lock_close(shmrpc_lock *l);

/* Removes the name; handles already open keep the old lock. SHMRPC_ENOENT if missing. */
int shmrpc_lock_unlink(const char *name);

/* Takes the lock, waiting at most timeout_ms (0: do not wait; SHMRPC_LOCK_WAIT_FOREVER).
 * Returns 0; SHMRPC_EOWNERDEAD when taken from an owner that died holding it, or from a
 * word that a broken process left naming no real owner (the caller holds the lock and
 * must repair what it protects; docs/lock.md lists the cases); SHMRPC_ESTOLEN when
 * steal_after_ms passed and it was taken from a live holder (the caller holds it);
 * SHMRPC_ETIMEDOUT; SHMRPC_EBUSY when the calling thread holds it already (and the lock is
 * not re-entrant); SHMRPC_EINVAL for a negative timeout other
 * than SHMRPC_LOCK_WAIT_FOREVER. Signals do not cut the wait short. */
int shmrpc_lock_acquire(shmrpc_lock *l, int64_t timeout_ms);

/* The same with a timeout in seconds (0.05: 50 ms); -1.0 or +infinity waits forever. */
int shmrpc_lock_acquire_secs(shmrpc_lock *l, double seconds);

/* Takes the lock if it is free (0), or from a dead owner (SHMRPC_EOWNERDEAD); otherwise
 * SHMRPC_EBUSY at once. */
int shmrpc_lock_try(shmrpc_lock *l);

/* Takes the lock now, whoever holds it: 0 when it was free, SHMRPC_EOWNERDEAD from a dead
 * owner, SHMRPC_ESTOLEN from a live one (shmrpc_errmsg() names it). The caller then holds
 * the lock; the thread it was taken from learns it only when its release fails with
 * SHMRPC_EPERM, so whatever the lock protects may be half changed: steal only what can
 * bear it. (Acquires that may steal: shmrpc_lock_opts.steal_after_ms.) Held by the
 * caller already: as an acquire. */
int shmrpc_lock_steal(shmrpc_lock *l);

/* Frees the lock and wakes one sleeping waiter, if any. SHMRPC_EPERM when the calling
 * thread does not hold it. */
int shmrpc_lock_release(shmrpc_lock *l);

/* Whether the calling thread holds the lock. */
bool shmrpc_lock_is_mine(const shmrpc_lock *l);

/* The thread id of the owner, 0 when free: a snapshot, for monitoring and tests. */
int shmrpc_lock_owner(const shmrpc_lock *l, pid_t *owner);

/* The process that holds the lock (the thread group of the owner thread), 0 when free:
 * UltraDict's blocking pid, a snapshot. SHMRPC_ENOENT when the owner is gone from /proc
 * (it died holding the lock); *pid is then the owner's thread id. */
int shmrpc_lock_blocking_pid(const shmrpc_lock *l, pid_t *pid);

/* Counters kept in the segment, shared by every user of the lock since its creation. */
typedef struct shmrpc_lock_stats {
    uint64_t acquisitions; /* successful acquires, including those from dead owners */
    uint64_t contended;    /* acquires and tries that found the lock held */
    uint64_t sleeps;       /* futex sleeps of waiters (each wake-up or signal counts) */
    uint64_t owner_deaths; /* locks taken from owners that died holding them */
    uint64_t steals;       /* locks taken from live holders */
    /* Of the sleeps, those that ended by their timer (the wait's periodic check or its
     * deadline) rather than by a wake-up or a signal. A release wakes a sleeper, so while
     * each holder lets go soon, hand-offs end by a wake and this stays near 0. */
    uint64_t timer_wakes;
} shmrpc_lock_stats;

int shmrpc_lock_get_stats(const shmrpc_lock *l, shmrpc_lock_stats *out);

SHMRPC_END_DECLS
#endif
