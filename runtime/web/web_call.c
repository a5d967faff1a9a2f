/* The management page's calls into services (web_call.h): connect as shmrpcctl call does
 * (a client with an empty table learns the server's, a second one built from a copy of it
 * calls), keep the connected clients in a pool per address, and turn statuses into HTTP. */
#include "web_call.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/arena.h>
#include <shmrpc/client.h>
#include <shmrpc/status.h>

#include "ctl_call.h"

struct web_conn {
    shmrpc_client *c;
    shmrpc_arena *a; /* the server's method table, as the client was built from it */
    const shmrpc_service_info *info;
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
    shmrpc_client_free(k->c);
    shmrpc_arena_free(k->a);
    free(k);
}

void web_pool_destroy(web_pool *p)
{
    for (int i = 0; i < p->n_idle; i++)
        conn_free(p->idle[i]);
    p->n_idle = 0;
    pthread_mutex_destroy(&p->mu);
}

const char *web_status_name(int rc)
{
    static const char *const names[] = {
        "SHMRPC_OK",        "SHMRPC_EINVAL",  "SHMRPC_ENOMEM",   "SHMRPC_ETIMEDOUT",
        "SHMRPC_ENOENT",    "SHMRPC_EPROTO",  "SHMRPC_EHANDLER", "SHMRPC_ETOOBIG",
        "SHMRPC_EMISMATCH", "SHMRPC_ECLOSED", "SHMRPC_EUNAVAIL", "SHMRPC_EPEERDIED",
        "SHMRPC_EVERSION",  "SHMRPC_EBUSY",   "SHMRPC_EPERM",    "SHMRPC_EOWNERDEAD",
    };
    if (SHMRPC_IS_ESYS(rc)) return "SHMRPC_ESYS";
    if (rc > 0 || rc <= -(int)(sizeof names / sizeof names[0])) return "SHMRPC_EUNKNOWN";
    return names[-rc];
}

int web_http_status(int rc)
{
    switch (rc) {
    case 0:
        return 200;
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

static int connect_failed(web_err *e, const char *addr, int rc)
{
    const char *msg = shmrpc_errmsg();
    /* A bad address is the page's own fault; anything else means the service is not
     * reachable as it should be. */
    if (rc == SHMRPC_EINVAL) rc = SHMRPC_EUNAVAIL;
    return fail(e, rc, "%s: %s%s%s", addr, shmrpc_strerror(rc), *msg ? ": " : "", msg);
}

/* A new connection to addr: learn the table, then connect a client built from it. */
static web_conn *conn_new(const char *addr, web_err *e)
{
    static const shmrpc_service_info probe_info = {
        SHMRPC_SERVICE_MAGIC, SHMRPC_DESCRIPTOR_VERSION, "Probe", "probe", 0, 0, 0, NULL};
    web_conn *k = calloc(1, sizeof *k);
    shmrpc_client *probe = NULL;
    int rc;
    if (!k || !(k->a = shmrpc_arena_new(4096))) {
        fail(e, SHMRPC_ENOMEM, "out of memory");
        goto bad;
    }
    if ((rc = shmrpc_client_new(&probe, &probe_info, NULL)) != 0) {
        fail(e, rc, "cannot make a client: %s", shmrpc_strerror(rc));
        goto bad;
    }
    if ((rc = shmrpc_client_connect(probe, addr)) != 0) {
        connect_failed(e, addr, rc);
        goto bad;
    }
    k->info = ctl_info_copy(k->a, shmrpc_client_server_info(probe));
    shmrpc_client_free(probe);
    probe = NULL;
    if (!k->info) {
        fail(e, SHMRPC_ENOMEM, "out of memory");
        goto bad;
    }
    if ((rc = shmrpc_client_new(&k->c, k->info, NULL)) != 0 ||
        (rc = shmrpc_client_connect(k->c, addr)) != 0) {
        connect_failed(e, addr, rc);
        goto bad;
    }
    return k;
bad:
    shmrpc_client_free(probe);
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
    const shmrpc_method_info *m = NULL;
    for (uint32_t i = 0; i < k->info->n_methods; i++)
        if (strcmp(k->info->methods[i].name, method) == 0) m = &k->info->methods[i];
    if (!m) {
        char names[400] = "";
        size_t used = 0;
        for (uint32_t i = 0; i < k->info->n_methods && used + 70 < sizeof names; i++)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                                     k->info->methods[i].name);
        return fail(e, SHMRPC_ENOENT, "%s has no method '%.64s' (it has: %s)", k->info->name,
                    method, k->info->n_methods ? names : "none");
    }
    shmrpc_arena *a = shmrpc_arena_new(1024);
    if (!a) return fail(e, SHMRPC_ENOMEM, "out of memory");
    ctl_sig sig;
    char err[700];
    int status = -1;
    if (ctl_sig_parse(a, m->signature, &sig, err, sizeof err) != 0) {
        fail(e, SHMRPC_EPROTO, "%s: cannot read its signature: %s", method, err);
        goto done;
    }
    shmrpc_client_set_timeout(k->c, timeout_ms);
    shmrpc_buf *req = shmrpc_client_request(k->c);
    if (ctl_encode_args(&sig, args, n, req, err, sizeof err) != 0) {
        fail(e, SHMRPC_EINVAL, "%s: %s", method, err);
        goto done;
    }
    shmrpc_bytes resp;
    int rc = shmrpc_client_call(k->c, m->id, &resp);
    if (rc != 0) {
        const char *msg = shmrpc_errmsg();
        fail(e, rc, "%s: %s%s%s", method, shmrpc_strerror(rc), *msg ? ": " : "", msg);
        /* A handler's answer leaves the connection as good as it was; after anything
         * else (a timeout, a dead worker, a changed table) start afresh. */
        *keep = rc == SHMRPC_EINVAL || rc == SHMRPC_EHANDLER;
        goto done;
    }
    if (ctl_decode_result(&sig, resp.ptr, resp.len, out, err, sizeof err) != 0) {
        fail(e, SHMRPC_EPROTO, "%s: %s", method, err);
        goto done;
    }
    status = 0;
done:
    shmrpc_arena_free(a);
    return status;
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
