/* SPDX-License-Identifier: MIT */
/* The shmrpc-bench harness: runs each selected row of the case table in fresh processes,
 * bounds every wait (alarm() in the children, a deadline and SIGKILL in the parent),
 * reaps every child, and turns the samples into the row's figures. */
#include "harness.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <signal.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/version.h>

#include "usage.h"

#define NS_PER_S ((int64_t)1000000000)
/* How long the last client may take to start, and the slack past the window before the
 * watchdogs fire: generous, since a starved process on this machine can wait seconds. */
#define START_NS (10 * NS_PER_S)
#define GRACE_NS (15 * NS_PER_S)
#define SERVER_EXIT_NS (3 * NS_PER_S)
#define BUSY_PCT 10                     /* others' CPU use that makes a row suspect */
#define SAMPLE_BUDGET ((size_t)1 << 20) /* latency samples kept per row, over all clients */
#define BATCH_BUDGET ((size_t)1 << 16)  /* batches kept per row, over all clients */

void *bench_shared_alloc(size_t n)
{
    void *p =
        mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void bench_shared_free(void *p, size_t n)
{
    if (p) munmap(p, n);
}

void bench_row_id(const bench_case *c, char *out, size_t n)
{
    snprintf(out, n, "%s/%s/%zu/%dx%d", c->transport, c->name, c->payload, c->clients, c->workers);
}

/* --- processes --- */

static int spawn(bench_run *run, bench_role role, bench_child_fn fn, int idx, void *arg)
{
    if (run->nproc == BENCH_MAX_PROCS) {
        snprintf(run->err, sizeof run->err, "more than %d processes", BENCH_MAX_PROCS);
        return -1;
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(run->err, sizeof run->err, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* Dies with the parent (say, on ^C), and by itself past the row's deadline. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(3);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        alarm((unsigned)((run->warmup_ns + run->duration_ns + GRACE_NS) / NS_PER_S));
        if (run->c->pinned) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(0, &set);
            if (sched_setaffinity(0, sizeof set, &set) != 0) {
                perror("shmrpc-bench: sched_setaffinity");
                _exit(2);
            }
        }
        int rc = fn(run, idx, arg);
        _exit(rc == 0 ? 0 : 1); /* _exit: the parent's stdio buffers are not ours to flush */
    }
    run->pid[run->nproc] = pid;
    run->role[run->nproc] = role;
    run->exited[run->nproc] = false;
    run->nproc++;
    return 0;
}

int bench_spawn_server(bench_run *run, bench_child_fn fn, int idx, void *arg)
{
    return spawn(run, BENCH_SERVER, fn, idx, arg);
}

int bench_spawn_client(bench_run *run, bench_child_fn fn, int idx, void *arg)
{
    return spawn(run, BENCH_CLIENT, fn, idx, arg);
}

static const char *role_name(bench_role r)
{
    return r == BENCH_CLIENT ? "client" : "server";
}

/* Records how child i ended; a failure is remembered in run->err (the first one wins). */
static void note_exit(bench_run *run, int i, int status, bool *bad)
{
    run->exited[i] = true;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    if (!*bad) {
        if (WIFSIGNALED(status))
            snprintf(run->err, sizeof run->err, "%s %d killed by signal %d%s",
                     role_name(run->role[i]), (int)run->pid[i], WTERMSIG(status),
                     WTERMSIG(status) == SIGALRM ? " (watchdog)" : "");
        else
            snprintf(run->err, sizeof run->err, "%s %d exited with status %d",
                     role_name(run->role[i]), (int)run->pid[i], WEXITSTATUS(status));
    }
    *bad = true;
}

static bool all_exited(const bench_run *run, bool clients_only)
{
    for (int i = 0; i < run->nproc; i++)
        if (!run->exited[i] && (!clients_only || run->role[i] == BENCH_CLIENT)) return false;
    return true;
}

/* Reaps what has exited, else sleeps until a child exits or `until` passes (SIGCHLD is
 * blocked in the parent, so none is lost between the two). False once `until` passed. */
static bool reap_some(bench_run *run, int64_t until, bool *bad)
{
    int status;
    pid_t pid;
    bool any = false;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < run->nproc; i++)
            if (run->pid[i] == pid && !run->exited[i]) note_exit(run, i, status, bad);
        any = true;
    }
    if (any) return true;
    int64_t left = until - bench_now_ns();
    if (left <= 0) return false;
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    struct timespec ts = {(time_t)(left / NS_PER_S), (long)(left % NS_PER_S)};
    sigtimedwait(&chld, NULL, &ts); /* a child, the timeout or EINTR: look again */
    return true;
}

