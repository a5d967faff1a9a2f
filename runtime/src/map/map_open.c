/* SPDX-License-Identifier: MIT */
/* Opening a map (creating it, or attaching to one and checking its header; removing one
 * found cut), closing a handle, and auto_unlink's removal at exit. */
#include <shmrpc/map.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "map/map_int.h"

#define DEFAULT_SLOTS 1024u
#define DEFAULT_BYTES (UINT64_C(1) << 20)
#define DEFAULT_MAX_BYTES (UINT64_C(1) << 30)
#define DEFAULT_LOCK_TIMEOUT_MS 10000

/* --- auto_unlink --------------------------------------------------------------------- */

/* Maps that their creating process removes at exit, unless closed first. */
struct doomed {
    struct doomed *next;
    pid_t pid; /* a forked child inherits the list, not the duty */
    dev_t dev; /* the header it created: a map that replaced it under the name is not its */
    ino_t ino;
    char name[SHMRPC_MAP_NAME_MAX + 1];
};
static pthread_mutex_t doomed_mu = PTHREAD_MUTEX_INITIALIZER;
static struct doomed *doomed_list;
static bool doomed_hooked;

/* At exit: the maps this process created with auto_unlink, while their names still lead
 * to them. One whose name cannot be looked at (a stat that fails), or whose generations
 * cannot be listed, is left, as a removal that could take another's map is not made. */
static void unlink_doomed(void)
{
    pthread_mutex_lock(&doomed_mu);
    for (struct doomed *d = doomed_list; d; d = d->next)
        if (d->pid == getpid() && shmrpc__map_names_header(d->name, d->dev, d->ino))
            shmrpc_map_unlink_quiet(d->name);
    pthread_mutex_unlock(&doomed_mu);
}

/* False when out of memory: nothing would remove the map at exit. */
static bool doom(const char *name, dev_t dev, ino_t ino)
{
    struct doomed *d = calloc(1, sizeof *d);
    if (!d) return false;
    d->pid = getpid();
    d->dev = dev;
    d->ino = ino;
    snprintf(d->name, sizeof d->name, "%s", name);
    pthread_mutex_lock(&doomed_mu);
    d->next = doomed_list;
    doomed_list = d;
    if (!doomed_hooked) doomed_hooked = atexit(unlink_doomed) == 0;
    pthread_mutex_unlock(&doomed_mu);
    return true;
}

static void spare(const char *name)
{
    pthread_mutex_lock(&doomed_mu);
    for (struct doomed **p = &doomed_list; *p; p = &(*p)->next)
        if (strcmp((*p)->name, name) == 0 && (*p)->pid == getpid()) {
            struct doomed *d = *p;
            *p = d->next;
            free(d);
            break;
        }
    pthread_mutex_unlock(&doomed_mu);
}

/* --- opening ------------------------------------------------------------------------- */

void shmrpc_map_opts_init(shmrpc_map_opts *o)
{
    memset(o, 0, sizeof *o);
    o->mode = SHMRPC_MAP_CONNECT_OR_CREATE;
    o->initial_slots = DEFAULT_SLOTS;
    o->initial_bytes = DEFAULT_BYTES;
    o->max_bytes = DEFAULT_MAX_BYTES;
    o->auto_unlink = false;
    o->lock_timeout_ms = DEFAULT_LOCK_TIMEOUT_MS;
    o->perms = 0600;
    shmrpc_wait_opts_init(&o->wait);
}

static int check_opts(const shmrpc_map_opts *o)
{
    int rc = shmrpc__seg_check_mode("map", o->mode, o->perms);
    if (rc != 0) return rc;
    if (o->initial_slots < 8 || o->initial_slots > MAX_SLOTS / 2)
        return fail(SHMRPC_EINVAL, "initial_slots %u outside [8, 2^30]", o->initial_slots);
    if (o->initial_bytes < 4096 || o->max_bytes < o->initial_bytes ||
        o->max_bytes > (OFF_MASK << 3) / 2)
        return fail(SHMRPC_EINVAL,
                    "initial_bytes %" PRIu64 " and max_bytes %" PRIu64
                    ": want 4096 <= initial_bytes <= max_bytes <= 2^42",
                    o->initial_bytes, o->max_bytes);
    if (o->lock_timeout_ms < 0 && o->lock_timeout_ms != SHMRPC_MAP_WAIT_FOREVER)
        return fail(SHMRPC_EINVAL, "negative lock timeout");
    size_t tlen = o->type ? strlen(o->type) : 0;
    if (tlen > SHMRPC_MAP_TYPE_MAX)
        return fail(SHMRPC_EINVAL, "map type signature of %zu bytes is above %u", tlen,
                    SHMRPC_MAP_TYPE_MAX);
    return 0;
}

