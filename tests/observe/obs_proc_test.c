/* The programs' /proc reader (runtime/observe/obs_proc.h) on real processes: this test's
 * own, a child that stays a zombie until reaped, and a process group of a leader, a
 * worker and the worker's helper, as a service's would be. Every child is killed and
 * reaped in teardown, even when an assertion fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "obs_proc.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(reads_itself, teardown),
        cmocka_unit_test_teardown(zombie_and_gone, teardown),
        cmocka_unit_test_teardown(memory, teardown),
        cmocka_unit_test_teardown(groups, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
