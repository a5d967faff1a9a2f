/* SPDX-License-Identifier: MIT */
/* A coverage build's _exit writes the counts first (cmake/coverage_exit.c). A signal that
 * comes inside that dump, to a handler that calls _exit itself (as sup_module.c's on_stop
 * does in a module manager's forked child), must not hang the process: it ends, with the
 * handler's status. The child is held inside its dump by this test holding the file lock
 * of the child's .gcda file, as another process writing the same counts would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void on_stop(int sig)
{
    (void)sig;
    _exit(3);
}

/* Whether pid waits for a file lock (its dump does), waiting up to 10 s for it. */
static int waits_for_lock(pid_t pid)
{
    char path[64], wchan[64];
    snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
    for (int i = 0; i < 1000; i++, nap_ms(10)) {
        FILE *f = fopen(path, "re");
        size_t n = f ? fread(wchan, 1, sizeof wchan - 1, f) : 0;
        if (f) fclose(f);
        wchan[n] = '\0';
        if (strstr(wchan, "setlk") || strstr(wchan, "lock")) return 1; /* fcntl_setlk */
    }
    return 0;
}

static void test_sigterm_inside_the_dump_of_exit(void **state)
{
    (void)state;
    signal(SIGTERM, on_stop); /* the child's, by fork */
    int fd = open(GCDA, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    assert_int_equal(fcntl(fd, F_SETLKW, &fl), 0);
    pid_t kid = fork();
    if (kid == 0) _exit(0); /* dumps first: waits for the lock held above */
    assert_true(kid > 0);
    signal(SIGTERM, SIG_DFL);
    int inside = waits_for_lock(kid);
    kill(kid, SIGTERM);
    fl.l_type = F_UNLCK;
    assert_int_equal(fcntl(fd, F_SETLK, &fl), 0);
    close(fd);
    int st = 0;
    pid_t r = 0;
    for (int i = 0; i < 1000 && r == 0; i++, nap_ms(10)) /* up to 10 s */
        r = waitpid(kid, &st, WNOHANG);
    if (r != kid) { /* hung: gone all the same, and the test fails */
        kill(kid, SIGKILL);
        waitpid(kid, NULL, 0);
    }
    assert_true(inside); /* the SIGTERM came inside the dump */
    assert_int_equal(r, kid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 3); /* its handler's _exit */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_inside_the_dump_of_exit),
    };
    return cmocka_run_group_tests_name("coverage_exit", tests, NULL, NULL);
}
