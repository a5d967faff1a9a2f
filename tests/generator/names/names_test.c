/* SPDX-License-Identifier: MIT */
/* The names of names.svc, which a user may write beside the generated code's own, compile
 * and work end to end over inproc://: parameters named out, rc, ctx, c, req, ...; methods
 * named like the containers beside them; a struct and a method that differ only in case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "names.h"

static int stats(shmrpc_ctx *ctx, names_Stats *out)
{
    (void)ctx;
    out->calls = 7;
    return 0;
}

static int total(shmrpc_ctx *ctx, names_list_I64 xs, names_Total *out)
{
    (void)ctx;
    for (size_t i = 0; i < xs.len; i++)
        out->sum += xs.items[i];
    return 0;
}

/* Weighted, so that two parameters passed in each other's place would show. */
static int64_t weigh(const int64_t *v, int n)
{
    int64_t s = 0;
    for (int i = 0; i < n; i++)
        s += v[i] * (i + 1);
    return s;
}

static int sum(shmrpc_ctx *ctx_, int64_t out, int64_t rc, int64_t ctx, int64_t c, int64_t req,
               int64_t resp, int64_t buf, int64_t len, int64_t data, int64_t self, int64_t arena,
               int64_t call, int64_t *out_)
{
    (void)ctx_;
    const int64_t v[] = {out, rc, ctx, c, req, resp, buf, len, data, self, arena, call};
    *out_ = weigh(v, 12);
    return 0;
}

static int sum_json(shmrpc_ctx *ctx_, int64_t out, int64_t rc, int64_t ctx, int64_t c, int64_t req,
                    int64_t resp, int64_t buf, int64_t len, int64_t data, int64_t self,
                    int64_t arena, int64_t call, int64_t client, int64_t r, int64_t pk,
                    int64_t *out_)
{
    (void)ctx_;
    const int64_t v[] = {out,  rc,   ctx,   c,    req,    resp, buf, len,
                         data, self, arena, call, client, r,    pk};
    *out_ = weigh(v, 15);
    return 0;
}

static int echo_raw(shmrpc_ctx *ctx, shmrpc_bytes out, shmrpc_bytes *out_)
{
    (void)ctx;
    *out_ = out;
    return 0;
}

static int list_item(shmrpc_ctx *ctx, names_list_Item items, names_list_Item *out)
{
    (void)ctx;
    *out = items;
    return 0;
}

static int map_string_item(shmrpc_ctx *ctx, names_map_String_Item m, names_map_String_Item *out)
{
    (void)ctx;
    *out = m;
    return 0;
}

static int opt_item(shmrpc_ctx *ctx, const names_Item *i, const names_Item **out)
{
    (void)ctx;
    *out = i;
    return 0;
}

static int list_i64(shmrpc_ctx *ctx, names_list_I64 v, names_list_I64 *out)
{
    (void)ctx;
    *out = v;
    return 0;
}

static int opt_i64(shmrpc_ctx *ctx, names_opt_I64 v, names_opt_I64 *out)
{
    (void)ctx;
    *out = v;
    return 0;
}

static int handlers(shmrpc_ctx *ctx, names_Method add, names_Handlers *out)
{
    (void)ctx;
    out->on = add == names_Method_sub;
    return 0;
}

static int service(shmrpc_ctx *ctx, int64_t *out)
{
    (void)ctx;
    *out = 1;
    return 0;
}

static int service_info(shmrpc_ctx *ctx, int64_t *out)
{
    (void)ctx;
    *out = 2;
    return 0;
}

static int add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    (void)ctx;
    *out = a + b;
    return 0;
}

static const Names_handlers names_impl = {
    .stats = stats,
    .total = total,
    .sum = sum,
    .sum_json = sum_json,
    .echo_raw = echo_raw,
    .list_item = list_item,
    .map_string_item = map_string_item,
    .opt_item = opt_item,
    .list_i64 = list_i64,
    .opt_i64 = opt_i64,
    .handlers = handlers,
    .service = service,
    .service_info = service_info,
    .add = add,
};

typedef struct fixture {
    shmrpc_server *s;
    shmrpc_client *c;
} fixture;

