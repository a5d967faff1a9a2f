/* SPDX-License-Identifier: MIT */
/* This user's private directory of names (names.h, docs/names.md). */
#include "core/names.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/admin.h>

#define SHM_DIR "/dev/shm"
#define TAKEN_TRIES 4 /* looks, when what it found went before it could use it */

typedef enum { NS_OURS, NS_MISSING, NS_TAKEN, NS_ERROR } ns_state;

/* Whether path is a directory of ours that nobody else may write to (lstat: a symbolic
 * link is not one). One of ours with a looser mode is tightened: only this user, or root,
 * could have loosened it. */
static ns_state look(const char *path, struct stat *st, int *e)
{
    if (lstat(path, st) != 0) {
        *e = errno;
        return *e == ENOENT ? NS_MISSING : NS_ERROR;
    }
    if (!S_ISDIR(st->st_mode) || st->st_uid != geteuid()) return NS_TAKEN;
    if ((st->st_mode & 077) && chmod(path, 0700) != 0) {
        *e = errno;
        return NS_ERROR;
    }
    return NS_OURS;
}

/* Makes path a directory of ours (or only looks, unless create), or finds one there. In a
 * sticky directory (/dev/shm) an entry of ours cannot be renamed or removed by another
 * user, so what look() found stays. */
static ns_state make(const char *path, bool create, struct stat *st, int *e)
{
    ns_state s = look(path, st, e);
    if (s != NS_MISSING || !create) return s;
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        *e = errno;
        return NS_ERROR;
    }
    return look(path, st, e);
}

/* Moves what the directory from holds into the directory to (best effort). */
static void move_entries(const char *from, const char *to)
{
    DIR *d = opendir(from);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char a[SHMRPC__NS_MAX + 320], b[SHMRPC__NS_MAX + 320];
        snprintf(a, sizeof a, "%s/%s", from, e->d_name);
        snprintf(b, sizeof b, "%s/%s", to, e->d_name);
        renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_NOREPLACE);
    }
    if (d) closedir(d);
}

/* Root puts a directory of its own at path in place of another user's entry, in one step
 * (RENAME_EXCHANGE: the name is never free for the squatter to take again), and keeps
 * theirs aside, for whoever wants to know who made it. Two root processes that both found
 * the squatter: the second displaces the first's new directory, so it swaps it back,
 * moves in whatever the first made in its own meanwhile, and removes its own. */
static bool take_back(const char *path)
{
    char aside[SHMRPC__NS_MAX + 64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(aside, sizeof aside, "%s.taken.%d.%ld", path, (int)getpid(), (long)ts.tv_nsec);
    if (mkdir(aside, 0700) != 0) return false;
    if (chmod(aside, 0700) != 0 ||
        renameat2(AT_FDCWD, aside, AT_FDCWD, path, RENAME_EXCHANGE) != 0) {
        rmdir(aside);
        return false;
    }
    struct stat st;
    if (lstat(aside, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0 &&
        (st.st_mode & 077) == 0 &&
        renameat2(AT_FDCWD, aside, AT_FDCWD, path, RENAME_EXCHANGE) == 0) {
        move_entries(aside, path);
        rmdir(aside);
    }
    return true;
}

static int failed(shmrpc_buf *err, int e, const char *what, const char *path)
{
    shmrpc__msg_set(err, "cannot %s %s: %s", what, path, shmrpc_strerror(SHMRPC_ESYS(e)));
    return SHMRPC_ESYS(e);
}

/* $XDG_RUNTIME_DIR/shmrpc, for a user whose /dev/shm name another user took. */
static int from_xdg(char dir[SHMRPC__NS_MAX], bool create, const char *taken,
                    const struct stat *squat, shmrpc_buf *err)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    int e = 0;
    /* Not made nor tightened here (systemd makes it, 0755 for a unit's RuntimeDirectory):
     * it must be ours, and nobody else may create in it. */
    bool ours = xdg && xdg[0] == '/' && lstat(xdg, &st) == 0 && S_ISDIR(st.st_mode) &&
                st.st_uid == geteuid() && (st.st_mode & 022) == 0;
    if (!ours) {
        shmrpc__msg_set(err,
                        "%s, this user's directory of shmrpc names, belongs to uid %u (another "
                        "user made it first), and $XDG_RUNTIME_DIR names no directory of this "
                        "user's to use instead: set XDG_RUNTIME_DIR, or have root remove %s",
                        taken, (unsigned)squat->st_uid, taken);
        return SHMRPC_EPERM;
    }
    int n = snprintf(dir, SHMRPC__NS_MAX, "%s/shmrpc", xdg);
    if (n < 0 || n >= SHMRPC__NS_MAX) {
        shmrpc__msg_set(err, "$XDG_RUNTIME_DIR is longer than %d bytes", SHMRPC__NS_MAX - 8);
        return SHMRPC_EINVAL;
    }
    switch (make(dir, create, &st, &e)) {
    case NS_OURS:
    case NS_MISSING: /* only looking: nothing is there yet */
        return 0;
    case NS_TAKEN:
        shmrpc__msg_set(err, "%s is not a directory of uid %u", dir, (unsigned)geteuid());
        return SHMRPC_EPERM;
    default:
        return failed(err, e, "make", dir);
    }
}

int shmrpc__ns_dir(char dir[SHMRPC__NS_MAX], bool create, shmrpc_buf *err)
{
    snprintf(dir, SHMRPC__NS_MAX, SHM_DIR "/shmrpc-%u", (unsigned)geteuid());
    struct stat st;
    int e = 0;
    /* Root takes its directory back from a squatter even to look, or it would look into
     * the squatter's. */
    if (geteuid() == 0) create = true;
    for (int i = 0; i < TAKEN_TRIES; i++) {
        switch (make(dir, create, &st, &e)) {
        case NS_OURS:
            return 0;
        case NS_ERROR:
            return failed(err, e, "make", dir);
        case NS_MISSING: /* only looking; or made and removed at once, which only root or we
                          * can do */
            if (!create) return 0;
            continue;
        case NS_TAKEN:
            if (geteuid() != 0) {
                char taken[SHMRPC__NS_MAX];
                memcpy(taken, dir, sizeof taken);
                return from_xdg(dir, create, taken, &st, err);
            }
            if (!take_back(dir)) return failed(err, errno, "take back from another user", dir);
        }
    }
    shmrpc__msg_set(err, "cannot make %s: another user keeps making it first", dir);
    return SHMRPC_EBUSY;
}

int shmrpc__ns_path(char *out, size_t cap, const char *name, bool create, shmrpc_buf *err)
{
    char dir[SHMRPC__NS_MAX];
    int rc = shmrpc__ns_dir(dir, create, err);
    if (rc != 0) return rc;
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        shmrpc__msg_set(err, "%s/%s is longer than %zu bytes", dir, name, cap - 1);
        return SHMRPC_EINVAL;
    }
    return 0;
}

int shmrpc_names_dir(char *out, size_t cap)
{
    char dir[SHMRPC__NS_MAX];
    int rc = shmrpc__ns_dir(dir, false, shmrpc__err_begin());
    if (rc == 0 && snprintf(out, cap, "%s", dir) >= (int)cap)
        return shmrpc__err_set(SHMRPC_EINVAL, "%s is longer than %zu bytes", dir, cap - 1);
    return shmrpc__err_end(rc);
}
