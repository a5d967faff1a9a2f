/* SPDX-License-Identifier: MIT */
/* The echo service's handlers: what a server of echo.svc does with each call. */
#include "echo_handlers.h"

static int echo_raw(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    (void)ctx;
    *out = data; /* the request outlives the handler until the answer is sent */
    return 0;
}

static int echo_json(shmrpc_ctx *ctx, shmrpc_str text, shmrpc_str *out)
{
    (void)ctx;
    *out = text;
    return 0;
}

static int add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b))
        return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "add: %lld + %lld overflows i64", (long long)a,
                                (long long)b);
    *out = a + b;
    return 0;
}

static int centroid(shmrpc_ctx *ctx, echo_list_Point points, echo_Point *out)
{
    if (points.len == 0) return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "centroid of no points");
    double x = 0, y = 0;
    for (size_t i = 0; i < points.len; i++) {
        x += points.items[i].x;
        y += points.items[i].y;
    }
    out->x = x / (double)points.len;
    out->y = y / (double)points.len;
    out->label.has = true;
    out->label.value = SHMRPC_STR("centroid");
    return 0;
}

const Echo_handlers echo_example_handlers = {
    .echo_raw = echo_raw,
    .echo_json = echo_json,
    .add = add,
    .centroid = centroid,
};
