/* SPDX-License-Identifier: MIT */
/* A free TCP port on loopback, for the tests and the benchmarks that start servers on
 * tcp://127.0.0.1. Depends on nothing but the C library. */
#ifndef SHMRPC_TEST_PORT_H
#define SHMRPC_TEST_PORT_H

/* A port on 127.0.0.1 that was free a moment ago (bound to port 0 and let go), or 0. */
int test_free_port(void);

#endif
