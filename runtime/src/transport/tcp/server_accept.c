/* SPDX-License-Identifier: MIT */
/* New tcp:// connections: the manager accepts them and hands each to its least loaded
 * worker; a worker takes them (or accepts them itself, serving in place), making room or
 * refusing when it is full. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/tcp/tcp_int.h"
#include "core/wait.h"
#include "transport/tcp/tcp_server_int.h"

/* Refuses a connection with an ERROR frame, best effort, and closes it. */
static void refuse_fd(int fd, int status, const char *msg)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc__tcp_put_error_frame(&b, 0, 0, status, msg);
    if (!b.err && send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* the peer is gone already */
    }
    shmrpc_buf_destroy(&b);
    close(fd);
}

static void refuse_busy(int fd, int max_conns)
{
    char msg[96];
    snprintf(msg, sizeof msg, "too many connections (a worker serves at most %d)", max_conns);
    refuse_fd(fd, SHMRPC_EBUSY, msg);
}

/* The finished connection to close when the worker is at its cap and none is in its
 * handshake: the one idle longest (between frames, nothing to send); NULL when every one
 * is busy. A connection whose calls run is never closed to make room. */
static peer *longest_idle(const worker *w)
{
    peer *best = NULL;
    for (int i = 0; i < w->n_peers; i++) {
        peer *p = w->peers[i];
        if (p->state != P_READY || p->closing || p->in.len || p->have_hdr ||
            shmrpc__tcp_out_left(p) || p->running)
            continue;
        if (!best || p->last_ns < best->last_ns) best = p;
    }
    return best;
}

/* Closes p for a new connection from `from`, telling it why (best effort, as the sweep
 * does at a timeout). One in its handshake that has sent nothing gets the ERROR in plain
 * bytes, TLS or not, as refuse_fd sends it (its TLS has not started: peer_event): a TLS
 * client reads it as a refusal before TLS. */
static void close_for_room(worker *w, peer *p, const char *from, int status, const char *why)
{
    if (p->state != P_READY && !p->heard && shmrpc__tcp_out_left(p) == 0) {
        shmrpc_buf b;
        shmrpc_buf_init(&b);
        shmrpc__tcp_put_error_frame(&b, 0, 0, status, why);
        if (!b.err && send(p->fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            /* the peer is gone already */
        }
        shmrpc_buf_destroy(&b);
    } else if (!p->closing && shmrpc__tcp_out_left(p) == 0 && !p->running) {
        shmrpc__tcp_put_error_frame(&p->out, 0, 0, status, why);
        shmrpc__tcp_peer_flush(w, p);
    }
    shmrpc__tcp_log_limit(w, "closed the connection of %s for one from %s: %s", p->from, from, why);
    shmrpc__tcp_peer_free(w, p);
}

/* The connection in its handshake whose address holds the most of them at w (the oldest
 * such); NULL when none is in its handshake. */
static peer *largest_holder(const worker *w)
{
    peer *best = NULL;
    uint32_t most = 0;
    for (peer *p = w->shaking; p; p = p->shaking_next) {
        uint32_t n = shmrpc__tcp_shaking_from(w, p->addr);
        if (n > most) best = p, most = n;
    }
    return best;
}

/* Makes room for a new connection from the address of key (id) at w, before anything is
 * refused (docs/wire.md, "Limits"). While the worker has room (fewer than max_conns, and
 * fewer than its quota in their handshake), nothing is closed: a flood that fits is held,
 * not churned, so a client of its address is not closed for a slow first byte. Past
 * either, one in its handshake goes: of the new connection's own address when that holds
 * its quota or more, else of the address that holds the most (a flood pays for itself);
 * of those, the oldest that has sent nothing, else the oldest. With none in its
 * handshake, at max_conns, the finished one idle longest goes. false when none can go
 * (every connection has calls running, or a frame or answers in hand): the new one is
 * refused. */
static bool make_room(worker *w, addr_key key, uint64_t id, const char *from)
{
    int cap = w->l->cfg.max_conns;
    bool full = w->n_peers >= cap;
    if (!full && w->n_shaking < w->shaking_max) return true;
    char why[200];
    peer *p = NULL;
    if (shmrpc__tcp_shaking_from(w, key) >= (uint32_t)w->shaking_per_addr)
        p = shmrpc__tcp_oldest_shaking(w, &id);
    if (!p) {
        peer *most = largest_holder(w);
        if (most) p = shmrpc__tcp_oldest_shaking(w, &most->addr_id);
    }
    if (p) {
        if (full)
            snprintf(why, sizeof why,
                     "handshake timeout: closed to make room for a new connection (a worker "
                     "serves at most %d)",
                     cap);
        else
            snprintf(why, sizeof why,
                     "handshake timeout: closed to make room for a new connection (a worker "
                     "holds at most %d connections in their handshake)",
                     w->shaking_max);
        close_for_room(w, p, from, SHMRPC_ETIMEDOUT, why);
        return true;
    }
    if (!full) return true;
    /* At the cap, idle connections make room next: one that idles for minutes must not
     * lock a new client out. Its client connects again before its next call. */
    p = longest_idle(w);
    if (!p) return false;
    snprintf(why, sizeof why, "idle connection closed to make room (a worker serves at most %d)",
             cap);
    close_for_room(w, p, from, SHMRPC_ETIMEDOUT, why);
    return true;
}

static void add_peer(worker *w, int fd)
{
    const shmrpc__tcp_cfg *cfg = &w->l->cfg;
    char from[64];
    uint64_t id;
    addr_key key = shmrpc__tcp_addr_buckets(w->l, fd, from, sizeof from, &id);
    if (!make_room(w, key, id, from)) {
        shmrpc__tcp_log_limit(w, "refused a connection from %s: all %d are busy", from,
                              cfg->max_conns);
        refuse_busy(fd, cfg->max_conns);
        return;
    }
    peer *p = calloc(1, sizeof *p);
    if (!p) {
        close(fd);
        return;
    }
    p->fd = fd;
    shmrpc__io_init(&p->io, fd);
    p->tls_due = w->l->tls != NULL;
    p->addr = key;
    p->addr_id = id;
    memcpy(p->from, from, sizeof p->from);
    shmrpc_buf_init(&p->in);
    shmrpc_buf_init(&p->out);
    p->accepted_ns = p->last_ns = shmrpc__now_ns();
    p->events = EPOLLIN;
    shmrpc__tcp_set_nodelay(fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        shmrpc__io_close(&p->io, false);
        free(p);
        return;
    }
    w->peers[w->n_peers++] = p;
    shmrpc__tcp_count_open(w, 1);
    shmrpc__tcp_shaking_add(w, p);
    /* A client's first bytes have usually come while its connection waited in the
     * kernel's queue: they are served now, not after the epoll round that would report
     * them (while a flood may close the oldest connections in their handshake). */
    char byte;
    if (recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) >= 0) shmrpc__tcp_peer_event(w, p, EPOLLIN);
}

