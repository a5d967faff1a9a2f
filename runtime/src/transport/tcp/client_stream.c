/* SPDX-License-Identifier: MIT */
/* A tcp:// client's stream (revision 8; docs/wire.md, "Streams"): opened by a REQUEST with
 * the stream flag, its items read from ITEMS frames by whichever reader of the connection
 * comes first (route), delivered one by one with the window given back as they go, and
 * ended by its answer, a failure, or the client. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/tcp/tcp_int.h"
#include "core/proc.h"
#include "core/wait.h"
#include "transport/tcp/tcp_client_int.h"

#define W ((int64_t)SHMRPC__STREAM_WINDOW)

static uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Ends st with status (0: its end) and the message in why. */
static void stream_set_end(tcp_cstream *st, int status, const char *why)
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
    if (st && !st->ended) stream_set_end(st, SHMRPC_EPROTO, shmrpc__msg_get(err));
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
                stream_set_end(st, rc, shmrpc__msg_get(err));
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
            stream_set_end(st, SHMRPC_ENOMEM, shmrpc__msg_get(err));
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
        stream_set_end(st, 0, NULL);
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
    stream_set_end(st, rc, shmrpc__msg_get(&why));
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
        stream_set_end(st, SHMRPC_EUNAVAIL, text);
        return;
    }
    /* It ran: a correct server sends its answer first. */
    snprintf(text, sizeof text,
             "tcp://%s sent a %s before the end of stream %" PRIu64 ", after %" PRIu64 " items",
             c->where, h->kind == SHMRPC__KIND_DRAIN ? "DRAIN" : "closing ERROR", st->rid,
             st->received);
    stream_set_end(st, SHMRPC_EPROTO, text);
}

/* --- open ----------------------------------------------------------------------------- */

int shmrpc__tcp_stream_open(shmrpc__conn *base, uint32_t sid, shmrpc_bytes req, int64_t timeout_ms,
                            shmrpc_buf *err)
{
    tcp_pool *p = (tcp_pool *)base;
    if (shmrpc__self_pid() != p->pid) {
        shmrpc__msg_set(err, "this connection belongs to process %d", (int)p->pid);
        return SHMRPC_EINVAL;
    }
    int64_t now = shmrpc__now_ns();
    int64_t deadline = shmrpc__deadline_at(&(shmrpc__deadline){0, timeout_ms}, now);
    /* The client's method id: each endpoint maps it to its own server's id. */
    int64_t j = -1;
    for (uint32_t i = 0; i < p->info->n_methods; i++)
        if (p->map[i] == sid) {
            j = i;
            break;
        }
    tcp_cstream *st = calloc(1, sizeof *st);
    if (!st) {
        shmrpc__msg_set(err, "out of memory");
        return SHMRPC_ENOMEM;
    }
    shmrpc_buf_init(&st->items);
    shmrpc_buf_init(&st->scratch);
    shmrpc_buf_init(&st->msg);
    shmrpc__tcp_maybe_resolve(p, now, err);
    shmrpc__tcp_tend(p, now, err);
    tcp_search s = {.deadline = deadline};
    int tries = 0;
    shmrpc_buf_clear(&p->why);
    while (tries < 2 * SHMRPC_TCP_MAX_ENDPOINTS) {
        if (shmrpc__conn_cancelled(base)) {
            shmrpc__msg_set(err, "the stream was cancelled by its client before it was sent; it "
                                 "did not run");
            free(st);
            return SHMRPC_ECANCELLED;
        }
        int i = shmrpc__tcp_choose(p, s.tried, false, NULL);
        if (i < 0) break;
        tries++;
        tcp_conn *c = p->eps[i];
        shmrpc__tcp_refresh(c, now, err);
        int rc;
        if (!shmrpc__tcp_connected(c) && !(c = shmrpc__tcp_race(p, i, &s, &i, err))) break;
        if (c->proto < 8) { /* an older server: refused before anything is sent */
            shmrpc__msg_set(err,
                            "tcp://%s agreed protocol revision %" PRIu32
                            ", and streams need revision 8: the stream was not opened (it did "
                            "not run)",
                            c->where, c->proto);
            rc = SHMRPC_EVERSION;
        } else {
            uint32_t esid = j >= 0 ? c->map[j] : sid;
            uint64_t id = ++c->next_id;
            rc = shmrpc__tcp_send_request(c, esid, id, SHMRPC__FLAG_STREAM, p->base.meta, req,
                                          deadline, err);
            if (c->fd < 0 && c->inflight) shmrpc__tcp_fail_sending(c, rc, err);
            if (rc == 0) {
                /* Open once its request is out whole: what follows is recv's to say. */
                st->c = c;
                st->gen = c->gen;
                st->rid = id;
                st->sid = esid;
                st->deadline = deadline;
                st->avail = W;
                c->stream = st;
                c->outstanding++; /* calls prefer other endpoints meanwhile */
                p->stream = st;
                return 0;
            }
            /* Written whole or not, a failure that is no broken connection ends it here. */
            if (!((rc == SHMRPC_EUNAVAIL || rc == SHMRPC_EPROTO) && c->fd < 0)) {
                free(st);
                return rc;
            }
        }
        s.tried |= (uint64_t)1 << i;
        if (s.status == 0 || s.status == SHMRPC_EUNAVAIL) s.status = rc;
        shmrpc__msg_append(&p->why, "%s%s", shmrpc__msg_get(&p->why)[0] ? "; " : "",
                           shmrpc__msg_get(err));
        now = shmrpc__now_ns();
        if (now >= deadline) break;
    }
    free(st);
    now = shmrpc__now_ns();
    if (now >= deadline) {
        shmrpc__msg_set(err,
                        "the deadline passed before an endpoint took the stream, which did not "
                        "run: %s",
                        shmrpc__msg_get(&p->why)[0] ? shmrpc__msg_get(&p->why) : "no try ended");
        return SHMRPC_ETIMEDOUT;
    }
    if (tries == 1 && p->n_eps == 1 && s.status) { /* as a single address always said it */
        shmrpc__msg_set(err, "%s", shmrpc__msg_get(&p->why));
        return s.status;
    }
    shmrpc__tcp_left_out(p, now, &p->why);
    if (tries == 0 && p->n_eps == 1) {
        shmrpc__msg_set(err, "%s: the stream was not opened", shmrpc__msg_get(&p->why));
        return SHMRPC_EUNAVAIL;
    }
    shmrpc__msg_set(err, "no endpoint of tcp://%s took the stream, which did not run: %s", p->list,
                    shmrpc__msg_get(&p->why));
    return s.status ? s.status : SHMRPC_EUNAVAIL;
}

