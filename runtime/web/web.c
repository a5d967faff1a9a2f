/* SPDX-License-Identifier: MIT */
/* The management page's HTTP side (web.h, docs/web.md): civetweb serves on threads
 * of its own (128), and one catch-all handler routes every request. Handlers never touch the
 * supervisor's state (the main loop's): what they need of it they ask the supervisor's
 * control service, as shmrpcctl does, through a pool of clients (web_call.c), and the
 * control service hands each request to the main loop (sup_control.c). The rest comes from
 * shared memory, /proc and files (web_view.c). POSTs carry a token generated at start;
 * every request's Host must be a loopback name (or, on a non-loopback address, a numeric
 * one), against DNS rebinding. With a secret_file, every request but the login page's
 * needs a session from POST /login (web_auth.c). What a request or a peer may hold is
 * bounded (docs/web.md, "Limits"): headers that would be ambiguous are refused, a body
 * is read exactly as its Content-Length declares, its JSON's depth is checked before any
 * parser recurses into it, and bodies and answers have deadlines (web_guard.c). */
#include "web.h"

#include <civetweb.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/codec.h>
#include <shmrpc/status.h>

#include "embedded.h"
#include "web_auth.h"
#include "web_call.h"
#include "web_files.h"
#include "web_guard.h"
#include "web_view.h"

/* The largest body a POST may carry. */
#define MAX_BODY ((size_t)8 << 20)
/* Bodies larger than SMALL_BODY are held against a budget of BODIES_BUDGET bytes in all,
 * reserved as their Content-Length is read: 128 peers declaring 8 MiB each would
 * otherwise make the page hold 1 GiB. Smaller ones always fit (8 MiB for 128 threads). */
#define SMALL_BODY ((size_t)64 << 10)
#define BODIES_BUDGET ((size_t)64 << 20)
/* civetweb's worker threads, each serving one connection at a time from its headers to
 * its close: idle and slow peers hold one each (docs/web.md, "Limits"). As many as the
 * guard has deadlines, since each thread arms one at a time. */
#define WEB_THREADS WEB_GUARD_SLOTS
/* How long civetweb waits for a request's headers, all of them, and for each byte of a
 * body or each write of an answer. */
#define REQUEST_TIMEOUT_MS 5000
/* How long a body may take to arrive, and an answer to be taken, in all. */
#define BODY_TIMEOUT_MS 10000
#define ANSWER_TIMEOUT_MS 10000
/* The gateway's deadline per call. */
#define GATEWAY_TIMEOUT_MS 5000
/* Log lines in GET /api/services/NAME unless ?lines= says, and at most. */
#define DEFAULT_LOG_LINES 100
#define MAX_LOG_LINES 1000
/* The largest body of POST /login, which anyone may send: a secret is 256 bytes. */
#define MAX_LOGIN_BODY 4096

/* The static assets (assets/), built in (cmake/embed.cmake). */
extern const shmrpc__embedded_file web_assets[];

struct web_server {
    struct mg_context *mg;
    web_ctx w;
    atomic_bool closing;
    atomic_bool stopped;            /* mg_stop returned: the poker may end */
    atomic_size_t bodies;           /* bytes of large bodies being read or used */
    struct sockaddr_storage listen; /* where it listens, for the poker */
    socklen_t listen_len;
    web_auth *auth;   /* the secret and the sessions; NULL: no secret_file, no login */
    bool any_ip_host; /* listens on a non-loopback address: a numeric Host is fine too */
    char cookie[32];  /* the session cookie's name, shmrpc_session_PORT */
    web_guard *guard; /* deadlines on bodies and answers; NULL: none (no thread for it) */
};

/* --- responses ------------------------------------------------------------------------ */

/* extra: more header lines, each ending in \r\n, or NULL. */
static int reply_with(struct mg_connection *conn, int status, const char *extra, const char *ctype,
                      const void *body, size_t n)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const web_server *s = mg_get_user_data(mg_get_context(conn));
    bool head = strcmp(ri->request_method, "HEAD") == 0;
    /* A peer that reads its answer a byte at a time gives up its thread in the end, and
     * so does one that goes on sending a body the page did not read: civetweb reads what
     * Content-Length declared of it after the handler, before it closes. The deadline
     * lasts until then (on_close); a second answer's replaces the first's. */
    intptr_t had = (intptr_t)mg_get_user_connection_data(conn);
    if (had > 0) web_guard_disarm(s->guard, (int)(had - 1));
    int armed = web_guard_arm(s->guard, conn, ANSWER_TIMEOUT_MS, SHUT_RDWR);
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\n"
              "Content-Type: %s\r\n"
              "Content-Length: %zu\r\n"
              "Cache-Control: no-store\r\n"
              "X-Content-Type-Options: nosniff\r\n"
              "X-Frame-Options: DENY\r\n"
              "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'\r\n"
              "Referrer-Policy: no-referrer\r\n"
              "%s"
              "Connection: close\r\n\r\n",
              status, mg_get_response_code_text(conn, status), ctype, n, extra ? extra : "");
    if (!head && n) mg_write(conn, body, n);
    mg_set_user_connection_data(conn, (void *)(intptr_t)(armed + 1)); /* 0: none */
    return status;
}

static int reply(struct mg_connection *conn, int status, const char *ctype, const void *body,
                 size_t n)
{
    return reply_with(conn, status, NULL, ctype, body, n);
}

