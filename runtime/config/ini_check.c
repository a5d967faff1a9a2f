/* SPDX-License-Identifier: MIT */
/* shmrpc-ini-check [--quiet] [--cpus N] FILE: reads and checks a service.ini. Prints the
 * resolved configuration (every key, defaults applied; nothing with --quiet) and exits 0,
 * or prints every error on stderr and exits 1. --cpus sets the CPU count max_proc_num
 * defaults to, for tests. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/status.h>
#include <shmrpc/version.h>

#include "config.h"
#include "usage.h"

static void usage(FILE *to)
{
    fprintf(to, "usage: shmrpc-ini-check [-q | --quiet] [--cpus N] [--] FILE\n"
                "       shmrpc-ini-check --help | --version\n"
                "  -q, --quiet  print nothing for a correct file, only the errors of one\n"
                "  --cpus N     the CPU count max_proc_num defaults to (for tests)\n");
}

int main(int argc, char **argv)
{
    cfg_opts opts;
    cfg_opts_init(&opts);
    bool quiet = false;
    enum { OPT_CPUS = 256 };
    static const struct option longopts[] = {
        {"quiet", no_argument, NULL, 'q'},
        {"cpus", required_argument, NULL, OPT_CPUS},
        SHMRPC__OPTS_HELP_VERSION,
        {NULL, 0, NULL, 0},
    };
    /* ':' first: getopt_long says nothing itself (shmrpc__opt_default does, on one line). */
    for (int opt; (opt = getopt_long(argc, argv, ":qh", longopts, NULL)) != -1;) {
        char *end, why[128];
        long n;
        switch (opt) {
        case 'q':
            quiet = true;
            break;
        case OPT_CPUS:
            n = strtol(optarg, &end, 10);
            if (end == optarg || *end || n < 1 || n > 1024) {
                snprintf(why, sizeof why, "--cpus takes 1 to 1024, not '%.60s'", optarg);
                return shmrpc__usage_error("shmrpc-ini-check", NULL, why);
            }
            opts.online_cpus = (int)n;
            break;
        default:
            return shmrpc__opt_default(opt, argv, "shmrpc-ini-check", SHMRPC_VERSION_STRING, usage);
        }
    }
    if (optind + 1 != argc) return shmrpc__usage_by(false, usage);
    const char *path = argv[optind];

    shmrpc_buf out;
    shmrpc_buf_init(&out);
    cfg_file *c;
    int rc = cfg_load(path, &opts, &c, &out);
    if (rc == 0) {
        cfg_write(c, &out);
        cfg_free(c);
        if (out.err) rc = out.err;
    }
    if (rc == SHMRPC_EINVAL || rc == 0) {
        if (rc || !quiet) fwrite(out.data, 1, out.len, rc ? stderr : stdout);
    } else {
        fprintf(stderr, "shmrpc-ini-check: %s: %s\n", path, shmrpc_strerror(rc));
    }
    shmrpc_buf_destroy(&out);
    return rc ? 1 : 0;
}
