/* SPDX-License-Identifier: MIT */
/* Clients and servers end to end over inproc://: calls, handler errors, method-table
 * checks, servers that go away (in any order), address clashes, the names taken, and calls
 * from several threads. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>

#include "calc_service.h"
#include "unit.h"

static shmrpc_server *serve(const char *addr, void *user)
{
    shmrpc_server *s;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &calc_service, &calc_default_handlers, user), 0);
    assert_int_equal(shmrpc_server_listen(s, addr), 0);
    return s;
}

static shmrpc_client *client_for(const shmrpc_service_info *info, const char *addr)
{
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, info, NULL), 0);
    if (addr) {
        int rc = shmrpc_client_connect(c, addr);
        if (rc) fail_msg("connect %s: %d %s", addr, rc, shmrpc_errmsg());
    }
    return c;
}

static void calls_end_to_end(void **state)
{
    (void)state;
    unsigned long calls = 0;
    shmrpc_server *s = serve("inproc://e2e", &calls);
    shmrpc_client *c = client_for(&calc_service_info, "inproc://e2e");
    int64_t sum;
    assert_int_equal(calc_add(c, 2, 40, &sum), 0);
    assert_int_equal(sum, 42);
    assert_int_equal(calc_add(c, -5, INT64_MIN + 5, &sum), 0);
    assert_true(sum == INT64_MIN);
    assert_string_equal(shmrpc_errmsg(), "");
    assert_int_equal(calls, 2);

    /* Raw bytes through, and the response stays valid until the next request. */
    shmrpc_bytes out;
    assert_int_equal(calc_echo(c, shmrpc_bytes_of("hello\0world", 11), &out), 0);
    assert_int_equal(out.len, 11);
    assert_memory_equal(out.ptr, "hello\0world", 11);
    assert_int_equal(calc_echo(c, shmrpc_bytes_of("", 0), &out), 0);
    assert_int_equal(out.len, 0);
    assert_non_null(out.ptr);
    assert_int_equal(calc_big(c, 100000, &out), 0);
    assert_int_equal(out.len, 100000);
    assert_int_equal(out.ptr[99999], 'x');

    /* Buffers are reused: after warming up, calls keep the same memory. */
    assert_int_equal(calc_echo(c, shmrpc_bytes_of("abc", 3), &out), 0);
    const uint8_t *first = out.ptr;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(calc_echo(c, shmrpc_bytes_of("abc", 3), &out), 0);
        assert_ptr_equal(out.ptr, first);
    }
    shmrpc_client_free(c);
    shmrpc_server_free(s);
}

static void handler_errors_reach_the_client(void **state)
{
    (void)state;
    shmrpc_server *s = serve("inproc://errors", NULL);
    shmrpc_client *c = client_for(&calc_service_info, "inproc://errors");
    assert_int_equal(calc_fail(c), SHMRPC_EHANDLER);
    assert_string_equal(shmrpc_errmsg(), "boom 7");
    assert_int_equal(calc_positive(c), SHMRPC_EHANDLER);
    assert_string_equal(shmrpc_errmsg(),
                        "the handler of 'positive' returned 3, which is not a status");
    int64_t sum;
    assert_int_equal(calc_add(c, INT64_MAX, 1, &sum), SHMRPC_EHANDLER);
    assert_string_equal(shmrpc_errmsg(), "9223372036854775807 + 1 overflows");
    assert_int_equal(calc_add(c, 1, 1, &sum), 0);
    assert_string_equal(shmrpc_errmsg(), "");

    /* A request that does not decode. */
    shmrpc_buf *req = shmrpc_client_request(c);
    shmrpc_buf_append(req, "\x92\xc1\x01", 3);
    shmrpc_bytes out;
    assert_int_equal(shmrpc_client_call(c, CALC_ADD, &out), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "Calc.add: argument 'a': invalid msgpack byte");
    assert_int_equal(out.len, 0);

    /* Ids out of range, and the client's own messages. */
    shmrpc_client_request(c);
    assert_int_equal(shmrpc_client_call(c, CALC_N, &out), SHMRPC_ENOENT);
    assert_string_equal(shmrpc_errmsg(), "no method with id 5 (service 'Calc' has 5)");
    assert_int_equal(shmrpc_client_error(c, SHMRPC_EPROTO, "custom %d", 1), SHMRPC_EPROTO);
    assert_string_equal(shmrpc_errmsg(), "custom 1");
    assert_int_equal(shmrpc_client_decode_error(c, "Calc.add", NULL, "truncated"), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "Calc.add: result: truncated");
    assert_int_equal(
        shmrpc_client_decode_error(c, "Echo.centroid", "Point.x", "expected number, got nil"),
        SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(),
                        "Echo.centroid: result, field 'Point.x': expected number, got nil");
    shmrpc_client_free(c);
    shmrpc_server_free(s);
}

