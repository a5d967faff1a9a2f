/* SPDX-License-Identifier: MIT */
/* Queues under failing system calls (common/faults.h): each public operation run with its
 * 1st, 2nd, ... call of malloc, mmap, shm_open, ftruncate... failing, each in its own
 * child. A failure returns the status of the call that failed (SHMRPC_ENOMEM, or
 * SHMRPC_ESYS with its errno) and a message, loses no message and delivers none twice,
 * leaves no descriptor open and no segment behind (an open that failed to create a queue
 * left no name: the next exclusive create succeeds), and the same operation succeeds once
 * nothing fails. Leaks are LeakSanitizer's (the ASan build) at each child's exit. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <shmrpc.h>

#include "faults.h"
#include "queue/queue_seg.h"

#define RUNS_MAX 500 /* far more calls than any operation makes */
#define TYPE "[i32]"

/* Every queue of this program holds token in its name (the sweep counts what is left). */
static char token[32];

struct qcase {
    char name[96];
    shmrpc_queue_opts o;    /* of run's open */
    shmrpc_queue *q;        /* the handle run uses, or opens */
    shmrpc_queue *other;    /* a second handle setup keeps (a broadcast's producer) */
    shmrpc_queue_span span; /* reserve and peek */
    char got[64];           /* what run popped */
    size_t got_len;
};

static void opts(shmrpc_queue_opts *o, shmrpc_queue_mode mode)
{
    shmrpc_queue_opts_init(o);
    o->mode = mode;
    o->capacity = 8;
    o->arena_bytes = 4096;
    o->max_msg = 256;
    o->type = TYPE;
}

/* Opens the case's queue as run does, in another mode (a broadcast's producer: with
 * subscribe false). */
static int open_as(struct qcase *c, shmrpc_queue **q, shmrpc_queue_mode mode, bool subscribe)
{
    shmrpc_queue_opts o;
    opts(&o, mode);
    o.kind = c->o.kind;
    o.subscribe = subscribe;
    int rc = shmrpc_queue_open(q, c->name, &o);
    if (rc != 0) faults_say("open of %s (mode %d): %s", c->name, (int)mode, shmrpc_errmsg());
    return rc;
}

static int open_mode(struct qcase *c, shmrpc_queue **q, shmrpc_queue_mode mode)
{
    return open_as(c, q, mode, c->o.subscribe);
}

/* The next message is want (NULL: there is none). */
static int next_is(shmrpc_queue *q, const char *want)
{
    char buf[64];
    size_t len = 0;
    int rc = shmrpc_queue_pop(q, buf, sizeof buf, &len, 0);
    if (!want) return rc == SHMRPC_ETIMEDOUT ? 0 : faults_say("pop: status %d, want none", rc);
    if (rc != 0) return faults_say("pop: status %d, want '%s'", rc, want);
    if (len != strlen(want) || memcmp(buf, want, len) != 0)
        return faults_say("pop: '%.*s', want '%s'", (int)len, buf, want);
    return 0;
}

/* q works: a message goes in and comes out, and the queue's type is the one made. */
static int works(shmrpc_queue *q)
{
    shmrpc_queue_info info;
    if (shmrpc_queue_get_info(q, &info) != 0 || strcmp(info.type, TYPE) != 0)
        return faults_say("info: the type is not " TYPE);
    if (shmrpc_queue_push(q, "works", 5, 0) != 0) return faults_say("push: %s", shmrpc_errmsg());
    return next_is(q, "works");
}

/* Closes what the case holds and removes its queue. */
static int done(struct qcase *c, int failed)
{
    shmrpc_queue_close(c->q);
    shmrpc_queue_close(c->other);
    c->q = c->other = NULL;
    shmrpc_queue_unlink(c->name);
    return failed;
}

/* --- opening --------------------------------------------------------------------------- */

static int run_open(void *arg)
{
    struct qcase *c = arg;
    return shmrpc_queue_open(&c->q, c->name, &c->o);
}

/* An open that made no queue left no name: an exclusive create succeeds after it. */
static int check_create(void *arg, int rc)
{
    struct qcase *c = arg;
    if (rc == 0) return done(c, c->q ? works(c->q) : faults_say("status 0 and no handle"));
    if (c->q) return done(c, faults_say("status %d and a handle", rc));
    if (!faults_status(rc)) return done(c, 1);
    if (open_mode(c, &c->q, SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE) != 0) return done(c, 1);
    return done(c, works(c->q));
}

