/* SPDX-License-Identifier: MIT */
/* Typed queues and shmrpcctl queue with real processes: a child pushes the typed values of
 * examples/pipeline/pipeline.svc through the generated functions (one by one and in a
 * batch) and this process pops them; shmrpcctl pushes JSON that generated code pops, prints as JSON
 * what generated code pushed, peeks without taking, moves bytes and base64 through an untyped
 * queue, and refuses bad input with a message and exit status 2. An open naming another type is
 * refused. The queues of tests/supervisor/encodings.svc do the same in each encoding (@msgpack,
 * @json, @raw) and with the typed batches. Every child is bounded; every queue is removed in
 * teardown. */
#define _GNU_SOURCE /* pipe2 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "encodings.h"
#include "pipeline.h"
#include "sup_helpers.h"

#define QUEUES "shmrpc.queue.pipeline."
#define ENC_QUEUES "shmrpc.queue.encodings."

typedef sup_run run;

/* shmrpcctl with the arguments (NULL-terminated) and stdin, 10 s at most. */
#define ctl(r, ...) sup_run_prog(r, SHMRPCCTL, __VA_ARGS__)

static int setup(void **state)
{
    (void)state;
    sup_remove_segments(QUEUES);
    sup_remove_segments(ENC_QUEUES);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sup_remove_segments(QUEUES);
    sup_remove_segments(ENC_QUEUES);
    return 0;
}

#define N_TYPED 1000

/* The child: waits for the queue "raw" to appear, as a pipeline stage does, and pushes
 * N_TYPED messages; exits 0 when all went. */
static int typed_producer(void)
{
    alarm(20);
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    o.attach_timeout_ms = 10000;
    shmrpc_queue *q;
    if (Pipeline_raw_open(&q, &o) != 0) return 1;
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    /* The first half one by one, the rest in a batch of runs of 64. */
    static char notes[N_TYPED][32];
    static pipeline_Msg ms[N_TYPED];
    for (uint64_t i = 0; i < N_TYPED; i++) {
        snprintf(notes[i], sizeof notes[i], "note %llu", (unsigned long long)i);
        ms[i] = (pipeline_Msg){
            .source = 3, .seq = i, .hops = (uint32_t)(i % 7), .note = shmrpc_str_c(notes[i])};
    }
    for (uint64_t i = 0; i < N_TYPED / 2; i++)
        if (Pipeline_raw_push(q, &buf, &ms[i], 10000) != 0) return 2;
    size_t done = 0;
    int rc =
        Pipeline_raw_push_batch(q, &buf, ms + N_TYPED / 2, N_TYPED - N_TYPED / 2, &done, 10000);
    if (rc != 0 || done != N_TYPED - N_TYPED / 2) return 3;
    shmrpc_buf_destroy(&buf);
    shmrpc_queue_close(q);
    return 0;
}

static void typed_values_between_processes(void **state)
{
    (void)state;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) _exit(typed_producer());
    sup_nap_ms(50); /* the child usually waits for the queue: its attach timeout at work */
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.capacity = 64; /* smaller than N_TYPED: the producer waits for room too */
    shmrpc_queue *q;
    int rc = Pipeline_raw_open(&q, &o);
    assert_int_equal(rc, 0);
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    shmrpc_arena *a = shmrpc_arena_new(1024);
    char note[32];
    for (uint64_t i = 0; i < N_TYPED; i++) {
        pipeline_Msg m;
        shmrpc_arena_reset(a);
        rc = Pipeline_raw_pop(q, &buf, a, &m, 10000);
        if (rc != 0)
            fail_msg("pop %llu: %s: %s", (unsigned long long)i, shmrpc_strerror(rc),
                     shmrpc_errmsg());
        snprintf(note, sizeof note, "note %llu", (unsigned long long)i);
        assert_int_equal(m.source, 3);
        assert_int_equal(m.seq, i);
        assert_int_equal(m.hops, i % 7);
        assert_int_equal(m.note.len, strlen(note));
        assert_memory_equal(m.note.ptr, note, m.note.len);
    }
    int st = sup_wait_exit(&child, 20000);
    if (st < 0) sup_kill_reap(&child);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* Nothing more: a try finds it empty. */
    pipeline_Msg m;
    assert_int_equal(Pipeline_raw_pop(q, &buf, a, &m, 0), SHMRPC_ETIMEDOUT);
    shmrpc_queue_info info;
    assert_int_equal(shmrpc_queue_get_info(q, &info), 0);
    assert_string_equal(info.type, Pipeline_raw_type);
    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&buf);
    shmrpc_queue_close(q);
}

