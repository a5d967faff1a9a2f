/* SPDX-License-Identifier: MIT */
/* Retries of @idempotent methods over shm:// and tcp:// (issue 36, docs/retries.md): a call
 * whose worker dies mid-call is made again and succeeds, while a method without @idempotent
 * fails with SHMRPC_EPEERDIED and runs once; against a server that keeps failing, the
 * attempts it sees are bounded by the client's budget; the deadline bounds the whole loop,
 * backoffs included; a cancel stops it. Real server processes with forked workers; the
 * handlers count their calls where the test reads them. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "procs.h"
#include "retry.h"

enum { GET, BUMP, HELLO };

/* What the handlers publish, and what the test asks of them: mapped shared before any
 * fork. */
typedef struct shared {
    _Atomic int32_t calls[3];  /* calls each method's handler began */
    _Atomic int32_t die;       /* calls left on which the worker exits before it answers */
    _Atomic int32_t fail_with; /* a status every call fails with; 0: none */
    /* endpoints_that_disagree's two servers: get's calls at each, and calls left on which
     * the second one's worker exits */
    _Atomic int32_t gets_at[2];
    _Atomic int32_t die_at_b;
} shared;
static shared *sh;
static int at = -1; /* in a server of endpoints_that_disagree: which one it is */

/* The call of method m as the test asks: 0 to answer, or the status to fail with. */
static int act(shmrpc_ctx *ctx, int m)
{
    sh->calls[m]++;
    if (at >= 0 && m == GET) sh->gets_at[at]++;
    _Atomic int32_t *die = at == 1 ? &sh->die_at_b : &sh->die;
    int32_t d = atomic_load(die);
    while (d > 0 && !atomic_compare_exchange_weak(die, &d, d - 1)) {
    }
    if (d > 0) _exit(3); /* mid-call: the request was taken, no answer comes */
    int rc = atomic_load(&sh->fail_with);
    return rc ? shmrpc_ctx_error(ctx, rc, "failing as the test asks") : 0;
}

static int h_get(shmrpc_ctx *ctx, int64_t key, int64_t *out)
{
    *out = key + 1;
    return act(ctx, GET);
}

static int h_bump(shmrpc_ctx *ctx, int64_t key, int64_t *out)
{
    *out = key + 1;
    return act(ctx, BUMP);
}

static int h_hello(shmrpc_ctx *ctx, shmrpc_str who, shmrpc_str *out)
{
    *out = who;
    return act(ctx, HELLO);
}

static const Retry_handlers handlers = {.get = h_get, .bump = h_bump, .hello = h_hello};

static pid_t server;
static char addr[64];
static const char *transport; /* "shm" or "tcp", set by each test's setup */

static int reset(void)
{
    memset(sh, 0, sizeof *sh);
    return 0;
}

static int on_shm(void **state)
{
    (void)state;
    transport = "shm";
    return reset();
}

static int on_tcp(void **state)
{
    (void)state;
    transport = "tcp";
    return reset();
}

/* The service as a table without @idempotent on get: its signature without it, another
 * fingerprint (the compat verdict then compares the two signatures). */
static shmrpc_method_info plain_methods[3];
static shmrpc_service_info plain_info;
static shmrpc_service plain_svc;

static void make_plain(void)
{
    memcpy(plain_methods, Retry_service_info.methods, sizeof plain_methods);
    for (int i = 0; i < 3; i++)
        if (strcmp(plain_methods[i].name, "get") == 0) {
            plain_methods[i].signature = "get(i64 key)->i64 @msgpack";
            plain_methods[i].fingerprint ^= 1;
        }
    plain_info = Retry_service_info;
    plain_info.methods = plain_methods;
    plain_info.fingerprint ^= 1;
    plain_svc = Retry_service;
    plain_svc.info = &plain_info;
}

static void start_svc(const shmrpc_service *svc)
{
    if (strcmp(transport, "shm") == 0)
        snprintf(addr, sizeof addr, "shm://retry%d", (int)getpid());
    else
        snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    test_server ts = {.svc = svc, .handlers = &handlers, .addr = addr, .workers = 1};
    server = test_start_server(&ts);
    assert_true(server > 0);
}

static void start(void)
{
    start_svc(&Retry_service);
}

