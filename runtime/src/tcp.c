/* The TCP transport, tcp://HOST:PORT: the wire format of docs/wire.md over sockets. A
 * server's manager accepts connections and hands each to its least loaded worker, which
 * serves it in an epoll loop; a client does blocking-style calls over a non-blocking
 * socket, every wait bounded by one deadline. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "crew.h"
#include "frame.h"
#include "stats.h"
#include "wait.h"

#define NS_PER_MS ((int64_t)1000 * 1000)
#define NS_PER_S ((int64_t)1000 * 1000 * 1000)

#define SWEEP_MS 200
#define HOT_WAIT_MS 1                /* a lone connection's recv, before epoll again */
#define HOT_LOOK_NS (10 * NS_PER_MS) /* how often a worker in hot_wait looks at epoll */
#define MAX_WORKERS SHMRPC__CREW_MAX
#define MAX_CONNS_LIMIT (1 << 20) /* the most max_conns may be */
#define ADDR_MAX 300
#define READ_AHEAD ((size_t)16384) /* bytes read past the frame in hand, to save syscalls */
/* A connection's buffers up to this size are its own (kept between frames, bounded by the
 * connection caps); a larger one is charged to the server's budget and freed once its
 * frame is done. Above the 64 KiB calls of the benchmark, whose buffers are 128 KiB. */
#define KEEP_BYTES ((size_t)256 << 10)
#define DEFAULT_BUDGET ((size_t)256 << 20)
#define ADDR_BUCKETS 1024 /* connections are counted per peer address in this many buckets */

