/* SPDX-License-Identifier: MIT */
/* module= services. The supervisor forks a module service's process as it forks an exec=
 * one (sup_service.c: own process group, output on the service's log pipe, restarts), but the
 * child runs shmrpc-service itself again (/proc/self/exe) as the service's manager:
 *
 *     shmrpc-service --module-host NAME MODULE WORKERS shm://NAME TCP|- SECRET_FILE|- ARG...
 *
 * A fresh exec rather than running the module in the forked supervisor: the supervisor has
 * a second thread (the control service), and loading a library in the child of a threaded
 * process is not safe; the manager also starts with none of the supervisor's memory, so
 * what its workers share is the module's data alone. The manager loads the module, runs
 * its init once (with NAME and the ARGs, module_args), listens and serves with
 * shmrpc_server_serve(WORKERS), which forks the workers: what init loaded is shared with
 * them copy-on-write.
 *
 * A server listens at one address. With a TCP address, the manager forks a second manager
 * after init that serves it with workers of its own, in the same process group. The two
 * live and die together: the TCP manager dies with the first (PR_SET_PDEATHSIG), and the
 * first stops and exits 1 when the TCP manager ends unasked (SIGCHLD), so that the
 * supervisor restarts the whole service. The TCP manager names itself OBS_TCP_MANAGER_NAME
 * (obs_proc.h), which is how the supervisor tells it from a worker.
 *
 * Signals the manager takes: SIGTERM or SIGINT stop it (shmrpc_server_stop: calls in
 * flight finish, the workers stop, the segments are removed); SIGRTMIN queued by its
 * parent with sigqueue() carries a new worker count (shmrpc_server_set_workers), which the
 * first manager passes on to the TCP one. The handlers are async-signal-safe. */
#include "sup_module.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/module.h>
#include <shmrpc/server.h>
#include <shmrpc/status.h>
#include <shmrpc/tcp.h>

#include "obs_proc.h"

/* The manager's command line, built once per service; the count it starts with is
 * rewritten before each start. */
struct sup_module {
    char **argv; /* shmrpc-service --module-host NAME MODULE WORKERS SHM TCP SECRET TLS_CERT
                  * TLS_KEY TLS_CA TCP_MAX_RUNNING ARG... */
    char shm[96];
    char tcp[96]; /* tcp://HOST:PORT, or "" without TCP */
    char workers[16];
    char max_running[16];
};

/* What stands for "none" among the manager's arguments. */
#define NONE_ARG "-"

/* --- the supervisor's side --------------------------------------------------------------- */

/* The module's export, checked; NULL with the reason in err. */
static const shmrpc_module *exported(void *h, const char *path, char *err, size_t cap)
{
    const shmrpc_module *m = dlsym(h, SHMRPC_MODULE_SYMBOL);
    if (!m) {
        snprintf(err, cap,
                 "module %s exports no %s: add SHMRPC_MODULE(service, handlers, init, fini) "
                 "(shmrpc/module.h)",
                 path, SHMRPC_MODULE_SYMBOL);
        return NULL;
    }
    if (m->magic != SHMRPC_MODULE_MAGIC || m->version != SHMRPC_MODULE_VERSION) {
        snprintf(err, cap,
                 "module %s: %s has magic 0x%08x version %u; this supervisor takes version %u: "
                 "rebuild it",
                 path, SHMRPC_MODULE_SYMBOL, (unsigned)m->magic, (unsigned)m->version,
                 SHMRPC_MODULE_VERSION);
        return NULL;
    }
    if (!m->service || !m->handlers || !m->service->info) {
        snprintf(err, cap, "module %s: %s has no service descriptor or no handlers", path,
                 SHMRPC_MODULE_SYMBOL);
        return NULL;
    }
    return m;
}

