/* SPDX-License-Identifier: MIT */
/* shmrpc-service with real processes: file order and wait_until_completed, logs and their
 * rotation, output faster than the supervisor reads it, a kill -9 restarted, a crash loop
 * marked failed, a service that never answers, SIGKILL after stop_timeout_s, SIGTERM
 * during a backoff, sd_notify (READY=1 once the page answers, STATUS=, STOPPING=1), and
 * SIGTERM stopping everything. Every wait is bounded;
 * whatever a failed test leaves (the supervisor, its services' process groups, segments,
 * the temporary folder) is removed in teardown. */
#define _GNU_SOURCE /* mkdtemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "sup_helpers.h"

typedef struct fixture {
    char dir[64];
    char shm[32];      /* the shm_name of this test's echo service */
    pid_t sup;         /* the supervisor, 0 once reaped */
    int notify_fd;     /* the socket NOTIFY_SOCKET names */
    sup_groups groups; /* services' process groups seen and not yet known gone, killed in
                        * teardown */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/shmrpc-supervisor-test-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->shm, sizeof f->shm, "sup_test_%d", (int)getpid());
    f->groups.cap = 64;
    f->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/notify", f->dir);
    if (f->notify_fd < 0 || bind(f->notify_fd, (struct sockaddr *)&sa, sizeof sa) != 0) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sup_end(&f->sup);
    sup_groups_kill(&f->groups);
    sup_remove_segments(f->shm);
    close(f->notify_fd);
    sup_rm_tree(f->dir);
    free(f);
    return 0;
}

/* Writes DIR/service.ini and starts the supervisor on it, stderr to DIR/supervisor.err,
 * NOTIFY_SOCKET naming DIR/notify. */
static void start(fixture *f, const char *ini, bool fg)
{
    char ns[128];
    snprintf(ns, sizeof ns, "%s/notify", f->dir);
    const char *env[] = {"NOTIFY_SOCKET", ns, NULL};
    f->sup = sup_start_in(f->dir, ini, fg, 60, env);
}

/* The next sd_notify datagram on fd within ms, STATUS= ones included, or "" (static). */
static const char *datagram(int fd, int ms)
{
    static char msg[512];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    msg[0] = '\0';
    if (poll(&p, 1, ms) == 1) {
        ssize_t n = recv(fd, msg, sizeof msg - 1, 0);
        msg[n > 0 ? n : 0] = '\0';
    }
    return msg;
}

/* The next sd_notify datagram within ms that is not STATUS= alone, or "" (static). */
static const char *notified(fixture *f, int ms)
{
    const char *msg;
    int64_t end = sup_now_ms() + ms;
    do
        msg = datagram(f->notify_fd, (int)(end > sup_now_ms() ? end - sup_now_ms() : 0));
    while (strncmp(msg, "STATUS=", 7) == 0);
    return msg;
}

