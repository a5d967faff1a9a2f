/* SPDX-License-Identifier: MIT */
/* Shared maps with real processes: every operation and option, growth to many keys while
 * two readers check values, writers killed with SIGKILL at random points of puts, removes
 * and growths followed by a full consistency check, a dead lock holder, 'nobody' refused,
 * corrupt segments refused. Every child is bounded by alarm() and reaped, every map
 * unlinked, even when a test fails. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <shmrpc.h>

#include "kids.h"
#include "skips.h"

#define CHILD_ALARM_S 100 /* no child outlives a stuck test by more than this */
#define MAX_NAMES 8
#define NOBODY 65534

/* --- children and names: what teardown cleans up -------------------------------------- */

static char names[MAX_NAMES][SHMRPC_MAP_NAME_MAX + 1];
static int nnames;
/* Files a test makes in /dev/shm besides maps, removed by teardown. */
static char files[MAX_NAMES][512];
static int nfiles;

static const char *new_name(const char *what)
{
    assert_true(nnames < MAX_NAMES);
    char *n = names[nnames++];
    snprintf(n, sizeof names[0], "map_test.%d.%s", (int)getpid(), what);
    return n;
}

/* The path of a file that teardown removes, made from fmt. */
__attribute__((format(printf, 1, 2))) static const char *new_file(const char *fmt, ...)
{
    assert_true(nfiles < MAX_NAMES);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(files[nfiles], sizeof files[0], fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof files[0]);
    return files[nfiles++];
}

static bool shm_exists(const char *kind, const char *name, const char *suffix)
{
    char path[512];
    snprintf(path, sizeof path, "/dev/shm/shmrpc.%s.%s%s", kind, name, suffix);
    return access(path, F_OK) == 0;
}

/* The number in the file name of generation shown (1, 2, ...) of the map name: its files
 * are numbered from the header's first (at byte 56), the map's creation time in
 * microseconds. 0 when the header cannot be read. */
static uint64_t gen_number(const char *name, uint64_t shown)
{
    char path[512];
    snprintf(path, sizeof path, "/dev/shm/shmrpc.map.%s", name);
    int fd = open(path, O_RDONLY);
    uint64_t first = 0;
    if (fd >= 0 && pread(fd, &first, 8, 56) != 8) first = 0;
    if (fd >= 0) close(fd);
    return first ? first + shown - 1 : 0;
}

/* The path of the file of generation shown of the map name; "" when its header cannot be
 * read. */
static const char *gen_file(char *path, size_t cap, const char *name, uint64_t shown)
{
    uint64_t number = gen_number(name, shown);
    if (number == 0)
        path[0] = '\0';
    else
        snprintf(path, cap, "/dev/shm/shmrpc.mapgen.%s.%" PRIu64, name, number);
    return path;
}

/* Whether any generation file of the map name is left, whatever its number. */
static bool any_gen_left(const char *name)
{
    char prefix[512];
    int n = snprintf(prefix, sizeof prefix, "shmrpc.mapgen.%s.", name);
    DIR *d = opendir("/dev/shm");
    assert_non_null(d);
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d)))
        found = strncmp(de->d_name, prefix, (size_t)n) == 0;
    closedir(d);
    return found;
}

static pid_t spawn(int (*fn)(void *), void *arg)
{
    return test_kid_spawn(fn, arg, CHILD_ALARM_S);
}

static int setup(void **state)
{
    (void)state;
    nnames = 0;
    nfiles = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    test_kids_kill_all();
    for (int i = 0; i < nnames; i++)
        shmrpc_map_unlink_quiet(names[i]);
    nnames = 0;
    for (int i = 0; i < nfiles; i++)
        unlink(files[i]);
    nfiles = 0;
    return 0;
}

static void *shared(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    return p;
}

static shmrpc_map *open_map(const char *name, const shmrpc_map_opts *o)
{
    shmrpc_map *m = NULL;
    int rc = shmrpc_map_open(&m, name, o);
    if (rc != 0) fprintf(stderr, "# open %s: %s: %s\n", name, shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(rc, 0);
    return m;
}

static shmrpc_map_opts small_opts(shmrpc_map_mode mode)
{
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.mode = mode;
    o.initial_slots = 8;
    o.initial_bytes = 4096;
    return o;
}

static int put_s(shmrpc_map *m, const char *k, const char *v)
{
    return shmrpc_map_put(m, k, strlen(k), v, strlen(v));
}

/* The value of k as a string, or NULL when absent. */
static const char *get_s(shmrpc_map *m, const char *k)
{
    static char buf[4096];
    size_t len;
    int rc = shmrpc_map_get(m, k, strlen(k), buf, sizeof buf - 1, &len);
    if (rc == SHMRPC_ENOENT) return NULL;
    assert_int_equal(rc, 0);
    buf[len] = 0;
    return buf;
}

/* --- every operation ----------------------------------------------------------------- */

struct tally {
    int n;
    size_t bytes;
};

static int count_entry(void *arg, const void *k, size_t klen, const void *v, size_t vlen)
{
    (void)k;
    (void)v;
    struct tally *t = arg;
    t->n++;
    t->bytes += klen + vlen;
    return 0;
}

static int stop_at_two(void *arg, const void *k, size_t klen, const void *v, size_t vlen)
{
    (void)k, (void)klen, (void)v, (void)vlen;
    return ++*(int *)arg == 2 ? 42 : 0;
}

static void operations(void **state)
{
    (void)state;
    const char *name = new_name("ops");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(name, &o);
    uint64_t n, c0, c1;
    assert_int_equal(shmrpc_map_size(m, &n), 0);
    assert_int_equal(n, 0);
    assert_null(get_s(m, "a"));
    assert_string_equal(shmrpc_errmsg(), "no such key");
    assert_int_equal(shmrpc_map_changes(m, &c0), 0);
    assert_int_equal(put_s(m, "a", "one"), 0);
    assert_string_equal(get_s(m, "a"), "one");
    assert_int_equal(shmrpc_map_changes(m, &c1), 0);
    assert_int_equal(c1, c0 + 1);
    assert_int_equal(put_s(m, "a", "uno"), 0);
    assert_string_equal(get_s(m, "a"), "uno");
    /* A buffer too small: the length is told, nothing copied past cap. */
    char small[2] = {'x', 'x'};
    size_t len = 0;
    assert_int_equal(shmrpc_map_get(m, "a", 1, small, 2, &len), SHMRPC_ETOOBIG);
    assert_int_equal(len, 3);
    assert_memory_equal(small, "xx", 2);
    /* The view, and whether it is current. */
    shmrpc_map_view v;
    assert_int_equal(shmrpc_map_get_view(m, "a", 1, &v), 0);
    assert_int_equal(v.len, 3);
    assert_memory_equal(v.data, "uno", 3);
    assert_true(shmrpc_map_view_current(m, &v));
    assert_int_equal(put_s(m, "a", "eins"), 0);
    assert_false(shmrpc_map_view_current(m, &v));
    assert_memory_equal(v.data, "uno", 3); /* an old entry is never written over */
    /* put_if_absent and compare-and-swap. */
    assert_int_equal(shmrpc_map_put_if_absent(m, "a", 1, "x", 1), SHMRPC_EBUSY);
    assert_int_equal(shmrpc_map_put_if_absent(m, "b", 1, "two", 3), 0);
    assert_int_equal(shmrpc_map_cas(m, "b", 1, "zwei", 4, "deux", 4), SHMRPC_EBUSY);
    assert_int_equal(shmrpc_map_cas(m, "c", 1, "", 0, "x", 1), SHMRPC_ENOENT);
    /* An expected value of the stored one's length is refused when any byte differs: the
     * first, a middle one, the last, or only in case; the stored value stays. */
    static const char *const near[] = {"xwo", "tXo", "twx", "TWO", "Two", "twO"};
    for (size_t i = 0; i < sizeof near / sizeof near[0]; i++) {
        assert_int_equal(shmrpc_map_cas(m, "b", 1, near[i], 3, "bad", 3), SHMRPC_EBUSY);
        assert_string_equal(shmrpc_errmsg(), "the value differs from the expected one");
        assert_string_equal(get_s(m, "b"), "two");
    }
    /* A prefix or an extension of the stored value is not it either. */
    assert_int_equal(shmrpc_map_cas(m, "b", 1, "tw", 2, "bad", 3), SHMRPC_EBUSY);
    assert_int_equal(shmrpc_map_cas(m, "b", 1, "two\0", 4, "bad", 3), SHMRPC_EBUSY);
    assert_string_equal(get_s(m, "b"), "two");
    assert_int_equal(shmrpc_map_cas(m, "b", 1, "two", 3, "deux", 4), 0);
    assert_string_equal(get_s(m, "b"), "deux");
    /* The old value no longer matches once replaced. */
    assert_int_equal(shmrpc_map_cas(m, "b", 1, "two", 3, "bad", 3), SHMRPC_EBUSY);
    assert_string_equal(get_s(m, "b"), "deux");
    /* Empty keys and values are keys and values. */
    assert_int_equal(shmrpc_map_put(m, "", 0, "", 0), 0);
    assert_int_equal(shmrpc_map_get(m, "", 0, small, 0, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(shmrpc_map_size(m, &n), 0);
    assert_int_equal(n, 3);
    /* remove */
    assert_int_equal(shmrpc_map_remove(m, "b", 1), 0);
    assert_int_equal(shmrpc_map_remove(m, "b", 1), SHMRPC_ENOENT);
    assert_null(get_s(m, "b"));
    /* Iteration over a snapshot, stopping early with fn's status. */
    struct tally t = {0};
    assert_int_equal(shmrpc_map_iterate(m, count_entry, &t), 0);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.bytes, 1 + 4);
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(put_s(m, k, k), 0);
    }
    int seen = 0;
    assert_int_equal(shmrpc_map_iterate(m, stop_at_two, &seen), 42);
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_int_equal(info.count, 102);
    assert_true(info.growths >= 3); /* 8 slots to 256 at least */
    assert_int_equal(info.creator, getpid());
    assert_int_equal(shmrpc_map_check(m), 0);
    char *text = NULL;
    size_t tlen = 0;
    FILE *f = open_memstream(&text, &tlen);
    assert_int_equal(shmrpc_map_print_status(m, f), 0);
    fclose(f);
    assert_non_null(strstr(text, "keys: 102\n"));
    free(text);
    /* clear: a new, empty generation of the initial geometry. */
    assert_int_equal(shmrpc_map_clear(m), 0);
    assert_int_equal(shmrpc_map_size(m, &n), 0);
    assert_int_equal(n, 0);
    assert_null(get_s(m, "a"));
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_int_equal(info.slots, 8);
    assert_int_equal(put_s(m, "after", "clear"), 0);
    assert_string_equal(get_s(m, "after"), "clear");
    /* Only the current generation's file is left. */
    char path[512];
    assert_int_equal(access(gen_file(path, sizeof path, name, info.generation), F_OK), 0);
    assert_int_equal(access(gen_file(path, sizeof path, name, info.generation - 1), F_OK), -1);
    shmrpc_map_close(m);
    assert_int_equal(shmrpc_map_unlink(name), 0);
    assert_false(shm_exists("map", name, ""));
    assert_false(shm_exists("lock.map", name, ""));
    assert_int_equal(shmrpc_map_unlink(name), SHMRPC_ENOENT);
    shmrpc_map_unlink_quiet(name);
}

static void bad_args(void **state)
{
    (void)state;
    shmrpc_map *m = NULL;
    assert_int_equal(shmrpc_map_open(&m, "bad/name", NULL), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "[A-Za-z0-9_.-]"));
    assert_int_equal(shmrpc_map_open(&m, "", NULL), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_map_open(NULL, "x", NULL), SHMRPC_EINVAL);
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.initial_slots = 2;
    assert_int_equal(shmrpc_map_open(&m, "x", &o), SHMRPC_EINVAL);
    shmrpc_map_opts_init(&o);
    o.perms = 0400;
    assert_int_equal(shmrpc_map_open(&m, "x", &o), SHMRPC_EINVAL);
    const char *name = new_name("bad");
    o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    o.max_bytes = 8192;
    m = open_map(name, &o);
    static char big[SHMRPC_MAP_KEY_MAX + 1];
    assert_int_equal(shmrpc_map_put(m, big, sizeof big, "v", 1), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_map_put(m, NULL, 1, "v", 1), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_map_put(m, "k", 1, NULL, 1), SHMRPC_EINVAL);
    /* Past max_bytes: a clear status, and nothing lost. */
    assert_int_equal(put_s(m, "keep", "me"), 0);
    assert_int_equal(shmrpc_map_put(m, "k", 1, big, 9000), SHMRPC_ETOOBIG);
    assert_non_null(strstr(shmrpc_errmsg(), "max_bytes"));
    assert_string_equal(get_s(m, "keep"), "me");
    assert_int_equal(shmrpc_map_check(m), 0);
    assert_int_equal(shmrpc_map_wait(m, 0, NULL, -5), SHMRPC_EINVAL);
    shmrpc_map_close(m);
    shmrpc_map_close(NULL);
}

/* Each option a map's open refuses: SHMRPC_EINVAL, its message, no handle, no map made. */
static void options_each_refused(void **state)
{
    (void)state;
    const char *name = new_name("opts");
    static char type[SHMRPC_MAP_TYPE_MAX + 2];
    memset(type, 't', sizeof type - 1);
    struct {
        uint32_t slots;
        uint64_t initial, max;
        int64_t lock_ms;
        const char *type, *says;
    } cases[] = {
        {7, 4096, 8192, 0, NULL, "initial_slots 7 outside [8, 2^30]"},
        {(1u << 30) + 1, 4096, 8192, 0, NULL, "initial_slots 1073741825 outside"},
        {8, 4095, 8192, 0, NULL, "initial_bytes 4095 and max_bytes 8192: want 4096 <="},
        {8, 8192, 4096, 0, NULL, "initial_bytes 8192 and max_bytes 4096"},
        {8, 4096, (UINT64_C(1) << 42) + 8, 0, NULL, "max_bytes 4398046511112"},
        {8, 4096, 8192, -5, NULL, "negative lock timeout"},
        {8, 4096, 8192, 0, type, "type signature of 65536 bytes is above 65535"},
    };
    char hdr[512];
    snprintf(hdr, sizeof hdr, "/dev/shm/shmrpc.map.%s", name);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
        o.initial_slots = cases[i].slots;
        o.initial_bytes = cases[i].initial;
        o.max_bytes = cases[i].max;
        o.lock_timeout_ms = cases[i].lock_ms;
        o.type = cases[i].type;
        shmrpc_map *m = NULL;
        assert_int_equal(shmrpc_map_open(&m, name, &o), SHMRPC_EINVAL);
        print_message("# %s\n", shmrpc_errmsg());
        assert_non_null(strstr(shmrpc_errmsg(), cases[i].says));
        assert_null(m);
        assert_int_equal(access(hdr, F_OK), -1);
    }
    /* The edges it takes: 8 slots, 4096 bytes, and no bound on the lock's wait. */
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    o.max_bytes = 4096;
    o.lock_timeout_ms = SHMRPC_MAP_WAIT_FOREVER;
    shmrpc_map *m = open_map(name, &o);
    assert_int_equal(put_s(m, "k", "v"), 0);
    assert_string_equal(get_s(m, "k"), "v");
    shmrpc_map_close(m);
}

/* Counts the calls; returns 7 at the third. */
static int stop_at_third(void *arg, const void *key, size_t klen, const void *value, size_t vlen)
{
    (void)key, (void)klen, (void)value, (void)vlen;
    return ++*(int *)arg == 3 ? 7 : 0;
}

/* The reads' arguments: a NULL map or out-pointer is SHMRPC_EINVAL with its message; a
 * non-zero return of iterate's function stops it there and is returned. */
