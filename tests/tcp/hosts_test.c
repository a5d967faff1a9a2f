/* SPDX-License-Identifier: MIT */
/* A service on several "hosts" (servers on different ports of 127.0.0.1) called through an
 * endpoint list (issue 17): bad lists are refused with a message, a list with a dead port
 * still succeeds and calls spread over the live ones, a DNS name is resolved; a server
 * SIGKILLed under load fails only the calls it may have run (EPEERDIED), none runs twice
 * and the rest succeed elsewhere; a server told to stop drains (DRAIN frame) with no call
 * failing; a client with one endpoint is told "draining". Every call carries its client and
 * sequence number, and the handlers count each execution in shared memory. Every wait is
 * bounded (alarm() in each child, deadlines here), and the teardown kills and reaps
 * whatever a failed test left running. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls.h"
#include "procs.h"

enum {
    SERVERS = 3,
    WORKERS = 2,
    CLIENTS = 3,
    MAX_CALLS = 1 << 15, /* per client */
    SLOW_EVERY = 8,      /* every 8th call is an echo that naps... */
    SLOW_MS = 2,         /* ...this long */
    TIMEOUT_MS = 3000,   /* each call's deadline */
    LOAD_MS = 300,       /* of calls before and after a fault */
    WRONG_ANSWER = 1,    /* a call's recorded status when its result was not the expected */
};

/* One call as its client saw it. */
typedef struct call_rec {
    int64_t t0, t1;
    int32_t status;
} call_rec;

typedef struct client_log {
    _Atomic int32_t n;      /* rec[0..n-1] are complete */
    _Atomic int32_t failed; /* how many of them failed */
    char first_msg[300];    /* shmrpc_errmsg() of its first failed call */
    call_rec rec[MAX_CALLS];
} client_log;

/* Shared by the test, its clients and every server's workers (MAP_SHARED before any fork). */
typedef struct hosts_shared {
    _Atomic int stop;   /* the test: clients stop calling */
    _Atomic pid_t hold; /* the test: a slow call on this server waits while it is set */
    _Atomic int held;   /* handlers waiting so */
    _Atomic uint32_t runs[CLIENTS][MAX_CALLS]; /* handlers: how often each call ran */
    _Atomic int32_t by[CLIENTS][MAX_CALLS];    /* handlers: the server that ran it */
    _Atomic uint32_t served[SERVERS];          /* handlers: calls per server */
    client_log clients[CLIENTS];
} hosts_shared;

static hosts_shared *shared;
static int ports[SERVERS];
static pid_t servers[SERVERS]; /* process groups; 0 once reaped */
static pid_t clients[CLIENTS];
static char list[256]; /* tcp://127.0.0.1:P1,127.0.0.1:P2,... */

/* --- the servers, in child processes --- */

static pid_t serving; /* in a server's processes: its manager's pid */
static int serving_index;

static void nap_ms(uint32_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void ran(int64_t client, int64_t seq)
{
    atomic_fetch_add(&shared->served[serving_index], 1);
    if (client < 0 || client >= CLIENTS || seq < 0 || seq >= MAX_CALLS) return;
    atomic_fetch_add(&shared->runs[client][seq], 1);
    atomic_store(&shared->by[client][seq], serving);
}

static int h_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    (void)ctx;
    ran(a, b);
    *out = a + b;
    return 0;
}

typedef struct slow_req {
    uint32_t client, seq, ms;
} slow_req;

static int h_echo(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    slow_req r;
    if (data.len != sizeof r)
        return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "a slow call of %zu bytes", data.len);
    memcpy(&r, data.ptr, sizeof r);
    ran(r.client, r.seq);
    nap_ms(r.ms);
    if (atomic_load(&shared->hold) == serving) { /* the test kills this server now */
        atomic_fetch_add(&shared->held, 1);
        for (int i = 0; i < 5000 && atomic_load(&shared->hold) == serving; i++)
            nap_ms(1);
        atomic_fetch_sub(&shared->held, 1);
    }
    *out = data;
    return 0;
}

static int h_nap(shmrpc_ctx *ctx, uint32_t ms, int32_t *out)
{
    (void)ctx;
    atomic_fetch_add(&shared->served[serving_index], 1);
    nap_ms(ms);
    *out = serving;
    return 0;
}

