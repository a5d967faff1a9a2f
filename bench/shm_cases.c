/* SPDX-License-Identifier: MIT */
/* The shm:// rows: a real server (the generated bench service, forked workers) and real
 * client processes, each calling through the generated stubs. */
#include "shm_cases.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "bench_handlers.h"
#include "port.h"
#include "text.h"

/* The echo of the loaned rows: the request read in place, the answer in its loan, which
 * over shm:// is the same bytes of the channel, so nothing is copied. */
static int h_echo_in_place(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    void *p;
    int rc = shmrpc_ctx_loan(ctx, data.len, &p);
    if (rc != 0) return rc;
    if (p != data.ptr) memmove(p, data.ptr, data.len); /* a small request, or tcp:// */
    *out = shmrpc_bytes_of(p, data.len);
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
    .pass = bench_handle_pass, .echo = bench_handle_echo, .add = bench_handle_add, .work = h_work};
static const Bench_handlers loan_handlers = {
    .pass = bench_handle_pass, .echo = h_echo_in_place, .add = bench_handle_add, .work = h_work};

/* The traced rows' interceptor on either side: it reads the call's traceparent, as one that
 * logs or forwards it would. */
static volatile size_t traced_seen;

static int traced_before(void *arg, const shmrpc_call_info *call)
{
    (void)arg;
    const char *tp = shmrpc_metadata_get(call->metadata, "traceparent");
    traced_seen += tp ? (size_t)tp[3] : 0;
    return 0;
}

static const shmrpc_interceptor traced_icpt = {.before = traced_before};

typedef struct shm_row {
    const bench_shm_opts *o;
    char addr[64];
    char dir[64]; /* the TLS row's certificate and key, cert.pem and key.pem */
    char cert[128], key[128];
} shm_row;

static int serve(bench_run *run, int idx, void *arg)
{
    (void)idx;
    shm_row *row = arg;
    setenv("SHMRPC_WAIT", row->o->wait, 1);
    struct sigaction sa = {.sa_handler = bench_on_term};
    sigaction(SIGTERM, &sa, NULL);
    shmrpc_server_opts so;
    shmrpc_server_opts_init(&so);
    if (row->o->tls) {
        so.tcp.tls_cert = row->cert;
        so.tcp.tls_key = row->key;
    }
    int rc = shmrpc_server_new(&bench_server, &so);
    if (rc == 0)
        rc = shmrpc_server_register(bench_server, &Bench_service,
                                    row->o->loan ? &loan_handlers : &handlers, NULL);
    if (rc == 0 && row->o->loan)
        rc = shmrpc_server_set_in_place(bench_server, BENCH_METHOD_ECHO, 1);
    if (rc == 0 && row->o->traced) rc = shmrpc_server_intercept(bench_server, &traced_icpt, NULL);
    if (rc == 0) rc = shmrpc_server_listen(bench_server, row->addr);
    if (rc == 0) rc = shmrpc_server_serve(bench_server, run->c->workers);
    if (rc != 0) fprintf(stderr, "bench server: %s\n", shmrpc_errmsg());
    shmrpc_server_free(bench_server);
    return rc == 0 ? 0 : 1;
}

typedef struct caller {
    shmrpc_client *c;
    const char *method;
    uint8_t *payload; /* len bytes */
    size_t len;
    int in_flight;         /* calls kept in flight (bench_shm_opts), or 0 */
    bool loan;             /* echo through loaned buffers (bench_shm_opts) */
    shmrpc_call *ring[64]; /* those calls, oldest at head */
    uint64_t seq[64];      /* each one's sequence number, in its first payload byte */
    int head, n;
} caller;

/* Keeps k->in_flight echoes (or works) in flight: waits for the oldest (checking its
 * answer) and starts one more, so the loop's rate is the connection's rate with that many
 * in flight. */