static uint32_t cap32(size_t n)
{
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* --- settings (docs/wire.md, "Limits") ----------------------------------------------- */

static bool ms_to_ns(int64_t ms, int64_t dflt_ms, int64_t *ns)
{
    if (ms < 0 || ms > INT64_MAX / NS_PER_MS / 2) return false;
    *ns = (ms ? ms : dflt_ms) * NS_PER_MS;
    return true;
}

int shmrpc__tcp_cfg_init(shmrpc__tcp_cfg *cfg, const shmrpc_tcp_opts *o)
{
    static const shmrpc_tcp_opts defaults;
    if (!o) o = &defaults;
    memset(cfg, 0, sizeof *cfg);
    unsigned algos = SHMRPC_COMPRESS_SNAPPY | SHMRPC_COMPRESS_ZLIB;
    if (o->compression & ~(algos | SHMRPC_COMPRESS_NONE)) return SHMRPC_EINVAL;
    unsigned comp = o->compression & SHMRPC_COMPRESS_NONE ? 0
                    : o->compression                      ? o->compression
                                                          : algos;
    cfg->compression = (uint16_t)((comp & SHMRPC_COMPRESS_SNAPPY ? SHMRPC__FLAG_SNAPPY : 0) |
                                  (comp & SHMRPC_COMPRESS_ZLIB ? SHMRPC__FLAG_ZLIB : 0));
    cfg->compression_auto = o->compression == 0;
    cfg->threshold = o->compress_threshold ? o->compress_threshold : SHMRPC__WIRE_DEFAULT_THRESHOLD;
    if (!ms_to_ns(o->connect_timeout_ms, 5000, &cfg->connect_ns) ||
        !ms_to_ns(o->handshake_timeout_ms, 5000, &cfg->handshake_ns) ||
        !ms_to_ns(o->idle_timeout_ms, 300 * 1000, &cfg->idle_ns) ||
        !ms_to_ns(o->progress_timeout_ms, 10 * 1000, &cfg->progress_ns))
        return SHMRPC_EINVAL;
    if (o->max_conns < 0 || o->max_conns > MAX_CONNS_LIMIT) return SHMRPC_EINVAL;
    cfg->max_conns = o->max_conns ? o->max_conns : 1024;
    if (o->max_conns_per_addr < 0 || o->max_conns_per_addr > MAX_CONNS_LIMIT) return SHMRPC_EINVAL;
    cfg->max_per_addr = o->max_conns_per_addr ? o->max_conns_per_addr : 256;
    cfg->budget = o->buffer_budget ? o->buffer_budget : DEFAULT_BUDGET;
    if (!o->secret != !o->secret_len) return SHMRPC_EINVAL;
    if (o->secret && (o->secret_len < SHMRPC_SECRET_MIN || o->secret_len > SHMRPC_SECRET_MAX))
        return SHMRPC_EINVAL;
    if (o->secret) memcpy(cfg->secret, o->secret, o->secret_len);
    cfg->secret_len = o->secret_len;
    return 0;
}

static int sys_error(shmrpc_buf *err, int e, const char *what, const char *where)
{
    shmrpc__msg_set(err, "%s tcp://%s: %s", what, where, strerror(e));
    return SHMRPC_ESYS(e);
}

/* --- addresses ------------------------------------------------------------------------- */

/* HOST:PORT, [V6]:PORT, or PORT alone (127.0.0.1); numeric hosts and "localhost". */
static int parse_addr(const char *where, struct sockaddr_storage *ss, socklen_t *len,
                      shmrpc_buf *err)
{
    char host[ADDR_MAX] = "127.0.0.1";
    const char *port = where;
    size_t n = strlen(where);
    if (n >= ADDR_MAX) goto bad;
    const char *colon = strrchr(where, ':');
    if (where[0] == '[') {
        const char *close = strchr(where, ']');
        if (!close || close[1] != ':') goto bad;
        memcpy(host, where + 1, (size_t)(close - where - 1));
        host[close - where - 1] = '\0';
        port = close + 2;
    } else if (colon) {
        if (memchr(where, ':', (size_t)(colon - where))) goto bad; /* IPv6 needs brackets */
        if (colon > where) {
            memcpy(host, where, (size_t)(colon - where));
            host[colon - where] = '\0';
        }
        port = colon + 1;
    }
    char *end;
    errno = 0;
    unsigned long p = strtoul(port, &end, 10);
    if (*port < '0' || *port > '9' || *end || errno || p == 0 || p > 65535) goto bad;
    if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) goto bad;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
bad:
    shmrpc__msg_set(err,
                    "malformed address 'tcp://%s': expected tcp://HOST:PORT with a numeric host "
                    "(e.g. tcp://127.0.0.1:5555 or tcp://[::1]:5555) and a port of 1 to 65535",
                    where);
    return SHMRPC_EINVAL;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* --- frames with bodies (both sides) ---------------------------------------------------- */

/* Appends a REQUEST or RESPONSE frame, its body compressed with comp when it is at least
 * threshold bytes and compressing makes it smaller. */
static int put_msg_frame(shmrpc_buf *out, uint8_t kind, uint32_t method, uint64_t rid,
                         shmrpc_bytes msg, uint16_t comp, uint32_t threshold)
{
    size_t at = shmrpc__frame_begin(out, kind, 0, method, rid);
    uint16_t used = 0;
    if (comp && msg.len > 0 && msg.len >= threshold) {
        int rc = shmrpc__body_compress(comp, msg, out, &used);
        if (rc) {
            out->len = at;
            return rc;
        }
    }
    if (used) {
        out->data[at + 6] = (uint8_t)(used >> 8);
        out->data[at + 7] = (uint8_t)used;
    } else {
        shmrpc_buf_append(out, msg.ptr, msg.len);
    }
    int rc = shmrpc__frame_end(out, at);
    if (rc && !out->err) out->len = at;
    return rc;
}

static void put_error_frame(shmrpc_buf *out, uint32_t method, uint64_t rid, int status,
                            const char *msg)
{
    size_t at = shmrpc__frame_begin(out, SHMRPC__KIND_ERROR, 0, method, rid);
    shmrpc__error_write(out, status < 0 ? status : SHMRPC_EPROTO, shmrpc_str_c(msg));
    shmrpc__frame_end(out, at);
}

/* --- the server side ------------------------------------------------------------------- */

/* How loaded each worker is, in memory the manager shares with its workers: the manager
 * hands a new connection to the worker with the least. A worker writes its own fields;
 * the manager only reads them (and writes handed). Wrong numbers cost balance, never
 * a connection. */
typedef struct tcp_load {
    _Atomic uint32_t open[MAX_WORKERS];  /* connections the worker holds */
    _Atomic uint32_t taken[MAX_WORKERS]; /* sockets received from the manager, ever */
    _Atomic uint32_t busy[MAX_WORKERS];  /* 1 while it runs a call */
    uint32_t handed[MAX_WORKERS];        /* sockets the manager sent it, ever */
    /* The server's memory budget and its per-address counts, one row per worker (row 0
     * when serving in place): each worker writes only its own row, and everyone sums the
     * rows. A worker's replacement zeroes its row, so what a dead worker held (it died
     * with its connections) is not counted for ever. */
    _Atomic uint64_t charged[MAX_WORKERS];               /* bytes of the budget it holds */
    _Atomic uint32_t by_addr[MAX_WORKERS][ADDR_BUCKETS]; /* its connections per bucket */
} tcp_load;

typedef struct tcp_listener {
    shmrpc__listener base;
    shmrpc_server *server;
    const shmrpc__tcp_cfg *cfg;
    char where[ADDR_MAX];
    int fd;           /* the listening socket, non-blocking */
    int lock;         /* the instance lock: an abstract unix socket named after the port */
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

/* One connection of a worker. Reads stop while a response is unsent: the memory a
 * connection holds is one frame in and one out. */
typedef struct peer {
    int fd;
    uint8_t state; /* P_HELLO, P_AUTH (the client's proof is due), P_READY: requests may come */
    bool closing;  /* close once out is flushed */
    bool have_hdr; /* hdr holds the frame being read */
    uint16_t comp; /* agreed in the handshake */
    uint32_t threshold, peer_max;
    shmrpc__frame_hdr hdr;
    shmrpc_buf in;                      /* the frame being read: header, then body */
    shmrpc_buf out;                     /* frames to send */
    size_t out_off;                     /* bytes of out already sent */
    int64_t accepted_ns;                /* handshake deadline base */
    int64_t frame_ns;                   /* when the partial frame (in or out) began */
    int64_t last_ns;                    /* last complete frame */
    uint32_t events;                    /* the epoll interest set */
    bool hot;                           /* SO_RCVTIMEO is set for hot_wait */
    bool refused;                       /* the frame in hdr is skipped, then refused */
    uint32_t skip;                      /* bytes of a refused frame's body still to come */
    size_t charged;                     /* bytes of in and out charged to the budget */
    uint32_t bucket;                    /* its peer address's bucket in tcp_load.by_addr */
    char from[64];                      /* the peer's address, for log lines */
    uint8_t proof[2][SHMRPC__AUTH_LEN]; /* in P_AUTH: the client's proof due, and ours */
} peer;

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
    char tag_source, tag_stop; /* epoll data for the source and the stop pipe */
    size_t req_charged;        /* bytes of the budget held for req (a decompressed body) */
    int64_t log_ns;            /* when the last limit line was logged */
    unsigned log_dropped;      /* lines not logged since (at most one a second) */
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

/* --- the memory budget (docs/wire.md, "Limits") ----------------------------------------
 * Bytes of frames held by all connections of the server, over all its workers: a large
 * frame is admitted only while the budget has room for it. */

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
    if (budget_used(w->l) <= w->l->cfg->budget) return true;
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

/* The manager's count drops before the close: a client that sees the close and connects
 * again must find the room it left. */
static void peer_free(worker *w, peer *p)
{
    count_open(w, -1);
    atomic_fetch_sub(&w->l->load->by_addr[row_of(w)][p->bucket], 1);
    budget_charge(w, p->charged, 0);
    epoll_ctl(w->ep, EPOLL_CTL_DEL, p->fd, NULL);
    close(p->fd);
    shmrpc_buf_destroy(&p->in);
    shmrpc_buf_destroy(&p->out);
    for (int i = 0; i < w->n_peers; i++) {
        if (w->peers[i] == p) {
            w->peers[i] = w->peers[--w->n_peers];
            break;
        }
    }
    shmrpc__auth_wipe(p->proof, sizeof p->proof);
    free(p);
}

static size_t out_left(const peer *p)
{
    return p->out.len - p->out_off;
}

/* Sends what it can; false when the connection is gone. */
static bool peer_flush(worker *w, peer *p)
{
    while (out_left(p)) {
        ssize_t n = send(p->fd, p->out.data + p->out_off, out_left(p), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    shmrpc_buf_clear(&p->out);
    p->out_off = 0;
    if (p->out.cap > KEEP_BYTES) {
        buf_trim(&p->out);
        peer_recharge(w, p);
    }
    return true;
}

/* Queues an ERROR frame with request id 0 and closes after it. */
static void peer_refuse(peer *p, int status, const char *msg)
{
    put_error_frame(&p->out, 0, 0, status, msg);
    p->closing = true;
}

/* Answers a HELLO with a HELLO_ACK. A server with a secret sends a challenge in it and
 * waits for the client's proof (P_AUTH); otherwise requests may come. */
static void serve_hello(worker *w, peer *p, shmrpc_bytes body)
{
    const shmrpc__tcp_cfg *cfg = w->l->cfg;
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
    if (rc == 0 && cfg->secret_len) {
        rc = shmrpc__auth_nonce(challenge);
        ack.auth = shmrpc_bytes_of(challenge, sizeof challenge);
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
        p->state = cfg->secret_len ? P_AUTH : P_READY;
        p->comp = ack.compression;
        p->threshold = ack.threshold;
        p->peer_max = hello.max_msg;
        if (cfg->secret_len) {
            size_t hdr = at + SHMRPC__FRAME_HDR_SIZE;
            shmrpc__auth_proofs(cfg, body, shmrpc_bytes_of(p->out.data + hdr, p->out.len - hdr),
                                p->proof[0], p->proof[1]);
        }
    }
    shmrpc_arena_reset(w->arena);
}

/* The client's proof of the secret: a wrong one closes the connection, a right one is
 * answered with the server's. */
static void serve_auth(peer *p, shmrpc_bytes body)
{
    if (!shmrpc__auth_equal(body.ptr, p->proof[0])) {
        peer_refuse(p, SHMRPC_EPERM, "authentication failed: wrong shared secret");
        return;
    }
    size_t at = shmrpc__frame_begin(&p->out, SHMRPC__KIND_AUTH, 0, 0, 0);
    shmrpc_buf_append(&p->out, p->proof[1], SHMRPC__AUTH_LEN);
    shmrpc__frame_end(&p->out, at);
    shmrpc__auth_wipe(p->proof, sizeof p->proof);
    p->state = P_READY;
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
             used, w->l->cfg->budget, bytes);
    put_error_frame(&p->out, h->method, h->request_id, SHMRPC_EBUSY, msg);
    log_limit(w, "refused a call from %s: %s", p->from, msg);
}

static void serve_request(worker *w, peer *p, const shmrpc__frame_hdr *h, shmrpc_bytes body)
{
    const tcp_listener *l = w->l;
    /* No call runs while answers of earlier ones fill the budget (their clients do not
     * read them): its answer, of a size known only once it ran, would add to them. */
    if (budget_used(l) > l->cfg->budget) {
        refuse_call(w, p, h, body.len);
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
    if (busy) atomic_store_explicit(busy, 1, memory_order_relaxed);
    rc = shmrpc__dispatch(l->server, &w->ctx, h->method, req, &w->resp);
    if (busy) atomic_store_explicit(busy, 0, memory_order_relaxed);
    if (rc == 0 && w->resp.len > p->peer_max) {
        char msg[128];
        snprintf(msg, sizeof msg, "a result of %zu bytes is above the client's maximum of %u",
                 w->resp.len, p->peer_max);
        put_error_frame(&p->out, h->method, h->request_id, SHMRPC_ETOOBIG, msg);
    } else if (rc == 0) {
        /* The answer of a call that ran is kept whatever the budget says (the next call
         * waits instead); sized exactly, with room for a compressor's worst case, so a
         * 64 MiB answer does not cost 128. */
        size_t n = w->resp.len, want = p->out.len + SHMRPC__FRAME_HDR_SIZE + n + n / 6 + 64;
        if (want > KEEP_BYTES && buf_resize(&p->out, want)) {
            /* out of memory: the append below fails and says so */
        }
        rc = put_msg_frame(&p->out, SHMRPC__KIND_RESPONSE, h->method, h->request_id,
                           shmrpc_bytes_of(w->resp.data, w->resp.len), p->comp, p->threshold);
        if (rc) put_error_frame(&p->out, h->method, h->request_id, rc, shmrpc_strerror(rc));
    } else {
        put_error_frame(&p->out, h->method, h->request_id, rc, shmrpc__ctx_msg(&w->ctx));
    }
done:
    /* Every way out gives a large call's memory back, a refused body's included. */
    if (w->req.cap > ((size_t)1 << 20)) {
        shmrpc_buf_destroy(&w->req);
        shmrpc_buf_init(&w->req);
    }
    if (w->resp.cap > ((size_t)1 << 20)) {
        shmrpc_buf_destroy(&w->resp);
        shmrpc_buf_init(&w->resp);
    }
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
        serve_auth(p, body);
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

/* Makes room in p->in for the frame whose header came, and READ_AHEAD past it. A frame
 * above a connection's own KEEP_BYTES takes its room from the server's budget: 1 when
 * the budget has none (nothing was grown), -1 out of memory, else 0. */
static int room_for_frame(worker *w, peer *p)
{
    size_t total = SHMRPC__FRAME_HDR_SIZE + (size_t)p->hdr.body_len + READ_AHEAD;
    if (total <= p->in.cap) return 0;
    if (total <= KEEP_BYTES) return shmrpc__buf_grow(&p->in, total - p->in.len) ? -1 : 0;
    size_t more = total - buf_cost(&p->in);
    if (!budget_take(w, more)) return 1;
    int rc = buf_resize(&p->in, total);
    budget_charge(w, more, 0);
    peer_recharge(w, p);
    return rc ? -1 : 0;
}

/* A frame the budget has no room for: a REQUEST's body is read and dropped, then the call
 * fails with SHMRPC_EBUSY (answer_refused) and the connection goes on; any other kind
 * closes the connection. 0 when the frame is to be skipped, 1 when it was refused. */
static int refuse_frame(worker *w, peer *p)
{
    const char *kind = shmrpc__frame_kind_name(p->hdr.kind);
    char msg[200];
    snprintf(msg, sizeof msg,
             "a %s frame of %" PRIu32 " bytes does not fit the server's memory for buffered "
             "frames (%" PRIu64 " of %zu bytes in use)",
             kind, p->hdr.body_len, budget_used(w->l), w->l->cfg->budget);
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
             p->hdr.body_len, w->l->cfg->budget);
    put_error_frame(&p->out, p->hdr.method, p->hdr.request_id, SHMRPC_EBUSY, msg);
    p->refused = false;
    p->have_hdr = false;
    p->last_ns = shmrpc__now_ns();
    if (p->in.len) p->frame_ns = p->last_ns;
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
            size_t room = p->in.cap - p->in.len < p->skip ? p->in.cap - p->in.len : p->skip;
            ssize_t n = recv(p->fd, p->in.data + p->in.len, room, MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
            if (n == 0) return -1; /* gone in the middle of the frame: nothing to answer */
            p->skip -= (uint32_t)n;
            continue;
        }
        if (!p->have_hdr && p->in.len >= SHMRPC__FRAME_HDR_SIZE) {
            uint32_t max = p->state == P_READY ? w->l->max_msg : SHMRPC__WIRE_MAX_HELLO;
            shmrpc__msg_clear(&w->err);
            int rc = shmrpc__frame_hdr_decode(p->in.data, SHMRPC__FRAME_HDR_SIZE, max, p->comp,
                                              &p->hdr, &w->err);
            if (rc) {
                peer_refuse(p, rc, shmrpc__msg_get(&w->err));
                return 0;
            }
            p->have_hdr = true;
            rc = room_for_frame(w, p);
            if (rc < 0) return -1;
            if (rc > 0 && refuse_frame(w, p)) return 0;
            if (rc > 0) continue;
        }
        size_t need = SHMRPC__FRAME_HDR_SIZE + (p->have_hdr ? p->hdr.body_len : 0);
        if (p->have_hdr && p->in.len >= need) return 1;
        size_t room = need - p->in.len + READ_AHEAD;
        if (shmrpc__buf_grow(&p->in, room)) return -1;
        ssize_t n = recv(p->fd, p->in.data + p->in.len, room, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        if (n == 0) return peer_eof(w, p);
        if (p->in.len == 0) p->frame_ns = shmrpc__now_ns();
        p->in.len += (size_t)n;
    }
}

/* Drops the frame just served from the front of p->in, keeping what was read past it. */
static void consume_frame(worker *w, peer *p)
{
    size_t used = SHMRPC__FRAME_HDR_SIZE + p->hdr.body_len;
    size_t left = p->in.len - used;
    if (left) memmove(p->in.data, p->in.data + used, left);
    p->in.len = left;
    p->have_hdr = false;
    p->last_ns = shmrpc__now_ns();
    if (left) p->frame_ns = p->last_ns;
    if (!left && p->in.cap > KEEP_BYTES) { /* an idle connection holds little */
        buf_trim(&p->in);
        peer_recharge(w, p);
    }
}

static void peer_drop(peer *p)
{
    p->closing = true;
    shmrpc_buf_clear(&p->out);
    p->out_off = 0;
}

/* Serves the frames that have come, one at a time: the next is read only once the
 * answer to the last has gone out. */
static void peer_read(worker *w, peer *p)
{
    while (!p->closing && out_left(p) == 0) {
        int rc = read_frame(w, p);
        if (rc < 0) {
            peer_drop(p);
            return;
        }
        if (rc == 0) return;
        if (p->refused) {
            answer_refused(w, p);
        } else {
            serve_frame(w, p);
            consume_frame(w, p);
        }
        if (out_left(p) && !peer_flush(w, p)) {
            peer_drop(p);
            return;
        }
        if (out_left(p)) p->frame_ns = shmrpc__now_ns();
        if (p->in.len == 0) return; /* level-triggered epoll says when more comes */
    }
}

/* Closes p if it is done, else sets its epoll interest: writing while a frame is unsent,
 * reading otherwise. */
static void peer_settle(worker *w, peer *p)
{
    if (out_left(p) && !peer_flush(w, p)) {
        peer_free(w, p);
        return;
    }
    if (p->closing && out_left(p) == 0) {
        shutdown(p->fd, SHUT_WR);
        peer_free(w, p);
        return;
    }
    uint32_t want = out_left(p) ? EPOLLOUT : EPOLLIN;
    if (want == p->events) return;
    struct epoll_event ev = {.events = want, .data.ptr = p};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, p->fd, &ev);
    p->events = want;
}

static void peer_event(worker *w, peer *p, uint32_t events)
{
    if (events & EPOLLOUT) {
        if (!peer_flush(w, p)) {
            peer_free(w, p);
            return;
        }
        if (out_left(p) == 0) p->last_ns = shmrpc__now_ns();
    }
    bool readable = events & (EPOLLIN | EPOLLHUP | EPOLLERR);
    if (out_left(p) == 0 && (readable || p->in.len)) peer_read(w, p);
    peer_settle(w, p);
}

/* Refuses a connection with an ERROR frame, best effort, and closes it. */
static void refuse_fd(int fd, int status, const char *msg)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    put_error_frame(&b, 0, 0, status, msg);
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

/* The bucket of fd's peer address in tcp_load.by_addr, its text into from. An IPv4 peer
 * is its address; an IPv6 peer its /64, which one holder has 2^64 addresses of. The
 * buckets are keyed with a secret seed: a peer cannot choose addresses that share one. */
static uint32_t addr_bucket(const tcp_listener *l, int fd, char *from, size_t n)
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
    return (uint32_t)((z ^ (z >> 31)) % ADDR_BUCKETS);
}

/* Counts a new connection from bucket, unless its address has max_per_addr already. */
static bool addr_admit(worker *w, uint32_t bucket)
{
    tcp_load *t = w->l->load;
    atomic_fetch_add(&t->by_addr[row_of(w)][bucket], 1);
    uint64_t sum = 0;
    for (int i = 0; i < MAX_WORKERS; i++)
        sum += atomic_load_explicit(&t->by_addr[i][bucket], memory_order_relaxed);
    if (sum <= (uint64_t)w->l->cfg->max_per_addr) return true;
    atomic_fetch_sub(&t->by_addr[row_of(w)][bucket], 1);
    return false;
}

/* The connection to close when the worker is at its cap: the one idle longest (between
 * frames, nothing to send) after its handshake; NULL when every one is busy or new. */
static peer *longest_idle(const worker *w)
{
    peer *best = NULL;
    for (int i = 0; i < w->n_peers; i++) {
        peer *p = w->peers[i];
        if (p->state != P_READY || p->closing || p->in.len || p->have_hdr || out_left(p)) continue;
        if (!best || p->last_ns < best->last_ns) best = p;
    }
    return best;
}

static void add_peer(worker *w, int fd)
{
    const shmrpc__tcp_cfg *cfg = w->l->cfg;
    char from[64];
    uint32_t bucket = addr_bucket(w->l, fd, from, sizeof from);
    if (!addr_admit(w, bucket)) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "too many connections from %s (the server admits at most %d from one address)",
                 from, cfg->max_per_addr);
        log_limit(w, "refused a connection: %s", msg);
        refuse_fd(fd, SHMRPC_EBUSY, msg);
        return;
    }
    if (w->n_peers >= cfg->max_conns) {
        /* At the cap, idle connections make room first: one that idles for minutes must
         * not lock a new client out. Its client connects again before its next call. */
        peer *idle = longest_idle(w);
        if (!idle) {
            atomic_fetch_sub(&w->l->load->by_addr[row_of(w)][bucket], 1);
            log_limit(w, "refused a connection from %s: all %d are busy", from, cfg->max_conns);
            refuse_busy(fd, cfg->max_conns);
            return;
        }
        char msg[128];
        snprintf(msg, sizeof msg,
                 "idle connection closed to make room (a worker serves at most %d)",
                 cfg->max_conns);
        put_error_frame(&idle->out, 0, 0, SHMRPC_ETIMEDOUT, msg);
        peer_flush(w, idle);
        log_limit(w, "closed the idle connection of %s for one from %s: %s", idle->from, from, msg);
        peer_free(w, idle);
    }
    peer *p = calloc(1, sizeof *p);
    if (!p) {
        atomic_fetch_sub(&w->l->load->by_addr[row_of(w)][bucket], 1);
        close(fd);
        return;
    }
    p->fd = fd;
    p->bucket = bucket;
    memcpy(p->from, from, sizeof p->from);
    shmrpc_buf_init(&p->in);
    shmrpc_buf_init(&p->out);
    p->accepted_ns = p->last_ns = shmrpc__now_ns();
    p->events = EPOLLIN;
    set_nodelay(fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        atomic_fetch_sub(&w->l->load->by_addr[row_of(w)][bucket], 1);
        close(fd);
        free(p);
        return;
    }
    w->peers[w->n_peers++] = p;
    count_open(w, 1);
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
    const shmrpc__tcp_cfg *cfg = w->l->cfg;
    if (p->state != P_READY) return p->accepted_ns + cfg->handshake_ns;
    if (p->in.len || out_left(p) || p->refused) {
        uint64_t body = p->have_hdr ? p->hdr.body_len : 0;
        size_t out = out_left(p);
        if (out > body) body = out;
        return p->frame_ns + cfg->progress_ns + (int64_t)(body >> 20) * NS_PER_S;
    }
    return p->last_ns + cfg->idle_ns;
}

