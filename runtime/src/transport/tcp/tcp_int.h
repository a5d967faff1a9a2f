/* SPDX-License-Identifier: MIT */
/* The TCP transport's insides, shared by its two sides: tcp.c (settings, addresses and
 * the frames both sides send), the server side (tcp_server.c and the files it names) and
 * the client side (tcp_client.c and the files it names). */
#ifndef SHMRPC_SRC_TCP_INT_H
#define SHMRPC_SRC_TCP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "transport/tcp/frame.h"
#include "rpc/rpc.h"

#define NS_PER_MS ((int64_t)1000 * 1000)
#define NS_PER_S ((int64_t)1000 * 1000 * 1000)

#define ADDR_MAX 300               /* the text of HOST:PORT */
#define READ_AHEAD ((size_t)16384) /* bytes read past the frame in hand, to save syscalls */

static inline uint32_t shmrpc__tcp_cap32(size_t n)
{
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* "WHAT tcp://WHERE: strerror(e)" into err; SHMRPC_ESYS(e). */
int shmrpc__tcp_sys_error(shmrpc_buf *err, int e, const char *what, const char *where);

/* HOST:PORT, [V6]:PORT, or PORT alone (127.0.0.1); numeric hosts and "localhost".
 * SHMRPC_EINVAL with a message for anything else. */
int shmrpc__tcp_parse_addr(const char *where, struct sockaddr_storage *ss, socklen_t *len,
                           shmrpc_buf *err);
bool shmrpc__tcp_is_loopback(const struct sockaddr_storage *ss);
void shmrpc__tcp_set_nodelay(int fd);

/* A stream's queue of items, read at *head and appended to at its end: the bytes before
 * *head (read) are dropped once all is read, or once they are a window's worth and half of
 * it, so that a queue read as fast as it is filled keeps what is unread and no more. */
void shmrpc__tcp_queue_read(shmrpc_buf *q, size_t *head);

/* Appends a REQUEST or RESPONSE frame with flags, its body compressed with comp when it is
 * at least threshold bytes and compressing makes it smaller. A REQUEST's budget_ns (not
 * negative) goes before the body, with SHMRPC__FLAG_DEADLINE; -1: none; then its metadata
 * (meta.len > 0, at most SHMRPC_METADATA_MAX_BYTES), with SHMRPC__FLAG_META. */
int shmrpc__tcp_put_msg_frame(shmrpc_buf *out, uint8_t kind, uint16_t flags, uint32_t method,
                              uint64_t rid, int64_t budget_ns, shmrpc_bytes meta, shmrpc_bytes msg,
                              uint16_t comp, uint32_t threshold);

/* Appends an ERROR frame; a status that is not negative is sent as SHMRPC_EPROTO. */
void shmrpc__tcp_put_error_frame(shmrpc_buf *out, uint32_t method, uint64_t rid, int status,
                                 const char *msg);

/* The entries of shmrpc__tcp_transport (tcp_transport.c): tcp_server.c, tcp_client.c. */
int shmrpc__tcp_listen(shmrpc_server *s, const char *where, shmrpc__listener **out,
                       shmrpc_buf *err);
int shmrpc__tcp_connect(const char *where, const shmrpc_service_info *info,
                        const shmrpc__client_cfg *cfg, uint32_t *map, shmrpc__table *table,
                        shmrpc__conn **out, shmrpc_buf *err);

#endif
