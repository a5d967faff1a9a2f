/* SPDX-License-Identifier: MIT */
/* The shm:// transport with real processes: many clients and workers, growth, deadlines,
 * workers and clients killed mid-call, stale segments, a second server, another user,
 * signal storms, and the names shm:// takes. Every wait is bounded (alarm() in each child,
 * deadlines in the parent), every child is reaped, and each test checks that its segments
 * are gone. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "procs.h"
#include "skips.h"

static char addr[64];
static int addr_n;

/* --- the server, in a child process --- */

static void on_usr1(int sig)
{
    (void)sig;
}

/* In the server's child: SIGUSR1 storms interrupt it (no SA_RESTART) without killing it. */
static bool plant_channel; /* the next server finds a channel named with its own pid */

static void prepare_server(void)
{
    struct sigaction usr = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &usr, NULL);
    if (plant_channel) { /* what a dead server that had this pid left behind */
        char name[128];
        snprintf(name, sizeof name, "/shmrpc:%s:%d:c0:1", addr + strlen("shm://"), (int)getpid());
        int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
        if (fd >= 0) close(fd);
    }
}

static pid_t start_server(int workers, size_t max_msg)
{
    test_server ts = {&Calls_service, &calls_test_handlers, addr, workers,
                      max_msg,        prepare_server,       NULL, NULL};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    return pid;
}

static void stop_server(pid_t pid)
{
    assert_true(test_stop_server(pid));
}

/* A client connected to addr, retrying while the server starts (bounded); NULL when
 * that fails. Children use this one: cmocka's asserts belong to the parent. */
static shmrpc_client *try_connect(void)
{
    shmrpc_client *c;
    if (shmrpc_client_new(&c, &Calls_service_info, NULL) != 0) return NULL;
    int rc = shmrpc_client_connect(c, addr);
    for (int i = 0; rc == SHMRPC_EUNAVAIL && i < 500; i++) {
        usleep(10000);
        rc = shmrpc_client_connect(c, addr);
    }
    if (rc == 0) return c;
    fprintf(stderr, "connect %s: %s: %s\n", addr, shmrpc_strerror(rc), shmrpc_errmsg());
    shmrpc_client_free(c);
    return NULL;
}

static shmrpc_client *connect_client(void)
{
    shmrpc_client *c = try_connect();
    assert_non_null(c);
    return c;
}

/* Segments of the current address left in /dev/shm. */
static int leftovers(void)
{
    return test_shm_segments(addr);
}

static int setup(void **state)
{
    (void)state;
    snprintf(addr, sizeof addr, "shm://shmtest-%d-%d", (int)getpid(), addr_n++);
    sh->napping = 0;
    sh->calls = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (leftovers() != 0) {
        fprintf(stderr, "segments of %s left behind\n", addr);
        test_shm_forget(addr); /* the test fails, and leaves nothing for the next run */
        return -1;
    }
    return 0;
}

/* --- tests --- */

/* Each client process makes calls of every size on two connections and checks them. */
static int client_process(int id, int calls)
{
    alarm(60);
    shmrpc_client *c[2] = {try_connect(), try_connect()};
    if (!c[0] || !c[1]) return 9;
    static uint8_t data[70000], *ok;
    for (int i = 0; i < calls; i++) {
        shmrpc_client *k = c[i % 2];
        int64_t sum;
        if (calls_add(k, id, i, &sum) != 0 || sum != id + i) return 1;
        size_t n = (size_t)(i * 7919) % sizeof data;
        for (size_t j = 0; j < n; j += 97)
            data[j] = (uint8_t)(i + j);
        shmrpc_bytes out;
        if (calls_echo(k, shmrpc_bytes_of(data, n), &out) != 0 || out.len != n) return 2;
        ok = (uint8_t *)out.ptr;
        if (n && memcmp(ok, data, n) != 0) return 3;
    }
    shmrpc_client_free(c[0]);
    shmrpc_client_free(c[1]);
    return 0;
}

