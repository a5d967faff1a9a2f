/* SPDX-License-Identifier: MIT */
/* What a transport sees of a server: its service, limits and opts, the call context of a
 * connection, and the dispatch that every transport runs a call through. Nothing here
 * calls server.c or a transport, so the calls run one way: server -> transport ->
 * dispatch. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rpc/rpc.h"
#include "rpc/server_int.h"
#include "stats/stats.h"
#include "core/wait.h"

_Atomic int *shmrpc__server_want(shmrpc_server *s)
{
    return &s->want;
}

const shmrpc_service_info *shmrpc__server_info(const shmrpc_server *s)
{
    return s->svc->info;
}

const shmrpc_wait_opts *shmrpc__server_wait(const shmrpc_server *s)
{
    return &s->wait;
}

const shmrpc_server_opts *shmrpc__server_opts(const shmrpc_server *s)
{
    return &s->opts;
}

size_t shmrpc__server_max_msg(const shmrpc_server *s)
{
    return s->max_msg;
}

/* --- the call context ----------------------------------------------------------------- */

/* The call whose handler runs on this thread (a handler's calls inherit its deadline). */
static _Thread_local shmrpc_ctx *serving;

void shmrpc__ctx_set_stats(shmrpc_ctx *ctx, struct shmrpc__stats_row *rows, uint32_t n)
{
    ctx->stats = rows;
    ctx->stats_n = rows ? n : 0;
}

int shmrpc__ctx_init(shmrpc_ctx *ctx, shmrpc_server *s)
{
    /* What is not named starts at zero: no statistics, loan, deadline look or message. */
    *ctx = (shmrpc_ctx){.user = s->user, .ran_ns = -1, .budget_ns = -1};
    ctx->arena = shmrpc_arena_new(0);
    return ctx->arena ? 0 : SHMRPC_ENOMEM;
}

void shmrpc__ctx_destroy(shmrpc_ctx *ctx)
{
    if (serving == ctx) serving = NULL; /* a handler that did not return (longjmp) */
    shmrpc_arena_free(ctx->arena);
    ctx->arena = NULL;
    shmrpc_buf_destroy(&ctx->item);
    shmrpc_buf_destroy(&ctx->in_item);
    shmrpc_arena_free(ctx->in_arena);
    ctx->in_arena = NULL;
}

int shmrpc__server_streams(const shmrpc_server *s, uint32_t id)
{
    return s->streams && s->svc && id < s->svc->info->n_methods ? s->streams[id] : 0;
}

int shmrpc__server_reads(const shmrpc_server *s, uint32_t id)
{
    if (!s->svc || id >= s->svc->info->n_methods) return SHMRPC__READ_COPY;
    if (s->in_place && s->in_place[id] != SHMRPC__READ_UNSET) return s->in_place[id];
    return s->svc->info->methods[id].encoding == SHMRPC_ENC_RAW ? SHMRPC__READ_LARGE
                                                                : SHMRPC__READ_COPY;
}

/* Makes the room p of size bytes the answer buffer of ctx's dispatch, until
 * shmrpc__ctx_unloan. */
static void lend(shmrpc_ctx *ctx, void *p, size_t size)
{
    shmrpc_buf *resp = ctx->resp;
    if (!ctx->loaned) {
        ctx->saved_data = resp->data;
        ctx->saved_cap = resp->cap;
        ctx->loaned = true;
    }
    /* The answer buffer is now the loan, never grown (max == cap): an answer the handler
     * returns from the loan's start is appended onto itself, which copies nothing. */
    resp->data = p;
    resp->len = 0;
    resp->cap = resp->max = size;
    resp->err = 0;
}

