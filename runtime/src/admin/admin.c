/* SPDX-License-Identifier: MIT */
/* The admin API (shmrpc/admin.h): every shmrpc segment in /dev/shm (control, channel,
 * lock, statistics, queue and map segments) is classified by its name, its owner read from
 * its head (read-only, each field once) and checked in /proc with its start time, as the
 * runtime does, so that a reused pid counts as dead. The layouts are the library's own:
 * shm.h, stats.h and lock_seg.h are read here; a queue's and a map's heads are read by
 * functions of queue_stats.c and map_seg.c (queue_seg.h, map_seg.h), which own those layouts. */
#include <shmrpc/admin.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/lock.h>

#include "rpc/rpc.h"
#include "core/lock_seg.h"
#include "map/map_seg.h"
#include "core/names.h"
#include "core/proc.h"
#include "queue/queue_seg.h"
#include "transport/shm/shm.h"
#include "stats/stats.h"

#define SHM_DIR "/dev/shm"
#define CTL_PREFIX "shmrpc:"
#define LOCK_PREFIX "shmrpc.lock."
#define STATS_PREFIX "shmrpc.stats." /* SCHEME.WHERE: stats.c */
#define QUEUE_PREFIX "shmrpc.queue."
#define MAP_PREFIX "shmrpc.map."       /* NAME: a map's header */
#define MAPGEN_PREFIX "shmrpc.mapgen." /* NAME.G: its generation G */
#define MAP_LOCK_PREFIX "map."         /* a map's lock is the lock map.NAME */
#define RDV_SUFFIX ":rdv"              /* shmrpc:NAME:rdv, a service's rendezvous (shm_int.h) */
#define LOCK_SUFFIX ":lock"            /* shmrpc:NAME:lock, its lock */
#define NS_PREFIX "shmrpc-"            /* shmrpc-UID, a user's private directory (names.h) */
/* A control segment without its magic is being created, or its creator died doing so:
 * only one older than this is taken for the latter. */
#define INCOMPLETE_GRACE_S 10

static const char *const kind_names[] = {"control", "channel", "lock",   "stats",
                                         "queue",   "map",     "mapgen", "other"};
static const char *const life_names[] = {"free", "alive", "dead", "unknown"};

const char *shmrpc_seg_kind_name(shmrpc_seg_kind k)
{
    return (unsigned)k < sizeof kind_names / sizeof *kind_names ? kind_names[k] : "?";
}

const char *shmrpc_seg_life_name(shmrpc_seg_life l)
{
    return (unsigned)l < sizeof life_names / sizeof *life_names ? life_names[l] : "?";
}

typedef struct seg_list {
    shmrpc_segment *v;
    size_t n, cap;
} seg_list;

static shmrpc_seg_life life_of(int32_t pid, uint64_t start)
{
    return shmrpc__proc_alive(pid, start) ? SHMRPC_LIFE_ALIVE : SHMRPC_LIFE_DEAD;
}

/* NAME:PID:cSLOT:GEN after "shmrpc:", strictly as shm.c writes it. */
static bool parse_channel(const char *rest, shmrpc_segment *s)
{
    const char *colon = strchr(rest, ':');
    if (colon == NULL || colon == rest || (size_t)(colon - rest) >= sizeof s->key) return false;
    char *end;
    errno = 0;
    long pid = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || pid <= 0 || pid > INT32_MAX || strncmp(end, ":c", 2) != 0)
        return false;
    const char *sp = end + 2;
    unsigned long slot = strtoul(sp, &end, 10);
    if (end == sp || *end != ':' || slot >= SHMRPC__MAX_CONNS) return false;
    const char *gp = end + 1;
    unsigned long gen = strtoul(gp, &end, 10);
    if (end == gp || *end != '\0' || gen > UINT32_MAX) return false;
    snprintf(s->key, sizeof s->key, "%.*s", (int)(colon - rest), rest);
    s->chan_server = (int32_t)pid;
    s->chan_slot = (unsigned)slot;
    s->chan_gen = (uint32_t)gen;
    return true;
}

/* NAME.G after "shmrpc.mapgen.", as map_files.c writes it; else not a name of the library's. G is
 * the file's number, not the generation a user is shown (read_mapgen). */
static bool parse_mapgen(const char *rest, shmrpc_segment *s)
{
    const char *dot = strrchr(rest, '.');
    if (dot == NULL || dot == rest || dot[1] == '\0' ||
        strspn(dot + 1, "0123456789") != strlen(dot + 1) || strlen(dot + 1) > 19 ||
        (size_t)(dot - rest) >= sizeof s->key)
        return false;
    s->kind = SHMRPC_SEG_MAPGEN;
    snprintf(s->key, sizeof s->key, "%.*s", (int)(dot - rest), rest);
    return true;
}

/* The number in a generation's file name (parse_mapgen took it for one). */
static uint64_t mapgen_number(const shmrpc_segment *s)
{
    return strtoull(strrchr(s->name, '.') + 1, NULL, 10);
}

/* A listed segment's path: its name under /dev/shm, or its whole path when it is not there
 * (a private directory elsewhere: names.h). */
static void seg_path(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s", name[0] == '/' ? "" : SHM_DIR, name[0] == '/' ? "" : "/", name);
}

