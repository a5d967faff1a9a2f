/* SPDX-License-Identifier: MIT */
/* Settings of the tcp:// transport (docs/wire.md, "Limits" and "Authentication"). Clients
 * and servers share one struct; each side reads the fields that concern it. */
#ifndef SHMRPC_TCP_H
#define SHMRPC_TCP_H

#include <stddef.h>
#include <stdint.h>

#include <shmrpc/decls.h>

SHMRPC_BEGIN_DECLS

/* Compression algorithms, offered by a client and allowed by a server. */
#define SHMRPC_COMPRESS_SNAPPY 0x1u
#define SHMRPC_COMPRESS_ZLIB 0x2u
#define SHMRPC_COMPRESS_NONE 0x8000u /* no compression at all */

/* The most endpoints a client's address may list (tcp://H1:P,H2:P,...), and the most
 * addresses it keeps from resolving them (docs/wire.md, "Endpoint lists"). */
#define SHMRPC_TCP_MAX_ENDPOINTS 64

/* A shared secret is 16 to 256 bytes. */
#define SHMRPC_SECRET_MIN 16
#define SHMRPC_SECRET_MAX 256

/* shmrpc_tcp_opts.tls, a client's choice (a server uses TLS when it has tls_cert). */
#define SHMRPC_TLS_OFF 0 /* plain TCP */
#define SHMRPC_TLS_ON 1  /* TLS 1.3 */

/* shmrpc_tcp_opts.tls_verify, how a TLS client checks the server's certificate. */
#define SHMRPC_TLS_VERIFY_AUTO                                                                     \
    0 /* checked unless the address is loopback and no tls_ca                                      \
       * is given */
#define SHMRPC_TLS_VERIFY_ON                                                                       \
    1                           /* always checked: it chains to tls_ca (or the system's            \
                                 * store) and names the host (or tls_server_name) */
#define SHMRPC_TLS_VERIFY_OFF 2 /* never: the link is encrypted, but to anyone */

/* A path or server name given for TLS is at most this many bytes. */
#define SHMRPC_TLS_PATH_MAX 1024

