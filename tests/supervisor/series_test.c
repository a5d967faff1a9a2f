/* SPDX-License-Identifier: MIT */
/* The supervisor's time series (docs/series.md). With real processes: shmrpc-service runs
 * echo-server with 2 workers, the test calls it through the generated client, and
 * LOG_DIR/echo.series and echo.methods.json must show the calls exactly, the workers, and
 * memory; after a kill -9 the restarted server's samples count from zero. In process:
 * the series of this test's own process group rotated at log_max_bytes with simulated
 * time, and the interval percentile. Every wait is bounded; teardown removes what a
 * failed test left. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "echo.h"
#include "obs_proc.h"
#include "sup_series.h"
#include "sup_helpers.h"

/* sup_series.c logs through sup_ctx.c's sup_logf; this test links sup_series.c alone:
 * the lines go to stderr, and are kept in logged for the tests to read. */
static char logged[8192];

void sup_logf(const sup_ctx *ctx, const char *fmt, ...)
{
    (void)ctx;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
    size_t n = strlen(logged);
    snprintf(logged + n, sizeof logged - n, "%s\n", line);
}

#define CALLS_ADD 100
#define CALLS_JSON 7
#define WORKERS 2
/* The echo service's series_interval_s, in ms: not the default, to see the key work. */
#define INTERVAL_MS 2000

typedef struct fixture {
    char dir[64];
    char shm[32];
    pid_t sup;
    sup_groups groups; /* the echo service's process groups seen, at most 8, killed in
                        * teardown */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/shmrpc-series-test-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->shm, sizeof f->shm, "series_test_%d", (int)getpid());
    f->groups.cap = 8;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sup_end(&f->sup);
    sup_groups_kill(&f->groups);
    sup_remove_segments(f->shm);
    /* The control segment of a supervisor a failed test SIGKILLed (this one's only). */
    char ini[96], control[96];
    snprintf(ini, sizeof ini, "%s/service.ini", f->dir);
    if (cfg_control_address(ini, control, sizeof control) == 0)
        sup_remove_segments(control + strlen("shm://"));
    sup_rm_tree(f->dir);
    free(f);
    return 0;
}

/* The lines of DIR/name parsed, as a JSON array (empty when the file is missing). A last
 * line without its newline is being written: left out. */
static json_t *read_lines(const fixture *f, const char *name)
{
    char p[160], line[4096];
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    json_t *a = json_array();
    FILE *r = fopen(p, "r");
    if (!r) return a;
    while (fgets(line, sizeof line, r)) {
        if (!strchr(line, '\n')) break;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o) fail_msg("%s: not JSON: %s (%s)", name, line, je.text);
        json_array_append_new(a, o);
    }
    fclose(r);
    return a;
}

static json_t *read_json(const fixture *f, const char *name)
{
    char p[160];
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    return json_load_file(p, 0, NULL);
}

/* The echo service's pid in status.json once it is running, within ms; 0 otherwise. */
static pid_t running_pid(const fixture *f, pid_t not, int ms)
{
    for (int64_t end = sup_now_ms() + ms; sup_now_ms() < end; sup_nap_ms(20)) {
        json_t *st = read_json(f, "logs/status.json");
        json_t *echo = json_object_get(json_object_get(st, "services"), "echo");
        const char *state = json_string_value(json_object_get(echo, "state"));
        pid_t pid = (pid_t)json_integer_value(json_object_get(echo, "pid"));
        bool yes = state && strcmp(state, "running") == 0 && pid > 0 && pid != not ;
        json_decref(st);
        if (yes) return pid;
    }
    return 0;
}

static double num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) fail_msg("\"%s\" is not a number", key);
    return json_number_value(v);
}

/* The children of pid, ascending; their count. */
static int children_of(pid_t pid, pid_t *out, int cap)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *r = fopen(p, "r");
    int n = 0;
    long v;
    while (r && n < cap && fscanf(r, "%ld", &v) == 1)
        out[n++] = (pid_t)v;
    if (r) fclose(r);
    for (int i = 1; i < n; i++) /* a few: insertion sort */
        for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
            pid_t t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

