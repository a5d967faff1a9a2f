/* SPDX-License-Identifier: MIT */
/* The programs' one /proc reader: a process's stat line, whether it lives, its memory and
 * I/O, every process and a service's groups of them, and which of a group are its
 * workers: one reader and one rule for the time series (sup_series.c), the scaler
 * (sup_scaler.c), the call statistics' owner check (obs_stats.c) and the management page
 * (web_view.c). Every service leads a process group of its own, and its processes stay
 * in it. (The library has its own, runtime/src/core/proc.c, for the runtime's use; shmrpcctl
 * ls/clean asks the library.) */
#ifndef SHMRPC_OBSERVE_PROC_H
#define SHMRPC_OBSERVE_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The name (comm, PR_SET_NAME) of a module= service's TCP manager (sup_module.c). Its
 * workers inherit it when they fork; what tells the manager is its parent, the leader. */
#define OBS_TCP_MANAGER_NAME "shmrpc-tcp"

/* One process, from /proc/PID/stat. */
typedef struct obs_proc {
    pid_t pid, ppid, pgrp;
    char state;              /* R, S, D, T, ... (zombies are not listed) */
    bool tcp_named;          /* its name is OBS_TCP_MANAGER_NAME */
    uint64_t utime, stime;   /* clock ticks, its threads included */
    uint64_t cutime, cstime; /* of the children it reaped */
    uint64_t start;          /* clock ticks since boot: with pid, names one process */
    uint64_t rss_pages;
} obs_proc;

/* Parses the text of /proc/PID/stat of pid into out; false when it makes no sense. */
bool obs_proc_parse(pid_t pid, const char *stat, obs_proc *out);

/* /proc/PID/stat of pid read and parsed into out; false when pid is gone (or the text
 * makes no sense). A zombie is read as one: out->state 'Z'. */
bool obs_proc_read(pid_t pid, obs_proc *out);

/* Whether process pid is alive (not a zombie) and, when group > 0, in process group
 * group; with group <= 0, only that it is alive (kill(pid, 0) not ESRCH). */
bool obs_proc_alive(pid_t pid, pid_t group);

/* A process's memory in bytes: rss its resident set, pss its proportional set size (a
 * page shared by n processes, copy-on-write after fork, counted as 1/n in each), both from
 * /proc/PID/smaps_rollup; when that cannot be read, rss from /proc/PID/status and
 * pss_known false. False when neither can be read (the process is gone). */
typedef struct obs_mem {
    uint64_t rss, pss;
    bool pss_known;
} obs_mem;
bool obs_proc_memory(pid_t pid, obs_mem *out);

/* A process's storage I/O in bytes (/proc/PID/io read_bytes, write_bytes); false when it
 * cannot be read: only who may ptrace it can (not another user's, a setuid program). */
bool obs_proc_io(pid_t pid, uint64_t *read_bytes, uint64_t *write_bytes);

/* Calls each() for every process of /proc, zombies and dead ones left out. */
void obs_procs_scan(void (*each)(const obs_proc *p, void *arg), void *arg);

/* Whether v[k], one of the n processes of a service's group (v[k].pgrp: the service's
 * process, its leader), is one of its workers. The managers are the leader and a process
 * named OBS_TCP_MANAGER_NAME whose parent is the leader (a module= service's TCP
 * manager); a worker is any other process whose parent is a manager. So a helper that a
 * worker runs (system(), popen()) is not a worker, and a TCP manager that has no workers
 * yet is not one either. With leader_serves (an exec= server, whose structure is its
 * own), a leader with no child in the group serves in place and is its one worker; a
 * module= service's leader never serves. */
bool obs_proc_is_worker(const obs_proc *v, size_t n, size_t k, bool leader_serves);

/* The processes of the groups led by leaders[0..n) (0: none) as /proc shows them now, in
 * one pass: *out (to free) holds them sorted by group then pid, *len of them. 0, or
 * SHMRPC_ENOMEM. */
int obs_groups_scan(const pid_t *leaders, size_t n, obs_proc **out, size_t *len);

/* The workers of the group led by leader in v[0..len) (obs_groups_scan's): their count,
 * and the first cap of their pids, ascending, in pids. */
int obs_group_workers(const obs_proc *v, size_t len, pid_t leader, bool leader_serves, pid_t *pids,
                      int cap);

#endif
