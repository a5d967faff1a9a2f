/* SPDX-License-Identifier: MIT */
/* shmrpc-service [--foreground] service.ini: runs the services of a service.ini in file
 * order, restarts them when they crash, writes their output to their logs and their state
 * to LOG_DIR/status.json, and stops them in reverse order on SIGTERM or SIGINT. One thread
 * owns the services; it sleeps in poll() on a signalfd (SIGTERM, SIGINT, SIGCHLD), the
 * services' output pipes and the control service's eventfd, with a timeout that is the
 * nearest deadline (a restart, a readiness check, a SIGKILL) or none. The control service
 * (sup_control.c) is served by a second thread that hands every request to this one. It is a child
 * subreaper, so that the workers a killed service leaves behind become its children and are reaped
 * here, not left to a PID 1 that may not. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmrpc/status.h>
#include <shmrpc/version.h>

#include "config.h"
#include "registry.h"
#include "sup_control.h"
#include "input.h"
#include "sup_log.h"
#include "sup_module.h"
#include "sup_series.h"
#include "sup_service.h"
#include "usage.h"
#include "web_proc.h"

/* How long READY=1 waits, once every service has started, for the page to answer (the
 * keeper gives a page that does not answer 6 s before its first miss). */
#define PAGE_READY_WAIT_MS 10000

/* How long the supervisor waits, on its way out, for what it killed to be reaped. */
#define REAP_AT_EXIT_MS 1000

static sup_log own_log; /* LOG_DIR/shmrpc-service.log, without --foreground */
static sup_ctx ctx = {.changed = true};

/* The page's lines (web.h: its one tie to the supervisor) go to the supervisor's own. */
static void page_line(void *arg, const char *fmt, va_list ap)
{
    sup_vlogf(arg, fmt, ap);
}
static const web_logger page_log = {page_line, &ctx};
static char *notify_socket; /* NOTIFY_SOCKET, taken out of the services' environment */
static char page_url[128];  /* the page's http://HOST:PORT/ for STATUS=; "": none */

#define NOTIFY_AGAIN_MS 100     /* a message that met a full queue goes again after this */
static int64_t notify_again_at; /* when the main loop sends again what did not go; 0: none */
static bool notify_full;        /* the last message met a full queue (said once till one goes) */

/* sd_notify(3) without libsystemd: one datagram to the socket NOTIFY_SOCKET names, a path
 * or, with a leading '@', an abstract name. Never waits, so that a reader whose queue is
 * full (it reads none, or is stuck) never stalls the main loop: false then, and the loop
 * sends it again NOTIFY_AGAIN_MS later (READY=1 must reach systemd, or it ends the unit at
 * its start timeout); the full queue is said once, until a message goes. Any other failure
 * is said and the message dropped (true: nothing to send again). */
static bool notify(const char *msg)
{
    if (!notify_socket) return true;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(notify_socket);
    if ((notify_socket[0] != '/' && notify_socket[0] != '@') || len >= sizeof sa.sun_path)
        return true;
    memcpy(sa.sun_path, notify_socket, len);
    if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        sup_logf(&ctx, SUP_WARNING "sd_notify %s: %s", msg, strerror(errno));
        return true;
    }
    bool sent = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) >= 0;
    int e = errno;
    close(fd);
    bool full = !sent && (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS);
    if (!sent && (!full || !notify_full))
        sup_logf(&ctx, SUP_WARNING "sd_notify %s to %s: %s%s", msg, notify_socket, strerror(e),
                 full ? " (sent again until it goes)" : "");
    notify_full = full;
    if (full) notify_again_at = sup_mono_ms() + NOTIFY_AGAIN_MS;
    return !full;
}

/* STATUS= for systemctl status: how many services run, which failed, and the page.
 * Sent when it changes, once READY=1 has been (before, it is "starting"). */
