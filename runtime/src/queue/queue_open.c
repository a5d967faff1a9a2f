/* SPDX-License-Identifier: MIT */
/* Opening a queue: its name and options, the segment created or attached to (its owner,
 * size and header checked before use; one half-made by a dead creator or cut under its
 * holders made anew), the handle over it; closing and unlinking. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "queue/queue_int.h"

void shmrpc_queue_opts_init(shmrpc_queue_opts *o)
{
    memset(o, 0, sizeof *o);
    o->mode = SHMRPC_QUEUE_CONNECT_OR_CREATE;
    o->perms = 0600;
    shmrpc_wait_opts_init(&o->wait);
}

static int check_name(const char *name)
{
    return shmrpc__seg_check_name("queue", name, SHMRPC_QUEUE_NAME_MAX);
}

static int check_opts(const shmrpc_queue_opts *o)
{
    int rc = shmrpc__seg_check_mode("queue", o->mode, o->perms);
    if (rc != 0) return rc;
    if ((unsigned)o->kind > SHMRPC_QUEUE_BROADCAST || (unsigned)o->slow > SHMRPC_QUEUE_SLOW_DROP)
        return fail(SHMRPC_EINVAL, "unknown queue kind %d or slow policy %d", (int)o->kind,
                    (int)o->slow);
    if (o->attach_timeout_ms < 0 && o->attach_timeout_ms != SHMRPC_QUEUE_WAIT_FOREVER)
        return fail(SHMRPC_EINVAL, "negative attach timeout %" PRId64 " ms", o->attach_timeout_ms);
    if (o->wait.sleep_ns < 0)
        return fail(SHMRPC_EINVAL, "negative wait.sleep_ns %" PRId64, o->wait.sleep_ns);
    if ((o->single_producer || o->single_consumer) && o->kind != SHMRPC_QUEUE_WORK)
        return fail(SHMRPC_EINVAL, "a single producer or consumer is for work queues only");
    return 0;
}

/* Not statuses: the segment is half-made and its creator is gone; or it was cut (its file
 * is shorter than its header says, or than a header), and its holders see SHMRPC_ECUT. */
#define STALE 1
#define CUT 2
#define CUT_HINT "opening it with create makes it anew"

/* The creator's part: its pid first (so a half-made segment of a dead creator is known),
 * then the descriptors and header, then the magic with a release store. */
static void init_segment(void *seg, const struct geom *g, const char *type)
{
    struct q_hdr *h = seg;
    uint32_t me = self();
    atomic_store(&h->creator_pid, me);
    shmrpc__proc_stat ps;
    h->creator_start = shmrpc__read_proc_stat(me, &ps) == 0 ? ps.start : 0;
    struct q_desc *d = (struct q_desc *)((unsigned char *)seg + DESC_OFF);
    for (uint32_t i = 0; i < g->n; i++)
        atomic_store_explicit(&d[i].state, mkstate(i, S_FREE, 0), memory_order_relaxed);
    h->version = Q_VERSION;
    h->hdr_size = DESC_OFF;
    h->desc_size = DESC_SIZE;
    h->capacity = g->n;
    h->arena = g->b;
    h->max_msg = g->max_msg;
    h->arena_off = g->arena_off;
    h->total_size = g->total;
    h->kind = g->kind;
    h->slow = g->slow;
    h->type_len = g->type_len;
    h->roles = g->roles;
    if (g->type_len) memcpy((unsigned char *)seg + shmrpc__q_type_off_for(g->n), type, g->type_len);
    atomic_store_explicit(&h->magic, Q_MAGIC, memory_order_release);
}

/* The queue's words for a system call that failed on its segment (seg_open.c). */
static int sys_fail(const shmrpc__seg_how *how, enum shmrpc__seg_step step, int err, uint64_t size)
{
    switch (step) {
    case SHMRPC__SEG_SIZE:
        return fail(SHMRPC_ESYS(err), "cannot set up queue '%s' (%" PRIu64 " bytes): %s", how->name,
                    size, syserr(err));
    case SHMRPC__SEG_STAT:
        return fail(SHMRPC_ESYS(err), "fstat of queue '%s': %s", how->name, syserr(err));
    case SHMRPC__SEG_MAP:
    default:
        return fail(SHMRPC_ESYS(err), "cannot map queue '%s' (%zu bytes): %s", how->name,
                    (size_t)size, syserr(err));
    }
}

