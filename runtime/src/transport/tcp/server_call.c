/* SPDX-License-Identifier: MIT */
/* A tcp:// worker's REQUEST: run in place or handed to its threads, within the memory
 * budget, and its answer queued on its connection once it ran. */
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "transport/tcp/tcp_int.h"
#include "core/wait.h"
#include "transport/tcp/tcp_server_int.h"
#include "rpc/meta.h"

/* Fails one call with SHMRPC_EBUSY, before it runs, because the budget is spent: the
 * connection goes on, and the client may try again once others have read their answers. */
static void refuse_call(worker *w, peer *p, const shmrpc__frame_hdr *h, size_t bytes)
{
    uint64_t used = shmrpc__tcp_budget_used(w->l);
    char msg[200];
    snprintf(msg, sizeof msg,
             "the server's memory for buffered calls is spent (%" PRIu64 " of %zu bytes in "
             "use): a call of %zu bytes was not run; try again later",
             used, w->l->cfg.budget, bytes);
    shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_EBUSY, msg);
    shmrpc__tcp_log_limit(w, "refused a call from %s: %s", p->from, msg);
}

/* Queues the answer of a call that ran (status rc, its result in resp, or msg) on p. */
static void put_answer(peer *p, uint32_t method, uint64_t rid, int rc, const shmrpc_buf *resp,
                       const char *msg)
{
    if (rc == 0 && resp->len > p->peer_max) {
        char big[128];
        snprintf(big, sizeof big, "a result of %zu bytes is above the client's maximum of %u",
                 resp->len, p->peer_max);
        shmrpc__tcp_put_error_frame(&p->out, method, rid, SHMRPC_ETOOBIG, big);
    } else if (rc == 0) {
        /* The answer of a call that ran is kept whatever the budget says (the next call
         * waits instead); sized exactly, with room for a compressor's worst case, so a
         * 64 MiB answer does not cost 128. */
        size_t n = resp->len, want = p->out.len + SHMRPC__FRAME_HDR_SIZE + n + n / 6 + 64;
        if (want > KEEP_BYTES && shmrpc__tcp_buf_resize(&p->out, want)) {
            /* out of memory: the append below fails and says so */
        }
        rc = shmrpc__tcp_put_msg_frame(
            &p->out, SHMRPC__KIND_RESPONSE, 0, method, rid, -1, shmrpc_bytes_of(NULL, 0),
            shmrpc_bytes_of(resp->data, resp->len), p->comp, p->threshold);
        if (rc) shmrpc__tcp_put_error_frame(&p->out, method, rid, rc, shmrpc_strerror(rc));
    } else {
        shmrpc__tcp_put_error_frame(&p->out, method, rid, rc, msg);
    }
}

/* Copies (or decompresses) the request into a job and hands it to the pool. */
/* The request in a REQUEST's body, after its deadline when it has one (revision 4; the
 * decoder checked the body holds it) and its metadata (revision 7), that deadline's budget in
 * *budget_ns (-1: none) and the metadata's bytes in *meta (len 0: none). SHMRPC_EPROTO, with
 * why, for a metadata length of 0, above SHMRPC_METADATA_MAX_BYTES or past the body: the peer
 * lies, and the call is refused. */
static int request_of(const shmrpc__frame_hdr *h, shmrpc_bytes body, int64_t *budget_ns,
                      shmrpc_bytes *meta, shmrpc_bytes *req, const char **why)
{
    *budget_ns = -1;
    *meta = shmrpc_bytes_of(NULL, 0);
    if (h->flags & SHMRPC__FLAG_DEADLINE) {
        *budget_ns = shmrpc__deadline_decode(body.ptr);
        body = shmrpc_bytes_of(body.ptr + SHMRPC__DEADLINE_LEN, body.len - SHMRPC__DEADLINE_LEN);
    }
    if (h->flags & SHMRPC__FLAG_META) { /* the decoder checked the body holds its length */
        size_t n = (size_t)body.ptr[0] << 8 | body.ptr[1];
        size_t left = body.len - SHMRPC__META_LEN_SIZE;
        if (n == 0 || n > SHMRPC_METADATA_MAX_BYTES || n > left) {
            *why = n == 0 ? "the call's metadata has a length of 0"
                   : n > SHMRPC_METADATA_MAX_BYTES
                       ? "the call's metadata is longer than 4096 bytes"
                       : "the call's metadata is longer than its frame's body";
            return SHMRPC_EPROTO;
        }
        *meta = shmrpc_bytes_of(body.ptr + SHMRPC__META_LEN_SIZE, n);
        body = shmrpc_bytes_of(body.ptr + SHMRPC__META_LEN_SIZE + n, left - n);
    }
    *req = body;
    return 0;
}

