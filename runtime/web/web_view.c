/* SPDX-License-Identifier: MIT */
/* What the management page shows (web_view.h). Every figure is gathered afresh per
 * request, on the civetweb thread that serves it: the services' states through the
 * control service (whose handler hands the request to the main loop), the rest from
 * shared memory (call statistics, and the user's queues and maps through the admin API),
 * /proc and the series files, none of which the main loop owns. */
#include "web_view.h"

#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/admin.h>
#include <shmrpc/client.h>
#include <shmrpc/codec.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/stats.h>
#include <shmrpc/status.h>

#include "obs_proc.h"
#include "obs_stats.h"
#include "input.h"

/* Pids listed per service; the count goes on past it. */
#define MAX_PIDS 256
/* Methods in the overview's "top_methods". */
#define TOP_METHODS 10
/* How much of the end of NAME.series is read for its last line (a line is ~250 bytes). */
#define SERIES_TAIL 8192

/* One service as gathered for a request. */
typedef struct gathered {
    json_t *status;     /* its object from the control service's status(), borrowed */
    long pid;           /* its process, the leader of its group; 0: none */
    bool leader_serves; /* an exec= service: its leader may serve in place (obs_proc.h) */
    int n_procs;        /* processes of its group */
    obs_proc procs[MAX_PIDS];
    double cpu_s;     /* utime + stime of the group, and the leader's reaped children */
    uint64_t rss;     /* resident bytes, summed */
    obs_stats stats;  /* its call statistics at each of its addresses */
    shmrpc_stats *st; /* stats.all: summed over them; NULL: none to read */
    json_t *sample;   /* its last series sample, when of the current pid; NULL: none */
} gathered;

typedef struct view {
    json_t *status; /* the array status() returned */
    size_t n;
    gathered *g;
    /* The queues and maps of the page's user (its effective uid: the supervisor's, who
     * started it) in /dev/shm, valid ones only, sorted by name; NULL, 0 when /dev/shm
     * cannot be read. Read by the admin API, read-only: no handle is opened, nothing is
     * created, nothing waited for. */
    shmrpc_segment *shared;
    size_t n_shared;
} view;

void web_service_address(const cfg_service *s, char *out, size_t cap)
{
    if (s->shm_name)
        snprintf(out, cap, "shm://%s", s->shm_name);
    else if (s->tcp_port)
        snprintf(out, cap, "tcp://127.0.0.1:%d", s->tcp_port);
    else if (cap)
        out[0] = '\0';
}

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A JSON string of text that may not be UTF-8 (names read from shared memory): bytes
 * outside printable ASCII become '?' when it is not valid as it is. */
static json_t *jstr(const char *s)
{
    json_t *v = json_string(s);
    if (v) return v;
    char *copy = strdup(s);
    if (!copy) return json_string("");
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) *p = '?';
    v = json_string(copy);
    free(copy);
    return v;
}

/* --- /proc ---------------------------------------------------------------------------- */

/* Whether the k-th process of g is a worker, by the rule the series and the scaler
 * follow (obs_proc.h). */
static bool is_worker(const gathered *g, int k)
{
    int shown = g->n_procs < MAX_PIDS ? g->n_procs : MAX_PIDS;
    return obs_proc_is_worker(g->procs, (size_t)shown, (size_t)k, g->leader_serves);
}

/* How many processes of g manage workers: its leader, and a module= service's TCP
 * manager (obs_proc.h); 0 with no process. A scale count is per manager. */
static int manager_count(const gathered *g)
{
    int shown = g->n_procs < MAX_PIDS ? g->n_procs : MAX_PIDS, n = g->pid > 0;
    for (int k = 0; k < shown; k++) {
        const obs_proc *p = &g->procs[k];
        n += p->tcp_named && p->ppid == p->pgrp && p->pid != p->pgrp;
    }
    return n;
}

/* How many workers g has; processes past MAX_PIDS, unseen, count as workers. */
static int worker_count(const gathered *g)
{
    int shown = g->n_procs < MAX_PIDS ? g->n_procs : MAX_PIDS, n = g->n_procs - shown;
    for (int k = 0; k < shown; k++)
        n += is_worker(g, k);
    return n;
}

static long clock_tick(void)
{
    long tick = sysconf(_SC_CLK_TCK);
    return tick > 0 ? tick : 100;
}

static uint64_t page_bytes(void)
{
    long page = sysconf(_SC_PAGESIZE);
    return page > 0 ? (uint64_t)page : 4096;
}

