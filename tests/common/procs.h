/* SPDX-License-Identifier: MIT */
/* Processes for the transport tests: a server forked from the test, and bounded reaping,
 * so that no test waits forever or leaves a child behind. */
#ifndef SHMRPC_TEST_PROCS_H
#define SHMRPC_TEST_PROCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <shmrpc.h>

#include "port.h" /* test_free_port */

typedef struct test_server {
    const shmrpc_service *svc;
    const void *handlers;
    const char *addr;
    int workers;                       /* as for shmrpc_server_serve() */
    size_t max_msg;                    /* 0: the default */
    void (*prepare)(void);             /* run in the child before the server starts, or NULL */
    const shmrpc_tcp_opts *tcp;        /* tcp:// settings, or NULL for the defaults */
    int (*configure)(shmrpc_server *); /* run before the listen (after registering svc, which
                                        * may be NULL when this registers), or NULL */
} test_server;

int64_t test_now_ms(void); /* CLOCK_MONOTONIC */

/* Reads n bytes from fd (a raw peer's socket) before deadline (test_now_ms's clock); false
 * at EOF, an error or the deadline. */
bool test_raw_recv(int fd, uint8_t *p, size_t n, int64_t deadline);

/* A raw peer's connection to 127.0.0.1:port, tried again for up to wait_ms while nobody
 * listens there yet (a server still starting); -1 when none came. */
int test_raw_connect(int port, int wait_ms);

/* A client of info with opts (NULL: the defaults) connected to addr, trying again for up
 * to five seconds while nobody serves there yet; its status in *rc. */
shmrpc_client *test_connect(const shmrpc_service_info *info, const shmrpc_client_opts *opts,
                            const char *addr, int *rc);

/* Forks a process that serves ts until SIGTERM (with alarm(120) as a watchdog); its exit
 * status is 0 when the server started and stopped cleanly. -1 when fork failed. A server
 * its test did not reap (the test failed first) is stopped when the test process exits,
 * and dies with it when it is killed. */
pid_t test_start_server(const test_server *ts);

/* Waits up to ms for pid to exit, then SIGKILLs it. Its wait status, or -1 when it had
 * to be killed. */
int test_reap(pid_t pid, int ms);

/* Asks the server in pid (from test_start_server) to run this many workers
 * (shmrpc_server_set_workers, from a signal handler). 0, or -1 with errno. */
int test_scale_server(pid_t pid, int workers);

/* SIGTERM, then up to five seconds: true when it exited with status 0. */
bool test_stop_server(pid_t pid);

/* The descriptors process pid holds (/proc/PID/fd), or -1 when it cannot be read. */
int test_fd_count(pid_t pid);

/* The path of name in this user's directory of names (shmrpc_names_dir, docs/names.md). */
void test_names_path(char *out, size_t cap, const char *name);

/* How many files of the shm:// service at addr are in /dev/shm or the directory of names
 * (its control segment, rendezvous and lock, and anything else named shmrpc:NAME:...); 0
 * for another transport's address. Tests
 * check it is 0 after a server stopped: nothing left behind. */
int test_shm_segments(const char *addr);

/* Removes those files and the service's statistics segment: what a server that a failed
 * test left behind (SIGKILLed, or killed by its watchdog) did not remove. */
void test_shm_forget(const char *addr);

/* Removes the statistics segment of the tcp:// server at addr (tcp://HOST:PORT), which a
 * server SIGKILLed by a test leaves behind (one stopped cleanly removes its own). */
void test_tcp_stats_forget(const char *addr);

/* How long the machine keeps a ready thread from running: a thread that sleeps 1 ms at a
 * time records its worst oversleep from start to stop. A call that returns late by up to
 * that much is the scheduler's doing, not the runtime's (hundreds of ms were seen on a
 * busy 2-core machine), so tests that bound lateness add it to their margin and print it. */
typedef struct test_stall_probe test_stall_probe;
test_stall_probe *test_stall_probe_start(void);     /* NULL when no thread could be made */
int64_t test_stall_probe_stop(test_stall_probe *p); /* the worst oversleep in us; frees p */
#endif