/* An existing segment's size, once its creator sized it or the wait for that ended. */
static int check_size(const shmrpc__seg_how *how, const struct stat *st)
{
    const char *name = how->name, *path = how->path;
    if (st->st_size == 0) {
        /* A creator sizes it right after it makes it: cut to 0, or its creator died. */
        fail(SHMRPC_ECUT,
             "queue '%s' (%s%s) has 0 bytes: it was cut under its holders, or its creator "
             "died before sizing it; %s",
             name, SHMRPC__SHM_DIR, path, CUT_HINT);
        return CUT;
    }
    if (st->st_size < (off_t)DESC_OFF) { /* no creator makes a file so small: a cut one */
        fail(SHMRPC_ECUT, "queue '%s' (%s%s) was cut to %lld bytes, less than a header; %s", name,
             SHMRPC__SHM_DIR, path, (long long)st->st_size, CUT_HINT);
        return CUT;
    }
    if ((uint64_t)st->st_size >
        shmrpc__q_arena_off_for(SHMRPC_QUEUE_CAPACITY_MAX, SHMRPC_QUEUE_TYPE_MAX) +
            SHMRPC_QUEUE_ARENA_MAX)
        return fail(SHMRPC_EPROTO, "'%s' is not a queue segment (size %lld)", name,
                    (long long)st->st_size);
    return 0;
}

/* Whether a half-made segment's creator is gone (or never wrote its pid). */
static bool creator_gone(const struct q_hdr *h)
{
    uint32_t pid = atomic_load(&h->creator_pid);
    return pid == 0 || (pid != self() && shmrpc__q_holder_dead(pid, 0, 1));
}

/* Its header, once the creator's magic is there or the wait for it ended: its geometry
 * in how->arg. */
static int check_header(const shmrpc__seg_how *how, const shmrpc__seg_mapping *m, uint32_t magic)
{
    const char *name = how->name, *path = how->path;
    const struct q_hdr *h = m->base;
    size_t size = m->len;
    if (magic == 0) {
        bool gone = creator_gone(h);
        fail(SHMRPC_EPROTO, "queue '%s' was never initialised (its creator died?); %s", name,
             REPLACE_HINT);
        return gone ? STALE : SHMRPC_EPROTO;
    }
    /* Cut, when the header adds up for the size it says and the file is shorter; a header
     * that does not add up is refused below as a scribble. */
    uint64_t said = h->total_size;
    struct geom whole;
    char no[8];
    if (said > size && shmrpc__q_check_geometry(h, (size_t)said, &whole, no, sizeof no) == 0) {
        fail(SHMRPC_ECUT, "queue '%s' (%s%s) was cut to %zu bytes; its header says %" PRIu64 "; %s",
             name, SHMRPC__SHM_DIR, path, size, said, CUT_HINT);
        return CUT;
    }
    char why[256];
    int rc = shmrpc__q_check_geometry(h, size, how->arg, why, sizeof why);
    if (rc != 0) {
        char who[PATH_CAP + 64];
        shmrpc__seg_describe(path, who, sizeof who);
        return fail(rc, "queue '%s' refused (%s): %s", name, who, why);
    }
    return 0;
}

/* The queue's segment, for seg_open.c; its arg: where an attach puts the geometry it
 * found (struct geom). */
static const shmrpc__seg_ops queue_seg_ops = {.kind = "queue",
                                              .wait_ns = SHMRPC__SEG_INIT_WAIT_NS,
                                              .sys_fail = sys_fail,
                                              .check_size = check_size,
                                              .check_header = check_header};

/* Creates the segment; SHMRPC_ESYS(EEXIST) (without a message) when it exists. */
static int create(const char *path, const char *name, const shmrpc_queue_opts *o,
                  const struct geom *g, void **seg)
{
    shmrpc__seg_how how = {.ops = &queue_seg_ops, .path = path, .name = name, .perms = o->perms};
    shmrpc__seg_mapping s;
    int rc = shmrpc__seg_make(&how, g->total, &s);
    if (rc != 0) return rc;
    *seg = s.base;
    init_segment(*seg, g, o->type);
    return 0;
}

/* Opens an existing segment: owner, size, magic and header checked before use;
 * SHMRPC_ENOENT when there is none, STALE when it is half-made by a creator now gone, CUT
 * when it was cut (its file then in *stale, when not NULL). */
