/* SPDX-License-Identifier: MIT */
/* The TCP transport's server side: a manager accepts connections and hands each to its
 * least loaded worker, which serves it in an epoll loop and runs its calls on a few
 * threads of its own, within the limits of docs/wire.md (connections, calls running,
 * memory, timeouts). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "transport/tcp/auth.h"
#include "rpc/crew.h"
#include "core/proc.h"
#include "stats/stats.h"
#include "transport/tcp/tcp_int.h"
#include "transport/tcp/tls.h"
#include "core/wait.h"

#define SWEEP_MS 200
#define HOT_WAIT_MS 1                /* a lone connection's recv, before epoll again */
#define HOT_LOOK_NS (10 * NS_PER_MS) /* how often a worker in hot_wait looks at epoll */
#define MAX_WORKERS SHMRPC__CREW_MAX
/* A connection's buffers up to this size are its own (kept between frames, bounded by the
 * connection caps); a larger one is charged to the server's budget and freed once its
 * frame is done. Above the 64 KiB calls of the benchmark, whose buffers are 128 KiB. */
#define KEEP_BYTES ((size_t)256 << 10)
/* Answers to pipelined requests are sent together up to this many bytes (peer_read). */
#define OUT_BATCH ((size_t)64 << 10)
/* The most frames of one connection served in a row (peer_read): then the worker's other
 * connections have their turn, and this one its next after them (worker.again). */
#define FRAMES_PER_TURN 256
#define ADDR_BUCKETS 1024 /* connections are counted per peer address in this many buckets */
/* Connections still in their handshake (accept to AUTH, TLS included: docs/wire.md,
 * "Limits"): a worker holds at most half of max_conns of them (at least 4), and an
 * address with an eighth of those (at least 2) makes room for its own new ones; past the
 * quota, or at max_conns, one of them makes room for a new connection (make_room). */
#define SHAKING_SHARE 2
#define SHAKING_MIN 4
#define SHAKING_ADDR_SHARE 8
#define SHAKING_ADDR_MIN 2
/* A draining worker (docs/wire.md, "Drain") closes a connection once its client closed it,
 * or once nothing came from it for DRAIN_QUIET_MS after the DRAIN (a request that crossed
 * the DRAIN on the wire comes within a round trip), and stops after DRAIN_MAX_MS whatever
 * is left: well inside the 2 s its manager gives it before SIGKILL (crew.c). */
#define DRAIN_QUIET_MS 100
#define DRAIN_MAX_MS 1000
/* Calls still running then get this much more to end and send their answers (the calls of
 * a client that is gone included), still inside those 2 s. */
#define DRAIN_RUNNING_MS 800
/* A frame being read, and answers that wait to go out, must keep moving at 2^FRAME_RATE_SHIFT
 * bytes a second (1 MiB/s), and may fall behind that by the progress timeout at most
 * (kept_up). */
#define FRAME_RATE_SHIFT 20

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
    bool gone;              /* closed while calls ran: freed when the last comes back */
    bool drain_due;         /* draining: the DRAIN goes out once none runs; nothing is read */
    bool taken;             /* the frame in hand went to a job with in's buffer (submit) */
    int tail_status;        /* an ERROR (request id 0) to send once none runs; 0: none */
    char tail_msg[200];     /* its message */
    struct peer *touched;   /* collect's list of connections that got answers */
    struct peer *next_dead; /* in worker.dead */
    bool again;             /* in worker.again: served FRAMES_PER_TURN, more may wait */
    struct peer *next_again;
} peer;

/* A call handed to the worker's threads: its request copied out of the connection's
 * buffer (decompressed), its answer, and its status. The worker's own thread fills it and
 * takes it back; a thread of the pool only runs it. */
typedef struct job {
    struct job *next;
    peer *p; /* its connection: read only by the worker's own thread */
    uint32_t method;
    uint64_t rid;
    bool draining;     /* the worker had been told to stop (the health method says so) */
    int rc;            /* the call's status */
    int64_t ns;        /* how long its handler took, for the statistics; -1: none ran */
    size_t charged;    /* bytes of the budget held for req */
    size_t off;        /* where the request starts in req (a frame taken whole: its header) */
    int64_t queued_ns; /* when it was handed to the pool */
    shmrpc_buf req, resp;
    char msg[SHMRPC__CTX_MSG_CAP]; /* why it failed */
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
} worker;

static volatile sig_atomic_t told_to_stop; /* a forked worker's SIGTERM */

static void on_stop(int sig)
{
    (void)sig;
    told_to_stop = 1;
}

static bool stopping(const worker *w)
{
    return told_to_stop || atomic_load(&w->l->stop);
}

static void count_open(worker *w, int delta)
{
    if (w->index >= 0)
        atomic_fetch_add_explicit(&w->l->load->open[w->index], (uint32_t)delta,
                                  memory_order_relaxed);
}

static int row_of(const worker *w)
{
    return w->index < 0 ? 0 : w->index;
}

/* --- connections in their handshake (docs/wire.md, "Limits") ------------------------------
 * A worker keeps them in a list, oldest first, counted in all and per address, so that a
 * new connection past a quota closes the oldest (make_room) rather than being refused:
 * connections that never finish their handshake cannot hold a worker. */

static void shaking_count(worker *w, addr_key key, int delta)
{
    for (int h = 0; h < 2; h++)
        w->shaking_by_addr[h][key.bucket[h]] += (uint32_t)delta;
    w->n_shaking += delta;
    if (w->index >= 0)
        atomic_store_explicit(&w->l->load->shaking[w->index], (uint32_t)w->n_shaking,
                              memory_order_relaxed);
}

static void shaking_add(worker *w, peer *p)
{
    p->shaking = true;
    p->shaking_prev = w->shaking_last;
    p->shaking_next = NULL;
    if (w->shaking_last)
        w->shaking_last->shaking_next = p;
    else
        w->shaking = p;
    w->shaking_last = p;
    shaking_count(w, p->addr, 1);
}

/* p leaves the handshake: it got to P_READY, or it is closed. */
static void shaking_drop(worker *w, peer *p)
{
    if (!p->shaking) return;
    p->shaking = false;
    if (p->shaking_prev)
        p->shaking_prev->shaking_next = p->shaking_next;
    else
        w->shaking = p->shaking_next;
    if (p->shaking_next)
        p->shaking_next->shaking_prev = p->shaking_prev;
    else
        w->shaking_last = p->shaking_prev;
    p->shaking_prev = p->shaking_next = NULL;
    shaking_count(w, p->addr, -1);
}

/* The connections of key's address in their handshake at w: the smaller of its buckets'
 * counts (an address is never counted short; one sharing both buckets counts as it). */
static uint32_t shaking_from(const worker *w, addr_key key)
{
    uint32_t a = w->shaking_by_addr[0][key.bucket[0]], b = w->shaking_by_addr[1][key.bucket[1]];
    return a < b ? a : b;
}

/* Whether nothing has come from p yet, its socket looked at (what came since the worker
 * last read is waiting for its next turn; an end of stream makes it a good one to close). */