static const Calls_handlers handlers = {.echo = h_echo, .add = h_add, .nap = h_nap};

static int starting; /* the index of the server being started, for prepare_server */

static void prepare_server(void)
{
    setpgid(0, 0);
    serving = getpid();
    serving_index = starting;
}

static pid_t start_server(int i)
{
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", ports[i]);
    starting = i;
    test_server ts = {&Calls_service, &handlers, addr, WORKERS, 0, prepare_server, NULL, NULL};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    setpgid(pid, pid);
    servers[i] = pid;
    return pid;
}

/* Reaps the processes of group pgid for up to ms; true once none is left. */
static bool reap_group(pid_t pgid, int ms)
{
    int64_t until = test_now_ms() + ms;
    for (;;) {
        pid_t p = waitpid(-pgid, NULL, WNOHANG);
        if (p > 0) continue;
        if (p < 0 && errno == ECHILD && kill(-pgid, 0) != 0 && errno == ESRCH) return true;
        if (test_now_ms() > until) return false;
        usleep(1000);
    }
}

/* Waits until server i answers (bounded). */
static void await_server(int i)
{
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", ports[i]);
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &rc);
    if (rc) fail_msg("server %d at %s: %s: %s", i, addr, shmrpc_strerror(rc), shmrpc_errmsg());
    shmrpc_client_free(c);
}

static void start_all(void)
{
    for (int i = 0; i < SERVERS; i++)
        start_server(i);
    for (int i = 0; i < SERVERS; i++)
        await_server(i);
}

/* --- the clients, in child processes --- */

static int32_t one_call(shmrpc_client *c, uint32_t k, uint32_t seq)
{
    if (seq % SLOW_EVERY != SLOW_EVERY - 1) {
        int64_t sum = -1;
        int rc = calls_add(c, k, seq, &sum);
        return rc == 0 && sum != (int64_t)k + seq ? WRONG_ANSWER : rc;
    }
    slow_req r = {k, seq, SLOW_MS};
    shmrpc_bytes out;
    int rc = calls_echo(c, shmrpc_bytes_of(&r, sizeof r), &out);
    if (rc == 0 && (out.len != sizeof r || memcmp(out.ptr, &r, sizeof r) != 0)) rc = WRONG_ANSWER;
    return rc;
}

/* Calls through the list until told to stop, recording each call. Exit status: 0, 8 out
 * of room, 9 no connect. */
static int client_process(uint32_t k)
{
    alarm(60);
    shmrpc_client *c;
    if (shmrpc_client_new(&c, &Calls_service_info, NULL) != 0) return 9;
    int rc = shmrpc_client_connect(c, list);
    if (rc) {
        fprintf(stderr, "connect %s: %s: %s\n", list, shmrpc_strerror(rc), shmrpc_errmsg());
        shmrpc_client_free(c);
        return 9;
    }
    shmrpc_client_set_timeout(c, TIMEOUT_MS);
    client_log *me = &shared->clients[k];
    uint32_t seq = 0;
    for (; !atomic_load(&shared->stop) && seq < MAX_CALLS; seq++) {
        call_rec *r = &me->rec[seq];
        r->t0 = test_now_ms();
        r->status = one_call(c, k, seq);
        r->t1 = test_now_ms();
        if (r->status != 0 && me->failed++ == 0)
            snprintf(me->first_msg, sizeof me->first_msg, "call %u: %s: %s", seq,
                     shmrpc_strerror(r->status), shmrpc_errmsg());
        atomic_store(&me->n, (int32_t)seq + 1);
    }
    shmrpc_client_free(c);
    return seq < MAX_CALLS ? 0 : 8;
}

static void start_clients(void)
{
    for (int k = 0; k < CLIENTS; k++) {
        clients[k] = fork();
        assert_true(clients[k] >= 0);
        if (clients[k] == 0) _exit(client_process((uint32_t)k));
    }
}

/* Waits up to ms until every client has made more than n calls. */
static bool all_called(int32_t n, int ms)
{
    int64_t until = test_now_ms() + ms;
    for (int k = 0; k < CLIENTS; k++)
        while (atomic_load(&shared->clients[k].n) <= n) {
            if (test_now_ms() > until) return false;
            usleep(1000);
        }
    return true;
}

