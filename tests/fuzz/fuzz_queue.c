/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the queue segment's validation (runtime/src/queue/queue_seg.c) on arbitrary
 * bytes as a segment, and on a segment it accepts, the operations that do not wait (tries
 * of pop, peek, push and reserve, and the frontier they move) over descriptors and
 * positions the input chose (broadcast segments with a subscribed handle). A refusal without a
 * reason, a crash, an access outside the segment, a pop longer than its buffer or a hang is a
 * finding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/status.h>

#include "queue/queue_seg.h"

/* The header's total_size may ask for a segment larger than the input (zero-filled
 * beyond it), up to this, so that small inputs describe whole segments. */
#define MAX_SEGMENT (4u << 20)

static void exercise(shmrpc_queue *q)
{
    static unsigned char buf[1u << 16];
    size_t len;
    if (shmrpc_queue_look(q, buf, sizeof buf, &len) == 0 && len > sizeof buf) abort();
    for (int i = 0; i < 4; i++) {
        int rc = shmrpc_queue_pop(q, buf, sizeof buf, &len, 0);
        if (rc == 0 && len > sizeof buf) abort();
    }
    shmrpc_queue_span s;
    if (shmrpc_queue_peek(q, &s, 0) == 0) {
        volatile unsigned char sink = 0;
        for (size_t i = 0; i < s.len; i++)
            sink ^= ((unsigned char *)s.data)[i];
        (void)sink;
        shmrpc_queue_release(q, &s);
    }
    shmrpc_queue_push(q, "fuzz", 4, 0);
    const size_t sizes[] = {8, 100}; /* in its slot, and in the arena */
    for (size_t k = 0; k < 2; k++)
        if (shmrpc_queue_reserve(q, sizes[k], &s, 0) == 0) {
            memset(s.data, 'r', s.len);
            shmrpc_queue_commit(q, &s);
        }
    shmrpc_queue_msg in[2] = {{(void *)"batch", 0, 5}, {buf, 0, 200}};
    size_t done;
    shmrpc_queue_push_batch(q, in, 2, &done, 0);
    shmrpc_queue_msg m[3] = {{buf, sizeof buf, 0}, {buf, sizeof buf, 0}, {buf, sizeof buf, 0}};
    shmrpc_queue_pop_batch(q, m, 3, &done, 0);
    shmrpc_queue_stats st;
    shmrpc_queue_get_stats(q, &st);
    /* The repair over whatever positions and states the input holds, then a push and a pop
     * over what it rebuilt. */
    shmrpc_queue_repair_info r;
    if (shmrpc_queue_repair(q, &r) == 0 && strlen(r.what) >= sizeof r.what) abort();
    shmrpc_queue_push(q, "after the repair", 16, 0);
    if (shmrpc_queue_pop(q, buf, sizeof buf, &len, 0) == 0 && len > sizeof buf) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t seg_size = size;
    if (size >= 40) {
        uint64_t total;
        memcpy(&total, data + 32, sizeof total);
        if (total >= size && total <= MAX_SEGMENT) seg_size = (size_t)total;
    }
    void *seg = aligned_alloc(4096, (seg_size + 4095) / 4096 * 4096 + 4096);
    if (!seg) return 0;
    memset(seg, 0, seg_size);
    memcpy(seg, data, size);
    char why[256] = "";
    int rc = shmrpc__queue_validate(seg, seg_size, why, sizeof why);
    if (rc != 0 && (why[0] == '\0' || (rc != SHMRPC_EPROTO && rc != SHMRPC_EVERSION))) abort();
    if (rc == 0) {
        shmrpc_queue *q;
        if (shmrpc__queue_wrap(seg, seg_size, &q) != 0) abort();
        shmrpc_queue_info info;
        if (shmrpc_queue_get_info(q, &info) == 0 && info.kind == SHMRPC_QUEUE_BROADCAST)
            shmrpc__queue_subscribe(q); /* may find every slot taken: pops then say EINVAL */
        exercise(q);
        shmrpc_queue_close(q);
    }
    free(seg);
    return 0;
}
