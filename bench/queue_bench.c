/* SPDX-License-Identifier: MIT */
/* shmrpc-bench-queue: shared-memory queues against baselines measured in the same run, in
 * real processes, with ratios: POSIX message queues (mq_timedsend/mq_timedreceive), a
 * pipe(2), boost::interprocess::message_queue (bench/boost_mq.cpp) and ring-limit, a bare
 * single-producer single-consumer ring of 64-byte slots in shared memory with both sides
 * busy-polling (as fast as one-at-a-time messages go). Each row: messages per second that
 * the consumers took in the window, one-way latency p50/p99 (the producer stamps each
 * message), and fairness among consumers (fewest / most taken; beside it, "cpu": the same
 * for the CPU time each consumer had, which the messages each took follow). ring-limit's
 * consumer keeps pace with a producer that stamps every message it sends one at a time:
 * beside it, ring-stream and queue-stream move 16 B in batches of 32 with the producer
 * running ahead, the bare ring's and the queue's streams ("streams" below). Usage:
 * shmrpc-bench-queue [seconds per row, default 1] [only rows named so, a shell pattern,
 * e.g. queue/16/1x1 or '*-stream*']. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <mqueue.h>
#include <poll.h>
#include <sched.h>
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

#include "args.h"
#include "boost_mq.h"

#define MAX_SIDE 4
#define SAMPLES (1u << 16) /* latency samples kept per consumer (a ring) */
#define BATCH 32
#define SAMPLE_EVERY 8 /* a producer reads the clock at every 8th send of one message */
#define MAX_PAYLOAD 65536
#define DEPTH 1024 /* messages a queue, boost-mq and ring-limit hold... */
/* ...or as many as fit in 1 MiB, which stays within a core's L2 (2 MiB here): with 4 MiB,
 * 64 KiB messages went through every transport, the one-copy floor too, at half the rate,
 * since what the producer wrote 3-4 MiB ahead had left its cache before it was read. */
#define ROOM (1u << 20)
#define MQ_DEPTH 10 /* Linux's default limit for POSIX mq (msg_max) */
#define RING_SLOT 64

/* The queue's rows: created for many producers and consumers, and, 1/1 only, with a single
 * producer and a single consumer (-spsc: no locked instruction on the fast path). */
enum kind {
    QUEUE,
    QUEUE_BATCH,
    QUEUE_ZERO_COPY,
    QUEUE_SPSC,
    QUEUE_SPSC_BATCH,
    QUEUE_SPSC_ZERO_COPY,
    POSIX_MQ,
    PIPE,
    BOOST_MQ,
    RING,
    RING_STREAM,
    QUEUE_SPSC_STREAM,
    KINDS
};

static const char *const kind_name[KINDS] = {
    "queue",    "queue-batch", "queue-zc", "queue-spsc", "queue-spsc-batch", "queue-spsc-zc",
    "posix-mq", "pipe",        "boost-mq", "ring-limit", "ring-stream",      "queue-stream"};

/* What a row does with the queue, whatever its roles. */
static enum kind way(enum kind k)
{
    return k == QUEUE_SPSC             ? QUEUE
           : k == QUEUE_SPSC_BATCH     ? QUEUE_BATCH
           : k == QUEUE_SPSC_ZERO_COPY ? QUEUE_ZERO_COPY
                                       : k;
}

static bool spsc(enum kind k)
{
    return k == QUEUE_SPSC || k == QUEUE_SPSC_BATCH || k == QUEUE_SPSC_ZERO_COPY ||
           k == QUEUE_SPSC_STREAM;
}

/* The rows whose producer runs ahead in batches (stream_producer, stream_consumer). */
static bool streams(enum kind k)
{
    return k == RING_STREAM || k == QUEUE_SPSC_STREAM;
}

struct row {
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
    /* One-deep rows: messages taken so far. On a line of its own, and counted only in those
     * rows: every producer reads stop_ns at every message, and a count beside it made the
     * two sides trade that line at every message, which cost more than the queue did. */
    _Alignas(64) _Atomic uint64_t consumed;
    _Alignas(64) uint64_t taken[MAX_SIDE];
    int64_t cpu_ns[MAX_SIDE];   /* CPU time each consumer had, from its start to its end */
    uint64_t samples[MAX_SIDE]; /* latencies stored in lat (a ring) */
    int64_t lat[MAX_SIDE][SAMPLES];
};

/* ring-limit: Lamport's ring, each side caching the other's counter; a message takes its
 * size rounded up to 64-byte slots, and the counters are byte positions. */
