/* SPDX-License-Identifier: MIT */
/* The time series per service (docs/series.md): every series_interval_s the
 * supervisor's loop samples each running service's processes (/proc) and call statistics
 * (shmrpc/stats.h) and appends one JSON line to LOG_DIR/NAME.series, and rewrites
 * LOG_DIR/NAME.methods.json, for the web page. */
#ifndef SHMRPC_SUPERVISOR_SERIES_H
#define SHMRPC_SUPERVISOR_SERIES_H

#include <stddef.h>
#include <stdint.h>

#include <shmrpc/stats.h>

#include "sup_service.h"

/* The worker pids kept per service (for status.json); more are counted, not listed. */
#define SUP_SERIES_MAX_PIDS 256
/* A NAME.series file is rotated at the service's log_max_bytes, or at this with
 * log_max_bytes = none: the series is always bounded. */
#define SUP_SERIES_MAX_BYTES_NONE (10u << 20)

typedef struct sup_series sup_series;

/* The series of the n services at svcs (which must outlive it). NULL when out of memory:
 * every function below takes NULL and does nothing, so the supervisor runs without. */
sup_series *sup_series_new(const sup_service *svcs, size_t n);
void sup_series_free(sup_series *ss);

/* When sup_series_tick has a sample to take; INT64_MAX while no service has a process.
 * Each service is sampled every series_interval_s of its own; one whose process changed
 * takes its first sample (the baseline of the next one's rates) at once. */
int64_t sup_series_next_deadline(const sup_series *ss);

/* Takes the samples that are due at now (monotonic ms): one line per service due. */
void sup_series_tick(sup_series *ss, int64_t now);

/* The workers of service i (svcs[i]) at its last sample: their count (0: no process, or
 * not sampled yet), and in *pids the first SUP_SERIES_MAX_PIDS of them, ascending
 * (*n_pids of them), valid until the next tick. A change of them sets ctx->changed. */
int sup_series_workers(const sup_series *ss, size_t i, const pid_t **pids, int *n_pids);

/* Service i's CPU use over its last interval, in percent of one CPU, and its processes'
 * resident memory at that sample, in bytes (the "cpu" and "rss" of its last NAME.series
 * line); false before its second sample since its process started, and while none runs. */
bool sup_series_usage(const sup_series *ss, size_t i, double *cpu, uint64_t *rss);

/* The p-th fraction (0 to 1) of the calls counted between two snapshots of one histogram,
 * in ns, interpolated within its bucket (shmrpc_stats_quantile on the difference); 0 with
 * no calls between them. A bucket that went down (a new server) counts from 0. */
double sup_series_quantile(const uint64_t cur[SHMRPC_STATS_BUCKETS],
                           const uint64_t prev[SHMRPC_STATS_BUCKETS], double p);

#endif
