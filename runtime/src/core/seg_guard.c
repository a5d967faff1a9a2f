/* SPDX-License-Identifier: MIT */
/* The guard against a segment cut under its holders (segment.h): a SIGBUS in a guarded
 * mapping puts private zero pages in its place and marks it cut; any other SIGBUS goes to
 * the handler that was there before. docs/queue.md, "A segment cut under its holders". */
#include "core/segment.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

/* Mappings guarded at once in a process: a queue handle takes one, a map handle two. A
 * mapping past them is not guarded (shmrpc__seg_guard says so with -1). */
#define GUARDS 4096

/* A guard's states. BUSY: the handler is replacing its mapping; shmrpc__seg_unguard waits
 * for it to end, so that the mapping is not unmapped (and its addresses reused) under the
 * handler's MAP_FIXED. */
enum { G_FREE = 0, G_SETTING = 1, G_ACTIVE = 2, G_BUSY = 3 };

/* Process-local (never in shared memory): read by the signal handler, so lock-free. */
struct guard {
    _Atomic uint32_t state;
    _Atomic uint32_t cut; /* 1 once the handler replaced the mapping */
    _Atomic uintptr_t base;
    _Atomic size_t len;
};
static struct guard guards[GUARDS];
/* One past the highest guard ever used: the handler looks no further. */
static _Atomic int guards_top;

_Atomic uint32_t shmrpc__seg_cuts;

static struct sigaction previous;
static _Atomic bool installed;

/* Hands a SIGBUS that is not ours to the handler that was there before ours: the default
 * is restored, and the faulting access, made again on return, raises it once more.
 *
 * A handler of others that chains back to ours (installed after ours, and ours again after
 * it) calls ours again, within the first call, with the same siginfo: the second call ends
 * the circle with the default. Told per thread by the delivery being passed on and the
 * frame passing it, not by a count: a handler that jumps out (siglongjmp) never returns
 * here, and the next fault is a new delivery, not a call within this one. A delivery at the
 * same place as one left by a jump has its frame at the same address, not deeper. */
static _Thread_local const siginfo_t *passing_info __attribute__((tls_model("initial-exec")));
static _Thread_local uintptr_t passing_frame __attribute__((tls_model("initial-exec")));

static void pass_on(int sig, siginfo_t *info, void *ctx)
{
    uintptr_t frame = (uintptr_t)__builtin_frame_address(0);
    bool again = passing_info == info && frame < passing_frame;
    /* SIG_DFL and SIG_IGN are values of sa_handler, which shares its place with
     * sa_sigaction: they are there, and no function, whatever the flags (SA_SIGINFO too). */
    bool handler = previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN;
    bool takes_info = handler && (previous.sa_flags & SA_SIGINFO);
    if (!again && handler) {
        const siginfo_t *outer_info = passing_info;
        uintptr_t outer_frame = passing_frame;
        passing_info = info;
        passing_frame = frame;
        if (takes_info)
            previous.sa_sigaction(sig, info, ctx);
        else
            previous.sa_handler(sig);
        passing_info = outer_info;
        passing_frame = outer_frame;
        return;
    }
    /* A SIGBUS sent by kill (no fault) that was ignored before ours stays ignored. */
    if (info->si_code <= 0 && previous.sa_handler == SIG_IGN) return;
    /* The rest dies of it as if we were not here, by the default: a fault, ignored or not
     * (the kernel does not let a fault be ignored), when the access is made again on
     * return; a SIGBUS sent by kill, with SIG_DFL before ours or a handler that chained
     * back to ours, raised again. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);
    if (info->si_code <= 0) raise(SIGBUS);
}

/* Async-signal-safe: atomics on the process's own table, mmap, sigaction. */
static void on_sigbus(int sig, siginfo_t *info, void *ctx)
{
    uintptr_t at = (uintptr_t)info->si_addr;
    if (info->si_code > 0) { /* a fault, not a kill */
        int top = atomic_load_explicit(&guards_top, memory_order_acquire);
        for (int i = 0; i < top; i++) {
            struct guard *g = &guards[i];
            uint32_t s = atomic_load_explicit(&g->state, memory_order_acquire);
            if (s != G_ACTIVE && s != G_BUSY) continue;
            uintptr_t base = atomic_load_explicit(&g->base, memory_order_relaxed);
            size_t len = atomic_load_explicit(&g->len, memory_order_relaxed);
            if (at < base || at - base >= len) continue;
            /* Another thread's handler may be replacing it: wait for it, and then the
             * access, made again, finds the zero pages. */
            while (!atomic_compare_exchange_weak(&g->state, &s, G_BUSY)) {
                if (s == G_BUSY) {
                    s = G_ACTIVE;
                    continue;
                }
                if (s != G_ACTIVE) goto not_ours; /* unguarded meanwhile: a use after close */
            }
            void *p = MAP_FAILED;
            if (!atomic_load_explicit(&g->cut, memory_order_relaxed))
                p = mmap((void *)base, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            bool ok = p != MAP_FAILED || atomic_load_explicit(&g->cut, memory_order_relaxed);
            if (ok) {
                atomic_store_explicit(&g->cut, 1, memory_order_release);
                atomic_fetch_add_explicit(&shmrpc__seg_cuts, 1, memory_order_release);
            }
            atomic_store_explicit(&g->state, G_ACTIVE, memory_order_release);
            if (ok) return;
            break;
        }
    }
not_ours:
    pass_on(sig, info, ctx);
}

static pthread_mutex_t install_mu = PTHREAD_MUTEX_INITIALIZER;

/* Installs the handler at every guard, unless it is there already: the first time over
 * whatever was there, and again where something replaced it since (a forked child that
 * set its crash signals back to the default, as test harnesses and daemons do; a program's
 * own handler), which then becomes the one a SIGBUS not ours goes to. */
static void install(void)
{
    struct sigaction sa, now;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    pthread_mutex_lock(&install_mu);
    if (sigaction(SIGBUS, NULL, &now) == 0 &&
        !((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_sigbus)) {
        previous = now;
        if (sigaction(SIGBUS, &sa, NULL) == 0) atomic_store(&installed, true);
    }
    pthread_mutex_unlock(&install_mu);
}

int shmrpc__seg_guard(void *base, size_t len)
{
    install();
    if (!atomic_load(&installed)) return -1;
    for (int i = 0; i < GUARDS; i++) {
        uint32_t s = G_FREE;
        if (!atomic_compare_exchange_strong(&guards[i].state, &s, G_SETTING)) continue;
        atomic_store_explicit(&guards[i].base, (uintptr_t)base, memory_order_relaxed);
        atomic_store_explicit(&guards[i].len, len, memory_order_relaxed);
        atomic_store_explicit(&guards[i].cut, 0, memory_order_relaxed);
        int top = atomic_load(&guards_top);
        while (top < i + 1 && !atomic_compare_exchange_weak(&guards_top, &top, i + 1)) {
        }
        atomic_store_explicit(&guards[i].state, G_ACTIVE, memory_order_release);
        return i;
    }
    return -1;
}

void shmrpc__seg_unguard(int g)
{
    if (g < 0 || g >= GUARDS) return;
    for (;;) {
        uint32_t s = G_ACTIVE;
        if (atomic_compare_exchange_weak(&guards[g].state, &s, G_FREE)) return;
        if (s == G_FREE || s == G_SETTING) return; /* not this caller's: nothing to do */
    }
}

_Atomic uint32_t *shmrpc__seg_guard_flag(int g)
{
    static _Atomic uint32_t never;
    return g >= 0 && g < GUARDS ? &guards[g].cut : &never;
}
