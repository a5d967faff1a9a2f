/* SPDX-License-Identifier: MIT */
/* Seed 004's value, built with the builder by any_test.c and any-node (any_node.c), which
 * test_pipeline.py compares with the Python values: {"sequence_number": seq, "samples":
 * [1.5, 2, -3], "name": "x", "raw": b"\x00\x01", "nested": {"a": [[1], {}]}}. */
#ifndef SHMRPC_TESTS_ANY_PACKET_H
#define SHMRPC_TESTS_ANY_PACKET_H

#include <shmrpc/any.h>

static inline void put_packet(shmrpc_buf *b, int64_t seq)
{
    shmrpc_any_put_map(b, 5);
    shmrpc_any_put_cstr(b, "sequence_number");
    shmrpc_any_put_int(b, seq);
    shmrpc_any_put_cstr(b, "samples");
    shmrpc_any_put_list(b, 3);
    shmrpc_any_put_float(b, 1.5);
    shmrpc_any_put_int(b, 2);
    shmrpc_any_put_int(b, -3);
    shmrpc_any_put_cstr(b, "name");
    shmrpc_any_put_cstr(b, "x");
    shmrpc_any_put_cstr(b, "raw");
    shmrpc_any_put_bytes(b, "\x00\x01", 2);
    shmrpc_any_put_cstr(b, "nested");
    shmrpc_any_put_map(b, 1);
    shmrpc_any_put_cstr(b, "a");
    shmrpc_any_put_list(b, 2);
    shmrpc_any_put_list(b, 1);
    shmrpc_any_put_int(b, 1);
    shmrpc_any_put_map(b, 0);
}

#endif
