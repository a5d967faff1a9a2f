/* SPDX-License-Identifier: MIT */
/* The client handle that generated stubs call through. A handle is used by one thread
 * at a time; open one per thread for concurrent calls. */
#ifndef SHMRPC_CLIENT_H
#define SHMRPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/arena.h>
#include <shmrpc/buf.h>
#include <shmrpc/decls.h>
#include <shmrpc/service.h>
#include <shmrpc/tcp.h>
#include <shmrpc/wait.h>

SHMRPC_BEGIN_DECLS

typedef struct shmrpc_client shmrpc_client;

/* Durations are milliseconds, with two sentinels. */
#define SHMRPC_TIMEOUT_INFINITE ((int64_t)-1)
#define SHMRPC_TIMEOUT_DEFAULT ((int64_t)-2)
#define SHMRPC_DEFAULT_TIMEOUT_MS ((int64_t)5000)

/* Retries of the calls of @idempotent methods (docs/retries.md). A blocking call
 * (shmrpc_client_call: generated stubs, the dynamic client, Python) of a method that the
 * server's table marks @idempotent (read at shmrpc_client_connect; every server met since
 * must agree, or none is retried), and that failed with SHMRPC_EPEERDIED (it may have run;
 * over tcp://, also a connection lost after the request was sent) or SHMRPC_EUNAVAIL (the
 * server is away for the moment: none, draining or gone; or its handler said so), is made
 * again after a backoff with full jitter (a random wait between 0 and initial_backoff_ms *
 * backoff_multiplier^(n-1), at most max_backoff_ms, before retry n), up to max_attempts
 * attempts in all, and only while
 * its deadline leaves time for another: the deadline bounds the whole call, backoffs
 * included. Every other call is made at most once, as always; a call cancelled or timed out
 * is never retried, nor a started call, nor a loaned one over shm://.
 * The budget, gRPC's retry throttling: each client holds max_tokens tokens; every attempt
 * of an @idempotent method that fails so takes one, every one that succeeds gives back
 * token_ratio (up to max_tokens), and a retry is made only while more than max_tokens / 2
 * are left, so that a server that keeps failing sees about its own load, not max_attempts
 * times it. */
typedef struct shmrpc_retry_opts {
    uint32_t max_attempts;      /* first attempt included, at most 100; 0 or 1: no retries; 5 */
    int64_t initial_backoff_ms; /* before the first retry, at most; 5 */
    int64_t max_backoff_ms;     /* the cap of every backoff; 200 */
    double backoff_multiplier;  /* >= 1; 2 */
    uint32_t max_tokens;        /* the budget, 1..1000; 10 */
    double token_ratio;         /* given back by a success, > 0 and <= 1; 0.1 */
} shmrpc_retry_opts;

