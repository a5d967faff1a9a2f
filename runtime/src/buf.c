/* Growth of shmrpc_buf: the slow path behind the inline append in buf.h. */
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
