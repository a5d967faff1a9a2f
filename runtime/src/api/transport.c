/* SPDX-License-Identifier: MIT */
/* Addresses: "SCHEME://WHERE", and the transport that serves each scheme, whose required
 * entries are checked before anything is called through them. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"

static const shmrpc__transport *const transports[] = {
    &shmrpc__inproc_transport,
    &shmrpc__shm_transport,
    &shmrpc__tcp_transport,
};

#define N_TRANSPORTS (sizeof transports / sizeof transports[0])

static int missing(shmrpc_buf *err, const char *scheme, const char *what, const char *entry)
{
    shmrpc__msg_set(err, "the %s transport is broken: %s has no '%s' entry",
                    scheme && *scheme ? scheme : "unnamed", what, entry);
    return SHMRPC_EINVAL;
}

int shmrpc__transport_check(const shmrpc__transport *t, shmrpc_buf *err)
{
    if (!t || !t->scheme || !*t->scheme) return missing(err, NULL, "its table", "scheme");
    if (!t->connect) return missing(err, t->scheme, "its table", "connect");
    if (!t->listen) return missing(err, t->scheme, "its table", "listen");
    return 0;
}

int shmrpc__conn_ops_check(const char *scheme, const shmrpc__conn_ops *ops, shmrpc_buf *err)
{
    if (!ops) return missing(err, scheme, "a connection", "ops");
    if (!ops->call) return missing(err, scheme, "a connection", "call");
    if (!ops->close) return missing(err, scheme, "a connection", "close");
    if (ops->start && (!ops->progress || !ops->abandon))
        return missing(err, scheme, "a connection that starts calls", "progress or abandon");
    if (ops->cancel && !ops->start)
        return missing(err, scheme, "a connection that cancels calls", "start");
    if ((ops->stream_open || ops->stream_recv || ops->stream_end) &&
        (!ops->stream_open || !ops->stream_recv || !ops->stream_end))
        return missing(err, scheme, "a connection that streams",
                       "stream_open, stream_recv or stream_end");
    return 0;
}

int shmrpc__listener_ops_check(const char *scheme, const shmrpc__listener_ops *ops, shmrpc_buf *err)
{
    if (!ops) return missing(err, scheme, "a listener", "ops");
    if (!ops->close) return missing(err, scheme, "a listener", "close");
    if (ops->serve && !ops->stop) return missing(err, scheme, "a listener that serves", "stop");
    if (ops->stop && !ops->serve) return missing(err, scheme, "a listener that stops", "serve");
    if (ops->poke && !ops->serve) return missing(err, scheme, "a listener that pokes", "serve");
    return 0;
}

/* The whole table, checked once at its first use: its first fault, kept for every later
 * use (the table is constant, so the answer is too). */
static pthread_once_t table_once = PTHREAD_ONCE_INIT;
static int table_rc;
static shmrpc_buf table_err;

static void check_table(void)
{
    shmrpc_buf_init(&table_err);
    for (size_t i = 0; i < N_TRANSPORTS && table_rc == 0; i++)
        table_rc = shmrpc__transport_check(transports[i], &table_err);
}

static int table_ok(shmrpc_buf *err)
{
    pthread_once(&table_once, check_table);
    if (table_rc) shmrpc__msg_set(err, "%s", shmrpc__msg_get(&table_err));
    return table_rc;
}