static int open_lock_of(shmrpc_map *m)
{
    char ln[SHMRPC_LOCK_NAME_MAX + 1];
    shmrpc__map_lock_name(ln, m->name);
    shmrpc_lock_opts lo;
    shmrpc_lock_opts_init(&lo);
    lo.perms = m->opts.perms;
    lo.wait = m->opts.wait;
    return shmrpc_lock_open(&m->lock, ln, &lo);
}

/* The number of a new map's first generation: the time in microseconds (2^53 in the year
 * 2255, so that JSON's readers read it whole). A handle on a map of this name created
 * earlier numbered its first from its creation's time, T, and growth k, which began more
 * than k microseconds after T (making a generation takes longer than one), T + k: below
 * this, as long as the growth began before this creation, and a growth that begins after
 * it finds the name no longer its map's (still_named). Unless the clock was set back
 * between the two creations by more than the time between them. */
static uint64_t first_number(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || ts.tv_sec <= 0) return 1;
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* The header's size, once its creator sized it or the wait for that ended (seg_open.c). */
static int check_hdr_size(const shmrpc__seg_how *how, const struct stat *st)
{
    const char *name = how->name, *path = how->path;
    off_t size = st->st_size;
    /* A creator sizes it right after it makes it: smaller, it was cut (or, at 0 bytes, its
     * creator may have died before sizing it: it is made anew all the same). */
    if (size < (off_t)HDR_SIZE)
        return fail(SHMRPC_ECUT,
                    "map '%s' (%s%s) was cut to %lld bytes, less than a header (%zu)%s; opening it "
                    "with create makes it anew",
                    name, SHM_DIR, path, (long long)size, HDR_SIZE,
                    size ? "" : ", or its creator died before sizing it");
    if (size > (off_t)(HDR_SIZE + SHMRPC_MAP_TYPE_MAX))
        return fail(SHMRPC_EPROTO, "'%s' is not a map (%s%s has %lld bytes, a header %zu)", name,
                    SHM_DIR, path, (long long)size, HDR_SIZE);
    return 0;
}

/* What check_hdr keeps of the header it checked: each field read once, so that what a
 * scribbler writes after the check is not used. */
struct hdr_read {
    shmrpc_map *m;
    uint32_t tlen;
    uint64_t is, ib, mb, first;
};

/* The header, once its creator's magic is there or the wait for it ended (seg_open.c). */
static int check_hdr(const shmrpc__seg_how *how, const shmrpc__seg_mapping *s, uint32_t magic)
{
    struct hdr_read *r = how->arg;
    shmrpc_map *m = r->m;
    const char *path = how->path;
    const struct map_hdr *h = s->base;
    size_t plen = s->len;
    uint32_t version = h->version, hsize = h->size, tlen = h->type_len;
    uint64_t is = h->init_slots, ib = h->init_bytes, mb = h->max_bytes, first = h->first;
    uint64_t gen = atomic_load_explicit(&h->gen, memory_order_acquire);
    uint32_t creator = h->creator;
    if (magic == 0 && (creator == 0 || (kill((pid_t)creator, 0) != 0 && errno == ESRCH))) {
        /* Half-made by a creator now gone (its pid is written before the rest): stale, as a
         * cut one is, so that an open with create makes it anew (remove_cut), with the one
         * generation it may have made. */
        m->cut_gen = first;
        return fail(SHMRPC_ECUT,
                    "map '%s' was never initialised: its creator (pid %u) died making it; "
                    "opening it with create makes it anew",
                    m->name, creator);
    }
    if (magic == 0)
        return fail(SHMRPC_EPROTO,
                    "map '%s' was never initialised (its creator died?); CREATE_NEW_OVERWRITE or "
                    "shmrpc_map_unlink replaces it",
                    m->name);
    if (magic != HDR_MAGIC || hsize != HDR_SIZE)
        return fail(SHMRPC_EPROTO, "'%s' is not a map (magic 0x%08x, size %u)", m->name, magic,
                    hsize);
    if (version != MAP_VERSION)
        return fail(SHMRPC_EVERSION, "map '%s' has layout version %u, this library %u", m->name,
                    version, MAP_VERSION);
    if (is < 8 || is > MAX_SLOTS / 2 || (is & (is - 1)) || ib < 4096 || mb < ib ||
        mb > (OFF_MASK << 3) / 2)
        return fail(SHMRPC_EPROTO,
                    "map '%s' has a corrupt header (geometry %" PRIu64 " slots, %" PRIu64
                    "..%" PRIu64 " bytes)",
                    m->name, is, ib, mb);
    if (first > gen)
        return fail(SHMRPC_EPROTO,
                    "map '%s' has a corrupt header (its first generation, %" PRIu64
                    ", after its current, %" PRIu64 ")",
                    m->name, first, gen);
    if ((size_t)HDR_SIZE + tlen > plen)
        return fail(SHMRPC_ECUT,
                    "map '%s' (%s%s) was cut to %zu bytes, its header and type are %zu; opening "
                    "it with create makes it anew",
                    m->name, SHM_DIR, path, plen, (size_t)HDR_SIZE + tlen);
    if ((size_t)HDR_SIZE + tlen != plen)
        return fail(SHMRPC_EPROTO,
                    "map '%s' has a corrupt header (a type of %u bytes in a segment of %zu)",
                    m->name, tlen, plen);
    *r = (struct hdr_read){.m = m, .tlen = tlen, .is = is, .ib = ib, .mb = mb, .first = first};
    return 0;
}

