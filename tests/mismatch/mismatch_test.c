/* SPDX-License-Identifier: MIT */
/* Method-table mismatches over shm://, tcp:// and inproc://, with real .svc files: a
 * server of calc_v2.svc; clients of an older build of Calc (calc_v1.svc: connects and
 * calls), of a changed one (calc_changed.svc), and of other services (kv.svc, adder.svc).
 * Each connect must give its status and exactly its message, while a client of the
 * server's own build is served throughout. Other builds of Calc cannot link with this
 * one, so they run as programs of their own (calc_client.c), and not over inproc://.
 * Every wait is bounded, every child is reaped, and no segment is left in /dev/shm. */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "adder.h"
#include "calc_v2.h"
#include "kv.h"
#include "procs.h"

static char addr[64];
static int addr_n;
static pid_t server;             /* the forked server (shm://, tcp://), or 0 */
static shmrpc_server *in_server; /* the inproc:// server, or NULL */
static shmrpc_client *good;      /* a client of calc_v2.svc, like the server */
static shmrpc_client *other;     /* the client of the case at hand */

/* --- the server: calc_v2.svc --- */

static int64_t last_result; /* in the server's process: its one worker, or this one */

static int h_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    (void)ctx;
    *out = last_result = a + b;
    return 0;
}

static int h_mul(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    (void)ctx;
    *out = last_result = a * b;
    return 0;
}

static int h_reset(shmrpc_ctx *ctx)
{
    (void)ctx;
    last_result = 0;
    return 0;
}

static int h_last(shmrpc_ctx *ctx, int64_t *out)
{
    (void)ctx;
    *out = last_result;
    return 0;
}

static const Calc_handlers handlers = {
    .add = h_add, .mul = h_mul, .reset = h_reset, .last = h_last};

static void start_server(void)
{
    if (strncmp(addr, "inproc://", 9) == 0) {
        assert_int_equal(shmrpc_server_new(&in_server, NULL), 0);
        assert_int_equal(shmrpc_server_register(in_server, &Calc_service, &handlers, NULL), 0);
        assert_int_equal(shmrpc_server_listen(in_server, addr), 0);
        return;
    }
    test_server ts = {&Calc_service, &handlers, addr, 1, 0, NULL, NULL, NULL};
    server = test_start_server(&ts);
    assert_true(server > 0);
}

static void stop_server(void)
{
    if (in_server) shmrpc_server_free(in_server);
    in_server = NULL;
    pid_t pid = server;
    server = 0;
    if (pid > 0) assert_true(test_stop_server(pid));
}

/* The good client, connected once the server is up (bounded). */
static void connect_good(void)
{
    assert_int_equal(shmrpc_client_new(&good, &Calc_service_info, NULL), 0);
    int rc = shmrpc_client_connect(good, addr);
    for (int i = 0; rc == SHMRPC_EUNAVAIL && i < 500; i++) {
        usleep(10000);
        rc = shmrpc_client_connect(good, addr);
    }
    if (rc != 0) fail_msg("connect %s: %s: %s", addr, shmrpc_strerror(rc), shmrpc_errmsg());
}

