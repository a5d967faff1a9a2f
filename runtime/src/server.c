/* The server: registering a service and its handlers, the per-connection call context,
 * and the dispatch that every transport runs a call through. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "stats.h"
#include "wait.h"

struct shmrpc_server {
    size_t max_msg;
    shmrpc_wait_opts wait;
    /* The opts it was made with, for its transports to read their part of: checked by
     * each transport (shmrpc__transport_check_opts), the secret copied to secret. */
    shmrpc_server_opts opts;
    uint8_t secret[SHMRPC_SECRET_MAX];
    const shmrpc_service *svc; /* NULL until registered; then read-only */
    void *handlers;            /* our copy of the handler table */
    void *user;
    shmrpc__listener *listener; /* NULL until listening */
    _Atomic int stop;           /* set by shmrpc_server_stop() */
    _Atomic int want;           /* workers wanted: serve(n), then set_workers() */
};

/* A handler pointer as stored in the generated table: any function pointer type has
 * the same size and representation on the platforms we build for. */
typedef void (*any_fn)(void);

void shmrpc_server_opts_init(shmrpc_server_opts *o)
{
    o->max_msg_bytes = SHMRPC_DEFAULT_MAX_MSG;
    shmrpc_wait_opts_init(&o->wait);
    o->tcp = (shmrpc_tcp_opts){0};
}

int shmrpc_server_new(shmrpc_server **out, const shmrpc_server_opts *opts)
{
    if (!out) return shmrpc__err_set(SHMRPC_EINVAL, "no place for the server (out is NULL)");
    *out = NULL;
    shmrpc_server_opts o;
    shmrpc_server_opts_init(&o);
    if (opts) o = *opts;
    int rc = shmrpc__transport_check_opts(&o);
    if (rc) return rc;
    shmrpc_server *s = calloc(1, sizeof *s);
    if (!s) return shmrpc__err_code(SHMRPC_ENOMEM);
    s->max_msg = o.max_msg_bytes ? o.max_msg_bytes : SHMRPC_DEFAULT_MAX_MSG;
    s->wait = o.wait;
    s->opts = o;
    if (o.tcp.secret) {
        memcpy(s->secret, o.tcp.secret, o.tcp.secret_len);
        s->opts.tcp.secret = s->secret;
    }
    *out = s;
    return 0;
}

void shmrpc_server_free(shmrpc_server *s)
{
    if (!s) return;
    /* Waits for calls still running in this server's handlers on other threads. */
    if (s->listener) s->listener->ops->close(s->listener);
    free(s->handlers);
    free(s);
}

/* The tables beside the info: an invoke function per method, and handler offsets that
 * lie inside the handler table. */
static int check_tables(const shmrpc_service *svc, const void *handlers)
{
    const shmrpc_service_info *info = svc->info;
    uint32_t n = info->n_methods;
    if (n == 0) return 0;
    if (!svc->invoke || !svc->handler_offset)
        return shmrpc__err_set(SHMRPC_EINVAL, "service '%s': no invoke or handler offset table",
                               info->name);
    if (!handlers)
        return shmrpc__err_set(SHMRPC_EINVAL, "service '%s': no handler table", info->name);
    for (uint32_t i = 0; i < n; i++) {
        const char *name = info->methods[i].name;
        if (!svc->invoke[i])
            return shmrpc__err_set(SHMRPC_EINVAL,
                                   "service '%s': no invoke function for method '%s'", info->name,
                                   name);
        size_t off = svc->handler_offset[i];
        if (off > svc->handlers_size || svc->handlers_size - off < sizeof(any_fn))
            return shmrpc__err_set(SHMRPC_EINVAL,
                                   "service '%s': the handler of method '%s' lies outside the "
                                   "handler table (offset %zu, table of %zu bytes)",
                                   info->name, name, off, svc->handlers_size);
    }
    return 0;
}

