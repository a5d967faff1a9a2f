/* SPDX-License-Identifier: MIT */
/* A call's metadata as the library checks it (runtime/src/rpc/meta.c, meta_set.c,
 * docs/metadata.md): a peer's blocks that lie (lengths past the end, too many pairs, a key
 * twice, bad keys and values, bytes left over, beyond 4 KiB) each refused with its message;
 * the client's bounds, each with its message; traceparents; a server continuing a trace and
 * dropping a malformed one. */
#include <stdio.h>
#include <string.h>

#include "rpc/meta.h"
#include "unit.h"

/* A block written byte by byte (not by the encoder under test). */
typedef struct block {
    uint8_t b[8192];
    size_t n;
} block;

static void put(block *k, const void *p, size_t n)
{
    memcpy(k->b + k->n, p, n);
    k->n += n;
}

static void pair(block *k, const char *key, const char *value, size_t vlen)
{
    size_t klen = strlen(key);
    uint8_t head[3] = {(uint8_t)klen, (uint8_t)(vlen >> 8), (uint8_t)vlen};
    put(k, head, 3);
    put(k, key, klen);
    put(k, value, vlen);
}

static int decode(const block *k, const char **why)
{
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_metadata *m;
    int rc = shmrpc__meta_decode(k->b, k->n, a, &m, why);
    if (rc == 0) assert_non_null(m);
    shmrpc_arena_free(a);
    return rc;
}

static void refused(const block *k, const char *msg)
{
    const char *why = NULL;
    assert_int_equal(decode(k, &why), SHMRPC_EPROTO);
    assert_string_equal(why, msg);
}

static void a_peers_block_that_lies(void **state)
{
    (void)state;
    const char *why;
    block k = {.n = 0};
    refused(&k, "the call's metadata has no pairs, or more than 16");
    k.b[k.n++] = 0;
    refused(&k, "the call's metadata has no pairs, or more than 16");
    k = (block){.b = {17}, .n = 1};
    for (int i = 0; i < 17; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        pair(&k, key, "v", 1);
    }
    refused(&k, "the call's metadata has no pairs, or more than 16");
    /* A value length past the end. */
    k = (block){.b = {1}, .n = 1};
    pair(&k, "user", "alice", 5);
    k.b[3] = 0xff;
    refused(&k, "the call's metadata ends inside a pair");
    /* A count that promises more pairs than come. */
    k = (block){.b = {2}, .n = 1};
    pair(&k, "user", "alice", 5);
    refused(&k, "the call's metadata ends inside a pair");
    /* Bytes after the last pair. */
    k = (block){.b = {1}, .n = 1};
    pair(&k, "user", "alice", 5);
    k.b[k.n++] = 'x';
    refused(&k, "the call's metadata has bytes after its last pair");
    /* A key twice. */
    k = (block){.b = {2}, .n = 1};
    pair(&k, "user", "alice", 5);
    pair(&k, "user", "bob", 3);
    refused(&k, "the call's metadata has a key twice");
    /* Keys: upper case, empty, a space. */
    k = (block){.b = {1}, .n = 1};
    pair(&k, "User", "x", 1);
    refused(&k, "the call's metadata has a malformed key");
    k = (block){.b = {1}, .n = 1};
    pair(&k, "", "x", 1);
    refused(&k, "the call's metadata has a malformed key");
    /* Values: not UTF-8, a NUL, longer than 1024. */
    const char *bad =
        "the call's metadata has a value that is not UTF-8 text of at most 1024 bytes";
    k = (block){.b = {1}, .n = 1};
    pair(&k, "v", "\xc3\x28", 2);
    refused(&k, bad);
    k = (block){.b = {1}, .n = 1};
    pair(&k, "v", "a\0b", 3);
    refused(&k, bad);
    static char big[2048];
    memset(big, 'x', sizeof big);
    k = (block){.b = {1}, .n = 1};
    pair(&k, "v", big, 1025);
    refused(&k, bad);
    /* Beyond 4 KiB in all. */
    k = (block){.b = {5}, .n = 1};
    for (int i = 0; i < 5; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        pair(&k, key, big, 1000);
    }
    refused(&k, "the call's metadata is longer than 4096 bytes");
    /* The most that fits: 16 pairs, 4096 bytes. */
    k = (block){.b = {16}, .n = 1};
    for (int i = 0; i < 16; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%02d", i);
        pair(&k, key, big, i < 15 ? 250 : 4096 - 1 - 16 * 6 - 15 * 250);
    }
    assert_int_equal(k.n, 4096);
    assert_int_equal(decode(&k, &why), 0);
}

