/* SPDX-License-Identifier: MIT */
/* shmrpcctl status|start|stop|restart|logs|scale: calls to the supervisor's control
 * service. The supervisor is found by -a ADDRESS, else --ini FILE (the address is derived
 * from the file's real path, as shmrpc-service derives it), else $SHMRPC_CONTROL (an
 * address), else $SHMRPC_INI (a file), else the one supervisor of this user that the
 * registry (registry.h) lists. start, stop and restart return once the
 * supervisor acted; shmrpcctl then asks for the status until the service settles. */
#include "ctl_control.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/client.h>
#include <shmrpc/status.h>

#include "config.h"
#include "ctl_opts.h"
#include "registry.h"
#include "control_svc/control.h"

#define CALL_TIMEOUT_MS 10000 /* the supervisor's handlers wait at most 5 s for its loop */
#define POLL_EVERY_MS 100
#define FOLLOW_EVERY_MS 100                 /* logs -f: how often the file is looked at */
#define FOLLOW_TAIL_BYTES ((size_t)1 << 20) /* logs -f: its first lines, from this at most */
#define FOLLOW_FILES                                                                               \
    1000 /* logs -f: the rotated files looked at, path.1 to this (log_keep's most) */

typedef struct opts {
    const char *cmd;
    const char *addr;
    const char *ini;
    bool json;
    bool no_wait;
    long wait_s;
    long lines;
    bool follow;
    char **pos; /* the arguments that are no options */
    int n_pos;
} opts;

static void help(FILE *to, const char *cmd, const char *args)
{
    fprintf(to,
            "usage: shmrpcctl [-a ADDRESS | --ini FILE] %s %s[-a ADDRESS | --ini FILE]\n"
            "  the supervisor: -a ADDRESS, --ini FILE, $SHMRPC_CONTROL, $SHMRPC_INI, else the\n"
            "  one of this user that runs\n",
            cmd, args);
}

static int usage(const char *cmd, const char *args)
{
    help(stderr, cmd, args);
    return 2;
}

static bool number(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* The supervisor named before the command (shmrpcctl --ini FILE status). */
static const char *global_addr, *global_ini;

void ctl_control_target(const char *addr, const char *ini)
{
    global_addr = addr;
    global_ini = ini;
}

/* Options anywhere among the arguments, --opt=value, -- (ctl_opts.h); takes says which the
 * command takes besides -a and --ini: CTL_OPT_JSON, CTL_OPT_WAIT, CTL_OPT_LINES. It takes
 * n_pos arguments (-1: any number). -1: parsed; else the exit status. */
static int parse(int argc, char **argv, unsigned takes, int n_pos, const char *args, opts *o)
{
    memset(o, 0, sizeof *o);
    o->cmd = argv[0];
    ctl_opts c;
    ctl_opts_init(&c);
    c.anywhere = true;
    unsigned knows =
        CTL_OPT_SUPERVISOR | CTL_OPT_JSON | CTL_OPT_WAIT | CTL_OPT_LINES | CTL_OPT_FOLLOW;
    int first = ctl_opts_read(argc, argv, knows, CTL_OPT_SUPERVISOR | takes, &c);
    if (c.help) {
        help(stdout, o->cmd, args);
        return 0;
    }
    if (first < 0) return ctl_usage_error(o->cmd, c.why);
    o->addr = c.addr ? c.addr : global_addr;
    o->ini = c.ini ? c.ini : global_ini;
    o->json = c.json;
    o->no_wait = c.no_wait;
    o->wait_s = c.wait_s;
    o->lines = c.lines;
    o->follow = c.follow;
    o->pos = argv + first;
    o->n_pos = argc - first;
    if (n_pos >= 0 && o->n_pos != n_pos) return usage(o->cmd, args);
    return -1;
}

/* With nothing naming the supervisor: the one of this user that runs (registry.h). NULL
 * after a message, with *st 2, when none or several run. */
static const char *find_one(const opts *o, char *addr, size_t cap, int *st)
{
    *st = 2;
    cfg_sup *v;
    size_t n;
    int rc = cfg_registry_list(&v, &n);
    char dir[4096] = "?";
    cfg_registry_dir(dir, sizeof dir, 0);
    if (rc) {
        fprintf(stderr, "shmrpcctl: %s: cannot read the registry of supervisors %s: %s\n", o->cmd,
                dir, shmrpc_strerror(rc));
    } else if (n == 0) {
        fprintf(stderr,
                "shmrpcctl: %s: which supervisor? None of yours is registered in %s: give "
                "--ini service.ini or -a shm://shmrpc-control-..., or set SHMRPC_CONTROL or "
                "SHMRPC_INI\n",
                o->cmd, dir);
    } else if (n > 1) {
        fprintf(stderr,
                "shmrpcctl: %s: which supervisor? %zu of yours run; choose one with --ini:\n",
                o->cmd, n);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "  --ini %s  (pid %d, page %s, -a %s)\n", v[i].ini, (int)v[i].pid,
                    v[i].page, v[i].control);
    } else {
        snprintf(addr, cap, "%s", v[0].control);
        free(v);
        return addr;
    }
    free(v);
    return NULL;
}