static void sweep(worker *w, int64_t now)
{
    for (int i = w->n_peers; i-- > 0;) {
        peer *p = w->peers[i];
        if (now < peer_deadline(w, p)) continue;
        if (!p->closing && out_left(p) == 0) { /* say why, best effort */
            put_error_frame(&p->out, 0, 0, SHMRPC_ETIMEDOUT,
                            p->state != P_READY       ? "handshake timeout"
                            : p->in.len || p->refused ? "the frame made no progress in time"
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

static void worker_destroy(worker *w)
{
    while (w->n_peers)
        peer_free(w, w->peers[0]);
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
    w->peers = calloc((size_t)l->cfg->max_conns, sizeof *w->peers);
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
    return 0;
}

/* A worker's one connection when it has only one, between frames: the worker waits for
 * its next request in a blocking recv, one system call where epoll_pwait and recv are
 * two (on loopback, a fifth of a call's system calls). NULL otherwise. */
static peer *hot_peer(const worker *w)
{
    if (w->n_peers != 1) return NULL;
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
    ssize_t n = recv(p->fd, p->in.data, SHMRPC__FRAME_HDR_SIZE + READ_AHEAD, 0);
    if (n < 0) return false; /* the timeout, or a signal */
    if (n > 0) {
        p->in.len = (size_t)n;
        p->frame_ns = shmrpc__now_ns();
    }
    peer_event(w, p, EPOLLIN); /* n == 0: it reads the end of the stream again */
    return true;
}

/* Serves connections until stopped: worker index of the crew, or in place (-1). A forked
 * worker keeps SIGTERM blocked except inside epoll_pwait, so a call in progress is
 * finished and its answer sent before it stops. */
static int worker_run(tcp_listener *l, int index)
{
    bool forked = index >= 0;
    worker *w = calloc(1, sizeof *w);
    if (!w) return SHMRPC_ENOMEM;
    w->ep = w->spare = -1;
    int rc = worker_init(w, l, index);
    sigset_t block, open;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, forked ? &block : NULL, &open);
    sigdelset(&open, SIGTERM);
    int64_t next_sweep = 0, next_look = 0, next_term = 0;
    while (rc == 0 && !stopping(w)) {
        /* A lone busy connection is served from hot_wait, with a look at epoll (new
         * connections, SIGTERM, the sweep) every HOT_LOOK_NS. */
        int timeout = SWEEP_MS;
        peer *hot = hot_peer(w);
        if (hot) {
            int64_t now = shmrpc__now_ns();
            if (now < next_look && hot_wait(w, hot)) continue;
            if (now >= next_look) {
                timeout = 0;
                next_look = now + HOT_LOOK_NS;
            }
        }
        struct epoll_event evs[64];
        int n = epoll_pwait(w->ep, evs, 64, timeout, forked ? &open : NULL);
        if (n < 0 && errno != EINTR) rc = SHMRPC_ESYS(errno);
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &w->tag_source)
                take_connections(w);
            else if (tag != &w->tag_stop)
                peer_event(w, tag, evs[i].events);
        }
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
    atomic_store(&l->load->busy[index], 0);
    for (int i = 0; i < MAX_WORKERS; i++) {
        if (l->hand[i][0] >= 0) close(l->hand[i][0]);
        if (i != index && l->hand[i][1] >= 0) close(l->hand[i][1]);
    }
    close(l->fd);
    close(l->lock);
    return worker_run(l, index);
}

/* A worker died or left: what it held went with it, so its row of the budget and of the
 * per-address counts is zeroed (also when no worker takes its place, as when the count
 * wanted went down and it was killed after its grace). */
static void crew_reaped(void *arg, int index)
{
    tcp_listener *l = arg;
    atomic_store(&l->load->charged[index], 0);
    for (int b = 0; b < ADDR_BUCKETS; b++)
        atomic_store_explicit(&l->load->by_addr[index][b], 0, memory_order_relaxed);
}

/* The worker to give a new connection: the running one with the fewest connections
 * (those it holds and those on their way to it), a busy one counting one more; one that
 * is being replaced only when none runs; one at max_conns only when all are (it closes
 * its longest idle connection to make room, or refuses); never one above the count
 * wanted (it is leaving). */
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
        if (l->crew.pid[i] <= 0 || l->crew.leaving[i]) load += (uint64_t)1 << 40;
        if (conns >= (uint32_t)l->cfg->max_conns) load += (uint64_t)1 << 41;
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
            refuse_busy(fd, l->cfg->max_conns);
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
                             .reaped = crew_reaped};
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
    if (l->lock >= 0) close(l->lock);
    if (l->stop_pipe[0] >= 0) close(l->stop_pipe[0]);
    if (l->stop_pipe[1] >= 0) close(l->stop_pipe[1]);
    free(l);
}

