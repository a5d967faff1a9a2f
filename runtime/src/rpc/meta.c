/* SPDX-License-Identifier: MIT */
/* A call's metadata (docs/metadata.md): the checks of keys, values and traceparents, the
 * one encoding both transports carry, the decoding of what a peer sent, what a handler
 * reads of it, and the trace the server continues. */
#include <string.h>
#include <sys/random.h>

#include "core/proc.h"
#include "core/wait.h"
#include "rpc/meta.h"

/* --- checks ---------------------------------------------------------------------------- */

const char *shmrpc__meta_key_bad(const char *key, size_t klen)
{
    if (klen == 0) return "is empty";
    if (klen > SHMRPC_METADATA_KEY_MAX) return "is longer than 64 bytes";
    for (size_t i = 0; i < klen; i++) {
        char ch = key[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
                  ch == '.';
        if (!ok) return "has a byte outside [a-z0-9-_.] (keys are lower case)";
    }
    return NULL;
}

const char *shmrpc__meta_value_bad(const char *value, size_t vlen)
{
    if (vlen > SHMRPC_METADATA_VALUE_MAX) return "is longer than 1024 bytes";
    if (memchr(value, 0, vlen)) return "holds a NUL byte";
    if (!shmrpc__utf8_valid((const uint8_t *)value, vlen)) return "is not UTF-8";
    return NULL;
}

/* Whether the n bytes at p are lower-case hex, and not all zero when nonzero is asked. */
static bool hex_ok(const char *p, size_t n, bool nonzero)
{
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
        any |= ch != '0';
    }
    return any || !nonzero;
}

const char *shmrpc__traceparent_bad(const char *tp, size_t n)
{
    if (n != SHMRPC_TRACEPARENT_LEN) return "is not 55 bytes long (version 00)";
    if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return "has no '-' where one belongs";
    if (!hex_ok(tp, 2, false)) return "has a version that is not 2 lower-case hex digits";
    if (tp[0] != '0' || tp[1] != '0') return "has a version other than 00 (ff is invalid)";
    if (!hex_ok(tp + 3, 32, false)) return "has a trace-id that is not 32 lower-case hex digits";
    if (!hex_ok(tp + 3, 32, true)) return "has a trace-id of zeros";
    if (!hex_ok(tp + 36, 16, false)) return "has a parent-id that is not 16 lower-case hex digits";
    if (!hex_ok(tp + 36, 16, true)) return "has a parent-id of zeros";
    if (!hex_ok(tp + 53, 2, false)) return "has flags that are not 2 lower-case hex digits";
    return NULL;
}

int shmrpc_traceparent_check(const char *tp)
{
    if (!tp) return shmrpc__err_set(SHMRPC_EINVAL, "no traceparent");
    const char *why = shmrpc__traceparent_bad(tp, strlen(tp));
    if (why) return shmrpc__err_set(SHMRPC_EINVAL, "traceparent '%.64s' %s", tp, why);
    return 0;
}

/* --- span ids ------------------------------------------------------------------------- */

static _Thread_local uint64_t rng_state;
static _Thread_local int32_t rng_pid; /* the process that seeded it: a forked child reseeds */

/* splitmix64: enough for ids that must not repeat, cheap enough for every traced call. */
static uint64_t rng_next(void)
{
    int32_t pid = shmrpc__self_pid();
    if (rng_pid != pid) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed)
            seed = (uint64_t)shmrpc__now_ns() ^ ((uint64_t)pid << 32) ^ (uint64_t)(uintptr_t)&seed;
        rng_state = seed;
        rng_pid = pid;
    }
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void hex_of(uint64_t v, char out[16])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = digits[v & 15];
}

void shmrpc__span_id(char out[16])
{
    uint64_t v;
    while ((v = rng_next()) == 0) {
    }
    hex_of(v, out);
}

void shmrpc_traceparent_new(char out[SHMRPC_TRACEPARENT_SIZE])
{
    memcpy(out, "00-", 3);
    hex_of(rng_next() | 1, out + 3); /* not all zero */
    hex_of(rng_next(), out + 19);
    out[35] = '-';
    shmrpc__span_id(out + 36);
    memcpy(out + 52, "-01", 4);
}

/* --- the encoding ----------------------------------------------------------------------- */

int shmrpc__meta_encode(const shmrpc_metadata *m, shmrpc_buf *out)
{
    uint8_t count = (uint8_t)m->n;
    shmrpc_buf_append(out, &count, 1);
    for (uint32_t i = 0; i < m->n; i++) {
        const struct shmrpc__pair *p = &m->pair[i];
        uint8_t head[SHMRPC__META_PAIR_HEAD] = {(uint8_t)p->klen, (uint8_t)(p->vlen >> 8),
                                                (uint8_t)p->vlen};
        shmrpc_buf_append(out, head, sizeof head);
        shmrpc_buf_append(out, p->key, p->klen);
        shmrpc_buf_append(out, p->value, p->vlen);
    }
    return out->err;
}