static int setup(void **state)
{
    static fixture f;
    assert_int_equal(shmrpc_server_new(&f.s, NULL), 0);
    assert_int_equal(shmrpc_server_register(f.s, &Names_service, &names_impl, NULL), 0);
    assert_int_equal(shmrpc_server_listen(f.s, "inproc://names"), 0);
    assert_int_equal(shmrpc_client_new(&f.c, &Names_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(f.c, "inproc://names"), 0);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    shmrpc_client_free(f->c);
    shmrpc_server_free(f->s);
    return 0;
}

static void parameters_named_like_locals(void **state)
{
    shmrpc_client *c = ((fixture *)*state)->c;
    const int64_t v[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    int64_t r;
    assert_int_equal(names_sum(c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, &r), 0);
    assert_int_equal(r, weigh(v, 12));
    assert_int_equal(names_sum_json(c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, &r), 0);
    assert_int_equal(r, weigh(v, 15));
    shmrpc_bytes raw;
    assert_int_equal(names_echo_raw(c, shmrpc_bytes_of("abc", 3), &raw), 0);
    assert_int_equal(raw.len, 3);
    assert_memory_equal(raw.ptr, "abc", 3);
}

static void methods_named_like_containers(void **state)
{
    shmrpc_client *c = ((fixture *)*state)->c;
    const names_Item items[] = {{SHMRPC_STR("a"), 1}, {SHMRPC_STR("b"), 2}};
    names_list_Item li;
    assert_int_equal(names_list_item(c, (names_list_Item){items, 2}, &li), 0);
    assert_int_equal(li.len, 2);
    assert_int_equal(li.items[1].n, 2);

    const names_map_String_Item_entry entries[] = {{SHMRPC_STR("k"), {SHMRPC_STR("v"), 3}}};
    names_map_String_Item m;
    assert_int_equal(names_map_string_item(c, (names_map_String_Item){entries, 1}, &m), 0);
    assert_int_equal(m.len, 1);
    assert_int_equal(m.items[0].value.n, 3);

    const names_Item *oi = NULL;
    assert_int_equal(names_opt_item(c, &items[0], &oi), 0);
    assert_non_null(oi);
    assert_int_equal(oi->n, 1);
    assert_int_equal(names_opt_item(c, NULL, &oi), 0);
    assert_null(oi);

    const int64_t xs[] = {4, 5};
    names_list_I64 l;
    assert_int_equal(names_list_i64(c, (names_list_I64){xs, 2}, &l), 0);
    assert_int_equal(l.len, 2);
    assert_int_equal(l.items[1], 5);
    names_opt_I64 o;
    assert_int_equal(names_opt_i64(c, (names_opt_I64){true, 9}, &o), 0);
    assert_true(o.has);
    assert_int_equal(o.value, 9);
}

static void names_that_differ_in_case(void **state)
{
    shmrpc_client *c = ((fixture *)*state)->c;
    names_Stats st;
    assert_int_equal(names_stats(c, &st), 0);
    assert_int_equal(st.calls, 7);
    const int64_t xs[] = {1, 2, 3};
    names_Total t;
    assert_int_equal(names_total(c, (names_list_I64){xs, 3}, &t), 0);
    assert_int_equal(t.sum, 6);
}

static void methods_named_like_the_service(void **state)
{
    shmrpc_client *c = ((fixture *)*state)->c;
    names_Handlers h;
    assert_int_equal(names_handlers(c, names_Method_sub, &h), 0);
    assert_true(h.on);
    int64_t r;
    assert_int_equal(names_service(c, &r), 0);
    assert_int_equal(r, 1);
    assert_int_equal(names_service_info(c, &r), 0);
    assert_int_equal(r, 2);
    assert_int_equal(names_add(c, 2, 3, &r), 0);
    assert_int_equal(r, 5);
    assert_int_equal(NAMES_METHODS, 14);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parameters_named_like_locals),
        cmocka_unit_test(methods_named_like_containers),
        cmocka_unit_test(names_that_differ_in_case),
        cmocka_unit_test(methods_named_like_the_service),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