static void message_size_limits(void **state)
{
    (void)state;
    shmrpc_server_opts so;
    shmrpc_server_opts_init(&so);
    so.max_msg_bytes = 100;
    shmrpc_server *s;
    assert_int_equal(shmrpc_server_new(&s, &so), 0);
    assert_int_equal(shmrpc_server_register(s, &calc_service, &calc_default_handlers, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s, "inproc://limits"), 0);

    shmrpc_client_opts co;
    shmrpc_client_opts_init(&co);
    assert_true(co.timeout_ms == SHMRPC_DEFAULT_TIMEOUT_MS);
    assert_int_equal(co.max_msg_bytes, SHMRPC_DEFAULT_MAX_MSG);
    co.max_msg_bytes = 50;
    shmrpc_client *small;
    assert_int_equal(shmrpc_client_new(&small, &calc_service_info, &co), 0);
    assert_int_equal(shmrpc_client_connect(small, "inproc://limits"), 0);
    shmrpc_client *big = client_for(&calc_service_info, "inproc://limits");

    char data[200] = {0};
    shmrpc_bytes out;
    /* The client's own maximum, caught while encoding. */
    assert_int_equal(calc_echo(small, shmrpc_bytes_of(data, 51), &out), SHMRPC_ETOOBIG);
    assert_string_equal(shmrpc_errmsg(),
                        "the request is larger than the client's maximum of 50 bytes");
    assert_int_equal(calc_echo(small, shmrpc_bytes_of(data, 50), &out), 0);
    /* The server's maximum. */
    assert_int_equal(calc_echo(big, shmrpc_bytes_of(data, 101), &out), SHMRPC_ETOOBIG);
    assert_string_equal(shmrpc_errmsg(),
                        "a request of 101 bytes is larger than the server's maximum of 100 bytes");
    assert_int_equal(calc_big(big, 101, &out), SHMRPC_ETOOBIG);
    assert_string_equal(shmrpc_errmsg(),
                        "the result of 'big' is larger than the server's maximum of 100 bytes");
    /* A response above the client's maximum. */
    assert_int_equal(calc_big(small, 60, &out), SHMRPC_ETOOBIG);
    assert_string_equal(shmrpc_errmsg(),
                        "a response of 60 bytes is larger than the client's maximum of 50 bytes");
    assert_int_equal(calc_big(small, 50, &out), 0);
    assert_int_equal(out.len, 50);
    shmrpc_client_free(small);
    shmrpc_client_free(big);
    shmrpc_server_free(s);
}