static void read_arguments(void **state)
{
    (void)state;
    const char *name = new_name("readargs");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(name, &o);
    for (int i = 0; i < 5; i++) {
        char k[4] = {'k', (char)('0' + i), 0};
        assert_int_equal(put_s(m, k, "v"), 0);
    }
    uint64_t n = 99;
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_size(NULL, &n), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no map");
    assert_int_equal(shmrpc_map_size(m, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no place for the count");
    assert_int_equal(shmrpc_map_changes(NULL, &n), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_map_changes(m, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no place for the count");
    assert_int_equal(shmrpc_map_get_info(NULL, &info), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_map_get_info(m, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no place for the info");
    assert_int_equal(shmrpc_map_wait(NULL, 0, &n, 0), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no map");
    assert_int_equal(shmrpc_map_iterate(NULL, stop_at_third, &n), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_map_iterate(m, NULL, &n), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no function");
    assert_int_equal(n, 99);
    int calls = 0;
    assert_int_equal(shmrpc_map_iterate(m, stop_at_third, &calls), 7);
    assert_int_equal(calls, 3);
    assert_int_equal(shmrpc_map_size(m, &n), 0);
    assert_int_equal(n, 5);
    shmrpc_map_close(m);
}

/* A wait in another process (bounded by its alarm, not by its timeout): on the map named
 * name, for a change since the count since. */
struct long_wait {
    const char *name;
    uint64_t since;
};

/* Waits with a timeout too long to count in nanoseconds, with a place for the count, then
 * again from the same count without one: 0 when the first ended at the next change (the
 * count one more) and the second at once. */
static int long_waiter(void *arg)
{
    const struct long_wait *w = arg;
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, w->name, &o) != 0) return 10;
    uint64_t now = 0;
    int rc = shmrpc_map_wait(m, w->since, &now, INT64_MAX / 1000);
    int again = rc == 0 ? shmrpc_map_wait(m, w->since, NULL, INT64_MAX) : -1;
    if (rc != 0 || again != 0)
        fprintf(stderr, "# long waits: %s, then %d: %s\n", shmrpc_strerror(rc), again,
                shmrpc_errmsg());
    shmrpc_map_close(m);
    return rc != 0 ? 11 : now != w->since + 1 ? 12 : again != 0 ? 13 : 0;
}

/* Checks that the one entry iterate shows is "big" with the pattern of BIG_VALUE bytes. */
#define BIG_VALUE 20000
static int check_big(void *arg, const void *key, size_t klen, const void *value, size_t vlen)
{
    const uint8_t *v = value;
    int *seen = arg;
    if (klen != 3 || memcmp(key, "big", 3) != 0 || vlen != BIG_VALUE) return 1;
    for (size_t i = 0; i < vlen; i++)
        if (v[i] != (uint8_t)(i * 7 + 1)) return 2;
    ++*seen;
    return 0;
}

/* The calls' arguments that bad_args and read_arguments leave: a NULL map to each write, to
 * get, view, check and print_status is SHMRPC_EINVAL "no map" (and no lock); a NULL key
 * of some length to remove and get, or a key or value above its maximum, is refused with
 * a message naming it; get's len may be NULL; a view is current only for its own
 * generation and slot; a wait with no place for the count, or with a timeout too long to
 * count in nanoseconds, returns at the next change; a value larger than iterate's first
 * buffer is shown whole. */
static void more_arguments(void **state)
{
    (void)state;
    const char *name = new_name("moreargs");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(name, &o);
    assert_int_equal(put_s(m, "k", "v"), 0);
    shmrpc_map_view view;
    char buf[8] = {0};
    size_t len = 99;
    assert_int_equal(shmrpc_map_put(NULL, "k", 1, "v", 1), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no map");
    assert_int_equal(shmrpc_map_put_if_absent(NULL, "k", 1, "v", 1), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no map");
    assert_int_equal(shmrpc_map_cas(NULL, "k", 1, "v", 1, "w", 1), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no map");
    assert_int_equal(shmrpc_map_remove(NULL, "k", 1), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no map");
    assert_int_equal(shmrpc_map_clear(NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no map");
    assert_int_equal(shmrpc_map_get(NULL, "k", 1, buf, sizeof buf, &len), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no map");
    assert_int_equal(len, 99);
    assert_int_equal(shmrpc_map_get_view(NULL, "k", 1, &view), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no map");
    assert_int_equal(shmrpc_map_get_view(m, "k", 1, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no view");
    assert_int_equal(shmrpc_map_check(NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no map");
    assert_int_equal(shmrpc_map_print_status(NULL, stderr), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no map");
    assert_int_equal(shmrpc_map_print_status(m, NULL), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "no file");
    assert_null(shmrpc_map_lock(NULL));
    assert_non_null(shmrpc_map_lock(m));
    assert_int_equal(shmrpc_map_unlink("a/b"), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "outside [A-Za-z0-9_.-]"));

    /* Keys and values: NULL with a length, or too long; the map keeps what it had. */
    assert_int_equal(shmrpc_map_remove(m, NULL, 1), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "key is NULL");
    assert_int_equal(shmrpc_map_get(m, NULL, 1, buf, sizeof buf, &len), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "key is NULL");
    static char big_key[SHMRPC_MAP_KEY_MAX + 1];
    assert_int_equal(shmrpc_map_get(m, big_key, sizeof big_key, buf, sizeof buf, &len),
                     SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "key of 65537 bytes, more than 65536");
    /* Refused before a byte of it is read: one byte stands for the whole value. */
    assert_int_equal(shmrpc_map_put(m, "k", 1, "w", (size_t)SHMRPC_MAP_VALUE_MAX + 1),
                     SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "value of 268435457 bytes, more than 268435456");
    assert_int_equal(shmrpc_map_get(m, "k", 1, buf, sizeof buf, NULL), 0);
    assert_string_equal(buf, "v");
    uint64_t n = 0;
    assert_int_equal(shmrpc_map_size(m, &n), 0);
    assert_int_equal(n, 1);

    /* A view: current as it was taken, not with another slot, nor after a growth. */
    assert_int_equal(shmrpc_map_get_view(m, "k", 1, &view), 0);
    assert_true(shmrpc_map_view_current(m, &view));
    assert_false(shmrpc_map_view_current(NULL, &view));
    assert_false(shmrpc_map_view_current(m, NULL));
    shmrpc_map_view moved = view;
    moved.slot = UINT64_C(1) << 40;
    assert_false(shmrpc_map_view_current(m, &moved));
    shmrpc_map_info before, after;
    assert_int_equal(shmrpc_map_get_info(m, &before), 0);
    assert_true(shmrpc_map_view_current(m, &view));
    for (int i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof k, "g%d", i);
        assert_int_equal(put_s(m, k, "v"), 0);
    }
    assert_int_equal(shmrpc_map_get_info(m, &after), 0);
    assert_true(after.generation > before.generation);
    assert_int_equal(shmrpc_map_get_view(m, "g0", 2, &moved), 0); /* maps the new one */
    assert_false(shmrpc_map_view_current(m, &view));

    /* Waits with a timeout too long to count in nanoseconds, in a child that its alarm
     * bounds: the change this process makes 50 ms after ends it, with or without a place
     * for the count. */
    struct long_wait w = {name, 0};
    assert_int_equal(shmrpc_map_changes(m, &w.since), 0);
    pid_t kid = spawn(long_waiter, &w);
    test_kid_nap_ms(50);
    assert_int_equal(put_s(m, "late", "1"), 0);
    assert_int_equal(test_kid_reap(kid, 20000), 0);

    /* A value of BIG_VALUE bytes, past iterate's first buffer of 4096, comes back whole. */
    assert_int_equal(shmrpc_map_clear(m), 0);
    uint8_t *big = malloc(BIG_VALUE);
    assert_non_null(big);
    for (size_t i = 0; i < BIG_VALUE; i++)
        big[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(shmrpc_map_put(m, "big", 3, big, BIG_VALUE), 0);
    free(big);
    int seen = 0;
    assert_int_equal(shmrpc_map_iterate(m, check_big, &seen), 0);
    assert_int_equal(seen, 1);
    shmrpc_map_close(m);
}

/* A growth for bytes alone keeps the slots the map was made with: initial_slots is the
 * least a generation has, not only the first one's count. */
static void growth_keeps_initial_slots(void **state)
{
    (void)state;
    const char *name = new_name("keepslots");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    o.initial_slots = 1024;
    shmrpc_map *m = open_map(name, &o);
    static char v[3000];
    memset(v, 'v', sizeof v);
    for (int i = 0; i < 4; i++) {
        char k[4] = {'k', (char)('0' + i), 0};
        assert_int_equal(shmrpc_map_put(m, k, 2, v, sizeof v), 0);
    }
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_true(info.growths > 0);
    assert_int_equal(info.slots, 1024);
    assert_int_equal(info.count, 4);
    assert_int_equal(shmrpc_map_check(m), 0);
    shmrpc_map_close(m);
}

/* shmrpc_map_unlink removes the generation files of its map only: not those of a map
 * whose name starts with its name and a dot, nor a file of its prefix whose rest is not
 * a generation's number (empty, not digits, or past any number). */
static void unlink_spares_other_names(void **state)
{
    (void)state;
    const char *name = new_name("spare");
    const char *other = new_name("spare.x7"); /* name, a dot and more */
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *a = open_map(name, &o), *b = open_map(other, &o);
    assert_int_equal(put_s(a, "k", "a"), 0);
    assert_int_equal(put_s(b, "k", "b"), 0);
    shmrpc_map_close(b);
    shmrpc_map_close(a);
    const char *decoys[] = {"", "12x", "99999999999999999999999"};
    const char *paths[3];
    for (size_t i = 0; i < 3; i++) { /* teardown removes them, also when a check fails */
        paths[i] = new_file("/dev/shm/shmrpc.mapgen.%s.%s", name, decoys[i]);
        int fd = open(paths[i], O_CREAT | O_EXCL | O_WRONLY, 0600);
        assert_true(fd >= 0);
        close(fd);
    }
    char gen[512];
    gen_file(gen, sizeof gen, name, 1);
    assert_int_equal(access(gen, F_OK), 0);
    assert_int_equal(shmrpc_map_unlink(name), 0);
    assert_int_equal(access(gen, F_OK), -1);
    int left = 0;
    for (size_t i = 0; i < 3; i++)
        left += access(paths[i], F_OK) == 0;
    assert_int_equal(left, 3);
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    b = open_map(other, &o);
    assert_string_equal(get_s(b, "k"), "b");
    assert_int_equal(shmrpc_map_check(b), 0);
    shmrpc_map_close(b);
}

static void modes(void **state)
{
    (void)state;
    const char *name = new_name("modes");
    shmrpc_map *m = NULL;
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    assert_int_equal(shmrpc_map_open(&m, name, &o), SHMRPC_ENOENT);
    o.mode = SHMRPC_MAP_CONNECT_OR_CREATE;
    shmrpc_map *a = open_map(name, &o);
    assert_int_equal(put_s(a, "k", "v"), 0);
    shmrpc_map *b = open_map(name, &o); /* connects */
    assert_string_equal(get_s(b, "k"), "v");
    o.mode = SHMRPC_MAP_CREATE_NEW_EXCLUSIVE;
    assert_int_equal(shmrpc_map_open(&m, name, &o), SHMRPC_EBUSY);
    assert_non_null(strstr(shmrpc_errmsg(), "already exists"));
    o.mode = SHMRPC_MAP_CREATE_NEW_OVERWRITE;
    shmrpc_map *c = open_map(name, &o);
    assert_null(get_s(c, "k"));
    /* The old handles keep what they mapped; a new one sees the new map. */
    assert_string_equal(get_s(a, "k"), "v");
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    shmrpc_map *d = open_map(name, &o);
    assert_null(get_s(d, "k"));
    shmrpc_map_close(a);
    shmrpc_map_close(b);
    shmrpc_map_close(c);
    shmrpc_map_close(d);
}

/* --- between processes --------------------------------------------------------------- */

static int waiter_child(void *arg)
{
    const char *name = arg;
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, name, &o) != 0) return 10;
    uint64_t c, now;
    shmrpc_map_changes(m, &c);
    if (shmrpc_map_wait(m, c, &now, 0) != SHMRPC_ETIMEDOUT) return 11;
    if (put_s(m, "ready", "1") != 0) return 12;
    c++;
    /* The parent puts "go" once it saw "ready"; sleep until then. */
    int64_t end = test_kid_now_ms() + 20000;
    for (;;) {
        if (shmrpc_map_wait(m, c, &now, 1000) == 0) {
            c = now;
            size_t len;
            char buf[8];
            if (shmrpc_map_get(m, "go", 2, buf, sizeof buf, &len) == 0) break;
        }
        if (test_kid_now_ms() > end) return 13;
    }
    shmrpc_map_close(m);
    return 0;
}

static void wait_between_processes(void **state)
{
    (void)state;
    const char *name = new_name("wait");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    o.wait.mode = SHMRPC_WAIT_SLEEP;
    shmrpc_map *m = open_map(name, &o);
    pid_t kid = spawn(waiter_child, (void *)name);
    int64_t end = test_kid_now_ms() + 20000;
    while (!get_s(m, "ready") && test_kid_now_ms() < end)
        test_kid_nap_ms(1);
    assert_non_null(get_s(m, "ready"));
    test_kid_nap_ms(50); /* the child is asleep on the futex by now, most likely */
    assert_int_equal(put_s(m, "go", "1"), 0);
    assert_int_equal(test_kid_reap(kid, 20000), 0);
    shmrpc_map_close(m);
}

/* One of the waiters of wait_wakes_every_waiter: it sleeps on the futex with nothing
 * to end its sleeps but a wake (no timeout, sleep_ns of an hour), says it is ready, and
 * waits until "go" is in the map. Exits 0 then: a change it was not woken for leaves it
 * asleep (until the parent's bound, or its alarm). */
static int sleeping_waiter(void *arg)
{
    const char *name = arg;
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    o.wait.mode = SHMRPC_WAIT_SLEEP;
    o.wait.sleep_ns = (int64_t)3600 * 1000000000;
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, name, &o) != 0) return 10;
    char key[32];
    snprintf(key, sizeof key, "ready%d", (int)getpid());
    if (put_s(m, key, "1") != 0) return 12;
    uint64_t c;
    shmrpc_map_changes(m, &c);
    while (!get_s(m, "go"))
        if (shmrpc_map_wait(m, c, &c, SHMRPC_MAP_WAIT_FOREVER) != 0) return 13;
    shmrpc_map_close(m);
    return 0;
}

/* A change wakes every process that waits for one (shmrpc_map_wait), not one of them:
 * four sleep on the map with no timeout (each sleep ends only by a wake), one put, and
 * each of the four returns with the change and exits. */
static void wait_wakes_every_waiter(void **state)
{
    (void)state;
    const char *name = new_name("waitall");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(name, &o);
    enum { WAITERS = 4 };
    pid_t kids[WAITERS];
    for (int i = 0; i < WAITERS; i++)
        kids[i] = spawn(sleeping_waiter, (void *)name);
    uint64_t count = 0;
    for (int64_t end = test_kid_now_ms() + 20000; count < WAITERS && test_kid_now_ms() < end;
         test_kid_nap_ms(1))
        assert_int_equal(shmrpc_map_size(m, &count), 0);
    assert_int_equal(count, WAITERS);
    test_kid_nap_ms(50); /* the four are asleep on the futex by now, most likely */
    assert_int_equal(put_s(m, "go", "1"), 0);
    for (int i = 0; i < WAITERS; i++)
        assert_int_equal(test_kid_reap(kids[i], 30000), 0);
    shmrpc_map_close(m);
}

/* Exits 0 at once: a creator with auto_unlink removes the map at exit, one without not,
 * and a child forked from the creator does not remove it when it exits. */
struct creator {
    const char *name;
    bool auto_unlink;
};

static int forked_child(void *arg)
{
    (void)arg;
    return 0; /* exit() runs the inherited atexit handler: it must spare the map */
}

static int creator_child(void *arg)
{
    struct creator *c = arg;
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    o.auto_unlink = c->auto_unlink;
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, c->name, &o) != 0) return 10;
    if (put_s(m, "k", "v") != 0) return 11;
    pid_t p = fork();
    if (p == 0) exit(forked_child(NULL));
    int st;
    waitpid(p, &st, 0);
    if (!shm_exists("map", c->name, "")) return 12;
    exit(0); /* without closing: atexit decides */
}

static shmrpc_map *inherited_auto; /* the creator's handle, for close_inherited */

/* Closes the handle its parent created the map with (auto_unlink), and exits. */
static int close_inherited(void *arg)
{
    (void)arg;
    shmrpc_map_close(inherited_auto);
    return 0;
}

static void auto_unlink(void **state)
{
    (void)state;
    const char *name = new_name("auto");
    struct creator c = {name, true};
    assert_int_equal(test_kid_reap(spawn(creator_child, &c), 20000), 0);
    assert_false(shm_exists("map", name, ""));
    assert_false(any_gen_left(name));
    assert_false(shm_exists("lock.map", name, ""));
    c.auto_unlink = false;
    assert_int_equal(test_kid_reap(spawn(creator_child, &c), 20000), 0);
    assert_true(shm_exists("map", name, ""));
    /* A connecting process never removes it, even with auto_unlink. */
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    o.auto_unlink = true;
    shmrpc_map *m = open_map(name, &o);
    assert_string_equal(get_s(m, "k"), "v");
    shmrpc_map_close(m);
    assert_true(shm_exists("map", name, ""));
    /* The creator's close removes it; a forked child's close of the handle it inherited
     * does not. */
    o.mode = SHMRPC_MAP_CREATE_NEW_OVERWRITE;
    m = open_map(name, &o);
    assert_int_equal(put_s(m, "k", "w"), 0);
    inherited_auto = m;
    assert_int_equal(test_kid_reap(spawn(close_inherited, NULL), 20000), 0);
    assert_true(shm_exists("map", name, ""));
    assert_string_equal(get_s(m, "k"), "w");
    shmrpc_map_close(m);
    assert_false(shm_exists("map", name, ""));
}

/* --- the lock -------------------------------------------------------------------------- */

static int holder_child(void *arg)
{
    const char *name = arg;
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, name, &o) != 0) return 10;
    if (shmrpc_lock_acquire(shmrpc_map_lock(m), 5000) != 0) return 11;
    if (put_s(m, "held", "1") != 0) return 12; /* re-entrant: the holder writes */
    for (;;)
        pause(); /* killed holding the lock */
}

static void batch_and_dead_holder(void **state)
{
    (void)state;
    const char *name = new_name("lock");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    o.lock_timeout_ms = 50;
    shmrpc_map *m = open_map(name, &o);
    /* The lock makes a batch: puts inside it take it re-entrantly. */
    assert_int_equal(shmrpc_lock_acquire(shmrpc_map_lock(m), 1000), 0);
    assert_int_equal(put_s(m, "a", "1"), 0);
    assert_int_equal(put_s(m, "b", "2"), 0);
    assert_true(shmrpc_lock_is_mine(shmrpc_map_lock(m)));
    assert_int_equal(shmrpc_lock_release(shmrpc_map_lock(m)), 0);
    pid_t kid = spawn(holder_child, (void *)name);
    int64_t end = test_kid_now_ms() + 20000;
    while (!get_s(m, "held") && test_kid_now_ms() < end)
        test_kid_nap_ms(1);
    assert_non_null(get_s(m, "held"));
    /* A live holder: writers time out, readers go on. */
    assert_int_equal(put_s(m, "c", "3"), SHMRPC_ETIMEDOUT);
    assert_non_null(strstr(shmrpc_errmsg(), "held by thread"));
    assert_string_equal(get_s(m, "a"), "1");
    kill(kid, SIGKILL);
    assert_int_equal(test_kid_reap(kid, 5000), 128 + SIGKILL);
    /* A dead one: the next writer takes over, repairs and writes. */
    end = test_kid_now_ms() + 20000;
    int rc;
    while ((rc = put_s(m, "c", "3")) == SHMRPC_ETIMEDOUT && test_kid_now_ms() < end) {
    }
    assert_int_equal(rc, 0);
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_int_equal(info.repairs, 1);
    assert_int_equal(info.count, 4);
    assert_int_equal(shmrpc_map_check(m), 0);
    shmrpc_map_close(m);
}

/* --- growth while readers read --------------------------------------------------------- */

#define GROW_KEYS 1000000

struct growth {
    const char *name;
    _Atomic uint64_t written; /* keys 0..written-1 are in the map */
    _Atomic uint64_t checks[2];
    _Atomic int done;
};

static void key_of(uint64_t i, char *k, size_t *klen)
{
    *klen = (size_t)snprintf(k, 24, "key%" PRIu64, i);
}

static void value_of(uint64_t i, uint64_t version, unsigned char v[16])
{
    uint64_t a = i * 0x9e3779b97f4a7c15u ^ version, b = ~i + version * 31;
    memcpy(v, &a, 8);
    memcpy(v + 8, &b, 8);
}

static int grow_reader(void *arg)
{
    struct growth *g = arg;
    int me = g->checks[0] ? 1 : 0;
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, g->name, &o) != 0) return 10;
    atomic_fetch_add(&g->checks[me], 1);
    uint64_t r = (uint64_t)getpid();
    while (!atomic_load(&g->done)) {
        uint64_t w = atomic_load(&g->written);
        if (w == 0) continue;
        r = r * 6364136223846793005u + 1442695040888963407u;
        uint64_t i = (r >> 20) % w;
        char k[24];
        size_t klen, len;
        unsigned char v[16], want[16];
        key_of(i, k, &klen);
        value_of(i, 0, want);
        int rc = shmrpc_map_get(m, k, klen, v, sizeof v, &len);
        if (rc != 0 || len != 16 || memcmp(v, want, 16) != 0) {
            fprintf(stderr, "# reader: key %" PRIu64 " of %" PRIu64 ": %s %s\n", i, w,
                    shmrpc_strerror(rc), shmrpc_errmsg());
            return 11;
        }
        atomic_fetch_add_explicit(&g->checks[me], 1, memory_order_relaxed);
    }
    shmrpc_map_close(m);
    return 0;
}

static void growth_with_readers(void **state)
{
    (void)state;
    struct growth *g = shared(sizeof *g);
    g->name = new_name("grow");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(g->name, &o);
    pid_t r0 = spawn(grow_reader, g);
    while (!atomic_load(&g->checks[0]))
        test_kid_nap_ms(1);
    pid_t r1 = spawn(grow_reader, g);
    int64_t t0 = test_kid_now_ms();
    for (uint64_t i = 0; i < GROW_KEYS; i++) {
        char k[24];
        size_t klen;
        unsigned char v[16];
        key_of(i, k, &klen);
        value_of(i, 0, v);
        int rc = shmrpc_map_put(m, k, klen, v, 16);
        if (rc != 0) fprintf(stderr, "# put %" PRIu64 ": %s\n", i, shmrpc_errmsg());
        assert_int_equal(rc, 0);
        atomic_store(&g->written, i + 1);
    }
    int64_t t1 = test_kid_now_ms();
    atomic_store(&g->done, 1);
    assert_int_equal(test_kid_reap(r0, 20000), 0);
    assert_int_equal(test_kid_reap(r1, 20000), 0);
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_int_equal(info.count, GROW_KEYS);
    assert_int_equal(shmrpc_map_check(m), 0);
    print_message("# %d keys in %" PRId64 " ms (%" PRIu64 " growths, %" PRIu64
                  " slots) while readers checked %" PRIu64 " and %" PRIu64 " values\n",
                  GROW_KEYS, t1 - t0, info.growths, info.slots, g->checks[0], g->checks[1]);
    shmrpc_map_close(m);
    munmap(g, sizeof *g);
}

/* --- writers killed at random points --------------------------------------------------- */

#define KILL_KEYS 600
#define KILL_ROUNDS 40

/* A key's state: 0 absent, else the version of its value. */
struct ledger {
    const char *name;
    _Atomic int64_t ack[KILL_KEYS]; /* what the map holds, once the op returned */
    _Atomic int64_t inflight_key;   /* -1, or the key of the op under way */
    _Atomic int64_t inflight_state; /* what that op makes it */
    _Atomic uint64_t ops;
    _Atomic uint64_t version;
};

/* A value that says which key and version it is, of a length that varies (so that entries
 * are replaced by larger ones, the entry space fills and generations turn over). */
static size_t make_value(int64_t key, int64_t version, unsigned char *buf)
{
    size_t len = 16 + (size_t)((key * 7 + version * 13) % 300);
    memcpy(buf, &key, 8);
    memcpy(buf + 8, &version, 8);
    for (size_t i = 16; i < len; i++)
        buf[i] = (unsigned char)(key ^ version ^ (int64_t)i);
    return len;
}

static void kkey(int64_t i, char *k, size_t *klen)
{
    *klen = (size_t)snprintf(k, 24, "kill%" PRId64, i);
}

static int killed_writer(void *arg)
{
    struct ledger *l = arg;
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, l->name, &o) != 0) return 10;
    uint64_t r = (uint64_t)getpid() * 2654435761u;
    unsigned char v[400];
    for (;;) {
        r = r * 6364136223846793005u + 1442695040888963407u;
        int64_t k = (int64_t)((r >> 24) % KILL_KEYS);
        bool del = ((r >> 50) % 4) == 0;
        char key[24];
        size_t klen;
        kkey(k, key, &klen);
        int64_t ver = (int64_t)atomic_fetch_add(&l->version, 1) + 1;
        int64_t next = del ? 0 : ver;
        atomic_store(&l->inflight_state, next);
        atomic_store(&l->inflight_key, k);
        int rc;
        if (del) {
            rc = shmrpc_map_remove(m, key, klen);
            if (rc == SHMRPC_ENOENT) rc = 0;
        } else {
            rc = shmrpc_map_put(m, key, klen, v, make_value(k, ver, v));
        }
        if (rc != 0) {
            fprintf(stderr, "# writer: %s\n", shmrpc_errmsg());
            return 11;
        }
        atomic_store(&l->ack[k], next);
        atomic_store(&l->inflight_key, -1);
        atomic_fetch_add(&l->ops, 1);
    }
}

/* Every key holds what the ledger allows, with an intact value; returns the state of the
 * in-flight key as found. */
static int64_t check_ledger(shmrpc_map *m, struct ledger *l)
{
    int64_t fk = atomic_load(&l->inflight_key), found_inflight = 0;
    unsigned char v[400], want[400];
    for (int64_t k = 0; k < KILL_KEYS; k++) {
        char key[24];
        size_t klen, len;
        kkey(k, key, &klen);
        int rc = shmrpc_map_get(m, key, klen, v, sizeof v, &len);
        int64_t state = 0;
        if (rc == 0) {
            int64_t kk, ver;
            assert_true(len >= 16);
            memcpy(&kk, v, 8);
            memcpy(&ver, v + 8, 8);
            assert_int_equal(kk, k);
            assert_int_equal(len, make_value(k, ver, want));
            assert_memory_equal(v, want, len); /* never torn */
            state = ver;
        } else {
            assert_int_equal(rc, SHMRPC_ENOENT);
        }
        if (k == fk) {
            if (state != atomic_load(&l->ack[k]) && state != atomic_load(&l->inflight_state))
                fail_msg("in-flight key %" PRId64 ": %" PRId64 ", neither %" PRId64 " nor %" PRId64,
                         k, state, atomic_load(&l->ack[k]), atomic_load(&l->inflight_state));
            found_inflight = state;
        } else if (state != atomic_load(&l->ack[k])) {
            fail_msg("key %" PRId64 ": %" PRId64 ", acknowledged %" PRId64, k, state,
                     atomic_load(&l->ack[k]));
        }
    }
    return found_inflight;
}

static void kill_at_random(void **state)
{
    (void)state;
    struct ledger *l = shared(sizeof *l);
    l->name = new_name("kill");
    atomic_store(&l->inflight_key, -1);
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(l->name, &o);
    srand((unsigned)getpid());
    int repaired = 0;
    for (int round = 0; round < KILL_ROUNDS; round++) {
        pid_t w = spawn(killed_writer, l);
        uint64_t ops0 = atomic_load(&l->ops);
        int64_t end = test_kid_now_ms() + 10000;
        while (atomic_load(&l->ops) < ops0 + 50 && test_kid_now_ms() < end)
            test_kid_nap_ms(1);
        /* Now anywhere in a put, a remove or a growth. */
        struct timespec ts = {0, (long)(rand() % 3000) * 1000};
        nanosleep(&ts, NULL);
        kill(w, SIGKILL);
        assert_int_equal(test_kid_reap(w, 5000), 128 + SIGKILL);
        /* Readers read consistently before anyone repairs. */
        check_ledger(m, l);
        /* The next writer repairs; then the whole generation must check. */
        shmrpc_map_info before, after;
        assert_int_equal(shmrpc_map_get_info(m, &before), 0);
        assert_int_equal(put_s(m, "probe", "x"), 0);
        assert_int_equal(shmrpc_map_get_info(m, &after), 0);
        repaired += (int)(after.repairs - before.repairs);
        int rc = shmrpc_map_check(m);
        if (rc != 0) fail_msg("round %d: %s", round, shmrpc_errmsg());
        /* What the in-flight key holds once repaired is what it keeps: the write the killed
         * writer was in is rolled forward from its redo record or never happened, and
         * before the repair a reader may still see the old value. */
        int64_t found = check_ledger(m, l);
        int64_t fk = atomic_load(&l->inflight_key);
        if (fk >= 0) atomic_store(&l->ack[fk], found);
        atomic_store(&l->inflight_key, -1);
    }
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    print_message("# %d kills, %" PRIu64 " ops, %d repairs, %" PRIu64 " growths, %" PRIu64
                  " keys\n",
                  KILL_ROUNDS, atomic_load(&l->ops), repaired, info.growths, info.count);
    assert_true(repaired > 0); /* most kills leave the lock held; some none */
    shmrpc_map_close(m);
    munmap(l, sizeof *l);
}

/* --- a writer killed inside a write, made to order -------------------------------------- */

/* A child that takes the lock and leaves the map as a writer killed in the middle of
 * removing "victim" would: the redo record written and active, the sequence odd, and (when
 * slot_stored) the slot already a tombstone but the counts not yet lowered. White-box: the
 * offsets are docs/map.md's layout tables. */
struct midway {
    const char *name;
    bool slot_stored;
};

static int midway_child(void *arg)
{
    struct midway *w = arg;
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, w->name, &o) != 0) return 10;
    if (shmrpc_lock_acquire(shmrpc_map_lock(m), 5000) != 0) return 11;
    shmrpc_map_info info;
    if (shmrpc_map_get_info(m, &info) != 0) return 12;
    char path[512];
    snprintf(path, sizeof path, "/dev/shm/shmrpc.map.%s", w->name);
    int fd = open(path, O_RDWR);
    uint8_t *hdr = mmap(NULL, 256, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    fd = open(gen_file(path, sizeof path, w->name, info.generation), O_RDWR);
    struct stat st;
    fstat(fd, &st);
    uint8_t *g = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (hdr == MAP_FAILED || g == MAP_FAILED) return 13;
    uint64_t nslots, seq, used, count, tombs, live;
    memcpy(&nslots, g + 24, 8);
    memcpy(&seq, g + 64, 8);
    memcpy(&used, g + 72, 8);
    memcpy(&count, g + 80, 8);
    memcpy(&tombs, g + 88, 8);
    memcpy(&live, g + 96, 8);
    for (uint64_t i = 0; i < nslots; i++) {
        uint64_t word;
        memcpy(&word, g + 128 + i * 8, 8);
        if (word <= 1) continue;
        uint64_t off = (word & ((UINT64_C(1) << 40) - 1)) * 8;
        uint32_t klen, vlen;
        memcpy(&klen, g + off, 4);
        memcpy(&vlen, g + off + 4, 4);
        if (klen != 6 || memcmp(g + off + 16, "victim", 6) != 0) continue;
        uint64_t first;
        memcpy(&first, hdr + 56, 8);
        uint64_t rec[7] = {first + info.generation - 1, i, 1, used, count - 1, tombs + 1,
                           /* an entry of up to 256 bytes takes whole lines */
                           live - ((16 + klen + vlen + 63) & ~UINT64_C(63))};
        memcpy(hdr + 136, rec, sizeof rec);
        uint32_t active = 1;
        memcpy(hdr + 128, &active, 4);
        seq++;
        memcpy(g + 64, &seq, 8);
        if (w->slot_stored) memcpy(g + 128 + i * 8, &rec[2], 8);
        kill(getpid(), SIGKILL);
    }
    return 14; /* no victim */
}

static void dead_writer_mid_apply_rolled_forward(void **state)
{
    (void)state;
    const char *name = new_name("midway");
    for (int stored = 0; stored < 2; stored++) {
        shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
        shmrpc_map *m = open_map(name, &o);
        assert_int_equal(put_s(m, "keep", "k"), 0);
        assert_int_equal(put_s(m, "victim", "v"), 0);
        struct midway w = {name, stored == 1};
        assert_int_equal(test_kid_reap(spawn(midway_child, &w), 10000), 128 + SIGKILL);
        /* Before the repair: the victim is there or not, whole either way. */
        const char *v = get_s(m, "victim");
        if (stored)
            assert_null(v);
        else
            assert_string_equal(v, "v");
        assert_string_equal(get_s(m, "keep"), "k");
        /* The next write rolls the remove forward. */
        assert_int_equal(put_s(m, "next", "n"), 0);
        assert_null(get_s(m, "victim"));
        uint64_t n;
        assert_int_equal(shmrpc_map_size(m, &n), 0);
        assert_int_equal(n, 2);
        int rc = shmrpc_map_check(m);
        if (rc != 0) fail_msg("%s", shmrpc_errmsg());
        shmrpc_map_info info;
        assert_int_equal(shmrpc_map_get_info(m, &info), 0);
        assert_int_equal(info.repairs, 1);
        shmrpc_map_close(m);
    }
}

static void scribble(const char *kind, const char *name, off_t off, const void *p, size_t len);

/* The mapped generation's segment of m, read-write, and its size in *len. */
static uint8_t *map_gen_bytes(const char *name, shmrpc_map *m, size_t *len)
{
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    char path[512];
    int fd = open(gen_file(path, sizeof path, name, info.generation), O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *g = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(g != MAP_FAILED);
    *len = (size_t)st.st_size;
    return g;
}

/* The space's moving word (docs/map.md's layout: after the head and the slots, at 104). */
static uint64_t *moving_word(uint8_t *g)
{
    uint64_t nslots;
    memcpy(&nslots, g + 24, 8);
    return (uint64_t *)(g + 128 + nslots * 8 + 104);
}

/* A writer killed while it moved retired entries to the free lists: some are on both. */
static int die_moving(void *arg)
{
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, arg, &o) != 0) return 10;
    if (shmrpc_lock_acquire(shmrpc_map_lock(m), 5000) != 0) return 11;
    size_t len;
    uint8_t *g = map_gen_bytes(arg, m, &len);
    *moving_word(g) = 1;
    kill(getpid(), SIGKILL);
    return 12;
}

/* The holder of a batch that took the lock from a dead writer (SHMRPC_EOWNERDEAD from the
 * lock, which the map never sees) still gets the space repaired: the moving word says a
 * writer died mid-move. Before, only a record or an odd sequence did, and blocks were
 * handed out twice. */
static void dead_mover_repaired_for_a_batch(void **state)
{
    (void)state;
    const char *name = new_name("mover");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(name, &o);
    assert_int_equal(put_s(m, "a", "1"), 0);
    assert_int_equal(test_kid_reap(spawn(die_moving, (void *)name), 10000), 128 + SIGKILL);
    assert_int_equal(shmrpc_lock_acquire(shmrpc_map_lock(m), 5000), SHMRPC_EOWNERDEAD);
    assert_int_equal(put_s(m, "b", "2"), 0);
    assert_int_equal(shmrpc_lock_release(shmrpc_map_lock(m)), 0);
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_int_equal(info.repairs, 1);
    size_t len;
    uint8_t *g = map_gen_bytes(name, m, &len);
    assert_int_equal(*moving_word(g), 0);
    munmap(g, len);
    assert_string_equal(get_s(m, "a"), "1");
    assert_string_equal(get_s(m, "b"), "2");
    assert_int_equal(shmrpc_map_check(m), 0);
    shmrpc_map_close(m);
}

/* --- reader slots ---------------------------------------------------------------------- */

#define READERS 60 /* the header's reader table (docs/map.md) */

static int read_once(void *arg)
{
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, arg, &o) != 0) return 10;
    char buf[8];
    size_t len;
    if (shmrpc_map_get(m, "k", 1, buf, sizeof buf, &len) != 0) return 11;
    shmrpc_map_close(m);
    return 0;
}

static int sleeper(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

/* A claim in progress: a claimer has written its pid as the slot's owner and not yet its
 * start. A handle that finds every slot taken and looks for dead owners must judge it by
 * its pid: the start still there was once the last owner's, by which the claimer looked
 * dead, and its slot was taken from it (two handles on one hazard, torn values). */
static void claim_in_progress_kept(void **state)
{
    (void)state;
    const char *name = new_name("claim");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(name, &o);
    assert_int_equal(put_s(m, "k", "v"), 0);
    /* The first reader takes slot 0 and gives it back. */
    assert_int_equal(test_kid_reap(spawn(read_once, (void *)name), 10000), 0);
    /* Start times count clock ticks (10 ms): the claimer's must differ from that reader's. */
    test_kid_nap_ms(30);
    pid_t claimer = spawn(sleeper, NULL);
    uint64_t owner = (uint64_t)claimer;
    scribble("map", name, 256, &owner, sizeof owner);
    /* Every other slot taken by a live reader. */
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    shmrpc_map *held[READERS - 1];
    for (int i = 0; i < READERS - 1; i++) {
        held[i] = open_map(name, &o);
        assert_string_equal(get_s(held[i], "k"), "v");
    }
    /* One more: no slot is free, so it looks for dead owners, and reads without a slot. */
    shmrpc_map *late = open_map(name, &o);
    assert_string_equal(get_s(late, "k"), "v");
    char path[512];
    snprintf(path, sizeof path, "/dev/shm/shmrpc.map.%s", name);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &owner, sizeof owner, 256), (ssize_t)sizeof owner);
    close(fd);
    assert_int_equal(owner, (uint64_t)claimer);
    shmrpc_map_close(late);
    for (int i = 0; i < READERS - 1; i++)
        shmrpc_map_close(held[i]);
    kill(claimer, SIGKILL);
    assert_int_equal(test_kid_reap(claimer, 5000), 128 + SIGKILL);
    shmrpc_map_close(m);
}

/* --- a map created anew under an open handle --------------------------------------------- */

static void put_keys(shmrpc_map *m, const char *prefix, int n)
{
    char k[16];
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "%s%d", prefix, i);
        assert_int_equal(put_s(m, k, prefix), 0);
    }
}

