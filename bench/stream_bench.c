/* SPDX-License-Identifier: MIT */
/* shmrpc-bench-stream: a server stream of 16 B items over shm:// (the generated stubs, a
 * forked server with one worker) against ring/stream, a bare single-producer
 * single-consumer ring between two processes in the same run: the same 64 KiB of records
 * of the same shape ({len, left} and the item, 8-aligned), the producer publishing its
 * count after each item, the consumer copying each out and giving the room back every
 * quarter, both spinning. The ring is what the stream would be with nothing of shmrpc
 * around it: the ratio says what the transport costs. Rows alternate for ROUNDS rounds;
 * each prints items/s, and the ratio is the median of the rounds' (this machine is shared
 * and noisy: absolute figures drift, ratios hold). Usage: shmrpc-bench-stream
 * [SECONDS-PER-ROW [ROW]]. */
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fnmatch.h>

#include "args.h"
#include "clock.h"
#include "core/wait.h" /* shmrpc__cpu_relax, as the runtime spins */
#include "stream_bench.h"

#define ROUNDS 5
#define ITEM 16
#define CAP 65536u /* the ring's bytes: what a shm:// stream's ring holds */

/* --- ring/stream: the bare ring ------------------------------------------------------ */

struct ring {
    _Atomic uint32_t tail; /* bytes published: the producer's */
    char pad0[60];
    _Atomic uint32_t head; /* bytes taken: the consumer's */
    char pad1[60];
    _Atomic uint32_t stop; /* the consumer is done */
    char pad2[60];
    uint8_t recs[CAP];
};

static void ring_produce(struct ring *r)
{
    uint32_t tail = 0, rec = 8 + ITEM;
    uint8_t item[ITEM] = {0};
    for (uint64_t i = 0; !atomic_load_explicit(&r->stop, memory_order_relaxed); i++) {
        while (tail - atomic_load_explicit(&r->head, memory_order_acquire) > CAP - rec - 8) {
            if (atomic_load_explicit(&r->stop, memory_order_relaxed)) return;
            shmrpc__cpu_relax();
        }
        memcpy(item, &i, sizeof i);
        uint32_t head[2] = {ITEM, 0}, at = tail & (CAP - 1);
        memcpy(r->recs + at, head, 8);
        memcpy(r->recs + ((at + 8) & (CAP - 1)), item, ITEM); /* 8-aligned 24 B: never wraps */
        tail += rec;
        atomic_store_explicit(&r->tail, tail, memory_order_release);
    }
}

/* Items/s that the consumer took in seconds, or -1 when one was out of order. */
static double ring_row(double seconds)
{
    struct ring *r =
        mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        alarm(120);
        ring_produce(r);
        _exit(0);
    }
    uint32_t head = 0, pub = 0, rec = 8 + ITEM;
    uint64_t n = 0;
    uint8_t item[ITEM];
    bool bad = false;
    int64_t start = bench_now_ns(), end = start + (int64_t)(seconds * 1e9);
    while (!bad) {
        uint32_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (tail == head) {
            if (pub != head) atomic_store_explicit(&r->head, pub = head, memory_order_release);
            if ((n & 1023) == 0 && bench_now_ns() >= end) break;
            shmrpc__cpu_relax();
            continue;
        }
        for (; head != tail; head += rec, n++) {
            memcpy(item, r->recs + ((head + 8) & (CAP - 1)), ITEM);
            uint64_t i;
            memcpy(&i, item, sizeof i);
            bad |= i != n;
        }
        if (head - pub >= CAP / 4)
            atomic_store_explicit(&r->head, pub = head, memory_order_release);
        if ((n & 1023) < 64 && bench_now_ns() >= end) break;
    }
    double took = (double)(bench_now_ns() - start) / 1e9;
    atomic_store(&r->stop, 1);
    waitpid(pid, NULL, 0);
    munmap(r, sizeof *r);
    return bad ? -1 : (double)n / took;
}

/* --- shm/stream: the generated stubs over shm:// ------------------------------------- */

static int items(shmrpc_ctx *ctx, shmrpc_bytes spec)
{
    (void)spec;
    uint8_t item[ITEM] = {0};
    for (uint64_t i = 0;; i++) {
        memcpy(item, &i, sizeof i);
        int rc = stream_bench_items_write(ctx, shmrpc_bytes_of(item, ITEM));
        if (rc) return rc == SHMRPC_ECANCELLED ? 0 : rc;
    }
}

static const StreamBench_handlers handlers = {.items = items};

static char addr[64];
static shmrpc_server *server;

static void on_term(int sig)
{
    (void)sig;
    shmrpc_server_stop(server); /* async-signal-safe (server.h) */
}

