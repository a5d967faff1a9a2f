/* SPDX-License-Identifier: MIT */
/* A stream's ring in a channel (shm.h's shmrpc__stream_ring), as either side uses it: its
 * writer fits and puts records, its reader takes them and gives the room back. The worker
 * writes a result's items and the client reads them; the client writes a parameter's and the
 * worker reads them. How each side waits, and what it tells its user, are its own. */
#ifndef SHMRPC_SRC_SHM_RING_H
#define SHMRPC_SRC_SHM_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmrpc/buf.h"
#include "transport/shm/shm.h"

/* Whether the next piece of an item with left bytes still to go fits the ring of cap bytes,
 * into which tail bytes were written and head read (the reader's count, read once by the
 * caller): 0 and *piece, the bytes that go now (all of them when they fit the ring: an item
 * is not cut needlessly; else as much as there is room for, once a quarter of the ring is
 * free); 1 when there is no room yet; SHMRPC_EPROTO when head says more was read than was
 * written. Each piece leaves 8 bytes free for the end's record. */
int shmrpc__ring_fit(uint32_t cap, uint32_t tail, uint32_t head, size_t left, uint32_t *piece);

/* Writes the record of len bytes at p, with left bytes of its item after it (SHMRPC__RING_END
 * and len 0: the end of the items), at *tail of the ring r of cap bytes, whole (shm.h: the
 * header after it zeroed first, but after the end's), and moves *tail past it. */
void shmrpc__ring_put(shmrpc__stream_ring *r, uint32_t cap, uint32_t *tail, const void *p,
                      uint32_t len, uint32_t left);

/* After a record: publishes the writer's tail and wakes the reader when it sleeps (its bit in
 * reader_asleep), a quarter of the ring of cap bytes after the tail last published, or when
 * now (before the writer waits for room, and with the end); not when the tail was published
 * already. Lightly when light (the reader makes the fence for the writer before it sleeps:
 * shmrpc__waiter's fence_wakers), else with a fence of its own between the record and the
 * look at the reader. */
void shmrpc__ring_publish(shmrpc__stream_ring *r, uint32_t cap, uint32_t tail, bool light,
                          bool now);

/* A reader's place in a ring, and the names its messages give the writer and itself. */
typedef struct shmrpc__ring_reader {
    uint32_t cap;
    uint32_t head; /* the bytes read */
    uint32_t pub;  /* the bytes read that the writer was told of */
    uint32_t left; /* the bytes of the item being read still to come; 0 between items */
    uint32_t seen; /* the len at head when the last take found no record there */
    const char *writer, *reader;
} shmrpc__ring_reader;

/* shmrpc__ring_take found no record at the head: the writer has not written it whole yet. */
#define SHMRPC__RING_NONE 3

/* Takes the record at rd's head of the ring r, whose writer published tail (read once by the
 * caller): 1 once an item's last piece is appended to item, 0 for an earlier piece, 2 at the
 * end of the items (also amid an item whose writer failed before its last piece: what came of
 * that item is dropped), SHMRPC__RING_NONE while the record is not whole; or SHMRPC_EPROTO (a
 * tail more than a ring ahead of the head or two behind it, a record that lies, or one that
 * reaches more than a ring past what rd gave back), SHMRPC_ETOOBIG (an item above item->max)
 * or SHMRPC_ENOMEM, each with why in err, and nothing taken. item NULL: the record is passed over,
 * with the same checks but the maximum's. Every field is read once and checked against the ring. */
int shmrpc__ring_take(const shmrpc__stream_ring *r, shmrpc__ring_reader *rd, uint32_t tail,
                      shmrpc_buf *item, shmrpc_buf *err);

/* The len of the record at rd's head, for a wait to watch (shmrpc__waiter's also, while it is
 * rd->seen) once a take found none there. */
const _Atomic uint32_t *shmrpc__ring_next(const shmrpc__stream_ring *r,
                                          const shmrpc__ring_reader *rd);

/* Whether a record or a tail came since a take with tail found none: a wait that failed lets
 * them be read first. */
bool shmrpc__ring_came(const shmrpc__stream_ring *r, const shmrpc__ring_reader *rd, uint32_t tail);

/* Tells the writer how far rd read, when it was not told: the count stored (sequentially
 * consistent, before the look at its sleepers) and the writer woken if it sleeps for room.
 * Unless all, only when a quarter of the ring was read since, or the writer sleeps. */
void shmrpc__ring_give_back(shmrpc__stream_ring *r, shmrpc__ring_reader *rd, bool all);

#endif