/* Generations are named by the map's name and their number, which starts at 1 again in a
 * map created anew. A handle of the old map that grew it made and removed files of those
 * names: the new map's, so that an open by name found the old keys. Its growth now fails
 * with SHMRPC_ECLOSED, and the new map is left alone. */
static void overwritten_map_left_alone(void **state)
{
    (void)state;
    const char *name = new_name("anew");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *old = open_map(name, &o);
    put_keys(old, "A", 2);
    o.mode = SHMRPC_MAP_CREATE_NEW_OVERWRITE;
    shmrpc_map *anew = open_map(name, &o);
    put_keys(anew, "B", 10); /* 10 keys do not fit 8 slots: generation 2 */
    /* The old handle's map needs a growth too. */
    char k[16];
    int rc = 0;
    for (int i = 2; i < 10 && rc == 0; i++) {
        snprintf(k, sizeof k, "A%d", i);
        rc = put_s(old, k, "A");
    }
    assert_int_equal(rc, SHMRPC_ECLOSED);
    assert_non_null(strstr(shmrpc_errmsg(), "created anew"));
    assert_string_equal(get_s(old, "A0"), "A"); /* what it has mapped, it still reads */
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    shmrpc_map *later = open_map(name, &o);
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof k, "B%d", i);
        assert_string_equal(get_s(later, k), "B");
        assert_string_equal(get_s(anew, k), "B");
    }
    assert_null(get_s(later, "A0"));
    assert_int_equal(shmrpc_map_check(anew), 0);
    shmrpc_map_close(later);
    shmrpc_map_close(old);
    shmrpc_map_close(anew);
}

