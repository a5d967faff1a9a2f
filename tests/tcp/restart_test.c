/* SPDX-License-Identifier: MIT */
/* A server killed with SIGKILL under load and restarted on the same address, over tcp://
 * and shm://: the calls in flight fail with "unavailable" (or "peer died", see
 * outage_status), every client gets through again after the restart, no call runs twice
 * and no failed call runs later, and nothing of the dead server is left behind. Every wait
 * is bounded (alarm() in each child, deadlines in the parent), and the teardown kills and
 * reaps whatever a failed test left running. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
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
    CLIENTS = 3,
    WORKERS = 2,
    MAX_CALLS = 1 << 16, /* per client; a client runs a few thousand */
    SLOW_EVERY = 8,      /* every 8th call is the slow one... */
    SLOW_MS = 3,         /* ...which naps this long in its handler */
    TIMEOUT_MS = 2000,   /* each call's deadline */
    LOAD_MS = 300,       /* of calls before the kill and after the recovery */
    RECOVER_MS = 5000,   /* every client gets through this soon after the restart */
    WRONG_ANSWER = 1,    /* a call's recorded status when its result was not the expected */
};

/* One call as its client saw it. */
typedef struct call_rec {
    int64_t t0, t1; /* test_now_ms() before and after it */
    int32_t status; /* its status, or WRONG_ANSWER */
} call_rec;

/* What one client process reports: it writes, the test reads. */
typedef struct client_log {
    _Atomic int32_t n;       /* rec[0..n-1] are complete */
    _Atomic int32_t failed;  /* how many of them failed */
    _Atomic int64_t last_ok; /* t1 of the latest call that succeeded */
    char first_msg[200];     /* shmrpc_errmsg() of its first failed call */
    char odd_msg[200];       /* ...and of its first one that did not fail with EUNAVAIL */
    call_rec rec[MAX_CALLS];
} client_log;

/* Shared by the test, its clients and every server's workers: mapped MAP_SHARED before
 * any fork. A call is named by its client and its sequence number there. */
typedef struct restart_shared {
    _Atomic int stop; /* the test: clients stop calling */
    _Atomic int hold; /* the test: a slow call waits in its handler while this is set */
    _Atomic int held; /* handlers waiting so (one killed while waiting stays counted) */
    _Atomic uint32_t runs[CLIENTS][MAX_CALLS]; /* handlers: how often each call ran */
    _Atomic int32_t by[CLIENTS][MAX_CALLS];    /* handlers: the server that ran it */
    client_log clients[CLIENTS];
} restart_shared;

static restart_shared *shared;
static char addr[64];
static int addr_n;

/* The processes of the current test, 0 once reaped (a pid may be reused then); the
 * teardown ends what is left. */
static pid_t servers[2]; /* the one killed, and the one that replaces it: process groups */
static pid_t clients[CLIENTS];

/* --- the server, in a child process ---
 * The handlers are this test's own rather than common/Calls_handlers.c's: every call
 * carries its client and sequence number, so that each execution can be counted. */

static pid_t serving; /* in a server's processes: the manager's pid, which names the server */

static void nap_ms(uint32_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Call seq of client ran here: counted, and signed with this server. */
static void ran(int64_t client, int64_t seq)
{
    if (client < 0 || client >= CLIENTS || seq < 0 || seq >= MAX_CALLS) return;
    atomic_fetch_add(&shared->runs[client][seq], 1);
    atomic_store(&shared->by[client][seq], serving);
}

/* The fast call: add(client, seq). */
static int h_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    (void)ctx;
    ran(a, b);
    *out = a + b;
    return 0;
}

/* The slow call: an echo of its name and a nap, so that it can say who called. */
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
    if (atomic_load(&shared->hold)) { /* the test kills the server while we are here */
        atomic_fetch_add(&shared->held, 1);
        for (int i = 0; i < 5000 && atomic_load(&shared->hold); i++)
            nap_ms(1);
        atomic_fetch_sub(&shared->held, 1);
    }
    *out = data;
    return 0;
}

static int h_nap(shmrpc_ctx *ctx, uint32_t ms, int32_t *out)
{
    (void)ctx;
    nap_ms(ms);
    *out = getpid();
    return 0;
}

