/* SPDX-License-Identifier: MIT */
/* A call's deadline as its handler sees it over shm:// and tcp:// (issue 36):
 * shmrpc_ctx_deadline gives the client's timeout, a call made from a handler inherits what
 * is left of it (unless its client keeps its own), and shmrpc_ctx_wait_cancelled returns once
 * the client stops waiting: at the deadline, when the client is killed, or when it cancels
 * the call (shmrpc_client_cancel, shmrpc_call_cancel). A tcp:// client of revision 3 sends
 * no deadline, and a server of revision 4 hears no cancel. Real server processes with forked
 * workers; every wait is bounded and every process reaped, even when a check fails. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "deadline.h"
#include "procs.h"

#define MS INT64_C(1000000)

/* What the servers' handlers publish to the test: mapped shared before any fork. */
typedef struct shared {
    char relay_to[64];         /* the address relay() calls */
    _Atomic int32_t relay_rc;  /* the status of relay()'s call */
    _Atomic int32_t relays;    /* relay() calls that made their call */
    _Atomic int32_t lefts;     /* left() calls that ran */
    _Atomic int32_t waits;     /* left(wait_ms > 0) calls that ended their wait */
    _Atomic int32_t why;       /* what the last of those waits returned */
    _Atomic int64_t waited_ns; /* how long it waited */
} shared;
static shared *sh;

static int h_left(shmrpc_ctx *ctx, uint32_t wait_ms, int64_t *out)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t t = now.tv_sec * 1000 * MS + now.tv_nsec;
    sh->lefts++;
    int64_t at = shmrpc_ctx_deadline(ctx);
    *out = at == INT64_MAX ? -1 : at - t;
    if (wait_ms > 0) {
        int why = shmrpc_ctx_wait_cancelled(ctx, wait_ms);
        clock_gettime(CLOCK_MONOTONIC, &now);
        sh->waited_ns = now.tv_sec * 1000 * MS + now.tv_nsec - t;
        sh->why = why;
        sh->waits++;
    }
    return 0;
}

static int h_relay(shmrpc_ctx *ctx, bool own_deadline, uint32_t nap_ms, int64_t *out)
{
    (void)ctx;
    usleep(nap_ms * 1000);
    shmrpc_client *c;
    int rc = shmrpc_client_new(&c, &Deadline_service_info, NULL);
    if (rc == 0) {
        shmrpc_client_own_deadline(c, own_deadline);
        rc = shmrpc_client_connect(c, sh->relay_to);
        if (rc == 0) rc = deadline_left(c, 0, out);
        shmrpc_client_free(c);
    }
    sh->relay_rc = rc;
    sh->relays++;
    if (rc != 0) *out = -2;
    return 0;
}

static const Deadline_handlers handlers = {.left = h_left, .relay = h_relay};

static pid_t servers[2];
static char addr[2][64];
static const char *transport; /* "shm", "tcp" or "tls", set by each test's setup */

/* A self-signed certificate for 127.0.0.1, made by the openssl program for the first test
 * over TLS, in a folder removed at exit (a loopback client does not check it). */
static char certs[] = "/tmp/deadline_tlsXXXXXX";
static char cert[64], key[64];

static void remove_certs(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", certs);
    if (system(cmd) != 0) fprintf(stderr, "deadline_test: could not remove %s\n", certs);
}

static int on_tls(void **state)
{
    (void)state;
    transport = "tls";
    if (cert[0]) return 0;
    if (!mkdtemp(certs)) return -1;
    atexit(remove_certs);
    snprintf(cert, sizeof cert, "%s/self.pem", certs);
    snprintf(key, sizeof key, "%s/self.key", certs);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "timeout 60 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout '%s' -out '%s' -days 2 -subj /CN=127.0.0.1 >/dev/null 2>&1",
             key, cert);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "deadline_test: the openssl program could not make a certificate\n");
        cert[0] = '\0';
        return -1;
    }
    return 0;
}

static int on_shm(void **state)
{
    (void)state;
    transport = "shm";
    return 0;
}

static int on_tcp(void **state)
{
    (void)state;
    transport = "tcp";
    return 0;
}