/* A client of info with the default retries, or these. */
static shmrpc_client *client_of(const shmrpc_service_info *info, int64_t timeout_ms,
                                const shmrpc_retry_opts *retry)
{
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.timeout_ms = timeout_ms;
    if (retry) o.retry = *retry;
    int rc;
    shmrpc_client *c = test_connect(info, &o, addr, &rc);
    assert_int_equal(rc, 0);
    return c;
}

static shmrpc_client *client_with(int64_t timeout_ms, const shmrpc_retry_opts *retry)
{
    return client_of(&Retry_service_info, timeout_ms, retry);
}

static int stop_server(void **state)
{
    (void)state;
    if (server > 0 && !test_stop_server(server)) test_reap(server, 0);
    if (server > 0 && strcmp(transport, "shm") == 0) assert_int_equal(test_shm_segments(addr), 0);
    server = 0;
    return 0;
}

/* A call of an @idempotent method whose worker dies mid-call is made again, on the worker
 * that replaced it, and succeeds: the handler began it twice. So does the @json one. */
static void idempotent_survives_a_worker_death(void **state)
{
    (void)state;
    start();
    shmrpc_client *c = client_with(5000, NULL);
    int64_t out = 0;
    assert_int_equal(retry_get(c, 41, &out), 0); /* the worker is up */
    sh->calls[GET] = 0;
    sh->die = 1;
    int rc = retry_get(c, 41, &out);
    if (rc) fprintf(stderr, "get: %s: %s\n", shmrpc_status_name(rc), shmrpc_errmsg());
    assert_int_equal(rc, 0);
    assert_int_equal(out, 42);
    assert_int_equal(sh->calls[GET], 2);
    assert_int_equal(sh->die, 0);

    sh->die = 1;
    shmrpc_str got = {0};
    rc = retry_hello(c, SHMRPC_STR("again"), &got);
    if (rc) fprintf(stderr, "hello: %s: %s\n", shmrpc_status_name(rc), shmrpc_errmsg());
    assert_int_equal(rc, 0);
    assert_int_equal(got.len, 5);
    assert_int_equal(sh->calls[HELLO], 2);
    shmrpc_client_free(c);

    /* The same death with retries off: what the retry above got past. */
    shmrpc_retry_opts off = {0};
    c = client_with(5000, &off);
    assert_int_equal(retry_get(c, 41, &out), 0);
    sh->calls[GET] = 0;
    sh->die = 1;
    assert_int_equal(retry_get(c, 41, &out), SHMRPC_EPEERDIED);
    assert_int_equal(sh->calls[GET], 1);
    shmrpc_client_free(c);
}

/* Without @idempotent a call that may have run is not made again: SHMRPC_EPEERDIED, and
 * its handler began it once. */
static void other_methods_run_at_most_once(void **state)
{
    (void)state;
    start();
    shmrpc_client *c = client_with(5000, NULL);
    int64_t out = 0;
    assert_int_equal(retry_bump(c, 1, &out), 0);
    sh->calls[BUMP] = 0;
    sh->die = 1;
    assert_int_equal(retry_bump(c, 1, &out), SHMRPC_EPEERDIED);
    usleep(200 * 1000); /* a retry, were there one, would have come by now */
    assert_int_equal(sh->calls[BUMP], 1);
    /* The next call runs on the worker that replaced it (connecting again as it must). */
    int rc = SHMRPC_EUNAVAIL;
    for (int i = 0; i < 200 && rc == SHMRPC_EUNAVAIL; i++)
        if ((rc = retry_bump(c, 1, &out)) == SHMRPC_EUNAVAIL) usleep(10 * 1000);
    assert_int_equal(rc, 0);
    assert_int_equal(sh->calls[BUMP], 2);
    shmrpc_client_free(c);
}

/* What the server's table says decides, whatever the client's own says: a client without
 * @idempotent on get retries it against a server whose table has it (and its connect said
 * so), and one with it does not against a server whose table lacks it. */