/* The header's file, for seg_open.c; its arg: a struct hdr_read. */
static const shmrpc__seg_ops hdr_seg_ops = {.kind = "map",
                                            .wait_ns = SHMRPC__SEG_INIT_WAIT_NS,
                                            .sys_fail = shmrpc__map_sys_fail,
                                            .check_size = check_hdr_size,
                                            .check_header = check_hdr};

/* Creates the header, the lock and the first generation; SHMRPC_ESYS(EEXIST) silently. */
static int create_map(shmrpc_map *m)
{
    char path[PATH_CAP];
    shmrpc__map_hdr_path(path, m->name);
    size_t tlen = strlen(m->want);
    /* The number before the header: a map that replaces this one (an overwrite unlinks
     * this header first) takes its own after, so never a smaller one. */
    uint64_t first = first_number();
    shmrpc__seg_how how = {
        .ops = &hdr_seg_ops, .path = path, .name = m->name, .perms = m->opts.perms};
    shmrpc__seg_mapping s;
    int rc = shmrpc__seg_make(&how, HDR_SIZE + tlen, &s);
    if (rc != 0) return rc;
    void *p = s.base;
    m->hdr = p;
    m->hdr_dev = s.st.st_dev;
    m->hdr_ino = s.st.st_ino;
    m->hdr_len = HDR_SIZE + tlen;
    struct map_hdr *h = p;
    h->version = MAP_VERSION;
    h->size = (uint32_t)HDR_SIZE;
    h->type_len = (uint32_t)tlen;
    memcpy((char *)p + HDR_SIZE, m->want, tlen);
    h->creator = (uint32_t)getpid();
    m->init_slots = h->init_slots = shmrpc__map_pow2_at_least(m->opts.initial_slots);
    m->init_bytes = h->init_bytes = (m->opts.initial_bytes + 4095) & ~UINT64_C(4095);
    m->max_bytes = h->max_bytes =
        m->opts.max_bytes < m->init_bytes ? m->init_bytes : m->opts.max_bytes;
    m->first = h->first = first;
    /* The lock of an earlier map of this name, if its unlink died before removing it, is
     * taken over as it is (a dead holder's is repaired at the first write): removing it here,
     * with the header visible, could remove that of a map that replaced this one meanwhile. */
    rc = open_lock_of(m);
    uint8_t *base = NULL;
    shmrpc__map_geo geo;
    /* Its first generation replaces no file: one of its number is of another map of this
     * name, made within the same microsecond (one that replaced this one meanwhile). */
    if (rc == 0)
        rc = shmrpc__map_build_gen(m, m->first, 1, m->init_slots, m->init_bytes, true, &base, &geo);
    if (rc != 0) {
        /* Not the lock, which another opener of the name may have taken already (for a map
         * it makes once this header is gone): the next map of the name takes it over, and
         * shmrpc_map_unlink removes it. */
        if (shmrpc__map_still_named(m)) shm_unlink(path);
        munmap(p, m->hdr_len);
        m->hdr = NULL;
        shmrpc_lock_close(m->lock);
        m->lock = NULL;
        return rc;
    }
    shmrpc__map_set_gen(m, base, &geo);
    m->hdr_guard = shmrpc__seg_guard(p, m->hdr_len);
    m->hdr_cut = shmrpc__seg_guard_flag(m->hdr_guard);
    atomic_store(&h->gen, m->first);
    atomic_store_explicit(&h->magic, HDR_MAGIC, memory_order_release);
    m->created = true;
    m->creator = getpid();
    return 0;
}