/* A block read back: the pairs in order, NUL-terminated. */
static void round_trip(void **state)
{
    (void)state;
    block k = {.b = {3}, .n = 1};
    pair(&k, "user", "alice", 5);
    pair(&k, "empty", "", 0);
    pair(&k, "x-text_1.a", "\xc3\xbc", 2);
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc_metadata *m;
    const char *why;
    assert_int_equal(shmrpc__meta_decode(k.b, k.n, a, &m, &why), 0);
    assert_int_equal(shmrpc_metadata_count(m), 3);
    const char *key, *value;
    assert_int_equal(shmrpc_metadata_at(m, 2, &key, &value), 0);
    assert_string_equal(key, "x-text_1.a");
    assert_string_equal(value, "\xc3\xbc");
    assert_string_equal(shmrpc_metadata_get(m, "empty"), "");
    assert_string_equal(shmrpc_metadata_get(m, "user"), "alice");
    assert_null(shmrpc_metadata_get(m, "nobody"));
    assert_int_equal(shmrpc_metadata_at(m, 3, &key, &value), SHMRPC_EINVAL);
    /* Encoded again: the same bytes. */
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    assert_int_equal(shmrpc__meta_encode(m, &out), 0);
    assert_int_equal(out.len, k.n);
    assert_memory_equal(out.data, k.b, k.n);
    shmrpc_buf_destroy(&out);
    shmrpc_arena_free(a);
}

#define TP "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