int shmrpc_ctx_loan(shmrpc_ctx *ctx, size_t size, void **ptr)
{
    if (ptr) *ptr = NULL;
    if (!ctx || !ptr) return SHMRPC_EINVAL;
    shmrpc_buf *resp = ctx->resp;
    if (!resp) return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "no call is being served");
    if (size > ctx->max_msg)
        return shmrpc_ctx_error(ctx, SHMRPC_ETOOBIG,
                                "a loan of %zu bytes is larger than the server's maximum of %zu "
                                "bytes",
                                size, ctx->max_msg);
    if (!ctx->loan || ctx->req_in_room) { /* the arena's, copied as any result */
        *ptr = shmrpc_arena_alloc(ctx->arena, size ? size : 1, 16);
        return *ptr ? 0 : shmrpc_ctx_error(ctx, SHMRPC_ENOMEM, "out of memory");
    }
    void *p;
    int rc = ctx->loan(ctx->loan_arg, size, &p);
    if (rc) return shmrpc_ctx_error(ctx, rc, "no room for an answer of %zu bytes", size);
    lend(ctx, p, size);
    *ptr = p;
    return 0;
}

int shmrpc_ctx_answer_raw(shmrpc_ctx *ctx, shmrpc_buf *resp, shmrpc_bytes out)
{
    /* Not for an answer the handler wrote in a loan (appended onto itself below), nor for a
     * short one, whose copy costs less than the loan. */
    void *room;
    if (ctx && ctx->loan && !ctx->loaned && resp == ctx->resp && out.len >= SHMRPC__ROOM_MIN &&
        ctx->loan(ctx->loan_arg, out.len, &room) == 0) {
        /* The handler has returned: its request, which the room may hold, is read. What it
         * answers may be part of that request (memmove), or there already. */
        if (room != out.ptr) memmove(room, out.ptr, out.len);
        lend(ctx, room, out.len);
        out.ptr = room;
    }
    return shmrpc_buf_append(resp, out.ptr, out.len);
}

void shmrpc__ctx_unloan(shmrpc_ctx *ctx)
{
    if (!ctx->loaned) return;
    shmrpc_buf *resp = ctx->resp;
    resp->data = ctx->saved_data;
    resp->cap = ctx->saved_cap;
    resp->len = 0;
    resp->err = 0;
    ctx->loaned = false;
}

const char *shmrpc__ctx_msg(const shmrpc_ctx *ctx)
{
    return ctx->has_msg ? ctx->msg : "";
}

shmrpc_arena *shmrpc_ctx_arena(shmrpc_ctx *ctx)
{
    return ctx ? ctx->arena : NULL;
}

void *shmrpc_ctx_user(shmrpc_ctx *ctx)
{
    return ctx ? ctx->user : NULL;
}

uint32_t shmrpc_ctx_method(const shmrpc_ctx *ctx)
{
    return ctx ? ctx->method : 0;
}

/* --- the call's deadline and whether it is still wanted ------------------------------ */

/* A budget that would take the deadline past this many ns from now reads as none: what a
 * client may say does not overflow the clock. */
#define BUDGET_MAX_NS (INT64_C(100) * 365 * 24 * 3600 * 1000000000)

int64_t shmrpc_ctx_deadline(shmrpc_ctx *ctx)
{
    if (!ctx || ctx->budget_ns < 0 || ctx->budget_ns > BUDGET_MAX_NS) return INT64_MAX;
    if (ctx->began_ns == 0) ctx->began_ns = shmrpc__now_ns();
    return ctx->began_ns + ctx->budget_ns;
}

int shmrpc_ctx_cancelled(shmrpc_ctx *ctx)
{
    if (!ctx) return 0;
    int why = ctx->wanted ? ctx->wanted(ctx->wanted_arg) : 0;
    if (why == 0 && ctx->budget_ns >= 0 && shmrpc__now_ns() >= shmrpc_ctx_deadline(ctx))
        why = SHMRPC_ETIMEDOUT;
    return why;
}

int shmrpc_ctx_wait_cancelled(shmrpc_ctx *ctx, int64_t timeout_ms)
{
    int64_t until = timeout_ms < 0 || timeout_ms > BUDGET_MAX_NS / 1000000
                        ? INT64_MAX
                        : shmrpc__now_ns() + timeout_ms * 1000000;
    int64_t deadline = shmrpc_ctx_deadline(ctx);
    /* Nothing could end it (no call, or one whose transport cannot tell), with no limit asked:
     * not a wait for ever. */
    if (until == INT64_MAX && deadline == INT64_MAX && (!ctx || !ctx->wanted)) return 0;
    for (;;) {
        int why = shmrpc_ctx_cancelled(ctx);
        int64_t now = shmrpc__now_ns();
        if (why != 0 || now >= until) return why;
        /* A look a millisecond, or at the deadline when it comes first. */
        int64_t nap = 1000000;
        if (deadline - now < nap) nap = deadline - now;
        if (until - now < nap) nap = until - now;
        struct timespec ts = {0, nap > 0 ? nap : 0};
        nanosleep(&ts, NULL);
    }
}

