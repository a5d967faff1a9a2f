/* SPDX-License-Identifier: MIT */
/* The named-segment plumbing that the lock, the queue and the map share: checking a
 * name, describing a /dev/shm file, checking the mode and perms asked for and the owner
 * and mode of an existing segment, creating, opening and removing. Each structure keeps its own
 * header checks (magic, version, geometry). kind ("lock", "queue", "map") names the structure in
 * the messages. */
#ifndef SHMRPC_SEGMENT_H
#define SHMRPC_SEGMENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#define SHMRPC__SHM_DIR "/dev/shm"

/* errno's text (strerror is not thread-safe; shmrpc_strerror is). */
const char *shmrpc__seg_syserr(int e);

/* "/dev/shm/PATH: uid U, mode 0MMM" (or only the file when it cannot be stat'ed). */
void shmrpc__seg_describe(const char *path, char *out, size_t cap);

/* 1 to max characters of [A-Za-z0-9_.-]. */
int shmrpc__seg_check_name(const char *kind, const char *name, int max);

/* An open mode up to max_mode, and perms of 0600 plus group/other bits. */
int shmrpc__seg_check_mode(const char *kind, int mode, int max_mode, mode_t perms);

/* The owner and mode of an existing segment against the perms asked for: another uid's
 * segment only when perms share it, and never more open than perms. */
int shmrpc__seg_check_owner(const struct stat *st, const char *kind, const char *name,
                            mode_t perms);

/* shm_open with O_EXCL and perms: the fd in *fd, or SHMRPC_ESYS(EEXIST) without a message
 * when the name exists. The caller then fchmods it to perms (shm_open's mode passes
 * through the umask, which must neither widen nor narrow what was asked) and sizes it. */
int shmrpc__seg_create(const char *kind, const char *path, const char *name, mode_t perms, int *fd);

/* shm_open of an existing segment, read-write: SHMRPC_ENOENT when there is none. */
int shmrpc__seg_open(const char *kind, const char *path, const char *name, int *fd);

/* shm_unlink, when the name exists, before it is made again. */
int shmrpc__seg_remove(const char *kind, const char *path, const char *name);

/* Removes the segment at path only while the name still leads to the file stale (one
 * found half-made, its maker dead): another opener that found it so too may have made a
 * new one there already, which an unlink by name would take from its users. Openers that
 * find it so at the same moment take turns (an flock on it): one removes it, and the
 * others leave alone what they find then. Best effort: the caller looks again. True when
 * this call removed it. */
bool shmrpc__seg_remove_stale(const char *path, const struct stat *stale);

/* The guard against truncation (seg_guard.c): anyone who may open a segment shared with
 * other users (or the same user, by mistake) may shrink its file, and every access of a
 * holder to a page past the new end then raises SIGBUS. A guarded mapping survives it: a
 * process-wide SIGBUS handler, installed at the first guard, puts private zero pages in
 * place of the whole mapping (so that the access completes on memory nobody shares) and
 * marks it cut; the holder looks at the mark (shmrpc__seg_guard_flag) and fails its calls
 * with SHMRPC_ECUT. A SIGBUS anywhere else goes to the handler installed before ours.
 * Returns the guard (-1: none free, and the mapping is not guarded), to give back with
 * shmrpc__seg_unguard before the mapping is unmapped. */
int shmrpc__seg_guard(void *base, size_t len);
void shmrpc__seg_unguard(int g);

/* The guard's cut mark: non-zero once the mapping was replaced. Never NULL (an unguarded
 * mapping's mark stays 0); valid until shmrpc__seg_unguard, after which the guard may be
 * another mapping's, so a holder that saw it set remembers it itself. */
_Atomic uint32_t *shmrpc__seg_guard_flag(int g);

/* How many guarded mappings of this process were cut, ever: 0 in every process but one
 * that met a cut, so that a holder's look at its marks costs one load of a line nobody
 * writes until then. */
extern _Atomic uint32_t shmrpc__seg_cuts;

/* The message of SHMRPC_ECUT: "KIND 'NAME' was cut to SIZE bytes under its holders". */
int shmrpc__seg_cut_fail(const char *kind, const char *name, const char *path);

/* A millisecond's sleep between looks at a segment another process is making. */
void shmrpc__seg_nap(void);

#endif
