/* SPDX-License-Identifier: MIT */
/* The version of the library actually linked, for programs that check it at run time. */
#include <shmrpc/version.h>

const char *shmrpc_version(void)
{
    return SHMRPC_VERSION_STRING;
}