int sup_module_resolve(cfg_file *c, cfg_service *cfg, char *err, size_t cap)
{
    err[0] = '\0';
    /* RTLD_NOW: a symbol the module needs and the supervisor does not export is an error
     * now, with its name, rather than a crash of the manager at its first call. */
    void *h = dlopen(cfg->module, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        snprintf(err, cap, "cannot load module %s: %s", cfg->module, why ? why : "?");
        return -1;
    }
    int rc = -1;
    const shmrpc_module *m = exported(h, cfg->module, err, cap);
    shmrpc_server *srv = NULL;
    if (m) {
        /* The checks shmrpc_server_register makes (descriptor, every handler set), here
         * rather than in a manager that would fail in a loop. */
        int e = shmrpc_server_new(&srv, NULL);
        if (!e) e = shmrpc_server_register(srv, m->service, m->handlers, NULL);
        if (e) {
            snprintf(err, cap, "module %s: %s: %s", cfg->module, shmrpc_strerror(e),
                     shmrpc_errmsg());
        } else if (!cfg->shm_name) {
            const char *name = m->service->info->svc_name;
            size_t n = name ? strlen(name) : 0;
            if (n == 0 || n > 64)
                snprintf(err, cap,
                         "module %s: service %s has no `name` to serve at: write shm_name",
                         cfg->module, m->service->info->name ? m->service->info->name : "?");
            else if (!(cfg->shm_name = cfg_strdup(c, name)))
                snprintf(err, cap, "out of memory");
            else
                rc = 0;
        } else {
            rc = 0;
        }
        /* Its TCP port, when the file writes none: the .svc's (0: it has none). */
        if (rc == 0 && !cfg->tcp_port) cfg->tcp_port = m->service->info->port;
    }
    shmrpc_server_free(srv);
    dlclose(h);
    return rc;
}

/* The service's TCP address when its manager serves TCP too: a tcp_port (written, or the
 * .svc's) and a tcp_bind that is not none. */
static void tcp_address(const cfg_service *cfg, char *out, size_t cap)
{
    const char *host = cfg->s.tcp_bind;
    if (!host || !cfg->tcp_port)
        out[0] = '\0';
    else if (strchr(host, ':'))
        snprintf(out, cap, "tcp://[%s]:%d", host, cfg->tcp_port);
    else
        snprintf(out, cap, "tcp://%s:%d", host, cfg->tcp_port);
}

int sup_module_init(sup_service *s)
{
    const cfg_service *cfg = s->cfg;
    struct sup_module *m = calloc(1, sizeof *m);
    if (!m) return SHMRPC_ENOMEM;
    s->module = m;
    m->argv = calloc(13 + (size_t)cfg->module_argc, sizeof *m->argv);
    if (!m->argv) return SHMRPC_ENOMEM;
    snprintf(m->shm, sizeof m->shm, "shm://%s", cfg->shm_name ? cfg->shm_name : "");
    tcp_address(cfg, m->tcp, sizeof m->tcp);
    int a = 0;
    m->argv[a++] = "shmrpc-service";
    m->argv[a++] = SUP_MODULE_HOST_ARG;
    m->argv[a++] = cfg->name;
    m->argv[a++] = cfg->module;
    m->argv[a++] = m->workers;
    m->argv[a++] = m->shm;
    m->argv[a++] = m->tcp[0] ? m->tcp : NONE_ARG;
    m->argv[a++] = m->tcp[0] && cfg->s.secret_file ? cfg->s.secret_file : NONE_ARG;
    char *tls[3] = {cfg->s.tls_cert_file, cfg->s.tls_key_file, cfg->s.tls_ca_file};
    for (int i = 0; i < 3; i++)
        m->argv[a++] = m->tcp[0] && tls[i] ? tls[i] : NONE_ARG;
    snprintf(m->max_running, sizeof m->max_running, "%d", cfg->s.tcp_max_running);
    m->argv[a++] = m->max_running;
    for (int i = 0; i < cfg->module_argc; i++)
        m->argv[a++] = cfg->module_args[i];
    m->argv[a] = NULL;
    sup_module_set_start_workers(s, 1);
    return 0;
}

void sup_module_destroy(sup_service *s)
{
    if (s->module) free(s->module->argv);
    free(s->module);
    s->module = NULL;
}

const char *sup_module_tcp(const sup_service *s)
{
    return s->module && s->module->tcp[0] ? s->module->tcp : NULL;
}

void sup_module_set_start_workers(sup_service *s, int workers)
{
    snprintf(s->module->workers, sizeof s->module->workers, "%d", workers);
}