static void stop_clients(void)
{
    atomic_store(&shared->stop, 1);
    for (int k = 0; k < CLIENTS; k++) {
        int status = test_reap(clients[k], 10000);
        clients[k] = 0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("client %d ended with status %d (%s)", k, status,
                     shared->clients[k].first_msg);
    }
}

static void stop_servers(void)
{
    for (int i = 0; i < SERVERS; i++) {
        if (servers[i] <= 0) continue;
        assert_true(test_stop_server(servers[i]));
        assert_true(reap_group(servers[i], 5000));
        servers[i] = 0;
    }
}

/* What the calls of all clients add up to. */
typedef struct tally {
    int64_t calls, ok, failed, runs, peer_died, unavail, other;
    int64_t twice;    /* calls that ran more than once: must be 0 */
    int64_t longest;  /* ms, of any call */
    int64_t ok_wrong; /* successes that did not run exactly once */
    int64_t lost;     /* failures with a status that says "did not run" that ran */
    char other_msg[300];
} tally;

static tally count_calls(void)
{
    tally t = {0};
    for (int k = 0; k < CLIENTS; k++) {
        const client_log *cl = &shared->clients[k];
        int32_t n = atomic_load(&cl->n);
        for (int32_t i = 0; i < n; i++) {
            const call_rec *r = &cl->rec[i];
            uint32_t runs = atomic_load(&shared->runs[k][i]);
            t.calls++;
            t.runs += runs;
            t.twice += runs > 1;
            if (r->t1 - r->t0 > t.longest) t.longest = r->t1 - r->t0;
            if (r->status == 0) {
                t.ok++;
                t.ok_wrong += runs != 1;
                continue;
            }
            t.failed++;
            if (r->status == SHMRPC_EPEERDIED) {
                t.peer_died++;
            } else if (r->status == SHMRPC_EUNAVAIL) {
                t.unavail++;
                t.lost += runs != 0;
            } else {
                t.other++;
                if (!t.other_msg[0])
                    snprintf(t.other_msg, sizeof t.other_msg, "client %d call %d: %s", k, i,
                             r->status == WRONG_ANSWER ? "a wrong answer"
                                                       : shmrpc_strerror(r->status));
            }
        }
        for (int32_t i = n; i < MAX_CALLS; i++) /* nothing ran that was not called */
            if (atomic_load(&shared->runs[k][i]) != 0)
                fail_msg("client %d call %d ran unasked", k, i);
    }
    return t;
}

static void print_tally(const char *what, const tally *t)
{
    print_message("    %s: %lld calls, %lld ok, %lld failed (%lld EPEERDIED, %lld EUNAVAIL, %lld "
                  "other), %lld ran twice, longest call %lld ms; per server %u %u %u\n",
                  what, (long long)t->calls, (long long)t->ok, (long long)t->failed,
                  (long long)t->peer_died, (long long)t->unavail, (long long)t->other,
                  (long long)t->twice, (long long)t->longest, atomic_load(&shared->served[0]),
                  atomic_load(&shared->served[1]), atomic_load(&shared->served[2]));
}

/* --- setup --- */

static int setup(void **state)
{
    (void)state;
    memset(shared, 0, sizeof *shared);
    for (int i = 0; i < SERVERS; i++) {
        ports[i] = test_free_port();
        for (int j = 0; j < i; j++) /* distinct, as the kernel may hand a port out again */
            if (ports[j] == ports[i]) ports[i] = test_free_port(), j = -1;
    }
    snprintf(list, sizeof list, "tcp://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", ports[0], ports[1],
             ports[2]);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    atomic_store(&shared->stop, 1);
    atomic_store(&shared->hold, 0);
    for (int k = 0; k < CLIENTS; k++)
        if (clients[k] > 0) {
            kill(clients[k], SIGKILL);
            test_reap(clients[k], 5000);
            clients[k] = 0;
        }
    for (int i = 0; i < SERVERS; i++) {
        if (servers[i] > 0) {
            kill(-servers[i], SIGKILL);
            if (!reap_group(servers[i], 5000)) fprintf(stderr, "group %d lives on\n", servers[i]);
            servers[i] = 0;
        }
        /* What a SIGKILLed server left (this test's kill, or the kills above). */
        char addr[64];
        snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", ports[i]);
        if (ports[i] > 0) test_tcp_stats_forget(addr);
    }
    return 0;
}