int bench_reap(bench_run *run, void (*stop)(void *arg), void *stop_arg)
{
    bool bad = run->err[0] != '\0';
    while (!bad && !all_exited(run, true))
        if (!reap_some(run, run->due_ns, &bad)) break;
    atomic_store(&run->sh->quit, 1);
    if (run->pair) { /* a pair's server asleep while the row's calls ran */
        atomic_store(run->pair->park, 0);
        syscall(SYS_futex, (uint32_t *)run->pair->park, FUTEX_WAKE, 1, NULL, NULL, 0);
    }
    if (stop) stop(stop_arg);
    int64_t until = bench_now_ns() + SERVER_EXIT_NS;
    if (until > run->due_ns) until = run->due_ns;
    while (!bad && !all_exited(run, false))
        if (!reap_some(run, until, &bad)) break;
    for (int i = 0; i < run->nproc; i++) {
        if (run->exited[i]) continue;
        kill(run->pid[i], SIGKILL);
        int status;
        while (waitpid(run->pid[i], &status, 0) < 0 && errno == EINTR)
            ;
        run->exited[i] = true;
        if (!bad)
            snprintf(run->err, sizeof run->err, "%s %d still running at the deadline",
                     role_name(run->role[i]), (int)run->pid[i]);
        bad = true;
    }
    return bad ? -1 : 0;
}

/* --- the client loop --- */

/* Calls from the first of the window that the interval [t0, t1] overlaps, of n calls
 * spread over it evenly. */
static double in_window(int64_t t0, int64_t t1, int64_t start, int64_t stop, uint64_t n)
{
    int64_t a = t0 > start ? t0 : start, b = t1 < stop ? t1 : stop;
    if (b <= a || t1 <= t0) return t0 >= start && t1 <= stop ? (double)n : 0;
    return (double)n * (double)(b - a) / (double)(t1 - t0);
}

#define BATCH_MAX 4096 /* calls in a batch, at most */

/* A pair's turn (bench_client_loop): after every TURN_EVERY_NS of the row's calls, the
 * pair's calls warm up for TURN_WARM_NS (longer than a worker spins before it sleeps, 100
 * us by default, so that the row's server has gone to sleep before the pair is timed),
 * then are timed for TURN_NS as one batch; the row's calls then warm up for TURN_WARM_NS
 * (its server wakes) before they count again. */
#define TURN_EVERY_NS ((int64_t)10000000)
#define TURN_WARM_NS ((int64_t)500000)
#define TURN_NS ((int64_t)2000000)

/* Calls fn for ns, `every` calls between two looks at the clock (at least that many); the
 * calls made, or -1 when one failed. */
static int64_t calls_for(bench_call_fn fn, void *arg, uint64_t *seq, int64_t ns, unsigned every,
                         int64_t *took)
{
    int64_t t0 = bench_now_ns(), t = t0, n = 0;
    do {
        for (unsigned i = 0; i < every; i++, n++)
            if (fn(arg, (*seq)++) != 0) return -1;
        t = bench_now_ns();
    } while (t - t0 < ns);
    if (took) *took = t - t0;
    return n;
}

/* The pair's turn: its server woken, its calls warmed up and timed, its server parked,
 * the row's calls warmed up again. Returns the pair's time per call, or -1 on failure. */
static double pair_turn(bench_pair *p, uint64_t *pseq, bench_call_fn call, void *arg, uint64_t *seq)
{
    int64_t took = 0;
    atomic_store(p->park, 0);
    syscall(SYS_futex, (uint32_t *)p->park, FUTEX_WAKE, 1, NULL, NULL, 0);
    /* Timed 64 calls to a clock read; the warm-ups look after every call, so that a
     * loaded machine, where a call can wait for a timeslice, does not stretch them. */
    int64_t n = calls_for(p->call, p->arg, pseq, TURN_WARM_NS, 1, NULL);
    if (n >= 0) n = calls_for(p->call, p->arg, pseq, TURN_NS, 64, &took);
    atomic_store(p->park, 1);
    if (n < 0 || calls_for(call, arg, seq, TURN_WARM_NS, 1, NULL) < 0) return -1;
    return (double)took / (double)n;
}