void sup_module_exec(const sup_service *s)
{
    /* Until the manager has its handler, a new count waits (blocked, queued) rather than
     * killing it: SIGRTMIN's default action ends a process. exec keeps the mask. */
    sigset_t rt;
    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &rt, NULL);
    execv("/proc/self/exe", s->module->argv);
}

/* --- the manager ------------------------------------------------------------------------- */

static _Atomic(shmrpc_server *) the_server; /* set once serving can be stopped or scaled */
/* This manager's pid. A worker is forked with these handlers and keeps them until the
 * crew's body installs its own (crew.c, then the transport's crew_run): a signal in that
 * window must not act as the manager (stop the server it shares, signal the TCP manager,
 * which would look like a crash and restart the whole service). */
static volatile sig_atomic_t self;
static volatile sig_atomic_t stop_asked;
static volatile sig_atomic_t wanted;      /* a count that came before the server: 0, none */
static volatile sig_atomic_t peer;        /* the first manager: the TCP one's pid; 0: none */
static volatile sig_atomic_t peer_ended;  /* it ended (reaped by on_child), */
static volatile sig_atomic_t peer_status; /* with this wait status */

/* Whether the handler runs in the manager itself rather than in a worker not yet running
 * its own handlers. */
static bool in_manager(void)
{
    return getpid() == (pid_t)self;
}

static void on_stop(int sig)
{
    (void)sig;
    /* A worker told to stop (scaled down, or everything stopping) before it took a call:
     * it leaves at once, and its manager reaps it as any worker that left. */
    if (!in_manager()) _exit(0);
    stop_asked = 1;
    shmrpc_server *s = atomic_load(&the_server);
    if (s) shmrpc_server_stop(s);
    if (peer > 0) kill(peer, SIGTERM); /* a SIGINT came to this process alone */
}

static void on_scale(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    /* Only the supervisor's word counts (the first manager's, for the TCP one). */
    if (!in_manager() || si->si_code != SI_QUEUE || si->si_pid != getppid()) return;
    int n = si->si_value.sival_int;
    if (n < 1 || n > SHMRPC_MAX_WORKERS) return;
    wanted = n;
    shmrpc_server *s = atomic_load(&the_server);
    if (s) shmrpc_server_set_workers(s, n);
    if (peer > 0) sigqueue(peer, SIGRTMIN, si->si_value);
}

/* The first manager: the TCP manager ended. Unless everything is stopping, that is a crash,
 * and this manager stops too, so that the supervisor starts the whole service again. */
static void on_child(int sig)
{
    (void)sig;
    int saved = errno, st;
    if (in_manager() && peer > 0 && waitpid(peer, &st, WNOHANG) == peer) {
        peer_status = st;
        peer_ended = 1;
        peer = 0;
        shmrpc_server *s = atomic_load(&the_server);
        if (s) shmrpc_server_stop(s);
    }
    errno = saved;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static void block(int how, bool with_child)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGRTMIN);
    if (with_child) sigaddset(&set, SIGCHLD);
    sigprocmask(how, &set, NULL);
}

/* Listens at addr and serves with workers until stopped; 0, or 1 after saying why. With a
 * secret_file (not "-"), TCP clients must prove its secret; tls (NULL for shm://) holds
 * the TLS certificate, key and CA files, each "-" when not set; max_running is
 * tcp_max_running (0: the default). */