static void traceparents(void **state)
{
    (void)state;
    assert_int_equal(shmrpc_traceparent_check(TP), 0);
    static const struct {
        const char *tp, *msg;
    } bad[] = {
        {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0", "is not 55 bytes long"},
        {"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", "has a trace-id that is not"},
        {"00-00000000000000000000000000000000-b7ad6b7169203331-01", "has a trace-id of zeros"},
        {"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", "has a parent-id of zeros"},
        {"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "has a version other than 00"},
        {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g", "has flags that are not"},
        {"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "has no '-' where"},
        {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333z-01", "has a parent-id that is not"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(shmrpc_traceparent_check(bad[i].tp), SHMRPC_EINVAL);
        assert_non_null(strstr(shmrpc_errmsg(), bad[i].msg));
    }
    char fresh[SHMRPC_TRACEPARENT_SIZE], other[SHMRPC_TRACEPARENT_SIZE];
    shmrpc_traceparent_new(fresh);
    shmrpc_traceparent_new(other);
    assert_int_equal(shmrpc_traceparent_check(fresh), 0);
    assert_string_not_equal(fresh, other);
}

/* Whether tp, 55 bytes, is a traceparent by W3C's rules, written out plainly: the oracle
 * the library's checks a word at a time are held to. */
static bool w3c_valid(const char *tp)
{
    bool trace_set = false, parent_set = false;
    for (int i = 0; i < SHMRPC_TRACEPARENT_LEN; i++) {
        char ch = tp[i];
        bool hex = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
        if (i == 2 || i == 35 || i == 52) {
            if (ch != '-') return false;
        } else if (i < 2) {
            if (ch != '0') return false; /* version 00 */
        } else if (!hex) {
            return false;
        } else if (ch != '0') {
            trace_set |= i < 35;
            parent_set |= i > 35 && i < 52;
        }
    }
    return trace_set && parent_set;
}

/* Every byte value at every place of a traceparent, and all-zero ids but for one digit at
 * each place: the checks agree with the oracle each time. */
static void traceparents_byte_by_byte(void **state)
{
    (void)state;
    char tp[SHMRPC_TRACEPARENT_SIZE];
    int valid = 0;
    for (int i = 0; i < SHMRPC_TRACEPARENT_LEN; i++)
        for (int b = 1; b < 256; b++) {
            memcpy(tp, TP, sizeof tp);
            tp[i] = (char)b;
            bool want = w3c_valid(tp);
            valid += want;
            if ((shmrpc__traceparent_bad(tp, SHMRPC_TRACEPARENT_LEN) == NULL) != want)
                fail_msg("byte %d set to 0x%02x: the checks say %s", i, b,
                         want ? "invalid" : "valid");
        }
    assert_int_equal(valid, 5 + 50 * 16); /* the 5 fixed places as they are; 16 digits at 50 */
    for (int i = 0; i < SHMRPC_TRACEPARENT_LEN; i++) {
        memcpy(tp, "00-00000000000000000000000000000000-0000000000000000-01", sizeof tp);
        tp[i] = tp[i] == '0' ? '1' : tp[i];
        if ((shmrpc__traceparent_bad(tp, SHMRPC_TRACEPARENT_LEN) == NULL) != w3c_valid(tp))
            fail_msg("one digit set at %d: the checks disagree", i);
        assert_non_null(shmrpc__traceparent_bad(tp, SHMRPC_TRACEPARENT_LEN)); /* a zero id */
    }
}

/* A value's checks a word at a time: a NUL byte or a byte that starts no UTF-8 at each
 * place of values 1 to 40 bytes long, refused; UTF-8 across a word's edge, kept. */
static void values_byte_by_byte(void **state)
{
    (void)state;
    char v[41];
    for (size_t n = 1; n <= 40; n++)
        for (size_t at = 0; at < n; at++) {
            memset(v, 'x', n);
            assert_null(shmrpc__meta_value_bad(v, n));
            v[at] = 0;
            assert_string_equal(shmrpc__meta_value_bad(v, n), "holds a NUL byte");
            v[at] = (char)0xff;
            assert_string_equal(shmrpc__meta_value_bad(v, n), "is not UTF-8");
            v[at] = (char)0xc3; /* a lead byte */
            if (at + 1 < n) {
                v[at + 1] = (char)0xbc; /* with its continuation: ü */
                assert_null(shmrpc__meta_value_bad(v, n));
            } else {
                assert_string_equal(shmrpc__meta_value_bad(v, n), "is not UTF-8");
            }
        }
}

/* The client's bounds: each refused before anything is sent, with the key and the bound. */
static void client_bounds(void **state)
{
    (void)state;
    shmrpc__meta_set *s = NULL;
    assert_int_equal(shmrpc__meta_set_put(&s, "Bad", "x"), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(),
                        "metadata key 'Bad' has a byte outside [a-z0-9-_.] (keys are lower case)");
    assert_int_equal(shmrpc__meta_set_put(&s, "", "x"), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "metadata key '' is empty");
    char key[80];
    memset(key, 'k', 65);
    key[65] = 0;
    assert_int_equal(shmrpc__meta_set_put(&s, key, "x"), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "is longer than 64 bytes"));
    key[64] = 0;
    assert_int_equal(shmrpc__meta_set_put(&s, key, "x"), 0);
    assert_int_equal(shmrpc__meta_set_put(&s, "shmrpc-x", "x"), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "metadata key 'shmrpc-x' begins 'shmrpc-', which the "
                                         "library keeps for itself");
    assert_int_equal(shmrpc__meta_set_put(&s, "v", "\xff"), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "the value of metadata key 'v' is not UTF-8");
    static char big[1100];
    memset(big, 'x', 1025);
    assert_int_equal(shmrpc__meta_set_put(&s, "v", big), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "the value of metadata key 'v' is longer than 1024 bytes");
    assert_int_equal(shmrpc__meta_set_put(&s, "traceparent", "00-xyz"), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "traceparent '00-xyz' is not 55 bytes long (version 00)");
    /* 4096 bytes in all: 1 + (3 + 64 + 1) + 3 x (3 + 2 + 1010) = 3114; one more of 1010 is
     * beyond. */
    big[1010] = 0;
    assert_int_equal(shmrpc__meta_set_put(&s, "v1", big), 0);
    assert_int_equal(shmrpc__meta_set_put(&s, "v2", big), 0);
    assert_int_equal(shmrpc__meta_set_put(&s, "v3", big), 0);
    assert_int_equal(s->view.bytes, 3114);
    assert_int_equal(shmrpc__meta_set_put(&s, "v4", big), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "metadata key 'v4' would make the call's metadata 4129 "
                                         "bytes encoded, beyond the limit of 4096");
    /* Replacing a pair counts without the one it replaces. */
    assert_int_equal(shmrpc__meta_set_put(&s, "v3", "small"), 0);
    assert_int_equal(s->view.bytes, 3114 - 1005);
    assert_int_equal(shmrpc__meta_set_put(&s, "v4", big), 0);
    assert_int_equal(s->view.bytes, 3114 - 1005 + 1015);
    assert_int_equal(s->enc.len, s->view.bytes);
    /* 16 pairs at most. */
    shmrpc__meta_set_clear(s);
    for (int i = 0; i < 16; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(shmrpc__meta_set_put(&s, key, "v"), 0);
    }
    assert_int_equal(shmrpc__meta_set_put(&s, "k16", "v"), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "metadata key 'k16' would be pair 17, beyond the limit "
                                         "of 16");
    assert_int_equal(shmrpc__meta_set_put(&s, "k3", "w"), 0); /* replaced: still 16 */
    assert_int_equal(shmrpc__meta_set_put(&s, "k3", NULL), 0);
    assert_int_equal(s->view.n, 15);
    assert_null(shmrpc_metadata_get(&s->view, "k3"));
    assert_int_equal(s->enc.len, s->view.bytes);
    shmrpc__meta_set_free(s);
}

/* A server continues a valid traceparent with a span of its own, and drops a malformed
 * one with its tracestate, starting a fresh trace. */
static void server_continues_or_drops(void **state)
{
    (void)state;
    shmrpc_server *s;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    shmrpc_ctx ctx;
    assert_int_equal(shmrpc__ctx_init(&ctx, s), 0);
    block k = {.b = {3}, .n = 1};
    pair(&k, "traceparent", TP, strlen(TP));
    pair(&k, "tracestate", "a=1", 3);
    pair(&k, "user", "alice", 5);
    const char *why;
    assert_int_equal(shmrpc__ctx_set_meta(&ctx, k.b, k.n, &why), 0);
    const char *own = shmrpc_ctx_traceparent(&ctx);
    assert_memory_equal(own, TP, 36);               /* version and trace-id */
    assert_memory_not_equal(own + 36, &TP[36], 16); /* a span of its own */
    assert_string_equal(own + 52, "-01");
    char first[SHMRPC_TRACEPARENT_SIZE];
    memcpy(first, own, sizeof first);
    assert_string_equal(shmrpc_ctx_traceparent(&ctx), first); /* drawn once: read again, the same */
    /* The next call's span is another. */
    shmrpc_arena_reset(ctx.arena);
    assert_int_equal(shmrpc__ctx_set_meta(&ctx, k.b, k.n, &why), 0);
    assert_memory_not_equal(shmrpc_ctx_traceparent(&ctx) + 36, first + 36, 16);
    assert_string_equal(shmrpc_ctx_metadata(&ctx, "traceparent"), TP);
    assert_string_equal(ctx.tracestate, "a=1");
    shmrpc_arena_reset(ctx.arena);

    k = (block){.b = {3}, .n = 1};
    pair(&k, "traceparent", "00-bad", 6);
    pair(&k, "tracestate", "a=1", 3);
    pair(&k, "user", "alice", 5);
    ctx.trace[0] = 0;
    assert_int_equal(shmrpc__ctx_set_meta(&ctx, k.b, k.n, &why), 0);
    assert_int_equal(shmrpc_metadata_count(shmrpc_ctx_metadata_all(&ctx)), 1);
    assert_null(shmrpc_ctx_metadata(&ctx, "traceparent"));
    assert_null(shmrpc_ctx_metadata(&ctx, "tracestate"));
    assert_int_equal(shmrpc_traceparent_check(ctx.trace), 0); /* a fresh trace */
    assert_null(ctx.tracestate);
    assert_int_equal(shmrpc_ctx_set_traceparent(&ctx, "nope"), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_ctx_set_traceparent(&ctx, TP), 0);
    assert_string_equal(shmrpc_ctx_traceparent(&ctx), TP);
    /* A hostile block leaves the ctx without metadata. */
    k.b[0] = 9;
    ctx.meta = NULL;
    assert_int_equal(shmrpc__ctx_set_meta(&ctx, k.b, k.n, &why), SHMRPC_EPROTO);
    assert_null(ctx.meta);
    shmrpc__ctx_destroy(&ctx);
    shmrpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_peers_block_that_lies),
        cmocka_unit_test(round_trip),
        cmocka_unit_test(traceparents),
        cmocka_unit_test(traceparents_byte_by_byte),
        cmocka_unit_test(values_byte_by_byte),
        cmocka_unit_test(client_bounds),
        cmocka_unit_test(server_continues_or_drops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
