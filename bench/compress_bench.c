/* SPDX-License-Identifier: MIT */
/* shmrpc-bench-compress: what per-frame compression costs and saves on the TCP transport's
 * path (runtime/src/transport/tcp/frame.c's shmrpc__body_compress and shmrpc__body_decompress), on the
 * 64 KiB of text that shmrpc-bench's tcp/text rows send. The baseline, measured in the
 * same run, is a memcpy of the same bytes: what a loopback transfer costs at best.
 *
 * Compressing a message pays when the bytes it saves take longer to cross the link than
 * compressing and decompressing take: for a message of S bytes that compresses to r*S,
 * on a link of B bytes/s, when (1 - r) * S / B > t_compress + t_decompress. The program
 * prints the link speed below which that holds. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "clock.h"
#include "transport/tcp/frame.h"
#include "text.h"

#define SIZE 65536
#define ROUNDS 9
#define ITERS 200

typedef struct result {
    const char *name;
    size_t compressed;
    double compress_us, decompress_us;
} result;

static uint8_t text[SIZE], copy[SIZE];
static volatile uint8_t sink;

/* The median over ROUNDS of ITERS copies, in microseconds. */
static double memcpy_us(void)
{
    double us[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        int64_t t0 = bench_now_ns();
        for (int i = 0; i < ITERS; i++) {
            text[0] = (uint8_t)i;
            memcpy(copy, text, SIZE);
            sink = copy[SIZE - 1];
        }
        us[r] = (double)(bench_now_ns() - t0) / ITERS / 1000.0;
    }
    return bench_median(us, ROUNDS);
}

static int measure(uint16_t flag, const char *name, result *out)
{
    shmrpc_buf packed, unpacked, err;
    shmrpc_buf_init(&packed);
    shmrpc_buf_init(&unpacked);
    shmrpc_buf_init(&err);
    double c_us[ROUNDS], d_us[ROUNDS];
    int rc = 0;
    for (int r = 0; r < ROUNDS && rc == 0; r++) {
        int64_t t0 = bench_now_ns();
        for (int i = 0; i < ITERS && rc == 0; i++) {
            uint16_t used;
            shmrpc_buf_clear(&packed);
            rc = shmrpc__body_compress(flag, shmrpc_bytes_of(text, SIZE), &packed, &used);
            if (rc == 0 && used != flag) rc = SHMRPC_EINVAL; /* it did not get smaller */
        }
        int64_t t1 = bench_now_ns();
        for (int i = 0; i < ITERS && rc == 0; i++)
            rc = shmrpc__body_decompress(flag, shmrpc_bytes_of(packed.data, packed.len), SIZE,
                                         &unpacked, &err);
        int64_t t2 = bench_now_ns();
        c_us[r] = (double)(t1 - t0) / ITERS / 1000.0;
        d_us[r] = (double)(t2 - t1) / ITERS / 1000.0;
    }
    if (rc == 0 && (unpacked.len != SIZE || memcmp(unpacked.data, text, SIZE) != 0))
        rc = SHMRPC_EPROTO;
    if (rc == 0)
        *out = (result){name, packed.len, bench_median(c_us, ROUNDS), bench_median(d_us, ROUNDS)};
    else
        fprintf(stderr, "shmrpc-bench-compress: %s: %s %s\n", name, shmrpc_strerror(rc),
                shmrpc__msg_get(&err));
    shmrpc_buf_destroy(&packed);
    shmrpc_buf_destroy(&unpacked);
    shmrpc_buf_destroy(&err);
    return rc;
}

int main(int argc, char **argv)
{
    bool json = false;
    int rc = bench_args(argc, argv, "usage: shmrpc-bench-compress [--json]\n", &json, 0);
    if (rc >= 0) return rc;
    bench_fill_text(text, SIZE);
    double base = memcpy_us();
    result res[2];
    if (measure(SHMRPC__FLAG_SNAPPY, "snappy", &res[0]) ||
        measure(SHMRPC__FLAG_ZLIB, "zlib", &res[1]))
        return 1;
    if (!json)
        printf("%d bytes of text (bench/text.c), median of %d rounds of %d; memcpy of it: %.2f "
               "us\n%-8s %10s %7s %12s %14s %13s %22s\n",
               SIZE, ROUNDS, ITERS, base, "", "compressed", "ratio", "compress us", "decompress us",
               "vs memcpy", "pays below (link)");
    for (int i = 0; i < 2; i++) {
        const result *r = &res[i];
        double ratio = (double)r->compressed / SIZE;
        double cost_us = r->compress_us + r->decompress_us;
        double saved = (double)(SIZE - r->compressed);
        double mbps = saved / cost_us; /* bytes per us = MB/s */
        if (json)
            printf("{\"case\":\"compress-text\",\"algorithm\":\"%s\",\"payload_bytes\":%d,"
                   "\"compressed_bytes\":%zu,\"compress_us\":%.2f,\"decompress_us\":%.2f,"
                   "\"memcpy_us\":%.2f,\"ratio_to_memcpy\":%.1f,\"break_even_mb_s\":%.0f}\n",
                   r->name, SIZE, r->compressed, r->compress_us, r->decompress_us, base,
                   cost_us / base, mbps);
        else
            printf("%-8s %10zu %7.3f %12.2f %14.2f %12.0fx %11.0f MB/s (%.2f Gbit/s)\n", r->name,
                   r->compressed, ratio, r->compress_us, r->decompress_us, cost_us / base, mbps,
                   mbps * 8 / 1000);
    }
    return 0;
}