shmrpc_ctx *shmrpc_ctx_current(void)
{
    return serving;
}

int64_t shmrpc__ctx_inherit(int64_t timeout_ms)
{
    shmrpc_ctx *ctx = serving;
    if (ctx == NULL || ctx->budget_ns < 0) return timeout_ms;
    int64_t deadline = shmrpc_ctx_deadline(ctx);
    if (deadline == INT64_MAX) return timeout_ms;
    int64_t left = deadline - shmrpc__now_ns();
    int64_t left_ms = left > 0 ? left / 1000000 : 0;
    return timeout_ms < 0 || left_ms < timeout_ms ? left_ms : timeout_ms;
}

int shmrpc_ctx_error(shmrpc_ctx *ctx, int rc, const char *fmt, ...)
{
    if (!ctx) return rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
    va_end(ap);
    ctx->has_msg = true;
    return rc;
}

/* --- streams -------------------------------------------------------------------------- */

int shmrpc_ctx_send(shmrpc_ctx *ctx, const void *item, size_t n)
{
    if (!ctx || (!item && n)) return SHMRPC_EINVAL;
    if (!ctx->send)
        return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "the call being served is no stream");
    if (n > ctx->max_msg)
        return shmrpc_ctx_error(ctx, SHMRPC_ETOOBIG,
                                "an item of %zu bytes is larger than the server's maximum of %zu "
                                "bytes",
                                n, ctx->max_msg);
    return ctx->send(ctx->send_arg, n ? item : "", n);
}

shmrpc_buf *shmrpc_ctx_item(shmrpc_ctx *ctx)
{
    if (!ctx) return NULL;
    shmrpc_buf_clear(&ctx->item);
    ctx->item.max = ctx->max_msg;
    return &ctx->item;
}

int shmrpc_ctx_recv(shmrpc_ctx *ctx, shmrpc_bytes *item)
{
    static const uint8_t none[1]; /* an empty item's pointer, which decoders add 0 to */
    if (item) *item = shmrpc_bytes_of(none, 0);
    if (!ctx) return SHMRPC_EINVAL;
    if (!ctx->recv)
        return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "the call being served streams no parameter");
    if (!ctx->in_arena && !(ctx->in_arena = shmrpc_arena_new(0)))
        return shmrpc_ctx_error(ctx, SHMRPC_ENOMEM, "out of memory");
    shmrpc_arena_reset(ctx->in_arena);
    shmrpc_buf_clear(&ctx->in_item);
    ctx->in_item.max = ctx->max_msg;
    int rc = ctx->recv(ctx->recv_arg, &ctx->in_item);
    if (rc == 1 && item && ctx->in_item.len)
        *item = shmrpc_bytes_of(ctx->in_item.data, ctx->in_item.len);
    /* Why, in the call's message and in shmrpc_errmsg() (a Python handler's exception). */
    if (rc < 0) shmrpc__err_set(rc, "%s", shmrpc__ctx_msg(ctx));
    return rc;
}

shmrpc_arena *shmrpc_ctx_item_arena(shmrpc_ctx *ctx)
{
    if (!ctx) return NULL;
    if (!ctx->in_arena) ctx->in_arena = shmrpc_arena_new(0);
    return ctx->in_arena;
}

int shmrpc_ctx_decode_error(shmrpc_ctx *ctx, const char *method, const char *what,
                            const char *field, const char *why)
{
    if (!ctx) return SHMRPC_EINVAL;
    shmrpc__decode_msg(ctx->msg, sizeof ctx->msg, method, what, field, why);
    ctx->has_msg = true;
    return SHMRPC_EINVAL;
}

/* --- dispatch ------------------------------------------------------------------------ */

