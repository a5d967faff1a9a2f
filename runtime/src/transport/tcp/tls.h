/* SPDX-License-Identifier: MIT */
/* The byte I/O of a tcp:// connection, plain or TLS 1.3 (OpenSSL), behind one small
 * interface: the TLS contexts made from the settings (docs/wire.md, "TLS"), and send and
 * receive that behave like send(2) and recv(2) on either kind of connection. */
#ifndef SHMRPC_SRC_TLS_H
#define SHMRPC_SRC_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rpc/rpc.h"

/* A side's TLS settings, made once (a server's before its workers fork; a client's per
 * connection object), shared by its connections. */
typedef struct shmrpc__tls shmrpc__tls;

/* The server's context from cfg (tls_cert, tls_key, tls_ca): SHMRPC_ESYS(errno) for a
 * file it cannot read, SHMRPC_EINVAL for one OpenSSL does not accept; err says which and
 * why. */
int shmrpc__tls_server_new(const shmrpc__tcp_cfg *cfg, shmrpc__tls **out, shmrpc_buf *err);

/* A client's context for the address where (HOST:PORT, for the name its server's
 * certificate must carry unless cfg names one); loopback says whether where is a
 * loopback address (SHMRPC_TLS_VERIFY_AUTO checks other addresses only). */
int shmrpc__tls_client_new(const shmrpc__tcp_cfg *cfg, const char *where, bool loopback,
                           shmrpc__tls **out, shmrpc_buf *err);
void shmrpc__tls_free(shmrpc__tls *t);

/* One connection's byte stream: fd alone (plain), or TLS over fd. */
typedef struct shmrpc__io {
    int fd;
    struct ssl_st *ssl; /* NULL: plain */
    int flags;          /* recv's flags for the read in progress (MSG_DONTWAIT or 0) */
    bool failed;        /* TLS failed: nothing more is sent, not even its close */
    bool again;         /* the BIO's last recv or send would have waited (EAGAIN) */
    bool starved;       /* the BIO's last recv would have waited: OpenSSL holds no whole record */
    uint8_t *raw;       /* bytes read from fd that TLS has not taken yet */
    uint32_t raw_off, raw_len;
    uint16_t head_len; /* the first bytes the peer sent, to tell a plain shmrpc peer */
    uint8_t head[256];
    int status;    /* why TLS failed: SHMRPC_EPERM (a certificate), SHMRPC_EPROTO */
    char why[200]; /* OpenSSL's reason, or what the peer said in plain frames */
} shmrpc__io;

/* A plain connection over fd. */
void shmrpc__io_init(shmrpc__io *io, int fd);

/* Makes io a TLS connection of side t (a server when t is a server's): the handshake runs
 * within the first receives (a server) or shmrpc__io_handshake (a client). SHMRPC_ENOMEM. */
int shmrpc__io_tls(shmrpc__io *io, const shmrpc__tls *t);

/* One step of a client's TLS handshake: 0 when done, 1 when it waits to read, 2 when it
 * waits to write (poll fd for that, then call again), or a negative status with
 * shmrpc__io_error's message in io. */
int shmrpc__io_handshake(shmrpc__io *io);

/* recv(2) and send(2) on io: the count, 0 at the end of the stream (recv), or -1 with
 * errno: EAGAIN when it must wait, EPROTO when TLS failed (io->why says why), else the
 * socket's. flags: 0 or MSG_DONTWAIT; with 0, at most one receive from fd may wait (for
 * SO_RCVTIMEO). send never waits. */
ssize_t shmrpc__io_recv(shmrpc__io *io, void *buf, size_t n, int flags);
ssize_t shmrpc__io_send(shmrpc__io *io, const void *buf, size_t n);
/* Up to n of the bytes a recv would return next, left for it, without waiting: the count,
 * or -1 with errno as for shmrpc__io_recv (EAGAIN when none has come). */
ssize_t shmrpc__io_peek(shmrpc__io *io, void *buf, size_t n);

/* Bytes were received that a recv may return without waiting for fd (poll does not see
 * them): what io->raw holds, or what OpenSSL holds unless the last receive found it short
 * of a whole record. */
bool shmrpc__io_pending(const shmrpc__io *io);

/* After a failed TLS handshake or receive: "TLS with tcp://WHERE failed: REASON" into
 * err (or what a plain shmrpc peer said, when it answered in plain frames), and its
 * status: SHMRPC_EPERM for a certificate refused either way, SHMRPC_EPROTO for a peer
 * that does not speak TLS or breaks it, a plain peer's own status when it refused the
 * connection (SHMRPC_EBUSY at its cap). */
int shmrpc__io_error(const shmrpc__io *io, const char *where, shmrpc_buf *err);

/* Lets go of io's TLS state and closes fd; notify sends TLS's close first (not in a
 * process that only inherited the connection), best effort: not once the socket's write
 * side is shut, as a draining server's is. */
void shmrpc__io_close(shmrpc__io *io, bool notify);

#endif
