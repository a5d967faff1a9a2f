/* SPDX-License-Identifier: MIT */
/* The TCP transport's server side, shared by its files (tcp_server.c names them): the
 * listener, the load its manager shares with its workers, a worker, its connections and the
 * jobs its threads run, and what each file lends the others. */
#ifndef SHMRPC_SRC_TCP_SERVER_INT_H
#define SHMRPC_SRC_TCP_SERVER_INT_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/tcp/auth.h"
#include "rpc/crew.h"
#include "stats/stats.h"
#include "transport/tcp/tcp_int.h"
#include "transport/tcp/tls.h"

#define SWEEP_MS 200
#define MAX_WORKERS SHMRPC__CREW_MAX
/* A connection's buffers up to this size are its own (kept between frames, bounded by the
 * connection caps); a larger one is charged to the server's budget and freed once its
 * frame is done. Above the 64 KiB calls of the benchmark, whose buffers are 128 KiB. */
#define KEEP_BYTES ((size_t)256 << 10)
#define ADDR_BUCKETS 1024 /* connections are counted per peer address in this many buckets */
/* A draining worker (docs/wire.md, "Drain") closes a connection once its client closed it,
 * or once nothing came from it for DRAIN_QUIET_MS after the DRAIN (a request that crossed
 * the DRAIN on the wire comes within a round trip), and stops after DRAIN_MAX_MS whatever
 * is left: well inside the 2 s its manager gives it before SIGKILL (crew.c). */
#define DRAIN_QUIET_MS 100
#define DRAIN_MAX_MS 1000
/* Calls still running then get this much more to end and send their answers (the calls of
 * a client that is gone included), still inside those 2 s. */
#define DRAIN_RUNNING_MS 800
/* The streams a worker runs at once (revision 8; docs/wire.md, "Streams"): each holds a thread
 * of its pool for its life, on top of cfg.max_running. Past it an open is refused (EBUSY). */
#define STREAMS_MAX 64
/* A peer address's two buckets in tcp_load.by_addr, one in each table, from the two halves
 * of one keyed hash. A connection counts in both, and an address's count is the smaller
 * of its buckets' sums: other addresses count as it only where they fill both of its
 * buckets (with k addresses at the limit, about (k / ADDR_BUCKETS)^2), not one (k in
 * ADDR_BUCKETS, which refused a client of an address with no connection of its own). */
typedef struct addr_key {
    uint16_t bucket[2];
} addr_key;

/* How loaded each worker is, in memory the manager shares with its workers: the manager
 * hands a new connection to the worker with the least. A worker writes its own fields;
 * the manager only reads them (and writes handed). Wrong numbers cost balance, never
 * a connection. */
typedef struct tcp_load {
    _Atomic uint32_t open[MAX_WORKERS];    /* connections the worker holds */
    _Atomic uint32_t shaking[MAX_WORKERS]; /* of those, the ones in their handshake */
    _Atomic uint32_t taken[MAX_WORKERS]; /* sockets received from the manager, ever */
    _Atomic uint32_t busy[MAX_WORKERS];  /* the calls it runs */
    uint32_t handed[MAX_WORKERS];        /* sockets the manager sent it, ever */
    /* The server's memory budget and its per-address counts, one row per worker (row 0
     * when serving in place): each worker writes only its own row, and everyone sums the
     * rows. A worker's replacement zeroes its row, so what a dead worker held (it died
     * with its connections) is not counted for ever. */
    _Atomic uint64_t charged[MAX_WORKERS];                  /* bytes of the budget it holds */
    _Atomic uint32_t by_addr[MAX_WORKERS][2][ADDR_BUCKETS]; /* its connections per bucket */
} tcp_load;