static void not_connected(void **state)
{
    (void)state;
    shmrpc_client *c = client_for(&calc_service_info, NULL);
    int64_t sum;
    assert_int_equal(calc_add(c, 1, 2, &sum), SHMRPC_ECLOSED);
    assert_string_equal(shmrpc_errmsg(), "not connected");
    assert_int_equal(shmrpc_client_connect(c, "inproc://nobody"), SHMRPC_EUNAVAIL);
    assert_string_equal(shmrpc_errmsg(), "no server at inproc://nobody");
    assert_int_equal(shmrpc_client_connect(c, "udp://calc"), SHMRPC_EINVAL);
    assert_string_equal(shmrpc_errmsg(), "unknown transport 'udp' in address 'udp://calc'");
    assert_int_equal(shmrpc_client_connect(c, "nonsense"), SHMRPC_EINVAL);
    assert_int_equal(shmrpc_client_connect(c, NULL), SHMRPC_EINVAL);
    assert_int_equal(calc_add(c, 1, 2, &sum), SHMRPC_ECLOSED);
    shmrpc_client_free(c);
    shmrpc_client_free(NULL);

    /* A bad info is refused at once. */
    shmrpc_service_info info = calc_service_info;
    info.magic = 1;
    shmrpc_client *bad;
    assert_int_equal(shmrpc_client_new(&bad, &info, NULL), SHMRPC_EINVAL);
    assert_null(bad);
    info = calc_service_info;
    info.version = 0;
    assert_int_equal(shmrpc_client_new(&bad, &info, NULL), SHMRPC_EVERSION);
    assert_int_equal(shmrpc_client_new(&bad, NULL, NULL), SHMRPC_EINVAL);
}

/* --- the method-table check at connect --- */

static void mismatch_names_every_method(void **state)
{
    (void)state;
    shmrpc_server *s = serve("inproc://mismatch", NULL);
    shmrpc_method_info m[CALC_N + 1];
    memcpy(m, calc_methods, sizeof calc_methods);
    m[CALC_ADD].fingerprint = 0x9999;
    m[CALC_ADD].signature = "add(i32 a,i32 b)->i32";
    m[CALC_N] = (shmrpc_method_info){"zzz", CALC_N, SHMRPC_ENC_MSGPACK, 1, "zzz()->void"};
    shmrpc_service_info info = calc_service_info;
    info.methods = m;
    info.n_methods = CALC_N + 1;
    shmrpc_client *c = client_for(&info, NULL);
    assert_int_equal(shmrpc_client_connect(c, "inproc://mismatch"), SHMRPC_EMISMATCH);
    assert_string_equal(shmrpc_errmsg(),
                        "method table differs from the server's: 'add' has another signature, "
                        "incompatible: the client's signature, at byte 21: expected ' @' "
                        "(client: add(i32 a,i32 b)->i32, server: add(i64 a,i64 b)->i64); 'zzz' "
                        "is missing on the server");
    /* Not connected after a failed connect. */
    int64_t sum;
    assert_int_equal(calc_add(c, 1, 2, &sum), SHMRPC_ECLOSED);
    shmrpc_client_free(c);

    /* A method missing in the middle and at the start of the table. */
    shmrpc_method_info m2[3] = {
        {"aaa", 0, SHMRPC_ENC_MSGPACK, 7, "aaa()->void"},
        {"add", 1, SHMRPC_ENC_MSGPACK, 0x1111, "add(i64 a,i64 b)->i64"},
        {"cube", 2, SHMRPC_ENC_JSON, 8, "@json cube(i64 x)->i64"},
    };
    info.methods = m2;
    info.n_methods = 3;
    info.name = "Other";
    c = client_for(&info, NULL);
    assert_int_equal(shmrpc_client_connect(c, "inproc://mismatch"), SHMRPC_EMISMATCH);
    assert_string_equal(shmrpc_errmsg(),
                        "method table differs from the server's: 'aaa' is missing on the server; "
                        "'cube' is missing on the server (the server serves 'Calc', not 'Other')");
    shmrpc_client_free(c);
    shmrpc_server_free(s);
}

