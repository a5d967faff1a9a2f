/* SPDX-License-Identifier: MIT */
/* shmrpc-bench's queue rows (bench/queue_cases.c). */
#ifndef SHMRPC_BENCH_QUEUE_CASES_H
#define SHMRPC_BENCH_QUEUE_CASES_H

#include "harness.h"

/* Echo over shared-memory queues: each client pushes its request (its index, then the
 * payload) to one queue that the workers pop, and pops the reply from a queue of its own.
 * The queues wait as the library does by default (spin, then sleep). */
int bench_queue_echo(bench_run *run);

#endif
