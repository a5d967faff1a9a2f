/* SPDX-License-Identifier: MIT */
/* The tcp:// side with a system call or an allocation failing (common/faults.h, issue 40):
 * a secret file read, and a listen, with each of their calls failing in turn; and a
 * serving worker whose next allocation, thread or epoll registration fails, armed in the
 * worker by a signal while it serves: a call without memory for its job is answered
 * SHMRPC_ENOMEM and not run, a call with no thread to run it runs on the worker's own
 * thread, a connection the worker cannot take is closed and nothing of it kept; the worker
 * serves on each time. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "faults.h"
#include "transport/tcp/frame.h"
#include "core/core.h" /* shmrpc__status_known */
#include "raw_peer.h"
#include "procs.h"

static char addr[64];
static int port;
static const shmrpc_tcp_opts *server_tcp; /* the next server's tcp settings, or NULL */

/* What a worker arms when it gets SIGUSR1: shared with the servers (mapped before they
 * are forked). */
typedef struct arming {
    unsigned nth;
    char which[64];
    bool inherit;      /* the processes the armed one forks next count and fail too */
    _Atomic int times; /* SIGUSR1s taken */
} arming;
static arming *arm;

static void on_usr1(int sig)
{
    (void)sig;
    faults_inherit(arm->inherit);
    faults_arm(arm->nth, arm->which);
    arm->times++;
}

static void prepare_server(void)
{
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
    sigaction(SIGUSR1, &sa, NULL);
}

static int setup(void **state)
{
    (void)state;
    port = test_free_port();
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", port);
    sh->calls = 0;
    server_tcp = NULL;
    return 0;
}

static pid_t start_server(void)
{
    test_server ts = {&Calls_service, &calls_test_handlers, addr, 1, 0,
                      prepare_server, server_tcp,           NULL};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    return pid;
}

static shmrpc_client *connect_to_addr(const char *at)
{
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, at, &rc);
    if (!c || rc) fail_msg("connect %s: %s: %s", at, shmrpc_strerror(rc), shmrpc_errmsg());
    return c;
}

/* The worker of server (its one child), once it runs. */
static pid_t worker_of(pid_t server)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)server, (int)server);
    int64_t until = test_now_ms() + 5000;
    for (;;) {
        FILE *f = fopen(path, "r");
        int pid = 0;
        if (f) {
            if (fscanf(f, "%d", &pid) != 1) pid = 0;
            fclose(f);
        }
        if (pid > 0) return pid;
        if (test_now_ms() > until) fail_msg("server %d has no worker", (int)server);
        usleep(2000);
    }
}

static pid_t current_server;

/* The worker of the server running now. */
static pid_t worker_of_server_now(void)
{
    return worker_of(current_server);
}

/* Makes the nth call of which, from now, fail in worker. */
static void arm_worker(pid_t worker, unsigned nth, const char *which)
{
    arm->nth = nth;
    snprintf(arm->which, sizeof arm->which, "%s", which);
    int before = arm->times;
    assert_int_equal(kill(worker, SIGUSR1), 0);
    int64_t until = test_now_ms() + 5000;
    while (arm->times == before && test_now_ms() < until)
        usleep(1000);
    assert_int_equal(arm->times, before + 1);
}

/* --- a raw client (docs/wire.md) --- */

/* To a server that may still be starting: up to five seconds. */
static int raw_connect(void)
{
    int fd = test_raw_connect(port, 5000);
    if (fd < 0) fail_msg("no server on port %d", port);
    return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
    assert_true(test_raw_send(fd, p, n));
}

/* The next frame within 5 s (its body in b). */
static shmrpc__frame_hdr raw_frame(int fd, shmrpc_buf *b)
{
    shmrpc__frame_hdr h;
    if (!test_raw_frame(fd, &h, b)) fail_msg("no frame within 5 s");
    return h;
}

/* The peer closes, with nothing sent first, within 5 s. */
static void expect_eof(int fd)
{
    uint8_t byte;
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 5000), 1);
    ssize_t k = recv(fd, &byte, 1, 0);
    assert_true(k == 0 || (k < 0 && errno == ECONNRESET));
}

static void raw_handshake(int fd)
{
    assert_true(test_raw_handshake(fd, &Calls_service_info));
}

static uint32_t method_id(const char *name)
{
    for (uint32_t i = 0; i < Calls_service_info.n_methods; i++)
        if (strcmp(Calls_service_info.methods[i].name, name) == 0) return i;
    fail_msg("no method %s", name);
    return 0;
}

/* add(x, y) of small x and y, request id rid, and its answer: 0 and the sum's byte, or the
 * ERROR's status with its message in msg. */
static int raw_add(int fd, uint64_t rid, uint8_t x, uint8_t y, uint8_t *sum, char *msg, size_t n)
{
    uint8_t req[SHMRPC__FRAME_HDR_SIZE + 3];
    shmrpc__frame_hdr h = {SHMRPC__KIND_REQUEST, 0, method_id("add"), rid, 3};
    shmrpc__frame_hdr_encode(&h, req);
    req[SHMRPC__FRAME_HDR_SIZE] = 0x92, req[SHMRPC__FRAME_HDR_SIZE + 1] = x;
    req[SHMRPC__FRAME_HDR_SIZE + 2] = y;
    raw_send(fd, req, sizeof req);
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    h = raw_frame(fd, &b);
    assert_int_equal(h.request_id, rid);
    if (h.kind == SHMRPC__KIND_RESPONSE) {
        assert_int_equal(b.len, 1);
        *sum = b.data[0];
    }
    int rc = test_raw_answer(&h, &b, msg, n);
    assert_true(h.kind == SHMRPC__KIND_RESPONSE || h.kind == SHMRPC__KIND_ERROR);
    shmrpc_buf_destroy(&b);
    return rc;
}

