/* SPDX-License-Identifier: MIT */
/* Queues and maps cut under their holders (issue 33, finding 5): another process (as
 * 'nobody' when this runs as root) truncates the segment file to 0 bytes or to one page
 * while holders push and pop, put and get; each holder survives, its next call and the
 * one after fail with SHMRPC_ECUT, shmrpcctl says the segment was cut, and an open with
 * create makes it anew without an unlink by hand. Children are bounded by alarm() and
 * reaped; every queue and map is unlinked, even when a test fails. */
#define _GNU_SOURCE /* pipe2 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <shmrpc.h>

#include "kids.h"
#include "skips.h"

#define CHILD_ALARM_S 60
#define NOBODY 65534
/* How long a holder goes on after the cut before it gives up (exit 40): generous, for a
 * loaded 2-core machine; a holder sees the cut at its next access, in microseconds. */
#define HOLDER_BOUND_MS 20000
#define REAP_MS 30000

static char qname[64], idle[80], mname[64];

static int setup(void **state)
{
    (void)state;
    snprintf(qname, sizeof qname, "cut_test.%d.q", (int)getpid());
    snprintf(idle, sizeof idle, "%s.idle", qname);
    snprintf(mname, sizeof mname, "cut_test.%d.m", (int)getpid());
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    test_kids_kill_all();
    shmrpc_queue_unlink(qname);
    shmrpc_queue_unlink(idle);
    shmrpc_map_unlink_quiet(mname);
    return 0;
}

/* --- the cutter ------------------------------------------------------------------------ */

struct cut {
    char file[300]; /* under /dev/shm */
    off_t size;
    bool nobody; /* as uid 65534 (when this runs as root) */
};

static int cutter(void *arg)
{
    const struct cut *c = arg;
    if (c->nobody && (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0))
        return 30;
    int fd = open(c->file, O_RDWR | O_CLOEXEC);
    if (fd < 0) return 31;
    int rc = ftruncate(fd, c->size) == 0 ? 0 : 32;
    close(fd);
    return rc;
}

/* Cuts the file, from another process: as nobody only when this is root (CI is); else as
 * this user, which the same mode lets do it as well (said on stderr). */
static void cut_from_outside(const char *file, off_t size, bool nobody)
{
    struct cut c = {.size = size, .nobody = nobody && geteuid() == 0};
    if (nobody && !c.nobody)
        test_skip_part("not root: the cut is made as uid %u, not as nobody",
                       (unsigned)geteuid());
    snprintf(c.file, sizeof c.file, "%s", file);
    assert_int_equal(test_kid_reap(test_kid_spawn(cutter, &c, CHILD_ALARM_S), REAP_MS), 0);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_size, size);
}

/* --- a child that holds a segment --------------------------------------------------------- */

/* A holder writes one byte to its pipe once it is at work (so the cut lands mid-loop), and
 * exits 0 when a call failed with SHMRPC_ECUT, saying "cut", and the next did too. */
typedef int (*holder_fn)(int ready);

static void say_ready(int fd, long *done)
{
    if (++*done == 1000) {
        ssize_t w = write(fd, "r", 1);
        (void)w;
    }
}

static int cut_seen(int rc, const char *who)
{
    fprintf(stderr, "# %s: %s: %s\n", who, shmrpc_status_name(rc), shmrpc_errmsg());
    if (rc != SHMRPC_ECUT) return 41;
    if (!strstr(shmrpc_errmsg(), "cut")) return 42;
    return 0;
}

struct holder {
    holder_fn fn;
    int pipe[2];
    pid_t pid;
};

static int run_holder(void *arg)
{
    struct holder *h = arg;
    close(h->pipe[0]);
    return h->fn(h->pipe[1]);
}

static void start_holder(struct holder *h, holder_fn fn)
{
    h->fn = fn;
    assert_int_equal(pipe(h->pipe), 0);
    h->pid = test_kid_spawn(run_holder, h, CHILD_ALARM_S);
    close(h->pipe[1]);
    struct pollfd p = {h->pipe[0], POLLIN, 0};
    assert_int_equal(poll(&p, 1, REAP_MS), 1); /* at work */
    char c;
    assert_int_equal(read(h->pipe[0], &c, 1), 1);
    close(h->pipe[0]);
}

