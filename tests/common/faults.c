/* SPDX-License-Identifier: MIT */
/* Fault injection by link-time wraps (faults.h). SHMRPC_FAULTS_WRAPPED in tests/CMakeLists.txt
 * lists the same functions as the table below: a function added here is added there. */
#define _GNU_SOURCE /* O_TMPFILE, MREMAP_FIXED */
#include "faults.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/status.h>

/* --- what is armed ------------------------------------------------------------------- */

#define WHICH_MAX 16

static struct {
    char name[32];
    int err; /* 0: the function's own */
} which[WHICH_MAX];
static int n_which;

/* The count, in a page shared with the children forked after faults_arm: with
 * faults_inherit, one count for the whole tree, and the fault fires in one process. */
static struct state {
    _Atomic unsigned nth;      /* 0: nothing fails */
    _Atomic unsigned calls;    /* counted since faults_arm */
    _Atomic bool armed;        /* counting at all */
    const char *_Atomic fired; /* the function that failed (the same address in a fork) */
    _Atomic int fired_errno;
    _Atomic pid_t fired_pid; /* the process it failed in */
} * state;
static bool counting;   /* this process armed, or was forked by one that had */
static bool inherit;    /* faults_inherit */
static pid_t armed_pid; /* the process that armed */

void *__real_mmap(void *a, size_t n, int prot, int fl, int fd, off_t off);

static const struct {
    const char *name;
    int err;
} errnos[] = {
    {"EINTR", EINTR},
    {"EAGAIN", EAGAIN},
    {"ENOMEM", ENOMEM},
    {"EMFILE", EMFILE},
    {"ENFILE", ENFILE},
    {"ENOSPC", ENOSPC},
    {"EIO", EIO},
    {"EACCES", EACCES},
    {"EPERM", EPERM},
    {"EFBIG", EFBIG},
    {"ENOLCK", ENOLCK},
    {"ENOBUFS", ENOBUFS},
    {"EPIPE", EPIPE},
    {"ECONNRESET", ECONNRESET},
    {"ECONNREFUSED", ECONNREFUSED},
    {"ECONNABORTED", ECONNABORTED},
    {"EADDRINUSE", EADDRINUSE},
    {"EWOULDBLOCK", EWOULDBLOCK},
};

static int errno_named(const char *s)
{
    for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
        if (strcmp(errnos[i].name, s) == 0) return errnos[i].err;
    fprintf(stderr, "faults: unknown errno %s\n", s);
    abort();
}

void faults_inherit(bool on)
{
    inherit = on;
}

void faults_arm(unsigned n, const char *w)
{
    if (!state) {
        state = __real_mmap(NULL, sizeof *state, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                            -1, 0);
        if (state == MAP_FAILED) abort();
    }
    atomic_store(&state->armed, false);
    n_which = 0;
    for (const char *p = w ? w : ""; *p;) {
        size_t len = strcspn(p, ",");
        if (n_which == WHICH_MAX || len >= sizeof which[0].name) abort();
        memcpy(which[n_which].name, p, len);
        which[n_which].name[len] = '\0';
        char *colon = strchr(which[n_which].name, ':');
        which[n_which].err = 0;
        if (colon) {
            *colon = '\0';
            which[n_which].err = errno_named(colon + 1);
        }
        n_which++;
        p += len + (p[len] == ',');
    }
    atomic_store(&state->calls, 0);
    atomic_store(&state->fired, NULL);
    atomic_store(&state->fired_errno, 0);
    atomic_store(&state->fired_pid, 0);
    atomic_store(&state->nth, n);
    armed_pid = getpid();
    counting = true;
    atomic_store(&state->armed, true);
}

void faults_disarm(void)
{
    counting = false;
    if (!state) return;
    atomic_store(&state->armed, false);
    atomic_store(&state->nth, 0);
}

bool faults_hit(void)
{
    return state && atomic_load(&state->fired) != NULL;
}

const char *faults_hit_name(void)
{
    return state ? atomic_load(&state->fired) : NULL;
}

int faults_hit_errno(void)
{
    return state ? atomic_load(&state->fired_errno) : 0;
}

pid_t faults_hit_pid(void)
{
    return state ? atomic_load(&state->fired_pid) : 0;
}

unsigned faults_calls(void)
{
    return state ? atomic_load(&state->calls) : 0;
}

