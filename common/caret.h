/* SPDX-License-Identifier: MIT */
/* The source line under a compiler-style error, and a caret under the column: one rule for
 * the .svc front end (idl/diag.c) and the service.ini reader (runtime/config/ini.c),
 * so that both point the same way. Depends on nothing but the C library. */
#ifndef SHMRPC_COMMON_CARET_H
#define SHMRPC_COMMON_CARET_H

#include <stddef.h>

/* Where the text goes: n bytes at s, appended to out (a FILE, a buffer). */
typedef void (*shmrpc__caret_put)(void *out, const char *s, size_t n);

/* Line s (n bytes, without its line end) as written, control bytes (which could drive a
 * terminal) as '?', then a line with a caret under 1-based column col (a byte offset):
 * tabs are kept so that it lines up, and a UTF-8 character counts once; a byte that is no
 * part of a valid UTF-8 sequence is shown as '?' and counts once too. A line longer
 * than SHMRPC__CARET_SHOWN bytes is shown as a window around the column, "..." marking
 * what is cut. Both lines end with '\n'. */
void shmrpc__caret(const char *s, size_t n, int col, shmrpc__caret_put put, void *out);

#define SHMRPC__CARET_SHOWN 160

#endif
