/* SPDX-License-Identifier: MIT */
/* A queue whose segment a hostile process of the same user writes over while producers
 * and consumers use it: every word of it (header, positions, the roles' leases, the
 * subscriber table, descriptors, payload) overwritten with random values, many times a
 * millisecond. The segment is shared memory that anyone holding the owner's uid may
 * write, so the library treats it as input: no process may crash, hang past its timeout,
 * or get a status the API does not have. Nothing is promised about the messages while the
 * scribbler runs (it can rewrite them, and any position), only that every side stays up
 * and answers. Every child is bounded by alarm() and reaped, every queue unlinked, even
 * when the test fails. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <shmrpc.h>

#include "kids.h"
#include "scribble.h"

#define CHILD_ALARM_S 30
#define RUN_MS 1200     /* how long the users and the scribbler run together */
#define OP_TIMEOUT_MS 5 /* each push and pop waits at most this long... */
#define OP_HANG_MS 2000 /* ...and one that takes this long has hung */
#define REAP_MS 20000   /* a child that is not done by then has hung */
#define MAX_MSG 256
#define HOT_BYTES 4096 /* the header: scribbled more often than the rest */

static char qname[SHMRPC_QUEUE_NAME_MAX + 1];

static int setup(void **state)
{
    (void)state;
    snprintf(qname, sizeof qname, "queue_scribble.%d", (int)getpid());
    return test_scribble_setup();
}

static int teardown(void **state)
{
    (void)state;
    test_kids_kill_all();
    shmrpc_queue_unlink(qname);
    test_scribble_teardown();
    return 0;
}

/* One test's queue and what its children do. */
struct scene {
    shmrpc_queue_kind kind;
    shmrpc_queue_slow slow;
    bool single_producer, single_consumer;
};

static shmrpc_queue_opts opts_of(const struct scene *sc, shmrpc_queue_mode mode, bool subscribe)
{
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = mode;
    o.capacity = 64;
    o.arena_bytes = 8192;
    o.max_msg = MAX_MSG;
    o.kind = sc->kind;
    o.slow = sc->slow;
    o.subscribe = subscribe;
    o.single_producer = sc->single_producer;
    o.single_consumer = sc->single_consumer;
    return o;
}

static int judge(const char *what, int rc, int64_t t0)
{
    return test_scribble_judge(what, rc, t0, OP_HANG_MS);
}

/* A producer: every way of pushing, lengths from 0 to past the limit. */
static int produce(void *arg)
{
    const struct scene *sc = arg;
    shmrpc_queue_opts o = opts_of(sc, SHMRPC_QUEUE_CONNECT_TO_EXISTING, false);
    shmrpc_queue *q = NULL;
    if (shmrpc_queue_open(&q, qname, &o) != 0) return 2;
    test_scribble_user_ready();
    unsigned char msg[MAX_MSG + 8];
    memset(msg, 0x5a, sizeof msg);
    unsigned r = (unsigned)getpid();
    int64_t end = test_kid_now_ms() + RUN_MS;
    int bad = 0;
    while (!bad && test_kid_now_ms() < end) {
        r = r * 1103515245u + 12345u;
        size_t len = (r >> 8) % (MAX_MSG + 8);
        int64_t t0 = test_kid_now_ms();
        switch ((r >> 20) % 3) {
        case 0:
            bad = judge("push", shmrpc_queue_push(q, msg, len, OP_TIMEOUT_MS), t0);
            break;
        case 1: {
            shmrpc_queue_msg m[4];
            for (int i = 0; i < 4; i++)
                m[i] = (shmrpc_queue_msg){msg, 0, len / (size_t)(i + 1)};
            bad = judge("push_batch", shmrpc_queue_push_batch(q, m, 4, NULL, OP_TIMEOUT_MS), t0);
            break;
        }
        default: {
            shmrpc_queue_span s;
            int rc = shmrpc_queue_reserve(q, len, &s, OP_TIMEOUT_MS);
            bad = judge("reserve", rc, t0);
            if (rc == 0 && !bad) {
                memset(s.data, 0xa5, s.len);
                bad = judge("commit", shmrpc_queue_commit(q, &s), t0);
            }
        }
        }
    }
    shmrpc_queue_stats st;
    if (!bad) bad = judge("get_stats", shmrpc_queue_get_stats(q, &st), test_kid_now_ms());
    shmrpc_queue_close(q);
    test_scribble_tally("producer");
    return bad;
}

