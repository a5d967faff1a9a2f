/* SPDX-License-Identifier: MIT */
/* shmrpcctl map with real processes: a child fills the typed maps of examples/cache/cache.svc
 * through the generated functions and shmrpcctl prints them as JSON; shmrpcctl puts JSON that
 * generated code reads, lists keys, removes, and prints counters; bytes and base64 go through
 * an untyped map; a missing map, a bad key and JSON of the wrong type are refused with a
 * message and their exit status. Every child is bounded; every map is removed in teardown. */
#define _GNU_SOURCE /* pipe2 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "sup_helpers.h"

#define RAW_MAP "cache.ctl_map_test_raw"
#define TWO_KEY_MAP "cache.ctl_map_test_two_keys"
#define BAD_TYPE_MAP "cache.ctl_map_test_bad_type"

typedef sup_run run;

/* shmrpcctl with the arguments (NULL-terminated) and stdin, 10 s at most. */
#define ctl(r, ...) sup_run_prog(r, SHMRPCCTL, __VA_ARGS__)

static void remove_maps(void)
{
    shmrpc_map_unlink_quiet(CACHE_MAP_ENTRIES);
    shmrpc_map_unlink_quiet(CACHE_MAP_COMPUTED);
    shmrpc_map_unlink_quiet(RAW_MAP);
    shmrpc_map_unlink_quiet(TWO_KEY_MAP);
    shmrpc_map_unlink_quiet(BAD_TYPE_MAP);
}

static int setup(void **state)
{
    (void)state;
    remove_maps();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    remove_maps();
    return 0;
}

#define N_WORDS 100

/* The child: puts N_WORDS entries and a count through the generated functions; 0 when all
 * went. */
static int filler(void)
{
    alarm(20);
    shmrpc_map *entries, *computed;
    if (Cache_entries_open(&entries, NULL) != 0 || Cache_computed_open(&computed, NULL) != 0)
        return 1;
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    for (int i = 0; i < N_WORDS; i++) {
        char word[32], upper[32];
        snprintf(word, sizeof word, "word%d", i);
        snprintf(upper, sizeof upper, "WORD%d", i);
        cache_Entry e = {shmrpc_str_c(upper), (uint32_t)strlen(word), (int32_t)getpid()};
        if (Cache_entries_put(entries, &buf, shmrpc_str_c(word), &e) != 0) return 2;
    }
    if (Cache_computed_put(computed, &buf, 42, N_WORDS) != 0) return 3;
    shmrpc_buf_destroy(&buf);
    shmrpc_map_close(entries);
    shmrpc_map_close(computed);
    return 0;
}