/* status.json gives the echo service's workers, pid's two children, within a few
 * intervals: the series' sample finds them. */
static void status_shows_workers(const fixture *f, pid_t pid)
{
    pid_t kids[8];
    int n = 0, workers = -1;
    size_t n_pids = 0;
    for (int64_t end = sup_now_ms() + 4 * INTERVAL_MS; sup_now_ms() < end; sup_nap_ms(50)) {
        n = children_of(pid, kids, 8);
        json_t *st = read_json(f, "logs/status.json");
        json_t *echo = json_object_get(json_object_get(st, "services"), "echo");
        json_t *pids = json_object_get(echo, "worker_pids");
        workers = (int)json_integer_value(json_object_get(echo, "workers"));
        n_pids = json_array_size(pids);
        bool same = n == WORKERS && workers == WORKERS && n_pids == WORKERS;
        for (size_t i = 0; same && i < n_pids; i++)
            same = json_integer_value(json_array_get(pids, i)) == kids[i];
        json_decref(st);
        if (same) return;
    }
    fail_msg("status.json: workers %d, %zu worker_pids; echo-server has %d children", workers,
             n_pids, n);
}

/* Samples of pid: the series' lines whose pid is it, within ms, until one has calls_total
 * == calls and at least min lines of pid are there. */
static json_t *samples_of(const fixture *f, pid_t pid, long long calls, size_t min, int ms)
{
    for (int64_t end = sup_now_ms() + ms;; sup_nap_ms(50)) {
        json_t *all = read_lines(f, "logs/echo.series"), *mine = json_array();
        bool counted = false;
        size_t i;
        json_t *o;
        json_array_foreach(all, i, o)
        {
            if (json_integer_value(json_object_get(o, "pid")) != pid) continue;
            json_array_append(mine, o);
            counted |= json_integer_value(json_object_get(o, "calls_total")) == calls;
        }
        json_decref(all);
        if ((counted && json_array_size(mine) >= min) || sup_now_ms() >= end) return mine;
        json_decref(mine);
    }
}

/* Every sample of pid: time going forward, an interval of at least series_interval_s
 * (the next sample is due that long after the last was taken; the loop may be late, not
 * early), memory, the workers, and the calls: rates that add up to the counters' total,
 * which is `calls`. */
static void check_samples(json_t *s, pid_t pid, long long calls)
{
    double sum = 0, last_t = 0;
    size_t i;
    json_t *o;
    json_array_foreach(s, i, o)
    {
        assert_int_equal(json_integer_value(json_object_get(o, "pid")), pid);
        double t = num(o, "t");
        assert_true(t > last_t);
        last_t = t;
        if (num(o, "dt_ms") < INTERVAL_MS || num(o, "dt_ms") >= 2 * INTERVAL_MS)
            fail_msg("dt_ms %.0f, series_interval_s = %d", num(o, "dt_ms"), INTERVAL_MS / 1000);
        assert_true(num(o, "rss") > 0);
        assert_true(num(o, "pss") > 0);
        assert_true(num(o, "pss") <= num(o, "rss"));
        assert_true(num(o, "cpu") >= 0);
        assert_true(num(o, "read") >= 0 && num(o, "write") >= 0);
        assert_int_equal((int)num(o, "workers"), WORKERS);
        assert_true(num(o, "calls") >= 0);
        assert_true(num(o, "errors") == 0 && num(o, "errors_total") == 0);
        sum += num(o, "calls") * num(o, "dt_ms") / 1000.0;
        if (num(o, "calls") > 0) {
            assert_true(num(o, "p50_us") > 0);
            assert_true(num(o, "p99_us") >= num(o, "p50_us"));
        } else {
            assert_true(json_is_null(json_object_get(o, "p50_us")));
        }
    }
    o = json_array_get(s, json_array_size(s) - 1);
    assert_int_equal((long long)num(o, "calls_total"), calls);
    if (fabs(sum - (double)calls) > 0.05)
        fail_msg("rates add up to %f calls, not %lld", sum, calls);
}