static const shmrpc__listener_ops tcp_listener_ops = {
    .close = tcp_listener_close,
    .serve = tcp_serve,
    .stop = tcp_stop,
    .poke = tcp_poke,
};

/* One server per port: an abstract unix socket named after it is bound while the server
 * lives (the kernel lets it go when the last process holding it dies). Listening on it
 * lets a second server learn who holds it. */
static int lock_port(tcp_listener *l, const struct sockaddr_storage *ss, shmrpc_buf *err)
{
    unsigned port = ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                                   : ((const struct sockaddr_in6 *)ss)->sin6_port);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    int n = snprintf(un.sun_path + 1, sizeof un.sun_path - 1, "shmrpc/tcp/%u", port);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    l->lock = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->lock < 0) return sys_error(err, errno, "cannot open a socket for", l->where);
    if (bind(l->lock, (struct sockaddr *)&un, len) == 0) {
        listen(l->lock, 4);
        return 0;
    }
    int e = errno;
    close(l->lock);
    l->lock = -1;
    if (e != EADDRINUSE) return sys_error(err, e, "cannot lock the port of", l->where);
    shmrpc__msg_set(err, "tcp://%s is already in use (another server listens there", l->where);
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct ucred who;
    socklen_t wl = sizeof who;
    if (probe >= 0 && connect(probe, (struct sockaddr *)&un, len) == 0 &&
        getsockopt(probe, SOL_SOCKET, SO_PEERCRED, &who, &wl) == 0 && who.pid > 0)
        shmrpc__msg_append(err, ": process %d", (int)who.pid);
    if (probe >= 0) close(probe);
    shmrpc__msg_append(err, ")");
    return SHMRPC_EBUSY;
}

