/* SPDX-License-Identifier: MIT */
/* shmrpc-bench-codec: encodes and decodes a ten-field struct through the generated
 * msgpack glue and through hand-written msgpack-c calls, in the same run, and prints
 * both and their ratio. The hand-written side uses msgpack-c the fast way (a reused
 * buffer and zone), and checks every type as real decoding code must. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "bench.h"
#include "clock.h"

static const uint8_t tag_bytes[] = {0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3};

static const bench_Record sample = {
    .id = 1234567890123,
    .count = -42,
    .flags = 0x8001,
    .active = true,
    .score = 98.625,
    .ratio = 0.5f,
    .name = {"Ada Lovelace", 12},
    .city = {"London", 6},
    .tag = {tag_bytes, sizeof tag_bytes},
    .stamp = 1700000000000000000ull,
};

static volatile uint64_t sink; /* keeps the decoded values alive */

/* --- generated glue --- */

static int generated_once(shmrpc_buf *buf, shmrpc_arena *arena)
{
    shmrpc_buf_clear(buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, shmrpc_buf_msgpack_write);
    Bench_Record_mp_write(&pk, &sample);
    if (buf->err) return buf->err;
    shmrpc_mp_reader r;
    shmrpc_mp_reader_init(&r, buf->data, buf->len);
    bench_Record out;
    int rc = Bench_Record_mp_read(&r, arena, &out);
    if (rc == 0) rc = shmrpc_mp_finish(&r);
    if (rc != 0) return rc;
    sink += (uint64_t)out.id + out.name.len + out.tag.len;
    return 0;
}

/* --- hand-written msgpack-c --- */

static void pack_by_hand(msgpack_packer *pk, const bench_Record *v)
{
    msgpack_pack_array(pk, 10);
    msgpack_pack_int64(pk, v->id);
    msgpack_pack_int64(pk, v->count);
    msgpack_pack_uint64(pk, v->flags);
    if (v->active)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    msgpack_pack_double(pk, v->score);
    msgpack_pack_float(pk, v->ratio);
    msgpack_pack_str_with_body(pk, v->name.ptr, v->name.len);
    msgpack_pack_str_with_body(pk, v->city.ptr, v->city.len);
    msgpack_pack_bin_with_body(pk, v->tag.ptr, v->tag.len);
    msgpack_pack_uint64(pk, v->stamp);
}

static bool is_int(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
}

static bool as_i64(const msgpack_object *o, int64_t min, int64_t max, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)max) return false;
        *v = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
    } else {
        return false;
    }
    return *v >= min && *v <= max;
}

static int unpack_by_hand(const msgpack_object *o, bench_Record *v)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 10) return -1;
    const msgpack_object *f = o->via.array.ptr;
    int64_t t;
    if (!as_i64(&f[0], INT64_MIN, INT64_MAX, &v->id)) return -1;
    if (!as_i64(&f[1], INT32_MIN, INT32_MAX, &t)) return -1;
    v->count = (int32_t)t;
    if (!as_i64(&f[2], 0, UINT16_MAX, &t)) return -1;
    v->flags = (uint16_t)t;
    if (f[3].type != MSGPACK_OBJECT_BOOLEAN) return -1;
    v->active = f[3].via.boolean;
    if (f[4].type != MSGPACK_OBJECT_FLOAT64 && f[4].type != MSGPACK_OBJECT_FLOAT32) return -1;
    v->score = f[4].via.f64;
    if (f[5].type != MSGPACK_OBJECT_FLOAT32 && f[5].type != MSGPACK_OBJECT_FLOAT64) return -1;
    v->ratio = (float)f[5].via.f64;
    if (f[6].type != MSGPACK_OBJECT_STR || f[7].type != MSGPACK_OBJECT_STR) return -1;
    v->name = (shmrpc_str){f[6].via.str.ptr, f[6].via.str.size};
    v->city = (shmrpc_str){f[7].via.str.ptr, f[7].via.str.size};
    if (f[8].type != MSGPACK_OBJECT_BIN) return -1;
    v->tag = (shmrpc_bytes){(const uint8_t *)f[8].via.bin.ptr, f[8].via.bin.size};
    if (f[9].type != MSGPACK_OBJECT_POSITIVE_INTEGER || !is_int(&f[9])) return -1;
    v->stamp = f[9].via.u64;
    return 0;
}

static int by_hand_once(msgpack_sbuffer *sb, msgpack_zone *zone)
{
    sb->size = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    pack_by_hand(&pk, &sample);
    msgpack_zone_clear(zone);
    msgpack_object obj;
    size_t off = 0;
    if (msgpack_unpack(sb->data, sb->size, &off, zone, &obj) != MSGPACK_UNPACK_SUCCESS ||
        off != sb->size)
        return -1;
    bench_Record out;
    int rc = unpack_by_hand(&obj, &out);
    if (rc != 0) return rc;
    sink += (uint64_t)out.id + out.name.len + out.tag.len;
    return 0;
}

typedef struct side {
    const char *name;
    double ns[9]; /* per round */
} side;

int main(int argc, char **argv)
{
    bool json = false;
    int rc = bench_args(argc, argv, "usage: shmrpc-bench-codec [--json]\n", &json, 0);
    if (rc >= 0) return rc;
    long iters = 200000;
    enum { ROUNDS = 9 };

    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    shmrpc_arena *arena = shmrpc_arena_new(0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_zone zone;
    if (arena == NULL || !msgpack_zone_init(&zone, 4096)) {
        fputs("shmrpc-bench-codec: out of memory\n", stderr);
        return 1;
    }
    side gen = {"generated", {0}}, hand = {"msgpack-c by hand", {0}};
    /* Rounds alternate between the sides so that drift on a shared machine hits both. */
    for (int round = 0; round < ROUNDS; round++) {
        int64_t t0 = bench_now_ns();
        for (long i = 0; i < iters; i++)
            if (generated_once(&buf, arena) != 0) {
                fputs("shmrpc-bench-codec: generated decode failed\n", stderr);
                return 1;
            }
        int64_t t1 = bench_now_ns();
        for (long i = 0; i < iters; i++)
            if (by_hand_once(&sb, &zone) != 0) {
                fputs("shmrpc-bench-codec: hand-written decode failed\n", stderr);
                return 1;
            }
        int64_t t2 = bench_now_ns();
        gen.ns[round] = (double)(t1 - t0) / (double)iters;
        hand.ns[round] = (double)(t2 - t1) / (double)iters;
    }
    double g = bench_median(gen.ns, ROUNDS), h = bench_median(hand.ns, ROUNDS);
    size_t bytes = buf.len;
    if (json) {
        printf("{\"case\":\"codec-record10\",\"transport\":\"none\",\"payload_bytes\":%zu,"
               "\"generated_ns\":%.1f,\"hand_ns\":%.1f,\"ratio_to_hand\":%.3f}\n",
               bytes, g, h, g / h);
    } else {
        printf("encode+decode of a 10-field struct (%zu bytes of msgpack), median of %d rounds "
               "of %ld\n",
               bytes, ROUNDS, iters);
        printf("  %-20s %8.1f ns\n  %-20s %8.1f ns\n", gen.name, g, hand.name, h);
        printf("  ratio generated / by hand: %.3f (goal: at most 1.2)\n", g / h);
    }
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
    shmrpc_arena_free(arena);
    shmrpc_buf_destroy(&buf);
    return 0;
}