static int call_in_flight(caller *k, uint64_t seq)
{
    bool work = k->method[0] == 'w';
    while (k->n < k->in_flight) {
        int i = (k->head + k->n) % k->in_flight;
        k->payload[0] = (uint8_t)(seq + (uint64_t)k->n);
        k->seq[i] = seq + (uint64_t)k->n;
        shmrpc_bytes req = shmrpc_bytes_of(k->payload, k->len);
        if ((work ? bench_work_start(k->c, req, &k->ring[i])
                  : bench_echo_start(k->c, req, &k->ring[i])) != 0)
            return 1;
        k->n++;
    }
    int i = k->head;
    shmrpc_bytes out;
    uint64_t want = k->seq[i];
    int rc = work ? bench_work_finish(k->c, k->ring[i], &out)
                  : bench_echo_finish(k->c, k->ring[i], &out);
    k->ring[i] = NULL;
    k->head = (k->head + 1) % k->in_flight;
    k->n--;
    return rc != 0 || out.len != k->len || (k->len && out.ptr[0] != (uint8_t)want);
}

/* An echo with loaned buffers: the request written into the room the loan gives (over
 * shm://, the channel), the answer checked where it came (the channel). */
static int call_loaned(caller *k, uint64_t seq)
{
    void *room;
    k->payload[0] = (uint8_t)seq;
    if (shmrpc_client_loan(k->c, BENCH_METHOD_ECHO, k->len, &room) != 0) return 1;
    memcpy(room, k->payload, k->len);
    shmrpc_bytes out;
    int rc = shmrpc_client_call_loaned(k->c, k->len, &out);
    return rc != 0 || out.len != k->len || (k->len && out.ptr[0] != (uint8_t)seq);
}