static void echo_series_counts_the_calls(void **state)
{
    fixture *f = *state;
    char ini[512];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\n\n[echo]\nexec = %s --workers %d shm://%s\n"
             "shm_name = %s\nrestart_backoff_ms = 100\nseries_interval_s = %d\n",
             ECHO_SERVER, WORKERS, f->shm, f->shm, INTERVAL_MS / 1000);
    f->sup = sup_start_in(f->dir, ini, true, 60, NULL);
    pid_t pid = running_pid(f, 0, 5000);
    assert_true(pid > 0);
    sup_groups_add(&f->groups, pid);

    char addr[64];
    snprintf(addr, sizeof addr, "shm://%s", f->shm);
    shmrpc_client *c = NULL;
    assert_int_equal(shmrpc_client_new(&c, &Echo_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(c, addr), 0);
    status_shows_workers(f, pid);
    for (int i = 0; i < CALLS_ADD; i++) {
        int64_t sum = 0;
        assert_int_equal(echo_add(c, i, 1, &sum), 0);
        assert_int_equal(sum, i + 1);
    }
    for (int i = 0; i < CALLS_JSON; i++) {
        shmrpc_str out;
        assert_int_equal(echo_echo_json(c, shmrpc_str_c("hi"), &out), 0);
    }
    shmrpc_client_free(c);

    int64_t t0 = sup_now_ms();
    json_t *s = samples_of(f, pid, CALLS_ADD + CALLS_JSON, 2, 5 * INTERVAL_MS);
    fprintf(stderr, "series: %zu samples with the calls after %lld ms\n", json_array_size(s),
            (long long)(sup_now_ms() - t0));
    if (json_array_size(s) < 2) fail_msg("%zu samples", json_array_size(s));
    check_samples(s, pid, CALLS_ADD + CALLS_JSON);
    json_decref(s);

    /* The method table: cumulative counts per method. A sample appends its line to the
     * series before it replaces the table, so the table read right after the line may
     * still be the one before: wait (bounded) for the one that counts the calls. */
    json_t *m = NULL;
    for (int64_t end = sup_now_ms() + 5 * INTERVAL_MS;; sup_nap_ms(20)) {
        m = read_json(f, "logs/echo.methods.json");
        long long total = 0;
        size_t k;
        json_t *x;
        json_array_foreach(json_object_get(m, "methods"), k, x)
        {
            total += json_integer_value(json_object_get(x, "calls"));
        }
        if (total == CALLS_ADD + CALLS_JSON || sup_now_ms() >= end) break;
        json_decref(m);
    }
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "service")), "Echo");
    assert_int_equal(json_integer_value(json_object_get(m, "pid")), pid);
    json_t *methods = json_object_get(m, "methods");
    assert_int_equal(json_array_size(methods), 4);
    int seen = 0;
    size_t i;
    json_t *o;
    json_array_foreach(methods, i, o)
    {
        const char *name = json_string_value(json_object_get(o, "name"));
        assert_non_null(name);
        long long want = strcmp(name, "add") == 0         ? CALLS_ADD
                         : strcmp(name, "echo_json") == 0 ? CALLS_JSON
                                                          : 0;
        seen += want > 0;
        assert_int_equal(json_integer_value(json_object_get(o, "calls")), want);
        assert_int_equal(json_integer_value(json_object_get(o, "errors")), 0);
        if (want) {
            assert_true(num(o, "p50_us") > 0 && num(o, "p99_us") >= num(o, "p50_us"));
            assert_true(num(o, "mean_us") > 0);
        } else {
            assert_true(json_is_null(json_object_get(o, "p50_us")));
        }
    }
    assert_int_equal(seen, 2);
    json_decref(m);

    /* kill -9: the restarted server's samples count from zero, never negative. */
    kill(pid, SIGKILL);
    pid_t again = running_pid(f, pid, 5000);
    assert_true(again > 0);
    sup_groups_add(&f->groups, again);
    s = samples_of(f, again, 0, 1, 4 * INTERVAL_MS);
    if (json_array_size(s) < 1) fail_msg("no sample after the restart");
    check_samples(s, again, 0);
    json_decref(s);

    int st = sup_stop(&f->sup, SUP_EXIT_MS);
    assert_int_equal(f->sup, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A process group of two processes that wait: a leader and its child (an exec= server
 * and its worker), killed in teardown unless the test kills it. The leader's pid; *worker
 * its child's. */
static pid_t fake_server(fixture *f, pid_t *worker)
{
    pid_t leader = fork();
    assert_true(leader >= 0);
    if (leader == 0) {
        setpgid(0, 0);
        if (fork() == 0)
            for (;;)
                pause();
        for (;;)
            pause();
    }
    setpgid(leader, leader);            /* whichever comes first */
    sup_groups_add(&f->groups, leader); /* killed in teardown if the test fails */
    pid_t kids[2];
    for (int64_t end = sup_now_ms() + 5000; sup_children(leader, kids, 2) != 1; sup_nap_ms(5))
        assert_true(sup_now_ms() < end);
    *worker = kids[0];
    return leader;
}

/* Ends fake_server's group: SIGKILL to it, its leader reaped (the worker, orphaned, is
 * init's), and forgotten so that teardown signals no group that may reuse the id. */
static void end_fake_server(fixture *f, pid_t leader)
{
    kill(-leader, SIGKILL);
    assert_int_equal(waitpid(leader, NULL, 0), leader);
    sup_groups_forget(&f->groups, leader);
}

/* In process: a process group of its own (not this test's, whose shape depends on what
 * ran the test) sampled with simulated time, 40 samples in a file rotated at 4 KiB. */
static void series_rotates_at_log_max_bytes(void **state)
{
    fixture *f = *state;
    char logs[128];
    snprintf(logs, sizeof logs, "%s/logs", f->dir);
    mkdir(logs, 0700);
    cfg_service cfg = {.name = "self", .kind = CFG_EXEC};
    cfg.s.log_dir = logs;
    cfg.s.log_max_bytes = 4096;
    cfg.s.series_interval_ms = 1000;
    sup_ctx ctx = {0};
    pid_t worker = 0, leader = fake_server(f, &worker);
    sup_service svc = {.ctx = &ctx, .cfg = &cfg, .pid = leader};
    sup_series *ss = sup_series_new(&svc, 1);
    assert_non_null(ss);
    int64_t t = sup_now_ms(), began = t;
    assert_int_equal(sup_series_next_deadline(ss), 0); /* due at once */
    for (int k = 0; k < 40; k++, t += 1000) {
        sup_series_tick(ss, t);
        assert_int_equal(sup_series_next_deadline(ss), t + 1000);
        sup_series_tick(ss, t + 10); /* not due: nothing */
    }
    sup_series_free(ss);
    end_fake_server(f, leader);
    fprintf(stderr, "series: 40 samples of a process group in %lld ms\n",
            (long long)(sup_now_ms() - began));

    struct stat a, b;
    char p[192];
    snprintf(p, sizeof p, "%s/self.series", logs);
    assert_int_equal(stat(p, &a), 0);
    snprintf(p, sizeof p, "%s/self.series.1", logs);
    assert_int_equal(stat(p, &b), 0);
    assert_true(a.st_size <= 4096 && b.st_size <= 4096 && b.st_size > 3000);
    json_t *old = read_lines(f, "logs/self.series.1"), *cur = read_lines(f, "logs/self.series");
    size_t n = json_array_size(old) + json_array_size(cur);
    assert_true(json_array_size(old) >= 10 && n < 39);
    double last = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *o = i < json_array_size(old) ? json_array_get(old, i)
                                             : json_array_get(cur, i - json_array_size(old));
        assert_true(num(o, "t") >= last);
        last = num(o, "t");
        assert_int_equal((int)num(o, "dt_ms"), 1000);
        assert_true(num(o, "rss") > 0);
        assert_int_equal((int)num(o, "workers"), 1); /* the leader's child */
        /* No address: no call statistics. */
        assert_true(json_is_null(json_object_get(o, "calls")));
        assert_true(json_is_null(json_object_get(o, "calls_total")));
    }
    json_decref(old);
    json_decref(cur);
    snprintf(p, sizeof p, "%s/self.methods.json", logs);
    assert_int_equal(access(p, F_OK), -1);
}