static void the_servers_table_decides(void **state)
{
    (void)state;
    start();
    shmrpc_client *c = client_of(&plain_info, 5000, NULL);
    assert_non_null(strstr(shmrpc_client_compat(c), "'get': @idempotent only on the server"));
    int64_t out = 0;
    assert_int_equal(retry_get(c, 1, &out), 0);
    sh->calls[GET] = 0;
    sh->die = 1;
    assert_int_equal(retry_get(c, 1, &out), 0);
    assert_int_equal(sh->calls[GET], 2);
    shmrpc_client_free(c);
    assert_true(test_stop_server(server));

    start_svc(&plain_svc);
    c = client_with(5000, NULL);
    assert_non_null(strstr(shmrpc_client_compat(c), "'get': @idempotent only on the client"));
    assert_int_equal(retry_get(c, 1, &out), 0);
    sh->calls[GET] = 0;
    sh->die = 1;
    assert_int_equal(retry_get(c, 1, &out), SHMRPC_EPEERDIED);
    assert_int_equal(sh->calls[GET], 1);
    shmrpc_client_free(c);
}

/* A server whose every call fails with SHMRPC_EUNAVAIL: the first call is tried until the
 * budget falls to half (5 attempts: 10 tokens down to 5), every later one once, so that 20
 * calls cost the server 24 attempts, not 100; the message counts them. Successes refill
 * the budget, a tenth of a token each, until a retry is allowed again. */
static void budget_bounds_the_attempts(void **state)
{
    (void)state;
    start();
    shmrpc_client *c = client_with(5000, NULL);
    int64_t out = 0;
    assert_int_equal(retry_get(c, 1, &out), 0); /* the budget is full again: 10 tokens */
    sh->calls[GET] = 0;
    sh->fail_with = SHMRPC_EUNAVAIL;
    assert_int_equal(retry_get(c, 1, &out), SHMRPC_EUNAVAIL);
    assert_int_equal(sh->calls[GET], 5);
    assert_non_null(strstr(shmrpc_errmsg(), "[@idempotent: 5 attempts; "));
    for (int i = 1; i < 20; i++) {
        assert_int_equal(retry_get(c, 1, &out), SHMRPC_EUNAVAIL);
        assert_non_null(strstr(shmrpc_errmsg(), "1 attempt; the retry budget is spent"));
    }
    assert_int_equal(sh->calls[GET], 24);
    /* Now empty: 70 successes give back 7 tokens; a failure leaves 6, above half, and one
     * retry follows (its failure leaves 5: no more). */
    sh->fail_with = 0;
    for (int i = 0; i < 70; i++)
        assert_int_equal(retry_get(c, 1, &out), 0);
    sh->calls[GET] = 0;
    sh->fail_with = SHMRPC_EUNAVAIL;
    assert_int_equal(retry_get(c, 1, &out), SHMRPC_EUNAVAIL);
    assert_int_equal(sh->calls[GET], 2);
    /* A method without @idempotent is never retried, whatever the budget. */
    assert_int_equal(retry_bump(c, 1, &out), SHMRPC_EUNAVAIL);
    assert_int_equal(sh->calls[BUMP], 1);
    shmrpc_client_free(c);
}

/* With a budget that never runs out, the deadline ends the retries: the call takes about
 * its timeout, never more, and says the deadline left no time for another attempt. */
static void deadline_bounds_the_loop(void **state)
{
    (void)state;
    start();
    shmrpc_retry_opts r = {.max_attempts = 100,
                           .initial_backoff_ms = 20,
                           .max_backoff_ms = 20,
                           .backoff_multiplier = 1,
                           .max_tokens = 1000,
                           .token_ratio = 1};
    shmrpc_client *c = client_with(300, &r);
    int64_t out = 0;
    assert_int_equal(retry_get(c, 1, &out), 0);
    sh->calls[GET] = 0;
    sh->fail_with = SHMRPC_EUNAVAIL;
    int64_t t0 = test_now_ms();
    int rc = retry_get(c, 1, &out);
    int64_t took = test_now_ms() - t0;
    /* The last attempt may also end at the deadline itself, when the machine is slow. */
    assert_true(rc == SHMRPC_EUNAVAIL || rc == SHMRPC_ETIMEDOUT);
    if (rc == SHMRPC_EUNAVAIL)
        assert_non_null(strstr(shmrpc_errmsg(), "its deadline leaves no time for another"));
    /* The deadline, not max_attempts, ended it: fewer than the 100 attempts, which take
     * about a second of backoffs. No bound on the time itself but a hang's (no timing in
     * unit tests: a loaded machine's scheduler adds what it likes); the message above says
     * why it stopped, and retry.mut's deadline mutant is caught by it. */
    print_message("took %lld ms, %d attempts\n", (long long)took, (int)sh->calls[GET]);
    assert_true(took < 5000);
    assert_true(sh->calls[GET] > 1 && sh->calls[GET] < 100);
    shmrpc_client_free(c);
}

