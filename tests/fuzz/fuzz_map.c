/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the map generation segment's validation (runtime/src/map/map_seg.c) on
 * arbitrary bytes as a segment, and on a segment it accepts, lookups of a few keys and the
 * full consistency check over whatever slots and entries the input holds. A refusal
 * without a reason, a crash, an access outside the segment, a value reaching past it or a
 * hang is a finding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/status.h>

#include "map/map_seg.h"

/* The header's total may ask for a segment larger than the input (zero-filled beyond it),
 * up to this, so that small inputs describe whole segments. Small enough that the check,
 * quadratic in the slots of a table without an empty one, stays fast. */
#define MAX_SEGMENT (32u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t seg_size = size;
    if (size >= 24) {
        uint64_t total;
        memcpy(&total, data + 16, sizeof total);
        if (total >= size && total <= MAX_SEGMENT) seg_size = (size_t)total;
    }
    if (seg_size > MAX_SEGMENT) return 0;
    uint8_t *seg = aligned_alloc(64, (seg_size + 63) / 64 * 64 + 64);
    if (!seg) return 0;
    memset(seg, 0, seg_size);
    memcpy(seg, data, size);
    char why[256] = "";
    shmrpc__map_geo geo;
    int rc = shmrpc__map_validate(seg, seg_size, &geo, why, sizeof why);
    if (rc != 0 && (why[0] == '\0' || (rc != SHMRPC_EPROTO && rc != SHMRPC_EVERSION))) abort();
    if (rc == 0) {
        static const char *keys[] = {"", "a", "key1", "key2", "a longer key of 24 bytes"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            const void *v;
            size_t vlen;
            rc = shmrpc__map_lookup(seg, &geo, keys[i], strlen(keys[i]), &v, &vlen);
            if (rc == 0) {
                const uint8_t *p = v;
                if (p < seg || p + vlen > seg + seg_size) abort();
                volatile uint8_t sink = 0;
                for (size_t j = 0; j < vlen; j++)
                    sink ^= p[j];
                (void)sink;
            } else if (rc != SHMRPC_ENOENT && rc != SHMRPC_EPROTO) {
                abort();
            }
        }
        why[0] = '\0';
        rc = shmrpc__map_check_seg(seg, &geo, why, sizeof why);
        if (rc != 0 && (rc != SHMRPC_EPROTO || why[0] == '\0')) abort();
    }
    free(seg);
    return 0;
}