static int serve(const char *name, const shmrpc_module *m, void *user, const char *addr,
                 const char *secret_file, char *const *tls, int max_running, long workers,
                 const char *how)
{
    shmrpc_server_opts o;
    shmrpc_server_opts_init(&o);
    o.tcp.max_running = max_running;
    const char **tls_opt[3] = {&o.tcp.tls_cert, &o.tcp.tls_key, &o.tcp.tls_ca};
    for (int i = 0; tls && i < 3; i++)
        *tls_opt[i] = strcmp(tls[i], NONE_ARG) != 0 ? tls[i] : NULL;
    unsigned char secret[SHMRPC_SECRET_MAX];
    int rc = 0;
    if (strcmp(secret_file, NONE_ARG) != 0) {
        rc = shmrpc_secret_load(secret_file, secret, sizeof secret, &o.tcp.secret_len);
        if (rc) {
            fprintf(stderr, "%s: secret_file: %s\n", name, shmrpc_errmsg());
            return 1;
        }
        o.tcp.secret = secret;
    }
    shmrpc_server *srv = NULL;
    rc = shmrpc_server_new(&srv, &o); /* the secret is copied */
    explicit_bzero(secret, sizeof secret);
    if (!rc) rc = shmrpc_server_register(srv, m->service, m->handlers, user);
    if (!rc) rc = shmrpc_server_listen(srv, addr);
    if (rc) {
        fprintf(stderr, "%s: %s: %s: %s\n", name, addr, shmrpc_strerror(rc), shmrpc_errmsg());
        shmrpc_server_free(srv);
        return 1;
    }
    atomic_store(&the_server, srv);
    if (wanted) workers = wanted;
    char running[64] = ""; /* tcp_max_running, for the TCP manager */
    if (tls) snprintf(running, sizeof running, ", %d calls of a connection at once", max_running);
    fprintf(stderr, "%s: pid %d serving %s with %ld worker%s%s (%s)\n", name, (int)getpid(), addr,
            workers, workers == 1 ? "" : "s", running, how);
    if (!stop_asked && !peer_ended) rc = shmrpc_server_serve(srv, (int)workers);
    /* No handler may touch the server once it is freed. */
    block(SIG_BLOCK, false);
    atomic_store(&the_server, NULL);
    shmrpc_server_free(srv); /* removes its segment and channels */
    if (rc) fprintf(stderr, "%s: serving %s: %s\n", name, addr, shmrpc_strerror(rc));
    return rc ? 1 : 0;
}

/* The first manager, done serving: the TCP manager's end, and its wait status. Asked to
 * stop, it had SIGTERM too (with the group, or from on_stop) and drains as this one did,
 * its crew giving calls in flight their time: it is waited for without a limit of ours,
 * since the supervisor SIGKILLs the whole group at stop_timeout_s should it hang. When
 * this manager stopped on its own (serving shm:// failed), nobody else will end the TCP
 * manager: SIGTERM, then SIGKILL after WAIT_PEER_MS. */
