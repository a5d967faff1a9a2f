/* SPDX-License-Identifier: MIT */
/* shmrpc-bench-map: the shared map against, in the same run, our own RPC key-value service
 * over shm:// (every read a call) and Redis (Debian's redis-server on a Unix socket in a
 * temporary directory, GET/SET unpipelined and pipelined 16 deep), with 16 B and 4 KiB
 * values, 1 reader, 2 readers beside a writer, 1 writer and 2 writers. Prints ops/s per
 * process and the ratios. Usage: shmrpc-bench-map [seconds per row, default 1] [only]:
 * with only, just the rows whose case contains it (e.g. "get 16 B, 1 reader"), so that
 * rows can be measured one at a time on a busy machine. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc.h>

#include "args.h"
#include "map_kv.h"

#define KEYS 1000

static double secs = 1.0;
static const char *only; /* run only the rows whose case contains this */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static char keys[KEYS][16];
static size_t klens[KEYS];

static size_t key_of(int i, char *k)
{
    return (size_t)snprintf(k, 16, "key%06d", i);
}

/* The keys, made once: formatting one costs more than a get. */
static void make_keys(void)
{
    for (int i = 0; i < KEYS; i++)
        klens[i] = key_of(i, keys[i]);
}

/* What the forked workers of a row report. Each count is stored as each op completes: a
 * process that fails or dies keeps what it did (it once showed 0, as the count was stored
 * only at the end, so that a crashing client read as a starved one). The flags every
 * worker polls have the first line; each worker's count and CPU time have a line of their
 * own (the mapping is page-aligned): the count once shared the flags' line, so that every
 * reader's poll of stop took that line from the process that stored its count (the same
 * false sharing that cost shmrpc-bench-queue more than its queue, commit a731aa4). */
struct per_proc {
    _Alignas(64) _Atomic uint64_t ops;
    _Atomic uint64_t cpu_ns; /* CPU time the worker got while it ran */
};
_Static_assert(sizeof(struct per_proc) == 64, "a line per worker");
struct shared {
    _Atomic int go, stop, ready; /* written by the parent (ready: by each worker, once) */
    _Atomic int failed;
    struct per_proc per[4];
};
_Static_assert(offsetof(struct shared, per) == 64, "the counts off the flags' line");
static struct shared *sh;
static int troubles; /* processes of any row that died or failed: the exit status says so */

typedef int (*op_fn)(void *ctx, int i); /* 0 ok */

/* Runs op in a loop until told to stop; the count goes to slot. */
static void worker(op_fn op, void *ctx, int slot)
{
    atomic_fetch_add(&sh->ready, 1);
    while (!atomic_load(&sh->go)) {
    }
    uint64_t n = 0;
    unsigned r = (unsigned)getpid();
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        for (int j = 0; j < 64; j++) {
            r = r * 1103515245u + 12345u;
            if (op(ctx, (int)((r >> 8) % KEYS)) != 0) {
                fprintf(stderr, "# worker %d: %s\n", slot, shmrpc_errmsg());
                atomic_store(&sh->failed, 1);
                return;
            }
            atomic_store_explicit(&sh->per[slot].ops, ++n, memory_order_relaxed);
        }
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    atomic_store(&sh->per[slot].cpu_ns,
                 (uint64_t)((c1.tv_sec - c0.tv_sec) * 1000000000LL + (c1.tv_nsec - c0.tv_nsec)));
}

/* --- the map ---------------------------------------------------------------------------- */

static const char *map_name;
static size_t vlen;
static unsigned char value[4096];

static int map_get(void *ctx, int i)
{
    unsigned char buf[4096];
    size_t len;
    return shmrpc_map_get(ctx, keys[i], klens[i], buf, sizeof buf, &len);
}

static int map_put(void *ctx, int i)
{
    value[0] = (unsigned char)i;
    return shmrpc_map_put(ctx, keys[i], klens[i], value, vlen);
}

