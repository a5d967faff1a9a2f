/* SPDX-License-Identifier: MIT */
/* Typed maps from a .svc file (typed.svc) between real processes: a child fills the maps
 * through the generated functions and the parent reads them back, every kind of key and
 * value; a map of other types is refused by the generated open, a value that does not
 * decode fails with a message naming the map. Children are bounded by alarm() and reaped,
 * every map unlinked, even when a test fails. */
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

#include <shmrpc.h>

#include "kids.h"
#include "typed.h"

#define CHILD_ALARM_S 60
#define N_ITEMS 500

static const char *const all_maps[] = {TYPED_MAP_ITEMS, TYPED_MAP_BY_COLOR, TYPED_MAP_BLOBS,
                                       TYPED_MAP_LISTS};

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof all_maps / sizeof all_maps[0]; i++)
        shmrpc_map_unlink_quiet(all_maps[i]);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    test_kids_kill_all();
    for (size_t i = 0; i < sizeof all_maps / sizeof all_maps[0]; i++)
        shmrpc_map_unlink_quiet(all_maps[i]);
    return 0;
}

static void key_of(int i, char *k, size_t cap)
{
    snprintf(k, cap, "item-%d", i);
}

/* Item i: parts 0..i%5, a blob of i%7 bytes of i, tinted blue when i is odd. */
static void item_of(int i, typed_Item *it, int64_t *parts, uint8_t *blob, char *label, size_t cap)
{
    snprintf(label, cap, "label of %d", i);
    for (int j = 0; j < i % 5; j++)
        parts[j] = (int64_t)i * 1000 + j;
    memset(blob, i & 0xff, (size_t)(i % 7));
    it->label = shmrpc_str_c(label);
    it->parts.items = parts;
    it->parts.len = (size_t)(i % 5);
    it->blob = shmrpc_bytes_of(blob, (size_t)(i % 7));
    it->tint.has = i % 2 == 1;
    it->tint.value = typed_Color_blue;
}

/* The child: fills every map through the generated functions; 0 when all went well. */
static int filler(void *arg)
{
    (void)arg;
    shmrpc_map *items = NULL, *colors = NULL, *blobs = NULL, *lists = NULL;
    if (Typed_items_open(&items, NULL) || Typed_by_color_open(&colors, NULL) ||
        Typed_blobs_open(&blobs, NULL) || Typed_lists_open(&lists, NULL)) {
        fprintf(stderr, "# child open: %s\n", shmrpc_errmsg());
        return 1;
    }
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    int bad = 0;
    for (int i = 0; i < N_ITEMS; i++) {
        char k[32], label[32];
        int64_t parts[5];
        uint8_t blob[8];
        typed_Item it;
        key_of(i, k, sizeof k);
        item_of(i, &it, parts, blob, label, sizeof label);
        bad |= Typed_items_put(items, &buf, shmrpc_str_c(k), &it) != 0;
    }
    bad |= Typed_by_color_put(colors, &buf, typed_Color_green, -7) != 0;
    bad |= Typed_by_color_put(colors, &buf, typed_Color_red, INT64_MIN) != 0;
    uint8_t zero[3] = {0, 1, 0};
    typed_opt_String none = {false, {NULL, 0}}, some = {true, shmrpc_str_c("three bytes")};
    bad |= Typed_blobs_put(blobs, &buf, shmrpc_bytes_of(zero, 3), some) != 0;
    bad |= Typed_blobs_put(blobs, &buf, shmrpc_bytes_of(zero, 0), none) != 0;
    shmrpc_str words[2] = {shmrpc_str_c("a"), shmrpc_str_c("bc")};
    typed_list_String two = {words, 2};
    bad |= Typed_lists_put(lists, &buf, -1, two) != 0;
    shmrpc_buf_destroy(&buf);
    shmrpc_map_close(items);
    shmrpc_map_close(colors);
    shmrpc_map_close(blobs);
    shmrpc_map_close(lists);
    return bad;
}

struct seen {
    int n;
    bool ok;
};

