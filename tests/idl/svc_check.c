/* SPDX-License-Identifier: MIT */
/* svc-check FILE.svc: parses and checks one .svc file, for the golden tests. Prints the
 * errors on stderr and exits 1 if there are any; silent with status 0 otherwise. */
#include <stdio.h>

#include "svc.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: svc-check FILE.svc\n");
        return 2;
    }
    svc_arena *a = svc_arena_new();
    if (!a) {
        fprintf(stderr, "svc-check: out of memory\n");
        return 1;
    }
    int nerrors = 0;
    svc_file *f = svc_load(a, stderr, argv[1], &nerrors);
    svc_arena_free(a);
    return f && nerrors == 0 ? 0 : 1;
}
