/* SPDX-License-Identifier: MIT */
/* The management page in a process of its own (web_proc.c, docs/web.md): a page that
 * crashes (SIGSEGV, as a stack overflow in a request would) takes neither the supervisor
 * nor its services with it and is started again; a SIGTERM to the supervisor stops the
 * page with it: at once when the page or its keeper is SIGSTOPped (each is sent SIGCONT),
 * within seconds when either is hung (held in a ptrace stop); a SIGKILLed supervisor
 * leaves neither the page nor its keeper behind.
 * Real processes, real HTTP on loopback; every wait is bounded, the teardown removes what
 * a failure left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include "config.h"
#include "procs.h"
#include "sup_helpers.h"
#include "web_http.h"

/* The sleeper ends with the supervisor (--pid), should the teardown not run. */
#define SLEEPER "exec = sh -c 'exec tail --pid=$PPID -f /dev/null'\n"

static struct {
    char dir[64], ini[96], control[96];
    int port;
    pid_t sup;
    sup_groups groups; /* the sleeper's */
    pid_t stopped[2];  /* processes a test SIGSTOPped: SIGCONT and SIGKILL in teardown */
    pid_t traced;      /* the process a test holds in a ptrace stop: SIGKILL in teardown */
} T;

/* The only child of pid named comm, or 0. */
static pid_t child_named(pid_t pid, const char *comm)
{
    pid_t kids[16];
    int n = sup_children(pid, kids, 16);
    for (int i = 0; i < n && i < 16; i++)
        if (strcmp(sup_comm(kids[i]), comm) == 0) return kids[i];
    return 0;
}

/* Waits up to ms for the page's process under the keeper, other than not (0: any). */
static pid_t wait_page(pid_t keeper, pid_t not, int ms)
{
    for (int64_t end = sup_now_ms() + ms; sup_now_ms() < end; sup_nap_ms(10)) {
        pid_t p = child_named(keeper, "shmrpc-page");
        if (p && p != not ) return p;
    }
    return 0;
}

/* Whether pid is gone (or a zombie nobody reaped yet), waiting up to ms. */
static bool gone(pid_t pid, int ms)
{
    for (int64_t end = sup_now_ms() + ms;; sup_nap_ms(10)) {
        char path[64], st[256] = "";
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f) return true;
        size_t n = fread(st, 1, sizeof st - 1, f);
        fclose(f);
        st[n] = '\0';
        const char *paren = strrchr(st, ')');
        if (paren && paren[1] == ' ' && paren[2] == 'Z') return true;
        if (sup_now_ms() >= end) return false;
    }
}

/* The sleeper's pid and restarts, from GET /api/services. */
static void sleeper(pid_t *pid, int *restarts)
{
    resp r;
    assert_int_equal(http_raw(T.port, NULL, "GET", "/api/services", NULL, NULL, &r), 0);
    expect_status(&r, 200);
    json_t *v = body_json(&r);
    json_t *s = json_array_get(json_object_get(v, "services"), 0);
    assert_non_null(s);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "supervisor"), "pid")),
                     T.sup);
    *pid = (pid_t)json_integer_value(json_object_get(s, "pid"));
    *restarts = (int)json_integer_value(json_object_get(s, "restarts"));
    json_decref(v);
    resp_free(&r);
}

/* Starts shmrpc-service in a process group of its own (as a shell's job is), with one
 * service, the sleeper unless told, and waits up to 10 s for its page. */
