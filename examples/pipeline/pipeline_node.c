/* SPDX-License-Identifier: MIT */
/* pipeline-node: one stage of the pipeline example, joined to the next by the typed queues
 * of pipeline.svc (source -> raw -> transform -> middle -> transform -> done -> sink).
 *   pipeline-node source [--id K] [--count N]   pushes N messages (default 1000000) to raw
 *   pipeline-node transform IN OUT              moves messages from IN to OUT (raw, middle,
 *                                               done), counting a hop on each
 *   pipeline-node sink [--sources S] [--count N] checks N messages from each of S sources
 * A stage creates its output queue (or attaches to it) and waits for its input to appear
 * (the attach timeout: the stage before it may start later), then runs until SIGTERM or
 * SIGINT; the queue it created is removed when it stops. The sink prints messages/s each
 * second, then one line saying whether every sequence number arrived once and in order
 * per source, and stays until it is stopped, so that a supervisor does not restart it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pipeline.h"

#define MAX_SOURCES 64
#define WAIT_INPUT_MS 30000 /* how long a stage waits for its input queue to appear */
#define STEP_MS 200         /* push and pop wait this long, then look at the stop flag */

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef int (*open_fn)(shmrpc_queue **, const shmrpc_queue_opts *);
typedef struct stage_queue {
    const char *name; /* as pipeline.svc spells it */
    open_fn open;
    const char *shm; /* its queue name */
    int (*push)(shmrpc_queue *, shmrpc_buf *, const pipeline_Msg *, int64_t);
    int (*pop)(shmrpc_queue *, shmrpc_buf *, shmrpc_arena *, pipeline_Msg *, int64_t);
} stage_queue;

static const stage_queue queues[] = {
    {"raw", Pipeline_raw_open, PIPELINE_QUEUE_RAW, Pipeline_raw_push, Pipeline_raw_pop},
    {"middle", Pipeline_middle_open, PIPELINE_QUEUE_MIDDLE, Pipeline_middle_push,
     Pipeline_middle_pop},
    {"done", Pipeline_done_open, PIPELINE_QUEUE_DONE, Pipeline_done_push, Pipeline_done_pop},
};

static const stage_queue *queue_named(const char *name)
{
    for (size_t i = 0; i < sizeof queues / sizeof queues[0]; i++)
        if (strcmp(queues[i].name, name) == 0) return &queues[i];
    fprintf(stderr, "pipeline-node: no queue '%s' (raw, middle, done)\n", name);
    return NULL;
}

static int failed(const char *what, const char *name, int rc)
{
    fprintf(stderr, "pipeline-node: %s %s: %s: %s\n", what, name, shmrpc_strerror(rc),
            shmrpc_errmsg());
    return 1;
}

/* The output: created here unless it exists (a restarted stage goes on with it). */
static int open_output(const stage_queue *sq, shmrpc_queue **q)
{
    int rc = sq->open(q, NULL);
    return rc == 0 ? 0 : failed("cannot open", sq->shm, rc);
}

/* The input: waits for the stage before this one to create it. */
static int open_input(const stage_queue *sq, shmrpc_queue **q)
{
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    o.attach_timeout_ms = WAIT_INPUT_MS;
    int rc = sq->open(q, &o);
    return rc == 0 ? 0 : failed("waiting for", sq->shm, rc);
}

/* Pushes m, retrying every STEP_MS while the queue is full: 0, 1 on stop or failure. */
static int push(const stage_queue *sq, shmrpc_queue *q, shmrpc_buf *buf, const pipeline_Msg *m)
{
    for (;;) {
        int rc = sq->push(q, buf, m, STEP_MS);
        if (rc == 0) return 0;
        if (rc != SHMRPC_ETIMEDOUT) return failed("cannot push to", sq->shm, rc);
        if (stopping) return 1;
    }
}

/* Pops into m: 0, SHMRPC_ETIMEDOUT when nothing came within STEP_MS, else 1. */
static int pop(const stage_queue *sq, shmrpc_queue *q, shmrpc_buf *buf, shmrpc_arena *a,
               pipeline_Msg *m)
{
    shmrpc_arena_reset(a);
    int rc = sq->pop(q, buf, a, m, STEP_MS);
    if (rc == 0 || rc == SHMRPC_ETIMEDOUT) return rc;
    return failed("cannot pop from", sq->shm, rc);
}

static void idle_until_stopped(void)
{
    while (!stopping)
        pause();
}

static int run_source(uint32_t id, uint64_t count)
{
    shmrpc_queue *out;
    if (open_output(&queues[0], &out) != 0) return 1;
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    int rc = 0;
    double t0 = now_s();
    /* In batches: a consumer is woken once for each run of 64, not for every message. */
    static pipeline_Msg batch[256];
    for (uint64_t seq = 0; seq < count && rc == 0;) {
        size_t n = count - seq < 256 ? (size_t)(count - seq) : 256, done = 0;
        for (size_t i = 0; i < n; i++)
            batch[i] = (pipeline_Msg){
                .source = id, .seq = seq + i, .hops = 0, .note = shmrpc_str_c("hello")};
        rc = Pipeline_raw_push_batch(out, &buf, batch, n, &done, STEP_MS);
        seq += done;
        if (rc == SHMRPC_ETIMEDOUT)
            rc = stopping ? 1 : 0;
        else if (rc != 0)
            rc = failed("cannot push to", queues[0].shm, rc);
    }
    if (rc == 0)
        printf("source %u: pushed %llu messages in %.3f s\n", id, (unsigned long long)count,
               now_s() - t0);
    fflush(stdout);
    shmrpc_buf_destroy(&buf);
    if (rc == 0) idle_until_stopped();
    shmrpc_queue_close(out);
    shmrpc_queue_unlink(queues[0].shm);
    return rc;
}

