/* SPDX-License-Identifier: MIT */
/* Large @raw calls through the plain generated stub and handler (issue 37), with real
 * processes: over shm:// a request of SHMRPC__IN_PLACE_MIN bytes or more is read by a
 * handler left as it is where the client wrote it (in the channel), a shorter one, or one
 * of a method set to copy (shmrpc_server_set_in_place 0), from a private copy; the stub's
 * answer is read where the worker put it; answers of every shape come back whole (the
 * request itself, a part of it, a reversal written in the handler's own loan, which must
 * not be the request's bytes, memory of the handler's own, larger than the channel); the
 * last answer, or its tail, sent back as the next request, comes back as sent, as does one
 * in the client's arena (where the last results were decoded); a worker
 * killed in the middle of such a call fails it with SHMRPC_EPEERDIED; and tcp:// and
 * inproc:// answer the same. Every wait is bounded, every server stopped and its segments
 * checked gone. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "procs.h"
#include "rpc/rpc.h" /* SHMRPC__IN_PLACE_MIN */

enum { BIG = 3 << 20 }; /* an answer larger than any request here: the channel grows */

/* Shared with the servers' workers: mapped before any fork. */
typedef struct raw_shared {
    _Atomic int64_t in_place; /* requests the handler found in a channel */
    _Atomic int64_t copied;   /* requests it found elsewhere */
    _Atomic int32_t napping;  /* the pid of a worker in an 'N' call, or 0 */
    _Atomic int32_t overlap;  /* an 'R' call whose loan was the request's own bytes */
} raw_shared;

static raw_shared *rs;
static char addr[64];
static int addr_n;

/* Whether p lies in a mapping of a shm:// channel (a memfd named shmrpc:...), as
 * /proc/self/maps says. */
static bool in_channel(const void *p)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return false;
    char line[512];
    bool found = false;
    uintptr_t at = (uintptr_t)p;
    while (!found && fgets(line, sizeof line, f)) {
        uintptr_t lo, hi;
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2 && at >= lo && at < hi)
            found = strstr(line, "/memfd:shmrpc:") != NULL;
    }
    fclose(f);
    return found;
}

static uint32_t u32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 13 + 5);
}

/* --- the server: echo's handler, as a user writes one -------------------------------
 * The request's first byte says what to answer:
 *   'S' the request without its first byte (a part of it, which may be in the channel);
 *   'R' the request reversed, written into the handler's loan (shmrpc_ctx_loan) as it is
 *       read: a loan that were the request's own bytes would garble the second half;
 *   'O' bytes 1..4 say n: n bytes of pattern() from the handler's own memory;
 *   'N' publishes the worker's pid, naps the ms in bytes 1..4, then echoes;
 * anything else: the request itself. */
static int h_echo(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    if (data.len > 24) {
        if (in_channel(data.ptr))
            rs->in_place++;
        else
            rs->copied++;
    }
    char op = data.len ? (char)data.ptr[0] : 'E';
    if (op == 'S') {
        *out = shmrpc_bytes_of(data.ptr + 1, data.len - 1);
        return 0;
    }
    if (op == 'R') {
        uint8_t *room;
        int rc = shmrpc_ctx_loan(ctx, data.len, (void **)&room);
        if (rc != 0) return rc;
        if ((const uint8_t *)room == data.ptr) rs->overlap = 1;
        for (size_t i = 0; i < data.len; i++)
            room[i] = data.ptr[data.len - 1 - i];
        *out = shmrpc_bytes_of(room, data.len);
        return 0;
    }
    if (op == 'O' && data.len >= 5) {
        static uint8_t *own;
        uint32_t n = u32_at(data.ptr + 1);
        if (n > BIG) return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "too long");
        if (!own && !(own = malloc(BIG))) return SHMRPC_ENOMEM;
        for (uint32_t i = 0; i < n; i++)
            own[i] = pattern(i);
        *out = shmrpc_bytes_of(own, n);
        return 0;
    }
    if (op == 'N' && data.len >= 5) {
        rs->napping = (int32_t)getpid();
        uint32_t ms = u32_at(data.ptr + 1);
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        rs->napping = 0;
    }
    *out = data;
    return 0;
}

static Calls_handlers handlers;

