/* SPDX-License-Identifier: MIT */
/* A call's metadata and trace context (shmrpc/metadata.h, issue 36, docs/metadata.md) over
 * inproc://, shm:// and tcp://, with real server processes: pairs set on a client reach the
 * handler and the interceptors of both sides, until changed or cleared; a server continues
 * the client's trace with a span of its own; a handler's call carries the trace on through
 * a second server (client -> A -> B: B's parent is A's span, its trace-id the client's); a
 * client refuses what is beyond the bounds before sending; a tcp:// server of revision 6 gets
 * calls without metadata, which still work. Every wait is bounded and every process reaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls.h"
#include "raw_peer.h"
#include "transport/shm/shm.h" /* the channel's layout, for hostile_channel */
#include "procs.h"

#define TP "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

/* What the client's interceptor saw, in a page shared with the servers. */
typedef struct shared {
    _Atomic int client_pairs; /* the pairs of the last call the client's interceptor saw */
} shared;
static shared *sh;

/* The client to server B that server A's handler calls through (made at its first hop). */
static shmrpc_client *to_b;

/* Appends text to the answer being built in out (at most cap bytes). */
static void add(char *out, size_t cap, const char *fmt, ...)
{
    size_t n = strlen(out);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + n, cap - n, fmt, ap);
    va_end(ap);
}

/* echo("meta") answers "own=TRACEPARENT\n" and a "key=value\n" per pair the call came with;
 * echo("hop ADDR") calls echo("meta") at ADDR from the handler and answers "A own=...\n"
 * and what that answered. */
static int h_echo(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    /* Built on the stack, and the metadata read before the arena gives anything: a library
     * that kept a call's metadata past it (in the arena, reset since) shows the last call's
     * pairs here, rather than this answer's own bytes. */
    char text[16384];
    size_t cap = sizeof text;
    text[0] = 0;
    if (data.len > 4 && memcmp(data.ptr, "hop ", 4) == 0) {
        char addr[128];
        snprintf(addr, sizeof addr, "%.*s", (int)data.len - 4, (const char *)data.ptr + 4);
        int rc = 0;
        if (!to_b) to_b = test_connect(&Calls_service_info, NULL, addr, &rc);
        if (rc) return shmrpc_ctx_error(ctx, rc, "cannot connect to %s", addr);
        add(text, cap, "A own=%s\n", shmrpc_ctx_traceparent(ctx));
        shmrpc_bytes b;
        rc = calls_echo(to_b, shmrpc_bytes_of("meta", 4), &b);
        if (rc) return shmrpc_ctx_error(ctx, rc, "the hop: %s", shmrpc_errmsg());
        add(text, cap, "%.*s", (int)b.len, (const char *)b.ptr);
    } else {
        add(text, cap, "own=%s\n", shmrpc_ctx_traceparent(ctx));
        const shmrpc_metadata *m = shmrpc_ctx_metadata_all(ctx);
        size_t n = shmrpc_metadata_count(m);
        if (n > SHMRPC_METADATA_MAX_PAIRS)
            return shmrpc_ctx_error(ctx, SHMRPC_EPROTO, "%zu pairs", n);
        for (size_t i = 0; i < n; i++) {
            const char *k, *v;
            shmrpc_metadata_at(m, i, &k, &v);
            add(text, cap, "%s=%s\n", k, v);
        }
    }
    size_t len = strlen(text);
    char *copy = shmrpc_arena_alloc(shmrpc_ctx_arena(ctx), len + 1, 1);
    if (!copy) return SHMRPC_ENOMEM;
    memcpy(copy, text, len + 1);
    *out = shmrpc_bytes_of(copy, len);
    return 0;
}

static int h_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    (void)ctx;
    *out = a + b;
    return 0;
}

static int h_nap(shmrpc_ctx *ctx, uint32_t ms, int32_t *out)
{
    (void)ctx;
    (void)ms;
    *out = 1;
    return 0;
}

static const Calls_handlers handlers = {.add = h_add, .echo = h_echo, .nap = h_nap};

/* The server's interceptor: add needs the metadata token=ok. */
static int server_before(void *arg, const shmrpc_call_info *call)
{
    (void)arg;
    if (strcmp(call->method->name, "add") != 0) return 0;
    const char *token = shmrpc_metadata_get(call->metadata, "token");
    if (!token || strcmp(token, "ok") != 0)
        return shmrpc_intercept_error(call, SHMRPC_EPERM, "add needs token=ok, not %s",
                                      token ? token : "none");
    return 0;
}

