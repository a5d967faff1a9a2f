/* SPDX-License-Identifier: MIT */
/* Loaned buffers (issue 18), with real processes: a client writes its request into the
 * room shmrpc_client_loan gives (over shm://, its channel) and reads the answer where it
 * came; a handler reads its request in place (shmrpc_server_set_in_place) and answers in
 * its loan (shmrpc_ctx_loan), also when the answer must grow the channel; loans too big
 * are refused with SHMRPC_ETOOBIG; a worker or a client killed with SIGKILL in the middle
 * of a loaned call; a client that rewrites its request while the handler reads it does
 * not crash the server; a loan in a forked child; an answer above the client's own
 * maximum; and the same calls over tcp:// and inproc://. Every child has an alarm() and is
 * reaped within a bound; servers are stopped and their segments checked gone. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "procs.h"

enum { SERVER_MAX = 1 << 20 }; /* the server's maximum message */

static char addr[64];
static int addr_n;

/* Shared with the servers' workers: mapped before any fork. */
typedef struct loan_shared {
    _Atomic int64_t in_place;  /* answers whose loan was the request's own bytes */
    _Atomic int64_t copied;    /* answers whose loan was elsewhere (tcp://, small) */
    _Atomic int32_t napping;   /* the pid of a worker in a 'N' call, or 0 */
    _Atomic int32_t loan_rc;   /* what the last 'B' call's loan returned */
    _Atomic int64_t scribbled; /* 'V' calls that saw their request change under them */
} loan_shared;

static loan_shared *ls;

/* --- the server: echo's handler, reading in place and answering in its loan ------------
 * The request's first byte says what to do:
 *   'E' echo: the answer is the request, in its loan (over shm:// the same bytes);
 *   'G' grow: an answer of the size in bytes 1..4 (little endian), larger than the
 *       request, each byte pattern(i), then the request's last byte, read after the loan;
 *   'B' a loan above the server's maximum;
 *   'N' nap: publishes the worker's pid, sleeps the ms in bytes 1..4, then echoes;
 *   'V' validate: for 200 ms reads a count (bytes 1..4) and that many bytes after it, as
 *       a checking handler must: the count copied once and bounded, never read twice.
 * Anything else is echoed. */

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 31 + 7);
}

static uint32_t u32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static int64_t now_ms(void)
{
    return test_now_ms();
}

static int answer_echo(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    void *room;
    int rc = shmrpc_ctx_loan(ctx, data.len, &room);
    if (rc != 0) return rc;
    if (room == data.ptr) {
        ls->in_place++;
    } else {
        ls->copied++;
        memmove(room, data.ptr, data.len);
    }
    *out = shmrpc_bytes_of(room, data.len);
    return 0;
}

/* Reads as a handler that validates must: what it checks, it copies first. */
static int validate(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    uint64_t sum = 0;
    bool changed = false;
    uint8_t first = data.len > 5 ? data.ptr[5] : 0;
    for (int64_t until = now_ms() + 200; now_ms() < until;) {
        uint32_t n = u32_at(data.ptr + 1); /* copied once: the client may rewrite it */
        if (n > data.len - 5) n = (uint32_t)(data.len - 5);
        for (uint32_t i = 0; i < n; i++)
            sum += data.ptr[5 + i];
        if (data.ptr[5] != first) changed = true;
    }
    if (changed) ls->scribbled++;
    void *room;
    int rc = shmrpc_ctx_loan(ctx, sizeof sum, &room);
    if (rc != 0) return rc;
    memcpy(room, &sum, sizeof sum);
    *out = shmrpc_bytes_of(room, sizeof sum);
    return 0;
}

static int h_loan(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    sh->calls++;
    char op = data.len ? (char)data.ptr[0] : 'E';
    if (op == 'G' && data.len >= 5) {
        uint32_t n = u32_at(data.ptr + 1);
        const uint8_t *last = data.ptr + data.len - 1;
        void *room;
        int rc = shmrpc_ctx_loan(ctx, (size_t)n + 1, &room);
        if (rc != 0) return rc;
        uint8_t *p = room;
        uint8_t tail = *last; /* the request, through the mapping it was read in */
        for (uint32_t i = 0; i < n; i++)
            p[i] = pattern(i);
        p[n] = tail;
        *out = shmrpc_bytes_of(p, (size_t)n + 1);
        return 0;
    }
    if (op == 'B') {
        void *room;
        int rc = shmrpc_ctx_loan(ctx, (size_t)SERVER_MAX + 1, &room);
        ls->loan_rc = rc;
        return rc;
    }
    if (op == 'N' && data.len >= 5) {
        ls->napping = (int32_t)getpid();
        uint32_t ms = u32_at(data.ptr + 1);
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        ls->napping = 0;
    }
    if (op == 'V' && data.len >= 5) return validate(ctx, data, out);
    return answer_echo(ctx, data, out);
}

