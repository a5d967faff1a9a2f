/* SPDX-License-Identifier: MIT */
/* Rotating log files for the services' output and the supervisor's own lines. */
#include "sup_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "input.h"

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sup_unix_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

/* The runtime's monotonic clock (shmrpc__now_ns) is not in its public headers. */
int64_t sup_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

void sup_log_time(char *out, size_t cap, int64_t unix_ms)
{
    time_t s = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    /* Each field taken into its range, so that the compiler sees (and a Release build's
     * -Wformat-truncation agrees) that the stamp is 24 bytes: an int could print 11. */
    snprintf(out, cap, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
             (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)tm.tm_mon % 12u + 1,
             (unsigned)tm.tm_mday % 32u, (unsigned)tm.tm_hour % 24u, (unsigned)tm.tm_min % 60u,
             (unsigned)tm.tm_sec % 61u, (unsigned)((unix_ms % 1000 + 1000) % 1000));
}

static int reopen(sup_log *l)
{
    /* Not open(): a FIFO put in the log's place would keep the supervisor waiting for a
     * reader, or block it on every line once the reader stops. Such a log is refused. */
    l->fd = shmrpc__open_regular(l->path, O_WRONLY | O_CREAT | O_APPEND, 0640, &l->kind);
    if (l->fd < 0) return SHMRPC_ESYS(errno);
    struct stat st;
    l->size = fstat(l->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    return 0;
}

int sup_log_open(sup_log *l, const char *dir, const char *name, uint64_t max, int keep, bool stamp)
{
    memset(l, 0, sizeof *l);
    l->fd = -1;
    l->max = max;
    l->keep = keep;
    l->stamp = stamp;
    size_t n = strlen(dir) + strlen(name) + 2;
    l->path = malloc(n);
    if (!l->path) return SHMRPC_ENOMEM;
    snprintf(l->path, n, "%s/%s", dir, name);
    return reopen(l);
}

/* NAME.log.K-1 -> NAME.log.K down to NAME.log -> NAME.log.1; the oldest falls off. */
static void rotate(sup_log *l)
{
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    char from[PATH_MAX], to[PATH_MAX];
    if (l->keep == 0) {
        unlink(l->path);
    } else {
        snprintf(to, sizeof to, "%s.%d", l->path, l->keep);
        unlink(to);
        for (int k = l->keep - 1; k >= 1; k--) {
            snprintf(from, sizeof from, "%s.%d", l->path, k);
            snprintf(to, sizeof to, "%s.%d", l->path, k + 1);
            rename(from, to); /* ENOENT while fewer exist */
        }
        snprintf(to, sizeof to, "%s.1", l->path);
        rename(l->path, to);
    }
    reopen(l);
}

static void put(sup_log *l, const char *p, size_t n)
{
    while (n > 0) {
        if (l->fd < 0 && reopen(l) != 0) break;
        ssize_t k = write(l->fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        l->size += (uint64_t)k;
        p += k;
        n -= (size_t)k;
    }
    l->dropped += n;
}

void sup_log_write(sup_log *l, const char *data, size_t n)
{
    char stamp[40];
    size_t stamp_len = 0;
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t line = nl ? (size_t)(nl - data) + 1 : n;
        if (!l->mid_line && l->stamp) {
            sup_log_time(stamp, sizeof stamp - 1, sup_unix_ms());
            stamp_len = strlen(stamp);
            stamp[stamp_len++] = ' ';
        } else {
            stamp_len = 0;
        }
        /* Rotate before a piece that would pass max; a piece longer than max on its own is
         * cut so that no file is larger than max. */
        if (l->max) {
            if (l->size > 0 && l->size + stamp_len + line > l->max) rotate(l);
            if (stamp_len + line > l->max) line = (size_t)l->max - stamp_len;
        }
        if (stamp_len) put(l, stamp, stamp_len);
        put(l, data, line);
        l->mid_line = data[line - 1] != '\n';
        data += line;
        n -= line;
    }
}

void sup_log_close(sup_log *l)
{
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    free(l->path);
    l->path = NULL;
}

bool sup_log_is_journal(int fd)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    char end;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu%c", &dev, &ino, &end) != 2 || fstat(fd, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}