/* One process of /proc: to the service whose group it is in, if any. */
static void take(const obs_proc *p, void *arg)
{
    view *v = arg;
    for (size_t i = 0; i < v->n; i++) {
        gathered *g = &v->g[i];
        if (g->pid <= 0 || p->pgrp != g->pid) continue;
        uint64_t ticks = p->utime + p->stime;
        if (g->n_procs < MAX_PIDS) g->procs[g->n_procs] = *p;
        g->n_procs++;
        if (p->pid == g->pid) ticks += p->cutime + p->cstime; /* the workers it reaped */
        g->cpu_s += (double)ticks / (double)clock_tick();
        g->rss += p->rss_pages * page_bytes();
    }
}

/* One pass over /proc for the processes whose group is one of the services'. */
static void scan_proc(view *v)
{
    obs_procs_scan(take, v);
}

/* --- the series ----------------------------------------------------------------------- */

/* The last whole line of LOG_DIR/NAME.series, parsed, when its pid is the service's. */
static json_t *last_sample(const cfg_service *s, long pid)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.series", s->s.log_dir, s->name);
    int fd = shmrpc__open_regular(path, O_RDONLY, 0, NULL);
    if (fd < 0) return NULL;
    struct stat st;
    char buf[SERIES_TAIL + 1];
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        off_t from = st.st_size > SERIES_TAIL ? st.st_size - SERIES_TAIL : 0;
        n = pread(fd, buf, SERIES_TAIL, from);
    }
    close(fd);
    if (n <= 0) return NULL;
    buf[n] = '\0';
    /* A last line without its '\n' is being written: skip it. */
    char *end = strrchr(buf, '\n');
    if (!end) return NULL;
    *end = '\0';
    char *start = strrchr(buf, '\n');
    start = start ? start + 1 : buf;
    json_t *v = shmrpc_json_check_depth(start, strlen(start), SHMRPC_JSON_MAX_DEPTH) == 0
                    ? json_loads(start, 0, NULL)
                    : NULL;
    json_t *p = json_object_get(v, "pid");
    if (!json_is_integer(p) || json_integer_value(p) != pid) {
        json_decref(v);
        return NULL;
    }
    return v;
}

/* --- gathering ------------------------------------------------------------------------ */

static void view_free(view *v)
{
    for (size_t i = 0; v->g && i < v->n; i++) {
        obs_stats_clear(&v->g[i].stats);
        json_decref(v->g[i].sample);
    }
    free(v->g);
    json_decref(v->status);
    shmrpc_segments_free(v->shared);
}

/* The user's queues and maps (view.shared). */
static void shared_load(view *v)
{
    shmrpc_segment *all = NULL;
    size_t n = 0, k = 0;
    if (shmrpc_segments_list(&all, &n, NULL, 0) != 0) return;
    uid_t me = geteuid();
    for (size_t i = 0; i < n; i++) {
        const shmrpc_segment *s = &all[i];
        if ((s->kind == SHMRPC_SEG_QUEUE || s->kind == SHMRPC_SEG_MAP) && s->valid && s->readable &&
            s->uid == (unsigned)me)
            all[k++] = *s;
    }
    v->shared = all;
    v->n_shared = k;
}