static int serve_plain(shmrpc_server *s)
{
    handlers = calls_test_handlers;
    handlers.echo = h_echo;
    return shmrpc_server_register(s, &Calls_service, &handlers, NULL);
}

static int serve_copies(shmrpc_server *s)
{
    int rc = serve_plain(s);
    return rc == 0 ? shmrpc_server_set_in_place(s, CALLS_METHOD_ECHO, 0) : rc;
}

static pid_t start_server(const char *where, int (*configure)(shmrpc_server *))
{
    test_server ts = {.addr = where, .workers = 1, .configure = configure};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    return pid;
}

static void stop_server(pid_t pid, const char *where)
{
    assert_true(test_stop_server(pid));
    assert_int_equal(test_shm_segments(where), 0);
}

static shmrpc_client *connect_to(const char *where)
{
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, where, &rc);
    if (!c || rc) fail_msg("connect %s: %s: %s", where, shmrpc_strerror(rc), shmrpc_errmsg());
    return c;
}

static int setup(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://rawlarge-%d-%d", (int)getpid(), addr_n++);
    memset(rs, 0, sizeof *rs);
    return 0;
}

/* A request of n bytes (n >= 5) for op, with bytes 1..4 arg when op wants them, the rest
 * i * 7 + n. */
static uint8_t *request(char op, size_t n, uint32_t arg)
{
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + n);
    p[0] = (uint8_t)op;
    if (op == 'O' || op == 'N')
        for (int i = 0; i < 4; i++)
            p[1 + i] = (uint8_t)(arg >> (8 * i));
    return p;
}

/* Checks one call of each shape with a request of n bytes on c (answers read in the
 * channel: over shm://, where every answer comes back in the channel). */
static void every_shape(shmrpc_client *c, size_t n, bool in_channel_answers)
{
    shmrpc_bytes out;
    uint8_t *req = request('E', n, 0);
    assert_int_equal(calls_echo(c, shmrpc_bytes_of(req, n), &out), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.ptr, req, n);
    assert_true(in_channel(out.ptr) == in_channel_answers);

    req[0] = 'S';
    assert_int_equal(calls_echo(c, shmrpc_bytes_of(req, n), &out), 0);
    assert_int_equal(out.len, n - 1);
    assert_memory_equal(out.ptr, req + 1, n - 1);

    req[0] = 'R';
    assert_int_equal(calls_echo(c, shmrpc_bytes_of(req, n), &out), 0);
    assert_int_equal(out.len, n);
    for (size_t i = 0; i < n; i++)
        if (out.ptr[i] != req[n - 1 - i]) fail_msg("'R' of %zu bytes: byte %zu wrong", n, i);
    free(req);

    const uint32_t owns[] = {0, 24, 25, 300, 65536, BIG};
    for (size_t k = 0; k < sizeof owns / sizeof owns[0]; k++) {
        req = request('O', n, owns[k]);
        assert_int_equal(calls_echo(c, shmrpc_bytes_of(req, n), &out), 0);
        assert_int_equal(out.len, owns[k]);
        for (size_t i = 0; i < owns[k]; i++)
            if (out.ptr[i] != pattern(i)) fail_msg("'O' of %u: byte %zu wrong", owns[k], i);
        free(req);
    }
    int64_t sum = 0; /* a typed call in between, as ever */
    assert_int_equal(calls_add(c, 40, 2, &sum), 0);
    assert_int_equal(sum, 42);
}

/* --- tests --- */

/* Over shm://, a handler left as it is reads a request from SHMRPC__IN_PLACE_MIN bytes in
 * the channel, a shorter one from a copy; the stub's answer is in the channel either way. */
static void large_requests_are_read_in_place(void **state)
{
    (void)state;
    pid_t server = start_server(addr, serve_plain);
    shmrpc_client *c = connect_to(addr);
    const size_t sizes[] = {25,    300,    SHMRPC__IN_PLACE_MIN - 1, SHMRPC__IN_PLACE_MIN,
                            4096,  65536,  1 << 20,                  100,
                            65536, 2 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int64_t before = rs->in_place, copied = rs->copied;
        uint8_t *req = request('E', sizes[k], 0);
        shmrpc_bytes out;
        assert_int_equal(calls_echo(c, shmrpc_bytes_of(req, sizes[k]), &out), 0);
        assert_int_equal(out.len, sizes[k]);
        assert_memory_equal(out.ptr, req, sizes[k]);
        assert_true(in_channel(out.ptr));
        bool large = sizes[k] >= SHMRPC__IN_PLACE_MIN;
        assert_int_equal(rs->in_place - before, large ? 1 : 0);
        assert_int_equal(rs->copied - copied, large ? 0 : 1);
        free(req);
    }
    shmrpc_client_free(c);
    stop_server(server, addr);
}

