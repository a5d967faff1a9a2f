/* SPDX-License-Identifier: MIT */
/* A tcp:// client's blocking call: tried on its endpoints in turn, and on another only when
 * it cannot have run where it went; a call that may have run is never resent. */

#include "transport/tcp/tcp_int.h"
#include "core/proc.h"
#include "core/wait.h"
#include "transport/tcp/tcp_client_int.h"

/* One try of a call on c, which is connected. FATE_NOT_RUN when the call cannot have run
 * there (a request not written whole, a DRAIN or a closing ERROR read before its answer):
 * then a try of another endpoint may follow. Else FATE_DONE with the call's status: a
 * connection that broke after the whole request was written fails it with
 * SHMRPC_EPEERDIED, since it may have run; a deadline that passed leaves c out as stalled
 * when another endpoint takes calls. */
static int attempt(tcp_pool *p, tcp_conn *c, int64_t j, uint32_t sid, shmrpc_bytes req,
                   shmrpc_buf *resp, int64_t deadline, int *fate, shmrpc_buf *err)
{
    *fate = FATE_NOT_RUN;
    bool health = sid == SHMRPC_HEALTH_METHOD_ID;
    uint32_t esid = j >= 0 ? c->map[j] : sid;
    /* Alone on the connection (no answer owed: no asynchronous call, and none that gave up
     * on its answer, which may still come): the server may run it on the thread that reads
     * the connection, without a handoff (docs/wire.md, "Calls in flight"). Only a server of
     * revision 3 knows the flag; older ones refuse it. */
    uint16_t flags = c->proto >= 3 && c->owed == 0 ? SHMRPC__FLAG_LONE : 0;
    uint64_t id = ++c->next_id;
    int rc = shmrpc__tcp_send_request(c, esid, id, flags, p->base.meta, req, deadline, err);
    bool sent = rc == 0;
    if (sent) {
        c->cancel_of = &p->base;
        rc = shmrpc__tcp_await_answer(c, esid, id, resp, deadline, err);
        c->cancel_of = NULL;
    }
    shmrpc__tcp_consume(c);
    if (rc == 0) {
        c->fails = 0;
        *fate = FATE_DONE;
        return 0;
    }
    if (c->drained && health) {
        *fate = FATE_DONE;
        shmrpc_buf_clear(resp);
        uint8_t state = SHMRPC_HEALTH_DRAINING;
        return shmrpc_buf_append(resp, &state, 1) ? SHMRPC_ENOMEM : 0;
    }
    if (c->drained || c->left || (!sent && rc == SHMRPC_EUNAVAIL && c->fd < 0)) return rc;
    *fate = FATE_DONE;
    if (rc == SHMRPC_ECANCELLED) { /* its answer, owed still, is skipped when it comes */
        shmrpc_buf why;
        shmrpc_buf_init(&why);
        bool told = shmrpc__tcp_send_cancel(c, id, &why) == 0;
        shmrpc_buf_destroy(&why);
        shmrpc__msg_append(err, "; it may have run%s", told ? " (its server was told)" : "");
        return rc;
    }
    if (rc == SHMRPC_ETIMEDOUT) shmrpc__tcp_stalled(p, c, shmrpc__now_ns(), shmrpc__msg_get(err));
    if (sent && rc == SHMRPC_EUNAVAIL && c->fd < 0) {
        /* Not left out: the next call connects again, and only a failed connect (the
         * server is gone, not just one of its workers) leaves it out. */
        shmrpc__msg_append(err, "; the request had been sent, so the call may have run (it is "
                                "not sent again)");
        p->resolve_due = true;
        return SHMRPC_EPEERDIED;
    }
    return rc;
}

