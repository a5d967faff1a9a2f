/* SPDX-License-Identifier: MIT */
/* shmrpcctl with real processes: call against every echo method over shm:// and tcp://,
 * bad input with its messages and exit codes, ls of a live server, clean of a SIGKILLed
 * one's leftovers next to a live one's; the admin API's verdicts on segments of every kind
 * half made, cut, held, changed after listing, in users' private directories and of another
 * user; and the dynamic codec alone on types echo lacks.
 * Every child is bounded; whatever a test leaves is removed in the group teardown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#include <shmrpc/admin.h>
#include <shmrpc/codec.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/lock.h>
#include <shmrpc/map.h>
#include <shmrpc/queue.h>

#include "procs.h"
#include "sup_helpers.h"

typedef sup_run run;

static char prefix[64];   /* every segment of this run begins with "shmrpc:" prefix */
static char ns[32];       /* the directory of names under /dev/shm, "shmrpc-UID/" */
static char shm_live[96]; /* the live server's shm:// name */
static char shm_dead[96]; /* the server killed by clean_removes_only_the_dead */
static char lock_name[96];
static char tcp_addr[64];
static pid_t srv_shm, srv_tcp, srv_dead;

/* shmrpcctl with the arguments (NULL-terminated) and stdin, 10 s at most. */
#define ctl(r, ...) sup_run_prog(r, SHMRPCCTL, __VA_ARGS__)

static void expect(const char *addr, const char *method, const char *args, const char *out)
{
    run r;
    ctl(&r, NULL, "call", addr, method, args, NULL);
    if (r.status != 0 || strcmp(r.out, out) != 0)
        fail_msg("call %s %s %s: status %d, out '%s', err '%s' (wanted '%s')", addr, method, args,
                 r.status, r.out, r.err, out);
}

static void expect_err(const char *addr, const char *method, const char *args, int status,
                       const char *err)
{
    run r;
    ctl(&r, NULL, "call", addr, method, args, NULL);
    if (r.status != status || strcmp(r.err, err) != 0 || r.out[0] != '\0')
        fail_msg("call %s %s %s: status %d, err '%s', out '%s' (wanted %d, '%s')", addr, method,
                 args ? args : "", r.status, r.err, r.out, status, err);
}

/* echo-server in a process group of its own, output discarded. */
static pid_t start_server(const char *addr)
{
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        alarm(120);
        execl(ECHO_SERVER, ECHO_SERVER, "--workers", "1", addr, (char *)NULL);
        _exit(127);
    }
    if (pid > 0) setpgid(pid, pid);
    return pid;
}

static bool wait_ready(const char *addr)
{
    for (int64_t end = sup_now_ms() + 10000; sup_now_ms() < end; sup_nap_ms(50)) {
        run r;
        ctl(&r, NULL, "call", addr, "add", "[1,2]", NULL);
        if (r.status == 0 && strcmp(r.out, "3\n") == 0) return true;
    }
    return false;
}

static void stop_group(pid_t *pid, int sig)
{
    if (*pid <= 0) return;
    kill(-*pid, sig);
    for (int64_t end = sup_now_ms() + 5000; sup_now_ms() < end; sup_nap_ms(10))
        if (waitpid(*pid, NULL, WNOHANG) == *pid) {
            *pid = 0;
            return;
        }
    kill(-*pid, SIGKILL);
    waitpid(*pid, NULL, 0);
    *pid = 0;
}

static bool shm_exists(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    return access(path, F_OK) == 0;
}

/* Unlinks every segment of this run, in /dev/shm and in the directory of names; how many
 * there were. */
static int sweep_ours(void)
{
    int n = 0;
    char want[80], lock[120], stats[100];
    snprintf(want, sizeof want, "shmrpc:%s", prefix);
    snprintf(lock, sizeof lock, "shmrpc.lock.%s", lock_name);
    snprintf(stats, sizeof stats, "shmrpc.stats.shm.%s", prefix);
    for (int i = 0; i < 2; i++) {
        char dir[300];
        snprintf(dir, sizeof dir, "/dev/shm/%s", i ? ns : "");
        DIR *d = opendir(dir);
        for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
            /* Queues and maps of a run: shmrpc.queue.PREFIX..., shmrpc.map(gen).PREFIX...,
             * and their locks. */
            if (strncmp(e->d_name, want, strlen(want)) != 0 && strcmp(e->d_name, lock) != 0 &&
                strncmp(e->d_name, stats, strlen(stats)) != 0 && strstr(e->d_name, prefix) == NULL)
                continue;
            char path[600];
            snprintf(path, sizeof path, "%s%s", dir, e->d_name);
            unlink(path);
            n++;
        }
        if (d) closedir(d);
    }
    return n;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(prefix, sizeof prefix, "ctl_t%d_", (int)getpid());
    char dir[256];
    if (shmrpc_names_dir(dir, sizeof dir) != 0 || strncmp(dir, "/dev/shm/", 9) != 0) return -1;
    snprintf(ns, sizeof ns, "%.30s/", dir + 9); /* "shmrpc-UID/" */
    snprintf(shm_live, sizeof shm_live, "shm://%slive", prefix);
    snprintf(shm_dead, sizeof shm_dead, "shm://%sdead", prefix);
    snprintf(lock_name, sizeof lock_name, "%slock", prefix);
    int port = test_free_port();
    if (port <= 0) return -1;
    snprintf(tcp_addr, sizeof tcp_addr, "tcp://127.0.0.1:%d", port);
    srv_shm = start_server(shm_live);
    srv_tcp = start_server(tcp_addr);
    if (srv_shm <= 0 || srv_tcp <= 0) return -1;
    return wait_ready(shm_live) && wait_ready(tcp_addr) ? 0 : -1;
}

static void drop_fake_dirs(const char *seg);
static void drop_xdg(const char *seg);

static int group_teardown(void **state)
{
    (void)state;
    stop_group(&srv_shm, SIGKILL);
    stop_group(&srv_tcp, SIGKILL);
    stop_group(&srv_dead, SIGKILL);
    shmrpc_lock_unlink(lock_name);
    char seg[160];
    snprintf(seg, sizeof seg, "shmrpc:%sns", prefix);
    drop_fake_dirs(seg);
    snprintf(seg, sizeof seg, "shmrpc:%sxdg", prefix);
    drop_xdg(seg);
    sweep_ours();
    return 0;
}

static void every_method(const char *addr)
{
    expect(addr, "add", "[40,2]", "42\n");
    expect(addr, "add", "{\"b\":-5,\"a\":1}", "-4\n");
    expect(addr, "add", "[-9223372036854775807,-1]", "-9223372036854775808\n");
    expect(addr, "centroid", "[[{\"x\":1,\"y\":2},{\"x\":3,\"y\":4.5,\"label\":\"p\"}]]",
           "{\"x\":2.0,\"y\":3.25,\"label\":\"centroid\"}\n");
    expect(addr, "centroid", "{\"points\":[{\"x\":0.1,\"y\":-1e300,\"label\":null}]}",
           "{\"x\":0.1,\"y\":-1e+300,\"label\":\"centroid\"}\n");
    expect(addr, "echo_json", "[\"h\\u00e9llo \\\"q\\\"\\n\\u0001\"]",
           "\"h\xc3\xa9llo \\\"q\\\"\\n\\u0001\"\n");
    expect(addr, "echo_json", "{\"text\":\"\"}", "\"\"\n");
    expect(addr, "echo_raw", "[\"hi there\"]", "\"hi there\"\n");
    expect(addr, "echo_raw", "[{\"base64\":\"/wA=\"}]", "{\"base64\":\"/wA=\"}\n");
    expect(addr, "echo_raw", "{\"data\":\"\"}", "\"\"\n");
    run r;
    ctl(&r, "[7, 8]", "call", addr, "add", "-", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "15\n");
}

static void call_every_method_shm(void **state)
{
    (void)state;
    every_method(shm_live);
}

static void call_every_method_tcp(void **state)
{
    (void)state;
    every_method(tcp_addr);
}

static void call_bad_input(void **state)
{
    (void)state;
    const char *a = shm_live;
    expect_err(a, "add", "[\"x\",2]", 2,
               "shmrpcctl: add: argument 'a': expected an integer (i64), got \"x\"\n");
    expect_err(a, "add", "[1.5,2]", 2,
               "shmrpcctl: add: argument 'a': expected an integer (i64), got 1.5\n");
    expect_err(a, "add", "[1]", 2,
               "shmrpcctl: add: arguments: missing argument 'b' (add takes: a, b)\n");
    expect_err(a, "add", "[1,2,3]", 2,
               "shmrpcctl: add: arguments: 3 given, but add takes 2 (a, b)\n");
    expect_err(a, "add", "{\"a\":1,\"c\":2}", 2,
               "shmrpcctl: add: arguments: add has no parameter 'c' (it takes: a, b)\n");
    expect_err(a, "add", "[1,", 2,
               "shmrpcctl: add: arguments: bad JSON at line 1, column 3: ']' expected near end "
               "of file\n");
    expect_err(a, "add", "5", 2,
               "shmrpcctl: add: arguments: expected a JSON array of the arguments in order or an "
               "object by name, got 5\n");
    expect_err(a, "centroid", "[[{\"x\":1}]]", 2,
               "shmrpcctl: centroid: argument 'points'[0]: missing field 'y'\n");
    expect_err(a, "centroid", "[[{\"x\":1,\"y\":\"a\"}]]", 2,
               "shmrpcctl: centroid: argument 'points'[0].y: expected a number (f64), got \"a\"\n");
    expect_err(a, "centroid", "[[{\"x\":1,\"y\":2,\"z\":3}]]", 2,
               "shmrpcctl: centroid: argument 'points'[0]: struct Point has no field 'z'\n");
    expect_err(a, "echo_json", "[5]", 2,
               "shmrpcctl: echo_json: argument 'text': expected a string (string), got 5\n");
    expect_err(a, "echo_raw", "[{\"base64\":\"abc\"}]", 2,
               "shmrpcctl: echo_raw: argument 'data': not valid base64 (RFC 4648, with "
               "padding)\n");
    expect_err(a, "nope", "[]", 2,
               "shmrpcctl: Echo has no method 'nope' (it has: add, centroid, echo_json, "
               "echo_raw)\n");
    /* Failures of the call itself: 1. */
    expect_err(a, "centroid", "[[]]", 1,
               "shmrpcctl: centroid: invalid argument: centroid of no points\n");
    expect_err(a, "add", "[9223372036854775807,1]", 1,
               "shmrpcctl: add: invalid argument: add: 9223372036854775807 + 1 overflows i64\n");
    char nobody[128];
    snprintf(nobody, sizeof nobody, "shm://%snobody", prefix);
    run r;
    ctl(&r, NULL, "call", nobody, "add", "[1,2]", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "unavailable"));
    /* Usage: 2. */
    ctl(&r, NULL, "call", a, NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "usage: shmrpcctl call"));
    ctl(&r, NULL, "call", "--timeout", "0", a, "add", NULL);
    assert_int_equal(r.status, 2);
    ctl(&r, NULL, "call", "bogus://x", "add", "[1,2]", NULL);
    assert_int_equal(r.status, 2);
    /* No supervisor named, and none in the registry (an empty one: the other tests' are
     * not this one's); control_test.c tests status. */
    char *xdg = getenv("XDG_RUNTIME_DIR") ? strdup(getenv("XDG_RUNTIME_DIR")) : NULL;
    setenv("XDG_RUNTIME_DIR", "/nonexistent-shmrpc-ctl-test", 1);
    ctl(&r, NULL, "status", NULL);
    if (xdg)
        setenv("XDG_RUNTIME_DIR", xdg, 1);
    else
        unsetenv("XDG_RUNTIME_DIR");
    free(xdg);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "which supervisor?"));
    ctl(&r, NULL, "frobnicate", NULL);
    assert_int_equal(r.status, 2);
    ctl(&r, NULL, "--help", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "call ADDRESS METHOD"));
}

/* --trace: a fresh traceparent, or the one given, sent and printed on stderr; a bad one
 * refused; health takes no --trace. */
static void call_with_trace(void **state)
{
    (void)state;
    const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const char *addrs[] = {shm_live, tcp_addr};
    for (int i = 0; i < 2; i++) {
        run r;
        ctl(&r, NULL, "call", "--trace", addrs[i], "add", "[1,2]", NULL);
        assert_int_equal(r.status, 0);
        assert_string_equal(r.out, "3\n");
        assert_int_equal(strncmp(r.err, "traceparent: 00-", 16), 0);
        assert_int_equal(strlen(r.err), strlen("traceparent: ") + 55 + 1);
        char given[128];
        snprintf(given, sizeof given, "--trace=%s", tp);
        ctl(&r, NULL, "call", given, addrs[i], "add", "[1,2]", NULL);
        assert_int_equal(r.status, 0);
        char want[128];
        snprintf(want, sizeof want, "traceparent: %s\n", tp);
        assert_string_equal(r.err, want);
    }
    run r;
    ctl(&r, NULL, "call", "--trace=00-nope", shm_live, "add", "[1,2]", NULL);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, "shmrpcctl: call: --trace: traceparent '00-nope' is not 55 bytes "
                               "long (version 00) (see 'shmrpcctl call --help')\n");
    ctl(&r, NULL, "health", "--trace", shm_live, NULL);
    assert_int_equal(r.status, 2);
    ctl(&r, NULL, "call", "--help", NULL);
    assert_non_null(strstr(r.out, "--trace"));
}

static void ls_shows_the_live_server(void **state)
{
    (void)state;
    run r;
    const char *key = shm_live + 6;
    ctl(&r, NULL, "ls", key, NULL);
    assert_int_equal(r.status, 0);
    char want[400];
    snprintf(want, sizeof want, "%sshmrpc:%s ", ns, key);
    const char *line = strstr(r.out, want);
    if (line == NULL) fail_msg("ls: %s", r.out);
    assert_true(strncmp(r.out, "KIND", 4) == 0);
    assert_true(line > r.out && strncmp(line - 9, "control  ", 9) == 0);
    snprintf(want, sizeof want, "pid %d ", (int)srv_shm);
    assert_non_null(strstr(line, want));
    assert_non_null(strstr(line, "alive"));
    assert_non_null(strstr(line, "service Echo, 1 worker"));
    snprintf(want, sizeof want, "stats    %sshmrpc.stats.shm.%s ", ns, key);
    line = strstr(r.out, want);
    if (line == NULL) fail_msg("ls: %s", r.out);
    snprintf(want, sizeof want, "pid %d ", (int)srv_shm);
    assert_non_null(strstr(line, want));
    assert_non_null(strstr(line, "alive   statistics of service Echo, 4 methods\n"));
    assert_null(strstr(r.out, "stale"));
    ctl(&r, NULL, "ls", "--json", shm_live, NULL);
    assert_int_equal(r.status, 0);
    /* Its statistics segment sorts first ('.' before ':'), then the control segment. */
    snprintf(want, sizeof want,
             "[{\"kind\":\"stats\",\"name\":\"%sshmrpc.stats.shm.%s\",\"key\":\"%s\",\"size\":", ns,
             key, key);
    if (strncmp(r.out, want, strlen(want)) != 0) fail_msg("ls --json: %s", r.out);
    snprintf(want, sizeof want,
             "\"owner_pid\":%d,\"owner\":\"alive\",\"service\":\"Echo\",\"methods\":4,"
             "\"note\":\"statistics of service Echo, 4 methods\",\"stale\":false}",
             (int)srv_shm);
    if (strstr(r.out, want) == NULL) fail_msg("ls --json: %s", r.out);
    snprintf(want, sizeof want,
             "{\"kind\":\"control\",\"name\":\"%sshmrpc:%s\",\"key\":\"%s\",\"size\":", ns, key,
             key);
    if (strstr(r.out, want) == NULL) fail_msg("ls --json: %s", r.out);
    snprintf(want, sizeof want, "\"owner_pid\":%d,\"owner\":\"alive\",\"service\":\"Echo\"",
             (int)srv_shm);
    assert_non_null(strstr(r.out, want));
    assert_non_null(strstr(r.out, "\"stale\":false}]\n"));
}

