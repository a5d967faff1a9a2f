/* SPDX-License-Identifier: MIT */
/* The client handle behind generated stubs: buffers and an arena reused call after
 * call, the method-id map from connect, and the transport connection. */
#include <assert.h>
#include <stdlib.h>
#include <time.h>

#include "api/api.h"
#include "api/retry.h"
#include "core/wait.h"
#include "rpc/faults.h"
#include "rpc/intercept.h"
#include "rpc/meta.h"

struct shmrpc_client {
    const shmrpc_service_info *info;
    int64_t default_timeout; /* from the opts, resolved */
    int64_t timeout;         /* every call's */
    int64_t next_timeout;    /* the next call's, when has_next */
    bool has_next;
    bool own_deadline;      /* calls made from a handler keep this client's timeout */
    shmrpc__client_cfg cfg; /* what connections are made with */
    shmrpc_buf req;
    shmrpc_buf resp;
    /* A @raw call (shmrpc_client_call_raw) takes its answer where the transport has it
     * (conn->ops->call_view) rather than into resp; view: the last answer left there (a
     * @raw call's or a loaned one's), which the next @raw call must not send from. */
    bool want_view;
    shmrpc_bytes view;
    shmrpc_arena *arena;
    uint32_t *map;       /* client method id -> server method id; n_methods entries */
    shmrpc__table table; /* the server's, from the last connect */
    shmrpc__conn *conn;  /* NULL when not connected */
    shmrpc_call *calls;  /* asynchronous calls started and not yet returned by a wait */
    /* Calls freed, kept with their buffers for the next starts (call_new), at most
     * SPARE_MAX: a client with many calls in flight allocates none per call. */
    shmrpc_call *spare;
    unsigned n_spare;
    /* Every call made and not freed yet, done or not: the client's end tells them it is gone
     * (their client NULL), so that a call freed after it never looks at it. */
    shmrpc_call *out;
    bool loaned;         /* a loan waits for its call (shmrpc_client_loan) */
    bool loan_in_conn;   /* in the transport (conn->ops->loan), not in req */
    uint32_t loan_method;
    size_t loan_size;
    shmrpc__faults *faults; /* SHMRPC_FAULTS's client entries for this service, or NULL */
    /* Per method of the client's table, what takes its blocking calls off the plain path:
     * SLOW_FAULTS (SHMRPC_FAULTS has client entries) and SLOW_RETRY (the server's table at
     * the last connect says @idempotent, and retries are on). One load where the plain path
     * tested faults alone: a call of any other method costs what it did. */
    uint8_t *slow;
    shmrpc__retry retry; /* retry settings and budget (docs/retries.md) */
    shmrpc__icpts *icpt; /* its interceptors (shmrpc_client_intercept), or NULL */
    shmrpc_buf icmsg;    /* an intercepted call's message while its hooks run */
    /* Raised by shmrpc_client_cancel, from any thread: a call that began before ends with
     * SHMRPC_ECANCELLED (its connection's cancels points here). 32-bit: lock-free, so
     * async-signal-safe, everywhere; a call compares it for change, so it may wrap. */
    _Atomic uint32_t cancels;
    uint32_t cancels_handled;         /* its value when the started calls were last looked at */
    shmrpc__meta_set *meta;           /* shmrpc_client_metadata_set's pairs, or NULL */
    const shmrpc_metadata *call_meta; /* what the call being made sends, or NULL: none */
    shmrpc_stream *stream;            /* the stream open on conn, or NULL */
};
static_assert(ATOMIC_INT_LOCK_FREE == 2, "shmrpc_client_cancel is async-signal-safe");

/* A stream (shmrpc_client_open): the caller's until shmrpc_stream_close. */
struct shmrpc_stream {
    shmrpc_client *client; /* NULL once the client is gone */
    uint32_t j;            /* the method, in the client's table */
    /* SHMRPC_CALL_PENDING while items may come, then the end's: set after msg, by the
     * receiving thread, and read by a sending one (a stream both ways). */
    _Atomic int status;
    shmrpc_buf item;       /* the last item */
    shmrpc_buf out;        /* the item being sent (shmrpc_stream_item) */
    shmrpc_buf msg;        /* the end's message */
    shmrpc_arena *arena;   /* what the last item decoded into */
    uint32_t icpt_ran;     /* the befores that ran at the open, whose afters the end runs */
    int way;               /* SHMRPC__STREAM_OUT, _IN, or both: which way it streams */
    bool done;             /* the client sent its last item (shmrpc_stream_done) */
};

/* An asynchronous call: the caller's until shmrpc_call_free. */
struct shmrpc_call {
    shmrpc_client *client;    /* NULL once the client is gone */
    shmrpc_call *next, *prev; /* the client's calls, while the transport holds it */
    bool linked;
    shmrpc_call *out_next, *out_prev; /* the client's calls made and not freed (its out) */
    uint32_t cancels_seen; /* the client's cancels when it began */
    bool icpt_due;         /* the afters of its client's first icpt_ran interceptors */
    uint32_t icpt_ran;
    shmrpc__pending p;
};

enum { SLOW_FAULTS = 1, SLOW_RETRY = 2 };

/* The calls a client keeps for its next starts, and the most bytes of buffers one may keep. */
#define SPARE_MAX 64u
#define SPARE_BYTES ((size_t)64 * 1024)

/* Empty messages still get a valid pointer: a decoder computing ptr + 0 on NULL is
 * undefined behaviour. */
static const uint8_t empty[1];

void shmrpc_client_opts_init(shmrpc_client_opts *o)
{
    o->timeout_ms = SHMRPC_DEFAULT_TIMEOUT_MS;
    o->max_msg_bytes = SHMRPC_DEFAULT_MAX_MSG;
    shmrpc_wait_opts_init(&o->wait);
    o->tcp = (shmrpc_tcp_opts){0};
    shmrpc__retry_opts_init(&o->retry);
}

/* ms as a deadline: SHMRPC_TIMEOUT_INFINITE, or milliseconds >= 0; any other negative
 * value (SHMRPC_TIMEOUT_DEFAULT among them) means dflt. */
static int64_t resolve(int64_t ms, int64_t dflt)
{
    if (ms == SHMRPC_TIMEOUT_INFINITE || ms >= 0) return ms;
    return dflt;
}

int shmrpc_client_new(shmrpc_client **out, const shmrpc_service_info *info,
                      const shmrpc_client_opts *opts)
{
    if (!out) return shmrpc__err_set(SHMRPC_EINVAL, "no place for the client (out is NULL)");
    *out = NULL;
    /* Before a handle exists the message can only go to the thread (status.h). */
    int rc = shmrpc__info_check(info, shmrpc__err_begin());
    if (rc) return shmrpc__err_end(rc);

    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    if (opts) o = *opts;
    shmrpc_client *c = calloc(1, sizeof *c);
    if (!c) return shmrpc__err_code(SHMRPC_ENOMEM);
    c->info = info;
    c->default_timeout = resolve(o.timeout_ms, SHMRPC_DEFAULT_TIMEOUT_MS);
    c->timeout = c->default_timeout;
    c->cfg.max_msg = o.max_msg_bytes ? o.max_msg_bytes : SHMRPC_DEFAULT_MAX_MSG;
    c->cfg.wait = o.wait;
    shmrpc_buf_init(&c->req);
    shmrpc_buf_init(&c->resp);
    shmrpc_buf_init(&c->icmsg);
    c->req.max = c->cfg.max_msg;
    c->resp.max = c->cfg.max_msg;
    if (shmrpc__tcp_cfg_init(&c->cfg.tcp, &o.tcp) != 0) {
        shmrpc_client_free(c);
        return shmrpc__err_set(SHMRPC_EINVAL,
                               "tcp settings out of range (shmrpc_client_opts.tcp, shmrpc/tcp.h)");
    }
    if (shmrpc__retry_init(&c->retry, &o.retry, shmrpc__err_begin()) != 0) {
        shmrpc_client_free(c);
        return shmrpc__err_end(SHMRPC_EINVAL);
    }
    c->arena = shmrpc_arena_new(0);
    c->map = calloc(info->n_methods ? info->n_methods : 1, sizeof *c->map);
    c->slow = calloc(info->n_methods ? info->n_methods : 1, sizeof *c->slow);
    c->table.arena = shmrpc_arena_new(0);
    if (!c->arena || !c->map || !c->slow || !c->table.arena) {
        shmrpc_client_free(c);
        return shmrpc__err_code(SHMRPC_ENOMEM);
    }
    /* Read once, here, and its method names checked: the service is known. */
    shmrpc_buf *err = shmrpc__err_begin();
    rc = shmrpc__faults_load(&c->faults, SHMRPC__FAULT_CLIENT, err);
    if (rc == 0) rc = shmrpc__faults_bind(&c->faults, info, err);
    if (rc) {
        shmrpc_client_free(c);
        return shmrpc__err_end(rc);
    }
    for (uint32_t j = 0; c->faults && j < info->n_methods; j++)
        c->slow[j] = SLOW_FAULTS;
    *out = c;
    return 0;
}