/* shmrpc_server_set_in_place(..., 0) keeps the copy for every size. */
static void set_to_copy_copies(void **state)
{
    (void)state;
    pid_t server = start_server(addr, serve_copies);
    shmrpc_client *c = connect_to(addr);
    const size_t sizes[] = {SHMRPC__IN_PLACE_MIN, 65536, 1 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint8_t *req = request('E', sizes[k], 0);
        shmrpc_bytes out;
        assert_int_equal(calls_echo(c, shmrpc_bytes_of(req, sizes[k]), &out), 0);
        assert_int_equal(out.len, sizes[k]);
        assert_memory_equal(out.ptr, req, sizes[k]);
        free(req);
    }
    assert_int_equal(rs->in_place, 0);
    assert_int_equal(rs->copied, 3);
    every_shape(c, 65536, true);
    assert_int_equal(rs->in_place, 0);
    shmrpc_client_free(c);
    stop_server(server, addr);
}

/* Answers of every shape, from requests read in place and from copies: whole. A handler's
 * own loan while it reads its request in place unasked is not the request's bytes. */
static void answers_of_every_shape(void **state)
{
    (void)state;
    pid_t server = start_server(addr, serve_plain);
    shmrpc_client *c = connect_to(addr);
    const size_t sizes[] = {65536, 1000, SHMRPC__IN_PLACE_MIN, 1 << 20, 5};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        every_shape(c, sizes[k], true);
    assert_int_equal(rs->in_place, 3 * 9); /* 9 echoes of each size: 3 of them large */
    assert_int_equal(rs->copied, 9);
    assert_int_equal(rs->overlap, 0);
    shmrpc_client_free(c);
    stop_server(server, addr);
}

/* The last answer, whole or in part, sent back as the next request (it lies in the channel,
 * where that request and its answer go; and a part of it overlaps where the request is
 * written): each answer is the request that was sent. */
static void answers_sent_back(const char *where)
{
    shmrpc_client *c = connect_to(where);
    const size_t n = 65536;
    uint8_t *req = request('E', n, 0);
    shmrpc_bytes out;
    assert_int_equal(calls_echo(c, shmrpc_bytes_of(req, n), &out), 0);
    assert_int_equal(calls_echo(c, out, &out), 0); /* the whole answer */
    assert_int_equal(out.len, n);
    assert_memory_equal(out.ptr, req, n);
    for (size_t cut = 8; cut < 64; cut += 8) { /* its tail: an overlapping copy otherwise */
        assert_int_equal(calls_echo(c, shmrpc_bytes_of(out.ptr + 8, out.len - 8), &out), 0);
        assert_int_equal(out.len, n - cut);
        assert_memory_equal(out.ptr, req + cut, n - cut);
    }
    free(req);
    shmrpc_client_free(c);
}

/* A request in the client's arena (where a stub decodes results: the last call's, passed on
 * as this one's argument), in a block of its own past the first: the arena is let go of only
 * once the call is made (a block this large is its own mapping, which freeing unmaps). */
static void request_from_the_arena(void **state)
{
    (void)state;
    pid_t server = start_server(addr, serve_plain);
    shmrpc_client *c = connect_to(addr);
    const size_t n = 300 << 10;
    shmrpc_arena *arena = shmrpc_client_arena(c);
    for (int round = 0; round < 3; round++) {
        uint8_t *first = shmrpc_arena_alloc(arena, 4096, 16); /* the first block... */
        uint8_t *req = shmrpc_arena_alloc(arena, n, 16);       /* ...and one more */
        assert_non_null(first);
        assert_non_null(req);
        for (size_t i = 0; i < n; i++)
            req[i] = pattern(i + (size_t)round);
        shmrpc_bytes out;
        assert_int_equal(calls_echo(c, shmrpc_bytes_of(req, n), &out), 0);
        assert_int_equal(out.len, n);
        for (size_t i = 0; i < n; i++)
            if (out.ptr[i] != pattern(i + (size_t)round)) fail_msg("byte %zu wrong", i);
    }
    shmrpc_client_free(c);
    stop_server(server, addr);
}

