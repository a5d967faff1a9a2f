/* SPDX-License-Identifier: MIT */
/* Handlers of shop_v2.svc for big_test's client of protocol revision 5: get(id) answers
 * {id, "item<id>", no note}; list_items no items; the others what shop.c's v2 server
 * answers. */
#include <stdio.h>
#include <string.h>

#include "shop_v2.h"

static int h_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    (void)ctx;
    *out = a + b;
    return 0;
}

static int h_get(shmrpc_ctx *ctx, int64_t id, shop_Item *out)
{
    static char name[32];
    memset(out, 0, sizeof *out);
    snprintf(name, sizeof name, "item%lld", (long long)id);
    out->id = id;
    out->name = shmrpc_str_c(name);
    (void)ctx;
    return 0;
}

static int h_sum(shmrpc_ctx *ctx, shop_list_I64 xs, shop_opt_I64 start, int64_t *out)
{
    *out = start.has ? start.value : 0;
    for (size_t i = 0; i < xs.len; i++)
        *out += xs.items[i];
    (void)ctx;
    return 0;
}

static int h_paint(shmrpc_ctx *ctx, shop_Color c, shop_Color *out)
{
    (void)ctx;
    *out = c;
    return 0;
}

static int h_list_items(shmrpc_ctx *ctx, int64_t n, shop_list_Item *out)
{
    (void)ctx, (void)n;
    *out = (shop_list_Item){NULL, 0};
    return 0;
}

const Shop_handlers shop_handlers = {.add = h_add,
                                     .get = h_get,
                                     .get_json = h_get,
                                     .sum = h_sum,
                                     .sum_json = h_sum,
                                     .paint = h_paint,
                                     .list_items = h_list_items};