static int bind_socket(tcp_listener *l, const struct sockaddr_storage *ss, socklen_t len,
                       shmrpc_buf *err)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return sys_error(err, errno, "cannot open a socket for", l->where);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, len) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE) {
            shmrpc__msg_set(err, "tcp://%s is already in use (another program listens there)",
                            l->where);
            return SHMRPC_EBUSY;
        }
        return sys_error(err, e, "cannot bind", l->where);
    }
    if (listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        return sys_error(err, e, "cannot listen on", l->where);
    }
    l->fd = fd;
    return 0;
}

static int tcp_listen(shmrpc_server *s, const char *where, shmrpc__listener **out, shmrpc_buf *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = parse_addr(where, &ss, &len, err);
    if (rc) return rc;
    const shmrpc__tcp_cfg *cfg = shmrpc__server_tcp(s);
    if (!is_loopback(&ss) && !cfg->secret_len) {
        shmrpc__msg_set(err,
                        "binding tcp://%s, which is not a loopback address, needs a shared "
                        "secret (shmrpc_tcp_opts.secret)",
                        where);
        return SHMRPC_EPERM;
    }
    tcp_listener *l = calloc(1, sizeof *l);
    if (!l) return SHMRPC_ENOMEM;
    l->base.ops = &tcp_listener_ops;
    l->server = s;
    l->cfg = cfg;
    snprintf(l->where, sizeof l->where, "%s", where);
    l->max_msg = cap32(shmrpc__server_max_msg(s));
    if (getrandom(&l->addr_seed, sizeof l->addr_seed, GRND_NONBLOCK) != sizeof l->addr_seed)
        l->addr_seed = (uint64_t)shmrpc__now_ns() ^ (uint64_t)getpid() << 32;
    l->fd = l->lock = l->spare = l->stop_pipe[0] = l->stop_pipe[1] = -1;
    memset(l->hand, -1, sizeof l->hand);
    rc = lock_port(l, &ss, err);
    if (rc == 0) rc = bind_socket(l, &ss, len, err);
    if (rc == 0 && pipe2(l->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        rc = sys_error(err, errno, "cannot make a pipe for", where);
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

/* --- the client side ------------------------------------------------------------------- */

typedef struct tcp_conn {
    shmrpc__conn base;
    char where[ADDR_MAX];
    struct sockaddr_storage addr;
    socklen_t addr_len;
    const shmrpc_service_info *info;
    const shmrpc__client_cfg *cfg;
    uint32_t *map;        /* the client's, refilled on every reconnect */
    shmrpc__table *table; /* the server's, likewise */
    pid_t pid;            /* the process that opened it */
    int fd;               /* -1 while broken */
    uint16_t comp;
    uint32_t threshold, peer_max;
    uint64_t next_id;    /* the last request's id */
    uint64_t answered;   /* the last request whose answer was read (or that failed) */
    int64_t answered_ns; /* when */
    int64_t rcvtimeo_ms; /* the socket's SO_RCVTIMEO: 0 none, -1 not set yet */
    int64_t retry_ns, backoff_ns;
    shmrpc_buf out, in; /* in: frames read, the one in hand first */
    size_t used;        /* bytes of the frame in hand at the front of in, or 0 */
    shmrpc_arena *arena;
} tcp_conn;

/* Waits for events on fd until deadline (INT64_MAX: none); EINTR resumes with the time
 * that is left. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int ms = -1;
        if (deadline != INT64_MAX) {
            int64_t left = deadline - shmrpc__now_ns();
            if (left <= 0) return SHMRPC_ETIMEDOUT;
            ms = (int)((left + NS_PER_MS - 1) / NS_PER_MS);
            if (left > (int64_t)INT32_MAX * NS_PER_MS) ms = INT32_MAX;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, ms);
        if (n > 0) return 0;
        if (n < 0 && errno != EINTR) return SHMRPC_ESYS(errno);
    }
}

/* Lets go of a broken connection, and of what was read from it. */
static void conn_break(tcp_conn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    shmrpc_buf_clear(&c->in);
    c->used = 0;
}

static int broken(tcp_conn *c, shmrpc_buf *err, const char *what)
{
    int e = errno;
    conn_break(c);
    shmrpc__msg_set(err, "the connection to tcp://%s broke %s", c->where, what);
    if (e) shmrpc__msg_append(err, ": %s", strerror(e));
    return SHMRPC_EUNAVAIL;
}

static int send_all(tcp_conn *c, const uint8_t *p, size_t n, int64_t deadline, shmrpc_buf *err)
{
    while (n) {
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            p += k, n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(c->fd, POLLOUT, deadline);
            if (rc == SHMRPC_ETIMEDOUT) { /* half a frame sent: the stream is unusable */
                conn_break(c);
                shmrpc__msg_set(err, "the deadline passed while sending to tcp://%s", c->where);
                return rc;
            }
            if (rc) return broken(c, err, "while sending");
            continue;
        }
        return broken(c, err, "while sending");
    }
    return 0;
}

/* Waits for the server, then reads at least min more bytes into c->in (and what else
 * has come, up to READ_AHEAD more). */
/* How early a blocking recv's timeout must end so that it ends before the deadline: the
 * kernel ends an SO_RCVTIMEO wait on its timer wheel, which rounds a timeout up to the
 * granularity of the wheel's level that holds it, up to an eighth of it (measured: a 1 s
 * recv returned up to 32 ms late), and a short one by up to a tick (10 ms at HZ 100). */
static int64_t rcvtimeo_early_ns(int64_t left)
{
    return left / 8 + 10 * NS_PER_MS;
}

/* Bounds the next blocking recv by what is left until deadline, less what the kernel may
 * add (rcvtimeo_early_ns), in whole milliseconds; false when too little is left for that:
 * then poll, whose timer is exact, waits for the rest. Calls with one timeout come to the
 * same value, so the socket option is set once rather than per call. */
static bool recv_timeout(tcp_conn *c, int64_t deadline)
{
    int64_t ms = 0;
    if (deadline != INT64_MAX) {
        int64_t left = deadline - shmrpc__now_ns();
        ms = (left - rcvtimeo_early_ns(left)) / NS_PER_MS;
        if (ms < 1) return false;
    }
    if (ms == c->rcvtimeo_ms) return true;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) return false;
    c->rcvtimeo_ms = ms;
    return true;
}

/* Reads at least min more bytes into c->in (and what else has come, up to READ_AHEAD
 * more) with blocking recv calls, each bounded by what is left of the deadline: one
 * system call for an answer that fits, where poll and recv would be two. Once a recv's
 * timeout has ended (early, see recv_timeout), poll waits exactly for what is left. */
static int fill(tcp_conn *c, size_t min, int64_t deadline, shmrpc_buf *err)
{
    size_t room = min + READ_AHEAD;
    if (shmrpc__buf_grow(&c->in, room)) return c->in.err;
    size_t want = c->in.len + min;
    bool exact = false;
    while (c->in.len < want) {
        if (deadline != INT64_MAX && shmrpc__now_ns() >= deadline) {
            shmrpc__msg_set(err, "the deadline passed waiting for tcp://%s", c->where);
            return SHMRPC_ETIMEDOUT;
        }
        if (exact || !recv_timeout(c, deadline)) {
            int rc = wait_fd(c->fd, POLLIN, deadline); /* then recv finds what came */
            if (rc == SHMRPC_ETIMEDOUT) continue;      /* said above */
            if (rc) return broken(c, err, "while receiving");
        }
        ssize_t k = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
        if (k > 0) {
            c->in.len += (size_t)k;
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) exact = true;
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k == 0) errno = 0;
        return broken(c, err, k == 0 ? "(the server closed it)" : "while receiving");
    }
    return 0;
}