static int attach(const char *path, const char *name, const shmrpc_queue_opts *o, void **seg,
                  struct geom *g, struct stat *stale)
{
    int fd;
    int rc = shmrpc__seg_open("queue", path, name, &fd);
    if (rc != 0) return rc;
    shmrpc__seg_how how = {
        .ops = &queue_seg_ops, .path = path, .name = name, .perms = o->perms, .arg = g};
    shmrpc__seg_mapping s;
    rc = shmrpc__seg_attach(&how, fd, &s);
    close(fd);
    if ((rc == STALE || rc == CUT) && stale) *stale = s.st;
    if (rc == 0) *seg = s.base;
    return rc;
}

static int exists(const char *path, const char *name)
{
    char who[PATH_CAP + 64];
    shmrpc__seg_describe(path, who, sizeof who);
    return fail(SHMRPC_EBUSY, "queue '%s' already exists (%s)", name, who);
}

static int overwrite(const char *path, const char *name, const shmrpc_queue_opts *o,
                     const struct geom *g, void **seg)
{
    for (int i = 0; i < OPEN_ATTEMPTS; i++) {
        int rc = shmrpc__seg_remove("queue", path, name);
        if (rc != 0) return rc;
        rc = create(path, name, o, g, seg);
        if (rc != SHMRPC_ESYS(EEXIST)) return rc;
    }
    return fail(SHMRPC_EBUSY, "queue '%s' keeps being recreated by others", name);
}

/* Create first (O_EXCL decides the race between openers), else open what another made;
 * a half-made segment of a dead creator is removed and made again. */
static int connect_or_create(const char *path, const char *name, const shmrpc_queue_opts *o,
                             const struct geom *cg, void **seg, struct geom *g)
{
    for (int i = 0; i < OPEN_ATTEMPTS; i++) {
        int rc = create(path, name, o, cg, seg);
        if (rc != SHMRPC_ESYS(EEXIST)) {
            if (rc == 0) *g = *cg;
            return rc;
        }
        struct stat stale;
        rc = attach(path, name, o, seg, g, &stale);
        if (rc == STALE || rc == CUT) {
            /* Only the file found half-made: another opener that found it so too may have
             * replaced it already with a queue now in use, and unlinking that by name split
             * the queue in two (a helper's review). */
            shmrpc__seg_remove_stale(path, &stale);
            continue;
        }
        if (rc != SHMRPC_ENOENT) return rc;
    }
    return fail(SHMRPC_EBUSY, "queue '%s' keeps being removed and recreated by others", name);
}

/* CONNECT_TO_EXISTING: waits, bounded, for the queue to appear (a consumer started before
 * its producer). */
static int connect_existing(const char *path, const char *name, const shmrpc_queue_opts *o,
                            void **seg, struct geom *g)
{
    int64_t deadline = shmrpc__q_deadline_in(o->attach_timeout_ms);
    for (;;) {
        int rc = attach(path, name, o, seg, g, NULL);
        if (rc == STALE) return SHMRPC_EPROTO; /* the message says so */
        if (rc == CUT) return SHMRPC_ECUT;
        if (rc != SHMRPC_ENOENT) return rc;
        int64_t now = shmrpc__now_ns();
        if (now >= deadline) {
            if (o->attach_timeout_ms > 0)
                return fail(SHMRPC_ENOENT, "no queue '%s' (%s%s) appeared within %" PRId64 " ms",
                            name, SHMRPC__SHM_DIR, path, o->attach_timeout_ms);
            return rc;
        }
        /* 2 ms: a consumer that waits costs nothing, and starts within 2 ms of its queue. */
        int64_t ns = deadline - now < 2000000 ? deadline - now : 2000000;
        struct timespec ts = {0, (long)ns};
        nanosleep(&ts, NULL);
    }
}

/* Copies the segment's type signature into the handle (whose buffer holds have bytes and
 * a NUL: a longer one is allocated anew), refusing a queue of another type than the one
 * this open names (o->type). */
static int copy_type(shmrpc_queue *q, const void *seg, const struct geom *g,
                     const shmrpc_queue_opts *o, uint32_t have)
{
    if (g->type_len > have) {
        char *t = realloc(q->type, (size_t)g->type_len + 1);
        if (!t) return fail(SHMRPC_ENOMEM, "out of memory");
        q->type = t;
    }
    memcpy(q->type, (const unsigned char *)seg + shmrpc__q_type_off_for(g->n), g->type_len);
    q->type[g->type_len] = '\0';
    if (o->type && *o->type && strcmp(o->type, q->type) != 0)
        return fail(SHMRPC_EPROTO, "queue '%s' carries %s%s, not %s", q->name,
                    g->type_len ? "" : "untyped messages", q->type, o->type);
    return 0;
}

