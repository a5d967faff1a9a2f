/* SPDX-License-Identifier: MIT */
/* Counts malloc, calloc and realloc calls of the whole program, for tests that prove a
 * path does not allocate. Link with shmrpc_count_allocations(target). */
#ifndef SHMRPC_TEST_ALLOC_COUNT_H
#define SHMRPC_TEST_ALLOC_COUNT_H

/* Allocations since the program started or since the last reset. */
unsigned long alloc_count(void);
void alloc_count_reset(void);

#endif