static int reply_json(struct mg_connection *conn, int status, const shmrpc_buf *b)
{
    return reply(conn, status, "application/json; charset=utf-8", b->data, b->len);
}

/* {"error": {"status": "SHMRPC_E...", "code": rc, "message": "..."}}, with extra header
 * lines as reply_with takes them. */
static int reply_error_with(struct mg_connection *conn, int http, const char *extra, int rc,
                            const char *msg)
{
    json_t *o = json_pack("{s:{s:s,s:i,s:s}}", "error", "status", shmrpc_status_name(rc), "code",
                          rc, "message", msg);
    if (!o)
        o = json_pack("{s:{s:s,s:i,s:s}}", "error", "status", shmrpc_status_name(rc), "code", rc,
                      "message", "(a message that is not UTF-8)");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    int r = reply_with(conn, http, extra, "application/json; charset=utf-8", text ? text : "{}",
                       text ? strlen(text) : 2);
    free(text);
    return r;
}

static int reply_error(struct mg_connection *conn, int http, int rc, const char *msg)
{
    return reply_error_with(conn, http, NULL, rc, msg);
}

static int reply_err(struct mg_connection *conn, const web_err *e)
{
    return reply_error(conn, e->http, e->rc, e->msg);
}

/* --- requests ------------------------------------------------------------------------- */

#define JS "text/javascript; charset=utf-8"
#define CSS "text/css; charset=utf-8"

/* The scripts, style sheets and icon, served as they are: the path's one segment, the
 * file's name in assets/ or third_party/uplot/, its type. */
static const struct {
    const char *path, *file, *type;
} static_files[] = {
    {"app.js", "app.js", JS},
    {"favicon.svg", "favicon.svg", "image/svg+xml"},
    {"format.js", "format.js", JS},
    {"login.js", "login.js", JS},
    {"service.js", "service.js", JS},
    {"style.css", "style.css", CSS},
    {"uplot.min.js", "uPlot.iife.min.js", JS},
    {"uplot.min.css", "uPlot.min.css", CSS},
};

/* Whether the Host header names this page as a browser names it: `localhost`, an IPv4
 * address, or an IPv6 one in brackets, then nothing or ':' and a port (1 to 65535, as digits),
 * and nothing else. The address must be a loopback one: a page of another site that a DNS
 * name rebound to 127.0.0.1 sends its own name, and is refused. A page on a non-loopback
 * address is reached by the machine's addresses, which the configured one (0.0.0.0, ::)
 * need not be: any address is fine there, being no DNS name that could be rebound. A name
 * is never cut short nor followed by anything: "127.0.0.1.evil.com", "[::1]evil" and
 * "127.0.0.1:80x" name no address of the page. */
static bool host_ok(const web_server *s, const char *host)
{
    if (!host) return true; /* HTTP/1.0 GET without one (headers_ok): not a browser */
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
static int headers_ok(struct mg_connection *conn, bool read_only)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (ri->num_headers >= MG_MAX_HEADERS) {
        char msg[80];
        snprintf(msg, sizeof msg, "too many header lines (%d at most)", MG_MAX_HEADERS - 1);
        return reply_error(conn, 431, SHMRPC_EINVAL, msg);
    }
    static const char *const once[] = {"Host", "Content-Length", "Transfer-Encoding",
                                       "Content-Type", "X-Shmrpc-Token"};
    for (size_t i = 0; i < sizeof once / sizeof once[0]; i++)
        if (header_count(ri, once[i]) > 1) {
            char msg[80];
            snprintf(msg, sizeof msg, "more than one %s header", once[i]);
            return reply_error(conn, 400, SHMRPC_EINVAL, msg);
        }
    bool http10 = strcmp(ri->http_version, "1.0") == 0;
    if (!mg_get_header(conn, "Host") && !(http10 && read_only))
        return reply_error(conn, 400, SHMRPC_EINVAL, "the request has no Host header");
    return 0;
}

/* Compares the token in constant time. */
static bool token_ok(const web_server *s, const char *given)
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
static int body_length(struct mg_connection *conn, size_t max, size_t *n)
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
static int read_exact(struct mg_connection *conn, const web_server *s, char *p, size_t n)
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

/* The message of a body_length or read_exact status. */
static const char *body_why(int http, const char *too_large)
{
    return http == 411   ? "send the body with a Content-Length, not chunked"
           : http == 413 ? too_large
           : http == 503 ? "the page is reading 64 MiB of large bodies already: try again"
           : http == 400 ? "the body is shorter than its Content-Length, or took too long "
                           "to arrive"
                         : "out of memory";
}

static int body_error(int http)
{
    return http == 411   ? SHMRPC_EINVAL
           : http == 413 ? SHMRPC_ETOOBIG
           : http == 503 ? SHMRPC_EBUSY
           : http == 400 ? SHMRPC_EINVAL
                         : SHMRPC_ENOMEM;
}

/* Frees a body of read_body's and gives its bytes back to the budget. */
static void free_body(web_server *s, char *body, size_t len)
{
    free(body);
    if (len > SMALL_BODY) atomic_fetch_sub(&s->bodies, len);
}

/* The body, NUL-terminated, in *out (free_body it), all of it as Content-Length declares:
 * 0, or an HTTP status (503: the budget of large bodies is spent for now). */
