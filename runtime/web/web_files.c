/* SPDX-License-Identifier: MIT */
/* The series and the log of a service, read from their ends for the service page
 * (web_files.h, docs/web.md). Both files are appended to by the supervisor's main loop
 * while they are read here, on a civetweb thread: a last line without its '\n' is being
 * written and waits for the next request. Each answer reads through one descriptor, so a
 * rotation in the middle (a rename) leaves it reading the file it opened, whose inode it
 * reports. */
#include "web_files.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shmrpc/codec.h>
#include <shmrpc/status.h>

#include "web_view.h"
#include "input.h"
#include "utf8.h"

/* Reads backwards grow from the first block to the largest: a poll for the last few
 * samples reads one small block, a first load of an hour's samples a few large ones. */
#define BLOCK_FIRST ((size_t)4 << 10)
#define BLOCK_MAX ((size_t)64 << 10)
/* A "line" of NAME.series longer than this is no sample (a line is ~250 bytes). */
#define SERIES_LINE_MAX ((size_t)64 << 10)

static int fail(web_err *e, int http, int rc, const char *what)
{
    e->http = http;
    e->rc = rc;
    snprintf(e->msg, sizeof e->msg, "%.500s: %s", what, shmrpc_strerror(rc));
    return -1;
}

/* pread of exactly n bytes: 0, or -1 (an error, or a file cut shorter than its size). */
static int pread_all(int fd, char *p, size_t n, off_t at)
{
    while (n > 0) {
        ssize_t k = pread(fd, p, n, at);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO; /* cut shorter since its size was taken */
            return -1;
        }
        p += k;
        n -= (size_t)k;
        at += k;
    }
    return 0;
}

/* --- lines from the end ---------------------------------------------------------------- */

/* A file's lines, newest first, read a block at a time from its end towards floor. The
 * piece after the last '\n' (a line being written, or nothing) is never returned. */
typedef struct rev {
    int fd;
    off_t pos;       /* the offset of buf[0] */
    off_t floor;     /* read nothing before this; a line that starts before it is dropped */
    char *buf;       /* read, not returned yet: buf[0..len) */
    size_t len;      /* buf[len] is the '\n' before the line returned last (or the end) */
    size_t block;    /* the next read's size */
    size_t line_max; /* longer lines are skipped */
    off_t whole_end; /* just past the last '\n' of the file; -1 until found */
    bool first;      /* the piece after the last '\n' is still to drop */
    bool skipping;   /* inside a line longer than line_max */
    bool done;
    int err; /* SHMRPC_ENOMEM or SHMRPC_ESYS: the lines so far are all there is */
} rev;

static void rev_init(rev *r, int fd, off_t size, off_t floor, size_t line_max)
{
    *r = (rev){.fd = fd,
               .pos = size,
               .floor = floor,
               .block = BLOCK_FIRST,
               .line_max = line_max,
               .whole_end = -1,
               .first = true};
}

static void rev_destroy(rev *r)
{
    free(r->buf);
    r->buf = NULL;
}

/* One more block before buf; 0, or -1 with r->err set. */
static int rev_read(rev *r)
{
    size_t want = r->block;
    if ((off_t)want > r->pos - r->floor) want = (size_t)(r->pos - r->floor);
    char *nb = malloc(want + r->len);
    if (!nb) {
        r->err = SHMRPC_ENOMEM;
        return -1;
    }
    if (pread_all(r->fd, nb, want, r->pos - (off_t)want) != 0) {
        r->err = SHMRPC_ESYS(errno);
        free(nb);
        return -1;
    }
    if (r->len) memcpy(nb + want, r->buf, r->len);
    free(r->buf);
    r->buf = nb;
    r->len += want;
    r->pos -= (off_t)want;
    if (r->block < BLOCK_MAX) r->block *= 2;
    return 0;
}

/* The previous line (without its '\n'), valid until the next call: 1; or 0 at the floor,
 * the start of the file or an error (r->err). */
static int rev_prev(rev *r, const char **line, size_t *n)
{
    while (!r->done) {
        char *nl = r->len ? memrchr(r->buf, '\n', r->len) : NULL;
        if (nl || r->pos == r->floor) {
            size_t start = nl ? (size_t)(nl - r->buf) + 1 : 0;
            bool drop = r->first || r->skipping || (!nl && r->pos > 0); /* begins before floor */
            *line = r->buf ? r->buf + start : ""; /* an empty file reads nothing */
            *n = r->len - start;
            if (nl && r->whole_end < 0) r->whole_end = r->pos + (off_t)start;
            if (nl)
                r->len = start - 1;
            else
                r->done = true;
            r->first = r->skipping = false;
            if (!drop) return 1;
            continue;
        }
        if (r->len > r->line_max) { /* no line: forget it, and find where it starts */
            r->skipping = true;
            r->len = 0;
        }
        if (rev_read(r) != 0) r->done = true;
    }
    return 0;
}

