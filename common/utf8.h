/* SPDX-License-Identifier: MIT */
/* The project's one UTF-8 check, built into libshmrpc and into shmrpc_common (utf8.c). */
#ifndef SHMRPC_COMMON_UTF8_H
#define SHMRPC_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The offset of the first byte of s[0..n) that starts no valid UTF-8 sequence (shortest
 * forms, no surrogates, nothing past U+10FFFF; a sequence cut short by n is invalid), or
 * n when all of it is UTF-8. */
size_t shmrpc__utf8_invalid_at(const char *s, size_t n);

/* The length of the UTF-8 sequence at s (n > 0 bytes left), or 0 when none starts there. */
size_t shmrpc__utf8_seq_len(const char *s, size_t n);

/* Whether the n bytes at p are UTF-8, by the same rules. */
static inline bool shmrpc__utf8_valid(const uint8_t *p, size_t n)
{
    return shmrpc__utf8_invalid_at((const char *)p, n) == n;
}

#endif