/* A segment named like a channel, for the rules on channels. */
static void fake_channel(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 4096), 0);
    close(fd);
}

static void clean_removes_only_the_dead(void **state)
{
    (void)state;
    const char *live = shm_live + 6, *dead = shm_dead + 6;
    srv_dead = start_server(shm_dead);
    assert_true(srv_dead > 0);
    assert_true(wait_ready(shm_dead));
    pid_t dead_pid = srv_dead;
    stop_group(&srv_dead, SIGKILL); /* the whole group at once: no cleanup at all */
    char dead_ctl[160], dead_chan[160], live_chan[160], lock_seg[160], dead_stats[160];
    snprintf(dead_ctl, sizeof dead_ctl, "%sshmrpc:%s", ns, dead);
    snprintf(dead_stats, sizeof dead_stats, "%sshmrpc.stats.shm.%s", ns, dead);
    assert_true(shm_exists(dead_ctl) && shm_exists(dead_stats));
    /* A channel of the dead server, and one of the live server (a slot nobody claimed). */
    snprintf(dead_chan, sizeof dead_chan, "shmrpc:%s:%d:c3:1", dead, (int)dead_pid);
    snprintf(live_chan, sizeof live_chan, "shmrpc:%s:%d:c200:7", live, (int)srv_shm);
    fake_channel(dead_chan);
    fake_channel(live_chan);
    shmrpc_lock_opts o;
    shmrpc_lock_opts_init(&o);
    shmrpc_lock *l;
    assert_int_equal(shmrpc_lock_open(&l, lock_name, &o), 0);
    shmrpc_lock_close(l);
    snprintf(lock_seg, sizeof lock_seg, "shmrpc.lock.%s", lock_name);

    run r;
    char want[400], owner[32];
    snprintf(owner, sizeof owner, "pid %d", (int)dead_pid); /* the OWNER column is %-11s */
    snprintf(want, sizeof want,
             "%-11s dead    service Echo, 0 workers, 0 connections; stale: "
             "its manager, pid %d, is dead\n",
             owner, (int)dead_pid);
    /* The worker, killed with its manager, counts until the kernel has it gone: on a busy
     * machine that can be after the manager was reaped (seen in a CI run). */
    for (int tries = 0;; tries++) {
        ctl(&r, NULL, "ls", live, dead, lock_name, NULL);
        assert_int_equal(r.status, 0);
        if (strstr(r.out, want) != NULL) break;
        if (tries == 100) fail_msg("ls: %s", r.out);
        usleep(50000);
    }
    snprintf(want, sizeof want,
             "%-11s dead    statistics of service Echo, 4 methods; stale: its server, pid %d, "
             "is dead\n",
             owner, (int)dead_pid);
    if (strstr(r.out, want) == NULL) fail_msg("ls: %s", r.out);
    assert_non_null(strstr(r.out, "free"));

    char expect_out[1024];
    snprintf(expect_out, sizeof expect_out,
             "would remove channel %s: its server, pid %d, is dead\n"
             "would remove stats %s: its server, pid %d, is dead\n"
             "would remove control %s: its manager, pid %d, is dead\n",
             dead_chan, (int)dead_pid, dead_stats, (int)dead_pid, dead_ctl, (int)dead_pid);
    ctl(&r, NULL, "clean", "--dry-run", live, dead, lock_name, NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, expect_out);
    assert_true(shm_exists(dead_ctl) && shm_exists(dead_chan) && shm_exists(dead_stats));

    snprintf(expect_out, sizeof expect_out,
             "removed channel %s: its server, pid %d, is dead\n"
             "removed stats %s: its server, pid %d, is dead\n"
             "removed control %s: its manager, pid %d, is dead\n",
             dead_chan, (int)dead_pid, dead_stats, (int)dead_pid, dead_ctl, (int)dead_pid);
    ctl(&r, NULL, "clean", live, shm_dead, lock_name, NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, expect_out);
    assert_false(shm_exists(dead_ctl) || shm_exists(dead_chan) || shm_exists(dead_stats));
    char live_ctl[160];
    snprintf(live_ctl, sizeof live_ctl, "%sshmrpc:%s", ns, live);
    char live_stats[160];
    snprintf(live_stats, sizeof live_stats, "%sshmrpc.stats.shm.%s", ns, live);
    assert_true(shm_exists(live_ctl) && shm_exists(live_chan) && shm_exists(lock_seg) &&
                shm_exists(live_stats));
    expect(shm_live, "add", "[2,3]", "5\n");

    ctl(&r, NULL, "clean", live, lock_name, NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "nothing to remove\n");
    char path[200];
    snprintf(path, sizeof path, "/%s", live_chan);
    assert_int_equal(shm_unlink(path), 0);
    assert_int_equal(shmrpc_lock_unlink(lock_name), 0);
}

/* The admin API's removal: only what was listed as stale, and only while it is the same
 * segment (a channel of a dead server, replaced between the list and the removal, stays). */
static void admin_removes_only_what_it_listed(void **state)
{
    (void)state;
    pid_t kid = fork(); /* a server pid that is dead */
    assert_true(kid >= 0);
    if (kid == 0) _exit(0);
    assert_int_equal(waitpid(kid, NULL, 0), kid);
    char key[96], chan[160];
    snprintf(key, sizeof key, "%sgone", prefix);
    snprintf(chan, sizeof chan, "shmrpc:%s:%d:c1:1", key, (int)kid);
    fake_channel(chan);
    shmrpc_segment *v;
    size_t n;
    const char *names[] = {key};
    assert_int_equal(shmrpc_segments_list(&v, &n, names, 1), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].kind, SHMRPC_SEG_CHANNEL);
    assert_int_equal(v[0].owner, SHMRPC_LIFE_DEAD);
    assert_true(v[0].stale);
    char path[200];
    snprintf(path, sizeof path, "/%s", chan);
    assert_int_equal(shm_unlink(path), 0);
    fake_channel(chan); /* another inode under the same name */
    assert_int_equal(shmrpc_segment_remove(&v[0]), SHMRPC_EBUSY);
    assert_non_null(strstr(shmrpc_errmsg(), "changed since it was listed"));
    assert_true(shm_exists(chan));
    shmrpc_segments_free(v);
    assert_int_equal(shmrpc_segments_list(&v, &n, names, 1), 0);
    assert_int_equal(n, 1);
    assert_int_equal(shmrpc_segment_remove(&v[0]), 0);
    assert_false(shm_exists(chan));
    assert_int_equal(shmrpc_segment_remove(&v[0]), SHMRPC_EBUSY); /* gone: not the same */
    shmrpc_segments_free(v);
}

/* A queue in ls, from the admin API and from shmrpcctl: its creator and shape. A queue
 * outlives its creator (docs/queue.md), so clean leaves it even when the creator is dead. */
static void ls_shows_queues(void **state)
{
    (void)state;
    char name[128];
    snprintf(name, sizeof name, "%squeue", prefix);
    pid_t kid = fork(); /* the creator, which exits at once */
    assert_true(kid >= 0);
    if (kid == 0) {
        shmrpc_queue_opts o;
        shmrpc_queue_opts_init(&o);
        o.mode = SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE;
        o.capacity = 16;
        o.arena_bytes = 8192;
        o.max_msg = 1024;
        shmrpc_queue *q;
        if (shmrpc_queue_open(&q, name, &o) != 0) _exit(1);
        char m[8];
        size_t len;
        int bad = shmrpc_queue_push(q, "one", 3, 0) | shmrpc_queue_push(q, "two", 3, 0) |
                  shmrpc_queue_pop(q, m, sizeof m, &len, 0);
        bad |= shmrpc_queue_pop(q, m, 1, &len, 20) != SHMRPC_ETOOBIG; /* "two" stays */
        shmrpc_queue_close(q);
        _exit(bad ? 2 : 0);
    }
    int status;
    assert_int_equal(waitpid(kid, &status, 0), kid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    shmrpc_segment *v;
    size_t n;
    const char *names[] = {name};
    assert_int_equal(shmrpc_segments_list(&v, &n, names, 1), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].kind, SHMRPC_SEG_QUEUE);
    assert_string_equal(v[0].key, name);
    assert_int_equal(v[0].owner_pid, kid);
    assert_int_equal(v[0].owner, SHMRPC_LIFE_DEAD);
    assert_true(v[0].valid && !v[0].stale);
    /* Its counters, read by queue_stats.c from the header (shmrpc_queue_get_stats' figures). */
    assert_int_equal(v[0].queue.depth, 1);
    assert_int_equal(v[0].queue.pushed, 2);
    assert_int_equal(v[0].queue.popped, 1);
    assert_int_equal(v[0].queue.timeouts, 0);
    assert_int_equal(v[0].queue.drops, 0);
    assert_int_equal(shmrpc_segment_remove(&v[0]), SHMRPC_EINVAL);
    shmrpc_segments_free(v);
    run rj;
    ctl(&rj, NULL, "ls", "--json", name, NULL);
    assert_int_equal(rj.status, 0);
    if (strstr(rj.out, "\"depth\":1,\"pushed\":2,\"popped\":1,\"timeouts\":0,\"drops\":0") == NULL)
        fail_msg("ls --json: %s", rj.out);
    names[0] = shm_live; /* a queue is named alone, never as shm://NAME */
    assert_int_equal(shmrpc_segments_list(&v, &n, names, 1), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(v[i].kind, SHMRPC_SEG_QUEUE);
    shmrpc_segments_free(v);

    run r;
    ctl(&r, NULL, "ls", name, NULL);
    assert_int_equal(r.status, 0);
    char want[400], owner[32];
    snprintf(owner, sizeof owner, "pid %d", (int)kid);
    snprintf(want, sizeof want,
             "%-11s dead    work queue, 16 messages, arena 8192 bytes, max message 1024 bytes\n",
             owner);
    if (strncmp(r.out, "KIND", 4) != 0 || strstr(r.out, "\nqueue    shmrpc.queue.") == NULL ||
        strstr(r.out, want) == NULL)
        fail_msg("ls: %s", r.out);
    ctl(&r, NULL, "clean", name, NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "nothing to remove\n");
    assert_int_equal(shmrpc_queue_unlink(name), 0);
}

/* --- maps ------------------------------------------------------------------------------ */

static void shm_path(char *out, size_t cap, const char *fmt, const char *name, unsigned long long g)
{
    char seg[256];
    snprintf(seg, sizeof seg, fmt, name, g);
    snprintf(out, cap, "/dev/shm/%s", seg);
}

/* Sets path's times to now plus secs. */
static void set_mtime(const char *path, int secs)
{
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec += secs;
    t[1] = t[0];
    if (utimensat(AT_FDCWD, path, t, 0) != 0) fail_msg("utimensat %s: %s", path, strerror(errno));
}

/* Creates path (a new file) of size bytes, of which the first hold the 32-bit word first;
 * closed before any check fails. */
static void create_file(const char *path, off_t size, uint32_t first)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) fail_msg("create %s: %s", path, strerror(errno));
    bool ok = ftruncate(fd, size) == 0 && (size < 4 || pwrite(fd, &first, 4, 0) == 4);
    int e = errno;
    close(fd);
    if (!ok) fail_msg("write %s: %s", path, strerror(e));
}

/* Writes n bytes at off into /dev/shm/name; closed before any check fails. */
static void write_at(const char *name, off_t off, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) fail_msg("open %s: %s", path, strerror(errno));
    ssize_t w = pwrite(fd, p, n, off);
    int e = errno;
    close(fd);
    if (w != (ssize_t)n) fail_msg("write %s: %zd of %zu bytes: %s", path, w, n, strerror(e));
}

/* Sets a segment's times to secs ago: 60 is older than clean's 10 s of grace, YOUNG (an
 * hour ahead) within it however slow the run is. */
#define YOUNG (-3600)
static void age_by(const char *fmt, const char *name, unsigned long long g, int secs)
{
    char path[320];
    shm_path(path, sizeof path, fmt, name, g);
    set_mtime(path, -secs);
}

static void age(const char *fmt, const char *name, unsigned long long g)
{
    age_by(fmt, name, g, 60);
}

static bool seg_there(const char *fmt, const char *name, unsigned long long g)
{
    char path[320];
    shm_path(path, sizeof path, fmt, name, g);
    return access(path, F_OK) == 0;
}

/* The segment of the list whose name is fmt of name and g; fails when absent. */
static const shmrpc_segment *seg_named(const shmrpc_segment *v, size_t n, const char *fmt,
                                       const char *name, unsigned long long g)
{
    char want[256];
    snprintf(want, sizeof want, fmt, name, g);
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, want) == 0) return &v[i];
    fail_msg("%s not listed", want);
    return NULL;
}

#define HDR "shmrpc.map.%s%.0llu"
#define GEN "shmrpc.mapgen.%s.%llu"
#define MLOCK "shmrpc.lock.map.%s%.0llu"

/* The number in the file name of generation g of the map made by make_grown_map: its files
 * are numbered from the header's first (at byte 56), the creation's time in microseconds. */
static unsigned long long map_first;

static unsigned long long G(unsigned long long g)
{
    return map_first + g - 1;
}

static unsigned long long read_first(const char *name)
{
    char hdr[320];
    shm_path(hdr, sizeof hdr, HDR, name, 0);
    int fd = open(hdr, O_RDONLY);
    unsigned long long first = 0;
    if (fd >= 0 && pread(fd, &first, 8, 56) != 8) first = 0;
    if (fd >= 0) close(fd);
    return first;
}

/* A map of 8 slots made in a child that exits (its creator is dead), grown to generation
 * 2 with 6 keys, and the file of generation 1 put back as a writer killed between the
 * publish and the unlink leaves it. */