/* Whether this call of name fails; errno is then set to err, or to the one named. */
static bool fault(const char *name, int err)
{
    if (!counting || !atomic_load(&state->armed) || (!inherit && getpid() != armed_pid))
        return false;
    if (n_which > 0) {
        int i = 0;
        while (i < n_which && strcmp(which[i].name, name) != 0)
            i++;
        if (i == n_which) return false;
        if (which[i].err) err = which[i].err;
    }
    unsigned n = atomic_fetch_add(&state->calls, 1) + 1;
    if (n != atomic_load(&state->nth)) return false;
    atomic_store(&state->fired_errno, err);
    atomic_store(&state->fired_pid, getpid());
    atomic_store(&state->fired, name);
    errno = err;
    return true;
}

bool faults_status(int rc)
{
    int err = faults_hit_errno();
    if (err == 0) return !faults_say("status %d, and no fault fired", rc);
    if (rc != SHMRPC_ESYS(err) && !(err == ENOMEM && rc == SHMRPC_ENOMEM))
        return !faults_say("status %s (%d) after %s failed with errno %d", shmrpc_strerror(rc), rc,
                           faults_hit_name(), err);
    if (!*shmrpc_errmsg()) return !faults_say("status %d without a message", rc);
    return true;
}

int faults_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

unsigned faults_shm_files(const char *part)
{
    unsigned n = 0;
    DIR *d = opendir("/dev/shm");
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

/* --- the wraps ----------------------------------------------------------------------- */

/* Declares __real_NAME and defines __wrap_NAME, which fails with err and returns bad when
 * its turn comes, and otherwise calls the real one. */
#define WRAP(ret, name, bad, err, params, args)                                                    \
    ret __real_##name params;                                                                      \
    ret __wrap_##name params;                                                                      \
    ret __wrap_##name params                                                                       \
    {                                                                                              \
        if (fault(#name, err)) return bad;                                                         \
        return __real_##name args;                                                                 \
    }

WRAP(void *, malloc, NULL, ENOMEM, (size_t n), (n))
WRAP(void *, calloc, NULL, ENOMEM, (size_t n, size_t size), (n, size))
WRAP(void *, realloc, NULL, ENOMEM, (void *p, size_t n), (p, n))
WRAP(char *, strdup, NULL, ENOMEM, (const char *s), (s))
WRAP(void *, mmap, MAP_FAILED, ENOMEM, (void *a, size_t n, int prot, int fl, int fd, off_t off),
     (a, n, prot, fl, fd, off))
WRAP(int, ftruncate, -1, EFBIG, (int fd, off_t n), (fd, n))
WRAP(int, shm_open, -1, EMFILE, (const char *name, int fl, mode_t mode), (name, fl, mode))
WRAP(int, memfd_create, -1, EMFILE, (const char *name, unsigned fl), (name, fl))
WRAP(int, fchmod, -1, EPERM, (int fd, mode_t mode), (fd, mode))
WRAP(int, flock, -1, ENOLCK, (int fd, int op), (fd, op))
WRAP(int, fstat, -1, ENOMEM, (int fd, struct stat *st), (fd, st))
WRAP(int, stat, -1, ENOMEM, (const char *restrict p, struct stat *restrict st), (p, st))
WRAP(int, lstat, -1, ENOMEM, (const char *restrict p, struct stat *restrict st), (p, st))
WRAP(int, mkdir, -1, ENOSPC, (const char *p, mode_t mode), (p, mode))
WRAP(DIR *, opendir, NULL, EMFILE, (const char *p), (p))
WRAP(FILE *, fopen, NULL, EMFILE, (const char *restrict p, const char *restrict m), (p, m))
WRAP(ssize_t, read, -1, EIO, (int fd, void *b, size_t n), (fd, b, n))
WRAP(ssize_t, write, -1, EIO, (int fd, const void *b, size_t n), (fd, b, n))
WRAP(ssize_t, pread, -1, EIO, (int fd, void *b, size_t n, off_t off), (fd, b, n, off))
WRAP(ssize_t, pwrite, -1, EIO, (int fd, const void *b, size_t n, off_t off), (fd, b, n, off))
WRAP(int, pipe2, -1, EMFILE, (int fds[2], int fl), (fds, fl))
WRAP(int, socket, -1, EMFILE, (int dom, int type, int proto), (dom, type, proto))
WRAP(int, bind, -1, EADDRINUSE, (int fd, const struct sockaddr *a, socklen_t n), (fd, a, n))
WRAP(int, listen, -1, EADDRINUSE, (int fd, int n), (fd, n))
WRAP(int, accept4, -1, EMFILE, (int fd, struct sockaddr *restrict a, socklen_t *restrict n, int fl),
     (fd, a, n, fl))
WRAP(int, connect, -1, ECONNREFUSED, (int fd, const struct sockaddr *a, socklen_t n), (fd, a, n))
WRAP(ssize_t, send, -1, EPIPE, (int fd, const void *b, size_t n, int fl), (fd, b, n, fl))
WRAP(ssize_t, sendmsg, -1, EPIPE, (int fd, const struct msghdr *m, int fl), (fd, m, fl))
WRAP(ssize_t, recv, -1, ECONNRESET, (int fd, void *b, size_t n, int fl), (fd, b, n, fl))
WRAP(ssize_t, recvmsg, -1, ECONNRESET, (int fd, struct msghdr *m, int fl), (fd, m, fl))
WRAP(int, getsockopt, -1, ENOBUFS,
     (int fd, int lv, int opt, void *restrict v, socklen_t *restrict n), (fd, lv, opt, v, n))
WRAP(int, setsockopt, -1, ENOBUFS, (int fd, int lv, int opt, const void *v, socklen_t n),
     (fd, lv, opt, v, n))
WRAP(int, epoll_create1, -1, EMFILE, (int fl), (fl))
WRAP(int, epoll_ctl, -1, ENOMEM, (int ep, int op, int fd, struct epoll_event *e), (ep, op, fd, e))
WRAP(int, epoll_wait, -1, EINTR, (int ep, struct epoll_event *e, int n, int ms), (ep, e, n, ms))
WRAP(int, poll, -1, EINTR, (struct pollfd * p, nfds_t n, int ms), (p, n, ms))
WRAP(int, timerfd_create, -1, EMFILE, (int clock, int fl), (clock, fl))
WRAP(pid_t, fork, -1, EAGAIN, (void), ())

/* open's mode is there only with O_CREAT or O_TMPFILE. */
int __real_open(const char *p, int fl, ...);
int __wrap_open(const char *p, int fl, ...);
int __wrap_open(const char *p, int fl, ...)
{
    mode_t mode = 0;
    if ((fl & O_CREAT) || (fl & O_TMPFILE) == O_TMPFILE) {
        va_list ap;
        va_start(ap, fl);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (fault("open", EMFILE)) return -1;
    return __real_open(p, fl, mode);
}

/* mremap's new address is there only with MREMAP_FIXED. */
void *__real_mremap(void *old, size_t old_n, size_t n, int fl, ...);
void *__wrap_mremap(void *old, size_t old_n, size_t n, int fl, ...);
void *__wrap_mremap(void *old, size_t old_n, size_t n, int fl, ...)
{
    void *to = NULL;
    if (fl & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, fl);
        to = va_arg(ap, void *);
        va_end(ap);
    }
    if (fault("mremap", ENOMEM)) return MAP_FAILED;
    return __real_mremap(old, old_n, n, fl, to);
}

/* pthread_create returns its error instead of setting errno. */
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
    int saved = errno;
    if (fault("pthread_create", EAGAIN)) {
        int err = errno;
        errno = saved;
        return err;
    }
    return __real_pthread_create(t, a, fn, arg);
}

/* --- the sweep ----------------------------------------------------------------------- */

#define FDS_MAX 1024
#define FILES_MAX 64

/* The descriptors of the process and the case's files: what a child began with. */
struct snapshot {
    unsigned char fd[FDS_MAX / 8];
    char files[FILES_MAX][256];
    int n_files;
    int maps; /* mappings of /dev/shm files and memfds */
};

static void take_snapshot(struct snapshot *s, const faults_case *c)
{
    memset(s, 0, sizeof *s);
    DIR *d = opendir("/proc/self/fd");
    if (!d) abort();
    for (struct dirent *e; (e = readdir(d));) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != dirfd(d) && fd < FDS_MAX)
            s->fd[fd / 8] |= (unsigned char)(1u << fd % 8);
    }
    closedir(d);
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f) abort();
    char line[512];
    while (fgets(line, sizeof line, f))
        s->maps += strstr(line, " /dev/shm/") || strstr(line, " /memfd:");
    fclose(f);
    if (!c->token) return;
    d = opendir(c->dir ? c->dir : "/dev/shm");
    if (!d) return; /* no directory: no file in it */
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, c->token) && s->n_files < FILES_MAX)
            snprintf(s->files[s->n_files++], sizeof s->files[0], "%s", e->d_name);
    closedir(d);
}

