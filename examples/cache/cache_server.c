/* SPDX-License-Identifier: MIT */
/* cache-server: the cache service of cache.svc. Its worker processes share the map
 * cache.entries: lookup answers from it when the word is there, else computes the entry
 * (slowly: --cost MS) and puts it there for every worker, counting in cache.computed how
 * many entries each worker computed. The server creates both maps fresh and removes them
 * when it stops.
 *   cache-server [--workers N] [--cost MS] [ADDRESS]     (default: shm://cache, 1 worker) */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"

static long cost_ms = 20;

/* Each worker thread opens the maps on its first call: a map handle belongs to one thread,
 * and the server's own handles (made before the workers were forked) stay the server's. */
static _Thread_local shmrpc_map *entries, *computed;
static _Thread_local shmrpc_buf buf;

static int open_maps(void)
{
    if (entries && computed) return 0;
    shmrpc_buf_init(&buf);
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    int rc = entries ? 0 : Cache_entries_open(&entries, &o);
    if (rc == 0) rc = Cache_computed_open(&computed, &o);
    return rc;
}

/* The expensive part a cache saves: here a nap and an upper-case copy. */
static void compute(shmrpc_str word, shmrpc_arena *a, cache_Entry *out)
{
    struct timespec ts = {cost_ms / 1000, (cost_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    char *up = shmrpc_arena_strndup(a, word.ptr, word.len);
    for (size_t i = 0; up && i < word.len; i++)
        up[i] = (char)toupper((unsigned char)up[i]);
    out->upper = (shmrpc_str){up, up ? word.len : 0};
    out->length = (uint32_t)word.len;
    out->pid = (int32_t)getpid();
}

/* cache.computed[pid] += 1, under the map's lock so that the read and the write are one. */
static int count_computed(void)
{
    shmrpc_lock *l = shmrpc_map_lock(computed);
    int rc = shmrpc_lock_acquire(l, 5000);
    if (rc != 0 && rc != SHMRPC_EOWNERDEAD) return rc;
    uint64_t n = 0;
    rc = Cache_computed_get(computed, &buf, NULL, (int32_t)getpid(), &n);
    if (rc == 0 || rc == SHMRPC_ENOENT)
        rc = Cache_computed_put(computed, &buf, (int32_t)getpid(), n + 1);
    shmrpc_lock_release(l);
    return rc;
}

/* What get decoded points into buf, which the next call reuses: the answer gets a copy. */
static int cached(shmrpc_ctx *ctx, shmrpc_str word, cache_Entry *out)
{
    shmrpc_arena *a = shmrpc_ctx_arena(ctx);
    int rc = Cache_entries_get(entries, &buf, a, word, out);
    if (rc != 0) return rc;
    char *up = shmrpc_arena_strndup(a, out->upper.ptr, out->upper.len);
    if (!up) return shmrpc_ctx_error(ctx, SHMRPC_ENOMEM, "out of memory");
    out->upper.ptr = up;
    return 0;
}

static int lookup(shmrpc_ctx *ctx, shmrpc_str word, cache_Entry *out)
{
    int rc = open_maps();
    if (rc != 0) return shmrpc_ctx_error(ctx, rc, "the cache's maps: %s", shmrpc_errmsg());
    rc = cached(ctx, word, out);
    if (rc != SHMRPC_ENOENT) return rc;
    compute(word, shmrpc_ctx_arena(ctx), out);
    if (!out->upper.ptr) return shmrpc_ctx_error(ctx, SHMRPC_ENOMEM, "out of memory");
    rc = Cache_entries_put_if_absent(entries, &buf, word, out);
    if (rc == SHMRPC_EBUSY) return cached(ctx, word, out); /* another worker was first */
    if (rc == 0) rc = count_computed();
    return rc == 0 ? 0 : shmrpc_ctx_error(ctx, rc, "the cache: %s", shmrpc_errmsg());
}

static const Cache_handlers handlers = {.lookup = lookup};

static long number(const char *s, long lo, long hi, const char *what)
{
    char *end;
    long n = strtol(s, &end, 10);
    if (*end != '\0' || end == s || n < lo || n > hi) {
        fprintf(stderr, "cache-server: %s takes %ld to %ld\n", what, lo, hi);
        exit(2);
    }
    return n;
}

int main(int argc, char **argv)
{
    const char *addr = "shm://" CACHE_NAME;
    int workers = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            workers = (int)number(argv[++i], 1, 64, "--workers");
        } else if (strcmp(argv[i], "--cost") == 0 && i + 1 < argc) {
            cost_ms = number(argv[++i], 0, 60000, "--cost");
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: cache-server [--workers N] [--cost MS] [ADDRESS]\n");
            return 2;
        } else {
            addr = argv[i];
        }
    }
    /* A fresh cache each run, removed when this process ends (auto_unlink). */
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.mode = SHMRPC_MAP_CREATE_NEW_OVERWRITE;
    o.auto_unlink = true;
    shmrpc_map *own_entries = NULL, *own_computed = NULL;
    int rc = Cache_entries_open(&own_entries, &o);
    if (rc == 0) rc = Cache_computed_open(&own_computed, &o);
    if (rc != 0) {
        fprintf(stderr, "cache-server: the maps: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
        shmrpc_map_close(own_entries);
        return 1;
    }
    shmrpc_server *server;
    rc = shmrpc_server_new(&server, NULL);
    if (rc == 0) rc = shmrpc_server_register(server, &Cache_service, &handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(server, addr);
    if (rc != 0) {
        fprintf(stderr, "cache-server: %s: %s: %s\n", addr, shmrpc_strerror(rc), shmrpc_errmsg());
        shmrpc_server_free(server);
        shmrpc_map_close(own_entries);
        shmrpc_map_close(own_computed);
        return 1;
    }
    fprintf(stderr, "cache-server: serving %s with %d worker%s; maps %s and %s\n", addr, workers,
            workers == 1 ? "" : "s", CACHE_MAP_ENTRIES, CACHE_MAP_COMPUTED);
    rc = shmrpc_server_serve_until_signal(server, workers);
    shmrpc_server_free(server);
    shmrpc_map_close(own_entries);
    shmrpc_map_close(own_computed);
    fprintf(stderr, "cache-server: stopped\n");
    return rc == 0 ? 0 : 1;
}
