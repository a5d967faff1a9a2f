/* SPDX-License-Identifier: MIT */
/* The shm:// and tcp:// rows of shmrpc-bench: the generated bench service over the real
 * transport. */
#ifndef SHMRPC_BENCH_SHM_CASES_H
#define SHMRPC_BENCH_SHM_CASES_H

#include <stdbool.h>

#include "harness.h"

typedef struct bench_shm_opts {
    const char *wait;     /* SHMRPC_WAIT for every process of the row: adaptive, spin, sleep */
    const char *method;   /* "echo" (raw), "add" (typed msgpack), "work" (a 20 us handler) */
    bool tcp;             /* tcp://127.0.0.1:PORT (a free port) instead of shm:// */
    bool text;            /* the payload is English-like text (compressible), not zeros */
    unsigned compression; /* what the client offers (SHMRPC_COMPRESS_*); 0: the default */
    bool tls;             /* tcp:// over TLS 1.3: a certificate made for the row by the openssl
                           * program (in a temporary folder, removed after it), checked by
                           * the clients */
    int in_flight;        /* tcp:// echo: calls kept in flight on the one connection with
                           * shmrpc_client_start (each sample waits for the oldest and starts
                           * another, so its time is between answers, not a call's latency);
                           * 0: one call at a time through the blocking stub */
    bool loan;            /* echo with loaned buffers: the client writes its request into
                           * shmrpc_client_loan's room and reads the answer where it came;
                           * the handler reads the request in place and answers in its loan */
    bool traced;          /* the client sends a traceparent (metadata, docs/metadata.md) and
                           * the client and the server each have one interceptor, which reads
                           * the call's metadata */
} bench_shm_opts;

/* A shm:// server of the bare add (no metadata, no interceptor), as a pair that the row's
 * one client takes turns with (harness.h): the traced row's reference, timed on the same
 * cores at nearly the same moment. (Over tcp:// a wake-up dominates a call, and the pair's
 * turn, which follows a warm-up, would not be timed as the row's calls are.) */
bench_pair *bench_bare_add_pair(bench_run *run);

/* A server with run->c->workers workers and run->c->clients client processes calling
 * one method in a loop. arg: a bench_shm_opts. */
int bench_shm(bench_run *run);

#endif
