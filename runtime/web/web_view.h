/* SPDX-License-Identifier: MIT */
/* What the management page shows, gathered on a civetweb thread without touching the
 * supervisor's state: the control service's status (a call, answered by the main loop),
 * each service's call statistics (shmrpc_stats_read), its processes (/proc) and its last
 * time-series sample (LOG_DIR/NAME.series). Rendered as JSON and as Prometheus text. */
#ifndef SHMRPC_SUPERVISOR_WEB_VIEW_H
#define SHMRPC_SUPERVISOR_WEB_VIEW_H

#include <jansson.h>
#include <stddef.h>

#include <shmrpc/buf.h>

#include "config.h"
#include "web_call.h"

/* The page's own state, shared by its threads; fixed once the server runs but for the
 * pools, which lock themselves. */
typedef struct web_ctx {
    const cfg_file *cfg;
    web_pool control; /* the supervisor's control service */
    web_pool *svc;    /* one per service, in file order: its shm:// or tcp:// address */
    char token[33];   /* what a POST must carry in X-Shmrpc-Token */
    pid_t supervisor; /* the supervisor's process (the page runs in another) */
} web_ctx;

/* The timeout of the page's calls to the control service. */
#define WEB_CONTROL_TIMEOUT_MS 3000

/* The address the supervisor knows service i answers at (shm://SHM_NAME, else
 * tcp://127.0.0.1:TCP_PORT), or "" when neither is known. */
void web_service_address(const cfg_service *s, char *out, size_t cap);

/* GET /api/services: every service and the methods that took the most time. */
int web_view_services(web_ctx *w, shmrpc_buf *out, web_err *e);

/* GET /api/services/NAME: one service (index into the configuration), its methods, its
 * workers' own figures (worker_procs) and the last log_lines lines of its log. */
int web_view_service(web_ctx *w, size_t index, int log_lines, shmrpc_buf *out, web_err *e);

/* Appends root (whose reference it takes) to out as one line of JSON: 0, or -1 with e
 * filled when out of memory. */
int web_dump(json_t *root, shmrpc_buf *out, web_err *e);

/* GET /healthz: whether the supervisor answers the page (its control service's status).
 * 1 when it does, else 0; out gets {"live":true|false}. */
int web_view_live(web_ctx *w, shmrpc_buf *out);

/* GET /readyz: whether every service of the configuration is running and answers its
 * built-in health method with serving. 1 when all are, else 0; out gets {"ready":...,
 * "not_ready":[names]} and nothing more, since anyone may ask (docs/web.md). */
int web_view_ready(web_ctx *w, shmrpc_buf *out);

/* GET /metrics: the Prometheus text exposition format, version 0.0.4. */
int web_view_metrics(web_ctx *w, shmrpc_buf *out, web_err *e);

#endif
