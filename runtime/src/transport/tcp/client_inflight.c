/* SPDX-License-Identifier: MIT */
/* A tcp:// client's asynchronous calls (docs/wire.md, "Calls in flight"): many in flight on
 * one connection, placed on an endpoint with room, matched to their answers by request id,
 * moved elsewhere when their server drains, and ended at their deadlines. */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>

#include "transport/tcp/tcp_int.h"
#include "core/proc.h"
#include "core/wait.h"
#include "transport/tcp/tcp_client_int.h"

/* --- many calls in flight (docs/wire.md, "Calls in flight") ------------------------------ */

/* Sends k's request on c, which is connected: FATE_DONE once it went out whole (k waits on
 * c) or failed in a way that ends it (k->done); FATE_NOT_RUN when it cannot have run there. */
static int send_async(tcp_conn *c, shmrpc__pending *k, int *fate, shmrpc_buf *err)
{
    *fate = FATE_NOT_RUN;
    uint32_t esid = k->j >= 0 ? c->map[k->j] : k->sid;
    uint64_t id = ++c->next_id;
    int rc = shmrpc__tcp_send_request(c, esid, id, 0, shmrpc_bytes_of(k->meta.data, k->meta.len),
                                      shmrpc_bytes_of(k->req.data, k->req.len), k->deadline, err);
    if (c->fd < 0 && c->inflight) shmrpc__tcp_fail_sending(c, rc, err);
    /* Not written whole (it broke, or the server broke the protocol meanwhile): it did not
     * run there. */
    if ((rc == SHMRPC_EUNAVAIL || rc == SHMRPC_EPROTO) && c->fd < 0) return rc;
    *fate = FATE_DONE;
    if (rc) {
        shmrpc__msg_set(&k->msg, "%s", shmrpc__msg_get(err));
        shmrpc__tcp_pend_done(k, rc);
        return rc;
    }
    k->rid = id;
    k->sid = esid;
    k->where = c;
    k->prev = NULL;
    k->next = c->inflight;
    if (c->inflight) c->inflight->prev = k;
    c->inflight = k;
    c->n_inflight++;
    c->outstanding++;
    return 0;
}

/* Sends k to an endpoint it has not been tried on (k->tried), waiting for room (answers)
 * while every endpoint that could take it is full. Ends with k in flight or done. */
static void place(tcp_pool *p, shmrpc__pending *k, shmrpc_buf *err)
{
    tcp_search s = {.deadline = k->deadline, .room = true};
    shmrpc_buf_clear(&p->why);
    for (int tries = 0; tries < 2 * SHMRPC_TCP_MAX_ENDPOINTS;) {
        int64_t now = shmrpc__now_ns();
        if (now >= k->deadline) {
            shmrpc__msg_set(&k->msg, "the deadline passed before an endpoint took the call, "
                                     "which did not run");
            if (shmrpc__msg_get(&p->why)[0])
                shmrpc__msg_append(&k->msg, ": %s", shmrpc__msg_get(&p->why));
            shmrpc__tcp_pend_done(k, SHMRPC_ETIMEDOUT);
            return;
        }
        if (shmrpc__conn_cancelled(&p->base)) {
            shmrpc__msg_set(&k->msg, "the call was cancelled by its client before it was sent; "
                                     "it did not run");
            shmrpc__tcp_pend_done(k, SHMRPC_ECANCELLED);
            return;
        }
        bool full;
        s.tried = k->tried;
        int i = shmrpc__tcp_choose(p, s.tried, true, &full);
        if (i < 0 && full) { /* room comes with answers; a cancel is looked for meanwhile */
            shmrpc__tcp_progress(&p->base, k->deadline - now > SHMRPC__CHECK_NS
                                               ? now + SHMRPC__CHECK_NS
                                               : k->deadline);
            continue;
        }
        if (i < 0) break;
        tries++;
        tcp_conn *c = p->eps[i];
        shmrpc__tcp_refresh(c, now, err);
        if (!shmrpc__tcp_connected(c)) {
            c = shmrpc__tcp_race(p, i, &s, &i, err);
            k->tried = s.tried;
            if (!c) continue; /* the deadline passed, or no endpoint is left */
        }
        int fate;
        int rc = send_async(c, k, &fate, err);
        if (fate == FATE_DONE) return;
        k->tried |= (uint64_t)1 << i;
        if (s.status == 0 || s.status == SHMRPC_EUNAVAIL) s.status = rc;
        shmrpc__msg_append(&p->why, "%s%s", shmrpc__msg_get(&p->why)[0] ? "; " : "",
                           shmrpc__msg_get(err));
    }
    shmrpc__tcp_left_out(p, shmrpc__now_ns(), &p->why);
    shmrpc__msg_set(&k->msg, "no endpoint of tcp://%s took the call, which did not run: %s",
                    p->list, shmrpc__msg_get(&p->why));
    shmrpc__tcp_pend_done(k, s.status ? s.status : SHMRPC_EUNAVAIL);
}

