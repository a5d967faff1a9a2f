/* SPDX-License-Identifier: MIT */
/* runtime/observe/: the programs' /proc reader (obs_proc.h) on real processes (this
 * test's own, a child that stays a zombie until reaped, and a process group of a leader,
 * a worker and the worker's helper, as a service's would be), the worker rule and the
 * stat line's parser on made-up text, and the statistics merge (obs_stats.h) on made-up
 * snapshots. Every child is killed and
 * reaped in teardown, even when an assertion fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "obs_proc.h"
#include "obs_stats.h"

enum { MAX_KIDS = 4 };
static pid_t kids[MAX_KIDS]; /* to kill and reap at teardown; 0: none */

static void keep(pid_t pid)
{
    for (int i = 0; i < MAX_KIDS; i++)
        if (!kids[i]) {
            kids[i] = pid;
            return;
        }
    fail_msg("too many children");
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_KIDS; i++)
        if (kids[i] > 0) {
            kill(-kids[i], SIGKILL); /* its group, when it leads one */
            kill(kids[i], SIGKILL);
            waitpid(kids[i], NULL, 0);
            kids[i] = 0;
        }
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Waits (at most 10 s) until pid's state is want; false when it never is. */
static bool wait_state(pid_t pid, char want)
{
    for (int i = 0; i < 2000; i++) {
        obs_proc p;
        if (obs_proc_read(pid, &p) && p.state == want) return true;
        sleep_ms(5);
    }
    return false;
}

/* This process as /proc shows it: its pid, parent, group and a start time. */
static void reads_itself(void **state)
{
    (void)state;
    obs_proc p;
    assert_true(obs_proc_read(getpid(), &p));
    assert_int_equal(p.pid, getpid());
    assert_int_equal(p.ppid, getppid());
    assert_int_equal(p.pgrp, getpgrp());
    assert_true(p.state == 'R' || p.state == 'S');
    assert_true(p.start > 0);
    assert_true(p.rss_pages > 0);
    assert_false(p.tcp_named);
    assert_true(obs_proc_alive(getpid(), getpgrp()));
    assert_false(obs_proc_read(0, &p));
}

/* A child that exited and is not reaped is read as a zombie and is not alive; once
 * reaped, it is gone. */
static void zombie_and_gone(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(0);
    keep(pid);
    assert_true(wait_state(pid, 'Z'));
    assert_false(obs_proc_alive(pid, getpgrp()));
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    kids[0] = 0;
    obs_proc p;
    assert_false(obs_proc_read(pid, &p));
    assert_false(obs_proc_alive(pid, 0));
    obs_mem m;
    assert_false(obs_proc_memory(pid, &m));
}

/* Memory: 32 MiB touched shows in this process's RSS and PSS; a child forked after
 * shares those pages copy-on-write, so its PSS is well under its RSS. */
static void memory(void **state)
{
    (void)state;
    obs_mem before, after;
    assert_true(obs_proc_memory(getpid(), &before));
    size_t len = (size_t)32 << 20;
    char *big = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(big != MAP_FAILED);
    memset(big, 1, len);
    assert_true(obs_proc_memory(getpid(), &after));
    assert_true(after.rss >= before.rss + len / 2);
    if (after.pss_known) assert_true(after.pss >= before.pss + len / 2);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pause();
        _exit(0);
    }
    keep(pid);
    assert_true(wait_state(pid, 'S'));
    obs_mem child;
    assert_true(obs_proc_memory(pid, &child));
    assert_true(child.rss >= len / 2);
    if (child.pss_known) assert_true(child.pss < child.rss - len / 4);
    munmap(big, len);
    uint64_t rd = 1, wr = 1;
    assert_true(obs_proc_io(getpid(), &rd, &wr)); /* one's own: always readable */
}

/* A group as a service's: a leader (setpgid), a worker it forked, and a helper the
 * worker forked. The scan finds all three, sorted; the worker rule picks the worker. */
static void groups(void **state)
{
    (void)state;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t leader = fork();
    assert_true(leader >= 0);
    if (leader == 0) {
        setpgid(0, 0);
        close(ready[0]);
        if (fork() == 0) {     /* the worker */
            if (fork() == 0) { /* its helper */
                if (write(ready[1], "h", 1) != 1) _exit(1);
                pause();
                _exit(0);
            }
            pause();
            _exit(0);
        }
        pause();
        _exit(0);
    }
    setpgid(leader, leader); /* whichever runs first */
    keep(leader);
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);

    bool seen_self = false;
    pid_t self = getpid();
    obs_proc *v = NULL;
    size_t len = 0;
    pid_t leaders[] = {0, leader};
    assert_int_equal(obs_groups_scan(leaders, 2, &v, &len), 0);
    assert_int_equal(len, 3);
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(v[i].pgrp, leader);
        if (i) assert_true(v[i - 1].pid < v[i].pid);
        seen_self |= v[i].pid == self;
    }
    assert_false(seen_self);
    pid_t workers[4] = {0};
    assert_int_equal(obs_group_workers(v, len, leader, false, workers, 4), 1);
    pid_t worker = workers[0];
    obs_proc w;
    assert_true(obs_proc_read(worker, &w));
    assert_int_equal(w.ppid, leader);
    assert_true(obs_proc_alive(worker, leader));
    assert_false(obs_proc_alive(worker, getpgrp()));
    free(v);
}