static int read_body(struct mg_connection *conn, web_server *s, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    size_t n;
    int bad = body_length(conn, MAX_BODY, &n);
    if (bad) return bad;
    if (n > SMALL_BODY && atomic_fetch_add(&s->bodies, n) + n > BODIES_BUDGET) {
        atomic_fetch_sub(&s->bodies, n);
        return 503;
    }
    char *p = malloc(n + 1);
    if (!p || (bad = read_exact(conn, s, p, n)) != 0) {
        free_body(s, p, n);
        return p ? bad : 500;
    }
    p[n] = '\0';
    *out = p;
    *len = n;
    return 0;
}

/* The index of service name, or -1. */
static long find_service(const web_server *s, const char *name)
{
    for (size_t i = 0; i < s->w.cfg->n_services; i++)
        if (strcmp(s->w.cfg->services[i].name, name) == 0) return (long)i;
    return -1;
}

static int no_service(struct mg_connection *conn, const web_server *s, const char *name)
{
    char msg[600];
    int used = snprintf(msg, sizeof msg, "no service '%.64s'; the services are: ", name);
    for (size_t i = 0; i < s->w.cfg->n_services && used > 0 && (size_t)used < sizeof msg; i++)
        used += snprintf(msg + used, sizeof msg - (size_t)used, "%s%s", i ? ", " : "",
                         s->w.cfg->services[i].name);
    return reply_error(conn, 404, SHMRPC_ENOENT, msg);
}

/* An HTML page of assets/ with the token at {{TOKEN}} (for its script to send with POSTs)
 * and the service's name, escaped, at {{NAME}}. */
static int get_page(struct mg_connection *conn, const web_server *s, const char *file,
                    const char *name)
{
    const char *text = shmrpc__embedded_text(web_assets, file);
    if (!text) return reply_error(conn, 500, SHMRPC_ENOENT, "a page is missing from the program");
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    for (const char *p = text, *at; *p; p = at) {
        at = strstr(p, "{{");
        if (!at) at = p + strlen(p);
        shmrpc_buf_append(&b, p, (size_t)(at - p));
        if (strncmp(at, "{{TOKEN}}", 9) == 0) {
            shmrpc_buf_append(&b, s->w.token, strlen(s->w.token));
            at += 9;
        } else if (strncmp(at, "{{NAME}}", 8) == 0) {
            /* Section names are letters, digits, '_', '-' and '.'; escaped all the same. */
            for (const char *c = name ? name : ""; *c; c++) {
                const char *esc = *c == '&'    ? "&amp;"
                                  : *c == '<'  ? "&lt;"
                                  : *c == '>'  ? "&gt;"
                                  : *c == '"'  ? "&quot;"
                                  : *c == '\'' ? "&#39;"
                                               : NULL;
                shmrpc_buf_append(&b, esc ? esc : c, esc ? strlen(esc) : 1);
            }
            at += 8;
        } else if (*at) {
            shmrpc_buf_append(&b, at, 1);
            at++;
        }
    }
    int r = b.err ? reply_error(conn, 500, SHMRPC_ENOMEM, "out of memory")
                  : reply(conn, 200, "text/html; charset=utf-8", b.data, b.len);
    shmrpc_buf_destroy(&b);
    return r;
}

/* The integer ?name= of the query: 0 when absent, 1 when read into *v (clamped to
 * lo..hi), -1 when it is not an integer. */
static int query_int(const struct mg_request_info *ri, const char *name, long long lo, long long hi,
                     long long *v)
{
    char text[32];
    if (!ri->query_string) return 0;
    int n = mg_get_var(ri->query_string, strlen(ri->query_string), name, text, sizeof text);
    if (n == -1) return 0;
    if (n < 0) return -1;
    char *end;
    long long x = strtoll(text, &end, 10); /* past long long: its bound, then clamped */
    if (end == text || *end) return -1;
    *v = x < lo ? lo : x > hi ? hi : x;
    return 1;
}

/* The ?name= of the query as an unsigned 64-bit decimal (an inode, which may pass
 * 2^63): 0 when absent, 1 when read into *v, -1 when it is not such a number. */
static int query_u64(const struct mg_request_info *ri, const char *name, uint64_t *v)
{
    char text[32];
    if (!ri->query_string) return 0;
    int n = mg_get_var(ri->query_string, strlen(ri->query_string), name, text, sizeof text);
    if (n == -1) return 0;
    if (n <= 0 || strspn(text, "0123456789") != (size_t)n) return -1; /* no sign, no blank */
    char *end;
    errno = 0;
    unsigned long long x = strtoull(text, &end, 10);
    if (errno == ERANGE || *end) return -1;
    *v = (uint64_t)x;
    return 1;
}

static int bad_query(struct mg_connection *conn, const char *name)
{
    char msg[96];
    snprintf(msg, sizeof msg, "?%s= takes an integer", name);
    return reply_error(conn, 400, SHMRPC_EINVAL, msg);
}

/* GET /api/services/NAME/series[?since=T_MS][&max=N] */
static int get_series(struct mg_connection *conn, const web_server *s, size_t i)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    long long since = INT64_MIN, max = WEB_SERIES_DEFAULT;
    if (query_int(ri, "since", INT64_MIN, INT64_MAX, &since) < 0) return bad_query(conn, "since");
    if (query_int(ri, "max", 1, WEB_SERIES_MAX, &max) < 0) return bad_query(conn, "max");
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    web_err e;
    int r = web_series(&s->w.cfg->services[i], since, (int)max, &b, &e) == 0
                ? reply_json(conn, 200, &b)
                : reply_err(conn, &e);
    shmrpc_buf_destroy(&b);
    return r;
}

