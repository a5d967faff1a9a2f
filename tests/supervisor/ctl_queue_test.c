/* Typed queues and shmrpcctl queue with real processes: a child pushes the typed values of
 * examples/pipeline/pipeline.svc through the generated functions (one by one and in a
 * batch) and this process pops them; shmrpcctl pushes JSON that generated code pops, prints as JSON
 * what generated code pushed, peeks without taking, moves bytes and base64 through an untyped
 * queue, and refuses bad input with a message and exit status 2. An open naming another type is
 * refused. Every child is bounded; every queue is removed in teardown. */
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

#include "pipeline.h"
#include "sup_helpers.h"

#define QUEUES "shmrpc.queue.pipeline."

typedef struct run {
    int status; /* exit status, or -1 when killed */
    char out[8192];
    char err[8192];
} run;

/* Runs shmrpcctl with the arguments (NULL-terminated) and stdin, 10 s at most. */
static void ctl(run *r, const char *in, ...)
{
    const char *argv[16] = {SHMRPCCTL};
    va_list ap;
    va_start(ap, in);
    for (int i = 1; i < 15 && (argv[i] = va_arg(ap, const char *)) != NULL; i++)
        ;
    va_end(ap);
    argv[15] = NULL;
    int po[2], pe[2], pi[2];
    assert_int_equal(pipe2(po, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pe, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pi, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pi[0], 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        alarm(10);
        execv(SHMRPCCTL, (char *const *)argv);
        _exit(127);
    }
    close(po[1]), close(pe[1]), close(pi[0]);
    if (in) {
        ssize_t w = write(pi[1], in, strlen(in));
        (void)w;
    }
    close(pi[1]);
    size_t no = 0, ne = 0;
    struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    int64_t deadline = sup_now_ms() + 10000;
    while ((fds[0].fd >= 0 || fds[1].fd >= 0) && sup_now_ms() < deadline) {
        if (poll(fds, 2, 100) <= 0) continue;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !fds[i].revents) continue;
            char *buf = i ? r->err : r->out;
            size_t *n = i ? &ne : &no;
            size_t cap = i ? sizeof r->err : sizeof r->out;
            ssize_t got = read(fds[i].fd, buf + *n, cap - 1 - *n);
            if (got <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
            } else {
                *n += (size_t)got;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0) close(fds[i].fd);
    r->out[no] = r->err[ne] = '\0';
    int st;
    kill(pid, SIGKILL); /* harmless once it exited; bounded when it did not */
    waitpid(pid, &st, 0);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int setup(void **state)
{
    (void)state;
    sup_remove_segments(QUEUES);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sup_remove_segments(QUEUES);
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
    shmrpc_queue_close(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(typed_values_between_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(another_type_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(ctl_json_on_a_typed_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(ctl_bytes_on_an_untyped_queue, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
