/* SPDX-License-Identifier: MIT */
/* Scaling a module= service's workers by their CPU use, and replacing one over its memory
 * limit. Once a second the supervisor lists the processes of the service's group and
 * picks its workers (obs_proc.h: the children of the manager and of its TCP manager), with
 * each one's utime + stime (/proc/W/stat) and, with max_proc_mem_bytes, its PSS
 * (/proc/W/smaps_rollup). The rule is speedysvc's:
 *
 *   up:   the CPU of the workers over the last scale_up_window_s, divided by that time and
 *         by the workers running, above scale_up_cpu_percent: one more, up to max_proc_num;
 *   down: the CPU of all workers together over the last scale_down_window_s, divided by
 *         that time, under scale_down_cpu_percent: one fewer, down to min_proc_num.
 *
 * After a change (and after a start) the history begins afresh, so the next change waits
 * for a full window of the new count: that is the hysteresis. The manager hears the new
 * count as sigqueue(manager, SIGRTMIN, count) (sup_module.c), and passes it on to the
 * manager of its TCP address, if any: the count is that of each address's workers, while
 * CPU per worker is averaged over all of them.
 *
 * An exec= service is scaled the same way while its process catches SIGRTMIN: a server
 * built on libshmrpc does while it serves with workers (server.c, SHMRPC_SUPERVISOR_PID),
 * and takes the count as a module's manager does. It starts with the count its program
 * chose, which the first sample learns; a program that does not catch SIGRTMIN is left to
 * run its own workers. */
#include "sup_scaler.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmrpc/server.h>
#include <shmrpc/status.h>

#include "obs_proc.h"

/* Workers of a manager looked at: at most SHMRPC_MAX_WORKERS per address (shm://, and
 * tcp:// served by a second manager), plus those leaving. */
#define MAX_CHILDREN (4 * SHMRPC_MAX_WORKERS)
/* Processes of a service's group looked at: its workers, its managers, and what they run
 * (a worker's system() or popen()). */
#define MAX_GROUP (2 * MAX_CHILDREN)

typedef struct sample {
    int64_t elapsed_ms; /* since the sample before */
    int64_t cpu_ms;     /* the workers' CPU in that time */
    int workers;        /* running at the end of it */
} sample;

typedef struct seen {
    pid_t pid;
    uint64_t ticks; /* utime + stime at the last sample */
} seen;

struct sup_scaler {
    bool exec;       /* an exec= service: scaled only while its program follows (below) */
    bool follows;    /* exec: its process catches SIGRTMIN (a server on libshmrpc), at the
                      * last sample */
    int told;        /* the count the manager started with or was last told; exec: 0 until
                      * the first sample it follows at, which takes the count it runs */
    int fixed;       /* an operator's count; 0: automatic */
    int64_t next_at; /* the next sample; INT64_MAX: no manager runs */
    int64_t last_at; /* the last sample */
    seen seen[MAX_CHILDREN];
    int n_seen;
    sample *ring; /* the history since the last change, newest at ring[(pos - 1) % cap] */
    int cap, len, pos;
};

static int clamp_workers(int n)
{
    return n < 1 ? 1 : n > SHMRPC_MAX_WORKERS ? SHMRPC_MAX_WORKERS : n;
}

int sup_scaler_new(sup_service *s)
{
    struct sup_scaler *k = calloc(1, sizeof *k);
    if (!k) return SHMRPC_ENOMEM;
    int64_t up = s->cfg->s.scale_up_window_ms, down = s->cfg->s.scale_down_window_ms;
    k->cap = (int)((up > down ? up : down) / SUP_SCALER_EVERY_MS) + 1;
    k->ring = calloc((size_t)k->cap, sizeof *k->ring);
    k->next_at = INT64_MAX;
    k->exec = s->cfg->kind != CFG_MODULE;
    s->scaler = k;
    return k->ring ? 0 : SHMRPC_ENOMEM;
}

void sup_scaler_free(sup_service *s)
{
    if (!s->scaler) return;
    free(s->scaler->ring);
    free(s->scaler);
    s->scaler = NULL;
}

static void afresh(struct sup_scaler *k, int64_t now)
{
    k->len = k->pos = 0;
    k->last_at = now;
}

int sup_scaler_starting(sup_service *s, int64_t now)
{
    struct sup_scaler *k = s->scaler;
    k->told = k->fixed ? k->fixed : clamp_workers(s->cfg->s.min_proc_num);
    if (k->exec) k->told = 0; /* its program picks its count; the first sample learns it */
    k->follows = false;
    k->n_seen = 0;
    afresh(k, now);
    k->next_at = now + SUP_SCALER_EVERY_MS;
    return k->told;
}