static int check_item(void *arg, shmrpc_str key, const typed_Item *v)
{
    struct seen *s = arg;
    char k[32];
    int i;
    snprintf(k, sizeof k, "%.*s", (int)key.len, key.ptr); /* key is not NUL-terminated */
    if (sscanf(k, "item-%d", &i) != 1 || i < 0 || i >= N_ITEMS) return s->ok = false, 1;
    char label[32];
    snprintf(label, sizeof label, "label of %d", i);
    bool ok = v->label.len == strlen(label) && memcmp(v->label.ptr, label, v->label.len) == 0 &&
              v->parts.len == (size_t)(i % 5) && v->blob.len == (size_t)(i % 7) &&
              v->tint.has == (i % 2 == 1);
    for (size_t j = 0; ok && j < v->parts.len; j++)
        ok = v->parts.items[j] == (int64_t)i * 1000 + (int64_t)j;
    if (!ok) s->ok = false;
    s->n++;
    return 0;
}

static int stop_at_second(void *arg, typed_Color key, int64_t value)
{
    (void)key, (void)value;
    return ++*(int *)arg == 2 ? 3 : 0;
}

static void filled_by_one_read_by_another(void **state)
{
    (void)state;
    assert_int_equal(test_kid_reap(test_kid_spawn(filler, NULL, CHILD_ALARM_S), 30000), 0);

    shmrpc_map *items = NULL, *colors = NULL, *blobs = NULL, *lists = NULL;
    assert_int_equal(Typed_items_open(&items, NULL), 0);
    assert_int_equal(Typed_by_color_open(&colors, NULL), 0);
    assert_int_equal(Typed_blobs_open(&blobs, NULL), 0);
    assert_int_equal(Typed_lists_open(&lists, NULL), 0);
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    shmrpc_arena *arena = shmrpc_arena_new(0);
    assert_non_null(arena);

    typed_Item it;
    assert_int_equal(Typed_items_get(items, &buf, arena, shmrpc_str_c("item-9"), &it), 0);
    struct seen one = {0, true};
    check_item(&one, shmrpc_str_c("item-9"), &it);
    assert_true(one.ok);
    assert_int_equal(it.tint.value, typed_Color_blue);
    assert_int_equal(it.blob.len, 2);
    assert_int_equal(it.blob.ptr[1], 9);
    assert_int_equal(Typed_items_get(items, &buf, arena, shmrpc_str_c("item-x"), &it),
                     SHMRPC_ENOENT);

    /* An Item holds a list: get and iterate need an arena, and say so (issue 38; it was
     * "out of memory"). by_color's below need none. */
    assert_int_equal(Typed_items_get(items, &buf, NULL, shmrpc_str_c("item-9"), &it),
                     SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "Typed.items: get needs an arena (arena_ is NULL): "
                                         "map<string, Item> holds lists, maps or optional "
                                         "structs");
    struct seen none = {0, true};
    assert_int_equal(Typed_items_iterate(items, NULL, check_item, &none), SHMRPC_EINVAL);
    assert_int_equal(none.n, 0);
    assert_string_equal(shmrpc_errmsg(), "Typed.items: iterate needs an arena (arena_ is NULL): "
                                         "map<string, Item> holds lists, maps or optional "
                                         "structs");

    struct seen all = {0, true};
    assert_int_equal(Typed_items_iterate(items, arena, check_item, &all), 0);
    assert_int_equal(all.n, N_ITEMS);
    assert_true(all.ok);

    /* put_if_absent and remove keep the library's statuses. */
    typed_Item other = {shmrpc_str_c("other"), {NULL, 0}, {NULL, 0}, {false, 0}};
    assert_int_equal(Typed_items_put_if_absent(items, &buf, shmrpc_str_c("item-1"), &other),
                     SHMRPC_EBUSY);
    assert_int_equal(Typed_items_put_if_absent(items, &buf, shmrpc_str_c("new"), &other), 0);
    assert_int_equal(Typed_items_get(items, &buf, arena, shmrpc_str_c("new"), &it), 0);
    assert_int_equal(it.label.len, 5);
    assert_int_equal(Typed_items_remove(items, &buf, shmrpc_str_c("new")), 0);
    assert_int_equal(Typed_items_remove(items, &buf, shmrpc_str_c("new")), SHMRPC_ENOENT);

    int64_t n = 0;
    assert_int_equal(Typed_by_color_get(colors, &buf, NULL, typed_Color_red, &n), 0);
    assert_true(n == INT64_MIN);
    assert_int_equal(Typed_by_color_get(colors, &buf, NULL, typed_Color_green, &n), 0);
    assert_int_equal(n, -7);
    assert_int_equal(Typed_by_color_get(colors, &buf, NULL, typed_Color_blue, &n), SHMRPC_ENOENT);
    int calls = 0;
    assert_int_equal(Typed_by_color_iterate(colors, NULL, stop_at_second, &calls), 3);

    uint8_t zero[3] = {0, 1, 0};
    typed_opt_String s;
    assert_int_equal(Typed_blobs_get(blobs, &buf, arena, shmrpc_bytes_of(zero, 3), &s), 0);
    assert_true(s.has);
    assert_int_equal(s.value.len, 11);
    assert_int_equal(Typed_blobs_get(blobs, &buf, arena, shmrpc_bytes_of(zero, 0), &s), 0);
    assert_false(s.has);
    assert_int_equal(Typed_blobs_get(blobs, &buf, arena, shmrpc_bytes_of(zero, 2), &s),
                     SHMRPC_ENOENT);

    typed_list_String l;
    assert_int_equal(Typed_lists_get(lists, &buf, arena, -1, &l), 0);
    assert_int_equal(l.len, 2);
    assert_int_equal(l.items[1].len, 2);
    assert_memory_equal(l.items[1].ptr, "bc", 2);

    shmrpc_arena_free(arena);
    shmrpc_buf_destroy(&buf);
    shmrpc_map_close(items);
    shmrpc_map_close(colors);
    shmrpc_map_close(blobs);
    shmrpc_map_close(lists);
}