static void many_clients_and_workers(void **state)
{
    (void)state;
    pid_t server = start_server(2, 0);
    enum { CLIENTS = 4, CALLS = 500 };
    pid_t kids[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        kids[i] = fork();
        if (kids[i] == 0) _exit(client_process(i, CALLS));
    }
    for (int i = 0; i < CLIENTS; i++) {
        int status = test_reap(kids[i], 60000);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("client %d ended with status %d", i, status);
    }
    assert_int_equal(sh->calls, CLIENTS * CALLS * 2);
    stop_server(server);
}

static void growth_and_too_big(void **state)
{
    (void)state;
    enum { MAX = 1 << 20 };
    pid_t server = start_server(1, MAX);
    shmrpc_client *c = connect_client();
    uint8_t *data = malloc(MAX + 1);
    assert_non_null(data);
    for (size_t i = 0; i <= MAX; i++)
        data[i] = (uint8_t)(i * 31);
    const size_t sizes[] = {0, 1, 4096 - 128, 4096, 5000, 65536, 300000, MAX - 1, MAX};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        shmrpc_bytes out;
        int rc = calls_echo(c, shmrpc_bytes_of(data, sizes[k]), &out);
        if (rc != 0) fail_msg("echo of %zu bytes: %s", sizes[k], shmrpc_errmsg());
        assert_int_equal(out.len, sizes[k]);
        if (sizes[k]) assert_memory_equal(out.ptr, data, sizes[k]);
    }
    shmrpc_bytes out;
    assert_int_equal(calls_echo(c, shmrpc_bytes_of(data, MAX + 1), &out), SHMRPC_ETOOBIG);
    assert_non_null(strstr(shmrpc_errmsg(), "maximum"));
    int64_t sum; /* the channel survives */
    assert_int_equal(calls_add(c, 2, 3, &sum), 0);
    assert_int_equal(sum, 5);
    free(data);
    shmrpc_client_free(c);
    stop_server(server);
}

static void deadlines(void **state)
{
    (void)state;
    pid_t server = start_server(1, 0);
    shmrpc_client *c = connect_client(), *other = connect_client();
    int32_t pid;
    /* Deadline while the call runs: ETIMEDOUT; the connection waits for it, then works. */
    shmrpc_client_next_timeout(c, 100);
    int64_t t0 = test_now_ms();
    assert_int_equal(calls_nap(c, 500, &pid), SHMRPC_ETIMEDOUT);
    int64_t waited = test_now_ms() - t0;
    /* Never early; the status says the deadline ended it (the nap would have answered
     * after 500 ms), so how late is not bounded here (a loaded ASan run: 450 ms). */
    assert_true(waited >= 100);
    assert_non_null(strstr(shmrpc_errmsg(), "may still complete"));
    /* Deadline before any worker took the call (the only worker naps): it never ran. */
    int64_t calls = sh->calls;
    shmrpc_client_next_timeout(other, 50);
    assert_int_equal(calls_nap(other, 0, &pid), SHMRPC_ETIMEDOUT);
    assert_non_null(strstr(shmrpc_errmsg(), "did not run"));
    int64_t sum;
    assert_int_equal(calls_add(c, 1, 1, &sum), 0);
    assert_int_equal(sum, 2);
    assert_int_equal(calls_add(other, 2, 2, &sum), 0);
    assert_int_equal(sh->calls, calls + 2); /* the withdrawn nap never ran */
    shmrpc_client_free(c);
    shmrpc_client_free(other);
    stop_server(server);
}

/* A client that adds in a loop until told to stop; exits 0 when every call succeeded. */
static pid_t busy_client(volatile int *stop_flag, int *failures)
{
    pid_t pid = fork();
    if (pid == 0) {
        alarm(60);
        shmrpc_client *c = try_connect();
        if (c == NULL) _exit(9);
        int bad = 0;
        for (int i = 0; !*stop_flag; i++) {
            int64_t sum;
            if (calls_add(c, i, 1, &sum) != 0 || sum != i + 1) bad++;
        }
        *failures = bad;
        shmrpc_client_free(c);
        _exit(bad ? 1 : 0);
    }
    return pid;
}