/* Starts server i, with these tcp:// settings (NULL: the defaults; over TLS, its certificate
 * is added). */
static void start_with(int i, const shmrpc_tcp_opts *tcp)
{
    if (strcmp(transport, "shm") != 0)
        snprintf(addr[i], sizeof addr[i], "tcp://127.0.0.1:%d", test_free_port());
    else
        snprintf(addr[i], sizeof addr[i], "shm://deadline%d_%d", (int)getpid(), i);
    shmrpc_tcp_opts tls = tcp ? *tcp : (shmrpc_tcp_opts){0};
    tls.tls_cert = cert;
    tls.tls_key = key;
    bool over_tls = strcmp(transport, "tls") == 0;
    test_server ts = {.svc = &Deadline_service,
                      .handlers = &handlers,
                      .addr = addr[i],
                      .workers = 1,
                      .tcp = over_tls ? &tls : tcp};
    servers[i] = test_start_server(&ts);
    assert_true(servers[i] > 0);
}

static void start(int i)
{
    start_with(i, NULL);
}

static shmrpc_client *client(int i, int64_t timeout_ms)
{
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.timeout_ms = timeout_ms;
    if (strcmp(transport, "tls") == 0) o.tcp.tls = SHMRPC_TLS_ON; /* loopback: not verified */
    int rc;
    shmrpc_client *c = test_connect(&Deadline_service_info, &o, addr[i], &rc);
    assert_int_equal(rc, 0);
    return c;
}

static int stop_servers(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        if (servers[i] > 0 && !test_stop_server(servers[i])) test_reap(servers[i], 0);
        if (servers[i] > 0) assert_int_equal(test_shm_segments(addr[i]), 0);
        servers[i] = 0;
    }
    return 0;
}

/* The handler sees the client's timeout, counted from when it began the call; a client
 * that waits for ever gives it none. */
static void handler_sees_the_timeout(void **state)
{
    (void)state;
    start(0);
    shmrpc_client *c = client(0, 2000);
    int64_t left = 0;
    assert_int_equal(deadline_left(c, 0, &left), 0);
    assert_true(left > 0 && left <= 2000 * MS);
    /* A call started (over tcp://, not alone on its connection: the server's pool runs it). */
    shmrpc_call *call;
    assert_int_equal(deadline_left_start(c, 0, &call), 0);
    left = 0;
    assert_int_equal(deadline_left_finish(c, call, &left), 0);
    assert_true(left > 0 && left <= 2000 * MS);
    /* A timeout changed between calls reaches the handler (the client writes it anew). */
    shmrpc_client_set_timeout(c, 30000);
    assert_int_equal(deadline_left(c, 0, &left), 0);
    assert_true(left > 2000 * MS && left <= 30000 * MS);
    shmrpc_client_next_timeout(c, SHMRPC_TIMEOUT_INFINITE);
    assert_int_equal(deadline_left(c, 0, &left), 0);
    assert_int_equal(left, -1);
    shmrpc_client_free(c);
}

/* A call made from a handler has at most what is left of the handler's deadline, unless
 * its client keeps its own timeout (5 s by default, above the 1 s given here). */
static void handlers_calls_inherit_it(void **state)
{
    (void)state;
    start(0);
    start(1);
    shmrpc_client_free(client(1, 1000)); /* serving: the relay connects to it at once */
    snprintf(sh->relay_to, sizeof sh->relay_to, "%s", addr[1]);
    shmrpc_client *c = client(0, 1000);
    int64_t left = 0;
    assert_int_equal(deadline_relay(c, false, 0, &left), 0);
    assert_int_equal(sh->relay_rc, 0);
    assert_true(left > 0 && left <= 1000 * MS);
    assert_int_equal(deadline_relay(c, true, 0, &left), 0);
    assert_int_equal(sh->relay_rc, 0);
    assert_true(left > 1000 * MS && left <= SHMRPC_DEFAULT_TIMEOUT_MS * MS);
    /* A handler whose client waits for ever passes on no limit: its call keeps its own. */
    shmrpc_client_next_timeout(c, SHMRPC_TIMEOUT_INFINITE);
    assert_int_equal(deadline_relay(c, false, 0, &left), 0);
    assert_true(left > 1000 * MS && left <= SHMRPC_DEFAULT_TIMEOUT_MS * MS);
    /* A handler whose deadline passed before its call: the call fails at once, unsent. */
    sh->relays = 0;
    sh->lefts = 0;
    shmrpc_client_next_timeout(c, 100);
    assert_int_equal(deadline_relay(c, false, 400, &left), SHMRPC_ETIMEDOUT);
    for (int i = 0; i < 10000 && sh->relays == 0; i++)
        usleep(1000);
    assert_int_equal(sh->relays, 1);
    assert_int_equal(sh->relay_rc, SHMRPC_ETIMEDOUT);
    assert_int_equal(sh->lefts, 0);
    shmrpc_client_free(c);
}

