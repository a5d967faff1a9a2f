/* SPDX-License-Identifier: MIT */
/* The statistics segment of a server (shmrpc/stats.h) over shm:// and tcp://: calls,
 * errors and latencies counted by the workers, read by another process, gone with the
 * server. Real processes, every wait bounded, every child reaped. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <math.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "procs.h"

static char addr[64];
static pid_t server;

static shmrpc_client *connect_client(void)
{
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, NULL, addr, &rc);
    if (rc) fail_msg("connect %s: %s: %s", addr, shmrpc_strerror(rc), shmrpc_errmsg());
    return c;
}

static const shmrpc_method_stats *method(const shmrpc_stats *s, const char *name)
{
    for (uint32_t i = 0; i < s->n_methods; i++)
        if (strcmp(s->methods[i].name, name) == 0) return &s->methods[i];
    fail_msg("no method %s in the statistics", name);
    return NULL;
}

static void check_buckets(const shmrpc_method_stats *m)
{
    uint64_t sum = 0;
    for (int b = 0; b < SHMRPC_STATS_BUCKETS; b++)
        sum += m->buckets[b];
    assert_true(sum == m->calls);
}

static void counted(void)
{
    test_server ts = {&Calls_service, &calls_test_handlers, addr, 2, 0, NULL, NULL, NULL};
    server = test_start_server(&ts);
    assert_true(server > 0);
    shmrpc_client *c = connect_client();
    int64_t sum;
    for (int i = 0; i < 10; i++)
        assert_int_equal(calls_add(c, i, 1, &sum), 0);
    int32_t pid;
    for (int i = 0; i < 3; i++)
        assert_int_equal(calls_nap(c, 2, &pid), 0);
    for (int i = 0; i < 2; i++) { /* an add whose arguments do not decode: an error */
        shmrpc_buf *req = shmrpc_client_request(c);
        shmrpc_buf_append(req, "\xc1", 1);
        shmrpc_bytes resp;
        assert_int_equal(shmrpc_client_call(c, CALLS_METHOD_ADD, &resp), SHMRPC_EINVAL);
    }

    shmrpc_stats *s;
    int rc = shmrpc_stats_read(addr, &s);
    if (rc) fail_msg("stats: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_string_equal(s->service, "Calls");
    assert_int_equal(s->pid, server);
    assert_int_equal(s->n_methods, 3);
    const shmrpc_method_stats *add = method(s, "add"), *nap = method(s, "nap");
    assert_true(add->calls == 12 && add->errors == 2);
    assert_true(nap->calls == 3 && nap->errors == 0);
    assert_true(method(s, "echo")->calls == 0);
    check_buckets(add);
    check_buckets(nap);
    /* a nap of 2 ms takes at least that: the bucket it lands in says so */
    assert_true(nap->total_ns >= 3 * 2000000u);
    assert_true(shmrpc_stats_percentile(nap, 0.5) >= 2000000u);
    assert_true(shmrpc_stats_percentile(add, 0.5) < shmrpc_stats_percentile(nap, 0.5));
    shmrpc_stats_free(s);

    shmrpc_client_free(c);
    assert_true(test_stop_server(server));
    server = 0;
    /* gone with the server */
    assert_int_equal(shmrpc_stats_read(addr, &s), SHMRPC_EUNAVAIL);
}

static int teardown(void **state)
{
    (void)state;
    if (server > 0) test_stop_server(server); /* a failed test's: SIGTERM, so that it cleans up */
    server = 0;
    return 0;
}

static void over_shm(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://stats-%d", (int)getpid());
    counted();
}

static void over_tcp(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    counted();
}

/* Over shm://, calls naps of 0 ms (no syscall) and, where i % every == at, of 3 ms, back to
 * back, then checks that each slow one counts from 2.1 ms, and that all of them count no
 * more time than passed from the first call until the last one's count is seen. A client that spins
 * through a slow call (spin_through) calls again at once after it, as after a fast one; by default
 * it sleeps through it, and calls again after a wake-up. */
