/* SPDX-License-Identifier: MIT */
/* The shm:// transport under failing system calls (common/faults.h), each N in its own
 * child: a client's new, connect and calls (to a server in another process), a server's
 * listen, and a server's serve (its rendezvous, workers and channels, driven by a client
 * in another process) with their 1st, 2nd, ... call of malloc, mmap, socket, connect,
 * sendmsg, fork... failing. A failure returns the status of the call that failed
 * (SHMRPC_ENOMEM, SHMRPC_ESYS with its errno) or the transport's own for a peer it could
 * not reach (SHMRPC_EUNAVAIL, SHMRPC_ECLOSED), with a message; the client or server is
 * still freeable and leaves no descriptor open and no segment or name behind; a server
 * that went on serving after a fault still answers right; and the same operations
 * succeed once nothing fails. Leaks are LeakSanitizer's (the ASan build) at each child's
 * exit. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "faults.h"
#include "procs.h"

#define RUNS_MAX 400 /* far more calls than a connect or a serve makes */
#define BIG 100000   /* an echo this long grows the channel on both sides */

static char addr[64];

/* A transport's own status for a peer it could not reach or lost. */
static bool peer_status(int rc)
{
    return (rc == SHMRPC_EUNAVAIL || rc == SHMRPC_ECLOSED) && *shmrpc_errmsg();
}

/* --- the client ----------------------------------------------------------------------- */

struct ccase {
    shmrpc_client *c;
    bool connected; /* run's connect succeeded: a call that failed after it */
};

/* One add and one echo long enough to grow the channel: their answers right. */
static int calls(shmrpc_client *c)
{
    int64_t sum = 0;
    int rc = calls_add(c, 2, 3, &sum);
    if (rc == 0 && sum != 5) return faults_say("add: 2 + 3 = %lld", (long long)sum), SHMRPC_EPROTO;
    if (rc != 0) return rc;
    static unsigned char big[BIG];
    memset(big, 'e', sizeof big);
    shmrpc_bytes in = {big, sizeof big}, out = {0};
    rc = calls_echo(c, in, &out);
    if (rc == 0 && (out.len != sizeof big || memcmp(out.ptr, big, sizeof big) != 0))
        return faults_say("echo: %zu bytes back, not the %d sent", out.len, BIG), SHMRPC_EPROTO;
    return rc;
}

static int run_client(void *arg)
{
    struct ccase *k = arg;
    int rc = shmrpc_client_new(&k->c, &Calls_service_info, NULL);
    if (rc == 0) rc = shmrpc_client_connect(k->c, addr);
    k->connected = rc == 0;
    if (rc == 0) rc = calls(k->c);
    return rc;
}

/* The client failed with the fault's status or the transport's; connected, it calls
 * again now; freed, a new one connects and calls. */
static int check_client(void *arg, int rc)
{
    struct ccase *k = arg;
    if (rc != 0 && !faults_status(rc) && !peer_status(rc)) {
        shmrpc_client_free(k->c);
        return faults_say("status %s (%d): %s", shmrpc_strerror(rc), rc, shmrpc_errmsg());
    }
    if (rc != 0 && k->connected && (rc = calls(k->c)) != 0) {
        shmrpc_client_free(k->c);
        return faults_say("the same client after: status %d: %s", rc, shmrpc_errmsg());
    }
    shmrpc_client_free(k->c);
    k->c = NULL;
    if (shmrpc_client_new(&k->c, &Calls_service_info, NULL) != 0) return faults_say("new");
    rc = shmrpc_client_connect(k->c, addr);
    if (rc == 0) rc = calls(k->c);
    shmrpc_client_free(k->c);
    k->c = NULL;
    return rc != 0 ? faults_say("the next client: status %d: %s", rc, shmrpc_errmsg()) : 0;
}

