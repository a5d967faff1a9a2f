/* SPDX-License-Identifier: MIT */
/* The baselines that the shm transport is measured against in the same run: a handoff
 * through shared memory that spins, yields or sleeps on a futex, and an echo over a Unix
 * (or TCP loopback) stream socket, served by one process or by epoll in N workers. */
#include "baselines.h"

#include <errno.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/wait.h" /* the runtime's own spin, so the spin baseline spins as it does */

/* The payload a client sends: its call number in the first 8 bytes (payloads are at least
 * 8 bytes), a fixed pattern after; the reply must carry both back. */
static void fill_payload(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + 7);
}

static uint8_t *make_payload(size_t n)
{
    uint8_t *p = malloc(n);
    if (p) fill_payload(p, n);
    return p;
}

static bool echo_ok(const uint8_t *got, const uint8_t *sent, size_t n, uint64_t seq)
{
    uint64_t s;
    memcpy(&s, got, sizeof s);
    return s == seq && got[n - 1] == sent[n - 1] && got[n / 2] == sent[n / 2];
}

/* --- shared-memory handoff --- */

/* The control lines of a handoff; the payload buffers follow in the same mapping, a page
 * each, unless the payload rides in the word's own line (the one-line variant). */
typedef struct handoff_shm {
    alignas(64) _Atomic uint32_t req;  /* call number + 1: written by the client, read by
                                          the server; a futex word in WAIT_FUTEX */
    uint8_t req_inline[60];            /* the request, in the one-line variant */
    alignas(64) _Atomic uint32_t resp; /* the call number + 1 answered: written by the
                                          server, read by the client */
    uint8_t resp_inline[60];           /* the reply, in the one-line variant */
} handoff_shm;
_Static_assert(sizeof(handoff_shm) == 128, "two cache lines");
_Static_assert(offsetof(handoff_shm, resp) == 64, "one line each way");

#define PAGE ((size_t)4096)

typedef struct handoff {
    bench_run *run;
    const bench_handoff_opts *o;
    handoff_shm *shm;
    uint8_t *req, *resp; /* where the payloads go: inline or the buffers */
    size_t n;
    uint8_t *src, *dst; /* the client's private copies */
} handoff;