static void submit(worker *w, peer *p, const shmrpc__frame_hdr *h, shmrpc_bytes frame_body)
{
    const tcp_listener *l = w->l;
    int64_t budget;
    shmrpc_bytes body, meta;
    const char *why;
    if (request_of(h, frame_body, &budget, &meta, &body, &why) != 0) {
        shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_EPROTO, why);
        return;
    }
    job *j = shmrpc__tcp_job_get(w);
    if (!j) {
        shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_ENOMEM,
                                    "out of memory: the call was not run");
        return;
    }
    uint16_t comp = h->flags & SHMRPC__FLAG_COMPRESSION;
    uint64_t need = body.len;
    if (comp && shmrpc__body_declared(comp, body, &need) != 0) need = 0;
    j->off = 0;
    if (!comp && need > KEEP_BYTES) {
        /* A large frame is not copied: the job takes the connection's buffer, whose charge
         * goes with it, and the connection keeps what was read past the frame. */
        size_t used = SHMRPC__FRAME_HDR_SIZE + frame_body.len, left = p->in.len - used;
        shmrpc_buf_clear(&j->req);
        if (shmrpc__buf_grow(&j->req, left + READ_AHEAD)) {
            shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_ENOMEM,
                                        "out of memory: the call was not run");
            shmrpc__tcp_job_put(w, j);
            return;
        }
        if (left) memcpy(j->req.data, p->in.data + used, left);
        j->req.len = left;
        shmrpc_buf frame = p->in;
        p->in = j->req;
        j->req = frame;
        j->req.len = used;
        j->off = used - body.len;
        p->taken = true;
        j->charged = shmrpc__tcp_buf_cost(&j->req);
        shmrpc__tcp_budget_charge(w, 0, j->charged);
        shmrpc__tcp_peer_recharge(w, p);
    } else if (need > KEEP_BYTES && need <= l->max_msg) {
        if (!shmrpc__tcp_budget_take(w, (size_t)need)) {
            refuse_call(w, p, h, (size_t)need);
            shmrpc__tcp_job_put(w, j);
            return;
        }
        j->charged = (size_t)need;
    }
    int rc;
    if (comp) {
        shmrpc__msg_clear(&w->err);
        rc = shmrpc__body_decompress(comp, body, l->max_msg, &j->req, &w->err);
        if (rc) {
            shmrpc__tcp_peer_refuse(p, rc, shmrpc__msg_get(&w->err));
            shmrpc__tcp_job_put(w, j);
            return;
        }
    } else if (!j->off) {
        shmrpc_buf_clear(&j->req);
        rc = shmrpc_buf_append(&j->req, body.ptr, body.len);
        if (rc) {
            shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, rc,
                                        "out of memory: the call was not run");
            shmrpc__tcp_job_put(w, j);
            return;
        }
    }
    /* What a stream streams; for a method that answers once, what the flag asks for, which
     * dispatch refuses. */
    j->stream = h->flags & SHMRPC__FLAG_STREAM;
    j->ways = j->stream ? shmrpc__server_streams(w->l->server, h->method) : 0;
    if (j->stream && !j->ways) j->ways = SHMRPC__STREAM_OUT;
    if ((j->ways & SHMRPC__STREAM_OUT) && shmrpc__tcp_results_open(w, j) != 0) {
        shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_ENOMEM,
                                    "out of memory for the stream's items: it was not run");
        shmrpc__tcp_job_put(w, j);
        return;
    }
    j->p = p;
    j->peer_prev = NULL;
    j->peer_next = p->jobs;
    if (p->jobs) p->jobs->peer_prev = j;
    p->jobs = j;
    atomic_store_explicit(&j->cancelled, false, memory_order_relaxed);
    j->method = h->method;
    j->rid = h->request_id;
    j->budget_ns = budget;
    shmrpc_buf_clear(&j->meta); /* room of at most SHMRPC_METADATA_MAX_BYTES, kept */
    if (meta.len) shmrpc_buf_append(&j->meta, meta.ptr, meta.len);
    j->draining =
        shmrpc__tcp_stopping(w); /* a forked worker's SIGTERM is its own, not the server's */
    if (j->stream) {
        shmrpc_buf_clear(&j->in);
        j->in_head = 0;
        j->in_done = false;
        j->in_taken = j->grant = 0;
        j->in_held = 0;
        j->pull_due = false;
        j->peer_max = p->peer_max;
        p->n_streams++;
        w->n_streams++;
    }
    p->running++;
    w->running++;
    shmrpc__tcp_count_busy(w);
    if (shmrpc__tcp_pool_give(w, j)) return;
    if (j->stream) { /* never on this thread, which alone reads its WINDOWs */
        j->rc = SHMRPC_ENOMEM;
        snprintf(j->msg, sizeof j->msg, "no thread for the stream's handler: it was not run");
    } else {
        shmrpc__tcp_run_job(w, &w->ctx, j);
        j->ns = -1; /* counted by dispatch on w->ctx already */
    }
    shmrpc__tcp_finish_job(w, j);
}

