/* SPDX-License-Identifier: MIT */
/* The server: registering a service and its handlers, then listening, serving and
 * stopping through the transport table. The transports see the server through
 * dispatch.c, so the calls run one way: server -> transport -> dispatch. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "rpc/server_int.h"
#include "stats/stats.h"
#include "core/wait.h"

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
    /* Read once, here: a server made without the variable never looks again. */
    if ((rc = shmrpc__faults_load(&s->faults, SHMRPC__FAULT_SERVER, shmrpc__err_begin()))) {
        free(s);
        return shmrpc__err_end(rc);
    }
    s->max_msg = o.max_msg_bytes ? o.max_msg_bytes : SHMRPC_DEFAULT_MAX_MSG;
    s->wait = o.wait;
    s->opts = o;
    if (o.tcp.secret && o.tcp.secret_len <= sizeof s->secret) { /* bounded by check_opts */
        memcpy(s->secret, o.tcp.secret, o.tcp.secret_len);
        s->opts.tcp.secret = s->secret;
    }
    const char **tls[4] = {&s->opts.tcp.tls_cert, &s->opts.tcp.tls_key, &s->opts.tcp.tls_ca,
                           &s->opts.tcp.tls_server_name};
    for (int i = 0; i < 4; i++) {
        if (!*tls[i]) continue;
        s->tls[i] = strdup(*tls[i]);
        if (!s->tls[i]) {
            shmrpc_server_free(s);
            return shmrpc__err_code(SHMRPC_ENOMEM);
        }
        *tls[i] = s->tls[i];
    }
    *out = s;
    return 0;
}

void shmrpc_server_free(shmrpc_server *s)
{
    if (!s) return;
    /* Waits for calls still running in this server's handlers on other threads. */
    if (s->listener) s->listener->ops->close(s->listener);
    for (int i = 0; i < 4; i++)
        free(s->tls[i]);
    free(s->handlers);
    free(s->in_place);
    free(s->streams);
    shmrpc__faults_free(s->faults);
    shmrpc__icpts_free(s->icpt);
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
    /* SHMRPC_FAULTS's method names are checked once the service is known. */
    if (rc == 0) rc = shmrpc__faults_bind(&s->faults, svc->info, err);
    if (rc) return shmrpc__err_end(rc);

    const shmrpc_service_info *info = svc->info;
    uint8_t *streams = NULL;
    for (uint32_t i = 0; i < info->n_methods; i++) {
        int way = shmrpc__sig_streams(info->methods[i].signature);
        if (!way) continue;
        if (!streams && !(streams = calloc(info->n_methods, sizeof *streams)))
            return shmrpc__err_set(SHMRPC_ENOMEM, "out of memory");
        streams[i] = (uint8_t)way;
    }
    void *copy = malloc(svc->handlers_size ? svc->handlers_size : 1);
    if (!copy) {
        free(streams);
        return shmrpc__err_set(SHMRPC_ENOMEM, "out of memory");
    }
    s->streams = streams;
    if (svc->handlers_size) memcpy(copy, handlers, svc->handlers_size);
    s->handlers = copy;
    s->svc = svc;
    s->user = user;
    return 0;
}

int shmrpc_server_set_in_place(shmrpc_server *s, uint32_t method_id, int in_place)
{
    if (!s) return shmrpc__err_set(SHMRPC_EINVAL, "no server");
    if (!s->svc) return shmrpc__err_set(SHMRPC_EINVAL, "register a service first");
    const shmrpc_service_info *info = s->svc->info;
    if (method_id >= info->n_methods)
        return shmrpc__err_set(SHMRPC_EINVAL, "no method with id %u (service '%s' has %u)",
                               method_id, info->name, info->n_methods);
    /* A decoder reading bytes that the client can change under it could be made to read
     * a length twice and believe two answers; raw bytes go to the handler as they are. */
    if (info->methods[method_id].encoding != SHMRPC_ENC_RAW)
        return shmrpc__err_set(SHMRPC_EINVAL,
                               "method '%s' is not @raw: only a @raw handler reads its request "
                               "in place",
                               info->methods[method_id].name);
    if (!s->in_place && !(s->in_place = calloc(info->n_methods, sizeof *s->in_place)))
        return shmrpc__err_set(SHMRPC_ENOMEM, "out of memory");
    s->in_place[method_id] = in_place ? SHMRPC__READ_IN_PLACE : SHMRPC__READ_COPY;
    return 0;
}

int shmrpc_server_intercept(shmrpc_server *s, const shmrpc_interceptor *i, void *arg)
{
    if (!s) return shmrpc__err_set(SHMRPC_EINVAL, "no server");
    /* Workers forked and threads running calls read the chain without a lock. */
    if (s->listener)
        return shmrpc__err_set(SHMRPC_EBUSY, "the server listens already: add interceptors "
                                             "before shmrpc_server_listen");
    return shmrpc__icpts_add(&s->icpt, i, arg);
}

int shmrpc_server_listen(shmrpc_server *s, const char *addr)
{
    if (!s) return shmrpc__err_set(SHMRPC_EINVAL, "no server");
    if (!s->svc) return shmrpc__err_set(SHMRPC_EINVAL, "register a service before listening");
    if (s->listener) return shmrpc__err_set(SHMRPC_EBUSY, "the server is already listening");
    if (shmrpc__faults_kills(s->faults) && addr && strncmp(addr, "inproc://", 9) == 0)
        return shmrpc__err_set(SHMRPC_EINVAL,
                               "SHMRPC_FAULTS kills the process serving a call, which over "
                               "inproc:// is the caller's: not at %s",
                               addr);
    shmrpc_buf *err = shmrpc__err_begin();
    return shmrpc__err_end(shmrpc__transport_listen(s, addr, &s->listener, err));
}

