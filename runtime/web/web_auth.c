/* SPDX-License-Identifier: MIT */
/* The management page's secret, sessions and login throttle (web_auth.h). The
 * cryptography is libsodium's, as for the TCP transport's secret (runtime/src/auth.c). */
#include "web_auth.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <shmrpc/status.h>
#include <shmrpc/tcp.h>

/* last_try_ms before any attempt: far enough back for the first one, and for now minus it
 * not to overflow. */
#define NEVER (INT64_MIN / 2)

int64_t web_auth_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int web_auth_init(web_auth *a, const char *path, char *err, size_t cap)
{
    memset(a, 0, sizeof *a);
    atomic_init(&a->last_try_ms, NEVER);
    pthread_mutex_init(&a->mu, NULL);
    if (sodium_init() < 0) {
        /* It fails only when it cannot open /dev/urandom or get random bytes. */
        snprintf(err, cap, "libsodium did not initialize (no random bytes)");
        return SHMRPC_ESYS(EIO);
    }
    unsigned char secret[SHMRPC_SECRET_MAX];
    size_t len = 0;
    int rc = shmrpc_secret_load(path, secret, sizeof secret, &len);
    if (rc) snprintf(err, cap, "%s", shmrpc_errmsg());
    if (rc == 0) crypto_generichash(a->hash, sizeof a->hash, secret, len, NULL, 0);
    sodium_memzero(secret, sizeof secret);
    return rc;
}

void web_auth_destroy(web_auth *a)
{
    pthread_mutex_destroy(&a->mu);
    sodium_memzero(a->hash, sizeof a->hash);
    sodium_memzero(a->sessions, sizeof a->sessions);
}

/* Lets one attempt a second through: the first to move last_try_ms to now. */
static bool claim(web_auth *a, int64_t now_ms, int64_t *prev)
{
    int64_t last = atomic_load(&a->last_try_ms);
    do {
        if (now_ms - last < WEB_AUTH_THROTTLE_MS) return false;
    } while (!atomic_compare_exchange_weak(&a->last_try_ms, &last, now_ms));
    *prev = last;
    return true;
}

_Static_assert(WEB_AUTH_ID_LEN / 2 <= WEB_RANDOM_MAX, "a session id is made in one call");

/* errno is read where it was set; a read of no bytes, which getrandom does not do but which
 * would loop here, is SHMRPC_ESYS(EIO). */