/* GET /api/services/NAME/log[?after=OFFSET[&inode=INO]][&max_bytes=N] */
static int get_log(struct mg_connection *conn, const web_server *s, size_t i)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    long long after = 0, max_bytes = (long long)WEB_LOG_DEFAULT_BYTES;
    uint64_t inode = 0;
    int follow = query_int(ri, "after", 0, INT64_MAX, &after);
    if (follow < 0) return bad_query(conn, "after");
    if (query_u64(ri, "inode", &inode) < 0)
        return reply_error(conn, 400, SHMRPC_EINVAL,
                           "?inode= takes the decimal digits of an inode number");
    if (query_int(ri, "max_bytes", 1, (long long)WEB_LOG_MAX_BYTES, &max_bytes) < 0)
        return bad_query(conn, "max_bytes");
    web_log_req q = {
        .follow = follow == 1, .after = after, .inode = inode, .max_bytes = (size_t)max_bytes};
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    web_err e;
    int r = web_log(&s->w.cfg->services[i], &q, &b, &e) == 0 ? reply_json(conn, 200, &b)
                                                             : reply_err(conn, &e);
    shmrpc_buf_destroy(&b);
    return r;
}

/* --- the secret: login, sessions, logout ---------------------------------------------- */

/* The live session the request's cookie names, copied to id; false when there is none
 * (each cookie of that name is tried: a browser may hold a stale one beside it). */
static bool session_of(const web_server *s, struct mg_connection *conn,
                       char id[WEB_AUTH_ID_LEN + 1])
{
    const char *p = mg_get_header(conn, "Cookie");
    size_t n = strlen(s->cookie);
    int64_t now = web_auth_now_ms();
    while (p && *p) {
        p += strspn(p, " \t;");
        size_t len = strcspn(p, ";"), v = len > n ? len - n - 1 : 0;
        while (v && (p[n + v] == ' ' || p[n + v] == '\t'))
            v--;
        if (len > n && p[n] == '=' && strncmp(p, s->cookie, n) == 0 && v == WEB_AUTH_ID_LEN) {
            memcpy(id, p + n + 1, v);
            id[v] = '\0';
            if (web_auth_session_ok(s->auth, id, now)) return true;
        }
        p += len;
    }
    return false;
}

/* 303 to the login page, which returns to uri (percent-encoded in ?next=) after it. */
static int to_login(struct mg_connection *conn, const char *uri)
{
    char loc[3200] = "Location: /login";
    size_t k = strlen(loc);
    if (strcmp(uri, "/") != 0) {
        memcpy(loc + k, "?next=", 6);
        k += 6;
        for (const unsigned char *c = (const unsigned char *)uri; *c && k + 8 < sizeof loc; c++) {
            bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                         (*c >= '0' && *c <= '9') || strchr("/-._~", *c);
            if (plain)
                loc[k++] = (char)*c;
            else
                k += (size_t)snprintf(loc + k, sizeof loc - k, "%%%02X", *c);
        }
    }
    memcpy(loc + k, "\r\n", 3);
    static const char text[] = "this page requires its shared secret: log in at /login\n";
    return reply_with(conn, 303, loc, "text/plain; charset=utf-8", text, sizeof text - 1);
}

/* POST /login: the secret as a form (secret=...) or as JSON ({"secret": "..."}); a
 * session cookie and 303 to /, or 403 (wrong) or 429 (not compared: its peer is past its
 * limit on wrong secrets). */
static int post_login(struct mg_connection *conn, web_server *s)
{
    char body[MAX_LOGIN_BODY + 1], given[MAX_LOGIN_BODY + 1];
    size_t len = 0, n = 0;
    int bad = body_length(conn, MAX_LOGIN_BODY, &len);
    if (!bad) bad = read_exact(conn, s, body, len);
    if (bad) {
        explicit_bzero(body, sizeof body);
        return reply_error(conn, bad, body_error(bad),
                           body_why(bad, "the body is too large for a secret"));
    }
    body[len] = '\0';
    bool found = false;
    const char *ctype = mg_get_header(conn, "Content-Type");
    if (ctype && strncasecmp(ctype, "application/json", 16) == 0) {
        /* Not jansson, which would leave copies of the secret in memory it frees. */
        found = web_auth_json_secret(body, len, given, sizeof given, &n) == 0;
    } else {
        /* A form: '+' and %XX decoded; a secret that is not text goes this way. */
        int r = mg_get_var2(body, len, "secret", given, sizeof given, 0);
        if (r >= 0) n = (size_t)r, found = true;
    }
    explicit_bzero(body, sizeof body);
    /* One trailing newline is not part of it, as in the file (curl's secret@FILE). */
    if (found && n && given[n - 1] == '\n') n--;
    char id[WEB_AUTH_ID_LEN + 1];
    int64_t wait_ms = 0;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    web_login_from from = {ri->remote_addr, -1};
    if (found) from.uid = web_auth_peer_uid(ri->remote_addr, ri->remote_port, ri->server_port);
    int rc = found ? web_auth_login(s->auth, given, n, from, web_auth_now_ms(), id, &wait_ms) : 0;
    explicit_bzero(given, sizeof given);
    if (!found)
        return reply_error(conn, 400, SHMRPC_EINVAL,
                           "POST /login takes the secret as a form (secret=...) or as JSON "
                           "({\"secret\": \"...\"})");
    _Static_assert(WEB_AUTH_WRONG_EVERY_MS == 1000, "the message says one a second");
    if (rc == SHMRPC_EBUSY) {
        long long secs = (wait_ms + 999) / 1000;
        char retry[48], msg[160];
        snprintf(retry, sizeof retry, "Retry-After: %lld\r\n", secs);
        snprintf(msg, sizeof msg,
                 "too many wrong secrets from this address (%d in a row, then one a second): "
                 "not compared; try again in %lld s",
                 WEB_AUTH_WRONG_BURST, secs);
        return reply_error_with(conn, 429, retry, SHMRPC_EBUSY, msg);
    }
    if (rc == SHMRPC_EPERM) return reply_error(conn, 403, SHMRPC_EPERM, "wrong secret");
    if (rc) return reply_error(conn, 500, rc, "no random bytes for a session");
    char extra[256];
    snprintf(extra, sizeof extra,
             "Set-Cookie: %s=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%lld\r\n"
             "Location: /\r\n",
             s->cookie, id, (long long)(WEB_AUTH_LIFETIME_MS / 1000));
    explicit_bzero(id, sizeof id);
    static const char text[] = "logged in\n";
    int r = reply_with(conn, 303, extra, "text/plain; charset=utf-8", text, sizeof text - 1);
    explicit_bzero(extra, sizeof extra);
    return r;
}

