/* shmrpc-bench-queue: shared-memory queues against POSIX message queues (mq_send and
 * mq_receive), measured in the same run in real processes, with ratios. Each row: messages
 * per second that the consumers took in the window, one-way latency p50/p99 (the producer
 * stamps each message), and fairness among consumers (fewest / most taken). Usage:
 * shmrpc-bench-queue [seconds per row, default 1]. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <mqueue.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/queue.h>
#include <shmrpc/status.h>

#define MAX_SIDE 4
#define SAMPLES (1u << 16) /* latency samples kept per consumer (a ring) */
#define BATCH 32
#define MAX_PAYLOAD 65536

enum kind { QUEUE, QUEUE_BATCH, QUEUE_ZERO_COPY, POSIX_MQ };

struct row {
    const char *transport;
    enum kind kind;
    size_t payload;
    int producers, consumers;
    bool one_deep; /* the producer waits until each message is taken: latency of a handoff */
};

/* What a row's processes share (one anonymous shared mapping per row). */
struct shared {
    _Atomic int ready;
    _Atomic int64_t start_ns, stop_ns;
    _Atomic int failed;
    _Atomic uint64_t consumed; /* one_deep rows: messages taken so far */
    uint64_t taken[MAX_SIDE];
    int64_t lat[MAX_SIDE][SAMPLES];
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static char qname[64], mqname[64];

/* --- the two transports behind one interface ----------------------------------------- */

struct end {
    shmrpc_queue *q;
    mqd_t mq;
};

static int open_end(const struct row *r, struct end *e)
{
    if (r->kind == POSIX_MQ) {
        e->mq = mq_open(mqname, O_RDWR);
        return e->mq == (mqd_t)-1 ? -1 : 0;
    }
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    return shmrpc_queue_open(&e->q, qname, &o);
}

static void close_end(const struct row *r, struct end *e)
{
    if (r->kind == POSIX_MQ)
        mq_close(e->mq);
    else
        shmrpc_queue_close(e->q);
}

static struct timespec abs_in_ms(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)ms * 1000000;
    ts.tv_sec += ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    return ts;
}

static bool stopped(struct shared *sh)
{
    int64_t stop = atomic_load_explicit(&sh->stop_ns, memory_order_relaxed);
    return stop && now_ns() >= stop;
}

static void wait_start(struct shared *sh)
{
    atomic_fetch_add(&sh->ready, 1);
    while (atomic_load(&sh->start_ns) == 0)
        usleep(100);
}

static int producer(const struct row *r, struct shared *sh)
{
    struct end e;
    if (open_end(r, &e) != 0) return 10;
    static unsigned char msgs[BATCH][MAX_PAYLOAD];
    shmrpc_queue_msg batch[BATCH];
    for (int i = 0; i < BATCH; i++)
        batch[i] = (shmrpc_queue_msg){msgs[i], 0, r->payload};
    wait_start(sh);
    uint64_t sent = 0;
    while (!stopped(sh)) {
        if (r->one_deep) /* the consumer took the last one (spinning: a handoff, not a sleep) */
            while (atomic_load_explicit(&sh->consumed, memory_order_acquire) < sent && !stopped(sh))
                __builtin_ia32_pause();
        int64_t t = now_ns();
        int rc = 0;
        switch (r->kind) {
        case QUEUE:
            memcpy(msgs[0], &t, sizeof t);
            rc = shmrpc_queue_push(e.q, msgs[0], r->payload, 100);
            break;
        case QUEUE_BATCH:
            for (int i = 0; i < BATCH; i++)
                memcpy(msgs[i], &t, sizeof t);
            rc = shmrpc_queue_push_batch(e.q, batch, BATCH, NULL, 100);
            break;
        case QUEUE_ZERO_COPY: {
            shmrpc_queue_span s;
            rc = shmrpc_queue_reserve(e.q, r->payload, &s, 100);
            if (rc == 0) {
                memcpy(s.data, msgs[0], r->payload); /* the one copy: the producer's data */
                memcpy(s.data, &t, sizeof t);
                rc = shmrpc_queue_commit(e.q, &s);
            }
            break;
        }
        case POSIX_MQ: {
            memcpy(msgs[0], &t, sizeof t);
            struct timespec at = abs_in_ms(100);
            rc = mq_timedsend(e.mq, (char *)msgs[0], r->payload, 0, &at) == 0 ? 0 : -errno;
            if (rc == -ETIMEDOUT) rc = SHMRPC_ETIMEDOUT;
            break;
        }
        }
        if (rc != 0 && rc != SHMRPC_ETIMEDOUT) return 11;
        if (rc == 0) sent += r->kind == QUEUE_BATCH ? BATCH : 1;
    }
    close_end(r, &e);
    return 0;
}