#define WAIT_PEER_MS 5000
static int wait_peer(void)
{
    block(SIG_BLOCK, true); /* on_child no more: peer and peer_status stay as they are */
    if (peer_ended) return peer_status;
    pid_t p = peer;
    peer = 0;
    int st = 0;
    kill(p, SIGTERM); /* had it already, unless this manager stopped on its own */
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(p, &st, stop_asked ? 0 : WNOHANG);
        if (r == p) return st;
        if (r < 0 && errno != EINTR) { /* not a child of ours (cannot be): never signal it */
            /* GCOVR_EXCL_START: unreachable: p is this manager's child, not reaped yet: on_child
             * is blocked, and the crew waits for its own workers by pid */
            fprintf(stderr, "waiting for the manager of tcp://, pid %d: %s\n", (int)p,
                    strerror(errno));
            return W_EXITCODE(1, 0);
            /* GCOVR_EXCL_STOP */
        }
        if (r == 0 && waited >= WAIT_PEER_MS) {
            kill(p, SIGKILL);
            while ((r = waitpid(p, &st, 0)) < 0 && errno == EINTR)
                ;
            return r == p ? st : W_EXITCODE(1, 0);
        }
        if (r == 0) {
            struct timespec ts = {0, 10 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
}

int sup_module_host_main(int argc, char **argv)
{
    if (argc < 12) {
        fprintf(stderr, "usage: shmrpc-service " SUP_MODULE_HOST_ARG
                        " NAME MODULE WORKERS SHM_ADDRESS TCP_ADDRESS|- SECRET_FILE|- "
                        "TLS_CERT|- TLS_KEY|- TLS_CA|- TCP_MAX_RUNNING [ARG...] (run by "
                        "shmrpc-service itself)\n");
        return 2;
    }
    const char *name = argv[2], *path = argv[3], *shm = argv[5], *tcp = argv[6];
    const char *secret_file = argv[7];
    char *const *tls = argv + 8;
    char *end;
    long max_running = strtol(argv[11], &end, 10); /* checked by the configuration's reader */
    if (*end || max_running < 1 || max_running > 256) max_running = 16; /* the default */
    long workers = strtol(argv[4], &end, 10);
    if (*end || workers < 1) workers = 1;
    if (workers > SHMRPC_MAX_WORKERS) workers = SHMRPC_MAX_WORKERS;
    bool two = strcmp(tcp, NONE_ARG) != 0;

    self = getpid();
    struct sigaction stop = {.sa_handler = on_stop};
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGINT, &stop, NULL);
    struct sigaction scale = {.sa_sigaction = on_scale, .sa_flags = SA_SIGINFO | SA_RESTART};
    sigaction(SIGRTMIN, &scale, NULL);
    sigset_t rt;
    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN);
    sigprocmask(SIG_UNBLOCK, &rt, NULL);

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        fprintf(stderr, "%s: cannot load module %s: %s\n", name, path, why ? why : "?");
        return 1;
    }
    static char err[SUP_MODULE_ERR_CAP];
    const shmrpc_module *m = exported(h, path, err, sizeof err);
    if (!m) {
        fprintf(stderr, "%s: %s\n", name, err);
        return 1;
    }
    void *user = NULL;
    if (m->init) {
        /* argv[0] is the service's name, then module_args; NULL-terminated as main's. */
        int init_argc = 1 + (argc - 12);
        char **init_argv = calloc((size_t)init_argc + 1, sizeof *init_argv);
        if (!init_argv) {
            fprintf(stderr, "%s: out of memory\n", name);
            return 1;
        }
        init_argv[0] = (char *)name;
        for (int i = 12; i < argc; i++)
            init_argv[i - 11] = argv[i];
        int r = m->init(&user, init_argc, init_argv);
        free(init_argv);
        if (r != 0) {
            fprintf(stderr, "%s: the module's init failed (%d)\n", name, r);
            return 1;
        }
    }
    char how[PATH_MAX + 96];
    snprintf(how, sizeof how, "module %s, loaded and initialised in %.1f ms", path, ms_since(&t0));

    /* Both addresses: a second manager for TCP, forked now that init has run, so that
     * its workers share what init loaded too. It stays in the service's process group
     * (the supervisor's samples, scaling and SIGTERM reach it there), takes its worker
     * count from this process (on_scale passes it on) and does not outlive it. */
    if (two) {
        block(SIG_BLOCK, true); /* on_* see peer set, or the child has its own handlers */
        pid_t leader = getpid();
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "%s: cannot start the manager of %s: %s\n", name, tcp, strerror(errno));
            if (m->fini) m->fini(user);
            return 1;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != leader) _exit(1);
            self = getpid(); /* before the handlers can run: signals are blocked */
            /* Its name (comm) marks it as a manager, not a worker (obs_proc.h). */
            prctl(PR_SET_NAME, OBS_TCP_MANAGER_NAME);
            signal(SIGCHLD, SIG_DFL);
            block(SIG_UNBLOCK, true);
            char also[96];
            snprintf(also, sizeof also, "forked by pid %d after its init", (int)leader);
            int rc = serve(name, m, user, tcp, secret_file, tls, (int)max_running, workers, also);
            /* init's data and fini belong to the first manager: nothing more runs here. */
            _exit(rc);
        }
        peer = pid;
        struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_RESTART};
        sigaction(SIGCHLD, &child, NULL);
        block(SIG_UNBLOCK, true);
    }
    int rc = serve(name, m, user, shm, NONE_ARG, NULL, 0, workers, how);
    if (two) {
        block(SIG_BLOCK, true);
        bool crashed = peer_ended && !stop_asked; /* the TCP manager ended first */
        int st = wait_peer();
        if (crashed) {
            char what[96];
            if (WIFSIGNALED(st))
                snprintf(what, sizeof what, "was killed by signal %d", WTERMSIG(st));
            else
                snprintf(what, sizeof what, "exited with status %d", WEXITSTATUS(st));
            fprintf(stderr,
                    "%s: the manager of %s %s: stopping %s too, so that the whole service "
                    "starts again\n",
                    name, tcp, what, shm);
            rc = 1;
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            rc = 1;
        }
    }
    if (m->fini) m->fini(user);
    fprintf(stderr, "%s: stopped\n", name);
    return rc;
}