static void server_may_have_more_methods(void **state)
{
    (void)state;
    shmrpc_server *s = serve("inproc://older-client", NULL);
    /* An older client that knows only add and fail: its ids 0 and 1 map onto the
     * server's 0 and 3. */
    shmrpc_method_info m[2];
    m[0] = calc_methods[CALC_ADD];
    m[1] = calc_methods[CALC_FAIL];
    m[1].id = 1;
    shmrpc_service_info info = calc_service_info;
    info.methods = m;
    info.n_methods = 2;
    shmrpc_client *c = client_for(&info, "inproc://older-client");
    int64_t sum;
    assert_int_equal(calc_add(c, 3, 4, &sum), 0);
    assert_int_equal(sum, 7);
    shmrpc_client_request(c);
    shmrpc_bytes out;
    assert_int_equal(shmrpc_client_call(c, 1, &out), SHMRPC_EHANDLER);
    assert_string_equal(shmrpc_errmsg(), "boom 7");
    shmrpc_client_request(c);
    assert_int_equal(shmrpc_client_call(c, 2, &out), SHMRPC_ENOENT);
    shmrpc_client_free(c);

    /* A client with no methods at all connects too. */
    info.n_methods = 0;
    info.methods = NULL;
    c = client_for(&info, "inproc://older-client");
    shmrpc_client_free(c);
    shmrpc_server_free(s);
}

/* --- lifetimes --- */

static void unavailable_after_server_free(void **state)
{
    (void)state;
    shmrpc_server *s = serve("inproc://goes-away", NULL);
    shmrpc_client *c = client_for(&calc_service_info, "inproc://goes-away");
    shmrpc_client *c2 = client_for(&calc_service_info, "inproc://goes-away");
    int64_t sum;
    assert_int_equal(calc_add(c, 1, 1, &sum), 0);
    shmrpc_server_free(s);
    assert_int_equal(calc_add(c, 1, 1, &sum), SHMRPC_EUNAVAIL);
    assert_string_equal(shmrpc_errmsg(), "the server at inproc://goes-away went away");
    assert_int_equal(calc_add(c, 1, 1, &sum), SHMRPC_EUNAVAIL);
    assert_int_equal(shmrpc_client_connect(c, "inproc://goes-away"), SHMRPC_EUNAVAIL);

    /* A new server under the same name; clients reconnect to it. */
    s = serve("inproc://goes-away", NULL);
    assert_int_equal(calc_add(c2, 1, 1, &sum), SHMRPC_EUNAVAIL); /* the old connection */
    assert_int_equal(shmrpc_client_connect(c, "inproc://goes-away"), 0);
    assert_int_equal(shmrpc_client_connect(c2, "inproc://goes-away"), 0);
    assert_int_equal(calc_add(c, 2, 2, &sum), 0);
    assert_int_equal(sum, 4);
    assert_int_equal(calc_add(c2, 2, 3, &sum), 0);
    assert_int_equal(sum, 5);
    /* A client may outlive or die before the server, in any order. */
    shmrpc_client_free(c);
    shmrpc_server_free(s);
    shmrpc_client_free(c2);
}

static void second_listen_is_busy(void **state)
{
    (void)state;
    shmrpc_server *s1 = serve("inproc://busy", NULL);
    shmrpc_server *s2;
    assert_int_equal(shmrpc_server_new(&s2, NULL), 0);
    assert_int_equal(shmrpc_server_register(s2, &calc_service, &calc_default_handlers, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s2, "inproc://busy"), SHMRPC_EBUSY);
    assert_string_equal(shmrpc_errmsg(),
                        "inproc://busy is already served by another server in this process");
    /* The first is unaffected. */
    shmrpc_client *c = client_for(&calc_service_info, "inproc://busy");
    int64_t sum;
    assert_int_equal(calc_add(c, 1, 2, &sum), 0);
    /* Once the first goes, the name is free. */
    shmrpc_server_free(s1);
    assert_int_equal(shmrpc_server_listen(s2, "inproc://busy"), 0);
    assert_int_equal(shmrpc_client_connect(c, "inproc://busy"), 0);
    assert_int_equal(calc_add(c, 1, 2, &sum), 0);
    shmrpc_client_free(c);
    shmrpc_server_free(s2);
}

