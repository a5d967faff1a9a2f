/* SPDX-License-Identifier: MIT */
/* The inproc:// transport: clients and servers in one process. A call runs the server's
 * dispatch on the caller's thread, through the same checks as a remote call, so it is
 * both a test bed for the runtime and a way to link a service in directly. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/wait.h"
#include "rpc/meta.h"
#include "rpc/rpc.h"

#define NAME_MAX_LEN 255

/* The bytes of a stream's items in transit each way (their encodings and a 4-byte length
 * each) past which the next send waits for the other side to take some: an item of more
 * goes alone. docs/streams.md, "Flow control". */
#define STREAM_ROOM (64 * 1024)

/* One listening server. The registry and each connection hold a reference; the entry
 * outlives its server, so a connection to a server that went away fails cleanly. */
typedef struct entry {
    struct entry *next; /* registry list; under reg_mu */
    pthread_mutex_t mu;
    pthread_cond_t idle;   /* signalled when active drops to 0 after the server left */
    shmrpc_server *server; /* NULL once the server stopped listening; under mu */
    unsigned active;       /* calls running in the server; under mu */
    unsigned refs;         /* the listener plus each connection; under mu */
    char name[];
} entry;

/* Lock order: reg_mu, then an entry's mu. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static entry *reg_head;

typedef struct listener {
    shmrpc__listener base;
    entry *e;
} listener;

typedef struct istream istream;

typedef struct conn {
    shmrpc__conn base;
    entry *e;
    shmrpc_ctx ctx;  /* the server side of this connection */
    shmrpc_buf resp; /* where the server encodes, before the copy to the client */
    istream *st;     /* the stream open, or NULL */
} conn;

/* A stream (docs/streams.md): its handler runs on a thread of its own; the items go each
 * way through a bounded queue, under mu. */
struct istream {
    conn *c;
    shmrpc_server *s; /* held (enter) until the handler returns */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* an item came, one was taken, or a side ended */
    uint32_t sid;
    int way;          /* SHMRPC__STREAM_OUT, _IN, or both */
    shmrpc_buf req;   /* the request, the stream's own */
    int64_t deadline; /* ns of CLOCK_MONOTONIC, or INT64_MAX */
    shmrpc_buf items; /* the handler's: each a 4-byte length and the bytes, from head on */
    size_t head;
    shmrpc_buf in; /* the client's, so, from in_head on */
    size_t in_head;
    bool in_done; /* the client sent its last (shmrpc_stream_done) */
    bool done;    /* the handler returned rc, with msg */
    int rc;
    shmrpc_buf msg;
    int stopped; /* the client closed it or gave up (the status its sends get), or 0 */
};

static entry *find(const char *name)
{
    for (entry *e = reg_head; e; e = e->next)
        if (strcmp(e->name, name) == 0) return e;
    return NULL;
}

static void entry_unref(entry *e)
{
    pthread_mutex_lock(&e->mu);
    bool last = --e->refs == 0;
    pthread_mutex_unlock(&e->mu);
    if (!last) return;
    pthread_cond_destroy(&e->idle);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

/* Holds the entry's server for one call and returns it; NULL when it is gone. Use the
 * pointer returned, never e->server again: that is cleared while calls still run. */
static shmrpc_server *enter(entry *e)
{
    pthread_mutex_lock(&e->mu);
    shmrpc_server *s = e->server;
    if (s) e->active++;
    pthread_mutex_unlock(&e->mu);
    return s;
}

static void leave(entry *e)
{
    pthread_mutex_lock(&e->mu);
    if (--e->active == 0 && !e->server) pthread_cond_broadcast(&e->idle);
    pthread_mutex_unlock(&e->mu);
}

static int check_name(const char *name, shmrpc_buf *err)
{
    size_t n = strlen(name);
    bool ok = n > 0 && n <= NAME_MAX_LEN;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)name[i] > ' ' && name[i] != 0x7f;
    if (ok) return 0;
    shmrpc__msg_set(err,
                    "malformed address 'inproc://%.*s': the name must be 1 to %d printable "
                    "characters without spaces",
                    NAME_MAX_LEN, name, NAME_MAX_LEN);
    return SHMRPC_EINVAL;
}

