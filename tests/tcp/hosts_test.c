/* SPDX-License-Identifier: MIT */
/* A service on several "hosts" (servers on different ports of 127.0.0.1) called through an
 * endpoint list (issue 17): bad lists are refused with a message, a list with a dead port
 * still succeeds and calls spread over the live ones, a DNS name is resolved; a server
 * SIGKILLed under load fails only the calls it may have run (EPEERDIED), none runs twice
 * and the rest succeed elsewhere; a server told to stop drains (DRAIN frame) with no call
 * failing; a client with one endpoint is told "draining". A server stopped with SIGSTOP
 * (its kernel still takes connections, nothing answers them) holds up neither new clients
 * nor those calling, and is taken back after SIGCONT (issue 33). Every call carries its
 * client and sequence number, and the handlers count each execution in shared memory.
 * Every wait is bounded (alarm() in each child, deadlines here), and the teardown resumes,
 * kills and reaps whatever a failed test left running or stopped. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
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
#include <sys/socket.h>
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
    MAX_CALLS = 1 << 18, /* per client */
    SLOW_EVERY = 8,      /* every 8th call is an echo that naps... */
    SLOW_MS = 2,         /* ...this long */
    TIMEOUT_MS = 3000,   /* each call's deadline */
    LOAD_MS = 300,       /* of calls before and after a fault */
    WRONG_ANSWER = 1,    /* a call's recorded status when its result was not the expected */
    /* A stopped host (issue 33): */
    STALL_TIMEOUT_MS = 1000, /* the deadline of the calls of clients already calling */
    STALL_MS = 4000,         /* how long the host stays stopped under their calls */
    IN_FLIGHT = 4,           /* the asynchronous client's calls at once */
    SLOW_CONNECT_MS = 20000, /* the connect timeout and the call deadline of new clients: what
                              * a new client would wait on the stopped host before the fix */
    NEW_CALLS = 50,          /* each new client's calls */
};

/* One call as its client saw it. */
typedef struct call_rec {
    int64_t t0, t1;
    int32_t status;
} call_rec;

