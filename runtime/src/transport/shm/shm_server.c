/* SPDX-License-Identifier: MIT */
/* The shm:// transport's server side: the control segment and its method table, the
 * rendezvous where clients hand over their channels, the manager and its workers, which
 * take calls from any connection, and their sweeps of dead clients and broken state. */
#include "transport/shm/shm_int.h"

#include "rpc/crew.h"
#include "core/names.h"
#include "transport/shm/shm_rdv.h"
#include "stats/stats.h"
#include "core/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SWEEP_EVERY_NS ((int64_t)1000 * 1000 * 1000)
#define SWEEP_LOOK_NS ((int64_t)1000 * 1000) /* how often a busy worker looks at the due time */

/* --- the method table in the control segment ------------------------------------------ */

static int write_table(shmrpc__shm_ctl *ctl, const shmrpc_service_info *info, shmrpc_buf *err)
{
    size_t used = 0;
    for (uint32_t i = 0; i < info->n_methods; i++) {
        const shmrpc_method_info *m = &info->methods[i];
        int n =
            snprintf(ctl->table + used, sizeof ctl->table - used, "%s\t%d\t%016" PRIx64 "\t%s\n",
                     m->name, (int)m->encoding, m->fingerprint, m->signature);
        if (n < 0 || (size_t)n >= sizeof ctl->table - used) {
            shmrpc__msg_set(err, "the method table does not fit in %d bytes", SHMRPC__TABLE_MAX);
            return SHMRPC_ETOOBIG;
        }
        used += (size_t)n;
    }
    ctl->table_len = (uint32_t)used;
    return 0;
}

typedef struct shm_listener {
    shmrpc__listener base;
    shmrpc_server *server;
    char key[SHMRPC__KEY_MAX + 1];
    char ctl_path[SHMRPC__NS_MAX + SHMRPC__KEY_MAX + 16]; /* the control segment (names.h) */
    int fd;
    shmrpc__shm_ctl *ctl;
    int32_t pid;    /* the manager: only it removes the segments */
    uint64_t start; /* the manager's start time */
    char *table;    /* what the header's table and service said at listen: sweeps restore */
    uint32_t table_len;
    char service[256];
    _Atomic int stop;
    int stop_pipe[2]; /* shm_stop writes a byte to wake the manager; -1 when none */
    uint64_t max_msg; /* the server's own: workers never take it from the segment */
    shmrpc_wait_opts wait;
    shmrpc__stats stats; /* the workers' call counts (stats.h), when it could be made */
    shmrpc__rdv *rdv;    /* the rendezvous, in the listening process; NULL in a worker */
    /* Per slot, the channel its client handed over at the rendezvous, as (gen << 32 |
     * fd + 1), fd being the listening process's descriptor, or 0. Written by the listening
     * process; read by workers, which take the descriptor from it (pidfd_getfd). Shared
     * anonymous memory that only the listening process and the workers it forks map: no
     * client can point a worker at another file. */
    _Atomic uint64_t *held;
    int held_fd[SHMRPC__MAX_CONNS]; /* the listening process's own copy of those fds, or -1 */
    int manager_fd;                 /* a pidfd of the listening process, for its workers */
    bool workers_take;              /* whether workers can take descriptors from it (pidfd_getfd) */
} shm_listener;

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
        int rc = shmrpc__shm_create_segment(path, sizeof(shmrpc__shm_ctl), &l->fd, err);
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

/* The channel the slot's client handed over for gen, as this process's descriptor (a
 * copy: the caller closes it), or -1 when none was, or it cannot be had: the caller then
 * opens it through /proc as for a client of a version before the rendezvous. A worker
 * takes it from the listening process (pidfd_getfd: a child of the same uid may); the
 * number may be stale by then, which the caller's checks of what it got (the channel's
 * name holds the slot and gen) catch. */
static int held_take(shm_listener *l, unsigned slot, uint32_t gen)
{
    uint64_t h = l->held ? atomic_load(&l->held[slot]) : 0;
    if ((uint32_t)(h >> 32) != gen || (uint32_t)h == 0) return -1;
    int fd = (int)((uint32_t)h - 1);
    if (getpid() == l->pid) return fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return l->manager_fd >= 0 ? (int)syscall(SYS_pidfd_getfd, l->manager_fd, fd, 0) : -1;
}

static void held_set(shm_listener *l, unsigned slot, uint32_t gen, int fd)
{
    uint64_t h = fd >= 0 ? (uint64_t)gen << 32 | (uint32_t)(fd + 1) : 0;
    atomic_store(&l->held[slot], h);
    if (l->held_fd[slot] >= 0) close(l->held_fd[slot]);
    l->held_fd[slot] = fd;
}

/* Whether the client of a slot counts in awake: it marks so while a call of its lasts,
 * and lowers awake itself (clearing the mark) while it sleeps. */
static bool counts_awake(shmrpc__shm_slot *s)
{
    return atomic_load(&s->counted) && !atomic_load(&s->presence.asleep);
}

/* A process as a slot named it: pid and start time. */
typedef struct {
    int32_t pid;
    uint64_t start;
} proc_id;

static void free_slot(shmrpc__shm_ctl *ctl, unsigned i, uint32_t state, uint32_t gen,
                      proc_id client, bool in_call);

/* A client hands over its channel: it must hold the slot it names (claimed by its pid,
 * which the kernel vouches for, with that gen), and the descriptor must be that slot's
 * channel, sealed and ours alone. */
static int rdv_take(void *arg, uint32_t slot, uint32_t gen, int32_t pid, uint32_t flags, int fd,
                    shmrpc_buf *err)
{
    shm_listener *l = arg;
    shmrpc__shm_slot *s = &l->ctl->slots[slot];
    /* Workers that cannot take the channel from here open it through /proc, which the
     * kernel refuses for a process that is not dumpable: say so now, rather than let every
     * call time out. */
    if (!l->workers_take && !(flags & SHMRPC__RDV_DUMPABLE)) {
        close(fd);
        shmrpc__msg_set(err,
                        "the workers of shm://%s cannot take channels from their manager "
                        "(pidfd_getfd refused: a manager that is not dumpable, or ptrace "
                        "restricted by Yama or another LSM), so they open a client's channel "
                        "through /proc/PID/fd, which needs a dumpable client; this one is not "
                        "(PR_SET_DUMPABLE, setuid or capabilities)",
                        l->key);
        return SHMRPC_EPERM;
    }
    if (atomic_load(&s->state) != SHM_SLOT_CLAIMED || atomic_load(&s->gen) != gen ||
        atomic_load(&s->client.pid) != pid) {
        close(fd);
        shmrpc__msg_set(err,
                        "slot %" PRIu32 " of shm://%s is not being claimed by pid %" PRId32
                        " with gen %" PRIu32,
                        slot, l->key, pid, gen);
        return SHMRPC_EPERM;
    }
    char name[160];
    shmrpc__shm_chan_name(name, sizeof name, l->key, l->pid, slot, gen);
    int kept;
    uint64_t size;
    int rc = shmrpc__shm_check_channel(fd, name + 1, PAGE, &kept, &size, err);
    if (rc == 0) held_set(l, slot, gen, kept);
    return rc;
}

