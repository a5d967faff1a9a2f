/* SPDX-License-Identifier: MIT */
/* Handlers of stream.svc's Streamer that the tests of streams share (stream_test.c,
 * stream_shm_test.c and stream-server): each compiled into its target, with the stream.h
 * generated for it. */
#ifndef SHMRPC_TEST_STREAMER_HANDLERS_H
#define SHMRPC_TEST_STREAMER_HANDLERS_H

#include "stream.h"

/* n ticks, at = 0 .. n-1, with their notes and lists; after fail_after of them (when >= 0)
 * it fails with status fail, or with fail = 1 sends an item that does not decode. */
int test_ticks(shmrpc_ctx *ctx, int64_t n, int64_t fail_after, int32_t fail);

/* n i64s 0 .. n-1, one every every_ms milliseconds. */
int test_slow(shmrpc_ctx *ctx, int64_t n, int64_t every_ms);

/* 2x. */
int test_twice(shmrpc_ctx *ctx, int64_t x, int64_t *out);

#endif
