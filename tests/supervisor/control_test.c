/* SPDX-License-Identifier: MIT */
/* The supervisor's control service with real processes: status (with the workers), stop,
 * start, restart, logs, scale and unknown names through the generated client; shmrpcctl's
 * status (table and --json), stop, start, restart and logs; a second supervisor of the
 * same file refused; SIGTERM removing the control segment. Every wait is bounded;
 * teardown removes what a failed test left. */
#define _GNU_SOURCE /* mkdtemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/client.h>

#include "config.h"
#include "control_svc/control.h"
#include "sup_helpers.h"

typedef struct fixture {
    char dir[64];
    char ini[128];
    char shm[32];      /* the echo service's shm_name */
    char control[96];  /* the control service's address */
    pid_t sup;         /* the supervisor, 0 once reaped */
    sup_groups groups; /* services' process groups seen, at most 32, killed in teardown */
    shmrpc_client *c;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/shmrpc-control-test-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->ini, sizeof f->ini, "%s/service.ini", f->dir);
    snprintf(f->shm, sizeof f->shm, "ctl_test_%d", (int)getpid());
    f->groups.cap = 32;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    shmrpc_client_free(f->c);
    sup_end(&f->sup);
    sup_groups_kill(&f->groups);
    sup_remove_segments(f->shm);
    if (f->control[0]) sup_remove_segments(f->control + strlen("shm://"));
    sup_rm_tree(f->dir);
    free(f);
    return 0;
}

/* Starts shmrpc-service --foreground on f->ini, stderr to DIR/NAME. */
static pid_t run_supervisor(fixture *f, const char *err_name)
{
    char errp[160];
    snprintf(errp, sizeof errp, "%s/%s", f->dir, err_name);
    pid_t pid = sup_spawn(f->ini, errp, true, 60, NULL);
    assert_true(pid >= 0);
    return pid;
}

/* Writes the ini, starts the supervisor and connects to its control service. */
static void start(fixture *f, const char *ini)
{
    assert_int_equal(sup_write_file(f->ini, ini), 0);
    assert_int_equal(cfg_control_address(f->ini, f->control, sizeof f->control), 0);
    f->sup = run_supervisor(f, "supervisor.err");
    assert_int_equal(shmrpc_client_new(&f->c, &Control_service_info, NULL), 0);
    for (int64_t end = sup_now_ms() + 5000; shmrpc_client_connect(f->c, f->control) != 0;
         sup_nap_ms(20))
        assert_true(sup_now_ms() < end);
}

static bool is(shmrpc_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* A copy of one service's status. */
typedef struct entry {
    char state[16];
    int pid, restarts;
    long long started_at_ms;
    char last_exit[200];
    char log_path[200];
    unsigned workers;
    int n_pids; /* worker_pids, the first 8 of them in pids */
    int pids[8];
} entry;

static void copy_entry(const control_ServiceStatus *s, entry *e)
{
    snprintf(e->state, sizeof e->state, "%.*s", (int)s->state.len, s->state.ptr);
    snprintf(e->last_exit, sizeof e->last_exit, "%.*s", (int)s->last_exit.len, s->last_exit.ptr);
    snprintf(e->log_path, sizeof e->log_path, "%.*s", (int)s->log_path.len, s->log_path.ptr);
    e->pid = s->pid;
    e->restarts = s->restarts;
    e->started_at_ms = (long long)s->started_at_ms;
    e->workers = s->workers;
    e->n_pids = (int)s->worker_pids.len;
    for (int i = 0; i < e->n_pids && i < 8; i++)
        e->pids[i] = s->worker_pids.items[i];
}

static bool status_of(fixture *f, const char *name, entry *e)
{
    control_list_ServiceStatus list;
    if (control_status(f->c, &list) != 0) return false;
    for (size_t i = 0; i < list.len; i++) {
        if (!is(list.items[i].name, name)) continue;
        copy_entry(&list.items[i], e);
        sup_groups_add(&f->groups, e->pid);
        return true;
    }
    return false;
}

/* Waits up to ms for name to be in state, with a pid other than not_pid. */
static bool wait_state(fixture *f, const char *name, const char *state, int not_pid, int ms,
                       entry *e)
{
    for (int64_t end = sup_now_ms() + ms;; sup_nap_ms(20)) {
        if (status_of(f, name, e) && strcmp(e->state, state) == 0 && e->pid != not_pid) return true;
        if (sup_now_ms() > end) return false;
    }
}

/* Waits up to ms for name to run process pid with n workers (status() reads them from
 * /proc as it answers: a server forks its workers after it starts). */
static bool wait_workers(fixture *f, const char *name, int pid, unsigned n, int ms, entry *e)
{
    for (int64_t end = sup_now_ms() + ms;; sup_nap_ms(20)) {
        if (status_of(f, name, e) && e->pid == pid && e->workers == n) return true;
        if (sup_now_ms() > end) return false;
    }
}

/* The parent and process group of pid from /proc/PID/stat; false when it is gone. */
static bool proc_parent(pid_t pid, int *ppid, int *pgrp)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *r = fopen(path, "r");
    if (!r) return false;
    size_t got = fread(buf, 1, sizeof buf - 1, r);
    fclose(r);
    buf[got] = '\0';
    const char *close = strrchr(buf, ')');
    return close && sscanf(close + 1, " %*c %d %d", ppid, pgrp) == 2;
}

/* The row of name in shmrpcctl status's table: its pid, workers and restarts. */
static bool table_row(const char *out, const char *name, int *pid, unsigned *workers, int *restarts)
{
    for (const char *line = out; *line;) {
        char n[64], state[16];
        if (sscanf(line, "%63s %15s %d %u %d", n, state, pid, workers, restarts) == 5 &&
            strcmp(n, name) == 0)
            return true;
        const char *nl = strchr(line, '\n');
        if (!nl) break;
        line = nl + 1;
    }
    return false;
}

/* Waits up to ms for chatter's log to hold n lines (each run writes 4). */
static bool wait_lines(fixture *f, size_t n, int ms)
{
    for (int64_t end = sup_now_ms() + ms;; sup_nap_ms(20)) {
        control_list_String lines;
        if (control_logs(f->c, shmrpc_str_c("chatter"), 1000, &lines) == 0 && lines.len == n)
            return true;
        if (sup_now_ms() > end) return false;
    }
}

