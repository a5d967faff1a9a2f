/* SPDX-License-Identifier: MIT */
/* stream-server ADDRESS: serves stream.svc's Streamer at ADDRESS until SIGTERM, for the
 * tests of what calls streams from outside C (ctl_stream_test.sh: shmrpcctl call). ticks
 * and chunks as stream_test.c's; forever sends until its client goes; the others fail. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "stream.h"

static int ticks(shmrpc_ctx *ctx, int64_t n, int64_t fail_after, int32_t fail)
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

static int slow(shmrpc_ctx *ctx, int64_t n, int64_t every_ms)
{
    for (int64_t i = 0; i < n; i++) {
        struct timespec ts = {every_ms / 1000, every_ms % 1000 * 1000000};
        nanosleep(&ts, NULL);
        int rc = streamer_slow_write(ctx, i);
        if (rc) return rc;
    }
    return 0;
}

static int twice(shmrpc_ctx *ctx, int64_t x, int64_t *out)
{
    (void)ctx;
    *out = 2 * x;
    return 0;
}

static const Streamer_handlers handlers = {.ticks = ticks,
                                           .forever = forever,
                                           .quiet = not_here,
                                           .deaf = not_here,
                                           .chunks = chunks,
                                           .slow = slow,
                                           .twice = twice};

static shmrpc_server *server;

static void on_term(int sig)
{
    (void)sig;
    shmrpc_server_stop(server); /* async-signal-safe (server.h) */
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: stream-server ADDRESS\n");
        return 2;
    }
    int rc = shmrpc_server_new(&server, NULL);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    if (rc == 0) rc = shmrpc_server_register(server, &Streamer_service, &handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(server, argv[1]);
    if (rc == 0) rc = shmrpc_server_serve(server, 2);
    if (rc) fprintf(stderr, "stream-server: %s\n", shmrpc_errmsg());
    shmrpc_server_free(server);
    return rc ? 1 : 0;
}