static int start_with(const char *service)
{
    memset(&T, 0, sizeof T);
    T.groups.cap = 4;
    strcpy(T.dir, "/tmp/shmrpc-web-proc-XXXXXX");
    if (!mkdtemp(T.dir)) return -1;
    snprintf(T.ini, sizeof T.ini, "%s/service.ini", T.dir);
    T.port = test_free_port();
    char ini[512], err[128];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\n\n[web monitor]\nport = %d\n\n[sleeper]\n%s"
             "wait_until_completed = false\n",
             T.port, service ? service : SLEEPER);
    if (T.port <= 0 || sup_write_file(T.ini, ini) != 0 ||
        cfg_control_address(T.ini, T.control, sizeof T.control) != 0)
        return -1;
    snprintf(err, sizeof err, "%s/supervisor.err", T.dir);
    T.sup = fork();
    if (T.sup == 0) {
        setpgid(0, 0);
        int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) dup2(fd, 2);
        alarm(60); /* should the teardown not run */
        execl(SHMRPC_SERVICE, "shmrpc-service", "--foreground", T.ini, (char *)NULL);
        _exit(127);
    }
    resp r;
    if (T.sup < 0 || http_wait_ok(T.port, "/api/token", 10000, &T.sup, &r) != 0) return -1;
    resp_free(&r);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return start_with(NULL);
}

/* Waits up to ms for the supervisor's log to hold text. */
static bool log_has(const char *text, int ms)
{
    for (int64_t end = sup_now_ms() + ms; !strstr(sup_slurp(T.dir, "supervisor.err"), text);
         sup_nap_ms(20))
        if (sup_now_ms() >= end) return false;
    return true;
}

/* SIGSTOPs pid, a page or its keeper, remembered for the teardown. */
static void stop_proc(pid_t pid)
{
    for (int i = 0; i < 2; i++)
        if (!T.stopped[i]) {
            T.stopped[i] = pid;
            break;
        }
    assert_int_equal(kill(pid, SIGSTOP), 0);
}

/* Holds pid (a page or its keeper) in a ptrace stop, which SIGCONT does not end: it is
 * hung as a page in a deadlock would be. The test is its tracer, and so must reap its end
 * before its parent can (wait_sup). */
static void hang(pid_t pid)
{
    assert_int_equal(ptrace(PTRACE_SEIZE, pid, 0, 0), 0);
    T.traced = pid;
    assert_int_equal(ptrace(PTRACE_INTERRUPT, pid, 0, 0), 0);
    int st = 0;
    pid_t r = 0;
    for (int64_t end = sup_now_ms() + 5000; r == 0 && sup_now_ms() < end; sup_nap_ms(5))
        r = waitpid(pid, &st, WNOHANG | __WALL);
    assert_int_equal(r, pid);
    assert_true(WIFSTOPPED(st));
}

/* Reaps the end of the traced process, if it has come: its parent waits on the tracer. */
static void reap_traced(void)
{
    int st;
    pid_t r = T.traced ? waitpid(T.traced, &st, WNOHANG | __WALL) : 0;
    if ((r == T.traced && (WIFEXITED(st) || WIFSIGNALED(st))) || (r < 0 && errno == ECHILD))
        T.traced = 0;
}

/* Waits up to ms for the supervisor to exit, reaping a traced process's end meanwhile:
 * its wait status, or -1. */
static int wait_sup(int ms)
{
    for (int64_t end = sup_now_ms() + ms; sup_now_ms() < end; sup_nap_ms(5)) {
        reap_traced();
        int st;
        if (waitpid(T.sup, &st, WNOHANG) == T.sup) {
            T.sup = 0;
            reap_traced();
            return st;
        }
    }
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    if (T.traced) { /* our tracee until reaped: its pid cannot be another's */
        kill(T.traced, SIGKILL);
        for (int64_t end = sup_now_ms() + 2000; T.traced && sup_now_ms() < end; sup_nap_ms(5))
            reap_traced();
    }
    /* What a test SIGSTOPped goes, unless its pid is another process's by now. */
    for (int i = 0; i < 2; i++) {
        const char *comm = T.stopped[i] ? sup_comm(T.stopped[i]) : "";
        if (strcmp(comm, "shmrpc-page") == 0 || strcmp(comm, "shmrpc-pagekeep") == 0) {
            kill(T.stopped[i], SIGCONT);
            kill(T.stopped[i], SIGKILL);
        }
        T.stopped[i] = 0;
    }
    sup_end(&T.sup);
    sup_groups_kill(&T.groups);
    if (T.control[0]) sup_remove_segments(T.control + strlen("shm://"));
    if (T.dir[0]) sup_rm_tree(T.dir);
    return 0;
}