/* --- the server side ----------------------------------------------------------------- */

static void listener_close(shmrpc__listener *base)
{
    listener *l = (listener *)base;
    entry *e = l->e;
    /* Unlisted first, so the name is free again at once; then wait for the calls that
     * are still inside the server before it may be freed. */
    pthread_mutex_lock(&reg_mu);
    for (entry **p = &reg_head; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            break;
        }
    }
    pthread_mutex_unlock(&reg_mu);

    pthread_mutex_lock(&e->mu);
    e->server = NULL;
    while (e->active)
        pthread_cond_wait(&e->idle, &e->mu);
    pthread_mutex_unlock(&e->mu);
    entry_unref(e);
    free(l);
}

static const shmrpc__listener_ops listener_ops = {.close = listener_close};

static int inproc_listen(shmrpc_server *s, const char *where, shmrpc__listener **out,
                         shmrpc_buf *err)
{
    int rc = check_name(where, err);
    if (rc) return rc;
    size_t n = strlen(where);
    listener *l = malloc(sizeof *l);
    entry *e = calloc(1, sizeof *e + n + 1);
    if (!l || !e) {
        free(l);
        free(e);
        shmrpc__msg_set(err, "out of memory");
        return SHMRPC_ENOMEM;
    }
    memcpy(e->name, where, n + 1);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->idle, NULL);
    e->server = s;
    e->refs = 1;
    l->base.ops = &listener_ops;
    l->e = e;

    pthread_mutex_lock(&reg_mu);
    bool taken = find(where) != NULL;
    if (!taken) {
        e->next = reg_head;
        reg_head = e;
    }
    pthread_mutex_unlock(&reg_mu);
    if (taken) {
        shmrpc__msg_set(err, "inproc://%s is already served by another server in this process",
                        where);
        pthread_cond_destroy(&e->idle);
        pthread_mutex_destroy(&e->mu);
        free(e);
        free(l);
        return SHMRPC_EBUSY;
    }
    *out = &l->base;
    return 0;
}

/* --- the client side ----------------------------------------------------------------- */

/* Whether the caller still waits (shmrpc_ctx_cancelled): it is blocked in this call, so only
 * another thread can end its wait, by cancelling it (shmrpc_client_cancel). */
static int inproc_wanted(void *arg)
{
    const conn *c = arg;
    return shmrpc__conn_cancelled(&c->base) ? SHMRPC_ECANCELLED : 0;
}

/* The handler's answer (a call's, or a stream's whose result is no stream), appended to
 * item: 0, or item's error. */
static int answer(conn *c, shmrpc_buf *item, shmrpc_buf *err)
{
    if (shmrpc_buf_append(item, c->resp.data, c->resp.len) == 0) return 0;
    if (item->err == SHMRPC_ETOOBIG)
        shmrpc__msg_set(err,
                        "a response of %zu bytes is larger than the client's maximum of %zu bytes",
                        c->resp.len, item->max);
    else
        shmrpc__msg_set(err, "%s", shmrpc_strerror(item->err));
    return item->err;
}

static int inproc_call(shmrpc__conn *base, uint32_t sid, shmrpc_bytes req, shmrpc_buf *resp,
                       int64_t timeout_ms, shmrpc_buf *err)
{
    /* The call runs on this thread and returns when the handler does: there is
     * nothing to wait for that a deadline could bound. The handler sees the deadline
     * (shmrpc_ctx_deadline), and the calls it makes inherit it. */
    conn *c = (conn *)base;
    c->ctx.budget_ns = timeout_ms < 0                     ? -1
                       : timeout_ms < INT64_MAX / 1000000 ? timeout_ms * 1000000
                                                          : INT64_MAX;
    shmrpc_server *s = enter(c->e);
    if (!s) {
        shmrpc__msg_set(err, "the server at inproc://%s went away", c->e->name);
        return SHMRPC_EUNAVAIL;
    }
    /* The metadata takes the path a remote call's does: decoded into the ctx's arena. */
    const char *why;
    int rc =
        base->meta.len ? shmrpc__ctx_set_meta(&c->ctx, base->meta.ptr, base->meta.len, &why) : 0;
    if (rc) {
        leave(c->e);
        shmrpc__msg_set(err, "%s", why);
        return rc;
    }
    rc = shmrpc__dispatch(s, &c->ctx, sid, req, &c->resp);
    leave(c->e);
    if (rc) {
        shmrpc__msg_set(err, "%s", shmrpc__ctx_msg(&c->ctx));
        return rc;
    }
    return answer(c, resp, err);
}

