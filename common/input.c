/* SPDX-License-Identifier: MIT */
/* Opening a file a user names (input.h). */
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
