/* SPDX-License-Identifier: MIT */
/* The map's generation segment as map_int.h lays it out, for the fuzz target: validation
 * of an untrusted segment and the reads that follow it; and what the admin API (admin.c)
 * reads of a map's segments, so that their layout is read in runtime/src/map/ alone. All
 * defined in map_seg.c. */
#ifndef SHMRPC_SRC_MAP_SEG_H
#define SHMRPC_SRC_MAP_SEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/map.h>

/* The geometry of a generation, read once from its header and checked. */
typedef struct shmrpc__map_geo {
    uint64_t gen;
    uint64_t total;     /* bytes of the segment */
    uint64_t nslots;    /* a power of two */
    uint64_t arena_off; /* where entries begin */
    uint64_t ring_cap;  /* entries of the ring of retired ones */
} shmrpc__map_geo;

/* Checks the header of a generation segment of size bytes: 0, or SHMRPC_EPROTO /
 * SHMRPC_EVERSION with the reason in why. */
int shmrpc__map_validate(const void *seg, uint64_t size, shmrpc__map_geo *geo, char *why,
                         size_t cap);

/* Looks key up in a validated segment: 0 with the value's place, SHMRPC_ENOENT, or
 * SHMRPC_EPROTO when an entry on the way is out of bounds. */
int shmrpc__map_lookup(const void *seg, const shmrpc__map_geo *geo, const void *key, size_t klen,
                       const void **value, size_t *vlen);

/* Checks every slot and entry and the header's counts: 0 or SHMRPC_EPROTO with why. */
int shmrpc__map_check_seg(const void *seg, const shmrpc__map_geo *geo, char *why, size_t cap);

/* The generation a user is shown (1, 2, ...) of the generation numbered gen (its file's
 * name, shmrpc.mapgen.NAME.GEN) in a map whose first is numbered first; 0 for a number below
 * first, which is not this map's (a map of the same name created before it). */
static inline uint64_t shmrpc__map_shown_gen(uint64_t gen, uint64_t first)
{
    return gen >= first ? gen - first + 1 : 0;
}

/* The header segment (/dev/shm/shmrpc.map.NAME) and the head of a generation segment
 * (shmrpc.mapgen.NAME.G) are these many bytes. */
#define SHMRPC__MAP_HDR_SIZE 4096u
#define SHMRPC__MAP_GEN_HEAD 128u

/* A map's header as the admin API shows it, read once field by field from its
 * SHMRPC__MAP_HDR_SIZE bytes (mapped read-only by the caller). The rest is meaningful only
 * when ours (magic, version and size are this library's). */
typedef struct shmrpc__map_head {
    uint32_t magic, version;
    bool ours;
    int32_t creator; /* its pid (the header keeps no start time), 0 when not written yet */
    uint64_t gen;    /* the current generation's number (its file's name) */
    uint64_t first;  /* the number of the map's first generation (1 in a map older than it) */
    uint64_t changes, writes, growths, repairs;
    uint64_t reads; /* gets and views, summed over the reader table as shmrpc_map_get_info */
} shmrpc__map_head;

void shmrpc__map_read_head(const void *hdr, shmrpc__map_head *out);

/* The figures of a generation from its head (SHMRPC__MAP_GEN_HEAD bytes of a segment of
 * size bytes, mapped read-only by the caller), into the generation, count, slots,
 * tombstones, bytes, used and live of *info: 0, or SHMRPC_EPROTO / SHMRPC_EVERSION with
 * the reason in why when it is not a generation this library made, or SHMRPC_ECUT ("cut to
 * N bytes ...") when its file is shorter than its head says. */
int shmrpc__map_read_gen(const void *head, uint64_t size, shmrpc_map_info *info, char *why,
                         size_t cap);

#endif