/* The page's process dies of SIGSEGV: the supervisor and the sleeper go on, the log says
 * so, and a new page answers. */
static void test_page_crash(void **state)
{
    (void)state;
    pid_t keeper = child_named(T.sup, "shmrpc-pagekeep");
    assert_true(keeper > 0);
    pid_t page = wait_page(keeper, 0, 5000);
    assert_true(page > 0);
    pid_t pid0, pid1;
    int restarts;
    sleeper(&pid0, &restarts);
    assert_true(pid0 > 0);
    sup_groups_add(&T.groups, pid0);
    assert_int_equal(restarts, 0);

    for (int round = 0; round < 2; round++) {
        assert_int_equal(kill(page, SIGSEGV), 0);
        pid_t again = wait_page(keeper, page, 10000);
        assert_true(again > 0);
        page = again;
        resp r;
        assert_int_equal(http_wait_ok(T.port, "/api/token", 10000, &T.sup, &r), 0);
        resp_free(&r);
    }
    assert_int_equal(sup_wait_exit(&T.sup, 0), -1); /* still running */
    sleeper(&pid1, &restarts);
    assert_int_equal(pid1, pid0);
    assert_int_equal(restarts, 0);
    assert_int_equal(child_named(T.sup, "shmrpc-pagekeep"), keeper);
    /* Killed by SIGSEGV; or, under AddressSanitizer, whose handler reports the signal and
     * aborts, by SIGABRT. Each death in a row doubles the wait. */
    const char *log = sup_slurp(T.dir, "supervisor.err");
    const char *first = strstr(log, "web monitor: the page's process was killed by ");
    assert_non_null(first);
    const char *second = strstr(first + 1, "web monitor: the page's process was killed by ");
    assert_non_null(second);
    assert_non_null(strstr(first, "; starting it again in 100 ms\n"));
    assert_non_null(strstr(second, "; starting it again in 200 ms\n"));
}

/* Ticks of CPU (user and system) pid has used. */
static long cpu_ticks(pid_t pid)
{
    char path[64], st[1024] = "";
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    size_t n = fread(st, 1, sizeof st - 1, f);
    fclose(f);
    st[n] = '\0';
    const char *p = strrchr(st, ')');
    long utime = 0, stime = 0;
    /* After the name: state, then fields 4 to 13, then utime (14) and stime (15). */
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime) != 2)
        return -1;
    return utime + stime;
}

/* The keeper is SIGKILLed: the page dies with it, the supervisor says so and goes on,
 * idle (the log pipe's hang-up is not polled again and again). */
static void test_keeper_killed(void **state)
{
    (void)state;
    pid_t keeper = child_named(T.sup, "shmrpc-pagekeep");
    pid_t page = wait_page(keeper, 0, 5000);
    assert_true(keeper > 0 && page > 0);
    assert_int_equal(kill(keeper, SIGKILL), 0);
    assert_true(gone(page, 2000));
    char want[96];
    snprintf(want, sizeof want, "web monitor: its keeper (pid %d) was killed by Killed",
             (int)keeper);
    assert_true(log_has(want, 5000));
    long before = cpu_ticks(T.sup);
    sup_nap_ms(1000);
    long used = cpu_ticks(T.sup) - before;
    assert_true(before >= 0);
    /* A second of spinning is 100 ticks; an idle loop a few at most, even under load. */
    assert_true(used < 30);
    assert_int_equal(sup_wait_exit(&T.sup, 0), -1); /* still running */
}

/* A page that stops answering (SIGSTOP, as a deadlock would) is found by the keeper's
 * probes, SIGKILLed and started again. */
