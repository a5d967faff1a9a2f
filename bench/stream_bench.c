/* SPDX-License-Identifier: MIT */
/* shmrpc-bench-stream: a server stream of 16 B items through the generated stubs (a forked
 * server with one worker), each transport against a bare stream of the same items between
 * two processes in the same run:
 * - shm/stream/16 against ring/stream/16, a bare single-producer single-consumer ring: the
 *   same 64 KiB of records of the same shape ({len, left} and the item, 8-aligned), the
 *   producer publishing its count after each item, the consumer copying each out and giving
 *   the room back every quarter, both spinning;
 * - shm/client-stream/16, the items the other way (the client sends, the handler reads),
 *   against the same bare ring, measured again beside it;
 * - tcp/stream/16 (loopback) against tcp-raw/stream/16, a bare TCP connection: the same
 *   records as ITEMS frames carry them (a 4-byte length and the item), written 64 KiB at a
 *   time and read so, the consumer copying each item out;
 * - tcp/client-stream/16, the items the other way over tcp:// (wire revision 9), against the
 *   same bare connection, measured again beside it: an ITEMS frame and a send(2) each;
 * - tcp/client-corked/16, the same with the stream corked (shmrpc_stream_cork): up to 16 KiB
 *   of items in a frame;
 * - shm/both/16 and tcp/both/16, a stream both ways whose handler sends each item back as it
 *   reads it, one thread of the client sending while another receives (as Python's
 *   both-ways streams do), against the bare stream one way: each item crosses twice;
 * - shm/pipelined/64, the same 16 B echoes from one thread, 64 of them sent ahead of the
 *   answers, against shm/call/16, the same echoes one at a time through the generated stub
 *   (a blocking call each): what calls in flight over shm:// would give, carried as the items
 *   of a ring in the channel (issue 37).
 * The bare streams are what the stream would be with nothing of shmrpc around it: the ratio
 * says what the transport costs. Rows alternate for ROUNDS rounds; each prints items/s, and
 * each ratio is the median of the rounds' (this machine is shared and noisy: absolute
 * figures drift, ratios hold). Usage: shmrpc-bench-stream [SECONDS-PER-ROW [ROW]]. */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fnmatch.h>

#include "args.h"
#include "clock.h"
#include "core/wait.h" /* shmrpc__cpu_relax, as the runtime spins */
#include "port.h"
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

/* --- tcp-raw/stream: the bare TCP connection ------------------------------------------ */

#define RAW_BUF 65536u
#define RAW_REC (4 + ITEM) /* an item as an ITEMS frame carries it: its length, big-endian */

/* Writes records of the items 0, 1, ... to fd, RAW_BUF bytes at a time, until the reader
 * closes. */
static void raw_produce(int fd)
{
    static uint8_t buf[RAW_BUF];
    uint32_t len = htonl(ITEM);
    for (uint64_t i = 0;;) {
        size_t n = 0;
        for (; n + RAW_REC <= sizeof buf; n += RAW_REC, i++) {
            memcpy(buf + n, &len, 4);
            memcpy(buf + n + 4, &i, sizeof i);
            memset(buf + n + 4 + sizeof i, 0, ITEM - sizeof i);
        }
        for (size_t off = 0; off < n;) {
            ssize_t w = send(fd, buf + off, n - off, MSG_NOSIGNAL);
            if (w <= 0) return;
            off += (size_t)w;
        }
    }
}

/* Items/s that the reader took in seconds from a forked writer over loopback, or -1 (a
 * failure, or an item out of order). */
