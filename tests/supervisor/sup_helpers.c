/* SPDX-License-Identifier: MIT */
/* What the supervisor and web tests share (see sup_helpers.h). */
#define _GNU_SOURCE /* nftw */
#include "sup_helpers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/admin.h>

int64_t sup_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sup_nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

const char *sup_slurp(const char *dir, const char *name)
{
    static char text[1 << 16];
    char p[160];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    text[0] = '\0';
    FILE *r = fopen(p, "r");
    if (!r) return text;
    size_t n = fread(text, 1, sizeof text - 1, r);
    text[n] = '\0';
    fclose(r);
    return text;
}

int sup_write_file(const char *path, const char *text)
{
    FILE *w = fopen(path, "w");
    if (!w) return -1;
    fputs(text, w);
    fclose(w);
    return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(p);
    return 0;
}

void sup_rm_tree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

pid_t sup_spawn(const char *ini, const char *err_path, bool fg, unsigned watchdog_s,
                const char *const *env)
{
    pid_t pid = fork();
    if (pid != 0) return pid;
    for (int i = 0; env && env[i]; i += 2)
        setenv(env[i], env[i + 1], 1);
    int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) dup2(fd, 2);
    alarm(watchdog_s);
    if (fg)
        execl(SHMRPC_SERVICE, "shmrpc-service", "--foreground", ini, (char *)NULL);
    else
        execl(SHMRPC_SERVICE, "shmrpc-service", ini, (char *)NULL);
    _exit(127);
}

pid_t sup_start_in(const char *dir, const char *ini, bool fg, unsigned watchdog_s,
                   const char *const *env)
{
    char path[128], errp[128];
    snprintf(path, sizeof path, "%s/service.ini", dir);
    snprintf(errp, sizeof errp, "%s/supervisor.err", dir);
    assert_int_equal(sup_write_file(path, ini), 0);
    pid_t pid = sup_spawn(path, errp, fg, watchdog_s, env);
    assert_true(pid >= 0);
    return pid;
}

int sup_wait_exit(pid_t *pid, int ms)
{
    for (int64_t end = sup_now_ms() + ms;; sup_nap_ms(10)) {
        int st;
        if (waitpid(*pid, &st, WNOHANG) == *pid) {
            *pid = 0;
            return st;
        }
        if (sup_now_ms() > end) return -1;
    }
}

int sup_stop(pid_t *pid, int ms)
{
    kill(*pid, SIGTERM);
    return sup_wait_exit(pid, ms);
}

void sup_kill_reap(pid_t *pid)
{
    if (*pid <= 0) return;
    kill(*pid, SIGKILL);
    waitpid(*pid, NULL, 0);
    *pid = 0;
}

void sup_end(pid_t *pid)
{
    if (*pid > 0 && sup_stop(pid, SUP_EXIT_MS) < 0) sup_kill_reap(pid);
}

void sup_groups_add(sup_groups *g, pid_t pgid)
{
    if (pgid <= 0) return;
    for (int i = 0; i < g->n; i++)
        if (g->ids[i] == pgid) return;
    assert_true(g->cap > 0 && g->cap <= SUP_MAX_GROUPS);
    assert_true(g->n < g->cap);
    g->ids[g->n++] = pgid;
}

void sup_groups_kill(const sup_groups *g)
{
    for (int i = 0; i < g->n; i++)
        kill(-g->ids[i], SIGKILL);
}

void sup_groups_forget(sup_groups *g, pid_t pgid)
{
    for (int i = 0; i < g->n; i++)
        if (g->ids[i] == pgid) {
            g->ids[i] = g->ids[--g->n];
            return;
        }
}

void sup_groups_assert_gone(sup_groups *g)
{
    for (int i = 0; i < g->n; i++)
        assert_true(sup_group_gone(g->ids[i]));
    g->n = 0;
}

bool sup_group_gone(pid_t pgid)
{
    return kill(-pgid, 0) != 0 && errno == ESRCH;
}

/* The two places segments live: /dev/shm, and this user's directory of names
 * (docs/names.md). */
static void segment_dirs(char dirs[2][256])
{
    snprintf(dirs[0], sizeof dirs[0], "/dev/shm");
    if (shmrpc_names_dir(dirs[1], sizeof dirs[1]) != 0) snprintf(dirs[1], sizeof dirs[1], "/nonexistent");
}

