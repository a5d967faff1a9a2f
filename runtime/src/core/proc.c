/* SPDX-License-Identifier: MIT */
/* Reading /proc/ID: its stat, owner, maps and descriptors, for the liveness checks of
 * locks, queues and the shm transport, and the admin API's owners; and /proc/net, for who
 * holds a TCP port. */
#include "core/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* The command name (field 2) may hold spaces and parentheses, so the fields are counted
 * from the last ')'. */
static int parse_stat(const char *buf, shmrpc__proc_stat *ps)
{
    const char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || p[2] == '\0') return -1;
    p += 2;
    ps->state = *p;
    char *end;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p) return -1;
        p++;
        if (field + 1 == 9) ps->flags = (uint32_t)strtoul(p, &end, 10);
    }
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p) return -1;
    ps->start = v;
    return 0;
}

int shmrpc__read_proc_stat(uint32_t id, shmrpc__proc_stat *ps)
{
    char path[32], buf[1024];
    snprintf(path, sizeof path, "/proc/%" PRIu32 "/stat", id);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n;
    do
        n = read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    int err = n < 0 ? errno : ESRCH;
    close(fd);
    if (n <= 0) {
        errno = err;
        return -1;
    }
    buf[n] = '\0';
    if (parse_stat(buf, ps) != 0) {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

int shmrpc__proc_maps(uint32_t id, dev_t dev, ino_t ino)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%" PRIu32 "/maps", id);
    FILE *f = fopen(path, "re");
    if (!f) return errno == ENOENT || errno == ESRCH ? 0 : -1;
    char line[4096 + 128];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned maj, min;
        unsigned long long i;
        if (sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min, &i) == 3)
            found = i == (unsigned long long)ino && makedev(maj, min) == dev;
    }
    int err = ferror(f);
    fclose(f);
    return err ? -1 : found;
}

int shmrpc__proc_owner(uint32_t id, uid_t *uid)
{
    char path[32];
    snprintf(path, sizeof path, "/proc/%" PRIu32, id);
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    *uid = st.st_uid;
    return 0;
}

_Atomic int32_t shmrpc__self_pid_seen;
static _Atomic uint64_t self_start;
static pthread_once_t fork_watch = PTHREAD_ONCE_INIT;

static void forget_self(void)
{
    atomic_store_explicit(&shmrpc__self_pid_seen, 0, memory_order_relaxed);
}

static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, forget_self);
}

int32_t shmrpc__learn_self(void)
{
    pthread_once(&fork_watch, watch_forks);
    int32_t pid = (int32_t)getpid();
    shmrpc__proc_stat ps;
    uint64_t start = shmrpc__read_proc_stat((uint32_t)pid, &ps) == 0 ? ps.start : 0;
    atomic_store_explicit(&self_start, start, memory_order_relaxed);
    atomic_store_explicit(&shmrpc__self_pid_seen, pid, memory_order_release);
    return pid;
}

uint64_t shmrpc__self_start(void)
{
    (void)shmrpc__self_pid(); /* learnt with the pid, and again after a fork */
    return atomic_load_explicit(&self_start, memory_order_relaxed);
}

uint64_t shmrpc__proc_start(int32_t pid)
{
    shmrpc__proc_stat ps;
    return pid > 0 && shmrpc__read_proc_stat((uint32_t)pid, &ps) == 0 ? ps.start : 0;
}

bool shmrpc__proc_alive(int32_t pid, uint64_t start)
{
    shmrpc__proc_stat ps;
    if (pid <= 0) return false;
    if (shmrpc__read_proc_stat((uint32_t)pid, &ps) != 0) return errno != ENOENT && errno != ESRCH;
    if (shmrpc__proc_ended(&ps)) return false;
    return start == 0 || start == ps.start;
}

bool shmrpc__proc_running(int32_t pid, uint64_t start)
{
    shmrpc__proc_stat ps;
    if (!shmrpc__proc_alive(pid, start)) return false;
    return shmrpc__read_proc_stat((uint32_t)pid, &ps) != 0 || !(ps.flags & 4u /* PF_EXITING */);
}

void shmrpc__proc_fd_path(char *out, size_t cap, int32_t pid, int fd)
{
    if (pid <= 0)
        snprintf(out, cap, "/proc/self/fd/%d", fd);
    else
        snprintf(out, cap, "/proc/%" PRId32 "/fd/%d", pid, fd);
}

/* The inode and owner of a socket listening on TCP port in /proc/net/FILE (tcp or tcp6):
 * true when there is one. */
static bool listener_in(const char *file, unsigned port, uint64_t *ino, uid_t *uid)
{
    char path[32], line[512];
    snprintf(path, sizeof path, "/proc/net/%s", file);
    FILE *f = fopen(path, "re");
    if (f == NULL) return false;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        /* "sl: LOCAL:PORT REMOTE:PORT ST TX:RX TR:WHEN RETR UID TIMEOUT INODE ..." */
        char local[64];
        unsigned lport, state;
        unsigned long u;
        unsigned long long i;
        if (sscanf(line, " %*u: %63[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %lu %*u %llu", local, &lport,
                   &state, &u, &i) == 5 &&
            lport == port && state == 0x0A /* TCP_LISTEN */) {
            *ino = i;
            *uid = (uid_t)u;
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* The process that holds socket inode ino, among those whose descriptors this one may
 * read; 0 when none of them does. */
static int32_t socket_holder(uint64_t ino)
{
    char want[48];
    snprintf(want, sizeof want, "socket:[%" PRIu64 "]", ino);
    DIR *procs = opendir("/proc");
    if (procs == NULL) return 0;
    int32_t found = 0;
    for (struct dirent *p; !found && (p = readdir(procs)) != NULL;) {
        char *end;
        long pid = strtol(p->d_name, &end, 10);
        if (*end != '\0' || pid <= 0) continue;
        char dir[48];
        snprintf(dir, sizeof dir, "/proc/%ld/fd", pid);
        DIR *fds = opendir(dir);
        if (fds == NULL) continue; /* gone, or another user's */
        for (struct dirent *e; !found && (e = readdir(fds)) != NULL;) {
            char link[sizeof dir + sizeof e->d_name], target[64];
            snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
            ssize_t n = readlink(link, target, sizeof target - 1);
            if (n <= 0) continue;
            target[n] = '\0';
            if (strcmp(target, want) == 0) found = (int32_t)pid;
        }
        closedir(fds);
    }
    closedir(procs);
    return found;
}

bool shmrpc__proc_tcp_listener(unsigned port, int32_t *pid, uid_t *uid)
{
    uint64_t ino = 0;
    *pid = 0;
    if (!listener_in("tcp", port, &ino, uid) && !listener_in("tcp6", port, &ino, uid)) return false;
    *pid = socket_holder(ino);
    return true;
}
