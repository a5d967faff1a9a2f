/* SPDX-License-Identifier: MIT */
/* The module of chaos_test.c: init opens the log named by its one argument (module_args)
 * before the workers fork; count(id, sleep_ms) sleeps, appends id's record to it, then
 * answers id. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/module.h>

#include "counter.h"
#include "counter_log.h"

static int log_fd = -1;

static int init(void **user, int argc, char **argv)
{
    *user = NULL;
    if (argc != 2) return -1;
    log_fd = open(argv[1], O_WRONLY | O_APPEND | O_CLOEXEC);
    return log_fd >= 0 ? 0 : -1;
}

static void fini(void *user)
{
    (void)user;
    close(log_fd);
    log_fd = -1;
}

static int count(shmrpc_ctx *ctx, uint64_t id, uint32_t sleep_ms, uint64_t *out)
{
    /* A slow call: its client gives up at its deadline while it runs on, and it lands in
     * the log afterwards (unless its worker is killed first). */
    struct timespec left = {sleep_ms / 1000, (long)(sleep_ms % 1000) * 1000000};
    while (sleep_ms && nanosleep(&left, &left) == -1 && errno == EINTR) {
    }
    if (id >> COUNTER_ID_BITS)
        return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "count: id %#llx out of range",
                                (unsigned long long)id);
    counter_record r = counter_record_of(id);
    ssize_t n;
    do
        n = write(log_fd, &r, sizeof r);
    while (n < 0 && errno == EINTR);
    /* A short or failed write would make the log lie: say so rather than answer. */
    if (n != (ssize_t)sizeof r)
        return shmrpc_ctx_error(ctx, SHMRPC_EHANDLER, "count: log write returned %zd (errno %d)", n,
                                errno);
    *out = id;
    return 0;
}

static const Counter_handlers handlers = {.count = count};

SHMRPC_MODULE(Counter_service, handlers, init, fini);
