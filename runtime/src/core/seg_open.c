/* SPDX-License-Identifier: MIT */
/* Making a named segment, and attaching to one another process made, as the lock, the
 * queue and the map each do (segment.h): the steps in their order, the bounded waits for
 * a creator, and what a failure unmaps or removes. Each structure's words and checks come
 * in its table, shmrpc__seg_ops. */
#include "core/segment.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "core/core.h"
#include "core/wait.h"

int shmrpc__seg_make(const shmrpc__seg_how *how, uint64_t size, shmrpc__seg_mapping *out)
{
    const shmrpc__seg_ops *ops = how->ops;
    memset(out, 0, sizeof *out);
    int fd;
    int rc = shmrpc__seg_create(ops->kind, how->path, how->name, how->perms, &fd);
    if (rc != 0) return rc;
    /* fchmod: shm_open's mode passes through the umask, which must neither widen nor
     * narrow what was asked. */
    if (fchmod(fd, how->perms) != 0 || ftruncate(fd, (off_t)size) != 0)
        rc = ops->sys_fail(how, SHMRPC__SEG_SIZE, errno, size);
    void *p = MAP_FAILED;
    if (rc == 0) {
        p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) rc = ops->sys_fail(how, SHMRPC__SEG_MAP, errno, size);
    }
    /* Its identity, by which its creator later knows the name is still its segment's (a
     * map's growth, auto_unlink) and an owner check finds it in /proc/TID/maps (a lock). */
    if (rc == 0 && fstat(fd, &out->st) != 0) {
        rc = ops->sys_fail(how, SHMRPC__SEG_STAT, errno, size);
        munmap(p, (size_t)size);
    }
    close(fd);
    if (rc != 0) {
        shm_unlink(how->path);
        return rc;
    }
    out->base = p;
    out->len = (size_t)size;
    return 0;
}

int shmrpc__seg_attach(const shmrpc__seg_how *how, int fd, shmrpc__seg_mapping *out)
{
    const shmrpc__seg_ops *ops = how->ops;
    memset(out, 0, sizeof *out);
    int64_t give_up = shmrpc__now_ns() + ops->wait_ns;
    for (;;) { /* the creator sizes it right after creating it */
        if (fstat(fd, &out->st) != 0) {
            int err = errno;
            return shmrpc__err_set(SHMRPC_ESYS(err), "fstat of %s '%s': %s", ops->kind, how->name,
                                   shmrpc__seg_syserr(err));
        }
        int rc = shmrpc__seg_check_owner(&out->st, ops->kind, how->name, how->perms);
        if (rc != 0) return rc;
        if (out->st.st_size != 0 || shmrpc__now_ns() >= give_up) break;
        shmrpc__seg_nap();
    }
    int rc = ops->check_size(how, &out->st);
    if (rc != 0) return rc;
    size_t len = (size_t)out->st.st_size;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return ops->sys_fail(how, SHMRPC__SEG_MAP, errno, len);
    /* The creator writes its magic last, with a release store: seen, so is the rest. */
    const _Atomic uint32_t *at = p;
    uint32_t magic;
    while ((magic = atomic_load_explicit(at, memory_order_acquire)) == 0 &&
           shmrpc__now_ns() < give_up)
        shmrpc__seg_nap();
    out->base = p;
    out->len = len;
    rc = ops->check_header(how, out, magic);
    if (rc != 0) {
        munmap(p, len);
        out->base = NULL;
        out->len = 0;
    }
    return rc;
}