/* A process that opens the map and runs op. */
static pid_t map_proc(op_fn op, int slot)
{
    pid_t p = fork();
    if (p == 0) {
        alarm(60);
        shmrpc_map *m;
        if (shmrpc_map_open(&m, map_name, NULL) != 0) _exit(1);
        worker(op, m, slot);
        shmrpc_map_close(m);
        _exit(0);
    }
    return p;
}

/* Of the last row: ops per CPU-second of the readers and of the writers (what the code
 * does with the CPU it got, less noisy than ops/s when other work shares the machine). */
static double rd_cpu, wr_cpu;

/* Runs readers processes of get and writers of put for secs; per-process ops/s of each
 * kind in rd and wr. what names the row's kind in a message about a process that failed. */
static void run_row(const char *what, pid_t (*spawn)(op_fn, int), op_fn get, op_fn put, int readers,
                    int writers, double *rd, double *wr)
{
    memset(sh, 0, sizeof *sh);
    pid_t kids[4];
    int n = 0;
    for (int i = 0; i < readers; i++, n++)
        kids[n] = spawn(get, n);
    for (int i = 0; i < writers; i++, n++)
        kids[n] = spawn(put, n);
    /* Every process connected and waiting (bounded: one that failed never comes). */
    for (int i = 0; i < 1000 && atomic_load(&sh->ready) < n; i++)
        usleep(10000);
    int64_t t0 = now_ns();
    atomic_store(&sh->go, 1);
    usleep((useconds_t)(secs * 1e6));
    atomic_store(&sh->stop, 1);
    double dt = (double)(now_ns() - t0) / 1e9;
    for (int i = 0; i < n; i++) {
        int status = 0;
        waitpid(kids[i], &status, 0);
        if (WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0)) {
            fprintf(stderr,
                    "# %s with %d reader(s) and %d writer(s): %s %d %s %d after %" PRIu64
                    " ops; the row counts those\n",
                    what, readers, writers, i < readers ? "reader" : "writer",
                    i < readers ? i : i - readers,
                    WIFSIGNALED(status) ? "died of signal" : "exited with status",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                    atomic_load(&sh->per[i].ops));
            troubles++;
        }
    }
    *rd = *wr = 0;
    uint64_t ops[2] = {0, 0}, cpu[2] = {0, 0};
    for (int i = 0; i < n; i++) {
        ops[i >= readers] += atomic_load(&sh->per[i].ops);
        cpu[i >= readers] += atomic_load(&sh->per[i].cpu_ns);
    }
    for (int i = 0; i < readers; i++)
        *rd += (double)atomic_load(&sh->per[i].ops) / dt / readers;
    for (int i = readers; i < n; i++)
        *wr += (double)atomic_load(&sh->per[i].ops) / dt / writers;
    rd_cpu = cpu[0] ? (double)ops[0] / ((double)cpu[0] / 1e9) : 0;
    wr_cpu = cpu[1] ? (double)ops[1] / ((double)cpu[1] / 1e9) : 0;
    if (sh->failed) {
        fprintf(stderr, "# an op of a %s row failed (above): its figures are short\n", what);
        troubles++;
    }
}

static void fill_map(void)
{
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.mode = SHMRPC_MAP_CREATE_NEW_OVERWRITE;
    shmrpc_map *m;
    if (shmrpc_map_open(&m, map_name, &o) != 0) {
        fprintf(stderr, "map: %s\n", shmrpc_errmsg());
        exit(1);
    }
    for (int i = 0; i < KEYS; i++)
        map_put(m, i);
    shmrpc_map_close(m);
}

/* --- the RPC key-value service ----------------------------------------------------------- */

static unsigned char store[KEYS][4096];
static size_t store_len[KEYS];

static int index_of(shmrpc_bytes key)
{
    int i = 0;
    for (size_t j = 3; j < key.len; j++)
        i = i * 10 + (key.ptr[j] - '0');
    return i >= 0 && i < KEYS ? i : 0;
}

static int h_get(shmrpc_ctx *ctx, shmrpc_bytes key, shmrpc_bytes *out)
{
    (void)ctx;
    int i = index_of(key);
    *out = shmrpc_bytes_of(store[i], store_len[i]);
    return 0;
}