void sup_scaler_operator_reset(sup_service *s)
{
    s->scaler->fixed = 0;
}

int sup_scaler_workers(const sup_service *s)
{
    return s->scaler->told;
}

int64_t sup_scaler_next_deadline(const sup_service *s)
{
    return s->pid ? s->scaler->next_at : INT64_MAX;
}

/* The processes of one group, collected by obs_procs_scan. */
typedef struct group {
    pid_t pgrp;
    obs_proc v[MAX_GROUP];
    size_t n;
} group;

static void collect(const obs_proc *p, void *arg)
{
    group *g = arg;
    if (p->pgrp == g->pgrp && g->n < MAX_GROUP) g->v[g->n++] = *p;
}

/* Whether pid catches SIGRTMIN (SigCgt in /proc/PID/status): an exec= server built on
 * libshmrpc does while it serves (server.c), and then takes a count queued with it; to
 * another program SIGRTMIN would be death. */
static bool catches_rtmin(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return false;
    bool yes = false;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "SigCgt:", 7) != 0) continue;
        unsigned long long mask = strtoull(line + 7, NULL, 16);
        yes = (mask >> (SIGRTMIN - 1)) & 1;
        break;
    }
    fclose(f);
    return yes;
}

static void tell(sup_service *s, int n, const char *why)
{
    struct sup_scaler *k = s->scaler;
    k->told = n;
    union sigval v = {.sival_int = n};
    if (sigqueue(s->pid, SIGRTMIN, v) != 0)
        sup_logf(s->ctx, SUP_ERR "%s: cannot tell its manager (pid %d) the worker count: %s",
                 s->cfg->name, (int)s->pid, strerror(errno));
    sup_logf(s->ctx, "%s: %s: %d worker%s", s->cfg->name, why, n, n == 1 ? "" : "s");
}

/* The sums over the newest `want` samples; false when the history is shorter. */
static bool window(const struct sup_scaler *k, int want, int64_t *elapsed, int64_t *cpu,
                   int64_t *worker_ms)
{
    if (want < 1) want = 1;
    if (k->len < want) return false;
    *elapsed = *cpu = *worker_ms = 0;
    for (int i = 0; i < want; i++) {
        const sample *x = &k->ring[((k->pos - 1 - i) % k->cap + k->cap) % k->cap];
        *elapsed += x->elapsed_ms;
        *cpu += x->cpu_ms;
        *worker_ms += x->elapsed_ms * (x->workers > 0 ? x->workers : 1);
    }
    return *elapsed > 0;
}

static void decide(sup_service *s)
{
    struct sup_scaler *k = s->scaler;
    const cfg_settings *cs = &s->cfg->s;
    if (k->fixed || s->state != SUP_RUNNING || s->ctx->draining) return;
    int lo = clamp_workers(cs->min_proc_num), hi = clamp_workers(cs->max_proc_num);
    int64_t el, cpu, wms;
    char why[160];
    if (k->told < hi &&
        window(k, (int)(cs->scale_up_window_ms / SUP_SCALER_EVERY_MS), &el, &cpu, &wms)) {
        int64_t per_worker = cpu * 100 / wms;
        if (per_worker > cs->scale_up_cpu_percent) {
            snprintf(why, sizeof why,
                     "CPU per worker %lld%% over the last %lld s, above scale_up_cpu_percent %d",
                     (long long)per_worker, (long long)(el / 1000), cs->scale_up_cpu_percent);
            tell(s, k->told + 1, why);
            afresh(k, k->last_at);
            return;
        }
    }
    if (k->told > lo &&
        window(k, (int)(cs->scale_down_window_ms / SUP_SCALER_EVERY_MS), &el, &cpu, &wms)) {
        int64_t total = cpu * 100 / el;
        if (total < cs->scale_down_cpu_percent) {
            snprintf(why, sizeof why,
                     "CPU of all workers %lld%% over the last %lld s, under "
                     "scale_down_cpu_percent %d",
                     (long long)total, (long long)(el / 1000), cs->scale_down_cpu_percent);
            tell(s, k->told - 1, why);
            afresh(k, k->last_at);
        }
    }
    /* A count outside the bounds (a manager whose min_proc_num changed? none today) is left. */
}