static Calls_handlers handlers;

/* Serves echo with h_loan on s, reading its requests in place. */
static int serve_loans(shmrpc_server *s)
{
    handlers = calls_test_handlers;
    handlers.echo = h_loan;
    int rc = shmrpc_server_register(s, &Calls_service, &handlers, NULL);
    if (rc == 0) rc = shmrpc_server_set_in_place(s, CALLS_METHOD_ECHO, 1);
    return rc;
}

/* A server of serve_loans at where (test_start_server). */
static pid_t start_server(const char *where, int workers)
{
    test_server ts = {
        .addr = where, .workers = workers, .max_msg = SERVER_MAX, .configure = serve_loans};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    return pid;
}

static int setup(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://shmloan-%d-%d", (int)getpid(), addr_n++);
    memset(ls, 0, sizeof *ls);
    sh->calls = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (test_shm_segments(addr) != 0) {
        fprintf(stderr, "segments of %s left behind\n", addr);
        return -1;
    }
    return 0;
}

/* A client in a child process (cmocka's asserts belong to the parent); the child exits 9
 * when it cannot connect, and dies of a fault as a process would. */
static shmrpc_client *child_connect(const char *where)
{
    alarm(30);
    const int faults[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
        signal(faults[i], SIG_DFL);
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, where, &rc);
    if (rc == 0) return c;
    fprintf(stderr, "connect %s: %s: %s\n", where, shmrpc_strerror(rc), shmrpc_errmsg());
    shmrpc_client_free(c);
    _exit(9);
}

static const char *ended(int status, char *buf, size_t n)
{
    if (status == -1)
        snprintf(buf, n, "did not end in time (killed)");
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
    return buf;
}

/* Reaps the client child, stops the server, and fails unless both ended well. */
static void finish(pid_t child, pid_t server)
{
    int status = test_reap(child, 30000);
    bool stopped = test_stop_server(server);
    char why[128];
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the client %s", ended(status, why, sizeof why));
    assert_true(stopped);
}

/* An echo through a loan of n bytes: the answer must be the request, and (where
 * answered_in_place) be read where the request was written. 0, or why not. */
static const char *loaned_echo(shmrpc_client *c, size_t n, bool answered_in_place)
{
    void *room;
    int rc = shmrpc_client_loan(c, CALLS_METHOD_ECHO, n, &room);
    if (rc != 0) return shmrpc_errmsg();
    uint8_t *p = room;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + n);
    if (n) p[0] = 'E';
    shmrpc_bytes out;
    rc = shmrpc_client_call_loaned(c, n, &out);
    if (rc != 0) return shmrpc_errmsg();
    if (out.len != n) return "an answer of another length";
    for (size_t i = 1; i < n; i++)
        if (out.ptr[i] != (uint8_t)(i * 7 + n)) return "an answer that is not the request";
    if (answered_in_place && out.ptr != room) return "an answer not where the request was";
    return NULL;
}

/* Loans a request of 64 KiB that makes its worker nap for ms ('N') and sends it: the
 * call's status. */
static int call_napping(shmrpc_client *c, uint32_t ms)
{
    void *room;
    int rc = shmrpc_client_loan(c, CALLS_METHOD_ECHO, 65536, &room);
    if (rc != 0) return rc;
    uint8_t *p = room;
    p[0] = 'N';
    put_u32(p + 1, ms);
    shmrpc_bytes out;
    return shmrpc_client_call_loaned(c, 65536, &out);
}

/* The pid of the worker napping in a 'N' call, once one does (within 10 s), or 0. */
static int32_t napping_worker(void)
{
    int32_t pid = 0;
    for (int64_t until = now_ms() + 10000; !pid && now_ms() < until; usleep(1000))
        pid = ls->napping;
    return pid;
}

/* --- tests --- */

