/* SPDX-License-Identifier: MIT */
/* What a benchmark's server of the Bench service (bench.svc) runs: the handlers that answer
 * at once, and the SIGTERM handler that stops the server (shmrpc-bench's shm:// and tcp://
 * rows, shmrpc-bench-inflight, shmrpc-bench-stall). Include it after the generated bench.h
 * of the target. */
#ifndef SHMRPC_BENCH_HANDLERS_H
#define SHMRPC_BENCH_HANDLERS_H

#include "bench.h"

/* pass: the record back as it came. */
int bench_handle_pass(shmrpc_ctx *ctx, const bench_Record *r, bench_Record *out);

/* echo: the request's bytes back, not copied. */
int bench_handle_echo(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out);

/* add: a + b. */
int bench_handle_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out);

/* The three above, and work answered as echo (no time spent in the handler). */
extern const Bench_handlers bench_plain_handlers;

/* The server this process serves, which bench_on_term stops. */
extern shmrpc_server *bench_server;

/* For SIGTERM (signal or sigaction): shmrpc_server_stop(bench_server). */
void bench_on_term(int sig);

#endif
