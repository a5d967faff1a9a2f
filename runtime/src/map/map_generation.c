/* SPDX-License-Identifier: MIT */
/* A map's generations: building one, mapping one (checked, and found cut), switching a
 * handle to one, and growing the map into the next (under its lock). */
#include <shmrpc/map.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "map/map_int.h"

/* --- generations --------------------------------------------------------------------- */

uint64_t shmrpc__map_pow2_at_least(uint64_t n)
{
    uint64_t p = 8;
    while (p < n && p < MAX_SLOTS)
        p <<= 1;
    return p;
}

/* The generation an attach maps (seg_open.c): the map, its number, where its checked
 * geometry goes. */
struct gen_want {
    shmrpc_map *m;
    uint64_t gen;
    shmrpc__map_geo *geo;
};

/* Published only once made whole: smaller than a head, it was cut. */
static int check_gen_size(const shmrpc__seg_how *how, const struct stat *st)
{
    const struct gen_want *w = how->arg;
    if (st->st_size >= (off_t)HEAD_SIZE) return 0;
    w->m->cut_gen = w->gen;
    return fail(SHMRPC_ECUT,
                "map '%s' generation file %" PRIu64 " (%s%s) was cut to %lld bytes under its "
                "holders: the map's entries are gone; opening it with create makes it anew",
                how->name, w->gen, SHM_DIR, how->path, (long long)st->st_size);
}

/* Its head, checked: its magic is one of the checks (it has no wait). */
static int check_gen(const shmrpc__seg_how *how, const shmrpc__seg_mapping *s, uint32_t magic)
{
    (void)magic;
    const struct gen_want *w = how->arg;
    shmrpc_map *m = w->m;
    uint64_t size = s->len;
    /* Cut, when the head adds up for the size it says, one that a growth makes (at most
     * max_bytes of entries), and the file is shorter; a head that does not add up is
     * refused below as a scribble. */
    uint64_t said = ((const struct gen_hdr *)s->base)->total;
    char no[8];
    shmrpc__map_geo whole;
    if (said > size && shmrpc__map_validate(s->base, said, &whole, no, sizeof no) == 0 &&
        said <= whole.arena_off + m->max_bytes + 4095) {
        m->cut_gen = w->gen;
        return fail(SHMRPC_ECUT,
                    "map '%s' generation file %" PRIu64 " (%s%s) was cut to %lld bytes under its "
                    "holders (its head says %" PRIu64 "): the map's entries are gone; opening it "
                    "with create makes it anew",
                    m->name, w->gen, SHM_DIR, how->path, (long long)size, said);
    }
    char why[200];
    int rc = shmrpc__map_validate(s->base, size, w->geo, why, sizeof why);
    if (rc == 0 && w->geo->gen != w->gen)
        rc = shmrpc__map_why_fail(SHMRPC_EPROTO, why, sizeof why, "it says it is number %" PRIu64,
                                  w->geo->gen);
    if (rc != 0)
        return fail(rc, "map '%s' generation file %" PRIu64 " (%s%s) refused: %s", m->name, w->gen,
                    SHM_DIR, how->path, why);
    return 0;
}

/* A generation's file, for seg_open.c: made whole before it is published, so an opener
 * does not wait; its arg: a struct gen_want. */
static const shmrpc__seg_ops gen_seg_ops = {.kind = "map",
                                            .wait_ns = 0,
                                            .sys_fail = shmrpc__map_sys_fail,
                                            .check_size = check_gen_size,
                                            .check_header = check_gen};

/* Creates generation gen of nslots and bytes of entries, empty, replacing any file a
 * writer that died while building it left; a map's first (anew) replaces nothing, and a
 * file of its number fails it with SHMRPC_ESYS(EEXIST). Not yet published. */
