/* SPDX-License-Identifier: MIT */
/* The shm:// rendezvous: the manager's Unix socket where clients hand over their channels,
 * and the client's side of it (shm_rdv.h, docs/shm-transport.md). Everything on the
 * server side is nonblocking and bounded: a peer that connects and says nothing, says
 * nonsense, or connects ten thousand times costs a bounded number of descriptors and a
 * bounded amount of work per wake-up, never a stall. */
#include "transport/shm/shm_rdv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/proc.h"
#include "transport/shm/shm_int.h"

#define RDV_MAGIC 0x53525631u /* "SRV1" */
#define RDV_PENDING_MAX 64    /* handshakes in progress; the oldest goes when one more comes */
#define RDV_CONNS_MAX (SHMRPC__MAX_CONNS + RDV_PENDING_MAX)
#define RDV_HANDSHAKE_NS ((int64_t)2 * 1000 * 1000 * 1000) /* from accept to hello */
#define RDV_ACCEPT_BATCH 256                               /* accepts per pump */
#define RDV_PAUSE_NS ((int64_t)100 * 1000 * 1000)          /* no accepts after EMFILE, for this */
#define TAG_LISTEN UINT32_MAX
#define TAG_TIMER (UINT32_MAX - 1)

/* What a client sends, once, with its channel's descriptor (SCM_RIGHTS). */
typedef struct rdv_hello {
    uint32_t magic;
    uint32_t version; /* SHMRPC__SHM_VERSION */
    uint32_t slot;
    uint32_t gen;
    uint32_t flags; /* SHMRPC__RDV_* */
    uint32_t unused;
} rdv_hello;

/* What the manager answers: status 0, or why not. */
typedef struct rdv_answer {
    uint32_t magic;
    int32_t status;
    char msg[504];
} rdv_answer;

/* A connection: conns[slot] once its hello was taken for that slot; conns[256 + k] while
 * its hello is awaited. */
typedef struct rdv_conn {
    int fd; /* -1: unused */
    int32_t pid;
    uint32_t slot, gen;
    int64_t deadline; /* pending: when it is dropped */
    uint64_t seq;     /* pending: accept order, to drop the oldest */
} rdv_conn;

struct shmrpc__rdv {
    int lfd, ep, tfd;
    int lock;      /* the name's lock file, held (flock) while this server lives */
    int32_t owner; /* the process that listened: only it removes the files */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char lock_path[SHMRPC__NS_MAX + SHMRPC__KEY_MAX + 16];
    shmrpc__rdv_hooks hooks;
    uint64_t seq;
    int64_t paused_until; /* accepts paused after EMFILE/ENFILE until then, or 0 */
    rdv_conn conns[RDV_CONNS_MAX];
};

/* The rendezvous of key: a socket in this user's private directory (names.h), which a
 * server (create) makes when missing. */
static int rdv_addr(struct sockaddr_un *a, const char *key, bool create, shmrpc_buf *err)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    char path[SHMRPC__NS_MAX + SHMRPC__KEY_MAX + 16];
    int rc = shmrpc__shm_path(path, sizeof path, key, ":rdv", create, err);
    if (rc != 0) return rc;
    if (strlen(path) >= sizeof a->sun_path) {
        shmrpc__msg_set(err, "the rendezvous of shm://%s, %s, is longer than a socket's %zu bytes",
                        key, path, sizeof a->sun_path - 1);
        return SHMRPC_EINVAL;
    }
    memcpy(a->sun_path, path, strlen(path) + 1);
    return 0;
}

static int rdv_error(shmrpc_buf *err, const char *what, const char *key)
{
    int e = errno;
    shmrpc__msg_set(err, "%s the rendezvous of shm://%s: %s", what, key, strerror(e));
    return SHMRPC_ESYS(e);
}

/* --- the server side -------------------------------------------------------------------- */

static void conn_close(shmrpc__rdv *r, unsigned i)
{
    if (r->conns[i].fd < 0) return;
    close(r->conns[i].fd); /* which also takes it out of the epoll set */
    r->conns[i] = (rdv_conn){.fd = -1};
}

