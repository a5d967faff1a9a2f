/* SPDX-License-Identifier: MIT */
/* Shared objects the supervisor must refuse as modules (module_test.c, module_refused):
 * BAD_MODULE 1 exports no shmrpc_module_v1, 2 one of a later version, 3 one with handlers
 * but no service descriptor. */
#include <shmrpc/module.h>

#if BAD_MODULE == 1
__attribute__((visibility("default"))) int bad_module_exports_nothing_of_shmrpc = 1;
#elif BAD_MODULE == 2
__attribute__((visibility("default"))) const shmrpc_module shmrpc_module_v1 = {
    SHMRPC_MODULE_MAGIC, SHMRPC_MODULE_VERSION + 1, NULL, NULL, NULL, NULL};
#elif BAD_MODULE == 3
static const int some_handlers; /* handlers, but no descriptor */
__attribute__((visibility("default"))) const shmrpc_module shmrpc_module_v1 = {
    SHMRPC_MODULE_MAGIC, SHMRPC_MODULE_VERSION, NULL, &some_handlers, NULL, NULL};
#else
#error "BAD_MODULE is 1, 2 or 3"
#endif