/* Drops the last frame read from the front of c->in, keeping what came after it. */
static void consume(tcp_conn *c)
{
    size_t left = c->in.len - c->used;
    if (left) memmove(c->in.data, c->in.data + c->used, left);
    c->in.len = left;
    c->used = 0;
    if (!left && c->in.cap > ((size_t)1 << 20)) {
        shmrpc_buf_destroy(&c->in);
        shmrpc_buf_init(&c->in);
    }
}

/* Reads one frame to the front of c->in. A timeout before any of its bytes came leaves
 * the stream usable (a late answer is skipped when it comes); later, it does not. */
static int read_frame_c(tcp_conn *c, uint32_t max_body, shmrpc__frame_hdr *h, int64_t deadline,
                        shmrpc_buf *err)
{
    consume(c);
    int rc = 0;
    if (c->in.len < SHMRPC__FRAME_HDR_SIZE)
        rc = fill(c, SHMRPC__FRAME_HDR_SIZE - c->in.len, deadline, err);
    if (rc == SHMRPC_ETIMEDOUT && c->in.len) conn_break(c);
    if (rc) return rc;
    rc = shmrpc__frame_hdr_decode(c->in.data, SHMRPC__FRAME_HDR_SIZE, max_body, c->comp, h, err);
    if (rc) {
        conn_break(c);
        return rc;
    }
    size_t need = SHMRPC__FRAME_HDR_SIZE + (size_t)h->body_len;
    if (c->in.len < need) rc = fill(c, need - c->in.len, deadline, err);
    if (rc == SHMRPC_ETIMEDOUT) conn_break(c);
    if (rc == 0) c->used = need;
    return rc;
}

static shmrpc_bytes frame_body(const tcp_conn *c)
{
    return shmrpc_bytes_of(c->in.data + SHMRPC__FRAME_HDR_SIZE, c->used - SHMRPC__FRAME_HDR_SIZE);
}

/* An ERROR frame's status, its message into err. */
static int error_frame(tcp_conn *c, shmrpc_buf *err)
{
    int status;
    shmrpc_str msg;
    int rc = shmrpc__error_parse(frame_body(c), &status, &msg, err);
    if (rc) return rc;
    /* Only statuses of status.h pass: a peer does not choose what our calls return. */
    if (!shmrpc__status_known(status)) {
        shmrpc__msg_set(err, "tcp://%s sent an ERROR frame with the unknown status %d: %.*s",
                        c->where, status, (int)msg.len, msg.ptr);
        return SHMRPC_EPROTO;
    }
    shmrpc__msg_set(err, "%.*s", (int)msg.len, msg.ptr);
    return status;
}