/* Loaned echoes of 0 B to 1 MiB over shm://: the client writes into its channel, the
 * handler answers in its loan, which is the request's own bytes (no copy on either
 * side: the answer is read where the request was written), and ordinary calls go on in
 * between. */
static void loaned_calls_answer_in_place(void **state)
{
    (void)state;
    pid_t server = start_server(addr, 1);
    pid_t child = fork();
    if (child == 0) {
        shmrpc_client *c = child_connect(addr);
        const size_t sizes[] = {0, 1, 24, 25, 4096, 65536, 16, SERVER_MAX, 100, 65536};
        for (int round = 0; round < 3; round++)
            for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
                /* Small answers ride in the channel's state line, not the data area. */
                const char *why = loaned_echo(c, sizes[k], sizes[k] > 24);
                if (why) {
                    fprintf(stderr, "a loaned echo of %zu bytes: %s\n", sizes[k], why);
                    _exit(1);
                }
                int64_t sum = 0;
                if (calls_add(c, 40, 2, &sum) != 0 || sum != 42) _exit(2);
            }
        /* A loan given up by another call, and a call without a loan. */
        void *room;
        shmrpc_bytes out;
        if (shmrpc_client_loan(c, CALLS_METHOD_ECHO, 100, &room) != 0) _exit(3);
        int64_t sum;
        if (calls_add(c, 1, 2, &sum) != 0) _exit(3);
        if (shmrpc_client_call_loaned(c, 10, &out) != SHMRPC_EINVAL) _exit(4);
        if (shmrpc_client_loan(c, CALLS_METHOD_ECHO, 100, &room) != 0) _exit(3);
        if (shmrpc_client_call_loaned(c, 101, &out) != SHMRPC_EINVAL) _exit(5);
        if (shmrpc_client_loan(c, 99, 100, &room) != SHMRPC_ENOENT) _exit(6);
        shmrpc_client_free(c);
        _exit(0);
    }
    finish(child, server);
    /* Every answer above 24 bytes was its request's own bytes: the handler copied none. */
    assert_int_equal(ls->copied, 3 * 4); /* 0, 1, 16 and 24 bytes: in the state's line */
    assert_int_equal(ls->in_place, 3 * 6);
}

/* An answer larger than the request grows the channel while the handler reads its request
 * in place: the request stays readable (the old mapping is kept until the answer is sent)
 * and the client follows the channel to read the answer in it. */
static void answers_that_grow_the_channel(void **state)
{
    (void)state;
    pid_t server = start_server(addr, 1);
    pid_t child = fork();
    if (child == 0) {
        shmrpc_client *c = child_connect(addr);
        const uint32_t answers[] = {4096, 65536, 300000, SERVER_MAX - 1, 100, SERVER_MAX - 1};
        for (size_t k = 0; k < sizeof answers / sizeof answers[0]; k++) {
            uint32_t n = answers[k];
            void *room;
            size_t len = 64;
            if (shmrpc_client_loan(c, CALLS_METHOD_ECHO, len, &room) != 0) _exit(1);
            uint8_t *p = room;
            memset(p, 'x', len);
            p[0] = 'G';
            put_u32(p + 1, n);
            p[len - 1] = (uint8_t)(k + 1);
            shmrpc_bytes out;
            if (shmrpc_client_call_loaned(c, len, &out) != 0) {
                fprintf(stderr, "an answer of %u: %s\n", n, shmrpc_errmsg());
                _exit(2);
            }
            if (out.len != (size_t)n + 1 || out.ptr[n] != (uint8_t)(k + 1)) _exit(3);
            for (uint32_t i = 0; i < n; i++)
                if (out.ptr[i] != pattern(i)) _exit(4);
        }
        shmrpc_client_free(c);
        _exit(0);
    }
    finish(child, server);
}

/* Loans above the client's or the server's maximum, and a handler's loan above the
 * server's: SHMRPC_ETOOBIG with a message saying so, nothing sent, and the connection goes
 * on. */