static void another_type_is_refused(void **state)
{
    (void)state;
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.type = "middle()->i64 @msgpack";
    shmrpc_queue *q, *q2;
    assert_int_equal(shmrpc_queue_open(&q, PIPELINE_QUEUE_MIDDLE, &o), 0);
    assert_int_equal(Pipeline_middle_open(&q2, NULL), SHMRPC_EPROTO);
    assert_non_null(strstr(shmrpc_errmsg(), "middle()->i64 @msgpack"));
    shmrpc_queue_close(q);
    /* An untyped open takes any queue. */
    shmrpc_queue_opts_init(&o);
    assert_int_equal(shmrpc_queue_open(&q, PIPELINE_QUEUE_MIDDLE, &o), 0);
    shmrpc_queue_close(q);
    /* and an untyped queue is refused to a typed open */
    assert_int_equal(shmrpc_queue_unlink(PIPELINE_QUEUE_MIDDLE), 0);
    assert_int_equal(shmrpc_queue_open(&q, PIPELINE_QUEUE_MIDDLE, &o), 0);
    assert_int_equal(Pipeline_middle_open(&q2, NULL), SHMRPC_EPROTO);
    assert_non_null(strstr(shmrpc_errmsg(), "untyped"));
    shmrpc_queue_close(q);
}

static void ctl_json_on_a_typed_queue(void **state)
{
    (void)state;
    shmrpc_queue *q;
    assert_int_equal(Pipeline_done_open(&q, NULL), 0);
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    pipeline_Msg m = {.source = 1, .seq = 42, .hops = 2, .note = shmrpc_str_c("hi \"you\"")};
    assert_int_equal(Pipeline_done_push(q, &buf, &m, 0), 0);

    run r;
    ctl(&r, NULL, "queue", "stat", "pipeline.done", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "depth     1\n"));
    assert_non_null(strstr(r.out, "pushed    1\n"));
    assert_non_null(strstr(r.out, Pipeline_done_type));
    ctl(&r, NULL, "queue", "stat", "--json", "pipeline.done", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"depth\":1,\"pushed\":1,\"popped\":0"));

    const char *json = "{\"source\":1,\"seq\":42,\"hops\":2,\"note\":\"hi \\\"you\\\"\"}\n";
    ctl(&r, NULL, "queue", "peek", "pipeline.done", NULL); /* a look: it stays */
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, json);
    ctl(&r, NULL, "queue", "pop", "pipeline.done", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, json);
    ctl(&r, NULL, "queue", "pop", "pipeline.done", NULL); /* now empty */
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "empty"));

    /* JSON in, typed values out: by argument and by stdin, an object or in field order. */
    ctl(&r, NULL, "queue", "push", "pipeline.done",
        "{\"source\":5,\"seq\":7,\"hops\":0,\"note\":\"a\"}", NULL);
    assert_int_equal(r.status, 0);
    ctl(&r, "{\"source\":5,\"seq\":8,\"hops\":1,\"note\":\"b\"}", "queue", "push", "pipeline.done",
        "-", NULL);
    assert_int_equal(r.status, 0);
    shmrpc_arena *a = shmrpc_arena_new(1024);
    for (uint64_t seq = 7; seq <= 8; seq++) {
        assert_int_equal(Pipeline_done_pop(q, &buf, a, &m, 1000), 0);
        assert_int_equal(m.source, 5);
        assert_int_equal(m.seq, seq);
        assert_int_equal(m.note.len, 1);
    }

    /* Bad input: status 2, a message naming the place, nothing queued. */
    ctl(&r, NULL, "queue", "push", "pipeline.done", "{\"source\":\"x\"}", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "value.source"));
    ctl(&r, NULL, "queue", "push", "pipeline.done", "{not json", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "bad JSON"));
    shmrpc_queue_stats st;
    assert_int_equal(shmrpc_queue_get_stats(q, &st), 0);
    assert_int_equal(st.depth, 0);

    ctl(&r, NULL, "queue", "stat", "pipeline.nothing", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "no such"));
    ctl(&r, NULL, "queue", "frob", "pipeline.done", NULL);
    assert_int_equal(r.status, 2);
    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&buf);
    shmrpc_queue_close(q);
}