/* POST /logout (with the token): ends the session, clears the cookie, 303 to /login. */
static int post_logout(struct mg_connection *conn, web_server *s)
{
    char id[WEB_AUTH_ID_LEN + 1], extra[160];
    if (session_of(s, conn, id)) web_auth_logout(s->auth, id);
    snprintf(extra, sizeof extra,
             "Set-Cookie: %s=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0\r\n"
             "Location: /login\r\n",
             s->cookie);
    static const char text[] = "logged out\n";
    return reply_with(conn, 303, extra, "text/plain; charset=utf-8", text, sizeof text - 1);
}

/* With a secret, the login page and what it needs are anyone's, and everything else
 * needs a session: an HTML page without one goes to /login, the rest get 401. The
 * answer's status when this answered, else 0. */
static int gate(struct mg_connection *conn, web_server *s, const char *uri, char **seg, int n,
                bool get, bool post)
{
    bool login = n == 1 && strcmp(seg[0], "login") == 0;
    if (login && get) return get_page(conn, s, "login.html", NULL);
    if (login && post) return post_login(conn, s);
    if (get && n == 1 &&
        (strcmp(seg[0], "login.js") == 0 || strcmp(seg[0], "style.css") == 0 ||
         strcmp(seg[0], "favicon.svg") == 0))
        return 0;
    char id[WEB_AUTH_ID_LEN + 1];
    if (session_of(s, conn, id)) return 0;
    bool html = strcmp(uri, "/") == 0 || strcmp(uri, "/index.html") == 0 ||
                (n == 2 && strcmp(seg[0], "services") == 0);
    if (get && html) return to_login(conn, uri);
    return reply_error(conn, 401, SHMRPC_EPERM,
                       "the page requires its shared secret: log in with POST /login "
                       "(secret=...) and send the cookie it sets");
}

/* /metrics' families of the login, after the others (docs/web.md, "GET /metrics"). */
static void login_metrics(web_auth *a, shmrpc_buf *b)
{
    web_auth_counts c;
    web_auth_counts_get(a, &c);
    shmrpc_buf_appendf(b,
                       "# HELP shmrpc_web_logins_total Secrets sent to POST /login since the page "
                       "started: ok (the right one), wrong (403), limited (not compared, its "
                       "peer past its limit on wrong secrets: 429).\n"
                       "# TYPE shmrpc_web_logins_total counter\n"
                       "shmrpc_web_logins_total{result=\"ok\"} %llu\n"
                       "shmrpc_web_logins_total{result=\"wrong\"} %llu\n"
                       "shmrpc_web_logins_total{result=\"limited\"} %llu\n"
                       "# HELP shmrpc_web_login_peers Peers (an address, and a local "
                       "peer's user) whose attempts the page keeps count of (at most %d).\n"
                       "# TYPE shmrpc_web_login_peers gauge\n"
                       "shmrpc_web_login_peers %zu\n",
                       (unsigned long long)c.ok, (unsigned long long)c.wrong,
                       (unsigned long long)c.limited, WEB_AUTH_PEERS, c.peers);
}

/* --- routing -------------------------------------------------------------------------- */

/* The path's segments, split at '/', in place; how many (at most max). */
static int split(char *path, char **segs, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *p = strtok_r(path, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
        if (n == max) return max + 1;
        segs[n++] = p;
    }
    return n;
}