static void timeouts_are_stored(void **state)
{
    (void)state;
    shmrpc_server *s = serve("inproc://timeouts", NULL);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.timeout_ms = SHMRPC_TIMEOUT_DEFAULT;
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &calc_service_info, &o), 0);
    assert_int_equal(shmrpc_client_connect(c, "inproc://timeouts"), 0);
    int64_t sum;
    /* inproc runs the call on this thread and cannot time out; each setting still
     * lets calls through. */
    shmrpc_client_set_timeout(c, 0);
    assert_int_equal(calc_add(c, 1, 2, &sum), 0);
    shmrpc_client_set_timeout(c, SHMRPC_TIMEOUT_INFINITE);
    shmrpc_client_next_timeout(c, 1);
    assert_int_equal(calc_add(c, 1, 2, &sum), 0);
    shmrpc_client_set_timeout(c, SHMRPC_TIMEOUT_DEFAULT);
    shmrpc_client_next_timeout(c, SHMRPC_TIMEOUT_DEFAULT);
    assert_int_equal(calc_add(c, 1, 2, &sum), 0);
    shmrpc_client_set_timeout(NULL, 5);
    shmrpc_client_next_timeout(NULL, 5);
    shmrpc_client_free(c);
    shmrpc_server_free(s);
}

/* --- threads --- */

enum { THREADS = 4, CALLS = 20000 };

typedef struct worker {
    pthread_t thread;
    int64_t base;
    int failures;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    shmrpc_client *c;
    if (shmrpc_client_new(&c, &calc_service_info, NULL) ||
        shmrpc_client_connect(c, "inproc://threads")) {
        w->failures = -1;
        return NULL;
    }
    for (int64_t i = 0; i < CALLS; i++) {
        int64_t sum;
        if (calc_add(c, w->base, i, &sum) || sum != w->base + i) w->failures++;
        if (i % 1000 == 0 && calc_fail(c) != SHMRPC_EHANDLER) w->failures++;
        if (i % 1000 == 0 && strcmp(shmrpc_errmsg(), "boom 7") != 0) w->failures++;
    }
    shmrpc_client_free(c);
    return NULL;
}

static void four_threads_four_clients(void **state)
{
    (void)state;
    unsigned long calls = 0;
    shmrpc_server *s = serve("inproc://threads", &calls);
    worker w[THREADS] = {{0}};
    for (int k = 0; k < THREADS; k++) {
        w[k].base = (int64_t)k << 32;
        assert_int_equal(pthread_create(&w[k].thread, NULL, work, &w[k]), 0);
    }
    for (int k = 0; k < THREADS; k++) {
        pthread_join(w[k].thread, NULL);
        assert_int_equal(w[k].failures, 0);
    }
    assert_int_equal(__atomic_load_n(&calls, __ATOMIC_RELAXED), THREADS * CALLS);
    shmrpc_server_free(s);
}

/* Freeing the server while other threads call: every call either succeeds or fails
 * with SHMRPC_EUNAVAIL, and nothing crashes (ASan watches). */
typedef struct racer {
    pthread_t thread;
    int ok, unavailable, other;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    shmrpc_client *c;
    if (shmrpc_client_new(&c, &calc_service_info, NULL) ||
        shmrpc_client_connect(c, "inproc://race")) {
        r->other = -1;
        return NULL;
    }
    for (int i = 0; i < 200000 && r->unavailable < 100; i++) {
        int64_t sum;
        int rc = calc_add(c, 1, 2, &sum);
        if (rc == 0)
            __atomic_add_fetch(&r->ok, 1, __ATOMIC_RELAXED);
        else if (rc == SHMRPC_EUNAVAIL)
            r->unavailable++;
        else
            r->other++;
    }
    shmrpc_client_free(c);
    return NULL;
}