static int view_load(web_ctx *w, view *v, web_err *e)
{
    memset(v, 0, sizeof *v);
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    int rc = web_call(&w->control, "status", "[]", 2, WEB_CONTROL_TIMEOUT_MS, &out, e);
    if (rc == 0) {
        v->status = shmrpc_json_check_depth(out.data, out.len, SHMRPC_JSON_MAX_DEPTH) == 0
                        ? json_loadb((const char *)out.data, out.len, 0, NULL)
                        : NULL;
        if (!json_is_array(v->status)) rc = -1, e->http = 502, e->rc = SHMRPC_EPROTO;
        if (rc) snprintf(e->msg, sizeof e->msg, "the control service's status did not read");
    }
    shmrpc_buf_destroy(&out);
    if (rc) return rc;
    v->n = w->cfg->n_services;
    v->g = calloc(v->n ? v->n : 1, sizeof *v->g);
    if (!v->g) {
        e->http = 500, e->rc = SHMRPC_ENOMEM;
        snprintf(e->msg, sizeof e->msg, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < v->n; i++) {
        gathered *g = &v->g[i];
        /* status() lists the services in file order; matched by name all the same. */
        size_t j;
        json_t *o;
        json_array_foreach(v->status, j, o)
        {
            const char *name = json_string_value(json_object_get(o, "name"));
            if (name && strcmp(name, w->cfg->services[i].name) == 0) g->status = o;
        }
        g->leader_serves = w->cfg->services[i].kind != CFG_MODULE;
        json_t *pid = json_object_get(g->status, "pid");
        g->pid = json_is_integer(pid) ? (long)json_integer_value(pid) : 0;
        if (g->pid <= 0) continue;
        obs_stats_read(&w->cfg->services[i], (pid_t)g->pid, &g->stats); /* its group */
        g->st = g->stats.all;
        g->sample = last_sample(&w->cfg->services[i], g->pid);
    }
    scan_proc(v);
    return 0;
}

/* --- JSON ----------------------------------------------------------------------------- */

static json_t *num_or_null(json_t *sample, const char *key)
{
    json_t *x = json_object_get(sample, key);
    return json_is_number(x) ? json_real(json_number_value(x)) : json_null();
}

static json_t *method_json(const shmrpc_method_stats *m)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", jstr(m->name ? m->name : ""));
    json_object_set_new(o, "calls", json_integer((json_int_t)m->calls));
    json_object_set_new(o, "errors", json_integer((json_int_t)m->errors));
    json_object_set_new(o, "total_ns", json_integer((json_int_t)m->total_ns));
    if (m->calls) {
        json_object_set_new(o, "mean_us", json_real((double)m->total_ns / (double)m->calls / 1e3));
        json_object_set_new(o, "p50_us", json_real(shmrpc_stats_quantile(m, 0.5) / 1e3));
        json_object_set_new(o, "p99_us", json_real(shmrpc_stats_quantile(m, 0.99) / 1e3));
    } else {
        json_object_set_new(o, "mean_us", json_null());
        json_object_set_new(o, "p50_us", json_null());
        json_object_set_new(o, "p99_us", json_null());
    }
    return o;
}

static json_t *service_json(web_ctx *w, const view *v, size_t i, int64_t now)
{
    const cfg_service *cs = &w->cfg->services[i];
    const gathered *g = &v->g[i];
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(cs->name));
    json_object_set_new(o, "kind", json_string(cs->kind == CFG_MODULE ? "module" : "exec"));
    json_object_set_new(o, "address", json_string(w->svc[i].addr));
    static const char *const copied[] = {
        "state", "pid", "restarts", "started_at_ms", "last_exit", "log_path", "log_dropped_bytes"};
    for (size_t k = 0; k < sizeof copied / sizeof copied[0]; k++) {
        json_t *x = json_object_get(g->status, copied[k]);
        json_object_set_new(o, copied[k], x ? json_incref(x) : json_null());
    }
    json_t *started = json_object_get(g->status, "started_at_ms");
    if (json_is_integer(started) && json_integer_value(started) > 0 && g->pid > 0)
        json_object_set_new(o, "uptime_s",
                            json_real((double)(now - json_integer_value(started)) / 1e3));
    else
        json_object_set_new(o, "uptime_s", json_null());
    json_t *pids = json_array();
    int shown = g->n_procs < MAX_PIDS ? g->n_procs : MAX_PIDS;
    for (int k = 0; k < shown; k++)
        if (is_worker(g, k)) json_array_append_new(pids, json_integer(g->procs[k].pid));
    json_object_set_new(o, "workers", json_integer(worker_count(g)));
    json_object_set_new(o, "worker_pids", pids);
    json_object_set_new(o, "managers", json_integer(manager_count(g)));
    json_object_set_new(o, "cpu_seconds", g->pid > 0 ? json_real(g->cpu_s) : json_null());
    json_object_set_new(o, "rss_bytes",
                        g->pid > 0 ? json_integer((json_int_t)g->rss) : json_null());
    uint64_t calls = 0, errors = 0;
    for (uint32_t k = 0; g->st && k < g->st->n_methods; k++)
        calls += g->st->methods[k].calls, errors += g->st->methods[k].errors;
    json_object_set_new(o, "calls_total", g->st ? json_integer((json_int_t)calls) : json_null());
    json_object_set_new(o, "errors_total", g->st ? json_integer((json_int_t)errors) : json_null());
    /* Rates and percentiles over the last sample's interval (series_interval_s). */
    json_object_set_new(o, "calls_per_s", num_or_null(g->sample, "calls"));
    json_t *c = json_object_get(g->sample, "calls"), *er = json_object_get(g->sample, "errors");
    if (json_is_number(c) && json_is_number(er) && json_number_value(c) > 0)
        json_object_set_new(o, "error_rate",
                            json_real(json_number_value(er) / json_number_value(c)));
    else
        json_object_set_new(o, "error_rate", json_null());
    json_object_set_new(o, "p50_us", num_or_null(g->sample, "p50_us"));
    json_object_set_new(o, "p99_us", num_or_null(g->sample, "p99_us"));
    json_object_set_new(o, "cpu_percent", num_or_null(g->sample, "cpu"));
    json_object_set_new(o, "pss_bytes", num_or_null(g->sample, "pss"));
    json_t *t = json_object_get(g->sample, "t");
    json_object_set_new(o, "sample_t", json_is_integer(t) ? json_incref(t) : json_null());
    return o;
}