static void client(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://sflt-%d-client", (int)getpid());
    test_server ts = {&Calls_service, &calls_test_handlers, addr, 1, 0, NULL, NULL, NULL};
    pid_t server = test_start_server(&ts);
    assert_true(server > 0);
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &rc);
    assert_non_null(c);
    shmrpc_client_free(c);
    int base = test_shm_segments(addr);
    struct ccase k = {0};
    faults_case fc = {.name = "client", .run = run_client, .check = check_client, .arg = &k};
    int fired = faults_sweep(&fc, RUNS_MAX);
    print_message("# client: %d faults\n", fired);
    /* The server freed every slot the clients that failed took: the files it holds are
     * those it held before (a channel per client it serves), within a bound. */
    int now = test_shm_segments(addr);
    for (int i = 0; now != base && i < 500; i++) {
        usleep(10000);
        now = test_shm_segments(addr);
    }
    assert_true(test_stop_server(server));
    assert_int_equal(test_shm_segments(addr), 0);
    assert_int_equal(now, base);
    assert_true(fired >= 10);
}

/* A signal that interrupts a blocking system call of a connect or a call (EINTR) is no
 * failure: the system call is made again. */
static int check_eintr(void *arg, int rc)
{
    struct ccase *k = arg;
    shmrpc_client_free(k->c);
    k->c = NULL;
    if (rc != 0)
        return faults_say("%s failed with EINTR: status %s (%d): %s", faults_hit_name(),
                          shmrpc_strerror(rc), rc, shmrpc_errmsg());
    return 0;
}

static void client_interrupted(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://sflt-%d-eintr", (int)getpid());
    test_server ts = {&Calls_service, &calls_test_handlers, addr, 1, 0, NULL, NULL, NULL};
    pid_t server = test_start_server(&ts);
    assert_true(server > 0);
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &rc);
    assert_non_null(c);
    shmrpc_client_free(c);
    struct ccase k = {0};
    faults_case fc = {.name = "client-eintr",
                      .which = "connect:EINTR,send:EINTR,sendmsg:EINTR,recv:EINTR,"
                               "recvmsg:EINTR,poll:EINTR,epoll_wait:EINTR,read:EINTR,"
                               "write:EINTR",
                      .run = run_client,
                      .check = check_eintr,
                      .arg = &k};
    int fired = faults_sweep(&fc, RUNS_MAX);
    print_message("# client-eintr: %d faults\n", fired);
    assert_true(test_stop_server(server));
    assert_int_equal(test_shm_segments(addr), 0);
    assert_true(fired >= 3);
}

/* --- the server's listen ---------------------------------------------------------------- */

struct scase {
    shmrpc_server *s;
    pid_t driver;
};

