/* SPDX-License-Identifier: MIT */
/* The small benchmarks' options (args.h). */
#include "args.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/version.h>

#include "usage.h"

int bench_args(int argc, char **argv, const char *usage, bool *json, int most)
{
    enum { OPT_JSON = 256 };
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        SHMRPC__OPTS_HELP_VERSION,
        {NULL, 0, NULL, 0},
    };
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    for (int opt; (opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        if (opt == OPT_JSON && json) {
            *json = true;
        } else if (opt == SHMRPC__OPT_VERSION) {
            printf("%s %s\n", name, SHMRPC_VERSION_STRING);
            return 0;
        } else {
            return shmrpc__usage(opt == 'h', usage);
        }
    }
    if (most >= 0 && argc - optind > most) return shmrpc__usage(false, usage);
    return -1;
}

int bench_args_rows(int argc, char **argv, const char *usage, double *seconds, const char **only)
{
    int rc = bench_args(argc, argv, usage, NULL, 2);
    if (rc >= 0) return rc;
    *only = argc - optind == 2 ? argv[optind + 1] : NULL;
    if (optind == argc) return -1;
    char *end;
    double s = strtod(argv[optind], &end);
    if (*end != '\0' || !(s > 0 && s <= 60)) return shmrpc__usage(false, usage);
    *seconds = s;
    return -1;
}
