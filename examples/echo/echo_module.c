/* SPDX-License-Identifier: MIT */
/* The echo service as a module: what `module = echo-module.so` in a service.ini loads
 * (docs/service-ini.md). The handlers are echo-server's; the supervisor does the rest. */
#include <shmrpc/module.h>

#include "echo_handlers.h"

SHMRPC_MODULE(Echo_service, echo_example_handlers, NULL, NULL);
