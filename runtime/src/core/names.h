/* SPDX-License-Identifier: MIT */
/* Where this user's names live: a directory that only this user can create in, for the
 * rendezvous sockets and the control and statistics segments of its services, so that no
 * other user can take a service's name before it starts (docs/names.md). */
#ifndef SHMRPC_SRC_NAMES_H
#define SHMRPC_SRC_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#include "core/core.h"

#define SHMRPC__NS_MAX 128 /* a private directory's path, with its NUL */

/* This user's private directory into dir: /dev/shm/shmrpc-UID, made (0700) when missing if
 * create (a server's, or a creator's), else only looked for (a client's: what is not there
 * has nothing in it). When another user made that name first, root takes it back (renames
 * theirs aside) as it creates, and any other user falls back to $XDG_RUNTIME_DIR/shmrpc.
 * Either is used only as a directory of this user's that nobody else may write to. 0, or
 * a status with why in err. */
int shmrpc__ns_dir(char dir[SHMRPC__NS_MAX], bool create, shmrpc_buf *err);

/* The path of name (no '/') in the private directory into out (cap bytes), the directory
 * made as shmrpc__ns_dir makes it: 0, or a status with why in err (SHMRPC_EINVAL when it
 * does not fit). */
int shmrpc__ns_path(char *out, size_t cap, const char *name, bool create, shmrpc_buf *err);

#endif