/* Maps the first n bytes of a segment read-only; NULL when it is smaller or cannot be. */
static void *map_head(const char *name, size_t n, shmrpc_segment *s)
{
    char path[sizeof SHM_DIR + sizeof s->name];
    seg_path(name, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(s->detail, sizeof s->detail, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    void *p = NULL;
    if (fstat(fd, &st) == 0) {
        s->readable = true;
        s->size = (long long)st.st_size;
        s->uid = (unsigned)st.st_uid;
        s->ino = (uint64_t)st.st_ino;
        s->mtime = (int64_t)st.st_mtime;
        if ((uint64_t)st.st_size >= n) {
            p = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
            if (p == MAP_FAILED) p = NULL;
        }
    }
    close(fd);
    return p;
}

/* Only the size, owner and inode of a segment. */
static void stat_seg(const char *name, shmrpc_segment *s)
{
    map_head(name, SIZE_MAX, s); /* no segment is that large: never mapped */
}

/* Whether a segment's head has the layout this reads (ours); else says why in its detail. */
static bool known_layout(shmrpc_segment *s, uint32_t magic, uint32_t version, bool ours)
{
    if (magic == 0)
        snprintf(s->detail, sizeof s->detail, "incomplete (no magic yet)");
    else if (!ours)
        snprintf(s->detail, sizeof s->detail,
                 "unknown layout (magic 0x%08" PRIx32 ", version %" PRIu32 ")", magic, version);
    else
        return true;
    return false;
}

/* A head that the segment is too small to hold, said of one that could be read. */
static void too_small(shmrpc_segment *s, const char *what)
{
    if (s->readable)
        snprintf(s->detail, sizeof s->detail, "too small for %s (%lld bytes)", what, s->size);
}

/* How the heads of a control segment (shm.h) and of a statistics segment (stats.h) begin:
 * the magic, published last, and the version of the layout. */
typedef struct versioned {
    _Atomic uint32_t magic;
    uint32_t version;
} versioned;
_Static_assert(offsetof(shmrpc__shm_ctl, magic) == offsetof(versioned, magic) &&
                   offsetof(shmrpc__shm_ctl, version) == offsetof(versioned, version) &&
                   offsetof(shmrpc__stats_head, magic) == offsetof(versioned, magic) &&
                   offsetof(shmrpc__stats_head, version) == offsetof(versioned, version),
               "a control or statistics head no longer begins as versioned does");

/* The first n bytes of a segment whose head begins as versioned does, mapped when its
 * magic and version are this library's; else NULL, with why in its detail: too small for
 * what, or another layout. */
static void *map_versioned(shmrpc_segment *s, size_t n, const char *what, uint32_t magic,
                           uint32_t version)
{
    versioned *h = map_head(s->name, n, s);
    if (h == NULL) {
        too_small(s, what);
        return NULL;
    }
    uint32_t m = atomic_load(&h->magic);
    uint32_t v = h->version;
    if (known_layout(s, m, v, m == magic && v == version)) return h;
    munmap(h, n);
    return NULL;
}

/* The service named in a head (cut to fit, control bytes shown as '?'). */
static void copy_service(shmrpc_segment *s, const char *service)
{
    memcpy(s->service, service, sizeof s->service - 1);
    s->service[sizeof s->service - 1] = '\0';
    for (size_t i = 0; s->service[i] != '\0'; i++)
        if ((unsigned char)s->service[i] < 0x20) s->service[i] = '?';
}

static void read_control(shmrpc_segment *s)
{
    shmrpc__shm_ctl *ctl =
        map_versioned(s, sizeof *ctl, "a control segment", SHMRPC__SHM_MAGIC, SHMRPC__SHM_VERSION);
    if (ctl == NULL) return;
    s->valid = true;
    s->owner_pid = atomic_load(&ctl->owner.pid);
    s->owner_start = atomic_load(&ctl->owner.start);
    s->owner = life_of(s->owner_pid, s->owner_start);
    s->stopping = atomic_load(&ctl->state) == SHM_STOPPING;
    copy_service(s, ctl->service);
    for (int i = 0; i < SHMRPC__MAX_WORKERS; i++) {
        const shmrpc__shm_worker *w = &ctl->workers[i];
        if (atomic_load(&w->state) == SHM_WORKER_RUNNING &&
            shmrpc__proc_alive(atomic_load(&w->proc.pid), atomic_load(&w->proc.start)))
            s->workers++;
    }
    for (int i = 0; i < SHMRPC__MAX_CONNS; i++)
        if (atomic_load(&ctl->slots[i].state) != SHM_SLOT_FREE) s->connections++;
    snprintf(s->detail, sizeof s->detail, "service %s, %d worker%s, %d connection%s%s", s->service,
             s->workers, s->workers == 1 ? "" : "s", s->connections, s->connections == 1 ? "" : "s",
             s->stopping ? ", stopping" : "");
    munmap(ctl, sizeof *ctl);
}

/* A channel's client, from its service's control segment when that is the same server's. */
static void channel_client(shmrpc_segment *s, const seg_list *all)
{
    for (size_t i = 0; i < all->n; i++) {
        const shmrpc_segment *c = &all->v[i];
        if (c->kind != SHMRPC_SEG_CONTROL || !c->valid || strcmp(c->key, s->key) != 0 ||
            c->owner_pid != s->chan_server)
            continue;
        s->owner_start = c->owner_start; /* so that a reused pid is not taken for it */
        shmrpc__shm_ctl *ctl = map_head(c->name, sizeof *ctl, &(shmrpc_segment){0});
        if (ctl == NULL) return;
        const shmrpc__shm_slot *slot = &ctl->slots[s->chan_slot];
        uint32_t state = atomic_load(&slot->state), gen = atomic_load(&slot->gen);
        int32_t pid = atomic_load(&slot->client.pid);
        uint64_t start = atomic_load(&slot->client.start);
        if (state != SHM_SLOT_FREE && gen == s->chan_gen && pid > 0) {
            s->client_pid = pid;
            s->client = life_of(pid, start);
        }
        munmap(ctl, sizeof *ctl);
        return;
    }
}

static void read_channel(shmrpc_segment *s, const seg_list *all)
{
    s->owner_pid = s->chan_server;
    s->client = SHMRPC_LIFE_UNKNOWN;
    channel_client(s, all);
    s->owner = life_of(s->owner_pid, s->owner_start);
    shmrpc__shm_chan *h = map_head(s->name, sizeof *h, s);
    if (h == NULL) return;
    /* A client leaves its last answer in place until its next request: "idle" as well. */
    static const char *const states[] = {"idle", "request", "busy", "idle", "abandoned"};
    s->chan_state = atomic_load(&h->state.word);
    /* A request that a worker claimed is being served: "busy", or "abandoned" when its
     * client gave up on it, at its deadline or cancelling it (the state stays REQUEST;
     * shm.h). */
    uint64_t claim = atomic_load(&h->claim), call = atomic_load(&h->call);
    if (s->chan_state == SHM_CHAN_REQUEST && claim == shmrpc__shm_claim(call, SHM_CLAIM_TAKEN))
        s->chan_state = SHM_CHAN_BUSY;
    if (s->chan_state == SHM_CHAN_REQUEST &&
        (claim == shmrpc__shm_claim(call, SHM_CLAIM_ABANDONED) ||
         claim == shmrpc__shm_claim(call, SHM_CLAIM_CANCELLED)))
        s->chan_state = SHM_CHAN_ABANDONED;
    /* The taker stays written after its call (shm.h): it is this call's only while one is
     * being served. */
    bool served = s->chan_state == SHM_CHAN_BUSY || s->chan_state == SHM_CHAN_ABANDONED;
    s->taker = served ? atomic_load(&h->taker.pid) : 0;
    munmap(h, sizeof *h);
    char client[48] = "client unknown";
    if (s->client_pid > 0)
        snprintf(client, sizeof client, "client pid %" PRId32 " %s", s->client_pid,
                 life_names[s->client]);
    snprintf(s->detail, sizeof s->detail, "%s, %s", client,
             s->chan_state < 5 ? states[s->chan_state] : "bad state");
}

static void read_lock(shmrpc_segment *s)
{
    struct lock_seg *p = map_head(s->name, sizeof *p, s);
    if (p == NULL) {
        if (s->readable) snprintf(s->detail, sizeof s->detail, "too small for a lock");
        return;
    }
    uint32_t magic = atomic_load(&p->magic);
    uint32_t tid = atomic_load(&p->futex.word) & ~WAITERS;
    uint64_t tag = atomic_load(&p->owner_tag);
    munmap(p, sizeof *p);
    if (magic != LOCK_MAGIC) {
        snprintf(s->detail, sizeof s->detail, "incomplete or unknown layout");
        return;
    }
    s->owner_pid = (int32_t)tid;
    if (tid == 0) {
        s->owner = SHMRPC_LIFE_NONE;
        return;
    }
    /* As lock.c's owner_dead: a tag of this tid with an earlier start time (cut to the tag's
     * bits) is a reused id. Without its look at /proc/TID/maps: a thread whose tag is not
     * its own shows as alive. */
    shmrpc__proc_stat ps;
    if (shmrpc__read_proc_stat(tid, &ps) != 0) {
        s->owner = errno == ENOENT || errno == ESRCH ? SHMRPC_LIFE_DEAD : SHMRPC_LIFE_UNKNOWN;
    } else {
        uint64_t start = tag >> TAG_TID_BITS;
        bool dead =
            ps.state == 'Z' || ps.state == 'X' ||
            ((tag & TAG_TID_MASK) == tid && start != 0 && start < (ps.start & TAG_START_MASK));
        s->owner = dead ? SHMRPC_LIFE_DEAD : SHMRPC_LIFE_ALIVE;
    }
    snprintf(s->detail, sizeof s->detail, "held by thread %" PRIu32 "%s", tid,
             s->owner == SHMRPC_LIFE_DEAD ? ", which is dead: the next locker takes it over" : "");
}

/* A statistics segment's head: the server that listened (a pid without a start time), its
 * service and how many methods it counts. */
static void read_stats(shmrpc_segment *s)
{
    shmrpc__stats_head *h = map_versioned(s, sizeof *h, "a statistics segment", SHMRPC__STATS_MAGIC,
                                          SHMRPC__STATS_VERSION);
    if (h == NULL) return;
    s->valid = true;
    s->owner_pid = h->pid;
    s->methods = h->n_methods;
    copy_service(s, h->service);
    snprintf(s->detail, sizeof s->detail, "statistics of service %s, %u method%s", s->service,
             s->methods, s->methods == 1 ? "" : "s");
    munmap(h, sizeof *h);
}

/* The first n bytes of a queue's or a map's segment, which hold its header; NULL when it is
 * smaller (said in its detail): a creator sizes it at once, so it was cut. */
static void *map_header(shmrpc_segment *s, size_t n)
{
    void *p = map_head(s->name, n, s);
    if (p == NULL && s->readable)
        snprintf(s->detail, sizeof s->detail,
                 "cut to %lld bytes under its holders (less than a header)%s: an open with "
                 "create makes it anew",
                 s->size, s->size ? "" : ", or not sized yet by its creator");
    return p;
}

/* A queue's header, read by queue_stats.c: its creator, shape and counters. A queue outlives
 * its creator by design (a durable pipe that others may still use), so it is never stale
 * here. */
static void read_queue(shmrpc_segment *s)
{
    void *p = map_header(s, SHMRPC__QUEUE_HEAD);
    if (p == NULL) return;
    shmrpc__queue_head h;
    shmrpc__queue_read_head(p, &h);
    munmap(p, SHMRPC__QUEUE_HEAD);
    if (h.creator > 0) {
        s->owner_pid = h.creator;
        s->owner_start = h.creator_start;
        s->owner = life_of(s->owner_pid, h.creator_start);
    }
    if (known_layout(s, h.magic, h.version, h.ours)) {
        s->valid = true;
        s->queue = h.stats;
        snprintf(s->detail, sizeof s->detail,
                 "%s queue, %" PRIu32 " messages, arena %" PRIu32 " bytes, max message %" PRIu32
                 " bytes",
                 h.kind == SHMRPC_QUEUE_BROADCAST ? "broadcast" : "work", h.capacity, h.arena,
                 h.max_msg);
        if ((uint64_t)s->size < h.total)
            snprintf(s->detail, sizeof s->detail,
                     "cut to %lld bytes under its holders (its header says %" PRIu64
                     "): an open with create makes it anew",
                     s->size, h.total);
    }
}

/* A map's header, read by map_seg.c, and what it names: the current generation's head (its
 * figures) and the lock's counters (lock waits). *head gets the header as read. */
static void read_map_head(shmrpc_segment *s, shmrpc__map_head *head)
{
    memset(head, 0, sizeof *head);
    void *p = map_header(s, SHMRPC__MAP_HDR_SIZE);
    if (p == NULL) return;
    shmrpc__map_read_head(p, head);
    munmap(p, SHMRPC__MAP_HDR_SIZE);
}

/* The figures a map's header holds, into m. */
static void header_figures(shmrpc_map_info *m, const shmrpc__map_head *h)
{
    m->creator = (pid_t)h->creator;
    m->changes = h->changes;
    m->writes = h->writes;
    m->growths = h->growths;
    m->repairs = h->repairs;
    m->reads = h->reads;
}

static void read_map(shmrpc_segment *s)
{
    shmrpc__map_head h;
    read_map_head(s, &h);
    if (h.creator > 0) {
        s->owner_pid = h.creator;
        s->owner = life_of(h.creator, 0);
    }
    /* 0 bytes: cut, or not sized yet (said). Shorter than a header but not empty, it is
     * shown as a header with no magic, as before: incomplete, stale when its creator died. */
    if (!s->readable || s->size == 0) return;
    if (!known_layout(s, h.magic, h.version, h.ours)) return;
    s->valid = true;
    shmrpc_map_info *m = &s->map;
    header_figures(m, &h);
    char name[sizeof s->name + 24], why[200] = "";
    snprintf(name, sizeof name, "%s%s.%" PRIu64, MAPGEN_PREFIX, s->key, h.gen);
    shmrpc_segment g = {0};
    void *p = map_head(name, SHMRPC__MAP_GEN_HEAD, &g);
    if (p != NULL) {
        if (shmrpc__map_read_gen(p, (uint64_t)g.size, m, why, sizeof why) == 0 &&
            m->generation != h.gen)
            snprintf(why, sizeof why, "it says it is generation %" PRIu64, m->generation);
        munmap(p, SHMRPC__MAP_GEN_HEAD);
    } else {
        if (g.readable)
            snprintf(why, sizeof why, "cut to %lld bytes under its holders", g.size);
        else
            snprintf(why, sizeof why, "%s", g.detail);
    }
    if (why[0] != '\0') { /* no figures of a generation that does not read */
        memset(m, 0, sizeof *m);
        header_figures(m, &h);
    }
    m->generation = shmrpc__map_shown_gen(h.gen, h.first);
    snprintf(name, sizeof name, "%s%s%s", LOCK_PREFIX, MAP_LOCK_PREFIX, s->key);
    struct lock_seg *l = map_head(name, sizeof *l, &(shmrpc_segment){0});
    if (l != NULL) {
        if (atomic_load(&l->magic) == LOCK_MAGIC) m->lock_waits = atomic_load(&l->contended);
        munmap(l, sizeof *l);
    }
    if (why[0] != '\0')
        snprintf(s->detail, sizeof s->detail,
                 "map at generation %" PRIu64 ", which cannot be read: %s", m->generation, why);
    else
        snprintf(s->detail, sizeof s->detail,
                 "map, %" PRIu64 " entr%s, generation %" PRIu64 ", %" PRIu64
                 " bytes of entries (%" PRIu64 " used), %" PRIu64 " writes, %" PRIu64 " growths",
                 m->count, m->count == 1 ? "y" : "ies", m->generation, m->bytes, m->used, m->writes,
                 m->growths);
}

/* A statistics segment's owner is alive: with the start time of the control segment of the
 * same shm:// name when that is the same server's, else any process of its pid. */
static void stats_owner(shmrpc_segment *s, const seg_list *all)
{
    if (!s->valid) return;
    for (size_t i = 0; i < all->n; i++) {
        const shmrpc_segment *c = &all->v[i];
        if (c->kind == SHMRPC_SEG_CONTROL && c->valid && strcmp(c->key, s->key) == 0 &&
            c->owner_pid == s->owner_pid)
            s->owner_start = c->owner_start;
    }
    s->owner = life_of(s->owner_pid, s->owner_start);
}

/* What a map's header is now, for its generations and its lock, read afresh (not from
 * the listing, which names may have filtered): gone, being made or left half made, ours
 * (with its current generation) or of a layout this library does not know. */
typedef enum map_state {
    MAP_GONE,
    MAP_HALF_MADE,
    MAP_DEAD_HALF_MADE,
    MAP_OURS,
    MAP_UNKNOWN
} map_state;

static map_state map_now(const char *key, shmrpc__map_head *head)
{
    memset(head, 0, sizeof *head);
    shmrpc_segment h = {0};
    snprintf(h.name, sizeof h.name, "%s%.200s", MAP_PREFIX, key); /* names: 180 at most */
    char path[sizeof h.name + 16];
    snprintf(path, sizeof path, "%s/%s", SHM_DIR, h.name);
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) return MAP_GONE;
    read_map_head(&h, head);
    if (head->ours) return MAP_OURS;
    if (!h.readable || head->magic != 0) return MAP_UNKNOWN;
    /* No magic: its creator is making it, or died doing so (the header's rule, below). */
    bool alive = head->creator > 0 && shmrpc__proc_alive(head->creator, 0);
    return !alive && time(NULL) - h.mtime > INCOMPLETE_GRACE_S ? MAP_DEAD_HALF_MADE : MAP_HALF_MADE;
}

/* A generation segment's own head, read by map_seg.c, and its map's header, which says which
 * generation its number is: map.generation 1, 2, ... of the map's, else 0. */
static void read_mapgen(shmrpc_segment *s)
{
    uint64_t number = mapgen_number(s);
    void *p = map_head(s->name, SHMRPC__MAP_GEN_HEAD, s);
    char why[200] = "";
    if (p != NULL) {
        if (shmrpc__map_read_gen(p, (uint64_t)s->size, &s->map, why, sizeof why) == 0) {
            s->valid = s->map.generation == number;
            if (!s->valid)
                snprintf(why, sizeof why, "it says it is number %" PRIu64, s->map.generation);
        }
        munmap(p, SHMRPC__MAP_GEN_HEAD);
    } else if (s->readable) {
        snprintf(why, sizeof why, "too small (%lld bytes)", s->size);
    }
    if (!s->valid) memset(&s->map, 0, sizeof s->map);
    shmrpc__map_head h;
    bool ours = map_now(s->key, &h) == MAP_OURS;
    s->map.generation = ours ? shmrpc__map_shown_gen(number, h.first) : 0;
    if (s->map.generation > 0)
        snprintf(s->detail, sizeof s->detail, "generation %" PRIu64 " of map %.80s%s%.70s",
                 s->map.generation, s->key, why[0] ? ": " : "", why);
    else
        snprintf(s->detail, sizeof s->detail, "generation file %" PRIu64 " of %smap %.80s%s%.70s",
                 number, ours ? "an earlier " : "", s->key, why[0] ? ": " : "", why);
}

/* Whether read_lock read a lock of this layout. */
static bool lock_was_read(const shmrpc_segment *l)
{
    return l->readable && strncmp(l->detail, "incomplete", 10) != 0;
}

/* Whether the lock map.KEY is free now. */
static bool map_lock_free(const char *key)
{
    shmrpc_segment l = {0};
    snprintf(l.name, sizeof l.name, "%s%s%.200s", LOCK_PREFIX, MAP_LOCK_PREFIX, key);
    l.owner = SHMRPC_LIFE_UNKNOWN;
    read_lock(&l);
    if (!lock_was_read(&l)) return false;
    return l.owner == SHMRPC_LIFE_NONE;
}

/* A map's generation G (docs/admin.md): the current one is the map's data and is kept;
 * an older one was replaced, and a writer that died before removing it left it (whoever
 * mapped it keeps its pages: a removal takes only the name); one numbered below the map's
 * first is of a map of that name before it, whose handles still open map what they use;
 * a newer one is a growth that died before publishing it, garbage only while nobody can be
 * building it: the map's lock free at the listing, and held by the remover at the removal
 * (locked). Compared by their files' numbers; said as the generations a user is shown. */
static void judge_mapgen(shmrpc_segment *s, bool locked)
{
    uint64_t g = mapgen_number(s);
    const char *note = "";
    char buf[120];
    shmrpc__map_head h;
    map_state st = map_now(s->key, &h);
    uint64_t cur = h.gen, shown = shmrpc__map_shown_gen(cur, h.first);
    switch (st) {
    case MAP_GONE:
        note = ": its map is gone";
        if (time(NULL) - s->mtime > INCOMPLETE_GRACE_S) {
            s->stale = true;
            snprintf(s->reason, sizeof s->reason, "its map is gone (no header)");
        }
        break;
    case MAP_DEAD_HALF_MADE:
        s->stale = true;
        snprintf(s->reason, sizeof s->reason, "its map's creator died while creating it");
        break;
    case MAP_HALF_MADE:
        note = ": its map is being created";
        break;
    case MAP_UNKNOWN:
        break;
    case MAP_OURS:
        if (g == cur) {
            note = ": current";
        } else if (g < cur && g < h.first) {
            s->stale = true;
            snprintf(s->reason, sizeof s->reason,
                     "the map was created anew since (its generations are numbered from %" PRIu64
                     ")",
                     h.first);
        } else if (g < cur) {
            s->stale = true;
            snprintf(s->reason, sizeof s->reason,
                     "generation %" PRIu64 " replaced it; its writer died before removing it",
                     shown);
        } else if (locked || map_lock_free(s->key)) {
            s->stale = true;
            snprintf(s->reason, sizeof s->reason,
                     "a growth died before publishing it (the map is at generation %" PRIu64
                     ", its lock is free)",
                     shown);
        } else {
            snprintf(buf, sizeof buf,
                     ": not published, the map is at generation %" PRIu64
                     " and its lock is held (a growth may be under way)",
                     shown);
            note = buf;
        }
        break;
    }
    size_t n = strlen(s->detail);
    snprintf(s->detail + n, sizeof s->detail - n, "%s", note);
}

/* A map's lock is removed only with its map gone (or never made): while a header names it,
 * processes may have it open, and a lock removed then splits in two. */
static void judge_map_lock(shmrpc_segment *s)
{
    const char *key = s->key + strlen(MAP_LOCK_PREFIX);
    shmrpc__map_head h;
    map_state st = map_now(key, &h);
    if (s->owner != SHMRPC_LIFE_NONE && s->owner != SHMRPC_LIFE_DEAD) return;
    /* read_lock says none or dead only of a lock it read: the return is kept so that this rule
     * does not rest on that one. */
    if (!lock_was_read(s)) return; /* GCOVR_EXCL_BR_LINE: unreachable: read_lock says so */
    if (st == MAP_GONE && time(NULL) - s->mtime > INCOMPLETE_GRACE_S) {
        s->stale = true;
        snprintf(s->reason, sizeof s->reason, "its map is gone (no header)");
    } else if (st == MAP_DEAD_HALF_MADE) {
        s->stale = true;
        snprintf(s->reason, sizeof s->reason, "its map's creator died while creating it");
    }
}

/* A control or statistics segment: stale once its owner (who) is dead, or when its
 * creator died before it was whole and the grace for one being made has passed. */
static void judge_owned(shmrpc_segment *s, const char *who)
{
    if (s->valid && s->owner == SHMRPC_LIFE_DEAD) {
        s->stale = true;
        snprintf(s->reason, sizeof s->reason, "its %s, pid %" PRId32 ", is dead", who,
                 s->owner_pid);
    } else if (!s->valid && s->readable && strncmp(s->detail, "unknown", 7) != 0 &&
               time(NULL) - s->mtime > INCOMPLETE_GRACE_S) {
        s->stale = true;
        snprintf(s->reason, sizeof s->reason, "its creator died while creating it");
    }
}

/* The rules of clean (docs/shmrpcctl.md). */
static void judge(shmrpc_segment *s)
{
    switch (s->kind) {
    case SHMRPC_SEG_CONTROL:
        judge_owned(s, "manager");
        return;
    case SHMRPC_SEG_STATS:
        judge_owned(s, "server");
        return;
    case SHMRPC_SEG_CHANNEL:
        if (s->owner == SHMRPC_LIFE_DEAD) {
            s->stale = true;
            snprintf(s->reason, sizeof s->reason, "its server, pid %" PRId32 ", is dead",
                     s->owner_pid);
        }
        return;
    case SHMRPC_SEG_MAP: {
        /* A map's data has no owner process: a map is never stale once made. */
        shmrpc__map_head h;
        if (!s->valid && map_now(s->key, &h) == MAP_DEAD_HALF_MADE) {
            s->stale = true;
            snprintf(s->reason, sizeof s->reason, "its creator died while creating it");
        }
        return;
    }
    case SHMRPC_SEG_MAPGEN:
        judge_mapgen(s, false);
        return;
    case SHMRPC_SEG_LOCK:
        if (strncmp(s->key, MAP_LOCK_PREFIX, strlen(MAP_LOCK_PREFIX)) == 0) judge_map_lock(s);
        return;
    default:
        return;
    }
}

/* A lock, a queue or a map by its own name (a map's name gives its lock too); the rest by
 * their service's, with or without shm://. */
static bool wanted(const char *key, shmrpc_seg_kind kind, const char *const *names, size_t n)
{
    if (n == 0) return true;
    bool own = kind == SHMRPC_SEG_LOCK || kind == SHMRPC_SEG_QUEUE || kind == SHMRPC_SEG_MAP ||
               kind == SHMRPC_SEG_MAPGEN;
    size_t ml = strlen(MAP_LOCK_PREFIX);
    for (size_t i = 0; i < n; i++) {
        const char *want = names[i];
        if (strncmp(want, "shm://", 6) == 0) want += 6;
        if (strcmp(want, key) == 0 && (!own || want == names[i])) return true;
        if (kind == SHMRPC_SEG_LOCK && want == names[i] && strncmp(key, MAP_LOCK_PREFIX, ml) == 0 &&
            strcmp(key + ml, want) == 0)
            return true;
    }
    return false;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const shmrpc_segment *)a)->name, ((const shmrpc_segment *)b)->name);
}