/* Runs shmrpcctl with args (NULL-terminated) and --ini; its stdout in out, exit status. */
static int ctl(fixture *f, char *out, size_t cap, ...)
{
    char *argv[16];
    int n = 0;
    argv[n++] = "shmrpcctl";
    va_list ap;
    va_start(ap, cap);
    for (char *a; n < 12 && (a = va_arg(ap, char *));)
        argv[n++] = a;
    va_end(ap);
    argv[n++] = "--ini";
    argv[n++] = f->ini;
    argv[n] = NULL;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        alarm(30);
        execv(SHMRPCCTL, argv);
        _exit(127);
    }
    close(p[1]);
    size_t got = 0;
    for (ssize_t r; (r = read(p[0], out + got, cap - 1 - got)) > 0 && got < cap - 1;)
        got += (size_t)r;
    out[got] = '\0';
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* ctl, with stderr in out too. */
static int ctl_err(fixture *f, char *out, size_t cap, ...)
{
    char *argv[16];
    int n = 0;
    argv[n++] = "shmrpcctl";
    va_list ap;
    va_start(ap, cap);
    for (char *a; n < 12 && (a = va_arg(ap, char *));)
        argv[n++] = a;
    va_end(ap);
    argv[n++] = "--ini";
    argv[n++] = f->ini;
    argv[n] = NULL;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        alarm(30);
        execv(SHMRPCCTL, argv);
        _exit(127);
    }
    close(p[1]);
    size_t got = 0;
    for (ssize_t r; (r = read(p[0], out + got, cap - 1 - got)) > 0 && got < cap - 1;)
        got += (size_t)r;
    out[got] = '\0';
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void control(void **state)
{
    fixture *f = *state;
    char ini[1024];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nstop_timeout_s = 2\nrestart_backoff_ms = 100\n\n"
             "[echo]\nexec = %s --workers 2 shm://%s\nshm_name = %s\n\n"
             "[chatter]\nexec = %s 3 40\nwait_until_completed = false\n",
             ECHO_SERVER, f->shm, f->shm, CHATTER);
    int64_t t0 = sup_now_ms();
    start(f, ini);

    /* status: both running, with their pids and logs. */
    entry echo, chat;
    assert_true(wait_state(f, "echo", "running", 0, 5000, &echo));
    assert_true(wait_state(f, "chatter", "running", 0, 5000, &chat));
    print_message("both running after %lld ms\n", (long long)(sup_now_ms() - t0));
    assert_true(echo.pid > 0 && chat.pid > 0 && echo.pid != chat.pid);
    assert_true(echo.started_at_ms > 0);
    char want[200];
    snprintf(want, sizeof want, "%s/logs/chatter.log", f->dir);
    assert_string_equal(chat.log_path, want);
    assert_string_equal(chat.last_exit, "");

    /* workers: echo-server --workers 2 has two, ascending, and they are exactly the
     * children of its process, in its group (/proc says so); chatter has no child, so it
     * serves in place and is its own one worker. */
    int64_t tw = sup_now_ms();
    assert_true(wait_workers(f, "echo", echo.pid, 2, 5000, &echo));
    print_message("echo's 2 workers shown after %lld ms\n", (long long)(sup_now_ms() - tw));
    assert_int_equal(echo.n_pids, 2);
    assert_true(echo.pids[0] > 0 && echo.pids[0] < echo.pids[1]);
    pid_t kids[8];
    int n_kids = sup_children((pid_t)echo.pid, kids, 8);
    assert_int_equal(n_kids, 2);
    for (int i = 0; i < 2; i++) {
        assert_true(kids[0] == echo.pids[i] || kids[1] == echo.pids[i]);
        int ppid, pgrp;
        assert_true(proc_parent((pid_t)echo.pids[i], &ppid, &pgrp));
        assert_int_equal(ppid, echo.pid);
        assert_int_equal(pgrp, echo.pid);
    }
    assert_true(wait_workers(f, "chatter", chat.pid, 1, 5000, &chat));
    assert_int_equal(chat.n_pids, 1);
    assert_int_equal(chat.pids[0], chat.pid);

    /* stop: chatter stopped, its group gone; echo untouched. (Once it has written.) */
    assert_true(wait_lines(f, 4, 5000));
    int64_t t1 = sup_now_ms();
    control_ServiceStatus s;
    assert_int_equal(control_stop(f->c, shmrpc_str_c("chatter"), &s), 0);
    assert_true(is(s.state, "stopping") || is(s.state, "stopped"));
    entry after;
    assert_true(wait_state(f, "chatter", "stopped", -1, 3000, &after));
    print_message("stop: stopped after %lld ms\n", (long long)(sup_now_ms() - t1));
    assert_int_equal(after.pid, 0);
    assert_non_null(strstr(after.last_exit, "killed by signal 15"));
    assert_true(sup_group_gone((pid_t)chat.pid));
    assert_int_equal(after.workers, 0); /* none runs: none, at once */
    assert_int_equal(after.n_pids, 0);
    sup_nap_ms(300); /* and it stays stopped */
    assert_true(status_of(f, "chatter", &after));
    assert_string_equal(after.state, "stopped");
    entry echo2;
    assert_true(status_of(f, "echo", &echo2));
    assert_string_equal(echo2.state, "running");
    assert_int_equal(echo2.pid, echo.pid);
    /* Stopping a stopped service is no error. */
    assert_int_equal(control_stop(f->c, shmrpc_str_c("chatter"), &s), 0);
    assert_true(is(s.state, "stopped"));

    /* start: running with a new pid. */
    assert_int_equal(control_start(f->c, shmrpc_str_c("chatter"), &s), 0);
    assert_true(is(s.state, "running"));
    entry started;
    assert_true(wait_state(f, "chatter", "running", chat.pid, 1000, &started));
    assert_true(started.pid > 0);

    /* restart: stopped, then running again with another pid. */
    assert_true(wait_lines(f, 8, 5000));
    int64_t t2 = sup_now_ms();
    assert_int_equal(control_restart(f->c, shmrpc_str_c("chatter"), &s), 0);
    assert_true(is(s.state, "stopping"));
    entry again;
    assert_true(wait_state(f, "chatter", "running", started.pid, 3000, &again));
    print_message("restart: running again after %lld ms\n", (long long)(sup_now_ms() - t2));
    assert_true(sup_group_gone((pid_t)started.pid));
    assert_int_equal(again.restarts, 0); /* an operator's restart is not a crash */
    assert_true(wait_workers(f, "chatter", again.pid, 1, 5000, &again)); /* the new process */
    assert_int_equal(again.pids[0], again.pid);

    /* logs: three runs of 4 lines each once the third has written; asking for more
     * gives them all (and asks for at most 1000). */
    control_list_String lines;
    for (int64_t end = sup_now_ms() + 3000;; sup_nap_ms(20)) {
        assert_int_equal(control_logs(f->c, shmrpc_str_c("chatter"), 5000, &lines), 0);
        if (lines.len == 12) break;
        assert_true(lines.len < 12 && sup_now_ms() < end);
    }
    /* The last two, stamped, the last one without its line end. */
    assert_int_equal(control_logs(f->c, shmrpc_str_c("chatter"), 2, &lines), 0);
    assert_int_equal(lines.len, 2);
    assert_non_null(memmem(lines.items[0].ptr, lines.items[0].len, "Z chatter line 00002 xxx", 24));
    assert_true(lines.items[1].len > 14 &&
                memcmp(lines.items[1].ptr + lines.items[1].len - 13, "chatter: done", 13) == 0);

    /* Unknown names and scale. */
    int rc = control_stop(f->c, shmrpc_str_c("nope"), &s);
    assert_true(rc < 0);
    assert_string_equal(shmrpc_errmsg(), "no service 'nope'; the services are: echo, chatter");
    rc = control_logs(f->c, shmrpc_str_c("nope"), 10, &lines);
    assert_true(rc < 0);
    assert_non_null(strstr(shmrpc_errmsg(), "no service 'nope'"));
    /* chatter is no server on libshmrpc: it runs its own workers (exec_scale.sh scales an
     * exec= echo-server). */
    rc = control_scale(f->c, shmrpc_str_c("chatter"), 3, &s);
    assert_true(rc < 0);
    assert_non_null(strstr(shmrpc_errmsg(), "does not follow a worker count"));

    /* A second supervisor of the same file is refused: the control address is taken. */
    pid_t second = run_supervisor(f, "second.err");
    int st2 = sup_wait_exit(&second, SUP_EXIT_MS);
    assert_true(st2 != -1);
    if (!WIFEXITED(st2) || WEXITSTATUS(st2) != 1)
        fail_msg("the second supervisor: wait status 0x%x (signal %d); its stderr: %s", st2,
                 WIFSIGNALED(st2) ? WTERMSIG(st2) : 0, sup_slurp(f->dir, "second.err"));
    assert_non_null(strstr(sup_slurp(f->dir, "second.err"), "cannot serve the control service"));
    assert_true(status_of(f, "echo", &echo2)); /* the first one goes on */
    assert_int_equal(echo2.pid, echo.pid);

    /* shmrpcctl, finding the supervisor from the same service.ini. */
    char out[8192];
    assert_int_equal(ctl(f, out, sizeof out, "status", NULL), 0);
    print_message("shmrpcctl status:\n%s", out);
    assert_non_null(strstr(out, "NAME"));
    assert_non_null(strstr(out, "  PID  WORKERS  RESTARTS     CPU     MEM  UPTIME\n"));
    assert_non_null(strstr(out, "running"));
    int row_pid, row_restarts;
    unsigned row_workers;
    assert_true(table_row(out, "echo", &row_pid, &row_workers, &row_restarts));
    assert_int_equal(row_pid, echo.pid);
    assert_int_equal(row_workers, 2);
    assert_int_equal(row_restarts, 0);
    assert_true(table_row(out, "chatter", &row_pid, &row_workers, &row_restarts));
    assert_int_equal(row_pid, again.pid);
    assert_int_equal(row_workers, 1);
    assert_int_equal(ctl(f, out, sizeof out, "status", "--json", NULL), 0);
    assert_non_null(strstr(out, "\"name\": \"chatter\""));
    char want_json[200]; /* jansson's JSON_INDENT(2), an array one item a line */
    snprintf(want_json, sizeof want_json,
             "\"pid\": %d,\n    \"restarts\": 0,\n    \"started_at_ms\": %lld,\n"
             "    \"workers\": 2,\n    \"worker_pids\": [\n      %d,\n      %d\n    ],\n",
             echo.pid, echo.started_at_ms, echo.pids[0], echo.pids[1]);
    if (!strstr(out, want_json)) fail_msg("no\n%s\nin\n%s", want_json, out);
    snprintf(want_json, sizeof want_json,
             "\"workers\": 1,\n    \"worker_pids\": [\n      %d\n    ]", again.pid);
    if (!strstr(out, want_json)) fail_msg("no\n%s\nin\n%s", want_json, out);
    assert_int_equal(ctl(f, out, sizeof out, "stop", "chatter", NULL), 0);
    assert_string_equal(out, "chatter: stopped\n");
    assert_int_equal(ctl(f, out, sizeof out, "start", "chatter", NULL), 0);
    assert_non_null(strstr(out, "chatter: running (pid "));
    assert_int_equal(ctl(f, out, sizeof out, "restart", "chatter", NULL), 0);
    assert_non_null(strstr(out, "chatter: running (pid "));
    assert_int_equal(ctl(f, out, sizeof out, "logs", "chatter", "-n", "1", NULL), 0);
    assert_non_null(strstr(out, "chatter: done\n"));
    /* --json: the lines as an array of strings; the answers of start, stop, restart and
     * scale as status --json shows a service. */
    assert_int_equal(ctl(f, out, sizeof out, "logs", "chatter", "-n", "2", "--json", NULL), 0);
    assert_true(strncmp(out, "[\n  \"", 5) == 0);
    assert_non_null(strstr(out, " chatter line 00002 "));
    assert_non_null(strstr(out, "chatter: done\"\n]\n"));
    assert_int_equal(ctl_err(f, out, sizeof out, "logs", "chatter", "-f", "--json", NULL), 2);
    assert_string_equal(out, "shmrpcctl: logs: --json does not go with -f (see 'shmrpcctl logs "
                             "--help')\n");
    assert_int_equal(ctl(f, out, sizeof out, "stop", "chatter", "--json", NULL), 0);
    assert_true(strncmp(out,
                        "{\n  \"name\": \"chatter\",\n  \"state\": \"stopped\",\n  \"pid\": 0,",
                        50) == 0);
    assert_non_null(strstr(out, "\"sigkill\": null\n}\n"));
    assert_int_equal(ctl(f, out, sizeof out, "start", "chatter", "--json", NULL), 0);
    assert_non_null(strstr(out, "\"state\": \"running\""));
    assert_int_equal(ctl(f, out, sizeof out, "scale", "echo", "3", "--json", NULL), 0);
    assert_true(strncmp(out, "{\n  \"name\": \"echo\",\n  \"state\": \"running\",", 36) == 0);
    assert_int_equal(ctl(f, out, sizeof out, "status", "--json", "nope", NULL), 1);
    assert_string_equal(out, "");
    assert_int_equal(ctl(f, out, sizeof out, "stop", "nope", NULL), 1);
    assert_true(status_of(f, "chatter", &again));

    /* SIGTERM: exit 0, every group gone, the control segment removed, calls refused. */
    int st = sup_stop(&f->sup, SUP_EXIT_MS);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    sup_groups_assert_gone(&f->groups);
    assert_false(sup_segment_left(f->control + strlen("shm://")));
    assert_false(sup_segment_left(f->shm));
    assert_true(control_status(f->c, &(control_list_ServiceStatus){0}) < 0);
}

