/* SPDX-License-Identifier: MIT */
/* Faults injected by SHMRPC_FAULTS (docs/faults.md, issue 36): a server's method failing
 * with a status over shm:// and tcp://, at a rate with a seed, delayed, or killing its
 * worker; a client's calls failing or delayed before they are sent (inproc://); and every
 * malformed value refused with its message. Real server processes, each given the variable
 * in its child before the server is made; every wait is bounded and every process reaped,
 * even when a check fails. Only lower bounds on times. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "procs.h"

static pid_t server;
static char addr[64];
static const char *child_faults, *child_seed; /* the server's environment */

static void prepare(void)
{
    setenv("SHMRPC_FAULTS", child_faults, 1);
    if (child_seed) setenv("SHMRPC_FAULTS_SEED", child_seed, 1);
}

/* A server of Calls over the test's transport (its state: "shm" or "tcp") with faults (and
 * seed, or NULL) in its environment. */
static void start(void **state, const char *faults, const char *seed, int workers)
{
    static int n;
    if (strcmp(*state, "tcp") == 0)
        snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    else
        snprintf(addr, sizeof addr, "shm://faults%d_%d", (int)getpid(), n++);
    child_faults = faults;
    child_seed = seed;
    test_server ts = {.svc = &Calls_service,
                      .handlers = &calls_test_handlers,
                      .addr = addr,
                      .workers = workers,
                      .prepare = prepare};
    server = test_start_server(&ts);
    assert_true(server > 0);
}

static shmrpc_client *client(void)
{
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &rc);
    assert_int_equal(rc, 0);
    return c;
}

static int stop_server(void **state)
{
    (void)state;
    if (server > 0 && !test_stop_server(server)) test_reap(server, 0);
    if (server > 0) assert_int_equal(test_shm_segments(addr), 0);
    server = 0;
    unsetenv("SHMRPC_FAULTS");
    unsetenv("SHMRPC_FAULTS_SEED");
    return 0;
}

/* The errors counted for method name in the server's statistics, once there are at least
 * want of them (a call is counted after its answer), waiting up to five seconds. */
static uint64_t errors_counted(const char *name, uint64_t want)
{
    uint64_t got = 0;
    for (int i = 0; i < 500 && got < want; i++) {
        shmrpc_stats *st;
        if (shmrpc_stats_read(addr, &st) == 0) {
            for (uint32_t m = 0; m < st->n_methods; m++)
                if (strcmp(st->methods[m].name, name) == 0) got = st->methods[m].errors;
            shmrpc_stats_free(st);
        }
        if (got < want) usleep(10000);
    }
    return got;
}

/* add fails with the status named, its handler never runs, the client reads that it was
 * injected, the statistics count the failures; nap is not touched. */
static void status_at_rate_1(void **state)
{
    start(state, "server:add:status=SHMRPC_EUNAVAIL", NULL, 1);
    shmrpc_client *c = client();
    int64_t calls_before = sh->calls;
    for (int i = 0; i < 3; i++) {
        int64_t sum = -1;
        assert_int_equal(calls_add(c, 2, 3, &sum), SHMRPC_EUNAVAIL);
        assert_non_null(strstr(shmrpc_errmsg(),
                               "injected by SHMRPC_FAULTS (server:add:status=SHMRPC_EUNAVAIL)"));
    }
    assert_int_equal(sh->calls, calls_before);
    int32_t pid = 0;
    assert_int_equal(calls_nap(c, 0, &pid), 0);
    assert_true(pid > 0);
    assert_int_equal(sh->calls, calls_before + 1);
    assert_int_equal(errors_counted("add", 3), 3);
    shmrpc_client_free(c);
}

/* 200 calls at rate 0.5 with a seed: some fail and some succeed, and a server started again
 * with the same seed fails the same calls. */
