/* SPDX-License-Identifier: MIT */
/* The shared secret of the tcp:// transport: reading it from a file, and the HMAC proofs
 * of docs/wire.md ("Authentication"). The cryptography is libsodium's: HMAC-SHA-256,
 * a constant-time comparison, and the system's random numbers. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport/tcp/auth.h"

static int load_secret(const char *path, void *out, size_t cap, size_t *len, shmrpc_buf *err)
{
    /* O_NONBLOCK: open() of a FIFO would wait for a writer, forever if none comes. The
     * type is checked below before anything is read; the flag is harmless on a file. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        shmrpc__msg_set(err, "cannot open the secret file %s: %s", path, strerror(e));
        return SHMRPC_ESYS(e);
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        shmrpc__msg_set(err, "cannot stat the secret file %s: %s", path, strerror(e));
        rc = SHMRPC_ESYS(e);
    } else if (!S_ISREG(st.st_mode)) {
        shmrpc__msg_set(err, "the secret file %s is %s, not a regular file", path,
                        S_ISFIFO(st.st_mode)  ? "a FIFO"
                        : S_ISDIR(st.st_mode) ? "a folder"
                                              : "a device or socket");
        rc = SHMRPC_EINVAL;
    } else if (st.st_uid != geteuid()) {
        shmrpc__msg_set(err, "the secret file %s belongs to uid %u, not to this user (%u)", path,
                        (unsigned)st.st_uid, (unsigned)geteuid());
        rc = SHMRPC_EPERM;
    } else if (st.st_mode & 077) {
        shmrpc__msg_set(err, "the secret file %s has mode %04o: others may read it (chmod 600)",
                        path, (unsigned)(st.st_mode & 07777));
        rc = SHMRPC_EPERM;
    }
    uint8_t buf[SHMRPC_SECRET_MAX + 2]; /* one past the largest with its newline */
    size_t n = 0;
    while (rc == 0 && n < sizeof buf) {
        ssize_t k = read(fd, buf + n, sizeof buf - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            int e = errno;
            shmrpc__msg_set(err, "cannot read the secret file %s: %s", path, strerror(e));
            rc = SHMRPC_ESYS(e);
        }
        if (k <= 0) break;
        n += (size_t)k;
    }
    close(fd);
    if (rc == 0 && n > 0 && buf[n - 1] == '\n') n--;
    if (rc == 0 && n > SHMRPC_SECRET_MAX) {
        shmrpc__msg_set(err, "the secret in %s is longer than %d bytes", path, SHMRPC_SECRET_MAX);
        rc = SHMRPC_EINVAL;
    } else if (rc == 0 && n < SHMRPC_SECRET_MIN) {
        shmrpc__msg_set(err, "the secret in %s is %zu bytes; it must be %d to %d", path, n,
                        SHMRPC_SECRET_MIN, SHMRPC_SECRET_MAX);
        rc = SHMRPC_EINVAL;
    } else if (rc == 0 && n > cap) {
        shmrpc__msg_set(err, "the secret in %s is %zu bytes, more than the %zu given for it", path,
                        n, cap);
        rc = SHMRPC_EINVAL;
    }
    if (rc == 0) {
        memcpy(out, buf, n);
        *len = n;
    }
    sodium_memzero(buf, sizeof buf);
    return rc;
}

int shmrpc_secret_load(const char *path, void *out, size_t cap, size_t *len)
{
    return shmrpc__err_end(load_secret(path, out, cap, len, shmrpc__err_begin()));
}

int shmrpc__auth_nonce(uint8_t out[SHMRPC__AUTH_LEN])
{
    if (sodium_init() < 0) return SHMRPC_ENOMEM;
    randombytes_buf(out, SHMRPC__AUTH_LEN);
    return 0;
}

/* HMAC(secret, label || len(hello) || hello || len(ack) || ack), lengths 4 bytes big-endian. */
static void proof(const shmrpc__tcp_cfg *cfg, const char *label, shmrpc_bytes hello,
                  shmrpc_bytes ack, uint8_t out[SHMRPC__AUTH_LEN])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, cfg->secret, cfg->secret_len);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label) + 1);
    const shmrpc_bytes parts[2] = {hello, ack};
    for (int i = 0; i < 2; i++) {
        uint8_t n[4] = {(uint8_t)(parts[i].len >> 24), (uint8_t)(parts[i].len >> 16),
                        (uint8_t)(parts[i].len >> 8), (uint8_t)parts[i].len};
        crypto_auth_hmacsha256_update(&st, n, sizeof n);
        crypto_auth_hmacsha256_update(&st, parts[i].ptr, parts[i].len);
    }
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

void shmrpc__auth_proofs(const shmrpc__tcp_cfg *cfg, shmrpc_bytes hello, shmrpc_bytes ack,
                         uint8_t client[SHMRPC__AUTH_LEN], uint8_t server[SHMRPC__AUTH_LEN])
{
    proof(cfg, "shmrpc auth 1 client", hello, ack, client);
    proof(cfg, "shmrpc auth 1 server", hello, ack, server);
}

void shmrpc__auth_wipe(void *p, size_t n)
{
    sodium_memzero(p, n);
}

bool shmrpc__auth_equal(const uint8_t *a, const uint8_t *b)
{
    return crypto_verify_32(a, b) == 0;
}
