/* SPDX-License-Identifier: MIT */
/* Handlers of tests/dynamic/every.svc that hand back what they are given (first() its
 * first argument, fourth_json() its fourth), for dynamic_test and fuzz-dynamic. */
#include "every_handlers.h"

/* h_NAME: a handler that hands back the NAME it is given. */
#define IDENTITY(name, type)                                                                       \
    static int h_##name(shmrpc_ctx *ctx, const type *v, type *out)                                 \
    {                                                                                              \
        (void)ctx;                                                                                 \
        *out = *v;                                                                                 \
        return 0;                                                                                  \
    }
IDENTITY(scalars, every_Scalars)
IDENTITY(holder, every_Holder)
IDENTITY(keys, every_Keys)
IDENTITY(node, every_Node)
IDENTITY(dynamic, every_Dynamic)

typedef __typeof__(((every_Holder *)0)->os) opt_string;
typedef __typeof__(((every_Holder *)0)->osg) opt_sign;
typedef __typeof__(((every_Keys *)0)->i16k) i16_map;

static int h_first(shmrpc_ctx *ctx, int8_t a, uint16_t b, every_Color c, float d, bool e,
                   opt_string f, opt_sign g, int8_t *out)
{
    (void)ctx, (void)b, (void)c, (void)d, (void)e, (void)f, (void)g;
    *out = a;
    return 0;
}

static int h_fourth(shmrpc_ctx *ctx, int8_t a, uint16_t b, every_Color c, float d, bool e,
                    opt_string f, opt_sign g, float *out)
{
    (void)ctx, (void)a, (void)b, (void)c, (void)e, (void)f, (void)g;
    *out = d;
    return 0;
}

static int h_sign(shmrpc_ctx *ctx, opt_sign s, opt_sign *out)
{
    (void)ctx;
    *out = s;
    return 0;
}

static int h_map(shmrpc_ctx *ctx, i16_map m, i16_map *out)
{
    (void)ctx;
    *out = m;
    return 0;
}

static int h_nothing(shmrpc_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static int h_raw(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    (void)ctx;
    *out = data;
    return 0;
}

const Every_handlers every_identity = {
    .pass_scalars = h_scalars,
    .pass_scalars_json = h_scalars,
    .pass_holder = h_holder,
    .pass_holder_json = h_holder,
    .pass_keys = h_keys,
    .pass_keys_json = h_keys,
    .pass_node = h_node,
    .pass_node_json = h_node,
    .pass_any = h_dynamic,
    .pass_any_json = h_dynamic,
    .first = h_first,
    .fourth_json = h_fourth,
    .pass_sign = h_sign,
    .pass_map = h_map,
    .nothing = h_nothing,
    .nothing_json = h_nothing,
    .raw = h_raw,
};