typedef struct tcp_listener {
    shmrpc__listener base;
    shmrpc_server *server;
    shmrpc__tcp_cfg cfg; /* resolved from the server's opts */
    shmrpc__tls *tls;    /* its certificate: it serves TLS only; NULL: plain */
    char where[ADDR_MAX];
    int fd;           /* the listening socket, non-blocking */
    int stop_pipe[2]; /* stop writes a byte: wakes the manager, or a worker serving in place */
    _Atomic int stop;
    uint32_t max_msg; /* the server's, capped to what a frame can carry */
    /* With forked workers: hand[i][0] is the manager's end of worker i's socket pair,
     * hand[i][1] the worker's. Both stay open in the manager, so sockets sent to a
     * worker that dies are received by its replacement. */
    int hand[MAX_WORKERS][2];
    tcp_load *load;      /* MAP_SHARED (private when serving in place), while serving */
    uint64_t addr_seed;  /* keys the per-address buckets, so a peer cannot aim at one */
    shmrpc__stats stats; /* the workers' call counts (stats.h), when it could be made */
    shmrpc__crew crew;
    int spare; /* the manager's reserved fd (see accept_one) */
} tcp_listener;

enum { P_HELLO, P_AUTH, P_READY };

/* One connection of a worker. Reads stop while answers are unsent, and while
 * cfg.max_running of its calls run: the memory a connection holds is one frame in, its
 * running calls' requests and answers, and OUT_BATCH plus one answer out (peer_read). */
typedef struct peer {
    int fd;
    shmrpc__io io; /* fd's bytes, plain or TLS */
    uint8_t state; /* P_HELLO, P_AUTH (the client's proof is due), P_READY: requests may come */
    bool closing;  /* close once out is flushed */
    bool have_hdr; /* hdr holds the frame being read */
    uint16_t comp; /* agreed in the handshake */
    uint32_t threshold, peer_max;
    uint32_t proto;   /* the revision agreed in the handshake (2: the client reads DRAIN;
                       * 3: it may send the lone flag) */
    int64_t drain_ns; /* draining: when the DRAIN went into out, or the last frame after it */
    shmrpc__frame_hdr hdr;
    shmrpc_buf in;                      /* the frame being read: header, then body */
    shmrpc_buf out;                     /* frames to send */
    size_t out_off;                     /* bytes of out already sent */
    int64_t accepted_ns;                /* handshake deadline base */
    int64_t frame_ns;                   /* when the partial frame (in or out) began */
    int64_t out_due_ns;                 /* out waits for room: cut then (peer_flush); or 0 */
    int64_t in_due_ns;                  /* the frame being read is cut then (frame_came) */
    int64_t last_ns;                    /* last complete frame */
    uint32_t events;                    /* the epoll interest set */
    bool hot;                           /* SO_RCVTIMEO is set for hot_wait */
    bool refused;                       /* the frame in hdr is skipped, then refused */
    uint32_t skip;                      /* bytes of a refused frame's body still to come */
    size_t charged;                     /* bytes of in and out charged to the budget */
    addr_key addr;                      /* its peer address's buckets in tcp_load.by_addr */
    uint64_t addr_id;                   /* its peer address, keyed (addr_buckets) */
    bool counted;                       /* it counts in tcp_load.by_addr: it got to P_READY */
    bool shaking;                       /* in worker.shaking: before P_READY */
    bool heard;                         /* before P_READY: bytes came from it */
    bool tls_due;                       /* TLS starts with its first bytes (peer_event) */
    struct peer *shaking_prev, *shaking_next;
    char from[64];                      /* the peer's address, for log lines */
    uint8_t proof[2][SHMRPC__AUTH_LEN]; /* in P_AUTH: the client's proof due, and ours */
    /* Its calls on the worker's threads (submit, collect). What a client reads after an
     * ERROR with request id 0 or a DRAIN counts as not run and may go elsewhere, so those
     * two wait until no call of the connection runs (tail_status, drain_due). */
    uint32_t running;       /* calls handed to the threads, not yet taken back */
    uint32_t n_streams;     /* of those, streams (revision 8): its WINDOWs are read at the bound */
    struct job *jobs;       /* those calls (job.peer_next), for a CANCEL to find */
    bool gone;              /* closed while calls ran: freed when the last comes back */
    _Atomic bool left;      /* set with gone, for its calls on the pool's threads to read
                               (shmrpc_ctx_cancelled): the client's answers go nowhere */
    bool drain_due;         /* draining: the DRAIN goes out once none runs; nothing is read */
    bool taken;             /* the frame in hand went to a job with in's buffer (submit) */
    int tail_status;        /* an ERROR (request id 0) to send once none runs; 0: none */
    char tail_msg[200];     /* its message */
    struct peer *touched;   /* collect's list of connections that got answers */
    struct peer *next_dead; /* in worker.dead */
    bool again;             /* in worker.again: served FRAMES_PER_TURN, more may wait */
    struct peer *next_again;
} peer;

