/* SPDX-License-Identifier: MIT */
/* The link emulator of the three-hosts test (docs/hosts-test.md): the job `tc qdisc ...
 * netem` would do, done in user space because the kernels this test runs on lack sch_netem
 * ("Error: Specified qdisc kind is unknown."). It runs in the test's router namespace and
 * attaches to a TUN device there; policy routing (hosts.sh) sends every packet that
 * arrives from a host's or the client's veth into that device, so this program reads each
 * forwarded IPv4 packet, drops a fraction of them at random, holds the rest for the delay,
 * then writes them back into the device, where the kernel routes them on by the main table
 * to the veth of their destination.
 *
 * It can also cut a host's link: every packet from or to a cut address is dropped until it
 * is restored. Commands come one a line through a FIFO (--control PATH): "cut ADDR",
 * "restore ADDR", "loss PERCENT", "stats" (prints the counts on stderr). SIGTERM ends it;
 * it prints its counts then. Everything it holds is bounded: a packet queue of QUEUE_CAP
 * (a full queue drops, as a router's would), CUT_CAP cut addresses.
 *
 *   linkemu --tun NAME --control FIFO [--delay-us N] [--loss PERCENT] [--seed N]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    QUEUE_CAP = 4096, /* packets held at once: 1 ms of a fast link is far fewer */
    PKT_MAX = 2048,   /* the veths' and the TUN's MTU is 1500 */
    CUT_CAP = 16,
    LINE_MAX_ = 128,
};

typedef struct held {
    int64_t due_ns; /* when it goes back out */
    uint16_t len;
    unsigned char data[PKT_MAX];
} held;

static held queue[QUEUE_CAP]; /* a ring: packets leave in the order they came */
static unsigned q_head, q_len;
static uint32_t cut[CUT_CAP]; /* network order; 0 is a free slot */
static int64_t delay_ns = 1000000;
static uint32_t loss_ppm = 10000; /* 1 % */
static uint64_t rng = 0x853c49e6748fea9bu;

static struct {
    uint64_t in, out, lost, cut, full, other, bad_write;
} count;

static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint32_t next_random(void) /* xorshift64*: a seeded run repeats its losses */
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545f4914f6cdd1du) >> 32);
}

static void print_counts(void)
{
    fprintf(stderr,
            "linkemu: in %llu, out %llu, lost %llu (random), cut %llu, queue full %llu, not IPv4 "
            "%llu, failed writes %llu\n",
            (unsigned long long)count.in, (unsigned long long)count.out,
            (unsigned long long)count.lost, (unsigned long long)count.cut,
            (unsigned long long)count.full, (unsigned long long)count.other,
            (unsigned long long)count.bad_write);
}

static bool is_cut(const unsigned char *p)
{
    uint32_t src, dst;
    memcpy(&src, p + 12, 4);
    memcpy(&dst, p + 16, 4);
    for (int i = 0; i < CUT_CAP; i++)
        if (cut[i] && (cut[i] == src || cut[i] == dst)) return true;
    return false;
}

static void set_cut(uint32_t addr, bool on)
{
    for (int i = 0; i < CUT_CAP; i++)
        if (cut[i] == addr) {
            if (!on) cut[i] = 0;
            return;
        }
    for (int i = 0; on && i < CUT_CAP; i++)
        if (cut[i] == 0) {
            cut[i] = addr;
            return;
        }
    if (on) fprintf(stderr, "linkemu: more than %d cut addresses\n", CUT_CAP);
}

static void command(char *line)
{
    char verb[16], arg[64];
    struct in_addr a;
    if (sscanf(line, "%15s %63s", verb, arg) == 2 && inet_pton(AF_INET, arg, &a) == 1 &&
        (strcmp(verb, "cut") == 0 || strcmp(verb, "restore") == 0)) {
        set_cut(a.s_addr, verb[0] == 'c');
        fprintf(stderr, "linkemu: %s %s\n", verb, arg);
    } else if (sscanf(line, "loss %63s", arg) == 1) {
        loss_ppm = (uint32_t)(strtod(arg, NULL) * 10000);
        fprintf(stderr, "linkemu: loss %s %%\n", arg);
    } else if (strncmp(line, "stats", 5) == 0) {
        print_counts();
    } else {
        fprintf(stderr, "linkemu: unknown command '%s'\n", line);
    }
}

/* Reads what the FIFO holds and runs each whole line. */
static void read_commands(int fd, char *buf, size_t *have)
{
    ssize_t n = read(fd, buf + *have, LINE_MAX_ - 1 - *have);
    if (n <= 0) return;
    *have += (size_t)n;
    buf[*have] = '\0';
    char *nl;
    while ((nl = strchr(buf, '\n')) != NULL) {
        *nl = '\0';
        command(buf);
        size_t used = (size_t)(nl + 1 - buf);
        memmove(buf, nl + 1, *have - used + 1);
        *have -= used;
    }
    if (*have == LINE_MAX_ - 1) *have = 0; /* a line too long: dropped */
}