/* Whether client pid still has the channel of slot and gen at the descriptor its slot
 * names, which workers may open: not once it exec'd (the channel is close-on-exec) or
 * closed it. True when that cannot be read (a client that is not dumpable). */
static bool channel_kept(shm_listener *l, unsigned slot, uint32_t gen, int32_t pid)
{
    char name[160];
    shmrpc__shm_chan_name(name, sizeof name, l->key, l->pid, slot, gen);
    int kept = shmrpc__shm_fd_is_memfd(pid, atomic_load(&l->ctl->slots[slot].chan_fd), name + 1);
    return kept < 0 ? errno != ENOENT : kept == 1;
}

/* The connection that handed over slot's channel for gen hung up. When its client died
 * (the kernel closes a process's sockets as it exits, after it can run any more of its
 * code), or exec'd (the socket and the channel are close-on-exec: the new program has
 * its pid and start, but not the connection), the slot is freed now, as a sweep would a
 * second later (a sweep would never, for the exec'd one); a client that only closed the
 * socket keeps its slot, and loses the channel held for it here (workers then open it
 * through /proc). */
static void rdv_hangup(void *arg, uint32_t slot, uint32_t gen, int32_t pid)
{
    shm_listener *l = arg;
    shmrpc__shm_slot *s = &l->ctl->slots[slot];
    uint64_t h = atomic_load(&l->held[slot]);
    bool ours = (uint32_t)(h >> 32) == gen && (uint32_t)h != 0;
    uint32_t state = atomic_load(&s->state);
    uint64_t start = atomic_load(&s->client.start);
    if (state != SHM_SLOT_FREE && state != SHM_SLOT_FREEING && atomic_load(&s->gen) == gen &&
        atomic_load(&s->client.pid) == pid &&
        (!shmrpc__proc_running(pid, start) || !channel_kept(l, slot, gen, pid))) {
        free_slot(l->ctl, slot, state, gen, (proc_id){pid, start}, counts_awake(s));
    }
    if (ours) held_set(l, slot, 0, -1);
}

static void rdv_pump(void *arg)
{
    shm_listener *l = arg;
    if (l->rdv) shmrpc__rdv_pump(l->rdv);
}

