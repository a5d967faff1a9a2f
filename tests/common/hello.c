/* SPDX-License-Identifier: MIT */
/* See hello.h. */
#include "hello.h"

int test_put_hello(shmrpc_buf *b, const shmrpc__hello *hello)
{
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    size_t at = shmrpc__frame_begin(b, SHMRPC__KIND_HELLO, 0, 0, 0);
    int rc = shmrpc__hello_write(b, SHMRPC__KIND_HELLO, hello, &err) == 0 &&
                     shmrpc__frame_end(b, at) == 0
                 ? 0
                 : -1;
    shmrpc_buf_destroy(&err);
    return rc;
}
