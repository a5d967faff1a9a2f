/* SPDX-License-Identifier: MIT */
/* Per-method call statistics of a running server: the workers count their calls in a
 * shared-memory segment that any process of the same user can read without asking the
 * server (a supervisor, shmrpcctl, a web page). docs/stats.md has the layout. */
#ifndef SHMRPC_STATS_H
#define SHMRPC_STATS_H

#include <stdint.h>

#include <shmrpc/decls.h>

SHMRPC_BEGIN_DECLS

/* Latency histogram: bucket 0 holds calls under 1 us (1024 ns); bucket i > 0 those of
 * 2^(i+9) to 2^(i+10) ns; the last bucket everything longer (about 2.2 s and up). */
#define SHMRPC_STATS_BUCKETS 32

typedef struct shmrpc_method_stats {
    const char *name;
    uint64_t calls;    /* answered, successes and failures */
    uint64_t errors;   /* answered with a failure status */
    uint64_t total_ns; /* time in dispatch: decoding, the handler, encoding */
    uint64_t buckets[SHMRPC_STATS_BUCKETS];
} shmrpc_method_stats;

typedef struct shmrpc_stats {
    const char *service;          /* the service's name in its .svc */
    int32_t pid;                  /* the server's manager (or the process serving in place) */
    uint32_t n_methods;           /* the first 1024 of the server's table */
    shmrpc_method_stats *methods; /* summed over the workers, in the server's id order */
} shmrpc_stats;

/* A snapshot of the statistics of the server listening at addr ("shm://NAME" or
 * "tcp://HOST:PORT", spelled as the server spelled it). SHMRPC_EUNAVAIL when no server
 * there keeps any (not running, or inproc://), SHMRPC_EPERM for a segment of another user
 * or readable by others, SHMRPC_EPROTO for a malformed one; shmrpc_errmsg() says which
 * segment (status.h). Free the snapshot with shmrpc_stats_free. */
int shmrpc_stats_read(const char *addr, shmrpc_stats **out);
void shmrpc_stats_free(shmrpc_stats *s);

/* The upper bound in ns of the bucket holding the p-th fraction (0 to 1) of m's calls, or
 * 0 with no calls: a percentile to within a factor of two (but in bucket 0, under 1 us, and
 * in the open-ended last one, for which it is 2^41). */
uint64_t shmrpc_stats_percentile(const shmrpc_method_stats *m, double p);

/* The p-th fraction (0 to 1) of m's calls in ns, estimated as Prometheus'
 * histogram_quantile does: the calls of a bucket are taken as spread evenly over it
 * (bucket 0 from 0 ns), and a quantile in the open-ended last bucket is its lower bound.
 * 0 with no calls. What the management page and the time series show. */
double shmrpc_stats_quantile(const shmrpc_method_stats *m, double p);

SHMRPC_END_DECLS

#endif