/* The rendezvous of the listener's key, and the table of the channels handed over. */
static int rdv_listen(shm_listener *l, shmrpc_buf *err)
{
    shmrpc__rdv_hooks hooks = {.arg = l, .take = rdv_take, .hangup = rdv_hangup};
    l->held = mmap(NULL, SHMRPC__MAX_CONNS * sizeof *l->held, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (l->held == MAP_FAILED) {
        l->held = NULL;
        return shmrpc__shm_sys_error(err, "cannot map", "the table of handed-over channels");
    }
    return shmrpc__rdv_listen(l->key, &hooks, &l->rdv, err);
}

static void shm_listener_close(shmrpc__listener *base);
static int shm_serve(shmrpc__listener *base, int workers);
static void shm_stop(shmrpc__listener *base);
static void shm_poke(shmrpc__listener *base);

static const shmrpc__listener_ops shm_listener_ops = {
    .close = shm_listener_close,
    .serve = shm_serve,
    .stop = shm_stop,
    .poke = shm_poke,
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
    rc = shmrpc__shm_path(l->ctl_path, sizeof l->ctl_path, l->key, "", true, err);
    if (rc == 0) rc = rdv_listen(l, err);
    if (rc == 0) rc = create_ctl(l, err);
    if (rc != 0) {
        if (l->held) munmap(l->held, SHMRPC__MAX_CONNS * sizeof *l->held);
        shmrpc__rdv_close(l->rdv);
        free(l);
        return rc;
    }
    remove_channels(l->key, 0);
    l->ctl = shmrpc__shm_map(l->fd, sizeof *l->ctl);
    const shmrpc_service_info *info = shmrpc__server_info(s);
    if (l->ctl == NULL) rc = shmrpc__shm_sys_error(err, "cannot map", "the control segment");
    if (rc == 0) rc = write_table(l->ctl, info, err);
    if (rc != 0) {
        munmap(l->held, SHMRPC__MAX_CONNS * sizeof *l->held);
        if (l->ctl) munmap(l->ctl, sizeof *l->ctl);
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
    l->table_len = ctl->table_len;
    l->table = malloc(l->table_len ? l->table_len : 1);
    if (l->table) memcpy(l->table, ctl->table, l->table_len); /* else: nothing restored */
    atomic_store(&ctl->state, SHM_READY);
    atomic_store_explicit(&ctl->magic, SHMRPC__SHM_MAGIC, memory_order_release);
    *out = &l->base;
    return 0;
}

/* A worker's view of one connection's channel. */
typedef struct worker_chan {
    uint32_t gen;
    bool open;
    uint32_t lock_tid; /* this worker's thread id while it holds the channel's lock, or 0 */
    uint32_t watch_as; /* what the answer writes into the channel's watcher */
    uint64_t call;     /* the number of the call this worker took last on the channel */
    uint64_t passed;   /* a call found claimed already: not to be tried again (watching) */
    uint32_t missed;   /* takes in a row that found nothing to take (worker_chan_moved) */
    shmrpc__chan_map map;
} worker_chan;

typedef struct worker {
    shm_listener *l;
    shmrpc__shm_ctl *ctl;
    unsigned index;
    int32_t pid; /* this worker, as it writes itself into the channels it serves */
    uint64_t start;
    uint32_t tid;           /* the thread that serves: it holds the channels' locks */
    unsigned next;          /* where the next doorbell scan starts, for fairness */
    int last_slot;          /* the connection served last: likely the next caller, or -1 */
    int watch;              /* the connection whose channel this worker watches, or -1 */
    int64_t last_call_ns;   /* when it was served */
    int64_t next_forget_ns; /* when to let go of closed connections' mappings next */
    int64_t next_look_ns;   /* when to look whether a sweep is due next */
    int64_t not_ready_ns;   /* when a sweep of this worker first saw the state not READY */
    int64_t next_pump_ns;   /* serving in the listening process: the rendezvous, next */
    /* Watching after its answer: the pauses it makes before it first looks at the channel
     * (learnt, at most SHMRPC__SPIN_QUIET), and whether the next look is that first one. */
    unsigned quiet;
    bool first_look;
    shmrpc_ctx ctx;
    shmrpc_buf req, resp;
    worker_chan *serving;  /* the channel of the call being run, for its loans */
    bool in_place;         /* that call's handler reads its request in the channel */
    shmrpc__chan_map kept; /* the mapping it reads it through, when a loan grew the channel */
    worker_chan chans[SHMRPC__MAX_CONNS];
} worker;

/* Whether any connection's request waits on the doorbell (its bits read, not taken). */
static bool any_pending(const shmrpc__shm_ctl *ctl)
{
    uint64_t any = 0;
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS / 64; i++)
        any |= atomic_load(&ctl->pending[i]);
    return any != 0;
}

/* Takes one pending request off the doorbell: the slot's index, or -1. The bits are read
 * once before the scan, which starts where the last one left off: a worker between calls
 * looks at them twice, and they are almost always all clear. */
static int take_pending(worker *w)
{
    if (!any_pending(w->ctl)) return -1;
    const unsigned words = SHMRPC__MAX_CONNS / 64;
    for (unsigned k = 0; k <= words; k++) {
        unsigned wi = (w->next / 64 + k) % words;
        uint64_t v = atomic_load(&w->ctl->pending[wi]);
        if (k == 0) v &= ~(uint64_t)0 << (w->next % 64); /* the start word's later bits first */
        while (v) {
            unsigned bit = (unsigned)__builtin_ctzll(v);
            uint64_t mask = (uint64_t)1 << bit;
            if (atomic_fetch_and(&w->ctl->pending[wi], ~mask) & mask) {
                w->next = (wi * 64 + bit + 1) % SHMRPC__MAX_CONNS;
                return (int)(wi * 64 + bit);
            }
            v &= ~mask;
        }
    }
    return -1;
}

static void worker_chan_close(worker_chan *c)
{
    shmrpc__chan_unmap(&c->map);
    c->open = false;
}

/* The channel that slot's connection of gen, whose client is pid, leads to now: taken
 * from the manager, or opened through /proc, and checked (name, seals, owner, mode, size).
 * Its descriptor, or -1. */
static int chan_fd_of(worker *w, unsigned slot, uint32_t gen, int32_t pid, uint64_t *size)
{
    char name[160];
    shmrpc__shm_chan_name(name, sizeof name, w->l->key, w->ctl->owner.pid, slot, gen);
    int32_t chan_fd = atomic_load(&w->ctl->slots[slot].chan_fd);
    int fd = held_take(w->l, slot, gen), out = -1;
    shmrpc_buf err; /* why a channel cannot be opened: nobody to tell, the call goes unanswered */
    shmrpc_buf_init(&err);
    int rc = fd >= 0 ? shmrpc__shm_check_channel(fd, name + 1, PAGE, &out, size, &err)
                     : shmrpc__shm_open_channel(pid, chan_fd, name + 1, PAGE, &out, size, &err);
    shmrpc_buf_destroy(&err);
    return rc == 0 ? out : -1;
}

/* Maps the channel of slot's connection of gen anew (worker_chan_get). */
static worker_chan *worker_chan_open(worker *w, unsigned slot, uint32_t gen)
{
    worker_chan *c = &w->chans[slot];
    shmrpc__shm_slot *s = &w->ctl->slots[slot];
    worker_chan_close(c);
    int32_t pid = atomic_load(&s->client.pid);
    uint64_t size;
    c->map.fd = chan_fd_of(w, slot, gen, pid, &size);
    if (c->map.fd < 0) return NULL;
    c->map.max_size = shmrpc__chan_max_size(w->l->max_msg);
    /* Looked at again: the client may have let go and claimed it anew meanwhile. */
    if (size > c->map.max_size || atomic_load(&s->state) != SHM_SLOT_OPEN ||
        atomic_load(&s->gen) != gen || atomic_load(&s->client.pid) != pid) {
        close(c->map.fd);
        c->map.fd = -1;
        return NULL;
    }
    c->map.head = shmrpc__shm_map(c->map.fd, size);
    if (c->map.head == NULL) {
        close(c->map.fd);
        c->map.fd = -1;
        return NULL;
    }
    c->map.mapped = size;
    c->gen = gen;
    c->call = c->passed = 0;
    c->missed = 0;
    c->open = true;
    return c;
}

/* The channel of slot's connection, mapped (once per connection), or NULL when the slot
 * is not open or its channel cannot be had; *before: whether it was mapped already. */
static worker_chan *worker_chan_get(worker *w, unsigned slot, bool *before)
{
    worker_chan *c = &w->chans[slot];
    shmrpc__shm_slot *s = &w->ctl->slots[slot];
    if (atomic_load(&s->state) != SHM_SLOT_OPEN) return NULL;
    uint32_t gen = atomic_load(&s->gen);
    *before = c->open && c->gen == gen;
    return *before ? c : worker_chan_open(w, slot, gen);
}

/* Writes an answer whose bytes fit the state's line or have their room in the channel
 * already, and hands it back. */
static void hand_back(worker_chan *c, int status, const void *data, size_t n)
{
    shmrpc__shm_chan *h = c->map.head;
    /* A small answer rides in the state's line, which RESPONSE moves anyway. One that the
     * handler wrote in its loan (shmrpc_ctx_loan) is in place already. */
    uint8_t *dst = n <= SHMRPC__CHAN_SMALL ? h->small : shmrpc__chan_data(&c->map);
    if (n && dst != data) memcpy(dst, data, n);
    h->status = status;
    h->resp_len = (uint32_t)n;
    /* Before RESPONSE: the client's next request reads it after the answer. */
    if (atomic_load_explicit(&h->watcher, memory_order_relaxed) != c->watch_as)
        atomic_store_explicit(&h->watcher, c->watch_as, memory_order_relaxed);
    /* A store, not a compare-and-swap, which would wait for the line that the client keeps
     * reading: while the call is this worker's, nobody else writes the state (a client
     * that gave up on it marked the claim instead), and the client writes its next
     * request only after this answer. Only a client that took this worker for dead (a bad
     * write to the taker) may have moved on: then the channel holds another call's number,
     * and the answer is not published. The lock is let go of after the answer: with no
     * waiter that is a compare-and-swap and no syscall; a client asleep on it (the kernel
     * marked it so) is handed it then, and finds the answer there. A worker that claimed
     * the next call may have written the lock already: a word that no longer names this
     * worker is left alone. A number written over the call's (a bad write, which the
     * client's checks put back) moved nobody on: the claim still names this call, and a
     * client's next call is the number after it. */
    uint64_t call = atomic_load_explicit(&h->call, memory_order_relaxed);
    if (call == c->call || (call != c->call + 1 &&
                            atomic_load_explicit(&h->claim, memory_order_relaxed) >> 2 == c->call))
        atomic_store_explicit(&h->state.word, SHM_CHAN_RESPONSE, memory_order_release);
    shmrpc__wake(&h->state, 1);
    if (c->lock_tid) shmrpc__lock_release(&h->lock, c->lock_tid);
    c->lock_tid = 0;
}

/* Puts the answer (or the error message) into the channel and hands it back. */
static void answer(worker_chan *c, int status, const void *data, size_t n)
{
    if (n <= SHMRPC__CHAN_SMALL) {
        hand_back(c, status, data, n);
        return;
    }
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    if (shmrpc__chan_reserve(&c->map, n, &err) != 0) {
        status = SHMRPC_ETOOBIG;
        data = shmrpc__msg_get(&err);
        n = strlen(data);
        if (n > SHMRPC__CHAN_SMALL && shmrpc__chan_reserve(&c->map, n, &err) != 0) n = 0;
    }
    hand_back(c, status, data, n); /* room made, or a short message */
    shmrpc_buf_destroy(&err);
}

static void run_call(worker *w, worker_chan *c);

static bool stopping(const worker *w);

/* Whether this worker may watch the channel of slot, which it answers: when it served
 * that connection last as well and no other connection waits, while it spins between
 * calls. Several clients keep the doorbell, which serves them in turn: a watched channel
 * would be served before the others' bits, once more each time the doorbell happened to
 * be empty. */
static bool may_watch(worker *w, unsigned slot)
{
    return w->l->wait.mode != SHMRPC_WAIT_SLEEP && w->last_slot == (int)slot && !stopping(w) &&
           !any_pending(w->ctl);
}

/* Stops watching a channel: the watcher cleared (only if it still names this worker),
 * then the state looked at. A request that its client wrote while the watcher named this
 * worker did not ring: it rings now, so that whichever worker looks at the doorbell next
 * takes it (unless a worker claimed it already). */
static void unwatch(worker *w)
{
    int slot = w->watch;
    w->watch = -1;
    if (slot < 0 || !w->chans[slot].open) return;
    shmrpc__shm_chan *h = w->chans[slot].map.head;
    uint32_t me = w->index + 1;
    if (!atomic_compare_exchange_strong(&h->watcher, &me, 0)) return;
    uint64_t call = atomic_load(&h->call); /* before the state, as take() reads them */
    if (atomic_load(&h->state.word) == SHM_CHAN_REQUEST &&
        shmrpc__shm_claimable(atomic_load(&h->claim), call))
        shmrpc__shm_ring(w->ctl, (unsigned)slot); /* as its client would have */
}

/* Claims the call waiting in channel c for this worker. Its number is read before its
 * state: one read after a REQUEST may be the client's next call's, written but not yet
 * requested, and one read before is that REQUEST's or an older call's, which the claim
 * already names. The claim is a compare-and-swap from the number just before the call's
 * (shmrpc__shm_claimable), which a client withdrawing the call makes too, so one of them
 * has it; nothing is written on the state's line, which the client reads as it spins. A
 * number merely above the claim's would not do: one written over a call being served
 * would make it look new, and this worker would run it a second time (issue 40). */
static bool take(worker_chan *c)
{
    shmrpc__shm_chan *h = c->map.head;
    uint64_t call = atomic_load_explicit(&h->call, memory_order_acquire);
    if (atomic_load_explicit(&h->state.word, memory_order_acquire) != SHM_CHAN_REQUEST)
        return false;
    uint64_t claim = atomic_load_explicit(&h->claim, memory_order_relaxed);
    if (!shmrpc__shm_claimable(claim, call) ||
        !atomic_compare_exchange_strong(&h->claim, &claim,
                                        shmrpc__shm_claim(call, SHM_CLAIM_TAKEN))) {
        c->passed = call;
        return false;
    }
    c->call = call;
    return true;
}

/* After a take that found nothing to take in slot's channel, mapped by an earlier call:
 * the channel the slot leads to now, mapped in its stead when it is another file, or NULL
 * when it is the same (or cannot be had). Connections of a slot are told apart by their
 * gen, which a bad write can set back to one this worker mapped before (a claim over a
 * gen of ~0 makes gen 0 again): the new connection's channel then has the name of the one
 * mapped here, and each of its calls would be looked for in the old one, never taken,
 * until the slot's gen changed (issue 40: shm_scribble_test's client whose calls were
 * never taken again). So the file is compared here (its inode), at the second take in a
 * row on the channel that found nothing: a call that is taken costs nothing more, and one
 * lost to another worker (or withdrawn) seldom twice in a row (4 clients on 2 workers:
 * 0-71 checks in 25 000-70 000 calls a worker; at every such take, 160-220). The client
 * rings again within its next check (5 ms spinning, 20 asleep). */
static worker_chan *worker_chan_moved(worker *w, unsigned slot)
{
    worker_chan *c = &w->chans[slot];
    c->missed = 0;
    struct stat mapped, now;
    uint64_t size;
    int fd = chan_fd_of(w, slot, c->gen, atomic_load(&w->ctl->slots[slot].client.pid), &size);
    bool moved = fd >= 0 && fstat(fd, &now) == 0 && fstat(c->map.fd, &mapped) == 0 &&
                 (now.st_ino != mapped.st_ino || now.st_dev != mapped.st_dev);
    if (fd >= 0) close(fd);
    if (!moved) return NULL;
    if (w->watch == (int)slot) unwatch(w); /* the old channel's watcher named this worker */
    return worker_chan_open(w, slot, c->gen);
}

static void serve_one(worker *w, unsigned slot)
{
    bool mapped_before;
    worker_chan *c = worker_chan_get(w, slot, &mapped_before);
    if (c == NULL) { /* closed or broken: nothing to answer */
        /* Nor to watch: its state, left at REQUEST by a client that died, would bring this
         * worker back here at once, for ever, and keep it from every other connection. */
        if (w->watch == (int)slot) w->watch = -1;
        return;
    }
    /* Noted before the claim, which publishes it: a client that finds its call claimed
     * with no taker named judges this worker until it is named. */
    _Atomic uint32_t *taking = &w->ctl->workers[w->index].taking;
    /* Release, as each store of the note, so that whichever of them a client reads
     * carries what this worker wrote before it (the naming, for a clear). */
    atomic_store_explicit(taking, slot + 1, memory_order_release);
    /* Two takes in a row that found nothing: another worker's, or the client's withdrawal,
     * now and then; every one, in a mapping of a file the slot no longer leads to. */
    if (!take(c) && (!mapped_before || ++c->missed < 2 ||
                     (c = worker_chan_moved(w, slot)) == NULL || !take(c))) {
        atomic_store_explicit(taking, 0, memory_order_release);
        return;
    }
    c->missed = 0;
    shmrpc__shm_chan *h = c->map.head;
    /* The lock right after the claim, on the claim's line. A store: the claim makes the
     * channel this worker's, and whoever held the lock before finished or died (one that
     * has yet to let go of it finds a word that no longer names it, and leaves it be). */
    atomic_store_explicit(&h->lock, w->tid, memory_order_release);
    /* Only when it changes: it is on the state's line, which the client reads as it spins. */
    if (atomic_load_explicit(&h->worker, memory_order_relaxed) != w->index)
        atomic_store_explicit(&h->worker, w->index, memory_order_relaxed);
    /* The client watches the taker once taker_call is its call's number, written last;
     * until then it judges the workers whose `taking` names the channel, so that note is
     * cleared only after. */
    if (atomic_load_explicit(&h->taker.pid, memory_order_relaxed) != w->pid ||
        atomic_load_explicit(&h->taker.start, memory_order_relaxed) != w->start)
        shmrpc__shm_proc_set(&h->taker, w->pid, w->start);
    atomic_store_explicit(&h->taker_call, c->call, memory_order_release);
    atomic_store_explicit(taking, 0, memory_order_release);
    /* A client that slept before the call was taken sleeps on the state: wake it, so it
     * sleeps on the lock from now on (no syscall when it spins). */
    shmrpc__wake(&h->state, 1);
    c->lock_tid = w->tid;
    /* Watching the channel after the answer: its client's next request needs no doorbell. */
    c->watch_as = may_watch(w, slot) ? w->index + 1 : 0;
    w->watch = c->watch_as ? (int)slot : -1;
    run_call(w, c); /* its answer lets go of the lock */
    if (c->lock_tid) shmrpc__lock_release(&c->map.head->lock, w->tid);
    c->lock_tid = 0;
}

/* Room for the answer in the channel of the call being run (shmrpc_ctx_loan). When the
 * channel must grow while the handler reads its request there, it grows into a new mapping
 * and the old one stays until the answer is sent, so the request's view stays valid. */
static int worker_loan(void *arg, size_t size, void **ptr)
{
    worker *w = arg;
    worker_chan *c = w->serving;
    if (c == NULL) return SHMRPC_EINVAL;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    int rc = w->in_place && w->kept.head == NULL
                 ? shmrpc__chan_reserve_keep(&c->map, size, &w->kept, &err)
                 : shmrpc__chan_reserve(&c->map, size, &err);
    shmrpc_buf_destroy(&err);
    if (rc == 0) *ptr = shmrpc__chan_data(&c->map);
    return rc;
}

/* After the answer: the answer buffer's own storage back, the mapping a loan kept gone. */
static void loan_end(worker *w)
{
    shmrpc__ctx_unloan(&w->ctx);
    if (w->kept.head) shmrpc__chan_unmap(&w->kept); /* fd -1: the mapping only */
    w->serving = NULL;
    w->in_place = false;
}

/* Runs the call that this worker took on channel c, and answers it. */
static void run_call(worker *w, worker_chan *c)
{
    shmrpc__shm_chan *h = c->map.head;
    uint32_t method = h->method, len = h->req_len; /* read once */
    int rc = len > w->l->max_msg ? SHMRPC_ETOOBIG : 0;
    if (rc == 0 && len > SHMRPC__CHAN_SMALL) {
        shmrpc_buf err; /* the reason goes unsaid: the client sent what its channel lacks */
        shmrpc_buf_init(&err);
        rc = shmrpc__chan_follow(&c->map, len, &err);
        shmrpc_buf_destroy(&err);
    }
    if (rc != 0) {
        const char *why = "the request's length does not fit its channel";
        answer(c, rc == SHMRPC_ETOOBIG ? rc : SHMRPC_EPROTO, why, strlen(why));
        return;
    }
    /* The client could rewrite the request while it runs: run a private copy, unless the
     * handler said it reads in place (shmrpc_server_set_in_place; docs/shm-transport.md,
     * "Loaned buffers"). A small request is copied anyway, out of the state's line, onto
     * the stack: the whole line's part, which the compiler copies without a loop. */
    uint8_t small[SHMRPC__CHAN_SMALL];
    const uint8_t *data = small;
    w->in_place = len > SHMRPC__CHAN_SMALL && shmrpc__server_in_place(w->l->server, method);
    if (len <= SHMRPC__CHAN_SMALL) {
        memcpy(small, h->small, sizeof small);
    } else {
        data = shmrpc__chan_data(&c->map);
        if (!w->in_place) {
            shmrpc_buf_clear(&w->req);
            if (shmrpc_buf_append(&w->req, data, len) != 0) {
                answer(c, SHMRPC_ENOMEM, "out of memory", 13);
                return;
            }
            data = w->req.data;
        }
    }
    w->serving = c;
    w->ctx.draining = stopping(w); /* a forked worker's SIGTERM is its own, not the server's */
    rc = shmrpc__dispatch(w->l->server, &w->ctx, method, shmrpc_bytes_of(data, len), &w->resp);
    if (rc != 0) {
        const char *msg = shmrpc__ctx_msg(&w->ctx);
        answer(c, rc, msg, strlen(msg));
    } else {
        answer(c, 0, w->resp.data, w->resp.len);
    }
    loan_end(w);
}

/* Whether a taken slot without a pid has been so long enough to be a dead claim: the
 * first sweep that sees it so notes its gen and the time; one at least half a sweep
 * later frees it. A live client writes its pid a few instructions after its claim. */
static bool pidless_for_long(shmrpc__shm_slot *s, uint32_t gen, int64_t now)
{
    int64_t since = atomic_load(&s->pidless_ns);
    if (since > 0 && since <= now && atomic_load(&s->pidless_gen) == gen)
        return now - since >= SWEEP_EVERY_NS / 2;
    atomic_store(&s->pidless_gen, gen);
    atomic_store(&s->pidless_ns, now);
    return false;
}

/* Frees slot i, seen in state with gen and client, whose client is dead or never finished
 * its claim: its pending bit, and the client's share of awake (in_call: it died counted as
 * awake). Its channel, a memfd, goes with its last holder (workers let go of theirs in
 * forget_closed). */
static void free_slot(shmrpc__shm_ctl *ctl, unsigned i, uint32_t state, uint32_t gen,
                      proc_id client, bool in_call)
{
    shmrpc__shm_slot *s = &ctl->slots[i];
    /* FREEING first: no client claims the slot while its pid is cleared. */
    uint32_t seen = state;
    if (!atomic_compare_exchange_strong(&s->state, &seen, SHM_SLOT_FREEING)) return;
    /* The state alone may have come back to what was seen: freed meanwhile, and claimed
     * anew by a client now in that state. No claim moves while FREEING, so the gen and pid
     * looked at now are the ones that hold: another client's slot is given back. */
    if (atomic_load(&s->gen) != gen || atomic_load(&s->client.pid) != client.pid ||
        atomic_load(&s->client.start) != client.start) {
        seen = SHM_SLOT_FREEING;
        atomic_compare_exchange_strong(&s->state, &seen, state);
        return;
    }
    shmrpc__shm_proc_set(&s->client, 0, 0);
    atomic_store(&s->pidless_ns, 0);
    atomic_store(&s->counted, 0);
    atomic_fetch_and(&ctl->pending[i / 64], ~((uint64_t)1 << (i % 64)));
    if (in_call) shmrpc__count_down(&ctl->awake); /* it died counted as awake */
    atomic_store(&s->state, SHM_SLOT_FREE);
}

/* Repairs the counters that a dead or broken process can leave wrong: the doorbell's
 * bits of workers that are not running (they would cost every call a needless wake-up
 * syscall), and awake above the processes that can be awake (waiters would yield for
 * good). */
static void repair_counters(shmrpc__shm_ctl *ctl)
{
    /* The mask is read before the states, and cleared only if it did not change: a worker
     * marks itself RUNNING before it first sleeps, so a bit that a starting worker set is
     * either seen with its RUNNING or changes the mask. */
    uint64_t mask = atomic_load(&ctl->sleeping), stray = 0;
    unsigned running = 0, taken = 0;
    for (unsigned i = 0; i < SHMRPC__MAX_WORKERS; i++) {
        bool runs = atomic_load(&ctl->workers[i].state) == SHM_WORKER_RUNNING;
        running += runs;
        if (!runs) stray |= mask & ((uint64_t)1 << i);
    }
    if (stray) atomic_compare_exchange_strong(&ctl->sleeping, &mask, mask & ~stray);
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++)
        taken += atomic_load(&ctl->slots[i].state) != SHM_SLOT_FREE;
    uint32_t bound = running + taken, awake = atomic_load(&ctl->awake);
    while (awake > bound && !atomic_compare_exchange_weak(&ctl->awake, &awake, bound)) {
    }
}