static void rate_with_a_seed(void **state)
{
    char pattern[2][201];
    for (int run = 0; run < 2; run++) {
        start(state, "server:add:status=EBUSY:rate=0.5", "42", 1);
        shmrpc_client *c = client();
        int failed = 0, ok = 0;
        for (int i = 0; i < 200; i++) {
            int64_t sum;
            int rc = calls_add(c, i, 1, &sum);
            assert_true(rc == 0 || rc == SHMRPC_EBUSY);
            if (rc == 0) assert_int_equal(sum, i + 1);
            rc == 0 ? ok++ : failed++;
            pattern[run][i] = rc == 0 ? '.' : 'x';
        }
        pattern[run][200] = '\0';
        print_message("rate 0.5, seed 42: %d of 200 failed\n", failed);
        assert_true(failed > 0 && ok > 0);
        shmrpc_client_free(c);
        stop_server(NULL);
    }
    assert_string_equal(pattern[0], pattern[1]);
}

/* nap is delayed by at least what the entry says; add is not. */
static void delay(void **state)
{
    start(state, "server:nap:delay_ms=300", NULL, 1);
    shmrpc_client *c = client();
    int64_t sum;
    assert_int_equal(calls_add(c, 1, 1, &sum), 0);
    int64_t t0 = test_now_ms();
    int32_t pid;
    assert_int_equal(calls_nap(c, 0, &pid), 0);
    assert_true(test_now_ms() - t0 >= 300);
    shmrpc_client_free(c);
}

/* The worker serving add dies before the handler runs: the client sees SHMRPC_EPEERDIED,
 * and the server goes on with a new worker. */
static void kill_the_worker(void **state)
{
    start(state, "server:add:kill", NULL, 1);
    shmrpc_client *c = client();
    int32_t first = 0, next = 0;
    assert_int_equal(calls_nap(c, 0, &first), 0);
    int64_t calls_before = sh->calls;
    int64_t sum;
    assert_int_equal(calls_add(c, 1, 1, &sum), SHMRPC_EPEERDIED);
    assert_int_equal(sh->calls, calls_before);
    shmrpc_client_free(c);
    c = client();
    int rc = SHMRPC_EUNAVAIL;
    for (int i = 0; i < 500 && rc != 0; i++) /* until the new worker serves, at most 5 s */
        if ((rc = calls_nap(c, 0, &next)) != 0) usleep(10000);
    assert_int_equal(rc, 0);
    assert_true(next > 0 && next != first);
    assert_int_equal(calls_add(c, 1, 1, &sum), SHMRPC_EPEERDIED);
    shmrpc_client_free(c);
}

/* A Service.method entry: this service's applies, another's is left alone. */
static void qualified_names(void **state)
{
    start(state, "server:Other.add:status=EPERM;server:Calls.nap:status=EPERM", NULL, 1);
    shmrpc_client *c = client();
    int64_t sum;
    int32_t pid;
    assert_int_equal(calls_add(c, 1, 1, &sum), 0);
    assert_int_equal(calls_nap(c, 0, &pid), SHMRPC_EPERM);
    shmrpc_client_free(c);
}

/* --- a client's faults, over inproc:// (no other process: the client's own process) --- */

static shmrpc_server *inproc;

static shmrpc_client *inproc_client(const char *faults, int64_t timeout_ms)
{
    static int n;
    snprintf(addr, sizeof addr, "inproc://faults%d", n++);
    unsetenv("SHMRPC_FAULTS");
    assert_int_equal(shmrpc_server_new(&inproc, NULL), 0);
    assert_int_equal(shmrpc_server_register(inproc, &Calls_service, &calls_test_handlers, NULL), 0);
    assert_int_equal(shmrpc_server_listen(inproc, addr), 0);
    setenv("SHMRPC_FAULTS", faults, 1);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.timeout_ms = timeout_ms;
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, &o), 0);
    assert_int_equal(shmrpc_client_connect(c, addr), 0);
    return c;
}