int shmrpc__map_build_gen(shmrpc_map *m, uint64_t gen, uint64_t epoch, uint64_t nslots,
                          uint64_t bytes, bool anew, uint8_t **out, shmrpc__map_geo *geo)
{
    char path[PATH_CAP];
    shmrpc__map_gen_path(path, m->name, gen);
    uint64_t ring = RING_MIN;
    while (ring < bytes / 256 && ring < RING_MAX)
        ring <<= 1;
    uint64_t arena = gen_arena_off(nslots, ring);
    uint64_t total = (arena + bytes + 4095) & ~UINT64_C(4095);
    shmrpc__seg_how how = {
        .ops = &gen_seg_ops, .path = path, .name = m->name, .perms = m->opts.perms};
    shmrpc__seg_mapping s;
    int rc = SHMRPC_ESYS(EEXIST);
    for (int i = 0; i < OPEN_ATTEMPTS && rc == SHMRPC_ESYS(EEXIST); i++) {
        if (!anew) shm_unlink(path);
        rc = shmrpc__seg_make(&how, total, &s);
        if (anew) break;
    }
    if (rc == SHMRPC_ESYS(EEXIST) && !anew)
        return fail(SHMRPC_EBUSY, "map '%s': generation file %" PRIu64 " keeps being recreated",
                    m->name, gen);
    if (rc != 0) return rc;
    struct gen_hdr *g = s.base;
    g->magic = GEN_MAGIC;
    g->version = MAP_VERSION;
    g->gen = gen;
    g->total = total;
    g->nslots = nslots;
    g->arena_off = arena;
    g->epoch0 = epoch;
    g->ring_cap = ring;
    atomic_store(&g->epoch, epoch);
    atomic_store(&g->used, arena);
    *geo = (shmrpc__map_geo){
        .gen = gen, .total = total, .nslots = nslots, .arena_off = arena, .ring_cap = ring};
    *out = s.base;
    return 0;
}

/* Maps generation gen; SHMRPC_ENOENT when its file is gone (a newer one replaced it). */
int shmrpc__map_map_gen(shmrpc_map *m, uint64_t gen, uint8_t **out, shmrpc__map_geo *geo)
{
    char path[PATH_CAP];
    shmrpc__map_gen_path(path, m->name, gen);
    int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT) return SHMRPC_ENOENT;
        return fail(SHMRPC_ESYS(err), "cannot open map '%s' generation file %" PRIu64 ": %s",
                    m->name, gen, syserr(err));
    }
    struct gen_want w = {.m = m, .gen = gen, .geo = geo};
    shmrpc__seg_how how = {
        .ops = &gen_seg_ops, .path = path, .name = m->name, .perms = m->opts.perms, .arg = &w};
    shmrpc__seg_mapping s;
    int rc = shmrpc__seg_attach(&how, fd, &s);
    close(fd);
    if (rc != 0) return rc;
    *out = s.base;
    return 0;
}

void shmrpc__map_set_gen(shmrpc_map *m, uint8_t *base, const shmrpc__map_geo *geo)
{
    if (m->base) {
        if (atomic_load(m->gen_cut)) m->was_cut = true; /* the guard may be another's next */
        shmrpc__seg_unguard(m->gen_guard);
        munmap(m->base, m->geo.total);
    }
    m->base = base;
    m->geo = *geo;
    m->gen_guard = shmrpc__seg_guard(base, (size_t)geo->total);
    m->gen_cut = shmrpc__seg_guard_flag(m->gen_guard);
}

/* --- growing into the next generation ------------------------------------------------ */

/* The keys of the mapped generation and their bytes, counted from its slots: what a
 * growth copies. Not the header's count and live, which a bad write may have made too
 * low: a new table sized by them would drop keys, or fill, and its probe never end. */
static void count_live(shmrpc_map *m, uint64_t *count, uint64_t *live)
{
    const _Atomic uint64_t *os = slots_of(m->base);
    *count = *live = 0;
    for (uint64_t i = 0; i < m->geo.nslots; i++) {
        uint64_t w = atomic_load_explicit(&os[i], memory_order_relaxed);
        uint32_t k, v;
        if (w == EMPTY || w == TOMB || !shmrpc__map_entry_at(m->base, &m->geo, w, &k, &v)) continue;
        ++*count;
        *live += block_size(k, v);
    }
}

/* Copies the live entries of the mapped generation into a new one large enough for
 * extra more keys of need more bytes, publishes it, and maps it. Under the lock. */
