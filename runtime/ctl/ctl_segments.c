/* shmrpcctl ls and clean: every shmrpc segment in /dev/shm (control, channel, lock and
 * statistics segments) is classified by its name,
 * its owner read from its head (read-only, each field once) and checked in /proc with its
 * start time, as the runtime does, so that a reused pid counts as dead. */
#include "ctl_segments.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "proc.h"
#include "shm.h"
#include "stats.h"

#define SHM_DIR "/dev/shm"
#define CTL_PREFIX "shmrpc:"
#define LOCK_PREFIX "shmrpc.lock."
#define STATS_PREFIX "shmrpc.stats." /* SCHEME.WHERE: runtime/src/stats.c */
/* The lock segment's head (docs/lock.md, pinned by static asserts in runtime/src/lock.c). */
#define LOCK_MAGIC 0x4b434c53u
#define LOCK_SIZE 128
#define LOCK_OFF_WORD 16
#define LOCK_OFF_TAG 24
#define LOCK_TID_BITS 22
#define LOCK_WAITERS 0x80000000u /* in the word: a waiter may sleep on it (version 2) */
/* A control segment without its magic is being created, or its creator died doing so:
 * only one older than this is taken for the latter. */
#define INCOMPLETE_GRACE_S 10

typedef enum seg_kind { SEG_CONTROL, SEG_CHANNEL, SEG_LOCK, SEG_STATS, SEG_OTHER } seg_kind;
static const char *const kind_names[] = {"control", "channel", "lock", "stats", "other"};

typedef enum life { LIFE_NONE, LIFE_ALIVE, LIFE_DEAD, LIFE_UNKNOWN } life;
static const char *const life_names[] = {"free", "alive", "dead", "unknown"};

typedef struct seg {
    char name[256]; /* as in /dev/shm, without the leading '/' */
    seg_kind kind;
    char key[256]; /* control, channel: the shm:// name; lock: its name */
    int32_t chan_server;
    unsigned chan_slot;
    uint32_t chan_gen;
    bool readable;
    long long size;
    unsigned uid;
    ino_t ino;
    time_t mtime;
    int32_t owner; /* control: the manager; channel: the server (its name); lock: the holder;
                    * stats: the process that listened */
    uint64_t owner_start;
    life owner_life;
    /* control, stats */
    bool valid; /* magic and version are the runtime's */
    char service[64];
    int workers, conns;
    unsigned methods; /* stats: methods counted */
    bool stopping;
    /* channel */
    int32_t client;
    life client_life;
    uint32_t chan_state;
    int32_t taker;
    char note[200];
    bool stale;
    char reason[160];
} seg;

typedef struct seg_list {
    seg *v;
    size_t n, cap;
} seg_list;

static life life_of(int32_t pid, uint64_t start)
{
    return shmrpc__proc_alive(pid, start) ? LIFE_ALIVE : LIFE_DEAD;
}

/* NAME:PID:cSLOT:GEN after "shmrpc:", strictly as shm.c writes it. */
static bool parse_channel(const char *rest, seg *s)
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

