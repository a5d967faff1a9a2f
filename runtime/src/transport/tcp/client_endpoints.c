/* SPDX-License-Identifier: MIT */
/* The endpoints of a client's address, tcp://ENTRY[,ENTRY...] (docs/wire.md, "Endpoint
 * lists"): the list parsed, its DNS names resolved (never waited for by a call) and again
 * in the background, and an endpoint made or dropped for each address found. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "transport/tcp/tcp_int.h"
#include "core/wait.h"
#include "transport/tcp/tcp_client_int.h"

/* One round of resolving the DNS names of a list, asked of glibc's resolver without
 * waiting (getaddrinfo_a): a call never waits for DNS (it applies a round once done), and
 * a connect waits for one at most its connect timeout. It holds copies of what it asks, so
 * that a request that cannot be cancelled may outlive the client (see lookup_free). */
typedef struct tcp_lookup {
    int n;
    int entry[SHMRPC_TCP_MAX_ENDPOINTS];
    char host[SHMRPC_TCP_MAX_ENDPOINTS][256];
    char port[SHMRPC_TCP_MAX_ENDPOINTS][6];
    struct addrinfo hints;
    struct gaicb cb[SHMRPC_TCP_MAX_ENDPOINTS];
    struct gaicb *list[SHMRPC_TCP_MAX_ENDPOINTS];
} tcp_lookup;

/* --- endpoints ------------------------------------------------------------------------ */

void shmrpc__tcp_ep_free(tcp_conn *c)
{
    shmrpc__tcp_fail_inflight(c, SHMRPC_EPEERDIED,
                              "the endpoint was dropped (its name no longer resolves to it)");
    if (c->stream) c->stream->c = NULL; /* it ends with EPEERDIED */
    if (c->pid == getpid())
        shmrpc__tcp_conn_break(c);
    else if (c->fd >= 0) /* the parent's socket stays open (and its TLS unclosed) there */
        shmrpc__io_close(&c->io, false);
    shmrpc__tls_free(c->tls);
    shmrpc_buf_destroy(&c->out);
    shmrpc_buf_destroy(&c->in);
    shmrpc_arena_free(c->arena);
    shmrpc_arena_free(c->own_table.arena);
    free(c->map);
    free(c);
}

static tcp_conn *ep_new(tcp_pool *p, int entry, const struct sockaddr *sa, socklen_t len)
{
    tcp_conn *c = calloc(1, sizeof *c);
    if (!c) {
        p->ep_nomem = true;
        return NULL;
    }
    c->fd = -1;
    c->pid = p->pid;
    c->info = p->info;
    c->cfg = p->cfg;
    c->entry = entry;
    c->seen = true;
    shmrpc_buf_init(&c->out);
    shmrpc_buf_init(&c->in);
    c->map = calloc(p->info->n_methods ? p->info->n_methods : 1, sizeof *c->map);
    c->table = &c->own_table;
    c->own_table.arena = shmrpc_arena_new(0);
    c->arena = shmrpc_arena_new(0);
    if (!c->map || !c->own_table.arena || !c->arena) {
        shmrpc__tcp_ep_free(c);
        p->ep_nomem = true;
        return NULL;
    }
    shmrpc_arena_set_limit(c->arena, (size_t)SHMRPC__WIRE_MAX_HELLO * 8);
    memcpy(&c->addr, sa, len);
    c->addr_len = len;
    /* Named as written; an address found through a DNS name also by what it resolved to. */
    const tcp_entry *e = &p->entries[entry];
    bool v6 = strchr(e->host, ':') != NULL;
    if (e->numeric) {
        snprintf(c->where, sizeof c->where, v6 ? "[%s]:%s" : "%s:%s", e->host, e->port);
    } else {
        char ip[INET6_ADDRSTRLEN] = "?";
        const void *in = sa->sa_family == AF_INET
                             ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                             : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        inet_ntop(sa->sa_family, in, ip, sizeof ip);
        snprintf(c->where, sizeof c->where, "%s:%s (%s)", e->host, e->port, ip);
    }
    /* TLS per endpoint: its certificate must name the entry as written (unless the options
     * name the server), and whether it is checked depends on its address (loopback). */
    if (p->cfg->tcp.tls) {
        char name[ADDR_MAX];
        snprintf(name, sizeof name, v6 ? "[%s]:%s" : "%s:%s", e->host, e->port);
        shmrpc_buf err;
        shmrpc_buf_init(&err);
        int rc = shmrpc__tls_client_new(&p->cfg->tcp, name, shmrpc__tcp_is_loopback(&c->addr),
                                        &c->tls, &err);
        if (rc != 0 && p->tls_rc == 0) {
            p->tls_rc = rc;
            shmrpc__msg_set(&p->tls_why, "%s", shmrpc__msg_get(&err));
        }
        shmrpc_buf_destroy(&err);
        if (rc != 0) {
            shmrpc__tcp_ep_free(c);
            return NULL;
        }
    }
    return c;
}

