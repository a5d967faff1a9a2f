/* SPDX-License-Identifier: MIT */
/* The any view and builder (shmrpc/any.h) and the code shmrpcgen writes for any.svc: values
 * built and read back; malformed bytes (truncated, lengths and counts past the end, too
 * deep, bad UTF-8, extension types, lists as keys) refused with their reason, every read
 * on them or on bytes rewritten after the check bounded by the view (each input sits in a
 * buffer of its own exact size, so the sanitizer build sees any read past it); the
 * generated stubs and server over inproc://, @msgpack and @json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "any.h"
#include "packet.h"

/* The exact bytes of p in a buffer of their own. */
static shmrpc_any own(const void *p, size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    assert_non_null(b);
    memcpy(b, p, n);
    return (shmrpc_any){b, n};
}

static void disown(shmrpc_any a)
{
    free((void *)a.p);
}

/* Walks every value in a (bounded by its bytes), reading each as every kind: on bytes that
 * lie the reads fail, and none may go past a.n. Returns how many values it saw. */
static size_t walk(shmrpc_any a, int depth)
{
    bool b;
    int64_t i;
    uint64_t u;
    double d;
    shmrpc_str s;
    shmrpc_bytes y;
    size_t n = 0, seen = 1;
    shmrpc_any e, k;
    (void)shmrpc_any_bool(a, &b), (void)shmrpc_any_int(a, &i), (void)shmrpc_any_uint(a, &u);
    (void)shmrpc_any_float(a, &d), (void)shmrpc_any_str(a, &s), (void)shmrpc_any_bytes(a, &y);
    if (s.ptr != NULL && shmrpc_any_str(a, &s) == 0)
        assert_true((const uint8_t *)s.ptr + s.len <= a.p + a.n);
    (void)shmrpc_any_get(a, "k", &e);
    if (shmrpc_any_len(a, &n) == 0 && n > 0) {
        (void)shmrpc_any_at(a, n - 1, &e);
        (void)shmrpc_any_entry(a, n - 1, &k, &e);
    }
    shmrpc_any_iter it;
    if (depth < 200 && shmrpc_any_iter_init(&it, a) == 0) {
        while (shmrpc_any_next(&it, &e) == 1) {
            assert_true(e.p >= a.p && e.p + e.n <= a.p + a.n);
            seen += walk(e, depth + 1);
        }
    }
    return seen;
}

/* Seed 004's value, its sequence_number 7. */
static void build_packet(shmrpc_buf *b)
{
    put_packet(b, 7);
}