typedef struct client_log {
    _Atomic int32_t n;        /* rec[0..n-1] are complete */
    _Atomic int32_t failed;   /* how many of them failed */
    _Atomic int64_t first_ms; /* a new client: from before its connect to its first answer */
    char first_msg[300];      /* shmrpc_errmsg() of its first failed call */
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
/* How the clients of client_process call: each call's deadline, and which client (if any)
 * keeps IN_FLIGHT asynchronous calls in flight instead of one blocking call at a time. */
static int call_timeout_ms = TIMEOUT_MS;
static int async_client = -1;

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
static const shmrpc_tcp_opts *server_tcp; /* the servers' tcp:// settings; NULL: defaults */

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
    test_server ts = {&Calls_service, &handlers,  addr, WORKERS, 0,
                      prepare_server, server_tcp, NULL};
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
    shmrpc_client_opts o; /* with the servers' secret, if they have one */
    shmrpc_client_opts_init(&o);
    if (server_tcp) { /* and TLS, if they serve it (loopback: the certificate unchecked) */
        o.tcp.secret = server_tcp->secret;
        o.tcp.secret_len = server_tcp->secret_len;
        o.tcp.tls = server_tcp->tls_cert ? SHMRPC_TLS_ON : SHMRPC_TLS_OFF;
    }
    shmrpc_client *c = test_connect(&Calls_service_info, &o, addr, &rc);
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

static void record_failure(client_log *me, uint32_t seq, int status)
{
    if (status != 0 && me->failed++ == 0)
        snprintf(me->first_msg, sizeof me->first_msg, "call %u: %s: %s", seq,
                 shmrpc_strerror(status),
                 status == WRONG_ANSWER ? "a wrong answer" : shmrpc_errmsg());
}

/* IN_FLIGHT adds at a time (started, then finished in order) until told to stop: the
 * sequence numbers it made. */
static uint32_t async_calls(shmrpc_client *c, uint32_t k, client_log *me)
{
    uint32_t seq = 0;
    while (!atomic_load(&shared->stop) && seq + IN_FLIGHT <= MAX_CALLS) {
        shmrpc_call *calls[IN_FLIGHT];
        for (uint32_t i = 0; i < IN_FLIGHT; i++) {
            me->rec[seq + i].t0 = test_now_ms();
            int rc = calls_add_start(c, k, seq + i, &calls[i]);
            if (rc) {
                fprintf(stderr, "start: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
                _exit(7);
            }
        }
        for (uint32_t i = 0; i < IN_FLIGHT; i++) {
            call_rec *r = &me->rec[seq + i];
            int64_t sum = -1;
            r->status = calls_add_finish(c, calls[i], &sum);
            if (r->status == 0 && sum != (int64_t)k + seq + i) r->status = WRONG_ANSWER;
            r->t1 = test_now_ms();
            record_failure(me, seq + i, r->status);
        }
        seq += IN_FLIGHT;
        atomic_store(&me->n, (int32_t)seq);
        usleep(100); /* its log lasts for the whole test */
    }
    return seq;
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
    shmrpc_client_set_timeout(c, call_timeout_ms);
    client_log *me = &shared->clients[k];
    uint32_t seq = 0;
    if ((int)k == async_client) {
        seq = async_calls(c, k, me);
        shmrpc_client_free(c);
        return seq < MAX_CALLS ? 0 : 8;
    }
    for (; !atomic_load(&shared->stop) && seq < MAX_CALLS; seq++) {
        call_rec *r = &me->rec[seq];
        r->t0 = test_now_ms();
        r->status = one_call(c, k, seq);
        r->t1 = test_now_ms();
        record_failure(me, seq, r->status);
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
    call_timeout_ms = TIMEOUT_MS;
    async_client = -1;
    server_tcp = NULL;
    for (int i = 0; i < SERVERS; i++) {
        ports[i] = test_free_port();
        for (int j = 0; j < i; j++) /* distinct, as the kernel may hand a port out again */
            if (ports[j] == ports[i]) ports[i] = test_free_port(), j = -1;
    }
    snprintf(list, sizeof list, "tcp://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", ports[0], ports[1],
             ports[2]);
    return 0;
}

static void relay_stop(void);
static void remove_certificate(void);

static int teardown(void **state)
{
    (void)state;
    relay_stop();
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
            kill(-servers[i], SIGCONT); /* a test may have stopped it */
            kill(-servers[i], SIGKILL);
            if (!reap_group(servers[i], 5000)) fprintf(stderr, "group %d lives on\n", servers[i]);
            servers[i] = 0;
        }
        /* What a SIGKILLed server left (this test's kill, or the kills above). */
        char addr[64];
        snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", ports[i]);
        if (ports[i] > 0) test_tcp_stats_forget(addr);
    }
    remove_certificate();
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
    shmrpc_client_opts_init(&o);
    o.tcp.attempt_delay_ms = -1;
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

/* --- a stopped host (issue 33) --- */

/* Stops (SIGSTOP) every process of server i: its kernel still completes TCP handshakes and
 * takes bytes into the socket buffers, but nothing answers. The teardown resumes it. */
static void stop_host(int i)
{
    assert_int_equal(kill(-servers[i], SIGSTOP), 0);
}

static void resume_host(int i)
{
    assert_int_equal(kill(-servers[i], SIGCONT), 0);
}

/* The connections waiting in the accept queue of the server listening on port of
 * 127.0.0.1 (the rx_queue of its LISTEN socket in /proc/net/tcp): of a stopped server,
 * every connection its kernel took since, whether or not the client still holds it. -1
 * when it cannot be read. */
static int accept_queue(int port)
{
    FILE *f = fopen("/proc/self/net/tcp", "r");
    if (!f) return -1;
    char line[512];
    int count = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned lport, st, rxq;
        if (sscanf(line, " %*d: %*x:%x %*x:%*x %x %*x:%x", &lport, &st, &rxq) == 3 &&
            (int)lport == port && st == 0x0A /* LISTEN */)
            count = (int)rxq;
    }
    fclose(f);
    return count;
}

/* A new client's life, in a child process: it connects through the list with a connect
 * timeout and call deadline of SLOW_CONNECT_MS (what it would wait on a stopped first host
 * if the connect tried one endpoint after another), records how long its connect and first
 * call took, and makes NEW_CALLS adds, each recorded. Exit status: 0, 9 no connect. */
static int new_client_process(uint32_t k)
{
    alarm(60);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.timeout_ms = SLOW_CONNECT_MS;
    o.tcp.connect_timeout_ms = SLOW_CONNECT_MS;
    shmrpc_client *c;
    if (shmrpc_client_new(&c, &Calls_service_info, &o) != 0) return 9;
    client_log *me = &shared->clients[k];
    int64_t t0 = test_now_ms();
    int rc = shmrpc_client_connect(c, list);
    if (rc) {
        fprintf(stderr, "connect %s: %s: %s\n", list, shmrpc_strerror(rc), shmrpc_errmsg());
        shmrpc_client_free(c);
        return 9;
    }
    for (uint32_t seq = 0; seq < NEW_CALLS; seq++) {
        call_rec *r = &me->rec[seq];
        r->t0 = test_now_ms();
        int64_t sum = -1;
        r->status = calls_add(c, k, seq, &sum);
        if (r->status == 0 && sum != (int64_t)k + seq) r->status = WRONG_ANSWER;
        r->t1 = test_now_ms();
        if (seq == 0) atomic_store(&me->first_ms, r->t1 - t0);
        record_failure(me, seq, r->status);
        atomic_store(&me->n, (int32_t)seq + 1);
    }
    shmrpc_client_free(c);
    return 0;
}

/* The first of three hosts stopped: new clients (CLIENTS processes at once) connect and
 * make their first call without waiting on it (the attempt on the second host begins after
 * tcp.attempt_delay_ms, 250 ms), well within a bound far below the SLOW_CONNECT_MS they
 * would have waited before; every call succeeds, each ran exactly once, and none on the
 * stopped host. */
static void stopped_host_new_clients(void **state)
{
    (void)state;
    start_all();
    stop_host(0);
    for (int k = 0; k < CLIENTS; k++) {
        clients[k] = fork();
        assert_true(clients[k] >= 0);
        if (clients[k] == 0) _exit(new_client_process((uint32_t)k));
    }
    for (int k = 0; k < CLIENTS; k++) {
        int status = test_reap(clients[k], 40000);
        clients[k] = 0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("new client %d ended with status %d (%s)", k, status,
                     shared->clients[k].first_msg);
    }
    int64_t worst = 0;
    for (int k = 0; k < CLIENTS; k++) {
        const client_log *cl = &shared->clients[k];
        assert_int_equal(atomic_load(&cl->n), NEW_CALLS);
        if (atomic_load(&cl->failed)) fail_msg("client %d: %s", k, cl->first_msg);
        for (int i = 0; i < NEW_CALLS; i++) {
            uint32_t runs = atomic_load(&shared->runs[k][i]);
            if (runs != 1) fail_msg("client %d's call %d ran %u times", k, i, runs);
            if (atomic_load(&shared->by[k][i]) == servers[0])
                fail_msg("client %d's call %d ran on the stopped host", k, i);
        }
        int64_t ms = atomic_load(&cl->first_ms);
        print_message("    new client %d: connected and answered its first call in %lld ms\n", k,
                      (long long)ms);
        if (ms > worst) worst = ms;
    }
    /* The goal is 1.5 s; the bound allows a loaded 2-core machine, and is still far
     * below the SLOW_CONNECT_MS a connect waited on the stopped host. */
    if (worst > 8000) fail_msg("a new client took %lld ms to its first answer", (long long)worst);
    /* The stopped host was tried once by each connect, and at most probed once more by
     * each client during its calls: not dialed again and again by calls. */
    int queued = accept_queue(ports[0]);
    print_message("    connections the stopped host's kernel took: %d\n", queued);
    assert_true(queued >= CLIENTS && queued <= 2 * CLIENTS);
    resume_host(0);
    stop_servers();
}

/* Clients calling through the list (two one call at a time, one with IN_FLIGHT
 * asynchronous calls) when the first host is stopped for STALL_MS: each goes on calling;
 * the only calls that fail are those sent to the stopped host before it was known stopped
 * (SHMRPC_ETIMEDOUT at their deadlines: they may have run, and are never sent elsewhere),
 * at most one per blocking client and IN_FLIGHT for the other; the host is left out
 * meanwhile, and calls that start after SIGCONT run there again (it was probed and taken
 * back). No call runs twice; a success ran exactly once. The calls/s before and during the
 * stop are printed (the issue asks a running client to keep at least half: measured, not
 * asserted). */
static void stopped_host_running_clients(void **state)
{
    (void)state;
    call_timeout_ms = STALL_TIMEOUT_MS;
    async_client = CLIENTS - 1;
    start_all();
    start_clients();
    assert_true(all_called(4 * SLOW_EVERY, 10000));
    usleep(LOAD_MS * 1000);
    for (int k = 0; k < CLIENTS; k++)
        if (atomic_load(&shared->clients[k].failed))
            fail_msg("client %d failed before the stop: %s", k, shared->clients[k].first_msg);
    int32_t before[CLIENTS], at_stop[CLIENTS], at_steady[CLIENTS], at_cont[CLIENTS];
    for (int k = 0; k < CLIENTS; k++)
        before[k] = atomic_load(&shared->clients[k].n);
    int64_t t_before = test_now_ms();
    usleep(STALL_MS * 1000);
    int64_t t_stop = test_now_ms();
    for (int k = 0; k < CLIENTS; k++)
        at_stop[k] = atomic_load(&shared->clients[k].n);
    stop_host(0);
    /* They go on calling: within the deadline of the call caught on the stopped host and
     * the machine's slack, each makes many more calls. */
    int64_t until = test_now_ms() + 20000;
    for (int k = 0; k < CLIENTS; k++)
        while (atomic_load(&shared->clients[k].n) < at_stop[k] + 200)
            if (test_now_ms() > until)
                fail_msg("client %d stopped calling with the host", k);
            else
                usleep(1000);
    /* From a deadline after the stop on, no call waits on it any more. */
    int64_t left = STALL_TIMEOUT_MS + 500 - (test_now_ms() - t_stop);
    if (left > 0) usleep((useconds_t)left * 1000);
    int64_t t_steady = test_now_ms();
    for (int k = 0; k < CLIENTS; k++)
        at_steady[k] = atomic_load(&shared->clients[k].n);
    left = STALL_MS - (test_now_ms() - t_stop);
    if (left > 0) usleep((useconds_t)left * 1000);
    int64_t t_cont = test_now_ms();
    for (int k = 0; k < CLIENTS; k++)
        at_cont[k] = atomic_load(&shared->clients[k].n);
    resume_host(0);
    /* Taken back: a call that started after SIGCONT runs on it (bounded by the longest
     * backoff, 16 probe intervals with jitter, a probe's connect timeout and slack). */
    int64_t back = -1;
    until = t_cont + 20000;
    while (back < 0 && test_now_ms() < until) {
        for (int k = 0; k < CLIENTS && back < 0; k++) {
            int32_t n = atomic_load(&shared->clients[k].n);
            for (int32_t i = at_cont[k]; i < n && back < 0; i++)
                if (shared->clients[k].rec[i].t0 > t_cont &&
                    atomic_load(&shared->by[k][i]) == servers[0])
                    back = shared->clients[k].rec[i].t1 - t_cont;
        }
        usleep(2000);
    }
    if (back < 0) fail_msg("no call that started after SIGCONT ran on the host in 20 s");
    stop_clients();
    stop_servers();
    int64_t timed_out[CLIENTS] = {0};
    tally t = count_calls();
    print_tally("stop of one of three", &t);
    for (int k = 0; k < CLIENTS; k++) {
        const client_log *cl = &shared->clients[k];
        int32_t n = atomic_load(&cl->n);
        for (int32_t i = 0; i < n; i++) {
            int32_t st = cl->rec[i].status;
            if (st == 0) continue;
            if (st != SHMRPC_ETIMEDOUT) fail_msg("client %d: %s", k, cl->first_msg);
            if (atomic_load(&shared->runs[k][i]) > 1) fail_msg("client %d call %d ran twice", k, i);
            timed_out[k]++;
        }
        double rate_before = (at_stop[k] - before[k]) * 1000.0 / (double)(t_stop - t_before);
        double rate_during = (at_cont[k] - at_stop[k]) * 1000.0 / (double)(t_cont - t_stop);
        double rate_steady = (at_cont[k] - at_steady[k]) * 1000.0 / (double)(t_cont - t_steady);
        print_message("    client %d%s: %.0f calls/s before the stop; while stopped %.0f (%.0f%%), "
                      "%.0f (%.0f%%) after the first deadline; %lld timed out on the stopped "
                      "host%s%s\n",
                      k, k == async_client ? " (async)" : "", rate_before, rate_during,
                      rate_before > 0 ? 100.0 * rate_during / rate_before : 0.0, rate_steady,
                      rate_before > 0 ? 100.0 * rate_steady / rate_before : 0.0,
                      (long long)timed_out[k], cl->first_msg[0] ? ": " : "", cl->first_msg);
    }
    print_message("    the host ran calls again %lld ms after SIGCONT\n", (long long)back);
    assert_int_equal(t.twice, 0);
    assert_int_equal(t.ok_wrong, 0);
    for (int k = 0; k < CLIENTS; k++)
        if (timed_out[k] > (k == async_client ? IN_FLIGHT : 1))
            fail_msg("client %d: %lld calls timed out: the stopped host was not left out", k,
                     (long long)timed_out[k]);
}

/* The sockets this process holds connected to port (of 127.0.0.1): getpeername of each of
 * its descriptors (a connect to loopback completes at once, even to a stopped server, whose
 * kernel takes the connection). -1 when they cannot be listed. */
static int sockets_to(int port)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int count = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end || fd == dirfd(d)) continue;
        struct sockaddr_in sa;
        socklen_t len = sizeof sa;
        if (getpeername((int)fd, (struct sockaddr *)&sa, &len) == 0 && sa.sin_family == AF_INET &&
            ntohs(sa.sin_port) == port)
            count++;
    }
    closedir(d);
    return count;
}

