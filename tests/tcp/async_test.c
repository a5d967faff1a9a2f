/* SPDX-License-Identifier: MIT */
/* Many calls in flight on one connection (issue 17): shmrpc_client_start and _wait over
 * tcp:// against real server processes on 127.0.0.1, answers out of order and hostile
 * answers through a proxy thread that rewrites the server's frames, per-call deadlines, a
 * server SIGKILLed with calls in flight (none runs twice), a client freed with calls in
 * flight, and the same API over shm:// and inproc://. Every wait is bounded. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "procs.h"

static char addr[64];

static int setup(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    sh->calls = 0;
    sh->running = 0; /* a nap of a server stopped in the middle of it never counted down */
    sh->naps_begun = 0;
    return 0;
}

/* How many times a nap of ms began, by the servers' log of naps: a test that gives each
 * call its own ms tells each call's runs apart. */
static int naps_of(uint32_t ms)
{
    int32_t n = sh->naps_begun, runs = 0;
    assert_true(n <= CALLS_NAPS_LOGGED); /* no nap left out of the log */
    for (int32_t i = 0; i < n; i++)
        runs += sh->nap_ms[i] == ms;
    return runs;
}

static pid_t start_server(const char *at, int workers)
{
    test_server ts = {&Calls_service, &calls_test_handlers, at, workers, 0, NULL, NULL, NULL};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    return pid;
}

static shmrpc_client *connect_to(const char *at)
{
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, at, &rc);
    if (!c || rc) fail_msg("connect %s: %s: %s", at, shmrpc_strerror(rc), shmrpc_errmsg());
    return c;
}

/* Waits for all n calls (bounded by their deadlines): each one's index in order[] as it
 * came. */
