/* SPDX-License-Identifier: MIT */
/* Interceptors: functions registered on a client or a server that run around every call of
 * its service (auth, logging, metrics), see what is called and how it ended, and may refuse
 * it. docs/interceptors.md. */
#ifndef SHMRPC_INTERCEPT_H
#define SHMRPC_INTERCEPT_H

#include <shmrpc/client.h>
#include <shmrpc/decls.h>
#include <shmrpc/metadata.h>
#include <shmrpc/server.h>
#include <shmrpc/service.h>

SHMRPC_BEGIN_DECLS

/* What an interceptor sees of a call. The library makes it and an interceptor only reads
 * it, through the pointer it is handed (valid until its hook returns): fields join at the
 * end, never before, so an interceptor built now keeps working. */
typedef struct shmrpc_call_info {
    const shmrpc_service_info *service; /* the service as this side knows it: service->name */
    const shmrpc_method_info *method;   /* the method called: name, encoding, fingerprint, and
                                         * id, its index in this side's table */
    shmrpc_ctx *ctx;                    /* on a server, the call's context (shmrpc_ctx_deadline,
                                         * shmrpc_ctx_cancelled, shmrpc_ctx_user); NULL on a client */
    const shmrpc_metadata *metadata;    /* the call's metadata (shmrpc/metadata.h): on a client,
                                         * what it sends (the trace a handler's call carries on
                                         * among it); on a server, what came; NULL: none */
} shmrpc_call_info;

/* An interceptor: either hook may be NULL. arg is the pointer given at registration.
 *
 * before runs as the call begins. 0 lets it go on; a negative status refuses it: nothing
 * after it runs (not the later interceptors' hooks, not the handler; on a client the call is
 * not sent) and the call ends with that status, and the message given by
 * shmrpc_intercept_error (else "refused by an interceptor: " and shmrpc_strerror). Any other
 * value is a bug, and refuses the call with SHMRPC_EINVAL.
 *
 * after runs when the call is done, with its status (0, or what the caller gets: the
 * server's answer, a handler's error, a timeout, a refusal by a later interceptor), and
 * returns the status the call ends with: status itself to only observe; another negative
 * status replaces it (a mapping of errors, or a result the interceptor rejects), with its
 * message from shmrpc_intercept_error or shmrpc_strerror. 0 or a positive value leaves the
 * status as it was: a failed call has no answer to decode, so no interceptor turns it into a
 * success.
 *
 * Several compose as an onion: befores in the order they were registered, afters in the
 * reverse order, and an interceptor's after runs only when its before ran and let the call
 * go on (one that refused sees no after of its own; those before it see the refusal). */
typedef struct shmrpc_interceptor {
    int (*before)(void *arg, const shmrpc_call_info *call);
    int (*after)(void *arg, const shmrpc_call_info *call, int status);
} shmrpc_interceptor;

/* The most interceptors a client or a server has. */
#define SHMRPC_MAX_INTERCEPTORS 16

/* Adds the interceptor *i (copied: i need not outlive this call) after those already there.
 * A client's run on the thread that calls, around shmrpc_client_call (and the generated
 * stubs), shmrpc_client_call_loaned, and started calls: before in shmrpc_client_start (a
 * refused call is returned done, with its status), after once the client learns the call is
 * done (shmrpc_client_wait returning it, shmrpc_call_status or shmrpc_call_result saying
 * so, shmrpc_call_free, or the client freed or connected again); a call done when start
 * returns (refused, failed at once, or run whole there as over shm:// and inproc://) has
 * had its after by then. Not around shmrpc_client_health, connect, or a loan.
 * A server's run where its handler does, on every transport, around the handler (or a
 * fault SHMRPC_FAULTS injects): register them before shmrpc_server_listen, as the
 * workers and threads that run calls read them without a lock (SHMRPC_EBUSY after). The
 * built-in health method passes no interceptor.
 * SHMRPC_EINVAL for a NULL argument, an interceptor with neither hook, or one beyond
 * SHMRPC_MAX_INTERCEPTORS. */
int shmrpc_client_intercept(shmrpc_client *c, const shmrpc_interceptor *i, void *arg);
int shmrpc_server_intercept(shmrpc_server *s, const shmrpc_interceptor *i, void *arg);

/* Records the message a call refused or failed by an interceptor ends with (printf-style,
 * cut at 255 bytes on a server) and returns rc, so a hook can
 * `return shmrpc_intercept_error(call, SHMRPC_EPERM, "no token for %s", call->method->name);`.
 * On a server the client gets it as a handler's message. Only on the call handed to the hook. */
int shmrpc_intercept_error(const shmrpc_call_info *call, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

SHMRPC_END_DECLS
#endif
