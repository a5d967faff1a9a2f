/* SPDX-License-Identifier: MIT */
/* The rendezvous of the shm:// transport: a Unix socket per service, "shmrpc:NAME:rdv" in
 * this user's private directory (names.h), where a client hands its channel (a memfd) to
 * the server's manager and keeps the connection open for the life of its connection. The kernel then
 * vouches for the client (SO_PEERCRED) and tells the manager when it dies (a hang-up).
 * This file knows the sockets and the messages; shm.c decides what a channel is worth. */
#ifndef SHMRPC_SRC_SHM_RDV_H
#define SHMRPC_SRC_SHM_RDV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "rpc/rpc.h"

typedef struct shmrpc__rdv shmrpc__rdv;

/* What a client says of itself in its hello. */
#define SHMRPC__RDV_DUMPABLE 1u /* its /proc/PID/fd may be opened by a process of its uid */

typedef struct shmrpc__rdv_hooks {
    void *arg;
    /* A client of our uid, pid (from SO_PEERCRED), hands over channel fd for slot and
     * gen, saying flags (SHMRPC__RDV_*) of itself: 0 when taken, or a status with a message in err,
     * which the client is told. The hook owns fd either way. */
    int (*take)(void *arg, uint32_t slot, uint32_t gen, int32_t pid, uint32_t flags, int fd,
                shmrpc_buf *err);
    /* The connection that handed over slot and gen hung up: its client closed it, or died. */
    void (*hangup)(void *arg, uint32_t slot, uint32_t gen, int32_t pid);
} shmrpc__rdv_hooks;

/* Takes the lock of key's name ("shmrpc:NAME:lock", one server per name), then binds and
 * listens on its rendezvous. A name whose lock a live server holds is refused with its
 * pid (SHMRPC_EBUSY); a dead server's socket is removed. */
int shmrpc__rdv_listen(const char *key, const shmrpc__rdv_hooks *hooks, shmrpc__rdv **out,
                       shmrpc_buf *err);
/* A descriptor that becomes readable when shmrpc__rdv_pump() has something to do. */
int shmrpc__rdv_fd(const shmrpc__rdv *r);
/* Accepts, reads handshakes, notices hang-ups and handshakes past their deadline; never
 * blocks, and does a bounded amount of work per call. */
void shmrpc__rdv_pump(shmrpc__rdv *r);
/* Closes the rendezvous and every connection to it; in the process that listened, removes
 * its socket and lets go of the lock. */
void shmrpc__rdv_close(shmrpc__rdv *r);

/* The client side. Connects to the rendezvous of key, within timeout_ns: 0 with the socket
 * in *fd and the listener's pid in *pid (checked to be of our uid); SHMRPC_ESYS(ECONNREFUSED) when
 * no rendezvous listens there (a server of an older version); SHMRPC_EUNAVAIL when its
 * backlog stayed full until the timeout; another status on failure. */
int shmrpc__rdv_connect(const char *key, int64_t timeout_ns, int *fd, int32_t *pid,
                        shmrpc_buf *err);
/* Hands chan_fd over for slot and gen, with flags, on socket fd and waits (until deadline_ns, or
 * before that if ring() is given, which it calls once when the answer is slow: a server
 * serving in its listening process only looks at its rendezvous when woken) for the
 * server's answer: 0, or its status with its message. */
int shmrpc__rdv_hello(int fd, uint32_t slot, uint32_t gen, uint32_t flags, int chan_fd,
                      int64_t deadline_ns, void (*ring)(void *), void *ring_arg, shmrpc_buf *err);

#endif
