/* SPDX-License-Identifier: MIT */
/* What a tcp:// client reads of its connection, taken where any reader may meet it: a
 * frame's body and an ERROR's status, an answer owed counted as read, and a stream's
 * frames (revision 8; docs/wire.md, "Streams"): its items checked and kept, its end
 * recorded, and what still comes of streams closed early dropped (route). Below the
 * readers that call it (client_conn.c, client_inflight.c, client_stream.c), it calls none
 * of them. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "transport/tcp/tcp_int.h"
#include "core/wait.h"
#include "transport/tcp/tcp_client_int.h"

#define W ((int64_t)SHMRPC__STREAM_WINDOW)

/* The answer of one of c's requests was read (an answer sent twice, which a server should
 * not, can only end what is owed early: then a late answer is taken for a close, and the
 * connection made again). */
void shmrpc__tcp_answer_read(tcp_conn *c)
{
    if (c->owed) c->owed--;
    c->answered_ns = shmrpc__now_ns();
}

shmrpc_bytes shmrpc__tcp_frame_body(const tcp_conn *c)
{
    return shmrpc_bytes_of(c->in.data + SHMRPC__FRAME_HDR_SIZE, c->used - SHMRPC__FRAME_HDR_SIZE);
}

/* An ERROR frame's status, its message into err. */
int shmrpc__tcp_error_frame(tcp_conn *c, shmrpc_buf *err)
{
    int status;
    shmrpc_str msg;
    int rc = shmrpc__error_parse(shmrpc__tcp_frame_body(c), &status, &msg, err);
    if (rc) return rc;
    /* Only statuses of status.h pass: a peer does not choose what our calls return. */
    if (!shmrpc__status_known(status)) {
        shmrpc__msg_set(err, "tcp://%s sent an ERROR frame with the unknown status %d: %.*s",
                        c->where, status, (int)msg.len, msg.ptr);
        return SHMRPC_EPROTO;
    }
    shmrpc__msg_set(err, "%.*s", (int)msg.len, msg.ptr);
    return status;
}

bool shmrpc__tcp_dead_stream(const tcp_conn *c, uint64_t id)
{
    for (int i = 0; i < c->n_dead; i++)
        if (c->dead[i] == id) return true;
    return false;
}

void shmrpc__tcp_dead_forget(tcp_conn *c, uint64_t id)
{
    for (int i = 0; i < c->n_dead; i++)
        if (c->dead[i] == id) {
            memmove(c->dead + i, c->dead + i + 1, (size_t)(c->n_dead - i - 1) * sizeof c->dead[0]);
            c->n_dead--;
            return;
        }
}

static uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Ends st with status (0: its end) and the message in why. */
void shmrpc__tcp_stream_set_end(tcp_cstream *st, int status, const char *why)
{
    st->ended = true;
    st->status = status;
    shmrpc__msg_set(&st->msg, "%s", why ? why : "");
    if (st->c && st->c->stream == st) st->c->stream = NULL;
}

/* Ends st with SHMRPC_EPROTO and the message in err (already set by the caller): the
 * status route returns, after which its caller breaks the connection. */
static int stream_refuse(tcp_cstream *st, shmrpc_buf *err)
{
    if (st && !st->ended) shmrpc__tcp_stream_set_end(st, SHMRPC_EPROTO, shmrpc__msg_get(err));
    return SHMRPC_EPROTO;
}

/* --- the ITEMS of the open stream ------------------------------------------------------- */

/* Checks and keeps the items of the ITEMS frame in hand on c, which names st (section
 * "Streams" of docs/wire.md): within its credit, or one item alone while nothing else is in
 * transit; every length whole, within the client's maximum and the body; nothing after the
 * last item. */
static int take_items(tcp_conn *c, tcp_cstream *st, const shmrpc__frame_hdr *h, shmrpc_buf *err)
{
    char who[ADDR_MAX + 8];
    snprintf(who, sizeof who, "tcp://%s", c->where);
    shmrpc_bytes body;
    uint64_t count;
    int rc = shmrpc__items_check(who, "client's", st->rid, h->flags & SHMRPC__FLAG_COMPRESSION,
                                 shmrpc__tcp_frame_body(c), st->avail, W, c->cfg->max_msg,
                                 &st->scratch, &body, &count, err);
    if (rc == SHMRPC_ENOMEM) {
        shmrpc__tcp_stream_set_end(st, rc, shmrpc__msg_get(err));
        return SHMRPC_EPROTO; /* the connection is broken all the same */
    }
    if (rc) return stream_refuse(st, err);
    size_t n = body.len;
    /* Kept as they came, checked: the reader walks their lengths (stream_next). */
    if (shmrpc_buf_append(&st->items, body.ptr, n)) {
        shmrpc__msg_set(err, "out of memory for the items of stream %" PRIu64, st->rid);
        shmrpc__tcp_stream_set_end(st, SHMRPC_ENOMEM, shmrpc__msg_get(err));
        return SHMRPC_EPROTO; /* the connection cannot go on without them */
    }
    st->avail -= (int64_t)n;
    st->received += count;
    if (st->scratch.cap > ((size_t)1 << 20)) {
        shmrpc_buf_destroy(&st->scratch);
        shmrpc_buf_init(&st->scratch);
    }
    return 1;
}

