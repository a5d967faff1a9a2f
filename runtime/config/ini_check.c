/* shmrpc-ini-check [--cpus N] FILE: reads and checks a service.ini. Prints the resolved
 * configuration (every key, defaults applied) and exits 0, or prints every error on
 * stderr and exits 1. --cpus sets the CPU count max_proc_num defaults to, for tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/status.h>

#include "config.h"

static int usage(void)
{
    fprintf(stderr, "usage: shmrpc-ini-check [--cpus N] FILE\n");
    return 2;
}

int main(int argc, char **argv)
{
    cfg_opts opts;
    cfg_opts_init(&opts);
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cpus") == 0 && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 1024) return usage();
            opts.online_cpus = (int)n;
        } else if (argv[i][0] == '-' || path) {
            return usage();
        } else {
            path = argv[i];
        }
    }
    if (!path) return usage();

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
        fwrite(out.data, 1, out.len, rc ? stderr : stdout);
    } else {
        fprintf(stderr, "shmrpc-ini-check: %s: %s\n", path, shmrpc_strerror(rc));
    }
    shmrpc_buf_destroy(&out);
    return rc ? 1 : 0;
}
