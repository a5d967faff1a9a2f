/* SPDX-License-Identifier: MIT */
/* The shm:// transport's server side, its top: listen (the control segment and its method
 * table, the rendezvous), the manager of the workers, and the listener's close. A worker is
 * shm_worker.c; the channels handed over at the rendezvous, shm_handover.c; the sweeps,
 * shm_sweep.c; the stop, shm_stop.c (shm_server_int.h). */
#include "transport/shm/shm_server_int.h"

#include "core/proc.h"
#include "rpc/crew.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* --- the method table in the control segment ------------------------------------------ */

/* The method table as the control segment holds it, into a malloc'd *out of *len bytes. */
static int table_text(const shmrpc_service_info *info, char **out, uint32_t *len, shmrpc_buf *err)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    for (uint32_t i = 0; i < info->n_methods; i++) {
        const shmrpc_method_info *m = &info->methods[i];
        char mid[40];
        int n = snprintf(mid, sizeof mid, "\t%d\t%016" PRIx64 "\t", (int)m->encoding,
                         m->fingerprint);
        shmrpc_buf_append(&b, m->name, strlen(m->name));
        shmrpc_buf_append(&b, mid, (size_t)n);
        shmrpc_buf_append(&b, m->signature, strlen(m->signature));
        shmrpc_buf_append(&b, "\n", 1);
    }
    for (uint32_t i = 0; i < info->n_types; i++) {
        shmrpc_buf_append(&b, "\t", 1);
        shmrpc_buf_append(&b, info->types[i], strlen(info->types[i]));
        shmrpc_buf_append(&b, "\n", 1);
    }
    if (b.err) {
        shmrpc_buf_destroy(&b);
        return SHMRPC_ENOMEM;
    }
    if (b.len > SHMRPC__TABLE_MAX) {
        shmrpc_buf_destroy(&b);
        shmrpc__msg_set(err, "the method table does not fit in %d bytes", SHMRPC__TABLE_MAX);
        return SHMRPC_ETOOBIG;
    }
    *len = (uint32_t)b.len;
    *out = malloc(b.len ? b.len : 1);
    if (*out && b.len) memcpy(*out, b.data, b.len);
    shmrpc_buf_destroy(&b);
    return *out ? 0 : SHMRPC_ENOMEM;
}

/* Unlinks the channels in /dev/shm of key whose server is owner, or (owner 0, a server
 * starting) whose server is no longer alive or had this process's pid: what servers of
 * versions before memfd channels left behind when they stopped or died. Channels are
 * memfds now, and go with their last holder. */
static void remove_channels(const char *key, int32_t owner)
{
    char name[300], prefix[128];
    int n = snprintf(prefix, sizeof prefix, "shmrpc:%s:", key);
    DIR *d = opendir("/dev/shm");
    if (d == NULL || n <= 0) {
        if (d) closedir(d);
        return;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, prefix, (size_t)n) != 0) continue;
        int32_t pid = (int32_t)strtol(e->d_name + n, NULL, 10);
        bool stale = owner ? pid == owner : pid == getpid() || !shmrpc__proc_alive(pid, 0);
        if (!stale) continue;
        snprintf(name, sizeof name, "/%s", e->d_name);
        shm_unlink(name);
    }
    closedir(d);
}

/* Creates the control segment, or finds who holds it: a live server is refused with its
 * pid; a dead one's leftovers are removed and creation is tried once more. (The caller
 * holds the name's lock: a live holder here is a server that took no lock.) */
static int create_ctl(shm_listener *l, shmrpc_buf *err)
{
    const char *path = l->ctl_path;
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc = shmrpc__shm_create_segment(path, l->ctl_size, &l->fd, err);
        if (rc == 0) return 0;
        if (rc != SHMRPC_ESYS(EEXIST)) return rc;
        int fd;
        uint64_t size;
        rc = shmrpc__shm_open_segment(path, sizeof(shmrpc__shm_ctl), &fd, &size, err);
        if (rc == SHMRPC_EPROTO) { /* a crash during creation left it short */
            unlink(path);
            continue;
        }
        if (rc != 0) return rc;
        shmrpc__shm_ctl *old = shmrpc__shm_map(fd, sizeof *old);
        close(fd);
        if (old == NULL) return shmrpc__shm_sys_error(err, "cannot map", path);
        int32_t pid = atomic_load(&old->owner.pid);
        uint64_t start = atomic_load(&old->owner.start);
        bool ours = atomic_load(&old->magic) == SHMRPC__SHM_MAGIC;
        munmap(old, sizeof *old);
        if (ours && shmrpc__proc_alive(pid, start)) {
            shmrpc__msg_set(err, "shm://%s is already served by pid %" PRId32, l->key, pid);
            return SHMRPC_EBUSY;
        }
        unlink(path); /* a dead server's: its channels go below */
    }
    shmrpc__msg_set(err, "cannot create %s: it keeps coming back", path);
    return SHMRPC_EBUSY;
}