static void worker_killed_mid_call(void **state)
{
    (void)state;
    pid_t server = start_server(2, 0);
    /* flags: 0 stop the busy client, 1 its failures, 2 the lost call's status, 3 when it
     * returned (ms), 4 the status of the next call on the same connection */
    int64_t *flags = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(flags != MAP_FAILED);
    pid_t other = busy_client((volatile int *)&flags[0], (int *)&flags[1]);
    /* Workers that lived 100 ms are replaced at once: the caller must still see that its
     * own worker died, whatever process holds the worker's slot by then. */
    usleep(300 * 1000);
    pid_t caller = fork();
    if (caller == 0) {
        alarm(30);
        shmrpc_client *k = try_connect();
        if (k == NULL) _exit(9);
        int32_t pid;
        flags[2] = calls_nap(k, 10000, &pid);
        flags[3] = test_now_ms();
        int64_t sum = 0; /* the same connection, served by the worker that replaces it */
        flags[4] = calls_add(k, 20, 22, &sum);
        if (sum != 42) flags[4] = -1000;
        shmrpc_client_free(k);
        _exit(0);
    }
    int64_t until = test_now_ms() + 5000;
    while (sh->napping == 0 && test_now_ms() < until)
        usleep(1000);
    pid_t victim = sh->napping;
    assert_true(victim > 0);
    int64_t killed = test_now_ms();
    kill(victim, SIGKILL);
    int status = test_reap(caller, 10000);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    print_message("    worker killed mid-call: the caller was told after %lld ms\n",
                  (long long)(flags[3] - killed));
    assert_int_equal(flags[2], SHMRPC_EPEERDIED);
    assert_true(flags[3] - killed < 1000); /* the promise is 100 ms; bench/ times it */
    assert_int_equal(flags[4], 0);
    flags[0] = 1;
    status = test_reap(other, 10000);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the other client saw %d failed calls", (int)flags[1]);
    munmap(flags, 4096);
    stop_server(server);
}

static void client_killed_mid_call(void **state)
{
    (void)state;
    pid_t server = start_server(1, 0);
    shmrpc_client *c = connect_client();
    int before = leftovers();
    pid_t doomed = fork();
    if (doomed == 0) {
        alarm(30);
        shmrpc_client *k = try_connect();
        int32_t pid;
        if (k) calls_nap(k, 300, &pid);
        _exit(0);
    }
    int64_t until = test_now_ms() + 5000;
    while (sh->napping == 0 && test_now_ms() < until)
        usleep(1000);
    kill(doomed, SIGKILL);
    test_reap(doomed, 5000);
    /* The server finishes the nap, answers nobody, and sweeps the dead client away. */
    until = test_now_ms() + 3000;
    while (leftovers() > before && test_now_ms() < until)
        usleep(10000);
    assert_int_equal(leftovers(), before);
    int64_t sum;
    assert_int_equal(calls_add(c, 1, 2, &sum), 0);
    assert_int_equal(sum, 3);
    shmrpc_client_free(c);
    stop_server(server);
}

static void stale_segments_and_second_server(void **state)
{
    (void)state;
    pid_t server = start_server(1, 0);
    shmrpc_client *c = connect_client();
    /* A second server for the same address is refused, naming the holder. */
    shmrpc_server *s2;
    assert_int_equal(shmrpc_server_new(&s2, NULL), 0);
    assert_int_equal(shmrpc_server_register(s2, &Calls_service, &calls_test_handlers, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s2, addr), SHMRPC_EBUSY);
    char holder[32];
    snprintf(holder, sizeof holder, "pid %d", (int)server);
    assert_non_null(strstr(shmrpc_errmsg(), holder));
    /* The server dies without cleaning up: its segments stay... */
    kill(server, SIGKILL);
    test_reap(server, 5000);
    assert_true(leftovers() >= 1); /* the control segment (channels are memfds: they go with
                                      their last holder) */
    int64_t sum;
    shmrpc_client_next_timeout(c, 2000);
    assert_int_equal(calls_add(c, 1, 1, &sum), SHMRPC_EUNAVAIL);
    shmrpc_client_free(c);
    /* ...until a new server starts clean. */
    server = start_server(1, 0);
    c = connect_client();
    assert_int_equal(calls_add(c, 1, 1, &sum), 0);
    shmrpc_client_free(c);
    shmrpc_server_free(s2);
    stop_server(server);
}

