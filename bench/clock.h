/* SPDX-License-Identifier: MIT */
/* The clock and the median that the benchmark programs time with. */
#ifndef SHMRPC_BENCH_CLOCK_H
#define SHMRPC_BENCH_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t bench_now_ns(void);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t bench_now_ms(void);

/* The median of the n values at v (n >= 1), which it sorts in place. */
double bench_median(double *v, int n);

#endif