/* The pair's turn, recorded beside the row's time per call in its batches since the last
 * (row_ns over row_calls). 0, or -1 when a call failed. */
static int record_turn(bench_shared *sh, bench_pair *p, uint64_t *pseq, bench_call_fn call,
                       void *arg, uint64_t *seq, int64_t row_ns, double row_calls)
{
    double per_call = pair_turn(p, pseq, call, arg, seq);
    if (per_call < 0) return -1;
    if (sh->turns < BENCH_MAX_TURNS) {
        sh->turn_row[sh->turns] = (double)row_ns / row_calls;
        sh->turn_pair[sh->turns++] = per_call;
    }
    return 0;
}

int bench_client_loop(bench_run *run, int client, bench_call_fn call, void *arg)
{
    bench_shared *sh = run->sh;
    int64_t *lat = run->lat + (size_t)client * run->cap;
    double *bat = run->batch + (size_t)client * run->bcap;
    const uint64_t mask = run->cap - 1, bmask = run->bcap - 1;
    if (atomic_fetch_add(&sh->ready, 1) + 1 == run->c->clients) {
        int64_t start = bench_now_ns() + run->warmup_ns;
        atomic_store(&sh->stop_ns, start + run->duration_ns);
        atomic_store(&sh->start_ns, start);
    }
    int64_t give_up = bench_now_ns() + START_NS;
    int64_t start = 0, stop = INT64_MAX;
    uint64_t seq = 0, timed = 0, batches = 0;
    double calls = 0;
    /* Until the window is set (the other clients are starting), calls are timed one by
     * one and the start is looked for after each. */
    int64_t t0 = bench_now_ns();
    while (start == 0) {
        int rc = call(arg, seq++);
        if (rc != 0) goto failed;
        int64_t t1 = bench_now_ns();
        start = atomic_load(&sh->start_ns);
        if (start == 0 && t1 > give_up) {
            fprintf(stderr, "shmrpc-bench: the other clients did not start\n");
            return -1;
        }
        t0 = t1;
    }
    stop = atomic_load(&sh->stop_ns);
    /* Then runs of n calls timed one by one, and batches of n calls timed as one, in turn;
     * n follows the mean of the run before. Nothing shared is read in either loop. */
    uint64_t n = 1;
    bench_pair *pair = run->pair;
    uint64_t pseq = 0;
    int64_t turn_due = start + TURN_EVERY_NS, row_ns = 0;
    double row_calls = 0;
    for (;;) {
        if (pair && t0 >= turn_due && row_calls > 0) {
            if (record_turn(sh, pair, &pseq, call, arg, &seq, row_ns, row_calls) != 0) goto failed;
            int64_t t1 = bench_now_ns();
            /* The turn is not the row's time, up to the window's end. */
            sh->paired_ns += (t1 < stop ? t1 : stop) - t0;
            if (t1 >= stop) goto done;
            row_ns = 0;
            row_calls = 0;
            turn_due = t1 + TURN_EVERY_NS;
            t0 = t1;
        }
        int64_t r0 = t0;
        for (uint64_t k = 0; k < n; k++) {
            int rc = call(arg, seq++);
            if (rc != 0) goto failed;
            int64_t t1 = bench_now_ns();
            if (t1 >= stop) goto done;
            if (t1 >= start) {
                lat[timed++ & mask] = t1 - t0;
                calls++;
            }
            t0 = t1;
        }
        int64_t mean = (t0 - r0) / (int64_t)n;
        n = mean > 0 ? (uint64_t)(BENCH_BATCH_NS / mean) : BATCH_MAX;
        if (n < 1) n = 1;
        if (n > BATCH_MAX) n = BATCH_MAX;
        int64_t b0 = t0;
        for (uint64_t k = 0; k < n; k++) {
            int rc = call(arg, seq++);
            if (rc != 0) goto failed;
        }
        int64_t b1 = bench_now_ns();
        calls += in_window(b0, b1, start, stop, n);
        if (b0 >= start && b1 <= stop) {
            bat[batches++ & bmask] = (double)(b1 - b0) / (double)n;
            row_ns += b1 - b0;
            row_calls += (double)n;
        }
        if (b1 >= stop) break;
        t0 = b1;
    }
done:
    /* A row too slow to reach a turn in its window (a loaded machine) takes one after it,
     * so that its ratio to the pair is still one of the same moment. */
    if (pair && sh->turns == 0 && row_calls > 0 &&
        record_turn(sh, pair, &pseq, call, arg, &seq, row_ns, row_calls) != 0)
        goto failed;
    sh->calls[client] = (uint64_t)(calls + 0.5);
    sh->timed[client] = timed;
    sh->batches[client] = batches;
    return 0;
failed:
    fprintf(stderr, "shmrpc-bench: %s/%s client %d: call %" PRIu64 " failed\n", run->c->transport,
            run->c->name, client, seq - 1);
    return 1;
}