/* A server whose dead predecessor had the same pid (pids repeat in containers) finds that
 * predecessor's channels under its own pid: they go at listen, or the first client's
 * channel (slot 0, generation 1) would collide with one. */
static void stale_channel_under_our_pid(void **state)
{
    (void)state;
    plant_channel = true;
    pid_t server = start_server(1, 0);
    plant_channel = false;
    shmrpc_client *c = connect_client();
    int64_t sum;
    assert_int_equal(calls_add(c, 40, 2, &sum), 0);
    assert_int_equal(sum, 42);
    shmrpc_client_free(c);
    stop_server(server);
    assert_int_equal(leftovers(), 0);
}

/* Another user does not find the service: its names are in its user's directory of names
 * (docs/names.md), and another user looks in its own. A socket of another uid put at its
 * own rendezvous's name (root may write there) is refused by what the kernel says of it. */
static void another_user_is_refused(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        test_skip("needs root to become another user");
    }
    pid_t server = start_server(1, 0);
    shmrpc_client *c = connect_client(); /* the server is up */
    char planted[300] = "";
    int fake = -1;
    for (int round = 0; round < 2; round++) {
        pid_t other = fork();
        if (other == 0) {
            alarm(10);
            if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
            shmrpc_client *k;
            if (shmrpc_client_new(&k, &Calls_service_info, NULL) != 0) _exit(3);
            int rc = shmrpc_client_connect(k, addr);
            fprintf(stderr, "    as nobody: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
            if (round == 0)
                _exit(rc == SHMRPC_EUNAVAIL && strstr(shmrpc_errmsg(), "no server") ? 0 : 1);
            bool said = strstr(shmrpc_errmsg(), "is served by uid 0") != NULL;
            _exit(rc == SHMRPC_EPERM && said ? 0 : 1);
        }
        int status = test_reap(other, 10000);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (round == 1) break;
        /* Root's socket at nobody's rendezvous for the address. */
        const char *dir = "/dev/shm/shmrpc-65534";
        bool made = mkdir(dir, 0700) == 0;
        assert_true(made || errno == EEXIST);
        assert_int_equal(chown(dir, 65534, 65534), 0);
        snprintf(planted, sizeof planted, "%s/shmrpc:%s:rdv", dir, addr + strlen("shm://"));
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s", planted);
        fake = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_true(fake >= 0 && bind(fake, (struct sockaddr *)&a, sizeof a) == 0 &&
                    listen(fake, 4) == 0 && chmod(planted, 0777) == 0);
    }
    close(fake);
    unlink(planted);
    shmrpc_client_free(c);
    stop_server(server);
}

static void on_alarm(int sig)
{
    (void)sig;
}

static void signal_storms(void **state)
{
    (void)state;
    pid_t server = start_server(1, 0);
    shmrpc_client *c = connect_client();
    /* Workers: SIGUSR1 every 100 us from a helper process (they have a no-op handler). */
    int32_t worker = 0;
    assert_int_equal(calls_nap(c, 0, &worker), 0);
    pid_t storm = fork();
    if (storm == 0) {
        alarm(30);
        for (;;) {
            if (kill(worker, SIGUSR1) != 0) _exit(0);
            usleep(100);
        }
    }
    /* This process: SIGALRM every 100 us, without SA_RESTART. */
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval every = {{0, 100}, {0, 100}}, off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &every, NULL);
    uint8_t data[3000];
    memset(data, 7, sizeof data);
    int bad = 0;
    for (int i = 0; i < 3000; i++) {
        int64_t sum;
        shmrpc_bytes out;
        if (calls_add(c, i, i, &sum) != 0 || sum != 2 * i) bad++;
        if (calls_echo(c, shmrpc_bytes_of(data, (size_t)i), &out) != 0 || out.len != (size_t)i)
            bad++;
    }
    int32_t pid;
    if (calls_nap(c, 50, &pid) != 0) bad++; /* a sleeping wait, interrupted over and over */
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_DFL);
    kill(storm, SIGKILL);
    test_reap(storm, 5000);
    assert_int_equal(bad, 0);
    shmrpc_client_free(c);
    stop_server(server);
}

