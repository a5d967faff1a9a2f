/* SPDX-License-Identifier: MIT */
/* The time series per service (sup_series.h, docs/series.md). A service's processes are those
 * of its process group (every service leads its own): one scan of /proc/stat per sample
 * finds them for all services at once, which also catches workers that were re-parented
 * to the supervisor when their manager died. Rates are deltas between two samples of the
 * same processes (pid and start time), so a process that came or went in between neither
 * counts twice nor turns a rate negative. */
#include "sup_series.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "sup_log.h"
#include "obs_proc.h"
#include "obs_stats.h"
#include "input.h"

typedef struct proc_sample {
    obs_proc p;      /* its /proc/PID/stat: pid and start time name it; parent and name
                      * tell a worker (obs_proc.h) */
    uint64_t ticks;  /* utime + stime, its threads included */
    uint64_t rd, wr; /* /proc/PID/io read_bytes, write_bytes */
    bool io;         /* rd and wr could be read */
} proc_sample;

typedef struct proc_list {
    proc_sample *v;
    size_t n, cap;
} proc_list;

typedef struct svc_series {
    const sup_service *svc;
    pid_t leader;             /* the process (group) the baseline is of; 0: no baseline */
    int64_t at;               /* monotonic ms of the baseline */
    uint64_t at_ticks;        /* the same, in clock ticks since boot (as /proc's start times) */
    proc_list prev;           /* the baseline's processes */
    proc_list cur;            /* this sample's */
    uint64_t rss, pss;        /* this sample's totals */
    bool pss_ok, io_ok;       /* every process's PSS, I/O could be read */
    obs_stats stats;          /* the baseline's call statistics, per address */
    char said[OBS_STATS_WHY]; /* the last reason logged for leaving an address's figures out */
    int64_t next_at;          /* monotonic ms of its next sample; 0: due at once */
    bool due;                 /* sampled in this tick */
    bool usage;               /* cpu and rss are of the last line written */
    double cpu;               /* its "cpu": percent of one CPU */
    int workers;              /* the workers of the last sample (see count_workers); 0: none */
    pid_t worker_pids[SUP_SERIES_MAX_PIDS]; /* the first of them, ascending */
    int fd;                                 /* LOG_DIR/NAME.series; -1 while closed */
    uint64_t size;                          /* its bytes */
    bool complained;                        /* a failure to write was logged */
} svc_series;

struct sup_series {
    svc_series *v;
    size_t n;
    long hz; /* clock ticks per second */
};

sup_series *sup_series_new(const sup_service *svcs, size_t n)
{
    sup_series *ss = calloc(1, sizeof *ss);
    if (!ss) return NULL;
    ss->v = calloc(n ? n : 1, sizeof *ss->v);
    if (!ss->v) {
        free(ss);
        return NULL;
    }
    ss->n = n;
    ss->hz = sysconf(_SC_CLK_TCK);
    if (ss->hz <= 0) ss->hz = 100;
    for (size_t i = 0; i < n; i++) {
        ss->v[i].svc = &svcs[i];
        ss->v[i].fd = -1;
    }
    return ss;
}

void sup_series_free(sup_series *ss)
{
    if (!ss) return;
    for (size_t i = 0; i < ss->n; i++) {
        svc_series *x = &ss->v[i];
        if (x->fd >= 0) close(x->fd);
        free(x->prev.v);
        free(x->cur.v);
        obs_stats_clear(&x->stats);
    }
    free(ss->v);
    free(ss);
}

/* A service whose process changed (started, stopped, restarted) is due at once: a new
 * baseline, or none; one without a process takes no samples. */
static int64_t due_at(const svc_series *x)
{
    if (x->svc->pid != x->leader) return 0;
    return x->leader ? x->next_at : INT64_MAX;
}

int64_t sup_series_next_deadline(const sup_series *ss)
{
    int64_t next = INT64_MAX;
    for (size_t i = 0; ss && i < ss->n; i++) {
        int64_t d = due_at(&ss->v[i]);
        if (d < next) next = d;
    }
    return next;
}

int sup_series_workers(const sup_series *ss, size_t i, const pid_t **pids, int *n_pids)
{
    static const pid_t none[1];
    *pids = none;
    *n_pids = 0;
    if (!ss || i >= ss->n) return 0;
    const svc_series *x = &ss->v[i];
    if (!x->leader || x->svc->pid != x->leader) return 0; /* none, or not sampled yet */
    *pids = x->worker_pids;
    *n_pids = x->workers < SUP_SERIES_MAX_PIDS ? x->workers : SUP_SERIES_MAX_PIDS;
    return x->workers;
}