static void notify_status(const sup_service *svcs, size_t n, const char *page)
{
    static char last[512];
    char msg[512];
    size_t running = 0;
    for (size_t i = 0; i < n; i++)
        running += svcs[i].state == SUP_RUNNING;
    int len = snprintf(msg, sizeof msg, "STATUS=%zu of %zu service%s running", running, n,
                       n == 1 ? "" : "s");
    for (size_t i = 0, k = 0; i < n && len > 0 && (size_t)len < sizeof msg; i++)
        if (svcs[i].state == SUP_FAILED)
            len += snprintf(msg + len, sizeof msg - (size_t)len, "%s%s",
                            k++ ? ", " : "; failed: ", svcs[i].cfg->name);
    if (page && *page && len > 0 && (size_t)len < sizeof msg)
        snprintf(msg + len, sizeof msg - (size_t)len, "; page %s", page);
    if (strcmp(msg, last) == 0) return;
    if (notify(msg)) snprintf(last, sizeof last, "%s", msg); /* else it goes again */
}

/* mkdir -p, 0750 for what it creates. */
static int make_dirs(const char *path)
{
    char p[PATH_MAX];
    if (strlen(path) >= sizeof p) return SHMRPC_ESYS(ENAMETOOLONG);
    strcpy(p, path);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0750) != 0 && errno != EEXIST) return SHMRPC_ESYS(errno);
        *s = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(path, &st) != 0) return SHMRPC_ESYS(errno);
    return S_ISDIR(st.st_mode) ? 0 : SHMRPC_ESYS(ENOTDIR);
}

/* LOG_DIR/status.json, replaced whole (a temporary file renamed over it) so that a reader
 * never sees half of it. Service names are letters, digits, '_', '-' and '.': no escaping.
 * The workers are those of the last sample of the time series (series may be NULL). */
static void write_status(const char *dir, const sup_service *svcs, size_t n,
                         const sup_series *series, const char *state)
{
    char tmp[PATH_MAX], path[PATH_MAX], when[40];
    snprintf(tmp, sizeof tmp, "%s/.status.json.tmp", dir);
    snprintf(path, sizeof path, "%s/status.json", dir);
    /* Not fopen(): a FIFO put in tmp's place would stop the supervisor in open(). */
    const char *kind = NULL;
    int fd = shmrpc__open_regular(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666, &kind);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0) close(fd);
        sup_logf(&ctx, SUP_ERR "cannot write %s: %s%s", tmp, kind ? kind : strerror(e),
                 kind ? ", not a regular file" : "");
        return;
    }
    sup_log_time(when, sizeof when, sup_unix_ms());
    fprintf(f, "{\n  \"pid\": %d,\n  \"state\": \"%s\",\n  \"updated_at\": \"%s\",\n",
            (int)getpid(), state, when);
    fprintf(f, "  \"services\": {");
    for (size_t i = 0; i < n; i++) {
        const sup_service *s = &svcs[i];
        fprintf(f, "%s\n    \"%s\": {\"state\": \"%s\", \"pid\": %d, \"restarts\": %d, ",
                i ? "," : "", s->cfg->name, sup_state_name(s->state), (int)s->pid, s->restarts);
        if (s->started_unix) {
            sup_log_time(when, sizeof when, s->started_unix);
            fprintf(f, "\"started_at\": \"%s\", \"started_at_ms\": %lld, ", when,
                    (long long)s->started_unix);
        } else {
            fprintf(f, "\"started_at\": null, \"started_at_ms\": null, ");
        }
        const pid_t *pids;
        int n_pids, workers = sup_series_workers(series, i, &pids, &n_pids);
        fprintf(f, "\"workers\": %d, \"worker_pids\": [", workers);
        for (int k = 0; k < n_pids; k++)
            fprintf(f, "%s%d", k ? ", " : "", (int)pids[k]);
        fprintf(f, "], \"log_dropped_bytes\": %llu}", (unsigned long long)s->log.dropped);
    }
    fprintf(f, "\n  }\n}\n");
    /* Both run, ferror first (the operands of | are not sequenced): fclose must close f
     * even when an earlier write failed. */
    errno = 0;
    int bad = ferror(f);
    bad |= fclose(f);
    if (bad || rename(tmp, path) != 0) {
        sup_logf(&ctx, SUP_ERR "cannot write %s: %s", path,
                 errno ? strerror(errno) : "write error");
        unlink(tmp);
    }
}