/* Puts p, not gone, on a list of connections to serve again (*list, linked by touched), once. */
static inline void shmrpc__tcp_touch(peer **list, peer *p)
{
    if (p->touched || p == *list) return;
    p->touched = *list ? *list : p; /* p itself ends the list */
    *list = p;
}

/* The items of a stream of results on their way from its handler, on a thread of the pool,
 * to the worker's own thread, which frames them: a single-producer single-consumer ring of
 * the window's bytes, each item its 4-byte length (big-endian, as ITEMS carries it) and its
 * bytes, wrapping at the end. Credit is two counts: the handler writes an item while tail -
 * granted, with it, stays within the window; the worker raises granted by each WINDOW, and
 * only by bytes it framed (granted <= head <= tail), so the ring never holds more than it
 * has room for. No lock per item: the handler publishes tail (release) and wakes the worker
 * only when it armed itself before it slept (stream_look); a handler short of credit waits
 * under w->mu, which granted is raised under. */
typedef struct stream_out {
    _Alignas(64) _Atomic uint64_t tail;    /* the handler's: the bytes written */
    _Alignas(64) _Atomic uint64_t granted; /* the bytes the client gave back: raised under w->mu */
    _Atomic uint64_t alone; /* an item larger than the window went in job.items: its bytes */
    _Atomic bool armed;     /* the worker looks at tail again only when woken */
    _Alignas(64) uint8_t ring[SHMRPC__STREAM_WINDOW];
} stream_out;

/* A call handed to the worker's threads: its request copied out of the connection's
 * buffer (decompressed), its answer, and its status. The worker's own thread fills it and
 * takes it back; a thread of the pool only runs it. */
typedef struct job {
    struct job *next;
    peer *p; /* its connection: read only by the worker's own thread */
    struct job *peer_next, *peer_prev; /* p's jobs (peer.jobs): the worker's own thread's */
    /* Its client sent a CANCEL for it (revision 5): set by the worker's thread, read by
     * the handler's (shmrpc_ctx_cancelled). */
    _Atomic bool cancelled;
    uint32_t method;
    uint64_t rid;
    int64_t budget_ns; /* the time its client gives it (revision 4), or -1 */
    shmrpc_buf meta;   /* its metadata as the client sent it (revision 7; len 0: none) */
    bool draining;     /* the worker had been told to stop (the health method says so) */
    int rc;            /* the call's status */
    int64_t ns;        /* how long its handler took, for the statistics; -1: none ran */
    size_t charged;    /* bytes of the budget held for req */
    size_t off;        /* where the request starts in req (a frame taken whole: its header) */
    int64_t queued_ns; /* when it was handed to the pool */
    shmrpc_buf req, resp;
    char msg[SHMRPC__CTX_MSG_CAP]; /* why it failed */
    /* A stream's (revision 8; docs/wire.md, "Streams"): its handler writes its items in the
     * ring of out, which the worker's own thread frames from head on; the handler waits on
     * scv for credit, which the client's WINDOWs give back. An item larger than the window
     * goes alone through items instead (w->mu). w->mu guards items, stopped, pull_due and
     * pull_next. */
    bool stream;
    pthread_cond_t scv; /* CLOCK_MONOTONIC */
    struct stream_out *out; /* a stream of results: its ring, for the stream's life, or NULL */
    uint64_t head;          /* the worker's own: the bytes of out's ring framed */
    bool hint;              /* the handler's: the worker was armed at its last item */
    struct job *out_next, *out_prev; /* in w->outs: the worker's own */
    shmrpc_buf items;   /* an item larger than the window, for the worker's thread to frame */
    shmrpc_buf framing; /* the worker's: the ring's bytes that wrap made one span, or items */
    /* SHMRPC_ECANCELLED: the server stops; SHMRPC_EPROTO: its client granted more than the
     * window (written under w->mu, read by its handler's shmrpc_ctx_cancelled too) */
    _Atomic int stopped;
    bool pull_due;  /* on w->pulls */
    uint32_t sends; /* items queued: the clock is read at every 64th (stream_write) */
    /* A stream of the client's items too (revision 9): the worker's own thread queues them in
     * in as ITEMS frames come, each a 4-byte length (native) and its bytes, and its handler
     * reads them from in_head (ctx->recv), giving the bytes back in grant, which the worker's
     * thread sends as a WINDOW (pull). in, in_head, in_done and grant are w->mu's. */
    int ways;          /* SHMRPC__STREAM_OUT, _IN: what the method streams */
    shmrpc_buf in;     /* the client's items not yet read */
    size_t in_head;    /* the next of them */
    bool in_done;      /* the client's last item came (an ITEMS frame with the last flag) */
    uint32_t in_taken; /* bytes its handler read since its last grant */
    uint32_t grant;    /* bytes for the worker's thread to grant back */
    uint32_t granting; /* ... taken by it at its last look (stream_take) */
    int64_t in_held;   /* the worker's thread's: bytes received, not yet granted back */
    struct job *pull_next;
    struct job *taken_next; /* the worker's own list of the jobs it took (stream_take) */
    uint32_t peer_max;  /* the client's largest message: an item above it is refused */
    struct worker *w;   /* while it runs: its worker and the ctx its handler runs on */
    shmrpc_ctx *ctx;
} job;

