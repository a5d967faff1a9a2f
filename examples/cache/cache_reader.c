/* SPDX-License-Identifier: MIT */
/* cache-reader: reads the cache service's shared map without calling the service: the
 * entries of the words given, or every entry and how many each worker computed.
 *   cache-reader [--wait MS] [WORD...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"

static int print_entry(void *arg, shmrpc_str word, const cache_Entry *e)
{
    (void)arg;
    printf("%.*s -> %.*s (length %u, computed by pid %d)\n", (int)word.len, word.ptr,
           (int)e->upper.len, e->upper.ptr, (unsigned)e->length, (int)e->pid);
    return 0;
}

struct tally {
    uint64_t entries;
    int workers;
};

static int add_count(void *arg, int32_t pid, uint64_t n)
{
    struct tally *t = arg;
    printf("worker %d computed %llu\n", (int)pid, (unsigned long long)n);
    t->entries += n;
    t->workers++;
    return 0;
}

/* Opens a map, waiting up to wait_ms for the server to create it. */
static int open_map(int (*open)(shmrpc_map **, const shmrpc_map_opts *), shmrpc_map **m,
                    long wait_ms)
{
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    struct timespec nap = {0, 10 * 1000000L};
    for (long waited = 0;; waited += 10) {
        int rc = open(m, &o);
        if (rc != SHMRPC_ENOENT || waited >= wait_ms) return rc;
        nanosleep(&nap, NULL);
    }
}

int main(int argc, char **argv)
{
    long wait_ms = 0;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "--wait") == 0) {
        wait_ms = strtol(argv[2], NULL, 10);
        first = 3;
    }
    shmrpc_map *entries = NULL, *computed = NULL;
    int rc = open_map(Cache_entries_open, &entries, wait_ms);
    if (rc == 0) rc = open_map(Cache_computed_open, &computed, wait_ms);
    if (rc != 0) {
        fprintf(stderr, "cache-reader: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
        shmrpc_map_close(entries);
        return 1;
    }
    shmrpc_buf buf;
    shmrpc_buf_init(&buf);
    shmrpc_arena *a = shmrpc_arena_new(1024);
    if (!a) rc = SHMRPC_ENOMEM;
    for (int i = first; rc == 0 && i < argc; i++) {
        cache_Entry e;
        shmrpc_str word = shmrpc_str_c(argv[i]);
        shmrpc_arena_reset(a);
        rc = Cache_entries_get(entries, &buf, a, word, &e);
        if (rc == SHMRPC_ENOENT)
            rc = (printf("%s: not cached\n", argv[i]), 0);
        else if (rc == 0)
            print_entry(NULL, word, &e);
    }
    if (rc == 0 && first == argc) {
        struct tally t = {0, 0};
        rc = Cache_entries_iterate(entries, a, print_entry, NULL);
        if (rc == 0) rc = Cache_computed_iterate(computed, NULL, add_count, &t);
        if (rc == 0)
            printf("%llu entries computed by %d worker%s\n", (unsigned long long)t.entries,
                   t.workers, t.workers == 1 ? "" : "s");
    }
    if (rc != 0) fprintf(stderr, "cache-reader: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
    shmrpc_arena_free(a);
    shmrpc_buf_destroy(&buf);
    shmrpc_map_close(entries);
    shmrpc_map_close(computed);
    return rc == 0 ? 0 : 1;
}