/* What stops the supervisor before its log is open, on stderr: under the journal each line
 * gets the error priority, as sup_logf's SUP_ERR lines do. */
static void error_lines(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void error_lines(const char *fmt, ...)
{
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, "\n");
        fprintf(stderr, "%s%.*s\n", ctx.journal ? SUP_ERR : "", (int)len, p);
        p += len + (p[len] == '\n');
    }
    free(text);
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: shmrpc-service [--foreground] [--] service.ini\n"
            "       shmrpc-service --help | --version\n"
            "  --foreground  log to stderr (for systemd) instead of LOG_DIR/shmrpc-service.log\n");
}

/* Opens /dev/null onto whichever of 0, 1 and 2 is closed, so that no pipe or log the
 * supervisor opens lands there (and a service's stdin or output with it). */
static void fill_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
        int got = open("/dev/null", O_RDWR); /* the lowest free number: fd */
        if (got > 2) close(got);
    }
}

/* Reaps every child that ended: a service's process (its group is killed first, while
 * its zombie keeps the group's id from being reused), the page's keeper, or one a service
 * left behind. false once no child is left. */
static bool reap_children(sup_service *svcs, size_t n, web_proc *web, int64_t now)
{
    for (;;) {
        siginfo_t si = {0};
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0) return errno != ECHILD;
        if (si.si_pid == 0) return true; /* children, none ended */
        size_t i = 0;
        while (i < n && svcs[i].pid != si.si_pid)
            i++;
        if (i < n) {
            sup_service_reaped(&svcs[i], now);
        } else {
            int status = 0;
            while (waitpid(si.si_pid, &status, 0) < 0 && errno == EINTR)
                ;
            web_proc_reaped(web, si.si_pid, status);
        }
    }
}

/* Whether the service after s may start: s does not wait, or is past waiting. */
static bool settled(const sup_service *s)
{
    return !sup_service_waits(s) || s->state == SUP_RUNNING || s->state == SUP_FAILED ||
           s->state == SUP_STOPPED;
}

/* Lets go of what main holds before its loop, on a failure there (a second supervisor of
 * one file stops here): services [0, ready) were set up. Returns main's status, 1. */
static int stop_early(cfg_file *c, sup_service *svcs, size_t ready, struct pollfd *pfds, int sfd,
                      web_proc *web)
{
    web_proc_stop(web, sfd);
    for (size_t i = 0; i < ready; i++)
        sup_service_destroy(&svcs[i]);
    free(svcs);
    free(pfds);
    free(notify_socket);
    notify_socket = NULL;
    if (sfd >= 0) close(sfd);
    if (ctx.own_log) {
        ctx.own_log = NULL;
        sup_log_close(&own_log);
    }
    cfg_free(c);
    return 1;
}

/* The TCP port a service serves, 0: none. A module= service serves its tcp_port, or its
 * .svc's (sup_module_resolve), unless tcp_bind is none. */
static int tcp_port_of(const cfg_service *s)
{
    return s->kind == CFG_MODULE && !s->s.tcp_bind ? 0 : s->tcp_port;
}

/* Ports written twice are errors of the file (config_check.c); a module's port taken from its
 * .svc can clash only now. False, with the error as the file's errors are written in err. */
static bool ports_free(const cfg_file *c, char *err, size_t cap)
{
    for (size_t i = 0; i < c->n_services; i++) {
        const cfg_service *s = &c->services[i];
        int port = tcp_port_of(s);
        const char *other = NULL;
        for (size_t j = 0; port && j < i && !other; j++)
            if (tcp_port_of(&c->services[j]) == port) other = c->services[j].name;
        if (!port || (!other && port != c->web_port)) continue;
        snprintf(err, cap,
                 "%s:%d: error: service [%s]: TCP port %d is also %s%s%s (a module= service "
                 "without tcp_port serves its .svc's port): write tcp_port, or tcp_bind = none",
                 c->path, s->line, s->name, port, other ? "service [" : "the web monitor's port",
                 other ? other : "", other ? "]'s" : "");
        return false;
    }
    return true;
}