static int run_listen(void *arg)
{
    struct scase *v = arg;
    int rc = shmrpc_server_new(&v->s, NULL);
    if (rc == 0) rc = shmrpc_server_register(v->s, &Calls_service, &calls_test_handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(v->s, addr);
    return rc;
}

/* Freed, the server left nothing under its address, and listens now. */
static int check_listen(void *arg, int rc)
{
    struct scase *v = arg;
    if (rc != 0 && !faults_status(rc)) {
        shmrpc_server_free(v->s);
        return 1;
    }
    shmrpc_server_free(v->s);
    v->s = NULL;
    /* Documented (shm_rdv.c, take_lock): a lock that could not be taken for another reason
     * than another server's leaves its file, which may be another's just made. */
    int left = test_shm_segments(addr), lock = rc != 0 && !strcmp(faults_hit_name(), "flock");
    if (left != lock) return faults_say("%d files of %s left", left, addr);
    rc = run_listen(v);
    shmrpc_server_free(v->s);
    v->s = NULL;
    if (rc != 0) return faults_say("listen: status %d: %s", rc, shmrpc_errmsg());
    left = test_shm_segments(addr);
    return left != 0 ? faults_say("%d files of %s left after a listen", left, addr) : 0;
}

static void listen_(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://sflt-%d-listen", (int)getpid());
    struct scase v = {0};
    faults_case fc = {.name = "listen", .run = run_listen, .check = check_listen, .arg = &v};
    int fired = faults_sweep(&fc, RUNS_MAX);
    print_message("# listen: %d faults\n", fired);
    assert_int_equal(test_shm_segments(addr), 0);
    assert_true(fired >= 5);
}

/* --- the server's serve ----------------------------------------------------------------- */

static shmrpc_server *serving;

static void on_usr2(int sig)
{
    (void)sig;
    shmrpc_server_stop(serving);
}

/* In a process of its own: a client that calls until one connection's calls all succeed
 * (bounded), then stops the server. 0 when they did. */
static int drive(pid_t server)
{
    int rc = -1;
    for (int i = 0; rc != 0 && i < 1000; i++) {
        shmrpc_client *c;
        if (shmrpc_client_new(&c, &Calls_service_info, NULL) != 0) break;
        rc = shmrpc_client_connect(c, addr);
        if (rc == 0) rc = calls(c);
        shmrpc_client_free(c);
        if (rc != 0) usleep(10000);
    }
    kill(server, SIGUSR2);
    return rc == 0 ? 0 : 1;
}

/* The server listening, and its driver started. */
static int setup_serve(void *arg)
{
    struct scase *v = arg;
    if (run_listen(v) != 0) return faults_say("listen: %s", shmrpc_errmsg());
    serving = v->s;
    struct sigaction sa = {.sa_handler = on_usr2};
    sigaction(SIGUSR2, &sa, NULL);
    pid_t me = getpid();
    v->driver = fork();
    if (v->driver < 0) return faults_say("fork");
    if (v->driver == 0) {
        alarm(20);
        _exit(drive(me));
    }
    return 0;
}

static int run_serve(void *arg)
{
    struct scase *v = arg;
    return shmrpc_server_serve(v->s, 1);
}

/* The driver's status: 0 when its calls succeeded (bounded: its alarm). */
static int driver_ended(struct scase *v)
{
    int st;
    if (waitpid(v->driver, &st, 0) != v->driver) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A serve that went on after the fault answered its client right and stopped cleanly; one
 * that failed said why, and, freed, left nothing, and serves again. */
static int check_serve(void *arg, int rc)
{
    struct scase *v = arg;
    int driven;
    if (rc != 0) {
        kill(v->driver, SIGKILL);
        driver_ended(v);
        if (!faults_status(rc)) {
            shmrpc_server_free(v->s);
            return 1;
        }
        driven = 0;
    } else {
        driven = driver_ended(v);
    }
    shmrpc_server_free(v->s);
    v->s = NULL;
    if (driven != 0) return faults_say("served on, and the client's calls failed (%d)", driven);
    int left = test_shm_segments(addr);
    if (left != 0) return faults_say("%d files of %s left", left, addr);
    if (rc == 0) return 0; /* it served, despite the fault: that was the serve after it */
    if (setup_serve(v) != 0) return 1;
    rc = run_serve(v);
    driven = driver_ended(v);
    shmrpc_server_free(v->s);
    v->s = NULL;
    if (rc != 0 || driven != 0)
        return faults_say("the next serve: status %d, its client %d", rc, driven);
    left = test_shm_segments(addr);
    return left != 0 ? faults_say("%d files of %s left after a serve", left, addr) : 0;
}

static void sweep_serve(const char *what, bool workers, int min_fired)
{
    snprintf(addr, sizeof addr, "shm://sflt-%d-%s", (int)getpid(), what);
    struct scase v = {0};
    faults_case fc = {.name = what,
                      .setup = setup_serve,
                      .run = run_serve,
                      .check = check_serve,
                      .arg = &v,
                      .inherit = workers};
    int fired = faults_sweep(&fc, RUNS_MAX);
    print_message("# %s: %d faults\n", what, fired);
    assert_int_equal(test_shm_segments(addr), 0);
    assert_true(fired >= min_fired);
}

static void serve(void **state)
{
    (void)state;
    sweep_serve("serve", false, 5);
}

/* The count goes on in the workers the serve forks: one call of the manager or of a
 * worker fails (a worker that cannot map its client's channel, or grow it). */
static void serve_with_workers(void **state)
{
    (void)state;
    sweep_serve("serve-workers", true, 10);
}

int main(void)
{
    if (calls_shared_map() != 0) return 1; /* the handlers count there */
    if (getenv("SHM_TEST_ONLY")) cmocka_set_test_filter(getenv("SHM_TEST_ONLY"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(client), cmocka_unit_test(client_interrupted), cmocka_unit_test(listen_),
        cmocka_unit_test(serve),  cmocka_unit_test(serve_with_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
