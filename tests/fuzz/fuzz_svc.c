/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the .svc front end: any bytes through the lexer, the grammar and the
 * checks must give diagnostics, never a crash, a leak or undefined behaviour. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Opened once: diagnostics are formatted in full, then thrown away. */
    static FILE *devnull;
    if (!devnull && !(devnull = fopen("/dev/null", "w"))) abort();

    char *src = malloc(size + 1);
    if (!src) return 0;
    memcpy(src, data, size);
    src[size] = '\0';

    svc_arena *a = svc_arena_new();
    if (a) {
        svc_diag d;
        svc_diag_init(&d, devnull, "fuzz.svc", src, size);
        svc_file *f = svc_parse(a, &d, "fuzz.svc", src, size);
        if (f && d.errors == 0) svc_check(a, &d, f);
        svc_arena_free(a);
    }
    free(src);
    return 0;
}