static int client_before(void *arg, const shmrpc_call_info *call)
{
    (void)arg;
    sh->client_pairs = (int)shmrpc_metadata_count(call->metadata);
    return 0;
}

static const shmrpc_interceptor server_icpt = {.before = server_before};
static const shmrpc_interceptor client_icpt = {.before = client_before};

static int configure(shmrpc_server *s)
{
    return shmrpc_server_intercept(s, &server_icpt, NULL);
}

/* The servers of a test: A (addr) and B (addr_b), each over the test's transport. */
static pid_t server_a, server_b;
static shmrpc_server *inproc_a, *inproc_b;
static char addr[64], addr_b[64];
static const char *wire_proto; /* SHMRPC_TEST_WIRE_PROTO for the tcp:// server, or NULL */

static void set_proto(void)
{
    if (wire_proto) setenv("SHMRPC_TEST_WIRE_PROTO", wire_proto, 1);
}

static pid_t start_one(const char *t, char *where, shmrpc_server **in)
{
    static int n;
    if (strcmp(t, "inproc") == 0) {
        snprintf(where, 64, "inproc://meta%d", n++);
        assert_int_equal(shmrpc_server_new(in, NULL), 0);
        assert_int_equal(shmrpc_server_register(*in, &Calls_service, &handlers, NULL), 0);
        assert_int_equal(configure(*in), 0);
        assert_int_equal(shmrpc_server_listen(*in, where), 0);
        return 0;
    }
    if (strcmp(t, "tcp") == 0)
        snprintf(where, 64, "tcp://127.0.0.1:%d", test_free_port());
    else
        snprintf(where, 64, "shm://meta%d_%d", (int)getpid(), n++);
    test_server ts = {.svc = &Calls_service,
                      .handlers = &handlers,
                      .addr = where,
                      .workers = 1,
                      .prepare = set_proto,
                      .configure = configure};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    return pid;
}

static int start(void **state)
{
    const char *t = *state;
    wire_proto = NULL;
    if (strcmp(t, "tcp6") == 0) {
        t = "tcp";
        wire_proto = "6";
    }
    server_a = start_one(t, addr, &inproc_a);
    server_b = start_one(t, addr_b, &inproc_b);
    sh->client_pairs = -1;
    return 0;
}

static void stop_one(pid_t *pid, shmrpc_server **in, const char *where)
{
    shmrpc_server_free(*in);
    *in = NULL;
    if (*pid > 0 && !test_stop_server(*pid)) test_reap(*pid, 0);
    if (*pid > 0) assert_int_equal(test_shm_segments(where), 0);
    *pid = 0;
}

static int stop(void **state)
{
    (void)state;
    shmrpc_client_free(to_b); /* inproc://: A's handler ran in this process */
    to_b = NULL;
    stop_one(&server_a, &inproc_a, addr);
    stop_one(&server_b, &inproc_b, addr_b);
    return 0;
}

static shmrpc_client *client(void)
{
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(shmrpc_client_intercept(c, &client_icpt, NULL), 0);
    return c;
}

/* echo("meta")'s answer, NUL-terminated, in a static buffer. */
static const char *meta_of(shmrpc_client *c, const char *what)
{
    static char text[16384];
    shmrpc_bytes out;
    int rc = calls_echo(c, shmrpc_bytes_of(what, strlen(what)), &out);
    if (rc) fprintf(stderr, "echo: %s\n", shmrpc_errmsg());
    assert_int_equal(rc, 0);
    snprintf(text, sizeof text, "%.*s", (int)out.len, (const char *)out.ptr);
    return text;
}

/* The answer without its first line (own=...). */
static const char *pairs_of(const char *text)
{
    const char *nl = strchr(text, '\n');
    assert_non_null(nl);
    return nl + 1;
}