/* A consumer: every way of taking, buffers from too small to enough. */
static int consume(void *arg)
{
    const struct scene *sc = arg;
    shmrpc_queue_opts o =
        opts_of(sc, SHMRPC_QUEUE_CONNECT_TO_EXISTING, sc->kind == SHMRPC_QUEUE_BROADCAST);
    shmrpc_queue *q = NULL;
    if (shmrpc_queue_open(&q, qname, &o) != 0) return 2;
    test_scribble_user_ready();
    unsigned char buf[MAX_MSG];
    unsigned r = (unsigned)getpid();
    int64_t end = test_kid_now_ms() + RUN_MS;
    int bad = 0;
    while (!bad && test_kid_now_ms() < end) {
        r = r * 1103515245u + 12345u;
        size_t cap = (r >> 4) % 8 == 0 ? 16 : sizeof buf, len;
        int64_t t0 = test_kid_now_ms();
        switch ((r >> 20) % 4) {
        case 0:
            bad = judge("pop", shmrpc_queue_pop(q, buf, cap, &len, OP_TIMEOUT_MS), t0);
            break;
        case 1: {
            shmrpc_queue_msg m[4];
            for (int i = 0; i < 4; i++)
                m[i] = (shmrpc_queue_msg){buf, cap, 0};
            size_t done;
            bad = judge("pop_batch", shmrpc_queue_pop_batch(q, m, 4, &done, OP_TIMEOUT_MS), t0);
            break;
        }
        case 2: {
            shmrpc_queue_span s;
            int rc = shmrpc_queue_peek(q, &s, OP_TIMEOUT_MS);
            bad = judge("peek", rc, t0);
            if (rc == 0 && !bad) {
                volatile unsigned char sink = 0;
                for (size_t i = 0; i < s.len; i++) /* every byte the span says it has */
                    sink ^= ((const unsigned char *)s.data)[i];
                (void)sink;
                bad = judge("release", shmrpc_queue_release(q, &s), t0);
            }
            break;
        }
        default:
            if (sc->kind == SHMRPC_QUEUE_WORK)
                bad = judge("look", shmrpc_queue_look(q, buf, cap, &len), t0);
        }
    }
    shmrpc_queue_stats st;
    if (!bad) bad = judge("get_stats", shmrpc_queue_get_stats(q, &st), test_kid_now_ms());
    shmrpc_queue_close(q);
    test_scribble_tally("consumer");
    return bad;
}

/* The scribbler: four random 1, 4 or 8-byte values at random places of the segment's file
 * every millisecond, the header's 4 KiB more often than the rest, for RUN_MS. (Faster, it
 * wrecks the positions at once, and every operation after that just times out.) */
static int scribble(void *arg)
{
    int users = *(const int *)arg;
    if (test_scribble_wait_users(users) != 0) return 4;
    char path[sizeof qname + 32];
    snprintf(path, sizeof path, "/dev/shm/shmrpc.queue.%s", qname);
    size_t size;
    unsigned char *m = test_scribble_map(path, &size);
    if (!m) return 3;
    uint64_t x = (uint64_t)getpid() * 0x9e3779b97f4a7c15u;
    for (int64_t end = test_kid_now_ms() + RUN_MS; test_kid_now_ms() < end; usleep(1000))
        test_scribble(m, size, HOT_BYTES, 4, &x);
    munmap(m, size);
    return 0;
}

static void run_scene(const struct scene *sc)
{
    shmrpc_queue_opts o = opts_of(sc, SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE, false);
    shmrpc_queue *q = NULL;
    int rc = shmrpc_queue_open(&q, qname, &o);
    if (rc != 0) print_error("open: %s\n", shmrpc_errmsg());
    assert_int_equal(rc, 0);
    /* Single roles: one producer and one consumer at a time; else two of each. */
    int np = sc->single_producer ? 1 : 2, nc = sc->single_consumer ? 1 : 2;
    pid_t kids[5];
    int n = 0;
    for (int i = 0; i < np; i++)
        kids[n++] = test_kid_spawn(produce, (void *)sc, CHILD_ALARM_S);
    for (int i = 0; i < nc; i++)
        kids[n++] = test_kid_spawn(consume, (void *)sc, CHILD_ALARM_S);
    int users = np + nc;
    kids[n++] = test_kid_spawn(scribble, &users, CHILD_ALARM_S);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        assert_true(kids[i] > 0);
        int st = test_kid_reap(kids[i], REAP_MS);
        if (st != 0) {
            print_error("child %d (%s) ended with %d (128 + signal when killed; -1: hung)\n",
                        (int)kids[i],
                        i < np        ? "producer"
                        : i < np + nc ? "consumer"
                                      : "scribbler",
                        st);
            failed++;
        }
    }
    /* The creator's handle still closes, whatever the segment holds now. */
    shmrpc_queue_close(q);
    assert_int_equal(failed, 0);
}

static void work_queue(void **state)
{
    (void)state;
    run_scene(&(struct scene){.kind = SHMRPC_QUEUE_WORK});
}

static void single_producer_consumer(void **state)
{
    (void)state;
    run_scene(&(struct scene){
        .kind = SHMRPC_QUEUE_WORK, .single_producer = true, .single_consumer = true});
}

static void broadcast_block(void **state)
{
    (void)state;
    run_scene(&(struct scene){.kind = SHMRPC_QUEUE_BROADCAST, .slow = SHMRPC_QUEUE_SLOW_BLOCK});
}

static void broadcast_drop(void **state)
{
    (void)state;
    run_scene(&(struct scene){.kind = SHMRPC_QUEUE_BROADCAST, .slow = SHMRPC_QUEUE_SLOW_DROP});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(work_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(single_producer_consumer, setup, teardown),
        cmocka_unit_test_setup_teardown(broadcast_block, setup, teardown),
        cmocka_unit_test_setup_teardown(broadcast_drop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
