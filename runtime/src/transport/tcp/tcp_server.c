/* SPDX-License-Identifier: MIT */
/* The TCP transport's server side: the listener. It binds, then serves with a manager that
 * accepts connections and hands each to its least loaded worker (a forked crew), or in
 * place; each worker serves its connections in an epoll loop and runs their calls on a few
 * threads of its own, within the limits of docs/wire.md (connections, calls running,
 * memory, timeouts). Its parts, each calling only those after it: server_worker.c,
 * server_accept.c, server_drain.c, server_conn.c, server_handshake.c, server_call.c,
 * server_pool.c, server_stream.c, server_limits.c (tcp_server_int.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/proc.h"
#include "transport/tcp/tcp_int.h"
#include "transport/tcp/tcp_server_int.h"

/* A forked worker's SIGTERM: it drains, then stops (server_worker.c). */
static void on_stop(int sig)
{
    (void)sig;
    shmrpc__tcp_told_to_stop = 1;
}

/* A forked worker starts without its predecessor's connections (they died with it), and
 * keeps only its own end of the socket pairs. */
static int crew_run(void *arg, int index)
{
    tcp_listener *l = arg;
    struct sigaction stop = {.sa_handler = on_stop};
    sigaction(SIGTERM, &stop, NULL);
    atomic_store(&l->load->open[index], 0);
    atomic_store(&l->load->shaking[index], 0);
    atomic_store(&l->load->busy[index], 0);
    for (int i = 0; i < MAX_WORKERS; i++) {
        if (l->hand[i][0] >= 0) close(l->hand[i][0]);
        if (i != index && l->hand[i][1] >= 0) close(l->hand[i][1]);
    }
    close(l->fd);
    return shmrpc__tcp_worker_run(l, index);
}

/* A worker died or left: what it held went with it, so its row of the budget and of the
 * per-address counts is zeroed (also when no worker takes its place, as when the count
 * wanted went down and it was killed after its grace). */
static void crew_reaped(void *arg, int index)
{
    tcp_listener *l = arg;
    atomic_store(&l->load->charged[index], 0);
    for (int h = 0; h < 2; h++)
        for (int b = 0; b < ADDR_BUCKETS; b++)
            atomic_store_explicit(&l->load->by_addr[index][h][b], 0, memory_order_relaxed);
}

/* The manager, told to stop, closes its listening socket first: a client's connect is
 * refused at once (and tried elsewhere) rather than left in the backlog until the end. */
static void crew_stopping(void *arg)
{
    tcp_listener *l = arg;
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
}

/* Before worker i first starts: its socket pair, which then lives as long as the manager. */
static int crew_prepare(void *arg, int i)
{
    tcp_listener *l = arg;
    if (l->hand[i][0] >= 0) return 0;
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, l->hand[i]) == 0
               ? 0
               : SHMRPC_ESYS(errno);
}

static int manage(tcp_listener *l, int n)
{
    l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    _Atomic int *want = shmrpc__server_want(l->server);
    atomic_store(want, n);
    l->crew = (shmrpc__crew){.want = want,
                             .stop = &l->stop,
                             .stop_fd = l->stop_pipe[0],
                             .watch_fd = l->fd,
                             .watch = shmrpc__tcp_hand_out,
                             .arg = l,
                             .run = crew_run,
                             .prepare = crew_prepare,
                             .reaped = crew_reaped,
                             .stopping = crew_stopping};
    int rc = shmrpc__crew_manage(&l->crew);
    for (int i = 0; i < MAX_WORKERS; i++) {
        for (int j = 0; j < 2; j++) {
            if (l->hand[i][j] >= 0) close(l->hand[i][j]);
            l->hand[i][j] = -1;
        }
    }
    if (l->spare >= 0) close(l->spare);
    l->spare = -1;
    return rc;
}

