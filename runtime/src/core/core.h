/* SPDX-License-Identifier: MIT */
/* The core's internal interfaces (shmrpc__*), which every folder of libshmrpc may use:
 * error messages, the calling thread's message, the one UTF-8 check, and the arena's
 * introspection. */
#ifndef SHMRPC_SRC_CORE_H
#define SHMRPC_SRC_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc.h>

#include "utf8.h"

#define SHMRPC__FMT(a, b) __attribute__((format(printf, a, b)))

/* --- messages (msg.c) --------------------------------------------------------------
 * An error message kept in a shmrpc_buf, NUL-terminated just past len. The buffer only
 * grows, so once it has held a message of some size, setting one of that size again
 * does not allocate. When memory runs out the message is truncated, never lost. */
void shmrpc__msg_clear(shmrpc_buf *m);
void shmrpc__msg_set(shmrpc_buf *m, const char *fmt, ...) SHMRPC__FMT(2, 3);
void shmrpc__msg_vset(shmrpc_buf *m, const char *fmt, va_list ap) SHMRPC__FMT(2, 0);
void shmrpc__msg_append(shmrpc_buf *m, const char *fmt, ...) SHMRPC__FMT(2, 3);
void shmrpc__msg_vappend(shmrpc_buf *m, const char *fmt, va_list ap) SHMRPC__FMT(2, 0);
/* The message, or "" when none is set. */
const char *shmrpc__msg_get(const shmrpc_buf *m);

/* --- the calling thread's message (status.c) ----------------------------------------
 * How public functions follow the rule in status.h. A function whose failures come
 * from deep inside (a transport, a segment) starts with m = shmrpc__err_begin(), hands m
 * down as the `err` of what it calls, and returns shmrpc__err_end(rc): a failure that
 * wrote nothing to m then reads as shmrpc_strerror(rc). A function that fails in one
 * place returns shmrpc__err_set(rc, ...) there, or shmrpc__err_code(rc) when the status
 * says it all. */
shmrpc_buf *shmrpc__err_begin(void);
int shmrpc__err_end(int rc);
int shmrpc__err_set(int rc, const char *fmt, ...) SHMRPC__FMT(2, 3);
int shmrpc__err_vset(int rc, const char *fmt, va_list ap) SHMRPC__FMT(2, 0);
int shmrpc__err_code(int rc);

/* Decode-error texts shared by the server's ctx and the client (msg.c):
 * "METHOD: WHAT: WHY" or "METHOD: WHAT, field 'FIELD': WHY"; NULL parts are left out. */
void shmrpc__decode_msg(char *out, size_t cap, const char *method, const char *what,
                        const char *field, const char *why);

/* Whether rc is one of status.h's failures (SHMRPC_ESYS(errno) included) (status.c). */
bool shmrpc__status_known(int rc);

/* --- arena introspection, for tests (arena.c) ---------------------------------------- */
size_t shmrpc__arena_blocks(const shmrpc_arena *a);
size_t shmrpc__arena_held(const shmrpc_arena *a);

#endif
