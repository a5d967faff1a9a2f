/* The TCP transport, tcp://HOST:PORT: the wire format of docs/wire.md over sockets. A
 * server's workers share one listening socket and run an epoll loop each; a client does
 * blocking-style calls over a non-blocking socket, every wait bounded by one deadline. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crew.h"
#include "frame.h"
#include "wait.h"

#define NS_PER_MS ((int64_t)1000 * 1000)
#define NS_PER_S ((int64_t)1000 * 1000 * 1000)

/* Limits (docs/wire.md, "Limits"). */
#define MAX_CONNS 1024
#define HANDSHAKE_NS (5 * NS_PER_S)
#define IDLE_NS (300 * NS_PER_S)
#define PROGRESS_NS (10 * NS_PER_S) /* plus 1 s per MiB of body */
#define CONNECT_NS (5 * NS_PER_S)
#define SWEEP_MS 200
#define MAX_WORKERS SHMRPC__CREW_MAX
#define ADDR_MAX 300
#define READ_AHEAD ((size_t)16384) /* bytes read past the frame in hand, to save syscalls */

static const uint16_t allowed_compression = SHMRPC__FLAG_SNAPPY | SHMRPC__FLAG_ZLIB;

static uint32_t cap32(size_t n)
{
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
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

typedef struct tcp_listener {
    shmrpc__listener base;
    shmrpc_server *server;
    int fd;           /* the listening socket, non-blocking, shared by the workers */
    int stop_pipe[2]; /* stop writes a byte: wakes the manager, or a worker serving in place */
    _Atomic int stop;
    uint32_t max_msg; /* the server's, capped to what a frame can carry */
} tcp_listener;

/* One connection of a worker. Reads stop while a response is unsent: the memory a
 * connection holds is one frame in and one out. */
typedef struct peer {
    int fd;
    bool greeted;  /* the HELLO_ACK has been sent: requests may come */
    bool closing;  /* close once out is flushed */
    bool have_hdr; /* hdr holds the frame being read */
    uint16_t comp; /* agreed in the handshake */
    uint32_t threshold, peer_max;
    shmrpc__frame_hdr hdr;
    shmrpc_buf in;       /* the frame being read: header, then body */
    shmrpc_buf out;      /* frames to send */
    size_t out_off;      /* bytes of out already sent */
    int64_t accepted_ns; /* handshake deadline base */
    int64_t frame_ns;    /* when the partial frame (in or out) began */
    int64_t last_ns;     /* last complete frame */
    uint32_t events;     /* the epoll interest set */
} peer;

typedef struct worker {
    tcp_listener *l;
    bool forked;
    int ep;
    int spare; /* a reserved fd, given up to accept and drop a connection on EMFILE */
    shmrpc_ctx ctx;
    shmrpc_arena *arena; /* handshake parsing */
    shmrpc_buf req, resp, err;
    peer *peers[MAX_CONNS];
    int n_peers;
    char tag_listen, tag_stop; /* epoll data for the listening socket and the stop pipe */
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

static void peer_free(worker *w, peer *p)
{
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
    free(p);
}

static size_t out_left(const peer *p)
{
    return p->out.len - p->out_off;
}

/* Sends what it can; false when the connection is gone. */
static bool peer_flush(peer *p)
{
    while (out_left(p)) {
        ssize_t n = send(p->fd, p->out.data + p->out_off, out_left(p), MSG_NOSIGNAL);
        if (n > 0) {
            p->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    shmrpc_buf_clear(&p->out);
    p->out_off = 0;
    if (p->out.cap > ((size_t)1 << 20)) { /* an idle connection holds little */
        shmrpc_buf_destroy(&p->out);
        shmrpc_buf_init(&p->out);
    }
    return true;
}

/* Queues an ERROR frame with request id 0 and closes after it. */
static void peer_refuse(peer *p, int status, const char *msg)
{
    put_error_frame(&p->out, 0, 0, status, msg);
    p->closing = true;
}

static void serve_hello(worker *w, peer *p, shmrpc_bytes body)
{
    shmrpc__hello hello, ack;
    shmrpc_arena_reset(w->arena);
    shmrpc__msg_clear(&w->err);
    int rc = shmrpc__hello_parse(body, SHMRPC__KIND_HELLO, w->arena, &hello, &w->err);
    if (rc == 0)
        rc = shmrpc__hello_answer(&hello, shmrpc__server_info(w->l->server), allowed_compression,
                                  SHMRPC__WIRE_DEFAULT_THRESHOLD, w->l->max_msg, w->arena, &ack,
                                  &w->err);
    if (rc == 0) {
        size_t at = shmrpc__frame_begin(&p->out, SHMRPC__KIND_HELLO_ACK, 0, 0, 0);
        rc = shmrpc__hello_write(&p->out, SHMRPC__KIND_HELLO_ACK, &ack, &w->err);
        if (rc == 0) rc = shmrpc__frame_end(&p->out, at);
        if (rc) shmrpc_buf_clear(&p->out);
    }
    if (rc) {
        peer_refuse(p, rc, shmrpc__msg_get(&w->err));
    } else {
        p->greeted = true;
        p->comp = ack.compression;
        p->threshold = ack.threshold;
        p->peer_max = hello.max_msg;
    }
    shmrpc_arena_reset(w->arena);
}

static void serve_request(worker *w, peer *p, const shmrpc__frame_hdr *h, shmrpc_bytes body)
{
    shmrpc_bytes req = body;
    uint16_t comp = h->flags & SHMRPC__FLAG_COMPRESSION;
    if (comp) {
        shmrpc__msg_clear(&w->err);
        int rc = shmrpc__body_decompress(comp, body, w->l->max_msg, &w->req, &w->err);
        if (rc) {
            peer_refuse(p, rc, shmrpc__msg_get(&w->err));
            return;
        }
        req = shmrpc_bytes_of(w->req.data, w->req.len);
    }
    int rc = shmrpc__dispatch(w->l->server, &w->ctx, h->method, req, &w->resp);
    if (rc == 0 && w->resp.len > p->peer_max) {
        char msg[128];
        snprintf(msg, sizeof msg, "a result of %zu bytes is above the client's maximum of %u",
                 w->resp.len, p->peer_max);
        put_error_frame(&p->out, h->method, h->request_id, SHMRPC_ETOOBIG, msg);
    } else if (rc == 0) {
        rc = put_msg_frame(&p->out, SHMRPC__KIND_RESPONSE, h->method, h->request_id,
                           shmrpc_bytes_of(w->resp.data, w->resp.len), p->comp, p->threshold);
        if (rc) put_error_frame(&p->out, h->method, h->request_id, rc, shmrpc_strerror(rc));
    } else {
        put_error_frame(&p->out, h->method, h->request_id, rc, shmrpc__ctx_msg(&w->ctx));
    }
    if (w->req.cap > ((size_t)1 << 20)) { /* do not keep a large call's memory */
        shmrpc_buf_destroy(&w->req);
        shmrpc_buf_init(&w->req);
    }
    if (w->resp.cap > ((size_t)1 << 20)) {
        shmrpc_buf_destroy(&w->resp);
        shmrpc_buf_init(&w->resp);
    }
}

/* A whole frame has arrived in p->in. */
static void serve_frame(worker *w, peer *p)
{
    const shmrpc__frame_hdr *h = &p->hdr;
    shmrpc_bytes body = shmrpc_bytes_of(p->in.data + SHMRPC__FRAME_HDR_SIZE, h->body_len);
    const char *kind = shmrpc__frame_kind_name(h->kind);
    char msg[128];
    if (!p->greeted) {
        if (h->kind == SHMRPC__KIND_HELLO) {
            serve_hello(w, p, body);
            return;
        }
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

/* Makes p->in start with a whole frame, reading at most READ_AHEAD bytes past it (so a
 * connection holds at most one frame and that much). 1 when it does, 0 when more must
 * come (or the frame was refused), -1 when the connection is to be dropped at once. */
static int read_frame(worker *w, peer *p)
{
    for (;;) {
        if (!p->have_hdr && p->in.len >= SHMRPC__FRAME_HDR_SIZE) {
            uint32_t max = p->greeted ? w->l->max_msg : SHMRPC__WIRE_MAX_HELLO;
            shmrpc__msg_clear(&w->err);
            int rc = shmrpc__frame_hdr_decode(p->in.data, SHMRPC__FRAME_HDR_SIZE, max, p->comp,
                                              &p->hdr, &w->err);
            if (rc) {
                peer_refuse(p, rc, shmrpc__msg_get(&w->err));
                return 0;
            }
            p->have_hdr = true;
        }
        size_t need = SHMRPC__FRAME_HDR_SIZE + (p->have_hdr ? p->hdr.body_len : 0);
        if (p->have_hdr && p->in.len >= need) return 1;
        size_t room = need - p->in.len + READ_AHEAD;
        if (shmrpc__buf_grow(&p->in, room)) return -1;
        ssize_t n = recv(p->fd, p->in.data + p->in.len, room, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        if (n == 0) return peer_eof(w, p);
        if (p->in.len == 0) p->frame_ns = shmrpc__now_ns();
        p->in.len += (size_t)n;
    }
}

/* Drops the frame just served from the front of p->in, keeping what was read past it. */
static void consume_frame(peer *p)
{
    size_t used = SHMRPC__FRAME_HDR_SIZE + p->hdr.body_len;
    size_t left = p->in.len - used;
    if (left) memmove(p->in.data, p->in.data + used, left);
    p->in.len = left;
    p->have_hdr = false;
    p->last_ns = shmrpc__now_ns();
    if (left) p->frame_ns = p->last_ns;
    if (!left && p->in.cap > ((size_t)1 << 20)) { /* an idle connection holds little */
        shmrpc_buf_destroy(&p->in);
        shmrpc_buf_init(&p->in);
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
        serve_frame(w, p);
        consume_frame(p);
        if (out_left(p) && !peer_flush(p)) {
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
    if (out_left(p) && !peer_flush(p)) {
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
        if (!peer_flush(p)) {
            peer_free(w, p);
            return;
        }
        if (out_left(p) == 0) p->last_ns = shmrpc__now_ns();
    }
    bool readable = events & (EPOLLIN | EPOLLHUP | EPOLLERR);
    if (out_left(p) == 0 && (readable || p->in.len)) peer_read(w, p);
    peer_settle(w, p);
}

/* Refuses a connection beyond the cap with an ERROR frame, best effort, and closes it. */
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

static void add_peer(worker *w, int fd)
{
    if (w->n_peers >= MAX_CONNS) {
        char msg[96];
        snprintf(msg, sizeof msg, "too many connections (this worker serves at most %d)",
                 MAX_CONNS);
        refuse_fd(fd, SHMRPC_EBUSY, msg);
        return;
    }
    peer *p = calloc(1, sizeof *p);
    if (!p) {
        close(fd);
        return;
    }
    p->fd = fd;
    shmrpc_buf_init(&p->in);
    shmrpc_buf_init(&p->out);
    p->accepted_ns = p->last_ns = shmrpc__now_ns();
    p->events = EPOLLIN;
    set_nodelay(fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        free(p);
        return;
    }
    w->peers[w->n_peers++] = p;
}

/* Accepts what is pending. Out of fds, it gives up its spare one to accept and drop a
 * connection, so a full table never makes the loop spin on a readable listener. */
static void accept_all(worker *w)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(w->l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            add_peer(w, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if ((errno == EMFILE || errno == ENFILE) && w->spare >= 0) {
            close(w->spare);
            fd = accept(w->l->fd, NULL, NULL);
            if (fd >= 0) close(fd);
            w->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
            continue;
        }
        return; /* EAGAIN, or another worker took it */
    }
}

/* The deadline of p: the handshake's, a partial frame's progress, or idleness. */
static int64_t peer_deadline(const peer *p)
{
    if (!p->greeted) return p->accepted_ns + HANDSHAKE_NS;
    if (p->in.len || out_left(p)) {
        uint64_t body = p->have_hdr ? p->hdr.body_len : 0;
        size_t out = out_left(p);
        if (out > body) body = out;
        return p->frame_ns + PROGRESS_NS + (int64_t)(body >> 20) * NS_PER_S;
    }
    return p->last_ns + IDLE_NS;
}

static void sweep(worker *w, int64_t now)
{
    for (int i = w->n_peers; i-- > 0;) {
        peer *p = w->peers[i];
        if (now < peer_deadline(p)) continue;
        if (!p->closing && out_left(p) == 0) { /* say why, best effort */
            put_error_frame(&p->out, 0, 0, SHMRPC_ETIMEDOUT,
                            !p->greeted ? "handshake timeout"
                            : p->in.len ? "the frame made no progress in time"
                                        : "idle timeout");
            peer_flush(p);
        }
        peer_free(w, p);
    }
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
    free(w);
}

static int worker_init(worker *w, tcp_listener *l, bool forked)
{
    w->l = l;
    w->forked = forked;
    w->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    shmrpc_buf_init(&w->req);
    shmrpc_buf_init(&w->resp);
    shmrpc_buf_init(&w->err);
    w->arena = shmrpc_arena_new(0);
    if (shmrpc__ctx_init(&w->ctx, l->server) || !w->arena) return SHMRPC_ENOMEM;
    if (w->ep < 0) return SHMRPC_ESYS(errno);
    shmrpc_arena_set_limit(w->arena, (size_t)SHMRPC__WIRE_MAX_HELLO * 8);
    /* Forked workers share the listener: each connection wakes one of them. */
    struct epoll_event ev = {.events = EPOLLIN | (forked ? EPOLLEXCLUSIVE : 0),
                             .data.ptr = &w->tag_listen};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, l->fd, &ev) != 0) return SHMRPC_ESYS(errno);
    if (!forked) {
        ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &w->tag_stop};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, l->stop_pipe[0], &ev) != 0) return SHMRPC_ESYS(errno);
    }
    return 0;
}

/* Serves connections until stopped. A forked worker keeps SIGTERM blocked except inside
 * epoll_pwait, so a call in progress is finished and its answer sent before it stops. */
static int worker_run(tcp_listener *l, bool forked)
{
    worker *w = calloc(1, sizeof *w);
    if (!w) return SHMRPC_ENOMEM;
    w->ep = w->spare = -1;
    int rc = worker_init(w, l, forked);
    sigset_t block, open;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, forked ? &block : NULL, &open);
    sigdelset(&open, SIGTERM);
    int64_t next_sweep = 0;
    while (rc == 0 && !stopping(w)) {
        struct epoll_event evs[64];
        int n = epoll_pwait(w->ep, evs, 64, SWEEP_MS, forked ? &open : NULL);
        if (n < 0 && errno != EINTR) rc = SHMRPC_ESYS(errno);
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &w->tag_listen)
                accept_all(w);
            else if (tag != &w->tag_stop)
                peer_event(w, tag, evs[i].events);
        }
        int64_t now = shmrpc__now_ns();
        if (now >= next_sweep) {
            sweep(w, now);
            next_sweep = now + SWEEP_MS * NS_PER_MS;
        }
    }
    worker_destroy(w);
    return rc;
}

static int crew_run(void *arg, int index)
{
    (void)index;
    struct sigaction stop = {.sa_handler = on_stop};
    sigaction(SIGTERM, &stop, NULL);
    return worker_run(arg, true);
}

static int manage(tcp_listener *l, int n)
{
    shmrpc__crew c = {
        .n = n, .stop = &l->stop, .stop_fd = l->stop_pipe[0], .arg = l, .run = crew_run};
    return shmrpc__crew_manage(&c);
}

static int tcp_serve(shmrpc__listener *base, int workers)
{
    tcp_listener *l = (tcp_listener *)base;
    if (workers < 0 || workers > MAX_WORKERS) return SHMRPC_EINVAL;
    return workers == 0 ? worker_run(l, false) : manage(l, workers);
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
    if (l->fd >= 0) close(l->fd);
    if (l->stop_pipe[0] >= 0) close(l->stop_pipe[0]);
    if (l->stop_pipe[1] >= 0) close(l->stop_pipe[1]);
    free(l);
}

static const shmrpc__listener_ops tcp_listener_ops = {
    .close = tcp_listener_close,
    .serve = tcp_serve,
    .stop = tcp_stop,
};

static int bind_socket(const char *where, const struct sockaddr_storage *ss, socklen_t len,
                       int *out, shmrpc_buf *err)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return sys_error(err, errno, "cannot open a socket for", where);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, len) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE) {
            shmrpc__msg_set(err, "tcp://%s is already in use (another server listens there)",
                            where);
            return SHMRPC_EBUSY;
        }
        return sys_error(err, e, "cannot bind", where);
    }
    if (listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        return sys_error(err, e, "cannot listen on", where);
    }
    *out = fd;
    return 0;
}

