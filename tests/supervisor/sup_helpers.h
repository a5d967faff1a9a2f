/* SPDX-License-Identifier: MIT */
/* What the supervisor and web tests share: the clock, files in the test's folder,
 * shmrpc-service as a child process, its services' process groups, and the segments in
 * /dev/shm and the directory of names. */
#ifndef SHMRPC_TEST_SUP_HELPERS_H
#define SHMRPC_TEST_SUP_HELPERS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SUP_MAX_GROUPS 64

int64_t sup_now_ms(void); /* CLOCK_MONOTONIC */
void sup_nap_ms(int ms);

/* DIR/NAME whole into a static buffer of 64 KiB ("" when missing). */
const char *sup_slurp(const char *dir, const char *name);

/* Writes text to path: 0, or -1 when it could not be opened. */
int sup_write_file(const char *path, const char *text);

/* Removes dir and everything under it. */
void sup_rm_tree(const char *dir);

/* Forks shmrpc-service on ini (with --foreground when fg), its stderr to err_path and
 * alarm(watchdog_s) as a watchdog should teardown not run; env is NULL or NAME, VALUE,
 * ..., NULL set in the child. The pid, or -1 when fork failed. */
pid_t sup_spawn(const char *ini, const char *err_path, bool fg, unsigned watchdog_s,
                const char *const *env);

/* Writes DIR/service.ini and starts the supervisor on it as sup_spawn does, its stderr to
 * DIR/supervisor.err; asserts that both worked. */
pid_t sup_start_in(const char *dir, const char *ini, bool fg, unsigned watchdog_s,
                   const char *const *env);

/* Waits up to ms for *pid to exit: its wait status, *pid then 0; or -1 (*pid kept). */
int sup_wait_exit(pid_t *pid, int ms);

/* SIGTERM to *pid, then sup_wait_exit. */
int sup_stop(pid_t *pid, int ms);

/* How long a test waits for a supervisor to exit after SIGTERM when the exit's time is not
 * what it tests: every service's stop_timeout_s, then the page's exit, which the
 * supervisor waits for up to 4 s (web_proc.c's KEEPER_STOP_MS) and which a loaded machine
 * (LeakSanitizer scanning the page's heap, ctest -j2) makes take most of that. A hang still
 * fails; a slow page does not. */
#define SUP_EXIT_MS 10000

/* SIGKILL to *pid and reaps it, when it is > 0; *pid then 0. */
void sup_kill_reap(pid_t *pid);

/* Ends *pid as an operator would, in a teardown: SIGTERM, up to SUP_EXIT_MS, then SIGKILL should
 * it not have exited; *pid then 0. What ran in a supervisor that ends by SIGKILL (and in
 * its page and its module services' managers, which die with it) is not counted by a
 * coverage build (docs/coverage.md). */
void sup_end(pid_t *pid);

/* What a program said: its exit status (-1 when killed), its stdout and its stderr. */
typedef struct sup_run {
    int status;
    char out[32768];
    char err[8192];
} sup_run;

/* Runs program with the arguments after in (NULL-terminated, 22 at most) and in on its
 * stdin (NULL: none), 10 s at most (then it is killed). */
void sup_run_prog(sup_run *r, const char *program, const char *in, ...);

/* Services' process groups seen, to be killed in teardown. */
typedef struct sup_groups {
    pid_t ids[SUP_MAX_GROUPS];
    int n;
    int cap; /* the test's limit, 1..SUP_MAX_GROUPS: more groups than that fail the test */
} sup_groups;

/* Remembers pgid unless it is <= 0 (kill(-0) would hit the test itself) or known. */
void sup_groups_add(sup_groups *g, pid_t pgid);
void sup_groups_kill(const sup_groups *g); /* SIGKILL to each */

/* Forgets pgid once the test has killed and reaped its leader: teardown must not signal
 * the id again, which another group may have taken by then. */
void sup_groups_forget(sup_groups *g, pid_t pgid);

/* Asserts every group remembered is gone, then forgets them (their ids may be reused). */
void sup_groups_assert_gone(sup_groups *g);

bool sup_group_gone(pid_t pgid);

/* Unlinks every file in /dev/shm or the directory of names whose name contains part. */
void sup_remove_segments(const char *part);

/* Unlinks the statistics segment of a TCP server at 127.0.0.1:port (as runtime/src/stats/stats.c
 * names it), which a test that failed may leave; nothing when port <= 0. */
void sup_remove_tcp_stats(int port);

/* Whether a file in /dev/shm or the directory of names has a name that contains part;
 * prints the name of each that does. */
bool sup_segment_left(const char *part);

/* Whether /dev/shm or the directory of names has a file of exactly this name. */
bool sup_segment_named(const char *name);

/* The children of pid (from /proc/PID/task/PID/children), the first cap into out; their
 * count (0 when it is gone). */
int sup_children(pid_t pid, pid_t *out, int cap);

/* The name (comm) of process pid, without its line end, into a static buffer; "" when
 * it is gone. */
const char *sup_comm(pid_t pid);

#endif
