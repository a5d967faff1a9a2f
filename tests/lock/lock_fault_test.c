/* SPDX-License-Identifier: MIT */
/* Locks under failing system calls (common/faults.h): each open, and a take-over from a
 * dead holder, run with its 1st, 2nd, ... call of calloc, shm_open, ftruncate, mmap,
 * open or read of /proc failing, each in its own child. An open that failed returns the
 * status of the call that failed (SHMRPC_ENOMEM, or SHMRPC_ESYS with its errno) and a
 * message, leaves no descriptor and no segment behind (the next exclusive create
 * succeeds), and succeeds once nothing fails. A take-over that cannot read /proc takes
 * nothing (SHMRPC_EBUSY: a holder not known dead is alive), and takes the lock once it
 * can. Leaks are LeakSanitizer's (the ASan build) at each child's exit. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <shmrpc.h>

#include "faults.h"

#define RUNS_MAX 200 /* far more calls than an open makes */

/* Every lock of this program holds token in its name (the sweep counts what is left). */
static char token[32];

struct lcase {
    char name[96];
    shmrpc_lock_opts o; /* of run's open */
    shmrpc_lock *l;     /* the handle run uses, or opens */
};

static int open_mode(struct lcase *c, shmrpc_lock **l, shmrpc_lock_mode mode)
{
    shmrpc_lock_opts o;
    shmrpc_lock_opts_init(&o);
    o.mode = mode;
    int rc = shmrpc_lock_open(l, c->name, &o);
    if (rc != 0) faults_say("open of %s (mode %d): %s", c->name, (int)mode, shmrpc_errmsg());
    return rc;
}

/* l is free, and taken and freed by this thread. */
static int works(shmrpc_lock *l)
{
    int rc = shmrpc_lock_acquire(l, 0);
    if (rc != 0) return faults_say("acquire: status %d: %s", rc, shmrpc_errmsg());
    if (!shmrpc_lock_is_mine(l)) return faults_say("acquired, and not mine");
    rc = shmrpc_lock_release(l);
    return rc != 0 ? faults_say("release: status %d", rc) : 0;
}

/* Closes what the case holds and removes its lock. */
static int done(struct lcase *c, int failed)
{
    shmrpc_lock_close(c->l);
    c->l = NULL;
    shmrpc_lock_unlink(c->name);
    return failed;
}

static int run_open(void *arg)
{
    struct lcase *c = arg;
    return shmrpc_lock_open(&c->l, c->name, &c->o);
}

/* An open that made no lock left no name: an exclusive create succeeds after it. A lock
 * created held is held by this thread. */
static int check_create(void *arg, int rc)
{
    struct lcase *c = arg;
    if (rc == 0) {
        if (!c->l) return done(c, faults_say("status 0 and no handle"));
        if (c->o.initially_locked) {
            if (!shmrpc_lock_is_mine(c->l)) return done(c, faults_say("created held, not mine"));
            if (shmrpc_lock_release(c->l) != 0) return done(c, faults_say("release"));
        }
        return done(c, works(c->l));
    }
    if (c->l) return done(c, faults_say("status %d and a handle", rc));
    if (!faults_status(rc)) return done(c, 1);
    if (open_mode(c, &c->l, SHMRPC_LOCK_CREATE_NEW_EXCLUSIVE) != 0) return done(c, 1);
    return done(c, works(c->l));
}

/* The lock made, free, and closed. */
static int setup_made(void *arg)
{
    struct lcase *c = arg;
    shmrpc_lock *l;
    if (open_mode(c, &l, SHMRPC_LOCK_CREATE_NEW_EXCLUSIVE) != 0) return 1;
    shmrpc_lock_close(l);
    return 0;
}

static int check_attach(void *arg, int rc)
{
    struct lcase *c = arg;
    if (rc != 0) {
        if (c->l) return done(c, faults_say("status %d and a handle", rc));
        if (!faults_status(rc)) return done(c, 1);
        if (open_mode(c, &c->l, SHMRPC_LOCK_CONNECT_OR_CREATE) != 0) return done(c, 1);
    }
    return done(c, works(c->l));
}