static void make_grown_map(const char *name)
{
    char g1[320], keep[320];
    snprintf(keep, sizeof keep, "/dev/shm/shmrpc.%skeep", prefix);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        alarm(20);
        shmrpc_map_opts o;
        shmrpc_map_opts_init(&o);
        o.mode = SHMRPC_MAP_CREATE_NEW_EXCLUSIVE;
        o.initial_slots = 8;
        o.initial_bytes = 4096;
        shmrpc_map *m;
        if (shmrpc_map_open(&m, name, &o) != 0) _exit(1);
        map_first = read_first(name);
        shm_path(g1, sizeof g1, GEN, name, G(1));
        int bad = 0;
        for (int i = 0; i < 3; i++)
            bad |= shmrpc_map_put(m, &i, sizeof i, "value", 5);
        if (link(g1, keep) != 0) _exit(3);
        for (int i = 3; i < 6; i++) /* past 7/10 of 8 slots: generation 2 */
            bad |= shmrpc_map_put(m, &i, sizeof i, "value", 5);
        shmrpc_map_info info;
        bad |= shmrpc_map_get_info(m, &info) != 0 || info.generation != 2;
        shmrpc_map_close(m);
        _exit(bad ? 2 : 0);
    }
    int status;
    assert_int_equal(waitpid(kid, &status, 0), kid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("the map's creator: %#x", status);
    map_first = read_first(name);
    assert_true(map_first > 1);
    shm_path(g1, sizeof g1, GEN, name, G(1));
    assert_false(access(g1, F_OK) == 0);
    assert_int_equal(rename(keep, g1), 0);
}

/* A child that holds lock map.NAME until the test writes to *release; its pid. */
static pid_t hold_map_lock(const char *name, int *release)
{
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        alarm(20);
        close(go[1]);
        close(ready[0]);
        char ln[200];
        snprintf(ln, sizeof ln, "map.%s", name);
        shmrpc_lock_opts o;
        shmrpc_lock_opts_init(&o);
        o.mode = SHMRPC_LOCK_CONNECT_TO_EXISTING;
        shmrpc_lock *l;
        if (shmrpc_lock_open(&l, ln, &o) != 0 || shmrpc_lock_acquire(l, 5000) != 0) _exit(1);
        char c = 1;
        if (write(ready[1], &c, 1) != 1) _exit(1);
        if (read(go[0], &c, 1) < 0) _exit(1); /* 0 too: the test ended */
        shmrpc_lock_release(l);
        shmrpc_lock_close(l);
        _exit(0);
    }
    close(ready[1]);
    close(go[0]);
    struct pollfd p = {.fd = ready[0], .events = POLLIN};
    char c;
    assert_int_equal(poll(&p, 1, 10000), 1);
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    *release = go[1];
    return kid;
}

static void let_go(pid_t kid, int release)
{
    close(release);
    int status;
    assert_int_equal(waitpid(kid, &status, 0), kid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A map in ls: its header with its figures, its current generation and its lock, all kept
 * although its creator is dead (a map's data has no owner); a generation a dead writer
 * left behind after publishing the next, removed; one a dead growth left unpublished,
 * removed only while the map's lock is free, and only under that lock. */
static void ls_and_clean_maps(void **state)
{
    (void)state;
    char name[128];
    snprintf(name, sizeof name, "%smap", prefix);
    make_grown_map(name);
    /* A growth that died before publishing generation 3: its file, sized, no head yet. */
    char g3[320];
    shm_path(g3, sizeof g3, GEN, name, G(3));
    int fd = shm_open(g3 + strlen("/dev/shm"), O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 8192), 0);
    close(fd);
    /* A generation of a map of the same name before this one (a handle on it that grew it
     * after this one was made): numbered below this one's first. */
    char early[320];
    unsigned long long early_no = G(1) - 1000;
    shm_path(early, sizeof early, GEN, name, early_no);
    fd = shm_open(early + strlen("/dev/shm"), O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 8192), 0);
    close(fd);

    shmrpc_segment *v;
    size_t n;
    const char *names[] = {name};
    assert_int_equal(shmrpc_segments_list(&v, &n, names, 1), 0);
    assert_int_equal(n, 6); /* lock, header, generations 1, 2, 3, the earlier map's */
    const shmrpc_segment *h = seg_named(v, n, HDR, name, 0);
    assert_int_equal(h->kind, SHMRPC_SEG_MAP);
    assert_string_equal(h->key, name);
    assert_true(h->valid && !h->stale);
    assert_int_equal(h->owner, SHMRPC_LIFE_DEAD);
    assert_int_equal(h->map.generation, 2);
    assert_int_equal(h->map.count, 6);
    assert_int_equal(h->map.writes, 6);
    assert_int_equal(h->map.growths, 1);
    /* 16 + 4 + 5 = 25 bytes an entry, a 64-byte line each (docs/map.md, "Allocating") */
    assert_true(h->map.bytes >= 4096 && h->map.used == 6 * 64 && h->map.live == 6 * 64);
    if (strncmp(h->detail, "map, 6 entries, generation 2, ", 30) != 0)
        fail_msg("detail: %s", h->detail);
    const shmrpc_segment *cur = seg_named(v, n, GEN, name, G(2));
    assert_int_equal(cur->kind, SHMRPC_SEG_MAPGEN);
    assert_true(cur->valid && !cur->stale);
    assert_int_equal(cur->map.count, 6);
    assert_non_null(strstr(cur->detail, ": current"));
    const shmrpc_segment *old = seg_named(v, n, GEN, name, G(1));
    assert_true(old->valid && old->stale);
    assert_non_null(strstr(old->reason, "generation 2 replaced it"));
    const shmrpc_segment *next = seg_named(v, n, GEN, name, G(3));
    assert_true(!next->valid && next->stale);
    assert_non_null(strstr(next->reason, "a growth died before publishing it"));
    const shmrpc_segment *before = seg_named(v, n, GEN, name, early_no);
    assert_true(before->stale && before->map.generation == 0);
    assert_non_null(strstr(before->detail, "generation file "));
    assert_non_null(strstr(before->detail, " of an earlier map "));
    assert_non_null(strstr(before->reason, "the map was created anew since"));
    const shmrpc_segment *lk = seg_named(v, n, MLOCK, name, 0);
    assert_int_equal(lk->kind, SHMRPC_SEG_LOCK);
    assert_true(!lk->stale && lk->owner == SHMRPC_LIFE_NONE);

    /* A writer takes the lock between the listing and the removal: generation 3 may be
     * its growth's now, and stays; generation 1 goes all the same. */
    int release;
    pid_t holder = hold_map_lock(name, &release);
    assert_int_equal(shmrpc_segment_remove(next), SHMRPC_EBUSY);
    assert_true(seg_there(GEN, name, G(3)));
    shmrpc_segments_free(v);
    run r;
    ctl(&r, NULL, "ls", name, NULL);
    assert_int_equal(r.status, 0);
    if (strstr(r.out, "generation 3 of map ") == NULL ||
        strstr(r.out, "its lock is held (a growth may be under way)") == NULL)
        fail_msg("ls: %s", r.out);
    /* A header whose first was written over (above both files): the growth's file is still
     * judged by its number against the current one, and kept while the lock is held. */
    char hdr_file[320];
    shm_path(hdr_file, sizeof hdr_file, HDR, name, 0);
    int hfd = open(hdr_file, O_RDWR);
    assert_true(hfd >= 0);
    unsigned long long wild = G(3) + 10, first = map_first;
    assert_int_equal(pwrite(hfd, &wild, 8, 56), 8);
    assert_int_equal(shmrpc_segments_list(&v, &n, names, 1), 0);
    const shmrpc_segment *growth = seg_named(v, n, GEN, name, G(3));
    bool kept = !growth->stale && strstr(growth->detail, "its lock is held") != NULL;
    char seen[sizeof growth->detail];
    snprintf(seen, sizeof seen, "%s", growth->detail);
    shmrpc_segments_free(v);
    assert_int_equal(pwrite(hfd, &first, 8, 56), 8);
    close(hfd);
    if (!kept) fail_msg("with first written over, the growth's file: %s", seen);
    ctl(&r, NULL, "clean", name, NULL);
    assert_int_equal(r.status, 0);
    char want[600];
    snprintf(want, sizeof want,
             "removed mapgen shmrpc.mapgen.%s.%llu: the map was created anew since (its "
             "generations are numbered from %llu)\n"
             "removed mapgen shmrpc.mapgen.%s.%llu: generation 2 replaced it; its writer died "
             "before removing it\n",
             name, early_no, G(1), name, G(1));
    assert_string_equal(r.out, want);
    let_go(holder, release);

    ctl(&r, NULL, "ls", "--json", name, NULL);
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof want, "\"generation\":2,\"entries\":6,");
    if (strstr(r.out, "\"kind\":\"map\"") == NULL || strstr(r.out, want) == NULL ||
        strstr(r.out, "\"writes\":6,\"growths\":1,\"lock_waits\":") == NULL)
        fail_msg("ls --json: %s", r.out);
    ctl(&r, NULL, "clean", name, NULL);
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof want,
             "removed mapgen shmrpc.mapgen.%s.%llu: a growth died before publishing it (the map is "
             "at generation 2, its lock is free)\n",
             name, G(3));
    assert_string_equal(r.out, want);
    ctl(&r, NULL, "clean", name, NULL);
    assert_string_equal(r.out, "nothing to remove\n");
    assert_true(seg_there(HDR, name, 0) && seg_there(GEN, name, G(2)) && seg_there(MLOCK, name, 0));

    /* The map reads whole after the clean, and a put goes on at generation 2. */
    shmrpc_map *m;
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    assert_int_equal(shmrpc_map_open(&m, name, &o), 0);
    assert_int_equal(shmrpc_map_check(m), 0);
    int k = 9;
    assert_int_equal(shmrpc_map_put(m, &k, sizeof k, "x", 1), 0);
    uint64_t count;
    assert_int_equal(shmrpc_map_size(m, &count), 0);
    assert_int_equal(count, 7);
    shmrpc_map_close(m);

    /* An unlink that died after the header: the generation and the lock are garbage, once
     * older than the grace given to a map being made. */
    char hdr[320];
    shm_path(hdr, sizeof hdr, HDR, name, 0);
    assert_int_equal(shm_unlink(hdr + strlen("/dev/shm")), 0);
    age_by(GEN, name, G(2), YOUNG);
    age_by(MLOCK, name, 0, YOUNG);
    ctl(&r, NULL, "clean", name, NULL);
    assert_string_equal(r.out, "nothing to remove\n");
    age(GEN, name, G(2));
    age(MLOCK, name, 0);
    ctl(&r, NULL, "clean", name, NULL);
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof want,
             "removed lock shmrpc.lock.map.%s: its map is gone (no header)\n"
             "removed mapgen shmrpc.mapgen.%s.%llu: its map is gone (no header)\n",
             name, name, G(2));
    assert_string_equal(r.out, want);
    assert_false(seg_there(GEN, name, G(2)) || seg_there(MLOCK, name, 0));
}

/* A map whose creator died before its magic: the header and what it made go, after the
 * grace; one whose creator lives stays. */
static void clean_half_made_map(void **state)
{
    (void)state;
    char name[128];
    snprintf(name, sizeof name, "%shalf", prefix);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) _exit(0);
    assert_int_equal(waitpid(kid, NULL, 0), kid);
    char hdr[320];
    shm_path(hdr, sizeof hdr, HDR, name, 0);
    create_file(hdr, 256, 0);
    uint32_t head[4] = {0, 1, 256, (uint32_t)kid}; /* magic not yet written */
    write_at(hdr + strlen("/dev/shm/"), 0, head, sizeof head);
    age_by(HDR, name, 0, YOUNG);
    run r;
    ctl(&r, NULL, "clean", name, NULL);
    assert_string_equal(r.out, "nothing to remove\n"); /* within the grace */
    age(HDR, name, 0);
    ctl(&r, NULL, "ls", name, NULL);
    if (strstr(r.out, "incomplete (no magic yet); stale: its creator died while creating it") ==
        NULL)
        fail_msg("ls: %s", r.out);
    ctl(&r, NULL, "clean", name, NULL);
    assert_int_equal(r.status, 0);
    char want[400];
    snprintf(want, sizeof want, "removed map shmrpc.map.%s: its creator died while creating it\n",
             name);
    assert_string_equal(r.out, want);
    assert_false(seg_there(HDR, name, 0));
}

/* --- names and contents ls did not make ------------------------------------------------- */

/* A file of size bytes in /dev/shm, of which the first holds a 32-bit word: old is past the
 * grace of clean (INCOMPLETE_GRACE_S, runtime/src/admin/admin.c); young is an hour ahead, so that
 * no wait under load ages it past the grace. */
static void odd_file(const char *name, off_t size, uint32_t first, bool old)
{
    char path[4096];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    create_file(path, size, first);
    set_mtime(path, old ? -60 : -YOUNG);
}

static bool there(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    return access(path, F_OK) == 0;
}

static const shmrpc_segment *listed(const shmrpc_segment *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0) return &v[i];
    return NULL;
}

/* What ls says of names under shmrpc's prefixes that the library does not write, and of
 * segments too small or of an unknown layout; clean removes only what a creator that died
 * while creating it left (too small, or no magic, past the grace), and never a name it does
 * not know or a layout it cannot read (another version's). */