static void answer(int fd, int status, const char *msg)
{
    rdv_answer a = {.magic = RDV_MAGIC, .status = status};
    snprintf(a.msg, sizeof a.msg, "%s", msg);
    if (send(fd, &a, sizeof a, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        /* it left, or never reads: it is dropped either way */
    }
}

/* The pid written in a lock file by the server that holds it, or 0. */
static int32_t lock_holder(int fd)
{
    char buf[16] = "";
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    return n > 0 ? (int32_t)strtol(buf, NULL, 10) : 0;
}

/* Takes the lock of key's name, the file at r->lock_path: one server per name. flock's
 * lock goes with the last descriptor of the open file, in the server and the workers it
 * forked (they let go of theirs when they start), so a dead server's is free once its
 * workers are gone too, a moment later: that is waited for, up to a second. The server
 * that held it removes the file as it stops, still holding it: a lock taken on a file that
 * has lost its name by then is let go, and taken again on the new one. A lock that cannot
 * be taken for another reason (flock's ENOLCK) leaves the file where it is: it may be
 * another server's, made a moment ago; the next server of the name takes it. */
static int take_lock(shmrpc__rdv *r, const char *key, shmrpc_buf *err)
{
    int64_t until = shmrpc__now_ns() + (int64_t)1000 * 1000 * 1000;
    for (;;) {
        int fd = open(r->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) return rdv_error(err, "cannot open the lock of", key);
        struct stat held, named;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            if (fstat(fd, &held) == 0 && stat(r->lock_path, &named) == 0 &&
                held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
                char pid[16];
                int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
                if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
                    /* the pid is for messages only */
                }
                r->lock = fd;
                return 0;
            }
            close(fd);
            continue;
        }
        int e = errno;
        int32_t pid = lock_holder(fd);
        close(fd);
        if (e != EWOULDBLOCK) {
            errno = e;
            return rdv_error(err, "cannot lock", key);
        }
        if (shmrpc__now_ns() >= until) {
            shmrpc__msg_set(err, "shm://%s is already served by pid %d", key, (int)pid);
            return SHMRPC_EBUSY;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int shmrpc__rdv_listen(const char *key, const shmrpc__rdv_hooks *hooks, shmrpc__rdv **out,
                       shmrpc_buf *err)
{
    shmrpc__rdv *r = calloc(1, sizeof *r);
    if (r == NULL) return SHMRPC_ENOMEM;
    r->hooks = *hooks;
    r->lfd = r->ep = r->tfd = r->lock = -1;
    r->owner = getpid();
    for (unsigned i = 0; i < RDV_CONNS_MAX; i++)
        r->conns[i].fd = -1;
    struct sockaddr_un a;
    int rc = rdv_addr(&a, key, true, err);
    if (rc == 0) rc = shmrpc__shm_path(r->lock_path, sizeof r->lock_path, key, ":lock", true, err);
    if (rc == 0) rc = take_lock(r, key, err);
    /* Ours now: a socket left at the name is a dead server's. */
    if (rc == 0 && unlink(a.sun_path) != 0 && errno != ENOENT)
        rc = rdv_error(err, "cannot remove the old rendezvous of", key);
    if (rc == 0) {
        memcpy(r->path, a.sun_path, sizeof r->path);
        r->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (r->lfd < 0)
            rc = rdv_error(err, "cannot create", key);
        else if (bind(r->lfd, (struct sockaddr *)&a, sizeof a) != 0)
            rc = rdv_error(err, "cannot bind", key);
        else if (listen(r->lfd, SOMAXCONN) != 0)
            rc = rdv_error(err, "cannot listen on", key);
    }
    if (rc == 0) {
        r->ep = epoll_create1(EPOLL_CLOEXEC);
        r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        struct epoll_event le = {.events = EPOLLIN, .data.u32 = TAG_LISTEN};
        struct epoll_event te = {.events = EPOLLIN, .data.u32 = TAG_TIMER};
        if (r->ep < 0 || r->tfd < 0 || epoll_ctl(r->ep, EPOLL_CTL_ADD, r->lfd, &le) != 0 ||
            epoll_ctl(r->ep, EPOLL_CTL_ADD, r->tfd, &te) != 0)
            rc = rdv_error(err, "cannot watch", key);
    }
    if (rc != 0) {
        shmrpc__rdv_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

int shmrpc__rdv_fd(const shmrpc__rdv *r)
{
    return r->ep;
}

void shmrpc__rdv_close(shmrpc__rdv *r)
{
    if (r == NULL) return;
    for (unsigned i = 0; i < RDV_CONNS_MAX; i++)
        conn_close(r, i);
    /* The server that listened removes its socket, then its lock's file, before it lets go
     * of the lock (take_lock); a worker only closes its copies. */
    if (r->lock >= 0 && getpid() == r->owner) {
        if (r->lfd >= 0) unlink(r->path);
        unlink(r->lock_path);
    }
    if (r->lfd >= 0) close(r->lfd);
    if (r->lock >= 0) close(r->lock);
    if (r->ep >= 0) close(r->ep);
    if (r->tfd >= 0) close(r->tfd);
    free(r);
}

/* Makes a descriptor a peer sent safer to close here: close(2) of the last copy of a
 * socket with SO_LINGER and data it cannot send waits for the linger time, which would
 * stall the manager (and every hello behind it) that long. On what is not a socket it
 * fails, and costs a syscall. Not proof against a peer that means it (a lingering socket
 * queued inside a Unix socket it sends, or linger set again from its own copy before it
 * closes that): docs/shm-transport.md. */
static void unlinger(int fd)
{
    struct linger off = {0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, sizeof off);
}

/* Reads a pending connection's hello, if it came: takes the channel it hands over, or
 * tells the client why not and drops it. */
static void handshake(shmrpc__rdv *r, unsigned i)
{
    rdv_conn *c = &r->conns[i];
    rdv_hello h;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cm;
    struct iovec iov = {.iov_base = &h, .iov_len = sizeof h};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
    ssize_t n = recvmsg(c->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    int chan = -1, extra = 0;
    /* A message of 0 bytes may carry descriptors too: the kernel installed them in this
     * process, and only a close frees them (50 such left 50 more fds with the manager). */
    for (struct cmsghdr *cmsg = n >= 0 ? CMSG_FIRSTHDR(&m) : NULL; cmsg;
         cmsg = CMSG_NXTHDR(&m, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t j = 0; j < k; j++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cmsg) + j * sizeof(int), sizeof fd);
            unlinger(fd);
            if (chan < 0)
                chan = fd;
            else
                close(fd), extra++;
        }
    }
    const char *why = NULL;
    if (n <= 0)
        why = ""; /* it left, or broke: nobody to tell */
    else if ((size_t)n != sizeof h || (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || extra ||
             h.magic != RDV_MAGIC)
        why = "a malformed hello: expected the shm:// handshake with one descriptor";
    else if (h.version != SHMRPC__SHM_VERSION)
        why = "a hello of another version of the shm:// transport";
    else if (chan < 0)
        why = "a hello without its channel's descriptor";
    else if (h.slot >= SHMRPC__MAX_CONNS)
        why = "a hello for a slot that does not exist";
    if (why) {
        if (chan >= 0) close(chan);
        if (*why) answer(c->fd, SHMRPC_EPROTO, why);
        conn_close(r, i);
        return;
    }
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    int rc = r->hooks.take(r->hooks.arg, h.slot, h.gen, c->pid, h.flags, chan, &err);
    if (rc != 0) {
        answer(c->fd, rc, shmrpc__msg_get(&err));
        shmrpc_buf_destroy(&err);
        conn_close(r, i);
        return;
    }
    shmrpc_buf_destroy(&err);
    answer(c->fd, 0, "");
    /* The slot's earlier connection, if it is still here, is of a client that left the
     * slot (it was claimed anew since): it no longer speaks for it. */
    conn_close(r, h.slot);
    r->conns[h.slot] = (rdv_conn){.fd = c->fd, .pid = c->pid, .slot = h.slot, .gen = h.gen};
    *c = (rdv_conn){.fd = -1};
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = h.slot};
    epoll_ctl(r->ep, EPOLL_CTL_MOD, r->conns[h.slot].fd, &ev);
}

/* A connection whose hello was taken: anything from it now is its end (a hang-up when its
 * client died or closed, or bytes it has no business sending). */
static void ended(shmrpc__rdv *r, unsigned i)
{
    rdv_conn c = r->conns[i];
    conn_close(r, i);
    r->hooks.hangup(r->hooks.arg, c.slot, c.gen, c.pid);
}

/* A free place for a pending connection: the oldest one goes when there is none. */
static unsigned pending_place(shmrpc__rdv *r)
{
    unsigned oldest = SHMRPC__MAX_CONNS;
    for (unsigned i = SHMRPC__MAX_CONNS; i < RDV_CONNS_MAX; i++) {
        if (r->conns[i].fd < 0) return i;
        if (r->conns[i].seq < r->conns[oldest].seq) oldest = i;
    }
    answer(r->conns[oldest].fd, SHMRPC_EBUSY, "too many handshakes at once; try again");
    conn_close(r, oldest);
    return oldest;
}

static void accept_some(shmrpc__rdv *r, int64_t now)
{
    for (int k = 0; k < RDV_ACCEPT_BATCH; k++) {
        int fd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The socket stays readable: stop watching it for a while, or the manager
                 * would spin. */
                epoll_ctl(r->ep, EPOLL_CTL_DEL, r->lfd, NULL);
                r->paused_until = now + RDV_PAUSE_NS;
            }
            return;
        }
        struct ucred cred;
        socklen_t clen = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || cred.uid != geteuid()) {
            char msg[160];
            snprintf(msg, sizeof msg, "this service belongs to uid %u, not to uid %u",
                     (unsigned)geteuid(), (unsigned)cred.uid);
            answer(fd, SHMRPC_EPERM, msg);
            close(fd);
            continue;
        }
        unsigned i = pending_place(r);
        r->conns[i] = (rdv_conn){
            .fd = fd, .pid = cred.pid, .deadline = now + RDV_HANDSHAKE_NS, .seq = ++r->seq};
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = i};
        if (epoll_ctl(r->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            conn_close(r, i);
            continue;
        }
        handshake(r, i); /* a client sends its hello right after it connects */
    }
}

