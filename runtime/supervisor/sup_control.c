/* SPDX-License-Identifier: MIT */
/* The supervisor's control service. Its server runs on a thread of its own; a handler
 * that needs the services puts its request in a one-request slot under a mutex, rings an
 * eventfd the main loop polls, and waits (bounded) on a condition variable for the main
 * loop's answer: the services' state is read and changed by the main thread only. What
 * does not need them is answered here: unknown names (the configuration does not change)
 * and log tails (files on disk). */
#include "sup_control.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/server.h>
#include <shmrpc/status.h>

#include "control_svc/control.h"
#include "obs_proc.h"
#include "sup_scaler.h"
#include "sup_series.h"
#include "input.h"

/* How long a handler waits for the main loop, which answers between two polls; one slow
 * step of its own (a readiness check over TCP takes up to a second) fits in this. */
#define ANSWER_WAIT_MS 5000
/* logs(): at most this many lines and bytes. */
#define TAIL_MAX_LINES 1000
#define TAIL_MAX_BYTES ((size_t)1 << 20)

typedef enum op { OP_STATUS, OP_START, OP_STOP, OP_RESTART, OP_SCALE } op;

/* One service as the main loop last copied it for a handler. */
typedef struct snap {
    char state[16];
    int32_t pid, restarts;
    int64_t started_at_ms;
    char last_exit[sizeof((sup_service *)0)->last_exit];
    char sigkill[sizeof((sup_service *)0)->killed];
    uint64_t dropped;
    int workers; /* as /proc shows them at the answer (obs_proc.h's rule) */
    int n_pids;  /* the first of them, ascending */
    int32_t worker_pids[SUP_SERIES_MAX_PIDS];
    bool usage; /* cpu and rss are known: the time series' last sample (sup_series_usage) */
    double cpu;
    uint64_t rss;
} snap;

struct sup_control {
    shmrpc_server *srv;
    pthread_t thread;
    bool thread_started;
    int serve_rc; /* what shmrpc_server_serve returned; read once the thread is joined */
    int efd;      /* eventfd: a request waits */
    const cfg_file *cfg;
    sup_service *svcs; /* the main thread's: name and log path, which never change, are
                        * read here; the rest only through snaps */
    size_t n;
    const sup_series *series; /* the main thread's: read in snapshot() only; NULL: none */

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* on CLOCK_MONOTONIC: an answer came, or closing */
    bool closing;       /* sup_control_stop began: no more requests */
    bool pending;       /* a request waits for the main loop */
    op op;
    size_t index;      /* the service it concerns */
    int arg;           /* OP_SCALE: the workers asked for */
    uint64_t seq;      /* the number of the last request made */
    uint64_t answered; /* the number of the last request answered */
    int rc;            /* the answer: 0 or a status with msg */
    char msg[256];
    snap *snaps; /* every service, as of the last answer */
};

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* The service called name, or an error naming those there are. */
static int find(shmrpc_ctx *ctx, sup_control *k, shmrpc_str name, size_t *index)
{
    for (size_t i = 0; i < k->n; i++) {
        const char *s = k->cfg->services[i].name;
        if (strlen(s) == name.len && memcmp(s, name.ptr, name.len) == 0) {
            *index = i;
            return 0;
        }
    }
    char names[200];
    size_t used = 0;
    names[0] = '\0';
    for (size_t i = 0; i < k->n && used < sizeof names; i++) {
        int w = snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                         k->cfg->services[i].name);
        if (w < 0) break;
        used += (size_t)w;
    }
    int shown = name.len > 64 ? 64 : (int)name.len;
    return shmrpc_ctx_error(ctx, SHMRPC_ENOENT, "no service '%.*s%s'; the services are: %s", shown,
                            name.ptr, name.len > 64 ? "..." : "", names);
}

static shmrpc_str arena_str(shmrpc_arena *a, const char *s)
{
    size_t n = strlen(s);
    char *p = shmrpc_arena_strndup(a, s, n);
    return p ? (shmrpc_str){p, n} : (shmrpc_str){"", 0};
}

