/* SPDX-License-Identifier: MIT */
/* The shared-memory transport, shm://NAME: a control segment per service, a channel per
 * connection, worker processes that take any connection's call from a doorbell, and
 * the hybrid wait on both sides (docs/shm-transport.md). This file holds what both sides
 * use: names, segments and channel mappings; it calls no other file of the transport. The
 * sides are shm_server.c (with the files below it) and shm_client.c; the transport's table
 * is shm_transport.c. */
#include "transport/shm/shm_int.h"

#include "core/names.h"
#include "core/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- processes ----------------------------------------------------------------------- */

void shmrpc__shm_proc_set(shmrpc__proc *p, int32_t pid, uint64_t start)
{
    atomic_store_explicit(&p->start, start, memory_order_release);
    atomic_store_explicit(&p->pid, pid, memory_order_release);
}

/* --- names and segments -------------------------------------------------------------- */

/* NAME in shm://NAME: a service name or a port. */
int shmrpc__shm_check_key(const char *key, shmrpc_buf *err)
{
    size_t n = strlen(key);
    bool ok = n > 0 && n <= SHMRPC__KEY_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        char c = key[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-' || (c == '.' && i > 0);
    }
    if (!ok)
        shmrpc__msg_set(err,
                        "bad shm:// name '%s': 1 to %d letters, digits, '_', '-' or '.' (a "
                        "service's name or port)",
                        key, SHMRPC__KEY_MAX);
    return ok ? 0 : SHMRPC_EINVAL;
}

int shmrpc__shm_path(char *out, size_t cap, const char *key, const char *suffix, bool create,
                     shmrpc_buf *err)
{
    char name[SHMRPC__KEY_MAX + 32];
    snprintf(name, sizeof name, "shmrpc:%s%s", key, suffix);
    return shmrpc__ns_path(out, cap, name, create, err);
}

void shmrpc__shm_chan_name(char *out, size_t cap, const char *key, int32_t owner, unsigned slot,
                           uint32_t gen)
{
    snprintf(out, cap, "/shmrpc:%s:%" PRId32 ":c%u:%" PRIu32, key, owner, slot, gen);
}

int shmrpc__shm_sys_error(shmrpc_buf *err, const char *what, const char *name)
{
    int e = errno;
    shmrpc__msg_set(err, "%s %s: %s", what, name, strerror(e));
    return SHMRPC_ESYS(e);
}

static int check_segment(int fd, const char *name, uint64_t min_size, int *fd_out, uint64_t *size,
                         shmrpc_buf *err);

/* Opens an existing segment and refuses one that is not ours alone, or is too small. */
int shmrpc__shm_open_segment(const char *path, uint64_t min_size, int *fd_out, uint64_t *size,
                             shmrpc_buf *err)
{
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return shmrpc__shm_sys_error(err, "cannot open", path);
    return check_segment(fd, path, min_size, fd_out, size, err);
}

/* Keeps fd in *fd_out if it is ours alone and at least min_size bytes; else closes it. */
static int check_segment(int fd, const char *name, uint64_t min_size, int *fd_out, uint64_t *size,
                         shmrpc_buf *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rc = shmrpc__shm_sys_error(err, "cannot stat", name);
        close(fd);
        return rc;
    }
    int rc = 0;
    if (st.st_uid != geteuid())
        rc = SHMRPC_EPERM, shmrpc__msg_set(err, "%s belongs to uid %u, not to uid %u", name,
                                           (unsigned)st.st_uid, (unsigned)geteuid());
    else if (st.st_mode & 077)
        rc = SHMRPC_EPERM, shmrpc__msg_set(err, "%s is open to others (mode %03o); refusing it",
                                           name, (unsigned)(st.st_mode & 0777));
    else if ((uint64_t)st.st_size < min_size)
        rc = SHMRPC_EPROTO,
        shmrpc__msg_set(err, "%s is too small (%lld bytes)", name, (long long)st.st_size);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return 0;
}

