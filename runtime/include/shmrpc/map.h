/* SPDX-License-Identifier: MIT */
/* Named maps in shared memory (UltraDict's shared dict, without a manager): a hash table
 * that lives in a segment every process of the user maps, read without a lock, written
 * under a shared shmrpc_lock, grown by a new segment generation, and safe against a writer
 * killed at any instruction. See docs/map.md. */
#ifndef SHMRPC_MAP_H
#define SHMRPC_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <shmrpc/decls.h>
#include <shmrpc/lock.h>
#include <shmrpc/open_mode.h>
#include <shmrpc/wait.h>

SHMRPC_BEGIN_DECLS

/* A handle belongs to one thread at a time: a call may map a new generation and unmap the
 * old one, which another thread of the handle could be reading. Open one per thread.
 * Across fork: a child may go on with a handle open in its parent (its first read claims a
 * reader slot of its own, so its views and the parent's end apart), and may close it; the
 * child's close and exit never remove a map its parent created with auto_unlink
 * (docs/map.md). */
typedef struct shmrpc_map shmrpc_map;

/* What shmrpc_map_open does when the map exists or does not: shmrpc/open_mode.h, under the
 * map's own names. */
typedef shmrpc_open_mode shmrpc_map_mode;
#define SHMRPC_MAP_CONNECT_OR_CREATE SHMRPC_CONNECT_OR_CREATE
#define SHMRPC_MAP_CONNECT_TO_EXISTING SHMRPC_CONNECT_TO_EXISTING
#define SHMRPC_MAP_CREATE_NEW_OVERWRITE SHMRPC_CREATE_NEW_OVERWRITE
#define SHMRPC_MAP_CREATE_NEW_EXCLUSIVE SHMRPC_CREATE_NEW_EXCLUSIVE

/* A name is 1..SHMRPC_MAP_NAME_MAX characters of [A-Za-z0-9_.-]. The map is three kinds of
 * segment: /dev/shm/shmrpc.map.NAME (the header), /dev/shm/shmrpc.mapgen.NAME.G (a table,
 * G numbered from the map's creation time in microseconds, one more for each generation)
 * and the lock "map.NAME" (/dev/shm/shmrpc.lock.map.NAME). */
#define SHMRPC_MAP_NAME_MAX 180

/* Bounds of one entry. */
#define SHMRPC_MAP_KEY_MAX (UINT32_C(1) << 16)   /* bytes */
#define SHMRPC_MAP_VALUE_MAX (UINT32_C(1) << 28) /* bytes */

/* Timeouts: milliseconds, or this to wait for as long as it takes (shmrpc/wait.h). */
#define SHMRPC_MAP_WAIT_FOREVER SHMRPC_WAIT_FOREVER

typedef struct shmrpc_map_opts {
    shmrpc_map_mode mode; /* default SHMRPC_MAP_CONNECT_OR_CREATE */
    /* The first generation of a map this open creates (and of every clear): slots of the
     * hash table (rounded up to a power of two, default 1024) and bytes of entry space
     * (rounded up to 4 KiB, default 1 MiB). Growth doubles what is needed. */
    uint32_t initial_slots;
    uint64_t initial_bytes;
    /* No generation grows beyond this many bytes of entries (default 1 GiB): a put that
     * would need more fails with SHMRPC_ETOOBIG. */
    uint64_t max_bytes;
    /* The creator of the map removes it when it closes its handle or exits (atexit), as
     * UltraDict's auto_unlink; only the process whose open created it. Default false. */
    bool auto_unlink;
    /* How long a write waits for the lock (default 10 s; SHMRPC_MAP_WAIT_FOREVER). */
    int64_t lock_timeout_ms;
    mode_t perms;          /* of created segments, as shmrpc_lock_opts.perms; default 0600 */
    shmrpc_wait_opts wait; /* how the lock and shmrpc_map_wait wait */
    /* The type of the keys and values, as a canonical signature (docs/map.md, "Typed
     * maps"): stored in a map this open creates; an existing map of another type is
     * refused (SHMRPC_EPROTO). NULL (the default) or "": untyped, and any map is accepted. */
    const char *type;
} shmrpc_map_opts;

/* The longest type signature a map stores. */
#define SHMRPC_MAP_TYPE_MAX 65535u

void shmrpc_map_opts_init(shmrpc_map_opts *o);

/* Opens the map called name; o may be NULL for the defaults. Failures as for
 * shmrpc_lock_open (SHMRPC_EINVAL, SHMRPC_ENOENT, SHMRPC_EBUSY, SHMRPC_EPERM, SHMRPC_EPROTO
 * for a segment that is not a map or is corrupt, SHMRPC_EVERSION, SHMRPC_ESYS). */
int shmrpc_map_open(shmrpc_map **out, const char *name, const shmrpc_map_opts *o);

/* Unmaps the map (and removes it when this handle created it with auto_unlink). NULL is
 * ignored. */
void shmrpc_map_close(shmrpc_map *m);

/* Removes the map's segments and its lock; handles already open keep reading what they
 * mapped. SHMRPC_ENOENT when there was no header. */
int shmrpc_map_unlink(const char *name);

/* The same, ignoring every error (UltraDict's unlink_by_name(ignore_errors=True)). */
void shmrpc_map_unlink_quiet(const char *name);

/* Copies the value of key into buf (cap bytes) and its length into *len. SHMRPC_ENOENT
 * when the key is absent; SHMRPC_ETOOBIG when cap is too small (*len then says how much
 * is needed). Lock-free: never waits for a writer, alive or dead. */
