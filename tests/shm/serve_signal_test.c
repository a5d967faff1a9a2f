/* SPDX-License-Identifier: MIT */
/* shmrpc_server_serve_until_signal with real processes: a server process with forked
 * workers stops cleanly (0) on SIGTERM and on SIGINT sent to its process group, the
 * dispositions it found are back once it returns (a handler installed before sees the next
 * signal), and a second call while one serves fails with SHMRPC_EBUSY and changes nothing.
 * Every wait is bounded (a watchdog alarm in each child); the teardown kills what is left
 * and removes its segments. */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "calls.h"
#include "calls_handlers.h"
#include "procs.h"

/* The child's exit codes: 0 when every check in it held, else the first that failed. */
enum {
    K_OK = 0,
    K_SETUP = 10,     /* new, register or listen failed */
    K_RC = 11,        /* serve_until_signal did not return 0 */
    K_TERM_BACK = 12, /* SIGTERM's previous disposition is not back */
    K_INT_BACK = 13,  /* SIGINT's previous disposition is not back */
    K_NO_PREV = 14,   /* the next signal did not reach the previous handler */
    K_NOT_BUSY = 15,  /* a second concurrent call did not fail with SHMRPC_EBUSY */
    K_BUSY_MSG = 16,  /* ... or without the message saying why */
    K_DISTURBED = 17, /* ... or it changed the first call's handlers */
    K_CALL = 18,      /* the server did not answer in the child */
    K_PREV_HIT = 19,  /* a signal meant for the server reached the previous handler */
};

static char addr[64], addr2[64];
static pid_t child;
static int up[2] = {-1, -1}; /* the child's milestones, a byte each, to the test */

static volatile sig_atomic_t prev_hits;
static void prev_handler(int sig)
{
    (void)sig;
    prev_hits++;
}

static void tell(char c)
{
    (void)!write(up[1], &c, 1);
}

/* The next milestone byte from the child, or 0 when none came within ms. */
static char heard(int ms)
{
    struct pollfd p = {.fd = up[0], .events = POLLIN};
    char c = 0;
    if (poll(&p, 1, ms) == 1 && read(up[0], &c, 1) == 1) return c;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (child > 0) {
        kill(-child, SIGKILL);
        test_reap(child, 5000);
    }
    child = 0;
    /* Also after a failed test that reaped its child itself: nothing of a passing one. */
    test_shm_forget(addr);
    for (int i = 0; i < 2; i++)
        if (up[i] >= 0) close(up[i]), up[i] = -1;
    return 0;
}

static shmrpc_server *new_listening(const char *a)
{
    shmrpc_server *s = NULL;
    int rc = shmrpc_server_new(&s, NULL);
    if (rc == 0) rc = shmrpc_server_register(s, &Calls_service, &calls_test_handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(s, a);
    if (rc == 0) return s;
    fprintf(stderr, "child: %s: %s\n", a, shmrpc_errmsg());
    shmrpc_server_free(s);
    _exit(K_SETUP);
}

/* Forks the child, in a process group of its own (a terminal's ^C reaches the group), with
 * a watchdog; it runs fn and exits with its code. */
static void start(int (*fn)(void))
{
    assert_int_equal(pipe(up), 0);
    pid_t parent = getpid();
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        setpgid(0, 0);
        alarm(30);
        close(up[0]);
        _exit(fn());
    }
    setpgid(child, child); /* either of the two calls makes the group before the signal */
    close(up[1]);
    up[1] = -1;
}

/* The child's exit code (128 + a signal that killed it), or -1 when it did not end. */
static int child_exit(void)
{
    int st = test_reap(child, 10000);
    if (st < 0) kill(-child, SIGKILL); /* test_reap killed the child: its workers too */
    child = 0;
    if (st < 0) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static bool answers(const char *a)
{
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, a, &rc);
    int64_t sum = 0;
    if (c) rc = calls_add(c, 2, 3, &sum);
    shmrpc_client_free(c);
    return c && rc == 0 && sum == 5;
}