/* --- the machine --- */

typedef struct machine {
    long nproc;
    char cpu[128];
    char kernel[200];
    char load[64];
    double clock_ns; /* the cost of one clock read, included once in every sample */
} machine;

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
}

static void read_machine(machine *m)
{
    m->nproc = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(m->cpu, sizeof m->cpu, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(m->cpu, sizeof m->cpu, "%s", colon + 2);
            trim(m->cpu);
            break;
        }
    }
    if (f) fclose(f);
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(m->kernel, sizeof m->kernel, "%s %s %s", u.sysname, u.release, u.machine);
    else
        snprintf(m->kernel, sizeof m->kernel, "unknown");
    m->load[0] = '\0';
    f = fopen("/proc/loadavg", "r");
    if (f && fgets(m->load, sizeof m->load, f)) trim(m->load);
    if (f) fclose(f);
    enum { N = 200000 };
    int64_t t0 = bench_now_ns(), t = t0;
    for (int i = 0; i < N; i++)
        t = bench_now_ns();
    m->clock_ns = (double)(t - t0) / N;
}

/* What the machine did besides this row, from /proc/stat (jiffies over all CPUs) and
 * our own rusage: other processes' CPU time and the hypervisor's steal show the noise. */
typedef struct cpu_times {
    uint64_t total, idle, steal;
    double ours_s; /* this process and its reaped children, user + system */
} cpu_times;

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void read_cpu_times(cpu_times *t)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                    &v[4], &v[5], &v[6], &v[7]) == 8) {
        for (int i = 0; i < 8; i++)
            t->total += v[i];
        t->idle = v[3] + v[4];
        t->steal = v[7];
    }
    if (f) fclose(f);
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    t->ours_s =
        tv_s(self.ru_utime) + tv_s(self.ru_stime) + tv_s(kids.ru_utime) + tv_s(kids.ru_stime);
}

static void noise(const cpu_times *a, const cpu_times *b, double *others_pct, double *steal_pct)
{
    *others_pct = *steal_pct = 0;
    if (b->total <= a->total) return;
    double total = (double)(b->total - a->total);
    double busy = total - (double)(b->idle - a->idle) - (double)(b->steal - a->steal);
    double ours = (b->ours_s - a->ours_s) * (double)sysconf(_SC_CLK_TCK);
    *others_pct = busy > ours ? 100.0 * (busy - ours) / total : 0;
    *steal_pct = 100.0 * (double)(b->steal - a->steal) / total;
}

/* --- figures --- */

typedef struct row_result {
    bool ran, ok;
    char err[160];
    int64_t p50, p99, p999;
    double mean;
    double batch_ns; /* the median over batches of the time per call in a batch */
    uint64_t batches;
    uint64_t samples, calls, calls_min, calls_max;
    double calls_per_s, fairness, others_pct, steal_pct;
    uint32_t turns;      /* with a pair: the turns taken */
    double turn_ratio;   /* the median over them of the row's time per call over the pair's */
    double turn_pair_ns; /* the median of the pair's time per call */
} row_result;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of the batches of every client. */
static void batch_figure(const bench_run *run, row_result *r)
{
    size_t n = 0;
    for (int c = 0; c < run->c->clients; c++) {
        uint64_t k = run->sh->batches[c];
        n += k < run->bcap ? k : run->bcap;
    }
    r->batches = n;
    r->batch_ns = 0;
    double *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return;
    size_t k = 0;
    for (int c = 0; c < run->c->clients; c++) {
        uint64_t b = run->sh->batches[c];
        size_t m = b < run->bcap ? b : run->bcap;
        memcpy(v + k, run->batch + (size_t)c * run->bcap, m * sizeof *v);
        k += m;
    }
    qsort(v, k, sizeof *v, cmp_double);
    r->batch_ns = k ? v[k / 2] : 0;
    free(v);
}

