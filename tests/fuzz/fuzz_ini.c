/* SPDX-License-Identifier: MIT */
/* libFuzzer target for service.ini: any bytes through the reader and the checks give
 * errors, never a crash, a leak or undefined behaviour; and a file that loads is written
 * out (shmrpc-ini-check's text) as a file that loads again and is written out the same. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <shmrpc/buf.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A memfd holding text, named by a path the loader opens as any file. */
typedef struct mem_file {
    int fd;
    char path[64];
} mem_file;

static void mem_file_put(mem_file *f, const void *text, size_t n)
{
    if (!f->path[0]) {
        f->fd = memfd_create("fuzz.ini", MFD_CLOEXEC);
        if (f->fd < 0) abort();
        snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
    }
    if (ftruncate(f->fd, 0) != 0 || (n && pwrite(f->fd, text, n, 0) != (ssize_t)n)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mem_file in, again;
    mem_file_put(&in, data, size);
    cfg_file *c = NULL;
    shmrpc_buf err, out, out2;
    shmrpc_buf_init(&err);
    shmrpc_buf_init(&out);
    shmrpc_buf_init(&out2);
    if (cfg_load(in.path, NULL, &c, &err) == 0) {
        cfg_write(c, &out);
        cfg_free(c);
        c = NULL;
        mem_file_put(&again, out.data, out.len);
        shmrpc_buf_destroy(&err);
        shmrpc_buf_init(&err);
        if (cfg_load(again.path, NULL, &c, &err) != 0) {
            fprintf(stderr, "written out, it does not load again:\n%.*s\n%.*s", (int)out.len,
                    (const char *)out.data, (int)err.len, (const char *)err.data);
            abort();
        }
        cfg_write(c, &out2);
        if (out2.len != out.len || memcmp(out.data, out2.data, out.len) != 0) {
            fprintf(stderr, "written out twice, it differs:\n%.*s\n---\n%.*s", (int)out.len,
                    (const char *)out.data, (int)out2.len, (const char *)out2.data);
            abort();
        }
    }
    cfg_free(c);
    shmrpc_buf_destroy(&err);
    shmrpc_buf_destroy(&out);
    shmrpc_buf_destroy(&out2);
    return 0;
}
