/* SPDX-License-Identifier: MIT */
/* What the transports are built on (shmrpc__*): method tables, the server as a transport
 * sees it and its dispatch, tcp:// settings, and the transport plug-in points. */
#ifndef SHMRPC_SRC_RPC_H
#define SHMRPC_SRC_RPC_H

#include <stdatomic.h>

#include "core/core.h"

/* --- descriptors (verify.c) --------------------------------------------------------- */

/* Checks a service info: magic (SHMRPC_EINVAL), version (SHMRPC_EVERSION), a name,
 * methods sorted strictly by name with methods[i].id == i, names and signatures set,
 * known encodings. A service with no methods is allowed. The first problem goes to err. */
int shmrpc__info_check(const shmrpc_service_info *info, shmrpc_buf *err);

/* Maps each client method id to the server's id for the same name (map has
 * client->n_methods entries). Every client method must exist on the server, with an
 * equal fingerprint or a compatible signature (shmrpc__compat_method); the server may
 * have more. Otherwise SHMRPC_EMISMATCH, with a message in err naming every method that
 * cannot be called and why. On success, diffs (when not NULL) gets the verdict: empty when
 * every fingerprint is equal, else "compatible, with these differences: ...". Both infos
 * must have passed shmrpc__info_check (sorted by name), so this is one merge walk. */
int shmrpc__method_map(const shmrpc_service_info *client, const shmrpc_service_info *server,
                       uint32_t *map, shmrpc_buf *err, shmrpc_buf *diffs);

/* --- compatible evolution (compat.c) ------------------------------------------------- */

/* The comparison of a client's table with a server's, method by method: each table's
 * types parsed once, each pair of structs or enums compared once. */
typedef struct shmrpc__compat shmrpc__compat;

/* SHMRPC_ENOMEM. Both infos outlive it. */
int shmrpc__compat_new(shmrpc__compat **out, const shmrpc_service_info *client,
                       const shmrpc_service_info *server);
void shmrpc__compat_free(shmrpc__compat *c);

/* Whether the client's cm can call the server's sm (same name, other fingerprints) by the
 * rules of docs/svc-language.md: 0, with each difference the codecs bridge appended to
 * diffs (", "-separated: "struct Point: field 'z' (f64?) only on the server (...)"), or
 * SHMRPC_EMISMATCH with the reason in *why (valid until the next call): "arguments:
 * parameter 1 is 'a' on the client and 'b' on the server (renamed, removed or
 * reordered)". A table whose types or signature do not parse is a reason too. */
int shmrpc__compat_method(shmrpc__compat *c, const shmrpc_method_info *cm,
                          const shmrpc_method_info *sm, shmrpc_buf *diffs, const char **why);

/* --- what a transport sees of a server (dispatch.c) ----------------------------------
 * A transport reads its server and runs calls through these, never through server.c,
 * which calls the transports (through the table): the calls run one way. */

const shmrpc_service_info *shmrpc__server_info(const shmrpc_server *s);
size_t shmrpc__server_max_msg(const shmrpc_server *s);
const shmrpc_wait_opts *shmrpc__server_wait(const shmrpc_server *s);
/* The opts the server was made with, each transport's part checked by its check_opts;
 * a secret in them points into the server. */
const shmrpc_server_opts *shmrpc__server_opts(const shmrpc_server *s);
/* The count of workers wanted (shmrpc_server_serve, shmrpc_server_set_workers). */
_Atomic int *shmrpc__server_want(shmrpc_server *s);

#define SHMRPC__CTX_MSG_CAP 256

/* One per connection: used by one call at a time. */
struct shmrpc__stats_row;