static void ls_and_clean_what_it_did_not_make(void **state)
{
    (void)state;
    char key[96], other[11][200], ctl_small[200], ctl_unknown[200], stats_small[200],
        lock_junk[200];
    snprintf(key, sizeof key, "%sodd", prefix);
    const char *bad_channels[] = {"x",
                                  "0:c1:2",
                                  "-5:c1:2",
                                  "123:d1:2",
                                  "123:c99999:1",
                                  "123:c1:x",
                                  "123:c1:4294967296",
                                  "123:c:1",
                                  "99999999999999999999:c1:2",
                                  "2147483648:c1:2",
                                  "123:c1:"};
    for (int i = 0; i < 11; i++) {
        snprintf(other[i], sizeof other[i], "shmrpc:%s:%s", key, bad_channels[i]);
        odd_file(other[i], 4096, 0, true);
    }
    /* Not a generation's name (NAME.G): not listed at all. */
    const char *bad_gens[] = {"", ".", ".12a", ".12345678901234567890"};
    char gens[4][200];
    for (int i = 0; i < 4; i++) {
        snprintf(gens[i], sizeof gens[i], "shmrpc.mapgen.%s%s", key, bad_gens[i]);
        odd_file(gens[i], 4096, 0, true);
    }
    snprintf(ctl_small, sizeof ctl_small, "shmrpc:%ssmall", prefix);
    odd_file(ctl_small, 10, 0, true);
    snprintf(ctl_unknown, sizeof ctl_unknown, "shmrpc:%sunknown", prefix);
    odd_file(ctl_unknown, 65536, 0xdeadbeef, true);
    snprintf(stats_small, sizeof stats_small, "shmrpc.stats.shm.%ssmall", prefix);
    odd_file(stats_small, 1, 0, true);
    snprintf(lock_junk, sizeof lock_junk, "shmrpc.lock.%sjunk", prefix);
    odd_file(lock_junk, 4096, 0xdeadbeef, true);

    shmrpc_segment *v;
    size_t n;
    assert_int_equal(shmrpc_segments_list(&v, &n, NULL, 0), 0);
    for (int i = 0; i < 11; i++) {
        const shmrpc_segment *s = listed(v, n, other[i]);
        if (s == NULL) fail_msg("%s not listed", other[i]);
        assert_int_equal(s->kind, SHMRPC_SEG_OTHER);
        assert_string_equal(s->key, key);
        assert_string_equal(s->detail, "not a name shmrpc makes");
        assert_false(s->stale);
    }
    for (int i = 0; i < 4; i++)
        if (listed(v, n, gens[i])) fail_msg("%s listed as a map's generation", gens[i]);
    const shmrpc_segment *s = listed(v, n, ctl_small);
    assert_non_null(s);
    assert_string_equal(s->detail, "too small for a control segment (10 bytes)");
    assert_true(s->stale);
    s = listed(v, n, ctl_unknown);
    assert_non_null(s);
    assert_false(s->stale);
    assert_non_null(strstr(s->detail, "unknown layout (magic 0xdeadbeef, version "));
    s = listed(v, n, stats_small);
    assert_non_null(s);
    assert_string_equal(s->detail, "too small for a statistics segment (1 bytes)");
    assert_true(s->stale);
    s = listed(v, n, lock_junk);
    assert_non_null(s);
    assert_string_equal(s->detail, "incomplete or unknown layout");
    assert_false(s->stale);
    shmrpc_segments_free(v);

    /* ls by the key lists the names it does not make, and says so. */
    run r;
    ctl(&r, NULL, "ls", key, NULL);
    assert_int_equal(r.status, 0);
    for (int i = 0; i < 11; i++)
        if (strstr(r.out, other[i]) == NULL) fail_msg("ls %s: %s", key, r.out);
    if (strstr(r.out, "not a name shmrpc makes") == NULL) fail_msg("ls %s: %s", key, r.out);

    /* clean: the two a creator left half-made go; the rest stay. */
    char small_key[120], stats_key[120], unknown_key[120], junk_key[120];
    snprintf(small_key, sizeof small_key, "%ssmall", prefix);
    snprintf(unknown_key, sizeof unknown_key, "%sunknown", prefix);
    snprintf(junk_key, sizeof junk_key, "%sjunk", prefix);
    snprintf(stats_key, sizeof stats_key, "%ssmall", prefix);
    ctl(&r, NULL, "clean", key, small_key, unknown_key, junk_key, NULL);
    assert_int_equal(r.status, 0);
    char want[800];
    snprintf(want, sizeof want,
             "removed stats %s: its creator died while creating it\n"
             "removed control %s: its creator died while creating it\n",
             stats_small, ctl_small);
    assert_string_equal(r.out, want);
    for (int i = 0; i < 11; i++)
        assert_true(there(other[i]));
    for (int i = 0; i < 4; i++)
        assert_true(there(gens[i]));
    assert_true(there(ctl_unknown));
    assert_true(there(lock_junk));
    assert_false(there(ctl_small) || there(stats_small));
    /* An operator removes what clean would not, by hand. */
    for (int i = 0; i < 11; i++)
        assert_int_equal(shm_unlink(other[i]), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(shm_unlink(gens[i]), 0);
    assert_int_equal(shm_unlink(ctl_unknown), 0);
    assert_int_equal(shm_unlink(lock_junk), 0);
}

/* What ls says of each kind of segment half made (no magic yet, or cut short), of a layout
 * it does not know, and of statistics named by a tcp:// address or by no scheme; clean
 * removes those a creator that died while making them left (past the grace), and leaves
 * those younger, or of an unknown layout, or that outlive their creator (a queue). */
static void ls_and_clean_half_made(void **state)
{
    (void)state;
    char key[96], tcp_key[160], ctl_new[200], ctl_old[200], st_unknown[200], st_new[200],
        st_old[200], st_tcp[200], st_bare[200], lock_small[200], q_empty[200], q_small[200],
        q_unknown[200], q_new[200], gen_small[200];
    snprintf(key, sizeof key, "%shalf", prefix);
    snprintf(tcp_key, sizeof tcp_key, "tcp://%shost:1", key); /* swept by its prefix */
    snprintf(ctl_new, sizeof ctl_new, "shmrpc:%snew", key);
    snprintf(ctl_old, sizeof ctl_old, "shmrpc:%sold", key);
    snprintf(st_unknown, sizeof st_unknown, "shmrpc.stats.shm.%sunknown", key);
    snprintf(st_new, sizeof st_new, "shmrpc.stats.shm.%snew", key);
    snprintf(st_old, sizeof st_old, "shmrpc.stats.shm.%sold", key);
    snprintf(st_tcp, sizeof st_tcp, "shmrpc.stats.tcp.%s", tcp_key + 6);
    snprintf(st_bare, sizeof st_bare, "shmrpc.stats.%sbare", key);
    snprintf(lock_small, sizeof lock_small, "shmrpc.lock.%slock", key);
    snprintf(q_empty, sizeof q_empty, "shmrpc.queue.%sempty", key);
    snprintf(q_small, sizeof q_small, "shmrpc.queue.%ssmall", key);
    snprintf(q_unknown, sizeof q_unknown, "shmrpc.queue.%sunknown", key);
    snprintf(q_new, sizeof q_new, "shmrpc.queue.%snew", key);
    snprintf(gen_small, sizeof gen_small, "shmrpc.mapgen.%sgen.1", key);
    odd_file(ctl_new, 65536, 0, false);
    odd_file(ctl_old, 65536, 0, true);
    odd_file(st_unknown, 131072, 0xdeadbeef, true);
    odd_file(st_new, 131072, 0, false);
    odd_file(st_old, 131072, 0, true);
    odd_file(st_tcp, 131072, 0, true);
    odd_file(st_bare, 131072, 0, true);
    odd_file(lock_small, 8, 0, true);
    odd_file(q_empty, 0, 0, true);
    odd_file(q_small, 10, 0, true);
    odd_file(q_unknown, 4096, 0xdeadbeef, true);
    odd_file(q_new, 4096, 0, true);
    odd_file(gen_small, 10, 0, true);

    char k_new[120], k_old[120], k_unknown[120], k_bare[120], k_lock[120], k_empty[120],
        k_small[120], k_gen[120];
    snprintf(k_new, sizeof k_new, "%snew", key);
    snprintf(k_old, sizeof k_old, "%sold", key);
    snprintf(k_unknown, sizeof k_unknown, "%sunknown", key);
    snprintf(k_bare, sizeof k_bare, "%sbare", key);
    snprintf(k_lock, sizeof k_lock, "%slock", key);
    snprintf(k_empty, sizeof k_empty, "%sempty", key);
    snprintf(k_small, sizeof k_small, "%ssmall", key);
    snprintf(k_gen, sizeof k_gen, "%sgen", key);
    const char *names[] = {k_new,  k_old,   k_unknown, tcp_key, k_bare,
                           k_lock, k_empty, k_small,   k_gen};
    size_t n_names = sizeof names / sizeof *names;
    shmrpc_segment *v;
    size_t n;
    assert_int_equal(shmrpc_segments_list(&v, &n, names, n_names), 0);
    static const struct {
        int which;
        shmrpc_seg_kind kind;
        const char *detail;
        bool stale;
        const char *reason;
    } want[] = {
        {0, SHMRPC_SEG_CONTROL, "incomplete (no magic yet)", false, ""},
        {1, SHMRPC_SEG_CONTROL, "incomplete (no magic yet)", true,
         "its creator died while creating it"},
        {2, SHMRPC_SEG_STATS, "unknown layout (magic 0xdeadbeef, version 0)", false, ""},
        {3, SHMRPC_SEG_STATS, "incomplete (no magic yet)", false, ""},
        {4, SHMRPC_SEG_STATS, "incomplete (no magic yet)", true,
         "its creator died while creating it"},
        {5, SHMRPC_SEG_STATS, "incomplete (no magic yet)", true,
         "its creator died while creating it"},
        {6, SHMRPC_SEG_STATS, "incomplete (no magic yet)", true,
         "its creator died while creating it"},
        {7, SHMRPC_SEG_LOCK, "too small for a lock", false, ""},
        {8, SHMRPC_SEG_QUEUE,
         "cut to 0 bytes under its holders (less than a header), or not sized yet by its "
         "creator: an open with create makes it anew",
         false, ""},
        {9, SHMRPC_SEG_QUEUE,
         "cut to 10 bytes under its holders (less than a header): an open with create makes it "
         "anew",
         false, ""},
        {10, SHMRPC_SEG_QUEUE, "unknown layout (magic 0xdeadbeef, version 0)", false, ""},
        {11, SHMRPC_SEG_QUEUE, "incomplete (no magic yet)", false, ""},
        {12, SHMRPC_SEG_MAPGEN, "generation file 1 of map ", true, "its map is gone (no header)"},
    };
    const char *files[] = {ctl_new,    ctl_old, st_unknown, st_new,    st_old, st_tcp,   st_bare,
                           lock_small, q_empty, q_small,    q_unknown, q_new,  gen_small};
    const char *keys[] = {k_new,  k_old,   k_unknown, k_new,     k_old, tcp_key, k_bare,
                          k_lock, k_empty, k_small,   k_unknown, k_new, k_gen};
    assert_int_equal(n, sizeof files / sizeof *files);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const shmrpc_segment *g = listed(v, n, files[want[i].which]);
        if (g == NULL) fail_msg("%s not listed", files[want[i].which]);
        char detail[300];
        snprintf(detail, sizeof detail, "%s", want[i].detail);
        if (want[i].kind == SHMRPC_SEG_MAPGEN)
            snprintf(detail, sizeof detail,
                     "generation file 1 of map %s: too small (10 bytes): "
                     "its map is gone",
                     k_gen);
        if (g->kind != want[i].kind || strcmp(g->key, keys[want[i].which]) != 0 ||
            strcmp(g->detail, detail) != 0 || g->stale != want[i].stale ||
            strcmp(g->reason, want[i].reason) != 0)
            fail_msg("%s: kind %s, key %s, detail '%s', stale %d '%s'", g->name,
                     shmrpc_seg_kind_name(g->kind), g->key, g->detail, g->stale, g->reason);
        assert_int_equal(g->owner_pid, 0);
        assert_false(g->valid);
    }
    shmrpc_segments_free(v);

    run r;
    ctl(&r, NULL, "clean", k_new, k_old, k_unknown, tcp_key, k_bare, k_lock, k_empty, k_small,
        k_gen, NULL);
    assert_int_equal(r.status, 0);
    char out[1600];
    snprintf(out, sizeof out,
             "removed mapgen %s: its map is gone (no header)\n"
             "removed stats %s: its creator died while creating it\n"
             "removed stats %s: its creator died while creating it\n"
             "removed stats %s: its creator died while creating it\n"
             "removed control %s: its creator died while creating it\n",
             gen_small, st_bare, st_old, st_tcp, ctl_old);
    if (strcmp(r.out, out) != 0) fail_msg("clean:\n%s\nwanted\n%s", r.out, out);
    assert_false(there(gen_small) || there(st_old) || there(st_bare) || there(st_tcp) ||
                 there(ctl_old));
    const char *kept[] = {ctl_new, st_unknown, st_new,    lock_small,
                          q_empty, q_small,    q_unknown, q_new};
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        if (!there(kept[i])) fail_msg("%s removed", kept[i]);
        assert_int_equal(shm_unlink(kept[i]), 0);
    }
}

/* The one segment listed under name (a lock's or a queue's); fails unless there is one. */
static shmrpc_segment one_listed(const char *name)
{
    shmrpc_segment *v, s;
    size_t n;
    const char *names[] = {name};
    assert_int_equal(shmrpc_segments_list(&v, &n, names, 1), 0);
    if (n != 1) fail_msg("%zu segments listed for %s", n, name);
    s = v[0];
    shmrpc_segments_free(v);
    return s;
}

/* What a case holds open, and a child it has not reaped: let_go_of_left, its teardown,
 * closes and reaps what a failed check left (the files go in the group teardown). */
static struct {
    shmrpc_lock *locks[4];
    shmrpc_queue *queue;
    pid_t kid;
} left;

static int let_go_of_left(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++)
        if (left.locks[i]) shmrpc_lock_close(left.locks[i]);
    if (left.queue) shmrpc_queue_close(left.queue);
    if (left.kid > 0) {
        kill(left.kid, SIGKILL);
        waitpid(left.kid, NULL, 0);
    }
    memset(&left, 0, sizeof left);
    return 0;
}

/* A lock's holder as ls says it: a live thread, one that exited and is a zombie still, and
 * one reaped; none of them makes the lock stale (it is not a map's). */
static void ls_shows_lock_holders(void **state)
{
    (void)state;
    char name[128], want[200];
    snprintf(name, sizeof name, "%sheld", prefix);
    shmrpc_lock_opts o;
    shmrpc_lock_opts_init(&o);
    shmrpc_lock **l = &left.locks[0];
    assert_int_equal(shmrpc_lock_open(l, name, &o), 0);
    assert_int_equal(shmrpc_lock_acquire(*l, 1000), 0);
    shmrpc_segment s = one_listed(name);
    int tid = (int)gettid();
    snprintf(want, sizeof want, "held by thread %d", tid);
    assert_int_equal(s.kind, SHMRPC_SEG_LOCK);
    assert_int_equal(s.owner_pid, tid);
    assert_int_equal(s.owner, SHMRPC_LIFE_ALIVE);
    assert_string_equal(s.detail, want);
    assert_false(s.stale);
    assert_int_equal(shmrpc_lock_release(*l), 0);
    s = one_listed(name);
    assert_int_equal(s.owner, SHMRPC_LIFE_NONE);
    assert_string_equal(s.detail, "");

    /* A child takes it and exits holding it. */
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        shmrpc_lock *k;
        int bad = shmrpc_lock_open(&k, name, &o) || shmrpc_lock_acquire(k, 1000);
        _exit(bad ? 1 : 0); /* holding it, unreleased */
    }
    left.kid = kid;
    siginfo_t si;
    /* Exited, not reaped: a zombie holds it. */
    assert_int_equal(waitid(P_PID, (id_t)kid, &si, WEXITED | WNOWAIT), 0);
    assert_int_equal(si.si_status, 0);
    snprintf(want, sizeof want, "held by thread %d, which is dead: the next locker takes it over",
             (int)kid);
    s = one_listed(name);
    assert_int_equal(s.owner_pid, kid);
    assert_int_equal(s.owner, SHMRPC_LIFE_DEAD);
    assert_string_equal(s.detail, want);
    assert_false(s.stale);
    /* Reaped: its /proc entry is gone. */
    assert_int_equal(waitpid(kid, NULL, 0), kid);
    left.kid = 0;
    s = one_listed(name);
    assert_int_equal(s.owner, SHMRPC_LIFE_DEAD);
    assert_string_equal(s.detail, want);
    run r;
    ctl(&r, NULL, "clean", name, NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "nothing to remove\n");
    assert_int_equal(shmrpc_lock_acquire(*l, 1000), SHMRPC_EOWNERDEAD);
    assert_int_equal(shmrpc_lock_release(*l), 0);
    shmrpc_lock_close(*l);
    *l = NULL;
    assert_int_equal(shmrpc_lock_unlink(name), 0);
}

/* A broadcast queue, and a queue whose file was cut under it: ls says so, and clean leaves
 * both (a queue outlives its creator). */