struct ring {
    _Alignas(64) _Atomic uint64_t head; /* written by the consumer */
    _Alignas(64) _Atomic uint64_t tail; /* written by the producer */
    _Alignas(64) unsigned char data[ROOM];
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* This process's CPU time. */
static int64_t cpu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static char qname[64], mqname[64], bname[64];
static int pipe_fd[2] = {-1, -1};
static struct ring *ring;

static size_t depth_for(size_t payload)
{
    size_t slot = (payload + RING_SLOT - 1) / RING_SLOT * RING_SLOT;
    return slot * DEPTH <= ROOM ? DEPTH : ROOM / slot;
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void poll_pause(unsigned i)
{
    if (i < 256)
        cpu_relax();
    else
        sched_yield();
}

/* --- the transports behind one interface ---------------------------------------------- */

struct end {
    const struct row *r;
    shmrpc_queue *q;
    mqd_t mq;
    boost_mq *bq;
    uint64_t head, tail; /* ring-limit: this side's counter and its copy of the other's */
    size_t ring_bytes;
};

static int open_end(const struct row *r, struct end *e)
{
    memset(e, 0, sizeof *e);
    e->r = r;
    switch (r->kind) {
    case POSIX_MQ:
        e->mq = mq_open(mqname, O_RDWR);
        return e->mq == (mqd_t)-1 ? -1 : 0;
    case PIPE:
        return 0;
    case BOOST_MQ:
        e->bq = boost_mq_open(bname);
        return e->bq ? 0 : -1;
    case RING:
    case RING_STREAM:
        e->ring_bytes =
            depth_for(r->payload) * ((r->payload + RING_SLOT - 1) / RING_SLOT * RING_SLOT);
        return 0;
    default: {
        shmrpc_queue_opts o;
        shmrpc_queue_opts_init(&o);
        o.mode = SHMRPC_QUEUE_CONNECT_TO_EXISTING;
        return shmrpc_queue_open(&e->q, qname, &o);
    }
    }
}

static void close_end(struct end *e)
{
    if (e->r->kind == POSIX_MQ)
        mq_close(e->mq);
    else if (e->r->kind == BOOST_MQ)
        boost_mq_close(e->bq);
    else if (e->q)
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

/* pipe: one message is payload bytes; writes of up to PIPE_BUF are atomic, so with several
 * producers or consumers only such sizes are measured. 0, SHMRPC_ETIMEDOUT or -1. */
static int pipe_send(const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len) {
        ssize_t n = write(pipe_fd[1], p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int pipe_receive(void *buf, size_t len, int ms)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(pipe_fd[0], p + got, len - got);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
        struct pollfd pf = {pipe_fd[0], POLLIN, 0};
        int rc = poll(&pf, 1, got ? 1000 : ms);
        if (rc == 0 && got == 0) return SHMRPC_ETIMEDOUT;
        if (rc == 0) return -1; /* half a message for a second */
    }
    return 0;
}

/* ring-limit: 0, or SHMRPC_ETIMEDOUT after a few thousand polls (the caller looks at the
 * clock and comes back). Both sides poll with pause, and yield the CPU after 256 polls in a
 * row: on a machine with more runnable processes than CPUs, a pure spin would hold the CPU
 * that the other side waits for until the scheduler's tick (milliseconds). */
static int ring_send(struct end *e, const void *data, size_t len)
{
    size_t need = (len + RING_SLOT - 1) / RING_SLOT * RING_SLOT;
    uint64_t t = e->tail;
    for (unsigned i = 1; t + need - e->head > e->ring_bytes; i++) {
        if (i % 4096 == 0) return SHMRPC_ETIMEDOUT;
        poll_pause(i);
        e->head = atomic_load_explicit(&ring->head, memory_order_acquire);
    }
    memcpy(ring->data + t % e->ring_bytes, data, len);
    e->tail = t + need;
    atomic_store_explicit(&ring->tail, e->tail, memory_order_release);
    return 0;
}

static int ring_receive(struct end *e, void *buf, size_t len, int ms)
{
    size_t need = (len + RING_SLOT - 1) / RING_SLOT * RING_SLOT;
    uint64_t h = e->head;
    int64_t until = 0;
    for (unsigned i = 1; e->tail - h < need; i++) {
        if (i % 256 == 0) {
            int64_t now = now_ns();
            if (!until) until = now + (int64_t)ms * 1000000;
            if (now >= until) return SHMRPC_ETIMEDOUT;
        }
        poll_pause(i);
        e->tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    }
    memcpy(buf, ring->data + h % e->ring_bytes, len);
    e->head = h + need;
    atomic_store_explicit(&ring->head, e->head, memory_order_release);
    return 0;
}

static bool past_stop(struct shared *sh, int64_t now)
{
    int64_t stop = atomic_load_explicit(&sh->stop_ns, memory_order_relaxed);
    return stop && now >= stop;
}

static bool stopped(struct shared *sh)
{
    return past_stop(sh, now_ns());
}

static void wait_start(struct shared *sh)
{
    atomic_fetch_add(&sh->ready, 1);
    while (atomic_load(&sh->start_ns) == 0)
        usleep(100);
}

/* A message begins with a stamp: the producer's clock (8 bytes), then whether it was read
 * for this send (1) or carried from an earlier one (0). */
static void stamp(unsigned char *m, int64_t t, bool fresh)
{
    memcpy(m, &t, sizeof t);
    m[sizeof t] = fresh;
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
    uint64_t sent = 0, turns = 0;
    int64_t t = 0;
    for (;;) {
        if (r->one_deep) /* the consumer took the last one (spinning: a handoff, not a sleep) */
            while (atomic_load_explicit(&sh->consumed, memory_order_acquire) < sent && !stopped(sh))
                cpu_relax();
        /* The stamp, and the clock for the end of the window: read at every send of a batch
         * or one-deep row, and at every SAMPLE_EVERY-th of the others, since a clock read
         * (20 ns here) cost as much as a 16 B push: it was half the single producer's time
         * in perf. The sends between carry the last stamp, marked stale: it places them in
         * the window, and only fresh ones give latencies. The end is seen up to
         * SAMPLE_EVERY - 1 sends late. */
        bool fresh = r->one_deep || way(r->kind) == QUEUE_BATCH || turns++ % SAMPLE_EVERY == 0;
        if (fresh) {
            t = now_ns();
            if (past_stop(sh, t)) break;
        }
        int rc = 0;
        switch (way(r->kind)) {
        case QUEUE:
            stamp(msgs[0], t, fresh);
            rc = shmrpc_queue_push(e.q, msgs[0], r->payload, 100);
            break;
        case QUEUE_BATCH:
            for (int i = 0; i < BATCH; i++)
                stamp(msgs[i], t, fresh);
            rc = shmrpc_queue_push_batch(e.q, batch, BATCH, NULL, 100);
            break;
        case QUEUE_ZERO_COPY: {
            shmrpc_queue_span s;
            rc = shmrpc_queue_reserve(e.q, r->payload, &s, 100);
            if (rc == 0) {
                /* The one copy, the producer's data, with the stamp in its first bytes. */
                stamp(msgs[0], t, fresh);
                memcpy(s.data, msgs[0], r->payload);
                rc = shmrpc_queue_commit(e.q, &s);
            }
            break;
        }
        case POSIX_MQ: {
            stamp(msgs[0], t, fresh);
            struct timespec at = abs_in_ms(100);
            rc = mq_timedsend(e.mq, (char *)msgs[0], r->payload, 0, &at) == 0 ? 0 : -errno;
            if (rc == -ETIMEDOUT) rc = SHMRPC_ETIMEDOUT;
            break;
        }
        case PIPE:
            stamp(msgs[0], t, fresh);
            rc = pipe_send(msgs[0], r->payload);
            break;
        case BOOST_MQ:
            stamp(msgs[0], t, fresh);
            rc = boost_mq_send(e.bq, msgs[0], r->payload, 100);
            if (rc == 1) rc = SHMRPC_ETIMEDOUT;
            break;
        case RING:
            stamp(msgs[0], t, fresh);
            rc = ring_send(&e, msgs[0], r->payload);
            break;
        default:
            break;
        }
        if (rc != 0 && rc != SHMRPC_ETIMEDOUT) return 11;
        if (rc == 0) sent += way(r->kind) == QUEUE_BATCH ? BATCH : 1;
    }
    close_end(&e);
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
    uint64_t taken = 0, samples = 0;
    wait_start(sh);
    int64_t cpu0 = cpu_now_ns();
    int64_t start = atomic_load(&sh->start_ns);
    for (;;) {
        size_t n = 0, len;
        int rc = 0;
        switch (way(r->kind)) {
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
                memcpy(bufs[0], s.data, sizeof(int64_t) + 1);
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
        case PIPE:
            rc = pipe_receive(bufs[0], r->payload, 20);
            n = rc == 0;
            break;
        case BOOST_MQ:
            rc = boost_mq_receive(e.bq, bufs[0], MAX_PAYLOAD, &len, 20);
            if (rc == 1) rc = SHMRPC_ETIMEDOUT;
            n = rc == 0;
            break;
        case RING:
            rc = ring_receive(&e, bufs[0], r->payload, 20);
            n = rc == 0;
            break;
        default:
            break;
        }
        if (rc != 0 && rc != SHMRPC_ETIMEDOUT) return 21;
        if (n && r->one_deep) atomic_fetch_add_explicit(&sh->consumed, n, memory_order_release);
        /* The clock when a message taken has a fresh stamp (a latency to measure: every
         * take of a batch or one-deep row, about every SAMPLE_EVERY-th of the others) and at
         * every timeout, not at every take: a clock read costs as much as a 16 B message
         * does. The window's end is seen as late as the producer's. */
        bool fresh = false;
        for (size_t i = 0; i < n && !fresh; i++)
            fresh = bufs[i][sizeof(int64_t)];
        bool clocked = rc != 0 || r->one_deep || fresh;
        int64_t t = clocked ? now_ns() : 0;
        if (clocked && past_stop(sh, t)) {
            if (rc == SHMRPC_ETIMEDOUT) break;
            continue; /* drain what is left, uncounted */
        }
        for (size_t i = 0; i < n; i++) {
            int64_t sent;
            memcpy(&sent, bufs[i], sizeof sent);
            if (sent < start) continue; /* pushed before the window */
            if (bufs[i][sizeof sent]) sh->lat[me][samples++ % SAMPLES] = t - sent;
            taken++;
        }
    }
    sh->taken[me] = taken;
    sh->cpu_ns[me] = cpu_now_ns() - cpu0;
    sh->samples[me] = samples;
    close_end(&e);
    return 0;
}

/* --- streams: the producer running ahead ----------------------------------------------- */

/* ring-stream and queue-stream move 16-byte messages in batches of BATCH, the producer
 * writing as far ahead as the ring or queue (DEPTH messages) lets it: what a stream of
 * small messages costs, where ring-limit measures a consumer keeping pace with a producer
 * that sends one message at a time. Both rows do the same work around the transport
 * (make a batch, read the clock once per batch, check every message's sequence number:
 * in order, none lost or taken twice), so queue-stream's ratio to ring-stream is the
 * queue's cost. The messages sit in compact buffers: BATCH of them 64 KiB apart, as the
 * other rows keep them, would all fall in one L1 set. */
struct stream_msg {
    uint64_t seq;  /* 0, 1, 2...: the consumer expects each in turn */
    int64_t stamp; /* the producer's clock in the first message of a batch, else 0 */
};
_Static_assert(sizeof(struct stream_msg) == 16, "a stream message is 16 bytes");

/* ring-stream: Lamport's ring of ring-limit, but the producer writes a batch of BATCH
 * slots and publishes its tail once, and the consumer takes up to BATCH and publishes its
 * head once; each reloads the other's counter only when its copy says full or empty.
 * DEPTH slots are a whole number of batches, so a batch written never wraps. 0, or
 * SHMRPC_ETIMEDOUT after a few thousand polls for room (the caller looks at the clock). */
static int ring_stream_send(struct end *e, unsigned char (*src)[sizeof(struct stream_msg)])
{
    uint64_t t = e->tail, need = BATCH * RING_SLOT;
    for (unsigned i = 1; t + need - e->head > e->ring_bytes; i++) {
        e->head = atomic_load_explicit(&ring->head, memory_order_acquire);
        if (t + need - e->head <= e->ring_bytes) break;
        if (i % 4096 == 0) return SHMRPC_ETIMEDOUT;
        poll_pause(i);
    }
    unsigned char *slot = ring->data + t % e->ring_bytes;
    for (int j = 0; j < BATCH; j++)
        memcpy(slot + j * RING_SLOT, src[j], sizeof src[j]);
    e->tail = t + need;
    atomic_store_explicit(&ring->tail, e->tail, memory_order_release);
    return 0;
}

/* Takes up to BATCH messages into dst (*n of them): 0, or SHMRPC_ETIMEDOUT when the ring
 * stayed empty for ms. */
static int ring_stream_receive(struct end *e, unsigned char (*dst)[64], size_t *n, int ms)
{
    uint64_t h = e->head;
    int64_t until = 0;
    for (unsigned i = 1; e->tail == h; i++) {
        e->tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
        if (e->tail != h) break;
        if (i % 256 == 0) {
            int64_t now = now_ns();
            if (!until) until = now + (int64_t)ms * 1000000;
            if (now >= until) return SHMRPC_ETIMEDOUT;
        }
        poll_pause(i);
    }
    uint64_t avail = (e->tail - h) / RING_SLOT;
    size_t k = avail < BATCH ? (size_t)avail : BATCH;
    size_t at = h % e->ring_bytes;
    for (size_t j = 0; j < k; j++) {
        memcpy(dst[j], ring->data + at, sizeof(struct stream_msg));
        at = at + RING_SLOT == e->ring_bytes ? 0 : at + RING_SLOT;
    }
    e->head = h + k * RING_SLOT;
    atomic_store_explicit(&ring->head, e->head, memory_order_release);
    *n = k;
    return 0;
}

/* Sends batches of BATCH until the window ends, making the next batch only when the last
 * is all sent, so that no sequence number is skipped. */
static int stream_producer(const struct row *r, struct shared *sh)
{
    struct end e;
    if (open_end(r, &e) != 0) return 10;
    static unsigned char src[BATCH][sizeof(struct stream_msg)];
    shmrpc_queue_msg batch[BATCH];
    for (int i = 0; i < BATCH; i++)
        batch[i] = (shmrpc_queue_msg){src[i], 0, sizeof src[i]};
    wait_start(sh);
    uint64_t seq = 0;
    size_t sent = BATCH; /* of the batch in src: all of it, so the next one is made */
    for (;;) {
        /* The clock, once per batch: the window's end, and the batch's stamp. */
        int64_t t = now_ns();
        if (past_stop(sh, t)) break;
        if (sent == BATCH) {
            for (int i = 0; i < BATCH; i++) {
                struct stream_msg m = {seq++, i == 0 ? t : 0};
                memcpy(src[i], &m, sizeof m);
            }
            sent = 0;
        }
        int rc;
        if (r->kind == RING_STREAM) {
            rc = ring_stream_send(&e, src);
            if (rc == 0) sent = BATCH;
        } else { /* a full queue may take part of the batch: the rest goes next time */
            size_t done = 0;
            rc = shmrpc_queue_push_batch(e.q, batch + sent, BATCH - sent, &done, 100);
            sent += done;
        }
        if (rc != 0 && rc != SHMRPC_ETIMEDOUT) return 11;
    }
    close_end(&e);
    return 0;
}

/* Counts the messages taken while its clock, read once per batch taken, is in the window,
 * and a latency for each stamped one; 22 when a message is not the one expected next. */
static int stream_consumer(const struct row *r, struct shared *sh)
{
    struct end e;
    if (open_end(r, &e) != 0) return 20;
    static unsigned char dst[BATCH][64];
    shmrpc_queue_msg batch[BATCH];
    for (int i = 0; i < BATCH; i++)
        batch[i] = (shmrpc_queue_msg){dst[i], sizeof dst[i], 0};
    uint64_t expect = 0, taken = 0, samples = 0;
    wait_start(sh);
    int64_t cpu0 = cpu_now_ns();
    int64_t start = atomic_load(&sh->start_ns);
    for (;;) {
        size_t n = 0;
        int rc = r->kind == RING_STREAM ? ring_stream_receive(&e, dst, &n, 20)
                                        : shmrpc_queue_pop_batch(e.q, batch, BATCH, &n, 20);
        if (rc != 0 && rc != SHMRPC_ETIMEDOUT) return 21;
        int64_t t = now_ns();
        bool counted = t >= start && !past_stop(sh, t);
        for (size_t i = 0; i < n; i++) {
            struct stream_msg m;
            memcpy(&m, dst[i], sizeof m);
            if (m.seq != expect++) return 22;
            if (r->kind != RING_STREAM && batch[i].len != sizeof m) return 22;
            if (counted && m.stamp >= start) sh->lat[0][samples++ % SAMPLES] = t - m.stamp;
        }
        if (counted) taken += n;
        if (rc == SHMRPC_ETIMEDOUT && past_stop(sh, t)) break; /* drained */
    }
    sh->taken[0] = taken;
    sh->cpu_ns[0] = cpu_now_ns() - cpu0;
    sh->samples[0] = samples;
    close_end(&e);
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
    double cpu_fairness; /* fewest / most CPU time a consumer had */
    int64_t p50, p99;
};

/* Makes the row's transport: 0, 1 when it cannot be had here (a row "n/a"), -1. */
static int make_transport(const struct row *r)
{
    size_t depth = depth_for(r->payload);
    switch (r->kind) {
    case POSIX_MQ: {
        struct mq_attr a = {.mq_maxmsg = MQ_DEPTH, .mq_msgsize = (long)r->payload};
        mq_unlink(mqname);
        mqd_t mq = mq_open(mqname, O_CREAT | O_EXCL | O_RDWR, 0600, &a);
        if (mq == (mqd_t)-1) {
            fprintf(stderr, "mq_open (%zu-byte messages): %s\n", r->payload, strerror(errno));
            return 1; /* msgsize_max (8 KiB) binds an unprivileged user */
        }
        mq_close(mq);
        return 0;
    }
    case PIPE:
        if (r->payload > PIPE_BUF && (r->producers > 1 || r->consumers > 1))
            return 1; /* longer writes interleave: no framing without a lock */
        if (pipe2(pipe_fd, O_CLOEXEC) != 0) return -1;
        fcntl(pipe_fd[1], F_SETPIPE_SZ, 1 << 20); /* as deep as allowed (pipe-max-size) */
        fcntl(pipe_fd[0], F_SETFL, O_NONBLOCK);
        return 0;
    case BOOST_MQ: {
        int rc = boost_mq_create(bname, depth, r->payload);
        return rc == 0 || rc == 1 ? rc : -1;
    }
    case RING:
    case RING_STREAM:
        if (r->producers > 1 || r->consumers > 1) return 1;
        ring = mmap(NULL, sizeof *ring, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        return ring == MAP_FAILED ? (ring = NULL, -1) : 0;
    default: {
        shmrpc_queue_opts o;
        shmrpc_queue_opts_init(&o);
        o.mode = SHMRPC_QUEUE_CREATE_NEW_OVERWRITE;
        o.capacity = DEPTH;
        o.max_msg = MAX_PAYLOAD;
        o.arena_bytes = ROOM;
        o.single_producer = o.single_consumer = spsc(r->kind);
        shmrpc_queue *q;
        if (shmrpc_queue_open(&q, qname, &o) != 0) {
            fprintf(stderr, "queue: %s\n", shmrpc_errmsg());
            return -1;
        }
        shmrpc_queue_close(q);
        return 0;
    }
    }
}

static void drop_transport(const struct row *r)
{
    switch (r->kind) {
    case POSIX_MQ:
        mq_unlink(mqname);
        break;
    case PIPE:
        close(pipe_fd[0]);
        close(pipe_fd[1]);
        pipe_fd[0] = pipe_fd[1] = -1;
        break;
    case BOOST_MQ:
        boost_mq_remove(bname);
        break;
    case RING:
    case RING_STREAM:
        munmap(ring, sizeof *ring);
        ring = NULL;
        break;
    default:
        shmrpc_queue_unlink(qname);
        break;
    }
}

/* 0 with the row's figures, 1 when the transport cannot be had here, 2 when no message
 * stamped in the window was taken in it, -1 when it failed. */
static int run_row(const struct row *r, double seconds, struct result *out)
{
    snprintf(qname, sizeof qname, "bench.%d", (int)getpid());
    snprintf(mqname, sizeof mqname, "/shmrpc-bench.%d", (int)getpid());
    snprintf(bname, sizeof bname, "shmrpc-bench-boost.%d", (int)getpid());
    int made = make_transport(r);
    if (made != 0) return made;
    struct shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        drop_transport(r);
        return -1;
    }
    pid_t pids[2 * MAX_SIDE];
    int n = 0;
    for (int i = 0; i < r->consumers + r->producers; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(60);
            bool consumes = i < r->consumers;
            if (streams(r->kind)) _exit(consumes ? stream_consumer(r, sh) : stream_producer(r, sh));
            _exit(consumes ? consumer(r, sh, i) : producer(r, sh));
        }
        if (pid > 0) pids[n++] = pid;
    }
    int64_t give_up = now_ns() + (int64_t)10e9;
    while (atomic_load(&sh->ready) < n && now_ns() < give_up)
        usleep(100);
    int64_t start = now_ns() + 20000000; /* 20 ms of warm-up after the start */
    atomic_store(&sh->stop_ns, start + (int64_t)(seconds * 1e9));
    atomic_store(&sh->start_ns, start);
    int bad = n != r->consumers + r->producers;
    for (int i = 0; i < n; i++) {
        int st;
        if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "%s: a %s exited with status %#x\n", kind_name[r->kind],
                    i < r->consumers ? "consumer" : "producer", (unsigned)st);
            bad = 1;
        }
    }
    drop_transport(r);
    uint64_t total = 0, lo = UINT64_MAX, hi = 0;
    int64_t cpu_lo = INT64_MAX, cpu_hi = 0;
    size_t nsamples = 0;
    static int64_t all[MAX_SIDE * SAMPLES];
    for (int c = 0; c < r->consumers; c++) {
        uint64_t t = sh->taken[c];
        total += t;
        if (t < lo) lo = t;
        if (t > hi) hi = t;
        if (sh->cpu_ns[c] < cpu_lo) cpu_lo = sh->cpu_ns[c];
        if (sh->cpu_ns[c] > cpu_hi) cpu_hi = sh->cpu_ns[c];
        size_t k = sh->samples[c] < SAMPLES ? (size_t)sh->samples[c] : SAMPLES;
        memcpy(all + nsamples, sh->lat[c], k * sizeof all[0]);
        nsamples += k;
    }
    munmap(sh, sizeof *sh);
    if (bad) return -1;
    /* Not an error: on a busy machine a short window can pass before anything stamped in
     * it gets through (a pipe holds 1 MiB of messages from the warm-up). */
    if (nsamples == 0) return 2;
    qsort(all, nsamples, sizeof all[0], cmp64);
    out->rate = (double)total / seconds;
    out->fairness = hi ? (double)lo / (double)hi : 0;
    out->cpu_fairness = cpu_hi ? (double)cpu_lo / (double)cpu_hi : 0;
    out->p50 = all[nsamples / 2];
    out->p99 = all[nsamples * 99 / 100];
    return 0;
}