static void settle(shmrpc_call *k);

/* Finishes c's calls not done with SHMRPC_ECLOSED and takes them from the transport, which
 * drops their answers: the client is freed or connects again (their afters run now, while
 * its interceptors are there). */
static void close_calls(shmrpc_client *c, bool freed, const char *why)
{
    while (c->calls) {
        shmrpc_call *k = c->calls;
        c->calls = k->next;
        k->linked = false;
        if (c->conn) c->conn->ops->abandon(c->conn, &k->p);
        if (!k->p.done) {
            k->p.done = true;
            k->p.status = SHMRPC_ECLOSED;
            shmrpc__msg_set(&k->p.msg, "%s", why);
        }
        settle(k);
        if (freed) k->client = NULL;
    }
}

static void stream_ended(shmrpc_stream *s, int rc, const char *why);

static void disconnect(shmrpc_client *c)
{
    close_calls(c, false, "the client connected again while the call was in flight");
    c->loaned = false;
    if (c->stream) {
        c->conn->ops->stream_end(c->conn);
        stream_ended(c->stream, SHMRPC_ECLOSED, "the client connected again or was freed");
        c->stream->client = NULL;
        c->stream = NULL;
    }
    if (!c->conn) return;
    c->conn->ops->close(c->conn);
    c->conn = NULL;
}

static void call_destroy(shmrpc_call *call);

void shmrpc_client_free(shmrpc_client *c)
{
    if (!c) return;
    close_calls(c, true, "the client was freed while the call was in flight");
    for (shmrpc_call *k = c->out; k; k = k->out_next)
        k->client = NULL; /* the caller's still: freed later, without its client */
    while (c->spare) {
        shmrpc_call *k = c->spare;
        c->spare = k->next;
        call_destroy(k);
    }
    disconnect(c);
    shmrpc_buf_destroy(&c->req);
    shmrpc_buf_destroy(&c->resp);
    shmrpc_arena_free(c->arena);
    shmrpc_arena_free(c->table.arena);
    shmrpc__faults_free(c->faults);
    shmrpc__icpts_free(c->icpt);
    shmrpc__meta_set_free(c->meta);
    shmrpc_buf_destroy(&c->icmsg);
    free(c->map);
    free(c->slow);
    free(c);
}

int shmrpc_client_connect(shmrpc_client *c, const char *addr)
{
    if (!c) return shmrpc__err_set(SHMRPC_EINVAL, "no client");
    shmrpc_buf *err = shmrpc__err_begin();
    /* Reconnecting (after the server went away, say) starts from a clean slate. */
    disconnect(c);
    c->cfg.connect_call_ms = c->timeout;
    c->table.kept = c->table.idem_differs = false;
    int rc = shmrpc__transport_connect(addr, c->info, &c->cfg, c->map, &c->table, &c->conn, err);
    if (rc == 0) c->conn->cancels = &c->cancels;
    /* Retried: what the server's table marks @idempotent (the server knows what its
     * handler does; a client's own table may be older or newer), when every server met
     * since this connect agrees. */
    for (uint32_t j = 0; j < c->info->n_methods; j++) {
        bool idem = rc == 0 && c->retry.max_attempts > 1 && !c->table.idem_differs &&
                    shmrpc__sig_idempotent(c->table.info.methods[c->map[j]].signature);
        c->slow[j] = (uint8_t)((c->faults ? SLOW_FAULTS : 0) | (idem ? SLOW_RETRY : 0));
    }
    return shmrpc__err_end(rc);
}

const shmrpc_service_info *shmrpc_client_server_info(const shmrpc_client *c)
{
    return c && c->conn ? &c->table.info : NULL;
}

const char *shmrpc_client_compat(const shmrpc_client *c)
{
    return c && c->conn ? c->table.compat : NULL;
}

void shmrpc_client_set_timeout(shmrpc_client *c, int64_t ms)
{
    if (c) c->timeout = resolve(ms, c->default_timeout);
}

void shmrpc_client_next_timeout(shmrpc_client *c, int64_t ms)
{
    if (!c) return;
    c->has_next = ms == SHMRPC_TIMEOUT_INFINITE || ms >= 0;
    c->next_timeout = ms;
}

void shmrpc_client_own_deadline(shmrpc_client *c, bool own)
{
    if (c) c->own_deadline = own;
}

int shmrpc_client_intercept(shmrpc_client *c, const shmrpc_interceptor *i, void *arg)
{
    if (!c) return shmrpc__err_set(SHMRPC_EINVAL, "no client");
    return shmrpc__icpts_add(&c->icpt, i, arg);
}

void shmrpc_client_cancel(shmrpc_client *c)
{
    if (c) atomic_fetch_add_explicit(&c->cancels, 1, memory_order_relaxed);
}

/* A call made now can be cancelled by a later shmrpc_client_cancel only; it sends the
 * client's metadata, and the trace of the handler it is made from. */
static void cancellable(shmrpc_client *c)
{
    c->conn->cancels_seen = atomic_load_explicit(&c->cancels, memory_order_relaxed);
    c->call_meta = shmrpc__meta_for_call(&c->meta, &c->conn->meta);
}

int shmrpc_client_metadata_set(shmrpc_client *c, const char *key, const char *value)
{
    if (!c) return shmrpc__err_set(SHMRPC_EINVAL, "no client");
    c->loaned = false; /* a loan in the channel has room for the metadata it was made with */
    return shmrpc__meta_set_put(&c->meta, key, value);
}

void shmrpc_client_metadata_clear(shmrpc_client *c)
{
    if (!c) return;
    c->loaned = false;
    shmrpc__meta_set_clear(c->meta);
}

const shmrpc_metadata *shmrpc_client_metadata(const shmrpc_client *c)
{
    return c && c->meta && c->meta->view.n ? &c->meta->view : NULL;
}

shmrpc_buf *shmrpc_client_request(shmrpc_client *c)
{
    if (!c) return NULL;
    c->loaned = false; /* another call gives up the loan */
    shmrpc_buf_clear(&c->req);
    shmrpc_buf_clear(&c->resp);
    /* The arena stays until the call is made: the arguments a stub encodes now may be the
     * last call's results, decoded there. */
    return &c->req;
}

shmrpc_arena *shmrpc_client_arena(shmrpc_client *c)
{
    return c ? c->arena : NULL;
}

int shmrpc_client_error(shmrpc_client *c, int rc, const char *fmt, ...)
{
    /* The message goes to the thread (status.h); c stays in the signature that
     * generated stubs call. */
    (void)c;
    va_list ap;
    va_start(ap, fmt);
    shmrpc__err_vset(rc, fmt, ap);
    va_end(ap);
    return rc;
}

