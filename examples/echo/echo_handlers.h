/* SPDX-License-Identifier: MIT */
/* The echo service's handlers and the calls its example client makes. */
#ifndef ECHO_HANDLERS_H
#define ECHO_HANDLERS_H

#include <stdio.h>

#include "echo.h"

extern const Echo_handlers echo_example_handlers;

/* Calls every method of the service through c and prints what came back to out.
 * Returns 0, or the status of the first call that failed. */
int echo_example_calls(shmrpc_client *c, FILE *out);

#endif
