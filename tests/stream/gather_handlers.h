/* SPDX-License-Identifier: MIT */
/* Handlers of gather.svc's Gather that the tests of client streams share
 * (client_stream_test.c, and gather-server for shmrpcctl's): each compiled into its target,
 * with the gather.h generated for it. */
#ifndef SHMRPC_TEST_GATHER_HANDLERS_H
#define SHMRPC_TEST_GATHER_HANDLERS_H

#include <stdatomic.h>
#include <stdint.h>

#include "gather.h"

/* What the handlers saw, for a test in their process to read: the items read, the status
 * the last read or wait gave, and whether a handler returned (set as it does). */
extern _Atomic int64_t test_gather_read;
extern _Atomic int test_gather_status;
extern _Atomic int test_gather_returned;

/* sum, deaf, doubled, concat, drain and stuck, as gather.svc says. */
extern const Gather_handlers test_gather_handlers;

#endif