/* Drops the handshakes past their deadline, and sets the timer for the next one. */
static void expire(shmrpc__rdv *r, int64_t now)
{
    int64_t next = r->paused_until;
    for (unsigned i = SHMRPC__MAX_CONNS; i < RDV_CONNS_MAX; i++) {
        if (r->conns[i].fd < 0) continue;
        if (r->conns[i].deadline <= now) {
            answer(r->conns[i].fd, SHMRPC_ETIMEDOUT, "no hello within the handshake's deadline");
            conn_close(r, i);
        } else if (next == 0 || r->conns[i].deadline < next) {
            next = r->conns[i].deadline;
        }
    }
    struct itimerspec t = {{0, 0}, {0, 0}};
    if (next) {
        int64_t in = next > now ? next - now : 1;
        t.it_value = (struct timespec){(time_t)(in / 1000000000), (long)(in % 1000000000)};
    }
    timerfd_settime(r->tfd, 0, &t, NULL);
}

void shmrpc__rdv_pump(shmrpc__rdv *r)
{
    struct epoll_event ev[64];
    int n = epoll_wait(r->ep, ev, 64, 0);
    bool listen_ready = false;
    int64_t now = shmrpc__now_ns();
    /* In three rounds: connections whose hello was taken, then those awaited (a hello
     * taken moves its connection to its slot's place, closing whoever held it), then
     * accepts (which may reuse the place of one dropped): no stale event reaches a
     * connection that took another's place in this round. */
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < n; k++) {
            uint32_t tag = ev[k].data.u32;
            if (tag >= RDV_CONNS_MAX || (tag < SHMRPC__MAX_CONNS) != (round == 0)) continue;
            if (r->conns[tag].fd < 0) continue;
            if (round == 0)
                ended(r, tag);
            else
                handshake(r, tag);
        }
    }
    for (int k = 0; k < n; k++) {
        if (ev[k].data.u32 == TAG_LISTEN) listen_ready = true;
        if (ev[k].data.u32 != TAG_TIMER) continue;
        uint64_t ticks;
        if (read(r->tfd, &ticks, sizeof ticks) < 0) {
            /* nothing to drain */
        }
    }
    if (r->paused_until && now >= r->paused_until) {
        struct epoll_event le = {.events = EPOLLIN, .data.u32 = TAG_LISTEN};
        epoll_ctl(r->ep, EPOLL_CTL_ADD, r->lfd, &le);
        r->paused_until = 0;
        listen_ready = true;
    }
    if (listen_ready) accept_some(r, now);
    expire(r, now);
}