static void server_freed_during_calls(void **state)
{
    (void)state;
    shmrpc_server *s = serve("inproc://race", NULL);
    racer r[THREADS] = {{0}};
    for (int k = 0; k < THREADS; k++)
        assert_int_equal(pthread_create(&r[k].thread, NULL, race, &r[k]), 0);
    /* Let them get going, then pull the server away. */
    for (int spin = 0; spin < 1000; spin++) {
        int started = 0;
        for (int k = 0; k < THREADS; k++)
            started += __atomic_load_n(&r[k].ok, __ATOMIC_RELAXED) > 100;
        if (started == THREADS) break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    shmrpc_server_free(s);
    for (int k = 0; k < THREADS; k++) {
        pthread_join(r[k].thread, NULL);
        assert_int_equal(r[k].other, 0);
        assert_true(r[k].ok > 0);
    }
}

/* A name in inproc://NAME is 1 to 255 printable characters, no space: a client and a
 * server refuse any other with the same message; the longest is taken. */
static void names_are_checked(void **state)
{
    (void)state;
    static char longest[256 + 16], too_long[257 + 16];
    memset(longest, 'n', 255);
    memset(too_long, 'n', 256);
    const char *bad[] = {"", "a b", "tab\there", "del\x7f", too_long};
    shmrpc_client *c = client_for(&calc_service_info, NULL);
    shmrpc_server *s;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &calc_service, &calc_default_handlers, NULL), 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char where[300], says[400];
        snprintf(where, sizeof where, "inproc://%s", bad[i]);
        snprintf(says, sizeof says,
                 "malformed address 'inproc://%.255s': the name must be 1 to 255 printable "
                 "characters without spaces",
                 bad[i]);
        assert_int_equal(shmrpc_client_connect(c, where), SHMRPC_EINVAL);
        assert_string_equal(shmrpc_errmsg(), says);
        assert_int_equal(shmrpc_server_listen(s, where), SHMRPC_EINVAL);
        assert_string_equal(shmrpc_errmsg(), says);
    }
    char where[300];
    snprintf(where, sizeof where, "inproc://%s", longest);
    assert_int_equal(shmrpc_server_listen(s, where), 0);
    assert_int_equal(shmrpc_client_connect(c, where), 0);
    int64_t sum;
    assert_int_equal(calc_add(c, 20, 22, &sum), 0);
    assert_int_equal(sum, 42);
    shmrpc_client_free(c);
    shmrpc_server_free(s);
}

/* Servers go in any order: freeing one that listened first leaves the later ones
 * reachable, and its name free. */
static void servers_go_in_any_order(void **state)
{
    (void)state;
    shmrpc_server *first = serve("inproc://first", NULL);
    shmrpc_server *second = serve("inproc://second", NULL);
    shmrpc_server *third = serve("inproc://third", NULL);
    shmrpc_server_free(second); /* neither end of the list */
    shmrpc_server_free(first);
    shmrpc_client *c = client_for(&calc_service_info, "inproc://third");
    int64_t sum;
    assert_int_equal(calc_add(c, 1, 2, &sum), 0);
    assert_int_equal(sum, 3);
    assert_int_equal(shmrpc_client_connect(c, "inproc://second"), SHMRPC_EUNAVAIL);
    assert_string_equal(shmrpc_errmsg(), "no server at inproc://second");
    assert_int_equal(shmrpc_client_connect(c, "inproc://first"), SHMRPC_EUNAVAIL);
    first = serve("inproc://first", NULL);
    assert_int_equal(shmrpc_client_connect(c, "inproc://first"), 0);
    assert_int_equal(calc_add(c, 2, 2, &sum), 0);
    assert_int_equal(sum, 4);
    shmrpc_client_free(c);
    shmrpc_server_free(third);
    shmrpc_server_free(first);
}

