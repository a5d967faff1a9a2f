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
 * and len 0: the end of the items), at *tail of the ring r of cap bytes, and moves *tail past
 * it. Publishing the tail is the caller's. */
void shmrpc__ring_put(shmrpc__stream_ring *r, uint32_t cap, uint32_t *tail, const void *p,
                      uint32_t len, uint32_t left);

/* A reader's place in a ring, and the names its messages give the writer and itself. */
typedef struct shmrpc__ring_reader {
    uint32_t cap;
    uint32_t head; /* the bytes read */
    uint32_t pub;  /* the bytes read that the writer was told of */
    uint32_t left; /* the bytes of the item being read still to come; 0 between items */
    const char *writer, *reader;
} shmrpc__ring_reader;

/* Takes the record at rd's head of the ring r, of which avail bytes (at most the ring's) are
 * published: 1 once an item's last piece is appended to item, 0 for an earlier piece, 2 at
 * the end of the items (also amid an item whose writer failed before its last piece: what
 * came of that item is dropped); or SHMRPC_EPROTO (a record that lies), SHMRPC_ETOOBIG (an
 * item above item->max) or SHMRPC_ENOMEM, each with why in err, and nothing taken. item
 * NULL: the record is passed over, with the same checks but the maximum's. Every field is
 * read once and checked against the ring. */
int shmrpc__ring_take(const shmrpc__stream_ring *r, shmrpc__ring_reader *rd, uint32_t avail,
                      shmrpc_buf *item, shmrpc_buf *err);

/* Tells the writer how far rd read, when it was not told: the count stored (sequentially
 * consistent, before the look at its sleepers) and the writer woken if it sleeps for room.
 * Unless all, only when a quarter of the ring was read since, or the writer sleeps. */
void shmrpc__ring_give_back(shmrpc__stream_ring *r, shmrpc__ring_reader *rd, bool all);

#endif