/* --- streams ------------------------------------------------------------------------- */

/* Whether the server of e stopped listening. */
static bool gone(entry *e)
{
    pthread_mutex_lock(&e->mu);
    bool g = e->server == NULL;
    pthread_mutex_unlock(&e->mu);
    return g;
}

/* Waits on st's cv, with st->mu held, for at most SHMRPC__CHECK_NS and not past until. */
static void stream_nap(istream *st, int64_t until)
{
    int64_t now = shmrpc__now_ns(), at = now + SHMRPC__CHECK_NS;
    if (until < at) at = until > now ? until : now;
    struct timespec ts = {at / 1000000000, at % 1000000000};
    pthread_cond_timedwait(&st->cv, &st->mu, &ts);
}

/* Why the handler's stream cannot go on, or 0; with st->mu held. A cancel
 * (shmrpc_client_cancel) is read from the connection: its count is atomic, and what the
 * client saw at the open stays while the stream is open. */
static int stream_why(istream *st)
{
    if (st->stopped) return st->stopped;
    if (shmrpc__conn_cancelled(&st->c->base)) return SHMRPC_ECANCELLED;
    if (shmrpc__now_ns() >= st->deadline) return SHMRPC_ETIMEDOUT;
    return gone(st->c->e) ? SHMRPC_ECANCELLED : 0;
}

static int stream_wanted(void *arg)
{
    istream *st = arg;
    pthread_mutex_lock(&st->mu);
    int why = stream_why(st);
    pthread_mutex_unlock(&st->mu);
    return why;
}

/* Whether q, whose items are read from *head on, has room for an item of n bytes: when it
 * holds none, or they leave room for it within STREAM_ROOM. */
static bool room_for(const shmrpc_buf *q, size_t head, size_t n)
{
    size_t queued = q->len - head;
    return queued == 0 || queued + 4 + n <= STREAM_ROOM;
}

/* Queues an item of n bytes on q, with st->mu held: 0, or SHMRPC_ENOMEM, and q as it was
 * (no length without its bytes, which its reader would read past). */
static int queue_item(istream *st, shmrpc_buf *q, const void *item, size_t n)
{
    uint32_t len = (uint32_t)n;
    size_t was = q->len;
    if (shmrpc_buf_append(q, &len, 4) || shmrpc_buf_append(q, item, n)) {
        q->len = was;
        q->err = 0;
        return SHMRPC_ENOMEM;
    }
    pthread_cond_broadcast(&st->cv);
    return 0;
}

/* Takes the next item off q (one is there) into item, with st->mu held: 1, or item's error.
 * Then gives back the room of the items read: all of it once none is left, and otherwise
 * once they take a room's worth, by moving the rest down (at most a room's worth, moved
 * once per room read), so that a reader that stays behind but reads keeps the queue within
 * two rooms. */
static int take_item(istream *st, shmrpc_buf *q, size_t *head, shmrpc_buf *item, uint32_t *n)
{
    uint32_t len;
    memcpy(&len, q->data + *head, 4);
    int rc = shmrpc_buf_append(item, q->data + *head + 4, len) ? item->err : 1;
    *head += 4 + (size_t)len;
    *n = len;
    if (*head == q->len) {
        *head = q->len = 0;
    } else if (*head >= STREAM_ROOM) {
        memmove(q->data, q->data + *head, q->len - *head);
        q->len -= *head;
        *head = 0;
    }
    pthread_cond_broadcast(&st->cv);
    return rc;
}