/* CPU time (user + system, in ms) that pid and its children still running have used. */
static int64_t cpu_ms_of_tree(pid_t pid)
{
    char path[96], buf[4096];
    int64_t ticks = 0;
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    pid_t pids[70] = {pid};
    int count = 1;
    for (char *p = buf, *end; count < 70 && (pids[count] = (pid_t)strtol(p, &end, 10)) > 0; p = end)
        count++;
    for (int i = 0; i < count; i++) {
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pids[i]);
        f = fopen(path, "r");
        if (!f) continue;
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *q = strrchr(buf, ')');
        unsigned long long ut = 0, st = 0;
        if (q &&
            sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            ticks += (int64_t)(ut + st);
    }
    return ticks * 1000 / sysconf(_SC_CLK_TCK);
}

/* Waiters that outnumber the CPUs, and idle workers, sleep rather than spin: four clients
 * queue for one worker's 20 ms naps, and then the server sits idle. */
static void long_waits_sleep(void **state)
{
    (void)state;
    pid_t server = start_server(1, 0);
    shmrpc_client *c = connect_client();
    enum { CLIENTS = 4, NAPS = 8 };
    int64_t t0 = test_now_ms();
    pid_t kids[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            alarm(60);
            shmrpc_client *k = try_connect();
            int32_t pid;
            for (int j = 0; k && j < NAPS; j++)
                if (calls_nap(k, 20, &pid) != 0) _exit(1);
            _exit(k ? 0 : 9);
        }
    }
    int64_t cpu = 0;
    for (int i = 0; i < CLIENTS; i++) {
        int status;
        struct rusage ru;
        assert_int_equal(wait4(kids[i], &status, 0, &ru), kids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        cpu += (int64_t)ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 +
               (int64_t)ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000;
    }
    int64_t wall = test_now_ms() - t0;
    print_message("    %d clients waiting %lld ms for naps used %lld ms of CPU\n", CLIENTS,
                  (long long)wall, (long long)cpu);
    assert_true(wall >= CLIENTS * NAPS * 20);
    assert_true(cpu < wall / 5); /* spinning through the waits would cost about 2 * wall */
    /* Idle: past the spin budget the manager and its worker sleep. */
    usleep(200 * 1000);
    int64_t before = cpu_ms_of_tree(server);
    usleep(1000 * 1000);
    int64_t idle = cpu_ms_of_tree(server) - before;
    print_message("    an idle server used %lld ms of CPU in 1 s\n", (long long)idle);
    assert_true(idle < 50);
    shmrpc_client_free(c);
    stop_server(server);
}

/* In the server's child: fewer descriptors than the crew's poll() table once held (66). */
static void prepare_few_fds(void)
{
    prepare_server();
    struct rlimit rl = {32, 32};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(8);
}

/* Under RLIMIT_NOFILE 32 the manager still sleeps: it once gave poll() every slot of its
 * table, poll() failed at once with EINVAL, and the manager spun at 100% of a core. */
static void few_fds_manager_sleeps(void **state)
{
    (void)state;
    test_server ts = {
        &Calls_service, &calls_test_handlers, addr, 1, 0, prepare_few_fds, NULL, NULL};
    pid_t server = test_start_server(&ts);
    assert_true(server > 0);
    /* Measured before any client: the old manager never served the rendezvous either. */
    for (int i = 0; i < 500 && leftovers() == 0; i++)
        usleep(10 * 1000);
    usleep(1000 * 1000);
    int64_t before = cpu_ms_of_tree(server);
    usleep(1000 * 1000);
    int64_t idle = cpu_ms_of_tree(server) - before;
    print_message("    a server under RLIMIT_NOFILE 32 used %lld ms of CPU in 1 s\n",
                  (long long)idle);
    if (idle >= 50) { /* spinning cost 150 to 1000 ms; sleeping costs 0, as in long_waits_sleep */
        test_stop_server(server);
        fail_msg("the manager spins");
    }
    shmrpc_client *c = connect_client();
    int32_t pid;
    assert_int_equal(calls_nap(c, 1, &pid), 0);
    shmrpc_client_free(c);
    stop_server(server);
}

