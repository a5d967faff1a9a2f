/* SPDX-License-Identifier: MIT */
/* SHMRPC_FAULTS (docs/faults.md): its entries parsed and checked when a server or client
 * is made, bound to the service's methods, and drawn at each call of a method named. */
#include "rpc/faults.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/wait.h"

#define ALL UINT32_MAX /* an entry's id for "*" */

typedef struct entry {
    shmrpc__fault f;
    int index;     /* its place in SHMRPC_FAULTS, from 1, for messages */
    char *service; /* "Service" of "Service.method", or NULL */
    char *method;  /* "*" or a method's name */
    uint32_t id;   /* once bound: the method's index, or ALL */
} entry;

struct shmrpc__faults {
    int n;
    entry *e;
    uint64_t seed;
    bool seeded;            /* SHMRPC_FAULTS_SEED: the same draws in every process */
    _Atomic uint64_t drawn; /* draws made, the counter the next draw mixes */
};

/* splitmix64's step: a counter turned into 64 bits that look random. */
static uint64_t mix(uint64_t z)
{
    z += UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static bool is(const char *p, size_t n, const char *word)
{
    return n == strlen(word) && memcmp(p, word, n) == 0;
}

/* The status named by p[0..n), with or without its SHMRPC_ prefix; 0 when none. */
static int status_named(const char *p, size_t n)
{
    if (n > 7 && memcmp(p, "SHMRPC_", 7) == 0) p += 7, n -= 7;
    for (int rc = -1; shmrpc__status_known(rc); rc--)
        if (is(p, n, shmrpc_status_name(rc) + 7)) return rc;
    return 0;
}

/* A whole decimal number in p[0..n) into *v; false when it is not one. */
static bool number(const char *p, size_t n, bool real, double *v)
{
    char tmp[32];
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    *v = real ? strtod(tmp, &end) : (double)strtoll(tmp, &end, 10);
    return errno == 0 && *end == '\0' && isfinite(*v) && (real || (tmp[0] >= '0' && tmp[0] <= '9'));
}

/* Parses one entry (text, already trimmed) into e, or says why not in err. */
static int parse(entry *e, const char *text, int index, shmrpc__fault_side *side, shmrpc_buf *err)
{
    const char *field[5];
    size_t len[5];
    int n = 0;
    for (const char *p = text;; n++) {
        const char *colon = strchr(p, ':');
        if (n == 5) break;
        field[n] = p;
        len[n] = colon ? (size_t)(colon - p) : strlen(p);
        if (!colon) {
            n++;
            break;
        }
        p = colon + 1;
    }
#define BAD(...)                                                                                   \
    do {                                                                                           \
        shmrpc__msg_set(err, "SHMRPC_FAULTS entry %d ('%s'): ", index, text);                      \
        shmrpc__msg_append(err, __VA_ARGS__);                                                      \
        return SHMRPC_EINVAL;                                                                      \
    } while (0)
    if (n < 3 || n > 4) BAD("expected SIDE:METHOD:ACTION or SIDE:METHOD:ACTION:rate=R");
    if (is(field[0], len[0], "server"))
        *side = SHMRPC__FAULT_SERVER;
    else if (is(field[0], len[0], "client"))
        *side = SHMRPC__FAULT_CLIENT;
    else
        BAD("the side '%.*s' is neither 'server' nor 'client'", (int)len[0], field[0]);
    if (len[1] == 0) BAD("no method (a method's name, Service.method, or *)");
    const char *dot = memchr(field[1], '.', len[1]);
    if (dot && (dot == field[1] || dot + 1 == field[1] + len[1]))
        BAD("'%.*s' is not Service.method", (int)len[1], field[1]);
    if (dot) {
        e->service = strndup(field[1], (size_t)(dot - field[1]));
        e->method = strndup(dot + 1, len[1] - (size_t)(dot + 1 - field[1]));
    } else {
        e->method = strndup(field[1], len[1]);
    }
    if ((dot && !e->service) || !e->method) return SHMRPC_ENOMEM;

    const char *a = field[2];
    size_t an = len[2];
    double v;
    if (an > 7 && memcmp(a, "status=", 7) == 0) {
        e->f.action = SHMRPC__FAULT_STATUS;
        e->f.status = status_named(a + 7, an - 7);
        if (e->f.status == 0)
            BAD("'%.*s' is no status (SHMRPC_EUNAVAIL, EUNAVAIL, ...: shmrpc_status_name's "
                "names but SHMRPC_OK)",
                (int)(an - 7), a + 7);
    } else if (an > 9 && memcmp(a, "delay_ms=", 9) == 0) {
        e->f.action = SHMRPC__FAULT_DELAY;
        if (!number(a + 9, an - 9, false, &v) || v < 0 || v > SHMRPC__FAULT_DELAY_MAX)
            BAD("the delay '%.*s' is not a whole number of ms from 0 to %d", (int)(an - 9), a + 9,
                SHMRPC__FAULT_DELAY_MAX);
        e->f.delay_ms = (int64_t)v;
    } else if (is(a, an, "kill")) {
        if (*side == SHMRPC__FAULT_CLIENT)
            BAD("kill is a server's action (the worker serving the call dies)");
        e->f.action = SHMRPC__FAULT_KILL;
    } else {
        BAD("unknown action '%.*s' (status=NAME, delay_ms=N or kill)", (int)an, a);
    }

    e->f.below = UINT64_MAX;
    if (n == 4) {
        if (len[3] < 5 || memcmp(field[3], "rate=", 5) != 0)
            BAD("'%.*s' is not rate=R", (int)len[3], field[3]);
        if (!number(field[3] + 5, len[3] - 5, true, &v) || !(v > 0 && v <= 1))
            BAD("the rate '%.*s' is not a number above 0 and at most 1", (int)len[3] - 5,
                field[3] + 5);
        double scaled = v * 18446744073709551616.0; /* 2^64 */
        if (scaled < 18446744073709551615.0) e->f.below = (uint64_t)scaled;
    }
#undef BAD
    e->index = index;
    e->f.text = text;
    return 0;
}

void shmrpc__faults_free(shmrpc__faults *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) {
        free(f->e[i].service);
        free(f->e[i].method);
        free((char *)f->e[i].f.text);
    }
    free(f->e);
    free(f);
}

