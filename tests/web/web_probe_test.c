/* SPDX-License-Identifier: MIT */
/* /healthz and /readyz through a real supervisor whose page needs a login: both answer
 * without a session; /readyz is 200 once echo-server runs and answers its built-in health
 * method, and 503 naming it (and nothing else) once it was stopped, while /healthz stays
 * 200; a service that runs but answers no health method is named too. Every wait is bounded; the
 * teardown removes what a failure left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "procs.h"
#include "sup_helpers.h"
#include "web_http.h"

static struct {
    char dir[64], ini[128], control[96], shm[64];
    int port;
    pid_t pid;
} T;

/* The services of the next setup besides echo: "" or a [section]. */
static const char *extra_services = "";

static int setup(void **state)
{
    (void)state;
    strcpy(T.dir, "/tmp/shmrpc-web-probe-XXXXXX");
    if (!mkdtemp(T.dir)) return -1;
    snprintf(T.ini, sizeof T.ini, "%s/service.ini", T.dir);
    snprintf(T.shm, sizeof T.shm, "probe%d", (int)getpid());
    T.port = test_free_port();
    char path[128], ini[1024], errp[160];
    snprintf(path, sizeof path, "%s/web.secret", T.dir);
    if (T.port <= 0 || sup_write_file(path, "0123456789abcdef0123456789abcdef\n") != 0 ||
        chmod(path, 0600) != 0)
        return -1;
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\n\n[web monitor]\nport = %d\nsecret_file = web.secret\n\n"
             "[echo]\nexec = %s --workers 1 shm://%s\nshm_name = %s\n\n%s",
             T.port, ECHO_SERVER, T.shm, T.shm, extra_services);
    if (sup_write_file(T.ini, ini) != 0) return -1;
    if (cfg_control_address(T.ini, T.control, sizeof T.control) != 0) return -1;
    snprintf(errp, sizeof errp, "%s/supervisor.err", T.dir);
    T.pid = sup_spawn(T.ini, errp, true, 60, NULL);
    return T.pid < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    if (T.pid > 0) kill(T.pid, SIGCONT); /* a test may have stopped it */
    if (T.pid > 0 && sup_stop(&T.pid, 10000) < 0) sup_kill_reap(&T.pid);
    sup_remove_segments(T.control + strlen("shm://"));
    sup_remove_segments(T.shm);
    sup_rm_tree(T.dir);
    memset(&T, 0, sizeof T);
    return 0;
}

/* GET path until its body is want, up to 15 s; the last answer in r. */
static void wait_body(const char *path, int status, const char *want, resp *r)
{
    for (int64_t end = sup_now_ms() + 15000;; sup_nap_ms(50)) {
        assert_int_equal(http_raw(T.port, NULL, "GET", path, NULL, NULL, r), 0);
        if (r->status == status && strcmp(r->body, want) == 0) return;
        if (sup_now_ms() > end)
            fail_msg("%s: %d %s (want %d %s)", path, r->status, r->body, status, want);
        resp_free(r);
    }
}

static void probes(void **state)
{
    (void)state;
    resp r;
    if (http_wait_ok(T.port, "/healthz", 10000, &T.pid, &r) != 0)
        fail_msg("no page: %s", sup_slurp(T.dir, "supervisor.err"));
    assert_string_equal(header(&r, "Content-Type"), "application/json; charset=utf-8");
    assert_string_equal(r.body, "{\"live\":true}\n");
    resp_free(&r);
    /* The rest of the page still needs the login. */
    assert_int_equal(http_raw(T.port, NULL, "GET", "/api/services", NULL, NULL, &r), 0);
    expect_status(&r, 401);
    resp_free(&r);

    wait_body("/readyz", 200, "{\"ready\":true,\"not_ready\":[]}", &r);
    resp_free(&r);

    /* Stopped, the service is not ready: 503, its name, and nothing more. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "timeout 20 %s --ini %s stop echo >/dev/null", SHMRPCCTL, T.ini);
    assert_int_equal(system(cmd), 0);
    wait_body("/readyz", 503, "{\"ready\":false,\"not_ready\":[\"echo\"]}", &r);
    resp_free(&r);
    assert_int_equal(http_raw(T.port, NULL, "HEAD", "/healthz", NULL, NULL, &r), 0);
    expect_status(&r, 200);
    resp_free(&r);

    snprintf(cmd, sizeof cmd, "timeout 20 %s --ini %s start echo >/dev/null", SHMRPCCTL, T.ini);
    assert_int_equal(system(cmd), 0);
    wait_body("/readyz", 200, "{\"ready\":true,\"not_ready\":[]}", &r);
    resp_free(&r);
}

/* A service that runs but does not answer its health method (a process that serves
 * nothing at the shm_name the supervisor knows) is not ready, while echo is; one without
 * an address (plain) is ready while it runs, and not once stopped. */
static int setup_mute(void **state)
{
    extra_services = "[mute]\nexec = sh -c 'exec tail --pid=$PPID -f /dev/null'\n"
                     "shm_name = mute_nobody_serves\nwait_until_completed = false\n\n"
                     "[plain]\nexec = sh -c 'exec tail --pid=$PPID -f /dev/null'\n"
                     "wait_until_completed = false\n";
    return setup(state);
}

static void mute_is_not_ready(void **state)
{
    (void)state;
    resp r;
    if (http_wait_ok(T.port, "/healthz", 10000, &T.pid, &r) != 0)
        fail_msg("no page: %s", sup_slurp(T.dir, "supervisor.err"));
    resp_free(&r);
    wait_body("/readyz", 503, "{\"ready\":false,\"not_ready\":[\"mute\"]}", &r);
    resp_free(&r);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "timeout 20 %s --ini %s stop plain >/dev/null", SHMRPCCTL, T.ini);
    assert_int_equal(system(cmd), 0);
    wait_body("/readyz", 503, "{\"ready\":false,\"not_ready\":[\"mute\",\"plain\"]}", &r);
    resp_free(&r);
}