/* Maps the first n bytes of a segment read-only; NULL when it is smaller or cannot be. */
static void *map_head(const char *name, size_t n, seg *s)
{
    char path[260];
    snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(s->note, sizeof s->note, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    void *p = NULL;
    if (fstat(fd, &st) == 0) {
        s->readable = true;
        s->size = (long long)st.st_size;
        s->uid = (unsigned)st.st_uid;
        s->ino = st.st_ino;
        s->mtime = st.st_mtime;
        if ((uint64_t)st.st_size >= n) {
            p = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
            if (p == MAP_FAILED) p = NULL;
        }
    }
    close(fd);
    return p;
}

/* Only the size, owner and inode of a segment. */
static void stat_seg(const char *name, seg *s)
{
    map_head(name, SIZE_MAX, s); /* no segment is that large: never mapped */
}

static void read_control(seg *s)
{
    shmrpc__shm_ctl *ctl = map_head(s->name, sizeof *ctl, s);
    if (ctl == NULL) {
        if (!s->readable) return;
        snprintf(s->note, sizeof s->note, "too small for a control segment (%lld bytes)", s->size);
        return;
    }
    uint32_t magic = atomic_load(&ctl->magic);
    uint32_t version = ctl->version;
    if (magic == 0) {
        snprintf(s->note, sizeof s->note, "incomplete (no magic yet)");
    } else if (magic != SHMRPC__SHM_MAGIC || version != SHMRPC__SHM_VERSION) {
        snprintf(s->note, sizeof s->note,
                 "unknown layout (magic 0x%08" PRIx32 ", version %" PRIu32 ")", magic, version);
    } else {
        s->valid = true;
        s->owner = atomic_load(&ctl->owner.pid);
        s->owner_start = atomic_load(&ctl->owner.start);
        s->owner_life = life_of(s->owner, s->owner_start);
        s->stopping = atomic_load(&ctl->state) == SHM_STOPPING;
        memcpy(s->service, ctl->service, sizeof s->service - 1);
        s->service[sizeof s->service - 1] = '\0';
        for (size_t i = 0; s->service[i] != '\0'; i++)
            if ((unsigned char)s->service[i] < 0x20) s->service[i] = '?';
        for (int i = 0; i < SHMRPC__MAX_WORKERS; i++) {
            const shmrpc__shm_worker *w = &ctl->workers[i];
            if (atomic_load(&w->state) == SHM_WORKER_RUNNING &&
                shmrpc__proc_alive(atomic_load(&w->proc.pid), atomic_load(&w->proc.start)))
                s->workers++;
        }
        for (int i = 0; i < SHMRPC__MAX_CONNS; i++)
            if (atomic_load(&ctl->slots[i].state) != SHM_SLOT_FREE) s->conns++;
        snprintf(s->note, sizeof s->note, "service %s, %d worker%s, %d connection%s%s", s->service,
                 s->workers, s->workers == 1 ? "" : "s", s->conns, s->conns == 1 ? "" : "s",
                 s->stopping ? ", stopping" : "");
    }
    munmap(ctl, sizeof *ctl);
}

/* A channel's client, from its service's control segment when that is the same server's. */
static void channel_client(seg *s, const seg_list *all)
{
    for (size_t i = 0; i < all->n; i++) {
        const seg *c = &all->v[i];
        if (c->kind != SEG_CONTROL || !c->valid || strcmp(c->key, s->key) != 0 ||
            c->owner != s->chan_server)
            continue;
        s->owner_start = c->owner_start; /* so that a reused pid is not taken for it */
        shmrpc__shm_ctl *ctl = map_head(c->name, sizeof *ctl, &(seg){0});
        if (ctl == NULL) return;
        const shmrpc__shm_slot *slot = &ctl->slots[s->chan_slot];
        uint32_t state = atomic_load(&slot->state), gen = atomic_load(&slot->gen);
        int32_t pid = atomic_load(&slot->client.pid);
        uint64_t start = atomic_load(&slot->client.start);
        if (state != SHM_SLOT_FREE && gen == s->chan_gen && pid > 0) {
            s->client = pid;
            s->client_life = life_of(pid, start);
        }
        munmap(ctl, sizeof *ctl);
        return;
    }
}

static void read_channel(seg *s, const seg_list *all)
{
    s->owner = s->chan_server;
    s->client_life = LIFE_UNKNOWN;
    channel_client(s, all);
    s->owner_life = life_of(s->owner, s->owner_start);
    shmrpc__shm_chan *h = map_head(s->name, sizeof *h, s);
    if (h == NULL) return;
    static const char *const states[] = {"idle", "request", "busy", "response", "abandoned"};
    s->chan_state = atomic_load(&h->state.word);
    s->taker = atomic_load(&h->taker.pid);
    munmap(h, sizeof *h);
    char client[48] = "client unknown";
    if (s->client > 0)
        snprintf(client, sizeof client, "client pid %" PRId32 " %s", s->client,
                 life_names[s->client_life]);
    snprintf(s->note, sizeof s->note, "%s, %s", client,
             s->chan_state < 5 ? states[s->chan_state] : "bad state");
}

static void read_lock(seg *s)
{
    uint8_t *p = map_head(s->name, LOCK_SIZE, s);
    if (p == NULL) {
        if (s->readable) snprintf(s->note, sizeof s->note, "too small for a lock");
        return;
    }
    uint32_t magic, tid;
    uint64_t tag;
    memcpy(&magic, p, sizeof magic);
    tid = atomic_load((_Atomic uint32_t *)(void *)(p + LOCK_OFF_WORD)) & ~LOCK_WAITERS;
    tag = atomic_load((_Atomic uint64_t *)(void *)(p + LOCK_OFF_TAG));
    munmap(p, LOCK_SIZE);
    if (magic != LOCK_MAGIC) {
        snprintf(s->note, sizeof s->note, "incomplete or unknown layout");
        return;
    }
    s->owner = (int32_t)tid;
    if (tid == 0) {
        s->owner_life = LIFE_NONE;
        return;
    }
    /* As lock.c's owner_dead: a tag of this tid with an earlier start time (cut to the tag's
     * bits) is a reused id. Without its look at /proc/TID/maps: a thread whose tag is not
     * its own shows as alive. */
    shmrpc__proc_stat ps;
    if (shmrpc__read_proc_stat(tid, &ps) != 0) {
        s->owner_life = errno == ENOENT || errno == ESRCH ? LIFE_DEAD : LIFE_UNKNOWN;
    } else {
        uint64_t start = tag >> LOCK_TID_BITS;
        uint64_t mask = (UINT64_C(1) << (64 - LOCK_TID_BITS)) - 1;
        bool dead = ps.state == 'Z' || ps.state == 'X' ||
                    ((tag & ((UINT64_C(1) << LOCK_TID_BITS) - 1)) == tid && start != 0 &&
                     start < (ps.start & mask));
        s->owner_life = dead ? LIFE_DEAD : LIFE_ALIVE;
    }
    snprintf(s->note, sizeof s->note, "held by thread %" PRIu32 "%s", tid,
             s->owner_life == LIFE_DEAD ? ", which is dead: the next locker takes it over" : "");
}

/* A statistics segment's head: the server that listened (a pid without a start time), its
 * service and how many methods it counts. */
static void read_stats(seg *s)
{
    shmrpc__stats_head *h = map_head(s->name, sizeof *h, s);
    if (h == NULL) {
        if (s->readable)
            snprintf(s->note, sizeof s->note, "too small for a statistics segment (%lld bytes)",
                     s->size);
        return;
    }
    uint32_t magic = atomic_load(&h->magic);
    uint32_t version = h->version;
    if (magic == 0) {
        snprintf(s->note, sizeof s->note, "incomplete (no magic yet)");
    } else if (magic != SHMRPC__STATS_MAGIC || version != SHMRPC__STATS_VERSION) {
        snprintf(s->note, sizeof s->note,
                 "unknown layout (magic 0x%08" PRIx32 ", version %" PRIu32 ")", magic, version);
    } else {
        s->valid = true;
        s->owner = h->pid;
        s->methods = h->n_methods;
        memcpy(s->service, h->service, sizeof s->service - 1);
        s->service[sizeof s->service - 1] = '\0';
        for (size_t i = 0; s->service[i] != '\0'; i++)
            if ((unsigned char)s->service[i] < 0x20) s->service[i] = '?';
        snprintf(s->note, sizeof s->note, "statistics of service %s, %u method%s", s->service,
                 s->methods, s->methods == 1 ? "" : "s");
    }
    munmap(h, sizeof *h);
}

/* A statistics segment's owner is alive: with the start time of the control segment of the
 * same shm:// name when that is the same server's, else any process of its pid. */
static void stats_owner(seg *s, const seg_list *all)
{
    if (!s->valid) return;
    for (size_t i = 0; i < all->n; i++) {
        const seg *c = &all->v[i];
        if (c->kind == SEG_CONTROL && c->valid && strcmp(c->key, s->key) == 0 &&
            c->owner == s->owner)
            s->owner_start = c->owner_start;
    }
    s->owner_life = life_of(s->owner, s->owner_start);
}

/* The rules of clean (docs/shmrpcctl.md). */
static void judge(seg *s)
{
    switch (s->kind) {
    case SEG_CONTROL:
        if (s->valid && s->owner_life == LIFE_DEAD) {
            s->stale = true;
            snprintf(s->reason, sizeof s->reason, "its manager, pid %" PRId32 ", is dead",
                     s->owner);
        } else if (!s->valid && s->readable && strncmp(s->note, "unknown", 7) != 0 &&
                   time(NULL) - s->mtime > INCOMPLETE_GRACE_S) {
            s->stale = true;
            snprintf(s->reason, sizeof s->reason, "its creator died while creating it");
        }
        return;
    case SEG_STATS:
        if (s->valid && s->owner_life == LIFE_DEAD) {
            s->stale = true;
            snprintf(s->reason, sizeof s->reason, "its server, pid %" PRId32 ", is dead", s->owner);
        } else if (!s->valid && s->readable && strncmp(s->note, "unknown", 7) != 0 &&
                   time(NULL) - s->mtime > INCOMPLETE_GRACE_S) {
            s->stale = true;
            snprintf(s->reason, sizeof s->reason, "its creator died while creating it");
        }
        return;
    case SEG_CHANNEL:
        if (s->owner_life == LIFE_DEAD) {
            s->stale = true;
            snprintf(s->reason, sizeof s->reason, "its server, pid %" PRId32 ", is dead", s->owner);
        }
        return;
    default:
        return;
    }
}

static bool wanted(const char *key, seg_kind kind, char **names, int n)
{
    if (n == 0) return true;
    for (int i = 0; i < n; i++) {
        const char *want = names[i];
        if (strncmp(want, "shm://", 6) == 0) want += 6;
        if (strcmp(want, key) == 0 && (kind != SEG_LOCK || want == names[i])) return true;
    }
    return false;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const seg *)a)->name, ((const seg *)b)->name);
}

