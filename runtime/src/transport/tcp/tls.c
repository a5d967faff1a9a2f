/* SPDX-License-Identifier: MIT */
/* TLS 1.3 for tcp:// over OpenSSL, and the byte I/O of a connection, plain or TLS
 * (tls.h, docs/wire.md "TLS"). OpenSSL reads and writes the socket through a BIO of our
 * own: it sends without waiting (MSG_DONTWAIT, MSG_NOSIGNAL) as the plain transport does,
 * receives with the flags of the receive in progress (so a client's blocking receive
 * with SO_RCVTIMEO stays one system call); OpenSSL reads ahead, and its reads go straight
 * into its own buffer when it has room for a whole record, so a record costs one recv
 * rather than two (its header, then its body). OpenSSL does every record (RFC 8446, 5):
 * there is no record protection here. A would-wait is told by the BIO (io->again), not by
 * OpenSSL's error queue, which is not looked at on a call's path. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/tcp/frame.h"
#include "transport/tcp/tcp_int.h"
#include "transport/tcp/tls.h"

/* A TLS record is at most 16 KiB of data and 256 bytes of overhead, and its header 5. */
#define RAW_CAP ((uint32_t)(16384 + 256 + 5))

struct shmrpc__tls {
    SSL_CTX *ctx;
    bool server;
    bool verify;                    /* a client that checks its server's certificate */
    bool name_is_ip;                /* name is an address (checked as one, no SNI) */
    char name[SHMRPC_TLS_PATH_MAX]; /* a client's: the name its server must carry */
};

/* --- OpenSSL's reasons ------------------------------------------------------------------ */

/* The reason of OpenSSL's last error ("certificate verify failed"), or fallback. */
static const char *ssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : fallback;
}

/* A certificate that one side refused: ours (an alert from the peer) or the peer's. */
static bool certificate_reason(unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL) return false;
    switch (ERR_GET_REASON(e)) {
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        return true;
    default:
        return false;
    }
}

/* --- files ------------------------------------------------------------------------------ */

/* The file at path can be opened for reading: a missing or unreadable file is named with
 * its errno before OpenSSL's less direct reason. */
static int readable(const char *what, const char *path, shmrpc_buf *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        shmrpc__msg_set(err, "cannot read the TLS %s file %s: %s", what, path, strerror(e));
        return SHMRPC_ESYS(e);
    }
    close(fd);
    return 0;
}

static int bad_file(const char *what, const char *path, shmrpc_buf *err)
{
    shmrpc__msg_set(err, "the TLS %s file %s was refused: %s", what, path,
                    ssl_reason("not in PEM form"));
    return SHMRPC_EINVAL;
}

/* Loads a certificate chain and its key (in key, or else in the certificate's file). */
static int use_cert(SSL_CTX *ctx, const char *cert, const char *key, shmrpc_buf *err)
{
    if (!key[0]) key = cert;
    int rc = readable("certificate", cert, err);
    if (rc == 0) rc = readable("key", key, err);
    if (rc) return rc;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        return bad_file("certificate", cert, err);
    bool mismatch = false;
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        mismatch =
            ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
        if (!mismatch) return bad_file("key", key, err);
    }
    if (mismatch || SSL_CTX_check_private_key(ctx) != 1) {
        shmrpc__msg_set(err, "the TLS key in %s is not the key of the certificate in %s: %s", key,
                        cert, ssl_reason("they differ"));
        return SHMRPC_EINVAL;
    }
    return 0;
}

static int use_ca(SSL_CTX *ctx, const char *ca, shmrpc_buf *err)
{
    int rc = readable("CA", ca, err);
    if (rc) return rc;
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) return bad_file("CA", ca, err);
    return 0;
}

/* --- contexts --------------------------------------------------------------------------- */

static shmrpc__tls *tls_new(bool server, shmrpc_buf *err)
{
    shmrpc__tls *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->server = server;
    t->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!t->ctx) {
        shmrpc__msg_set(err, "cannot make a TLS context: %s", ssl_reason("out of memory"));
        ERR_clear_error();
        free(t);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION);
    /* A peer that closes without TLS's close_notify ends the stream as a close does: every
     * frame carries its length, so a cut stream is seen as one. */
    long opts = SSL_OP_NO_RENEGOTIATION;
    /* Plaintext read goes with the connection: OpenSSL wipes what it decrypted in its own
     * buffer once it is returned (OpenSSL 3.0). */
