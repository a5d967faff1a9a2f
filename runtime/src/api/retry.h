/* SPDX-License-Identifier: MIT */
/* A client's retries of @idempotent methods (docs/retries.md): which failures are retried,
 * the budget (gRPC's retry throttling) and the backoff. client.c runs the loop. */
#ifndef SHMRPC_SRC_API_RETRY_H
#define SHMRPC_SRC_API_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include <shmrpc/buf.h>
#include <shmrpc/client.h>
#include <shmrpc/status.h>

/* A client's retry settings and budget; used by the client's one thread at a time. */
typedef struct shmrpc__retry {
    uint32_t max_attempts; /* first attempt included; 0 or 1: no retries */
    int64_t initial_ns;    /* the first backoff's cap */
    int64_t max_ns;        /* every backoff's cap */
    double multiplier;     /* of the cap, retry after retry */
    int64_t max_milli;     /* the budget's size, in thousandths of a token */
    int64_t ratio_milli;   /* what a success gives back, in thousandths of a token */
    int64_t tokens_milli;  /* the budget now, 0..max_milli */
    uint64_t rng;          /* xorshift64 state of the jitter; never 0 */
} shmrpc__retry;

/* The defaults, for shmrpc_client_opts_init. */
void shmrpc__retry_opts_init(shmrpc_retry_opts *o);

/* r from o, checked: SHMRPC_EINVAL with a message in err for a value out of range. */
int shmrpc__retry_init(shmrpc__retry *r, const shmrpc_retry_opts *o, shmrpc_buf *err);

/* Whether a call that failed with rc may be made again if its method is @idempotent:
 * SHMRPC_EPEERDIED (it may have run) and SHMRPC_EUNAVAIL (the server was away; or a handler
 * said so, passing on what its own call met). */
static inline bool shmrpc__retryable(int rc)
{
    return rc == SHMRPC_EPEERDIED || rc == SHMRPC_EUNAVAIL;
}

/* An attempt of an @idempotent method succeeded: the budget gains token_ratio. */
void shmrpc__retry_success(shmrpc__retry *r);

/* An attempt failed with a retryable status: the budget loses a token; true when more than
 * half of it is left, so that a retry may follow. */
bool shmrpc__retry_failed(shmrpc__retry *r);

/* The backoff before retry n (1: the first), in ns: full jitter, uniform in
 * [0, min(max, initial * multiplier^(n-1))]. */
int64_t shmrpc__retry_backoff_ns(shmrpc__retry *r, uint32_t n);

#endif
