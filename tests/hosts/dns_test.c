/* SPDX-License-Identifier: MIT */
/* A DNS name with several addresses (issue 17, docs/hosts-test.md): in private mount and
 * network namespaces of its own (root), the test puts a hosts file of its own over
 * /etc/hosts (a bind mount that only its namespace sees: the machine's file is never
 * touched) naming svc.shmrpc-dns.test at the addresses of three servers, each in a network
 * namespace of its own behind a veth pair. It checks that a client of
 * tcp://svc.shmrpc-dns.test:PORT spreads its calls over the addresses, goes on after the
 * SIGKILL of one, and picks up a changed hosts file after tcp.resolve_interval_ms. Where the
 * namespaces cannot be made it fails and says why, never skips. Every wait is bounded. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "calls_handlers.h"
#include "port.h"
#include "procs.h"

#define NAME "svc.shmrpc-dns.test"
#define N 3
#define RESOLVE_MS 300

static pid_t servers[N];
static char hosts_path[64];
static int port;
static const char secret[] = "dns-test-secret-of-32-bytes-xxxx";

static void cleanup(void)
{
    char addr[64];
    for (int i = 0; i < N; i++) {
        if (servers[i] <= 0) continue;
        kill(servers[i], SIGKILL);
        waitpid(servers[i], NULL, 0);
        servers[i] = 0;
        snprintf(addr, sizeof addr, "tcp://10.78.%d.2:%d", i + 1, port);
        test_tcp_stats_forget(addr);
    }
    if (hosts_path[0]) unlink(hosts_path);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dns_test: FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    cleanup();
    exit(1);
}

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0) fail("'%s' failed (status %d)", cmd, rc);
}

/* The hosts file: NAME at the addresses of the servers in mask (bit i: server i). */
static void write_hosts(unsigned mask)
{
    int fd = open(hosts_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) fail("cannot write %s: %s", hosts_path, strerror(errno));
    char text[512];
    int n = snprintf(text, sizeof text, "127.0.0.1 localhost\n");
    for (int i = 0; i < N; i++)
        if (mask & (1u << i))
            n += snprintf(text + n, sizeof text - (size_t)n, "10.78.%d.2 %s\n", i + 1, NAME);
    if (write(fd, text, (size_t)n) != n) fail("cannot write %s: %s", hosts_path, strerror(errno));
    close(fd);
}

/* In each server's child, before it listens: a network namespace of its own, whose eth0
 * the parent makes (the other end of a veth in the test's namespace). */
static int child_index, ready[2], go[2];

static void server_ns(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a killed test leaves no server behind */
    if (unshare(CLONE_NEWNET) != 0) {
        fprintf(stderr, "dns_test: server %d: unshare(CLONE_NEWNET): %s\n", child_index,
                strerror(errno));
        _exit(3);
    }
    char c = 'r';
    if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) _exit(4); /* alarm(120) */
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "ip link set lo up && ip addr add 10.78.%d.2/24 dev eth0 && ip link set eth0 up",
             child_index + 1);
    if (system(cmd) != 0) _exit(5);
}

static void start(int i, const shmrpc_tcp_opts *tcp)
{
    char addr[64];
    snprintf(addr, sizeof addr, "tcp://10.78.%d.2:%d", i + 1, port);
    if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0) fail("pipe");
    child_index = i;
    test_server ts = {&Calls_service, &calls_test_handlers, addr, 0, 0, server_ns, tcp, NULL};
    servers[i] = test_start_server(&ts);
    if (servers[i] <= 0) fail("fork");
    struct pollfd p = {.fd = ready[0], .events = POLLIN};
    char c;
    if (poll(&p, 1, 10000) != 1 || read(ready[0], &c, 1) != 1)
        fail("server %d did not make its network namespace (see its message above)", i);
    run("ip link add dns%d type veth peer name eth0 netns %d", i + 1, (int)servers[i]);
    run("ip addr add 10.78.%d.1/24 dev dns%d && ip link set dns%d up", i + 1, i + 1, i + 1);
    if (write(go[1], "g", 1) != 1) fail("pipe");
    close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
}

/* The server that answered a nap: serving in place, its pid is the server's. */
static int which(int32_t pid)
{
    for (int i = 0; i < N; i++)
        if (servers[i] == pid) return i;
    return -1;
}