/* --- a worker's failures while it serves --- */

/* A call whose job cannot be allocated is answered SHMRPC_ENOMEM, says it was not run, and
 * did not run; the connection goes on, and the next call runs. A call when no thread of the
 * worker's pool can be started (the first) runs on the worker's own thread, once. A pool
 * thread that could not make its call context fails that call only. */
static void calls_without_memory_or_thread(void **state)
{
    (void)state;
    pid_t server = start_server();
    int fd = raw_connect();
    raw_handshake(fd);
    pid_t worker = worker_of(server);
    uint8_t sum = 0;
    char msg[256] = "";
    arm_worker(worker, 1, "calloc");
    assert_int_equal(raw_add(fd, 1, 2, 3, &sum, msg, sizeof msg), SHMRPC_ENOMEM);
    assert_string_equal(msg, "out of memory: the call was not run");
    assert_int_equal(sh->calls, 0);
    assert_int_equal(raw_add(fd, 2, 4, 5, &sum, msg, sizeof msg), 0);
    assert_int_equal(sum, 9);
    assert_int_equal(sh->calls, 1);
    close(fd);
    assert_true(test_stop_server(server));

    server = start_server(); /* a worker that has started no thread yet */
    fd = raw_connect();
    raw_handshake(fd);
    worker = worker_of(server);
    sh->calls = 0;
    arm_worker(worker, 1, "pthread_create");
    assert_int_equal(raw_add(fd, 1, 6, 7, &sum, msg, sizeof msg), 0);
    assert_int_equal(sum, 13);
    assert_int_equal(sh->calls, 1);
    assert_int_equal(raw_add(fd, 2, 1, 1, &sum, msg, sizeof msg), 0); /* a thread runs it now */
    assert_int_equal(sum, 2);
    assert_int_equal(sh->calls, 2);
    close(fd);
    assert_true(test_stop_server(server));

    /* The first call's request cannot be copied into its job (a new job's buffer grows:
     * the first realloc): answered SHMRPC_ENOMEM, not run; the next call runs. */
    server = start_server();
    fd = raw_connect();
    raw_handshake(fd);
    worker = worker_of(server);
    sh->calls = 0;
    arm_worker(worker, 1, "realloc");
    assert_int_equal(raw_add(fd, 1, 6, 7, &sum, msg, sizeof msg), SHMRPC_ENOMEM);
    assert_string_equal(msg, "out of memory: the call was not run");
    assert_int_equal(sh->calls, 0);
    assert_int_equal(raw_add(fd, 2, 6, 7, &sum, msg, sizeof msg), 0);
    assert_int_equal(sum, 13);
    assert_int_equal(sh->calls, 1);
    close(fd);
    assert_true(test_stop_server(server));

    /* The first pool thread cannot make the context a call runs in (its first malloc): the
     * call is answered SHMRPC_ENOMEM, not run; the thread makes it for the next calls. */
    server = start_server();
    fd = raw_connect();
    raw_handshake(fd);
    worker = worker_of(server);
    sh->calls = 0;
    arm_worker(worker, 1, "malloc");
    assert_int_equal(raw_add(fd, 1, 6, 7, &sum, msg, sizeof msg), SHMRPC_ENOMEM);
    assert_string_equal(msg, "out of memory for the call's context: not run");
    assert_int_equal(sh->calls, 0);
    for (uint8_t i = 0; i < 3; i++) {
        assert_int_equal(raw_add(fd, 2 + i, i, 1, &sum, msg, sizeof msg), 0);
        assert_int_equal(sum, i + 1);
    }
    assert_int_equal(sh->calls, 3);
    close(fd);
    assert_true(test_stop_server(server));
}

/* A connection the worker cannot take (no memory for it, or epoll refuses it) is closed at
 * once, and the worker keeps none of it (its descriptors are as before); it serves on. */
static void connections_the_worker_cannot_take(void **state)
{
    (void)state;
    pid_t server = start_server();
    int good = raw_connect();
    raw_handshake(good);
    pid_t worker = worker_of(server);
    int fds = test_fd_count(worker);
    assert_true(fds > 0);
    static const char *const which[] = {"calloc", "epoll_ctl"};
    for (size_t i = 0; i < 2; i++) {
        arm_worker(worker, 1, which[i]);
        int fd = raw_connect();
        expect_eof(fd);
        close(fd);
        int64_t until = test_now_ms() + 5000;
        while (test_fd_count(worker) != fds && test_now_ms() < until)
            usleep(2000);
        assert_int_equal(test_fd_count(worker), fds);
        uint8_t sum = 0;
        char msg[256];
        assert_int_equal(raw_add(good, i + 1, 1, (uint8_t)i, &sum, msg, sizeof msg), 0);
        assert_int_equal(sum, 1 + i);
    }
    close(good);
    assert_true(test_stop_server(server));
}

/* --- system calls that fail under a server --- */

/* Sends add(x, y) of small x and y, request id rid, and reads nothing. */
static void send_add(int fd, uint64_t rid, uint8_t x, uint8_t y)
{
    uint8_t req[SHMRPC__FRAME_HDR_SIZE + 3];
    shmrpc__frame_hdr h = {SHMRPC__KIND_REQUEST, 0, method_id("add"), rid, 3};
    shmrpc__frame_hdr_encode(&h, req);
    req[SHMRPC__FRAME_HDR_SIZE] = 0x92, req[SHMRPC__FRAME_HDR_SIZE + 1] = x;
    req[SHMRPC__FRAME_HDR_SIZE + 2] = y;
    raw_send(fd, req, sizeof req);
}

