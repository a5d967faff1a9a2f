/* SPDX-License-Identifier: MIT */
/* A client's metadata: the pairs it sends with every call, checked as they are set, kept
 * encoded, and a call's own when the handler it is made from carries a trace on. */
#include <stdlib.h>
#include <string.h>

#include "rpc/meta.h"

static const uint8_t none[1];

/* The bytes s's pairs take encoded, with one pair of klen and vlen bytes more. */
static size_t encoded_with(const shmrpc_metadata *m, size_t klen, size_t vlen)
{
    return (m->bytes ? m->bytes : 1) + SHMRPC__META_PAIR_HEAD + klen + vlen;
}

/* m encoded anew into out. */
static int reencode(const shmrpc_metadata *m, shmrpc_buf *out)
{
    shmrpc_buf_clear(out);
    return m->n ? shmrpc__meta_encode(m, out) : 0;
}

/* Forgets pair i. */
static void remove_pair(shmrpc__meta_set *s, uint32_t i)
{
    shmrpc_metadata *m = &s->view;
    m->bytes -= SHMRPC__META_PAIR_HEAD + m->pair[i].klen + m->pair[i].vlen;
    free(s->own[i]);
    memmove(&m->pair[i], &m->pair[i + 1], (m->n - i - 1) * sizeof m->pair[0]);
    memmove(&s->own[i], &s->own[i + 1], (m->n - i - 1) * sizeof s->own[0]);
    if (--m->n == 0) m->bytes = 0;
}

static int check(const char *key, size_t klen, const char *value)
{
    const char *why = shmrpc__meta_key_bad(key, klen);
    if (why) return shmrpc__err_set(SHMRPC_EINVAL, "metadata key '%.80s' %s", key, why);
    if (strncmp(key, "shmrpc-", 7) == 0)
        return shmrpc__err_set(SHMRPC_EINVAL,
                               "metadata key '%s' begins 'shmrpc-', which the library keeps for "
                               "itself",
                               key);
    if (!value) return 0;
    size_t vlen = strlen(value);
    why = shmrpc__meta_value_bad(value, vlen);
    if (why) return shmrpc__err_set(SHMRPC_EINVAL, "the value of metadata key '%s' %s", key, why);
    if (strcmp(key, "traceparent") == 0 && (why = shmrpc__traceparent_bad(value, vlen)) != NULL)
        return shmrpc__err_set(SHMRPC_EINVAL, "traceparent '%.64s' %s", value, why);
    return 0;
}

int shmrpc__meta_set_put(shmrpc__meta_set **sp, const char *key, const char *value)
{
    if (!key) return shmrpc__err_set(SHMRPC_EINVAL, "no metadata key");
    size_t klen = strlen(key);
    int rc = check(key, klen, value);
    if (rc) return rc;
    if (!*sp && !value) return 0;
    if (!*sp && (*sp = calloc(1, sizeof **sp)) == NULL)
        return shmrpc__err_set(SHMRPC_ENOMEM, "out of memory");
    shmrpc__meta_set *s = *sp;
    shmrpc_metadata *m = &s->view;
    uint32_t i = 0;
    while (i < m->n && strcmp(m->pair[i].key, key) != 0)
        i++;
    size_t vlen = value ? strlen(value) : 0;
    size_t bytes = encoded_with(m, klen, vlen);
    if (i < m->n) bytes -= SHMRPC__META_PAIR_HEAD + m->pair[i].klen + m->pair[i].vlen;
    if (value && i == m->n && m->n == SHMRPC_METADATA_MAX_PAIRS)
        return shmrpc__err_set(SHMRPC_EINVAL,
                               "metadata key '%s' would be pair %d, beyond the limit of %d", key,
                               SHMRPC_METADATA_MAX_PAIRS + 1, SHMRPC_METADATA_MAX_PAIRS);
    if (value && bytes > SHMRPC_METADATA_MAX_BYTES)
        return shmrpc__err_set(SHMRPC_EINVAL,
                               "metadata key '%s' would make the call's metadata %zu bytes "
                               "encoded, beyond the limit of %d",
                               key, bytes, SHMRPC_METADATA_MAX_BYTES);
    char *own = NULL;
    if (value) {
        if ((own = malloc(klen + vlen + 2)) == NULL)
            return shmrpc__err_set(SHMRPC_ENOMEM, "out of memory");
        memcpy(own, key, klen + 1);
        memcpy(own + klen + 1, value, vlen + 1);
    }
    if (i < m->n) remove_pair(s, i);
    if (own) {
        m->pair[m->n] = (struct shmrpc__pair){
            .key = own, .value = own + klen + 1, .klen = (uint16_t)klen, .vlen = (uint16_t)vlen};
        s->own[m->n++] = own;
        m->bytes = (uint32_t)bytes; /* counted with the pair it replaces left out */
    }
    s->has_tp = shmrpc_metadata_get(m, "traceparent") != NULL;
    if (reencode(m, &s->enc) != 0) {
        shmrpc__meta_set_clear(s);
        return shmrpc__err_set(SHMRPC_ENOMEM, "out of memory (the client's metadata is cleared)");
    }
    return 0;
}