bool sup_series_usage(const sup_series *ss, size_t i, double *cpu, uint64_t *rss)
{
    if (!ss || i >= ss->n) return false;
    const svc_series *x = &ss->v[i];
    if (!x->usage || !x->leader || x->svc->pid != x->leader) return false;
    *cpu = x->cpu;
    *rss = x->rss; /* set by the sample that wrote the line, until the next one's */
    return true;
}

double sup_series_quantile(const uint64_t cur[SHMRPC_STATS_BUCKETS],
                           const uint64_t prev[SHMRPC_STATS_BUCKETS], double p)
{
    shmrpc_method_stats d = {0};
    for (unsigned b = 0; b < SHMRPC_STATS_BUCKETS; b++)
        d.buckets[b] = cur[b] >= prev[b] ? cur[b] - prev[b] : cur[b];
    return shmrpc_stats_quantile(&d, p); /* from the buckets alone */
}

/* --- /proc --------------------------------------------------------------------------- */

static uint64_t boot_ticks(long hz)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * (uint64_t)hz + (uint64_t)ts.tv_nsec * (uint64_t)hz / 1000000000u;
}

static bool push(proc_list *l, const proc_sample *p)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        proc_sample *v = realloc(l->v, cap * sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *p;
    return true;
}

/* One process of x's group: its CPU time, memory and I/O. */
static void sample_proc(svc_series *x, const obs_proc *sp)
{
    proc_sample p = {.p = *sp, .ticks = sp->utime + sp->stime};
    /* PSS counts a page shared by n processes as 1/n in each, so the sum counts it once. */
    obs_mem m;
    if (obs_proc_memory(sp->pid, &m)) {
        x->rss += m.rss;
        x->pss += m.pss;
    }
    if (!m.pss_known) x->pss_ok = false;
    p.io = obs_proc_io(sp->pid, &p.rd, &p.wr);
    if (!p.io) x->io_ok = false;
    push(&x->cur, &p);
}

/* Every process whose group is a service's due for a sample goes to that service's cur. */
static void take(const obs_proc *p, void *arg)
{
    sup_series *ss = arg;
    if (p->pgrp <= 0) return;
    for (size_t i = 0; i < ss->n; i++) {
        svc_series *x = &ss->v[i];
        if (x->due && x->leader == p->pgrp) sample_proc(x, p);
    }
}

static void scan_proc(sup_series *ss)
{
    obs_procs_scan(take, ss);
}

/* What p did since the baseline: its counter's delta when the baseline had it, all of
 * it when it started after the baseline, nothing when the baseline missed it otherwise. */
static const proc_sample *before(const svc_series *x, const proc_sample *p)
{
    for (size_t i = 0; i < x->prev.n; i++)
        if (x->prev.v[i].p.pid == p->p.pid && x->prev.v[i].p.start == p->p.start)
            return &x->prev.v[i];
    return NULL;
}

static uint64_t delta(uint64_t now, const uint64_t *then, bool new_since)
{
    if (then) return now >= *then ? now - *then : 0;
    return new_since ? now : 0;
}

/* --- the files ----------------------------------------------------------------------- */

static void complain(svc_series *x, const char *what, const char *path, int err)
{
    if (x->complained) return;
    x->complained = true;
    sup_logf(x->svc->ctx, SUP_WARNING "%s: cannot %s %s: %s (said once)", x->svc->cfg->name, what,
             path, strerror(err));
}

static void series_path(const svc_series *x, char *out, size_t cap, const char *suffix)
{
    snprintf(out, cap, "%s/%s%s", x->svc->cfg->s.log_dir, x->svc->cfg->name, suffix);
}

/* Opens NAME.series to append; a last line cut short (a supervisor killed mid-write) is
 * ended, so that the next sample is a line of its own. */
