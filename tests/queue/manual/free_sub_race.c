/* SPDX-License-Identifier: MIT */
/* A manual reproduction for free_sub_race.sh (not a unit test): create a broadcast queue,
 * subscribe and sleep (printing whether the subscriber bits include ours), or push. */
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <shmrpc.h>
static uint64_t subs_word(const char *name)
{
    char f[300];
    snprintf(f, sizeof f, "/dev/shm/shmrpc.queue.%s", name);
    int fd = open(f, O_RDONLY);
    void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    uint64_t w;
    memcpy(&w, (char *)p + 328, 8);
    return w;
}
int main(int argc, char **argv)
{
    const char *name = argv[2];
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    shmrpc_queue *q;
    if (!strcmp(argv[1], "create")) {
        o.mode = SHMRPC_QUEUE_CREATE_NEW_OVERWRITE;
        o.capacity = 2;
        o.arena_bytes = 4096;
        o.max_msg = 64;
        o.kind = SHMRPC_QUEUE_BROADCAST;
        int rc = shmrpc_queue_open(&q, name, &o);
        printf("create %d\n", rc);
        return rc != 0;
    }
    o.mode = SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    if (!strcmp(argv[1], "sub")) {
        o.subscribe = true;
        int rc = shmrpc_queue_open(&q, name, &o);
        printf("sub pid %d open %d subs %#llx\n", getpid(), rc,
               (unsigned long long)subs_word(name));
        fflush(stdout);
        sleep((unsigned)atoi(argv[3]));
        printf("sub pid %d alive and subscribed; subs word now %#llx\n", getpid(),
               (unsigned long long)subs_word(name));
        return 0;
    }
    if (!strcmp(argv[1], "push")) {
        int rc = shmrpc_queue_open(&q, name, &o);
        for (int i = 0; i < atoi(argv[3]); i++) {
            rc = shmrpc_queue_push(q, "x", 1, atoi(argv[4]));
            printf("push pid %d: %d\n", getpid(), rc);
        }
        return 0;
    }
    return 2;
}
