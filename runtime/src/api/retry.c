/* SPDX-License-Identifier: MIT */
/* A client's retry budget and backoff (docs/retries.md), as gRPC's retry throttling and its
 * exponential backoff with full jitter; the loop that uses them is client.c's. */
#include <string.h>

#include "api/retry.h"
#include "core/wait.h"
#include "rpc/rpc.h"

#define MAX_ATTEMPTS 100u
#define MAX_TOKENS 1000u
#define MAX_BACKOFF_MS ((int64_t)3600 * 1000)

void shmrpc__retry_opts_init(shmrpc_retry_opts *o)
{
    /* gRPC's example policy starts at 100 ms; a call here takes microseconds, and a worker
     * that died is replaced in milliseconds, so the first retry comes within 5 ms and the
     * caps stay well under a default deadline of 5 s (5 attempts wait 75 ms at most). */
    *o = (shmrpc_retry_opts){.max_attempts = 5,
                             .initial_backoff_ms = 5,
                             .max_backoff_ms = 200,
                             .backoff_multiplier = 2.0,
                             .max_tokens = 10,
                             .token_ratio = 0.1};
}

int shmrpc__retry_init(shmrpc__retry *r, const shmrpc_retry_opts *o, shmrpc_buf *err)
{
    const char *bad =
        o->max_attempts > MAX_ATTEMPTS ? "max_attempts above 100"
        : o->initial_backoff_ms < 0 || o->initial_backoff_ms > MAX_BACKOFF_MS
            ? "initial_backoff_ms outside 0..3600000"
        : o->max_backoff_ms < 0 || o->max_backoff_ms > MAX_BACKOFF_MS
            ? "max_backoff_ms outside 0..3600000"
        : !(o->backoff_multiplier >= 1.0 && o->backoff_multiplier <= 1000.0)
            ? "backoff_multiplier outside 1..1000"
        : o->max_tokens < 1 || o->max_tokens > MAX_TOKENS  ? "max_tokens outside 1..1000"
        : !(o->token_ratio > 0.0 && o->token_ratio <= 1.0) ? "token_ratio outside (0, 1]"
                                                           : NULL;
    if (bad && o->max_attempts > 1) {
        shmrpc__msg_set(err, "retry settings out of range (shmrpc_client_opts.retry): %s", bad);
        return SHMRPC_EINVAL;
    }
    int64_t ratio = (int64_t)(o->token_ratio * 1000.0 + 0.5);
    *r = (shmrpc__retry){.max_attempts = bad ? 0 : o->max_attempts,
                         .initial_ns = o->initial_backoff_ms * 1000000,
                         .max_ns = o->max_backoff_ms * 1000000,
                         .multiplier = o->backoff_multiplier,
                         .max_milli = (int64_t)o->max_tokens * 1000,
                         .ratio_milli = ratio > 0 ? ratio : 1,
                         .tokens_milli = (int64_t)o->max_tokens * 1000,
                         .rng = (uint64_t)shmrpc__now_ns() ^ (uint64_t)(uintptr_t)r ^ 1};
    if (r->rng == 0) r->rng = 1;
    return 0;
}

void shmrpc__retry_success(shmrpc__retry *r)
{
    r->tokens_milli += r->ratio_milli;
    if (r->tokens_milli > r->max_milli) r->tokens_milli = r->max_milli;
}

bool shmrpc__retry_failed(shmrpc__retry *r)
{
    r->tokens_milli -= 1000;
    if (r->tokens_milli < 0) r->tokens_milli = 0;
    return r->tokens_milli > r->max_milli / 2;
}

int64_t shmrpc__retry_backoff_ns(shmrpc__retry *r, uint32_t n)
{
    double cap = (double)r->initial_ns;
    for (uint32_t i = 1; i < n && cap < (double)r->max_ns; i++)
        cap *= r->multiplier;
    if (cap > (double)r->max_ns) cap = (double)r->max_ns;
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    /* Uniform in [0, cap]: the top 53 bits as a fraction. */
    return (int64_t)(cap * ((double)(r->rng >> 11) / (double)(UINT64_C(1) << 53)));
}