/* SIGTERM with a call in flight: the call completes; calls not taken yet fail. */
static void stop_lets_calls_finish(void **state)
{
    (void)state;
    pid_t server = start_server(1, 0);
    shmrpc_client *c = connect_client();
    int64_t *r = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(r != MAP_FAILED);
    pid_t caller = fork();
    if (caller == 0) {
        alarm(30);
        shmrpc_client *k = try_connect();
        int32_t pid = 0;
        r[0] = k ? calls_nap(k, 300, &pid) : -9999;
        r[1] = pid;
        if (k) shmrpc_client_free(k);
        _exit(0);
    }
    int64_t until = test_now_ms() + 5000;
    while (sh->napping == 0 && test_now_ms() < until)
        usleep(1000);
    assert_true(sh->napping > 0);
    kill(server, SIGTERM);
    assert_int_equal(WEXITSTATUS(test_reap(caller, 10000)), 0);
    assert_int_equal(r[0], 0); /* the nap in flight was answered */
    assert_true(r[1] > 0);
    int status = test_reap(server, 5000);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int64_t sum;
    assert_int_equal(calls_add(c, 1, 1, &sum), SHMRPC_EUNAVAIL);
    shmrpc_client_free(c);
    munmap(r, 4096);
}

/* A server restarts: the call in flight fails, a later call reconnects by itself and
 * checks the method table again; nothing is sent twice. */