static void answers_sent_back_are_sent_whole(void **state)
{
    (void)state;
    pid_t server = start_server(addr, serve_plain);
    answers_sent_back(addr);
    stop_server(server, addr);
    char tcp[64];
    snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%d", test_free_port());
    server = start_server(tcp, serve_plain);
    answers_sent_back(tcp);
    assert_true(test_stop_server(server));
}

/* A worker killed (SIGKILL) while it reads a large request in place: the call fails with
 * SHMRPC_EPEERDIED, and the replacement serves the next. */
static void worker_killed_mid_call(void **state)
{
    (void)state;
    pid_t server = start_server(addr, serve_plain);
    pid_t child = fork();
    if (child == 0) {
        alarm(30);
        int rc;
        shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &rc);
        if (rc != 0) _exit(9);
        uint8_t *req = request('N', 65536, 10000);
        shmrpc_bytes out;
        rc = calls_echo(c, shmrpc_bytes_of(req, 65536), &out);
        if (rc != SHMRPC_EPEERDIED) {
            fprintf(stderr, "the worker's death: %s: %s\n", shmrpc_status_name(rc),
                    shmrpc_errmsg());
            _exit(2);
        }
        req[0] = 'E';
        for (int i = 0; i < 300; i++, usleep(10000)) /* the replacement, within 3 s */
            if (calls_echo(c, shmrpc_bytes_of(req, 65536), &out) == 0) break;
        if (out.len != 65536 || memcmp(out.ptr, req, 65536) != 0) _exit(3);
        shmrpc_client_free(c);
        _exit(0);
    }
    int32_t victim = 0;
    for (int64_t until = test_now_ms() + 10000; !victim && test_now_ms() < until; usleep(1000))
        victim = rs->napping;
    if (victim) kill(victim, SIGKILL);
    int status = test_reap(child, 30000);
    stop_server(server, addr);
    assert_true(victim > 0);
    assert_int_equal(status, 0);
    assert_int_equal(rs->in_place, 2);
}

/* The same stubs over tcp:// and inproc://: the same answers (from the client's response
 * buffer), and no request in a channel. */
static void the_same_over_tcp_and_inproc(void **state)
{
    (void)state;
    char tcp[64];
    snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%d", test_free_port());
    pid_t server = start_server(tcp, serve_plain);
    shmrpc_client *c = connect_to(tcp);
    every_shape(c, 65536, false);
    every_shape(c, 100, false);
    shmrpc_client_free(c);
    assert_true(test_stop_server(server));

    char where[64];
    snprintf(where, sizeof where, "inproc://rawlarge-%d", (int)getpid());
    shmrpc_server *s;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(serve_plain(s), 0);
    assert_int_equal(shmrpc_server_listen(s, where), 0);
    c = connect_to(where);
    every_shape(c, 65536, false);
    shmrpc_client_free(c);
    shmrpc_server_free(s);
    assert_int_equal(rs->in_place, 0);
}

int main(void)
{
    if (calls_shared_map() != 0) return 1;
    rs = mmap(NULL, sizeof *rs, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rs == MAP_FAILED) return 1;
    signal(SIGPIPE, SIG_IGN);
    alarm(280);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(large_requests_are_read_in_place, setup),
        cmocka_unit_test_setup(set_to_copy_copies, setup),
        cmocka_unit_test_setup(answers_of_every_shape, setup),
        cmocka_unit_test_setup(answers_sent_back_are_sent_whole, setup),
        cmocka_unit_test_setup(request_from_the_arena, setup),
        cmocka_unit_test_setup(worker_killed_mid_call, setup),
        cmocka_unit_test_setup(the_same_over_tcp_and_inproc, setup),
    };
    if (getenv("RAW_LARGE_TEST_ONLY")) cmocka_set_test_filter(getenv("RAW_LARGE_TEST_ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
