/* SPDX-License-Identifier: MIT */
/* The supervisors of this user that are running: each shmrpc-service writes one file in
 * the registry folder while it serves its control service, so that shmrpcctl finds it
 * without being told the service.ini (docs/shmrpcctl.md, "Which supervisor").
 *
 * The folder is $XDG_RUNTIME_DIR/shmrpc when XDG_RUNTIME_DIR is set (a login session and
 * systemd --user set it), else /tmp/shmrpc-UID; either is made 0700 and must belong to
 * this user. A file is PID.sup, key=value lines written whole (a temporary file renamed):
 * pid, start (the process's start time in clock ticks, /proc/PID/stat field 22), ini (the
 * real path), control (its shm:// address) and page (http://HOST:PORT/, or none). A file
 * whose process is gone, or whose pid now names another process (its start differs), is
 * stale: cfg_registry_list removes it. */
#ifndef SHMRPC_CONFIG_REGISTRY_H
#define SHMRPC_CONFIG_REGISTRY_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cfg_sup {
    pid_t pid;
    char ini[4096];
    char control[128];
    char page[128];
} cfg_sup;

/* The registry folder, made when missing (make nonzero); 0, or SHMRPC_ESYS(errno): EPERM
 * when it belongs to another user or lets others in. */
int cfg_registry_dir(char *out, size_t cap, int make);

/* Writes this process's file (the caller's pid); path (PATH_MAX bytes) receives its path
 * for cfg_registry_remove. 0, or SHMRPC_ESYS(errno). */
int cfg_registry_add(const cfg_sup *s, char *path, size_t cap);

void cfg_registry_remove(const char *path);

/* The running supervisors, ordered by pid, in *out (free() it); the stale files removed.
 * No folder: none. 0, or SHMRPC_ENOMEM, or SHMRPC_ESYS(errno). */
int cfg_registry_list(cfg_sup **out, size_t *n);

#ifdef __cplusplus
}
#endif
#endif