static bool has_file(const struct snapshot *s, const char *name)
{
    for (int i = 0; i < s->n_files; i++)
        if (strcmp(s->files[i], name) == 0) return true;
    return false;
}

/* Says on stderr what after holds that before did not; true when nothing. */
static bool nothing_left(const faults_case *c, unsigned n, const struct snapshot *before,
                         const struct snapshot *after)
{
    bool clean = true;
    for (int fd = 0; fd < FDS_MAX; fd++) {
        bool was = before->fd[fd / 8] >> fd % 8 & 1, is = after->fd[fd / 8] >> fd % 8 & 1;
        if (was != is) {
            char link[64], to[256] = "?";
            snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
            ssize_t len = readlink(link, to, sizeof to - 1);
            to[len > 0 ? len : 0] = '\0';
            fprintf(stderr, "%s, call %u failing: descriptor %d (%s) %s\n", c->name, n, fd, to,
                    is ? "left open" : "closed, not ours");
            clean = false;
        }
    }
    if (after->maps != before->maps) {
        fprintf(stderr, "%s, call %u failing: %d mappings of shared files, not %d\n", c->name, n,
                after->maps, before->maps);
        clean = false;
    }
    for (int i = 0; i < after->n_files; i++)
        if (!has_file(before, after->files[i])) {
            fprintf(stderr, "%s, call %u failing: %s/%s left behind\n", c->name, n,
                    c->dir ? c->dir : "/dev/shm", after->files[i]);
            clean = false;
        }
    return clean;
}