int web_dump(json_t *root, shmrpc_buf *out, web_err *e)
{
    char *text = root ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(root);
    if (!text || shmrpc_buf_append(out, text, strlen(text)) != 0) {
        free(text);
        e->http = 500, e->rc = SHMRPC_ENOMEM;
        snprintf(e->msg, sizeof e->msg, "out of memory");
        return -1;
    }
    free(text);
    return 0;
}

typedef struct top {
    size_t svc;
    const shmrpc_method_stats *m;
} top;

static int by_total_desc(const void *a, const void *b)
{
    uint64_t x = ((const top *)a)->m->total_ns, y = ((const top *)b)->m->total_ns;
    return x < y ? 1 : x > y ? -1 : 0;
}

int web_view_services(web_ctx *w, shmrpc_buf *out, web_err *e)
{
    view v;
    if (view_load(w, &v, e) != 0) {
        view_free(&v);
        return -1;
    }
    shared_load(&v);
    int64_t now = unix_ms();
    json_t *root = json_object(), *list = json_array();
    json_t *sup = json_object();
    json_object_set_new(sup, "pid", json_integer(w->supervisor));
    json_object_set_new(sup, "ini", json_string(w->cfg->path));
    json_object_set_new(sup, "now_ms", json_integer(now));
    json_object_set_new(root, "supervisor", sup);
    size_t n_top = 0;
    for (size_t i = 0; i < v.n; i++) {
        json_array_append_new(list, service_json(w, &v, i, now));
        n_top += v.g[i].st ? v.g[i].st->n_methods : 0;
    }
    json_object_set_new(root, "services", list);
    /* The methods that took the most time, across all services. */
    top *tops = calloc(n_top ? n_top : 1, sizeof *tops);
    json_t *tl = json_array();
    if (tops) {
        size_t k = 0;
        for (size_t i = 0; i < v.n; i++)
            for (uint32_t j = 0; v.g[i].st && j < v.g[i].st->n_methods; j++)
                if (v.g[i].st->methods[j].calls) tops[k++] = (top){i, &v.g[i].st->methods[j]};
        qsort(tops, k, sizeof *tops, by_total_desc);
        for (size_t j = 0; j < k && j < TOP_METHODS; j++) {
            json_t *m = method_json(tops[j].m);
            json_object_set_new(m, "service", json_string(w->cfg->services[tops[j].svc].name));
            json_array_append_new(tl, m);
        }
        free(tops);
    }
    json_object_set_new(root, "top_methods", tl);
    json_t *queues = json_array(), *maps = json_array();
    for (size_t i = 0; i < v.n_shared; i++) {
        const shmrpc_segment *s = &v.shared[i];
        if (s->kind == SHMRPC_SEG_QUEUE) {
            const shmrpc_queue_stats *q = &s->queue;
            json_array_append_new(
                queues,
                json_pack("{s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "name", jstr(s->key), "size",
                          (json_int_t)s->size, "depth", (json_int_t)q->depth, "pushed",
                          (json_int_t)q->pushed, "popped", (json_int_t)q->popped, "timeouts",
                          (json_int_t)q->timeouts, "drops", (json_int_t)q->drops, "sleeps",
                          (json_int_t)q->sleeps, "repairs", (json_int_t)q->repairs));
        } else {
            const shmrpc_map_info *m = &s->map;
            json_array_append_new(
                maps,
                json_pack("{s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "name", jstr(s->key), "entries",
                          (json_int_t)m->count, "bytes", (json_int_t)m->bytes, "used_bytes",
                          (json_int_t)m->used, "generation", (json_int_t)m->generation, "writes",
                          (json_int_t)m->writes, "reads", (json_int_t)m->reads, "growths",
                          (json_int_t)m->growths, "lock_waits", (json_int_t)m->lock_waits));
        }
    }
    json_object_set_new(root, "queues", queues);
    json_object_set_new(root, "maps", maps);
    view_free(&v);
    return web_dump(root, out, e);
}