static void futex_wait(_Atomic uint32_t *w, uint32_t old, int64_t timeout_ns)
{
    struct timespec ts = {(time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000)};
    /* Not FUTEX_PRIVATE: the word is shared between processes. */
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, old, timeout_ns >= 0 ? &ts : NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* Waits while *w == old. A server gives up (returns 1) once the run is over; a client
 * has its watchdog. */
static int wait_while(const handoff *h, _Atomic uint32_t *w, uint32_t old, bool server)
{
    for (unsigned i = 0;; i++) {
        if (atomic_load_explicit(w, memory_order_acquire) != old) return 0;
        switch (h->o->wait) {
        case BENCH_WAIT_SPIN:
            shmrpc__cpu_relax();
            if (server && i % 256 == 0 && bench_quit(h->run)) return 1;
            break;
        case BENCH_WAIT_YIELD:
            sched_yield();
            if (server && bench_quit(h->run)) return 1;
            break;
        case BENCH_WAIT_FUTEX:
            futex_wait(w, old, server ? 50000000 : -1);
            if (server && bench_quit(h->run)) return 1;
            break;
        }
    }
}

static int handoff_call(void *arg, uint64_t seq)
{
    handoff *h = arg;
    uint32_t s = (uint32_t)seq + 1;
    memcpy(h->src, &seq, sizeof seq);
    memcpy(h->req, h->src, h->n);
    atomic_store_explicit(&h->shm->req, s, memory_order_release);
    if (h->o->wait == BENCH_WAIT_FUTEX) futex_wake(&h->shm->req);
    wait_while(h, &h->shm->resp, s - 1, false);
    memcpy(h->dst, h->resp, h->n);
    return echo_ok(h->dst, h->src, h->n, seq) ? 0 : -1;
}

static int handoff_client(bench_run *run, int idx, void *arg)
{
    handoff *h = arg;
    h->src = make_payload(h->n);
    h->dst = malloc(h->n);
    if (!h->src || !h->dst) return 1;
    return bench_client_loop(run, idx, handoff_call, h);
}

static int handoff_server(bench_run *run, int idx, void *arg)
{
    (void)run;
    (void)idx;
    handoff *h = arg;
    uint32_t last = 0;
    for (;;) {
        if (wait_while(h, &h->shm->req, last, true)) return 0;
        last = atomic_load_explicit(&h->shm->req, memory_order_acquire);
        memcpy(h->resp, h->req, h->n);
        atomic_store_explicit(&h->shm->resp, last, memory_order_release);
        if (h->o->wait == BENCH_WAIT_FUTEX) futex_wake(&h->shm->resp);
    }
}

static void handoff_stop(void *arg)
{
    handoff *h = arg;
    futex_wake(&h->shm->req); /* a sleeping server looks at the quit flag */
}

int bench_handoff(bench_run *run)
{
    const bench_case *c = run->c;
    handoff h = {.run = run, .o = c->arg, .n = c->payload};
    if (c->clients != 1 || c->workers != 1 || h.n < 8 ||
        (h.o->one_line && h.n > sizeof h.shm->req_inline)) {
        snprintf(run->err, sizeof run->err, "a handoff is 1x1, 8 B or more (60 B in one line)");
        return -1;
    }
    size_t buf = (h.n + PAGE - 1) / PAGE * PAGE;
    size_t len = PAGE + 2 * buf;
    uint8_t *mem = bench_shared_alloc(len);
    if (!mem) {
        snprintf(run->err, sizeof run->err, "mmap: %s", strerror(errno));
        return -1;
    }
    h.shm = (handoff_shm *)mem;
    h.req = h.o->one_line ? h.shm->req_inline : mem + PAGE;
    h.resp = h.o->one_line ? h.shm->resp_inline : mem + PAGE + buf;
    if (bench_spawn_server(run, handoff_server, 0, &h) == 0)
        bench_spawn_client(run, handoff_client, 0, &h);
    int rc = bench_reap(run, handoff_stop, &h);
    bench_shared_free(mem, len);
    return rc;
}

/* --- one line, the limit --- */

/* The line: the turn (odd: the client's request is there; even: the server's answer) and
 * the payload, both written by whoever has the turn. */
typedef struct line_shm {
    alignas(64) _Atomic uint64_t turn;
    uint8_t data[56];
} line_shm;
_Static_assert(sizeof(line_shm) == 64, "one cache line");

typedef struct line {
    bench_run *run;
    line_shm *shm;
    size_t n;
    uint8_t *src, *dst;     /* the client's private copies */
    _Atomic uint32_t *park; /* a pair's (bench_line_pair): sleep while it is 1; or NULL */
} line;

static int line_call(void *arg, uint64_t seq)
{
    line *l = arg;
    uint64_t t = 2 * seq + 1;
    memcpy(l->src, &seq, sizeof seq);
    memcpy(l->shm->data, l->src, l->n);
    atomic_store_explicit(&l->shm->turn, t, memory_order_release);
    while (atomic_load_explicit(&l->shm->turn, memory_order_acquire) == t)
        shmrpc__cpu_relax();
    memcpy(l->dst, l->shm->data, l->n);
    return echo_ok(l->dst, l->src, l->n, seq) ? 0 : -1;
}

static int line_client(bench_run *run, int idx, void *arg)
{
    line *l = arg;
    l->src = make_payload(l->n);
    l->dst = malloc(l->n);
    if (!l->src || !l->dst) return 1;
    return bench_client_loop(run, idx, line_call, l);
}

static int line_server(bench_run *run, int idx, void *arg)
{
    (void)idx;
    line *l = arg;
    uint8_t buf[sizeof l->shm->data];
    uint64_t last = 0;
    for (unsigned i = 1;; i++) {
        uint64_t t = atomic_load_explicit(&l->shm->turn, memory_order_acquire);
        if (t != last && (t & 1)) {
            memcpy(buf, l->shm->data, l->n);
            memcpy(l->shm->data, buf, l->n);
            last = t + 1;
            atomic_store_explicit(&l->shm->turn, last, memory_order_release);
            continue;
        }
        shmrpc__cpu_relax();
        /* quit and park have lines of their own that nobody writes while the line is in
         * use: reading them now and then costs no transfer. */
        if (i % 256 != 0) continue;
        /* Parked, it sleeps until its client wakes it for a turn, or bench_reap at the
         * end: a sleep that woke to look would take a CPU from the row's processes. The
         * timeout only bounds a lost wake-up. */
        while (l->park && atomic_load(l->park) && !bench_quit(run))
            futex_wait(l->park, 1, 1000000000);
        if (bench_quit(run)) return 0;
    }
}

int bench_line(bench_run *run)
{
    const bench_case *c = run->c;
    line l = {.run = run, .n = c->payload};
    if (c->clients != 1 || c->workers != 1 || l.n < 8 || l.n > sizeof l.shm->data) {
        snprintf(run->err, sizeof run->err, "the line is 1x1, 8 to 56 B");
        return -1;
    }
    l.shm = bench_shared_alloc(PAGE);
    if (!l.shm) {
        snprintf(run->err, sizeof run->err, "mmap: %s", strerror(errno));
        return -1;
    }
    if (bench_spawn_server(run, line_server, 0, &l) == 0)
        bench_spawn_client(run, line_client, 0, &l);
    int rc = bench_reap(run, NULL, NULL);
    bench_shared_free(l.shm, PAGE);
    return rc;
}

/* The line as a pair (bench_case.pair): its server, started now, sleeps until the row's
 * client wakes it for a turn; the client's copies are in the same page, lines of their
 * own. */
typedef struct line_pair {
    bench_pair pair;
    line l;
    alignas(64) line_shm shm;
    alignas(64) _Atomic uint32_t park;
    alignas(64) uint8_t src[sizeof(line_shm)], dst[sizeof(line_shm)];
} line_pair;
_Static_assert(sizeof(line_pair) <= PAGE, "one page");

bench_pair *bench_line_pair(bench_run *run)
{
    line_pair *p = bench_shared_alloc(PAGE);
    if (!p) {
        snprintf(run->err, sizeof run->err, "mmap: %s", strerror(errno));
        return NULL;
    }
    p->l =
        (line){.run = run, .shm = &p->shm, .n = 16, .src = p->src, .dst = p->dst, .park = &p->park};
    fill_payload(p->src, p->l.n);
    p->park = 1;
    p->pair =
        (bench_pair){.call = line_call, .arg = &p->l, .park = &p->park, .mem = p, .len = PAGE};
    if (bench_spawn_server(run, line_server, 0, &p->l) != 0) {
        bench_shared_free(p, PAGE);
        return NULL;
    }
    return &p->pair;
}

/* --- stream sockets --- */

/* A connection's buffered reader: length-prefixed messages (4 bytes, host order). */
typedef struct conn {
    int fd;
    uint8_t *buf;
    size_t cap, len;
} conn;

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One read, then every complete message echoed back. 1 at end of file, -1 on error. */
static int serve_readable(conn *c)
{
    ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (r == 0) return 1;
    if (r < 0) return errno == EINTR || errno == EAGAIN ? 0 : -1;
    c->len += (size_t)r;
    size_t off = 0;
    while (c->len - off >= 4) {
        uint32_t n;
        memcpy(&n, c->buf + off, 4);
        if (n > c->cap - 4) return -1;
        if (c->len - off < 4 + (size_t)n) break;
        if (write_all(c->fd, c->buf + off, 4 + (size_t)n) != 0) return -1;
        off += 4 + (size_t)n;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    return 0;
}

typedef struct stream {
    bench_run *run;
    int (*fds)[2]; /* per client: [0] the client's end, [1] the server's */
    int clients, workers;
    size_t n;
    /* a client's state, set in the client process */
    conn c;
    uint8_t *msg; /* length + payload */
} stream;

/* Closes every descriptor of the row but the ones this process keeps. */
static void keep_only(stream *s, int client, int worker)
{
    for (int i = 0; i < s->clients; i++) {
        if (i != client) close(s->fds[i][0]);
        if (worker < 0 || i % s->workers != worker) close(s->fds[i][1]);
    }
}

static int stream_call(void *arg, uint64_t seq)
{
    stream *s = arg;
    memcpy(s->msg + 4, &seq, sizeof seq);
    if (write_all(s->c.fd, s->msg, 4 + s->n) != 0) return -1;
    s->c.len = 0;
    while (s->c.len < 4 + s->n) {
        ssize_t r = read(s->c.fd, s->c.buf + s->c.len, s->c.cap - s->c.len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        s->c.len += (size_t)r;
    }
    uint32_t n;
    memcpy(&n, s->c.buf, 4);
    return n == s->n && s->c.len == 4 + s->n && echo_ok(s->c.buf + 4, s->msg + 4, s->n, seq) ? 0
                                                                                             : -1;
}

static int stream_client(bench_run *run, int idx, void *arg)
{
    stream *s = arg;
    keep_only(s, idx, -1);
    s->msg = malloc(4 + s->n);
    uint8_t *payload = make_payload(s->n);
    s->c = (conn){.fd = s->fds[idx][0], .buf = malloc(4 + s->n), .cap = 4 + s->n};
    if (!s->msg || !payload || !s->c.buf) return 1;
    uint32_t n = (uint32_t)s->n;
    memcpy(s->msg, &n, 4);
    memcpy(s->msg + 4, payload, s->n);
    return bench_client_loop(run, idx, stream_call, s);
}

/* A worker that serves one connection blocks in read(); one with several uses epoll,
 * as a real server would. Either way it stops at end of file on all of them. */
static int stream_worker(bench_run *run, int w, void *arg)
{
    stream *s = arg;
    keep_only(s, -1, w);
    int mine = 0;
    conn *cs = calloc((size_t)s->clients, sizeof *cs);
    if (!cs) return 1;
    for (int i = w; i < s->clients; i += s->workers) {
        cs[i] = (conn){.fd = s->fds[i][1], .buf = malloc(2 * (4 + s->n)), .cap = 2 * (4 + s->n)};
        if (!cs[i].buf) return 1;
        mine++;
    }
    if (mine == 1) {
        int rc;
        while ((rc = serve_readable(&cs[w])) == 0)
            ;
        return rc == 1 ? 0 : 1;
    }
    int ep = epoll_create1(0);
    if (ep < 0) return 1;
    for (int i = w; i < s->clients; i += s->workers) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) != 0) return 1;
    }
    struct epoll_event evs[BENCH_MAX_CLIENTS];
    while (mine > 0) {
        int k = epoll_wait(ep, evs, BENCH_MAX_CLIENTS, 100);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return 1;
        if (k == 0 && bench_quit(run)) break;
        for (int j = 0; j < k; j++) {
            conn *c = &cs[evs[j].data.u32];
            int rc = serve_readable(c);
            if (rc < 0) return 1;
            if (rc == 1) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                mine--;
            }
        }
    }
    return 0;
}