static void ctl_bytes_on_an_untyped_queue(void **state)
{
    (void)state;
    shmrpc_queue *q;
    assert_int_equal(shmrpc_queue_open(&q, "pipeline.bytes", NULL), 0);
    run r;
    ctl(&r, "hello\nworld", "queue", "push", "pipeline.bytes", NULL);
    assert_int_equal(r.status, 0);
    ctl(&r, NULL, "queue", "push", "--base64", "pipeline.bytes", "AAEC/w==", NULL);
    assert_int_equal(r.status, 0);
    ctl(&r, NULL, "queue", "peek", "--base64", "pipeline.bytes", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "aGVsbG8Kd29ybGQ=\n");
    ctl(&r, NULL, "queue", "pop", "pipeline.bytes", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "hello\nworld");
    char got[16];
    size_t len;
    assert_int_equal(shmrpc_queue_pop(q, got, sizeof got, &len, 0), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(got, "\x00\x01\x02\xff", 4);
    ctl(&r, NULL, "queue", "push", "--base64", "pipeline.bytes", "AAE", NULL);
    assert_int_equal(r.status, 2);
    ctl(&r, NULL, "queue", "stat", "pipeline.bytes", NULL);
    assert_non_null(strstr(r.out, "(untyped)"));
    /* A pop that waits, and times out: counted. */
    ctl(&r, NULL, "queue", "pop", "--timeout", "20", "pipeline.bytes", NULL);
    assert_int_equal(r.status, 1);
    shmrpc_queue_stats st;
    assert_int_equal(shmrpc_queue_get_stats(q, &st), 0);
    assert_int_equal(st.timeouts, 1);
    /* Options each subcommand does not take, and bad values: 2 and one line that says so,
     * nothing taken; --help: 0 and the usage on stdout. */
#define TIMEOUT_RULE "--timeout takes milliseconds (0: try once, -1: forever)"
#define NOT_HERE(opt) "option '" opt "' does not go with this command"
    static const struct {
        const char *args[4];
        const char *why;
    } bad[] = {
        {{"pop", "--timeout", "x", "pipeline.bytes"}, TIMEOUT_RULE},
        {{"pop", "--timeout", "-2", "pipeline.bytes"}, TIMEOUT_RULE},
        {{"push", "--timeout", "5x", "pipeline.bytes"}, TIMEOUT_RULE},
        {{"stat", "--bytes", "pipeline.bytes", NULL}, NOT_HERE("--bytes")},
        {{"repair", "--base64", "pipeline.bytes", NULL}, NOT_HERE("--base64")},
        {{"peek", "--timeout", "5", "pipeline.bytes"}, NOT_HERE("--timeout")},
        {{"pop", "--frobnicate", "pipeline.bytes", NULL}, "unrecognized option '--frobnicate'"},
    };
    assert_int_equal(shmrpc_queue_push(q, "kept", 4, 0), 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *const *a = bad[i].args;
        ctl(&r, NULL, "queue", a[0], a[1], a[2], a[3], NULL);
        char want[300];
        snprintf(want, sizeof want, "shmrpcctl: queue %s: %s (see 'shmrpcctl queue %s --help')\n",
                 a[0], bad[i].why, a[0]);
        if (r.status != 2 || r.out[0] || strcmp(r.err, want) != 0)
            fail_msg("queue %s %s %s: %d '%s' '%s'", a[0], a[1], a[2], r.status, r.out, r.err);
    }
    ctl(&r, NULL, "queue", "pop", "--help", NULL);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "usage: shmrpcctl queue stat", 27) == 0);
    ctl(&r, NULL, "queue", "peek", "--bytes", "pipeline.bytes", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "kept");
    ctl(&r, NULL, "queue", "pop", "--timeout", "-1", "pipeline.bytes", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "kept"); /* nothing else was taken */
    shmrpc_queue_close(q);
}

/* Queues shmrpcctl did not see made: stat names each kind and escapes a type's quotes in
 * JSON ("" when untyped); a type that does not parse stops push and pop with status 1 and
 * that one line (as bytes they go on); a stored message that is not of the queue's type
 * pops with status 1 and the codec's message; a push to a full queue and a peek at an empty
 * one fail with 1 and the library's status; the usage for what no subcommand takes. */