/* The medians of the turns of a row with a pair. */
static void turn_figures(const bench_run *run, row_result *r)
{
    uint32_t n = run->sh->turns < BENCH_MAX_TURNS ? run->sh->turns : BENCH_MAX_TURNS;
    double ratios[BENCH_MAX_TURNS], pair[BENCH_MAX_TURNS];
    for (uint32_t i = 0; i < n; i++) {
        ratios[i] = run->sh->turn_row[i] / run->sh->turn_pair[i];
        pair[i] = run->sh->turn_pair[i];
    }
    qsort(ratios, n, sizeof *ratios, cmp_double);
    qsort(pair, n, sizeof *pair, cmp_double);
    r->turns = n;
    r->turn_ratio = n ? ratios[n / 2] : 0;
    r->turn_pair_ns = n ? pair[n / 2] : 0;
}

static int64_t pct(const int64_t *v, size_t n, double q)
{
    size_t i = (size_t)(q * (double)n);
    return n == 0 ? 0 : v[i < n ? i : n - 1];
}

static void figures(const bench_run *run, row_result *r)
{
    int clients = run->c->clients;
    size_t n = 0;
    r->calls = 0;
    r->calls_min = UINT64_MAX;
    r->calls_max = 0;
    for (int c = 0; c < clients; c++) {
        uint64_t k = run->sh->calls[c];
        r->calls += k;
        if (k < r->calls_min) r->calls_min = k;
        if (k > r->calls_max) r->calls_max = k;
        uint64_t t = run->sh->timed[c];
        n += t < run->cap ? t : run->cap;
    }
    int64_t *v = malloc((n ? n : 1) * sizeof *v);
    size_t k = 0;
    double sum = 0;
    for (int c = 0; c < clients && v; c++) {
        uint64_t timed = run->sh->timed[c];
        size_t m = timed < run->cap ? timed : run->cap;
        memcpy(v + k, run->lat + (size_t)c * run->cap, m * sizeof *v);
        k += m;
    }
    if (v) {
        for (size_t i = 0; i < k; i++)
            sum += (double)v[i];
        qsort(v, k, sizeof *v, cmp_i64);
    }
    r->samples = k;
    r->p50 = v ? pct(v, k, 0.50) : 0;
    r->p99 = v ? pct(v, k, 0.99) : 0;
    r->p999 = v ? pct(v, k, 0.999) : 0;
    r->mean = k ? sum / (double)k : 0;
    free(v);
    /* The pair's turns are not the row's time. */
    r->calls_per_s =
        (double)r->calls * (double)NS_PER_S / (double)(run->duration_ns - run->sh->paired_ns);
    r->fairness = r->calls_max ? (double)r->calls_min / (double)r->calls_max : 0;
    batch_figure(run, r);
    turn_figures(run, r);
}

static int run_row(const bench_case *c, int64_t warmup_ns, int64_t duration_ns, row_result *r)
{
    memset(r, 0, sizeof *r);
    r->ran = true;
    bench_run *run = calloc(1, sizeof *run);
    if (!run) {
        snprintf(r->err, sizeof r->err, "out of memory");
        return -1;
    }
    run->c = c;
    run->warmup_ns = warmup_ns;
    run->duration_ns = duration_ns;
    size_t clients_pow2 = 1;
    while (clients_pow2 < (size_t)c->clients)
        clients_pow2 *= 2;
    run->cap = SAMPLE_BUDGET / clients_pow2;
    size_t lat_bytes = (size_t)c->clients * run->cap * sizeof(int64_t);
    run->bcap = BATCH_BUDGET / clients_pow2;
    size_t batch_bytes = (size_t)c->clients * run->bcap * sizeof(double);
    run->sh = bench_shared_alloc(sizeof *run->sh);
    run->lat = bench_shared_alloc(lat_bytes);
    run->batch = bench_shared_alloc(batch_bytes);
    int rc = -1;
    if (!run->sh || !run->lat || !run->batch) {
        snprintf(r->err, sizeof r->err, "mmap: %s", strerror(errno));
    } else {
        cpu_times t0, t1;
        read_cpu_times(&t0);
        run->due_ns = bench_now_ns() + warmup_ns + duration_ns + GRACE_NS;
        run->pair = c->pair ? c->pair(run) : NULL;
        if (c->pair && !run->pair) {
            bench_reap(run, NULL, NULL); /* whatever it started */
            rc = -1;
        } else {
            rc = c->run(run);
            /* A case that failed before it reaped leaves the pair's server. */
            if (!all_exited(run, false)) bench_reap(run, NULL, NULL);
        }
        read_cpu_times(&t1);
        noise(&t0, &t1, &r->others_pct, &r->steal_pct);
        if (rc == 0) {
            figures(run, r);
        } else {
            snprintf(r->err, sizeof r->err, "%s", run->err[0] ? run->err : "failed");
            rc = -1;
        }
    }
    r->ok = rc == 0;
    if (run->pair) bench_shared_free(run->pair->mem, run->pair->len);
    bench_shared_free(run->lat, lat_bytes);
    bench_shared_free(run->batch, batch_bytes);
    bench_shared_free(run->sh, sizeof *run->sh);
    free(run);
    return rc;
}

