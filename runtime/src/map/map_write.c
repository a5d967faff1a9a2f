/* SPDX-License-Identifier: MIT */
/* A map's writes under its lock "map.NAME": taking it (and repairing what a dead writer
 * left), one slot change through the redo record, put, put_if_absent, cas, remove and
 * clear. */
#include <shmrpc/map.h>

#include <stdatomic.h>
#include <string.h>

#include "map/map_int.h"

/* --- writing ------------------------------------------------------------------------- */

static void bump_changes(struct map_hdr *h)
{
    uint64_t c = atomic_load_explicit(&h->changes, memory_order_relaxed) + 1;
    atomic_store_explicit(&h->changes, c, memory_order_release);
    uint32_t old = atomic_exchange(&h->change.word, (uint32_t)c & ~CHANGE_WAITERS);
    if (old & CHANGE_WAITERS) shmrpc__futex_wake(&h->change, INT32_MAX);
}

/* Moves the line at p, just written, out of this CPU's own caches into the shared one
 * (CLDEMOTE; a no-op where the CPU lacks it, its encoding being a hint NOP), where a reader
 * on another CPU finds it sooner than in this CPU's cache. A get after a put of its key
 * misses twice, on the slot's line and on the new entry's: demoting both took a fifth off
 * what a put costs a reader running beside the writer here (134 to 108 ns). It costs the
 * writer about 100 ns a line when no reader takes the line meanwhile (15.5 M puts per
 * CPU-second to 5.0 M with its reader on its own CPU), so a writer demotes only after a
 * reader of another process made progress during its last batch (m->demote, set by
 * advance from the readers' counts), and only entries of up to 256 bytes. Spelled as
 * bytes, cldemote (%rax), for assemblers that do not know the name. */
static inline void demote(const void *p)
{
#if defined(__x86_64__)
    __asm__ __volatile__(".byte 0x0f, 0x1c, 0x00" ::"a"(p) : "memory");
#else
    (void)p;
#endif
}

/* After the lock came from a dead writer: rolls its recorded write forward (every field
 * absolute), evens the sequence, removes a generation it replaced but left behind. */
static void repair(shmrpc_map *m)
{
    struct map_hdr *h = m->hdr;
    struct gen_hdr *g = (struct gen_hdr *)m->base;
    if (atomic_load_explicit(&h->rec_state, memory_order_acquire) == REC_ACTIVE &&
        h->rec_gen == m->geo.gen) {
        uint64_t slot = h->rec_slot, word = h->rec_word, used = h->rec_used;
        if (slot < m->geo.nslots && used >= m->geo.arena_off && used <= m->geo.total) {
            atomic_store_explicit(&slots_of(m->base)[slot], word, memory_order_release);
            atomic_store(&g->used, used);
            atomic_store(&g->count, h->rec_count);
            atomic_store(&g->tombs, h->rec_tombs);
            atomic_store(&g->live, h->rec_live);
        }
    }
    atomic_store_explicit(&h->rec_state, REC_IDLE, memory_order_release);
    shmrpc__map_forget_space(m);
    uint64_t seq = atomic_load(&g->seq);
    if (seq & 1) atomic_store(&g->seq, seq + 1);
    if (m->geo.gen > m->first && shmrpc__map_still_named(m))
        shmrpc__map_unlink_gen(m->name, m->geo.gen - 1);
    atomic_fetch_add_explicit(&h->repairs, 1, memory_order_relaxed);
    bump_changes(h);
}

/* Whether the mapped generation shows a write that its writer left unfinished: a record
 * active, a sequence odd, or blocks being moved. Only a writer that died (or one that the
 * lock was stolen from) leaves them so: the lock's holder finishes each before it returns. */
static bool left_unfinished(shmrpc_map *m)
{
    return atomic_load_explicit(&m->hdr->rec_state, memory_order_acquire) != REC_IDLE ||
           (atomic_load(&((struct gen_hdr *)m->base)->seq) & 1) ||
           atomic_load_explicit(&space_of(m->base, &m->geo)->moving, memory_order_acquire);
}

/* Takes the lock for a write (unless this thread holds it already) and maps the current
 * generation; repairs after a dead writer. *took says whether to release. A holder of a
 * batch (shmrpc_map_lock) that took the lock from a dead writer learnt so from the lock,
 * not the map: what that writer left unfinished says it here. */
int shmrpc__map_begin_write(shmrpc_map *m, bool *took)
{
    *took = false;
    if (!shmrpc_lock_is_mine(m->lock)) {
        int rc = shmrpc_lock_acquire(m->lock, m->opts.lock_timeout_ms);
        if (rc != 0 && rc != SHMRPC_EOWNERDEAD) return rc; /* the lock said why */
        *took = true;
        int frc = shmrpc__map_follow(m);
        if (frc != 0) {
            shmrpc_lock_release(m->lock);
            return frc;
        }
        /* Unfinished without a death: the lock was stolen from a writer, or its file
         * replaced under it; roll it forward all the same. */
        bool unfinished = left_unfinished(m);
        if (probe_cut(m, false)) { /* zero pages, found by the looks above */
            shmrpc_lock_release(m->lock);
            return shmrpc__map_cut_fail(m);
        }
        if (rc == SHMRPC_EOWNERDEAD || unfinished) repair(m);
        return 0;
    }
    int rc = shmrpc__map_follow(m);
    bool unfinished = rc == 0 && left_unfinished(m);
    if (rc == 0 && probe_cut(m, false)) return shmrpc__map_cut_fail(m);
    if (unfinished) repair(m); /* the lock was stolen from, or handed over by, a dead writer */
    return rc;
}