struct shmrpc_ctx {
    shmrpc_arena *arena;             /* reset after every call */
    void *user;                      /* the server's user pointer */
    struct shmrpc__stats_row *stats; /* this worker's row per method, or NULL (stats.h) */
    uint32_t stats_n;                /* how many */
    /* Set by a transport that counts a call after its answer (shmrpc__ctx_count), so that
     * the clock read that ends its time is not one more the caller waits for: then the
     * call dispatch ran last, its start and status, until counted. */
    bool count_later;
    bool count_due;
    int count_rc;
    uint32_t count_id;
    int64_t count_t0;
    bool draining;   /* the transport's worker was told to stop (health) */
    bool timed;      /* set by a transport that counts the call itself: dispatch times it */
    int64_t ran_ns;  /* with timed or stats: how long the last call's handler took, or -1
                      * when dispatch counted none (the health method, a bad id or size) */
    uint32_t method; /* the id of the call being dispatched */
    /* The answer's room in the transport (shmrpc_ctx_loan): a transport that has one (shm://)
     * sets loan and loan_arg; NULL gives memory of the arena. resp is the answer buffer of
     * the dispatch running; while loaned, it points into the transport and its own storage
     * waits in saved_data and saved_cap, until shmrpc__ctx_unloan. */
    int (*loan)(void *arg, size_t size, void **ptr);
    void *loan_arg;
    /* Set by the transport for a call whose request the handler reads in the room a loan
     * would give without having asked to (SHMRPC__READ_LARGE): the handler's own loans then
     * come from the arena, so that writing its answer cannot overwrite what it still reads;
     * shmrpc_ctx_answer_raw, after the handler, still answers in the room. */
    bool req_in_room;
    shmrpc_buf *resp;
    size_t max_msg; /* the server's, for loans */
    /* The call's deadline (shmrpc_ctx_deadline): the time its client gives it, in ns from
     * when it began here, or -1 for none; set by a transport that carries it, before each
     * dispatch (which sets it back to -1 after the call). began_ns: when dispatch began the
     * call, when it read the clock for its statistics; else 0 until the deadline is asked. */
    int64_t budget_ns;
    int64_t began_ns;
    /* The clock as the transport read it just before dispatch, or 0: dispatch takes it as
     * the call's beginning instead of reading the clock again, and sets it back to 0. */
    int64_t now_ns;
    /* Whether the call's client still waits for it (shmrpc_ctx_cancelled): the transport's
     * look, which returns 0 or why not (SHMRPC_ETIMEDOUT: it gave up at its deadline;
     * SHMRPC_EPEERDIED: it died); NULL for a transport that cannot tell. */
    int (*wanted)(void *arg);
    void *wanted_arg;
    bool loaned;
    uint8_t *saved_data;
    size_t saved_cap;
    bool has_msg;
    char msg[SHMRPC__CTX_MSG_CAP];
    /* The call's metadata (rpc/meta.c, shmrpc__ctx_set_meta, set by the transport before
     * dispatch): decoded into the arena, or NULL; the client's tracestate in it; the call's
     * traceparent, "" until it has one (the client's continued, a fresh one, or the handler's),
     * whose span id is drawn only when it is first read (span_due; shmrpc_ctx_traceparent):
     * most handlers never read it. Dispatch forgets them after the call. */
    const shmrpc_metadata *meta;
    const char *tracestate;
    char trace[SHMRPC_TRACEPARENT_SIZE];
    bool span_due;
    /* A call whose result is a stream (docs/streams.md): how the transport sends one item
     * (shmrpc_ctx_send), set by it before dispatch, NULL for any other call; and the buffer
     * items are encoded into. */
    int (*send)(void *arg, const void *item, size_t n);
    void *send_arg;
    shmrpc_buf item;
    /* A call whose parameter is a stream: how the transport gives the handler the client's
     * next item (shmrpc_ctx_recv: 1 and the item appended to item, 0 after the client's
     * last, or why the stream cannot go on), set by it before dispatch, NULL for any other
     * call; the item read last, and the arena it decodes into, both reset at each read. */
    int (*recv)(void *arg, shmrpc_buf *item);
    void *recv_arg;
    shmrpc_buf in_item;
    shmrpc_arena *in_arena;
};

int shmrpc__ctx_init(shmrpc_ctx *ctx, shmrpc_server *s);
/* Makes dispatch count the calls of ctx in rows (n of them, by method id); NULL: none. */
void shmrpc__ctx_set_stats(shmrpc_ctx *ctx, struct shmrpc__stats_row *rows, uint32_t n);
/* Counts the call that dispatch ran last in its method's row, when ctx->count_later, as
 * ended at now (the caller's clock read after its answer). */
void shmrpc__ctx_count(shmrpc_ctx *ctx, int64_t now);
void shmrpc__ctx_destroy(shmrpc_ctx *ctx);
/* Gives the answer buffer of ctx's last dispatch its own storage back after a handler
 * answered in a loan (shmrpc_ctx_loan): the transport calls it once it has sent the answer.
 * Nothing when there was no loan. */