static const Calls_handlers handlers = {.echo = h_echo, .add = h_add, .nap = h_nap};

/* In the server's child: a process group of its own, which its workers join, so that the
 * test can kill the whole server at once as an operator's kill -9 of a service would. */
static void prepare_server(void)
{
    setpgid(0, 0);
    serving = getpid();
}

static pid_t start_server(void)
{
    test_server ts = {&Calls_service, &handlers, addr, WORKERS, 0, prepare_server, NULL, NULL};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    setpgid(pid, pid); /* also here, so that the group exists when fork returns */
    assert_int_equal(getpgid(pid), pid);
    return pid;
}

/* Reaps the processes of group pgid for up to ms (this process is their subreaper, so a
 * dead manager's workers come here); true once none of them is left. */
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

/* --- the clients, in child processes --- */

/* A client connected to addr, retrying while the server starts (bounded); NULL when
 * that fails. Children use this one: cmocka's asserts belong to the parent. */
static shmrpc_client *try_connect(void)
{
    shmrpc_client *c;
    if (shmrpc_client_new(&c, &Calls_service_info, NULL) != 0) return NULL;
    int rc = shmrpc_client_connect(c, addr);
    for (int i = 0; rc == SHMRPC_EUNAVAIL && i < 500; i++) {
        usleep(10000);
        rc = shmrpc_client_connect(c, addr);
    }
    if (rc == 0) return c;
    fprintf(stderr, "connect %s: %s: %s\n", addr, shmrpc_strerror(rc), shmrpc_errmsg());
    shmrpc_client_free(c);
    return NULL;
}

static const char *status_name(int32_t status)
{
    return status == WRONG_ANSWER ? "a wrong answer" : shmrpc_strerror(status);
}

/* Call seq of client k: seven adds, then a slow echo. Its status, or WRONG_ANSWER. */
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

/* Calls until told to stop, recording each call; after a failure it pauses 2 ms, as a
 * caller that retries would. Its exit status: 0, or 8 when out of room, 9 no connect. */
static int client_process(uint32_t k)
{
    alarm(60);
    shmrpc_client *c = try_connect();
    if (c == NULL) return 9;
    shmrpc_client_set_timeout(c, TIMEOUT_MS);
    client_log *me = &shared->clients[k];
    uint32_t seq = 0;
    for (; !atomic_load(&shared->stop) && seq < MAX_CALLS; seq++) {
        call_rec *r = &me->rec[seq];
        r->t0 = test_now_ms();
        r->status = one_call(c, k, seq);
        r->t1 = test_now_ms();
        if (r->status == 0) atomic_store(&me->last_ok, r->t1);
        if (r->status != 0 && me->failed++ == 0)
            snprintf(me->first_msg, sizeof me->first_msg, "%s", shmrpc_errmsg());
        if (r->status != 0 && r->status != SHMRPC_EUNAVAIL && me->odd_msg[0] == '\0')
            snprintf(me->odd_msg, sizeof me->odd_msg, "call %u: %s: %s", seq,
                     status_name(r->status), shmrpc_errmsg());
        atomic_store(&me->n, (int32_t)seq + 1);
        if (r->status != 0) usleep(2000);
    }
    shmrpc_client_free(c);
    return seq < MAX_CALLS ? 0 : 8;
}

/* --- the test process --- */

/* Whether NAME is a file of the current shm:// address: its control segment, rendezvous
 * or lock, or a channel of server pid of (of any server when of is 0). */
static bool segment_of(const char *name, pid_t of)
{
    if (strncmp(addr, "shm://", 6) != 0) return false;
    char prefix[96];
    int n = snprintf(prefix, sizeof prefix, "shmrpc:%s", addr + 6);
    if (strncmp(name, prefix, (size_t)n) != 0 || (name[n] != '\0' && name[n] != ':')) return false;
    if (of == 0) return true;
    n = snprintf(prefix, sizeof prefix, ":%d:", (int)of);
    return strncmp(name + strlen("shmrpc:") + strlen(addr + 6), prefix, (size_t)n) == 0;
}

