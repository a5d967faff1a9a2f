/* SPDX-License-Identifier: MIT */
/* shmrpc-bench-inflight: calls/s of one tcp:// connection with 1, 16 and 64 echo calls in
 * flight (shmrpc_client_start), against one at a time through the blocking stub, between
 * two hosts. bench/inflight_link.sh runs it across network namespaces through
 * tests/hosts' link emulator (1 ms each way); on loopback shmrpc-bench has the same rows.
 *
 *   shmrpc-bench-inflight server ADDR [tls CERT KEY]   serves Bench at ADDR with one worker
 *                                                      (TLS only, with CERT and KEY: PEM)
 *   shmrpc-bench-inflight client ADDR BYTES S [tls CA] S seconds per row, BYTES per echo
 *                                                      (TLS, the server's certificate
 *                                                      checked against CA and ADDR's host)
 * Both use a fixed shared secret (a server off loopback must have one): a benchmark's,
 * not a secret. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench_handlers.h"
#include "clock.h"

static const char secret[] = "shmrpc-bench-inflight-not-secret";

static int serve(const char *addr, const char *cert, const char *key)
{
    signal(SIGTERM, bench_on_term);
    shmrpc_server_opts so;
    shmrpc_server_opts_init(&so);
    so.tcp.secret = secret;
    so.tcp.secret_len = strlen(secret);
    so.tcp.tls_cert = cert; /* NULL: plain TCP */
    so.tcp.tls_key = key;
    int rc = shmrpc_server_new(&bench_server, &so);
    if (rc == 0)
        rc = shmrpc_server_register(bench_server, &Bench_service, &bench_plain_handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(bench_server, addr);
    if (rc == 0) rc = shmrpc_server_serve(bench_server, 1);
    if (rc) fprintf(stderr, "server: %s\n", shmrpc_errmsg());
    shmrpc_server_free(bench_server);
    return rc ? 1 : 0;
}

static uint8_t payload[65536];

/* Keeps n echoes in flight for secs seconds (n == 0: the blocking stub); calls/s. */
static double row(shmrpc_client *c, int n, size_t len, int secs, long *bad)
{
    shmrpc_call *ring[64];
    int head = 0, cnt = 0;
    long done = 0;
    int64_t t0 = bench_now_ms(), end = t0 + secs * 1000;
    while (bench_now_ms() < end) {
        shmrpc_bytes out;
        if (n == 0) {
            if (bench_echo(c, shmrpc_bytes_of(payload, len), &out) || out.len != len)
                (*bad)++;
            else
                done++;
            continue;
        }
        for (; cnt < n; cnt++)
            if (bench_echo_start(c, shmrpc_bytes_of(payload, len), &ring[(head + cnt) % n]))
                return -1;
        if (bench_echo_finish(c, ring[head], &out) || out.len != len)
            (*bad)++;
        else
            done++;
        head = (head + 1) % n;
        cnt--;
    }
    double cps = (double)done * 1000.0 / (double)(bench_now_ms() - t0);
    for (int i = 0; i < cnt; i++)
        shmrpc_call_free(ring[(head + i) % n]);
    return cps;
}

static int client(const char *addr, size_t len, int secs, const char *ca)
{
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.secret = secret;
    o.tcp.secret_len = strlen(secret);
    if (ca) { /* verification stays on: the certificate must name ADDR's host */
        o.tcp.tls = SHMRPC_TLS_ON;
        o.tcp.tls_verify = SHMRPC_TLS_VERIFY_ON;
        o.tcp.tls_ca = ca;
    }
    shmrpc_client *c;
    int rc = shmrpc_client_new(&c, &Bench_service_info, &o);
    if (rc == 0) rc = shmrpc_client_connect(c, addr);
    for (int i = 0; rc == SHMRPC_EUNAVAIL && i < 100; i++) { /* a server starting: 5 s */
        usleep(50000);
        rc = shmrpc_client_connect(c, addr);
    }
    if (rc) {
        fprintf(stderr, "client: %s\n", shmrpc_errmsg());
        return 1;
    }
    int levels[] = {0, 1, 16, 64};
    double base = 0;
    for (int l = 0; l < 4; l++) {
        long bad = 0;
        double cps = row(c, levels[l], len, secs, &bad);
        if (cps < 0) {
            fprintf(stderr, "client: start: %s\n", shmrpc_errmsg());
            return 1;
        }
        if (l == 1) base = cps;
        if (l == 0)
            printf("%6zu B, blocking stub : %9.0f calls/s\n", len, cps);
        else
            printf("%6zu B, %2d in flight : %9.0f calls/s, %5.1fx one in flight, %ld failed\n", len,
                   levels[l], cps, cps / base, bad);
        fflush(stdout);
    }
    shmrpc_client_free(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "server") == 0) return serve(argv[2], NULL, NULL);
    if (argc == 6 && strcmp(argv[1], "server") == 0 && strcmp(argv[3], "tls") == 0)
        return serve(argv[2], argv[4], argv[5]);
    bool tls = argc == 7 && strcmp(argv[5], "tls") == 0;
    if ((argc == 5 || tls) && strcmp(argv[1], "client") == 0)
        return client(argv[2], (size_t)atoi(argv[3]) % (sizeof payload + 1), atoi(argv[4]),
                      tls ? argv[6] : NULL);
    fprintf(stderr, "usage: shmrpc-bench-inflight server ADDR [tls CERT KEY] | client ADDR BYTES "
                    "SECONDS [tls CA]\n");
    return 2;
}
