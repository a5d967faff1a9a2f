/* SPDX-License-Identifier: MIT */
/* The worker processes of a server (see crew.h). */
#include "rpc/crew.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/wait.h"

#define NS_PER_MS ((int64_t)1000 * 1000)

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static pid_t spawn(shmrpc__crew *c, int i)
{
    pid_t manager = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a worker does not outlive its manager */
    if (getppid() != manager) _exit(1);
    signal(SIGINT, SIG_IGN);
    _exit(c->run(c->arg, i) == 0 ? 0 : 1);
}

static void start(shmrpc__crew *c, int i)
{
    if (c->prepare && c->prepare(c->arg, i) != 0) return; /* tried again on the next round */
    /* One that dies at once is restarted no faster than every 100 ms. */
    int64_t lived = shmrpc__now_ns() - c->started[i];
    if (c->started[i] && lived < 100 * NS_PER_MS) sleep_ns(100 * NS_PER_MS - lived);
    c->pid[i] = spawn(c, i);
    c->fd[i] = c->pid[i] > 0 ? (int)syscall(SYS_pidfd_open, c->pid[i], 0) : -1;
    c->started[i] = shmrpc__now_ns();
    c->leaving[i] = false;
}

/* Reaps worker i if it has exited; true if it had (or never ran). */
static bool reap(shmrpc__crew *c, int i)
{
    if (c->pid[i] > 0 && waitpid(c->pid[i], NULL, WNOHANG) != c->pid[i]) return false;
    if (c->fd[i] >= 0) close(c->fd[i]);
    if (c->pid[i] > 0 && c->reaped) c->reaped(c->arg, i);
    c->fd[i] = -1;
    c->pid[i] = 0;
    c->leaving[i] = false;
    return true;
}

/* Waits up to ms for a worker to die, a stop or a new count, or the watched descriptor
 * (which it then serves). Only live descriptors go to poll(): one whose count exceeds
 * RLIMIT_NOFILE fails at once with EINVAL, even for entries of -1, and the manager would
 * spin. */
static void await_event(shmrpc__crew *c, int ms)
{
    struct pollfd p[SHMRPC__CREW_MAX + 2];
    nfds_t n = 0;
    for (int i = 0; i < SHMRPC__CREW_MAX; i++)
        if (c->fd[i] >= 0) p[n++] = (struct pollfd){.fd = c->fd[i], .events = POLLIN};
    p[n++] = (struct pollfd){.fd = c->stop_fd, .events = POLLIN};
    bool watch = c->watch && !atomic_load(c->stop);
    nfds_t w = n;
    if (watch) p[n++] = (struct pollfd){.fd = c->watch_fd, .events = POLLIN};
    poll(p, n, ms); /* a signal (EINTR) only ends the wait early */
    char drain[16];
    while (read(c->stop_fd, drain, sizeof drain) > 0) {
    }
    if (watch && (p[w].revents & POLLIN)) c->watch(c->arg);
}

int shmrpc__crew_wanted(const shmrpc__crew *c)
{
    int n = c->want ? atomic_load(c->want) : c->n;
    return n < 1 ? 1 : n > SHMRPC__CREW_MAX ? SHMRPC__CREW_MAX : n;
}

/* Brings the running workers to the count wanted: replaces the dead below it, and asks
 * those above it to finish their call in hand and leave. */
static void reconcile(shmrpc__crew *c)
{
    int want = shmrpc__crew_wanted(c);
    for (int i = 0; i < SHMRPC__CREW_MAX && !atomic_load(c->stop); i++) {
        if (i < want) {
            if (reap(c, i)) start(c, i);
        } else if (c->pid[i] > 0 && !reap(c, i) && !c->leaving[i]) {
            kill(c->pid[i], SIGTERM);
            c->leaving[i] = true;
        }
    }
}

int shmrpc__crew_manage(shmrpc__crew *c)
{
    for (int i = 0; i < SHMRPC__CREW_MAX; i++) {
        c->pid[i] = 0;
        c->fd[i] = -1;
        c->started[i] = 0;
        c->leaving[i] = false;
    }
    reconcile(c);
    while (!atomic_load(c->stop)) {
        await_event(c, 1000);
        reconcile(c);
    }
    if (c->stopping) c->stopping(c->arg);
    for (int i = 0; i < SHMRPC__CREW_MAX; i++)
        if (c->pid[i] > 0) kill(c->pid[i], SIGTERM);
    int64_t deadline = shmrpc__now_ns() + 2000 * NS_PER_MS;
    for (;;) {
        int left = 0;
        for (int i = 0; i < SHMRPC__CREW_MAX; i++)
            left += !reap(c, i);
        if (left == 0) break;
        if (shmrpc__now_ns() > deadline) {
            for (int i = 0; i < SHMRPC__CREW_MAX; i++)
                if (c->pid[i] > 0) kill(c->pid[i], SIGKILL);
            deadline = INT64_MAX;
        }
        await_event(c, 10);
    }
    return 0;
}
