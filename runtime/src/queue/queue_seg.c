/* SPDX-License-Identifier: MIT */
/* The segment's geometry and its header's checks: what a creator asks for (geometry_of),
 * whether a header read from a segment adds up (check_geometry, shmrpc__queue_validate),
 * and a handle's view of a checked segment (fill_handle, shmrpc__queue_wrap); and what a
 * call says when the segment was cut under its handle. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/queue_int.h"

int shmrpc__q_cut_fail(const shmrpc_queue *q)
{
    char path[sizeof "/shmrpc.queue." + SHMRPC_QUEUE_NAME_MAX];
    snprintf(path, sizeof path, "/shmrpc.queue.%s", q->name);
    return shmrpc__seg_cut_fail("queue", q->name, path);
}

static bool pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

static uint64_t pow2_at_least(uint64_t v)
{
    uint64_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

/* The descriptors, then the subscriber table, then the type signature, then the arena on
 * a page of its own. */
uint64_t shmrpc__q_type_off_for(uint64_t n)
{
    return DESC_OFF + n * DESC_SIZE + SUBS * SUB_SIZE;
}

uint64_t shmrpc__q_arena_off_for(uint64_t n, uint64_t type_len)
{
    return (shmrpc__q_type_off_for(n) + type_len + ARENA_ALIGN - 1) & ~(uint64_t)(ARENA_ALIGN - 1);
}

/* The geometry a creator asks for, from the options. */
int shmrpc__q_geometry_of(const shmrpc_queue_opts *o, struct geom *g)
{
    uint64_t cap = o->capacity ? o->capacity : DEFAULT_CAPACITY;
    if (cap > SHMRPC_QUEUE_CAPACITY_MAX)
        return fail(SHMRPC_EINVAL, "queue capacity %" PRIu32 " is above %" PRIu32, o->capacity,
                    SHMRPC_QUEUE_CAPACITY_MAX);
    if (cap < 2) cap = 2;
    uint64_t max = o->max_msg ? o->max_msg : DEFAULT_MAX_MSG;
    uint64_t want = 2 * (uint64_t)round_msg((uint32_t)(max > SHMRPC_QUEUE_ARENA_MAX ? 0 : max));
    if (max > SHMRPC_QUEUE_ARENA_MAX / 2)
        return fail(SHMRPC_EINVAL, "queue max_msg %" PRIu32 " is above %" PRIu32, o->max_msg,
                    SHMRPC_QUEUE_ARENA_MAX / 2);
    uint64_t arena;
    if (o->arena_bytes) {
        arena = pow2_at_least(o->arena_bytes < SHMRPC_QUEUE_ARENA_MIN ? SHMRPC_QUEUE_ARENA_MIN
                                                                      : o->arena_bytes);
        if (arena > SHMRPC_QUEUE_ARENA_MAX)
            return fail(SHMRPC_EINVAL, "queue arena_bytes %" PRIu32 " is above %" PRIu32,
                        o->arena_bytes, SHMRPC_QUEUE_ARENA_MAX);
        if (arena < want)
            return fail(SHMRPC_EINVAL,
                        "queue arena of %" PRIu64
                        " bytes cannot hold two messages of max_msg %" PRIu64,
                        arena, max);
    } else {
        arena = pow2_at_least(want > DEFAULT_ARENA ? want : DEFAULT_ARENA);
    }
    g->n = (uint32_t)pow2_at_least(cap);
    g->b = (uint32_t)arena;
    g->max_msg = (uint32_t)max;
    size_t tlen = o->type ? strlen(o->type) : 0;
    if (tlen > SHMRPC_QUEUE_TYPE_MAX)
        return fail(SHMRPC_EINVAL, "queue type signature of %zu bytes is above %u", tlen,
                    SHMRPC_QUEUE_TYPE_MAX);
    g->type_len = (uint32_t)tlen;
    g->arena_off = (uint32_t)shmrpc__q_arena_off_for(g->n, tlen);
    g->total = g->arena_off + arena;
    g->kind = (uint32_t)o->kind;
    g->slow = (uint32_t)o->slow;
    g->roles = (o->single_producer ? ROLE_PRODUCER : 0) | (o->single_consumer ? ROLE_CONSUMER : 0);
    return 0;
}

