/* SPDX-License-Identifier: MIT */
/* A call's metadata as the library holds it (meta.c): its checks, its one encoding (the
 * shm:// channel and the tcp:// REQUEST carry the same bytes, docs/metadata.md), the
 * decoding of a peer's, and the traceparent's checks and span ids. */
#ifndef SHMRPC_SRC_META_H
#define SHMRPC_SRC_META_H

#include "rpc/rpc.h"

struct shmrpc_metadata {
    uint32_t n;     /* pairs */
    uint32_t bytes; /* encoded: 1 + each pair's 3 + key + value */
    /* Decoded (shmrpc__meta_decode): 1 + the index of the pair "traceparent" when its value
     * is a valid traceparent, which no other check then needs; 0: none, or a malformed one. */
    uint32_t trace;
    struct shmrpc__pair {
        const char *key, *value; /* NUL-terminated */
        uint16_t klen, vlen;
    } pair[SHMRPC_METADATA_MAX_PAIRS];
};

/* The bytes a pair takes encoded: its lengths (1 + 2) and its bytes. */
#define SHMRPC__META_PAIR_HEAD 3u

/* Whether key (klen bytes) may be a key: 1..SHMRPC_METADATA_KEY_MAX of [a-z0-9-_.]. NULL, or
 * why not. */
const char *shmrpc__meta_key_bad(const char *key, size_t klen);
/* Whether value (vlen bytes) may be a value: at most SHMRPC_METADATA_VALUE_MAX bytes of
 * UTF-8 without NUL. NULL, or why not. */
const char *shmrpc__meta_value_bad(const char *value, size_t vlen);
/* Whether tp (n bytes) is a valid traceparent: NULL, or why not. */
const char *shmrpc__traceparent_bad(const char *tp, size_t n);

/* Appends m encoded to out: a count byte, then each pair as a key length byte, a value
 * length (16 bits, big-endian), the key and the value. m passed the checks above and its
 * bounds. SHMRPC_ENOMEM. */
int shmrpc__meta_encode(const shmrpc_metadata *m, shmrpc_buf *out);

/* Reads a peer's n encoded bytes at p, which it may still be writing (a channel): each byte
 * read once, each string copied into a before it is checked (n up to SHMRPC_METADATA_MAX_BYTES; a count of 1 to
 * SHMRPC_METADATA_MAX_PAIRS; each length inside what is left; keys and values by the checks
 * above; no key twice; nothing left over). *out lives in a. SHMRPC_EPROTO with why (static
 * text, or in a), SHMRPC_ENOMEM. */
int shmrpc__meta_decode(const uint8_t *p, size_t n, shmrpc_arena *a, shmrpc_metadata **out,
                        const char **why);

/* Gives the call ctx serves the n bytes of metadata its client sent (n 0: none): decoded
 * into its arena, a valid traceparent continued with a span id of its own, a malformed one
 * dropped (with its tracestate) and a fresh trace started. A transport calls it before
 * shmrpc__dispatch, which forgets it after the call; on failure (SHMRPC_EPROTO, SHMRPC_ENOMEM,
 * why) it answers the call so rather than run it. */
int shmrpc__ctx_set_meta(shmrpc_ctx *ctx, const uint8_t *p, size_t n, const char **why);

/* 16 lower-case hex digits of a random span id, not all zero: a per-thread generator seeded
 * from getrandom (seeded anew in a forked child). */
void shmrpc__span_id(char out[16]);

/* --- a client's metadata (meta_set.c) ------------------------------------------------- */

/* The pairs a client sends with every call (shmrpc_client_metadata_set), as set and as
 * encoded, and the room for a call that adds the trace of the handler it is made from. */
typedef struct shmrpc__meta_set {
    shmrpc_metadata view;                 /* the pairs, into own: in the order set */
    char *own[SHMRPC_METADATA_MAX_PAIRS]; /* pair i's "key\0value\0", malloc'd */
    shmrpc_buf enc;                       /* view encoded, re-made at each change */
    bool has_tp;          /* the client set its own traceparent: no handler's replaces it */
    shmrpc_metadata call; /* a call's: view and the handler's traceparent and tracestate */
    shmrpc_buf call_enc;
} shmrpc__meta_set;

/* Sets (value NULL: removes) key in *s (made at the first pair), by the checks of
 * shmrpc_client_metadata_set, whose status and message (the thread's) it returns. */
int shmrpc__meta_set_put(shmrpc__meta_set **s, const char *key, const char *value);
void shmrpc__meta_set_clear(shmrpc__meta_set *s);
void shmrpc__meta_set_free(shmrpc__meta_set *s);

/* The metadata of a call made now on this thread, encoded in *enc (len 0: none), and as the
 * interceptors see it (NULL: none): s's pairs, with the traceparent of the call whose handler
 * runs on this thread (and its client's tracestate) unless s has its own traceparent. What
 * would not fit the bounds is left out: the tracestate first, then the trace. *s is made
 * when needed; a failure to make it sends the call without the trace. */
const shmrpc_metadata *shmrpc__meta_for_call(shmrpc__meta_set **s, shmrpc_bytes *enc);

#endif