/* shmrpcctl's control commands at their edges: bad --wait and WORKERS (2, and the rule); --help (0,
 * on stdout); -a ADDRESS; start of a service that never answers (still starting after --wait, 1),
 * of one its crash loop marks failed (its last exit, 1), of a running one (nothing done), of one
 * being stopped (started once it stopped); restart of one with no process (a start); status says
 * why a service with no process ended. */
static void control_edges(void **state)
{
    fixture *f = *state;
    char ini[1024], out[8192], want[256];
    snprintf(
        ini, sizeof ini,
        "[defaults]\nlog_dir = logs\nwait_until_completed = false\n\n"
        "[crashy]\nexec = false\nrestart_backoff_ms = 3600000\n"
        "restart_backoff_max_ms = 3600000\n\n"
        "[doomed]\nexec = false\nrestart_backoff_ms = 10\ncrash_loop_restarts = 1\n"
        "shm_name = %s_doomed\nwait_until_completed = true\n\n"
        "[stubborn]\nexec = sh -c 'trap \"\" TERM; exec \"$0\" 1 20' %s\nstop_timeout_s = 1\n\n"
        "[mute]\nexec = sh -c 'exec tail --pid=$PPID -f /dev/null'\nshm_name = %s_mute\n"
        "wait_until_completed = true\nstartup_timeout_s = 3600\nstop_timeout_s = 1\n",
        f->shm, CHATTER, f->shm);
    start(f, ini);
    entry crashy, doomed, stubborn;
    assert_true(wait_state(f, "crashy", "backoff", -1, 5000, &crashy));
    assert_true(wait_state(f, "doomed", "failed", -1, 5000, &doomed));
    assert_true(wait_state(f, "stubborn", "running", 0, 5000, &stubborn));

    /* Bad usage: 2, nothing done. */
    static const char *const waits[] = {"0", "3601", "x", "5s"};
    for (size_t i = 0; i < sizeof waits / sizeof *waits; i++) {
        assert_int_equal(ctl_err(f, out, sizeof out, "start", "crashy", "--wait", waits[i], NULL),
                         2);
        if (strcmp(out, "shmrpcctl: start: --wait takes 1 to 3600 seconds (see 'shmrpcctl start "
                        "--help')\n") != 0)
            fail_msg("--wait %s: %s", waits[i], out);
    }
    static const char *const counts[] = {"0", "1025", "two", "1x"};
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        assert_int_equal(ctl_err(f, out, sizeof out, "scale", "stubborn", counts[i], NULL), 2);
        assert_string_equal(out, "shmrpcctl: scale: WORKERS is a number from 1 to 1024\n");
    }
    assert_int_equal(ctl_err(f, out, sizeof out, "status", "--frobnicate", NULL), 2);
    assert_string_equal(out, "shmrpcctl: status: unrecognized option '--frobnicate' (see "
                             "'shmrpcctl status --help')\n");
    assert_int_equal(ctl(f, out, sizeof out, "logs", "--help", NULL), 0);
    assert_true(strncmp(out, "usage: shmrpcctl [-a ADDRESS | --ini FILE] logs SERVICE [-n LINES] ",
                        67) == 0);
    assert_true(status_of(f, "crashy", &crashy));
    assert_string_equal(crashy.state, "backoff");
    assert_int_equal(crashy.restarts, 0);

    /* status: a service with no process has no uptime, and says how it ended. */
    assert_int_equal(ctl(f, out, sizeof out, "-a", f->control, "status", NULL), 0);
    const char *row = strstr(out, "\ncrashy ");
    assert_non_null(row);
    const char *eol = strchr(row + 1, '\n');
    assert_true(eol && eol - row > 2 && strncmp(eol - 2, " -", 2) == 0);
    if (!strstr(out, "\ncrashy: pid ") || !strstr(out, " exited with status 1\ndoomed: pid ") ||
        !strstr(out, " exited with status 1; restarted 1 times within 60s: failed\n"))
        fail_msg("%s", out);

    /* start of one that never answers at its shm_name: nothing done, and still starting
     * when --wait ends (1). */
    entry mute;
    assert_true(wait_state(f, "mute", "starting", 0, 5000, &mute));
    assert_int_equal(ctl_err(f, out, sizeof out, "start", "mute", "--wait", "1", NULL), 1);
    assert_string_equal(out, "shmrpcctl: start: mute is still starting after 1s\n");
    entry same;
    assert_true(status_of(f, "mute", &same));
    assert_int_equal(same.pid, mute.pid);
    /* start of one its crash loop marks failed: why, and 1. */
    assert_int_equal(ctl(f, out, sizeof out, "start", "doomed", NULL), 1);
    static const char tail[] = " exited with status 1; restarted 1 times within 60s: failed\n";
    if (strncmp(out, "doomed: failed: pid ", 20) != 0 || strlen(out) < sizeof tail ||
        strcmp(out + strlen(out) - (sizeof tail - 1), tail) != 0)
        fail_msg("%s", out);
    /* restart of one with no process: started. */
    assert_true(wait_state(f, "crashy", "backoff", -1, 5000, &crashy));
    int before = crashy.restarts;
    assert_int_equal(ctl(f, out, sizeof out, "restart", "crashy", "--no-wait", NULL), 0);
    assert_true(strncmp(out, "crashy: ", 8) == 0);
    assert_true(wait_state(f, "crashy", "backoff", -1, 5000, &crashy));
    assert_non_null(strstr(sup_slurp(f->dir, "supervisor.err"), "crashy: started by an operator"));
    assert_int_equal(crashy.restarts, before); /* an operator's start, not a restart */

    /* start of a running one: the same process. */
    assert_int_equal(ctl(f, out, sizeof out, "start", "stubborn", NULL), 0);
    snprintf(want, sizeof want, "stubborn: running (pid %d)\n", stubborn.pid);
    assert_string_equal(out, want);
    /* start while it is being stopped (it ignores SIGTERM for its stop_timeout_s): started
     * again once it stopped. */
    for (int64_t end = sup_now_ms() + 3000;
         !strstr(sup_slurp(f->dir, "logs/stubborn.log"), "chatter: done"); sup_nap_ms(20))
        assert_true(sup_now_ms() < end);
    assert_int_equal(ctl(f, out, sizeof out, "stop", "stubborn", "--no-wait", NULL), 0);
    snprintf(want, sizeof want, "stubborn: stopping (pid %d)\n", stubborn.pid);
    assert_string_equal(out, want);
    assert_int_equal(ctl(f, out, sizeof out, "start", "stubborn", "--no-wait", NULL), 0);
    entry again;
    assert_true(wait_state(f, "stubborn", "running", stubborn.pid, 10000, &again));
    assert_true(again.pid > 0 && again.pid != stubborn.pid);
    assert_true(sup_group_gone(stubborn.pid));
    assert_non_null(strstr(sup_slurp(f->dir, "supervisor.err"),
                           "stubborn: still running after stop_timeout_s: SIGKILL"));
    int st = sup_stop(&f->sup, SUP_EXIT_MS);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    sup_groups_assert_gone(&f->groups);
}