/* Runs the handler of method id, or first the fault SHMRPC_FAULTS asks for this call. */
static int invoke_faulty(shmrpc_server *s, shmrpc_ctx *ctx, uint32_t id, shmrpc_bytes req,
                         shmrpc_buf *resp)
{
    const shmrpc__fault *f = s->faults ? shmrpc__faults_draw(s->faults, id) : NULL;
    if (f && f->action == SHMRPC__FAULT_STATUS)
        return shmrpc_ctx_error(ctx, f->status, "injected by SHMRPC_FAULTS (%s)", f->text);
    if (f && f->action == SHMRPC__FAULT_DELAY) shmrpc__faults_sleep(f->delay_ms);
    if (f && f->action == SHMRPC__FAULT_KILL) kill(getpid(), SIGKILL); /* as a crash would */
    return s->svc->invoke[id](ctx, s->handlers, req, resp);
}

/* The status of a call whose handler returned rc, with the message the client sees. */
static int call_status(shmrpc_server *s, shmrpc_ctx *ctx, uint32_t id, int rc,
                       const shmrpc_buf *resp)
{
    const char *name = s->svc->info->methods[id].name;
    if (rc > 0 || (rc < 0 && !shmrpc__status_known(rc)))
        return shmrpc_ctx_error(ctx, SHMRPC_EHANDLER,
                                "the handler of '%s' returned %d, which is not a status", name, rc);
    if (rc == 0 && ctx->loaned && resp->err == SHMRPC_ETOOBIG)
        return shmrpc_ctx_error(ctx, SHMRPC_ETOOBIG,
                                "the result of '%s' is larger than its loan of %zu bytes", name,
                                resp->cap);
    if (rc == 0 && (resp->err == SHMRPC_ETOOBIG || resp->len > s->max_msg))
        return shmrpc_ctx_error(ctx, SHMRPC_ETOOBIG,
                                "the result of '%s' is larger than the server's maximum of %zu "
                                "bytes",
                                name, s->max_msg);
    if (rc == 0 && resp->err)
        return shmrpc_ctx_error(ctx, resp->err, "encoding the result of '%s': %s", name,
                                shmrpc_strerror(resp->err));
    if (rc < 0 && !ctx->has_msg) shmrpc_ctx_error(ctx, rc, "%s", shmrpc_strerror(rc));
    return rc;
}

/* Runs the call of method id inside what the server puts around its handler: the faults
 * SHMRPC_FAULTS injects (as the handler's), inside its interceptors, whose afters see the
 * status the client gets. Returns that status (call_status'd). */
static int invoke_around(shmrpc_server *s, shmrpc_ctx *ctx, uint32_t id, shmrpc_bytes req,
                         shmrpc_buf *resp)
{
    if (!s->icpt) return call_status(s, ctx, id, invoke_faulty(s, ctx, id, req, resp), resp);
    const shmrpc_service_info *info = s->svc->info;
    shmrpc__icall ic = {
        .pub = {.service = info, .method = &info->methods[id], .ctx = ctx, .metadata = ctx->meta}};
    uint32_t ran;
    int rc = shmrpc__icpts_before(s->icpt, &ic, &ran);
    if (rc == 0) rc = call_status(s, ctx, id, invoke_faulty(s, ctx, id, req, resp), resp);
    return shmrpc__icpts_after(s->icpt, &ic, ran, rc);
}

void shmrpc__ctx_count(shmrpc_ctx *ctx, int64_t now)
{
    if (!ctx->count_due) return;
    ctx->count_due = false;
    if (ctx->stats && ctx->count_id < ctx->stats_n)
        shmrpc__stats_count(&ctx->stats[ctx->count_id], ctx->count_rc,
                            (uint64_t)(now - ctx->count_t0));
}

/* Runs the call of method id (shmrpc__dispatch), or answers it here (a health probe, a
 * call that cannot run), and counts it. */
