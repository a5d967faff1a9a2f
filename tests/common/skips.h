/* SPDX-License-Identifier: MIT */
/* Tests that cannot run here say so. cmocka's skip() ends a test as SKIPPED but its group
 * still returns 0, so ctest would count the program as passed. A test that cannot run
 * ends by test_skip(); one that ran but left a part out calls test_skip_part(); and main
 * returns test_exit(failed): 77 when something was skipped and nothing failed, which
 * shmrpc_add_unit_test tells ctest is a skip (SKIP_RETURN_CODE). */
#ifndef SHMRPC_TEST_SKIPS_H
#define SHMRPC_TEST_SKIPS_H

/* The skips of this test program (one per program: each test file is its own). */
static inline int *test_skips(void)
{
    static int n;
    return &n;
}

/* Counts a part left out, says why on the test's output, and goes on. */
#define test_skip_part(...)                                                                \
    do {                                                                                   \
        ++*test_skips();                                                                   \
        print_message("# SKIPPED part of %s: ", __func__);                                 \
        print_message(__VA_ARGS__);                                                        \
        print_message("\n");                                                               \
    } while (0)

/* Ends the current test as skipped, saying why. */
#define test_skip(...)                                                                     \
    do {                                                                                   \
        ++*test_skips();                                                                   \
        print_message("# SKIPPED %s: ", __func__);                                         \
        print_message(__VA_ARGS__);                                                        \
        print_message("\n");                                                               \
        skip();                                                                            \
    } while (0)

/* What main returns: the failures, or 77 when none failed and something was skipped. */
static inline int test_exit(int failed)
{
    return failed != 0 ? failed : *test_skips() != 0 ? 77 : 0;
}

#endif
