/* SPDX-License-Identifier: MIT */
/* stream-server ADDRESS: serves stream.svc's Streamer at ADDRESS until SIGTERM, for the
 * tests of what calls streams from outside C (ctl_stream_test.sh: shmrpcctl call, and
 * Python's). ticks, slow and twice are the tests' own (streamer_handlers.c); chunks fills its
 * items with letters, to print as JSON text; forever sends until its client goes; the
 * others fail. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "serve_until_term.h"
#include "stream.h"
#include "streamer_handlers.h"

static int forever(shmrpc_ctx *ctx, int64_t pad)
{
    (void)pad;
    for (int64_t i = 0;; i++) {
        int rc = streamer_forever_write(ctx, i);
        if (rc) return rc;
    }
}

static int not_here(shmrpc_ctx *ctx)
{
    return shmrpc_ctx_error(ctx, SHMRPC_EHANDLER, "not served by stream-server");
}

static int chunks(shmrpc_ctx *ctx, shmrpc_bytes spec)
{
    char text[64];
    snprintf(text, sizeof text, "%.*s", (int)(spec.len < 63 ? spec.len : 63),
             (const char *)spec.ptr);
    long n, size;
    if (sscanf(text, "%ld %ld", &n, &size) != 2 || n < 0 || size < 0 || size > 1 << 20)
        return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "bad spec '%s'", text);
    uint8_t *item = shmrpc_arena_alloc(shmrpc_ctx_arena(ctx), (size_t)size + 1, 1);
    if (!item) return SHMRPC_ENOMEM;
    for (long k = 0; k < n; k++) {
        memset(item, 'a' + (int)(k % 26), (size_t)size);
        int rc = streamer_chunks_write(ctx, shmrpc_bytes_of(item, (size_t)size));
        if (rc) return rc;
    }
    return 0;
}

static const Streamer_handlers handlers = {.ticks = test_ticks,
                                           .forever = forever,
                                           .quiet = not_here,
                                           .deaf = not_here,
                                           .chunks = chunks,
                                           .slow = test_slow,
                                           .twice = test_twice};

int main(int argc, char **argv)
{
    return test_serve_until_term("stream-server", argc, argv, &Streamer_service, &handlers);
}
