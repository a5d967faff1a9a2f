/* SPDX-License-Identifier: MIT */
/* The files the supervisor writes for a service, read for the service page from their
 * ends (they grow for hours between rotations, so never whole): LOG_DIR/NAME.series as
 * columns for the charts, and LOG_DIR/NAME.log as a tail that follows new lines. */
#ifndef SHMRPC_SUPERVISOR_WEB_FILES_H
#define SHMRPC_SUPERVISOR_WEB_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/buf.h>

#include "config.h"
#include "web_call.h"

/* Samples per answer of GET .../series: unless ?max= says, and at most. */
#define WEB_SERIES_DEFAULT 900
#define WEB_SERIES_MAX 3600

/* Bytes of lines per answer of GET .../log: unless ?max_bytes= says, and at most. */
#define WEB_LOG_DEFAULT_BYTES ((size_t)64 << 10)
#define WEB_LOG_MAX_BYTES ((size_t)1 << 20)
/* Lines of the log's tail: without ?after=, and after a rotation. */
#define WEB_LOG_TAIL_LINES 100

/* Windows of ?step= in seconds: a day in windows of a minute and a half is 900 points. */
#define WEB_SERIES_STEP_MAX 3600

/* What GET /api/services/NAME/series asked for. */
typedef struct web_series_req {
    int64_t since;   /* samples whose t is above this (ms since 1970) */
    int max;         /* samples, or windows, in the answer: the newest (1..WEB_SERIES_MAX) */
    int64_t step_ms; /* 0: each sample; else each window of this many ms (t / step_ms) as
                      * one sample, its fields summed as docs/web.md says */
} web_series_req;

/* GET /api/services/NAME/series: the samples of s's NAME.series (then NAME.series.1) that
 * q asks for, oldest first, as one JSON array per field. A missing file is no samples. */
int web_series(const cfg_service *s, const web_series_req *q, shmrpc_buf *out, web_err *e);

/* What GET /api/services/NAME/log asked for. */
typedef struct web_log_req {
    bool follow;      /* ?after= was given: lines from after on; else the tail */
    int64_t after;    /* the offset the client has read to */
    uint64_t inode;   /* the file the client read (?inode=); 0: not said */
    size_t max_bytes; /* of line text per answer, 1..WEB_LOG_MAX_BYTES */
} web_log_req;

/* GET /api/services/NAME/log: {"offset", "inode", "lines", "reset"} of s's NAME.log,
 * "inode" as a string of decimal digits. */
int web_log(const cfg_service *s, const web_log_req *q, shmrpc_buf *out, web_err *e);

#endif
