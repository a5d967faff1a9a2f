/* SPDX-License-Identifier: MIT */
/* shmrpc-bench-stall: what one stopped host of an endpoint list costs its clients (issue
 * 33). Three servers of Bench on ports of 127.0.0.1 (process groups of their own, 2
 * workers each); one client calls through tcp://A,B,C back to back, one blocking add at a
 * time, or N in flight; host A is stopped (SIGSTOP: its kernel still takes connections,
 * nothing answers) for S seconds, then resumed. It prints the client's calls/s before, over
 * the whole stop, from one call deadline after the stop on, and after the resume, with
 * their ratios to the first; and how long new clients took, with A stopped, from their
 * connect to their first answer.
 *
 *   shmrpc-bench-stall [--in-flight N] [S]     (S: 4 seconds; N: 0, the blocking stub) */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "args.h"
#include "bench.h"
#include "bench_handlers.h"
#include "clock.h"
#include "port.h"

#define USAGE "usage: shmrpc-bench-stall [--in-flight N] [SECONDS]\n"

enum { HOSTS = 3, DEADLINE_MS = 1000, NEW_CLIENTS = 5 };

/* A server of Bench at addr in a process group of its own, which dies with this process. */
static pid_t start_server(const char *addr)
{
    pid_t pid = fork();
    if (pid != 0) return pid;
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGTERM, bench_on_term);
    int rc = shmrpc_server_new(&bench_server, NULL);
    if (rc == 0)
        rc = shmrpc_server_register(bench_server, &Bench_service, &bench_plain_handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(bench_server, addr);
    if (rc == 0) rc = shmrpc_server_serve(bench_server, 2);
    if (rc) fprintf(stderr, "server %s: %s\n", addr, shmrpc_errmsg());
    shmrpc_server_free(bench_server);
    _exit(rc ? 1 : 0);
}

static long calls_ok, calls_failed;

/* Calls until end: blocking adds, or n in flight. */
static void call_until(shmrpc_client *c, int n, int64_t end)
{
    shmrpc_call *ring[64];
    int head = 0, cnt = 0;
    while (bench_now_ms() < end) {
        int64_t sum = 0;
        int rc;
        if (n == 0) {
            rc = bench_add(c, 2, 3, &sum);
        } else {
            for (; cnt < n; cnt++)
                if (bench_add_start(c, 2, 3, &ring[(head + cnt) % n])) exit(1);
            rc = bench_add_finish(c, ring[head], &sum);
            head = (head + 1) % n;
            cnt--;
        }
        if (rc == 0 && sum == 5)
            calls_ok++;
        else
            calls_failed++;
    }
    for (int i = 0; i < cnt; i++)
        shmrpc_call_free(ring[(head + i) % n]);
}

static double rate(long calls, int64_t ms)
{
    return ms > 0 ? (double)calls * 1000.0 / (double)ms : 0.0;
}

