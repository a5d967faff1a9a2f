/* SPDX-License-Identifier: MIT */
/* The named-segment plumbing shared by lock.c, queue_open.c and map/ (segment.h). */
#include "core/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "core/core.h"

const char *shmrpc__seg_syserr(int e)
{
    return shmrpc_strerror(SHMRPC_ESYS(e));
}

void shmrpc__seg_describe(const char *path, char *out, size_t cap)
{
    char file[sizeof SHMRPC__SHM_DIR + 256];
    snprintf(file, sizeof file, "%s%s", SHMRPC__SHM_DIR, path);
    struct stat st;
    if (stat(file, &st) == 0)
        snprintf(out, cap, "%s: uid %u, mode 0%03o", file, (unsigned)st.st_uid,
                 (unsigned)(st.st_mode & 0777));
    else
        snprintf(out, cap, "%s", file);
}

int shmrpc__seg_check_name(const char *kind, const char *name, int max)
{
    if (!name) return shmrpc__err_set(SHMRPC_EINVAL, "%s name is NULL", kind);
    int n = 0;
    for (const char *p = name; *p && n <= max; p++, n++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return shmrpc__err_set(SHMRPC_EINVAL,
                                   "%s name '%.64s' has a character outside [A-Za-z0-9_.-]", kind,
                                   name);
    }
    if (n == 0 || n > max)
        return shmrpc__err_set(SHMRPC_EINVAL, "%s name must be 1 to %d characters", kind, max);
    return 0;
}

int shmrpc__seg_check_mode(const char *kind, shmrpc_open_mode mode, mode_t perms)
{
    if ((unsigned)mode > (unsigned)SHMRPC_CREATE_NEW_EXCLUSIVE)
        return shmrpc__err_set(SHMRPC_EINVAL, "unknown %s mode %d", kind, (int)mode);
    if ((perms & ~(mode_t)0777) || (perms & 0600) != 0600)
        return shmrpc__err_set(SHMRPC_EINVAL, "%s perms 0%o: want 0600 plus group/other bits", kind,
                               (unsigned)perms);
    return 0;
}

int shmrpc__seg_check_owner(const struct stat *st, const char *kind, const char *name, mode_t perms)
{
    unsigned mode = (unsigned)(st->st_mode & 0777);
    bool shared = (perms & 077) != 0;
    if (st->st_uid != geteuid() && !shared)
        return shmrpc__err_set(SHMRPC_EPERM,
                               "%s '%s' belongs to uid %u (mode 0%03o), not to uid %u", kind, name,
                               (unsigned)st->st_uid, mode, (unsigned)geteuid());
    if (mode & 077 & ~(unsigned)perms)
        return shmrpc__err_set(
            SHMRPC_EPERM, "%s '%s' (uid %u) has mode 0%03o, more open than the 0%03o asked for",
            kind, name, (unsigned)st->st_uid, mode, (unsigned)perms);
    return 0;
}

int shmrpc__seg_create(const char *kind, const char *path, const char *name, mode_t perms, int *fd)
{
    *fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, perms);
    if (*fd >= 0) return 0;
    int err = errno;
    if (err == EEXIST) return SHMRPC_ESYS(EEXIST);
    return shmrpc__err_set(SHMRPC_ESYS(err), "cannot create %s '%s' (%s%s): %s", kind, name,
                           SHMRPC__SHM_DIR, path, shmrpc__seg_syserr(err));
}

int shmrpc__seg_open(const char *kind, const char *path, const char *name, int *fd)
{
    *fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (*fd >= 0) return 0;
    int err = errno;
    if (err == ENOENT)
        return shmrpc__err_set(SHMRPC_ENOENT, "no %s '%s' (%s%s)", kind, name, SHMRPC__SHM_DIR,
                               path);
    char who[sizeof SHMRPC__SHM_DIR + 256 + 64];
    shmrpc__seg_describe(path, who, sizeof who);
    return shmrpc__err_set(SHMRPC_ESYS(err), "cannot open %s '%s' (%s): %s", kind, name, who,
                           shmrpc__seg_syserr(err));
}

int shmrpc__seg_remove(const char *kind, const char *path, const char *name)
{
    if (shm_unlink(path) == 0 || errno == ENOENT) return 0;
    int err = errno;
    char who[sizeof SHMRPC__SHM_DIR + 256 + 64];
    shmrpc__seg_describe(path, who, sizeof who);
    return shmrpc__err_set(SHMRPC_ESYS(err), "cannot remove %s '%s' (%s): %s", kind, name, who,
                           shmrpc__seg_syserr(err));
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

bool shmrpc__seg_remove_stale(const char *path, const struct stat *stale)
{
    int fd = shm_open(path, O_RDONLY, 0);
    if (fd < 0) return false;
    struct stat st, now;
    char full[sizeof SHMRPC__SHM_DIR + NAME_MAX + 1]; /* path: "/" and a file name */
    snprintf(full, sizeof full, "%s%s", SHMRPC__SHM_DIR, path);
    /* Under the stale file's own lock, so that of the openers that found it so only the
     * first removes it; the others find it gone, or another file in its place. The lock
     * goes with the descriptor, or with its holder's death. */
    bool removed = fstat(fd, &st) == 0 && same_file(&st, stale) &&
                   flock(fd, LOCK_EX | LOCK_NB) == 0 && stat(full, &now) == 0 &&
                   same_file(&now, stale) && shm_unlink(path) == 0;
    close(fd);
    return removed;
}

int shmrpc__seg_cut_fail(const char *kind, const char *name, const char *path)
{
    char file[sizeof SHMRPC__SHM_DIR + NAME_MAX + 1];
    snprintf(file, sizeof file, "%s%s", SHMRPC__SHM_DIR, path);
    struct stat st;
    if (stat(file, &st) == 0)
        return shmrpc__err_set(SHMRPC_ECUT,
                               "%s '%s' was cut under its holders (%s has %lld bytes now): what it "
                               "held is gone; close it and open it again",
                               kind, name, file, (long long)st.st_size);
    return shmrpc__err_set(SHMRPC_ECUT,
                           "%s '%s' was cut under its holders (and %s is gone): what it held is "
                           "gone; close it and open it again",
                           kind, name, file);
}

void shmrpc__seg_nap(void)
{
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
}
