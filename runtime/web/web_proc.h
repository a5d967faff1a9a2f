/* SPDX-License-Identifier: MIT */
/* The management page in a process of its own (docs/web.md): whatever a request does to
 * the page (a crash, a stack overflow, a hang), the supervisor and its services go on.
 * The supervisor forks a keeper while it is still one thread; the keeper forks the page's
 * process when told to serve, and again, with backoff, when that process dies or stops
 * answering. The page
 * reaches the supervisor only through the control service, as shmrpcctl does. */
#ifndef SHMRPC_SUPERVISOR_WEB_PROC_H
#define SHMRPC_SUPERVISOR_WEB_PROC_H

#include <stdbool.h>
#include <sys/types.h>

#include "config.h"
#include "web.h"

typedef struct web_proc web_proc;

/* Forks the keeper; call it while the process has one thread (before the control
 * service starts), with the signals the main loop reads blocked. The keeper keeps its
 * own copy of c and control_addr (the control service need not run yet) and writes its
 * lines, and the page's, to a pipe that web_proc_drain copies into log (web.h: the
 * supervisor's; it must outlive p). NULL, with why in err (cap bytes), when it cannot
 * fork: the supervisor runs on without its page. */
web_proc *web_proc_fork(cfg_file *c, const char *control_addr, const web_logger *log, char *err,
                        size_t cap);

/* Tells the keeper the shm name and TCP port each module= service was found to serve at
 * (sup_module_resolve, which runs after the fork: loading a module may start threads). */
void web_proc_resolved(web_proc *p, const cfg_file *c);

/* Tells the keeper to start the page (once every service has started). */
void web_proc_serve(web_proc *p);

/* Whether the page has answered the keeper's probe (HEAD /favicon.svg) since
 * web_proc_serve (web_proc_drain learns it), so that READY=1 can say the page is up. */
bool web_proc_answered(const web_proc *p);

/* Whether to wait no longer for the page: it answered, or will not come (its first
 * process could not start, its address cannot be probed, its keeper is gone, p is NULL). */
bool web_proc_settled(const web_proc *p);

/* The pipe of the keeper's and the page's lines, to poll for POLLIN; -1 for NULL. */
int web_proc_fd(const web_proc *p);

/* Copies the complete lines the pipe holds into the supervisor's log. */
void web_proc_drain(web_proc *p);

/* Whether pid is the keeper's; then status is its wait status, and it is gone (said in
 * the log: the page does not come back until the supervisor starts again). */
bool web_proc_reaped(web_proc *p, pid_t pid, int status);

/* Tells the keeper to stop the page (which finishes the requests it serves, each bounded
 * by its deadlines) and waits for it, SIGKILLing it after a bound, or at once when a
 * SIGTERM or SIGINT arrives on sig_fd (the supervisor's signalfd; -1: none); copies the
 * last lines, then frees p. NULL is fine. */
void web_proc_stop(web_proc *p, int sig_fd);

#endif