static void ctl_json_on_typed_maps(void **state)
{
    (void)state;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) _exit(filler());
    pid_t filler_pid = child; /* sup_wait_exit clears child */
    int st = sup_wait_exit(&child, 20000);
    if (st < 0) sup_kill_reap(&child);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);

    run r;
    ctl(&r, NULL, "map", "get", CACHE_MAP_ENTRIES, "word7", NULL);
    assert_int_equal(r.status, 0);
    char want[128];
    snprintf(want, sizeof want, "{\"upper\":\"WORD7\",\"length\":5,\"pid\":%d}\n", (int)filler_pid);
    assert_string_equal(r.out, want);
    /* A string key in its JSON quotes is the same key. */
    ctl(&r, NULL, "map", "get", CACHE_MAP_ENTRIES, "\"word7\"", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, want);
    ctl(&r, NULL, "map", "get", CACHE_MAP_COMPUTED, "42", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "100\n");

    /* JSON in, typed value out. */
    ctl(&r, NULL, "map", "put", CACHE_MAP_ENTRIES, "new word",
        "{\"upper\":\"NEW WORD\",\"length\":8,\"pid\":-1}", NULL);
    assert_int_equal(r.status, 0);
    ctl(&r, "{\"upper\":\"STDIN\",\"length\":5,\"pid\":0}", "map", "put", CACHE_MAP_ENTRIES,
        "stdin", "-", NULL);
    assert_int_equal(r.status, 0);
    shmrpc_map *entries;
    assert_int_equal(Cache_entries_open(&entries, NULL), 0);
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    shmrpc_arena *a = shmrpc_arena_new(1024);
    cache_Entry e;
    assert_int_equal(Cache_entries_get(entries, &buf, a, shmrpc_str_c("new word"), &e), 0);
    assert_int_equal(e.length, 8);
    assert_int_equal(e.pid, -1);
    assert_memory_equal(e.upper.ptr, "NEW WORD", 8);
    assert_int_equal(Cache_entries_get(entries, &buf, a, shmrpc_str_c("stdin"), &e), 0);
    assert_int_equal(e.length, 5);

    /* keys: one JSON key a line, every one. */
    ctl(&r, NULL, "map", "keys", CACHE_MAP_ENTRIES, NULL);
    assert_int_equal(r.status, 0);
    int lines = 0;
    for (const char *p = r.out; (p = strchr(p, '\n')); p++)
        lines++;
    assert_int_equal(lines, N_WORDS + 2);
    assert_non_null(strstr(r.out, "\"word99\"\n"));
    assert_non_null(strstr(r.out, "\"new word\"\n"));
    ctl(&r, NULL, "map", "keys", CACHE_MAP_COMPUTED, NULL);
    assert_string_equal(r.out, "42\n");

    /* del, then the key is gone for both. */
    ctl(&r, NULL, "map", "del", CACHE_MAP_ENTRIES, "word7", NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(Cache_entries_get(entries, &buf, a, shmrpc_str_c("word7"), &e), SHMRPC_ENOENT);
    ctl(&r, NULL, "map", "get", CACHE_MAP_ENTRIES, "word7", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "no such key"));
    ctl(&r, NULL, "map", "del", CACHE_MAP_ENTRIES, "word7", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "no such key"));

    /* stat: the type and the counts. */
    ctl(&r, NULL, "map", "stat", CACHE_MAP_ENTRIES, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, Cache_entries_type));
    assert_non_null(strstr(r.out, "keys        101\n"));
    ctl(&r, NULL, "map", "stat", "--json", CACHE_MAP_COMPUTED, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"type\":\"computed(i32 key)->u64 @msgpack\""));
    assert_non_null(strstr(r.out, "\"count\":1,"));

    /* Bad input: status 2, a message that names the place, nothing written. */
    ctl(&r, NULL, "map", "put", CACHE_MAP_ENTRIES, "w", "{\"upper\":1}", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "bad value: value.upper: expected a string"));
    ctl(&r, NULL, "map", "put", CACHE_MAP_ENTRIES, "w", "[1,", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "bad value"));
    ctl(&r, NULL, "map", "get", CACHE_MAP_COMPUTED, "forty-two", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "bad key: key"));
    ctl(&r, NULL, "map", "put", CACHE_MAP_COMPUTED, "1", "-3", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "bad value"));
    assert_int_equal(Cache_entries_get(entries, &buf, a, shmrpc_str_c("w"), &e), SHMRPC_ENOENT);
    shmrpc_map_info info;
    assert_int_equal(shmrpc_map_get_info(entries, &info), 0);
    assert_int_equal(info.count, N_WORDS + 1);

    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&buf);
    shmrpc_map_close(entries);
}

static void ctl_bytes_on_an_untyped_map(void **state)
{
    (void)state;
    shmrpc_map *m;
    assert_int_equal(shmrpc_map_open(&m, RAW_MAP, NULL), 0);
    assert_int_equal(shmrpc_map_put(m, "k\0ey", 4, "v\0\xff", 3), 0);
    run r;
    ctl(&r, NULL, "map", "get", "--base64", RAW_MAP, "awBleQ==", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "dgD/\n");
    ctl(&r, NULL, "map", "put", RAW_MAP, "text", "plain bytes", NULL);
    assert_int_equal(r.status, 0);
    ctl(&r, NULL, "map", "get", RAW_MAP, "text", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "plain bytes");
    ctl(&r, NULL, "map", "put", "--base64", RAW_MAP, "YjY0", "AAE=", NULL);
    assert_int_equal(r.status, 0);
    char v[8];
    size_t len;
    assert_int_equal(shmrpc_map_get(m, "b64", 3, v, sizeof v, &len), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(v, "\0\1", 2);
    ctl(&r, NULL, "map", "keys", "--base64", RAW_MAP, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "awBleQ==\n"));
    assert_non_null(strstr(r.out, "dGV4dA==\n"));
    assert_non_null(strstr(r.out, "YjY0\n"));
    ctl(&r, NULL, "map", "stat", RAW_MAP, NULL);
    assert_non_null(strstr(r.out, "(untyped)"));
    /* Refused: not base64, no padding, bits left over past the last byte (canonical
     * base64 only, as libsodium reads it), padding before the end. */
    static const char *const bad[] = {"not base64!", "AAE", "AAF=", "AA==AAAA"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctl(&r, NULL, "map", "put", "--base64", RAW_MAP, "aw==", bad[i], NULL); /* "k" */
        if (r.status != 2 || !strstr(r.err, "not base64"))
            fail_msg("'%s': status %d, %s", bad[i], r.status, r.err);
    }
    assert_int_equal(shmrpc_map_get(m, "k", 1, v, sizeof v, &len), SHMRPC_ENOENT);
    shmrpc_map_close(m);
}