static void ctl_queue_kinds_types_and_misuse(void **state)
{
    (void)state;
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.kind = SHMRPC_QUEUE_BROADCAST;
    shmrpc_queue *bc, *drop, *odd, *small;
    assert_int_equal(shmrpc_queue_open(&bc, "pipeline.ctl_broadcast", &o), 0);
    o.slow = SHMRPC_QUEUE_SLOW_DROP;
    assert_int_equal(shmrpc_queue_open(&drop, "pipeline.ctl_drop", &o), 0);
    shmrpc_queue_opts_init(&o);
    o.type = "a\"b\\c";
    assert_int_equal(shmrpc_queue_open(&odd, "pipeline.ctl_odd_type", &o), 0);
    shmrpc_queue_opts_init(&o);
    o.capacity = 2;
    assert_int_equal(shmrpc_queue_open(&small, "pipeline.ctl_small", &o), 0);
    run r;
    ctl(&r, NULL, "queue", "stat", "pipeline.ctl_broadcast", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\nkind      broadcast\n"));
    ctl(&r, NULL, "queue", "stat", "pipeline.ctl_drop", NULL);
    assert_non_null(strstr(r.out, "\nkind      broadcast-drop\n"));
    ctl(&r, NULL, "queue", "stat", "--json", "pipeline.ctl_small", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"kind\":\"work\",\"capacity\":2,"));
    assert_non_null(strstr(r.out, ",\"type\":\"\","));
    ctl(&r, NULL, "queue", "stat", "--json", "pipeline.ctl_odd_type", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, ",\"type\":\"a\\\"b\\\\c\","));

    static const char type_msg[] = "shmrpcctl: queue type of pipeline.ctl_odd_type: ";
    ctl(&r, NULL, "queue", "push", "pipeline.ctl_odd_type", "1", NULL);
    assert_int_equal(r.status, 1);
    assert_true(strncmp(r.err, type_msg, strlen(type_msg)) == 0);
    assert_ptr_equal(strchr(r.err, '\n'), r.err + strlen(r.err) - 1);
    shmrpc_queue_stats st;
    assert_int_equal(shmrpc_queue_get_stats(odd, &st), 0);
    assert_int_equal(st.pushed, 0);
    assert_int_equal(shmrpc_queue_push(odd, "x", 1, 0), 0);
    ctl(&r, NULL, "queue", "peek", "pipeline.ctl_odd_type", NULL);
    assert_int_equal(r.status, 1);
    assert_true(strncmp(r.err, type_msg, strlen(type_msg)) == 0);
    assert_string_equal(r.out, "");
    ctl(&r, NULL, "queue", "pop", "--bytes", "pipeline.ctl_odd_type", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "x");

    /* pipeline.done is typed (pipeline.svc's Msg); 0xc1 is no msgpack at all. */
    shmrpc_queue *done;
    assert_int_equal(Pipeline_done_open(&done, NULL), 0);
    assert_int_equal(shmrpc_queue_push(done, "\xc1", 1, 0), 0);
    ctl(&r, NULL, "queue", "pop", "pipeline.done", NULL);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    assert_true(strncmp(r.err, "shmrpcctl: queue pop pipeline.done: ", 36) == 0);
    assert_true(strlen(r.err) > 37);
    assert_int_equal(shmrpc_queue_get_stats(done, &st), 0);
    assert_int_equal(st.depth, 0); /* taken, though it could not be shown */
    shmrpc_queue_close(done);

    ctl(&r, NULL, "queue", "peek", "pipeline.ctl_small", NULL);
    assert_int_equal(r.status, 1);
    assert_true(strncmp(r.err, "shmrpcctl: queue peek pipeline.ctl_small: ", 42) == 0);
    for (int i = 0; i < 2; i++) {
        ctl(&r, NULL, "queue", "push", "pipeline.ctl_small", "m", NULL);
        assert_int_equal(r.status, 0);
    }
    ctl(&r, NULL, "queue", "push", "pipeline.ctl_small", "m", NULL);
    assert_int_equal(r.status, 1);
    assert_true(strncmp(r.err, "shmrpcctl: queue push pipeline.ctl_small: ", 42) == 0);
    assert_int_equal(shmrpc_queue_get_stats(small, &st), 0);
    assert_int_equal(st.depth, 2);
    assert_int_equal(st.pushed, 2);

    ctl(&r, NULL, "queue", "-h", NULL);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "usage: shmrpcctl queue stat", 27) == 0);
    /* An option a subcommand does not take, or a bad value: one line; a count of
     * arguments it does not take: the usage. 2 either way. */
    static const struct {
        const char *args[5];
        const char *why; /* NULL: the usage */
    } bad[] = {
        {{NULL}, NULL},
        {{"pop", "--json", "pipeline.ctl_small", NULL}, NOT_HERE("--json")},
        {{"repair", "--bytes", "pipeline.ctl_small", NULL}, NOT_HERE("--bytes")},
        {{"stat", "--base64", "pipeline.ctl_small", NULL}, NOT_HERE("--base64")},
        {{"pop", "--timeout", "", "pipeline.ctl_small", NULL}, TIMEOUT_RULE},
        {{"pop", "pipeline.ctl_small", "x", NULL}, NULL},
        {{"push", "pipeline.ctl_small", "x", "y", NULL}, NULL},
        {{"stat", NULL}, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *const *a = bad[i].args;
        ctl(&r, NULL, "queue", a[0], a[1], a[2], a[3], a[4], NULL);
        char want[300];
        snprintf(want, sizeof want, "shmrpcctl: queue %s: %s (see 'shmrpcctl queue %s --help')\n",
                 a[0] ? a[0] : "", bad[i].why ? bad[i].why : "", a[0] ? a[0] : "");
        bool said = bad[i].why ? strcmp(r.err, want) == 0
                               : strncmp(r.err, "usage: shmrpcctl queue stat", 27) == 0;
        if (r.status != 2 || r.out[0] || !said)
            fail_msg("queue %s %s: %d '%s' '%s'", a[0] ? a[0] : "", a[1] ? a[1] : "", r.status,
                     r.out, r.err);
    }
    assert_int_equal(shmrpc_queue_get_stats(small, &st), 0);
    assert_int_equal(st.depth, 2);
    shmrpc_queue_close(bc);
    shmrpc_queue_close(drop);
    shmrpc_queue_close(odd);
    shmrpc_queue_close(small);
}

