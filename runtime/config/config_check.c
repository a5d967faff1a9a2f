/* SPDX-License-Identifier: MIT */
/* service.ini's checks across keys: of one scope ([defaults], [web monitor], a service),
 * reported once where the problem was written, and across services. */
#include <stdio.h>
#include <string.h>

#include <shmrpc/tcp.h>

#include "config_internal.h"

/* Where a value that sc did not write itself came from, so that a message about a
 * service says where its other half is: "from [defaults] at L:C" or "the default", after
 * sep; "" for a value of sc's own. */
static const char *origin(loader *L, const value *v, const char *sep)
{
    if (v->own) return "";
    char buf[64];
    if (v->at)
        snprintf(buf, sizeof buf, "%sfrom [defaults] at %d:%d", sep, v->at->line, v->at->col);
    else
        snprintf(buf, sizeof buf, "%sthe default", sep);
    const char *s = shmrpc_arena_strndup(L->ini.arena, buf, strlen(buf));
    return s ? s : "";
}

/* A check over two keys belongs to the scope that wrote one of them: a problem made in
 * [defaults] is reported once, there, not again for every service. NULL: not ours. */
static const value *ours(const scope *sc, enum key a, enum key b)
{
    const value *va = &sc->v[a], *vb = &sc->v[b];
    if (va->bad || vb->bad) return NULL;
    if (va->own && va->at) return va;
    if (vb->own && vb->at) return vb;
    return NULL;
}

/* a must not be above b. */
static void check_order(loader *L, const scope *sc, enum key a, enum key b, const char *why)
{
    const value *at = ours(sc, a, b);
    const value *va = &sc->v[a], *vb = &sc->v[b];
    if (!at || !va->set || !vb->set || va->i <= vb->i) return;
    int64_t ua = key(a)->unit_ms ? key(a)->unit_ms : 1, ub = key(b)->unit_ms ? key(b)->unit_ms : 1;
    cfg_error_at(L, at->at, true, "%s (%lld%s) is above %s (%lld%s)%s", key(a)->name,
                 (long long)(va->i / ua), origin(L, va, ", "), key(b)->name,
                 (long long)(vb->i / ub), origin(L, vb, ", "), why);
}

void cfg_check_settings(loader *L, scope *sc)
{
    value *mx = &sc->v[K_MAX_PROC], *mn = &sc->v[K_MIN_PROC];
    if (!mx->set) { /* no one wrote it: the CPUs, or min_proc_num if that is more */
        *mx = (value){.set = true, .i = L->cpus > mn->i ? L->cpus : mn->i};
    }
    /* Alike for exec= services: one whose program follows a worker count is scaled as a
     * module's workers are (before issue 38 these two were not checked there). */
    check_order(L, sc, K_MIN_PROC, K_MAX_PROC, "");
    check_order(L, sc, K_DOWN_CPU, K_UP_CPU, ": workers would be added and removed in turn");
    check_order(L, sc, K_BACKOFF, K_BACKOFF_MAX, "");
    bool exec = sc->is_service && sc->v[K_EXEC].set && !sc->v[K_MODULE].set;

    const value *bind = &sc->v[K_TCP_BIND], *secret = &sc->v[K_SECRET_FILE];
    const value *at = ours(sc, K_TCP_BIND, K_SECRET_FILE);
    /* Mutual TLS authenticates clients as the secret does. */
    bool mutual = sc->v[K_TLS_CERT].s && sc->v[K_TLS_CA].s;
    if (!exec && at && bind->s && !bind->i && !secret->s && !mutual)
        cfg_error_at(L, at->at, true,
                     "tcp_bind %s%s%s is not a loopback address: clients on other hosts must prove "
                     "a shared secret, so set secret_file (a file of %d to %d bytes, mode 0600), "
                     "or tls_cert_file and tls_ca_file (mutual TLS)",
                     bind->s, origin(L, bind, " ("), bind->own ? "" : ")", SHMRPC_SECRET_MIN,
                     SHMRPC_SECRET_MAX);
    const value *tls_at = ours(sc, K_TLS_KEY, K_TLS_CA);
    if (tls_at && !sc->v[K_TLS_CERT].s && (sc->v[K_TLS_KEY].s || sc->v[K_TLS_CA].s))
        cfg_error_at(L, tls_at->at, true,
                     "%s without tls_cert_file: a TLS server needs its certificate",
                     sc->v[K_TLS_KEY].s ? "tls_key_file" : "tls_ca_file");
}

