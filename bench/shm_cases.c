/* SPDX-License-Identifier: MIT */
/* The shm:// rows: a real server (the generated bench service, forked workers) and real
 * client processes, each calling through the generated stubs. */
#include "shm_cases.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "port.h"
#include "text.h"

static int h_pass(shmrpc_ctx *ctx, const bench_Record *r, bench_Record *out)
{
    (void)ctx;
    *out = *r;
    return 0;
}

static int h_echo(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    (void)ctx;
    *out = data;
    return 0;
}

static int h_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    (void)ctx;
    *out = a + b;
    return 0;
}

static int h_work(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    (void)ctx;
    int64_t until = bench_now_ns() + 20000;
    while (bench_now_ns() < until) {
    }
    *out = data;
    return 0;
}

static const Bench_handlers handlers = {
    .pass = h_pass, .echo = h_echo, .add = h_add, .work = h_work};

typedef struct shm_row {
    const bench_shm_opts *o;
    char addr[64];
} shm_row;

static shmrpc_server *server;

static void on_term(int sig)
{
    (void)sig;
    shmrpc_server_stop(server);
}

static int serve(bench_run *run, int idx, void *arg)
{
    (void)idx;
    shm_row *row = arg;
    setenv("SHMRPC_WAIT", row->o->wait, 1);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    int rc = shmrpc_server_new(&server, NULL);
    if (rc == 0) rc = shmrpc_server_register(server, &Bench_service, &handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(server, row->addr);
    if (rc == 0) rc = shmrpc_server_serve(server, run->c->workers);
    if (rc != 0) fprintf(stderr, "bench server: %s\n", shmrpc_errmsg());
    shmrpc_server_free(server);
    return rc == 0 ? 0 : 1;
}

typedef struct caller {
    shmrpc_client *c;
    const char *method;
    uint8_t payload[65536];
    size_t len;
} caller;

static int call(void *arg, uint64_t seq)
{
    caller *k = arg;
    if (k->method[0] == 'a') {
        int64_t sum;
        int rc = bench_add(k->c, (int64_t)seq, 1, &sum);
        return rc != 0 || sum != (int64_t)seq + 1;
    }
    k->payload[0] = (uint8_t)seq;
    shmrpc_bytes out;
    int rc = k->method[0] == 'w' ? bench_work(k->c, shmrpc_bytes_of(k->payload, k->len), &out)
                                 : bench_echo(k->c, shmrpc_bytes_of(k->payload, k->len), &out);
    return rc != 0 || out.len != k->len || (k->len && out.ptr[0] != (uint8_t)seq);
}

static int client(bench_run *run, int idx, void *arg)
{
    shm_row *row = arg;
    setenv("SHMRPC_WAIT", row->o->wait, 1);
    static caller k;
    k.method = row->o->method;
    k.len = run->c->payload;
    if (row->o->text) bench_fill_text(k.payload, k.len);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.compression = row->o->compression;
    int rc = shmrpc_client_new(&k.c, &Bench_service_info, &o);
    if (rc == 0) rc = shmrpc_client_connect(k.c, row->addr);
    /* The server may still be starting: try for up to five seconds. */
    for (int i = 0; rc == SHMRPC_EUNAVAIL && i < 500; i++) {
        usleep(10000);
        rc = shmrpc_client_connect(k.c, row->addr);
    }
    if (rc != 0) {
        fprintf(stderr, "bench client: %s\n", shmrpc_errmsg());
        return 1;
    }
    rc = bench_client_loop(run, idx, call, &k);
    shmrpc_client_free(k.c);
    return rc;
}

static void stop_server(void *arg)
{
    kill(*(pid_t *)arg, SIGTERM);
}

int bench_shm(bench_run *run)
{
    static int rows;
    shm_row row = {.o = run->c->arg};
    if (row.o->tcp)
        snprintf(row.addr, sizeof row.addr, "tcp://127.0.0.1:%d", test_free_port());
    else
        snprintf(row.addr, sizeof row.addr, "shm://shmrpc-bench-%d-%d", (int)getpid(), rows++);
    int rc = bench_spawn_server(run, serve, 0, &row);
    pid_t server_pid = run->nproc > 0 ? run->pid[run->nproc - 1] : 0;
    for (int i = 0; rc == 0 && i < run->c->clients; i++)
        rc = bench_spawn_client(run, client, i, &row);
    return bench_reap(run, stop_server, &server_pid);
}