/* A map created anew numbers its generation files above every file of the map before it,
 * so that a handle still open on that one, growing it or removing what it replaced, never
 * makes, replaces or removes a file of the new map (docs/map.md, "Growth"). Before, both
 * numbered from 1: an old handle's growth to 2 replaced the new map's second generation if
 * the new map got there between the old handle's look at the name and its build. */
static void recreated_map_numbered_above(void **state)
{
    (void)state;
    const char *name = new_name("above");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *old = open_map(name, &o);
    put_keys(old, "A", 40); /* 8 slots, then 32, then 128: generation 3 */
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(old, &info), 0);
    assert_int_equal(info.generation, 3);
    uint64_t old_first = gen_number(name, 1), old_last = gen_number(name, info.generation);
    char path[512];
    assert_int_equal(access(gen_file(path, sizeof path, name, 3), F_OK), 0);
    o.mode = SHMRPC_MAP_CREATE_NEW_OVERWRITE;
    shmrpc_map *anew = open_map(name, &o);
    assert_int_equal(shmrpc_map_get_info(anew, &info), 0);
    assert_int_equal(info.generation, 1); /* a user is shown 1, 2, ... all the same */
    uint64_t new_first = gen_number(name, 1);
    print_message("    the first map's files %" PRIu64 "..%" PRIu64 ", the new one's from %" PRIu64
                  "\n",
                  old_first, old_last, new_first);
    assert_true(new_first > old_last);
    assert_int_equal(access(gen_file(path, sizeof path, name, 1), F_OK), 0);
    put_keys(anew, "B", 40);
    assert_int_equal(shmrpc_map_get_info(anew, &info), 0);
    assert_int_equal(info.generation, 3);
    assert_int_equal(gen_number(name, 3), new_first + 2);
    assert_int_equal(shmrpc_map_check(anew), 0);
    shmrpc_map_close(old);
    shmrpc_map_close(anew);
}

/* auto_unlink removes the map its handle created, not one that replaced it under the name
 * since: before, closing the creator removed the new map's header, and every later open
 * failed with SHMRPC_ENOENT. */
static void auto_unlink_spares_a_map_made_anew(void **state)
{
    (void)state;
    const char *name = new_name("spared");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    o.auto_unlink = true;
    shmrpc_map *doomed = open_map(name, &o);
    put_keys(doomed, "A", 2);
    o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
    shmrpc_map *anew = open_map(name, &o);
    put_keys(anew, "B", 2);
    shmrpc_map_close(doomed);
    assert_true(shm_exists("map", name, ""));
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    shmrpc_map *later = open_map(name, &o);
    assert_string_equal(get_s(later, "B1"), "B");
    assert_null(get_s(later, "A1"));
    shmrpc_map_close(later);
    shmrpc_map_close(anew);
}

/* --- a bad write to the counts, then a growth ----------------------------------------- */

/* A put that needs a growth: of 200000 bytes, more than the space left (count 0), or of
 * 16 with the space all used (live 0: a large value would make room for the keys anyway). */
struct grow_case {
    const char *name;
    size_t len;
};

static int grow_past(void *arg)
{
    const struct grow_case *gc = arg;
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, gc->name, &o) != 0) return 10;
    static char big[200000];
    return shmrpc_map_put(m, "big", 3, big, gc->len) == 0 ? 0 : 11;
}

/* A growth sizes its table by the keys its slots hold, not by the header's count and live
 * bytes, which any process of the user may write: with count 0 it built a table too small
 * for the keys and probed it for ever under the lock, and with live 0 it dropped keys. */
static void growth_counts_its_keys(void **state)
{
    (void)state;
    for (int field = 0; field < 2; field++) {
        const char *name = new_name(field ? "live0" : "count0");
        shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
        shmrpc_map *m = open_map(name, &o);
        char k[16];
        for (int i = 0; i < 200; i++) {
            snprintf(k, sizeof k, "key%d", i);
            assert_int_equal(put_s(m, k, "0123456789abcdef"), 0);
        }
        size_t len;
        uint8_t *g = map_gen_bytes(name, m, &len);
        uint64_t zero = 0, used;
        memcpy(g + (field ? 96 : 80), &zero, 8); /* count, or live */
        if (field) { /* and the space all used: the growth must copy by what it finds */
            memcpy(&used, g + 16, 8); /* total */
            memcpy(g + 72, &used, 8);
        }
        munmap(g, len);
        /* In a child with a bound: a growth that never ends is a failure, not a hang. */
        struct grow_case gc = {name, field ? 16 : 200000};
        assert_int_equal(test_kid_reap(spawn(grow_past, &gc), 10000), 0);
        for (int i = 0; i < 200; i++) {
            snprintf(k, sizeof k, "key%d", i);
            assert_string_equal(get_s(m, k), "0123456789abcdef");
        }
        uint64_t n;
        assert_int_equal(shmrpc_map_size(m, &n), 0);
        assert_int_equal(n, 201);
        int rc = shmrpc_map_check(m);
        if (rc != 0) fail_msg("%s", shmrpc_errmsg());
        shmrpc_map_close(m);
    }
}

/* A header's used near 2^64 (any process of the user may write it) is no fresh space:
 * before, used + need wrapped past the check, base + used pointed before the mapping, and
 * the writer faulted (both writers of map_scribble_test died so in one CI run). The put
 * grows the map instead, in a child with a bound, and every key stays. */
static void used_near_the_top(void **state)
{
    (void)state;
    static const uint64_t bad[] = {UINT64_MAX, UINT64_MAX - 7, UINT64_MAX - 4095};
    static const char *const tags[] = {"used0", "used1", "used2"};
    for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
        const char *name = new_name(tags[b]);
        shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
        shmrpc_map *m = open_map(name, &o);
        char k[16];
        for (int i = 0; i < 20; i++) {
            snprintf(k, sizeof k, "key%d", i);
            assert_int_equal(put_s(m, k, "0123456789abcdef"), 0);
        }
        size_t len;
        uint8_t *g = map_gen_bytes(name, m, &len);
        memcpy(g + 72, &bad[b], 8); /* used */
        munmap(g, len);
        struct grow_case gc = {name, 16};
        assert_int_equal(test_kid_reap(spawn(grow_past, &gc), 10000), 0);
        for (int i = 0; i < 20; i++) {
            snprintf(k, sizeof k, "key%d", i);
            assert_string_equal(get_s(m, k), "0123456789abcdef");
        }
        uint64_t n;
        assert_int_equal(shmrpc_map_size(m, &n), 0);
        assert_int_equal(n, 21);
        int rc = shmrpc_map_check(m);
        if (rc != 0) fail_msg("%s", shmrpc_errmsg());
        shmrpc_map_close(m);
    }
}

/* A growth killed before its publish leaves a partial next generation; one killed after it,
 * the old generation's file. The next growth replaces the first, the next repair removes
 * the second. */
static int die_holding(void *arg)
{
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, arg, &o) != 0) return 10;
    if (shmrpc_lock_acquire(shmrpc_map_lock(m), 5000) != 0) return 11;
    kill(getpid(), SIGKILL);
    return 12;
}

static void growth_leftovers_replaced(void **state)
{
    (void)state;
    const char *name = new_name("leftover");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(name, &o);
    assert_int_equal(put_s(m, "a", "1"), 0);
    /* A partial generation 2: garbage of the wrong size. */
    char path[512];
    int fd = open(gen_file(path, sizeof path, name, 2), O_CREAT | O_EXCL | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "partial", 7), 7);
    close(fd);
    for (int i = 0; i < 50; i++) { /* grows past 8 slots: generation 2, and on */
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(put_s(m, k, k), 0);
    }
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_true(info.generation >= 3);
    assert_int_equal(shmrpc_map_check(m), 0);
    assert_string_equal(get_s(m, "k7"), "k7");
    /* The previous generation's file left behind by a writer that died after publishing. */
    fd = open(gen_file(path, sizeof path, name, info.generation - 1), O_CREAT | O_EXCL | O_WRONLY,
              0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(test_kid_reap(spawn(die_holding, (void *)name), 10000), 128 + SIGKILL);
    assert_int_equal(put_s(m, "b", "2"), 0); /* repairs */
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(shmrpc_map_check(m), 0);
    shmrpc_map_close(m);
}

/* --- snapshots while a writer writes ------------------------------------------------------ */

#define SNAP_KEYS 100

/* Writes rounds: key i gets the round number, keys in order, until stopped. */
static int round_writer(void *arg)
{
    const char *name = arg;
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, name, &o) != 0) return 10;
    for (uint64_t round = 1;; round++)
        for (int i = 0; i < SNAP_KEYS; i++) {
            char k[16];
            snprintf(k, sizeof k, "s%d", i);
            if (shmrpc_map_put(m, k, strlen(k), &round, sizeof round) != 0) return 11;
        }
}

struct rounds {
    uint64_t of[SNAP_KEYS];
    int n;
};

static int note_round(void *arg, const void *k, size_t klen, const void *v, size_t vlen)
{
    struct rounds *r = arg;
    char key[16] = {0};
    if (klen >= sizeof key || vlen != 8) return 1;
    memcpy(key, k, klen);
    int i = atoi(key + 1);
    if (i < 0 || i >= SNAP_KEYS) return 2;
    memcpy(&r->of[i], v, 8);
    r->n++;
    return 0;
}

static void snapshots_while_writing(void **state)
{
    (void)state;
    const char *name = new_name("snap");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(name, &o);
    uint64_t zero = 0;
    for (int i = 0; i < SNAP_KEYS; i++) {
        char k[16];
        snprintf(k, sizeof k, "s%d", i);
        assert_int_equal(shmrpc_map_put(m, k, strlen(k), &zero, 8), 0);
    }
    pid_t w = spawn(round_writer, (void *)name);
    int64_t end = test_kid_now_ms() + 1500;
    int snaps = 0;
    uint64_t last = 0;
    while (test_kid_now_ms() < end) {
        struct rounds r = {.n = 0};
        assert_int_equal(shmrpc_map_iterate(m, note_round, &r), 0);
        assert_int_equal(r.n, SNAP_KEYS);
        /* One moment between two puts: keys 0..j-1 of round R+1, j.. of round R. */
        uint64_t hi = r.of[0];
        int j = 0;
        while (j < SNAP_KEYS && r.of[j] == hi)
            j++;
        for (int i = j; i < SNAP_KEYS; i++)
            if (r.of[i] + 1 != hi)
                fail_msg("snapshot %d: key %d of round %" PRIu64 ", key 0 of round %" PRIu64, snaps,
                         i, r.of[i], hi);
        assert_true(hi >= last);
        last = hi;
        snaps++;
    }
    kill(w, SIGKILL);
    assert_int_equal(test_kid_reap(w, 5000), 128 + SIGKILL);
    print_message("# %d consistent snapshots while a writer wrote %" PRIu64 " rounds\n", snaps,
                  last);
    shmrpc_map_close(m);
}

/* --- who may open it, and what is refused ---------------------------------------------- */

struct stranger {
    const char *name;
    mode_t perms;
    int want1, want2;
};

static int stranger_child(void *arg)
{
    struct stranger *s = arg;
    if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0) return 30;
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    o.perms = s->perms;
    shmrpc_map *m = NULL;
    int rc = shmrpc_map_open(&m, s->name, &o);
    fprintf(stderr, "# as nobody (perms 0%o): %s: %s\n", (unsigned)s->perms, shmrpc_strerror(rc),
            shmrpc_errmsg());
    if (rc != s->want1 && rc != s->want2) return 31;
    if (rc != 0) return strlen(shmrpc_errmsg()) > 0 ? 0 : 32;
    rc = put_s(m, "n", "1");
    shmrpc_map_close(m);
    return rc == 0 ? 0 : 33;
}

static void nobody_refused(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        test_skip("needs root to become 'nobody'");
    }
    const char *name = new_name("stranger");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(name, &o);
    struct stranger s = {name, 0600, SHMRPC_EPERM, SHMRPC_ESYS(EACCES)};
    assert_int_equal(test_kid_reap(spawn(stranger_child, &s), 10000), 0);
    shmrpc_map_close(m);
    /* One the kernel would let nobody open (0666) is refused by the owner check, unless the
     * opener asks to share it. */
    o.mode = SHMRPC_MAP_CREATE_NEW_OVERWRITE;
    o.perms = 0666;
    m = open_map(name, &o);
    s = (struct stranger){name, 0600, SHMRPC_EPERM, SHMRPC_EPERM};
    assert_int_equal(test_kid_reap(spawn(stranger_child, &s), 10000), 0);
    s = (struct stranger){name, 0666, 0, 0};
    assert_int_equal(test_kid_reap(spawn(stranger_child, &s), 10000), 0);
    assert_string_equal(get_s(m, "n"), "1");
    shmrpc_map_close(m);
}

/* Writes len bytes at off of /dev/shm/shmrpc.KIND.NAME. */
static void scribble(const char *kind, const char *name, off_t off, const void *p, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "/dev/shm/shmrpc.%s.%s", kind, name);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, p, len, off), (ssize_t)len);
    close(fd);
}

