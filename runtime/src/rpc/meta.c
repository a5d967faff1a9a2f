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

/* Eight bytes at a time (SWAR): each byte's high bit, of a word whose bytes are all below
 * 0x80 (so that no sum below carries into the next byte). */
#define BYTES_1 UINT64_C(0x0101010101010101)
#define BYTES_HIGH (BYTES_1 * 0x80)

/* The high bit of each byte of w that lies in lo..hi: b + (0x80 - lo) reaches 0x80 when
 * b >= lo, and b + (0x7f - hi) when b > hi. */
static uint64_t bytes_within(uint64_t w, uint8_t lo, uint8_t hi)
{
    return (w + BYTES_1 * (0x80u - lo)) & ~(w + BYTES_1 * (0x7fu - hi)) & BYTES_HIGH;
}

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

/* Whether the n bytes at p are ASCII without NUL, checked a word at a time: the common
 * value (a traceparent, a token), which then needs no check a byte at a time. */
static bool ascii_text(const char *p, size_t n)
{
    if (n < sizeof(uint64_t)) return false;
    uint64_t w, odd = 0;
    for (size_t i = 0;; i += sizeof w) {
        if (i > n - sizeof w) i = n - sizeof w; /* the last word overlaps the one before */
        memcpy(&w, p + i, sizeof w);
        odd |= (w | ((w - BYTES_1) & ~w)) & BYTES_HIGH; /* a high bit, or a zero byte */
        if (i == n - sizeof w) return odd == 0;
    }
}

const char *shmrpc__meta_value_bad(const char *value, size_t vlen)
{
    if (vlen > SHMRPC_METADATA_VALUE_MAX) return "is longer than 1024 bytes";
    if (ascii_text(value, vlen)) return NULL;
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

/* Whether the 8 bytes at p (read into *w) are lower-case hex digits. */
static bool hex_word(const char *p, uint64_t *w)
{
    memcpy(w, p, sizeof *w);
    return (*w & BYTES_HIGH) == 0 &&
           (bytes_within(*w, '0', '9') | bytes_within(*w, 'a', 'f')) == BYTES_HIGH;
}

/* Whether tp (55 bytes) is a valid traceparent: the common case, which every traced call
 * asks of its server, in a few words rather than a branch a byte. A false answer is
 * explained by the checks a byte at a time below. */
static bool traceparent_ok(const char *tp)
{
    const uint64_t zeros = BYTES_1 * '0';
    uint64_t w, trace = 0, parent = 0;
    bool ok = tp[0] == '0' && tp[1] == '0' && tp[2] == '-' && tp[35] == '-' && tp[52] == '-' &&
              hex_ok(tp + 53, 2, false);
    for (int k = 0; k < 4; k++) {
        ok &= hex_word(tp + 3 + 8 * k, &w);
        trace |= w ^ zeros;
    }
    for (int k = 0; k < 2; k++) {
        ok &= hex_word(tp + 36 + 8 * k, &w);
        parent |= w ^ zeros;
    }
    return ok && trace != 0 && parent != 0;
}

const char *shmrpc__traceparent_bad(const char *tp, size_t n)
{
    if (n != SHMRPC_TRACEPARENT_LEN) return "is not 55 bytes long (version 00)";
    if (traceparent_ok(tp)) return NULL;
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
    /* Each string copied out of p once, with its NUL, before it is checked: a channel's
     * bytes may change under the checks. Its pairs' heads (3 bytes each) leave room for
     * the NULs, so n bytes hold the strings. */
    shmrpc_metadata *m = shmrpc_arena_alloc(a, sizeof *m + n, 8);
    if (!m) {
        *why = "out of memory";
        return SHMRPC_ENOMEM;
    }
    char *dst = (char *)(m + 1);
    *why = "the call's metadata has no pairs, or more than 16";
    uint8_t count = n ? p[0] : 0;
    if (count == 0 || count > SHMRPC_METADATA_MAX_PAIRS) return SHMRPC_EPROTO;
    m->bytes = (uint32_t)n;
    m->trace = 0;
    size_t at = 1;
    for (uint32_t i = 0; i < count; i++) {
        *why = "the call's metadata ends inside a pair";
        uint8_t head[SHMRPC__META_PAIR_HEAD];
        if (n - at < sizeof head) return SHMRPC_EPROTO;
        memcpy(head, p + at, sizeof head);
        size_t klen = head[0], vlen = (size_t)head[1] << 8 | head[2];
        at += sizeof head;
        if (klen + vlen > n - at) return SHMRPC_EPROTO;
        char *key = dst, *value = key + klen + 1;
        memcpy(key, p + at, klen);
        key[klen] = 0;
        memcpy(value, p + at + klen, vlen);
        value[vlen] = 0;
        dst = value + vlen + 1;
        at += klen + vlen;
        /* A valid traceparent, the pair of every traced call, is its key and text already. */
        bool trace = klen == sizeof "traceparent" - 1 && memcmp(key, "traceparent", klen) == 0 &&
                     vlen == SHMRPC_TRACEPARENT_LEN && traceparent_ok(value);
        *why = trace                          ? NULL
               : shmrpc__meta_key_bad(key, klen) ? "the call's metadata has a malformed key"
               : shmrpc__meta_value_bad(value, vlen)
                   ? "the call's metadata has a value that is not UTF-8 text of at most 1024 "
                     "bytes"
                   : NULL;
        if (*why) return SHMRPC_EPROTO;
        if (trace) m->trace = i + 1;
        for (uint32_t k = 0; k < i; k++)
            if (m->pair[k].klen == klen && memcmp(m->pair[k].key, key, klen) == 0) {
                *why = "the call's metadata has a key twice";
                return SHMRPC_EPROTO;
            }
        m->pair[i] = (struct shmrpc__pair){
            .key = key, .value = value, .klen = (uint16_t)klen, .vlen = (uint16_t)vlen};
    }
    m->n = count;
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

/* The pair of m whose key is key (klen bytes), or NULL. */
static const struct shmrpc__pair *pair_of(const shmrpc_metadata *m, const char *key, size_t klen)
{
    for (uint32_t i = 0; i < m->n; i++)
        if (m->pair[i].klen == klen && memcmp(m->pair[i].key, key, klen) == 0) return &m->pair[i];
    return NULL;
}

const char *shmrpc_metadata_get(const shmrpc_metadata *m, const char *key)
{
    if (!m || !key) return NULL;
    const struct shmrpc__pair *p = pair_of(m, key, strlen(key));
    return p ? p->value : NULL;
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
    if (m->trace) {
        /* Continued: the client's trace-id and flags, a span of this call's own (drawn when
         * the trace is first read). */
        memcpy(ctx->trace, m->pair[m->trace - 1].value, SHMRPC_TRACEPARENT_SIZE);
        ctx->span_due = true;
        const struct shmrpc__pair *ts = pair_of(m, "tracestate", strlen("tracestate"));
        ctx->tracestate = ts ? ts->value : NULL;
    } else if (pair_of(m, "traceparent", strlen("traceparent"))) {
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
    if (ctx->span_due) {
        shmrpc__span_id(ctx->trace + 36);
        ctx->span_due = false; /* one span for the whole call */
    }
    return ctx->trace;
}

int shmrpc_ctx_set_traceparent(shmrpc_ctx *ctx, const char *tp)
{
    if (!ctx) return shmrpc__err_set(SHMRPC_EINVAL, "no ctx");
    int rc = shmrpc_traceparent_check(tp);
    if (rc == 0) {
        memcpy(ctx->trace, tp, SHMRPC_TRACEPARENT_SIZE);
        ctx->span_due = false;
    }
    return rc;
}
