/* SPDX-License-Identifier: MIT */
/* The Calc test service: descriptor, invoke functions and client stubs written by hand
 * the way shmrpcgen writes them. */
#include <string.h>

#include <msgpack.h>

#include "calc_service.h"

const shmrpc_method_info calc_methods[CALC_N] = {
    {"add", CALC_ADD, SHMRPC_ENC_MSGPACK, 0x1111, "add(i64 a,i64 b)->i64"},
    {"big", CALC_BIG, SHMRPC_ENC_MSGPACK, 0x2222, "big(u64 n)->bytes"},
    {"echo", CALC_ECHO, SHMRPC_ENC_RAW, 0x3333, "@raw echo(bytes data)->bytes"},
    {"fail", CALC_FAIL, SHMRPC_ENC_MSGPACK, 0x4444, "fail()->void"},
    {"positive", CALC_POSITIVE, SHMRPC_ENC_MSGPACK, 0x5555, "positive()->void"},
};

const shmrpc_service_info calc_service_info = {
    .magic = SHMRPC_SERVICE_MAGIC,
    .version = SHMRPC_DESCRIPTOR_VERSION,
    .name = "Calc",
    .svc_name = "calc_serv",
    .port = 5556,
    .fingerprint = 0xabcdef,
    .n_methods = CALC_N,
    .methods = calc_methods,
};

static int invoke_add(shmrpc_ctx *ctx, const void *handlers, shmrpc_bytes req, shmrpc_buf *resp)
{
    const calc_handlers *h = handlers;
    shmrpc_mp_reader r;
    shmrpc_mp_reader_init(&r, req.ptr, req.len);
    uint32_t n;
    int64_t a, b, sum;
    int rc = shmrpc_mp_read_array(&r, &n);
    if (!rc && n != 2) rc = SHMRPC_EINVAL, r.why = "expected 2 arguments";
    if (rc) return shmrpc_ctx_decode_error(ctx, "Calc.add", "arguments", r.field, r.why);
    if (shmrpc_mp_read_int(&r, INT64_MIN, INT64_MAX, &a))
        return shmrpc_ctx_decode_error(ctx, "Calc.add", "argument 'a'", r.field, r.why);
    if (shmrpc_mp_read_int(&r, INT64_MIN, INT64_MAX, &b))
        return shmrpc_ctx_decode_error(ctx, "Calc.add", "argument 'b'", r.field, r.why);
    if (shmrpc_mp_finish(&r))
        return shmrpc_ctx_decode_error(ctx, "Calc.add", "arguments", r.field, r.why);
    rc = h->add(ctx, a, b, &sum);
    if (rc) return rc;
    msgpack_packer pk;
    msgpack_packer_init(&pk, resp, shmrpc_buf_msgpack_write);
    msgpack_pack_int64(&pk, sum);
    return resp->err;
}

static int invoke_big(shmrpc_ctx *ctx, const void *handlers, shmrpc_bytes req, shmrpc_buf *resp)
{
    const calc_handlers *h = handlers;
    shmrpc_mp_reader r;
    shmrpc_mp_reader_init(&r, req.ptr, req.len);
    uint64_t n;
    if (shmrpc_mp_read_uint(&r, UINT64_MAX, &n) || shmrpc_mp_finish(&r))
        return shmrpc_ctx_decode_error(ctx, "Calc.big", "argument 'n'", r.field, r.why);
    return h->big(ctx, n, resp);
}

static int invoke_echo(shmrpc_ctx *ctx, const void *handlers, shmrpc_bytes req, shmrpc_buf *resp)
{
    return ((const calc_handlers *)handlers)->echo(ctx, req, resp);
}

static int invoke_fail(shmrpc_ctx *ctx, const void *handlers, shmrpc_bytes req, shmrpc_buf *resp)
{
    (void)req, (void)resp;
    return ((const calc_handlers *)handlers)->fail(ctx);
}

static int invoke_positive(shmrpc_ctx *ctx, const void *handlers, shmrpc_bytes req,
                           shmrpc_buf *resp)
{
    (void)req, (void)resp;
    return ((const calc_handlers *)handlers)->positive(ctx);
}

static const shmrpc_invoke_fn calc_invoke[CALC_N] = {
    invoke_add, invoke_big, invoke_echo, invoke_fail, invoke_positive,
};

