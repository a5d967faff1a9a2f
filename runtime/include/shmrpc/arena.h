/* SPDX-License-Identifier: MIT */
/* A bump allocator for the variable-size parts of decoded messages (lists, maps,
 * copied strings). Everything is freed at once by a reset, which keeps the memory:
 * a reset arena is one block as large as all it held, so steady traffic stops calling
 * malloc. */
#ifndef SHMRPC_ARENA_H
#define SHMRPC_ARENA_H

#include <stddef.h>

#include <shmrpc/decls.h>

SHMRPC_BEGIN_DECLS

typedef struct shmrpc_arena shmrpc_arena;

/* A new arena whose first block holds at least first_block bytes (0: a default).
 * Returns NULL when out of memory. */
shmrpc_arena *shmrpc_arena_new(size_t first_block);
void shmrpc_arena_free(shmrpc_arena *a);

/* size bytes aligned to align (a power of two, at most 64; 0 reads as 1); NULL when out
 * of memory, for another align, or when the arena would grow beyond its limit. The memory
 * is not zeroed. A size of 0 gives a valid pointer, so NULL always means failure. */
void *shmrpc_arena_alloc(shmrpc_arena *a, size_t size, size_t align);

/* count * size zeroed bytes, with the multiplication checked for overflow. */
void *shmrpc_arena_calloc(shmrpc_arena *a, size_t count, size_t size, size_t align);

/* A NUL-terminated copy of n bytes at p. */
char *shmrpc_arena_strndup(shmrpc_arena *a, const char *p, size_t n);

/* Frees everything allocated since the last reset, keeping the memory. */
void shmrpc_arena_reset(shmrpc_arena *a);

/* Bytes handed out since the last reset. */
size_t shmrpc_arena_used(const shmrpc_arena *a);

/* Caps the bytes handed out between resets (what shmrpc_arena_used counts): an alloc
 * that would pass it returns NULL. 0 means no cap (the default). While a cap is set, new
 * blocks are sized so that the memory held stays close to it. */
void shmrpc_arena_set_limit(shmrpc_arena *a, size_t max_bytes);

SHMRPC_END_DECLS
#endif
