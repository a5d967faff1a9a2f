/* SPDX-License-Identifier: MIT */
/* The small benchmarks' options (args.h). */
#include "args.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <shmrpc/version.h>

int bench_args(int argc, char **argv, const char *usage, bool *json)
{
    enum { OPT_JSON = 256, OPT_VERSION };
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    for (int opt; (opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        if (opt == OPT_JSON && json) {
            *json = true;
        } else if (opt == OPT_VERSION) {
            printf("%s %s\n", name, SHMRPC_VERSION_STRING);
            return 0;
        } else if (opt == 'h') {
            fputs(usage, stdout);
            return 0;
        } else {
            fputs(usage, stderr);
            return 2;
        }
    }
    return -1;
}