/* A connected TCP loopback pair, Nagle off on both ends. */
static int tcp_pair(int fd[2])
{
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    fd[0] = socket(AF_INET, SOCK_STREAM, 0);
    fd[1] = -1;
    if (l < 0 || fd[0] < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0 ||
        connect(fd[0], (struct sockaddr *)&a, sizeof a) != 0 ||
        (fd[1] = accept(l, NULL, NULL)) < 0) {
        if (l >= 0) close(l);
        if (fd[0] >= 0) close(fd[0]);
        return -1;
    }
    close(l);
    setsockopt(fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

int bench_stream(bench_run *run)
{
    const bench_case *c = run->c;
    const bench_stream_opts *o = c->arg;
    stream s = {.run = run, .clients = c->clients, .workers = c->workers, .n = c->payload};
    if (s.n < 8 || s.workers > s.clients) {
        snprintf(run->err, sizeof run->err, "a stream row needs 8 B and workers <= clients");
        return -1;
    }
    s.fds = calloc((size_t)s.clients, sizeof *s.fds);
    if (!s.fds) return -1;
    int made = 0;
    for (; made < s.clients; made++) {
        int rc = o->tcp ? tcp_pair(s.fds[made]) : socketpair(AF_UNIX, SOCK_STREAM, 0, s.fds[made]);
        if (rc != 0) {
            snprintf(run->err, sizeof run->err, "socket: %s", strerror(errno));
            break;
        }
    }
    if (made == s.clients) {
        int rc = 0;
        for (int w = 0; w < s.workers && rc == 0; w++)
            rc = bench_spawn_server(run, stream_worker, w, &s);
        for (int i = 0; i < s.clients && rc == 0; i++)
            rc = bench_spawn_client(run, stream_client, i, &s);
    }
    /* Our copies go, so that each worker sees end of file when its clients exit. */
    for (int i = 0; i < made; i++) {
        close(s.fds[i][0]);
        close(s.fds[i][1]);
    }
    int rc = bench_reap(run, NULL, NULL);
    free(s.fds);
    return made == s.clients ? rc : -1;
}
