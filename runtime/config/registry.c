/* SPDX-License-Identifier: MIT */
/* The registry of running supervisors (registry.h): one small file per supervisor, checked
 * against /proc when read, so that one killed with SIGKILL is never taken for a live one. */
#include "registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shmrpc/status.h>

int cfg_registry_dir(char *out, size_t cap, int make)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n = xdg && xdg[0] == '/' ? snprintf(out, cap, "%s/shmrpc", xdg)
                                 : snprintf(out, cap, "/tmp/shmrpc-%u", (unsigned)getuid());
    if (n < 0 || (size_t)n >= cap) return SHMRPC_ESYS(ENAMETOOLONG);
    if (make && mkdir(out, 0700) != 0 && errno != EEXIST) return SHMRPC_ESYS(errno);
    struct stat st;
    if (lstat(out, &st) != 0) return SHMRPC_ESYS(errno);
    /* /tmp is shared: a folder someone else made there could feed us their files. */
    if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077))
        return SHMRPC_ESYS(EPERM);
    return 0;
}

/* Field 22 of /proc/PID/stat, the start time in clock ticks since boot; 0: no such process.
 * The command name (field 2) may hold spaces and parentheses: the fields after it start
 * after its last ')'. */
static unsigned long long start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    p++;
    for (int field = 2; field < 21 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

int cfg_registry_add(const cfg_sup *s, char *path, size_t cap)
{
    char dir[PATH_MAX], tmp[PATH_MAX + 32];
    int rc = cfg_registry_dir(dir, sizeof dir, 1);
    if (rc) return rc;
    int n = snprintf(path, cap, "%s/%d.sup", dir, (int)s->pid);
    if (n < 0 || (size_t)n >= cap) return SHMRPC_ESYS(ENAMETOOLONG);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "we");
    if (!f) return SHMRPC_ESYS(errno);
    fprintf(f, "pid=%d\nstart=%llu\nini=%s\ncontrol=%s\npage=%s\n", (int)s->pid, start_time(s->pid),
            s->ini, s->control, s->page[0] ? s->page : "none");
    errno = 0;
    int bad = ferror(f);
    bad |= fclose(f);
    if (bad || rename(tmp, path) != 0) {
        rc = SHMRPC_ESYS(errno ? errno : EIO);
        unlink(tmp);
        return rc;
    }
    return 0;
}

void cfg_registry_remove(const char *path)
{
    if (path && *path) unlink(path);
}

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%.*s", (int)strcspn(src, "\n"), src);
}

/* One file; 1: a live supervisor in *s, 0: stale (or not one of ours), -1: unreadable. */
static int read_entry(const char *path, cfg_sup *s)
{
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    memset(s, 0, sizeof *s);
    unsigned long long start = 0;
    char line[4200];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "pid=", 4) == 0) s->pid = (pid_t)atoi(line + 4);
        if (strncmp(line, "start=", 6) == 0) start = strtoull(line + 6, NULL, 10);
        if (strncmp(line, "ini=", 4) == 0) copy(s->ini, sizeof s->ini, line + 4);
        if (strncmp(line, "control=", 8) == 0) copy(s->control, sizeof s->control, line + 8);
        if (strncmp(line, "page=", 5) == 0) copy(s->page, sizeof s->page, line + 5);
    }
    fclose(f);
    if (s->pid <= 0 || !s->control[0]) return 0;
    if (kill(s->pid, 0) != 0 && errno == ESRCH) return 0;
    /* A /proc that hides the process (hidepid) cannot tell: then the pid's life decides. */
    unsigned long long now = start_time(s->pid);
    return now && start && now != start ? 0 : 1;
}

static int by_pid(const void *a, const void *b)
{
    const cfg_sup *x = a, *y = b;
    return (x->pid > y->pid) - (x->pid < y->pid);
}

int cfg_registry_list(cfg_sup **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char dir[PATH_MAX];
    int rc = cfg_registry_dir(dir, sizeof dir, 0);
    if (rc == SHMRPC_ESYS(ENOENT)) return 0;
    if (rc) return rc;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : SHMRPC_ESYS(errno);
    cfg_sup *v = NULL;
    size_t len = 0, cap = 0;
    rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d)) != NULL;) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 4, ".sup") != 0) continue;
        char path[PATH_MAX + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (len == cap) {
            cfg_sup *w = realloc(v, (cap = cap ? 2 * cap : 4) * sizeof *v);
            if (!w) {
                rc = SHMRPC_ENOMEM;
                break;
            }
            v = w;
        }
        int got = read_entry(path, &v[len]);
        if (got == 1)
            len++;
        else if (got == 0)
            unlink(path); /* its supervisor is gone: SIGKILL, or a crash */
    }
    closedir(d);
    if (rc) {
        free(v);
        return rc;
    }
    if (len) qsort(v, len, sizeof *v, by_pid);
    *out = v;
    *n = len;
    return 0;
}