void shmrpc__meta_set_clear(shmrpc__meta_set *s)
{
    if (!s) return;
    for (uint32_t i = 0; i < s->view.n; i++)
        free(s->own[i]);
    s->view.n = 0;
    s->view.bytes = 0;
    s->has_tp = false;
    shmrpc_buf_clear(&s->enc);
}

void shmrpc__meta_set_free(shmrpc__meta_set *s)
{
    if (!s) return;
    shmrpc__meta_set_clear(s);
    shmrpc_buf_destroy(&s->enc);
    shmrpc_buf_destroy(&s->call_enc);
    free(s);
}

/* Adds key (its value valid through the call) to the call's pairs if it fits the bounds. */
static bool add_if_fits(shmrpc_metadata *m, const char *key, const char *value)
{
    size_t klen = strlen(key), vlen = strlen(value);
    size_t bytes = encoded_with(m, klen, vlen);
    if (m->n == SHMRPC_METADATA_MAX_PAIRS || bytes > SHMRPC_METADATA_MAX_BYTES) return false;
    m->pair[m->n++] = (struct shmrpc__pair){
        .key = key, .value = value, .klen = (uint16_t)klen, .vlen = (uint16_t)vlen};
    m->bytes = (uint32_t)bytes;
    return true;
}

const shmrpc_metadata *shmrpc__meta_for_call(shmrpc__meta_set **sp, shmrpc_bytes *enc)
{
    shmrpc__meta_set *s = *sp;
    shmrpc_ctx *ctx = shmrpc_ctx_current();
    if (!ctx || !ctx->trace[0] || (s && s->has_tp)) {
        if (!s || !s->view.n) {
            *enc = shmrpc_bytes_of(none, 0);
            return NULL;
        }
        *enc = shmrpc_bytes_of(s->enc.data, s->enc.len);
        return &s->view;
    }
    /* A call made from a handler with a trace: it carries the trace on. */
    if (!s && (s = *sp = calloc(1, sizeof *s)) == NULL) {
        *enc = shmrpc_bytes_of(none, 0);
        return NULL;
    }
    s->call = s->view;
    bool has_ts = shmrpc_metadata_get(&s->view, "tracestate") != NULL;
    if (add_if_fits(&s->call, "traceparent", shmrpc_ctx_traceparent(ctx)) && ctx->tracestate &&
        !has_ts)
        add_if_fits(&s->call, "tracestate", ctx->tracestate);
    const shmrpc_metadata *m = &s->call;
    if (reencode(m, &s->call_enc) != 0) { /* out of memory: the client's own pairs */
        m = &s->view;
        shmrpc_buf_clear(&s->call_enc);
        if (m->n) shmrpc_buf_append(&s->call_enc, s->enc.data, s->enc.len);
    }
    *enc = shmrpc_bytes_of(m->n ? s->call_enc.data : none, m->n ? s->call_enc.len : 0);
    return m->n ? m : NULL;
}
