/* A service's processes and its workers (sup_proc_group.h). */
#include "sup_proc_group.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmrpc/status.h>

bool sup_proc_parse(pid_t pid, const char *stat, sup_proc *out)
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
    *out = (sup_proc){.pid = pid,
                      .ppid = (pid_t)ppid,
                      .pgrp = (pid_t)pgrp,
                      .state = state,
                      .tcp_named = len == strlen(SUP_TCP_MANAGER_NAME) &&
                                   memcmp(open + 1, SUP_TCP_MANAGER_NAME, len) == 0,
                      .utime = ut,
                      .stime = st,
                      .cutime = cut,
                      .cstime = cst,
                      .start = start,
                      .rss_pages = rss};
    return true;
}

void sup_procs_scan(void (*each)(const sup_proc *p, void *arg), void *arg)
{
    DIR *d = opendir("/proc");
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char *end, path[64], buf[1024];
        long pid = strtol(e->d_name, &end, 10);
        if (e->d_name[0] < '1' || e->d_name[0] > '9' || *end || pid > INT_MAX) continue;
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf - 1)) < 0 && errno == EINTR)
            ;
        close(fd);
        if (n <= 0) continue;
        buf[n] = '\0';
        sup_proc p;
        if (!sup_proc_parse((pid_t)pid, buf, &p) || p.state == 'Z' || p.state == 'X') continue;
        each(&p, arg);
    }
    closedir(d);
}

static bool is_manager(const sup_proc *p)
{
    return p->pid == p->pgrp || (p->ppid == p->pgrp && p->tcp_named);
}

bool sup_proc_is_worker(const sup_proc *v, size_t n, size_t k, bool leader_serves)
{
    const sup_proc *p = &v[k];
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
    sup_proc *v;
    size_t len, cap;
    bool oom;
} groups;

static void keep_member(const sup_proc *p, void *arg)
{
    groups *g = arg;
    size_t i = 0;
    while (i < g->n && (g->leaders[i] <= 0 || g->leaders[i] != p->pgrp))
        i++;
    if (i == g->n || g->oom) return;
    if (g->len == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 64;
        sup_proc *v = realloc(g->v, cap * sizeof *v);
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
    const sup_proc *x = a, *y = b;
    if (x->pgrp != y->pgrp) return x->pgrp < y->pgrp ? -1 : 1;
    return (x->pid > y->pid) - (x->pid < y->pid);
}

int sup_groups_scan(const pid_t *leaders, size_t n, sup_proc **out, size_t *len)
{
    groups g = {.leaders = leaders, .n = n};
    sup_procs_scan(keep_member, &g);
    if (g.oom) {
        free(g.v);
        *out = NULL, *len = 0;
        return SHMRPC_ENOMEM;
    }
    if (g.len) qsort(g.v, g.len, sizeof *g.v, by_group_then_pid);
    *out = g.v, *len = g.len;
    return 0;
}

int sup_group_workers(const sup_proc *v, size_t len, pid_t leader, bool leader_serves, pid_t *pids,
                      int cap)
{
    size_t first = 0, end;
    while (first < len && v[first].pgrp != leader)
        first++;
    for (end = first; end < len && v[end].pgrp == leader; end++)
        ;
    int n = 0;
    for (size_t k = first; leader > 0 && k < end; k++) {
        if (!sup_proc_is_worker(v + first, end - first, k - first, leader_serves)) continue;
        if (n < cap) pids[n] = v[k].pid;
        n++;
    }
    return n;
}
