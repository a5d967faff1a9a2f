/* SPDX-License-Identifier: MIT */
/* Maps under failing system calls (common/faults.h): each public operation run with its
 * 1st, 2nd, ... call of malloc, mmap, shm_open, ftruncate... failing, each in its own
 * child. A failure returns the status of the call that failed (SHMRPC_ENOMEM, or
 * SHMRPC_ESYS with its errno) and a message; a write that failed changed nothing, one
 * that succeeded wrote all it says; the handle still works; no descriptor is left open
 * and no segment behind (a failed create left no name: the next exclusive create
 * succeeds; a failed growth left no generation file); and the same operation succeeds
 * once nothing fails. Leaks are LeakSanitizer's (the ASan build) at each child's exit. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
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

#define RUNS_MAX 500 /* far more calls than any operation makes */
#define TYPE "{str:str}"
#define KEYS 40 /* the puts of a growth: more than the 8 slots and 4 KiB of a first table */

/* Every map of this program holds token in its name (the sweep counts what is left). */
static char token[32];

struct mcase {
    char name[96];
    shmrpc_map_opts o; /* of run's open */
    shmrpc_map *m;     /* the handle run uses, or opens */
    shmrpc_map *other; /* a second handle, which grew the map under m */
    int done;          /* the puts of a growth that succeeded */
    uint64_t count;    /* what run counted */
    bool stale_gen_ok; /* a growth's stat failed: the old generation's file may stay */
};

static void opts(shmrpc_map_opts *o, shmrpc_map_mode mode)
{
    shmrpc_map_opts_init(o);
    o->mode = mode;
    o->initial_slots = 8;
    o->initial_bytes = 4096;
    o->type = TYPE;
}

static int open_mode(struct mcase *c, shmrpc_map **m, shmrpc_map_mode mode)
{
    shmrpc_map_opts o;
    opts(&o, mode);
    int rc = shmrpc_map_open(m, c->name, &o);
    if (rc != 0) faults_say("open of %s (mode %d): %s", c->name, (int)mode, shmrpc_errmsg());
    return rc;
}

static int put(shmrpc_map *m, const char *k, const char *v)
{
    int rc = shmrpc_map_put(m, k, strlen(k), v, strlen(v));
    if (rc != 0) faults_say("put %s: %s", k, shmrpc_errmsg());
    return rc;
}

/* The value of k is want (NULL: k is absent). */
static int holds(shmrpc_map *m, const char *k, const char *want)
{
    char buf[256];
    size_t len = 0;
    int rc = shmrpc_map_get(m, k, strlen(k), buf, sizeof buf, &len);
    if (!want) return rc == SHMRPC_ENOENT ? 0 : faults_say("get %s: status %d, want none", k, rc);
    if (rc != 0) return faults_say("get %s: status %d, want '%s'", k, rc, want);
    if (len != strlen(want) || memcmp(buf, want, len) != 0)
        return faults_say("get %s: '%.*s', want '%s'", k, (int)len, buf, want);
    return 0;
}

/* The map holds exactly one=1 and two=2, its table checks out, and a write goes in. */
static int holds_two(shmrpc_map *m)
{
    uint64_t n = 0;
    if (shmrpc_map_size(m, &n) != 0 || n != 2)
        return faults_say("%llu keys, not 2", (unsigned long long)n);
    return holds(m, "one", "1") || holds(m, "two", "2");
}

/* The map's files are its header, its lock and one generation: none that an earlier
 * generation or a failed growth left. Documented (map_generation.c, grow): a growth that could not
 * tell whether the map's name is still its own (a stat failed) leaves the old generation's
 * file to the map's removal (done() removes it, and the sweep sees that nothing is left). */
static int three_files(struct mcase *c)
{
    unsigned n = faults_shm_files(c->name);
    unsigned want = c->stale_gen_ok ? 4 : 3;
    return n == want ? 0 : faults_say("%u files of map %s in /dev/shm, not %u", n, c->name, want);
}