/* Writes this supervisor's file in the registry (registry.h): its ini, control address
 * and page. */
static void register_self(const cfg_file *c, const char *path, const char *control_addr, bool page,
                          char *reg_path, size_t cap)
{
    static cfg_sup me; /* 4 KiB of path: not on the stack */
    me.pid = getpid();
    if (!realpath(path, me.ini)) snprintf(me.ini, sizeof me.ini, "%s", path);
    snprintf(me.control, sizeof me.control, "%s", control_addr);
    me.page[0] = '\0';
    if (page) {
        const char *host = c->web_host ? c->web_host : "127.0.0.1";
        bool v6 = strchr(host, ':') && host[0] != '[';
        snprintf(me.page, sizeof me.page, "http://%s%s%s:%d/", v6 ? "[" : "", host, v6 ? "]" : "",
                 c->web_port ? c->web_port : 5155);
    }
    snprintf(page_url, sizeof page_url, "%s", me.page);
    int e = cfg_registry_add(&me, reg_path, cap);
    if (e) {
        reg_path[0] = '\0';
        sup_logf(&ctx,
                 SUP_WARNING "cannot register in the registry of supervisors: %s; shmrpcctl needs "
                             "--ini or -a to find this one",
                 shmrpc_strerror(e));
    }
}

int main(int argc, char **argv)
{
    /* A module= service's manager is this program run again (sup_module.c). */
    if (argc > 1 && strcmp(argv[1], SUP_MODULE_HOST_ARG) == 0)
        return sup_module_host_main(argc, argv);
    fill_std_fds();
    ctx.pid = getpid();
    bool foreground = false;
    const char *path = NULL;
    enum { OPT_FOREGROUND = 256 };
    static const struct option longopts[] = {
        {"foreground", no_argument, NULL, OPT_FOREGROUND},
        SHMRPC__OPTS_HELP_VERSION,
        {NULL, 0, NULL, 0},
    };
    /* ':' first: getopt_long says nothing itself (shmrpc__opt_default does, on one line). */
    for (int opt; (opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1;) {
        switch (opt) {
        case OPT_FOREGROUND:
            foreground = true;
            break;
        default:
            return shmrpc__opt_default(opt, argv, "shmrpc-service", SHMRPC_VERSION_STRING, usage);
        }
    }
    if (optind + 1 != argc) {
        if (optind < argc) fprintf(stderr, "shmrpc-service: one service.ini at a time\n");
        return shmrpc__usage_by(false, usage);
    }
    path = argv[optind];
    ctx.journal = sup_log_is_journal(STDERR_FILENO);

    cfg_file *c = NULL;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    int rc = cfg_load(path, NULL, &c, &err);
    if (rc) {
        if (err.len)
            error_lines("%.*s", (int)err.len, (const char *)err.data);
        else
            error_lines("shmrpc-service: %s: %s\n", path, shmrpc_strerror(rc));
        shmrpc_buf_destroy(&err);
        return 1;
    }
    shmrpc_buf_destroy(&err);
    char control_addr[96];
    int e = cfg_control_address(path, control_addr, sizeof control_addr);
    if (e) {
        error_lines("shmrpc-service: %s: no control address: %s\n", path, shmrpc_strerror(e));
        cfg_free(c);
        return 1;
    }
    /* The management page's keeper (web_proc.c), while this process is surely one
     * thread: before any module is loaded (one may start threads), and before the control
     * service. It starts the page in a process of its own once every service has started. */
    char page_why[256] = "";
    web_proc *web = web_proc_fork(c, control_addr, &page_log, page_why, sizeof page_why);
    if (!web) sup_logf(&ctx, SUP_WARNING "web monitor: %s; running without the page", page_why);
    /* Each module is loaded once here, before any service starts, to check it and to
     * learn the shm name it serves at when the file does not say. */
    for (size_t i = 0; i < c->n_services; i++) {
        static char why[SUP_MODULE_ERR_CAP];
        if (c->services[i].kind == CFG_MODULE &&
            sup_module_resolve(c, &c->services[i], why, sizeof why) != 0) {
            error_lines("%s:%d: error: service [%s]: %s\n", c->path, c->services[i].line,
                        c->services[i].name, why);
            return stop_early(c, NULL, 0, NULL, -1, web);
        }
    }
    web_proc_resolved(web, c);
    char clash[PATH_MAX + 256]; /* the file's path, whole */
    if (!ports_free(c, clash, sizeof clash)) {
        error_lines("%s\n", clash);
        return stop_early(c, NULL, 0, NULL, -1, web);
    }
    const char *log_dir = c->defaults.log_dir;
    e = make_dirs(log_dir);
    for (size_t i = 0; e == 0 && i < c->n_services; i++)
        e = make_dirs(c->services[i].s.log_dir);
    if (e) {
        error_lines("shmrpc-service: cannot create the log folders under %s: %s\n", log_dir,
                    shmrpc_strerror(e));
        return stop_early(c, NULL, 0, NULL, -1, web);
    }
    if (!foreground) {
        e = sup_log_open(&own_log, log_dir, "shmrpc-service.log", c->defaults.log_max_bytes,
                         c->defaults.log_keep, true);
        if (e) {
            error_lines("shmrpc-service: cannot open %s/shmrpc-service.log: %s%s\n", log_dir,
                        own_log.kind ? own_log.kind : shmrpc_strerror(e),
                        own_log.kind ? ", not a regular file" : "");
            return stop_early(c, NULL, 0, NULL, -1, web);
        }
        ctx.own_log = &own_log;
    }
    const char *ns = getenv("NOTIFY_SOCKET");
    if (ns && *ns) notify_socket = strdup(ns);
    unsetenv("NOTIFY_SOCKET"); /* the services are not the unit systemd watches */
    /* An exec= server built on libshmrpc that this process starts follows its worker count
     * (sup_scaler.c; the library's server.c reads this). */
    char me[24];
    snprintf(me, sizeof me, "%d", (int)getpid());
    setenv("SHMRPC_SUPERVISOR_PID", me, 1);

    /* SIGTERM and SIGINT arrive on a signalfd; the children unblock them before exec. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGCHLD);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    prctl(PR_SET_CHILD_SUBREAPER, 1);

    size_t n = c->n_services;
    sup_service *svcs = calloc(n, sizeof *svcs);
    struct pollfd *pfds = calloc(3 + n, sizeof *pfds);
    char why[256] = "";
    if (sfd < 0 || !svcs || !pfds) {
        sup_logf(&ctx, SUP_ERR "cannot start: %s", strerror(sfd < 0 ? errno : ENOMEM));
        return stop_early(c, svcs, 0, pfds, sfd, web);
    }
    for (size_t i = 0; i < n; i++) {
        e = sup_service_init(&svcs[i], &ctx, &c->services[i], c->dir);
        if (e) {
            if (svcs[i].log.kind)
                sup_logf(&ctx, SUP_ERR "%s: cannot open its log %s: %s, not a regular file",
                         c->services[i].name, svcs[i].log.path, svcs[i].log.kind);
            else
                sup_logf(&ctx, SUP_ERR "%s: cannot open its pipe or log: %s", c->services[i].name,
                         shmrpc_strerror(e));
            sup_service_destroy(&svcs[i]); /* what it had opened before it failed */
            return stop_early(c, svcs, i, pfds, sfd, web);
        }
    }
    /* The control service, before any service starts: a second supervisor of the same
     * file finds its address taken and stops here. Started with the signals blocked, so
     * its thread keeps them blocked and they reach the signalfd only. */
    sup_control *control = NULL;
    e = sup_control_start(&control, control_addr, c, svcs, n, why, sizeof why);
    if (e) {
        sup_logf(&ctx, SUP_ERR "cannot serve the control service at %s: %s%s%s", control_addr,
                 shmrpc_strerror(e), *why ? ": " : "", why);
        if (ctx.own_log)
            error_lines("shmrpc-service: cannot serve the control service at "
                        "%s: %s%s%s\n",
                        control_addr, shmrpc_strerror(e), *why ? ": " : "", why);
        return stop_early(c, svcs, n, pfds, sfd, web);
    }
    sup_logf(&ctx, "pid %d: %zu service%s from %s; control service at %s", (int)getpid(), n,
             n == 1 ? "" : "s", c->path, control_addr);
    /* shmrpcctl finds this supervisor in the registry (registry.h) without being told the
     * file; a supervisor that cannot write it runs on, reached by --ini or -a. */
    char reg_path[PATH_MAX] = "";
    register_self(c, path, control_addr, web != NULL, reg_path, sizeof reg_path);
    /* The time series (sup_series.c): sampled on this loop's timer; NULL runs without. */
    sup_series *series = sup_series_new(svcs, n);
    sup_control_set_series(control, series); /* status() shows the workers status.json does */

    size_t cursor = 0;          /* the next service to start, in file order */
    size_t to_stop = n;         /* draining: services [0, to_stop) are still to stop, last first */
    bool ready_sent = false;    /* READY=1 is due (status.json: running) */
    bool ready_pending = false; /* ... and still to go (the reader's queue was full) */
    int64_t serve_at = 0;       /* when the page was told to start; 0: not yet */
    rc = 0;
    for (;;) {
        int64_t now = sup_mono_ms();
        if (!ctx.draining) {
            while (cursor < n && (cursor == 0 || settled(&svcs[cursor - 1]))) {
                sup_service *s = &svcs[cursor++];
                /* Not one an operator stopped, or started already, before its turn. */
                if (!s->held && s->pid == 0 && s->state == SUP_STOPPED) sup_service_start(s, now);
            }
            if (!serve_at && cursor == n && settled(&svcs[n - 1])) {
                sup_logf(&ctx, "all services started");
                web_proc_serve(web);
                serve_at = now;
            }
            /* READY=1 once the page answers too (or will not come, or after a bound), so
             * that what systemd starts after this unit finds both. */
            if (serve_at && !ready_sent &&
                (web_proc_settled(web) || now - serve_at >= PAGE_READY_WAIT_MS)) {
                if (!web_proc_settled(web))
                    sup_logf(&ctx,
                             SUP_WARNING "web monitor: the page did not answer within %d ms of "
                                         "the services' start; ready without it",
                             PAGE_READY_WAIT_MS);
                ready_pending = !notify("READY=1");
                ready_sent = true;
                ctx.changed = true;
            }
        } else {
            while (to_stop > 0) {
                sup_service *s = &svcs[to_stop - 1];
                if (s->pid == 0) {
                    if (s->state != SUP_FAILED) sup_service_stop(s, now, false, SUP_STOPPED);
                    to_stop--;
                } else {
                    sup_service_stop(s, now, false, SUP_STOPPED); /* once; then it waits */
                    break;
                }
            }
        }
        if (ctx.changed) {
            write_status(log_dir, svcs, n, series,
                         ctx.draining ? (to_stop ? "draining" : "stopped")
                         : ready_sent ? "running"
                                      : "starting");
            if (ready_sent && !ready_pending && !ctx.draining)
                notify_status(svcs, n, web_proc_answered(web) ? page_url : NULL);
            ctx.changed = false;
        }
        if (notify_again_at && now >= notify_again_at) { /* what met a full queue, again */
            notify_again_at = 0;
            if (ready_pending) ready_pending = !notify("READY=1");
            if (ready_sent && !ready_pending && !ctx.draining)
                notify_status(svcs, n, web_proc_answered(web) ? page_url : NULL);
        }
        if (ctx.draining && to_stop == 0) break;

        int64_t next = INT64_MAX;
        for (size_t i = 0; i < n; i++) {
            int64_t d = sup_service_next_deadline(&svcs[i]);
            if (d < next) next = d;
        }
        if (sup_series_next_deadline(series) < next) next = sup_series_next_deadline(series);
        if (serve_at && !ready_sent && serve_at + PAGE_READY_WAIT_MS < next)
            next = serve_at + PAGE_READY_WAIT_MS;
        if (notify_again_at && notify_again_at < next) next = notify_again_at;
        int timeout = next == INT64_MAX      ? -1
                      : next <= now          ? 0
                      : next - now > INT_MAX ? INT_MAX
                                             : (int)(next - now);
        nfds_t np = 0;
        pfds[np++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        for (size_t i = 0; i < n; i++)
            pfds[np++] = (struct pollfd){.fd = svcs[i].out_r, .events = POLLIN};
        pfds[np++] = (struct pollfd){.fd = sup_control_fd(control), .events = POLLIN};
        pfds[np++] = (struct pollfd){.fd = web_proc_fd(web), .events = POLLIN};
        if (poll(pfds, np, timeout) < 0 && errno != EINTR) {
            sup_logf(&ctx, SUP_ERR "poll: %s: SIGKILL to every service", strerror(errno));
            ctx.draining = true;
            for (size_t i = 0; i < n; i++)
                sup_service_stop(&svcs[i], sup_mono_ms(), true, SUP_STOPPED);
            rc = 1;
            break;
        }
        now = sup_mono_ms();
        if (pfds[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo == SIGCHLD) continue; /* reaped below, however many */
                if (!ctx.draining) {
                    sup_logf(&ctx, "%s: stopping the services, last first",
                             strsignal((int)si.ssi_signo));
                    /* Not sent again when the queue is full: systemd would only miss
                     * showing the unit as deactivating until it exits. */
                    (void)notify("STOPPING=1\nSTATUS=stopping the services, last first");
                    ctx.draining = true;
                    ctx.changed = true;
                    for (size_t i = 0; i < n; i++) /* no restarts from now on */
                        if (svcs[i].state == SUP_BACKOFF)
                            sup_service_stop(&svcs[i], now, false, SUP_STOPPED);
                } else {
                    sup_logf(&ctx, SUP_WARNING "%s again: SIGKILL to every service",
                             strsignal((int)si.ssi_signo));
                    for (size_t i = 0; i < n; i++)
                        if (svcs[i].pid) sup_service_stop(&svcs[i], now, true, SUP_STOPPED);
                }
            }
        }
        for (size_t i = 0; i < n; i++)
            if (pfds[1 + i].revents & POLLIN) sup_service_drain(&svcs[i]);
        if (pfds[2 + n].revents) web_proc_drain(web);
        reap_children(svcs, n, web, now);
        for (size_t i = 0; i < n; i++)
            sup_service_tick(&svcs[i], sup_mono_ms());
        sup_series_tick(series, sup_mono_ms());
        if (pfds[1 + n].revents & POLLIN) sup_control_handle(control, sup_mono_ms());
    }
    /* Status was served until every service stopped; now the segment goes. */
    web_proc_stop(web, sfd); /* before the control service, which the page calls */
    sup_control_stop(control);
    cfg_registry_remove(reg_path); /* with the control service: nothing left to find */

    /* What the services' groups held was SIGKILLed when each was reaped; those processes
     * are this subreaper's children now. Reap them (and, after a failed poll, the
     * services), rather than leave them to PID 1; one that escaped its group and still
     * runs is not waited for long. */
    int64_t give_up = sup_mono_ms() + REAP_AT_EXIT_MS;
    bool left;
    while ((left = reap_children(svcs, n, NULL, sup_mono_ms())) && sup_mono_ms() < give_up)
        poll(NULL, 0, 10);
    if (left) sup_logf(&ctx, SUP_WARNING "processes left behind by the services are still running");
    for (size_t i = 0; i < n; i++)
        sup_service_drain_rest(&svcs[i]);
    sup_logf(&ctx, "stopped");
    write_status(log_dir, svcs, n, series, "stopped");
    sup_series_free(series);
    for (size_t i = 0; i < n; i++)
        sup_service_destroy(&svcs[i]);
    free(svcs);
    free(pfds);
    free(notify_socket);
    close(sfd);
    if (ctx.own_log) {
        ctx.own_log = NULL;
        sup_log_close(&own_log);
    }
    cfg_free(c);
    return rc;
}
