/* SPDX-License-Identifier: MIT */
/* TLS 1.3 for tcp:// over OpenSSL, and the byte I/O of a connection, plain or TLS
 * (tls.h, docs/wire.md "TLS"). OpenSSL reads and writes the socket through a BIO of our
 * own: it sends without waiting (MSG_DONTWAIT, MSG_NOSIGNAL) as the plain transport does,
 * receives with the flags of the receive in progress (so a client's blocking receive
 * with SO_RCVTIMEO stays one system call); OpenSSL reads ahead, and its reads go straight
 * into its own buffer, so a record costs one recv rather than two (its header, then its
 * body) and no copy. A would-wait is told by the BIO (io->again), not by OpenSSL's error
 * queue, which is not looked at on a call's path. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "tcp_int.h"
#include "tls.h"

/* A TLS record is at most 16 KiB of data and 256 bytes of overhead, and its header 5. */
#define RAW_CAP ((uint32_t)(16384 + 256 + 5))

struct shmrpc__tls {
    SSL_CTX *ctx;
    bool server;
    bool verify;                    /* a client that checks its server's certificate */
    bool name_is_ip;                /* name is an address (checked as one, no SNI) */
    bool fast;                      /* shmrpc's records after the handshake (go_fast) */
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

static void keylog(const SSL *ssl, const char *line);
static bool fast_records_possible(void);

/* --- contexts --------------------------------------------------------------------------- */

static shmrpc__tls *tls_new(bool server, shmrpc_buf *err)
{
    shmrpc__tls *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->server = server;
    t->fast = fast_records_possible();
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
    SSL_CTX_set_keylog_callback(t->ctx, keylog); /* the secrets of our records (go_fast) */
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
     * close (tcp_client.c, server_left), and tickets would come after the handshake. */
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

static void openssl_records(shmrpc__io *io);

/* OpenSSL reads ahead (SSL_CTX_set_read_ahead): it asks for as much as its buffer holds,
 * and that read goes straight into its buffer, one recv for every record that has come.
 * A smaller ask (none is expected) is served from io->raw, read a record's worth at a
 * time, so that no byte is read twice or lost. */
static int bio_read(BIO *b, char *out, int n)
{
    shmrpc__io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0) return 0;
    if (io->rec) openssl_records(io);
    if (io->raw_off == io->raw_len) {
        io->raw_off = io->raw_len = 0;
        bool direct = (uint32_t)n >= RAW_CAP;
        ssize_t k = raw_recv(io, direct ? (uint8_t *)out : io->raw, direct ? (size_t)n : RAW_CAP);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            BIO_set_retry_read(b);
            io->again = true;
            return -1;
        }
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
    if (io->rec) openssl_records(io);
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

/* --- the records after the handshake ---------------------------------------------------- */

/* OpenSSL's record layer costs about 1.3 us a record on this machine (SSL_write and
 * SSL_read of 16 B, most of it in its provider calls), two records a call: a 16 B call
 * over TLS took 1.55x a plain one (shmrpc-bench tcp/raw-tls). Once the handshake is done,
 * TLS 1.3's records are a simple thing (RFC 8446, 5.2): so OpenSSL does the handshake,
 * and the records of AES-128-GCM (the suite shmrpc servers choose first) are sealed and
 * opened here, as the kernel's TLS does with the same secrets: a small record with
 * OpenSSL's GCM (CRYPTO_gcm128, its GHASH by PCLMULQDQ) over an AES-NI block cipher, a
 * large one with OpenSSL's EVP AES-GCM, which is faster in bulk. Any other suite, a
 * machine without AES-NI, an OpenSSL before 3.0 (its HKDF), or SHMRPC_TLS_RECORDS=openssl
 * leave the records to OpenSSL (docs/wire.md, "What TLS costs"). */

#define REC_MAX 16384                              /* a record's plaintext at most */
#define REC_HDR 5                                  /* type, version, length */
#define REC_TAG 16                                 /* AES-GCM's tag */
#define REC_SMALL 512                              /* records up to this go through CRYPTO_gcm128 */
#define WBUF_CAP (REC_HDR + REC_MAX + 1 + REC_TAG) /* a record's, sealed */
#define WBUF_RECORDS 4                             /* sent with one send at most */
#define SECRET_LEN 32 /* SHA-256's: TLS_AES_128_GCM_SHA256's traffic secrets */
/* A peer may make a receiver open records that yield nothing: empty ones, warning alerts
 * (user_canceled), session tickets. OpenSSL ends a connection after 32 empty records or 5
 * warning alerts in a row, and so do we (a flood of them kept a one-worker server from
 * its other clients); so one receive opens at most REC_EMPTY_MAX + REC_WARN_MAX + 1
 * records before it has data, fails, or waits. */
#define REC_EMPTY_MAX 32
#define REC_WARN_MAX 5

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) &&                            \
    OPENSSL_VERSION_NUMBER >= 0x30000000L
#include <immintrin.h>
#include <openssl/modes.h>
#define FAST_RECORDS 1
#endif

#ifdef FAST_RECORDS

/* One direction's protection: its traffic key and IV, and its sequence number. */
typedef struct rec_dir {
    uint8_t rk[11 * 16]; /* AES-128's round keys (AES-NI) */
    uint8_t iv[12];
    uint64_t seq;
    EVP_CIPHER_CTX *evp; /* large records */
    GCM128_CONTEXT *gcm; /* small records, over rk */
} rec_dir;

struct shmrpc__rec {
    bool on;                       /* the records are ours (after the handshake) */
    bool eof;                      /* the peer's close_notify came */
    bool openssl_app;              /* OpenSSL moved records after the handshake: not ours */
    uint8_t empty_run, warn_run;   /* records without data in a row (REC_EMPTY_MAX, ...) */
    bool have[2];                  /* the secrets below came (keylog) */
    uint8_t secret[2][SECRET_LEN]; /* client's, server's application secrets */
    rec_dir in, out;
    uint8_t *pt; /* plaintext of the record read, not returned */
    uint32_t pt_len;
    uint8_t *wbuf;                 /* the records being sent */
    uint32_t w_cap;                /* wbuf's size: one record's, or WBUF_RECORDS' */
    uint32_t w_off, w_len, w_plen; /* sent of them, their size, their plaintext's */
};

__attribute__((target("aes,sse2"))) static __m128i key_step(__m128i k, __m128i g)
{
    g = _mm_shuffle_epi32(g, 0xff);
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    return _mm_xor_si128(k, g);
}

/* AES-128's key schedule (FIPS 197) by AESKEYGENASSIST. */
__attribute__((target("aes,sse2"))) static void aes_key(uint8_t rk[11 * 16], const uint8_t key[16])
{
    __m128i k = _mm_loadu_si128((const __m128i *)key);
    _mm_storeu_si128((__m128i *)rk, k);
#define KEY_STEP(i, rcon)                                                                          \
    k = key_step(k, _mm_aeskeygenassist_si128(k, rcon));                                           \
    _mm_storeu_si128((__m128i *)(rk + 16 * (i)), k)
    KEY_STEP(1, 0x01);
    KEY_STEP(2, 0x02);
    KEY_STEP(3, 0x04);
    KEY_STEP(4, 0x08);
    KEY_STEP(5, 0x10);
    KEY_STEP(6, 0x20);
    KEY_STEP(7, 0x40);
    KEY_STEP(8, 0x80);
    KEY_STEP(9, 0x1b);
    KEY_STEP(10, 0x36);
#undef KEY_STEP
}

/* One AES-128 block (CRYPTO_gcm128's block128_f): constant time, as AES-NI is. */
__attribute__((target("aes,sse2"))) static void aes_block(const unsigned char in[16],
                                                          unsigned char out[16], const void *key)
{
    const uint8_t *rk = key;
    __m128i b =
        _mm_xor_si128(_mm_loadu_si128((const __m128i *)in), _mm_loadu_si128((const __m128i *)rk));
    for (int i = 1; i < 10; i++)
        b = _mm_aesenc_si128(b, _mm_loadu_si128((const __m128i *)(rk + 16 * i)));
    b = _mm_aesenclast_si128(b, _mm_loadu_si128((const __m128i *)(rk + 160)));
    _mm_storeu_si128((__m128i *)out, b);
}

static bool aesni_ok;

/* AES-NI and PCLMULQDQ are there, and the block cipher above agrees with OpenSSL's on
 * FIPS 197's example (C.1): else the records stay OpenSSL's. */
static void check_aesni(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("aes") || !__builtin_cpu_supports("pclmul")) return;
    static const uint8_t key[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                    0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
    static const uint8_t in[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                   0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    static const uint8_t want[16] = {0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30,
                                     0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a};
    uint8_t rk[11 * 16], out[16];
    aes_key(rk, key);
    aes_block(in, out, rk);
    aesni_ok = memcmp(out, want, sizeof out) == 0;
    OPENSSL_cleanse(rk, sizeof rk);
}

/* Read when a context is made (not at each connect). With FIPS mode on, only the FIPS
 * provider's ciphers may be used: OpenSSL's records then. */
static bool fast_records_possible(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, check_aesni);
    const char *e = getenv("SHMRPC_TLS_RECORDS");
    return aesni_ok && !(e && strcmp(e, "openssl") == 0) &&
           !EVP_default_properties_is_fips_enabled(NULL);
}

static void rec_dir_free(rec_dir *d)
{
    EVP_CIPHER_CTX_free(d->evp);
    CRYPTO_gcm128_release(d->gcm);
    OPENSSL_cleanse(d, sizeof *d);
}

static void rec_free(struct shmrpc__rec *r)
{
    if (!r) return;
    rec_dir_free(&r->in);
    rec_dir_free(&r->out);
    free(r->wbuf);
    OPENSSL_cleanse(r, sizeof *r);
    free(r);
}

/* OpenSSL hands each secret of the handshake to its key log: the two application traffic
 * secrets are kept (until they are made keys), the others ignored. Lines are "LABEL
 * CLIENT_RANDOM SECRET", in hex. */
static void keylog(const SSL *ssl, const char *line)
{
    shmrpc__io *io = SSL_get_app_data(ssl);
    if (!io || !io->rec) return;
    static const char *const labels[2] = {"CLIENT_TRAFFIC_SECRET_0 ", "SERVER_TRAFFIC_SECRET_0 "};
    for (int i = 0; i < 2; i++) {
        size_t ll = strlen(labels[i]);
        if (strncmp(line, labels[i], ll) != 0) continue;
        const char *hex = strchr(line + ll, ' ');
        if (!hex || strlen(hex + 1) != 2 * SECRET_LEN) return;
        long len = 0;
        unsigned char *b = OPENSSL_hexstr2buf(hex + 1, &len);
        if (b && len == SECRET_LEN) {
            memcpy(io->rec->secret[i], b, SECRET_LEN);
            io->rec->have[i] = true;
        }
        if (b) OPENSSL_clear_free(b, (size_t)len);
    }
}

/* HKDF-Expand-Label(secret, label, "", n) of TLS 1.3 (RFC 8446, 7.1), SHA-256. */
static bool expand_label(const uint8_t *secret, const char *label, uint8_t *out, size_t n)
{
    uint8_t info[2 + 1 + 6 + 16 + 1];
    size_t ll = strlen(label);
    info[0] = (uint8_t)(n >> 8);
    info[1] = (uint8_t)n;
    info[2] = (uint8_t)(6 + ll);
    memcpy(info + 3, "tls13 ", 6);
    memcpy(info + 9, label, ll);
    info[9 + ll] = 0;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM ps[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, SECRET_LEN),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, 10 + ll),
        OSSL_PARAM_construct_end()};
    bool ok = kc && EVP_KDF_derive(kc, out, n, ps) == 1;
    EVP_KDF_CTX_free(kc);
    return ok;
}

