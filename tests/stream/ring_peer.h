/* SPDX-License-Identifier: MIT */
/* A stream's channel over shm://, seen as a hostile peer sees it (tests/stream): found among
 * this process's descriptors and mapped again, so that a test can write over its head or its
 * rings while the stream runs. */
#ifndef SHMRPC_TEST_RING_PEER_H
#define SHMRPC_TEST_RING_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/shm/shm.h"

/* The channel of a stream this process opened to addr ("shm://NAME"), mapped anew: the one
 * whose head's stream is stream, whose state is REQUEST, and whose call a worker took (taken)
 * or not yet. Fails the test when there is none. *size: the bytes mapped, for munmap. */
shmrpc__shm_chan *test_stream_channel(const char *addr, uint32_t stream, bool taken, size_t *size);

/* The ring of channel h at byte off of the rings (0: the first; SHMRPC__RING_BYTES(cap):
 * the second of a stream both ways). */
shmrpc__stream_ring *test_stream_ring(shmrpc__shm_chan *h, uint64_t off);

/* The lies a ring's writer may tell its reader: a count of more than the ring holds (above a
 * record that is whole), a record longer than the ring, a piece that does not continue its
 * item, an item of 4 GiB - 1 bytes (above any reader's maximum), a piece of no bytes with
 * more to come (which would keep a reader reading for ever), and a piece that reaches past
 * the room the reader gave back (which no writer had). */
#define TEST_RING_LIES 6

/* Writes lie k (0 .. TEST_RING_LIES - 1) into r's records: the writer's count that tells it,
 * for the caller to store in r's tail. */
uint32_t test_ring_lie(shmrpc__stream_ring *r, int k);

#endif