static int h_put(shmrpc_ctx *ctx, shmrpc_bytes key, shmrpc_bytes v)
{
    (void)ctx;
    int i = index_of(key);
    size_t n = v.len > 4096 ? 4096 : v.len;
    memcpy(store[i], v.ptr, n);
    store_len[i] = n;
    return 0;
}

static const Kv_handlers kv_handlers = {.get = h_get, .put = h_put};
static char kv_addr[64];
static shmrpc_server *server;

static void on_term(int sig)
{
    (void)sig;
    shmrpc_server_stop(server);
}

static pid_t kv_server(void)
{
    pid_t p = fork();
    if (p == 0) {
        alarm(300);
        struct sigaction sa = {.sa_handler = on_term};
        sigaction(SIGTERM, &sa, NULL);
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* stops (and unlinks) with a killed benchmark */
        int rc = shmrpc_server_new(&server, NULL);
        if (rc == 0) rc = shmrpc_server_register(server, &Kv_service, &kv_handlers, NULL);
        if (rc == 0) rc = shmrpc_server_listen(server, kv_addr);
        if (rc == 0) rc = shmrpc_server_serve(server, 1);
        if (rc != 0) fprintf(stderr, "kv server: %s\n", shmrpc_errmsg());
        shmrpc_server_free(server);
        _exit(rc != 0);
    }
    return p;
}

static int kv_get_op(void *ctx, int i)
{
    shmrpc_bytes out;
    return kv_get(ctx, shmrpc_bytes_of((const uint8_t *)keys[i], klens[i]), &out);
}

static int kv_put_op(void *ctx, int i)
{
    value[0] = (unsigned char)i;
    return kv_put(ctx, shmrpc_bytes_of((const uint8_t *)keys[i], klens[i]),
                  shmrpc_bytes_of(value, vlen));
}

static pid_t kv_proc(op_fn op, int slot)
{
    pid_t p = fork();
    if (p == 0) {
        alarm(60);
        shmrpc_client *c;
        int rc = shmrpc_client_new(&c, &Kv_service_info, NULL);
        if (rc == 0) rc = shmrpc_client_connect(c, kv_addr);
        for (int i = 0; rc == SHMRPC_EUNAVAIL && i < 500; i++) {
            usleep(10000);
            rc = shmrpc_client_connect(c, kv_addr);
        }
        if (rc != 0) {
            fprintf(stderr, "kv client: %s\n", shmrpc_errmsg());
            _exit(1);
        }
        worker(op, c, slot);
        shmrpc_client_free(c);
        _exit(0);
    }
    return p;
}

/* --- Redis ------------------------------------------------------------------------------- */

static char redis_sock[96];
static int depth = 1; /* commands in flight per round trip */

static int redis_connect(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", redis_sock);
    for (int i = 0; i < 500; i++) {
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
        usleep(10000);
    }
    close(fd);
    return -1;
}

/* Reads n replies (simple strings or bulk strings) from fd. */
static int redis_replies(int fd, int n)
{
    static char buf[1 << 20];
    static size_t have, pos;
    while (n > 0) {
        /* one reply: a line, and for '$' a body */
        char *nl;
        while (!(nl = memchr(buf + pos, '\n', have - pos))) {
            if (pos == have) pos = have = 0;
            if (have == sizeof buf) return -1;
            ssize_t got = read(fd, buf + have, sizeof buf - have);
            if (got <= 0) return -1;
            have += (size_t)got;
        }
        char kind = buf[pos];
        size_t line_end = (size_t)(nl - buf) + 1;
        long body = kind == '$' ? atol(buf + pos + 1) : -1;
        if (kind == '-') return -1;
        size_t need = line_end + (body >= 0 ? (size_t)body + 2 : 0);
        while (have < need) {
            if (pos > 0) {
                memmove(buf, buf + pos, have - pos);
                have -= pos;
                need -= pos;
                line_end -= pos;
                pos = 0;
            }
            ssize_t got = read(fd, buf + have, sizeof buf - have);
            if (got <= 0) return -1;
            have += (size_t)got;
        }
        pos = need;
        n--;
    }
    return 0;
}