/* Restores what the server wrote into the header at listen, where a broken process wrote
 * over it: clients would refuse the service (magic, version, table), take it for dead
 * (owner) or stopping (state) until it restarted. A stop is the manager's: it marks the
 * state STOPPING and tells each worker at once (SIGTERM), so a state that is still not
 * READY half a sweep later, in a worker not told to stop, was written by someone else. */
static void repair_header(worker *w, int64_t now)
{
    shm_listener *l = w->l;
    shmrpc__shm_ctl *ctl = w->ctl;
    uint64_t fingerprint = shmrpc__server_info(l->server)->fingerprint;
    if (atomic_load(&ctl->owner.pid) != l->pid || atomic_load(&ctl->owner.start) != l->start)
        shmrpc__shm_proc_set(&ctl->owner, l->pid, l->start);
    if (ctl->version != SHMRPC__SHM_VERSION) ctl->version = SHMRPC__SHM_VERSION;
    if (ctl->fingerprint != fingerprint) ctl->fingerprint = fingerprint;
    if (ctl->max_msg != l->max_msg) ctl->max_msg = l->max_msg;
    if (memcmp(ctl->service, l->service, sizeof l->service) != 0)
        memcpy(ctl->service, l->service, sizeof l->service);
    if (l->table &&
        (ctl->table_len != l->table_len || memcmp(ctl->table, l->table, l->table_len) != 0)) {
        memcpy(ctl->table, l->table, l->table_len);
        ctl->table_len = l->table_len;
    }
    if (atomic_load(&ctl->magic) != SHMRPC__SHM_MAGIC)
        atomic_store_explicit(&ctl->magic, SHMRPC__SHM_MAGIC, memory_order_release);
    if (atomic_load(&ctl->state) == SHM_READY || stopping(w)) {
        w->not_ready_ns = 0;
    } else if (w->not_ready_ns == 0) {
        w->not_ready_ns = now;
    } else if (now - w->not_ready_ns >= SWEEP_EVERY_NS / 2) {
        atomic_store(&ctl->state, SHM_READY);
        w->not_ready_ns = 0;
    }
}