#ifdef SSL_OP_CLEANSE_PLAINTEXT
    opts |= SSL_OP_CLEANSE_PLAINTEXT;
#endif
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    opts |= SSL_OP_IGNORE_UNEXPECTED_EOF;
#endif
    SSL_CTX_set_options(t->ctx, opts);
    /* send_all and peer_flush go on from where a short send stopped, out of a buffer that
     * may have moved. */
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
    /* A request or an answer is one record, read with one recv into OpenSSL's own buffer
     * (bio_read) rather than its header and its body apart. */
    SSL_CTX_set_read_ahead(t->ctx, 1);
    /* AES-128-GCM first (OpenSSL's own order starts with AES-256-GCM): as strong as TLS 1.3
     * asks, and faster on a large message (openssl speed, 16 KiB blocks, on the benchmark's
     * machine: 6.0 GB/s against 5.1). The server's order is the one used. ChaCha20-Poly1305
     * first made a 16 B call slower (12.5 us against 9.0, shmrpc-bench tcp/raw-tls),
     * although `openssl speed -aead -evp` has it 4 times quicker on 16 B records. */
    SSL_CTX_set_ciphersuites(t->ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                     "TLS_CHACHA20_POLY1305_SHA256");
    if (server) SSL_CTX_set_options(t->ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    return t;
}

void shmrpc__tls_free(shmrpc__tls *t)
{
    if (!t) return;
    SSL_CTX_free(t->ctx);
    free(t);
}