static const size_t calc_offsets[CALC_N] = {
    offsetof(calc_handlers, add),  offsetof(calc_handlers, big),      offsetof(calc_handlers, echo),
    offsetof(calc_handlers, fail), offsetof(calc_handlers, positive),
};

const shmrpc_service calc_service = {
    .magic = SHMRPC_SERVICE_MAGIC,
    .version = SHMRPC_DESCRIPTOR_VERSION,
    .info = &calc_service_info,
    .invoke = calc_invoke,
    .handler_offset = calc_offsets,
    .handlers_size = sizeof(calc_handlers),
};

/* --- default handlers --- */

static int h_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *sum)
{
    unsigned long *calls = shmrpc_ctx_user(ctx);
    if (calls) __atomic_add_fetch(calls, 1, __ATOMIC_RELAXED);
    /* Exercise the call's arena: it must be empty at the start of every call. */
    if (shmrpc_arena_used(shmrpc_ctx_arena(ctx)) != 0)
        return shmrpc_ctx_error(ctx, SHMRPC_EHANDLER, "arena not reset");
    if (!shmrpc_arena_alloc(shmrpc_ctx_arena(ctx), 100, 8)) return SHMRPC_ENOMEM;
    if (__builtin_add_overflow(a, b, sum))
        return shmrpc_ctx_error(ctx, SHMRPC_EHANDLER, "%lld + %lld overflows", (long long)a,
                                (long long)b);
    return 0;
}

static int h_big(shmrpc_ctx *ctx, uint64_t n, shmrpc_buf *out)
{
    (void)ctx;
    for (uint64_t i = 0; i < n; i++)
        shmrpc_buf_append(out, "x", 1);
    return 0;
}

static int h_echo(shmrpc_ctx *ctx, shmrpc_bytes in, shmrpc_buf *out)
{
    (void)ctx;
    return shmrpc_buf_append(out, in.ptr, in.len);
}

static int h_fail(shmrpc_ctx *ctx)
{
    return shmrpc_ctx_error(ctx, SHMRPC_EHANDLER, "boom %d", 7);
}

static int h_positive(shmrpc_ctx *ctx)
{
    (void)ctx;
    return 3;
}

const calc_handlers calc_default_handlers = {
    .add = h_add,
    .big = h_big,
    .echo = h_echo,
    .fail = h_fail,
    .positive = h_positive,
};

/* --- client stubs --- */

int calc_add(shmrpc_client *c, int64_t a, int64_t b, int64_t *sum)
{
    shmrpc_buf *req = shmrpc_client_request(c);
    msgpack_packer pk;
    msgpack_packer_init(&pk, req, shmrpc_buf_msgpack_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int64(&pk, a);
    msgpack_pack_int64(&pk, b);
    shmrpc_bytes resp;
    int rc = shmrpc_client_call(c, CALC_ADD, &resp);
    if (rc) return rc;
    shmrpc_mp_reader r;
    shmrpc_mp_reader_init(&r, resp.ptr, resp.len);
    if (shmrpc_mp_read_int(&r, INT64_MIN, INT64_MAX, sum) || shmrpc_mp_finish(&r))
        return shmrpc_client_decode_error(c, "Calc.add", r.field, r.why);
    return 0;
}

int calc_echo(shmrpc_client *c, shmrpc_bytes in, shmrpc_bytes *out)
{
    shmrpc_buf *req = shmrpc_client_request(c);
    shmrpc_buf_append(req, in.ptr, in.len);
    return shmrpc_client_call(c, CALC_ECHO, out);
}

int calc_big(shmrpc_client *c, uint64_t n, shmrpc_bytes *out)
{
    shmrpc_buf *req = shmrpc_client_request(c);
    msgpack_packer pk;
    msgpack_packer_init(&pk, req, shmrpc_buf_msgpack_write);
    msgpack_pack_uint64(&pk, n);
    return shmrpc_client_call(c, CALC_BIG, out);
}

static int call_void(shmrpc_client *c, uint32_t id)
{
    shmrpc_client_request(c);
    shmrpc_bytes resp;
    return shmrpc_client_call(c, id, &resp);
}

int calc_fail(shmrpc_client *c)
{
    return call_void(c, CALC_FAIL);
}

int calc_positive(shmrpc_client *c)
{
    return call_void(c, CALC_POSITIVE);
}