/* One direction's key and IV from its traffic secret. */
static bool rec_dir_init(rec_dir *d, const uint8_t *secret, bool enc)
{
    uint8_t key[16];
    bool ok = expand_label(secret, "key", key, sizeof key) &&
              expand_label(secret, "iv", d->iv, sizeof d->iv);
    d->evp = ok ? EVP_CIPHER_CTX_new() : NULL;
    ok = d->evp && EVP_CipherInit_ex(d->evp, EVP_aes_128_gcm(), NULL, key, NULL, enc) == 1;
    if (ok) {
        aes_key(d->rk, key);
        d->gcm = CRYPTO_gcm128_new(d->rk, aes_block);
        ok = d->gcm != NULL;
    }
    OPENSSL_cleanse(key, sizeof key);
    return ok;
}

/* The handshake is done: the records are ours from here if the suite is AES-128-GCM and
 * OpenSSL holds nothing it read past the handshake (it reads records exactly while
 * shaking hands, see shmrpc__io_tls, so what came after stays in io->raw). Else
 * OpenSSL goes on with them. */
static void go_fast(shmrpc__io *io)
{
    struct shmrpc__rec *r = io->rec;
    if (!r) return;
    const SSL_CIPHER *c = SSL_get_current_cipher(io->ssl);
    bool server = SSL_is_server(io->ssl);
    bool ok = r->have[0] && r->have[1] && c && !r->openssl_app &&
              SSL_CIPHER_get_id(c) == TLS1_3_CK_AES_128_GCM_SHA256 && !SSL_has_pending(io->ssl) &&
              (r->wbuf = malloc(r->w_cap = WBUF_CAP)) != NULL &&
              rec_dir_init(&r->in, r->secret[server ? 0 : 1], false) &&
              rec_dir_init(&r->out, r->secret[server ? 1 : 0], true);
    OPENSSL_cleanse(r->secret, sizeof r->secret);
    if (ok) {
        r->on = true;
        return;
    }
    rec_free(r);
    io->rec = NULL;
    SSL_set_read_ahead(io->ssl, 1);
    ERR_clear_error();
}