/* shmrpcctl logs of a log larger than the 1 MiB it reads: the lines it shows are whole
 * (the cut first one left out), in order and one after the other, up to the last. */
/* VmRSS of /proc/PID/status, in bytes; 0 when it cannot be read. */
static uint64_t vm_rss(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *fp = fopen(path, "r");
    unsigned long long kb = 0;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) break;
    if (fp) fclose(fp);
    return (uint64_t)kb * 1024;
}

/* Waits up to ms for name's CPU and memory to be known (the time series' second sample
 * after its start); their values in *cpu and *rss. */
static bool wait_usage(fixture *f, const char *name, int ms, double *cpu, uint64_t *rss)
{
    for (int64_t end = sup_now_ms() + ms;; sup_nap_ms(50)) {
        control_list_ServiceStatus list;
        assert_int_equal(control_status(f->c, &list), 0);
        for (size_t i = 0; i < list.len; i++) {
            const control_ServiceStatus *s = &list.items[i];
            if (!is(s->name, name)) continue;
            assert_int_equal(s->cpu_percent.has, s->rss_bytes.has);
            if (s->cpu_percent.has) {
                *cpu = s->cpu_percent.value;
                *rss = s->rss_bytes.value;
                return true;
            }
        }
        if (sup_now_ms() > end) return false;
    }
}

