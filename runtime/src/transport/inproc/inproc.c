/* SPDX-License-Identifier: MIT */
/* The inproc:// transport: clients and servers in one process. A call runs the server's
 * dispatch on the caller's thread, through the same checks as a remote call, so it is
 * both a test bed for the runtime and a way to link a service in directly. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/meta.h"
#include "rpc/rpc.h"

#define NAME_MAX_LEN 255

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

typedef struct conn {
    shmrpc__conn base;
    entry *e;
    shmrpc_ctx ctx;  /* the server side of this connection */
    shmrpc_buf resp; /* where the server encodes, before the copy to the client */
} conn;

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

static int inproc_call(shmrpc__conn *base, uint32_t sid, shmrpc_bytes req, shmrpc_buf *resp,
                       int64_t timeout_ms, shmrpc_buf *err)
{
    /* The call runs on this thread and returns when the handler does: there is
     * nothing to wait for that a deadline could bound. The handler sees the deadline
     * (shmrpc_ctx_deadline), and the calls it makes inherit it. */
    conn *c = (conn *)base;
    c->ctx.budget_ns = timeout_ms < 0                       ? -1
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
    if (shmrpc_buf_append(resp, c->resp.data, c->resp.len)) {
        rc = resp->err;
        if (rc == SHMRPC_ETOOBIG)
            shmrpc__msg_set(err,
                            "a response of %zu bytes is larger than the client's maximum of %zu "
                            "bytes",
                            c->resp.len, resp->max);
        else
            shmrpc__msg_set(err, "%s", shmrpc_strerror(rc));
    }
    return rc;
}

static void inproc_close(shmrpc__conn *base)
{
    conn *c = (conn *)base;
    shmrpc__ctx_destroy(&c->ctx);
    shmrpc_buf_destroy(&c->resp);
    entry_unref(c->e);
    free(c);
}

static const shmrpc__conn_ops conn_ops = {.call = inproc_call, .close = inproc_close};

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
