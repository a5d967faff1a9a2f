/* SPDX-License-Identifier: MIT */
/* A tcp:// worker: made, its loop over epoll (and a blocking recv for a lone connection)
 * until it is told to stop, and its end. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "transport/tcp/tcp_int.h"
#include "core/wait.h"
#include "transport/tcp/tcp_server_int.h"

#define HOT_WAIT_MS 1                /* a lone connection's recv, before epoll again */
#define HOT_LOOK_NS (10 * NS_PER_MS) /* how often a worker in hot_wait looks at epoll */
/* Connections still in their handshake (accept to AUTH, TLS included: docs/wire.md,
 * "Limits"): a worker holds at most half of max_conns of them (at least 4), and an
 * address with an eighth of those (at least 2) makes room for its own new ones; past the
 * quota, or at max_conns, one of them makes room for a new connection (make_room). */
#define SHAKING_SHARE 2
#define SHAKING_MIN 4
#define SHAKING_ADDR_SHARE 8
#define SHAKING_ADDR_MIN 2

static void worker_destroy(worker *w)
{
    while (w->n_peers)
        shmrpc__tcp_peer_free(w, w->peers[0]);
    /* Serving in place, the program goes on after serve returns: a stream's handler still
     * running (a solo worker's) is waited for, and ends at its next send (its client is gone). A
     * forked worker's threads end with its process. */
    if (w->index < 0 && w->running) {
        shmrpc__tcp_pool_join(w);
        shmrpc__tcp_collect(w);
    }
    shmrpc__tcp_unbury(w);
    if (!shmrpc__tcp_pool_end(w)) return;
    if (w->ep >= 0) close(w->ep);
    if (w->spare >= 0) close(w->spare);
    shmrpc__ctx_destroy(&w->ctx);
    shmrpc_arena_free(w->arena);
    shmrpc_buf_destroy(&w->req);
    shmrpc_buf_destroy(&w->resp);
    shmrpc_buf_destroy(&w->err);
    shmrpc_buf_destroy(&w->unz);
    free(w->peers);
    free(w);
}

static int worker_init(worker *w, tcp_listener *l, int index)
{
    w->l = l;
    w->index = index;
    w->source = index < 0 ? l->fd : l->hand[index][1];
    w->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    shmrpc_buf_init(&w->req);
    shmrpc_buf_init(&w->resp);
    shmrpc_buf_init(&w->err);
    shmrpc_buf_init(&w->unz);
    w->arena = shmrpc_arena_new(0);
    w->peers = calloc((size_t)l->cfg.max_conns, sizeof *w->peers);
    w->shaking_max = l->cfg.max_conns / SHAKING_SHARE;
    if (w->shaking_max < SHAKING_MIN) w->shaking_max = SHAKING_MIN;
    w->shaking_per_addr = w->shaking_max / SHAKING_ADDR_SHARE;
    if (w->shaking_per_addr < SHAKING_ADDR_MIN) w->shaking_per_addr = SHAKING_ADDR_MIN;
    if (shmrpc__ctx_init(&w->ctx, l->server) || !w->arena || !w->peers) return SHMRPC_ENOMEM;
    uint32_t n_rows;
    shmrpc__stats_row *rows = shmrpc__stats_rows(&l->stats, index < 0 ? 0 : index, &n_rows);
    shmrpc__ctx_set_stats(&w->ctx, rows, n_rows);
    if (w->ep < 0) return SHMRPC_ESYS(errno);
    shmrpc_arena_set_limit(w->arena, (size_t)SHMRPC__WIRE_MAX_HELLO * 8);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->tag_source};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->source, &ev) != 0) return SHMRPC_ESYS(errno);
    if (index < 0) {
        ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &w->tag_stop};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, l->stop_pipe[0], &ev) != 0) return SHMRPC_ESYS(errno);
    }
    /* A forked worker runs a connection's calls on threads; one serving in place (a
     * program's own thread, e.g. the supervisor's control service) one after another. */
    if (index >= 0 && l->cfg.max_running > 1) return shmrpc__tcp_pool_init(w, l->cfg.max_running);
    return 0;
}

/* A worker's one connection when it has only one, between frames: the worker waits for
 * its next request in a blocking recv, one system call where epoll_pwait and recv are
 * two (on loopback, a fifth of a call's system calls). NULL otherwise. */
static peer *hot_peer(const worker *w)
{
    if (w->n_peers != 1 || w->draining || w->running) return NULL;
    peer *p = w->peers[0];
    if (p->state != P_READY || p->closing || p->in.len || shmrpc__tcp_out_left(p) || p->have_hdr)
        return NULL;
    return p;
}

/* Waits up to HOT_WAIT_MS in recv for p's next frame and serves what came as an epoll
 * event would; false when nothing came (the caller goes back to epoll). */