/* status: CPU and memory per service (issue 38), from the time series' last sample: a
 * spinning shell near a CPU, a sleeper near none and its memory what /proc says; none once
 * stopped. status NAME... shows those alone; an unknown NAME is said, with status 1. */
static void status_shows_cpu_and_memory(void **state)
{
    fixture *f = *state;
    start(f, "[defaults]\nlog_dir = logs\nstop_timeout_s = 2\n\n"
             "[spin]\nexec = /bin/sh -c 'while :; do :; done'\nwait_until_completed = false\n\n"
             "[idle]\nexec = /bin/sleep 600\nwait_until_completed = false\n");
    entry spin, idle;
    assert_true(wait_state(f, "spin", "running", 0, 5000, &spin));
    assert_true(wait_state(f, "idle", "running", 0, 5000, &idle));
    double spin_cpu = 0, idle_cpu = 0;
    uint64_t spin_rss = 0, idle_rss = 0;
    /* The first sample is at the start, the second series_interval_s (1 s) later; one more
     * so that spin's interval is all spinning. */
    sup_nap_ms(1100);
    assert_true(wait_usage(f, "spin", 10000, &spin_cpu, &spin_rss));
    assert_true(wait_usage(f, "idle", 10000, &idle_cpu, &idle_rss));
    print_message("spin: %.1f%% %llu B; idle: %.1f%% %llu B\n", spin_cpu,
                  (unsigned long long)spin_rss, idle_cpu, (unsigned long long)idle_rss);
    assert_true(spin_cpu > 10 && spin_cpu < 110); /* a CPU, shared with whatever else runs */
    assert_true(idle_cpu >= 0 && idle_cpu < 5);
    uint64_t proc_rss = vm_rss(idle.pid);
    assert_true(proc_rss > 0);
    assert_true(idle_rss >= proc_rss / 2 && idle_rss <= proc_rss * 2);

    char out[8192];
    assert_int_equal(ctl(f, out, sizeof out, "status", "idle", NULL), 0);
    print_message("shmrpcctl status idle:\n%s", out);
    assert_non_null(strstr(out,
                           "NAME  STATE         PID  WORKERS  RESTARTS     CPU     MEM  UPTIME\n"
                           "idle  running  "));
    assert_null(strstr(out, "spin"));
    char name[16], st[16], cpu[16], mem[16];
    int pid, restarts;
    unsigned workers;
    const char *row = strchr(out, '\n') + 1;
    assert_int_equal(
        sscanf(row, "%15s %15s %d %u %d %15s %15s", name, st, &pid, &workers, &restarts, cpu, mem),
        7);
    assert_int_equal(pid, idle.pid);
    assert_true(cpu[strlen(cpu) - 1] == '%' && strchr("KMG", mem[strlen(mem) - 1]));
    assert_int_equal(ctl(f, out, sizeof out, "status", "--json", "spin", NULL), 0);
    assert_null(strstr(out, "\"idle\""));
    assert_non_null(strstr(out, "\"cpu_percent\": "));
    assert_null(strstr(out, "\"cpu_percent\": null"));
    assert_non_null(strstr(out, "\"rss_bytes\": "));
    assert_int_equal(ctl(f, out, sizeof out, "status", "spin", "idle", NULL), 0);
    assert_non_null(strstr(out, "\nspin "));
    assert_non_null(strstr(out, "\nidle "));
    assert_int_equal(ctl_err(f, out, sizeof out, "status", "idle", "nope", NULL), 1);
    assert_string_equal(out,
                        "shmrpcctl: status: no service 'nope'; the services are: spin, idle\n");

    /* Stopped: none, in the table and in JSON. */
    assert_int_equal(ctl(f, out, sizeof out, "stop", "spin", NULL), 0);
    control_list_ServiceStatus list;
    assert_int_equal(control_status(f->c, &list), 0);
    assert_true(is(list.items[0].name, "spin") && list.items[0].pid == 0);
    assert_false(list.items[0].cpu_percent.has || list.items[0].rss_bytes.has);
    assert_int_equal(ctl(f, out, sizeof out, "status", "spin", NULL), 0);
    if (!strstr(out, "\nspin  stopped         0        0         0       -       -  -\n"))
        fail_msg("a stopped spin's row in\n%s", out);
    assert_int_equal(ctl(f, out, sizeof out, "status", "--json", "spin", NULL), 0);
    assert_non_null(strstr(out, "\"cpu_percent\": null,\n    \"rss_bytes\": null,\n"));
}

