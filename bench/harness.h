/* SPDX-License-Identifier: MIT */
/* The shmrpc-bench harness: a table of cases, each measured in real processes with a
 * bounded lifetime, and the statistics and output that all cases share. */
#ifndef SHMRPC_BENCH_HARNESS_H
#define SHMRPC_BENCH_HARNESS_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "clock.h" /* bench_now_ns */

#define BENCH_MAX_CLIENTS 64
#define BENCH_MAX_PROCS 96
#define BENCH_MAX_VS 4
#define BENCH_MAX_TURNS 1024

typedef struct bench_run bench_run;

/* One round trip of client `client`'s call number seq; 0 when the reply was right. */
typedef int (*bench_call_fn)(void *arg, uint64_t seq);

/* Runs one measurement of a row of the table: starts the row's processes with
 * bench_spawn_server and bench_spawn_client (each client runs bench_client_loop, which
 * fills in the latency samples and call counts of run->sh), then returns
 * bench_reap(run, ...). Every parameter it needs is in run->c (payload, clients, workers,
 * pinned, arg). A non-zero return fails the row; the program then exits 1. */
typedef int (*bench_case_fn)(bench_run *run);

typedef enum bench_metric {
    BENCH_P50 = 0, /* our p50 divided by the reference's p50: lower is better */
    BENCH_CALLS,   /* our calls/s divided by the reference's calls/s: higher is better */
    BENCH_BATCH,   /* our batch-timed time per call divided by the reference's: lower is
                      better; no clock read or stored sample inside either */
    BENCH_TURNS,   /* as BENCH_BATCH, against the row's pair (bench_case.pair) measured in
                      turns with it in the row's own processes: the median over the turns
                      of the ratio of the two. The reference row names what the pair is. */
} bench_metric;

/* A comparison printed with the row, as the JSON field `key`. */
typedef struct bench_vs {
    const char *key; /* e.g. "ratio_to_spin" */
    const char *ref; /* the id of an earlier row, e.g. "spin/raw/16/1x1" (see bench_row_id) */
    bench_metric metric;
} bench_vs;

typedef struct bench_pair bench_pair;

/* Starts the server of a row's pair (bench_case.pair) with bench_spawn_server, before the
 * row's own processes, and returns the pair, or NULL with run->err set. */
typedef bench_pair *(*bench_pair_fn)(bench_run *run);

/* A row of the table. */
typedef struct bench_case {
    const char *name;      /* plainly: "raw", "add", "raw-sleep", "raw-pinned" */
    const char *transport; /* "spin", "futex", "yield", "unix", "tcp-raw", "tcp", "shm" */
    size_t payload;        /* bytes sent each way per call */
    int clients, workers;
    bool pinned;       /* every process of the row on CPU 0 (sched_setaffinity) */
    bench_case_fn run; /* the measurement */
    const void *arg;   /* for run, e.g. a wait mode */
    bench_vs vs[BENCH_MAX_VS];
    /* A baseline that the row's one client measures in turns with its own calls, so that
     * both see the machine as it is at that moment (BENCH_TURNS): on a VM whose vCPUs move
     * between cores, two rows a second apart can compare a near core with a far one. */
    bench_pair_fn pair;
    const char *note; /* shown by --list */
} bench_case;

/* What the row's processes share with the harness: one MAP_SHARED|MAP_ANONYMOUS mapping
 * per row, made before any fork. */
typedef struct bench_shared {
    alignas(64) _Atomic int32_t ready;    /* clients that entered bench_client_loop */
    alignas(64) _Atomic int64_t start_ns; /* the measured window (CLOCK_MONOTONIC), set by */
    _Atomic int64_t stop_ns;              /* the last client to become ready; 0 before */
    alignas(64) _Atomic uint32_t quit;    /* set by bench_reap once every client is done */
    /* Calls completed in the window, per client, written once by it at its end; its
     * latency samples are the last min(timed[client], cap) in its ring of run->lat, and
     * its batches the last min(batches[client], bcap) in its ring of run->batch. */
    alignas(64) uint64_t calls[BENCH_MAX_CLIENTS];
    alignas(64) uint64_t timed[BENCH_MAX_CLIENTS];
    alignas(64) uint64_t batches[BENCH_MAX_CLIENTS];
    /* With a pair (one client): each turn's time per call of the row's batches and of the
     * pair's, the turns taken, and the window's time that went to the pair. */
    alignas(64) double turn_row[BENCH_MAX_TURNS];
    double turn_pair[BENCH_MAX_TURNS];
    uint32_t turns;
    int64_t paired_ns;
} bench_shared;

