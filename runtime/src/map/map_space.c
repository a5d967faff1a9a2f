/* SPDX-License-Identifier: MIT */
/* Reusing a generation's space (writers, under the lock): the ring of replaced entries,
 * the epoch that frees them once no reader can read them, and the free lists by size
 * class. */
#include <shmrpc/map.h>

#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "map/map_int.h"

/* Retired entries between two tries to advance the epoch, at most (a quarter of the ring
 * in small maps). Each try reads every reader slot and, with readers that make no fence,
 * makes membarrier interrupt every CPU that runs one: 10 to 15 us of a reader's time
 * here (a VM), which at 256 was a fifth of what a put cost a reader beside it. */
#define BATCH 1024
/* How long a writer short of space waits for readers to let go of retired entries before
 * it grows the map or leaks them. */
#define HARD_WAIT_NS ((int64_t)2 * 1000 * 1000)
#define HARD_TRIES 8
#define HARD_LIVE (UINT64_C(1) << 20)

/* --- reusing space (writers, under the lock) ------------------------------------------ */

/* Forgets every free and retired block of the mapped generation: after a writer died in
 * the middle of moving them, or when a bad write made them senseless. The blocks stay
 * unused until the next growth copies the live entries; none is handed out twice. */
void shmrpc__map_forget_space(shmrpc_map *m)
{
    struct gen_space *sp = space_of(m->base, &m->geo);
    memset(sp->free_head, 0, sizeof sp->free_head);
    sp->head = sp->tail = sp->mark = sp->since = sp->since_bytes = 0;
    atomic_store_explicit(&sp->moving, 0, memory_order_release);
}

/* Whether the block at off (the low OFF_BITS of a slot word or ring entry) is one of the
 * n hazards. */
static inline bool hazarded(const uint64_t *hz, int n, uint64_t off)
{
    for (int i = 0; i < n; i++)
        if (hz[i] == off) return true;
    return false;
}

/* Frees what no reader can still read, and advances the epoch. Gets protect the one entry
 * they read with a hazard, which keeps that entry on the ring; snapshots publish an epoch:
 * when one of them holds an older epoch of this generation, nothing is freed; when one
 * holds the current epoch, what was retired before it ([tail, mark) of the ring) is;
 * when none is in progress, everything retired is. check_dead: also free the slots of
 * readers found dead that hold an old epoch (a /proc read each). */
static bool advance(shmrpc_map *m, bool check_dead)
{
    struct gen_hdr *g = (struct gen_hdr *)m->base;
    struct gen_space *sp = space_of(m->base, &m->geo);
    struct map_hdr *h = m->hdr;
    sp->since = sp->since_bytes = 0;
    /* The slot words this writer stored are visible before it reads the readers' epochs
     * and hazards: a reader either published its epoch or hazard in time to be seen here,
     * or sees the new words. Readers without a fence of their own get it from membarrier,
     * on every CPU that runs one (the asymmetric fence of liburcu's memb flavour); if it
     * fails, no reuse. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&h->no_fence, memory_order_relaxed) && shmrpc__membarrier_all() != 0)
        return false;
    if (atomic_load_explicit(&sp->unprot, memory_order_relaxed) != 0) return false;
    uint64_t epoch = atomic_load_explicit(&g->epoch, memory_order_relaxed), e0 = g->epoch0;
    uint64_t hz[MAP_READERS];
    int nhz = 0;
    bool current = false; /* a snapshot at the current epoch */
    uint64_t me = (uint64_t)shmrpc__self_pid();
    m->demote = false; /* until a reader of another process is seen reading */
    for (int i = 0; i < MAP_READERS; i++) {
        struct map_reader *r = &h->readers[i];
        /* A free slot's epoch and hazard may be a dead owner's: its claimer clears them
         * before it reads. */
        uint64_t o = atomic_load_explicit(&r->owner, memory_order_relaxed);
        if (o == 0) continue;
        uint64_t n = atomic_load_explicit(&r->reads, memory_order_relaxed);
        if (o != me && n != m->seen_reads[i]) m->demote = true;
        m->seen_reads[i] = n;
        uint64_t e = atomic_load_explicit(&r->epoch, memory_order_relaxed);
        uint64_t x = atomic_load_explicit(&r->hazard, memory_order_relaxed);
        if (x > TOMB) hz[nhz++] = x & OFF_MASK;
        if (e == 0 || e < e0) continue;
        if (e >= epoch) {
            current = true;
            continue;
        }
        uint64_t start;
        if (check_dead && shmrpc__map_owner_dead(r, o, &start) &&
            shmrpc__map_free_dead_slot(h, r, o, start))
            continue;
        return false;
    }
    /* What those readers read was done before they stored 0 or the new epoch or hazard
     * (release). */
    atomic_thread_fence(memory_order_acquire);
    uint64_t used = atomic_load_explicit(&g->used, memory_order_relaxed);
    uint64_t cap = m->geo.ring_cap;
    if (sp->tail > sp->mark || sp->mark > sp->head || sp->head - sp->tail > cap) {
        shmrpc__map_forget_space(m); /* a bad write */
    } else {
        /* Frees [tail, end) but the hazards' entries, which move to its end (read from the
         * end down, each written at or above where it was read), and stay retired. */
        atomic_store_explicit(&sp->moving, 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_release); /* before the first block moves */
        uint64_t end = current ? sp->mark : sp->head, keep = end;
        for (uint64_t i = end; i-- != sp->tail;) {
            uint64_t x = sp->ring[i % cap], off = (x & OFF_MASK) << 3;
            unsigned c = (unsigned)(x >> OFF_BITS);
            if (c >= NCLASSES || !block_ok(&m->geo, used, off, class_size(c))) continue;
            if (nhz && hazarded(hz, nhz, x & OFF_MASK)) {
                sp->ring[--keep % cap] = x;
                continue;
            }
            memcpy(m->base + off, &sp->free_head[c], 8);
            sp->free_head[c] = off;
        }
        sp->tail = keep;
        sp->mark = sp->head;
        atomic_store_explicit(&sp->moving, 0, memory_order_release);
    }
    atomic_store_explicit(&g->epoch, epoch + 1, memory_order_release);
    return true;
}