static bool open_series(svc_series *x)
{
    if (x->fd >= 0) return true;
    char path[PATH_MAX];
    series_path(x, path, sizeof path, ".series");
    x->fd = shmrpc__open_regular(path, O_RDWR | O_CREAT | O_APPEND, 0640, NULL);
    if (x->fd < 0) {
        complain(x, "open", path, errno);
        return false;
    }
    struct stat st;
    x->size = fstat(x->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    char last;
    if (x->size && pread(x->fd, &last, 1, (off_t)x->size - 1) == 1 && last != '\n' &&
        write(x->fd, "\n", 1) == 1)
        x->size++;
    return true;
}

/* NAME.series becomes NAME.series.1 (replacing the one before) and a new file begins. */
static void rotate(svc_series *x)
{
    char path[PATH_MAX], old[PATH_MAX];
    series_path(x, path, sizeof path, ".series");
    series_path(x, old, sizeof old, ".series.1");
    close(x->fd);
    x->fd = -1;
    if (rename(path, old) != 0) complain(x, "rotate", path, errno);
}

static void append_line(svc_series *x, const char *line, size_t len)
{
    uint64_t max = x->svc->cfg->s.log_max_bytes;
    if (!max) max = SUP_SERIES_MAX_BYTES_NONE;
    if (x->fd >= 0 && x->size > 0 && x->size + len > max) rotate(x);
    if (!open_series(x)) return;
    ssize_t k = write(x->fd, line, len); /* one write per line: a reader sees whole lines */
    if (k < 0) {
        char path[PATH_MAX];
        series_path(x, path, sizeof path, ".series");
        complain(x, "write", path, errno);
        return;
    }
    x->size += (uint64_t)k;
}

/* A JSON string of untrusted bytes (names come from a shared-memory segment). */
static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(f, "\\u%04x", *p); /* bytes above ASCII as Latin-1: valid JSON, if odd */
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* ns as microseconds, or null with no calls. */
static void put_us(FILE *f, double ns, bool any)
{
    if (any)
        fprintf(f, "%.3f", ns / 1000.0);
    else
        fputs("null", f);
}

/* LOG_DIR/NAME.methods.json, whole: a temporary file renamed over it. */
static void write_methods(svc_series *x, int64_t unix_ms, const obs_stats *all)
{
    const shmrpc_stats *st = all->all;
    char tmp[PATH_MAX], path[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/.%s.methods.json.tmp", x->svc->cfg->s.log_dir, x->svc->cfg->name);
    series_path(x, path, sizeof path, ".methods.json");
    /* Not fopen(): a FIFO put in tmp's place would stop the supervisor in open(). */
    int fd = shmrpc__open_regular(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666, NULL);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0) close(fd);
        complain(x, "write", tmp, e);
        return;
    }
    fprintf(f, "{\"t\": %lld, \"pid\": %d, \"service\": ", (long long)unix_ms, (int)st->pid);
    put_json_string(f, st->service);
    fputs(", \"addresses\": [", f);
    const char *sep = "";
    for (int a = 0; a < OBS_STATS_ADDRS; a++) {
        if (!all->part[a] || all->left_out[a]) continue;
        fputs(sep, f);
        put_json_string(f, all->addr[a]);
        sep = ", ";
    }
    fputs("], \"methods\": [", f);
    for (uint32_t i = 0; i < st->n_methods; i++) {
        const shmrpc_method_stats *m = &st->methods[i];
        fprintf(f, "%s\n  {\"name\": ", i ? "," : "");
        put_json_string(f, m->name);
        fprintf(f, ", \"calls\": %llu, \"errors\": %llu, \"total_ns\": %llu, \"mean_us\": ",
                (unsigned long long)m->calls, (unsigned long long)m->errors,
                (unsigned long long)m->total_ns);
        put_us(f, m->calls ? (double)m->total_ns / (double)m->calls : 0, m->calls > 0);
        fputs(", \"p50_us\": ", f);
        put_us(f, shmrpc_stats_quantile(m, 0.5), m->calls > 0);
        fputs(", \"p99_us\": ", f);
        put_us(f, shmrpc_stats_quantile(m, 0.99), m->calls > 0);
        fputc('}', f);
    }
    fputs("\n]}\n", f);
    errno = 0;
    int bad = ferror(f);
    bad |= fclose(f);
    if (bad || rename(tmp, path) != 0) {
        complain(x, "write", path, errno ? errno : EIO);
        unlink(tmp);
    }
}

/* --- a sample ------------------------------------------------------------------------ */

typedef struct call_totals {
    uint64_t calls, errors;
    uint64_t buckets[SHMRPC_STATS_BUCKETS];
} call_totals;