int shmrpc__map_end_write(shmrpc_map *m, bool took, int rc)
{
    if (took) shmrpc_lock_release(m->lock);
    return rc;
}

/* Applies one slot change through the redo record. */
static void apply(shmrpc_map *m, uint64_t slot, uint64_t word, uint64_t used, uint64_t count,
                  uint64_t tombs, uint64_t live)
{
    struct map_hdr *h = m->hdr;
    struct gen_hdr *g = (struct gen_hdr *)m->base;
    h->rec_gen = m->geo.gen;
    h->rec_slot = slot;
    h->rec_word = word;
    h->rec_used = used;
    h->rec_count = count;
    h->rec_tombs = tombs;
    h->rec_live = live;
    atomic_store_explicit(&h->rec_state, REC_ACTIVE, memory_order_release);
    uint64_t seq = atomic_load_explicit(&g->seq, memory_order_relaxed);
    atomic_store_explicit(&g->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&slots_of(m->base)[slot], word, memory_order_release);
    if (m->demote) demote(&slots_of(m->base)[slot]);
    atomic_store_explicit(&g->used, used, memory_order_relaxed);
    atomic_store_explicit(&g->count, count, memory_order_relaxed);
    atomic_store_explicit(&g->tombs, tombs, memory_order_relaxed);
    atomic_store_explicit(&g->live, live, memory_order_relaxed);
    atomic_store_explicit(&g->seq, seq + 2, memory_order_release);
    atomic_store_explicit(&h->rec_state, REC_IDLE, memory_order_release);
    atomic_fetch_add_explicit(&h->writes, 1, memory_order_relaxed);
    bump_changes(h);
}

enum put_how { PUT_ALWAYS, PUT_IF_ABSENT, PUT_IF_EQUAL };

static int put_locked(shmrpc_map *m, const void *key, size_t klen, uint64_t h, const void *value,
                      size_t vlen, enum put_how how, const void *expected, size_t elen)
{
    uint64_t need = block_size(klen, vlen);
    unsigned cls = size_class(need);
    for (int attempt = 0; attempt < 3; attempt++) {
        struct gen_hdr *g = (struct gen_hdr *)m->base;
        uint64_t at, w = 0, free_at = UINT64_MAX;
        int rc = find(m->base, &m->geo, key, klen, h, &at, &w, &free_at, NULL);
        if (rc == SHMRPC_EPROTO && free_at == UINT64_MAX && at == UINT64_MAX) {
            /* A full table (only a bad write makes one) or a bad entry: rebuild. */
            rc = shmrpc__map_grow(m, 1, need, false);
            if (rc != 0) return rc;
            continue;
        }
        if (rc == SHMRPC_EPROTO)
            return fail(SHMRPC_EPROTO, "map '%s': an entry on the key's way is out of bounds",
                        m->name);
        uint64_t old_size = 0;
        if (rc == 0) {
            uint32_t k, v;
            const struct entry *e = shmrpc__map_entry_at(m->base, &m->geo, w, &k, &v);
            if (!e)
                return fail(SHMRPC_EPROTO, "map '%s': the key's entry is out of bounds", m->name);
            old_size = block_size(k, v);
            if (how == PUT_IF_ABSENT) return fail(SHMRPC_EBUSY, "the key is present");
            if (how == PUT_IF_EQUAL &&
                (v != elen || memcmp((const uint8_t *)(e + 1) + k, expected, elen) != 0))
                return fail(SHMRPC_EBUSY, "the value differs from the expected one");
        } else if (how == PUT_IF_EQUAL) {
            return fail(SHMRPC_ENOENT, "no such key");
        }
        uint64_t used = atomic_load(&g->used), count = atomic_load(&g->count);
        uint64_t tombs = atomic_load(&g->tombs), live = atomic_load(&g->live);
        bool insert = rc != 0;
        bool reuse_tomb = insert && atomic_load_explicit(&slots_of(m->base)[free_at],
                                                         memory_order_relaxed) == TOMB;
        uint64_t filled = count + tombs + (insert && !reuse_tomb);
        bool full = filled * LOAD_DEN > m->geo.nslots * LOAD_NUM;
        /* A freed block of the class if there is one; else fresh space; else free what
         * readers let go of (twice: what was retired in the current epoch too) before
         * growing. */
        /* Fresh space at used, read from the segment: bounded without a sum that a value a
         * bad write left there could wrap (used near 2^64 made base + used point before the
         * mapping, and the writer fault). */
        bool fresh = used >= m->geo.arena_off && used <= m->geo.total &&
                     need <= m->geo.total - used;
        uint64_t off = full ? 0 : shmrpc__map_take_free(m, cls);
        if (!full && !off && !fresh && shmrpc__map_advance_hard(m))
            off = shmrpc__map_take_free(m, cls);
        if (full || (!off && !fresh)) {
            rc = shmrpc__map_grow(m, 1, need, false);
            if (rc != 0) return rc;
            continue;
        }
        uint64_t new_used = off ? used : used + need;
        if (!off) off = used;
        uint8_t *dst = m->base + off;
        struct entry eh = {(uint32_t)klen, (uint32_t)vlen, h};
        memcpy(dst, &eh, ENTRY_HEAD);
        memcpy(dst + ENTRY_HEAD, key, klen);
        if (vlen) memcpy(dst + ENTRY_HEAD + klen, value, vlen);
        if (m->demote && need <= 256) /* a large value's copy costs more than a miss */
            for (uint64_t l = 0; l < need; l += LINE)
                demote(dst + l);
        uint64_t word = (TAG_OF(h) << OFF_BITS) | (off >> 3);
        apply(m, insert ? free_at : at, word, new_used, count + insert, tombs - reuse_tomb,
              live - old_size + need);
        if (!insert) shmrpc__map_retire(m, w);
        return 0;
    }
    return fail(SHMRPC_EPROTO, "map '%s': no room after growing", m->name);
}