static void expect_refused(const char *name, int want, const char *says)
{
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    int rc = shmrpc_map_open(&m, name, &o);
    print_message("# %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(rc, want);
    assert_non_null(strstr(shmrpc_errmsg(), says));
}

static void corrupt_segments_refused(void **state)
{
    (void)state;
    const char *name = new_name("corrupt");
    char path[512];
    const char *gen1 = NULL; /* NAME.NUMBER of the first generation, for scribble */
    uint32_t bad = 0xdeadbeef;
    uint64_t huge = UINT64_C(1) << 40, all_ones = UINT64_MAX;
    struct {
        const char *kind, *file;
        off_t off;
        const void *p;
        size_t len;
        int want;
        const char *says;
    } cases[] = {
        {"map", name, 0, &bad, 4, SHMRPC_EPROTO, "not a map"},
        {"map", name, 4, &bad, 4, SHMRPC_EVERSION, "layout version"},
        {"map", name, 32, &huge, 8, SHMRPC_EPROTO, "corrupt header"},
        {"map", name, 56, &all_ones, 8, SHMRPC_EPROTO, "its first generation"},
        {"mapgen", NULL, 0, &bad, 4, SHMRPC_EPROTO, "not a map generation"},
        {"mapgen", NULL, 24, &huge, 8, SHMRPC_EPROTO, "slot count"},
        {"mapgen", NULL, 16, &huge, 8, SHMRPC_EPROTO, "header says"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
        shmrpc_map *m = open_map(name, &o);
        assert_int_equal(put_s(m, "k", "v"), 0);
        shmrpc_map_close(m);
        gen1 = gen_file(path, sizeof path, name, 1) + strlen("/dev/shm/shmrpc.mapgen.");
        scribble(cases[i].kind, cases[i].file ? cases[i].file : gen1, cases[i].off, cases[i].p,
                 cases[i].len);
        expect_refused(name, cases[i].want, cases[i].says);
    }
    /* A header smaller than a header was cut (segment_cut_test.c); one larger than a
     * header and the largest type is not a map. */
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
    shmrpc_map_close(open_map(name, &o));
    snprintf(path, sizeof path, "/dev/shm/shmrpc.map.%s", name);
    assert_int_equal(truncate(path, 100), 0);
    expect_refused(name, SHMRPC_ECUT, "cut to 100 bytes");
    shmrpc_map_close(open_map(name, &o));
    assert_int_equal(truncate(path, 4096 + SHMRPC_MAP_TYPE_MAX + 1), 0);
    expect_refused(name, SHMRPC_EPROTO, "not a map");
    /* An entry that points outside the segment: reads fail with a status, check names it. */
    shmrpc_map *m = open_map(name, &o);
    assert_int_equal(put_s(m, "k", "v"), 0);
    gen1 = gen_file(path, sizeof path, name, 1) + strlen("/dev/shm/shmrpc.mapgen.");
    uint64_t wild = ((uint64_t)1 << 39) | 0xffffffu; /* a slot word past the end */
    for (int s = 0; s < 8; s++)
        scribble("mapgen", gen1, 128 + s * 8, &wild, 8);
    const char *v = NULL;
    size_t len;
    char buf[8];
    assert_int_equal(shmrpc_map_get(m, "k", 1, buf, sizeof buf, &len), SHMRPC_EPROTO);
    (void)v;
    assert_int_equal(shmrpc_map_check(m), SHMRPC_EPROTO);
    assert_non_null(strstr(shmrpc_errmsg(), "outside the segment"));
    /* A remove meets them on the key's way too, and says so; a put rebuilds the table
     * from the entries that are whole (none) and writes. */
    assert_int_equal(shmrpc_map_remove(m, "k", 1), SHMRPC_EPROTO);
    assert_non_null(strstr(shmrpc_errmsg(), "an entry on the key's way is out of bounds"));
    assert_int_equal(put_s(m, "k2", "v2"), 0);
    assert_string_equal(get_s(m, "k2"), "v2");
    uint64_t n = 0;
    assert_int_equal(shmrpc_map_size(m, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(shmrpc_map_check(m), 0);
    shmrpc_map_close(m);
}

/* Reads (or, with set, writes) width bytes at off of the file at path. */
static uint64_t file_word(const char *path, off_t off, size_t width, const uint64_t *set)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint64_t v = 0;
    if (set)
        assert_int_equal(pwrite(fd, set, width, off), (ssize_t)width);
    else
        assert_int_equal(pread(fd, &v, width, off), (ssize_t)width);
    close(fd);
    return v;
}

/* Each field of a map's header and of its generation's head (docs/map.md, "Segment
 * layout") written to each value its check refuses, one at a time, in a map holding a key:
 * every open is refused with the status and the message the check says (the header's
 * geometry, its size, a type longer than the file: cut; the generation's version, slot
 * count, ring, entry offset, size and number; a header never initialised), and the
 * refusal writes nothing: the field put back, the map opens and reads its key. */
static void header_fields_refused(void **state)
{
    (void)state;
    const char *name = new_name("fields");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
    o.initial_bytes = 65536;
    shmrpc_map *m = open_map(name, &o);
    assert_int_equal(put_s(m, "k", "v"), 0);
    shmrpc_map_close(m);
    char hdr[512], gen[512];
    snprintf(hdr, sizeof hdr, "/dev/shm/shmrpc.map.%s", name);
    gen_file(gen, sizeof gen, name, 1);
    uint64_t ring = file_word(gen, 56, 8, NULL), arena = file_word(gen, 32, 8, NULL);
    struct {
        const char *file;
        off_t off;
        size_t width;
        uint64_t v;
        int want;
        const char *says;
    } cases[] = {
        {hdr, 8, 4, 4095, SHMRPC_EPROTO, "is not a map (magic 0x"},
        {hdr, 24, 8, 4, SHMRPC_EPROTO, "corrupt header (geometry 4 slots"},
        {hdr, 24, 8, 24, SHMRPC_EPROTO, "corrupt header (geometry 24 slots"},
        {hdr, 24, 8, UINT64_C(1) << 31, SHMRPC_EPROTO, "corrupt header (geometry 2147483648"},
        {hdr, 32, 8, 2048, SHMRPC_EPROTO, "corrupt header (geometry 8 slots, 2048.."},
        {hdr, 40, 8, 4096, SHMRPC_EPROTO, "corrupt header (geometry 8 slots, 65536..4096 "},
        {hdr, 40, 8, UINT64_C(1) << 44, SHMRPC_EPROTO, "65536..17592186044416 bytes)"},
        {hdr, 48, 4, 100, SHMRPC_ECUT, "its header and type are"},
        {gen, 4, 4, 99, SHMRPC_EVERSION, "layout version 99"},
        {gen, 24, 8, 4, SHMRPC_EPROTO, "slot count 4 is not"},
        {gen, 24, 8, 24, SHMRPC_EPROTO, "slot count 24 is not"},
        {gen, 56, 8, 1024, SHMRPC_EPROTO, "ring of 1024 is not"},
        {gen, 56, 8, UINT64_C(1) << 25, SHMRPC_EPROTO, "ring of 33554432 is not"},
        {gen, 56, 8, ring + 1, SHMRPC_EPROTO, "is not a power of two in [2^11, 2^24]"},
        {gen, 32, 8, arena + 8, SHMRPC_EPROTO, "do not follow 8 slots"},
        /* Offsets past what a slot word holds: not a cut file, a bad head. */
        {gen, 16, 8, UINT64_C(1) << 63, SHMRPC_EPROTO, "header says 9223372036854775808 bytes"},
        {gen, 8, 8, 999, SHMRPC_EPROTO, "it says it is number 999"},
        /* A header whose creator died before it was made whole: refused after a bounded
         * wait. */
        {hdr, 0, 4, 0, SHMRPC_EPROTO, "was never initialised (its creator died?)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t was = file_word(cases[i].file, cases[i].off, cases[i].width, NULL);
        file_word(cases[i].file, cases[i].off, cases[i].width, &cases[i].v);
        expect_refused(name, cases[i].want, cases[i].says);
        assert_non_null(strstr(shmrpc_errmsg(), name));
        file_word(cases[i].file, cases[i].off, cases[i].width, &was);
        o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
        m = open_map(name, &o);
        assert_string_equal(get_s(m, "k"), "v");
        shmrpc_map_close(m);
    }
}

/* The free space of a map's generation 1 (docs/map.md, "Segment layout"), mapped by the
 * test as another process would: after the 128-byte head and the n slots, the ring's head,
 * tail and mark at 64, 72 and 80, the free lists at 128, the ring at 128 + 8 * 128. */
struct space_view {
    unsigned char *g;
    size_t size;
    uint64_t arena_off, ring_cap, *slots, *head, *tail, *mark, *free_head, *ring;
};

static void map_space(const char *name, struct space_view *sv)
{
    char path[512];
    gen_file(path, sizeof path, name, 1);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    sv->size = (size_t)st.st_size;
    sv->g = mmap(NULL, sv->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(sv->g != MAP_FAILED);
    uint64_t nslots, *w = (uint64_t *)sv->g;
    nslots = w[3];
    sv->arena_off = w[4];
    sv->ring_cap = w[7];
    sv->slots = w + 16;
    uint64_t *sp = sv->slots + nslots;
    sv->head = sp + 8;
    sv->tail = sp + 9;
    sv->mark = sp + 10;
    sv->free_head = sp + 16;
    sv->ring = sp + 16 + 128;
}

#define SPACE_KEYS 16

/* Puts round r's value of every key: 100 bytes that name the round and the key. */
static void put_round(shmrpc_map *m, int r)
{
    for (int i = 0; i < SPACE_KEYS; i++) {
        char k[8], v[101];
        snprintf(k, sizeof k, "k%02d", i);
        memset(v, 'x', 100);
        v[100] = '\0';
        memcpy(v, k, 3);
        v[3] = '0' + (char)(r / 10);
        v[4] = '0' + (char)(r % 10);
        assert_int_equal(put_s(m, k, v), 0);
    }
}

/* Every key reads back round r's value. */
static void values_of_round(shmrpc_map *m, int r)
{
    for (int i = 0; i < SPACE_KEYS; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%02d", i);
        const char *v = get_s(m, k);
        assert_non_null(v);
        assert_int_equal(strlen(v), 100);
        assert_memory_equal(v, k, 3);
        assert_int_equal((v[3] - '0') * 10 + (v[4] - '0'), r);
    }
    uint64_t n = 0;
    assert_int_equal(shmrpc_map_size(m, &n), 0);
    assert_int_equal(n, SPACE_KEYS);
}

/* shmrpc_map_check says SHMRPC_EPROTO with the map's name and says. */
static void check_says(shmrpc_map *m, const char *name, const char *says)
{
    int rc = shmrpc_map_check(m);
    print_message("# %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(rc, SHMRPC_EPROTO);
    assert_non_null(strstr(shmrpc_errmsg(), name));
    assert_non_null(strstr(shmrpc_errmsg(), says));
}

/* A generation's free space written over by another process (the free lists and the ring
 * of retired entries: docs/map.md, "A bad write to a segment"): shmrpc_map_check names
 * each (a block out of bounds, a list that loops, a block on two lists, a ring out of
 * order, a retired entry that a slot still names, a retired block out of bounds), and each
 * found so changes nothing: the word put back, the map checks whole. What writes promise:
 * a free list whose first block is out of bounds is forgotten by the next put of its
 * class, never handed out; a ring out of order is forgotten by the next writer that frees
 * the ring, and retired entries out of bounds are skipped by it. Either way every value
 * reads back, the puts after go on, and the map checks whole again, in the same
 * generation. */
static void space_written_over(void **state)
{
    (void)state;
    const char *name = new_name("space");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
    o.initial_slots = 64;
    o.initial_bytes = 65536;
    shmrpc_map *m = open_map(name, &o);
    int r = 0;
    for (; r < 10; r++)
        put_round(m, r);
    values_of_round(m, r - 1);
    assert_int_equal(shmrpc_map_check(m), 0);
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_int_equal(info.generation, 1);
    struct space_view sv;
    map_space(name, &sv);
    /* The class of the 100-byte values: the one whose list holds a block (the replaced
     * values went there). */
    unsigned c = 0;
    while (c < 128 && sv.free_head[c] == 0)
        c++;
    assert_true(c < 128);
    uint64_t first = sv.free_head[c], next;
    memcpy(&next, sv.g + first, 8);
    /* A free list's first block written out of bounds (unaligned, past the entries). */
    uint64_t wild[] = {3, sv.size - 8, UINT64_MAX & ~(uint64_t)7};
    char says[128];
    for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++) {
        sv.free_head[c] = wild[i];
        snprintf(says, sizeof says, "free list %u: block at %" PRIu64 " out of bounds or a loop", c,
                 wild[i]);
        check_says(m, name, says);
        sv.free_head[c] = first;
        assert_int_equal(shmrpc_map_check(m), 0);
    }
    /* A free block whose link leads back to itself: a loop. */
    memcpy(sv.g + first, &first, 8);
    snprintf(says, sizeof says, "free list %u: block at %" PRIu64 " out of bounds or a loop", c,
             first);
    check_says(m, name, says);
    memcpy(sv.g + first, &next, 8);
    assert_int_equal(shmrpc_map_check(m), 0);
    /* A free block put on a second list (freed twice). */
    unsigned c2 = c == 0 ? 1 : 0;
    assert_int_equal(sv.free_head[c2], 0);
    sv.free_head[c2] = first;
    check_says(m, name, "overlap (space handed out twice)");
    sv.free_head[c2] = 0;
    assert_int_equal(shmrpc_map_check(m), 0);
    /* The ring of retired entries out of order, three ways. */
    uint64_t head = *sv.head, tail = *sv.tail, mark = *sv.mark;
    struct {
        uint64_t head, tail, mark;
    } rings[] = {
        {head, head + 1, head + 1},           /* the tail past the mark */
        {head, tail, head + 1},               /* the mark past the head */
        {tail + sv.ring_cap + 1, tail, tail}, /* more than the ring holds */
    };
    for (size_t i = 0; i < sizeof rings / sizeof rings[0]; i++) {
        *sv.head = rings[i].head;
        *sv.tail = rings[i].tail;
        *sv.mark = rings[i].mark;
        check_says(m, name, "retired ring out of order");
        *sv.head = head;
        *sv.tail = tail;
        *sv.mark = mark;
        assert_int_equal(shmrpc_map_check(m), 0);
    }
    /* A live entry (the first a slot names) on the ring as retired. */
    uint64_t live = 0;
    for (size_t i = 0; !live && i < 64; i++)
        if (sv.slots[i] > 1) live = sv.slots[i] & ((UINT64_C(1) << 40) - 1);
    assert_true(live << 3 >= sv.arena_off);
    uint64_t was = sv.ring[tail % sv.ring_cap];
    *sv.head = tail + 1;
    *sv.mark = tail + 1;
    sv.ring[tail % sv.ring_cap] = (uint64_t)c << 40 | live;
    check_says(m, name, "overlap (space handed out twice)");
    sv.ring[tail % sv.ring_cap] = was;
    *sv.head = head;
    *sv.mark = mark;
    assert_int_equal(shmrpc_map_check(m), 0);
    /* A retired entry of no class, and one past the entries. */
    uint64_t bad[] = {(UINT64_C(128) << 40) | sv.arena_off / 8, (uint64_t)(sv.size / 8)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        *sv.head = tail + 1;
        *sv.mark = tail + 1;
        sv.ring[tail % sv.ring_cap] = bad[i];
        snprintf(says, sizeof says, "retired block at %" PRIu64 " out of bounds",
                 (bad[i] & ((UINT64_C(1) << 40) - 1)) << 3);
        check_says(m, name, says);
        sv.ring[tail % sv.ring_cap] = was;
        *sv.head = head;
        *sv.mark = mark;
        assert_int_equal(shmrpc_map_check(m), 0);
    }
    /* What writes do: the list's first block out of bounds is forgotten by the next put of
     * its class (the same key, a value of the same size), not handed out. */
    sv.free_head[c] = sv.size - 8;
    put_round(m, r++);
    values_of_round(m, r - 1);
    assert_int_equal(shmrpc_map_check(m), 0);
    /* The ring out of order is forgotten by the next writer that frees it. */
    *sv.tail = *sv.head + 1;
    for (int i = 0; i < 5; i++)
        put_round(m, r++);
    values_of_round(m, r - 1);
    assert_int_equal(shmrpc_map_check(m), 0);
    /* Retired entries of no class and past the entries, added to the ring: the next
     * writer that frees the ring skips them (never a free block out of bounds). */
    uint64_t h = *sv.head;
    sv.ring[h % sv.ring_cap] = bad[0];
    sv.ring[(h + 1) % sv.ring_cap] = bad[1];
    *sv.head = h + 2;
    check_says(m, name, "retired block at");
    for (int i = 0; i < 5; i++)
        put_round(m, r++);
    values_of_round(m, r - 1);
    assert_int_equal(shmrpc_map_check(m), 0);
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_int_equal(info.generation, 1);
    munmap(sv.g, sv.size);
    shmrpc_map_close(m);
}

/* A generation's slots and head written over by another process: shmrpc_map_check names
 * each (the used end outside the entries or before an entry's end, a slot whose tag is not
 * its entry's hash, a key named by two slots, head counts that the slots do not give), and
 * each found so changes nothing (the word put back, the map checks whole). A sequence left
 * odd is what a writer killed in a write leaves: the next write repairs it (docs/map.md,
 * "Writers"), counts the repair, and the map checks whole with every value. */
static void slots_written_over(void **state)
{
    (void)state;
    const char *name = new_name("slots");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
    o.initial_slots = 64;
    o.initial_bytes = 65536;
    shmrpc_map *m = open_map(name, &o);
    put_round(m, 0);
    assert_int_equal(shmrpc_map_check(m), 0);
    struct space_view sv;
    map_space(name, &sv);
    _Atomic uint64_t *g = (_Atomic uint64_t *)sv.g; /* seq, used, count, tombs, live at 64.. */
    uint64_t used = atomic_load(&g[9]);
    char says[128];
    uint64_t wild[] = {sv.arena_off - 8, sv.size + 8};
    for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++) {
        atomic_store(&g[9], wild[i]);
        snprintf(says, sizeof says, "used end %" PRIu64 " outside the entries", wild[i]);
        check_says(m, name, says);
        atomic_store(&g[9], used);
        assert_int_equal(shmrpc_map_check(m), 0);
    }
    atomic_store(&g[9], sv.arena_off + 8);
    snprintf(says, sizeof says, "points past the used end %" PRIu64, sv.arena_off + 8);
    check_says(m, name, says);
    atomic_store(&g[9], used);
    /* The first slot in use, and the first free one. */
    size_t at = 0, free_at = 0;
    while (sv.slots[at] <= 1)
        at++;
    while (sv.slots[free_at] != 0)
        free_at++;
    uint64_t w = sv.slots[at];
    sv.slots[at] = w ^ (UINT64_C(1) << 40);
    snprintf(says, sizeof says, "slot %zu: entry's hash is wrong", at);
    check_says(m, name, says);
    sv.slots[at] = w;
    assert_int_equal(shmrpc_map_check(m), 0);
    sv.slots[free_at] = w;
    check_says(m, name, "key unreachable or present twice");
    sv.slots[free_at] = 0;
    assert_int_equal(shmrpc_map_check(m), 0);
    for (int i = 11; i <= 12; i++) { /* tombs, live */
        uint64_t was = atomic_load(&g[i]);
        atomic_store(&g[i], was + 8);
        check_says(m, name, "header counts 16 keys");
        atomic_store(&g[i], was);
        assert_int_equal(shmrpc_map_check(m), 0);
    }
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    uint64_t repairs = info.repairs;
    atomic_fetch_add(&g[8], 1); /* seq odd */
    check_says(m, name, "a write is half applied (odd sequence)");
    put_round(m, 1);
    values_of_round(m, 1);
    assert_int_equal(shmrpc_map_check(m), 0);
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_int_equal(info.repairs, repairs + 1);
    munmap(sv.g, sv.size);
    shmrpc_map_close(m);
}

/* --- space reuse: readers' hazards and epochs ----------------------------------------- */

static shmrpc_map_opts reuse_opts(shmrpc_map_mode mode, uint64_t bytes)
{
    shmrpc_map_opts o = small_opts(mode);
    o.initial_slots = 64;
    o.initial_bytes = bytes;
    return o;
}

/* Entries of up to 256 bytes take whole cache lines: a writer's new entry, or a freed
 * block it links into a free list, once shared a line with a live entry of another key, so
 * that every reader of that key missed on it while a writer put other keys beside it (the
 * benchmark's 16 B values: 48-byte entries, four on three lines). Reads the generation
 * segment itself: after puts, replacements (free blocks reused) and removes of values of
 * 0..200 bytes, every live entry begins on a line and no line holds two. */
static void small_entries_take_whole_lines(void **state)
{
    (void)state;
    const char *name = new_name("lines");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
    o.initial_bytes = 256 * 1024;
    shmrpc_map *m = open_map(name, &o);
    char k[16], v[256];
    memset(v, 'v', sizeof v);
    for (int round = 0; round < 20; round++)
        for (int i = 0; i < 200; i++) {
            snprintf(k, sizeof k, "key%06d", i);
            size_t vl = (size_t)((i * 7 + round * 13) % 201);
            if ((i + round) % 11 == 0)
                shmrpc_map_remove(m, k, strlen(k));
            else
                assert_int_equal(shmrpc_map_put(m, k, strlen(k), v, vl), 0);
        }
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    char path[512];
    int fd = open(gen_file(path, sizeof path, name, info.generation), O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    const uint8_t *g = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(g != MAP_FAILED);
    uint64_t nslots;
    memcpy(&nslots, g + 24, 8);
    uint64_t *lines = calloc((size_t)st.st_size / 64 + 1, sizeof *lines); /* slot + 1 */
    assert_non_null(lines);
    int live = 0;
    for (uint64_t i = 0; i < nslots; i++) {
        uint64_t word;
        memcpy(&word, g + 128 + i * 8, 8);
        if (word <= 1) continue;
        uint64_t off = (word & ((UINT64_C(1) << 40) - 1)) * 8;
        uint32_t klen, vlen;
        memcpy(&klen, g + off, 4);
        memcpy(&vlen, g + off + 4, 4);
        if (off % 64) fail_msg("slot %" PRIu64 ": entry at %" PRIu64 ", not on a line", i, off);
        for (uint64_t l = off / 64; l <= (off + 16 + klen + vlen - 1) / 64; l++) {
            if (lines[l])
                fail_msg("slots %" PRIu64 " and %" PRIu64 " share line %" PRIu64, lines[l] - 1, i,
                         l);
            lines[l] = i + 1;
        }
        live++;
    }
    printf("# %d live entries of 0..200 B values, each on lines of its own\n", live);
    assert_true(live > 100);
    free(lines);
    munmap((void *)g, (size_t)st.st_size);
    int rc = shmrpc_map_check(m);
    if (rc != 0) fail_msg("%s", shmrpc_errmsg());
    shmrpc_map_close(m);
    shmrpc_map_unlink(name);
}

/* --- two writers ----------------------------------------------------------------------- */

/* What each writer of two_writers_at_once reports: puts, and its CPU time over the
 * wall time it ran (both spin while they wait, so each has a CPU only if its CPU time is
 * about its wall time). */
struct writers_run {
    _Atomic int ready, go, stop;
    struct {
        _Alignas(64) uint64_t puts;
        int64_t cpu_ns, wall_ns;
    } w[2];
};

struct writer_arg {
    const char *name;
    struct writers_run *run;
    int slot;
};

static int64_t clock_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int put_until_stopped(void *p)
{
    struct writer_arg *a = p;
    shmrpc_map *m;
    if (shmrpc_map_open(&m, a->name, NULL) != 0) return 1;
    static char keys[1000][16]; /* made first: formatting one costs more than a put */
    for (int i = 0; i < 1000; i++)
        snprintf(keys[i], sizeof keys[i], "key%06d", i);
    atomic_fetch_add(&a->run->ready, 1);
    while (!atomic_load(&a->run->go)) {
    }
    int64_t c0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID), t0 = clock_ns(CLOCK_MONOTONIC);
    uint64_t n = 0;
    unsigned char v[16];
    memset(v, 'a' + a->slot, sizeof v);
    while (!atomic_load_explicit(&a->run->stop, memory_order_relaxed)) {
        const char *k = keys[(n * 7919 + (uint64_t)a->slot * 13) % 1000];
        if (shmrpc_map_put(m, k, 9, v, sizeof v) != 0) return 2;
        n++;
    }
    a->run->w[a->slot].cpu_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - c0;
    a->run->w[a->slot].wall_ns = clock_ns(CLOCK_MONOTONIC) - t0;
    a->run->w[a->slot].puts = n;
    shmrpc_map_close(m);
    return 0;
}

/* Two processes putting as fast as they can for half a second: every put succeeds, the
 * lock counts one acquisition per put at least, and the map is whole after. How often a
 * put found the lock held (25-40% when a waiter looked at the lock's word after every
 * pause, under 3% since it backs off: docs/map.md, "Two writers") depends on whether both
 * writers had a CPU at once, so it is printed here and measured by shmrpc-bench-map's
 * "2 writers" rows, not asserted. */
static void two_writers_at_once(void **state)
{
    (void)state;
    const char *name = new_name("writers");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
    o.initial_slots = 2048;
    o.initial_bytes = 1 << 20;
    shmrpc_map *m = open_map(name, &o);
    struct writers_run *run = shared(sizeof *run);
    struct writer_arg args[2] = {{name, run, 0}, {name, run, 1}};
    pid_t kids[2];
    for (int i = 0; i < 2; i++)
        kids[i] = spawn(put_until_stopped, &args[i]);
    for (int i = 0; i < 1000 && atomic_load(&run->ready) < 2; i++)
        test_kid_nap_ms(10);
    assert_int_equal(atomic_load(&run->ready), 2);
    shmrpc_lock_stats s0, s1;
    assert_int_equal(shmrpc_lock_get_stats(shmrpc_map_lock(m), &s0), 0);
    atomic_store(&run->go, 1);
    test_kid_nap_ms(500);
    atomic_store(&run->stop, 1);
    for (int i = 0; i < 2; i++)
        assert_int_equal(test_kid_reap(kids[i], 30000), 0);
    assert_int_equal(shmrpc_lock_get_stats(shmrpc_map_lock(m), &s1), 0);
    uint64_t puts = run->w[0].puts + run->w[1].puts;
    double held =
        (double)(s1.contended - s0.contended) / (double)(s1.acquisitions - s0.acquisitions);
    bool alone = true; /* each writer had a CPU of its own most of the time */
    for (int i = 0; i < 2; i++)
        if (run->w[i].cpu_ns < run->w[i].wall_ns * 8 / 10) alone = false;
    printf("# two writers: %.2f and %.2f M puts/s, %.1f%% of puts found the lock held, %" PRIu64
           " sleeps "
           "(CPU time %.0f%% and %.0f%% of wall time%s)\n",
           (double)run->w[0].puts * 1e3 / (double)run->w[0].wall_ns,
           (double)run->w[1].puts * 1e3 / (double)run->w[1].wall_ns, held * 100,
           s1.sleeps - s0.sleeps, 100.0 * (double)run->w[0].cpu_ns / (double)run->w[0].wall_ns,
           100.0 * (double)run->w[1].cpu_ns / (double)run->w[1].wall_ns,
           alone ? "" : ": the machine was busy");
    assert_true(run->w[0].puts > 0 && run->w[1].puts > 0);
    assert_true(s1.acquisitions - s0.acquisitions >= puts);
    int rc = shmrpc_map_check(m);
    if (rc != 0) fail_msg("%s", shmrpc_errmsg());
    shmrpc_map_close(m);
    shmrpc_map_unlink(name);
}

/* --- read-modify-write by compare-and-swap -------------------------------------------- */

#define CAS_KIDS 4
#define CAS_INCREMENTS 20000
#define CAS_WIDTH 12 /* a fixed-width decimal counter: every value has this length */

struct cas_run {
    _Atomic int ready, go;
    uint64_t refused[CAS_KIDS]; /* compare-and-swaps that lost to another writer */
};

struct cas_arg {
    const char *name;
    struct cas_run *run;
    int slot;
};

/* CAS_INCREMENTS increments of the counter, each by get then compare-and-swap of the value
 * read, again from a fresh get when another writer changed it in between. */
static int increment_by_cas(void *p)
{
    struct cas_arg *a = p;
    shmrpc_map *m;
    if (shmrpc_map_open(&m, a->name, NULL) != 0) return 1;
    atomic_fetch_add(&a->run->ready, 1);
    while (!atomic_load(&a->run->go)) { /* all start at once (bounded by the alarm) */
    }
    for (int done = 0; done < CAS_INCREMENTS;) {
        char old[CAS_WIDTH + 1], new[CAS_WIDTH + 1];
        size_t len;
        if (shmrpc_map_get(m, "counter", 7, old, CAS_WIDTH, &len) != 0) return 2;
        if (len != CAS_WIDTH) return 3;
        old[CAS_WIDTH] = 0;
        snprintf(new, sizeof new, "%0*llu", CAS_WIDTH, strtoull(old, NULL, 10) + 1);
        /* Now and then the others get the CPU between the read and the swap, so that
         * swaps of a stale value happen even when the processes share one CPU. */
        if (done % 64 == 0) sched_yield();
        int rc = shmrpc_map_cas(m, "counter", 7, old, CAS_WIDTH, new, CAS_WIDTH);
        if (rc == 0)
            done++;
        else if (rc == SHMRPC_EBUSY)
            a->run->refused[a->slot]++;
        else
            return 4;
    }
    shmrpc_map_close(m);
    return 0;
}

/* CAS_KIDS processes increment one key by get and compare-and-swap: the end value is the
 * exact total. A compare that let a stale expected value through (one of the same length,
 * as every value here is) loses increments, and the count comes out short. */
static void cas_increments_count_exactly(void **state)
{
    (void)state;
    const char *name = new_name("cascount");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
    shmrpc_map *m = open_map(name, &o);
    char zero[CAS_WIDTH + 1];
    snprintf(zero, sizeof zero, "%0*d", CAS_WIDTH, 0);
    assert_int_equal(shmrpc_map_put(m, "counter", 7, zero, CAS_WIDTH), 0);
    struct cas_run *run = shared(sizeof *run);
    struct cas_arg args[CAS_KIDS];
    pid_t kids[CAS_KIDS];
    for (int i = 0; i < CAS_KIDS; i++) {
        args[i] = (struct cas_arg){name, run, i};
        kids[i] = spawn(increment_by_cas, &args[i]);
    }
    for (int i = 0; i < 10000 && atomic_load(&run->ready) < CAS_KIDS; i++)
        test_kid_nap_ms(10);
    assert_int_equal(atomic_load(&run->ready), CAS_KIDS);
    atomic_store(&run->go, 1);
    for (int i = 0; i < CAS_KIDS; i++)
        assert_int_equal(test_kid_reap(kids[i], 90000), 0);
    uint64_t refused = 0;
    for (int i = 0; i < CAS_KIDS; i++)
        refused += run->refused[i];
    char want[CAS_WIDTH + 1];
    snprintf(want, sizeof want, "%0*d", CAS_WIDTH, CAS_KIDS * CAS_INCREMENTS);
    printf("# %d increments by compare-and-swap, %" PRIu64 " refused and tried again\n",
           CAS_KIDS * CAS_INCREMENTS, refused);
    assert_string_equal(get_s(m, "counter"), want);
    int rc = shmrpc_map_check(m);
    if (rc != 0) fail_msg("%s", shmrpc_errmsg());
    munmap(run, sizeof *run);
    shmrpc_map_close(m);
    shmrpc_map_unlink(name);
}

/* Puts of 4 KiB values over 16 keys, 5000 of them, from a process that also reads: with
 * no reader left in a read, every replaced entry's space is reused, so 256 KiB of entry
 * space never grows (appending, it took a growth every ~40 puts). Reads are counted. */
static void reuse_without_growth(void **state)
{
    (void)state;
    const char *name = new_name("reuse");
    shmrpc_map_opts o = reuse_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE, 256 << 10);
    shmrpc_map *m = open_map(name, &o);
    static unsigned char v[4096], got[4096];
    for (int i = 0; i < 5000; i++) {
        char k[8];
        int n = snprintf(k, sizeof k, "k%d", i % 16);
        memset(v, 'a' + i % 26, sizeof v);
        assert_int_equal(shmrpc_map_put(m, k, (size_t)n, v, sizeof v), 0);
        size_t len;
        assert_int_equal(shmrpc_map_get(m, k, (size_t)n, got, sizeof got, &len), 0);
        assert_int_equal(len, sizeof v);
        assert_memory_equal(got, v, sizeof v);
    }
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    print_message("# 5000 puts of 4 KiB: %" PRIu64 " growths, %" PRIu64 " of %" PRIu64
                  " bytes used, %" PRIu64 " reads\n",
                  info.growths, info.used, info.bytes, info.reads);
    assert_int_equal(info.growths, 0);
    assert_int_equal(info.reads, 5000);
    assert_int_equal(shmrpc_map_check(m), 0);
    /* Another handle's reads add up, and stay counted after it closes. */
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    shmrpc_map *m2 = open_map(name, &o);
    size_t len;
    assert_int_equal(shmrpc_map_get(m2, "k0", 2, got, sizeof got, &len), 0);
    shmrpc_map_view view;
    assert_int_equal(shmrpc_map_get_view(m2, "k1", 2, &view), 0);
    shmrpc_map_close(m2);
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_int_equal(info.reads, 5002);
    shmrpc_map_close(m);
}

struct holder {
    const char *name;
    _Atomic int held;   /* the child holds its view */
    _Atomic int check;  /* the parent asks it to compare the view with what it copied */
    _Atomic int intact; /* 1 when it was, 2 when not */
};

/* Holds a view of "a" (and a copy of its bytes) until told to compare, then sleeps with
 * the view held until killed. */
static int view_holder(void *arg)
{
    struct holder *h = arg;
    shmrpc_map_opts o = reuse_opts(SHMRPC_MAP_CONNECT_TO_EXISTING, 4 << 20);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, h->name, &o) != 0) return 10;
    shmrpc_map_view v;
    if (shmrpc_map_get_view(m, "a", 1, &v) != 0 || v.len != 4096) return 11;
    static unsigned char copy[4096];
    memcpy(copy, v.data, v.len);
    atomic_store(&h->held, 1);
    while (!atomic_load(&h->check))
        test_kid_nap_ms(1);
    atomic_store(&h->intact, memcmp(copy, v.data, v.len) == 0 ? 1 : 2);
    for (;;)
        test_kid_nap_ms(100);
}

/* A reader process holding a view keeps writers from reusing what it may read: its bytes
 * stay whole through 300 puts that replace it and others. Killed with SIGKILL while it
 * holds its hazard, it holds back that one entry only: 3000 more puts reuse space and
 * never grow (appending, they would need 15 MiB of the 4). */
static void view_holds_space_until_reader_dies(void **state)
{
    (void)state;
    struct holder *h = shared(sizeof *h);
    h->name = new_name("holder");
    shmrpc_map_opts o = reuse_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE, 4 << 20);
    shmrpc_map *m = open_map(h->name, &o);
    static unsigned char v[4096];
    memset(v, 'x', sizeof v);
    assert_int_equal(shmrpc_map_put(m, "a", 1, v, sizeof v), 0);
    pid_t kid = spawn(view_holder, h);
    for (int i = 0; i < 10000 && !atomic_load(&h->held); i++)
        test_kid_nap_ms(1);
    assert_true(atomic_load(&h->held));
    for (int i = 0; i < 300; i++) {
        char k[2] = {(char)('a' + i % 8), 0};
        memset(v, '0' + i % 10, sizeof v);
        assert_int_equal(shmrpc_map_put(m, k, 1, v, sizeof v), 0);
    }
    atomic_store(&h->check, 1);
    for (int i = 0; i < 10000 && !atomic_load(&h->intact); i++)
        test_kid_nap_ms(1);
    assert_int_equal(atomic_load(&h->intact), 1);
    shmrpc_map_info before, after;
    assert_int_equal(shmrpc_map_get_info(m, &before), 0);
    kill(kid, SIGKILL);
    assert_int_equal(test_kid_reap(kid, 5000), 128 + SIGKILL);
    for (int i = 0; i < 3000; i++) {
        char k[2] = {(char)('a' + i % 8), 0};
        assert_int_equal(shmrpc_map_put(m, k, 1, v, sizeof v), 0);
    }
    assert_int_equal(shmrpc_map_get_info(m, &after), 0);
    print_message("# held: %" PRIu64 " bytes used after 300 puts; dead: %" PRIu64
                  " after 3000 more, %" PRIu64 " growths\n",
                  before.used, after.used, after.growths);
    assert_int_equal(before.growths, 0);
    assert_int_equal(after.growths, 0);
    assert_int_equal(shmrpc_map_check(m), 0);
    shmrpc_map_close(m);
    munmap(h, sizeof *h);
}