/* --- recv ----------------------------------------------------------------------------- */

/* Gives the server back the bytes of the items delivered since the last WINDOW, without
 * waiting: when there is no room now, the next turn tries again. */
static void give_window(tcp_pool *p, tcp_cstream *st)
{
    tcp_conn *c = st->c;
    if (!st->delivered || st->ended || !c || c->gen != st->gen) return;
    int rc = shmrpc__tcp_send_window(c, st->rid, st->delivered, &p->scratch);
    if (rc == 0) {
        st->avail += st->delivered;
        st->delivered = 0;
    } else if (rc < 0 && c->inflight) { /* broken: the stream sees it through gen */
        shmrpc__tcp_fail_sending(c, rc, &p->scratch);
    }
}

/* The client gives up on st, which has not ended: what still comes of it is dropped
 * (c->dead), and with tell its server is told (a CANCEL now, or before the next REQUEST when
 * there is no room). At its deadline it is not: the server has the deadline too, and its
 * handler's sends fail with SHMRPC_ETIMEDOUT, as over the other transports (and as for a call,
 * docs/wire.md, "Cancellation"). */
static void give_up(tcp_pool *p, tcp_cstream *st, bool tell)
{
    tcp_conn *c = st->c;
    if (st->ended || st->gone) return;
    st->gone = true;
    if (!c) return;
    if (c->stream == st) c->stream = NULL;
    if (c->gen != st->gen || !shmrpc__tcp_connected(c)) return;
    int rc = tell ? shmrpc__tcp_send_cancel(c, st->rid, &p->scratch) : 0;
    if (rc < 0) { /* broken: nothing more comes of it */
        if (c->inflight) shmrpc__tcp_fail_sending(c, rc, &p->scratch);
        return;
    }
    if (rc == 1 && c->proto >= 5) c->cancel_due = st->rid;
    if (c->n_dead == TCP_DEAD_STREAMS) {
        if (!c->inflight) { /* nothing else to lose: a new connection owes nothing */
            shmrpc__tcp_conn_break(c);
            return;
        }
        shmrpc__tcp_dead_forget(c, c->dead[0]);
        c->dead_lost = true;
    }
    c->dead[c->n_dead++] = st->rid;
}