int main(int argc, char **argv)
{
    int n = 0;
    if (argc > 2 && strcmp(argv[1], "--in-flight") == 0) {
        n = atoi(argv[2]);
        if (n < 1 || n > 64) {
            fputs(USAGE, stderr);
            return 2;
        }
        argv[2] = argv[0];
        argv += 2, argc -= 2;
    }
    int st = bench_args(argc, argv, USAGE, NULL, -1);
    if (st >= 0) return st;
    int secs = optind < argc ? atoi(argv[optind]) : 4;
    if (secs < 2 || secs > 600) {
        fputs(USAGE, stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    pid_t pids[HOSTS];
    char list[128] = "tcp://", one[HOSTS][40];
    for (int i = 0; i < HOSTS; i++) {
        int port = test_free_port();
        snprintf(one[i], sizeof one[i], "tcp://127.0.0.1:%d", port);
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s127.0.0.1:%d", i ? "," : "",
                 port);
        pids[i] = start_server(one[i]);
    }
    int status = 1;
    shmrpc_client *c = NULL;
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.timeout_ms = DEADLINE_MS;
    for (int i = 0; i < HOSTS; i++) { /* each serves */
        int64_t until = bench_now_ms() + 10000;
        int rc;
        do {
            shmrpc_client_free(c);
            c = NULL;
            rc = shmrpc_client_new(&c, &Bench_service_info, &o);
            if (rc == 0) rc = shmrpc_client_connect(c, one[i]);
        } while (rc && bench_now_ms() < until && usleep(10000) == 0);
        if (rc) {
            fprintf(stderr, "%s: %s\n", one[i], shmrpc_errmsg());
            goto out;
        }
    }
    shmrpc_client_free(c);
    c = NULL;
    if (shmrpc_client_new(&c, &Bench_service_info, &o) || shmrpc_client_connect(c, list)) {
        fprintf(stderr, "%s: %s\n", list, shmrpc_errmsg());
        goto out;
    }
    printf("one client, %s, through %s; host 1 stopped for %d s\n",
           n ? "calls in flight" : "blocking adds", list, secs);
    if (n) printf("  %d in flight\n", n);
    long ok[4], failed[4];
    int64_t t[5];
    t[0] = bench_now_ms();
    call_until(c, n, t[0] + 2000);
    ok[0] = calls_ok, failed[0] = calls_failed;
    t[1] = bench_now_ms();
    kill(-pids[0], SIGSTOP);
    call_until(c, n, t[1] + DEADLINE_MS + 500);
    ok[1] = calls_ok, failed[1] = calls_failed;
    t[2] = bench_now_ms();
    call_until(c, n, t[1] + secs * 1000);
    ok[2] = calls_ok, failed[2] = calls_failed;
    t[3] = bench_now_ms();
    kill(-pids[0], SIGCONT);
    call_until(c, n, t[3] + 2000);
    ok[3] = calls_ok, failed[3] = calls_failed;
    t[4] = bench_now_ms();
    double before = rate(ok[0], t[1] - t[0]);
    double whole = rate(ok[2] - ok[0], t[3] - t[1]);
    double steady = rate(ok[2] - ok[1], t[3] - t[2]);
    double after = rate(ok[3] - ok[2], t[4] - t[3]);
    printf("  before the stop         %9.0f calls/s\n", before);
    printf("  the whole stop          %9.0f calls/s  %5.2fx  (%ld failed)\n", whole,
           before > 0 ? whole / before : 0, failed[2] - failed[0]);
    printf("  from a deadline after   %9.0f calls/s  %5.2fx  (%ld failed)\n", steady,
           before > 0 ? steady / before : 0, failed[2] - failed[1]);
    printf("  after the resume        %9.0f calls/s  %5.2fx  (%ld failed)\n", after,
           before > 0 ? after / before : 0, failed[3] - failed[2]);
    shmrpc_client_free(c);
    c = NULL;
    /* New clients with host 1 stopped: connect and first answer. */
    kill(-pids[0], SIGSTOP);
    printf("  new clients, host 1 stopped, connect to first answer:");
    for (int k = 0; k < NEW_CLIENTS; k++) {
        int64_t t0 = bench_now_ms(), sum = 0;
        int rc = shmrpc_client_new(&c, &Bench_service_info, &o);
        if (rc == 0) rc = shmrpc_client_connect(c, list);
        if (rc == 0) rc = bench_add(c, 2, 3, &sum);
        printf(" %lld ms%s", (long long)(bench_now_ms() - t0), rc ? " (failed)" : "");
        shmrpc_client_free(c);
        c = NULL;
    }
    printf("\n");
    kill(-pids[0], SIGCONT);
    status = 0;
out:
    shmrpc_client_free(c);
    for (int i = 0; i < HOSTS; i++) {
        kill(-pids[i], SIGCONT);
        kill(-pids[i], SIGTERM);
    }
    for (int i = 0; i < HOSTS; i++) {
        int64_t until = bench_now_ms() + 5000;
        while (waitpid(pids[i], NULL, WNOHANG) == 0 && bench_now_ms() < until)
            usleep(1000);
        kill(-pids[i], SIGKILL);
        waitpid(pids[i], NULL, 0);
    }
    return status;
}
