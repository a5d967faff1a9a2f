/* SPDX-License-Identifier: MIT */
/* What the files of the shm:// transport's server side share: the listener and a worker as
 * they hold a service, and the calls one of these files makes into another. Each file calls
 * only those below it: shm_server.c (listen, the control segment, the manager), then
 * shm_worker.c (a worker: takes, runs and answers calls), shm_handover.c (the channels
 * clients hand over at the rendezvous), shm_sweep.c (sweeps of dead clients and broken
 * state) and shm_stop.c (how the workers are told to stop). */
#ifndef SHMRPC_SRC_SHM_SERVER_INT_H
#define SHMRPC_SRC_SHM_SERVER_INT_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/names.h"
#include "rpc/rpc.h"
#include "stats/stats.h"
#include "transport/shm/shm_int.h"
#include "transport/shm/shm_rdv.h"
#include "transport/shm/shm_ring.h"

#define SWEEP_EVERY_NS ((int64_t)1000 * 1000 * 1000)

typedef struct shm_listener {
    shmrpc__listener base;
    shmrpc_server *server;
    char key[SHMRPC__KEY_MAX + 1];
    char ctl_path[SHMRPC__NS_MAX + SHMRPC__KEY_MAX + 16]; /* the control segment (names.h) */
    int fd;
    shmrpc__shm_ctl *ctl;
    uint64_t ctl_size; /* what is mapped of it: the header and the table */
    int32_t pid;    /* the manager: only it removes the segments */
    uint64_t start; /* the manager's start time */
    char *table;    /* what the header's table and service said at listen: sweeps restore */
    uint32_t table_len;
    char service[256];
    _Atomic int stop;
    int stop_pipe[2]; /* shmrpc__shm_stop writes a byte to wake the manager; -1 when none */
    uint64_t max_msg; /* the server's own: workers never take it from the segment */
    shmrpc_wait_opts wait;
    shmrpc__stats stats; /* the workers' call counts (stats.h), when it could be made */
    shmrpc__rdv *rdv;    /* the rendezvous, in the listening process; NULL in a worker */
    /* Per slot, the channel its client handed over at the rendezvous, as (gen << 32 |
     * fd + 1), fd being the listening process's descriptor, or 0. Written by the listening
     * process; read by workers, which take the descriptor from it (pidfd_getfd). Shared
     * anonymous memory that only the listening process and the workers it forks map: no
     * client can point a worker at another file. */
    _Atomic uint64_t *held;
    int held_fd[SHMRPC__MAX_CONNS]; /* the listening process's own copy of those fds, or -1 */
    int manager_fd;                 /* a pidfd of the listening process, for its workers */
    bool workers_take;              /* whether workers can take descriptors from it (pidfd_getfd) */
} shm_listener;

/* A process as a slot named it: pid and start time. */
typedef struct {
    int32_t pid;
    uint64_t start;
} proc_id;

/* A worker's view of one connection's channel. */
typedef struct worker_chan {
    uint32_t gen;
    bool open;
    uint32_t lock_tid; /* this worker's thread id while it holds the channel's lock, or 0 */
    uint32_t watch_as; /* what the answer writes into the channel's watcher */
    uint64_t call;     /* the number of the call this worker took last on the channel */
    uint64_t passed;   /* a call found claimed already: not to be tried again (watching) */
    uint32_t missed;   /* takes in a row that found nothing to take (worker_chan_moved) */
    shmrpc__chan_map map;
} worker_chan;

/* The stream of the call being run (docs/streams.md, "How shm:// carries it"): the ways it
 * streams (0: the call is no stream), its rings' size, and where each is in the channel's data.
 * In the worker's ring (a result's items): the bytes this worker wrote, and whether the
 * client's count was found off (nothing more is written). In the client's (a parameter's):
 * how far this worker read, whether it read the end, and why it can read no more. */
typedef struct worker_stream {
    int ways;
    uint32_t cap;
    uint64_t off;
    uint64_t in_off;
    uint32_t tail;
    uint32_t sends; /* the items sent: the clock is read at every 64th... */
    bool drained;   /* ...or at each while its reader keeps up (the ring empty at its last look) */
    bool broken;
    bool light;  /* it publishes lightly (shmrpc__publish_light) */
    bool fences; /* it fences for a client that does (the ring's fences): where it can */
    shmrpc__ring_reader rd;
    bool in_ended;
    int in_failed;
    int64_t deadline; /* the call's, kept for the wait after its handler returned */
} worker_stream;

