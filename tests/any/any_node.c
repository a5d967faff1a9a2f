/* SPDX-License-Identifier: MIT */
/* any-node: one end of a pipeline of dynamic values (seed 004's Vals) through a typed queue
 * of any.svc's type "values()->any @msgpack", for tests/python/test_pipeline.py.
 *   any-node produce QUEUE COUNT   pushes COUNT values built with the builder:
 *       {"sequence_number": i, "samples": [1.5, 2, -3], "name": "x", "raw": b"\x00\x01",
 *        "nested": {"a": [[1], {}]}}
 *   any-node consume QUEUE COUNT   pops COUNT values and prints each on a line, read
 *       through the view: null, true, 7, 1.5 (%.17g), "text", b'0001' (hex), [a,b], {k:v}
 * The queue exists already (the test makes it); every wait is bounded (10 s). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "any.h"
#include "packet.h"

#define WAIT_MS 10000

static int print(FILE *f, shmrpc_any a, int depth)
{
    shmrpc_any_iter it;
    shmrpc_any e;
    bool b;
    int64_t i;
    uint64_t u;
    double d;
    shmrpc_str s;
    shmrpc_bytes y;
    int rc, n = 0;
    if (depth > (int)SHMRPC_ANY_MAX_DEPTH) return SHMRPC_EINVAL;
    switch (shmrpc_any_kind_of(a)) {
    case SHMRPC_ANY_NULL:
        fputs("null", f);
        return 0;
    case SHMRPC_ANY_BOOL:
        if ((rc = shmrpc_any_bool(a, &b)) != 0) return rc;
        fputs(b ? "true" : "false", f);
        return 0;
    case SHMRPC_ANY_INT:
        if (shmrpc_any_int(a, &i) == 0) {
            fprintf(f, "%" PRId64, i);
            return 0;
        }
        if ((rc = shmrpc_any_uint(a, &u)) != 0) return rc;
        fprintf(f, "%" PRIu64, u);
        return 0;
    case SHMRPC_ANY_FLOAT:
        if ((rc = shmrpc_any_float(a, &d)) != 0) return rc;
        fprintf(f, "%.17g", d);
        return 0;
    case SHMRPC_ANY_STRING:
        if ((rc = shmrpc_any_str(a, &s)) != 0) return rc;
        fprintf(f, "\"%.*s\"", (int)s.len, s.ptr);
        return 0;
    case SHMRPC_ANY_BYTES:
        if ((rc = shmrpc_any_bytes(a, &y)) != 0) return rc;
        fputs("b'", f);
        for (size_t k = 0; k < y.len; k++)
            fprintf(f, "%02x", y.ptr[k]);
        fputs("'", f);
        return 0;
    case SHMRPC_ANY_LIST:
    case SHMRPC_ANY_MAP: {
        bool map = shmrpc_any_kind_of(a) == SHMRPC_ANY_MAP;
        if ((rc = shmrpc_any_iter_init(&it, a)) != 0) return rc;
        fputs(map ? "{" : "[", f);
        while ((rc = shmrpc_any_next(&it, &e)) == 1) {
            fputs(n == 0 ? "" : map && n % 2 ? ":" : ",", f);
            if ((rc = print(f, e, depth + 1)) != 0) return rc;
            n++;
        }
        if (rc < 0) return rc;
        fputs(map ? "}" : "]", f);
        return 0;
    }
    default:
        return SHMRPC_EINVAL;
    }
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "any-node: %s: %s: %s\n", what, shmrpc_strerror(rc), shmrpc_errmsg());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "produce") != 0 && strcmp(argv[1], "consume") != 0)) {
        fprintf(stderr, "usage: any-node produce|consume QUEUE COUNT\n");
        return 2;
    }
    long count = strtol(argv[3], NULL, 10);
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    o.attach_timeout_ms = WAIT_MS;
    o.type = Dyn_values_type; /* an open of a queue of another type fails: SHMRPC_EPROTO */
    shmrpc_queue *q;
    int rc = shmrpc_queue_open(&q, argv[2], &o);
    if (rc != 0) return fail("open", rc);
    shmrpc_buf b, msg;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&msg);
    shmrpc_arena *arena = shmrpc_arena_new(4096);
    for (long i = 0; rc == 0 && i < count; i++) {
        shmrpc_any v;
        if (argv[1][0] == 'p') {
            shmrpc_buf_clear(&b);
            put_packet(&b, i);
            if ((rc = shmrpc_any_built(&b, 0, &v)) != 0) break;
            rc = Dyn_values_push(q, &msg, v, WAIT_MS);
        } else if ((rc = Dyn_values_pop(q, &msg, arena, &v, WAIT_MS)) == 0) {
            if ((rc = print(stdout, v, 0)) != 0) break;
            putchar('\n');
            fflush(stdout);
        }
    }
    if (rc != 0) fail(argv[1], rc);
    shmrpc_arena_free(arena);
    shmrpc_buf_destroy(&msg);
    shmrpc_buf_destroy(&b);
    shmrpc_queue_close(q);
    return rc == 0 ? 0 : 1;
}