static long long file_size(fixture *f, const char *name)
{
    char p[160];
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

/* Lines in a file of any size; -1 when missing. */
static long count_lines(fixture *f, const char *name)
{
    char p[160], buf[65536];
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    FILE *r = fopen(p, "r");
    if (!r) return -1;
    long lines = 0;
    for (size_t n; (n = fread(buf, 1, sizeof buf, r)) > 0;)
        for (size_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    fclose(r);
    return lines;
}

/* Whether a file of any size ends with suffix. */
static bool ends_with(fixture *f, const char *name, const char *suffix)
{
    char p[160], tail[128];
    size_t n = strlen(suffix);
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    FILE *r = fopen(p, "r");
    if (!r) return false;
    bool yes = n < sizeof tail && fseek(r, -(long)n, SEEK_END) == 0 && fread(tail, 1, n, r) == n &&
               memcmp(tail, suffix, n) == 0;
    fclose(r);
    return yes;
}

/* One service's entry in status.json, copied. */
typedef struct entry {
    char state[16];
    long long pid, restarts, started_at_ms;
} entry;

static bool status_of(fixture *f, const char *svc, entry *e)
{
    const char *text = sup_slurp(f->dir, "logs/status.json");
    char key[80];
    snprintf(key, sizeof key, "\"%s\": {", svc);
    const char *p = strstr(text, key);
    if (!p) return false;
    const char *end = strchr(p, '}');
    const char *s = strstr(p, "\"state\": \"");
    if (!end || !s || s > end) return false;
    s += 10;
    size_t n = strcspn(s, "\"");
    if (n >= sizeof e->state) return false;
    memcpy(e->state, s, n);
    e->state[n] = '\0';
    const char *q;
    e->pid = (q = strstr(p, "\"pid\": ")) && q < end ? atoll(q + 7) : -1;
    e->restarts = (q = strstr(p, "\"restarts\": ")) && q < end ? atoll(q + 12) : -1;
    e->started_at_ms = (q = strstr(p, "\"started_at_ms\": ")) && q < end ? atoll(q + 17) : 0;
    sup_groups_add(&f->groups, (pid_t)e->pid);
    return true;
}

/* Waits up to ms for svc to be in state; its entry in *e. */
static bool wait_state(fixture *f, const char *svc, const char *state, int ms, entry *e)
{
    for (int64_t end = sup_now_ms() + ms;; sup_nap_ms(20)) {
        if (status_of(f, svc, e) && strcmp(e->state, state) == 0) return true;
        if (sup_now_ms() > end) return false;
    }
}

/* SIGTERM to the supervisor, which must exit with status 0 within SUP_EXIT_MS; says what
 * it did instead, with its stderr. Returns the milliseconds it took. */
static int64_t stop_cleanly(fixture *f)
{
    int64_t t0 = sup_now_ms();
    int st = sup_stop(&f->sup, SUP_EXIT_MS);
    int64_t took = sup_now_ms() - t0;
    if (st == -1)
        fail_msg("the supervisor still runs %lld ms after SIGTERM; its stderr: %s", (long long)took,
                 sup_slurp(f->dir, "supervisor.err"));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("the supervisor's wait status after SIGTERM: 0x%x (signal %d); its stderr: %s", st,
                 WIFSIGNALED(st) ? WTERMSIG(st) : 0, sup_slurp(f->dir, "supervisor.err"));
    return took;
}

/* Once the supervisor exited: every process group status.json showed is gone, and
 * teardown has none left to kill (their ids may be reused from now on). */
static void all_groups_gone(fixture *f)
{
    assert_int_equal(f->sup, 0);
    sup_groups_assert_gone(&f->groups);
}

/* Two services: echo answers only a second after it first starts (its restarts do not
 * sleep); chatter must start after. */
static void lifecycle(void **state)
{
    fixture *f = *state;
    char ini[1024];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nlog_max_bytes = 4K\nlog_keep = 2\n"
             "restart_backoff_ms = 100\nstop_timeout_s = 2\n\n"
             "[echo]\nexec = sh -c '[ -e slept ] || { : >slept; sleep 1; }; "
             "exec \"$0\" --workers 2 shm://%s' %s\n"
             "shm_name = %s\n\n"
             "[chatter]\nexec = %s 300 100\nwait_until_completed = false\n",
             f->shm, ECHO_SERVER, f->shm, CHATTER);
    int64_t t0 = sup_now_ms();
    start(f, ini, true);

    assert_string_equal(notified(f, 10000), "READY=1");
    print_message("READY=1 after %lld ms\n", (long long)(sup_now_ms() - t0));
    entry echo, chat;
    assert_true(wait_state(f, "echo", "running", 1000, &echo));
    assert_true(wait_state(f, "chatter", "running", 1000, &chat));
    /* File order, and chatter only once echo answered, a second after it started. */
    assert_true(chat.started_at_ms - echo.started_at_ms >= 1000);
    const char *sup = sup_slurp(f->dir, "supervisor.err");
    const char *answered = strstr(sup, "echo: answering at shm://");
    assert_non_null(answered);
    assert_non_null(strstr(answered, "chatter: started"));

    /* Its output in its log, stamped, rotated at 4K with two old files kept. */
    for (int64_t end = sup_now_ms() + 5000;
         !strstr(sup_slurp(f->dir, "logs/chatter.log"), "chatter: done"); sup_nap_ms(20))
        assert_true(sup_now_ms() < end);
    const char *log = sup_slurp(f->dir, "logs/chatter.log");
    assert_true(log[4] == '-' && log[10] == 'T' && strstr(log, "Z chatter line "));
    assert_true(file_size(f, "logs/chatter.log") <= 4096);
    assert_true(file_size(f, "logs/chatter.log.1") > 3000);
    assert_true(file_size(f, "logs/chatter.log.1") <= 4096);
    assert_true(file_size(f, "logs/chatter.log.2") > 3000);
    assert_int_equal(file_size(f, "logs/chatter.log.3"), -1);
    assert_non_null(strstr(sup_slurp(f->dir, "logs/chatter.log.1"), "chatter line 00"));
    char serving[96];
    snprintf(serving, sizeof serving, "echo-server: serving shm://%s", f->shm);
    assert_non_null(strstr(sup_slurp(f->dir, "logs/echo.log"), serving));

    /* kill -9: restarted and answering again within 3 s (100 ms of backoff, then the
     * time echo-server takes to serve), the old group gone. */
    int64_t t1 = sup_now_ms();
    assert_int_equal(kill((pid_t)echo.pid, SIGKILL), 0);
    entry again;
    for (int64_t end = sup_now_ms() + 3000;; sup_nap_ms(20)) {
        if (status_of(f, "echo", &again) && again.pid != echo.pid &&
            strcmp(again.state, "running") == 0)
            break;
        assert_true(sup_now_ms() < end);
    }
    print_message("echo killed -9, answering again after %lld ms\n",
                  (long long)(sup_now_ms() - t1));
    assert_int_equal(again.restarts, 1);
    assert_true(sup_group_gone((pid_t)echo.pid));

    /* SIGTERM: STOPPING=1, everything gone and exit status 0 (the time it took is printed;
     * SUP_EXIT_MS only tells a hang from a page slow to stop). */
    print_message("SIGTERM to exit: %lld ms\n", (long long)stop_cleanly(f));
    assert_string_equal(notified(f, 0), "STOPPING=1\nSTATUS=stopping the services, last first");
    assert_true(sup_group_gone((pid_t)again.pid));
    assert_true(sup_group_gone((pid_t)chat.pid));
    all_groups_gone(f);
    assert_true(status_of(f, "echo", &again));
    assert_string_equal(again.state, "stopped");
    assert_false(sup_segment_left(f->shm));
}

/* The delays in "NAME: pid N ...; restarting in D ms" lines of log, in order, into out
 * (at most cap); their count. */
static size_t delays_of(const char *log, const char *name, long *out, size_t cap)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s: pid ", name);
    size_t n = 0;
    for (const char *line = log; *line;) {
        const char *nl = strchr(line, '\n'), *end = nl ? nl : line + strlen(line);
        const char *at = strstr(line, prefix), *d = strstr(line, "; restarting in ");
        if (at && d && at < end && d < end && n < cap)
            out[n++] = strtol(d + strlen("; restarting in "), NULL, 10);
        line = nl ? nl + 1 : end;
    }
    return n;
}