int shmrpc__tcp_start(shmrpc__conn *base, shmrpc__pending *k, shmrpc_buf *err)
{
    tcp_pool *p = (tcp_pool *)base;
    if (shmrpc__self_pid() != p->pid) {
        shmrpc__msg_set(&k->msg, "this connection belongs to process %d", (int)p->pid);
        shmrpc__tcp_pend_done(k, SHMRPC_EINVAL);
        return 0;
    }
    int64_t now = shmrpc__now_ns();
    shmrpc__tcp_maybe_resolve(p, now, err);
    shmrpc__tcp_tend(p, now, err);
    place(p, k, err);
    return 0;
}

/* The server of c takes no more calls (a DRAIN, or an ERROR that closes): it answered
 * every call it ran before saying so, so those still in flight did not run there and go
 * elsewhere within their deadlines. */
static void move_inflight(tcp_pool *p, tcp_conn *c, int index, shmrpc_buf *err)
{
    shmrpc__pending *moving = NULL;
    while (c->inflight) {
        shmrpc__pending *k = c->inflight;
        shmrpc__tcp_pend_unlink(c, k);
        k->tried |= (uint64_t)1 << index;
        k->next = moving;
        moving = k;
    }
    while (moving) {
        shmrpc__pending *k = moving;
        moving = k->next;
        k->next = NULL;
        place(p, k, err);
    }
}

