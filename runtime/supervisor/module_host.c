/* module= services. The supervisor forks a module service's process as it forks an exec=
 * one (service.c: own process group, output on the service's log pipe, restarts), but the
 * child runs shmrpc-service itself again (/proc/self/exe) as the service's manager:
 *
 *     shmrpc-service --module-host NAME MODULE shm://ADDRESS WORKERS
 *
 * A fresh exec rather than running the module in the forked supervisor: the supervisor has
 * a second thread (the control service), and loading a library in the child of a threaded
 * process is not safe; the manager also starts with none of the supervisor's memory, so
 * what its workers share is the module's data alone. The manager loads the module, runs
 * its init once, listens and serves with shmrpc_server_serve(WORKERS), which forks the
 * workers: what init loaded is shared with them copy-on-write.
 *
 * Signals the manager takes: SIGTERM or SIGINT stop it (shmrpc_server_stop: calls in
 * flight finish, the workers stop, the segments are removed); SIGRTMIN queued by its
 * parent with sigqueue() carries a new worker count (shmrpc_server_set_workers). Both
 * handlers are async-signal-safe. */
#include "module_host.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/module.h>
#include <shmrpc/server.h>
#include <shmrpc/status.h>

#include "scaler.h"

/* The manager's command line, built once per service; the count it starts with is
 * rewritten before each start. */
struct sup_module {
    char *argv[7];
    char addr[96];
    char workers[16];
};

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

int sup_module_resolve(shmrpc__config *c, shmrpc__config_service *cfg, char *err, size_t cap)
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
            snprintf(err, cap, "module %s: %s%s%s", cfg->module, shmrpc_strerror(e),
                     srv ? ": " : "", srv ? shmrpc_server_errmsg(srv) : "");
        } else if (!cfg->shm_name) {
            const char *name = m->service->info->svc_name;
            size_t n = name ? strlen(name) : 0;
            if (n == 0 || n > 64)
                snprintf(err, cap,
                         "module %s: service %s has no `name` to serve at: write shm_name",
                         cfg->module, m->service->info->name ? m->service->info->name : "?");
            else if (!(cfg->shm_name = shmrpc__config_strdup(c, name)))
                snprintf(err, cap, "out of memory");
            else
                rc = 0;
        } else {
            rc = 0;
        }
    }
    shmrpc_server_free(srv);
    dlclose(h);
    return rc;
}

int sup_module_init(sup_service *s)
{
    struct sup_module *m = calloc(1, sizeof *m);
    if (!m) return SHMRPC_ENOMEM;
    snprintf(m->addr, sizeof m->addr, "shm://%s", s->cfg->shm_name ? s->cfg->shm_name : "");
    m->argv[0] = "shmrpc-service";
    m->argv[1] = SUP_MODULE_HOST_ARG;
    m->argv[2] = s->cfg->name;
    m->argv[3] = s->cfg->module;
    m->argv[4] = m->addr;
    m->argv[5] = m->workers;
    m->argv[6] = NULL;
    s->module = m;
    sup_module_set_start_workers(s, 1);
    return sup_scaler_new(s);
}

void sup_module_destroy(sup_service *s)
{
    sup_scaler_free(s);
    free(s->module);
    s->module = NULL;
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
static volatile sig_atomic_t stop_asked;
static volatile sig_atomic_t wanted; /* a count that came before the server: 0, none */

static void on_stop(int sig)
{
    (void)sig;
    stop_asked = 1;
    shmrpc_server *s = atomic_load(&the_server);
    if (s) shmrpc_server_stop(s);
}

static void on_scale(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    /* Only the supervisor's word counts. */
    if (si->si_code != SI_QUEUE || si->si_pid != getppid()) return;
    int n = si->si_value.sival_int;
    if (n < 1 || n > SHMRPC_MAX_WORKERS) return;
    wanted = n;
    shmrpc_server *s = atomic_load(&the_server);
    if (s) shmrpc_server_set_workers(s, n);
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

int sup_module_host_main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: shmrpc-service " SUP_MODULE_HOST_ARG
                        " NAME MODULE ADDRESS WORKERS (run by shmrpc-service itself)\n");
        return 2;
    }
    const char *name = argv[2], *path = argv[3], *addr = argv[4];
    char *end;
    long workers = strtol(argv[5], &end, 10);
    if (*end || workers < 1) workers = 1;
    if (workers > SHMRPC_MAX_WORKERS) workers = SHMRPC_MAX_WORKERS;

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
    char err[512];
    const shmrpc_module *m = exported(h, path, err, sizeof err);
    if (!m) {
        fprintf(stderr, "%s: %s\n", name, err);
        return 1;
    }
    void *user = NULL;
    if (m->init) {
        char *init_argv[] = {(char *)name, NULL};
        int r = m->init(&user, 1, init_argv);
        if (r != 0) {
            fprintf(stderr, "%s: the module's init failed (%d)\n", name, r);
            return 1;
        }
    }
    double init_ms = ms_since(&t0);
    shmrpc_server *srv = NULL;
    int rc = shmrpc_server_new(&srv, NULL);
    if (!rc) rc = shmrpc_server_register(srv, m->service, m->handlers, user);
    if (!rc) rc = shmrpc_server_listen(srv, addr);
    if (rc) {
        fprintf(stderr, "%s: %s: %s%s%s\n", name, addr, shmrpc_strerror(rc), srv ? ": " : "",
                srv ? shmrpc_server_errmsg(srv) : "");
        shmrpc_server_free(srv);
        if (m->fini) m->fini(user);
        return 1;
    }
    atomic_store(&the_server, srv);
    if (wanted) workers = wanted;
    fprintf(stderr,
            "%s: pid %d serving %s with %ld worker%s (module %s, loaded and initialised in "
            "%.1f ms)\n",
            name, (int)getpid(), addr, workers, workers == 1 ? "" : "s", path, init_ms);
    if (!stop_asked) rc = shmrpc_server_serve(srv, (int)workers);
    /* No handler may touch the server once it is freed. */
    sigset_t all;
    sigemptyset(&all);
    sigaddset(&all, SIGTERM);
    sigaddset(&all, SIGINT);
    sigaddset(&all, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &all, NULL);
    atomic_store(&the_server, NULL);
    shmrpc_server_free(srv); /* removes its segment and channels */
    if (m->fini) m->fini(user);
    if (rc) fprintf(stderr, "%s: serving %s: %s\n", name, addr, shmrpc_strerror(rc));
    fprintf(stderr, "%s: stopped\n", name);
    return rc ? 1 : 0;
}