/* ---- encodings.svc: the typed batches, @json and @raw ---- */

#define N_ITEMS 1000

static const int32_t item_xs[3] = {-1, 0, 7};

static encodings_Item item(uint32_t id, char *text, size_t cap)
{
    snprintf(text, cap, "item %u", id);
    encodings_Item it = {.id = id,
                         .text = shmrpc_str_c(text),
                         .level = id % 2 ? encodings_Level_high : encodings_Level_low,
                         .xs = {item_xs, id % 4},
                         .blob = shmrpc_bytes_of("\x00\x01\x02", id % 3),
                         .weight = {id % 5 != 0, id / 4.0}};
    return it;
}

static void assert_item(const encodings_Item *it, uint32_t id)
{
    char text[32];
    encodings_Item want = item(id, text, sizeof text);
    assert_int_equal(it->id, id);
    assert_int_equal(it->text.len, want.text.len);
    assert_memory_equal(it->text.ptr, text, want.text.len);
    assert_int_equal(it->level, want.level);
    assert_int_equal(it->xs.len, want.xs.len);
    if (want.xs.len) assert_memory_equal(it->xs.items, item_xs, want.xs.len * sizeof *item_xs);
    assert_int_equal(it->blob.len, want.blob.len);
    if (want.blob.len) assert_memory_equal(it->blob.ptr, want.blob.ptr, want.blob.len);
    assert_int_equal(it->weight.has, want.weight.has);
    if (want.weight.has) assert_true(it->weight.value == want.weight.value);
}

/* The child: pushes N_ITEMS to the queue "items" with push_batch in batches of 100 (runs of
 * 64 and the rest), waiting for the queue to appear; 0 when all went. */
static int items_producer(void)
{
    alarm(20);
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    o.attach_timeout_ms = 10000;
    shmrpc_queue *q;
    if (Encodings_items_open(&q, &o) != 0) return 1;
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    static char texts[N_ITEMS][32];
    static encodings_Item items[N_ITEMS];
    for (uint32_t i = 0; i < N_ITEMS; i++)
        items[i] = item(i, texts[i], sizeof texts[i]);
    for (size_t i = 0; i < N_ITEMS; i += 100) {
        size_t done = 0;
        if (Encodings_items_push_batch(q, &buf, items + i, 100, &done, 10000) != 0 || done != 100)
            return 2;
    }
    shmrpc_buf_destroy(&buf);
    shmrpc_queue_close(q);
    return 0;
}

/* The typed pop_batch takes what another process's typed push_batch queued, in order, in
 * batches of up to n; a message that does not decode is dropped with its status while the
 * others in the batch are delivered; a message longer than a batch's small slots waits for
 * the next batch, where it comes first. */
