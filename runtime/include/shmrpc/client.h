/* SPDX-License-Identifier: MIT */
/* The client handle that generated stubs call through. A handle is used by one thread
 * at a time; open one per thread for concurrent calls. */
#ifndef SHMRPC_CLIENT_H
#define SHMRPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <shmrpc/arena.h>
#include <shmrpc/buf.h>
#include <shmrpc/service.h>
#include <shmrpc/tcp.h>
#include <shmrpc/wait.h>

#ifdef __cplusplus
extern "C" {
#endif
/* The library's API, exported from libshmrpc.so, which hides everything else. */
#pragma GCC visibility push(default)

typedef struct shmrpc_client shmrpc_client;

/* Durations are milliseconds, with two sentinels. */
#define SHMRPC_TIMEOUT_INFINITE ((int64_t)-1)
#define SHMRPC_TIMEOUT_DEFAULT ((int64_t)-2)
#define SHMRPC_DEFAULT_TIMEOUT_MS ((int64_t)5000)

typedef struct shmrpc_client_opts {
    int64_t timeout_ms;    /* each call's deadline; SHMRPC_TIMEOUT_DEFAULT: 5 s */
    size_t max_msg_bytes;  /* largest request or response; 0: SHMRPC_DEFAULT_MAX_MSG */
    shmrpc_wait_opts wait; /* how calls wait for their answers (shm://) */
    shmrpc_tcp_opts tcp;   /* timeouts, compression and the shared secret (tcp://) */
} shmrpc_client_opts;

void shmrpc_client_opts_init(shmrpc_client_opts *o);

/* A client for the service described by info (the generated NAME_service_info).
 * opts may be NULL for the defaults. Fails only for lack of memory, a bad info, or tcp
 * settings out of range (shmrpc/tcp.h): SHMRPC_EINVAL.
 *
 * Errors follow status.h: every function here that fails returns a negative status, and
 * shmrpc_errmsg() on the calling thread says why; for a failed call, the server's
 * message for a handler's error, or the field for a decode error. */
int shmrpc_client_new(shmrpc_client **out, const shmrpc_service_info *info,
                      const shmrpc_client_opts *opts);
void shmrpc_client_free(shmrpc_client *c);

/* Connects to addr ("shm://NAME", "tcp://HOST:PORT" or "inproc://NAME") and verifies
 * the method table: each of the
 * client's methods must exist on the server with the same fingerprint, or connect fails
 * with SHMRPC_EMISMATCH and a message naming every method that differs. The server may
 * have methods the client lacks. A connected client drops its connection first. Over
 * shm:// and tcp://, a call after the server went away connects again by itself (with a
 * jittered backoff, checking the table again); the call that failed is never resent.
 * A tcp:// address may list endpoints and DNS names ("tcp://h1:5555,h2:5555", at most
 * SHMRPC_TCP_MAX_ENDPOINTS): connect succeeds when one of them answers, each call goes to
 * the least loaded endpoint, and a call that never started moves to another within its
 * deadline, while one that may have run fails with SHMRPC_EPEERDIED (docs/wire.md,
 * "Endpoint lists"). A connection belongs to the process that opened it. Failures:
 * SHMRPC_EINVAL (malformed address, unknown or not yet available transport),
 * SHMRPC_EUNAVAIL (nobody serves addr), SHMRPC_EMISMATCH. */
int shmrpc_client_connect(shmrpc_client *c, const char *addr);

/* The server's service as this client last connected to it: its name, fingerprint and
 * whole method table (names, ids, fingerprints, encodings, canonical signatures; see
 * docs/svc-language.md), including methods this client lacks. A client built with an
 * empty table connects to any service, so a program can learn what a server serves
 * without its generated code (shmrpcctl call does). NULL when not connected; valid until
 * the next connect or call (a call may reconnect) or shmrpc_client_free. */
const shmrpc_service_info *shmrpc_client_server_info(const shmrpc_client *c);

/* The deadline of every later call, and an override for the next call only.
 * SHMRPC_TIMEOUT_DEFAULT means the opts' timeout (for next_timeout: no override); any
 * other negative value but SHMRPC_TIMEOUT_INFINITE reads as SHMRPC_TIMEOUT_DEFAULT.
 * inproc:// calls run the handler on the caller's thread and cannot time out. */
void shmrpc_client_set_timeout(shmrpc_client *c, int64_t ms);
void shmrpc_client_next_timeout(shmrpc_client *c, int64_t ms);

/* --- health, for orchestrators ---
 * Every server answers a built-in health method without a user handler, over every
 * transport. Its id, SHMRPC_HEALTH_METHOD_ID, lies above any id a method table can hold
 * (tables are indexes 0..n-1 and n is at most 65535 on the wire), so it never collides
 * with a user's method and the connect-time table check does not see it. docs/health.md. */
#define SHMRPC_HEALTH_METHOD_ID UINT32_C(0xFFFFFFFF)

typedef enum shmrpc_health {
    SHMRPC_HEALTH_SERVING = 1,     /* serving calls */
    SHMRPC_HEALTH_NOT_SERVING = 2, /* up, but no service registered */
    SHMRPC_HEALTH_DRAINING = 3,    /* told to stop: finishes the calls it took, takes no more */
} shmrpc_health;

/* "serving", "not_serving", "draining", or "unknown". */
const char *shmrpc_health_name(int state);

/* Asks the connected server's health (with this client's timeout for the next call);
 * a client with an empty method table can ask any service. The status of the call
 * (SHMRPC_ECLOSED when not connected, SHMRPC_EUNAVAIL, SHMRPC_ETIMEOUT, ...), or
 * SHMRPC_EPROTO for an answer that is not a state; 0 with *state set. */
int shmrpc_client_health(shmrpc_client *c, shmrpc_health *state);

/* --- for generated stubs ---
 * A call: shmrpc_client_request() clears the request buffer, the arena and the previous
 * response; the stub encodes into the buffer, calls shmrpc_client_call(), and decodes
 * the response, whose bytes (and the arena) stay valid until the next call. */
shmrpc_buf *shmrpc_client_request(shmrpc_client *c);
shmrpc_arena *shmrpc_client_arena(shmrpc_client *c);
/* SHMRPC_ECLOSED when not connected, SHMRPC_ENOENT for a method_id outside the
 * client's table, the request buffer's sticky error, or the call's status. */
int shmrpc_client_call(shmrpc_client *c, uint32_t method_id, shmrpc_bytes *resp);
/* Records a message (printf-style) for shmrpc_errmsg() and returns rc. */
int shmrpc_client_error(shmrpc_client *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* For a response that does not decode; returns SHMRPC_EINVAL. The message reads as
 * shmrpc_ctx_decode_error's with what = "result": "Echo.add: result: truncated". */
int shmrpc_client_decode_error(shmrpc_client *c, const char *method, const char *field,
                               const char *why);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