static void shm_listener_close(shmrpc__listener *base);
static int shm_serve(shmrpc__listener *base, int workers);

static const shmrpc__listener_ops shm_listener_ops = {
    .close = shm_listener_close,
    .serve = shm_serve,
    .stop = shmrpc__shm_stop,
    .poke = shmrpc__shm_poke,
};

int shmrpc__shm_listen(shmrpc_server *s, const char *where, shmrpc__listener **out, shmrpc_buf *err)
{
    int rc = shmrpc__shm_check_key(where, err);
    if (rc != 0) return rc;
    shm_listener *l = calloc(1, sizeof *l);
    if (l == NULL) return SHMRPC_ENOMEM;
    l->base.ops = &shm_listener_ops;
    l->server = s;
    snprintf(l->key, sizeof l->key, "%s", where);
    l->pid = getpid();
    l->stop_pipe[0] = l->stop_pipe[1] = -1;
    l->manager_fd = -1;
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++)
        l->held_fd[i] = -1;
    l->max_msg = shmrpc__server_max_msg(s);
    if (l->max_msg > SHMRPC__MAX_MSG_CAP) l->max_msg = SHMRPC__MAX_MSG_CAP;
    l->wait = *shmrpc__server_wait(s);
    /* The rendezvous first: its lock makes this process the name's one server, before
     * anything of a dead one's is removed (shm_rdv.h). */
    const shmrpc_service_info *info = shmrpc__server_info(s);
    rc = table_text(info, &l->table, &l->table_len, err);
    l->ctl_size = shmrpc__shm_ctl_size(l->table_len);
    if (rc == 0) rc = shmrpc__shm_path(l->ctl_path, sizeof l->ctl_path, l->key, "", true, err);
    if (rc == 0) rc = shmrpc__shm_handover_open(l, err);
    if (rc == 0) rc = create_ctl(l, err);
    if (rc != 0) {
        if (l->held) munmap(l->held, SHMRPC__MAX_CONNS * sizeof *l->held);
        shmrpc__rdv_close(l->rdv);
        free(l->table);
        free(l);
        return rc;
    }
    remove_channels(l->key, 0);
    l->ctl = shmrpc__shm_map(l->fd, l->ctl_size);
    if (l->ctl == NULL) rc = shmrpc__shm_sys_error(err, "cannot map", "the control segment");
    if (rc == 0) {
        memcpy(l->ctl->table, l->table, l->table_len);
        l->ctl->table_len = l->table_len;
    }
    if (rc != 0) {
        munmap(l->held, SHMRPC__MAX_CONNS * sizeof *l->held);
        free(l->table);
        if (l->ctl) munmap(l->ctl, l->ctl_size);
        close(l->fd);
        unlink(l->ctl_path);
        shmrpc__rdv_close(l->rdv);
        free(l);
        return rc;
    }
    shmrpc_buf ignored; /* a server without statistics still serves */
    shmrpc_buf_init(&ignored);
    shmrpc__stats_create(&l->stats, "shm", l->key, info, &ignored);
    shmrpc_buf_destroy(&ignored);
    shmrpc__shm_ctl *ctl = l->ctl;
    ctl->version = SHMRPC__SHM_VERSION;
    l->start = shmrpc__proc_start(l->pid);
    shmrpc__shm_proc_set(&ctl->owner, l->pid, l->start);
    ctl->fingerprint = info->fingerprint;
    snprintf(ctl->service, sizeof ctl->service, "%s", info->name);
    memcpy(l->service, ctl->service, sizeof l->service);
    ctl->max_msg = l->max_msg;
    atomic_store(&ctl->state, SHM_READY);
    atomic_store_explicit(&ctl->magic, SHMRPC__SHM_MAGIC, memory_order_release);
    *out = &l->base;
    return 0;
}

/* --- the manager and its crew of workers ---------------------------------------------- */

static int crew_run(void *arg, int index)
{
    shm_listener *l = arg;
    /* No SA_RESTART: a futex sleep ends. */
    struct sigaction stop = {.sa_handler = shmrpc__shm_on_stop};
    sigaction(SIGTERM, &stop, NULL);
    /* The rendezvous and the channels handed over are the manager's: a worker's copies
     * would keep the name bound after the manager died, and channels alive after their
     * connections. */
    shmrpc__rdv_close(l->rdv);
    l->rdv = NULL;
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++)
        if (l->held_fd[i] >= 0) close(l->held_fd[i]), l->held_fd[i] = -1;
    return shmrpc__shm_worker_run(l, (unsigned)index);
}