void sup_scaler_tick(sup_service *s, int64_t now)
{
    struct sup_scaler *k = s->scaler;
    if (!s->pid || now < k->next_at) return;
    k->next_at = now + SUP_SCALER_EVERY_MS;
    if (s->state != SUP_RUNNING && s->state != SUP_STARTING) return;

    /* An exec= program that does not follow a count is not scaled (nor its workers'
     * memory watched): it runs its own. */
    bool follows = !k->exec || catches_rtmin(s->pid);
    if (k->exec && follows != k->follows)
        sup_logf(s->ctx, "%s: %s the supervisor's worker count (pid %d %s SIGRTMIN)", s->cfg->name,
                 follows ? "follows" : "no longer follows", (int)s->pid,
                 follows ? "catches" : "does not catch");
    k->follows = follows;
    if (!follows) return;

    static group g; /* the supervisor's one thread runs this */
    g.pgrp = s->pid;
    g.n = 0;
    obs_procs_scan(collect, &g);
    pid_t kids[MAX_CHILDREN];
    uint64_t ticks[MAX_CHILDREN];
    int n = 0;
    for (size_t i = 0; i < g.n && n < MAX_CHILDREN; i++) {
        if (!obs_proc_is_worker(g.v, g.n, i, k->exec)) continue;
        kids[n] = g.v[i].pid;
        ticks[n++] = g.v[i].utime + g.v[i].stime;
    }
    static long tck;
    if (!tck) tck = sysconf(_SC_CLK_TCK) > 0 ? sysconf(_SC_CLK_TCK) : 100;
    seen now_seen[MAX_CHILDREN];
    int n_now = 0;
    uint64_t delta = 0;
    uint64_t limit = s->cfg->s.max_proc_mem_bytes;
    for (int i = 0; i < n; i++) {
        uint64_t t = ticks[i];
        uint64_t before = 0; /* a worker new since the last sample: all of its time is new */
        for (int j = 0; j < k->n_seen; j++)
            if (k->seen[j].pid == kids[i]) before = k->seen[j].ticks <= t ? k->seen[j].ticks : t;
        delta += t - before;
        now_seen[n_now++] = (seen){kids[i], t};
        if (limit) {
            obs_mem m; /* PSS unknown: 0, never over the limit */
            uint64_t pss = obs_proc_memory(kids[i], &m) && m.pss_known ? m.pss : 0;
            if (pss > limit) {
                sup_logf(s->ctx,
                         SUP_WARNING
                         "%s: worker pid %d uses %llu KiB (PSS), over max_proc_mem_bytes %llu "
                         "KiB: SIGKILL (its manager starts another)",
                         s->cfg->name, (int)kids[i], (unsigned long long)(pss >> 10),
                         (unsigned long long)(limit >> 10));
                kill(kids[i], SIGKILL);
            }
        }
    }
    memcpy(k->seen, now_seen, (size_t)n_now * sizeof *now_seen);
    k->n_seen = n_now;

    k->ring[k->pos] = (sample){.elapsed_ms = now - k->last_at,
                               .cpu_ms = (int64_t)(delta * 1000 / (uint64_t)tck),
                               .workers = n_now};
    k->pos = (k->pos + 1) % k->cap;
    if (k->len < k->cap) k->len++;
    k->last_at = now;
    if (k->exec && k->told == 0) { /* the count it runs, learnt; an operator's, told */
        if (n_now == 0) return;
        k->told = n_now;
        if (k->fixed && k->fixed != n_now) tell(s, k->fixed, "the count an operator set");
        afresh(k, now);
        return;
    }
    decide(s);
}

int sup_scaler_operator_set(sup_service *s, int workers, char *msg, size_t cap)
{
    if (workers < 1 || workers > SHMRPC_MAX_WORKERS) {
        snprintf(msg, cap, "service '%s': workers must be 1 to %d, not %d", s->cfg->name,
                 SHMRPC_MAX_WORKERS, workers);
        return SHMRPC_EINVAL;
    }
    if (!s->pid || (s->state != SUP_RUNNING && s->state != SUP_STARTING)) {
        snprintf(msg, cap, "service '%s' is %s: start it, then scale it", s->cfg->name,
                 sup_state_name(s->state));
        return SHMRPC_EINVAL;
    }
    if (s->scaler->exec && !catches_rtmin(s->pid)) {
        snprintf(msg, cap,
                 "service '%s' runs a program that does not follow a worker count (its process "
                 "does not catch SIGRTMIN: it does not serve through libshmrpc, or not yet)",
                 s->cfg->name);
        return SHMRPC_EINVAL;
    }
    s->scaler->fixed = workers;
    tell(s, workers, "scaled by an operator; automatic scaling paused until it is started again");
    afresh(s->scaler, s->scaler->last_at);
    return 0;
}
