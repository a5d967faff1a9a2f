/* SPDX-License-Identifier: MIT */
/* A stream's ring over shm:// (runtime/src/transport/shm/shm_ring.c), its writer and its reader
 * in one process, turn by turn: a record is read once it is whole, never one left from an
 * earlier lap, also by a reader more than a ring past the published tail; and the writer's
 * tail is published to a reader that sleeps, every quarter of the ring, and when the writer
 * asks, but not after each record. The two processes and their hostile peers are
 * tests/stream's. */
#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "transport/shm/shm_ring.h"

#define CAP 4096u

typedef struct ring {
    shmrpc__stream_ring *r;
    shmrpc__ring_reader rd;
    uint32_t tail; /* the writer's */
} ring;

/* A ring whose records hold bytes that would all read as whole records (an earlier lap's, or
 * another call's), but its first header, which the client zeroes at the stream's open. */
static ring ring_new(void)
{
    ring g = {.rd = {.cap = CAP, .writer = "worker", .reader = "client"}};
    g.r = aligned_alloc(64, sizeof *g.r + CAP);
    assert_non_null(g.r);
    memset(g.r, 0, sizeof *g.r);
    memset(g.r + 1, 0xff, CAP);
    memset(g.r + 1, 0, 8);
    return g;
}

/* Passes an item of n bytes of seed's pattern from the writer to the reader, turn by turn: as
 * much of it as the ring has room for, then all that is whole of it, the room given back. Once
 * it came whole, the reader finds nothing more. */
static void pass_item(ring *g, uint8_t seed, size_t n)
{
    static uint8_t p[3 * CAP];
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i);
    shmrpc_buf item, err;
    shmrpc_buf_init(&item);
    shmrpc_buf_init(&err);
    item.max = sizeof p;
    size_t left = n, at = 0;
    bool begun = false;
    for (int rc = 0; rc != 1;) {
        uint32_t piece, head = atomic_load(&g->r->head.word);
        bool wrote = false;
        while ((!begun || left > 0) && shmrpc__ring_fit(CAP, g->tail, head, left, &piece) == 0) {
            left -= piece;
            shmrpc__ring_put(g->r, CAP, &g->tail, p + at, piece, (uint32_t)left);
            shmrpc__ring_publish(g->r, CAP, g->tail, true, false); /* as the writers do */
            at += piece;
            begun = wrote = true;
        }
        assert_true(wrote);
        uint32_t tail = atomic_load(&g->r->tail.word);
        while ((rc = shmrpc__ring_take(g->r, &g->rd, tail, &item, &err)) == 0)
            ;
        if (rc != 1 && rc != SHMRPC__RING_NONE)
            fail_msg("an item of %zu: %d (%s)", n, rc, shmrpc__msg_get(&err));
        shmrpc__ring_give_back(g->r, &g->rd, true);
    }
    assert_int_equal(item.len, n);
    assert_memory_equal(item.data, p, n);
    int rc = shmrpc__ring_take(g->r, &g->rd, atomic_load(&g->r->tail.word), &item, &err);
    if (rc != SHMRPC__RING_NONE) fail_msg("after an item of %zu: %d, not none", n, rc);
    shmrpc_buf_destroy(&item);
    shmrpc_buf_destroy(&err);
}

/* Items of 0 to 3 rings' worth of bytes, read as they come, over many laps of a ring whose
 * bytes all look whole: each is read once and whole, and after it the reader finds nothing
 * until the next is written (the writer zeroed the header after each record it wrote). */
static void records_come_whole_and_once(void **state)
{
    (void)state;
    ring g = ring_new();
    uint64_t written = 0;
    for (unsigned k = 0; k < 3000; k++) {
        size_t n = k % 50 == 49 ? (size_t)(k % 3 + 1) * CAP - 4 : (size_t)(k * 7) % 100;
        pass_item(&g, (uint8_t)k, n);
        written += n;
    }
    assert_true(written > 20 * CAP); /* laps, many */
    /* The end, read as such. */
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    shmrpc__ring_put(g.r, CAP, &g.tail, "", 0, SHMRPC__RING_END);
    assert_int_equal(shmrpc__ring_take(g.r, &g.rd, atomic_load(&g.r->tail.word), NULL, &err), 2);
    shmrpc_buf_destroy(&err);
    free(g.r);
}

/* Writes items of 16 bytes of 0, 1, 2... until the ring is full: how many. */
static unsigned fill(ring *g)
{
    unsigned n = 0;
    uint32_t piece;
    while (shmrpc__ring_fit(CAP, g->tail, atomic_load(&g->r->head.word), 16, &piece) == 0) {
        uint8_t p[16];
        memset(p, (int)n, sizeof p);
        shmrpc__ring_put(g->r, CAP, &g->tail, p, 16, 0);
        n++;
    }
    return n;
}

