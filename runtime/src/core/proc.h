/* SPDX-License-Identifier: MIT */
/* What /proc says about a process or thread: whether it still runs, since when, who owns
 * it and what it maps. The one reader of /proc in the library. */
#ifndef SHMRPC_SRC_PROC_H
#define SHMRPC_SRC_PROC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct shmrpc__proc_stat {
    char state;     /* field 3: R, S, D, T, Z (zombie), X (dead)... */
    uint32_t flags; /* field 9: the kernel's PF_* flags; PF_EXITING (4) once it is dying */
    uint64_t start; /* field 22: start time in clock ticks since boot */
} shmrpc__proc_stat;

/* Reads /proc/ID/stat (a pid or a thread id). 0, or -1 with errno: ENOENT or ESRCH when
 * it is gone, EPROTO when the file made no sense, another errno when /proc could not say. */
int shmrpc__read_proc_stat(uint32_t id, shmrpc__proc_stat *ps);

/* Whether ps is of a process or thread that has ended: a zombie, or dead. */
static inline bool shmrpc__proc_ended(const shmrpc__proc_stat *ps)
{
    return ps->state == 'Z' || ps->state == 'X' || ps->state == 'x';
}

/* Whether the process of ID maps the file dev:ino (/proc/ID/maps): 1 yes, 0 no or it is
 * gone, -1 when /proc could not say (another user's process, or not dumpable). */
int shmrpc__proc_maps(uint32_t id, dev_t dev, ino_t ino);

/* The user that owns ID (/proc/ID): 0, or -1 with errno. */
int shmrpc__proc_owner(uint32_t id, uid_t *uid);

/* The start time of pid in clock ticks since boot (/proc/PID/stat), or 0 when it cannot be
 * read (gone, or pid <= 0). */
uint64_t shmrpc__proc_start(int32_t pid);

/* Whether pid still runs and started at start (0: any start). Gone, a zombie, or a later
 * process with the same pid: dead. When /proc cannot say, alive: a wrong "dead" would
 * reset a channel under a running worker. */
bool shmrpc__proc_alive(int32_t pid, uint64_t start);

/* Alive, and not dying: once a process has begun to exit (PF_EXITING) it runs no more of
 * its own code. For a worker that let go of a channel's lock without answering: the kernel
 * does that early in its exit, before /proc shows it a zombie. */
bool shmrpc__proc_running(int32_t pid, uint64_t start);

/* This process's pid and the start time /proc gives it (clock ticks since boot; 0 when
 * /proc could not say), learnt on first use and learnt again by a forked child (a
 * pthread_atfork handler forgets them): getpid() is a syscall in glibc, 0.2-0.25 us in this
 * VM, more than a whole shm:// handoff, too dear for every call or push. */
extern _Atomic int32_t shmrpc__self_pid_seen;
int32_t shmrpc__learn_self(void);
static inline int32_t shmrpc__self_pid(void)
{
    int32_t pid = atomic_load_explicit(&shmrpc__self_pid_seen, memory_order_acquire);
    return pid ? pid : shmrpc__learn_self();
}
uint64_t shmrpc__self_start(void);

/* The path of descriptor fd of process pid (/proc/PID/fd/FD), or of this process's own
 * (/proc/self/fd/FD) when pid <= 0. */
void shmrpc__proc_fd_path(char *out, size_t cap, int32_t pid, int fd);

/* Who listens on TCP port (/proc/net/tcp and tcp6): its owner in *uid and, when this
 * process may read that process's descriptors (its own user's, or as root), its pid in
 * *pid (else 0). False when nobody listens there, or /proc does not say. For a message
 * about a port that is taken; it reads every process's descriptors. */
bool shmrpc__proc_tcp_listener(unsigned port, int32_t *pid, uid_t *uid);

#endif
