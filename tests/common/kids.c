/* SPDX-License-Identifier: MIT */
/* The children a unit test forks (kids.h). */
#include "kids.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define MAX_KIDS 64

static pid_t kids[MAX_KIDS];
static int nkids;

int64_t test_kid_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void test_kid_nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

pid_t test_kid_spawn(int (*fn)(void *), void *arg, unsigned alarm_s)
{
    assert_true(nkids < MAX_KIDS);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* cmocka's handlers for crashes would run the rest of the test group in the child;
         * a crash must end the child with its signal, which the parent reports. */
        static const int crashes[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
        for (size_t i = 0; i < sizeof crashes / sizeof crashes[0]; i++)
            signal(crashes[i], SIG_DFL);
        alarm(alarm_s);
        _exit(fn(arg));
    }
    kids[nkids++] = pid;
    return pid;
}

static void forget_kid(pid_t pid)
{
    for (int i = 0; i < nkids; i++)
        if (kids[i] == pid) kids[i] = kids[--nkids];
}

int test_kid_reap(pid_t pid, int ms)
{
    int64_t end = test_kid_now_ms() + ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            forget_kid(pid);
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (r < 0 && errno != EINTR) {
            forget_kid(pid);
            return -2;
        }
        if (test_kid_now_ms() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            forget_kid(pid);
            return -1;
        }
        test_kid_nap_ms(1);
    }
}

void test_kids_kill_all(void)
{
    while (nkids > 0) {
        pid_t pid = kids[0];
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        forget_kid(pid);
    }
}
