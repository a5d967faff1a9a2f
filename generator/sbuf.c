/* SPDX-License-Identifier: MIT */
/* A growable text buffer for building generated code. */
#include "sbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *gen_must(const void *p)
{
    if (p == NULL) {
        fputs("shmrpcgen: out of memory\n", stderr);
        exit(2);
    }
    return (void *)p;
}

void sb_init(sbuf *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
}

void sb_free(sbuf *b)
{
    free(b->p);
    sb_init(b);
}

static void reserve(sbuf *b, size_t n)
{
    if (b->cap - b->len > n) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= n)
        cap *= 2;
    b->p = gen_must(realloc(b->p, cap));
    b->cap = cap;
}

void sb_putn(sbuf *b, const char *s, size_t n)
{
    reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sb_puts(sbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

void sb_vprintf(sbuf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return;
    reserve(b, (size_t)n);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

const char *sb_str(sbuf *b)
{
    return b->p ? b->p : "";
}

char *sb_take(sbuf *b)
{
    char *p = b->p;
    if (p == NULL) {
        p = malloc(1);
        if (p == NULL) {
            fputs("shmrpcgen: out of memory\n", stderr);
            exit(2);
        }
        *p = '\0';
    }
    sb_init(b);
    return p;
}
