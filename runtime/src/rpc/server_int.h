/* SPDX-License-Identifier: MIT */
/* The server's insides, shared by server.c (which fills them: register, listen, stop)
 * and dispatch.c (which the transports read them through). */
#ifndef SHMRPC_SRC_SERVER_INT_H
#define SHMRPC_SRC_SERVER_INT_H

#include <stdatomic.h>

#include "rpc/faults.h"
#include "rpc/intercept.h"
#include "rpc/rpc.h"

struct shmrpc_server {
    size_t max_msg;
    shmrpc_wait_opts wait;
    /* The opts it was made with, for its transports to read their part of: checked by
     * each transport (shmrpc__transport_check_opts), the secret copied to secret and the
     * TLS files' names to tls (cert, key, ca, server_name; heap copies or NULL). */
    shmrpc_server_opts opts;
    uint8_t secret[SHMRPC_SECRET_MAX];
    char *tls[4];
    const shmrpc_service *svc; /* NULL until registered; then read-only */
    void *handlers;            /* our copy of the handler table */
    void *user;
    uint8_t *in_place;      /* per method, as shmrpc_server_set_in_place set it: SHMRPC__READ_* */
    uint8_t *streams;       /* per method, which way it streams (SHMRPC__STREAM_*); NULL: none */
    shmrpc__faults *faults; /* SHMRPC_FAULTS's server entries, bound at register; or NULL */
    shmrpc__icpts *icpt;    /* its interceptors, set before listen; or NULL */
    shmrpc__listener *listener; /* NULL until listening */
    _Atomic int stop;           /* set by shmrpc_server_stop() */
    _Atomic int want;           /* workers wanted: serve(n), then set_workers() */
};

#endif