/* Whether a line of log that holds head also holds tail after it. */
static bool line_with(const char *log, const char *head, const char *tail)
{
    for (const char *p = strstr(log, head); p; p = strstr(p + 1, head)) {
        const char *t = strstr(p, tail), *nl = strchr(p, '\n');
        if (t && (!nl || t < nl)) return true;
    }
    return false;
}

/* A program that exits at once: restarted 3 times with backoff, then marked failed. The
 * backoff doubles from restart_backoff_ms up to restart_backoff_max_ms: 50, 100, then 150
 * (the cap), as each restart's log line says; with 5 restarts, 20 then 40 (the cap) four
 * times. A process that ran a whole crash_loop_window_s before it crashed starts the
 * backoff afresh, and its restart long ago does not count towards failing. The test reads
 * READY=1 from NOTIFY_SOCKET and nothing after: the STATUS= lines of all these changes
 * fill its queue, and the supervisor goes on regardless. */
static void crash_loop(void **state)
{
    fixture *f = *state;
    start(f,
          "[defaults]\nlog_dir = logs\n\n[crashy]\nexec = false\nwait_until_completed = false\n"
          "restart_backoff_ms = 50\nrestart_backoff_max_ms = 150\ncrash_loop_restarts = 3\n\n"
          "[capped]\nexec = false\nwait_until_completed = false\nrestart_backoff_ms = 20\n"
          "restart_backoff_max_ms = 40\ncrash_loop_restarts = 5\n\n"
          "[slow]\nexec = sh -c 'sleep 1.1; exit 3'\nwait_until_completed = false\n"
          "restart_backoff_ms = 20\nrestart_backoff_max_ms = 1000\ncrash_loop_restarts = 1\n"
          "crash_loop_window_s = 1\n",
          false);
    assert_string_equal(notified(f, 5000), "READY=1");
    entry e;
    assert_true(wait_state(f, "crashy", "failed", 5000, &e));
    assert_int_equal(e.restarts, 3);
    assert_int_equal(e.pid, 0);
    /* Not --foreground: the supervisor's lines are in its own log, not on stderr. */
    const char *log = sup_slurp(f->dir, "logs/shmrpc-service.log");
    assert_non_null(strstr(log, "crashy: pid "));
    assert_non_null(strstr(log, "restarted 3 times within 60s: marked failed"));
    static const long delays[] = {50, 100, 150};
    long got[8];
    assert_int_equal(delays_of(log, "crashy", got, 8), 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(got[i], delays[i]);
    assert_true(wait_state(f, "capped", "failed", 5000, &e));
    assert_int_equal(e.restarts, 5);
    log = sup_slurp(f->dir, "logs/shmrpc-service.log");
    assert_int_equal(delays_of(log, "capped", got, 8), 5);
    static const long capped[] = {20, 40, 40, 40, 40};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(got[i], capped[i]);
    assert_non_null(strstr(log, "capped: pid "));
    assert_non_null(strstr(log, "; restarted 5 times within 60s: marked failed"));
    /* slow: each run is over 1 s, its window: 20 ms each time, never failed. */
    for (int64_t end = sup_now_ms() + 10000;; sup_nap_ms(50)) {
        log = sup_slurp(f->dir, "logs/shmrpc-service.log");
        if (line_with(log, "slow: pid ", "marked failed"))
            fail_msg("slow was marked failed:\n%s", log);
        if (delays_of(log, "slow", got, 8) >= 2) break;
        assert_true(sup_now_ms() < end);
    }
    assert_int_equal(got[0], 20);
    assert_int_equal(got[1], 20);
    assert_string_equal(sup_slurp(f->dir, "supervisor.err"), "");
    sup_nap_ms(300); /* and it stays failed */
    assert_true(status_of(f, "crashy", &e));
    assert_string_equal(e.state, "failed");
    stop_cleanly(f);
    all_groups_gone(f);
}

/* A service that never answers at its shm_name: failed after startup_timeout_s, and the
 * next one starts anyway. */
static void never_answers(void **state)
{
    fixture *f = *state;
    char ini[1024];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nstop_timeout_s = 1\n\n"
             "[mute]\nexec = %s 1 20\nshm_name = %s\nstartup_timeout_s = 1\n\n"
             "[after]\nexec = %s 1 20\nwait_until_completed = false\n",
             CHATTER, f->shm, CHATTER);
    start(f, ini, true);
    entry mute, after;
    assert_true(wait_state(f, "mute", "starting", 2000, &mute));
    pid_t mute_pid = (pid_t)mute.pid;
    assert_true(mute_pid > 0); /* sup_group_gone(0) would ask about this test's own group */
    assert_true(wait_state(f, "mute", "failed", 4000, &mute));
    assert_true(wait_state(f, "after", "running", 1000, &after));
    assert_true(sup_group_gone(mute_pid));
    assert_non_null(strstr(sup_slurp(f->dir, "supervisor.err"), "mute: not answering after 1s"));
    stop_cleanly(f);
    all_groups_gone(f);
}

