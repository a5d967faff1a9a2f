/* SPDX-License-Identifier: MIT */
/* A map's generation segment as it is laid out, trusting nothing in it: its validation,
 * the hash of a key, the entry a slot names, a lookup, the full check of slots, entries and
 * free space, and what the admin API reads of a map's header and generation heads
 * (map_seg.h). Calls no other file of the map. */
#include <shmrpc/map.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map/map_int.h"

int shmrpc__map_why_fail(int rc, char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (cap) vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return rc;
}

/* --- hashing ----------------------------------------------------------------------- */

static inline uint64_t mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint64_t load32(const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* A wyhash-style hash: 8 bytes a step, one 128-bit multiply each. The last 1..8 bytes are
 * read as wyhash does, with loads that may overlap bytes already hashed (the length is
 * hashed too): copying them byte by byte into a word and loading that word stalled the
 * load on the bytes' stores, a fifth of a 16 B get in perf. */
uint64_t shmrpc__map_hash_key(const void *key, size_t n)
{
    const uint8_t *p = key;
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ n;
    size_t left = n;
    for (; left > 8; p += 8, left -= 8)
        h = mix(h ^ load64(p), UINT64_C(0xa0761d6478bd642f));
    uint64_t w;
    if (n >= 8)
        w = load64(p + left - 8);
    else if (left >= 4)
        w = load32(p) << 32 | load32(p + left - 4);
    else if (left > 0)
        w = (uint64_t)p[0] << 16 | (uint64_t)p[left >> 1] << 8 | p[left - 1];
    else
        w = 0;
    h = mix(h ^ w ^ ((uint64_t)left << 56), UINT64_C(0xe7037ed1a0b428db));
    return mix(h, UINT64_C(0x8ebc6af09c88c6e3));
}

/* --- reading a generation (trusting nothing in it) ---------------------------------- */

int shmrpc__map_validate(const void *seg, uint64_t size, shmrpc__map_geo *geo, char *why,
                         size_t cap)
{
    if (size < HEAD_SIZE)
        return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                    "segment of %" PRIu64 " bytes, less than a header", size);
    const struct gen_hdr *g = seg;
    uint32_t magic = g->magic, version = g->version;
    uint64_t total = g->total, nslots = g->nslots, arena = g->arena_off;
    if (magic != GEN_MAGIC)
        return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap, "not a map generation (magic 0x%08x)",
                                    magic);
    if (version != MAP_VERSION)
        return shmrpc__map_why_fail(SHMRPC_EVERSION, why, cap, "layout version %u, this library %u",
                                    version, MAP_VERSION);
    if (total != size)
        return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                    "header says %" PRIu64 " bytes, segment has %" PRIu64, total,
                                    size);
    if (nslots < 8 || nslots > MAX_SLOTS || (nslots & (nslots - 1)))
        return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                    "slot count %" PRIu64 " is not a power of two in [8, 2^31]",
                                    nslots);
    uint64_t ring = g->ring_cap;
    if (ring < RING_MIN || ring > RING_MAX || (ring & (ring - 1)))
        return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                    "ring of %" PRIu64 " is not a power of two in [2^11, 2^24]",
                                    ring);
    if (arena != gen_arena_off(nslots, ring) || arena > total || (total >> 3) > OFF_MASK)
        return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                    "entries at %" PRIu64 " do not follow %" PRIu64
                                    " slots in %" PRIu64 " bytes",
                                    arena, nslots, total);
    *geo = (shmrpc__map_geo){
        .gen = g->gen, .total = total, .nslots = nslots, .arena_off = arena, .ring_cap = ring};
    return 0;
}

/* The entry a slot word points to, checked: its offset, klen and vlen (read once) lie
 * inside the segment. NULL when they do not. */
const struct entry *shmrpc__map_entry_at(const void *seg, const shmrpc__map_geo *geo, uint64_t word,
                                         uint32_t *klen, uint32_t *vlen)
{
    uint64_t off = (word & OFF_MASK) << 3;
    if (off < geo->arena_off || off > geo->total - ENTRY_HEAD) return NULL;
    const struct entry *e = (const struct entry *)((const uint8_t *)seg + off);
    uint32_t k = e->klen, v = e->vlen;
    if (k > SHMRPC_MAP_KEY_MAX || v > SHMRPC_MAP_VALUE_MAX) return NULL;
    if ((uint64_t)k + v > geo->total - off - ENTRY_HEAD) return NULL;
    *klen = k;
    *vlen = v;
    return e;
}

