/* SPDX-License-Identifier: MIT */
/* The waiters' futex words, the changing side: a change wakes as many waiters as it
 * brought (signal_waiters), a waiter announces itself before its last look (announce), a
 * push defers its wake-ups over a batch (flush_signal). */
#include "queue/queue_int.h"

/* n things changed that waiters on f wait for (the caller's change is sequentially
 * consistent, and so is this load, so a waiter that set WAITING before its last look is
 * seen). Only then does the word move, and only for a sleeper is there a syscall, which
 * wakes n sleepers (0: all) rather than all of them racing for n messages (or n messages'
 * room). The others sleep on: the word moved, so each looks again at the end of its
 * 20 ms slice at the latest, or sooner when a later change finds SLEEPING set again (by
 * a waiter that went back to sleep). Setting SLEEPING again here when n were woken, so
 * that the next change wakes the next, was measured: it made every other release a
 * useless FUTEX_WAKE and halved 64 KiB zero-copy throughput. */
void shmrpc__q_signal_waiters(shmrpc__futex *f, uint32_t n)
{
    uint32_t w = atomic_load(&f->word);
    while (w & FLAGS)
        if (atomic_compare_exchange_weak(&f->word, &w, (w + STEP) & ~FLAGS)) {
            if (w & SLEEPING) shmrpc__futex_wake(f, n == 0 || n > INT32_MAX ? INT32_MAX : (int)n);
            return;
        }
}

/* Announces a waiter on f before its last look: the word with WAITING, or 0 when the word
 * changed meanwhile (look again). */
uint32_t shmrpc__q_announce(shmrpc__futex *f)
{
    uint32_t w = atomic_load(&f->word);
    if (w & WAITING) return w;
    return atomic_compare_exchange_strong(&f->word, &w, w | WAITING) ? w | WAITING : 0;
}

void shmrpc__q_flush_signal(shmrpc_queue *q, struct producing *pr)
{
    uint32_t n = pr->unsignalled;
    if (n == 0) return;
    pr->unsignalled = 0;
    if (q->sp) fence_for_waiters();
    /* Broadcast: every subscriber wants every message, so every sleeper is woken. */
    shmrpc__q_signal_waiters(&q->hdr->nonempty, q->bcast ? 0 : n);
}