void shmrpc__ctx_unloan(shmrpc_ctx *ctx);
/* How the handler of method id reads a request that a transport has in memory the client
 * can write (shm://'s channel; docs/shm-transport.md, "Large @raw calls"): */
enum {
    SHMRPC__READ_UNSET,    /* (shmrpc_server_set_in_place was not called for it) */
    SHMRPC__READ_COPY,     /* from a private copy: typed methods, or set so */
    SHMRPC__READ_IN_PLACE, /* where the client wrote it: set so */
    SHMRPC__READ_LARGE,    /* a @raw method left as it is: in place from
                            * SHMRPC__IN_PLACE_MIN bytes, and then its loans are not there */
};
int shmrpc__server_reads(const shmrpc_server *s, uint32_t id);
/* The size from which a @raw request is read in place unasked (SHMRPC__READ_LARGE): below
 * it a copy costs less than the lines a handler reading in place pulls across, measured by
 * shmrpc-bench's shm/raw rows (docs/shm-transport.md). */
#define SHMRPC__IN_PLACE_MIN 1024
/* The size from which shmrpc_ctx_answer_raw puts an answer straight into the transport's
 * room (service.h): a shorter one is copied for less than the loan costs. */
#define SHMRPC__ROOM_MIN 256
/* timeout_ms (SHMRPC_TIMEOUT_INFINITE or more than 0) for a call made on this thread,
 * cut to what is left of the deadline of the call whose handler runs on it, if any: a call
 * made from a handler inherits its deadline (0 when it passed already). */
int64_t shmrpc__ctx_inherit(int64_t timeout_ms);
/* The message of the last failed dispatch on this ctx. */
const char *shmrpc__ctx_msg(const shmrpc_ctx *ctx);

/* Runs one call of the server's method id (the server's index), or answers the built-in
 * health method (SHMRPC_HEALTH_METHOD_ID: one byte, a shmrpc_health) without a handler,
 * draining once the server or ctx->draining says it was told to stop. Runs one call with the
 * request bytes req, encoding the result into resp (cleared first, capped at the server's maximum),
 * inside the server's interceptors (shmrpc_server_intercept), which the health method skips.
 * Returns the handler's status (or an interceptor's); on failure shmrpc__ctx_msg(ctx) says
 * why (the handler's message, or shmrpc_strerror(rc) when it set none). Resets ctx's arena
 * afterwards.
 * Safe to run on several threads at once with different ctx and resp: it reads the
 * server only, which does not change once it listens. */
int shmrpc__dispatch(shmrpc_server *s, shmrpc_ctx *ctx, uint32_t id, shmrpc_bytes req,
                     shmrpc_buf *resp);

/* --- tcp:// settings, resolved (tcp.c) ----------------------------------------------- */

typedef struct shmrpc__tcp_cfg {
    uint16_t compression;  /* the wire's flag bits (SHMRPC__FLAG_*); 0: none */
    bool compression_auto; /* not set: a client offers none to a loopback address */
    uint32_t threshold;
    int64_t connect_ns, handshake_ns, idle_ns, progress_ns;
    int64_t attempt_delay_ns, probe_ns, resolve_ns; /* a client's endpoint lists (client_*.c) */
    int max_conns, max_per_addr;
    int max_in_flight; /* a client's asynchronous calls per connection */
    int max_running;   /* a server's calls of one connection running at once */
    /* The newest protocol revision this side speaks in a handshake: SHMRPC__WIRE_PROTO, or
     * lower when the environment variable SHMRPC_TEST_WIRE_PROTO (1 or more) said so when
     * the client or server was made. For tests only: it makes a client or a server of an
     * older revision out of this one (docs/wire.md, "The handshake"). */
    uint32_t wire_proto;
    size_t budget;     /* bytes of buffered frames, over all workers */
    size_t secret_len; /* 0: no secret */
    uint8_t secret[SHMRPC_SECRET_MAX];
    /* TLS (tls.c): a client's choice and checking; the files ("" when not given). A
     * server serves TLS when it has tls_cert. */
    int tls, tls_verify;
    char tls_cert[SHMRPC_TLS_PATH_MAX], tls_key[SHMRPC_TLS_PATH_MAX];
    char tls_ca[SHMRPC_TLS_PATH_MAX], tls_server_name[SHMRPC_TLS_PATH_MAX];
} shmrpc__tcp_cfg;

