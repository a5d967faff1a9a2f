/* SPDX-License-Identifier: MIT */
/* A map whose segments a hostile process of the same user writes over while writers and
 * readers use it: the header (counts, the generation in use, the reader table), the
 * current generation's table and entries, and the lock's segment, with random values many
 * times a second, following the map as it grows. Shared memory that anyone holding the
 * owner's uid may write is input to the library: no process may crash, hang past its
 * bound, or get a status the API does not have. Nothing is promised about the values while
 * the scribbler runs. Every child is bounded by alarm() and reaped, the map unlinked, even
 * when the test fails. */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <shmrpc.h>

#include "kids.h"
#include "scribble.h"

#define CHILD_ALARM_S 30
#define RUN_MS 1500     /* how long the users and the scribbler run together */
#define LOCK_MS 20      /* how long a write waits for the lock... */
#define OP_HANG_MS 3000 /* ...and an operation that takes this long has hung */
#define REAP_MS 20000   /* a child that is not done by then has hung */
#define KEYS 512
#define HOT_BYTES 4096 /* the start of each segment: scribbled more often than the rest */

static char mname[SHMRPC_MAP_NAME_MAX + 1];

static int setup(void **state)
{
    (void)state;
    snprintf(mname, sizeof mname, "map_scribble.%d", (int)getpid());
    return test_scribble_setup();
}

static int teardown(void **state)
{
    (void)state;
    test_kids_kill_all();
    shmrpc_map_unlink_quiet(mname);
    test_scribble_teardown();
    return 0;
}

static shmrpc_map *open_map(shmrpc_map_mode mode)
{
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.mode = mode;
    o.initial_slots = 64; /* small, so that the writers grow it while it is scribbled */
    o.initial_bytes = 4096;
    o.max_bytes = 64u << 20;
    o.lock_timeout_ms = LOCK_MS;
    shmrpc_map *m = NULL;
    return shmrpc_map_open(&m, mname, &o) == 0 ? m : NULL;
}

static int judge(const char *what, int rc, int64_t t0)
{
    return test_scribble_judge(what, rc, t0, OP_HANG_MS);
}

static int count_entry(void *arg, const void *key, size_t klen, const void *value, size_t vlen)
{
    /* Every byte the iteration hands out must be readable. */
    unsigned char sum = 0;
    for (size_t i = 0; i < klen; i++)
        sum ^= ((const unsigned char *)key)[i];
    for (size_t i = 0; i < vlen; i++)
        sum ^= ((const unsigned char *)value)[i];
    *(unsigned *)arg += 1u + (sum & 0);
    return 0;
}

/* A writer: puts of values from 0 to 300 bytes (so that the map grows), put-if-absent,
 * compare-and-swap, removes, now and then a clear. */
static int write_map(void *arg)
{
    (void)arg;
    shmrpc_map *m = open_map(SHMRPC_MAP_CONNECT_TO_EXISTING);
    if (!m) return 2;
    test_scribble_user_ready();
    unsigned char val[300];
    memset(val, 0x5a, sizeof val);
    unsigned r = (unsigned)getpid();
    int bad = 0;
    for (int64_t end = test_kid_now_ms() + RUN_MS; !bad && test_kid_now_ms() < end;) {
        r = r * 1103515245u + 12345u;
        char key[16];
        int klen = snprintf(key, sizeof key, "k%u", (r >> 8) % KEYS);
        size_t vlen = (r >> 4) % sizeof val;
        int64_t t0 = test_kid_now_ms();
        switch ((r >> 20) % 16) {
        case 0:
            bad = judge("put_if_absent", shmrpc_map_put_if_absent(m, key, (size_t)klen, val, vlen),
                        t0);
            break;
        case 1:
            bad = judge("cas", shmrpc_map_cas(m, key, (size_t)klen, val, vlen, val, vlen / 2), t0);
            break;
        case 2:
        case 3:
            bad = judge("remove", shmrpc_map_remove(m, key, (size_t)klen), t0);
            break;
        case 4:
            if ((r >> 12) % 64 == 0) bad = judge("clear", shmrpc_map_clear(m), t0);
            break;
        default:
            bad = judge("put", shmrpc_map_put(m, key, (size_t)klen, val, vlen), t0);
        }
    }
    shmrpc_map_close(m);
    test_scribble_tally("writer");
    return bad;
}

/* A reader: gets into buffers too small and big enough, views read to their last byte,
 * iterations, sizes, the change counter, info, and the full check. */