/* echo alone. */
static int setup_echo(void **state)
{
    extra_services = "";
    return setup(state);
}

/* One request of the supervisor_silent test, made on a thread of its own. */
typedef struct silent_req {
    const char *path;
    char extra[256];
    resp r;
    int rc;
} silent_req;

static void *silent_one(void *arg)
{
    silent_req *q = arg;
    q->rc = http_raw(T.port, NULL, "GET", q->path, q->extra, NULL, &q->r);
    return NULL;
}

/* Whether every thread of process pid is stopped (state T in /proc/PID/task/TID/stat),
 * looked at every millisecond for at most 5 s. */
static bool all_stopped(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    for (int tries = 0; tries < 5000; tries++, usleep(1000)) {
        DIR *d = opendir(dir);
        bool all = d != NULL;
        for (struct dirent *e; all && (e = readdir(d)) != NULL;) {
            if (e->d_name[0] == '.') continue;
            char path[384], line[512];
            snprintf(path, sizeof path, "%s/%s/stat", dir, e->d_name);
            FILE *f = fopen(path, "r");
            const char *paren = f && fgets(line, sizeof line, f) ? strrchr(line, ')') : NULL;
            all = paren != NULL && paren[1] == ' ' && (paren[2] == 'T' || paren[2] == 't');
            if (f) fclose(f);
        }
        if (d) closedir(d);
        if (all) return true;
    }
    return false;
}

/* A supervisor that does not answer its control service (SIGSTOPped: the page and its
 * keeper are processes of their own and go on): within the page's 3 s bound on a control
 * call, /healthz and /readyz say not live and not ready, and the pages of the services'
 * figures say why, each with the page's JSON error; the page answers again once the
 * supervisor goes on. The requests are made at once, each on a thread. */
static void supervisor_silent(void **state)
{
    (void)state;
    resp r;
    if (http_wait_ok(T.port, "/healthz", 10000, &T.pid, &r) != 0)
        fail_msg("no page: %s", sup_slurp(T.dir, "supervisor.err"));
    resp_free(&r);
    wait_body("/readyz", 200, "{\"ready\":true,\"not_ready\":[]}", &r);
    resp_free(&r);
    assert_int_equal(http_raw(T.port, NULL, "POST", "/login",
                              "Content-Type: application/x-www-form-urlencoded\r\n",
                              "secret=0123456789abcdef0123456789abcdef", &r),
                     0);
    expect_status(&r, 303);
    char cookie[256];
    snprintf(cookie, sizeof cookie, "Cookie: %.*s\r\n", (int)strcspn(header(&r, "Set-Cookie"), ";"),
             header(&r, "Set-Cookie"));
    resp_free(&r);
    static const char *const paths[] = {"/healthz", "/readyz", "/api/services", "/metrics",
                                        "/api/services/echo"};
    enum { N = sizeof paths / sizeof paths[0] };
    silent_req q[N];
    pthread_t th[N];
    assert_int_equal(kill(T.pid, SIGSTOP), 0);
    /* Stopped once every thread of it is: a request sent before then may be taken by a
     * worker not stopped yet, and its call time out "while the call ran" (1 run in 6 under
     * stress-ng --cpu 2). */
    if (!all_stopped(T.pid))
        fail_msg("the supervisor (pid %d) did not stop within 5 s", (int)T.pid);
    for (int i = 0; i < N; i++) {
        memset(&q[i], 0, sizeof q[i]);
        q[i].path = paths[i];
        snprintf(q[i].extra, sizeof q[i].extra, "%s", cookie);
        assert_int_equal(pthread_create(&th[i], NULL, silent_one, &q[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(kill(T.pid, SIGCONT), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(q[i].rc, 0);
    expect_status(&q[0].r, 503);
    assert_string_equal(q[0].r.body, "{\"live\":false}\n");
    expect_status(&q[1].r, 503);
    assert_string_equal(q[1].r.body, "{\"ready\":false,\"not_ready\":[\"echo\"]}");
    /* A call on a pooled connection times out; one that needs a new connection finds
     * nobody at the rendezvous: which one each request has depends on the pool. */
    char unavailable[256];
    snprintf(unavailable, sizeof unavailable,
             "%s: unavailable: the server did not answer at its rendezvous in time", T.control);
    for (int i = 2; i < N; i++) {
        printf("%s: %d %s\n", paths[i], q[i].r.status, q[i].r.body);
        bool timed_out = q[i].r.status == 504;
        expect_error(&q[i].r, timed_out ? 504 : 503,
                     timed_out ? "SHMRPC_ETIMEDOUT" : "SHMRPC_EUNAVAIL");
        json_t *v = body_json(&q[i].r);
        const char *msg =
            json_string_value(json_object_get(json_object_get(v, "error"), "message"));
        assert_string_equal(msg, timed_out ? "status: timed out: the deadline passed before a "
                                             "worker took the call; it did not run"
                                           : unavailable);
        json_decref(v);
    }
    for (int i = 0; i < N; i++)
        resp_free(&q[i].r);
    wait_body("/readyz", 200, "{\"ready\":true,\"not_ready\":[]}", &r);
    resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(probes, setup, teardown),
        cmocka_unit_test_setup_teardown(mute_is_not_ready, setup_mute, teardown),
        cmocka_unit_test_setup_teardown(supervisor_silent, setup_echo, teardown),
    };
    return cmocka_run_group_tests_name("web_probe", tests, NULL, NULL);
}
