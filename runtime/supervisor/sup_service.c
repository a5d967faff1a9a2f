/* SPDX-License-Identifier: MIT */
/* One service's process (an exec= program, or a module= service's manager:
 * sup_module.c): started in its own process group with its output on a pipe the
 * supervisor drains into its log, checked until it answers, restarted with backoff when
 * it exits on its own, marked failed when it crashes in a loop. */
#include "sup_service.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmrpc/client.h>
#include <shmrpc/status.h>
#include <shmrpc/tcp.h>

#include "obs_proc.h"
#include "sup_module.h"
#include "sup_scaler.h"

/* How often a starting service is asked whether it answers. */
#define PROBE_EVERY_MS 50
/* How long one check may take over TCP (shm:// answers or refuses at once). */
#define PROBE_TIMEOUT_MS 1000
/* sup_service_drain calls (256 KiB each) after a process ended: 1 MiB, the most an
 * unprivileged process can make a pipe hold (/proc/sys/fs/pipe-max-size). */
#define DRAIN_REST_CALLS 4

static void set_state(sup_service *s, sup_state st)
{
    if (s->state == st) return;
    s->state = st;
    s->ctx->changed = true;
}

int sup_service_init(sup_service *s, sup_ctx *ctx, const cfg_service *cfg, const char *cwd)
{
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->cfg = cfg;
    s->cwd = cwd;
    s->out_r = s->out_w = -1;
    s->log.fd = -1; /* sup_service_destroy may run before the log is opened */
    s->restart_times = calloc((size_t)cfg->s.crash_loop_restarts, sizeof *s->restart_times);
    if (!s->restart_times) return SHMRPC_ENOMEM;
    /* Only the supervisor's end is non-blocking: a service writing into a full pipe waits
     * for the supervisor to drain it rather than losing what it wrote (EAGAIN). */
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return SHMRPC_ESYS(errno);
    s->out_r = p[0];
    s->out_w = p[1];
    int fl = fcntl(s->out_r, F_GETFL);
    if (fl < 0 || fcntl(s->out_r, F_SETFL, fl | O_NONBLOCK) != 0) return SHMRPC_ESYS(errno);
    char name[80];
    snprintf(name, sizeof name, "%s.log", cfg->name);
    int rc =
        sup_log_open(&s->log, cfg->s.log_dir, name, cfg->s.log_max_bytes, cfg->s.log_keep, true);
    if (rc == 0 && cfg->kind == CFG_MODULE) rc = sup_module_init(s);
    /* A module= service is scaled; an exec= one when its program follows a count. */
    if (rc == 0) rc = sup_scaler_new(s);
    return rc;
}

void sup_service_destroy(sup_service *s)
{
    if (s->out_r >= 0) close(s->out_r);
    if (s->out_w >= 0) close(s->out_w);
    sup_log_close(&s->log);
    sup_scaler_free(s);
    if (s->module) sup_module_destroy(s);
    free(s->restart_times);
    s->out_r = s->out_w = -1;
    s->restart_times = NULL;
}

bool sup_service_waits(const sup_service *s)
{
    return s->cfg->s.wait_until_completed && (s->cfg->shm_name || s->cfg->tcp_port);
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child(const sup_service *s, pid_t parent)
{
    setpgid(0, 0);
    /* Should the supervisor die without stopping it, it is asked to stop too. This reaches
     * this process only, not others of its group: stopping those is its own business. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* the supervisor blocks SIGTERM and SIGINT */
    signal(SIGPIPE, SIG_DFL);              /* and ignores SIGPIPE; exec keeps SIG_IGN */
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0 && null != 0) {
        dup2(null, 0);
        close(null);
    }
    dup2(s->out_w, 1);
    dup2(s->out_w, 2);
    if (chdir(s->cwd) != 0) {
        static const char m[] = "shmrpc-service: cannot enter the service.ini's folder\n";
        ssize_t k = write(2, m, sizeof m - 1);
        (void)k;
        _exit(127);
    }
    if (s->module)
        sup_module_exec(s); /* shmrpc-service --module-host ...: the manager */
    else
        execv(s->cfg->program, s->cfg->argv);
    static const char m[] = "shmrpc-service: exec failed: ";
    const char *why = strerror(errno); /* not async-signal-safe in theory; glibc's is */
    ssize_t k = write(2, m, sizeof m - 1);
    k = write(2, why, strlen(why));
    k = write(2, "\n", 1);
    (void)k;
    _exit(127);
}

static void crashed(sup_service *s, int64_t now, const char *what);

