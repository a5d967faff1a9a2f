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

/* The len of the record at byte at of r's records. */
static _Atomic uint32_t *len_at(const shmrpc__stream_ring *r, uint32_t at)
{
    return (_Atomic uint32_t *)((uintptr_t)(r + 1) + at);
}

void shmrpc__ring_put(shmrpc__stream_ring *r, uint32_t cap, uint32_t *tail, const void *p,
                      uint32_t len, uint32_t left)
{
    uint8_t *recs = (uint8_t *)(r + 1);
    uint32_t mask = cap - 1, at = *tail & mask, size = shmrpc__shm_record_size(len);
    /* The next record's room is free (the fit left 8 bytes): not whole until it is written.
     * The end's is not free, and nothing is read after the end. */
    if (left != SHMRPC__RING_END)
        atomic_store_explicit(len_at(r, (at + size) & mask), 0, memory_order_relaxed);
    uint32_t body = (at + 8) & mask; /* 8-aligned: a header never wraps */
    uint32_t first = len < cap - body ? len : cap - body;
    memcpy(recs + body, p, first);
    memcpy(recs, (const uint8_t *)p + first, len - first);
    memcpy(recs + at + 4, &left, sizeof left);
    atomic_store_explicit(len_at(r, at), len | SHMRPC__RING_WHOLE, memory_order_release);
    *tail += size;
}

void shmrpc__ring_publish(shmrpc__stream_ring *r, uint32_t cap, uint32_t tail, bool light, bool now)
{
    /* The record before the look, as the program says: a release orders what comes before it
     * only. Lightly, the reader's fence does the CPU's part. */
    if (light)
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
    uint32_t published = atomic_load_explicit(&r->tail.word, memory_order_relaxed);
    if (published == tail) return;
    /* Every quarter of the ring as well: a reader that keeps up is never two rings past it. */
    if (!now && tail - published < cap / 4 &&
        atomic_load_explicit(&r->reader_asleep, memory_order_relaxed) == 0)
        return;
    atomic_store(&r->tail.word, tail); /* sequentially consistent: before the look */
    shmrpc__wake_mask(&r->tail, &r->reader_asleep, 1);
}

static int lies(shmrpc__ring_reader *rd, shmrpc_buf *err)
{
    shmrpc__msg_set(err, "the %s's ring of the stream is off", rd->writer);
    return SHMRPC_EPROTO;
}

int shmrpc__ring_take(const shmrpc__stream_ring *r, shmrpc__ring_reader *rd, uint32_t tail,
                      shmrpc_buf *item, shmrpc_buf *err)
{
    const uint8_t *recs = (const uint8_t *)(r + 1);
    uint32_t cap = rd->cap, mask = cap - 1, at = rd->head & mask;
    /* The reader may be behind the tail by a ring at most, and ahead of it by less than two:
     * the writer publishes every quarter of the ring (shmrpc__ring_publish), but only after the
     * record that took it there, which may be almost a ring long. */
    if (tail - rd->head > cap && rd->head - tail >= 2 * cap) {
        shmrpc__msg_set(err, "the %s's count of the stream's ring is off", rd->writer);
        return SHMRPC_EPROTO;
    }
    uint32_t len = atomic_load_explicit(len_at(r, at), memory_order_acquire), left;
    if (!(len & SHMRPC__RING_WHOLE)) {
        rd->seen = len;
        return SHMRPC__RING_NONE;
    }
    len &= ~SHMRPC__RING_WHOLE;
    memcpy(&left, recs + at + 4, sizeof left);
    if (len == 0 && left == SHMRPC__RING_END) {
        rd->head += 8;
        rd->left = 0;
        return 2;
    }
    /* Every piece but an empty item's carries bytes: otherwise a writer could keep a reader
     * reading records for ever. Nor may one reach past the room the reader gave back (a
     * writer that never zeroes a header would keep it reading the ring round and round). */
    if (len > cap - 16 || rd->head + shmrpc__shm_record_size(len) - rd->pub > cap ||
        (len == 0 && left != 0) || (rd->left != 0 && (uint64_t)len + left != rd->left))
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

const _Atomic uint32_t *shmrpc__ring_next(const shmrpc__stream_ring *r,
                                          const shmrpc__ring_reader *rd)
{
    return len_at(r, rd->head & (rd->cap - 1));
}

bool shmrpc__ring_came(const shmrpc__stream_ring *r, const shmrpc__ring_reader *rd, uint32_t tail)
{
    return atomic_load(&r->tail.word) != tail || atomic_load(shmrpc__ring_next(r, rd)) != rd->seen;
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