static void round_trip(void **state)
{
    (void)state;
    shmrpc_client *c = client();
    assert_string_equal(pairs_of(meta_of(c, "meta")), "");
    assert_int_equal(sh->client_pairs, 0);
    static char big[1025];
    memset(big, 'v', 1024);
    assert_int_equal(shmrpc_client_metadata_set(c, "user", "alice"), 0);
    assert_int_equal(shmrpc_client_metadata_set(c, "x-utf8", "gr\xc3\xbc\xc3\x9f"), 0);
    assert_int_equal(shmrpc_client_metadata_set(c, "long", big), 0);
    assert_int_equal(shmrpc_client_metadata_set(c, "empty", ""), 0);
    char want[2048];
    snprintf(want, sizeof want, "user=alice\nx-utf8=gr\xc3\xbc\xc3\x9f\nlong=%s\nempty=\n", big);
    assert_string_equal(pairs_of(meta_of(c, "meta")), want);
    assert_int_equal(sh->client_pairs, 4);
    /* A request large enough to leave the channel's small room: the metadata after it. */
    static char req[3000];
    memset(req, 'm', sizeof req - 1);
    memcpy(req, "meta", 4);
    assert_string_equal(pairs_of(meta_of(c, req)), want);
    /* The large request wrote over where a small one's metadata goes: the same pairs are
     * written again, not taken as already there. */
    assert_string_equal(pairs_of(meta_of(c, "meta")), want);
    /* A value of the same length (the pair moves to the end): a block of the same length,
     * whose new bytes are sent. */
    assert_int_equal(shmrpc_client_metadata_set(c, "user", "carol"), 0);
    snprintf(want, sizeof want, "x-utf8=gr\xc3\xbc\xc3\x9f\nlong=%s\nempty=\nuser=carol\n", big);
    assert_string_equal(pairs_of(meta_of(c, "meta")), want);
    /* Replaced, removed, then cleared: each call sends what is set then. */
    assert_int_equal(shmrpc_client_metadata_set(c, "user", "bob"), 0);
    assert_int_equal(shmrpc_client_metadata_set(c, "long", NULL), 0);
    assert_string_equal(pairs_of(meta_of(c, "meta")),
                        "x-utf8=gr\xc3\xbc\xc3\x9f\nempty=\nuser=bob\n");
    shmrpc_client_metadata_clear(c);
    assert_string_equal(pairs_of(meta_of(c, "meta")), "");
    assert_int_equal(sh->client_pairs, 0);
    assert_null(shmrpc_client_metadata(c));
    shmrpc_client_free(c);
}

/* A server's interceptor reads the call's metadata and refuses by it. */
static void interceptors_see_it(void **state)
{
    (void)state;
    shmrpc_client *c = client();
    int64_t sum = 0;
    assert_int_equal(calls_add(c, 1, 2, &sum), SHMRPC_EPERM);
    assert_string_equal(shmrpc_errmsg(), "add needs token=ok, not none");
    assert_int_equal(shmrpc_client_metadata_set(c, "token", "no"), 0);
    assert_int_equal(calls_add(c, 1, 2, &sum), SHMRPC_EPERM);
    assert_string_equal(shmrpc_errmsg(), "add needs token=ok, not no");
    assert_int_equal(shmrpc_client_metadata_set(c, "token", "ok"), 0);
    assert_int_equal(calls_add(c, 1, 2, &sum), 0);
    assert_int_equal(sum, 3);
    /* Started calls carry it too. */
    shmrpc_call *k = NULL;
    assert_int_equal(calls_add_start(c, 20, 22, &k), 0);
    assert_int_equal(calls_add_finish(c, k, &sum), 0);
    assert_int_equal(sum, 42);
    shmrpc_client_free(c);
}

/* Loaned calls carry it: over shm:// after a request written in the channel. */
static void loaned_calls(void **state)
{
    (void)state;
    shmrpc_client *c = client();
    assert_int_equal(shmrpc_client_metadata_set(c, "user", "alice"), 0);
    void *room;
    assert_int_equal(shmrpc_client_loan(c, CALLS_METHOD_ECHO, 100, &room), 0);
    memcpy(room, "meta", 4);
    shmrpc_bytes out;
    assert_int_equal(shmrpc_client_call_loaned(c, 4, &out), 0);
    char text[256];
    snprintf(text, sizeof text, "%.*s", (int)out.len, (const char *)out.ptr);
    assert_string_equal(pairs_of(text), "user=alice\n");
    /* Setting metadata gives the loan up. */
    assert_int_equal(shmrpc_client_loan(c, CALLS_METHOD_ECHO, 100, &room), 0);
    assert_int_equal(shmrpc_client_metadata_set(c, "user", "bob"), 0);
    assert_int_equal(shmrpc_client_call_loaned(c, 4, &out), SHMRPC_EINVAL);
    shmrpc_client_free(c);
}

