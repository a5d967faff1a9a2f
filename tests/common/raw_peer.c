/* SPDX-License-Identifier: MIT */
/* See raw_peer.h. */
#include "raw_peer.h"

#include <stdio.h>
#include <sys/socket.h>

#include "procs.h"

bool test_raw_send(int fd, const void *p, size_t n)
{
    return send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n;
}

bool test_raw_send_frame(int fd, uint8_t kind, uint16_t flags, uint32_t method, uint64_t rid,
                         const void *body, size_t n)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    size_t at = shmrpc__frame_begin(&b, kind, flags, method, rid);
    bool ok = (n == 0 || shmrpc_buf_append(&b, body, n) == 0) && shmrpc__frame_end(&b, at) == 0 &&
              test_raw_send(fd, b.data, b.len);
    shmrpc_buf_destroy(&b);
    return ok;
}

bool test_raw_frame(int fd, shmrpc__frame_hdr *h, shmrpc_buf *b)
{
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    int64_t deadline = test_now_ms() + 5000;
    if (!test_raw_recv(fd, hdr, sizeof hdr, deadline)) return false;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    /* A server sends ITEMS only to a client that opened a stream (revision 8). */
    int rc = shmrpc__frame_hdr_decode(hdr, sizeof hdr, 1 << 20, SHMRPC__AGREED_STREAMS, h, &err);
    shmrpc_buf_destroy(&err);
    shmrpc_buf_clear(b);
    if (rc != 0 || shmrpc_buf_reserve(b, (size_t)h->body_len + 1) != 0) return false;
    if (!test_raw_recv(fd, b->data, h->body_len, deadline)) return false;
    b->len = h->body_len;
    return true;
}

bool test_raw_handshake(int fd, const shmrpc_service_info *info)
{
    return test_raw_handshake_at(fd, info, SHMRPC__WIRE_PROTO);
}

bool test_raw_handshake_at(int fd, const shmrpc_service_info *info, uint32_t proto)
{
    shmrpc__hello hello = {.proto = proto, .info = *info, .threshold = 4096, .max_msg = 1 << 20};
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc__frame_hdr h;
    bool ok = test_put_hello(&b, &hello) == 0 && test_raw_send(fd, b.data, b.len) &&
              test_raw_frame(fd, &h, &b) && h.kind == SHMRPC__KIND_HELLO_ACK;
    shmrpc_buf_destroy(&b);
    return ok;
}

int test_raw_answer(const shmrpc__frame_hdr *h, const shmrpc_buf *b, char *text, size_t cap)
{
    if (h->kind == SHMRPC__KIND_RESPONSE) {
        snprintf(text, cap, "%.*s", (int)b->len, (const char *)b->data);
        return 0;
    }
    int rc = SHMRPC_EPROTO;
    shmrpc_str m;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    bool parsed = h->kind == SHMRPC__KIND_ERROR &&
                  shmrpc__error_parse(shmrpc_bytes_of(b->data, b->len), &rc, &m, &err) == 0;
    shmrpc_buf_destroy(&err);
    if (parsed)
        snprintf(text, cap, "%.*s", (int)m.len, m.ptr);
    else
        snprintf(text, cap, "not an answer");
    return parsed ? rc : SHMRPC_EPROTO;
}
