/* SPDX-License-Identifier: MIT */
/* A map's names and files in /dev/shm: the names of its header, its generations and its
 * lock, its words for a system call that failed on them (the rest of making and opening
 * one is core/seg_open.c's), whether the name still leads to a handle's map, removing a
 * map (shmrpc_map_unlink), and the message of a cut one. */
#include <shmrpc/map.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "map/map_int.h"

/* --- names and files --------------------------------------------------------------- */

int shmrpc__map_check_name(const char *name)
{
    return shmrpc__seg_check_name("map", name, SHMRPC_MAP_NAME_MAX);
}

void shmrpc__map_hdr_path(char *out, const char *name)
{
    snprintf(out, PATH_CAP, "%s%s", HDR_PREFIX, name);
}

void shmrpc__map_gen_path(char *out, const char *name, uint64_t gen)
{
    snprintf(out, PATH_CAP, "%s%s.%" PRIu64, GEN_PREFIX, name, gen);
}

void shmrpc__map_lock_name(char *out, const char *name)
{
    snprintf(out, SHMRPC_LOCK_NAME_MAX + 1, "map.%s", name);
}

int shmrpc__map_sys_fail(const shmrpc__seg_how *how, enum shmrpc__seg_step step, int err,
                         uint64_t size)
{
    switch (step) {
    case SHMRPC__SEG_SIZE:
        return fail(SHMRPC_ESYS(err), "cannot size map '%s' (%s%s, %" PRIu64 " bytes): %s",
                    how->name, SHM_DIR, how->path, size, syserr(err));
    case SHMRPC__SEG_STAT:
        return fail(SHMRPC_ESYS(err), "cannot stat map '%s' (%s%s): %s", how->name, SHM_DIR,
                    how->path, syserr(err));
    case SHMRPC__SEG_MAP:
    default:
        return fail(SHMRPC_ESYS(err), "cannot map map '%s': %s", how->name, syserr(err));
    }
}

void shmrpc__map_unlink_gen(const char *name, uint64_t gen)
{
    char path[PATH_CAP];
    shmrpc__map_gen_path(path, name, gen);
    shm_unlink(path);
}

/* Whether the map's name still leads to the header this handle opened. Generations are
 * found by the map's name and their number: a handle whose map was removed, or created
 * anew (CREATE_NEW_OVERWRITE), that grew or repaired its own by name would make, replace
 * or remove the new map's files. Looked at before a growth and a repair's unlink, which
 * are rare; a put or a get of such a handle goes on with the map it has mapped. 1 when it
 * does, 0 when it does not (no file, or another), -1 when the stat failed (errno). */
int shmrpc__map_header_named(const char *name, dev_t dev, ino_t ino)
{
    char path[PATH_CAP], full[PATH_CAP + sizeof SHM_DIR];
    shmrpc__map_hdr_path(path, name);
    snprintf(full, sizeof full, "%s%s", SHM_DIR, path);
    struct stat st;
    if (stat(full, &st) != 0) return errno == ENOENT ? 0 : -1;
    return st.st_dev == dev && st.st_ino == ino;
}

/* Whether it does; false also when the stat failed (what it guards is then left alone). */
bool shmrpc__map_names_header(const char *name, dev_t dev, ino_t ino)
{
    return shmrpc__map_header_named(name, dev, ino) == 1;
}

bool shmrpc__map_still_named(shmrpc_map *m)
{
    return shmrpc__map_names_header(m->name, m->hdr_dev, m->hdr_ino);
}

/* The message names the file that was cut: the header, or the generation. */
int shmrpc__map_cut_fail(const shmrpc_map *m)
{
    char path[PATH_CAP];
    if (atomic_load_explicit(m->hdr_cut, memory_order_relaxed) || !m->base)
        shmrpc__map_hdr_path(path, m->name);
    else
        shmrpc__map_gen_path(path, m->name, m->geo.gen);
    return shmrpc__seg_cut_fail("map", m->name, path);
}

/* Removes every generation file of the map numbered below below, listed from d (/dev/shm,
 * closed here): whatever number a dead writer left. */
static void unlink_gens_in(DIR *d, const char *name, uint64_t below)
{
    char prefix[PATH_CAP];
    int n = snprintf(prefix, sizeof prefix, "%s%s.", &GEN_PREFIX[1], name);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, prefix, (size_t)n) != 0) continue;
        const char *rest = de->d_name + n;
        if (!*rest || strspn(rest, "0123456789") != strlen(rest)) continue;
        if (strtoull(rest, NULL, 10) >= below) continue;
        char path[sizeof de->d_name + 2];
        snprintf(path, sizeof path, "/%s", de->d_name);
        shm_unlink(path);
    }
    closedir(d);
}

void shmrpc__map_unlink_gens(const char *name, uint64_t below)
{
    DIR *d = opendir(SHM_DIR);
    if (d) unlink_gens_in(d, name, below);
}

int shmrpc_map_unlink(const char *name)
{
    int rc = shmrpc__map_check_name(name);
    if (rc != 0) return rc;
    char path[PATH_CAP], ln[SHMRPC_LOCK_NAME_MAX + 1];
    shmrpc__map_hdr_path(path, name);
    /* The list of generations first: a header removed without its generations would leave
     * them behind, found only by the removal of a later map of the name. */
    DIR *d = opendir(SHM_DIR);
    if (!d) {
        int err = errno;
        return fail(SHMRPC_ESYS(err), "cannot remove map '%s': cannot list %s: %s", name, SHM_DIR,
                    syserr(err));
    }
    int err = shm_unlink(path) == 0 ? 0 : errno;
    unlink_gens_in(d, name, UINT64_MAX);
    shmrpc__map_lock_name(ln, name);
    shmrpc_lock_unlink(ln);
    if (err == ENOENT) return fail(SHMRPC_ENOENT, "no map '%s'", name);
    if (err) return fail(SHMRPC_ESYS(err), "cannot remove map '%s': %s", name, syserr(err));
    return 0;
}

void shmrpc_map_unlink_quiet(const char *name)
{
    shmrpc__err_begin();
    shmrpc_map_unlink(name);
    shmrpc__err_end(0);
}