typedef struct connecting {
    shmrpc_client *c;
    _Atomic int done;
    int rc;
    char msg[300];
} connecting;

static void *connect_thread(void *arg)
{
    connecting *t = arg;
    t->rc = shmrpc_client_connect(t->c, list);
    snprintf(t->msg, sizeof t->msg, "%s", shmrpc_errmsg());
    atomic_store(&t->done, 1);
    return NULL;
}

/* The order and the stagger, by the sockets the client holds to each host (not by
 * timing): with the first host stopped and an attempt delay of 6 s, a connect's first
 * attempt goes to the first host, and for a second after it was seen (far less than the
 * delay; a sample taken too late on a loaded machine fails as such) no other host has a
 * connection; then the second host's attempt begins and ends
 * its handshake first, the first host's attempt is let go, and the third host is never
 * tried. The calls that follow go to the hosts that answer, never to the stopped one
 * (left out; a probe of it may hold one socket). */
static void stagger_by_sockets(void **state)
{
    (void)state;
    enum { DELAY_MS = 6000 };
    start_all();
    stop_host(0);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.timeout_ms = 30000;
    o.tcp.connect_timeout_ms = 30000;
    o.tcp.attempt_delay_ms = DELAY_MS;
    connecting t = {0};
    assert_int_equal(shmrpc_client_new(&t.c, &Calls_service_info, &o), 0);
    assert_true(sockets_to(ports[0]) == 0 && sockets_to(ports[1]) == 0 &&
                sockets_to(ports[2]) == 0);
    pthread_t th;
    int64_t t0 = test_now_ms(), at[3];
    assert_int_equal(pthread_create(&th, NULL, connect_thread, &t), 0);
    int64_t until = test_now_ms() + 5000;
    while (sockets_to(ports[0]) < 1 && test_now_ms() < until)
        usleep(1000);
    int first[SERVERS], later[SERVERS], after[SERVERS];
    for (int i = 0; i < SERVERS; i++)
        first[i] = sockets_to(ports[i]);
    at[0] = test_now_ms() - t0;
    usleep(1000 * 1000);
    for (int i = 0; i < SERVERS; i++)
        later[i] = sockets_to(ports[i]);
    at[1] = test_now_ms() - t0;
    until = test_now_ms() + 20000; /* the delay, and slack; 30 s if the attempts ran in turn */
    while (!atomic_load(&t.done) && test_now_ms() < until)
        usleep(1000);
    bool done = atomic_load(&t.done);
    if (done) pthread_join(th, NULL);
    for (int i = 0; i < SERVERS; i++)
        after[i] = sockets_to(ports[i]);
    at[2] = test_now_ms() - t0;
    if (at[1] >= DELAY_MS) {
        resume_host(0);
        if (!done) pthread_join(th, NULL);
        fail_msg("the samples came %lld and %lld ms after the connect began, not within its "
                 "attempt delay (%d ms): the machine is too loaded to tell",
                 (long long)at[0], (long long)at[1], DELAY_MS);
    }
    print_message(
        "    sockets to hosts 1, 2, 3: %d %d %d at the first attempt (%lld ms), %d %d %d a "
        "second later (%lld ms), %d %d %d once connected (%lld ms)\n",
        first[0], first[1], first[2], (long long)at[0], later[0], later[1], later[2],
        (long long)at[1], after[0], after[1], after[2], (long long)at[2]);
    if (!done) {
        resume_host(0); /* it ends at its connect timeout now */
        pthread_join(th, NULL);
        fail_msg("the connect did not end within 20 s with an attempt delay of %d ms", DELAY_MS);
    }
    if (t.rc) fail_msg("connect: %s: %s", shmrpc_strerror(t.rc), t.msg);
    assert_int_equal(first[0], 1); /* the first host first, alone */
    assert_int_equal(first[1], 0);
    assert_int_equal(first[2], 0);
    assert_int_equal(later[0], 1); /* still alone a second later */
    assert_int_equal(later[1], 0);
    assert_int_equal(later[2], 0);
    assert_int_equal(after[0], 0); /* let go once the second answered */
    assert_int_equal(after[1], 1);
    assert_int_equal(after[2], 0);               /* never needed */
    assert_int_equal(accept_queue(ports[0]), 1); /* the stopped host's kernel took the one */
    shmrpc_client_set_timeout(t.c, 5000);
    int on[SERVERS] = {0};
    for (int i = 0; i < 30; i++) {
        int32_t pid = 0;
        int rc = calls_nap(t.c, 0, &pid);
        if (rc) fail_msg("call %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
        for (int s = 0; s < SERVERS; s++)
            on[s] += pid == servers[s];
        if (sockets_to(ports[0]) > 1) fail_msg("more than a probe's socket to the stopped host");
    }
    int queued = accept_queue(ports[0]);
    print_message(
        "    30 calls after it: %d %d %d on hosts 1, 2, 3; the stopped host's kernel took %d "
        "connections in all\n",
        on[0], on[1], on[2], queued);
    assert_true(queued >= 1 && queued <= 2); /* the connect's attempt, and a probe at most */
    assert_int_equal(on[0], 0);
    assert_int_equal(on[1] + on[2], 30);
    assert_true(on[2] > 0); /* the third host joins when a call first goes there */
    shmrpc_client_free(t.c);
    resume_host(0);
    stop_servers();
}

/* A relay from a port of 127.0.0.1 to server i that holds each chunk RELAY_MS each way
 * before passing it on: a host a round trip away, where a handshake takes several steps.
 * Its threads end with their connections, and the acceptor when relay_stop shuts it. */
enum { RELAY_MS = 20 };

typedef struct relay_pipe {
    int from, to;
} relay_pipe;

static void *relay_copy(void *arg)
{
    relay_pipe *rp = arg;
    char buf[16384];
    for (ssize_t n; (n = recv(rp->from, buf, sizeof buf, 0)) > 0;) {
        nap_ms(RELAY_MS);
        for (ssize_t at = 0, k; at < n; at += k)
            if ((k = send(rp->to, buf + at, (size_t)(n - at), MSG_NOSIGNAL)) <= 0) goto out;
    }
out:
    shutdown(rp->to, SHUT_WR);
    shutdown(rp->from, SHUT_RD);
    free(rp);
    return NULL;
}

static int relay_fd = -1, relay_to;

static void *relay_accept(void *arg)
{
    (void)arg;
    for (int c; (c = accept(relay_fd, NULL, NULL)) >= 0;) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)relay_to)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
            close(c);
            if (s >= 0) close(s);
            continue;
        }
        relay_pipe *up = malloc(sizeof *up), *down = malloc(sizeof *down);
        pthread_t t;
        if (!up || !down) abort();
        *up = (relay_pipe){c, s};
        *down = (relay_pipe){s, c};
        if (pthread_create(&t, NULL, relay_copy, up) || pthread_detach(t) ||
            pthread_create(&t, NULL, relay_copy, down) || pthread_detach(t))
            abort();
    }
    return NULL;
}