typedef struct worker {
    tcp_listener *l;
    int index; /* the worker's number; -1 when serving in place */
    int ep;
    int spare;  /* a reserved fd, given up to accept and drop a connection on EMFILE */
    int source; /* where connections come from: the listener, or the manager's socket pair */
    shmrpc_ctx ctx;
    shmrpc_arena *arena; /* handshake parsing */
    shmrpc_buf req, resp, err;
    shmrpc_buf unz; /* a client's compressed ITEMS body, decompressed (serve_items) */
    peer **peers; /* cfg->max_conns of them */
    int n_peers;
    /* Its connections in their handshake, oldest first, and how many there are in all and
     * per address (in two tables of buckets, as tcp_load.by_addr counts finished ones). */
    peer *shaking, *shaking_last;
    int n_shaking;
    int shaking_max, shaking_per_addr; /* the quotas, from cfg.max_conns */
    uint32_t shaking_by_addr[2][ADDR_BUCKETS];
    char tag_source, tag_stop; /* epoll data for the source and the stop pipe */
    size_t req_charged;        /* bytes of the budget held for req (a decompressed body) */
    int64_t log_ns;            /* when the last limit line was logged */
    unsigned log_dropped;      /* lines not logged since (at most one a second) */
    bool draining;             /* told to stop: takes no new call (drain_begin) */
    int64_t drain_end;         /* when it stops draining whatever is left */
    /* The threads that run calls (docs/wire.md, "Calls in flight"): the worker's own
     * thread reads and writes the sockets, hands each request to them (submit) and takes
     * the answers back (collect). pool_max 0: calls run on the worker's own thread. */
    int pool_max;          /* threads at most (cfg.max_running), started as calls need */
    pthread_mutex_t mu;    /* guards todo, n_todo, done, idle and quit */
    pthread_cond_t cv;     /* a job or quit for the idle threads */
    job *todo, **todo_end; /* jobs not yet taken, in order */
    job *done;             /* jobs run, not yet taken back */
    _Atomic int n_todo;    /* read without mu by the worker's own thread (pool_nudge) */
    int idle, n_threads;
    int wakes; /* idle threads signalled that have not woken yet */
    bool quit;
    pthread_t *threads;
    int done_fd;     /* an eventfd written when done turns non-empty */
    char tag_done;   /* its epoll data */
    job *spare_jobs; /* the worker thread's own, kept for the next calls */
    int n_spare;
    uint32_t running; /* jobs handed out, not taken back (over all its connections) */
    /* Connections closed, to free once no event of the batch in hand can name them: one
     * closed by collect, or made room for by take_connections, may have an event later
     * in the same batch (bury, unbury). */
    peer *dead;
    /* Connections that had their turn cut at FRAMES_PER_TURN frames, served again after
     * the next epoll batch (which then does not wait). */
    peer *again;
    /* Streams (revision 8). A worker that runs its calls in place (serving in place, or
     * max_running 1) makes a pool of one thread at its first stream (solo): its streams run
     * there, and while one runs no request of any connection is read, so its handlers
     * still run one at a time. pulls: the stream jobs with a grant to send (w->mu). */
    bool solo;
    int n_streams;
    job *pulls;
    job *outs; /* the streams of results, whose rings stream_look frames */
} worker;