static void test_page_hung(void **state)
{
    (void)state;
    pid_t keeper = child_named(T.sup, "shmrpc-pagekeep");
    pid_t page = wait_page(keeper, 0, 5000);
    assert_true(keeper > 0 && page > 0);
    assert_int_equal(kill(page, SIGSTOP), 0);
    pid_t again = wait_page(keeper, page, 30000); /* 2 probes of 6 s, 2 s apart */
    assert_true(again > 0);
    char want[128];
    snprintf(want, sizeof want,
             "web monitor: the page's process (pid %d) did not answer 2 probes of 6 s: SIGKILL",
             (int)page);
    assert_true(log_has(want, 1000));
    resp r;
    assert_int_equal(http_wait_ok(T.port, "/api/token", 10000, &T.sup, &r), 0);
    resp_free(&r);
}

/* Another process binds the port while a crashed page is started again: the page is
 * tried again, with backoff, until the port is free, rather than given up for good. */
static void test_port_taken_on_restart(void **state)
{
    (void)state;
    pid_t keeper = child_named(T.sup, "shmrpc-pagekeep");
    pid_t page = wait_page(keeper, 0, 5000);
    assert_true(keeper > 0 && page > 0);
    int squat = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(squat >= 0);
    int one = 1;
    setsockopt(squat, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)T.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* The port is taken within the restart's backoff (100 ms, doubled by each death), once
     * the killed page's socket is closed: a page of civetweb's threads SIGKILLed on a busy
     * machine takes tens of ms to die, so each round tries for its own backoff (less a
     * margin), not the first one's; a test that a busy machine kept from running that long
     * tries again with the next page. */
    bool bound = false;
    for (int round = 0; !bound && round < 4; round++) {
        if (round) page = wait_page(keeper, page, 20000);
        assert_true(page > 0);
        assert_int_equal(kill(page, SIGKILL), 0);
        int64_t t0 = sup_now_ms(), window = (100 << round) - 10;
        while (!bound && sup_now_ms() < t0 + window)
            bound = bind(squat, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(squat, 1) == 0;
        printf("round %d: the port %s %lld ms after the SIGKILL\n", round,
               bound ? "was taken" : "was not free", (long long)(sup_now_ms() - t0));
    }
    assert_true(bound);
    assert_true(log_has("web monitor: the page's process exited with status 3; starting it "
                        "again in ",
                        5000));
    close(squat);
    resp r;
    assert_int_equal(http_wait_ok(T.port, "/api/token", 15000, &T.sup, &r), 0);
    resp_free(&r);
}

/* SIGTERM to the supervisor's whole process group (^C, kill -- -PGID, timeout(1)): the
 * page is not in it, and serves while a service takes its time to stop. */
static void test_group_sigterm(void **state)
{
    assert_int_equal(teardown(state), 0);
    assert_int_equal(
        start_with("exec = sh -c 'trap \"\" TERM; exec tail --pid=$PPID -f /dev/null'\n"
                   "stop_timeout_s = 3\n"),
        0);
    assert_int_equal(kill(-T.sup, SIGTERM), 0);
    assert_true(log_has("stopping the services, last first", 5000));
    sup_nap_ms(1000);
    resp r;
    assert_int_equal(http_raw(T.port, NULL, "GET", "/api/token", NULL, NULL, &r), 0);
    expect_status(&r, 200);
    resp_free(&r);
    int st = sup_wait_exit(&T.sup, 10000);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* A second SIGTERM while the page is being stopped (here it cannot: its keeper is held in
 * a ptrace stop, which SIGCONT does not end, and the supervisor would wait 4 s for it) ends
 * the wait at once. */
static void test_sigterm_twice(void **state)
{
    (void)state;
    pid_t keeper = child_named(T.sup, "shmrpc-pagekeep");
    pid_t page = wait_page(keeper, 0, 5000);
    assert_true(keeper > 0 && page > 0);
    hang(keeper);
    assert_int_equal(kill(T.sup, SIGTERM), 0);
    assert_true(log_has("sleeper: stopped", 10000));
    sup_nap_ms(200);
    int64_t t0 = sup_now_ms();
    assert_int_equal(kill(T.sup, SIGTERM), 0);
    int st = wait_sup(10000);
    assert_true(st != -1);
    printf("a second SIGTERM ended the page's stop in %lld ms\n", (long long)(sup_now_ms() - t0));
    assert_true(log_has("web monitor: stopping again: SIGKILL to its keeper", 1000));
    assert_true(gone(keeper, 2000));
    assert_true(gone(page, 2000));
}

/* SIGTERM to the supervisor with the page SIGSTOPped, or the page and its keeper: each is
 * sent SIGCONT with its stop, and stops as it would have; the supervisor exits 0, with
 * neither left, and nothing was SIGKILLed. The old supervisor took 30 s here (35 s with
 * the keeper stopped too); it takes tens of ms; the bound is 15 s, for a loaded machine. */
static void stop_stopped(bool keeper_too)
{
    pid_t keeper = child_named(T.sup, "shmrpc-pagekeep");
    pid_t page = wait_page(keeper, 0, 5000);
    assert_true(keeper > 0 && page > 0);
    stop_proc(page);
    if (keeper_too) stop_proc(keeper);
    int64_t t0 = sup_now_ms();
    assert_int_equal(kill(T.sup, SIGTERM), 0);
    int st = wait_sup(15000);
    printf("the supervisor stopped in %lld ms with its page%s SIGSTOPped\n",
           (long long)(sup_now_ms() - t0), keeper_too ? " and its keeper" : "");
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_true(gone(keeper, 0)); /* reaped by the supervisor before it exited */
    assert_true(gone(page, 2000));
    const char *log = sup_slurp(T.dir, "supervisor.err");
    assert_null(strstr(log, "did not stop"));
    assert_null(strstr(log, "SIGKILL"));
}

static void test_stop_page_stopped(void **state)
{
    (void)state;
    stop_stopped(false);
}

static void test_stop_keeper_stopped(void **state)
{
    (void)state;
    stop_stopped(true);
}

/* SIGTERM with the page hung (held in a ptrace stop, which SIGCONT does not end): its
 * keeper gives it 2 s, then SIGKILLs it, and the supervisor exits 0; or with the keeper
 * hung: the supervisor gives it 4 s, then SIGKILLs it (the page dies with it). The old
 * keeper gave the page 30 s, the old supervisor the keeper 35 s; the bound is 15 s. */
static void stop_hung(bool keeper_hung)
{
    pid_t keeper = child_named(T.sup, "shmrpc-pagekeep");
    pid_t page = wait_page(keeper, 0, 5000);
    assert_true(keeper > 0 && page > 0);
    hang(keeper_hung ? keeper : page);
    int64_t t0 = sup_now_ms();
    assert_int_equal(kill(T.sup, SIGTERM), 0);
    int st = wait_sup(15000);
    printf("the supervisor stopped in %lld ms with its %s hung\n", (long long)(sup_now_ms() - t0),
           keeper_hung ? "page's keeper" : "page");
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_true(log_has(keeper_hung ? "web monitor: its keeper did not stop in 4000 ms: SIGKILL"
                                    : "web monitor: the page did not stop in 2000 ms: SIGKILL",
                        1000));
    assert_true(gone(keeper, 0));
    assert_true(gone(page, 2000));
}

static void test_stop_page_hung(void **state)
{
    (void)state;
    stop_hung(false);
}

static void test_stop_keeper_hung(void **state)
{
    (void)state;
    stop_hung(true);
}

/* A module= service without shm_name serves at its .svc's name, which the supervisor
 * learns by loading the module after the keeper was forked: the page shows it, told by
 * the supervisor. */
static void test_module_address(void **state)
{
    assert_int_equal(teardown(state), 0);
    assert_int_equal(start_with("module = " BIGDATA_MODULE "\ntcp_bind = none\n"), 0);
    resp r;
    assert_int_equal(http_raw(T.port, NULL, "GET", "/api/services/sleeper", NULL, NULL, &r), 0);
    expect_status(&r, 200);
    json_t *v = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(v, "address")), "shm://sup_bigdata");
    json_int_t pid = json_integer_value(json_object_get(v, "pid"));
    if (pid > 0) sup_groups_add(&T.groups, (pid_t)pid);
    json_decref(v);
    resp_free(&r);
    assert_int_equal(sup_stop(&T.sup, 10000), 0);
}

