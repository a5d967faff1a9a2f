/* The management page (docs/web.md): an HTTP server (civetweb) in a process of the
 * supervisor's own (web_proc.c) on [web monitor] host:port, serving the overview, its
 * JSON API, /metrics and the JSON gateway, behind a login when there is a secret_file. Its handlers
 * run on civetweb's threads and never touch the supervisor's state: they call the supervisor's
 * control service as any client would. */
#ifndef SHMRPC_SUPERVISOR_WEB_H
#define SHMRPC_SUPERVISOR_WEB_H

#include "config.h"
#include "sup_service.h"

typedef struct web_server web_server;

/* Main thread, with the signals the main loop reads blocked (civetweb's threads inherit
 * the mask). Listens on c's [web monitor] and serves; control_addr is the supervisor's
 * control service. With c->web_secret_file, reads the secret once (shmrpc_secret_load)
 * and requires a session from POST /login for everything but the login page. Logs where
 * it listens, or why it cannot (a port it cannot bind, a secret it cannot read), through
 * ctx; NULL when it cannot (the page's process then exits; the supervisor runs on). c
 * must outlive it. */
web_server *web_start(const shmrpc__config *c, const char *control_addr, const sup_ctx *ctx);

/* Refuses new requests, waits for those being served (each bounded by its call's
 * timeout and its body's and answer's deadlines), closes the port and frees it all, the
 * secret's hash and the sessions wiped. NULL is fine. */
void web_stop(web_server *w);

#endif