static int read_map(void *arg)
{
    (void)arg;
    shmrpc_map *m = open_map(SHMRPC_MAP_CONNECT_TO_EXISTING);
    if (!m) return 2;
    test_scribble_user_ready();
    unsigned char buf[300];
    unsigned r = (unsigned)getpid();
    int bad = 0;
    for (int64_t end = test_kid_now_ms() + RUN_MS; !bad && test_kid_now_ms() < end;) {
        r = r * 1103515245u + 12345u;
        char key[16];
        int klen = snprintf(key, sizeof key, "k%u", (r >> 8) % KEYS);
        size_t len, cap = (r >> 4) % 4 == 0 ? 8 : sizeof buf;
        int64_t t0 = test_kid_now_ms();
        switch ((r >> 20) % 16) {
        case 0: {
            unsigned n = 0;
            bad = judge("iterate", shmrpc_map_iterate(m, count_entry, &n), t0);
            break;
        }
        case 1: {
            uint64_t count;
            bad = judge("size", shmrpc_map_size(m, &count), t0) ||
                  judge("changes", shmrpc_map_changes(m, &count), t0) ||
                  judge("wait", shmrpc_map_wait(m, count, &count, 1), t0);
            break;
        }
        case 2: {
            shmrpc_map_info info;
            bad = judge("get_info", shmrpc_map_get_info(m, &info), t0) ||
                  judge("check", shmrpc_map_check(m), t0);
            break;
        }
        case 3:
        case 4:
        case 5: {
            shmrpc_map_view v;
            int rc = shmrpc_map_get_view(m, key, (size_t)klen, &v);
            bad = judge("get_view", rc, t0);
            if (rc == 0 && !bad) {
                volatile unsigned char sink = 0;
                for (size_t i = 0; i < v.len; i++)
                    sink ^= ((const unsigned char *)v.data)[i];
                (void)sink;
                (void)shmrpc_map_view_current(m, &v);
            }
            break;
        }
        default:
            bad = judge("get", shmrpc_map_get(m, key, (size_t)klen, buf, cap, &len), t0);
        }
    }
    shmrpc_map_close(m);
    test_scribble_tally("reader");
    return bad;
}

/* Maps the newest generation segment of the map (shmrpc.mapgen.NAME.G with the largest
 * G), its size in *size; NULL when there is none. */
static unsigned char *map_newest_generation(size_t *size, unsigned long *gen)
{
    char prefix[sizeof mname + 32];
    int plen = snprintf(prefix, sizeof prefix, "shmrpc.mapgen.%s.", mname);
    DIR *d = opendir("/dev/shm");
    if (!d) return NULL;
    unsigned long best = 0;
    bool found = false;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, prefix, (size_t)plen) != 0) continue;
        char *endp;
        unsigned long g = strtoul(e->d_name + plen, &endp, 10);
        if (*endp == '\0' && (!found || g > best)) best = g, found = true;
    }
    closedir(d);
    if (!found) return NULL;
    char path[sizeof prefix + 48];
    snprintf(path, sizeof path, "/dev/shm/%s%lu", prefix, best);
    *gen = best;
    return test_scribble_map(path, size);
}

/* The scribbler: every millisecond, four random values into the map's header, its newest
 * generation (looked for again every 50 ms: writers grow the map) and, rarely, its lock. */
static int scribble(void *arg)
{
    int users = *(const int *)arg;
    if (test_scribble_wait_users(users) != 0) return 4;
    char path[sizeof mname + 48];
    snprintf(path, sizeof path, "/dev/shm/shmrpc.map.%s", mname);
    size_t hsize, gsize = 0, lsize;
    unsigned char *h = test_scribble_map(path, &hsize);
    snprintf(path, sizeof path, "/dev/shm/shmrpc.lock.map.%s", mname);
    unsigned char *l = test_scribble_map(path, &lsize);
    if (!h || !l) return 3;
    unsigned char *g = NULL;
    unsigned long gen = 0;
    uint64_t x = (uint64_t)getpid() * 0x9e3779b97f4a7c15u;
    int turn = 0;
    for (int64_t end = test_kid_now_ms() + RUN_MS; test_kid_now_ms() < end; usleep(1000)) {
        if (turn++ % 50 == 0) {
            size_t size;
            unsigned long now;
            unsigned char *n = map_newest_generation(&size, &now);
            if (n && g && now == gen) {
                munmap(n, size);
            } else if (n) {
                if (g) munmap(g, gsize);
                g = n, gsize = size, gen = now;
            }
        }
        test_scribble(h, hsize, HOT_BYTES, 2, &x);
        if (g) test_scribble(g, gsize, HOT_BYTES, 2, &x);
        if (turn % 100 == 0) test_scribble(l, lsize, lsize, 1, &x);
    }
    if (g) munmap(g, gsize);
    munmap(h, hsize);
    munmap(l, lsize);
    return 0;
}

static void writers_and_readers(void **state)
{
    (void)state;
    shmrpc_map *m = open_map(SHMRPC_MAP_CREATE_NEW_EXCLUSIVE);
    if (!m) print_error("open: %s\n", shmrpc_errmsg());
    assert_non_null(m);
    pid_t kids[5];
    int n = 0;
    for (int i = 0; i < 2; i++)
        kids[n++] = test_kid_spawn(write_map, NULL, CHILD_ALARM_S);
    for (int i = 0; i < 2; i++)
        kids[n++] = test_kid_spawn(read_map, NULL, CHILD_ALARM_S);
    int users = n;
    kids[n++] = test_kid_spawn(scribble, &users, CHILD_ALARM_S);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        assert_true(kids[i] > 0);
        int st = test_kid_reap(kids[i], REAP_MS);
        if (st != 0) {
            print_error("child %d (%s) ended with %d (128 + signal when killed; -1: hung)\n",
                        (int)kids[i],
                        i < 2   ? "writer"
                        : i < 4 ? "reader"
                                : "scribbler",
                        st);
            failed++;
        }
    }
    /* The creator's handle still closes, whatever the segments hold now. */
    shmrpc_map_close(m);
    assert_int_equal(failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(writers_and_readers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
