/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the TCP wire codec (runtime/src/transport/tcp/frame.c) on arbitrary bytes. The first
 * byte picks what the rest is: a whole frame (header, then its body by kind), a snappy or
 * zlib body, a HELLO or HELLO_ACK body, or an ERROR body. A bad input may cost a status;
 * a crash, a leak, an output beyond its bound, or a parse that does not survive its own
 * re-encoding is a finding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/tcp/frame.h"

#define MAX_MSG (1u << 20)

/* The table a server of this target serves, for the handshake's checks. */
static const shmrpc_method_info methods[] = {
    {"add", 0, SHMRPC_ENC_MSGPACK, 0x11, "i64 add(i64 a, i64 b)"},
    {"echo", 1, SHMRPC_ENC_RAW, 0x22, "bytes echo(bytes data)"},
};
static const shmrpc_service_info server = {
    SHMRPC_SERVICE_MAGIC, SHMRPC_DESCRIPTOR_VERSION, "Calc", "Calc", 0, 0xfeed, 2, methods, 0, NULL};

static shmrpc_buf out, err, again;
static shmrpc_arena *arena;

static void decompress(uint16_t flag, shmrpc_bytes body)
{
    int rc = shmrpc__body_decompress(flag, body, MAX_MSG, &out, &err);
    if (rc == 0 && (out.len == 0 || out.len > MAX_MSG)) abort();
    if (rc != 0 && rc != SHMRPC_EPROTO && rc != SHMRPC_ETOOBIG && rc != SHMRPC_ENOMEM) abort();
    if (rc == 0) { /* what decompressed compresses and comes back */
        uint16_t used;
        shmrpc_buf_clear(&again);
        if (shmrpc__body_compress(flag, shmrpc_bytes_of(out.data, out.len), &again, &used) != 0)
            abort();
        if (used) {
            size_t n = out.len;
            uint8_t *copy = malloc(n);
            if (!copy) abort();
            memcpy(copy, out.data, n);
            if (shmrpc__body_decompress(flag, shmrpc_bytes_of(again.data, again.len), MAX_MSG, &out,
                                        &err) != 0 ||
                out.len != n || memcmp(out.data, copy, n) != 0)
                abort();
            free(copy);
        }
    }
}

static void hello(unsigned kind, shmrpc_bytes body)
{
    shmrpc__hello h, h2, ack;
    shmrpc_arena_reset(arena);
    if (shmrpc__hello_parse(body, kind, arena, &h, &err) != 0) return;
    /* A parsed table is one the method map can walk, and survives re-encoding. */
    shmrpc_buf_clear(&again);
    if (shmrpc__hello_write(&again, kind, &h, &err) != 0) abort();
    if (shmrpc__hello_parse(shmrpc_bytes_of(again.data, again.len), kind, arena, &h2, &err) != 0)
        abort();
    if (h2.info.n_methods != h.info.n_methods || h2.info.fingerprint != h.info.fingerprint ||
        strcmp(h2.info.name, h.info.name) != 0 || h2.max_msg != h.max_msg)
        abort();
    if (kind == SHMRPC__KIND_HELLO) {
        int rc = shmrpc__hello_answer(&h, &server, SHMRPC__FLAG_COMPRESSION, 4096, MAX_MSG, arena,
                                      &ack, &err);
        if (rc != 0 && rc != SHMRPC_EMISMATCH && rc != SHMRPC_ENOMEM) abort();
    } else {
        shmrpc__hello mine = {.proto = 1, .info = server, .compression = 3, .max_msg = MAX_MSG};
        uint32_t map[2];
        if (shmrpc__hello_accept(&mine, &h, &err) == 0)
            shmrpc__method_map(&mine.info, &h.info, map, &err, NULL);
    }
}

static void error_body(shmrpc_bytes body)
{
    int status;
    shmrpc_str msg;
    if (shmrpc__error_parse(body, &status, &msg, &err) != 0) return;
    if (status >= 0 || msg.len > SHMRPC__WIRE_MAX_ERRMSG) abort();
}

static void frame(const uint8_t *p, size_t n)
{
    shmrpc__frame_hdr h;
    /* The handshake's limit, and both compressions and streams agreed, to reach every path. */
    if (shmrpc__frame_hdr_decode(p, n, SHMRPC__WIRE_MAX_HELLO,
                                 SHMRPC__FLAG_COMPRESSION | SHMRPC__AGREED_STREAMS, &h, &err) != 0)
        return;
    if (h.body_len > n - SHMRPC__FRAME_HDR_SIZE) return; /* the rest has not arrived */
    shmrpc_bytes body = shmrpc_bytes_of(p + SHMRPC__FRAME_HDR_SIZE, h.body_len);
    switch (h.kind) {
    case SHMRPC__KIND_HELLO:
    case SHMRPC__KIND_HELLO_ACK:
        hello(h.kind, body);
        break;
    case SHMRPC__KIND_ERROR:
        error_body(body);
        break;
    case SHMRPC__KIND_REQUEST:
    case SHMRPC__KIND_RESPONSE:
    case SHMRPC__KIND_ITEMS:
        if (h.flags & SHMRPC__FLAG_COMPRESSION)
            decompress(h.flags & SHMRPC__FLAG_COMPRESSION, body);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!arena) arena = shmrpc_arena_new(0);
    if (size < 1) return 0;
    shmrpc_bytes rest = shmrpc_bytes_of(data + 1, size - 1);
    switch (data[0] % 6) {
    case 0:
        frame(rest.ptr, rest.len);
        break;
    case 1:
        decompress(SHMRPC__FLAG_SNAPPY, rest);
        break;
    case 2:
        decompress(SHMRPC__FLAG_ZLIB, rest);
        break;
    case 3:
        hello(SHMRPC__KIND_HELLO, rest);
        break;
    case 4:
        hello(SHMRPC__KIND_HELLO_ACK, rest);
        break;
    case 5:
        error_body(rest);
        break;
    }
    return 0;
}
