/* SPDX-License-Identifier: MIT */
/* shmrpc_arena: alignment, growth, reset that keeps memory, limits, overflow. */
#include <string.h>

#include "unit.h"

static void alignment(void **state)
{
    (void)state;
    shmrpc_arena *a = shmrpc_arena_new(256);
    assert_non_null(a);
    for (size_t align = 1; align <= 64; align *= 2) {
        for (int i = 0; i < 20; i++) {
            assert_non_null(shmrpc_arena_alloc(a, 1, 1)); /* knock the cursor off */
            uint8_t *p = shmrpc_arena_alloc(a, 24, align);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % align, 0);
            memset(p, 0xab, 24);
        }
    }
    assert_null(shmrpc_arena_alloc(a, 8, 128));   /* above 64 */
    assert_null(shmrpc_arena_alloc(a, 8, 24));    /* not a power of two */
    assert_non_null(shmrpc_arena_alloc(a, 8, 0)); /* 0 reads as 1 */
    shmrpc_arena_free(a);
}

static void grows_and_counts(void **state)
{
    (void)state;
    shmrpc_arena *a = shmrpc_arena_new(64);
    assert_int_equal(shmrpc_arena_used(a), 0);
    uint8_t *big = shmrpc_arena_alloc(a, 10000, 8);
    assert_non_null(big);
    memset(big, 1, 10000);
    assert_int_equal(shmrpc_arena_used(a), 10000);
    assert_true(shmrpc__arena_blocks(a) >= 2);
    /* Zero-size allocations still succeed, so NULL always means failure. */
    assert_non_null(shmrpc_arena_alloc(a, 0, 1));
    shmrpc_arena_free(a);
    shmrpc_arena_free(NULL);
}

static void fill(shmrpc_arena *a)
{
    for (size_t i = 1; i <= 200; i++) {
        uint8_t *p = shmrpc_arena_alloc(a, i * 7, i % 2 ? 8 : 16);
        assert_non_null(p);
        memset(p, (int)i, i * 7);
    }
}

static void reset_keeps_memory(void **state)
{
    (void)state;
    shmrpc_arena *a = shmrpc_arena_new(0);
    fill(a);
    size_t blocks = shmrpc__arena_blocks(a);
    size_t held = shmrpc__arena_held(a);
    assert_true(blocks > 1);
    shmrpc_arena_reset(a);
    assert_int_equal(shmrpc_arena_used(a), 0);
    /* Folded into one block as large as all the blocks were. */
    assert_int_equal(shmrpc__arena_blocks(a), 1);
    assert_int_equal(shmrpc__arena_held(a), held);
    /* The same allocations again fit without a new block. */
    for (int round = 0; round < 3; round++) {
        fill(a);
        assert_int_equal(shmrpc__arena_blocks(a), 1);
        assert_int_equal(shmrpc__arena_held(a), held);
        shmrpc_arena_reset(a);
    }
    shmrpc_arena_free(a);
}

static void limit(void **state)
{
    (void)state;
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_arena_set_limit(a, 1000);
    assert_non_null(shmrpc_arena_alloc(a, 600, 1));
    assert_null(shmrpc_arena_alloc(a, 600, 1));
    assert_non_null(shmrpc_arena_alloc(a, 400, 1)); /* exactly to the limit */
    assert_null(shmrpc_arena_alloc(a, 1, 1));
    assert_int_equal(shmrpc_arena_used(a), 1000);
    assert_null(shmrpc_arena_alloc(a, SIZE_MAX, 1));
    shmrpc_arena_reset(a);
    assert_non_null(shmrpc_arena_alloc(a, 1000, 1));
    shmrpc_arena_set_limit(a, 0); /* no cap */
    assert_non_null(shmrpc_arena_alloc(a, 100000, 1));
    shmrpc_arena_free(a);

    /* A cap keeps growth near what it allows, not at the doubling schedule. */
    a = shmrpc_arena_new(4096);
    shmrpc_arena_set_limit(a, 200000);
    assert_non_null(shmrpc_arena_alloc(a, 150000, 1));
    assert_non_null(shmrpc_arena_alloc(a, 50000, 1));
    assert_true(shmrpc__arena_held(a) <= 4096 + 200000 + 2 * 64);
    shmrpc_arena_free(a);
}

static void calloc_and_strndup(void **state)
{
    (void)state;
    shmrpc_arena *a = shmrpc_arena_new(0);
    uint64_t *z = shmrpc_arena_calloc(a, 100, sizeof *z, 8);
    assert_non_null(z);
    for (int i = 0; i < 100; i++)
        assert_int_equal(z[i], 0);
    assert_null(shmrpc_arena_calloc(a, SIZE_MAX / 2, 3, 1)); /* count * size overflows */
    assert_null(shmrpc_arena_calloc(a, 3, SIZE_MAX / 2, 1));
    assert_null(shmrpc_arena_alloc(a, SIZE_MAX - 10, 1));
    assert_non_null(shmrpc_arena_calloc(a, 0, 8, 8));
    char *s = shmrpc_arena_strndup(a, "hello world", 5);
    assert_string_equal(s, "hello");
    s = shmrpc_arena_strndup(a, "a\0b", 3);
    assert_memory_equal(s, "a\0b\0", 4);
    assert_null(shmrpc_arena_strndup(a, "x", SIZE_MAX));
    shmrpc_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alignment),          cmocka_unit_test(grows_and_counts),
        cmocka_unit_test(reset_keeps_memory), cmocka_unit_test(limit),
        cmocka_unit_test(calloc_and_strndup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