/* Takes the type stored in an existing map, refusing a map of another type than the one
 * this open names. */
static int copy_type(shmrpc_map *m, const char *stored, uint32_t tlen, char **out)
{
    char *t = malloc((size_t)tlen + 1);
    if (!t) return fail(SHMRPC_ENOMEM, "out of memory");
    memcpy(t, stored, tlen);
    t[tlen] = '\0';
    const char *want = m->want;
    if (*want && (strlen(t) != tlen || strcmp(want, t) != 0)) {
        int rc = fail(SHMRPC_EPROTO, "map '%s' holds %s%s, not %s", m->name,
                      tlen ? "" : "untyped entries", t, want);
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

static int attach_map(shmrpc_map *m)
{
    char path[PATH_CAP];
    shmrpc__map_hdr_path(path, m->name);
    int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT) return fail(SHMRPC_ENOENT, "no map '%s' (%s%s)", m->name, SHM_DIR, path);
        return fail(SHMRPC_ESYS(err), "cannot open map '%s' (%s%s): %s", m->name, SHM_DIR, path,
                    syserr(err));
    }
    struct hdr_read r = {.m = m};
    shmrpc__seg_how how = {
        .ops = &hdr_seg_ops, .path = path, .name = m->name, .perms = m->opts.perms, .arg = &r};
    m->cut_gen = 0;
    shmrpc__seg_mapping s;
    int rc = shmrpc__seg_attach(&how, fd, &s);
    close(fd);
    m->cut_dev = s.st.st_dev;
    m->cut_ino = s.st.st_ino;
    if (rc != 0) return rc;
    m->hdr_dev = s.st.st_dev;
    m->hdr_ino = s.st.st_ino;
    void *p = s.base;
    size_t plen = s.len;
    char *type = NULL;
    rc = copy_type(m, (const char *)p + HDR_SIZE, r.tlen, &type);
    if (rc != 0) {
        munmap(p, plen);
        return rc;
    }
    m->hdr = p;
    m->hdr_len = plen;
    m->init_slots = r.is;
    m->init_bytes = r.ib;
    m->max_bytes = r.mb;
    m->first = r.first ? r.first : 1;
    m->hdr_guard = shmrpc__seg_guard(p, plen);
    m->hdr_cut = shmrpc__seg_guard_flag(m->hdr_guard);
    rc = open_lock_of(m);
    if (rc == 0) rc = shmrpc__map_follow(m);
    if (rc != 0) {
        shmrpc__seg_unguard(m->hdr_guard);
        m->hdr_guard = -1;
        m->hdr_cut = shmrpc__seg_guard_flag(-1);
        munmap(p, plen);
        m->hdr = NULL;
        free(type);
        return rc;
    }
    free(m->type);
    m->type = type;
    return 0;
}

/* Removes the map that attach_map found cut (its header's file, while the name still
 * leads to it, as a stale queue is removed; and the generation file that was cut, whose
 * number no map made after it takes), so that the next create makes it anew. Its holders
 * keep their mappings, and SHMRPC_ECUT. False when it could not be removed (the same file
 * found cut again: another user's, which this one may not unlink). */
static bool remove_cut(shmrpc_map *m)
{
    char path[PATH_CAP];
    shmrpc__map_hdr_path(path, m->name);
    if (m->cut_dev == m->removed_dev && m->cut_ino == m->removed_ino) return false;
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_dev = m->cut_dev;
    st.st_ino = m->cut_ino;
    m->removed_dev = m->cut_dev;
    m->removed_ino = m->cut_ino;
    /* A map made after the removal numbers its generations from a time after this one. */
    uint64_t before = first_number();
    if (shmrpc__seg_remove_stale(path, &st)) {
        if (m->cut_gen)
            shmrpc__map_unlink_gen(m->name, m->cut_gen);
        else
            shmrpc__map_unlink_gens(m->name,
                                    before); /* the header was cut: which they were is gone */
    }
    shmrpc_lock_close(m->lock); /* opened by attach_map: the next open opens it again */
    m->lock = NULL;
    return true;
}