/* The handler's traceparent: the client's trace-id and flags, a span of its own. */
static void trace_continued(void **state)
{
    (void)state;
    shmrpc_client *c = client();
    assert_int_equal(shmrpc_client_metadata_set(c, "traceparent", TP), 0);
    assert_int_equal(shmrpc_client_metadata_set(c, "tracestate", "congo=t61rcWkgMzE"), 0);
    const char *text = meta_of(c, "meta");
    assert_int_equal(strncmp(text, "own=" TP, 4 + 36), 0);
    assert_int_not_equal(strncmp(text + 4 + 36, &TP[36], 16), 0);
    assert_int_equal(strncmp(text + 4 + 52, "-01\n", 4), 0);
    assert_string_equal(pairs_of(text), "traceparent=" TP "\ntracestate=congo=t61rcWkgMzE\n");
    /* A call without a trace gets a fresh one from the handler that asks. */
    shmrpc_client_metadata_clear(c);
    text = meta_of(c, "meta");
    assert_int_not_equal(strncmp(text, "own=" TP, 4 + 36), 0);
    shmrpc_client_free(c);
}

/* client -> A -> B: B's parent is A's span, its trace-id the client's; the tracestate
 * travels on; A's other pairs do not. */
static void two_hops(void **state)
{
    (void)state;
    shmrpc_client *c = client();
    assert_int_equal(shmrpc_client_metadata_set(c, "traceparent", TP), 0);
    assert_int_equal(shmrpc_client_metadata_set(c, "tracestate", "a=1"), 0);
    assert_int_equal(shmrpc_client_metadata_set(c, "user", "alice"), 0);
    char hop[128];
    snprintf(hop, sizeof hop, "hop %s", addr_b);
    const char *text = meta_of(c, hop);
    /* "A own=TPA\nown=TPB\ntraceparent=TPA\ntracestate=a=1\n" */
    char a_own[SHMRPC_TRACEPARENT_SIZE], b_own[SHMRPC_TRACEPARENT_SIZE];
    char b_parent[SHMRPC_TRACEPARENT_SIZE], rest[256];
    assert_int_equal(sscanf(text, "A own=%55s\nown=%55s\ntraceparent=%55s\n%255[^$]", a_own, b_own,
                            b_parent, rest),
                     4);
    assert_string_equal(b_parent, a_own); /* B's parent is A's span */
    assert_memory_equal(a_own, TP, 36);   /* the client's trace */
    assert_memory_equal(b_own, TP, 36);
    assert_memory_not_equal(a_own + 36, &TP[36], 16);
    assert_memory_not_equal(b_own + 36, a_own + 36, 16);
    assert_string_equal(rest, "tracestate=a=1\n"); /* not user=alice */
    shmrpc_client_free(c);
}

/* Beyond the bounds: refused on the client, nothing sent, the earlier pairs kept. */
static void bounds_refused(void **state)
{
    (void)state;
    shmrpc_client *c = client();
    assert_int_equal(shmrpc_client_metadata_set(c, "user", "alice"), 0);
    assert_int_equal(shmrpc_client_metadata_set(c, "User", "x"), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(),
                        "metadata key 'User' has a byte outside [a-z0-9-_.] (keys are lower case)");
    assert_int_equal(shmrpc_client_metadata_set(c, "traceparent", "00-00"), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_client_metadata_set(c, "v", "\xc0\xaf"), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "the value of metadata key 'v' is not UTF-8");
    assert_int_equal(shmrpc_client_metadata_set(NULL, "v", "x"), SHMRPC_EINVAL);
    assert_string_equal(pairs_of(meta_of(c, "meta")), "user=alice\n");
    shmrpc_client_free(c);
}

/* A tcp:// server of revision 6 hears no metadata: the call works without it. */
static void old_server_hears_none(void **state)
{
    (void)state;
    shmrpc_client *c = client();
    assert_int_equal(shmrpc_client_metadata_set(c, "user", "alice"), 0);
    assert_string_equal(pairs_of(meta_of(c, "meta")), "");
    assert_int_equal(sh->client_pairs, 1); /* the client's interceptor sees what it set */
    shmrpc_client_free(c);
}

/* --- a hostile tcp:// peer (docs/wire.md, "Metadata") --- */

/* echo("meta") with flags and a metadata part of its own (its length written as given,
 * then the n bytes at meta): 0 and the answer in text, or the ERROR's status and message. */