static void ls_shows_broadcast_and_cut_queues(void **state)
{
    (void)state;
    char name[128], path[200];
    snprintf(name, sizeof name, "%sbcast", prefix);
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE;
    o.kind = SHMRPC_QUEUE_BROADCAST;
    o.capacity = 8;
    o.arena_bytes = 4096;
    o.max_msg = 256;
    assert_int_equal(shmrpc_queue_open(&left.queue, name, &o), 0);
    shmrpc_segment s = one_listed(name);
    assert_true(s.valid);
    assert_int_equal(s.owner_pid, getpid());
    assert_int_equal(s.owner, SHMRPC_LIFE_ALIVE);
    assert_string_equal(s.detail,
                        "broadcast queue, 8 messages, arena 4096 bytes, max message 256 bytes");
    long long full = s.size;
    snprintf(path, sizeof path, "/dev/shm/shmrpc.queue.%s", name);
    assert_int_equal(truncate(path, 1024), 0);
    s = one_listed(name);
    char want[200];
    snprintf(want, sizeof want,
             "cut to 1024 bytes under its holders (its header says %lld): an open with create "
             "makes it anew",
             full);
    assert_string_equal(s.detail, want);
    assert_false(s.stale);
    run r;
    ctl(&r, NULL, "clean", name, NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "nothing to remove\n");
    shmrpc_queue_close(left.queue);
    left.queue = NULL;
    assert_int_equal(shmrpc_queue_unlink(name), 0);
}

/* The stale segment listed under key (one only), for a removal. */
static shmrpc_segment stale_one(const char *key)
{
    shmrpc_segment s = one_listed(key);
    if (!s.stale) fail_msg("%s: not stale: %s", s.name, s.detail);
    return s;
}

static void expect_busy(const shmrpc_segment *s)
{
    char want[400];
    snprintf(want, sizeof want, "%s changed since it was listed", s->name);
    assert_int_equal(shmrpc_segment_remove(s), SHMRPC_EBUSY);
    assert_string_equal(shmrpc_errmsg(), want);
}

/* A segment judged stale is removed only while it is what was judged: not once it is gone,
 * nor when another file took its name, nor when it was rewritten in place with a layout
 * that is not stale (a control and a statistics segment half made, a channel of a dead
 * server, a generation of a map that is gone). */
static void admin_remove_refuses_what_changed(void **state)
{
    (void)state;
    char key[96], ctl_name[200], st_name[200], chan[200], gen[200], gen_key[120];
    snprintf(key, sizeof key, "%schanged", prefix);
    snprintf(ctl_name, sizeof ctl_name, "shmrpc:%s", key);
    snprintf(st_name, sizeof st_name, "shmrpc.stats.shm.%s", key);
    snprintf(gen_key, sizeof gen_key, "%sg", key);
    snprintf(gen, sizeof gen, "shmrpc.mapgen.%s.1", gen_key);

    /* Gone; then another file under its name. */
    odd_file(ctl_name, 10, 0, true);
    shmrpc_segment s = stale_one(key);
    assert_int_equal(s.kind, SHMRPC_SEG_CONTROL);
    assert_int_equal(shm_unlink(ctl_name), 0);
    expect_busy(&s);
    odd_file(ctl_name, 10, 0, true);
    expect_busy(&s);
    /* Rewritten in place with a layout it does not know: not stale any more. */
    s = stale_one(key);
    char path[1024];
    snprintf(path, sizeof path, "/dev/shm/%s", ctl_name);
    uint32_t magic = 0xdeadbeef;
    assert_int_equal(truncate(path, 65536), 0);
    write_at(ctl_name, 0, &magic, 4);
    expect_busy(&s);
    shmrpc_segment now = one_listed(key);
    assert_false(now.stale);
    char want[300];
    snprintf(want, sizeof want, "%s is not stale", now.name);
    assert_int_equal(shmrpc_segment_remove(&now), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), want);
    assert_int_equal(shm_unlink(ctl_name), 0);

    /* The same for statistics. */
    odd_file(st_name, 1, 0, true);
    s = stale_one(key);
    assert_int_equal(s.kind, SHMRPC_SEG_STATS);
    snprintf(path, sizeof path, "/dev/shm/%s", st_name);
    assert_int_equal(truncate(path, 131072), 0);
    write_at(st_name, 0, &magic, 4);
    expect_busy(&s);
    assert_int_equal(shm_unlink(st_name), 0);
    odd_file(st_name, 1, 0, true);
    s = stale_one(key);
    assert_int_equal(shm_unlink(st_name), 0);
    expect_busy(&s);

    /* A channel of a dead server, and a map's generation whose map is gone. */
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) _exit(0);
    assert_int_equal(waitpid(kid, NULL, 0), kid);
    snprintf(chan, sizeof chan, "shmrpc:%s:%d:c1:1", key, (int)kid);
    fake_channel(chan);
    s = stale_one(key);
    assert_int_equal(s.kind, SHMRPC_SEG_CHANNEL);
    assert_int_equal(shm_unlink(chan), 0);
    expect_busy(&s);
    odd_file(gen, 10, 0, true);
    s = stale_one(gen_key);
    assert_int_equal(s.kind, SHMRPC_SEG_MAPGEN);
    assert_int_equal(shm_unlink(gen), 0);
    expect_busy(&s);
}

/* Users' private directories under /dev/shm (shmrpc-UID, which root lists all of): their
 * segments are listed by the directory and removed there; a directory whose name is not
 * shmrpc- and digits is not looked into, nor a symbolic link named like one (it may lead
 * anywhere: root's clean would remove there).
 * "shmrpc-" is one name for every run (two build trees may test at once): a run puts its
 * file in it whoever made it, after taking out those of runs killed before their teardown,
 * and the run that leaves it empty removes it. The other names are this run's (its pid). */
#define BARE_DIR "/dev/shm/shmrpc-"
static char fake_dirs[3][64], fake_link[64]; /* what this run made ("" when not) */

static void drop_fake_dirs(const char *seg)
{
    char path[512];
    if (fake_link[0]) {
        snprintf(path, sizeof path, "/dev/shm/%s", fake_link);
        unlink(path);
        fake_link[0] = '\0';
    }
    for (int i = 0; i < 3; i++) {
        if (!fake_dirs[i][0]) continue;
        snprintf(path, sizeof path, "/dev/shm/%s/%s", fake_dirs[i], seg);
        unlink(path);
        snprintf(path, sizeof path, "/dev/shm/%s", fake_dirs[i]);
        rmdir(path); /* "shmrpc-" only once no other run's file is in it */
        fake_dirs[i][0] = '\0';
    }
}

/* Takes out of BARE_DIR the files of runs that were killed: shmrpc:ctl_tPID_ns of a pid that
 * is dead, or is this run's (reused). */
static void drop_killed_runs(void)
{
    DIR *d = opendir(BARE_DIR);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        int pid, end = 0;
        if (sscanf(e->d_name, "shmrpc:ctl_t%d_ns%n", &pid, &end) != 1 || end == 0 ||
            e->d_name[end] != '\0')
            continue;
        if (pid != getpid() && (kill(pid, 0) == 0 || errno != ESRCH)) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", BARE_DIR, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
}

/* This run's file seg in BARE_DIR, made unless another run has it; tried again (three times
 * at most) when the run that made it removed it, empty, between the mkdir and the file. */
static void into_bare_dir(const char *seg)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", BARE_DIR, seg);
    for (int tries = 1;; tries++) {
        if (mkdir(BARE_DIR, 0700) != 0 && errno != EEXIST)
            fail_msg("mkdir %s: %s", BARE_DIR, strerror(errno));
        drop_killed_runs();
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(fd);
            break;
        }
        if (errno != ENOENT || tries == 3) fail_msg("create %s: %s", path, strerror(errno));
    }
    snprintf(fake_dirs[2], sizeof fake_dirs[2], "shmrpc-");
    assert_int_equal(truncate(path, 10), 0);
    set_mtime(path, -60);
}

static void ls_and_clean_private_dirs(void **state)
{
    (void)state;
    char key[96], seg[160];
    snprintf(key, sizeof key, "%sns", prefix);
    snprintf(seg, sizeof seg, "shmrpc:%s", key);
    /* A uid nobody has, from this run's pid. */
    unsigned long uid = 3000000000ul + (unsigned long)getpid();
    char path[512], dir[2][32];
    snprintf(dir[0], sizeof dir[0], "shmrpc-%lu", uid);
    snprintf(dir[1], sizeof dir[1], "shmrpc-%lux", uid);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "/dev/shm/%s", dir[i]);
        if (mkdir(path, 0700) != 0) fail_msg("mkdir %s: %s", path, strerror(errno));
        snprintf(fake_dirs[i], sizeof fake_dirs[i], "%s", dir[i]);
        snprintf(path, sizeof path, "%s/%s", dir[i], seg);
        odd_file(path, 10, 0, true);
    }
    into_bare_dir(seg);
    char link[64];
    snprintf(link, sizeof link, "shmrpc-%lu", uid + 1);
    snprintf(path, sizeof path, "/dev/shm/%s", link);
    if (symlink(dir[0], path) != 0) fail_msg("symlink %s: %s", path, strerror(errno));
    snprintf(fake_link, sizeof fake_link, "%s", link);

    char name[512];
    snprintf(name, sizeof name, "%s/%s", dir[0], seg);
    shmrpc_segment s = stale_one(key); /* not through the link, nor in the others */
    assert_string_equal(s.name, name);
    assert_int_equal(s.kind, SHMRPC_SEG_CONTROL);
    assert_string_equal(s.detail, "too small for a control segment (10 bytes)");
    assert_string_equal(s.reason, "its creator died while creating it");
    run r;
    ctl(&r, NULL, "clean", key, NULL);
    assert_int_equal(r.status, 0);
    char want[640];
    snprintf(want, sizeof want, "removed control %s: its creator died while creating it\n", name);
    assert_string_equal(r.out, want);
    assert_false(there(name));
    for (int i = 1; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", fake_dirs[i], seg);
        assert_true(there(path));
    }
    drop_fake_dirs(seg);
}

/* A segment of root's that others may read: a user's clean judges it stale (its creator
 * died while making it) and may not remove it (/dev/shm is sticky: EPERM): the status
 * says so.
 * The user is a child of this root process that takes uid 65534 as its effective one only,
 * and takes 0 back before it exits (so that its coverage counts are written). */
static void other_user_may_not_remove(void **state)
{
    (void)state;
    char key[96], seg[160], path[300];
    snprintf(key, sizeof key, "%sroots", prefix);
    snprintf(seg, sizeof seg, "shmrpc:%s", key);
    odd_file(seg, 10, 0, true);
    snprintf(path, sizeof path, "/dev/shm/%s", seg);
    assert_int_equal(chmod(path, 0644), 0);
    if (geteuid() != 0) {
        assert_int_equal(shm_unlink(seg), 0);
        skip();
    }
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        alarm(20);
        if (seteuid(65534) != 0) _exit(10);
        shmrpc_segment *v;
        size_t n;
        const char *names[] = {key};
        int step = 11;
        if (shmrpc_segments_list(&v, &n, names, 1) == 0 && n == 1 && v[0].stale && v[0].uid == 0 &&
            (step = 12) && shmrpc_segment_remove(&v[0]) == SHMRPC_ESYS(EPERM)) {
            char want[300];
            snprintf(want, sizeof want, "cannot remove %s: Operation not permitted", seg);
            step = strcmp(shmrpc_errmsg(), want) == 0 ? 0 : 13;
        }
        if (seteuid(0) != 0) _exit(14);
        _exit(step);
    }
    int status;
    assert_int_equal(waitpid(kid, &status, 0), kid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(there(seg));
    assert_int_equal(shm_unlink(seg), 0);
}

/* A dead service's rendezvous and its lock go with its control segment, when nobody holds
 * the lock (a server starting would); held, they stay; with no lock, the rendezvous stays. */
static void clean_takes_the_rendezvous(void **state)
{
    (void)state;
    char key[3][96], ctl_name[3][200], lock[3][200], rdv[3][200];
    for (int i = 0; i < 3; i++) {
        snprintf(key[i], sizeof key[i], "%srdv%d", prefix, i);
        snprintf(ctl_name[i], sizeof ctl_name[i], "shmrpc:%s", key[i]);
        snprintf(lock[i], sizeof lock[i], "shmrpc:%s:lock", key[i]);
        snprintf(rdv[i], sizeof rdv[i], "shmrpc:%s:rdv", key[i]);
        odd_file(ctl_name[i], 10, 0, true);
        odd_file(rdv[i], 0, 0, true);
        if (i < 2) odd_file(lock[i], 0, 0, true);
    }
    /* Key 1's lock is held, as by a server starting. */
    char path[1024];
    snprintf(path, sizeof path, "/dev/shm/%s", lock[1]);
    int held = open(path, O_RDWR | O_CLOEXEC);
    assert_true(held >= 0);
    bool locked = flock(held, LOCK_EX | LOCK_NB) == 0;
    run r;
    if (locked) ctl(&r, NULL, "clean", key[0], key[1], key[2], NULL);
    close(held);
    assert_true(locked);
    assert_int_equal(r.status, 0);
    char want[800];
    snprintf(want, sizeof want,
             "removed control %s: its creator died while creating it\n"
             "removed control %s: its creator died while creating it\n"
             "removed control %s: its creator died while creating it\n",
             ctl_name[0], ctl_name[1], ctl_name[2]);
    assert_string_equal(r.out, want);
    assert_false(there(ctl_name[0]) || there(lock[0]) || there(rdv[0]));
    assert_false(there(ctl_name[1]));
    assert_true(there(lock[1]) && there(rdv[1]));
    assert_false(there(ctl_name[2]));
    assert_true(there(rdv[2]));
    assert_int_equal(shm_unlink(lock[1]), 0);
    assert_int_equal(shm_unlink(rdv[1]), 0);
    assert_int_equal(shm_unlink(rdv[2]), 0);
}

/* A statistics segment as a server writes it (runtime/src/stats/stats.h): six 32-bit words
 * (magic, version, pid, methods, workers, bytes of names), the service's 256 bytes, then
 * 64 KiB of names; its rows are not read by ls. */
#define STATS_HEAD_BYTES (24 + 256 + 65536)

static void forge_stats(const char *name, int32_t pid, uint32_t methods, const char *service)
{
    odd_file(name, STATS_HEAD_BYTES + 4096, 0, true);
    uint32_t head[6] = {0x53525354u, 1, (uint32_t)pid, methods, SHMRPC_MAX_WORKERS, 0};
    write_at(name, 0, head, sizeof head);
    write_at(name, 24, service, strlen(service));
}

/* Statistics with a live server and with a dead one: its line (control characters of the
 * service's name shown as '?', "1 method"), its verdict, and a removal that checks the
 * owner is the one listed. */
static void ls_and_clean_statistics(void **state)
{
    (void)state;
    char key[96], live_st[200], dead_st[200], k_live[120], k_dead[120];
    snprintf(key, sizeof key, "%sst", prefix);
    snprintf(k_live, sizeof k_live, "%slive", key);
    snprintf(k_dead, sizeof k_dead, "%sdead", key);
    snprintf(live_st, sizeof live_st, "shmrpc.stats.shm.%s", k_live);
    snprintf(dead_st, sizeof dead_st, "shmrpc.stats.shm.%s", k_dead);
    pid_t kid = fork(); /* a server that is dead */
    assert_true(kid >= 0);
    if (kid == 0) _exit(0);
    assert_int_equal(waitpid(kid, NULL, 0), kid);
    forge_stats(live_st, getpid(), 1, "Ech\x01o\x1f");
    forge_stats(dead_st, kid, 3, "Calc");

    shmrpc_segment s = one_listed(k_live);
    assert_true(s.valid);
    assert_int_equal(s.owner_pid, getpid());
    assert_int_equal(s.owner, SHMRPC_LIFE_ALIVE);
    assert_string_equal(s.service, "Ech?o?");
    assert_int_equal(s.methods, 1);
    assert_string_equal(s.detail, "statistics of service Ech?o?, 1 method");
    assert_false(s.stale);
    s = one_listed(k_dead);
    assert_int_equal(s.owner, SHMRPC_LIFE_DEAD);
    assert_string_equal(s.detail, "statistics of service Calc, 3 methods");
    char want[300];
    snprintf(want, sizeof want, "its server, pid %d, is dead", (int)kid);
    assert_string_equal(s.reason, want);
    assert_true(s.stale);
    /* Another server took the name since (a live one): not removed. */
    int32_t me = getpid();
    write_at(dead_st, 8, &me, 4);
    expect_busy(&s);
    /* The dead one's again: removed. */
    write_at(dead_st, 8, &kid, 4);
    assert_int_equal(shmrpc_segment_remove(&s), 0);
    assert_false(there(dead_st));
    run r;
    ctl(&r, NULL, "clean", k_live, NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "nothing to remove\n");
    assert_int_equal(shm_unlink(live_st), 0);
}

