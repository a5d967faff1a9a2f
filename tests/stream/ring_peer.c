/* SPDX-License-Identifier: MIT */
/* A stream's channel over shm://, seen as a hostile peer sees it (ring_peer.h). */
#define _GNU_SOURCE
#include "ring_peer.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

shmrpc__shm_chan *test_stream_channel(const char *addr, uint32_t stream, bool taken, size_t *size)
{
    char prefix[128], path[300], link[256];
    int n = snprintf(prefix, sizeof prefix, "/memfd:shmrpc:%s:", addr + strlen("shm://"));
    DIR *d = opendir("/proc/self/fd");
    shmrpc__shm_chan *found = NULL;
    for (struct dirent *e; d && found == NULL && (e = readdir(d)) != NULL;) {
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, link, sizeof link - 1);
        link[len > 0 ? len : 0] = '\0';
        struct stat st;
        int fd = atoi(e->d_name);
        if (strncmp(link, prefix, (size_t)n) != 0 || fstat(fd, &st) != 0) continue;
        shmrpc__shm_chan *h =
            mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (h == MAP_FAILED) continue;
        /* A lane of an earlier stream may name the same: the one whose open waits or runs. */
        uint64_t claim = atomic_load(&h->claim), call = atomic_load(&h->call);
        if (atomic_load(&h->stream) == stream && atomic_load(&h->state.word) == SHM_CHAN_REQUEST &&
            (claim == shmrpc__shm_claim(call, SHM_CLAIM_TAKEN)) == taken) {
            found = h;
            *size = (size_t)st.st_size;
        } else {
            munmap(h, (size_t)st.st_size);
        }
    }
    if (d) closedir(d);
    if (found == NULL) fail_msg("no channel of %s names the stream %#x", addr, stream);
    return found;
}

shmrpc__stream_ring *test_stream_ring(shmrpc__shm_chan *h, uint64_t off)
{
    off += shmrpc__shm_ring_off(h->req_len, atomic_load(&h->meta_len));
    return (shmrpc__stream_ring *)((uint8_t *)h + SHMRPC__CHAN_DATA + off);
}

/* Writes the record {len, left} at byte at of r's records, whole (shm.h). */
static void record_at(shmrpc__stream_ring *r, uint32_t at, uint32_t len, uint32_t left)
{
    uint32_t head[2] = {len | SHMRPC__RING_WHOLE, left};
    memcpy((uint8_t *)(r + 1) + at, head, sizeof head);
}

uint32_t test_ring_lie(shmrpc__stream_ring *r, int k)
{
    switch (k) {
    case 0: /* the count first: a reader that spins reads the record only with it */
        atomic_store(&r->tail.word, SHMRPC__RING_MAX + 8);
        record_at(r, 0, 8, 0);
        return SHMRPC__RING_MAX + 8;
    case 1:
        record_at(r, 0, SHMRPC__RING_MAX, 0);
        return 16;
    case 2: /* a piece of 16 with 50 to come, then one of 8 with 10 */
        record_at(r, 0, 16, 50);
        record_at(r, 24, 8, 10);
        return 40;
    case 3:
        record_at(r, 0, 8, UINT32_MAX - 8);
        return 16;
    case 4:
        record_at(r, 0, 0, 10);
        return 8;
    default: /* a piece of 8, then the rest of its item: 8 bytes more than the ring */
        record_at(r, 0, 8, SHMRPC__RING_MAX - 16);
        record_at(r, 16, SHMRPC__RING_MAX - 16, 0);
        return 16;
    }
}