/* Adds the shmrpc segments of directory dir (named in a segment's name by prefix: "" for
 * /dev/shm itself) to out: those of the services, locks or queues named, when any are. */
static int scan_dir(seg_list *out, const char *dir, const char *prefix, const char *const *names,
                    size_t n_names)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        int e = errno;
        return shmrpc__err_set(SHMRPC_ESYS(e), "cannot read %s: %s", dir, strerror(e));
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        shmrpc_segment s = {0};
        const char *name = e->d_name;
        if (strlen(prefix) + strlen(name) >= sizeof s.name) continue;
        if (strncmp(name, STATS_PREFIX, strlen(STATS_PREFIX)) == 0) {
            /* shm.NAME is NAME's, as its control segment; tcp.HOST:PORT is tcp://HOST:PORT. */
            const char *rest = name + strlen(STATS_PREFIX);
            s.kind = SHMRPC_SEG_STATS;
            if (strncmp(rest, "shm.", 4) == 0)
                snprintf(s.key, sizeof s.key, "%s", rest + 4);
            else if (strncmp(rest, "tcp.", 4) == 0)
                snprintf(s.key, sizeof s.key, "tcp://%s", rest + 4);
            else
                snprintf(s.key, sizeof s.key, "%s", rest);
        } else if (strncmp(name, LOCK_PREFIX, strlen(LOCK_PREFIX)) == 0) {
            s.kind = SHMRPC_SEG_LOCK;
            snprintf(s.key, sizeof s.key, "%s", name + strlen(LOCK_PREFIX));
        } else if (strncmp(name, QUEUE_PREFIX, strlen(QUEUE_PREFIX)) == 0) {
            s.kind = SHMRPC_SEG_QUEUE;
            snprintf(s.key, sizeof s.key, "%s", name + strlen(QUEUE_PREFIX));
        } else if (strncmp(name, MAP_PREFIX, strlen(MAP_PREFIX)) == 0) {
            s.kind = SHMRPC_SEG_MAP;
            snprintf(s.key, sizeof s.key, "%s", name + strlen(MAP_PREFIX));
        } else if (strncmp(name, MAPGEN_PREFIX, strlen(MAPGEN_PREFIX)) == 0) {
            if (!parse_mapgen(name + strlen(MAPGEN_PREFIX), &s)) continue;
        } else if (strncmp(name, CTL_PREFIX, strlen(CTL_PREFIX)) == 0) {
            const char *rest = name + strlen(CTL_PREFIX);
            const char *colon = strchr(rest, ':');
            if (colon && (strcmp(colon, RDV_SUFFIX) == 0 || strcmp(colon, LOCK_SUFFIX) == 0))
                continue; /* its service's: they go with its control segment */
            if (colon == NULL) {
                s.kind = SHMRPC_SEG_CONTROL;
                snprintf(s.key, sizeof s.key, "%s", rest);
            } else if (parse_channel(rest, &s)) {
                s.kind = SHMRPC_SEG_CHANNEL;
            } else {
                s.kind = SHMRPC_SEG_OTHER;
                snprintf(s.key, sizeof s.key, "%.*s", (int)strcspn(rest, ":"), rest);
            }
        } else {
            continue;
        }
        if (!wanted(s.key, s.kind, names, n_names)) continue;
        snprintf(s.name, sizeof s.name, "%s%s", prefix, name);
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 32;
            shmrpc_segment *v = realloc(out->v, cap * sizeof *v);
            if (v == NULL) {
                closedir(d);
                return shmrpc__err_set(SHMRPC_ENOMEM, "out of memory");
            }
            out->v = v;
            out->cap = cap;
        }
        out->v[out->n++] = s;
    }
    closedir(d);
    return 0;
}