/* Accepts one pending connection; -1 when none is left. Out of descriptors, it gives up
 * its spare one to accept and drop a connection, so a full table never makes a readable
 * listener spin (accept fails with EMFILE before it looks for a connection, so only the
 * spare can tell whether one is left). */
static int accept_one(int lfd, int *spare)
{
    for (;;) {
        /* Blocking, for hot_wait; every other recv and send says MSG_DONTWAIT. */
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) return fd;
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if ((errno == EMFILE || errno == ENFILE) && *spare >= 0) {
            close(*spare);
            fd = accept(lfd, NULL, NULL);
            if (fd >= 0) close(fd);
            *spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (fd >= 0) continue;
        }
        return -1; /* EAGAIN, or no spare */
    }
}

/* Receives one socket the manager sent; -1 when none is left. */
static int receive_fd(int from)
{
    char data;
    struct iovec iov = {&data, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    for (;;) {
        ssize_t n = recvmsg(from, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
            c->cmsg_len != CMSG_LEN(sizeof(int)))
            continue; /* not from our manager's send_fd: nothing to keep */
        int fd;
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
        return fd;
    }
}

/* Takes the connections that are waiting: from the listener when serving in place, else
 * those the manager handed over. */
void shmrpc__tcp_take_connections(worker *w)
{
    for (int i = 0; i < 64; i++) {
        int fd = w->index < 0 ? accept_one(w->source, &w->spare) : receive_fd(w->source);
        if (fd < 0) return;
        if (w->index >= 0)
            atomic_fetch_add_explicit(&w->l->load->taken[w->index], 1, memory_order_relaxed);
        add_peer(w, fd);
    }
}

/* The worker to give a new connection: the running one with the fewest connections
 * (those it holds and those on their way to it), a busy one counting one more; one that
 * is being replaced only when none runs; one whose finished connections fill max_conns
 * only when all are so (it closes its longest idle connection to make room, or refuses:
 * connections in their handshake, which make room first, do not make a worker full, so
 * a flood of them does not send a client to a worker that must close a finished one);
 * never one above the count wanted (it is leaving). */
static int least_loaded(tcp_listener *l)
{
    int best = -1;
    uint64_t best_load = UINT64_MAX;
    int want = shmrpc__crew_wanted(&l->crew);
    for (int i = 0; i < want; i++) {
        const tcp_load *t = l->load;
        uint32_t conns = atomic_load_explicit(&t->open[i], memory_order_relaxed) + t->handed[i] -
                         atomic_load_explicit(&t->taken[i], memory_order_relaxed);
        uint64_t load =
            (uint64_t)conns * 2 + atomic_load_explicit(&t->busy[i], memory_order_relaxed);
        uint32_t held = atomic_load_explicit(&t->open[i], memory_order_relaxed),
                 shaking = atomic_load_explicit(&t->shaking[i], memory_order_relaxed);
        uint32_t finished = held > shaking ? held - shaking : 0;
        if (l->crew.pid[i] <= 0 || l->crew.leaving[i]) load += (uint64_t)1 << 40;
        if (finished >= (uint32_t)l->cfg.max_conns) load += (uint64_t)1 << 41;
        if (load < best_load) best = i, best_load = load;
    }
    return best;
}

static bool send_fd(int to, int fd)
{
    char data = 0;
    struct iovec iov = {&data, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    ssize_t n;
    do
        n = sendmsg(to, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == 1;
}

/* The manager's side: accepts what is pending and hands each connection to a worker. */
void shmrpc__tcp_hand_out(void *arg)
{
    tcp_listener *l = arg;
    for (int i = 0; i < 64; i++) {
        int fd = accept_one(l->fd, &l->spare);
        if (fd < 0) return;
        int to = least_loaded(l);
        if (to < 0) {
            refuse_busy(fd, l->cfg.max_conns);
            continue;
        }
        /* A full queue (a few hundred sockets) makes the manager wait for the worker
         * to take some, up to a second: connections wait in the kernel's backlog. */
        bool sent = send_fd(l->hand[to][0], fd);
        if (!sent && errno == EAGAIN) {
            struct pollfd p = {.fd = l->hand[to][0], .events = POLLOUT};
            if (poll(&p, 1, 1000) == 1) sent = send_fd(l->hand[to][0], fd);
        }
        if (sent)
            l->load->handed[to]++;
        else
            refuse_fd(fd, SHMRPC_EBUSY, "the server's workers are not taking connections");
        close(fd);
    }
}