/* The defaults filled in for o's zeros (o may be NULL), the secret and the TLS strings
 * copied; SHMRPC_EINVAL for a negative timeout or count, unknown compression bits, a
 * secret of a length outside SHMRPC_SECRET_MIN..SHMRPC_SECRET_MAX, an unknown tls or
 * tls_verify, a TLS string of SHMRPC_TLS_PATH_MAX bytes or more, or a tls_key without a
 * tls_cert. */
int shmrpc__tcp_cfg_init(shmrpc__tcp_cfg *cfg, const shmrpc_tcp_opts *o);

/* The server's method table as a client last received it (client.c holds it; a transport
 * fills it with shmrpc__table_accept). */
typedef struct shmrpc__table {
    shmrpc_arena *arena; /* names, signatures and methods; reset by each keep */
    shmrpc_service_info info;
    /* The verdict of the last accept (shmrpc__method_map's diffs), in arena: "" when every
     * fingerprint was equal. */
    const char *compat;
    /* Which methods the tables kept mark @idempotent: the last one's (FNV-1a 64 of their
     * names), and whether two tables kept since `kept` was last cleared (a client's
     * connect) disagreed, as an endpoint list's servers in a rolling upgrade may: then a
     * client cannot tell which one a failed call ran on, and retries nothing
     * (docs/retries.md). */
    uint64_t idem;
    bool kept;
    bool idem_differs;
} shmrpc__table;

/* Whether the signature a method table carries marks its method @idempotent. */
bool shmrpc__sig_idempotent(const char *signature);
/* Which way a method streams: SHMRPC__STREAM_OUT (its result), SHMRPC__STREAM_IN (its one
 * parameter), both, or 0 (it answers once; docs/streams.md). */
enum { SHMRPC__STREAM_OUT = 1, SHMRPC__STREAM_IN = 2, SHMRPC__STREAM_WAYS = 3 };
/* Which way the signature a method table carries streams: its result ("NAME(...)->
 * stream<T> @..."), its parameter ("NAME(stream<T> p)->..."), both, or neither. */
int shmrpc__sig_streams(const char *signature);
/* Which way method id of s's service streams; 0 too for no such method. */
int shmrpc__server_streams(const shmrpc_server *s, uint32_t id);

/* Copies server (which passed shmrpc__info_check) into t. SHMRPC_ENOMEM. */
int shmrpc__table_keep(shmrpc__table *t, const shmrpc_service_info *server);

/* The method-table check of a connect, one for every transport (verify.c): maps the
 * client's methods onto the server's table (shmrpc__method_map, SHMRPC_EMISMATCH naming
 * each method that differs), then keeps the server's table in t (SHMRPC_ENOMEM). A
 * transport calls it once the server has proven who it is, at every connect and
 * reconnect. */
int shmrpc__table_accept(const shmrpc_service_info *client, const shmrpc_service_info *server,
                         uint32_t *map, shmrpc__table *t, shmrpc_buf *err);

/* What a client's connections are made with, resolved from its opts (client.c). */
typedef struct shmrpc__client_cfg {
    size_t max_msg;
    shmrpc_wait_opts wait;
    shmrpc__tcp_cfg tcp;
    /* The client's call timeout when it connects (ms, or SHMRPC_TIMEOUT_INFINITE): a
     * tcp:// connect ends by then too, as a call's attempts to connect end by its deadline. */
    int64_t connect_call_ms;
} shmrpc__client_cfg;

/* --- transports (transport.c, inproc.c) ----------------------------------------------
 * A transport connects clients and makes servers listen for one address scheme.
 * Connections and listeners start with a pointer to their ops, so client.c and
 * server.c hold them without knowing the transport. */
typedef struct shmrpc__conn shmrpc__conn;
typedef struct shmrpc__listener shmrpc__listener;

/* An asynchronous call as a transport sees it (client.c embeds it in a shmrpc_call). A
 * transport that takes it (start) links it where it waits, and finishes it (done, status,
 * the answer in resp or the reason in msg) once its answer came, its connection broke or
 * its deadline passed. */
