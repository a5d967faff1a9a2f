/* SPDX-License-Identifier: MIT */
/* libFuzzer target: a call's metadata block as a peer sends it (runtime/src/rpc/meta.c,
 * docs/wire.md "Metadata") on arbitrary bytes, and the traceparent check. A block refused
 * costs SHMRPC_EPROTO; a crash, a leak, an arena grown beyond the block's bound, a block
 * accepted that breaks a rule, a valid traceparent not marked as the block's trace (or a
 * pair marked that is not one), or one that does not encode back to its own bytes is a
 * finding. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/meta.h"

static shmrpc_arena *arena;
static shmrpc_buf again;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!arena) {
        arena = shmrpc_arena_new(0);
        shmrpc_buf_init(&again);
        if (!arena) abort();
    }
    shmrpc_arena_reset(arena);
    shmrpc_metadata *m;
    const char *why;
    int rc = shmrpc__meta_decode(data, size, arena, &m, &why);
    if (rc != 0 && (rc != SHMRPC_EPROTO || !why)) abort();
    if (rc == 0) {
        if (size > SHMRPC_METADATA_MAX_BYTES || m->n == 0 || m->n > SHMRPC_METADATA_MAX_PAIRS)
            abort();
        for (uint32_t i = 0; i < m->n; i++) {
            const struct shmrpc__pair *p = &m->pair[i];
            if (strlen(p->key) != p->klen || strlen(p->value) != p->vlen) abort();
            if (shmrpc__meta_key_bad(p->key, p->klen) || shmrpc__meta_value_bad(p->value, p->vlen))
                abort();
            if (shmrpc_metadata_get(m, p->key) != p->value) abort(); /* no key twice */
            /* The pair trace names is the one valid traceparent; no other is one. */
            bool valid_tp = strcmp(p->key, "traceparent") == 0 &&
                            shmrpc__traceparent_bad(p->value, p->vlen) == NULL;
            if (valid_tp != (m->trace == i + 1)) abort();
        }
        if (m->trace > m->n) abort();
        shmrpc_buf_clear(&again);
        if (shmrpc__meta_encode(m, &again) != 0 || again.len != size ||
            memcmp(again.data, data, size) != 0)
            abort();
    }
    /* What a block costs the arena: its bytes and a fixed part, never more. */
    if (shmrpc_arena_used(arena) > size + 4096) abort();
    /* The traceparent check on the same bytes, as text. */
    char tp[64];
    size_t n = size < sizeof tp - 1 ? size : sizeof tp - 1;
    memcpy(tp, data, n);
    tp[n] = 0;
    if (!shmrpc__traceparent_bad(tp, strlen(tp)) && strlen(tp) != SHMRPC_TRACEPARENT_LEN) abort();
    return 0;
}