static void too_big_loans_are_refused(void **state)
{
    (void)state;
    pid_t server = start_server(addr, 1);
    pid_t child = fork();
    if (child == 0) {
        shmrpc_client *c = child_connect(addr);
        void *room = &room;
        int rc = shmrpc_client_loan(c, CALLS_METHOD_ECHO, (size_t)SERVER_MAX + 1, &room);
        if (rc != SHMRPC_ETOOBIG || room != NULL || !strstr(shmrpc_errmsg(), "maximum")) {
            fprintf(stderr, "above the server's maximum: %s: %s\n", shmrpc_status_name(rc),
                    shmrpc_errmsg());
            _exit(1);
        }
        shmrpc_bytes out;
        if (shmrpc_client_call_loaned(c, 1, &out) != SHMRPC_EINVAL) _exit(2); /* no loan */
        /* The server's handler asks for too much: its call fails, the channel goes on. */
        if (shmrpc_client_loan(c, CALLS_METHOD_ECHO, 1, &room) != 0) _exit(3);
        *(uint8_t *)room = 'B';
        rc = shmrpc_client_call_loaned(c, 1, &out);
        if (rc != SHMRPC_ETOOBIG || !strstr(shmrpc_errmsg(), "loan")) {
            fprintf(stderr, "a handler's loan too big: %s: %s\n", shmrpc_status_name(rc),
                    shmrpc_errmsg());
            _exit(4);
        }
        const char *why = loaned_echo(c, 5000, true);
        if (why) {
            fprintf(stderr, "after: %s\n", why);
            _exit(5);
        }
        shmrpc_client_free(c);
        /* A client whose own maximum is lower. */
        shmrpc_client_opts o;
        shmrpc_client_opts_init(&o);
        o.max_msg_bytes = 4096;
        c = test_connect(&Calls_service_info, &o, addr, &rc);
        if (rc != 0) _exit(6);
        rc = shmrpc_client_loan(c, CALLS_METHOD_ECHO, 4097, &room);
        if (rc != SHMRPC_ETOOBIG || !strstr(shmrpc_errmsg(), "client's maximum")) _exit(7);
        if ((why = loaned_echo(c, 4096, true)) != NULL) _exit(8);
        shmrpc_client_free(c);
        _exit(0);
    }
    finish(child, server);
    assert_int_equal(ls->loan_rc, SHMRPC_ETOOBIG);
}

/* The worker is killed (SIGKILL) while it reads a loaned request in place: the caller is
 * told SHMRPC_EPEERDIED, and its next loaned call is served by the replacement. */
static void worker_killed_mid_loaned_call(void **state)
{
    (void)state;
    pid_t server = start_server(addr, 1);
    pid_t child = fork();
    if (child == 0) {
        shmrpc_client *c = child_connect(addr);
        if (loaned_echo(c, 65536, true)) _exit(1);
        int rc = call_napping(c, 5000);
        if (rc != SHMRPC_EPEERDIED) {
            fprintf(stderr, "the worker's death: %s: %s\n", shmrpc_status_name(rc),
                    shmrpc_errmsg());
            _exit(3);
        }
        /* The replacement (no sooner than 100 ms after the first worker started). */
        const char *why = "never tried";
        for (int i = 0; i < 200 && why; i++) {
            why = loaned_echo(c, 65536, true);
            if (why) usleep(10000);
        }
        if (why) {
            fprintf(stderr, "after the worker's death: %s\n", why);
            _exit(4);
        }
        shmrpc_client_free(c);
        _exit(0);
    }
    int32_t victim = napping_worker();
    if (victim) kill(victim, SIGKILL);
    finish(child, server);
    assert_true(victim > 0);
}

/* The client is killed (SIGKILL) while a worker reads its loaned request in place: the
 * worker finishes the call into a channel nobody reads, and serves the next client. */