/* The handler's wait ends at the call's deadline, when its client gives up, with
 * SHMRPC_ETIMEDOUT, long before the wait's own 20 s. */
static void wait_ends_at_the_deadline(void **state)
{
    (void)state;
    start(0);
    shmrpc_client *c = client(0, 200);
    sh->waits = 0;
    int64_t left;
    /* The two sides start the timeout's clock within the time the request took to be sent
     * and taken, so either may end first: the client gives up, or reads the answer that
     * the handler gave at its own deadline. */
    int rc = deadline_left(c, 20000, &left);
    assert_true(rc == SHMRPC_ETIMEDOUT || rc == 0);
    for (int i = 0; i < 10000 && sh->waits == 0; i++)
        usleep(1000);
    assert_int_equal(sh->waits, 1);
    assert_int_equal(sh->why, SHMRPC_ETIMEDOUT);
    assert_true(sh->waited_ns < 10000 * MS);
    shmrpc_client_free(c);
}

/* A client killed while its call runs (a blocking call, or one started: over tcp:// the
 * first runs on the thread that read it, the second on the server's pool): the handler's
 * wait ends with SHMRPC_EPEERDIED. */
static void client_dies(bool started)
{
    start(0);
    sh->waits = 0;
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        alarm(30);
        shmrpc_client *c = client(0, SHMRPC_TIMEOUT_INFINITE);
        int64_t left;
        shmrpc_call *call;
        size_t which;
        if (!started) deadline_left(c, 20000, &left);
        if (started && deadline_left_start(c, 20000, &call) == 0)
            shmrpc_client_wait(c, &call, 1, SHMRPC_TIMEOUT_INFINITE, &which);
        _exit(1);
    }
    usleep(300 * 1000); /* the call is in its handler by then, or soon: the wait is 20 s */
    kill(kid, SIGKILL);
    assert_int_equal(test_reap(kid, 5000), SIGKILL);
    for (int i = 0; i < 15000 && sh->waits == 0; i++)
        usleep(1000);
    assert_int_equal(sh->waits, 1);
    assert_int_equal(sh->why, SHMRPC_EPEERDIED);
    assert_true(sh->waited_ns < 15000 * MS);
}

static void wait_ends_when_the_client_dies(void **state)
{
    (void)state;
    client_dies(false);
}

static void wait_ends_when_a_started_calls_client_dies(void **state)
{
    (void)state;
    client_dies(true);
}

/* Cancels a client's calls after a nap, from its own thread. */
typedef struct canceller {
    shmrpc_client *c;
    int nap_ms;
    pthread_t thread;
} canceller;

static void *cancel_later(void *arg)
{
    canceller *k = arg;
    usleep((useconds_t)k->nap_ms * 1000);
    shmrpc_client_cancel(k->c);
    return NULL;
}

static void cancel_in(canceller *k, shmrpc_client *c, int nap_ms)
{
    *k = (canceller){.c = c, .nap_ms = nap_ms};
    assert_int_equal(pthread_create(&k->thread, NULL, cancel_later, k), 0);
}

/* Waits (bounded) for the handler's wait to end, and checks why it did: well before the
 * 20 s it was given. */
static void handler_saw(int32_t why)
{
    for (int i = 0; i < 15000 && sh->waits == 0; i++)
        usleep(1000);
    assert_int_equal(sh->waits, 1);
    assert_int_equal(sh->why, why);
    assert_true(sh->waited_ns < 15000 * MS);
}

