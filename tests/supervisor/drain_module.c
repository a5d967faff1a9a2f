/* SPDX-License-Identifier: MIT */
/* The module of drain_test.c: init maps the marks file (SUP_DRAIN_MARKS, environment)
 * shared before the workers fork; work(id) marks id started, sleeps, marks it finished. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/module.h>

#include "drain.h"
#include "drain_marks.h"

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int init(void **user, int argc, char **argv)
{
    (void)argc, (void)argv;
    const char *path = getenv("SUP_DRAIN_MARKS");
    int fd = path ? open(path, O_RDWR | O_CLOEXEC) : -1;
    if (fd < 0) return -1;
    void *m = mmap(NULL, DRAIN_MARKS_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return -1;
    *user = m;
    return 0;
}

static void fini(void *user)
{
    munmap(user, DRAIN_MARKS_BYTES);
}

static int work(shmrpc_ctx *ctx, uint64_t id, uint64_t *out)
{
    drain_mark *marks = shmrpc_ctx_user(ctx);
    if (id >= DRAIN_IDS)
        return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, "work: id %llu out of range",
                                (unsigned long long)id);
    drain_mark *m = &marks[id];
    __atomic_store_n(&m->start_ns, now_ns(), __ATOMIC_RELAXED);
    __atomic_fetch_add(&m->started, 1, __ATOMIC_SEQ_CST);
    /* A signal that interrupts the sleep (the drain's SIGTERM) must not shorten it. */
    struct timespec left = {0, DRAIN_WORK_MS * 1000000L};
    while (nanosleep(&left, &left) == -1 && errno == EINTR) {
    }
    __atomic_store_n(&m->finish_ns, now_ns(), __ATOMIC_RELAXED);
    __atomic_fetch_add(&m->finished, 1, __ATOMIC_SEQ_CST);
    *out = id;
    return 0;
}

static const Drain_handlers handlers = {.work = work};

SHMRPC_MODULE(Drain_service, handlers, init, fini);
