/* SPDX-License-Identifier: MIT */
/* Handlers of tests/codec/types.svc that hand back what they are given. */
#include "types_handlers.h"

int types_handler_calls;

static int h_scalars(shmrpc_ctx *ctx, const types_Scalars *v, types_Scalars *out)
{
    types_handler_calls++;
    (void)ctx;
    *out = *v;
    return 0;
}

static int h_holder(shmrpc_ctx *ctx, const types_Holder *v, types_Holder *out)
{
    types_handler_calls++;
    (void)ctx;
    *out = *v;
    return 0;
}

static int h_node(shmrpc_ctx *ctx, const types_Node *v, types_Node *out)
{
    types_handler_calls++;
    (void)ctx;
    *out = *v;
    return 0;
}

static int h_many(shmrpc_ctx *ctx, types_list_U8 v, types_list_U8 *out)
{
    types_handler_calls++;
    (void)ctx;
    *out = v;
    return 0;
}

static int h_many_json(shmrpc_ctx *ctx, types_list_String v, types_list_String *out)
{
    types_handler_calls++;
    (void)ctx;
    *out = v;
    return 0;
}

int types_nothing_calls;

static int h_nothing(shmrpc_ctx *ctx)
{
    types_handler_calls++;
    (void)ctx;
    types_nothing_calls++;
    return 0;
}

static int h_narrow(shmrpc_ctx *ctx, int8_t a, uint16_t b, types_Color c, float d, bool e,
                    int8_t *out)
{
    types_handler_calls++;
    if (b != 65535 || c != types_Color_blue || d != -1.5f || !e)
        return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "narrow: unexpected arguments");
    *out = a;
    return 0;
}

static int h_maybe_sign(shmrpc_ctx *ctx, types_opt_Sign s, types_opt_Sign *out)
{
    types_handler_calls++;
    (void)ctx;
    *out = s;
    return 0;
}

static int h_raw(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    types_handler_calls++;
    (void)ctx;
    *out = data;
    return 0;
}

const Types_handlers types_identity_handlers = {
    .pass_scalars = h_scalars,
    .pass_scalars_json = h_scalars,
    .pass_holder = h_holder,
    .pass_holder_json = h_holder,
    .pass_node = h_node,
    .pass_node_json = h_node,
    .many = h_many,
    .many_json = h_many_json,
    .nothing = h_nothing,
    .nothing_json = h_nothing,
    .narrow = h_narrow,
    .maybe_sign = h_maybe_sign,
    .raw = h_raw,
};