/* [web monitor]: its secret_file is its own or [defaults]', and a page that listens on
 * other hosts than this one requires it (docs/web.md). */
void cfg_check_web(loader *L)
{
    value *secret = &L->web.v[K_WEB_SECRET];
    if (!secret->set) {
        *secret = L->defaults.v[K_SECRET_FILE];
        secret->own = false;
    }
    const value *host = &L->web.v[K_WEB_HOST];
    if (host->bad || host->i || secret->bad || secret->s) return;
    cfg_error_at(L, host->at, true,
                 "the web monitor's host '%s' is not a loopback address: the page can stop and "
                 "start services, so from other hosts it requires the shared secret; set "
                 "secret_file in [web monitor] or [defaults] (a file of %d to %d bytes, mode "
                 "0600), or listen on 127.0.0.1, ::1 or localhost",
                 host->s, SHMRPC_SECRET_MIN, SHMRPC_SECRET_MAX);
}

/* --- sections ------------------------------------------------------------------------ */

/* Keys that mean nothing for an exec= service, whose program runs its own workers. */
static void check_exec_keys(loader *L, const scope *sc)
{
    for (int k = 0; k < K_COUNT; k++) {
        const value *v = &sc->v[k];
        if (!v->own || !v->at || key(k)->exec_too || k == K_MODULE) continue;
        if (k == K_MODULE_ARGS)
            cfg_error_at(L, v->at, false,
                         "module_args does not apply to an exec= service: write the program's "
                         "arguments in exec=");
        else
            cfg_error_at(L, v->at, false,
                         "%s does not apply to an exec= service: the program runs its own workers "
                         "and TCP server",
                         key(k)->name);
    }
}

void cfg_check_service(loader *L, scope *sc)
{
    const ini_section *s = sc->sec;
    value *mod = &sc->v[K_MODULE], *ex = &sc->v[K_EXEC];
    if (mod->set && ex->set) {
        const value *second = mod->at->line > ex->at->line ? mod : ex;
        const value *first = second == mod ? ex : mod;
        cfg_error_at(L, second->at, false,
                     "service [%s] has both module= and exec= (%s at %d:%d): keep one", s->name,
                     second == mod ? "exec" : "module", first->at->line, first->at->col);
        return;
    }
    if (!mod->set && !ex->set) {
        ini_error(&L->ini, s->line, s->col,
                  "service [%s] has neither module= (a shared module) nor exec= (a "
                  "server program)",
                  s->name);
        return;
    }
    if (ex->set) {
        check_exec_keys(L, sc);
        if (!ex->bad && sc->v[K_WAIT].i && !sc->v[K_SHM_NAME].set && !sc->v[K_TCP_PORT].set)
            cfg_error_at(L, ex->at, false,
                         "wait_until_completed%s%s needs to know where [%s] answers: set shm_name "
                         "or tcp_port to where the program serves, or wait_until_completed = false",
                         origin(L, &sc->v[K_WAIT], " ("), sc->v[K_WAIT].own ? "" : ")", s->name);
    }
}

/* Services must not share an address they name; the web monitor's port is taken too. */
void cfg_check_addresses(loader *L, scope *svcs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const value *name = &svcs[i].v[K_SHM_NAME], *port = &svcs[i].v[K_TCP_PORT];
        for (size_t j = 0; j < i; j++) {
            const value *n2 = &svcs[j].v[K_SHM_NAME], *p2 = &svcs[j].v[K_TCP_PORT];
            if (name->s && n2->s && strcmp(name->s, n2->s) == 0)
                cfg_error_at(L, name->at, true, "shm_name '%s' is also service [%s]'s (at %d:%d)",
                             name->s, svcs[j].sec->name, n2->at->line, n2->at->vcol);
            if (port->set && !port->bad && p2->set && !p2->bad && port->i == p2->i)
                cfg_error_at(L, port->at, true, "tcp_port %lld is also service [%s]'s (at %d:%d)",
                             (long long)port->i, svcs[j].sec->name, p2->at->line, p2->at->vcol);
        }
        const value *web = &L->web.v[K_WEB_PORT];
        if (port->set && !port->bad && !web->bad && port->i == web->i) {
            if (web->at)
                cfg_error_at(L, port->at, true,
                             "tcp_port %lld is the web monitor's port too (at %d:%d)",
                             (long long)port->i, web->at->line, web->at->vcol);
            else
                cfg_error_at(L, port->at, true,
                             "tcp_port %lld is the web monitor's default port: choose another, or "
                             "move the web monitor with [web monitor] port",
                             (long long)port->i);
        }
    }
}