/* --- server_limits.c: the limits a worker keeps */
/* A forked worker's SIGTERM came (its handler is in tcp_server.c). */
extern volatile sig_atomic_t shmrpc__tcp_told_to_stop;
/* Whether w was told to stop: its SIGTERM, or the listener's stop. */
bool shmrpc__tcp_stopping(const worker *w);
/* Counts a connection of w in (delta 1) or out (-1) of the manager's load. */
void shmrpc__tcp_count_open(worker *w, int delta);
/* Adds p, a new connection, to w's list of those in their handshake. */
void shmrpc__tcp_shaking_add(worker *w, peer *p);
/* p leaves the handshake list: it got to P_READY, or it is closed. */
void shmrpc__tcp_shaking_drop(worker *w, peer *p);
/* The connections of key's address in their handshake at w. */
uint32_t shmrpc__tcp_shaking_from(const worker *w, addr_key key);
/* The connection of the address id in its handshake to close for a new one (the oldest silent one,
 * else the oldest); NULL when there is none. */
peer *shmrpc__tcp_oldest_shaking(worker *w, const uint64_t *id);
/* The bytes of the server's memory budget in use, over all its workers. */
uint64_t shmrpc__tcp_budget_used(const tcp_listener *l);
/* Moves w's charge on the budget from old bytes to now bytes. */
void shmrpc__tcp_budget_charge(worker *w, size_t old, size_t now);
/* Takes n bytes of the budget, or nothing (false) when that would pass it. */
bool shmrpc__tcp_budget_take(worker *w, size_t n);
/* What a buffer costs the budget: nothing up to KEEP_BYTES, all of it above. */
size_t shmrpc__tcp_buf_cost(const shmrpc_buf *b);
/* Brings the budget up to date with p's buffers after they grew or shrank. */
void shmrpc__tcp_peer_recharge(worker *w, peer *p);
/* Frees b when it is above KEEP_BYTES and empty. */
void shmrpc__tcp_buf_trim(shmrpc_buf *b);
/* Grows b to exactly cap bytes; SHMRPC_ENOMEM. */
int shmrpc__tcp_buf_resize(shmrpc_buf *b, size_t cap);
/* A line on stderr for a limit that refused or cut a peer, at most one a second per worker. */
void shmrpc__tcp_log_limit(worker *w, const char *fmt, ...) SHMRPC__FMT(2, 3);
/* p, gone with no call running, is freed between two batches of events (unbury). */
void shmrpc__tcp_bury(worker *w, peer *p);
/* Frees the connections buried since the last batch of events. */
void shmrpc__tcp_unbury(worker *w);
/* The bytes of p->out not sent yet. */
size_t shmrpc__tcp_out_left(const peer *p);
/* A progress deadline due moved on for n bytes that moved, at most the progress timeout ahead of
 * now. */
int64_t shmrpc__tcp_kept_up(const worker *w, int64_t due, size_t n, int64_t now);
/* The frame being read begins, or is read on after a wait of the server's own: its deadline is the
 * progress timeout ahead. */
void shmrpc__tcp_frame_begins(const worker *w, peer *p, int64_t now);
/* n bytes of the frame being read came: its deadline moves on. */
void shmrpc__tcp_frame_came(const worker *w, peer *p, size_t n, int64_t now);
/* Queues an ERROR frame with request id 0 and closes p after it (after its calls' answers, while
 * they run). */
