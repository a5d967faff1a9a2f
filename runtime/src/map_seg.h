/* The map's generation segment as map.c lays it out, for the fuzz target: validation of
 * an untrusted segment and the reads that follow it. */
#ifndef SHMRPC_SRC_MAP_SEG_H
#define SHMRPC_SRC_MAP_SEG_H

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

#endif