void sup_service_start(sup_service *s, int64_t now)
{
    /* A module's manager starts with min_proc_num workers (or an operator's count). */
    if (s->module)
        sup_module_set_start_workers(s, sup_scaler_starting(s, now));
    else if (s->scaler)
        sup_scaler_starting(s, now);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) child(s, parent);
    if (pid < 0) {
        crashed(s, now, "could not be started (fork failed)");
        return;
    }
    setpgid(pid, pid); /* also here, so that a signal to the group cannot race the child */
    s->pid = pid;
    s->started_mono = now;
    s->started_unix = sup_unix_ms();
    sup_logf(s->ctx, "%s: started %s as pid %d", s->cfg->name,
             s->module ? s->cfg->module : s->cfg->program, (int)pid);
    if (sup_service_waits(s)) {
        s->ready_by = now + s->cfg->s.startup_timeout_ms;
        s->next_probe = now;
        set_state(s, SUP_STARTING);
    } else {
        set_state(s, SUP_RUNNING);
    }
    s->ctx->changed = true;
}

/* Where it answers: its shm_name, else its tcp_port on loopback. */
static void address(const sup_service *s, char *out, size_t cap)
{
    if (s->cfg->shm_name)
        snprintf(out, cap, "shm://%s", s->cfg->shm_name);
    else
        snprintf(out, cap, "tcp://127.0.0.1:%d", s->cfg->tcp_port);
}

/* Does addr answer? A client with an empty method table connects to anything that
 * serves the address, so this checks that the server is there and takes connections
 * without knowing its .svc. TCP clients prove the secret of secret_file (NULL: none), and
 * speak TLS to a service with a certificate (set, the settings of the service; NULL for
 * shm://): the probe does not check the certificate of its own child, and with mutual
 * TLS shows the service's own certificate as its client's (docs/service-ini.md). */
static bool answers_at(const char *addr, const char *secret_file, const cfg_settings *set)
{
    static const shmrpc_service_info probe = {
        .magic = SHMRPC_SERVICE_MAGIC,
        .version = SHMRPC_DESCRIPTOR_VERSION,
        .name = "shmrpc-service-probe",
    };
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.connect_timeout_ms = PROBE_TIMEOUT_MS;
    if (set && set->tls_cert_file) {
        o.tcp.tls = SHMRPC_TLS_ON;
        o.tcp.tls_verify = SHMRPC_TLS_VERIFY_OFF;
        if (set->tls_ca_file) {
            o.tcp.tls_cert = set->tls_cert_file;
            o.tcp.tls_key = set->tls_key_file;
        }
    }
    unsigned char secret[SHMRPC_SECRET_MAX];
    if (secret_file) {
        /* Why it fails, the manager says in the service's log. */
        int e = shmrpc_secret_load(secret_file, secret, sizeof secret, &o.tcp.secret_len);
        if (e) return false;
        o.tcp.secret = secret;
    }
    shmrpc_client *c = NULL;
    int rc = shmrpc_client_new(&c, &probe, &o); /* the secret is copied */
    explicit_bzero(secret, sizeof secret);
    if (rc == 0) rc = shmrpc_client_connect(c, addr);
    shmrpc_client_free(c);
    return rc == 0;
}

/* Does it answer at every address it serves? A module service's manager serves a TCP
 * address besides its shm:// one. */
static bool answers(const sup_service *s)
{
    char addr[96];
    address(s, addr, sizeof addr);
    if (!answers_at(addr, NULL, NULL)) return false;
    const char *tcp = sup_module_tcp(s);
    return !tcp || answers_at(tcp, s->cfg->s.secret_file, &s->cfg->s);
}