static double raw_row(double seconds)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) != 0) {
        perror("shmrpc-bench-stream: tcp-raw: listen");
        if (ls >= 0) close(ls);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        alarm(120);
        close(ls);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) raw_produce(fd);
        _exit(0);
    }
    int fd = accept(ls, NULL, NULL);
    close(ls);
    if (fd < 0) {
        perror("shmrpc-bench-stream: tcp-raw: accept");
        waitpid(pid, NULL, 0);
        return -1;
    }
    static uint8_t buf[RAW_BUF];
    size_t have = 0;
    uint64_t n = 0;
    uint8_t item[ITEM];
    bool bad = false;
    int64_t start = bench_now_ns(), end = start + (int64_t)(seconds * 1e9);
    while (!bad && bench_now_ns() < end) {
        ssize_t r = recv(fd, buf + have, sizeof buf - have, 0);
        if (r <= 0) {
            bad = true;
            break;
        }
        have += (size_t)r;
        size_t at = 0;
        for (; at + RAW_REC <= have; at += RAW_REC, n++) {
            uint32_t len;
            memcpy(&len, buf + at, 4);
            memcpy(item, buf + at + 4, ITEM);
            uint64_t i;
            memcpy(&i, item, sizeof i);
            bad |= ntohl(len) != ITEM || i != n;
        }
        memmove(buf, buf + at, have - at);
        have -= at;
    }
    double took = (double)(bench_now_ns() - start) / 1e9;
    close(fd); /* the writer's next send fails */
    waitpid(pid, NULL, 0);
    return bad ? -1 : (double)n / took;
}

/* --- shm/stream, tcp/stream: the generated stubs ---------------------------------------- */

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

/* The client stream's handler: every item read, its index checked. */
static int sink(shmrpc_ctx *ctx, shmrpc_bytes *out)
{
    shmrpc_bytes item;
    uint64_t n = 0, i;
    int rc;
    while ((rc = stream_bench_sink_read(ctx, &item)) == 1) {
        if (item.len == ITEM) memcpy(&i, item.ptr, sizeof i);
        if (item.len != ITEM || i != n)
            return shmrpc_ctx_error(ctx, SHMRPC_EPROTO, "item %" PRIu64 " out of order", n);
        n++;
    }
    if (rc != 0) return rc;
    static _Thread_local uint64_t count;
    count = n;
    *out = shmrpc_bytes_of(&count, sizeof count);
    return 0;
}

/* The stream both ways' handler: each item sent back as it is read. */
static int echo(shmrpc_ctx *ctx)
{
    shmrpc_bytes item;
    int rc;
    while ((rc = stream_bench_echo_read(ctx, &item)) == 1)
        if ((rc = stream_bench_echo_write(ctx, item)) != 0) break;
    return rc;
}

static int one(shmrpc_ctx *ctx, shmrpc_bytes x, shmrpc_bytes *out)
{
    (void)ctx;
    *out = x;
    return 0;
}

static const StreamBench_handlers handlers = {
    .items = items, .sink = sink, .echo = echo, .one = one};

static shmrpc_server *server;

static void on_term(int sig)
{
    (void)sig;
    shmrpc_server_stop(server); /* async-signal-safe (server.h) */
}

/* The server at addr, forked: it serves until SIGTERM, and dies with this process. */
static pid_t server_start(const char *addr)
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
static double stub_row(shmrpc_client *c, double seconds)
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

/* Items/s that one client stream sent in seconds, or -1 (a failure, or a count that the
 * handler gives otherwise). */
/* The client's items for seconds, corked or not (shmrpc_stream_cork): items/s, or -1. */
static double sink_items(shmrpc_client *c, double seconds, bool corked)
{
    shmrpc_stream *st;
    if (stream_bench_sink_open(c, &st) != 0) {
        fprintf(stderr, "shmrpc-bench-stream: open: %s\n", shmrpc_errmsg());
        return -1;
    }
    uint64_t n = 0, got = 0;
    uint8_t item[ITEM] = {0};
    int rc = shmrpc_stream_cork(st, corked);
    int64_t start = bench_now_ns(), end = start + (int64_t)(seconds * 1e9);
    for (; rc == 0; n++) {
        if ((n & 1023) == 0 && bench_now_ns() >= end) break;
        memcpy(item, &n, sizeof n);
        rc = stream_bench_sink_send(st, shmrpc_bytes_of(item, ITEM));
    }
    shmrpc_bytes answer;
    if (rc == 0) rc = stream_bench_sink_done(st, &answer);
    double took = (double)(bench_now_ns() - start) / 1e9;
    if (rc == 0 && answer.len == sizeof got) memcpy(&got, answer.ptr, sizeof got);
    if (rc != 0) fprintf(stderr, "shmrpc-bench-stream: sink: %s\n", shmrpc_errmsg());
    shmrpc_stream_close(st);
    return rc != 0 || got != n ? -1 : (double)n / took;
}

