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
    shmrpc_bytes body = shmrpc__tcp_frame_body(c);
    uint16_t comp = h->flags & SHMRPC__FLAG_COMPRESSION;
    uint64_t max_item = c->cfg->max_msg;
    uint64_t max_body = max_item + SHMRPC__ITEM_LEN_SIZE;
    if (max_body > UINT32_MAX) max_body = UINT32_MAX;
    /* Credit is counted in bytes before compression, checked on what the body declares
     * before anything is allocated for it. */
    uint64_t declared = body.len;
    if (comp && shmrpc__body_declared(comp, body, &declared) != 0) {
        shmrpc__msg_set(err,
                        "tcp://%s sent a compressed ITEMS frame for stream %" PRIu64
                        " whose body declares no length",
                        c->where, st->rid);
        return stream_refuse(st, err);
    }
    bool over = (int64_t)declared > st->avail;
    if (over && st->avail != W) { /* a large item goes alone only while nothing is in transit */
        shmrpc__msg_set(err,
                        "tcp://%s sent %" PRIu64 " bytes of items for stream %" PRIu64
                        ", beyond its credit of %" PRId64,
                        c->where, declared, st->rid, st->avail);
        return stream_refuse(st, err);
    }
    if (declared > max_body) {
        shmrpc__msg_set(err,
                        "tcp://%s sent an ITEMS frame for stream %" PRIu64 " of %" PRIu64
                        " bytes, above the client's maximum item of %" PRIu64 " and its length",
                        c->where, st->rid, declared, max_item);
        return stream_refuse(st, err);
    }
    if (comp) {
        shmrpc_buf why;
        shmrpc_buf_init(&why);
        shmrpc_buf_clear(&st->scratch);
        int rc = shmrpc__body_decompress(comp, body, (uint32_t)max_body, &st->scratch, &why);
        if (rc) {
            shmrpc__msg_set(err, "tcp://%s sent an ITEMS frame for stream %" PRIu64 " that %s: %s",
                            c->where, st->rid,
                            rc == SHMRPC_ENOMEM ? "found no memory" : "does not decompress",
                            shmrpc__msg_get(&why));
            shmrpc_buf_destroy(&why);
            if (rc == SHMRPC_ENOMEM) {
                shmrpc__tcp_stream_set_end(st, rc, shmrpc__msg_get(err));
                return SHMRPC_EPROTO; /* the connection is broken all the same */
            }
            return stream_refuse(st, err);
        }
        shmrpc_buf_destroy(&why);
        body = shmrpc_bytes_of(st->scratch.data, st->scratch.len);
    }
    const uint8_t *b = body.ptr;
    size_t n = body.len, at = 0;
    uint64_t count = 0;
    while (at < n) {
        if (n - at < SHMRPC__ITEM_LEN_SIZE) {
            shmrpc__msg_set(err,
                            "tcp://%s sent an ITEMS frame for stream %" PRIu64
                            " whose item length at offset %zu is cut short (%zu of 4 bytes)",
                            c->where, st->rid, at, n - at);
            return stream_refuse(st, err);
        }
        uint32_t len = load_be32(b + at);
        if (len > max_item) {
            shmrpc__msg_set(err,
                            "tcp://%s sent an item of %" PRIu32 " bytes for stream %" PRIu64
                            " at offset %zu, above the client's maximum of %" PRIu64,
                            c->where, len, st->rid, at, max_item);
            return stream_refuse(st, err);
        }
        if (len > n - at - SHMRPC__ITEM_LEN_SIZE) {
            shmrpc__msg_set(err,
                            "tcp://%s sent an item of %" PRIu32 " bytes for stream %" PRIu64
                            " at offset %zu, past the end of its ITEMS body of %zu bytes",
                            c->where, len, st->rid, at, n);
            return stream_refuse(st, err);
        }
        at += SHMRPC__ITEM_LEN_SIZE + len;
        count++;
    }
    if (over && count != 1) {
        shmrpc__msg_set(err,
                        "tcp://%s sent %zu bytes of items for stream %" PRIu64
                        ", beyond its credit of %" PRId64,
                        c->where, n, st->rid, st->avail);
        return stream_refuse(st, err);
    }
    /* Kept as they came (lengths native-endian from here on). */
    for (at = 0; at < n;) {
        uint32_t len = load_be32(b + at);
        if (shmrpc_buf_append(&st->items, &len, sizeof len) ||
            shmrpc_buf_append(&st->items, b + at + SHMRPC__ITEM_LEN_SIZE, len)) {
            shmrpc__msg_set(err, "out of memory for the items of stream %" PRIu64, st->rid);
            shmrpc__tcp_stream_set_end(st, SHMRPC_ENOMEM, shmrpc__msg_get(err));
            return SHMRPC_EPROTO; /* the connection cannot go on without them */
        }
        at += SHMRPC__ITEM_LEN_SIZE + len;
    }
    st->avail -= (int64_t)n;
    st->received += count;
    if (st->scratch.cap > ((size_t)1 << 20)) {
        shmrpc_buf_destroy(&st->scratch);
        shmrpc_buf_init(&st->scratch);
    }
    return 1;
}

/* The answer of the open stream: its end. A RESPONSE has no body (what dispatch encodes
 * after the items is not sent); an ERROR carries the handler's status or the refusal. */
static int stream_answer(tcp_conn *c, tcp_cstream *st, const shmrpc__frame_hdr *h, shmrpc_buf *err)
{
    shmrpc__tcp_answer_read(c);
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
    bool items = h->kind == SHMRPC__KIND_ITEMS;
    bool answer =
        h->kind == SHMRPC__KIND_RESPONSE || (h->kind == SHMRPC__KIND_ERROR && h->request_id != 0);
    if (!items && !answer) return 0;
    tcp_cstream *st = c->stream;
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
    if (!items) return 0;
    /* Streams forgotten for lack of room (dead_lost): their ITEMS are let go while answers
     * beyond those of the calls in flight and the open stream are owed. */
    uint32_t live = (uint32_t)c->n_inflight + (st ? 1u : 0u);
    if (c->dead_lost && c->owed <= live) c->dead_lost = false;
    bool inflight = false;
    for (const shmrpc__pending *k = c->inflight; k && !inflight; k = k->next)
        inflight = k->rid == h->request_id;
    if (c->dead_lost && h->request_id <= c->next_id && !inflight) return 2;
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
