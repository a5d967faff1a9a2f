/* SPDX-License-Identifier: MIT */
/* The bump allocator behind decoded messages: blocks that only grow, freed together
 * by a reset that folds them into one, so steady traffic stops calling malloc. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

#define ARENA_DEFAULT_BLOCK 4096
#define ARENA_MAX_ALIGN 64

typedef struct block {
    struct block *next; /* the block filled before this one */
    size_t size;        /* bytes in data */
    size_t used;        /* bytes of data handed out, including alignment padding */
    uint8_t data[];
} block;

struct shmrpc_arena {
    block *head;       /* the block being filled; older ones follow */
    size_t first;      /* the size of a fresh arena's block */
    size_t held;       /* the sum of the blocks' sizes */
    size_t handed_out; /* bytes asked for since the last reset */
    size_t limit;      /* cap on handed_out; 0: none */
};

static block *block_new(size_t size)
{
    if (size > SIZE_MAX - sizeof(block)) return NULL;
    block *b = malloc(sizeof(block) + size);
    if (!b) return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

shmrpc_arena *shmrpc_arena_new(size_t first_block)
{
    shmrpc_arena *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->first = first_block ? first_block : ARENA_DEFAULT_BLOCK;
    a->head = block_new(a->first);
    if (!a->head) {
        free(a);
        return NULL;
    }
    a->held = a->first;
    return a;
}

static void free_blocks(block *b)
{
    while (b) {
        block *next = b->next;
        free(b);
        b = next;
    }
}

void shmrpc_arena_free(shmrpc_arena *a)
{
    if (!a) return;
    free_blocks(a->head);
    free(a);
}

/* The padding that aligns the next free byte of b to align, or SIZE_MAX when size more
 * bytes do not fit after it. */
static size_t fit(const block *b, size_t size, size_t align)
{
    uintptr_t at = (uintptr_t)(b->data + b->used);
    size_t pad = (size_t)(-at & (align - 1));
    size_t left = b->size - b->used;
    if (pad > left || size > left - pad) return SIZE_MAX;
    return pad;
}

/* A new head block with room for size bytes at any alignment up to align. Blocks
 * double, so a growing message costs O(log n) mallocs. */
static block *grow(shmrpc_arena *a, size_t size, size_t align)
{
    size_t need;
    if (__builtin_add_overflow(size, align - 1, &need)) return NULL;
    size_t want = a->head ? a->head->size : a->first;
    want = want > SIZE_MAX / 2 ? need : want * 2;
    if (a->limit) {
        /* Do not reserve much more than the cap still lets the caller use. */
        size_t room = a->limit - a->handed_out;
        if (room < SIZE_MAX - ARENA_MAX_ALIGN) room += ARENA_MAX_ALIGN;
        if (want > room) want = room;
    }
    if (want < need) want = need;
    block *b = block_new(want);
    if (!b) return NULL;
    b->next = a->head;
    a->head = b;
    a->held += want;
    return b;
}

void *shmrpc_arena_alloc(shmrpc_arena *a, size_t size, size_t align)
{
    if (!a) return NULL;
    if (align == 0) align = 1;
    if (align > ARENA_MAX_ALIGN || (align & (align - 1))) return NULL;
    if (a->limit && (size > a->limit || a->handed_out > a->limit - size)) return NULL;

    block *b = a->head;
    size_t pad = b ? fit(b, size, align) : SIZE_MAX;
    if (pad == SIZE_MAX) {
        b = grow(a, size, align);
        if (!b) return NULL;
        pad = fit(b, size, align);
    }
    void *p = b->data + b->used + pad;
    b->used += pad + size;
    a->handed_out += size;
    return p;
}

void *shmrpc_arena_calloc(shmrpc_arena *a, size_t count, size_t size, size_t align)
{
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) return NULL;
    void *p = shmrpc_arena_alloc(a, n, align);
    if (p && n) memset(p, 0, n);
    return p;
}

char *shmrpc_arena_strndup(shmrpc_arena *a, const char *p, size_t n)
{
    if (n == SIZE_MAX) return NULL;
    char *s = shmrpc_arena_alloc(a, n + 1, 1);
    if (!s) return NULL;
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

void shmrpc_arena_reset(shmrpc_arena *a)
{
    if (!a) return;
    a->handed_out = 0;
    if (a->head && !a->head->next) {
        a->head->used = 0;
        return;
    }
    /* Several blocks: the last cycle needed about this much, so hold it as one block
     * and the next cycle fits without malloc. If that block cannot be had, start
     * from nothing; the next alloc tries again. */
    free_blocks(a->head);
    a->head = block_new(a->held);
    if (!a->head) a->held = 0;
}

size_t shmrpc_arena_used(const shmrpc_arena *a)
{
    return a ? a->handed_out : 0;
}

void shmrpc_arena_set_limit(shmrpc_arena *a, size_t max_bytes)
{
    if (a) a->limit = max_bytes;
}

size_t shmrpc__arena_blocks(const shmrpc_arena *a)
{
    size_t n = 0;
    for (const block *b = a->head; b; b = b->next)
        n++;
    return n;
}

size_t shmrpc__arena_held(const shmrpc_arena *a)
{
    return a->held;
}