/* One frame read from c, where calls or a stream are in flight. */
void shmrpc__tcp_on_frame(tcp_pool *p, tcp_conn *c, int index, const shmrpc__frame_hdr *h,
                          shmrpc_buf *err)
{
    int routed = shmrpc__tcp_stream_route(c, h, err);
    if (routed < 0) { /* ITEMS no correct server sends: the stream ended with them */
        char why[400];
        snprintf(why, sizeof why, "%s; the calls in flight may have run", shmrpc__msg_get(err));
        shmrpc__tcp_conn_break(c);
        shmrpc__tcp_fail_inflight(c, SHMRPC_EPROTO, why);
        return;
    }
    if (routed) return;
    if (h->kind == SHMRPC__KIND_PING) {
        uint8_t pong[SHMRPC__FRAME_HDR_SIZE];
        shmrpc__frame_hdr q = {.kind = SHMRPC__KIND_PONG, .request_id = h->request_id};
        shmrpc__frame_hdr_encode(&q, pong);
        int rc = shmrpc__tcp_send_all(c, pong, sizeof pong,
                                      shmrpc__now_ns() + c->cfg->tcp.connect_ns, err);
        if (rc) shmrpc__tcp_fail_sending(c, rc, err);
        return;
    }
    if (h->kind == SHMRPC__KIND_PONG) return;
    if (h->kind == SHMRPC__KIND_DRAIN || (h->kind == SHMRPC__KIND_ERROR && h->request_id == 0)) {
        if (h->kind == SHMRPC__KIND_DRAIN) {
            c->drained = true;
            shmrpc__msg_set(err, "tcp://%s is draining (its server stops): the call did not run",
                            c->where);
        } else {
            c->left = true;
            shmrpc__tcp_error_frame(c, err);
        }
        shmrpc__tcp_stream_left(c, h, err);
        shmrpc__tcp_conn_break(c);
        move_inflight(p, c, index, err);
        return;
    }
    shmrpc__pending *k = NULL;
    bool answer = h->kind == SHMRPC__KIND_RESPONSE || h->kind == SHMRPC__KIND_ERROR;
    for (shmrpc__pending *q = c->inflight; answer && q && !k; q = q->next)
        if (q->rid == h->request_id) k = q;
    if (answer && !k && h->request_id != 0 && h->request_id <= c->next_id) {
        /* a call that timed out or was abandoned, or an answer given twice */
        shmrpc__tcp_answer_read(c);
        return;
    }
    if (!k || h->method != k->sid) {
        char why[ADDR_MAX + 200];
        snprintf(why, sizeof why,
                 "tcp://%s sent a %s frame for request %" PRIu64 " of method %" PRIu32
                 ", which no call in flight waits for; the calls in flight may have run",
                 c->where, shmrpc__frame_kind_name(h->kind), h->request_id, h->method);
        shmrpc__tcp_conn_break(c);
        shmrpc__tcp_fail_inflight(c, SHMRPC_EPROTO, why);
        return;
    }
    shmrpc__tcp_pend_unlink(c, k);
    shmrpc__tcp_answer_read(c);
    if (h->kind == SHMRPC__KIND_ERROR) {
        int rc = shmrpc__tcp_error_frame(c, &k->msg);
        shmrpc__tcp_pend_done(k, rc ? rc : SHMRPC_EPROTO);
        return;
    }
    uint16_t comp = h->flags & SHMRPC__FLAG_COMPRESSION;
    int rc;
    if (comp) {
        uint32_t max = shmrpc__tcp_cap32(k->resp.max ? k->resp.max : SHMRPC_DEFAULT_MAX_MSG);
        rc = shmrpc__body_decompress(comp, shmrpc__tcp_frame_body(c), max, &k->resp, &k->msg);
    } else {
        shmrpc_bytes body = shmrpc__tcp_frame_body(c);
        rc = shmrpc_buf_append(&k->resp, body.ptr, body.len);
    }
    c->fails = 0;
    if (c->suspect) { /* it stalled a call, and answers: taken back */
        c->suspect = false;
        c->eject_until = 0;
    }
    shmrpc__tcp_pend_done(k, rc);
}

/* Whether c->in holds, past the frame in hand, a whole frame or a header that fails to
 * decode: read_one acts on either at once (a bad header that came with the frame before it
 * would otherwise wait for bytes that may never come). */
static bool frame_buffered(const tcp_conn *c, shmrpc_buf *scratch)
{
    size_t left = c->in.len - c->used;
    if (left < SHMRPC__FRAME_HDR_SIZE) return false;
    shmrpc__frame_hdr h;
    if (shmrpc__frame_hdr_decode(c->in.data + c->used, SHMRPC__FRAME_HDR_SIZE,
                                 shmrpc__tcp_max_body(c), c->agreed, &h, scratch))
        return true;
    return left - SHMRPC__FRAME_HDR_SIZE >= h.body_len;
}

/* Reads one frame from c and acts on it; a connection that breaks fails what is in flight
 * on it with SHMRPC_EPEERDIED (a frame it should not have sent: SHMRPC_EPROTO). */
static void read_one(tcp_pool *p, tcp_conn *c, int index, shmrpc_buf *err)
{
    int64_t until = INT64_MIN; /* the rest of a begun frame: until the last call's deadline */
    for (shmrpc__pending *k = c->inflight; k; k = k->next)
        if (k->deadline > until) until = k->deadline;
    if (c->stream && c->stream->deadline > until) until = c->stream->deadline;
    if (until == INT64_MIN) until = INT64_MAX;
    shmrpc__frame_hdr h;
    int rc = shmrpc__tcp_read_frame(c, shmrpc__tcp_max_body(c), &h, until, err);
    if (rc) {
        char why[400];
        shmrpc__tcp_read_broke(p, c, rc, err, why, sizeof why);
        return;
    }
    shmrpc__tcp_on_frame(p, c, index, &h, err);
}