static bool silent(peer *p)
{
    if (p->heard) return false;
    char byte;
    if (recv(p->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0) p->heard = true;
    return !p->heard;
}

/* The connection of the address id in its handshake to close for a new one: the oldest
 * that has sent nothing, else the oldest; NULL when there is none. A client sends its
 * first bytes as soon as its connect returns, so it leaves the silent ones at once, and a
 * flood of connections that never speak closes only its own. */
static peer *oldest_shaking(worker *w, const uint64_t *id)
{
    peer *first = NULL;
    for (peer *p = w->shaking; p; p = p->shaking_next) {
        if (p->addr_id != *id) continue;
        if (!first) first = p;
        if (silent(p)) return p;
    }
    return first;
}

/* --- the memory budget (docs/wire.md, "Limits") ----------------------------------------
 * Bytes of frames held by all connections of the server, over all its workers: a large
 * frame is read only while the budget has room for all of it, and charged as its bytes
 * come (room_for_frame), not as its header announces them. */

static uint64_t budget_used(const tcp_listener *l)
{
    uint64_t sum = 0;
    for (int i = 0; i < MAX_WORKERS; i++)
        sum += atomic_load_explicit(&l->load->charged[i], memory_order_relaxed);
    return sum;
}

static void budget_charge(worker *w, size_t old, size_t now)
{
    if (old != now)
        atomic_fetch_add(&w->l->load->charged[row_of(w)], (uint64_t)now - (uint64_t)old);
}

/* Takes n bytes of the budget, or nothing (false) when that would pass it. The charge
 * comes first and the check after, so two workers never both pass on the same room. */
static bool budget_take(worker *w, size_t n)
{
    budget_charge(w, 0, n);
    if (budget_used(w->l) <= w->l->cfg.budget) return true;
    budget_charge(w, n, 0);
    return false;
}

/* What a buffer costs the budget: nothing up to KEEP_BYTES, all of it above. */
static size_t buf_cost(const shmrpc_buf *b)
{
    return b->cap > KEEP_BYTES ? b->cap : 0;
}

/* Brings the budget up to date with p's buffers after they grew or shrank. */
static void peer_recharge(worker *w, peer *p)
{
    size_t now = buf_cost(&p->in) + buf_cost(&p->out);
    budget_charge(w, p->charged, now);
    p->charged = now;
}

/* Frees b when it is above KEEP_BYTES and empty: a connection between frames holds little. */
static void buf_trim(shmrpc_buf *b)
{
    if (b->len == 0 && b->cap > KEEP_BYTES) {
        shmrpc_buf_destroy(b);
        shmrpc_buf_init(b);
    }
}

/* Grows b to exactly cap bytes (a large frame's size, not the next power of two). */
static int buf_resize(shmrpc_buf *b, size_t cap)
{
    if (cap <= b->cap) return 0;
    uint8_t *d = realloc(b->data, cap);
    if (!d) return SHMRPC_ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

/* A line on stderr (the service's log) for a limit that refused or cut a peer: at most one
 * a second per worker, so a peer cannot fill the disk; the lines left out are counted. */
static void log_limit(worker *w, const char *fmt, ...) SHMRPC__FMT(2, 3);
static void log_limit(worker *w, const char *fmt, ...)
{
    int64_t now = shmrpc__now_ns();
    if (w->log_ns && now - w->log_ns < NS_PER_S) {
        w->log_dropped++;
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (w->log_dropped)
        fprintf(stderr, "shmrpc: tcp://%s: %s (and %u more such lines not logged)\n", w->l->where,
                line, w->log_dropped);
    else
        fprintf(stderr, "shmrpc: tcp://%s: %s\n", w->l->where, line);
    w->log_ns = now;
    w->log_dropped = 0;
}

/* A gone connection with no call running is freed by unbury, between two batches of
 * events: an event for it later in the batch in hand finds it gone (peer_event). */
static void bury(worker *w, peer *p)
{
    p->next_dead = w->dead;
    w->dead = p;
}

static void unbury(worker *w)
{
    while (w->dead) {
        peer *p = w->dead;
        w->dead = p->next_dead;
        free(p);
    }
}

static void drop_waiting(worker *w, peer *p);
static void addr_count(worker *w, addr_key key, int delta);
static bool addr_admit(worker *w, addr_key key);

/* The manager's count drops before the close: a client that sees the close and connects
 * again must find the room it left. */
static void peer_free(worker *w, peer *p)
{
    if (p->gone) return;
    count_open(w, -1);
    if (p->counted) addr_count(w, p->addr, -1);
    shaking_drop(w, p);
    budget_charge(w, p->charged, 0);
    epoll_ctl(w->ep, EPOLL_CTL_DEL, p->fd, NULL);
    shmrpc__io_close(&p->io, true);
    shmrpc_buf_destroy(&p->in);
    shmrpc_buf_destroy(&p->out);
    for (int i = 0; i < w->n_peers; i++) {
        if (w->peers[i] == p) {
            w->peers[i] = w->peers[--w->n_peers];
            break;
        }
    }
    shmrpc__auth_wipe(p->proof, sizeof p->proof);
    for (peer **at = &w->again; p->again && *at; at = &(*at)->next_again)
        if (*at == p) {
            *at = p->next_again;
            p->again = false;
        }
    if (p->running) drop_waiting(w, p);
    /* Its calls still running hold it: their answers are dropped, and the last frees it. */
    p->gone = true;
    if (!p->running) bury(w, p);
}

static size_t out_left(const peer *p)
{
    return p->out.len - p->out_off;
}

/* A progress deadline due moved on for n bytes that moved: 1 s later per MiB, and never
 * more than the progress timeout ahead of now. */
static int64_t kept_up(const worker *w, int64_t due, size_t n, int64_t now)
{
    int64_t most = now + w->l->cfg.progress_ns;
    due += (int64_t)(((uint64_t)n * NS_PER_S) >> FRAME_RATE_SHIFT);
    return due < most ? due : most;
}

/* The frame being read (docs/wire.md, "Progress") must keep moving too, whatever its header
 * announces: its deadline is the progress timeout ahead when it begins, and again when the
 * server reads on after a wait of its own (calls at the connection's bound, answers to send
 * first), and each byte that comes moves it on (kept_up; bytes read past the frame count
 * for it). So a peer that stops sending is cut one timeout after it stopped, however much
 * it announced. */
static void frame_begins(const worker *w, peer *p, int64_t now)
{
    p->frame_ns = now;
    p->in_due_ns = now + w->l->cfg.progress_ns;
}

static void frame_came(const worker *w, peer *p, size_t n, int64_t now)
{
    p->in_due_ns = kept_up(w, p->in_due_ns, n, now);
}

/* Sends what it can; false when the connection is gone. Answers that wait for room in the
 * socket must keep moving (docs/wire.md, "Limits"): their deadline is the progress timeout
 * ahead when the socket is first full, and moves on with each byte sent (kept_up). */
static bool peer_flush(worker *w, peer *p)
{
    size_t sent = 0;
    while (out_left(p)) {
        ssize_t n = shmrpc__io_send(&p->io, p->out.data + p->out_off, out_left(p));
        if (n > 0) {
            p->out_off += (size_t)n;
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return false;
        int64_t now = shmrpc__now_ns();
        p->out_due_ns =
            p->out_due_ns ? kept_up(w, p->out_due_ns, sent, now) : now + w->l->cfg.progress_ns;
        return true;
    }
    p->out_due_ns = 0;
    shmrpc_buf_clear(&p->out);
    p->out_off = 0;
    if (p->out.cap > KEEP_BYTES) {
        buf_trim(&p->out);
        peer_recharge(w, p);
    }
    return true;
}

/* Queues an ERROR frame with request id 0 and closes after it; while calls of p run, once
 * their answers are queued (a client moves the calls in flight at that ERROR elsewhere). */
static void peer_refuse(peer *p, int status, const char *msg)
{
    if (p->running) {
        p->tail_status = status ? status : SHMRPC_EPROTO;
        snprintf(p->tail_msg, sizeof p->tail_msg, "%s", msg);
    } else {
        shmrpc__tcp_put_error_frame(&p->out, 0, 0, status, msg);
    }
    p->closing = true;
}

/* p has finished its handshake (its HELLO, or its proof of the secret, was right): only
 * now does it count against its address's limit, so that connections which never finish
 * cannot fill it (docs/wire.md, "Limits"). false, with the refusal in msg, when the
 * address has max_per_addr finished connections already. */
static bool peer_ready(worker *w, peer *p, char *msg, size_t n)
{
    if (!addr_admit(w, p->addr)) {
        snprintf(msg, n,
                 "too many connections from %s (the server admits at most %d from one address)",
                 p->from, w->l->cfg.max_per_addr);
        log_limit(w, "refused a connection: %s", msg);
        return false;
    }
    p->counted = true;
    shaking_drop(w, p);
    p->state = P_READY;
    return true;
}

/* Answers a HELLO with a HELLO_ACK. A server with a secret sends a challenge in it and
 * waits for the client's proof (P_AUTH); otherwise requests may come. */
static void serve_hello(worker *w, peer *p, shmrpc_bytes body)
{
    const shmrpc__tcp_cfg *cfg = &w->l->cfg;
    shmrpc__hello hello, ack;
    uint8_t challenge[SHMRPC__AUTH_LEN];
    shmrpc_arena_reset(w->arena);
    shmrpc__msg_clear(&w->err);
    int rc = shmrpc__hello_parse(body, SHMRPC__KIND_HELLO, w->arena, &hello, &w->err);
    if (rc == 0 && cfg->secret_len && hello.auth.len != SHMRPC__AUTH_LEN) {
        shmrpc__msg_set(&w->err, "tcp://%s admits only clients that hold its shared secret",
                        w->l->where);
        rc = SHMRPC_EPERM;
    }
    if (rc == 0)
        rc = shmrpc__hello_answer(&hello, shmrpc__server_info(w->l->server), cfg->compression,
                                  cfg->threshold, w->l->max_msg, w->arena, &ack, &w->err);
    if (rc == 0 && ack.proto > cfg->wire_proto) ack.proto = cfg->wire_proto;
    if (rc == 0 && cfg->secret_len) {
        rc = shmrpc__auth_nonce(challenge);
        ack.auth = shmrpc_bytes_of(challenge, sizeof challenge);
    }
    char full[160];
    if (rc == 0 && !cfg->secret_len && !peer_ready(w, p, full, sizeof full)) {
        shmrpc__msg_set(&w->err, "%s", full);
        rc = SHMRPC_EBUSY;
    }
    size_t at = p->out.len;
    if (rc == 0) {
        shmrpc__frame_begin(&p->out, SHMRPC__KIND_HELLO_ACK, 0, 0, 0);
        rc = shmrpc__hello_write(&p->out, SHMRPC__KIND_HELLO_ACK, &ack, &w->err);
        if (rc == 0) rc = shmrpc__frame_end(&p->out, at);
        if (rc) p->out.len = at;
    }
    if (rc) {
        peer_refuse(p, rc, shmrpc__msg_get(&w->err));
    } else {
        if (cfg->secret_len) p->state = P_AUTH;
        p->comp = ack.compression;
        p->threshold = ack.threshold;
        p->peer_max = hello.max_msg;
        p->proto = ack.proto;
        if (cfg->secret_len) {
            size_t hdr = at + SHMRPC__FRAME_HDR_SIZE;
            shmrpc__auth_proofs(cfg, body, shmrpc_bytes_of(p->out.data + hdr, p->out.len - hdr),
                                p->proof[0], p->proof[1]);
        }
    }
    shmrpc_arena_reset(w->arena);
}

/* The client's proof of the secret: a wrong one closes the connection, a right one is
 * answered with the server's (unless its address is full). */
static void serve_auth(worker *w, peer *p, shmrpc_bytes body)
{
    if (!shmrpc__auth_equal(body.ptr, p->proof[0])) {
        peer_refuse(p, SHMRPC_EPERM, "authentication failed: wrong shared secret");
        return;
    }
    char full[160];
    if (!peer_ready(w, p, full, sizeof full)) {
        peer_refuse(p, SHMRPC_EBUSY, full);
        return;
    }
    size_t at = shmrpc__frame_begin(&p->out, SHMRPC__KIND_AUTH, 0, 0, 0);
    shmrpc_buf_append(&p->out, p->proof[1], SHMRPC__AUTH_LEN);
    shmrpc__frame_end(&p->out, at);
    shmrpc__auth_wipe(p->proof, sizeof p->proof);
}

/* Fails one call with SHMRPC_EBUSY, before it runs, because the budget is spent: the
 * connection goes on, and the client may try again once others have read their answers. */
static void refuse_call(worker *w, peer *p, const shmrpc__frame_hdr *h, size_t bytes)
{
    uint64_t used = budget_used(w->l);
    char msg[200];
    snprintf(msg, sizeof msg,
             "the server's memory for buffered calls is spent (%" PRIu64 " of %zu bytes in "
             "use): a call of %zu bytes was not run; try again later",
             used, w->l->cfg.budget, bytes);
    shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_EBUSY, msg);
    log_limit(w, "refused a call from %s: %s", p->from, msg);
}

/* Queues the answer of a call that ran (status rc, its result in resp, or msg) on p. */
static void put_answer(peer *p, uint32_t method, uint64_t rid, int rc, const shmrpc_buf *resp,
                       const char *msg)
{
    if (rc == 0 && resp->len > p->peer_max) {
        char big[128];
        snprintf(big, sizeof big, "a result of %zu bytes is above the client's maximum of %u",
                 resp->len, p->peer_max);
        shmrpc__tcp_put_error_frame(&p->out, method, rid, SHMRPC_ETOOBIG, big);
    } else if (rc == 0) {
        /* The answer of a call that ran is kept whatever the budget says (the next call
         * waits instead); sized exactly, with room for a compressor's worst case, so a
         * 64 MiB answer does not cost 128. */
        size_t n = resp->len, want = p->out.len + SHMRPC__FRAME_HDR_SIZE + n + n / 6 + 64;
        if (want > KEEP_BYTES && buf_resize(&p->out, want)) {
            /* out of memory: the append below fails and says so */
        }
        rc = shmrpc__tcp_put_msg_frame(&p->out, SHMRPC__KIND_RESPONSE, 0, method, rid,
                                       shmrpc_bytes_of(resp->data, resp->len), p->comp,
                                       p->threshold);
        if (rc) shmrpc__tcp_put_error_frame(&p->out, method, rid, rc, shmrpc_strerror(rc));
    } else {
        shmrpc__tcp_put_error_frame(&p->out, method, rid, rc, msg);
    }
}

/* A call larger than this keeps its buffers only for itself. */
#define CALL_KEEP ((size_t)1 << 20)

static void buf_shed(shmrpc_buf *b)
{
    if (b->cap > CALL_KEEP) {
        shmrpc_buf_destroy(b);
        shmrpc_buf_init(b);
    }
}

/* --- the threads that run calls ----------------------------------------------------------
 * The worker's own thread stays the only one that touches connections, the budget and the
 * statistics; a pool thread sees only the jobs it takes from todo and gives back in done. */

static job *job_get(worker *w)
{
    job *j = w->spare_jobs;
    if (j) {
        w->spare_jobs = j->next;
        w->n_spare--;
    } else {
        j = calloc(1, sizeof *j);
        if (!j) return NULL;
        shmrpc_buf_init(&j->req);
        shmrpc_buf_init(&j->resp);
    }
    j->next = NULL;
    j->charged = 0;
    j->ns = -1;
    return j;
}

static void job_free(job *j)
{
    shmrpc_buf_destroy(&j->req);
    shmrpc_buf_destroy(&j->resp);
    free(j);
}

/* Gives j's budget back and keeps it for another call (as many as the threads, at most). */
static void job_put(worker *w, job *j)
{
    budget_charge(w, j->charged, 0);
    j->charged = 0;
    j->p = NULL;
    if (w->n_spare >= w->pool_max) {
        job_free(j);
        return;
    }
    buf_shed(&j->req);
    buf_shed(&j->resp);
    j->next = w->spare_jobs;
    w->spare_jobs = j;
    w->n_spare++;
}

static void run_job(worker *w, shmrpc_ctx *ctx, job *j)
{
    ctx->draining = j->draining;
    const uint8_t *at = j->off ? j->req.data + j->off : j->req.data; /* NULL when empty */
    j->rc = shmrpc__dispatch(w->l->server, ctx, j->method, shmrpc_bytes_of(at, j->req.len - j->off),
                             &j->resp);
    j->ns = ctx->ran_ns;
    if (j->rc) snprintf(j->msg, sizeof j->msg, "%s", shmrpc__ctx_msg(ctx));
}

/* A pool thread: takes jobs in order and runs each on its own ctx until quit. It inherits
 * the worker's blocked SIGTERM, which only the worker's own thread opens. */
static void *pool_main(void *arg)
{
    worker *w = arg;
    shmrpc_ctx ctx;
    bool have_ctx = false;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->todo && !w->quit) {
            w->idle++;
            pthread_cond_wait(&w->cv, &w->mu);
            w->idle--;
            if (w->wakes) w->wakes--;
        }
        if (!w->todo) break;
        job *j = w->todo;
        w->todo = j->next;
        if (!w->todo) w->todo_end = &w->todo;
        w->n_todo--;
        pthread_mutex_unlock(&w->mu);
        /* Made for the first call, and again for the next when it could not be (no memory):
         * a thread that once had none does not fail every call it takes after. */
        if (!have_ctx && shmrpc__ctx_init(&ctx, w->l->server) == 0) {
            have_ctx = true;
            ctx.timed = true; /* the worker's own thread counts the call in the statistics */
        }
        if (have_ctx) {
            run_job(w, &ctx, j);
        } else {
            j->rc = SHMRPC_ENOMEM;
            snprintf(j->msg, sizeof j->msg, "out of memory for the call's context: not run");
        }
        pthread_mutex_lock(&w->mu);
        bool first = !w->done;
        j->next = w->done;
        w->done = j;
        if (first) {
            uint64_t one = 1;
            if (write(w->done_fd, &one, sizeof one) < 0) {
                /* the counter is far from full: never */
            }
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (have_ctx) shmrpc__ctx_destroy(&ctx);
    return NULL;
}

/* One more thread for the jobs waiting, with mu held: an idle one woken, else a new one
 * while there are fewer than pool_max; true when one must be started (after mu). */
static bool pool_more(worker *w)
{
    if (w->idle > w->wakes) {
        w->wakes++;
        pthread_cond_signal(&w->cv);
        return false;
    }
    return w->n_threads < w->pool_max;
}

/* Hands j to the pool; false when no thread runs and none can be started (the caller runs
 * it in place). A thread is woken (or started) only when none is awake: an awake one takes
 * the jobs one after another, so quick calls cost one handoff, not a thread each. When the
 * oldest job waits longer than POOL_WAIT_NS (the awake threads are in slow calls),
 * pool_nudge adds another, up to pool_max. */
static bool pool_give(worker *w, job *j)
{
    j->queued_ns = shmrpc__now_ns();
    pthread_mutex_lock(&w->mu);
    *w->todo_end = j;
    w->todo_end = &j->next;
    w->n_todo++;
    bool start = w->n_threads - w->idle + w->wakes == 0 && pool_more(w);
    pthread_mutex_unlock(&w->mu);
    if (!start) return true;
    if (pthread_create(&w->threads[w->n_threads], NULL, pool_main, w) == 0) {
        w->n_threads++;
        return true;
    }
    if (w->n_threads) return true; /* those that run will take it */
    pthread_mutex_lock(&w->mu);    /* nobody took it: it was the only one */
    w->todo = NULL;
    w->todo_end = &w->todo;
    w->n_todo = 0;
    pthread_mutex_unlock(&w->mu);
    return false;
}

#define POOL_WAIT_NS (200 * 1000) /* a job waiting this long gets another thread */

static void pool_start(worker *w)
{
    if (pthread_create(&w->threads[w->n_threads], NULL, pool_main, w) == 0) w->n_threads++;
}

/* Called by the worker's own thread while jobs wait: another thread when the oldest has
 * waited POOL_WAIT_NS. */
static void pool_nudge(worker *w, int64_t now)
{
    pthread_mutex_lock(&w->mu);
    bool start = w->todo && now - w->todo->queued_ns >= POOL_WAIT_NS && pool_more(w);
    pthread_mutex_unlock(&w->mu);
    if (start) pool_start(w);
}

static void count_busy(worker *w)
{
    if (w->index >= 0)
        atomic_store_explicit(&w->l->load->busy[w->index], w->running, memory_order_relaxed);
}

/* The calls of p that wait for a thread of the pool are not run: their client is gone,
 * and nobody would read their answers. Those a thread took run to their end. */
static void drop_waiting(worker *w, peer *p)
{
    job *dropped = NULL;
    pthread_mutex_lock(&w->mu);
    job **at = &w->todo;
    while (*at) {
        job *j = *at;
        if (j->p != p) {
            at = &j->next;
            continue;
        }
        *at = j->next;
        w->n_todo--;
        j->next = dropped;
        dropped = j;
    }
    w->todo_end = at;
    pthread_mutex_unlock(&w->mu);
    while (dropped) {
        job *j = dropped;
        dropped = j->next;
        p->running--;
        w->running--;
        job_put(w, j);
    }
    count_busy(w);
}

static void finish_job(worker *w, job *j);

/* Copies (or decompresses) the request into a job and hands it to the pool. */
static void submit(worker *w, peer *p, const shmrpc__frame_hdr *h, shmrpc_bytes body)
{
    const tcp_listener *l = w->l;
    job *j = job_get(w);
    if (!j) {
        shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_ENOMEM,
                                    "out of memory: the call was not run");
        return;
    }
    uint16_t comp = h->flags & SHMRPC__FLAG_COMPRESSION;
    uint64_t need = body.len;
    if (comp && shmrpc__body_declared(comp, body, &need) != 0) need = 0;
    j->off = 0;
    if (!comp && need > KEEP_BYTES) {
        /* A large frame is not copied: the job takes the connection's buffer, whose charge
         * goes with it, and the connection keeps what was read past the frame. */
        size_t used = SHMRPC__FRAME_HDR_SIZE + body.len, left = p->in.len - used;
        shmrpc_buf_clear(&j->req);
        if (shmrpc__buf_grow(&j->req, left + READ_AHEAD)) {
            shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_ENOMEM,
                                        "out of memory: the call was not run");
            job_put(w, j);
            return;
        }
        if (left) memcpy(j->req.data, p->in.data + used, left);
        j->req.len = left;
        shmrpc_buf frame = p->in;
        p->in = j->req;
        j->req = frame;
        j->req.len = used;
        j->off = SHMRPC__FRAME_HDR_SIZE;
        p->taken = true;
        j->charged = buf_cost(&j->req);
        budget_charge(w, 0, j->charged);
        peer_recharge(w, p);
    } else if (need > KEEP_BYTES && need <= l->max_msg) {
        if (!budget_take(w, (size_t)need)) {
            refuse_call(w, p, h, (size_t)need);
            job_put(w, j);
            return;
        }
        j->charged = (size_t)need;
    }
    int rc;
    if (comp) {
        shmrpc__msg_clear(&w->err);
        rc = shmrpc__body_decompress(comp, body, l->max_msg, &j->req, &w->err);
        if (rc) {
            peer_refuse(p, rc, shmrpc__msg_get(&w->err));
            job_put(w, j);
            return;
        }
    } else if (!j->off) {
        shmrpc_buf_clear(&j->req);
        rc = shmrpc_buf_append(&j->req, body.ptr, body.len);
        if (rc) {
            shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, rc,
                                        "out of memory: the call was not run");
            job_put(w, j);
            return;
        }
    }
    j->p = p;
    j->method = h->method;
    j->rid = h->request_id;
    j->draining = stopping(w); /* a forked worker's SIGTERM is its own, not the server's */
    p->running++;
    w->running++;
    count_busy(w);
    if (!pool_give(w, j)) {
        run_job(w, &w->ctx, j);
        j->ns = -1; /* counted by dispatch on w->ctx already */
        finish_job(w, j);
    }
}