static bool handled_by(int sig, void (*h)(int))
{
    struct sigaction cur;
    return sigaction(sig, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == h;
}

/* The signal that stops the server, and what the process had for each before. */
static int stop_sig;

static int serve_child(void)
{
    /* The previous handler on the signal that stops the server; the other one ignored
     * (as a background job of sh has SIGINT) or default. */
    struct sigaction prev = {.sa_handler = prev_handler};
    sigaction(stop_sig, &prev, NULL);
    signal(stop_sig == SIGTERM ? SIGINT : SIGTERM, stop_sig == SIGTERM ? SIG_IGN : SIG_DFL);
    shmrpc_server *s = new_listening(addr);
    int rc = shmrpc_server_serve_until_signal(s, 2);
    shmrpc_server_free(s);
    if (rc != 0) return K_RC;
    if (!handled_by(SIGTERM, stop_sig == SIGTERM ? prev_handler : SIG_DFL)) return K_TERM_BACK;
    if (!handled_by(SIGINT, stop_sig == SIGTERM ? SIG_IGN : prev_handler)) return K_INT_BACK;
    tell('R');
    while (prev_hits == 0) /* the watchdog bounds it */
        usleep(10 * 1000);
    return K_OK;
}

static void stops_and_restores(int sig)
{
    stop_sig = sig;
    snprintf(addr, sizeof addr, "shm://serve_sig%d_%d", sig, (int)getpid());
    start(serve_child);
    assert_true(answers(addr));
    /* To the group, as a terminal or a supervisor's stop would: the workers too. */
    assert_int_equal(kill(-child, sig), 0);
    char c = heard(10000);
    if (c != 'R') {
        int code = child_exit();
        fail_msg("the server did not return 0 with the dispositions back (child exit %d)", code);
    }
    assert_int_equal(kill(child, sig), 0); /* to the previous handler now */
    assert_int_equal(child_exit(), K_OK);
    assert_int_equal(test_shm_segments(addr), 0);
}

static void stops_on_sigterm(void **state)
{
    (void)state;
    stops_and_restores(SIGTERM);
}

static void stops_on_sigint(void **state)
{
    (void)state;
    stops_and_restores(SIGINT);
}

/* The server a thread of the child serves until a signal, and what that returned. */
static shmrpc_server *serving;
static int serving_workers;
static _Atomic int serving_rc = 1;
static void *serve_thread(void *arg)
{
    (void)arg;
    atomic_store(&serving_rc, shmrpc_server_serve_until_signal(serving, serving_workers));
    return NULL;
}

static int busy_child(void)
{
    struct sigaction prev = {.sa_handler = prev_handler};
    sigaction(SIGTERM, &prev, NULL);
    shmrpc_server *first = new_listening(addr), *second = new_listening(addr2);
    serving = first;
    serving_workers = 1;
    pthread_t t;
    if (pthread_create(&t, NULL, serve_thread, NULL) != 0) return K_SETUP;
    /* The first serves once it answers: it took the signals before it served. */
    if (!answers(addr)) return K_CALL;
    struct sigaction during;
    sigaction(SIGTERM, NULL, &during);
    if (shmrpc_server_serve_until_signal(second, 0) != SHMRPC_EBUSY) return K_NOT_BUSY;
    if (!strstr(shmrpc_errmsg(), "another server serves until a signal")) return K_BUSY_MSG;
    if (!handled_by(SIGTERM, during.sa_handler) || during.sa_handler == prev_handler ||
        !answers(addr))
        return K_DISTURBED;
    tell('B');
    pthread_join(t, NULL);
    if (atomic_load(&serving_rc) != 0) return K_RC;
    shmrpc_server_free(first);
    if (!handled_by(SIGTERM, prev_handler)) return K_TERM_BACK;
    /* Free again once the first returned: the second now serves, in place, and stops the
     * same way. It serves once its handler is there (the watchdog bounds the wait). */
    serving = second;
    serving_workers = 0;
    atomic_store(&serving_rc, 1);
    if (pthread_create(&t, NULL, serve_thread, NULL) != 0) return K_SETUP;
    while (handled_by(SIGTERM, prev_handler) && atomic_load(&serving_rc) == 1)
        usleep(1000);
    tell('F');
    pthread_join(t, NULL);
    if (atomic_load(&serving_rc) != 0) return K_RC;
    shmrpc_server_free(second);
    if (!handled_by(SIGTERM, prev_handler)) return K_TERM_BACK;
    return prev_hits == 0 ? K_OK : K_PREV_HIT;
}

static void second_call_is_busy(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://serve_busy%d", (int)getpid());
    snprintf(addr2, sizeof addr2, "inproc://serve_busy%d", (int)getpid());
    start(busy_child);
    char c = heard(15000);
    if (c != 'B') {
        int code = child_exit();
        fail_msg("no SHMRPC_EBUSY for the second call (child exit %d)", code);
    }
    assert_int_equal(kill(child, SIGTERM), 0);
    c = heard(10000);
    if (c != 'F') {
        int code = child_exit();
        fail_msg("the first call did not stop cleanly (child exit %d)", code);
    }
    assert_int_equal(kill(child, SIGTERM), 0);
    assert_int_equal(child_exit(), K_OK);
    assert_int_equal(test_shm_segments(addr), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(stops_on_sigterm, teardown),
        cmocka_unit_test_teardown(stops_on_sigint, teardown),
        cmocka_unit_test_teardown(second_call_is_busy, teardown),
    };
    if (calls_shared_map() != 0) return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