/* Every shmrpc segment (of the services or locks named, when any are), sorted by name. */
static int scan(seg_list *out, char **names, int n_names)
{
    DIR *d = opendir(SHM_DIR);
    if (d == NULL) {
        fprintf(stderr, "shmrpcctl: cannot read %s: %s\n", SHM_DIR, strerror(errno));
        return -1;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        seg s = {0};
        const char *name = e->d_name;
        if (strlen(name) >= sizeof s.name) continue;
        if (strncmp(name, STATS_PREFIX, strlen(STATS_PREFIX)) == 0) {
            /* shm.NAME is NAME's, as its control segment; tcp.HOST:PORT is tcp://HOST:PORT. */
            const char *rest = name + strlen(STATS_PREFIX);
            s.kind = SEG_STATS;
            if (strncmp(rest, "shm.", 4) == 0)
                snprintf(s.key, sizeof s.key, "%s", rest + 4);
            else if (strncmp(rest, "tcp.", 4) == 0)
                snprintf(s.key, sizeof s.key, "tcp://%s", rest + 4);
            else
                snprintf(s.key, sizeof s.key, "%s", rest);
        } else if (strncmp(name, LOCK_PREFIX, strlen(LOCK_PREFIX)) == 0) {
            s.kind = SEG_LOCK;
            snprintf(s.key, sizeof s.key, "%s", name + strlen(LOCK_PREFIX));
        } else if (strncmp(name, CTL_PREFIX, strlen(CTL_PREFIX)) == 0) {
            const char *rest = name + strlen(CTL_PREFIX);
            if (strchr(rest, ':') == NULL) {
                s.kind = SEG_CONTROL;
                snprintf(s.key, sizeof s.key, "%s", rest);
            } else if (parse_channel(rest, &s)) {
                s.kind = SEG_CHANNEL;
            } else {
                s.kind = SEG_OTHER;
                snprintf(s.key, sizeof s.key, "%.*s", (int)strcspn(rest, ":"), rest);
            }
        } else {
            continue;
        }
        if (!wanted(s.key, s.kind, names, n_names)) continue;
        snprintf(s.name, sizeof s.name, "%s", name);
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 32;
            seg *v = realloc(out->v, cap * sizeof *v);
            if (v == NULL) {
                closedir(d);
                fprintf(stderr, "shmrpcctl: out of memory\n");
                return -1;
            }
            out->v = v;
            out->cap = cap;
        }
        out->v[out->n++] = s;
    }
    closedir(d);
    if (out->n) qsort(out->v, out->n, sizeof *out->v, by_name);
    /* Control segments first: a channel's owner and client are read from its service's. */
    for (size_t i = 0; i < out->n; i++) {
        seg *s = &out->v[i];
        s->owner_life = LIFE_UNKNOWN;
        if (s->kind == SEG_CONTROL) read_control(s);
        if (s->kind == SEG_LOCK) read_lock(s);
        if (s->kind == SEG_STATS) read_stats(s);
        if (s->kind == SEG_OTHER) {
            stat_seg(s->name, s);
            snprintf(s->note, sizeof s->note, "not a name shmrpc makes");
        }
    }
    for (size_t i = 0; i < out->n; i++)
        if (out->v[i].kind == SEG_CHANNEL) read_channel(&out->v[i], out);
    for (size_t i = 0; i < out->n; i++)
        if (out->v[i].kind == SEG_STATS) stats_owner(&out->v[i], out);
    for (size_t i = 0; i < out->n; i++)
        judge(&out->v[i]);
    return 0;
}

