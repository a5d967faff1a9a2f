/* SPDX-License-Identifier: MIT */
/* The shmrpc_json API: round trips, UTF-8 and escapes, base64, ranges, duplicate keys,
 * NaN, integer map keys, member walks, and the bound on nesting checked before parsing. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

typedef struct fixture {
    shmrpc_arena *arena;
    shmrpc_buf out;
    shmrpc_json_reader r;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->arena = shmrpc_arena_new(0);
    shmrpc_buf_init(&f->out);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    shmrpc_json_release(&f->r);
    shmrpc_arena_free(f->arena);
    shmrpc_buf_destroy(&f->out);
    free(f);
    return 0;
}

/* Dumps v into f->out and returns it as a NUL-terminated string. It frees v (so does
 * shmrpc_json_dump, also when it fails). */
static const char *dump(fixture *f, shmrpc_json *v)
{
    shmrpc_buf_clear(&f->out);
    assert_int_equal(shmrpc_json_dump(v, &f->out), 0);
    assert_int_equal(shmrpc_buf_append(&f->out, "", 1), 0);
    return (const char *)f->out.data;
}

static int parse(fixture *f, const char *text)
{
    shmrpc_json_release(&f->r);
    return shmrpc_json_parse(&f->r, f->arena, text, strlen(text));
}

/* n '[' then n ']' (malloc'd). */
static char *brackets(size_t n)
{
    char *t = malloc(2 * n + 1);
    assert_non_null(t);
    memset(t, '[', n);
    memset(t + n, ']', n);
    t[2 * n] = '\0';
    return t;
}

static void *parse_deep_on_small_stack(void *arg)
{
    (void)arg;
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_json_reader r;
    static const size_t depths[] = {SHMRPC_JSON_MAX_DEPTH, 300, 2000, 100000};
    intptr_t bad = 0;
    for (size_t k = 0; k < sizeof depths / sizeof depths[0]; k++) {
        char *t = brackets(depths[k]);
        int rc = shmrpc_json_parse(&r, a, t, 2 * depths[k]);
        shmrpc_json_release(&r);
        free(t);
        if (rc != (depths[k] <= SHMRPC_JSON_MAX_DEPTH ? 0 : SHMRPC_EINVAL)) bad = 1;
    }
    shmrpc_arena_free(a);
    return (void *)bad;
}

/* The nesting bound: checked before jansson parses (which recurses once per level), so
 * a thread with civetweb's 100 KiB stack survives any depth (it overflowed at 300). */
static void depth_bound(void **state)
{
    fixture *f = *state;
    char *t = brackets(SHMRPC_JSON_MAX_DEPTH);
    assert_int_equal(parse(f, t), 0);
    free(t);
    t = brackets(SHMRPC_JSON_MAX_DEPTH + 1);
    assert_int_equal(parse(f, t), SHMRPC_EINVAL);
    assert_string_equal(f->r.why, "nested too deeply");
    assert_non_null(strstr(f->r.detail, "more than 128 deep"));
    free(t);
    /* Objects count as arrays do. */
    assert_int_equal(shmrpc_json_check_depth("{\"a\":[{\"b\":[]}]}", 17, 4), 0);
    assert_int_equal(shmrpc_json_check_depth("{\"a\":[{\"b\":[]}]}", 17, 3), SHMRPC_EINVAL);
    /* Brackets inside strings are text, escaped quotes and backslashes included. */
    static const char in_str[] = "[\"[[[[\\\"[[[[\",\"\\\\\",[]]";
    assert_int_equal(shmrpc_json_check_depth(in_str, strlen(in_str), 2), 0);
    assert_int_equal(shmrpc_json_check_depth(in_str, strlen(in_str), 1), SHMRPC_EINVAL);
    /* A string whose closing quote is escaped goes on: what follows is still in it. */
    static const char open_str[] = "[\"\\\"[[[";
    assert_int_equal(shmrpc_json_check_depth(open_str, strlen(open_str), 1), 0);
    /* Closers do not buy room for later openers beyond the top. */
    assert_int_equal(shmrpc_json_check_depth("]]]][[[", 7, 2), SHMRPC_EINVAL);
    /* Only n bytes are read. */
    assert_int_equal(shmrpc_json_check_depth("[[[[", 2, 2), 0);
    assert_int_equal(shmrpc_json_check_depth(NULL, 0, 0), 0);

    pthread_attr_t attr;
    pthread_t th;
    void *bad = (void *)1;
    assert_int_equal(pthread_attr_init(&attr), 0);
    assert_int_equal(pthread_attr_setstacksize(&attr, 100 * 1024), 0);
    assert_int_equal(pthread_create(&th, &attr, parse_deep_on_small_stack, NULL), 0);
    assert_int_equal(pthread_join(th, &bad), 0);
    pthread_attr_destroy(&attr);
    assert_null(bad);
}

