/* SPDX-License-Identifier: MIT */
/* How an open of a named object in shared memory (a lock, a queue, a map) treats one that
 * exists or does not: the four modes the three share (speedysvc's). */
#ifndef SHMRPC_OPEN_MODE_H
#define SHMRPC_OPEN_MODE_H

/* Each structure's header keeps its own names too (SHMRPC_LOCK_CONNECT_OR_CREATE, ...):
 * the same values. A queue's CONNECT_TO_EXISTING first waits up to its attach timeout. */
typedef enum shmrpc_open_mode {
    SHMRPC_CONNECT_OR_CREATE = 0,    /* open it, creating it if missing */
    SHMRPC_CONNECT_TO_EXISTING = 1,  /* open it; SHMRPC_ENOENT if missing */
    SHMRPC_CREATE_NEW_OVERWRITE = 2, /* remove any existing one, create it fresh */
    SHMRPC_CREATE_NEW_EXCLUSIVE = 3, /* create it; SHMRPC_EBUSY if it exists */
} shmrpc_open_mode;

#endif