/* Zero in any field means its default. */
typedef struct shmrpc_tcp_opts {
    unsigned compression;         /* SHMRPC_COMPRESS_* bits; 0: snappy and zlib, except
                                   * that a client offers none to a loopback address */
    uint32_t compress_threshold;  /* smallest message compressed; 0: 4096 bytes */
    int64_t connect_timeout_ms;   /* client: one attempt to connect to an endpoint (TCP,
                                   * TLS, the handshake and authentication), which the
                                   * deadline of the call that needs it (at connect: the
                                   * client's timeout) ends sooner; 0: 5 s */
    int64_t probe_interval_ms;    /* client: an endpoint that refused, failed or stalled
                                   * is left out of the choice for about this long (with
                                   * jitter), doubled after each failure in a row up to 16
                                   * times it, then probed: a connection made in the
                                   * background, which no call waits for, and the endpoint
                                   * taken back once its handshake ends; 0: 100 ms */
    int64_t resolve_interval_ms;  /* client: how often the DNS names of its address are
                                   * resolved again (and after an endpoint failed, at most
                                   * once a second); 0: 30 s */
    int64_t handshake_timeout_ms; /* server: from accept to the handshake's end; 0: 5 s */
    int64_t idle_timeout_ms;      /* server: a connection without a frame; 0: 300 s */
    int64_t progress_timeout_ms;  /* server: a frame being read, and answers waiting
                                   * for room in the socket, must keep moving at 1 MiB/s
                                   * and may fall this far behind (docs/wire.md,
                                   * "Progress"); 0: 10 s */
    int max_conns;                /* server: connections per worker process; 0: 1024.
                                   * Half of them at most are in their handshake (and an
                                   * address with an eighth of those makes room for its
                                   * own): past that, or at the cap, one in its handshake
                                   * makes room for a new connection, else the finished one
                                   * idle longest (docs/wire.md, "Limits") */
    int max_conns_per_addr;       /* server: connections from one peer address (an IPv6
                                   * peer: its /64) that finished their handshake, over all
                                   * workers; 0: 256. Without a secret or client
                                   * certificates anyone who can connect finishes one: any
                                   * local user can then fill 127.0.0.1's count and lock
                                   * the other local clients out (docs/wire.md, "Limits") */
    size_t buffer_budget;         /* server: bytes of large frames (above 256 KiB) that
                                   * all its connections together hold (being read: what
                                   * has come of them, not what their headers announce;
                                   * run, or waiting to be sent), one budget shared by all
                                   * its workers; beyond it a large REQUEST is refused, and
                                   * while it is spent every call is, with SHMRPC_EBUSY;
                                   * calls already handed out still run and keep their
                                   * answers, up to max_running per connection above it
                                   * (docs/wire.md, "Limits"); 0: 256 MiB */
    /* The shared secret (SHMRPC_SECRET_MIN to SHMRPC_SECRET_MAX bytes, copied), or NULL.
     * A server with a secret admits only clients that prove they hold it, and one that
     * binds a non-loopback address must have one. A client with a secret connects only to
     * a server that proves it holds it too. */
    const void *secret;
    size_t secret_len;
    /* TLS 1.3 (docs/wire.md, "TLS"); the files are PEM, read (and their errors reported)
     * when a client connects or a server listens; the strings are copied. A secret, when
     * set, is proven inside the TLS connection as without it. */
    int tls;                     /* client: SHMRPC_TLS_OFF or SHMRPC_TLS_ON */
    int tls_verify;              /* client: SHMRPC_TLS_VERIFY_* */
    const char *tls_cert;        /* server: its certificate (chain), which makes it serve
                                  * TLS only; client: its certificate for mutual TLS */
    const char *tls_key;         /* the private key of tls_cert; NULL: in tls_cert's file */
    const char *tls_ca;          /* server: clients must present a certificate that chains
                                  * to these CAs (mutual TLS); client: the CAs the server's
                                  * certificate must chain to; NULL: the system's store */
    const char *tls_server_name; /* client: the name (DNS or IP) the server's certificate
                                  * must carry; NULL: the host of the address */
    int max_in_flight;           /* client: asynchronous calls in flight on one connection
                                  * (shmrpc_client_start); a start finds room by waiting
                                  * for answers; 0: 64, at most 4096 */
    int max_running;             /* server: calls of one connection that run at once, on
                                  * threads of the worker that holds it (handlers must then
                                  * be thread-safe); at the bound it stops reading the
                                  * connection until one ends (but for the frames of its
                                  * streams); 1: one after another on the worker's own
                                  * thread (a stream on a thread of its own, while no other
                                  * call runs); 0: 16, at most 256. A blocking
                                  * call alone on its connection (the lone flag, wire
                                  * revision 3) runs on the worker's own thread whatever
                                  * this is, without a handoff (docs/wire.md, "Calls in
                                  * flight"); service.ini: tcp_max_running */
    int64_t attempt_delay_ms;    /* client: how long an attempt to connect to one endpoint
                                  * of a list runs alone before the next endpoint's begins
                                  * beside it (Happy Eyeballs), at most half the time the
                                  * call has left; the first to end its handshake takes the
                                  * call, and an endpoint whose attempt had had this long
                                  * and lost is left out (docs/wire.md, "Endpoint lists");
                                  * 0: 250 ms */
} shmrpc_tcp_opts;

/* Reads a shared secret from the file at path into out (cap bytes): the file must belong
 * to this user and be readable by nobody else (mode 0600 or stricter), and hold
 * SHMRPC_SECRET_MIN to SHMRPC_SECRET_MAX bytes; one trailing newline is not part of it.
 * SHMRPC_EPERM, SHMRPC_EINVAL or SHMRPC_ESYS(errno); shmrpc_errmsg() says why (status.h). */
int shmrpc_secret_load(const char *path, void *out, size_t cap, size_t *len);

SHMRPC_END_DECLS

#endif
