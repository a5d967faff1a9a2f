/* SPDX-License-Identifier: MIT */
/* The benchmarks' compressible payload: English-like text. */
#ifndef SHMRPC_BENCH_TEXT_H
#define SHMRPC_BENCH_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Fills p with n bytes of words drawn from a small vocabulary (the same bytes every
 * time): it compresses about as well as prose. */
void bench_fill_text(uint8_t *p, size_t n);

#endif