/* --- the tests --- */

static void expect_refused(const shmrpc_service_info *info, const char *addr, const char *says)
{
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, info, NULL), 0);
    int rc = shmrpc_client_connect(c, addr);
    if (rc != SHMRPC_EINVAL || !strstr(shmrpc_errmsg(), says))
        fail_msg("%s: %s: '%s', not '%s'", addr, shmrpc_strerror(rc), shmrpc_errmsg(), says);
    shmrpc_client_free(c);
}

/* Lists that cannot be right are refused before anything is connected, with a message
 * that names the entry. */
static void bad_lists(void **state)
{
    (void)state;
    const shmrpc_service_info *info = &Calls_service_info;
    expect_refused(info, "tcp://127.0.0.1:5000,,127.0.0.1:5001", "entry 2 is empty");
    expect_refused(info, "tcp://127.0.0.1:5000,", "entry 2 is empty");
    expect_refused(info, "tcp://,127.0.0.1:5000", "entry 1 is empty");
    expect_refused(info, "tcp://127.0.0.1:5000,127.0.0.1:70000",
                   "entry 2 ('127.0.0.1:70000') has a port that is not a number from 1 to 65535");
    expect_refused(info, "tcp://127.0.0.1:5000,127.0.0.1:x1", "not a number from 1 to 65535");
    expect_refused(info, "tcp://127.0.0.1:5000,::1:5000",
                   "entry 2 ('::1:5000') is an IPv6 address without brackets");
    expect_refused(info, "tcp://[::1:5000,127.0.0.1:1", "has no ']'");
    char many[2048] = "tcp://";
    for (int i = 0; i < SHMRPC_TCP_MAX_ENDPOINTS + 1; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s127.0.0.1:%d", i ? "," : "",
                 5000 + i);
    expect_refused(info, many, "65 entries, and a list may have at most 64");
    /* A service whose .svc names no port: every entry must name one. */
    shmrpc_service_info noport = Calls_service_info;
    noport.port = 0;
    expect_refused(&noport, "tcp://127.0.0.1:5000,127.0.0.1",
                   "entry 2 ('127.0.0.1') names no port, and the service's .svc has no `port`");
    /* The settings of lists are checked when the client is made. */
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.probe_interval_ms = -1;
    shmrpc_client *bad = NULL;
    assert_int_equal(shmrpc_client_new(&bad, info, &o), SHMRPC_EINVAL);
    shmrpc_client_opts_init(&o);
    o.tcp.resolve_interval_ms = -5;
    assert_int_equal(shmrpc_client_new(&bad, info, &o), SHMRPC_EINVAL);
    assert_null(bad);
    /* With one, an entry without a port takes it: then there is just nobody there. */
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, info, NULL), 0);
    int port = test_free_port();
    char addr[96];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d,127.0.0.2", port);
    assert_int_equal(shmrpc_client_connect(c, addr), SHMRPC_EUNAVAIL);
    assert_non_null(strstr(shmrpc_errmsg(), "no endpoint of"));
    assert_non_null(strstr(shmrpc_errmsg(), "127.0.0.2:6003"));
    shmrpc_client_free(c);
}

/* One dead port in the list: connect and every call succeed, and the calls spread over the
 * two live servers. A list of dead ports only fails with EUNAVAIL naming each. */
