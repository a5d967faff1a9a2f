/* SPDX-License-Identifier: MIT */
/* The handlers of tests/common/calls.svc, and what they share with the test process. */
#ifndef SHMRPC_TEST_CALLS_HANDLERS_H
#define SHMRPC_TEST_CALLS_HANDLERS_H

#include <stdint.h>

#include "calls.h"

#define CALLS_NAPS_LOGGED 256

/* Shared between the test and its servers' workers: calls_shared_map() maps it
 * MAP_SHARED before any fork. */
typedef struct calls_shared {
    _Atomic int32_t napping; /* the pid of a worker inside nap(), or 0 */
    _Atomic int64_t calls;   /* handler calls, all workers */
    _Atomic int32_t running; /* naps running now, all workers and threads */
    _Atomic int32_t most;    /* the most naps that ran at once (the test resets it) */
    /* Each nap's ms, in the order the naps began, so that a test that gives each call its
     * own ms (a tag) can tell which calls ran and how often: the first CALLS_NAPS_LOGGED
     * naps since the test set naps_begun to 0, which counts them all. */
    _Atomic int32_t naps_begun;
    uint32_t nap_ms[CALLS_NAPS_LOGGED];
} calls_shared;

extern calls_shared *sh;
extern const Calls_handlers calls_test_handlers;

/* Maps sh; 0, or -1 when mmap failed. */
int calls_shared_map(void);

#endif
