/* SPDX-License-Identifier: MIT */
/* What a request to the management page must be before it is served, and its body
 * (web_server.h; docs/web.md, "Limits"): headers that would be ambiguous are refused, its
 * Host must be a loopback name (or, on a non-loopback address, a numeric one) against DNS
 * rebinding, a POST carries the token generated at start, and a body is read exactly as
 * its Content-Length declares, within a deadline and a budget for large ones. */
#include "web_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <shmrpc/status.h>

/* The largest body a POST may carry. */
#define MAX_BODY ((size_t)8 << 20)
/* Bodies larger than SMALL_BODY are held against a budget of BODIES_BUDGET bytes in all,
 * reserved as their Content-Length is read: 128 peers declaring 8 MiB each would
 * otherwise make the page hold 1 GiB. Smaller ones always fit (8 MiB for 128 threads). */
#define SMALL_BODY ((size_t)64 << 10)
#define BODIES_BUDGET ((size_t)64 << 20)
/* How long a body may take to arrive, in all. */
#define BODY_TIMEOUT_MS 10000

/* Whether the Host header names this page as a browser names it: `localhost`, an IPv4
 * address, or an IPv6 one in brackets, then nothing or ':' and a port (1 to 65535, as digits),
 * and nothing else. The address must be a loopback one: a page of another site that a DNS
 * name rebound to 127.0.0.1 sends its own name, and is refused. A page on a non-loopback
 * address is reached by the machine's addresses, which the configured one (0.0.0.0, ::)
 * need not be: any address is fine there, being no DNS name that could be rebound. A name
 * is never cut short nor followed by anything: "127.0.0.1.evil.com", "[::1]evil" and
 * "127.0.0.1:80x" name no address of the page. */
bool web_host_ok(const web_server *s, const char *host)
{
    if (!host) return true; /* HTTP/1.0 GET without one (web_headers_ok): not a browser */
    char name[INET6_ADDRSTRLEN];
    const char *end; /* just past the address, at its port's ':' or the end */
    if (host[0] == '[') {
        end = strchr(host, ']');
        if (!end || (size_t)(end - host - 1) >= sizeof name) return false;
        memcpy(name, host + 1, (size_t)(end - host - 1));
        name[end - host - 1] = '\0';
        end++;
    } else {
        size_t n = strcspn(host, ":");
        if (n >= sizeof name) return false;
        memcpy(name, host, n);
        name[n] = '\0';
        end = host + n;
    }
    if (*end == ':') {
        size_t digits = strspn(end + 1, "0123456789");
        if (digits == 0 || digits > 5 || end[1 + digits] || atoi(end + 1) < 1 ||
            atoi(end + 1) > 65535)
            return false;
    } else if (*end) {
        return false;
    }
    struct in_addr a4;
    struct in6_addr a6;
    if (host[0] == '[') {
        if (inet_pton(AF_INET6, name, &a6) != 1) return false;
        return s->any_ip_host || IN6_IS_ADDR_LOOPBACK(&a6) ||
               (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    }
    if (strcasecmp(name, "localhost") == 0) return true;
    if (inet_pton(AF_INET, name, &a4) != 1) return false; /* a DNS name, or no name at all */
    return s->any_ip_host || (ntohl(a4.s_addr) >> 24) == 127;
}

/* How many header lines are named name. */
static int header_count(const struct mg_request_info *ri, const char *name)
{
    int n = 0;
    for (int i = 0; i < ri->num_headers; i++)
        n += strcasecmp(ri->http_headers[i].name, name) == 0;
    return n;
}

/* Refuses what the headers make ambiguous, before anything reads them: an answer's
 * status, or 0. civetweb reads the first of two same-named lines; keeps MG_MAX_HEADERS
 * lines and drops the rest unseen (a second Host could hide there); and lets a request
 * without a Host through. A Host is required but for an HTTP/1.0 GET or HEAD, which no
 * browser sends and which changes nothing (docs/web.md). */
int web_headers_ok(struct mg_connection *conn, bool read_only)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (ri->num_headers >= MG_MAX_HEADERS) {
        char msg[80];
        snprintf(msg, sizeof msg, "too many header lines (%d at most)", MG_MAX_HEADERS - 1);
        return web_reply_error(conn, 431, SHMRPC_EINVAL, msg);
    }
    static const char *const once[] = {"Host", "Content-Length", "Transfer-Encoding",
                                       "Content-Type", "X-Shmrpc-Token"};
    for (size_t i = 0; i < sizeof once / sizeof once[0]; i++)
        if (header_count(ri, once[i]) > 1) {
            char msg[80];
            snprintf(msg, sizeof msg, "more than one %s header", once[i]);
            return web_reply_error(conn, 400, SHMRPC_EINVAL, msg);
        }
    bool http10 = strcmp(ri->http_version, "1.0") == 0;
    if (!mg_get_header(conn, "Host") && !(http10 && read_only))
        return web_reply_error(conn, 400, SHMRPC_EINVAL, "the request has no Host header");
    return 0;
}