/* A client killed right after it cancelled its call, while its server still answers it:
 * the handler's wait ends, its late answer goes to nobody, and the server serves the next
 * client as before (kill -9 at the last step of the cancel). */
static void killed_after_its_cancel(void **state)
{
    (void)state;
    start(0);
    sh->waits = 0;
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        alarm(30);
        shmrpc_client *c = client(0, 30000);
        canceller k;
        k = (canceller){.c = c, .nap_ms = 300};
        if (pthread_create(&k.thread, NULL, cancel_later, &k) != 0) _exit(2);
        int64_t left;
        int rc = deadline_left(c, 20000, &left);
        raise(SIGKILL); /* before the answer, whatever came of the call */
        _exit(rc == SHMRPC_ECANCELLED ? 1 : 3);
    }
    assert_int_equal(test_reap(kid, 10000), SIGKILL);
    /* Over tcp:// the CANCEL comes before the connection's end; over shm:// a handler that
     * looks after the client died finds its slot gone first, whatever its claim says. */
    for (int i = 0; i < 15000 && sh->waits == 0; i++)
        usleep(1000);
    assert_int_equal(sh->waits, 1);
    if (sh->why != SHMRPC_ECANCELLED &&
        !(strcmp(transport, "shm") == 0 && sh->why == SHMRPC_EPEERDIED))
        fail_msg("the handler's wait ended with %d", (int)sh->why);
    shmrpc_client *c = client(0, 5000);
    int64_t left = 0;
    assert_int_equal(deadline_left(c, 0, &left), 0);
    assert_true(left > 0);
    shmrpc_client_free(c);
}

/* Another thread cancels the call in flight (a blocking one, or one started and waited
 * for): it ends with SHMRPC_ECANCELLED long before its 20 s, its handler's wait ends with
 * SHMRPC_ECANCELLED, and the connection serves the next call. */
static void cancelled_from_another_thread(bool started)
{
    start(0);
    shmrpc_client *c = client(0, 30000);
    sh->waits = 0;
    canceller k;
    cancel_in(&k, c, 300);
    int64_t left = 0;
    int rc;
    if (started) {
        shmrpc_call *call;
        size_t which;
        rc = deadline_left_start(c, 20000, &call);
        if (rc == 0) rc = shmrpc_client_wait(c, &call, 1, SHMRPC_TIMEOUT_INFINITE, &which);
        if (rc == 0) rc = deadline_left_finish(c, call, &left);
    } else {
        rc = deadline_left(c, 20000, &left);
    }
    pthread_join(k.thread, NULL);
    assert_int_equal(rc, SHMRPC_ECANCELLED);
    assert_non_null(strstr(shmrpc_errmsg(), "may"));
    handler_saw(SHMRPC_ECANCELLED);
    /* A cancel before a call does not touch it. */
    shmrpc_client_cancel(c);
    assert_int_equal(deadline_left(c, 0, &left), 0);
    assert_true(left > 0);
    shmrpc_client_free(c);
}

static void cancel_ends_a_blocking_call(void **state)
{
    (void)state;
    cancelled_from_another_thread(false);
}

static void cancel_ends_a_started_call(void **state)
{
    (void)state;
    cancelled_from_another_thread(true);
}

/* Over tcp://, where started calls are in flight together: one cancelled (or freed) is done
 * at once with SHMRPC_ECANCELLED, its handler told by a CANCEL; the others go on. The
 * server runs them on its pool, or, with max_running 1, one after another on the thread
 * that reads the connection: there the handler finds the CANCEL past the other's request. */
