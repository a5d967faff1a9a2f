/* SPDX-License-Identifier: MIT */
/* Bytes from and to the shell, shared by shmrpcctl queue and map. */
#include "ctl_bytes.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shmrpc/status.h>

int ctl_read_stdin(shmrpc_buf *b)
{
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        if (shmrpc_buf_append(b, chunk, got) != 0) return b->err;
    return ferror(stdin) ? SHMRPC_ESYS(5) : 0;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void ctl_put_base64(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        char out[4] = {b64[v >> 18], b64[(v >> 12) & 63], i + 1 < n ? b64[(v >> 6) & 63] : '=',
                       i + 2 < n ? b64[v & 63] : '='};
        fwrite(out, 1, 4, stdout);
    }
    putchar('\n');
}

bool ctl_from_base64(const char *s, size_t n, shmrpc_buf *out)
{
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        n--;
    if (n % 4) return false;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = s[i + k];
            const char *at = c ? strchr(b64, c) : NULL;
            if (c == '=' && i + 4 == n && k >= 2) {
                pad++;
                v <<= 6;
                continue;
            }
            if (!at || pad) return false;
            v = v << 6 | (uint32_t)(at - b64);
        }
        uint8_t bytes[3] = {(uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
        shmrpc_buf_append(out, bytes, (size_t)(3 - pad));
    }
    return out->err == 0;
}

mode_t ctl_perms_of(const char *file)
{
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/%s", file);
    struct stat st;
    if (stat(path, &st) != 0 || st.st_uid != geteuid()) return 0600;
    return 0600 | (st.st_mode & 0066);
}