static int works(struct mcase *c, shmrpc_map *m)
{
    shmrpc_map_info info;
    if (shmrpc_map_get_info(m, &info) != 0 || strcmp(info.type, TYPE) != 0)
        return faults_say("info: the type is not " TYPE);
    if (shmrpc_map_check(m) != 0) return faults_say("check: %s", shmrpc_errmsg());
    if (three_files(c)) return 1;
    if (put(m, "works", "yes") || holds(m, "works", "yes")) return 1;
    return shmrpc_map_remove(m, "works", 5) != 0 ? faults_say("remove: %s", shmrpc_errmsg()) : 0;
}

/* Closes what the case holds and removes its map. */
static int done(struct mcase *c, int failed)
{
    shmrpc_map_close(c->m);
    shmrpc_map_close(c->other);
    c->m = c->other = NULL;
    shmrpc_map_unlink_quiet(c->name);
    return failed;
}

/* --- opening --------------------------------------------------------------------------- */

static int run_open(void *arg)
{
    struct mcase *c = arg;
    return shmrpc_map_open(&c->m, c->name, &c->o);
}

/* An open that made no map left no name: an exclusive create succeeds after it. */
static int check_create(void *arg, int rc)
{
    struct mcase *c = arg;
    if (rc == 0) return done(c, c->m ? works(c, c->m) : faults_say("status 0 and no handle"));
    if (c->m) return done(c, faults_say("status %d and a handle", rc));
    if (!faults_status(rc)) return done(c, 1);
    if (open_mode(c, &c->m, SHMRPC_MAP_CREATE_NEW_EXCLUSIVE) != 0) return done(c, 1);
    return done(c, works(c, c->m));
}

/* A map holding one=1 and two=2, closed. */
static int setup_two(void *arg)
{
    struct mcase *c = arg;
    shmrpc_map *m;
    if (open_mode(c, &m, SHMRPC_MAP_CREATE_NEW_EXCLUSIVE) != 0) return 1;
    int rc = put(m, "one", "1") || put(m, "two", "2");
    shmrpc_map_close(m);
    return rc;
}

/* Opening an existing map failed or not, its entries are there. */
static int check_attach(void *arg, int rc)
{
    struct mcase *c = arg;
    if (rc != 0) {
        if (c->m) return done(c, faults_say("status %d and a handle", rc));
        if (!faults_status(rc)) return done(c, 1);
        if (open_mode(c, &c->m, SHMRPC_MAP_CONNECT_TO_EXISTING) != 0) return done(c, 1);
    }
    return done(c, holds_two(c->m) || works(c, c->m));
}

/* Overwriting: a failure leaves the old map or none, never one half-made (the next open
 * that may create succeeds); a success leaves a new, empty one. */
static int check_overwrite(void *arg, int rc)
{
    struct mcase *c = arg;
    uint64_t n = 0;
    if (rc == 0) {
        if (shmrpc_map_size(c->m, &n) != 0 || n != 0) return done(c, faults_say("not empty"));
        return done(c, works(c, c->m));
    }
    if (c->m) return done(c, faults_say("status %d and a handle", rc));
    if (!faults_status(rc)) return done(c, 1);
    if (open_mode(c, &c->m, SHMRPC_MAP_CONNECT_OR_CREATE) != 0) return done(c, 1);
    if (shmrpc_map_size(c->m, &n) != 0) return done(c, faults_say("size"));
    if (n != 0 && holds_two(c->m)) return done(c, faults_say("neither the old map nor none"));
    return done(c, works(c, c->m));
}

static void sweep(const char *what, int (*setup)(void *), int (*run)(void *),
                  int (*check)(void *, int), shmrpc_map_mode mode, int min_fired)
{
    struct mcase c = {0};
    snprintf(c.name, sizeof c.name, "%s%s", token, what);
    opts(&c.o, mode);
    faults_case fc = {
        .name = what, .setup = setup, .run = run, .check = check, .arg = &c, .token = token};
    int fired = faults_sweep(&fc, RUNS_MAX);
    print_message("# %s: %d faults\n", what, fired);
    shmrpc_map_unlink_quiet(c.name);
    assert_true(fired >= min_fired);
}

static void open_creates(void **state)
{
    (void)state;
    sweep("open-creates", NULL, run_open, check_create, SHMRPC_MAP_CONNECT_OR_CREATE, 6);
}