static int tcp_listen(shmrpc_server *s, const char *where, shmrpc__listener **out, shmrpc_buf *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = parse_addr(where, &ss, &len, err);
    if (rc) return rc;
    if (!is_loopback(&ss)) {
        shmrpc__msg_set(err,
                        "binding tcp://%s, which is not a loopback address, needs a shared "
                        "secret (not implemented yet)",
                        where);
        return SHMRPC_EPERM;
    }
    tcp_listener *l = calloc(1, sizeof *l);
    if (!l) return SHMRPC_ENOMEM;
    l->base.ops = &tcp_listener_ops;
    l->server = s;
    l->max_msg = cap32(shmrpc__server_max_msg(s));
    l->fd = l->stop_pipe[0] = l->stop_pipe[1] = -1;
    rc = bind_socket(where, &ss, len, &l->fd, err);
    if (rc == 0 && pipe2(l->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        rc = sys_error(err, errno, "cannot make a pipe for", where);
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
    uint32_t *map; /* the client's, refilled on every reconnect */
    pid_t pid;     /* the process that opened it */
    int fd;        /* -1 while broken */
    uint16_t comp;
    uint32_t threshold, peer_max;
    uint64_t next_id;  /* the last request's id */
    uint64_t answered; /* the last request whose answer was read (or that failed) */
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
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
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
static int fill(tcp_conn *c, size_t min, int64_t deadline, shmrpc_buf *err)
{
    size_t room = min + READ_AHEAD;
    if (shmrpc__buf_grow(&c->in, room)) return c->in.err;
    size_t want = c->in.len + min;
    while (c->in.len < want) {
        int rc = wait_fd(c->fd, POLLIN, deadline);
        if (rc == SHMRPC_ETIMEDOUT) {
            shmrpc__msg_set(err, "the deadline passed waiting for tcp://%s", c->where);
            return rc;
        }
        if (rc) return broken(c, err, "while receiving");
        ssize_t k = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
        if (k > 0) {
            c->in.len += (size_t)k;
            continue;
        }
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
    shmrpc__msg_set(err, "%.*s", (int)msg.len, msg.ptr);
    return status;
}

static int connect_socket(tcp_conn *c, int64_t deadline, shmrpc_buf *err)
{
    int fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return sys_error(err, errno, "cannot open a socket for", c->where);
    c->fd = fd;
    set_nodelay(fd);
    if (connect(fd, (const struct sockaddr *)&c->addr, c->addr_len) == 0) return 0;
    if (errno != EINPROGRESS && errno != EINTR) goto failed;
    int rc = wait_fd(fd, POLLOUT, deadline);
    if (rc == SHMRPC_ETIMEDOUT) {
        conn_break(c);
        shmrpc__msg_set(err, "connecting to tcp://%s timed out", c->where);
        return rc;
    }
    int e = 0;
    socklen_t el = sizeof e;
    if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0) return 0;
    errno = e ? e : errno;
failed:
    shmrpc__msg_set(err, "no server at tcp://%s: %s", c->where, strerror(errno));
    conn_break(c);
    return SHMRPC_EUNAVAIL;
}

/* Sends the HELLO and checks the HELLO_ACK, filling c->map. */
static int handshake(tcp_conn *c, int64_t deadline, shmrpc_buf *err)
{
    shmrpc__hello hello = {.proto = SHMRPC__WIRE_PROTO,
                           .info = *c->info,
                           .compression = allowed_compression,
                           .threshold = SHMRPC__WIRE_DEFAULT_THRESHOLD,
                           .max_msg = cap32(SHMRPC_DEFAULT_MAX_MSG)};
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
    if (rc == 0 && ack.auth.len) {
        shmrpc__msg_set(err, "the server requires authentication, which this client cannot do "
                             "yet");
        rc = SHMRPC_EPERM;
    }
    if (rc == 0) rc = shmrpc__hello_accept(&hello, &ack, c->map, err);
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
    int64_t limit = shmrpc__now_ns() + CONNECT_NS;
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

/* Reads frames until the answer to request id: the result into resp. */
static int await_answer(tcp_conn *c, uint64_t id, shmrpc_buf *resp, int64_t deadline,
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
        if (h.kind == SHMRPC__KIND_ERROR && h.request_id == 0) {
            rc = error_frame(c, err);
            conn_break(c);
            return rc;
        }
        bool answer = h.kind == SHMRPC__KIND_RESPONSE || h.kind == SHMRPC__KIND_ERROR;
        if (answer && h.request_id < id) continue; /* a call that timed out earlier */
        if (!answer || h.request_id != id) {
            conn_break(c);
            shmrpc__msg_set(err, "tcp://%s sent a %s frame for request %" PRIu64 " out of turn",
                            c->where, shmrpc__frame_kind_name(h.kind), h.request_id);
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
 * the request is sent rather than failing a call the server never saw. */
static bool server_left(const tcp_conn *c)
{
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
    if (c->fd >= 0 && c->answered == c->next_id && server_left(c)) conn_break(c);
    int rc = c->fd < 0 ? reconnect(c, deadline, err) : 0;
    uint64_t id = ++c->next_id;
    if (rc == 0) rc = send_request(c, sid, id, req, deadline, err);
    if (rc == 0) rc = await_answer(c, id, resp, deadline, err);
    if (rc != SHMRPC_ETIMEDOUT) c->answered = id;
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
                       const shmrpc_wait_opts *wait, uint32_t *map, shmrpc__conn **out,
                       shmrpc_buf *err)
{
    (void)wait;
    tcp_conn *c = calloc(1, sizeof *c);
    if (!c) return SHMRPC_ENOMEM;
    c->base.ops = &tcp_conn_ops;
    c->fd = -1;
    c->pid = getpid();
    c->info = info;
    c->map = map;
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