/* The index of c among p's endpoints. */
static int index_of(const tcp_pool *p, const tcp_conn *c)
{
    for (int i = 0; i < p->n_eps; i++)
        if (p->eps[i] == c) return i;
    return -1;
}

/* Waits until c has bytes to read (or a frame already read), until the stream's deadline,
 * looking at the client's cancels every SHMRPC__CHECK_NS: 0, or SHMRPC_ETIMEDOUT,
 * SHMRPC_ECANCELLED, or 1 when poll failed. */
static int wait_readable(tcp_pool *p, tcp_conn *c, int64_t deadline)
{
    for (;;) {
        if (c->in.len - c->used >= SHMRPC__FRAME_HDR_SIZE || shmrpc__io_pending(&c->io)) return 0;
        int64_t now = shmrpc__now_ns();
        if (now >= deadline) return SHMRPC_ETIMEDOUT;
        if (shmrpc__conn_cancelled(&p->base)) return SHMRPC_ECANCELLED;
        int64_t until = deadline - now > SHMRPC__CHECK_NS ? now + SHMRPC__CHECK_NS : deadline;
        int ms = (int)((until - now + NS_PER_MS - 1) / NS_PER_MS);
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        int n = poll(&pf, 1, ms);
        if (n > 0) return 0;
        if (n < 0 && errno != EINTR) return 1;
    }
}

/* Reads one frame of st's connection and acts on it (routing delivers items to st, answers
 * to the calls in flight): 0, or the status that ends st (its message in err). */
static int read_turn(tcp_pool *p, tcp_cstream *st, shmrpc_buf *err)
{
    tcp_conn *c = st->c;
    int rc = wait_readable(p, c, st->deadline);
    if (rc == SHMRPC_ETIMEDOUT || rc == SHMRPC_ECANCELLED) return rc;
    /* Within the stream's deadline, and its cancel, as a blocking call reads its answer: a
     * frame cut there breaks the connection (the rest of it cannot be read later), and the
     * calls in flight on it with it. */
    shmrpc__frame_hdr h;
    if (rc == 0) {
        c->cancel_of = &p->base;
        rc = shmrpc__tcp_read_frame(c, shmrpc__tcp_max_body(c), &h, st->deadline, err);
        c->cancel_of = NULL;
    } else {
        rc = shmrpc__tcp_broken(c, err, "while waiting");
    }
    if (rc == SHMRPC_ETIMEDOUT || rc == SHMRPC_ECANCELLED) {
        if (c->fd < 0) {
            shmrpc__tcp_fail_inflight(c, SHMRPC_EPEERDIED,
                                      rc == SHMRPC_ETIMEDOUT
                                          ? "the connection was cut in the middle of a frame at "
                                            "its stream's deadline"
                                          : "the connection was cut in the middle of a frame when "
                                            "its stream was cancelled");
            p->resolve_due = true;
        }
        return rc;
    }
    if (rc) {
        int status = rc == SHMRPC_EPROTO || rc == SHMRPC_ETOOBIG || rc == SHMRPC_EVERSION
                         ? SHMRPC_EPROTO
                         : SHMRPC_EPEERDIED;
        char why[400];
        snprintf(why, sizeof why, "%s", shmrpc__msg_get(err));
        shmrpc__tcp_conn_break(c);
        shmrpc__tcp_fail_inflight(c, status, why);
        p->resolve_due = true;
        if (status == SHMRPC_EPROTO) {
            shmrpc__msg_set(
                err, "tcp://%s broke the protocol during the stream, after %" PRIu64 " items: %s",
                c->where, st->received, why);
            stream_set_end(st, SHMRPC_EPROTO, shmrpc__msg_get(err));
        } else {
            shmrpc__msg_set(&st->msg, "%s", why); /* said when the break is seen */
        }
        return 0;
    }
    shmrpc__tcp_on_frame(p, c, index_of(p, c), &h, err);
    return 0;
}

