/* SPDX-License-Identifier: MIT */
/* Byte views and the growable buffer that requests and responses are written into. */
#ifndef SHMRPC_BUF_H
#define SHMRPC_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <shmrpc/decls.h>

SHMRPC_BEGIN_DECLS

/* A string that need not be NUL-terminated: decoded strings point into the message. */
typedef struct shmrpc_str {
    const char *ptr;
    size_t len;
} shmrpc_str;

typedef struct shmrpc_bytes {
    const uint8_t *ptr;
    size_t len;
} shmrpc_bytes;

#define SHMRPC_STR(lit) ((shmrpc_str){(lit), sizeof(lit) - 1})

static inline shmrpc_str shmrpc_str_c(const char *s)
{
    shmrpc_str r = {s, s ? strlen(s) : 0};
    return r;
}

static inline shmrpc_bytes shmrpc_bytes_of(const void *p, size_t n)
{
    shmrpc_bytes r = {(const uint8_t *)p, n};
    return r;
}

/* A growable buffer in caller-owned storage. Clearing keeps the memory, so a buffer
 * reused call after call stops allocating once it has reached its working size.
 * Errors are sticky: after a failed append, err holds the status and appends do
 * nothing until the next clear, so encoders check once at the end. */
typedef struct shmrpc_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /* appends beyond this fail with SHMRPC_ETOOBIG; 0: no limit. Set it
                 * before the first append: the capacity never grows past max, which
                 * is what enforces it (an append that fits in cap is not checked). */
    int err;    /* 0, or the first failure since the last clear */
} shmrpc_buf;

void shmrpc_buf_init(shmrpc_buf *b);
void shmrpc_buf_destroy(shmrpc_buf *b);

/* Grows the buffer so that n more bytes fit; sets and returns b->err on failure. */
int shmrpc__buf_grow(shmrpc_buf *b, size_t n);

static inline void shmrpc_buf_clear(shmrpc_buf *b)
{
    b->len = 0;
    b->err = 0;
}

static inline int shmrpc_buf_append(shmrpc_buf *b, const void *p, size_t n)
{
    if (b->err) return b->err;
    if (n > b->cap - b->len && shmrpc__buf_grow(b, n) != 0) return b->err;
    /* Bytes that already sit where they would go (an answer written in its loan,
     * shmrpc_ctx_loan) are taken as they are. */
    if (n && p != b->data + b->len) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* Makes room for n more bytes after len without appending them (a caller then writes
 * there and moves len): 0, or b->err (SHMRPC_ENOMEM, SHMRPC_ETOOBIG past max). */
static inline int shmrpc_buf_reserve(shmrpc_buf *b, size_t n)
{
    if (b->err) return b->err;
    return n > b->cap - b->len ? shmrpc__buf_grow(b, n) : 0;
}

/* Appends printf's text for fmt, whole however long it is; a NUL follows it in data when
 * it fits (not counted in len). 0, or b->err: SHMRPC_ENOMEM, SHMRPC_ETOOBIG past max,
 * SHMRPC_EINVAL for a format printf refuses. */
int shmrpc_buf_appendf(shmrpc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int shmrpc_buf_vappendf(shmrpc_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* msgpack-c's write callback over a shmrpc_buf:
 *     msgpack_packer_init(&pk, buf, shmrpc_buf_msgpack_write); */
static inline int shmrpc_buf_msgpack_write(void *buf, const char *p, size_t n)
{
    return shmrpc_buf_append((shmrpc_buf *)buf, p, n) == 0 ? 0 : -1;
}

SHMRPC_END_DECLS
#endif
