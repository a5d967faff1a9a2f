/* SPDX-License-Identifier: MIT */
/* A growable text buffer for building generated code. Running out of memory is fatal
 * in the generator: it prints a message and exits, so callers need not check. */
#ifndef SHMRPCGEN_SBUF_H
#define SHMRPCGEN_SBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct sbuf {
    char *p; /* NUL-terminated once anything is appended */
    size_t len, cap;
} sbuf;

void sb_init(sbuf *b);
void sb_free(sbuf *b);
void sb_putn(sbuf *b, const char *s, size_t n);
void sb_puts(sbuf *b, const char *s);
void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vprintf(sbuf *b, const char *fmt, va_list ap);
/* The contents, "" when empty; owned by the buffer. */
const char *sb_str(sbuf *b);
/* Hands the contents to the caller (malloc'd) and empties the buffer. */
char *sb_take(sbuf *b);

/* p, or when p is NULL (memory ran out) a message and exit(2): the generator's one
 * answer to running out of memory, for arena allocations as for buffers. */
void *gen_must(const void *p);

#endif