static bool same_addr(const tcp_conn *c, const struct sockaddr *sa, socklen_t len)
{
    return c->addr_len == len && memcmp(&c->addr, sa, len) == 0;
}

static tcp_lookup *lookup_start(const tcp_pool *p)
{
    tcp_lookup *lk = calloc(1, sizeof *lk);
    if (!lk) return NULL;
    lk->hints = (struct addrinfo){
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    for (int e = 0; e < p->n_entries; e++) {
        if (p->entries[e].numeric) continue;
        int k = lk->n++;
        lk->entry[k] = e;
        memcpy(lk->host[k], p->entries[e].host, sizeof lk->host[k]);
        memcpy(lk->port[k], p->entries[e].port, sizeof lk->port[k]);
        lk->cb[k] = (struct gaicb){
            .ar_name = lk->host[k], .ar_service = lk->port[k], .ar_request = &lk->hints};
        lk->list[k] = &lk->cb[k];
    }
    /* A request it could not queue reads as done with no result (its gaicb is zeroed). */
    if (getaddrinfo_a(GAI_NOWAIT, lk->list, lk->n, NULL) != 0) {
        /* the requests' own statuses say which ones run */
    }
    return lk;
}

static bool lookup_done(tcp_lookup *lk)
{
    for (int k = 0; k < lk->n; k++)
        if (gai_error(&lk->cb[k]) == EAI_INPROGRESS) return false;
    return true;
}

/* Waits until the round is done or deadline passes, looking once a millisecond. Not with
 * gai_suspend: glibc's (2.36) waits for an absolute CLOCK_MONOTONIC time on a condition
 * variable of CLOCK_REALTIME, so it returns at once, again and again; and when a request
 * ends as it returns, it leaves its waiter (on its stack) with the request, which the
 * resolver's thread then writes through: a crash, seen with a name that does not resolve
 * (client_test, names_that_do_not_resolve). */
static void lookup_wait(tcp_lookup *lk, int64_t deadline)
{
    while (!lookup_done(lk)) {
        int64_t left = deadline - shmrpc__now_ns();
        if (left <= 0) return;
        struct timespec ts = {0, (long)(left < NS_PER_MS ? left : NS_PER_MS)};
        nanosleep(&ts, NULL);
    }
}

/* Frees a round and its results. A request still running is cancelled; one that cannot be
 * (a resolver thread has it) is left to finish on its own, and its round is not freed: a
 * leak of one round, for as long as the resolver's own timeouts, is the price of never
 * waiting for it. */
void shmrpc__tcp_lookup_free(tcp_lookup *lk)
{
    bool running = false;
    for (int k = 0; k < lk->n; k++)
        if (gai_error(&lk->cb[k]) == EAI_INPROGRESS && gai_cancel(&lk->cb[k]) == EAI_NOTCANCELED)
            running = true;
    if (running) return;
    for (int k = 0; k < lk->n; k++)
        if (lk->cb[k].ar_result) freeaddrinfo(lk->cb[k].ar_result);
    free(lk);
}

/* Adds an endpoint for each address of entry e in ai that it has not, and marks those it
 * has as seen. */
static void add_addrs(tcp_pool *p, int e, const struct addrinfo *ai)
{
    for (const struct addrinfo *a = ai; a; a = a->ai_next) {
        if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
        tcp_conn *found = NULL;
        for (int i = 0; i < p->n_eps && !found; i++)
            if (same_addr(p->eps[i], a->ai_addr, a->ai_addrlen)) found = p->eps[i];
        if (found) {
            found->seen = true;
        } else if (p->n_eps < SHMRPC_TCP_MAX_ENDPOINTS) {
            tcp_conn *c = ep_new(p, e, a->ai_addr, a->ai_addrlen);
            if (c) p->eps[p->n_eps++] = c;
        }
    }
}

/* Keeps one endpoint per address of every entry, up to SHMRPC_TCP_MAX_ENDPOINTS: numeric
 * entries are resolved here (never asking DNS), names from the round lk (NULL only when
 * the list has no name). Endpoints found again keep their connections, those no longer
 * found are dropped, and an entry that failed to resolve keeps what it had. 0 when at
 * least one endpoint is left; else SHMRPC_ENOENT (no such name) or SHMRPC_EUNAVAIL, with
 * the resolver's message. */
static int apply(tcp_pool *p, tcp_lookup *lk, shmrpc_buf *err)
{
    int rc = SHMRPC_EUNAVAIL;
    shmrpc__msg_clear(err);
    for (int i = 0; i < p->n_eps; i++)
        p->eps[i]->seen = false;
    for (int e = 0, k = 0; e < p->n_entries; e++) {
        const tcp_entry *en = &p->entries[e];
        struct addrinfo *ai = NULL;
        int g;
        if (en->numeric) {
            struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                     .ai_socktype = SOCK_STREAM,
                                     .ai_flags = AI_NUMERICSERV | AI_NUMERICHOST};
            g = getaddrinfo(en->host, en->port, &hints, &ai);
        } else { /* a name: then p->names, so lk is a round, whose k-th request is this one */
            g = gai_error(&lk->cb[k]);
            ai = g == 0 ? lk->cb[k].ar_result : NULL;
            k++;
        }
        if (g == 0 && ai) {
            add_addrs(p, e, ai);
        } else {
            for (int i = 0; i < p->n_eps; i++)
                if (p->eps[i]->entry == e) p->eps[i]->seen = true;
            if (g == EAI_INPROGRESS)
                shmrpc__msg_set(err, "cannot resolve '%s': no answer within the connect timeout",
                                en->host);
            else
                shmrpc__msg_set(err, "cannot resolve '%s': %s", en->host,
                                g == EAI_SYSTEM ? strerror(errno)
                                : g             ? gai_strerror(g)
                                                : "no address");
            if (g == EAI_NONAME) rc = SHMRPC_ENOENT;
        }
        if (en->numeric && ai) freeaddrinfo(ai);
    }
    for (int i = p->n_eps; i-- > 0;) {
        if (p->eps[i]->seen) continue;
        shmrpc__tcp_ep_free(p->eps[i]);
        memmove(&p->eps[i], &p->eps[i + 1], (size_t)(p->n_eps - i - 1) * sizeof p->eps[0]);
        p->n_eps--;
    }
    p->resolved_ns = shmrpc__now_ns();
    if (p->n_eps > 0) return 0;
    if (!shmrpc__msg_get(err)[0]) shmrpc__msg_set(err, "tcp://%s has no address", p->list);
    return rc;
}