/* What a child's exit code says: a fault fired and the promise held, none fired (the
 * sweep's end), or the promise broke. Neither 1 nor 23: LeakSanitizer's exit codes. */
#define HELD 0
#define NONE_FIRED 42
#define BROKEN 2

/* One N: HELD, NONE_FIRED or BROKEN. */
static int one_run(const faults_case *c, unsigned n)
{
    static struct snapshot before, after;
    take_snapshot(&before, c);
    if (c->setup && c->setup(c->arg) != 0) {
        fprintf(stderr, "%s: setup failed (no fault armed)\n", c->name);
        return BROKEN;
    }
    faults_inherit(c->inherit);
    faults_arm(n, c->which);
    int rc = c->run(c->arg);
    faults_disarm();
    const char *what = faults_hit_name();
    if (c->check(c->arg, rc) != 0) {
        fprintf(stderr, "%s, call %u failing (%s): status %d, the promise broken (above)\n",
                c->name, n, what ? what : "none", rc);
        return BROKEN;
    }
    take_snapshot(&after, c);
    if (!nothing_left(c, n, &before, &after)) return BROKEN;
    if (getenv("FAULTS_VERBOSE"))
        fprintf(stderr, "%s, call %u failing (%s): status %d\n", c->name, n, what ? what : "none",
                rc);
    return what ? HELD : NONE_FIRED;
}

int faults_sweep(const faults_case *c, unsigned max)
{
    int fired = 0;
    for (unsigned n = 1; n <= max; n++) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) return -1;
        if (pid == 0) {
            /* A crash ends the child by its signal (cmocka's handlers would go on with the
             * test group here); exit, not _exit, so that LeakSanitizer looks. */
            static const int crashes[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
            for (size_t i = 0; i < sizeof crashes / sizeof crashes[0]; i++)
                signal(crashes[i], SIG_DFL);
            alarm(30);
            exit(one_run(c, n));
        }
        int st;
        while (waitpid(pid, &st, 0) < 0)
            if (errno != EINTR) return -1;
        if (WIFEXITED(st) && WEXITSTATUS(st) == NONE_FIRED) return fired;
        if (WIFEXITED(st) && WEXITSTATUS(st) == HELD) {
            fired++;
            continue;
        }
        if (WIFEXITED(st))
            fprintf(stderr, "%s, call %u failing: the child exited with %d\n", c->name, n,
                    WEXITSTATUS(st));
        else
            fprintf(stderr, "%s, call %u failing: the child died of signal %d\n", c->name, n,
                    WTERMSIG(st));
        return -1;
    }
    fprintf(stderr, "%s: a fault still fired at call %u\n", c->name, max);
    return -1;
}
