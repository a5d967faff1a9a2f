/* SPDX-License-Identifier: MIT */
/* The shm:// server side of the rendezvous (shm_rdv.c knows its sockets and messages):
 * what it does with the channel a client hands over (checked, then held by the listening
 * process for its workers to take), and with a client's hang-up (its slot freed when it
 * died or exec'd). */
#include "transport/shm/shm_server_int.h"

#include "core/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The channel the slot's client handed over for gen, as this process's descriptor (a
 * copy: the caller closes it), or -1 when none was, or it cannot be had: the caller then
 * opens it through /proc as for a client of a version before the rendezvous. A worker
 * takes it from the listening process (pidfd_getfd: a child of the same uid may); the
 * number may be stale by then, which the caller's checks of what it got (the channel's
 * name holds the slot and gen) catch. */
int shmrpc__shm_held_take(shm_listener *l, unsigned slot, uint32_t gen)
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
        shmrpc__shm_free_slot(l->ctl, slot, state, gen, (proc_id){pid, start},
                              shmrpc__shm_counts_awake(s));
    }
    if (ours) held_set(l, slot, 0, -1);
}

/* The rendezvous of the listener's key, and the table of the channels handed over. */
int shmrpc__shm_handover_open(shm_listener *l, shmrpc_buf *err)
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