/* A map's lock with no map (past the grace: stale; held by a live thread, or of a layout
 * it does not know: kept), and the lock of a map its creator left half made. */
static void ls_and_clean_map_locks(void **state)
{
    (void)state;
    char gone[96], held[96], junk[96], half[96], lname[4][120], file[4][200];
    snprintf(gone, sizeof gone, "%smlgone", prefix);
    snprintf(held, sizeof held, "%smlheld", prefix);
    snprintf(junk, sizeof junk, "%smljunk", prefix);
    snprintf(half, sizeof half, "%smlhalf", prefix);
    const char *keys[] = {gone, held, junk, half};
    for (int i = 0; i < 4; i++) {
        snprintf(lname[i], sizeof lname[i], "map.%s", keys[i]);
        snprintf(file[i], sizeof file[i], "shmrpc.lock.map.%s", keys[i]);
    }
    shmrpc_lock_opts o;
    shmrpc_lock_opts_init(&o);
    shmrpc_lock **l = left.locks;
    for (int i = 0; i < 4; i++)
        if (i != 2) assert_int_equal(shmrpc_lock_open(&l[i], lname[i], &o), 0);
    odd_file(file[2], 128, 0xdeadbeef, true);
    assert_int_equal(shmrpc_lock_acquire(l[1], 1000), 0);
    char hdr[200];
    snprintf(hdr, sizeof hdr, "shmrpc.map.%s", half);
    odd_file(hdr, 4096, 0, true); /* no magic, no creator, old: its creator died making it */
    age("shmrpc.lock.map.%s%.0llu", gone, 0);
    age("shmrpc.lock.map.%s%.0llu", held, 0);
    age("shmrpc.lock.map.%s%.0llu", half, 0);

    shmrpc_segment *v;
    size_t n;
    assert_int_equal(shmrpc_segments_list(&v, &n, keys, 4), 0);
    assert_int_equal(n, 5);
    const shmrpc_segment *g = listed(v, n, file[0]);
    assert_non_null(g);
    assert_int_equal(g->owner, SHMRPC_LIFE_NONE);
    char want[800];
    snprintf(want, sizeof want, "the lock of map %s", gone);
    assert_string_equal(g->detail, want);
    assert_true(g->stale);
    assert_string_equal(g->reason, "its map is gone (no header)");
    g = listed(v, n, file[1]);
    assert_non_null(g);
    assert_int_equal(g->owner, SHMRPC_LIFE_ALIVE);
    assert_false(g->stale);
    g = listed(v, n, file[2]);
    assert_non_null(g);
    assert_string_equal(g->detail, "incomplete or unknown layout");
    assert_false(g->stale);
    g = listed(v, n, file[3]);
    assert_non_null(g);
    assert_true(g->stale);
    assert_string_equal(g->reason, "its map's creator died while creating it");
    g = listed(v, n, hdr);
    assert_non_null(g);
    assert_true(g->stale);
    shmrpc_segments_free(v);

    run r;
    ctl(&r, NULL, "clean", gone, held, junk, half, NULL);
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof want,
             "removed lock %s: its map is gone (no header)\n"
             "removed lock %s: its map's creator died while creating it\n"
             "removed map %s: its creator died while creating it\n",
             file[0], file[3], hdr);
    assert_string_equal(r.out, want);
    assert_false(there(file[0]) || there(file[3]) || there(hdr));
    assert_true(there(file[1]) && there(file[2]));
    /* Held by a thread that died holding it: stale with its map gone. */
    assert_int_equal(shmrpc_lock_release(l[1]), 0);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        shmrpc_lock *k;
        _exit(shmrpc_lock_open(&k, lname[1], &o) || shmrpc_lock_acquire(k, 1000) ? 1 : 0);
    }
    int status;
    assert_int_equal(waitpid(kid, &status, 0), kid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    age("shmrpc.lock.map.%s%.0llu", held, 0);
    shmrpc_segment s = one_listed(lname[1] + 4);
    assert_int_equal(s.owner, SHMRPC_LIFE_DEAD);
    assert_true(s.stale);
    assert_string_equal(s.reason, "its map is gone (no header)");
    assert_int_equal(shmrpc_segment_remove(&s), 0);
    assert_false(there(file[1]));
    let_go_of_left(NULL);
    assert_int_equal(shm_unlink(file[2]), 0);
}

/* A map of this process with one entry, then its current generation cut short, then gone,
 * and its lock gone: ls says which, and shows the header's figures alone. */
static void ls_shows_a_damaged_map(void **state)
{
    (void)state;
    char name[128];
    snprintf(name, sizeof name, "%sdmg", prefix);
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.mode = SHMRPC_MAP_CREATE_NEW_EXCLUSIVE;
    o.initial_slots = 8;
    o.initial_bytes = 4096;
    shmrpc_map *m;
    assert_int_equal(shmrpc_map_open(&m, name, &o), 0);
    int k = 1;
    assert_int_equal(shmrpc_map_put(m, &k, sizeof k, "value", 5), 0);
    shmrpc_map_close(m);
    unsigned long long first = read_first(name);
    char hdr[200], gen[200], lock[200];
    snprintf(hdr, sizeof hdr, HDR, name, 0ull);
    snprintf(gen, sizeof gen, GEN, name, first);
    snprintf(lock, sizeof lock, MLOCK, name, 0ull);

    shmrpc_segment *v;
    size_t n;
    const char *names[] = {name};
    assert_int_equal(shmrpc_segments_list(&v, &n, names, 1), 0);
    const shmrpc_segment *h = listed(v, n, hdr);
    assert_non_null(h);
    assert_true(h->valid);
    assert_int_equal(h->map.count, 1);
    assert_int_equal(h->map.generation, 1);
    if (strncmp(h->detail, "map, 1 entry, generation 1, ", 28) != 0 ||
        strstr(h->detail, ", 1 writes, 0 growths") == NULL)
        fail_msg("%s", h->detail);
    assert_false(h->stale);
    shmrpc_segments_free(v);

    char path[1024];
    snprintf(path, sizeof path, "/dev/shm/%s", gen);
    assert_int_equal(truncate(path, 64), 0);
    assert_int_equal(shmrpc_segments_list(&v, &n, names, 1), 0);
    h = listed(v, n, hdr);
    assert_non_null(h);
    assert_string_equal(h->detail,
                        "map at generation 1, which cannot be read: cut to 64 bytes under its "
                        "holders");
    assert_int_equal(h->map.count, 0);
    assert_int_equal(h->map.writes, 1);
    assert_int_equal(h->map.generation, 1);
    assert_false(h->stale);
    shmrpc_segments_free(v);

    assert_int_equal(shm_unlink(gen), 0);
    assert_int_equal(shm_unlink(lock), 0);
    assert_int_equal(shmrpc_segments_list(&v, &n, names, 1), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].detail, "map at generation 1, which cannot be read: cannot open: No "
                                     "such file or directory");
    assert_int_equal(v[0].map.lock_waits, 0);
    assert_false(v[0].stale);
    shmrpc_segments_free(v);
    assert_int_equal(shm_unlink(hdr), 0);
}

/* A user whose /dev/shm/shmrpc-UID another user took keeps its names in
 * $XDG_RUNTIME_DIR/shmrpc (docs/names.md): that user's ls lists a segment there by its whole
 * path, and its clean removes it there. The user is a child of this root process with that
 * effective uid, which takes 0 back before it exits (so that its counts are written). */
static char xdg_dirs[2][128], xdg_squat[64]; /* what this run made ("" when not) */

static void drop_xdg(const char *seg)
{
    char path[512];
    if (xdg_dirs[1][0]) {
        snprintf(path, sizeof path, "%s/%s", xdg_dirs[1], seg);
        unlink(path);
    }
    for (int i = 1; i >= 0; i--)
        if (xdg_dirs[i][0]) rmdir(xdg_dirs[i]);
    if (xdg_squat[0]) rmdir(xdg_squat);
    memset(xdg_dirs, 0, sizeof xdg_dirs);
    xdg_squat[0] = '\0';
}

/* mkdir of path, remembered in made once made. */
static void make_dir(char *made, size_t size, const char *path)
{
    if (mkdir(path, 0700) != 0) fail_msg("mkdir %s: %s", path, strerror(errno));
    snprintf(made, size, "%s", path);
}

static void ls_and_clean_elsewhere(void **state)
{
    (void)state;
    if (geteuid() != 0) skip();
    char key[96], seg[160], path[512];
    snprintf(key, sizeof key, "%sxdg", prefix);
    snprintf(seg, sizeof seg, "shmrpc:%s", key);
    uid_t uid = 2000000000u + (uid_t)getpid();
    char squat[64], xdg_dir[96], dir2[128];
    snprintf(squat, sizeof squat, "/dev/shm/shmrpc-%u", (unsigned)uid);
    snprintf(xdg_dir, sizeof xdg_dir, "/tmp/%sxdg", prefix);
    snprintf(dir2, sizeof dir2, "%s/shmrpc", xdg_dir);
    make_dir(xdg_squat, sizeof xdg_squat, squat); /* root's: taken from uid */
    make_dir(xdg_dirs[0], sizeof xdg_dirs[0], xdg_dir);
    make_dir(xdg_dirs[1], sizeof xdg_dirs[1], dir2);
    snprintf(path, sizeof path, "%s/%s", dir2, seg);
    create_file(path, 10, 0);
    set_mtime(path, -60);
    assert_int_equal(chown(path, uid, uid), 0);
    assert_int_equal(chown(dir2, uid, uid), 0);
    assert_int_equal(chown(xdg_dir, uid, uid), 0);

    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        alarm(20);
        setenv("XDG_RUNTIME_DIR", xdg_dir, 1);
        if (seteuid(uid) != 0) _exit(10);
        shmrpc_segment *v;
        size_t n;
        const char *names[] = {key};
        int step = 11;
        if (shmrpc_segments_list(&v, &n, names, 1) == 0 && n == 1 && (step = 12) &&
            strcmp(v[0].name, path) == 0 && (step = 13) && v[0].stale &&
            strcmp(v[0].detail, "too small for a control segment (10 bytes)") == 0 && (step = 14) &&
            shmrpc_segment_remove(&v[0]) == 0 && (step = 15) && access(path, F_OK) != 0)
            step = 0;
        if (seteuid(0) != 0) _exit(16);
        _exit(step);
    }
    int status;
    assert_int_equal(waitpid(kid, &status, 0), kid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    drop_xdg(seg);
}

/* The names of each kind and state, and "?" for a number that is none. */
static void kind_and_life_names(void **state)
{
    (void)state;
    const char *kinds[] = {"control", "channel", "lock",   "stats",
                           "queue",   "map",     "mapgen", "other"};
    for (int k = 0; k <= SHMRPC_SEG_OTHER; k++)
        assert_string_equal(shmrpc_seg_kind_name((shmrpc_seg_kind)k), kinds[k]);
    assert_string_equal(shmrpc_seg_kind_name((shmrpc_seg_kind)(SHMRPC_SEG_OTHER + 1)), "?");
    const char *lives[] = {"free", "alive", "dead", "unknown"};
    for (int l = 0; l <= SHMRPC_LIFE_UNKNOWN; l++)
        assert_string_equal(shmrpc_seg_life_name((shmrpc_seg_life)l), lives[l]);
    assert_string_equal(shmrpc_seg_life_name((shmrpc_seg_life)(SHMRPC_LIFE_UNKNOWN + 1)), "?");
    assert_string_equal(shmrpc_seg_life_name((shmrpc_seg_life)-1), "?");
}

/* A lock as lock.c writes it (runtime/src/core/lock_seg.h, 128 bytes): magic, version, size,
 * then the futex word (the holder's thread id, plus 0x80000000 when it has waiters) and
 * the holder's tag (its start time << 22 | its thread id). */
static void forge_lock(const char *file, uint32_t word, uint64_t tag)
{
    odd_file(file, 128, 0x4b434c53u, true);
    uint32_t head[6] = {0x4b434c53u, 2, 128, 0, word, 0};
    write_at(file, 0, head, sizeof head);
    write_at(file, 24, &tag, 8);
}

/* Heads of the library's magic with another version (kept: another build's), and locks
 * whose holder's tag says whether its thread id is the same thread's: a tag of this id with
 * an earlier start is a reused id (dead), a tag of another id or with no start says nothing
 * (alive). */