int shmrpc_queue_open(shmrpc_queue **out, const char *name, const shmrpc_queue_opts *o)
{
    (void)shmrpc__err_begin();
    if (!out) return fail(SHMRPC_EINVAL, "out is NULL");
    *out = NULL;
    shmrpc_queue_opts defaults;
    if (!o) {
        shmrpc_queue_opts_init(&defaults);
        o = &defaults;
    }
    int rc = check_name(name);
    if (rc == 0) rc = check_opts(o);
    struct geom want = {0}, g = {0};
    if (rc == 0 && o->mode != SHMRPC_QUEUE_CONNECT_TO_EXISTING)
        rc = shmrpc__q_geometry_of(o, &want);
    if (rc != 0) return rc;
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s%s", PATH_PREFIX, name);
    /* The handle and its type first: a queue this open made may be in use by others as
     * soon as it is, so it is not removed again, and nothing after it may fail (the
     * open's failure would leave behind a queue it said it did not make). */
    shmrpc_queue *q = calloc(1, sizeof *q);
    if (q) q->type = malloc((size_t)want.type_len + 1);
    if (!q || !q->type) {
        free(q);
        return fail(SHMRPC_ENOMEM, "out of memory");
    }
    void *seg = NULL;
    switch (o->mode) {
    case SHMRPC_QUEUE_CONNECT_TO_EXISTING:
        rc = connect_existing(path, name, o, &seg, &g);
        break;
    case SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE:
        rc = create(path, name, o, &want, &seg);
        if (rc == SHMRPC_ESYS(EEXIST)) rc = exists(path, name);
        g = want;
        break;
    case SHMRPC_QUEUE_CREATE_NEW_OVERWRITE:
        rc = overwrite(path, name, o, &want, &seg);
        g = want;
        break;
    case SHMRPC_QUEUE_CONNECT_OR_CREATE:
    default:
        rc = connect_or_create(path, name, o, &want, &seg, &g);
        break;
    }
    if (rc != 0) {
        free(q->type);
        free(q);
        return rc;
    }
    q->wait = o->wait;
    q->wait_after_spin = o->wait;
    if (o->wait.mode == SHMRPC_WAIT_ADAPTIVE) q->wait_after_spin.mode = SHMRPC_WAIT_SLEEP;
    q->mapped = true;
    snprintf(q->name, sizeof q->name, "%s", name);
    shmrpc__q_fill_handle(q, seg, &g);
    q->guard = shmrpc__seg_guard(seg, (size_t)g.total);
    q->cut = shmrpc__seg_guard_flag(q->guard);
    if ((rc = copy_type(q, seg, &g, o, want.type_len)) != 0) {
        shmrpc_queue_close(q);
        return rc;
    }
    if ((o->single_producer && !q->sp) || (o->single_consumer && !q->sc)) {
        const char *role = o->single_producer && !q->sp ? "producer" : "consumer";
        shmrpc_queue_close(q); /* the role read first: q is freed */
        return fail(SHMRPC_EPROTO, "queue '%s' was created without a single %s", name, role);
    }
    if (o->subscribe) {
        rc = q->bcast
                 ? shmrpc__q_subscribe(q)
                 : fail(SHMRPC_EINVAL, "queue '%s' is a work queue: nobody subscribes to it", name);
        if (rc != 0) {
            shmrpc_queue_close(q);
            return rc;
        }
    }
    *out = q;
    return 0;
}

void shmrpc_queue_close(shmrpc_queue *q)
{
    if (!q) return;
    shmrpc__q_unsubscribe(q);
    shmrpc__q_let_go(q);
    shmrpc__seg_unguard(q->guard);
    if (q->mapped) munmap(q->hdr, q->map_size);
    free(q->type);
    free(q);
}

int shmrpc_queue_unlink(const char *name)
{
    int rc = check_name(name);
    if (rc != 0) return rc;
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s%s", PATH_PREFIX, name);
    if (shm_unlink(path) == 0) return 0;
    if (errno == ENOENT) return fail(SHMRPC_ENOENT, "no queue '%s'", name);
    int err = errno;
    return fail(SHMRPC_ESYS(err), "cannot remove queue '%s': %s", name, syserr(err));
}