/* Frees the slots of clients that died without closing (or during their claim); then
 * repairs the header and the shared counters. */
static void sweep(worker *w)
{
    shmrpc__shm_ctl *ctl = w->ctl;
    int64_t now = shmrpc__now_ns();
    int64_t due = atomic_load(&ctl->next_sweep_ns);
    /* A due time further off than one sweep was written by no sweep: sweep now. */
    if ((now < due && due - now <= SWEEP_EVERY_NS) ||
        !atomic_compare_exchange_strong(&ctl->next_sweep_ns, &due, now + SWEEP_EVERY_NS))
        return;
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++) {
        shmrpc__shm_slot *s = &ctl->slots[i];
        uint32_t state = atomic_load(&s->state), gen = atomic_load(&s->gen);
        int32_t pid = atomic_load_explicit(&s->client.pid, memory_order_acquire);
        uint64_t start = atomic_load(&s->client.start); /* written before the pid */
        if (state == SHM_SLOT_FREE) continue;
        if (pid == 0 ? !pidless_for_long(s, gen, now) : shmrpc__proc_alive(pid, start)) continue;
        /* Looked at again: a claim may have moved on during the look at /proc. Checked
         * before the swap too, so that a live client's slot is seldom FREEING even for the
         * moment free_slot takes to give it back (its hello, or its check of the slot,
         * would fail meanwhile). */
        if (atomic_load(&s->gen) != gen || atomic_load(&s->client.pid) != pid ||
            atomic_load(&s->client.start) != start)
            continue;
        free_slot(ctl, i, state, gen, (proc_id){pid, start}, counts_awake(s));
    }
    repair_header(w, now);
    repair_counters(ctl);
}

