/* SPDX-License-Identifier: MIT */
/* The scribbler's writes and the judgement of the users' operations (scribble.h). */
#include "scribble.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "kids.h"

static struct roll {
    _Atomic int ready, done;
} * roll;

int test_scribble_setup(void)
{
    roll = mmap(NULL, sizeof *roll, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (roll == MAP_FAILED) return roll = NULL, -1;
    return 0;
}

void test_scribble_teardown(void)
{
    if (roll) munmap(roll, sizeof *roll);
    roll = NULL;
}

void test_scribble_user_ready(void)
{
    atomic_fetch_add(&roll->ready, 1);
}

int test_scribble_wait_users(int users)
{
    for (int64_t until = test_kid_now_ms() + 10000; atomic_load(&roll->ready) < users; usleep(1000))
        if (test_kid_now_ms() > until) return -1;
    return 0;
}

void test_scribble_done(void)
{
    atomic_store(&roll->done, 1);
}

int test_scribble_is_done(void)
{
    return atomic_load(&roll->done);
}

void test_scribble(unsigned char *m, size_t size, size_t hot, int writes, uint64_t *x)
{
    if (size < 16) return;
    if (hot > size) hot = size;
    for (int i = 0; i < writes; i++) {
        uint64_t r = *x;
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        *x = r;
        size_t span = (r & 3) == 0 && hot >= 16 ? hot : size;
        size_t off = (size_t)(r >> 24) % (span - 8) & ~(size_t)7;
        uint64_t v = r * 0x2545f4914f6cdd1du;
        switch ((r >> 2) & 3) {
        case 0:
            m[off] = (unsigned char)v;
            break;
        case 1:
            v = ~(uint64_t)0;
            /* fall through */
        case 2:
            memcpy(m + off, &v, 8);
            break;
        default:
            memcpy(m + off + ((r >> 5) & 4), &v, 4);
        }
    }
}

unsigned char *test_scribble_map(const char *path, size_t *size)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat sb;
    void *m = MAP_FAILED;
    if (fstat(fd, &sb) == 0 && sb.st_size > 0)
        m = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return NULL;
    *size = (size_t)sb.st_size;
    return m;
}

/* What this process's judged operations returned: 0, SHMRPC_ETIMEDOUT, SHMRPC_EPROTO,
 * anything else. */
static unsigned long tally[4];

int test_scribble_judge(const char *what, int rc, int64_t t0, int hang_ms)
{
    int64_t took = test_kid_now_ms() - t0;
    tally[rc == 0 ? 0 : rc == SHMRPC_ETIMEDOUT ? 1 : rc == SHMRPC_EPROTO ? 2 : 3]++;
    if (rc > 0 || strcmp(shmrpc_status_name(rc), "SHMRPC_EUNKNOWN") == 0) {
        fprintf(stderr, "pid %d: %s returned %d, not a status\n", (int)getpid(), what, rc);
        return 1;
    }
    if (took > hang_ms) {
        fprintf(stderr, "pid %d: %s took %" PRId64 " ms: %s\n", (int)getpid(), what, took,
                rc ? shmrpc_errmsg() : "ok");
        return 1;
    }
    return 0;
}

void test_scribble_tally(const char *who)
{
    fprintf(stderr, "%s %d: %lu ok, %lu timed out, %lu broken (EPROTO), %lu other\n", who,
            (int)getpid(), tally[0], tally[1], tally[2], tally[3]);
}