typedef struct shmrpc__pending {
    struct shmrpc__pending *next, *prev; /* the transport's list, while it waits */
    void *where;                         /* the transport's: its connection, or NULL */
    uint64_t rid;                        /* its request id there */
    uint32_t sid;                        /* the server's method id */
    int64_t j;                           /* the client's method id, or -1 (health) */
    int64_t deadline;                    /* CLOCK_MONOTONIC ns; INT64_MAX: none */
    int64_t timeout_ms;                  /* what deadline was made of (ms, or
                                            SHMRPC_TIMEOUT_INFINITE) */
    uint64_t tried;                      /* endpoints it went to and did not run on */
    bool done;
    int status;
    shmrpc_buf req;  /* its request, kept while it may still move to another endpoint */
    shmrpc_buf meta; /* its metadata (shmrpc__conn.meta when it was started), kept so too */
    shmrpc_buf resp; /* its answer, capped at the client's maximum */
    shmrpc_buf msg;  /* why it failed */
} shmrpc__pending;

typedef struct shmrpc__conn_ops {
    /* One call of the server's method sid: req out, the response appended to resp
     * (cleared by the caller, capped at the client's maximum). timeout_ms is resolved:
     * milliseconds, or SHMRPC_TIMEOUT_INFINITE. On failure the message goes to err. Never
     * called while calls started on c are not yet returned by a wait: client.c makes such
     * a call through start and progress, as one of them. */
    int (*call)(shmrpc__conn *c, uint32_t sid, shmrpc_bytes req, shmrpc_buf *resp,
                int64_t timeout_ms, shmrpc_buf *err);
    /* Ends the connection and frees it. A transport with start has no call waiting then
     * (client.c abandons them first). */
    void (*close)(shmrpc__conn *c);
    /* Optional, for many calls in flight (client.c runs a transport without them one call
     * at a time, through call): start sends p's request (p->req) of method p->sid and
     * keeps p until it is done; a call that fails at once is done on return (0 either
     * way). progress waits until some call of c is done or deadline (ns) passes, finishing
     * calls whose own deadlines passed. abandon forgets p, done or not: an answer that
     * comes for it later is dropped. */
    int (*start)(shmrpc__conn *c, shmrpc__pending *p, shmrpc_buf *err);
    void (*progress)(shmrpc__conn *c, int64_t deadline);
    void (*abandon)(shmrpc__conn *c, shmrpc__pending *p);
    /* Optional, with start: abandons p, which is not done, and tells its server that the
     * client gave up on it (shmrpc_ctx_cancelled); without it, client.c abandons p. */
    void (*cancel)(shmrpc__conn *c, shmrpc__pending *p);
    /* Optional, for loaned buffers (client.c gives a transport without them a loan in the
     * client's request buffer, sent through call): loan makes room for a request of up to
     * size bytes of method sid where the transport will send it from (the channel, over
     * shm://) and points *ptr at it, waiting within timeout_ms for an earlier call that
     * still holds that room; call_loaned sends the first len bytes of the last loan
     * (len <= its size) and points *resp at the answer where it arrived, valid until the
     * next loan or call on c. A loan that c can no longer send (its connection broke since)
     * fails the call with SHMRPC_EUNAVAIL: it did not run. */
    int (*loan)(shmrpc__conn *c, uint32_t sid, size_t size, void **ptr, int64_t timeout_ms,
                shmrpc_buf *err);
    int (*call_loaned)(shmrpc__conn *c, uint32_t sid, size_t len, shmrpc_bytes *resp,
                       int64_t timeout_ms, shmrpc_buf *err);
    /* Optional (client.c calls call without it): call, but *resp points at the answer where
     * it arrived (shm://'s channel), valid until the next loan or call on c; for a @raw
     * method's call (shmrpc_client_call_raw). */
    int (*call_view)(shmrpc__conn *c, uint32_t sid, shmrpc_bytes req, shmrpc_bytes *resp,
                     int64_t timeout_ms, shmrpc_buf *err);
    /* Optional, all three or none (client.c refuses a stream without them): a call of
     * method sid, which streams its result, its parameter or both (ways: SHMRPC__STREAM_OUT,
     * _IN), with request req (docs/streams.md). open sends it, and its deadline bounds the
     * whole stream; recv waits for its next item: 1 and the
     * item appended to item (cleared by the caller), 0 at the end, or the stream's status
     * with its message in err; end stops a stream that has not ended (its handler told) and
     * forgets it. One stream at a time on c, and no call while it is open. */
    int (*stream_open)(shmrpc__conn *c, uint32_t sid, int ways, shmrpc_bytes req,
                       int64_t timeout_ms, shmrpc_buf *err);
    int (*stream_recv)(shmrpc__conn *c, shmrpc_buf *item, shmrpc_buf *err);
    void (*stream_end)(shmrpc__conn *c);
    /* Optional: recv with the item (or the answer at the end) given in place, valid until
     * the next recv or end, rather than copied; client.c uses it for a stream's items. */
    int (*stream_view)(shmrpc__conn *c, shmrpc_bytes *item, shmrpc_buf *err);
    /* Optional, both or none (client.c refuses a client stream without them), for a method
     * whose parameter is a stream: send queues an item for the handler, waiting while the
     * items in transit fill what the transport holds: 0, or why it cannot (err): the
     * stream's deadline, a cancel, its server gone, or SHMRPC_ECLOSED when the handler
     * returned (recv then gives the end); done tells the handler that no item follows (its
     * reads then give 0). When its result is not a stream, recv gives no item: 0 at the
     * end, with the handler's answer appended to item, or the stream's status. */
    int (*stream_send)(shmrpc__conn *c, const void *item, size_t n, shmrpc_buf *err);
    void (*stream_done)(shmrpc__conn *c);
    /* Optional (without it, a cork changes nothing): on, send may hold items to send them
     * together; off, what it holds is sent: 0, or why not, as send. */
    int (*stream_cork)(shmrpc__conn *c, bool on, shmrpc_buf *err);
} shmrpc__conn_ops;