/* --- deadlines: what a handler sees, and what its own calls inherit ------------------ */

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Set by the handlers below: B's add records what it sees; A's positive naps, then calls
 * B's add through dl_to_b. */
static int64_t dl_left_a, dl_left_b;
static int dl_runs_b, dl_rc_a, dl_cancelled_a;
static unsigned dl_nap_ms;
static shmrpc_client *dl_to_b;

static int64_t left_of(shmrpc_ctx *ctx)
{
    int64_t at = shmrpc_ctx_deadline(ctx);
    return at == INT64_MAX ? -1 : at - now_ns();
}

static int dl_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *sum)
{
    dl_runs_b++;
    dl_left_b = left_of(ctx);
    *sum = a + b;
    return 0;
}

/* It asks only after its nap: the deadline counts from the call's start, not the question. */
static int dl_positive(shmrpc_ctx *ctx)
{
    struct timespec nap = {0, (long)dl_nap_ms * 1000000};
    nanosleep(&nap, NULL);
    dl_cancelled_a = shmrpc_ctx_cancelled(ctx);
    dl_left_a = left_of(ctx);
    int64_t sum;
    dl_rc_a = calc_add(dl_to_b, 1, 2, &sum);
    return 0;
}

static void deadlines_are_inherited(void **state)
{
    (void)state;
    calc_handlers ha = calc_default_handlers, hb = calc_default_handlers;
    ha.positive = dl_positive;
    hb.add = dl_add;
    shmrpc_server *a, *b;
    assert_int_equal(shmrpc_server_new(&a, NULL), 0);
    assert_int_equal(shmrpc_server_register(a, &calc_service, &ha, NULL), 0);
    assert_int_equal(shmrpc_server_listen(a, "inproc://dl_a"), 0);
    assert_int_equal(shmrpc_server_new(&b, NULL), 0);
    assert_int_equal(shmrpc_server_register(b, &calc_service, &hb, NULL), 0);
    assert_int_equal(shmrpc_server_listen(b, "inproc://dl_b"), 0);
    shmrpc_client *c = client_for(&calc_service_info, "inproc://dl_a");
    dl_to_b = client_for(&calc_service_info, "inproc://dl_b");

    /* A's handler sees its client's 500 ms, and B's what is left of them. */
    shmrpc_client_next_timeout(c, 500);
    dl_nap_ms = 0;
    assert_int_equal(calc_positive(c), 0);
    assert_int_equal(dl_rc_a, 0);
    assert_int_equal(dl_cancelled_a, 0);
    assert_true(dl_left_a > 0 && dl_left_a <= 500 * INT64_C(1000000));
    assert_true(dl_left_b > 0 && dl_left_b <= dl_left_a);

    /* A client that waits for ever gives none; B's call keeps its own 5 s. */
    shmrpc_client_next_timeout(c, SHMRPC_TIMEOUT_INFINITE);
    assert_int_equal(calc_positive(c), 0);
    assert_int_equal(dl_left_a, -1);
    assert_true(dl_left_b > 500 * INT64_C(1000000) &&
                dl_left_b <= SHMRPC_DEFAULT_TIMEOUT_MS * INT64_C(1000000));

    /* Past its deadline, A's handler is told so, and its call fails unsent: B never runs. */
    int runs = dl_runs_b;
    shmrpc_client_next_timeout(c, 20);
    dl_nap_ms = 60;
    assert_int_equal(calc_positive(c), 0); /* inproc:// cannot time out: A answers */
    assert_int_equal(dl_cancelled_a, SHMRPC_ETIMEDOUT);
    assert_int_equal(dl_rc_a, SHMRPC_ETIMEDOUT);
    assert_int_equal(dl_runs_b, runs);

    /* Unless B's client keeps its own timeout. */
    shmrpc_client_own_deadline(dl_to_b, true);
    shmrpc_client_next_timeout(c, 20);
    assert_int_equal(calc_positive(c), 0);
    assert_int_equal(dl_rc_a, 0);
    assert_int_equal(dl_runs_b, runs + 1);

    shmrpc_client_free(dl_to_b);
    shmrpc_client_free(c);
    shmrpc_server_free(a);
    shmrpc_server_free(b);
}

