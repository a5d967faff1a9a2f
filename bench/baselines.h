/* SPDX-License-Identifier: MIT */
/* The baseline cases of shmrpc-bench: what a transport on this machine is compared with. */
#ifndef SHMRPC_BENCH_BASELINES_H
#define SHMRPC_BENCH_BASELINES_H

#include "harness.h"

typedef enum bench_wait {
    BENCH_WAIT_SPIN,  /* busy-poll the word (pause) */
    BENCH_WAIT_YIELD, /* sched_yield() until the word changes */
    BENCH_WAIT_FUTEX, /* FUTEX_WAIT every time, FUTEX_WAKE after every change */
} bench_wait;

typedef struct bench_handoff_opts {
    bench_wait wait;
    bool one_line; /* the payload shares the sequence word's cache line (up to 60 B) */
} bench_handoff_opts;

/* Echo between one client and one server process through a shared mapping: the client
 * writes the payload and bumps a word; the server waits on it, copies the payload into
 * the reply buffer and bumps the reply word; the client waits on that and copies the
 * reply out. arg: a bench_handoff_opts. */
int bench_handoff(bench_run *run);

/* The limit of a cross-process call on this machine: one 64-byte line handed back and
 * forth. The client writes its call number and payload (up to 56 B) into the line and
 * an odd turn; the server spins until it sees it, writes the payload back and the next
 * (even) turn; the client spins until it sees that. No clock read, no other line. Read
 * its batch figure: the per-call figures add a clock read and a stored sample to a loop
 * that has nothing else in it. 1x1 only. */
int bench_line(bench_run *run);

/* The same line as a pair (bench_case.pair): a row's client takes turns with it, 16 B. */
bench_pair *bench_line_pair(bench_run *run);

typedef struct bench_stream_opts {
    bool tcp; /* TCP loopback with TCP_NODELAY instead of a Unix stream socket */
} bench_stream_opts;

/* Length-prefixed echo over a connected stream socket per client; client i is served by
 * worker i % workers, which blocks in read() when it has one connection and uses epoll
 * when it has several. arg: a bench_stream_opts. */
int bench_stream(bench_run *run);

#endif
