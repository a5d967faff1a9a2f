/* SPDX-License-Identifier: MIT */
/* The queue segment's header check and a handle over memory the caller owns (queue_seg.c):
 * what the fuzz target for segment validation (tests/fuzz/fuzz_queue.c) drives; and the
 * header's figures for the admin API (queue_stats.c), so that the layout is read in queue/
 * alone. What the queue's own files share is queue_int.h. */
#ifndef SHMRPC_SRC_QUEUE_SEG_H
#define SHMRPC_SRC_QUEUE_SEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/queue.h>

/* Whether the size bytes at seg (8-byte aligned) are an initialised queue segment whose
 * header adds up: 0, or SHMRPC_EPROTO / SHMRPC_EVERSION with the reason in why. */
int shmrpc__queue_validate(const void *seg, size_t size, char *why, size_t cap);

/* A handle over a segment that shmrpc__queue_validate accepted, in memory the caller owns
 * and frees after shmrpc_queue_close (which then does not unmap it). */
int shmrpc__queue_wrap(void *seg, size_t size, shmrpc_queue **out);

/* Subscribes a wrapped handle of a broadcast segment, as opts.subscribe does at open. */
int shmrpc__queue_subscribe(shmrpc_queue *q);

/* What the admin API (admin.c) shows of a queue, read from its header alone: the first
 * SHMRPC__QUEUE_HEAD bytes of the segment, mapped read-only by the caller, each field read
 * once. The rest is meaningful only when ours (the magic and version are this library's);
 * then the numbers are still whatever the segment holds, unchecked, for display. */
#define SHMRPC__QUEUE_HEAD 512u

typedef struct shmrpc__queue_head {
    uint32_t magic, version;
    bool ours;
    int32_t creator;        /* its pid, 0 when not written yet */
    uint64_t creator_start; /* its start time */
    uint32_t capacity, arena, max_msg;
    uint64_t total; /* the bytes the header says the file has: more than it has, it was cut */
    shmrpc_queue_kind kind;
    /* As shmrpc_queue_get_stats gives them to a handle that does not subscribe (a
     * broadcast queue's depth: what its slowest subscriber has not read); missed is 0. */
    shmrpc_queue_stats stats;
} shmrpc__queue_head;

void shmrpc__queue_read_head(const void *head, shmrpc__queue_head *out);

#endif
