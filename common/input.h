/* SPDX-License-Identifier: MIT */
/* Reading what a user names: a file that may turn out to be a FIFO or a device, and text
 * that must be UTF-8. One rule for the .svc front end (idl/) and the supervisor's programs
 * (runtime/config/, supervisor/, web/). Depends on nothing but the C library. */
#ifndef SHMRPC_COMMON_INPUT_H
#define SHMRPC_COMMON_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Opens path with flags (O_RDONLY, or O_WRONLY | O_CREAT ... with mode) as a regular file,
 * without waiting: open() of a FIFO waits for its other end, forever if none comes, so it
 * is opened with O_NONBLOCK and its type checked (fstat) before anything is read or
 * written; O_NONBLOCK is then cleared. Returns the descriptor (O_CLOEXEC, O_NOCTTY), or -1
 * with errno set; a file that is there but no regular file is -1 with errno EINVAL and
 * its type in *kind if kind is not NULL ("a FIFO", "a folder", ...: shmrpc__file_kind), so
 * that a message can say what it is. */
int shmrpc__open_regular(const char *path, int flags, mode_t mode, const char **kind);

/* "a FIFO", "a folder", "a socket", "a character device", "a block device", "a symbolic
 * link" or "not a regular file", for st_mode. */
const char *shmrpc__file_kind(mode_t st_mode);

#endif