static bool can_read(const worker *w, const peer *p)
{
    return !p->closing && !p->drain_due && p->running < (uint32_t)w->l->cfg.max_running;
}

/* Takes back a job the pool ran: its answer goes to its connection, unless that closed. */
static void finish_job(worker *w, job *j)
{
    peer *p = j->p;
    /* At its bound, the connection's next frame waited for the server, not for its
     * client: its time for progress starts again now that the server reads on. */
    if (p->running == (uint32_t)w->l->cfg.max_running && p->in.len)
        frame_begins(w, p, shmrpc__now_ns());
    p->running--;
    w->running--;
    count_busy(w);
    shmrpc__stats_row *rows = w->ctx.stats;
    if (j->ns >= 0 && rows && j->method < w->ctx.stats_n)
        shmrpc__stats_count(&rows[j->method], j->rc, (uint64_t)j->ns);
    if (!p->gone) put_answer(p, j->method, j->rid, j->rc, &j->resp, j->msg);
    job_put(w, j);
    if (p->gone) {
        if (p->running == 0) bury(w, p);
        return;
    }
    if (p->running == 0 && p->tail_status) {
        shmrpc__tcp_put_error_frame(&p->out, 0, 0, p->tail_status, p->tail_msg);
        p->tail_status = 0;
    }
    if (p->running == 0 && p->drain_due) {
        size_t at = shmrpc__frame_begin(&p->out, SHMRPC__KIND_DRAIN, 0, 0, 0);
        shmrpc__frame_end(&p->out, at);
        p->drain_due = false;
        p->drain_ns = shmrpc__now_ns();
    }
    p->last_ns = shmrpc__now_ns();
    peer_recharge(w, p);
}