/* A queue with two messages, for the opens of an existing one. */
static int setup_two(void *arg)
{
    struct qcase *c = arg;
    shmrpc_queue *q;
    if (open_mode(c, &q, SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE) != 0) return 1;
    int rc = shmrpc_queue_push(q, "one", 3, 0) | shmrpc_queue_push(q, "two", 3, 0);
    shmrpc_queue_close(q);
    return rc;
}

/* Opening an existing queue failed or not, its messages are there, once. */
static int check_attach(void *arg, int rc)
{
    struct qcase *c = arg;
    if (rc != 0) {
        if (c->q) return done(c, faults_say("status %d and a handle", rc));
        if (!faults_status(rc)) return done(c, 1);
        if (open_mode(c, &c->q, SHMRPC_QUEUE_CONNECT_TO_EXISTING) != 0) return done(c, 1);
    }
    if (next_is(c->q, "one") || next_is(c->q, "two") || next_is(c->q, NULL)) return done(c, 1);
    return done(c, works(c->q));
}

/* Overwriting: a failure may leave the old queue or none, never one half-made; a success
 * leaves a new, empty one. */
static int check_overwrite(void *arg, int rc)
{
    struct qcase *c = arg;
    if (rc == 0) {
        if (next_is(c->q, NULL)) return done(c, 1);
        return done(c, works(c->q));
    }
    if (c->q) return done(c, faults_say("status %d and a handle", rc));
    if (!faults_status(rc)) return done(c, 1);
    if (open_mode(c, &c->q, SHMRPC_QUEUE_CONNECT_OR_CREATE) != 0) return done(c, 1);
    shmrpc_queue_stats st;
    if (shmrpc_queue_get_stats(c->q, &st) != 0) return done(c, faults_say("stats"));
    if (st.depth != 0 && (next_is(c->q, "one") || next_is(c->q, "two")))
        return done(c, faults_say("neither the old queue nor none"));
    return done(c, next_is(c->q, NULL) || works(c->q));
}

/* A broadcast queue and its producer, for a subscriber's open. */
static int setup_broadcast(void *arg)
{
    struct qcase *c = arg;
    return open_as(c, &c->other, SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE, false);
}

/* A subscriber's open that failed took no subscription (a message pushed then reaches the
 * subscriber opened after it, and the producer is not held up by a phantom one). */
static int check_subscribe(void *arg, int rc)
{
    struct qcase *c = arg;
    if (rc != 0) {
        if (c->q) return done(c, faults_say("status %d and a handle", rc));
        if (!faults_status(rc)) return done(c, 1);
        if (open_mode(c, &c->q, SHMRPC_QUEUE_CONNECT_TO_EXISTING) != 0) return done(c, 1);
    }
    shmrpc_queue_stats st;
    if (shmrpc_queue_push(c->other, "all", 3, 0) != 0)
        return done(c, faults_say("push to subscribers"));
    if (next_is(c->q, "all") || next_is(c->q, NULL)) return done(c, 1);
    /* With the only subscriber up to date, the queue holds nothing: a phantom subscriber
     * would keep the message. */
    if (shmrpc_queue_get_stats(c->other, &st) != 0 || st.depth != 0)
        return done(c, faults_say("depth %llu after the only subscriber read",
                                  (unsigned long long)st.depth));
    return done(c, 0);
}

static void sweep(const char *what, int (*setup)(void *), int (*run)(void *),
                  int (*check)(void *, int), shmrpc_queue_mode mode, bool bcast, int min_fired)
{
    struct qcase c = {0};
    snprintf(c.name, sizeof c.name, "%s%s", token, what);
    opts(&c.o, mode);
    if (bcast) {
        c.o.kind = SHMRPC_QUEUE_BROADCAST;
        c.o.subscribe = true;
    }
    faults_case fc = {
        .name = what, .setup = setup, .run = run, .check = check, .arg = &c, .token = token};
    int fired = faults_sweep(&fc, RUNS_MAX);
    print_message("# %s: %d faults\n", what, fired);
    shmrpc_queue_unlink(c.name);
    assert_true(fired >= min_fired);
}

static void open_creates(void **state)
{
    (void)state;
    sweep("open-creates", NULL, run_open, check_create, SHMRPC_QUEUE_CONNECT_OR_CREATE, false, 4);
}

static void open_exclusive(void **state)
{
    (void)state;
    sweep("open-exclusive", NULL, run_open, check_create, SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE, false,
          4);
}

static void open_broadcast_creates(void **state)
{
    (void)state;
    sweep("open-bcast", NULL, run_open, check_create, SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE, true, 4);
}

static void open_attaches(void **state)
{
    (void)state;
    sweep("open-attaches", setup_two, run_open, check_attach, SHMRPC_QUEUE_CONNECT_TO_EXISTING,
          false, 3);
}