static int connect_socket(tcp_conn *c, int64_t deadline, shmrpc_buf *err)
{
    int fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return sys_error(err, errno, "cannot open a socket for", c->where);
    c->fd = fd;
    c->rcvtimeo_ms = -1;
    set_nodelay(fd);
    if (connect(fd, (const struct sockaddr *)&c->addr, c->addr_len) == 0) goto connected;
    if (errno != EINPROGRESS && errno != EINTR) goto failed;
    int rc = wait_fd(fd, POLLOUT, deadline);
    if (rc == SHMRPC_ETIMEDOUT) {
        conn_break(c);
        shmrpc__msg_set(err, "connecting to tcp://%s timed out", c->where);
        return rc;
    }
    int e = 0;
    socklen_t el = sizeof e;
    if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0) goto connected;
    errno = e ? e : errno;
failed:
    shmrpc__msg_set(err, "no server at tcp://%s: %s", c->where, strerror(errno));
    conn_break(c);
    return SHMRPC_EUNAVAIL;
connected: /* from now on receives block (see fill) and sends do not (MSG_DONTWAIT) */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return 0;
}

/* With a shared secret: sends the client's proof and checks the server's. hello and ack
 * are the handshake's bodies as they went over the wire. */
static int authenticate(tcp_conn *c, shmrpc_bytes hello, shmrpc_bytes ack, int64_t deadline,
                        shmrpc_buf *err)
{
    uint8_t proof[2][SHMRPC__AUTH_LEN];
    shmrpc__auth_proofs(&c->cfg->tcp, hello, ack, proof[0], proof[1]);
    uint8_t frame[SHMRPC__FRAME_HDR_SIZE + SHMRPC__AUTH_LEN];
    shmrpc__frame_hdr h = {.kind = SHMRPC__KIND_AUTH, .body_len = SHMRPC__AUTH_LEN};
    shmrpc__frame_hdr_encode(&h, frame);
    memcpy(frame + SHMRPC__FRAME_HDR_SIZE, proof[0], SHMRPC__AUTH_LEN);
    int rc = send_all(c, frame, sizeof frame, deadline, err);
    if (rc == 0) rc = read_frame_c(c, SHMRPC__WIRE_MAX_HELLO, &h, deadline, err);
    if (rc == 0 && h.kind == SHMRPC__KIND_ERROR) {
        rc = error_frame(c, err);
    } else if (rc == 0 && h.kind != SHMRPC__KIND_AUTH) {
        shmrpc__msg_set(err, "tcp://%s answered the AUTH with a %s frame", c->where,
                        shmrpc__frame_kind_name(h.kind));
        rc = SHMRPC_EPROTO;
    } else if (rc == 0 && !shmrpc__auth_equal(frame_body(c).ptr, proof[1])) {
        shmrpc__msg_set(err, "tcp://%s does not hold the same shared secret (its proof is wrong)",
                        c->where);
        rc = SHMRPC_EPERM;
    }
    shmrpc__auth_wipe(proof, sizeof proof);
    return rc;
}

/* Sends the HELLO and checks the HELLO_ACK, filling c->map; with a shared secret, both
 * sides then prove they hold it. */
static int handshake(tcp_conn *c, int64_t deadline, shmrpc_buf *err)
{
    const shmrpc__tcp_cfg *cfg = &c->cfg->tcp;
    uint8_t nonce[SHMRPC__AUTH_LEN];
    /* Over loopback, copying is faster than any compressor (bench: tcp/text-snappy): by
     * default a client offers compression to other hosts only. */
    bool local = cfg->compression_auto && is_loopback(&c->addr);
    shmrpc__hello hello = {.proto = SHMRPC__WIRE_PROTO,
                           .info = *c->info,
                           .compression = local ? 0 : cfg->compression,
                           .threshold = cfg->threshold,
                           .max_msg = cap32(c->cfg->max_msg)};
    if (cfg->secret_len) {
        int rc = shmrpc__auth_nonce(nonce);
        if (rc) return rc;
        hello.auth = shmrpc_bytes_of(nonce, sizeof nonce);
    }
    shmrpc_buf_clear(&c->out);
    size_t at = shmrpc__frame_begin(&c->out, SHMRPC__KIND_HELLO, 0, 0, 0);
    int rc = shmrpc__hello_write(&c->out, SHMRPC__KIND_HELLO, &hello, err);
    if (rc == 0) rc = shmrpc__frame_end(&c->out, at);
    if (rc == 0) rc = send_all(c, c->out.data, c->out.len, deadline, err);
    shmrpc__frame_hdr h;
    if (rc == 0) rc = read_frame_c(c, SHMRPC__WIRE_MAX_HELLO, &h, deadline, err);
    if (rc) return rc;
    if (h.kind == SHMRPC__KIND_ERROR) return error_frame(c, err);
    if (h.kind != SHMRPC__KIND_HELLO_ACK) {
        shmrpc__msg_set(err, "tcp://%s answered the HELLO with a %s frame", c->where,
                        shmrpc__frame_kind_name(h.kind));
        return SHMRPC_EPROTO;
    }
    shmrpc__hello ack;
    shmrpc_arena_reset(c->arena);
    rc = shmrpc__hello_parse(frame_body(c), SHMRPC__KIND_HELLO_ACK, c->arena, &ack, err);
    if (rc == 0) rc = shmrpc__hello_accept(&hello, &ack, c->map, err);
    if (rc == 0 && ack.auth.len && !cfg->secret_len) {
        shmrpc__msg_set(err,
                        "tcp://%s requires a shared secret, and this client has none "
                        "(shmrpc_tcp_opts.secret)",
                        c->where);
        rc = SHMRPC_EPERM;
    } else if (rc == 0 && cfg->secret_len && ack.auth.len != SHMRPC__AUTH_LEN) {
        shmrpc__msg_set(err,
                        "tcp://%s does not ask for the shared secret: it may not be the "
                        "server this client is meant for",
                        c->where);
        rc = SHMRPC_EPERM;
    }
    if (rc == 0 && cfg->secret_len) {
        shmrpc_bytes sent = shmrpc_bytes_of(c->out.data + SHMRPC__FRAME_HDR_SIZE,
                                            c->out.len - SHMRPC__FRAME_HDR_SIZE);
        rc = authenticate(c, sent, frame_body(c), deadline, err);
    }
    if (rc == 0) rc = shmrpc__table_keep(c->table, &ack.info);
    if (rc == 0) {
        c->comp = ack.compression;
        c->threshold = ack.threshold;
        c->peer_max = ack.max_msg;
    }
    shmrpc_arena_reset(c->arena);
    return rc;
}

static int attach(tcp_conn *c, int64_t deadline, shmrpc_buf *err)
{
    int64_t limit = shmrpc__now_ns() + c->cfg->tcp.connect_ns;
    if (deadline > limit) deadline = limit;
    c->comp = 0;
    int rc = connect_socket(c, deadline, err);
    if (rc == 0) rc = handshake(c, deadline, err);
    if (rc) conn_break(c);
    return rc;
}

/* After the connection broke, a later call connects again (never the failed call: it is
 * not sent twice), no more often than a jittered backoff that doubles up to a second. */
static int reconnect(tcp_conn *c, int64_t deadline, shmrpc_buf *err)
{
    int64_t now = shmrpc__now_ns();
    if (now < c->retry_ns) {
        shmrpc__msg_set(err, "the connection to tcp://%s broke; trying again shortly", c->where);
        return SHMRPC_EUNAVAIL;
    }
    int rc = attach(c, deadline, err);
    if (rc == 0) {
        c->backoff_ns = 0;
        return 0;
    }
    c->backoff_ns = c->backoff_ns ? c->backoff_ns * 2 : 10 * NS_PER_MS;
    if (c->backoff_ns > NS_PER_S) c->backoff_ns = NS_PER_S;
    c->retry_ns = now + c->backoff_ns / 2 + (int64_t)((uint64_t)now % (uint64_t)c->backoff_ns);
    return rc;
}

