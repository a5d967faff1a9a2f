/* SPDX-License-Identifier: MIT */
/* The asymmetric fence (membarrier(2)) that the queue's single roles and the map's readers
 * stand on: a process registers once, and then goes without fences of its own, because the
 * other side, when it must, has every CPU that runs a registered process make a full
 * barrier (membarrier.c). */
#ifndef SHMRPC_SRC_CORE_MEMBARRIER_H
#define SHMRPC_SRC_CORE_MEMBARRIER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/proc.h"

/* The process that registered (a forked child is not: the kernel's registration is per
 * address space), and whether it could: 1 registered, -1 not available. */
extern _Atomic int32_t shmrpc__membarrier_pid;
extern _Atomic int shmrpc__membarrier_state;

/* Registers this process for MEMBARRIER_CMD_GLOBAL_EXPEDITED, once per process: whether it
 * is registered (not where membarrier is not available: an old kernel, a seccomp filter). */
bool shmrpc__membarrier_register(void);

/* Whether this process registered: two loads, for a fast path that fences itself when not. */
static inline bool shmrpc__membarrier_registered(void)
{
    return atomic_load_explicit(&shmrpc__membarrier_state, memory_order_relaxed) == 1 &&
           atomic_load_explicit(&shmrpc__membarrier_pid, memory_order_relaxed) ==
               shmrpc__self_pid();
}

/* A full barrier on every CPU that runs a registered process: 0, or -1 (errno) where
 * membarrier is not available. */
int shmrpc__membarrier_all(void);

#endif