/* Restores this worker's entry where a bad write changed it. The worker writes it once,
 * at its start, and nothing else would mend it: with its state not RUNNING, sweeps took the
 * worker for gone and cleared its bit in `sleeping` while it slept (its clients' rings then
 * woke nobody until its sleep ended), bounded awake by one worker less, and clients could
 * not tell its pid while it was taking their call (issue 40: shm_scribble_test's workers'
 * entries still held the scribbler's bytes 10 s after the writes). Called between calls,
 * where the worker is taking no channel. */
static void restore_entry(worker *w)
{
    shmrpc__shm_worker *me = &w->ctl->workers[w->index];
    if (atomic_load(&me->proc.pid) != w->pid || atomic_load(&me->proc.start) != w->start)
        shmrpc__shm_proc_set(&me->proc, w->pid, w->start);
    if (atomic_load(&me->taking) != 0) atomic_store(&me->taking, 0);
    if (atomic_load(&me->state) != SHM_WORKER_RUNNING) atomic_store(&me->state, SHM_WORKER_RUNNING);
}

/* Lets go of the mappings of connections that are gone or were claimed anew. */
static void forget_closed(worker *w)
{
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++) {
        worker_chan *c = &w->chans[i];
        shmrpc__shm_slot *s = &w->ctl->slots[i];
        if (c->open && (atomic_load(&s->state) != SHM_SLOT_OPEN || atomic_load(&s->gen) != c->gen))
            worker_chan_close(c);
    }
}

