/* SPDX-License-Identifier: MIT */
/* A tcp:// worker told to stop (docs/wire.md, "Drain"): each client told, connections closed
 * as they quiet, and the answers of calls that ran sent before the end. */
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/tcp/tcp_int.h"
#include "core/wait.h"
#include "transport/tcp/tcp_server_int.h"

/* Told to stop (docs/wire.md, "Drain"): the worker takes no new connection, and tells
 * each client of revision 2, after the answers of its connection's calls still running or
 * unsent, that it takes no new call; a request that crossed the DRAIN is answered "not
 * run". A connection still in its handshake is refused, and one of revision 1 closes once
 * its answer is sent, as before. drain_step then closes each connection as it quiets. */
void shmrpc__tcp_drain_begin(worker *w)
{
    int64_t now = shmrpc__now_ns();
    w->draining = true;
    w->drain_end = now + DRAIN_MAX_MS * NS_PER_MS;
    epoll_ctl(w->ep, EPOLL_CTL_DEL, w->source, NULL);
    if (w->index < 0 && w->l->fd >= 0) { /* serving in place: a connect is refused from now */
        close(w->l->fd);
        w->l->fd = -1;
    }
    for (int i = w->n_peers; i-- > 0;) {
        peer *p = w->peers[i];
        /* A stream ends with the items it sent and SHMRPC_ECANCELLED (docs/streams.md): it
         * would not end of itself. */
        shmrpc__tcp_stream_stop(w, p, SHMRPC_ECANCELLED);
        if (p->closing) continue;
        if (p->state == P_READY && p->proto >= 2 && p->running) {
            p->drain_due = true; /* after the answers of the calls that run (finish_job) */
            p->drain_ns = now;
        } else if (p->state == P_READY && p->proto >= 2) {
            size_t at = shmrpc__frame_begin(&p->out, SHMRPC__KIND_DRAIN, 0, 0, 0);
            shmrpc__frame_end(&p->out, at);
            p->drain_ns = now;
        } else if (p->state != P_READY) {
            shmrpc__tcp_peer_refuse(p, SHMRPC_EUNAVAIL, "the server is stopping");
        } else {
            p->closing = true;
        }
        shmrpc__tcp_peer_settle(w, p);
    }
}

/* Closes the draining connections that have quieted: their client closed them (the read
 * saw it), or sent nothing for DRAIN_QUIET_MS since the DRAIN. One in the middle of a
 * frame is left to its progress deadline (sweep). */
void shmrpc__tcp_drain_step(worker *w, int64_t now)
{
    for (int i = w->n_peers; i-- > 0;) {
        peer *p = w->peers[i];
        if (shmrpc__tcp_out_left(p) || p->in.len || p->have_hdr || p->refused || p->running ||
            p->drain_due)
            continue;
        if (now - p->drain_ns < DRAIN_QUIET_MS * NS_PER_MS) continue;
        shutdown(p->fd, SHUT_WR);
        shmrpc__tcp_peer_free(w, p);
    }
}

/* Stopping: the answers of calls that ran but did not fit the socket yet are sent before
 * their connections close (a client that lost one would read "unavailable", the status
 * of a call that never ran), each within its connection's progress deadline; nothing
 * more is read. Connections with nothing to send close at once. */
void shmrpc__tcp_send_what_ran(worker *w)
{
    for (int i = w->n_peers; i-- > 0;)
        if (shmrpc__tcp_out_left(w->peers[i]) == 0) shmrpc__tcp_peer_free(w, w->peers[i]);
    struct pollfd *fds = w->n_peers ? calloc((size_t)w->n_peers, sizeof *fds) : NULL;
    while (w->n_peers && fds) {
        int64_t now = shmrpc__now_ns(), first = INT64_MAX;
        for (int i = w->n_peers; i-- > 0;) {
            peer *p = w->peers[i];
            int64_t due = shmrpc__tcp_peer_deadline(w, p);
            if (!shmrpc__tcp_peer_flush(w, p) || shmrpc__tcp_out_left(p) == 0 || now >= due) {
                shmrpc__tcp_peer_free(w, p);
                continue;
            }
            if (due < first) first = due;
        }
        for (int i = 0; i < w->n_peers; i++)
            fds[i] = (struct pollfd){.fd = w->peers[i]->fd, .events = POLLOUT};
        if (w->n_peers) {
            int64_t ms = (first - now) / NS_PER_MS + 1;
            poll(fds, (nfds_t)w->n_peers, ms > SWEEP_MS ? SWEEP_MS : (int)ms);
        }
    }
    free(fds); /* without it (no memory), what is left is dropped as before */
}
