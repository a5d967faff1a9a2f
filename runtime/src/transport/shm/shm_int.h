/* SPDX-License-Identifier: MIT */
/* The shm:// transport's insides, shared by its files: shm.c (names, segments and channel
 * mappings), shm_rdv.c (the rendezvous's sockets), the server side (shm_server.c and the
 * files below it, which share shm_server_int.h), shm_client.c (connect, call, wait) and
 * shm_transport.c (the transport's table). The layouts they share are in shm.h. */
#ifndef SHMRPC_SRC_SHM_INT_H
#define SHMRPC_SRC_SHM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc/rpc.h"
#include "core/names.h"
#include "transport/shm/shm.h"

#define PAGE ((uint64_t)4096)

/* The seals of a channel: it may grow, never shrink (a peer that truncated it would make
 * the others fault on what they mapped), and no seal may be added (F_SEAL_GROW or
 * F_SEAL_WRITE would keep the other side from answering). */
#define CHAN_SEALS (F_SEAL_SHRINK | F_SEAL_SEAL)

typedef struct shmrpc__chan_map {
    int fd;
    shmrpc__shm_chan *head;
    uint64_t mapped;
    uint64_t max_size; /* the largest size this side accepts */
} shmrpc__chan_map;

/* Publishes who holds p: the start time first, then the pid (both release), so that a
 * reader that sees the pid sees its start time. */
void shmrpc__shm_proc_set(shmrpc__proc *p, int32_t pid, uint64_t start);

/* NAME in shm://NAME: a service name or a port. */
int shmrpc__shm_check_key(const char *key, shmrpc_buf *err);

/* A service's files are in this user's private directory (names.h): its control segment
 * "shmrpc:KEY", its rendezvous "shmrpc:KEY:rdv" and its lock "shmrpc:KEY:lock"; channels
 * are memfds named "shmrpc:KEY:OWNERPID:cSLOT:GEN". Keys cannot hold ':', so no service's
 * name can be another's channel, rendezvous or lock, nor a lock's ("shmrpc.lock.NAME"). The
 * path of key's file of that suffix ("" for the control segment, ":rdv", ":lock") into
 * out, the directory made if create (a server): 0, or a status with why in err. */
int shmrpc__shm_path(char *out, size_t cap, const char *key, const char *suffix, bool create,
                     shmrpc_buf *err);

/* A channel's name: "/shmrpc:KEY:OWNERPID:cSLOT:GEN". */
void shmrpc__shm_chan_name(char *out, size_t cap, const char *key, int32_t owner, unsigned slot,
                           uint32_t gen);

/* Whether descriptor fd of process pid (0: this one) is the memfd name (a channel's name
 * without its "/"): 1 or 0, -1 when /proc does not say (errno: ENOENT, no such fd). */
int shmrpc__shm_fd_is_memfd(int32_t pid, int fd, const char *name);

/* "WHAT NAME: strerror(errno)" into err; SHMRPC_ESYS(errno). */
int shmrpc__shm_sys_error(shmrpc_buf *err, const char *what, const char *name);

/* Opens the existing segment at path and refuses one that is not ours alone, or is too
 * small. */
int shmrpc__shm_open_segment(const char *path, uint64_t min_size, int *fd_out, uint64_t *size,
                             shmrpc_buf *err);

/* Creates a segment at path that must not exist, 0600 whatever the umask, of size bytes. */
int shmrpc__shm_create_segment(const char *path, uint64_t size, int *fd_out, shmrpc_buf *err);

/* Creates a channel: a memfd, 0600 whatever the umask, of size bytes, sealed. It has no
 * name in /dev/shm: it goes when its last holder lets go, so no channel outlives its
 * processes. */
int shmrpc__shm_create_channel(const char *name, uint64_t size, int *fd_out, shmrpc_buf *err);

/* Keeps fd in *fd_out if it is the memfd named name, ours alone, at least min_size bytes
 * and sealed as channels are; else closes it. Whatever reached us (a descriptor a client
 * handed over, or one opened through /proc), a broken client that gave another file, or
 * an unsealed one, costs its own connection only. */
int shmrpc__shm_check_channel(int fd, const char *name, uint64_t min_size, int *fd_out,
                              uint64_t *size, shmrpc_buf *err);

/* Opens the channel that client pid holds as fd through /proc: for a client that did not
 * hand it over at the rendezvous (a client of a version before it). */
int shmrpc__shm_open_channel(int32_t pid, int32_t chan_fd, const char *name, uint64_t min_size,
                             int *fd_out, uint64_t *size, shmrpc_buf *err);

/* Where a channel's message begins, after its head. */
uint8_t *shmrpc__chan_data(shmrpc__chan_map *m);

/* Unmaps and closes a channel (either may be missing). */
void shmrpc__chan_unmap(shmrpc__chan_map *m);
/* The bell: the doorbell's word moved on, and a sleeping worker woken if any. */
void shmrpc__shm_bell(shmrpc__shm_ctl *ctl);
/* Rings the doorbell for the request in slot's channel: its pending bit, then the bell,
 * and a wake-up for a sleeping worker (the client's, or a watcher's that stopped watching). */
void shmrpc__shm_ring(shmrpc__shm_ctl *ctl, unsigned slot);
/* Clears slot's pending bit for a request that nobody will serve (withdrawn, or its slot
 * freed), and rings the doorbell when other bits of its word are set: a call in flight may
 * have left its ring to the request whose bit this was (shm_client.c, ring_lane). */
void shmrpc__shm_unring(shmrpc__shm_ctl *ctl, unsigned slot);

/* Maps all of the channel that the other side may have grown. Its claimed size is only
 * a hint: what is mapped is what the file really holds, within this side's maximum. Like
 * shmrpc__chan_reserve, it may move the mapping: m->head is to be read again after it. */
int shmrpc__chan_follow(shmrpc__chan_map *m, uint64_t need, shmrpc_buf *err);

/* Grows the channel so that need bytes of data fit (which may move m->head). */
int shmrpc__chan_reserve(shmrpc__chan_map *m, uint64_t need, shmrpc_buf *err);

/* As shmrpc__chan_reserve, but into a new mapping, the old one left in *kept (fd -1) for
 * the caller to unmap once nothing points into it: a worker that grows the channel for an
 * answer while its handler reads the request in place (shmrpc_ctx_loan). */
int shmrpc__chan_reserve_keep(shmrpc__chan_map *m, uint64_t need, shmrpc__chan_map *kept,
                              shmrpc_buf *err);

/* The largest channel this side accepts for messages of max_msg bytes (a power of two of
 * pages that holds the head and one such message). */
uint64_t shmrpc__chan_max_size(uint64_t max_msg);

/* Maps size bytes of fd shared, read-write; NULL on failure. */
void *shmrpc__shm_map(int fd, uint64_t size);

/* The listen and connect entries of the transport's table (shm_server.c, shm_client.c). */
int shmrpc__shm_listen(shmrpc_server *s, const char *where, shmrpc__listener **out,
                       shmrpc_buf *err);
int shmrpc__shm_connect(const char *where, const shmrpc_service_info *info,
                        const shmrpc__client_cfg *cfg, uint32_t *map_ids, shmrpc__table *table,
                        shmrpc__conn **out, shmrpc_buf *err);

#endif