int web_random_hex(char *out, size_t n_bytes)
{
    unsigned char r[WEB_RANDOM_MAX];
    if (n_bytes > sizeof r) return SHMRPC_EINVAL;
    size_t got = 0;
    while (got < n_bytes) {
        ssize_t n = getrandom(r + got, n_bytes - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return SHMRPC_ESYS(errno);
        if (n == 0) return SHMRPC_ESYS(EIO);
        got += (size_t)n;
    }
    sodium_bin2hex(out, 2 * n_bytes + 1, r, n_bytes);
    sodium_memzero(r, sizeof r);
    return 0;
}

int web_auth_login(web_auth *a, const void *given, size_t n, int64_t now_ms,
                   char id[WEB_AUTH_ID_LEN + 1])
{
    int64_t prev;
    if (!claim(a, now_ms, &prev)) return SHMRPC_EBUSY;
    unsigned char h[sizeof a->hash];
    crypto_generichash(h, sizeof h, given, n, NULL, 0);
    bool ok = sodium_memcmp(h, a->hash, sizeof h) == 0;
    sodium_memzero(h, sizeof h);
    if (!ok) return SHMRPC_EPERM;
    /* Only failures count against the second: the next attempt may come at once. */
    int64_t mine = now_ms;
    atomic_compare_exchange_strong(&a->last_try_ms, &mine, prev);
    int rc = web_random_hex(id, WEB_AUTH_ID_LEN / 2);
    if (rc) return rc;
    pthread_mutex_lock(&a->mu);
    web_session *slot = &a->sessions[0];
    for (size_t i = 0; i < WEB_AUTH_SESSIONS; i++) {
        web_session *s = &a->sessions[i];
        bool spare = !s->id[0] || now_ms - s->created_ms >= WEB_AUTH_LIFETIME_MS;
        if (spare) {
            slot = s;
            break;
        }
        if (s->created_ms < slot->created_ms) slot = s; /* the oldest, when none is spare */
    }
    memcpy(slot->id, id, WEB_AUTH_ID_LEN + 1);
    slot->created_ms = now_ms;
    pthread_mutex_unlock(&a->mu);
    return 0;
}

/* The slot holding id (compared in constant time), or NULL. Under mu. */
static web_session *find(web_auth *a, const char *id)
{
    if (!id || strlen(id) != WEB_AUTH_ID_LEN) return NULL;
    web_session *found = NULL;
    for (size_t i = 0; i < WEB_AUTH_SESSIONS; i++)
        if (a->sessions[i].id[0] && sodium_memcmp(a->sessions[i].id, id, WEB_AUTH_ID_LEN) == 0)
            found = &a->sessions[i];
    return found;
}

bool web_auth_session_ok(web_auth *a, const char *id, int64_t now_ms)
{
    pthread_mutex_lock(&a->mu);
    web_session *s = find(a, id);
    bool ok = s && now_ms - s->created_ms < WEB_AUTH_LIFETIME_MS;
    if (s && !ok) sodium_memzero(s, sizeof *s);
    pthread_mutex_unlock(&a->mu);
    return ok;
}

void web_auth_logout(web_auth *a, const char *id)
{
    pthread_mutex_lock(&a->mu);
    web_session *s = find(a, id);
    if (s) sodium_memzero(s, sizeof *s);
    pthread_mutex_unlock(&a->mu);
}

/* --- the secret as JSON ----------------------------------------------------------------- */

/* A reader of JSON text in place: nothing is copied but what it is asked to decode. */
typedef struct json_in {
    const unsigned char *p, *end;
} json_in;

/* How deep arrays and objects beside the secret may nest. */
#define JSON_DEPTH_MAX 32

static void json_blank(json_in *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

/* c, when it comes next (after blanks): true, and past it. */
static bool json_take(json_in *r, unsigned char c)
{
    json_blank(r);
    if (r->p == r->end || *r->p != c) return false;
    r->p++;
    return true;
}

/* Four hex digits of a \u escape: 0, or -1. */
static int json_hex4(json_in *r, uint32_t *v)
{
    if (r->end - r->p < 4) return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = *r->p++;
        unsigned d = c >= '0' && c <= '9'   ? c - '0'
                     : c >= 'a' && c <= 'f' ? c - 'a' + 10
                     : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                            : 16;
        if (d == 16) return -1;
        *v = *v << 4 | d;
    }
    return 0;
}

/* Appends a byte to out (cap bytes, *k used; out NULL: only counted): false when full. */
static bool json_put(char *out, size_t cap, size_t *k, unsigned c)
{
    if (out && *k >= cap) return false;
    if (out) out[*k] = (char)c;
    (*k)++;
    return true;
}

/* Appends code point cp to out as UTF-8, as json_put does a byte. */
static bool json_put_utf8(char *out, size_t cap, size_t *k, uint32_t cp)
{
    if (cp < 0x80) return json_put(out, cap, k, cp);
    int len = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    static const unsigned lead[] = {0, 0, 0xc0, 0xe0, 0xf0};
    if (!json_put(out, cap, k, lead[len] | cp >> (6 * (len - 1)))) return false;
    for (int i = len - 2; i >= 0; i--)
        if (!json_put(out, cap, k, 0x80 | (cp >> (6 * i) & 0x3f))) return false;
    return true;
}

/* The code point of the \u escape just read, with the second half of a surrogate pair:
 * 0, or -1 (a lone surrogate is none). */
static int json_escape_u(json_in *r, uint32_t *cp)
{
    if (json_hex4(r, cp) != 0 || (*cp >= 0xdc00 && *cp <= 0xdfff)) return -1;
    if (*cp < 0xd800 || *cp > 0xdbff) return 0;
    uint32_t lo;
    if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u') return -1;
    r->p += 2;
    if (json_hex4(r, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff) return -1;
    *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
    return 0;
}

/* The string whose '"' was just read, decoded into out (cap bytes; NULL: skipped), its
 * length in *n: 0, or -1 when it is no JSON string or does not fit. Bytes that are not
 * UTF-8 are taken as they are: the secret is compared byte for byte. */
static int json_string_in(json_in *r, char *out, size_t cap, size_t *n)
{
    static const char escaped[8] = "\"\\/bfnrt", meant[8] = "\"\\/\b\f\n\r\t";
    size_t k = 0;
    for (;;) {
        if (r->p == r->end) return -1;
        unsigned c = *r->p++;
        if (c == '"') break;
        if (c < 0x20) return -1; /* a control character must be escaped */
        bool ok;
        if (c != '\\') {
            ok = json_put(out, cap, &k, c);
        } else {
            if (r->p == r->end) return -1;
            c = *r->p++;
            const char *e = memchr(escaped, (int)c, sizeof escaped);
            uint32_t cp;
            if (e)
                ok = json_put(out, cap, &k, (unsigned char)meant[e - escaped]);
            else if (c == 'u' && json_escape_u(r, &cp) == 0)
                ok = json_put_utf8(out, cap, &k, cp);
            else
                return -1;
        }
        if (!ok) return -1;
    }
    if (n) *n = k;
    return 0;
}

/* Past the digits at *p: whether there was one. */
static bool json_digits(const unsigned char **p, const unsigned char *end)
{
    const unsigned char *from = *p;
    while (*p < end && **p >= '0' && **p <= '9')
        (*p)++;
    return *p > from;
}

/* Past a literal (true, false, null) or a number: 0, or -1. */
static int json_skip_scalar(json_in *r)
{
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        size_t len = strlen(words[i]);
        if ((size_t)(r->end - r->p) >= len && memcmp(r->p, words[i], len) == 0) {
            r->p += len;
            return 0;
        }
    }
    /* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
    const unsigned char *p = r->p;
    if (p < r->end && *p == '-') p++;
    if (p < r->end && *p == '0')
        p++;
    else if (!json_digits(&p, r->end))
        return -1;
    if (p < r->end && *p == '.' && (p++, !json_digits(&p, r->end))) return -1;
    if (p < r->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < r->end && (*p == '+' || *p == '-')) p++;
        if (!json_digits(&p, r->end)) return -1;
    }
    r->p = p;
    return 0;
}

/* Past any JSON value: 0, or -1. */
static int json_skip(json_in *r, int depth)
{
    json_blank(r);
    if (r->p == r->end || depth > JSON_DEPTH_MAX) return -1;
    unsigned c = *r->p;
    if (c == '"') {
        r->p++;
        return json_string_in(r, NULL, 0, NULL);
    }
    if (c != '{' && c != '[') return json_skip_scalar(r);
    bool object = c == '{';
    unsigned char close = object ? '}' : ']';
    r->p++;
    if (json_take(r, close)) return 0;
    do {
        if (object &&
            (!json_take(r, '"') || json_string_in(r, NULL, 0, NULL) != 0 || !json_take(r, ':')))
            return -1;
        if (json_skip(r, depth + 1) != 0) return -1;
    } while (json_take(r, ','));
    return json_take(r, close) ? 0 : -1;
}

int web_auth_json_secret(const char *body, size_t len, char *out, size_t cap, size_t *n)
{
    json_in r = {(const unsigned char *)body, (const unsigned char *)body + len};
    bool found = false;
    if (!json_take(&r, '{')) return SHMRPC_EINVAL;
    if (!json_take(&r, '}')) {
        do {
            /* The name, decoded ("\u0073ecret" is "secret" too); a longer one is another. */
            char name[8];
            size_t k = 0;
            if (!json_take(&r, '"')) return SHMRPC_EINVAL;
            const unsigned char *at = r.p;
            if (json_string_in(&r, name, sizeof name, &k) != 0) {
                r.p = at;
                k = SIZE_MAX;
                if (json_string_in(&r, NULL, 0, NULL) != 0) return SHMRPC_EINVAL;
            }
            if (!json_take(&r, ':')) return SHMRPC_EINVAL;
            if (k == 6 && memcmp(name, "secret", 6) == 0) {
                /* A second "secret" is ambiguous: refused, not one of them chosen. */
                if (found || !json_take(&r, '"') || json_string_in(&r, out, cap, n) != 0)
                    return SHMRPC_EINVAL;
                found = true;
            } else if (json_skip(&r, 1) != 0) {
                return SHMRPC_EINVAL;
            }
        } while (json_take(&r, ','));
        if (!json_take(&r, '}')) return SHMRPC_EINVAL;
    }
    json_blank(&r);
    return found && r.p == r.end ? 0 : SHMRPC_EINVAL;
}