int shmrpc_map_get(shmrpc_map *m, const void *key, size_t klen, void *buf, size_t cap, size_t *len);

/* A zero-copy look at a value: data points into the shared segment. Entries are never
 * written once published, so the bytes cannot tear; the view stays readable until the
 * next call on the handle, and shmrpc_map_view_current tells whether it is still the
 * key's value. */
typedef struct shmrpc_map_view {
    const void *data;
    size_t len;
    uint64_t gen;  /* the generation it was read from: its file's number, not the one shown */
    uint64_t slot; /* which slot, and the slot's word when read */
    uint64_t word;
} shmrpc_map_view;

int shmrpc_map_get_view(shmrpc_map *m, const void *key, size_t klen, shmrpc_map_view *v);

/* Whether the view is still the key's value (no put, remove or growth replaced it). */
bool shmrpc_map_view_current(shmrpc_map *m, const shmrpc_map_view *v);

/* Sets key to value, inserting or replacing. SHMRPC_EINVAL for sizes out of bounds,
 * SHMRPC_ETOOBIG past max_bytes, SHMRPC_ETIMEDOUT when the lock did not come,
 * SHMRPC_ECLOSED when the map needs a growth and was removed or created anew under its name
 * since this handle opened it (open it again). A put that took the lock from a dead writer
 * repairs the map first and succeeds (0). */
int shmrpc_map_put(shmrpc_map *m, const void *key, size_t klen, const void *value, size_t vlen);

/* Inserts only when the key is absent; SHMRPC_EBUSY when it is present. */
int shmrpc_map_put_if_absent(shmrpc_map *m, const void *key, size_t klen, const void *value,
                             size_t vlen);

/* Replaces the value only when it equals expected (elen bytes); SHMRPC_EBUSY when it
 * differs, SHMRPC_ENOENT when the key is absent. */
int shmrpc_map_cas(shmrpc_map *m, const void *key, size_t klen, const void *expected, size_t elen,
                   const void *value, size_t vlen);

/* Removes key; SHMRPC_ENOENT when absent. */
int shmrpc_map_remove(shmrpc_map *m, const void *key, size_t klen);

/* Removes every key (a new, empty generation of the initial geometry). SHMRPC_ECLOSED, as
 * every write that needs a new generation (puts, put_if_absent, cas), when the map was
 * removed or created anew under its name since this handle opened it. */
int shmrpc_map_clear(shmrpc_map *m);

/* The number of keys, a snapshot. */
int shmrpc_map_size(shmrpc_map *m, uint64_t *count);

/* Calls fn for every entry of one consistent snapshot of the map (taken without the lock
 * while writers leave it alone long enough, else under the lock), in no particular order.
 * The pointers are valid during the call. A non-zero return of fn stops the iteration and
 * is returned. */
typedef int (*shmrpc_map_iter_fn)(void *arg, const void *key, size_t klen, const void *value,
                                  size_t vlen);
int shmrpc_map_iterate(shmrpc_map *m, shmrpc_map_iter_fn fn, void *arg);

/* The change counter: raised by every put, remove, clear and repair. shmrpc_map_wait
 * returns 0 once it differs from since (its new value in *now), SHMRPC_ETIMEDOUT after
 * timeout_ms (0: look once). */
int shmrpc_map_changes(shmrpc_map *m, uint64_t *count);
int shmrpc_map_wait(shmrpc_map *m, uint64_t since, uint64_t *now, int64_t timeout_ms);

/* The map's lock (UltraDict's shared_lock), to make several calls one atomic batch. Its
 * holder may call put, remove and the rest: the map takes the lock re-entrantly. Owned by
 * the map handle; do not close it. */
shmrpc_lock *shmrpc_map_lock(shmrpc_map *m);

typedef struct shmrpc_map_info {
    uint64_t generation; /* 1, plus how many times the table was replaced (growth or clear) */
    uint64_t count;      /* keys */
    uint64_t slots;      /* of the hash table */
    uint64_t tombstones; /* slots of removed keys, reused by later inserts */
    uint64_t bytes;      /* of entry space in this generation */
    uint64_t used;       /* of it, written (live and replaced entries) */
    uint64_t live;       /* of it, held by current entries */
    uint64_t changes;    /* the change counter */
    uint64_t writes;     /* puts, removes and clears that changed the map */
    uint64_t growths;    /* generations made by growth (clears not counted) */
    uint64_t repairs;    /* writes of a dead writer rolled forward by the next */
    uint64_t lock_waits; /* writes that found the lock held */
    uint64_t reads;      /* gets and views of every handle, open or closed (each counts its
                            own in its reader slot: no shared line per get) */
    pid_t creator;       /* the process that created the map */
    const char *type;    /* its type signature, "" when untyped; valid until close */
} shmrpc_map_info;

int shmrpc_map_get_info(shmrpc_map *m, shmrpc_map_info *out);

/* Verifies every slot and entry of the current generation against the segment's bounds
 * and the counts in its header; SHMRPC_EPROTO naming the first problem. For tests and
 * for operators who suspect a bad write. */
int shmrpc_map_check(shmrpc_map *m);

/* UltraDict's print_status: the info, one "key: value" a line. */
int shmrpc_map_print_status(shmrpc_map *m, FILE *f);

SHMRPC_END_DECLS
#endif