static json_t *seg_json(const seg *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(kind_names[s->kind]));
    json_object_set_new(o, "name", json_string(s->name));
    json_object_set_new(o, "key", json_string(s->key));
    json_object_set_new(o, "size", s->readable ? json_integer(s->size) : json_null());
    json_object_set_new(o, "uid", s->readable ? json_integer(s->uid) : json_null());
    json_object_set_new(o, "owner_pid", s->owner > 0 ? json_integer(s->owner) : json_null());
    json_object_set_new(o, "owner", json_string(life_names[s->owner_life]));
    if (s->kind == SEG_CONTROL && s->valid) {
        json_object_set_new(o, "service", json_string(s->service));
        json_object_set_new(o, "workers", json_integer(s->workers));
        json_object_set_new(o, "connections", json_integer(s->conns));
        json_object_set_new(o, "stopping", json_boolean(s->stopping));
    }
    if (s->kind == SEG_STATS && s->valid) {
        json_object_set_new(o, "service", json_string(s->service));
        json_object_set_new(o, "methods", json_integer(s->methods));
    }
    if (s->kind == SEG_CHANNEL) {
        json_object_set_new(o, "client_pid", s->client > 0 ? json_integer(s->client) : json_null());
        json_object_set_new(o, "client", json_string(life_names[s->client_life]));
    }
    json_object_set_new(o, "note", json_string(s->note));
    json_object_set_new(o, "stale", json_boolean(s->stale));
    if (s->stale) json_object_set_new(o, "reason", json_string(s->reason));
    return o;
}

