/* SPDX-License-Identifier: MIT */
/* Deadlines on the page's slow parts of a request, its body and its answer (docs/web.md,
 * "Limits"). civetweb bounds each wait for a byte by request_timeout_ms but not the whole:
 * a peer that sends (or reads) one byte a few seconds would hold a worker thread for
 * hours. A handler arms a deadline around its reads or writes; a thread of the guard
 * shuts the connection's socket down when one passes, so that civetweb's read or write
 * returns at once with what it had (and, for an answer, civetweb's close then resets the
 * connection). */
#ifndef SHMRPC_SUPERVISOR_WEB_GUARD_H
#define SHMRPC_SUPERVISOR_WEB_GUARD_H

#include <stdbool.h>
#include <stdint.h>

#include <civetweb.h>

/* Deadlines armed at once, at most: one a civetweb worker thread is enough. */
#define WEB_GUARD_SLOTS 128

typedef struct web_guard web_guard;

/* Starts the guard's thread for connections accepted on port (any local address). NULL
 * when out of memory or threads: the page then runs without deadlines. */
web_guard *web_guard_start(int port);

/* Stops the thread (the deadlines still armed are dropped) and frees g. NULL is fine. */
void web_guard_stop(web_guard *g);

/* Arms a deadline ms from now for conn's socket, which its handler, the caller, holds,
 * to be shut down as shutdown(2)'s how says (SHUT_RD for a body: an answer can still go
 * out): a slot to disarm, or -1 when g is NULL or every slot is taken (no deadline). */
int web_guard_arm(web_guard *g, const struct mg_connection *conn, int64_t ms, int how);

/* Disarms slot (from web_guard_arm; -1 is fine), before the handler returns and civetweb
 * closes the socket; whether the deadline passed and the socket was shut down. */
bool web_guard_disarm(web_guard *g, int slot);

#endif