/* Takes back a job the pool ran: its answer goes to its connection, unless that closed. */
void shmrpc__tcp_finish_job(worker *w, job *j)
{
    peer *p = j->p;
    /* At its bound, the connection's next frame waited for the server, not for its
     * client: its time for progress starts again now that the server reads on. */
    if (p->running == (uint32_t)w->l->cfg.max_running && p->in.len)
        shmrpc__tcp_frame_begins(w, p, shmrpc__now_ns());
    p->running--;
    w->running--;
    shmrpc__tcp_count_busy(w);
    shmrpc__stats_row *rows = w->ctx.stats;
    if (j->ns >= 0 && rows && j->method < w->ctx.stats_n)
        shmrpc__stats_count(&rows[j->method], j->rc, (uint64_t)j->ns);
    if (j->stream) {
        /* Its items went out before its end (collect frames them first), and the RESPONSE
         * that ends it is empty: a stream answers with its items only. One whose result is
         * no stream answers as a call. */
        if (j->ways & SHMRPC__STREAM_OUT) shmrpc_buf_clear(&j->resp);
        shmrpc__tcp_results_close(w, j); /* its items go before its end */
        p->n_streams--;
        w->n_streams--;
        shmrpc__tcp_stream_ended(w);
    }
    if (!p->gone) put_answer(p, j->method, j->rid, j->rc, &j->resp, j->msg);
    if (j->peer_prev)
        j->peer_prev->peer_next = j->peer_next;
    else
        p->jobs = j->peer_next;
    if (j->peer_next) j->peer_next->peer_prev = j->peer_prev;
    shmrpc__tcp_job_put(w, j);
    if (p->gone) {
        if (p->running == 0) shmrpc__tcp_bury(w, p);
        return;
    }
    if (p->running == 0 && p->tail_status) {
        shmrpc__tcp_put_error_frame(&p->out, 0, 0, p->tail_status, p->tail_msg);
        p->tail_status = 0;
    }
    if (p->running == 0 && p->drain_due) {
        size_t at = shmrpc__frame_begin(&p->out, SHMRPC__KIND_DRAIN, 0, 0, 0);
        shmrpc__frame_end(&p->out, at);
        p->drain_due = false;
        p->drain_ns = shmrpc__now_ns();
    }
    p->last_ns = shmrpc__now_ns();
    shmrpc__tcp_peer_recharge(w, p);
}

void shmrpc__tcp_serve_cancel(worker *w, peer *p, uint64_t rid)
{
    for (job *j = p->jobs; j; j = j->peer_next)
        if (j->rid == rid) {
            atomic_store_explicit(&j->cancelled, true, memory_order_release);
            if (j->stream) { /* its handler may wait for the window */
                pthread_mutex_lock(&w->mu);
                pthread_cond_broadcast(&j->scv);
                pthread_mutex_unlock(&w->mu);
            }
            return;
        }
}

/* The connection whose call runs on this thread (the worker's), while it runs: only this
 * thread reads the connection, so only it may look into it (lone_wanted). */
static _Thread_local const peer *serving_here;

/* The most bytes a look for a CANCEL reads of the socket, not taking them. */
#define CANCEL_LOOK_BYTES 4096u