static int handle_get(struct mg_connection *conn, web_server *s, const char *uri, char **seg, int n)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    shmrpc_buf b;
    web_err e;
    int rc = 0, status = 200;
    shmrpc_buf_init(&b);
    if (strcmp(uri, "/") == 0 || strcmp(uri, "/index.html") == 0)
        return get_page(conn, s, "index.html", NULL);
    for (size_t k = 0; n == 1 && k < sizeof static_files / sizeof static_files[0]; k++) {
        if (strcmp(seg[0], static_files[k].path) != 0) continue;
        const char *text = shmrpc__embedded_text(web_assets, static_files[k].file);
        if (!text) return reply_error(conn, 404, SHMRPC_ENOENT, "no such asset");
        return reply(conn, 200, static_files[k].type, text, strlen(text));
    }
    if (n == 2 && strcmp(seg[0], "services") == 0) {
        if (find_service(s, seg[1]) < 0) return no_service(conn, s, seg[1]);
        return get_page(conn, s, "service.html", seg[1]);
    }
    if (n == 4 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "services") == 0 &&
        (strcmp(seg[3], "series") == 0 || strcmp(seg[3], "log") == 0)) {
        long i = find_service(s, seg[2]);
        if (i < 0) return no_service(conn, s, seg[2]);
        return seg[3][0] == 's' ? get_series(conn, s, (size_t)i) : get_log(conn, s, (size_t)i);
    }
    if (n == 1 && strcmp(seg[0], "metrics") == 0) {
        rc = web_view_metrics(&s->w, &b, &e);
        if (!rc && s->auth) login_metrics(s->auth, &b);
        if (!rc)
            status = reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    } else if (n == 2 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "token") == 0) {
        char text[64];
        int len = snprintf(text, sizeof text, "{\"token\":\"%s\"}", s->w.token);
        return reply(conn, 200, "application/json; charset=utf-8", text, (size_t)len);
    } else if (n == 2 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "services") == 0) {
        rc = web_view_services(&s->w, &b, &e);
        if (!rc) status = reply_json(conn, 200, &b);
    } else if (n == 3 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "services") == 0) {
        long i = find_service(s, seg[2]);
        if (i < 0) return no_service(conn, s, seg[2]);
        long long lines = DEFAULT_LOG_LINES;
        if (query_int(ri, "lines", 0, MAX_LOG_LINES, &lines) < 0) return bad_query(conn, "lines");
        rc = web_view_service(&s->w, (size_t)i, (int)lines, &b, &e);
        if (!rc) status = reply_json(conn, 200, &b);
    } else {
        return reply_error(conn, 404, SHMRPC_ENOENT, "no such page");
    }
    if (rc) status = reply_err(conn, &e);
    shmrpc_buf_destroy(&b);
    return status;
}

/* POST /api/services/NAME/{start,stop,restart,scale}, NAME one of the services (handle_post
 * found it): the control service's answer. */
static int handle_action(struct mg_connection *conn, web_server *s, const char *name,
                         const char *action, const char *body, size_t len)
{
    char args[160];
    if (strcmp(action, "scale") == 0) {
        /* {"workers": N}, [N] or N */
        json_t *v = json_loadb(body, len, JSON_DECODE_ANY, NULL);
        json_t *w = json_is_object(v)  ? json_object_get(v, "workers")
                    : json_is_array(v) ? json_array_get(v, 0)
                                       : v;
        bool ok =
            json_is_integer(w) && json_integer_value(w) >= 0 && json_integer_value(w) <= UINT32_MAX;
        long long n = ok ? (long long)json_integer_value(w) : 0;
        json_decref(v);
        if (!ok)
            return reply_error(conn, 400, SHMRPC_EINVAL,
                               "scale takes {\"workers\": N}, a count of workers");
        snprintf(args, sizeof args, "[\"%s\",%lld]", name, n);
    } else if (strcmp(action, "start") == 0 || strcmp(action, "stop") == 0 ||
               strcmp(action, "restart") == 0) {
        snprintf(args, sizeof args, "[\"%s\"]", name);
    } else {
        return reply_error(conn, 404, SHMRPC_ENOENT,
                           "no such action: start, stop, restart and scale are");
    }
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    web_err e;
    int r = web_call(&s->w.control, action, args, strlen(args), WEB_CONTROL_TIMEOUT_MS, &b, &e) == 0
                ? reply_json(conn, 200, &b)
                : reply_err(conn, &e);
    shmrpc_buf_destroy(&b);
    return r;
}

static int handle_post(struct mg_connection *conn, web_server *s, char **seg, int n)
{
    if (!token_ok(s, mg_get_header(conn, "X-Shmrpc-Token")))
        return reply_error(conn, 403, SHMRPC_EPERM,
                           "a POST needs the page's token in the X-Shmrpc-Token header "
                           "(GET /api/token)");
    if (s->auth && n == 1 && strcmp(seg[0], "logout") == 0) return post_logout(conn, s);
    bool action = n == 4 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "services") == 0;
    bool gateway = n == 3 && strcmp(seg[0], "api") == 0;
    if (!action && !gateway) return reply_error(conn, 404, SHMRPC_ENOENT, "no such page");
    long i = find_service(s, seg[action ? 2 : 1]);
    if (i < 0) return no_service(conn, s, seg[action ? 2 : 1]);
    char *body;
    size_t len;
    int bad = read_body(conn, s, &body, &len);
    if (bad)
        return reply_error(conn, bad, body_error(bad),
                           body_why(bad, "the body is too large (8 MiB at most)"));
    /* Before any parser sees it: jansson recurses once a level, on a 100 KiB stack. */
    if (shmrpc_json_check_depth(body, len, SHMRPC_JSON_MAX_DEPTH) != 0) {
        free_body(s, body, len);
        char msg[96];
        snprintf(msg, sizeof msg, "the body's JSON nests more than %u deep", SHMRPC_JSON_MAX_DEPTH);
        return reply_error(conn, 400, SHMRPC_EINVAL, msg);
    }
    int r;
    if (action) {
        r = handle_action(conn, s, seg[2], seg[3], body, len);
    } else {
        /* The JSON gateway: no body is no arguments. */
        size_t blank = 0;
        while (blank < len && strchr(" \t\r\n", body[blank]))
            blank++;
        shmrpc_buf b;
        shmrpc_buf_init(&b);
        web_err e;
        const char *args = blank == len ? "[]" : body;
        size_t alen = blank == len ? 2 : len;
        r = web_call(&s->w.svc[i], seg[2], args, alen, GATEWAY_TIMEOUT_MS, &b, &e) == 0
                ? reply_json(conn, 200, &b)
                : reply_err(conn, &e);
        shmrpc_buf_destroy(&b);
    }
    free_body(s, body, len);
    return r;
}

