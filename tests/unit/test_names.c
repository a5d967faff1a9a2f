/* SPDX-License-Identifier: MIT */
/* This user's directory of names (runtime/src/core/names.c, docs/names.md) as
 * shmrpc_names_dir finds it, in a mount namespace with a /dev/shm of its own (root only):
 * root's made and tightened, a buffer too short for it or for a name's path in it
 * refused, a user's only looked for, and each $XDG_RUNTIME_DIR a user whose name was
 * taken may or may not fall back to. */
#define _GNU_SOURCE /* unshare */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/names.h"
#include "unit.h"

#include "skips.h"

#define USER 65533u  /* the user whose name was taken */
#define OTHER 65534u /* the user who took it */

/* What in_own_dev_shm returns when the namespace or a mount of it was refused with EPERM:
 * root without CAP_SYS_ADMIN (a container), where these tests cannot run. */
#define NO_NAMESPACE 98

/* Runs what() in a child with a mount namespace and an empty /dev/shm of its own, bounded
 * by alarm: what it returns (0: passed), NO_NAMESPACE, 99 when the namespace failed
 * otherwise, or -1 when it died. */
static int in_own_dev_shm(int (*what)(void))
{
    fflush(stdout);
    fflush(stderr);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        alarm(30);
        signal(SIGSEGV, SIG_DFL);
        signal(SIGABRT, SIG_DFL);
        const char *step =
            unshare(CLONE_NEWNS) != 0                                  ? "unshare(CLONE_NEWNS)"
            : mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0   ? "mount / private"
            : mount("tmpfs", "/dev/shm", "tmpfs", 0, "mode=1777") != 0 ? "mount a tmpfs on /dev/shm"
                                                                       : NULL;
        if (step) {
            int e = errno;
            fprintf(stderr, "# a mount namespace: %s: %s\n", step, strerror(e));
            _exit(e == EPERM ? NO_NAMESPACE : 99);
        }
        _exit(what());
    }
    int status = 0;
    while (waitpid(kid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs what() in its own /dev/shm and checks it passed; skips the test where a mount
 * namespace is not allowed (NO_NAMESPACE). Any other failure of the namespace fails. */
#define CHECK_IN_OWN_DEV_SHM(what)                                                                 \
    do {                                                                                           \
        int rc_ = in_own_dev_shm(what);                                                            \
        if (rc_ == NO_NAMESPACE)                                                                   \
            test_skip("no mount namespace here: refused with EPERM (root without "                 \
                      "CAP_SYS_ADMIN, as in a container)");                                        \
        assert_int_equal(rc_, 0);                                                                  \
    } while (0)

/* 0 when shmrpc_names_dir into cap bytes returns want, with a message holding says (when
 * it fails) or the directory dir (when it succeeds); else n, having said why. */
static int expect_dir(int n, size_t cap, int want, const char *says)
{
    char out[256] = "";
    int rc = shmrpc_names_dir(out, cap);
    const char *got = rc == 0 ? out : shmrpc_errmsg();
    if (rc == want && strstr(got, says)) return 0;
    fprintf(stderr, "# case %d: %d (%s), want %d with '%s'\n", n, rc, got, want, says);
    return n;
}

static unsigned mode_of(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 ? (unsigned)(st.st_mode & 07777) : 0;
}

/* A directory made by root for uid u with mode. */
static int dir_for(const char *path, unsigned u, mode_t mode)
{
    return mkdir(path, 0700) == 0 && chown(path, u, u) == 0 && chmod(path, mode) == 0 ? 0 : -1;
}

static int root_makes_and_tightens(void)
{
    int rc = expect_dir(1, 256, 0, "/dev/shm/shmrpc-0");
    if (rc) return rc;
    if (mode_of("/dev/shm/shmrpc-0") != 0700) return 2;
    /* Loosened by someone who could (root): tightened at the next look, its files kept. */
    FILE *f = fopen("/dev/shm/shmrpc-0/kept", "w");
    if (!f) return 3;
    fclose(f);
    if (chmod("/dev/shm/shmrpc-0", 0755) != 0) return 4;
    if ((rc = expect_dir(5, 256, 0, "/dev/shm/shmrpc-0")) != 0) return rc;
    if (mode_of("/dev/shm/shmrpc-0") != 0700) return 6;
    if (access("/dev/shm/shmrpc-0/kept", F_OK) != 0) return 7;
    /* A buffer one short of the path and its NUL: refused, saying how long it is. */
    if ((rc = expect_dir(8, strlen("/dev/shm/shmrpc-0"), SHMRPC_EINVAL,
                         "/dev/shm/shmrpc-0 is longer than 16 bytes")) != 0)
        return rc;
    /* So is a name's path in it (a service's socket or segment) one short. */
    char out[sizeof "/dev/shm/shmrpc-0/calc" - 1];
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    rc = shmrpc__ns_path(out, sizeof out, "calc", false, &err);
    bool said = err.data && strcmp((const char *)err.data,
                                   "/dev/shm/shmrpc-0/calc is longer than 21 bytes") == 0;
    if (!said) fprintf(stderr, "# ns_path: %d %s\n", rc, err.data ? (char *)err.data : "");
    shmrpc_buf_destroy(&err);
    if (rc != SHMRPC_EINVAL || !said) return 9;
    char fits[sizeof "/dev/shm/shmrpc-0/calc"];
    shmrpc_buf_init(&err);
    rc = shmrpc__ns_path(fits, sizeof fits, "calc", false, &err);
    shmrpc_buf_destroy(&err);
    return rc == 0 && strcmp(fits, "/dev/shm/shmrpc-0/calc") == 0 ? 0 : 10;
}

/* As USER: each $XDG_RUNTIME_DIR (cases[i].xdg, NULL: unset) and what names_dir says. */
static int user_cases(void)
{
    static char longest[200];
    snprintf(longest, sizeof longest, "/dev/shm/%0120d", 0);
    const struct {
        const char *xdg;
        int want;
        const char *says;
    } cases[] = {
        {"mine", SHMRPC_EPERM, "belongs to uid 65534 (another user made it first)"},
        {"/dev/shm/missing", SHMRPC_EPERM, "$XDG_RUNTIME_DIR names no directory of this user"},
        {"/dev/shm/a-file", SHMRPC_EPERM, "belongs to uid 65534"},
        {"/dev/shm/roots", SHMRPC_EPERM, "belongs to uid 65534"},
        {"/dev/shm/open", SHMRPC_EPERM, "belongs to uid 65534"},
        {"/dev/shm/mine", 0, "/dev/shm/mine/shmrpc"},
        {"/dev/shm/filled", SHMRPC_EPERM, "/dev/shm/filled/shmrpc is not a directory of uid 65533"},
        {"/dev/shm/loose", 0, "/dev/shm/loose/shmrpc"},
        {longest, SHMRPC_EINVAL, "$XDG_RUNTIME_DIR is longer than 120 bytes"},
    };
    /* From /dev/shm, "mine" names a directory of USER's, but not by an absolute path. */
    if (setgid(USER) != 0 || setuid(USER) != 0 || chdir("/dev/shm") != 0) return 90;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("XDG_RUNTIME_DIR", cases[i].xdg, 1);
        int rc = expect_dir((int)i + 10, 256, cases[i].want, cases[i].says);
        if (rc) return rc;
    }
    /* Only looked for: $XDG_RUNTIME_DIR/shmrpc is not made; one of this user's that others
     * could read is tightened. */
    if (access("/dev/shm/mine/shmrpc", F_OK) == 0) return 30;
    if (mode_of("/dev/shm/loose/shmrpc") != 0700) return 31;
    return 0;
}

static int user_falls_back_to_xdg(void)
{
    /* USER's name, taken by OTHER; a directory or file for each case. */
    static char longest[200];
    snprintf(longest, sizeof longest, "/dev/shm/%0120d", 0);
    FILE *f = fopen("/dev/shm/a-file", "w");
    if (!f || fchown(fileno(f), USER, USER) != 0) return 80;
    fclose(f);
    if (dir_for("/dev/shm/shmrpc-65533", OTHER, 0777) || dir_for("/dev/shm/roots", 0, 0700) ||
        dir_for("/dev/shm/open", USER, 0777) || dir_for("/dev/shm/mine", USER, 0700) ||
        dir_for("/dev/shm/filled", USER, 0700) || dir_for("/dev/shm/loose", USER, 0700) ||
        dir_for("/dev/shm/loose/shmrpc", USER, 0755) || dir_for(longest, USER, 0700))
        return 81;
    f = fopen("/dev/shm/filled/shmrpc", "w");
    if (!f || fchown(fileno(f), USER, USER) != 0) return 82;
    fclose(f);
    pid_t kid = fork();
    if (kid < 0) return 83;
    if (kid == 0) _exit(user_cases());
    int status = 0;
    while (waitpid(kid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 84;
}

/* A user whose name nobody took, only looking: its directory is not made. */
static int user_only_looks(void)
{
    if (setgid(USER) != 0 || setuid(USER) != 0) return 90;
    unsetenv("XDG_RUNTIME_DIR");
    int rc = expect_dir(1, 256, 0, "/dev/shm/shmrpc-65533");
    if (rc) return rc;
    return access("/dev/shm/shmrpc-65533", F_OK) == 0 ? 2 : 0;
}

static void needs_root(void)
{
    if (geteuid() != 0) test_skip("needs root for a mount namespace and other users");
}

static void root_directory_made_and_tightened(void **state)
{
    (void)state;
    needs_root();
    CHECK_IN_OWN_DEV_SHM(root_makes_and_tightens);
}

static void user_directory_only_looked_for(void **state)
{
    (void)state;
    needs_root();
    CHECK_IN_OWN_DEV_SHM(user_only_looks);
}

static void taken_name_and_each_runtime_dir(void **state)
{
    (void)state;
    needs_root();
    CHECK_IN_OWN_DEV_SHM(user_falls_back_to_xdg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(root_directory_made_and_tightened),
        cmocka_unit_test(user_directory_only_looked_for),
        cmocka_unit_test(taken_name_and_each_runtime_dir),
    };
    return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