static void typed_batches_between_processes(void **state)
{
    (void)state;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) _exit(items_producer());
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.capacity = 128; /* the producer waits for room too */
    shmrpc_queue *q;
    assert_int_equal(Encodings_items_open(&q, &o), 0);
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    shmrpc_arena *a = shmrpc_arena_new(4096);
    encodings_Item outs[50];
    uint32_t next = 0;
    size_t batches = 0, most = 0;
    while (next < N_ITEMS) {
        size_t done = 0;
        shmrpc_arena_reset(a);
        int rc = Encodings_items_pop_batch(q, &buf, a, outs, 50, &done, 10000);
        if (rc != 0)
            fail_msg("pop_batch at %u: %s: %s", next, shmrpc_strerror(rc), shmrpc_errmsg());
        assert_true(done >= 1 && done <= 50);
        for (size_t i = 0; i < done; i++)
            assert_item(&outs[i], next++);
        batches++;
        most = done > most ? done : most;
    }
    int st = sup_wait_exit(&child, 20000);
    if (st < 0) sup_kill_reap(&child);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    print_message("%d items in %zu batches, at most %zu in one\n", N_ITEMS, batches, most);
    size_t done = 9;
    assert_int_equal(Encodings_items_pop_batch(q, &buf, a, outs, 50, &done, 0), SHMRPC_ETIMEDOUT);
    assert_int_equal(done, 0);

    /* A message that is no Item between two that are. */
    char t0[32], t1[32];
    encodings_Item in[2] = {item(5, t0, sizeof t0), item(6, t1, sizeof t1)};
    assert_int_equal(Encodings_items_push(q, &buf, &in[0], 0), 0);
    assert_int_equal(shmrpc_queue_push(q, "\xc1", 1, 0), 0);
    assert_int_equal(Encodings_items_push(q, &buf, &in[1], 0), 0);
    shmrpc_arena_reset(a);
    assert_int_equal(Encodings_items_pop_batch(q, &buf, a, outs, 50, &done, 0), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "Encodings.items"));
    assert_int_equal(done, 2);
    assert_item(&outs[0], 5);
    assert_item(&outs[1], 6);

    /* A 20 KiB message after a small one: it ends the batch and begins the next. */
    static uint8_t big[20000];
    memset(big, 0xab, sizeof big);
    char t2[32];
    encodings_Item large = item(7, t2, sizeof t2);
    large.blob = shmrpc_bytes_of(big, sizeof big);
    assert_int_equal(Encodings_items_push(q, &buf, &in[0], 0), 0);
    assert_int_equal(Encodings_items_push(q, &buf, &large, 0), 0);
    assert_int_equal(Encodings_items_push(q, &buf, &in[1], 0), 0);
    shmrpc_arena_reset(a);
    assert_int_equal(Encodings_items_pop_batch(q, &buf, a, outs, 50, &done, 0), 0);
    assert_int_equal(done, 1);
    assert_item(&outs[0], 5);
    assert_int_equal(Encodings_items_pop_batch(q, &buf, a, outs, 50, &done, 0), 0);
    assert_int_equal(done, 2);
    assert_int_equal(outs[0].id, 7);
    assert_int_equal(outs[0].blob.len, sizeof big);
    assert_memory_equal(outs[0].blob.ptr, big, sizeof big);
    assert_item(&outs[1], 6);
    assert_int_equal(Encodings_items_pop_batch(q, &buf, a, outs, 0, &done, 0), SHMRPC_EINVAL);

    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&buf);
    shmrpc_queue_close(q);
}

/* What the message of an untyped look at the queue holds, NUL-terminated. */
static size_t look(const char *name, char *out, size_t cap)
{
    shmrpc_queue *q;
    assert_int_equal(shmrpc_queue_open(&q, name, NULL), 0);
    size_t len = 0;
    assert_int_equal(shmrpc_queue_look(q, out, cap - 1, &len), 0);
    out[len] = '\0';
    shmrpc_queue_close(q);
    return len;
}

/* A @json queue holds JSON text, which shmrpcctl prints and pushes by the stored type, and
 * the generated functions read and write, one at a time and in batches. */