static void dead_port_in_list(void **state)
{
    (void)state;
    start_server(1);
    start_server(2);
    await_server(1);
    await_server(2);
    /* ports[0] has no server: it is first, so the connect tries it first. */
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, NULL), 0);
    int rc = shmrpc_client_connect(c, list);
    if (rc) fail_msg("connect %s: %s: %s", list, shmrpc_strerror(rc), shmrpc_errmsg());
    int on[2] = {0, 0};
    for (int i = 0; i < 200; i++) {
        int32_t pid = 0;
        rc = calls_nap(c, 0, &pid);
        if (rc) fail_msg("call %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
        int s = pid == servers[1] ? 0 : pid == servers[2] ? 1 : -1;
        if (s < 0) fail_msg("call %d answered by %d, no server of the test", i, (int)pid);
        on[s]++;
    }
    print_message("    200 calls: %d on one server, %d on the other\n", on[0], on[1]);
    assert_true(on[0] >= 50 && on[1] >= 50); /* spread, not all on one */
    shmrpc_client_free(c);

    /* Nobody at any of three ports. */
    char dead[128];
    int d[3] = {test_free_port(), test_free_port(), test_free_port()};
    snprintf(dead, sizeof dead, "tcp://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", d[0], d[1], d[2]);
    assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(c, dead), SHMRPC_EUNAVAIL);
    const char *msg = shmrpc_errmsg();
    for (int i = 0; i < 3; i++) {
        char one[64];
        snprintf(one, sizeof one, "no server at tcp://127.0.0.1:%d", d[i]);
        if (!strstr(msg, one)) fail_msg("'%s' does not say '%s'", msg, one);
    }
    shmrpc_client_free(c);
    stop_servers();
}

/* A dead endpoint is left out, then tried again after its backoff: once a server listens
 * there, calls reach it within a few probe intervals (the backoff doubles per failure up to
 * 16 times; bounded here by 16 intervals and the load of the machine). */
static void dead_endpoint_rejoins(void **state)
{
    (void)state;
    start_server(1);
    await_server(1);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.probe_interval_ms = 50;
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, &o), 0);
    char two[96];
    snprintf(two, sizeof two, "tcp://127.0.0.1:%d,127.0.0.1:%d", ports[0], ports[1]);
    int rc = shmrpc_client_connect(c, two);
    if (rc) fail_msg("connect %s: %s: %s", two, shmrpc_strerror(rc), shmrpc_errmsg());
    int32_t pid = 0;
    for (int i = 0; i < 50; i++) { /* the dead one fails again and again: its backoff grows */
        assert_int_equal(calls_nap(c, 1, &pid), 0);
        assert_int_equal(pid, servers[1]);
    }
    int64_t t0 = test_now_ms();
    start_server(0);
    await_server(0);
    int64_t up = test_now_ms(), until = up + 50 * 16 * 3 + 5000;
    while (pid != servers[0] && test_now_ms() < until) {
        rc = calls_nap(c, 1, &pid);
        if (rc) fail_msg("%s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    }
    assert_int_equal(pid, servers[0]);
    print_message("    the endpoint took calls again %lld ms after its server answered (%lld ms "
                  "after it was started; probe interval 50 ms)\n",
                  (long long)(test_now_ms() - up), (long long)(test_now_ms() - t0));
    shmrpc_client_free(c);
    stop_servers();
}

/* A rolling upgrade: one endpoint serves Calls as built now, the other a newer build with
 * one more method that sorts first (hosts_plus.svc), so every id differs. Each call is
 * mapped to the ids of the server it goes to: every answer is right, from both. */
static void rolling_upgrade(void **state)
{
    (void)state;
    start_server(0);
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", ports[1]);
    pid_t plus = fork();
    assert_true(plus >= 0);
    if (plus == 0) {
        setpgid(0, 0);
        execl(HOSTS_PLUS_SERVER, HOSTS_PLUS_SERVER, addr, (char *)NULL);
        _exit(127);
    }
    setpgid(plus, plus);
    servers[1] = plus;
    await_server(0);
    await_server(1);
    char two[96];
    snprintf(two, sizeof two, "tcp://127.0.0.1:%d,127.0.0.1:%d", ports[0], ports[1]);
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, NULL), 0);
    int rc = shmrpc_client_connect(c, two);
    if (rc) fail_msg("connect %s: %s: %s", two, shmrpc_strerror(rc), shmrpc_errmsg());
    int on[2] = {0, 0};
    for (int i = 0; i < 100; i++) {
        int64_t sum = 0;
        rc = calls_add(c, i, 1000, &sum);
        if (rc || sum != i + 1000)
            fail_msg("add %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
        slow_req r = {CLIENTS, (uint32_t)i, 0}; /* no client's: not counted */
        shmrpc_bytes out;
        rc = calls_echo(c, shmrpc_bytes_of(&r, sizeof r), &out);
        if (rc || out.len != sizeof r || memcmp(out.ptr, &r, sizeof r) != 0)
            fail_msg("echo %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
        int32_t pid = 0;
        rc = calls_nap(c, 0, &pid);
        if (rc) fail_msg("nap %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
        if (pid != servers[0] && pid != servers[1]) fail_msg("nap %d answered by %d", i, (int)pid);
        on[pid == servers[1]]++;
    }
    print_message("    100 naps: %d on the current build, %d on the newer one\n", on[0], on[1]);
    assert_true(on[0] >= 20 && on[1] >= 20);
    shmrpc_client_free(c);
    stop_servers();
}

/* A DNS name: localhost is resolved (through the resolver, not as a number), and a call
 * goes to what it names; a name that does not resolve is refused with the resolver's
 * message. */
static void dns_name(void **state)
{
    (void)state;
    start_server(0);
    await_server(0);
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://localhost:%d", ports[0]);
    shmrpc_client *c;
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.resolve_interval_ms = 1; /* resolved again in the background: connections stay */
    assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, &o), 0);
    int rc = shmrpc_client_connect(c, addr);
    if (rc) fail_msg("connect %s: %s: %s", addr, shmrpc_strerror(rc), shmrpc_errmsg());
    for (int i = 0; i < 20; i++) { /* 2 ms each, so that rounds finish between calls */
        int32_t pid = 0;
        assert_int_equal(calls_nap(c, 2, &pid), 0);
        assert_int_equal(pid, servers[0]);
    }
    shmrpc_client_free(c);
    assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, NULL), 0);
    rc = shmrpc_client_connect(c, "tcp://no-such-host.invalid:5000");
    if ((rc != SHMRPC_ENOENT && rc != SHMRPC_EUNAVAIL) ||
        !strstr(shmrpc_errmsg(), "cannot resolve 'no-such-host.invalid'"))
        fail_msg("%s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    shmrpc_client_free(c);
    stop_servers();
}

