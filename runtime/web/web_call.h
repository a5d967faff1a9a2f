/* SPDX-License-Identifier: MIT */
/* The management page's calls into services: any method of any service, with JSON
 * arguments and a JSON result, through the normal client path and the library's dynamic
 * codec (shmrpc/dynamic.h, which shmrpcctl call uses too), over a small pool of connected
 * handles per address. */
#ifndef SHMRPC_SUPERVISOR_WEB_CALL_H
#define SHMRPC_SUPERVISOR_WEB_CALL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/buf.h>

/* Idle connections kept per address; more may be open at once, one per calling thread. */
#define WEB_POOL_IDLE 4

typedef struct web_conn web_conn;

/* The connections to one address. A client is used by one thread at a time: a call takes
 * one from the pool (or connects a new one) and gives it back when it went well. */
typedef struct web_pool {
    char addr[128]; /* "": the service's address is not known (an exec= one without keys) */
    pthread_mutex_t mu;
    web_conn *idle[WEB_POOL_IDLE];
    int n_idle;
} web_pool;

/* Why a call failed: an HTTP status for the page, the shmrpc status (0 for failures of
 * the page's own, such as bad JSON, which carry SHMRPC_EINVAL) and a message. */
typedef struct web_err {
    int http;
    int rc;
    char msg[768];
} web_err;

void web_pool_init(web_pool *p, const char *addr);
void web_pool_destroy(web_pool *p);

/* Calls method at p's address with args (JSON: an array in parameter order or an object
 * by name, as shmrpcctl call takes them) within timeout_ms; appends the result as compact
 * JSON to out and returns 0, or returns -1 with e filled (docs/web.md has the statuses). */
int web_call(web_pool *p, const char *method, const char *args, size_t n, int64_t timeout_ms,
             shmrpc_buf *out, web_err *e);

/* The HTTP status for a call that failed with rc. */
int web_http_status(int rc);

#endif
