/* SPDX-License-Identifier: MIT */
/* Handlers of gather.svc's Gather that the tests of client streams share
 * (client_stream_test.c, and gather-server for shmrpcctl's): each compiled into its target,
 * with the gather.h generated for it. What each does is gather.svc's comment on its method. */
#include "gather_handlers.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

_Atomic int64_t test_gather_read;
_Atomic int test_gather_status;
_Atomic int test_gather_returned;

static void done(int rc)
{
    atomic_store(&test_gather_status, rc);
    atomic_store(&test_gather_returned, 1);
}

static int sum(shmrpc_ctx *ctx, gather_Total *out)
{
    shmrpc_arena *a = shmrpc_ctx_arena(ctx);
    size_t cap = 16;
    shmrpc_str *notes = shmrpc_arena_alloc(a, cap * sizeof *notes, _Alignof(shmrpc_str));
    if (!notes) return SHMRPC_ENOMEM;
    *out = (gather_Total){.notes = {notes, 0}};
    gather_Part p;
    int rc;
    while ((rc = gather_sum_read(ctx, &p)) == 1) {
        atomic_fetch_add(&test_gather_read, 1);
        out->sum += p.n;
        out->count++;
        if (p.note.len == 4 && memcmp(p.note.ptr, "fail", 4) == 0) {
            done(SHMRPC_EBUSY);
            return shmrpc_ctx_error(ctx, SHMRPC_EBUSY, "told to fail at part %lld",
                                    (long long)out->count);
        }
        if (p.note.len == 6 && memcmp(p.note.ptr, "enough", 6) == 0) break;
        if (p.note.len == 0) continue;
        if (out->notes.len == cap) { /* the item's note lives until the next read: copied */
            shmrpc_str *more = shmrpc_arena_alloc(a, 2 * cap * sizeof *more, _Alignof(shmrpc_str));
            if (!more) return SHMRPC_ENOMEM;
            memcpy(more, notes, cap * sizeof *notes);
            notes = more;
            cap *= 2;
            out->notes.items = notes;
        }
        char *copy = shmrpc_arena_alloc(a, p.note.len, 1);
        if (!copy) return SHMRPC_ENOMEM;
        memcpy(copy, p.note.ptr, p.note.len);
        notes[out->notes.len++] = (shmrpc_str){copy, p.note.len};
    }
    done(rc == 1 ? 0 : rc);
    return rc < 0 ? rc : 0;
}

static int deaf(shmrpc_ctx *ctx, int64_t *out)
{
    int rc = shmrpc_ctx_wait_cancelled(ctx, 10000);
    *out = rc;
    done(rc);
    return rc ? rc : SHMRPC_EHANDLER;
}

static int stuck(shmrpc_ctx *ctx)
{
    int rc = shmrpc_ctx_wait_cancelled(ctx, 20000);
    done(rc);
    return rc ? rc : SHMRPC_EHANDLER;
}

static int doubled(shmrpc_ctx *ctx)
{
    int64_t v;
    int rc;
    while ((rc = gather_doubled_read(ctx, &v)) == 1 && v != -1) {
        atomic_fetch_add(&test_gather_read, 1);
        if ((rc = gather_doubled_write(ctx, 2 * v)) != 0) break;
    }
    if (rc == 1) rc = 0; /* -1 */
    done(rc);
    return rc;
}

/* A part "stop" answers at once with the parts before it. */
static int concat(shmrpc_ctx *ctx, shmrpc_bytes *out)
{
    shmrpc_buf *joined = shmrpc_ctx_item(ctx); /* the call's own buffer, unused else */
    shmrpc_bytes part;
    int rc;
    while ((rc = gather_concat_read(ctx, &part)) == 1) {
        atomic_fetch_add(&test_gather_read, 1);
        if (part.len == 4 && memcmp(part.ptr, "stop", 4) == 0) break;
        if (shmrpc_buf_append(joined, part.ptr, part.len)) return joined->err;
    }
    rc = rc == 1 ? 0 : rc;
    done(rc);
    *out = shmrpc_bytes_of(joined->data, joined->len);
    return rc;
}

static int drain(shmrpc_ctx *ctx)
{
    int64_t v;
    int rc;
    while ((rc = gather_drain_read(ctx, &v)) == 1)
        atomic_fetch_add(&test_gather_read, 1);
    done(rc);
    return rc;
}

const Gather_handlers test_gather_handlers = {
    .sum = sum, .deaf = deaf, .doubled = doubled, .concat = concat, .drain = drain, .stuck = stuck};