/* Starts the relay to port to: its own port. */
static int relay_start(int to)
{
    relay_to = to;
    relay_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_true(relay_fd >= 0);
    assert_int_equal(bind(relay_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(relay_fd, 16), 0);
    assert_int_equal(getsockname(relay_fd, (struct sockaddr *)&sa, &len), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, relay_accept, NULL), 0);
    assert_int_equal(pthread_detach(t), 0);
    return ntohs(sa.sin_port);
}

static void relay_stop(void)
{
    if (relay_fd >= 0) shutdown(relay_fd, SHUT_RDWR); /* the acceptor's accept fails */
}

static char cert_dir[] = "/tmp/hosts_test_XXXXXX"; /* made by rare_caller, for TLS */
static bool cert_made;

/* A self-signed certificate for 127.0.0.1 (ECDSA P-256, two days) in cert_dir, by the
 * openssl program: cert.pem, cert.key. */
static void make_certificate(void)
{
    assert_non_null(mkdtemp(cert_dir));
    cert_made = true;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && timeout 60 openssl req -x509 -newkey ec -pkeyopt "
             "ec_paramgen_curve:P-256 -nodes -keyout cert.key -out cert.pem -days 2 -subj "
             "/CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
             cert_dir);
    if (system(cmd) != 0) fail_msg("the openssl program could not make a certificate");
}

