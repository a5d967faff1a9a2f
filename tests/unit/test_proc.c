/* SPDX-License-Identifier: MIT */
/* The library's one reader of /proc (runtime/src/core/proc.c): a process's stat, whether it
 * has ended, who owns it and which files it maps, on this process and on a child. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/proc.h"
#include "unit.h"

static void stat_of_self_and_of_a_zombie(void **state)
{
    (void)state;
    shmrpc__proc_stat ps;
    assert_int_equal(shmrpc__read_proc_stat((uint32_t)getpid(), &ps), 0);
    assert_false(shmrpc__proc_ended(&ps));
    assert_true(ps.start > 0);

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) _exit(0);
    /* Not reaped yet: a zombie, until waitpid (bounded: it exits at once). */
    bool ended = false;
    for (int i = 0; i < 500 && !ended; i++) {
        ended = shmrpc__read_proc_stat((uint32_t)child, &ps) == 0 && shmrpc__proc_ended(&ps);
        if (!ended) usleep(2000);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(ended);
    /* Reaped: gone. */
    assert_int_equal(shmrpc__read_proc_stat((uint32_t)child, &ps), -1);
    assert_true(errno == ENOENT || errno == ESRCH);
}

static void owner_and_maps(void **state)
{
    (void)state;
    uid_t uid = (uid_t)-1;
    assert_int_equal(shmrpc__proc_owner((uint32_t)getpid(), &uid), 0);
    assert_int_equal(uid, geteuid());

    char path[] = "/tmp/shmrpc-proc-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(ftruncate(fd, 4096), 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(shmrpc__proc_maps((uint32_t)getpid(), st.st_dev, st.st_ino), 0);
    void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(p != MAP_FAILED);
    assert_int_equal(shmrpc__proc_maps((uint32_t)getpid(), st.st_dev, st.st_ino), 1);
    munmap(p, 4096);
    close(fd);
    assert_int_equal(shmrpc__proc_maps((uint32_t)getpid(), st.st_dev, st.st_ino), 0);
}

/* The liveness checks the shm transport and the admin API use: a start time tells a
 * reused pid; a reaped child is dead; descriptor paths name the process. */
static void alive_start_and_fd_paths(void **state)
{
    (void)state;
    uint64_t me = shmrpc__proc_start(getpid());
    assert_true(me > 0);
    assert_true(shmrpc__proc_alive(getpid(), 0));
    assert_true(shmrpc__proc_alive(getpid(), me));
    assert_false(shmrpc__proc_alive(getpid(), me + 1)); /* a later process of this pid */
    assert_true(shmrpc__proc_running(getpid(), me));
    assert_false(shmrpc__proc_alive(0, 0));
    assert_int_equal(shmrpc__proc_start(-1), 0);

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) _exit(0);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_false(shmrpc__proc_alive(child, 0));
    assert_false(shmrpc__proc_running(child, 0));

    char path[64];
    shmrpc__proc_fd_path(path, sizeof path, 0, 7);
    assert_string_equal(path, "/proc/self/fd/7");
    shmrpc__proc_fd_path(path, sizeof path, 1234, 5);
    assert_string_equal(path, "/proc/1234/fd/5");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stat_of_self_and_of_a_zombie),
        cmocka_unit_test(owner_and_maps),
        cmocka_unit_test(alive_start_and_fd_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
