/* A service's processes as /proc shows them, and which of them are its workers: one
 * reader and one rule for the time series (sup_series.c), the scaler (sup_scaler.c) and the
 * management page (web_view.c). Every service leads a process group of its own, and its
 * processes stay in it. */
#ifndef SHMRPC_SUPERVISOR_PROC_GROUP_H
#define SHMRPC_SUPERVISOR_PROC_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The name (comm, PR_SET_NAME) of a module= service's TCP manager (sup_module.c). Its
 * workers inherit it when they fork; what tells the manager is its parent, the leader. */
#define SUP_TCP_MANAGER_NAME "shmrpc-tcp"

/* One process, from /proc/PID/stat. */
typedef struct sup_proc {
    pid_t pid, ppid, pgrp;
    char state;              /* R, S, D, T, ... (zombies are not listed) */
    bool tcp_named;          /* its name is SUP_TCP_MANAGER_NAME */
    uint64_t utime, stime;   /* clock ticks, its threads included */
    uint64_t cutime, cstime; /* of the children it reaped */
    uint64_t start;          /* clock ticks since boot: with pid, names one process */
    uint64_t rss_pages;
} sup_proc;

/* Parses the text of /proc/PID/stat of pid into out; false when it makes no sense. */
bool sup_proc_parse(pid_t pid, const char *stat, sup_proc *out);

/* Calls each() for every process of /proc, zombies and dead ones left out. */
void sup_procs_scan(void (*each)(const sup_proc *p, void *arg), void *arg);

/* Whether v[k], one of the n processes of a service's group (v[k].pgrp: the service's
 * process, its leader), is one of its workers. The managers are the leader and a process
 * named SUP_TCP_MANAGER_NAME whose parent is the leader (a module= service's TCP
 * manager); a worker is any other process whose parent is a manager. So a helper that a
 * worker runs (system(), popen()) is not a worker, and a TCP manager that has no workers
 * yet is not one either. With leader_serves (an exec= server, whose structure is its
 * own), a leader with no child in the group serves in place and is its one worker; a
 * module= service's leader never serves. */
bool sup_proc_is_worker(const sup_proc *v, size_t n, size_t k, bool leader_serves);

/* The processes of the groups led by leaders[0..n) (0: none) as /proc shows them now, in
 * one pass: *out (to free) holds them sorted by group then pid, *len of them. 0, or
 * SHMRPC_ENOMEM. */
int sup_groups_scan(const pid_t *leaders, size_t n, sup_proc **out, size_t *len);

/* The workers of the group led by leader in v[0..len) (sup_groups_scan's): their count,
 * and the first cap of their pids, ascending, in pids. */
int sup_group_workers(const sup_proc *v, size_t len, pid_t leader, bool leader_serves, pid_t *pids,
                      int cap);

#endif