/* A service writing far more than a pipe holds (64 KiB) faster than the supervisor reads:
 * it waits for the pipe rather than losing lines. */
static void much_output(void **state)
{
    fixture *f = *state;
    char ini[512];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nlog_max_bytes = none\n\n"
             "[chatter]\nexec = %s 20000 200\nwait_until_completed = false\n",
             CHATTER);
    start(f, ini, true);
    /* 20000 lines of 200 bytes, then "chatter: done": 4 MB. */
    for (int64_t end = sup_now_ms() + 20000; !ends_with(f, "logs/chatter.log", "chatter: done\n");
         sup_nap_ms(50))
        assert_true(sup_now_ms() < end);
    assert_int_equal(count_lines(f, "logs/chatter.log"), 20001);
    const char *status = sup_slurp(f->dir, "logs/status.json");
    assert_non_null(strstr(status, "\"log_dropped_bytes\": 0}"));
    stop_cleanly(f);
    all_groups_gone(f);
}

/* The log's file cannot grow (the supervisor runs with a file size limit of 64 KiB, as on
 * a full disk: its writes fail, here with EFBIG): the service goes on to its end, what was
 * not written is dropped and counted, byte for byte, and status.json shows the count. The
 * service prints 4000 lines of 37 bytes and exits; it is not restarted before the test
 * ends, and the status written when it stopped counts all it printed. */
static void full_log_drops_and_counts(void **state)
{
    fixture *f = *state;
    const char *ini = "[defaults]\nlog_dir = logs\nlog_max_bytes = none\n\n"
                      "[printer]\nexec = sh -c 'yes 0123456789abcdefghijklmnopqrstuvwxyz | "
                      "head -n 4000'\nwait_until_completed = false\n"
                      "restart_backoff_ms = 60000\nrestart_backoff_max_ms = 60000\n";
    struct rlimit was, full = {.rlim_cur = 65536};
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &was), 0);
    full.rlim_max = was.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &full), 0);
    signal(SIGXFSZ, SIG_IGN); /* inherited through exec, as a write past the limit signals */
    start(f, ini, true);
    signal(SIGXFSZ, SIG_DFL);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &was), 0);
    entry e;
    if (!wait_state(f, "printer", "backoff", 20000, &e))
        fail_msg("not in backoff: %s", sup_slurp(f->dir, "logs/status.json"));
    const char *status = sup_slurp(f->dir, "logs/status.json");
    const char *at = strstr(status, "\"log_dropped_bytes\": ");
    assert_non_null(at);
    long long dropped = strtoll(at + strlen("\"log_dropped_bytes\": "), NULL, 10);
    long long size = file_size(f, "logs/printer.log");
    /* Each line after a stamp of 24 bytes and a blank: what the supervisor had to write. */
    long long want = 4000LL * (37 + 25);
    print_message("printer.log: %lld bytes written, %lld dropped\n", size, dropped);
    assert_true(size <= 65536);
    assert_true(dropped > 0);
    assert_int_equal(size + dropped, want);
    stop_cleanly(f);
    all_groups_gone(f);
}

/* A service that dies takes its process group with it: the child it left running (in its
 * group) is gone by the time the supervisor waits to restart it, so that the restart finds
 * nobody holding its name or port. */