static void open_exclusive(void **state)
{
    (void)state;
    sweep("open-exclusive", NULL, run_open, check_create, SHMRPC_MAP_CREATE_NEW_EXCLUSIVE, 6);
}

static void open_attaches(void **state)
{
    (void)state;
    sweep("open-attaches", setup_two, run_open, check_attach, SHMRPC_MAP_CONNECT_TO_EXISTING, 4);
}

static void open_or_create_attaches(void **state)
{
    (void)state;
    sweep("open-or-create-attaches", setup_two, run_open, check_attach,
          SHMRPC_MAP_CONNECT_OR_CREATE, 4);
}

static void open_overwrites(void **state)
{
    (void)state;
    sweep("open-overwrites", setup_two, run_open, check_overwrite, SHMRPC_MAP_CREATE_NEW_OVERWRITE,
          6);
}

/* --- operations on an open map -------------------------------------------------------- */

/* The map open, holding one=1 and two=2. */
static int setup_open(void *arg)
{
    struct mcase *c = arg;
    return setup_two(arg) || open_mode(c, &c->m, SHMRPC_MAP_CONNECT_TO_EXISTING);
}

static void key_of(int i, char *buf)
{
    snprintf(buf, 16, "k%02d", i);
}

/* KEYS puts, which grow the table more than once; c->done counts those that succeeded. */
static int run_growth(void *arg)
{
    struct mcase *c = arg;
    for (c->done = 0; c->done < KEYS; c->done++) {
        char k[16], v[64];
        key_of(c->done, k);
        snprintf(v, sizeof v, "value %d, long enough to fill the first table's bytes", c->done);
        int rc = shmrpc_map_put(c->m, k, strlen(k), v, strlen(v));
        if (rc != 0) return rc;
    }
    return 0;
}

/* Every put that succeeded is there, the one that failed and those after it are not, and
 * they succeed now. */
static int check_growth(void *arg, int rc)
{
    struct mcase *c = arg;
    if (rc != 0 && !faults_status(rc)) return done(c, 1);
    c->stale_gen_ok = rc == 0 && faults_hit();
    for (int i = 0; i < KEYS; i++) {
        char k[16], v[64];
        key_of(i, k);
        snprintf(v, sizeof v, "value %d, long enough to fill the first table's bytes", i);
        if (holds(c->m, k, i < c->done ? v : NULL)) return done(c, 1);
    }
    if (holds(c->m, "one", "1") || holds(c->m, "two", "2")) return done(c, 1);
    if (rc != 0 && run_growth(c) != 0)
        return done(c, faults_say("the puts after: %s", shmrpc_errmsg()));
    shmrpc_map_info info;
    if (shmrpc_map_get_info(c->m, &info) != 0 || info.growths == 0 || info.count != KEYS + 2)
        return done(c, faults_say("%llu keys, %llu growths", (unsigned long long)info.count,
                                  (unsigned long long)info.growths));
    return done(c, works(c, c->m));
}

/* The map open twice, grown by the other handle: m's next call maps the new table. */
static int setup_follow(void *arg)
{
    struct mcase *c = arg;
    if (setup_open(arg) || open_mode(c, &c->other, SHMRPC_MAP_CONNECT_TO_EXISTING)) return 1;
    shmrpc_map *m = c->m;
    c->m = c->other;
    int rc = run_growth(c);
    c->m = m;
    return rc != 0 ? faults_say("the other's puts: %s", shmrpc_errmsg()) : 0;
}

static int run_follow(void *arg)
{
    struct mcase *c = arg;
    char buf[16];
    size_t len;
    return shmrpc_map_get(c->m, "one", 3, buf, sizeof buf, &len);
}

/* A reader that could not map the new table failed its get with the fault's status, and
 * reads the map whole once nothing fails. */
static int check_follow(void *arg, int rc)
{
    struct mcase *c = arg;
    if (rc != 0 && !faults_status(rc)) return done(c, 1);
    uint64_t n = 0;
    if (shmrpc_map_size(c->m, &n) != 0 || n != KEYS + 2)
        return done(c, faults_say("%llu keys, not %d", (unsigned long long)n, KEYS + 2));
    return done(c, holds(c->m, "one", "1") ||
                       holds(c->m, "k39",
                             "value 39, long enough to fill the first "
                             "table's bytes") ||
                       works(c, c->m));
}

