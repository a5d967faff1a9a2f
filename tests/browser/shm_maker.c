/* SPDX-License-Identifier: MIT */
/* The browser test's queue and map (browser_test.mjs): `make QUEUE MAP` creates a work
 * queue of 8 messages holding 2 (3 pushed, 1 popped) and a map of 5 keys (5 writes);
 * `more QUEUE MAP` pushes one more message and puts one more key, so that the page's
 * refresh shows depth 3, pushed 4, 6 entries and 6 writes. Exits 0, or 1 saying why. */
#include <stdio.h>
#include <string.h>

#include <shmrpc/map.h>
#include <shmrpc/queue.h>
#include <shmrpc/status.h>

static int fail(const char *what, int rc)
{
    fprintf(stderr, "shm_maker: %s: %s: %s\n", what, shmrpc_strerror(rc), shmrpc_errmsg());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "make") != 0 && strcmp(argv[1], "more") != 0)) {
        fprintf(stderr, "usage: shm_maker make|more QUEUE MAP\n");
        return 2;
    }
    bool make = strcmp(argv[1], "make") == 0;
    shmrpc_queue_opts qo;
    shmrpc_queue_opts_init(&qo);
    qo.mode = make ? SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE : SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    qo.capacity = 8;
    shmrpc_queue *q;
    int rc = shmrpc_queue_open(&q, argv[2], &qo);
    if (rc != 0) return fail("open the queue", rc);
    for (int i = 0; rc == 0 && i < (make ? 3 : 1); i++)
        rc = shmrpc_queue_push(q, "message", 7, 0);
    char buf[16];
    size_t len;
    if (rc == 0 && make) rc = shmrpc_queue_pop(q, buf, sizeof buf, &len, 0);
    shmrpc_queue_close(q);
    if (rc != 0) return fail("push and pop", rc);
    shmrpc_map_opts mo;
    shmrpc_map_opts_init(&mo);
    mo.mode = make ? SHMRPC_MAP_CREATE_NEW_EXCLUSIVE : SHMRPC_MAP_CONNECT_TO_EXISTING;
    shmrpc_map *m;
    rc = shmrpc_map_open(&m, argv[3], &mo);
    if (rc != 0) return fail("open the map", rc);
    for (int i = make ? 0 : 5; rc == 0 && i < (make ? 5 : 6); i++)
        rc = shmrpc_map_put(m, &i, sizeof i, "value", 5);
    shmrpc_map_close(m);
    if (rc != 0) return fail("put", rc);
    return 0;
}