int shmrpc__tcp_call(shmrpc__conn *base, uint32_t sid, shmrpc_bytes req, shmrpc_buf *resp,
                     int64_t timeout_ms, shmrpc_buf *err)
{
    tcp_pool *p = (tcp_pool *)base;
    if (shmrpc__self_pid() != p->pid) {
        shmrpc__msg_set(err, "this connection belongs to process %d", (int)p->pid);
        return SHMRPC_EINVAL;
    }
    int64_t now = shmrpc__now_ns();
    int64_t deadline = shmrpc__deadline_at(&(shmrpc__deadline){0, timeout_ms}, now);
    bool health = sid == SHMRPC_HEALTH_METHOD_ID;
    /* The client's method id: each endpoint maps it to its own server's id. */
    int64_t j = health ? -1 : shmrpc__tcp_method_index(p, sid);
    shmrpc__tcp_maybe_resolve(p, now, err);
    shmrpc__tcp_tend(p, now, err);
    tcp_search s = {.deadline = deadline};
    int tries = 0;
    shmrpc_buf_clear(&p->why);
    while (tries < 2 * SHMRPC_TCP_MAX_ENDPOINTS) {
        if (shmrpc__conn_cancelled(base)) {
            shmrpc__msg_set(err, "the call was cancelled by its client before it was sent; it "
                                 "did not run");
            return SHMRPC_ECANCELLED;
        }
        int i = shmrpc__tcp_choose(p, s.tried, false, NULL);
        if (i < 0) break;
        tries++;
        tcp_conn *c = p->eps[i];
        shmrpc__tcp_refresh(c, now, err);
        if (c->drained && health) { /* the server this client was connected to stops */
            uint8_t state = SHMRPC_HEALTH_DRAINING;
            return shmrpc_buf_append(resp, &state, 1) ? SHMRPC_ENOMEM : 0;
        }
        if (!shmrpc__tcp_connected(c) && !(c = shmrpc__tcp_race(p, i, &s, &i, err))) break;
        int fate;
        c->outstanding++;
        int rc = attempt(p, c, j, sid, req, resp, deadline, &fate, err);
        c->outstanding--;
        if (fate == FATE_DONE) return rc;
        /* An endpoint is tried once per call: a connection found closed or drained before
         * the request was sent is made again within the try (refresh, race), as it always
         * was, but a call is never sent over a second new connection to the same endpoint. */
        shmrpc__tcp_try_failed(p, &s, i, rc, err);
        shmrpc_buf_clear(resp);
        now = shmrpc__now_ns();
        if (now >= deadline) break;
    }
    return shmrpc__tcp_none_took(p, &s, tries, "call", "was not sent", err);
}

int64_t shmrpc__tcp_method_index(const tcp_pool *p, uint32_t sid)
{
    for (uint32_t i = 0; i < p->info->n_methods; i++)
        if (p->map[i] == sid) return i;
    return -1;
}

void shmrpc__tcp_try_failed(tcp_pool *p, tcp_search *s, int i, int rc, const shmrpc_buf *err)
{
    s->tried |= (uint64_t)1 << i;
    if (s->status == 0 || s->status == SHMRPC_EUNAVAIL) s->status = rc;
    shmrpc__msg_append(&p->why, "%s%s", shmrpc__msg_get(&p->why)[0] ? "; " : "",
                       shmrpc__msg_get(err));
}

int shmrpc__tcp_none_took(tcp_pool *p, const tcp_search *s, int tries, const char *what,
                          const char *unsent, shmrpc_buf *err)
{
    int64_t now = shmrpc__now_ns();
    if (now >= s->deadline) {
        shmrpc__msg_set(
            err, "the deadline passed before an endpoint took the %s, which did not run: %s", what,
            shmrpc__msg_get(&p->why)[0] ? shmrpc__msg_get(&p->why) : "no try ended");
        return SHMRPC_ETIMEDOUT;
    }
    if (tries == 1 && p->n_eps == 1 && s->status) { /* as a single address always said it */
        shmrpc__msg_set(err, "%s", shmrpc__msg_get(&p->why));
        return s->status;
    }
    shmrpc__tcp_left_out(p, now, &p->why);
    if (tries == 0 && p->n_eps == 1) {
        shmrpc__msg_set(err, "%s: the %s %s", shmrpc__msg_get(&p->why), what, unsent);
        return SHMRPC_EUNAVAIL;
    }
    shmrpc__msg_set(err, "no endpoint of tcp://%s took the %s, which did not run: %s", p->list,
                    what, shmrpc__msg_get(&p->why));
    return s->status ? s->status : SHMRPC_EUNAVAIL;
}
