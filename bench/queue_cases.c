/* SPDX-License-Identifier: MIT */
/* shmrpc-bench's queue rows: an echo over shared-memory queues (docs/queue.md), so that a
 * queue's round trip sits in the same table as the spin handoff and the calls. The clients
 * push their requests to one queue that every worker pops; each client pops its reply from
 * a queue of its own. A message is the client's index (4 bytes), then the payload. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmrpc/queue.h>
#include <shmrpc/status.h>

#include "queue_cases.h"

#define HDR 4u

typedef struct qecho {
    bench_run *run;
    size_t n;
    char req_name[64];
    char resp_name[BENCH_MAX_CLIENTS][64];
    shmrpc_queue *req, *resp; /* this process's handles */
    uint8_t *msg, *got;       /* HDR + n bytes each */
    int client;
} qecho;

static int make_queue(const char *name, size_t max_msg)
{
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = SHMRPC_QUEUE_CREATE_NEW_OVERWRITE;
    o.capacity = 64;
    o.max_msg = max_msg;
    o.arena_bytes = 4 * max_msg > 4096 ? 4 * max_msg : 4096;
    shmrpc_queue *q;
    int rc = shmrpc_queue_open(&q, name, &o);
    if (rc == 0) shmrpc_queue_close(q);
    return rc;
}

static int open_queue(const char *name, shmrpc_queue **q)
{
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    return shmrpc_queue_open(q, name, &o);
}

static int qecho_call(void *arg, uint64_t seq)
{
    qecho *e = arg;
    memcpy(e->msg + HDR, &seq, sizeof seq);
    if (shmrpc_queue_push(e->req, e->msg, HDR + e->n, 5000) != 0) return -1;
    size_t len = 0;
    if (shmrpc_queue_pop(e->resp, e->got, HDR + e->n, &len, 5000) != 0) return -1;
    return len == HDR + e->n && memcmp(e->got, e->msg, len) == 0 ? 0 : -1;
}

static int qecho_client(bench_run *run, int idx, void *arg)
{
    qecho *e = arg;
    e->msg = malloc(HDR + e->n);
    e->got = malloc(HDR + e->n);
    if (!e->msg || !e->got || open_queue(e->req_name, &e->req) != 0 ||
        open_queue(e->resp_name[idx], &e->resp) != 0)
        return 1;
    uint32_t me = (uint32_t)idx;
    memcpy(e->msg, &me, HDR);
    for (size_t i = sizeof(uint64_t); i < e->n; i++)
        e->msg[HDR + i] = (uint8_t)(i * 7 + idx);
    return bench_client_loop(run, idx, qecho_call, e);
}

static int qecho_server(bench_run *run, int idx, void *arg)
{
    (void)idx;
    qecho *e = arg;
    e->msg = malloc(HDR + e->n);
    shmrpc_queue *resp[BENCH_MAX_CLIENTS] = {0};
    if (!e->msg || open_queue(e->req_name, &e->req) != 0) return 1;
    int rc = 0;
    while (!bench_quit(run)) {
        size_t len = 0;
        int got = shmrpc_queue_pop(e->req, e->msg, HDR + e->n, &len, 20);
        if (got == SHMRPC_ETIMEDOUT) continue;
        uint32_t c;
        if (got != 0 || len < HDR || (memcpy(&c, e->msg, HDR), c >= (uint32_t)run->c->clients)) {
            rc = 2;
            break;
        }
        if (!resp[c] && open_queue(e->resp_name[c], &resp[c]) != 0) {
            rc = 3;
            break;
        }
        if (shmrpc_queue_push(resp[c], e->msg, len, 5000) != 0) {
            rc = 4;
            break;
        }
    }
    for (int i = 0; i < BENCH_MAX_CLIENTS; i++)
        if (resp[i]) shmrpc_queue_close(resp[i]);
    shmrpc_queue_close(e->req);
    return rc;
}

int bench_queue_echo(bench_run *run)
{
    const bench_case *c = run->c;
    qecho e = {.run = run, .n = c->payload};
    if (e.n < sizeof(uint64_t) || c->clients > BENCH_MAX_CLIENTS) {
        snprintf(run->err, sizeof run->err, "a queue echo carries 8 B or more");
        return -1;
    }
    int pid = (int)getpid();
    snprintf(e.req_name, sizeof e.req_name, "bench-echo.%d.req", pid);
    int rc = make_queue(e.req_name, HDR + e.n);
    for (int i = 0; i < c->clients && rc == 0; i++) {
        snprintf(e.resp_name[i], sizeof e.resp_name[i], "bench-echo.%d.resp%d", pid, i);
        rc = make_queue(e.resp_name[i], HDR + e.n);
    }
    if (rc == 0) {
        for (int w = 0; w < c->workers && rc == 0; w++)
            rc = bench_spawn_server(run, qecho_server, w, &e);
        for (int i = 0; i < c->clients && rc == 0; i++)
            rc = bench_spawn_client(run, qecho_client, i, &e);
        rc = bench_reap(run, NULL, NULL);
    } else {
        snprintf(run->err, sizeof run->err, "queue: %s", shmrpc_errmsg());
    }
    shmrpc_queue_unlink(e.req_name);
    for (int i = 0; i < c->clients; i++)
        if (e.resp_name[i][0]) shmrpc_queue_unlink(e.resp_name[i]);
    return rc;
}