static int call(void *arg, uint64_t seq)
{
    caller *k = arg;
    if (k->in_flight) return call_in_flight(k, seq);
    if (k->loan) return call_loaned(k, seq);
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

/* A client of the row's server in *c, connected (with the row's TLS, metadata and
 * interceptor): 0, or 1 with the reason printed. */
static int open_client(shmrpc_client **c, const shm_row *row)
{
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.compression = row->o->compression;
    if (row->o->tls) {
        o.tcp.tls = SHMRPC_TLS_ON;
        o.tcp.tls_verify = SHMRPC_TLS_VERIFY_ON; /* as across hosts: its own CA */
        o.tcp.tls_ca = row->cert;
    }
    int rc = shmrpc_client_new(c, &Bench_service_info, &o);
    if (rc == 0 && row->o->traced) {
        char tp[SHMRPC_TRACEPARENT_SIZE];
        shmrpc_traceparent_new(tp);
        rc = shmrpc_client_metadata_set(*c, "traceparent", tp);
        if (rc == 0) rc = shmrpc_client_intercept(*c, &traced_icpt, NULL);
    }
    if (rc == 0) rc = shmrpc_client_connect(*c, row->addr);
    /* The server may still be starting: try for up to five seconds. */
    for (int i = 0; rc == SHMRPC_EUNAVAIL && i < 500; i++) {
        usleep(10000);
        rc = shmrpc_client_connect(*c, row->addr);
    }
    if (rc != 0) fprintf(stderr, "bench client: %s\n", shmrpc_errmsg());
    return rc != 0;
}

static int client(bench_run *run, int idx, void *arg)
{
    shm_row *row = arg;
    setenv("SHMRPC_WAIT", row->o->wait, 1);
    static caller k;
    k.method = row->o->method;
    k.len = run->c->payload;
    k.in_flight = row->o->in_flight;
    k.loan = row->o->loan;
    if (!(k.payload = calloc(1, k.len ? k.len : 1))) return 1;
    if (row->o->text) bench_fill_text(k.payload, k.len);
    if (open_client(&k.c, row) != 0) return 1;
    int rc = bench_client_loop(run, idx, call, &k);
    shmrpc_client_free(k.c); /* calls still in flight end with it, and are freed after */
    for (int i = 0; i < k.n; i++)
        shmrpc_call_free(k.ring[(k.head + i) % k.in_flight]);
    free(k.payload);
    return rc;
}

/* A self-signed certificate for 127.0.0.1 (ECDSA P-256) and its key in a new temporary
 * folder; false when the openssl program could not make them. */
static bool make_certificate(shm_row *row)
{
    snprintf(row->dir, sizeof row->dir, "/tmp/shmrpc-bench-tls-XXXXXX");
    if (!mkdtemp(row->dir)) return false;
    snprintf(row->cert, sizeof row->cert, "%s/cert.pem", row->dir);
    snprintf(row->key, sizeof row->key, "%s/key.pem", row->dir);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "timeout 60 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout %s -out %s -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
             ">/dev/null 2>&1",
             row->key, row->cert);
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void remove_certificate(shm_row *row)
{
    unlink(row->cert);
    unlink(row->key);
    rmdir(row->dir);
}

/* --- the bare add, as a pair --- */

/* A name of its own for each shm:// server this program starts. */
static void shm_address(shm_row *row)
{
    static int servers;
    snprintf(row->addr, sizeof row->addr, "shm://shmrpc-bench-%d-%d", (int)getpid(), servers++);
}

static const bench_shm_opts bare_add = {.wait = "adaptive", .method = "add"};

/* A row's pair (bench_bare_add_pair), in memory its processes share: a server of its own
 * and, in the row's client process, a client of it. */
typedef struct add_pair {
    bench_pair pair;
    _Atomic uint32_t park; /* which nobody sleeps on: an idle worker sleeps by itself */
    shm_row row;
    pid_t server;
    shmrpc_client *c; /* the row's client process's, connected at its first call */
} add_pair;

static int pair_add(void *arg, uint64_t seq)
{
    add_pair *p = arg;
    if (!p->c && open_client(&p->c, &p->row) != 0) return -1;
    int64_t sum;
    int rc = bench_add(p->c, (int64_t)seq, 1, &sum);
    return rc != 0 || sum != (int64_t)seq + 1 ? -1 : 0;
}

bench_pair *bench_bare_add_pair(bench_run *run)
{
    add_pair *p = bench_shared_alloc(sizeof *p);
    if (!p) {
        snprintf(run->err, sizeof run->err, "mmap: %s", strerror(errno));
        return NULL;
    }
    p->row.o = &bare_add;
    shm_address(&p->row);
    p->pair = (bench_pair){.call = pair_add, .arg = p, .park = &p->park, .mem = p, .len = sizeof *p};
    if (bench_spawn_server(run, serve, 0, &p->row) != 0) {
        bench_shared_free(p, sizeof *p);
        return NULL;
    }
    p->server = run->pid[run->nproc - 1];
    return &p->pair;
}

typedef struct servers {
    pid_t row; /* 0: it did not start */
    bench_run *run;
} servers;

/* SIGTERM to the server pid of run, unless it was reaped already (its pid may be another
 * process's by now). */
static void stop_server(bench_run *run, pid_t pid)
{
    for (int i = 0; i < run->nproc; i++)
        if (run->pid[i] == pid && !run->exited[i]) kill(pid, SIGTERM);
}

/* A row's server, and its pair's if that is a bare add (bench_bare_add_pair); a pair of
 * another kind stops by itself. */
static void stop_servers(void *arg)
{
    servers *s = arg;
    if (s->row > 0) stop_server(s->run, s->row);
    bench_pair *pair = s->run->pair;
    if (pair && pair->call == pair_add) stop_server(s->run, ((add_pair *)pair->arg)->server);
}

int bench_shm(bench_run *run)
{
    shm_row row = {.o = run->c->arg};
    if (row.o->tls && !make_certificate(&row)) {
        fprintf(stderr, "bench: the openssl program could not make a TLS certificate\n");
        remove_certificate(&row);
        return 1;
    }
    if (row.o->tcp)
        snprintf(row.addr, sizeof row.addr, "tcp://127.0.0.1:%d", test_free_port());
    else
        shm_address(&row);
    int rc = bench_spawn_server(run, serve, 0, &row);
    servers stop = {.row = rc == 0 ? run->pid[run->nproc - 1] : 0, .run = run};
    for (int i = 0; rc == 0 && i < run->c->clients; i++)
        rc = bench_spawn_client(run, client, i, &row);
    rc = bench_reap(run, stop_servers, &stop);
    if (row.o->tls) remove_certificate(&row);
    return rc;
}
