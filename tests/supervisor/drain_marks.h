/* SPDX-License-Identifier: MIT */
/* What drain_module.c writes and drain_test.c reads: one mark per call id, in a file the
 * module maps shared at init (its path in SUP_DRAIN_MARKS) and the test maps too. */
#ifndef SHMRPC_TEST_DRAIN_MARKS_H
#define SHMRPC_TEST_DRAIN_MARKS_H

#include <stddef.h>
#include <stdint.h>

#define DRAIN_CLIENTS 3
#define DRAIN_CLIENT_IDS 20000 /* client k calls with ids k * this + 0, 1, 2, ... */
#define DRAIN_IDS (DRAIN_CLIENTS * DRAIN_CLIENT_IDS)
#define DRAIN_WORK_MS 10 /* how long work() sleeps between its two marks */

typedef struct drain_mark {
    uint32_t started;  /* worker: +1 when work(id) begins; test: read after the run */
    uint32_t finished; /* worker: +1 when work(id) has slept; test: read */
    int64_t start_ns;  /* worker: CLOCK_MONOTONIC when it began; test: read */
    int64_t finish_ns; /* worker: CLOCK_MONOTONIC when it finished; test: read */
} drain_mark;

_Static_assert(sizeof(drain_mark) == 24, "drain_mark layout");
_Static_assert(offsetof(drain_mark, finished) == 4, "drain_mark layout");
_Static_assert(offsetof(drain_mark, start_ns) == 8, "drain_mark layout");
_Static_assert(offsetof(drain_mark, finish_ns) == 16, "drain_mark layout");

#define DRAIN_MARKS_BYTES ((size_t)DRAIN_IDS * sizeof(drain_mark))

#endif
