/* SPDX-License-Identifier: MIT */
/* How a process waits for another: the knobs of the hybrid spin, yield, sleep strategy
 * that the locks and the shared-memory transport share. */
#ifndef SHMRPC_WAIT_H
#define SHMRPC_WAIT_H

#include <stdint.h>

#include <shmrpc/decls.h>

SHMRPC_BEGIN_DECLS

typedef enum shmrpc_wait_mode {
    /* Spin while the process waited for runs on another CPU, yield while it shares
     * ours, and sleep on a futex once the spin budget has passed. */
    SHMRPC_WAIT_ADAPTIVE = 0,
    /* Spin until done or the deadline passes; never yield or sleep (for measurements:
     * it starves the peer when processes outnumber CPUs). */
    SHMRPC_WAIT_SPIN = 1,
    /* Sleep on the futex at once. */
    SHMRPC_WAIT_SLEEP = 2,
} shmrpc_wait_mode;

#define SHMRPC_DEFAULT_SPIN_NS ((int64_t)100000) /* 100 us */

/* A timeout in milliseconds of the lock's, the queue's and the map's calls that waits for as
 * long as it takes. */
#define SHMRPC_WAIT_FOREVER ((int64_t)-1)

typedef struct shmrpc_wait_opts {
    shmrpc_wait_mode mode;
    int64_t spin_ns; /* how long ADAPTIVE spins and yields before it sleeps */
    /* The longest one sleep lasts before the waiter looks again on its own (UltraDict's
     * sleep_time), in ns; 0: the default, 20 ms. A waiter is woken by the change it waits
     * for anyway; this bounds how late it notices what nobody wakes it for (a dead
     * owner, a steal's time, a dead peer's slot to repair). Used by the lock's, the map's
     * and the queue's waits. */
    int64_t sleep_ns;
} shmrpc_wait_opts;

/* The defaults, overridden by the environment: SHMRPC_WAIT=adaptive|spin|sleep and
 * SHMRPC_SPIN_NS=N. Malformed values are ignored. */
void shmrpc_wait_opts_init(shmrpc_wait_opts *o);

SHMRPC_END_DECLS
#endif
