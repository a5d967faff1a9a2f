/* SPDX-License-Identifier: MIT */
/* What a handle tells of its map: its change counter and the wait for a change, its
 * figures (shmrpc_map_get_info), their print, and the full check. */
#include <shmrpc/map.h>

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "map/map_int.h"

/* --- changes ------------------------------------------------------------------------- */

/* The check of shmrpc_map_wait's sleep. */
static int wait_check(void *arg)
{
    return probe_cut(arg, true) ? SHMRPC_ECUT : 0;
}

int shmrpc_map_changes(shmrpc_map *m, uint64_t *count)
{
    if (!m || !count) return fail(SHMRPC_EINVAL, m ? "no place for the count" : "no map");
    *count = atomic_load_explicit(&m->hdr->changes, memory_order_acquire);
    return unless_cut(m, 0);
}

int shmrpc_map_wait(shmrpc_map *m, uint64_t since, uint64_t *now, int64_t timeout_ms)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    if (timeout_ms < 0 && timeout_ms != SHMRPC_MAP_WAIT_FOREVER)
        return fail(SHMRPC_EINVAL, "negative timeout %" PRId64 " ms", timeout_ms);
    shmrpc__map_unpin(m); /* a view held would keep writers from reusing space while this sleeps */
    struct map_hdr *h = m->hdr;
    int64_t deadline = timeout_ms < 0 || timeout_ms > INT64_MAX / 2000000
                           ? INT64_MAX
                           : shmrpc__now_ns() + timeout_ms * 1000000;
    const shmrpc__waiter waiter = {.opts = &m->opts.wait,
                                   .flag = CHANGE_WAITERS,
                                   .check_ns = m->opts.wait.sleep_ns,
                                   .check = wait_check,
                                   .check_arg = m};
    for (;;) {
        uint32_t word = atomic_load_explicit(&h->change.word, memory_order_acquire);
        uint64_t c = atomic_load_explicit(&h->changes, memory_order_acquire);
        if (cut(m)) return shmrpc__map_cut_fail(m); /* zero pages: no change will ever come */
        if (c != since) {
            if (now) *now = c;
            return 0;
        }
        if (shmrpc__now_ns() >= deadline)
            return fail(SHMRPC_ETIMEDOUT, "map '%s' did not change within %" PRId64 " ms", m->name,
                        timeout_ms);
        int rc = shmrpc__wait_while(&h->change, word, deadline, &waiter);
        if (rc == SHMRPC_ECUT) return shmrpc__map_cut_fail(m);
        if (rc != 0 && rc != SHMRPC_ETIMEDOUT) return fail(rc, "waiting for a change failed");
    }
}

/* --- info, status, check ------------------------------------------------------------- */

int shmrpc_map_get_info(shmrpc_map *m, shmrpc_map_info *out)
{
    if (!m || !out) return fail(SHMRPC_EINVAL, m ? "no place for the info" : "no map");
    int rc = shmrpc__map_sync_gen(m);
    if (rc != 0) return rc;
    const struct gen_hdr *g = (const struct gen_hdr *)m->base;
    const struct map_hdr *h = m->hdr;
    memset(out, 0, sizeof *out);
    if (probe_cut(m, false)) return shmrpc__map_cut_fail(m);
    out->generation = shmrpc__map_shown_gen(m->geo.gen, m->first);
    out->count = atomic_load(&g->count);
    out->slots = m->geo.nslots;
    out->tombstones = atomic_load(&g->tombs);
    out->bytes = m->geo.total - m->geo.arena_off;
    out->used = atomic_load(&g->used) - m->geo.arena_off;
    out->live = atomic_load(&g->live);
    out->changes = atomic_load(&h->changes);
    out->writes = atomic_load(&h->writes);
    out->growths = atomic_load(&h->growths);
    out->repairs = atomic_load(&h->repairs);
    shmrpc_lock_stats ls;
    if (shmrpc_lock_get_stats(m->lock, &ls) == 0) out->lock_waits = ls.contended;
    out->creator = (pid_t)h->creator;
    out->reads = atomic_load_explicit(&h->reads_gone, memory_order_relaxed) + m->unprot_reads;
    for (int i = 0; i < MAP_READERS; i++)
        if (atomic_load_explicit(&h->readers[i].owner, memory_order_relaxed))
            out->reads += atomic_load_explicit(&h->readers[i].reads, memory_order_relaxed);
    out->type = m->type;
    return 0;
}

int shmrpc_map_print_status(shmrpc_map *m, FILE *f)
{
    shmrpc_map_info i;
    int rc = shmrpc_map_get_info(m, &i);
    if (rc != 0) return rc;
    if (!f) return fail(SHMRPC_EINVAL, "no file");
    fprintf(f,
            "map: %s\ngeneration: %" PRIu64 "\nkeys: %" PRIu64 "\nslots: %" PRIu64
            "\ntombstones: %" PRIu64 "\nbytes: %" PRIu64 "\nused: %" PRIu64 "\nlive: %" PRIu64
            "\nchanges: %" PRIu64 "\nwrites: %" PRIu64 "\ngrowths: %" PRIu64 "\nrepairs: %" PRIu64
            "\nlock_waits: %" PRIu64 "\nreads: %" PRIu64 "\ncreator: %d\n",
            m->name, i.generation, i.count, i.slots, i.tombstones, i.bytes, i.used, i.live,
            i.changes, i.writes, i.growths, i.repairs, i.lock_waits, i.reads, (int)i.creator);
    return 0;
}

int shmrpc_map_check(shmrpc_map *m)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    int rc = shmrpc__map_sync_gen(m);
    if (rc != 0) return rc;
    char why[256];
    rc = shmrpc__map_check_seg(m->base, &m->geo, why, sizeof why);
    if (cut(m)) return shmrpc__map_cut_fail(m);
    if (rc != 0)
        return fail(rc, "map '%s' generation %" PRIu64 ": %s", m->name,
                    shmrpc__map_shown_gen(m->geo.gen, m->first), why);
    return 0;
}
