/* SPDX-License-Identifier: MIT */
/* How many forks this process is from the one that imported the module (pyshm_forks): the
 * client and the queues and maps ask it to know whether they still run in the process that
 * opened them. */
#include "pyshmrpc.h"

#include <pthread.h>
#include <stdatomic.h>

/* The forks this process is removed from its first (bumped in each child, at fork): the
 * test of "am I the process that connected", as getpid() is a syscall in glibc and costs
 * more than the rest of a call's checks together. */
_Atomic unsigned pyshm_fork_count;

static void on_fork_child(void)
{
    atomic_fetch_add_explicit(&pyshm_fork_count, 1, memory_order_relaxed);
}

void pyshm_forks_init(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}