static void sum_calls(const shmrpc_stats *st, call_totals *t)
{
    memset(t, 0, sizeof *t);
    if (!st) return;
    for (uint32_t i = 0; i < st->n_methods; i++) {
        t->calls += st->methods[i].calls;
        t->errors += st->methods[i].errors;
        for (unsigned b = 0; b < SHMRPC_STATS_BUCKETS; b++)
            t->buckets[b] += st->methods[i].buckets[b];
    }
}

/* The calls of now since then, address by address, into d (its buckets the interval's),
 * and now's totals into total. A part of another server than the baseline's there (a
 * restart, or a stale segment the baseline read) counts from zero, so one address's
 * server restarting leaves the other's delta alone. */
static void calls_since(const obs_stats *now, const obs_stats *then, call_totals *d,
                        call_totals *total)
{
    memset(d, 0, sizeof *d);
    memset(total, 0, sizeof *total);
    for (int a = 0; a < OBS_STATS_ADDRS; a++) {
        const shmrpc_stats *n = now->left_out[a] ? NULL : now->part[a], *b = then->part[a];
        if (!n) continue;
        call_totals nc, bc;
        sum_calls(n, &nc);
        sum_calls(b && !then->left_out[a] && b->pid == n->pid ? b : NULL, &bc);
        if (nc.calls < bc.calls || nc.errors < bc.errors) sum_calls(NULL, &bc);
        total->calls += nc.calls;
        total->errors += nc.errors;
        d->calls += nc.calls - bc.calls;
        d->errors += nc.errors - bc.errors;
        for (unsigned k = 0; k < SHMRPC_STATS_BUCKETS; k++)
            d->buckets[k] +=
                nc.buckets[k] >= bc.buckets[k] ? nc.buckets[k] - bc.buckets[k] : nc.buckets[k];
    }
}

/* Appends "KEY": value with fmt, or "KEY": null. */
static void put(char *line, size_t cap, size_t *len, const char *key, bool ok, const char *fmt,
                double v)
{
    if (*len >= cap) return;
    int k = snprintf(line + *len, cap - *len, ", \"%s\": ", key);
    if (k > 0) *len += (size_t)k;
    if (*len >= cap) return;
    k = ok ? snprintf(line + *len, cap - *len, fmt, v) : snprintf(line + *len, cap - *len, "null");
    if (k > 0) *len += (size_t)k;
}

/* One line of NAME.series: what happened between the baseline and now. */
static void write_sample(sup_series *ss, svc_series *x, int64_t now, int64_t unix_ms,
                         const obs_stats *stats)
{
    int64_t dt = now - x->at;
    if (dt <= 0) return;
    double secs = (double)dt / 1000.0;
    uint64_t cpu = 0, rd = 0, wr = 0;
    for (size_t i = 0; i < x->cur.n; i++) {
        const proc_sample *p = &x->cur.v[i];
        const proc_sample *b = before(x, p);
        bool fresh = p->p.start >= x->at_ticks;
        cpu += delta(p->ticks, b ? &b->ticks : NULL, fresh);
        if (p->io) {
            bool had = b && b->io;
            rd += delta(p->rd, had ? &b->rd : NULL, fresh);
            wr += delta(p->wr, had ? &b->wr : NULL, fresh);
        }
    }

    call_totals d, now_c;
    static const uint64_t none[SHMRPC_STATS_BUCKETS];
    calls_since(stats, &x->stats, &d, &now_c);
    const shmrpc_stats *st = stats->all;
    uint64_t calls = d.calls, errors = d.errors;
    bool any = st && calls > 0;

    char line[1024];
    size_t len = 0;
    int k = snprintf(line, sizeof line, "{\"t\": %lld, \"dt_ms\": %lld, \"pid\": %d",
                     (long long)unix_ms, (long long)dt, (int)x->leader);
    len = k > 0 ? (size_t)k : 0;
    put(line, sizeof line, &len, "workers", true, "%.0f", x->workers);
    x->cpu = (double)cpu * 100.0 / (double)ss->hz / secs;
    x->usage = true;
    put(line, sizeof line, &len, "cpu", true, "%.2f", x->cpu);
    put(line, sizeof line, &len, "rss", true, "%.0f", (double)x->rss);
    put(line, sizeof line, &len, "pss", x->pss_ok, "%.0f", (double)x->pss);
    put(line, sizeof line, &len, "read", x->io_ok, "%.1f", (double)rd / secs);
    put(line, sizeof line, &len, "write", x->io_ok, "%.1f", (double)wr / secs);
    put(line, sizeof line, &len, "calls", st != NULL, "%.3f", (double)calls / secs);
    put(line, sizeof line, &len, "errors", st != NULL, "%.3f", (double)errors / secs);
    put(line, sizeof line, &len, "p50_us", any, "%.3f",
        sup_series_quantile(d.buckets, none, 0.5) / 1000.0);
    put(line, sizeof line, &len, "p99_us", any, "%.3f",
        sup_series_quantile(d.buckets, none, 0.99) / 1000.0);
    put(line, sizeof line, &len, "calls_total", st != NULL, "%.0f", (double)now_c.calls);
    put(line, sizeof line, &len, "errors_total", st != NULL, "%.0f", (double)now_c.errors);
    if (len + 3 > sizeof line) return; /* cannot happen: the line is far shorter */
    line[len++] = '}';
    line[len++] = '\n';
    append_line(x, line, len);
}