static void round_trip(void **state)
{
    fixture *f = *state;
    shmrpc_json *o = shmrpc_json_object();
    static const char uni[] = "h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80";
    assert_int_equal(shmrpc_json_set(o, "s", shmrpc_json_string(SHMRPC_STR(uni))), 0);
    assert_int_equal(shmrpc_json_set(o, "i", shmrpc_json_int(INT64_MIN)), 0);
    assert_int_equal(shmrpc_json_set(o, "u", shmrpc_json_uint(INT64_MAX)), 0);
    assert_int_equal(shmrpc_json_set(o, "r", shmrpc_json_real(0.1)), 0);
    assert_int_equal(shmrpc_json_set(o, "b", shmrpc_json_bool(true)), 0);
    assert_int_equal(shmrpc_json_set(o, "n", shmrpc_json_null()), 0);
    shmrpc_json *a = shmrpc_json_array();
    assert_int_equal(shmrpc_json_append(a, shmrpc_json_int(1)), 0);
    assert_int_equal(shmrpc_json_append(a, shmrpc_json_string(SHMRPC_STR("two"))), 0);
    assert_int_equal(shmrpc_json_set(o, "a", a), 0);
    assert_int_equal(shmrpc_json_set(o, "bytes", shmrpc_json_base64(shmrpc_bytes_of("\0\xff", 2))),
                     0);
    /* jansson cannot read a key with a NUL back, so none is written. */
    assert_int_equal(shmrpc_json_setn(o, (shmrpc_str){"k\0ey", 4}, shmrpc_json_int(1)),
                     SHMRPC_EINVAL);
    assert_int_equal(
        shmrpc_json_setn(o, (shmrpc_str){"k\xc3\xa9y", 4}, shmrpc_json_string(SHMRPC_STR("a\0b"))),
        0);
    const char *text = dump(f, o);
    assert_null(strstr(text, ", ")); /* compact */
    assert_null(strstr(text, "\": "));

    if (parse(f, text)) fail_msg("%s: %s", text, f->r.detail);
    const shmrpc_json *root = f->r.root;
    shmrpc_str s;
    int64_t i;
    uint64_t u;
    double d;
    bool b;
    size_t n;
    assert_int_equal(shmrpc_json_read_str(&f->r, shmrpc_json_get(root, "s"), &s), 0);
    assert_int_equal(s.len, strlen(uni));
    assert_memory_equal(s.ptr, uni, s.len);
    assert_int_equal(s.ptr[s.len], '\0');
    assert_int_equal(
        shmrpc_json_read_int(&f->r, shmrpc_json_get(root, "i"), INT64_MIN, INT64_MAX, &i), 0);
    assert_true(i == INT64_MIN);
    assert_int_equal(shmrpc_json_read_uint(&f->r, shmrpc_json_get(root, "u"), UINT64_MAX, &u), 0);
    assert_true(u == INT64_MAX);
    assert_int_equal(shmrpc_json_read_f64(&f->r, shmrpc_json_get(root, "r"), &d), 0);
    assert_true(d == 0.1);
    assert_int_equal(shmrpc_json_read_bool(&f->r, shmrpc_json_get(root, "b"), &b), 0);
    assert_true(b);
    assert_true(shmrpc_json_is_null(shmrpc_json_get(root, "n")));
    assert_true(shmrpc_json_is_null(shmrpc_json_get(root, "absent")));
    assert_false(shmrpc_json_is_null(shmrpc_json_get(root, "b")));
    const shmrpc_json *arr = shmrpc_json_get(root, "a");
    assert_int_equal(shmrpc_json_read_array(&f->r, arr, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(shmrpc_json_read_int(&f->r, shmrpc_json_at(arr, 0), 0, 10, &i), 0);
    assert_int_equal(i, 1);
    assert_null(shmrpc_json_at(arr, 2));
    shmrpc_bytes by;
    assert_int_equal(shmrpc_json_read_base64(&f->r, shmrpc_json_get(root, "bytes"), &by), 0);
    assert_int_equal(by.len, 2);
    assert_memory_equal(by.ptr, "\0\xff", 2);
    /* Keys and strings with NUL in them survive (lengths, not terminators). */
    size_t members;
    assert_int_equal(shmrpc_json_read_object(&f->r, root, &members), 0);
    assert_int_equal(members, 9);
    bool found = false;
    for (size_t k = 0; k < members; k++) {
        shmrpc_str key;
        const shmrpc_json *val;
        assert_int_equal(shmrpc_json_member(&f->r, root, k, &key, &val), 0);
        if (key.len == 4 && memcmp(key.ptr, "k\xc3\xa9y", 4) == 0) {
            assert_int_equal(shmrpc_json_read_str(&f->r, val, &s), 0);
            assert_int_equal(s.len, 3);
            assert_memory_equal(s.ptr, "a\0b", 3);
            found = true;
        }
    }
    assert_true(found);
}

static void scalars_dump(void **state)
{
    fixture *f = *state;
    assert_string_equal(dump(f, shmrpc_json_string(SHMRPC_STR("x\"\\\n"))), "\"x\\\"\\\\\\n\"");
    assert_string_equal(dump(f, shmrpc_json_int(-3)), "-3");
    assert_string_equal(dump(f, shmrpc_json_null()), "null");
    assert_string_equal(dump(f, shmrpc_json_bool(false)), "false");
    assert_string_equal(dump(f, shmrpc_json_real(2.5)), "2.5");
    /* Appends: dumping twice without a clear concatenates. */
    shmrpc_buf_clear(&f->out);
    assert_int_equal(shmrpc_json_dump(shmrpc_json_int(1), &f->out), 0);
    assert_int_equal(shmrpc_json_dump(shmrpc_json_int(2), &f->out), 0);
    assert_int_equal(f->out.len, 2);
    /* A dump beyond the buffer's maximum fails with its sticky error. */
    shmrpc_buf small;
    shmrpc_buf_init(&small);
    small.max = 4;
    assert_int_equal(shmrpc_json_dump(shmrpc_json_string(SHMRPC_STR("too long")), &small),
                     SHMRPC_ETOOBIG);
    shmrpc_buf_destroy(&small);
    assert_int_equal(shmrpc_json_dump(NULL, &f->out), SHMRPC_EINVAL);
}

static void unicode_escapes(void **state)
{
    fixture *f = *state;
    shmrpc_str s;
    assert_int_equal(parse(f, "\"\\u00e9\\u2603\\ud83d\\ude00\\u0000\\/\""), 0);
    assert_int_equal(shmrpc_json_read_str(&f->r, f->r.root, &s), 0);
    assert_int_equal(s.len, 2 + 3 + 4 + 1 + 1);
    assert_memory_equal(s.ptr, "\xc3\xa9\xe2\x98\x83\xf0\x9f\x98\x80\0/", s.len);
    /* A lone surrogate is not a character. */
    assert_int_equal(parse(f, "\"\\ud800\""), SHMRPC_EINVAL);
    assert_int_equal(parse(f, "\"\\udc00x\""), SHMRPC_EINVAL);
}

static void invalid_utf8_rejected(void **state)
{
    fixture *f = *state;
    static const char *const bad[] = {
        "\"\xff\"",             /* never valid */
        "\"\xc3\"",             /* truncated sequence */
        "\"\xc0\xaf\"",         /* overlong '/' */
        "\"\xed\xa0\x80\"",     /* an encoded surrogate */
        "\"\xf4\x90\x80\x80\"", /* beyond U+10FFFF */
        "{\"\xfe\":1}",         /* in a key */
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        assert_int_equal(parse(f, bad[k]), SHMRPC_EINVAL);
        assert_string_equal(f->r.why, "malformed JSON");
        assert_true(strlen(f->r.detail) > 0);
        assert_null(f->r.root);
    }
    assert_null(shmrpc_json_string(SHMRPC_STR("\xff")));
    assert_null(shmrpc_json_string(SHMRPC_STR("\xed\xa0\x80")));
    shmrpc_json *o = shmrpc_json_object();
    assert_int_equal(shmrpc_json_set(o, "\xff", shmrpc_json_int(1)), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_set(o, "ok", NULL), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_set(NULL, "ok", shmrpc_json_int(1)), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_append(o, shmrpc_json_int(1)), SHMRPC_EINVAL); /* not an array */
    shmrpc_json *arr = shmrpc_json_array();
    assert_int_equal(shmrpc_json_append(arr, NULL), SHMRPC_EINVAL);
    shmrpc_json_free(arr);
    assert_string_equal(dump(f, o), "{}");
}

static void malformed_documents(void **state)
{
    fixture *f = *state;
    static const char *const bad[] = {
        "",          "{",         "{\"a\":1,\"a\":2}",
        "NaN",       "[NaN]",     "Infinity",
        "-Inf",      "{} x",      "[1,]",
        "{'a':1}",   "1e400",     "18446744073709551615",
        "[1 2]",     "\"\\x41\"", "tru",
        "{\"a\" 1}", "\"\t\"",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        if (parse(f, bad[k]) != SHMRPC_EINVAL) fail_msg("accepted '%s'", bad[k]);
        assert_string_equal(f->r.why, "malformed JSON");
    }
    assert_int_equal(parse(f, "{\"a\":1,\"a\":2}"), SHMRPC_EINVAL);
    assert_non_null(strstr(f->r.detail, "duplicate"));
    /* Deep nesting is refused, not followed down the stack. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    assert_int_equal(parse(f, deep), SHMRPC_EINVAL);
    free(deep);
    /* The length is honoured: bytes past n are not read. */
    shmrpc_json_release(&f->r);
    assert_int_equal(shmrpc_json_parse(&f->r, f->arena, "12garbage", 2), 0);
    int64_t i;
    assert_int_equal(shmrpc_json_read_int(&f->r, f->r.root, 0, 100, &i), 0);
    assert_int_equal(i, 12);
    /* Scalars at the top level are documents too (JSON_DECODE_ANY). */
    assert_int_equal(parse(f, "\"text\""), 0);
    assert_int_equal(parse(f, "  null "), 0);
    assert_true(shmrpc_json_is_null(f->r.root));
}

static void nan_and_big_numbers(void **state)
{
    (void)state;
    assert_null(shmrpc_json_real(NAN));
    assert_null(shmrpc_json_real(INFINITY));
    assert_null(shmrpc_json_real(-INFINITY));
    assert_null(shmrpc_json_uint((uint64_t)INT64_MAX + 1));
    assert_null(shmrpc_json_uint(UINT64_MAX));
    shmrpc_json *v = shmrpc_json_uint(INT64_MAX);
    assert_non_null(v);
    shmrpc_json_free(v);
    shmrpc_json_free(NULL);
}

typedef struct want_fail {
    const char *doc;
    int kind; /* 0 int i8, 1 uint u16, 2 bool, 3 f64, 4 str, 5 array, 6 object, 7 base64 */
    const char *why;
} want_fail;

static void kinds_and_ranges(void **state)
{
    fixture *f = *state;
    static const want_fail cases[] = {
        {"128", 0, "integer out of range for i8"},    {"-129", 0, "integer out of range for i8"},
        {"1.0", 0, "expected integer, got float"},    {"\"1\"", 0, "expected integer, got string"},
        {"true", 0, "expected integer, got boolean"}, {"-1", 1, "integer out of range for u16"},
        {"65536", 1, "integer out of range for u16"}, {"null", 1, "expected integer, got null"},
        {"1", 2, "expected boolean, got integer"},    {"\"x\"", 3, "expected number, got string"},
        {"[]", 4, "expected string, got array"},      {"{}", 5, "expected array, got object"},
        {"[]", 6, "expected object, got array"},      {"1", 7, "expected string, got integer"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        assert_int_equal(parse(f, cases[k].doc), 0);
        const shmrpc_json *v = f->r.root;
        int64_t i;
        uint64_t u;
        bool b;
        double d;
        shmrpc_str s;
        size_t n;
        shmrpc_bytes by;
        int rc = 0;
        switch (cases[k].kind) {
        case 0:
            rc = shmrpc_json_read_int(&f->r, v, INT8_MIN, INT8_MAX, &i);
            break;
        case 1:
            rc = shmrpc_json_read_uint(&f->r, v, UINT16_MAX, &u);
            break;
        case 2:
            rc = shmrpc_json_read_bool(&f->r, v, &b);
            break;
        case 3:
            rc = shmrpc_json_read_f64(&f->r, v, &d);
            break;
        case 4:
            rc = shmrpc_json_read_str(&f->r, v, &s);
            break;
        case 5:
            rc = shmrpc_json_read_array(&f->r, v, &n);
            break;
        case 6:
            rc = shmrpc_json_read_object(&f->r, v, &n);
            break;
        case 7:
            rc = shmrpc_json_read_base64(&f->r, v, &by);
            break;
        }
        assert_int_equal(rc, SHMRPC_EINVAL);
        if (strcmp(f->r.why, cases[k].why) != 0)
            fail_msg("'%s': why '%s', expected '%s'", cases[k].doc, f->r.why, cases[k].why);
    }
    /* Edges that fit, and an int read as f64. */
    int64_t i;
    assert_int_equal(parse(f, "[-128,127,7]"), 0);
    assert_int_equal(
        shmrpc_json_read_int(&f->r, shmrpc_json_at(f->r.root, 0), INT8_MIN, INT8_MAX, &i), 0);
    assert_int_equal(i, -128);
    assert_int_equal(
        shmrpc_json_read_int(&f->r, shmrpc_json_at(f->r.root, 1), INT8_MIN, INT8_MAX, &i), 0);
    double d;
    assert_int_equal(shmrpc_json_read_f64(&f->r, shmrpc_json_at(f->r.root, 2), &d), 0);
    assert_true(d == 7.0);
    /* An absent value says so. */
    assert_int_equal(shmrpc_json_read_int(&f->r, shmrpc_json_get(f->r.root, "x"), 0, 1, &i),
                     SHMRPC_EINVAL);
    assert_string_equal(f->r.why, "missing");
    /* fail_at keeps the innermost field. */
    shmrpc_json_fail_at(&f->r, SHMRPC_EINVAL, "Point.x");
    shmrpc_json_fail_at(&f->r, SHMRPC_EINVAL, "points");
    assert_string_equal(f->r.field, "Point.x");
}

/* A value that is absent (a member not there: NULL) is "missing" to every reader, and
 * null and false are named as what they are. */
static void absent_and_null(void **state)
{
    fixture *f = *state;
    const shmrpc_json *none = NULL;
    int64_t i;
    uint64_t u;
    bool b;
    double d;
    shmrpc_str s;
    size_t n;
    shmrpc_bytes by;
    const shmrpc_json *val;
    for (int k = 0; k < 9; k++) {
        f->r.why = NULL;
        int rc = k == 0   ? shmrpc_json_read_bool(&f->r, none, &b)
                 : k == 1 ? shmrpc_json_read_int(&f->r, none, 0, 1, &i)
                 : k == 2 ? shmrpc_json_read_uint(&f->r, none, 1, &u)
                 : k == 3 ? shmrpc_json_read_f64(&f->r, none, &d)
                 : k == 4 ? shmrpc_json_read_str(&f->r, none, &s)
                 : k == 5 ? shmrpc_json_read_base64(&f->r, none, &by)
                 : k == 6 ? shmrpc_json_read_array(&f->r, none, &n)
                 : k == 7 ? shmrpc_json_read_object(&f->r, none, &n)
                          : shmrpc_json_member(&f->r, none, 0, &s, &val);
        assert_int_equal(rc, SHMRPC_EINVAL);
        if (strcmp(f->r.why, "missing") != 0) fail_msg("reader %d: %s", k, f->r.why);
    }
    static const struct {
        const char *doc;
        int kind;
        const char *why;
    } named[] = {
        {"null", 0, "expected boolean, got null"},     {"null", 1, "expected number, got null"},
        {"null", 2, "expected string, got null"},      {"null", 3, "expected string, got null"},
        {"null", 4, "expected array, got null"},       {"null", 5, "expected object, got null"},
        {"false", 6, "expected integer, got boolean"}, {"1.5", 7, "expected object, got float"},
    };
    for (size_t k = 0; k < sizeof named / sizeof *named; k++) {
        assert_int_equal(parse(f, named[k].doc), 0);
        const shmrpc_json *v = f->r.root;
        int rc = 0;
        switch (named[k].kind) {
        case 0:
            rc = shmrpc_json_read_bool(&f->r, v, &b);
            break;
        case 1:
            rc = shmrpc_json_read_f64(&f->r, v, &d);
            break;
        case 2:
            rc = shmrpc_json_read_str(&f->r, v, &s);
            break;
        case 3:
            rc = shmrpc_json_read_base64(&f->r, v, &by);
            break;
        case 4:
            rc = shmrpc_json_read_array(&f->r, v, &n);
            break;
        case 5:
            rc = shmrpc_json_read_object(&f->r, v, &n);
            break;
        case 6:
            rc = shmrpc_json_read_uint(&f->r, v, 1, &u);
            break;
        case 7:
            rc = shmrpc_json_member(&f->r, v, 0, &s, &val);
            break;
        }
        assert_int_equal(rc, SHMRPC_EINVAL);
        if (strcmp(f->r.why, named[k].why) != 0)
            fail_msg("'%s' (%d): why '%s', expected '%s'", named[k].doc, named[k].kind, f->r.why,
                     named[k].why);
    }
    /* Looking up in what is not an object, or with no key; null and absent are both null. */
    assert_int_equal(parse(f, "[1]"), 0);
    assert_null(shmrpc_json_get(f->r.root, "x"));
    assert_null(shmrpc_json_get(NULL, "x"));
    assert_int_equal(parse(f, "{\"x\":null}"), 0);
    assert_null(shmrpc_json_get(f->r.root, NULL));
    assert_true(shmrpc_json_is_null(shmrpc_json_get(f->r.root, "x")));
    assert_true(shmrpc_json_is_null(shmrpc_json_get(f->r.root, "y")));
    assert_false(shmrpc_json_is_null(f->r.root));
    /* Integer keys: nothing, and a word, are no integer for either reader. */
    f->r.why = NULL;
    assert_int_equal(shmrpc_json_key_int(&f->r, (shmrpc_str){NULL, 0}, INT64_MIN, INT64_MAX, &i),
                     SHMRPC_EINVAL);
    assert_string_equal(f->r.why, "map key is not an integer");
    f->r.why = NULL;
    assert_int_equal(shmrpc_json_key_uint(&f->r, SHMRPC_STR("x"), UINT64_MAX, &u), SHMRPC_EINVAL);
    assert_string_equal(f->r.why, "map key is not an integer");
    f->r.why = NULL;
    assert_int_equal(shmrpc_json_key_int(&f->r, SHMRPC_STR("-129"), INT8_MIN, INT8_MAX, &i),
                     SHMRPC_EINVAL);
    assert_string_equal(f->r.why, "integer out of range for i8");
}

/* What building refuses: a member of what is not an object, an element of what is not an
 * array, a key that is NULL with a length, or holds a NUL; each takes (frees) the value. A
 * NULL key of no length is the empty key, and a NULL string of no length the empty string. */
static void building_refuses(void **state)
{
    fixture *f = *state;
    shmrpc_json *arr = shmrpc_json_array(), *obj = shmrpc_json_object();
    assert_int_equal(shmrpc_json_set(arr, "k", shmrpc_json_int(1)), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_set(NULL, "k", shmrpc_json_int(1)), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_set(obj, NULL, shmrpc_json_int(1)), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_setn(obj, (shmrpc_str){NULL, 1}, shmrpc_json_int(1)),
                     SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_setn(obj, (shmrpc_str){"a\0b", 3}, shmrpc_json_int(1)),
                     SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_setn(obj, (shmrpc_str){"\xff", 1}, shmrpc_json_int(1)),
                     SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_setn(obj, (shmrpc_str){NULL, 0}, shmrpc_json_int(2)), 0);
    assert_int_equal(shmrpc_json_set(obj, "s", shmrpc_json_string((shmrpc_str){NULL, 0})), 0);
    assert_int_equal(shmrpc_json_append(obj, shmrpc_json_int(1)), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_append(NULL, shmrpc_json_int(1)), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_append(arr, NULL), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_append(arr, shmrpc_json_bool(false)), 0);
    assert_string_equal(dump(f, arr), "[false]");
    assert_string_equal(dump(f, obj), "{\"\":2,\"s\":\"\"}");
}

static void base64_vectors(void **state)
{
    fixture *f = *state;
    /* RFC 4648, section 10. */
    static const char *const vec[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (size_t k = 0; k < sizeof vec / sizeof vec[0]; k++) {
        char want[32];
        snprintf(want, sizeof want, "\"%s\"", vec[k][1]);
        const char *text =
            dump(f, shmrpc_json_base64(shmrpc_bytes_of(vec[k][0], strlen(vec[k][0]))));
        assert_string_equal(text, want);
        assert_int_equal(parse(f, want), 0);
        shmrpc_bytes b;
        assert_int_equal(shmrpc_json_read_base64(&f->r, f->r.root, &b), 0);
        assert_int_equal(b.len, strlen(vec[k][0]));
        if (b.len) assert_memory_equal(b.ptr, vec[k][0], b.len);
    }
    /* Every byte value, and every length mod 3. */
    uint8_t all[256];
    for (int k = 0; k < 256; k++)
        all[k] = (uint8_t)k;
    for (size_t len = 250; len <= 256; len++) {
        const char *text = dump(f, shmrpc_json_base64(shmrpc_bytes_of(all, len)));
        assert_int_equal(parse(f, text), 0);
        shmrpc_bytes b;
        assert_int_equal(shmrpc_json_read_base64(&f->r, f->r.root, &b), 0);
        assert_int_equal(b.len, len);
        assert_memory_equal(b.ptr, all, len);
    }
}

static void base64_rejects(void **state)
{
    fixture *f = *state;
    static const char *const bad[] = {
        "\"Zg=\"",      "\"Zg\"",        "\"Z===\"",      "\"====\"",
        "\"Zh==\"",     "\"Zm9=\"",      "\"Zm9v YmFy\"", "\"Zm9v\\n\"",
        "\"Zm=v\"",     "\"Zm9vYg=a\"",  "\"*m9v\"",      "\"Zg==Zg==\"",
        "\"Zm9v-_==\"", "\"Zm9vYmFy=\"", "\"=Zm9\"",      "\"Zm9vYg\\u0000=\"",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        assert_int_equal(parse(f, bad[k]), 0);
        shmrpc_bytes b;
        if (shmrpc_json_read_base64(&f->r, f->r.root, &b) != SHMRPC_EINVAL)
            fail_msg("accepted %s", bad[k]);
        assert_string_equal(f->r.why, "invalid base64");
    }
}

static void integer_keys(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *key;
        int rc;
        int64_t v;
    } ik[] = {
        {"0", 0, 0},
        {"12", 0, 12},
        {"-12", 0, -12},
        {"9223372036854775807", 0, INT64_MAX},
        {"-9223372036854775808", 0, INT64_MIN},
        {"9223372036854775808", SHMRPC_EINVAL, 0},
        {"-9223372036854775809", SHMRPC_EINVAL, 0},
        {"99999999999999999999999", SHMRPC_EINVAL, 0},
        {"+1", SHMRPC_EINVAL, 0},
        {"01", SHMRPC_EINVAL, 0},
        {"-0", SHMRPC_EINVAL, 0},
        {"", SHMRPC_EINVAL, 0},
        {"-", SHMRPC_EINVAL, 0},
        {" 1", SHMRPC_EINVAL, 0},
        {"1 ", SHMRPC_EINVAL, 0},
        {"1.0", SHMRPC_EINVAL, 0},
        {"0x10", SHMRPC_EINVAL, 0},
    };
    for (size_t k = 0; k < sizeof ik / sizeof ik[0]; k++) {
        f->r.why = NULL;
        int64_t v = 0;
        int rc = shmrpc_json_key_int(&f->r, shmrpc_str_c(ik[k].key), INT64_MIN, INT64_MAX, &v);
        if (rc != ik[k].rc) fail_msg("key '%s': rc %d", ik[k].key, rc);
        if (!rc) assert_true(v == ik[k].v);
    }
    int64_t v;
    f->r.why = NULL;
    assert_int_equal(shmrpc_json_key_int(&f->r, SHMRPC_STR("128"), INT8_MIN, INT8_MAX, &v),
                     SHMRPC_EINVAL);
    assert_string_equal(f->r.why, "integer out of range for i8");
    f->r.why = NULL;
    assert_int_equal(shmrpc_json_key_int(&f->r, SHMRPC_STR("x"), INT8_MIN, INT8_MAX, &v),
                     SHMRPC_EINVAL);
    assert_string_equal(f->r.why, "map key is not an integer");
    f->r.why = NULL;
    assert_int_equal(
        shmrpc_json_key_int(&f->r, SHMRPC_STR("99999999999999999999"), INT64_MIN, INT64_MAX, &v),
        SHMRPC_EINVAL);
    assert_string_equal(f->r.why, "integer out of range for i64");

    uint64_t u;
    assert_int_equal(
        shmrpc_json_key_uint(&f->r, SHMRPC_STR("18446744073709551615"), UINT64_MAX, &u), 0);
    assert_true(u == UINT64_MAX);
    assert_int_equal(
        shmrpc_json_key_uint(&f->r, SHMRPC_STR("18446744073709551616"), UINT64_MAX, &u),
        SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_key_uint(&f->r, SHMRPC_STR("-1"), UINT64_MAX, &u), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_json_key_uint(&f->r, SHMRPC_STR("256"), UINT8_MAX, &u), SHMRPC_EINVAL);

    char buf[24];
    shmrpc_str s = shmrpc_json_int_key(INT64_MIN, buf);
    assert_int_equal(s.len, 20);
    assert_memory_equal(s.ptr, "-9223372036854775808", 20);
    assert_int_equal(shmrpc_json_key_int(&f->r, s, INT64_MIN, INT64_MAX, &v), 0);
    assert_true(v == INT64_MIN);
    s = shmrpc_json_uint_key(UINT64_MAX, buf);
    assert_int_equal(s.len, 20);
    assert_int_equal(shmrpc_json_key_uint(&f->r, s, UINT64_MAX, &u), 0);
    s = shmrpc_json_int_key(0, buf);
    assert_int_equal(s.len, 1);
}

static void member_walks(void **state)
{
    fixture *f = *state;
    /* A large object walked in order, then members picked out of order. */
    shmrpc_json *o = shmrpc_json_object();
    char key[24];
    for (int64_t k = 0; k < 20000; k++)
        assert_int_equal(shmrpc_json_setn(o, shmrpc_json_int_key(k, key), shmrpc_json_int(k)), 0);
    const char *text = dump(f, o);
    assert_int_equal(parse(f, text), 0);
    size_t n;
    assert_int_equal(shmrpc_json_read_object(&f->r, f->r.root, &n), 0);
    assert_int_equal(n, 20000);
    int64_t sum = 0;
    for (size_t k = 0; k < n; k++) {
        shmrpc_str kstr;
        const shmrpc_json *val;
        int64_t kv, vv;
        assert_int_equal(shmrpc_json_member(&f->r, f->r.root, k, &kstr, &val), 0);
        assert_int_equal(shmrpc_json_key_int(&f->r, kstr, 0, 100000, &kv), 0);
        assert_int_equal(shmrpc_json_read_int(&f->r, val, 0, 100000, &vv), 0);
        assert_int_equal(kv, vv);
        sum += kv;
    }
    assert_int_equal(sum, 19999 * 20000 / 2);
    shmrpc_str kstr;
    const shmrpc_json *val;
    assert_int_equal(shmrpc_json_member(&f->r, f->r.root, 5, &kstr, &val), 0);
    shmrpc_str again;
    assert_int_equal(shmrpc_json_member(&f->r, f->r.root, 5, &again, &val), 0);
    assert_int_equal(kstr.len, again.len);
    assert_memory_equal(kstr.ptr, again.ptr, kstr.len);
    assert_int_equal(shmrpc_json_member(&f->r, f->r.root, 3, &again, &val), 0);
    assert_int_equal(shmrpc_json_member(&f->r, f->r.root, n, &again, &val), SHMRPC_EINVAL);
    assert_string_equal(f->r.why, "no such member");
}

/* Nested objects walked with an iterator each, as generated map decoders do: linear in
 * the members, where one shared cache (shmrpc_json_member) restarts every outer step. */
static void nested_iterators(void **state)
{
    fixture *f = *state;
    enum { OUTER = 40000 };
    shmrpc_json *o = shmrpc_json_object();
    char key[24];
    for (int64_t k = 0; k < OUTER; k++) {
        shmrpc_json *in = shmrpc_json_object();
        assert_int_equal(shmrpc_json_set(in, "a", shmrpc_json_int(k)), 0);
        assert_int_equal(shmrpc_json_set(in, "b", shmrpc_json_int(1)), 0);
        assert_int_equal(shmrpc_json_setn(o, shmrpc_json_int_key(k, key), in), 0);
    }
    assert_int_equal(parse(f, dump(f, o)), 0);

    shmrpc_json_iter outer;
    shmrpc_json_iter_init(&outer, f->r.root);
    shmrpc_str k;
    const shmrpc_json *v;
    size_t members = 0;
    int64_t sum = 0, inner_members = 0;
    int rc;
    while ((rc = shmrpc_json_iter_next(&f->r, &outer, &k, &v)) == 1) {
        int64_t kv;
        assert_int_equal(shmrpc_json_key_int(&f->r, k, 0, OUTER, &kv), 0);
        shmrpc_json_iter inner;
        shmrpc_json_iter_init(&inner, v);
        shmrpc_str ik;
        const shmrpc_json *iv;
        int irc;
        while ((irc = shmrpc_json_iter_next(&f->r, &inner, &ik, &iv)) == 1) {
            int64_t x;
            assert_int_equal(shmrpc_json_read_int(&f->r, iv, 0, OUTER, &x), 0);
            if (ik.len == 1 && ik.ptr[0] == 'a') assert_int_equal(x, kv);
            inner_members++;
        }
        assert_int_equal(irc, 0);
        assert_int_equal(shmrpc_json_iter_next(&f->r, &inner, &ik, &iv), 0); /* stays done */
        sum += kv;
        members++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(members, OUTER);
    assert_int_equal(inner_members, 2 * OUTER);
    assert_int_equal(sum, (int64_t)(OUTER - 1) * OUTER / 2);

    /* Not an object: an empty walk. */
    assert_int_equal(parse(f, "[1,2]"), 0);
    shmrpc_json_iter it;
    shmrpc_json_iter_init(&it, f->r.root);
    assert_int_equal(shmrpc_json_iter_next(&f->r, &it, &k, &v), 0);
    shmrpc_json_iter_init(&it, NULL);
    assert_int_equal(shmrpc_json_iter_next(&f->r, &it, &k, &v), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(scalars_dump, setup, teardown),
        cmocka_unit_test_setup_teardown(unicode_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_utf8_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_documents, setup, teardown),
        cmocka_unit_test_setup_teardown(depth_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(nan_and_big_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(kinds_and_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(absent_and_null, setup, teardown),
        cmocka_unit_test_setup_teardown(building_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(base64_vectors, setup, teardown),
        cmocka_unit_test_setup_teardown(base64_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(integer_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(member_walks, setup, teardown),
        cmocka_unit_test_setup_teardown(nested_iterators, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