typedef struct canceller {
    pthread_t thread;
    shmrpc_client *c;
    int ms;
    int32_t seen; /* the attempts the server had begun when it cancelled */
} canceller;

/* Cancels k->ms after the first attempt began: within the backoff after it, however long
 * the machine took to start the call (its attempt ends in a round trip). */
static void *cancel_later(void *arg)
{
    canceller *k = arg;
    for (int i = 0; i < 5000 && sh->calls[GET] < 1; i++)
        usleep(1000);
    usleep((useconds_t)k->ms * 1000);
    k->seen = sh->calls[GET];
    shmrpc_client_cancel(k->c);
    return NULL;
}

/* A cancel ends the retries: SHMRPC_ECANCELLED within a backoff's step, and no attempt
 * after it. */
static void cancel_stops_it(void **state)
{
    (void)state;
    start();
    /* A backoff of 400 ms and the cancel 150 ms into it: an attempt that took over 150 ms
     * (a loaded sanitizer build under ctest -j2 made one last long enough for a 30 ms
     * backoff's cancel to land inside it) is what would move it. */
    shmrpc_retry_opts r = {.max_attempts = 100,
                           .initial_backoff_ms = 400,
                           .max_backoff_ms = 400,
                           .backoff_multiplier = 1,
                           .max_tokens = 1000,
                           .token_ratio = 1};
    shmrpc_client *c = client_with(10000, &r);
    int64_t out = 0;
    assert_int_equal(retry_get(c, 1, &out), 0);
    sh->calls[GET] = 0;
    sh->fail_with = SHMRPC_EUNAVAIL;
    canceller k = {.c = c, .ms = 150};
    assert_int_equal(pthread_create(&k.thread, NULL, cancel_later, &k), 0);
    int64_t t0 = test_now_ms();
    assert_int_equal(retry_get(c, 1, &out), SHMRPC_ECANCELLED);
    int64_t took = test_now_ms() - t0;
    /* Seen in a backoff (where the call spends all but microseconds of its time), not by the
     * attempt that would begin after it. */
    assert_non_null(strstr(shmrpc_errmsg(), "cancelled by its client between attempts"));
    pthread_join(k.thread, NULL);
    assert_true(took < 5000); /* a hang's bound: the cancel came after 200 ms */
    /* At most the attempt in flight when it came: none began after. */
    assert_true(sh->calls[GET] <= k.seen + 1);
    int32_t seen = sh->calls[GET];
    usleep(100 * 1000);
    assert_int_equal(sh->calls[GET], seen);
    /* Retries off (max_attempts 0): one attempt, as a method without @idempotent. */
    shmrpc_client_free(c);
    r.max_attempts = 0;
    c = client_with(5000, &r);
    sh->calls[GET] = 0;
    assert_int_equal(retry_get(c, 1, &out), SHMRPC_EUNAVAIL);
    assert_int_equal(sh->calls[GET], 1);
    shmrpc_client_free(c);
}

/* Settings out of range are refused when the client is made, saying which; with retries
 * off (max_attempts 0, as a zeroed struct has) the others are not looked at. */
static void at_a(void)
{
    at = 0;
}

static void at_b(void)
{
    at = 1;
}

/* tcp:// endpoints in a rolling upgrade: A's table marks get @idempotent, B's does not.
 * Once the client met both, it cannot tell which one a failed call ran on, so it retries
 * nothing: B's worker dying mid-get fails that call, which A never runs, though the table
 * the client kept last is A's (A restarted and connected again): a review found the call
 * retried on A then. */