/* The workers of worker_pids, each with its own figures, for the service page. */
static json_t *worker_procs(const gathered *g)
{
    json_t *list = json_array();
    int shown = g->n_procs < MAX_PIDS ? g->n_procs : MAX_PIDS;
    for (int k = 0; k < shown; k++) {
        if (!is_worker(g, k)) continue;
        const obs_proc *p = &g->procs[k];
        char st[2] = {p->state, '\0'};
        double cpu_s = (double)(p->utime + p->stime) / (double)clock_tick();
        json_array_append_new(list, json_pack("{s:I,s:s,s:f,s:I}", "pid", (json_int_t)p->pid,
                                              "state", st, "cpu_seconds", cpu_s, "rss_bytes",
                                              (json_int_t)(p->rss_pages * page_bytes())));
    }
    return list;
}

int web_view_service(web_ctx *w, size_t index, int log_lines, shmrpc_buf *out, web_err *e)
{
    view v;
    if (view_load(w, &v, e) != 0) {
        view_free(&v);
        return -1;
    }
    json_t *o = service_json(w, &v, index, unix_ms());
    const gathered *g = &v.g[index];
    json_t *methods = json_array();
    for (uint32_t k = 0; g->st && k < g->st->n_methods; k++)
        json_array_append_new(methods, method_json(&g->st->methods[k]));
    json_object_set_new(o, "methods", methods);
    json_object_set_new(o, "service", g->st ? jstr(g->st->service) : json_null());
    json_t *read_at = json_array();
    for (int a = 0; a < OBS_STATS_ADDRS; a++)
        if (g->stats.part[a] && !g->stats.left_out[a])
            json_array_append_new(read_at, json_string(g->stats.addr[a]));
    json_object_set_new(o, "stats_addresses", read_at);
    json_object_set_new(o, "stats_left_out",
                        g->stats.why[0] ? json_string(g->stats.why) : json_null());
    json_object_set_new(o, "worker_procs", worker_procs(g));
    view_free(&v);
    /* Its log's tail, as shmrpcctl logs reads it: the control service's logs(). */
    char args[128];
    snprintf(args, sizeof args, "[\"%s\",%d]", w->cfg->services[index].name, log_lines);
    shmrpc_buf text;
    shmrpc_buf_init(&text);
    web_err le;
    json_t *log = NULL;
    if (web_call(&w->control, "logs", args, strlen(args), WEB_CONTROL_TIMEOUT_MS, &text, &le) == 0)
        log = shmrpc_json_check_depth(text.data, text.len, SHMRPC_JSON_MAX_DEPTH) == 0
                  ? json_loadb((const char *)text.data, text.len, 0, NULL)
                  : NULL;
    shmrpc_buf_destroy(&text);
    json_object_set_new(o, "log", json_is_array(log) ? log : json_array());
    if (!json_is_array(log)) {
        json_decref(log);
        json_object_set_new(o, "log_error", json_string(le.msg));
    }
    return web_dump(o, out, e);
}

/* --- Prometheus ----------------------------------------------------------------------- */

static void put(shmrpc_buf *b, const char *s)
{
    shmrpc_buf_append(b, s, strlen(s));
}

/* A label value: backslash, double quote and line feed escaped (0.0.4); other control
 * bytes and non-ASCII ones, which a name read from shared memory might hold, become '?'. */
static void put_label(shmrpc_buf *b, const char *s)
{
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\\')
            put(b, "\\\\");
        else if (ch == '"')
            put(b, "\\\"");
        else if (ch == '\n')
            put(b, "\\n");
        else if (ch < 0x20 || ch >= 0x7f)
            put(b, "?");
        else
            shmrpc_buf_append(b, s, 1);
    }
}

