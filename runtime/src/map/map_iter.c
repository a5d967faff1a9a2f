/* SPDX-License-Identifier: MIT */
/* A map's snapshots, lock-free (a seqlock) or under its lock, and shmrpc_map_iterate
 * over one. */
#include <shmrpc/map.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "map/map_int.h"

/* How many lock-free tries a snapshot makes before it takes the lock. */
#define SNAPSHOT_TRIES 4

/* A snapshot: the entries copied into one buffer, each as struct entry + bytes. */
struct snap {
    uint8_t *buf;
    size_t len, cap;
};

static int snap_copy(shmrpc_map *m, struct snap *s)
{
    s->len = 0;
    _Atomic uint64_t *slots = slots_of(m->base);
    for (uint64_t i = 0; i < m->geo.nslots; i++) {
        uint64_t w = atomic_load_explicit(&slots[i], memory_order_acquire);
        if (w == EMPTY || w == TOMB) continue;
        uint32_t k, v;
        const struct entry *e = shmrpc__map_entry_at(m->base, &m->geo, w, &k, &v);
        if (!e) return SHMRPC_EPROTO;
        size_t sz = (size_t)entry_size(k, v);
        if (s->len + sz > s->cap) {
            size_t nc = s->cap ? s->cap * 2 : 4096;
            while (nc < s->len + sz)
                nc *= 2;
            uint8_t *nb = realloc(s->buf, nc);
            if (!nb) return fail(SHMRPC_ENOMEM, "out of memory for a snapshot");
            s->buf = nb;
            s->cap = nc;
        }
        struct entry eh = {k, v, 0};
        memcpy(s->buf + s->len, &eh, ENTRY_HEAD);
        memcpy(s->buf + s->len + ENTRY_HEAD, e + 1, (size_t)k + v);
        s->len += sz;
    }
    return 0;
}

static int take_snapshot(shmrpc_map *m, struct snap *s)
{
    for (int t = 0; t < SNAPSHOT_TRIES; t++) {
        int rc = shmrpc__map_enter_read(m, true);
        if (rc != 0) return rc;
        struct gen_hdr *g = (struct gen_hdr *)m->base;
        uint64_t s1 = atomic_load_explicit(&g->seq, memory_order_acquire);
        if (s1 & 1) {
            shmrpc__map_unpin(m);
            continue;
        }
        rc = snap_copy(m, s);
        atomic_thread_fence(memory_order_acquire);
        bool same = atomic_load_explicit(&g->seq, memory_order_relaxed) == s1;
        shmrpc__map_unpin(m);
        if (rc == SHMRPC_ENOMEM) return rc;
        if (rc == 0 && same) return 0;
    }
    /* Writers kept changing it: copy under the lock. */
    bool took;
    int rc = shmrpc__map_begin_write(m, &took);
    if (rc != 0) return rc;
    rc = snap_copy(m, s);
    if (rc == SHMRPC_EPROTO)
        rc = fail(rc, "map '%s': an entry is out of bounds (shmrpc_map_check tells more)", m->name);
    return shmrpc__map_end_write(m, took, rc);
}

int shmrpc_map_iterate(shmrpc_map *m, shmrpc_map_iter_fn fn, void *arg)
{
    if (!m || !fn) return fail(SHMRPC_EINVAL, m ? "no function" : "no map");
    struct snap s = {0};
    int rc = take_snapshot(m, &s);
    if (cut(m)) rc = shmrpc__map_cut_fail(m); /* the entries are the zero pages': none to show */
    for (size_t off = 0; rc == 0 && off < s.len;) {
        struct entry eh;
        memcpy(&eh, s.buf + off, ENTRY_HEAD);
        const uint8_t *kp = s.buf + off + ENTRY_HEAD;
        rc = fn(arg, kp, eh.klen, kp + eh.klen, eh.vlen);
        off += (size_t)entry_size(eh.klen, eh.vlen);
    }
    free(s.buf);
    return unless_cut(m, rc);
}