int shmrpc__tls_server_new(const shmrpc__tcp_cfg *cfg, shmrpc__tls **out, shmrpc_buf *err)
{
    *out = NULL;
    shmrpc__tls *t = tls_new(true, err);
    if (!t) return SHMRPC_ENOMEM;
    /* No session tickets: a client between calls takes anything readable for the server's
     * close (client_choose.c, server_left), and tickets would come after the handshake. */
    SSL_CTX_set_num_tickets(t->ctx, 0);
    int rc = use_cert(t->ctx, cfg->tls_cert, cfg->tls_key, err);
    if (rc == 0 && cfg->tls_ca[0]) {
        rc = use_ca(t->ctx, cfg->tls_ca, err);
        STACK_OF(X509_NAME) *names = rc ? NULL : SSL_load_client_CA_file(cfg->tls_ca);
        if (names) SSL_CTX_set_client_CA_list(t->ctx, names);
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    ERR_clear_error(); /* what a failed load left, once its reason is in err */
    if (rc) {
        shmrpc__tls_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* The host part of HOST:PORT, [V6]:PORT or PORT (127.0.0.1) into name. */
static void host_of(const char *where, char *name, size_t n)
{
    const char *colon = strrchr(where, ':');
    if (where[0] == '[') {
        const char *close = strchr(where, ']');
        size_t len = close ? (size_t)(close - where - 1) : 0;
        snprintf(name, n, "%.*s", (int)len, where + 1);
    } else if (colon && colon > where) {
        snprintf(name, n, "%.*s", (int)(colon - where), where);
    } else {
        snprintf(name, n, "127.0.0.1");
    }
}

int shmrpc__tls_client_new(const shmrpc__tcp_cfg *cfg, const char *where, bool loopback,
                           shmrpc__tls **out, shmrpc_buf *err)
{
    *out = NULL;
    shmrpc__tls *t = tls_new(false, err);
    if (!t) return SHMRPC_ENOMEM;
    t->verify = cfg->tls_verify == SHMRPC_TLS_VERIFY_ON ||
                (cfg->tls_verify == SHMRPC_TLS_VERIFY_AUTO && (!loopback || cfg->tls_ca[0]));
    if (cfg->tls_server_name[0])
        snprintf(t->name, sizeof t->name, "%s", cfg->tls_server_name);
    else
        host_of(where, t->name, sizeof t->name);
    unsigned char ip[16];
    t->name_is_ip = inet_pton(AF_INET, t->name, ip) == 1 || inet_pton(AF_INET6, t->name, ip) == 1;
    int rc = 0;
    if (cfg->tls_cert[0]) rc = use_cert(t->ctx, cfg->tls_cert, cfg->tls_key, err);
    if (rc == 0 && t->verify) {
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
        if (cfg->tls_ca[0])
            rc = use_ca(t->ctx, cfg->tls_ca, err);
        else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1)
            rc = bad_file("CA", "of the system", err);
    }
    ERR_clear_error(); /* what a failed load left, once its reason is in err */
    if (rc) {
        shmrpc__tls_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* --- the BIO: OpenSSL's reads and writes of the socket ---------------------------------- */

/* The first bytes the peer sent, kept to tell a plain shmrpc peer (its frames begin with
 * the magic "SRPW", TLS's records with 0x14 to 0x17). A server answers such a client in
 * its own frames, so that the client reads why. */
static void note_head(shmrpc__io *io, const uint8_t *p, size_t n)
{
    size_t room = sizeof io->head - io->head_len;
    if (n > room) n = room;
    memcpy(io->head + io->head_len, p, n);
    io->head_len = (uint16_t)(io->head_len + n);
}

static bool plain_peer(const shmrpc__io *io)
{
    static const uint8_t magic[4] = {'S', 'R', 'P', 'W'};
    return io->head_len >= 4 && memcmp(io->head, magic, 4) == 0;
}

/* Receives into p (cap bytes) with the flags of the receive in progress; after the first
 * bytes of a receive, without waiting (one wait per shmrpc__io_recv at most). The first
 * bytes the peer sends are kept (note_head), and a plain client of a server is answered in
 * a plain ERROR frame. The count, 0 at the end of the stream, or -1 with errno. */
static ssize_t raw_recv(shmrpc__io *io, uint8_t *p, size_t cap)
{
    ssize_t k;
    do
        k = recv(io->fd, p, cap, io->flags);
    while (k < 0 && errno == EINTR);
    if (k <= 0) return k;
    io->flags |= MSG_DONTWAIT;
    if (io->head_len < sizeof io->head) {
        bool first = io->head_len == 0;
        note_head(io, p, (size_t)k);
        if (first && plain_peer(io) && SSL_is_server(io->ssl)) {
            shmrpc_buf b2;
            shmrpc_buf_init(&b2);
            shmrpc__tcp_put_error_frame(&b2, 0, 0, SHMRPC_EPROTO,
                                        "this server speaks TLS only: connect with TLS "
                                        "(shmrpc_tcp_opts.tls)");
            if (!b2.err && send(io->fd, b2.data, b2.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
                /* the peer is gone already */
            }
            shmrpc_buf_destroy(&b2);
            snprintf(io->why, sizeof io->why, "the client does not speak TLS");
            io->status = SHMRPC_EPROTO;
            errno = EPROTO;
            return -1;
        }
    }
    return k;
}

/* OpenSSL reads ahead (SSL_CTX_set_read_ahead): it asks for as much as its buffer holds,
 * and that read goes straight into its buffer, one recv for every record that has come.
 * A smaller ask (the rest of a record that straddled a read, when its buffer has less
 * room than a record) is served from io->raw, read a record's worth at a time, so that no
 * byte is read twice or lost. A read that would wait leaves io->starved set: OpenSSL asks
 * only when what it holds is no whole record, so it then holds part of one at most. */
static int bio_read(BIO *b, char *out, int n)
{
    shmrpc__io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0) return 0;
    if (io->raw_off == io->raw_len) {
        io->raw_off = io->raw_len = 0;
        bool direct = (uint32_t)n >= RAW_CAP;
        ssize_t k = raw_recv(io, direct ? (uint8_t *)out : io->raw, direct ? (size_t)n : RAW_CAP);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            BIO_set_retry_read(b);
            io->again = io->starved = true;
            return -1;
        }
        io->starved = false;
        if (k <= 0 || direct) return (int)k;
        io->raw_len = (uint32_t)k;
    }
    uint32_t have = io->raw_len - io->raw_off;
    uint32_t take = (uint32_t)n < have ? (uint32_t)n : have;
    memcpy(out, io->raw + io->raw_off, take);
    io->raw_off += take;
    return (int)take;
}

static int bio_write(BIO *b, const char *in, int n)
{
    shmrpc__io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t k;
    do
        k = send(io->fd, in, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (k < 0 && errno == EINTR);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        BIO_set_retry_write(b);
        io->again = true;
    }
    return (int)k;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* writes are not buffered */
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;

static void make_bio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "shmrpc socket");
    if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
        BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create))
        bio_method = m;
}

/* --- connections ------------------------------------------------------------------------ */

void shmrpc__io_init(shmrpc__io *io, int fd)
{
    memset(io, 0, sizeof *io); /* a reconnect starts with no reason from the last one */
    io->fd = fd;
}