static void serve_request(worker *w, peer *p, const shmrpc__frame_hdr *h, shmrpc_bytes body)
{
    const tcp_listener *l = w->l;
    /* A request read after the DRAIN is not run: its client reads the DRAIN first and
     * sends the call elsewhere; this answer is for a client that does not. */
    if (w->draining) {
        char msg[ADDR_MAX + 64];
        snprintf(msg, sizeof msg, "tcp://%s is draining (its server stops): the call was not run",
                 l->where);
        shmrpc__tcp_put_error_frame(&p->out, h->method, h->request_id, SHMRPC_EUNAVAIL, msg);
        p->drain_ns = shmrpc__now_ns();
        return;
    }
    /* No call runs while answers of earlier ones fill the budget (their clients do not
     * read them): its answer, of a size known only once it ran, would add to them. */
    if (budget_used(l) > l->cfg.budget) {
        refuse_call(w, p, h, body.len);
        return;
    }
    /* A call its client says is alone on the connection (the lone flag, revision 3: a
     * blocking call) runs here on the worker's own thread when no call of the worker runs
     * in the pool, as with max_running 1: handing it to the pool would cost it two thread
     * handoffs and gain the connection nothing. With calls in the pool it goes there too:
     * run here, a slow one would hold their answers (only this thread sends them). The
     * flag is only a hint. */
    bool lone = (h->flags & SHMRPC__FLAG_LONE) && w->running == 0;
    if (w->pool_max && !lone) {
        submit(w, p, h, body);
        return;
    }
    shmrpc_bytes req = body;
    uint16_t comp = h->flags & SHMRPC__FLAG_COMPRESSION;
    int rc = 0;
    if (comp) {
        uint64_t declared;
        if (shmrpc__body_declared(comp, body, &declared) == 0 && declared > KEEP_BYTES &&
            declared <= l->max_msg) {
            if (!budget_take(w, (size_t)declared)) {
                refuse_call(w, p, h, (size_t)declared);
                return;
            }
            w->req_charged = (size_t)declared;
        }
        shmrpc__msg_clear(&w->err);
        rc = shmrpc__body_decompress(comp, body, l->max_msg, &w->req, &w->err);
        if (rc) {
            peer_refuse(p, rc, shmrpc__msg_get(&w->err));
            goto done;
        }
        req = shmrpc_bytes_of(w->req.data, w->req.len);
    }
    _Atomic uint32_t *busy = w->index >= 0 ? &l->load->busy[w->index] : NULL;
    /* busy counts the calls the pool runs too (count_busy). */
    if (busy) atomic_store_explicit(busy, w->running + 1, memory_order_relaxed);
    w->ctx.draining = stopping(w); /* a forked worker's SIGTERM is its own, not the server's */
    rc = shmrpc__dispatch(l->server, &w->ctx, h->method, req, &w->resp);
    if (busy) atomic_store_explicit(busy, w->running, memory_order_relaxed);
    put_answer(p, h->method, h->request_id, rc, &w->resp, shmrpc__ctx_msg(&w->ctx));
done:
    /* Every way out gives a large call's memory back, a refused body's included. */
    buf_shed(&w->req);
    buf_shed(&w->resp);
    budget_charge(w, w->req_charged, 0);
    w->req_charged = 0;
    peer_recharge(w, p);
}

/* A whole frame has arrived in p->in. */
static void serve_frame(worker *w, peer *p)
{
    const shmrpc__frame_hdr *h = &p->hdr;
    shmrpc_bytes body = shmrpc_bytes_of(p->in.data + SHMRPC__FRAME_HDR_SIZE, h->body_len);
    const char *kind = shmrpc__frame_kind_name(h->kind);
    char msg[128];
    if (p->state == P_HELLO && h->kind == SHMRPC__KIND_HELLO) {
        serve_hello(w, p, body);
        return;
    }
    if (p->state == P_AUTH && h->kind == SHMRPC__KIND_AUTH) {
        serve_auth(w, p, body);
        return;
    }
    if (p->state != P_READY) {
        snprintf(msg, sizeof msg, "a %s frame before the handshake", kind);
        peer_refuse(p, SHMRPC_EPROTO, msg);
        return;
    }
    switch (h->kind) {
    case SHMRPC__KIND_REQUEST:
        serve_request(w, p, h, body);
        return;
    case SHMRPC__KIND_PING: {
        size_t at = shmrpc__frame_begin(&p->out, SHMRPC__KIND_PONG, 0, 0, h->request_id);
        shmrpc__frame_end(&p->out, at);
        return;
    }
    case SHMRPC__KIND_PONG:
        return;
    case SHMRPC__KIND_ERROR: /* the client explains why it leaves */
        p->closing = true;
        return;
    default:
        snprintf(msg, sizeof msg, "a %s frame sent to a server", kind);
        peer_refuse(p, SHMRPC_EPROTO, msg);
        return;
    }
}

/* The end of the stream: a clean close between frames (-1), or half a frame, which is
 * answered with an ERROR saying so before the close (0). */
static int peer_eof(worker *w, peer *p)
{
    if (p->in.len == 0) return -1;
    shmrpc__msg_clear(&w->err);
    if (!p->have_hdr)
        shmrpc__frame_hdr_decode(p->in.data, p->in.len, 0, 0, &p->hdr, &w->err);
    else
        shmrpc__msg_set(&w->err, "truncated %s frame: %zu of %zu body bytes",
                        shmrpc__frame_kind_name(p->hdr.kind), p->in.len - SHMRPC__FRAME_HDR_SIZE,
                        (size_t)p->hdr.body_len);
    peer_refuse(p, SHMRPC_EPROTO, shmrpc__msg_get(&w->err));
    return 0;
}

/* The room a frame wants in p->in: all of it, and READ_AHEAD past it. */
static size_t frame_room(const peer *p)
{
    return SHMRPC__FRAME_HDR_SIZE + (size_t)p->hdr.body_len + READ_AHEAD;
}

/* Whether the frame whose header came is read at all: one above a connection's own
 * KEEP_BYTES only while the budget has room for all of it now. Nothing is charged for it
 * yet (room_for_frame charges its bytes as they come), so a peer that announces much and
 * sends little does not hold the room it announced. */
static bool frame_fits(const worker *w, const peer *p)
{
    size_t total = frame_room(p);
    if (total <= KEEP_BYTES) return true;
    return budget_used(w->l) + total - buf_cost(&p->in) <= w->l->cfg.budget;
}

/* Makes room in p->in for more of the frame in hand. Within KEEP_BYTES, all of it at once;
 * above, the buffer grows only once it is full, doubling up to frame_room, and each step
 * above KEEP_BYTES is taken from the server's budget: a connection holds at most about
 * twice what its peer has sent of a frame. 1 when the budget has no room for the step
 * (nothing was grown), -1 out of memory, else 0. */
static int room_for_frame(worker *w, peer *p)
{
    size_t total = frame_room(p);
    if (total <= p->in.cap) return 0;
    if (total <= KEEP_BYTES) return shmrpc__buf_grow(&p->in, total - p->in.len) ? -1 : 0;
    if (p->in.cap < KEEP_BYTES) return buf_resize(&p->in, KEEP_BYTES) ? -1 : 0;
    if (p->in.len < p->in.cap) return 0;
    size_t cap = p->in.cap < total / 2 ? 2 * p->in.cap : total;
    size_t more = cap - buf_cost(&p->in);
    if (!budget_take(w, more)) return 1;
    int rc = buf_resize(&p->in, cap);
    /* The buffer's charge before the room taken is given back: between the two, the room
     * counts twice, never not at all (another worker could take it then). */
    peer_recharge(w, p);
    budget_charge(w, more, 0);
    return rc ? -1 : 0;
}

/* A frame the budget has no room for, at its header (frame_fits) or at a step of its
 * buffer midway through its body (room_for_frame), the same way: what came of it is let go
 * at once, a REQUEST's body is read and dropped, then the call fails with SHMRPC_EBUSY
 * (answer_refused) and the connection goes on; any other kind closes the connection. 0
 * when the frame is to be skipped, 1 when it was refused. */
static int refuse_frame(worker *w, peer *p)
{
    const char *kind = shmrpc__frame_kind_name(p->hdr.kind);
    char msg[200];
    snprintf(msg, sizeof msg,
             "a %s frame of %" PRIu32 " bytes does not fit the server's memory for buffered "
             "frames (%" PRIu64 " of %zu bytes in use)",
             kind, p->hdr.body_len, budget_used(w->l), w->l->cfg.budget);
    log_limit(w, "refused a frame from %s: %s", p->from, msg);
    if (p->hdr.kind != SHMRPC__KIND_REQUEST) {
        peer_refuse(p, SHMRPC_EBUSY, msg);
        return 1;
    }
    size_t frame = SHMRPC__FRAME_HDR_SIZE + (size_t)p->hdr.body_len;
    if (p->in.len >= frame) { /* all here already (not for a frame this large) */
        memmove(p->in.data, p->in.data + frame, p->in.len - frame);
        p->in.len -= frame;
        p->skip = 0;
    } else {
        p->skip = (uint32_t)(frame - p->in.len);
        p->in.len = 0;
        buf_trim(&p->in); /* what a slow sender had sent goes back to the budget */
        peer_recharge(w, p);
    }
    p->refused = true;
    return 0;
}

/* Answers a refused REQUEST once its body has been skipped. */
static void answer_refused(worker *w, peer *p)
{
    char msg[200];
    snprintf(msg, sizeof msg,
             "a request of %" PRIu32 " bytes does not fit the server's memory for buffered "
             "frames (%zu bytes): it was not run; try again later",
             p->hdr.body_len, w->l->cfg.budget);
    shmrpc__tcp_put_error_frame(&p->out, p->hdr.method, p->hdr.request_id, SHMRPC_EBUSY, msg);
    p->refused = false;
    p->have_hdr = false;
    p->last_ns = shmrpc__now_ns();
    if (p->in.len) frame_begins(w, p, p->last_ns);
}

/* Makes p->in start with a whole frame, reading at most READ_AHEAD bytes past it (so a
 * connection holds at most one frame and that much). 1 when it does (or a refused
 * frame's body has been skipped), 0 when more must come (or the frame was refused), -1
 * when the connection is to be dropped at once. */