/* A WINDOW for st, whose items the client sends (revision 9): the server gives back what its
 * handler read. One that grants nothing, or more than is in transit, breaks the protocol. */
static int take_window(tcp_conn *c, tcp_cstream *st, shmrpc_buf *err)
{
    uint32_t grant = load_be32(shmrpc__tcp_frame_body(c).ptr); /* the decoder checked its 4 bytes */
    if (!(st->ways & SHMRPC__STREAM_IN)) {
        shmrpc__msg_set(
            err, "tcp://%s sent a WINDOW frame for stream %" PRIu64 ", whose client sends no items",
            c->where, st->rid);
        return stream_refuse(st, err);
    }
    if (grant == 0) {
        shmrpc__msg_set(err,
                        "tcp://%s sent a WINDOW frame for stream %" PRIu64 " that grants no bytes",
                        c->where, st->rid);
        return stream_refuse(st, err);
    }
    if (st->send_avail + grant > W) {
        shmrpc__msg_set(err,
                        "tcp://%s sent a WINDOW frame that grants stream %" PRIu64
                        " more than it was sent (%" PRId64 " + %" PRIu32 " is above %" PRId64 ")",
                        c->where, st->rid, st->send_avail, grant, W);
        return stream_refuse(st, err);
    }
    st->send_avail += grant;
    return 1;
}

/* The answer of the open stream: its end. A RESPONSE that ends a stream of items has no body
 * (what dispatch encodes after the items is not sent); one whose result is no stream carries
 * the answer, as a call's does. An ERROR carries the handler's status or the refusal. */
static int stream_answer(tcp_conn *c, tcp_cstream *st, const shmrpc__frame_hdr *h, shmrpc_buf *err)
{
    shmrpc__tcp_answer_read(c);
    st->answered = true;
    if (h->kind == SHMRPC__KIND_RESPONSE && !(st->ways & SHMRPC__STREAM_OUT)) {
        uint16_t comp = h->flags & SHMRPC__FLAG_COMPRESSION;
        shmrpc_bytes body = shmrpc__tcp_frame_body(c);
        shmrpc_buf why;
        shmrpc_buf_init(&why);
        int rc = 0;
        if (comp)
            rc = shmrpc__body_decompress(comp, body, shmrpc__tcp_cap32(c->cfg->max_msg),
                                         &st->answer, &why);
        else if (body.len > c->cfg->max_msg)
            rc = SHMRPC_ETOOBIG; /* the decoder allows the server's maximum */
        else if (shmrpc_buf_append(&st->answer, body.ptr, body.len))
            rc = SHMRPC_ENOMEM;
        if (rc)
            shmrpc__msg_set(err, "tcp://%s: the answer of stream %" PRIu64 ": %s", c->where,
                            st->rid,
                            rc == SHMRPC_ETOOBIG && !comp  ? "above the client's maximum"
                            : rc == SHMRPC_ENOMEM && !comp ? "out of memory"
                                                           : shmrpc__msg_get(&why));
        shmrpc_buf_destroy(&why);
        if (rc == SHMRPC_EPROTO) return stream_refuse(st, err);
        shmrpc__tcp_stream_set_end(st, rc, rc ? shmrpc__msg_get(err) : NULL);
        return 1;
    }
    if (h->kind == SHMRPC__KIND_RESPONSE) {
        if (h->body_len != 0) {
            shmrpc__msg_set(err,
                            "tcp://%s: the RESPONSE that ends stream %" PRIu64
                            " has a body of %" PRIu32 " bytes (it has none)",
                            c->where, st->rid, h->body_len);
            return stream_refuse(st, err);
        }
        shmrpc__tcp_stream_set_end(st, 0, NULL);
        return 1;
    }
    shmrpc_buf why;
    shmrpc_buf_init(&why);
    int rc = shmrpc__tcp_error_frame(c, &why);
    if (rc == 0) { /* an ERROR whose status is success */
        shmrpc__msg_set(err, "tcp://%s ended stream %" PRIu64 " with an ERROR frame of status 0",
                        c->where, st->rid);
        shmrpc_buf_destroy(&why);
        return stream_refuse(st, err);
    }
    shmrpc__tcp_stream_set_end(st, rc, shmrpc__msg_get(&why));
    shmrpc_buf_destroy(&why);
    return 1;
}