void sup_remove_segments(const char *part)
{
    char dirs[2][256];
    segment_dirs(dirs);
    for (int i = 0; i < 2; i++) {
        DIR *d = opendir(dirs[i]);
        for (struct dirent *e; d && (e = readdir(d));) {
            if (strstr(e->d_name, part) && e->d_type != DT_DIR) {
                char p[1024];
                snprintf(p, sizeof p, "%s/%s", dirs[i], e->d_name);
                unlink(p);
            }
        }
        if (d) closedir(d);
    }
}

void sup_remove_tcp_stats(int port)
{
    if (port <= 0) return;
    char name[96];
    snprintf(name, sizeof name, "shmrpc.stats.tcp.127.0.0.1:%d", port);
    sup_remove_segments(name);
}

bool sup_segment_left(const char *part)
{
    bool found = false;
    char dirs[2][256];
    segment_dirs(dirs);
    for (int i = 0; i < 2; i++) {
        DIR *d = opendir(dirs[i]);
        for (struct dirent *e; d && (e = readdir(d));) {
            if (!strstr(e->d_name, part) || e->d_type == DT_DIR) continue;
            print_message("left in %s: %s\n", dirs[i], e->d_name); /* says which, when it fails */
            found = true;
        }
        if (d) closedir(d);
    }
    return found;
}

bool sup_segment_named(const char *name)
{
    char dirs[2][256];
    segment_dirs(dirs);
    for (int i = 0; i < 2; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dirs[i], name);
        if (access(path, F_OK) == 0) return true;
    }
    return false;
}

const char *sup_comm(pid_t pid)
{
    static char name[64];
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    name[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return name;
    if (!fgets(name, sizeof name, f)) name[0] = '\0';
    fclose(f);
    name[strcspn(name, "\n")] = '\0';
    return name;
}

int sup_children(pid_t pid, pid_t *out, int cap)
{
    char p[64], buf[4096];
    snprintf(p, sizeof p, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *r = fopen(p, "r");
    if (!r) return 0;
    size_t got = fread(buf, 1, sizeof buf - 1, r);
    fclose(r);
    buf[got] = '\0';
    int n = 0;
    for (char *q = buf, *end; n < cap; q = end) {
        long v = strtol(q, &end, 10);
        if (end == q) break;
        out[n++] = (pid_t)v;
    }
    return n;
}

void sup_run_prog(sup_run *r, const char *program, const char *in, ...)
{
    const char *argv[24] = {program};
    va_list ap;
    va_start(ap, in);
    for (int i = 1; i < 23 && (argv[i] = va_arg(ap, const char *)) != NULL; i++)
        ;
    va_end(ap);
    argv[23] = NULL;
    int po[2], pe[2], pi[2];
    assert_int_equal(pipe2(po, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pe, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pi, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pi[0], 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        alarm(10);
        execv(program, (char *const *)argv);
        _exit(127);
    }
    close(po[1]), close(pe[1]), close(pi[0]);
    /* stdin is written as the child reads it, beside its output: a large one would fill
     * the pipe otherwise. */
    size_t in_len = in ? strlen(in) : 0, in_at = 0;
    if (in_len == 0) close(pi[1]);
    size_t no = 0, ne = 0;
    struct pollfd fds[3] = {
        {po[0], POLLIN, 0}, {pe[0], POLLIN, 0}, {in_len ? pi[1] : -1, POLLOUT, 0}};
    int64_t deadline = sup_now_ms() + 10000;
    while ((fds[0].fd >= 0 || fds[1].fd >= 0) && sup_now_ms() < deadline) {
        if (poll(fds, 3, 100) <= 0) continue;
        if (fds[2].fd >= 0 && fds[2].revents) {
            ssize_t w = write(fds[2].fd, in + in_at, in_len - in_at);
            if (w > 0) in_at += (size_t)w;
            if (w <= 0 || in_at == in_len) {
                close(fds[2].fd);
                fds[2].fd = -1;
            }
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !fds[i].revents) continue;
            char *buf = i ? r->err : r->out;
            size_t *n = i ? &ne : &no;
            size_t cap = i ? sizeof r->err : sizeof r->out;
            ssize_t got = read(fds[i].fd, buf + *n, cap - 1 - *n);
            if (got <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
            } else {
                *n += (size_t)got;
            }
        }
    }
    for (int i = 0; i < 3; i++)
        if (fds[i].fd >= 0) close(fds[i].fd);
    r->out[no] = r->err[ne] = '\0';
    int st;
    kill(pid, SIGKILL); /* harmless once it exited; bounded when it did not */
    waitpid(pid, &st, 0);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