/* The handler's status for why its stream cannot go on. */
static int stream_failed(shmrpc_ctx *ctx, int why)
{
    return shmrpc_ctx_error(ctx, why, "%s",
                            why == SHMRPC_ENOMEM       ? "out of memory for an item"
                            : why == SHMRPC_ETOOBIG    ? "an item of 4 GiB or more"
                            : why == SHMRPC_ETIMEDOUT  ? "the stream's deadline passed"
                            : why == SHMRPC_ECANCELLED ? "the client closed or cancelled the "
                                                         "stream, or the server stops"
                                                       : shmrpc_strerror(why));
}

/* shmrpc_ctx_send: queues the item once the items in transit leave room for it. */
static int stream_send(void *arg, const void *item, size_t n)
{
    istream *st = arg;
    pthread_mutex_lock(&st->mu);
    int why = n > UINT32_MAX ? SHMRPC_ETOOBIG : 0;
    while (why == 0 && (why = stream_why(st)) == 0 && !room_for(&st->items, st->head, n))
        stream_nap(st, st->deadline);
    if (why == 0) why = queue_item(st, &st->items, item, n);
    pthread_mutex_unlock(&st->mu);
    return why ? stream_failed(&st->c->ctx, why) : 0;
}

/* shmrpc_ctx_recv: the client's next item, once it came; 0 after its last. */
static int stream_read(void *arg, shmrpc_buf *item)
{
    istream *st = arg;
    shmrpc_ctx *ctx = &st->c->ctx;
    pthread_mutex_lock(&st->mu);
    int rc;
    while ((rc = stream_why(st)) == 0 && st->in_head == st->in.len && !st->in_done)
        stream_nap(st, st->deadline);
    uint32_t len = 0;
    if (rc == 0 && st->in_head < st->in.len) rc = take_item(st, &st->in, &st->in_head, item, &len);
    pthread_mutex_unlock(&st->mu);
    if (rc == SHMRPC_ETOOBIG)
        return shmrpc_ctx_error(ctx, rc,
                                "an item of %u bytes is larger than the server's maximum of %zu "
                                "bytes",
                                len, item->max);
    return rc < 0 ? stream_failed(ctx, rc) : rc;
}

static void *stream_run(void *arg)
{
    istream *st = arg;
    conn *c = st->c;
    /* (A way of 0, a method that answers once, is refused by dispatch as a stream.) */
    if (st->way != SHMRPC__STREAM_IN) {
        c->ctx.send = stream_send;
        c->ctx.send_arg = st;
    }
    if (st->way & SHMRPC__STREAM_IN) {
        c->ctx.recv = stream_read;
        c->ctx.recv_arg = st;
    }
    c->ctx.wanted = stream_wanted;
    c->ctx.wanted_arg = st;
    static const uint8_t none[1]; /* an empty request's pointer, which decoders add 0 to */
    int rc =
        shmrpc__dispatch(st->s, &c->ctx, st->sid,
                         shmrpc_bytes_of(st->req.len ? st->req.data : none, st->req.len), &c->resp);
    /* A stream answers with its items: what dispatch encoded after them (nil) is not sent;
     * one whose result is no stream answers as a call, from c->resp. */
    c->ctx.send = NULL;
    c->ctx.recv = NULL;
    pthread_mutex_lock(&st->mu);
    st->done = true;
    st->rc = rc;
    if (rc) shmrpc__msg_set(&st->msg, "%s", shmrpc__ctx_msg(&c->ctx));
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    leave(c->e);
    return NULL;
}

static void stream_free(istream *st)
{
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    shmrpc_buf_destroy(&st->req);
    shmrpc_buf_destroy(&st->items);
    shmrpc_buf_destroy(&st->in);
    shmrpc_buf_destroy(&st->msg);
    free(st);
}