int shmrpc_client_decode_error(shmrpc_client *c, const char *method, const char *field,
                               const char *why)
{
    (void)c;
    char text[SHMRPC__CTX_MSG_CAP];
    shmrpc__decode_msg(text, sizeof text, method, "result", field, why);
    return shmrpc__err_set(SHMRPC_EINVAL, "%s", text);
}

/* A request the stub could not encode whole (rc: the buffer's sticky error), or too long. */
static int request_error(shmrpc_client *c, int rc)
{
    if (rc == SHMRPC_ETOOBIG)
        return shmrpc_client_error(
            c, rc, "the request is larger than the client's maximum of %zu bytes", c->cfg.max_msg);
    return shmrpc_client_error(c, rc, "encoding the request: %s", shmrpc_strerror(rc));
}

static int call_blocking(shmrpc_client *c, uint32_t sid, int64_t j, shmrpc_bytes req,
                         int64_t timeout, shmrpc_buf *err);

/* The timeout of a call made now: ms (SHMRPC_TIMEOUT_DEFAULT: the next call's, else the
 * client's), cut to what is left of the deadline of the call that this thread's handler
 * serves, unless the client keeps its own (shmrpc_client_own_deadline). */
static int64_t call_timeout(const shmrpc_client *c, int64_t ms)
{
    int64_t t = resolve(ms, c->has_next ? c->next_timeout : c->timeout);
    return c->own_deadline ? t : shmrpc__ctx_inherit(t);
}

/* A blocking call that is not sent: its handler's deadline has passed (timeout is 0 only
 * for that, or when asked: then it is sent, and its transport ends it as such). */
static int inherited_passed(shmrpc_client *c, int64_t timeout)
{
    if (timeout != 0 || c->own_deadline || shmrpc__ctx_inherit(SHMRPC_TIMEOUT_INFINITE) != 0)
        return 0;
    return shmrpc_client_error(c, SHMRPC_ETIMEDOUT,
                               "the deadline of the call this handler serves has passed (less "
                               "than 1 ms is left); this call was not sent");
}

/* The fault that SHMRPC_FAULTS asks for this call of method j, before it is sent: 0 to send
 * it (after a delay, which its timeout pays for), or the status it fails with, unsent. */
static int inject(shmrpc_client *c, uint32_t j, int64_t *timeout)
{
    const shmrpc__fault *f = shmrpc__faults_draw(c->faults, j);
    if (!f) return 0;
    if (f->action == SHMRPC__FAULT_STATUS)
        return shmrpc_client_error(c, f->status, "injected by SHMRPC_FAULTS (%s): not sent",
                                   f->text);
    if (*timeout != SHMRPC_TIMEOUT_INFINITE && f->delay_ms >= *timeout) {
        shmrpc__faults_sleep(*timeout);
        return shmrpc_client_error(c, SHMRPC_ETIMEDOUT,
                                   "the timeout of %lld ms passed in the delay injected by "
                                   "SHMRPC_FAULTS (%s): not sent",
                                   (long long)*timeout, f->text);
    }
    shmrpc__faults_sleep(f->delay_ms);
    if (*timeout != SHMRPC_TIMEOUT_INFINITE) *timeout -= f->delay_ms;
    return 0;
}

/* The status of a call made while a stream is open on c: one thing at a time on a client
 * (docs/streams.md). */
static int streaming(shmrpc_client *c)
{
    return shmrpc_client_error(c, SHMRPC_EBUSY, "a stream is open on this client");
}

/* What a call of method_id (blocking or started) does first: gives up the loan, takes its
 * timeout (timeout_ms, else the next call's, else the client's) and begins the thread's
 * message in *err; then checks the connection, the method id and the encoded request. 0,
 * or the status to return; the call proper (its interceptors, a fault, the transport)
 * comes after. */
static int call_begin(shmrpc_client *c, uint32_t method_id, int64_t timeout_ms, int64_t *timeout,
                      shmrpc_buf **err)
{
    c->loaned = false;    /* another call gives up the loan */
    c->want_view = false; /* a call made inside a @raw call's interceptors takes a copy */
    *timeout = call_timeout(c, timeout_ms);
    c->has_next = false;
    *err = shmrpc__err_begin();

    if (!c->conn) return shmrpc_client_error(c, SHMRPC_ECLOSED, "not connected");
    if (c->stream) return streaming(c);
    cancellable(c);
    if (method_id >= c->info->n_methods)
        return shmrpc_client_error(c, SHMRPC_ENOENT, "no method with id %u (service '%s' has %u)",
                                   method_id, c->info->name, c->info->n_methods);
    if (c->req.err) return request_error(c, c->req.err);
    return 0;
}

/* call_begin of a call whose request the stub encoded into the request buffer, with the
 * client's timeout: the last answer and what it decoded into go first (so the last call's
 * results may be this call's arguments only until the request is encoded). */
static int encoded_begin(shmrpc_client *c, uint32_t method_id, int64_t *timeout, shmrpc_buf **err)
{
    shmrpc_buf_clear(&c->resp);
    shmrpc_arena_reset(c->arena);
    return call_begin(c, method_id, SHMRPC_TIMEOUT_DEFAULT, timeout, err);
}

/* One attempt of a blocking call of method j, once begun: the fault SHMRPC_FAULTS injects
 * (with faults), the deadline it inherits, then the transport. */
static inline int attempt(shmrpc_client *c, uint32_t j, shmrpc_bytes req, int64_t timeout,
                          bool faults, shmrpc_buf *err)
{
    int rc = faults ? inject(c, j, &timeout) : 0;
    if (rc || (rc = inherited_passed(c, timeout)) != 0) return rc;
    return call_blocking(c, c->map[j], j, req, timeout, err);
}

static int slow_call(shmrpc_client *c, uint32_t j, shmrpc_bytes req, int64_t timeout,
                     shmrpc_buf *err);

/* A blocking call of method_id with request req once begun: one attempt, or the slow
 * path's (faults, retries), chosen by one test, as the test of faults alone chose before
 * retries. */
static int send_call(shmrpc_client *c, uint32_t method_id, shmrpc_bytes req, int64_t timeout,
                     shmrpc_bytes *resp, shmrpc_buf *err)
{
    int rc = c->slow[method_id] ? slow_call(c, method_id, req, timeout, err)
                                : attempt(c, method_id, req, timeout, false, err);
    if (rc) return shmrpc__err_end(rc);
    if (resp)
        *resp = c->view.ptr ? c->view
                            : shmrpc_bytes_of(c->resp.len ? c->resp.data : empty, c->resp.len);
    /* An inproc:// handler runs on this thread: what its own failed calls left is not
     * this call's. */
    return shmrpc__err_end(0);
}

/* Waits ns before another attempt, in steps so that a cancel is seen within one: false
 * when the call was cancelled meanwhile. */
static bool back_off(shmrpc_client *c, int64_t ns)
{
    int64_t end = shmrpc__now_ns() + ns;
    for (;;) {
        if (shmrpc__conn_cancelled(c->conn)) return false;
        int64_t left = end - shmrpc__now_ns();
        if (left <= 0) return true;
        if (left > SHMRPC__CHECK_NS) left = SHMRPC__CHECK_NS;
        struct timespec ts = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
        nanosleep(&ts, NULL);
    }
}

/* A blocking call of method j, which the server's table marks @idempotent: attempts while
 * each fails with a retryable status (shmrpc__retryable), up to max_attempts, while the
 * budget allows a retry and the call's deadline leaves time for one after its backoff
 * (docs/retries.md). A failure's message ends with how many attempts were made. */