/* logs -f opens no FIFO put where the log is (it would block there, as the supervisor, which
 * refuses one, does not): it says so at once, with status 1. */
static void logs_follow_refuses_a_fifo(void **state)
{
    fixture *f = *state;
    start(f, "[defaults]\nlog_dir = logs\nwait_until_completed = false\n\n"
             "[kind]\nexec = /bin/sleep 600\n");
    entry e;
    assert_true(wait_state(f, "kind", "running", 0, 5000, &e));
    char log[160], out[512];
    snprintf(log, sizeof log, "%s/logs/kind.log", f->dir);
    assert_int_equal(unlink(log), 0);
    assert_int_equal(mkfifo(log, 0600), 0);
    int64_t t0 = sup_now_ms();
    assert_int_equal(ctl_err(f, out, sizeof out, "logs", "-f", "kind", NULL), 1);
    char want[256];
    snprintf(want, sizeof want, "shmrpcctl: logs: %s: not a regular file\n", log);
    assert_string_equal(out, want);
    print_message("refused in %lld ms\n", (long long)(sup_now_ms() - t0));
}

/* stop says when it had to SIGKILL (issue 38): a service that ignores SIGTERM, after
 * stop_timeout_s; one whose leader ends on SIGTERM but leaves a process that ignores it;
 * and one that ends as asked, which says nothing of the kind. status shows it in last_exit
 * and in its own field; a start after it does not repeat it, nor a restart of a service
 * that runs none. */
static void stop_says_sigkill(void **state)
{
    fixture *f = *state;
    start(f, "[defaults]\nlog_dir = logs\nstop_timeout_s = 1\nwait_until_completed = false\n\n"
             "[deaf]\nexec = /bin/sh -c 'trap \"\" TERM; while :; do sleep 1; done'\n\n"
             "[leaves]\nexec = /bin/sh -c '(trap \"\" TERM; exec sleep 600) & exec sleep 600'\n\n"
             "[kind]\nexec = /bin/sleep 600\n");
    entry e;
    static const char *const names[] = {"deaf", "leaves", "kind"};
    for (int i = 0; i < 3; i++) {
        assert_true(wait_state(f, names[i], "running", 0, 5000, &e));
        sup_groups_add(&f->groups, e.pid);
    }
    sup_nap_ms(200); /* the traps set, the background sleep started */
    char out[1024];
    assert_int_equal(ctl(f, out, sizeof out, "stop", "deaf", NULL), 0);
    assert_string_equal(
        out, "deaf: stopped; still running 1s after SIGTERM (stop_timeout_s): SIGKILL\n");
    assert_int_equal(ctl(f, out, sizeof out, "stop", "leaves", NULL), 0);
    assert_string_equal(out, "leaves: stopped; 1 process of its group left running: SIGKILL\n");
    assert_int_equal(ctl(f, out, sizeof out, "stop", "kind", NULL), 0);
    assert_string_equal(out, "kind: stopped\n");
    assert_true(status_of(f, "deaf", &e));
    assert_non_null(strstr(e.last_exit, " was killed by signal 9 (Killed); still running 1s "
                                        "after SIGTERM (stop_timeout_s): SIGKILL"));
    assert_true(status_of(f, "leaves", &e));
    assert_non_null(strstr(e.last_exit,
                           " was killed by signal 15 (Terminated); 1 process of its group left "
                           "running: SIGKILL"));
    assert_int_equal(ctl(f, out, sizeof out, "status", "--json", "kind", NULL), 0);
    assert_non_null(strstr(out, "\"sigkill\": null"));
    assert_int_equal(ctl(f, out, sizeof out, "status", "--json", "deaf", NULL), 0);
    assert_non_null(
        strstr(out, "\"sigkill\": \"still running 1s after SIGTERM (stop_timeout_s): SIGKILL\""));
    assert_int_equal(ctl(f, out, sizeof out, "start", "deaf", NULL), 0);
    assert_non_null(strstr(out, "deaf: running (pid "));
    assert_null(strstr(out, "SIGKILL"));
    /* A restart of a service that runs none starts one (it waited for the end of the one
     * it had just started, before: 30 s, then "still starting"). */
    assert_int_equal(ctl(f, out, sizeof out, "restart", "kind", NULL), 0);
    assert_non_null(strstr(out, "kind: running (pid "));
    assert_null(strstr(out, "SIGKILL"));
}

/* Whether a line (not NUL-terminated) holds part. */
static bool holds(shmrpc_str line, const char *part)
{
    return memmem(line.ptr, line.len, part, strlen(part)) != NULL;
}

/* path whole, into buf of cap bytes ("" when missing; cut at cap - 1). */
static const char *read_all(const char *path, char *buf, size_t cap)
{
    FILE *fp = fopen(path, "r");
    size_t n = fp ? fread(buf, 1, cap - 1, fp) : 0;
    if (fp) fclose(fp);
    buf[n] = '\0';
    return buf;
}

/* One run of logs -f over a service that writes a line ("gate"), then at the test's word 800
 * lines of 100 B, one each 500 us, and "chatter: done", under log_max_bytes = 4096 (a
 * rotation each 40 lines, 20 ms, faster than the follower looks: each 100 ms) and log_keep
 * = keep. The follower starts before the 800, and with stop_first is stopped (SIGSTOP)
 * until they are all in the log. What it printed, into out and err, cap bytes each; how
 * many chatter lines it showed after gate, in *shown, each after the one before (or it
 * fails): *gaps times not the very next one, the last one 799 (or it fails). */