static int handle(struct mg_connection *conn, void *data)
{
    web_server *s = data;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (atomic_load(&s->closing))
        return reply_error(conn, 503, SHMRPC_EUNAVAIL, "the supervisor is exiting");
    const char *m = ri->request_method;
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
    int refused = headers_ok(conn, get);
    if (refused) return refused;
    if (!host_ok(s, mg_get_header(conn, "Host")))
        return reply_error(conn, 403, SHMRPC_EPERM,
                           s->any_ip_host ? "the page answers to a numeric address or a loopback "
                                            "host name only, not to a DNS name"
                                          : "the page answers to a loopback host name only "
                                            "(localhost, 127.x.y.z, [::1])");
    const char *uri = ri->local_uri ? ri->local_uri : "/";
    char path[1024], *seg[8];
    if (strlen(uri) >= sizeof path) return reply_error(conn, 404, SHMRPC_ENOENT, "no such page");
    strcpy(path, uri);
    int n = split(path, seg, 6);
    /* The probes are anyone's, as an orchestrator's probe carries no session: they say
     * live or ready and which services are not, nothing more (docs/web.md). */
    if (get && n == 1 && (strcmp(seg[0], "healthz") == 0 || strcmp(seg[0], "readyz") == 0)) {
        shmrpc_buf b;
        shmrpc_buf_init(&b);
        int ok = seg[0][0] == 'h' ? web_view_live(&s->w, &b) : web_view_ready(&s->w, &b);
        int r = reply_json(conn, ok ? 200 : 503, &b);
        shmrpc_buf_destroy(&b);
        return r;
    }
    if (s->auth) {
        int answered = gate(conn, s, uri, seg, n, get, post);
        if (answered) return answered;
    }
    if (get) return handle_get(conn, s, uri, seg, n);
    if (post) return handle_post(conn, s, seg, n);
    return reply_error(conn, 405, SHMRPC_EINVAL, "GET, HEAD and POST only");
}

/* civetweb closes a connection: the answer's deadline (reply_with) ends. */
static void on_close(const struct mg_connection *conn)
{
    intptr_t armed = (intptr_t)mg_get_user_connection_data(conn);
    const web_server *s = mg_get_user_data(mg_get_context(conn));
    if (armed > 0) web_guard_disarm(s->guard, (int)(armed - 1));
}

static int quiet(const struct mg_connection *conn, const char *message)
{
    (void)conn, (void)message;
    return 1; /* civetweb's own messages go nowhere: its threads may not write the log */
}

/* --- start and stop ------------------------------------------------------------------- */

static void free_web(web_server *s)
{
    if (s->w.svc)
        for (size_t i = 0; i < s->w.cfg->n_services; i++)
            web_pool_destroy(&s->w.svc[i]);
    free(s->w.svc);
    web_pool_destroy(&s->w.control);
    web_guard_stop(s->guard);
    if (s->auth) web_auth_destroy(s->auth);
    free(s->auth);
    free(s);
}

/* 127.x.y.z, ::1, ::ffff:127.x.y.z or localhost, as config_parse.c has it. */
static bool is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(host, "localhost") == 0) return true;
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) != 1) return false;
    return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
}

void web_logf(const web_logger *log, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (log) {
        log->vlogf(log->arg, fmt, ap);
    } else {
        /* One write: the keeper's and the page's lines share one pipe. */
        char *line = NULL;
        if (vasprintf(&line, fmt, ap) < 0) line = NULL;
        fprintf(stderr, "shmrpc-service: %s\n", line ? line : "web monitor: out of memory");
        free(line);
    }
    va_end(ap);
}