/* Finishes the calls whose deadlines passed (their endpoints stalled them); true when any
 * did. */
static bool expire(tcp_pool *p, int64_t now)
{
    bool any = false;
    for (int i = 0; i < p->n_eps; i++) {
        tcp_conn *c = p->eps[i];
        bool late = false;
        for (shmrpc__pending *k = c->inflight, *next; k; k = next) {
            next = k->next;
            if (now < k->deadline) continue;
            shmrpc__tcp_pend_unlink(c, k);
            shmrpc__msg_set(&k->msg,
                            "the deadline passed waiting for tcp://%s (the call may have run; "
                            "its answer will be dropped)",
                            c->where);
            shmrpc__tcp_pend_done(k, SHMRPC_ETIMEDOUT);
            any = late = true;
        }
        if (late) {
            char why[ADDR_MAX + 64];
            snprintf(why, sizeof why, "the deadline passed waiting for tcp://%s", c->where);
            shmrpc__tcp_stalled(p, c, now, why);
        }
    }
    return any;
}

/* One round: frames already read are acted on; else poll waits for the connections with
 * calls in flight until one is readable, a call's deadline, or deadline. */
void shmrpc__tcp_progress(shmrpc__conn *base, int64_t deadline)
{
    tcp_pool *p = (tcp_pool *)base;
    shmrpc_buf *err = &p->why;
    int64_t now = shmrpc__now_ns();
    if (expire(p, now)) return;
    shmrpc__tcp_tend(p, now, &p->scratch);
    bool acted = false;
    for (int i = 0; i < p->n_eps; i++) {
        tcp_conn *c = p->eps[i];
        while (c->inflight && c->fd >= 0 &&
               (frame_buffered(c, err) || shmrpc__io_pending(&c->io))) {
            read_one(p, c, i, err);
            acted = true;
        }
    }
    if (acted) return;
    struct pollfd fds[SHMRPC_TCP_MAX_ENDPOINTS];
    int at[SHMRPC_TCP_MAX_ENDPOINTS], n = 0;
    int64_t wake = deadline;
    for (int i = 0; i < p->n_eps; i++) {
        tcp_conn *c = p->eps[i];
        if (!c->inflight || c->fd < 0) continue;
        for (shmrpc__pending *k = c->inflight; k; k = k->next)
            if (k->deadline < wake) wake = k->deadline;
        fds[n] = (struct pollfd){.fd = c->fd, .events = POLLIN};
        at[n++] = i;
    }
    if (n == 0) return;
    int ms = -1;
    if (wake != INT64_MAX) {
        int64_t left = wake - now;
        ms = left <= 0 ? 0 : (int)((left + NS_PER_MS - 1) / NS_PER_MS);
        if (left > (int64_t)INT32_MAX * NS_PER_MS) ms = INT32_MAX;
    }
    int r = poll(fds, (nfds_t)n, ms);
    if (r <= 0) {
        expire(p, shmrpc__now_ns());
        return;
    }
    for (int k = 0; k < n; k++) {
        tcp_conn *c = p->eps[at[k]];
        if (fds[k].revents && c->inflight && c->fd == fds[k].fd) read_one(p, c, at[k], err);
    }
}

void shmrpc__tcp_abandon(shmrpc__conn *base, shmrpc__pending *k)
{
    (void)base;
    if (k->where) shmrpc__tcp_pend_unlink(k->where, k);
}

void shmrpc__tcp_cancel(shmrpc__conn *base, shmrpc__pending *k)
{
    tcp_pool *p = (tcp_pool *)base;
    tcp_conn *c = k->where;
    if (!c) return;
    shmrpc__tcp_pend_unlink(c, k);
    /* Its server is told, so that the handler learns its client gave up; the answer, owed
     * still, is dropped when it comes. Not from a child that only inherited the connection:
     * its bytes would land amid the owner's. */
    if (shmrpc__self_pid() != p->pid) return;
    int rc = shmrpc__tcp_send_cancel(c, k->rid, &p->scratch);
    if (rc < 0 && c->fd < 0 && c->inflight) shmrpc__tcp_fail_sending(c, rc, &p->scratch);
}