static void wait_all(shmrpc_client *c, shmrpc_call **calls, size_t n, size_t *order)
{
    shmrpc_call **left = calloc(n, sizeof *left);
    size_t *idx = calloc(n, sizeof *idx);
    for (size_t i = 0; i < n; i++)
        left[i] = calls[i], idx[i] = i;
    for (size_t got = 0, m = n; got < n; got++) {
        size_t which;
        int rc = shmrpc_client_wait(c, left, m, 20000, &which);
        if (rc) fail_msg("wait: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
        if (order) order[got] = idx[which];
        left[which] = left[m - 1], idx[which] = idx[m - 1];
        m--;
    }
    free(left);
    free(idx);
}

/* Waits for n naps in flight whose ms are ms0 + their index, and frees them: each ended
 * with success (*ok) or its server's death (*died), and none ran twice, by the servers'
 * log; one that succeeded ran exactly once. */
static void wait_naps(shmrpc_client *c, shmrpc_call **calls, int n, uint32_t ms0, int *ok,
                      int *died)
{
    wait_all(c, calls, (size_t)n, NULL);
    for (int i = 0; i < n; i++) {
        int rc = shmrpc_call_status(calls[i]), runs = naps_of(ms0 + (uint32_t)i);
        if (rc == 0)
            ++*ok;
        else if (rc == SHMRPC_EPEERDIED || rc == SHMRPC_EUNAVAIL)
            ++*died;
        else
            fail_msg("call %d: %s", i, shmrpc_strerror(rc));
        if (runs > 1 || (rc == 0 && runs != 1))
            fail_msg("call %d ended with %s and ran %d times", i, shmrpc_strerror(rc), runs);
        shmrpc_call_free(calls[i]);
    }
}

/* 64 adds in flight on one connection, each answered with its own sum; the server ran
 * each once. */
static void in_flight_64(void **state)
{
    (void)state;
    pid_t srv = start_server(addr, 1);
    shmrpc_client *c = connect_to(addr);
    shmrpc_call *calls[64];
    for (int i = 0; i < 64; i++)
        assert_int_equal(calls_add_start(c, i, 1000, &calls[i]), 0);
    for (int i = 0; i < 64; i++) {
        int64_t sum = -1;
        int rc = calls_add_finish(c, calls[i], &sum);
        if (rc) fail_msg("add %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
        assert_int_equal(sum, 1000 + i);
    }
    assert_int_equal(sh->calls, 64);
    /* A synchronous call after them, and one among calls in flight. */
    shmrpc_call *k;
    assert_int_equal(calls_add_start(c, 1, 2, &k), 0);
    int64_t sum = 0;
    assert_int_equal(calls_add(c, 40, 2, &sum), 0);
    assert_int_equal(sum, 42);
    assert_int_equal(calls_add_finish(c, k, &sum), 0);
    assert_int_equal(sum, 3);
    shmrpc_client_free(c);
    assert_true(test_stop_server(srv));
}

/* A health check, which goes through the transport's blocking call, while calls are in
 * flight: it joins them, and their answers still reach them (read alone, it skipped
 * them and they ran into their deadlines). */
static void health_among_calls(void **state)
{
    (void)state;
    pid_t srv = start_server(addr, 1);
    shmrpc_client *c = connect_to(addr);
    shmrpc_call *calls[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(calls_nap_start(c, 20, &calls[i]), 0);
    shmrpc_health state_;
    assert_int_equal(shmrpc_client_health(c, &state_), 0);
    assert_int_equal(state_, SHMRPC_HEALTH_SERVING);
    for (int i = 0; i < 8; i++) {
        shmrpc_client_next_timeout(c, 2000);
        int32_t pid = 0;
        int rc = calls_nap_finish(c, calls[i], &pid);
        if (rc) fail_msg("nap %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
        assert_true(pid > 0);
    }
    shmrpc_client_free(c);
    assert_true(test_stop_server(srv));
}

/* --- a connection's calls run at once on the server (issue 17) --- */

static pid_t start_server_opts(const char *at, int workers, const shmrpc_tcp_opts *tcp)
{
    test_server ts = {&Calls_service, &calls_test_handlers, at, workers, 0, NULL, tcp, NULL};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    return pid;
}

/* A nap of 300 ms and 16 adds behind it on one connection of a one-worker server: every
 * add's answer comes before the nap's, each correct, and the server's statistics count
 * each call once. On a server that runs a connection's calls one after another the adds
 * wait for the nap. */
static void slow_call_does_not_hold_up(void **state)
{
    (void)state;
    pid_t srv = start_server(addr, 1);
    shmrpc_client *c = connect_to(addr);
    shmrpc_call *calls[17];
    shmrpc_client_next_timeout(c, 10000);
    assert_int_equal(calls_nap_start(c, 300, &calls[0]), 0);
    for (int i = 1; i < 17; i++)
        assert_int_equal(calls_add_start(c, i, 100, &calls[i]), 0);
    int64_t t0 = test_now_ms();
    size_t order[17];
    wait_all(c, calls, 17, order);
    size_t nap_at = 0;
    for (size_t k = 0; k < 17; k++)
        if (order[k] == 0) nap_at = k + 1;
    printf("slow first: all done in %lld ms, the nap's answer came %zu of 17\n",
           (long long)(test_now_ms() - t0), nap_at);
    assert_int_equal(order[16], 0); /* the nap's answer last */
    int32_t pid = 0;
    assert_int_equal(calls_nap_finish(c, calls[0], &pid), 0);
    assert_true(pid > 0);
    for (int i = 1; i < 17; i++) {
        int64_t sum = -1;
        assert_int_equal(calls_add_finish(c, calls[i], &sum), 0);
        assert_int_equal(sum, 100 + i);
    }
    assert_int_equal(sh->calls, 17);
    shmrpc_stats *st = NULL;
    assert_int_equal(shmrpc_stats_read(addr, &st), 0);
    for (uint32_t i = 0; i < st->n_methods; i++) {
        const shmrpc_method_stats *m = &st->methods[i];
        uint64_t want = strcmp(m->name, "add") == 0 ? 16 : strcmp(m->name, "nap") == 0 ? 1 : 0;
        if (m->calls != want || m->errors != 0)
            fail_msg("statistics of %s: %llu calls, %llu errors (want %llu, 0)", m->name,
                     (unsigned long long)m->calls, (unsigned long long)m->errors,
                     (unsigned long long)want);
    }
    shmrpc_stats_free(st);
    shmrpc_client_free(c);
    assert_true(test_stop_server(srv));
}

/* 12 naps in flight on one connection run at most max_running at once: 4 of them with
 * max_running 4 (the server stops reading the connection at the bound and reads on as
 * each ends), 1 with max_running 1 (one after another, as before). */
static void running_is_bounded(void **state)
{
    (void)state;
    int bounds[] = {4, 1};
    for (int b = 0; b < 2; b++) {
        shmrpc_tcp_opts tcp = {.max_running = bounds[b]};
        pid_t srv = start_server_opts(addr, 1, &tcp);
        shmrpc_client *c = connect_to(addr);
        sh->most = 0;
        sh->calls = 0;
        sh->running = 0;
        shmrpc_call *calls[12];
        for (int i = 0; i < 12; i++) {
            shmrpc_client_next_timeout(c, 20000);
            assert_int_equal(calls_nap_start(c, 50, &calls[i]), 0);
        }
        wait_all(c, calls, 12, NULL);
        for (int i = 0; i < 12; i++) {
            int32_t pid = 0;
            int rc = calls_nap_finish(c, calls[i], &pid);
            if (rc) fail_msg("nap %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
        }
        printf("bound %d: at most %d naps ran at once\n", bounds[b], (int)sh->most);
        assert_int_equal(sh->most, bounds[b]);
        assert_int_equal(sh->calls, 12);
        shmrpc_client_free(c);
        assert_true(test_stop_server(srv));
    }
}

/* More naps in flight than max_running, each longer than the progress timeout: the calls
 * past the bound wait in the connection's buffer for the server, which is no fault of the
 * client. The connection was dropped at the progress timeout while the naps ran, with no
 * answer for any of them (a helper's review); all now come back. */
static void calls_past_the_bound_are_not_late(void **state)
{
    (void)state;
    shmrpc_tcp_opts tcp = {.max_running = 2, .progress_timeout_ms = 300};
    pid_t srv = start_server_opts(addr, 1, &tcp);
    shmrpc_client *c = connect_to(addr);
    sh->calls = 0;
    shmrpc_call *calls[4];
    for (int i = 0; i < 4; i++) {
        shmrpc_client_next_timeout(c, 20000);
        assert_int_equal(calls_nap_start(c, 500, &calls[i]), 0);
    }
    wait_all(c, calls, 4, NULL);
    for (int i = 0; i < 4; i++) {
        int32_t pid = 0;
        int rc = calls_nap_finish(c, calls[i], &pid);
        if (rc) fail_msg("nap %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
    }
    assert_int_equal(sh->calls, 4);
    shmrpc_client_free(c);
    assert_true(test_stop_server(srv));
}

/* A client of the server at addr, whose one worker's pid goes in *worker and the number
 * of descriptors it holds in *fds; the naps' counters start from 0. */
static shmrpc_client *client_of_worker(int32_t *worker, int *fds)
{
    shmrpc_client *c = connect_to(addr);
    assert_int_equal(calls_nap(c, 0, worker), 0);
    *fds = test_fd_count(*worker);
    assert_true(*fds > 0);
    sh->calls = 0;
    sh->running = 0;
    return c;
}

/* Waits up to 5 s until n naps run; how many do. */
static int naps_running(int n)
{
    int64_t until = test_now_ms() + 5000;
    while (sh->running < n && test_now_ms() < until)
        usleep(2000);
    return sh->running;
}

/* Waits up to 5 s until worker holds fds descriptors again (it let a connection go); how
 * many it holds. */
static int fds_back_to(int32_t worker, int fds)
{
    int64_t until = test_now_ms() + 5000;
    int now;
    while ((now = test_fd_count(worker)) != fds && test_now_ms() < until)
        usleep(2000);
    return now;
}

/* A client SIGKILLed while 8 of its calls (naps of 2 s) run: the worker goes on serving others at
 * once (its thread is not in a handler) and lets the connection go at once, holding no more
 * descriptors than before while all 8 naps still run (it used to keep it until the first answer,
 * sent to the dead peer, drew a reset); the 8 run once each and their answers are dropped. */
static void client_killed_mid_call(void **state)
{
    (void)state;
    pid_t srv = start_server(addr, 1);
    int32_t worker = 0;
    int before;
    shmrpc_client *c = client_of_worker(&worker, &before);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        shmrpc_client *k = test_connect(&Calls_service_info, NULL, addr, &(int){0});
        if (!k) _exit(1);
        shmrpc_call *calls[8];
        for (int i = 0; i < 8; i++) {
            shmrpc_client_next_timeout(k, 20000);
            if (calls_nap_start(k, 2000, &calls[i])) _exit(2);
        }
        pause();
        _exit(0);
    }
    int running = naps_running(8), status;
    kill(child, SIGKILL); /* before any check: a failed one must not leave it behind */
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_int_equal(running, 8);
    int64_t t0 = test_now_ms(), sum = 0;
    assert_int_equal(calls_add(c, 2, 3, &sum), 0);
    assert_int_equal(sum, 5);
    printf("killed client: an add on another connection took %lld ms with 8 naps running\n",
           (long long)(test_now_ms() - t0));
    assert_true(sh->running > 0); /* it did not wait for them */
    int now = fds_back_to(worker, before);
    int naps = sh->running; /* read after: running only goes down */
    printf("killed client: worker descriptors %d before, %d once let go, with %d naps running\n",
           before, now, naps);
    int64_t until = test_now_ms() + 5000;
    while (sh->running > 0 && test_now_ms() < until)
        usleep(10000);
    assert_int_equal(sh->running, 0);
    assert_int_equal(now, before);
    if (naps != 8) fail_msg("the worker kept the connection until a call ended");
    assert_int_equal(test_fd_count(worker), before);
    assert_int_equal(sh->calls, 9); /* the 8 naps once each, and the add */
    assert_int_equal(calls_add(c, 40, 2, &sum), 0);
    assert_int_equal(sum, 42);
    shmrpc_client_free(c);
    assert_true(test_stop_server(srv));
}

/* A client SIGKILLed while its calls wait for a thread of the pool (tcp.max_running 2, both
 * threads in another client's naps): its 2 calls handed out and the 6 behind them never run,
 * since nothing would read their answers; the naps are answered, and the worker serves the
 * next call and lets the connection go. */
static void client_killed_with_calls_queued(void **state)
{
    (void)state;
    shmrpc_tcp_opts tcp = {.max_running = 2};
    pid_t srv = start_server_opts(addr, 1, &tcp);
    int32_t worker = 0;
    int before;
    shmrpc_client *c = client_of_worker(&worker, &before);
    shmrpc_call *naps[2];
    for (int i = 0; i < 2; i++) {
        shmrpc_client_next_timeout(c, 20000);
        assert_int_equal(calls_nap_start(c, 1500, &naps[i]), 0);
    }
    assert_int_equal(naps_running(2), 2);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(ready[0]);
        shmrpc_client *k = test_connect(&Calls_service_info, NULL, addr, &(int){0});
        if (!k) _exit(1);
        shmrpc_call *calls[8];
        for (int i = 0; i < 8; i++) {
            shmrpc_client_next_timeout(k, 20000);
            if (calls_add_start(k, i, 1, &calls[i])) _exit(2);
        }
        if (write(ready[1], "", 1) != 1) _exit(3);
        pause();
        _exit(0);
    }
    close(ready[1]);
    struct pollfd pf = {.fd = ready[0], .events = POLLIN};
    char byte = 0;
    bool sent = poll(&pf, 1, 5000) == 1 && read(ready[0], &byte, 1) == 1;
    int status;
    kill(child, SIGKILL); /* before any check: a failed one must not leave it behind */
    assert_int_equal(waitpid(child, &status, 0), child);
    close(ready[0]);
    assert_true(sent); /* its 8 requests were written whole */
    for (int i = 0; i < 2; i++) {
        int32_t pid = 0;
        int rc = calls_nap_finish(c, naps[i], &pid);
        if (rc) fail_msg("nap %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
    }
    int64_t sum = 0;
    assert_int_equal(calls_add(c, 2, 3, &sum), 0);
    assert_int_equal(sum, 5);
    assert_int_equal(fds_back_to(worker, before), before);
    int64_t ran = sh->calls - 3; /* besides the 2 naps and the add */
    printf("killed client with calls queued: %lld of its 8 calls ran\n", (long long)ran);
    if (ran != 0) fail_msg("%lld of the dead client's 8 calls ran", (long long)ran);
    shmrpc_client_free(c);
    assert_true(test_stop_server(srv));
}

/* --- a proxy that rewrites what the server sends --- */

enum { PX_REVERSE, PX_DUPLICATE, PX_UNKNOWN_ID, PX_HUGE, PX_THEN_HUGE, PX_DRAIN };

typedef struct proxy {
    int lfd, port, mode, hold;
    int swallowed; /* PX_DRAIN: the requests kept from the server */
    char target[64];
    pthread_t t;
} proxy;

static bool send_exact(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return false;
        p += k, n -= (size_t)k;
    }
    return true;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* PX_DRAIN: the client's frames go to the server but for its REQUESTs, which are kept
 * (they never run); at the hold-th, the client is sent a DRAIN as the server would (the
 * HELLO_ACK's magic and version, kind 9, no call, no body). */
static bool drain_step(proxy *px, int cfd, int sfd, uint8_t *cin, size_t *clen,
                       const uint8_t *ack)
{
    while (*clen >= 24 && *clen >= 24 + be(cin + 20, 4)) {
        size_t n = 24 + (size_t)be(cin + 20, 4);
        if (cin[5] != 3) {
            if (!send_exact(sfd, cin, n)) return false;
        } else if (++px->swallowed == px->hold) {
            uint8_t drain[24] = {0};
            memcpy(drain, ack, 5);
            drain[5] = 9;
            if (!send_exact(cfd, drain, sizeof drain)) return false;
        }
        memmove(cin, cin + n, *clen - n);
        *clen -= n;
    }
    return true;
}

/* Forwards the client's bytes as they are (PX_DRAIN: drain_step), and the server's frame
 * by frame: the first (HELLO_ACK) as it is, RESPONSEs as the mode says. Bounded: 20 s of
 * silence ends it. */
static void *proxy_run(void *arg)
{
    proxy *px = arg;
    int cfd = accept(px->lfd, NULL, NULL);
    if (cfd < 0) return NULL;
    int sfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(px->target))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(sfd, (struct sockaddr *)&sa, sizeof sa) != 0) goto out;
    size_t cap = 1 << 20, len = 0, frames = 0, clen = 0;
    uint8_t *in = malloc(cap), buf[65536], ack[24] = {0};
    uint8_t *held = malloc(cap), *cin = malloc(cap);
    size_t held_len = 0, n_held = 0, held_at[256], answers = 0;
    for (;;) {
        struct pollfd p[2] = {{.fd = cfd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        if (poll(p, 2, 20000) <= 0) break;
        if (p[0].revents && px->mode == PX_DRAIN) {
            ssize_t k = recv(cfd, cin + clen, cap - clen, 0);
            if (k <= 0) break;
            clen += (size_t)k;
            if (!drain_step(px, cfd, sfd, cin, &clen, ack)) break;
        } else if (p[0].revents) {
            ssize_t k = recv(cfd, buf, sizeof buf, 0);
            if (k <= 0 || !send_exact(sfd, buf, (size_t)k)) break;
        }
        if (p[1].revents) {
            ssize_t k = recv(sfd, in + len, cap - len, 0);
            if (k <= 0) break;
            len += (size_t)k;
            while (len >= 24 && len >= 24 + be(in + 20, 4)) {
                size_t n = 24 + (size_t)be(in + 20, 4);
                bool first = frames++ == 0, resp = !first && in[5] == 4;
                if (first) memcpy(ack, in, 24);
                if (!resp) {
                    send_exact(cfd, in, n);
                } else if (px->mode == PX_REVERSE) {
                    held_at[n_held++] = held_len;
                    memcpy(held + held_len, in, n);
                    held_len += n;
                    if ((int)n_held == px->hold) {
                        for (size_t i = n_held; i-- > 0;) {
                            size_t end = i + 1 < n_held ? held_at[i + 1] : held_len;
                            send_exact(cfd, held + held_at[i], end - held_at[i]);
                        }
                        n_held = held_len = 0;
                    }
                } else if (px->mode == PX_DUPLICATE) {
                    send_exact(cfd, in, n);
                    send_exact(cfd, in, n);
                } else if (px->mode == PX_UNKNOWN_ID) {
                    put_be(in + 12, be(in + 12, 8) + 1000, 8);
                    send_exact(cfd, in, n);
                } else if (px->mode == PX_THEN_HUGE) {
                    /* The first answer with a header announcing 3.9 GiB right behind it, in
                     * one send; then nothing. */
                    if (answers++ == 0) {
                        memcpy(held, in, n);
                        memcpy(held + n, in, 24);
                        put_be(held + n + 20, 0xF0000000u, 4);
                        send_exact(cfd, held, n + 24);
                    }
                } else { /* a header that announces 3.9 GiB */
                    put_be(in + 20, 0xF0000000u, 4);
                    send_exact(cfd, in, 24);
                }
                memmove(in, in + n, len - n);
                len -= n;
            }
        }
    }
    free(in);
    free(held);
    free(cin);
out:
    close(sfd);
    close(cfd);
    return NULL;
}

static void proxy_start(proxy *px, int mode, int hold)
{
    px->mode = mode;
    px->hold = hold;
    snprintf(px->target, sizeof px->target, "%s", strrchr(addr, ':') + 1);
    px->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(px->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(px->lfd, (struct sockaddr *)&sa, &sl);
    px->port = ntohs(sa.sin_port);
    assert_int_equal(listen(px->lfd, 4), 0);
    assert_int_equal(pthread_create(&px->t, NULL, proxy_run, px), 0);
}

static void proxy_stop(proxy *px)
{
    shutdown(px->lfd, SHUT_RDWR);
    pthread_join(px->t, NULL);
    close(px->lfd);
}

/* Runs n adds through a proxy in mode; their statuses in rcs, sums checked when 0. */
static void through_proxy(int mode, int n, int *rcs, size_t *order)
{
    pid_t srv = start_server(addr, 1);
    shmrpc_client *probe = connect_to(addr); /* the server is up */
    shmrpc_client_free(probe);
    proxy px;
    proxy_start(&px, mode, n);
    char at[64];
    snprintf(at, sizeof at, "tcp://127.0.0.1:%d", px.port);
    shmrpc_client *c = connect_to(at);
    shmrpc_call *calls[64];
    for (int i = 0; i < n; i++)
        assert_int_equal(calls_add_start(c, i, 7, &calls[i]), 0);
    wait_all(c, calls, (size_t)n, order);
    for (int i = 0; i < n; i++) {
        int64_t sum = -1;
        rcs[i] = calls_add_finish(c, calls[i], &sum);
        if (rcs[i] == 0 && sum != i + 7) fail_msg("call %d got the sum %lld", i, (long long)sum);
    }
    shmrpc_client_free(c);
    proxy_stop(&px);
    assert_true(test_stop_server(srv));
}

/* Answers that come in reverse order (the proxy holds all 16, then sends the last
 * first) reach their own calls: each sum is its call's. */
static void out_of_order(void **state)
{
    (void)state;
    int rcs[16];
    through_proxy(PX_REVERSE, 16, rcs, NULL);
    for (int i = 0; i < 16; i++)
        assert_int_equal(rcs[i], 0);
}

/* Each answer sent twice: the second is dropped, every call gets its own sum. */
static void duplicate_answers(void **state)
{
    (void)state;
    int rcs[8];
    through_proxy(PX_DUPLICATE, 8, rcs, NULL);
    for (int i = 0; i < 8; i++)
        assert_int_equal(rcs[i], 0);
}

/* An answer to a request never sent, or a frame larger than the client takes: the
 * connection is dropped and the calls on it fail with SHMRPC_EPROTO, none hangs. */
static void hostile_answers(void **state)
{
    (void)state;
    int modes[] = {PX_UNKNOWN_ID, PX_HUGE};
    for (int m = 0; m < 2; m++) {
        int rcs[8];
        through_proxy(modes[m], 8, rcs, NULL);
        for (int i = 0; i < 8; i++)
            if (rcs[i] != SHMRPC_EPROTO)
                fail_msg("mode %d call %d: %s", m, i, shmrpc_strerror(rcs[i]));
    }
}

/* A header that cannot be read (it announces 3.9 GiB) that came in one piece with the
 * answer before it, and nothing after: the calls still in flight fail with SHMRPC_EPROTO
 * at once, rather than waiting for more bytes until their deadlines. */
static void bad_header_behind_an_answer(void **state)
{
    (void)state;
    int rcs[8], ok = 0;
    through_proxy(PX_THEN_HUGE, 8, rcs, NULL);
    for (int i = 0; i < 8; i++) {
        if (rcs[i] == 0) {
            ok++;
            continue;
        }
        if (rcs[i] != SHMRPC_EPROTO) fail_msg("call %d: %s", i, shmrpc_strerror(rcs[i]));
    }
    assert_int_equal(ok, 1);
}

/* Per-call deadlines: naps of 1.5 s with a 200 ms deadline time out, the adds behind them
 * (5 s) complete, first (the server runs a connection's calls at once); the naps' late
 * answers are dropped and the connection goes on. */
static void deadlines(void **state)
{
    (void)state;
    pid_t srv = start_server(addr, 1);
    shmrpc_client *c = connect_to(addr);
    shmrpc_call *calls[4];
    shmrpc_client_next_timeout(c, 200);
    assert_int_equal(calls_nap_start(c, 1500, &calls[0]), 0);
    assert_int_equal(calls_add_start(c, 1, 1, &calls[1]), 0);
    shmrpc_client_next_timeout(c, 200);
    assert_int_equal(calls_nap_start(c, 1500, &calls[2]), 0);
    assert_int_equal(calls_add_start(c, 2, 2, &calls[3]), 0);
    int64_t t0 = test_now_ms();
    size_t order[4];
    wait_all(c, calls, 4, order);
    int64_t took = test_now_ms() - t0;
    printf("deadlines: all four done in %lld ms\n", (long long)took);
    assert_int_equal(shmrpc_call_status(calls[0]), SHMRPC_ETIMEDOUT);
    assert_int_equal(shmrpc_call_status(calls[2]), SHMRPC_ETIMEDOUT);
    assert_int_equal(order[0] == 1 || order[0] == 3, true); /* the adds did not wait */
    int64_t sum;
    assert_int_equal(calls_add_finish(c, calls[1], &sum), 0);
    assert_int_equal(sum, 2);
    assert_int_equal(calls_add_finish(c, calls[3], &sum), 0);
    assert_int_equal(sum, 4);
    shmrpc_call_free(calls[0]);
    shmrpc_call_free(calls[2]);
    assert_int_equal(calls_add(c, 5, 5, &sum), 0);
    assert_int_equal(sum, 10);
    shmrpc_client_free(c);
    assert_true(test_stop_server(srv));
}

/* The server SIGKILLed with 8 naps in flight: each fails with SHMRPC_EPEERDIED (written,
 * may have run) or SHMRPC_EUNAVAIL, or succeeded. Each call is told apart by its own
 * nap's ms (300 + its index): none ran twice, and one that succeeded ran exactly once. */
static void sigkill_in_flight(void **state)
{
    (void)state;
    pid_t srv = start_server(addr, 1);
    shmrpc_client *c = connect_to(addr);
    shmrpc_call *calls[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(calls_nap_start(c, 300 + (uint32_t)i, &calls[i]), 0);
    int64_t until = test_now_ms() + 5000;
    while (sh->calls == 0 && test_now_ms() < until)
        usleep(1000);
    kill(srv, SIGKILL);
    test_reap(srv, 5000);
    test_tcp_stats_forget(addr); /* what the killed server left */
    int ok = 0, died = 0;
    wait_naps(c, calls, 8, 300, &ok, &died);
    printf("sigkill: %d ok, %d failed, %lld handler calls\n", ok, died, (long long)sh->calls);
    assert_true(died > 0);
    assert_true(sh->calls <= 8);
    shmrpc_client_free(c);
}

/* The parent of pid, from /proc/PID/stat; 0 when it cannot be read. */
static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    int ppid = 0;
    return p && sscanf(p + 1, " %*c %d", &ppid) == 1 ? (pid_t)ppid : 0;
}

/* Two servers, 8 naps in flight over both, and the server running the first nap SIGKILLed:
 * the calls on it fail (SHMRPC_EPEERDIED or SHMRPC_EUNAVAIL) and are never sent again
 * (docs/wire.md: a call in flight on a broken connection is never resent), those on the
 * other succeed. Each call is told apart by its nap's ms (400 + its index): none ran
 * twice, one that succeeded ran exactly once. */
static void sigkill_one_of_two_in_flight(void **state)
{
    (void)state;
    char a[64], b[64], list[128];
    snprintf(a, sizeof a, "tcp://127.0.0.1:%d", test_free_port());
    snprintf(b, sizeof b, "tcp://127.0.0.1:%d", test_free_port());
    snprintf(list, sizeof list, "%s,%s", a, b + strlen("tcp://"));
    pid_t srv[2] = {start_server(a, 1), start_server(b, 1)};
    shmrpc_client_free(connect_to(a)); /* both are up */
    shmrpc_client_free(connect_to(b));
    shmrpc_client *c = connect_to(list);
    sh->calls = 0;
    sh->naps_begun = 0;
    sh->napping = 0;
    shmrpc_call *calls[8];
    for (int i = 0; i < 8; i++) {
        shmrpc_client_next_timeout(c, 10000);
        assert_int_equal(calls_nap_start(c, 400 + (uint32_t)i, &calls[i]), 0);
    }
    int64_t until = test_now_ms() + 5000;
    while (sh->napping == 0 && test_now_ms() < until)
        usleep(1000);
    pid_t worker = sh->napping, parent = parent_of(worker);
    int killed = parent == srv[0] || worker == srv[0] ? 0 : 1;
    if (parent != srv[killed] && worker != srv[killed])
        fail_msg("the napping worker %d is neither server's", (int)worker);
    kill(srv[killed], SIGKILL);
    test_reap(srv[killed], 5000);
    test_tcp_stats_forget(killed ? b : a);
    int ok = 0, died = 0;
    wait_naps(c, calls, 8, 400, &ok, &died);
    printf("sigkill of one of two: %d ok, %d failed, %lld handler calls\n", ok, died,
           (long long)sh->calls);
    assert_true(died > 0); /* the nap that ran on the killed server, at least */
    shmrpc_client_free(c);
    assert_true(test_stop_server(srv[1 - killed]));
}

/* One of two servers told to stop (SIGTERM) with calls in flight on it: it answers the
 * call it runs, then sends its DRAIN; the calls it had not run move to the other server,
 * so every call succeeds and each ran once. */
static void drain_moves_calls(void **state)
{
    (void)state;
    char a[64], b[64], list[128];
    snprintf(a, sizeof a, "tcp://127.0.0.1:%d", test_free_port());
    snprintf(b, sizeof b, "tcp://127.0.0.1:%d", test_free_port());
    snprintf(list, sizeof list, "%s,%s", a, b + strlen("tcp://"));
    pid_t sa = start_server(a, 1), sb = start_server(b, 1);
    shmrpc_client_free(connect_to(b)); /* both are up */
    shmrpc_client *c = connect_to(list);
    sh->calls = 0;
    sh->naps_begun = 0;
    shmrpc_call *calls[8];
    for (int i = 0; i < 8; i++) { /* each told apart by its nap's ms, 150 + its index */
        shmrpc_client_next_timeout(c, 10000);
        assert_int_equal(calls_nap_start(c, 150 + (uint32_t)i, &calls[i]), 0);
    }
    int64_t until = test_now_ms() + 5000;
    while (sh->calls < 2 && test_now_ms() < until)
        usleep(1000);
    kill(sa, SIGTERM);
    size_t order[8];
    wait_all(c, calls, 8, order);
    for (int i = 0; i < 8; i++) {
        int32_t pid = 0;
        int rc = calls_nap_finish(c, calls[i], &pid);
        if (rc) fail_msg("nap %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
        int runs = naps_of(150 + (uint32_t)i);
        if (runs != 1) fail_msg("nap %d succeeded and ran %d times", i, runs);
    }
    printf("drain: 8 calls ok, %lld handler calls\n", (long long)sh->calls);
    assert_int_equal(sh->calls, 8); /* none ran twice */
    shmrpc_client_free(c);
    test_reap(sa, 5000);
    assert_true(test_stop_server(sb));
}

/* A server that says DRAIN with calls in flight on its connection that it did not run
 * (docs/wire.md, "Drain": it answers every call it ran first): they move to the other
 * endpoint, each runs there once and gets its own answer. The first endpoint is a proxy
 * that keeps the requests from its server, and drains at the first; drain_moves_calls's
 * server has run or answered its calls by then, and this path did not run (found by
 * scripts/coverage.sh). */
static void drain_with_calls_unrun(void **state)
{
    (void)state;
    char b[64], list[160];
    snprintf(b, sizeof b, "tcp://127.0.0.1:%d", test_free_port());
    pid_t sa = start_server(addr, 1), sb = start_server(b, 1);
    shmrpc_client_free(connect_to(addr)); /* both are up */
    shmrpc_client_free(connect_to(b));
    proxy px = {0};
    proxy_start(&px, PX_DRAIN, 1);
    snprintf(list, sizeof list, "tcp://127.0.0.1:%d,%s", px.port, b + strlen("tcp://"));
    shmrpc_client *c = connect_to(list);
    sh->calls = 0;
    enum { N = 8 };
    shmrpc_call *calls[N];
    for (int i = 0; i < N; i++) {
        shmrpc_client_next_timeout(c, 10000);
        assert_int_equal(calls_add_start(c, i, 7, &calls[i]), 0);
    }
    wait_all(c, calls, N, NULL);
    for (int i = 0; i < N; i++) {
        int64_t sum = -1;
        int rc = calls_add_finish(c, calls[i], &sum);
        if (rc) fail_msg("add %d: %s: %s", i, shmrpc_strerror(rc), shmrpc_errmsg());
        assert_int_equal(sum, i + 7);
    }
    shmrpc_client_free(c);
    proxy_stop(&px);
    printf("drain with %d call(s) kept from the server: %d ok, %lld handler calls\n",
           px.swallowed, N, (long long)sh->calls);
    assert_true(px.swallowed >= 1); /* the DRAIN came with a call in flight */
    assert_int_equal(sh->calls, N); /* each ran once, on b */
    assert_true(test_stop_server(sa));
    assert_true(test_stop_server(sb));
}

/* A client freed with calls in flight: they end with SHMRPC_ECLOSED, and are freed after
 * it (the sanitizer build checks nothing leaks). */
static void free_with_calls(void **state)
{
    (void)state;
    pid_t srv = start_server(addr, 1);
    shmrpc_client *c = connect_to(addr);
    shmrpc_call *calls[16];
    for (int i = 0; i < 16; i++)
        assert_int_equal(calls_nap_start(c, 20, &calls[i]), 0);
    shmrpc_client_free(c);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(shmrpc_call_status(calls[i]), SHMRPC_ECLOSED);
        shmrpc_call_free(calls[i]);
    }
    assert_true(test_stop_server(srv));
}

/* shm:// (calls in flight on lanes: tests/shm/inflight_test.c) and inproc:// (start runs
 * the call, wait returns it): the same API, answers waited for in reverse order. */
static void other_transports(void **state)
{
    (void)state;
    char at[2][64];
    snprintf(at[0], sizeof at[0], "shm://async_test_%d", (int)getpid());
    snprintf(at[1], sizeof at[1], "inproc://async_test_%d", (int)getpid());
    pid_t srv = start_server(at[0], 1);
    for (int t = 0; t < 2; t++) {
        shmrpc_server *s = NULL;
        if (t == 1) {
            assert_int_equal(shmrpc_server_new(&s, NULL), 0);
            assert_int_equal(shmrpc_server_register(s, &Calls_service, &calls_test_handlers, NULL),
                             0);
            assert_int_equal(shmrpc_server_listen(s, at[1]), 0);
        }
        shmrpc_client *c = connect_to(at[t]);
        shmrpc_call *calls[4];
        for (int i = 0; i < 4; i++)
            assert_int_equal(calls_add_start(c, i, 10, &calls[i]), 0);
        for (int i = 3; i >= 0; i--) {
            int64_t sum;
            assert_int_equal(calls_add_finish(c, calls[i], &sum), 0);
            assert_int_equal(sum, 10 + i);
        }
        shmrpc_client_free(c);
        shmrpc_server_free(s);
    }
    assert_true(test_stop_server(srv));
}

int main(void)
{
    if (calls_shared_map() != 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    alarm(280);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(in_flight_64, setup),
        cmocka_unit_test_setup(health_among_calls, setup),
        cmocka_unit_test_setup(out_of_order, setup),
        cmocka_unit_test_setup(duplicate_answers, setup),
        cmocka_unit_test_setup(hostile_answers, setup),
        cmocka_unit_test_setup(bad_header_behind_an_answer, setup),
        cmocka_unit_test_setup(deadlines, setup),
        cmocka_unit_test_setup(slow_call_does_not_hold_up, setup),
        cmocka_unit_test_setup(running_is_bounded, setup),
        cmocka_unit_test_setup(calls_past_the_bound_are_not_late, setup),
        cmocka_unit_test_setup(client_killed_mid_call, setup),
        cmocka_unit_test_setup(client_killed_with_calls_queued, setup),
        cmocka_unit_test_setup(sigkill_in_flight, setup),
        cmocka_unit_test_setup(sigkill_one_of_two_in_flight, setup),
        cmocka_unit_test_setup(drain_moves_calls, setup),
        cmocka_unit_test_setup(drain_with_calls_unrun, setup),
        cmocka_unit_test_setup(free_with_calls, setup),
        cmocka_unit_test_setup(other_transports, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