static int read_frame(worker *w, peer *p)
{
    for (;;) {
        if (p->refused) { /* skipping a refused body, into the room in hand */
            if (p->skip == 0) return 1;
            if (shmrpc__buf_grow(&p->in, READ_AHEAD)) return -1;
            size_t room = p->in.cap - p->in.len < p->skip ? p->in.cap - p->in.len : p->skip;
            ssize_t n = shmrpc__io_recv(&p->io, p->in.data + p->in.len, room, MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
            if (n == 0) return -1; /* gone in the middle of the frame: nothing to answer */
            p->skip -= (uint32_t)n;
            frame_came(w, p, (size_t)n, shmrpc__now_ns());
            continue;
        }
        if (!p->have_hdr && p->in.len >= SHMRPC__FRAME_HDR_SIZE) {
            uint32_t max = p->state == P_READY ? w->l->max_msg : SHMRPC__WIRE_MAX_HELLO;
            shmrpc__msg_clear(&w->err);
            uint16_t agreed = p->comp | (p->proto >= 3 ? SHMRPC__FLAG_LONE : 0);
            int rc = shmrpc__frame_hdr_decode(p->in.data, SHMRPC__FRAME_HDR_SIZE, max, agreed,
                                              &p->hdr, &w->err);
            if (rc) {
                peer_refuse(p, rc, shmrpc__msg_get(&w->err));
                return 0;
            }
            p->have_hdr = true;
            if (!frame_fits(w, p) && refuse_frame(w, p)) return 0;
            if (p->refused) continue;
        }
        size_t need = SHMRPC__FRAME_HDR_SIZE + (p->have_hdr ? p->hdr.body_len : 0);
        if (p->have_hdr && p->in.len >= need) return 1;
        if (p->have_hdr) {
            int rc = room_for_frame(w, p);
            if (rc < 0) return -1;
            if (rc > 0 && refuse_frame(w, p)) return 0;
            if (rc > 0) continue;
        } else if (shmrpc__buf_grow(&p->in, need - p->in.len + READ_AHEAD)) {
            return -1;
        }
        size_t room = need - p->in.len + READ_AHEAD;
        if (room > p->in.cap - p->in.len) room = p->in.cap - p->in.len;
        ssize_t n = shmrpc__io_recv(&p->io, p->in.data + p->in.len, room, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        if (n == 0) return peer_eof(w, p);
        int64_t now = shmrpc__now_ns();
        if (p->in.len == 0) frame_begins(w, p, now);
        p->in.len += (size_t)n;
        frame_came(w, p, (size_t)n, now);
    }
}

/* Drops the frame just served from the front of p->in, keeping what was read past it. */
static void consume_frame(worker *w, peer *p)
{
    size_t used = p->taken ? 0 : SHMRPC__FRAME_HDR_SIZE + p->hdr.body_len;
    p->taken = false;
    size_t left = p->in.len - used;
    if (left) memmove(p->in.data, p->in.data + used, left);
    p->in.len = left;
    p->have_hdr = false;
    p->last_ns = shmrpc__now_ns();
    if (left) frame_begins(w, p, p->last_ns);
    if (!left && p->in.cap > KEEP_BYTES) { /* an idle connection holds little */
        buf_trim(&p->in);
        peer_recharge(w, p);
    }
}

/* Serves the frames that have come, in order (a client may send many requests before it
 * reads an answer: docs/wire.md, "Calls in flight"), handing the calls to the worker's
 * threads, up to cfg.max_running of the connection's at once. Answers collect in p->out
 * while more requests are already read, and go out together (one send for many small
 * answers) once nothing more is buffered or OUT_BATCH bytes are waiting; the next frame is
 * read only once they are sent and fewer than cfg.max_running calls run, so a connection
 * holds at most one frame in, its running calls, and OUT_BATCH plus one answer out, and a
 * client that does not read its answers stops the server reading its requests. */
static void peer_read(worker *w, peer *p)
{
    unsigned served = 0;
    for (;;) {
        bool starved = false;
        while (can_read(w, p) && out_left(p) < OUT_BATCH && served < FRAMES_PER_TURN) {
            int rc = read_frame(w, p);
            if (rc < 0) {
                if (p->io.failed) log_limit(w, "TLS with %s failed: %s", p->from, p->io.why);
                peer_free(w, p);
                return;
            }
            if (rc == 0) {
                starved = true;
                break;
            }
            if (p->refused) {
                answer_refused(w, p);
            } else {
                serve_frame(w, p);
                consume_frame(w, p);
            }
            served++;
            /* Level-triggered epoll says when more comes, but not of what TLS holds. */
            if (p->in.len == 0 && !shmrpc__io_pending(&p->io)) {
                starved = true;
                break;
            }
        }
        if (out_left(p) && !peer_flush(w, p)) {
            peer_free(w, p);
            return;
        }
        if (out_left(p)) {
            p->frame_ns = shmrpc__now_ns();
            return;
        }
        if (starved || !can_read(w, p)) return;
        /* Frames that start nothing (PONGs, refused requests) end none of the loops above:
         * a client streaming them kept the worker from its other connections for seconds
         * (a helper's review). Its next turn comes after theirs. */
        if (served >= FRAMES_PER_TURN) {
            if (!p->again) {
                p->again = true;
                p->next_again = w->again;
                w->again = p;
            }
            return;
        }
    }
}

/* Closes p if it is done, else sets its epoll interest: writing while a frame is unsent,
 * reading otherwise. */
static void peer_settle(worker *w, peer *p)
{
    if (p->gone) return; /* freed by peer_read (its connection broke) */
    if (out_left(p) && !peer_flush(w, p)) {
        peer_free(w, p);
        return;
    }
    if (p->closing && out_left(p) == 0 && p->running == 0) {
        shutdown(p->fd, SHUT_WR);
        peer_free(w, p);
        return;
    }
    /* Neither while its calls are at the bound (collect looks again as each ends). While
     * it is neither read nor written, its end of stream is still watched for (EPOLLRDHUP):
     * a client that died with calls waiting for the pool has them dropped at once
     * (drop_waiting). Not on a connection that is closing (an ERROR waits for its calls'
     * answers, as for half a frame before the end of the stream), and not while answers
     * go out, which a client that shut its writing side may still read whole. */
    uint32_t want = out_left(p) ? EPOLLOUT : can_read(w, p) ? EPOLLIN : p->closing ? 0 : EPOLLRDHUP;
    if (want == p->events) return;
    /* Read again after a wait of the server's own: the frame in hand was not late. */
    if (want == EPOLLIN && (p->in.len || p->refused)) frame_begins(w, p, shmrpc__now_ns());
    struct epoll_event ev = {.events = want, .data.ptr = p};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, p->fd, &ev);
    p->events = want;
}

/* Serves the connections whose turn was cut, again (from worker_run, after a batch). */
static void serve_again(worker *w)
{
    peer *list = w->again;
    w->again = NULL;
    while (list) {
        peer *p = list;
        list = p->next_again;
        p->again = false;
        p->next_again = NULL;
        if (p->gone) continue;
        if (out_left(p) == 0) peer_read(w, p);
        peer_settle(w, p);
    }
}

static void peer_event(worker *w, peer *p, uint32_t events)
{
    if (p->gone) return; /* closed earlier in this batch of events */
    /* A reset, a socket shut both ways (epoll reports these even with no interest set) or
     * the client's end of stream, while nothing is read from it: its calls' answers have
     * nowhere to go. A client shuts its side only when it is gone, as when the end of
     * stream is read (peer_read). */
    if ((events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) && !(p->events & EPOLLIN)) {
        peer_free(w, p);
        return;
    }
    if (events & EPOLLIN) p->heard = true; /* in its handshake: not one to close first */
    /* TLS is made ready when the first bytes come, so that a connection which never sends
     * one costs no TLS state (a flood of them is closed as cheaply as over plain TCP). */
    if ((events & EPOLLIN) && p->tls_due) {
        p->tls_due = false;
        if (shmrpc__io_tls(&p->io, w->l->tls) != 0) {
            peer_free(w, p);
            return;
        }
    }
    if (events & EPOLLOUT) {
        if (!peer_flush(w, p)) {
            peer_free(w, p);
            return;
        }
        if (out_left(p) == 0) p->last_ns = shmrpc__now_ns();
    }
    bool readable = events & (EPOLLIN | EPOLLHUP | EPOLLERR);
    /* A connection whose turn was cut waits for serve_again, after the others. */
    if (out_left(p) == 0 && !p->again && (readable || p->in.len || shmrpc__io_pending(&p->io)))
        peer_read(w, p);
    peer_settle(w, p);
}

/* Takes back the jobs the pool ran, and serves their connections again: their answers go
 * out, and what waited for the bound or for their end (a DRAIN, an ERROR) follows. */
static void collect(worker *w)
{
    uint64_t n;
    if (read(w->done_fd, &n, sizeof n) < 0) {
        /* EAGAIN: taken with an earlier one */
    }
    pthread_mutex_lock(&w->mu);
    job *j = w->done;
    w->done = NULL;
    pthread_mutex_unlock(&w->mu);
    peer *touched = NULL;
    while (j) {
        job *next = j->next;
        peer *p = j->p;
        bool gone = p->gone;
        finish_job(w, j); /* may bury a gone p */
        if (!gone && !p->touched && p != touched) {
            p->touched = touched ? touched : p; /* p itself ends the list */
            touched = p;
        }
        j = next;
    }
    while (touched) {
        peer *p = touched;
        touched = p->touched == p ? NULL : p->touched;
        p->touched = NULL;
        if (can_read(w, p) && (p->in.len || shmrpc__io_pending(&p->io))) peer_read(w, p);
        peer_settle(w, p);
    }
}

/* Refuses a connection with an ERROR frame, best effort, and closes it. */
static void refuse_fd(int fd, int status, const char *msg)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    shmrpc__tcp_put_error_frame(&b, 0, 0, status, msg);
    if (!b.err && send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* the peer is gone already */
    }
    shmrpc_buf_destroy(&b);
    close(fd);
}

static void refuse_busy(int fd, int max_conns)
{
    char msg[96];
    snprintf(msg, sizeof msg, "too many connections (a worker serves at most %d)", max_conns);
    refuse_fd(fd, SHMRPC_EBUSY, msg);
}

/* The buckets of fd's peer address in tcp_load.by_addr, its text into from. An IPv4 peer
 * is its address; an IPv6 peer its /64, which one holder has 2^64 addresses of. The
 * buckets are keyed with a secret seed: a peer cannot choose addresses that share one. */
static addr_key addr_buckets(const tcp_listener *l, int fd, char *from, size_t n, uint64_t *id)
{
    struct sockaddr_storage ss = {.ss_family = AF_UNSPEC};
    socklen_t len = sizeof ss;
    uint64_t key = 0;
    snprintf(from, n, "an unknown peer");
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) ss.ss_family = AF_UNSPEC;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        key = (uint64_t)0xffffffff << 32 | ntohl(a->sin_addr.s_addr);
        inet_ntop(AF_INET, &a->sin_addr, from, (socklen_t)n);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        const uint8_t *b = a->sin6_addr.s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            key = (uint64_t)0xffffffff << 32 | (uint64_t)b[12] << 24 | (uint64_t)b[13] << 16 |
                  (uint64_t)b[14] << 8 | b[15];
        else
            for (int i = 0; i < 8; i++)
                key = key << 8 | b[i];
        inet_ntop(AF_INET6, &a->sin6_addr, from, (socklen_t)n);
    }
    uint64_t z = key ^ l->addr_seed; /* splitmix64's finaliser */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    z ^= z >> 31;
    *id = z;
    return (addr_key){{(uint16_t)(z % ADDR_BUCKETS), (uint16_t)((z >> 32) % ADDR_BUCKETS)}};
}

/* The key of the per-address buckets: random, or SHMRPC_TEST_ADDR_SEED (a number) for a
 * test that needs two addresses to share a bucket (docs/wire.md). */
static uint64_t addr_seed(void)
{
    const char *v = getenv("SHMRPC_TEST_ADDR_SEED");
    char *end;
    errno = 0;
    unsigned long long n = v && *v ? strtoull(v, &end, 0) : 0;
    if (v && *v && errno == 0 && *end == '\0') return n;
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == sizeof seed) return seed;
    return (uint64_t)shmrpc__now_ns() ^ (uint64_t)getpid() << 32;
}