static void dead_service_takes_its_group(void **state)
{
    fixture *f = *state;
    char ini[768];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\n\n[leaver]\n"
             "exec = sh -c 'sleep 1000 & echo $$ > %s/group.tmp && mv %s/group.tmp %s/group; "
             "sleep 0.2; exit 3'\nwait_until_completed = false\n"
             "restart_backoff_ms = 60000\nrestart_backoff_max_ms = 60000\n",
             f->dir, f->dir, f->dir);
    start(f, ini, true);
    const char *group = "";
    for (int64_t end = sup_now_ms() + 10000; !*(group = sup_slurp(f->dir, "group")); sup_nap_ms(10))
        assert_true(sup_now_ms() < end);
    pid_t pgid = (pid_t)atoi(group);
    assert_true(pgid > 1);
    sup_groups_add(&f->groups, pgid);
    entry e;
    assert_true(wait_state(f, "leaver", "backoff", 10000, &e));
    bool gone = false;
    for (int64_t end = sup_now_ms() + 5000; !(gone = sup_group_gone(pgid)) && sup_now_ms() < end;
         sup_nap_ms(10)) {
    }
    assert_true(gone);
    stop_cleanly(f);
    all_groups_gone(f);
}

/* A service that ignores SIGTERM is killed stop_timeout_s later; one waiting to be
 * restarted is simply stopped, not started first. */
static void stop_escalates(void **state)
{
    fixture *f = *state;
    char ini[1024];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nstop_timeout_s = 1\nwait_until_completed = false\n\n"
             "[stubborn]\nexec = sh -c 'trap \"\" TERM; exec \"$0\" 1 20' %s\n\n"
             "[crashy]\nexec = false\nrestart_backoff_ms = 60000\nrestart_backoff_max_ms = 60000\n",
             CHATTER);
    start(f, ini, true);
    entry stubborn, crashy;
    assert_true(wait_state(f, "stubborn", "running", 3000, &stubborn));
    assert_true(wait_state(f, "crashy", "backoff", 3000, &crashy));
    /* Until it prints, the trap may not be set yet. */
    for (int64_t end = sup_now_ms() + 3000;
         !strstr(sup_slurp(f->dir, "logs/stubborn.log"), "chatter: done"); sup_nap_ms(20))
        assert_true(sup_now_ms() < end);

    int64_t took = stop_cleanly(f);
    print_message("SIGTERM to exit with a service ignoring it: %lld ms\n", (long long)took);
    assert_true(took >= 1000); /* it had its stop_timeout_s */
    const char *sup = sup_slurp(f->dir, "supervisor.err");
    assert_non_null(strstr(sup, "stubborn: still running after stop_timeout_s: SIGKILL"));
    assert_true(status_of(f, "stubborn", &stubborn));
    assert_string_equal(stubborn.state, "stopped");
    assert_true(status_of(f, "crashy", &crashy));
    assert_string_equal(crashy.state, "stopped");
    assert_int_equal(crashy.restarts, 0);
    all_groups_gone(f);
}

/* SIGTERM while a service that never answered is being stopped: it stays failed. */
static void failed_stays_failed(void **state)
{
    fixture *f = *state;
    char ini[1024];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nstop_timeout_s = 1\n\n"
             "[mute]\nexec = sh -c 'trap \"\" TERM; exec \"$0\" 1 20' %s\nshm_name = %s\n"
             "startup_timeout_s = 1\n",
             CHATTER, f->shm);
    start(f, ini, true);
    entry mute;
    assert_true(wait_state(f, "mute", "stopping", 4000, &mute));
    /* Bounded as sup_end is: mute's stop_timeout_s, then the page's exit, which in the ASan
     * build (LeakSanitizer scans its heap) took 4 s on a loaded machine. */
    stop_cleanly(f);
    assert_true(status_of(f, "mute", &mute));
    assert_string_equal(mute.state, "failed");
    all_groups_gone(f);
}

/* A FIFO where status.json's temporary file goes (log_dir is the user's): fopen() waited
 * in open() for a reader, and the supervisor's loop with it, deaf to SIGTERM. Now the
 * write is skipped with a line in the log, and SIGTERM stops the supervisor. */
static void fifo_status_file(void **state)
{
    fixture *f = *state;
    char p[160];
    snprintf(p, sizeof p, "%s/logs", f->dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/logs/.status.json.tmp", f->dir);
    assert_int_equal(mkfifo(p, 0600), 0);
    start(f,
          "[defaults]\nlog_dir = logs\n\n[crashy]\nexec = false\nwait_until_completed = false\n"
          "restart_backoff_ms = 50\ncrash_loop_restarts = 1\n",
          true);
    char want[256];
    snprintf(want, sizeof want, "cannot write %s: a FIFO, not a regular file", p);
    bool said = false;
    for (int64_t end = sup_now_ms() + 5000; !said && sup_now_ms() < end; sup_nap_ms(20))
        said = strstr(sup_slurp(f->dir, "supervisor.err"), want) != NULL;
    assert_true(said);
    stop_cleanly(f);
}

/* A TCP port on 127.0.0.1 that was free a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
                       getsockname(fd, (struct sockaddr *)&a, &len) == 0
                   ? ntohs(a.sin_port)
                   : -1;
    if (fd >= 0) close(fd);
    return port;
}

/* Whether 127.0.0.1:port answers an HTTP request now (one try, bounded by 5 s). */
static bool page_answers(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    static const char req[] = "HEAD /favicon.svg HTTP/1.0\r\n\r\n";
    char head[8] = "";
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
              send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)sizeof req - 1;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ok = ok && poll(&p, 1, 5000) == 1 && recv(fd, head, 7, MSG_WAITALL) == 7;
    if (fd >= 0) close(fd);
    return ok && memcmp(head, "HTTP/1.", 7) == 0;
}