/* The server, forked: it serves until SIGTERM, and dies with this process. */
static pid_t server_start(void)
{
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    alarm(300);
    shmrpc_server *s;
    int rc = shmrpc_server_new(&s, NULL);
    server = s;
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    if (rc == 0) rc = shmrpc_server_register(s, &StreamBench_service, &handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(s, addr);
    if (rc == 0) rc = shmrpc_server_serve(s, 1); /* until SIGTERM */
    if (rc) fprintf(stderr, "shmrpc-bench-stream: server: %s\n", shmrpc_errmsg());
    shmrpc_server_free(s);
    _exit(rc ? 1 : 0);
}

/* Items/s that one stream gave in seconds, or -1 (a failure, or an item out of order). */
static double shm_row(shmrpc_client *c, double seconds)
{
    shmrpc_stream *st;
    if (stream_bench_items_open(c, shmrpc_bytes_of("16", 2), &st) != 0) {
        fprintf(stderr, "shmrpc-bench-stream: open: %s\n", shmrpc_errmsg());
        return -1;
    }
    uint64_t n = 0;
    bool bad = false;
    shmrpc_bytes item;
    int64_t start = bench_now_ns(), end = start + (int64_t)(seconds * 1e9);
    for (; !bad; n++) {
        if ((n & 1023) == 0 && bench_now_ns() >= end) break;
        if (stream_bench_items_recv(st, &item) != 1) {
            fprintf(stderr, "shmrpc-bench-stream: recv: %s\n", shmrpc_errmsg());
            bad = true;
            break;
        }
        uint64_t i;
        memcpy(&i, item.ptr, sizeof i);
        bad |= item.len != ITEM || i != n;
    }
    double took = (double)(bench_now_ns() - start) / 1e9;
    shmrpc_stream_close(st);
    return bad ? -1 : (double)n / took;
}

int main(int argc, char **argv)
{
    static const char usage[] = "usage: shmrpc-bench-stream [SECONDS-PER-ROW [ROW]]\n"
                                "  SECONDS-PER-ROW: 0 < s <= 60, default 1; ROW: only the rows\n"
                                "  named so, a shell pattern (e.g. 'shm/*')\n";
    double seconds = 1.0;
    const char *only;
    int rc = bench_args_rows(argc, argv, usage, &seconds, &only);
    if (rc >= 0) return rc;
    bool ring = !only || fnmatch(only, "ring/stream/16", 0) == 0;
    bool shm = !only || fnmatch(only, "shm/stream/16", 0) == 0;
    snprintf(addr, sizeof addr, "shm://stream_bench_%d", (int)getpid());
    pid_t srv = shm ? server_start() : 0;
    shmrpc_client *c = NULL;
    if (shm) {
        rc = shmrpc_client_new(&c, &StreamBench_service_info, NULL);
        for (int i = 0; rc == 0 && i < 500 && shmrpc_client_connect(c, addr) != 0; i++)
            usleep(10000); /* the server starts */
        if (rc != 0 || shmrpc_client_connect(c, addr) != 0) {
            fprintf(stderr, "shmrpc-bench-stream: connect %s: %s\n", addr, shmrpc_errmsg());
            kill(srv, SIGTERM);
            waitpid(srv, NULL, 0);
            return 1;
        }
    }
    printf("%-16s %6s %14s %10s  %s\n", "row", "round", "items/s", "ns/item",
           "ratio to ring/stream");
    double ratios[ROUNDS];
    int status = 0, nratios = 0;
    for (int k = 0; k < ROUNDS && status == 0; k++) {
        double base = ring ? ring_row(seconds) : 0, got = shm ? shm_row(c, seconds) : 0;
        if (base < 0 || got < 0) {
            printf("%s failed\n", base < 0 ? "ring/stream/16" : "shm/stream/16");
            status = 1;
            break;
        }
        if (ring) printf("%-16s %6d %14.0f %10.1f\n", "ring/stream/16", k + 1, base, 1e9 / base);
        if (shm) {
            printf("%-16s %6d %14.0f %10.1f", "shm/stream/16", k + 1, got, 1e9 / got);
            if (ring) printf("  %.3f", got / base);
            printf("\n");
        }
        if (ring && shm) ratios[nratios++] = got / base;
    }
    if (nratios == ROUNDS)
        printf("shm/stream/16 / ring/stream/16: %.3f (median of %d rounds)\n",
               bench_median(ratios, nratios), nratios);
    shmrpc_client_free(c);
    if (shm) {
        kill(srv, SIGTERM);
        int st;
        if (waitpid(srv, &st, 0) != srv || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "shmrpc-bench-stream: the server ended with wait status %#x\n", st);
            status = 1;
        }
    }
    return status;
}
