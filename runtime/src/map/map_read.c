/* SPDX-License-Identifier: MIT */
/* A map's lock-free reads: reader slots and what a read holds (pins), following the header
 * to the current generation, and the calls that read one key: get, view, size. */
#include <shmrpc/map.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "map/map_int.h"

/* --- readers ------------------------------------------------------------------------ */

/* Raised in every forked child, so that a handle the child inherited claims a reader slot
 * of its own instead of sharing its parent's. */
static _Atomic unsigned fork_count;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add_explicit(&fork_count, 1, memory_order_relaxed);
}

static void hook_fork(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

/* Whether the owner o of slot r (o read first, then its start) is dead; *start: the start
 * read. An owner that changed meanwhile is not: the start read may be the next one's. */
bool shmrpc__map_owner_dead(struct map_reader *r, uint64_t o, uint64_t *start)
{
    *start = atomic_load(&r->start);
    return atomic_load(&r->owner) == o && !shmrpc__proc_alive((int32_t)o, *start);
}

/* Frees the slot of an owner that died without closing (its reads kept), start the start
 * its death was judged by; false when someone else freed or took it first. */
bool shmrpc__map_free_dead_slot(struct map_hdr *h, struct map_reader *r, uint64_t owner,
                                uint64_t start)
{
    uint64_t reads = atomic_load_explicit(&r->reads, memory_order_relaxed), s = start;
    if (!atomic_compare_exchange_strong(&r->start, &s, 0)) return false;
    /* Taken meanwhile: its start stays 0, which judges its owner by pid alone (putting it
     * back could put it on a slot freed since, the very state this clearing avoids). */
    if (!atomic_compare_exchange_strong(&r->owner, &owner, 0)) return false;
    atomic_fetch_add_explicit(&h->reads_gone, reads, memory_order_relaxed);
    return true;
}

/* Claims a free reader slot, or the slot of an owner that died (checked only when none is
 * free); NULL when every slot has a live owner. */
static struct map_reader *claim_slot(shmrpc_map *m)
{
    pthread_once(&fork_once, hook_fork);
    struct map_hdr *h = m->hdr;
    uint64_t me = (uint64_t)getpid();
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < MAP_READERS; i++) {
            struct map_reader *r = &h->readers[i];
            uint64_t o = atomic_load(&r->owner), start;
            if (o != 0 && (pass == 0 || !shmrpc__map_owner_dead(r, o, &start) ||
                           !shmrpc__map_free_dead_slot(h, r, o, start)))
                continue;
            o = 0;
            if (!atomic_compare_exchange_strong(&r->owner, &o, me)) continue;
            atomic_store(&r->start, shmrpc__proc_start((int32_t)me));
            /* With the barrier a writer makes on every CPU running this process, a read
             * needs no fence of its own (each costs a fifth of a get); without it (an old
             * kernel, a seccomp filter), every read fences. */
            m->no_fence = shmrpc__membarrier_register();
            if (m->no_fence) atomic_fetch_or(&h->no_fence, 1);
            atomic_store_explicit(&r->reads, 0, memory_order_relaxed);
            atomic_store_explicit(&r->epoch, 0, memory_order_relaxed);
            atomic_store_explicit(&r->hazard, 0, memory_order_relaxed);
            m->rd_fork = atomic_load_explicit(&fork_count, memory_order_relaxed);
            return r;
        }
    return NULL;
}

/* Gives back the handle's slot (not one inherited from a parent). */
void shmrpc__map_release_slot(shmrpc_map *m)
{
    struct map_reader *r = m->rd;
    m->rd = NULL;
    if (!r || m->rd_fork != atomic_load_explicit(&fork_count, memory_order_relaxed)) return;
    uint64_t me = (uint64_t)getpid(), reads = atomic_load(&r->reads);
    uint64_t start = atomic_load(&r->start);
    atomic_store_explicit(&r->epoch, 0, memory_order_release);
    atomic_store_explicit(&r->hazard, 0, memory_order_release);
    /* The start first, and only while the slot is still this handle's. */
    if (atomic_load(&r->owner) == me) atomic_compare_exchange_strong(&r->start, &start, 0);
    if (atomic_compare_exchange_strong(&r->owner, &me, 0))
        atomic_fetch_add_explicit(&m->hdr->reads_gone, reads, memory_order_relaxed);
}

/* Ends the read in progress or the view held: from here on, writers may reuse what it
 * read. */