int shmrpc__meta_decode(const uint8_t *p, size_t n, shmrpc_arena *a, shmrpc_metadata **out,
                        const char **why)
{
    *out = NULL;
    if (n > SHMRPC_METADATA_MAX_BYTES) {
        *why = "the call's metadata is longer than 4096 bytes";
        return SHMRPC_EPROTO;
    }
    /* The copy first: a channel's bytes may change under the checks. Each string gets a NUL,
     * at most one per pair. */
    shmrpc_metadata *m = shmrpc_arena_alloc(a, sizeof *m, 8);
    char *copy = shmrpc_arena_alloc(a, n + 2 * SHMRPC_METADATA_MAX_PAIRS + 1, 1);
    if (!m || !copy) {
        *why = "out of memory";
        return SHMRPC_ENOMEM;
    }
    uint8_t *in = (uint8_t *)copy + 2 * SHMRPC_METADATA_MAX_PAIRS + 1;
    if (n) memcpy(in, p, n);
    *why = "the call's metadata has no pairs, or more than 16";
    if (n < 1 || in[0] == 0 || in[0] > SHMRPC_METADATA_MAX_PAIRS) return SHMRPC_EPROTO;
    m->n = in[0];
    m->bytes = (uint32_t)n;
    size_t at = 1;
    char *dst = copy;
    for (uint32_t i = 0; i < m->n; i++) {
        *why = "the call's metadata ends inside a pair";
        if (n - at < SHMRPC__META_PAIR_HEAD) return SHMRPC_EPROTO;
        size_t klen = in[at], vlen = (size_t)in[at + 1] << 8 | in[at + 2];
        at += SHMRPC__META_PAIR_HEAD;
        if (klen + vlen > n - at) return SHMRPC_EPROTO;
        const char *key = (const char *)in + at, *value = key + klen;
        *why = shmrpc__meta_key_bad(key, klen) ? "the call's metadata has a malformed key"
               : shmrpc__meta_value_bad(value, vlen)
                   ? "the call's metadata has a value that is not UTF-8 text of at most 1024 "
                     "bytes"
                   : NULL;
        if (*why) return SHMRPC_EPROTO;
        for (uint32_t k = 0; k < i; k++)
            if (m->pair[k].klen == klen && memcmp(m->pair[k].key, key, klen) == 0) {
                *why = "the call's metadata has a key twice";
                return SHMRPC_EPROTO;
            }
        /* The key and the value, each NUL-terminated, moved down to dst: never past what
         * is read next (dst stays 2*(pairs left)+1 bytes behind at least). */
        m->pair[i] = (struct shmrpc__pair){.klen = (uint16_t)klen, .vlen = (uint16_t)vlen};
        memmove(dst, key, klen);
        dst[klen] = 0;
        m->pair[i].key = dst;
        dst += klen + 1;
        memmove(dst, in + at + klen, vlen);
        dst[vlen] = 0;
        m->pair[i].value = dst;
        dst += vlen + 1;
        at += klen + vlen;
    }
    *why = "the call's metadata has bytes after its last pair";
    if (at != n) return SHMRPC_EPROTO;
    *why = NULL;
    *out = m;
    return 0;
}

/* --- reading a metadata --------------------------------------------------------------------- */

size_t shmrpc_metadata_count(const shmrpc_metadata *m)
{
    return m ? m->n : 0;
}

int shmrpc_metadata_at(const shmrpc_metadata *m, size_t i, const char **key, const char **value)
{
    if (!m || i >= m->n) return SHMRPC_EINVAL;
    if (key) *key = m->pair[i].key;
    if (value) *value = m->pair[i].value;
    return 0;
}

const char *shmrpc_metadata_get(const shmrpc_metadata *m, const char *key)
{
    if (!m || !key) return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < m->n; i++)
        if (m->pair[i].klen == klen && memcmp(m->pair[i].key, key, klen) == 0)
            return m->pair[i].value;
    return NULL;
}

/* --- a handler's call ---------------------------------------------------------------------- */

/* Leaves pair i out of m. */
static void drop(shmrpc_metadata *m, uint32_t i)
{
    memmove(&m->pair[i], &m->pair[i + 1], (m->n - i - 1) * sizeof m->pair[0]);
    m->n--;
}

int shmrpc__ctx_set_meta(shmrpc_ctx *ctx, const uint8_t *p, size_t n, const char **why)
{
    shmrpc_metadata *m;
    int rc = shmrpc__meta_decode(p, n, ctx->arena, &m, why);
    if (rc != 0) {
        shmrpc_arena_reset(ctx->arena);
        return rc;
    }
    ctx->meta = m;
    const char *tp = shmrpc_metadata_get(m, "traceparent");
    if (tp && shmrpc__traceparent_bad(tp, strlen(tp)) == NULL) {
        /* Continued: the client's trace-id and flags, a span of this call's own. */
        memcpy(ctx->trace, tp, SHMRPC_TRACEPARENT_SIZE);
        shmrpc__span_id(ctx->trace + 36);
        ctx->tracestate = shmrpc_metadata_get(m, "tracestate");
    } else if (tp) {
        /* W3C: a traceparent that cannot be parsed is dropped with its tracestate, and the
         * receiver starts a trace of its own. */
        for (uint32_t i = m->n; i-- > 0;)
            if (strcmp(m->pair[i].key, "traceparent") == 0 ||
                strcmp(m->pair[i].key, "tracestate") == 0)
                drop(m, i);
        shmrpc_traceparent_new(ctx->trace);
        ctx->tracestate = NULL;
    }
    return 0;
}

const shmrpc_metadata *shmrpc_ctx_metadata_all(shmrpc_ctx *ctx)
{
    return ctx ? ctx->meta : NULL;
}

const char *shmrpc_ctx_metadata(shmrpc_ctx *ctx, const char *key)
{
    return ctx ? shmrpc_metadata_get(ctx->meta, key) : NULL;
}

const char *shmrpc_ctx_traceparent(shmrpc_ctx *ctx)
{
    if (!ctx) return NULL;
    if (ctx->trace[0] == 0) shmrpc_traceparent_new(ctx->trace); /* a trace starts here */
    return ctx->trace;
}

int shmrpc_ctx_set_traceparent(shmrpc_ctx *ctx, const char *tp)
{
    if (!ctx) return shmrpc__err_set(SHMRPC_EINVAL, "no ctx");
    int rc = shmrpc_traceparent_check(tp);
    if (rc == 0) memcpy(ctx->trace, tp, SHMRPC_TRACEPARENT_SIZE);
    return rc;
}