/* --- shmrpcctl ------------------------------------------------------------------------------ */

/* Runs shmrpcctl with the arguments, 10 s at most: its exit status, and its stdout and
 * stderr in err. */
static int ctl(char *err, size_t cap, const char *a1, const char *a2, const char *a3)
{
    int pe[2];
    assert_int_equal(pipe2(pe, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pe[1], 2);
        dup2(pe[1], 1);
        alarm(10);
        execl(SHMRPCCTL, SHMRPCCTL, a1, a2, a3, (char *)NULL);
        _exit(127);
    }
    close(pe[1]);
    size_t n = 0;
    int64_t deadline = test_kid_now_ms() + 10000;
    struct pollfd p = {pe[0], POLLIN, 0};
    while (test_kid_now_ms() < deadline && n + 1 < cap) {
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t got = read(pe[0], err + n, cap - 1 - n);
        if (got <= 0) break;
        n += (size_t)got;
    }
    err[n] = '\0';
    close(pe[0]);
    int st;
    kill(pid, SIGKILL); /* harmless once it exited */
    waitpid(pid, &st, 0);
    fprintf(stderr, "# shmrpcctl %s %s %s: %s", a1, a2, a3 ? a3 : "", err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* --- queues --------------------------------------------------------------------------------- */

static shmrpc_queue_opts qopts(shmrpc_queue_mode mode)
{
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = mode;
    o.perms = 0666;
    o.capacity = 1024;
    o.arena_bytes = 1u << 20; /* the segment is some 1.1 MB: a page is a small part */
    return o;
}

static shmrpc_queue *open_q(shmrpc_queue_mode mode)
{
    shmrpc_queue_opts o = qopts(mode);
    shmrpc_queue *q = NULL;
    int rc = shmrpc_queue_open(&q, qname, &o);
    if (rc != 0) fprintf(stderr, "# open: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(rc, 0);
    return q;
}

/* Pushes 1 KB messages and pops them again (never full), until a call fails. */
static int pusher(int ready)
{
    shmrpc_queue_opts o = qopts(SHMRPC_QUEUE_CONNECT_TO_EXISTING);
    shmrpc_queue *q;
    if (shmrpc_queue_open(&q, qname, &o) != 0) return 20;
    static char msg[1024], buf[1024];

    memset(msg, 'm', sizeof msg);
    long done = 0;
    int64_t give_up = test_kid_now_ms() + HOLDER_BOUND_MS;
    int rc = 0;
    while (test_kid_now_ms() < give_up) {
        size_t len;
        if ((rc = shmrpc_queue_push(q, msg, sizeof msg, 1000)) != 0) break;
        if ((rc = shmrpc_queue_pop(q, buf, sizeof buf, &len, 1000)) != 0) break;
        if (len != sizeof msg || memcmp(buf, msg, len) != 0) return 43;
        say_ready(ready, &done);
    }
    if (rc == 0) return 40;
    int st = cut_seen(rc, "pusher");
    if (st == 0) st = cut_seen(shmrpc_queue_push(q, "x", 1, 0), "pusher, again");
    shmrpc_queue_close(q);
    return st;
}

/* Waits on an empty queue, for ever: the cut must end the wait. */
static int sleeper(int ready)
{
    shmrpc_queue_opts o = qopts(SHMRPC_QUEUE_CONNECT_TO_EXISTING);
    o.wait.mode = SHMRPC_WAIT_SLEEP;
    shmrpc_queue *q;
    const char *name = idle;
    if (shmrpc_queue_open(&q, name, &o) != 0) return 20;
    char buf[16];
    size_t len;
    ssize_t w = write(ready, "r", 1);
    (void)w;
    int rc = shmrpc_queue_pop(q, buf, sizeof buf, &len, SHMRPC_QUEUE_WAIT_FOREVER);
    int st = cut_seen(rc, "sleeper");
    if (st == 0) st = cut_seen(shmrpc_queue_pop(q, buf, sizeof buf, &len, 0), "sleeper, again");
    shmrpc_queue_close(q);
    return st;
}

static void queue_cut(off_t size, bool nobody)
{
    shmrpc_queue *mine = open_q(SHMRPC_QUEUE_CONNECT_OR_CREATE);
    char file[300];
    snprintf(file, sizeof file, "/dev/shm/shmrpc.queue.%s", qname);
    struct stat full;
    assert_int_equal(stat(file, &full), 0);
    assert_true(full.st_size > 4096);
    struct holder h;
    start_holder(&h, pusher);
    cut_from_outside(file, size, nobody);
    assert_int_equal(test_kid_reap(h.pid, REAP_MS), 0); /* survived, and saw the cut */
    /* This process held it too. */
    assert_int_equal(shmrpc_queue_push(mine, "x", 1, 0), SHMRPC_ECUT);
    shmrpc_queue_stats s;
    assert_int_equal(shmrpc_queue_get_stats(mine, &s), SHMRPC_ECUT);
    shmrpc_queue_close(mine);
    /* Without create: a clear error, and shmrpcctl says so. */
    shmrpc_queue_opts o = qopts(SHMRPC_QUEUE_CONNECT_TO_EXISTING);
    shmrpc_queue *q = NULL;
    assert_int_equal(shmrpc_queue_open(&q, qname, &o), SHMRPC_ECUT);
    assert_non_null(strstr(shmrpc_errmsg(), "cut"));
    char err[2048];
    assert_int_equal(ctl(err, sizeof err, "queue", "stat", qname), 1);
    assert_non_null(strstr(err, "cut"));
    assert_int_equal(ctl(err, sizeof err, "ls", qname, NULL), 0);
    assert_non_null(strstr(err, "cut to"));
    /* With create: made anew, no unlink by hand. */
    q = open_q(SHMRPC_QUEUE_CONNECT_OR_CREATE);
    struct stat now;
    assert_int_equal(stat(file, &now), 0);
    assert_int_equal(now.st_size, full.st_size);
    assert_int_equal(shmrpc_queue_push(q, "again", 5, 0), 0);
    char buf[16];
    size_t len;
    assert_int_equal(shmrpc_queue_pop(q, buf, sizeof buf, &len, 0), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "again", 5);
    shmrpc_queue_close(q);
    assert_int_equal(ctl(err, sizeof err, "queue", "stat", qname), 0);
}

static void queue_cut_to_0(void **state)
{
    (void)state;
    queue_cut(0, false);
}

static void queue_cut_to_a_page(void **state)
{
    (void)state;
    queue_cut(4096, false);
}

static void queue_cut_to_0_by_nobody(void **state)
{
    (void)state;
    queue_cut(0, true);
}

static void queue_cut_to_a_page_by_nobody(void **state)
{
    (void)state;
    queue_cut(4096, true);
}

/* A consumer asleep on an empty queue wakes with the cut, within its wait's checks. */
static void queue_cut_wakes_a_sleeper(void **state)
{
    (void)state;
    const char *name = idle;
    shmrpc_queue_opts o = qopts(SHMRPC_QUEUE_CONNECT_OR_CREATE);
    shmrpc_queue *q = NULL;
    assert_int_equal(shmrpc_queue_open(&q, name, &o), 0);
    struct holder h;
    start_holder(&h, sleeper);
    test_kid_nap_ms(100); /* asleep by now, mostly; a pop not yet asleep sees it as well */
    char file[300];
    snprintf(file, sizeof file, "/dev/shm/shmrpc.queue.%s", name);
    cut_from_outside(file, 4096, true);
    int64_t t0 = test_kid_now_ms();
    int st = test_kid_reap(h.pid, REAP_MS);
    fprintf(stderr, "# the sleeper ended %lld ms after the cut\n",
            (long long)(test_kid_now_ms() - t0));
    shmrpc_queue_close(q);
    shmrpc_queue_unlink(name);
    assert_int_equal(st, 0);
}

/* --- maps ------------------------------------------------------------------------------------- */

static shmrpc_map_opts mopts(shmrpc_map_mode mode)
{
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.mode = mode;
    o.perms = 0666;
    return o;
}

/* Puts keys and gets them back, until a call fails. */
static int putter(int ready)
{
    shmrpc_map_opts o = mopts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m;
    if (shmrpc_map_open(&m, mname, &o) != 0) return 20;
    long done = 0;
    int64_t give_up = test_kid_now_ms() + HOLDER_BOUND_MS;
    int rc = 0;
    for (unsigned i = 0; test_kid_now_ms() < give_up; i++) {
        char k[32], v[64], got[64];
        int kl = snprintf(k, sizeof k, "k%u", i % 500);
        int vl = snprintf(v, sizeof v, "value %u", i);
        size_t len;
        if ((rc = shmrpc_map_put(m, k, (size_t)kl, v, (size_t)vl)) != 0) break;
        if ((rc = shmrpc_map_get(m, k, (size_t)kl, got, sizeof got, &len)) != 0) break;
        if (len != (size_t)vl || memcmp(got, v, len) != 0) return 43;
        say_ready(ready, &done);
    }
    if (rc == 0) return 40;
    int st = cut_seen(rc, "putter");
    size_t len;
    char got[8];
    if (st == 0) st = cut_seen(shmrpc_map_get(m, "k1", 2, got, sizeof got, &len), "putter, again");
    shmrpc_map_close(m);
    return st;
}

/* Gets a key (present or not) over and over: reads only, never the lock. */
static int getter(int ready)
{
    shmrpc_map_opts o = mopts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m;
    if (shmrpc_map_open(&m, mname, &o) != 0) return 20;
    long done = 0;
    int64_t give_up = test_kid_now_ms() + HOLDER_BOUND_MS;
    int rc = 0;
    for (unsigned i = 0; test_kid_now_ms() < give_up; i++) {
        char k[32], got[64];
        int kl = snprintf(k, sizeof k, "k%u", i % 700);
        size_t len;
        rc = shmrpc_map_get(m, k, (size_t)kl, got, sizeof got, &len);
        if (rc != 0 && rc != SHMRPC_ENOENT) break;
        say_ready(ready, &done);
    }
    if (rc == 0 || rc == SHMRPC_ENOENT) return 40;
    int st = cut_seen(rc, "getter");
    uint64_t n;
    if (st == 0) st = cut_seen(shmrpc_map_size(m, &n), "getter, again");
    shmrpc_map_close(m);
    return st;
}

/* The map's current generation file. */
static void gen_file(char *out, size_t cap)
{
    char prefix[200];
    int n = snprintf(prefix, sizeof prefix, "shmrpc.mapgen.%s.", mname);
    DIR *d = opendir("/dev/shm");
    assert_non_null(d);
    struct dirent *de;
    int found = 0;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, prefix, (size_t)n) == 0) {
            snprintf(out, cap, "/dev/shm/%s", de->d_name);
            found++;
        }
    closedir(d);
    assert_int_equal(found, 1); /* no growth: 500 keys fit the first */
}

enum which { GEN, HDR };

static void map_cut(enum which which, off_t size, bool nobody)
{
    shmrpc_map_opts o = mopts(SHMRPC_MAP_CONNECT_OR_CREATE);
    shmrpc_map *mine = NULL;
    assert_int_equal(shmrpc_map_open(&mine, mname, &o), 0);
    assert_int_equal(shmrpc_map_put(mine, "k1", 2, "one", 3), 0);
    char file[300];
    if (which == GEN)
        gen_file(file, sizeof file);
    else
        snprintf(file, sizeof file, "/dev/shm/shmrpc.map.%s", mname);
    struct holder w, r;
    start_holder(&w, putter);
    start_holder(&r, getter);
    cut_from_outside(file, size, nobody);
    assert_int_equal(test_kid_reap(w.pid, REAP_MS), 0);
    assert_int_equal(test_kid_reap(r.pid, REAP_MS), 0);
    char buf[16];
    size_t len;
    assert_int_equal(shmrpc_map_get(mine, "k1", 2, buf, sizeof buf, &len), SHMRPC_ECUT);
    assert_int_equal(shmrpc_map_put(mine, "k2", 2, "two", 3), SHMRPC_ECUT);
    shmrpc_map_close(mine);
    /* Without create: a clear error, and shmrpcctl says so. */
    o = mopts(SHMRPC_MAP_CONNECT_TO_EXISTING);
    shmrpc_map *m = NULL;
    assert_int_equal(shmrpc_map_open(&m, mname, &o), SHMRPC_ECUT);
    assert_non_null(strstr(shmrpc_errmsg(), "cut"));
    char err[2048];
    assert_int_equal(ctl(err, sizeof err, "map", "stat", mname), 1);
    assert_non_null(strstr(err, "cut"));
    assert_int_equal(ctl(err, sizeof err, "ls", mname, NULL), 0);
    assert_non_null(strstr(err, "cut to"));
    /* With create: made anew (empty: what it held is gone), no unlink by hand. */
    o = mopts(SHMRPC_MAP_CONNECT_OR_CREATE);
    int rc = shmrpc_map_open(&m, mname, &o);
    if (rc != 0) fprintf(stderr, "# reopen: %s\n", shmrpc_errmsg());
    assert_int_equal(rc, 0);
    assert_int_equal(shmrpc_map_get(m, "k1", 2, buf, sizeof buf, &len), SHMRPC_ENOENT);
    assert_int_equal(shmrpc_map_put(m, "k1", 2, "uno", 3), 0);
    assert_int_equal(shmrpc_map_get(m, "k1", 2, buf, sizeof buf, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "uno", 3);
    shmrpc_map_close(m);
    assert_int_equal(ctl(err, sizeof err, "map", "stat", mname), 0);
    gen_file(file, sizeof file); /* the cut generation is gone: one file, the new map's */
}

static void map_generation_cut_to_0(void **state)
{
    (void)state;
    map_cut(GEN, 0, false);
}

static void map_generation_cut_to_a_page(void **state)
{
    (void)state;
    map_cut(GEN, 4096, false);
}

static void map_generation_cut_to_a_page_by_nobody(void **state)
{
    (void)state;
    map_cut(GEN, 4096, true);
}

static void map_header_cut_to_0_by_nobody(void **state)
{
    (void)state;
    map_cut(HDR, 0, true);
}

/* --- a SIGBUS that is not ours ------------------------------------------------------------- */

/* Past the end of a file of this process's own (not a queue's or a map's), mapped beside a
 * guarded queue: the guard passes it on, and the process dies of SIGBUS as it would without. */
static int foreign_fault(void *arg)
{
    (void)arg;
    shmrpc_queue_opts o = qopts(SHMRPC_QUEUE_CONNECT_TO_EXISTING);
    shmrpc_queue *q;
    if (shmrpc_queue_open(&q, qname, &o) != 0) return 20;
    char path[] = "/tmp/cut_test.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 21;
    unlink(path);
    if (ftruncate(fd, 4096) != 0) return 22;
    volatile char *p = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return 23;
    return p[4096]; /* past the file's end */
}

static void foreign_sigbus_still_kills(void **state)
{
    (void)state;
    shmrpc_queue *q = open_q(SHMRPC_QUEUE_CONNECT_OR_CREATE);
    assert_int_equal(test_kid_reap(test_kid_spawn(foreign_fault, NULL, CHILD_ALARM_S), REAP_MS),
                     128 + SIGBUS);
    shmrpc_queue_close(q);
}

/* A program's own SIGBUS handler, there before the first queue was opened: the guard hands
 * it a SIGBUS that is not a queue's, with the fault's address, and it may jump out of it. */
static sigjmp_buf out_of_fault;
static void *volatile fault_at;
static volatile sig_atomic_t plain_sig;

static void own_handler_info(int sig, siginfo_t *info, void *ctx)
{
    (void)sig;
    (void)ctx;
    fault_at = info->si_addr;
    siglongjmp(out_of_fault, 1);
}

static void own_handler_plain(int sig)
{
    plain_sig = sig;
    siglongjmp(out_of_fault, 1);
}

/* Two pages past the end of a file of the process's own, mapped readable; NULL on failure. */
static volatile char *past_a_file(void)
{
    char path[] = "/tmp/cut_test.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    unlink(path);
    char *p =
        ftruncate(fd, 4096) == 0 ? mmap(NULL, 3 * 4096, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    close(fd);
    return p == MAP_FAILED ? NULL : (volatile char *)p + 4096;
}

/* arg: whether the program's handler takes siginfo. Exit 0: the handler ran with the
 * fault's address (or signal), and a queue's own cut is still the guard's after it. */
static int foreign_fault_to_own_handler(void *arg)
{
    bool info = *(const bool *)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    if (info) {
        sa.sa_sigaction = own_handler_info;
        sa.sa_flags = SA_SIGINFO;
    } else {
        sa.sa_handler = own_handler_plain;
    }
    if (sigaction(SIGBUS, &sa, NULL) != 0) return 20;
    shmrpc_queue_opts o = qopts(SHMRPC_QUEUE_CONNECT_TO_EXISTING);
    shmrpc_queue *q;
    if (shmrpc_queue_open(&q, qname, &o) != 0) return 21;
    volatile char *past = past_a_file();
    if (past == NULL) return 22;
    /* Twice, at two addresses: a handler that jumps out leaves the guard ready for the next. */
    for (int i = 0; i < 2; i++) {
        fault_at = NULL;
        plain_sig = 0;
        if (sigsetjmp(out_of_fault, 1) == 0) {
            (void)past[i * 4096];
            return 23; /* read past the end of a file, and no fault */
        }
        if (info ? fault_at != (void *)(past + i * 4096) : plain_sig != SIGBUS) return 24;
    }
    /* The guard is still ours for the queue: pushes go on. */
    char m = 'x';
    int rc = shmrpc_queue_push(q, &m, 1, 0);
    shmrpc_queue_close(q);
    return rc == 0 ? 0 : 25;
}

static void foreign_sigbus_to_the_handler_before(void **state)
{
    (void)state;
    shmrpc_queue *q = open_q(SHMRPC_QUEUE_CONNECT_OR_CREATE);
    static const bool info = true, plain = false;
    assert_int_equal(
        test_kid_reap(test_kid_spawn(foreign_fault_to_own_handler, (void *)&info, CHILD_ALARM_S),
                      REAP_MS),
        0);
    assert_int_equal(
        test_kid_reap(test_kid_spawn(foreign_fault_to_own_handler, (void *)&plain, CHILD_ALARM_S),
                      REAP_MS),
        0);
    shmrpc_queue_close(q);
}

/* A handler installed after the guard that chains to the one it found (the guard's), while
 * the guard, installed again by the next open, chains to it: a SIGBUS not ours goes round
 * once, then the process dies of it, rather than recursing until its stack runs out. */
static struct sigaction guard_found;

static void chaining_handler(int sig, siginfo_t *info, void *ctx)
{
    guard_found.sa_sigaction(sig, info, ctx);
}

static int foreign_fault_in_a_circle(void *arg)
{
    (void)arg;
    shmrpc_queue_opts o = qopts(SHMRPC_QUEUE_CONNECT_TO_EXISTING);
    shmrpc_queue *q, *q2;
    if (shmrpc_queue_open(&q, qname, &o) != 0) return 20;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_sigaction = chaining_handler;
    sa.sa_flags = SA_SIGINFO;
    if (sigaction(SIGBUS, &sa, &guard_found) != 0 || !(guard_found.sa_flags & SA_SIGINFO))
        return 21;
    if (shmrpc_queue_open(&q2, qname, &o) != 0) return 22; /* the guard goes back on top */
    volatile char *past = past_a_file();
    if (past == NULL) return 23;
    return past[0];
}

static void foreign_sigbus_in_a_circle_kills(void **state)
{
    (void)state;
    shmrpc_queue *q = open_q(SHMRPC_QUEUE_CONNECT_OR_CREATE);
    assert_int_equal(
        test_kid_reap(test_kid_spawn(foreign_fault_in_a_circle, NULL, CHILD_ALARM_S), REAP_MS),
        128 + SIGBUS);
    shmrpc_queue_close(q);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(queue_cut_to_0),
        T(queue_cut_to_a_page),
        T(queue_cut_to_0_by_nobody),
        T(queue_cut_to_a_page_by_nobody),
        T(queue_cut_wakes_a_sleeper),
        T(map_generation_cut_to_0),
        T(map_generation_cut_to_a_page),
        T(map_generation_cut_to_a_page_by_nobody),
        T(map_header_cut_to_0_by_nobody),
        T(foreign_sigbus_still_kills),
        T(foreign_sigbus_to_the_handler_before),
        T(foreign_sigbus_in_a_circle_kills),
    };
    /* QUEUE_TEST_ONLY=GLOB runs only the matching tests (the mutant kit narrows by it). */
    if (getenv("QUEUE_TEST_ONLY")) cmocka_set_test_filter(getenv("QUEUE_TEST_ONLY"));
    return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