static void family(shmrpc_buf *b, const char *name, const char *type, const char *help)
{
    shmrpc_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void svc_label(shmrpc_buf *b, const char *metric, const char *svc)
{
    put(b, metric);
    put(b, "{service=\"");
    put_label(b, svc);
    put(b, "\"");
}

/* Nanoseconds as seconds in exact decimal: 1024 -> "0.000001024". */
static void put_seconds(shmrpc_buf *b, uint64_t ns)
{
    char frac[16];
    snprintf(frac, sizeof frac, "%09llu", (unsigned long long)(ns % 1000000000u));
    size_t n = strlen(frac);
    while (n > 0 && frac[n - 1] == '0')
        frac[--n] = '\0';
    shmrpc_buf_appendf(b, "%llu%s%s", (unsigned long long)(ns / 1000000000u), n ? "." : "", frac);
}

/* A counter family of one value per service, its status's integer key (0 when absent). */
static void status_counter(shmrpc_buf *out, const view *v, const cfg_file *c, const char *name,
                           const char *key, const char *help)
{
    family(out, name, "counter", help);
    for (size_t i = 0; i < v->n; i++) {
        json_t *x = json_object_get(v->g[i].status, key);
        svc_label(out, name, c->services[i].name);
        shmrpc_buf_appendf(out, "} %lld\n",
                           json_is_integer(x) ? (long long)json_integer_value(x) : 0LL);
    }
}

/* The user's queues and maps (view.shared): a family per figure, a sample per queue or
 * map, labelled by its name. A figure is the uint64_t at off in shmrpc_queue_stats (a
 * queue's) or in shmrpc_map_info (a map's). */
static void shared_metrics(shmrpc_buf *out, const view *v)
{
    static const struct {
        shmrpc_seg_kind kind; /* SHMRPC_SEG_QUEUE or SHMRPC_SEG_MAP */
        const char *name, *type, *help;
        size_t off;
    } fig[] = {
        {SHMRPC_SEG_QUEUE, "shmrpc_queue_depth", "gauge",
         "Messages in the queue not yet taken (broadcast: not yet read by its slowest "
         "subscriber).",
         offsetof(shmrpc_queue_stats, depth)},
        {SHMRPC_SEG_QUEUE, "shmrpc_queue_pushed_total", "counter",
         "Messages committed to the queue since it was made.",
         offsetof(shmrpc_queue_stats, pushed)},
        {SHMRPC_SEG_QUEUE, "shmrpc_queue_popped_total", "counter",
         "Messages taken from the queue (pop, batch or peek) since it was made.",
         offsetof(shmrpc_queue_stats, popped)},
        {SHMRPC_SEG_QUEUE, "shmrpc_queue_timeouts_total", "counter",
         "Pushes and pops of the queue that waited and timed out.",
         offsetof(shmrpc_queue_stats, timeouts)},
        {SHMRPC_SEG_QUEUE, "shmrpc_queue_drops_total", "counter",
         "Messages of the queue lost: half written by a producer that died, taken by a consumer "
         "that died before releasing, or with a corrupt descriptor.",
         offsetof(shmrpc_queue_stats, drops)},
        {SHMRPC_SEG_QUEUE, "shmrpc_queue_sleeps_total", "counter",
         "Futex sleeps of the queue's waiters.", offsetof(shmrpc_queue_stats, sleeps)},
        {SHMRPC_SEG_QUEUE, "shmrpc_queue_repairs_total", "counter",
         "Slots of the queue taken back from dead processes.",
         offsetof(shmrpc_queue_stats, repairs)},
        {SHMRPC_SEG_MAP, "shmrpc_map_entries", "gauge", "Keys in the map.",
         offsetof(shmrpc_map_info, count)},
        {SHMRPC_SEG_MAP, "shmrpc_map_capacity_bytes", "gauge",
         "Bytes of entry space of the map's current generation.", offsetof(shmrpc_map_info, bytes)},
        {SHMRPC_SEG_MAP, "shmrpc_map_used_bytes", "gauge",
         "Bytes of the current generation's entry space written (live and replaced entries).",
         offsetof(shmrpc_map_info, used)},
        {SHMRPC_SEG_MAP, "shmrpc_map_generation", "gauge",
         "The map's current generation: 1, plus how many times its table was replaced "
         "(growth or clear).",
         offsetof(shmrpc_map_info, generation)},
        {SHMRPC_SEG_MAP, "shmrpc_map_writes_total", "counter",
         "Puts, removes and clears that changed the map since it was made.",
         offsetof(shmrpc_map_info, writes)},
        {SHMRPC_SEG_MAP, "shmrpc_map_reads_total", "counter",
         "Gets and read views of the map, by handles open now and closed ones.",
         offsetof(shmrpc_map_info, reads)},
        {SHMRPC_SEG_MAP, "shmrpc_map_growths_total", "counter",
         "Generations of the map made by growth.", offsetof(shmrpc_map_info, growths)},
        {SHMRPC_SEG_MAP, "shmrpc_map_lock_waits_total", "counter",
         "Acquires of the map's lock that found it held (writes that waited).",
         offsetof(shmrpc_map_info, lock_waits)},
    };
    for (size_t f = 0; f < sizeof fig / sizeof fig[0]; f++) {
        bool queue = fig[f].kind == SHMRPC_SEG_QUEUE;
        family(out, fig[f].name, fig[f].type, fig[f].help);
        for (size_t i = 0; i < v->n_shared; i++) {
            const shmrpc_segment *s = &v->shared[i];
            if (s->kind != fig[f].kind) continue;
            const char *stats = queue ? (const char *)&s->queue : (const char *)&s->map;
            uint64_t x;
            memcpy(&x, stats + fig[f].off, sizeof x);
            put(out, fig[f].name);
            put(out, queue ? "{queue=\"" : "{map=\"");
            put_label(out, s->key);
            shmrpc_buf_appendf(out, "\"} %llu\n", (unsigned long long)x);
        }
    }
}

int web_view_metrics(web_ctx *w, shmrpc_buf *out, web_err *e)
{
    view v;
    if (view_load(w, &v, e) != 0) {
        view_free(&v);
        return -1;
    }
    static const char *const states[] = {"stopped", "starting", "running",
                                         "backoff", "stopping", "failed"};
    shared_load(&v);
    const cfg_file *c = w->cfg;
    family(out, "shmrpc_service_up", "gauge",
           "Whether the service is running and answering calls (1) or not (0).");
    for (size_t i = 0; i < v.n; i++) {
        const char *st = json_string_value(json_object_get(v.g[i].status, "state"));
        svc_label(out, "shmrpc_service_up", c->services[i].name);
        shmrpc_buf_appendf(out, "} %d\n", st && strcmp(st, "running") == 0);
    }
    family(out, "shmrpc_service_state", "gauge",
           "The service's state: 1 for the one it is in, 0 for the others.");
    for (size_t i = 0; i < v.n; i++) {
        const char *st = json_string_value(json_object_get(v.g[i].status, "state"));
        for (size_t k = 0; k < sizeof states / sizeof states[0]; k++) {
            svc_label(out, "shmrpc_service_state", c->services[i].name);
            shmrpc_buf_appendf(out, ",state=\"%s\"} %d\n", states[k],
                               st && strcmp(st, states[k]) == 0);
        }
    }
    status_counter(out, &v, c, "shmrpc_service_restarts_total", "restarts",
                   "Restarts of the service after a crash since the supervisor started.");
    family(out, "shmrpc_service_workers", "gauge",
           "Worker processes of the service: the processes of its group that are no other's "
           "parent (a leader serving alone is 1); 0 when not running.");
    for (size_t i = 0; i < v.n; i++) {
        svc_label(out, "shmrpc_service_workers", c->services[i].name);
        shmrpc_buf_appendf(out, "} %d\n", worker_count(&v.g[i]));
    }
    family(out, "shmrpc_service_cpu_seconds_total", "counter",
           "User and system CPU time of the service's running processes and of the workers its "
           "leader reaped; starts again at a restart.");
    for (size_t i = 0; i < v.n; i++) {
        svc_label(out, "shmrpc_service_cpu_seconds_total", c->services[i].name);
        shmrpc_buf_appendf(out, "} %.2f\n", v.g[i].cpu_s);
    }
    family(out, "shmrpc_service_resident_memory_bytes", "gauge",
           "Resident memory of the service's processes, summed (pages shared count in each).");
    for (size_t i = 0; i < v.n; i++) {
        svc_label(out, "shmrpc_service_resident_memory_bytes", c->services[i].name);
        shmrpc_buf_appendf(out, "} %llu\n", (unsigned long long)v.g[i].rss);
    }
    status_counter(out, &v, c, "shmrpc_service_log_dropped_bytes_total", "log_dropped_bytes",
                   "Bytes of the service's output that could not be written to its log.");
    /* Per method, from the statistics segments; a service without one has no series. */
    static const struct {
        const char *name, *help;
        int which;
    } counters[] = {
        {"shmrpc_calls_total",
         "Calls answered by the method, successes and failures, since its server started.", 0},
        {"shmrpc_call_errors_total",
         "Calls answered by the method with a failure status, since its server started.", 1},
    };
    for (size_t f = 0; f < 2; f++) {
        family(out, counters[f].name, "counter", counters[f].help);
        for (size_t i = 0; i < v.n; i++) {
            for (uint32_t k = 0; v.g[i].st && k < v.g[i].st->n_methods; k++) {
                const shmrpc_method_stats *m = &v.g[i].st->methods[k];
                svc_label(out, counters[f].name, c->services[i].name);
                put(out, ",method=\"");
                put_label(out, m->name);
                shmrpc_buf_appendf(out, "\"} %llu\n",
                                   (unsigned long long)(counters[f].which ? m->errors : m->calls));
            }
        }
    }
    const char *h = "shmrpc_call_duration_seconds";
    family(out, h, "histogram",
           "Time in dispatch of the method's calls (decoding, the handler, encoding), in "
           "power-of-two buckets.");
    for (size_t i = 0; i < v.n; i++) {
        for (uint32_t k = 0; v.g[i].st && k < v.g[i].st->n_methods; k++) {
            const shmrpc_method_stats *m = &v.g[i].st->methods[k];
            uint64_t cum = 0;
            for (int b = 0; b < SHMRPC_STATS_BUCKETS; b++) {
                cum += m->buckets[b];
                svc_label(out, "shmrpc_call_duration_seconds_bucket", c->services[i].name);
                put(out, ",method=\"");
                put_label(out, m->name);
                put(out, "\",le=\"");
                /* Bucket b holds calls under 2^(b+10) ns; the last is open-ended. */
                if (b == SHMRPC_STATS_BUCKETS - 1)
                    put(out, "+Inf");
                else
                    put_seconds(out, (uint64_t)1 << (b + 10));
                shmrpc_buf_appendf(out, "\"} %llu\n", (unsigned long long)cum);
            }
            svc_label(out, "shmrpc_call_duration_seconds_sum", c->services[i].name);
            put(out, ",method=\"");
            put_label(out, m->name);
            put(out, "\"} ");
            put_seconds(out, m->total_ns);
            svc_label(out, "\nshmrpc_call_duration_seconds_count", c->services[i].name);
            put(out, ",method=\"");
            put_label(out, m->name);
            /* The buckets' total, which +Inf shows too: the rows are read while workers
             * may be counting a call, and a histogram must agree with itself. */
            shmrpc_buf_appendf(out, "\"} %llu\n", (unsigned long long)cum);
        }
    }
    shared_metrics(out, &v);
    view_free(&v);
    if (out->err) {
        e->http = 500, e->rc = out->err;
        snprintf(e->msg, sizeof e->msg, "%s", shmrpc_strerror(out->err));
        return -1;
    }
    return 0;
}

/* --- probes ---------------------------------------------------------------------------- */

/* How long a probe waits for one service's health answer: well inside the 1 s that
 * orchestrators give a probe by default, for a few services at a time. */
#define PROBE_TIMEOUT_MS 500

int web_view_live(web_ctx *w, shmrpc_buf *out)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    web_err e;
    bool live = web_call(&w->control, "status", "[]", 2, WEB_CONTROL_TIMEOUT_MS, &b, &e) == 0;
    shmrpc_buf_destroy(&b);
    shmrpc_buf_appendf(out, "{\"live\":%s}\n", live ? "true" : "false");
    return live;
}

