/* SPDX-License-Identifier: MIT */
/* What a queue says of itself: shmrpc_queue_get_info, shmrpc_queue_get_stats, and the
 * header's figures for the admin API (shmrpc__queue_read_head, from the header alone). */
#include <string.h>

#include "queue/queue_int.h"

int shmrpc_queue_get_info(const shmrpc_queue *q, shmrpc_queue_info *out)
{
    if (!q || !out) return fail(SHMRPC_EINVAL, "queue or out is NULL");
    if (cut(q)) return shmrpc__q_cut_fail(q);
    out->capacity = q->n;
    out->arena_bytes = q->b;
    out->max_msg = q->max_msg;
    out->creator = (pid_t)atomic_load_explicit(&q->hdr->creator_pid, memory_order_relaxed);
    out->kind = q->bcast ? SHMRPC_QUEUE_BROADCAST : SHMRPC_QUEUE_WORK;
    out->slow = q->drop ? SHMRPC_QUEUE_SLOW_DROP : SHMRPC_QUEUE_SLOW_BLOCK;
    out->type = q->type ? q->type : "";
    out->single_producer = q->sp;
    out->single_consumer = q->sc;
    return 0;
}

/* The counters, and the depth from the head hd (or a subscriber's cursor). q: the handle,
 * or NULL when only the header is mapped (shmrpc__queue_read_head); then a single
 * producer's message committed at the tail by one that died before moving it is not
 * counted until the next producer moves the tail. */
static void counters(const struct q_hdr *h, uint32_t hd, const shmrpc_queue *q,
                     shmrpc_queue_stats *out)
{
    bool sp = h->roles & ROLE_PRODUCER, sc = h->roles & ROLE_CONSUMER;
    bool bcast = h->kind == SHMRPC_QUEUE_BROADCAST;
    uint32_t tl = msg_of(atomic_load_explicit(&h->tail, memory_order_relaxed));
    int32_t depth = (int32_t)(tl - hd);
    out->depth = depth > 0 ? (uint64_t)depth : 0;
    out->pushed = atomic_load_explicit(&h->pushed, memory_order_relaxed);
    out->popped = atomic_load_explicit(&h->popped, memory_order_relaxed);
    /* pushed: the tail's position extended, less the messages abandoned behind it (the
     * tail counts claims; a single producer's counts commits, plus one committed at the tail
     * by a producer that died before moving it). popped: the head's, less those abandoned
     * (the head passes them; one abandoned just ahead of it is subtracted a moment early),
     * or a single consumer's own count; broadcast counts reads. No push or pop adds to a
     * shared counter. */
    uint64_t abandoned = atomic_load_explicit(&h->abandoned, memory_order_relaxed);
    out->pushed = extend(out->pushed, tl) - abandoned;
    if (sp && q) out->pushed += shmrpc__q_published(q, tl);
    if (sc) {
        out->popped =
            extend(out->popped, cons_popped(atomic_load_explicit(&h->cons, memory_order_acquire)));
    } else if (!bcast) {
        uint64_t p = extend(out->popped, atomic_load_explicit(&h->head, memory_order_relaxed));
        out->popped = p > abandoned ? p - abandoned : 0;
        if (out->popped > out->pushed) out->popped = out->pushed;
    }
    out->timeouts = atomic_load_explicit(&h->timeouts, memory_order_relaxed);
    out->drops = atomic_load_explicit(&h->drops, memory_order_relaxed);
    out->sleeps = atomic_load_explicit(&h->sleeps, memory_order_relaxed);
    out->repairs = atomic_load_explicit(&h->repairs, memory_order_relaxed);
    out->timer_wakes = atomic_load_explicit(&h->timer_wakes, memory_order_relaxed);
}

int shmrpc_queue_get_stats(const shmrpc_queue *q, shmrpc_queue_stats *out)
{
    if (!q || !out) return fail(SHMRPC_EINVAL, "queue or out is NULL");
    if (gone(q)) return shmrpc__q_cut_fail(q);
    const struct q_hdr *h = q->hdr;
    uint32_t hd = head_now(q);
    if (q->bcast)
        hd = q->sub >= 0 ? atomic_load_explicit(&q->subs[q->sub].cursor, memory_order_relaxed)
                         : msg_of(atomic_load_explicit(&h->freed, memory_order_relaxed));
    out->missed =
        q->sub >= 0 ? atomic_load_explicit(&q->subs[q->sub].missed, memory_order_relaxed) : 0;
    counters(h, hd, q, out);
    return unless_cut(q, 0);
}

void shmrpc__queue_read_head(const void *head, shmrpc__queue_head *out)
{
    const struct q_hdr *h = head;
    memset(out, 0, sizeof *out);
    out->magic = atomic_load_explicit(&h->magic, memory_order_acquire);
    out->version = h->version;
    out->ours = out->magic == Q_MAGIC && out->version == Q_VERSION;
    uint32_t pid = atomic_load_explicit(&h->creator_pid, memory_order_relaxed);
    out->creator = pid <= INT32_MAX ? (int32_t)pid : 0;
    out->creator_start = h->creator_start;
    if (!out->ours) return;
    out->total = h->total_size;
    out->capacity = h->capacity;
    out->arena = h->arena;
    out->max_msg = h->max_msg;
    uint32_t kind = h->kind;
    out->kind = kind == SHMRPC_QUEUE_BROADCAST ? SHMRPC_QUEUE_BROADCAST : SHMRPC_QUEUE_WORK;
    /* A broadcast queue's consumers have no shared head: the release frontier is what the
     * slowest subscriber has not read, as for a handle that does not subscribe. */
    uint32_t hd = out->kind == SHMRPC_QUEUE_BROADCAST
                      ? msg_of(atomic_load_explicit(&h->freed, memory_order_relaxed))
                  : h->roles & ROLE_CONSUMER
                      ? cons_head(atomic_load_explicit(&h->cons, memory_order_acquire))
                      : atomic_load_explicit(&h->head, memory_order_relaxed);
    counters(h, hd, NULL, &out->stats);
}