/* The good client is served, last() (new in v2) included. */
static void check_good(void)
{
    int64_t r = 0;
    int rc = calc_add(good, 40, 2, &r);
    if (rc) fail_msg("add: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(r, 42);
    rc = calc_last(good, &r);
    if (rc) fail_msg("last: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(r, 42);
}

/* --- the cases --- */

/* The calls of an Adder client, whose one method is Calc's add(). */
static void adder_calls(shmrpc_client *c)
{
    int64_t r = 0;
    int rc = adder_add(c, 40, 2, &r);
    if (rc) fail_msg("Adder.add: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(r, 42);
}

/* A client and what connecting it to the server must give. */
typedef struct mismatch_case {
    const char *name;
    const char *program;             /* a build of Calc (calc_client.c) to run, or NULL */
    const shmrpc_service_info *info; /* else a client of this, in this process */
    void (*calls)(shmrpc_client *c); /* its calls once connected, or NULL */
    int status;                      /* of shmrpc_client_connect() */
    const char *msg;                 /* all of shmrpc_errmsg() after it */
} mismatch_case;

static const mismatch_case cases[] = {
    {"an older build (calc_v1.svc)", CALC_V1_PROGRAM, NULL, NULL, 0, ""},
    {"a changed build (calc_changed.svc)", CALC_CHANGED_PROGRAM, NULL, NULL, SHMRPC_EMISMATCH,
     "method table differs from the server's: 'add' has another signature, incompatible: "
     "parameter 'a' is f64 on the client and i64 on the server (client: add(f64 "
     "a,f64 b)->f64 @msgpack, server: add(i64 a,i64 b)->i64 @msgpack); 'div' is missing on "
     "the server"},
    {"another service (kv.svc)", NULL, &Kv_service_info, NULL, SHMRPC_EMISMATCH,
     "method table differs from the server's: 'get' is missing on the server; 'put' is "
     "missing on the server (the server serves 'Calc', not 'Kv')"},
    {"another service with Calc's add (adder.svc)", NULL, &Adder_service_info, adder_calls, 0, ""},
};

static void run_here(const mismatch_case *mc)
{
    assert_int_equal(shmrpc_client_new(&other, mc->info, NULL), 0);
    int rc = shmrpc_client_connect(other, addr);
    if (rc != mc->status)
        fail_msg("%s: connect %s: %s: %s", mc->name, addr, shmrpc_strerror(rc), shmrpc_errmsg());
    assert_string_equal(shmrpc_errmsg(), mc->msg);
    if (rc == 0 && mc->calls) mc->calls(other);
    shmrpc_client_free(other);
    other = NULL;
}

/* Reads fd to its end into buf (NUL-terminated) for up to ms; false on a timeout. */
static bool read_all(int fd, char *buf, size_t size, int ms)
{
    size_t n = 0;
    int64_t deadline = test_now_ms() + ms;
    buf[0] = '\0';
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - test_now_ms();
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0) return false;
        ssize_t k = read(fd, buf + n, size - 1 - n);
        if (k <= 0) return k == 0;
        n += (size_t)k;
        buf[n] = '\0';
    }
}

/* Runs mc->program against addr (up to 10 s to finish, else SIGKILL) and checks what it
 * printed (see calc_client.c): the status, the message, and "calls ok" once connected. */
static void run_program(const mismatch_case *mc)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl(mc->program, mc->program, addr, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char out[2048];
    bool ended = read_all(fds[0], out, sizeof out, 10000);
    close(fds[0]);
    int wstatus = test_reap(pid, ended ? 5000 : 0);
    int want_exit = mc->status == 0 ? 0 : 1;
    if (wstatus < 0 || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != want_exit)
        fail_msg("%s: %s %s: wait status %d, printed:\n%s", mc->name, mc->program, addr, wstatus,
                 out);
    char *msg = strchr(out, '\n');
    assert_non_null(msg);
    *msg++ = '\0';
    char *rest = strchr(msg, '\n');
    assert_non_null(rest);
    *rest++ = '\0';
    assert_int_equal(atoi(out), mc->status);
    assert_string_equal(msg, mc->msg);
    assert_string_equal(rest, mc->status == 0 ? "calls ok\n" : "");
}

/* A client with no methods connects to any service and learns the server's whole table
 * (what shmrpcctl call relies on). */
static void empty_client_sees_the_table(void)
{
    static const shmrpc_service_info none = {
        SHMRPC_SERVICE_MAGIC, SHMRPC_DESCRIPTOR_VERSION, "Probe", "probe", 0, 0, 0, NULL, 0, NULL};
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &none, NULL), 0);
    assert_null(shmrpc_client_server_info(c));
    int rc = shmrpc_client_connect(c, addr);
    if (rc) fail_msg("connect: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    const shmrpc_service_info *s = shmrpc_client_server_info(c);
    assert_non_null(s);
    assert_string_equal(s->name, "Calc");
    assert_true(s->fingerprint == Calc_service_info.fingerprint);
    assert_int_equal(s->n_methods, Calc_service_info.n_methods);
    for (uint32_t i = 0; i < s->n_methods; i++) {
        const shmrpc_method_info *got = &s->methods[i], *want = &Calc_service_info.methods[i];
        assert_string_equal(got->name, want->name);
        assert_int_equal(got->id, i);
        assert_true(got->fingerprint == want->fingerprint);
        assert_int_equal(got->encoding, want->encoding);
        assert_string_equal(got->signature, want->signature);
    }
    shmrpc_client_free(c);
}

/* Every case that can run at addr, with the good client checked around each. */
static void run_cases(void)
{
    start_server();
    bool inproc = in_server != NULL;
    connect_good();
    assert_string_equal(shmrpc_errmsg(), "");
    check_good();
    empty_client_sees_the_table();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!cases[i].program)
            run_here(&cases[i]);
        else if (!inproc) /* another build of Calc cannot link with this server */
            run_program(&cases[i]);
        check_good();
    }
    shmrpc_client_free(good);
    good = NULL;
    stop_server();
}

/* --- per transport --- */

static int setup_shm(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://mismatch-%d-%d", (int)getpid(), addr_n++);
    return 0;
}

static int setup_tcp(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    return 0;
}

static int setup_inproc(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "inproc://mismatch-%d-%d", (int)getpid(), addr_n++);
    return 0;
}

/* Segments of the current shm:// address left in /dev/shm. */
static int leftovers(void)
{
    return test_shm_segments(addr);
}

/* Also after a failed test: the clients freed and the server stopped before the check. */
static int teardown(void **state)
{
    (void)state;
    shmrpc_client_free(other);
    shmrpc_client_free(good);
    other = good = NULL;
    bool clean = true;
    if (in_server) shmrpc_server_free(in_server);
    in_server = NULL;
    if (server > 0) clean = test_stop_server(server);
    server = 0;
    if (!clean) fprintf(stderr, "the server of %s did not stop cleanly\n", addr);
    if (leftovers() != 0) {
        fprintf(stderr, "segments of %s left behind\n", addr);
        clean = false;
    }
    return clean ? 0 : -1;
}

static void over_shm(void **state)
{
    (void)state;
    run_cases();
}

static void over_tcp(void **state)
{
    (void)state;
    run_cases();
}

static void over_inproc(void **state)
{
    (void)state;
    run_cases();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(over_shm, setup_shm, teardown),
        cmocka_unit_test_setup_teardown(over_tcp, setup_tcp, teardown),
        cmocka_unit_test_setup_teardown(over_inproc, setup_inproc, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