/* n calls; how many each server answered, and the failures. */
static int calls(shmrpc_client *c, int n, int *per, int *failed)
{
    memset(per, 0, sizeof(int) * N);
    *failed = 0;
    int last_rc = 0;
    for (int k = 0; k < n; k++) {
        int32_t pid = 0;
        shmrpc_client_next_timeout(c, 2000);
        int rc = calls_nap(c, 0, &pid);
        if (rc) {
            (*failed)++;
            last_rc = rc;
            if (rc != SHMRPC_EPEERDIED && rc != SHMRPC_EUNAVAIL)
                fail("a call failed with %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
            continue;
        }
        int s = which(pid);
        if (s < 0) fail("an answer from pid %d, no server of the test", (int)pid);
        per[s]++;
    }
    return last_rc;
}

static int resolved(void)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(NAME, NULL, &hints, &res) != 0) return 0;
    int n = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        n++;
    freeaddrinfo(res);
    return n;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    alarm(240);
    if (geteuid() != 0) fail("needs root to make mount and network namespaces; uid %d", geteuid());
    if (calls_shared_map() != 0) fail("mmap");
    /* Namespaces of its own: what it mounts and the links it makes die with it. */
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) != 0)
        fail("unshare(CLONE_NEWNS | CLONE_NEWNET): %s", strerror(errno));
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        fail("cannot make the mounts private: %s", strerror(errno));
    snprintf(hosts_path, sizeof hosts_path, "/tmp/shmrpc-dns-hosts.XXXXXX");
    int fd = mkstemp(hosts_path);
    if (fd < 0) fail("mkstemp: %s", strerror(errno));
    close(fd);
    write_hosts(0x3);
    if (mount(hosts_path, "/etc/hosts", NULL, MS_BIND, NULL) != 0)
        fail("cannot bind a hosts file over /etc/hosts: %s", strerror(errno));
    run("ip link set lo up");
    if (resolved() != 2) fail("%s resolves to %d addresses, not 2", NAME, resolved());

    port = test_free_port();
    shmrpc_tcp_opts tcp = {.secret = secret, .secret_len = sizeof secret - 1};
    for (int i = 0; i < N; i++)
        start(i, &tcp);

    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp = tcp;
    /* Every server serves before the client of the name connects: one that did not listen
     * yet would fail its first connect and be left out for the probe interval, longer than
     * 40 quick calls take (seen under ASan on a busy machine: 40 and 0 calls). */
    for (int i = 0; i < N; i++) {
        char at[64];
        snprintf(at, sizeof at, "tcp://10.78.%d.2:%d", i + 1, port);
        int rc;
        shmrpc_client *direct = test_connect(&Calls_service_info, &o, at, &rc);
        if (rc)
            fail("server %d does not serve at %s: %s: %s", i, at, shmrpc_strerror(rc),
                 shmrpc_errmsg());
        shmrpc_client_free(direct);
    }
    o.tcp.resolve_interval_ms = RESOLVE_MS;
    o.tcp.probe_interval_ms = 50;
    char addr[128];
    snprintf(addr, sizeof addr, "tcp://%s:%d", NAME, port);
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, &o, addr, &rc);
    if (!c || rc) fail("connect %s: %s: %s", addr, shmrpc_strerror(rc), shmrpc_errmsg());

    /* Spread: both addresses take calls, the third (not named) none. */
    int per[N], failed;
    calls(c, 40, per, &failed);
    printf("two addresses: %d and %d calls (third %d), %d failed\n", per[0], per[1], per[2],
           failed);
    if (failed || per[0] == 0 || per[1] == 0 || per[2] != 0)
        fail("40 calls were not spread over the two addresses");

    /* The death of one: calls go on at the other. */
    kill(servers[0], SIGKILL);
    waitpid(servers[0], NULL, 0);
    servers[0] = 0;
    snprintf(addr, sizeof addr, "tcp://10.78.1.2:%d", port);
    test_tcp_stats_forget(addr);
    rc = calls(c, 40, per, &failed);
    printf("after a SIGKILL: %d calls at the other, %d failed%s%s\n", per[1], failed,
           failed ? ", the last with " : "", failed ? shmrpc_strerror(rc) : "");
    if (failed > 1 || per[1] < 39 || per[2] != 0)
        fail("after the SIGKILL of one, the calls did not go to the other");

    /* A changed hosts file: the name's new address takes calls within the interval. */
    write_hosts(0x6);
    int64_t t0 = test_now_ms(), seen = -1;
    while (test_now_ms() - t0 < 10000) {
        calls(c, 1, per, &failed);
        if (per[2]) {
            seen = test_now_ms() - t0;
            break;
        }
        usleep(10000);
    }
    printf("hosts file changed: the new address took a call after %lld ms (interval %d ms)\n",
           (long long)seen, RESOLVE_MS);
    if (seen < 0) fail("the new address took no call within 10 s");
    if (seen > RESOLVE_MS + 3000)
        fail("the new address took its first call %lld ms after the change", (long long)seen);
    calls(c, 40, per, &failed);
    printf("new addresses: %d and %d calls, %d failed\n", per[1], per[2], failed);
    if (failed || per[1] == 0 || per[2] == 0)
        fail("40 calls were not spread over the new addresses");

    shmrpc_client_free(c);
    for (int i = 1; i < N; i++) {
        bool ok = test_stop_server(servers[i]);
        servers[i] = 0;
        snprintf(addr, sizeof addr, "tcp://10.78.%d.2:%d", i + 1, port);
        test_tcp_stats_forget(addr);
        if (!ok) fail("server %d did not stop cleanly", i);
    }
    cleanup();
    printf("dns_test: ok\n");
    return 0;
}