static void started_calls_cancelled(int max_running)
{
    shmrpc_tcp_opts o = {.max_running = max_running};
    start_with(0, &o);
    shmrpc_client *c = client(0, 30000);
    for (int freed = 0; freed < 2; freed++) {
        sh->waits = 0;
        shmrpc_call *call, *other;
        assert_int_equal(deadline_left_start(c, 20000, &call), 0);
        assert_int_equal(deadline_left_start(c, 0, &other), 0);
        usleep(300 * 1000); /* the first is in its handler by then, or soon */
        assert_int_equal(shmrpc_call_status(call), SHMRPC_CALL_PENDING);
        if (freed) {
            shmrpc_call_free(call);
        } else {
            shmrpc_call_cancel(call);
            assert_int_equal(shmrpc_call_status(call), SHMRPC_ECANCELLED);
            shmrpc_call_free(call);
        }
        handler_saw(SHMRPC_ECANCELLED);
        int64_t left = 0;
        assert_int_equal(deadline_left_finish(c, other, &left), 0);
        assert_true(left > 0);
    }
    shmrpc_client_free(c);
}

static void one_started_call_cancelled(void **state)
{
    (void)state;
    started_calls_cancelled(0);
}

static void one_started_call_cancelled_run_in_turn(void **state)
{
    (void)state;
    started_calls_cancelled(1);
}

/* A server of revision 4 knows no CANCEL: the client ends its call all the same, says its
 * server was not told, and sends it nothing it would refuse (the handler's wait runs out:
 * it was neither cancelled nor left). */
static void old_server_hears_no_cancel(void **state)
{
    (void)state;
    setenv("SHMRPC_TEST_WIRE_PROTO", "4", 1); /* read by the server as it starts */
    start(0);
    unsetenv("SHMRPC_TEST_WIRE_PROTO");
    shmrpc_client *c = client(0, 30000);
    sh->waits = 0;
    canceller k;
    cancel_in(&k, c, 300);
    int64_t left = 0;
    int rc = deadline_left(c, 1500, &left);
    pthread_join(k.thread, NULL);
    assert_int_equal(rc, SHMRPC_ECANCELLED);
    assert_null(strstr(shmrpc_errmsg(), "told"));
    handler_saw(0);
    assert_int_equal(deadline_left(c, 0, &left), 0);
    shmrpc_client_free(c);
}

/* A tcp:// client of revision 3 knows no deadline flag: its handler sees none. */
static void old_client_sends_none(void **state)
{
    (void)state;
    start(0);
    setenv("SHMRPC_TEST_WIRE_PROTO", "3", 1); /* read when the client is made */
    shmrpc_client *c = client(0, 2000);
    unsetenv("SHMRPC_TEST_WIRE_PROTO");
    int64_t left = 0;
    assert_int_equal(deadline_left(c, 0, &left), 0);
    assert_int_equal(left, -1);
    shmrpc_client_free(c);
}

int main(void)
{
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) return 1;
    const struct CMUnitTest tests[] = {
#define BOTH(f)                                                                                    \
    {"shm: " #f, f, on_shm, stop_servers, NULL}, {"tcp: " #f, f, on_tcp, stop_servers, NULL}
        BOTH(handler_sees_the_timeout),
        BOTH(handlers_calls_inherit_it),
        BOTH(wait_ends_at_the_deadline),
        BOTH(wait_ends_when_the_client_dies),
        BOTH(wait_ends_when_a_started_calls_client_dies),
        BOTH(cancel_ends_a_blocking_call),
        BOTH(cancel_ends_a_started_call),
        BOTH(killed_after_its_cancel),
        {"tls: cancel_ends_a_blocking_call", cancel_ends_a_blocking_call, on_tls, stop_servers,
         NULL},
        {"tls: cancel_ends_a_started_call", cancel_ends_a_started_call, on_tls, stop_servers, NULL},
        cmocka_unit_test_setup_teardown(one_started_call_cancelled, on_tcp, stop_servers),
        cmocka_unit_test_setup_teardown(one_started_call_cancelled_run_in_turn, on_tcp,
                                        stop_servers),
        cmocka_unit_test_setup_teardown(old_server_hears_no_cancel, on_tcp, stop_servers),
        cmocka_unit_test_setup_teardown(old_client_sends_none, on_tcp, stop_servers),
    };
    /* One test (a glob of their names), as a mutant's run asks (tests/mutants/deadline.mut). */
    if (getenv("DEADLINE_TEST_ONLY")) cmocka_set_test_filter(getenv("DEADLINE_TEST_ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
