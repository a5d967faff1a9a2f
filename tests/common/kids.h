/* SPDX-License-Identifier: MIT */
/* The children a unit test forks (lock, queue and map tests): each with a watchdog alarm,
 * reaped with a bound, and all killed by the test's teardown, so that a failing test
 * leaves no process behind. */
#ifndef SHMRPC_TEST_KIDS_H
#define SHMRPC_TEST_KIDS_H

#include <stdint.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in milliseconds, and a sleep of ms that signals do not cut short. */
int64_t test_kid_now_ms(void);
void test_kid_nap_ms(int ms);

/* Forks a child that runs fn(arg) and exits with its result; alarm_s seconds is its
 * watchdog. At most 64 children at once. */
pid_t test_kid_spawn(int (*fn)(void *), void *arg, unsigned alarm_s);

/* The child's exit code, 128 + signal if killed, or -1 when it did not end within ms (it
 * is then killed); -2 when waitpid fails. */
int test_kid_reap(pid_t pid, int ms);

/* SIGKILLs and reaps every child not reaped yet (for teardown). */
void test_kids_kill_all(void);

#endif