static bool hot_wait(worker *w, peer *p)
{
    if (!p->hot) {
        struct timeval tv = {.tv_sec = 0, .tv_usec = HOT_WAIT_MS * 1000};
        if (setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) return false;
        p->hot = true;
    }
    if (shmrpc__buf_grow(&p->in, SHMRPC__FRAME_HDR_SIZE + READ_AHEAD)) return false;
    ssize_t n = shmrpc__io_recv(&p->io, p->in.data, SHMRPC__FRAME_HDR_SIZE + READ_AHEAD, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return false; /* the timeout, or a signal */
    if (n < 0) {      /* TLS failed, or the socket: epoll would not say so again */
        if (p->io.failed) shmrpc__tcp_log_limit(w, "TLS with %s failed: %s", p->from, p->io.why);
        shmrpc__tcp_peer_free(w, p);
        return true;
    }
    if (n > 0) {
        p->in.len = (size_t)n;
        shmrpc__tcp_frame_begins(w, p, shmrpc__now_ns());
    }
    shmrpc__tcp_peer_event(w, p, EPOLLIN); /* n == 0: it reads the end of the stream again */
    return true;
}

/* Serves connections until stopped: worker index of the crew, or in place (-1). A forked
 * worker keeps SIGTERM blocked except inside epoll_pwait, so a call in progress is
 * finished and its answer sent before it stops. */
int shmrpc__tcp_worker_run(tcp_listener *l, int index)
{
    bool forked = index >= 0;
    worker *w = calloc(1, sizeof *w);
    if (!w) return SHMRPC_ENOMEM;
    w->ep = w->spare = w->done_fd = -1;
    int rc = worker_init(w, l, index);
    sigset_t block, open;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, forked ? &block : NULL, &open);
    sigdelset(&open, SIGTERM);
    int64_t next_sweep = 0, next_look = 0, next_term = 0;
    while (rc == 0) {
        if (!w->draining && shmrpc__tcp_stopping(w)) shmrpc__tcp_drain_begin(w);
        if (w->draining) {
            int64_t now = shmrpc__now_ns();
            shmrpc__tcp_drain_step(w, now);
            int64_t end = w->drain_end + (w->running ? DRAIN_RUNNING_MS * NS_PER_MS : 0);
            if ((w->n_peers == 0 && !w->running) || now >= end) break;
        }
        /* A lone busy connection is served from hot_wait, with a look at epoll (new
         * connections, SIGTERM, the sweep) every HOT_LOOK_NS. */
        int timeout = w->draining ? 10 : SWEEP_MS;
        if (w->pool_max && atomic_load_explicit(&w->n_todo, memory_order_relaxed)) {
            shmrpc__tcp_pool_nudge(w, shmrpc__now_ns());
            timeout = 0 < timeout ? 1 : timeout; /* a millisecond, to look again */
        }
        shmrpc__tcp_unbury(w); /* no event of the last batch is left to name them */
        peer *hot = hot_peer(w);
        if (hot) {
            int64_t now = shmrpc__now_ns();
            if (now < next_look && hot_wait(w, hot)) continue;
            if (now >= next_look) {
                timeout = 0;
                next_look = now + HOT_LOOK_NS;
            }
        }
        if (w->again) timeout = 0;
        /* Streams' items are framed as their handlers write them, with no wake-up while the
         * worker keeps looking: it looks again at once while any came. */
        peer *framed = w->outs ? shmrpc__tcp_stream_look(w) : NULL;
        if (framed) {
            shmrpc__tcp_serve_touched(w, framed);
            timeout = 0;
        }
        struct epoll_event evs[64];
        int n = epoll_pwait(w->ep, evs, 64, timeout, forked ? &open : NULL);
        if (n < 0 && errno != EINTR) rc = SHMRPC_ESYS(errno);
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &w->tag_source)
                shmrpc__tcp_take_connections(w);
            else if (tag == &w->tag_done)
                shmrpc__tcp_collect(w);
            else if (tag != &w->tag_stop)
                shmrpc__tcp_peer_event(w, tag, evs[i].events);
        }
        shmrpc__tcp_serve_again(w);
        int64_t now = shmrpc__now_ns();
        /* epoll_pwait opens SIGTERM only while it sleeps, and one that finds events ready
         * does not sleep: a worker kept busy would never see it. So it looks for it
         * pending, at most every HOT_LOOK_NS (one system call). */
        if (forked && now >= next_term) {
            sigset_t pending;
            if (sigpending(&pending) == 0 && sigismember(&pending, SIGTERM))
                shmrpc__tcp_told_to_stop = 1;
            next_term = now + HOT_LOOK_NS;
        }
        if (now >= next_sweep) {
            shmrpc__tcp_sweep(w, now);
            next_sweep = now + SWEEP_MS * NS_PER_MS;
        }
    }
    if (rc == 0) shmrpc__tcp_send_what_ran(w);
    worker_destroy(w);
    return rc;
}
