/* SPDX-License-Identifier: MIT */
/* The arena that holds a parse: chunks handed out by bumping a pointer, all freed at once.
 * Memory comes from calloc, and is never reused, so every allocation is already zeroed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "svc.h"

#define ALIGN 16
#define CHUNK_SIZE (64 * 1024)

typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    _Alignas(ALIGN) unsigned char data[];
} chunk;

struct svc_arena {
    chunk *head; /* the chunk being filled; big allocations sit behind it */
};

svc_arena *svc_arena_new(void)
{
    return calloc(1, sizeof(svc_arena));
}

void svc_arena_free(svc_arena *a)
{
    if (!a) return;
    for (chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

static chunk *chunk_new(size_t cap)
{
    if (cap > SIZE_MAX - sizeof(chunk)) return NULL;
    chunk *c = calloc(1, sizeof(chunk) + cap);
    if (c) c->cap = cap;
    return c;
}

void *svc_arena_alloc(svc_arena *a, size_t n)
{
    if (!a || n > SIZE_MAX - ALIGN) return NULL;
    n = n ? (n + ALIGN - 1) & ~(size_t)(ALIGN - 1) : ALIGN;
    chunk *c = a->head;
    if (c && c->cap - c->used >= n) {
        void *p = c->data + c->used;
        c->used += n;
        return p;
    }
    /* A big block gets a chunk of its own, linked behind the current one so that the
     * space left there keeps serving small allocations. */
    bool own = n > CHUNK_SIZE / 4;
    chunk *nc = chunk_new(own ? n : CHUNK_SIZE);
    if (!nc) return NULL;
    nc->used = n;
    if (own && c) {
        nc->next = c->next;
        c->next = nc;
    } else {
        nc->next = c;
        a->head = nc;
    }
    return nc->data;
}

char *svc_arena_strndup(svc_arena *a, const char *p, size_t n)
{
    if (n == SIZE_MAX) return NULL;
    char *s = svc_arena_alloc(a, n + 1);
    if (s && n) memcpy(s, p, n);
    return s;
}

char *svc_arena_printf(svc_arena *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : svc_arena_alloc(a, (size_t)n + 1);
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}