struct shmrpc__conn {
    const shmrpc__conn_ops *ops;
    /* Cancellation (shmrpc_client_cancel): the client's count of cancels, which any thread
     * may raise (NULL: none can come), and what it was when the call being made began. The
     * client sets both; a transport asks shmrpc__conn_cancelled in its waits. */
    const _Atomic uint32_t *cancels;
    uint32_t cancels_seen;
    /* The metadata of the call being made (rpc/meta.h's encoding), len 0 for none: set by the
     * client before each call, start or loan; a transport sends it with the request (one
     * that cannot carry it, sends the call without). */
    shmrpc_bytes meta;
};

/* Whether the call being made on c was cancelled since it began: the transport then ends
 * it with SHMRPC_ECANCELLED, within about SHMRPC__CHECK_NS (core/wait.h). */
static inline bool shmrpc__conn_cancelled(const shmrpc__conn *c)
{
    return c->cancels && atomic_load_explicit(c->cancels, memory_order_relaxed) != c->cancels_seen;
}

typedef struct shmrpc__listener_ops {
    /* Stops serving; returns once no call of this listener runs any more. */
    void (*close)(shmrpc__listener *l);
    /* Serves with workers processes (0: on the calling thread) until stop; or NULL when
     * calls run on their callers' threads and there is nothing to run. */
    int (*serve)(shmrpc__listener *l, int workers);
    /* Makes serve return; async-signal-safe. NULL with serve. */
    void (*stop)(shmrpc__listener *l);
    /* Wakes the manager to look at the count of workers wanted; async-signal-safe. NULL
     * when there are no workers. */
    void (*poke)(shmrpc__listener *l);
} shmrpc__listener_ops;

struct shmrpc__listener {
    const shmrpc__listener_ops *ops;
};

typedef struct shmrpc__transport {
    const char *scheme; /* "inproc" */
    /* Connects to where (the address after "scheme://") and verifies the method
     * table with shmrpc__table_accept, filling map and table. cfg outlives the
     * connection. */
    int (*connect)(const char *where, const shmrpc_service_info *info,
                   const shmrpc__client_cfg *cfg, uint32_t *map, shmrpc__table *table,
                   shmrpc__conn **out, shmrpc_buf *err);
    /* Serves s at where; s has a registered service. */
    int (*listen)(shmrpc_server *s, const char *where, shmrpc__listener **out, shmrpc_buf *err);
    /* Optional: checks this transport's part of a server's opts (SHMRPC_EINVAL), so that
     * shmrpc_server_new refuses a bad one, not the first listen. The server knows no
     * transport's settings: listen reads them back with shmrpc__server_opts. */
    int (*check_opts)(const shmrpc_server_opts *o);
} shmrpc__transport;

/* Each transport's entry, which api/transport.c lists by scheme. */
extern const shmrpc__transport shmrpc__inproc_transport;
extern const shmrpc__transport shmrpc__shm_transport;
extern const shmrpc__transport shmrpc__tcp_transport;

#endif
