/* SPDX-License-Identifier: MIT */
/* What a benchmark's server of the Bench service runs (bench_handlers.h). */
#include "bench_handlers.h"

int bench_handle_pass(shmrpc_ctx *ctx, const bench_Record *r, bench_Record *out)
{
    (void)ctx;
    *out = *r;
    return 0;
}

int bench_handle_echo(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    (void)ctx;
    *out = data;
    return 0;
}

int bench_handle_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    (void)ctx;
    *out = a + b;
    return 0;
}

const Bench_handlers bench_plain_handlers = {.pass = bench_handle_pass,
                                             .echo = bench_handle_echo,
                                             .add = bench_handle_add,
                                             .work = bench_handle_echo};

shmrpc_server *bench_server;

void bench_on_term(int sig)
{
    (void)sig;
    shmrpc_server_stop(bench_server);
}