int shmrpc__io_tls(shmrpc__io *io, const shmrpc__tls *t)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_bio_method);
    if (!bio_method) return SHMRPC_ENOMEM;
    io->raw = malloc(RAW_CAP);
    io->ssl = io->raw ? SSL_new(t->ctx) : NULL;
    BIO *b = io->ssl ? BIO_new(bio_method) : NULL;
    if (!b) {
        SSL_free(io->ssl);
        free(io->raw);
        io->ssl = NULL;
        io->raw = NULL;
        return SHMRPC_ENOMEM;
    }
    BIO_set_data(b, io);
    SSL_set_bio(io->ssl, b, b);
    SSL_set_app_data(io->ssl, io);
    if (t->server) {
        SSL_set_accept_state(io->ssl);
        return 0;
    }
    SSL_set_connect_state(io->ssl);
    if (t->verify && t->name_is_ip)
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(io->ssl), t->name);
    else if (t->verify)
        SSL_set1_host(io->ssl, t->name);
    if (!t->name_is_ip) SSL_set_tlsext_host_name(io->ssl, t->name);
    ERR_clear_error();
    return 0;
}

/* Empties this thread's OpenSSL error queue before an I/O call, as SSL_get_error needs:
 * a look first, as ERR_clear_error walks the whole queue, which on a call's path cost a
 * sixth of OpenSSL's time (perf, shmrpc-bench tcp/raw-tls). Our own failures empty it as
 * they are reported. */
static void err_empty(void)
{
    if (ERR_peek_error() != 0) ERR_clear_error();
}

/* Records why TLS failed (after an SSL_ERROR_SSL or _SYSCALL) and sets errno to EPROTO. */
static void tls_failed(shmrpc__io *io)
{
    io->failed = true;
    if (io->why[0]) { /* said already (a plain client) */
        ERR_clear_error();
        errno = EPROTO;
        return;
    }
    unsigned long e = ERR_peek_last_error();
    long v = SSL_get_verify_result(io->ssl);
    io->status = certificate_reason(e) ? SHMRPC_EPERM : SHMRPC_EPROTO;
    if (e && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && v != X509_V_OK)
        snprintf(io->why, sizeof io->why, "%s: %s", ssl_reason("?"),
                 X509_verify_cert_error_string(v));
    else if (e)
        snprintf(io->why, sizeof io->why, "%s", ssl_reason("?"));
    else
        snprintf(io->why, sizeof io->why, "%s", errno ? strerror(errno) : "the peer left");
    ERR_clear_error();
    errno = EPROTO;
}

/* -1 with errno for a failed SSL_read, SSL_write or handshake step (r its result). */
static ssize_t ssl_fail(shmrpc__io *io, int r)
{
    int e = errno;
    /* Our BIO's EAGAIN, told apart without the error queue (see shmrpc__io_recv). */
    if (io->again) {
        errno = EAGAIN;
        return -1;
    }
    switch (SSL_get_error(io->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && !io->why[0]) { /* the socket's own error, or its end */
            if (e == 0) return 0;
            errno = e;
            return -1;
        }
        tls_failed(io);
        return -1;
    default:
        tls_failed(io);
        return -1;
    }
}

int shmrpc__io_handshake(shmrpc__io *io)
{
    io->flags = MSG_DONTWAIT;
    io->again = false;
    err_empty();
    errno = 0;
    int r = SSL_do_handshake(io->ssl);
    if (r == 1) return 0;
    int e = SSL_get_error(io->ssl, r);
    if (e == SSL_ERROR_WANT_READ) return 1;
    if (e == SSL_ERROR_WANT_WRITE) return 2;
    if (ssl_fail(io, r) >= 0 || errno != EPROTO) { /* the stream ended, or the socket failed */
        io->failed = true;
        io->status = SHMRPC_EPROTO;
        snprintf(io->why, sizeof io->why,
                 "the server closed the connection during the handshake%s%s", errno ? ": " : "",
                 errno ? strerror(errno) : "");
    }
    return io->status;
}