static int retried(shmrpc_client *c, uint32_t j, shmrpc_bytes req, int64_t timeout, bool faults,
                   shmrpc_buf *err)
{
    int64_t now = shmrpc__now_ns();
    int64_t deadline = shmrpc__deadline_at(&(shmrpc__deadline){.timeout_ms = timeout}, now);
    uint32_t n = 1;
    int rc = attempt(c, j, req, timeout, faults, err);
    const char *why;
    for (;; n++) {
        if (rc == 0) {
            shmrpc__retry_success(&c->retry);
            return 0;
        }
        if (!shmrpc__retryable(rc)) {
            if (n == 1) return rc; /* a failure of the kind no retry follows, as any call's */
            why = "the last failed otherwise, and is not retried";
            break;
        }
        bool budget = shmrpc__retry_failed(&c->retry);
        if (n >= c->retry.max_attempts) {
            why = "the most this client makes";
            break;
        }
        if (!budget) {
            why = "the retry budget is spent: the server fails too often for more";
            break;
        }
        if (!c->conn || !shmrpc__sig_idempotent(c->table.info.methods[c->map[j]].signature)) {
            why = "the server that connected again has no @idempotent for it";
            break;
        }
        if (c->table.idem_differs) {
            why = "the servers this client connected to disagree on which methods are "
                  "@idempotent, and the one the call ran on is not known";
            break;
        }
        int64_t pause = shmrpc__retry_backoff_ns(&c->retry, n);
        /* Another attempt needs at least a millisecond of the deadline after its backoff. */
        if (deadline != INT64_MAX && shmrpc__now_ns() + pause + 1000000 > deadline) {
            why = "its deadline leaves no time for another";
            break;
        }
        if (!back_off(c, pause)) {
            shmrpc__msg_set(err,
                            "the call was cancelled by its client between attempts (%u made; the "
                            "last ended: %s)",
                            n, shmrpc_strerror(rc));
            return SHMRPC_ECANCELLED;
        }
        int64_t left = SHMRPC_TIMEOUT_INFINITE;
        if (deadline != INT64_MAX && (left = (deadline - shmrpc__now_ns()) / 1000000) < 1) {
            why = "its deadline leaves no time for another";
            break;
        }
        shmrpc_buf_clear(&c->resp);
        shmrpc__msg_clear(err);
        rc = attempt(c, j, req, left, faults, err);
    }
    shmrpc__msg_append(err, " [@idempotent: %u attempt%s; %s]", n, n == 1 ? "" : "s", why);
    return rc;
}

/* A blocking call that SHMRPC_FAULTS may touch, or of a method to retry. */
static int slow_call(shmrpc_client *c, uint32_t j, shmrpc_bytes req, int64_t timeout,
                     shmrpc_buf *err)
{
    bool faults = c->slow[j] & SLOW_FAULTS;
    if (c->slow[j] & SLOW_RETRY) return retried(c, j, req, timeout, faults, err);
    return attempt(c, j, req, timeout, faults, err);
}

/* A loaned call (shmrpc_client_call_loaned) of len bytes in the transport, once begun: as
 * send_call. */
static int send_loaned(shmrpc_client *c, size_t len, int64_t timeout, shmrpc_bytes *resp,
                       shmrpc_buf *err)
{
    int rc = inherited_passed(c, timeout);
    if (rc == 0 && c->faults) rc = inject(c, c->loan_method, &timeout);
    if (rc) return rc;
    shmrpc_bytes out;
    rc = c->conn->ops->call_loaned(c->conn, c->map[c->loan_method], len, &out, timeout, err);
    if (rc) return shmrpc__err_end(rc);
    c->view = out;
    if (resp) *resp = out.len ? out : shmrpc_bytes_of(empty, 0);
    return shmrpc__err_end(0);
}

/* The call of method j as its interceptors see it; its message goes to c->icmsg. */
static shmrpc__icall icall_of(shmrpc_client *c, uint32_t j)
{
    return (shmrpc__icall){
        .pub = {.service = c->info, .method = &c->info->methods[j], .metadata = c->call_meta},
        .msg = &c->icmsg};
}

/* A blocking call of method j (loaned: of that many bytes in the transport; SIZE_MAX: of
 * req) inside the client's interceptors. A failure's message waits in
 * c->icmsg while the afters run (which may make calls of their own), and goes to the thread
 * at the end. c->icmsg is read only for a call that ends failed, whose message was put
 * there by then (here, by a refusing before, or by an after that failed it), so a success
 * leaves it as it is: nothing formatted or written on a call's common path. */
static int intercepted(shmrpc_client *c, uint32_t j, shmrpc_bytes req, size_t loaned,
                       int64_t timeout, shmrpc_bytes *resp, shmrpc_buf *err)
{
    shmrpc__icall ic = icall_of(c, j);
    uint32_t ran;
    int rc = shmrpc__icpts_before(c->icpt, &ic, &ran);
    bool refused = rc != 0; /* then not sent */
    if (!refused) {
        err = shmrpc__err_begin(); /* not what the befores' own calls left */
        rc = loaned == SIZE_MAX ? send_call(c, j, req, timeout, resp, err)
                                : send_loaned(c, loaned, timeout, resp, err);
        if (rc) shmrpc__msg_set(&c->icmsg, "%s", shmrpc_errmsg());
    }
    rc = shmrpc__icpts_after(c->icpt, &ic, ran, rc);
    if (rc == 0) return shmrpc__err_end(0);
    if (resp) *resp = shmrpc_bytes_of(empty, 0);
    return shmrpc__err_set(rc, "%s", shmrpc__msg_get(&c->icmsg));
}

int shmrpc_client_call(shmrpc_client *c, uint32_t method_id, shmrpc_bytes *resp)
{
    if (resp) *resp = shmrpc_bytes_of(empty, 0);
    if (!c) return shmrpc__err_set(SHMRPC_EINVAL, "no client");
    int64_t timeout;
    shmrpc_buf *err;
    int rc = encoded_begin(c, method_id, &timeout, &err);
    if (rc) return rc;
    shmrpc_bytes req = shmrpc_bytes_of(c->req.len ? c->req.data : empty, c->req.len);
    if (c->icpt) return intercepted(c, method_id, req, SIZE_MAX, timeout, resp, err);
    return send_call(c, method_id, req, timeout, resp, err);
}

/* Whether the bytes of a and b overlap. */
static bool overlaps(shmrpc_bytes a, shmrpc_bytes b)
{
    if (!a.len || !b.len || !a.ptr || !b.ptr) return false;
    uintptr_t a0 = (uintptr_t)a.ptr, b0 = (uintptr_t)b.ptr;
    return a0 < b0 + b.len && b0 < a0 + a.len;
}

int shmrpc_client_call_raw(shmrpc_client *c, uint32_t method_id, shmrpc_bytes req,
                           shmrpc_bytes *resp)
{
    if (resp) *resp = shmrpc_bytes_of(empty, 0);
    if (!c) return shmrpc__err_set(SHMRPC_EINVAL, "no client");
    shmrpc_bytes last = c->view; /* the last answer left in the transport */
    shmrpc_client_request(c);    /* what the last call left: its answer, an encoding error */
    int64_t timeout;
    shmrpc_buf *err;
    int rc = call_begin(c, method_id, SHMRPC_TIMEOUT_DEFAULT, &timeout, &err);
    if (rc) return rc;
    if (req.len > c->cfg.max_msg) return request_error(c, SHMRPC_ETOOBIG);
    if (req.len && !req.ptr)
        return shmrpc_client_error(c, SHMRPC_EINVAL, "a request of %zu bytes at NULL", req.len);
    if (!req.len) req = shmrpc_bytes_of(empty, 0);
    /* The last answer (or part of it) sent back: it is where this call's request and answer
     * go (the channel, the response buffer), and a retry or another endpoint would send
     * what they became. Sent from a copy. */
    if (overlaps(req, last) || overlaps(req, shmrpc_bytes_of(c->resp.data, c->resp.cap))) {
        if (shmrpc_buf_append(&c->req, req.ptr, req.len) != 0) return request_error(c, c->req.err);
        req = shmrpc_bytes_of(c->req.data, c->req.len);
    }
    /* Sent from where the caller has it, and answered where the transport has the answer:
     * over shm:// the request is copied once, into the channel, and the answer is read
     * where the worker put it. */
    c->want_view = true;
    rc = c->icpt ? intercepted(c, method_id, req, SIZE_MAX, timeout, resp, err)
                 : send_call(c, method_id, req, timeout, resp, err);
    c->want_view = false;
    shmrpc_arena_reset(c->arena); /* only now: req may have been the last results */
    return rc;
}