static int run(shmrpc_server *s, shmrpc_ctx *ctx, uint32_t id, shmrpc_bytes req, shmrpc_buf *resp)
{
    ctx->has_msg = false;
    ctx->ran_ns = -1;
    shmrpc_buf_clear(resp);
    const shmrpc_service *svc = s->svc;
    if (id == SHMRPC_HEALTH_METHOD_ID) {
        /* Answered here, before any handler or table: a probe must not depend on the
         * user's code, and it counts in no method's statistics. */
        uint8_t state = !svc                                     ? SHMRPC_HEALTH_NOT_SERVING
                        : atomic_load(&s->stop) || ctx->draining ? SHMRPC_HEALTH_DRAINING
                                                                 : SHMRPC_HEALTH_SERVING;
        resp->max = s->max_msg;
        return shmrpc_buf_append(resp, &state, 1)
                   ? shmrpc_ctx_error(ctx, SHMRPC_ENOMEM, "out of memory")
                   : 0;
    }
    if (!svc) return shmrpc_ctx_error(ctx, SHMRPC_ENOENT, "no service registered");
    if (id >= svc->info->n_methods)
        return shmrpc_ctx_error(ctx, SHMRPC_ENOENT, "no method with id %u", id);
    if (req.len > s->max_msg)
        return shmrpc_ctx_error(ctx, SHMRPC_ETOOBIG,
                                "a request of %zu bytes is larger than the server's maximum of "
                                "%zu bytes",
                                req.len, s->max_msg);
    /* A stream opened on a method that answers once, or the other way, by a client that
     * skipped the checks of its own side (client.c makes each only as the table says). */
    int way = s->streams ? s->streams[id] : 0;
    if (way != ((ctx->send ? SHMRPC__STREAM_OUT : 0) | (ctx->recv ? SHMRPC__STREAM_IN : 0)))
        return shmrpc_ctx_error(
            ctx, SHMRPC_EINVAL,
            !way                       ? "'%s' answers once: it is called, not opened as a stream"
            : ctx->send || ctx->recv   ? "'%s' streams otherwise than the stream opened"
            : way & SHMRPC__STREAM_OUT ? "'%s' answers with a stream: it is opened, not called"
                                       : "'%s' streams its parameter: it is opened, not called",
            svc->info->methods[id].name);
    resp->max = s->max_msg;
    ctx->resp = resp;
    ctx->max_msg = s->max_msg;
    bool timed = ctx->stats || ctx->timed;
    /* A call with a deadline starts its clock here too (shmrpc_ctx_deadline). */
    int64_t t0 = !(timed || ctx->budget_ns >= 0) ? 0 : ctx->now_ns ? ctx->now_ns : shmrpc__now_ns();
    ctx->method = id;
    ctx->began_ns = t0;
    shmrpc_ctx *outer = serving; /* inproc://: a handler's call runs its handler here */
    serving = ctx;
    int rc = s->faults || s->icpt
                 ? invoke_around(s, ctx, id, req, resp)
                 : call_status(s, ctx, id, svc->invoke[id](ctx, s->handlers, req, resp), resp);
    serving = outer;
    if (ctx->stats && id < ctx->stats_n && ctx->count_later) {
        /* Counted after the answer (shmrpc__ctx_count), with the time it ends then. */
        ctx->count_due = true;
        ctx->count_rc = rc;
        ctx->count_id = id;
        ctx->count_t0 = t0;
    } else if (timed) {
        ctx->ran_ns = shmrpc__now_ns() - t0;
        if (ctx->stats && id < ctx->stats_n)
            shmrpc__stats_count(&ctx->stats[id], rc, (uint64_t)ctx->ran_ns);
    }
    return rc;
}

int shmrpc__dispatch(shmrpc_server *s, shmrpc_ctx *ctx, uint32_t id, shmrpc_bytes req,
                     shmrpc_buf *resp)
{
    int rc = run(s, ctx, id, req, resp);
    /* What the call brought is forgotten however it ended, a health probe or a call refused
     * before its handler too: a worker's next call may be another client's, which sends
     * metadata of its own or none. */
    ctx->budget_ns = -1;
    ctx->now_ns = 0;
    ctx->meta = NULL; /* in the arena */
    ctx->tracestate = NULL;
    ctx->trace[0] = 0;
    ctx->span_due = false;
    shmrpc_arena_reset(ctx->arena);
    return rc;
}