static void json_queue_with_ctl(void **state)
{
    (void)state;
    shmrpc_queue *q, *qc;
    assert_int_equal(Encodings_notes_open(&q, NULL), 0);
    assert_int_equal(Encodings_counts_open(&qc, NULL), 0);
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    shmrpc_arena *a = shmrpc_arena_new(4096);
    char t[32], text[256];
    encodings_Item it = item(3, t, sizeof t);
    assert_int_equal(Encodings_notes_push(q, &buf, &it, 0), 0);
    const char *json = "{\"id\":3,\"text\":\"item 3\",\"level\":\"high\",\"xs\":[-1,0,7],"
                       "\"blob\":\"\",\"weight\":0.75}";
    look(ENCODINGS_QUEUE_NOTES, text, sizeof text); /* JSON text in the queue */
    assert_string_equal(text, json);
    run r;
    ctl(&r, NULL, "queue", "stat", "encodings.notes", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, Encodings_notes_type));
    ctl(&r, NULL, "queue", "pop", "encodings.notes", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "{\"id\":3,\"text\":\"item 3\",\"level\":\"high\",\"xs\":[-1,0,7],"
                               "\"blob\":\"\",\"weight\":0.75}\n");

    /* shmrpcctl's JSON in, typed values out (an absent optional is null). */
    ctl(&r, NULL, "queue", "push", "encodings.notes",
        "{\"id\":9,\"text\":\"from ctl\",\"level\":\"low\",\"xs\":[4],\"blob\":\"AAE=\"}", NULL);
    assert_int_equal(r.status, 0);
    ctl(&r, NULL, "queue", "push", "encodings.notes",
        "{\"id\":10,\"text\":\"\",\"level\":\"high\",\"xs\":[],\"blob\":\"\",\"weight\":2}", NULL);
    assert_int_equal(r.status, 0);
    ctl(&r, NULL, "queue", "push", "encodings.notes", "{\"id\":\"x\"}", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "value.id"));
    encodings_Item outs[4];
    size_t done = 0;
    assert_int_equal(Encodings_notes_pop(q, &buf, a, &outs[0], 1000), 0);
    assert_int_equal(outs[0].id, 9);
    assert_int_equal(outs[0].text.len, 8);
    assert_memory_equal(outs[0].text.ptr, "from ctl", 8);
    assert_int_equal(outs[0].level, encodings_Level_low);
    assert_int_equal(outs[0].xs.len, 1);
    assert_int_equal(outs[0].xs.items[0], 4);
    assert_int_equal(outs[0].blob.len, 2);
    assert_memory_equal(outs[0].blob.ptr, "\x00\x01", 2);
    assert_false(outs[0].weight.has);
    assert_int_equal(Encodings_notes_pop_batch(q, &buf, a, outs, 4, &done, 1000), 0);
    assert_int_equal(done, 1);
    assert_int_equal(outs[0].id, 10);
    assert_true(outs[0].weight.has && outs[0].weight.value == 2.0);

    /* Batches both ways, and JSON that is not an Item dropped with a message. */
    char ts[3][32];
    encodings_Item three[3] = {item(1, ts[0], 32), item(2, ts[1], 32), item(4, ts[2], 32)};
    assert_int_equal(Encodings_notes_push_batch(q, &buf, three, 2, &done, 0), 0);
    assert_int_equal(done, 2);
    ctl(&r, NULL, "queue", "push", "encodings.counts", "12", NULL); /* JSON text, not an Item */
    assert_int_equal(r.status, 0);
    shmrpc_queue *raw;
    assert_int_equal(shmrpc_queue_open(&raw, ENCODINGS_QUEUE_NOTES, NULL), 0);
    assert_int_equal(shmrpc_queue_push(raw, "12", 2, 0), 0);
    assert_int_equal(shmrpc_queue_push(raw, "{nope", 5, 0), 0);
    shmrpc_queue_close(raw);
    assert_int_equal(Encodings_notes_push(q, &buf, &three[2], 0), 0);
    assert_int_equal(Encodings_notes_pop_batch(q, &buf, a, outs, 4, &done, 0), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "Encodings.notes"));
    assert_int_equal(done, 2);
    assert_item(&outs[0], 1);
    assert_item(&outs[1], 2);
    assert_int_equal(Encodings_notes_pop(q, &buf, a, &outs[0], 0), 0);
    assert_item(&outs[0], 4);

    /* A JSON scalar: shmrpcctl's 12 above, and ours. */
    uint64_t n = 0;
    /* past INT64_MAX a u64 has no JSON form here, as for @json methods: refused, not queued */
    assert_int_equal(Encodings_counts_push(qc, &buf, UINT64_MAX, 0), SHMRPC_EINVAL);
    assert_non_null(strstr(shmrpc_errmsg(), "Encodings.counts: cannot encode"));
    assert_int_equal(Encodings_counts_push(qc, &buf, INT64_MAX, 0), 0);
    assert_int_equal(Encodings_counts_pop(qc, &buf, a, &n, 0), 0);
    assert_int_equal(n, 12);
    ctl(&r, NULL, "queue", "pop", "encodings.counts", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "9223372036854775807\n");

    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&buf);
    shmrpc_queue_close(qc);
    shmrpc_queue_close(q);
}

