/* SPDX-License-Identifier: MIT */
/* The lock segment's layout (docs/lock.md): what lock.c writes and waits on, and what the
 * admin API (admin.c) reads to name a lock's holder. */
#ifndef SHMRPC_SRC_LOCK_SEG_H
#define SHMRPC_SRC_LOCK_SEG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/wait.h"

#define LOCK_MAGIC 0x4b434c53u /* "SLCK" */
#define LOCK_VERSION 2u        /* 2: waiters flag the word; the sleepers count is unused */

/* owner_tag: (start time << TAG_TID_BITS) | tid. Linux thread ids stay below 2^22
 * (PID_MAX_LIMIT), and 42 bits of clock ticks since boot last centuries. */
#define TAG_TID_BITS 22
#define TAG_TID_MASK ((UINT64_C(1) << TAG_TID_BITS) - 1)
#define TAG_START_MASK ((UINT64_C(1) << (64 - TAG_TID_BITS)) - 1)

/* The word: the owner's thread id (0: free), and this bit when a waiter may sleep on it.
 * A flag in the word, unlike a count beside it, is cleared by every release: a bad write
 * to it costs one useless wake or one sleep, never every later one. */
#define WAITERS 0x80000000u

/* The segment. Every field is read from shared memory into a local before use; no
 * pointer is ever stored here. */
struct lock_seg {
    /* Written once by the creator, magic last with a release store; read by openers. */
    _Atomic uint32_t magic;
    uint32_t version;
    uint32_t size; /* sizeof(struct lock_seg) */
    uint32_t reserved;
    /* word: the owner's thread id, 0 when free, plus WAITERS. Written by acquirers (CAS
     * from 0 or from a dead owner), by waiters (CAS adding WAITERS before they sleep) and
     * by the owner (CAS to 0 at release, which wakes one sleeper when WAITERS was set);
     * read by waiters, who sleep on it. sleepers: unused (0), nobody reads it. */
    shmrpc__futex futex;
    /* The owner's (start time, tid), so that a waiter can tell the owner from a later
     * thread that reuses its id. Written by the owner just after it takes the word and
     * cleared just before it frees it; read by waiters checking the owner. */
    _Atomic uint64_t owner_tag;
    /* The CPU the owner took the lock on. Written by the owner; read by spinning waiters,
     * which yield instead of spinning when they share that CPU. */
    shmrpc__presence owner_cpu;
    /* Statistics, relaxed. acquisitions and owner_deaths are written only by the thread
     * that holds the lock, so a plain increment is enough; contended, sleeps and
     * timer_wakes are added to by waiters. Read by shmrpc_lock_get_stats. */
    _Atomic uint64_t acquisitions;
    _Atomic uint64_t contended;
    uint8_t pad0[8];
    /* Second cache line: counters touched only on the slow paths. */
    _Atomic uint64_t sleeps;
    _Atomic uint64_t owner_deaths;
    _Atomic uint64_t steals;      /* written by the thread that stole it; 0 in older segments */
    _Atomic uint64_t timer_wakes; /* added to by waiters; 0 in older segments */
    uint8_t pad1[32];
};

_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2,
               "atomics shared between processes must be lock-free");
_Static_assert(sizeof(shmrpc__futex) == 8 && sizeof(shmrpc__presence) == 8, "wait.h layout");
_Static_assert(offsetof(struct lock_seg, magic) == 0, "layout");
_Static_assert(offsetof(struct lock_seg, version) == 4, "layout");
_Static_assert(offsetof(struct lock_seg, size) == 8, "layout");
_Static_assert(offsetof(struct lock_seg, futex) == 16, "layout");
_Static_assert(offsetof(struct lock_seg, owner_tag) == 24, "layout");
_Static_assert(offsetof(struct lock_seg, owner_cpu) == 32, "layout");
_Static_assert(offsetof(struct lock_seg, acquisitions) == 40, "layout");
_Static_assert(offsetof(struct lock_seg, contended) == 48, "layout");
_Static_assert(offsetof(struct lock_seg, sleeps) == 64, "layout");
_Static_assert(offsetof(struct lock_seg, owner_deaths) == 72, "layout");
_Static_assert(offsetof(struct lock_seg, steals) == 80, "layout");
_Static_assert(offsetof(struct lock_seg, timer_wakes) == 88, "layout");
_Static_assert(sizeof(struct lock_seg) == 128, "layout");

#endif
