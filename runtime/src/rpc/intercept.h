/* SPDX-License-Identifier: MIT */
/* The interceptors of a client or a server (shmrpc/intercept.h): the chain registration
 * builds, and the befores and afters that client.c and dispatch.c run around a call. A
 * client or server without interceptors has no chain (NULL), and its calls look no further
 * than that pointer. */
#ifndef SHMRPC_SRC_INTERCEPT_H
#define SHMRPC_SRC_INTERCEPT_H

#include "core/core.h"

typedef struct shmrpc__icpts shmrpc__icpts;

/* One call as its interceptors see it: pub is what they are handed (first, so a pointer to
 * it is one to this). A refusal's or replacement's message goes to ctx (a server's call) or
 * else to msg (a client's). */
typedef struct shmrpc__icall {
    shmrpc_call_info pub;
    shmrpc_buf *msg;
    bool msg_set; /* shmrpc_intercept_error wrote the message */
} shmrpc__icall;

/* Appends (i, arg) to *chain, made on the first; SHMRPC_EINVAL with the thread's message. */
int shmrpc__icpts_add(shmrpc__icpts **chain, const shmrpc_interceptor *i, void *arg);
void shmrpc__icpts_free(shmrpc__icpts *chain);

/* Runs the befores in order until one refuses: 0, or the refusal (with its message set).
 * *ran: how many let the call go on (whose afters are due). */
int shmrpc__icpts_before(const shmrpc__icpts *chain, shmrpc__icall *ic, uint32_t *ran);
/* Runs the afters of the first ran interceptors, the last first, on a call that ended with
 * rc: the status it ends with (a replacement's message set). */
int shmrpc__icpts_after(const shmrpc__icpts *chain, shmrpc__icall *ic, uint32_t ran, int rc);

#endif