static void reconnect_after_restart(void **state)
{
    (void)state;
    pid_t server = start_server(1, 0);
    shmrpc_client *c = connect_client();
    int64_t sum;
    assert_int_equal(calls_add(c, 1, 2, &sum), 0);
    stop_server(server);
    int64_t calls = sh->calls;
    assert_int_equal(calls_add(c, 1, 2, &sum), SHMRPC_EUNAVAIL);
    server = start_server(1, 0);
    int rc = SHMRPC_EUNAVAIL;
    int64_t until = test_now_ms() + 5000;
    while (rc == SHMRPC_EUNAVAIL && test_now_ms() < until) {
        rc = calls_add(c, 20, 22, &sum);
        if (rc == SHMRPC_EUNAVAIL) usleep(20000);
    }
    if (rc != 0) fail_msg("no reconnect: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(sum, 42);
    assert_int_equal(sh->calls, calls + 1); /* the failed call did not run later */
    shmrpc_client_free(c);
    stop_server(server);
}

/* A connection belongs to the process that opened it: a forked child gets EINVAL, and
 * its freeing the inherited handle leaves the parent's connection working. */
static void fork_keeps_connections_apart(void **state)
{
    (void)state;
    pid_t server = start_server(1, 0);
    shmrpc_client *c = connect_client();
    pid_t child = fork();
    if (child == 0) {
        alarm(10);
        int64_t sum;
        int rc = calls_add(c, 1, 1, &sum);
        shmrpc_client_free(c);
        _exit(rc == SHMRPC_EINVAL ? 0 : 1);
    }
    int status = test_reap(child, 10000);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int64_t sum;
    assert_int_equal(calls_add(c, 2, 3, &sum), 0);
    assert_int_equal(sum, 5);
    shmrpc_client_free(c);
    stop_server(server);
}

/* A process that is not dumpable (PR_SET_DUMPABLE 0, setuid, file capabilities) hands its
 * channel over at the rendezvous, where workers once opened it through /proc/PID/fd,
 * which the kernel refuses for such a process: it connects and calls like any other. */
static void undumpable_client_connects(void **state)
{
    (void)state;
    pid_t server = start_server(2, 0);
    pid_t child = fork();
    if (child == 0) {
        alarm(10);
        shmrpc_client *c;
        if (prctl(PR_SET_DUMPABLE, 0) != 0 || shmrpc_client_new(&c, &Calls_service_info, NULL) != 0)
            _exit(2);
        int rc = shmrpc_client_connect(c, addr);
        for (int i = 0; i < 250 && (rc == SHMRPC_EUNAVAIL || rc == SHMRPC_EBUSY); i++) {
            usleep(20000); /* the server may still be starting */
            rc = shmrpc_client_connect(c, addr);
        }
        int64_t sum = 0;
        bool ok = rc == 0;
        for (int i = 0; ok && i < 100; i++) /* any worker, as calls come */
            ok = calls_add(c, i, 3, &sum) == 0 && sum == i + 3;
        if (!ok) fprintf(stderr, "undumpable: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
        shmrpc_client_free(c);
        _exit(ok ? 0 : 1);
    }
    int status = test_reap(child, 10000);
    shmrpc_client *c = connect_client(); /* the service serves others */
    int64_t sum;
    int rc = calls_add(c, 2, 3, &sum);
    shmrpc_client_free(c);
    stop_server(server);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(rc, 0);
}

/* A name in shm://NAME is 1 to 64 letters, digits, '_', '-' or '.' (not first: no hidden
 * files): any other is refused by a client and a server alike, with a message naming it,
 * before anything is made; a good one that nobody serves is "no server". */
static void names_checked(void **state)
{
    (void)state;
    char longest[65], too_long[66];
    memset(longest, 'n', 64);
    longest[64] = '\0';
    memset(too_long, 'n', 65);
    too_long[65] = '\0';
    const struct {
        const char *name;
        bool good;
    } cases[] = {
        {"A.b_c-D9", true}, {longest, true},    {"x", true},    {"9.", true},
        {too_long, false},  {".hidden", false}, {"a/b", false}, {"a b", false},
        {"a~", false},      {"é", false},       {"a:b", false}, {"Z@", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char where[128], said[160];
        snprintf(where, sizeof where, "shm://%s", cases[i].name);
        snprintf(said, sizeof said, "bad shm:// name '%s'", cases[i].name);
        shmrpc_client *c;
        assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, NULL), 0);
        int rc = shmrpc_client_connect(c, where);
        bool client_ok = cases[i].good
                             ? rc == SHMRPC_EUNAVAIL && strstr(shmrpc_errmsg(), "no server")
                             : rc == SHMRPC_EINVAL && strstr(shmrpc_errmsg(), said);
        if (!client_ok)
            print_message("    client at %s: %s: %s\n", where, shmrpc_strerror(rc),
                          shmrpc_errmsg());
        shmrpc_client_free(c);
        assert_true(client_ok);
        if (cases[i].good) continue; /* (a listen on a good name is every other test) */
        shmrpc_server *s;
        assert_int_equal(shmrpc_server_new(&s, NULL), 0);
        assert_int_equal(shmrpc_server_register(s, &Calls_service, &calls_test_handlers, NULL), 0);
        rc = shmrpc_server_listen(s, where);
        bool server_ok = rc == SHMRPC_EINVAL && strstr(shmrpc_errmsg(), said);
        if (!server_ok)
            print_message("    server at %s: %s: %s\n", where, shmrpc_strerror(rc),
                          shmrpc_errmsg());
        shmrpc_server_free(s);
        assert_true(server_ok);
    }
}

int main(void)
{
    if (calls_shared_map() != 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(many_clients_and_workers, setup, teardown),
        cmocka_unit_test_setup_teardown(growth_and_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(deadlines, setup, teardown),
        cmocka_unit_test_setup_teardown(worker_killed_mid_call, setup, teardown),
        cmocka_unit_test_setup_teardown(client_killed_mid_call, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_segments_and_second_server, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_channel_under_our_pid, setup, teardown),
        cmocka_unit_test_setup_teardown(another_user_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(signal_storms, setup, teardown),
        cmocka_unit_test_setup_teardown(long_waits_sleep, setup, teardown),
        cmocka_unit_test_setup_teardown(few_fds_manager_sleeps, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_lets_calls_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(reconnect_after_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(fork_keeps_connections_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(undumpable_client_connects, setup, teardown),
        cmocka_unit_test_setup_teardown(names_checked, setup, teardown),
    };
    /* SHM_TEST_ONLY=GLOB runs only the matching tests (the mutant kit narrows by it). */
    if (getenv("SHM_TEST_ONLY")) cmocka_set_test_filter(getenv("SHM_TEST_ONLY"));
    return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