static int raw_echo(int fd, uint16_t flags, uint16_t len, const void *meta, size_t n, char *text,
                    size_t cap)
{
    static uint64_t rid;
    uint8_t frame[8192];
    size_t body = 2 + n + 4;
    shmrpc__frame_hdr h = {SHMRPC__KIND_REQUEST, flags, CALLS_METHOD_ECHO, ++rid, (uint32_t)body};
    shmrpc__frame_hdr_encode(&h, frame);
    uint8_t *p = frame + SHMRPC__FRAME_HDR_SIZE;
    p[0] = (uint8_t)(len >> 8), p[1] = (uint8_t)len;
    memcpy(p + 2, meta, n);
    memcpy(p + 2 + n, "meta", 4);
    assert_true(test_raw_send(fd, frame, SHMRPC__FRAME_HDR_SIZE + body));
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    assert_true(test_raw_frame(fd, &h, &b));
    assert_int_equal(h.request_id, rid);
    int rc = test_raw_answer(&h, &b, text, cap);
    shmrpc_buf_destroy(&b);
    return rc;
}

/* Lengths that lie, too many pairs, a bad key: each call refused with SHMRPC_EPROTO and its
 * message, the connection served on; a malformed traceparent dropped, the call run with a
 * fresh trace. On the reading thread (the lone flag) and in the pool. */
static void hostile_peer(void **state)
{
    (void)state;
    int port = atoi(strrchr(addr, ':') + 1);
    int fd = test_raw_connect(port, 5000);
    assert_true(fd >= 0);
    assert_true(test_raw_handshake(fd, &Calls_service_info));
    static const uint8_t good[] = {1, 4, 0, 5, 'u', 's', 'e', 'r', 'a', 'l', 'i', 'c', 'e'};
    static const uint8_t too_many[] = {17, 1, 0, 0, 'a'};
    static const uint8_t lying_pair[] = {1, 4, 0, 200, 'u', 's', 'e', 'r', 'a'};
    static const uint8_t bad_key[] = {1, 1, 0, 0, 'A'};
    static uint8_t big[4200];
    char text[512];
    uint16_t flags[] = {SHMRPC__FLAG_META, SHMRPC__FLAG_META | SHMRPC__FLAG_LONE};
    for (int i = 0; i < 2; i++) {
        uint16_t f = flags[i];
        assert_int_equal(raw_echo(fd, f, sizeof good, good, sizeof good, text, sizeof text), 0);
        assert_string_equal(pairs_of(text), "user=alice\n");
        assert_int_equal(raw_echo(fd, f, 0, good, sizeof good, text, sizeof text), SHMRPC_EPROTO);
        assert_string_equal(text, "the call's metadata has a length of 0");
        assert_int_equal(raw_echo(fd, f, 4100, big, 4100, text, sizeof text), SHMRPC_EPROTO);
        assert_string_equal(text, "the call's metadata is longer than 4096 bytes");
        /* A length past the body: the request's bytes would be read as metadata. */
        assert_int_equal(raw_echo(fd, f, sizeof good + 5, good, sizeof good, text, sizeof text),
                         SHMRPC_EPROTO);
        assert_string_equal(text, "the call's metadata is longer than its frame's body");
        assert_int_equal(
            raw_echo(fd, f, sizeof too_many, too_many, sizeof too_many, text, sizeof text),
            SHMRPC_EPROTO);
        assert_string_equal(text, "the call's metadata has no pairs, or more than 16");
        assert_int_equal(
            raw_echo(fd, f, sizeof lying_pair, lying_pair, sizeof lying_pair, text, sizeof text),
            SHMRPC_EPROTO);
        assert_string_equal(text, "the call's metadata ends inside a pair");
        assert_int_equal(
            raw_echo(fd, f, sizeof bad_key, bad_key, sizeof bad_key, text, sizeof text),
            SHMRPC_EPROTO);
        assert_string_equal(text, "the call's metadata has a malformed key");
        /* A malformed traceparent: dropped, and the handler starts a trace of its own. */
        uint8_t tp[64] = {1, 11, 0, 6};
        memcpy(tp + 4, "traceparent00-bad", 17);
        assert_int_equal(raw_echo(fd, f, 21, tp, 21, text, sizeof text), 0);
        assert_string_equal(pairs_of(text), "");
        assert_int_equal(strncmp(text, "own=00-", 7), 0);
    }
    close(fd);
}

/* --- a hostile shm:// client (docs/shm-transport.md, meta_len) --- */