static void open_or_create_attaches(void **state)
{
    (void)state;
    sweep("open-or-create-attaches", setup_two, run_open, check_attach,
          SHMRPC_QUEUE_CONNECT_OR_CREATE, false, 3);
}

static void open_overwrites(void **state)
{
    (void)state;
    sweep("open-overwrites", setup_two, run_open, check_overwrite,
          SHMRPC_QUEUE_CREATE_NEW_OVERWRITE, false, 4);
}

static void open_subscribes(void **state)
{
    (void)state;
    sweep("open-subscribes", setup_broadcast, run_open, check_subscribe,
          SHMRPC_QUEUE_CONNECT_TO_EXISTING, true, 3);
}

/* --- operations on an open queue ------------------------------------------------------ */

/* The queue open, holding "one". */
static int setup_one(void *arg)
{
    struct qcase *c = arg;
    if (open_mode(c, &c->q, SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE) != 0) return 1;
    return shmrpc_queue_push(c->q, "one", 3, 0);
}

static int run_push(void *arg)
{
    struct qcase *c = arg;
    return shmrpc_queue_push(c->q, "new", 3, 0);
}

/* A push that failed queued nothing; one that succeeded queued its message once. */
static int check_push(void *arg, int rc)
{
    struct qcase *c = arg;
    if (rc != 0 && !faults_status(rc)) return done(c, 1);
    if (next_is(c->q, "one") || next_is(c->q, rc == 0 ? "new" : NULL) || next_is(c->q, NULL))
        return done(c, 1);
    return done(c, works(c->q));
}

static int run_pop(void *arg)
{
    struct qcase *c = arg;
    return shmrpc_queue_pop(c->q, c->got, sizeof c->got, &c->got_len, 0);
}

/* A pop that failed took nothing; one that succeeded took the message, once. */
static int check_pop(void *arg, int rc)
{
    struct qcase *c = arg;
    if (rc == 0 && (c->got_len != 3 || memcmp(c->got, "one", 3) != 0))
        return done(c, faults_say("popped '%.*s'", (int)c->got_len, c->got));
    if (rc != 0 && !faults_status(rc)) return done(c, 1);
    if (next_is(c->q, rc == 0 ? NULL : "one") || next_is(c->q, NULL)) return done(c, 1);
    return done(c, works(c->q));
}

static int run_batches(void *arg)
{
    struct qcase *c = arg;
    shmrpc_queue_msg in[2] = {{.data = "b1", .len = 2}, {.data = "b2", .len = 2}};
    size_t n = 0;
    int rc = shmrpc_queue_push_batch(c->q, in, 2, &n, 0);
    if (rc != 0) return rc;
    char a[8], b[8], d[8];
    shmrpc_queue_msg out[3] = {{.data = a, .cap = 8}, {.data = b, .cap = 8}, {.data = d, .cap = 8}};
    rc = shmrpc_queue_pop_batch(c->q, out, 3, &n, 0);
    if (rc == 0 && (n != 3 || memcmp(a, "one", 3) || memcmp(b, "b1", 2) || memcmp(d, "b2", 2))) {
        faults_say("pop_batch: %zu messages, not one, b1, b2", n);
        return SHMRPC_EPROTO;
    }
    return rc;
}

static int check_batches(void *arg, int rc)
{
    struct qcase *c = arg;
    if (rc != 0 && !faults_status(rc)) return done(c, 1);
    if (next_is(c->q, NULL)) return done(c, 1);
    return done(c, works(c->q));
}

static int run_spans(void *arg)
{
    struct qcase *c = arg;
    int rc = shmrpc_queue_reserve(c->q, 40, &c->span, 0);
    if (rc != 0) return rc;
    memset(c->span.data, 's', 40);
    if ((rc = shmrpc_queue_commit(c->q, &c->span)) != 0) return rc;
    if ((rc = shmrpc_queue_peek(c->q, &c->span, 0)) != 0) return rc;
    if (c->span.len != 3 || memcmp(c->span.data, "one", 3) != 0) {
        faults_say("peek: not 'one'");
        return SHMRPC_EPROTO;
    }
    return shmrpc_queue_release(c->q, &c->span);
}

static int check_spans(void *arg, int rc)
{
    struct qcase *c = arg;
    if (rc != 0 && !faults_status(rc)) return done(c, 1);
    char want[41];
    memset(want, 's', 40);
    want[40] = '\0';
    char buf[64];
    size_t len = 0;
    if (shmrpc_queue_pop(c->q, buf, sizeof buf, &len, 0) != 0 || len != 40 ||
        memcmp(buf, want, 40) != 0)
        return done(c, faults_say("the committed span is not next"));
    return done(c, next_is(c->q, NULL) || works(c->q));
}