/* --- the client side -------------------------------------------------------------------- */

int shmrpc__rdv_connect(const char *key, int64_t timeout_ns, int *fd_out, int32_t *pid,
                        shmrpc_buf *err)
{
    struct sockaddr_un a;
    int rc = rdv_addr(&a, key, false, err);
    if (rc != 0) return rc;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return rdv_error(err, "cannot create a socket for", key);
    int64_t deadline = shmrpc__now_ns() + timeout_ns;
    /* A full backlog says EAGAIN at once: try again, within the deadline. */
    while (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        if (e == EINTR || (e == EAGAIN && shmrpc__now_ns() < deadline)) {
            if (e == EAGAIN) {
                struct timespec ts = {0, 1000 * 1000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        close(fd);
        if (e == ECONNREFUSED || e == ENOENT) { /* none, or a dead server's socket */
            shmrpc__msg_set(err, "no rendezvous at shm://%s", key);
            return SHMRPC_ESYS(ECONNREFUSED);
        }
        if (e == EAGAIN) {
            shmrpc__msg_set(err, "the rendezvous of shm://%s stayed full (its backlog)", key);
            return SHMRPC_EUNAVAIL;
        }
        errno = e;
        return rdv_error(err, "cannot connect to", key);
    }
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
        int rc = rdv_error(err, "cannot ask who holds", key);
        close(fd);
        return rc;
    }
    if (cred.uid != geteuid()) {
        shmrpc__msg_set(err,
                        "shm://%s is served by uid %u (pid %d), not by this process's uid %u; "
                        "refusing it",
                        key, (unsigned)cred.uid, (int)cred.pid, (unsigned)geteuid());
        close(fd);
        return SHMRPC_EPERM;
    }
    *fd_out = fd;
    *pid = cred.pid;
    return 0;
}

int shmrpc__rdv_hello(int fd, uint32_t slot, uint32_t gen, uint32_t flags, int chan_fd,
                      int64_t deadline_ns, void (*ring)(void *), void *ring_arg, shmrpc_buf *err)
{
    rdv_hello h = {.magic = RDV_MAGIC,
                   .version = SHMRPC__SHM_VERSION,
                   .slot = slot,
                   .gen = gen,
                   .flags = flags};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cm;
    memset(&cm, 0, sizeof cm);
    struct iovec iov = {.iov_base = &h, .iov_len = sizeof h};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&m);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &chan_fd, sizeof chan_fd);
    ssize_t n;
    do
        n = sendmsg(fd, &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        shmrpc__msg_set(err, "the server let go of the rendezvous before the hello: %s",
                        strerror(errno));
        return SHMRPC_EUNAVAIL;
    }
    /* A manager answers within microseconds; a server serving in its listening process
     * looks at its rendezvous when woken, so it is rung if the answer is slow. */
    int64_t ring_at = shmrpc__now_ns() + 2 * 1000 * 1000;
    rdv_answer ans;
    for (;;) {
        int64_t now = shmrpc__now_ns();
        if (now >= deadline_ns) {
            shmrpc__msg_set(err, "the server did not answer at its rendezvous in time");
            return SHMRPC_EUNAVAIL;
        }
        int64_t until = ring && ring_at < deadline_ns ? ring_at : deadline_ns;
        int ms = (int)((until - now + 999999) / 1000000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, ms);
        if (r == 0 && ring && shmrpc__now_ns() >= ring_at) {
            ring(ring_arg);
            ring = NULL;
        }
        if (r <= 0) continue; /* timed out, or a signal: the deadline decides */
        n = recv(fd, &ans, sizeof ans, MSG_DONTWAIT);
        /* A server that closed with our hello unread (it refused us before reading it)
         * leaves that error first, and its answer after it. */
        if (n < 0 && errno == ECONNRESET) n = recv(fd, &ans, sizeof ans, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        break;
    }
    if (n <= 0) {
        shmrpc__msg_set(err, "the server closed the rendezvous without answering");
        return SHMRPC_EUNAVAIL;
    }
    if ((size_t)n < offsetof(rdv_answer, msg) || ans.magic != RDV_MAGIC) {
        shmrpc__msg_set(err, "a malformed answer at the rendezvous");
        return SHMRPC_EPROTO;
    }
    if (ans.status == 0) return 0;
    ans.msg[sizeof ans.msg - 1] = '\0';
    if ((size_t)n < sizeof ans) ans.msg[0] = '\0';
    shmrpc__msg_set(err, "the server refused the connection: %s", ans.msg);
    return ans.status < 0 ? ans.status : SHMRPC_EPROTO;
}
