/* SPDX-License-Identifier: MIT */
/* What the parts of the supervisor share with its loop, below them all: the context (main.c
 * owns it; each service points to it), the supervisor's own lines, and the states of a
 * service by name. It calls none of the parts (sup_service.c, sup_module.c, sup_scaler.c,
 * sup_series.c, sup_control.c), which all log through it. */
#ifndef SHMRPC_SUPERVISOR_CTX_H
#define SHMRPC_SUPERVISOR_CTX_H

#include <stdarg.h>
#include <stdbool.h>
#include <sys/types.h>

#include "sup_log.h"

/* Where a service is in its life (sup_service.c moves it along). */
typedef enum sup_state {
    SUP_STOPPED,  /* not started yet, or stopped */
    SUP_STARTING, /* its process runs; not yet answering calls */
    SUP_RUNNING,  /* answering (or not waited for) */
    SUP_BACKOFF,  /* exited on its own; restarted at restart_at */
    SUP_STOPPING, /* SIGTERM sent; SIGKILL at kill_at */
    SUP_FAILED,   /* crashed in a loop or never answered: left stopped */
} sup_state;

/* What the services share with the supervisor's loop (main.c owns it). */
typedef struct sup_ctx {
    sup_log *own_log; /* the supervisor's lines: LOG_DIR/shmrpc-service.log; NULL: stderr */
    bool changed;     /* something status.json shows changed since it was written */
    bool draining;    /* SIGTERM came: nothing is restarted any more */
    pid_t pid;        /* the supervisor's process, as the page (a process of its own) shows it */
    bool journal;     /* stderr is systemd's journal: lines on stderr get <N> priorities */
} sup_ctx;

/* One of the supervisor's own lines, to ctx->own_log or stderr. */
/* A line's priority, as sd-daemon(3) spells it: a format may begin with one of these
 * (sup_logf(ctx, SUP_ERR "cannot ..."); none is SUP_INFO). The journal gets it as the
 * line's priority (sup_ctx.journal); a log file and plain stderr get the line without it. */
#define SUP_ERR "<3>"
#define SUP_WARNING "<4>"
#define SUP_INFO "<6>"

void sup_logf(const sup_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sup_vlogf(const sup_ctx *ctx, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

const char *sup_state_name(sup_state st);

#endif
