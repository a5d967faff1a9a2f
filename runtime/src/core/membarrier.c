/* SPDX-License-Identifier: MIT */
/* membarrier(2), registered once per process, and its global barrier (membarrier.h). */
#include "core/membarrier.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

_Atomic int32_t shmrpc__membarrier_pid;
_Atomic int shmrpc__membarrier_state;

bool shmrpc__membarrier_register(void)
{
    /* The state before the pid (release): whoever sees this process's pid sees its state.
     * Threads that register at once each make the syscall, with the same outcome. */
    if (atomic_load_explicit(&shmrpc__membarrier_pid, memory_order_acquire) != shmrpc__self_pid()) {
        long r = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0);
        atomic_store_explicit(&shmrpc__membarrier_state, r == 0 ? 1 : -1, memory_order_relaxed);
        atomic_store_explicit(&shmrpc__membarrier_pid, shmrpc__self_pid(), memory_order_release);
    }
    return atomic_load_explicit(&shmrpc__membarrier_state, memory_order_relaxed) == 1;
}

int shmrpc__membarrier_all(void)
{
    return (int)syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
}