/* Whether the server at addr answers its health method with serving, asked on a fresh
 * connection with an empty method table, as shmrpcctl health does. */
static bool serving(const char *addr)
{
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.timeout_ms = PROBE_TIMEOUT_MS;
    o.tcp.connect_timeout_ms = PROBE_TIMEOUT_MS;
    shmrpc_dyn *d = NULL;
    shmrpc_health h = 0;
    bool ok = shmrpc_dyn_new(&d, &o) == 0 && shmrpc_dyn_connect(d, addr) == 0 &&
              shmrpc_client_health(shmrpc_dyn_client(d), &h) == 0 && h == SHMRPC_HEALTH_SERVING;
    shmrpc_dyn_free(d);
    return ok;
}

int web_view_ready(web_ctx *w, shmrpc_buf *out)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    web_err e;
    json_t *status = NULL;
    if (web_call(&w->control, "status", "[]", 2, WEB_CONTROL_TIMEOUT_MS, &b, &e) == 0 &&
        shmrpc_json_check_depth(b.data, b.len, SHMRPC_JSON_MAX_DEPTH) == 0)
        status = json_loadb((const char *)b.data, b.len, 0, NULL);
    shmrpc_buf_destroy(&b);
    json_t *names = json_array();
    for (size_t i = 0; i < w->cfg->n_services; i++) {
        const char *name = w->cfg->services[i].name;
        const char *state = NULL;
        size_t j;
        json_t *o;
        json_array_foreach(status, j, o)
        {
            const char *n = json_string_value(json_object_get(o, "name"));
            if (n && strcmp(n, name) == 0) state = json_string_value(json_object_get(o, "state"));
        }
        /* A service without a known address is judged by its state alone. */
        bool ok = state && strcmp(state, "running") == 0 &&
                  (w->svc[i].addr[0] == '\0' || serving(w->svc[i].addr));
        if (!ok) json_array_append_new(names, json_string(name));
    }
    bool ready = status && json_array_size(names) == 0;
    json_decref(status);
    json_t *root = json_object();
    json_object_set_new(root, "ready", json_boolean(ready));
    json_object_set_new(root, "not_ready", names);
    web_err de;
    if (web_dump(root, out, &de) != 0) shmrpc_buf_appendf(out, "{\"ready\":false}\n");
    return ready;
}