ssize_t shmrpc__io_recv(shmrpc__io *io, void *buf, size_t n, int flags)
{
    if (!io->ssl) return recv(io->fd, buf, n, flags);
    if (io->failed) {
        errno = EPROTO;
        return -1;
    }
    io->flags = flags;
    io->again = false;
    /* The error queue is not emptied first, as SSL_get_error would need: a call that
     * would wait is told by SSL_want (ssl_fail), and our own failures empty the queue as
     * they are reported; only an error that the application left on this thread could
     * lend its reason to a connection that fails. ERR_peek_error on each call cost 0.1 us
     * of the TLS call's 3 (perf, shmrpc-bench tcp/raw-tls). */
    errno = 0;
    int r = SSL_read(io->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    return r > 0 ? r : ssl_fail(io, r);
}

ssize_t shmrpc__io_peek(shmrpc__io *io, void *buf, size_t n)
{
    if (!io->ssl) return recv(io->fd, buf, n, MSG_PEEK | MSG_DONTWAIT);
    if (io->failed) {
        errno = EPROTO;
        return -1;
    }
    io->flags = MSG_DONTWAIT;
    io->again = false;
    errno = 0; /* the error queue: as in shmrpc__io_recv */
    int r = SSL_peek(io->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    return r > 0 ? r : ssl_fail(io, r);
}

ssize_t shmrpc__io_send(shmrpc__io *io, const void *buf, size_t n)
{
    if (!io->ssl) return send(io->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (io->failed) {
        errno = EPIPE;
        return -1;
    }
    if (n == 0) return 0;
    io->flags = MSG_DONTWAIT; /* a write that reads (the rest of a handshake) never waits */
    io->again = false;
    errno = 0; /* the error queue: as in shmrpc__io_recv */
    int r = SSL_write(io->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0) return r;
    ssize_t k = ssl_fail(io, r);
    if (k == 0) errno = EPIPE; /* a write does not end a stream */
    return -1;
}

bool shmrpc__io_pending(const shmrpc__io *io)
{
    /* SSL_has_pending counts part of a record too: after a receive that found no more
     * bytes (starved), what OpenSSL holds waits for the socket, which poll sees. */
    return io->ssl && (io->raw_off < io->raw_len || (!io->starved && SSL_has_pending(io->ssl)));
}

int shmrpc__io_error(const shmrpc__io *io, const char *where, shmrpc_buf *err)
{
    if (io->ssl && plain_peer(io) && !SSL_is_server(io->ssl)) {
        /* A server that answered in shmrpc frames: one without TLS (which refused the
         * ClientHello as a bad frame) or one that refused the connection before TLS
         * (at its connection caps), whose status is passed on. */
        shmrpc__frame_hdr h;
        int status = 0;
        shmrpc_str msg = {0};
        shmrpc_buf ignored;
        shmrpc_buf_init(&ignored);
        if (shmrpc__frame_hdr_decode(io->head, io->head_len, SHMRPC__WIRE_MAX_HELLO, 0, &h,
                                     &ignored) == 0 &&
            h.kind == SHMRPC__KIND_ERROR && h.body_len <= io->head_len - SHMRPC__FRAME_HDR_SIZE &&
            shmrpc__error_parse(shmrpc_bytes_of(io->head + SHMRPC__FRAME_HDR_SIZE, h.body_len),
                                &status, &msg, &ignored) != 0)
            status = 0;
        shmrpc_buf_destroy(&ignored);
        if (status && status != SHMRPC_EPROTO && shmrpc__status_known(status)) {
            shmrpc__msg_set(err, "tcp://%s refused the connection before TLS: %.*s", where,
                            (int)msg.len, msg.ptr);
            return status;
        }
        shmrpc__msg_set(err,
                        "tcp://%s does not speak TLS: it answered the TLS handshake in plain "
                        "shmrpc frames (connect without shmrpc_tcp_opts.tls, or give the "
                        "server a certificate)",
                        where);
        return SHMRPC_EPROTO;
    }
    shmrpc__msg_set(err, "TLS with tcp://%s failed: %s", where,
                    io->why[0] ? io->why : "the connection broke");
    return io->status ? io->status : SHMRPC_EPROTO;
}

void shmrpc__io_close(shmrpc__io *io, bool notify)
{
    if (io->ssl) {
        if (notify && !io->failed && SSL_is_init_finished(io->ssl)) {
            ERR_clear_error();
            SSL_shutdown(io->ssl); /* one record, without waiting */
        }
        SSL_free(io->ssl);
        ERR_clear_error();
        free(io->raw);
        io->ssl = NULL;
        io->raw = NULL;
    }
    if (io->fd >= 0) close(io->fd);
    io->fd = -1;
}