/* A forked worker stops when its manager tells it (SIGTERM, after the call it serves)
 * and dies with it (PR_SET_PDEATHSIG); one serving in the listening process stops on
 * shmrpc_server_stop(). Nothing here costs a syscall: it runs once per call. */
/* Set in a worker by the manager's SIGTERM. The manager's word, not the segment's: a
 * client writing STOPPING there must not be able to stop the workers. */
static volatile sig_atomic_t told_to_stop;

static void on_stop(int sig)
{
    (void)sig;
    told_to_stop = 1;
}

static bool stopping(const worker *w)
{
    return told_to_stop || atomic_load(&w->l->stop);
}

/* The state of the channel this worker watches, or UINT32_MAX when it no longer may: its
 * mapping went, or its watcher names another (a worker that took a call this one left,
 * or a bad write). */
static uint32_t watched(worker *w)
{
    worker_chan *c = &w->chans[w->watch];
    if (!c->open ||
        atomic_load_explicit(&c->map.head->watcher, memory_order_relaxed) != w->index + 1)
        return UINT32_MAX;
    return atomic_load_explicit(&c->map.head->state.word, memory_order_acquire);
}

/* Whether the watched channel's state, seen, is a request for this worker to try: not
 * one it found claimed already (another worker's call runs with its state at REQUEST). */
static bool watched_request(worker *w, uint32_t seen)
{
    const worker_chan *c = &w->chans[w->watch];
    return seen == SHM_CHAN_REQUEST &&
           atomic_load_explicit(&c->map.head->call, memory_order_relaxed) != c->passed;
}

static int worker_check(void *arg)
{
    return stopping(arg) ? SHMRPC_ECLOSED : 0;
}

/* Serves the call waiting in slot's channel; returns the time it ended. The call counts
 * in its method's statistics then, after its answer: its client waits for no clock read. */
static int64_t serve(worker *w, int slot)
{
    if (slot != w->watch) unwatch(w);
    serve_one(w, (unsigned)slot);
    w->last_slot = slot;
    w->last_call_ns = shmrpc__now_ns();
    shmrpc__ctx_count(&w->ctx, w->last_call_ns);
    return w->last_call_ns;
}