static void remove_certificate(void)
{
    if (!cert_made) return;
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cert_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", cert_dir);
    cert_made = false;
}

/* A client that calls less often than the servers' handshake timeout, through a list whose
 * first host (20 ms away, through the relay) was down when the client connected and comes
 * up later: the host is taken back. Its probe is begun by one call and moved on by the
 * next, by which time a server that waits for the client's next step (its AUTH with a
 * shared secret, its second flight with TLS) has given up on it: a probe that the
 * server's process answered counts as the host answering, and the next call that goes
 * there makes its connection. */
static void rare_caller(bool tls)
{
    static const char secret[] = "hosts_test: a shared secret, not a secret";
    static shmrpc_tcp_opts tcp;
    static char cert[64], key[64];
    tcp = (shmrpc_tcp_opts){.handshake_timeout_ms = 200};
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.probe_interval_ms = 50;
    if (tls) {
        make_certificate();
        snprintf(cert, sizeof cert, "%s/cert.pem", cert_dir);
        snprintf(key, sizeof key, "%s/cert.key", cert_dir);
        tcp.tls_cert = cert;
        tcp.tls_key = key;
        o.tcp.tls = SHMRPC_TLS_ON; /* loopback without a CA: not checked */
    } else {
        tcp.secret = o.tcp.secret = secret;
        tcp.secret_len = o.tcp.secret_len = sizeof secret - 1;
    }
    server_tcp = &tcp;
    start_server(1);
    await_server(1);
    int far = relay_start(ports[0]); /* nobody serves there yet */
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, &o), 0);
    char two[96];
    snprintf(two, sizeof two, "tcp://127.0.0.1:%d,127.0.0.1:%d", far, ports[1]);
    int rc = shmrpc_client_connect(c, two);
    if (rc) fail_msg("connect %s: %s: %s", two, shmrpc_strerror(rc), shmrpc_errmsg());
    start_server(0);
    await_server(0);
    int on[2] = {0, 0};
    for (int i = 0; i < 12; i++) {
        usleep(600 * 1000); /* calls further apart than the handshake timeout */
        int32_t pid = 0;
        rc = calls_nap(c, 0, &pid);
        if (rc) fail_msg("call %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
        on[pid == servers[1]]++;
    }
    print_message("    12 calls 600 ms apart%s: %d on the far host that came up, %d on the other\n",
                  tls ? " over TLS" : " with a secret", on[0], on[1]);
    shmrpc_client_free(c);
    relay_stop();
    assert_true(on[0] >= 3);
    stop_servers();
}

static void rare_caller_with_a_secret(void **state)
{
    (void)state;
    rare_caller(false);
}

static void rare_caller_over_tls(void **state)
{
    (void)state;
    rare_caller(true);
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
        cmocka_unit_test_setup_teardown(stopped_host_new_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(stopped_host_running_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(stagger_by_sockets, setup, teardown),
        cmocka_unit_test_setup_teardown(rare_caller_with_a_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(rare_caller_over_tls, setup, teardown),
    };
    /* TCP_TEST_ONLY=GLOB runs only the matching tests (the mutant kit narrows by it). */
    if (getenv("TCP_TEST_ONLY")) cmocka_set_test_filter(getenv("TCP_TEST_ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