int shmrpc__tcp_stream_recv(shmrpc__conn *base, shmrpc_buf *item, shmrpc_buf *err)
{
    tcp_pool *p = (tcp_pool *)base;
    tcp_cstream *st = p->stream;
    if (shmrpc__self_pid() != p->pid) {
        shmrpc__msg_set(err, "this connection belongs to process %d", (int)p->pid);
        return SHMRPC_EINVAL;
    }
    if (!st || st->gone) { /* client.c asks no more after the end */
        shmrpc__msg_set(err, "no stream is open");
        return SHMRPC_EINVAL;
    }
    int rc = 0;
    for (;;) {
        /* Before an item: a cancel ends a stream that is behind. */
        if (shmrpc__conn_cancelled(base)) {
            rc = SHMRPC_ECANCELLED;
            shmrpc__msg_set(err, "the stream was cancelled (shmrpc_client_cancel)");
            break;
        }
        if (st->head < st->items.len) {
            uint32_t len;
            memcpy(&len, st->items.data + st->head, sizeof len);
            rc = shmrpc_buf_append(item, st->items.data + st->head + sizeof len, len) ? item->err
                                                                                      : 1;
            st->head += sizeof len + (size_t)len;
            if (st->head == st->items.len) { /* all read: the room goes back */
                st->head = st->items.len = 0;
                if (st->items.cap > ((size_t)1 << 20)) {
                    shmrpc_buf_destroy(&st->items);
                    shmrpc_buf_init(&st->items);
                }
            }
            if (rc == SHMRPC_ETOOBIG)
                shmrpc__msg_set(err,
                                "an item of %u bytes is larger than the client's maximum of %zu "
                                "bytes",
                                len, item->max);
            else if (rc < 0)
                shmrpc__msg_set(err, "out of memory for an item of %u bytes", len);
            if (rc != 1) break;
            st->taken++;
            st->delivered += SHMRPC__ITEM_LEN_SIZE + len;
            if (st->delivered >= SHMRPC__STREAM_WINDOW / 4) give_window(p, st);
            return 1;
        }
        if (st->ended) {
            if (st->status) shmrpc__msg_set(err, "%s", shmrpc__msg_get(&st->msg));
            return st->status;
        }
        tcp_conn *c = st->c;
        if (!c || c->gen != st->gen) {
            rc = SHMRPC_EPEERDIED;
            shmrpc__msg_set(err,
                            "the connection to tcp://%s broke during the stream, after %" PRIu64
                            " items: it may have run (it is not opened again)",
                            c ? c->where : p->list, st->taken);
            if (shmrpc__msg_get(&st->msg)[0])
                shmrpc__msg_append(err, " (%s)", shmrpc__msg_get(&st->msg));
            stream_set_end(st, rc, shmrpc__msg_get(err));
            return rc;
        }
        if (shmrpc__now_ns() >= st->deadline) {
            rc = SHMRPC_ETIMEDOUT;
            shmrpc__msg_set(err, "the stream's deadline passed");
            break;
        }
        /* Always before a wait: the server may be waiting for this room. */
        give_window(p, st);
        if (c->gen != st->gen) continue;
        rc = read_turn(p, st, err);
        if (rc == SHMRPC_ETIMEDOUT) shmrpc__msg_set(err, "the stream's deadline passed");
        if (rc == SHMRPC_ECANCELLED)
            shmrpc__msg_set(err, "the stream was cancelled (shmrpc_client_cancel)");
        if (rc) break;
    }
    /* The client gives up on it (a cancel, its deadline). */
    give_up(p, st, rc != SHMRPC_ETIMEDOUT);
    return rc;
}

/* --- end ------------------------------------------------------------------------------ */

void shmrpc__tcp_stream_end(shmrpc__conn *base)
{
    tcp_pool *p = (tcp_pool *)base;
    tcp_cstream *st = p->stream;
    if (!st) return;
    /* In a forked child the stream is the parent's: only the child's record of it goes. */
    if (shmrpc__self_pid() == p->pid) give_up(p, st, true);
    if (st->c) {
        st->c->outstanding--;
        if (st->c->stream == st) st->c->stream = NULL;
    }
    shmrpc_buf_destroy(&st->items);
    shmrpc_buf_destroy(&st->scratch);
    shmrpc_buf_destroy(&st->msg);
    free(st);
    p->stream = NULL;
}
