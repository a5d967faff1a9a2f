/* SPDX-License-Identifier: MIT */
/* The built-in health method with real servers: serving over inproc://, shm:// and tcp://
 * (a server process forked from the test), draining once an inproc:// server is told to
 * stop while its client is still connected, unreachable once a server process stopped;
 * its reserved id beside a user's table; and shmrpcctl health's output and exit codes. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "calc_service.h"
#include "procs.h"
#include "unit.h"

static pid_t server_pid; /* the forked server, stopped by the teardown when a check failed */

static int stop_leftover(void **state)
{
    (void)state;
    if (server_pid > 0 && !test_stop_server(server_pid)) test_reap(server_pid, 0);
    server_pid = 0;
    return 0;
}

/* A client with an empty method table, as shmrpcctl health makes: any service takes it. */
static shmrpc_client *empty_client(const char *addr, int *rc)
{
    static shmrpc_service_info info;
    info = calc_service_info;
    info.n_methods = 0;
    return test_connect(&info, NULL, addr, rc);
}

static void health_inproc_serving_then_draining(void **state)
{
    (void)state;
    shmrpc_server *s;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &calc_service, &calc_default_handlers, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s, "inproc://health"), 0);
    int rc;
    shmrpc_client *c = empty_client("inproc://health", &rc);
    assert_int_equal(rc, 0);
    shmrpc_health h;
    assert_int_equal(shmrpc_client_health(c, &h), 0);
    assert_int_equal(h, SHMRPC_HEALTH_SERVING);
    assert_string_equal(shmrpc_health_name(h), "serving");

    /* Told to stop, the server still finishes what reaches it, and says it drains. */
    shmrpc_server_stop(s);
    assert_int_equal(shmrpc_client_health(c, &h), 0);
    assert_int_equal(h, SHMRPC_HEALTH_DRAINING);
    assert_string_equal(shmrpc_health_name(h), "draining");

    shmrpc_server_free(s);
    assert_int_not_equal(shmrpc_client_health(c, &h), 0);
    assert_int_equal(h, 0);
    shmrpc_client_free(c);
    assert_int_equal(shmrpc_client_health(NULL, &h), SHMRPC_EINVAL);
}

/* Runs SHMRPCCTL health ARGS (NULL-terminated, up to 6) with 10 s at most: its exit
 * status (-1 when killed), its stdout in out. */
static int ctl_health(char *out, size_t cap, const char *a1, const char *a2, const char *a3)
{
    const char *argv[] = {SHMRPCCTL, "health", a1, a2, a3, NULL};
    int po[2];
    assert_int_equal(pipe2(po, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(po[1], 1);
        alarm(10);
        execv(SHMRPCCTL, (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    size_t len = 0;
    for (ssize_t n; len + 1 < cap && (n = read(po[0], out + len, cap - 1 - len)) > 0;)
        len += (size_t)n;
    out[len] = '\0';
    close(po[0]);
    int st = test_reap(pid, 15000);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A server process over addr: serving to an empty-table client and to a calc client
 * (whose own calls still map and run), to shmrpcctl (exit 0); after SIGTERM unreachable
 * (exit 1). */
static void serving_then_gone(const char *addr)
{
    test_server ts = {
        .svc = &calc_service, .handlers = &calc_default_handlers, .addr = addr, .workers = 1};
    pid_t pid = server_pid = test_start_server(&ts);
    assert_true(pid > 0);
    int rc;
    shmrpc_client *c = empty_client(addr, &rc);
    if (rc) fail_msg("connect %s: %s", addr, shmrpc_errmsg());
    shmrpc_health h;
    assert_int_equal(shmrpc_client_health(c, &h), 0);
    assert_int_equal(h, SHMRPC_HEALTH_SERVING);
    /* The reserved id is no method of a table: a plain call to it is refused client-side. */
    assert_int_equal(shmrpc_client_call(c, SHMRPC_HEALTH_METHOD_ID, NULL), SHMRPC_ENOENT);

    shmrpc_client *calc = test_connect(&calc_service_info, NULL, addr, &rc);
    assert_int_equal(rc, 0);
    int64_t sum = 0;
    assert_int_equal(calc_add(calc, 40, 2, &sum), 0);
    assert_int_equal(sum, 42);
    assert_int_equal(shmrpc_client_health(calc, &h), 0);
    assert_int_equal(h, SHMRPC_HEALTH_SERVING);
    assert_int_equal(calc_add(calc, 1, 2, &sum), 0);
    assert_int_equal(sum, 3);
    shmrpc_client_free(calc);
    shmrpc_client_free(c);

    char out[256];
    assert_int_equal(ctl_health(out, sizeof out, "--timeout", "2000", addr), 0);
    assert_string_equal(out, "serving\n");

    server_pid = 0;
    assert_true(test_stop_server(pid));
    assert_int_equal(ctl_health(out, sizeof out, "--timeout", "500", addr), 1);
    assert_string_equal(out, "unreachable\n");
}

static void health_shm_process(void **state)
{
    (void)state;
    char addr[64];
    snprintf(addr, sizeof addr, "shm://health%d", (int)getpid());
    serving_then_gone(addr);
}

static void health_tcp_process(void **state)
{
    (void)state;
    int port = test_free_port();
    assert_true(port > 0);
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", port);
    serving_then_gone(addr);
}

static void health_ctl_usage(void **state)
{
    (void)state;
    char out[1024];
    assert_int_equal(ctl_health(out, sizeof out, NULL, NULL, NULL), 2);
    assert_int_equal(ctl_health(out, sizeof out, "--timeout", "0", "shm://x"), 2);
    assert_int_equal(ctl_health(out, sizeof out, "--help", NULL, NULL), 0);
    assert_non_null(strstr(out, "--timeout MS"));
    /* Nobody serves there: unreachable, exit 1, not a usage error. */
    assert_int_equal(ctl_health(out, sizeof out, "--timeout", "300", "shm://health-nobody"), 1);
    assert_string_equal(out, "unreachable\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(health_inproc_serving_then_draining),
        cmocka_unit_test_teardown(health_shm_process, stop_leftover),
        cmocka_unit_test_teardown(health_tcp_process, stop_leftover),
        cmocka_unit_test(health_ctl_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
