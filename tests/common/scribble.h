/* SPDX-License-Identifier: MIT */
/* For the tests where a hostile process of the same user writes over a segment while
 * others use it (queue and map scribble tests): the writes, and the judgement of what the
 * users' operations returned. */
#ifndef SHMRPC_TEST_SCRIBBLE_H
#define SHMRPC_TEST_SCRIBBLE_H
#include <stddef.h>
#include <stdint.h>

/* The users' roll call, shared with the children (test_scribble_setup maps it before they
 * are forked): each user calls test_scribble_user_ready once it has opened the segment,
 * and the scribbler waits for them all, as an open rightly refuses a segment that does not
 * add up. test_scribble_done tells the users the writes have stopped. */
int test_scribble_setup(void); /* 0, or -1 when mmap failed */
void test_scribble_teardown(void);
void test_scribble_user_ready(void);
int test_scribble_wait_users(int users); /* 0, or -1 when they were not all there in 10 s */
void test_scribble_done(void);
int test_scribble_is_done(void);

/* Writes `writes` random 1, 4 or 8-byte values (all ones now and then: the edge of every
 * field) at random places of the mapping m of size bytes, a quarter of them in its first
 * hot bytes. x is the caller's random state (non-zero). */
void test_scribble(unsigned char *m, size_t size, size_t hot, int writes, uint64_t *x);

/* Maps the file at path read-write (MAP_SHARED), its size in *size; NULL when it cannot. */
unsigned char *test_scribble_map(const char *path, size_t *size);

/* Judges one operation of a user: it must return 0 or a status that status.h has, within
 * hang_ms of t0 (test_kid_now_ms()). 0, or a line on stderr naming the operation and 1.
 * Counts each status for test_scribble_tally. */
int test_scribble_judge(const char *what, int rc, int64_t t0, int hang_ms);

/* Prints how the process's judged operations ended: ok, timed out, EPROTO, other. */
void test_scribble_tally(const char *who);
#endif