/* --- output --- */

static void json_str(const char *key, const char *s)
{
    printf(",\"%s\":\"", key);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static int find_row(const bench_case *table, size_t n, const char *id)
{
    char buf[160];
    for (size_t i = 0; i < n; i++) {
        bench_row_id(&table[i], buf, sizeof buf);
        if (strcmp(buf, id) == 0) return (int)i;
    }
    return -1;
}

/* The ratio of row i to its reference, or a negative number when there is none. */
static double ratio(const bench_vs *vs, const row_result *me, const row_result *ref)
{
    if (!me->ok) return -1;
    /* Measured in the row's own processes: the reference row only names the pair. */
    if (vs->metric == BENCH_TURNS) return me->turns ? me->turn_ratio : -1;
    if (!ref->ok) return -1;
    if (vs->metric == BENCH_P50) return ref->p50 > 0 ? (double)me->p50 / (double)ref->p50 : -1;
    if (vs->metric == BENCH_BATCH)
        return ref->batch_ns > 0 && me->batch_ns > 0 ? me->batch_ns / ref->batch_ns : -1;
    return ref->calls_per_s > 0 ? me->calls_per_s / ref->calls_per_s : -1;
}

static void print_json(const bench_case *table, size_t n, size_t i, const row_result *res,
                       const machine *m, int64_t duration_ns)
{
    const bench_case *c = &table[i];
    const row_result *r = &res[i];
    char id[160];
    bench_row_id(c, id, sizeof id);
    printf("{\"case\":\"%s\",\"transport\":\"%s\"", c->name, c->transport);
    json_str("id", id);
    printf(",\"payload_bytes\":%zu,\"clients\":%d,\"workers\":%d,\"pinned\":%s", c->payload,
           c->clients, c->workers, c->pinned ? "true" : "false");
    if (!r->ok) {
        json_str("error", r->err);
    } else {
        printf(",\"p50_ns\":%" PRId64 ",\"p99_ns\":%" PRId64 ",\"p999_ns\":%" PRId64
               ",\"mean_ns\":%.1f,\"batch_ns\":%.1f,\"batches\":%" PRIu64
               ",\"calls_per_s\":%.1f,\"fairness\":%.3f,\"calls\":%" PRIu64
               ",\"calls_min\":%" PRIu64 ",\"calls_max\":%" PRIu64 ",\"samples\":%" PRIu64,
               r->p50, r->p99, r->p999, r->mean, r->batch_ns, r->batches, r->calls_per_s,
               r->fairness, r->calls, r->calls_min, r->calls_max, r->samples);
        if (r->turns)
            printf(",\"turns\":%" PRIu32 ",\"turn_pair_ns\":%.1f", r->turns, r->turn_pair_ns);
        for (int k = 0; k < BENCH_MAX_VS && c->vs[k].key; k++) {
            int j = find_row(table, n, c->vs[k].ref);
            double x = j >= 0 ? ratio(&c->vs[k], r, &res[j]) : -1;
            if (x >= 0) printf(",\"%s\":%.4g", c->vs[k].key, x);
        }
    }
    printf(",\"window_s\":%.3f,\"others_cpu_pct\":%.1f,\"steal_pct\":%.1f,\"nproc\":%ld",
           (double)duration_ns / 1e9, r->others_pct, r->steal_pct, m->nproc);
    json_str("cpu", m->cpu);
    json_str("kernel", m->kernel);
    printf("}\n");
}

static void print_header(const machine *m, int64_t warmup_ns, int64_t duration_ns)
{
    printf("machine: %ld CPUs, %s, %s; load average %s\n", m->nproc, m->cpu, m->kernel, m->load);
    printf("each row: fresh processes, %.2f s warm-up, then a %.2f s window; p50 and p99: each "
           "call timed alone, with one clock read (%.0f ns); batch: calls timed %.0f us at a "
           "time between two clock reads (median of the batches' time per call); a ratio \"in "
           "turns\": its reference timed in the row's own processes, in turns with the row's "
           "calls every %.0f ms (the median of the turns' ratios)\n",
           (double)warmup_ns / 1e9, (double)duration_ns / 1e9, m->clock_ns,
           (double)BENCH_BATCH_NS / 1e3, (double)TURN_EVERY_NS / 1e6);
    printf("%-17s %-9s %6s %3s %3s %3s %9s %9s %9s %11s %5s %6s %6s  %s\n", "case", "transport",
           "bytes", "cl", "wk", "pin", "p50 us", "p99 us", "batch us", "calls/s", "fair", "other%",
           "steal%",
           "vs (p50 ratio, calls/s ratio, or batch ratio: limit, in turns where it says so)");
}

static void print_row(const bench_case *table, size_t n, size_t i, const row_result *res)
{
    const bench_case *c = &table[i];
    const row_result *r = &res[i];
    printf("%-17s %-9s %6zu %3d %3d %3s", c->name, c->transport, c->payload, c->clients, c->workers,
           c->pinned ? "0" : "-");
    if (!r->ok) {
        printf("  FAILED: %s\n", r->err);
        return;
    }
    printf(" %9.3f %9.3f %9.3f %11.0f %5.2f %6.1f %6.1f ", (double)r->p50 / 1e3,
           (double)r->p99 / 1e3, r->batch_ns / 1e3, r->calls_per_s, r->fairness, r->others_pct,
           r->steal_pct);
    for (int k = 0; k < BENCH_MAX_VS && c->vs[k].key; k++) {
        int j = find_row(table, n, c->vs[k].ref);
        double x = j >= 0 ? ratio(&c->vs[k], r, &res[j]) : -1;
        const char *label = c->vs[k].key;
        if (strncmp(label, "ratio_to_", 9) == 0) label += 9;
        if (x >= 0) printf(" %s %.3gx", label, x);
        if (x >= 0 && c->vs[k].metric == BENCH_TURNS)
            printf(" (in turns: %.3f us)", r->turn_pair_ns / 1e3);
    }
    putchar('\n');
}

/* --- main --- */

static void usage(FILE *f)
{
    fputs("usage: shmrpc-bench [--json] [--quick] [--duration SECONDS] [--case NAME]... "
          "[--list]\n"
          "       shmrpc-bench --help | --version\n"
          "  --json      one JSON object per row\n"
          "  --quick     short windows (a smoke test, not a measurement)\n"
          "  --case NAME only the rows whose case, transport, transport/case or id is NAME\n"
          "              (and the rows they compare with); may be repeated\n"
          "  --list      print the rows and their ids\n",
          f);
}

static bool matches(const bench_case *c, const char *want)
{
    char buf[160];
    if (strcmp(c->name, want) == 0 || strcmp(c->transport, want) == 0) return true;
    snprintf(buf, sizeof buf, "%s/%s", c->transport, c->name);
    if (strcmp(buf, want) == 0) return true;
    bench_row_id(c, buf, sizeof buf);
    return strcmp(buf, want) == 0;
}

/* The table's own mistakes are reported before anything runs. */
static int check_table(const bench_case *table, size_t n)
{
    char id[160];
    for (size_t i = 0; i < n; i++) {
        const bench_case *c = &table[i];
        bench_row_id(c, id, sizeof id);
        if (find_row(table, n, id) != (int)i) {
            fprintf(stderr, "shmrpc-bench: two rows have the id %s\n", id);
            return -1;
        }
        if (c->pair && c->clients != 1) {
            fprintf(stderr, "shmrpc-bench: row %s has a pair and more than one client\n", id);
            return -1;
        }
        if (c->clients < 1 || c->clients > BENCH_MAX_CLIENTS || c->workers < 1 ||
            c->clients + c->workers > BENCH_MAX_PROCS || !c->run) {
            fprintf(stderr, "shmrpc-bench: row %s is malformed\n", id);
            return -1;
        }
        for (int k = 0; k < BENCH_MAX_VS && c->vs[k].key; k++) {
            if (c->vs[k].metric == BENCH_TURNS && !c->pair) {
                fprintf(stderr, "shmrpc-bench: row %s takes turns without a pair\n", id);
                return -1;
            }
            int j = find_row(table, n, c->vs[k].ref);
            if (j < 0 || j >= (int)i) {
                fprintf(stderr, "shmrpc-bench: row %s compares with %s, not an earlier row\n", id,
                        c->vs[k].ref);
                return -1;
            }
        }
    }
    return 0;
}

int bench_main(int argc, char **argv, const bench_case *table, size_t n)
{
    bool json = false, quick = false, list = false;
    double duration_s = 0;
    const char *want[32];
    int nwant = 0;
    enum { OPT_JSON = 256, OPT_QUICK, OPT_LIST, OPT_CASE, OPT_DURATION };
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"quick", no_argument, NULL, OPT_QUICK},
        {"list", no_argument, NULL, OPT_LIST},
        {"case", required_argument, NULL, OPT_CASE},
        {"duration", required_argument, NULL, OPT_DURATION},
        SHMRPC__OPTS_HELP_VERSION,
        {NULL, 0, NULL, 0},
    };
    /* ':' first: getopt_long says nothing itself (shmrpc__opt_default does, on one line). */
    for (int opt; (opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1;) {
        switch (opt) {
        case OPT_JSON:
            json = true;
            break;
        case OPT_QUICK:
            quick = true;
            break;
        case OPT_LIST:
            list = true;
            break;
        case OPT_CASE:
            if (nwant == 32) {
                fputs("shmrpc-bench: at most 32 --case\n", stderr);
                return 2;
            }
            want[nwant++] = optarg;
            break;
        case OPT_DURATION:
            duration_s = atof(optarg);
            if (duration_s <= 0 || duration_s > 60) {
                fputs("shmrpc-bench: --duration takes 0 to 60 seconds\n", stderr);
                return 2;
            }
            break;
        default:
            return shmrpc__opt_default(opt, argv, "shmrpc-bench", SHMRPC_VERSION_STRING, usage);
        }
    }
    if (optind < argc) return shmrpc__usage_by(false, usage);
    if (check_table(table, n) != 0) return 2;
    if (list) {
        char id[160];
        for (size_t i = 0; i < n; i++) {
            bench_row_id(&table[i], id, sizeof id);
            printf("%-28s %s\n", id, table[i].note ? table[i].note : "");
        }
        return 0;
    }

    bool *run = calloc(n, sizeof *run);
    row_result *res = calloc(n, sizeof *res);
    if (!run || !res) {
        fputs("shmrpc-bench: out of memory\n", stderr);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < nwant; k++)
            if (matches(&table[i], want[k])) run[i] = true;
    bool any = false;
    for (size_t i = n; i-- > 0;) { /* later rows name earlier ones: one pass backwards */
        if (nwant == 0) run[i] = true;
        if (!run[i]) continue;
        any = true;
        for (int k = 0; k < BENCH_MAX_VS && table[i].vs[k].key; k++)
            run[find_row(table, n, table[i].vs[k].ref)] = true;
    }
    if (!any) {
        fprintf(stderr, "shmrpc-bench: no row matches; --list shows them\n");
        free(run);
        free(res);
        return 2;
    }

    /* SIGCHLD stays blocked so that bench_reap can sleep in sigtimedwait until a child
     * exits; children unblock it. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);

    int64_t warmup_ns = quick ? 30000000 : 100000000;
    int64_t duration_ns = quick ? 200000000 : NS_PER_S;
    if (duration_s > 0) duration_ns = (int64_t)(duration_s * 1e9);
    machine m;
    read_machine(&m);
    if (!json) print_header(&m, warmup_ns, duration_ns);
    fflush(stdout);
    int failed = 0, busy = 0, rows = 0;
    for (size_t i = 0; i < n; i++) {
        if (!run[i]) continue;
        rows++;
        if (run_row(&table[i], warmup_ns, duration_ns, &res[i]) != 0) failed++;
        if (res[i].others_pct > BUSY_PCT) busy++;
        if (json)
            print_json(table, n, i, res, &m, duration_ns);
        else
            print_row(table, n, i, res);
        fflush(stdout);
    }
    if (busy)
        fprintf(json ? stderr : stdout,
                "note: other processes used more than %d%% of the CPUs during %d of %d rows "
                "(other%%): those figures show a busy machine, not its limits\n",
                BUSY_PCT, busy, rows);
    free(run);
    free(res);
    if (failed) fprintf(stderr, "shmrpc-bench: %d row(s) failed\n", failed);
    return failed ? 1 : 0;
}
