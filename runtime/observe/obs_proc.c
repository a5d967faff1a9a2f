/* SPDX-License-Identifier: MIT */
/* A service's processes and its workers (obs_proc.h). */
#include "obs_proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmrpc/status.h>

bool obs_proc_parse(pid_t pid, const char *stat, obs_proc *out)
{
    /* The name, in parentheses, may hold anything (a ')' too): it runs from the first '('
     * to the last ')', and the fields count on from there: 3 state, 4 ppid, 5 pgrp,
     * 14 utime, 15 stime, 16 cutime, 17 cstime, 22 starttime, 24 rss. */
    const char *open = strchr(stat, '('), *close = strrchr(stat, ')');
    if (!open || !close || close < open) return false;
    size_t len = (size_t)(close - open - 1);
    int ppid, pgrp;
    char state;
    unsigned long long ut, st, cut, cst, start, rss;
    if (sscanf(close + 1,
               " %c %d %d %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu %llu %llu %*s %*s %*s %*s "
               "%llu %*s %llu",
               &state, &ppid, &pgrp, &ut, &st, &cut, &cst, &start, &rss) != 9)
        return false;
    *out = (obs_proc){.pid = pid,
                      .ppid = (pid_t)ppid,
                      .pgrp = (pid_t)pgrp,
                      .state = state,
                      .tcp_named = len == strlen(OBS_TCP_MANAGER_NAME) &&
                                   memcmp(open + 1, OBS_TCP_MANAGER_NAME, len) == 0,
                      .utime = ut,
                      .stime = st,
                      .cutime = cut,
                      .cstime = cst,
                      .start = start,
                      .rss_pages = rss};
    return true;
}

/* A small /proc file into buf, NUL-terminated; false when it cannot be read. */
static bool read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    size_t n = 0;
    while (n < cap - 1) {
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        n += (size_t)k;
    }
    close(fd);
    buf[n] = '\0';
    return n > 0;
}

/* The number after "\nKEY" (KEY ends with ':'); false when there is none. */
static bool field(const char *text, const char *key, uint64_t *out)
{
    const char *p = strstr(text, key);
    if (!p) return false;
    p += strlen(key);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p || errno) return false;
    *out = v;
    return true;
}

bool obs_proc_read(pid_t pid, obs_proc *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return read_small(path, buf, sizeof buf) && obs_proc_parse(pid, buf, out);
}

bool obs_proc_alive(pid_t pid, pid_t group)
{
    if (pid <= 0) return false; /* kill(0) or /proc/0 would ask about something else */
    if (group <= 0) return kill(pid, 0) == 0 || errno != ESRCH;
    obs_proc p; /* gone, or no /proc: then no group to check either */
    return obs_proc_read(pid, &p) && p.state != 'Z' && p.state != 'X' && p.pgrp == group;
}

bool obs_proc_memory(pid_t pid, obs_mem *out)
{
    char path[64], buf[4096];
    uint64_t kb;
    *out = (obs_mem){0};
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    if (read_small(path, buf, sizeof buf) && field(buf, "\nRss:", &kb)) {
        out->rss = kb * 1024;
        if (field(buf, "\nPss:", &kb)) out->pss = kb * 1024, out->pss_known = true;
        return true;
    }
    /* No smaps_rollup (a kernel before 4.14, or one without CONFIG_PROC_PAGE_MONITOR). */
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (!read_small(path, buf, sizeof buf) || !field(buf, "\nVmRSS:", &kb)) return false;
    out->rss = kb * 1024;
    return true;
}

bool obs_proc_io(pid_t pid, uint64_t *read_bytes, uint64_t *write_bytes)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
    return read_small(path, buf, sizeof buf) && field(buf, "\nread_bytes:", read_bytes) &&
           field(buf, "\nwrite_bytes:", write_bytes);
}

void obs_procs_scan(void (*each)(const obs_proc *p, void *arg), void *arg)
{
    DIR *d = opendir("/proc");
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (e->d_name[0] < '1' || e->d_name[0] > '9' || *end || pid > INT_MAX) continue;
        obs_proc p;
        if (!obs_proc_read((pid_t)pid, &p) || p.state == 'Z' || p.state == 'X') continue;
        each(&p, arg);
    }
    closedir(d);
}

static bool is_manager(const obs_proc *p)
{
    return p->pid == p->pgrp || (p->ppid == p->pgrp && p->tcp_named);
}

bool obs_proc_is_worker(const obs_proc *v, size_t n, size_t k, bool leader_serves)
{
    const obs_proc *p = &v[k];
    if (p->pid == p->pgrp) {
        if (!leader_serves) return false;
        for (size_t j = 0; j < n; j++)
            if (v[j].ppid == p->pid && v[j].pid != p->pid) return false;
        return true;
    }
    if (is_manager(p)) return false;
    if (p->ppid == p->pgrp) return true;
    for (size_t j = 0; j < n; j++)
        if (v[j].pid == p->ppid) return is_manager(&v[j]);
    return false; /* its parent is not in the group (re-parented): not a manager's */
}

typedef struct groups {
    const pid_t *leaders;
    size_t n;
    obs_proc *v;
    size_t len, cap;
    bool oom;
} groups;

static void keep_member(const obs_proc *p, void *arg)
{
    groups *g = arg;
    size_t i = 0;
    while (i < g->n && (g->leaders[i] <= 0 || g->leaders[i] != p->pgrp))
        i++;
    if (i == g->n || g->oom) return;
    if (g->len == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 64;
        obs_proc *v = realloc(g->v, cap * sizeof *v);
        if (!v) {
            g->oom = true;
            return;
        }
        g->v = v, g->cap = cap;
    }
    g->v[g->len++] = *p;
}

static int by_group_then_pid(const void *a, const void *b)
{
    const obs_proc *x = a, *y = b;
    if (x->pgrp != y->pgrp) return x->pgrp < y->pgrp ? -1 : 1;
    return (x->pid > y->pid) - (x->pid < y->pid);
}

int obs_groups_scan(const pid_t *leaders, size_t n, obs_proc **out, size_t *len)
{
    groups g = {.leaders = leaders, .n = n};
    obs_procs_scan(keep_member, &g);
    if (g.oom) {
        free(g.v);
        *out = NULL, *len = 0;
        return SHMRPC_ENOMEM;
    }
    if (g.len) qsort(g.v, g.len, sizeof *g.v, by_group_then_pid);
    *out = g.v, *len = g.len;
    return 0;
}

int obs_group_workers(const obs_proc *v, size_t len, pid_t leader, bool leader_serves, pid_t *pids,
                      int cap)
{
    size_t first = 0, end;
    while (first < len && v[first].pgrp != leader)
        first++;
    for (end = first; end < len && v[end].pgrp == leader; end++)
        ;
    int n = 0;
    for (size_t k = first; leader > 0 && k < end; k++) {
        if (!obs_proc_is_worker(v + first, end - first, k - first, leader_serves)) continue;
        if (n < cap) pids[n] = v[k].pid;
        n++;
    }
    return n;
}