static void naps(int calls, int every, int at, bool spin_through)
{
    snprintf(addr, sizeof addr, "shm://stats-close-%d", (int)getpid());
    test_server ts = {&Calls_service, &calls_test_handlers, addr, 1, 0, NULL, NULL, NULL};
    server = test_start_server(&ts);
    assert_true(server > 0);
    if (spin_through) setenv("SHMRPC_SPIN_NS", "50000000", 1); /* read as the client connects */
    shmrpc_client *c = connect_client();
    unsetenv("SHMRPC_SPIN_NS");
    int32_t pid;
    int slow_calls = 0;
    int64_t t0 = test_now_ms();
    for (int i = 0; i < calls; i++) {
        bool slow = i % every == at;
        slow_calls += slow;
        assert_int_equal(calls_nap(c, slow ? 3 : 0, &pid), 0);
    }
    /* The worker counts a call just after its answer: the last one may be a moment late.
     * Its clock read comes before that count, so the time until the count is seen bounds
     * every time the calls were counted with. */
    shmrpc_stats *s = NULL;
    const shmrpc_method_stats *nap = NULL;
    for (int64_t until = test_now_ms() + 2000; test_now_ms() < until; usleep(1000)) {
        shmrpc_stats_free(s);
        int rc = shmrpc_stats_read(addr, &s);
        if (rc) fail_msg("stats: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
        nap = method(s, "nap");
        if (nap->calls == (uint64_t)calls) break;
    }
    int64_t took_ms = test_now_ms() - t0;
    assert_true(nap->calls == (uint64_t)calls && nap->errors == 0);
    check_buckets(nap);
    uint64_t counted_slow = 0;
    for (int b = 21 - 9; b < SHMRPC_STATS_BUCKETS; b++) /* from 2^21 ns, 2.1 ms */
        counted_slow += nap->buckets[b];
    /* Each call counts from before its handler to after its answer, within the loop, so
     * all count no more than its time (and a millisecond: the clock here counts whole
     * ones). A worker preempted during a fast call counts it longer than its handler ran,
     * so fast calls counted slow are not refused. */
    if (counted_slow < (uint64_t)slow_calls || nap->total_ns > (uint64_t)(took_ms + 1) * 1000000u)
        fail_msg("%llu calls counted from 2.1 ms, %llu ns in all in %lld ms; %d naps of 3 ms "
                 "were made",
                 (unsigned long long)counted_slow, (unsigned long long)nap->total_ns,
                 (long long)took_ms, slow_calls);
    shmrpc_stats_free(s);
    shmrpc_client_free(c);
    assert_true(test_stop_server(server));
    server = 0;
}

/* Calls served back to back over shm://, whose worker counts each after its answer with
 * the clock read that also times its own loop: slow calls among fast ones count as slow,
 * and none counts time from before it began (all together fit the time they took). */
static void back_to_back_calls_keep_their_time(void **state)
{
    (void)state;
    naps(120, 12, 11, false);
    /* The client spins through the slow calls, and calls again at once after them. */
    naps(64, 16, 0, true);
}

/* Nothing there, and a malformed address. */
static void nothing_there(void **state)
{
    (void)state;
    shmrpc_stats *s;
    assert_int_equal(shmrpc_stats_read("shm://nobody-here", &s), SHMRPC_EUNAVAIL);
    assert_string_equal(shmrpc_errmsg(),
                        "no statistics at shm://nobody-here: no server keeps any there");
    assert_int_equal(shmrpc_stats_read("nowhere", &s), SHMRPC_EINVAL);
}

/* Percentiles of counts made up here: a bucket b holds latencies up to 2^(b+10) ns, and
 * fractions outside 0..1 are taken as 0 and 1; the 0th is the least call's bucket (not the
 * first bucket, empty). */
static void percentiles(void **state)
{
    (void)state;
    shmrpc_method_stats low = {.calls = 4};
    low.buckets[3] = 4;
    assert_int_equal(shmrpc_stats_percentile(&low, 0), 1u << 13);
    assert_int_equal(shmrpc_stats_percentile(&low, -1), 1u << 13);
    shmrpc_method_stats m = {.calls = 4};
    m.buckets[0] = 1;
    m.buckets[3] = 3;
    assert_int_equal(shmrpc_stats_percentile(&m, 0), 1u << 10);
    assert_int_equal(shmrpc_stats_percentile(&m, 0.25), 1u << 10);
    assert_int_equal(shmrpc_stats_percentile(&m, 0.5), 1u << 13);
    assert_int_equal(shmrpc_stats_percentile(&m, 1), 1u << 13);
    assert_int_equal(shmrpc_stats_percentile(&m, 2), 1u << 13);
}

/* Quantiles as Prometheus' histogram_quantile makes them: a bucket's calls spread evenly
 * over it, bucket 0 from 0 ns, the open-ended last bucket as its lower bound; fractions
 * outside 0..1 (and NaN) taken as 0 and 1. */
static void quantiles(void **state)
{
    (void)state;
    shmrpc_method_stats m = {.calls = 4};
    m.buckets[0] = 1; /* [0, 1024) */
    m.buckets[3] = 3; /* [4096, 8192) */
    assert_float_equal(shmrpc_stats_quantile(&m, 0.125), 512, 1e-9);
    assert_float_equal(shmrpc_stats_quantile(&m, 0.25), 1024, 1e-9);
    assert_float_equal(shmrpc_stats_quantile(&m, 0.5), 4096 + 4096 / 3.0, 1e-9);
    assert_float_equal(shmrpc_stats_quantile(&m, 1), 8192, 1e-9);
    assert_float_equal(shmrpc_stats_quantile(&m, 2), 8192, 1e-9);
    /* The 0th is where the least call's bucket starts, not the empty buckets before. */
    shmrpc_method_stats low = {.calls = 4};
    low.buckets[3] = 4;
    assert_float_equal(shmrpc_stats_quantile(&low, 0), 4096, 1e-9);
    assert_float_equal(shmrpc_stats_quantile(&low, -1), 4096, 1e-9);
    assert_float_equal(shmrpc_stats_quantile(&low, NAN), 4096, 1e-9);
    assert_float_equal(shmrpc_stats_quantile(&low, 0.75), 4096 + 4096 * 0.75, 1e-9);
    shmrpc_method_stats slow = {.calls = 2};
    slow.buckets[SHMRPC_STATS_BUCKETS - 1] = 2;
    assert_float_equal(shmrpc_stats_quantile(&slow, 0.5), (double)(1ull << 40), 1e-9);
    shmrpc_method_stats none = {0};
    assert_float_equal(shmrpc_stats_quantile(&none, 0.5), 0, 0);
}

/* --- a segment the reader did not write ------------------------------------------------ */

/* The segment's layout (runtime/src/stats/stats.h), as a reader of another build meets it: a
 * head of six 32-bit words, the service's 256 bytes and 64 KiB of names, then a row of
 * (3 + buckets) counters per worker and method. */
#define HEAD_BYTES (24 + 256 + 65536)
#define ROW_WORDS (3 + SHMRPC_STATS_BUCKETS)
#define SEG_BYTES(n) (HEAD_BYTES + (size_t)SHMRPC_MAX_WORKERS * (n)*ROW_WORDS * 8)

typedef struct forged {
    uint32_t magic, version, n_methods, n_workers, names_len;
    const char *names;
    size_t size; /* of the file */
    mode_t mode;
} forged;

static char forged_path[512];

/* Writes f where a server of shm://stats-forged keeps its statistics; worker 0 counts 5
 * calls and 1 error of method 1, worker 3 two calls of it, the last with a 3 us latency. */
static void forge(const forged *f)
{
    char dir[256];
    assert_int_equal(shmrpc_names_dir(dir, sizeof dir), 0);
    snprintf(forged_path, sizeof forged_path, "%s/shmrpc.stats.shm.stats-forged", dir);
    unlink(forged_path);
    int fd = open(forged_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, f->mode);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, f->mode), 0);
    assert_int_equal(ftruncate(fd, (off_t)f->size), 0);
    uint32_t head[6] = {f->magic, f->version, 4321, f->n_methods, f->n_workers, f->names_len};
    if (f->size >= sizeof head) {
        assert_int_equal(pwrite(fd, head, sizeof head, 0), (ssize_t)sizeof head);
        assert_int_equal(pwrite(fd, "forged", 6, 24), 6);
        assert_int_equal(pwrite(fd, f->names, strlen(f->names), 280), (ssize_t)strlen(f->names));
    }
    uint64_t row[ROW_WORDS] = {5, 1, 0};
    off_t r0 = HEAD_BYTES + (off_t)(0 * f->n_methods + 1) * ROW_WORDS * 8;
    off_t r3 = HEAD_BYTES + (off_t)(3 * f->n_methods + 1) * ROW_WORDS * 8;
    if (f->n_methods == 2 && (size_t)r3 + sizeof row <= f->size) {
        assert_int_equal(pwrite(fd, row, sizeof row, r0), (ssize_t)sizeof row);
        memset(row, 0, sizeof row);
        row[0] = 2;
        row[2] = 3000;
        row[3 + 2] = 1; /* bucket 2 */
        assert_int_equal(pwrite(fd, row, sizeof row, r3), (ssize_t)sizeof row);
    }
    close(fd);
}

