/* SPDX-License-Identifier: MIT */
/* service.ini read with each of the reader's allocations and file calls failing in turn
 * (common/faults.h): the load fails with SHMRPC_ENOMEM when memory ran out, or with
 * SHMRPC_EINVAL and an error of the file that names the failed call's reason (the file
 * cannot be read; a stat of an exec= program or of a log folder failed); or it succeeds
 * with what it reads when nothing fails, to the byte.
 * Never a crash, and no leak (LeakSanitizer, in the ASan build, at each child's exit). */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <shmrpc/status.h>

#include "config.h"
#include "faults.h"

#define RUNS_MAX 3000 /* far more calls than a load makes */
#define SERVICES 60

/* Every kind of section and value: defaults, the page, an exec= over two lines, a module,
 * TCP, sizes and times, a list. */
static const char ini_text[] = "# comment\n"
                               "[web monitor]\n"
                               "port = 5155\n"
                               "host = 127.0.0.1\n"
                               "[defaults]\n"
                               "log_dir = logs/\n"
                               "restart_backoff_ms = 200\n"
                               "stop_timeout_s = 3\n"
                               "max_proc_num = 2\n"
                               "[alpha]\n"
                               "exec = /bin/sh -c 'exit 0'\n"
                               "  --more \"quoted words\"\n"
                               "tcp_port = 7001\n"
                               "min_proc_num = 1\n"
                               "[beta]\n"
                               "exec = /bin/true\n"
                               "shm_name = beta-shm\n"
                               "max_proc_num = 1\n";

typedef struct ccase {
    char dir[64];
    char path[128];
    shmrpc_buf want; /* cfg_write of the load when nothing fails */
    shmrpc_buf err;
} ccase;

static int load(ccase *c, shmrpc_buf *written)
{
    cfg_opts o;
    cfg_opts_init(&o);
    o.online_cpus = 2;
    cfg_file *f = NULL;
    shmrpc_buf_clear(&c->err);
    int rc = cfg_load(c->path, &o, &f, &c->err);
    if (rc == 0 && written) cfg_write(f, written);
    if (rc == 0)
        cfg_free(f);
    else if (f)
        rc = faults_say("status %d and a configuration", rc);
    return rc;
}

static int setup(void *arg)
{
    ccase *c = arg;
    shmrpc_buf_init(&c->want);
    shmrpc_buf_init(&c->err);
    if (load(c, &c->want) != 0)
        return faults_say("setup: %.*s", (int)c->err.len, (const char *)c->err.data);
    return 0;
}

static int run(void *arg)
{
    ccase *c = arg;
    shmrpc_buf got;
    shmrpc_buf_init(&got);
    int rc = load(c, &got);
    if (rc == 0 && got.err)
        rc = got.err; /* cfg_write's buffer could not grow: it says so */
    else if (rc == 0 && (got.len != c->want.len || memcmp(got.data, c->want.data, got.len) != 0))
        rc = faults_say("loaded, and not what it loads when nothing fails:\n%.*s", (int)got.len,
                        (const char *)got.data);
    shmrpc_buf_destroy(&got);
    return rc;
}

/* The failure of the load, as cfg_load promises it (config.h): SHMRPC_ENOMEM when memory
 * ran out (its callers say so, with the path), or SHMRPC_EINVAL with the file's errors in
 * err, one of which names the failed call's reason. */
static bool said(ccase *c, int rc)
{
    int e = faults_hit_errno();
    const char *why = strerror(e);
    if (rc == SHMRPC_ENOMEM && e == ENOMEM) return true;
    if (rc != SHMRPC_EINVAL) return !faults_say("status %d after %s failed", rc, faults_hit_name());
    if (memmem(c->err.data, c->err.len, why, strlen(why)) != NULL) return true;
    return !faults_say("status %d after %s failed (%s), and the message does not say so: %.*s", rc,
                       faults_hit_name(), why, (int)c->err.len, (const char *)c->err.data);
}

static int check(void *arg, int rc)
{
    ccase *c = arg;
    int bad = rc != 0 && faults_hit() && !said(c, rc);
    if (rc != 0 && !faults_hit()) bad = faults_say("status %d with no fault", rc);
    shmrpc_buf again;
    shmrpc_buf_init(&again);
    if (!bad && load(c, &again) != 0) bad = faults_say("again, unarmed: it fails");
    if (!bad && (again.len != c->want.len || memcmp(again.data, c->want.data, again.len) != 0))
        bad = faults_say("again, unarmed: another configuration");
    shmrpc_buf_destroy(&again);
    shmrpc_buf_destroy(&c->want);
    shmrpc_buf_destroy(&c->err);
    return bad;
}

static void sweep(const char *which)
{
    ccase c = {0};
    strcpy(c.dir, "/tmp/shmrpc-config-fault-XXXXXX");
    assert_non_null(mkdtemp(c.dir));
    snprintf(c.path, sizeof c.path, "%s/service.ini", c.dir);
    char logs[160];
    snprintf(logs, sizeof logs, "%s/logs", c.dir);
    FILE *f = fopen(c.path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(ini_text, 1, sizeof ini_text - 1, f), sizeof ini_text - 1);
    /* Services enough that the reader's memory grows several times over. */
    for (int i = 0; i < SERVICES; i++)
        fprintf(f, "[s%03d]\nexec = /bin/true --n %d\nshm_name = s%03d\n", i, i, i);
    fclose(f);
    faults_case fc = {
        .name = which, .which = which, .setup = setup, .run = run, .check = check, .arg = &c};
    int fired = faults_sweep(&fc, RUNS_MAX);
    print_message("# %s: %d faults\n", which, fired);
    rmdir(logs); /* a check may have made it */
    unlink(c.path);
    rmdir(c.dir);
    assert_true(fired >= 1);
}

static void allocations_fail(void **state)
{
    (void)state;
    sweep("malloc,calloc,realloc,strdup");
}

static void file_calls_fail(void **state)
{
    (void)state;
    sweep("open,fstat,read,stat,lstat,opendir,mkdir");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(allocations_fail),
        cmocka_unit_test(file_calls_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
