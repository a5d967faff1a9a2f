/* SPDX-License-Identifier: MIT */
/* The module of module_test.c: init records its arguments (module_args) in the file
 * SUP_TEST_ARGV_FILE names, and fills SUP_TEST_DATA_MIB MiB (environment; default none)
 * with the 64-bit words 0, 1, 2, ... and makes it read-only, before the workers fork; sum
 * reads all of it, spin spends CPU, grow keeps memory, helper runs a child process, fail
 * ends with the status it is given. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/module.h>

#include "bigdata.h"

typedef struct data {
    const uint64_t *words;
    size_t n;
} data;

static data loaded;

/* argc and argv, one per line, to the file SUP_TEST_ARGV_FILE names (when set). */
static int record_args(int argc, char **argv)
{
    const char *path = getenv("SUP_TEST_ARGV_FILE");
    if (!path) return 0;
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "argc %d\n", argc);
    for (int i = 0; i < argc; i++)
        fprintf(f, "[%s]\n", argv[i]);
    fprintf(f, "%s\n", argv[argc] ? "argv[argc] is not NULL" : "end");
    return fclose(f) == 0 ? 0 : -1;
}

static int init(void **user, int argc, char **argv)
{
    if (record_args(argc, argv) != 0) return -1;
    const char *mib = getenv("SUP_TEST_DATA_MIB");
    size_t bytes = (size_t)(mib ? strtoul(mib, NULL, 10) : 0) << 20;
    if (bytes) {
        uint64_t *w = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (w == MAP_FAILED) return -1;
        for (size_t i = 0; i < bytes / 8; i++)
            w[i] = i;
        mprotect(w, bytes, PROT_READ);
        loaded.words = w;
        loaded.n = bytes / 8;
    }
    *user = &loaded;
    return 0;
}

static void fini(void *user)
{
    data *d = user;
    if (d->words) munmap((void *)d->words, d->n * 8);
}

static int sum(shmrpc_ctx *ctx, big_data_Total *out)
{
    const data *d = shmrpc_ctx_user(ctx);
    uint64_t t = 0;
    for (size_t i = 0; i < d->n; i++)
        t += d->words[i];
    out->total = t;
    out->pid = (int32_t)getpid();
    return 0;
}

static int spin(shmrpc_ctx *ctx, uint32_t ms, int32_t *out)
{
    (void)ctx;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < (long)ms);
    *out = (int32_t)getpid();
    return 0;
}

static char *kept; /* what grow allocated: a worker over its limit is killed with it */

static int grow(shmrpc_ctx *ctx, uint64_t bytes, int32_t *out)
{
    char *p = malloc(bytes);
    if (!p)
        return shmrpc_ctx_error(ctx, SHMRPC_ENOMEM, "grow: %llu bytes", (unsigned long long)bytes);
    memset(p, 1, bytes);
    free(kept);
    kept = p;
    *out = (int32_t)getpid();
    return 0;
}

static int pid(shmrpc_ctx *ctx, int32_t *out)
{
    (void)ctx;
    *out = (int32_t)getpid();
    return 0;
}

static int helper(shmrpc_ctx *ctx, uint32_t ms, int32_t *out)
{
    char cmd[64];
    snprintf(cmd, sizeof cmd, "sleep %u.%03u", ms / 1000, ms % 1000);
    if (system(cmd) != 0) return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "helper: %s failed", cmd);
    *out = (int32_t)getpid();
    return 0;
}

static int fail(shmrpc_ctx *ctx, int32_t code, int32_t *out)
{
    static int calls; /* of this worker */
    calls++;
    *out = (int32_t)getpid();
    if (code <= 0)
        return code ? shmrpc_ctx_error(ctx, code, "fail: call %d of this worker", calls) : 0;
    return code; /* not a status */
}

static const BigData_handlers handlers = {
    .sum = sum, .spin = spin, .grow = grow, .pid = pid, .helper = helper, .fail = fail};

SHMRPC_MODULE(BigData_service, handlers, init, fini);