static int inproc_stream_open(shmrpc__conn *base, uint32_t sid, int ways, shmrpc_bytes req,
                              int64_t timeout_ms, shmrpc_buf *err)
{
    (void)ways; /* the server's own table says: it runs in this process */
    conn *c = (conn *)base;
    istream *st = calloc(1, sizeof *st);
    if (!st) {
        shmrpc__msg_set(err, "out of memory");
        return SHMRPC_ENOMEM;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&st->mu, NULL);
    st->c = c;
    st->sid = sid;
    c->ctx.budget_ns = timeout_ms < 0                     ? -1
                       : timeout_ms < INT64_MAX / 1000000 ? timeout_ms * 1000000
                                                          : INT64_MAX;
    st->deadline = c->ctx.budget_ns < 0 || c->ctx.budget_ns > INT64_MAX / 2
                       ? INT64_MAX
                       : shmrpc__now_ns() + c->ctx.budget_ns;
    if (shmrpc_buf_append(&st->req, req.ptr, req.len)) {
        stream_free(st);
        shmrpc__msg_set(err, "out of memory");
        return SHMRPC_ENOMEM;
    }
    if (!(st->s = enter(c->e))) {
        stream_free(st);
        shmrpc__msg_set(err, "the server at inproc://%s went away", c->e->name);
        return SHMRPC_EUNAVAIL;
    }
    st->way = shmrpc__server_streams(st->s, sid);
    const char *why;
    int rc =
        base->meta.len ? shmrpc__ctx_set_meta(&c->ctx, base->meta.ptr, base->meta.len, &why) : 0;
    if (rc == 0 && pthread_create(&st->thread, NULL, stream_run, st) != 0) {
        why = "no thread for the stream's handler";
        rc = SHMRPC_ENOMEM;
    }
    if (rc) {
        leave(c->e);
        stream_free(st);
        shmrpc__msg_set(err, "%s", why);
        return rc;
    }
    c->st = st;
    return 0;
}

static int inproc_stream_recv(shmrpc__conn *base, shmrpc_buf *item, shmrpc_buf *err)
{
    conn *c = (conn *)base;
    istream *st = c->st;
    int rc = 0;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        if (shmrpc__conn_cancelled(base)) { /* before an item: a cancel ends a stream behind */
            rc = SHMRPC_ECANCELLED;
            shmrpc__msg_set(err, "the stream was cancelled (shmrpc_client_cancel)");
            break;
        }
        if (st->head < st->items.len) {
            uint32_t len;
            rc = take_item(st, &st->items, &st->head, item, &len);
            if (rc == SHMRPC_ETOOBIG)
                shmrpc__msg_set(err,
                                "an item of %u bytes is larger than the client's maximum of %zu "
                                "bytes",
                                len, item->max);
            else if (rc < 0)
                shmrpc__msg_set(err, "out of memory for an item of %u bytes", len);
            break;
        }
        if (st->done) {
            rc = st->rc;
            if (rc)
                shmrpc__msg_set(err, "%s", shmrpc__msg_get(&st->msg));
            else if (!(st->way & SHMRPC__STREAM_OUT))
                rc = answer(c, item, err);
            break;
        }
        if (shmrpc__now_ns() >= st->deadline) {
            rc = SHMRPC_ETIMEDOUT;
            shmrpc__msg_set(err, "the stream's deadline passed");
            break;
        }
        stream_nap(st, st->deadline);
    }
    /* Its handler's sends fail so: past the deadline as such, else as a stream its client
     * ended. */
    if (rc < 0 && !st->done) st->stopped = rc == SHMRPC_ETIMEDOUT ? rc : SHMRPC_ECANCELLED;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* The client's item for the handler, queued once the items in transit leave room. */
static int inproc_stream_send(shmrpc__conn *base, const void *item, size_t n, shmrpc_buf *err)
{
    conn *c = (conn *)base;
    istream *st = c->st;
    pthread_mutex_lock(&st->mu);
    int rc = n > UINT32_MAX ? SHMRPC_ETOOBIG : 0;
    while (rc == 0) {
        /* The client's own ends first: a handler told of them may have returned. */
        if (shmrpc__conn_cancelled(base))
            rc = SHMRPC_ECANCELLED;
        else if (shmrpc__now_ns() >= st->deadline)
            rc = SHMRPC_ETIMEDOUT;
        else if (st->done || st->stopped) /* the handler returned, or the client's end */
            rc = SHMRPC_ECLOSED;
        else if (gone(c->e))
            rc = SHMRPC_ECANCELLED;
        else if (room_for(&st->in, st->in_head, n))
            break;
        else
            stream_nap(st, st->deadline);
    }
    if (rc == 0) rc = queue_item(st, &st->in, item, n);
    /* Its handler's reads fail with the same (a stream that cannot go on). */
    if (rc < 0 && rc != SHMRPC_ECLOSED && !st->stopped) st->stopped = rc;
    bool returned = st->done;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    if (rc)
        shmrpc__msg_set(
            err, "%s",
            rc == SHMRPC_ECLOSED && !returned ? "the stream ended before the item was sent"
            : rc == SHMRPC_ECLOSED            ? "the handler returned before it read the item"
            : rc == SHMRPC_ETOOBIG            ? "an item of 4 GiB or more"
            : rc == SHMRPC_ENOMEM             ? "out of memory for an item"
            : rc == SHMRPC_ETIMEDOUT          ? "the stream's deadline passed"
            : shmrpc__conn_cancelled(base)    ? "the stream was cancelled (shmrpc_client_cancel)"
                                              : "the server stopped");
    return rc;
}