static bool scheme_char(char c, bool first)
{
    if (c >= 'a' && c <= 'z') return true;
    if (first) return false;
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

int shmrpc__transport_for(const char *addr, const shmrpc__transport **t, const char **where,
                          shmrpc_buf *err)
{
    int rc = table_ok(err);
    if (rc) return rc;
    if (!addr) {
        shmrpc__msg_set(err, "no address");
        return SHMRPC_EINVAL;
    }
    const char *sep = strstr(addr, "://");
    size_t n = sep ? (size_t)(sep - addr) : 0;
    bool ok = n > 0;
    for (size_t i = 0; ok && i < n; i++)
        ok = scheme_char(addr[i], i == 0);
    if (!ok) {
        shmrpc__msg_set(err, "malformed address '%s': expected SCHEME://WHERE, e.g. inproc://echo",
                        addr);
        return SHMRPC_EINVAL;
    }
    for (size_t i = 0; i < N_TRANSPORTS; i++) {
        const char *s = transports[i]->scheme;
        if (strlen(s) == n && memcmp(s, addr, n) == 0) {
            *t = transports[i];
            *where = sep + 3;
            return 0;
        }
    }
    shmrpc__msg_set(err, "unknown transport '%.*s' in address '%s'", (int)n, addr, addr);
    return SHMRPC_EINVAL;
}

/* Whether a tcp:// WHERE names its port: HOST:PORT, [V6]:PORT, or PORT alone (on
 * 127.0.0.1). A bracket not closed, or something after ']', is taken as written, so that
 * the parser's refusal quotes it (no port of the .svc appended to it). */
static bool tcp_has_port(const char *where)
{
    if (where[0] == '[') {
        const char *close = strchr(where, ']');
        return !close || close[1] != '\0';
    }
    if (strchr(where, ':')) return true;
    return where[0] && strspn(where, "0123456789") == strlen(where);
}

/* A client's address may leave out what the service's .svc says, as speedysvc's
 * connect(Server, 'shm://') does: shm:// alone is shm://NAME with the .svc's `name`, and
 * tcp://HOST without a port (tcp:// alone: 127.0.0.1) takes the .svc's `port` (each entry of
 * a list, tcp://H1,H2:P, takes it in client_endpoints.c). *where is then the whole WHERE, in buf.
 * 0, or SHMRPC_EINVAL when the .svc does not say either. */
static int fill_in(const shmrpc__transport *t, const shmrpc_service_info *info, const char **where,
                   char *buf, size_t cap, shmrpc_buf *err)
{
    const char *w = *where;
    int n = 0;
    if (strcmp(t->scheme, "shm") == 0 && w[0] == '\0') {
        if (!info || !info->svc_name || !info->svc_name[0]) {
            shmrpc__msg_set(err,
                            "shm:// names no service, and %s%s has no `name` to use: "
                            "write shm://NAME",
                            info && info->name ? "the .svc of " : "this client's service",
                            info && info->name ? info->name : "");
            return SHMRPC_EINVAL;
        }
        n = snprintf(buf, cap, "%s", info->svc_name);
    } else if (strcmp(t->scheme, "tcp") == 0 && !strchr(w, ',') && !tcp_has_port(w)) {
        if (!info || info->port == 0) {
            shmrpc__msg_set(err,
                            "tcp://%s names no port, and %s%s has no `port` to use: write "
                            "tcp://HOST:PORT",
                            w, info && info->name ? "the .svc of " : "this client's service",
                            info && info->name ? info->name : "");
            return SHMRPC_EINVAL;
        }
        n = snprintf(buf, cap, "%s:%u", w[0] ? w : "127.0.0.1", (unsigned)info->port);
    } else {
        return 0;
    }
    if (n < 0 || (size_t)n >= cap) {
        shmrpc__msg_set(err, "the address %s://%s is too long", t->scheme, w);
        return SHMRPC_EINVAL;
    }
    *where = buf;
    return 0;
}

int shmrpc__transport_connect(const char *addr, const shmrpc_service_info *info,
                              const shmrpc__client_cfg *cfg, uint32_t *map, shmrpc__table *table,
                              shmrpc__conn **out, shmrpc_buf *err)
{
    const shmrpc__transport *t;
    const char *where;
    char full[512];
    int rc = shmrpc__transport_for(addr, &t, &where, err);
    if (rc == 0) rc = fill_in(t, info, &where, full, sizeof full, err);
    if (rc == 0) rc = t->connect(where, info, cfg, map, table, out, err);
    if (rc) return rc;
    rc = shmrpc__conn_ops_check(t->scheme, (*out)->ops, err);
    if (rc) {
        if ((*out)->ops && (*out)->ops->close) (*out)->ops->close(*out);
        *out = NULL;
    }
    return rc;
}

int shmrpc__transport_listen(shmrpc_server *s, const char *addr, shmrpc__listener **out,
                             shmrpc_buf *err)
{
    const shmrpc__transport *t;
    const char *where;
    int rc = shmrpc__transport_for(addr, &t, &where, err);
    if (rc == 0) rc = t->listen(s, where, out, err);
    if (rc) return rc;
    rc = shmrpc__listener_ops_check(t->scheme, (*out)->ops, err);
    if (rc) {
        if ((*out)->ops && (*out)->ops->close) (*out)->ops->close(*out);
        *out = NULL;
    }
    return rc;
}

int shmrpc__transport_check_opts(const shmrpc_server_opts *o)
{
    shmrpc_buf ignored; /* shmrpc_server_new says only SHMRPC_EINVAL */
    shmrpc_buf_init(&ignored);
    int rc = table_ok(&ignored);
    shmrpc_buf_destroy(&ignored);
    for (size_t i = 0; i < N_TRANSPORTS && rc == 0; i++)
        rc = transports[i]->check_opts ? transports[i]->check_opts(o) : 0;
    return rc;
}