static void built_values_read_back(void **state)
{
    (void)state;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc_buf_append(&b, "junk", 4); /* a value may start anywhere in the buffer */
    build_packet(&b);
    shmrpc_any p, v, e, k;
    assert_int_equal(shmrpc_any_built(&b, 4, &p), 0);
    assert_int_equal(shmrpc_any_kind_of(p), SHMRPC_ANY_MAP);
    size_t n;
    assert_int_equal(shmrpc_any_len(p, &n), 0);
    assert_int_equal(n, 5);

    int64_t i;
    double d;
    assert_int_equal(shmrpc_any_get(p, "sequence_number", &v), 0);
    assert_int_equal(shmrpc_any_int(v, &i), 0);
    assert_int_equal(i, 7);
    assert_int_equal(shmrpc_any_get(p, "samples", &v), 0);
    assert_int_equal(shmrpc_any_kind_of(v), SHMRPC_ANY_LIST);
    assert_int_equal(shmrpc_any_at(v, 0, &e), 0);
    assert_int_equal(shmrpc_any_kind_of(e), SHMRPC_ANY_FLOAT);
    assert_int_equal(shmrpc_any_float(e, &d), 0);
    assert_true(d == 1.5);
    assert_int_equal(shmrpc_any_int(e, &i), SHMRPC_EINVAL); /* a float is no integer */
    assert_int_equal(shmrpc_any_at(v, 1, &e), 0);
    assert_int_equal(shmrpc_any_float(e, &d), 0); /* an integer reads as a float too */
    assert_true(d == 2.0);
    assert_int_equal(shmrpc_any_at(v, 2, &e), 0);
    uint64_t u;
    assert_int_equal(shmrpc_any_uint(e, &u), SHMRPC_EINVAL); /* -3 */
    assert_int_equal(shmrpc_any_int(e, &i), 0);
    assert_int_equal(i, -3);
    assert_int_equal(shmrpc_any_at(v, 3, &e), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "any: index past the end");

    shmrpc_str s;
    shmrpc_bytes y;
    assert_int_equal(shmrpc_any_get(p, "name", &v), 0);
    assert_int_equal(shmrpc_any_str(v, &s), 0);
    assert_int_equal(s.len, 1);
    assert_memory_equal(s.ptr, "x", 1);
    assert_int_equal(shmrpc_any_bytes(v, &y), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_any_get(p, "raw", &v), 0);
    assert_int_equal(shmrpc_any_bytes(v, &y), 0);
    assert_int_equal(y.len, 2);
    assert_memory_equal(y.ptr, "\x00\x01", 2);
    assert_int_equal(shmrpc_any_get(p, "nested", &v), 0);
    assert_int_equal(shmrpc_any_get(v, "a", &v), 0);
    assert_int_equal(shmrpc_any_at(v, 1, &e), 0);
    assert_int_equal(shmrpc_any_kind_of(e), SHMRPC_ANY_MAP);
    assert_int_equal(shmrpc_any_len(e, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(shmrpc_any_get(p, "absent", &v), SHMRPC_ENOENT);
    assert_true(shmrpc_any_is_null(v));
    assert_int_equal(shmrpc_any_get(e, "x", &v), SHMRPC_ENOENT);
    assert_int_equal(shmrpc_any_entry(p, 4, &k, &v), 0);
    assert_int_equal(shmrpc_any_str(k, &s), 0);
    assert_int_equal(s.len, 6);
    assert_int_equal(walk(p, 0), 19); /* the map, its 5 keys and 13 values within */

    /* A copy of a view, the integer edges, and a zero any, which is null. */
    shmrpc_buf c;
    shmrpc_buf_init(&c);
    shmrpc_any_put_list(&c, 5);
    shmrpc_any_put(&c, p);
    shmrpc_any_put(&c, (shmrpc_any){0});
    shmrpc_any_put_uint(&c, UINT64_MAX);
    shmrpc_any_put_int(&c, INT64_MIN);
    shmrpc_any_put_bool(&c, true);
    shmrpc_any l;
    assert_int_equal(shmrpc_any_built(&c, 0, &l), 0);
    assert_int_equal(shmrpc_any_at(l, 0, &e), 0);
    assert_int_equal(e.n, p.n);
    assert_memory_equal(e.p, p.p, p.n);
    assert_int_equal(shmrpc_any_at(l, 1, &e), 0);
    assert_true(shmrpc_any_is_null(e));
    assert_int_equal(shmrpc_any_at(l, 2, &e), 0);
    assert_int_equal(shmrpc_any_int(e, &i), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_any_uint(e, &u), 0);
    assert_true(u == UINT64_MAX);
    assert_int_equal(shmrpc_any_at(l, 3, &e), 0);
    assert_int_equal(shmrpc_any_int(e, &i), 0);
    assert_true(i == INT64_MIN);
    assert_int_equal(shmrpc_any_at(l, 4, &e), 0);
    bool t = false;
    assert_int_equal(shmrpc_any_bool(e, &t), 0);
    assert_true(t);
    assert_true(shmrpc_any_is_null((shmrpc_any){0}));
    shmrpc_buf_destroy(&c);
    shmrpc_buf_destroy(&b);
}

static void builder_errors(void **state)
{
    (void)state;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc_any a;
    /* A string that is not UTF-8 fails, and the buffer keeps failing until cleared. */
    shmrpc_any_put_list(&b, 2);
    assert_int_equal(shmrpc_any_put_str(&b, "\xc0\xaf", 2), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "any: string is not UTF-8");
    assert_int_equal(shmrpc_any_put_int(&b, 1), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_any_built(&b, 0, &a), SHMRPC_EINVAL);
    /* A count that promised more values than came. */
    shmrpc_buf_clear(&b);
    shmrpc_any_put_map(&b, 2);
    shmrpc_any_put_cstr(&b, "k");
    shmrpc_any_put_null(&b);
    assert_int_equal(shmrpc_any_built(&b, 0, &a), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "any: count larger than the bytes left");
    /* Two values where one is wanted, and a start past the end. */
    shmrpc_buf_clear(&b);
    shmrpc_any_put_null(&b);
    shmrpc_any_put_null(&b);
    assert_int_equal(shmrpc_any_built(&b, 0, &a), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "any: 1 bytes after the value");
    assert_int_equal(shmrpc_any_built(&b, 1, &a), 0);
    assert_int_equal(shmrpc_any_built(&b, 3, &a), SHMRPC_EINVAL);
    /* A list as a map's key. */
    shmrpc_buf_clear(&b);
    shmrpc_any_put_map(&b, 1);
    shmrpc_any_put_list(&b, 0);
    shmrpc_any_put_null(&b);
    assert_int_equal(shmrpc_any_built(&b, 0, &a), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "any: a map key must be a scalar (not a list or a map)");
    shmrpc_buf_destroy(&b);
}

typedef struct bad {
    const char *bytes;
    size_t n;
    const char *why; /* NULL: a value */
} bad;
#define MP(lit) lit, sizeof(lit) - 1

static const bad bads[] = {
    {MP("\xc0"), NULL},
    {MP(""), "truncated"},
    /* Each header cut short: str8/16/32, bin8/16/32, float 32/64, integers, array 16/32,
     * map 16/32. */
    {MP("\xd9"), "truncated"},
    {MP("\xda\x00"), "truncated"},
    {MP("\xdb\x00\x00\x00"), "truncated"},
    {MP("\xc4"), "truncated"},
    {MP("\xc5\x00"), "truncated"},
    {MP("\xc6\x00\x00"), "truncated"},
    {MP("\xca\x00\x00\x00"), "truncated"},
    {MP("\xcb\x00\x00\x00\x00\x00\x00\x00"), "truncated"},
    {MP("\xcc"), "truncated"},
    {MP("\xcf\x00\x00\x00\x00\x00\x00\x00"), "truncated"},
    {MP("\xd3\x00"), "truncated"},
    {MP("\xdc\x00"), "truncated"},
    {MP("\xdd\x00\x00\x00"), "truncated"},
    {MP("\xde\x00"), "truncated"},
    {MP("\xdf\x00\x00\x00"), "truncated"},
    /* Lengths past the end. */
    {MP("\xa5"
        "ab"),
     "truncated"},
    {MP("\xd9\x03"
        "ab"),
     "truncated"},
    {MP("\xdb\xff\xff\xff\xff"
        "ab"),
     "truncated"},
    {MP("\xc6\xff\xff\xff\xff\x00"), "truncated"},
    {MP("\x91\xa5"
        "ab"),
     "truncated"},
    /* Counts past the end, before anything is read of the elements. */
    {MP("\x93\x01\x02"), "count larger than the bytes left"},
    {MP("\xdd\xff\xff\xff\xff\x01\x02\x03"), "count larger than the bytes left"},
    {MP("\xdf\x7f\xff\xff\xff\x01\x02"), "count larger than the bytes left"},
    {MP("\x82\x01\x02\x03"), "count larger than the bytes left"},
    /* Strings that are not UTF-8: overlong, a surrogate, past U+10FFFF, cut short, a lone
     * continuation byte; in a key too. */
    {MP("\xa2\xc0\xaf"), "string is not UTF-8"},
    {MP("\xa3\xed\xa0\x80"), "string is not UTF-8"},
    {MP("\xa4\xf4\x90\x80\x80"), "string is not UTF-8"},
    {MP("\xa2\xe2\x82"), "string is not UTF-8"},
    {MP("\xa1\x80"), "string is not UTF-8"},
    {MP("\x81\xa1\xff\xc0"), "string is not UTF-8"},
    {MP("\xa4\xf0\x9f\x98\x80"), NULL},
    /* Extension types, the byte msgpack never uses, containers as keys. */
    {MP("\xd4\x01\x00"), "a msgpack extension type is no value of an any"},
    {MP("\xc7\x01\x01\x00"), "a msgpack extension type is no value of an any"},
    {MP("\xc1"), "invalid msgpack byte"},
    {MP("\x81\x90\xc0"), "a map key must be a scalar (not a list or a map)"},
    {MP("\x81\x80\xc0"), "a map key must be a scalar (not a list or a map)"},
    {MP("\x81\xc4\x00\x90"), NULL},
    {MP("\x81\xcb\x40\x00\x00\x00\x00\x00\x00\x00\xc3"), NULL},
    /* One value, and nothing after it. */
    {MP("\x90\xc0"), "1 bytes after the value"},
};

static void malformed_bytes(void **state)
{
    (void)state;
    int wrong = 0;
    for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
        shmrpc_any in = own(bads[i].bytes, bads[i].n), out;
        int rc = shmrpc_any_parse(in.p, in.n, &out);
        char want[128];
        snprintf(want, sizeof want, "any: %s", bads[i].why ? bads[i].why : "");
        if (bads[i].why == NULL ? rc != 0 : rc != SHMRPC_EINVAL || strcmp(shmrpc_errmsg(), want)) {
            fprintf(stderr, "bads[%zu]: want %s, got %d %s\n", i, bads[i].why ? want : "a value",
                    rc, rc ? shmrpc_errmsg() : "");
            wrong++;
        }
        /* The reads, on what was refused too: errors, never a read past the bytes. */
        walk(in, 0);
        disown(in);
    }
    assert_int_equal(wrong, 0);
}

/* At most 128 lists and maps deep, counted from the any. */
static void depth(void **state)
{
    (void)state;
    for (int levels = 127; levels <= 130; levels++) {
        /* Maps (keyed by nil) and lists in turn, around a 1. */
        uint8_t deep[400];
        size_t n = 0;
        for (int i = 0; i < levels; i++) {
            if (i % 2) {
                deep[n++] = 0x91;
            } else {
                deep[n++] = 0x81;
                deep[n++] = 0xc0;
            }
        }
        deep[n++] = 0x01;
        shmrpc_any in = own(deep, n), out;
        int rc = shmrpc_any_parse(in.p, in.n, &out);
        if (levels <= 128) {
            if (rc != 0) fail_msg("%d deep: %s", levels, shmrpc_errmsg());
            assert_int_equal(walk(out, 0), (size_t)levels + (size_t)(levels + 1) / 2 + 1);
        } else {
            assert_int_equal(rc, SHMRPC_EINVAL);
            assert_string_equal(shmrpc_errmsg(), "any: nested more than 128 deep");
        }
        disown(in);
    }
    /* Deep as a hostile body may be, without recursion: a megabyte of 0x91. */
    size_t big = 1 << 20;
    uint8_t *p = malloc(big);
    assert_non_null(p);
    memset(p, 0x91, big);
    shmrpc_any out;
    assert_int_equal(shmrpc_any_parse(p, big, &out), SHMRPC_EINVAL);
    shmrpc_any all = {p, big};
    size_t n;
    assert_int_equal(shmrpc_any_len(all, &n), 0);
    assert_int_equal(shmrpc_any_at(all, 0, &out), SHMRPC_EINVAL); /* ends truncated */
    free(p);
}

/* Every prefix of a good value is refused, and read without going past itself; bytes
 * rewritten after the check (a peer writing shared memory) make the reads fail, not run
 * off the view. */
static void truncated_and_rewritten(void **state)
{
    (void)state;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    build_packet(&b);
    for (size_t n = 0; n < b.len; n++) {
        shmrpc_any in = own(b.data, n), out;
        assert_int_equal(shmrpc_any_parse(in.p, in.n, &out), SHMRPC_EINVAL);
        walk(in, 0);
        disown(in);
    }
    shmrpc_any good = own(b.data, b.len), v;
    assert_int_equal(shmrpc_any_parse(good.p, good.n, &v), 0);
    uint8_t *w = (uint8_t *)good.p;
    for (size_t at = 0; at < good.n; at++) {
        static const uint8_t liars[] = {0xdd, 0xdf, 0xdb, 0xc6, 0xff, 0x9f, 0x8f, 0xbf};
        uint8_t was = w[at];
        for (size_t k = 0; k < sizeof liars; k++) {
            w[at] = liars[k];
            walk(good, 0);
            shmrpc_any e;
            (void)shmrpc_any_get(good, "nested", &e);
        }
        w[at] = was;
    }
    disown(good);
    shmrpc_buf_destroy(&b);
}

/* --- the generated code over inproc:// ---------------------------------------------- */

static int h_echo(shmrpc_ctx *ctx, shmrpc_any v, shmrpc_any *out)
{
    (void)ctx;
    *out = v;
    return 0;
}

static int h_many(shmrpc_ctx *ctx, dyn_list_Any vs, dyn_map_String_Any m, dyn_list_Any *out)
{
    /* vs and then the values of m, in order, from the call's arena. */
    shmrpc_any *items = shmrpc_arena_alloc(shmrpc_ctx_arena(ctx), (vs.len + m.len) * sizeof *items,
                                           _Alignof(shmrpc_any));
    if (items == NULL) return SHMRPC_ENOMEM;
    for (size_t i = 0; i < vs.len; i++)
        items[i] = vs.items[i];
    for (size_t i = 0; i < m.len; i++)
        items[vs.len + i] = m.items[i].value;
    *out = (dyn_list_Any){items, vs.len + m.len};
    return 0;
}

/* A list that promised 2 values and holds 1, and 2 values where 1 was meant: each alone is
 * refused, and in one list the second would fill the first's gap. */
static const shmrpc_any SHORT = {(const uint8_t *)"\x92\x01", 2};
static const shmrpc_any LONG = {(const uint8_t *)"\x02\x03", 2};

static int h_packet(shmrpc_ctx *ctx, const dyn_Packet *p, dyn_Packet *out)
{
    (void)ctx;
    *out = *p;
    out->seq = p->seq + 1;
    if (p->seq == -1) out->body = SHORT; /* a handler's any built wrongly */
    return 0;
}

static int h_kind(shmrpc_ctx *ctx, shmrpc_any v, shmrpc_str *out)
{
    (void)ctx;
    static const char *const names[] = {"null",  "bool", "int", "float",  "string",
                                        "bytes", "list", "map", "invalid"};
    *out = shmrpc_str_c(names[shmrpc_any_kind_of(v)]);
    return 0;
}

static const Dyn_handlers handlers = {
    .echo = h_echo, .echo_json = h_echo, .many = h_many, .packet = h_packet, .kind = h_kind};

typedef struct fixture {
    shmrpc_server *s;
    shmrpc_client *c;
} fixture;

static int setup(void **state)
{
    static fixture f;
    assert_int_equal(shmrpc_server_new(&f.s, NULL), 0);
    assert_int_equal(shmrpc_server_register(f.s, &Dyn_service, &handlers, NULL), 0);
    assert_int_equal(shmrpc_server_listen(f.s, "inproc://any-test"), 0);
    assert_int_equal(shmrpc_client_new(&f.c, &Dyn_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(f.c, "inproc://any-test"), 0);
    *state = &f;
    return 0;
}

static const char *seg_name(char what);

static int teardown(void **state)
{
    fixture *f = *state;
    shmrpc_client_free(f->c);
    shmrpc_server_free(f->s);
    (void)shmrpc_queue_unlink(seg_name('q'));
    (void)shmrpc_queue_unlink(seg_name('j'));
    (void)shmrpc_map_unlink(seg_name('m'));
    return 0;
}

static void generated_msgpack(void **state)
{
    fixture *f = *state;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    build_packet(&b);
    shmrpc_any p, out, v;
    assert_int_equal(shmrpc_any_built(&b, 0, &p), 0);
    int rc = dyn_echo(f->c, p, &out);
    if (rc != 0) fail_msg("echo: %s", shmrpc_errmsg());
    assert_int_equal(out.n, p.n);
    assert_memory_equal(out.p, p.p, p.n);
    shmrpc_str s;
    assert_int_equal(dyn_kind(f->c, p, &s), 0);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.ptr, "map", 3);
    assert_int_equal(dyn_kind(f->c, (shmrpc_any){0}, &s), 0); /* a zero any goes as null */
    assert_memory_equal(s.ptr, "null", 4);

    /* In a struct, a list and a map. */
    const shmrpc_any extra[] = {p, {(const uint8_t *)"\xa1x", 2}};
    dyn_Packet in = {.seq = 41, .body = p, .extra = {extra, 2}}, back;
    assert_int_equal(dyn_packet(f->c, &in, &back), 0);
    assert_int_equal(back.seq, 42);
    assert_int_equal(back.body.n, p.n);
    assert_memory_equal(back.body.p, p.p, p.n);
    assert_int_equal(back.extra.len, 2);
    assert_int_equal(shmrpc_any_str(back.extra.items[1], &s), 0);
    assert_memory_equal(s.ptr, "x", 1);
    const dyn_map_String_Any_entry entries[] = {{SHMRPC_STR("a"), p}};
    dyn_list_Any all;
    assert_int_equal(
        dyn_many(f->c, (dyn_list_Any){extra + 1, 1}, (dyn_map_String_Any){entries, 1}, &all), 0);
    assert_int_equal(all.len, 2);
    assert_int_equal(shmrpc_any_get(all.items[1], "name", &v), 0);
    assert_int_equal(shmrpc_any_str(v, &s), 0);
    assert_memory_equal(s.ptr, "x", 1);
    shmrpc_buf_destroy(&b);
}

static void generated_json(void **state)
{
    fixture *f = *state;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc_any_put_map(&b, 3);
    shmrpc_any_put_cstr(&b, "samples");
    shmrpc_any_put_list(&b, 3);
    shmrpc_any_put_float(&b, 1.5);
    shmrpc_any_put_int(&b, 2);
    shmrpc_any_put_null(&b);
    shmrpc_any_put_cstr(&b, "name");
    shmrpc_any_put_cstr(&b, "x");
    shmrpc_any_put_cstr(&b, "ok");
    shmrpc_any_put_bool(&b, true);
    shmrpc_any a, out, v, e;
    assert_int_equal(shmrpc_any_built(&b, 0, &a), 0);
    int rc = dyn_echo_json(f->c, a, &out);
    if (rc != 0) fail_msg("echo_json: %s", shmrpc_errmsg());
    assert_int_equal(out.n, a.n); /* the same msgpack, through JSON and back */
    assert_memory_equal(out.p, a.p, a.n);
    assert_int_equal(shmrpc_any_get(out, "samples", &v), 0);
    assert_int_equal(shmrpc_any_at(v, 0, &e), 0);
    assert_int_equal(shmrpc_any_kind_of(e), SHMRPC_ANY_FLOAT);

    /* What JSON has no form for is refused before it is sent, naming the argument. */
    static const char *const no_json[] = {"\x91\xc4\x01\x00",
                                          "\x81\x01\xc0",
                                          "\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
                                          "\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",
                                          "\x82\xa1\x61\x01\xa1\x61\x02",
                                          "\x01\x02"};
    /* ... a key twice, which a JSON object cannot hold (nor would the peer's reader take)
     * and must not lose; two values in one view, the second not to be dropped */
    static const size_t no_json_n[] = {4, 3, 9, 9, 7, 2};
    for (size_t i = 0; i < 6; i++) {
        shmrpc_any bad = {(const uint8_t *)no_json[i], no_json_n[i]};
        assert_int_equal(dyn_echo_json(f->c, bad, &out), SHMRPC_EINVAL);
        assert_string_equal(shmrpc_errmsg(), "Dyn.echo_json: argument 'v' has no JSON form");
    }
    shmrpc_buf_destroy(&b);
}

/* A request whose any is malformed fails the call with the place, and costs the server
 * nothing else. */
static void generated_refuses_bad_bodies(void **state)
{
    fixture *f = *state;
    static const struct {
        uint32_t method;
        const char *body;
        size_t n;
        const char *why;
    } cases[] = {
        {DYN_METHOD_ECHO, MP("\x91\xa1\xff"),
         "Dyn.echo: arguments, field 'v': string is not UTF-8"},
        {DYN_METHOD_ECHO, MP("\x91\x91\x91"),
         "Dyn.echo: arguments, field 'v': count larger than "
         "the bytes left"},
        {DYN_METHOD_PACKET, MP("\x91\x93\x01\xd4\x00\x00\x90"),
         "Dyn.packet: arguments, field 'Packet.body': a msgpack extension type is no value of "
         "an any"},
        {DYN_METHOD_ECHO_JSON, MP("{\"v\":[1,"), NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        shmrpc_buf *req = shmrpc_client_request(f->c);
        shmrpc_buf_append(req, cases[i].body, cases[i].n);
        shmrpc_bytes resp;
        int rc = shmrpc_client_call(f->c, cases[i].method, &resp);
        assert_int_equal(rc, SHMRPC_EINVAL);
        if (cases[i].why && strcmp(shmrpc_errmsg(), cases[i].why) != 0)
            fail_msg("cases[%zu]:\n  want %s\n  got  %s", i, cases[i].why, shmrpc_errmsg());
    }
    shmrpc_any out;
    assert_int_equal(dyn_echo(f->c, (shmrpc_any){(const uint8_t *)"\x07", 1}, &out), 0);
}

/* An any built wrongly (the builder's count promised more than was written, or the view
 * takes in more than one value) is refused by the generated encoder where it is sent: a
 * client's argument, a handler's result, a queue's push, a map's put. Sent as it was, the
 * two below in one list read back as [[1, 2], 3], with no error anywhere. */
static void generated_writers_check(void **state)
{
    fixture *f = *state;
    const shmrpc_any both[] = {SHORT, LONG};
    dyn_list_Any out;
    assert_int_equal(dyn_many(f->c, (dyn_list_Any){both, 2}, (dyn_map_String_Any){0}, &out),
                     SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "Dyn.many: cannot encode the arguments");
    shmrpc_any one;
    assert_int_equal(dyn_echo(f->c, LONG, &one), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "Dyn.echo: cannot encode the arguments");

    dyn_Packet in = {.seq = -1, .body = {0}}, back;
    assert_int_equal(dyn_packet(f->c, &in, &back), SHMRPC_EHANDLER);
    assert_string_equal(shmrpc_errmsg(),
                        "Dyn.packet: the result's any: count larger than the bytes left");
    assert_int_equal(dyn_echo(f->c, (shmrpc_any){(const uint8_t *)"\x07", 1}, &one), 0);

    const char *qn = seg_name('q'), *mn = seg_name('m');
    shmrpc_buf msg;
    shmrpc_buf_init(&msg);
    shmrpc_arena *arena = shmrpc_arena_new(4096);
    shmrpc_queue_opts qo;
    shmrpc_queue_opts_init(&qo);
    qo.type = Dyn_values_type;
    shmrpc_queue *q;
    assert_int_equal(shmrpc_queue_open(&q, qn, &qo), 0);
    assert_int_equal(Dyn_values_push(q, &msg, SHORT, 0), SHMRPC_EINVAL);
    assert_int_equal(Dyn_values_push_batch(q, &msg, both, 2, &(size_t){0}, 0), SHMRPC_EINVAL);
    assert_int_equal(Dyn_values_pop(q, &msg, arena, &one, 0), SHMRPC_ETIMEDOUT); /* none went */
    shmrpc_queue_close(q);
    shmrpc_map_opts mo;
    shmrpc_map_opts_init(&mo);
    mo.type = Dyn_store_type;
    shmrpc_map *m;
    assert_int_equal(shmrpc_map_open(&m, mn, &mo), 0);
    assert_int_equal(Dyn_store_put(m, &msg, SHMRPC_STR("k"), LONG), SHMRPC_EINVAL);
    assert_int_equal(Dyn_store_get(m, &msg, arena, SHMRPC_STR("k"), &one), SHMRPC_ENOENT);
    shmrpc_map_close(m);
    assert_int_equal(shmrpc_queue_unlink(qn), 0);
    assert_int_equal(shmrpc_map_unlink(mn), 0);
    shmrpc_arena_free(arena);
    shmrpc_buf_destroy(&msg);
}

/* The names of this process's queues (q, j) and map (m); the group's teardown removes them
 * too, should a test fail before it does. */
static const char *seg_name(char what)
{
    static char names[3][64];
    char *n = names[what == 'q' ? 0 : what == 'j' ? 1 : 2];
    snprintf(n, 64, "any_test_%c_%d", what, (int)getpid());
    return n;
}

/* The generated functions of a typed queue and map of any, on real segments of this
 * process's own names (removed at the end). */
static void generated_queue_and_map(void **state)
{
    (void)state;
    const char *qn = seg_name('q'), *jn = seg_name('j'), *mn = seg_name('m');
    shmrpc_buf b, msg;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&msg);
    shmrpc_arena *arena = shmrpc_arena_new(4096);
    build_packet(&b);
    shmrpc_any p, out, v;
    assert_int_equal(shmrpc_any_built(&b, 0, &p), 0);

    shmrpc_queue_opts qo;
    shmrpc_queue_opts_init(&qo);
    qo.type = Dyn_values_type;
    shmrpc_queue *q, *j;
    assert_int_equal(shmrpc_queue_open(&q, qn, &qo), 0);
    assert_int_equal(Dyn_values_push(q, &msg, p, 1000), 0);
    assert_int_equal(Dyn_values_push(q, &msg, (shmrpc_any){0}, 1000), 0);
    assert_int_equal(Dyn_values_pop(q, &msg, arena, &out, 1000), 0);
    assert_int_equal(out.n, p.n);
    assert_memory_equal(out.p, p.p, p.n);
    assert_int_equal(Dyn_values_pop(q, &msg, arena, &out, 1000), 0);
    assert_true(shmrpc_any_is_null(out));
    shmrpc_queue_close(q);

    /* @json: what JSON holds goes through; bytes are refused and nothing is queued. */
    qo.type = Dyn_json_values_type;
    assert_int_equal(shmrpc_queue_open(&j, jn, &qo), 0);
    assert_int_equal(Dyn_json_values_push(j, &msg, p, 1000), SHMRPC_EINVAL);
    shmrpc_any plain;
    size_t at = b.len;
    shmrpc_any_put_map(&b, 1);
    shmrpc_any_put_cstr(&b, "samples");
    shmrpc_any_put_list(&b, 2);
    shmrpc_any_put_float(&b, 1.5);
    shmrpc_any_put_int(&b, -3);
    assert_int_equal(shmrpc_any_built(&b, at, &plain), 0);
    assert_int_equal(Dyn_json_values_push(j, &msg, plain, 1000), 0);
    assert_int_equal(Dyn_json_values_pop(j, &msg, arena, &out, 1000), 0);
    assert_int_equal(out.n, plain.n);
    assert_memory_equal(out.p, plain.p, plain.n);
    assert_int_equal(Dyn_json_values_pop(j, &msg, arena, &out, 0), SHMRPC_ETIMEDOUT);
    shmrpc_queue_close(j);

    shmrpc_map_opts mo;
    shmrpc_map_opts_init(&mo);
    mo.type = Dyn_store_type;
    shmrpc_map *m;
    assert_int_equal(shmrpc_map_open(&m, mn, &mo), 0);
    assert_int_equal(Dyn_store_put(m, &msg, SHMRPC_STR("p"), p), 0);
    assert_int_equal(Dyn_store_get(m, &msg, arena, SHMRPC_STR("p"), &out), 0);
    assert_int_equal(shmrpc_any_get(out, "sequence_number", &v), 0);
    int64_t i;
    assert_int_equal(shmrpc_any_int(v, &i), 0);
    assert_int_equal(i, 7);
    assert_int_equal(Dyn_store_get(m, &msg, arena, SHMRPC_STR("absent"), &out), SHMRPC_ENOENT);
    shmrpc_map_close(m);

    assert_int_equal(shmrpc_queue_unlink(qn), 0);
    assert_int_equal(shmrpc_queue_unlink(jn), 0);
    assert_int_equal(shmrpc_map_unlink(mn), 0);
    shmrpc_arena_free(arena);
    shmrpc_buf_destroy(&msg);
    shmrpc_buf_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(built_values_read_back),  cmocka_unit_test(builder_errors),
        cmocka_unit_test(malformed_bytes),         cmocka_unit_test(depth),
        cmocka_unit_test(truncated_and_rewritten), cmocka_unit_test(generated_msgpack),
        cmocka_unit_test(generated_json),          cmocka_unit_test(generated_refuses_bad_bodies),
        cmocka_unit_test(generated_queue_and_map), cmocka_unit_test(generated_writers_check),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
