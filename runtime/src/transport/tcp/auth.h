/* SPDX-License-Identifier: MIT */
/* The shared-secret proofs of the tcp:// handshake (docs/wire.md, "Authentication"). */
#ifndef SHMRPC_SRC_AUTH_H
#define SHMRPC_SRC_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "transport/tcp/frame.h"
#include "rpc/rpc.h"

/* SHMRPC__AUTH_LEN random bytes: a HELLO's nonce or a HELLO_ACK's challenge. */
int shmrpc__auth_nonce(uint8_t out[SHMRPC__AUTH_LEN]);

/* The two proofs of a handshake, keyed with cfg's secret over both handshake bodies as
 * sent (which hold both sides' random bytes): the client's AUTH body and the server's. */
void shmrpc__auth_proofs(const shmrpc__tcp_cfg *cfg, shmrpc_bytes hello, shmrpc_bytes ack,
                         uint8_t client[SHMRPC__AUTH_LEN], uint8_t server[SHMRPC__AUTH_LEN]);

/* Overwrites secrets that are no longer needed, in a way the compiler keeps. */
void shmrpc__auth_wipe(void *p, size_t n);

/* Compares two proofs in constant time. */
bool shmrpc__auth_equal(const uint8_t *a, const uint8_t *b);

#endif