/* obs_stats_merge on made-up snapshots: the same table in another order is summed by
 * method name (counts, times and buckets); another service's is left out, and said. */
static void merge_by_method_name(void **state)
{
    (void)state;
    shmrpc_method_stats a[2] = {{.name = "add", .calls = 5, .errors = 1, .total_ns = 50},
                                {.name = "echo", .calls = 2, .total_ns = 20}};
    shmrpc_method_stats b[2] = {{.name = "echo", .calls = 1, .total_ns = 7},
                                {.name = "add", .calls = 3, .total_ns = 30}};
    a[0].buckets[0] = 5, a[1].buckets[2] = 2, b[0].buckets[2] = 1, b[1].buckets[31] = 3;
    shmrpc_stats shm = {.service = "Echo", .pid = 10, .n_methods = 2, .methods = a};
    shmrpc_stats tcp = {.service = "Echo", .pid = 11, .n_methods = 2, .methods = b};
    obs_stats st = {.part = {&shm, &tcp}};
    assert_int_equal(obs_stats_merge(&st), 0);
    assert_non_null(st.all);
    assert_string_equal(st.why, "");
    assert_int_equal(st.all->pid, 10);
    assert_int_equal(st.all->n_methods, 2);
    const shmrpc_method_stats *add = &st.all->methods[0], *echo = &st.all->methods[1];
    assert_string_equal(add->name, "add");
    assert_int_equal(add->calls, 8);
    assert_int_equal(add->errors, 1);
    assert_int_equal(add->total_ns, 80);
    assert_int_equal(add->buckets[0], 5);
    assert_int_equal(add->buckets[31], 3);
    assert_int_equal(echo->calls, 3);
    assert_int_equal(echo->buckets[2], 3);
    /* The percentile of the merged histogram: half of add's calls are in the last bucket. */
    assert_int_equal(shmrpc_stats_percentile(add, 0.5), 1024);
    assert_int_equal(shmrpc_stats_percentile(add, 0.99), (uint64_t)1 << 41);

    tcp.service = "Other";
    snprintf(st.addr[OBS_STATS_TCP], sizeof st.addr[0], "tcp://127.0.0.1:1");
    assert_int_equal(obs_stats_merge(&st), 0);
    assert_true(st.left_out[OBS_STATS_TCP]);
    assert_false(st.left_out[OBS_STATS_SHM]);
    assert_non_null(strstr(st.why, "tcp://127.0.0.1:1 (service Other"));
    assert_int_equal(st.all->methods[0].calls, 5);
    /* Only the shm:// part: the first one present. */
    st.part[OBS_STATS_SHM] = NULL;
    tcp.service = "Echo";
    assert_int_equal(obs_stats_merge(&st), 0);
    assert_int_equal(st.all->pid, 11);
    assert_string_equal(st.all->methods[0].name, "echo");
    st.part[OBS_STATS_TCP] = NULL; /* the test's own: not to be freed */
    obs_stats_clear(&st);
}

/* The rule of obs_proc.h on made-up process groups: which processes are workers. */
static int workers_of(const obs_proc *v, size_t n, bool leader_serves, pid_t *out)
{
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (obs_proc_is_worker(v, n, i, leader_serves)) out[k++] = v[i].pid;
    return k;
}