/* Files of the current address left in /dev/shm and the directory of names (of server pid
 * of, or of any). */
static int leftovers(pid_t of)
{
    char dirs[2][300] = {"/dev/shm", ""};
    test_names_path(dirs[1], sizeof dirs[1], ".");
    int count = 0;
    for (int i = 0; i < 2; i++) {
        DIR *d = opendir(dirs[i]);
        for (struct dirent *e; d && (e = readdir(d)) != NULL;)
            count += segment_of(e->d_name, of);
        if (d) closedir(d);
    }
    return count;
}

static void reset_shared(void)
{
    memset(shared, 0, sizeof *shared); /* nobody else runs now */
}

static int setup_tcp(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    reset_shared();
    return 0;
}

static int setup_shm(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://restart-%d-%d", (int)getpid(), addr_n++);
    reset_shared();
    return 0;
}

/* Ends every process the test left (after a failed assertion), and its segments. */
static int teardown(void **state)
{
    (void)state;
    atomic_store(&shared->stop, 1);
    atomic_store(&shared->hold, 0);
    for (int i = 0; i < CLIENTS; i++)
        if (clients[i] > 0) {
            kill(clients[i], SIGKILL);
            test_reap(clients[i], 5000);
            clients[i] = 0;
        }
    for (int i = 0; i < 2; i++)
        if (servers[i] > 0) {
            kill(-servers[i], SIGKILL);
            if (!reap_group(servers[i], 5000)) fprintf(stderr, "group %d lives on\n", servers[i]);
            servers[i] = 0;
        }
    DIR *d = opendir("/dev/shm");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        if (segment_of(e->d_name, 0)) {
            char name[300];
            snprintf(name, sizeof name, "/%s", e->d_name);
            shm_unlink(name);
        }
    if (d) closedir(d);
    return 0;
}

/* Waits up to ms until every client has made more than n calls; false on timeout. */
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

/* What the calls of all clients add up to. */
typedef struct tally {
    int64_t calls, ok, failed, runs; /* runs: executions, all servers */
    int in_flight;                   /* failed calls that had run: those the kill cut */
    int peer_died;                   /* of which failed with EPEERDIED */
    int64_t noticed_ms;              /* the longest from the kill to such a call's failure */
    int64_t back_ms;                 /* the longest from the restart to a client's success */
    char odd[300];                   /* the first failure with a status it should not have */
} tally;

/* The statuses a call may fail with while the server is down: EUNAVAIL, or ETIMEDOUT once
 * its deadline has really passed (docs/wire.md "The transport", docs/shm-transport.md).
 * Over shm:// a call that a worker had taken may also fail with EPEERDIED, "the worker died
 * during the call": the client checks its worker before the manager (shm_client.c, client_check),
 * and even the other way round a group's kill reaches its processes one at a time. Over
 * tcp://, EPEERDIED is a call whose request was sent whole before the connection broke:
 * it may have run (the one the kill cut), or not (sent as the server died). */
static bool outage_status(const call_rec *r, uint32_t runs)
{
    bool shm = strncmp(addr, "shm://", 6) == 0;
    return r->status == SHMRPC_EUNAVAIL ||
           (r->status == SHMRPC_ETIMEDOUT && r->t1 - r->t0 >= TIMEOUT_MS) ||
           (r->status == SHMRPC_EPEERDIED && (shm ? runs == 1 : runs <= 1));
}

/* Checks the calls of client k: successes served by the old server, then one run of
 * failures that starts at the kill, then successes served by the new server; each call
 * ran at most once, a successful one exactly once, a failed one only if the kill cut it. */
