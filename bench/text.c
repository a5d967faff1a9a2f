/* SPDX-License-Identifier: MIT */
/* The benchmarks' compressible payload (see text.h). */
#include "text.h"

void bench_fill_text(uint8_t *p, size_t n)
{
    static const char *const words[] = {"the ",    "worker ",  "process ", "call ",    "of ",
                                        "memory ", "shared ",  "and ",     "a ",       "server ",
                                        "client ", "returns ", "with ",    "message ", "to ",
                                        "in ",     "time ",    "queue ",   "lock ",    "fast "};
    uint32_t x = 12345;
    size_t i = 0;
    while (i < n) {
        x = x * 1103515245u + 12345u;
        const char *w = words[(x >> 16) % (sizeof words / sizeof words[0])];
        for (; *w && i < n; w++)
            p[i++] = (uint8_t)*w;
    }
}