static void ctl_refuses_what_is_not_there(void **state)
{
    (void)state;
    run r;
    ctl(&r, NULL, "map", "get", "cache.no_such_map", "k", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "no map 'cache.no_such_map'"));
    ctl(&r, NULL, "map", "keys", "bad/name", NULL);
    assert_int_equal(r.status, 1);
    ctl(&r, NULL, "map", "get", "cache.no_such_map", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "usage"));
    ctl(&r, NULL, "map", "frob", "x", NULL);
    assert_int_equal(r.status, 2);
    /* Nothing was created by asking. */
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    shmrpc_map *m = NULL;
    assert_int_equal(shmrpc_map_open(&m, "cache.no_such_map", &o), SHMRPC_ENOENT);
}

/* The usage: 0 and it on stdout when asked, 2 and it on stderr for a count of arguments
 * the subcommand does not take; 2 and one line for an option it does not take; nothing
 * opened. */
static void ctl_map_usage(void **state)
{
    (void)state;
    run r;
    static const char *const asks[][3] = {{"--help", NULL}, {"-h", NULL}, {"get", "-h", NULL}};
    for (size_t i = 0; i < sizeof asks / sizeof *asks; i++) {
        ctl(&r, NULL, "map", asks[i][0], asks[i][1], NULL);
        assert_int_equal(r.status, 0);
        assert_true(strncmp(r.out, "usage: shmrpcctl map stat [--json] NAME\n", 40) == 0);
        assert_string_equal(r.err, "");
    }
    static const char *const bad[][5] = {
        {NULL},
        {"get", "--json", RAW_MAP, "k", NULL},
        {"stat", "--bytes", RAW_MAP, NULL},
        {"stat", "--base64", RAW_MAP, NULL},
        {"stat", NULL},
        {"stat", RAW_MAP, "k", NULL},
        {"keys", RAW_MAP, "k", NULL},
        {"del", RAW_MAP, "k", "v", NULL},
        {"put", RAW_MAP, "k", "v", "w"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ctl(&r, NULL, "map", bad[i][0], bad[i][1], bad[i][2], bad[i][3], bad[i][4], NULL);
        char want[200]; /* for an option: bad[i][1] */
        bool option = bad[i][1] && bad[i][1][0] == '-';
        snprintf(want, sizeof want,
                 "shmrpcctl: map %s: option '%s' does not go with this command (see 'shmrpcctl "
                 "map %s --help')\n",
                 bad[i][0], option ? bad[i][1] : "", bad[i][0]);
        bool said = option ? strcmp(r.err, want) == 0
                           : strncmp(r.err, "usage: shmrpcctl map stat", 25) == 0;
        if (r.status != 2 || r.out[0] || !said)
            fail_msg("map %s %s: %d '%s' '%s'", bad[i][0] ? bad[i][0] : "",
                     bad[i][1] ? bad[i][1] : "", r.status, r.out, r.err);
    }
    ctl(&r, NULL, "map", "frob", RAW_MAP, NULL);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, "shmrpcctl: map: no such subcommand (see 'shmrpcctl map --help')\n");
    assert_false(sup_segment_named("shmrpc.map." RAW_MAP));
}

/* A map whose stored type is not a map's, or does not parse: each command says so with
 * status 1 (as bytes, it is served); a stored key or value that is not of the map's type:
 * status 1 and the codec's message; a string key with quotes, backslashes and control
 * characters, unquoted on the command line, is the key generated code reads; a value
 * larger than the first buffer comes out whole; a value from stdin when none is given. */
