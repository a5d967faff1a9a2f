/* SPDX-License-Identifier: MIT */
/* Faults injected on purpose (SHMRPC_FAULTS, docs/faults.md): the environment read and
 * parsed when a server or client is made, bound to its service's methods, and the draw
 * that says which fault a call gets. A server or client made without the variable has
 * none (NULL), and its calls look no further than that pointer. */
#ifndef SHMRPC_SRC_FAULTS_H
#define SHMRPC_SRC_FAULTS_H

#include "core/core.h"

typedef enum { SHMRPC__FAULT_SERVER, SHMRPC__FAULT_CLIENT } shmrpc__fault_side;
typedef enum { SHMRPC__FAULT_STATUS, SHMRPC__FAULT_DELAY, SHMRPC__FAULT_KILL } shmrpc__fault_do;

/* One entry of SHMRPC_FAULTS, as written. */
typedef struct shmrpc__fault {
    shmrpc__fault_do action;
    int status;       /* FAULT_STATUS: the status the call fails with */
    int64_t delay_ms; /* FAULT_DELAY: 0..SHMRPC__FAULT_DELAY_MAX */
    uint64_t below;   /* fires when a draw of 64 bits is below it; UINT64_MAX: always */
    const char *text; /* the entry as written, for the message ("server:add:kill") */
} shmrpc__fault;

typedef struct shmrpc__faults shmrpc__faults;

#define SHMRPC__FAULT_DELAY_MAX 60000

/* The faults of this side in SHMRPC_FAULTS (and SHMRPC_FAULTS_SEED), read now: *out is
 * NULL when the variable is unset or names nothing for this side. SHMRPC_EINVAL with a
 * message in err naming the entry and what is wrong with it; SHMRPC_ENOMEM. */
int shmrpc__faults_load(shmrpc__faults **out, shmrpc__fault_side side, shmrpc_buf *err);

/* Ties f's entries to the methods of info (a server's at register, a client's at new):
 * an entry for "Service.method" of another service is dropped, an unknown method of this
 * one refused (SHMRPC_EINVAL, naming the entry and the methods there are). *f becomes NULL
 * when no entry is left. */
int shmrpc__faults_bind(shmrpc__faults **f, const shmrpc_service_info *info, shmrpc_buf *err);

/* Whether one of f's entries kills (a server listening at inproc:// would kill its
 * caller). */
bool shmrpc__faults_kills(const shmrpc__faults *f);

/* The fault that a call of method id (an index of the bound service) gets this time, or
 * NULL: the first entry for it (or "*") whose draw fires. Safe on many threads. */
const shmrpc__fault *shmrpc__faults_draw(shmrpc__faults *f, uint32_t id);

/* Sleeps ms milliseconds, to the end even when a signal wakes it. */
void shmrpc__faults_sleep(int64_t ms);

void shmrpc__faults_free(shmrpc__faults *f);

#endif