/* Checks a header read from a segment of size bytes; fills g. why gets the reason. */
int shmrpc__q_check_geometry(const struct q_hdr *s, size_t size, struct geom *g, char *why,
                             size_t cap)
{
    uint32_t version = s->version, hsz = s->hdr_size, dsz = s->desc_size, n = s->capacity,
             b = s->arena, max = s->max_msg, aoff = s->arena_off, kind = s->kind, slow = s->slow,
             tlen = s->type_len, roles = s->roles;
    uint64_t total = s->total_size;
    uint32_t magic = atomic_load_explicit(&s->magic, memory_order_acquire);
    if (magic != Q_MAGIC) {
        snprintf(why, cap, "not a queue segment (magic 0x%08" PRIx32 ")", magic);
        return SHMRPC_EPROTO;
    }
    if (version != Q_VERSION) {
        snprintf(why, cap, "layout version %" PRIu32 ", this library %u", version, Q_VERSION);
        return SHMRPC_EVERSION;
    }
    const char *bad = NULL;
    if (hsz != DESC_OFF || dsz != DESC_SIZE)
        bad = "header or descriptor size";
    else if (!pow2(n) || n < 2 || n > SHMRPC_QUEUE_CAPACITY_MAX)
        bad = "capacity";
    else if (!pow2(b) || b < SHMRPC_QUEUE_ARENA_MIN || b > SHMRPC_QUEUE_ARENA_MAX)
        bad = "arena size";
    else if (max > b / 2 || 2 * (uint64_t)round_msg(max) > b)
        bad = "max_msg";
    else if (tlen > SHMRPC_QUEUE_TYPE_MAX)
        bad = "type signature length";
    else if (aoff != shmrpc__q_arena_off_for(n, tlen))
        bad = "arena offset";
    else if (total != (uint64_t)aoff + b || total != size)
        bad = "total size";
    else if (kind > SHMRPC_QUEUE_BROADCAST || slow > SHMRPC_QUEUE_SLOW_DROP)
        bad = "kind or slow policy";
    else if (roles > (ROLE_PRODUCER | ROLE_CONSUMER) || (roles && kind != SHMRPC_QUEUE_WORK))
        bad = "roles";
    if (bad) {
        snprintf(why, cap,
                 "its header does not add up (%s: capacity %" PRIu32 ", arena %" PRIu32
                 ", max_msg %" PRIu32 ", arena at %" PRIu32 ", total %" PRIu64 ", file %zu)",
                 bad, n, b, max, aoff, total, size);
        return SHMRPC_EPROTO;
    }
    g->n = n;
    g->b = b;
    g->max_msg = max;
    g->arena_off = aoff;
    g->total = total;
    g->kind = kind;
    g->slow = slow;
    g->type_len = tlen;
    g->roles = roles;
    return 0;
}

int shmrpc__queue_validate(const void *seg, size_t size, char *why, size_t cap)
{
    if (size < DESC_OFF) {
        snprintf(why, cap, "not a queue segment (size %zu)", size);
        return SHMRPC_EPROTO;
    }
    struct geom g;
    return shmrpc__q_check_geometry(seg, size, &g, why, cap);
}

void shmrpc__q_fill_handle(shmrpc_queue *q, void *seg, const struct geom *g)
{
    q->hdr = seg;
    q->desc = (struct q_desc *)((unsigned char *)seg + DESC_OFF);
    q->arena = (unsigned char *)seg + g->arena_off;
    q->map_size = (size_t)g->total;
    q->n = g->n;
    q->mask = g->n - 1;
    q->b = g->b;
    q->bmask = g->b - 1;
    q->max_msg = g->max_msg;
    q->bcast = g->kind == SHMRPC_QUEUE_BROADCAST;
    q->drop = g->slow == SHMRPC_QUEUE_SLOW_DROP;
    q->subs = (struct q_sub *)((unsigned char *)seg + DESC_OFF + (size_t)g->n * DESC_SIZE);
    q->sub = -1;
    q->sp = g->roles & ROLE_PRODUCER;
    q->sc = g->roles & ROLE_CONSUMER;
    q->guard = -1;
    q->cut = shmrpc__seg_guard_flag(-1);
    atomic_store_explicit(&q->freed_seen, atomic_load(&q->hdr->freed), memory_order_relaxed);
}

int shmrpc__queue_wrap(void *seg, size_t size, shmrpc_queue **out)
{
    char why[256];
    struct geom g;
    *out = NULL;
    if (size < DESC_OFF) return SHMRPC_EPROTO;
    int rc = shmrpc__q_check_geometry(seg, size, &g, why, sizeof why);
    if (rc != 0) return fail(rc, "%s", why);
    shmrpc_queue *q = calloc(1, sizeof *q);
    if (!q) return shmrpc__err_code(SHMRPC_ENOMEM);
    shmrpc_wait_opts_init(&q->wait);
    q->wait.mode = SHMRPC_WAIT_SPIN; /* nobody else touches it: nothing to sleep for */
    q->wait_after_spin = q->wait;
    snprintf(q->name, sizeof q->name, "(memory)");
    shmrpc__q_fill_handle(q, seg, &g);
    *out = q;
    return 0;
}