static int redis_op(void *ctx, int i, bool put)
{
    int fd = *(int *)ctx;
    static char cmd[16 * 4200];
    size_t len = 0;
    for (int d = 0; d < depth; d++) {
        char k[16];
        size_t kl = key_of((i + d) % KEYS, k);
        if (put) {
            len += (size_t)sprintf(cmd + len, "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%zu\r\n", kl, k,
                                   vlen);
            memset(cmd + len, 'v', vlen);
            len += vlen;
            memcpy(cmd + len, "\r\n", 2);
            len += 2;
        } else {
            len += (size_t)sprintf(cmd + len, "*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n", kl, k);
        }
    }
    if (write(fd, cmd, len) != (ssize_t)len) return -1;
    return redis_replies(fd, depth);
}

static int redis_get(void *ctx, int i)
{
    return redis_op(ctx, i, false);
}

static int redis_set(void *ctx, int i)
{
    return redis_op(ctx, i, true);
}

static pid_t redis_proc(op_fn op, int slot)
{
    pid_t p = fork();
    if (p == 0) {
        alarm(60);
        int fd = redis_connect();
        if (fd < 0) _exit(1);
        worker(op, &fd, slot);
        _exit(0);
    }
    return p;
}

static pid_t start_redis(char *dir)
{
    if (access("/usr/bin/redis-server", X_OK) != 0) return -1;
    snprintf(redis_sock, sizeof redis_sock, "%s/redis.sock", dir);
    pid_t p = fork();
    if (p == 0) {
        /* A benchmark killed before its end must not leave Redis running. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int null = open("/dev/null", 1);
        dup2(null, 1);
        execl("/usr/bin/redis-server", "redis-server", "--port", "0", "--unixsocket", redis_sock,
              "--save", "", "--appendonly", "no", "--dir", dir, (char *)NULL);
        _exit(127);
    }
    return p;
}

/* --- the table ----------------------------------------------------------------------------- */

static void row(const char *what, double map, double kv, double r1, double r16, double cpu)
{
    printf("%-28s %12.0f %12.0f %12.0f %12.0f   %8.1fx %8.1fx %12.0f", what, map, kv, r1, r16,
           kv > 0 ? map / kv : 0, r16 > 0 ? map / r16 : 0, cpu);
    printf("\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static const char usage[] = "usage: shmrpc-bench-map [SECONDS-PER-ROW [ONLY]]\n"
                                "  ONLY: run just the rows whose case contains it\n";
    int rc = bench_args_rows(argc, argv, usage, &secs, &only);
    if (rc >= 0) return rc;
    make_keys();
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    static char name[64];
    snprintf(name, sizeof name, "bench-map-%d", (int)getpid());
    map_name = name;
    snprintf(kv_addr, sizeof kv_addr, "shm://shmrpc-bench-kv-%d", (int)getpid());
    char dir[] = "/tmp/shmrpc-bench-map-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    pid_t redis = start_redis(dir);
    pid_t kv = kv_server();
    printf(
        "# ops/s per process, %g s per row, %d keys; map/rpc and map/redis16 ratios; map/cpu-s:\n"
        "# the map's ops per CPU-second its processes got (less noisy on a shared machine)\n",
        secs, KEYS);
    printf("%-28s %12s %12s %12s %12s   %9s %9s %12s\n", "case", "map", "rpc-shm", "redis",
           "redis-p16", "map/rpc", "map/r16", "map/cpu-s");
    size_t sizes[2] = {16, 4096};
    for (int s = 0; s < 2; s++) {
        vlen = sizes[s];
        memset(value, 'v', vlen);
        fill_map();
        double m[4][2], k[4][2], r1[4][2], r16[4][2], mc[4][2];
        memset(k, 0, sizeof k);
        memset(r1, 0, sizeof r1);
        memset(r16, 0, sizeof r16);
        /* the rows: 1 reader; 2 readers + 1 writer; 1 writer; 2 writers */
        int rd[4] = {1, 2, 0, 0}, wr[4] = {0, 1, 1, 2};
        const char *names[4] = {"1 reader", "2 readers + 1 writer", "1 writer", "2 writers"};
        char label[64];
        bool run[4];
        char notes[4][128] = {"", "", "", ""}; /* what the map did during each row */
        for (int c = 0; c < 4; c++) {
            char get[64], put[64];
            snprintf(get, sizeof get, "get %zu B, %s", vlen, names[c]);
            snprintf(put, sizeof put, "put %zu B, %s", vlen, names[c]);
            run[c] = !only || (rd[c] && strstr(get, only)) || (wr[c] && strstr(put, only));
        }
        memset(m, 0, sizeof m);
        memset(mc, 0, sizeof mc);
        for (int c = 0; c < 4; c++) {
            if (!run[c]) continue;
            shmrpc_map *watch = NULL;
            shmrpc_map_info i0, i1;
            if (shmrpc_map_open(&watch, map_name, NULL) != 0 ||
                shmrpc_map_get_info(watch, &i0) != 0)
                memset(&i0, 0, sizeof i0);
            run_row("map", map_proc, map_get, map_put, rd[c], wr[c], &m[c][0], &m[c][1]);
            mc[c][0] = rd_cpu;
            mc[c][1] = wr_cpu;
            if (watch && shmrpc_map_get_info(watch, &i1) == 0)
                snprintf(notes[c], sizeof notes[c],
                         "%" PRIu64 " growths, %" PRIu64
                         " MiB of entry space, %.1f%% of writes found the lock held",
                         i1.growths - i0.growths, i1.bytes >> 20,
                         i1.writes > i0.writes ? 100.0 * (double)(i1.lock_waits - i0.lock_waits) /
                                                     (double)(i1.writes - i0.writes)
                                               : 0.0);
            shmrpc_map_close(watch);
            run_row("rpc-shm", kv_proc, kv_get_op, kv_put_op, rd[c], wr[c], &k[c][0], &k[c][1]);
            if (redis > 0) {
                depth = 1;
                run_row("redis", redis_proc, redis_get, redis_set, rd[c], wr[c], &r1[c][0],
                        &r1[c][1]);
                depth = 16;
                run_row("redis-p16", redis_proc, redis_get, redis_set, rd[c], wr[c], &r16[c][0],
                        &r16[c][1]);
                for (int x = 0; x < 2; x++)
                    r16[c][x] *= 16; /* each op was 16 commands */
            }
        }
        for (int c = 0; c < 4; c++) {
            if (!run[c]) continue;
            if (rd[c]) {
                snprintf(label, sizeof label, "get %zu B, %s", vlen, names[c]);
                row(label, m[c][0], k[c][0], r1[c][0], r16[c][0], mc[c][0]);
            }
            if (wr[c]) {
                snprintf(label, sizeof label, "put %zu B, %s%s", vlen, names[c],
                         rd[c] ? " (writer)" : "");
                row(label, m[c][1], k[c][1], r1[c][1], r16[c][1], mc[c][1]);
            }
            if (wr[c]) printf("#   the map during it: %s\n", notes[c]);
        }
        if (run[0] && run[1])
            printf("# readers beside a writer at %zu B: %.2fx slower than alone (%.2fx per "
                   "CPU-second)\n",
                   vlen, m[1][0] > 0 ? m[0][0] / m[1][0] : 0,
                   mc[1][0] > 0 ? mc[0][0] / mc[1][0] : 0);
    }
    if (redis > 0) {
        kill(redis, SIGTERM);
        waitpid(redis, NULL, 0);
    } else {
        printf("# redis-server not installed: its columns are 0 (scripts/deps.sh installs it)\n");
    }
    kill(kv, SIGTERM);
    waitpid(kv, NULL, 0);
    shmrpc_map_unlink_quiet(name);
    unlink(redis_sock);
    rmdir(dir);
    if (troubles) fprintf(stderr, "# %d processes of the rows above failed or died\n", troubles);
    return troubles ? 1 : 0;
}