static int send_request(tcp_conn *c, uint32_t sid, uint64_t id, shmrpc_bytes req, int64_t deadline,
                        shmrpc_buf *err)
{
    if (req.len > c->peer_max) {
        shmrpc__msg_set(err, "a request of %zu bytes is above the server's maximum of %" PRIu32,
                        req.len, c->peer_max);
        return SHMRPC_ETOOBIG;
    }
    shmrpc_buf_clear(&c->out);
    int rc = put_msg_frame(&c->out, SHMRPC__KIND_REQUEST, sid, id, req, c->comp, c->threshold);
    if (rc) {
        shmrpc__msg_set(err, "cannot frame the request: %s", shmrpc_strerror(rc));
        return rc;
    }
    rc = send_all(c, c->out.data, c->out.len, deadline, err);
    if (c->out.cap > ((size_t)1 << 20)) {
        shmrpc_buf_destroy(&c->out);
        shmrpc_buf_init(&c->out);
    }
    return rc;
}

/* Reads frames until the answer to request id of method sid: the result into resp. */
static int await_answer(tcp_conn *c, uint32_t sid, uint64_t id, shmrpc_buf *resp, int64_t deadline,
                        shmrpc_buf *err)
{
    uint32_t max = cap32(resp->max ? resp->max : SHMRPC_DEFAULT_MAX_MSG);
    for (;;) {
        shmrpc__frame_hdr h;
        int rc = read_frame_c(c, max, &h, deadline, err);
        if (rc) return rc;
        if (h.kind == SHMRPC__KIND_PING) {
            uint8_t pong[SHMRPC__FRAME_HDR_SIZE];
            shmrpc__frame_hdr p = {.kind = SHMRPC__KIND_PONG, .request_id = h.request_id};
            shmrpc__frame_hdr_encode(&p, pong);
            rc = send_all(c, pong, sizeof pong, deadline, err);
            if (rc) return rc;
            continue;
        }
        if (h.kind == SHMRPC__KIND_PONG) continue;
        if (h.kind == SHMRPC__KIND_ERROR && h.request_id == 0) { /* the server leaves */
            rc = error_frame(c, err);
            conn_break(c);
            if (rc == SHMRPC_ETIMEDOUT) { /* its timeout, not the call's deadline */
                char why[160];
                snprintf(why, sizeof why, "%s", shmrpc__msg_get(err));
                shmrpc__msg_set(err, "tcp://%s closed the connection: %s", c->where, why);
                rc = SHMRPC_EUNAVAIL;
            }
            return rc;
        }
        bool answer = h.kind == SHMRPC__KIND_RESPONSE || h.kind == SHMRPC__KIND_ERROR;
        if (answer && h.request_id < id) continue; /* a call that timed out earlier */
        if (!answer || h.request_id != id || h.method != sid) {
            conn_break(c);
            shmrpc__msg_set(err,
                            "tcp://%s sent a %s frame for request %" PRIu64 " of method %" PRIu32
                            " out of turn",
                            c->where, shmrpc__frame_kind_name(h.kind), h.request_id, h.method);
            return SHMRPC_EPROTO;
        }
        if (h.kind == SHMRPC__KIND_ERROR) return error_frame(c, err);
        uint16_t comp = h.flags & SHMRPC__FLAG_COMPRESSION;
        if (comp) {
            rc = shmrpc__body_decompress(comp, frame_body(c), max, resp, err);
            if (rc) conn_break(c);
            return rc;
        }
        shmrpc_bytes body = frame_body(c);
        return shmrpc_buf_append(resp, body.ptr, body.len);
    }
}

/* Between calls with no answer outstanding the server has nothing to say: anything
 * readable is its close (an idle timeout, a restart), so a new connection is made before
 * the request is sent rather than failing a call the server never saw. Calls that follow
 * an answer within a millisecond skip the look (a system call): a server that closed in
 * that millisecond fails the call with SHMRPC_EUNAVAIL, which is never resent. */
#define SERVER_LEFT_AFTER_NS NS_PER_MS

static bool server_left(const tcp_conn *c, int64_t now)
{
    if (now - c->answered_ns < SERVER_LEFT_AFTER_NS) return false;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}

static int tcp_call(shmrpc__conn *base, uint32_t sid, shmrpc_bytes req, shmrpc_buf *resp,
                    int64_t timeout_ms, shmrpc_buf *err)
{
    tcp_conn *c = (tcp_conn *)base;
    if (getpid() != c->pid) {
        shmrpc__msg_set(err, "this connection belongs to process %d", (int)c->pid);
        return SHMRPC_EINVAL;
    }
    int64_t now = shmrpc__now_ns();
    bool forever = timeout_ms < 0 || timeout_ms > (INT64_MAX - now) / NS_PER_MS;
    int64_t deadline = forever ? INT64_MAX : now + timeout_ms * NS_PER_MS;
    if (c->fd >= 0 && c->answered == c->next_id && server_left(c, now)) conn_break(c);
    int rc = c->fd < 0 ? reconnect(c, deadline, err) : 0;
    uint64_t id = ++c->next_id;
    if (rc == 0) rc = send_request(c, sid, id, req, deadline, err);
    if (rc == 0) rc = await_answer(c, sid, id, resp, deadline, err);
    if (rc != SHMRPC_ETIMEDOUT) {
        c->answered = id;
        c->answered_ns = shmrpc__now_ns();
    }
    consume(c);
    return rc;
}

static void tcp_conn_close(shmrpc__conn *base)
{
    tcp_conn *c = (tcp_conn *)base;
    if (c->pid == getpid())
        conn_break(c);
    else if (c->fd >= 0)
        close(c->fd); /* the parent's socket stays open in the parent */
    shmrpc_buf_destroy(&c->out);
    shmrpc_buf_destroy(&c->in);
    shmrpc_arena_free(c->arena);
    free(c);
}

static const shmrpc__conn_ops tcp_conn_ops = {.call = tcp_call, .close = tcp_conn_close};

static int tcp_connect(const char *where, const shmrpc_service_info *info,
                       const shmrpc__client_cfg *cfg, uint32_t *map, shmrpc__table *table,
                       shmrpc__conn **out, shmrpc_buf *err)
{
    tcp_conn *c = calloc(1, sizeof *c);
    if (!c) return SHMRPC_ENOMEM;
    c->base.ops = &tcp_conn_ops;
    c->fd = -1;
    c->pid = getpid();
    c->info = info;
    c->cfg = cfg;
    c->map = map;
    c->table = table;
    shmrpc_buf_init(&c->out);
    shmrpc_buf_init(&c->in);
    c->arena = shmrpc_arena_new(0);
    int rc = c->arena ? parse_addr(where, &c->addr, &c->addr_len, err) : SHMRPC_ENOMEM;
    if (rc == 0) {
        snprintf(c->where, sizeof c->where, "%s", where);
        shmrpc_arena_set_limit(c->arena, (size_t)SHMRPC__WIRE_MAX_HELLO * 8);
        rc = attach(c, INT64_MAX, err);
    }
    if (rc) {
        tcp_conn_close(&c->base);
        return rc;
    }
    *out = &c->base;
    return 0;
}

const shmrpc__transport shmrpc__tcp_transport = {
    .scheme = "tcp",
    .connect = tcp_connect,
    .listen = tcp_listen,
};