/* Under k->mu: service i as of the last answer, its strings in the call's arena. */
static void fill(shmrpc_ctx *ctx, sup_control *k, size_t i, control_ServiceStatus *out)
{
    shmrpc_arena *a = shmrpc_ctx_arena(ctx);
    const snap *sn = &k->snaps[i];
    out->name = arena_str(a, k->cfg->services[i].name);
    out->state = arena_str(a, sn->state);
    out->pid = sn->pid;
    out->restarts = sn->restarts;
    out->started_at_ms = sn->started_at_ms;
    out->last_exit = arena_str(a, sn->last_exit);
    out->sigkill.has = sn->sigkill[0] != '\0';
    out->sigkill.value = arena_str(a, sn->sigkill);
    out->log_path = arena_str(a, k->svcs[i].log.path ? k->svcs[i].log.path : "");
    out->log_dropped_bytes = sn->dropped;
    out->workers = sn->workers > 0 ? (uint32_t)sn->workers : 0;
    int32_t *pids =
        sn->n_pids ? shmrpc_arena_calloc(a, (size_t)sn->n_pids, sizeof *pids, _Alignof(int32_t))
                   : NULL;
    if (pids) memcpy(pids, sn->worker_pids, (size_t)sn->n_pids * sizeof *pids);
    out->worker_pids.items = pids;
    out->worker_pids.len = pids ? (size_t)sn->n_pids : 0;
    out->cpu_percent.has = out->rss_bytes.has = sn->usage;
    out->cpu_percent.value = sn->usage ? sn->cpu : 0;
    out->rss_bytes.value = sn->usage ? sn->rss : 0;
}

/* Hands a request to the main loop and waits for its answer; returns with k->mu held
 * when the answer is 0 (the caller reads the snaps, then unlocks). */
static int ask(shmrpc_ctx *ctx, sup_control *k, op what, size_t index, int arg)
{
    pthread_mutex_lock(&k->mu);
    if (k->closing) {
        pthread_mutex_unlock(&k->mu);
        return shmrpc_ctx_error(ctx, SHMRPC_EUNAVAIL, "the supervisor is exiting");
    }
    /* One serving thread makes one request at a time; a request a handler gave up on and
     * the main loop has not taken yet is replaced. */
    uint64_t seq = ++k->seq;
    k->pending = true;
    k->op = what;
    k->index = index;
    k->arg = arg;
    pthread_mutex_unlock(&k->mu);
    uint64_t one = 1;
    if (write(k->efd, &one, sizeof one) < 0) {
        /* the counter cannot overflow with one ring per request; nothing to do */
    }
    pthread_mutex_lock(&k->mu);
    struct timespec until;
    deadline_in(&until, ANSWER_WAIT_MS);
    while (k->answered < seq && !k->closing) {
        if (pthread_cond_timedwait(&k->cv, &k->mu, &until) == ETIMEDOUT) break;
    }
    if (k->answered < seq) {
        if (k->seq == seq) k->pending = false; /* withdrawn, unless taken already */
        bool closing = k->closing;
        pthread_mutex_unlock(&k->mu);
        return closing ? shmrpc_ctx_error(ctx, SHMRPC_EUNAVAIL, "the supervisor is exiting")
                       : shmrpc_ctx_error(ctx, SHMRPC_ETIMEDOUT,
                                          "the supervisor's main loop did not answer within %d ms",
                                          ANSWER_WAIT_MS);
    }
    if (k->rc) {
        int rc = shmrpc_ctx_error(ctx, k->rc, "%s", k->msg);
        pthread_mutex_unlock(&k->mu);
        return rc;
    }
    return 0;
}

static int h_status(shmrpc_ctx *ctx, control_list_ServiceStatus *out)
{
    sup_control *k = shmrpc_ctx_user(ctx);
    int rc = ask(ctx, k, OP_STATUS, 0, 0);
    if (rc) return rc;
    control_ServiceStatus *items = shmrpc_arena_calloc(shmrpc_ctx_arena(ctx), k->n, sizeof *items,
                                                       _Alignof(control_ServiceStatus));
    if (!items) {
        pthread_mutex_unlock(&k->mu);
        return SHMRPC_ENOMEM;
    }
    for (size_t i = 0; i < k->n; i++)
        fill(ctx, k, i, &items[i]);
    pthread_mutex_unlock(&k->mu);
    out->items = items;
    out->len = k->n;
    return 0;
}

