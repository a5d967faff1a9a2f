/* SPDX-License-Identifier: MIT */
/* Processes for the transport tests (see procs.h). */
#include "procs.h"

#include <dirent.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static shmrpc_server *child_server;

static void on_term(int sig)
{
    (void)sig;
    shmrpc_server_stop(child_server);
}

static void on_scale(int sig, siginfo_t *info, void *ctx)
{
    (void)sig, (void)ctx;
    shmrpc_server_set_workers(child_server, info->si_value.sival_int);
}

int test_scale_server(pid_t pid, int workers)
{
    union sigval v = {.sival_int = workers};
    return sigqueue(pid, SIGRTMIN, v);
}

int64_t test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int test_raw_connect(int port, int wait_ms)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int64_t until = test_now_ms() + wait_ms;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return -1;
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
        close(fd);
        if (test_now_ms() > until) return -1;
        usleep(10000);
    }
}

bool test_raw_recv(int fd, uint8_t *p, size_t n, int64_t deadline)
{
    while (n) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - test_now_ms();
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0) return false;
        ssize_t k = recv(fd, p, n, 0);
        if (k <= 0) return false;
        p += k, n -= (size_t)k;
    }
    return true;
}

shmrpc_client *test_connect(const shmrpc_service_info *info, const shmrpc_client_opts *opts,
                            const char *addr, int *rc)
{
    shmrpc_client *c = NULL;
    *rc = shmrpc_client_new(&c, info, opts);
    if (*rc) return NULL;
    *rc = shmrpc_client_connect(c, addr);
    for (int i = 0; *rc == SHMRPC_EUNAVAIL && i < 500; i++) {
        usleep(10000);
        *rc = shmrpc_client_connect(c, addr);
    }
    return c;
}

/* The servers started and not reaped yet: a test that fails between its start and its stop
 * leaves its server to stop_left, at exit, which stops it as test_stop_server would (so a
 * shm:// server removes its segments). A test process that dies takes them with it
 * (PR_SET_PDEATHSIG). */
enum { MAX_STARTED = 64 };
static pid_t started[MAX_STARTED];
static int n_started;
static bool stop_left_due;

static void forget(pid_t pid)
{
    for (int i = 0; i < n_started; i++)
        if (started[i] == pid) started[i] = started[--n_started];
}

static void stop_left(void)
{
    while (n_started) {
        pid_t pid = started[--n_started];
        /* Only a child not reaped yet: a pid a test reaped itself may name another process. */
        if (waitpid(pid, NULL, WNOHANG) != 0) continue;
        fprintf(stderr, "test: stopping server %d, which its test did not stop\n", (int)pid);
        kill(pid, SIGTERM);
        test_reap(pid, 5000);
    }
}

pid_t test_start_server(const test_server *ts)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid > 0) {
        if (!stop_left_due) stop_left_due = atexit(stop_left) == 0;
        if (n_started < MAX_STARTED) started[n_started++] = pid;
    }
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1); /* the test died before the line above */
    alarm(120);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    struct sigaction scale = {.sa_sigaction = on_scale, .sa_flags = SA_SIGINFO};
    sigaction(SIGRTMIN, &scale, NULL);
    if (ts->prepare) ts->prepare();
    shmrpc_server_opts o;
    shmrpc_server_opts_init(&o);
    if (ts->max_msg) o.max_msg_bytes = ts->max_msg;
    if (ts->tcp) o.tcp = *ts->tcp;
    int rc = shmrpc_server_new(&child_server, &o);
    if (rc == 0 && ts->svc) rc = shmrpc_server_register(child_server, ts->svc, ts->handlers, NULL);
    if (rc == 0 && ts->configure) rc = ts->configure(child_server);
    if (rc == 0) rc = shmrpc_server_listen(child_server, ts->addr);
    if (rc == 0) rc = shmrpc_server_serve(child_server, ts->workers);
    if (rc != 0) fprintf(stderr, "server: %s\n", shmrpc_errmsg());
    shmrpc_server_free(child_server);
    _exit(rc == 0 ? 0 : 1);
}

int test_reap(pid_t pid, int ms)
{
    forget(pid);
    int status = 0;
    int64_t until = test_now_ms() + ms;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (test_now_ms() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        usleep(2000);
    }
    return status;
}

bool test_stop_server(pid_t pid)
{
    kill(pid, SIGTERM);
    int status = test_reap(pid, 5000);
    return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int test_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

void test_names_path(char *out, size_t cap, const char *name)
{
    char dir[256] = "/nonexistent";
    if (shmrpc_names_dir(dir, sizeof dir) != 0)
        fprintf(stderr, "shmrpc_names_dir: %s\n", shmrpc_errmsg());
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Entries of dir named prefix exactly, or prefix and ':' and more. */
/* The files of dir named prefix, or prefix and ':' and more: how many, each removed first
 * if remove. */
static int count_named(const char *dir, const char *prefix, bool remove)
{
    size_t n = strlen(prefix);
    DIR *d = opendir(dir);
    int count = 0;
    char path[512];
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, prefix, n) != 0 || (e->d_name[n] != '\0' && e->d_name[n] != ':'))
            continue;
        count++;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (remove) unlink(path);
    }
    if (d) closedir(d);
    return count;
}

/* The files of the shm:// service at addr (test_shm_segments), each removed if remove. */
static int shm_named(const char *addr, bool remove)
{
    if (strncmp(addr, "shm://", 6) != 0) return 0;
    char prefix[128], dir[256];
    snprintf(prefix, sizeof prefix, "shmrpc:%s", addr + 6);
    test_names_path(dir, sizeof dir, ".");
    return count_named("/dev/shm", prefix, remove) + count_named(dir, prefix, remove);
}

int test_shm_segments(const char *addr)
{
    return shm_named(addr, false);
}

void test_shm_forget(const char *addr)
{
    if (strncmp(addr, "shm://", 6) != 0) return;
    shm_named(addr, true);
    char name[160], path[400];
    snprintf(name, sizeof name, "shmrpc.stats.shm.%s", addr + 6);
    test_names_path(path, sizeof path, name);
    unlink(path);
}

void test_tcp_stats_forget(const char *addr)
{
    if (strncmp(addr, "tcp://", 6) != 0) return;
    char name[160], path[400];
    snprintf(name, sizeof name, "shmrpc.stats.tcp.%s", addr + 6);
    test_names_path(path, sizeof path, name);
    unlink(path);
}

struct test_stall_probe {
    pthread_t thread;
    atomic_bool stop;
    _Atomic int64_t worst_us;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *stall_probe(void *arg)
{
    test_stall_probe *p = arg;
    while (!atomic_load(&p->stop)) {
        int64_t t0 = now_us();
        usleep(1000);
        int64_t over = now_us() - t0 - 1000;
        if (over > atomic_load(&p->worst_us)) atomic_store(&p->worst_us, over);
    }
    return NULL;
}

test_stall_probe *test_stall_probe_start(void)
{
    test_stall_probe *p = calloc(1, sizeof *p);
    if (p && pthread_create(&p->thread, NULL, stall_probe, p) != 0) {
        free(p);
        p = NULL;
    }
    return p;
}

int64_t test_stall_probe_stop(test_stall_probe *p)
{
    if (!p) return 0;
    atomic_store(&p->stop, true);
    pthread_join(p->thread, NULL);
    int64_t worst = atomic_load(&p->worst_us);
    free(p);
    return worst;
}