/* Counts a connection from the address of key in (delta 1) or out (delta -1). */
static void addr_count(worker *w, addr_key key, int delta)
{
    for (int h = 0; h < 2; h++)
        atomic_fetch_add(&w->l->load->by_addr[row_of(w)][h][key.bucket[h]], (uint32_t)delta);
}

/* Counts a connection that finished its handshake from the address of key, unless it has
 * max_per_addr already: its count is the smaller of its two buckets' (addr_key). */
static bool addr_admit(worker *w, addr_key key)
{
    tcp_load *t = w->l->load;
    addr_count(w, key, 1);
    uint64_t least = UINT64_MAX;
    for (int h = 0; h < 2; h++) {
        uint64_t sum = 0;
        for (int i = 0; i < MAX_WORKERS; i++)
            sum += atomic_load_explicit(&t->by_addr[i][h][key.bucket[h]], memory_order_relaxed);
        if (sum < least) least = sum;
    }
    if (least <= (uint64_t)w->l->cfg.max_per_addr) return true;
    addr_count(w, key, -1);
    return false;
}

/* The finished connection to close when the worker is at its cap and none is in its
 * handshake: the one idle longest (between frames, nothing to send); NULL when every one
 * is busy. A connection whose calls run is never closed to make room. */
static peer *longest_idle(const worker *w)
{
    peer *best = NULL;
    for (int i = 0; i < w->n_peers; i++) {
        peer *p = w->peers[i];
        if (p->state != P_READY || p->closing || p->in.len || p->have_hdr || out_left(p) ||
            p->running)
            continue;
        if (!best || p->last_ns < best->last_ns) best = p;
    }
    return best;
}

/* Closes p for a new connection from `from`, telling it why (best effort, as the sweep
 * does at a timeout). One in its handshake that has sent nothing gets the ERROR in plain
 * bytes, TLS or not, as refuse_fd sends it (its TLS has not started: peer_event): a TLS
 * client reads it as a refusal before TLS. */
static void close_for_room(worker *w, peer *p, const char *from, int status, const char *why)
{
    if (p->state != P_READY && !p->heard && out_left(p) == 0) {
        shmrpc_buf b;
        shmrpc_buf_init(&b);
        shmrpc__tcp_put_error_frame(&b, 0, 0, status, why);
        if (!b.err && send(p->fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            /* the peer is gone already */
        }
        shmrpc_buf_destroy(&b);
    } else if (!p->closing && out_left(p) == 0 && !p->running) {
        shmrpc__tcp_put_error_frame(&p->out, 0, 0, status, why);
        peer_flush(w, p);
    }
    log_limit(w, "closed the connection of %s for one from %s: %s", p->from, from, why);
    peer_free(w, p);
}

/* The connection in its handshake whose address holds the most of them at w (the oldest
 * such); NULL when none is in its handshake. */
static peer *largest_holder(const worker *w)
{
    peer *best = NULL;
    uint32_t most = 0;
    for (peer *p = w->shaking; p; p = p->shaking_next) {
        uint32_t n = shaking_from(w, p->addr);
        if (n > most) best = p, most = n;
    }
    return best;
}

/* Makes room for a new connection from the address of key (id) at w, before anything is
 * refused (docs/wire.md, "Limits"). While the worker has room (fewer than max_conns, and
 * fewer than its quota in their handshake), nothing is closed: a flood that fits is held,
 * not churned, so a client of its address is not closed for a slow first byte. Past
 * either, one in its handshake goes: of the new connection's own address when that holds
 * its quota or more, else of the address that holds the most (a flood pays for itself);
 * of those, the oldest that has sent nothing, else the oldest. With none in its
 * handshake, at max_conns, the finished one idle longest goes. false when none can go
 * (every connection has calls running, or a frame or answers in hand): the new one is
 * refused. */
static bool make_room(worker *w, addr_key key, uint64_t id, const char *from)
{
    int cap = w->l->cfg.max_conns;
    bool full = w->n_peers >= cap;
    if (!full && w->n_shaking < w->shaking_max) return true;
    char why[200];
    peer *p = NULL;
    if (shaking_from(w, key) >= (uint32_t)w->shaking_per_addr) p = oldest_shaking(w, &id);
    if (!p) {
        peer *most = largest_holder(w);
        if (most) p = oldest_shaking(w, &most->addr_id);
    }
    if (p) {
        if (full)
            snprintf(why, sizeof why,
                     "handshake timeout: closed to make room for a new connection (a worker "
                     "serves at most %d)",
                     cap);
        else
            snprintf(why, sizeof why,
                     "handshake timeout: closed to make room for a new connection (a worker "
                     "holds at most %d connections in their handshake)",
                     w->shaking_max);
        close_for_room(w, p, from, SHMRPC_ETIMEDOUT, why);
        return true;
    }
    if (!full) return true;
    /* At the cap, idle connections make room next: one that idles for minutes must not
     * lock a new client out. Its client connects again before its next call. */
    p = longest_idle(w);
    if (!p) return false;
    snprintf(why, sizeof why, "idle connection closed to make room (a worker serves at most %d)",
             cap);
    close_for_room(w, p, from, SHMRPC_ETIMEDOUT, why);
    return true;
}

static void add_peer(worker *w, int fd)
{
    const shmrpc__tcp_cfg *cfg = &w->l->cfg;
    char from[64];
    uint64_t id;
    addr_key key = addr_buckets(w->l, fd, from, sizeof from, &id);
    if (!make_room(w, key, id, from)) {
        log_limit(w, "refused a connection from %s: all %d are busy", from, cfg->max_conns);
        refuse_busy(fd, cfg->max_conns);
        return;
    }
    peer *p = calloc(1, sizeof *p);
    if (!p) {
        close(fd);
        return;
    }
    p->fd = fd;
    shmrpc__io_init(&p->io, fd);
    p->tls_due = w->l->tls != NULL;
    p->addr = key;
    p->addr_id = id;
    memcpy(p->from, from, sizeof p->from);
    shmrpc_buf_init(&p->in);
    shmrpc_buf_init(&p->out);
    p->accepted_ns = p->last_ns = shmrpc__now_ns();
    p->events = EPOLLIN;
    shmrpc__tcp_set_nodelay(fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        shmrpc__io_close(&p->io, false);
        free(p);
        return;
    }
    w->peers[w->n_peers++] = p;
    count_open(w, 1);
    shaking_add(w, p);
    /* A client's first bytes have usually come while its connection waited in the
     * kernel's queue: they are served now, not after the epoll round that would report
     * them (while a flood may close the oldest connections in their handshake). */
    char byte;
    if (recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) >= 0) peer_event(w, p, EPOLLIN);
}

/* Accepts one pending connection; -1 when none is left. Out of descriptors, it gives up
 * its spare one to accept and drop a connection, so a full table never makes a readable
 * listener spin (accept fails with EMFILE before it looks for a connection, so only the
 * spare can tell whether one is left). */
static int accept_one(int lfd, int *spare)
{
    for (;;) {
        /* Blocking, for hot_wait; every other recv and send says MSG_DONTWAIT. */
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) return fd;
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if ((errno == EMFILE || errno == ENFILE) && *spare >= 0) {
            close(*spare);
            fd = accept(lfd, NULL, NULL);
            if (fd >= 0) close(fd);
            *spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (fd >= 0) continue;
        }
        return -1; /* EAGAIN, or no spare */
    }
}

/* Receives one socket the manager sent; -1 when none is left. */
static int receive_fd(int from)
{
    char data;
    struct iovec iov = {&data, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    for (;;) {
        ssize_t n = recvmsg(from, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
            c->cmsg_len != CMSG_LEN(sizeof(int)))
            continue; /* not from our manager's send_fd: nothing to keep */
        int fd;
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
        return fd;
    }
}

/* Takes the connections that are waiting: from the listener when serving in place, else
 * those the manager handed over. */
static void take_connections(worker *w)
{
    for (int i = 0; i < 64; i++) {
        int fd = w->index < 0 ? accept_one(w->source, &w->spare) : receive_fd(w->source);
        if (fd < 0) return;
        if (w->index >= 0)
            atomic_fetch_add_explicit(&w->l->load->taken[w->index], 1, memory_order_relaxed);
        add_peer(w, fd);
    }
}

/* The deadline of p: the handshake's, a partial frame's progress, or idleness. */
static int64_t peer_deadline(const worker *w, const peer *p)
{
    const shmrpc__tcp_cfg *cfg = &w->l->cfg;
    if (p->state != P_READY) return p->accepted_ns + cfg->handshake_ns;
    /* Calls at the connection's bound: the server reads nothing more, so a frame waiting
     * in p->in is not late (pipelined calls beyond max_running were cut by the progress
     * timeout while their handlers ran, their answers lost; a helper's review). */
    if (p->running >= (uint32_t)cfg->max_running && !out_left(p) && !p->refused) return INT64_MAX;
    /* Answers waiting for room: the server reads nothing meanwhile (peer_settle). Those
     * not tried yet (the next flush starts their clock) have the timeout and 1 s per MiB. */
    if (out_left(p) && p->out_due_ns) return p->out_due_ns;
    if (out_left(p))
        return p->frame_ns + cfg->progress_ns + (int64_t)(out_left(p) >> 20) * NS_PER_S;
    /* A frame being read (frame_came). */
    if (p->in.len || p->refused) return p->in_due_ns;
    if (p->running) return INT64_MAX; /* not idle: the client waits for its calls */
    return p->last_ns + cfg->idle_ns;
}

static void sweep(worker *w, int64_t now)
{
    for (int i = w->n_peers; i-- > 0;) {
        peer *p = w->peers[i];
        if (now < peer_deadline(w, p)) continue;
        /* Not while calls of p run: a client takes an ERROR with request id 0 to mean that
         * its calls in flight did not run. Without it they may have (SHMRPC_EPEERDIED). */
        if (!p->closing && out_left(p) == 0 && !p->running) { /* say why, best effort */
            shmrpc__tcp_put_error_frame(&p->out, 0, 0, SHMRPC_ETIMEDOUT,
                                        p->state != P_READY ? "handshake timeout"
                                        : p->in.len || p->refused
                                            ? "the frame made no progress in time"
                                            : "idle timeout");
            peer_flush(w, p);
        }
        peer_free(w, p);
    }
}

/* Stopping: the answers of calls that ran but did not fit the socket yet are sent before
 * their connections close (a client that lost one would read "unavailable", the status
 * of a call that never ran), each within its connection's progress deadline; nothing
 * more is read. Connections with nothing to send close at once. */
static void send_what_ran(worker *w)
{
    for (int i = w->n_peers; i-- > 0;)
        if (out_left(w->peers[i]) == 0) peer_free(w, w->peers[i]);
    struct pollfd *fds = w->n_peers ? calloc((size_t)w->n_peers, sizeof *fds) : NULL;
    while (w->n_peers && fds) {
        int64_t now = shmrpc__now_ns(), first = INT64_MAX;
        for (int i = w->n_peers; i-- > 0;) {
            peer *p = w->peers[i];
            int64_t due = peer_deadline(w, p);
            if (!peer_flush(w, p) || out_left(p) == 0 || now >= due) {
                peer_free(w, p);
                continue;
            }
            if (due < first) first = due;
        }
        for (int i = 0; i < w->n_peers; i++)
            fds[i] = (struct pollfd){.fd = w->peers[i]->fd, .events = POLLOUT};
        if (w->n_peers) {
            int64_t ms = (first - now) / NS_PER_MS + 1;
            poll(fds, (nfds_t)w->n_peers, ms > SWEEP_MS ? SWEEP_MS : (int)ms);
        }
    }
    free(fds); /* without it (no memory), what is left is dropped as before */
}

/* Ends the pool: true when its threads are gone. Threads still in a handler (the drain
 * ran out of time) are left to the process's exit, with what they use. */
static bool pool_end(worker *w)
{
    if (!w->threads) return true;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_mutex_unlock(&w->mu);
    pthread_cond_broadcast(&w->cv);
    if (w->running) return false;
    for (int i = 0; i < w->n_threads; i++)
        pthread_join(w->threads[i], NULL);
    while (w->spare_jobs) {
        job *j = w->spare_jobs;
        w->spare_jobs = j->next;
        job_free(j);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->threads);
    if (w->done_fd >= 0) close(w->done_fd);
    return true;
}

static void worker_destroy(worker *w)
{
    while (w->n_peers)
        peer_free(w, w->peers[0]);
    unbury(w);
    if (!pool_end(w)) return;
    if (w->ep >= 0) close(w->ep);
    if (w->spare >= 0) close(w->spare);
    shmrpc__ctx_destroy(&w->ctx);
    shmrpc_arena_free(w->arena);
    shmrpc_buf_destroy(&w->req);
    shmrpc_buf_destroy(&w->resp);
    shmrpc_buf_destroy(&w->err);
    free(w->peers);
    free(w);
}

static int pool_init(worker *w, int n)
{
    w->threads = calloc((size_t)n, sizeof *w->threads);
    w->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!w->threads || w->done_fd < 0) {
        free(w->threads);
        w->threads = NULL;
        if (w->done_fd >= 0) close(w->done_fd);
        w->done_fd = -1;
        return 0; /* the calls run in place, one after another */
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->todo_end = &w->todo;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->tag_done};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->done_fd, &ev) != 0) return SHMRPC_ESYS(errno);
    w->pool_max = n;
    return 0;
}