typedef struct worker {
    shm_listener *l;
    shmrpc__shm_ctl *ctl;
    unsigned index;
    int32_t pid; /* this worker, as it writes itself into the channels it serves */
    uint64_t start;
    uint32_t tid;           /* the thread that serves: it holds the channels' locks */
    unsigned next;          /* where the next doorbell scan starts, for fairness */
    int last_slot;          /* the connection served last: likely the next caller, or -1 */
    int watch;              /* the connection whose channel this worker watches, or -1 */
    int64_t last_call_ns;   /* when it was served */
    int64_t next_forget_ns; /* when to let go of closed connections' mappings next */
    int64_t next_look_ns;   /* when to look whether a sweep is due next */
    int64_t not_ready_ns;   /* when a sweep of this worker first saw the state not READY */
    bool pumps;             /* serving in the listening process, it keeps the rendezvous */
    int64_t next_pump_ns;   /* when it does next */
    /* Watching after its answer: the pauses it makes before it first looks at the channel
     * (learnt, at most SHMRPC__SPIN_QUIET), and whether the next look is that first one. */
    unsigned quiet;
    bool first_look;
    shmrpc_ctx ctx;
    shmrpc_buf req, resp;
    worker_chan *serving;  /* the channel of the call being run, for its loans */
    bool in_place;         /* that call's handler reads its request in the channel */
    shmrpc__chan_map kept; /* the mapping it reads it through, when a loan grew the channel */
    worker_stream st;      /* that call's stream */
    /* The cancel word of the call being run in a batch (shmrpc__shm_batch_call), or NULL. */
    const _Atomic uint32_t *batch_cancel;
    worker_chan chans[SHMRPC__MAX_CONNS];
} worker;

/* --- shm_stop.c: how the workers are told to stop ------------------------------------- */

/* Set in a forked worker by its manager's SIGTERM (shmrpc__shm_on_stop). */
extern volatile sig_atomic_t shmrpc__shm_told_to_stop;

/* The handler of SIGTERM that a forked worker installs. */
void shmrpc__shm_on_stop(int sig);

/* A forked worker stops when its manager tells it (SIGTERM, after the call it serves)
 * and dies with it (PR_SET_PDEATHSIG); one serving in the listening process stops on
 * shmrpc_server_stop(). Nothing here costs a syscall: it runs once per call. */
static inline bool shmrpc__shm_stopping(const worker *w)
{
    return shmrpc__shm_told_to_stop || atomic_load(&w->l->stop);
}

/* The listener's stop and poke ops: stop the workers and the manager; wake the manager. */
void shmrpc__shm_stop(shmrpc__listener *base);
void shmrpc__shm_poke(shmrpc__listener *base);

/* --- shm_sweep.c: sweeps of dead clients and broken state ----------------------------- */

/* Whether the client of a slot counts in awake. */
bool shmrpc__shm_counts_awake(shmrpc__shm_slot *s);

/* Frees slot i, seen in state with gen and client, whose client is dead. */
void shmrpc__shm_free_slot(shmrpc__shm_ctl *ctl, unsigned i, uint32_t state, uint32_t gen,
                           proc_id client, bool in_call);

/* Frees the slots of dead clients, repairs the header and the shared counters, when due. */
void shmrpc__shm_sweep(worker *w);

/* Restores worker w's entry in the control segment where a bad write changed it. */
void shmrpc__shm_restore_entry(worker *w);

/* --- shm_handover.c: the channels clients hand over at the rendezvous ----------------- */

/* Opens the rendezvous of l's key and the table of the channels handed over there. */
int shmrpc__shm_handover_open(shm_listener *l, shmrpc_buf *err);

/* The channel slot's client handed over for gen, as this process's descriptor, or -1. */
int shmrpc__shm_held_take(shm_listener *l, unsigned slot, uint32_t gen);

/* --- shm_worker.c: a worker ----------------------------------------------------------- */

/* Runs worker index of listener l until it is told to stop. */
int shmrpc__shm_worker_run(shm_listener *l, unsigned index);

#endif