/* --- the series ------------------------------------------------------------------------ */

/* How a window of samples (?step=) gives each field: its newest sample's, the sum, the mean
 * weighted by each sample's dt_ms (a rate over the window), the mean weighted by each
 * sample's calls (dt_ms times calls/s), or the highest. */
enum how { NEWEST, SUM, BY_TIME, BY_CALLS, HIGHEST };

/* The fields of a sample the charts use, in the answer's order. dt_ms tells the charts
 * each sample's interval, which series_interval_s sets per service: two samples much
 * further apart than that are a time the service was down. */
static const struct {
    const char *name;
    enum how how;
} series_fields[] = {
    {"t", NEWEST},        {"dt_ms", SUM},      {"cpu", BY_TIME},     {"rss", HIGHEST},
    {"pss", HIGHEST},     {"read", BY_TIME},   {"write", BY_TIME},   {"calls", BY_TIME},
    {"errors", BY_TIME},  {"p50_us", BY_CALLS}, {"p99_us", HIGHEST}, {"workers", NEWEST},
    {"pid", NEWEST},
};
#define N_FIELDS (sizeof series_fields / sizeof series_fields[0])

/* The samples (or windows) found so far, newest first, and the window being summed. */
typedef struct series_got {
    json_t **v;       /* of max */
    size_t n, max;
    int64_t step_ms;  /* 0: each sample as it is */
    bool open;        /* a window is being summed: key, sum, weight, newest */
    bool full;        /* a sample of the window after the last one met: stop */
    int64_t key;      /* t / step_ms of the window's samples */
    double sum[N_FIELDS], weight[N_FIELDS];
    json_t *newest;   /* the window's newest sample */
} series_got;

static double num(json_t *o, const char *key, double otherwise)
{
    json_t *x = json_object_get(o, key);
    return json_is_number(x) ? json_number_value(x) : otherwise;
}

/* The window being summed, as a sample, into g->v. */
static void close_window(series_got *g)
{
    if (!g->open) return;
    g->open = false;
    json_t *w = json_object();
    for (size_t f = 0; w && f < N_FIELDS; f++) {
        const char *k = series_fields[f].name;
        json_t *x = NULL;
        if (series_fields[f].how == NEWEST)
            x = json_incref(json_object_get(g->newest, k));
        else if (g->weight[f] > 0)
            x = json_real(series_fields[f].how == BY_TIME || series_fields[f].how == BY_CALLS
                              ? g->sum[f] / g->weight[f]
                              : g->sum[f]);
        if (x) json_object_set_new(w, k, x);
    }
    json_decref(g->newest);
    g->newest = NULL;
    g->v[g->n++] = w ? w : json_null();
}

/* Takes sample v (newer than since), the next older one: as it is, or into its window. */
static void take(series_got *g, json_t *v)
{
    if (g->step_ms == 0) {
        g->v[g->n++] = json_incref(v);
        return;
    }
    int64_t t = (int64_t)json_integer_value(json_object_get(v, "t"));
    int64_t key = t >= 0 ? t / g->step_ms : (t + 1) / g->step_ms - 1; /* floor */
    if (g->open && key != g->key) close_window(g);
    if (g->n == g->max) {
        g->full = true;
        return;
    }
    if (!g->open) {
        g->open = true;
        g->key = key;
        g->newest = json_incref(v);
        memset(g->sum, 0, sizeof g->sum);
        memset(g->weight, 0, sizeof g->weight);
    }
    double dt = num(v, "dt_ms", 0) > 0 ? num(v, "dt_ms", 0) : 1;
    for (size_t f = 0; f < N_FIELDS; f++) {
        json_t *x = json_object_get(v, series_fields[f].name);
        if (!json_is_number(x)) continue;
        double y = json_number_value(x);
        switch (series_fields[f].how) {
        case NEWEST:
            break;
        case SUM:
            g->sum[f] += y;
            g->weight[f] = 1;
            break;
        case BY_TIME:
            g->sum[f] += y * dt;
            g->weight[f] += dt;
            break;
        case BY_CALLS: {
            double calls = num(v, "calls", 0) * dt;
            if (calls > 0) {
                g->sum[f] += y * calls;
                g->weight[f] += calls;
            }
            break;
        }
        case HIGHEST:
            if (g->weight[f] == 0 || y > g->sum[f]) g->sum[f] = y;
            g->weight[f] = 1;
            break;
        }
    }
}