/* Waits up to 5 s for sh->calls to reach n, then says whether it is exactly n. */
static bool calls_reach(int64_t n)
{
    int64_t until = test_now_ms() + 5000;
    while (sh->calls < n && test_now_ms() < until)
        usleep(1000);
    return sh->calls == n;
}

/* A worker's read or send that fails on one connection (the peer reset it, says the fault)
 * closes that connection without an answer, and costs no other: a call whose request could
 * not be read did not run, one whose answer could not be sent ran once (at most once). An
 * interrupted one (EINTR) is tried again and the call answered. With one connection the
 * worker waits for it in a blocking read (hot_wait): that read failing closes it too, and
 * the timeout of that read not being set leaves the worker serving it through epoll. */
static void connections_whose_socket_fails(void **state)
{
    (void)state;
    pid_t server = start_server();
    pid_t worker = worker_of(server);
    uint8_t sum = 0;
    char msg[256] = "";

    /* Alone on the worker: its blocking read fails, or its timeout cannot be set (the
     * second setsockopt of a connection: TCP_NODELAY is the first). */
    int fd = raw_connect();
    raw_handshake(fd);
    arm_worker(worker, 1, "recv:ECONNRESET");
    expect_eof(fd);
    close(fd);
    assert_true(faults_hit());
    assert_string_equal(faults_hit_name(), "recv");
    assert_int_equal(faults_hit_pid(), worker);
    arm_worker(worker, 2, "setsockopt");
    fd = raw_connect();
    raw_handshake(fd);
    assert_int_equal(raw_add(fd, 1, 3, 4, &sum, msg, sizeof msg), 0);
    assert_int_equal(sum, 7);
    assert_true(calls_reach(1));
    assert_true(faults_hit());
    assert_string_equal(faults_hit_name(), "setsockopt");
    assert_int_equal(faults_hit_pid(), worker);
    /* Not set, the timeout is set at the next hot_wait, once: the third setsockopt. */
    int64_t until = test_now_ms() + 5000;
    while (faults_calls() < 3 && test_now_ms() < until)
        usleep(1000);
    assert_int_equal(faults_calls(), 3);
    assert_int_equal(raw_add(fd, 2, 4, 4, &sum, msg, sizeof msg), 0); /* through hot_wait */
    assert_int_equal(sum, 8);
    assert_true(calls_reach(2));
    assert_int_equal(faults_calls(), 3);
    close(fd);

    int other = raw_connect();
    raw_handshake(other);
    static const struct {
        const char *which;
        const char *fn; /* the function that failed */
        int err;
        bool answered; /* else closed without a word */
        int ran;
    } cases[] = {
        {"recv:EINTR", "recv", EINTR, true, 1},
        {"send:EINTR", "send", EINTR, true, 1},
        {"recv:ECONNRESET", "recv", ECONNRESET, false, 0},
        {"send:EPIPE", "send", EPIPE, false, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("%s\n", cases[i].which);
        fd = raw_connect();
        raw_handshake(fd);
        int64_t calls = sh->calls;
        arm_worker(worker, 1, cases[i].which);
        if (cases[i].answered) {
            assert_int_equal(raw_add(fd, 2, 5, (uint8_t)i, &sum, msg, sizeof msg), 0);
            assert_int_equal(sum, 5 + i);
        } else {
            send_add(fd, 2, 5, (uint8_t)i);
            expect_eof(fd);
        }
        assert_true(calls_reach(calls + cases[i].ran));
        /* The fault fired, in the worker, on this connection's call. */
        assert_true(faults_hit());
        assert_string_equal(faults_hit_name(), cases[i].fn);
        assert_int_equal(faults_hit_errno(), cases[i].err);
        assert_int_equal(faults_hit_pid(), worker);
        if (cases[i].answered) { /* tried again whole: the next answer is the next call's */
            assert_int_equal(raw_add(fd, 3, 6, (uint8_t)i, &sum, msg, sizeof msg), 0);
            assert_int_equal(sum, 6 + i);
            assert_true(calls_reach(calls + cases[i].ran + 1));
            calls++;
        }
        arm_worker(worker, 0, ""); /* counts, fails nothing */
        close(fd);
        assert_int_equal(raw_add(other, 3 + i, 1, (uint8_t)i, &sum, msg, sizeof msg), 0);
        assert_int_equal(sum, 1 + i);
        assert_true(calls_reach(calls + cases[i].ran + 1));
    }
    close(other);
    assert_int_equal(worker_of(server), worker); /* the same worker throughout */
    assert_true(test_stop_server(server));
}

/* The descriptors pid has open, less its TCP connections (the sockets that are in
 * /proc/net/tcp but not listening): what a manager holds for itself. */
static int fds_but_connections(pid_t pid)
{
    unsigned long conns[64];
    int n_conns = 0;
    FILE *f = fopen("/proc/net/tcp", "r"); /* read first: a connection made is in it */
    assert_non_null(f);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned st;
        unsigned long ino;
        if (sscanf(line, " %*d: %*x:%*x %*x:%*x %x %*x:%*x %*x:%*x %*x %*u %*u %lu", &st, &ino) ==
                2 &&
            st != 0x0a && n_conns < 64)
            conns[n_conns++] = ino;
    }
    fclose(f);
    char dir[64], path[600], link[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t k = readlink(path, link, sizeof link - 1);
        if (k < 0) continue; /* closed since */
        link[k] = '\0';
        unsigned long ino;
        bool conn = false;
        if (sscanf(link, "socket:[%lu]", &ino) == 1)
            for (int i = 0; i < n_conns && !conn; i++)
                conn = conns[i] == ino;
        n += !conn;
    }
    closedir(d);
    return n;
}