static int run_writes(void *arg)
{
    struct mcase *c = arg;
    int rc = shmrpc_map_put(c->m, "one", 3, "uno", 3);
    if (rc == 0) rc = shmrpc_map_put_if_absent(c->m, "three", 5, "3", 1);
    if (rc == 0) rc = shmrpc_map_cas(c->m, "two", 3, "2", 1, "dos", 3);
    if (rc == 0) rc = shmrpc_map_remove(c->m, "three", 5);
    return rc;
}

/* Each write is all there or not at all: the state is one of the steps' (before the
 * failing one), and the writes succeed from it now. */
static int check_writes(void *arg, int rc)
{
    struct mcase *c = arg;
    if (rc != 0 && !faults_status(rc)) return done(c, 1);
    if (rc == 0)
        return done(c, holds(c->m, "one", "uno") || holds(c->m, "two", "dos") ||
                           holds(c->m, "three", NULL) || works(c, c->m));
    return done(c, works(c, c->m));
}

static int run_clear(void *arg)
{
    struct mcase *c = arg;
    return shmrpc_map_clear(c->m);
}

static int check_clear(void *arg, int rc)
{
    struct mcase *c = arg;
    c->stale_gen_ok = rc == 0 && faults_hit(); /* a clear is a growth to an empty table */
    if (rc != 0) {
        if (!faults_status(rc) || holds_two(c->m)) return done(c, 1);
        if (shmrpc_map_clear(c->m) != 0) return done(c, faults_say("clear: %s", shmrpc_errmsg()));
    }
    uint64_t n = 1;
    if (shmrpc_map_size(c->m, &n) != 0 || n != 0)
        return done(c, faults_say("not empty after clear"));
    return done(c, works(c, c->m));
}

static int count_entry(void *arg, const void *k, size_t klen, const void *v, size_t vlen)
{
    (void)k, (void)klen, (void)v, (void)vlen;
    ((struct mcase *)arg)->count++;
    return 0;
}

static int run_reads(void *arg)
{
    struct mcase *c = arg;
    char buf[16];
    size_t len;
    shmrpc_map_view v;
    int rc = shmrpc_map_get(c->m, "one", 3, buf, sizeof buf, &len);
    if (rc == 0) rc = shmrpc_map_get_view(c->m, "two", 3, &v);
    if (rc == 0 && (v.len != 1 || memcmp(v.data, "2", 1) != 0)) rc = faults_say("view of two");
    if (rc == 0) rc = shmrpc_map_iterate(c->m, count_entry, c);
    if (rc == 0 && c->count != 2)
        rc = faults_say("iterated over %llu", (unsigned long long)c->count);
    return rc;
}

static int check_reads(void *arg, int rc)
{
    struct mcase *c = arg;
    if (rc != 0 && !faults_status(rc)) return done(c, 1);
    return done(c, holds_two(c->m) || works(c, c->m));
}

static int run_unlink(void *arg)
{
    struct mcase *c = arg;
    return shmrpc_map_unlink(c->name);
}

/* A removal that failed removed nothing: the map opens whole; one that succeeded left no
 * file of the map. */
static int check_unlink(void *arg, int rc)
{
    struct mcase *c = arg;
    if (rc == 0) {
        unsigned n = faults_shm_files(c->name);
        return done(c, n ? faults_say("%u files of the removed map", n) : 0);
    }
    if (!faults_status(rc)) return done(c, 1);
    if (open_mode(c, &c->m, SHMRPC_MAP_CONNECT_TO_EXISTING) != 0) return done(c, 1);
    if (holds_two(c->m) || works(c, c->m)) return done(c, 1);
    shmrpc_map_close(c->m);
    c->m = NULL;
    if ((rc = shmrpc_map_unlink(c->name)) != 0) return faults_say("unlink: status %d", rc);
    unsigned n = faults_shm_files(c->name);
    return n ? faults_say("%u files of the removed map", n) : 0;
}

/* Registered before the open, so run at exit after the map's removal (atexit's reverse
 * order), before what a coverage build's gcov writes then, which must not fail. */
static void stop_faults(void)
{
    faults_disarm();
}