static bool got_all(const series_got *g)
{
    return g->step_ms ? g->full : g->n == g->max;
}

/* Takes fd's samples newer than since, newest first, until g has all it holds: 0 when it
 * met an older sample (the rest are older still), 1 when it did not, or an error. */
static int series_scan(int fd, int64_t since, series_got *g)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return SHMRPC_ESYS(errno);
    rev r;
    rev_init(&r, fd, st.st_size, 0, SERIES_LINE_MAX);
    const char *line;
    size_t len;
    bool older = false;
    while (!got_all(g) && !older && rev_prev(&r, &line, &len) == 1) {
        /* A file anyone with the log directory may write: bounded before jansson. */
        json_t *v = shmrpc_json_check_depth(line, len, SHMRPC_JSON_MAX_DEPTH) == 0
                        ? json_loadb(line, len, 0, NULL)
                        : NULL;
        json_t *t = json_object_get(v, "t");
        /* Lines are in the order of the samples; one without a t is none: skipped. */
        if (json_is_integer(t) && json_integer_value(t) > since)
            take(g, v);
        else
            older = json_is_integer(t);
        json_decref(v);
    }
    int err = r.err;
    rev_destroy(&r);
    /* A read error ends the scan as the file's start would: what was read is shown. */
    return err == SHMRPC_ENOMEM ? err : older ? 0 : 1;
}

/* Scans path unless it is the file `skip` (a rotation between two opens). */
static int series_file(const char *path, const struct stat *skip, struct stat *seen, int64_t since,
                       series_got *g)
{
    int fd = shmrpc__open_regular(path, O_RDONLY, 0, NULL);
    if (fd < 0) return errno == ENOENT ? 1 : SHMRPC_ESYS(errno);
    int rc = 1;
    if (fstat(fd, seen) != 0)
        rc = SHMRPC_ESYS(errno);
    else if (!skip || seen->st_ino != skip->st_ino || seen->st_dev != skip->st_dev)
        rc = series_scan(fd, since, g);
    close(fd);
    return rc;
}

int web_series(const cfg_service *s, const web_series_req *q, shmrpc_buf *out, web_err *e)
{
    series_got g = {.max = q->max < 1 ? 1 : (size_t)q->max, .step_ms = q->step_ms};
    g.v = calloc(g.max, sizeof *g.v);
    if (!g.v) return fail(e, 500, SHMRPC_ENOMEM, "series");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.series", s->s.log_dir, s->name);
    struct stat cur = {0}, old;
    int rc = series_file(path, NULL, &cur, q->since, &g);
    /* NAME.series began at the last rotation: the older samples are in NAME.series.1. */
    if (rc == 1 && !got_all(&g)) {
        snprintf(path, sizeof path, "%s/%s.series.1", s->s.log_dir, s->name);
        rc = series_file(path, cur.st_ino ? &cur : NULL, &old, q->since, &g);
    }
    close_window(&g); /* the oldest: whole, or as much of it as the files still hold */
    json_t *root = NULL;
    if (rc >= 0) {
        root = json_object();
        for (size_t f = 0; f < N_FIELDS; f++) {
            json_t *col = json_array();
            for (size_t k = g.n; k-- > 0;) {
                json_t *x = json_object_get(g.v[k], series_fields[f].name);
                json_array_append_new(col, json_is_number(x) ? json_incref(x) : json_null());
            }
            json_object_set_new(root, series_fields[f].name, col);
        }
    }
    for (size_t k = 0; k < g.n; k++)
        json_decref(g.v[k]);
    free(g.v);
    if (rc < 0) return fail(e, 500, rc, path);
    return web_dump(root, out, e);
}

/* --- the log --------------------------------------------------------------------------- */

/* A line of the log as a JSON string: a service may write anything, and what is not
 * UTF-8 becomes U+FFFD, a byte at a time. NULL: out of memory. */
static json_t *line_json(const char *p, size_t n)
{
    json_t *v = json_stringn(p, n);
    if (v) return v;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    for (size_t i = 0; i < n;) {
        size_t k = shmrpc__utf8_seq_len(p + i, n - i);
        if (k)
            shmrpc_buf_append(&b, p + i, k);
        else
            shmrpc_buf_append(&b, "\xef\xbf\xbd", 3);
        i += k ? k : 1;
    }
    v = b.err ? NULL : json_stringn(b.len ? (const char *)b.data : "", b.len);
    shmrpc_buf_destroy(&b);
    return v;
}

/* The last WEB_LOG_TAIL_LINES whole lines, at most max_bytes of them, into lines; *end
 * just past them. */
