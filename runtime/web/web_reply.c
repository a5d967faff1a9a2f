/* SPDX-License-Identifier: MIT */
/* The management page's answers (web_server.h): every answer's headers, and a deadline on
 * its writing that lasts until civetweb closes the connection (web_guard.c); the page's
 * JSON error body; the HTML pages of assets/ with the head they share, the token and a
 * service's name filled in. */
#include "web_server.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/status.h>

/* How long an answer may take to be taken, in all. */
#define ANSWER_TIMEOUT_MS 10000

/* extra: more header lines, each ending in \r\n, or NULL. */
int web_reply_with(struct mg_connection *conn, int status, const char *extra, const char *ctype,
                   const void *body, size_t n)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const web_server *s = mg_get_user_data(mg_get_context(conn));
    bool head = strcmp(ri->request_method, "HEAD") == 0;
    /* A peer that reads its answer a byte at a time gives up its thread in the end, and
     * so does one that goes on sending a body the page did not read: civetweb reads what
     * Content-Length declared of it after the handler, before it closes. The deadline
     * lasts until then (web_on_close); a second answer's replaces the first's. */
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

int web_reply(struct mg_connection *conn, int status, const char *ctype, const void *body, size_t n)
{
    return web_reply_with(conn, status, NULL, ctype, body, n);
}

int web_reply_json(struct mg_connection *conn, int status, const shmrpc_buf *b)
{
    return web_reply(conn, status, "application/json; charset=utf-8", b->data, b->len);
}

/* {"error": {"status": "SHMRPC_E...", "code": rc, "message": "..."}}, with extra header
 * lines as web_reply_with takes them. */
int web_reply_error_with(struct mg_connection *conn, int http, const char *extra, int rc,
                         const char *msg)
{
    json_t *o = json_pack("{s:{s:s,s:i,s:s}}", "error", "status", shmrpc_status_name(rc), "code",
                          rc, "message", msg);
    if (!o)
        o = json_pack("{s:{s:s,s:i,s:s}}", "error", "status", shmrpc_status_name(rc), "code", rc,
                      "message", "(a message that is not UTF-8)");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    int r = web_reply_with(conn, http, extra, "application/json; charset=utf-8", text ? text : "{}",
                           text ? strlen(text) : 2);
    free(text);
    return r;
}

int web_reply_error(struct mg_connection *conn, int http, int rc, const char *msg)
{
    return web_reply_error_with(conn, http, NULL, rc, msg);
}

int web_reply_err(struct mg_connection *conn, const web_err *e)
{
    return web_reply_error(conn, e->http, e->rc, e->msg);
}

/* Appends text to b with the token at {{TOKEN}} (for the page's script to send with POSTs),
 * the service's name, escaped, at {{NAME}}, and head, filled in the same way, at {{HEAD}}:
 * the start of the head that every page with a token shares (assets/head.html). */
static void fill(shmrpc_buf *b, const web_server *s, const char *text, const char *name,
                 const char *head)
{
    for (const char *p = text, *at; *p; p = at) {
        at = strstr(p, "{{");
        if (!at) at = p + strlen(p);
        shmrpc_buf_append(b, p, (size_t)(at - p));
        if (strncmp(at, "{{TOKEN}}", 9) == 0) {
            shmrpc_buf_append(b, s->w.token, strlen(s->w.token));
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
                shmrpc_buf_append(b, esc ? esc : c, esc ? strlen(esc) : 1);
            }
            at += 8;
        } else if (head && strncmp(at, "{{HEAD}}", 8) == 0) {
            fill(b, s, head, name, NULL); /* no {{HEAD}} inside the head */
            at += 8;
        } else if (*at) {
            shmrpc_buf_append(b, at, 1);
            at++;
        }
    }
}

/* An HTML page of assets/, filled in (fill). */
int web_page(struct mg_connection *conn, const web_server *s, const char *file, const char *name)
{
    const char *text = shmrpc__embedded_text(web_assets, file);
    const char *head = shmrpc__embedded_text(web_assets, "head.html");
    if (!text || !head)
        return web_reply_error(conn, 500, SHMRPC_ENOENT, "a page is missing from the program");
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    fill(&b, s, text, name, head);
    int r = b.err ? web_reply_error(conn, 500, SHMRPC_ENOMEM, "out of memory")
                  : web_reply(conn, 200, "text/html; charset=utf-8", b.data, b.len);
    shmrpc_buf_destroy(&b);
    return r;
}

/* civetweb closes a connection: the answer's deadline (web_reply_with) ends. */
void web_on_close(const struct mg_connection *conn)
{
    intptr_t armed = (intptr_t)mg_get_user_connection_data(conn);
    const web_server *s = mg_get_user_data(mg_get_context(conn));
    if (armed > 0) web_guard_disarm(s->guard, (int)(armed - 1));
}