static int worker_init(worker *w, tcp_listener *l, int index)
{
    w->l = l;
    w->index = index;
    w->source = index < 0 ? l->fd : l->hand[index][1];
    w->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    shmrpc_buf_init(&w->req);
    shmrpc_buf_init(&w->resp);
    shmrpc_buf_init(&w->err);
    w->arena = shmrpc_arena_new(0);
    w->peers = calloc((size_t)l->cfg.max_conns, sizeof *w->peers);
    w->shaking_max = l->cfg.max_conns / SHAKING_SHARE;
    if (w->shaking_max < SHAKING_MIN) w->shaking_max = SHAKING_MIN;
    w->shaking_per_addr = w->shaking_max / SHAKING_ADDR_SHARE;
    if (w->shaking_per_addr < SHAKING_ADDR_MIN) w->shaking_per_addr = SHAKING_ADDR_MIN;
    if (shmrpc__ctx_init(&w->ctx, l->server) || !w->arena || !w->peers) return SHMRPC_ENOMEM;
    uint32_t n_rows;
    shmrpc__stats_row *rows = shmrpc__stats_rows(&l->stats, index < 0 ? 0 : index, &n_rows);
    shmrpc__ctx_set_stats(&w->ctx, rows, n_rows);
    if (w->ep < 0) return SHMRPC_ESYS(errno);
    shmrpc_arena_set_limit(w->arena, (size_t)SHMRPC__WIRE_MAX_HELLO * 8);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->tag_source};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->source, &ev) != 0) return SHMRPC_ESYS(errno);
    if (index < 0) {
        ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &w->tag_stop};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, l->stop_pipe[0], &ev) != 0) return SHMRPC_ESYS(errno);
    }
    /* A forked worker runs a connection's calls on threads; one serving in place (a
     * program's own thread, e.g. the supervisor's control service) one after another. */
    if (index >= 0 && l->cfg.max_running > 1) return pool_init(w, l->cfg.max_running);
    return 0;
}

/* A worker's one connection when it has only one, between frames: the worker waits for
 * its next request in a blocking recv, one system call where epoll_pwait and recv are
 * two (on loopback, a fifth of a call's system calls). NULL otherwise. */
static peer *hot_peer(const worker *w)
{
    if (w->n_peers != 1 || w->draining || w->running) return NULL;
    peer *p = w->peers[0];
    if (p->state != P_READY || p->closing || p->in.len || out_left(p) || p->have_hdr) return NULL;
    return p;
}

/* Waits up to HOT_WAIT_MS in recv for p's next frame and serves what came as an epoll
 * event would; false when nothing came (the caller goes back to epoll). */
static bool hot_wait(worker *w, peer *p)
{
    if (!p->hot) {
        struct timeval tv = {.tv_sec = 0, .tv_usec = HOT_WAIT_MS * 1000};
        if (setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) return false;
        p->hot = true;
    }
    if (shmrpc__buf_grow(&p->in, SHMRPC__FRAME_HDR_SIZE + READ_AHEAD)) return false;
    ssize_t n = shmrpc__io_recv(&p->io, p->in.data, SHMRPC__FRAME_HDR_SIZE + READ_AHEAD, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return false; /* the timeout, or a signal */
    if (n < 0) {      /* TLS failed, or the socket: epoll would not say so again */
        if (p->io.failed) log_limit(w, "TLS with %s failed: %s", p->from, p->io.why);
        peer_free(w, p);
        return true;
    }
    if (n > 0) {
        p->in.len = (size_t)n;
        frame_begins(w, p, shmrpc__now_ns());
    }
    peer_event(w, p, EPOLLIN); /* n == 0: it reads the end of the stream again */
    return true;
}

/* Told to stop (docs/wire.md, "Drain"): the worker takes no new connection, and tells
 * each client of revision 2, after the answers of its connection's calls still running or
 * unsent, that it takes no new call; a request that crossed the DRAIN is answered "not
 * run". A connection still in its handshake is refused, and one of revision 1 closes once
 * its answer is sent, as before. drain_step then closes each connection as it quiets. */
static void drain_begin(worker *w)
{
    int64_t now = shmrpc__now_ns();
    w->draining = true;
    w->drain_end = now + DRAIN_MAX_MS * NS_PER_MS;
    epoll_ctl(w->ep, EPOLL_CTL_DEL, w->source, NULL);
    if (w->index < 0 && w->l->fd >= 0) { /* serving in place: a connect is refused from now */
        close(w->l->fd);
        w->l->fd = -1;
    }
    for (int i = w->n_peers; i-- > 0;) {
        peer *p = w->peers[i];
        if (p->closing) continue;
        if (p->state == P_READY && p->proto >= 2 && p->running) {
            p->drain_due = true; /* after the answers of the calls that run (finish_job) */
            p->drain_ns = now;
        } else if (p->state == P_READY && p->proto >= 2) {
            size_t at = shmrpc__frame_begin(&p->out, SHMRPC__KIND_DRAIN, 0, 0, 0);
            shmrpc__frame_end(&p->out, at);
            p->drain_ns = now;
        } else if (p->state != P_READY) {
            peer_refuse(p, SHMRPC_EUNAVAIL, "the server is stopping");
        } else {
            p->closing = true;
        }
        peer_settle(w, p);
    }
}

/* Closes the draining connections that have quieted: their client closed them (the read
 * saw it), or sent nothing for DRAIN_QUIET_MS since the DRAIN. One in the middle of a
 * frame is left to its progress deadline (sweep). */
static void drain_step(worker *w, int64_t now)
{
    for (int i = w->n_peers; i-- > 0;) {
        peer *p = w->peers[i];
        if (out_left(p) || p->in.len || p->have_hdr || p->refused || p->running || p->drain_due)
            continue;
        if (now - p->drain_ns < DRAIN_QUIET_MS * NS_PER_MS) continue;
        shutdown(p->fd, SHUT_WR);
        peer_free(w, p);
    }
}

/* Serves connections until stopped: worker index of the crew, or in place (-1). A forked
 * worker keeps SIGTERM blocked except inside epoll_pwait, so a call in progress is
 * finished and its answer sent before it stops. */
static int worker_run(tcp_listener *l, int index)
{
    bool forked = index >= 0;
    worker *w = calloc(1, sizeof *w);
    if (!w) return SHMRPC_ENOMEM;
    w->ep = w->spare = w->done_fd = -1;
    int rc = worker_init(w, l, index);
    sigset_t block, open;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, forked ? &block : NULL, &open);
    sigdelset(&open, SIGTERM);
    int64_t next_sweep = 0, next_look = 0, next_term = 0;
    while (rc == 0) {
        if (!w->draining && stopping(w)) drain_begin(w);
        if (w->draining) {
            int64_t now = shmrpc__now_ns();
            drain_step(w, now);
            int64_t end = w->drain_end + (w->running ? DRAIN_RUNNING_MS * NS_PER_MS : 0);
            if ((w->n_peers == 0 && !w->running) || now >= end) break;
        }
        /* A lone busy connection is served from hot_wait, with a look at epoll (new
         * connections, SIGTERM, the sweep) every HOT_LOOK_NS. */
        int timeout = w->draining ? 10 : SWEEP_MS;
        if (w->pool_max && atomic_load_explicit(&w->n_todo, memory_order_relaxed)) {
            pool_nudge(w, shmrpc__now_ns());
            timeout = 0 < timeout ? 1 : timeout; /* a millisecond, to look again */
        }
        unbury(w); /* no event of the last batch is left to name them */
        peer *hot = hot_peer(w);
        if (hot) {
            int64_t now = shmrpc__now_ns();
            if (now < next_look && hot_wait(w, hot)) continue;
            if (now >= next_look) {
                timeout = 0;
                next_look = now + HOT_LOOK_NS;
            }
        }
        if (w->again) timeout = 0;
        struct epoll_event evs[64];
        int n = epoll_pwait(w->ep, evs, 64, timeout, forked ? &open : NULL);
        if (n < 0 && errno != EINTR) rc = SHMRPC_ESYS(errno);
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &w->tag_source)
                take_connections(w);
            else if (tag == &w->tag_done)
                collect(w);
            else if (tag != &w->tag_stop)
                peer_event(w, tag, evs[i].events);
        }
        serve_again(w);
        int64_t now = shmrpc__now_ns();
        /* epoll_pwait opens SIGTERM only while it sleeps, and one that finds events ready
         * does not sleep: a worker kept busy would never see it. So it looks for it
         * pending, at most every HOT_LOOK_NS (one system call). */
        if (forked && now >= next_term) {
            sigset_t pending;
            if (sigpending(&pending) == 0 && sigismember(&pending, SIGTERM)) told_to_stop = 1;
            next_term = now + HOT_LOOK_NS;
        }
        if (now >= next_sweep) {
            sweep(w, now);
            next_sweep = now + SWEEP_MS * NS_PER_MS;
        }
    }
    if (rc == 0) send_what_ran(w);
    worker_destroy(w);
    return rc;
}