static double sink_row(shmrpc_client *c, double seconds)
{
    return sink_items(c, seconds, false);
}

static double sink_corked_row(shmrpc_client *c, double seconds)
{
    return sink_items(c, seconds, true);
}

/* The sending thread of a stream both ways: items numbered from 0 until stop, then the end. */
struct both_sender {
    shmrpc_stream *st;
    _Atomic bool stop;
    int rc;
};

static void *both_send(void *arg)
{
    struct both_sender *b = arg;
    uint8_t item[ITEM] = {0};
    int rc = 0;
    for (uint64_t n = 0; rc == 0 && !atomic_load_explicit(&b->stop, memory_order_relaxed); n++) {
        memcpy(item, &n, sizeof n);
        rc = stream_bench_echo_send(b->st, shmrpc_bytes_of(item, ITEM));
    }
    if (rc == 0) rc = stream_bench_echo_done(b->st);
    b->rc = rc;
    return NULL;
}

/* Items/s that came back through a stream both ways in seconds, sent from a thread of their
 * own, or -1 (a failure, or an item out of order). */
static double both_row(shmrpc_client *c, double seconds)
{
    struct both_sender b = {0};
    if (stream_bench_echo_open(c, &b.st) != 0) {
        fprintf(stderr, "shmrpc-bench-stream: open: %s\n", shmrpc_errmsg());
        return -1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, both_send, &b) != 0) {
        shmrpc_stream_close(b.st);
        return -1;
    }
    uint64_t n = 0, counted = 0, i;
    shmrpc_bytes item;
    int rc;
    int64_t start = bench_now_ns(), end = start + (int64_t)(seconds * 1e9), took = 0;
    while ((rc = stream_bench_echo_recv(b.st, &item)) == 1) {
        if (item.len == ITEM) memcpy(&i, item.ptr, sizeof i);
        if (item.len != ITEM || i != n) break;
        if ((++n & 1023) == 0 && !took && bench_now_ns() >= end) {
            took = bench_now_ns() - start;
            counted = n;
            atomic_store(&b.stop, true); /* the rest in transit come back, then the end */
        }
    }
    atomic_store(&b.stop, true);
    if (rc == 1) shmrpc_client_cancel(c); /* an item out of order: the sender may wait for room */
    pthread_join(t, NULL);
    if (rc != 0 || b.rc != 0)
        fprintf(stderr, "shmrpc-bench-stream: both ways: %s\n", shmrpc_errmsg());
    shmrpc_stream_close(b.st);
    return rc != 0 || b.rc != 0 || !took ? -1 : (double)counted / ((double)took / 1e9);
}

/* Calls/s of 16 B echoes carried as the items of one stream both ways from one thread,
 * IN_FLIGHT of them sent ahead of the answers, or -1 (a failure, or an answer out of
 * order). */
