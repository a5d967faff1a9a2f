/* SPDX-License-Identifier: MIT */
/* A hand-written service descriptor, as shmrpcgen would generate it, for the runtime's
 * tests: "Calc" with add, big, echo, fail and positive, plus client-side stubs. */
#ifndef CALC_SERVICE_H
#define CALC_SERVICE_H

#include <shmrpc.h>

typedef struct calc_handlers {
    int (*add)(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *sum);
    /* n bytes of 'x' as a raw result */
    int (*big)(shmrpc_ctx *ctx, uint64_t n, shmrpc_buf *out);
    int (*echo)(shmrpc_ctx *ctx, shmrpc_bytes in, shmrpc_buf *out);
    int (*fail)(shmrpc_ctx *ctx);
    int (*positive)(shmrpc_ctx *ctx);
} calc_handlers;

enum { CALC_ADD, CALC_BIG, CALC_ECHO, CALC_FAIL, CALC_POSITIVE, CALC_N };

extern const shmrpc_method_info calc_methods[CALC_N];
extern const shmrpc_service_info calc_service_info;
extern const shmrpc_service calc_service;

/* Handlers that do what the names say; the add handler counts calls in user (an
 * unsigned long, atomically) when user is set. */
extern const calc_handlers calc_default_handlers;

/* Client stubs. */
int calc_add(shmrpc_client *c, int64_t a, int64_t b, int64_t *sum);
int calc_echo(shmrpc_client *c, shmrpc_bytes in, shmrpc_bytes *out);
int calc_big(shmrpc_client *c, uint64_t n, shmrpc_bytes *out);
int calc_fail(shmrpc_client *c);
int calc_positive(shmrpc_client *c);

#endif