/* The first resolution, at connect: DNS names within the connect timeout. */
int shmrpc__tcp_resolve(tcp_pool *p, shmrpc_buf *err)
{
    tcp_lookup *lk = p->names ? lookup_start(p) : NULL;
    if (p->names && !lk) return SHMRPC_ENOMEM;
    if (lk) lookup_wait(lk, shmrpc__now_ns() + p->cfg->tcp.connect_ns);
    int rc = apply(p, lk, err);
    if (lk) shmrpc__tcp_lookup_free(lk);
    if (p->ep_nomem) { /* not "no address": the list's endpoints were not all made */
        shmrpc__msg_set(err, "out of memory for the endpoints of tcp://%s", p->list);
        return SHMRPC_ENOMEM;
    }
    return rc;
}

/* Names are resolved again every resolve_interval_ms, and after an endpoint failed at most
 * once a second, in the background: a round is started by one call and applied by the
 * first call that finds it done (a failed resolution keeps the endpoints it had). */
void shmrpc__tcp_maybe_resolve(tcp_pool *p, int64_t now, shmrpc_buf *scratch)
{
    if (!p->names) return;
    if (p->lookup) {
        if (!lookup_done(p->lookup)) return;
        apply(p, p->lookup, scratch);
        shmrpc__tcp_lookup_free(p->lookup);
        p->lookup = NULL;
        return;
    }
    int64_t next = p->resolved_ns + p->cfg->tcp.resolve_ns;
    if (p->resolve_due && p->resolved_ns + NS_PER_S < next) next = p->resolved_ns + NS_PER_S;
    if (now < next) return;
    p->resolve_due = false;
    p->lookup = lookup_start(p);
    p->resolved_ns = now; /* a round that cannot start is tried again an interval later */
}