/* Frees everything retired so far (two advances) when readers let go of it within
 * HARD_WAIT_NS and HARD_TRIES, yielding the CPU meanwhile: a reader that holds an old epoch
 * is a snapshot, most often one preempted, which a yield lets finish, and the growth or
 * leak that not waiting means costs more. Dead readers are looked for once. */
bool shmrpc__map_advance_hard(shmrpc_map *m)
{
    /* Below HARD_LIVE live bytes, a growth copies less than a wait costs: no yield. */
    bool wait = atomic_load(&((struct gen_hdr *)m->base)->live) >= HARD_LIVE;
    int64_t until = shmrpc__now_ns() + HARD_WAIT_NS;
    for (int done = 0, i = 0;; i++) {
        if (advance(m, i == 0)) {
            if (++done == 2) return true;
            continue;
        }
        /* At least HARD_TRIES yields: on a busy machine one may take longer than the wait. */
        if (!wait || (i >= HARD_TRIES && shmrpc__now_ns() >= until)) return false;
        sched_yield();
    }
}

/* Puts the entry a slot no longer names (word) on the ring, to be freed once no reader can
 * read it; leaks it (until the next growth) when the ring is full of entries a snapshot
 * holds back: waiting for it here would make every put wait while it is preempted. */
void shmrpc__map_retire(shmrpc_map *m, uint64_t word)
{
    struct gen_space *sp = space_of(m->base, &m->geo);
    uint32_t k, v;
    if (!shmrpc__map_entry_at(m->base, &m->geo, word, &k, &v)) return;
    uint64_t bs = block_size(k, v);
    uint64_t cap = m->geo.ring_cap;
    if (sp->head - sp->tail < cap) {
        sp->ring[sp->head % cap] = ((uint64_t)size_class(bs) << OFF_BITS) | (word & OFF_MASK);
        sp->head++;
    }
    /* Every BATCH entries, or sooner when they are large: an eighth of the space waiting
     * for readers would otherwise be taken fresh. */
    sp->since_bytes += bs;
    uint64_t batch = cap / 4 < BATCH ? cap / 4 : BATCH;
    if (++sp->since >= batch || sp->since_bytes >= (m->geo.total - m->geo.arena_off) / 8)
        advance(m, sp->head - sp->tail >= cap / 2);
}

static uint64_t take_class(shmrpc_map *m, unsigned c);

/* Puts the block at off of bs bytes on the free lists, cut into class sizes (the largest
 * that fits first; a last 8 bytes, smaller than any entry, is left out). */
static void free_pieces(shmrpc_map *m, uint64_t off, uint64_t bs)
{
    struct gen_space *sp = space_of(m->base, &m->geo);
    while (bs >= 16) {
        unsigned c = bs <= 256 ? (unsigned)(bs / 8) - 1 : size_class(bs);
        while (class_size(c) > bs)
            c--;
        memcpy(m->base + off, &sp->free_head[c], 8);
        sp->free_head[c] = off;
        off += class_size(c);
        bs -= class_size(c);
    }
}

/* A free block of class c: of the class itself, else cut from the smallest larger one
 * (the rest freed as pieces), so that space freed by entries of other sizes serves too;
 * 0 when there is none. */
uint64_t shmrpc__map_take_free(shmrpc_map *m, unsigned c)
{
    uint64_t off = take_class(m, c);
    for (unsigned b = c + 1; !off && b < NCLASSES; b++) {
        if (!space_of(m->base, &m->geo)->free_head[b]) continue;
        off = take_class(m, b);
        if (off) free_pieces(m, off + class_size(c), class_size(b) - class_size(c));
    }
    return off;
}

static uint64_t take_class(shmrpc_map *m, unsigned c)
{
    struct gen_space *sp = space_of(m->base, &m->geo);
    uint64_t off = sp->free_head[c], bs = class_size(c);
    if (!off) return 0;
    uint64_t used = atomic_load_explicit(&((struct gen_hdr *)m->base)->used, memory_order_relaxed);
    uint64_t next = 0;
    if (block_ok(&m->geo, used, off, bs))
        memcpy(&next, m->base + off, 8);
    else
        off = 0; /* a bad write: forget the list */
    if (next && !block_ok(&m->geo, used, next, bs)) next = 0;
    sp->free_head[c] = next;
    return off;
}