static void describe(int status, char *out, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(out, cap, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, cap, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(out, cap, "ended (wait status 0x%x)", (unsigned)status);
}

/* It stopped when no one asked it to: restart it after a backoff, or mark it failed if
 * it has been restarted crash_loop_restarts times within crash_loop_window_s. */
static void crashed(sup_service *s, int64_t now, const char *what)
{
    const cfg_settings *cs = &s->cfg->s;
    snprintf(s->last_exit, sizeof s->last_exit, "%s", what);
    if (s->ctx->draining) {
        sup_logf(s->ctx, SUP_WARNING "%s: %s while stopping everything: not restarted",
                 s->cfg->name, what);
        set_state(s, SUP_STOPPED);
        return;
    }
    int recent = 0;
    for (int i = 0; i < cs->crash_loop_restarts; i++)
        if (s->restart_times[i] && now - s->restart_times[i] < cs->crash_loop_window_ms) recent++;
    if (recent >= cs->crash_loop_restarts) {
        sup_logf(s->ctx,
                 SUP_ERR "%s: %s; restarted %d times within %llds: marked failed, not restarted",
                 s->cfg->name, what, recent, (long long)(cs->crash_loop_window_ms / 1000));
        snprintf(s->last_exit, sizeof s->last_exit, "%s; restarted %d times within %llds: failed",
                 what, recent, (long long)(cs->crash_loop_window_ms / 1000));
        set_state(s, SUP_FAILED);
        return;
    }
    /* A process that ran a whole window without crashing starts the backoff afresh. */
    if (s->started_mono && now - s->started_mono >= cs->crash_loop_window_ms) s->in_a_row = 0;
    int64_t delay = cs->restart_backoff_ms;
    for (int i = 0; i < s->in_a_row && delay < cs->restart_backoff_max_ms; i++)
        delay *= 2;
    if (delay > cs->restart_backoff_max_ms) delay = cs->restart_backoff_max_ms;
    s->in_a_row++;
    s->restart_at = now + delay;
    sup_logf(s->ctx, SUP_WARNING "%s: %s; restarting in %lld ms", s->cfg->name, what,
             (long long)delay);
    set_state(s, SUP_BACKOFF);
}

void sup_service_reaped(sup_service *s, int64_t now)
{
    pid_t r = s->pid;
    /* Whatever it left in its group (workers of a killed server) goes with it, so that a
     * restart finds no one holding its name or port. Its zombie, not reaped yet, keeps the
     * group's id from being reused meanwhile. */
    if (s->state == SUP_STOPPING && !s->killed[0]) {
        size_t left = 0; /* its leader ended, others of its group did not: said */
        obs_proc *procs = NULL;
        if (obs_groups_scan(&r, 1, &procs, &left) == 0 && left > 0)
            snprintf(s->killed, sizeof s->killed,
                     "%zu process%s of its group left running: SIGKILL", left,
                     left == 1 ? "" : "es");
        free(procs);
    }
    kill(-r, SIGKILL);
    int status = 0;
    while (waitpid(r, &status, 0) < 0 && errno == EINTR)
        ;
    sup_service_drain_rest(s); /* what it wrote before it died */
    char what[128];
    describe(status, what, sizeof what);
    s->pid = 0;
    s->started_unix = 0;
    s->ctx->changed = true;
    char msg[sizeof s->last_exit];
    snprintf(msg, sizeof msg, "pid %d %s", (int)(r), what);
    if (s->state == SUP_STOPPING) {
        if (s->killed[0]) {
            sup_logf(s->ctx, SUP_WARNING "%s: %s", s->cfg->name, s->killed);
            snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "; %s", s->killed);
        }
        sup_logf(s->ctx, "%s: stopped (it %s)", s->cfg->name, what);
        if (s->after_stop != SUP_FAILED) snprintf(s->last_exit, sizeof s->last_exit, "%s", msg);
        set_state(s, s->after_stop);
        if (s->start_after_stop) {
            s->start_after_stop = false;
            if (!s->ctx->draining) sup_service_operator_start(s, now);
        }
        return;
    }
    crashed(s, now, msg);
}

