/* SPDX-License-Identifier: MIT */
/* The main of the tests' stream servers (stream-server, gather-server): one service at one
 * address, until SIGTERM. */
#ifndef SHMRPC_TEST_SERVE_UNTIL_TERM_H
#define SHMRPC_TEST_SERVE_UNTIL_TERM_H

#include <shmrpc/server.h>
#include <shmrpc/status.h>

/* Serves svc with handlers at argv[1] (the only argument) with 2 workers until SIGTERM:
 * 0 then, 1 when it could not serve (said on stderr as "prog: why"), 2 for bad usage. */
int test_serve_until_term(const char *prog, int argc, char **argv, const shmrpc_service *svc,
                          const void *handlers);

#endif