int shmrpc_client_loan(shmrpc_client *c, uint32_t method_id, size_t size, void **ptr)
{
    if (ptr) *ptr = NULL;
    if (!c || !ptr) return shmrpc__err_set(SHMRPC_EINVAL, "no client or no place for the loan");
    c->loaned = false;
    shmrpc_buf_clear(&c->req);
    shmrpc_buf_clear(&c->resp);
    if (!c->conn) return shmrpc_client_error(c, SHMRPC_ECLOSED, "not connected");
    if (c->stream) return streaming(c);
    if (method_id >= c->info->n_methods)
        return shmrpc_client_error(c, SHMRPC_ENOENT, "no method with id %u (service '%s' has %u)",
                                   method_id, c->info->name, c->info->n_methods);
    if (size > c->cfg.max_msg)
        return shmrpc_client_error(
            c, SHMRPC_ETOOBIG,
            "a loan of %zu bytes is larger than the client's maximum of %zu bytes", size,
            c->cfg.max_msg);
    shmrpc_buf *err = shmrpc__err_begin();
    int rc = 0;
    /* With calls in flight a call goes through start, which sends from the request buffer. */
    c->loan_in_conn = c->conn->ops->loan && !c->calls;
    if (c->loan_in_conn) {
        int64_t timeout = call_timeout(c, SHMRPC_TIMEOUT_DEFAULT);
        cancellable(c);
        rc = c->conn->ops->loan(c->conn, c->map[method_id], size, ptr, timeout, err);
    } else if ((rc = shmrpc_buf_reserve(&c->req, size ? size : 1)) == 0) {
        *ptr = c->req.data;
    }
    if (rc) return shmrpc__err_end(rc);
    c->loaned = true;
    c->loan_method = method_id;
    c->loan_size = size;
    return shmrpc__err_end(0);
}

int shmrpc_client_call_loaned(shmrpc_client *c, size_t len, shmrpc_bytes *resp)
{
    if (resp) *resp = shmrpc_bytes_of(empty, 0);
    if (!c) return shmrpc__err_set(SHMRPC_EINVAL, "no client");
    if (!c->loaned)
        return shmrpc_client_error(c, SHMRPC_EINVAL,
                                   "no loan to send (shmrpc_client_loan first; a loan is used by "
                                   "one call, and another call or loan gives it up)");
    if (len > c->loan_size)
        return shmrpc_client_error(c, SHMRPC_EINVAL,
                                   "a request of %zu bytes is larger than its loan of %zu", len,
                                   c->loan_size);
    c->loaned = false;
    shmrpc_arena_reset(c->arena); /* the room is written: the last results may go */
    if (!c->loan_in_conn) {       /* the request buffer is the loan: the ordinary call sends it */
        c->req.len = len;
        return shmrpc_client_call(c, c->loan_method, resp);
    }
    int64_t timeout = call_timeout(c, SHMRPC_TIMEOUT_DEFAULT);
    c->has_next = false;
    shmrpc_buf *err = shmrpc__err_begin();
    if (!c->conn) return shmrpc_client_error(c, SHMRPC_ECLOSED, "not connected");
    if (c->stream) return streaming(c);
    cancellable(c);
    if (c->icpt)
        return intercepted(c, c->loan_method, shmrpc_bytes_of(empty, 0), len, timeout, resp, err);
    return send_loaned(c, len, timeout, resp, err);
}

const char *shmrpc_health_name(int state)
{
    switch (state) {
    case SHMRPC_HEALTH_SERVING:
        return "serving";
    case SHMRPC_HEALTH_NOT_SERVING:
        return "not_serving";
    case SHMRPC_HEALTH_DRAINING:
        return "draining";
    default:
        return "unknown";
    }
}

int shmrpc_client_health(shmrpc_client *c, shmrpc_health *state)
{
    if (state) *state = 0;
    if (!c || !state) return shmrpc__err_set(SHMRPC_EINVAL, "no client or no place for the state");
    c->loaned = false; /* another call gives up the loan */
    int64_t timeout = c->has_next ? c->next_timeout : c->timeout;
    c->has_next = false;
    shmrpc_buf_clear(&c->resp);
    shmrpc_buf *err = shmrpc__err_begin();
    if (!c->conn) return shmrpc_client_error(c, SHMRPC_ECLOSED, "not connected");
    if (c->stream) return streaming(c);
    cancellable(c);
    /* The reserved id goes out as it is: it is no index of either table, so not mapped. */
    int rc = call_blocking(c, SHMRPC_HEALTH_METHOD_ID, -1, shmrpc_bytes_of(empty, 0), timeout, err);
    if (rc) return shmrpc__err_end(rc);
    if (c->resp.len != 1 || c->resp.data[0] < SHMRPC_HEALTH_SERVING ||
        c->resp.data[0] > SHMRPC_HEALTH_DRAINING)
        return shmrpc_client_error(c, SHMRPC_EPROTO, "the health answer is not a state (%zu bytes)",
                                   c->resp.len);
    *state = (shmrpc_health)c->resp.data[0];
    return shmrpc__err_end(0);
}

/* --- many calls in flight ------------------------------------------------------------- */

static void call_unlink(shmrpc_call *k)
{
    shmrpc_client *c = k->client;
    if (!k->linked) return;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->calls = k->next;
    if (k->next) k->next->prev = k->prev;
    k->next = k->prev = NULL;
    k->linked = false;
}

/* A call of c not started yet (sid and j as for start), or NULL for lack of memory. */
static shmrpc_call *call_new(shmrpc_client *c, uint32_t sid, int64_t j, int64_t timeout)
{
    shmrpc_call *k = c->spare;
    if (k) { /* a spare one: all of it anew but its buffers' storage */
        c->spare = k->next;
        c->n_spare--;
        shmrpc__pending was = k->p;
        memset(k, 0, sizeof *k);
        k->p.req = was.req;
        k->p.meta = was.meta;
        k->p.resp = was.resp;
        k->p.msg = was.msg;
        shmrpc_buf_clear(&k->p.req);
        shmrpc_buf_clear(&k->p.meta);
        shmrpc_buf_clear(&k->p.resp);
        shmrpc_buf_clear(&k->p.msg);
    } else {
        if ((k = calloc(1, sizeof *k)) == NULL) return NULL;
        shmrpc_buf_init(&k->p.req);
        shmrpc_buf_init(&k->p.meta);
        shmrpc_buf_init(&k->p.resp);
        shmrpc_buf_init(&k->p.msg);
    }
    k->client = c;
    k->out_next = c->out;
    if (c->out) c->out->out_prev = k;
    c->out = k;
    k->p.resp.max = c->cfg.max_msg;
    k->p.sid = sid;
    k->p.j = j;
    k->p.deadline = shmrpc__deadline_at(&(shmrpc__deadline){0, timeout}, shmrpc__now_ns());
    k->p.timeout_ms = timeout;
    k->cancels_seen = c->conn->cancels_seen;
    return k;
}

/* Starts a call of the server's method sid (j: the client's method id, or -1 for the
 * health method) with req: in the transport's hands, or done at once (a call that failed
 * at once, or a transport without start, which runs it here). SHMRPC_ENOMEM, else 0. */