static int consumer(const struct row *r, struct shared *sh, int me)
{
    struct end e;
    if (open_end(r, &e) != 0) return 20;
    static unsigned char bufs[BATCH][MAX_PAYLOAD];
    shmrpc_queue_msg batch[BATCH];
    for (int i = 0; i < BATCH; i++)
        batch[i] = (shmrpc_queue_msg){bufs[i], MAX_PAYLOAD, 0};
    uint64_t taken = 0;
    wait_start(sh);
    int64_t start = atomic_load(&sh->start_ns);
    for (;;) {
        size_t n = 0, len;
        int rc = 0;
        switch (r->kind) {
        case QUEUE:
            rc = shmrpc_queue_pop(e.q, bufs[0], MAX_PAYLOAD, &len, 20);
            n = rc == 0;
            break;
        case QUEUE_BATCH:
            rc = shmrpc_queue_pop_batch(e.q, batch, BATCH, &n, 20);
            break;
        case QUEUE_ZERO_COPY: {
            shmrpc_queue_span s;
            rc = shmrpc_queue_peek(e.q, &s, 20);
            if (rc == 0) { /* read in place: the stamp, and every cache line of it */
                volatile unsigned char sink = 0;
                for (size_t i = 0; i < s.len; i += 64)
                    sink ^= ((unsigned char *)s.data)[i];
                (void)sink;
                memcpy(bufs[0], s.data, sizeof(int64_t));
                rc = shmrpc_queue_release(e.q, &s);
                n = 1;
            }
            break;
        }
        case POSIX_MQ: {
            struct timespec at = abs_in_ms(20);
            ssize_t got = mq_timedreceive(e.mq, (char *)bufs[0], MAX_PAYLOAD, NULL, &at);
            rc = got >= 0 ? 0 : errno == ETIMEDOUT ? SHMRPC_ETIMEDOUT : -errno;
            n = got >= 0;
            break;
        }
        }
        int64_t t = now_ns();
        if (rc != 0 && rc != SHMRPC_ETIMEDOUT) return 21;
        if (n) atomic_fetch_add_explicit(&sh->consumed, n, memory_order_release);
        int64_t stop = atomic_load(&sh->stop_ns);
        if (stop && t >= stop) {
            if (rc == SHMRPC_ETIMEDOUT) break;
            continue; /* drain what is left, uncounted */
        }
        for (size_t i = 0; i < n; i++) {
            int64_t sent;
            memcpy(&sent, bufs[i], sizeof sent);
            if (sent < start) continue; /* pushed before the window */
            sh->lat[me][taken % SAMPLES] = t - sent;
            taken++;
        }
    }
    sh->taken[me] = taken;
    close_end(r, &e);
    return 0;
}

/* --- a row ---------------------------------------------------------------------------- */

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

struct result {
    double rate, fairness;
    int64_t p50, p99;
};

static int run_row(const struct row *r, double seconds, struct result *out)
{
    snprintf(qname, sizeof qname, "bench.%d", (int)getpid());
    snprintf(mqname, sizeof mqname, "/shmrpc-bench.%d", (int)getpid());
    if (r->kind == POSIX_MQ) {
        struct mq_attr a = {.mq_maxmsg = 10, .mq_msgsize = (long)r->payload};
        mq_unlink(mqname);
        mqd_t mq = mq_open(mqname, O_CREAT | O_EXCL | O_RDWR, 0600, &a);
        if (mq == (mqd_t)-1) {
            fprintf(stderr, "mq_open: %s\n", strerror(errno));
            return -1;
        }
        mq_close(mq);
    } else {
        shmrpc_queue_opts o;
        shmrpc_queue_opts_init(&o);
        o.mode = SHMRPC_QUEUE_CREATE_NEW_OVERWRITE;
        o.capacity = 1024;
        o.max_msg = MAX_PAYLOAD;
        o.arena_bytes = 4u << 20;
        shmrpc_queue *q;
        if (shmrpc_queue_open(&q, qname, &o) != 0) {
            fprintf(stderr, "queue: %s\n", shmrpc_errmsg());
            return -1;
        }
        shmrpc_queue_close(q);
    }
    struct shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) return -1;
    pid_t pids[2 * MAX_SIDE];
    int n = 0;
    for (int i = 0; i < r->consumers + r->producers; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(60);
            _exit(i < r->consumers ? consumer(r, sh, i) : producer(r, sh));
        }
        pids[n++] = pid;
    }
    int64_t give_up = now_ns() + (int64_t)10e9;
    while (atomic_load(&sh->ready) < n && now_ns() < give_up)
        usleep(100);
    int64_t start = now_ns() + 20000000; /* 20 ms of warm-up after the start */
    atomic_store(&sh->stop_ns, start + (int64_t)(seconds * 1e9));
    atomic_store(&sh->start_ns, start);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int st;
        if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) bad = 1;
    }
    if (r->kind == POSIX_MQ)
        mq_unlink(mqname);
    else
        shmrpc_queue_unlink(qname);
    uint64_t total = 0, lo = UINT64_MAX, hi = 0;
    size_t nsamples = 0;
    static int64_t all[MAX_SIDE * SAMPLES];
    for (int c = 0; c < r->consumers; c++) {
        uint64_t t = sh->taken[c];
        total += t;
        if (t < lo) lo = t;
        if (t > hi) hi = t;
        size_t k = t < SAMPLES ? (size_t)t : SAMPLES;
        memcpy(all + nsamples, sh->lat[c], k * sizeof all[0]);
        nsamples += k;
    }
    munmap(sh, sizeof *sh);
    if (bad || nsamples == 0) return -1;
    qsort(all, nsamples, sizeof all[0], cmp64);
    out->rate = (double)total / seconds;
    out->fairness = hi ? (double)lo / (double)hi : 0;
    out->p50 = all[nsamples / 2];
    out->p99 = all[nsamples * 99 / 100];
    return 0;
}

