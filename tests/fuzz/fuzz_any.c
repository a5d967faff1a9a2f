/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the any view (runtime/src/codec/any.c, built in for its coverage) on any
 * bytes, in a buffer of their exact size. Every read on them, checked or not, stays
 * within them; what the check accepts, every reader can walk whole without an error, the
 * builder copies to the same bytes, and the JSON writer either has a form for it or says
 * no. A crash, a read past the bytes, a hang, or an accepted value that a reader then
 * refuses is a finding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/any.h>

/* Reads a and everything in it every way; returns the failures met. */
static int walk(shmrpc_any a, int depth)
{
    bool b;
    int64_t i;
    uint64_t u;
    double d;
    shmrpc_str s;
    shmrpc_bytes y;
    size_t n;
    shmrpc_any e, k;
    int bad = 0;
    switch (shmrpc_any_kind_of(a)) {
    case SHMRPC_ANY_BOOL:
        bad += shmrpc_any_bool(a, &b) != 0;
        break;
    case SHMRPC_ANY_INT:
        bad += shmrpc_any_int(a, &i) != 0 && shmrpc_any_uint(a, &u) != 0;
        break;
    case SHMRPC_ANY_FLOAT:
        bad += shmrpc_any_float(a, &d) != 0;
        break;
    case SHMRPC_ANY_STRING:
        bad += shmrpc_any_str(a, &s) != 0;
        break;
    case SHMRPC_ANY_BYTES:
        bad += shmrpc_any_bytes(a, &y) != 0;
        break;
    case SHMRPC_ANY_LIST:
    case SHMRPC_ANY_MAP: {
        bad += shmrpc_any_len(a, &n) != 0;
        (void)shmrpc_any_get(a, "a", &e);
        if (n > 0) (void)shmrpc_any_at(a, n - 1, &e), (void)shmrpc_any_entry(a, n - 1, &k, &e);
        shmrpc_any_iter it;
        int rc;
        if (shmrpc_any_iter_init(&it, a) != 0) return bad + 1;
        while (depth < 200 && (rc = shmrpc_any_next(&it, &e)) == 1) {
            if (e.p < a.p || e.p + e.n > a.p + a.n) abort();
            bad += walk(e, depth + 1);
        }
        break;
    }
    case SHMRPC_ANY_NULL:
        break;
    default:
        bad++;
    }
    return bad;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    if (p == NULL) return 0;
    memcpy(p, data, size);
    shmrpc_any a;
    if (shmrpc_any_parse(p, size, &a) != 0) {
        walk((shmrpc_any){p, size}, 0); /* refused: reads fail, within the bytes */
        free(p);
        return 0;
    }
    if (walk(a, 0) != 0) abort(); /* accepted: every read succeeds */
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc_any copy;
    if (shmrpc_any_put(&b, a) != 0 || shmrpc_any_built(&b, 0, &copy) != 0 || copy.n != size ||
        memcmp(copy.p, p, size) != 0)
        abort();
    shmrpc_json_free(shmrpc_json_any(a));
    shmrpc_buf_destroy(&b);
    free(p);
    return 0;
}
