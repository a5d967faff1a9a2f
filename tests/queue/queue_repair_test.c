/* SPDX-License-Identifier: MIT */
/* A work queue whose head or tail a bad write sent where no step leads (zeros, all ones, out
 * of range, one message past the tail), and one whose head descriptor was written over, while real
 * producer and consumer processes push and pop: the stall must be said (SHMRPC_ECORRUPT, naming the
 * word) within seconds, `shmrpcctl queue repair` must make the queue move again, and no
 * acknowledged message may be lost or delivered twice beyond what docs/queue.md says (a
 * broken head descriptor loses the message it held, with SHMRPC_EPROTO). Every child is
 * bounded by alarm() and reaped, every queue unlinked, even when the test fails. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <shmrpc.h>

#include "kids.h"
#include "scribble.h"

#define PRODUCERS 2
#define CONSUMERS 2
#define CAPACITY 64
#define MAX_SEQ (1u << 21)
/* A message of 48 bytes: past what rides in a descriptor, so the byte positions move too. */
#define WORDS 12
#define CHILD_ALARM_S 60
#define OP_MS 20 /* each push and pop waits at most this long */
/* Generous bounds for a loaded 2-CPU machine: the checks run every 5 ms of a wait, and
 * at the end of every 20 ms operation. */
#define SAID_WITHIN_MS 5000
#define MOVES_WITHIN_MS 10000
#define REAP_MS 20000

/* Header offsets (docs/queue.md, "Segment layout"): the tail u64, the head u32, a single
 * consumer's cons u64; the
 * descriptors from 512, 64 bytes each, the state word first. */
#define TAIL_OFF 64
#define HEAD_OFF 128
#define CONS_OFF 144
#define FREED_OFF 192
#define DESC_OFF 512
#define DESC_SIZE 64

/* What the children tell the test. */
struct board {
    _Atomic int stop_producers, stop_consumers, hold_consumers;
    _Atomic int64_t first_corrupt_ms; /* when a push or pop first said ECORRUPT, 0 before */
    _Atomic uint64_t corrupt, eproto, bad, popped;
    _Atomic uint32_t acked[PRODUCERS];
    char corrupt_msg[256], bad_msg[256];
    _Atomic uint8_t seen[PRODUCERS][MAX_SEQ];
};

static struct board *bd;
static char qname[SHMRPC_QUEUE_NAME_MAX + 1];
static bool only_producer, only_consumer; /* open_roles: one role of the two, not both */