static int one(shmrpc_ctx *ctx, op what, shmrpc_str name, int arg, control_ServiceStatus *out)
{
    sup_control *k = shmrpc_ctx_user(ctx);
    size_t i;
    int rc = find(ctx, k, name, &i);
    if (!rc) rc = ask(ctx, k, what, i, arg);
    if (rc) return rc;
    fill(ctx, k, i, out);
    pthread_mutex_unlock(&k->mu);
    return 0;
}

static int h_start(shmrpc_ctx *ctx, shmrpc_str name, control_ServiceStatus *out)
{
    return one(ctx, OP_START, name, 0, out);
}

static int h_stop(shmrpc_ctx *ctx, shmrpc_str name, control_ServiceStatus *out)
{
    return one(ctx, OP_STOP, name, 0, out);
}

static int h_restart(shmrpc_ctx *ctx, shmrpc_str name, control_ServiceStatus *out)
{
    return one(ctx, OP_RESTART, name, 0, out);
}

static int h_scale(shmrpc_ctx *ctx, shmrpc_str name, uint32_t workers, control_ServiceStatus *out)
{
    sup_control *k = shmrpc_ctx_user(ctx);
    size_t i;
    int rc = find(ctx, k, name, &i);
    if (rc) return rc;
    /* A service's workers are the supervisor's (sup_scaler.c), an exec= service's when its
     * program follows a count; workers above the runtime's most are refused there, with
     * the others out of range. */
    return one(ctx, OP_SCALE, name, workers > 100000 ? 100000 : (int)workers, out);
}

static int h_logs(shmrpc_ctx *ctx, shmrpc_str name, uint32_t lines, control_list_String *out)
{
    sup_control *k = shmrpc_ctx_user(ctx);
    size_t i;
    int rc = find(ctx, k, name, &i);
    if (rc) return rc;
    out->items = NULL;
    out->len = 0;
    size_t want = lines > TAIL_MAX_LINES ? TAIL_MAX_LINES : lines;
    if (want == 0) return 0;
    const char *path = k->svcs[i].log.path;
    char *text = NULL;
    size_t count = 0;
    rc = sup_control_tail(path, want, TAIL_MAX_BYTES, &text, &count);
    if (rc) return shmrpc_ctx_error(ctx, rc, "%s: %s", path, shmrpc_strerror(rc));
    shmrpc_arena *a = shmrpc_ctx_arena(ctx);
    shmrpc_str *items =
        count ? shmrpc_arena_calloc(a, count, sizeof *items, _Alignof(shmrpc_str)) : NULL;
    if (count && !items) {
        free(text);
        return SHMRPC_ENOMEM;
    }
    const char *p = text;
    for (size_t j = 0; j < count; j++) {
        size_t len = strlen(p);
        char *copy = shmrpc_arena_strndup(a, p, len);
        if (!copy) {
            free(text);
            return SHMRPC_ENOMEM;
        }
        items[j] = (shmrpc_str){copy, len};
        p += len + 1;
    }
    free(text);
    out->items = items;
    out->len = count;
    return 0;
}

static const Control_handlers handlers = {
    .status = h_status,
    .start = h_start,
    .stop = h_stop,
    .restart = h_restart,
    .scale = h_scale,
    .logs = h_logs,
};

/* The serving thread; what it ends with is logged by the main thread, in
 * sup_control_stop (the supervisor's log is the main thread's). */
static void *serve(void *arg)
{
    sup_control *k = arg;
    k->serve_rc = shmrpc_server_serve(k->srv, 0);
    return NULL;
}

/* Every service's status as it is now; its workers from one pass over /proc (the time
 * series' last sample may be from before a server forked them). */