/* A call cancelled from another thread (shmrpc_client_cancel): the handler, which runs on
 * the caller's thread, sees SHMRPC_ECANCELLED, here ending its wait that had no limit. */
static int cx_why;

static int cx_wait(shmrpc_ctx *ctx)
{
    cx_why = shmrpc_ctx_wait_cancelled(ctx, 10000);
    return 0;
}

static void *cx_cancel(void *arg)
{
    struct timespec nap = {0, 100 * 1000000};
    nanosleep(&nap, NULL);
    shmrpc_client_cancel(arg);
    return NULL;
}

static void cancel_reaches_the_handler(void **state)
{
    (void)state;
    calc_handlers h = calc_default_handlers;
    h.positive = cx_wait;
    shmrpc_server *s;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &calc_service, &h, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s, "inproc://cx"), 0);
    shmrpc_client *c = client_for(&calc_service_info, "inproc://cx");
    shmrpc_client_next_timeout(c, SHMRPC_TIMEOUT_INFINITE);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cx_cancel, c), 0);
    int64_t t0 = now_ns();
    assert_int_equal(calc_positive(c), 0); /* the handler answers: the caller had it run */
    pthread_join(t, NULL);
    assert_int_equal(cx_why, SHMRPC_ECANCELLED);
    assert_true(now_ns() - t0 < 9000 * INT64_C(1000000)); /* not its 10 s */
    /* A call after the cancel is not cancelled: its wait ends at its deadline. */
    shmrpc_client_next_timeout(c, 50);
    assert_int_equal(calc_positive(c), 0);
    assert_int_equal(cx_why, SHMRPC_ETIMEDOUT);
    shmrpc_client_free(c);
    shmrpc_server_free(s);
}

/* A started call outlives its client (client.h: shmrpc_call_free works after the client is
 * gone): over inproc:// it is done at its start, on no list of the client, and freeing it
 * must not reach the freed client (the ASan build sees it if it does). */
static void a_call_outlives_its_client(void **state)
{
    (void)state;
    shmrpc_server *s;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &calc_service, &calc_default_handlers, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s, "inproc://outlive"), 0);
    shmrpc_client *c = client_for(&calc_service_info, "inproc://outlive");
    shmrpc_client_request(c);
    shmrpc_call *call;
    assert_int_equal(shmrpc_client_start(c, CALC_POSITIVE, SHMRPC_TIMEOUT_DEFAULT, &call), 0);
    shmrpc_client_free(c);
    int done = shmrpc_call_status(call); /* whatever the handler answered */
    assert_int_not_equal(done, SHMRPC_CALL_PENDING);
    shmrpc_call_cancel(call); /* done: nothing */
    assert_int_equal(shmrpc_call_status(call), done);
    shmrpc_call_free(call);
    shmrpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(calls_end_to_end),
        cmocka_unit_test(handler_errors_reach_the_client),
        cmocka_unit_test(message_size_limits),
        cmocka_unit_test(not_connected),
        cmocka_unit_test(mismatch_names_every_method),
        cmocka_unit_test(server_may_have_more_methods),
        cmocka_unit_test(unavailable_after_server_free),
        cmocka_unit_test(second_listen_is_busy),
        cmocka_unit_test(names_are_checked),
        cmocka_unit_test(servers_go_in_any_order),
        cmocka_unit_test(timeouts_are_stored),
        cmocka_unit_test(four_threads_four_clients),
        cmocka_unit_test(server_freed_during_calls),
        cmocka_unit_test(deadlines_are_inherited),
        cmocka_unit_test(cancel_reaches_the_handler),
        cmocka_unit_test(a_call_outlives_its_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