/* A @raw queue holds the bytes as they are: shmrpcctl prints them as a JSON string (base64
 * when they are not UTF-8) and pushes either form; empty messages pass too. */
static void raw_queue_with_ctl(void **state)
{
    (void)state;
    shmrpc_queue *q;
    assert_int_equal(Encodings_blobs_open(&q, NULL), 0);
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    shmrpc_bytes bin = shmrpc_bytes_of("\x00\x01hi\xff", 5);
    assert_int_equal(Encodings_blobs_push(q, &buf, bin, 0), 0);
    char got[64];
    assert_int_equal(look(ENCODINGS_QUEUE_BLOBS, got, sizeof got), 5);
    assert_memory_equal(got, "\x00\x01hi\xff", 5);
    run r;
    ctl(&r, NULL, "queue", "pop", "encodings.blobs", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "{\"base64\":\"AAFoaf8=\"}\n");

    ctl(&r, NULL, "queue", "push", "encodings.blobs", "\"text\"", NULL);
    assert_int_equal(r.status, 0);
    ctl(&r, NULL, "queue", "push", "encodings.blobs", "{\"base64\":\"AAE=\"}", NULL);
    assert_int_equal(r.status, 0);
    ctl(&r, NULL, "queue", "push", "encodings.blobs", "12", NULL);
    assert_int_equal(r.status, 2);
    shmrpc_bytes b;
    assert_int_equal(Encodings_blobs_pop(q, &buf, NULL, &b, 1000), 0);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.ptr, "text", 4);
    assert_int_equal(Encodings_blobs_pop(q, &buf, NULL, &b, 0), 0);
    assert_int_equal(b.len, 2);
    assert_memory_equal(b.ptr, "\x00\x01", 2);

    shmrpc_bytes many[3] = {shmrpc_bytes_of("one", 3), shmrpc_bytes_of(NULL, 0),
                            shmrpc_bytes_of("three", 5)};
    size_t done = 0;
    assert_int_equal(Encodings_blobs_push_batch(q, &buf, many, 3, &done, 0), 0);
    assert_int_equal(done, 3);
    ctl(&r, NULL, "queue", "pop", "encodings.blobs", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "\"one\"\n");
    shmrpc_bytes outs[4];
    assert_int_equal(Encodings_blobs_pop_batch(q, &buf, NULL, outs, 4, &done, 0), 0);
    assert_int_equal(done, 2);
    assert_int_equal(outs[0].len, 0);
    assert_int_equal(outs[1].len, 5);
    assert_memory_equal(outs[1].ptr, "three", 5);
    shmrpc_buf_destroy(&buf);
    shmrpc_queue_close(q);
}

/* The type names the encoding: a queue of the same name and type in another encoding is
 * refused with SHMRPC_EPROTO, naming both. */
static void another_encoding_is_refused(void **state)
{
    (void)state;
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.type = "notes()->struct Item{u32 id;string text;enum Level{low=0,high=5} level;list<i32> "
             "xs;bytes blob;f64? weight;} @msgpack";
    shmrpc_queue *q, *q2;
    assert_int_equal(shmrpc_queue_open(&q, ENCODINGS_QUEUE_NOTES, &o), 0);
    assert_int_equal(Encodings_notes_open(&q2, NULL), SHMRPC_EPROTO);
    assert_non_null(strstr(shmrpc_errmsg(), "@msgpack"));
    assert_non_null(strstr(shmrpc_errmsg(), "@json"));
    shmrpc_queue_close(q);
    o.type = "blobs()->bytes @msgpack";
    assert_int_equal(shmrpc_queue_open(&q, ENCODINGS_QUEUE_BLOBS, &o), 0);
    assert_int_equal(Encodings_blobs_open(&q2, NULL), SHMRPC_EPROTO);
    assert_non_null(strstr(shmrpc_errmsg(), "@raw"));
    shmrpc_queue_close(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(typed_values_between_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(another_type_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(ctl_json_on_a_typed_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(ctl_bytes_on_an_untyped_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(ctl_queue_kinds_types_and_misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(typed_batches_between_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(json_queue_with_ctl, setup, teardown),
        cmocka_unit_test_setup_teardown(raw_queue_with_ctl, setup, teardown),
        cmocka_unit_test_setup_teardown(another_encoding_is_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
