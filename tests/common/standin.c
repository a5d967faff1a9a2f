/* SPDX-License-Identifier: MIT */
/* A stand-in tcp:// server (standin.h). */
#define _GNU_SOURCE
#include "standin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>

#include <cmocka.h>

#include "calls.h"
#include "procs.h"

int stand_in_case;
int stand_in_rcvbuf;
int stand_in_go = -1;
shmrpc_buf stand_in_hello;

bool sread(int fd, uint8_t *p, size_t n)
{
    while (n) {
        ssize_t k = recv(fd, p, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        p += k, n -= (size_t)k;
    }
    return true;
}

bool sread_frame(int fd, shmrpc__frame_hdr *h, shmrpc_buf *b)
{
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    bool ok = sread(fd, hdr, sizeof hdr) &&
              shmrpc__frame_hdr_decode(hdr, sizeof hdr, 1 << 20,
                                       SHMRPC__FLAG_LONE | SHMRPC__FLAG_DEADLINE, h, &err) == 0;
    shmrpc_buf_destroy(&err);
    shmrpc_buf_clear(b);
    ok = ok && shmrpc__buf_grow(b, (size_t)h->body_len + 1) == 0 && sread(fd, b->data, h->body_len);
    if (ok) b->len = h->body_len;
    /* A request's deadline (revision 4) is not the stand-in's: b holds the request. */
    if (ok && (h->flags & SHMRPC__FLAG_DEADLINE)) {
        b->len -= SHMRPC__DEADLINE_LEN;
        memmove(b->data, b->data + SHMRPC__DEADLINE_LEN, b->len);
    }
    return ok;
}

bool ssend(int fd, const shmrpc_buf *b)
{
    return !b->err && send(fd, b->data, b->len, MSG_NOSIGNAL) == (ssize_t)b->len;
}

void put_ack(shmrpc_buf *b, uint16_t compression, uint32_t max_msg, bool auth)
{
    static const uint8_t challenge[SHMRPC__AUTH_LEN] = {7};
    shmrpc__hello ack = {.proto = SHMRPC__WIRE_PROTO,
                         .info = Calls_service_info,
                         .compression = compression,
                         .threshold = 4096,
                         .max_msg = max_msg};
    if (auth) ack.auth = shmrpc_bytes_of(challenge, sizeof challenge);
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    size_t at = shmrpc__frame_begin(b, SHMRPC__KIND_HELLO_ACK, 0, 0, 0);
    if (shmrpc__hello_write(b, SHMRPC__KIND_HELLO_ACK, &ack, &err) == 0) shmrpc__frame_end(b, at);
    shmrpc_buf_destroy(&err);
}

void put_error(shmrpc_buf *b, uint32_t method, uint64_t rid, int status, const char *msg)
{
    size_t at = shmrpc__frame_begin(b, SHMRPC__KIND_ERROR, 0, method, rid);
    /* shmrpc__error_write refuses a status that is not negative: the stand-in's are. */
    if (shmrpc__error_write(b, status, shmrpc_str_c(msg)) == 0) shmrpc__frame_end(b, at);
}

int add_body_sum(const shmrpc_buf *b)
{
    return b->len == 3 && b->data[0] == 0x92 && b->data[1] < 0x80 && b->data[2] < 0x80
               ? b->data[1] + b->data[2]
               : -1;
}

/* A failed append leaves b->err set, which ssend refuses: no assert in the stand-in. */
void put_sum(shmrpc_buf *out, const shmrpc__frame_hdr *h, int sum)
{
    const uint8_t body[] = {(uint8_t)sum};
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    shmrpc__frame_hdr rh = {SHMRPC__KIND_RESPONSE, 0, h->method, h->request_id, sizeof body};
    shmrpc__frame_hdr_encode(&rh, hdr);
    shmrpc_buf_append(out, hdr, sizeof hdr);
    shmrpc_buf_append(out, body, sizeof body);
}

stand_in stand_in_start(int (*script)(int fd))
{
    stand_in s = {0};
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (stand_in_rcvbuf > 0)
        setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &stand_in_rcvbuf, sizeof stand_in_rcvbuf);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    assert_int_equal(listen(lfd, 4), 0);
    s.port = ntohs(a.sin_port);
    int go[2];
    assert_int_equal(pipe2(go, O_CLOEXEC), 0);
    s.pid = fork();
    assert_true(s.pid >= 0);
    if (s.pid == 0) {
        alarm(20);
        close(go[1]);
        stand_in_go = go[0];
        int fd = accept(lfd, NULL, NULL);
        int rc = 0;
        if (!script) { /* silent: it reads nothing until told */
            struct pollfd pf = {.fd = stand_in_go, .events = POLLIN};
            poll(&pf, 1, 15000);
        } else {
            shmrpc__frame_hdr h;
            bool hello =
                fd >= 0 && sread_frame(fd, &h, &stand_in_hello) && h.kind == SHMRPC__KIND_HELLO;
            rc = hello ? script(fd) : 201;
        }
        static uint8_t rest[64 << 10]; /* what the client sends until it closes */
        while (fd >= 0 && recv(fd, rest, sizeof rest, 0) > 0) {
        }
        _exit(rc);
    }
    close(lfd);
    close(go[0]);
    s.go = go[1];
    return s;
}

int stand_in_end(const stand_in *s)
{
    close(s->go);
    int status = test_reap(s->pid, 10000);
    if (status < 0 || !WIFEXITED(status)) fail_msg("the stand-in did not exit");
    return WEXITSTATUS(status);
}
