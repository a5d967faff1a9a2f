/* What /proc says about a process or thread: whether it still runs, and since when. */
#ifndef SHMRPC_SRC_PROC_H
#define SHMRPC_SRC_PROC_H

#include <stdint.h>

typedef struct shmrpc__proc_stat {
    char state;     /* field 3: R, S, D, T, Z (zombie), X (dead)... */
    uint32_t flags; /* field 9: the kernel's PF_* flags; PF_EXITING (4) once it is dying */
    uint64_t start; /* field 22: start time in clock ticks since boot */
} shmrpc__proc_stat;

/* Reads /proc/ID/stat (a pid or a thread id). 0, or -1 with errno: ENOENT or ESRCH when
 * it is gone, EPROTO when the file made no sense, another errno when /proc could not say. */
int shmrpc__read_proc_stat(uint32_t id, shmrpc__proc_stat *ps);

#endif