/* Whether a CANCEL of the call being served came after its request: among the frames read
 * past it, then those in the socket, peeked (left for the reads after the call). A lone
 * call's client sends nothing else before its answer, so the CANCEL comes first; a client
 * with calls in flight (a server that runs every call here: max_running 1, or in place)
 * may have sent their requests before it, which are stepped over, as far as a look reads
 * (CANCEL_LOOK_BYTES, or under TLS one record: a CANCEL further away is missed until the
 * call ends). */
static bool run_here_cancelled(peer *p)
{
    size_t at = SHMRPC__FRAME_HDR_SIZE + (size_t)p->hdr.body_len;
    size_t mine = p->in.len > at ? p->in.len - at : 0; /* read past the request */
    uint8_t peeked[CANCEL_LOOK_BYTES];
    ssize_t k = shmrpc__io_peek(&p->io, peeked, sizeof peeked);
    size_t more = k > 0 ? (size_t)k : 0, all = mine + more;
    uint16_t agreed = p->comp | SHMRPC__FLAG_LONE | SHMRPC__FLAG_DEADLINE | SHMRPC__AGREED_CANCEL |
                      SHMRPC__FLAG_META | SHMRPC__AGREED_STREAMS | SHMRPC__AGREED_CLIENT_STREAMS;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    bool found = false;
    for (size_t pos = 0; !found && all - pos >= SHMRPC__FRAME_HDR_SIZE;) {
        uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
        for (size_t i = 0; i < sizeof hdr; i++)
            hdr[i] = pos + i < mine ? p->in.data[at + pos + i] : peeked[pos + i - mine];
        shmrpc__frame_hdr h;
        if (shmrpc__frame_hdr_decode(hdr, sizeof hdr, UINT32_MAX, agreed, &h, &err) != 0) break;
        found = h.kind == SHMRPC__KIND_CANCEL && h.request_id == p->hdr.request_id;
        pos += SHMRPC__FRAME_HDR_SIZE + (size_t)h.body_len;
        if (pos > all) break;
    }
    shmrpc_buf_destroy(&err);
    return found;
}

/* Whether the client of a call run on the worker's own thread still waits for it
 * (shmrpc_ctx_cancelled): not once it sent a CANCEL for it (revision 5; looked for only on
 * this thread, the connection's reader), nor once its connection ended (a client shuts its
 * side only when it is gone), which this thread, busy with the call, can only ask the
 * socket. */
static int lone_wanted(void *arg)
{
    peer *p = arg;
    struct pollfd pf = {.fd = p->fd, .events = POLLIN | POLLRDHUP};
    int n = poll(&pf, 1, 0);
    bool readable = (n == 1 && (pf.revents & POLLIN)) || shmrpc__io_pending(&p->io);
    bool buffered = p->in.len > SHMRPC__FRAME_HDR_SIZE + (size_t)p->hdr.body_len;
    if (p->proto >= 5 && serving_here == p && (readable || buffered) && run_here_cancelled(p))
        return SHMRPC_ECANCELLED;
    if (n == 1 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR))) return SHMRPC_EPEERDIED;
    return 0;
}

/* Opens the stream a REQUEST asks for (revision 8; docs/wire.md, "Streams") on a thread of
 * the pool, never on the worker's own thread, which alone reads its WINDOWs. */
static void open_stream(worker *w, peer *p, const shmrpc__frame_hdr *h, shmrpc_bytes body)
{
    char msg[100];
    if (w->n_streams >= STREAMS_MAX) {
        snprintf(msg, sizeof msg, "the worker runs %d streams already: the stream was not run",
                 STREAMS_MAX);
        shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_EBUSY, msg);
        return;
    }
    /* Its items would come in ITEMS frames, which a client sends from revision 9. */
    if ((shmrpc__server_streams(w->l->server, h->method) & SHMRPC__STREAM_IN) && p->proto < 9) {
        snprintf(msg, sizeof msg,
                 "a stream of the parameter needs protocol revision 9 (%" PRIu32
                 " agreed): it was not run",
                 p->proto);
        shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_EVERSION, msg);
        return;
    }
    /* A worker that runs its calls in place runs a stream on a thread of its own (solo),
     * and holds every request meanwhile (server_conn.c, held). */
    if (!w->pool_max && !w->threads) { /* a pool that failed once (epoll) is not tried again */
        shmrpc__tcp_pool_init(w, 1);
        w->solo = w->pool_max != 0;
    }
    if (!w->pool_max) {
        shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_ENOMEM,
                                    "no thread for the stream's handler: it was not run");
        return;
    }
    submit(w, p, h, body);
}