/* Every shmrpc segment (of the services, locks or queues named, when any are), sorted by
 * name: in /dev/shm, in the users' private directories there that this process may read
 * (its own; every user's for root), and in its own private directory when that is
 * elsewhere (names.h). */
static int scan(seg_list *out, const char *const *names, size_t n_names)
{
    int rc = scan_dir(out, SHM_DIR, "", names, n_names);
    DIR *d = rc == 0 ? opendir(SHM_DIR) : NULL;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        const char *digits = e->d_name + strlen(NS_PREFIX);
        if (strncmp(e->d_name, NS_PREFIX, strlen(NS_PREFIX)) != 0 || digits[0] == '\0' ||
            strspn(digits, "0123456789") != strlen(digits) || e->d_type != DT_DIR)
            continue;
        char dir[sizeof SHM_DIR + sizeof e->d_name], prefix[sizeof e->d_name + 1];
        snprintf(dir, sizeof dir, "%s/%s", SHM_DIR, e->d_name);
        snprintf(prefix, sizeof prefix, "%s/", e->d_name);
        shmrpc__err_begin();
        int r = scan_dir(out, dir, prefix, names, n_names);
        shmrpc__err_end(0); /* another user's, which only root may read */
        if (r == SHMRPC_ENOMEM) rc = shmrpc__err_set(r, "out of memory");
    }
    if (d) closedir(d);
    char own[SHMRPC__NS_MAX];
    shmrpc_buf *err = shmrpc__err_begin();
    int r = shmrpc__ns_dir(own, false, err);
    shmrpc__err_end(0);
    if (rc == 0 && r == 0 && strncmp(own, SHM_DIR "/", strlen(SHM_DIR) + 1) != 0) {
        char prefix[SHMRPC__NS_MAX + 1];
        snprintf(prefix, sizeof prefix, "%s/", own);
        rc = scan_dir(out, own, prefix, names, n_names);
    }
    if (rc != 0) return rc;
    if (out->n) qsort(out->v, out->n, sizeof *out->v, by_name);
    /* Control segments first: a channel's owner and client are read from its service's. */
    for (size_t i = 0; i < out->n; i++) {
        shmrpc_segment *s = &out->v[i];
        s->owner = SHMRPC_LIFE_UNKNOWN;
        if (s->kind == SHMRPC_SEG_CONTROL) read_control(s);
        if (s->kind == SHMRPC_SEG_LOCK) read_lock(s);
        if (s->kind == SHMRPC_SEG_LOCK && s->detail[0] == '\0' &&
            strncmp(s->key, MAP_LOCK_PREFIX, strlen(MAP_LOCK_PREFIX)) == 0)
            snprintf(s->detail, sizeof s->detail, "the lock of map %.180s",
                     s->key + strlen(MAP_LOCK_PREFIX));
        if (s->kind == SHMRPC_SEG_STATS) read_stats(s);
        if (s->kind == SHMRPC_SEG_QUEUE) read_queue(s);
        if (s->kind == SHMRPC_SEG_MAP) read_map(s);
        if (s->kind == SHMRPC_SEG_MAPGEN) read_mapgen(s);
        if (s->kind == SHMRPC_SEG_OTHER) {
            stat_seg(s->name, s);
            snprintf(s->detail, sizeof s->detail, "not a name shmrpc makes");
        }
    }
    for (size_t i = 0; i < out->n; i++)
        if (out->v[i].kind == SHMRPC_SEG_CHANNEL) read_channel(&out->v[i], out);
    for (size_t i = 0; i < out->n; i++)
        if (out->v[i].kind == SHMRPC_SEG_STATS) stats_owner(&out->v[i], out);
    for (size_t i = 0; i < out->n; i++)
        judge(&out->v[i]);
    return 0;
}