/* A handle that found every reader slot taken reads without one, counted in the
 * generation's unprot: while its view is held, writers reuse no space (its bytes stay
 * whole through 300 replacements); once its next call ends the view, they reuse again
 * (3000 more put without a growth). Its reads are counted in its info. */
static void slotless_view_holds_space(void **state)
{
    (void)state;
    const char *name = new_name("slotless");
    shmrpc_map_opts o = reuse_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE, 4 << 20);
    shmrpc_map *m = open_map(name, &o);
    static unsigned char v[4096];
    memset(v, 'x', sizeof v);
    assert_int_equal(shmrpc_map_put(m, "a", 1, v, sizeof v), 0);
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    shmrpc_map *held[READERS];
    for (int i = 0; i < READERS; i++) {
        held[i] = open_map(name, &o);
        size_t len;
        assert_int_equal(shmrpc_map_get(held[i], "a", 1, NULL, 0, &len), SHMRPC_ETOOBIG);
    }
    shmrpc_map *late = open_map(name, &o);
    shmrpc_map_view view;
    assert_int_equal(shmrpc_map_get_view(late, "a", 1, &view), 0);
    assert_int_equal(view.len, sizeof v);
    shmrpc_map_info before, after;
    assert_int_equal(shmrpc_map_get_info(m, &before), 0);
    for (int i = 0; i < 300; i++) {
        char k[2] = {(char)('a' + i % 8), 0};
        memset(v, '0' + i % 10, sizeof v);
        assert_int_equal(shmrpc_map_put(m, k, 1, v, sizeof v), 0);
    }
    size_t same = 0;
    for (size_t i = 0; i < view.len; i++)
        same += ((const unsigned char *)view.data)[i] == 'x';
    assert_int_equal(same, sizeof v);
    assert_false(shmrpc_map_view_current(late, &view));
    assert_int_equal(shmrpc_map_get_info(m, &after), 0);
    assert_true(after.used - before.used >= 300 * sizeof v); /* all fresh space */
    /* Its next call ends the view: the space comes back. */
    shmrpc_map_info mine;
    assert_int_equal(shmrpc_map_get_info(late, &mine), 0);
    assert_true(mine.reads >= 1);
    for (int i = 0; i < 3000; i++) {
        char k[2] = {(char)('a' + i % 8), 0};
        assert_int_equal(shmrpc_map_put(m, k, 1, v, sizeof v), 0);
    }
    assert_int_equal(shmrpc_map_get_info(m, &after), 0);
    print_message("# slotless view: %" PRIu64 " -> %" PRIu64 " bytes used, %" PRIu64 " growths\n",
                  before.used, after.used, after.growths);
    assert_int_equal(after.growths, 0);
    assert_int_equal(shmrpc_map_check(m), 0);
    shmrpc_map_close(late);
    for (int i = 0; i < READERS; i++)
        shmrpc_map_close(held[i]);
    shmrpc_map_close(m);
}

static shmrpc_map *inherited; /* a handle the forked child of the next test reads with */