/* The forged file goes, even when a check failed. */
static int unlink_forged(void **state)
{
    (void)state;
    char real[600];
    snprintf(real, sizeof real, "%s.real", forged_path);
    unlink(real);
    unlink(forged_path);
    return 0;
}

#define STATS_MAGIC 0x53525354u

/* What the reader makes of a segment written well, and of each way one can be written
 * wrong: a status and a message for each, nothing read past the file. */
static void forged_segments(void **state)
{
    (void)state;
    const uint32_t W = SHMRPC_MAX_WORKERS;
    shmrpc_stats *s = NULL;
    forged good = {STATS_MAGIC, 1, 2, W, 3, "a\nb", SEG_BYTES(2), 0600};
    forge(&good);
    assert_int_equal(shmrpc_stats_read("shm://stats-forged", &s), 0);
    assert_string_equal(s->service, "forged");
    assert_int_equal(s->pid, 4321);
    assert_int_equal(s->n_methods, 2);
    assert_string_equal(s->methods[0].name, "a");
    assert_string_equal(s->methods[1].name, "b");
    assert_int_equal(s->methods[0].calls, 0);
    assert_int_equal(s->methods[1].calls, 7); /* the rows of both workers */
    assert_int_equal(s->methods[1].errors, 1);
    assert_int_equal(s->methods[1].total_ns, 3000);
    assert_int_equal(s->methods[1].buckets[2], 1);
    /* Fewer calls in buckets than counted (a forged segment's): past the last bucket. */
    assert_int_equal(shmrpc_stats_percentile(&s->methods[1], 1),
                     (uint64_t)1 << (SHMRPC_STATS_BUCKETS + 9));
    assert_int_equal(shmrpc_stats_percentile(&s->methods[0], 0.5), 0);
    shmrpc_stats_free(s);

    /* Another user's, even 0600: refused as root would refuse it. */
    if (geteuid() == 0) {
        forge(&good);
        assert_int_equal(chown(forged_path, 65534, 65534), 0);
        assert_int_equal(shmrpc_stats_read("shm://stats-forged", &s), SHMRPC_EPERM);
        if (strstr(shmrpc_errmsg(), "belongs to another user or others may read it") == NULL)
            fail_msg("%s", shmrpc_errmsg());
    }

    /* Fewer names than methods: the rest are "?". */
    forged short_names = good;
    short_names.names = "a";
    short_names.names_len = 1;
    forge(&short_names);
    assert_int_equal(shmrpc_stats_read("shm://stats-forged", &s), 0);
    assert_string_equal(s->methods[0].name, "a");
    assert_string_equal(s->methods[1].name, "?");
    shmrpc_stats_free(s);

    struct {
        forged f;
        int rc;
        const char *says;
    } bad[] = {
        {{STATS_MAGIC, 1, 2, W, 3, "a\nb", SEG_BYTES(2), 0644},
         SHMRPC_EPERM,
         "belongs to another user or others may read it"},
        {{STATS_MAGIC, 1, 2, W, 3, "a\nb", 10, 0600}, SHMRPC_EUNAVAIL, "is not ready yet"},
        {{0, 1, 2, W, 3, "a\nb", SEG_BYTES(2), 0600}, SHMRPC_EUNAVAIL, "is not ready yet"},
        {{STATS_MAGIC + 1, 1, 2, W, 3, "a\nb", SEG_BYTES(2), 0600},
         SHMRPC_EPROTO,
         "is not a statistics segment of this version"},
        {{STATS_MAGIC, 2, 2, W, 3, "a\nb", SEG_BYTES(2), 0600},
         SHMRPC_EPROTO,
         "is not a statistics segment of this version"},
        {{STATS_MAGIC, 1, 2, W + 1, 3, "a\nb", SEG_BYTES(2), 0600},
         SHMRPC_EPROTO,
         "is not a statistics segment of this version"},
        /* Room for its rows, but more methods than a segment holds. */
        {{STATS_MAGIC, 1, 1025, W, 3, "a\nb", SEG_BYTES(1025), 0600},
         SHMRPC_EPROTO,
         "is not a statistics segment of this version"},
        {{STATS_MAGIC, 1, 2, W, 65537, "a\nb", SEG_BYTES(2), 0600},
         SHMRPC_EPROTO,
         "is not a statistics segment of this version"},
        /* More methods than the file has rows for. */
        {{STATS_MAGIC, 1, 3, W, 3, "a\nb", SEG_BYTES(2), 0600},
         SHMRPC_EPROTO,
         "is not a statistics segment of this version"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        forge(&bad[i].f);
        s = NULL;
        int rc = shmrpc_stats_read("shm://stats-forged", &s);
        if (rc != bad[i].rc || strstr(shmrpc_errmsg(), bad[i].says) == NULL)
            fail_msg("bad[%zu]: %d '%s', want %d '...%s'", i, rc, shmrpc_errmsg(), bad[i].rc,
                     bad[i].says);
        assert_null(s);
    }

    /* A symbolic link in its place is not followed. */
    forge(&good);
    char real[600];
    snprintf(real, sizeof real, "%s.real", forged_path);
    assert_int_equal(rename(forged_path, real), 0);
    assert_int_equal(symlink(real, forged_path), 0);
    assert_int_equal(shmrpc_stats_read("shm://stats-forged", &s), SHMRPC_EUNAVAIL);
    unlink(real);
    unlink(forged_path);
    assert_int_equal(shmrpc_stats_read("shm://stats-forged", NULL), SHMRPC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(over_shm, teardown),
        cmocka_unit_test_teardown(over_tcp, teardown),
        cmocka_unit_test_teardown(back_to_back_calls_keep_their_time, teardown),
        cmocka_unit_test(nothing_there),
        cmocka_unit_test(percentiles),
        cmocka_unit_test(quantiles),
        cmocka_unit_test_teardown(forged_segments, unlink_forged),
    };
    if (calls_shared_map() != 0) return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
