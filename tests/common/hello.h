/* SPDX-License-Identifier: MIT */
/* The HELLO frame a client opens a tcp:// connection with, for the tests that speak the
 * wire protocol by hand. Needs runtime/src on the include path (frame.h). */
#ifndef SHMRPC_TEST_HELLO_H
#define SHMRPC_TEST_HELLO_H

#include "transport/tcp/frame.h"

/* Appends a HELLO frame with hello to b: 0, or -1 when it could not be written. */
int test_put_hello(shmrpc_buf *b, const shmrpc__hello *hello);

#endif