static int run_repair(void *arg)
{
    struct qcase *c = arg;
    shmrpc_queue_repair_info info;
    int rc = shmrpc_queue_repair(c->q, &info);
    if (rc == 0 && info.fixed != 0) {
        faults_say("repair of a sound queue: %s", info.what);
        return SHMRPC_EPROTO;
    }
    return rc;
}

static int check_repair(void *arg, int rc)
{
    struct qcase *c = arg;
    if (rc != 0 && !faults_status(rc)) return done(c, 1);
    return done(c, next_is(c->q, "one") || works(c->q));
}

/* A queue of one producer and one consumer, whose producer pushed "one" and died holding
 * the role; this handle's push then takes it over from the dead. */
static int setup_dead_producer(void *arg)
{
    struct qcase *c = arg;
    shmrpc_queue_opts o;
    opts(&o, SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE);
    o.single_producer = o.single_consumer = true;
    if (shmrpc_queue_open(&c->q, c->name, &o) != 0) return faults_say("open: %s", shmrpc_errmsg());
    pid_t pid = fork();
    if (pid < 0) return faults_say("fork");
    if (pid == 0) _exit(shmrpc_queue_push(c->q, "one", 3, 0) == 0 ? 0 : 1);
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return faults_say("the producer did not push");
    return 0;
}

/* Taken over, or, when the holder's death could not be read, not taken at all
 * (SHMRPC_EBUSY, with the fault): then taken once it can be. Nothing is lost or doubled. */
static int check_take_over(void *arg, int rc)
{
    struct qcase *c = arg;
    if (rc == SHMRPC_EBUSY) {
        if (!faults_hit()) return done(c, faults_say("EBUSY, and no fault"));
        rc = run_push(c);
    }
    if (rc != 0) return done(c, faults_say("push: status %d: %s", rc, shmrpc_errmsg()));
    return done(c, next_is(c->q, "one") || next_is(c->q, "new") || next_is(c->q, NULL));
}

static void operations(void **state)
{
    (void)state;
    shmrpc_queue_mode m = SHMRPC_QUEUE_CONNECT_OR_CREATE;
    sweep("push", setup_one, run_push, check_push, m, false, 0);
    sweep("pop", setup_one, run_pop, check_pop, m, false, 0);
    sweep("batches", setup_one, run_batches, check_batches, m, false, 0);
    sweep("spans", setup_one, run_spans, check_spans, m, false, 0);
    sweep("repair", setup_one, run_repair, check_repair, m, false, 0);
    sweep("producer-take-over", setup_dead_producer, run_push, check_take_over, m, false, 1);
}

/* A copy of a queue's segment in memory this test owns, as the fuzz target for segment
 * validation drives it (runtime/src/queue/queue_seg.h): the copy of a work queue holding "one"
 * and "two". Each refusal has its reason; a handle over it pops the two messages, once and
 * in order, and goes on; its allocation failing is SHMRPC_ENOMEM; only a broadcast
 * segment's handle subscribes, once. */
/* What segment_in_memory holds, released by its teardown also when an assertion fails:
 * the queue made to copy (and its segment), the file read, the copy and the handle over it. */
static struct {
    shmrpc_queue *made, *wrapped;
    FILE *file;
    unsigned char *seg;
} mem;

static void mem_name(char *out, size_t cap, bool bcast)
{
    snprintf(out, cap, "%smem%d", token, (int)bcast);
}

static unsigned char *segment_copy(bool bcast, size_t *size)
{
    char name[96];
    mem_name(name, sizeof name, bcast);
    shmrpc_queue_opts o;
    opts(&o, SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE);
    o.kind = bcast ? SHMRPC_QUEUE_BROADCAST : SHMRPC_QUEUE_WORK;
    assert_int_equal(shmrpc_queue_open(&mem.made, name, &o), 0);
    if (!bcast) {
        assert_int_equal(shmrpc_queue_push(mem.made, "one", 3, 0), 0);
        assert_int_equal(shmrpc_queue_push(mem.made, "two", 3, 0), 0);
    }
    char path[160];
    snprintf(path, sizeof path, "/dev/shm/shmrpc.queue.%s", name);
    mem.file = fopen(path, "rb");
    assert_non_null(mem.file);
    assert_int_equal(fseek(mem.file, 0, SEEK_END), 0);
    *size = (size_t)ftell(mem.file);
    rewind(mem.file);
    mem.seg = aligned_alloc(4096, (*size + 4095) / 4096 * 4096);
    assert_non_null(mem.seg);
    assert_int_equal(fread(mem.seg, 1, *size, mem.file), *size);
    fclose(mem.file);
    mem.file = NULL;
    shmrpc_queue_close(mem.made);
    mem.made = NULL;
    assert_int_equal(shmrpc_queue_unlink(name), 0);
    return mem.seg;
}

