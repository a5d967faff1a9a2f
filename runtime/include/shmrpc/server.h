/* SPDX-License-Identifier: MIT */
/* Serving a service: register its descriptor and handlers, then listen on an address.
 * Errors follow status.h: a function here that fails returns a negative status and
 * shmrpc_errmsg() says why (set_workers and stop, async-signal-safe, set no message).
 * The failures of calls go to the calling client, not here. */
#ifndef SHMRPC_SERVER_H
#define SHMRPC_SERVER_H

#include <stddef.h>

#include <shmrpc/decls.h>
#include <shmrpc/service.h>
#include <shmrpc/tcp.h>
#include <shmrpc/wait.h>

SHMRPC_BEGIN_DECLS

typedef struct shmrpc_server shmrpc_server;

typedef struct shmrpc_server_opts {
    size_t max_msg_bytes;  /* largest request or response; 0: SHMRPC_DEFAULT_MAX_MSG */
    shmrpc_wait_opts wait; /* how workers wait for calls (shm://) */
    shmrpc_tcp_opts tcp;   /* limits, compression and the shared secret (tcp://) */
} shmrpc_server_opts;

#define SHMRPC_DEFAULT_MAX_MSG ((size_t)64 << 20)

void shmrpc_server_opts_init(shmrpc_server_opts *o);

/* opts may be NULL for the defaults; SHMRPC_EINVAL for tcp settings out of range
 * (shmrpc/tcp.h). */
int shmrpc_server_new(shmrpc_server **out, const shmrpc_server_opts *opts);
/* Stops listening, waits for calls still running in handlers on other threads, and frees
 * the server; its clients' later calls fail with SHMRPC_EUNAVAIL. Not from one of this
 * server's own handlers (it would wait for itself). */
void shmrpc_server_free(shmrpc_server *s);

/* Registers the service a server serves (one per server). Checks the descriptor's magic,
 * version and method table, and that every handler is set: a missing one fails here
 * with SHMRPC_EINVAL and a message naming it, not when the first call arrives. The
 * handler table is copied; user is handed to handlers by shmrpc_ctx_user(). */
int shmrpc_server_register(shmrpc_server *s, const shmrpc_service *svc, const void *handlers,
                           void *user);

/* Starts serving at addr: "shm://NAME" (docs/shm-transport.md), "tcp://HOST:PORT"
 * (docs/wire.md; a host other than loopback needs a shared secret, shmrpc/tcp.h), or
 * "inproc://NAME" (calls from this process, run on the caller's thread). A second server on one
 * address fails with SHMRPC_EBUSY and a message saying who holds it. A server listens at
 * one address: a second listen fails with SHMRPC_EBUSY ("the server is already
 * listening"). To serve one service at shm:// and tcp:// both, make a server for each
 * (each serves with workers of its own), or let shmrpc-service run it as a module=
 * service, whose TCP manager it starts beside the shm:// one (docs/service-ini.md). */
int shmrpc_server_listen(shmrpc_server *s, const char *addr);

/* Serves until shmrpc_server_stop(). For shm:// and tcp:// it runs workers processes (0: serves on
 * the calling thread), forked from the caller so that data loaded before is shared copy
 * on write; any worker serves any connection's call, and one that dies is replaced
 * (no faster than every 100 ms). On stop, calls in flight get up to two seconds to
 * finish. For inproc:// calls run on their callers' threads; this only waits. */
int shmrpc_server_serve(shmrpc_server *s, int workers);

/* Serves as shmrpc_server_serve() does until SIGTERM or SIGINT reaches the process (or
 * shmrpc_server_stop()), and returns what serve returned: 0 for a clean stop. It is the
 * handler every server's main() would write: while it serves, both signals (even one that
 * was ignored) call shmrpc_server_stop(s); before it returns it puts back the process's
 * previous dispositions, so a handler installed before sees the next signal. Keep the
 * signals unblocked in at least one thread. The worker processes that serve forks do not
 * stop the server: each ignores SIGINT (a terminal's ^C reaches the manager, which stops
 * them) and takes SIGTERM as its manager's word to finish the call in hand and leave, as
 * with any handler the program installs. One such call at a time in a process (signal
 * dispositions are the process's): a second one while the first serves fails with
 * SHMRPC_EBUSY. */
int shmrpc_server_serve_until_signal(shmrpc_server *s, int workers);

/* The most workers a server runs. */
#define SHMRPC_MAX_WORKERS 64

/* Changes the count of worker processes of a server serving with workers (shm://,
 * tcp://): the manager starts the missing ones, or asks those above the count to finish
 * the calls in hand and leave (their other connections close; their clients connect
 * again by themselves). 1 to SHMRPC_MAX_WORKERS, else SHMRPC_EINVAL. Async-signal-safe:
 * a supervisor may call it from a signal handler. No effect when serving in place. */
int shmrpc_server_set_workers(shmrpc_server *s, int workers);

/* Sets whether the handler of the @raw method method_id (the server's index, as the generated
 * NAME_METHOD_*) reads its request where the client wrote it rather than from a private copy: over
 * shm:// in the channel itself, so a large @raw request is not copied before the handler runs (one
 * of 24 bytes or less still is: it rides in the channel's state line). Left unset, a @raw handler
 * reads requests of 1024 bytes or more in place and its shmrpc_ctx_loan gives memory of the arena
 * (docs/shm-transport.md, "Large @raw calls": every shm:// client is a process of the server's own
 * user); in_place 1 reads every request in place and lends the channel, in_place 0 keeps the copy
 * for every request. The client's process can write those bytes while the handler reads them (a
 * correct client waits for its answer; a broken or hostile one need not): a handler that checks
 * what it reads must copy what it checks and check the copy, never read a length or offset twice,
 * and must not crash on any content; one that only moves bytes (a store, a transform, a checksum)
 * may read in place. Over tcp:// the request is the worker's own copy and over inproc:// the
 * caller's buffer, as without it. Call it after shmrpc_server_register and before
 * shmrpc_server_serve (workers keep what was set when they were forked). SHMRPC_EINVAL with no
 * service registered, an id outside its table, or a method that is not @raw (its generated decoder
 * would read bytes the client can change under it). docs/shm-transport.md, "Loaned buffers". */
int shmrpc_server_set_in_place(shmrpc_server *s, uint32_t method_id, int in_place);

/* Makes shmrpc_server_serve() return. Async-signal-safe: call it from a SIGTERM handler. */
void shmrpc_server_stop(shmrpc_server *s);

SHMRPC_END_DECLS
#endif
