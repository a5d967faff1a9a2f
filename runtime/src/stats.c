/* SPDX-License-Identifier: MIT */
/* The statistics segment of a server (stats.h, docs/stats.md), and its reader. */
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static size_t segment_size(uint32_t n_methods)
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
    size_t size = segment_size(n);
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

/* --- reading ------------------------------------------------------------------------- */

static int read_error(shmrpc_buf *err, int rc, const char *fmt, const char *name)
{
    shmrpc__msg_set(err, fmt, name);
    return rc;
}

/* Sums the rows of a mapped, checked segment into a new snapshot. */
static int snapshot(const shmrpc__stats_head *h, shmrpc_stats **out)
{
    uint32_t n = h->n_methods, len = h->names_len;
    size_t bytes = sizeof(shmrpc_stats) + n * sizeof(shmrpc_method_stats) + len + 1 + 256;
    shmrpc_stats *s = calloc(1, bytes);
    if (!s) return SHMRPC_ENOMEM;
    s->methods = (shmrpc_method_stats *)(s + 1);
    char *names = (char *)(s->methods + n), *service = names + len + 1;
    memcpy(names, h->names, len);
    names[len] = '\0';
    memcpy(service, h->service, 255);
    service[255] = '\0';
    s->service = service;
    s->pid = h->pid;
    char *p = names;
    for (uint32_t i = 0; i < n; i++) {
        char *nl = p ? strchr(p, '\n') : NULL;
        if (nl) *nl = '\0';
        s->methods[i].name = p ? p : "?";
        p = nl ? nl + 1 : NULL;
    }
    const shmrpc__stats_row *rows = (const shmrpc__stats_row *)(h + 1);
    for (uint32_t w = 0; w < SHMRPC__STATS_WORKERS; w++) {
        for (uint32_t i = 0; i < n; i++) {
            const shmrpc__stats_row *r = &rows[(size_t)w * n + i];
            shmrpc_method_stats *m = &s->methods[i];
            m->calls += atomic_load_explicit(&r->calls, memory_order_relaxed);
            m->errors += atomic_load_explicit(&r->errors, memory_order_relaxed);
            m->total_ns += atomic_load_explicit(&r->total_ns, memory_order_relaxed);
            for (unsigned b = 0; b < SHMRPC_STATS_BUCKETS; b++)
                m->buckets[b] += atomic_load_explicit(&r->buckets[b], memory_order_relaxed);
        }
    }
    s->n_methods = n;
    *out = s;
    return 0;
}

static int read_stats(const char *addr, shmrpc_stats **out, shmrpc_buf *err)
{
    const shmrpc__transport *t;
    const char *where;
    int rc = shmrpc__transport_for(addr, &t, &where, err);
    if (rc) return rc;
    char name[SHMRPC__NS_MAX + 300];
    rc = shmrpc__stats_path(name, sizeof name, t->scheme, where, false, err);
    if (rc) return rc;
    int fd = open(name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return read_error(err, SHMRPC_EUNAVAIL, "no statistics at %s: no server keeps any there",
                          addr);
    struct stat sb;
    void *p = MAP_FAILED;
    if (fstat(fd, &sb) != 0) {
        rc = read_error(err, SHMRPC_ESYS(errno), "cannot stat %s", name);
    } else if (sb.st_uid != geteuid() || (sb.st_mode & 077)) {
        rc =
            read_error(err, SHMRPC_EPERM, "%s belongs to another user or others may read it", name);
    } else if ((size_t)sb.st_size < sizeof(shmrpc__stats_head)) {
        rc = read_error(err, SHMRPC_EUNAVAIL, "%s is not ready yet", name);
    } else {
        p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) rc = read_error(err, SHMRPC_ESYS(errno), "cannot map %s", name);
    }
    close(fd);
    if (rc) return rc;
    const shmrpc__stats_head *h = p;
    /* Nothing in it is trusted: every size is checked against the mapping. */
    uint32_t magic = atomic_load_explicit(&h->magic, memory_order_acquire);
    uint32_t n = h->n_methods, len = h->names_len;
    if (magic == 0)
        rc = read_error(err, SHMRPC_EUNAVAIL, "%s is not ready yet", name);
    else if (magic != SHMRPC__STATS_MAGIC || h->version != SHMRPC__STATS_VERSION ||
             h->n_workers != SHMRPC__STATS_WORKERS || n > SHMRPC__STATS_METHODS ||
             len > SHMRPC__STATS_NAMES || segment_size(n) > (size_t)sb.st_size)
        rc = read_error(err, SHMRPC_EPROTO, "%s is not a statistics segment of this version", name);
    else
        rc = snapshot(h, out);
    munmap(p, (size_t)sb.st_size);
    return rc;
}

void shmrpc_stats_free(shmrpc_stats *s)
{
    free(s);
}

int shmrpc_stats_read(const char *addr, shmrpc_stats **out)
{
    shmrpc_buf *err = shmrpc__err_begin();
    if (!out) return shmrpc__err_end(shmrpc__err_set(SHMRPC_EINVAL, "out is NULL"));
    return shmrpc__err_end(read_stats(addr, out, err));
}