/* A writer that runs ahead fills the ring, then waits: what it wrote is read in order, though
 * little of it was published. */
static void a_full_ring_reads_in_order(void **state)
{
    (void)state;
    ring g = ring_new();
    unsigned n = fill(&g);
    assert_int_equal(n, (CAP - 8) / 24);
    shmrpc_buf item, err;
    shmrpc_buf_init(&item);
    shmrpc_buf_init(&err);
    item.max = 16;
    for (unsigned k = 0; k < n; k++) {
        shmrpc_buf_clear(&item);
        assert_int_equal(shmrpc__ring_take(g.r, &g.rd, 0, &item, &err), 1);
        assert_int_equal(item.len, 16);
        assert_int_equal(item.data[15], (uint8_t)k);
    }
    assert_int_equal(shmrpc__ring_take(g.r, &g.rd, 0, &item, &err), SHMRPC__RING_NONE);
    shmrpc_buf_destroy(&item);
    shmrpc_buf_destroy(&err);
    free(g.r);
}

/* A reader that keeps up with a writer whose tail is not published yet: a small item, read and
 * its room given back, and then an item of almost the ring, read before the writer published
 * its tail past it, take the reader more than a ring past the tail, which is no lie. */
static void a_reader_ahead_of_the_tail(void **state)
{
    (void)state;
    ring g = ring_new();
    shmrpc_buf item, err;
    shmrpc_buf_init(&item);
    shmrpc_buf_init(&err);
    item.max = CAP;
    static uint8_t p[CAP];
    shmrpc__ring_put(g.r, CAP, &g.tail, p, 100, 0);
    assert_int_equal(shmrpc__ring_take(g.r, &g.rd, 0, &item, &err), 1);
    shmrpc__ring_give_back(g.r, &g.rd, true);
    uint32_t piece;
    assert_int_equal(shmrpc__ring_fit(CAP, g.tail, g.rd.head, CAP - 16, &piece), 0);
    shmrpc__ring_put(g.r, CAP, &g.tail, p, piece, 0);
    shmrpc_buf_clear(&item);
    assert_int_equal(shmrpc__ring_take(g.r, &g.rd, 0, &item, &err), 1);
    assert_int_equal(item.len, CAP - 16);
    assert_true(g.rd.head > CAP);
    int rc = shmrpc__ring_take(g.r, &g.rd, 0, &item, &err);
    if (rc != SHMRPC__RING_NONE) fail_msg("%d (%s), not none", rc, shmrpc__msg_get(&err));
    shmrpc_buf_destroy(&item);
    shmrpc_buf_destroy(&err);
    free(g.r);
}

/* The tail is published to a reader that sleeps, every quarter of the ring, and when the
 * writer asks (before it waits for room, and with the end); not after each record. */
static void the_tail_is_published_when_it_is_needed(void **state)
{
    (void)state;
    ring g = ring_new();
    shmrpc__ring_put(g.r, CAP, &g.tail, "0123456789abcdef", 16, 0);
    shmrpc__ring_publish(g.r, CAP, g.tail, true, false);
    assert_int_equal(atomic_load(&g.r->tail.word), 0);
    atomic_store(&g.r->reader_asleep, 1);
    shmrpc__ring_publish(g.r, CAP, g.tail, true, false);
    assert_int_equal(atomic_load(&g.r->tail.word), 24);
    atomic_store(&g.r->reader_asleep, 0);
    shmrpc__ring_put(g.r, CAP, &g.tail, "0123456789abcdef", 16, 0);
    shmrpc__ring_publish(g.r, CAP, g.tail, false, false);
    assert_int_equal(atomic_load(&g.r->tail.word), 24);
    shmrpc__ring_publish(g.r, CAP, g.tail, false, true);
    assert_int_equal(atomic_load(&g.r->tail.word), 48);
    while (g.tail - 48 < CAP / 4) {
        assert_int_equal(atomic_load(&g.r->tail.word), 48);
        shmrpc__ring_put(g.r, CAP, &g.tail, "0123456789abcdef", 16, 0);
        shmrpc__ring_publish(g.r, CAP, g.tail, true, false);
    }
    assert_int_equal(atomic_load(&g.r->tail.word), g.tail);
    free(g.r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(records_come_whole_and_once),
        cmocka_unit_test(a_full_ring_reads_in_order),
        cmocka_unit_test(a_reader_ahead_of_the_tail),
        cmocka_unit_test(the_tail_is_published_when_it_is_needed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