web_server *web_start(const cfg_file *c, const char *control_addr, pid_t supervisor,
                      const web_logger *log, char *err, size_t cap)
{
    const char *host = c->web_host ? c->web_host : "127.0.0.1";
    int port = c->web_port ? c->web_port : 5155;
    char ports[128], bare[64]; /* bare: host without brackets */
    snprintf(bare, sizeof bare, "%.*s", (int)strcspn(host + (host[0] == '['), "]"),
             host + (host[0] == '['));
    bool v6 = strchr(host, ':') != NULL;
    if (strcasecmp(host, "localhost") == 0)
        snprintf(ports, sizeof ports, "127.0.0.1:%d", port);
    else if (v6)
        snprintf(ports, sizeof ports, "%s%s%s:%d", host[0] == '[' ? "" : "[", host,
                 host[0] == '[' ? "" : "]", port);
    else
        snprintf(ports, sizeof ports, "%s:%d", host, port);
    web_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    s->w.cfg = c;
    s->w.supervisor = supervisor;
    web_pool_init(&s->w.control, control_addr);
    s->w.svc = calloc(c->n_services ? c->n_services : 1, sizeof *s->w.svc);
    if (!s->w.svc) {
        snprintf(err, cap, "out of memory");
        free_web(s);
        return NULL;
    }
    for (size_t i = 0; i < c->n_services; i++) {
        char addr[128];
        web_service_address(&c->services[i], addr, sizeof addr);
        web_pool_init(&s->w.svc[i], addr);
    }
    /* config_check.c refuses this already; the page does not rely on it. */
    s->any_ip_host = !is_loopback(bare);
    if (s->any_ip_host && !c->web_secret_file) {
        snprintf(err, cap, "%s is not a loopback address and there is no secret_file", host);
        free_web(s);
        return NULL;
    }
    if (c->web_secret_file) {
        char msg[512] = "out of memory";
        s->auth = malloc(sizeof *s->auth);
        int rc =
            s->auth ? web_auth_init(s->auth, c->web_secret_file, msg, sizeof msg) : SHMRPC_ENOMEM;
        if (rc) {
            snprintf(err, cap, "cannot read its secret: %s", msg);
            free_web(s);
            return NULL;
        }
        snprintf(s->cookie, sizeof s->cookie, "shmrpc_session_%d", port);
    }
    int token_rc = web_random_hex(s->w.token, (sizeof s->w.token - 1) / 2);
    if (token_rc != 0) {
        snprintf(err, cap, "no random bytes for its token: %s", shmrpc_strerror(token_rc));
        free_web(s);
        return NULL;
    }
    if (v6 && !mg_check_feature(8)) {
        snprintf(err, cap, "cannot listen on %s: this civetweb has no IPv6", ports);
        free_web(s);
        return NULL;
    }
    json_object_seed(0); /* jansson's hash seed, before its first use on several threads */
    s->guard = web_guard_start(port);
    if (!s->guard) web_logf(log, "web monitor: no thread for its deadlines; running without them");
    mg_init_library(0);
    struct mg_callbacks cb = {.log_message = quiet, .connection_close = on_close};
    /* docs/web.md, "Limits". No linger_timeout_ms: a close never waits for a peer. */
    char threads[16], timeout[16];
    snprintf(threads, sizeof threads, "%d", WEB_THREADS);
    snprintf(timeout, sizeof timeout, "%d", REQUEST_TIMEOUT_MS);
    const char *options[] = {"listening_ports",
                             ports,
                             "num_threads",
                             threads,
                             "request_timeout_ms",
                             timeout,
                             "enable_keep_alive",
                             "no",
                             "connection_queue",
                             "64",
                             "listen_backlog",
                             "256",
                             NULL};
    char why[256] = "";
    unsigned code = 0;
    struct mg_init_data init = {.callbacks = &cb, .user_data = s, .configuration_options = options};
    struct mg_error_data mg_err = {.code = &code, .text = why, .text_buffer_size = sizeof why};
    s->mg = mg_start2(&init, &mg_err);
    if (!s->mg) {
        snprintf(err, cap, "cannot listen on %s: %s", ports, *why ? why : "civetweb did not start");
        mg_exit_library();
        free_web(s);
        return NULL;
    }
    mg_set_request_handler(s->mg, "/", handle, s);
    /* GCOVR_EXCL_START: unreachable: Debian 12's civetweb has no IPv6, so web_start refused
     * an IPv6 host above (web_gateway_test's test_ipv6_page); a civetweb with IPv6 runs it */
    if (strchr(ports, '[')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s->listen;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, bare, &a->sin6_addr) != 1) a->sin6_addr = in6addr_loopback;
        s->listen_len = sizeof *a;
    } else {
        /* GCOVR_EXCL_STOP */
        struct sockaddr_in *a = (struct sockaddr_in *)&s->listen;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        char ip[64];
        snprintf(ip, sizeof ip, "%.*s", (int)strcspn(ports, ":"), ports);
        if (inet_pton(AF_INET, ip, &a->sin_addr) != 1) a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s->listen_len = sizeof *a;
    }
    if (s->auth)
        web_logf(log, "web monitor at http://%s/ (the secret of %s required)", ports,
                 c->web_secret_file);
    else
        web_logf(log, "web monitor at http://%s/", ports);
    return s;
}

/* civetweb's listening thread looks at its stop flag between polls of up to 2 s; a
 * connection to the port wakes it, so mg_stop returns in milliseconds. */
static void *poke(void *arg)
{
    web_server *s = arg;
    while (!atomic_load(&s->stopped)) {
        int fd = socket(s->listen.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd >= 0) {
            (void)connect(fd, (struct sockaddr *)&s->listen, s->listen_len);
            close(fd);
        }
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

void web_stop(web_server *s)
{
    if (!s) return;
    atomic_store(&s->closing, true);
    pthread_t poker;
    bool poking = pthread_create(&poker, NULL, poke, s) == 0;
    mg_stop(s->mg); /* joins its threads: each request ends within its call's timeout */
    atomic_store(&s->stopped, true);
    if (poking) pthread_join(poker, NULL);
    mg_exit_library();
    free_web(s);
}
