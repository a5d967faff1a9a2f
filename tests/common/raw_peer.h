/* SPDX-License-Identifier: MIT */
/* A raw tcp:// client for the tests that speak the wire protocol by hand (docs/wire.md):
 * send, read the next frame, the handshake, and a call's answer or error. Needs procs.c
 * (test_raw_recv) and hello.c. */
#ifndef SHMRPC_TEST_RAW_PEER_H
#define SHMRPC_TEST_RAW_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hello.h"

/* Sends all n bytes at p on fd: false when it could not. */
bool test_raw_send(int fd, const void *p, size_t n);

/* Sends a frame of kind, with flags, method, request id rid and a body of n bytes at body,
 * uncompressed: false when it could not. */
bool test_raw_send_frame(int fd, uint8_t kind, uint16_t flags, uint32_t method, uint64_t rid,
                         const void *body, size_t n);

/* Reads the next frame within 5 s: its header into *h, its body into b (cleared first);
 * false at EOF, an error, the deadline or a header that does not decode (with no compression
 * and revision 8's frames agreed). */
bool test_raw_frame(int fd, shmrpc__frame_hdr *h, shmrpc_buf *b);

/* Sends a HELLO of revision SHMRPC__WIRE_PROTO for info (threshold 4096, 1 MiB messages, no
 * compression) and reads its HELLO_ACK: false when anything else came. */
bool test_raw_handshake(int fd, const shmrpc_service_info *info);

/* The same, offering revision proto. */
bool test_raw_handshake_at(int fd, const shmrpc_service_info *info, uint32_t proto);

/* The answer in a frame read with test_raw_frame: 0 for a RESPONSE, its body as text in
 * text; the status of an ERROR, its message in text; SHMRPC_EPROTO (and "not an answer")
 * for any other kind or an ERROR body that does not parse. */
int test_raw_answer(const shmrpc__frame_hdr *h, const shmrpc_buf *b, char *text, size_t cap);

#endif
