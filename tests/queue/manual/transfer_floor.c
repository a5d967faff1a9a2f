/* SPDX-License-Identifier: MIT */
/* A manual measurement (not a unit test; docs/queue.md, "The two missed goals again"):
 * how fast 64 KiB messages can move from one core to another here without any queue, to
 * judge the zero-copy goal (0.5x an in-cache memcpy). A producer copies each message into
 * one of SLOTS 64 KiB slots, a consumer reads it in place, each caching the other's
 * counter; GB/s over SECONDS. x86-64 with AVX-512 for modes 2-3 and c2 (cldemote is a
 * no-op where absent). Build: cc -O2 tests/queue/manual/transfer_floor.c -lpthread.
 * Usage: transfer_floor SLOTS PRODUCER CONSUMER HUGE FORK [SECONDS]
 *   PRODUCER 0 memcpy, 1 memcpy then cldemote of each line, 2 non-temporal stores,
 *            3 AVX-512 stores, 4 memcpy and cldemote per 4 KiB;
 *   CONSUMER 0 one byte per line, 1 memcpy out, 2 AVX-512 loads of every line XORed,
 *            3 one byte per line with a prefetch 1 KiB ahead;
 *   HUGE 1: MADV_HUGEPAGE on the slots (threads only: private memory);
 *   FORK 1: two processes over a shared mapping, 0: two threads. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SZ 65536
#define HUGE_PAGE ((size_t)2 << 20)

struct ctl {
    _Alignas(64) _Atomic uint64_t head;
    _Alignas(64) _Atomic uint64_t tail;
    _Alignas(64) _Atomic int stop;
};

static struct ctl *ctl;
static unsigned char *data, src[SZ], dst[SZ];
static unsigned slots;
static int pmode;

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void pause_or_yield(unsigned i)
{
    if (i > 256)
        sched_yield();
    else
        _mm_pause();
}

static void demote(unsigned char *p, size_t n)
{
    for (size_t k = 0; k < n; k += 64)
        __asm__ __volatile__("cldemote (%0)" ::"r"(p + k) : "memory");
}

__attribute__((target("avx512f"))) static void copy_avx512(unsigned char *d, bool stream)
{
    for (size_t k = 0; k < SZ; k += 64) {
        __m512i v = _mm512_loadu_si512(src + k);
        if (stream)
            _mm512_stream_si512((void *)(d + k), v);
        else
            _mm512_store_si512((void *)(d + k), v);
    }
    if (stream) _mm_sfence();
}

__attribute__((target("avx512f"))) static unsigned char xor_avx512(const unsigned char *m)
{
    __m512i acc = _mm512_setzero_si512();
    for (size_t i = 0; i < SZ; i += 64)
        acc = _mm512_xor_si512(acc, _mm512_load_si512((const void *)(m + i)));
    return (unsigned char)_mm512_reduce_add_epi32(acc);
}

static void *producer(void *arg)
{
    (void)arg;
    uint64_t tail = 0, head = 0;
    while (!atomic_load(&ctl->stop)) {
        for (unsigned i = 0; tail - head >= slots; i++) {
            head = atomic_load_explicit(&ctl->head, memory_order_acquire);
            if (atomic_load(&ctl->stop)) return NULL;
            pause_or_yield(i);
        }
        unsigned char *d = data + (tail % slots) * SZ;
        if (pmode == 2 || pmode == 3) {
            copy_avx512(d, pmode == 2);
        } else if (pmode == 4) {
            for (size_t k = 0; k < SZ; k += 4096) {
                memcpy(d + k, src + k, 4096);
                demote(d + k, 4096);
            }
        } else {
            memcpy(d, src, SZ);
            if (pmode == 1) demote(d, SZ);
        }
        atomic_store_explicit(&ctl->tail, ++tail, memory_order_release);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fputs("usage: transfer_floor SLOTS PRODUCER CONSUMER HUGE FORK [SECONDS]\n", stderr);
        return 2;
    }
    slots = (unsigned)atoi(argv[1]);
    pmode = atoi(argv[2]);
    int cmode = atoi(argv[3]), huge = atoi(argv[4]), fork_it = atoi(argv[5]);
    double secs = argc > 6 ? atof(argv[6]) : 0.5;
    if (slots < 1 || slots > 1024 || !(secs > 0 && secs <= 60)) return 2;
    size_t bytes = (size_t)slots * SZ;
    ctl = mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    unsigned char *raw = mmap(NULL, bytes + HUGE_PAGE, PROT_READ | PROT_WRITE,
                              (fork_it ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
    if (ctl == MAP_FAILED || raw == MAP_FAILED) return 1;
    data = (unsigned char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    madvise(data, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    memset(data, 0, bytes);
    memset(src, 1, SZ);
    pthread_t thread;
    pid_t pid = 0;
    if (fork_it) {
        pid = fork();
        if (pid == 0) {
            alarm(70);
            producer(NULL);
            _exit(0);
        }
        if (pid < 0) return 1;
    } else if (pthread_create(&thread, NULL, producer, NULL) != 0) {
        return 1;
    }
    uint64_t head = 0, tail = 0, counted = 0;
    volatile unsigned char sink = 0;
    int64_t start = now_ns() + 20000000, end = start + (int64_t)(secs * 1e9);
    for (;;) {
        for (unsigned i = 0; head == tail; i++) {
            tail = atomic_load_explicit(&ctl->tail, memory_order_acquire);
            pause_or_yield(i);
        }
        const unsigned char *m = data + (head % slots) * SZ;
        if (cmode == 1) {
            memcpy(dst, m, SZ);
            __asm__ __volatile__("" ::"r"(dst) : "memory");
        } else if (cmode == 2) {
            sink ^= xor_avx512(m);
        } else {
            for (size_t i = 0; i < SZ; i += 64) {
                if (cmode == 3) _mm_prefetch((const char *)m + i + 1024, _MM_HINT_T0);
                sink ^= m[i];
            }
        }
        atomic_store_explicit(&ctl->head, ++head, memory_order_release);
        int64_t t = now_ns();
        if (t >= end) break;
        if (t >= start) counted++;
    }
    (void)sink;
    atomic_store(&ctl->stop, 1);
    if (fork_it)
        waitpid(pid, NULL, 0);
    else
        pthread_join(thread, NULL);
    printf("slots %u producer %d consumer %d huge %d %s: %.1f GB/s\n", slots, pmode, cmode, huge,
           fork_it ? "processes" : "threads", (double)counted * SZ / secs / 1e9);
    return 0;
}