static int stop_inproc(void **state)
{
    shmrpc_server_free(inproc);
    inproc = NULL;
    return stop_server(state);
}

/* The call fails with the status, unsent: the handler never runs. */
static void client_status(void **state)
{
    (void)state;
    shmrpc_client *c = inproc_client("client:add:status=ETIMEDOUT", 5000);
    int64_t calls_before = sh->calls, sum;
    assert_int_equal(calls_add(c, 1, 2, &sum), SHMRPC_ETIMEDOUT);
    assert_non_null(strstr(shmrpc_errmsg(),
                           "injected by SHMRPC_FAULTS (client:add:status=ETIMEDOUT): not sent"));
    shmrpc_call *call;
    assert_int_equal(calls_add_start(c, 1, 2, &call), SHMRPC_ETIMEDOUT);
    assert_int_equal(sh->calls, calls_before);
    int32_t pid;
    assert_int_equal(calls_nap(c, 0, &pid), 0);
    assert_int_equal(sh->calls, calls_before + 1);
    shmrpc_client_free(c);
}

/* The call waits, then is sent; a delay longer than its timeout ends it, unsent. */
static void client_delay(void **state)
{
    (void)state;
    shmrpc_client *c = inproc_client("client:*:delay_ms=200", 5000);
    int64_t t0 = test_now_ms(), sum;
    assert_int_equal(calls_add(c, 1, 2, &sum), 0);
    assert_int_equal(sum, 3);
    assert_true(test_now_ms() - t0 >= 200);
    int64_t calls_before = sh->calls;
    shmrpc_client_next_timeout(c, 100);
    t0 = test_now_ms();
    assert_int_equal(calls_add(c, 1, 2, &sum), SHMRPC_ETIMEDOUT);
    assert_true(test_now_ms() - t0 >= 100);
    assert_non_null(strstr(shmrpc_errmsg(), "timeout of 100 ms passed in the delay injected"));
    assert_int_equal(sh->calls, calls_before);
    shmrpc_client_free(c);
}

/* --- malformed values ------------------------------------------------------------------ */

static const struct bad {
    const char *faults, *seed;
    const char *where; /* "new", "register" or "listen": where the server refuses it */
    const char *msg;   /* part of the message */
} bads[] = {
    {"server:add", NULL, "new", "entry 1 ('server:add'): expected SIDE:METHOD:ACTION"},
    {"server:add:kill:rate=1:x", NULL, "new", "expected SIDE:METHOD:ACTION"},
    {"nap:add:kill", NULL, "new", "the side 'nap' is neither 'server' nor 'client'"},
    {"server::kill", NULL, "new", "no method"},
    {"server:.add:kill", NULL, "new", "'.add' is not Service.method"},
    {"server:add:explode", NULL, "new", "unknown action 'explode'"},
    {"server:add:status=EWHAT", NULL, "new", "'EWHAT' is no status"},
    {"server:add:status=SHMRPC_OK", NULL, "new", "'SHMRPC_OK' is no status"},
    {"server:add:delay_ms=60001", NULL, "new", "the delay '60001' is not a whole number"},
    {"server:add:delay_ms=-1", NULL, "new", "the delay '-1'"},
    {"server:add:delay_ms=1.5", NULL, "new", "the delay '1.5'"},
    {"server:add:kill:rate=0", NULL, "new", "the rate '0' is not a number above 0"},
    {"server:add:kill:rate=1.01", NULL, "new", "the rate '1.01'"},
    {"server:add:kill:rate=nan", NULL, "new", "the rate 'nan'"},
    {"server:add:kill:often", NULL, "new", "'often' is not rate=R"},
    {"client:add:kill", NULL, "new", "entry 1 ('client:add:kill'): kill is a server's action"},
    {"server:nap:kill; server:add:oops", NULL, "new", "entry 2 ('server:add:oops')"},
    {"server:add:kill", "seven", "new", "SHMRPC_FAULTS_SEED 'seven' is not a whole number"},
    {"server:ad:kill", NULL, "register",
     "service 'Calls' has no method 'ad' (it has: add, echo, nap"},
    {"server:*:kill", NULL, "listen", "over inproc:// is the caller's"},
};