/* A module= service at a tcp_port too: two managers (its leader for shm, and its TCP
 * manager, a child of the leader), each with min_proc_num workers; the page counts 2
 * managers and 4 workers, and names as workers the processes of its group but those two. */
static void test_module_managers(void **state)
{
    assert_int_equal(teardown(state), 0);
    int tcp = test_free_port();
    assert_true(tcp > 0);
    char service[256];
    snprintf(service, sizeof service,
             "module = %s\ntcp_port = %d\nmin_proc_num = 2\nmax_proc_num = 2\n", BIGDATA_MODULE,
             tcp);
    assert_int_equal(start_with(service), 0);
    json_t *v = NULL;
    for (int64_t end = sup_now_ms() + 10000;; sup_nap_ms(50)) {
        resp r;
        assert_int_equal(
            http_raw(T.port, NULL, "GET", "/api/services/sleeper?lines=0", NULL, NULL, &r), 0);
        expect_status(&r, 200);
        json_decref(v);
        v = body_json(&r);
        resp_free(&r);
        json_int_t pid = json_integer_value(json_object_get(v, "pid"));
        if (pid > 0) sup_groups_add(&T.groups, (pid_t)pid);
        if (json_integer_value(json_object_get(v, "workers")) == 4) break;
        if (sup_now_ms() > end) fail_msg("no 4 workers: %s", json_dumps(v, 0));
    }
    pid_t leader = (pid_t)json_integer_value(json_object_get(v, "pid"));
    assert_int_equal(json_integer_value(json_object_get(v, "managers")), 2);
    json_t *pids = json_object_get(v, "worker_pids");
    assert_int_equal(json_array_size(pids), 4);
    /* The leader's children: its 2 workers and the TCP manager, whose children are the
     * other 2. */
    pid_t kids[8], manager = 0;
    int n = sup_children(leader, kids, 8);
    assert_int_equal(n, 3);
    int listed = 0;
    for (int i = 0; i < n; i++) {
        bool worker = false;
        for (size_t k = 0; k < 4; k++)
            worker |= json_integer_value(json_array_get(pids, k)) == kids[i];
        listed += worker;
        if (!worker) manager = kids[i];
    }
    assert_int_equal(listed, 2);
    assert_true(manager > 0);
    pid_t grand[8];
    assert_int_equal(sup_children(manager, grand, 8), 2);
    for (int i = 0; i < 2; i++) {
        bool worker = false;
        for (size_t k = 0; k < 4; k++)
            worker |= json_integer_value(json_array_get(pids, k)) == grand[i];
        assert_true(worker);
    }
    json_decref(v);
    assert_int_equal(sup_stop(&T.sup, 10000), 0);
}

