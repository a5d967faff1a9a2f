/* SPDX-License-Identifier: MIT */
/* The handlers of tests/common/calls.svc: echo, add, and a nap that publishes its pid. */
#include "calls_handlers.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

calls_shared *sh;

int calls_shared_map(void)
{
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return sh == MAP_FAILED ? -1 : 0;
}

static int h_echo(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    (void)ctx;
    sh->calls++;
    calls_tag tag;
    if (data.len == sizeof tag) memcpy(&tag, data.ptr, sizeof tag);
    if (data.len == sizeof tag && tag.magic == CALLS_TAG_MAGIC && tag.id < 64) {
        sh->ran[tag.id]++;
        struct timespec ts = {tag.ms / 1000, (long)(tag.ms % 1000) * 1000000};
        while (tag.ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    *out = data;
    return 0;
}

static int h_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    (void)ctx;
    sh->calls++;
    *out = a + b;
    return 0;
}

static int h_nap(shmrpc_ctx *ctx, uint32_t ms, int32_t *out)
{
    (void)ctx;
    sh->calls++;
    int32_t begun = sh->naps_begun++;
    if (begun < CALLS_NAPS_LOGGED) sh->nap_ms[begun] = ms;
    sh->napping = getpid();
    int32_t now = ++sh->running, most = sh->most;
    while (now > most && !atomic_compare_exchange_weak(&sh->most, &most, now)) {
    }
    if (ms == CALLS_NAP_HELD) { /* until the test wakes it, at most 30 s */
        for (int i = 0; i < 30000 && !sh->wake; i++)
            usleep(1000);
    } else {
        /* A nap of 0 ms makes no syscall: a fast call of the method that the slow ones are. */
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
        while (ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    sh->running--;
    sh->napping = 0;
    *out = getpid();
    return 0;
}

const Calls_handlers calls_test_handlers = {.echo = h_echo, .add = h_add, .nap = h_nap};
