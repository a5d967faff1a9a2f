/* SPDX-License-Identifier: MIT */
/* A stream's ring, its writer's and its reader's halves (shm_ring.h). */
#include "transport/shm/shm_ring.h"

#include "core/core.h"
#include "core/wait.h"

#include <inttypes.h>
#include <string.h>

int shmrpc__ring_fit(uint32_t cap, uint32_t tail, uint32_t head, size_t left, uint32_t *piece)
{
    uint32_t used = tail - head, most = cap - 16; /* a piece's header, and room for the end's */
    if (used > cap) return SHMRPC_EPROTO;
    uint32_t room = cap - used;
    if (left <= most && room >= shmrpc__shm_record_size((uint32_t)left) + 8) { /* + the end */
        *piece = (uint32_t)left;
        return 0;
    }
    if (left > most && room >= cap / 4) {
        *piece = (room - 16) & ~7u;
        return 0;
    }
    return 1;
}

void shmrpc__ring_put(shmrpc__stream_ring *r, uint32_t cap, uint32_t *tail, const void *p,
                      uint32_t len, uint32_t left)
{
    uint8_t *recs = (uint8_t *)(r + 1);
    uint32_t mask = cap - 1, at = *tail & mask;
    uint32_t head[2] = {len, left};
    memcpy(recs + at, head, sizeof head); /* 8-aligned: a header never wraps */
    at = (at + 8) & mask;
    uint32_t first = len < cap - at ? len : cap - at;
    memcpy(recs + at, p, first);
    memcpy(recs, (const uint8_t *)p + first, len - first);
    *tail += shmrpc__shm_record_size(len);
}

static int lies(shmrpc__ring_reader *rd, shmrpc_buf *err)
{
    shmrpc__msg_set(err, "the %s's ring of the stream is off", rd->writer);
    return SHMRPC_EPROTO;
}

int shmrpc__ring_take(const shmrpc__stream_ring *r, shmrpc__ring_reader *rd, uint32_t avail,
                      shmrpc_buf *item, shmrpc_buf *err)
{
    const uint8_t *recs = (const uint8_t *)(r + 1);
    uint32_t cap = rd->cap, mask = cap - 1, at = rd->head & mask, head[2];
    if (avail < 8) return lies(rd, err); /* a header is 8 bytes, published whole */
    memcpy(head, recs + at, sizeof head);
    uint32_t len = head[0], left = head[1];
    if (len == 0 && left == SHMRPC__RING_END) {
        rd->head += 8;
        rd->left = 0;
        return 2;
    }
    /* Every piece but an empty item's carries bytes: otherwise a writer could keep a reader
     * reading records for ever. */
    if (len > cap - 16 || shmrpc__shm_record_size(len) > avail || (len == 0 && left != 0) ||
        (rd->left != 0 && (uint64_t)len + left != rd->left))
        return lies(rd, err);
    if (item && rd->left == 0 && (uint64_t)len + left > item->max) {
        shmrpc__msg_set(err,
                        "an item of %" PRIu64 " bytes is larger than the %s's maximum of %zu bytes",
                        (uint64_t)len + left, rd->reader, item->max);
        return SHMRPC_ETOOBIG;
    }
    at = (at + 8) & mask;
    uint32_t first = len < cap - at ? len : cap - at;
    if (item && (shmrpc_buf_append(item, recs + at, first) != 0 ||
                 shmrpc_buf_append(item, recs, len - first) != 0)) {
        shmrpc__msg_set(err, "out of memory for an item");
        return SHMRPC_ENOMEM;
    }
    rd->head += shmrpc__shm_record_size(len);
    rd->left = left;
    return left == 0;
}

void shmrpc__ring_give_back(shmrpc__stream_ring *r, shmrpc__ring_reader *rd, bool all)
{
    if (rd->pub == rd->head) return;
    if (!all && rd->head - rd->pub < rd->cap / 4 &&
        atomic_load_explicit(&r->head.sleepers, memory_order_relaxed) == 0)
        return;
    atomic_store(&r->head.word, rd->head); /* sequentially consistent: before the look */
    shmrpc__wake(&r->head, 1);
    rd->pub = rd->head;
}