/* In process, with simulated time: two services (both one process group, a leader and
 * its worker) with series_interval_s 1 and 3 are each sampled at their own interval, the
 * next deadline being the sooner of theirs; their worker is known, and forgotten when
 * the process is gone. */
static void series_interval_per_service(void **state)
{
    fixture *f = *state;
    char logs[128];
    snprintf(logs, sizeof logs, "%s/logs", f->dir);
    mkdir(logs, 0700);
    cfg_service cfg[2] = {{.name = "one", .kind = CFG_EXEC}, {.name = "three", .kind = CFG_EXEC}};
    sup_ctx ctx = {0};
    sup_service svc[2];
    pid_t worker = 0, leader = fake_server(f, &worker);
    for (int i = 0; i < 2; i++) {
        cfg[i].s.log_dir = logs;
        cfg[i].s.log_max_bytes = 1 << 20;
        cfg[i].s.series_interval_ms = i ? 3000 : 1000;
        svc[i] = (sup_service){.ctx = &ctx, .cfg = &cfg[i], .pid = leader};
    }
    sup_series *ss = sup_series_new(svc, 2);
    assert_non_null(ss);
    int64_t t0 = sup_now_ms();
    assert_int_equal(sup_series_next_deadline(ss), 0); /* baselines at once */
    for (int64_t t = t0; t < t0 + 30000; t = sup_series_next_deadline(ss)) {
        sup_series_tick(ss, t);
        int64_t next = sup_series_next_deadline(ss);
        assert_true(next == t + 1000); /* "one" is due every second */
    }
    const pid_t *pids;
    int n_pids, workers = sup_series_workers(ss, 1, &pids, &n_pids);
    end_fake_server(f, leader);
    assert_int_equal(workers, 1); /* the leader's child, not the leader */
    assert_int_equal(n_pids, 1);
    assert_int_equal(pids[0], worker);
    assert_true(ctx.changed);

    svc[1].pid = 0; /* "three" stopped: no workers, and only "one" is sampled */
    assert_true(sup_series_next_deadline(ss) <= t0 + 30000);
    sup_series_tick(ss, t0 + 30000);
    assert_int_equal(sup_series_workers(ss, 1, &pids, &n_pids), 0);
    assert_int_equal(n_pids, 0);
    assert_int_equal(sup_series_next_deadline(ss), t0 + 31000);
    sup_series_free(ss);

    json_t *one = read_lines(f, "logs/one.series"), *three = read_lines(f, "logs/three.series");
    assert_int_equal(json_array_size(one), 30);  /* 31 samples, the first a baseline */
    assert_int_equal(json_array_size(three), 9); /* at 3, 6, ... 27 s */
    size_t i;
    json_t *o;
    json_array_foreach(one, i, o) assert_int_equal((int)num(o, "dt_ms"), 1000);
    json_array_foreach(three, i, o) assert_int_equal((int)num(o, "dt_ms"), 3000);
    json_decref(one);
    json_decref(three);
}