/* Type=notify as systemd runs it, with an abstract NOTIFY_SOCKET (a leading '@'): READY=1
 * comes once the management page answers, so that a unit ordered after this one finds it;
 * then STATUS= with the services and the page; STOPPING=1 on SIGTERM. */
static void notify_ready_after_page(void **state)
{
    fixture *f = *state;
    char name[64], ini[1024];
    snprintf(name, sizeof name, "@shmrpc-notify-test-%d", (int)getpid());
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path + 1, name + 1, strlen(name) - 1); /* sun_path[0] = '\0': abstract */
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name))),
                     0);
    int port = free_port();
    assert_true(port > 0);
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nstop_timeout_s = 2\n\n[web monitor]\nport = %d\n\n"
             "[echo]\nexec = %s --workers 1 shm://%s\nshm_name = %s\n",
             port, ECHO_SERVER, f->shm, f->shm);
    const char *env[] = {"NOTIFY_SOCKET", name, NULL};
    int64_t t0 = sup_now_ms();
    f->sup = sup_start_in(f->dir, ini, true, 60, env);

    const char *msg = datagram(fd, 15000);
    print_message("READY=1 after %lld ms\n", (long long)(sup_now_ms() - t0));
    assert_string_equal(msg, "READY=1");
    bool up = page_answers(port);
    if (!up) print_message("supervisor:\n%s", sup_slurp(f->dir, "supervisor.err"));
    assert_true(up);
    char want[160];
    snprintf(want, sizeof want, "STATUS=1 of 1 service running; page http://127.0.0.1:%d/", port);
    assert_string_equal(datagram(fd, 5000), want);

    stop_cleanly(f);
    assert_string_equal(datagram(fd, 0), "STOPPING=1\nSTATUS=stopping the services, last first");
    assert_string_equal(datagram(fd, 0), ""); /* and nothing else */
    close(fd);
    assert_false(sup_segment_left(f->shm));
}

/* A page that cannot listen (the test holds its port, and never answers there): READY=1
 * all the same, without waiting for the page's 10 s, and STATUS= names no page. */
static void notify_ready_without_page(void **state)
{
    fixture *f = *state;
    int held = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_true(held >= 0);
    assert_int_equal(bind(held, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(held, 8), 0);
    assert_int_equal(getsockname(held, (struct sockaddr *)&a, &len), 0);
    char ini[1024];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nstop_timeout_s = 2\n\n[web monitor]\nport = %d\n\n"
             "[echo]\nexec = %s --workers 1 shm://%s\nshm_name = %s\n",
             ntohs(a.sin_port), ECHO_SERVER, f->shm, f->shm);
    int64_t t0 = sup_now_ms();
    start(f, ini, true);
    assert_string_equal(datagram(f->notify_fd, 15000), "READY=1");
    int64_t took = sup_now_ms() - t0;
    print_message("READY=1 without the page after %lld ms\n", (long long)took);
    assert_true(took < 8000); /* not the 10 s the supervisor gives a page that is slow */
    assert_string_equal(datagram(f->notify_fd, 5000), "STATUS=1 of 1 service running");
    assert_non_null(strstr(sup_slurp(f->dir, "supervisor.err"), "web monitor: "));
    stop_cleanly(f);
    close(held);
}

/* A reader of NOTIFY_SOCKET whose queue is full (it reads none, or is stuck) never stalls
 * the supervisor, and loses nothing that matters: status.json goes on to "running", the
 * full queue is said once in the log, and READY=1, then STATUS=, reach the reader once it
 * reads again (systemd ends a Type=notify unit whose READY=1 never comes). The test fills
 * its own socket's queue first. */
