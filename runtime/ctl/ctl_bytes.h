/* SPDX-License-Identifier: MIT */
/* Bytes from and to the shell, shared by shmrpcctl queue and map: all of stdin, and padded
 * base64 both ways. */
#ifndef SHMRPC_CTL_BYTES_H
#define SHMRPC_CTL_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <shmrpc/buf.h>

/* Reads all of stdin into b: 0, or the buffer's or an I/O status. */
int ctl_read_stdin(shmrpc_buf *b);

/* Prints s on f as it may go to a terminal: a byte that is not printable ASCII (or is a
 * backslash) as \xNN, so that what a server sent can neither forge a line nor reach the
 * terminal as an escape. */
void ctl_put_safe(FILE *f, const char *s);
/* The same into out (cap bytes, cap > 0), cut before an escape that would not fit and
 * ended with a NUL: text that is ASCII, so valid UTF-8 for JSON, whatever s was. */
void ctl_safe_copy(char *out, size_t cap, const char *s);

/* Prints p[0..n) as padded base64 and a newline on stdout. */
void ctl_put_base64(const uint8_t *p, size_t n);

/* Decodes padded base64 text (whitespace after it ignored) into out; false if it is not. */
bool ctl_from_base64(const char *s, size_t n, shmrpc_buf *out);

/* The perms to open the segment /dev/shm/FILE with: 0600, or its own mode when it is this
 * user's (one shared with others, 0666 say, is refused when asked for 0600, and shmrpcctl
 * names it on purpose); another user's stays 0600, so that one made by a squatter is
 * refused as the library refuses it. */
mode_t ctl_perms_of(const char *file);

#endif