typedef struct shmrpc_client_opts {
    int64_t timeout_ms;      /* each call's deadline; SHMRPC_TIMEOUT_DEFAULT: 5 s */
    size_t max_msg_bytes;    /* largest request or response; 0: SHMRPC_DEFAULT_MAX_MSG */
    shmrpc_wait_opts wait;   /* how calls wait for their answers (shm://) */
    shmrpc_tcp_opts tcp;     /* timeouts, compression and the shared secret (tcp://) */
    shmrpc_retry_opts retry; /* retries of @idempotent methods; max_attempts 0: none */
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

/* What the last connect found of the server's methods that this client's differ from but
 * can call by the rules of compatible evolution (docs/svc-language.md): "" when every
 * method's fingerprint is the server's, else "compatible, with these differences: 'm':
 * struct Point: field 'z' (f64?) only on the server (...); ...". A connect that finds a
 * method it cannot call fails with SHMRPC_EMISMATCH and says why instead. NULL when not
 * connected; valid as long as shmrpc_client_server_info's answer. */
const char *shmrpc_client_compat(const shmrpc_client *c);

/* The deadline of every later call, and an override for the next call only.
 * SHMRPC_TIMEOUT_DEFAULT means the opts' timeout (for next_timeout: no override); any
 * other negative value but SHMRPC_TIMEOUT_INFINITE reads as SHMRPC_TIMEOUT_DEFAULT.
 * inproc:// calls run the handler on the caller's thread and cannot time out: the handler
 * still has the deadline (shmrpc_ctx_deadline; shmrpc_ctx_cancelled says SHMRPC_ETIMEDOUT
 * once it passed, though the caller waits on), and the calls it makes inherit it. */
void shmrpc_client_set_timeout(shmrpc_client *c, int64_t ms);
void shmrpc_client_next_timeout(shmrpc_client *c, int64_t ms);
/* A call made from inside a handler, on the handler's thread, inherits the deadline of the
 * call being served: its timeout is cut to the time that call has left
 * (shmrpc_ctx_deadline), so that work done for a client that gave up stops where the
 * client stopped waiting (a call whose deadline passed already fails at once with
 * SHMRPC_ETIMEDOUT). own = true keeps this client's own timeouts instead, as for a call
 * whose result outlives the call being served. */
void shmrpc_client_own_deadline(shmrpc_client *c, bool own);

/* Cancels every call of c in flight: the blocking (or loaned) call another thread is making
 * on c, and c's started calls not done yet. Each ends with SHMRPC_ECANCELLED within about
 * 20 ms of waiting for its answer (it looks between steps of its wait; a tcp:// call still
 * connecting or sending ends by its deadline), except over inproc://, where the handler runs
 * on the caller's thread and the call returns what it returns; the message says whether it
 * may have run (a call no worker had taken yet did not). The server's handler sees shmrpc_ctx_cancelled
 * say SHMRPC_ECANCELLED: over shm://, and over tcp:// from protocol revision 5 (a CANCEL
 * frame, docs/wire.md); over inproc:// it runs on the caller's thread and sees it too.
 * Calls begun after it are not cancelled. The one function of a client that any thread
 * may call while another uses it, and async-signal-safe (it raises a counter): a signal
 * handler can cancel. docs/deadlines.md, "Cancelling a call". */
void shmrpc_client_cancel(shmrpc_client *c);

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

/* --- many calls in flight (docs/wire.md, "Calls in flight") ---
 * shmrpc_client_start sends the request a stub encoded (as shmrpc_client_call does) and
 * returns at once with a call; shmrpc_client_wait waits until one of several calls is
 * done. Each call has its own deadline (timeout_ms as for shmrpc_client_next_timeout;
 * SHMRPC_TIMEOUT_DEFAULT: the client's timeout): once it passes the call is done with
 * SHMRPC_ETIMEDOUT and an answer that comes later is dropped.
 *
 * Ownership: a call is the caller's until shmrpc_call_free, whatever becomes of it. A
 * call freed before it is done is cancelled (shmrpc_call_cancel: its answer is dropped
 * when it comes). A
 * client freed or connected again with calls not done finishes them with SHMRPC_ECLOSED;
 * they are still to be freed, and shmrpc_call_free works after the client is gone.
 *
 * At most once, as for shmrpc_client_call: a call whose request was written whole to a
 * connection that then broke fails with SHMRPC_EPEERDIED (it may have run) and is never
 * sent again; one that never started (no connection, the request not written whole, the
 * server draining or leaving before it read it) may go to another endpoint within its
 * deadline, or fails with SHMRPC_EUNAVAIL. Over tcp:// up to shmrpc_tcp_opts.max_in_flight
 * calls are in flight on each connection, and answers may come in any order; over shm://
 * a call goes alone on a connection of its own to the service (opened as starts need them,
 * up to 64, and kept), or, while two of them are busy, in a batch of up to 16 calls that one
 * worker runs in order, each answered as it ends (docs/shm-transport.md, "Calls in
 * flight"); over inproc:// start runs the call to its end and wait returns it. A
 * client handle is still used by one thread at a time; shmrpc_client_call works while
 * calls are in flight. A started call is never retried, @idempotent or not
 * (docs/retries.md): its failure comes to the caller, who may start it again. */
typedef struct shmrpc_call shmrpc_call;

/* shmrpc_call_status of a call not done yet. */
#define SHMRPC_CALL_PENDING 1

/* Starts a call of method_id with the request in shmrpc_client_request's buffer. *call is
 * set whenever 0 is returned, even for a call that already failed (its status says so);
 * the function fails only with SHMRPC_EINVAL, SHMRPC_ENOMEM, SHMRPC_ECLOSED (not
 * connected), SHMRPC_ENOENT (no such method) or the request buffer's error, and then
 * sets *call to NULL. */
int shmrpc_client_start(shmrpc_client *c, uint32_t method_id, int64_t timeout_ms,
                        shmrpc_call **call);
/* Waits up to timeout_ms (SHMRPC_TIMEOUT_INFINITE: until one is done, which each call's
 * own deadline bounds) until one of the n calls is done: 0 and its index in *which (the
 * first done, when several are). SHMRPC_ETIMEDOUT when none was done in time (the calls
 * go on), SHMRPC_EINVAL for a call of another client or n == 0. */
int shmrpc_client_wait(shmrpc_client *c, shmrpc_call *const *calls, size_t n, int64_t timeout_ms,
                       size_t *which);
/* Cancels one started call not done yet (nothing for one that is done): it is done at once
 * with SHMRPC_ECANCELLED (it may have run), its answer dropped when it comes, and over
 * tcp:// of revision 5 its handler told (shmrpc_ctx_cancelled). A call freed before it is
 * done is cancelled so too. */
void shmrpc_call_cancel(shmrpc_call *call);
/* SHMRPC_CALL_PENDING, or the status of the call that is done. */
int shmrpc_call_status(const shmrpc_call *call);
/* The status of a call that is done (SHMRPC_CALL_PENDING if it is not), its answer in
 * *resp (valid until shmrpc_call_free), and its message in shmrpc_errmsg(). */
int shmrpc_call_result(shmrpc_call *call, shmrpc_bytes *resp);
void shmrpc_call_free(shmrpc_call *call);
/* For generated NAME_finish stubs: waits for call (until its deadline), frees it, and
 * leaves its answer where shmrpc_client_call leaves one (valid until the next call). */
int shmrpc_client_finish(shmrpc_client *c, shmrpc_call *call, shmrpc_bytes *resp);

/* --- loaned buffers: large messages without copies (docs/shm-transport.md) ---
 * shmrpc_client_loan gives room for a request of up to size bytes of method_id where the
 * transport sends it from: over shm:// the connection's channel itself, where the worker
 * reads it. The program writes the request there (for a @raw method, its bytes; for any
 * other, its encoding) and sends its first len bytes with shmrpc_client_call_loaned, which
 * copies nothing and points *resp at the answer where it arrived (over shm://, in the
 * channel): valid, as shmrpc_client_call's, until the next call or loan on this client.
 * Over tcp:// and inproc:// the room is the client's request buffer and the answer its
 * response buffer, so portable code can use the same calls anywhere. A loan is used by
 * one call: the room is not to be touched after shmrpc_client_call_loaned (nor after a
 * later loan or call, or shmrpc_client_free), and another call or loan in between gives it
 * up. The loan waits, within the next call's timeout, for an earlier call that timed out
 * and still holds the channel. Failures: SHMRPC_ETOOBIG for a size above the client's
 * maximum, or over shm:// the server's, which it knows then (nothing is sent; over tcp://
 * the call says so), SHMRPC_ECLOSED, SHMRPC_ENOENT, SHMRPC_EINVAL
 * (NULL arguments; a call without a loan, or with len above its size), SHMRPC_EUNAVAIL
 * when the connection broke between the loan and the call (the call did not run; loan
 * again), and otherwise the call's status as for shmrpc_client_call. Over shm:// a loaned
 * call is never retried, @idempotent or not (docs/retries.md): its request is in the
 * channel, which a broken connection takes with it; loan again and write it anew. Over
 * tcp:// and inproc://, where the loan is the request buffer, it is sent as
 * shmrpc_client_call sends one, and retried as that is. */
int shmrpc_client_loan(shmrpc_client *c, uint32_t method_id, size_t size, void **ptr);
int shmrpc_client_call_loaned(shmrpc_client *c, size_t len, shmrpc_bytes *resp);

/* --- streams: a method whose result or parameter is stream<T> (docs/streams.md) ---
 * shmrpc_client_open sends the request written into shmrpc_client_request's buffer, as
 * shmrpc_client_call would, and sets *stream; shmrpc_stream_recv then gives the items the
 * handler sends, in order, each once: 1 and the item in *item (valid until the next recv
 * or close, as what its decoding puts in shmrpc_stream_arena, and over tcp:// not past a
 * free or connect of the client, which ends the stream), 0 when the handler returned
 * 0 after its last item, or the stream's status (the handler's, SHMRPC_ETIMEDOUT at the
 * deadline, SHMRPC_ECANCELLED after shmrpc_client_cancel, SHMRPC_EPEERDIED, ...) with its
 * message; after the end, recv returns the same again. The deadline (the client's timeout
 * at the open) bounds the whole stream. A handler that sends faster than the items are
 * received waits for room: the items in transit are bounded (docs/streams.md, "Flow
 * control"). shmrpc_stream_close ends the stream, telling a handler still sending that it
 * is no longer wanted (its sends fail with SHMRPC_ECANCELLED), and frees it. One stream at
 * a time on a client, and no other call of that client while it is open (SHMRPC_EBUSY).
 * Fails as shmrpc_client_call, and with SHMRPC_EINVAL for a method that does not stream
 * (in the server's table) or a transport that carries no such stream yet.
 *
 * A method whose parameter is stream<T>: the request is its empty arguments, and
 * shmrpc_stream_send sends an item (its encoding), in order, waiting while the items in
 * transit fill what the transport holds: 0, or the stream's status once it ended
 * (SHMRPC_ECLOSED when its handler returned before it read the item: the end then says
 * how). shmrpc_stream_done tells the handler that no item follows (its reads give 0).
 * shmrpc_stream_answer, for a method whose result is not a stream, does that and waits for
 * the answer: 0 and its encoding in *answer (valid until close), or the stream's status.
 * A method that streams both ways sends with shmrpc_stream_send and receives with
 * shmrpc_stream_recv; a client that sends more than the transport holds before it
 * receives may wait for a handler that waits for it, until the deadline (for ever
 * without one). Its sends may come from one thread while another receives: one thread
 * calls shmrpc_stream_send and shmrpc_stream_done, the other shmrpc_stream_recv (and
 * shmrpc_client_cancel stays any thread's), and shmrpc_stream_close comes after both are
 * done with it. An end that one of them sees (the handler's, a failure) ends the other's
 * calls too: a send then fails with SHMRPC_ECLOSED, or with the status of the failure. */
typedef struct shmrpc_stream shmrpc_stream;

int shmrpc_client_open(shmrpc_client *c, uint32_t method_id, shmrpc_stream **stream);
int shmrpc_stream_recv(shmrpc_stream *s, shmrpc_bytes *item);
int shmrpc_stream_send(shmrpc_stream *s, const void *item, size_t n);
/* An empty buffer to encode the next item to send into, the stream's own, kept between
 * items (its maximum the client's); NULL for a stream whose parameter does not stream. */
shmrpc_buf *shmrpc_stream_item(shmrpc_stream *s);
int shmrpc_stream_done(shmrpc_stream *s);
/* Corks the stream's sends (on non-zero) or uncorks them, as TCP_CORK does a socket's
 * bytes: while corked, shmrpc_stream_send may hold an item back to send it with the next
 * ones (over tcp://, in one frame once they reach 16 KiB, rather than a frame and a system
 * call each); what it holds goes at the uncork, shmrpc_stream_done, a recv that waits, or a
 * wait for room (from two threads, within 20 ms of a recv's wait), and a close drops it.
 * For items that are all at hand (a list, a file); a client whose items come one by one,
 * each wanted at once, leaves it off (the default). 0, or what the uncork's send gave;
 * SHMRPC_EINVAL for a stream whose parameter does not stream. Over shm:// and inproc://,
 * which need no system call for an item, it changes nothing. */
int shmrpc_stream_cork(shmrpc_stream *s, int on);
int shmrpc_stream_answer(shmrpc_stream *s, shmrpc_bytes *answer);
shmrpc_arena *shmrpc_stream_arena(shmrpc_stream *s);
void shmrpc_stream_close(shmrpc_stream *s);
/* For generated NAME_recv and NAME_done stubs: an item that does not decode ends the
 * stream with SHMRPC_EINVAL (its handler told), the message as shmrpc_client_decode_error's
 * with "item": "Ticker.ticks: item, field 'Tick.at': expected integer, got string"; an
 * answer that does not decode makes the stream's status SHMRPC_EINVAL, with "result". */
int shmrpc_stream_decode_error(shmrpc_stream *s, const char *method, const char *field,
                               const char *why);

/* --- for generated stubs ---
 * A call: shmrpc_client_request() clears the request buffer and the previous response; the
 * stub encodes into the buffer, calls shmrpc_client_call(), which clears the arena once the
 * request is encoded (so the last call's results may be this call's arguments), and
 * decodes the response, whose bytes (and the arena) stay valid until the next call. */
shmrpc_buf *shmrpc_client_request(shmrpc_client *c);
shmrpc_arena *shmrpc_client_arena(shmrpc_client *c);
/* SHMRPC_ECLOSED when not connected, SHMRPC_ENOENT for a method_id outside the
 * client's table, the request buffer's sticky error, or the call's status. A call of a
 * method the server's table marks @idempotent is retried as shmrpc_retry_opts says; its
 * message then ends "[@idempotent: N attempts; why no more]" (docs/retries.md). */
int shmrpc_client_call(shmrpc_client *c, uint32_t method_id, shmrpc_bytes *resp);
/* shmrpc_client_call with the request req as it is (a @raw method's bytes, which the
 * generated stub passes on): sent from req itself, never copied into the request buffer,
 * so a transport copies it once, where it goes (over shm://, into the channel), and *resp
 * points at the answer where the transport has it (over shm://, the channel, written by
 * the worker, a process of this user: docs/shm-transport.md, "Large @raw calls"), valid
 * until the next call or loan on c (in a child forked meanwhile, until the parent's next
 * call: the channel is shared). req must stay as it is until the call returns; retries send
 * it again; the last answer, or a part of it, may be sent back (it is copied first).
 * Fails as shmrpc_client_call, and with SHMRPC_ETOOBIG for req above the client's maximum,
 * SHMRPC_EINVAL for a length with a NULL pointer. */
int shmrpc_client_call_raw(shmrpc_client *c, uint32_t method_id, shmrpc_bytes req,
                           shmrpc_bytes *resp);
/* Records a message (printf-style) for shmrpc_errmsg() and returns rc. */
int shmrpc_client_error(shmrpc_client *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* For a response that does not decode; returns SHMRPC_EINVAL. The message reads as
 * shmrpc_ctx_decode_error's with what = "result": "Echo.add: result: truncated". */
int shmrpc_client_decode_error(shmrpc_client *c, const char *method, const char *field,
                               const char *why);

SHMRPC_END_DECLS
#endif