/* Reads with the handle it inherited, whose parent holds a view, and with a new handle. */
static int fork_reader(void *arg)
{
    (void)arg;
    static unsigned char buf[4096];
    size_t len;
    if (shmrpc_map_get(inherited, "b", 1, buf, sizeof buf, &len) != 0) return 10;
    shmrpc_map_close(inherited);
    return 0;
}

/* A view held through a fork stays the parent's: the child's first call on the handle it
 * inherited ends the parent's read in the child only. It once cleared the parent's hazard
 * (an epoch before that) in the shared reader slot, and puts through another handle then
 * reused the view's block under it. */
static void view_survives_a_forked_childs_reads(void **state)
{
    (void)state;
    const char *name = new_name("forkview");
    shmrpc_map_opts o = reuse_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE, 1 << 20);
    shmrpc_map *writer = open_map(name, &o);
    static unsigned char v[4096], copy[4096];
    memset(v, 'x', sizeof v);
    assert_int_equal(shmrpc_map_put(writer, "a", 1, v, sizeof v), 0);
    assert_int_equal(shmrpc_map_put(writer, "b", 1, v, sizeof v), 0);
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    inherited = open_map(name, &o);
    shmrpc_map_view view;
    assert_int_equal(shmrpc_map_get_view(inherited, "a", 1, &view), 0);
    assert_int_equal(view.len, sizeof v);
    memcpy(copy, view.data, view.len);
    assert_int_equal(test_kid_reap(spawn(fork_reader, NULL), 10000), 0);
    for (int i = 0; i < 300; i++) {
        memset(v, '0' + i % 10, sizeof v);
        assert_int_equal(shmrpc_map_put(writer, "a", 1, v, sizeof v), 0);
    }
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(writer, &info), 0);
    assert_int_equal(info.growths, 0); /* the puts reused space: the view's block was kept */
    assert_memory_equal(view.data, copy, sizeof copy);
    shmrpc_map_close(inherited);
    assert_int_equal(shmrpc_map_check(writer), 0);
    shmrpc_map_close(writer);
}

#define CHURN_KEYS 50
#define CHURN_ROUNDS 16

struct churn {
    const char *name;
    _Atomic int stop;
    _Atomic uint64_t reads, bad, puts;
};

/* A value that names its key and version in its first 12 bytes and fills the rest from
 * them, 12..6000 bytes long: sizes vary, so a block freed by one key is reused by another. */
static size_t churn_value(uint32_t key, uint32_t version, unsigned char *buf)
{
    uint32_t len = 12 + (key * 131 + version * 977) % 5989;
    memcpy(buf, &key, 4);
    memcpy(buf + 4, &version, 4);
    memcpy(buf + 8, &len, 4);
    for (uint32_t i = 12; i < len; i++)
        buf[i] = (unsigned char)(key * 31 + version + i);
    return len;
}

static int churn_writer(void *arg)
{
    struct churn *c = arg;
    shmrpc_map_opts o = reuse_opts(SHMRPC_MAP_CONNECT_TO_EXISTING, 1 << 20);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, c->name, &o) != 0) return 10;
    static unsigned char buf[6000];
    uint32_t r = (uint32_t)getpid();
    for (uint32_t version = 1;; version++) {
        r = r * 1103515245u + 12345u;
        uint32_t key = (r >> 8) % CHURN_KEYS;
        char k[8];
        int n = snprintf(k, sizeof k, "c%u", key);
        size_t len = churn_value(key, version, buf);
        int rc = (r >> 4) % 16 == 0 ? shmrpc_map_remove(m, k, (size_t)n)
                                    : shmrpc_map_put(m, k, (size_t)n, buf, len);
        if (rc != 0 && rc != SHMRPC_ENOENT) return 11;
        atomic_fetch_add_explicit(&c->puts, 1, memory_order_relaxed);
    }
}

/* Reads random keys until told to stop, checking every value is whole and its key's. */
static int churn_reader(void *arg)
{
    struct churn *c = arg;
    shmrpc_map_opts o = reuse_opts(SHMRPC_MAP_CONNECT_TO_EXISTING, 1 << 20);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, c->name, &o) != 0) return 10;
    static unsigned char buf[6000], want[6000];
    uint32_t r = (uint32_t)getpid();
    while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
        r = r * 1103515245u + 12345u;
        uint32_t key = (r >> 8) % CHURN_KEYS, k2, version, l2;
        char k[8];
        int n = snprintf(k, sizeof k, "c%u", key);
        size_t len;
        int rc = shmrpc_map_get(m, k, (size_t)n, buf, sizeof buf, &len);
        if (rc == SHMRPC_ENOENT) continue;
        bool ok = rc == 0 && len >= 12;
        if (ok) {
            memcpy(&k2, buf, 4);
            memcpy(&version, buf + 4, 4);
            memcpy(&l2, buf + 8, 4);
            ok = k2 == key && l2 == len && churn_value(key, version, want) == len &&
                 memcmp(buf, want, len) == 0;
        }
        if (!ok) {
            fprintf(stderr, "# reader: key %u: rc %d, %zu bytes, not its value\n", key, rc, len);
            atomic_fetch_add(&c->bad, 1);
        }
        atomic_fetch_add_explicit(&c->reads, 1, memory_order_relaxed);
    }
    shmrpc_map_close(m);
    return 0;
}

/* Space reused under two reader processes that check every value (whole, and of the key
 * asked for), while writers putting and removing values of 12..6000 bytes are SIGKILLed at
 * random moments, and every fourth round a reader too (in the middle of reads, holding
 * its hazard); after all of it, the map checks (slots, counts, and no block both live and
 * free, or free twice). */
static void reuse_under_readers_and_kills(void **state)
{
    (void)state;
    struct churn *c = shared(sizeof *c);
    c->name = new_name("churn");
    shmrpc_map_opts o = reuse_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE, 1 << 20);
    shmrpc_map *m = open_map(c->name, &o);
    pid_t readers[2] = {spawn(churn_reader, c), spawn(churn_reader, c)};
    unsigned seed = (unsigned)getpid();
    for (int round = 0; round < CHURN_ROUNDS; round++) {
        pid_t w = spawn(churn_writer, c);
        test_kid_nap_ms(20 + (int)(rand_r(&seed) % 60));
        kill(w, SIGKILL);
        assert_int_equal(test_kid_reap(w, 5000), 128 + SIGKILL);
        if (round % 4 == 3) {
            int i = rand_r(&seed) % 2;
            kill(readers[i], SIGKILL);
            assert_int_equal(test_kid_reap(readers[i], 5000), 128 + SIGKILL);
            readers[i] = spawn(churn_reader, c);
        }
    }
    atomic_store(&c->stop, 1);
    for (int i = 0; i < 2; i++)
        assert_int_equal(test_kid_reap(readers[i], 20000), 0);
    static unsigned char buf[6000];
    size_t len = churn_value(0, 0, buf);
    assert_int_equal(shmrpc_map_put(m, "c0", 2, buf, len), 0); /* repairs a dead writer's */
    int rc = shmrpc_map_check(m);
    if (rc != 0) fprintf(stderr, "# check: %s\n", shmrpc_errmsg());
    assert_int_equal(rc, 0);
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    print_message("# %" PRIu64 " writes in %d rounds, %" PRIu64 " reads checked, %" PRIu64
                  " growths, %" PRIu64 " repairs, %" PRIu64 " of %" PRIu64 " bytes used\n",
                  atomic_load(&c->puts), CHURN_ROUNDS, atomic_load(&c->reads), info.growths,
                  info.repairs, info.used, info.bytes);
    assert_int_equal(atomic_load(&c->bad), 0);
    assert_true(atomic_load(&c->reads) > 0);
    assert_true(info.reads >= atomic_load(&c->reads));
    shmrpc_map_close(m);
    munmap(c, sizeof *c);
}

#define SMALL_KEYS 1000
#define SMALL_READERS 3
#define SMALL_PUTS 1000000

struct small {
    const char *name;
    _Atomic int stop;
    _Atomic int ready;
    _Atomic uint64_t reads, bad;
};

/* A 16 B value naming its key and version. */
static void small_value(uint32_t key, uint32_t version, unsigned char v[16])
{
    for (int i = 0; i < 4; i++) {
        memcpy(v + 8 * (i & 1), &key, 4);
        memcpy(v + 8 * (i & 1) + 4, &version, 4);
    }
}

/* Gets random keys as fast as it can until told to stop, checking each value is its key's
 * and whole (two copies of key and version). */
static int small_reader(void *arg)
{
    struct small *s = arg;
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, s->name, NULL) != 0) return 10;
    atomic_fetch_add(&s->ready, 1);
    uint32_t r = (uint32_t)getpid();
    uint64_t n = 0;
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
        r = r * 1103515245u + 12345u;
        uint32_t key = (r >> 8) % SMALL_KEYS;
        char k[16];
        int kl = snprintf(k, sizeof k, "key%06u", key);
        unsigned char v[16];
        size_t len = 0;
        int rc = shmrpc_map_get(m, k, (size_t)kl, v, sizeof v, &len);
        if (rc != 0 || len != 16 || memcmp(v, v + 8, 8) != 0 || memcmp(v, &key, 4) != 0)
            atomic_fetch_add(&s->bad, 1);
        n++;
    }
    atomic_fetch_add(&s->reads, n);
    shmrpc_map_close(m);
    return 0;
}

/* A writer replacing 1000 keys' 16 B values as fast as it can beside reader processes that
 * get as fast as they can (more processes than CPUs, so that readers are preempted in the
 * middle of gets): the replaced entries' space must be reused, so that a million puts
 * never grow the map (bound: no growth, the 1 MiB of entry space unchanged). With every
 * get holding back all reuse while it lasted (an epoch), each reader preempted mid-get
 * let the ring of retired entries fill, the writer leak the rest, and the map grew about
 * once per 30,000 puts (65 growths a second in shmrpc-bench-map). */
static void small_puts_beside_readers_reuse_space(void **state)
{
    (void)state;
    struct small *s = shared(sizeof *s);
    s->name = new_name("small");
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o); /* 1024 slots, 1 MiB of entries: the benchmark's */
    o.mode = SHMRPC_MAP_CREATE_NEW_EXCLUSIVE;
    shmrpc_map *m = open_map(s->name, &o);
    unsigned char v[16];
    char k[16];
    for (uint32_t i = 0; i < SMALL_KEYS; i++) {
        int kl = snprintf(k, sizeof k, "key%06u", i);
        small_value(i, 0, v);
        assert_int_equal(shmrpc_map_put(m, k, (size_t)kl, v, sizeof v), 0);
    }
    shmrpc_map_info before, after;
    assert_int_equal(shmrpc_map_get_info(m, &before), 0);
    pid_t readers[SMALL_READERS];
    for (int i = 0; i < SMALL_READERS; i++)
        readers[i] = spawn(small_reader, s);
    for (int i = 0; i < 10000 && atomic_load(&s->ready) < SMALL_READERS; i++)
        test_kid_nap_ms(1);
    assert_int_equal(atomic_load(&s->ready), SMALL_READERS);
    int64_t t0 = test_kid_now_ms();
    uint32_t r = 1;
    for (uint32_t i = 1; i <= SMALL_PUTS; i++) {
        r = r * 1103515245u + 12345u;
        uint32_t key = (r >> 8) % SMALL_KEYS;
        int kl = snprintf(k, sizeof k, "key%06u", key);
        small_value(key, i, v);
        assert_int_equal(shmrpc_map_put(m, k, (size_t)kl, v, sizeof v), 0);
    }
    int64_t ms = test_kid_now_ms() - t0;
    atomic_store(&s->stop, 1);
    for (int i = 0; i < SMALL_READERS; i++)
        assert_int_equal(test_kid_reap(readers[i], 20000), 0);
    assert_int_equal(shmrpc_map_get_info(m, &after), 0);
    print_message("# %d puts of 16 B in %" PRId64 " ms beside %d readers (%" PRIu64
                  " gets): %" PRIu64 " growths, entry space %" PRIu64 " -> %" PRIu64
                  " bytes, %" PRIu64 " used\n",
                  SMALL_PUTS, ms, SMALL_READERS, atomic_load(&s->reads),
                  after.growths - before.growths, before.bytes, after.bytes, after.used);
    assert_int_equal(atomic_load(&s->bad), 0);
    assert_true(atomic_load(&s->reads) > 0);
    assert_int_equal(after.growths, before.growths);
    assert_int_equal(after.generation, before.generation);
    assert_int_equal(after.bytes, before.bytes);
    assert_int_equal(shmrpc_map_check(m), 0);
    shmrpc_map_close(m);
    munmap(s, sizeof *s);
}

/* A writer that died holding the lock, its record of a write written over (slot past the
 * table, used before the entries or past the segment): the repair applies none of it,
 * and the map goes on with what it had (its generation, counts, keys, a clean check). */
static void dead_writers_bad_record_ignored(void **state)
{
    (void)state;
    const char *name = new_name("badrec");
    for (int c = 0; c < 3; c++) {
        shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
        o.lock_timeout_ms = 5000;
        shmrpc_map *m = open_map(name, &o);
        assert_int_equal(put_s(m, "a", "1"), 0);
        pid_t kid = spawn(holder_child, (void *)name);
        int64_t end = test_kid_now_ms() + 20000;
        while (!get_s(m, "held") && test_kid_now_ms() < end)
            test_kid_nap_ms(1);
        assert_non_null(get_s(m, "held"));
        kill(kid, SIGKILL);
        assert_int_equal(test_kid_reap(kid, 5000), 128 + SIGKILL);
        /* The record (docs/map.md: header at 128..191) of a write to this generation. */
        shmrpc_map_info info;
        assert_int_equal(shmrpc_map_get_info(m, &info), 0);
        char hdr[512], gen[512];
        snprintf(hdr, sizeof hdr, "/dev/shm/shmrpc.map.%s", name);
        gen_file(gen, sizeof gen, name, info.generation);
        uint64_t arena = file_word(gen, 32, 8, NULL), total = file_word(gen, 16, 8, NULL);
        uint64_t used = file_word(gen, 72, 8, NULL);
        const uint64_t slots[] = {info.slots, 0, 0}, useds[] = {used, arena - 8, total + 8};
        uint64_t rec[8] = {
            1,  file_word(hdr, 16, 8, NULL), slots[c], UINT64_C(0x123456789), useds[c], 999, 999,
            999};
        for (int i = 0; i < 8; i++)
            file_word(hdr, 128 + i * 8, 8, &rec[i]);
        uint64_t generation = info.generation;
        assert_int_equal(put_s(m, "c", "3"), 0);
        assert_int_equal(shmrpc_map_get_info(m, &info), 0);
        /* Applied, the counts of 999 would have made the next put grow the table. */
        assert_int_equal(info.generation, generation);
        assert_int_equal(info.repairs, 1);
        assert_int_equal(info.count, 3);
        assert_int_equal(info.tombstones, 0);
        assert_int_equal(shmrpc_map_check(m), 0);
        assert_string_equal(get_s(m, "a"), "1");
        assert_string_equal(get_s(m, "held"), "1");
        assert_string_equal(get_s(m, "c"), "3");
        assert_int_equal(file_word(hdr, 128, 4, NULL), 0); /* the record is idle again */
        shmrpc_map_close(m);
    }
}

/* Counts the entries iterate shows. */
static int count_shown(void *arg, const void *k, size_t klen, const void *v, size_t vlen)
{
    (void)k, (void)klen, (void)v, (void)vlen;
    ++*(int *)arg;
    return 0;
}

/* A generation cut under an open handle (docs/map.md, queue.md's "A segment cut under its
 * holders"): from the first access that finds it, every call of the handle is
 * SHMRPC_ECUT naming the generation's file, reads show nothing of the zero pages (a get
 * sets no length, iterate shows no entry, a wait no count, print_status prints nothing),
 * a view is never current, and the handle closes. */
static void every_call_after_a_cut(void **state)
{
    (void)state;
    const char *name = new_name("cutcalls");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(name, &o);
    assert_int_equal(put_s(m, "k", "v"), 0);
    shmrpc_map_view view;
    assert_int_equal(shmrpc_map_get_view(m, "k", 1, &view), 0);
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    char gen[512];
    gen_file(gen, sizeof gen, name, info.generation);
    assert_int_equal(truncate(gen, 0), 0);
    const char *file = strrchr(gen, '/') + 1;

    char buf[8];
    size_t len = 99;
    uint64_t n = 99, now = 99;
    int seen = 0;
    char *text = NULL;
    size_t tlen = 0;
    FILE *f = open_memstream(&text, &tlen);
    assert_non_null(f);
    const struct {
        const char *what;
        int rc;
    } calls[] = {
        {"get", shmrpc_map_get(m, "k", 1, buf, sizeof buf, &len)},
        {"get_view", shmrpc_map_get_view(m, "k", 1, &view)},
        {"size", shmrpc_map_size(m, &n)},
        {"iterate", shmrpc_map_iterate(m, count_shown, &seen)},
        {"changes", shmrpc_map_changes(m, &n)},
        {"wait", shmrpc_map_wait(m, 0, &now, 10)},
        {"get_info", shmrpc_map_get_info(m, &info)},
        {"check", shmrpc_map_check(m)},
        {"print_status", shmrpc_map_print_status(m, f)},
        {"put", put_s(m, "k2", "v2")},
        {"put_if_absent", shmrpc_map_put_if_absent(m, "k3", 2, "v", 1)},
        {"cas", shmrpc_map_cas(m, "k", 1, "v", 1, "w", 1)},
        {"remove", shmrpc_map_remove(m, "k", 1)},
        {"clear", shmrpc_map_clear(m)},
    };
    fclose(f);
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        if (calls[i].rc != SHMRPC_ECUT) fail_msg("%s: %d", calls[i].what, calls[i].rc);
    }
    assert_non_null(strstr(shmrpc_errmsg(), file)); /* the last call's: clear's */
    assert_int_equal(len, 99);                      /* untouched */
    assert_int_equal(seen, 0);
    assert_int_equal(now, 99);
    assert_int_equal(tlen, 0);
    free(text);
    assert_false(shmrpc_map_view_current(m, &view));
    shmrpc_map_close(m);
}

/* A sequence left odd (by a writer that died mid-write, here written so): a snapshot
 * never sees it even, so iterate copies under the lock, which repairs first (one repair,
 * the sequence even again), and shows every entry. An entry out of bounds met then is
 * SHMRPC_EPROTO, naming shmrpc_map_check. */
