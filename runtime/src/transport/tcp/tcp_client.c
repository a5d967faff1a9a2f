/* SPDX-License-Identifier: MIT */
/* The TCP transport's client side: connect (the address's list parsed and resolved, and a
 * first endpoint connected), its table of calls, and its close. An address may list
 * endpoints (and DNS names with several addresses): a call goes to the least loaded one that
 * is not left out, and to another only when it never started where it went; a call that may
 * have run is never resent. Its parts, each calling only those after it: client_stream.c,
 * client_call.c, client_inflight.c, client_choose.c, client_endpoints.c, client_dial.c,
 * client_conn.c, client_route.c (tcp_client_int.h). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transport/tcp/tcp_int.h"
#include "core/wait.h"
#include "transport/tcp/tcp_client_int.h"

static void tcp_conn_close(shmrpc__conn *base)
{
    tcp_pool *p = (tcp_pool *)base;
    shmrpc__tcp_stream_end(base); /* client.c has ended it: this is only in case */
    for (int i = 0; i < p->n_eps; i++)
        shmrpc__tcp_ep_free(p->eps[i]);
    if (p->lookup) shmrpc__tcp_lookup_free(p->lookup);
    shmrpc_buf_destroy(&p->why);
    shmrpc_buf_destroy(&p->scratch);
    shmrpc_buf_destroy(&p->tls_why);
    free(p->list);
    free(p);
}

/* Streams are offered once this side speaks revision 8 (frame.h): until its server side
 * lands with it, client.c refuses them as a transport that does not carry them. */
static const shmrpc__conn_ops tcp_conn_ops = {.call = shmrpc__tcp_call,
                                              .close = tcp_conn_close,
                                              .start = shmrpc__tcp_start,
                                              .progress = shmrpc__tcp_progress,
                                              .abandon = shmrpc__tcp_abandon,
                                              .cancel = shmrpc__tcp_cancel,
#if SHMRPC__WIRE_PROTO >= 8
                                              .stream_open = shmrpc__tcp_stream_open,
                                              .stream_recv = shmrpc__tcp_stream_recv,
                                              .stream_view = shmrpc__tcp_stream_view,
                                              .stream_end = shmrpc__tcp_stream_end,
                                              .stream_send = shmrpc__tcp_stream_send,
                                              .stream_done = shmrpc__tcp_stream_done,
                                              .stream_cork = shmrpc__tcp_stream_cork
#endif
};

/* Parses and resolves the list, then connects to its endpoints in the order calls would
 * choose them (the list's), Happy Eyeballs style (race), within connect_timeout_ms and the
 * client's call timeout: the first to end its handshake takes the connection, and its table
 * is the client's. The others connect when a call first goes to them. */
int shmrpc__tcp_connect(const char *where, const shmrpc_service_info *info,
                        const shmrpc__client_cfg *cfg, uint32_t *map, shmrpc__table *table,
                        shmrpc__conn **out, shmrpc_buf *err)
{
    tcp_pool *p = calloc(1, sizeof *p);
    if (!p) return SHMRPC_ENOMEM;
    p->base.ops = &tcp_conn_ops;
    p->pid = getpid();
    p->info = info;
    p->cfg = cfg;
    p->map = map;
    p->table = table;
    shmrpc_buf_init(&p->why);
    shmrpc_buf_init(&p->tls_why);
    shmrpc_buf_init(&p->scratch);
    p->list = strdup(where);
    int rc = p->list ? shmrpc__tcp_parse_list(p, where, err) : SHMRPC_ENOMEM;
    if (rc == 0) rc = shmrpc__tcp_resolve(p, err);
    if (p->tls_rc != 0) {
        rc = p->tls_rc;
        shmrpc__msg_set(err, "%s", shmrpc__msg_get(&p->tls_why));
    }
    if (rc == 0) {
        int64_t now = shmrpc__now_ns();
        tcp_search s = {.deadline = now + cfg->tcp.connect_ns};
        if (cfg->connect_call_ms >= 0) {
            int64_t at = shmrpc__deadline_at(&(shmrpc__deadline){0, cfg->connect_call_ms}, now);
            if (at < s.deadline) s.deadline = at;
        }
        int i = shmrpc__tcp_choose(p, 0, false, NULL);
        if (i >= 0 && shmrpc__tcp_race(p, i, &s, &i, err)) {
            p->cursor = (unsigned)i; /* the first call goes where the table came from */
        } else {
            rc = s.status ? s.status : SHMRPC_ETIMEDOUT;
            if (s.attempts > 1)
                shmrpc__msg_set(err, "no endpoint of tcp://%s could be connected: %s", p->list,
                                shmrpc__msg_get(&p->why));
            else
                shmrpc__msg_set(err, "%s", shmrpc__msg_get(&p->why));
        }
    }
    if (rc) {
        tcp_conn_close(&p->base);
        return rc;
    }
    *out = &p->base;
    return 0;
}