#define IN_FLIGHT 64
static double pipelined_row(shmrpc_client *c, double seconds)
{
    shmrpc_stream *st;
    if (stream_bench_echo_open(c, &st) != 0) {
        fprintf(stderr, "shmrpc-bench-stream: open: %s\n", shmrpc_errmsg());
        return -1;
    }
    uint64_t sent = 0, got = 0, i;
    uint8_t item[ITEM] = {0};
    shmrpc_bytes answer;
    int rc = 0;
    int64_t start = bench_now_ns(), end = start + (int64_t)(seconds * 1e9);
    for (;;) {
        if (sent - got < IN_FLIGHT) {
            memcpy(item, &sent, sizeof sent);
            if ((rc = stream_bench_echo_send(st, shmrpc_bytes_of(item, ITEM))) != 0) break;
            sent++;
            continue;
        }
        if ((rc = stream_bench_echo_recv(st, &answer)) != 1) break;
        rc = -1;
        if (answer.len == ITEM) memcpy(&i, answer.ptr, sizeof i);
        if (answer.len != ITEM || i != got) break;
        rc = 0;
        if ((++got & 1023) == 0 && bench_now_ns() >= end) break;
    }
    double took = (double)(bench_now_ns() - start) / 1e9;
    if (rc != 0) fprintf(stderr, "shmrpc-bench-stream: pipelined: %s\n", shmrpc_errmsg());
    shmrpc_stream_close(st);
    return rc != 0 ? -1 : (double)got / took;
}

/* Calls/s of the same echoes one at a time, or -1. */
static double call_row(shmrpc_client *c, double seconds)
{
    uint8_t item[ITEM] = {0};
    shmrpc_bytes answer;
    uint64_t n = 0, i;
    int64_t start = bench_now_ns(), end = start + (int64_t)(seconds * 1e9);
    for (;; n++) {
        if ((n & 1023) == 0 && bench_now_ns() >= end) break;
        memcpy(item, &n, sizeof n);
        if (stream_bench_one(c, shmrpc_bytes_of(item, ITEM), &answer) != 0) {
            fprintf(stderr, "shmrpc-bench-stream: one: %s\n", shmrpc_errmsg());
            return -1;
        }
        if (answer.len == ITEM) memcpy(&i, answer.ptr, sizeof i);
        if (answer.len != ITEM || i != n) return -1;
    }
    return (double)n / ((double)(bench_now_ns() - start) / 1e9);
}

/* A transport's row and the bare stream it is held against. */
struct pair {
    const char *row, *base;
    double (*row_fn)(shmrpc_client *c, double seconds); /* the row's items/s, or -1 */
    double (*base_row)(double seconds);                 /* the bare stream's items/s, or -1 */
    double (*base_call)(shmrpc_client *c, double seconds); /* or the row client's calls/s */
    char addr[64];
    bool on, base_on; /* chosen by ROW */
    pid_t server;
    shmrpc_client *c;
    double ratios[ROUNDS];
    int n;
};

/* p's server started and its client connected; -1 (said) when they are not. A stream's
 * deadline is the client's timeout, which outlasts the longest row (60 s). */
static int pair_start(struct pair *p)
{
    p->server = server_start(p->addr);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.timeout_ms = 90000;
    int rc = shmrpc_client_new(&p->c, &StreamBench_service_info, &o);
    for (int i = 0; rc == 0 && i < 500 && shmrpc_client_connect(p->c, p->addr) != 0; i++)
        usleep(10000); /* the server starts */
    if (rc == 0 && shmrpc_client_connect(p->c, p->addr) == 0) return 0;
    fprintf(stderr, "shmrpc-bench-stream: connect %s: %s\n", p->addr, shmrpc_errmsg());
    return -1;
}

/* Stops p's server: 0 when it ended well. */
static int pair_stop(struct pair *p)
{
    shmrpc_client_free(p->c);
    p->c = NULL;
    if (p->server <= 0) return 0;
    kill(p->server, SIGTERM);
    int st = 0;
    if (waitpid(p->server, &st, 0) != p->server || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "shmrpc-bench-stream: the server of %s ended with wait status %#x\n",
                p->addr, st);
        return -1;
    }
    return 0;
}