static void malformed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        const struct bad *b = &bads[i];
        print_message("%s\n", b->faults);
        setenv("SHMRPC_FAULTS", b->faults, 1);
        if (b->seed) setenv("SHMRPC_FAULTS_SEED", b->seed, 1);
        shmrpc_server *s = NULL;
        int rc = shmrpc_server_new(&s, NULL);
        if (rc == 0 && strcmp(b->where, "new") != 0)
            rc = shmrpc_server_register(s, &Calls_service, &calls_test_handlers, NULL);
        if (rc == 0 && strcmp(b->where, "listen") == 0)
            rc = shmrpc_server_listen(s, "inproc://faults_bad");
        assert_int_equal(rc, SHMRPC_EINVAL);
        assert_non_null(strstr(shmrpc_errmsg(), b->msg));
        shmrpc_server_free(s);
        /* A client reads the same variable: the same entries are refused at its new. */
        if (strcmp(b->where, "new") == 0 || strstr(b->faults, "server:ad:")) {
            char as_client[128];
            snprintf(as_client, sizeof as_client, "%s", b->faults);
            if (strncmp(as_client, "server:", 7) == 0) memcpy(as_client, "client", 6);
            setenv("SHMRPC_FAULTS", as_client, 1);
            shmrpc_client *c = NULL;
            /* (a client's kill is refused first for being one) */
            assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, NULL), SHMRPC_EINVAL);
            char msg[128]; /* the message names the entry as written */
            snprintf(msg, sizeof msg, "%s", b->msg);
            char *side = strstr(msg, "server:");
            if (side) memcpy(side, "client", 6);
            if (!strstr(as_client, ":kill")) assert_non_null(strstr(shmrpc_errmsg(), msg));
            assert_null(c);
        }
        unsetenv("SHMRPC_FAULTS_SEED");
    }
    /* What parses: no entry at all, blanks, empty entries, and the other side's entries. */
    const char *goods[] = {"", " ; ;", "client:add:status=EUNAVAIL", "server:add:delay_ms=0 ;"};
    for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++) {
        setenv("SHMRPC_FAULTS", goods[i], 1);
        shmrpc_server *s;
        assert_int_equal(shmrpc_server_new(&s, NULL), 0);
        assert_int_equal(shmrpc_server_register(s, &Calls_service, &calls_test_handlers, NULL), 0);
        shmrpc_server_free(s);
    }
    unsetenv("SHMRPC_FAULTS");
}

int main(void)
{
    if (calls_shared_map() != 0) return 1;
    unsetenv("SHMRPC_FAULTS");
    unsetenv("SHMRPC_FAULTS_SEED");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(status_at_rate_1, NULL, stop_server, "shm"),
        cmocka_unit_test_prestate_setup_teardown(status_at_rate_1, NULL, stop_server, "tcp"),
        cmocka_unit_test_prestate_setup_teardown(rate_with_a_seed, NULL, stop_server, "shm"),
        cmocka_unit_test_prestate_setup_teardown(delay, NULL, stop_server, "shm"),
        cmocka_unit_test_prestate_setup_teardown(delay, NULL, stop_server, "tcp"),
        cmocka_unit_test_prestate_setup_teardown(kill_the_worker, NULL, stop_server, "shm"),
        cmocka_unit_test_prestate_setup_teardown(kill_the_worker, NULL, stop_server, "tcp"),
        cmocka_unit_test_prestate_setup_teardown(qualified_names, NULL, stop_server, "shm"),
        cmocka_unit_test_teardown(client_status, stop_inproc),
        cmocka_unit_test_teardown(client_delay, stop_inproc),
        cmocka_unit_test_teardown(malformed, stop_inproc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