static int start(shmrpc_client *c, uint32_t sid, int64_t j, shmrpc_bytes req, int64_t timeout,
                 shmrpc_call **call, shmrpc_buf *err)
{
    shmrpc_call *k = call_new(c, sid, j, timeout);
    if (!k) return SHMRPC_ENOMEM;
    if (c->conn->ops->start) {
        if (shmrpc_buf_append(&k->p.req, req.ptr, req.len) ||
            shmrpc_buf_append(&k->p.meta, c->conn->meta.ptr, c->conn->meta.len)) {
            shmrpc_call_free(k);
            return SHMRPC_ENOMEM;
        }
        /* A call that failed at once is done: its status says so. */
        c->conn->ops->start(c->conn, &k->p, err);
        if (!k->p.done) { /* in the transport's hands */
            k->linked = true;
            k->next = c->calls;
            if (c->calls) c->calls->prev = k;
            c->calls = k;
        }
    } else { /* one call at a time: it runs here, and wait returns it */
        int rc = c->conn->ops->call(c->conn, sid, req, &k->p.resp, timeout, err);
        k->p.done = true;
        k->p.status = rc;
        if (rc)
            shmrpc__msg_set(&k->p.msg, "%s",
                            shmrpc__msg_get(err)[0] ? shmrpc__msg_get(err) : shmrpc_strerror(rc));
    }
    *call = k;
    return 0;
}

/* A blocking call of the server's method sid (j as for start), its answer into c->resp
 * (or, for a @raw call over a transport that can, c->view).
 * With calls started and not yet returned by a wait it joins them (start, then wait for
 * it): a transport with start reads the answers of all of a connection's calls, and one
 * read on its own would skip theirs (the health method among calls in flight, say). */
static int call_blocking(shmrpc_client *c, uint32_t sid, int64_t j, shmrpc_bytes req,
                         int64_t timeout, shmrpc_buf *err)
{
    c->view = shmrpc_bytes_of(NULL, 0);
    if (c->calls) {
        shmrpc_call *k;
        int rc = start(c, sid, j, req, timeout, &k, err);
        return rc ? rc : shmrpc_client_finish(c, k, NULL);
    }
    if (c->want_view && c->conn->ops->call_view)
        return c->conn->ops->call_view(c->conn, sid, req, &c->view, timeout, err);
    return c->conn->ops->call(c->conn, sid, req, &c->resp, timeout, err);
}

/* Runs the afters due on k once it is done, while its client is there: its status becomes
 * what they return, their message its message. */
static void settle(shmrpc_call *k)
{
    if (!k->icpt_due || !k->p.done || !k->client) return;
    k->icpt_due = false;
    shmrpc_client *c = k->client;
    shmrpc__icall ic = icall_of(c, (uint32_t)k->p.j);
    ic.msg = &k->p.msg;
    ic.pub.metadata = NULL; /* the client's metadata may have changed since it was sent */
    k->p.status = shmrpc__icpts_after(c->icpt, &ic, k->icpt_ran, k->p.status);
}

/* shmrpc_client_start inside the client's interceptors: a call refused, or failed by a fault
 * SHMRPC_FAULTS injects, is returned done with its status, as one that failed at once; a call
 * done at once has its afters now. */
static int start_intercepted(shmrpc_client *c, uint32_t j, int64_t timeout, shmrpc_call **call,
                             shmrpc_buf *err)
{
    shmrpc__icall ic = icall_of(c, j);
    uint32_t ran;
    int rc = shmrpc__icpts_before(c->icpt, &ic, &ran);
    if (rc == 0) {
        err = shmrpc__err_begin(); /* not what the befores' own calls left */
        if (c->faults && (rc = inject(c, j, &timeout)) != 0)
            shmrpc__msg_set(&c->icmsg, "%s", shmrpc_errmsg());
    }
    shmrpc_call *k = NULL;
    if (rc == 0) {
        shmrpc_bytes req = shmrpc_bytes_of(c->req.len ? c->req.data : empty, c->req.len);
        if (start(c, c->map[j], j, req, timeout, &k, err)) k = NULL;
    } else if ((k = call_new(c, c->map[j], j, timeout)) != NULL) {
        k->p.done = true;
        k->p.status = rc;
        shmrpc__msg_set(&k->p.msg, "%s", shmrpc__msg_get(&c->icmsg));
    }
    if (!k) { /* the afters see the call end, as it does */
        shmrpc__icpts_after(c->icpt, &ic, ran, SHMRPC_ENOMEM);
        return shmrpc__err_code(SHMRPC_ENOMEM);
    }
    k->icpt_due = true;
    k->icpt_ran = ran;
    settle(k);
    *call = k;
    return shmrpc__err_end(0);
}

int shmrpc_client_start(shmrpc_client *c, uint32_t method_id, int64_t timeout_ms,
                        shmrpc_call **call)
{
    if (call) *call = NULL;
    if (!c || !call) return shmrpc__err_set(SHMRPC_EINVAL, "no client or no place for the call");
    shmrpc_arena_reset(c->arena); /* the request is encoded: the last results may go */
    int64_t timeout;
    shmrpc_buf *err;
    int rc = call_begin(c, method_id, timeout_ms, &timeout, &err);
    if (rc) return rc;
    if (c->icpt) return start_intercepted(c, method_id, timeout, call, err);
    if (c->faults && (rc = inject(c, method_id, &timeout)) != 0) return rc;
    shmrpc_bytes req = shmrpc_bytes_of(c->req.len ? c->req.data : empty, c->req.len);
    if (start(c, c->map[method_id], method_id, req, timeout, call, err))
        return shmrpc__err_code(SHMRPC_ENOMEM);
    return shmrpc__err_end(0);
}

void shmrpc_call_cancel(shmrpc_call *call)
{
    if (!call || call->p.done || !call->client) return;
    shmrpc_client *c = call->client;
    call_unlink(call);
    /* The transport tells the server, where it can (tcp://, revision 5), and drops the
     * answer when it comes. */
    if (c->conn && c->conn->ops->cancel)
        c->conn->ops->cancel(c->conn, &call->p);
    else if (c->conn && c->conn->ops->abandon)
        c->conn->ops->abandon(c->conn, &call->p);
    if (call->p.done) return; /* the transport ended it, saying whether it ran */
    call->p.done = true;
    call->p.status = SHMRPC_ECANCELLED;
    shmrpc__msg_set(&call->p.msg, "the call was cancelled by its client after it was sent; it "
                                  "may have run");
}

/* Cancels the calls of c that began before a shmrpc_client_cancel since. */
static void cancel_due(shmrpc_client *c)
{
    uint32_t now = atomic_load_explicit(&c->cancels, memory_order_relaxed);
    if (now == c->cancels_handled) return; /* no cancel since the last look */
    c->cancels_handled = now;
    for (shmrpc_call *k = c->calls, *next; k; k = next) {
        next = k->next;
        if (k->cancels_seen != now) shmrpc_call_cancel(k);
    }
}

int shmrpc_client_wait(shmrpc_client *c, shmrpc_call *const *calls, size_t n, int64_t timeout_ms,
                       size_t *which)
{
    if (which) *which = 0;
    if (!c || !calls || n == 0 || !which)
        return shmrpc__err_set(SHMRPC_EINVAL, "no client, no calls or no place for which");
    for (size_t i = 0; i < n; i++)
        if (!calls[i] || calls[i]->client != c)
            return shmrpc__err_set(SHMRPC_EINVAL, "call %zu is not one of this client's", i);
    /* The deadline from the first look that finds nothing done: a call done already (the
     * oldest of many in flight, as a rule) costs no clock read. */
    shmrpc__deadline dl = {0, resolve(timeout_ms, SHMRPC_TIMEOUT_INFINITE)};
    for (;;) {
        cancel_due(c);
        for (size_t i = 0; i < n; i++) {
            if (!calls[i]->p.done) continue;
            call_unlink(calls[i]);
            settle(calls[i]);
            *which = i;
            return shmrpc__err_end(0);
        }
        int64_t now = shmrpc__now_ns();
        int64_t deadline = shmrpc__deadline_at(&dl, now);
        if (!c->conn || now >= deadline)
            return shmrpc__err_set(SHMRPC_ETIMEDOUT, "none of the %zu calls was done in time", n);
        /* In steps, so that a cancel from another thread is seen within one. */
        c->conn->ops->progress(c->conn, deadline - now > SHMRPC__CHECK_NS ? now + SHMRPC__CHECK_NS
                                                                          : deadline);
    }
}