/* The uid of another user whose directory of names (/dev/shm/shmrpc-UID, docs/names.md)
 * holds shm://KEY's segment, or -1: a supervisor that runs as that user (the systemd unit's
 * shmrpc), which shm:// serves to its own user's clients only. Only root can look into
 * another user's directory, and only root needs to: anyone else is refused there anyway. */
static long other_users(const char *addr)
{
    if (geteuid() != 0 || strncmp(addr, "shm://", 6) != 0) return -1;
    DIR *d = opendir("/dev/shm");
    if (!d) return -1;
    long uid = -1;
    for (struct dirent *e; uid < 0 && (e = readdir(d)) != NULL;) {
        unsigned long u;
        char tail;
        if (sscanf(e->d_name, "shmrpc-%lu%c", &u, &tail) != 1 || u == 0 || u > UINT32_MAX) continue;
        char path[400];
        struct stat st;
        snprintf(path, sizeof path, "/dev/shm/%s/shmrpc:%s", e->d_name, addr + 6);
        if (lstat(path, &st) == 0 && st.st_uid == u) uid = (long)u;
    }
    closedir(d);
    return uid;
}

/* Connects to the supervisor the options name; NULL after a message, with *st the exit
 * status: 2 when none is named, 1 when it cannot be reached. */
static shmrpc_client *connect_to(const opts *o, int *st)
{
    *st = 1;
    char derived[96], found[128];
    const char *addr = o->addr, *ini = o->ini;
    if (!addr && !ini) addr = getenv("SHMRPC_CONTROL");
    if (addr && !*addr) addr = NULL;
    if (!addr && !ini) ini = getenv("SHMRPC_INI");
    if (ini && !*ini) ini = NULL;
    if (!addr && !ini && !(addr = find_one(o, found, sizeof found, st))) return NULL;
    *st = 1; /* named (find_one left 2): what fails from here is reaching it */
    if (!addr) {
        int rc = cfg_control_address(ini, derived, sizeof derived);
        if (rc) {
            fprintf(stderr, "shmrpcctl: %s: %s\n", ini, shmrpc_strerror(rc));
            return NULL;
        }
        addr = derived;
    }
    shmrpc_client_opts co;
    shmrpc_client_opts_init(&co);
    co.timeout_ms = CALL_TIMEOUT_MS;
    shmrpc_client *c = NULL;
    int rc = shmrpc_client_new(&c, &Control_service_info, &co);
    if (!rc) rc = shmrpc_client_connect(c, addr);
    long uid = rc == SHMRPC_ENOENT || rc == SHMRPC_EUNAVAIL ? other_users(addr) : -1;
    if (rc && uid >= 0) {
        /* Root, and the supervisor another user's (docs/systemd.md). */
        const struct passwd *pw = getpwuid((uid_t)uid);
        char user[64];
        if (pw)
            snprintf(user, sizeof user, "%s", pw->pw_name);
        else
            snprintf(user, sizeof user, "#%ld", uid);
        fprintf(stderr,
                "shmrpcctl: %s: the supervisor at %s is uid %ld's, and shm:// serves the "
                "clients of its own user only: run shmrpcctl as that user (sudo -u %s "
                "shmrpcctl ...)\n",
                o->cmd, addr, uid, user);
        shmrpc_client_free(c);
        return NULL;
    }
    if (rc) {
        const char *why = shmrpc_errmsg();
        fprintf(stderr, "shmrpcctl: %s: cannot reach the supervisor at %s: %s%s%s%s\n", o->cmd,
                addr, shmrpc_strerror(rc), *why ? ": " : "", why,
                rc == SHMRPC_ENOENT || rc == SHMRPC_EUNAVAIL ? " (is shmrpc-service running?)"
                                                             : "");
        shmrpc_client_free(c);
        return NULL;
    }
    return c;
}