void shmrpc__tcp_serve_request(worker *w, peer *p, const shmrpc__frame_hdr *h, shmrpc_bytes body)
{
    const tcp_listener *l = w->l;
    /* A request read after the DRAIN is not run: its client reads the DRAIN first and
     * sends the call elsewhere; this answer is for a client that does not. */
    if (w->draining) {
        char msg[ADDR_MAX + 64];
        snprintf(msg, sizeof msg, "tcp://%s is draining (its server stops): the call was not run",
                 l->where);
        shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_EUNAVAIL, msg);
        p->drain_ns = shmrpc__now_ns();
        return;
    }
    /* No call runs while answers of earlier ones fill the budget (their clients do not
     * read them): its answer, of a size known only once it ran, would add to them. */
    if (shmrpc__tcp_budget_used(l) > l->cfg.budget) {
        refuse_call(w, p, h, body.len);
        return;
    }
    if (h->flags & SHMRPC__FLAG_STREAM) {
        open_stream(w, p, h, body);
        return;
    }
    /* A call its client says is alone on the connection (the lone flag, revision 3: a
     * blocking call) runs here on the worker's own thread when no call of the worker runs
     * in the pool, as with max_running 1: handing it to the pool would cost it two thread
     * handoffs and gain the connection nothing. With calls in the pool it goes there too:
     * run here, a slow one would hold their answers (only this thread sends them). The
     * flag is only a hint. */
    bool lone = (h->flags & SHMRPC__FLAG_LONE) && w->running == 0;
    if (w->pool_max && !w->solo && !lone) {
        submit(w, p, h, body);
        return;
    }
    int64_t budget;
    shmrpc_bytes req, meta;
    const char *why;
    if (request_of(h, body, &budget, &meta, &req, &why) != 0) {
        shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_EPROTO, why);
        return;
    }
    body = req;
    uint16_t comp = h->flags & SHMRPC__FLAG_COMPRESSION;
    int rc = 0;
    if (comp) {
        uint64_t declared;
        if (shmrpc__body_declared(comp, body, &declared) == 0 && declared > KEEP_BYTES &&
            declared <= l->max_msg) {
            if (!shmrpc__tcp_budget_take(w, (size_t)declared)) {
                refuse_call(w, p, h, (size_t)declared);
                return;
            }
            w->req_charged = (size_t)declared;
        }
        shmrpc__msg_clear(&w->err);
        rc = shmrpc__body_decompress(comp, body, l->max_msg, &w->req, &w->err);
        if (rc) {
            shmrpc__tcp_peer_refuse(p, rc, shmrpc__msg_get(&w->err));
            goto done;
        }
        req = shmrpc_bytes_of(w->req.data, w->req.len);
    }
    _Atomic uint32_t *busy = w->index >= 0 ? &l->load->busy[w->index] : NULL;
    /* busy counts the calls the pool runs too (count_busy). */
    if (busy) atomic_store_explicit(busy, w->running + 1, memory_order_relaxed);
    w->ctx.draining =
        shmrpc__tcp_stopping(w); /* a forked worker's SIGTERM is its own, not the server's */
    if (meta.len && (rc = shmrpc__ctx_set_meta(&w->ctx, meta.ptr, meta.len, &why)) != 0) {
        shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, rc, why);
        if (busy) atomic_store_explicit(busy, w->running, memory_order_relaxed);
        goto done;
    }
    w->ctx.budget_ns = budget;
    w->ctx.wanted = lone_wanted;
    w->ctx.wanted_arg = p;
    serving_here = p;
    rc = shmrpc__dispatch(l->server, &w->ctx, h->method, req, &w->resp);
    serving_here = NULL;
    w->ctx.wanted = NULL; /* p may go before the ctx's next call */
    if (busy) atomic_store_explicit(busy, w->running, memory_order_relaxed);
    put_answer(p, h->method, h->request_id, rc, &w->resp, shmrpc__ctx_msg(&w->ctx));
done:
    /* Every way out gives a large call's memory back, a refused body's included. */
    shmrpc__tcp_buf_shed(&w->req);
    shmrpc__tcp_buf_shed(&w->resp);
    shmrpc__tcp_budget_charge(w, w->req_charged, 0);
    w->req_charged = 0;
    shmrpc__tcp_peer_recharge(w, p);
}