int shmrpc__map_lookup(const void *seg, const shmrpc__map_geo *geo, const void *key, size_t klen,
                       const void **value, size_t *vlen)
{
    uint64_t at, w;
    int rc = find(seg, geo, key, klen, shmrpc__map_hash_key(key, klen), &at, &w, NULL, NULL);
    if (rc != 0) return rc;
    uint32_t k, v;
    const struct entry *e = shmrpc__map_entry_at(seg, geo, w, &k, &v);
    if (!e) return SHMRPC_EPROTO;
    *value = (const uint8_t *)(e + 1) + k;
    *vlen = v;
    return 0;
}

/* A block of the entry space, for the overlap check. */
struct span {
    uint64_t off, len;
};

static int by_off(const void *a, const void *b)
{
    uint64_t x = ((const struct span *)a)->off, y = ((const struct span *)b)->off;
    return x < y ? -1 : x > y;
}

/* The free lists and the ring of retired entries against the live entries: every block in
 * them lies in the written space, and no two blocks overlap (a block handed out twice, or
 * freed while a slot points to it, would). */
static int check_space(const void *seg, const shmrpc__map_geo *geo, uint64_t used, char *why,
                       size_t cap)
{
    const struct gen_space *sp = space_of(seg, geo);
    uint64_t head = sp->head, tail = sp->tail, mark = sp->mark;
    if (tail > mark || mark > head || head - tail > geo->ring_cap)
        return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                    "retired ring out of order (tail %" PRIu64 ", mark %" PRIu64
                                    ", head %" PRIu64 ")",
                                    tail, mark, head);
    /* Every block is at least 16 bytes: a list longer than the space can hold loops. */
    uint64_t most = (used - geo->arena_off) / 16 + 1, n = 0;
    struct span *v = malloc((size_t)(2 * most + geo->ring_cap) * sizeof *v);
    if (!v) return 0; /* nothing to check with: not a finding */
    _Atomic uint64_t *slots = slots_of(seg);
    for (uint64_t i = 0; i < geo->nslots && n < most; i++) {
        uint64_t w = atomic_load_explicit(&slots[i], memory_order_acquire);
        uint32_t k, vl;
        if (w == EMPTY || w == TOMB || !shmrpc__map_entry_at(seg, geo, w, &k, &vl)) continue;
        v[n++] = (struct span){(w & OFF_MASK) << 3, block_size(k, vl)};
    }
    int rc = 0;
    for (unsigned c = 0; c < NCLASSES && rc == 0; c++) {
        uint64_t bs = class_size(c), steps = 0;
        for (uint64_t off = sp->free_head[c]; off && rc == 0; steps++) {
            if (!block_ok(geo, used, off, bs) || steps >= most || n >= 2 * most)
                rc = shmrpc__map_why_fail(
                    SHMRPC_EPROTO, why, cap,
                    "free list %u: block at %" PRIu64 " out of bounds or a loop", c, off);
            else {
                v[n++] = (struct span){off, bs};
                memcpy(&off, (const uint8_t *)seg + off, 8);
            }
        }
    }
    for (uint64_t i = tail; i != head && rc == 0; i++) {
        uint64_t x = sp->ring[i % geo->ring_cap], off = (x & OFF_MASK) << 3;
        unsigned c = (unsigned)(x >> OFF_BITS);
        if (c >= NCLASSES || !block_ok(geo, used, off, class_size(c)))
            rc = shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                      "retired block at %" PRIu64 " out of bounds", off);
        else
            v[n++] = (struct span){off, class_size(c)};
    }
    if (rc == 0) qsort(v, (size_t)n, sizeof *v, by_off);
    for (uint64_t i = 1; i < n && rc == 0; i++)
        if (v[i - 1].off + v[i - 1].len > v[i].off)
            rc = shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                      "blocks at %" PRIu64 " and %" PRIu64
                                      " overlap (space handed out twice)",
                                      v[i - 1].off, v[i].off);
    free(v);
    return rc;
}