/* Bytes per second of a memcpy of size bytes between two buffers, in one process: the best
 * of 16 rounds, each of 64 copies at a time until its share of the time is up, so that a
 * round in which the process was preempted (on a busy machine, whole milliseconds) does
 * not lower the baseline. */
static double memcpy_rate(size_t size, double seconds)
{
    static unsigned char a[MAX_PAYLOAD], b[MAX_PAYLOAD];
    memset(a, 1, sizeof a);
    double best = 0;
    for (int round = 0; round < 16; round++) {
        uint64_t n = 0;
        int64_t t0 = now_ns(), end = t0 + (int64_t)(seconds * 1e9 / 16);
        while (now_ns() < end) {
            for (int i = 0; i < 64; i++) {
                memcpy(b, a, size);
                __asm__ __volatile__("" ::"r"(b) : "memory");
            }
            n += 64;
        }
        double rate = (double)n * (double)size / ((double)(now_ns() - t0) / 1e9);
        if (rate > best) best = rate;
    }
    return best;
}

/* Bytes per second of the honest floor of a zero-copy transfer between two processes: the
 * producer copies size bytes from its own buffer into one of ROOM / size shared slots, the
 * consumer reads every cache line of it in place (the queue-zc row's work without the
 * queue), each side caching the other's counter as ring-limit does. Unlike memcpy_rate,
 * every line crosses from one core's cache to the other's. */