static void ls_judges_versions_and_tags(void **state)
{
    (void)state;
    char key[96], ctl_v[200], st_v[200], k[4][120], lk[4][512];
    snprintf(key, sizeof key, "%svt", prefix);
    snprintf(ctl_v, sizeof ctl_v, "shmrpc:%s", key);
    snprintf(st_v, sizeof st_v, "shmrpc.stats.shm.%s", key);
    odd_file(ctl_v, 65536, 0x53484d31u, true);
    uint32_t version = 999;
    write_at(ctl_v, 4, &version, 4);
    forge_stats(st_v, getpid(), 1, "S");
    version = 2;
    write_at(st_v, 4, &version, 4);

    uint32_t me = (uint32_t)getpid();
    const char *which[] = {"reused", "other", "nostart", "waiters"};
    uint64_t tags[] = {(UINT64_C(1) << 22) | me, (UINT64_C(1) << 22) | (me + 1), me,
                       (UINT64_C(1) << 22) | (me + 1)};
    uint32_t words[] = {me, me, me, me | 0x80000000u};
    for (int i = 0; i < 4; i++) {
        snprintf(k[i], sizeof k[i], "%s%s", key, which[i]);
        snprintf(lk[i], sizeof lk[i], "shmrpc.lock.%s", k[i]);
        forge_lock(lk[i], words[i], tags[i]);
    }

    shmrpc_segment *v;
    size_t n;
    const char *names[] = {key, k[0], k[1], k[2], k[3]};
    assert_int_equal(shmrpc_segments_list(&v, &n, names, 5), 0);
    assert_int_equal(n, 6);
    const shmrpc_segment *g = listed(v, n, ctl_v);
    assert_non_null(g);
    assert_string_equal(g->detail, "unknown layout (magic 0x53484d31, version 999)");
    assert_false(g->valid || g->stale);
    g = listed(v, n, st_v);
    assert_non_null(g);
    assert_string_equal(g->detail, "unknown layout (magic 0x53525354, version 2)");
    assert_false(g->valid || g->stale);
    char alive[80], dead[160];
    snprintf(alive, sizeof alive, "held by thread %u", me);
    snprintf(dead, sizeof dead, "held by thread %u, which is dead: the next locker takes it over",
             me);
    for (int i = 0; i < 4; i++) {
        g = listed(v, n, lk[i]);
        assert_non_null(g);
        assert_int_equal(g->owner_pid, (int32_t)me);
        if (strcmp(g->detail, i == 0 ? dead : alive) != 0) fail_msg("%s: %s", lk[i], g->detail);
        assert_int_equal(g->owner, i == 0 ? SHMRPC_LIFE_DEAD : SHMRPC_LIFE_ALIVE);
        assert_false(g->stale);
    }
    shmrpc_segments_free(v);
    run r;
    ctl(&r, NULL, "clean", key, k[0], k[1], k[2], k[3], NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "nothing to remove\n");
    assert_int_equal(shm_unlink(ctl_v), 0);
    assert_int_equal(shm_unlink(st_v), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(shm_unlink(lk[i]), 0);
}

/* Generations of maps whose header is of an unknown layout (kept: not ours to judge), or
 * has no magic yet, young or with its creator alive (being created: kept). */
static void ls_judges_generations_of_odd_maps(void **state)
{
    (void)state;
    const char *tail[] = {"gu", "gh", "ga"};
    char key[3][120], hdr[3][512], gen[3][512];
    for (int i = 0; i < 3; i++) {
        snprintf(key[i], sizeof key[i], "%s%s", prefix, tail[i]);
        snprintf(hdr[i], sizeof hdr[i], "shmrpc.map.%s", key[i]);
        snprintf(gen[i], sizeof gen[i], "shmrpc.mapgen.%s.1", key[i]);
        odd_file(gen[i], 10, 0, true);
    }
    odd_file(hdr[0], 4096, 0xdeadbeef, true);
    odd_file(hdr[1], 4096, 0, false);
    odd_file(hdr[2], 4096, 0, true);
    uint32_t me = (uint32_t)getpid();
    write_at(hdr[2], 12, &me, 4); /* its creator: this process */
    age_by("shmrpc.map.%s%.0llu", key[2], 0, 60);

    shmrpc_segment *v;
    size_t n;
    const char *names[] = {key[0], key[1], key[2]};
    assert_int_equal(shmrpc_segments_list(&v, &n, names, 3), 0);
    assert_int_equal(n, 6);
    const char *notes[] = {"", ": its map is being created", ": its map is being created"};
    const char *hdr_detail[] = {"unknown layout (magic 0xdeadbeef, version 0)",
                                "incomplete (no magic yet)", "incomplete (no magic yet)"};
    for (int i = 0; i < 3; i++) {
        const shmrpc_segment *g = listed(v, n, gen[i]);
        assert_non_null(g);
        char want[600];
        snprintf(want, sizeof want, "generation file 1 of map %s: too small (10 bytes)%s", key[i],
                 notes[i]);
        if (strcmp(g->detail, want) != 0) fail_msg("%s: %s", g->name, g->detail);
        assert_false(g->stale);
        g = listed(v, n, hdr[i]);
        assert_non_null(g);
        if (strcmp(g->detail, hdr_detail[i]) != 0) fail_msg("%s: %s", g->name, g->detail);
        assert_false(g->stale);
    }
    shmrpc_segments_free(v);
    run r;
    ctl(&r, NULL, "clean", key[0], key[1], key[2], NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "nothing to remove\n");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(shm_unlink(gen[i]), 0);
        assert_int_equal(shm_unlink(hdr[i]), 0);
    }
}

/* The live server with one client connected ("1 connection"), and statistics under its
 * name in /dev/shm of another server, which is dead: not credited with the live server's
 * start time, stale, removed; the live server's own are kept. */
static void ls_tells_the_live_server_from_another(void **state)
{
    (void)state;
    const char *key = shm_live + 6;
    shmrpc_dyn *d;
    assert_int_equal(shmrpc_dyn_new(&d, NULL), 0);
    assert_int_equal(shmrpc_dyn_connect(d, shm_live), 0);
    char ctl_name[200], other_st[200];
    snprintf(ctl_name, sizeof ctl_name, "%sshmrpc:%s", ns, key);
    snprintf(other_st, sizeof other_st, "shmrpc.stats.shm.%s", key);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) _exit(0);
    assert_int_equal(waitpid(kid, NULL, 0), kid);
    forge_stats(other_st, kid, 4, "Echo");

    shmrpc_segment *v = NULL;
    size_t n = 0;
    const char *names[] = {shm_live};
    const shmrpc_segment *c = NULL;
    /* The probe's connection, dropped by the handle, is freed by the server a moment later. */
    for (int64_t end = sup_now_ms() + 5000;; sup_nap_ms(20)) {
        shmrpc_segments_free(v);
        assert_int_equal(shmrpc_segments_list(&v, &n, names, 1), 0);
        c = listed(v, n, ctl_name);
        assert_non_null(c);
        if (strcmp(c->detail, "service Echo, 1 worker, 1 connection") == 0) break;
        if (sup_now_ms() > end) fail_msg("%s: %s", c->name, c->detail);
    }
    assert_int_equal(c->owner_pid, srv_shm);
    const shmrpc_segment *o = listed(v, n, other_st);
    assert_non_null(o);
    assert_int_equal(o->owner_pid, kid);
    assert_int_equal(o->owner, SHMRPC_LIFE_DEAD);
    assert_int_equal(o->owner_start, 0);
    assert_true(o->stale);
    char mine[200];
    snprintf(mine, sizeof mine, "%sshmrpc.stats.shm.%s", ns, key);
    const shmrpc_segment *m = listed(v, n, mine);
    assert_non_null(m);
    assert_int_equal(m->owner, SHMRPC_LIFE_ALIVE);
    assert_int_equal(m->owner_start, c->owner_start);
    assert_false(m->stale);
    assert_int_equal(shmrpc_segment_remove(o), 0);
    shmrpc_segments_free(v);
    assert_false(there(other_st));
    shmrpc_dyn_free(d);
}

/* Stops the servers as an operator would: nothing of this run may be left in /dev/shm. */
static void nothing_left_behind(void **state)
{
    (void)state;
    stop_group(&srv_shm, SIGTERM);
    stop_group(&srv_tcp, SIGTERM);
    int left = sweep_ours();
    assert_int_equal(left, 0);
}

/* --- the codec alone, on types the echo service lacks: the arguments encoded as msgpack
 * read back as a struct of the same fields, which is the same bytes. */

static void codec_round_trip(void **state)
{
    (void)state;
    shmrpc_dyn *d;
    assert_int_equal(shmrpc_dyn_new(&d, NULL), 0);
    const shmrpc_dyn_sig *args, *res;
    const char *types =
        "map<string,list<i64>> m,enum Color{red=0,green=5}? c,"
        "struct Node{i8 v;list<struct Node> kids;struct Node? up;} n,u64 big,bytes b,f32 f,"
        "map<enum Color,bool> k,map<i16,string?> q";
    char sig[600], sig2[600];
    snprintf(sig, sizeof sig, "m(%s)->void @msgpack", types);
    /* The same fields as a struct. */
    snprintf(sig2, sizeof sig2,
             "r()->struct R{map<string,list<i64>> m;enum Color{red=0,green=5}? c;"
             "struct Node{i8 v;list<struct Node> kids;struct Node? up;} n;u64 big;bytes b;f32 f;"
             "map<enum Color,bool> k;map<i16,string?> q;} @msgpack");
    if (shmrpc_dyn_sig_parse(d, sig, &args) != 0) fail_msg("%s", shmrpc_errmsg());
    if (shmrpc_dyn_sig_parse(d, sig2, &res) != 0) fail_msg("%s", shmrpc_errmsg());
    const char *in = "{\"m\":{\"a\":[1,-2],\"b\":[]},\"c\":\"green\","
                     "\"n\":{\"v\":-128,\"kids\":[{\"v\":1,\"kids\":[]}]},"
                     "\"big\":\"18446744073709551615\",\"b\":\"AAEC\",\"f\":0.1,"
                     "\"k\":{\"red\":true},\"q\":{\"-7\":\"x\",\"8\":null}}";
    shmrpc_buf body, out;
    shmrpc_buf_init(&body);
    shmrpc_buf_init(&out);
    if (shmrpc_dyn_encode_args(args, in, strlen(in), &body) != 0) fail_msg("%s", shmrpc_errmsg());
    if (shmrpc_dyn_decode_result(res, body.data, body.len, &out) != 0)
        fail_msg("%s", shmrpc_errmsg());
    const char *want =
        "{\"m\":{\"a\":[1,-2],\"b\":[]},\"c\":\"green\","
        "\"n\":{\"v\":-128,\"kids\":[{\"v\":1,\"kids\":[],\"up\":null}],\"up\":null},"
        "\"big\":18446744073709551615,\"b\":\"AAEC\",\"f\":0.1,"
        "\"k\":{\"red\":true},\"q\":{\"-7\":\"x\",\"8\":null}}";
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);

    struct {
        const char *args, *err;
    } bad[] = {
        {"{\"m\":{},\"n\":{\"v\":128,\"kids\":[]},\"big\":1,\"b\":\"\",\"f\":1,\"k\":{},\"q\":{}}",
         "argument 'n'.v: 128 is out of range for i8"},
        {"{\"m\":{},\"c\":\"blue\",\"n\":{\"v\":1,\"kids\":[]},\"big\":1,\"b\":\"\",\"f\":1,"
         "\"k\":{},\"q\":{}}",
         "argument 'c': \"blue\" is not a value of enum Color (red, green)"},
        {"{\"m\":{},\"n\":{\"v\":1,\"kids\":[]},\"big\":-1,\"b\":\"\",\"f\":1,\"k\":{},\"q\":{}}",
         "argument 'big': -1 is out of range for u64"},
        {"{\"m\":{},\"n\":{\"v\":1,\"kids\":[]},\"big\":1,\"b\":\"\",\"f\":1e39,\"k\":{},\"q\":{}}",
         "argument 'f': 1e+39 is out of range for f32"},
        {"{\"m\":{},\"n\":{\"v\":1,\"kids\":[]},\"big\":1,\"b\":\"\",\"f\":1,\"k\":{},"
         "\"q\":{\"07\":null}}",
         "argument 'q'[\"07\"]: key \"07\" is not an integer"},
        {"{\"m\":{\"a\":[true]},\"n\":{\"v\":1,\"kids\":[]},\"big\":1,\"b\":\"\",\"f\":1,"
         "\"k\":{},\"q\":{}}",
         "argument 'm'[\"a\"][0]: expected an integer (i64), got true"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        shmrpc_buf_clear(&body);
        if (shmrpc_dyn_encode_args(args, bad[i].args, strlen(bad[i].args), &body) != SHMRPC_EINVAL)
            fail_msg("accepted %s", bad[i].args);
        assert_string_equal(shmrpc_errmsg(), bad[i].err);
    }
    /* Responses that lie. */
    const uint8_t lie[] = {0x93, 0x01, 0x02};       /* an array of 3 with 2 elements */
    const uint8_t cut[] = {0x92, 0x01, 0xcd, 0x01}; /* its uint16 cut short */
    const shmrpc_dyn_sig *ints;
    assert_int_equal(shmrpc_dyn_sig_parse(d, "p()->list<i64> @msgpack", &ints), 0);
    shmrpc_buf_clear(&out);
    assert_int_equal(shmrpc_dyn_decode_result(ints, lie, sizeof lie, &out), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "result: count larger than the bytes left");
    assert_int_equal(shmrpc_dyn_decode_result(ints, cut, sizeof cut, &out), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "result[1]: truncated");
    const char *sigs_bad[] = {"x(i64 a)->i64", "x(struct P a)->void @msgpack",
                              "x(int a)->void @msgpack", "x(bytes a)->string @raw",
                              "x(map<f64,i8> a)->void @json"};
    for (size_t i = 0; i < sizeof sigs_bad / sizeof *sigs_bad; i++)
        assert_int_equal(shmrpc_dyn_sig_parse(d, sigs_bad[i], &ints), SHMRPC_EINVAL);
    shmrpc_buf_destroy(&body);
    shmrpc_buf_destroy(&out);
    shmrpc_dyn_free(d);
}

/* n nodes of struct Node{i8 v;struct Node? up;}, each the up of the one before, as msgpack
 * (a struct is an array of its fields): malloc'd, its length in *len. */
static uint8_t *node_chain(size_t n, size_t *len)
{
    uint8_t *p = malloc(2 * n + 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[2 * i] = 0x92, p[2 * i + 1] = 0x01;
    p[2 * n] = 0xc0;
    *len = 2 * n + 1;
    return p;
}

/* civetweb's stack; AddressSanitizer's frames, with their red zones, are several times
 * those of the build that ships. */
#if defined(__SANITIZE_ADDRESS__)
#define SMALL_STACK (800 * 1024)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SMALL_STACK (800 * 1024)
#endif
#endif
#ifndef SMALL_STACK
#define SMALL_STACK (100 * 1024)
#endif

static void *decode_on_small_stack(void *arg)
{
    shmrpc_dyn *d = arg;
    const shmrpc_dyn_sig *sig;
    intptr_t rc = shmrpc_dyn_sig_parse(d, "p()->struct Node{i8 v;struct Node? up;} @msgpack", &sig);
    if (rc != 0) return (void *)rc;
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    size_t len;
    uint8_t *body = node_chain(100000, &len);
    rc = shmrpc_dyn_decode_result(sig, body, len, &out);
    free(body);
    shmrpc_buf_destroy(&out);
    return (void *)rc;
}

/* How deep values may nest, both ways: the JSON bound (128), checked before jansson
 * parses arguments and while a result becomes JSON; a deeper result was followed down to
 * 512 levels, on the gateway's 100 KiB stacks too. */
static void codec_depth(void **state)
{
    (void)state;
    shmrpc_dyn *d;
    assert_int_equal(shmrpc_dyn_new(&d, NULL), 0);
    const shmrpc_dyn_sig *sig, *list;
    assert_int_equal(
        shmrpc_dyn_sig_parse(d, "p()->struct Node{i8 v;struct Node? up;} @msgpack", &sig), 0);
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    size_t len;
    uint8_t *body = node_chain(128, &len);
    if (shmrpc_dyn_decode_result(sig, body, len, &out) != 0) fail_msg("%s", shmrpc_errmsg());
    free(body);
    assert_int_equal(shmrpc_json_check_depth(out.data, out.len, 128), 0);
    assert_int_equal(shmrpc_json_check_depth(out.data, out.len, 127), SHMRPC_EINVAL);
    shmrpc_buf_clear(&out);
    body = node_chain(129, &len);
    assert_int_equal(shmrpc_dyn_decode_result(sig, body, len, &out), SHMRPC_EINVAL);
    free(body);
    assert_non_null(strstr(shmrpc_errmsg(), "nested more than 128 deep"));

    pthread_attr_t attr;
    pthread_t th;
    void *rc = NULL;
    assert_int_equal(pthread_attr_init(&attr), 0);
    assert_int_equal(pthread_attr_setstacksize(&attr, SMALL_STACK), 0);
    assert_int_equal(pthread_create(&th, &attr, decode_on_small_stack, d), 0);
    assert_int_equal(pthread_join(th, &rc), 0);
    pthread_attr_destroy(&attr);
    assert_int_equal((intptr_t)rc, SHMRPC_EINVAL);

    /* Arguments: 128 arrays deep are read (and refused for their type), 129 are not. */
    assert_int_equal(shmrpc_dyn_sig_parse(d, "q(list<i64> x)->void @msgpack", &list), 0);
    for (size_t depth = 128; depth <= 129; depth++) {
        char *text = malloc(2 * depth + 1);
        assert_non_null(text);
        memset(text, '[', depth);
        memset(text + depth, ']', depth);
        text[2 * depth] = '\0';
        shmrpc_buf_clear(&out);
        assert_int_equal(shmrpc_dyn_encode_args(list, text, 2 * depth, &out), SHMRPC_EINVAL);
        free(text);
        const char *err = shmrpc_errmsg();
        if ((strstr(err, "arguments: JSON nested more than 128 deep") != NULL) != (depth == 129))
            fail_msg("%zu deep: %s", depth, err);
    }
    shmrpc_buf_destroy(&out);
    shmrpc_dyn_free(d);
}

/* ---- shmrpcctl's control commands before they reach a supervisor ---- */

/* The environment the commands read, saved and restored around each test, and the folder
 * that XDG_RUNTIME_DIR names for them. */
static const char *const env_names[] = {"XDG_RUNTIME_DIR", "SHMRPC_CONTROL", "SHMRPC_INI"};
static char *env_saved[3];
static char reg_root[64];
static pid_t reg_kids[2]; /* live processes that registry entries name */

static int registry_setup(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(env_names[i]);
        env_saved[i] = v ? strdup(v) : NULL;
        unsetenv(env_names[i]);
    }
    snprintf(reg_root, sizeof reg_root, "/tmp/shmrpc-ctl-registry-XXXXXX");
    if (!mkdtemp(reg_root)) return -1;
    setenv("XDG_RUNTIME_DIR", reg_root, 1);
    return 0;
}