static void endpoints_that_disagree(void **state)
{
    (void)state;
    char a_addr[64], b_addr[64], list[160];
    int pa = test_free_port(), pb = test_free_port();
    snprintf(a_addr, sizeof a_addr, "tcp://127.0.0.1:%d", pa);
    snprintf(b_addr, sizeof b_addr, "tcp://127.0.0.1:%d", pb);
    snprintf(list, sizeof list, "tcp://127.0.0.1:%d,127.0.0.1:%d", pa, pb);
    test_server sa = {.svc = &Retry_service,
                      .handlers = &handlers,
                      .addr = a_addr,
                      .workers = 1,
                      .prepare = at_a};
    test_server sb = {
        .svc = &plain_svc, .handlers = &handlers, .addr = b_addr, .workers = 1, .prepare = at_b};
    pid_t a = test_start_server(&sa), b = test_start_server(&sb);
    assert_true(a > 0 && b > 0);
    int rc;
    shmrpc_client_free(test_connect(&Retry_service_info, NULL, a_addr, &rc)); /* A is up */
    assert_int_equal(rc, 0);
    shmrpc_client_free(test_connect(&Retry_service_info, NULL, b_addr, &rc)); /* B is up */
    assert_int_equal(rc, 0);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.probe_interval_ms = 20; /* A, restarted below, is taken back soon */
    shmrpc_client *c = test_connect(&Retry_service_info, &o, list, &rc);
    assert_int_equal(rc, 0);
    int64_t out;
    for (int i = 0; i < 20 && (sh->gets_at[0] == 0 || sh->gets_at[1] == 0); i++)
        assert_int_equal(retry_get(c, 1, &out), 0);
    if (sh->gets_at[0] == 0 || sh->gets_at[1] == 0)
        fail_msg("20 calls did not reach both endpoints (A %d, B %d)", (int)sh->gets_at[0],
                 (int)sh->gets_at[1]);
    /* A again, and calls until the table the client kept last is A's, which marks get. */
    assert_true(test_stop_server(a));
    assert_true((a = test_start_server(&sa)) > 0);
    static const char marked[] = "get(i64 key)->i64 @msgpack @idempotent";
    for (int64_t end = test_now_ms() + 10000;
         strcmp(shmrpc_client_server_info(c)->methods[1].signature, marked) && test_now_ms() < end;
         usleep(1000))
        retry_get(c, 1, &out);
    assert_string_equal(shmrpc_client_server_info(c)->methods[1].signature, marked);
    sh->die_at_b = 1;
    int32_t a0 = 0, b0 = 0;
    for (int i = 0; i < 20; i++) {
        a0 = sh->gets_at[0], b0 = sh->gets_at[1];
        rc = retry_get(c, 1, &out);
        if (sh->gets_at[1] > b0) break; /* this call ran on B */
    }
    assert_int_equal(sh->die_at_b, 0);
    assert_int_equal(rc, SHMRPC_EPEERDIED);
    assert_non_null(strstr(shmrpc_errmsg(), "disagree on which methods are @idempotent"));
    assert_int_equal(sh->gets_at[0], a0); /* not sent again to A */
    shmrpc_client_free(c);
    assert_true(test_stop_server(a));
    assert_true(test_stop_server(b));
}

static void bad_settings_refused(void **state)
{
    (void)state;
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    assert_int_equal(o.retry.max_attempts, 5);
    o.retry.backoff_multiplier = 0.5;
    shmrpc_client *c = NULL;
    assert_int_equal(shmrpc_client_new(&c, &Retry_service_info, &o), SHMRPC_EINVAL);
    assert_null(c);
    assert_non_null(strstr(shmrpc_errmsg(), "backoff_multiplier outside 1..1000"));
    o.retry = (shmrpc_retry_opts){.max_attempts = 101};
    assert_int_equal(shmrpc_client_new(&c, &Retry_service_info, &o), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "max_attempts above 100"));
    o.retry = (shmrpc_retry_opts){0};
    assert_int_equal(shmrpc_client_new(&c, &Retry_service_info, &o), 0);
    shmrpc_client_free(c);
}

int main(void)
{
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) return 1;
    make_plain();
    const struct CMUnitTest tests[] = {
#define BOTH(f)                                                                                    \
    {"shm: " #f, f, on_shm, stop_server, NULL}, {"tcp: " #f, f, on_tcp, stop_server, NULL}
        BOTH(idempotent_survives_a_worker_death),
        BOTH(other_methods_run_at_most_once),
        BOTH(the_servers_table_decides),
        BOTH(budget_bounds_the_attempts),
        BOTH(deadline_bounds_the_loop),
        BOTH(cancel_stops_it),
        cmocka_unit_test(bad_settings_refused),
        cmocka_unit_test_setup(endpoints_that_disagree, on_tcp),
    };
    /* One test (a glob of their names), as a mutant's run asks (tests/mutants/retry.mut). */
    if (getenv("RETRY_TEST_ONLY")) cmocka_set_test_filter(getenv("RETRY_TEST_ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
