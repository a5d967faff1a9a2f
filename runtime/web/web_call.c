/* SPDX-License-Identifier: MIT */
/* The management page's calls into services (web_call.h): connect as shmrpcctl call does
 * (shmrpc_dyn_connect: learn the server's table, call through a client built from a copy
 * of it), keep the connected handles in a pool per address, and turn statuses into HTTP. */
#include "web_call.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/client.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/status.h>

struct web_conn {
    shmrpc_dyn *d; /* connected; its table and the signatures it parsed */
};

void web_pool_init(web_pool *p, const char *addr)
{
    memset(p, 0, sizeof *p);
    snprintf(p->addr, sizeof p->addr, "%s", addr ? addr : "");
    pthread_mutex_init(&p->mu, NULL);
}

static void conn_free(web_conn *k)
{
    if (!k) return;
    shmrpc_dyn_free(k->d);
    free(k);
}

void web_pool_destroy(web_pool *p)
{
    for (int i = 0; i < p->n_idle; i++)
        conn_free(p->idle[i]);
    p->n_idle = 0;
    pthread_mutex_destroy(&p->mu);
}

int web_http_status(int rc)
{
    switch (rc) {
    /* GCOVR_EXCL_START: unreachable: only failed calls are asked (fail(), web_call.h) */
    case 0:
        return 200;
    /* GCOVR_EXCL_STOP */
    case SHMRPC_EINVAL:
        return 400; /* arguments that do not decode, or a handler's "invalid" */
    case SHMRPC_ENOENT:
        return 404; /* no such service or method */
    case SHMRPC_ETOOBIG:
        return 413; /* a request or result above the maximum */
    case SHMRPC_EHANDLER:
        return 500;        /* the handler failed */
    case SHMRPC_EPEERDIED: /* the worker died during the call */
    case SHMRPC_EPROTO:
    case SHMRPC_EMISMATCH:
    case SHMRPC_EVERSION:
    case SHMRPC_EPERM:
        return 502; /* the service broke the call, or refused us */
    case SHMRPC_EUNAVAIL:
    case SHMRPC_ECLOSED:
    case SHMRPC_EBUSY:
        return 503; /* nobody serves there now */
    case SHMRPC_ETIMEDOUT:
        return 504;
    default:
        return 500;
    }
}

static int fail(web_err *e, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(web_err *e, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->rc = rc;
    e->http = web_http_status(rc);
    return -1;
}

static int connect_failed(web_err *e, const char *addr, const char *msg, int rc)
{
    /* A bad address is the page's own fault; anything else means the service is not
     * reachable as it should be. */
    if (rc == SHMRPC_EINVAL) rc = SHMRPC_EUNAVAIL;
    return fail(e, rc, "%s: %s%s%s", addr, shmrpc_strerror(rc), *msg ? ": " : "", msg);
}

/* A new connection to addr, which learns the server's table as it connects. */
static web_conn *conn_new(const char *addr, web_err *e)
{
    web_conn *k = calloc(1, sizeof *k);
    int rc;
    if (!k) {
        fail(e, SHMRPC_ENOMEM, "out of memory");
        return NULL;
    }
    if ((rc = shmrpc_dyn_new(&k->d, NULL)) != 0) {
        fail(e, rc, "cannot make a client: %s", shmrpc_strerror(rc));
    } else if ((rc = shmrpc_dyn_connect(k->d, addr)) != 0) {
        connect_failed(e, addr, shmrpc_errmsg(), rc);
    } else {
        return k;
    }
    conn_free(k);
    return NULL;
}

static web_conn *take(web_pool *p, web_err *e)
{
    web_conn *k = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n_idle > 0) k = p->idle[--p->n_idle];
    pthread_mutex_unlock(&p->mu);
    return k ? k : conn_new(p->addr, e);
}

static void give_back(web_pool *p, web_conn *k)
{
    pthread_mutex_lock(&p->mu);
    if (p->n_idle < WEB_POOL_IDLE) {
        p->idle[p->n_idle++] = k;
        k = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    conn_free(k);
}

/* One try on connection k; *keep says whether k is fit to go back to the pool. */
static int call_on(web_conn *k, const char *method, const char *args, size_t n, int64_t timeout_ms,
                   shmrpc_buf *out, web_err *e, bool *keep)
{
    *keep = true;
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    int rc = shmrpc_dyn_method(k->d, method, &m, &sig);
    if (rc == SHMRPC_ENOENT) return fail(e, rc, "%s", shmrpc_errmsg());
    if (rc == SHMRPC_EPROTO)
        return fail(e, rc, "%s: cannot read its signature: %s", method, shmrpc_errmsg());
    if (rc != 0) return fail(e, rc, "%s: %s", method, shmrpc_errmsg());
    shmrpc_client *c = shmrpc_dyn_client(k->d);
    shmrpc_client_set_timeout(c, timeout_ms);
    if (shmrpc_dyn_encode_args(sig, args, n, shmrpc_client_request(c)) != 0)
        return fail(e, SHMRPC_EINVAL, "%s: %s", method, shmrpc_errmsg());
    shmrpc_bytes resp;
    if ((rc = shmrpc_client_call(c, m->id, &resp)) != 0) {
        const char *msg = shmrpc_errmsg();
        /* A handler's answer leaves the connection as good as it was; after anything
         * else (a timeout, a dead worker, a changed table) start afresh. */
        *keep = rc == SHMRPC_EINVAL || rc == SHMRPC_EHANDLER;
        return fail(e, rc, "%s: %s%s%s", method, shmrpc_strerror(rc), *msg ? ": " : "", msg);
    }
    if (shmrpc_dyn_decode_result(sig, resp.ptr, resp.len, out) != 0)
        return fail(e, SHMRPC_EPROTO, "%s: %s", method, shmrpc_errmsg());
    return 0;
}

int web_call(web_pool *p, const char *method, const char *args, size_t n, int64_t timeout_ms,
             shmrpc_buf *out, web_err *e)
{
    memset(e, 0, sizeof *e);
    if (!p->addr[0])
        return fail(e, SHMRPC_EUNAVAIL,
                    "the supervisor does not know where this service answers (its section has "
                    "no shm_name or tcp_port)");
    /* A pooled connection may be to a server that was replaced by one with another
     * table (EMISMATCH when it reconnects): then once more on a fresh one. */
    for (int attempt = 0; attempt < 2; attempt++) {
        web_conn *k = take(p, e);
        if (!k) return -1;
        size_t had = out->len;
        bool keep;
        int rc = call_on(k, method, args, n, timeout_ms, out, e, &keep);
        if (keep)
            give_back(p, k);
        else
            conn_free(k);
        if (rc == 0 || e->rc != SHMRPC_EMISMATCH || attempt == 1) return rc;
        out->len = had;
    }
    return -1;
}