static int setup(void **state)
{
    (void)state;
    bd = mmap(NULL, sizeof *bd, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return bd == MAP_FAILED ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    test_kids_kill_all();
    shmrpc_queue_unlink(qname);
    munmap(bd, sizeof *bd);
    return 0;
}

static shmrpc_queue_opts opts(shmrpc_queue_mode mode)
{
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = mode;
    o.capacity = CAPACITY;
    o.arena_bytes = 8192;
    o.max_msg = 64;
    return o;
}

/* A status other than 0 and ETIMEDOUT: ECORRUPT and EPROTO counted, the rest bad. */
static void note(int rc, const char *what)
{
    if (rc == SHMRPC_ECORRUPT) {
        int64_t zero = 0;
        if (atomic_compare_exchange_strong(&bd->first_corrupt_ms, &zero, test_kid_now_ms()))
            snprintf(bd->corrupt_msg, sizeof bd->corrupt_msg, "%s: %s", what, shmrpc_errmsg());
        atomic_fetch_add(&bd->corrupt, 1);
        test_kid_nap_ms(1);
    } else if (rc == SHMRPC_EPROTO) {
        atomic_fetch_add(&bd->eproto, 1);
    } else if (rc != SHMRPC_ETIMEDOUT) {
        if (atomic_fetch_add(&bd->bad, 1) == 0)
            snprintf(bd->bad_msg, sizeof bd->bad_msg, "%s: %s: %s", what, shmrpc_status_name(rc),
                     shmrpc_errmsg());
    }
}

/* Pushes {producer, seq, ..., producer ^ seq} with seq from 0 on; a push that failed is tried again
 * with the same seq (nothing was queued), so acked is a prefix. Throttled to keep seq below
 * MAX_SEQ. */
static int produce(void *arg)
{
    uint32_t me = (uint32_t)(uintptr_t)arg;
    shmrpc_queue_opts o = opts(SHMRPC_QUEUE_CONNECT_TO_EXISTING);
    shmrpc_queue *q = NULL;
    if (shmrpc_queue_open(&q, qname, &o) != 0) return 2;
    uint32_t seq = 0;
    while (!atomic_load(&bd->stop_producers) && seq < MAX_SEQ) {
        uint32_t m[WORDS] = {me, seq};
        m[WORDS - 1] = me ^ seq;
        int rc = shmrpc_queue_push(q, m, sizeof m, OP_MS);
        if (rc == 0) {
            atomic_store(&bd->acked[me], ++seq);
            if (seq % 32 == 0) usleep(200);
        } else {
            note(rc, "push");
        }
    }
    shmrpc_queue_close(q);
    return 0;
}

/* Pops until told to stop and the queue is empty. */
static int consume(void *arg)
{
    (void)arg;
    shmrpc_queue_opts o = opts(SHMRPC_QUEUE_CONNECT_TO_EXISTING);
    shmrpc_queue *q = NULL;
    if (shmrpc_queue_open(&q, qname, &o) != 0) return 2;
    for (;;) {
        if (atomic_load(&bd->hold_consumers)) {
            test_kid_nap_ms(1);
            continue;
        }
        uint32_t m[WORDS];
        size_t len = 0;
        int rc = shmrpc_queue_pop(q, m, sizeof m, &len, OP_MS);
        if (rc == 0) {
            if (len != sizeof m || m[0] >= PRODUCERS || m[1] >= MAX_SEQ ||
                m[WORDS - 1] != (m[0] ^ m[1])) {
                note(SHMRPC_EINVAL, "pop: not a message of this test");
                continue;
            }
            atomic_fetch_add(&bd->seen[m[0]][m[1]], 1);
            atomic_fetch_add(&bd->popped, 1);
            continue;
        }
        note(rc, "pop");
        shmrpc_queue_stats st;
        if (rc == SHMRPC_ETIMEDOUT && atomic_load(&bd->stop_consumers) &&
            shmrpc_queue_get_stats(q, &st) == 0 && st.depth == 0)
            break;
    }
    shmrpc_queue_close(q);
    return 0;
}

/* Runs shmrpcctl queue repair NAME: its exit status, its output in out. */
static int ctl_repair(char *out, size_t cap)
{
    int po[2];
    assert_int_equal(pipe2(po, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(po[1], 2);
        alarm(10);
        execl(SHMRPCCTL, SHMRPCCTL, "queue", "repair", qname, (char *)NULL);
        _exit(127);
    }
    close(po[1]);
    size_t got = 0;
    for (ssize_t r; got + 1 < cap && (r = read(po[0], out + got, cap - 1 - got)) != 0;)
        if (r > 0)
            got += (size_t)r;
        else if (errno != EINTR)
            break;
    out[got] = '\0';
    close(po[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Waits, bounded, until popped reaches at least target: whether it did. */
static bool popped_reaches(uint64_t target, int ms)
{
    for (int64_t end = test_kid_now_ms() + ms; test_kid_now_ms() < end; test_kid_nap_ms(2))
        if (atomic_load(&bd->popped) >= target) return true;
    return atomic_load(&bd->popped) >= target;
}

static unsigned char *map_queue(size_t *size)
{
    char path[sizeof qname + 32];
    snprintf(path, sizeof path, "/dev/shm/shmrpc.queue.%s", qname);
    unsigned char *m = test_scribble_map(path, size);
    assert_non_null(m);
    return m;
}

/* Holds the consumers until at least depth messages are queued (bounded). */
static void hold_until_queued(uint64_t depth)
{
    atomic_store(&bd->hold_consumers, 1);
    shmrpc_queue_opts o = opts(SHMRPC_QUEUE_CONNECT_TO_EXISTING);
    shmrpc_queue *q = NULL;
    assert_int_equal(shmrpc_queue_open(&q, qname, &o), 0);
    shmrpc_queue_stats st = {0};
    for (int64_t end = test_kid_now_ms() + MOVES_WITHIN_MS;
         test_kid_now_ms() < end && (shmrpc_queue_get_stats(q, &st), st.depth < depth);)
        test_kid_nap_ms(2);
    shmrpc_queue_close(q);
    assert_true(st.depth >= depth);
}

static pid_t kids[PRODUCERS + CONSUMERS];

static void start(const char *what)
{
    memset(bd, 0, sizeof *bd);
    snprintf(qname, sizeof qname, "queue_repair.%d.%s", (int)getpid(), what);
    shmrpc_queue_opts o = opts(SHMRPC_QUEUE_CREATE_NEW_OVERWRITE);
    shmrpc_queue *q = NULL;
    assert_int_equal(shmrpc_queue_open(&q, qname, &o), 0);
    shmrpc_queue_close(q);
    for (int i = 0; i < CONSUMERS; i++)
        kids[i] = test_kid_spawn(consume, NULL, CHILD_ALARM_S);
    for (int i = 0; i < PRODUCERS; i++)
        kids[CONSUMERS + i] = test_kid_spawn(produce, (void *)(uintptr_t)i, CHILD_ALARM_S);
}

/* Stops the children (producers first, then consumers once the queue is empty) and checks
 * every acknowledged message was delivered once, but for at most `lost` of them. */
static void finish(uint64_t lost)
{
    atomic_store(&bd->stop_producers, 1);
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(test_kid_reap(kids[CONSUMERS + i], REAP_MS), 0);
    atomic_store(&bd->stop_consumers, 1);
    for (int i = 0; i < CONSUMERS; i++)
        assert_int_equal(test_kid_reap(kids[i], REAP_MS), 0);
    uint64_t missing = 0, twice = 0, unacked = 0, acked = 0;
    for (int p = 0; p < PRODUCERS; p++) {
        uint32_t a = atomic_load(&bd->acked[p]);
        acked += a;
        for (uint32_t s = 0; s < MAX_SEQ; s++) {
            uint8_t n = atomic_load(&bd->seen[p][s]);
            if (s < a && n == 0) missing++;
            if (n > 1) twice++;
            if (s >= a && n > 0) unacked++;
        }
    }
    printf("  %s: %llu acknowledged, %llu popped, %llu missing, %llu twice, %llu ECORRUPT, "
           "%llu EPROTO\n",
           qname, (unsigned long long)acked, (unsigned long long)atomic_load(&bd->popped),
           (unsigned long long)missing, (unsigned long long)twice,
           (unsigned long long)atomic_load(&bd->corrupt),
           (unsigned long long)atomic_load(&bd->eproto));
    if (atomic_load(&bd->bad)) fprintf(stderr, "  bad status: %s\n", bd->bad_msg);
    assert_int_equal(atomic_load(&bd->bad), 0);
    assert_int_equal(twice, 0);
    assert_int_equal(unacked, 0);
    assert_true(missing <= lost);
    assert_int_equal(shmrpc_queue_unlink(qname), 0);
}

/* The tail once it stays put for 50 ms (a full queue whose consumers are held: a pop that
 * was under way when they were told to hold may still move it once). Bounded. */
static uint64_t settled_tail(unsigned char *m)
{
    uint64_t tail = atomic_load((_Atomic uint64_t *)(m + TAIL_OFF)), was = ~tail;
    for (int64_t end = test_kid_now_ms() + MOVES_WITHIN_MS; tail != was;) {
        assert_true(test_kid_now_ms() < end);
        test_kid_nap_ms(50);
        was = tail;
        tail = atomic_load((_Atomic uint64_t *)(m + TAIL_OFF));
    }
    return tail;
}

/* The header word at off (4 or 8 bytes) written over with the value value_of gives from
 * the tail {message, byte} at that moment, while everyone runs, with queued messages in the
 * queue (at CAPACITY, the tail stands still: the value is taken from where it stays). Then
 * the stall is said, the repair makes the queue move again, and nothing is lost. */
static void scribble_word_at(const char *what, size_t off, size_t width,
                             uint64_t (*value_of)(uint64_t tail), uint64_t queued)
{
    start(what);
    assert_true(popped_reaches(2000, MOVES_WITHIN_MS)); /* well under way */
    hold_until_queued(queued);
    size_t size;
    unsigned char *m = map_queue(&size);
    uint64_t tail;
    if (queued == CAPACITY)
        tail = settled_tail(m);
    else
        memcpy(&tail, m + TAIL_OFF, sizeof tail);
    uint64_t v = value_of(tail);
    int64_t t0 = test_kid_now_ms();
    if (width == 4) {
        uint32_t v32 = (uint32_t)v;
        atomic_store((_Atomic uint32_t *)(m + off), v32);
    } else {
        atomic_store((_Atomic uint64_t *)(m + off), v);
    }
    atomic_store(&bd->hold_consumers, 0);
    int64_t said = 0;
    for (int64_t end = t0 + SAID_WITHIN_MS; !said && test_kid_now_ms() < end; test_kid_nap_ms(1))
        said = atomic_load(&bd->first_corrupt_ms);
    printf("  %s: ECORRUPT %lld ms after the write: %s\n", what,
           said ? (long long)(said - t0) : -1LL, bd->corrupt_msg);
    assert_true(said != 0);
    assert_non_null(strstr(bd->corrupt_msg, "corrupt"));
    assert_non_null(strstr(bd->corrupt_msg, off == HEAD_OFF    ? "head"
                                            : off == FREED_OFF ? "frontier"
                                                               : "tail"));
    char out[1024];
    int status = ctl_repair(out, sizeof out);
    printf("  %s: shmrpcctl queue repair: %s", what, out);
    assert_int_equal(status, 0);
    assert_non_null(strstr(out, "rebuilt"));
    uint64_t after = atomic_load(&bd->popped);
    assert_true(popped_reaches(after + 2000, MOVES_WITHIN_MS));
    munmap(m, size);
    finish(0);
}

static void scribble_word(const char *what, size_t off, size_t width,
                          uint64_t (*value_of)(uint64_t tail))
{
    scribble_word_at(what, off, width, value_of, CAPACITY / 2);
}

static uint64_t zeros(uint64_t tail)
{
    (void)tail;
    return 0;
}

static uint64_t ones(uint64_t tail)
{
    (void)tail;
    return UINT64_MAX;
}

/* The head past the tail. */
static uint64_t head_past(uint64_t tail)
{
    return (uint32_t)tail + 1000;
}

/* The head one message past the tail: a plausible number, but no message is there. */
static uint64_t head_next(uint64_t tail)
{
    return (uint32_t)tail + 1;
}

/* The tail far ahead of the frontier, its bytes kept. */
static uint64_t tail_past(uint64_t tail)
{
    return (tail & ~(uint64_t)UINT32_MAX) | (uint32_t)((uint32_t)tail + 1000);
}

/* The tail sent back behind messages already queued, or behind the frontier. */
static uint64_t tail_back(uint64_t tail)
{
    return (tail & ~(uint64_t)UINT32_MAX) | (uint32_t)((uint32_t)tail - 8);
}

static void head_zeros(void **state)
{
    (void)state;
    scribble_word("head0", HEAD_OFF, 4, zeros);
}

static void head_ones(void **state)
{
    (void)state;
    scribble_word("head1", HEAD_OFF, 4, ones);
}

static void head_past_tail(void **state)
{
    (void)state;
    scribble_word("headpast", HEAD_OFF, 4, head_past);
}

/* Just past the tail of a full queue, whose tail then stays: the consumers would wait for a
 * message that no producer will write, and the producers for room that no pop makes. */
static void head_just_past_tail(void **state)
{
    (void)state;
    scribble_word_at("headnext", HEAD_OFF, 4, head_next, CAPACITY);
}

static void tail_zeros(void **state)
{
    (void)state;
    scribble_word("tail0", TAIL_OFF, 8, zeros);
}

static void tail_ones(void **state)
{
    (void)state;
    scribble_word("tail1", TAIL_OFF, 8, ones);
}

static void tail_far_ahead(void **state)
{
    (void)state;
    scribble_word("tailpast", TAIL_OFF, 8, tail_past);
}

static void tail_sent_back(void **state)
{
    (void)state;
    scribble_word("tailback", TAIL_OFF, 8, tail_back);
}

static void frontier_zeros(void **state)
{
    (void)state;
    scribble_word("freed0", FREED_OFF, 8, zeros);
}

static void frontier_ones(void **state)
{
    (void)state;
    scribble_word("freed1", FREED_OFF, 8, ones);
}

/* The finding itself: the state word of the descriptor at the head of a full queue written
 * with zeros or all ones. Before, the consumers took it for empty and the producers for full,
 * forever. Now the first consumer to look skips it with EPROTO (its message is lost, and
 * counted) and the queue moves on with no repair. */
static void head_descriptor(uint64_t v, const char *what)
{
    start(what);
    assert_true(popped_reaches(2000, MOVES_WITHIN_MS));
    hold_until_queued(CAPACITY); /* full: the head's slot holds a message */
    size_t size;
    unsigned char *m = map_queue(&size);
    uint32_t head = atomic_load((_Atomic uint32_t *)(m + HEAD_OFF));
    atomic_store((_Atomic uint64_t *)(m + DESC_OFF + (head % CAPACITY) * DESC_SIZE), v);
    uint64_t before = atomic_load(&bd->popped);
    atomic_store(&bd->hold_consumers, 0);
    assert_true(popped_reaches(before + 2000, MOVES_WITHIN_MS));
    printf("  %s: message %u's slot written over: %llu EPROTO, moving again\n", what, head,
           (unsigned long long)atomic_load(&bd->eproto));
    assert_true(atomic_load(&bd->eproto) >= 1);
    assert_int_equal(atomic_load(&bd->corrupt), 0);
    munmap(m, size);
    finish(atomic_load(&bd->eproto));
}

static void head_descriptor_zeros(void **state)
{
    (void)state;
    head_descriptor(0, "desc0");
}

static void head_descriptor_ones(void **state)
{
    (void)state;
    head_descriptor(UINT64_MAX, "desc1");
}

/* Nothing out of place: the repair says so and changes nothing. */
static void repair_of_a_sound_queue(void **state)
{
    (void)state;
    snprintf(qname, sizeof qname, "queue_repair.%d.sound", (int)getpid());
    shmrpc_queue_opts o = opts(SHMRPC_QUEUE_CREATE_NEW_OVERWRITE);
    shmrpc_queue *q = NULL;
    assert_int_equal(shmrpc_queue_open(&q, qname, &o), 0);
    for (uint32_t i = 0; i < 100; i++) {
        assert_int_equal(shmrpc_queue_push(q, &i, sizeof i, 0), 0);
        if (i % 3 != 0) {
            uint32_t v;
            size_t len;
            assert_int_equal(shmrpc_queue_pop(q, &v, sizeof v, &len, 0), 0);
        }
    }
    shmrpc_queue_repair_info r;
    assert_int_equal(shmrpc_queue_repair(q, &r), 0);
    assert_int_equal(r.fixed, 0);
    assert_string_equal(r.what, "");
    char out[1024];
    assert_int_equal(ctl_repair(out, sizeof out), 0);
    assert_non_null(strstr(out, "nothing to repair"));
    shmrpc_queue_stats st;
    assert_int_equal(shmrpc_queue_get_stats(q, &st), 0);
    assert_int_equal(st.depth, 34);
    assert_int_equal(st.repairs, 0);
    shmrpc_queue_close(q);
    assert_int_equal(shmrpc_queue_unlink(qname), 0);
}

/* A queue with a single producer and a single consumer: their positions are the holders'
 * own, so a bad write to the shared copies matters to the next holder. The shared tail set
 * to zeros and the single consumer's head (cons) to all ones while nobody holds the roles:
 * the repair takes the roles, rebuilds both from the slots and the frontier, says so, and
 * the next holders go on from the right places: the 7 messages left come out once, in
 * order, and the queue works on. */
static void roles_rebuilt(void **state)
{
    (void)state;
    snprintf(qname, sizeof qname, "queue_repair.%d.roles", (int)getpid());
    shmrpc_queue_opts o = opts(SHMRPC_QUEUE_CREATE_NEW_OVERWRITE);
    o.capacity = 16;
    o.single_producer = o.single_consumer = true;
    shmrpc_queue *q = NULL;
    assert_int_equal(shmrpc_queue_open(&q, qname, &o), 0);
    uint32_t m[WORDS] = {0}, got[WORDS];
    size_t len;
    for (uint32_t i = 0; i < 10; i++) {
        m[1] = i;
        assert_int_equal(shmrpc_queue_push(q, m, sizeof m, 0), 0);
    }
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(shmrpc_queue_pop(q, got, sizeof got, &len, 0), 0);
        assert_int_equal(got[1], i);
    }
    shmrpc_queue_close(q); /* the roles are free */
    size_t size;
    unsigned char *seg = map_queue(&size);
    atomic_store((_Atomic uint64_t *)(seg + TAIL_OFF), 0);
    atomic_store((_Atomic uint64_t *)(seg + CONS_OFF), UINT64_MAX);
    o.mode = SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    assert_int_equal(shmrpc_queue_open(&q, qname, &o), 0);
    shmrpc_queue_repair_info r;
    assert_int_equal(shmrpc_queue_repair(q, &r), 0);
    printf("  roles: %s", r.what);
    assert_int_equal(r.fixed, 2);
    assert_non_null(strstr(r.what, "single producer's tail {message 0, byte 0} -> {10, 640}"));
    assert_non_null(strstr(r.what, "single consumer's head 4294967295 -> 3"));
    for (uint32_t i = 3; i < 10; i++) {
        assert_int_equal(shmrpc_queue_pop(q, got, sizeof got, &len, 0), 0);
        assert_int_equal(got[1], i);
    }
    assert_int_equal(shmrpc_queue_pop(q, got, sizeof got, &len, 0), SHMRPC_ETIMEDOUT);
    for (uint32_t i = 10; i < 50; i++) {
        m[1] = i;
        assert_int_equal(shmrpc_queue_push(q, m, sizeof m, 0), 0);
        assert_int_equal(shmrpc_queue_pop(q, got, sizeof got, &len, 0), 0);
        assert_int_equal(got[1], i);
    }
    munmap(seg, size);
    shmrpc_queue_close(q);
    assert_int_equal(shmrpc_queue_unlink(qname), 0);
}

/* A broadcast subscriber's cursor sent past the tail: its pops say ECORRUPT naming the
 * cursor, the repair sends it to the tail (what it had not read is not known: it goes on
 * at most once), and it gets what comes next; another subscriber is not disturbed. */
static void cursor_past_tail(void **state)
{
    (void)state;
    snprintf(qname, sizeof qname, "queue_repair.%d.cursor", (int)getpid());
    shmrpc_queue_opts o = opts(SHMRPC_QUEUE_CREATE_NEW_OVERWRITE);
    o.kind = SHMRPC_QUEUE_BROADCAST;
    o.subscribe = true;
    shmrpc_queue *a = NULL, *b = NULL;
    assert_int_equal(shmrpc_queue_open(&a, qname, &o), 0);
    o.mode = SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    assert_int_equal(shmrpc_queue_open(&b, qname, &o), 0);
    uint32_t v, got;
    size_t len;
    for (v = 0; v < 5; v++)
        assert_int_equal(shmrpc_queue_push(a, &v, sizeof v, 0), 0);
    for (uint32_t i = 0; i < 2; i++)
        assert_int_equal(shmrpc_queue_pop(a, &got, sizeof got, &len, 0), 0);
    size_t size;
    unsigned char *seg = map_queue(&size);
    /* a subscribed first: slot 0 of the table after the descriptors; its cursor at 8 */
    atomic_store((_Atomic uint32_t *)(seg + DESC_OFF + CAPACITY * DESC_SIZE + 8), 1005);
    assert_int_equal(shmrpc_queue_pop(a, &got, sizeof got, &len, 0), SHMRPC_ECORRUPT);
    assert_non_null(strstr(shmrpc_errmsg(), "subscriber's cursor is 1005"));
    for (uint32_t i = 0; i < 5; i++) { /* the other reads all five */
        assert_int_equal(shmrpc_queue_pop(b, &got, sizeof got, &len, 0), 0);
        assert_int_equal(got, i);
    }
    shmrpc_queue_repair_info r;
    assert_int_equal(shmrpc_queue_repair(b, &r), 0);
    assert_string_equal(r.what, "subscriber 0's cursor 1005 -> 5\n");
    v = 5;
    assert_int_equal(shmrpc_queue_push(b, &v, sizeof v, 0), 0);
    assert_int_equal(shmrpc_queue_pop(a, &got, sizeof got, &len, 0), 0);
    assert_int_equal(got, 5);
    assert_int_equal(shmrpc_queue_pop(b, &got, sizeof got, &len, 0), 0);
    assert_int_equal(got, 5);
    munmap(seg, size);
    shmrpc_queue_close(a);
    shmrpc_queue_close(b);
    assert_int_equal(shmrpc_queue_unlink(qname), 0);
}

/* A work queue of 16 with 10 messages of 48 bytes pushed (each takes a 64-byte line of
 * the arena) and 3 popped, and its segment mapped: the tail {10, 640}, the frontier
 * {3, 192}. */
static shmrpc_queue *ten_pushed(const char *what, unsigned char **seg, size_t *size)
{
    snprintf(qname, sizeof qname, "queue_repair.%d.%s", (int)getpid(), what);
    shmrpc_queue_opts o = opts(SHMRPC_QUEUE_CREATE_NEW_OVERWRITE);
    o.capacity = 16;
    shmrpc_queue *q = NULL;
    assert_int_equal(shmrpc_queue_open(&q, qname, &o), 0);
    uint32_t m[WORDS] = {0}, got[WORDS];
    size_t len;
    for (uint32_t i = 0; i < 10; i++) {
        m[1] = i;
        assert_int_equal(shmrpc_queue_push(q, m, sizeof m, 0), 0);
    }
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(shmrpc_queue_pop(q, got, sizeof got, &len, 0), 0);
        assert_int_equal(got[1], i);
    }
    *seg = map_queue(size);
    assert_int_equal(atomic_load((_Atomic uint64_t *)(*seg + TAIL_OFF)), (uint64_t)640 << 32 | 10);
    assert_int_equal(atomic_load((_Atomic uint64_t *)(*seg + FREED_OFF)), (uint64_t)192 << 32 | 3);
    return q;
}

/* The 7 messages left come out once, in order, and the queue works on. */
static void rest_in_order(shmrpc_queue *q)
{
    uint32_t m[WORDS] = {0}, got[WORDS];
    size_t len;
    for (uint32_t i = 3; i < 10; i++) {
        assert_int_equal(shmrpc_queue_pop(q, got, sizeof got, &len, 0), 0);
        assert_int_equal(len, sizeof got);
        assert_int_equal(got[1], i);
    }
    assert_int_equal(shmrpc_queue_pop(q, got, sizeof got, &len, 0), SHMRPC_ETIMEDOUT);
    for (uint32_t i = 10; i < 50; i++) {
        m[1] = i;
        assert_int_equal(shmrpc_queue_push(q, m, sizeof m, 0), 0);
        assert_int_equal(shmrpc_queue_pop(q, got, sizeof got, &len, 0), 0);
        assert_int_equal(got[1], i);
    }
    shmrpc_queue_stats st;
    assert_int_equal(shmrpc_queue_get_stats(q, &st), 0);
    assert_int_equal(st.depth, 0);
    assert_true(st.repairs >= 1);
}

/* The byte half of the tail, then of the frontier, written more than the arena away from
 * the other (their messages right): with the tail so, a push says SHMRPC_ECORRUPT (how far
 * apart they are, and the repair to run) and queues nothing (with the frontier so, a
 * producer whose copy of it says room does not look); the repair puts the bytes back where the
 * descriptors say, says so, and the messages come out whole and in order. */
static void byte_positions_rebuilt(void **state)
{
    (void)state;
    const char *words[] = {"tail", "frontier"};
    size_t offs[] = {TAIL_OFF, FREED_OFF};
    uint64_t wrong[] = {(uint64_t)(640 + 8192 + 64) << 32 | 10,
                        (uint64_t)(uint32_t)(192 - 8192 - 64) << 32 | 3};
    const char *says[] = {"tail {message 10, byte 8896} -> {10, 640}\n",
                          "frontier {message 3, byte 4294959232} -> {3, 192}\n"};
    for (int i = 0; i < 2; i++) {
        unsigned char *seg;
        size_t size;
        shmrpc_queue *q = ten_pushed(words[i], &seg, &size);
        atomic_store((_Atomic uint64_t *)(seg + offs[i]), wrong[i]);
        if (offs[i] == TAIL_OFF) { /* a push says so, and queues nothing */
            uint32_t m[WORDS] = {99, 99};
            assert_int_equal(shmrpc_queue_push(q, m, sizeof m, 0), SHMRPC_ECORRUPT);
            assert_non_null(
                strstr(shmrpc_errmsg(), "is 7 messages and 8704 bytes from its frontier"));
            assert_non_null(strstr(shmrpc_errmsg(), "`shmrpcctl queue repair"));
        }
        shmrpc_queue_repair_info r;
        assert_int_equal(shmrpc_queue_repair(q, &r), 0);
        printf("  %s bytes: %s", words[i], r.what);
        assert_int_equal(r.fixed, 1);
        assert_string_equal(r.what, says[i]);
        rest_in_order(q);
        munmap(seg, size);
        shmrpc_queue_close(q);
        assert_int_equal(shmrpc_queue_unlink(qname), 0);
    }
}

/* A broadcast subscriber's cursor sent far behind the frontier (more than the capacity):
 * the repair sends it to the tail (what it had not read is not known: at most once), and
 * it reads what comes next. */
static void cursor_far_behind(void **state)
{
    (void)state;
    snprintf(qname, sizeof qname, "queue_repair.%d.behind", (int)getpid());
    shmrpc_queue_opts o = opts(SHMRPC_QUEUE_CREATE_NEW_OVERWRITE);
    o.kind = SHMRPC_QUEUE_BROADCAST;
    o.subscribe = true;
    shmrpc_queue *a = NULL;
    assert_int_equal(shmrpc_queue_open(&a, qname, &o), 0);
    uint32_t v, got;
    size_t len;
    for (v = 0; v < 5; v++)
        assert_int_equal(shmrpc_queue_push(a, &v, sizeof v, 0), 0);
    for (uint32_t i = 0; i < 2; i++)
        assert_int_equal(shmrpc_queue_pop(a, &got, sizeof got, &len, 0), 0);
    size_t size;
    unsigned char *seg = map_queue(&size);
    atomic_store((_Atomic uint32_t *)(seg + DESC_OFF + CAPACITY * DESC_SIZE + 8),
                 (uint32_t)2 - 1000);
    shmrpc_queue_repair_info r;
    assert_int_equal(shmrpc_queue_repair(a, &r), 0);
    assert_string_equal(r.what, "subscriber 0's cursor 4294966298 -> 5\n");
    assert_int_equal(shmrpc_queue_pop(a, &got, sizeof got, &len, 0), SHMRPC_ETIMEDOUT);
    v = 5;
    assert_int_equal(shmrpc_queue_push(a, &v, sizeof v, 0), 0);
    assert_int_equal(shmrpc_queue_pop(a, &got, sizeof got, &len, 0), 0);
    assert_int_equal(got, 5);
    munmap(seg, size);
    shmrpc_queue_close(a);
    assert_int_equal(shmrpc_queue_unlink(qname), 0);
}

static shmrpc_queue *open_roles(shmrpc_queue_mode mode)
{
    shmrpc_queue_opts o = opts(mode);
    o.capacity = 16;
    o.single_producer = !only_consumer;
    o.single_consumer = !only_producer;
    shmrpc_queue *q = NULL;
    assert_int_equal(shmrpc_queue_open(&q, qname, &o), 0);
    return q;
}

/* A repair by the handle that holds both roles of a queue with a single producer and a
 * single consumer: nothing to rebuild, and it keeps the roles (another handle is still
 * refused them, naming this process). */
static void repair_by_the_holder(void **state)
{
    (void)state;
    snprintf(qname, sizeof qname, "queue_repair.%d.holder", (int)getpid());
    shmrpc_queue *q = open_roles(SHMRPC_QUEUE_CREATE_NEW_OVERWRITE);
    uint32_t v, got;
    size_t len;
    for (v = 0; v < 3; v++)
        assert_int_equal(shmrpc_queue_push(q, &v, sizeof v, 0), 0);
    assert_int_equal(shmrpc_queue_pop(q, &got, sizeof got, &len, 0), 0);
    assert_int_equal(got, 0);
    shmrpc_queue_repair_info r;
    assert_int_equal(shmrpc_queue_repair(q, &r), 0);
    assert_int_equal(r.fixed, 0);
    assert_string_equal(r.what, "");
    shmrpc_queue *other = open_roles(SHMRPC_QUEUE_CONNECT_TO_EXISTING);
    v = 9;
    assert_int_equal(shmrpc_queue_push(other, &v, sizeof v, 0), SHMRPC_EBUSY);
    assert_non_null(strstr(shmrpc_errmsg(), "through another handle"));
    assert_int_equal(shmrpc_queue_pop(other, &got, sizeof got, &len, 0), SHMRPC_EBUSY);
    shmrpc_queue_close(other);
    for (uint32_t i = 1; i < 3; i++) {
        assert_int_equal(shmrpc_queue_pop(q, &got, sizeof got, &len, 0), 0);
        assert_int_equal(got, i);
    }
    shmrpc_queue_close(q);
    assert_int_equal(shmrpc_queue_unlink(qname), 0);
}

/* Pushes 7 as the single producer, says so (acked[0]), and holds the role until told to
 * stop. */
static int hold_producer(void *arg)
{
    (void)arg;
    shmrpc_queue *q = open_roles(SHMRPC_QUEUE_CONNECT_TO_EXISTING);
    uint32_t v = 7;
    if (shmrpc_queue_push(q, &v, sizeof v, 0) != 0) return 2;
    atomic_store(&bd->acked[0], 1);
    while (!atomic_load(&bd->stop_producers))
        test_kid_nap_ms(1);
    shmrpc_queue_close(q);
    return 0;
}

/* A repair while another live process holds the single producer's role: refused with
 * SHMRPC_EBUSY naming that process, nothing changed (its message still there); once it
 * has closed, the repair takes and gives back the role, and the message is popped. */
static void repair_beside_a_live_holder(void **state)
{
    (void)state;
    memset(bd, 0, sizeof *bd);
    snprintf(qname, sizeof qname, "queue_repair.%d.live", (int)getpid());
    shmrpc_queue_close(open_roles(SHMRPC_QUEUE_CREATE_NEW_OVERWRITE));
    pid_t kid = test_kid_spawn(hold_producer, NULL, CHILD_ALARM_S);
    for (int64_t end = test_kid_now_ms() + MOVES_WITHIN_MS;
         !atomic_load(&bd->acked[0]) && test_kid_now_ms() < end;)
        test_kid_nap_ms(1);
    assert_int_equal(atomic_load(&bd->acked[0]), 1);
    shmrpc_queue *q = open_roles(SHMRPC_QUEUE_CONNECT_TO_EXISTING);
    shmrpc_queue_repair_info r;
    assert_int_equal(shmrpc_queue_repair(q, &r), SHMRPC_EBUSY);
    char says[96];
    snprintf(says, sizeof says, "process %d holds the role", (int)kid);
    assert_non_null(strstr(shmrpc_errmsg(), says));
    assert_int_equal(r.fixed, 0);
    atomic_store(&bd->stop_producers, 1);
    assert_int_equal(test_kid_reap(kid, REAP_MS), 0);
    assert_int_equal(shmrpc_queue_repair(q, &r), 0);
    assert_int_equal(r.fixed, 0);
    uint32_t got;
    size_t len;
    assert_int_equal(shmrpc_queue_pop(q, &got, sizeof got, &len, 0), 0);
    assert_int_equal(got, 7);
    uint32_t v = 8; /* the producer's role was given back after the repair: this takes it */
    assert_int_equal(shmrpc_queue_push(q, &v, sizeof v, 0), 0);
    assert_int_equal(shmrpc_queue_pop(q, &got, sizeof got, &len, 0), 0);
    assert_int_equal(got, 8);
    shmrpc_queue_close(q);
    assert_int_equal(shmrpc_queue_unlink(qname), 0);
}

struct word_case {
    const char *what;
    size_t off;
    uint64_t v;
    const char *says;
};

static void roles_words_rebuilt(const struct word_case *cases, size_t n);

/* The single consumer's head (cons) or frontier written, with nobody holding the roles,
 * where no step leads: behind the frontier, far past the tail, the frontier's message far
 * behind, its byte more than the arena from the tail's. The repair takes the consumer's
 * role, puts each back where the descriptors and the word left whole say (the head at the
 * frontier, the frontier's bytes at its first message's start), says exactly that, and
 * the 7 messages left come out once, in order. */
static void consumer_words_rebuilt(void **state)
{
    (void)state;
    struct word_case cases[] = {
        {"cons_behind", CONS_OFF, (uint64_t)3 << 32 | 1,
         "single consumer's head 1 -> 3, frontier {message 3, byte 192} -> {3, 192}\n"},
        {"cons_past", CONS_OFF, (uint64_t)3 << 32 | 103,
         "single consumer's head 103 -> 3, frontier {message 3, byte 192} -> {3, 192}\n"},
        {"freed_behind", FREED_OFF, (uint64_t)192 << 32 | (uint32_t)(3 - 100),
         "single consumer's head 3 -> 3, frontier {message 4294967199, byte 192} -> {3, 192}\n"},
        {"freed_bytes", FREED_OFF, (uint64_t)(uint32_t)(192 - 16384) << 32 | 3,
         "single consumer's head 3 -> 3, frontier {message 3, byte 4294951104} -> {3, 192}\n"},
    };
    roles_words_rebuilt(cases, sizeof cases / sizeof cases[0]);
}

/* The single producer's tail written out of the frontier's reach (its message far ahead or
 * far behind, its byte more than the arena away), with nobody holding the roles: the repair
 * takes the producer's role, rebuilds the tail from the descriptors, says exactly that, and
 * the messages left come out once, in order. */
static void producer_tail_rebuilt(void **state)
{
    (void)state;
    struct word_case cases[] = {
        {"tail_ahead", TAIL_OFF, (uint64_t)640 << 32 | 110,
         "single producer's tail {message 110, byte 640} -> {10, 640}\n"},
        {"tail_behind", TAIL_OFF, (uint64_t)640 << 32 | (uint32_t)(3 - 100),
         "single producer's tail {message 4294967199, byte 640} -> {10, 640}\n"},
        {"tail_bytes", TAIL_OFF, (uint64_t)(640 + 3 * 8192) << 32 | 10,
         "single producer's tail {message 10, byte 25216} -> {10, 640}\n"},
    };
    roles_words_rebuilt(cases, sizeof cases / sizeof cases[0]);
}

/* For each case: a queue with a single producer and a single consumer, 10 messages pushed
 * and 3 popped, the roles let go; the word written; a repair by a new handle says exactly
 * what it rebuilt, and the 7 messages left come out once, in order. */
static void roles_words_rebuilt(const struct word_case *cases, size_t n)
{
    for (size_t c = 0; c < n; c++) {
        snprintf(qname, sizeof qname, "queue_repair.%d.%s", (int)getpid(), cases[c].what);
        shmrpc_queue *q = open_roles(SHMRPC_QUEUE_CREATE_NEW_OVERWRITE);
        uint32_t m[WORDS] = {0}, got[WORDS];
        size_t len;
        for (uint32_t i = 0; i < 10; i++) {
            m[1] = i;
            assert_int_equal(shmrpc_queue_push(q, m, sizeof m, 0), 0);
        }
        for (uint32_t i = 0; i < 3; i++)
            assert_int_equal(shmrpc_queue_pop(q, got, sizeof got, &len, 0), 0);
        shmrpc_queue_close(q); /* the roles are free */
        size_t size;
        unsigned char *seg = map_queue(&size);
        if (!only_producer)
            assert_int_equal(atomic_load((_Atomic uint64_t *)(seg + CONS_OFF)),
                             (uint64_t)3 << 32 | 3);
        assert_int_equal(atomic_load((_Atomic uint64_t *)(seg + FREED_OFF)),
                         (uint64_t)192 << 32 | 3);
        atomic_store((_Atomic uint64_t *)(seg + cases[c].off), cases[c].v);
        q = open_roles(SHMRPC_QUEUE_CONNECT_TO_EXISTING);
        shmrpc_queue_repair_info r;
        assert_int_equal(shmrpc_queue_repair(q, &r), 0);
        printf("  %s: %s", cases[c].what, r.what);
        assert_string_equal(r.what, cases[c].says);
        rest_in_order(q);
        munmap(seg, size);
        shmrpc_queue_close(q);
        assert_int_equal(shmrpc_queue_unlink(qname), 0);
    }
}

/* A queue with one of the two roles: the shared words of the other side written where no
 * step leads (a single producer's queue: the frontier far behind, its byte far off; a
 * single consumer's: the tail far ahead, its byte far off), and those of the role (the
 * single producer's tail far ahead, its byte far behind; the single consumer's head past
 * the tail or behind the frontier, its frontier's byte ahead of the tail's, its message far
 * behind): the repair rebuilds them from
 * the descriptors, says exactly that, and the 7 messages left come out once, in order. */
static void one_role_rebuilt(void **state)
{
    (void)state;
    struct word_case sp[] = {
        {"sp_freed", FREED_OFF, (uint64_t)192 << 32 | (uint32_t)(3 - 100),
         "frontier {message 4294967199, byte 192} -> {3, 192}\n"},
        {"sp_freed_bytes", FREED_OFF, (uint64_t)(uint32_t)(192 - 16384) << 32 | 3,
         "frontier {message 3, byte 4294951104} -> {3, 192}\n"},
        {"sp_tail_ahead", TAIL_OFF, (uint64_t)640 << 32 | 110,
         "single producer's tail {message 110, byte 640} -> {10, 640}\n"},
        {"sp_tail_bytes_behind", TAIL_OFF, (uint64_t)(uint32_t)(640 - 3 * 8192) << 32 | 10,
         "single producer's tail {message 10, byte 4294943360} -> {10, 640}\n"},
    };
    struct word_case sc[] = {
        {"sc_tail", TAIL_OFF, (uint64_t)640 << 32 | 110,
         "tail {message 110, byte 640} -> {10, 640}\n"},
        {"sc_tail_bytes", TAIL_OFF, (uint64_t)(640 + 3 * 8192) << 32 | 10,
         "tail {message 10, byte 25216} -> {10, 640}\n"},
        {"sc_cons_past", CONS_OFF, (uint64_t)3 << 32 | 103,
         "single consumer's head 103 -> 3, frontier {message 3, byte 192} -> {3, 192}\n"},
        {"sc_cons_behind", CONS_OFF, (uint64_t)3 << 32 | 1,
         "single consumer's head 1 -> 3, frontier {message 3, byte 192} -> {3, 192}\n"},
        {"sc_freed_bytes_ahead", FREED_OFF, (uint64_t)(192 + 1024) << 32 | 3,
         "single consumer's head 3 -> 3, frontier {message 3, byte 1216} -> {3, 192}\n"},
        {"sc_freed_far_behind", FREED_OFF, (uint64_t)192 << 32 | (uint32_t)(3 - 100),
         "single consumer's head 3 -> 3, frontier {message 4294967199, byte 192} -> {3, 192}\n"},
    };
    only_producer = true;
    roles_words_rebuilt(sp, sizeof sp / sizeof sp[0]);
    only_producer = false;
    only_consumer = true;
    roles_words_rebuilt(sc, sizeof sc / sizeof sc[0]);
    only_consumer = false;
}

/* A work queue's shared words written, with nobody using the queue, where no step leads:
 * the tail behind messages queued (by two, and far), ahead of every claim; the frontier
 * ahead of a message not given back, and far behind; the head far behind the frontier,
 * past the tail, and past two messages nobody took. The repair puts each back where the
 * descriptors say, says exactly that in one line, and the 7 messages left come out once,
 * in order. */
static void work_words_rebuilt(void **state)
{
    (void)state;
    struct word_case cases[] = {
        {"tail_by_two", TAIL_OFF, (uint64_t)512 << 32 | 8,
         "tail {message 8, byte 512} -> {10, 640}\n"},
        {"tail_far_behind", TAIL_OFF, (uint64_t)640 << 32 | (uint32_t)(10 - 100),
         "tail {message 4294967206, byte 640} -> {10, 640}\n"},
        {"tail_ahead", TAIL_OFF, (uint64_t)768 << 32 | 12,
         "tail {message 12, byte 768} -> {10, 640}\n"},
        {"freed_ahead", FREED_OFF, (uint64_t)320 << 32 | 5,
         "frontier {message 5, byte 320} -> {3, 192}\n"},
        {"freed_far_behind", FREED_OFF, (uint64_t)192 << 32 | (uint32_t)(3 - 100),
         "frontier {message 4294967199, byte 192} -> {3, 192}\n"},
        {"head_far_behind", HEAD_OFF, (uint32_t)(3 - 100), "head 4294967199 -> 3\n"},
        {"head_past_tail", HEAD_OFF, 12, "head 12 -> 3\n"},
        {"head_past_two", HEAD_OFF, 5, "head 5 -> 3\n"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        unsigned char *seg;
        size_t size;
        shmrpc_queue *q = ten_pushed(cases[c].what, &seg, &size);
        if (cases[c].off == HEAD_OFF)
            atomic_store((_Atomic uint32_t *)(seg + HEAD_OFF), (uint32_t)cases[c].v);
        else
            atomic_store((_Atomic uint64_t *)(seg + cases[c].off), cases[c].v);
        shmrpc_queue_repair_info r;
        assert_int_equal(shmrpc_queue_repair(q, &r), 0);
        printf("  %s: %s", cases[c].what, r.what);
        assert_string_equal(r.what, cases[c].says);
        assert_int_equal(r.fixed, 1);
        rest_in_order(q);
        munmap(seg, size);
        shmrpc_queue_close(q);
        assert_int_equal(shmrpc_queue_unlink(qname), 0);
    }
}

/* Twenty subscribers' cursors of a broadcast queue all sent past the tail: one repair
 * rewrites them all and counts every one in fixed, though its text has room for the first
 * few lines only (each whole, the text cut between lines); then every subscriber gets what
 * comes next, once. */
static void many_cursors_repaired(void **state)
{
    (void)state;
    enum { N = 20 };
    snprintf(qname, sizeof qname, "queue_repair.%d.cursors", (int)getpid());
    shmrpc_queue_opts o = opts(SHMRPC_QUEUE_CREATE_NEW_OVERWRITE);
    o.kind = SHMRPC_QUEUE_BROADCAST;
    o.subscribe = true;
    shmrpc_queue *subs[N];
    for (int i = 0; i < N; i++) {
        assert_int_equal(shmrpc_queue_open(&subs[i], qname, &o), 0);
        o.mode = SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    }
    uint32_t v = 7, got;
    size_t len;
    assert_int_equal(shmrpc_queue_push(subs[0], &v, sizeof v, 0), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(shmrpc_queue_pop(subs[i], &got, sizeof got, &len, 0), 0);
        assert_int_equal(got, 7);
    }
    size_t size;
    unsigned char *seg = map_queue(&size);
    for (int i = 0; i < N; i++)
        atomic_store((_Atomic uint32_t *)(seg + DESC_OFF + CAPACITY * DESC_SIZE + 64 * i + 8),
                     1005);
    shmrpc_queue_repair_info r;
    assert_int_equal(shmrpc_queue_repair(subs[0], &r), 0);
    printf("  %u fixed: %s", r.fixed, r.what);
    assert_int_equal(r.fixed, N);
    /* Whole lines, subscriber 0's first and in order, as many as fit: the next did not. */
    size_t at = 0;
    int lines = 0;
    char line[64];
    for (; lines < N; lines++) {
        int n = snprintf(line, sizeof line, "subscriber %d's cursor 1005 -> 1\n", lines);
        if (strncmp(r.what + at, line, (size_t)n) != 0) break;
        at += (size_t)n;
    }
    assert_int_equal(r.what[at], '\0');
    assert_true(lines > 0 && lines < N);
    assert_true(at + strlen(line) >= sizeof r.what);
    v = 8;
    assert_int_equal(shmrpc_queue_push(subs[0], &v, sizeof v, 0), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(shmrpc_queue_pop(subs[i], &got, sizeof got, &len, 0), 0);
        assert_int_equal(got, 8);
        assert_int_equal(shmrpc_queue_pop(subs[i], &got, sizeof got, &len, 0), SHMRPC_ETIMEDOUT);
        shmrpc_queue_close(subs[i]);
    }
    munmap(seg, size);
    assert_int_equal(shmrpc_queue_unlink(qname), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(repair_of_a_sound_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(roles_rebuilt, setup, teardown),
        cmocka_unit_test_setup_teardown(cursor_past_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(byte_positions_rebuilt, setup, teardown),
        cmocka_unit_test_setup_teardown(cursor_far_behind, setup, teardown),
        cmocka_unit_test_setup_teardown(repair_by_the_holder, setup, teardown),
        cmocka_unit_test_setup_teardown(consumer_words_rebuilt, setup, teardown),
        cmocka_unit_test_setup_teardown(producer_tail_rebuilt, setup, teardown),
        cmocka_unit_test_setup_teardown(one_role_rebuilt, setup, teardown),
        cmocka_unit_test_setup_teardown(work_words_rebuilt, setup, teardown),
        cmocka_unit_test_setup_teardown(many_cursors_repaired, setup, teardown),
        cmocka_unit_test_setup_teardown(repair_beside_a_live_holder, setup, teardown),
        cmocka_unit_test_setup_teardown(head_descriptor_zeros, setup, teardown),
        cmocka_unit_test_setup_teardown(head_descriptor_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(head_zeros, setup, teardown),
        cmocka_unit_test_setup_teardown(head_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(head_past_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(head_just_past_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(tail_zeros, setup, teardown),
        cmocka_unit_test_setup_teardown(tail_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(tail_far_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(tail_sent_back, setup, teardown),
        cmocka_unit_test_setup_teardown(frontier_zeros, setup, teardown),
        cmocka_unit_test_setup_teardown(frontier_ones, setup, teardown),
    };
    /* QUEUE_TEST_ONLY=cursor_* (a glob) runs only the matching tests. */
    if (getenv("QUEUE_TEST_ONLY")) cmocka_set_test_filter(getenv("QUEUE_TEST_ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