/* Names given after the options: services (NAME or shm://NAME) and locks. */
static int parse_opts(int argc, char **argv, const char *flag, bool *set, int *first,
                      const char *usage)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], flag) == 0) {
            *set = true;
        } else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else {
            fprintf(stderr, "%s", usage);
            return 2;
        }
    }
    *first = i;
    return 0;
}

#define LS_USAGE "usage: shmrpcctl ls [--json] [NAME...]\n"

int ctl_ls_main(int argc, char **argv)
{
    bool as_json = false;
    int first;
    if (parse_opts(argc, argv, "--json", &as_json, &first, LS_USAGE) != 0) return 2;
    seg_list l = {0};
    if (scan(&l, argv + first, argc - first) != 0) {
        free(l.v);
        return 1;
    }
    if (as_json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < l.n; i++)
            json_array_append_new(arr, seg_json(&l.v[i]));
        char *text = json_dumps(arr, JSON_COMPACT);
        json_decref(arr);
        if (text) puts(text);
        free(text);
    } else {
        int w = 4;
        for (size_t i = 0; i < l.n; i++)
            if ((int)strlen(l.v[i].name) > w) w = (int)strlen(l.v[i].name);
        printf("%-8s %-*s %10s %-11s %-7s %s\n", "KIND", w, "NAME", "SIZE", "OWNER", "STATE",
               "NOTE");
        for (size_t i = 0; i < l.n; i++) {
            const seg *s = &l.v[i];
            char owner[24] = "-", size[24] = "?";
            if (s->owner > 0)
                snprintf(owner, sizeof owner, "%s %" PRId32, s->kind == SEG_LOCK ? "tid" : "pid",
                         s->owner);
            if (s->readable) snprintf(size, sizeof size, "%lld", s->size);
            printf("%-8s %-*s %10s %-11s %-7s %s%s%s\n", kind_names[s->kind], w, s->name, size,
                   owner, life_names[s->owner_life], s->note, s->stale ? "; stale: " : "",
                   s->stale ? s->reason : "");
        }
    }
    free(l.v);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* Whether a segment judged stale is still the same and still stale just before it goes:
 * the same inode, and for a control segment the same dead owner. */