/* A series file that cannot be opened (a folder in its place): said once in the
 * supervisor's log, with the path and the reason, however many samples come; the other
 * service's series goes on, a line a sample. */
static void series_unwritable_said_once(void **state)
{
    fixture *f = *state;
    char logs[128], blocked[160];
    snprintf(logs, sizeof logs, "%s/logs", f->dir);
    mkdir(logs, 0700);
    snprintf(blocked, sizeof blocked, "%s/one.series", logs);
    assert_int_equal(mkdir(blocked, 0700), 0);
    logged[0] = '\0';
    sup_ctx ctx = {0};
    cfg_service cfg[2] = {{.name = "one", .kind = CFG_EXEC}, {.name = "two", .kind = CFG_EXEC}};
    sup_service svc[2];
    pid_t worker = 0, leader = fake_server(f, &worker);
    for (int i = 0; i < 2; i++) {
        cfg[i].s.log_dir = logs;
        cfg[i].s.log_max_bytes = 1 << 20;
        cfg[i].s.series_interval_ms = 1000;
        svc[i] = (sup_service){.ctx = &ctx, .cfg = &cfg[i], .pid = leader};
    }
    sup_series *ss = sup_series_new(svc, 2);
    assert_non_null(ss);
    int64_t t0 = sup_now_ms();
    for (int64_t t = t0; t <= t0 + 5000; t = sup_series_next_deadline(ss))
        sup_series_tick(ss, t);
    end_fake_server(f, leader);
    sup_series_free(ss);
    const char *said = logged;
    char want[256];
    snprintf(want, sizeof want, "one: cannot open %s: ", blocked);
    const char *at = strstr(said, want);
    if (!at || !strstr(at, " (said once)\n")) fail_msg("%s", said);
    assert_null(strstr(at + 1, "one: cannot")); /* once */
    assert_null(strstr(said, "two: cannot"));
    json_t *two = read_lines(f, "logs/two.series");
    assert_int_equal(json_array_size(two), 5); /* 6 samples, the first a baseline */
    json_decref(two);
}