static int open_tun(const char *name)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "linkemu: /dev/net/tun: %s\n", strerror(errno));
        return -1;
    }
    struct ifreq ifr = {0};
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI; /* as `ip tuntap add mode tun` made it */
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
        fprintf(stderr, "linkemu: TUNSETIFF %s: %s\n", name, strerror(errno));
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* Reads every packet waiting in the TUN: each one dropped or queued. */
static void take_packets(int tun, int64_t now)
{
    for (int i = 0; i < QUEUE_CAP; i++) {
        held *h = &queue[(q_head + q_len) % QUEUE_CAP];
        unsigned char scratch[PKT_MAX];
        unsigned char *into = q_len < QUEUE_CAP ? h->data : scratch;
        ssize_t n = read(tun, into, PKT_MAX);
        if (n < 0) return; /* EAGAIN: no more */
        count.in++;
        if (n < 20 || (into[0] >> 4) != 4) { /* not IPv4 (the namespaces have no IPv6) */
            count.other++;
            continue;
        }
        if (is_cut(into)) {
            count.cut++;
            continue;
        }
        if (next_random() % 1000000 < loss_ppm) {
            count.lost++;
            continue;
        }
        if (into == scratch) {
            count.full++;
            continue;
        }
        h->len = (uint16_t)n;
        h->due_ns = now + delay_ns;
        q_len++;
    }
}

/* Writes back every held packet whose time has come; the time until the next one is due,
 * in ns (-1: none held). */
static int64_t release_packets(int tun, int64_t now)
{
    while (q_len > 0) {
        held *h = &queue[q_head];
        if (h->due_ns > now) return h->due_ns - now;
        /* A packet cut while it was held goes nowhere either. */
        if (is_cut(h->data))
            count.cut++;
        else if (write(tun, h->data, h->len) == h->len)
            count.out++;
        else
            count.bad_write++;
        q_head = (q_head + 1) % QUEUE_CAP;
        q_len--;
    }
    return -1;
}

int main(int argc, char **argv)
{
    const char *tun_name = NULL, *control = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--tun") == 0)
            tun_name = argv[i + 1];
        else if (strcmp(argv[i], "--control") == 0)
            control = argv[i + 1];
        else if (strcmp(argv[i], "--delay-us") == 0)
            delay_ns = strtoll(argv[i + 1], NULL, 10) * 1000;
        else if (strcmp(argv[i], "--loss") == 0)
            loss_ppm = (uint32_t)(strtod(argv[i + 1], NULL) * 10000);
        else if (strcmp(argv[i], "--seed") == 0)
            rng = strtoull(argv[i + 1], NULL, 10) | 1;
        else
            break;
    }
    if (tun_name == NULL || control == NULL) {
        fprintf(stderr, "usage: linkemu --tun NAME --control FIFO [--delay-us N] [--loss PERCENT] "
                        "[--seed N]\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int tun = open_tun(tun_name);
    if (tun < 0) return 1;
    /* Read and write ends both ours, so the FIFO never reports end of file between the
     * test's commands. */
    int ctl = open(control, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (ctl < 0) {
        fprintf(stderr, "linkemu: %s: %s\n", control, strerror(errno));
        return 1;
    }
    fprintf(stderr, "linkemu: %s, delay %lld us, loss %.2f %%\n", tun_name,
            (long long)(delay_ns / 1000), loss_ppm / 10000.0);
    char line[LINE_MAX_];
    size_t have = 0;
    int64_t wait_ns = -1;
    while (!stopping) {
        struct pollfd p[2] = {{tun, POLLIN, 0}, {ctl, POLLIN, 0}};
        /* A held packet is due in wait_ns (ppoll's timer is exact, where poll's whole
         * milliseconds would add up to one to the delay); at most 1 s, so a SIGTERM that
         * lands between the check and ppoll is not missed for long. */
        if (wait_ns < 0 || wait_ns > 1000000000) wait_ns = 1000000000;
        struct timespec ts = {wait_ns / 1000000000, wait_ns % 1000000000};
        int rc = ppoll(p, 2, &ts, NULL);
        if (rc < 0 && errno != EINTR) {
            fprintf(stderr, "linkemu: poll: %s\n", strerror(errno));
            return 1;
        }
        int64_t now = now_ns();
        if (rc > 0 && (p[1].revents & POLLIN)) read_commands(ctl, line, &have);
        if (rc > 0 && (p[0].revents & POLLIN)) take_packets(tun, now);
        wait_ns = release_packets(tun, now_ns());
    }
    print_counts();
    return 0;
}