static int segment_in_memory_teardown(void **state)
{
    (void)state;
    faults_disarm();
    if (mem.wrapped) shmrpc_queue_close(mem.wrapped);
    if (mem.made) shmrpc_queue_close(mem.made);
    if (mem.file) fclose(mem.file);
    free(mem.seg);
    memset(&mem, 0, sizeof mem);
    for (int bcast = 0; bcast < 2; bcast++) {
        char name[96];
        mem_name(name, sizeof name, bcast);
        shmrpc_queue_unlink(name);
    }
    return 0;
}

static void segment_in_memory(void **state)
{
    (void)state;
    size_t size;
    unsigned char *seg = segment_copy(false, &size);
    char why[256] = "";
    assert_int_equal(shmrpc__queue_validate(seg, 100, why, sizeof why), SHMRPC_EPROTO);
    assert_string_equal(why, "not a queue segment (size 100)");
    assert_int_equal(shmrpc__queue_validate(seg, size, why, sizeof why), 0);
    assert_int_equal(shmrpc__queue_wrap(seg, 100, &mem.wrapped), SHMRPC_EPROTO);
    assert_null(mem.wrapped);
    uint32_t cap, six = 6;
    memcpy(&cap, seg + 16, 4);
    memcpy(seg + 16, &six, 4);
    assert_int_equal(shmrpc__queue_wrap(seg, size, &mem.wrapped), SHMRPC_EPROTO);
    assert_non_null(strstr(shmrpc_errmsg(), "its header does not add up (capacity:"));
    memcpy(seg + 16, &cap, 4);
    faults_arm(1, "calloc");
    assert_int_equal(shmrpc__queue_wrap(seg, size, &mem.wrapped), SHMRPC_ENOMEM);
    assert_true(faults_hit());
    faults_disarm();
    assert_null(mem.wrapped);
    assert_int_equal(shmrpc__queue_wrap(seg, size, &mem.wrapped), 0);
    assert_int_equal(shmrpc__queue_subscribe(mem.wrapped), SHMRPC_EINVAL); /* a work queue */
    char buf[8];
    size_t len;
    const char *want[] = {"one", "two"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(shmrpc_queue_pop(mem.wrapped, buf, sizeof buf, &len, 0), 0);
        assert_int_equal(len, 3);
        assert_memory_equal(buf, want[i], 3);
    }
    assert_int_equal(shmrpc_queue_pop(mem.wrapped, buf, sizeof buf, &len, 0), SHMRPC_ETIMEDOUT);
    for (int i = 0; i < 20; i++) { /* past the ring's end */
        assert_int_equal(shmrpc_queue_push(mem.wrapped, &i, sizeof i, 0), 0);
        int got;
        assert_int_equal(shmrpc_queue_pop(mem.wrapped, &got, sizeof got, &len, 0), 0);
        assert_int_equal(got, i);
    }
    shmrpc_queue_close(mem.wrapped);
    mem.wrapped = NULL;
    free(seg);
    mem.seg = NULL;

    seg = segment_copy(true, &size);
    assert_int_equal(shmrpc__queue_wrap(seg, size, &mem.wrapped), 0);
    assert_int_equal(shmrpc__queue_subscribe(mem.wrapped), 0);
    assert_int_equal(shmrpc__queue_subscribe(mem.wrapped), SHMRPC_EINVAL); /* once */
    assert_int_equal(shmrpc_queue_push(mem.wrapped, "all", 3, 0), 0);
    assert_int_equal(shmrpc_queue_pop(mem.wrapped, buf, sizeof buf, &len, 0), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "all", 3);
    shmrpc_queue_close(mem.wrapped);
    mem.wrapped = NULL;
    free(seg);
    mem.seg = NULL;
}

int main(void)
{
    snprintf(token, sizeof token, "qflt.%d.", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_creates),
        cmocka_unit_test(open_exclusive),
        cmocka_unit_test(open_broadcast_creates),
        cmocka_unit_test(open_attaches),
        cmocka_unit_test(open_or_create_attaches),
        cmocka_unit_test(open_overwrites),
        cmocka_unit_test(open_subscribes),
        cmocka_unit_test(operations),
        cmocka_unit_test_teardown(segment_in_memory, segment_in_memory_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