void shmrpc__tcp_peer_refuse(peer *p, int status, const char *msg);
/* The buckets of fd's peer address in tcp_load.by_addr, its text into from, its keyed hash into
 * id. */
addr_key shmrpc__tcp_addr_buckets(const tcp_listener *l, int fd, char *from, size_t n,
                                  uint64_t *id);
/* The key of the per-address buckets: random, or SHMRPC_TEST_ADDR_SEED. */
uint64_t shmrpc__tcp_addr_seed(void);
/* Counts a connection from the address of key in (delta 1) or out (delta -1). */
void shmrpc__tcp_addr_count(worker *w, addr_key key, int delta);
/* Counts a connection that finished its handshake from key's address; false when that has
 * max_per_addr already. */
bool shmrpc__tcp_addr_admit(worker *w, addr_key key);

/* --- server_pool.c: the threads that run calls */
/* Frees b when it is above CALL_KEEP: a large call keeps its buffers only for itself. */
void shmrpc__tcp_buf_shed(shmrpc_buf *b);
/* A job for a call, a spare one or a new one; NULL out of memory. */
job *shmrpc__tcp_job_get(worker *w);
/* Gives j's budget back and keeps it for another call (as many as the threads, at most). */
void shmrpc__tcp_job_put(worker *w, job *j);
/* Runs j's call on ctx (a pool thread's, or the worker's own). */
void shmrpc__tcp_run_job(worker *w, shmrpc_ctx *ctx, job *j);
/* Hands j to the pool; false when no thread runs and none can be started (the caller runs it in
 * place). */
bool shmrpc__tcp_pool_give(worker *w, job *j);
/* While jobs wait: another thread when the oldest has waited POOL_WAIT_NS. */
void shmrpc__tcp_pool_nudge(worker *w, int64_t now);
/* Shows the calls w runs in the manager's load. */
void shmrpc__tcp_count_busy(worker *w);
/* Drops the calls of p that wait for a thread of the pool: their client is gone. */
void shmrpc__tcp_drop_waiting(worker *w, peer *p);
/* Waits for the pool's threads to end the jobs they hold and leave (a worker serving in place:
 * the program goes on after it, so none may run on). */
void shmrpc__tcp_pool_join(worker *w);
/* Ends the pool: true when its threads are gone (not while calls run). */
bool shmrpc__tcp_pool_end(worker *w);
/* Makes w's pool of n threads at most, started as calls need them; without one (no memory), calls
 * run in place. */
int shmrpc__tcp_pool_init(worker *w, int n);

/* --- server_stream.c: streams (revision 8; docs/wire.md, "Streams") */
/* shmrpc_ctx_send on a pool thread: the item queued once the client's window has room for it. */
int shmrpc__tcp_stream_write(void *arg, const void *item, size_t n);
/* Wakes the handlers of p's streams to look again (at p->left, a CANCEL); with why (not 0), they
 * end with it (SHMRPC_ECANCELLED: the server stops). */
void shmrpc__tcp_stream_stop(worker *w, peer *p, int why);
/* A stream of results begins on j (the worker's own thread, before its handler runs): its
 * ring, empty, and j in w->outs. SHMRPC_ENOMEM: no memory for the ring. */
int shmrpc__tcp_results_open(worker *w, job *j);
/* j's stream of results ended, or was dropped before it ran: what its handler wrote is
 * framed, and j leaves w->outs (its ring is freed). */
void shmrpc__tcp_results_close(worker *w, job *j);
/* Frames what the handlers of w's streams wrote since the last look; when none wrote
 * anything, the streams are armed (their handlers wake the worker at their next item) and
 * looked at once more. The connections that got items, to serve (shmrpc__tcp_serve_touched),
 * or NULL: then the worker may sleep. */
peer *shmrpc__tcp_stream_look(worker *w);
/* Takes the grants due since the last look (w->mu held); the jobs, linked by taken_next (a
 * handler may grant again, and link pull_next, at once). */
job *shmrpc__tcp_stream_take(worker *w);
/* Appends j's grant taken as a WINDOW frame to its connection's out. */
void shmrpc__tcp_stream_grant(job *j);
/* A stream ended (or was dropped before it ran): on a solo worker with none left, the requests
 * it held on every connection are read again, after the next batch of events. */