/* A process that opens the map with auto_unlink, creating it, and exits without closing
 * it: its status through a pipe. With faults_inherit, its calls are the ones that fail. */
static int run_auto_unlink(void *arg)
{
    struct mcase *c = arg;
    int p[2];
    if (pipe(p) != 0) return SHMRPC_ESYS(errno);
    pid_t pid = fork();
    if (pid < 0) return SHMRPC_ESYS(errno);
    if (pid == 0) {
        close(p[0]);
        atexit(stop_faults);
        shmrpc_map_opts o;
        opts(&o, SHMRPC_MAP_CONNECT_OR_CREATE);
        o.auto_unlink = true;
        shmrpc_map *m;
        int rc = shmrpc_map_open(&m, c->name, &o);
        int ok = rc == 0 || faults_status(rc);
        if (write(p[1], &rc, sizeof rc) != sizeof rc) ok = 0;
        exit(ok ? 0 : 1); /* the map left open: removed at exit, by its creator */
    }
    close(p[1]);
    int rc = SHMRPC_EPROTO, st;
    if (read(p[0], &rc, sizeof rc) != sizeof rc) faults_say("no status from the opener");
    close(p[0]);
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        faults_say("the opener ended badly (%d)", st), rc = SHMRPC_EPROTO;
    return rc;
}

/* Whether its open failed or not, the map is gone once its creator exited: all of it when
 * it was made; its header and generations when the open failed (documented, map_open.c,
 * create_map: a create that failed leaves the lock it made, which another map of the name
 * may have taken already). */
static int check_auto_unlink(void *arg, int rc)
{
    struct mcase *c = arg;
    char hdr[128], gens[128];
    snprintf(hdr, sizeof hdr, "shmrpc.map.%s", c->name);
    snprintf(gens, sizeof gens, "shmrpc.mapgen.%s.", c->name);
    unsigned n =
        rc == 0 ? faults_shm_files(c->name) : faults_shm_files(hdr) + faults_shm_files(gens);
    /* Documented (map_open.c, unlink_doomed): a removal at exit that cannot look at the name
     * (stat) or list the generations (opendir) leaves the map. */
    const char *what = faults_hit_name();
    if (rc == 0 && what && (!strcmp(what, "stat") || !strcmp(what, "opendir"))) n = 0;
    if (n != 0)
        return done(
            c, faults_say("%u files of an auto_unlink map after its creator (status %d)", n, rc));
    if (rc != 0 && rc != SHMRPC_EPROTO) return done(c, 0); /* faults_status said in the opener */
    return done(c, rc);
}

static void operations(void **state)
{
    (void)state;
    shmrpc_map_mode m = SHMRPC_MAP_CONNECT_OR_CREATE;
    sweep("growth", setup_open, run_growth, check_growth, m, 6);
    sweep("follow", setup_follow, run_follow, check_follow, m, 3);
    sweep("writes", setup_open, run_writes, check_writes, m, 0);
    sweep("clear", setup_open, run_clear, check_clear, m, 3);
    sweep("reads", setup_open, run_reads, check_reads, m, 0);
    sweep("unlink", setup_two, run_unlink, check_unlink, m, 1);
    /* The opener's calls, not the fork that makes it. */
    struct mcase c = {0};
    snprintf(c.name, sizeof c.name, "%sauto-unlink", token);
    faults_case fc = {.name = "auto-unlink",
                      .which = "malloc,calloc,realloc,strdup,mmap,ftruncate,shm_open,fchmod,"
                               "fstat,stat,opendir",
                      .run = run_auto_unlink,
                      .check = check_auto_unlink,
                      .arg = &c,
                      .token = token,
                      .inherit = true};
    int fired = faults_sweep(&fc, RUNS_MAX);
    print_message("# auto-unlink: %d faults\n", fired);
    shmrpc_map_unlink_quiet(c.name);
    assert_true(fired >= 10);
}

int main(void)
{
    snprintf(token, sizeof token, "mflt.%d.", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_creates),    cmocka_unit_test(open_exclusive),
        cmocka_unit_test(open_attaches),   cmocka_unit_test(open_or_create_attaches),
        cmocka_unit_test(open_overwrites), cmocka_unit_test(operations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
