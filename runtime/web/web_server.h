/* SPDX-License-Identifier: MIT */
/* The management page's HTTP side, shared by its files: web.c starts and stops civetweb,
 * web_route.c routes each request, web_request.c checks a request and reads its body,
 * web_login.c logs in and out, web_reply.c writes the answers. The server's state, and
 * what each of these files lends the others. */
#ifndef SHMRPC_SUPERVISOR_WEB_SERVER_H
#define SHMRPC_SUPERVISOR_WEB_SERVER_H

#include <civetweb.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <shmrpc/buf.h>

#include "embedded.h"
#include "web.h"
#include "web_auth.h"
#include "web_call.h"
#include "web_guard.h"
#include "web_view.h"

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

/* --- web_reply.c: answers --------------------------------------------------------------- */

/* An answer with its headers (extra: more lines, each ending in \r\n, or NULL) and body. */
int web_reply_with(struct mg_connection *conn, int status, const char *extra, const char *ctype,
                   const void *body, size_t n);
/* web_reply_with without extra header lines. */
int web_reply(struct mg_connection *conn, int status, const char *ctype, const void *body,
              size_t n);
/* b as application/json. */
int web_reply_json(struct mg_connection *conn, int status, const shmrpc_buf *b);
/* The page's JSON error body, with extra header lines as web_reply_with takes them. */
int web_reply_error_with(struct mg_connection *conn, int http, const char *extra, int rc,
                         const char *msg);
/* The page's JSON error body. */
int web_reply_error(struct mg_connection *conn, int http, int rc, const char *msg);
/* The page's JSON error body for e. */
int web_reply_err(struct mg_connection *conn, const web_err *e);
/* An HTML page of assets/ with the shared head (head.html) at {{HEAD}}, the token at
 * {{TOKEN}} and name, escaped, at {{NAME}}. */
int web_page(struct mg_connection *conn, const web_server *s, const char *file, const char *name);
/* civetweb's connection_close callback: the answer's deadline ends. */
void web_on_close(const struct mg_connection *conn);

/* --- web_request.c: what a request must be, and its body ------------------------------- */

/* Whether the Host header names this page as a browser names it (loopback, or numeric). */
bool web_host_ok(const web_server *s, const char *host);
/* Refuses headers that are ambiguous or missing: the answer's status, or 0. */
int web_headers_ok(struct mg_connection *conn, bool read_only);
/* Whether given is the page's token, compared in constant time. */
bool web_token_ok(const web_server *s, const char *given);
/* The body's length as its headers declare it (at most max) in *n: 0, or an HTTP status. */
int web_body_length(struct mg_connection *conn, size_t max, size_t *n);
/* Reads exactly n bytes of the body into p, within its deadline: 0, or 400. */
int web_read_exact(struct mg_connection *conn, const web_server *s, char *p, size_t n);
/* The message of a web_body_length, web_read_exact or web_read_body status. */
const char *web_body_why(int http, const char *too_large);
/* The SHMRPC_E... status of the same. */
int web_body_error(int http);
/* Frees a body of web_read_body's and gives its bytes back to the budget. */
void web_free_body(web_server *s, char *body, size_t len);
/* The whole body of a POST, NUL-terminated, in *out: 0, or an HTTP status. */
int web_read_body(struct mg_connection *conn, web_server *s, char **out, size_t *len);

/* --- web_login.c: the secret's login, sessions and logout ------------------------------- */

/* With a secret: answers the login page and what needs a session it lacks, else 0. */
int web_login_gate(struct mg_connection *conn, web_server *s, const char *uri, char **seg, int n,
                   bool get, bool post);
/* POST /logout: ends the session, clears the cookie, 303 to /login. */
int web_post_logout(struct mg_connection *conn, web_server *s);
/* /metrics' families of the login. */
void web_login_metrics(web_auth *a, shmrpc_buf *b);

/* --- web_route.c: routing ----------------------------------------------------------------- */

/* civetweb's catch-all request handler (data: the web_server). */
int web_handle(struct mg_connection *conn, void *data);

#endif
