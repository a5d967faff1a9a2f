/* SPDX-License-Identifier: MIT */
/* shmrpc-bench-echo: the C client's side of the Python benchmark (bench/python_bench.py):
 * calls an echo server's add(i64, i64) or @raw echo_raw with 16 bytes and prints the median
 * call, each timed alone (one clock read per call) for a window, and the calls per second of
 * a second window of calls not timed one by one (the clock read every 1000 calls), as the
 * Python client is timed.
 *   shmrpc-bench-echo ADDRESS add|raw SECONDS
 * Output: "P50_US CALLS_PER_S". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "echo.h"

#define MAX_SAMPLES 2000000

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[2], "add") != 0 && strcmp(argv[2], "raw") != 0)) {
        fprintf(stderr, "usage: shmrpc-bench-echo ADDRESS add|raw SECONDS\n");
        return 2;
    }
    bool add = strcmp(argv[2], "add") == 0;
    double seconds = atof(argv[3]);
    shmrpc_client *c = NULL;
    int rc = shmrpc_client_new(&c, &Echo_service_info, NULL);
    if (rc == 0) rc = shmrpc_client_connect(c, argv[1]);
    double *lat = malloc(MAX_SAMPLES * sizeof *lat);
    if (rc != 0 || lat == NULL) {
        fprintf(stderr, "shmrpc-bench-echo: %s: %s\n", argv[1], shmrpc_errmsg());
        return 1;
    }
    static const uint8_t payload[16] = "0123456789abcdef";
    int64_t sum;
    shmrpc_bytes out;
    /* warm-up: a tenth of the window, in which the waits of client and server settle */
    int64_t warm_end = bench_now_ns() + (int64_t)(seconds * 1e8);
    do {
        for (int i = 0; i < 1000 && rc == 0; i++)
            rc = add ? echo_add(c, i, 1, &sum)
                     : echo_echo_raw(c, shmrpc_bytes_of(payload, 16), &out);
    } while (rc == 0 && bench_now_ns() < warm_end);
    int n = 0;
    int64_t start = bench_now_ns(), end = start + (int64_t)(seconds * 1e9), t = start;
    while (rc == 0 && t < end && n < MAX_SAMPLES) {
        rc = add ? echo_add(c, n, 1, &sum) : echo_echo_raw(c, shmrpc_bytes_of(payload, 16), &out);
        int64_t now = bench_now_ns();
        lat[n++] = (double)(now - t) / 1e3;
        t = now;
    }
    long calls = 0;
    int64_t rate_start = bench_now_ns(), rate_end = rate_start + (int64_t)(seconds * 1e9);
    t = rate_start;
    while (rc == 0 && t < rate_end) {
        for (int i = 0; i < 1000 && rc == 0; i++)
            rc = add ? echo_add(c, i, 1, &sum)
                     : echo_echo_raw(c, shmrpc_bytes_of(payload, 16), &out);
        calls += 1000;
        t = bench_now_ns();
    }
    if (rc != 0) {
        fprintf(stderr, "shmrpc-bench-echo: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
        return 1;
    }
    printf("%.3f %.0f\n", bench_median(lat, n), calls / ((double)(t - rate_start) / 1e9));
    free(lat);
    shmrpc_client_free(c);
    return 0;
}
