/* SPDX-License-Identifier: MIT */
/* How the shm:// server side stops: the flag that the manager's SIGTERM sets in a forked
 * worker, and the listener's stop (shmrpc_server_stop()) and poke, which wake the manager
 * and the workers. */
#include "transport/shm/shm_server_int.h"

#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Set in a worker by the manager's SIGTERM. The manager's word, not the segment's: a
 * client writing STOPPING there must not be able to stop the workers. */
volatile sig_atomic_t shmrpc__shm_told_to_stop;

void shmrpc__shm_on_stop(int sig)
{
    (void)sig;
    shmrpc__shm_told_to_stop = 1;
}

void shmrpc__shm_poke(shmrpc__listener *base)
{
    shm_listener *l = (shm_listener *)base;
    int fd = l->stop_pipe[1];
    if (fd >= 0 && write(fd, "", 1) < 0) {
        /* full: the manager wakes up anyway */
    }
}

void shmrpc__shm_stop(shmrpc__listener *base)
{
    shm_listener *l = (shm_listener *)base;
    atomic_store(&l->stop, 1);
    int fd = l->stop_pipe[1];
    if (fd >= 0 && write(fd, "", 1) < 0) {
        /* full: the manager wakes up anyway */
    }
    if (l->ctl) { /* async-signal-safe: atomics, write() and a futex syscall */
        atomic_fetch_add(&l->ctl->doorbell.word, 1);
        /* Whatever the mask says: a stop is rare, and must not wait for a bounded sleep. */
        syscall(SYS_futex, &l->ctl->doorbell.word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    }
}