static bool handler_set(const shmrpc_service *svc, const void *handlers, uint32_t i)
{
    any_fn fn;
    memcpy(&fn, (const char *)handlers + svc->handler_offset[i], sizeof fn);
    return fn != NULL;
}

/* Fails naming every method without a handler: a missing one is found when the
 * service is registered, not when its first call arrives. */
static int check_handlers(const shmrpc_service *svc, const void *handlers, shmrpc_buf *err)
{
    const shmrpc_service_info *info = svc->info;
    unsigned missing = 0;
    for (uint32_t i = 0; i < info->n_methods; i++)
        missing += !handler_set(svc, handlers, i);
    if (!missing) return 0;
    const char *s_ = missing > 1 ? "s" : "";
    shmrpc__msg_set(err, "service '%s': no handler%s for method%s ", info->name, s_, s_);
    unsigned k = 0;
    for (uint32_t i = 0; i < info->n_methods; i++) {
        if (handler_set(svc, handlers, i)) continue;
        shmrpc__msg_append(err, "%s'%s'", k++ ? ", " : "", info->methods[i].name);
    }
    return SHMRPC_EINVAL;
}

int shmrpc_server_register(shmrpc_server *s, const shmrpc_service *svc, const void *handlers,
                           void *user)
{
    if (!s) return shmrpc__err_set(SHMRPC_EINVAL, "no server");
    if (s->svc)
        return shmrpc__err_set(SHMRPC_EBUSY,
                               "service '%s' is already registered; a server serves one service",
                               s->svc->info->name);
    if (!svc) return shmrpc__err_set(SHMRPC_EINVAL, "no service descriptor");
    if (svc->magic != SHMRPC_SERVICE_MAGIC)
        return shmrpc__err_set(SHMRPC_EINVAL,
                               "service descriptor has a bad magic number 0x%08x (expected 0x%08x)",
                               svc->magic, SHMRPC_SERVICE_MAGIC);
    if (svc->version != SHMRPC_DESCRIPTOR_VERSION)
        return shmrpc__err_set(SHMRPC_EVERSION,
                               "service descriptor has version %u; this runtime reads version %u "
                               "(regenerate it)",
                               svc->version, SHMRPC_DESCRIPTOR_VERSION);
    shmrpc_buf *err = shmrpc__err_begin();
    int rc = shmrpc__info_check(svc->info, err);
    if (rc == 0) rc = check_tables(svc, handlers);
    if (rc == 0) rc = check_handlers(svc, handlers, err);
    if (rc) return shmrpc__err_end(rc);

    void *copy = malloc(svc->handlers_size ? svc->handlers_size : 1);
    if (!copy) return shmrpc__err_set(SHMRPC_ENOMEM, "out of memory");
    if (svc->handlers_size) memcpy(copy, handlers, svc->handlers_size);
    s->handlers = copy;
    s->svc = svc;
    s->user = user;
    return 0;
}

int shmrpc_server_listen(shmrpc_server *s, const char *addr)
{
    if (!s) return shmrpc__err_set(SHMRPC_EINVAL, "no server");
    if (!s->svc) return shmrpc__err_set(SHMRPC_EINVAL, "register a service before listening");
    if (s->listener) return shmrpc__err_set(SHMRPC_EBUSY, "the server is already listening");
    shmrpc_buf *err = shmrpc__err_begin();
    return shmrpc__err_end(shmrpc__transport_listen(s, addr, &s->listener, err));
}