int shmrpc__tcp_stream_route(tcp_conn *c, const shmrpc__frame_hdr *h, shmrpc_buf *err)
{
    bool items = h->kind == SHMRPC__KIND_ITEMS, window = h->kind == SHMRPC__KIND_WINDOW;
    bool answer =
        h->kind == SHMRPC__KIND_RESPONSE || (h->kind == SHMRPC__KIND_ERROR && h->request_id != 0);
    if (!items && !answer && !window) return 0;
    tcp_cstream *st = c->stream;
    if (items && (h->flags & SHMRPC__FLAG_LAST)) {
        shmrpc__msg_set(err,
                        "tcp://%s sent an ITEMS frame with the last flag, which a server "
                        "does not send",
                        c->where);
        return stream_refuse(st, err);
    }
    if (st && h->request_id == st->rid && window) return take_window(c, st, err);
    if (st && h->request_id == st->rid) {
        if (h->method != st->sid) {
            shmrpc__msg_set(err,
                            "tcp://%s sent a %s frame for stream %" PRIu64 " of method %" PRIu32
                            ", which is method %" PRIu32 "'s",
                            c->where, shmrpc__frame_kind_name(h->kind), st->rid, h->method,
                            st->sid);
            return stream_refuse(st, err);
        }
        return items ? take_items(c, st, h, err) : stream_answer(c, st, h, err);
    }
    if (shmrpc__tcp_dead_stream(c, h->request_id)) {
        if (answer) { /* what was owed of it came: nothing more will */
            shmrpc__tcp_dead_forget(c, h->request_id);
            shmrpc__tcp_answer_read(c);
        }
        return 2;
    }
    if (!items && !window) return 0;
    /* Streams forgotten for lack of room (dead_lost): their ITEMS are let go while answers
     * beyond those of the calls in flight and the open stream are owed. */
    uint32_t live = (uint32_t)c->n_inflight + (st ? 1u : 0u);
    if (c->dead_lost && c->owed <= live) c->dead_lost = false;
    bool inflight = false;
    for (const shmrpc__pending *k = c->inflight; k && !inflight; k = k->next)
        inflight = k->rid == h->request_id;
    if (c->dead_lost && h->request_id <= c->next_id && !inflight) return 2;
    if (window) {
        shmrpc__msg_set(
            err, "tcp://%s sent a WINDOW frame for request %" PRIu64 ", which sends no items",
            c->where, h->request_id);
        return stream_refuse(st, err);
    }
    shmrpc__msg_set(err,
                    "tcp://%s sent an ITEMS frame for request %" PRIu64 " of method %" PRIu32
                    ", which opened no stream",
                    c->where, h->request_id, h->method);
    return stream_refuse(st, err);
}

void shmrpc__tcp_stream_left(tcp_conn *c, const shmrpc__frame_hdr *h, const shmrpc_buf *why)
{
    tcp_cstream *st = c->stream;
    if (!st) return;
    char text[400];
    if (st->received == 0) {
        /* The server runs no REQUEST it reads after a DRAIN, and answers those it ran before
         * it (docs/wire.md, "Drain"): the stream did not run. */
        if (h->kind == SHMRPC__KIND_DRAIN)
            snprintf(text, sizeof text,
                     "tcp://%s is draining (its server stops): the stream did not run", c->where);
        else
            snprintf(text, sizeof text,
                     "tcp://%s closed the connection: %s; the stream did not run", c->where,
                     shmrpc__msg_get(why));
        shmrpc__tcp_stream_set_end(st, SHMRPC_EUNAVAIL, text);
        return;
    }
    /* It ran: a correct server sends its answer first. */
    snprintf(text, sizeof text,
             "tcp://%s sent a %s before the end of stream %" PRIu64 ", after %" PRIu64 " items",
             c->where, h->kind == SHMRPC__KIND_DRAIN ? "DRAIN" : "closing ERROR", st->rid,
             st->received);
    shmrpc__tcp_stream_set_end(st, SHMRPC_EPROTO, text);
}