/* One round of p: its rows printed, the ratio kept; -1 when one failed. */
static int pair_round(struct pair *p, int k, double seconds)
{
    double base = 0, got = 0;
    if (p->base_on) {
        base = p->base_row ? p->base_row(seconds) : p->base_call(p->c, seconds);
        if (base < 0) {
            printf("%s failed\n", p->base);
            return -1;
        }
        printf("%-20s %6d %14.0f %10.1f\n", p->base, k + 1, base, 1e9 / base);
    }
    if (p->on) {
        got = p->row_fn(p->c, seconds);
        if (got < 0) {
            printf("%s failed\n", p->row);
            return -1;
        }
        printf("%-20s %6d %14.0f %10.1f", p->row, k + 1, got, 1e9 / got);
        if (p->base_on) printf("  %.3f", got / base);
        printf("\n");
    }
    if (p->on && p->base_on) p->ratios[p->n++] = got / base;
    return 0;
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
    struct pair pairs[] = {
        {.row = "shm/stream/16",
         .base = "ring/stream/16",
         .row_fn = stub_row,
         .base_row = ring_row},
        {.row = "shm/client-stream/16",
         .base = "ring/stream/16",
         .row_fn = sink_row,
         .base_row = ring_row},
        {.row = "tcp/stream/16",
         .base = "tcp-raw/stream/16",
         .row_fn = stub_row,
         .base_row = raw_row},
        {.row = "tcp/client-stream/16",
         .base = "tcp-raw/stream/16",
         .row_fn = sink_row,
         .base_row = raw_row},
        {.row = "tcp/client-corked/16",
         .base = "tcp-raw/stream/16",
         .row_fn = sink_corked_row,
         .base_row = raw_row},
        {.row = "shm/both/16", .base = "ring/stream/16", .row_fn = both_row, .base_row = ring_row},
        {.row = "tcp/both/16",
         .base = "tcp-raw/stream/16",
         .row_fn = both_row,
         .base_row = raw_row},
        {.row = "shm/pipelined/64",
         .base = "shm/call/16",
         .row_fn = pipelined_row,
         .base_call = call_row}};
    enum { NPAIRS = sizeof pairs / sizeof pairs[0] };
    snprintf(pairs[0].addr, sizeof pairs[0].addr, "shm://stream_bench_%d", (int)getpid());
    snprintf(pairs[1].addr, sizeof pairs[1].addr, "shm://stream_bench_in_%d", (int)getpid());
    snprintf(pairs[2].addr, sizeof pairs[2].addr, "tcp://127.0.0.1:%d", test_free_port());
    snprintf(pairs[3].addr, sizeof pairs[3].addr, "tcp://127.0.0.1:%d", test_free_port());
    snprintf(pairs[4].addr, sizeof pairs[4].addr, "tcp://127.0.0.1:%d", test_free_port());
    snprintf(pairs[5].addr, sizeof pairs[5].addr, "shm://stream_bench_both_%d", (int)getpid());
    snprintf(pairs[6].addr, sizeof pairs[6].addr, "tcp://127.0.0.1:%d", test_free_port());
    snprintf(pairs[7].addr, sizeof pairs[7].addr, "shm://stream_bench_calls_%d", (int)getpid());
    int status = 0;
    for (int i = 0; i < NPAIRS; i++) {
        struct pair *p = &pairs[i];
        p->on = !only || fnmatch(only, p->row, 0) == 0;
        p->base_on = !only || fnmatch(only, p->base, 0) == 0;
        if ((p->on || (p->base_on && p->base_call)) && pair_start(p) != 0) status = 1;
    }
    printf("%-20s %6s %14s %10s  %s\n", "row", "round", "items/s", "ns/item",
           "ratio to the bare stream");
    for (int k = 0; k < ROUNDS && status == 0; k++)
        for (int i = 0; i < NPAIRS && status == 0; i++)
            if (pair_round(&pairs[i], k, seconds) != 0) status = 1;
    for (int i = 0; i < NPAIRS; i++)
        if (pairs[i].n == ROUNDS)
            printf("%s / %s: %.3f (median of %d rounds)\n", pairs[i].row, pairs[i].base,
                   bench_median(pairs[i].ratios, ROUNDS), ROUNDS);
    for (int i = 0; i < NPAIRS; i++)
        if (pair_stop(&pairs[i]) != 0) status = 1;
    return status;
}
