/* SPDX-License-Identifier: MIT */
/* examples/cache end to end under shmrpc-service: its service.ini runs cache-server with
 * two workers that share the typed map cache.entries. Two client processes look the same
 * words up at once: every word's entry is computed once, by whichever worker came first,
 * and both clients get that entry; cache-reader then reads every entry from the map without
 * calling the service, and a SIGTERM stops the server, which removes its maps. Every wait
 * is bounded; teardown kills the supervisor and the service's process group and removes the
 * maps whatever happened. */
#define _GNU_SOURCE /* mkdtemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "sup_helpers.h"

#define N_WORDS 30

typedef struct fixture {
    char dir[64];
    pid_t sup, client;
    sup_groups groups;
} fixture;

static void remove_maps(void)
{
    sup_remove_segments("shmrpc.map.cache.");
    sup_remove_segments("shmrpc.mapgen.cache.");
    sup_remove_segments("shmrpc.lock.map.cache.");
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/shmrpc-cache-test-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    f->groups.cap = 16;
    remove_maps(); /* a run killed before its teardown */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sup_kill_reap(&f->client);
    sup_end(&f->sup);
    sup_groups_kill(&f->groups);
    remove_maps();
    sup_rm_tree(f->dir);
    free(f);
    return 0;
}

/* Remembers the service's process group (its leader's pid) from status.json. */
static void note_group(fixture *f)
{
    char p[160];
    snprintf(p, sizeof p, "%s/logs/status.json", f->dir);
    json_t *st = json_load_file(p, 0, NULL);
    json_int_t pid = json_integer_value(
        json_object_get(json_object_get(json_object_get(st, "services"), "cache"), "pid"));
    if (pid > 0) sup_groups_add(&f->groups, (pid_t)pid);
    json_decref(st);
}

/* A client of shm://cache, waiting up to 30 s for the service to answer. */
static shmrpc_client *connect_cache(void)
{
    shmrpc_client *c = NULL;
    if (shmrpc_client_new(&c, &Cache_service_info, NULL) != 0) return NULL;
    int64_t end = sup_now_ms() + 30000;
    while (shmrpc_client_connect(c, "shm://" CACHE_NAME) != 0) {
        if (sup_now_ms() >= end) {
            shmrpc_client_free(c);
            return NULL;
        }
        sup_nap_ms(50);
    }
    return c;
}

/* Looks every word up, in order or backwards, into pids[i] (the worker that computed it);
 * 0 when every call answered. */
static int look_all(bool backwards, int32_t *pids)
{
    shmrpc_client *c = connect_cache();
    if (!c) return 1;
    int bad = 0;
    for (int k = 0; k < N_WORDS; k++) {
        int i = backwards ? N_WORDS - 1 - k : k;
        char word[32], upper[32];
        snprintf(word, sizeof word, "word%d", i);
        snprintf(upper, sizeof upper, "WORD%d", i);
        cache_Entry e;
        int rc = cache_lookup(c, shmrpc_str_c(word), &e);
        if (rc != 0 || e.upper.len != strlen(upper) || memcmp(e.upper.ptr, upper, e.upper.len)) {
            fprintf(stderr, "# lookup %s: %s: %s\n", word, shmrpc_strerror(rc), shmrpc_errmsg());
            bad = 1;
            continue;
        }
        pids[i] = e.pid;
    }
    shmrpc_client_free(c);
    return bad;
}

/* Runs cache-reader ARGS with its output in DIR/reader.out; its exit status. */
static int run_reader(fixture *f, const char *arg)
{
    char out[128], bin[4096];
    snprintf(out, sizeof out, "%s/reader.out", f->dir);
    snprintf(bin, sizeof bin, "%s/cache-reader", CACHE_BIN_DIR);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) _exit(127);
        dup2(fd, 1);
        alarm(10);
        execl(bin, bin, arg, (char *)NULL);
        _exit(127);
    }
    int st = sup_wait_exit(&pid, 15000);
    if (st < 0) sup_kill_reap(&pid);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void cache_end_to_end(void **state)
{
    fixture *f = *state;
    const char *ini = sup_slurp(CACHE_DIR, "service.ini");
    assert_true(strlen(ini) > 0);
    char path[4096];
    snprintf(path, sizeof path, "%s:%s", CACHE_BIN_DIR, getenv("PATH") ? getenv("PATH") : "");
    const char *env[] = {"PATH", path, NULL};
    f->sup = sup_start_in(f->dir, ini, true, 120, env);

    /* Two clients at once: the child forwards, this process backwards. */
    int32_t *theirs = mmap(NULL, sizeof(int32_t) * N_WORDS, PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(theirs != MAP_FAILED);
    f->client = fork();
    assert_true(f->client >= 0);
    if (f->client == 0) {
        alarm(60);
        _exit(look_all(false, theirs));
    }
    int32_t mine[N_WORDS] = {0}, again[N_WORDS] = {0};
    int rc = look_all(true, mine);
    note_group(f);
    if (rc != 0) {
        printf("supervisor.err:\n%s", sup_slurp(f->dir, "supervisor.err"));
        printf("cache.log:\n%s", sup_slurp(f->dir, "logs/cache.log"));
        fail_msg("the service did not answer every lookup within 30 s");
    }
    int st = sup_wait_exit(&f->client, 60000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* One entry per word, whoever computed it, for both clients and for a second round. */
    assert_int_equal(look_all(false, again), 0);
    for (int i = 0; i < N_WORDS; i++) {
        assert_true(mine[i] > 0);
        assert_int_equal(theirs[i], mine[i]);
        assert_int_equal(again[i], mine[i]);
    }
    munmap(theirs, sizeof(int32_t) * N_WORDS);

    /* The reader sees the map without calling the service. */
    assert_int_equal(run_reader(f, "word7"), 0);
    char want[128];
    snprintf(want, sizeof want, "word7 -> WORD7 (length 5, computed by pid %d)\n", (int)mine[7]);
    assert_string_equal(sup_slurp(f->dir, "reader.out"), want);
    assert_int_equal(run_reader(f, NULL), 0);
    const char *all = sup_slurp(f->dir, "reader.out");
    printf("cache-reader:\n%s", all);
    for (int i = 0; i < N_WORDS; i++) {
        snprintf(want, sizeof want, "word%d -> WORD%d (", i, i);
        assert_non_null(strstr(all, want));
    }
    assert_non_null(strstr(all, "30 entries computed by "));
    assert_true(sup_segment_left("shmrpc.map.cache.entries"));

    assert_true(f->sup > 0);
    int status = sup_stop(&f->sup, 30000);
    assert_true(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    sup_groups_assert_gone(&f->groups);
    assert_false(sup_segment_left("map.cache.")); /* the server removed its maps */
    assert_false(sup_segment_left("mapgen.cache."));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(cache_end_to_end, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