bool sup_service_drain(sup_service *s)
{
    char buf[16384];
    bool any = false;
    for (int i = 0; i < 16; i++) { /* a bounded share, so one chatty service cannot starve */
        ssize_t n = read(s->out_r, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        sup_log_write(&s->log, buf, (size_t)n);
        any = true;
    }
    return any;
}

void sup_service_drain_rest(sup_service *s)
{
    for (int i = 0; i < DRAIN_REST_CALLS && sup_service_drain(s); i++)
        ;
}

static void record_restart(sup_service *s, int64_t now)
{
    int oldest = 0;
    for (int i = 1; i < s->cfg->s.crash_loop_restarts; i++)
        if (s->restart_times[i] < s->restart_times[oldest]) oldest = i;
    s->restart_times[oldest] = now;
    s->restarts++;
}

void sup_service_tick(sup_service *s, int64_t now)
{
    if (s->scaler) sup_scaler_tick(s, now); /* a module's workers: CPU, memory, count */
    switch (s->state) {
    case SUP_BACKOFF:
        if (now >= s->restart_at) {
            record_restart(s, now);
            sup_service_start(s, now);
        }
        break;
    case SUP_STARTING:
        if (now < s->next_probe) break;
        if (answers(s)) {
            char addr[96];
            address(s, addr, sizeof addr);
            const char *tcp = sup_module_tcp(s);
            sup_logf(s->ctx, "%s: answering at %s%s%s, %lld ms after it started", s->cfg->name,
                     addr, tcp ? " and " : "", tcp ? tcp : "",
                     (long long)(sup_mono_ms() - s->started_mono));
            set_state(s, SUP_RUNNING);
        } else if (sup_mono_ms() >= s->ready_by) {
            sup_logf(s->ctx,
                     SUP_ERR
                     "%s: not answering after %llds (startup_timeout_s): stopped, marked failed",
                     s->cfg->name, (long long)(s->cfg->s.startup_timeout_ms / 1000));
            snprintf(s->last_exit, sizeof s->last_exit,
                     "not answering after %llds (startup_timeout_s)",
                     (long long)(s->cfg->s.startup_timeout_ms / 1000));
            sup_service_stop(s, sup_mono_ms(), false, SUP_FAILED);
        } else {
            s->next_probe = sup_mono_ms() + PROBE_EVERY_MS;
        }
        break;
    case SUP_STOPPING:
        if (now >= s->kill_at && s->pid) {
            snprintf(s->killed, sizeof s->killed,
                     "still running %llds after SIGTERM (stop_timeout_s): SIGKILL",
                     (long long)(s->cfg->s.stop_timeout_ms / 1000));
            sup_logf(s->ctx, SUP_WARNING "%s: still running after stop_timeout_s: SIGKILL",
                     s->cfg->name);
            kill(-s->pid, SIGKILL);
            s->kill_at = INT64_MAX; /* once; SIGCHLD says when it is gone */
        }
        break;
    default:
        break;
    }
}

static int64_t own_deadline(const sup_service *s)
{
    switch (s->state) {
    case SUP_BACKOFF:
        return s->restart_at;
    case SUP_STARTING:
        return s->next_probe;
    case SUP_STOPPING:
        return s->kill_at;
    default:
        return INT64_MAX;
    }
}

int64_t sup_service_next_deadline(const sup_service *s)
{
    int64_t d = own_deadline(s);
    if (s->scaler) {
        int64_t k = sup_scaler_next_deadline(s);
        if (k < d) d = k;
    }
    return d;
}

void sup_service_stop(sup_service *s, int64_t now, bool force, sup_state final)
{
    if (s->state != SUP_STOPPING) s->killed[0] = '\0'; /* a stop of its own begins */
    if (!s->pid) {
        if (s->state != SUP_FAILED) set_state(s, final);
        return;
    }
    /* A stop under way keeps the state it ends in: a service stopped for not answering
     * stays failed when SIGTERM or SIGKILL for everything comes meanwhile. */
    if (s->state == SUP_STOPPING) {
        if (!force) return;
    } else {
        s->after_stop = final;
    }
    if (force) snprintf(s->killed, sizeof s->killed, "SIGKILL at once");
    sup_logf(s->ctx, "%s: %s to process group %d", s->cfg->name, force ? "SIGKILL" : "SIGTERM",
             (int)s->pid);
    kill(-s->pid, force ? SIGKILL : SIGTERM);
    s->kill_at = force ? INT64_MAX : now + s->cfg->s.stop_timeout_ms;
    set_state(s, SUP_STOPPING);
}

void sup_service_operator_stop(sup_service *s, int64_t now)
{
    s->held = true;
    s->start_after_stop = false;
    sup_service_stop(s, now, false, SUP_STOPPED);
}

void sup_service_operator_start(sup_service *s, int64_t now)
{
    s->held = false;
    switch (s->state) {
    case SUP_STOPPING:
        s->start_after_stop = true;
        break;
    case SUP_STOPPED:
    case SUP_FAILED:
    case SUP_BACKOFF:
        /* An operator's start is a fresh one: no backoff owed, no crash loop counted, and
         * a module's workers scale by themselves again. */
        s->in_a_row = 0;
        if (s->scaler) sup_scaler_operator_reset(s);
        memset(s->restart_times, 0,
               (size_t)s->cfg->s.crash_loop_restarts * sizeof *s->restart_times);
        sup_logf(s->ctx, "%s: started by an operator", s->cfg->name);
        sup_service_start(s, now);
        break;
    case SUP_STARTING:
    case SUP_RUNNING:
        break;
    }
}

void sup_service_operator_restart(sup_service *s, int64_t now)
{
    if (!s->pid) {
        sup_service_operator_start(s, now);
        return;
    }
    s->held = false;
    sup_logf(s->ctx, "%s: restarted by an operator", s->cfg->name);
    sup_service_stop(s, now, false, SUP_STOPPED);
    s->start_after_stop = true;
}