/* SIGTERM: the page and its keeper stop with the supervisor, which exits 0. */
static void test_sigterm(void **state)
{
    (void)state;
    pid_t keeper = child_named(T.sup, "shmrpc-pagekeep");
    pid_t page = wait_page(keeper, 0, 5000);
    assert_true(keeper > 0 && page > 0);
    assert_int_equal(kill(T.sup, SIGTERM), 0);
    int st = sup_wait_exit(&T.sup, 10000);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_true(gone(keeper, 0)); /* reaped by the supervisor before it exited */
    assert_true(gone(page, 2000));
}

/* SIGKILL: nothing is left to finish requests for; neither stays behind. */
static void test_sigkill(void **state)
{
    (void)state;
    pid_t keeper = child_named(T.sup, "shmrpc-pagekeep");
    pid_t page = wait_page(keeper, 0, 5000);
    assert_true(keeper > 0 && page > 0);
    sup_kill_reap(&T.sup);
    assert_true(gone(keeper, 2000));
    assert_true(gone(page, 2000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_page_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keeper_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_hung, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_taken_on_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_page_stopped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_keeper_stopped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_page_hung, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_keeper_hung, setup, teardown),
        cmocka_unit_test_setup_teardown(test_module_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_module_managers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill, setup, teardown),
    };
    return cmocka_run_group_tests_name("web_proc", tests, NULL, NULL);
}