static void inproc_stream_done(shmrpc__conn *base)
{
    istream *st = ((conn *)base)->st;
    pthread_mutex_lock(&st->mu);
    st->in_done = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

static void inproc_stream_end(shmrpc__conn *base)
{
    conn *c = (conn *)base;
    istream *st = c->st;
    if (!st) return;
    pthread_mutex_lock(&st->mu);
    if (!st->stopped) st->stopped = SHMRPC_ECANCELLED;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);
    c->ctx.wanted = inproc_wanted;
    c->ctx.wanted_arg = c;
    stream_free(st);
    c->st = NULL;
}

static void inproc_close(shmrpc__conn *base)
{
    inproc_stream_end(base);
    conn *c = (conn *)base;
    shmrpc__ctx_destroy(&c->ctx);
    shmrpc_buf_destroy(&c->resp);
    entry_unref(c->e);
    free(c);
}

static const shmrpc__conn_ops conn_ops = {.call = inproc_call,
                                          .close = inproc_close,
                                          .stream_open = inproc_stream_open,
                                          .stream_recv = inproc_stream_recv,
                                          .stream_end = inproc_stream_end,
                                          .stream_send = inproc_stream_send,
                                          .stream_done = inproc_stream_done};

/* A reference to the entry serving name, with its server held for the caller as by
 * enter() (leave() when done); NULL when nobody serves it. */
static entry *lookup(const char *name, shmrpc_server **server)
{
    pthread_mutex_lock(&reg_mu);
    entry *e = find(name);
    if (e) {
        pthread_mutex_lock(&e->mu);
        /* Listed entries have their server: listener_close unlists before clearing. */
        *server = e->server;
        e->refs++;
        e->active++;
        pthread_mutex_unlock(&e->mu);
    }
    pthread_mutex_unlock(&reg_mu);
    return e;
}

static int inproc_connect(const char *where, const shmrpc_service_info *info,
                          const shmrpc__client_cfg *cfg, uint32_t *map, shmrpc__table *table,
                          shmrpc__conn **out, shmrpc_buf *err)
{
    (void)cfg; /* calls run on the caller's thread: nothing waits */
    int rc = check_name(where, err);
    if (rc) return rc;
    shmrpc_server *s = NULL;
    entry *e = lookup(where, &s);
    if (!e) {
        shmrpc__msg_set(err, "no server at inproc://%s", where);
        return SHMRPC_EUNAVAIL;
    }
    conn *c = NULL;
    rc = shmrpc__table_accept(info, shmrpc__server_info(s), map, table, err);
    if (rc) goto fail;
    rc = SHMRPC_ENOMEM;
    c = calloc(1, sizeof *c);
    if (!c) goto fail;
    if (shmrpc__ctx_init(&c->ctx, s)) goto fail;
    c->ctx.wanted = inproc_wanted;
    c->ctx.wanted_arg = c;
    shmrpc_buf_init(&c->resp);
    c->base.ops = &conn_ops;
    c->e = e;
    leave(e);
    *out = &c->base;
    return 0;
fail:
    if (rc == SHMRPC_ENOMEM) shmrpc__msg_set(err, "out of memory");
    free(c);
    leave(e);
    entry_unref(e);
    return rc;
}

const shmrpc__transport shmrpc__inproc_transport = {
    .scheme = "inproc",
    .connect = inproc_connect,
    .listen = inproc_listen,
};