static int failed(const opts *o, shmrpc_client *c, int rc)
{
    const char *why = shmrpc_errmsg();
    fprintf(stderr, "shmrpcctl: %s: %s\n", o->cmd, *why ? why : shmrpc_strerror(rc));
    shmrpc_client_free(c);
    return 1;
}

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* "3d04h", "2h05m", "4m07s", "12s"; "-" when nothing runs. */
static void uptime(int64_t started_ms, char *out, size_t cap)
{
    if (started_ms <= 0) {
        snprintf(out, cap, "-");
        return;
    }
    int64_t s = (unix_ms() - started_ms) / 1000;
    if (s < 0) s = 0;
    if (s >= 86400)
        snprintf(out, cap, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
    else if (s >= 3600)
        snprintf(out, cap, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else if (s >= 60)
        snprintf(out, cap, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else
        snprintf(out, cap, "%llds", (long long)s);
}

static bool is(shmrpc_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

static json_t *str_json(shmrpc_str s)
{
    return json_stringn(s.ptr ? s.ptr : "", s.len);
}

static json_t *status_json(const control_ServiceStatus *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", str_json(s->name));
    json_object_set_new(o, "state", str_json(s->state));
    json_object_set_new(o, "pid", json_integer(s->pid));
    json_object_set_new(o, "restarts", json_integer(s->restarts));
    json_object_set_new(o, "started_at_ms",
                        s->started_at_ms ? json_integer(s->started_at_ms) : json_null());
    json_object_set_new(o, "workers", json_integer(s->workers));
    json_t *pids = json_array();
    for (size_t i = 0; i < s->worker_pids.len; i++)
        json_array_append_new(pids, json_integer(s->worker_pids.items[i]));
    json_object_set_new(o, "worker_pids", pids);
    json_object_set_new(o, "last_exit", s->last_exit.len ? str_json(s->last_exit) : json_null());
    json_object_set_new(o, "log_path", str_json(s->log_path));
    json_object_set_new(o, "log_dropped_bytes", json_integer((json_int_t)s->log_dropped_bytes));
    json_object_set_new(o, "cpu_percent",
                        s->cpu_percent.has ? json_real(s->cpu_percent.value) : json_null());
    json_object_set_new(o, "rss_bytes",
                        s->rss_bytes.has ? json_integer((json_int_t)s->rss_bytes.value)
                                         : json_null());
    json_object_set_new(o, "sigkill", s->sigkill.has ? str_json(s->sigkill.value) : json_null());
    return o;
}

/* v (taken) on stdout as status --json prints: indented, then a line end. */
static void put_json(json_t *v)
{
    json_dumpf(v, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(v);
}

/* "512K", "12.3M", "1.50G": bytes as ps and top show memory, in powers of 1024. */
static void mem_text(uint64_t bytes, char *out, size_t cap)
{
    static const char unit[] = "KMGT";
    double v = (double)bytes / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof unit - 1) {
        v /= 1024;
        u++;
    }
    snprintf(out, cap, v < 10 && u ? "%.2f%c" : v < 100 && u ? "%.1f%c" : "%.0f%c", v, unit[u]);
}

/* Whether s is one of the names (all, when there are none). */
static bool named(const opts *o, shmrpc_str s)
{
    for (int i = 0; i < o->n_pos; i++)
        if (is(s, o->pos[i])) return true;
    return o->n_pos == 0;
}

/* Whether one of the names is none of list's services; the first such is said, with
 * those there are, as the supervisor says it for a name it does not know. */
static bool unknown(const opts *o, const control_list_ServiceStatus *list)
{
    for (int i = 0; i < o->n_pos; i++) {
        size_t k = 0;
        while (k < list->len && !is(list->items[k].name, o->pos[i]))
            k++;
        if (k < list->len) continue;
        fprintf(stderr, "shmrpcctl: %s: no service '%s'; the services are:", o->cmd, o->pos[i]);
        for (size_t j = 0; j < list->len; j++)
            fprintf(stderr, "%s %.*s", j ? "," : "", (int)list->items[j].name.len,
                    list->items[j].name.ptr);
        fputc('\n', stderr);
        return true;
    }
    return false;
}

/* Every service's status into *list, with the names checked against them: 0; else the
 * exit status, after a message, with c freed. */
static int named_status(const opts *o, shmrpc_client *c, control_list_ServiceStatus *list)
{
    int rc = control_status(c, list);
    if (rc) return failed(o, c, rc);
    if (!unknown(o, list)) return 0;
    shmrpc_client_free(c);
    return 1;
}

int ctl_status(int argc, char **argv)
{
    opts o;
    int st = parse(argc, argv, CTL_OPT_JSON, -1, "[--json] [SERVICE...] ", &o);
    if (st >= 0) return st;
    shmrpc_client *c = connect_to(&o, &st);
    if (!c) return st;
    control_list_ServiceStatus list;
    if ((st = named_status(&o, c, &list)) != 0) return st;
    if (o.json) {
        json_t *a = json_array();
        for (size_t i = 0; i < list.len; i++)
            if (named(&o, list.items[i].name))
                json_array_append_new(a, status_json(&list.items[i]));
        put_json(a);
    } else {
        int w = 4;
        for (size_t i = 0; i < list.len; i++)
            if (named(&o, list.items[i].name) && (int)list.items[i].name.len > w)
                w = (int)list.items[i].name.len;
        printf("%-*s  %-8s  %7s  %7s  %8s  %6s  %6s  %s\n", w, "NAME", "STATE", "PID", "WORKERS",
               "RESTARTS", "CPU", "MEM", "UPTIME");
        for (size_t i = 0; i < list.len; i++) {
            const control_ServiceStatus *s = &list.items[i];
            if (!named(&o, s->name)) continue;
            char up[32], cpu[16] = "-", mem[16] = "-";
            uptime(s->started_at_ms, up, sizeof up);
            if (s->cpu_percent.has) /* "12.5%", "250%": ten CPUs in the column's 6 */
                snprintf(cpu, sizeof cpu, s->cpu_percent.value < 100 ? "%.1f%%" : "%.0f%%",
                         s->cpu_percent.value);
            if (s->rss_bytes.has) mem_text(s->rss_bytes.value, mem, sizeof mem);
            printf("%-*.*s  %-8.*s  %7d  %7u  %8d  %6s  %6s  %s\n", w, (int)s->name.len,
                   s->name.ptr, (int)s->state.len, s->state.ptr, (int)s->pid, (unsigned)s->workers,
                   (int)s->restarts, cpu, mem, up);
        }
        /* Why a failed or stopped service ended, where there is something to say. */
        for (size_t i = 0; i < list.len; i++) {
            const control_ServiceStatus *s = &list.items[i];
            if (named(&o, s->name) && s->pid == 0 && s->last_exit.len)
                printf("%.*s: %.*s\n", (int)s->name.len, s->name.ptr, (int)s->last_exit.len,
                       s->last_exit.ptr);
        }
    }
    shmrpc_client_free(c);
    return 0;
}

/* start, stop or restart: the call, then the status until the service settles. */
static int act(int argc, char **argv,
               int (*call)(shmrpc_client *, shmrpc_str, control_ServiceStatus *))
{
    opts o;
    int st = parse(argc, argv, CTL_OPT_WAIT | CTL_OPT_JSON, 1,
                   "SERVICE [--no-wait | --wait SECONDS] [--json] ", &o);
    if (st >= 0) return st;
    shmrpc_client *c = connect_to(&o, &st);
    if (!c) return st;
    bool stopping = strcmp(o.cmd, "stop") == 0;
    control_ServiceStatus s;
    int rc = call(c, shmrpc_str_c(o.pos[0]), &s);
    if (rc) return failed(&o, c, rc);
    /* A restart answers "stopping" with the process it stops, whose end it waits for; one of
     * a service with none starts it at once. */
    int32_t old_pid = strcmp(o.cmd, "restart") == 0 && is(s.state, "stopping") ? s.pid : 0;
    int64_t end = unix_ms() + o.wait_s * 1000;
    for (;;) {
        bool settled = stopping ? is(s.state, "stopped") || is(s.state, "failed")
                                : is(s.state, "failed") ||
                                      (is(s.state, "running") && (!old_pid || s.pid != old_pid));
        if (settled || o.no_wait) break;
        if (unix_ms() >= end) {
            fprintf(stderr, "shmrpcctl: %s: %s is still %.*s after %lds\n", o.cmd, o.pos[0],
                    (int)s.state.len, s.state.ptr, o.wait_s);
            shmrpc_client_free(c);
            return 1;
        }
        nap_ms(POLL_EVERY_MS);
        control_list_ServiceStatus list;
        rc = control_status(c, &list);
        if (rc) return failed(&o, c, rc);
        for (size_t i = 0; i < list.len; i++)
            if (is(list.items[i].name, o.pos[0])) s = list.items[i];
    }
    bool ok = stopping || o.no_wait || !is(s.state, "failed");
    if (o.json) { /* the service as status --json shows it */
        put_json(status_json(&s));
        shmrpc_client_free(c);
        return ok ? 0 : 1;
    }
    printf("%s: %.*s", o.pos[0], (int)s.state.len, s.state.ptr);
    if (s.pid) printf(" (pid %d)", (int)s.pid);
    if (is(s.state, "failed") && s.last_exit.len)
        printf(": %.*s", (int)s.last_exit.len, s.last_exit.ptr);
    else if (!o.no_wait && (stopping || strcmp(o.cmd, "restart") == 0) && s.sigkill.has)
        printf("; %.*s", (int)s.sigkill.value.len, s.sigkill.value.ptr); /* this stop's */
    putchar('\n');
    shmrpc_client_free(c);
    return ok ? 0 : 1;
}

int ctl_start(int argc, char **argv)
{
    return act(argc, argv, control_start);
}

int ctl_stop(int argc, char **argv)
{
    return act(argc, argv, control_stop);
}

int ctl_restart(int argc, char **argv)
{
    return act(argc, argv, control_restart);
}

/* logs -f: name opened for reading when it is a regular file, as the supervisor writes
 * to no other (a FIFO put there would block the reader); -1 with errno else. */
static int open_log(const char *name)
{
    int fd = open(name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    return fd;
}

/* The bytes of the log file at fd from where it is read to its end, to stdout: 0; -1 when
 * stdout fails (a closed pipe: the reader is gone), after no message; else the errno of a
 * read that failed. */
static int copy_out(int fd)
{
    char buf[65536];
    for (ssize_t got; (got = read(fd, buf, sizeof buf)) != 0;) {
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return errno;
        if (fwrite(buf, 1, (size_t)got, stdout) != (size_t)got) return -1;
    }
    return fflush(stdout) == 0 ? 0 : -1;
}

/* The last lines of fd's first end bytes (at most FOLLOW_TAIL_BYTES of them), to stdout. */
static bool put_tail(int fd, off_t end, long lines)
{
    size_t n = end < (off_t)FOLLOW_TAIL_BYTES ? (size_t)end : FOLLOW_TAIL_BYTES, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) return false;
    /* With the byte before them, when there is one: whether their first line is whole. */
    off_t from = end - (off_t)n - (end > (off_t)n);
    for (ssize_t r; got < (size_t)(end - from); got += (size_t)r)
        if ((r = pread(fd, buf + got, (size_t)(end - from) - got, from + (off_t)got)) <= 0) break;
    size_t start = from < end - (off_t)n ? 1 : 0, i = got;
    if (i > start && buf[i - 1] == '\n') i--; /* the last line's end */
    for (long seen = 0; i > start; i--)
        if (buf[i - 1] == '\n' && ++seen == lines) break;
    if (i == start && start == 1 && buf[0] != '\n') { /* the first line is cut: from the next */
        const char *nl = memchr(buf + 1, '\n', got - 1);
        i = nl ? (size_t)(nl - buf) + 1 : got;
    }
    bool ok = i >= got || (fwrite(buf + i, 1, got - i, stdout) == got - i && fflush(stdout) == 0);
    free(buf);
    return ok;
}

/* Where the j-th file of the log at path is: path itself for 0, then path.1 (the newest
 * rotated) to path.KEEP; and its inode, 0 when there is none. */
static ino_t inode_of(const char *path, int j, char *name, size_t cap)
{
    if (j == 0)
        snprintf(name, cap, "%s", path);
    else
        snprintf(name, cap, "%s.%d", path, j);
    struct stat st;
    return stat(name, &st) == 0 ? st.st_ino : 0;
}

/* The file written after the one read (was: fstat of it) was, opened; -1 when that is still
 * the log (not rotated), or nothing follows it yet. A rotation renames path.K to path.K+1
 * from the oldest, removing the one past log_keep, then path to path.1: the file after
 * path.J is path.J-1 for as long as path.J is the one read. One that was removed (the
 * rotation of log_keep = 0, or one past it) is followed by the oldest there is, or by path
 * when there is none; *lost is set when there is some: those before it may be missing. */
static int after(const char *path, const struct stat *was, bool *lost)
{
    char name[4096], next[4096];
    for (int tries = 0; tries < 100; tries++) {
        int j = 0;
        if (was->st_nlink == 0) {
            while (j < FOLLOW_FILES && inode_of(path, j + 1, name, sizeof name))
                j++;
            *lost = j > 0;
            inode_of(path, j, name, sizeof name); /* the oldest there is, or path */
            return open_log(name);
        }
        while (j <= FOLLOW_FILES && inode_of(path, j, name, sizeof name) != was->st_ino)
            j++;
        if (j == 0 || j > FOLLOW_FILES) return -1; /* the log; or moved away by hand */
        inode_of(path, j - 1, next, sizeof next);
        int fd = open_log(next);
        if (fd >= 0 && inode_of(path, j, name, sizeof name) == was->st_ino) return fd;
        if (fd >= 0) close(fd); /* rotated meanwhile: look again */
    }
    return -1;
}

/* logs -f: the last lines of the log file, then what is written to it as it is, across its
 * rotations, as tail -F follows a file by its name. At a rotation the old file is read to
 * its end, then each file rotated after it, then the new one, so no line is lost or shown
 * twice even when it rotates faster than it is looked at, unless the files between are
 * gone (log_keep), which is said. The file is read where status says it is, so following
 * needs read access to it (the supervisor's user has it). Ends only when stdout fails, or
 * by a signal. */
static int follow(const opts *o, const char *path)
{
    int fd = open_log(path);
    if (fd < 0 && errno != ENOENT) {
        fprintf(stderr, "shmrpcctl: logs: %s: %s\n", path,
                errno == EINVAL ? "not a regular file" : strerror(errno));
        return 1;
    }
    if (fd >= 0) {
        off_t end = lseek(fd, 0, SEEK_END);
        if (end < 0 || !put_tail(fd, end, o->lines)) {
            close(fd);
            return 1;
        }
    }
    int err = 0;
    for (;;) {
        if (fd < 0) { /* none yet */
            if ((fd = open_log(path)) < 0) nap_ms(FOLLOW_EVERY_MS);
            continue;
        }
        struct stat st;
        if ((err = copy_out(fd)) != 0 || fstat(fd, &st) != 0) break;
        bool lost = false;
        int next = after(path, &st, &lost);
        if (next >= 0) { /* rotated: the rest of the old one (written before), then the next */
            err = copy_out(fd);
            close(fd);
            fd = next;
            if (err) break;
            if (lost)
                fprintf(stderr,
                        "shmrpcctl: logs: %s rotated past log_keep before it was read: lines "
                        "may be missing here\n",
                        path);
            continue;
        }
        if (st.st_size < lseek(fd, 0, SEEK_CUR)) lseek(fd, 0, SEEK_SET); /* cut short by hand */
        nap_ms(FOLLOW_EVERY_MS);
    }
    if (err > 0) fprintf(stderr, "shmrpcctl: logs: %s: %s\n", path, strerror(err));
    close(fd);
    return 1;
}

int ctl_logs(int argc, char **argv)
{
    opts o;
    int st = parse(argc, argv, CTL_OPT_LINES | CTL_OPT_FOLLOW | CTL_OPT_JSON, 1,
                   "SERVICE [-n LINES] [-f | --json] ", &o);
    if (st >= 0) return st;
    if (o.follow && o.json) return ctl_usage_error(o.cmd, "--json does not go with -f");
    shmrpc_client *c = connect_to(&o, &st);
    if (!c) return st;
    if (o.follow) { /* where the file is, from status: which also knows the name */
        control_list_ServiceStatus list;
        if ((st = named_status(&o, c, &list)) != 0) return st;
        char path[4096] = "";
        for (size_t i = 0; i < list.len; i++)
            if (is(list.items[i].name, o.pos[0]))
                snprintf(path, sizeof path, "%.*s", (int)list.items[i].log_path.len,
                         list.items[i].log_path.ptr);
        shmrpc_client_free(c);
        if (!*path) {
            fprintf(stderr, "shmrpcctl: logs: %s keeps no log file\n", o.pos[0]);
            return 1;
        }
        return follow(&o, path);
    }
    control_list_String lines;
    int rc = control_logs(c, shmrpc_str_c(o.pos[0]), (uint32_t)o.lines, &lines);
    if (rc) return failed(&o, c, rc);
    if (o.json) { /* an array of the lines, oldest first */
        json_t *a = json_array();
        for (size_t i = 0; i < lines.len; i++)
            json_array_append_new(a, str_json(lines.items[i]));
        put_json(a);
    } else {
        for (size_t i = 0; i < lines.len; i++)
            printf("%.*s\n", (int)lines.items[i].len, lines.items[i].ptr);
    }
    shmrpc_client_free(c);
    return 0;
}

int ctl_scale(int argc, char **argv)
{
    opts o;
    int st = parse(argc, argv, CTL_OPT_JSON, 2, "SERVICE WORKERS [--json] ", &o);
    if (st >= 0) return st;
    long workers;
    if (!number(o.pos[1], 1, 1024, &workers)) {
        fprintf(stderr, "shmrpcctl: scale: WORKERS is a number from 1 to 1024\n");
        return 2;
    }
    shmrpc_client *c = connect_to(&o, &st);
    if (!c) return st;
    control_ServiceStatus s;
    int rc = control_scale(c, shmrpc_str_c(o.pos[0]), (uint32_t)workers, &s);
    if (rc) return failed(&o, c, rc);
    if (o.json)
        put_json(status_json(&s));
    else
        printf("%s: %.*s\n", o.pos[0], (int)s.state.len, s.state.ptr);
    shmrpc_client_free(c);
    return 0;
}