static int registry_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        if (env_saved[i])
            setenv(env_names[i], env_saved[i], 1);
        else
            unsetenv(env_names[i]);
        free(env_saved[i]);
        env_saved[i] = NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (reg_kids[i] > 0) {
            kill(reg_kids[i], SIGKILL);
            waitpid(reg_kids[i], NULL, 0);
        }
        reg_kids[i] = 0;
    }
    if (reg_root[0]) sup_rm_tree(reg_root);
    return 0;
}

static int by_pid_line(const void *a, const void *b)
{
    return atoi(strstr(*(char *const *)a, "(pid ") + 5) -
           atoi(strstr(*(char *const *)b, "(pid ") + 5);
}

/* Field 22 of /proc/self/stat: this process's start, as the registry records it. */
static unsigned long long own_start(void)
{
    char buf[1024] = "";
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    buf[n > 0 ? n : 0] = '\0';
    char *p = strrchr(buf, ')');
    for (int field = 2; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static void reg_file(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/shmrpc/%s", reg_root, name);
    assert_int_equal(sup_write_file(path, text), 0);
}

static bool reg_has(const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/shmrpc/%s", reg_root, name);
    return access(path, F_OK) == 0;
}

/* Finding the supervisor: a registry folder others could write is refused (2); stale
 * entries (no pid, or a pid whose start differs: another process now) are removed and
 * other files left; one live entry is the one called (1 when it cannot be reached, with
 * the hint); two are listed by pid (2); empty SHMRPC_CONTROL and SHMRPC_INI count as
 * unset, and a SHMRPC_INI that does not exist is said (1). */
static void control_commands_find_the_supervisor(void **state)
{
    (void)state;
    char dir[96];
    snprintf(dir, sizeof dir, "%s/shmrpc", reg_root);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(chmod(dir, 0755), 0);
    run r;
    ctl(&r, NULL, "status", NULL);
    assert_int_equal(r.status, 2);
    char want[1024];
    snprintf(want, sizeof want,
             "shmrpcctl: status: cannot read the registry of supervisors %s: %s\n", dir,
             shmrpc_strerror(SHMRPC_ESYS(EPERM)));
    assert_string_equal(r.err, want);
    assert_int_equal(chmod(dir, 0700), 0);

    char text[512];
    reg_file("nobody.sup", "pid=0\ncontrol=shm://x\n");
    snprintf(text, sizeof text, "pid=%d\nstart=1\ncontrol=shm://x\n", (int)getpid());
    reg_file("reused.sup", text);
    reg_file("notes.txt", "pid=1\n");
    reg_file(".sup", "pid=1\n");
    snprintf(text, sizeof text,
             "pid=%d\nstart=%llu\nini=/srv/a/service.ini\ncontrol=shm://shmrpc-ctl-test-none\n"
             "page=none\n",
             (int)getpid(), own_start());
    reg_file("live.sup", text);
    ctl(&r, NULL, "stop", "svc", NULL);
    if (r.status != 1) fail_msg("stop: %d '%s'", r.status, r.err);
    assert_true(
        strncmp(r.err,
                "shmrpcctl: stop: cannot reach the supervisor at shm://shmrpc-ctl-test-none: ",
                76) == 0);
    assert_non_null(strstr(r.err, " (is shmrpc-service running?)\n"));
    assert_false(reg_has("nobody.sup"));
    assert_false(reg_has("reused.sup"));
    assert_true(reg_has("notes.txt"));
    assert_true(reg_has(".sup"));
    assert_true(reg_has("live.sup"));

    /* The parent (ctest, or a shell): alive, with no start recorded. */
    snprintf(text, sizeof text,
             "pid=%d\nini=/srv/b/service.ini\ncontrol=shm://shmrpc-ctl-test-other\n"
             "page=http://127.0.0.1:1/\n",
             (int)getppid());
    reg_file("second.sup", text);
    pid_t lo = getpid() < getppid() ? getpid() : getppid();
    char a_line[160], b_line[160];
    snprintf(a_line, sizeof a_line,
             "  --ini /srv/a/service.ini  (pid %d, page none, -a shm://shmrpc-ctl-test-none)\n",
             (int)getpid());
    snprintf(b_line, sizeof b_line,
             "  --ini /srv/b/service.ini  (pid %d, page http://127.0.0.1:1/, -a "
             "shm://shmrpc-ctl-test-other)\n",
             (int)getppid());
    snprintf(want, sizeof want,
             "shmrpcctl: logs: which supervisor? 2 of yours run; choose one with --ini:\n%s%s",
             lo == getpid() ? a_line : b_line, lo == getpid() ? b_line : a_line);
    setenv("SHMRPC_CONTROL", "", 1);
    setenv("SHMRPC_INI", "", 1);
    ctl(&r, NULL, "logs", "svc", NULL);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, want);

    /* Five, listed by pid (more than the list's first room for four). */
    static char lines[5][160];
    char *order[5];
    memcpy(lines[0], a_line, sizeof a_line);
    memcpy(lines[1], b_line, sizeof b_line);
    pid_t named[3] = {1, 0, 0};
    for (int i = 0; i < 2; i++) {
        reg_kids[i] = fork();
        assert_true(reg_kids[i] >= 0);
        if (reg_kids[i] == 0) {
            alarm(30);
            for (;;)
                pause();
        }
        named[1 + i] = reg_kids[i];
    }
    for (int i = 0; i < 3; i++) {
        char file[32];
        snprintf(file, sizeof file, "more%d.sup", i);
        snprintf(text, sizeof text,
                 "pid=%d\nini=/srv/c%d/service.ini\ncontrol=shm://shmrpc-ctl-test-c%d\npage=none\n",
                 (int)named[i], i, i);
        reg_file(file, text);
        snprintf(
            lines[2 + i], sizeof lines[2 + i],
            "  --ini /srv/c%d/service.ini  (pid %d, page none, -a shm://shmrpc-ctl-test-c%d)\n", i,
            (int)named[i], i);
    }
    for (int i = 0; i < 5; i++)
        order[i] = lines[i];
    qsort(order, 5, sizeof *order, by_pid_line);
    snprintf(
        want, sizeof want,
        "shmrpcctl: stop: which supervisor? 5 of yours run; choose one with --ini:\n%s%s%s%s%s",
        order[0], order[1], order[2], order[3], order[4]);
    ctl(&r, NULL, "stop", "svc", NULL);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, want);

    setenv("SHMRPC_INI", "/nonexistent-shmrpc-ctl-test/service.ini", 1);
    ctl(&r, NULL, "status", NULL);
    assert_int_equal(r.status, 1);
    snprintf(want, sizeof want, "shmrpcctl: /nonexistent-shmrpc-ctl-test/service.ini: %s\n",
             shmrpc_strerror(SHMRPC_ESYS(ENOENT)));
    assert_string_equal(r.err, want);
}

/* Options a control command does not take, and positions it does not have: 2, before
 * any supervisor is looked for, and one line that says what is wrong (an option) or the
 * usage (a count of arguments); --help: 0 and the usage on stdout. */
static void control_commands_refuse_misuse(void **state)
{
    (void)state;
    static const struct {
        const char *args[5];
        const char *says; /* all of stderr, or the start of the usage */
    } bad[] = {
        {{"scale", "--no-wait", "svc", "2"},
         "shmrpcctl: scale: option '--no-wait' does not go with this command (see 'shmrpcctl "
         "scale --help')\n"},
        {{"status", "--wait", "5"},
         "shmrpcctl: status: option '--wait' does not go with this command (see 'shmrpcctl "
         "status --help')\n"},
        {{"status", "-n", "5"},
         "shmrpcctl: status: option '-n' does not go with this command (see 'shmrpcctl status "
         "--help')\n"},
        {{"status", "--nope"},
         "shmrpcctl: status: unrecognized option '--nope' (see 'shmrpcctl status --help')\n"},
        {{"status", "-a"},
         "shmrpcctl: status: option '-a' requires an argument (see 'shmrpcctl status --help')\n"},
        {{"logs", "svc", "extra"}, "usage: shmrpcctl [-a ADDRESS | --ini FILE] logs SERVICE"},
        {{"restart", "svc", "--wait", "0"},
         "shmrpcctl: restart: --wait takes 1 to 3600 seconds (see 'shmrpcctl restart --help')\n"},
        {{"restart", "svc", "--wait", "3601"},
         "shmrpcctl: restart: --wait takes 1 to 3600 seconds (see 'shmrpcctl restart --help')\n"},
        {{"scale", "svc"}, "usage: shmrpcctl [-a ADDRESS | --ini FILE] scale SERVICE WORKERS"},
        {{"scale", "svc", "2", "3"}, "usage: shmrpcctl [-a ADDRESS | --ini FILE] scale"},
    };
    run r;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *const *a = bad[i].args;
        ctl(&r, NULL, a[0], a[1], a[2], a[3], a[4], NULL);
        bool usage = strncmp(bad[i].says, "usage:", 6) == 0;
        if (r.status != 2 || r.out[0] ||
            (usage ? strncmp(r.err, bad[i].says, strlen(bad[i].says)) != 0
                   : strcmp(r.err, bad[i].says) != 0))
            fail_msg("%s %s: %d '%s' '%s'", a[0], a[1], r.status, r.out, r.err);
    }
    static const char *const lines[] = {"0", "1001", "ten"};
    for (size_t i = 0; i < 3; i++) {
        ctl(&r, NULL, "logs", "svc", "-n", lines[i], NULL);
        assert_int_equal(r.status, 2);
        assert_string_equal(r.err, "shmrpcctl: logs: -n takes 1 to 1000 lines (see 'shmrpcctl "
                                   "logs --help')\n");
    }
    static const char *const workers[] = {"0", "1025", "two"};
    for (size_t i = 0; i < 3; i++) {
        ctl(&r, NULL, "scale", "svc", workers[i], NULL);
        assert_int_equal(r.status, 2);
        assert_string_equal(r.err, "shmrpcctl: scale: WORKERS is a number from 1 to 1024\n");
    }
    ctl(&r, NULL, "status", "--no-wait", NULL);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, "shmrpcctl: status: option '--no-wait' does not go with this "
                               "command (see 'shmrpcctl status --help')\n");
    /* Right usage, and no supervisor: none registered (2), or none at -a (1). */
    ctl(&r, NULL, "scale", "svc", "2", NULL);
    assert_int_equal(r.status, 2);
    assert_true(strncmp(r.err, "shmrpcctl: scale: which supervisor? None of yours",
                        strlen("shmrpcctl: scale: which supervisor? None of yours")) == 0);
    ctl(&r, NULL, "scale", "svc", "2", "-a", "shm://shmrpc-ctl-test-none", NULL);
    assert_int_equal(r.status, 1);
    assert_true(
        strncmp(
            r.err, "shmrpcctl: scale: cannot reach the supervisor at shm://shmrpc-ctl-test-none: ",
            strlen(
                "shmrpcctl: scale: cannot reach the supervisor at shm://shmrpc-ctl-test-none: ")) ==
        0);
    ctl(&r, NULL, "scale", "--help", NULL);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "usage: shmrpcctl [-a ADDRESS | --ini FILE] scale SERVICE WORKERS",
                        64) == 0);
    assert_string_equal(r.err, "");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codec_round_trip),
        cmocka_unit_test(codec_depth),
        cmocka_unit_test(call_every_method_shm),
        cmocka_unit_test(call_every_method_tcp),
        cmocka_unit_test(call_bad_input),
        cmocka_unit_test(call_with_trace),
        cmocka_unit_test(ls_shows_the_live_server),
        cmocka_unit_test(clean_removes_only_the_dead),
        cmocka_unit_test(ls_shows_queues),
        cmocka_unit_test(admin_removes_only_what_it_listed),
        cmocka_unit_test(ls_and_clean_maps),
        cmocka_unit_test(clean_half_made_map),
        cmocka_unit_test(ls_and_clean_what_it_did_not_make),
        cmocka_unit_test(ls_and_clean_half_made),
        cmocka_unit_test_teardown(ls_shows_lock_holders, let_go_of_left),
        cmocka_unit_test_teardown(ls_shows_broadcast_and_cut_queues, let_go_of_left),
        cmocka_unit_test(admin_remove_refuses_what_changed),
        cmocka_unit_test(ls_and_clean_private_dirs),
        cmocka_unit_test(other_user_may_not_remove),
        cmocka_unit_test(clean_takes_the_rendezvous),
        cmocka_unit_test(ls_and_clean_statistics),
        cmocka_unit_test_teardown(ls_and_clean_map_locks, let_go_of_left),
        cmocka_unit_test(ls_shows_a_damaged_map),
        cmocka_unit_test(ls_and_clean_elsewhere),
        cmocka_unit_test(kind_and_life_names),
        cmocka_unit_test(ls_judges_versions_and_tags),
        cmocka_unit_test(ls_judges_generations_of_odd_maps),
        cmocka_unit_test(ls_tells_the_live_server_from_another),
        cmocka_unit_test_setup_teardown(control_commands_find_the_supervisor, registry_setup,
                                        registry_teardown),
        cmocka_unit_test_setup_teardown(control_commands_refuse_misuse, registry_setup,
                                        registry_teardown),
        cmocka_unit_test(nothing_left_behind),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
