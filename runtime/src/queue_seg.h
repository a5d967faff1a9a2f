/* The queue segment's header check and a handle over memory the caller owns: what the
 * fuzz target for segment validation (tests/fuzz/fuzz_queue.c) drives. */
#ifndef SHMRPC_SRC_QUEUE_SEG_H
#define SHMRPC_SRC_QUEUE_SEG_H

#include <stddef.h>

#include <shmrpc/queue.h>

/* Whether the size bytes at seg (8-byte aligned) are an initialised queue segment whose
 * header adds up: 0, or SHMRPC_EPROTO / SHMRPC_EVERSION with the reason in why. */
int shmrpc__queue_validate(const void *seg, size_t size, char *why, size_t cap);

/* A handle over a segment that shmrpc__queue_validate accepted, in memory the caller owns
 * and frees after shmrpc_queue_close (which then does not unmap it). */
int shmrpc__queue_wrap(void *seg, size_t size, shmrpc_queue **out);

/* Subscribes a wrapped handle of a broadcast segment, as opts.subscribe does at open. */
int shmrpc__queue_subscribe(shmrpc_queue *q);

#endif