static void follow_run(fixture *f, int keep, bool stop_first, char *out, char *err, size_t cap,
                       int *shown, int *gaps)
{
    char gate[160], ini[1024], out_path[160], err_path[160];
    snprintf(gate, sizeof gate, "%s/gate", f->dir);
    assert_int_equal(mkfifo(gate, 0600), 0);
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nlog_max_bytes = 4096\nlog_keep = %d\n"
             "wait_until_completed = false\n\n"
             "[talk]\nexec = /bin/sh -c 'echo gate; read go < %s; exec %s 800 100 500'\n",
             keep, gate, CHATTER);
    start(f, ini);
    entry talk;
    assert_true(wait_state(f, "talk", "running", 0, 5000, &talk));
    snprintf(out_path, sizeof out_path, "%s/follow.out", f->dir);
    snprintf(err_path, sizeof err_path, "%s/follow.err", f->dir);
    pid_t follower = fork();
    assert_true(follower >= 0);
    if (follower == 0) {
        dup2(open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600), 1);
        dup2(open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600), 2);
        alarm(60);
        execl(SHMRPCCTL, "shmrpcctl", "logs", "-f", "talk", "-n", "5", "--ini", f->ini,
              (char *)NULL);
        _exit(127);
    }
    for (int64_t end = sup_now_ms() + 10000; !strstr(read_all(out_path, out, cap), " gate\n");
         sup_nap_ms(20))
        if (sup_now_ms() > end) {
            kill(follower, SIGKILL);
            waitpid(follower, NULL, 0);
            fail_msg("logs -f showed no gate line: '%s'", out);
        }
    if (stop_first) kill(follower, SIGSTOP);
    int w = open(gate, O_WRONLY);
    assert_true(w >= 0);
    assert_int_equal(write(w, "go\n", 3), 3);
    close(w);
    if (stop_first) {
        control_list_String last;
        for (int64_t end = sup_now_ms() + 20000;; sup_nap_ms(50)) {
            assert_int_equal(control_logs(f->c, shmrpc_str_c("talk"), 1, &last), 0);
            if (last.len == 1 && holds(last.items[0], " chatter: done")) break;
            assert_true(sup_now_ms() < end);
        }
        kill(follower, SIGCONT);
    }
    for (int64_t end = sup_now_ms() + 20000;
         !strstr(read_all(out_path, out, cap), " chatter: done\n"); sup_nap_ms(50))
        if (sup_now_ms() > end) break;
    kill(follower, SIGTERM);
    int st;
    assert_int_equal(waitpid(follower, &st, 0), follower);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM); /* it follows until told */
    read_all(err_path, err, cap);
    /* gate, then chatter lines in order, then done. */
    const char *line = strstr(out, " gate\n");
    assert_non_null(line);
    line = strchr(line, '\n') + 1;
    int last = -1;
    *shown = *gaps = 0;
    for (const char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        const char *at = strstr(line, " chatter line ");
        if (!at || at > nl) break;
        int n = atoi(at + 14);
        if (n <= last) fail_msg("line %d after %d", n, last);
        *gaps += n != last + 1;
        last = n;
        ++*shown;
    }
    assert_int_equal(last, 799);
    const char *done = strstr(line, " chatter: done\n");
    assert_true(done && done < strchr(line, '\n'));
}

/* logs -f (issue 38): every line written while it follows, once and in order, across the
 * log's rotations, which come faster than it looks: it reads the rotated files between. */
static void logs_follow_across_rotations(void **state)
{
    fixture *f = *state;
    size_t cap = 1 << 20;
    char *out = malloc(cap), *err = malloc(cap);
    assert_true(out && err);
    int shown, gaps;
    follow_run(f, 100, false, out, err, cap, &shown, &gaps);
    assert_int_equal(shown, 800);
    assert_int_equal(gaps, 0);
    assert_string_equal(err, "");
    char old[160]; /* it followed rotations: more than 10 of them */
    snprintf(old, sizeof old, "%s/logs/talk.log.10", f->dir);
    assert_int_equal(access(old, F_OK), 0);
    char msg[512];
    assert_int_equal(ctl_err(f, msg, sizeof msg, "logs", "--follow", "nope", NULL), 1);
    assert_string_equal(msg, "shmrpcctl: logs: no service 'nope'; the services are: talk\n");
    free(out);
    free(err);
}

/* logs -f of a log whose files are rotated away (log_keep = 2) while the follower is
 * stopped: it reads the one it held to its end, goes on from the oldest file there is,
 * says that lines may be missing there, and shows none twice. */
static void logs_follow_past_log_keep(void **state)
{
    fixture *f = *state;
    size_t cap = 1 << 20;
    char *out = malloc(cap), *err = malloc(cap);
    assert_true(out && err);
    int shown, gaps;
    follow_run(f, 2, true, out, err, cap, &shown, &gaps);
    print_message("log_keep = 2, stopped: %d lines shown, %d gaps\n", shown, gaps);
    assert_int_equal(gaps, 1); /* the file it held to its end, then the oldest one there is */
    assert_non_null(strstr(err, "rotated past log_keep before it was read: lines may be missing"));
    free(out);
    free(err);
}

/* With log_keep = 0 each rotation removes the old file, which the follower still reads to
 * its end: no warning (a file made and removed between two of its looks is not seen: the
 * documented price of keeping none). */
static void logs_follow_keep_zero(void **state)
{
    fixture *f = *state;
    size_t cap = 1 << 20;
    char *out = malloc(cap), *err = malloc(cap);
    assert_true(out && err);
    int shown, gaps;
    follow_run(f, 0, false, out, err, cap, &shown, &gaps);
    print_message("log_keep = 0: %d lines shown, %d gaps\n", shown, gaps);
    assert_string_equal(err, "");
    free(out);
    free(err);
}