/* A series that a killed supervisor left with its last line cut short: that line is ended,
 * and each sample after it is a line of its own. A rotation that cannot rename (a folder
 * with a file in it where NAME.series.1 goes): said once, with the path and the reason,
 * and no sample is lost: they go on in NAME.series. */
static void series_torn_line_and_failed_rotation(void **state)
{
    fixture *f = *state;
    char logs[128], path[256];
    snprintf(logs, sizeof logs, "%s/logs", f->dir);
    mkdir(logs, 0700);
    snprintf(path, sizeof path, "%s/torn.series", logs);
    assert_int_equal(sup_write_file(path, "{\"t\":1,\"cut"), 0);
    char blocked[160];
    snprintf(blocked, sizeof blocked, "%s/stuck.series.1", logs);
    assert_int_equal(mkdir(blocked, 0700), 0);
    snprintf(path, sizeof path, "%s/keep", blocked);
    assert_int_equal(sup_write_file(path, "x"), 0);
    logged[0] = '\0';
    sup_ctx ctx = {0};
    cfg_service cfg[2] = {{.name = "torn", .kind = CFG_EXEC}, {.name = "stuck", .kind = CFG_EXEC}};
    sup_service svc[2];
    pid_t worker = 0, leader = fake_server(f, &worker);
    for (int i = 0; i < 2; i++) {
        cfg[i].s.log_dir = logs;
        cfg[i].s.log_max_bytes = i ? 4096 : 0; /* torn: none, bounded at 10 MiB */
        cfg[i].s.series_interval_ms = 1000;
        svc[i] = (sup_service){.ctx = &ctx, .cfg = &cfg[i], .pid = leader};
    }
    sup_series *ss = sup_series_new(svc, 2);
    assert_non_null(ss);
    int64_t t0 = sup_now_ms();
    for (int64_t t = t0; t < t0 + 40000; t = sup_series_next_deadline(ss))
        sup_series_tick(ss, t);
    end_fake_server(f, leader);
    sup_series_free(ss);

    const char *torn = sup_slurp(logs, "torn.series");
    assert_true(strncmp(torn, "{\"t\":1,\"cut\n{", 13) == 0);
    FILE *r = fopen(strcat(strcpy(path, logs), "/torn.series"), "r");
    assert_non_null(r);
    char line[4096];
    int lines = 0;
    while (fgets(line, sizeof line, r)) {
        assert_non_null(strchr(line, '\n'));
        if (lines++ == 0) continue; /* the cut one */
        json_t *o = json_loads(line, 0, NULL);
        if (!o) fail_msg("line %d is not JSON: %s", lines, line);
        assert_int_equal((int)num(o, "dt_ms"), 1000);
        json_decref(o);
    }
    fclose(r);
    assert_int_equal(lines, 1 + 39); /* 40 samples, the first a baseline */
    snprintf(path, sizeof path, "%s/torn.series.1", logs);
    assert_int_equal(access(path, F_OK), -1); /* far from 10 MiB: not rotated */

    char want[256];
    snprintf(want, sizeof want, "stuck: cannot rotate %s/stuck.series: %s (said once)\n", logs,
             strerror(EISDIR));
    const char *at = strstr(logged, want);
    if (!at) fail_msg("%s", logged);
    assert_null(strstr(at + 1, "stuck: cannot"));
    assert_null(strstr(logged, "torn: cannot"));
    json_t *stuck = read_lines(f, "logs/stuck.series");
    assert_int_equal(json_array_size(stuck), 39);
    json_decref(stuck);
    struct stat st;
    assert_int_equal(stat(blocked, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
}

/* The interval's percentiles come from the difference of two histograms, interpolated
 * within their bucket (the calls of a bucket taken as spread evenly over it). */
static void percentile_of_the_difference(void **state)
{
    (void)state;
    uint64_t prev[SHMRPC_STATS_BUCKETS] = {0}, cur[SHMRPC_STATS_BUCKETS] = {0};
    prev[0] = 1000; /* fast calls before the interval */
    cur[0] = 1000;
    cur[3] = 90; /* this interval: 90 in [4, 8) us, 10 in [0.5, 1) ms */
    cur[10] = 10;
    /* The 50th of 100 is the 50th of the 90 in [4096, 8192) ns. */
    assert_float_equal(sup_series_quantile(cur, prev, 0.5), 4096 + 4096 * 50.0 / 90, 1e-6);
    assert_float_equal(sup_series_quantile(cur, prev, 0.9), 8192, 1e-6);
    /* The 99th is the 9th of the 10 in [2^19, 2^20) ns. */
    assert_float_equal(sup_series_quantile(cur, prev, 0.99), 524288 + 524288 * 0.9, 1e-3);
    assert_float_equal(sup_series_quantile(prev, prev, 0.5), 0, 0); /* no calls */
    /* A bucket that went down (a new server's histogram) counts from zero; bucket 0 starts
     * at 0 ns. */
    uint64_t fresh[SHMRPC_STATS_BUCKETS] = {0};
    fresh[0] = 5;
    fresh[1] = 5;
    assert_float_equal(sup_series_quantile(fresh, cur, 0.5), 1024, 1e-6);
    assert_float_equal(sup_series_quantile(fresh, cur, 0.2), 1024 * 2.0 / 5, 1e-6);
    assert_float_equal(sup_series_quantile(fresh, cur, 0.99), 1024 + 1024 * 4.9 / 5, 1e-6);
}

/* Whose statistics segment obs_stats_read takes: one of a live server in the service's
 * group (fake_server's leader and its worker); not one of this test's process (another
 * group), of no pid, or of a server killed and reaped (a stale segment of a killed run). */
static void stats_owner_live(void **state)
{
    fixture *f = *state;
    pid_t worker = 0, leader = fake_server(f, &worker);
    assert_true(obs_proc_alive(leader, leader));
    assert_true(obs_proc_alive(worker, leader));
    assert_false(obs_proc_alive(getpid(), leader)); /* alive, but not the service's */
    assert_true(obs_proc_alive(getpid(), 0));       /* no group known: alive is enough */
    assert_false(obs_proc_alive(0, 0));
    assert_false(obs_proc_alive(-1, leader));
    end_fake_server(f, leader);
    assert_false(obs_proc_alive(leader, leader));
    assert_false(obs_proc_alive(leader, 0)); /* ESRCH */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(percentile_of_the_difference),
        cmocka_unit_test_setup_teardown(stats_owner_live, setup, teardown),
        cmocka_unit_test_setup_teardown(series_rotates_at_log_max_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(series_interval_per_service, setup, teardown),
        cmocka_unit_test_setup_teardown(series_unwritable_said_once, setup, teardown),
        cmocka_unit_test_setup_teardown(series_torn_line_and_failed_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(echo_series_counts_the_calls, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