static int run_transform(const stage_queue *in_q, const stage_queue *out_q)
{
    shmrpc_queue *out, *in;
    if (open_output(out_q, &out) != 0) return 1;
    if (open_input(in_q, &in) != 0) {
        shmrpc_queue_close(out);
        return 1;
    }
    printf("transform: %s -> %s\n", in_q->shm, out_q->shm);
    fflush(stdout);
    shmrpc_buf ibuf, obuf;
    shmrpc_buf_init(&ibuf);
    shmrpc_buf_init(&obuf);
    shmrpc_arena *a = shmrpc_arena_new(4096);
    int rc = a ? 0 : 1;
    while (rc == 0 && !stopping) {
        pipeline_Msg m;
        rc = pop(in_q, in, &ibuf, a, &m);
        if (rc == SHMRPC_ETIMEDOUT) {
            rc = 0;
            continue;
        }
        if (rc != 0) break;
        m.hops++;
        rc = push(out_q, out, &obuf, &m);
    }
    if (stopping) rc = 0;
    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&ibuf);
    shmrpc_buf_destroy(&obuf);
    shmrpc_queue_close(in);
    shmrpc_queue_close(out);
    shmrpc_queue_unlink(out_q->shm);
    return rc;
}

typedef struct sink_state {
    uint64_t next[MAX_SOURCES]; /* the sequence number each source should send next */
    uint64_t received, bad;
} sink_state;

/* Checks one message; says what is wrong with the first few that are. */
static void check(sink_state *st, const pipeline_Msg *m, uint32_t sources)
{
    const char *why = NULL;
    if (m->source >= sources)
        why = "from an unknown source";
    else if (m->seq < st->next[m->source])
        why = "a duplicate or out of order";
    else if (m->seq > st->next[m->source])
        why = "after a gap";
    else if (m->hops != 2)
        why = "with the wrong number of hops";
    else if (m->note.len != 5 || memcmp(m->note.ptr, "hello", 5) != 0)
        why = "with a corrupt note";
    st->received++;
    if (m->source < sources && m->seq >= st->next[m->source]) st->next[m->source] = m->seq + 1;
    if (!why) return;
    if (st->bad++ < 10)
        printf("sink: message %llu of source %u arrived %s (expected %llu)\n",
               (unsigned long long)m->seq, m->source, why,
               m->source < sources ? (unsigned long long)st->next[m->source] : 0ULL);
}

static int run_sink(uint32_t sources, uint64_t count)
{
    shmrpc_queue *in;
    if (open_input(&queues[2], &in) != 0) return 1;
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    shmrpc_arena *a = shmrpc_arena_new(4096);
    static sink_state st;
    uint64_t want = count * sources, last = 0;
    double t0 = 0, tick = now_s();
    int rc = a ? 0 : 1;
    while (rc == 0 && !stopping && st.received < want) {
        pipeline_Msg m;
        rc = pop(&queues[2], in, &buf, a, &m);
        if (rc == SHMRPC_ETIMEDOUT)
            rc = 0;
        else if (rc == 0) {
            if (st.received == 0) t0 = now_s();
            check(&st, &m, sources);
        }
        double t = now_s();
        if (t - tick >= 1.0) {
            printf("sink: %.0f messages/s\n", (double)(st.received - last) / (t - tick));
            fflush(stdout);
            last = st.received;
            tick = t;
        }
    }
    if (rc == 0 && st.received == want) {
        double secs = now_s() - t0;
        printf("sink: %llu messages from %u source%s in %.3f s, %.0f messages/s: %s\n",
               (unsigned long long)st.received, sources, sources == 1 ? "" : "s", secs,
               secs > 0 ? (double)st.received / secs : 0.0,
               st.bad ? "FAILED" : "every sequence number arrived once and in order");
        fflush(stdout);
        if (st.bad)
            rc = 1;
        else
            idle_until_stopped();
    }
    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&buf);
    shmrpc_queue_close(in);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: pipeline-node source [--id K] [--count N]\n"
                    "       pipeline-node transform IN OUT     (queues: raw, middle, done)\n"
                    "       pipeline-node sink [--sources S] [--count N]\n");
    return 2;
}

static bool number(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    *out = strtoull(s, &end, 10);
    return *s >= '0' && *s <= '9' && *end == '\0' && *out <= max;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage();
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    unsigned long long id = 0, count = 1000000, sources = 1;
    if (strcmp(argv[1], "transform") == 0) {
        if (argc != 4) return usage();
        const stage_queue *in = queue_named(argv[2]), *out = queue_named(argv[3]);
        if (!in || !out || in == out) return usage();
        return run_transform(in, out);
    }
    for (int i = 2; i < argc; i++) {
        bool ok = i + 1 < argc;
        if (ok && strcmp(argv[i], "--id") == 0)
            ok = number(argv[++i], MAX_SOURCES - 1, &id);
        else if (ok && strcmp(argv[i], "--count") == 0)
            ok = number(argv[++i], UINT64_MAX / MAX_SOURCES, &count);
        else if (ok && strcmp(argv[i], "--sources") == 0)
            ok = number(argv[++i], MAX_SOURCES, &sources) && sources > 0;
        else
            ok = false;
        if (!ok) return usage();
    }
    if (strcmp(argv[1], "source") == 0) return run_source((uint32_t)id, count);
    if (strcmp(argv[1], "sink") == 0) return run_sink((uint32_t)sources, count);
    return usage();
}