/* A map of the name but other types, or untyped, is refused by the generated open; a value
 * that is not the type's fails its get and iterate with a message naming the map. */
static void other_types_refused(void **state)
{
    (void)state;
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.type = Typed_lists_type;
    shmrpc_map *m = NULL;
    assert_int_equal(shmrpc_map_open(&m, TYPED_MAP_ITEMS, &o), 0);
    shmrpc_map_close(m);
    assert_int_equal(Typed_items_open(&m, NULL), SHMRPC_EPROTO);
    print_message("# %s\n", shmrpc_errmsg());
    assert_non_null(strstr(shmrpc_errmsg(), Typed_items_type));
    assert_null(m);
    assert_int_equal(shmrpc_map_unlink(TYPED_MAP_ITEMS), 0);

    /* Untyped first, then typed: refused too. */
    shmrpc_map_opts_init(&o);
    shmrpc_map *raw = NULL;
    assert_int_equal(shmrpc_map_open(&raw, TYPED_MAP_BY_COLOR, &o), 0);
    assert_int_equal(Typed_by_color_open(&m, NULL), SHMRPC_EPROTO);
    assert_non_null(strstr(shmrpc_errmsg(), "untyped"));
    shmrpc_map_close(raw);
    assert_int_equal(shmrpc_map_unlink(TYPED_MAP_BY_COLOR), 0);

    /* A typed map that an untyped handle wrote garbage into. */
    assert_int_equal(Typed_by_color_open(&m, NULL), 0);
    assert_int_equal(shmrpc_map_open(&raw, TYPED_MAP_BY_COLOR, &o), 0);
    uint8_t key = 1; /* green, as msgpack */
    assert_int_equal(shmrpc_map_put(raw, &key, 1, "\xa3xyz", 4), 0);
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    int64_t n;
    int rc = Typed_by_color_get(m, &buf, NULL, typed_Color_green, &n);
    print_message("# %s\n", shmrpc_errmsg());
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(shmrpc_errmsg(), "Typed.by_color"));
    int calls = 0;
    assert_int_not_equal(Typed_by_color_iterate(m, NULL, stop_at_second, &calls), 0);
    assert_int_equal(calls, 0);
    shmrpc_buf_destroy(&buf);
    shmrpc_map_close(raw);
    shmrpc_map_close(m);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(filled_by_one_read_by_another),
        T(other_types_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