/* One of three servers SIGKILLed (its whole group) while it runs a slow call, with clients
 * calling through the list: the only failures are calls whose request had been sent to it
 * (EPEERDIED: it may have run), at most one per client; every other call succeeds on the
 * servers left; no call runs twice; a success ran exactly once. */
static void sigkill_mid_run(void **state)
{
    (void)state;
    start_all();
    start_clients();
    assert_true(all_called(4 * SLOW_EVERY, 10000));
    usleep(LOAD_MS * 1000);
    for (int k = 0; k < CLIENTS; k++)
        if (atomic_load(&shared->clients[k].failed))
            fail_msg("client %d failed before the kill: %s", k, shared->clients[k].first_msg);

    atomic_store(&shared->hold, servers[1]);
    int64_t until = test_now_ms() + 5000;
    while (atomic_load(&shared->held) == 0 && test_now_ms() < until)
        usleep(500);
    assert_true(atomic_load(&shared->held) > 0);
    assert_int_equal(kill(-servers[1], SIGKILL), 0);
    if (!reap_group(servers[1], 5000)) fail_msg("processes of the killed server live on");
    servers[1] = 0;
    atomic_store(&shared->hold, 0);
    atomic_store(&shared->held, 0);
    int32_t at_kill[CLIENTS];
    for (int k = 0; k < CLIENTS; k++)
        at_kill[k] = atomic_load(&shared->clients[k].n);
    usleep(LOAD_MS * 1000);
    assert_true(all_called(at_kill[0] + 100, 10000)); /* all go on */
    stop_clients();
    stop_servers();

    tally t = count_calls();
    print_tally("SIGKILL of one of three", &t);
    for (int k = 0; k < CLIENTS; k++)
        if (shared->clients[k].first_msg[0])
            print_message("    client %d's first failure: %s\n", k, shared->clients[k].first_msg);
    assert_int_equal(t.twice, 0);
    assert_int_equal(t.ok_wrong, 0);
    if (t.other) fail_msg("a call failed with a status it should not have: %s", t.other_msg);
    assert_int_equal(t.unavail, 0); /* a call that never started went elsewhere */
    assert_true(t.peer_died >= 1);  /* the held one at least */
    assert_true(t.peer_died <= CLIENTS);
    /* Executions: the successes, and those of the calls cut that had run. */
    assert_true(t.runs >= t.ok && t.runs <= t.ok + t.peer_died);
}