static void snapshot(sup_control *k)
{
    pid_t *leaders = calloc(k->n ? k->n : 1, sizeof *leaders);
    obs_proc *procs = NULL;
    size_t n_procs = 0;
    for (size_t i = 0; leaders && i < k->n; i++)
        leaders[i] = k->svcs[i].pid;
    bool scanned = leaders && obs_groups_scan(leaders, k->n, &procs, &n_procs) == 0;
    free(leaders);
    for (size_t i = 0; i < k->n; i++) {
        const sup_service *s = &k->svcs[i];
        snap *sn = &k->snaps[i];
        snprintf(sn->state, sizeof sn->state, "%s", sup_state_name(s->state));
        sn->pid = (int32_t)s->pid;
        sn->restarts = s->restarts;
        sn->started_at_ms = s->started_unix;
        memcpy(sn->last_exit, s->last_exit, sizeof sn->last_exit);
        memcpy(sn->sigkill, s->killed, sizeof sn->sigkill);
        sn->dropped = s->log.dropped;
        const pid_t *pids;
        pid_t now[SUP_SERIES_MAX_PIDS];
        if (scanned) { /* else (no memory) the series' last sample */
            sn->workers = obs_group_workers(procs, n_procs, s->pid, s->cfg->kind != CFG_MODULE, now,
                                            SUP_SERIES_MAX_PIDS);
            sn->n_pids = sn->workers < SUP_SERIES_MAX_PIDS ? sn->workers : SUP_SERIES_MAX_PIDS;
            pids = now;
        } else {
            sn->workers = sup_series_workers(k->series, i, &pids, &sn->n_pids);
        }
        for (int j = 0; j < sn->n_pids; j++)
            sn->worker_pids[j] = (int32_t)pids[j];
        sn->usage = sup_series_usage(k->series, i, &sn->cpu, &sn->rss);
    }
    free(procs);
}

int sup_control_start(sup_control **out, const char *addr, const cfg_file *c, sup_service *svcs,
                      size_t n, char *err, size_t cap)
{
    *out = NULL;
    err[0] = '\0';
    sup_control *k = calloc(1, sizeof *k);
    if (!k) return SHMRPC_ENOMEM;
    k->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    k->cfg = c;
    k->svcs = svcs;
    k->n = n;
    k->snaps = calloc(n ? n : 1, sizeof *k->snaps);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&k->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&k->mu, NULL);
    int rc = k->efd < 0 ? SHMRPC_ESYS(errno) : !k->snaps ? SHMRPC_ENOMEM : 0;
    if (!rc) rc = shmrpc_server_new(&k->srv, NULL);
    if (!rc) rc = shmrpc_server_register(k->srv, &Control_service, &handlers, k);
    if (!rc) rc = shmrpc_server_listen(k->srv, addr);
    if (rc && k->srv) snprintf(err, cap, "%s", shmrpc_errmsg());
    if (!rc) {
        snapshot(k);
        int e = pthread_create(&k->thread, NULL, serve, k);
        if (e)
            rc = SHMRPC_ESYS(e);
        else
            k->thread_started = true;
    }
    if (rc) {
        sup_control_stop(k);
        return rc;
    }
    *out = k;
    return 0;
}

void sup_control_set_series(sup_control *k, const sup_series *series)
{
    k->series = series;
}

int sup_control_fd(const sup_control *k)
{
    return k->efd;
}