static int log_tail(int fd, off_t size, size_t max_bytes, json_t *lines, off_t *end)
{
    /* Twice the answer's bytes back at most: a longer last line being written, or one
     * longer than an answer, comes in pieces by the follow that starts where this ends. */
    off_t reach = (off_t)max_bytes * 2;
    rev r;
    rev_init(&r, fd, size, size > reach ? size - reach : 0, SIZE_MAX);
    json_t *newest_first = json_array();
    size_t bytes = 0;
    const char *line;
    size_t n;
    int rc = newest_first ? 0 : SHMRPC_ENOMEM;
    while (!rc && json_array_size(newest_first) < WEB_LOG_TAIL_LINES &&
           rev_prev(&r, &line, &n) == 1) {
        if (bytes + n + 1 > max_bytes) break;
        bytes += n + 1;
        json_t *v = line_json(line, n);
        if (!v || json_array_append_new(newest_first, v) != 0) rc = SHMRPC_ENOMEM;
    }
    if (r.err == SHMRPC_ENOMEM) rc = r.err;
    *end = r.whole_end >= 0 ? r.whole_end : r.pos;
    rev_destroy(&r);
    for (size_t k = json_array_size(newest_first); !rc && k-- > 0;)
        if (json_array_append(lines, json_array_get(newest_first, k)) != 0) rc = SHMRPC_ENOMEM;
    json_decref(newest_first);
    return rc;
}

/* The whole lines from after on, at most max_bytes of them; *end just past them. A line
 * longer than max_bytes alone comes in pieces of max_bytes. */
static int log_follow(int fd, off_t after, off_t size, size_t max_bytes, json_t *lines, off_t *end)
{
    *end = after;
    size_t want = (size_t)(size - after) < max_bytes ? (size_t)(size - after) : max_bytes;
    if (want == 0) return 0;
    char *buf = malloc(want);
    if (!buf) return SHMRPC_ENOMEM;
    if (pread_all(fd, buf, want, after) != 0) {
        int rc = SHMRPC_ESYS(errno);
        free(buf);
        return rc;
    }
    char *last = memrchr(buf, '\n', want);
    size_t used = last ? (size_t)(last - buf) + 1 : want == max_bytes ? want : 0;
    int rc = 0;
    for (size_t i = 0; i < used && !rc;) {
        char *nl = memchr(buf + i, '\n', used - i);
        size_t n = nl ? (size_t)(nl - buf) - i : used - i;
        json_t *v = line_json(buf + i, n);
        if (!v || json_array_append_new(lines, v) != 0) rc = SHMRPC_ENOMEM;
        i += n + (nl != NULL);
    }
    free(buf);
    if (!rc) *end = after + (off_t)used;
    return rc;
}

int web_log(const cfg_service *s, const web_log_req *q, shmrpc_buf *out, web_err *e)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.log", s->s.log_dir, s->name);
    json_t *lines = json_array();
    if (!lines) return fail(e, 500, SHMRPC_ENOMEM, path);
    int rc = 0;
    off_t end = 0;
    uint64_t ino = 0;
    bool reset = false;
    int fd = shmrpc__open_regular(path, O_RDONLY, 0, NULL);
    if (fd < 0) {
        /* No log yet: nothing to show; a client that had read one starts again. */
        if (errno != ENOENT) rc = SHMRPC_ESYS(errno);
        reset = q->follow && q->after > 0;
    } else {
        struct stat st;
        if (fstat(fd, &st) != 0) {
            rc = SHMRPC_ESYS(errno);
        } else {
            ino = (uint64_t)st.st_ino;
            /* Another file (renamed away at a rotation) or a shorter one: start again. */
            reset = q->follow && ((q->inode && q->inode != ino) || st.st_size < q->after);
            if (q->follow && !reset)
                rc = log_follow(fd, (off_t)q->after, st.st_size, q->max_bytes, lines, &end);
            else
                rc = log_tail(fd, st.st_size, q->max_bytes, lines, &end);
        }
        close(fd);
    }
    if (rc) {
        json_decref(lines);
        return fail(e, 500, rc, path);
    }
    json_t *root = json_object();
    json_object_set_new(root, "offset", json_integer((json_int_t)end));
    /* A string: an inode may pass 2^53, where a JavaScript number loses digits, and
     * 2^63, where a JSON integer of jansson's would turn negative. */
    char ino_text[24];
    snprintf(ino_text, sizeof ino_text, "%" PRIu64, ino);
    json_object_set_new(root, "inode", json_string(ino_text));
    json_object_set_new(root, "lines", lines);
    json_object_set_new(root, "reset", json_boolean(reset));
    return web_dump(root, out, e);
}
