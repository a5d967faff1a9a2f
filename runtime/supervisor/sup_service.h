/* SPDX-License-Identifier: MIT */
/* One service's life under the supervisor (an exec= program, or a module= service's
 * manager, sup_module.c): its process (group), its output drained
 * into its log, the check that it answers, restarts with backoff, and stopping. */
#ifndef SHMRPC_SUPERVISOR_SERVICE_H
#define SHMRPC_SUPERVISOR_SERVICE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "sup_ctx.h"
#include "sup_log.h"

typedef struct sup_service {
    sup_ctx *ctx;
    const cfg_service *cfg;
    const char *cwd; /* where its program runs: the service.ini's folder */
    sup_state state;
    sup_state after_stop;   /* SUP_STOPPED, or SUP_FAILED for one stopped for not answering */
    pid_t pid;              /* its process, which leads its process group; 0: none */
    int out_r, out_w;       /* the pipe its stdout and stderr go to; the write end stays open
                             * here so that restarts share the pipe and it never reads EOF */
    sup_log log;            /* LOG_DIR/NAME.log */
    int restarts;           /* restarts since the supervisor started */
    int in_a_row;           /* crashes without crash_loop_window_s of running between them */
    int64_t *restart_times; /* monotonic ms of the recent restarts, crash_loop_restarts */
    int64_t started_mono;   /* monotonic ms its current process started */
    int64_t started_unix;   /* the same in Unix ms, for status.json; 0: none */
    int64_t restart_at;     /* SUP_BACKOFF: when to start it again */
    int64_t ready_by;       /* SUP_STARTING: when to give up waiting for an answer */
    int64_t next_probe;     /* SUP_STARTING: when to check again */
    int64_t kill_at;        /* SUP_STOPPING: when to SIGKILL */
    bool held;              /* an operator stopped it: not started in file order either */
    bool start_after_stop;  /* an operator restarts it: start it once it has stopped */
    char last_exit[192];    /* how its last process ended, or why it failed; "": none yet */
    char killed[96];        /* how its last stop had to SIGKILL ("still running 10s after
                             * SIGTERM (stop_timeout_s)"), also in last_exit; "": it did not */
    /* module= services only (sup_module.c, sup_scaler.c); NULL for exec= ones. */
    struct sup_module *module; /* the manager's command line */
    struct sup_scaler *scaler; /* its workers' CPU and memory, and their count */
} sup_service;

/* Opens its pipe and log. 0, or SHMRPC_ENOMEM or SHMRPC_ESYS(errno). */
int sup_service_init(sup_service *s, sup_ctx *ctx, const cfg_service *cfg, const char *cwd);
void sup_service_destroy(sup_service *s);

/* Starts its process. A failed fork counts as a crash. */
void sup_service_start(sup_service *s, int64_t now);

/* Whether it waits for an answer before the next service starts and counts as running. */
bool sup_service_waits(const sup_service *s);

/* Its process ended and is a zombie not yet reaped (waitid with WNOWAIT saw it): kills
 * what is left of its process group, reaps it, moves what it wrote to its log, and
 * decides what comes next. */
void sup_service_reaped(sup_service *s, int64_t now);

/* Moves output from the pipe to the log; returns false when nothing was there. */
bool sup_service_drain(sup_service *s);

/* Drains until the pipe is empty, but at most a few pipes' worth: a process outside the
 * service's group that still writes cannot keep the caller here. */
void sup_service_drain_rest(sup_service *s);

/* Whatever is due at now: a restart, a readiness check, a SIGKILL. */
void sup_service_tick(sup_service *s, int64_t now);

/* The earliest time sup_service_tick has something to do; INT64_MAX: none. */
int64_t sup_service_next_deadline(const sup_service *s);

/* SIGTERM to its process group and SIGKILL at now + stop_timeout_s (or now with force).
 * One not running becomes `final` at once. */
void sup_service_stop(sup_service *s, int64_t now, bool force, sup_state final);

/* What an operator asks for (the control service), each returning at once. Stop: as
 * sup_service_stop to SUP_STOPPED, and it stays stopped (a failed one stays failed). Start:
 * one stopped, failed or in its backoff starts now with its crash-loop count afresh; one
 * stopping starts once it has stopped; one starting or running is left alone. Restart:
 * stop, then start once stopped; one not running starts now. */
void sup_service_operator_stop(sup_service *s, int64_t now);
void sup_service_operator_start(sup_service *s, int64_t now);
void sup_service_operator_restart(sup_service *s, int64_t now);

#endif
