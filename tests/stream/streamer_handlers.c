/* SPDX-License-Identifier: MIT */
/* Handlers of stream.svc's Streamer that the tests of streams share (streamer_handlers.h). */
#include "streamer_handlers.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int test_ticks(shmrpc_ctx *ctx, int64_t n, int64_t fail_after, int32_t fail)
{
    int64_t seen[3];
    for (int64_t i = 0; i < n; i++) {
        if (i == fail_after && fail == 1) {
            static const uint8_t bad[] = {0xc1}; /* msgpack's one unused byte */
            int rc = shmrpc_ctx_send(ctx, bad, sizeof bad);
            if (rc) return rc;
            continue;
        }
        if (i == fail_after) return shmrpc_ctx_error(ctx, fail, "failed after %lld", (long long)i);
        char note[32];
        snprintf(note, sizeof note, "tick %lld", (long long)i);
        for (int k = 0; k < 3; k++)
            seen[k] = i * 10 + k;
        streamer_Tick t = {.at = i, .note = {note, strlen(note)}, .seen = {seen, (size_t)(i % 4)}};
        int rc = streamer_ticks_write(ctx, &t);
        if (rc) return rc;
    }
    return 0;
}

int test_slow(shmrpc_ctx *ctx, int64_t n, int64_t every_ms)
{
    for (int64_t i = 0; i < n; i++) {
        struct timespec ts = {every_ms / 1000, every_ms % 1000 * 1000000};
        nanosleep(&ts, NULL);
        int rc = streamer_slow_write(ctx, i);
        if (rc) return rc;
    }
    return 0;
}

int test_twice(shmrpc_ctx *ctx, int64_t x, int64_t *out)
{
    (void)ctx;
    *out = 2 * x;
    return 0;
}
