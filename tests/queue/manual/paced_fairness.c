/* SPDX-License-Identifier: MIT */
/* A manual measurement (not a unit test; docs/queue.md, "The two missed goals again"):
 * fairness among consumers when the queue is mostly empty, so that they sleep, which the
 * benchmark's rows (producers as fast as they can, a full queue) never show. P producers
 * each push a 16 B message every GAP us (sleeping between), C consumers pop with 20 ms
 * timeouts, for 1 s; prints what each consumer took and its CPU time, and fewest / most.
 * Build: cc -O2 -I runtime/include tests/queue/manual/paced_fairness.c -L build/lib
 * -lshmrpc -Wl,-rpath,build/lib. Usage: paced_fairness [GAP_US [C [P]]] (20, 4, 4). */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc.h>

#define MAX 16

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

struct shared {
    int64_t start, stop;
    uint64_t taken[MAX];
    int64_t cpu[MAX];
};

static int run(const char *name, struct shared *sh, int i, int consumers, int gap_us)
{
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    shmrpc_queue *q;
    if (shmrpc_queue_open(&q, name, &o) != 0) return 1;
    while (now_ns() < sh->start)
        usleep(100);
    if (i < consumers) {
        uint64_t n = 0;
        int64_t c0 = cpu_ns();
        char buf[64];
        size_t len;
        while (now_ns() < sh->stop)
            if (shmrpc_queue_pop(q, buf, sizeof buf, &len, 20) == 0) n++;
        sh->taken[i] = n;
        sh->cpu[i] = cpu_ns() - c0;
    } else {
        for (int64_t next = now_ns(); now_ns() < sh->stop;) {
            if (shmrpc_queue_push(q, "0123456789abcdef", 16, 100) != 0) continue;
            next += (int64_t)gap_us * 1000;
            int64_t d = next - now_ns();
            if (d <= 0) {
                next = now_ns();
                continue;
            }
            struct timespec ts = {0, (long)d};
            nanosleep(&ts, NULL);
        }
    }
    shmrpc_queue_close(q);
    return 0;
}

int main(int argc, char **argv)
{
    int gap_us = argc > 1 ? atoi(argv[1]) : 20, consumers = argc > 2 ? atoi(argv[2]) : 4;
    int producers = argc > 3 ? atoi(argv[3]) : 4;
    if (gap_us < 0 || consumers < 1 || producers < 1 || consumers > MAX || producers > MAX ||
        gap_us > 999999) {
        fputs("usage: paced_fairness [GAP_US [CONSUMERS [PRODUCERS]]] (at most 16 each)\n", stderr);
        return 2;
    }
    char name[64];
    snprintf(name, sizeof name, "paced_fairness.%d", (int)getpid());
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = SHMRPC_QUEUE_CREATE_NEW_OVERWRITE;
    o.capacity = 1024;
    o.max_msg = 64;
    shmrpc_queue *q;
    if (shmrpc_queue_open(&q, name, &o) != 0) {
        fprintf(stderr, "queue: %s\n", shmrpc_errmsg());
        return 1;
    }
    struct shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) return 1;
    sh->start = now_ns() + 50000000;
    sh->stop = sh->start + 1000000000;
    int kids = 0, bad = 0;
    for (int i = 0; i < consumers + producers; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(30);
            _exit(run(name, sh, i, consumers, gap_us));
        }
        kids += pid > 0;
    }
    for (int st; kids > 0; kids--)
        if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) bad = 1;
    uint64_t lo = UINT64_MAX, hi = 0, total = 0;
    for (int i = 0; i < consumers; i++) {
        total += sh->taken[i];
        lo = sh->taken[i] < lo ? sh->taken[i] : lo;
        hi = sh->taken[i] > hi ? sh->taken[i] : hi;
    }
    printf("gap %d us, %dx%d: %" PRIu64 " messages, fairness %.2f [", gap_us, producers, consumers,
           total, hi ? (double)lo / (double)hi : 0.0);
    for (int i = 0; i < consumers; i++)
        printf(" %" PRIu64 "/%.0f ms", sh->taken[i], (double)sh->cpu[i] / 1e6);
    puts(" ]");
    shmrpc_queue_close(q);
    shmrpc_queue_unlink(name);
    return bad;
}