/* The manager's accept or its hand-over of a connection to the worker, failing: an
 * interrupted or aborted accept is tried again and the connection served; out of
 * descriptors, the manager gives up its spare one to accept the connection and close it
 * (the listener does not spin), and the next is served with the spare taken back; a
 * connection that cannot be handed over is refused with SHMRPC_EBUSY; an interrupted
 * hand-over is tried again. */
static void connections_the_manager_cannot_hand_over(void **state)
{
    (void)state;
    pid_t server = start_server();
    pid_t worker = worker_of(server);
    uint8_t sum = 0;
    char msg[256] = "";
    int fd = raw_connect();
    raw_handshake(fd); /* the manager is serving */
    close(fd);
    int fds = fds_but_connections(server); /* its copy of fd may not be closed yet */
    assert_true(fds > 0);
    static const struct {
        const char *which;
        int status; /* 0: served; 1: closed without a word */
        const char *says;
    } cases[] = {
        {"accept4:EINTR", 0, NULL},
        {"accept4:ECONNABORTED", 0, NULL},
        {"accept4:EMFILE", 1, NULL},
        {"accept4:ENFILE", 1, NULL},
        {"sendmsg:EINTR", 0, NULL},
        {"sendmsg:EPIPE", SHMRPC_EBUSY, "the server's workers are not taking connections"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("%s\n", cases[i].which);
        arm_worker(server, 1, cases[i].which);
        fd = raw_connect();
        if (cases[i].status == 0) {
            raw_handshake(fd);
            assert_int_equal(raw_add(fd, 1, 2, (uint8_t)i, &sum, msg, sizeof msg), 0);
            assert_int_equal(sum, 2 + i);
        } else if (cases[i].status == 1) {
            expect_eof(fd);
        } else {
            shmrpc_buf b, err;
            shmrpc_buf_init(&b);
            shmrpc_buf_init(&err);
            shmrpc__frame_hdr h = raw_frame(fd, &b);
            assert_int_equal(h.kind, SHMRPC__KIND_ERROR);
            assert_int_equal(h.request_id, 0);
            int status;
            shmrpc_str m;
            assert_int_equal(shmrpc__error_parse(shmrpc_bytes_of(b.data, b.len), &status, &m, &err),
                             0);
            assert_int_equal(status, cases[i].status);
            assert_int_equal(m.len, strlen(cases[i].says));
            assert_memory_equal(m.ptr, cases[i].says, m.len);
            shmrpc_buf_destroy(&b);
            shmrpc_buf_destroy(&err);
            expect_eof(fd);
        }
        arm_worker(server, 0, "");
        close(fd);
        fd = raw_connect(); /* the next is served */
        raw_handshake(fd);
        assert_int_equal(raw_add(fd, 2, 3, (uint8_t)i, &sum, msg, sizeof msg), 0);
        assert_int_equal(sum, 3 + i);
        close(fd);
        /* The spare is back, nothing kept (the manager closes its copy of a connection
         * after handing it over, which a busy machine may delay past the call). */
        int64_t until = test_now_ms() + 5000;
        while (test_fd_count(server) != fds && test_now_ms() < until)
            usleep(2000);
        assert_int_equal(test_fd_count(server), fds);
    }
    assert_int_equal(worker_of(server), worker);
    assert_true(test_stop_server(server));
}

/* Whether a new connection is served within 2 s: its HELLO answered with a HELLO_ACK and
 * an add with its sum. Says nothing and fails nothing when not (the caller tries again). */
static bool served(uint8_t x)
{
    int fd = test_raw_connect(port, 2000);
    if (fd < 0) return false;
    int64_t deadline = test_now_ms() + 2000;
    shmrpc__hello hello = {.proto = SHMRPC__WIRE_PROTO,
                           .info = Calls_service_info,
                           .threshold = 4096,
                           .max_msg = 1 << 20};
    shmrpc_buf b, err;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&err);
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    shmrpc__frame_hdr h;
    bool ok = false;
    if (test_put_hello(&b, &hello) || send(fd, b.data, b.len, MSG_NOSIGNAL) != (ssize_t)b.len)
        goto out;
    if (!test_raw_recv(fd, hdr, sizeof hdr, deadline) ||
        shmrpc__frame_hdr_decode(hdr, sizeof hdr, 1 << 20, 0, &h, &err) ||
        h.kind != SHMRPC__KIND_HELLO_ACK || shmrpc__buf_grow(&b, h.body_len) ||
        !test_raw_recv(fd, b.data, h.body_len, deadline))
        goto out;
    uint8_t req[SHMRPC__FRAME_HDR_SIZE + 3];
    h = (shmrpc__frame_hdr){SHMRPC__KIND_REQUEST, 0, method_id("add"), 1, 3};
    shmrpc__frame_hdr_encode(&h, req);
    req[SHMRPC__FRAME_HDR_SIZE] = 0x92, req[SHMRPC__FRAME_HDR_SIZE + 1] = x;
    req[SHMRPC__FRAME_HDR_SIZE + 2] = 1;
    uint8_t sum;
    if (send(fd, req, sizeof req, MSG_NOSIGNAL) != (ssize_t)sizeof req ||
        !test_raw_recv(fd, hdr, sizeof hdr, deadline) ||
        shmrpc__frame_hdr_decode(hdr, sizeof hdr, 1 << 20, 0, &h, &err) ||
        h.kind != SHMRPC__KIND_RESPONSE || h.body_len != 1 || !test_raw_recv(fd, &sum, 1, deadline))
        goto out;
    ok = sum == x + 1;
out:
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&err);
    close(fd);
    return ok;
}

/* A worker started in place of one that died, with each of its allocations and epoll
 * calls failing in turn (its start's, then its first connection's): one that cannot start
 * exits and is started again, one that cannot take a connection closes it, and within a
 * few connections the server serves again, its manager the same process throughout. */