static int seed(shmrpc__faults *f, shmrpc_buf *err)
{
    const char *v = getenv("SHMRPC_FAULTS_SEED");
    if (!v) {
        f->seed = (uint64_t)shmrpc__now_ns() ^ ((uint64_t)getpid() << 32);
        return 0;
    }
    char *end;
    errno = 0;
    f->seed = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-') {
        shmrpc__msg_set(err, "SHMRPC_FAULTS_SEED '%s' is not a whole number", v);
        return SHMRPC_EINVAL;
    }
    f->seeded = true;
    return 0;
}

int shmrpc__faults_load(shmrpc__faults **out, shmrpc__fault_side side, shmrpc_buf *err)
{
    *out = NULL;
    const char *v = getenv("SHMRPC_FAULTS");
    if (!v) return 0;
    shmrpc__faults *f = calloc(1, sizeof *f);
    char *copy = strdup(v);
    int rc = f && copy ? 0 : SHMRPC_ENOMEM;
    int index = 0;
    for (char *next = copy, *p; rc == 0 && next;) {
        p = next;
        next = strchr(p, ';');
        if (next) *next++ = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strlen(p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            p[--n] = '\0';
        if (n == 0) continue; /* an empty entry: "a;;b", or a ';' at the end */
        index++;
        entry e = {0};
        shmrpc__fault_side its;
        if (!(e.f.text = strdup(p))) rc = SHMRPC_ENOMEM;
        if (rc == 0) rc = parse(&e, e.f.text, index, &its, err);
        entry *grown =
            rc == 0 && its == side ? realloc(f->e, (size_t)(f->n + 1) * sizeof *f->e) : NULL;
        if (grown) {
            f->e = grown;
            f->e[f->n++] = e;
            continue;
        }
        if (rc == 0 && its == side) rc = SHMRPC_ENOMEM;
        free(e.service);
        free(e.method);
        free((char *)e.f.text);
    }
    free(copy);
    if (rc == 0 && f->n > 0) rc = seed(f, err);
    if (rc == SHMRPC_ENOMEM) shmrpc__msg_set(err, "out of memory reading SHMRPC_FAULTS");
    if (rc || f->n == 0) {
        shmrpc__faults_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

/* Whether e is for another service than info (or info has no methods: shmrpcctl's probe). */
static bool elsewhere(const entry *e, const shmrpc_service_info *info)
{
    return (e->service && strcmp(e->service, info->name) != 0) || info->n_methods == 0;
}

/* e's method id in info, ALL for "*", or info->n_methods when there is none such. */
static uint32_t method_id(const entry *e, const shmrpc_service_info *info)
{
    if (strcmp(e->method, "*") == 0) return ALL;
    uint32_t id = 0;
    while (id < info->n_methods && strcmp(info->methods[id].name, e->method) != 0)
        id++;
    return id;
}

int shmrpc__faults_bind(shmrpc__faults **fp, const shmrpc_service_info *info, shmrpc_buf *err)
{
    shmrpc__faults *f = *fp;
    if (!f) return 0;
    for (int i = 0; i < f->n; i++) { /* every name checked before anything changes */
        entry *e = &f->e[i];
        if (elsewhere(e, info) || method_id(e, info) != info->n_methods) continue;
        shmrpc__msg_set(err,
                        "SHMRPC_FAULTS entry %d ('%s'): service '%s' has no method '%s' (it has:",
                        e->index, e->f.text, info->name, e->method);
        for (uint32_t k = 0; k < info->n_methods; k++)
            shmrpc__msg_append(err, "%s %s", k ? "," : "", info->methods[k].name);
        shmrpc__msg_append(err, "; another service's is Service.method)");
        return SHMRPC_EINVAL;
    }
    int kept = 0;
    for (int i = 0; i < f->n; i++) {
        entry *e = &f->e[i];
        if (elsewhere(e, info)) {
            free(e->service);
            free(e->method);
            free((char *)e->f.text);
            continue;
        }
        e->id = method_id(e, info);
        f->e[kept++] = *e;
    }
    f->n = kept;
    if (kept == 0) {
        shmrpc__faults_free(f);
        *fp = NULL;
    }
    return 0;
}

bool shmrpc__faults_kills(const shmrpc__faults *f)
{
    for (int i = 0; f && i < f->n; i++)
        if (f->e[i].f.action == SHMRPC__FAULT_KILL) return true;
    return false;
}

const shmrpc__fault *shmrpc__faults_draw(shmrpc__faults *f, uint32_t id)
{
    for (int i = 0; i < f->n; i++) {
        const entry *e = &f->e[i];
        if (e->id != id && e->id != ALL) continue;
        if (e->f.below == UINT64_MAX) return &e->f;
        /* Forked workers share the counter they were forked with: unseeded, each mixes its
         * pid in so that they draw apart; seeded, each draws the same sequence. */
        uint64_t n = atomic_fetch_add_explicit(&f->drawn, 1, memory_order_relaxed);
        uint64_t x = mix(f->seed ^ mix(n) ^ (f->seeded ? 0 : (uint64_t)getpid() << 40));
        if (x < e->f.below) return &e->f;
    }
    return NULL;
}

void shmrpc__faults_sleep(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