static void check_client(int k, const pid_t by_server[2], int64_t killing, int64_t gone,
                         int64_t restarted, tally *t)
{
    const client_log *cl = &shared->clients[k];
    int32_t n = atomic_load(&cl->n);
    int phase = 0; /* 0 the old server, 1 the outage, 2 the new server */
    int64_t back = -1;
    for (int32_t i = 0; i < n; i++) {
        const call_rec *r = &cl->rec[i];
        uint32_t runs = atomic_load(&shared->runs[k][i]);
        pid_t by = atomic_load(&shared->by[k][i]);
        t->runs += runs;
        if (runs > 1) fail_msg("client %d call %d ran %u times", k, i, runs);
        if (r->t1 - r->t0 > TIMEOUT_MS + 1000)
            fail_msg("client %d call %d took %lld ms", k, i, (long long)(r->t1 - r->t0));
        if (r->status == 0) {
            t->ok++;
            if (runs != 1) fail_msg("client %d call %d succeeded but ran %u times", k, i, runs);
            if (phase == 1) {
                phase = 2;
                back = r->t1 - restarted;
            }
            if (by != by_server[phase == 0 ? 0 : 1])
                fail_msg("client %d call %d (phase %d) ran on server %d", k, i, phase, (int)by);
            continue;
        }
        t->failed++;
        if (phase == 2 || r->t1 < killing)
            fail_msg("client %d call %d failed %+lld ms from the kill: %s", k, i,
                     (long long)(r->t1 - killing), status_name(r->status));
        if (!outage_status(r, runs) && t->odd[0] == '\0') /* told after the other checks */
            snprintf(t->odd, sizeof t->odd, "client %d call %d, %+lld ms from the kill (%s)", k, i,
                     (long long)(r->t1 - killing), cl->odd_msg);
        bool first = phase == 0;
        phase = 1;
        if (runs == 0) continue;
        /* It ran: it must be the call that the kill cut, run by the old server, begun
         * before the last of its processes was gone. That is not when kill() returned: a
         * killed process dies when the kernel next runs it, and a worker of a manager killed
         * alone serves its connections until its PR_SET_PDEATHSIG lands (CI saw a call
         * begun 3 ms after kill() run on such a worker and fail with EPEERDIED). */
        if (!first || by != by_server[0] || r->t0 > gone)
            fail_msg("client %d failed call %d ran on server %d (started %+lld ms from the kill, "
                     "%+lld ms from its end)",
                     k, i, (int)by, (long long)(r->t0 - killing), (long long)(r->t0 - gone));
        t->in_flight++;
        t->peer_died += r->status == SHMRPC_EPEERDIED;
        if (r->t1 - killing > t->noticed_ms) t->noticed_ms = r->t1 - killing;
    }
    for (int32_t i = n; i < MAX_CALLS; i++) /* nothing ran that was not called */
        if (atomic_load(&shared->runs[k][i]) != 0) fail_msg("client %d call %d ran unasked", k, i);
    if (phase != 2) fail_msg("client %d: no failure, or no success after the restart", k);
    if (back > t->back_ms) t->back_ms = back;
    t->calls += n;
}

/* The server of addr, its group killed with SIGKILL (or its manager only) in the middle
 * of a slow call, while CLIENTS processes call it in a loop; then started again. */