int shmrpc__map_check_seg(const void *seg, const shmrpc__map_geo *geo, char *why, size_t cap)
{
    const struct gen_hdr *g = seg;
    _Atomic uint64_t *slots = slots_of(seg);
    uint64_t count = 0, tombs = 0, live = 0, used = atomic_load(&g->used);
    if (used < geo->arena_off || used > geo->total)
        return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                    "used end %" PRIu64 " outside the entries", used);
    for (uint64_t i = 0; i < geo->nslots; i++) {
        uint64_t w = atomic_load_explicit(&slots[i], memory_order_acquire);
        if (w == EMPTY) continue;
        if (w == TOMB) {
            tombs++;
            continue;
        }
        uint32_t k, v;
        const struct entry *e = shmrpc__map_entry_at(seg, geo, w, &k, &v);
        if (!e)
            return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                        "slot %" PRIu64 " points outside the segment", i);
        uint64_t off = (uint64_t)((const uint8_t *)e - (const uint8_t *)seg);
        if (off + block_size(k, v) > used)
            return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                        "slot %" PRIu64 " points past the used end %" PRIu64, i,
                                        used);
        uint64_t h = shmrpc__map_hash_key(e + 1, k);
        if (h != e->hash || TAG_OF(h) != (w >> OFF_BITS))
            return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                        "slot %" PRIu64 ": entry's hash is wrong", i);
        uint64_t at, w2;
        if (find(seg, geo, e + 1, k, h, &at, &w2, NULL, NULL) != 0 || at != i)
            return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                        "slot %" PRIu64 ": key unreachable or present twice", i);
        count++;
        live += block_size(k, v);
    }
    uint64_t hc = atomic_load(&g->count), ht = atomic_load(&g->tombs), hl = atomic_load(&g->live);
    if (hc != count || ht != tombs || hl != live)
        return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                    "header counts %" PRIu64 " keys, %" PRIu64
                                    " tombstones, %" PRIu64 " live bytes; slots hold %" PRIu64
                                    ", %" PRIu64 ", %" PRIu64,
                                    hc, ht, hl, count, tombs, live);
    if (atomic_load(&g->seq) & 1)
        return shmrpc__map_why_fail(SHMRPC_EPROTO, why, cap,
                                    "a write is half applied (odd sequence)");
    return check_space(seg, geo, used, why, cap);
}

/* --- for the admin API (map_seg.h) ----------------------------------------------------- */

_Static_assert(HDR_SIZE == SHMRPC__MAP_HDR_SIZE && HEAD_SIZE == SHMRPC__MAP_GEN_HEAD, "layout");

void shmrpc__map_read_head(const void *hdr, shmrpc__map_head *out)
{
    const struct map_hdr *h = hdr;
    memset(out, 0, sizeof *out);
    out->magic = atomic_load_explicit(&h->magic, memory_order_acquire);
    out->version = h->version;
    out->ours = out->magic == HDR_MAGIC && out->version == MAP_VERSION && h->size == HDR_SIZE;
    uint32_t pid = h->creator;
    out->creator = pid <= INT32_MAX ? (int32_t)pid : 0;
    if (!out->ours) return;
    out->gen = atomic_load_explicit(&h->gen, memory_order_acquire);
    out->first = h->first ? h->first : 1;
    out->changes = atomic_load_explicit(&h->changes, memory_order_relaxed);
    out->writes = atomic_load_explicit(&h->writes, memory_order_relaxed);
    out->growths = atomic_load_explicit(&h->growths, memory_order_relaxed);
    out->repairs = atomic_load_explicit(&h->repairs, memory_order_relaxed);
    out->reads = atomic_load_explicit(&h->reads_gone, memory_order_relaxed);
    for (int i = 0; i < MAP_READERS; i++)
        if (atomic_load_explicit(&h->readers[i].owner, memory_order_relaxed))
            out->reads += atomic_load_explicit(&h->readers[i].reads, memory_order_relaxed);
}

int shmrpc__map_read_gen(const void *head, uint64_t size, shmrpc_map_info *info, char *why,
                         size_t cap)
{
    shmrpc__map_geo geo;
    const struct gen_hdr *g = head;
    uint64_t said = g->total;
    char no[8];
    if (said > size && shmrpc__map_validate(head, said, &geo, no, sizeof no) == 0) {
        snprintf(why, cap, "cut to %" PRIu64 " bytes under its holders (its head says %" PRIu64 ")",
                 size, said);
        return SHMRPC_ECUT;
    }
    int rc = shmrpc__map_validate(head, size, &geo, why, cap); /* reads the head alone */
    if (rc != 0) return rc;
    uint64_t used = atomic_load_explicit(&g->used, memory_order_relaxed);
    info->generation = geo.gen;
    info->count = atomic_load_explicit(&g->count, memory_order_relaxed);
    info->slots = geo.nslots;
    info->tombstones = atomic_load_explicit(&g->tombs, memory_order_relaxed);
    info->bytes = geo.total - geo.arena_off;
    info->used = used > geo.arena_off && used <= geo.total ? used - geo.arena_off : 0;
    info->live = atomic_load_explicit(&g->live, memory_order_relaxed);
    return 0;
}