/* What a row's client needs of its pair, set up by the pair function before the fork:
 * one round trip of the pair, and the word its server sleeps on while it is 1 (while the
 * row's calls run). Its memory (mem, len) is freed after the row. */
struct bench_pair {
    bench_call_fn call;
    void *arg;
    _Atomic uint32_t *park;
    void *mem;
    size_t len;
};

typedef enum bench_role { BENCH_SERVER, BENCH_CLIENT } bench_role;

struct bench_run {
    const bench_case *c;
    int64_t warmup_ns;   /* calls before the window warm caches and wake CPUs */
    int64_t duration_ns; /* the window every client measures in */
    bench_shared *sh;
    bench_pair *pair; /* the row's pair, or NULL */
    int64_t *lat;     /* clients * cap latency samples (shared), a ring per client */
    size_t cap;       /* samples per client, a power of two */
    double *batch;    /* clients * bcap batch-timed ns per call (shared), a ring per client */
    size_t bcap;      /* batches per client, a power of two */
    int64_t due_ns;   /* the parent's deadline: stragglers get SIGKILL */
    int nproc;
    pid_t pid[BENCH_MAX_PROCS];
    bench_role role[BENCH_MAX_PROCS];
    bool exited[BENCH_MAX_PROCS];
    char err[160]; /* why the row failed */
};

/* A child's body; its return value becomes the exit status (0: success). */
typedef int (*bench_child_fn)(bench_run *run, int idx, void *arg);

/* Forks a child that runs fn(run, idx, arg) pinned as the row says, under an alarm()
 * watchdog, and _exits. Returns 0, or -1 with run->err set; call bench_reap either way. */
int bench_spawn_server(bench_run *run, bench_child_fn fn, int idx, void *arg);
int bench_spawn_client(bench_run *run, bench_child_fn fn, int idx, void *arg);

/* The client side of every case: calls until the window has passed, and records the
 * samples and counts of the window into run->sh. It measures both ways in turn, in runs
 * of the same number of calls: timing each call with one clock read (the p50 and p99:
 * each sample includes that read and the store of the sample), then timing a batch of
 * calls between two clock reads (the batch figure: the time per call with nothing else
 * in the loop). A batch lasts about BENCH_BATCH_NS, from the mean of the calls timed
 * just before it. Warm-up calls run while the other clients start. With a pair
 * (run->pair), the pair takes a turn after every 10 ms of the window: its server
 * woken, its calls warmed up and then timed as one batch, its server parked again, and the
 * row's calls warmed up again; none of that counts in the row's figures. Returns 0 or the
 * first error. */
#define BENCH_BATCH_NS ((int64_t)100000)
int bench_client_loop(bench_run *run, int client, bench_call_fn call, void *arg);

/* For servers: true once every client is done. */
static inline bool bench_quit(const bench_run *run)
{
    return atomic_load_explicit(&run->sh->quit, memory_order_relaxed) != 0;
}

/* Waits for every client (bounded by the row's deadline), then sets sh->quit and calls
 * stop(stop_arg) (if not NULL) to wake servers that sleep, waits for the servers, and
 * SIGKILLs whatever is left at the deadline. Every child is reaped. Returns 0 when every
 * child exited 0, else -1 with run->err set. */
int bench_reap(bench_run *run, void (*stop)(void *arg), void *stop_arg);

/* MAP_SHARED|MAP_ANONYMOUS memory, zeroed and page aligned; NULL on failure. */
void *bench_shared_alloc(size_t n);
void bench_shared_free(void *p, size_t n);

/* "transport/name/payload/CLIENTSxWORKERS", the id that bench_vs.ref names. */
void bench_row_id(const bench_case *c, char *out, size_t n);

/* The whole program: runs the selected rows of the table and prints them. */
int bench_main(int argc, char **argv, const bench_case *table, size_t n);

#endif