static void logs_of_a_large_log(void **state)
{
    fixture *f = *state;
    enum { LINES = 700, BYTES = 2000 };
    char ini[512];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nwait_until_completed = false\n\n"
             "[chatter]\nexec = %s %d %d\n",
             CHATTER, LINES, BYTES);
    start(f, ini);
    char path[128];
    snprintf(path, sizeof path, "%s/logs/chatter.log", f->dir);
    for (int64_t end = sup_now_ms() + 10000;; sup_nap_ms(20)) {
        char tail[64] = "";
        FILE *log = fopen(path, "r");
        if (log && fseek(log, -(long)strlen("chatter: done\n"), SEEK_END) == 0 &&
            fgets(tail, sizeof tail, log) == NULL)
            tail[0] = '\0';
        if (log) fclose(log);
        if (strcmp(tail, "chatter: done\n") == 0) break;
        assert_true(sup_now_ms() < end);
    }
    static char out[1 << 21];
    assert_int_equal(ctl(f, out, sizeof out, "logs", "chatter", "-n", "1000", NULL), 0);
    int n = 0, first = -1, last = -1;
    for (char *line = out, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1, n++) {
        *nl = '\0';
        if (strstr(line, "chatter: done")) {
            assert_null(nl[1] ? "a line after the last" : NULL);
            break;
        }
        const char *at = strstr(line, "chatter line ");
        if (!at) fail_msg("line %d is not chatter's: '%.80s'", n, line);
        int k = atoi(at + 13);
        if (first < 0) first = k;
        if (last >= 0 && k != last + 1) fail_msg("line %d: %d after %d", n, k, last);
        last = k;
        /* Whole: its run of x to the end, as chatter wrote it. */
        size_t xs = strspn(at + 19, "x");
        if (xs != (size_t)BYTES - 20 || at[19 + xs] != '\0')
            fail_msg("line %d (chatter's %d) is not whole: %zu x", n, k, xs);
    }
    assert_int_equal(last, LINES - 1);
    assert_true(first > 0); /* not all of it: 1 MiB */
    print_message("logs: chatter's lines %d to %d of %d, whole\n", first, last, LINES);
    int st = sup_stop(&f->sup, SUP_EXIT_MS);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* The log lines of a service (logs(name, n)): the last n, whole, the file rotated before
 * (NAME.log.1) read first when the current one has fewer, its cut last line ended; a
 * NAME.log.1 that cannot be read leaves the current file alone. A name the supervisor does
 * not run: not found, shown to 64 bytes, with the services' names, to 199 bytes. */
static void logs_join_the_rotated_file(void **state)
{
    fixture *f = *state;
    char path[160];
    snprintf(path, sizeof path, "%s/logs", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/logs/quiet.log.1", f->dir);
    assert_int_equal(sup_write_file(path, "old 1\nold 2\nold-cut"), 0);
    snprintf(path, sizeof path, "%s/logs/blocked.log.1", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    char longs[3][64], ini[1024];
    for (int i = 0; i < 3; i++) {
        memset(longs[i], 'a' + i, 60);
        longs[i][60] = '\0';
    }
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nwait_until_completed = false\n\n"
             "[quiet]\nexec = %s 2 20\n\n[blocked]\nexec = %s 2 20\n\n[%s]\nexec = %s 0 20\n\n"
             "[%s]\nexec = %s 0 20\n\n[%s]\nexec = %s 0 20\n",
             CHATTER, CHATTER, longs[0], CHATTER, longs[1], CHATTER, longs[2], CHATTER);
    start(f, ini);
    control_list_String lines;
    static const char *const names[] = {"quiet", "blocked"};
    for (int k = 0; k < 2; k++) {
        for (int64_t end = sup_now_ms() + 10000;; sup_nap_ms(20)) {
            int rc = control_logs(f->c, shmrpc_str_c(names[k]), 1000, &lines);
            if (rc == 0 && lines.len > 0 && holds(lines.items[lines.len - 1], " chatter: done"))
                break;
            assert_true(sup_now_ms() < end);
        }
    }
    static const char *const chatter[] = {" chatter line 00000 ", " chatter line 00001 ",
                                          " chatter: done"};
    assert_int_equal(control_logs(f->c, shmrpc_str_c("quiet"), 1000, &lines), 0);
    assert_int_equal(lines.len, 6);
    assert_true(is(lines.items[0], "old 1"));
    assert_true(is(lines.items[1], "old 2"));
    assert_true(is(lines.items[2], "old-cut"));
    for (int i = 0; i < 3; i++) {
        const shmrpc_str *l = &lines.items[3 + i];
        size_t n = strlen(chatter[i]);
        if (l->len < n || memcmp(l->ptr + l->len - n, chatter[i], n) != 0)
            fail_msg("line %d: '%.*s'", 3 + i, (int)l->len, l->ptr);
    }
    assert_int_equal(control_logs(f->c, shmrpc_str_c("quiet"), 4, &lines), 0);
    assert_int_equal(lines.len, 4);
    assert_true(is(lines.items[0], "old-cut"));
    assert_int_equal(control_logs(f->c, shmrpc_str_c("quiet"), 3, &lines), 0);
    assert_int_equal(lines.len, 3);
    assert_true(holds(lines.items[0], chatter[0]));
    assert_int_equal(control_logs(f->c, shmrpc_str_c("blocked"), 1000, &lines), 0);
    assert_int_equal(lines.len, 3);
    assert_true(holds(lines.items[0], chatter[0]));

    /* The names of the services, cut at 199 bytes. */
    char list[512], want[512];
    snprintf(list, sizeof list, "quiet, blocked, %s, %s, %s", longs[0], longs[1], longs[2]);
    snprintf(want, sizeof want, "no service 'nope'; the services are: %.199s", list);
    assert_int_equal(control_logs(f->c, shmrpc_str_c("nope"), 10, &lines), SHMRPC_ENOENT);
    assert_string_equal(shmrpc_errmsg(), want);
    /* A name of 70 bytes, shown to 64 (the message is then cut at the status's 255). */
    char name[80];
    memset(name, 'n', 70);
    name[70] = '\0';
    snprintf(want, sizeof want, "no service '%.64s...'; the services are: quiet, blocked, aaa",
             name);
    assert_int_equal(control_logs(f->c, shmrpc_str_c(name), 10, &lines), SHMRPC_ENOENT);
    assert_true(strncmp(shmrpc_errmsg(), want, strlen(want)) == 0);
    int st = sup_stop(&f->sup, SUP_EXIT_MS);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(control, setup, teardown),
        cmocka_unit_test_setup_teardown(control_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(status_shows_cpu_and_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_says_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(logs_follow_refuses_a_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(logs_follow_across_rotations, setup, teardown),
        cmocka_unit_test_setup_teardown(logs_follow_past_log_keep, setup, teardown),
        cmocka_unit_test_setup_teardown(logs_follow_keep_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(logs_of_a_large_log, setup, teardown),
        cmocka_unit_test_setup_teardown(logs_join_the_rotated_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
