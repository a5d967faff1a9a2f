/* SPDX-License-Identifier: MIT */
/* The shmrpc segments in /dev/shm and in users' private directories (docs/names.md) with
 * their owners, and the removal of those whose owners are dead: what `shmrpcctl ls` and `clean`
 * show and do, for any program (docs/admin.md). */
#ifndef SHMRPC_ADMIN_H
#define SHMRPC_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/decls.h>
#include <shmrpc/map.h>
#include <shmrpc/queue.h>

SHMRPC_BEGIN_DECLS

typedef enum shmrpc_seg_kind {
    SHMRPC_SEG_CONTROL, /* shmrpc:NAME, a shm:// server's control segment */
    SHMRPC_SEG_CHANNEL, /* shmrpc:NAME:PID:cSLOT:GEN, a connection's channel */
    SHMRPC_SEG_LOCK,    /* shmrpc.lock.NAME (shmrpc/lock.h) */
    SHMRPC_SEG_STATS,   /* shmrpc.stats.SCHEME.WHERE, a server's call statistics */
    SHMRPC_SEG_QUEUE,   /* shmrpc.queue.NAME (shmrpc/queue.h) */
    SHMRPC_SEG_MAP,     /* shmrpc.map.NAME, a map's header (shmrpc/map.h); its lock is a
                         * lock, shmrpc.lock.map.NAME */
    SHMRPC_SEG_MAPGEN,  /* shmrpc.mapgen.NAME.G, generation G of a map's table */
    SHMRPC_SEG_OTHER    /* shmrpc:... in no form the library makes */
} shmrpc_seg_kind;

/* What is known of a process that owns (or uses) a segment. */
typedef enum shmrpc_seg_life {
    SHMRPC_LIFE_NONE,   /* nobody: a lock that is free */
    SHMRPC_LIFE_ALIVE,  /* runs (or /proc could not say) */
    SHMRPC_LIFE_DEAD,   /* gone, a zombie, or its pid now belongs to a later process */
    SHMRPC_LIFE_UNKNOWN /* the segment does not say */
} shmrpc_seg_life;

/* One segment, as read once from its head (read-only) and checked in /proc. */
typedef struct shmrpc_segment {
    char name[256]; /* its path under /dev/shm, without the leading '/' ("shmrpc-UID/NAME"
                     * in a user's private directory, docs/names.md), or its whole path when
                     * that directory is elsewhere */
    shmrpc_seg_kind kind;
    char key[256]; /* control, channel, stats: the shm:// name (or tcp://HOST:PORT);
                    * lock, queue, map, mapgen: its name (a map's lock: map.NAME) */
    bool readable; /* the segment could be opened: size, uid, ino, mtime are set */
    long long size;
    unsigned uid;
    uint64_t ino;
    int64_t mtime; /* seconds since the epoch */
    /* The owner: control: the manager; channel: the server (its name); lock: the thread
     * that holds it; stats: the process that listened; queue, map: its creator (a map's
     * by its pid alone); mapgen: none. 0: none. */
    int32_t owner_pid;
    uint64_t owner_start; /* its start time (clock ticks since boot), 0 when unknown */
    shmrpc_seg_life owner;
    bool valid;       /* control, stats, queue, map, mapgen: the magic and version are the
                       * library's */
    char service[64]; /* control, stats: the service's name */
    int workers;      /* control: workers running */
    int connections;  /* control: slots in use */
    unsigned methods; /* stats: methods counted */
    bool stopping;    /* control: the server is stopping */
    /* channel: the server its name gives, its slot in the control segment and the
     * slot's generation, its state word, and the worker that took its call (0: none). */
    int32_t chan_server;
    unsigned chan_slot;
    uint32_t chan_gen;
    uint32_t chan_state;
    int32_t taker;
    int32_t client_pid; /* channel: its client, 0 when unknown */
    shmrpc_seg_life client;
    /* queue (valid): its counters, as shmrpc_queue_get_stats gives them to a handle that
     * does not subscribe (missed is 0). */
    shmrpc_queue_stats queue;
    /* map (valid): its figures, as shmrpc_map_get_info gives them, read from the header,
     * the current generation's head and the lock (lock_waits); only the header's when the
     * current generation could not be read. mapgen: in map.generation the generation a
     * user is shown (1, 2, ...) when its map's header is there and the file's number is
     * the map's, else 0 (the number is in its name), and when valid its own figures
     * (count, slots, bytes, used, live). */
    shmrpc_map_info map;
    char detail[200]; /* one line for people: "service calc, 2 workers, 1 connection" */
    bool stale;       /* shmrpc_segment_remove would remove it (docs/admin.md) */
    char reason[160]; /* why it is stale: "its manager, pid 123, is dead" */
} shmrpc_segment;

/* Every shmrpc segment in /dev/shm, sorted by name, into *out (free it with
 * shmrpc_segments_free) and *n. With n_names > 0, only those of the names given: a
 * service (NAME or shm://NAME: its control, channel and stats segments), a lock or a
 * queue (by its name), a map (by its name: its header, generations and lock). 0, SHMRPC_ENOMEM, or
 * SHMRPC_ESYS(errno) when /dev/shm cannot be read; the message in shmrpc_errmsg(). */
int shmrpc_segments_list(shmrpc_segment **out, size_t *n, const char *const *names, size_t n_names);

void shmrpc_segments_free(shmrpc_segment *v);

/* Removes a segment that shmrpc_segments_list judged stale, if it still is: the same
 * inode, and for a control or stats segment the same owner, still dead; a map's leftover
 * generation is removed under the map's lock (docs/admin.md). 0 when it was
 * removed; SHMRPC_EINVAL for one not judged stale; SHMRPC_EBUSY when it changed since it
 * was listed (gone already, another inode under its name, its owner alive); SHMRPC_ESYS(errno)
 * when it cannot be removed (EPERM: another user's in /dev/shm, which is sticky; EACCES: in
 * a directory this user may not write). The message in shmrpc_errmsg().
 * Remove channels before their control segment, so that a failure leaves none orphaned. */
int shmrpc_segment_remove(const shmrpc_segment *s);

/* "control", "channel", "lock", "stats", "queue", "map", "mapgen", "other". */
const char *shmrpc_seg_kind_name(shmrpc_seg_kind k);

/* "free", "alive", "dead", "unknown". */
const char *shmrpc_seg_life_name(shmrpc_seg_life l);

/* The directory where this user's services keep their control segments, rendezvous
 * sockets and statistics (docs/names.md): its path into out (cap bytes, 128 is enough),
 * whether or not a server has made it yet. 0, or a status with the reason in
 * shmrpc_errmsg(). */
int shmrpc_names_dir(char *out, size_t cap);

SHMRPC_END_DECLS

#endif