/* The lock open, and held by a process that died holding it. */
static int setup_dead_holder(void *arg)
{
    struct lcase *c = arg;
    if (open_mode(c, &c->l, SHMRPC_LOCK_CREATE_NEW_EXCLUSIVE) != 0) return 1;
    pid_t pid = fork();
    if (pid < 0) return faults_say("fork");
    if (pid == 0) _exit(shmrpc_lock_acquire(c->l, 0) == 0 ? 0 : 1);
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return faults_say("the holder did not take the lock");
    return 0;
}

static int run_take_over(void *arg)
{
    struct lcase *c = arg;
    return shmrpc_lock_acquire(c->l, 0);
}

/* Taken from the dead (SHMRPC_EOWNERDEAD), or, when the holder's death could not be read,
 * not taken at all (SHMRPC_EBUSY, or SHMRPC_ETIMEDOUT): then taken once it can be, within
 * a bound far above the probe's period. */
static int check_take_over(void *arg, int rc)
{
    struct lcase *c = arg;
    if (rc == SHMRPC_EBUSY || rc == SHMRPC_ETIMEDOUT) {
        if (!faults_hit()) return done(c, faults_say("not taken, and no fault"));
        if (shmrpc_lock_is_mine(c->l)) return done(c, faults_say("status %d, and mine", rc));
        /* Not at once: an acquire looks at the owner at most every PROBE_NS (lock.c). */
        rc = shmrpc_lock_acquire(c->l, 5000);
    }
    if (rc != SHMRPC_EOWNERDEAD)
        return done(c, faults_say("status %d from a dead holder: %s", rc, shmrpc_errmsg()));
    if (!shmrpc_lock_is_mine(c->l)) return done(c, faults_say("taken over, and not mine"));
    if (shmrpc_lock_release(c->l) != 0) return done(c, faults_say("release"));
    return done(c, works(c->l));
}

static void sweep(const char *what, int (*setup)(void *), int (*run)(void *),
                  int (*check)(void *, int), shmrpc_lock_mode mode, bool locked, int min_fired)
{
    struct lcase c = {0};
    snprintf(c.name, sizeof c.name, "%s%s", token, what);
    shmrpc_lock_opts_init(&c.o);
    c.o.mode = mode;
    c.o.initially_locked = locked;
    faults_case fc = {
        .name = what, .setup = setup, .run = run, .check = check, .arg = &c, .token = token};
    int fired = faults_sweep(&fc, RUNS_MAX);
    print_message("# %s: %d faults\n", what, fired);
    shmrpc_lock_unlink(c.name);
    assert_true(fired >= min_fired);
}

static void opens(void **state)
{
    (void)state;
    sweep("open-creates", NULL, run_open, check_create, SHMRPC_LOCK_CONNECT_OR_CREATE, false, 5);
    sweep("open-exclusive-held", NULL, run_open, check_create, SHMRPC_LOCK_CREATE_NEW_EXCLUSIVE,
          true, 5);
    sweep("open-attaches", setup_made, run_open, check_attach, SHMRPC_LOCK_CONNECT_TO_EXISTING,
          false, 3);
    sweep("open-or-create-attaches", setup_made, run_open, check_attach,
          SHMRPC_LOCK_CONNECT_OR_CREATE, false, 3);
    sweep("open-overwrites", setup_made, run_open, check_attach, SHMRPC_LOCK_CREATE_NEW_OVERWRITE,
          false, 5);
}

static void take_over(void **state)
{
    (void)state;
    sweep("take-over", setup_dead_holder, run_take_over, check_take_over,
          SHMRPC_LOCK_CONNECT_OR_CREATE, false, 1);
}

int main(void)
{
    snprintf(token, sizeof token, "lflt.%d.", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(opens),
        cmocka_unit_test(take_over),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