/* A worker that died without leaving: take back its bit on the doorbell and, unless it
 * died asleep (its share was taken back then), its share of awake. */
static void crew_reaped(void *arg, int i)
{
    shm_listener *l = arg;
    shmrpc__shm_worker *me = &l->ctl->workers[i];
    atomic_fetch_and(&l->ctl->sleeping, ~((uint64_t)1 << i));
    if (atomic_load(&me->state) == SHM_WORKER_RUNNING && !atomic_load(&me->presence.asleep))
        shmrpc__count_down(&l->ctl->awake);
    atomic_store(&me->state, SHM_WORKER_FREE);
}

static void crew_stopping(void *arg)
{
    shm_listener *l = arg;
    atomic_store(&l->ctl->state, SHM_STOPPING); /* for clients: calls not taken will not run */
}

/* Whether a child of this process can take a descriptor from it (pidfd_getfd), as workers
 * do with the channels handed over here: the kernel refuses it to a process that may not
 * ptrace this one (this one not dumpable or setuid, Yama's ptrace_scope 2 or 3, another
 * LSM). Tried in a child, as a worker would. */
static bool children_can_take(int pidfd)
{
    if (pidfd < 0) return false;
    pid_t pid = fork();
    if (pid == 0) _exit(syscall(SYS_pidfd_getfd, pidfd, pidfd, 0) >= 0 ? 0 : 1);
    int status = 0;
    if (pid < 0) return false;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void rdv_pump(void *arg)
{
    shm_listener *l = arg;
    if (l->rdv) shmrpc__rdv_pump(l->rdv);
}

static int manage(shm_listener *l, int n)
{
    if (pipe2(l->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return SHMRPC_ESYS(errno);
    _Atomic int *want = shmrpc__server_want(l->server);
    atomic_store(want, n);
    /* Workers take the channels handed over to the manager through this (pidfd_getfd). */
    l->manager_fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    /* Yama's ptrace_scope 1 lets a process trace only its descendants: declaring this one
     * its own tracer lets its descendants, the workers, take from it. */
    l->workers_take = children_can_take(l->manager_fd);
    if (!l->workers_take && prctl(PR_SET_PTRACER, getpid(), 0, 0, 0) == 0)
        l->workers_take = children_can_take(l->manager_fd);
    /* The manager sleeps on the rendezvous with the workers' pidfds: a client's hang-up
     * frees its slot at once. */
    shmrpc__crew c = {.want = want,
                      .stop = &l->stop,
                      .stop_fd = l->stop_pipe[0],
                      .watch_fd = l->rdv ? shmrpc__rdv_fd(l->rdv) : -1,
                      .watch = rdv_pump,
                      .arg = l,
                      .run = crew_run,
                      .reaped = crew_reaped,
                      .stopping = crew_stopping};
    int rc = shmrpc__crew_manage(&c);
    if (l->manager_fd >= 0) close(l->manager_fd);
    l->manager_fd = -1;
    close(l->stop_pipe[0]);
    close(l->stop_pipe[1]);
    l->stop_pipe[0] = l->stop_pipe[1] = -1;
    return rc;
}

static int shm_serve(shmrpc__listener *base, int workers)
{
    shm_listener *l = (shm_listener *)base;
    if (workers < 0 || workers > SHMRPC__MAX_WORKERS) return SHMRPC_EINVAL;
    if (workers == 0) {
        l->workers_take = true; /* the worker is this process: it holds the channels */
        return shmrpc__shm_worker_run(l, 0);
    }
    return manage(l, workers);
}

static void shm_listener_close(shmrpc__listener *base)
{
    shm_listener *l = (shm_listener *)base;
    if (getpid() == l->pid) { /* the manager removes the segments; a worker only lets go */
        atomic_store(&l->ctl->state, SHM_STOPPING);
        unlink(l->ctl_path); /* channels are memfds: they go with their last holder */
    }
    shmrpc__rdv_close(l->rdv); /* and the manager's removes the rendezvous and lock */
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++)
        if (l->held_fd[i] >= 0) close(l->held_fd[i]);
    if (l->held) munmap(l->held, SHMRPC__MAX_CONNS * sizeof *l->held);
    shmrpc__stats_destroy(&l->stats);
    free(l->table);
    munmap(l->ctl, l->ctl_size);
    close(l->fd);
    free(l);
}
