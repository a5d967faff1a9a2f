/* SPDX-License-Identifier: MIT */
/* Counts allocations by wrapping malloc, calloc and realloc at link time (-Wl,--wrap),
 * which also covers the statically linked runtime. */
#include <stddef.h>

#include "alloc_count.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

static unsigned long allocations;

void *__wrap_malloc(size_t n)
{
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __real_realloc(p, n);
}

unsigned long alloc_count(void)
{
    return __atomic_load_n(&allocations, __ATOMIC_RELAXED);
}

void alloc_count_reset(void)
{
    __atomic_store_n(&allocations, 0, __ATOMIC_RELAXED);
}
