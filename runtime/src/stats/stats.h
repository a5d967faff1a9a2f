/* SPDX-License-Identifier: MIT */
/* The statistics segment of a server (docs/stats.md): written by its workers, one row per
 * worker and method so that no two processes write one cache line, read by anyone of the
 * same user through shmrpc_stats_read (shmrpc/stats.h). */
#ifndef SHMRPC_SRC_STATS_H
#define SHMRPC_SRC_STATS_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include <shmrpc/stats.h>

#include "core/core.h"
#include "core/names.h"

#define SHMRPC__STATS_MAGIC 0x53525354u /* "SRST" */
#define SHMRPC__STATS_VERSION 1u
#define SHMRPC__STATS_WORKERS SHMRPC_MAX_WORKERS
#define SHMRPC__STATS_METHODS 1024u
#define SHMRPC__STATS_NAMES 65536u /* "name\n" per method */

typedef struct shmrpc__stats_row {
    _Atomic uint64_t calls, errors, total_ns;
    _Atomic uint64_t buckets[SHMRPC_STATS_BUCKETS];
} shmrpc__stats_row;

/* Written once by the server before it publishes magic (release); then read-only. The rows
 * follow: rows[worker * n_methods + method]. */
typedef struct shmrpc__stats_head {
    _Atomic uint32_t magic;
    uint32_t version;
    int32_t pid;        /* the process that listened */
    uint32_t n_methods; /* rows per worker */
    uint32_t n_workers; /* SHMRPC__STATS_WORKERS */
    uint32_t names_len; /* bytes of names[] in use */
    char service[256];  /* NUL-terminated */
    char names[SHMRPC__STATS_NAMES];
} shmrpc__stats_head;

/* A listener's segment; head NULL when it has none (creating it failed: a server serves
 * without statistics rather than not at all). */
typedef struct shmrpc__stats {
    shmrpc__stats_head *head;
    size_t size;
    pid_t owner; /* the process that created it, which unlinks it */
    char name[SHMRPC__NS_MAX + 300]; /* its path */
} shmrpc__stats;

/* The size of a segment of n_methods rows per worker. */
size_t shmrpc__stats_size(uint32_t n_methods);

/* The segment's path for a server at scheme://where: "shmrpc.stats.SCHEME.WHERE" ('/' made
 * '_') in this user's private directory (names.h), made if create. 0, or a status with why
 * in err. */
int shmrpc__stats_path(char *out, size_t cap, const char *scheme, const char *where,
                       bool create, shmrpc_buf *err);

/* Creates (replacing a stale one) and publishes the segment of a server of info at
 * scheme://where; on failure st->head stays NULL and the message goes to err. */
int shmrpc__stats_create(shmrpc__stats *st, const char *scheme, const char *where,
                         const shmrpc_service_info *info, shmrpc_buf *err);

/* Unmaps; the creating process also unlinks. */
void shmrpc__stats_destroy(shmrpc__stats *st);

/* Worker i's rows (i of 0 to SHMRPC__STATS_WORKERS - 1), and how many, for
 * shmrpc__ctx_set_stats; NULL with no segment. */
shmrpc__stats_row *shmrpc__stats_rows(const shmrpc__stats *st, int worker, uint32_t *n);

/* Counts one call of status rc that took ns, in a row only this process writes. */
void shmrpc__stats_count(shmrpc__stats_row *row, int rc, uint64_t ns);

#endif