/* Whether a segment judged stale is still the same and still stale just before it goes:
 * the same inode, and for a control segment the same dead owner; a map's parts judged
 * again from what their header says now (locked: the remover holds the map's lock). */
static bool still_stale(const shmrpc_segment *s, bool locked)
{
    shmrpc_segment now = {0};
    snprintf(now.name, sizeof now.name, "%s", s->name);
    if (s->kind == SHMRPC_SEG_MAP || s->kind == SHMRPC_SEG_MAPGEN ||
        (s->kind == SHMRPC_SEG_LOCK &&
         strncmp(s->key, MAP_LOCK_PREFIX, strlen(MAP_LOCK_PREFIX)) == 0)) {
        now.kind = s->kind;
        snprintf(now.key, sizeof now.key, "%s", s->key);
        now.owner = SHMRPC_LIFE_UNKNOWN;
        if (s->kind == SHMRPC_SEG_MAP) read_map(&now);
        if (s->kind == SHMRPC_SEG_LOCK) read_lock(&now);
        if (s->kind == SHMRPC_SEG_MAPGEN) {
            read_mapgen(&now);
            judge_mapgen(&now, locked);
        } else {
            judge(&now);
        }
        return now.readable && now.ino == s->ino && now.stale;
    }
    if (s->kind == SHMRPC_SEG_CONTROL) {
        read_control(&now);
        if (!now.readable || now.ino != s->ino) return false;
        if (s->valid)
            return now.valid && now.owner_pid == s->owner_pid &&
                   now.owner_start == s->owner_start &&
                   !shmrpc__proc_alive(now.owner_pid, now.owner_start);
        return !now.valid && strncmp(now.detail, "unknown", 7) != 0;
    }
    if (s->kind == SHMRPC_SEG_STATS) {
        read_stats(&now);
        if (!now.readable || now.ino != s->ino) return false;
        if (s->valid)
            return now.valid && now.owner_pid == s->owner_pid &&
                   !shmrpc__proc_alive(now.owner_pid, s->owner_start);
        return !now.valid && strncmp(now.detail, "unknown", 7) != 0;
    }
    stat_seg(s->name, &now);
    return now.readable && now.ino == s->ino && !shmrpc__proc_alive(s->owner_pid, s->owner_start);
}