/* One of three servers told to stop (SIGTERM) under load: it drains, and not one call
 * fails; it exits cleanly; the calls go on on the two left. */
static void drain_one_of_three(void **state)
{
    (void)state;
    start_all();
    start_clients();
    assert_true(all_called(4 * SLOW_EVERY, 10000));
    usleep(LOAD_MS * 1000);
    uint32_t before = atomic_load(&shared->served[0]);
    assert_true(before > 0); /* it had its share */
    int64_t t0 = test_now_ms();
    assert_true(test_stop_server(servers[0])); /* SIGTERM; exit status 0 */
    int64_t stopped_ms = test_now_ms() - t0;
    assert_true(reap_group(servers[0], 5000));
    servers[0] = 0;
    int32_t at_stop = atomic_load(&shared->clients[0].n);
    usleep(LOAD_MS * 1000);
    assert_true(all_called(at_stop + 100, 10000));
    stop_clients();
    stop_servers();

    tally t = count_calls();
    print_tally("drain of one of three", &t);
    print_message("    the server took %lld ms to stop\n", (long long)stopped_ms);
    if (t.failed)
        for (int k = 0; k < CLIENTS; k++)
            if (shared->clients[k].first_msg[0])
                fail_msg("client %d: %s", k, shared->clients[k].first_msg);
    assert_int_equal(t.failed, 0);
    assert_int_equal(t.twice, 0);
    assert_int_equal(t.ok_wrong, 0);
    assert_int_equal(t.runs, t.ok);
}

/* A client with one endpoint whose server is told to stop: the call in hand finishes, and
 * later calls fail with EUNAVAIL saying it drains, never with a broken connection's
 * EPEERDIED. A client that idled meanwhile is told "draining" by its health call, and
 * EUNAVAIL "draining" by its next call. */
static void single_endpoint_drain(void **state)
{
    (void)state;
    start_server(0);
    await_server(0);
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", ports[0]);
    pid_t caller = fork();
    assert_true(caller >= 0);
    if (caller == 0) { /* slow calls back to back until the server is gone */
        alarm(30);
        int rc;
        shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &rc);
        if (rc) _exit(9);
        int32_t pid;
        int ok = 0;
        for (int i = 0; i < 100000 && rc == 0; i++) {
            rc = calls_nap(c, 5, &pid);
            ok += rc == 0;
        }
        bool draining = strstr(shmrpc_errmsg(), "draining") != NULL;
        fprintf(stderr, "    caller: %d calls ok, then %s: %s\n", ok, shmrpc_strerror(rc),
                shmrpc_errmsg());
        shmrpc_client_free(c);
        _exit(rc == SHMRPC_EUNAVAIL && draining && ok > 0 ? 0 : 1);
    }
    int rc;
    shmrpc_client *idle = test_connect(&Calls_service_info, NULL, addr, &rc);
    assert_int_equal(rc, 0);
    int64_t until = test_now_ms() + 5000;
    while (atomic_load(&shared->served[0]) < 20 && test_now_ms() < until)
        usleep(1000);
    assert_true(atomic_load(&shared->served[0]) >= 20);
    assert_true(test_stop_server(servers[0]));
    assert_true(reap_group(servers[0], 5000));
    servers[0] = 0;
    int status = test_reap(caller, 10000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    shmrpc_health h = 0;
    assert_int_equal(shmrpc_client_health(idle, &h), 0);
    assert_int_equal(h, SHMRPC_HEALTH_DRAINING);
    int32_t pid;
    assert_int_equal(calls_nap(idle, 0, &pid), SHMRPC_EUNAVAIL);
    print_message("    an idle client's next call: %s\n", shmrpc_errmsg());
    shmrpc_client_free(idle);
}

int main(void)
{
    shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) return 1;
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(bad_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_port_in_list, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_endpoint_rejoins, setup, teardown),
        cmocka_unit_test_setup_teardown(rolling_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(dns_name, setup, teardown),
        cmocka_unit_test_setup_teardown(sigkill_mid_run, setup, teardown),
        cmocka_unit_test_setup_teardown(drain_one_of_three, setup, teardown),
        cmocka_unit_test_setup_teardown(single_endpoint_drain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