int shmrpc_call_status(const shmrpc_call *call)
{
    if (!call) return SHMRPC_EINVAL;
    settle((shmrpc_call *)call); /* every call is the library's, made by calloc */
    return call->p.done ? call->p.status : SHMRPC_CALL_PENDING;
}

int shmrpc_call_result(shmrpc_call *call, shmrpc_bytes *resp)
{
    if (resp) *resp = shmrpc_bytes_of(empty, 0);
    if (!call) return shmrpc__err_set(SHMRPC_EINVAL, "no call");
    if (!call->p.done) return shmrpc__err_set(SHMRPC_CALL_PENDING, "the call is not done");
    settle(call);
    if (call->p.status) return shmrpc__err_set(call->p.status, "%s", shmrpc__msg_get(&call->p.msg));
    if (resp)
        *resp = shmrpc_bytes_of(call->p.resp.len ? call->p.resp.data : empty, call->p.resp.len);
    return shmrpc__err_end(0);
}

static void call_destroy(shmrpc_call *call)
{
    shmrpc_buf_destroy(&call->p.req);
    shmrpc_buf_destroy(&call->p.meta);
    shmrpc_buf_destroy(&call->p.resp);
    shmrpc_buf_destroy(&call->p.msg);
    free(call);
}

void shmrpc_call_free(shmrpc_call *call)
{
    if (!call) return;
    /* A call done at its start (shm://, inproc://, a call refused) is on no list, and its
     * client may be gone: only a call not done, which the client's end would have let go,
     * is its transport's to forget (cancelled: its server told, its answer dropped). */
    shmrpc_client *c = call->client;
    if (c) {
        shmrpc_call_cancel(call);
        settle(call);
        call_unlink(call);
        if (call->out_prev)
            call->out_prev->out_next = call->out_next;
        else
            c->out = call->out_next;
        if (call->out_next) call->out_next->out_prev = call->out_prev;
    }
    const shmrpc__pending *p = &call->p;
    if (c && c->n_spare < SPARE_MAX &&
        p->req.cap + p->meta.cap + p->resp.cap + p->msg.cap <= SPARE_BYTES) {
        call->next = c->spare;
        c->spare = call;
        c->n_spare++;
        return;
    }
    call_destroy(call);
}

int shmrpc_client_finish(shmrpc_client *c, shmrpc_call *call, shmrpc_bytes *resp)
{
    if (resp) *resp = shmrpc_bytes_of(empty, 0);
    if (!c || !call) return shmrpc__err_set(SHMRPC_EINVAL, "no client or no call");
    size_t which;
    shmrpc_call *one[1] = {call};
    int rc = call->client == c
                 ? shmrpc_client_wait(c, one, 1, SHMRPC_TIMEOUT_INFINITE, &which)
                 : shmrpc__err_set(SHMRPC_EINVAL, "the call is not one of this client's");
    shmrpc_buf_clear(&c->resp);
    if (rc == 0) {
        shmrpc_bytes b;
        rc = shmrpc_call_result(call, &b);
        if (rc == 0 && shmrpc_buf_append(&c->resp, b.ptr, b.len))
            rc = shmrpc__err_set(SHMRPC_ENOMEM,
                                 "out of memory for the result of %zu bytes (the call ran)", b.len);
        if (rc == 0 && resp)
            *resp = shmrpc_bytes_of(c->resp.len ? c->resp.data : empty, c->resp.len);
    }
    shmrpc_call_free(call);
    return rc;
}

/* --- streams -------------------------------------------------------------------------- */

/* Ends s with rc and its message (why), running the afters of the befores that ran at its
 * open, while its client is there. */
static void stream_ended(shmrpc_stream *s, int rc, const char *why)
{
    if (s->status != SHMRPC_CALL_PENDING) return;
    shmrpc__msg_set(&s->msg, "%s", why);
    shmrpc_client *c = s->client;
    if (c && c->icpt) {
        shmrpc__icall ic = icall_of(c, s->j);
        ic.msg = &s->msg;
        ic.pub.metadata = NULL; /* the client's metadata may have changed since the open */
        rc = shmrpc__icpts_after(c->icpt, &ic, s->icpt_ran, rc);
    }
    s->status = rc;
}

int shmrpc_client_open(shmrpc_client *c, uint32_t method_id, shmrpc_stream **stream)
{
    if (stream) *stream = NULL;
    if (!c || !stream) return shmrpc__err_set(SHMRPC_EINVAL, "no client or no stream");
    int64_t timeout;
    shmrpc_buf *err;
    int rc = encoded_begin(c, method_id, &timeout, &err);
    if (rc) return rc;
    const shmrpc_method_info *m = &c->table.info.methods[c->map[method_id]];
    int way = shmrpc__sig_streams(m->signature);
    if (!way)
        return shmrpc_client_error(
            c, SHMRPC_EINVAL, "'%s' answers once: it is called, not opened as a stream", m->name);
    if (!c->conn->ops->stream_open)
        return shmrpc_client_error(c, SHMRPC_EINVAL,
                                   "'%s' answers with a stream, which this transport does not "
                                   "carry yet (docs/streams.md)",
                                   m->name);
    if ((way & SHMRPC__STREAM_IN) && !c->conn->ops->stream_send)
        return shmrpc_client_error(c, SHMRPC_EINVAL,
                                   "'%s' streams its parameter, which this transport does not "
                                   "carry yet (docs/streams.md)",
                                   m->name);
    if ((rc = inherited_passed(c, timeout)) != 0) return rc;
    if ((c->slow[method_id] & SLOW_FAULTS) && (rc = inject(c, method_id, &timeout)) != 0) return rc;
    shmrpc_stream *s = calloc(1, sizeof *s);
    if (!s || !(s->arena = shmrpc_arena_new(0))) {
        free(s);
        return shmrpc_client_error(c, SHMRPC_ENOMEM, "out of memory");
    }
    *s = (shmrpc_stream){
        .client = c, .j = method_id, .status = SHMRPC_CALL_PENDING, .arena = s->arena, .way = way};
    shmrpc_buf_init(&s->item);
    shmrpc_buf_init(&s->out);
    shmrpc_buf_init(&s->msg);
    s->item.max = c->cfg.max_msg;
    s->out.max = c->cfg.max_msg;
    shmrpc__icall ic = icall_of(c, method_id);
    if (c->icpt && (rc = shmrpc__icpts_before(c->icpt, &ic, &s->icpt_ran)) != 0) {
        rc = shmrpc__icpts_after(c->icpt, &ic, s->icpt_ran, rc);
        shmrpc__msg_set(err, "%s", shmrpc__msg_get(&c->icmsg));
    } else {
        shmrpc_bytes req = shmrpc_bytes_of(c->req.len ? c->req.data : empty, c->req.len);
        rc = c->conn->ops->stream_open(c->conn, c->map[method_id], way, req, timeout, err);
        if (rc && c->icpt) {
            shmrpc__msg_set(&c->icmsg, "%s", shmrpc__msg_get(err));
            rc = shmrpc__icpts_after(c->icpt, &ic, s->icpt_ran, rc);
            shmrpc__msg_set(err, "%s", shmrpc__msg_get(&c->icmsg));
        }
    }
    if (rc) {
        shmrpc_arena_free(s->arena);
        free(s);
        return shmrpc__err_end(rc);
    }
    c->stream = s;
    *stream = s;
    return shmrpc__err_end(0);
}