int shmrpc_segments_list(shmrpc_segment **out, size_t *n, const char *const *names, size_t n_names)
{
    *out = NULL;
    *n = 0;
    seg_list l = {0};
    int rc = scan(&l, names, n_names);
    if (rc != 0) {
        free(l.v);
        return rc;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

void shmrpc_segments_free(shmrpc_segment *v)
{
    free(v);
}

/* The lock of map key, taken without waiting, so that no writer builds a generation
 * while one is removed; NULL when it is held, missing or cannot be opened (never created
 * here). */
static shmrpc_lock *take_map_lock(const char *key)
{
    char name[SHMRPC_LOCK_NAME_MAX + 1];
    if (snprintf(name, sizeof name, "%s%s", MAP_LOCK_PREFIX, key) >= (int)sizeof name) return NULL;
    shmrpc_lock_opts o;
    shmrpc_lock_opts_init(&o);
    o.mode = SHMRPC_LOCK_CONNECT_TO_EXISTING;
    shmrpc_lock *l = NULL;
    /* Only a free lock: one taken from a dead writer would keep its owner-dead status from
     * the map's next writer, which repairs on it. (A writer that takes it and dies in the
     * instant between this look and the try still hands it here; the next writer then
     * repairs from the redo record alone, which says whether a write is to roll forward.) */
    if (!map_lock_free(key)) return NULL;
    shmrpc__err_begin();
    int rc = shmrpc_lock_open(&l, name, &o);
    if (rc == 0) rc = shmrpc_lock_try(l);
    if (rc != 0 && rc != SHMRPC_EOWNERDEAD) {
        shmrpc_lock_close(l);
        l = NULL;
    }
    shmrpc__err_end(0);
    return l;
}

/* A dead service's rendezvous and lock, beside its control segment at ctl: removed under
 * the lock, so that no server that starts meanwhile loses them (shm_rdv.c's take_lock). */
static void remove_rendezvous(const char *ctl)
{
    char lock[sizeof SHM_DIR + 256 + 8], rdv[sizeof lock];
    snprintf(lock, sizeof lock, "%s%s", ctl, LOCK_SUFFIX);
    snprintf(rdv, sizeof rdv, "%s%s", ctl, RDV_SUFFIX);
    int fd = open(lock, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    struct stat held, named;
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &held) == 0 &&
        stat(lock, &named) == 0 && held.st_ino == named.st_ino && held.st_dev == named.st_dev) {
        unlink(rdv);
        unlink(lock);
    }
    if (fd >= 0) close(fd);
}

int shmrpc_segment_remove(const shmrpc_segment *s)
{
    if (!s->stale) return shmrpc__err_set(SHMRPC_EINVAL, "%s is not stale", s->name);
    shmrpc_lock *l = s->kind == SHMRPC_SEG_MAPGEN ? take_map_lock(s->key) : NULL;
    int rc = 0;
    if (!still_stale(s, l != NULL)) {
        rc = shmrpc__err_set(SHMRPC_EBUSY, "%s changed since it was listed", s->name);
    } else {
        char path[sizeof SHM_DIR + sizeof s->name];
        seg_path(s->name, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT) {
            int e = errno;
            rc = shmrpc__err_set(SHMRPC_ESYS(e), "cannot remove %s: %s", s->name, strerror(e));
        } else if (s->kind == SHMRPC_SEG_CONTROL) {
            remove_rendezvous(path);
        }
    }
    if (l != NULL) {
        shmrpc_lock_release(l);
        shmrpc_lock_close(l);
    }
    return rc;
}
