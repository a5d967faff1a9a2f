/* SPDX-License-Identifier: MIT */
/* shmrpc_stats_read (shmrpc/stats.h): a server's statistics segment (stats/stats.h) read
 * and summed by anyone of the same user, found by the server's address. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "stats/stats.h"

/* --- the reader ------------------------------------------------------------------------- */

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
             len > SHMRPC__STATS_NAMES || shmrpc__stats_size(n) > (size_t)sb.st_size)
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