/* A forked worker starts without its predecessor's connections (they died with it), and
 * keeps only its own end of the socket pairs. */
static int crew_run(void *arg, int index)
{
    tcp_listener *l = arg;
    struct sigaction stop = {.sa_handler = on_stop};
    sigaction(SIGTERM, &stop, NULL);
    atomic_store(&l->load->open[index], 0);
    atomic_store(&l->load->shaking[index], 0);
    atomic_store(&l->load->busy[index], 0);
    for (int i = 0; i < MAX_WORKERS; i++) {
        if (l->hand[i][0] >= 0) close(l->hand[i][0]);
        if (i != index && l->hand[i][1] >= 0) close(l->hand[i][1]);
    }
    close(l->fd);
    return worker_run(l, index);
}

/* A worker died or left: what it held went with it, so its row of the budget and of the
 * per-address counts is zeroed (also when no worker takes its place, as when the count
 * wanted went down and it was killed after its grace). */
static void crew_reaped(void *arg, int index)
{
    tcp_listener *l = arg;
    atomic_store(&l->load->charged[index], 0);
    for (int h = 0; h < 2; h++)
        for (int b = 0; b < ADDR_BUCKETS; b++)
            atomic_store_explicit(&l->load->by_addr[index][h][b], 0, memory_order_relaxed);
}

/* The worker to give a new connection: the running one with the fewest connections
 * (those it holds and those on their way to it), a busy one counting one more; one that
 * is being replaced only when none runs; one whose finished connections fill max_conns
 * only when all are so (it closes its longest idle connection to make room, or refuses:
 * connections in their handshake, which make room first, do not make a worker full, so
 * a flood of them does not send a client to a worker that must close a finished one);
 * never one above the count wanted (it is leaving). */
static int least_loaded(tcp_listener *l)
{
    int best = -1;
    uint64_t best_load = UINT64_MAX;
    int want = shmrpc__crew_wanted(&l->crew);
    for (int i = 0; i < want; i++) {
        const tcp_load *t = l->load;
        uint32_t conns = atomic_load_explicit(&t->open[i], memory_order_relaxed) + t->handed[i] -
                         atomic_load_explicit(&t->taken[i], memory_order_relaxed);
        uint64_t load =
            (uint64_t)conns * 2 + atomic_load_explicit(&t->busy[i], memory_order_relaxed);
        uint32_t held = atomic_load_explicit(&t->open[i], memory_order_relaxed),
                 shaking = atomic_load_explicit(&t->shaking[i], memory_order_relaxed);
        uint32_t finished = held > shaking ? held - shaking : 0;
        if (l->crew.pid[i] <= 0 || l->crew.leaving[i]) load += (uint64_t)1 << 40;
        if (finished >= (uint32_t)l->cfg.max_conns) load += (uint64_t)1 << 41;
        if (load < best_load) best = i, best_load = load;
    }
    return best;
}

static bool send_fd(int to, int fd)
{
    char data = 0;
    struct iovec iov = {&data, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    ssize_t n;
    do
        n = sendmsg(to, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == 1;
}

/* The manager's side: accepts what is pending and hands each connection to a worker. */
static void hand_out(void *arg)
{
    tcp_listener *l = arg;
    for (int i = 0; i < 64; i++) {
        int fd = accept_one(l->fd, &l->spare);
        if (fd < 0) return;
        int to = least_loaded(l);
        if (to < 0) {
            refuse_busy(fd, l->cfg.max_conns);
            continue;
        }
        /* A full queue (a few hundred sockets) makes the manager wait for the worker
         * to take some, up to a second: connections wait in the kernel's backlog. */
        bool sent = send_fd(l->hand[to][0], fd);
        if (!sent && errno == EAGAIN) {
            struct pollfd p = {.fd = l->hand[to][0], .events = POLLOUT};
            if (poll(&p, 1, 1000) == 1) sent = send_fd(l->hand[to][0], fd);
        }
        if (sent)
            l->load->handed[to]++;
        else
            refuse_fd(fd, SHMRPC_EBUSY, "the server's workers are not taking connections");
        close(fd);
    }
}

/* The manager, told to stop, closes its listening socket first: a client's connect is
 * refused at once (and tried elsewhere) rather than left in the backlog until the end. */
static void crew_stopping(void *arg)
{
    tcp_listener *l = arg;
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
}

/* Before worker i first starts: its socket pair, which then lives as long as the manager. */
static int crew_prepare(void *arg, int i)
{
    tcp_listener *l = arg;
    if (l->hand[i][0] >= 0) return 0;
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, l->hand[i]) == 0
               ? 0
               : SHMRPC_ESYS(errno);
}

static int manage(tcp_listener *l, int n)
{
    l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    _Atomic int *want = shmrpc__server_want(l->server);
    atomic_store(want, n);
    l->crew = (shmrpc__crew){.want = want,
                             .stop = &l->stop,
                             .stop_fd = l->stop_pipe[0],
                             .watch_fd = l->fd,
                             .watch = hand_out,
                             .arg = l,
                             .run = crew_run,
                             .prepare = crew_prepare,
                             .reaped = crew_reaped,
                             .stopping = crew_stopping};
    int rc = shmrpc__crew_manage(&l->crew);
    for (int i = 0; i < MAX_WORKERS; i++) {
        for (int j = 0; j < 2; j++) {
            if (l->hand[i][j] >= 0) close(l->hand[i][j]);
            l->hand[i][j] = -1;
        }
    }
    if (l->spare >= 0) close(l->spare);
    l->spare = -1;
    return rc;
}

static int tcp_serve(shmrpc__listener *base, int workers)
{
    tcp_listener *l = (tcp_listener *)base;
    if (workers < 0 || workers > MAX_WORKERS) return SHMRPC_EINVAL;
    /* Shared with the workers forked from here; the pages of rows never used are never
     * touched. */
    l->load =
        mmap(NULL, sizeof *l->load, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (l->load == MAP_FAILED) {
        l->load = NULL;
        return SHMRPC_ESYS(errno);
    }
    int rc = workers == 0 ? worker_run(l, -1) : manage(l, workers);
    munmap(l->load, sizeof *l->load);
    l->load = NULL;
    return rc;
}

static void tcp_poke(shmrpc__listener *base)
{
    tcp_listener *l = (tcp_listener *)base;
    if (write(l->stop_pipe[1], "", 1) < 0) {
        /* full: the manager wakes up anyway */
    }
}

static void tcp_stop(shmrpc__listener *base)
{
    tcp_listener *l = (tcp_listener *)base;
    atomic_store(&l->stop, 1);
    if (write(l->stop_pipe[1], "", 1) < 0) {
        /* full: the reader wakes up anyway */
    }
}

static void tcp_listener_close(shmrpc__listener *base)
{
    tcp_listener *l = (tcp_listener *)base;
    shmrpc__stats_destroy(&l->stats);
    if (l->fd >= 0) close(l->fd);
    if (l->stop_pipe[0] >= 0) close(l->stop_pipe[0]);
    if (l->stop_pipe[1] >= 0) close(l->stop_pipe[1]);
    shmrpc__auth_wipe(&l->cfg, sizeof l->cfg);
    shmrpc__tls_free(l->tls);
    free(l);
}

static const shmrpc__listener_ops tcp_listener_ops = {
    .close = tcp_listener_close,
    .serve = tcp_serve,
    .stop = tcp_stop,
    .poke = tcp_poke,
};

static int bind_socket(tcp_listener *l, const struct sockaddr_storage *ss, socklen_t len,
                       shmrpc_buf *err)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return shmrpc__tcp_sys_error(err, errno, "cannot open a socket for", l->where);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, len) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE) {
            /* One server per port is the kernel's rule (no SO_REUSEPORT here): a second lock
             * of our own would be one more name that another user could take first. */
            unsigned port = ntohs(ss->ss_family == AF_INET
                                      ? ((const struct sockaddr_in *)ss)->sin_port
                                      : ((const struct sockaddr_in6 *)ss)->sin6_port);
            int32_t pid;
            uid_t uid;
            shmrpc__msg_set(err, "tcp://%s is already in use (another process listens there",
                            l->where);
            if (shmrpc__proc_tcp_listener(port, &pid, &uid)) {
                shmrpc__msg_append(err, ": ");
                if (pid > 0) shmrpc__msg_append(err, "pid %d, ", (int)pid);
                shmrpc__msg_append(err, "uid %u", (unsigned)uid);
            }
            shmrpc__msg_append(err, ")");
            return SHMRPC_EBUSY;
        }
        return shmrpc__tcp_sys_error(err, e, "cannot bind", l->where);
    }
    if (listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        return shmrpc__tcp_sys_error(err, e, "cannot listen on", l->where);
    }
    l->fd = fd;
    return 0;
}

int shmrpc__tcp_listen(shmrpc_server *s, const char *where, shmrpc__listener **out, shmrpc_buf *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = shmrpc__tcp_parse_addr(where, &ss, &len, err);
    if (rc) return rc;
    tcp_listener *l = calloc(1, sizeof *l);
    if (!l) return SHMRPC_ENOMEM;
    l->base.ops = &tcp_listener_ops;
    l->server = s;
    l->fd = l->spare = l->stop_pipe[0] = l->stop_pipe[1] = -1;
    memset(l->hand, -1, sizeof l->hand);
    snprintf(l->where, sizeof l->where, "%s", where);
    l->max_msg = shmrpc__tcp_cap32(shmrpc__server_max_msg(s));
    l->addr_seed = addr_seed();
    /* The server's opts passed this at shmrpc_server_new (shmrpc__tcp_transport.check_opts). */
    rc = shmrpc__tcp_cfg_init(&l->cfg, &shmrpc__server_opts(s)->tcp);
    /* Clients are authenticated by the shared secret, or by their certificates (mutual
     * TLS). */
    bool mutual = l->cfg.tls_cert[0] && l->cfg.tls_ca[0];
    if (rc == 0 && !shmrpc__tcp_is_loopback(&ss) && !l->cfg.secret_len && !mutual) {
        shmrpc__msg_set(err,
                        "binding tcp://%s, which is not a loopback address, needs a shared "
                        "secret (shmrpc_tcp_opts.secret) or mutual TLS (tls_cert and tls_ca)",
                        where);
        rc = SHMRPC_EPERM;
    }
    if (rc == 0 && l->cfg.tls_cert[0]) rc = shmrpc__tls_server_new(&l->cfg, &l->tls, err);
    if (rc == 0) rc = bind_socket(l, &ss, len, err);
    if (rc == 0 && pipe2(l->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        rc = shmrpc__tcp_sys_error(err, errno, "cannot make a pipe for", where);
    if (rc == 0) { /* a server without statistics still serves */
        shmrpc_buf ignored;
        shmrpc_buf_init(&ignored);
        shmrpc__stats_create(&l->stats, "tcp", where, shmrpc__server_info(s), &ignored);
        shmrpc_buf_destroy(&ignored);
    }
    if (rc) {
        tcp_listener_close(&l->base);
        return rc;
    }
    *out = &l->base;
    return 0;
}