/* A server that shmrpc-service started as an exec= service follows the supervisor's worker
 * count, as a module= service's manager does (docs/service-ini.md, "exec= services"): the
 * supervisor puts its pid in SHMRPC_SUPERVISOR_PID, and queues a new count as
 * sigqueue(pid, SIGRTMIN, count) once it sees that the process catches SIGRTMIN. Only the
 * supervisor's own child follows (its parent is that pid: not a worker, nor a second
 * manager the program forks), only while it serves with workers, and only when the program
 * left SIGRTMIN alone (a module's manager has its own handler). */
static _Atomic(shmrpc_server *) followed;
static pid_t follow_pid;

static void on_count(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    int saved = errno;
    shmrpc_server *s = atomic_load(&followed);
    /* getpid: a worker forked with this handler is not the one that follows */
    if (s && si->si_code == SI_QUEUE && getpid() == follow_pid)
        shmrpc_server_set_workers(s, si->si_value.sival_int);
    errno = saved;
}

static bool follow_supervisor(shmrpc_server *s, int workers, struct sigaction *old)
{
    const char *v = getenv("SHMRPC_SUPERVISOR_PID");
    char *end;
    long sup = v ? strtol(v, &end, 10) : 0;
    if (workers < 1 || sup <= 1 || *end || (pid_t)sup != getppid()) return false;
    struct sigaction cur;
    if (sigaction(SIGRTMIN, NULL, &cur) != 0 || (cur.sa_flags & SA_SIGINFO) ||
        cur.sa_handler != SIG_DFL)
        return false;
    follow_pid = getpid();
    atomic_store(&followed, s);
    struct sigaction sa = {.sa_sigaction = on_count, .sa_flags = SA_SIGINFO | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGRTMIN, &sa, old) == 0;
}

int shmrpc_server_serve(shmrpc_server *s, int workers)
{
    if (!s) return shmrpc__err_set(SHMRPC_EINVAL, "no server");
    if (workers < 0)
        return shmrpc__err_set(SHMRPC_EINVAL, "a negative count of workers (%d)", workers);
    if (!s->listener) return shmrpc__err_set(SHMRPC_EINVAL, "listen before serving");
    if (s->listener->ops->serve) {
        shmrpc__err_begin();
        struct sigaction old;
        bool follows = follow_supervisor(s, workers, &old);
        int rc = s->listener->ops->serve(s->listener, workers);
        if (follows) {
            sigaction(SIGRTMIN, &old, NULL);
            atomic_store(&followed, NULL);
        }
        return shmrpc__err_end(rc);
    }
    /* Calls run on their callers' threads: only wait to be stopped. */
    while (!atomic_load(&s->stop)) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* The server that serve_until_signal's SIGTERM and SIGINT stop: one per process at a time,
 * since a signal's disposition belongs to the process. */
static _Atomic(shmrpc_server *) signalled;

static void on_stop_signal(int sig)
{
    (void)sig;
    int saved = errno;
    shmrpc_server_stop(atomic_load(&signalled));
    errno = saved;
}

int shmrpc_server_serve_until_signal(shmrpc_server *s, int workers)
{
    if (!s) return shmrpc__err_set(SHMRPC_EINVAL, "no server");
    shmrpc_server *none = NULL;
    if (!atomic_compare_exchange_strong(&signalled, &none, s))
        return shmrpc__err_set(SHMRPC_EBUSY,
                               "another server serves until a signal in this process: SIGTERM "
                               "and SIGINT stop one server at a time");
    /* As a program's own handler would be: no SA_RESTART, so a wait the signal cuts ends. */
    struct sigaction sa = {.sa_handler = on_stop_signal}, old_term, old_int;
    sigemptyset(&sa.sa_mask);
    int rc = 0;
    if (sigaction(SIGTERM, &sa, &old_term) != 0) {
        rc = shmrpc__err_set(SHMRPC_ESYS(errno), "sigaction(SIGTERM): %s", strerror(errno));
    } else if (sigaction(SIGINT, &sa, &old_int) != 0) {
        rc = shmrpc__err_set(SHMRPC_ESYS(errno), "sigaction(SIGINT): %s", strerror(errno));
        sigaction(SIGTERM, &old_term, NULL);
    } else {
        rc = shmrpc_server_serve(s, workers);
        /* The previous dispositions first: a signal until then still stops s, which lives. */
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    atomic_store(&signalled, NULL);
    return rc;
}

int shmrpc_server_set_workers(shmrpc_server *s, int workers)
{
    if (!s || workers < 1 || workers > SHMRPC_MAX_WORKERS) return SHMRPC_EINVAL;
    atomic_store(&s->want, workers);
    if (s->listener && s->listener->ops->poke) s->listener->ops->poke(s->listener);
    return 0;
}

void shmrpc_server_stop(shmrpc_server *s)
{
    if (!s) return;
    atomic_store(&s->stop, 1);
    if (s->listener && s->listener->ops->stop) s->listener->ops->stop(s->listener);
}
