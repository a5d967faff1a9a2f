/* SPDX-License-Identifier: MIT */
/* The named-segment plumbing that the lock, the queue and the map share: checking a
 * name, describing a /dev/shm file, checking the mode and perms asked for and the owner
 * and mode of an existing segment, creating, opening and removing (segment.c); the guard
 * against truncation (seg_guard.c); making a segment and attaching to one, with the waits
 * for its creator (seg_open.c). Each structure keeps its own header checks (magic, version,
 * geometry). kind ("lock", "queue", "map") names the structure in the messages. */
#ifndef SHMRPC_SEGMENT_H
#define SHMRPC_SEGMENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <shmrpc/open_mode.h>

#define SHMRPC__SHM_DIR "/dev/shm"

/* errno's text (strerror is not thread-safe; shmrpc_strerror is). */
const char *shmrpc__seg_syserr(int e);

/* "/dev/shm/PATH: uid U, mode 0MMM" (or only the file when it cannot be stat'ed). */
void shmrpc__seg_describe(const char *path, char *out, size_t cap);

/* 1 to max characters of [A-Za-z0-9_.-]. */
int shmrpc__seg_check_name(const char *kind, const char *name, int max);

/* One of the four open modes, and perms of 0600 plus group/other bits. */
int shmrpc__seg_check_mode(const char *kind, shmrpc_open_mode mode, mode_t perms);

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

/* --- making a segment and attaching to one (seg_open.c) -------------------------------- */

/* How long an opener waits for a creator to size a segment and write its magic: both
 * within this, from the open. */
#define SHMRPC__SEG_INIT_WAIT_NS ((int64_t)1000 * 1000 * 1000)

/* The steps of making or attaching at which a system call may fail, for the caller's own
 * words: sizing the file (fchmod and ftruncate), mapping it, reading its stat. */
enum shmrpc__seg_step { SHMRPC__SEG_SIZE, SHMRPC__SEG_MAP, SHMRPC__SEG_STAT };

/* A segment mapped whole: where, its length (the file's size), and its file's stat (its
 * dev and ino, owner and mode). */
typedef struct shmrpc__seg_mapping {
    void *base;
    size_t len;
    struct stat st;
} shmrpc__seg_mapping;

typedef struct shmrpc__seg_how shmrpc__seg_how;

/* What differs between the structures' segments (a lock's, a queue's, a map's header and
 * its generations), a table of each in its own file. */
typedef struct shmrpc__seg_ops {
    const char *kind; /* "lock", "queue", "map": in the messages */
    int64_t wait_ns;  /* attach: the wait for a creator (0: one look, for a file made whole) */
    /* The status, with the structure's own message, of the failure err of a system call at
     * step, for a segment of size bytes. */
    int (*sys_fail)(const shmrpc__seg_how *how, enum shmrpc__seg_step step, int err, uint64_t size);
    /* attach: the file found, once sized or the wait for it ended (st_size 0 then): 0 to
     * map it, or a failure (a status with its message, or the caller's own code, > 0). */
    int (*check_size)(const shmrpc__seg_how *how, const struct stat *st);
    /* attach: the mapping, once its creator's magic is there or the wait for it ended
     * (magic 0 then): 0 to keep it, or a failure as check_size's, and the mapping goes.
     * What it checked and keeps, it copies (to how->arg): the segment is shared, and
     * what is read again may have changed. */
    int (*check_header)(const shmrpc__seg_how *how, const shmrpc__seg_mapping *s, uint32_t magic);
} shmrpc__seg_ops;

/* One segment, as its opener makes it or attaches to it. */
struct shmrpc__seg_how {
    const shmrpc__seg_ops *ops;
    const char *path; /* the shm_open name */
    const char *name; /* the structure's name */
    mode_t perms;     /* a new one's mode; what an existing one may be at most */
    void *arg;        /* the caller's, for its ops */
};

/* Creates the segment how->path (O_EXCL) of size bytes with how->perms whatever the
 * umask, and maps it whole, with its stat: SHMRPC_ESYS(EEXIST) without a message when the
 * name exists; any later failure removes the file again. The caller then writes the
 * header: a magic that openers wait for (its first 4 bytes) last, with a release store. */
int shmrpc__seg_make(const shmrpc__seg_how *how, uint64_t size, shmrpc__seg_mapping *out);

/* Maps the existing segment open at fd (the caller opens and closes it): waits, within
 * ops->wait_ns, for its creator to size it, with its owner and mode checked at every look
 * (shmrpc__seg_check_owner); check_size; maps it whole; waits, within the same time, for
 * the creator's magic (a release store in its first 4 bytes); check_header. out->st is the
 * file's, also when a check refused it (for a caller that removes what it found stale). */
int shmrpc__seg_attach(const shmrpc__seg_how *how, int fd, shmrpc__seg_mapping *out);

#endif