static int open_map(shmrpc_map *m)
{
    switch (m->opts.mode) {
    case SHMRPC_MAP_CONNECT_TO_EXISTING:
        return attach_map(m);
    case SHMRPC_MAP_CREATE_NEW_EXCLUSIVE: {
        int rc = create_map(m);
        if (rc == SHMRPC_ESYS(EEXIST))
            return fail(SHMRPC_EBUSY, "map '%s' already exists (%s%s%s)", m->name, SHM_DIR,
                        HDR_PREFIX, m->name);
        return rc;
    }
    case SHMRPC_MAP_CREATE_NEW_OVERWRITE:
        for (int i = 0; i < OPEN_ATTEMPTS; i++) {
            int rc = shmrpc_map_unlink(m->name);
            if (rc != 0 && rc != SHMRPC_ENOENT) return rc;
            rc = create_map(m);
            if (rc != SHMRPC_ESYS(EEXIST)) return rc;
        }
        return fail(SHMRPC_EBUSY, "map '%s' keeps being recreated by others", m->name);
    case SHMRPC_MAP_CONNECT_OR_CREATE:
    default:
        for (int i = 0; i < OPEN_ATTEMPTS; i++) {
            int rc = create_map(m);
            if (rc != SHMRPC_ESYS(EEXIST)) return rc;
            rc = attach_map(m);
            if (rc == SHMRPC_ECUT && !remove_cut(m)) return rc;
            if (rc != SHMRPC_ENOENT && rc != SHMRPC_ECUT) return rc;
        }
        return fail(SHMRPC_EBUSY, "map '%s' keeps being removed and recreated by others", m->name);
    }
}

int shmrpc_map_open(shmrpc_map **out, const char *name, const shmrpc_map_opts *o)
{
    if (!out) return fail(SHMRPC_EINVAL, "out is NULL");
    *out = NULL;
    shmrpc_map_opts defaults;
    if (!o) {
        shmrpc_map_opts_init(&defaults);
        o = &defaults;
    }
    int rc = shmrpc__map_check_name(name);
    if (rc == 0) rc = check_opts(o);
    if (rc != 0) return rc;
    shmrpc_map *m = calloc(1, sizeof *m);
    if (!m) return fail(SHMRPC_ENOMEM, "out of memory");
    m->hdr_guard = m->gen_guard = -1;
    m->hdr_cut = m->gen_cut = shmrpc__seg_guard_flag(-1);
    m->opts = *o;
    /* The caller's string need not outlive the open. */
    m->want = strdup(o->type ? o->type : "");
    m->type = strdup(m->want ? m->want : "");
    m->opts.type = m->want;
    snprintf(m->name, sizeof m->name, "%s", name);
    shmrpc__err_begin();
    rc = m->want && m->type ? open_map(m) : fail(SHMRPC_ENOMEM, "out of memory");
    if (rc != 0) {
        shmrpc_lock_close(m->lock);
        shmrpc__seg_unguard(m->gen_guard);
        if (m->base) munmap(m->base, m->geo.total);
        free(m->type);
        free(m->want);
        free(m);
        return shmrpc__err_end(rc);
    }
    if (m->created && o->auto_unlink && !doom(m->name, m->hdr_dev, m->hdr_ino)) {
        shmrpc_map_close(m); /* which removes it, as its creator's close does */
        return shmrpc__err_end(fail(SHMRPC_ENOMEM, "out of memory"));
    }
    *out = m;
    return shmrpc__err_end(0);
}

void shmrpc_map_close(shmrpc_map *m)
{
    if (!m) return;
    if (m->created && m->opts.auto_unlink && m->creator == getpid()) { /* not a forked child */
        spare(m->name);
        if (shmrpc__map_still_named(m)) shmrpc_map_unlink_quiet(m->name);
    }
    if (m->base) shmrpc__map_unpin(m);
    shmrpc__map_release_slot(m);
    if (m->unprot_reads)
        atomic_fetch_add_explicit(&m->hdr->reads_gone, m->unprot_reads, memory_order_relaxed);
    shmrpc__seg_unguard(m->gen_guard);
    shmrpc__seg_unguard(m->hdr_guard);
    if (m->base) munmap(m->base, m->geo.total);
    munmap(m->hdr, m->hdr_len);
    shmrpc_lock_close(m->lock);
    free(m->type);
    free(m->want);
    free(m);
}