/* Bytes per second of a memcpy of size bytes between two buffers, in one process. */
static double memcpy_rate(size_t size, double seconds)
{
    static unsigned char a[MAX_PAYLOAD], b[MAX_PAYLOAD];
    memset(a, 1, sizeof a);
    uint64_t n = 0;
    int64_t t0 = now_ns(), end = t0 + (int64_t)(seconds * 1e9);
    while (now_ns() < end) {
        for (int i = 0; i < 64; i++) {
            memcpy(b, a, size);
            __asm__ __volatile__("" ::"r"(b) : "memory");
        }
        n += 64;
    }
    return (double)n * (double)size / ((double)(now_ns() - t0) / 1e9);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    if (!(seconds > 0 && seconds <= 60)) {
        fprintf(stderr, "usage: %s [seconds per row, 0 < s <= 60]\n", argv[0]);
        return 2;
    }
    static const struct row rows[] = {
        {"posix-mq", POSIX_MQ, 16, 1, 1, true},
        {"queue", QUEUE, 16, 1, 1, true},
        {"posix-mq", POSIX_MQ, 16, 1, 1, false},
        {"queue", QUEUE, 16, 1, 1, false},
        {"queue-batch", QUEUE_BATCH, 16, 1, 1, false},
        {"posix-mq", POSIX_MQ, 4096, 1, 1, false},
        {"queue", QUEUE, 4096, 1, 1, false},
        {"queue-zc", QUEUE_ZERO_COPY, 65536, 1, 1, false},
        {"posix-mq", POSIX_MQ, 16, 2, 2, false},
        {"queue", QUEUE, 16, 2, 2, false},
        {"posix-mq", POSIX_MQ, 16, 4, 4, false},
        {"queue", QUEUE, 16, 4, 4, false},
    };
    struct result res[sizeof rows / sizeof rows[0]];
    double mq_rate[3] = {0}; /* 16 B 1x1, 4 KiB 1x1, 16 B by producers */
    int64_t mq_p50_one_deep = 0;
    int status = 0;
    printf("%-12s %7s %5s %14s %10s %10s %9s  %s\n", "transport", "bytes", "PxC", "msgs/s",
           "p50 ns", "p99 ns", "fairness", "ratio");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct row *r = &rows[i];
        if (run_row(r, seconds, &res[i]) != 0) {
            printf("%-12s %7zu %2dx%-2d  failed\n", r->transport, r->payload, r->producers,
                   r->consumers);
            status = 1;
            continue;
        }
        char ratio[96] = "";
        if (r->one_deep) {
            if (r->kind == POSIX_MQ)
                mq_p50_one_deep = res[i].p50;
            else if (mq_p50_one_deep > 0)
                snprintf(ratio, sizeof ratio, "p50 %.2fx posix-mq's (one deep)",
                         (double)res[i].p50 / (double)mq_p50_one_deep);
        } else if (r->kind == POSIX_MQ) {
            if (r->payload == 16 && r->producers == 1) mq_rate[0] = res[i].rate;
            if (r->payload == 4096) mq_rate[1] = res[i].rate;
            if (r->payload == 16) mq_rate[2] = res[i].rate;
        } else if (r->kind == QUEUE_ZERO_COPY) {
            double bw = memcpy_rate(r->payload, seconds / 2);
            snprintf(ratio, sizeof ratio, "%.2fx memcpy of %zu B (%.1f GB/s)",
                     res[i].rate * (double)r->payload / bw, r->payload, bw / 1e9);
        } else {
            double base = r->payload == 4096  ? mq_rate[1]
                          : r->producers == 1 ? mq_rate[0]
                                              : mq_rate[2];
            if (base > 0) snprintf(ratio, sizeof ratio, "%.1fx posix-mq", res[i].rate / base);
        }
        printf("%-12s %7zu %2dx%-2d%s%13.0f %10" PRId64 " %10" PRId64 " %9.2f  %s\n", r->transport,
               r->payload, r->producers, r->consumers, r->one_deep ? " 1deep" : "      ",
               res[i].rate, res[i].p50, res[i].p99, res[i].fairness, ratio);
        fflush(stdout);
    }
    return status;
}