int shmrpc_stream_recv(shmrpc_stream *s, shmrpc_bytes *item)
{
    if (item) *item = shmrpc_bytes_of(empty, 0);
    if (!s) return shmrpc__err_set(SHMRPC_EINVAL, "no stream");
    if (!(s->way & SHMRPC__STREAM_OUT))
        return shmrpc__err_set(SHMRPC_EINVAL,
                               "the stream's method answers once: shmrpc_stream_answer gives it");
    shmrpc_buf *err = shmrpc__err_begin();
    if (s->status == SHMRPC_CALL_PENDING) {
        shmrpc_client *c = s->client;
        shmrpc_arena_reset(s->arena);
        shmrpc_bytes got;
        int rc;
        if (c->conn->ops->stream_view) { /* in place: valid until the next recv, as documented */
            rc = c->conn->ops->stream_view(c->conn, &got, err);
            if (rc == 1 && got.len > s->item.max) {
                shmrpc__msg_set(
                    err, "an item of %zu bytes is larger than the client's maximum of %zu bytes",
                    got.len, s->item.max);
                rc = SHMRPC_ETOOBIG;
            }
        } else {
            shmrpc_buf_clear(&s->item);
            rc = c->conn->ops->stream_recv(c->conn, &s->item, err);
            got = shmrpc_bytes_of(s->item.data, s->item.len);
        }
        if (rc == 1) {
            if (item) *item = shmrpc_bytes_of(got.len ? got.ptr : empty, got.len);
            return shmrpc__err_end(1);
        }
        stream_ended(s, rc, shmrpc__msg_get(err));
    }
    shmrpc__msg_set(err, "%s", shmrpc__msg_get(&s->msg));
    return shmrpc__err_end(s->status);
}

/* The status of a send or done on s, whose method streams its parameter, or 0 when it may
 * go on. */
static int stream_sendable(shmrpc_stream *s)
{
    if (!s) return shmrpc__err_set(SHMRPC_EINVAL, "no stream");
    if (!(s->way & SHMRPC__STREAM_IN))
        return shmrpc__err_set(SHMRPC_EINVAL, "the stream's method takes no stream to send");
    if (s->status != SHMRPC_CALL_PENDING)
        return shmrpc__err_set(s->status ? s->status : SHMRPC_ECLOSED, "%s",
                               s->status ? shmrpc__msg_get(&s->msg) : "the stream has ended");
    return 0;
}

int shmrpc_stream_send(shmrpc_stream *s, const void *item, size_t n)
{
    int rc = stream_sendable(s);
    if (rc) return rc;
    if (!item && n) return shmrpc__err_set(SHMRPC_EINVAL, "an item of %zu bytes at NULL", n);
    if (s->done)
        return shmrpc__err_set(SHMRPC_EINVAL,
                               "the stream's last item was sent already (shmrpc_stream_done)");
    shmrpc_client *c = s->client;
    if (n > c->cfg.max_msg)
        return shmrpc__err_set(SHMRPC_ETOOBIG,
                               "an item of %zu bytes is larger than the client's maximum of %zu "
                               "bytes",
                               n, c->cfg.max_msg);
    shmrpc_buf *err = shmrpc__err_begin();
    return shmrpc__err_end(c->conn->ops->stream_send(c->conn, n ? item : empty, n, err));
}

int shmrpc_stream_cork(shmrpc_stream *s, int on)
{
    int rc = stream_sendable(s);
    if (rc) return rc;
    shmrpc__conn *conn = s->client->conn;
    shmrpc_buf *err = shmrpc__err_begin();
    return shmrpc__err_end(conn->ops->stream_cork ? conn->ops->stream_cork(conn, on != 0, err) : 0);
}

shmrpc_buf *shmrpc_stream_item(shmrpc_stream *s)
{
    if (!s || !(s->way & SHMRPC__STREAM_IN)) return NULL;
    shmrpc_buf_clear(&s->out);
    return &s->out;
}

int shmrpc_stream_done(shmrpc_stream *s)
{
    int rc = stream_sendable(s);
    if (rc) return rc;
    if (!s->done) s->client->conn->ops->stream_done(s->client->conn);
    s->done = true;
    return shmrpc__err_code(0);
}

int shmrpc_stream_answer(shmrpc_stream *s, shmrpc_bytes *answer)
{
    if (answer) *answer = shmrpc_bytes_of(empty, 0);
    if (!s) return shmrpc__err_set(SHMRPC_EINVAL, "no stream");
    if (s->way != SHMRPC__STREAM_IN)
        return shmrpc__err_set(SHMRPC_EINVAL,
                               "the stream's method answers with a stream: shmrpc_stream_recv "
                               "gives its items");
    shmrpc_buf *err = shmrpc__err_begin();
    if (s->status == SHMRPC_CALL_PENDING) {
        shmrpc_client *c = s->client;
        if (!s->done) c->conn->ops->stream_done(c->conn);
        s->done = true;
        shmrpc_buf_clear(&s->item);
        shmrpc_arena_reset(s->arena);
        int rc = c->conn->ops->stream_recv(c->conn, &s->item, err);
        if (rc == 1) { /* a transport's lie: such a stream has no items */
            c->conn->ops->stream_end(c->conn);
            rc = SHMRPC_EPROTO;
            shmrpc__msg_set(err, "an item came on a stream whose method answers once");
        }
        if (rc) shmrpc_buf_clear(&s->item);
        stream_ended(s, rc, shmrpc__msg_get(err));
    }
    if (s->status == 0 && answer)
        *answer = shmrpc_bytes_of(s->item.len ? s->item.data : empty, s->item.len);
    shmrpc__msg_set(err, "%s", shmrpc__msg_get(&s->msg));
    return shmrpc__err_end(s->status);
}

int shmrpc_stream_decode_error(shmrpc_stream *s, const char *method, const char *field,
                               const char *why)
{
    char text[SHMRPC__CTX_MSG_CAP];
    bool answer = s && s->way == SHMRPC__STREAM_IN;
    shmrpc__decode_msg(text, sizeof text, method, answer ? "result" : "item", field, why);
    if (!s) return shmrpc__err_set(SHMRPC_EINVAL, "%s", text);
    if (answer && s->status == 0) { /* the answer came, and does not decode */
        s->status = SHMRPC_EINVAL;
        shmrpc__msg_set(&s->msg, "%s", text);
    } else if (s->status == SHMRPC_CALL_PENDING) {
        /* The stream ends here: its handler is told, and a later recv says the same. Both
         * ways, another thread may be sending: a cancel ends its sends as well, and tells the
         * handler, and the stream is freed by its close. */
        if (s->client && s->way == SHMRPC__STREAM_WAYS)
            shmrpc_client_cancel(s->client);
        else if (s->client)
            s->client->conn->ops->stream_end(s->client->conn);
        stream_ended(s, SHMRPC_EINVAL, text);
    }
    return shmrpc__err_set(s->status, "%s", shmrpc__msg_get(&s->msg));
}

shmrpc_arena *shmrpc_stream_arena(shmrpc_stream *s)
{
    return s ? s->arena : NULL;
}

void shmrpc_stream_close(shmrpc_stream *s)
{
    if (!s) return;
    shmrpc_client *c = s->client;
    if (c) {
        c->conn->ops->stream_end(c->conn);
        stream_ended(s, SHMRPC_ECANCELLED, "the stream was closed before its end");
        c->stream = NULL;
    }
    shmrpc_buf_destroy(&s->item);
    shmrpc_buf_destroy(&s->out);
    shmrpc_buf_destroy(&s->msg);
    shmrpc_arena_free(s->arena);
    free(s);
}