/* The head of this process's mapping of the channel of the shm:// service at addr (found in
 * /proc/self/maps by its memfd's name), or NULL. */
static shmrpc__shm_chan *channel_of(const char *address)
{
    char want[128], line[512];
    snprintf(want, sizeof want, "memfd:shmrpc:%s:", address + strlen("shm://"));
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return NULL;
    void *head = NULL;
    while (!head && fgets(line, sizeof line, f))
        if (strstr(line, want)) head = (void *)(uintptr_t)strtoull(line, NULL, 16);
    fclose(f);
    return head;
}

/* A client that writes a lying meta_len into its channel: the call is refused with
 * SHMRPC_EPROTO and its reason, the worker serves on; the true length works again. */
static void hostile_channel(void **state)
{
    (void)state;
    shmrpc_client *c = client();
    assert_int_equal(shmrpc_client_metadata_set(c, "user", "alice"), 0); /* 13 bytes */
    assert_string_equal(pairs_of(meta_of(c, "meta")), "user=alice\n");
    shmrpc__shm_chan *h = channel_of(addr);
    assert_non_null(h);
    assert_int_equal(atomic_load(&h->meta_len), 13);
    shmrpc_bytes out;
    atomic_store(&h->meta_len, 5000); /* the client writes it only when its own changes */
    assert_int_equal(calls_echo(c, shmrpc_bytes_of("meta", 4), &out), SHMRPC_EPROTO);
    assert_string_equal(shmrpc_errmsg(), "the call's metadata is longer than 4096 bytes");
    atomic_store(&h->meta_len, UINT32_MAX);
    assert_int_equal(calls_echo(c, shmrpc_bytes_of("meta", 4), &out), SHMRPC_EPROTO);
    assert_string_equal(shmrpc_errmsg(), "the call's metadata is longer than 4096 bytes");
    atomic_store(&h->meta_len, 3); /* the block cut short */
    assert_int_equal(calls_echo(c, shmrpc_bytes_of("meta", 4), &out), SHMRPC_EPROTO);
    assert_string_equal(shmrpc_errmsg(), "the call's metadata ends inside a pair");
    atomic_store(&h->meta_len, 14); /* a byte after the block */
    assert_int_equal(calls_echo(c, shmrpc_bytes_of("meta", 4), &out), SHMRPC_EPROTO);
    assert_string_equal(shmrpc_errmsg(), "the call's metadata has bytes after its last pair");
    atomic_store(&h->meta_len, 13);
    assert_string_equal(pairs_of(meta_of(c, "meta")), "user=alice\n");
    shmrpc_client_free(c);
}

/* What a call brings is forgotten however the call ends: a health probe, answered before
 * any handler, with metadata and a trace leaves nothing for the next call, another
 * client's that sends none (the server's one worker serves both). */
static void forgotten_after_a_probe(void **state)
{
    (void)state;
    shmrpc_client *a = client(), *b = client();
    assert_int_equal(shmrpc_client_metadata_set(a, "user", "alice"), 0);
    assert_int_equal(shmrpc_client_metadata_set(a, "traceparent", TP), 0);
    for (int i = 0; i < 3; i++) {
        shmrpc_health state;
        assert_int_equal(shmrpc_client_health(a, &state), 0);
        assert_int_equal(state, SHMRPC_HEALTH_SERVING);
        const char *text = meta_of(b, "meta");
        assert_string_equal(pairs_of(text), "");
        assert_int_not_equal(strncmp(text, "own=" TP, 4 + 36), 0); /* a trace of its own */
    }
    shmrpc_client_free(a);
    shmrpc_client_free(b);
}

#define ON(test, t) cmocka_unit_test_prestate_setup_teardown(test, start, stop, t)
#define EVERYWHERE(test) ON(test, "inproc"), ON(test, "shm"), ON(test, "tcp")

int main(void)
{
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) return 1;
    const struct CMUnitTest tests[] = {
        EVERYWHERE(round_trip),
        EVERYWHERE(interceptors_see_it),
        EVERYWHERE(loaned_calls),
        EVERYWHERE(trace_continued),
        EVERYWHERE(two_hops),
        EVERYWHERE(forgotten_after_a_probe),
        ON(bounds_refused, "inproc"),
        ON(old_server_hears_none, "tcp6"),
        ON(hostile_peer, "tcp"),
        ON(hostile_channel, "shm"),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