/* Creates a segment that must not exist, 0600 whatever the umask, of size bytes. */
int shmrpc__shm_create_segment(const char *path, uint64_t size, int *fd_out, shmrpc_buf *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return shmrpc__shm_sys_error(err, "cannot create", path);
    if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)size) != 0) {
        int rc = shmrpc__shm_sys_error(err, "cannot size", path);
        close(fd);
        unlink(path);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* Creates a channel: a memfd, 0600 whatever the umask, of size bytes, sealed. It has no
 * name in /dev/shm: it goes when its last holder lets go, so no channel outlives its
 * processes. */
int shmrpc__shm_create_channel(const char *name, uint64_t size, int *fd_out, shmrpc_buf *err)
{
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return shmrpc__shm_sys_error(err, "cannot create", name);
    if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)size) != 0 ||
        fcntl(fd, F_ADD_SEALS, CHAN_SEALS) != 0) {
        int rc = shmrpc__shm_sys_error(err, "cannot size or seal", name);
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* Keeps fd in *fd_out if it is the memfd named name, ours alone, at least min_size bytes
 * and sealed as channels are; else closes it. Whatever reached us (a descriptor a client
 * handed over, or one opened through /proc), a broken client that gave another file, or
 * an unsealed one, costs its own connection only. */
int shmrpc__shm_fd_is_memfd(int32_t pid, int fd, const char *name)
{
    char path[64], link[256], want[200];
    shmrpc__proc_fd_path(path, sizeof path, pid, fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n < 0) return -1;
    link[n] = '\0';
    snprintf(want, sizeof want, "/memfd:%s (deleted)", name);
    return strcmp(link, want) == 0;
}

int shmrpc__shm_check_channel(int fd, const char *name, uint64_t min_size, int *fd_out,
                              uint64_t *size, shmrpc_buf *err)
{
    /* What we hold, not what a path led to a moment before. */
    int named = shmrpc__shm_fd_is_memfd(0, fd, name);
    int seals = fcntl(fd, F_GET_SEALS);
    int rc = 0;
    if (named != 1)
        rc = SHMRPC_EPROTO, shmrpc__msg_set(err, "the descriptor given is not %s", name);
    else if (seals < 0 || (seals & CHAN_SEALS) != CHAN_SEALS ||
             (seals & (F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)))
        rc = SHMRPC_EPROTO,
        shmrpc__msg_set(err, "%s is not sealed as a channel (seals %#x)", name, (unsigned)seals);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return check_segment(fd, name, min_size, fd_out, size, err);
}

/* Opens the channel that client pid holds as fd through /proc: for a client that did not
 * hand it over at the rendezvous (a client of a version before it). */
int shmrpc__shm_open_channel(int32_t pid, int32_t chan_fd, const char *name, uint64_t min_size,
                             int *fd_out, uint64_t *size, shmrpc_buf *err)
{
    char path[64];
    if (pid <= 0 || chan_fd < 0) {
        shmrpc__msg_set(err, "the slot of %s names no channel", name);
        return SHMRPC_EPROTO;
    }
    shmrpc__proc_fd_path(path, sizeof path, pid, chan_fd);
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return shmrpc__shm_sys_error(err, "cannot open", path);
    return shmrpc__shm_check_channel(fd, name, min_size, fd_out, size, err);
}

void *shmrpc__shm_map(int fd, uint64_t size)
{
    void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* The size of a channel that holds n bytes of data: a power of two of pages. */
static uint64_t chan_size_for(uint64_t n)
{
    uint64_t size = PAGE;
    if (n > SHMRPC__MAX_MSG_CAP) return UINT64_MAX; /* beyond any maximum */
    while (size < SHMRPC__CHAN_DATA + n)
        size *= 2;
    return size;
}

/* --- a mapped channel, as either side holds it --------------------------------------- */

uint8_t *shmrpc__chan_data(shmrpc__chan_map *m)
{
    return (uint8_t *)m->head + SHMRPC__CHAN_DATA;
}

void shmrpc__shm_bell(shmrpc__shm_ctl *ctl)
{
    atomic_fetch_add(&ctl->doorbell.word, 1);
    shmrpc__wake_mask(&ctl->doorbell, &ctl->sleeping, 1);
}

void shmrpc__shm_ring(shmrpc__shm_ctl *ctl, unsigned slot)
{
    atomic_fetch_or(&ctl->pending[slot / 64], (uint64_t)1 << (slot % 64));
    shmrpc__shm_bell(ctl);
}

void shmrpc__shm_unring(shmrpc__shm_ctl *ctl, unsigned slot)
{
    uint64_t bit = (uint64_t)1 << (slot % 64);
    if ((atomic_fetch_and(&ctl->pending[slot / 64], ~bit) & ~bit) != 0) shmrpc__shm_bell(ctl);
}

void shmrpc__chan_unmap(shmrpc__chan_map *m)
{
    if (m->head) munmap(m->head, (size_t)m->mapped);
    if (m->fd >= 0) close(m->fd);
    m->head = NULL;
    m->fd = -1;
    m->mapped = 0;
}

static int remap(shmrpc__chan_map *m, uint64_t size, shmrpc_buf *err)
{
    void *p = mremap(m->head, (size_t)m->mapped, (size_t)size, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) {
        shmrpc__msg_set(err, "cannot map a channel of %" PRIu64 " bytes: %s", size,
                        strerror(errno));
        return SHMRPC_ENOMEM;
    }
    m->head = p;
    m->mapped = size;
    return 0;
}

/* Maps all of the channel that the other side may have grown. Its claimed size is only
 * a hint: what is mapped is what the file really holds, within this side's maximum. */
int shmrpc__chan_follow(shmrpc__chan_map *m, uint64_t need, shmrpc_buf *err)
{
    if (SHMRPC__CHAN_DATA + need <= m->mapped) return 0;
    struct stat st;
    if (fstat(m->fd, &st) != 0) return shmrpc__shm_sys_error(err, "cannot stat", "a channel");
    uint64_t real = (uint64_t)st.st_size;
    if (real < SHMRPC__CHAN_DATA + need || real > m->max_size) {
        shmrpc__msg_set(err, "the channel holds %" PRIu64 " bytes, not the %" PRIu64 " it claims",
                        real, SHMRPC__CHAN_DATA + need);
        return SHMRPC_EPROTO;
    }
    return remap(m, real, err);
}

/* Grows the channel so that need bytes of data fit: the file, then its mapping, moved
 * (mremap) or, with kept, made anew while the old one stays mapped in *kept for the caller
 * to unmap (both map the same pages, so a view into the old one stays valid). */
static int grow(shmrpc__chan_map *m, uint64_t need, shmrpc__chan_map *kept, shmrpc_buf *err)
{
    if (SHMRPC__CHAN_DATA + need <= m->mapped) return 0;
    uint64_t size = chan_size_for(need);
    if (size > m->max_size) {
        shmrpc__msg_set(err, "a message of %" PRIu64 " bytes does not fit the channel's maximum",
                        need);
        return SHMRPC_ETOOBIG;
    }
    /* The other side may have grown the file further already (an answer this side did not
     * follow: its call timed out; or another worker's): sealed against shrinking, it is
     * then mapped as it is, within this side's maximum, not truncated. */
    struct stat st;
    if (fstat(m->fd, &st) != 0) return shmrpc__shm_sys_error(err, "cannot stat", "a channel");
    bool grew = (uint64_t)st.st_size < size;
    if (!grew) size = (uint64_t)st.st_size < m->max_size ? (uint64_t)st.st_size : m->max_size;
    if (grew && ftruncate(m->fd, (off_t)size) != 0)
        return shmrpc__shm_sys_error(err, "cannot grow", "a channel");
    if (kept) {
        shmrpc__shm_chan *p = shmrpc__shm_map(m->fd, size);
        if (p == NULL) {
            shmrpc__msg_set(err, "cannot map a channel of %" PRIu64 " bytes: %s", size,
                            strerror(errno));
            return SHMRPC_ENOMEM;
        }
        *kept = (shmrpc__chan_map){.fd = -1, .head = m->head, .mapped = m->mapped};
        m->head = p;
        m->mapped = size;
    } else {
        int rc = remap(m, size, err);
        if (rc != 0) return rc;
    }
    if (grew) atomic_store(&m->head->size, size);
    return 0;
}

int shmrpc__chan_reserve(shmrpc__chan_map *m, uint64_t need, shmrpc_buf *err)
{
    return grow(m, need, NULL, err);
}

int shmrpc__chan_reserve_keep(shmrpc__chan_map *m, uint64_t need, shmrpc__chan_map *kept,
                              shmrpc_buf *err)
{
    return grow(m, need, kept, err);
}

uint64_t shmrpc__chan_max_size(uint64_t max_msg)
{
    /* A request and its metadata, and a stream's rings after them (shm.h). Counted as the
     * cap at most, whose channel (8 GiB) holds them all: a maximum near the cap still bounds
     * what a peer may grow the channel to. */
    uint64_t n = max_msg + SHMRPC_METADATA_MAX_BYTES + SHMRPC__CTX_MSG_CAP + 63 +
                 2 * SHMRPC__RING_BYTES(SHMRPC__RING_MAX);
    return chan_size_for(n < SHMRPC__MAX_MSG_CAP ? n : SHMRPC__MAX_MSG_CAP);
}