/* --- the address: tcp://ENTRY[,ENTRY...] ---------------------------------------------------- */

static int entry_error(shmrpc_buf *err, const char *list, int i, size_t n, const char *e,
                       const char *why)
{
    shmrpc__msg_set(err, "malformed address 'tcp://%s': entry %d ('%.*s') %s", list, i, (int)n, e,
                    why);
    return SHMRPC_EINVAL;
}

/* One entry, n bytes at e: HOST:PORT, [V6]:PORT, PORT alone (127.0.0.1), or HOST alone
 * when the .svc has a port. */
static int parse_entry(const char *list, int i, const char *e, size_t n,
                       const shmrpc_service_info *info, tcp_entry *out, shmrpc_buf *err)
{
    const char *host = e, *port = NULL;
    size_t hn = n, pn = 0;
    if (n == 0) {
        shmrpc__msg_set(err, "malformed address 'tcp://%s': entry %d is empty", list, i);
        return SHMRPC_EINVAL;
    }
    const char *colon = memchr(e, ':', n);
    if (e[0] == '[') {
        const char *close = memchr(e, ']', n);
        if (!close) return entry_error(err, list, i, n, e, "has no ']' after its IPv6 address");
        host = e + 1;
        hn = (size_t)(close - e - 1);
        size_t rest = n - (size_t)(close - e) - 1;
        if (rest && close[1] != ':')
            return entry_error(err, list, i, n, e, "has something other than :PORT after ']'");
        if (rest) port = close + 2, pn = rest - 1;
    } else if (colon) {
        if (memchr(colon + 1, ':', n - (size_t)(colon - e) - 1))
            return entry_error(err, list, i, n, e,
                               "is an IPv6 address without brackets: write [ADDRESS]:PORT");
        hn = (size_t)(colon - e);
        port = colon + 1;
        pn = n - hn - 1;
    } else if (strspn(e, "0123456789") >= n) { /* a port alone */
        hn = 0;
        port = e;
        pn = n;
    }
    char num[16];
    if (!port || pn == 0) {
        if (!info || info->port == 0)
            return entry_error(err, list, i, n, e,
                               "names no port, and the service's .svc has no `port`: write "
                               "HOST:PORT");
        snprintf(num, sizeof num, "%u", (unsigned)info->port);
        port = num;
        pn = strlen(num);
    }
    unsigned long v = 0;
    bool digits = pn <= 5;
    for (size_t k = 0; k < pn && digits; k++) {
        digits = port[k] >= '0' && port[k] <= '9';
        v = v * 10 + (unsigned long)(port[k] - '0');
    }
    if (!digits || v == 0 || v > 65535)
        return entry_error(err, list, i, n, e, "has a port that is not a number from 1 to 65535");
    if (hn >= sizeof out->host)
        return entry_error(err, list, i, n, e, "has a host name longer than 255 bytes");
    if (hn == 0) host = "127.0.0.1", hn = strlen(host);
    memcpy(out->host, host, hn);
    out->host[hn] = '\0';
    snprintf(out->port, sizeof out->port, "%lu", v);
    unsigned char buf[sizeof(struct in6_addr)];
    out->numeric =
        inet_pton(AF_INET, out->host, buf) == 1 || inet_pton(AF_INET6, out->host, buf) == 1;
    if (!out->numeric && e[0] == '[')
        return entry_error(err, list, i, n, e, "has brackets around something not an IPv6 address");
    return 0;
}

int shmrpc__tcp_parse_list(tcp_pool *p, const char *where, shmrpc_buf *err)
{
    int n = 1;
    for (const char *s = where; *s; s++)
        n += *s == ',';
    if (n > SHMRPC_TCP_MAX_ENDPOINTS) {
        shmrpc__msg_set(err,
                        "malformed address 'tcp://%s': %d entries, and a list may have at most %d",
                        where, n, SHMRPC_TCP_MAX_ENDPOINTS);
        return SHMRPC_EINVAL;
    }
    const char *e = where;
    for (int i = 0; i < n; i++) {
        const char *end = strchr(e, ',');
        size_t len = end ? (size_t)(end - e) : strlen(e);
        int rc = parse_entry(where, i + 1, e, len, p->info, &p->entries[i], err);
        if (rc) return rc;
        p->names |= !p->entries[i].numeric;
        e += len + 1;
    }
    p->n_entries = n;
    return 0;
}