static int put_how(shmrpc_map *m, const void *key, size_t klen, const void *value, size_t vlen,
                   enum put_how how, const void *expected, size_t elen)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    int rc = shmrpc__map_check_kv(key, klen, value, vlen);
    if (rc == 0 && how == PUT_IF_EQUAL) rc = shmrpc__map_check_kv(key, klen, expected, elen);
    if (rc != 0) return rc;
    uint64_t h = shmrpc__map_hash_key(key, klen);
    bool took;
    rc = shmrpc__map_begin_write(m, &took);
    if (rc != 0) return rc;
    rc = shmrpc__map_end_write(m, took,
                               put_locked(m, key, klen, h, value, vlen, how, expected, elen));
    return unless_cut(m, rc);
}

int shmrpc_map_put(shmrpc_map *m, const void *key, size_t klen, const void *value, size_t vlen)
{
    return put_how(m, key, klen, value, vlen, PUT_ALWAYS, NULL, 0);
}

int shmrpc_map_put_if_absent(shmrpc_map *m, const void *key, size_t klen, const void *value,
                             size_t vlen)
{
    return put_how(m, key, klen, value, vlen, PUT_IF_ABSENT, NULL, 0);
}

int shmrpc_map_cas(shmrpc_map *m, const void *key, size_t klen, const void *expected, size_t elen,
                   const void *value, size_t vlen)
{
    return put_how(m, key, klen, value, vlen, PUT_IF_EQUAL, expected, elen);
}

static int remove_locked(shmrpc_map *m, const void *key, size_t klen, uint64_t h)
{
    struct gen_hdr *g = (struct gen_hdr *)m->base;
    uint64_t at, w;
    int rc = find(m->base, &m->geo, key, klen, h, &at, &w, NULL, NULL);
    if (rc == SHMRPC_ENOENT) return fail(SHMRPC_ENOENT, "no such key");
    if (rc != 0) return fail(rc, "map '%s': an entry on the key's way is out of bounds", m->name);
    uint32_t k, v;
    if (!shmrpc__map_entry_at(m->base, &m->geo, w, &k, &v))
        return fail(SHMRPC_EPROTO, "map '%s': the key's entry is out of bounds", m->name);
    apply(m, at, TOMB, atomic_load(&g->used), atomic_load(&g->count) - 1,
          atomic_load(&g->tombs) + 1, atomic_load(&g->live) - block_size(k, v));
    shmrpc__map_retire(m, w);
    return 0;
}

int shmrpc_map_remove(shmrpc_map *m, const void *key, size_t klen)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    int rc = shmrpc__map_check_kv(key, klen, NULL, 0);
    if (rc != 0) return rc;
    uint64_t h = shmrpc__map_hash_key(key, klen);
    bool took;
    rc = shmrpc__map_begin_write(m, &took);
    if (rc != 0) return rc;
    return unless_cut(m, shmrpc__map_end_write(m, took, remove_locked(m, key, klen, h)));
}

int shmrpc_map_clear(shmrpc_map *m)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    bool took;
    int rc = shmrpc__map_begin_write(m, &took);
    if (rc != 0) return rc;
    rc = shmrpc__map_grow(m, 0, 0, true);
    if (rc == 0) {
        atomic_fetch_add_explicit(&m->hdr->writes, 1, memory_order_relaxed);
        bump_changes(m->hdr);
    }
    return unless_cut(m, shmrpc__map_end_write(m, took, rc));
}

shmrpc_lock *shmrpc_map_lock(shmrpc_map *m)
{
    return m ? m->lock : NULL;
}