void shmrpc__tcp_stream_ended(worker *w);
/* A WINDOW of p: its stream's handler may send grant more bytes of items. */
void shmrpc__tcp_serve_window(worker *w, peer *p, const shmrpc__frame_hdr *h, shmrpc_bytes body);
/* shmrpc_ctx_recv on a pool thread: the client's next item, once it came; 0 after its last. */
int shmrpc__tcp_stream_read(void *arg, shmrpc_buf *item);
/* An ITEMS frame of p (revision 9): the client's items, queued for its stream's handler within
 * the window. */
void shmrpc__tcp_serve_items(worker *w, peer *p, const shmrpc__frame_hdr *h, shmrpc_bytes body);

/* --- server_call.c: a request run, and its answer */
/* Takes back a job the pool ran: its answer goes to its connection, unless that closed. */
void shmrpc__tcp_finish_job(worker *w, job *j);
/* Serves a REQUEST of p: run in place or handed to the pool, or refused. */
void shmrpc__tcp_serve_request(worker *w, peer *p, const shmrpc__frame_hdr *h, shmrpc_bytes body);
/* A CANCEL of p's request rid: its call, if the pool has it, learns so (shmrpc_ctx_cancelled);
 * else the call is answered already, or runs on this thread and looks itself (lone_wanted). */
void shmrpc__tcp_serve_cancel(worker *w, peer *p, uint64_t rid);

/* --- server_handshake.c: the handshake */
/* Answers p's HELLO with a HELLO_ACK (with a challenge, when the server has a secret), or refuses
 * it. */
void shmrpc__tcp_serve_hello(worker *w, peer *p, shmrpc_bytes body);
/* Checks p's proof of the secret and answers with the server's, or refuses it. */
void shmrpc__tcp_serve_auth(worker *w, peer *p, shmrpc_bytes body);

/* --- server_conn.c: a worker's connections: frames read and served, answers sent */
/* Closes p; it is freed once no call of it runs (bury). */
void shmrpc__tcp_peer_free(worker *w, peer *p);
/* Sends what it can of p->out; false when the connection is gone. */
bool shmrpc__tcp_peer_flush(worker *w, peer *p);
/* Closes p if it is done, else sets its epoll interest. */
void shmrpc__tcp_peer_settle(worker *w, peer *p);
/* Serves each connection of list again: what it holds is read if it may be, and what it has
 * to send goes (peer_settle). */
void shmrpc__tcp_serve_touched(worker *w, peer *list);
/* Serves the connections whose turn was cut, again. */
void shmrpc__tcp_serve_again(worker *w);
/* Serves p for the epoll events it had. */
void shmrpc__tcp_peer_event(worker *w, peer *p, uint32_t events);
/* Takes back the jobs the pool ran, and serves their connections again. */
void shmrpc__tcp_collect(worker *w);
/* The deadline of p: the handshake's, a partial frame's progress, or idleness. */
int64_t shmrpc__tcp_peer_deadline(const worker *w, const peer *p);
/* Closes the connections whose deadlines passed, saying why (best effort). */
void shmrpc__tcp_sweep(worker *w, int64_t now);

/* --- server_accept.c: new connections */
/* Takes the connections that are waiting: from the listener when serving in place, else those the
 * manager handed over. */
void shmrpc__tcp_take_connections(worker *w);
/* The manager's side (shmrpc__crew.watch): accepts what is pending and hands each connection to a
 * worker. */
void shmrpc__tcp_hand_out(void *arg);

/* --- server_drain.c: a worker told to stop */
/* Told to stop: no new connection, and each client told that no new call is taken. */
void shmrpc__tcp_drain_begin(worker *w);
/* Closes the draining connections that have quieted. */
void shmrpc__tcp_drain_step(worker *w, int64_t now);
/* Stopping: sends the answers of calls that ran before their connections close. */
void shmrpc__tcp_send_what_ran(worker *w);

/* --- server_worker.c: a worker */
/* Serves connections until stopped: worker index of the crew, or in place (-1). */
int shmrpc__tcp_worker_run(tcp_listener *l, int index);

#endif
