/* SPDX-License-Identifier: MIT */
/* The runtime's version, and the version of the contract between it and generated code. */
#ifndef SHMRPC_VERSION_H
#define SHMRPC_VERSION_H

#include <shmrpc/decls.h>

#define SHMRPC_VERSION_MAJOR 0
#define SHMRPC_VERSION_MINOR 1
#define SHMRPC_VERSION_PATCH 0
#define SHMRPC_VERSION_STRING "0.1.0"
#define SHMRPC_VERSION                                                                             \
    (SHMRPC_VERSION_MAJOR * 10000 + SHMRPC_VERSION_MINOR * 100 + SHMRPC_VERSION_PATCH)

/* Bumped whenever generated code and this runtime stop fitting together (descriptor
 * layout, codec helpers, stub calling convention). Generated headers #error on a mismatch. */
#define SHMRPC_CODEGEN_VERSION 3

SHMRPC_BEGIN_DECLS

/* The version of the library actually linked, e.g. "0.1.0". */
const char *shmrpc_version(void);

SHMRPC_END_DECLS
#endif