void sup_control_handle(sup_control *k, int64_t now)
{
    uint64_t v;
    while (read(k->efd, &v, sizeof v) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&k->mu);
    if (!k->pending) {
        pthread_mutex_unlock(&k->mu);
        return;
    }
    k->pending = false;
    op what = k->op;
    size_t i = k->index;
    int arg = k->arg;
    uint64_t seq = k->seq;
    pthread_mutex_unlock(&k->mu);

    int rc = 0;
    char msg[256] = "";
    sup_service *s = &k->svcs[i];
    if (what != OP_STATUS && s->ctx->draining) {
        rc = SHMRPC_EUNAVAIL;
        snprintf(msg, sizeof msg,
                 "the supervisor is stopping all its services: nothing is started or stopped "
                 "on request any more");
    } else if (what == OP_START) {
        sup_service_operator_start(s, now);
    } else if (what == OP_STOP) {
        sup_service_operator_stop(s, now);
    } else if (what == OP_RESTART) {
        sup_service_operator_restart(s, now);
    } else if (what == OP_SCALE) {
        rc = sup_scaler_operator_set(s, arg, msg, sizeof msg);
    }

    pthread_mutex_lock(&k->mu);
    snapshot(k);
    k->rc = rc;
    memcpy(k->msg, msg, sizeof msg);
    k->answered = seq;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

void sup_control_stop(sup_control *k)
{
    if (!k) return;
    pthread_mutex_lock(&k->mu);
    k->closing = true;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    if (k->thread_started) {
        shmrpc_server_stop(k->srv);
        pthread_join(k->thread, NULL);
        if (k->serve_rc)
            sup_logf(k->svcs[0].ctx, SUP_ERR "control service: %s", shmrpc_strerror(k->serve_rc));
    }
    shmrpc_server_free(k->srv); /* removes the control segment and its channels */
    if (k->efd >= 0) close(k->efd);
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
    free(k->snaps);
    free(k);
}

/* --- log tails ------------------------------------------------------------------------ */

/* The last budget bytes of path, from a line start: *text (malloc'd, *len bytes) and
 * whether it is the whole file. A missing file is empty and whole. */
static int read_tail(const char *path, size_t budget, char **text, size_t *len, bool *whole)
{
    *text = NULL;
    *len = 0;
    *whole = true;
    int fd = shmrpc__open_regular(path, O_RDONLY, 0, NULL);
    if (fd < 0) return errno == ENOENT ? 0 : SHMRPC_ESYS(errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return SHMRPC_ESYS(e);
    }
    size_t size = st.st_size > 0 ? (size_t)st.st_size : 0;
    size_t from = size > budget ? size - budget : 0;
    size_t want = size - from;
    char *buf = malloc(want + 1);
    if (!buf) {
        close(fd);
        return SHMRPC_ENOMEM;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, buf + got, want - got, (off_t)(from + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break; /* truncated meanwhile (a rotation): what we have */
        got += (size_t)r;
    }
    close(fd);
    size_t skip = 0;
    if (from > 0) { /* mid-line, most likely: drop the part line */
        *whole = false;
        char *nl = memchr(buf, '\n', got);
        skip = nl ? (size_t)(nl - buf) + 1 : got;
    }
    memmove(buf, buf + skip, got - skip);
    *len = got - skip;
    buf[*len] = '\0';
    *text = buf;
    return 0;
}

static size_t count_lines(const char *t, size_t n)
{
    size_t lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += t[i] == '\n';
    return lines + (n > 0 && t[n - 1] != '\n');
}

int sup_control_tail(const char *path, size_t max_lines, size_t max_bytes, char **out,
                     size_t *count)
{
    *out = NULL;
    *count = 0;
    char *a, *b = NULL;
    size_t alen, blen = 0;
    bool whole;
    int rc = read_tail(path, max_bytes, &a, &alen, &whole);
    if (rc) return rc;
    if (whole && alen < max_bytes && count_lines(a, alen) < max_lines) {
        char older[PATH_MAX];
        bool ignored;
        snprintf(older, sizeof older, "%s.1", path);
        rc = read_tail(older, max_bytes - alen, &b, &blen, &ignored);
        if (rc) b = NULL, blen = 0; /* the current file alone, then */
    }
    /* b, a line end if it lacks one, then a: one text. */
    bool gap = blen > 0 && b[blen - 1] != '\n';
    size_t tlen = blen + gap + alen;
    char *t = malloc(tlen + 1);
    if (!t) {
        free(a);
        free(b);
        return SHMRPC_ENOMEM;
    }
    if (blen) memcpy(t, b, blen);
    if (gap) t[blen] = '\n';
    if (alen) memcpy(t + blen + gap, a, alen);
    t[tlen] = '\0';
    free(a);
    free(b);
    /* From the end, back over max_lines lines. */
    size_t end = tlen;
    if (end > 0 && t[end - 1] == '\n') end--;
    size_t start = end, n = 0;
    if (tlen > 0) {
        for (;;) {
            size_t i = start;
            while (i > 0 && t[i - 1] != '\n')
                i--;
            start = i;
            n++;
            if (n == max_lines || start == 0) break;
            start--; /* onto the '\n' before: the end of the line before */
        }
    }
    /* t[start, end): n lines separated by '\n'; each becomes '\0'-ended in place. */
    memmove(t, t + start, end - start);
    t[end - start] = '\0';
    for (size_t i = 0; i < end - start; i++)
        if (t[i] == '\n') t[i] = '\0';
    *out = t;
    *count = tlen > 0 ? n : 0;
    return 0;
}
