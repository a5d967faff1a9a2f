/* SPDX-License-Identifier: MIT */
/* Metadata and trace context: the few key/value pairs that travel with a call (a client
 * sets them, a handler and the interceptors read them), and W3C traceparent among them,
 * which a server continues. docs/metadata.md. */
#ifndef SHMRPC_METADATA_H
#define SHMRPC_METADATA_H

#include <stddef.h>

#include <shmrpc/client.h>
#include <shmrpc/decls.h>
#include <shmrpc/service.h>

SHMRPC_BEGIN_DECLS

/* The bounds of a call's metadata: pairs, a key's bytes (1.. of [a-z0-9-_.]), a value's
 * bytes (UTF-8 text without NUL), and all of it as encoded (docs/metadata.md). Keys that
 * begin "shmrpc-" are the library's. */
#define SHMRPC_METADATA_MAX_PAIRS 16
#define SHMRPC_METADATA_KEY_MAX 64
#define SHMRPC_METADATA_VALUE_MAX 1024
#define SHMRPC_METADATA_MAX_BYTES 4096

/* A W3C traceparent, "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>", and room for
 * one with its NUL. */
#define SHMRPC_TRACEPARENT_LEN 55
#define SHMRPC_TRACEPARENT_SIZE 56

/* A call's metadata, read only: the pairs in the order they were set. */
typedef struct shmrpc_metadata shmrpc_metadata;

/* How many pairs m holds (0 for NULL). */
size_t shmrpc_metadata_count(const shmrpc_metadata *m);
/* The i-th pair: 0, or SHMRPC_EINVAL when i is not below the count. Both strings are
 * NUL-terminated and live as long as m. */
int shmrpc_metadata_at(const shmrpc_metadata *m, size_t i, const char **key, const char **value);
/* The value of key, or NULL when m has none. */
const char *shmrpc_metadata_get(const shmrpc_metadata *m, const char *key);

/* Sets key to value (NULL: removes key) for every later call of c, until changed. Checked
 * here, before anything is sent: SHMRPC_EINVAL, with a message naming the key and the bound,
 * for a key that is empty, longer than SHMRPC_METADATA_KEY_MAX, has a byte outside
 * [a-z0-9-_.] or begins "shmrpc-"; a value longer than SHMRPC_METADATA_VALUE_MAX or not
 * UTF-8 (or with a NUL); a pair beyond SHMRPC_METADATA_MAX_PAIRS; or all of them beyond
 * SHMRPC_METADATA_MAX_BYTES encoded; a "traceparent" that is not a valid one
 * (shmrpc_traceparent_check). SHMRPC_ENOMEM. A loan waiting for its call is given up. */
int shmrpc_client_metadata_set(shmrpc_client *c, const char *key, const char *value);
/* Removes every pair. */
void shmrpc_client_metadata_clear(shmrpc_client *c);
/* The pairs c sends with its calls (those a handler's calls add are not among them). */
const shmrpc_metadata *shmrpc_client_metadata(const shmrpc_client *c);

/* The metadata of the call ctx serves, as its client sent it (a malformed traceparent, and
 * its tracestate, left out), or NULL outside a call. */
const shmrpc_metadata *shmrpc_ctx_metadata_all(shmrpc_ctx *ctx);
/* The value of key in the call's metadata, or NULL. */
const char *shmrpc_ctx_metadata(shmrpc_ctx *ctx, const char *key);

/* The traceparent of the call ctx serves: the client's trace-id, a span id of this call's
 * own, and the client's flags (its parent is the client's span, the traceparent the client
 * sent). A call that came without one (or with a malformed one) starts a fresh trace here.
 * The calls the handler makes on its thread carry it on. NULL for a NULL ctx. Valid until
 * the call ends or shmrpc_ctx_set_traceparent. The span id is drawn at the first read, so
 * read it first on the handler's thread before other threads of the handler's share it. */
const char *shmrpc_ctx_traceparent(shmrpc_ctx *ctx);
/* Makes tp the call's traceparent (what the handler's calls carry on): SHMRPC_EINVAL for
 * an invalid one. */
int shmrpc_ctx_set_traceparent(shmrpc_ctx *ctx, const char *tp);

/* 0 when tp is a valid W3C traceparent of version 00 (55 bytes; lower-case hex; ids not
 * all zero), else SHMRPC_EINVAL with a message saying what is wrong. */
int shmrpc_traceparent_check(const char *tp);
/* Writes a fresh traceparent (random trace-id and span id, flags 01: sampled) to out. */
void shmrpc_traceparent_new(char out[SHMRPC_TRACEPARENT_SIZE]);

SHMRPC_END_DECLS
#endif