int shmrpc_server_serve(shmrpc_server *s, int workers)
{
    if (!s) return shmrpc__err_set(SHMRPC_EINVAL, "no server");
    if (workers < 0)
        return shmrpc__err_set(SHMRPC_EINVAL, "a negative count of workers (%d)", workers);
    if (!s->listener) return shmrpc__err_set(SHMRPC_EINVAL, "listen before serving");
    if (s->listener->ops->serve) {
        shmrpc__err_begin();
        return shmrpc__err_end(s->listener->ops->serve(s->listener, workers));
    }
    /* Calls run on their callers' threads: only wait to be stopped. */
    while (!atomic_load(&s->stop)) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int shmrpc_server_set_workers(shmrpc_server *s, int workers)
{
    if (!s || workers < 1 || workers > SHMRPC_MAX_WORKERS) return SHMRPC_EINVAL;
    atomic_store(&s->want, workers);
    if (s->listener && s->listener->ops->poke) s->listener->ops->poke(s->listener);
    return 0;
}

_Atomic int *shmrpc__server_want(shmrpc_server *s)
{
    return &s->want;
}

void shmrpc_server_stop(shmrpc_server *s)
{
    if (!s) return;
    atomic_store(&s->stop, 1);
    if (s->listener && s->listener->ops->stop) s->listener->ops->stop(s->listener);
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

void shmrpc__ctx_set_stats(shmrpc_ctx *ctx, struct shmrpc__stats_row *rows, uint32_t n)
{
    ctx->stats = rows;
    ctx->stats_n = rows ? n : 0;
}

int shmrpc__ctx_init(shmrpc_ctx *ctx, shmrpc_server *s)
{
    ctx->arena = shmrpc_arena_new(0);
    if (!ctx->arena) return SHMRPC_ENOMEM;
    ctx->user = s->user;
    ctx->stats = NULL;
    ctx->stats_n = 0;
    ctx->has_msg = false;
    ctx->msg[0] = '\0';
    return 0;
}

void shmrpc__ctx_destroy(shmrpc_ctx *ctx)
{
    shmrpc_arena_free(ctx->arena);
    ctx->arena = NULL;
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

int shmrpc_ctx_decode_error(shmrpc_ctx *ctx, const char *method, const char *what,
                            const char *field, const char *why)
{
    if (!ctx) return SHMRPC_EINVAL;
    shmrpc__decode_msg(ctx->msg, sizeof ctx->msg, method, what, field, why);
    ctx->has_msg = true;
    return SHMRPC_EINVAL;
}

/* --- dispatch ------------------------------------------------------------------------ */

/* The status of a call whose handler returned rc, with the message the client sees. */
static int call_status(shmrpc_server *s, shmrpc_ctx *ctx, uint32_t id, int rc,
                       const shmrpc_buf *resp)
{
    const char *name = s->svc->info->methods[id].name;
    if (rc > 0 || (rc < 0 && !shmrpc__status_known(rc)))
        return shmrpc_ctx_error(ctx, SHMRPC_EHANDLER,
                                "the handler of '%s' returned %d, which is not a status", name, rc);
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

int shmrpc__dispatch(shmrpc_server *s, shmrpc_ctx *ctx, uint32_t id, shmrpc_bytes req,
                     shmrpc_buf *resp)
{
    ctx->has_msg = false;
    shmrpc_buf_clear(resp);
    const shmrpc_service *svc = s->svc;
    if (!svc) return shmrpc_ctx_error(ctx, SHMRPC_ENOENT, "no service registered");
    if (id >= svc->info->n_methods)
        return shmrpc_ctx_error(ctx, SHMRPC_ENOENT, "no method with id %u", id);
    if (req.len > s->max_msg)
        return shmrpc_ctx_error(ctx, SHMRPC_ETOOBIG,
                                "a request of %zu bytes is larger than the server's maximum of "
                                "%zu bytes",
                                req.len, s->max_msg);
    resp->max = s->max_msg;
    int64_t t0 = ctx->stats ? shmrpc__now_ns() : 0;
    int rc = svc->invoke[id](ctx, s->handlers, req, resp);
    rc = call_status(s, ctx, id, rc, resp);
    if (ctx->stats && id < ctx->stats_n)
        shmrpc__stats_count(&ctx->stats[id], rc, (uint64_t)(shmrpc__now_ns() - t0));
    shmrpc_arena_reset(ctx->arena);
    return rc;
}