/* The nonce of a direction's next record: its IV xor its sequence number. */
static void nonce_of(const rec_dir *d, uint8_t nonce[12])
{
    memcpy(nonce, d->iv, 12);
    for (int i = 0; i < 8; i++)
        nonce[11 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

/* Encrypts in (n bytes) and the content type after them into out, the tag after that:
 * a record's body, under its header hdr. */
static bool seal(rec_dir *d, const uint8_t *hdr, const uint8_t *in, size_t n, uint8_t type,
                 uint8_t *out)
{
    uint8_t nonce[12];
    nonce_of(d, nonce);
    d->seq++;
    int l;
    if (n < REC_SMALL) {
        CRYPTO_gcm128_setiv(d->gcm, nonce, sizeof nonce);
        if (CRYPTO_gcm128_aad(d->gcm, hdr, REC_HDR) || CRYPTO_gcm128_encrypt(d->gcm, in, out, n) ||
            CRYPTO_gcm128_encrypt(d->gcm, &type, out + n, 1))
            return false;
        CRYPTO_gcm128_tag(d->gcm, out + n + 1, REC_TAG);
        return true;
    }
    return EVP_EncryptInit_ex(d->evp, NULL, NULL, NULL, nonce) == 1 &&
           EVP_EncryptUpdate(d->evp, NULL, &l, hdr, REC_HDR) == 1 &&
           EVP_EncryptUpdate(d->evp, out, &l, in, (int)n) == 1 &&
           EVP_EncryptUpdate(d->evp, out + n, &l, &type, 1) == 1 &&
           EVP_EncryptFinal_ex(d->evp, out + n + 1, &l) == 1 &&
           EVP_CIPHER_CTX_ctrl(d->evp, EVP_CTRL_AEAD_GET_TAG, REC_TAG, out + n + 1) == 1;
}

/* Decrypts a record's body in (n bytes and the tag after them) into out: false for a
 * record that was not sealed with this direction's key and sequence number (then out
 * holds nothing to use). */
static bool open_rec(rec_dir *d, const uint8_t *hdr, const uint8_t *in, size_t n, uint8_t *out)
{
    uint8_t nonce[12];
    nonce_of(d, nonce);
    d->seq++;
    int l;
    if (n <= REC_SMALL) {
        CRYPTO_gcm128_setiv(d->gcm, nonce, sizeof nonce);
        return CRYPTO_gcm128_aad(d->gcm, hdr, REC_HDR) == 0 &&
               CRYPTO_gcm128_decrypt(d->gcm, in, out, n) == 0 &&
               CRYPTO_gcm128_finish(d->gcm, in + n, REC_TAG) == 0;
    }
    return EVP_DecryptInit_ex(d->evp, NULL, NULL, NULL, nonce) == 1 &&
           EVP_DecryptUpdate(d->evp, NULL, &l, hdr, REC_HDR) == 1 &&
           EVP_DecryptUpdate(d->evp, out, &l, in, (int)n) == 1 &&
           EVP_CIPHER_CTX_ctrl(d->evp, EVP_CTRL_AEAD_SET_TAG, REC_TAG, (void *)(in + n)) == 1 &&
           EVP_DecryptFinal_ex(d->evp, out + l, &l) == 1;
}

static bool put_record(shmrpc__io *io, uint8_t type, const void *buf, size_t n);
static bool flush_record(shmrpc__io *io);

/* TLS failed on our records: why, and EPROTO. A fatal alert (RFC 8446, 6.2) tells the
 * peer why, best effort and only if no record is half sent; nothing more is sent after. */
static ssize_t rec_failed_alert(shmrpc__io *io, const char *why, uint8_t alert)
{
    struct shmrpc__rec *r = io->rec;
    if (alert && !io->failed && r->w_off == r->w_len) {
        const uint8_t a[2] = {SSL3_AL_FATAL, alert};
        r->w_off = r->w_len = r->w_plen = 0;
        if (r->out.seq != UINT64_MAX && put_record(io, SSL3_RT_ALERT, a, 2)) flush_record(io);
        r->w_off = r->w_len = r->w_plen = 0;
    }
    io->failed = true;
    io->status = SHMRPC_EPROTO;
    snprintf(io->why, sizeof io->why, "%s", why);
    ERR_clear_error();
    errno = EPROTO;
    return -1;
}

static ssize_t rec_failed(shmrpc__io *io, const char *why)
{
    return rec_failed_alert(io, why, 0);
}

/* Opens the record at the front of io->raw (whole, its header checked): its application
 * data straight into buf when all of the record's body fits in its cap bytes (the count
 * returned), else in place, as r->pt; a close_notify ends the stream. The count, 0 for
 * nothing in buf, or -1 with errno. */
static ssize_t take_record(shmrpc__io *io, uint32_t len, uint8_t *buf, size_t cap)
{
    struct shmrpc__rec *r = io->rec;
    uint8_t *h = io->raw + io->raw_off;
    io->raw_off += REC_HDR + len;
    size_t n = len - REC_TAG;
    /* TLSInnerPlaintext (content, type, padding) is 2^14 + 1 bytes at most (5.4). */
    if (n > REC_MAX + 1) return rec_failed_alert(io, "record overflow", SSL_AD_RECORD_OVERFLOW);
    if (r->in.seq == UINT64_MAX) /* the sequence would wrap (5.3): a nonce used again */
        return rec_failed(io, "the records' sequence number ran out");
    uint8_t *p = cap >= n ? buf : h + REC_HDR;
    if (!open_rec(&r->in, h, h + REC_HDR, n, p))
        return rec_failed_alert(io, "decryption failed or bad record mac", SSL_AD_BAD_RECORD_MAC);
    while (n > 0 && p[n - 1] == 0)
        n--; /* the padding */
    if (n == 0)
        return rec_failed_alert(io, "a record without a content type", SSL_AD_UNEXPECTED_MESSAGE);
    uint8_t type = p[--n];
    if (type == SSL3_RT_APPLICATION_DATA && n > 0) {
        r->empty_run = r->warn_run = 0;
        if (p == buf) return (ssize_t)n;
        r->pt = p;
        r->pt_len = (uint32_t)n;
        return 0;
    }
    if (type == SSL3_RT_APPLICATION_DATA) {
        if (++r->empty_run > REC_EMPTY_MAX)
            return rec_failed_alert(io, "too many empty records", SSL_AD_UNEXPECTED_MESSAGE);
        return 0;
    }
    if (type == SSL3_RT_ALERT && n == 2 && p[1] == SSL_AD_CLOSE_NOTIFY) {
        r->eof = true;
        return 0;
    }
    if (type == SSL3_RT_ALERT && n == 2 && p[0] == SSL3_AL_WARNING &&
        p[1] == SSL_AD_USER_CANCELLED) {
        if (++r->warn_run >= REC_WARN_MAX)
            return rec_failed_alert(io, "too many warning alerts", SSL_AD_UNEXPECTED_MESSAGE);
        return 0;
    }
    if (type == SSL3_RT_ALERT && n == 2) {
        /* Said as OpenSSL says it ("tlsv13 alert certificate required"): a certificate
         * that the server refused after the client's handshake ended comes this way. */
        unsigned long e = ERR_PACK(ERR_LIB_SSL, 0, SSL_AD_REASON_OFFSET + p[1]);
        const char *reason = ERR_reason_error_string(e);
        char why[120];
        snprintf(why, sizeof why, "%s", reason ? reason : "the peer sent an alert");
        rec_failed(io, why);
        if (certificate_reason(e)) io->status = SHMRPC_EPERM;
        return -1;
    }
    /* Handshake messages after the handshake: session tickets (shmrpc servers issue none)
     * are let by at a client, whole and within the count of empty records; one sent to a
     * server, one split over records, and a KeyUpdate (which neither side of shmrpc
     * sends) are refused. */
    bool server = SSL_is_server(io->ssl);
    for (size_t at = 0; type == SSL3_RT_HANDSHAKE && !server && at + 4 <= n;) {
        size_t mlen = (size_t)p[at + 1] << 16 | (size_t)p[at + 2] << 8 | p[at + 3];
        if (p[at] != SSL3_MT_NEWSESSION_TICKET || at + 4 + mlen > n) break;
        at += 4 + mlen;
        if (at == n && ++r->empty_run > REC_EMPTY_MAX)
            return rec_failed_alert(io, "too many session tickets", SSL_AD_UNEXPECTED_MESSAGE);
        if (at == n) return 0;
    }
    return rec_failed_alert(io,
                            type == SSL3_RT_HANDSHAKE ? "a handshake message after the handshake"
                                                      : "unexpected message",
                            SSL_AD_UNEXPECTED_MESSAGE);
}

/* shmrpc__io_recv on our records. */
static ssize_t fast_recv(shmrpc__io *io, uint8_t *buf, size_t n)
{
    struct shmrpc__rec *r = io->rec;
    for (;;) {
        if (r->pt_len) {
            uint32_t take = n < r->pt_len ? (uint32_t)n : r->pt_len;
            memcpy(buf, r->pt, take);
            r->pt += take;
            r->pt_len -= take;
            return take;
        }
        if (r->eof) return 0;
        uint32_t have = io->raw_len - io->raw_off;
        if (have >= REC_HDR) {
            const uint8_t *h = io->raw + io->raw_off;
            uint32_t len = (uint32_t)h[3] << 8 | h[4];
            if (h[0] != SSL3_RT_APPLICATION_DATA || h[1] != 3 || h[2] != 3 || len <= REC_TAG ||
                len > REC_MAX + 256)
                return rec_failed_alert(io, "a record that is not TLS 1.3's",
                                        len > REC_MAX + 256 ? SSL_AD_RECORD_OVERFLOW
                                        : h[0] != SSL3_RT_APPLICATION_DATA
                                            ? SSL_AD_UNEXPECTED_MESSAGE
                                            : SSL_AD_DECODE_ERROR);
            if (have >= REC_HDR + len) {
                ssize_t k = take_record(io, len, buf, n);
                if (k != 0) return k;
                continue;
            }
        }
        if (have == 0) {
            io->raw_off = io->raw_len = 0;
        } else if (io->raw_off > 0) { /* the start of a record: it goes to the front */
            memmove(io->raw, io->raw + io->raw_off, have);
            io->raw_off = 0;
            io->raw_len = have;
        }
        ssize_t k = raw_recv(io, io->raw + io->raw_len, RAW_CAP - io->raw_len);
        if (k <= 0) return k; /* a cut record ends the stream as a close does */
        io->raw_len += (uint32_t)k;
    }
}

/* Sends what is left of the record in r->wbuf: true when all of it went. */
static bool flush_record(shmrpc__io *io)
{
    struct shmrpc__rec *r = io->rec;
    while (r->w_off < r->w_len) {
        ssize_t k =
            send(io->fd, r->wbuf + r->w_off, r->w_len - r->w_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return false;
        r->w_off += (uint32_t)k;
    }
    return true;
}

/* Seals type's n bytes at buf into one record at the end of r->wbuf. */
static bool put_record(shmrpc__io *io, uint8_t type, const void *buf, size_t n)
{
    struct shmrpc__rec *r = io->rec;
    uint8_t *h = r->wbuf + r->w_len;
    uint32_t len = (uint32_t)n + 1 + REC_TAG;
    h[0] = SSL3_RT_APPLICATION_DATA;
    h[1] = h[2] = 3;
    h[3] = (uint8_t)(len >> 8);
    h[4] = (uint8_t)len;
    r->w_len += REC_HDR + len;
    r->w_plen += (uint32_t)n;
    return seal(&r->out, h, buf, n, type, h + REC_HDR);
}

/* shmrpc__io_send on our records: up to WBUF_RECORDS records of 16 KiB at a time, sent
 * with one send (the buffer for more than one is made when a large message first comes).
 * Records that went in part are finished by the next send, which returns their count (the
 * caller sends the same bytes again, as with OpenSSL). */
static ssize_t fast_send(shmrpc__io *io, const void *buf, size_t n)
{
    struct shmrpc__rec *r = io->rec;
    if (r->w_off == r->w_len) {
        r->w_off = r->w_len = r->w_plen = 0;
        if (n > REC_MAX && r->w_cap < WBUF_RECORDS * WBUF_CAP) {
            uint8_t *w = realloc(r->wbuf, WBUF_RECORDS * WBUF_CAP);
            if (w) {
                r->wbuf = w;
                r->w_cap = WBUF_RECORDS * WBUF_CAP;
            }
        }
        const uint8_t *in = buf;
        bool ok = true;
        for (size_t left = n; ok && left && r->w_len + WBUF_CAP <= r->w_cap;) {
            ok = r->out.seq != UINT64_MAX; /* the sequence would wrap: a nonce used again */
            size_t m = left < REC_MAX ? left : REC_MAX;
            ok = ok && put_record(io, SSL3_RT_APPLICATION_DATA, in, m);
            in += m, left -= m;
        }
        if (!ok) {
            r->w_off = r->w_len = 0;
            rec_failed(io, "encryption failed");
            errno = EPIPE;
            return -1;
        }
    }
    if (!flush_record(io)) return -1; /* EAGAIN: the rest goes with the next send */
    r->w_off = r->w_len = 0;
    return r->w_plen;
}

/* A close_notify, if no record is half sent. */
static void fast_close_notify(shmrpc__io *io)
{
    static const uint8_t close_notify[2] = {SSL3_AL_WARNING, SSL_AD_CLOSE_NOTIFY};
    struct shmrpc__rec *r = io->rec;
    if (r->w_off != r->w_len || r->out.seq == UINT64_MAX) return;
    r->w_off = r->w_len = r->w_plen = 0;
    if (put_record(io, SSL3_RT_ALERT, close_notify, 2)) flush_record(io);
}

#else /* OpenSSL's records only */

struct shmrpc__rec {
    bool on, eof, openssl_app;
    uint32_t pt_len;
};

static bool fast_records_possible(void)
{
    return false;
}

static void rec_free(struct shmrpc__rec *r)
{
    free(r);
}

static void keylog(const SSL *ssl, const char *line)
{
    (void)ssl, (void)line;
}

static void go_fast(shmrpc__io *io)
{
    free(io->rec);
    io->rec = NULL;
}

static ssize_t fast_recv(shmrpc__io *io, uint8_t *buf, size_t n)
{
    (void)io, (void)buf, (void)n;
    errno = EPROTO;
    return -1;
}

static ssize_t fast_send(shmrpc__io *io, const void *buf, size_t n)
{
    (void)io, (void)buf, (void)n;
    errno = EPIPE;
    return -1;
}

static void fast_close_notify(shmrpc__io *io)
{
    (void)io;
}
#endif

/* --- connections ------------------------------------------------------------------------ */

/* OpenSSL's BIO is used while our records are made ready: once the handshake is done,
 * what it sends or reads are records whose sequence numbers ours would use again (the
 * same key and nonce), so go_fast leaves the records to OpenSSL for good. */
static void openssl_records(shmrpc__io *io)
{
    if (!io->rec->on && SSL_is_init_finished(io->ssl)) io->rec->openssl_app = true;
}

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
    if (t->fast && (io->rec = calloc(1, sizeof *io->rec)) != NULL)
        SSL_set_read_ahead(io->ssl, 0); /* nothing past the handshake is read by OpenSSL */
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
    if (r == 1) {
        go_fast(io);
        return 0;
    }
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
    if (io->rec && !io->rec->on) { /* a server's handshake, then our records */
        err_empty();
        int r = SSL_do_handshake(io->ssl);
        if (r != 1) return ssl_fail(io, r);
        go_fast(io);
    }
    if (io->rec) return fast_recv(io, buf, n);
    int r = SSL_read(io->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
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
    errno = 0;                     /* the error queue: as in shmrpc__io_recv */
    if (io->rec && !io->rec->on) { /* a server's handshake first, as in shmrpc__io_recv */
        err_empty();
        int r = SSL_do_handshake(io->ssl);
        if (r != 1) {
            if (ssl_fail(io, r) == 0) errno = EPIPE;
            return -1;
        }
        go_fast(io);
    }
    if (io->rec) return fast_send(io, buf, n);
    int r = SSL_write(io->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0) return r;
    ssize_t k = ssl_fail(io, r);
    if (k == 0) errno = EPIPE; /* a write does not end a stream */
    return -1;
}

bool shmrpc__io_pending(const shmrpc__io *io)
{
    if (io->rec && io->rec->on) {
        if (io->rec->pt_len || io->rec->eof) return true;
        uint32_t have = io->raw_len - io->raw_off;
        const uint8_t *h = io->raw + io->raw_off;
        return have >= REC_HDR && have >= REC_HDR + ((uint32_t)h[3] << 8 | h[4]);
    }
    return io->ssl && (io->raw_off < io->raw_len || SSL_has_pending(io->ssl));
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
        if (notify && !io->failed && io->rec && io->rec->on) {
            fast_close_notify(io);
        } else if (notify && !io->failed && SSL_is_init_finished(io->ssl)) {
            ERR_clear_error();
            SSL_shutdown(io->ssl); /* one record, without waiting */
        }
        SSL_free(io->ssl);
        ERR_clear_error();
        /* Our records are opened in place in io->raw when they do not fit the caller's
         * buffer: their plaintext goes with the connection. */
        if (io->rec && io->raw) OPENSSL_cleanse(io->raw, RAW_CAP);
        rec_free(io->rec);
        io->rec = NULL;
        free(io->raw);
        io->ssl = NULL;
        io->raw = NULL;
    }
    if (io->fd >= 0) close(io->fd);
    io->fd = -1;
}
