/* SPDX-License-Identifier: MIT */
/* Growth of shmrpc_buf: the slow path behind the inline append in buf.h, and formatted
 * appends. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <shmrpc/buf.h>
#include <shmrpc/status.h>

#define BUF_MIN_CAP 64

void shmrpc_buf_init(shmrpc_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = 0;
    b->err = 0;
}

void shmrpc_buf_destroy(shmrpc_buf *b)
{
    free(b->data);
    shmrpc_buf_init(b);
}

static int fail(shmrpc_buf *b, int rc)
{
    b->err = rc;
    return rc;
}

int shmrpc__buf_grow(shmrpc_buf *b, size_t n)
{
    if (b->err) return b->err;
    size_t len = b->len;
    size_t need;
    if (__builtin_add_overflow(len, n, &need)) return fail(b, SHMRPC_ETOOBIG);
    if (b->max && need > b->max) return fail(b, SHMRPC_ETOOBIG);
    if (need <= b->cap) return 0;

    /* Doubling keeps appends amortised O(1); the cap never passes max, so a buffer
     * limited to max never holds more than max bytes. */
    size_t cap = b->cap < BUF_MIN_CAP ? BUF_MIN_CAP : b->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->max && cap > b->max) cap = b->max;

    uint8_t *p = realloc(b->data, cap);
    if (!p) return fail(b, SHMRPC_ENOMEM);
    b->data = p;
    b->cap = cap;
    return 0;
}

int shmrpc_buf_vappendf(shmrpc_buf *b, const char *fmt, va_list ap)
{
    if (b->err) return b->err;
    va_list again;
    va_copy(again, ap);
    /* Straight into the room there is; when the text is longer, grow and format again. */
    size_t room = b->cap - b->len;
    int n = vsnprintf(room ? (char *)b->data + b->len : NULL, room, fmt, ap);
    if (n < 0) {
        fail(b, SHMRPC_EINVAL);
    } else if ((size_t)n >= room) {
        /* The NUL too, unless only the text fits under max. */
        bool nul = !b->max || b->len + (size_t)n < b->max;
        if (shmrpc__buf_grow(b, (size_t)n + nul) == 0) {
            if (nul) {
                vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, again);
            } else {
                char *tmp = malloc((size_t)n + 1);
                if (tmp) {
                    vsnprintf(tmp, (size_t)n + 1, fmt, again);
                    memcpy(b->data + b->len, tmp, (size_t)n);
                    free(tmp);
                } else {
                    fail(b, SHMRPC_ENOMEM);
                }
            }
        }
    }
    va_end(again);
    if (b->err) return b->err;
    b->len += (size_t)n;
    return 0;
}

int shmrpc_buf_appendf(shmrpc_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = shmrpc_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}
