/* SPDX-License-Identifier: MIT */
/* The handlers of tests/common/calls.svc, and what they share with the test process. */
#ifndef SHMRPC_TEST_CALLS_HANDLERS_H
#define SHMRPC_TEST_CALLS_HANDLERS_H

#include <stdint.h>

#include "calls.h"

#define CALLS_NAPS_LOGGED 256

/* Shared between the test and its servers' workers: calls_shared_map() maps it
 * MAP_SHARED before any fork. */
typedef struct calls_shared {
    _Atomic int32_t napping; /* the pid of a worker inside nap(), or 0 */
    _Atomic int64_t calls;   /* handler calls, all workers */
    _Atomic int32_t running; /* naps running now, all workers and threads */
    _Atomic int32_t most;    /* the most naps that ran at once (the test resets it) */
    /* Each nap's ms, in the order the naps began, so that a test that gives each call its
     * own ms (a tag) can tell which calls ran and how often: the first CALLS_NAPS_LOGGED
     * naps since the test set naps_begun to 0, which counts them all. */
    _Atomic int32_t naps_begun;
    uint32_t nap_ms[CALLS_NAPS_LOGGED];
    _Atomic int32_t ran[64]; /* runs of each tagged call (calls_tag), by its id */
    _Atomic int32_t wake;    /* naps of CALLS_NAP_HELD end once it is not 0 (the test sets it) */
} calls_shared;

/* A nap of this many ms (the most a uint16 says) lasts until the test sets sh->wake, at
 * most 30 s: a call that runs for as long as the test needs, however slow the machine. */
#define CALLS_NAP_HELD 65535u

/* An echo whose data is a calls_tag is a tagged call: its handler counts the run in
 * sh->ran[id] (an id below 64), then naps ms milliseconds, so a test tells each call's runs
 * apart (a call run twice and another not at all are not one run each). */
#define CALLS_TAG_MAGIC 0x45434e4fu /* "ONCE" */
typedef struct calls_tag {
    uint32_t magic, id, ms;
} calls_tag;

extern calls_shared *sh;
extern const Calls_handlers calls_test_handlers;

/* Maps sh; 0, or -1 when mmap failed. */
int calls_shared_map(void);

#endif