static void iterate_after_odd_sequence(void **state)
{
    (void)state;
    const char *name = new_name("oddseq");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    o.initial_slots = 64;
    shmrpc_map *m = open_map(name, &o);
    for (int i = 0; i < 5; i++) {
        char k[4] = {'k', (char)('0' + i), 0};
        assert_int_equal(put_s(m, k, "v"), 0);
    }
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    char gen[512];
    gen_file(gen, sizeof gen, name, info.generation);
    uint64_t seq = file_word(gen, 64, 8, NULL) | 1;
    file_word(gen, 64, 8, &seq);
    int seen = 0;
    assert_int_equal(shmrpc_map_iterate(m, count_shown, &seen), 0);
    assert_int_equal(seen, 5);
    assert_int_equal(file_word(gen, 64, 8, NULL) & 1, 0);
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_int_equal(info.repairs, 1);
    /* Again odd, and a slot word past the segment. */
    seq = file_word(gen, 64, 8, NULL) | 1;
    file_word(gen, 64, 8, &seq);
    uint64_t wild = ((uint64_t)1 << 39) | 0xffffffu, w = 0;
    int slot = 0;
    while (slot < 64 && (w = file_word(gen, 128 + slot * 8, 8, NULL)) <= 1)
        slot++;
    assert_true(slot < 64);
    file_word(gen, 128 + slot * 8, 8, &wild);
    seen = 0;
    assert_int_equal(shmrpc_map_iterate(m, count_shown, &seen), SHMRPC_EPROTO);
    assert_non_null(strstr(shmrpc_errmsg(), "an entry is out of bounds (shmrpc_map_check"));
    assert_int_equal(seen, 0);
    file_word(gen, 128 + slot * 8, 8, &w);
    assert_int_equal(shmrpc_map_iterate(m, count_shown, &seen), 0);
    assert_int_equal(seen, 5);
    assert_int_equal(shmrpc_map_check(m), 0);
    shmrpc_map_close(m);
}

/* --- as the admin API lists it ------------------------------------------------------- */

/* The listing of map name (shmrpc_segments_list by its name): its header's entry into
 * *hdr and its current generation's into *gen (kind SHMRPC_SEG_MAPGEN, the highest
 * number); false when a kind is missing. */
static bool listed(const char *name, shmrpc_segment *hdr, shmrpc_segment *gen)
{
    shmrpc_segment *v = NULL;
    size_t n = 0;
    assert_int_equal(shmrpc_segments_list(&v, &n, &name, 1), 0);
    bool got_hdr = false, got_gen = false;
    uint64_t best = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].kind == SHMRPC_SEG_MAP) {
            *hdr = v[i];
            got_hdr = true;
        } else if (v[i].kind == SHMRPC_SEG_MAPGEN) {
            const char *dot = strrchr(v[i].name, '.');
            uint64_t number = dot ? strtoull(dot + 1, NULL, 10) : 0;
            if (number >= best) {
                best = number;
                *gen = v[i];
                got_gen = true;
            }
        }
    }
    shmrpc_segments_free(v);
    return got_hdr && got_gen;
}

/* What the admin API lists of a map is what its handle says: the count, the generation
 * shown, its reads (those of a live handle's reader slot too). A header of another
 * version or size is listed as not valid. A generation whose used bytes lie outside its
 * entries shows 0 used, and one cut shorter than its head says is listed as cut. */
static void listed_as_its_handle_says(void **state)
{
    (void)state;
    const char *name = new_name("listed");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(name, &o);
    assert_int_equal(put_s(m, "k", "v"), 0);
    for (int i = 0; i < 3; i++)
        assert_string_equal(get_s(m, "k"), "v");
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    shmrpc_segment h, g;
    assert_true(listed(name, &h, &g));
    print_message("# %s: %s\n# %s: %s\n", h.name, h.detail, g.name, g.detail);
    assert_true(h.valid);
    assert_int_equal(h.owner_pid, getpid());
    assert_int_equal(h.map.count, 1);
    assert_int_equal(h.map.generation, info.generation);
    assert_true(info.reads >= 3);
    assert_int_equal(h.map.reads, info.reads);
    assert_true(g.valid);
    assert_int_equal(g.map.count, 1);
    assert_int_equal(g.map.used, info.used);

    /* used (at 72 of the generation's head) past the segment, or before the entries. */
    char hdr[512], gen[512];
    snprintf(hdr, sizeof hdr, "/dev/shm/shmrpc.map.%s", name);
    gen_file(gen, sizeof gen, name, info.generation);
    uint64_t used = file_word(gen, 72, 8, NULL), arena = file_word(gen, 32, 8, NULL);
    uint64_t total = file_word(gen, 16, 8, NULL);
    uint64_t bad[] = {total + 8, arena - 8};
    for (size_t i = 0; i < 2; i++) {
        file_word(gen, 72, 8, &bad[i]);
        assert_true(listed(name, &h, &g));
        assert_true(g.valid);
        assert_int_equal(g.map.used, 0);
        assert_int_equal(h.map.used, 0);
        assert_int_equal(h.map.count, 1);
    }
    file_word(gen, 72, 8, &used);
    shmrpc_map_close(m);

    /* The header's version (at 4) or size (at 8) not this library's: not valid. */
    const struct {
        off_t off;
        uint64_t v;
    } fields[] = {{4, 99}, {8, 4095}};
    for (size_t i = 0; i < 2; i++) {
        uint64_t was = file_word(hdr, fields[i].off, 4, NULL);
        file_word(hdr, fields[i].off, 4, &fields[i].v);
        assert_true(listed(name, &h, &g));
        print_message("# %s\n", h.detail);
        assert_false(h.valid);
        assert_int_equal(h.map.count, 0);
        file_word(hdr, fields[i].off, 4, &was);
    }
    assert_true(listed(name, &h, &g));
    assert_true(h.valid);

    /* The generation cut to one page, its head whole. */
    assert_int_equal(truncate(gen, 4096), 0);
    assert_true(listed(name, &h, &g));
    print_message("# %s\n# %s\n", h.detail, g.detail);
    assert_non_null(strstr(h.detail, "cannot be read: cut to 4096 bytes under its holders"));
    assert_int_equal(h.map.count, 0);
    assert_false(g.valid);
}

/* A map made before its header had first (0 there) numbers its generations from 1: it
 * opens, reads, grows to number 2, and is shown so by its handle and the admin API. */
static void first_zero_numbers_from_one(void **state)
{
    (void)state;
    const char *name = new_name("first0");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(name, &o);
    assert_int_equal(put_s(m, "k", "v"), 0);
    shmrpc_map_close(m);
    /* Generation 1 as such a map has it: file NAME.1, its head and the header saying 1. */
    char hdr[512], gen[512], old[512];
    snprintf(hdr, sizeof hdr, "/dev/shm/shmrpc.map.%s", name);
    gen_file(gen, sizeof gen, name, 1);
    snprintf(old, sizeof old, "/dev/shm/shmrpc.mapgen.%s.1", name);
    assert_int_equal(rename(gen, old), 0);
    const uint64_t one = 1, zero = 0;
    file_word(old, 8, 8, &one);
    file_word(hdr, 16, 8, &one);
    file_word(hdr, 56, 8, &zero);

    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    m = open_map(name, &o);
    assert_string_equal(get_s(m, "k"), "v");
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_int_equal(info.generation, 1);
    shmrpc_segment h, g;
    assert_true(listed(name, &h, &g));
    assert_int_equal(h.map.generation, 1);
    assert_int_equal(g.map.generation, 1);
    assert_int_equal(shmrpc_map_clear(m), 0); /* a new generation: file 2 */
    assert_int_equal(put_s(m, "k", "w"), 0);
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_int_equal(info.generation, 2);
    snprintf(gen, sizeof gen, "/dev/shm/shmrpc.mapgen.%s.2", name);
    assert_int_equal(access(gen, F_OK), 0);
    assert_int_equal(access(old, F_OK), -1);
    assert_true(listed(name, &h, &g));
    assert_int_equal(h.map.generation, 2);
    assert_string_equal(get_s(m, "k"), "w");
    shmrpc_map_close(m);
}

/* --- a SIGBUS that is not a cut map's ------------------------------------------------- */

static void exit_42(int sig)
{
    (void)sig;
    _exit(42);
}

enum bus_how { BY_RAISE, BY_KILL, BY_FAULT };

struct bus_case {
    const char *name;
    void (*before)(int); /* SIGBUS's handler before the map is opened */
    int flags;           /* its sa_flags (SA_SIGINFO: in sa_handler all the same) */
    enum bus_how how;    /* raise (SI_TKILL), kill (SI_USER), or a fault outside the map */
};

/* Sets SIGBUS's handler, opens the map (which puts the guard's in front of it), reads it,
 * then takes a SIGBUS that is not the map's. Returns 0 when the process goes on after it. */
static int bus_child(void *arg)
{
    const struct bus_case *c = arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = c->before;
    sa.sa_flags = c->flags;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, NULL) != 0) return 9;
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    if (shmrpc_map_open(&m, c->name, &o) != 0) return 10;
    char buf[8];
    size_t len;
    if (shmrpc_map_get(m, "k", 1, buf, sizeof buf, &len) != 0) return 11;
    if (c->how == BY_FAULT) {
        /* The second page of a one-page file: a fault at an address no guard covers. */
        char path[64];
        snprintf(path, sizeof path, "/map_test.%d.bus", (int)getpid());
        int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
        shm_unlink(path);
        if (fd < 0 || ftruncate(fd, 4096) != 0) return 12;
        volatile uint8_t *p = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED) return 13;
        (void)p[4096];
    } else if (c->how == BY_KILL) {
        kill(getpid(), SIGBUS); /* delivered before kill returns: it is not blocked */
    } else {
        raise(SIGBUS);
    }
    /* Still here: the map still reads. */
    if (shmrpc_map_get(m, "k", 1, buf, sizeof buf, &len) != 0) return 14;
    shmrpc_map_close(m);
    return 0;
}

/* The guard against cut maps takes only faults in a map's mappings: a SIGBUS sent by raise
 * or kill, or a fault elsewhere, goes to the handler there was before, and what it does
 * happens as if no map were open: the default kills with SIGBUS, a handler of the program
 * runs, an ignored SIGBUS sent stays ignored, and a fault kills even when ignored. SIG_IGN
 * and SIG_DFL set with SA_SIGINFO are the same (they are not functions to call). */
static void sigbus_not_ours_goes_on(void **state)
{
    (void)state;
    const char *name = new_name("bus");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    shmrpc_map *m = open_map(name, &o);
    assert_int_equal(put_s(m, "k", "v"), 0);
    const int died = 128 + SIGBUS;
    struct {
        struct bus_case c;
        int want;
    } cases[] = {
        {{name, SIG_DFL, 0, BY_RAISE}, died},
        {{name, SIG_DFL, 0, BY_KILL}, died},
        {{name, SIG_DFL, 0, BY_FAULT}, died},
        {{name, exit_42, 0, BY_RAISE}, 42},
        {{name, exit_42, 0, BY_KILL}, 42},
        {{name, exit_42, 0, BY_FAULT}, 42},
        {{name, SIG_IGN, 0, BY_RAISE}, 0},
        {{name, SIG_IGN, 0, BY_KILL}, 0},
        {{name, SIG_IGN, 0, BY_FAULT}, died}, /* a fault cannot be ignored */
        {{name, SIG_IGN, SA_SIGINFO, BY_RAISE}, 0},
        {{name, SIG_IGN, SA_SIGINFO, BY_KILL}, 0},
        {{name, SIG_IGN, SA_SIGINFO, BY_FAULT}, died},
        {{name, SIG_DFL, SA_SIGINFO, BY_KILL}, died},
        {{name, SIG_DFL, SA_SIGINFO, BY_FAULT}, died},
    };
    static const char *const hows[] = {"raise", "kill", "a fault"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct bus_case *c = &cases[i].c;
        int got = test_kid_reap(spawn(bus_child, (void *)c), 20000);
        print_message("# SIGBUS by %s, handler before %s%s: %d\n", hows[c->how],
                      c->before == SIG_DFL   ? "default"
                      : c->before == SIG_IGN ? "ignore"
                                             : "exit 42",
                      c->flags & SA_SIGINFO ? " with SA_SIGINFO" : "", got);
        assert_int_equal(got, cases[i].want);
    }
    assert_string_equal(get_s(m, "k"), "v");
    shmrpc_map_close(m);
}

/* --- typed maps ------------------------------------------------------------------------ */

#define TYPE_A "cache(string key)->i64 @msgpack"
#define TYPE_B "cache(string key)->string @msgpack"

/* Opens the map named arg as TYPE_B in another process: 0 when refused as another type. */
static int open_as_b(void *arg)
{
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CONNECT_OR_CREATE);
    o.type = TYPE_B;
    shmrpc_map *m = NULL;
    int rc = shmrpc_map_open(&m, arg, &o);
    shmrpc_map_close(m);
    return rc == SHMRPC_EPROTO && strstr(shmrpc_errmsg(), ", not " TYPE_B) ? 0 : 1;
}

/* The creator stores the type; an open of another type is refused in any process, an
 * untyped open accepts the map and sees its type, and a typed open refuses an untyped map. */
static void types_stored_and_checked(void **state)
{
    (void)state;
    const char *name = new_name("typed");
    shmrpc_map_opts o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
    char type[] = TYPE_A;
    o.type = type;
    shmrpc_map *m = open_map(name, &o);
    memset(type, 'x', sizeof type - 1); /* the map keeps its own copy */
    assert_int_equal(put_s(m, "k", "v"), 0);
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_string_equal(info.type, TYPE_A);

    o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *any = open_map(name, &o);
    assert_int_equal(shmrpc_map_get_info(any, &info), 0);
    assert_string_equal(info.type, TYPE_A);
    assert_string_equal(get_s(any, "k"), "v");
    shmrpc_map_close(any);
    o.type = TYPE_A;
    shmrpc_map_close(open_map(name, &o));
    o.type = TYPE_B;
    shmrpc_map *other = NULL;
    assert_int_equal(shmrpc_map_open(&other, name, &o), SHMRPC_EPROTO);
    print_message("# %s\n", shmrpc_errmsg());
    assert_non_null(strstr(shmrpc_errmsg(), "holds " TYPE_A ", not " TYPE_B));
    assert_null(other);
    assert_int_equal(test_kid_reap(spawn(open_as_b, (void *)name), 10000), 0);
    shmrpc_map_close(m);

    /* A growth keeps the type (it lives in the header, not in a generation). */
    o = small_opts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    o.type = TYPE_A;
    m = open_map(name, &o);
    char k[32];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "key%d", i);
        assert_int_equal(put_s(m, k, "v"), 0);
    }
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_true(info.growths > 0);
    shmrpc_map_close(m);
    assert_int_equal(test_kid_reap(spawn(open_as_b, (void *)name), 10000), 0);

    /* An untyped map is refused to a typed open, and untyped opens see "". */
    o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
    m = open_map(name, &o);
    assert_int_equal(shmrpc_map_get_info(m, &info), 0);
    assert_string_equal(info.type, "");
    assert_int_equal(test_kid_reap(spawn(open_as_b, (void *)name), 10000), 0);
    shmrpc_map_close(m);

    /* A stored type with a NUL inside is not the type of its first bytes. */
    o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
    o.type = TYPE_A;
    shmrpc_map_close(open_map(name, &o));
    scribble("map", name, 4096 + 5, "", 1); /* "cache\0string key)..." */
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    o.type = "cache";
    assert_int_equal(shmrpc_map_open(&other, name, &o), SHMRPC_EPROTO);
    assert_non_null(strstr(shmrpc_errmsg(), "holds cache, not cache"));
    assert_null(other);

    /* A type length that disagrees with the segment's size is a corrupt header. */
    o = small_opts(SHMRPC_MAP_CREATE_NEW_OVERWRITE);
    o.type = TYPE_A;
    shmrpc_map_close(open_map(name, &o));
    uint32_t tlen = 3;
    scribble("map", name, 48, &tlen, 4);
    expect_refused(name, SHMRPC_EPROTO, "corrupt header");
    /* And one too long for any map is refused at open. */
    size_t n = SHMRPC_MAP_TYPE_MAX + 1;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'a', n);
    big[n] = 0;
    o.type = big;
    assert_int_equal(shmrpc_map_open(&other, name, &o), SHMRPC_EINVAL);
    free(big);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(operations),
        T(bad_args),
        T(options_each_refused),
        T(read_arguments),
        T(more_arguments),
        T(growth_keeps_initial_slots),
        T(unlink_spares_other_names),
        T(modes),
        T(wait_between_processes),
        T(wait_wakes_every_waiter),
        T(auto_unlink),
        T(batch_and_dead_holder),
        T(growth_with_readers),
        T(kill_at_random),
        T(dead_writer_mid_apply_rolled_forward),
        T(dead_mover_repaired_for_a_batch),
        T(claim_in_progress_kept),
        T(growth_counts_its_keys),
        T(used_near_the_top),
        T(overwritten_map_left_alone),
        T(recreated_map_numbered_above),
        T(auto_unlink_spares_a_map_made_anew),
        T(growth_leftovers_replaced),
        T(snapshots_while_writing),
        T(nobody_refused),
        T(corrupt_segments_refused),
        T(space_written_over),
        T(header_fields_refused),
        T(slots_written_over),
        T(reuse_without_growth),
        T(view_holds_space_until_reader_dies),
        T(slotless_view_holds_space),
        T(view_survives_a_forked_childs_reads),
        T(reuse_under_readers_and_kills),
        T(small_puts_beside_readers_reuse_space),
        T(types_stored_and_checked),
        T(sigbus_not_ours_goes_on),
        T(listed_as_its_handle_says),
        T(first_zero_numbers_from_one),
        T(dead_writers_bad_record_ignored),
        T(every_call_after_a_cut),
        T(iterate_after_odd_sequence),
        T(small_entries_take_whole_lines),
        T(two_writers_at_once),
        T(cas_increments_count_exactly),
    };
    if (getenv("MAP_TEST_ONLY")) cmocka_set_test_filter(getenv("MAP_TEST_ONLY"));
    return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