static void workers_that_cannot_start(void **state)
{
    (void)state;
    pid_t server = start_server();
    assert_true(served(1));
    int fired = 0;
    unsigned k;
    for (k = 1; k <= 40; k++) {
        pid_t old = worker_of(server);
        arm->inherit = true;
        arm_worker(server, k, "malloc,calloc,realloc,epoll_create1,epoll_ctl");
        arm->inherit = false;
        assert_int_equal(kill(old, SIGKILL), 0);
        int64_t until = test_now_ms() + 5000;
        while (worker_of(server) == old && test_now_ms() < until)
            usleep(2000);
        int tries = 0;
        while (!served((uint8_t)k) && ++tries < 4) {
        }
        if (tries == 4) fail_msg("call %u of a new worker failing: not served", k);
        bool hit = faults_hit();
        pid_t in = faults_hit_pid();
        /* A new worker's: neither the manager's nor the killed worker's. */
        bool new_worker = hit && in != server && in != old;
        if (hit)
            print_message("call %u of %s failing (%s): served after %d tries\n", k,
                          new_worker ? "a new worker" : "the manager", faults_hit_name(), tries);
        arm_worker(server, 0, ""); /* counts, fails nothing */
        if (!hit) break;
        fired += new_worker;
    }
    assert_true(k <= 40); /* a run with no fault came */
    assert_true(fired >= 5);
    assert_true(test_stop_server(server));
}

/* The bytes that the server's end of fd (a connection to port on 127.0.0.1) has not read
 * yet (/proc/net/tcp's rx_queue), or -1 when it is not found. */
static long unread_by_server(int fd)
{
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    if (getsockname(fd, (struct sockaddr *)&me, &len) != 0) return -1;
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f) return -1;
    char line[512];
    long unread = -1;
    while (unread < 0 && fgets(line, sizeof line, f)) {
        unsigned lport, rport, st;
        unsigned long tx, rx;
        if (sscanf(line, " %*d: %*8x:%4x %*8x:%4x %2x %8lx:%8lx", &lport, &rport, &st, &tx, &rx) ==
                5 &&
            lport == (unsigned)port && rport == ntohs(me.sin_port))
            unread = (long)rx;
    }
    fclose(f);
    return unread;
}

/* Sends p (n bytes) as the window lets it, for up to 10 s: the bytes sent, fewer when the
 * server closed the connection; fails the test when it stops reading without closing. */
static size_t send_within(int fd, const uint8_t *p, size_t n)
{
    size_t at = 0;
    int64_t deadline = test_now_ms() + 10000;
    while (at < n) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int64_t left = deadline - test_now_ms();
        int ready = left > 0 ? poll(&pf, 1, (int)left) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready == 0) fail_msg("the server took %zu of %zu bytes in 10 s, then nothing", at, n);
        if (ready < 0) fail_msg("poll: %s", strerror(errno));
        size_t chunk = n - at < 65536 ? n - at : 65536;
        ssize_t k = send(fd, p + at, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) break; /* closed by the server */
        at += (size_t)k;
    }
    return at;
}

/* A request refused for want of memory is read and dropped (docs/wire.md, "Limits"): a
 * read of its body interrupted (EINTR) is tried again, and the call fails with SHMRPC_EBUSY
 * "not run" once its body has gone by, the connection going on; a read of its body that
 * fails closes the connection without an answer. The fault is armed once the worker has
 * read the header (its socket has nothing unread), before any of the body is sent: its
 * next read is of the skipped body. */
static void reads_of_a_refused_body_that_fail(void **state)
{
    (void)state;
    static const shmrpc_tcp_opts small = {.buffer_budget = 1u << 20};
    server_tcp = &small;
    pid_t server = start_server();
    pid_t worker = worker_of(server);
    const uint32_t len = 2u << 20;
    uint8_t *body = calloc(1, len);
    assert_non_null(body);
    static const struct {
        const char *which;
        int err;
    } cases[] = {{"recv:EINTR", EINTR}, {"recv:ECONNRESET", ECONNRESET}};
    for (int i = 0; i < 2; i++) {
        print_message("%s\n", cases[i].which);
        int fd = raw_connect();
        raw_handshake(fd);
        uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
        shmrpc__frame_hdr h = {SHMRPC__KIND_REQUEST, 0, method_id("echo"), 7, len};
        shmrpc__frame_hdr_encode(&h, hdr);
        raw_send(fd, hdr, sizeof hdr); /* refused at its header: its body to be skipped */
        int64_t until = test_now_ms() + 5000;
        while (unread_by_server(fd) != 0 && test_now_ms() < until)
            usleep(1000);
        assert_int_equal(unread_by_server(fd), 0);
        arm_worker(worker, 1, cases[i].which);
        size_t sent = send_within(fd, body, len);
        if (i == 0) {
            assert_int_equal(sent, len);
            uint8_t sum = 0;
            char msg[256] = "";
            shmrpc_buf b, err;
            shmrpc_buf_init(&b);
            shmrpc_buf_init(&err);
            h = raw_frame(fd, &b);
            assert_int_equal(h.kind, SHMRPC__KIND_ERROR);
            assert_int_equal(h.request_id, 7);
            int status;
            shmrpc_str m;
            assert_int_equal(shmrpc__error_parse(shmrpc_bytes_of(b.data, b.len), &status, &m, &err),
                             0);
            assert_int_equal(status, SHMRPC_EBUSY);
            assert_non_null(memmem(m.ptr, m.len, "it was not run", 14));
            shmrpc_buf_destroy(&b);
            shmrpc_buf_destroy(&err);
            assert_int_equal(raw_add(fd, 8, 2, 2, &sum, msg, sizeof msg), 0);
            assert_int_equal(sum, 4);
        } else {
            expect_eof(fd);
        }
        /* The fault fired in the worker, at a read of the skipped body. */
        assert_true(faults_hit());
        assert_string_equal(faults_hit_name(), "recv");
        assert_int_equal(faults_hit_errno(), cases[i].err);
        assert_int_equal(faults_hit_pid(), worker);
        arm_worker(worker, 0, "");
        close(fd);
    }
    assert_int_equal(sh->calls, 1); /* the add only */
    free(body);
    assert_int_equal(worker_of(server), worker);
    assert_true(test_stop_server(server));
}

