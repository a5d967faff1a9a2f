/* SPDX-License-Identifier: MIT */
/* Opening a file a user names, and checking UTF-8 (input.h). */
#include "input.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

const char *shmrpc__file_kind(mode_t m)
{
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISDIR(m)) return "a folder";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISLNK(m)) return "a symbolic link";
    return "not a regular file";
}

int shmrpc__open_regular(const char *path, int flags, mode_t mode, const char **kind_out)
{
    const char *unused, **kind = kind_out ? kind_out : &unused;
    *kind = NULL;
    int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, mode);
    if (fd < 0) {
        /* A FIFO opened to write with no reader: ENXIO, which says nothing to a user. */
        struct stat st;
        if (errno == ENXIO && stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
            *kind = shmrpc__file_kind(st.st_mode);
            errno = EINVAL;
        }
        return -1;
    }
    struct stat st;
    int e = 0;
    if (fstat(fd, &st) != 0)
        e = errno;
    else if (!S_ISREG(st.st_mode))
        *kind = shmrpc__file_kind(st.st_mode);
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
        e = errno;
    if (e || *kind) {
        close(fd);
        errno = e ? e : EINVAL;
        return -1;
    }
    return fd;
}

size_t shmrpc__utf8_invalid_at(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0) lo = 0xa0; /* overlong below U+0800 */
            if (c == 0xed) hi = 0x9f; /* U+D800..U+DFFF: surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0) lo = 0x90; /* overlong below U+10000 */
            if (c == 0xf4) hi = 0x8f; /* past U+10FFFF */
        } else {
            return i; /* a continuation byte, an overlong lead (C0, C1) or F5..FF */
        }
        if (n - i < len || p[i + 1] < lo || p[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if ((p[i + k] & 0xc0) != 0x80) return i;
        i += len;
    }
    return n;
}