static void restart_under_load(bool whole_group)
{
    bool shm = strncmp(addr, "shm://", 6) == 0;
    pid_t pids[2]; /* the servers, for check_client */
    pids[0] = servers[0] = start_server();
    for (int k = 0; k < CLIENTS; k++) {
        clients[k] = fork();
        assert_true(clients[k] >= 0);
        if (clients[k] == 0) _exit(client_process((uint32_t)k));
    }
    assert_true(all_called(4 * SLOW_EVERY, 10000)); /* all connected and served */
    usleep(LOAD_MS * 1000);
    for (int k = 0; k < CLIENTS; k++) /* all well before the kill */
        assert_int_equal(atomic_load(&shared->clients[k].failed), 0);

    /* Kill the server while a worker runs a slow call, so that a call is in flight. */
    atomic_store(&shared->hold, 1);
    int64_t until = test_now_ms() + 5000;
    while (atomic_load(&shared->held) == 0 && test_now_ms() < until)
        usleep(500);
    assert_true(atomic_load(&shared->held) > 0);
    int64_t killing = test_now_ms();
    assert_int_equal(kill(whole_group ? -servers[0] : servers[0], SIGKILL), 0);
    /* All of it is gone: with the manager only, the workers by their PR_SET_PDEATHSIG. */
    if (!reap_group(servers[0], 5000)) fail_msg("processes of the killed server live on");
    int64_t gone = test_now_ms();
    servers[0] = 0;
    atomic_store(&shared->hold, 0);
    atomic_store(&shared->held, 0);
    /* Every client sees the outage before the new server starts. */
    until = test_now_ms() + 5000;
    for (int k = 0; k < CLIENTS; k++)
        while (atomic_load(&shared->clients[k].failed) == 0 && test_now_ms() < until)
            usleep(1000);
    if (shm) assert_true(leftovers(0) >= 1); /* the dead server's control segment */

    int64_t restarted = test_now_ms();
    pids[1] = servers[1] = start_server();
    for (int k = 0; k < CLIENTS; k++) {
        const client_log *cl = &shared->clients[k];
        until = restarted + RECOVER_MS;
        while (atomic_load(&cl->last_ok) < restarted && test_now_ms() < until)
            usleep(1000);
        if (atomic_load(&cl->last_ok) < restarted)
            fail_msg("client %d: no success %d ms after the restart (%d failed calls; first: %s)",
                     k, RECOVER_MS, (int)atomic_load(&cl->failed), cl->first_msg);
    }
    if (shm) {
        assert_int_equal(leftovers(pids[0]), 0); /* nothing of the dead server... */
        /* ...only the new one's control segment, rendezvous and lock (channels are memfds) */
        assert_int_equal(leftovers(0), 3);
    }
    usleep(LOAD_MS * 1000);

    atomic_store(&shared->stop, 1);
    for (int k = 0; k < CLIENTS; k++) {
        int status = test_reap(clients[k], 10000);
        clients[k] = 0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("client %d ended with status %d", k, status);
    }
    assert_true(test_stop_server(servers[1]));
    assert_true(reap_group(servers[1], 5000));
    servers[1] = 0;
    assert_int_equal(leftovers(0), 0);

    tally t = {0};
    for (int k = 0; k < CLIENTS; k++)
        check_client(k, pids, killing, gone, restarted, &t);
    print_message("    %lld calls, %lld failed; %d cut in flight, %d of them with EPEERDIED (the "
                  "last told after %lld ms); all back %lld ms after the restart\n",
                  (long long)t.calls, (long long)t.failed, t.in_flight, t.peer_died,
                  (long long)t.noticed_ms, (long long)t.back_ms);
    /* Executions are the successes plus the calls that the kill cut after they began: the
     * held one at least; at most one per worker over shm://, and one per client over tcp://,
     * whose workers run the calls of all their connections at once. */
    assert_int_equal(t.runs, t.ok + t.in_flight);
    assert_true(t.in_flight >= 1 && t.in_flight <= (shm ? WORKERS : CLIENTS));
    assert_true(t.noticed_ms < 1000); /* the promise is 100 ms; bench/ times it */
    if (t.odd[0]) fail_msg("a call failed with a status it should not have: %s", t.odd);
}

/* kill -9 of the server's process group, as an operator or a service manager does it. */
static void tcp_group_killed(void **state)
{
    (void)state;
    restart_under_load(true);
}

/* kill -9 of the manager alone: its workers must not outlive it (PR_SET_PDEATHSIG). */
static void tcp_manager_killed(void **state)
{
    (void)state;
    restart_under_load(false);
}

static void shm_group_killed(void **state)
{
    (void)state;
    restart_under_load(true);
}

static void shm_manager_killed(void **state)
{
    (void)state;
    restart_under_load(false);
}

int main(void)
{
    shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) return 1;
    /* The workers of a killed manager become our children, so that we can reap them and
     * know that none is left. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(tcp_group_killed, setup_tcp, teardown),
        cmocka_unit_test_setup_teardown(tcp_manager_killed, setup_tcp, teardown),
        cmocka_unit_test_setup_teardown(shm_group_killed, setup_shm, teardown),
        cmocka_unit_test_setup_teardown(shm_manager_killed, setup_shm, teardown),
    };
    /* TCP_TEST_ONLY=GLOB runs only the matching tests (the mutant kit narrows by it). */
    if (getenv("TCP_TEST_ONLY")) cmocka_set_test_filter(getenv("TCP_TEST_ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