/* The service's call statistics at every address it serves (obs_stats.h); an
 * address's figures left out are said once per reason. */
static void read_stats(svc_series *x, obs_stats *st)
{
    obs_stats_read(x->svc->cfg, x->leader, st); /* its leader leads its group */
    if (st->why[0] && strcmp(st->why, x->said) != 0)
        sup_logf(x->svc->ctx, SUP_WARNING "%s: %s", x->svc->cfg->name, st->why);
    snprintf(x->said, sizeof x->said, "%s", st->why);
}

static int by_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

/* The workers of x's group, by the rule of obs_proc.h. Tells the loop when the set changed,
 * for status.json. */
static void count_workers(svc_series *x)
{
    pid_t found[SUP_SERIES_MAX_PIDS];
    int n = 0;
    obs_proc *procs = malloc((x->cur.n ? x->cur.n : 1) * sizeof *procs);
    if (!procs) return; /* the last count stands */
    for (size_t i = 0; i < x->cur.n; i++)
        procs[i] = x->cur.v[i].p;
    bool leader_serves = x->svc->cfg->kind != CFG_MODULE;
    for (size_t i = 0; i < x->cur.n; i++) {
        if (!obs_proc_is_worker(procs, x->cur.n, i, leader_serves)) continue;
        if (n < SUP_SERIES_MAX_PIDS) found[n] = procs[i].pid;
        n++;
    }
    free(procs);
    int kept = n < SUP_SERIES_MAX_PIDS ? n : SUP_SERIES_MAX_PIDS;
    qsort(found, (size_t)kept, sizeof *found, by_pid);
    if (n != x->workers || memcmp(found, x->worker_pids, (size_t)kept * sizeof *found) != 0)
        x->svc->ctx->changed = true;
    memcpy(x->worker_pids, found, (size_t)kept * sizeof *found);
    x->workers = n;
}

void sup_series_tick(sup_series *ss, int64_t now)
{
    if (!ss) return;
    uint64_t now_ticks = boot_ticks(ss->hz);
    bool any = false;
    for (size_t i = 0; i < ss->n; i++) {
        svc_series *x = &ss->v[i];
        x->due = now >= due_at(x);
        if (!x->due) continue;
        if (x->svc->pid != x->leader) { /* started, stopped or restarted: a new baseline */
            x->leader = x->svc->pid;
            x->at = 0;
            x->prev.n = 0;
            obs_stats_clear(&x->stats);
            x->usage = false;
            if (x->workers) x->svc->ctx->changed = true;
            x->workers = 0;
        }
        /* From now, not from when it was due: a late sample does not make the next
         * interval short, so every interval is at least series_interval_s. */
        x->next_at = now + x->svc->cfg->s.series_interval_ms;
        x->cur.n = 0;
        x->rss = x->pss = 0;
        x->pss_ok = x->io_ok = true;
        x->due = x->leader != 0;
        any |= x->due;
    }
    if (!any) return;
    scan_proc(ss);
    int64_t unix_ms = sup_unix_ms();
    for (size_t i = 0; i < ss->n; i++) {
        svc_series *x = &ss->v[i];
        if (!x->due) continue;
        count_workers(x);
        obs_stats st;
        read_stats(x, &st);
        if (x->at) write_sample(ss, x, now, unix_ms, &st);
        if (st.all) write_methods(x, unix_ms, &st);
        proc_list t = x->prev;
        x->prev = x->cur;
        x->cur = t;
        x->at = now;
        x->at_ticks = now_ticks;
        obs_stats_clear(&x->stats);
        x->stats = st;
    }
}
