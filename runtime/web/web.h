/* SPDX-License-Identifier: MIT */
/* The management page (docs/web.md): an HTTP server (civetweb) in a process of the
 * supervisor's own (web_proc.c) on [web monitor] host:port, serving the overview, its
 * JSON API, /metrics and the JSON gateway, behind a login when there is a secret_file. Its handlers
 * run on civetweb's threads and never touch the supervisor's state: they call the supervisor's
 * control service as any client would. */
#ifndef SHMRPC_SUPERVISOR_WEB_H
#define SHMRPC_SUPERVISOR_WEB_H

#include <stdarg.h>
#include <sys/types.h>

#include "config.h"

typedef struct web_server web_server;

/* Where the page's code writes its lines (each without its newline): what it serves, and
 * why it cannot. This is all the page needs of the supervisor's: shmrpc-service hands
 * one that writes to its own log (sup_logf's); NULL writes each line to stderr as
 * "shmrpc-service: LINE\n" in one write, as the supervisor does without a log file: so do
 * the page's and its keeper's processes, whose stderr is the pipe web_proc_drain copies
 * into the supervisor's log. */
typedef struct web_logger {
    void (*vlogf)(void *arg, const char *fmt, va_list ap);
    void *arg;
} web_logger;

void web_logf(const web_logger *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Main thread, with the signals the main loop reads blocked (civetweb's threads inherit
 * the mask). Listens on c's [web monitor] and serves; control_addr is the supervisor's
 * control service. With c->web_secret_file, reads the secret once (shmrpc_secret_load)
 * and requires a session from POST /login for everything but the login page. Says where
 * it listens through log (and that it runs without its deadlines' thread, should that
 * not start). NULL, with why in err (cap bytes), when it cannot serve (a port it cannot
 * bind, a secret it cannot read): the page's process then says so and exits, and the
 * supervisor runs on. The page shows supervisor as the supervisor's pid. c must outlive
 * it. */
web_server *web_start(const cfg_file *c, const char *control_addr, pid_t supervisor,
                      const web_logger *log, char *err, size_t cap);

/* Refuses new requests, waits for those being served (each bounded by its call's
 * timeout and its body's and answer's deadlines), closes the port and frees it all, the
 * secret's hash and the sessions wiped. NULL is fine. */
void web_stop(web_server *w);

#endif
