/* SPDX-License-Identifier: MIT */
/* What the web tests share: a small HTTP/1.1 client to the page on loopback (one request
 * a connection, the whole answer read), a header's value, a JSON body, and the checks of
 * a status and of the page's JSON error body. Failures are cmocka assertions. */
#ifndef SHMRPC_TEST_WEB_HTTP_H
#define SHMRPC_TEST_WEB_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

typedef struct resp {
    int status;
    char head[8192]; /* the status line and the header lines, without the blank line */
    char *body;      /* malloc'd, NUL-terminated; free it with resp_free */
    size_t len;
} resp;

void resp_free(resp *r);

/* One request to 127.0.0.1:port with Connection: close, Host: host (NULL: 127.0.0.1:port)
 * and the extra header lines (NULL: none); the whole answer read until EOF. -1: no
 * answer (r then holds nothing). */
int http_raw(int port, const char *host, const char *method, const char *path, const char *extra,
             const char *body, resp *r);

/* http_raw from the source address from (IPv4, NULL: the kernel's choice): Linux routes
 * all of 127/8 to lo, so that 127.0.0.2, 127.1.2.3 ... are other clients to the page. */
int http_raw_from(const char *from, int port, const char *host, const char *method,
                  const char *path, const char *extra, const char *body, resp *r);

/* What http_raw is made of: a connection to 127.0.0.1:port with 10 s timeouts on reads and
 * writes (-1: none), from the source address from (NULL: any); an answer read until EOF
 * from it (0, or -1: no HTTP/1.1 answer); req's n bytes sent as they are on a new
 * connection and the answer read. */
int http_connect(int port);
int http_connect_from(const char *from, int port);
int http_read_answer(int fd, resp *r);
int http_send(int port, const char *req, size_t n, resp *r);
int http_send_from(const char *from, int port, const char *req, size_t n, resp *r);

/* Sends GET path to the page at port with each Host of a table (docs/web.md, "Host"): a
 * loopback page (any_ip false) or one on a non-loopback address must answer those it
 * accepts with ok_status and refuse the others with 403 SHMRPC_EPERM; prints each. */
void expect_hosts(int port, bool any_ip, const char *path, int ok_status);

/* Polls GET path every 20 ms until it answers 200, for up to ms, or until *pid (when
 * pid is not NULL) has exited, reaped by sup_wait_exit: 0 with that answer in r, or -1
 * (r then holds nothing). */
int http_wait_ok(int port, const char *path, int ms, pid_t *pid, resp *r);

/* A header's value (case-insensitive name), or "" (a static buffer). */
const char *header(const resp *r, const char *name);

/* The body as JSON (any value; a new reference), asserted to be JSON. */
json_t *body_json(const resp *r);

/* Asserts the status, printing the answer when it is another. */
void expect_status(const resp *r, int status);

/* Asserts an HTML page (200) that carries token in its meta shmrpc-token, for its script
 * to send with POSTs, in the head the pages share (doctype, charset, style sheet, format.js). */
void expect_page(const resp *r, const char *token);

/* Asserts the status and the page's JSON error body: {"error": {"message": "...",
 * "status": status}}. */
void expect_error(const resp *r, int http_status, const char *status);

#endif