static int tcp_serve(shmrpc__listener *base, int workers)
{
    tcp_listener *l = (tcp_listener *)base;
    if (workers < 0 || workers > MAX_WORKERS) return SHMRPC_EINVAL;
    /* Shared with the workers forked from here; the pages of rows never used are never
     * touched. */
    l->load =
        mmap(NULL, sizeof *l->load, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (l->load == MAP_FAILED) {
        l->load = NULL;
        return SHMRPC_ESYS(errno);
    }
    int rc = workers == 0 ? shmrpc__tcp_worker_run(l, -1) : manage(l, workers);
    munmap(l->load, sizeof *l->load);
    l->load = NULL;
    return rc;
}

static void tcp_poke(shmrpc__listener *base)
{
    tcp_listener *l = (tcp_listener *)base;
    if (write(l->stop_pipe[1], "", 1) < 0) {
        /* full: the manager wakes up anyway */
    }
}

static void tcp_stop(shmrpc__listener *base)
{
    tcp_listener *l = (tcp_listener *)base;
    atomic_store(&l->stop, 1);
    if (write(l->stop_pipe[1], "", 1) < 0) {
        /* full: the reader wakes up anyway */
    }
}

static void tcp_listener_close(shmrpc__listener *base)
{
    tcp_listener *l = (tcp_listener *)base;
    shmrpc__stats_destroy(&l->stats);
    if (l->fd >= 0) close(l->fd);
    if (l->stop_pipe[0] >= 0) close(l->stop_pipe[0]);
    if (l->stop_pipe[1] >= 0) close(l->stop_pipe[1]);
    shmrpc__auth_wipe(&l->cfg, sizeof l->cfg);
    shmrpc__tls_free(l->tls);
    free(l);
}

static const shmrpc__listener_ops tcp_listener_ops = {
    .close = tcp_listener_close,
    .serve = tcp_serve,
    .stop = tcp_stop,
    .poke = tcp_poke,
};

static int bind_socket(tcp_listener *l, const struct sockaddr_storage *ss, socklen_t len,
                       shmrpc_buf *err)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return shmrpc__tcp_sys_error(err, errno, "cannot open a socket for", l->where);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, len) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE) {
            /* One server per port is the kernel's rule (no SO_REUSEPORT here): a second lock
             * of our own would be one more name that another user could take first. */
            unsigned port = ntohs(ss->ss_family == AF_INET
                                      ? ((const struct sockaddr_in *)ss)->sin_port
                                      : ((const struct sockaddr_in6 *)ss)->sin6_port);
            int32_t pid;
            uid_t uid;
            shmrpc__msg_set(err, "tcp://%s is already in use (another process listens there",
                            l->where);
            if (shmrpc__proc_tcp_listener(port, &pid, &uid)) {
                shmrpc__msg_append(err, ": ");
                if (pid > 0) shmrpc__msg_append(err, "pid %d, ", (int)pid);
                shmrpc__msg_append(err, "uid %u", (unsigned)uid);
            }
            shmrpc__msg_append(err, ")");
            return SHMRPC_EBUSY;
        }
        return shmrpc__tcp_sys_error(err, e, "cannot bind", l->where);
    }
    if (listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        return shmrpc__tcp_sys_error(err, e, "cannot listen on", l->where);
    }
    l->fd = fd;
    return 0;
}

int shmrpc__tcp_listen(shmrpc_server *s, const char *where, shmrpc__listener **out, shmrpc_buf *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = shmrpc__tcp_parse_addr(where, &ss, &len, err);
    if (rc) return rc;
    tcp_listener *l = calloc(1, sizeof *l);
    if (!l) return SHMRPC_ENOMEM;
    l->base.ops = &tcp_listener_ops;
    l->server = s;
    l->fd = l->spare = l->stop_pipe[0] = l->stop_pipe[1] = -1;
    memset(l->hand, -1, sizeof l->hand);
    snprintf(l->where, sizeof l->where, "%s", where);
    l->max_msg = shmrpc__tcp_cap32(shmrpc__server_max_msg(s));
    l->addr_seed = shmrpc__tcp_addr_seed();
    /* The server's opts passed this at shmrpc_server_new (shmrpc__tcp_transport.check_opts). */
    rc = shmrpc__tcp_cfg_init(&l->cfg, &shmrpc__server_opts(s)->tcp);
    /* Clients are authenticated by the shared secret, or by their certificates (mutual
     * TLS). */
    bool mutual = l->cfg.tls_cert[0] && l->cfg.tls_ca[0];
    if (rc == 0 && !shmrpc__tcp_is_loopback(&ss) && !l->cfg.secret_len && !mutual) {
        shmrpc__msg_set(err,
                        "binding tcp://%s, which is not a loopback address, needs a shared "
                        "secret (shmrpc_tcp_opts.secret) or mutual TLS (tls_cert and tls_ca)",
                        where);
        rc = SHMRPC_EPERM;
    }
    if (rc == 0 && l->cfg.tls_cert[0]) rc = shmrpc__tls_server_new(&l->cfg, &l->tls, err);
    if (rc == 0) rc = bind_socket(l, &ss, len, err);
    if (rc == 0 && pipe2(l->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        rc = shmrpc__tcp_sys_error(err, errno, "cannot make a pipe for", where);
    if (rc == 0) { /* a server without statistics still serves */
        shmrpc_buf ignored;
        shmrpc_buf_init(&ignored);
        shmrpc__stats_create(&l->stats, "tcp", where, shmrpc__server_info(s), &ignored);
        shmrpc_buf_destroy(&ignored);
    }
    if (rc) {
        tcp_listener_close(&l->base);
        return rc;
    }
    *out = &l->base;
    return 0;
}