static void notify_queue_full(void **state)
{
    fixture *f = *state;
    int w = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/notify", f->dir);
    assert_true(w >= 0);
    int filled = 0;
    while (filled < 100000 && sendto(w, "FILLER", 6, 0, (struct sockaddr *)&sa, sizeof sa) == 6)
        filled++;
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    close(w);
    char ini[1024];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nstop_timeout_s = 2\n\n[web monitor]\nport = %d\n\n"
             "[echo]\nexec = %s --workers 1 shm://%s\nshm_name = %s\n",
             free_port(), ECHO_SERVER, f->shm, f->shm);
    start(f, ini, true);
    /* The supervisor goes on: running, and the full queue said. */
    const char *said = "sd_notify READY=1 to ";
    bool running = false, told = false;
    for (int64_t end = sup_now_ms() + 20000; !(running && told) && sup_now_ms() < end;
         sup_nap_ms(50)) {
        running = strstr(sup_slurp(f->dir, "logs/status.json"), /* the supervisor's own */
                         "\"state\": \"running\",\n  \"updated_at\"");
        told = strstr(sup_slurp(f->dir, "supervisor.err"), said);
    }
    if (!running) fail_msg("status.json never said running: the supervisor stalled");
    if (!told) fail_msg("the full queue was not said: %s", sup_slurp(f->dir, "supervisor.err"));
    sup_nap_ms(500); /* READY=1 goes again every 100 ms meanwhile */
    const char *log = sup_slurp(f->dir, "supervisor.err");
    const char *first = strstr(log, "sd_notify");
    if (first && strstr(first + 1, "sd_notify"))
        fail_msg("the full queue was said more than once:\n%s", log);
    /* The reader reads again: its fillers, then READY=1 and STATUS=, none lost. */
    for (int i = 0; i < filled; i++)
        assert_string_equal(datagram(f->notify_fd, 1000), "FILLER");
    assert_string_equal(datagram(f->notify_fd, 5000), "READY=1");
    const char *status = datagram(f->notify_fd, 5000);
    if (strncmp(status, "STATUS=1 of 1 service running", 29) != 0)
        fail_msg("not the status: '%s'", status);
    print_message("%d datagrams filled the queue; READY=1 and STATUS= came once it emptied\n",
                  filled);
    stop_cleanly(f);
}

/* A second SIGTERM while a service that ignores the first is given its stop_timeout_s (an
 * hour here): SIGKILL to every service at once, said in the log, and the supervisor exits
 * 0 with nothing left behind. */
static void sigterm_twice_kills(void **state)
{
    fixture *f = *state;
    char ini[1024];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nstop_timeout_s = 3600\nwait_until_completed = false\n\n"
             "[stubborn]\nexec = sh -c 'trap \"\" TERM; exec \"$0\" 1 20' %s\n",
             CHATTER);
    start(f, ini, true);
    entry stubborn;
    assert_true(wait_state(f, "stubborn", "running", 3000, &stubborn));
    for (int64_t end = sup_now_ms() + 3000;
         !strstr(sup_slurp(f->dir, "logs/stubborn.log"), "chatter: done"); sup_nap_ms(20))
        assert_true(sup_now_ms() < end);
    assert_int_equal(kill(f->sup, SIGTERM), 0);
    for (int64_t end = sup_now_ms() + 5000; !strstr(
             sup_slurp(f->dir, "supervisor.err"), "Terminated: stopping the services, last first");
         sup_nap_ms(20))
        assert_true(sup_now_ms() < end);
    /* Still waiting for it: an hour is its due. */
    assert_int_equal(sup_wait_exit(&f->sup, 200), -1);
    stop_cleanly(f);
    const char *sup = sup_slurp(f->dir, "supervisor.err");
    assert_non_null(strstr(sup, "Terminated again: SIGKILL to every service"));
    assert_null(strstr(sup, "still running after stop_timeout_s"));
    assert_true(status_of(f, "stubborn", &stubborn));
    assert_string_equal(stubborn.state, "stopped");
    all_groups_gone(f);
}

/* A second supervisor of the same file, not in the foreground (its lines go to
 * LOG_DIR/shmrpc-service.log), finds the control service's address taken: it says so in
 * its log and on stderr, and exits 1 before starting any service; the first goes on, its
 * service's process the same. (control_test.c checks the same in the foreground.) */
static void second_supervisor_refused(void **state)
{
    fixture *f = *state;
    start(f,
          "[defaults]\nlog_dir = logs\nwait_until_completed = false\n\n"
          "[sleeper]\nexec = sh -c 'exec tail --pid=$PPID -f /dev/null'\n",
          true);
    entry first;
    assert_true(wait_state(f, "sleeper", "running", 5000, &first));
    char ini[128], err[128];
    snprintf(ini, sizeof ini, "%s/service.ini", f->dir);
    snprintf(err, sizeof err, "%s/second.err", f->dir);
    pid_t second = sup_spawn(ini, err, false, 60, NULL);
    assert_true(second > 0);
    int st = sup_wait_exit(&second, 10000);
    if (st == -1) sup_kill_reap(&second);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    const char *said = sup_slurp(f->dir, "second.err");
    if (!strstr(said, "shmrpc-service: cannot serve the control service at shm://"))
        fail_msg("stderr: %s", said);
    said = sup_slurp(f->dir, "logs/shmrpc-service.log");
    if (!strstr(said, "cannot serve the control service at shm://")) fail_msg("log: %s", said);
    assert_null(strstr(said, "sleeper: pid"));
    /* The first: alive, its service the same process, status still served. */
    assert_int_equal(sup_wait_exit(&f->sup, 0), -1);
    entry now;
    assert_true(status_of(f, "sleeper", &now));
    assert_string_equal(now.state, "running");
    assert_int_equal(now.pid, first.pid);
    assert_int_equal(kill((pid_t)first.pid, 0), 0);
    stop_cleanly(f);
    all_groups_gone(f);
}

/* A log_dir that cannot be made (under a regular file): said with the folder and the
 * reason, exit 1, and no service started. */