inline void shmrpc__map_unpin(shmrpc_map *m)
{
    uint8_t pin = m->pin;
    m->pin = PIN_NONE;
    /* A read inherited through fork (a view held at the fork) is the parent's, which ends
     * it: clearing its hazard or epoch here let writers reuse what the parent still read. */
    if (pin == PIN_NONE || m->pin_fork != atomic_load_explicit(&fork_count, memory_order_relaxed))
        return;
    if (pin == PIN_HAZARD) {
        struct map_reader *r = m->rd;
        atomic_store_explicit(&r->reads, atomic_load_explicit(&r->reads, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        /* Release: the copy of the value is done before a writer may see the slot idle. */
        atomic_store_explicit(&r->hazard, 0, memory_order_release);
    } else if (pin == PIN_EPOCH) {
        atomic_store_explicit(&m->rd->epoch, 0, memory_order_release);
    } else if (pin == PIN_UNPROT) {
        atomic_fetch_sub_explicit(&space_of(m->base, &m->geo)->unprot, 1, memory_order_release);
        m->unprot_reads++;
    }
}

/* Follows the header to the current generation. */
int shmrpc__map_follow(shmrpc_map *m)
{
    shmrpc__map_unpin(m);
    if (cut(m)) return shmrpc__map_cut_fail(m); /* a header of zero pages names no generation */
    for (int i = 0; i < OPEN_ATTEMPTS; i++) {
        uint64_t gen = atomic_load_explicit(&m->hdr->gen, memory_order_acquire);
        if (cut(m)) return shmrpc__map_cut_fail(m); /* the look above found zero pages */
        if (m->base && gen == m->geo.gen) return 0;
        uint8_t *base = NULL;
        shmrpc__map_geo geo;
        int rc = shmrpc__map_map_gen(m, gen, &base, &geo);
        if (rc == 0) {
            shmrpc__map_set_gen(m, base, &geo);
            return 0;
        }
        if (rc != SHMRPC_ENOENT) return rc;
        /* Replaced between reading the header and opening; or never made, when the header
         * is damaged: look again, bounded. */
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
    return fail(SHMRPC_EPROTO,
                "map '%s': generation file %" PRIu64 " named by the header does not exist", m->name,
                atomic_load(&m->hdr->gen));
}

inline int shmrpc__map_sync_gen(shmrpc_map *m)
{
    if (m->pin) shmrpc__map_unpin(m);
    if (__builtin_expect(
            atomic_load_explicit(&m->hdr->gen, memory_order_acquire) == m->geo.gen && m->base, 1))
        return 0;
    return shmrpc__map_follow(m);
}

/* Begins a lock-free read of the current generation. A get (whole false) protects each
 * entry it reads with the hazard of the handle's reader slot (find with read_protect); a
 * snapshot (whole true), which reads every entry, publishes the generation's epoch in the
 * slot, so that no writer reuses an entry this read may still find. Without a slot, the
 * read is counted in the generation's unprot. unpin ends it. */
inline int shmrpc__map_enter_read(shmrpc_map *m, bool whole)
{
    int rc = shmrpc__map_sync_gen(m);
    if (rc != 0) return rc;
    struct map_reader *r = m->rd;
    unsigned forks = atomic_load_explicit(&fork_count, memory_order_relaxed);
    m->pin_fork = forks;
    if (__builtin_expect(!r || m->rd_fork != forks, 0)) {
        if (r || m->rd_retry++ % 1024 == 0) r = m->rd = claim_slot(m);
        if (!r) {
            atomic_fetch_add(&space_of(m->base, &m->geo)->unprot, 1);
            m->pin = PIN_UNPROT;
            return 0;
        }
    }
    if (!whole) {
        m->pin = PIN_HAZARD;
        return 0;
    }
    const struct gen_hdr *g = (const struct gen_hdr *)m->base;
    atomic_store_explicit(&r->epoch, atomic_load_explicit(&g->epoch, memory_order_acquire),
                          memory_order_relaxed);
    /* The epoch is visible before this read looks at a slot (a writer's scan is the other
     * half: it stores a slot word, fences, then reads the epochs). With no_fence, the
     * writer's membarrier is this fence, made on this CPU only when a writer needs it. */
    if (m->no_fence)
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
    m->pin = PIN_EPOCH;
    return 0;
}

/* What find needs to protect the entries a get of m reads: none without a reader slot
 * (unprot holds back all reuse). */
static inline struct protect read_protect(shmrpc_map *m)
{
    if (m->pin != PIN_HAZARD) return (struct protect){NULL, false};
    return (struct protect){&m->rd->hazard, !m->no_fence};
}

/* --- reading ------------------------------------------------------------------------- */

int shmrpc__map_check_kv(const void *key, size_t klen, const void *value, size_t vlen)
{
    if (!key && klen) return fail(SHMRPC_EINVAL, "key is NULL");
    if (!value && vlen) return fail(SHMRPC_EINVAL, "value is NULL");
    if (klen > SHMRPC_MAP_KEY_MAX)
        return fail(SHMRPC_EINVAL, "key of %zu bytes, more than %u", klen, SHMRPC_MAP_KEY_MAX);
    if (vlen > SHMRPC_MAP_VALUE_MAX)
        return fail(SHMRPC_EINVAL, "value of %zu bytes, more than %u", vlen, SHMRPC_MAP_VALUE_MAX);
    return 0;
}

static int lookup(shmrpc_map *m, const void *key, size_t klen, uint64_t *at, uint64_t *w,
                  const struct entry **e, uint32_t *k, uint32_t *v)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    if ((!key && klen) || klen > SHMRPC_MAP_KEY_MAX)
        return shmrpc__map_check_kv(key, klen, NULL, 0);
    int rc = shmrpc__map_enter_read(m, false);
    if (rc != 0) return rc;
    if (probe_cut(m, false)) {
        shmrpc__map_unpin(m);
        return shmrpc__map_cut_fail(m);
    }
    struct protect pr = read_protect(m);
    rc = find(m->base, &m->geo, key, klen, shmrpc__map_hash_key(key, klen), at, w, NULL,
              pr.hazard ? &pr : NULL);
    if (rc == 0) {
        *e = shmrpc__map_entry_at(m->base, &m->geo, *w, k, v);
        if (*e) return 0;
        rc = SHMRPC_EPROTO;
    }
    shmrpc__map_unpin(m);
    if (cut(m)) return shmrpc__map_cut_fail(m); /* found nothing in zero pages */
    if (rc == SHMRPC_ENOENT) return fail(SHMRPC_ENOENT, "no such key");
    return fail(rc, "map '%s': an entry on the key's way is out of bounds", m->name);
}

int shmrpc_map_get(shmrpc_map *m, const void *key, size_t klen, void *buf, size_t cap, size_t *len)
{
    uint64_t at, w;
    const struct entry *e;
    uint32_t k = 0, v = 0; /* set by lookup when it succeeds (gcc -O3 cannot tell) */
    int rc = lookup(m, key, klen, &at, &w, &e, &k, &v);
    if (rc != 0) return rc;
    if (len) *len = v;
    if (v <= cap && v) memcpy(buf, (const uint8_t *)(e + 1) + k, v);
    shmrpc__map_unpin(m);
    if (cut(m)) { /* what was copied may be the zero pages' */
        if (len) *len = 0;
        return shmrpc__map_cut_fail(m);
    }
    if (v > cap) return fail(SHMRPC_ETOOBIG, "the value has %u bytes, the buffer %zu", v, cap);
    return 0;
}

int shmrpc_map_get_view(shmrpc_map *m, const void *key, size_t klen, shmrpc_map_view *view)
{
    if (!view) return fail(SHMRPC_EINVAL, "no view");
    uint64_t at, w;
    const struct entry *e;
    uint32_t k = 0, v = 0;
    int rc = lookup(m, key, klen, &at, &w, &e, &k, &v);
    if (rc != 0) return rc;
    if (cut(m)) {
        shmrpc__map_unpin(m);
        return shmrpc__map_cut_fail(m);
    }
    view->data = (const uint8_t *)(e + 1) + k;
    view->len = v;
    view->gen = m->geo.gen;
    view->slot = at;
    view->word = w;
    return 0; /* the handle holds the read until its next call */
}

bool shmrpc_map_view_current(shmrpc_map *m, const shmrpc_map_view *v)
{
    if (!m || !v || !m->base || cut(m)) return false;
    if (atomic_load_explicit(&m->hdr->gen, memory_order_acquire) != v->gen || m->geo.gen != v->gen)
        return false;
    if (v->slot >= m->geo.nslots) return false;
    return atomic_load_explicit(&slots_of(m->base)[v->slot], memory_order_acquire) == v->word;
}

int shmrpc_map_size(shmrpc_map *m, uint64_t *count)
{
    if (!m || !count) return fail(SHMRPC_EINVAL, m ? "no place for the count" : "no map");
    int rc = shmrpc__map_sync_gen(m);
    if (rc != 0) return rc;
    *count = atomic_load(&((struct gen_hdr *)m->base)->count);
    return probe_cut(m, false) ? shmrpc__map_cut_fail(m) : 0;
}
