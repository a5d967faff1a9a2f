/* SPDX-License-Identifier: MIT */
/* The statistics segment of a server as its workers write it (stats.h, docs/stats.md);
 * admin/stats_read.c reads it. */
#include "stats/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

size_t shmrpc__stats_size(uint32_t n_methods)
{
    return sizeof(shmrpc__stats_head) +
           (size_t)SHMRPC__STATS_WORKERS * n_methods * sizeof(shmrpc__stats_row);
}

int shmrpc__stats_path(char *out, size_t cap, const char *scheme, const char *where,
                       bool create, shmrpc_buf *err)
{
    char name[300];
    snprintf(name, sizeof name, "shmrpc.stats.%s.%s", scheme, where);
    for (char *p = name; *p; p++)
        if (*p == '/') *p = '_';
    return shmrpc__ns_path(out, cap, name, create, err);
}

int shmrpc__stats_create(shmrpc__stats *st, const char *scheme, const char *where,
                         const shmrpc_service_info *info, shmrpc_buf *err)
{
    memset(st, 0, sizeof *st);
    const char *env = getenv("SHMRPC_STATS");
    if (env && strcmp(env, "0") == 0) return 0; /* turned off: no segment, no clock reads */
    int rc = shmrpc__stats_path(st->name, sizeof st->name, scheme, where, true, err);
    if (rc != 0) return rc;
    unlink(st->name); /* a stale one of a server that died here: ours now */
    int fd = open(st->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int e = errno;
        shmrpc__msg_set(err, "cannot create %s: %s", st->name, strerror(e));
        return SHMRPC_ESYS(e);
    }
    uint32_t n = info->n_methods < SHMRPC__STATS_METHODS ? info->n_methods : SHMRPC__STATS_METHODS;
    size_t size = shmrpc__stats_size(n);
    void *p = MAP_FAILED;
    if (fchmod(fd, 0600) == 0 && ftruncate(fd, (off_t)size) == 0)
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        unlink(st->name);
        shmrpc__msg_set(err, "cannot size or map %s: %s", st->name, strerror(e));
        return SHMRPC_ESYS(e);
    }
    shmrpc__stats_head *h = p;
    h->version = SHMRPC__STATS_VERSION;
    h->pid = (int32_t)getpid();
    h->n_workers = SHMRPC__STATS_WORKERS;
    snprintf(h->service, sizeof h->service, "%s", info->name);
    size_t used = 0;
    uint32_t named = 0;
    for (; named < n; named++) {
        int k =
            snprintf(h->names + used, sizeof h->names - used, "%s\n", info->methods[named].name);
        if (k < 0 || (size_t)k >= sizeof h->names - used) break; /* the rest go uncounted */
        used += (size_t)k;
    }
    h->n_methods = named;
    h->names_len = (uint32_t)used;
    atomic_store_explicit(&h->magic, SHMRPC__STATS_MAGIC, memory_order_release);
    st->head = h;
    st->size = size;
    st->owner = getpid();
    return 0;
}

void shmrpc__stats_destroy(shmrpc__stats *st)
{
    if (!st->head) return;
    munmap(st->head, st->size);
    if (st->owner == getpid()) unlink(st->name);
    st->head = NULL;
}

shmrpc__stats_row *shmrpc__stats_rows(const shmrpc__stats *st, int worker, uint32_t *n)
{
    if (!st->head || worker < 0 || worker >= (int)SHMRPC__STATS_WORKERS) return NULL;
    *n = st->head->n_methods;
    shmrpc__stats_row *rows = (shmrpc__stats_row *)(st->head + 1);
    return rows + (size_t)worker * st->head->n_methods;
}

/* One writer per row: a load and a store, no locked instruction. */
static void add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static unsigned bucket_of(uint64_t ns)
{
    if (ns < 1024) return 0;
    unsigned b = (unsigned)(63 - __builtin_clzll(ns)) - 9; /* [2^10, 2^11) -> 1 */
    return b < SHMRPC_STATS_BUCKETS ? b : SHMRPC_STATS_BUCKETS - 1;
}

void shmrpc__stats_count(shmrpc__stats_row *row, int rc, uint64_t ns)
{
    add(&row->calls, 1);
    if (rc != 0) add(&row->errors, 1);
    add(&row->total_ns, ns);
    add(&row->buckets[bucket_of(ns)], 1);
}

uint64_t shmrpc_stats_percentile(const shmrpc_method_stats *m, double p)
{
    if (m->calls == 0) return 0;
    if (p < 0) p = 0;
    if (p > 1) p = 1;
    uint64_t want = (uint64_t)(p * (double)m->calls), seen = 0;
    if (want == 0) want = 1;
    for (unsigned b = 0; b < SHMRPC_STATS_BUCKETS; b++) {
        seen += m->buckets[b];
        if (seen >= want) return (uint64_t)1 << (b + 10);
    }
    return (uint64_t)1 << (SHMRPC_STATS_BUCKETS + 9);
}

double shmrpc_stats_quantile(const shmrpc_method_stats *m, double p)
{
    uint64_t total = 0;
    for (unsigned b = 0; b < SHMRPC_STATS_BUCKETS; b++)
        total += m->buckets[b];
    if (total == 0) return 0;
    if (!(p > 0)) p = 0; /* NaN too */
    if (p > 1) p = 1;
    /* The rank among the calls, and the first bucket whose calls reach it: linear within. */
    double rank = p * (double)total, below = 0;
    for (unsigned b = 0; b < SHMRPC_STATS_BUCKETS; b++) {
        double n = (double)m->buckets[b];
        if (n == 0 || below + n < rank) {
            below += n;
            continue;
        }
        double lo = b == 0 ? 0 : (double)((uint64_t)1 << (b + 9));
        if (b == SHMRPC_STATS_BUCKETS - 1) return lo;
        double hi = (double)((uint64_t)1 << (b + 10));
        return lo + (hi - lo) * (rank - below) / n;
    }
    return (double)((uint64_t)1 << (SHMRPC_STATS_BUCKETS + 8)); /* not reached */
}