static void log_dir_not_made(void **state)
{
    fixture *f = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/afile", f->dir);
    assert_int_equal(sup_write_file(path, "not a folder\n"), 0);
    start(f,
          "[defaults]\nlog_dir = afile/logs\nwait_until_completed = false\n\n"
          "[sleeper]\nexec = sh -c 'exec tail --pid=$PPID -f /dev/null'\n",
          true);
    int st = sup_wait_exit(&f->sup, 10000);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    const char *said = sup_slurp(f->dir, "supervisor.err");
    if (!strstr(said, "shmrpc-service: cannot create the log folders under ") ||
        !strstr(said, "afile/logs: "))
        fail_msg("%s", said);
    assert_null(strstr(said, "sleeper: pid"));
}

/* A log that is a folder: the supervisor's own (not --foreground), said on stderr with the
 * path and the reason; a service's, said with the service; exit 1 either way, and no
 * service started. */
static void logs_that_are_folders(void **state)
{
    fixture *f = *state;
    static const char ini[] = "[defaults]\nlog_dir = logs\nwait_until_completed = false\n\n"
                              "[sleeper]\nexec = sh -c 'exec tail --pid=$PPID -f /dev/null'\n";
    char path[128], want[256];
    snprintf(path, sizeof path, "%s/logs", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/logs/shmrpc-service.log", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    start(f, ini, false);
    int st = sup_wait_exit(&f->sup, 10000);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    snprintf(want, sizeof want, "shmrpc-service: cannot open %s/logs/shmrpc-service.log: %s\n",
             f->dir, shmrpc_strerror(SHMRPC_ESYS(EISDIR)));
    /* Its first line; in the ASan build a line may follow when the page's keeper, already
     * forked, took more than 4 s to stop (LeakSanitizer at its exit, under load). */
    const char *err = sup_slurp(f->dir, "supervisor.err");
    if (strncmp(err, want, strlen(want)) != 0) fail_msg("'%s', not '%s'", err, want);

    assert_int_equal(rmdir(path), 0);
    snprintf(path, sizeof path, "%s/logs/sleeper.log", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    start(f, ini, true);
    st = sup_wait_exit(&f->sup, 10000);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    const char *said = sup_slurp(f->dir, "supervisor.err");
    snprintf(want, sizeof want, "shmrpc-service: sleeper: cannot open its pipe or log: %s\n",
             shmrpc_strerror(SHMRPC_ESYS(EISDIR)));
    if (!strstr(said, want)) fail_msg("%s", said);
    assert_null(strstr(said, "sleeper: started"));
}

/* The registry file of a supervisor whose page listens on ::1: the page's address in
 * brackets, with its port; removed when the supervisor stops. */
static void registry_names_an_ipv6_page(void **state)
{
    fixture *f = *state;
    char run[96], ns[128], ini[512];
    snprintf(run, sizeof run, "%s/run", f->dir);
    assert_int_equal(mkdir(run, 0700), 0);
    snprintf(ns, sizeof ns, "%s/notify", f->dir);
    int port = 20000 + (int)(getpid() % 20000);
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\nwait_until_completed = false\n\n"
             "[web monitor]\nhost = ::1\nport = %d\n\n"
             "[sleeper]\nexec = sh -c 'exec tail --pid=$PPID -f /dev/null'\n",
             port);
    const char *env[] = {"NOTIFY_SOCKET", ns, "XDG_RUNTIME_DIR", run, NULL};
    f->sup = sup_start_in(f->dir, ini, true, 60, env);
    char name[64], want[96];
    snprintf(name, sizeof name, "run/shmrpc/%d.sup", (int)f->sup);
    snprintf(want, sizeof want, "\npage=http://[::1]:%d/\n", port);
    for (int64_t end = sup_now_ms() + 10000; !strstr(sup_slurp(f->dir, name), want); sup_nap_ms(20))
        if (sup_now_ms() > end) fail_msg("%s: '%s'", name, sup_slurp(f->dir, name));
    stop_cleanly(f);
    assert_string_equal(sup_slurp(f->dir, name), ""); /* removed */
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(never_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(much_output, setup, teardown),
        cmocka_unit_test_setup_teardown(full_log_drops_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_service_takes_its_group, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_escalates, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_stays_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(fifo_status_file, setup, teardown),
        cmocka_unit_test_setup_teardown(notify_ready_after_page, setup, teardown),
        cmocka_unit_test_setup_teardown(notify_ready_without_page, setup, teardown),
        cmocka_unit_test_setup_teardown(notify_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(sigterm_twice_kills, setup, teardown),
        cmocka_unit_test_setup_teardown(second_supervisor_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(log_dir_not_made, setup, teardown),
        cmocka_unit_test_setup_teardown(logs_that_are_folders, setup, teardown),
        cmocka_unit_test_setup_teardown(registry_names_an_ipv6_page, setup, teardown),
    };
    /* SUP_TEST_ONLY=GLOB runs only the matching tests (the mutant kit narrows by it). */
    if (getenv("SUP_TEST_ONLY")) cmocka_set_test_filter(getenv("SUP_TEST_ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