int shmrpc__map_grow(shmrpc_map *m, uint64_t extra_keys, uint64_t need, bool empty)
{
    struct gen_hdr *old = (struct gen_hdr *)m->base;
    struct map_hdr *h = m->hdr;
    if (cut(m)) return shmrpc__map_cut_fail(m); /* nothing to copy, and nothing to publish it in */
    int named = shmrpc__map_header_named(m->name, m->hdr_dev, m->hdr_ino);
    if (named < 0) {
        int err = errno;
        return fail(SHMRPC_ESYS(err), "map '%s': cannot tell whether its name is still its own: %s",
                    m->name, syserr(err));
    }
    if (!named)
        return fail(SHMRPC_ECLOSED,
                    "map '%s' was removed or created anew since this handle opened it, and its "
                    "generations' names are the new map's: close the handle and open it again",
                    m->name);
    uint64_t count = 0, live = 0;
    if (!empty) count_live(m, &count, &live);
    uint64_t want = (count + extra_keys) * LOAD_DEN / LOAD_NUM + 1;
    uint64_t nslots = shmrpc__map_pow2_at_least(empty ? m->init_slots : want * 2);
    if (nslots < m->init_slots) nslots = m->init_slots;
    if (want > nslots)
        return fail(SHMRPC_ETOOBIG, "map '%s' cannot hold %" PRIu64 " keys", m->name,
                    count + extra_keys);
    /* Four times what is live: room for the replaced entries that wait for readers before
     * their space is reused, and for those leaked while readers held it back. */
    uint64_t bytes = empty ? m->init_bytes : (live + need) * 4;
    if (bytes < m->init_bytes) bytes = m->init_bytes;
    if (bytes > m->max_bytes) bytes = m->max_bytes;
    if (live + need > bytes)
        return fail(SHMRPC_ETOOBIG,
                    "map '%s' would need %" PRIu64 " bytes of entries, max_bytes is %" PRIu64,
                    m->name, live + need, m->max_bytes);
    uint64_t gen = m->geo.gen + 1;
    uint8_t *nb;
    shmrpc__map_geo ng;
    /* The epoch goes on: readers still publishing the old generation's epochs are below
     * the new one's first and hold back nothing in it. */
    uint64_t epoch = atomic_load(&old->epoch) + 1;
    int rc = shmrpc__map_build_gen(m, gen, epoch, nslots, bytes, false, &nb, &ng);
    if (rc != 0) return rc;
    struct gen_hdr *g = (struct gen_hdr *)nb;
    _Atomic uint64_t *os = slots_of(m->base), *ns = slots_of(nb);
    uint64_t used = ng.arena_off, n = 0, nlive = 0;
    for (uint64_t i = 0; !empty && i < m->geo.nslots; i++) {
        uint64_t w = atomic_load_explicit(&os[i], memory_order_relaxed);
        if (w == EMPTY || w == TOMB) continue;
        uint32_t k, v;
        const struct entry *e = shmrpc__map_entry_at(m->base, &m->geo, w, &k, &v);
        if (!e) continue; /* a bad write's: not copied */
        uint64_t sz = block_size(k, v);
        /* Counted above, under the lock: more now is a bad write during the copy. */
        if (used + sz > ng.total || n == count) {
            munmap(nb, ng.total);
            shmrpc__map_unlink_gen(m->name, gen);
            return fail(SHMRPC_EPROTO,
                        "map '%s' changed while it grew, under its lock (a bad write?); it "
                        "stays as it was",
                        m->name);
        }
        memcpy(nb + used, e, ENTRY_HEAD + (size_t)k + v);
        uint64_t hh = e->hash, mask = nslots - 1, j = hh & mask;
        while (atomic_load_explicit(&ns[j], memory_order_relaxed) != EMPTY)
            j = (j + 1) & mask;
        atomic_store_explicit(&ns[j], (TAG_OF(hh) << OFF_BITS) | (used >> 3), memory_order_relaxed);
        used += sz;
        nlive += sz;
        n++;
    }
    atomic_store(&g->used, used);
    atomic_store(&g->count, n);
    atomic_store(&g->live, nlive);
    /* The commit: a reader that sees the new number maps a complete generation. A writer
     * killed before it leaves the old generation current and this file to be replaced. */
    atomic_store_explicit(&h->gen, gen, memory_order_release);
    if (!empty) atomic_fetch_add_explicit(&h->growths, 1, memory_order_relaxed);
    uint64_t prev = m->geo.gen;
    shmrpc__map_set_gen(m, nb, &ng);
    /* Not when the map was created anew during the copy (not ours), nor when that is not
     * known (a stat that failed): the file is then left to the map's removal. */
    if (shmrpc__map_still_named(m)) shmrpc__map_unlink_gen(m->name, prev);
    return 0;
}