static double one_copy_rate(size_t size, double seconds)
{
    struct xfer {
        _Alignas(64) _Atomic uint64_t head;
        _Alignas(64) _Atomic uint64_t tail;
        _Alignas(64) _Atomic int64_t start_ns, stop_ns;
        _Atomic uint64_t taken;
        _Alignas(64) unsigned char data[ROOM];
    };
    static unsigned char src[MAX_PAYLOAD];
    memset(src, 1, sizeof src);
    struct xfer *x =
        mmap(NULL, sizeof *x, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (x == MAP_FAILED) return 0;
    uint64_t slots = ROOM / size;
    pid_t pid = fork();
    if (pid == 0) { /* the producer */
        alarm(60);
        uint64_t tail = 0, head = 0;
        while (atomic_load(&x->start_ns) == 0)
            usleep(100);
        while (atomic_load_explicit(&x->stop_ns, memory_order_relaxed) == 0) {
            for (unsigned i = 0; tail - head >= slots; i++) {
                head = atomic_load_explicit(&x->head, memory_order_acquire);
                if (atomic_load_explicit(&x->stop_ns, memory_order_relaxed)) _exit(0);
                poll_pause(i);
            }
            memcpy(x->data + (tail % slots) * size, src, size);
            atomic_store_explicit(&x->tail, ++tail, memory_order_release);
        }
        _exit(0);
    }
    if (pid < 0) {
        munmap(x, sizeof *x);
        return 0;
    }
    int64_t start = now_ns() + 20000000, end = start + (int64_t)(seconds * 1e9);
    atomic_store(&x->start_ns, start);
    uint64_t head = 0, tail = 0, counted = 0;
    volatile unsigned char sink = 0;
    for (;;) {
        for (unsigned i = 0; head == tail; i++) {
            tail = atomic_load_explicit(&x->tail, memory_order_acquire);
            poll_pause(i);
        }
        const unsigned char *m = x->data + (head % slots) * size;
        for (size_t i = 0; i < size; i += 64)
            sink ^= m[i];
        atomic_store_explicit(&x->head, ++head, memory_order_release);
        int64_t t = now_ns();
        if (t >= end) break;
        if (t >= start) counted++;
    }
    (void)sink;
    atomic_store(&x->stop_ns, end);
    waitpid(pid, NULL, 0);
    munmap(x, sizeof *x);
    return (double)counted * (double)size / seconds;
}

static bool is_baseline(enum kind k)
{
    return k == POSIX_MQ || k == PIPE || k == BOOST_MQ || k == RING || k == RING_STREAM;
}

/* The rows, in groups of one case (payload, sides, one_deep, stream): the baselines first,
 * so that the queue's rows can give their ratios to each. */
static size_t make_rows(struct row *rows)
{
    static const enum kind baselines[] = {POSIX_MQ, PIPE, BOOST_MQ, RING};
    size_t n = 0;
    for (size_t b = 0; b < 4; b++)
        rows[n++] = (struct row){baselines[b], 16, 1, 1, true};
    rows[n++] = (struct row){QUEUE, 16, 1, 1, true};
    rows[n++] = (struct row){QUEUE_SPSC, 16, 1, 1, true};
    static const size_t sizes[] = {16, 4096, MAX_PAYLOAD};
    for (int si = 0; si < 3; si++)
        for (int sides = 1; sides <= MAX_SIDE; sides *= 2) {
            size_t sz = sizes[si];
            for (size_t b = 0; b < 4; b++)
                if (baselines[b] != RING || sides == 1)
                    rows[n++] = (struct row){baselines[b], sz, sides, sides, false};
            rows[n++] = (struct row){QUEUE, sz, sides, sides, false};
            if (sz == 16) rows[n++] = (struct row){QUEUE_BATCH, sz, sides, sides, false};
            if (sz == MAX_PAYLOAD)
                rows[n++] = (struct row){QUEUE_ZERO_COPY, sz, sides, sides, false};
            if (sides > 1) continue;
            rows[n++] = (struct row){QUEUE_SPSC, sz, 1, 1, false};
            if (sz == 16) rows[n++] = (struct row){QUEUE_SPSC_BATCH, sz, 1, 1, false};
            if (sz == MAX_PAYLOAD) rows[n++] = (struct row){QUEUE_SPSC_ZERO_COPY, sz, 1, 1, false};
            if (sz != 16) continue;
            /* A case of its own, so that queue-stream's one ratio is to the bare ring's
             * stream, not to ring-limit's paced one. */
            rows[n++] = (struct row){RING_STREAM, sz, 1, 1, false};
            rows[n++] = (struct row){QUEUE_SPSC_STREAM, sz, 1, 1, false};
        }
    return n;
}

int main(int argc, char **argv)
{
    static const char usage[] = "usage: shmrpc-bench-queue [SECONDS-PER-ROW [ROW]]\n"
                                "  SECONDS-PER-ROW: 0 < s <= 60, default 1; ROW: only the rows\n"
                                "  named so, a shell pattern (e.g. '*-stream*')\n";
    double seconds = 1.0;
    const char *only;
    int rc = bench_args_rows(argc, argv, usage, &seconds, &only);
    if (rc >= 0) return rc;
    static struct row rows[80];
    size_t nrows = make_rows(rows);
    struct result base[KINDS]; /* this case's baselines */
    bool have[KINDS] = {false};
    int status = 0;
    printf("%-12s %7s %5s %14s %10s %10s %9s  %s\n", "transport", "bytes", "PxC", "msgs/s",
           "p50 ns", "p99 ns", "fairness", "ratio (msgs/s; one deep: p50)");
    for (size_t i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        char name[64];
        snprintf(name, sizeof name, "%s/%zu/%dx%d%s", kind_name[r->kind], r->payload, r->producers,
                 r->consumers, r->one_deep ? "/1deep" : "");
        if (only && fnmatch(only, name, 0) != 0) continue;
        if (i == 0 || r->payload != rows[i - 1].payload || r->producers != rows[i - 1].producers ||
            r->one_deep != rows[i - 1].one_deep || streams(r->kind) != streams(rows[i - 1].kind))
            memset(have, 0, sizeof have);
        struct result res;
        int rc = run_row(r, seconds, &res);
        if (rc != 0) {
            printf("%-12s %7zu %2dx%-2d  %s\n", kind_name[r->kind], r->payload, r->producers,
                   r->consumers,
                   rc == 1   ? "n/a"
                   : rc == 2 ? "none stamped in the window got through in it"
                             : "failed");
            if (rc < 0) status = 1;
            continue;
        }
        char ratio[256] = "";
        size_t at = 0;
        /* Who took how many follows the CPU time each consumer got from the scheduler:
         * its fairness beside the row's. */
        if (r->consumers > 1)
            at += (size_t)snprintf(ratio, sizeof ratio, "cpu %.2f", res.cpu_fairness);
        if (is_baseline(r->kind)) {
            base[r->kind] = res;
            have[r->kind] = true;
        } else {
            for (int k = 0; k < KINDS; k++) {
                if (!have[k] || at >= sizeof ratio) continue;
                double x =
                    r->one_deep ? (double)res.p50 / (double)base[k].p50 : res.rate / base[k].rate;
                at += (size_t)snprintf(ratio + at, sizeof ratio - at, "%s%.*fx %s", at ? ", " : "",
                                       x < 0.1  ? 3
                                       : x < 10 ? 2
                                                : 1,
                                       x, kind_name[k]);
            }
            if (way(r->kind) == QUEUE_ZERO_COPY && at < sizeof ratio) {
                /* The baseline, an in-cache memcpy in one process, and the floor
                 * of any transfer between two, measured just after (docs/queue.md). */
                double bw = memcpy_rate(r->payload, seconds / 2);
                at +=
                    (size_t)snprintf(ratio + at, sizeof ratio - at, "%s%.2fx memcpy (%.1f GB/s)",
                                     at ? ", " : "", res.rate * (double)r->payload / bw, bw / 1e9);
                double xc = r->producers == 1 ? one_copy_rate(r->payload, seconds / 2) : 0;
                if (xc > 0 && at < sizeof ratio)
                    snprintf(ratio + at, sizeof ratio - at, ", %.2fx one-copy (%.1f GB/s)",
                             res.rate * (double)r->payload / xc, xc / 1e9);
            }
        }
        printf("%-12s %7zu %2dx%-2d%s%13.0f %10" PRId64 " %10" PRId64 " %9.2f  %s\n",
               kind_name[r->kind], r->payload, r->producers, r->consumers,
               r->one_deep ? " 1deep" : "      ", res.rate, res.p50, res.p99, res.fairness, ratio);
        fflush(stdout);
    }
    return status;
}
