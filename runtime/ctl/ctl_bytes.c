/* SPDX-License-Identifier: MIT */
/* Bytes from and to the shell, shared by shmrpcctl queue and map; base64 is libsodium's. */
#include "ctl_bytes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shmrpc/status.h>
#include <sodium.h>

void ctl_put_safe(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7f && c != '\\')
            fputc(c, f);
        else
            fprintf(f, "\\x%02x", c);
    }
}

void ctl_safe_copy(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = c >= 0x20 && c < 0x7f && c != '\\';
        if (n + (plain ? 1 : 4) >= cap) break;
        if (plain)
            out[n++] = (char)c;
        else
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", c);
    }
    out[n] = '\0';
}

int ctl_read_stdin(shmrpc_buf *b)
{
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        if (shmrpc_buf_append(b, chunk, got) != 0) return b->err;
    return ferror(stdin) ? SHMRPC_ESYS(5) : 0;
}

void ctl_put_base64(const uint8_t *p, size_t n)
{
    size_t len = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *text = malloc(len);
    if (!text) {
        fputs("shmrpcctl: out of memory\n", stderr);
        exit(1);
    }
    sodium_bin2base64(text, len, p, n, sodium_base64_VARIANT_ORIGINAL);
    puts(text);
    free(text);
}

bool ctl_from_base64(const char *s, size_t n, shmrpc_buf *out)
{
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        n--;
    size_t at = out->len, len = 0;
    if (shmrpc_buf_reserve(out, n / 4 * 3 + 3) != 0) return false;
    if (sodium_base642bin(out->data + at, out->cap - at, s, n, NULL, &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return false;
    out->len = at + len;
    return true;
}

mode_t ctl_perms_of(const char *file)
{
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/%s", file);
    struct stat st;
    if (stat(path, &st) != 0 || st.st_uid != geteuid()) return 0600;
    return 0600 | (st.st_mode & 0066);
}