/* Compares the token in constant time. */
bool web_token_ok(const web_server *s, const char *given)
{
    if (!given || strlen(given) != strlen(s->w.token)) return false;
    unsigned char diff = 0;
    for (size_t i = 0; given[i]; i++)
        diff |= (unsigned char)(given[i] ^ s->w.token[i]);
    return diff == 0;
}

/* The body's length as its headers declare it, in *n: 0, or an HTTP status. A chunked
 * body is refused: its length is known only at its end, and the page reads no body it
 * cannot bound first (browsers send a Content-Length). No Content-Length is no body. */
int web_body_length(struct mg_connection *conn, size_t max, size_t *n)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    *n = 0;
    if (mg_get_header(conn, "Transfer-Encoding")) return 411;
    if (ri->content_length > (long long)max) return 413;
    if (ri->content_length > 0) *n = (size_t)ri->content_length;
    return 0;
}

/* Reads exactly n bytes of the body into p, within BODY_TIMEOUT_MS in all: 0, or 400
 * when fewer came (the peer closed, or stalled, or the deadline passed): a short body
 * is never taken for the whole. */
int web_read_exact(struct mg_connection *conn, const web_server *s, char *p, size_t n)
{
    size_t got = 0;
    int armed = web_guard_arm(s->guard, conn, BODY_TIMEOUT_MS, SHUT_RD);
    while (got < n) {
        size_t want = n - got > (1u << 20) ? (1u << 20) : n - got;
        int r = mg_read(conn, p + got, want);
        if (r <= 0) break;
        got += (size_t)r;
    }
    bool late = web_guard_disarm(s->guard, armed);
    return got == n && !late ? 0 : 400;
}

/* The message of a web_body_length or web_read_exact status. */
const char *web_body_why(int http, const char *too_large)
{
    return http == 411   ? "send the body with a Content-Length, not chunked"
           : http == 413 ? too_large
           : http == 503 ? "the page is reading 64 MiB of large bodies already: try again"
           : http == 400 ? "the body is shorter than its Content-Length, or took too long "
                           "to arrive"
                         : "out of memory";
}

int web_body_error(int http)
{
    return http == 411   ? SHMRPC_EINVAL
           : http == 413 ? SHMRPC_ETOOBIG
           : http == 503 ? SHMRPC_EBUSY
           : http == 400 ? SHMRPC_EINVAL
                         : SHMRPC_ENOMEM;
}

/* Frees a body of web_read_body's and gives its bytes back to the budget. */
void web_free_body(web_server *s, char *body, size_t len)
{
    free(body);
    if (len > SMALL_BODY) atomic_fetch_sub(&s->bodies, len);
}

/* The body, NUL-terminated, in *out (web_free_body it), all of it as Content-Length declares:
 * 0, or an HTTP status (503: the budget of large bodies is spent for now). */
int web_read_body(struct mg_connection *conn, web_server *s, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    size_t n;
    int bad = web_body_length(conn, MAX_BODY, &n);
    if (bad) return bad;
    if (n > SMALL_BODY && atomic_fetch_add(&s->bodies, n) + n > BODIES_BUDGET) {
        atomic_fetch_sub(&s->bodies, n);
        return 503;
    }
    char *p = malloc(n + 1);
    if (!p || (bad = web_read_exact(conn, s, p, n)) != 0) {
        web_free_body(s, p, n);
        return p ? bad : 500;
    }
    p[n] = '\0';
    *out = p;
    *len = n;
    return 0;
}