static void client_killed_mid_loaned_call(void **state)
{
    (void)state;
    pid_t server = start_server(addr, 1);
    pid_t victim = fork();
    if (victim == 0) {
        shmrpc_client *c = child_connect(addr);
        call_napping(c, 1500); /* longer than a loaded machine takes to find and kill it */
        _exit(3);              /* killed before */
    }
    int32_t worker = napping_worker();
    kill(victim, SIGKILL);
    int status = test_reap(victim, 5000);
    assert_true(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_true(worker > 0);
    pid_t child = fork();
    if (child == 0) {
        shmrpc_client *c = child_connect(addr);
        for (int i = 0; i < 20; i++)
            if (loaned_echo(c, 65536, true)) _exit(1);
        shmrpc_client_free(c);
        _exit(0);
    }
    finish(child, server);
    assert_int_equal(kill(worker, 0), -1); /* gone with its server, not before */
}

/* A thread of the client rewrites its request with random bytes, the count included, while
 * the handler reads it in place for 200 ms: the handler, copying what it checks, reads
 * within the request whatever it says; the worker lives, and serves the next call. */
typedef struct scribbler {
    uint8_t *p;
    size_t n;
    _Atomic int stop;
} scribbler;

static void *scribble(void *arg)
{
    scribbler *s = arg;
    uint64_t x = 88172645463325252ull;
    while (!atomic_load(&s->stop))
        for (size_t i = 1; i < s->n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((volatile uint8_t *)s->p)[i] = (uint8_t)x;
        }
    return NULL;
}

static void rewritten_request_does_not_crash_the_server(void **state)
{
    (void)state;
    pid_t server = start_server(addr, 1);
    pid_t child = fork();
    if (child == 0) {
        shmrpc_client *c = child_connect(addr);
        for (int round = 0; round < 3; round++) {
            void *room;
            size_t n = 65536;
            if (shmrpc_client_loan(c, CALLS_METHOD_ECHO, n, &room) != 0) _exit(1);
            uint8_t *p = room;
            memset(p, 0, n);
            p[0] = 'V';
            put_u32(p + 1, (uint32_t)n - 5);
            scribbler s = {.p = p, .n = 4096};
            pthread_t t;
            if (pthread_create(&t, NULL, scribble, &s) != 0) _exit(2);
            shmrpc_bytes out;
            int rc = shmrpc_client_call_loaned(c, n, &out);
            atomic_store(&s.stop, 1);
            pthread_join(t, NULL);
            if (rc != 0 || out.len != 8) {
                fprintf(stderr, "a rewritten request: %s: %s\n", shmrpc_status_name(rc),
                        shmrpc_errmsg());
                _exit(3);
            }
            if (loaned_echo(c, 65536, true)) _exit(4);
        }
        shmrpc_client_free(c);
        _exit(0);
    }
    finish(child, server);
    assert_true(ls->scribbled > 0); /* the handler did see its request change */
}

/* The same calls over tcp:// and inproc://: the loan is the client's request buffer, the
 * handler's loan memory of its arena, and the answers are right. */
static void loans_over_tcp_and_inproc(void **state)
{
    (void)state;
    char tcp[64];
    snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%d", test_free_port());
    pid_t server = start_server(tcp, 1);
    pid_t child = fork();
    if (child == 0) {
        shmrpc_client *c = child_connect(tcp);
        const size_t sizes[] = {0, 16, 4096, 65536, SERVER_MAX / 2};
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
            if (loaned_echo(c, sizes[k], false)) _exit(1);
        /* Over tcp:// the client learns the server's maximum from the call. */
        void *room;
        shmrpc_bytes out;
        if (shmrpc_client_loan(c, CALLS_METHOD_ECHO, (size_t)SERVER_MAX + 1, &room) != 0 ||
            shmrpc_client_call_loaned(c, (size_t)SERVER_MAX + 1, &out) != SHMRPC_ETOOBIG)
            _exit(2);
        shmrpc_client_free(c);
        /* inproc://: a server in this process, calls on this thread. */
        char where[64];
        snprintf(where, sizeof where, "inproc://shmloan-%d", (int)getpid());
        shmrpc_server *s;
        if (shmrpc_server_new(&s, NULL) != 0) _exit(3);
        if (serve_loans(s) != 0 || shmrpc_server_set_in_place(s, 99, 1) != SHMRPC_EINVAL ||
            shmrpc_server_set_in_place(s, CALLS_METHOD_ADD, 1) != SHMRPC_EINVAL ||
            !strstr(shmrpc_errmsg(), "@raw") || shmrpc_server_listen(s, where) != 0)
            _exit(4);
        c = child_connect(where);
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
            if (loaned_echo(c, sizes[k], false)) _exit(6);
        shmrpc_client_free(c);
        shmrpc_server_free(s);
        _exit(0);
    }
    finish(child, server);
    assert_int_equal(ls->in_place, 0); /* tcp://: the worker's own copy, never the client's */
}

/* A loan is its connection's, and the connection the process's that opened it: a child
 * forked with a loan in hand can neither send it nor take another (SHMRPC_EINVAL, naming
 * the owner's pid), and the owner's loan still goes through after it, answered with its
 * bytes. 0, or where it went wrong. */
static int loan_across_fork(shmrpc_client *c)
{
    void *room;
    if (shmrpc_client_loan(c, CALLS_METHOD_ECHO, 64, &room) != 0) return 1;
    uint8_t *p = room;
    for (size_t i = 0; i < 64; i++)
        p[i] = pattern(i);
    p[0] = 'E';
    char says[128];
    snprintf(says, sizeof says, "belongs to the process that opened it (pid %d)", (int)getpid());
    pid_t child = fork();
    if (child == 0) {
        shmrpc_bytes out;
        int rc = shmrpc_client_call_loaned(c, 64, &out);
        if (rc != SHMRPC_EINVAL || !strstr(shmrpc_errmsg(), says)) _exit(1);
        rc = shmrpc_client_loan(c, CALLS_METHOD_ECHO, 64, &room);
        if (rc != SHMRPC_EINVAL || !strstr(shmrpc_errmsg(), says)) _exit(2);
        _exit(0);
    }
    int status = test_reap(child, 10000);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return 10 + (WIFEXITED(status) ? WEXITSTATUS(status) : 9);
    shmrpc_bytes out;
    if (shmrpc_client_call_loaned(c, 64, &out) != 0 || out.len != 64) return 3;
    for (size_t i = 1; i < 64; i++)
        if (out.ptr[i] != pattern(i)) return 4;
    return 0;
}

static void loans_stay_with_their_process(void **state)
{
    (void)state;
    pid_t server = start_server(addr, 1);
    pid_t child = fork();
    if (child == 0) {
        shmrpc_client *c = child_connect(addr);
        int rc = loan_across_fork(c);
        if (rc) fprintf(stderr, "a loan across a fork: step %d\n", rc);
        shmrpc_client_free(c);
        _exit(rc);
    }
    finish(child, server);
}

/* An answer larger than the client's own maximum (below the server's: 'G' answers 100000
 * bytes and the request's last byte) is refused by the client with SHMRPC_ETOOBIG and a
 * message that says so, as inproc:// says it; the connection serves the next call. 0, or
 * where it went wrong. */
static int answer_above_own_maximum(shmrpc_client *c)
{
    shmrpc_buf *req = shmrpc_client_request(c);
    uint8_t grow[5] = {'G'};
    put_u32(grow + 1, 100000);
    if (shmrpc_buf_append(req, grow, sizeof grow) != 0) return 1;
    shmrpc_bytes out = {0};
    int rc = shmrpc_client_call(c, CALLS_METHOD_ECHO, &out);
    fprintf(stderr, "an answer of 100001 bytes to a client of 4096: %s: %s\n", shmrpc_strerror(rc),
            shmrpc_errmsg());
    if (rc != SHMRPC_ETOOBIG) return 2;
    if (strcmp(shmrpc_errmsg(), "a response of 100001 bytes is larger than the client's "
                                "maximum of 4096 bytes") != 0)
        return 3;
    return loaned_echo(c, 100, true) ? 4 : 0;
}

static void answers_above_the_clients_maximum(void **state)
{
    (void)state;
    pid_t server = start_server(addr, 1);
    pid_t child = fork();
    if (child == 0) {
        alarm(30);
        shmrpc_client_opts o;
        shmrpc_client_opts_init(&o);
        o.max_msg_bytes = 4096;
        int rc;
        shmrpc_client *c = test_connect(&Calls_service_info, &o, addr, &rc);
        if (rc != 0) _exit(9);
        rc = answer_above_own_maximum(c);
        shmrpc_client_free(c);
        _exit(rc);
    }
    finish(child, server);
}

int main(void)
{
    if (calls_shared_map() != 0) return 1;
    ls = mmap(NULL, sizeof *ls, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ls == MAP_FAILED) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(loaned_calls_answer_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(answers_that_grow_the_channel, setup, teardown),
        cmocka_unit_test_setup_teardown(too_big_loans_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(worker_killed_mid_loaned_call, setup, teardown),
        cmocka_unit_test_setup_teardown(client_killed_mid_loaned_call, setup, teardown),
        cmocka_unit_test_setup_teardown(rewritten_request_does_not_crash_the_server, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(loans_over_tcp_and_inproc, setup, teardown),
        cmocka_unit_test_setup_teardown(loans_stay_with_their_process, setup, teardown),
        cmocka_unit_test_setup_teardown(answers_above_the_clients_maximum, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