static void ctl_map_types_and_entries(void **state)
{
    (void)state;
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.type = "two(i32 a,i32 b)->u64 @msgpack";
    shmrpc_map *two, *bad;
    assert_int_equal(shmrpc_map_open(&two, TWO_KEY_MAP, &o), 0);
    o.type = "no signature at all";
    assert_int_equal(shmrpc_map_open(&bad, BAD_TYPE_MAP, &o), 0);
    run r;
    ctl(&r, NULL, "map", "keys", TWO_KEY_MAP, NULL);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err,
                        "shmrpcctl: map keys " TWO_KEY_MAP
                        ": its type is not a map's (one key): two(i32 a,i32 b)->u64 @msgpack\n");
    ctl(&r, NULL, "map", "get", BAD_TYPE_MAP, "k", NULL);
    assert_int_equal(r.status, 1);
    assert_true(strncmp(r.err, "shmrpcctl: map get " BAD_TYPE_MAP ": its type does not parse: ",
                        strlen("shmrpcctl: map get " BAD_TYPE_MAP ": its type does not parse: ")) ==
                0);
    assert_string_equal(r.out, "");
    assert_ptr_equal(strchr(r.err, '\n'), r.err + strlen(r.err) - 1); /* that alone */
    /* As bytes, the type is not looked at. */
    ctl(&r, NULL, "map", "put", "--bytes", BAD_TYPE_MAP, "k", "v", NULL);
    assert_int_equal(r.status, 0);
    ctl(&r, NULL, "map", "get", "--bytes", BAD_TYPE_MAP, "k", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "v");
    shmrpc_map_close(two);
    shmrpc_map_close(bad);

    /* cache.entries: string keys -> Entry. */
    shmrpc_map *entries;
    assert_int_equal(Cache_entries_open(&entries, NULL), 0);
    const char odd[] = "say \"hi\" \\ \t";
    ctl(&r, NULL, "map", "put", CACHE_MAP_ENTRIES, odd, "{\"upper\":\"X\",\"length\":1,\"pid\":2}",
        NULL);
    assert_int_equal(r.status, 0);
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    shmrpc_arena *a = shmrpc_arena_new(1024);
    cache_Entry e;
    assert_int_equal(Cache_entries_get(entries, &buf, a, shmrpc_str_c(odd), &e), 0);
    assert_int_equal(e.pid, 2);
    ctl(&r, NULL, "map", "keys", CACHE_MAP_ENTRIES, NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "\"say \\\"hi\\\" \\\\ \\t\"\n");
    /* A value from stdin when the command gives none. */
    ctl(&r, "{\"upper\":\"IN\",\"length\":2,\"pid\":3}", "map", "put", CACHE_MAP_ENTRIES, "in",
        NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(Cache_entries_get(entries, &buf, a, shmrpc_str_c("in"), &e), 0);
    assert_int_equal(e.pid, 3);
    assert_memory_equal(e.upper.ptr, "IN", 2);
    /* Bytes that are no Entry, put beside the typed ones. */
    /* 0xa5 is a msgpack string of 5 bytes, and 4 follow; 0xc1 is no msgpack at all. */
    assert_int_equal(shmrpc_map_put(entries, "\xa5junk", 5, "\xc1", 1), 0);
    assert_int_equal(shmrpc_map_put(entries, "\xa3key", 4, "\xc1", 1), 0);
    ctl(&r, NULL, "map", "get", CACHE_MAP_ENTRIES, "key", NULL);
    assert_int_equal(r.status, 1);
    assert_true(strncmp(r.err,
                        "shmrpcctl: map get " CACHE_MAP_ENTRIES
                        ": a stored value is not of the map's type: ",
                        strlen("shmrpcctl: map get " CACHE_MAP_ENTRIES
                               ": a stored value is not of the map's type: ")) == 0);
    ctl(&r, NULL, "map", "keys", CACHE_MAP_ENTRIES, NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "shmrpcctl: map keys " CACHE_MAP_ENTRIES
                                  ": a stored key is not of the map's type: "));
    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&buf);
    shmrpc_map_close(entries);

    /* A value of 10000 bytes, more than the first buffer of 4096. */
    static char big[10001];
    for (size_t i = 0; i < 10000; i++)
        big[i] = (char)('a' + i % 26);
    shmrpc_map *m;
    assert_int_equal(shmrpc_map_open(&m, RAW_MAP, NULL), 0);
    assert_int_equal(shmrpc_map_put(m, "big", 3, big, 10000), 0);
    ctl(&r, NULL, "map", "get", "--bytes", RAW_MAP, "big", NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(strlen(r.out), 10000);
    assert_memory_equal(r.out, big, 10000);
    shmrpc_map_close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ctl_json_on_typed_maps, setup, teardown),
        cmocka_unit_test_setup_teardown(ctl_bytes_on_an_untyped_map, setup, teardown),
        cmocka_unit_test_setup_teardown(ctl_refuses_what_is_not_there, setup, teardown),
        cmocka_unit_test_setup_teardown(ctl_map_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(ctl_map_types_and_entries, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