static bool still_stale(const seg *s)
{
    seg now = {0};
    snprintf(now.name, sizeof now.name, "%s", s->name);
    if (s->kind == SEG_CONTROL) {
        read_control(&now);
        if (!now.readable || now.ino != s->ino) return false;
        if (s->valid)
            return now.valid && now.owner == s->owner && now.owner_start == s->owner_start &&
                   !shmrpc__proc_alive(now.owner, now.owner_start);
        return !now.valid && strncmp(now.note, "unknown", 7) != 0;
    }
    if (s->kind == SEG_STATS) {
        read_stats(&now);
        if (!now.readable || now.ino != s->ino) return false;
        if (s->valid)
            return now.valid && now.owner == s->owner &&
                   !shmrpc__proc_alive(now.owner, s->owner_start);
        return !now.valid && strncmp(now.note, "unknown", 7) != 0;
    }
    stat_seg(s->name, &now);
    return now.readable && now.ino == s->ino && !shmrpc__proc_alive(s->owner, s->owner_start);
}

#define CLEAN_USAGE "usage: shmrpcctl clean [--dry-run] [NAME...]\n"

int ctl_clean_main(int argc, char **argv)
{
    bool dry = false;
    int first;
    if (parse_opts(argc, argv, "--dry-run", &dry, &first, CLEAN_USAGE) != 0) return 2;
    seg_list l = {0};
    if (scan(&l, argv + first, argc - first) != 0) {
        free(l.v);
        return 1;
    }
    int status = 0;
    size_t removed = 0;
    /* Channels before their control segment, so that a failure leaves nothing orphaned. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < l.n; i++) {
            const seg *s = &l.v[i];
            if (!s->stale || (pass == 0) != (s->kind == SEG_CHANNEL)) continue;
            if (dry) {
                printf("would remove %s %s: %s\n", kind_names[s->kind], s->name, s->reason);
                removed++;
                continue;
            }
            if (!still_stale(s)) continue;
            char path[260];
            snprintf(path, sizeof path, "/%s", s->name);
            if (shm_unlink(path) != 0 && errno != ENOENT) {
                fprintf(stderr, "shmrpcctl: cannot remove %s: %s\n", s->name, strerror(errno));
                status = 1;
                continue;
            }
            printf("removed %s %s: %s\n", kind_names[s->kind], s->name, s->reason);
            removed++;
        }
    }
    if (removed == 0) printf("nothing to remove\n");
    free(l.v);
    if (fflush(stdout) != 0) status = 1;
    return status;
}