static int worker_run(shm_listener *l, unsigned index)
{
    worker *w = calloc(1, sizeof *w);
    if (w == NULL) return SHMRPC_ENOMEM;
    w->l = l;
    w->ctl = l->ctl;
    w->index = index;
    w->next = index * 17 % SHMRPC__MAX_CONNS;
    w->last_slot = -1;
    w->watch = -1;
    shmrpc_buf_init(&w->req);
    shmrpc_buf_init(&w->resp);
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++)
        w->chans[i].map.fd = -1;
    w->kept.fd = -1;
    int rc = shmrpc__ctx_init(&w->ctx, l->server);
    if (rc != 0) {
        free(w);
        return rc;
    }
    w->ctx.loan = worker_loan; /* answers in the channel (shmrpc_ctx_loan) */
    w->ctx.loan_arg = w;
    uint32_t n_rows;
    shmrpc__stats_row *rows = shmrpc__stats_rows(&l->stats, (int)index, &n_rows);
    shmrpc__ctx_set_stats(&w->ctx, rows, n_rows);
    w->ctx.count_later = true;
    shmrpc__shm_worker *me = &w->ctl->workers[index];
    w->pid = getpid();
    w->start = shmrpc__proc_start(w->pid);
    w->tid = (uint32_t)gettid();
    atomic_store(&me->taking, 0); /* what a dead worker of this slot was taking */
    shmrpc__shm_proc_set(&me->proc, w->pid, w->start);
    shmrpc__presence_update(&me->presence);
    atomic_store(&me->state, SHM_WORKER_RUNNING);
    atomic_fetch_add(&w->ctl->awake, 1);
    shmrpc_wait_opts idle = l->wait;
    idle.mode = SHMRPC_WAIT_SLEEP;
    /* Stopping rings the doorbell, so a sleeping worker needs no frequent checks. */
    shmrpc__waiter waiter = {.self = &me->presence,
                             .check = worker_check,
                             .check_arg = w,
                             .awake = &w->ctl->awake,
                             .check_ns = SWEEP_EVERY_NS,
                             .sleeping = &w->ctl->sleeping,
                             .sleeping_bit = (uint64_t)1 << index};
    /* Serving in the listening process, the worker looks after the rendezvous too: when it
     * has nothing to do (a client rings the doorbell when its hello is not answered at
     * once), and every millisecond while calls keep it busy. */
    bool pumps = l->rdv && w->pid == l->pid;
    /* The clock read just after the last call, while nothing else took time since: one
     * read per call serves the call's statistics, the pump, the sweep's and the spin's
     * times (each read costs 20-50 ns here, while the client waits for the worker to watch
     * again; issue 18). */
    int64_t fresh = 0;
    while (!stopping(w)) {
        /* The channel this worker watches: its request came without the doorbell. */
        int slot = w->watch >= 0 && watched_request(w, watched(w)) ? w->watch : -1;
        if (w->first_look) { /* the pause before it: one less if the request was there */
            w->first_look = false;
            if (slot < 0 && w->quiet < SHMRPC__SPIN_QUIET) w->quiet++;
            if (slot >= 0 && w->quiet > 0) w->quiet--;
        }
        if (slot < 0) slot = take_pending(w);
        if (slot >= 0) {
            fresh = serve(w, slot);
            if (pumps && w->last_call_ns >= w->next_pump_ns) {
                shmrpc__rdv_pump(l->rdv);
                w->next_pump_ns = w->last_call_ns + 1000 * 1000;
            }
            /* Its client reads the answer and then writes its next request on the line
             * this worker watches: a look in between takes the line back, and the
             * request's write must fetch it again, a transfer more per call (on cores far
             * apart, 5-8% of a call; docs/shm-transport.md). So a watching worker first
             * pauses about as long as its client takes to call again: learnt at the look
             * that follows, which finds the request there about half the time. */
            w->first_look = w->watch >= 0;
            for (unsigned i = 0; w->first_look && i < w->quiet; i++)
                shmrpc__cpu_relax();
            continue;
        }
        if (pumps) shmrpc__rdv_pump(l->rdv);
        /* Whether a sweep is due is looked at once a millisecond at most: the due time
         * shares a line with awake, which every call's client writes, and reading it after
         * every call pulls that line away from the next one (issue 18). */
        int64_t idle_ns = fresh && !pumps ? fresh : shmrpc__now_ns();
        bool looked = false; /* whether the sweep or the forgetting took time */
        fresh = 0;
        if (idle_ns >= w->next_look_ns) {
            sweep(w);
            w->next_look_ns = idle_ns + SWEEP_LOOK_NS;
            looked = true;
        }
        if (idle_ns >= w->next_forget_ns) {
            forget_closed(w);
            restore_entry(w);
            w->next_forget_ns = idle_ns + SWEEP_EVERY_NS;
            looked = true;
        }
        uint32_t bell = atomic_load(&w->ctl->doorbell.word);
        slot = take_pending(w); /* a request may have rung before we read the bell */
        if (slot >= 0) {
            fresh = serve(w, slot);
            continue;
        }
        /* Spinning on the CPU of the client that will call next only keeps it away; and
         * once the spin budget has passed since the last call, an idle worker sleeps at
         * once, waking only to sweep: an idle service costs next to nothing. */
        int64_t now = looked ? shmrpc__now_ns() : idle_ns;
        bool spins = now - w->last_call_ns < l->wait.spin_ns;
        /* Watching a channel, the worker spins on its state as well as on the doorbell,
         * and never sleeps so: once its spin is over it stops watching, and sleeps on the
         * doorbell alone. */
        uint32_t seen = 0;
        if (w->watch >= 0 && (!spins || (seen = watched(w)) == UINT32_MAX)) unwatch(w);
        if (w->watch >= 0 && watched_request(w, seen)) continue;
        waiter.also = w->watch >= 0 ? &w->chans[w->watch].map.head->state.word : NULL;
        waiter.also_old = seen;
        waiter.peer = w->last_slot >= 0 ? &w->ctl->slots[w->last_slot].presence : NULL;
        waiter.opts = spins ? &l->wait : &idle;
        shmrpc__wait_while(&w->ctl->doorbell, bell,
                           waiter.also ? w->last_call_ns + l->wait.spin_ns : now + SWEEP_EVERY_NS,
                           &waiter);
    }
    unwatch(w);
    atomic_fetch_sub(&w->ctl->awake, 1);
    atomic_store(&me->state, SHM_WORKER_FREE);
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++)
        worker_chan_close(&w->chans[i]);
    shmrpc__ctx_destroy(&w->ctx);
    shmrpc_buf_destroy(&w->req);
    shmrpc_buf_destroy(&w->resp);
    free(w);
    return 0;
}

static int crew_run(void *arg, int index)
{
    shm_listener *l = arg;
    struct sigaction stop = {.sa_handler = on_stop}; /* no SA_RESTART: a futex sleep ends */
    sigaction(SIGTERM, &stop, NULL);
    /* The rendezvous and the channels handed over are the manager's: a worker's copies
     * would keep the name bound after the manager died, and channels alive after their
     * connections. */
    shmrpc__rdv_close(l->rdv);
    l->rdv = NULL;
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++)
        if (l->held_fd[i] >= 0) close(l->held_fd[i]), l->held_fd[i] = -1;
    return worker_run(l, (unsigned)index);
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
        return worker_run(l, 0);
    }
    return manage(l, workers);
}

static void shm_poke(shmrpc__listener *base)
{
    shm_listener *l = (shm_listener *)base;
    int fd = l->stop_pipe[1];
    if (fd >= 0 && write(fd, "", 1) < 0) {
        /* full: the manager wakes up anyway */
    }
}

static void shm_stop(shmrpc__listener *base)
{
    shm_listener *l = (shm_listener *)base;
    atomic_store(&l->stop, 1);
    int fd = l->stop_pipe[1];
    if (fd >= 0 && write(fd, "", 1) < 0) {
        /* full: the manager wakes up anyway */
    }
    if (l->ctl) { /* async-signal-safe: atomics, write() and a futex syscall */
        atomic_fetch_add(&l->ctl->doorbell.word, 1);
        /* Whatever the mask says: a stop is rare, and must not wait for a bounded sleep. */
        syscall(SYS_futex, &l->ctl->doorbell.word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    }
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
    munmap(l->ctl, sizeof *l->ctl);
    close(l->fd);
    free(l);
}
