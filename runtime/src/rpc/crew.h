/* SPDX-License-Identifier: MIT */
/* The worker processes of a server: forked from the manager that listened, replaced when
 * they die, and stopped on request. Shared by the shm:// and tcp:// transports. */
#ifndef SHMRPC_SRC_CREW_H
#define SHMRPC_SRC_CREW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include <shmrpc/server.h>

#define SHMRPC__CREW_MAX SHMRPC_MAX_WORKERS

typedef struct shmrpc__crew {
    /* Set by the transport before shmrpc__crew_manage(). */
    int n;             /* workers, 1 to SHMRPC__CREW_MAX, when want is NULL */
    _Atomic int *want; /* or the count wanted, which may change while it runs (a write to
                        * stop_fd makes the manager look at it at once) */
    _Atomic int *stop; /* set when the manager should stop... */
    int stop_fd;       /* ...and this becomes readable (a pipe; drained here) */
    /* A descriptor the manager watches too, and what it does when it is readable (until
     * the stop); or NULL. */
    int watch_fd;
    void (*watch)(void *arg);
    void *arg;
    /* A worker's body, run in the child (after PR_SET_PDEATHSIG): its status becomes
     * the exit code. It installs its own SIGTERM handler: SIGTERM means "finish the call
     * in hand and stop". */
    int (*run)(void *arg, int index);
    /* Called in the manager before worker index is started: 0, or it is not started
     * (tried again later); or NULL. */
    int (*prepare)(void *arg, int index);
    /* The manager reaped worker index, which died (or stopped); or NULL. */
    void (*reaped)(void *arg, int index);
    /* Called once before the workers get SIGTERM; or NULL. */
    void (*stopping)(void *arg);
    /* The manager's own. */
    pid_t pid[SHMRPC__CREW_MAX];
    int fd[SHMRPC__CREW_MAX];
    int64_t started[SHMRPC__CREW_MAX];
    bool leaving[SHMRPC__CREW_MAX]; /* told to stop: above the count wanted */
} shmrpc__crew;

/* The count of workers wanted now, 1 to SHMRPC__CREW_MAX. */
int shmrpc__crew_wanted(const shmrpc__crew *c);

/* Runs the crew until *stop, replacing a worker that dies no faster than every 100 ms and
 * following the count wanted (a worker above it gets SIGTERM: it finishes the call in hand
 * and leaves); then stops the workers, giving calls in flight two seconds before SIGKILL.
 * The manager sleeps in poll() on a pidfd per worker, so an idle one costs nothing, and it
 * reaps only its own children. Returns 0. */
int shmrpc__crew_manage(shmrpc__crew *c);

#endif