/* --- operations with each of their calls failing in turn --- */

typedef struct secret_case {
    char path[64];
    uint8_t got[64];
    size_t len;
} secret_case;

static int secret_setup(void *arg)
{
    secret_case *sc = arg;
    snprintf(sc->path, sizeof sc->path, "/tmp/shmrpc-fault-secret-%d", (int)getpid());
    int fd = open(sc->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return 1;
    bool ok = write(fd, "0123456789abcdefghij\n", 21) == 21;
    close(fd);
    memset(sc->got, 0xa5, sizeof sc->got);
    sc->len = 777;
    return ok ? 0 : 1;
}

static int secret_run(void *arg)
{
    secret_case *sc = arg;
    return shmrpc_secret_load(sc->path, sc->got, sizeof sc->got, &sc->len);
}

/* Failed: the status of the call that failed, with a message, and nothing given back;
 * else the secret whole. */
static int secret_check(void *arg, int rc)
{
    secret_case *sc = arg;
    int bad = 0;
    if (faults_hit() && rc != 0) {
        if (!faults_status(rc)) bad = 1;
        if (sc->len != 777) bad = faults_say("len was set to %zu on a failure", sc->len);
        for (size_t i = 0; i < sizeof sc->got && !bad; i++)
            if (sc->got[i] != 0xa5) bad = faults_say("the secret was written on a failure");
    } else if (rc != 0 || sc->len != 20 || memcmp(sc->got, "0123456789abcdefghij", 20) != 0) {
        bad = faults_say("rc %d, len %zu: not the secret", rc, sc->len);
    }
    unlink(sc->path);
    return bad;
}

/* shmrpc_secret_load with its open, its fstat and each read failing in turn. */
static void secret_load_with_each_call_failing(void **state)
{
    (void)state;
    secret_case sc;
    faults_case c = {.name = "shmrpc_secret_load",
                     .which = "open,fstat,read",
                     .setup = secret_setup,
                     .run = secret_run,
                     .check = secret_check,
                     .arg = &sc};
    int fired = faults_sweep(&c, 16);
    printf("shmrpc_secret_load: %d faults\n", fired);
    assert_true(fired >= 3); /* open, fstat, the first read */
}

typedef struct listen_case {
    char addr[64];
    shmrpc_server *s;
} listen_case;

static int listen_setup(void *arg)
{
    listen_case *lc = arg;
    lc->s = NULL;
    if (shmrpc_server_new(&lc->s, NULL) != 0) return 1;
    return shmrpc_server_register(lc->s, &Calls_service, &calls_test_handlers, NULL) != 0;
}

static int listen_run(void *arg)
{
    listen_case *lc = arg;
    return shmrpc_server_listen(lc->s, lc->addr);
}

/* Failed: the status of the call that failed, with a message (a bind's EADDRINUSE is
 * SHMRPC_EBUSY, "already in use"); then (or once it listens) the server is freed, and the
 * port is free again: a listen there succeeds. */
static int listen_check(void *arg, int rc)
{
    listen_case *lc = arg;
    int bad = 0;
    bool in_use = rc == SHMRPC_EBUSY && faults_hit_errno() == EADDRINUSE &&
                  strstr(shmrpc_errmsg(), "already in use");
    if (rc != 0 && !in_use && !faults_status(rc)) bad = 1;
    shmrpc_server_free(lc->s);
    lc->s = NULL;
    shmrpc_server *again = NULL;
    if (shmrpc_server_new(&again, NULL) != 0 ||
        shmrpc_server_register(again, &Calls_service, &calls_test_handlers, NULL) != 0)
        bad = faults_say("no server to listen again");
    else if (shmrpc_server_listen(again, lc->addr) != 0)
        bad = faults_say("the port is not free after the listen: %s", shmrpc_errmsg());
    shmrpc_server_free(again);
    return bad;
}

/* A tcp:// listen with each of its system calls and allocations failing in turn. */
static void listen_with_each_call_failing(void **state)
{
    (void)state;
    listen_case lc;
    snprintf(lc.addr, sizeof lc.addr, "tcp://127.0.0.1:%d", test_free_port());
    faults_case c = {.name = "tcp listen",
                     .setup = listen_setup,
                     .run = listen_run,
                     .check = listen_check,
                     .arg = &lc};
    int fired = faults_sweep(&c, 200);
    printf("tcp listen: %d faults\n", fired);
    assert_true(fired >= 3); /* socket, bind, listen at least */
    c.which = "bind:EACCES"; /* a bind refused for another reason than the port's use */
    assert_int_equal(faults_sweep(&c, 4), 1);
}

/* A call (blocking, or started and finished), in a child of the sweep, with each of the
 * client's calls failing in turn (the server's are not): the call ends with success, or a status of
 * status.h with a message; a call said not to have run (SHMRPC_EUNAVAIL) did not, one that
 * succeeded ran once, none ran twice (told apart by its tag: the sweep's N); and the client gets
 * through again at once (its next call succeeds). Each child's status is kept in shared
 * memory for the check of the runs, done once the server has stopped. */
typedef struct call_case {
    char addr[64];
    shmrpc_client *c;
    unsigned n;
    bool started; /* shmrpc_client_start and its finish, not a blocking call */
} call_case;

static struct call_log {
    _Atomic unsigned next; /* the N of the next child's setup */
    int status[64];
} * call_log;

static int call_setup(void *arg)
{
    call_case *cc = arg;
    cc->n = ++call_log->next;
    if (cc->n >= 64) return 1;
    int rc;
    cc->c = test_connect(&Calls_service_info, NULL, cc->addr, &rc);
    return rc != 0;
}

static int call_run(void *arg)
{
    call_case *cc = arg;
    calls_tag tag = {CALLS_TAG_MAGIC, cc->n, 0};
    shmrpc_bytes out;
    if (!cc->started) return calls_echo(cc->c, shmrpc_bytes_of(&tag, sizeof tag), &out);
    shmrpc_call *k = NULL;
    int rc = calls_echo_start(cc->c, shmrpc_bytes_of(&tag, sizeof tag), &k);
    return rc ? rc : calls_echo_finish(cc->c, k, &out);
}

static int call_check(void *arg, int rc)
{
    call_case *cc = arg;
    call_log->status[cc->n] = rc;
    int bad = 0;
    if (rc != 0 && !shmrpc__status_known(rc))
        bad = faults_say("status %d is not one of status.h", rc);
    if (rc != 0 && !*shmrpc_errmsg()) bad = faults_say("status %d without a message", rc);
    if (rc != 0 && faults_hit_errno() == ENOMEM && rc != SHMRPC_ENOMEM)
        bad = faults_say("out of memory said as %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    int64_t sum = 0;
    int again = calls_add(cc->c, 2, 3, &sum);
    if (again != 0 || sum != 5)
        bad = faults_say("the next call: %s: %s", shmrpc_strerror(again), shmrpc_errmsg());
    shmrpc_client_free(cc->c);
    return bad;
}

static void calls_with_each_call_failing(void **state)
{
    (void)state;
    for (int started = 0; started < 2; started++) {
        pid_t server = start_server();
        call_case cc = {.started = started};
        snprintf(cc.addr, sizeof cc.addr, "%s", addr);
        shmrpc_client_free(connect_to_addr(cc.addr)); /* it is up */
        memset(call_log, 0, sizeof *call_log);
        memset((void *)sh->ran, 0, sizeof sh->ran);
        const char *name = started ? "a started call" : "a blocking call";
        faults_case c = {
            .name = name, .setup = call_setup, .run = call_run, .check = call_check, .arg = &cc};
        int fired = faults_sweep(&c, 60);
        printf("%s: %d faults\n", name, fired);
        assert_true(fired >= 1);
        assert_true(test_stop_server(server)); /* every request it read has run */
        for (unsigned n = 1; n <= (unsigned)fired + 1; n++) {
            int rc = call_log->status[n], runs = sh->ran[n];
            printf("  call %u failing: %s, ran %d time(s)\n", n, shmrpc_strerror(rc), runs);
            if (runs > 1 || (rc == 0 && runs != 1) || (rc == SHMRPC_EUNAVAIL && runs != 0))
                fail_msg("call %u failing: %s, and it ran %d times", n, shmrpc_strerror(rc), runs);
        }
        port = test_free_port();
        snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", port);
    }
}

/* A connect with each of its calls failing in turn: it succeeds, or fails with a status of
 * status.h and a message (SHMRPC_ENOMEM when an allocation failed: not "no address");
 * either way nothing of it is left (the sweep counts the
 * descriptors), and the same client then connects and calls. */
typedef struct connect_case {
    char addr[64];
    shmrpc_client *c;
} connect_case;

static int connect_setup(void *arg)
{
    connect_case *cc = arg;
    return shmrpc_client_new(&cc->c, &Calls_service_info, NULL) != 0;
}

static int connect_run(void *arg)
{
    connect_case *cc = arg;
    return shmrpc_client_connect(cc->c, cc->addr);
}

static int connect_check(void *arg, int rc)
{
    connect_case *cc = arg;
    int bad = 0;
    if (rc != 0 && (!shmrpc__status_known(rc) || !*shmrpc_errmsg()))
        bad = faults_say("status %d ('%s')", rc, shmrpc_errmsg());
    if (rc != 0 && faults_hit_errno() == ENOMEM && rc != SHMRPC_ENOMEM) /* not "no server" */
        bad = faults_say("out of memory said as %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    int again = rc ? shmrpc_client_connect(cc->c, cc->addr) : 0;
    int64_t sum = 0;
    if (again == 0) again = calls_add(cc->c, 2, 3, &sum);
    if (again != 0 || sum != 5)
        bad = faults_say("then: %s: %s", shmrpc_strerror(again), shmrpc_errmsg());
    shmrpc_client_free(cc->c);
    return bad;
}

static void connect_with_each_call_failing(void **state)
{
    (void)state;
    pid_t server = start_server();
    connect_case cc;
    snprintf(cc.addr, sizeof cc.addr, "%s", addr);
    shmrpc_client_free(connect_to_addr(cc.addr)); /* it is up */
    faults_case c = {.name = "connect",
                     .setup = connect_setup,
                     .run = connect_run,
                     .check = connect_check,
                     .arg = &cc};
    int fired = faults_sweep(&c, 100);
    printf("connect: %d faults\n", fired);
    assert_true(fired >= 3); /* socket, connect, a send at least */
    assert_true(test_stop_server(server));
}

/* A call of n bytes (an echo, request id 1) on a new connection while the worker's kth
 * allocation from the handshake on fails: its answer is its own message (it ran once), or
 * an ERROR with SHMRPC_ENOMEM (one that says "not run" did not run), or the close (it may
 * have run: once at most); and the worker, the same process, serves the next connection.
 * 1 when an allocation failed (the answer was not the message), else 0. */
static int echo_with_allocation_failing(pid_t worker, unsigned k, size_t n)
{
    uint8_t *msg = malloc(n);
    assert_non_null(msg);
    for (size_t i = 0; i < n; i++)
        msg[i] = (uint8_t)(i * 7 + k);
    int fd = raw_connect();
    raw_handshake(fd);
    int64_t calls = sh->calls;
    arm_worker(worker, k, "malloc,calloc,realloc");
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    shmrpc__frame_hdr h = {SHMRPC__KIND_REQUEST, 0, method_id("echo"), 1, (uint32_t)n};
    shmrpc__frame_hdr_encode(&h, hdr);
    raw_send(fd, hdr, sizeof hdr);
    raw_send(fd, msg, n);
    int failed = 1;
    int64_t ran = -1;
    if (test_raw_recv(fd, hdr, sizeof hdr, test_now_ms() + 5000)) {
        shmrpc_buf b, err;
        shmrpc_buf_init(&b);
        shmrpc_buf_init(&err);
        assert_int_equal(shmrpc__frame_hdr_decode(hdr, sizeof hdr, 1 << 30, 0, &h, &err), 0);
        assert_int_equal(h.request_id, 1);
        assert_int_equal(shmrpc__buf_grow(&b, (size_t)h.body_len + 1), 0);
        assert_true(test_raw_recv(fd, b.data, h.body_len, test_now_ms() + 5000));
        b.len = h.body_len;
        ran = sh->calls - calls;
        if (h.kind == SHMRPC__KIND_RESPONSE) {
            assert_int_equal(b.len, n);
            assert_memory_equal(b.data, msg, n);
            assert_int_equal(ran, 1);
            failed = 0;
        } else {
            assert_int_equal(h.kind, SHMRPC__KIND_ERROR);
            int status;
            shmrpc_str m;
            assert_int_equal(shmrpc__error_parse(shmrpc_bytes_of(b.data, b.len), &status, &m, &err),
                             0);
            if (status != SHMRPC_ENOMEM)
                fail_msg("allocation %u: %s '%.*s'", k, shmrpc_strerror(status), (int)m.len, m.ptr);
            bool not_run = memmem(m.ptr, m.len, "not run", 7) != NULL;
            if (not_run ? ran != 0 : ran > 1)
                fail_msg("allocation %u: '%.*s', and it ran %lld times", k, (int)m.len, m.ptr,
                         (long long)ran);
        }
        shmrpc_buf_destroy(&b);
        shmrpc_buf_destroy(&err);
    } else {                                  /* closed: at most once */
        int64_t until = test_now_ms() + 2000; /* a call under way ends first, if any */
        while (sh->calls - calls == 0 && test_now_ms() < until)
            usleep(1000);
        ran = sh->calls - calls;
        assert_true(ran <= 1);
    }
    arm_worker(worker, 0, ""); /* counts, fails nothing */
    close(fd);
    free(msg);
    int good = raw_connect();
    raw_handshake(good);
    uint8_t sum = 0;
    char m[256];
    int grc = raw_add(good, 9, 20, 22, &sum, m, sizeof m);
    if (grc)
        fail_msg("allocation %u: then a call on a new connection: %s '%s'", k, shmrpc_strerror(grc),
                 m);
    assert_int_equal(sum, 42);
    close(good);
    assert_int_equal(worker_of_server_now(), worker); /* the same worker: it did not die */
    return failed;
}

/* A call with each of the worker's allocations failing in turn, from the handshake on:
 * small (copied into its job) and large (the job takes the connection's buffer). */
static void worker_allocations_failing_in_turn(void **state)
{
    (void)state;
    pid_t server = start_server();
    current_server = server;
    pid_t worker = worker_of(server);
    static const size_t sizes[] = {100, 300 << 10};
    for (int i = 0; i < 2; i++) {
        int failed = 0;
        for (unsigned k = 1; k <= 24; k++)
            failed += echo_with_allocation_failing(worker, k, sizes[i]);
        printf("an echo of %zu bytes: %d of 24 allocations failed it\n", sizes[i], failed);
        assert_true(failed >= 1);
    }
    assert_true(test_stop_server(server));
}

int main(void)
{
    if (calls_shared_map() != 0) return 1;
    arm = mmap(NULL, sizeof *arm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (arm == MAP_FAILED) return 1;
    call_log =
        mmap(NULL, sizeof *call_log, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (call_log == MAP_FAILED) return 1;
    signal(SIGPIPE, SIG_IGN);
    /* The faults' state is made here, shared with every process forked from now: the test
     * reads there whether a fault fired in a server's worker (faults_hit). */
    faults_arm(0, "");
    faults_disarm();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(secret_load_with_each_call_failing),
        cmocka_unit_test(listen_with_each_call_failing),
        cmocka_unit_test_setup(connect_with_each_call_failing, setup),
        cmocka_unit_test_setup(calls_with_each_call_failing, setup),
        cmocka_unit_test_setup(worker_allocations_failing_in_turn, setup),
        cmocka_unit_test_setup(calls_without_memory_or_thread, setup),
        cmocka_unit_test_setup(connections_the_worker_cannot_take, setup),
        cmocka_unit_test_setup(connections_whose_socket_fails, setup),
        cmocka_unit_test_setup(connections_the_manager_cannot_hand_over, setup),
        cmocka_unit_test_setup(workers_that_cannot_start, setup),
        cmocka_unit_test_setup(reads_of_a_refused_body_that_fail, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