static void worker_rule(void **state)
{
    (void)state;
    pid_t w[16];
    /* A module service serving TCP too: leader 10, shm:// workers 11 and 12 (11 runs
     * system(): sh 20, and its sleep 21), TCP manager 13 with workers 14 and 15 (named as
     * it is; 14 forked a child 22 without exec, named so too). */
    const obs_proc tcp[] = {
        {.pid = 10, .ppid = 1, .pgrp = 10},
        {.pid = 11, .ppid = 10, .pgrp = 10},
        {.pid = 12, .ppid = 10, .pgrp = 10},
        {.pid = 13, .ppid = 10, .pgrp = 10, .tcp_named = true},
        {.pid = 14, .ppid = 13, .pgrp = 10, .tcp_named = true},
        {.pid = 15, .ppid = 13, .pgrp = 10, .tcp_named = true},
        {.pid = 20, .ppid = 11, .pgrp = 10},
        {.pid = 21, .ppid = 20, .pgrp = 10},
        {.pid = 22, .ppid = 14, .pgrp = 10, .tcp_named = true},
    };
    assert_int_equal(workers_of(tcp, 9, false, w), 4);
    assert_int_equal(w[0], 11);
    assert_int_equal(w[1], 12);
    assert_int_equal(w[2], 14);
    assert_int_equal(w[3], 15);
    /* Its TCP manager before its workers: no worker; nor is a leader alone. */
    assert_int_equal(workers_of(tcp, 4, false, w), 2);
    assert_int_equal(w[1], 12);
    assert_int_equal(workers_of(tcp, 1, false, w), 0);
    /* A child of the leader's TCP manager's worker named shmrpc-tcp is no manager: only the
     * leader's child of that name is. */
    const obs_proc odd[] = {
        {.pid = 10, .ppid = 1, .pgrp = 10},
        {.pid = 11, .ppid = 10, .pgrp = 10},
        {.pid = 12, .ppid = 11, .pgrp = 10, .tcp_named = true},
        {.pid = 13, .ppid = 12, .pgrp = 10},
    };
    assert_int_equal(workers_of(odd, 4, false, w), 1);
    assert_int_equal(w[0], 11);
    /* An exec= server: alone, it serves in place; with children, they are its workers and
     * their helpers are not. */
    assert_int_equal(workers_of(tcp, 1, true, w), 1);
    assert_int_equal(w[0], 10);
    const obs_proc exec[] = {
        {.pid = 30, .ppid = 1, .pgrp = 30},
        {.pid = 31, .ppid = 30, .pgrp = 30},
        {.pid = 32, .ppid = 30, .pgrp = 30},
        {.pid = 33, .ppid = 32, .pgrp = 30},
    };
    assert_int_equal(workers_of(exec, 4, true, w), 2);
    assert_int_equal(w[0], 31);
    assert_int_equal(w[1], 32);
    /* obs_group_workers: the count of all, the first cap pids only; a leader not in v, or
     * none (0), has none. v holds two groups, sorted by group then pid. */
    obs_proc both[13];
    memcpy(both, tcp, sizeof tcp);
    memcpy(both + 9, exec, sizeof exec);
    pid_t few[3] = {0, 0, -5};
    assert_int_equal(obs_group_workers(both, 13, 10, false, few, 2), 4);
    assert_int_equal(few[0], 11);
    assert_int_equal(few[1], 12);
    assert_int_equal(few[2], -5); /* not written */
    assert_int_equal(obs_group_workers(both, 13, 30, true, w, 16), 2);
    assert_int_equal(w[0], 31);
    assert_int_equal(obs_group_workers(both, 13, 99, false, w, 16), 0);
    /* Kernel threads are in group 0, which is no service's. */
    const obs_proc kthreads[] = {
        {.pid = 2, .ppid = 0, .pgrp = 0},
        {.pid = 3, .ppid = 2, .pgrp = 0},
    };
    assert_int_equal(obs_group_workers(kthreads, 2, 0, true, w, 16), 0);
}

/* /proc/PID/stat as the kernel writes it, a name with ') (' in it included. */
static void stat_parse(void **state)
{
    (void)state;
    const char *text = "4242 (shmrpc-tcp) S 4241 4240 4240 0 -1 4194624 1 0 0 0 7 3 2 1 20 0 1 "
                       "0 123456 1000000 250 18446744073709551615";
    obs_proc p;
    assert_true(obs_proc_parse(4242, text, &p));
    assert_int_equal(p.pid, 4242);
    assert_int_equal(p.ppid, 4241);
    assert_int_equal(p.pgrp, 4240);
    assert_int_equal(p.state, 'S');
    assert_true(p.tcp_named);
    assert_int_equal(p.utime, 7);
    assert_int_equal(p.stime, 3);
    assert_int_equal(p.cutime, 2);
    assert_int_equal(p.cstime, 1);
    assert_int_equal(p.start, 123456);
    assert_int_equal(p.rss_pages, 250);
    const char *odd = "7 (a) (shmrpc-tcp) R 1 7 7 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 5";
    assert_true(obs_proc_parse(7, odd, &p));
    assert_false(p.tcp_named);
    assert_int_equal(p.ppid, 1);
    assert_int_equal(p.start, 9);
    assert_false(obs_proc_parse(7, "7 (cut", &p));
    assert_false(obs_proc_parse(7, "7 (x) R 1", &p));
    /* Fields enough, but no name in parentheses: none at all, or a ')' before the '('. */
    assert_false(obs_proc_parse(7, "7 x) R 1 7 7 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 5", &p));
    assert_false(obs_proc_parse(7, "7 ) R 1 7 7 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 5 (x", &p));
    /* Only the whole name is the TCP manager's. */
    assert_true(
        obs_proc_parse(7, "7 (shmrpc-tc) R 1 7 7 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 5", &p));
    assert_false(p.tcp_named);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(reads_itself, teardown),
        cmocka_unit_test_teardown(zombie_and_gone, teardown),
        cmocka_unit_test_teardown(memory, teardown),
        cmocka_unit_test_teardown(groups, teardown),
        cmocka_unit_test(worker_rule),
        cmocka_unit_test(stat_parse),
        cmocka_unit_test(merge_by_method_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
