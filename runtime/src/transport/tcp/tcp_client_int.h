/* SPDX-License-Identifier: MIT */
/* The TCP transport's client side, shared by its files (tcp_client.c names them): an
 * endpoint and its connection, the client's endpoints, a call's search for one, and what
 * each file lends the others. */
#ifndef SHMRPC_SRC_TCP_CLIENT_INT_H
#define SHMRPC_SRC_TCP_CLIENT_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "transport/tcp/auth.h"
#include "transport/tcp/tcp_int.h"
#include "transport/tcp/tls.h"

typedef struct tcp_cstream tcp_cstream;

/* Streams closed early whose RESPONSE or ERROR has not come, remembered per connection: their
 * ITEMS still in transit are dropped when they come (client_stream.c). */
#define TCP_DEAD_STREAMS 8

/* The bytes of items a corked stream holds before it sends them (client_stream.c). */
#define TCP_HELD_MAX 16384

/* One endpoint of a client's address, and its connection (opened when a call first goes
 * there). */
typedef struct tcp_conn {
    char where[ADDR_MAX];
    struct sockaddr_storage addr;
    socklen_t addr_len;
    const shmrpc_service_info *info;
    const shmrpc__client_cfg *cfg;
    uint32_t *map;        /* this endpoint's: client method id -> its server's id */
    shmrpc__table *table; /* its server's table (own_table), refilled on every reconnect */
    pid_t pid;            /* the process that opened it */
    int fd;               /* -1 while broken */
    shmrpc__io io;        /* fd's bytes, plain or TLS */
    shmrpc__tls *tls;     /* the TLS settings, or NULL: plain */
    uint16_t comp;
    /* What the decoder is told was agreed for frames from the server: comp, and
     * SHMRPC__AGREED_STREAMS once revision 8 was (ITEMS frames). */
    uint16_t agreed;
    uint32_t threshold, peer_max;
    uint32_t proto;   /* the revision agreed (3: a blocking call says it is alone) */
    uint64_t next_id; /* the last request's id */
    /* Requests written whole on this connection whose answers have not been read: the calls
     * in flight, and those that gave up on theirs (a deadline passed, an asynchronous call
     * freed), which may still come, in any order. While one is owed, what the server sends
     * may be it: no look for the server's close (server_left), and no lone flag. */
    uint32_t owed;
    /* Bytes still to come of the answer of a call no longer in flight, skipped while a
     * request went out (meanwhile_check): read and let go before the next frame, and owed
     * until then. The bytes in c->in all came before it. */
    size_t skip;
    bool skip_answer;    /* what is skipped is an answer owed (not a dead stream's ITEMS) */
    int64_t answered_ns; /* when an answer was last read */
    int64_t rcvtimeo_ms; /* the socket's SO_RCVTIMEO: 0 none, -1 not set yet */
    shmrpc_buf out, in;  /* in: frames read, the one in hand first */
    size_t used;         /* bytes of the frame in hand at the front of in, or 0 */
    shmrpc_arena *arena;
    /* Its place among the client's endpoints (tcp_pool): */
    shmrpc__table own_table;
    int entry;       /* the list entry it was resolved from */
    bool seen;       /* found again by the latest resolution */
    int outstanding; /* calls in flight on it */
    int fails;       /* failures in a row: its backoff */
    /* Left out of the choice (it refused, failed or stalled) until a probe of it ends its
     * handshake, or until an answer comes on its connection; the probe starts at
     * eject_until (tend). */
    bool suspect;
    int64_t eject_until;
    bool drained;  /* the last call read a DRAIN: its server takes no new call */
    bool left;     /* the last call read an ERROR that closes the connection */
    char why[200]; /* why it was last left out */
    /* A connection being made (docs/wire.md, "Endpoint lists"): its step, DIAL_NONE once
     * made (fd >= 0) or when there is none (fd < 0). A call's attempt (race) lives within
     * the call; a probe (the endpoint is suspect) in the background, stepped by the calls
     * that follow (tend) and waited for by none unless every endpoint is left out. */
    int dial;
    bool probe;
    bool heard;           /* the server's process answered it (a HELLO_ACK, TLS's flight) */
    short dial_events;    /* what its socket waits for */
    int64_t dial_start;   /* when it began */
    int64_t dial_end;     /* when it gives up: connect_timeout_ms after it began */
    int64_t dial_patient; /* until then the next endpoint's attempt waits for it (race) */
    size_t sent;          /* bytes of out (a HELLO, an AUTH) sent */
    uint8_t nonce[SHMRPC__AUTH_LEN]; /* the HELLO's, with a secret */
    uint8_t proof[SHMRPC__AUTH_LEN]; /* the server's proof expected (DIAL_AUTH) */
    shmrpc__hello ack;               /* the server's HELLO_ACK, its table in arena */
    /* Asynchronous calls whose requests went out whole on this connection (newest first). */
    shmrpc__pending *inflight;
    int n_inflight;
    /* While a blocking call waits for its answer: its client's connection, whose cancels
     * end the wait (shmrpc__conn_cancelled); else NULL. */
    const shmrpc__conn *cancel_of;
    uint32_t gen;        /* raised by every break: a stream opened before one has ended */
    tcp_cstream *stream; /* the stream open on this connection, or NULL */
    /* Streams closed early whose answers are still owed (request ids): what comes of them
     * is dropped. A break forgets them, since nothing more comes on a new socket. When more
     * than TCP_DEAD_STREAMS were closed so, the oldest is forgotten and dead_lost set: then
     * ITEMS for an id sent here that nothing waits for are dropped until the answers owed
     * are only those of the calls in flight. */
    uint64_t dead[TCP_DEAD_STREAMS];
    int n_dead;
    bool dead_lost;
    /* A CANCEL that found no room when it was due: sent before the next REQUEST, so that it
     * always goes ahead of later calls (0: none). */
    uint64_t cancel_due;
    /* A WINDOW could not be sent: the server closed its side. What it sent before is still
     * read (its stream's end among it), and the end of stream breaks the connection there;
     * no WINDOW is tried again meanwhile. */
    bool deaf;
} tcp_conn;

/* A stream open on a tcp_conn (docs/wire.md, "Streams"; one per client at a time:
 * client.c). Its items come in ITEMS frames, read by whichever reader comes first (the
 * stream's recv, a wait for calls in flight, a request going out) and kept here. */
struct tcp_cstream {
    tcp_conn *c;        /* where it runs (NULL once that endpoint was dropped) */
    uint32_t gen;       /* c->gen at the open: a break since ends it (SHMRPC_EPEERDIED) */
    uint64_t rid;       /* the open's request id */
    uint32_t sid;       /* its server's method id: ITEMS must name it */
    int64_t deadline;   /* the whole stream's (CLOCK_MONOTONIC ns) */
    int64_t avail;      /* the credit the server still has: W - received + granted */
    uint32_t delivered; /* bytes of items delivered since the last WINDOW (4 + n each) */
    uint64_t received;  /* items read off the connection */
    uint64_t taken;     /* items delivered, for messages */
    shmrpc_buf items;   /* items read and not yet delivered, as ITEMS carries them (take_items) */
    size_t head;        /* the next item in items; the one before it was delivered in place */
    shmrpc_buf seen;    /* both ways: the item delivered, copied out of items */
    shmrpc_buf scratch; /* a compressed ITEMS body, decompressed */
    bool ended;         /* its end came (its answer, or a failure): status and msg */
    bool gone;          /* the client gave up on it (its CANCEL sent or due) */
    int status;
    shmrpc_buf msg;
    /* What the method streams (SHMRPC__STREAM_OUT, _IN). A stream of the client's items
     * (revision 9) sends them in ITEMS frames within send_avail, the server's window less what
     * it has not granted back with WINDOWs, and ends them with the last flag (done). When the
     * result is no stream, its RESPONSE carries the answer. */
    int ways;
    int64_t send_avail;
    uint64_t sent; /* items sent, for messages */
    bool done;     /* the last flag was sent, or was due */
    /* Corked (shmrpc_stream_cork), the items sent wait in held, their window already spent,
     * and go in one ITEMS frame at TCP_HELD_MAX bytes, the uncork, done, a wait, or a recv;
     * uncorked, held is empty but while an item is framed. */
    bool corked;
    shmrpc_buf held;
    uint64_t n_held;
    bool answered; /* its end came from its server: its handler returned, or it was refused */
    shmrpc_buf answer;
    /* A stream both ways may be sent on by one thread while another receives: each holds mu
     * for its turn, and lets go of it only to poll the connection, which one of them does at
     * a time (polling) while the other naps on cv until a frame may have come. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool polling;
};

/* The steps of a connection being made (tcp_conn.dial). */
enum { DIAL_NONE, DIAL_TCP, DIAL_TLS, DIAL_HELLO, DIAL_AUTH };

/* An entry of the address's list, as written: a host (a numeric address or a DNS name)
 * and a port. */
typedef struct tcp_entry {
    char host[256];
    char port[6];
    bool numeric;
} tcp_entry;

/* The connection a client holds: its endpoints, each with a connection of its own. */
typedef struct tcp_pool {
    shmrpc__conn base;
    const shmrpc_service_info *info;
    const shmrpc__client_cfg *cfg;
    uint32_t *map;        /* the client's: that of the endpoint connected last */
    shmrpc__table *table; /* likewise */
    pid_t pid;            /* the process that opened it */
    char *list;           /* WHERE as given, for messages */
    tcp_entry entries[SHMRPC_TCP_MAX_ENDPOINTS];
    int n_entries;
    bool names;                /* some entry is a DNS name */
    bool resolve_due;          /* an endpoint failed: resolve again soon */
    int64_t resolved_ns;       /* when the names were last resolved */
    struct tcp_lookup *lookup; /* a round of resolving them, under way */
    tcp_conn *eps[SHMRPC_TCP_MAX_ENDPOINTS];
    int n_eps;
    unsigned cursor;    /* where the next choice starts among equals (round robin) */
    int64_t tended_ns;  /* when the background work (tend) was last done */
    shmrpc_buf why;     /* the reasons of a call's failed tries */
    shmrpc_buf scratch; /* messages of the background work (tend) while calls wait */
    /* The first failure to make an endpoint's TLS context (a file that cannot be read, a
     * CA store that cannot be loaded): connect fails with it; a later round of resolving
     * leaves such an endpoint out. */
    int tls_rc;
    shmrpc_buf tls_why;
    bool ep_nomem;       /* an endpoint could not be made for lack of memory */
    tcp_cstream *stream; /* the stream open on one of the endpoints, or NULL */
} tcp_pool;

/* One call's (or the connect's) search for an endpoint that takes it. */
typedef struct tcp_search {
    int64_t deadline;
    bool room;      /* only endpoints with room for one more call in flight */
    uint64_t tried; /* endpoints it went to and did not run on, or could not connect to */
    int status;     /* the most telling failure of its tries */
    int attempts;   /* endpoints it went to, connected or not */
} tcp_search;

/* What one try of a call says of it (attempt, send_async): it ended there, or it cannot have
 * run there and may go elsewhere. */
enum { FATE_DONE, FATE_NOT_RUN };

/* A round of resolving the DNS names of a list (client_endpoints.c). */
typedef struct tcp_lookup tcp_lookup;

/* --- client_conn.c: one connection's bytes */
/* Whether c is connected: a socket, its handshake done. */
bool shmrpc__tcp_connected(const tcp_conn *c);
/* Whether a stream runs on c's connection (one a break ended does not): it holds the
 * connection as calls in flight do. */
bool shmrpc__tcp_streaming(const tcp_conn *c);
/* Lets go of a broken connection, or one being made, and of what was read from it: the next owes
 * nothing. */
void shmrpc__tcp_conn_break(tcp_conn *c);
/* c broke while doing what (errno, or TLS, says how): let go, err says why; the status. */
int shmrpc__tcp_broken(tcp_conn *c, shmrpc_buf *err, const char *what);
/* The largest frame body a connection with calls in flight reads: the client's maximum. */
uint32_t shmrpc__tcp_max_body(const tcp_conn *c);
/* Sends n bytes at p on c within deadline, reading what comes meanwhile; c is let go when it
 * fails. */
int shmrpc__tcp_send_all(tcp_conn *c, const uint8_t *p, size_t n, int64_t deadline,
                         shmrpc_buf *err);
/* Drops the last frame read from the front of c->in, keeping what came after it. */
void shmrpc__tcp_consume(tcp_conn *c);
/* Reads one frame (its body at most max) to the front of c->in, its header into h. */
int shmrpc__tcp_read_frame(tcp_conn *c, uint32_t max, shmrpc__frame_hdr *h, int64_t deadline,
                           shmrpc_buf *err);
/* Sends a REQUEST of method sid with request id on c within deadline, with its metadata
 * (len 0: none; left out for a server of revision 6 or less); then its answer is owed. */
int shmrpc__tcp_send_request(tcp_conn *c, uint32_t sid, uint64_t id, uint16_t flags,
                             shmrpc_bytes meta, shmrpc_bytes req, int64_t deadline,
                             shmrpc_buf *err);
/* Grants c's server n more bytes of items of the stream id (a WINDOW, revision 8), without
 * waiting for room: 0 once sent, 1 when not (no room now), or the status of the connection
 * that broke. */
int shmrpc__tcp_send_window(tcp_conn *c, uint64_t id, uint32_t n, shmrpc_buf *err);
/* Tells c's server that the client gave up on request id (a CANCEL, from revision 5), without
 * waiting for room: 0 once sent, 1 when not (a server of revision 4 or less, c not
 * connected, or no room now), or the status of the connection that broke. */
int shmrpc__tcp_send_cancel(tcp_conn *c, uint64_t id, shmrpc_buf *err);
/* Reads frames until the answer to request id of method sid: the result into resp. */
int shmrpc__tcp_await_answer(tcp_conn *c, uint32_t sid, uint64_t id, shmrpc_buf *resp,
                             int64_t deadline, shmrpc_buf *err);
/* Takes p off the connection it waits on. */
void shmrpc__tcp_pend_unlink(tcp_conn *c, shmrpc__pending *p);
/* Ends the asynchronous call p with status. */
void shmrpc__tcp_pend_done(shmrpc__pending *p, int status);
/* Fails every call in flight on c, whose requests were written whole: they may have run. */
void shmrpc__tcp_fail_inflight(tcp_conn *c, int status, const char *why);
/* Fails the calls in flight on c, let go while something was sent (rc, err). */
void shmrpc__tcp_fail_sending(tcp_conn *c, int rc, const shmrpc_buf *err);
/* A read of c's frames failed with rc, which err says, into why (cap bytes): c is broken,
 * its calls in flight fail, and p resolves its names again. The status they fail with:
 * SHMRPC_EPROTO when the server broke the protocol, else SHMRPC_EPEERDIED. */
int shmrpc__tcp_read_broke(tcp_pool *p, tcp_conn *c, int rc, const shmrpc_buf *err, char *why,
                           size_t cap);

/* --- client_dial.c: making a connection */
/* Begins a dial of c: a non-blocking connect, given up at end; c->dial set, or a status with
 * err. */
int shmrpc__tcp_dial_begin(tcp_conn *c, int64_t now, int64_t end, shmrpc_buf *err);
/* Why c's dial, at its step now, has not ended after its time (ms), into err. */
void shmrpc__tcp_dial_late(const tcp_conn *c, int64_t ms, shmrpc_buf *err);
/* Moves c's dial on without waiting: 0 once made, the events its socket waits for, or a status (c
 * let go). */
int shmrpc__tcp_dial_step(tcp_conn *c, short revents, int64_t now, shmrpc_buf *err);

/* --- client_endpoints.c: the endpoints of an address */
/* Frees an endpoint, failing the calls in flight on it. */
void shmrpc__tcp_ep_free(tcp_conn *c);
/* Frees a round of resolving and its results (not a request that cannot be cancelled). */
void shmrpc__tcp_lookup_free(tcp_lookup *lk);
/* The first resolution, at connect: DNS names within the connect timeout. */
int shmrpc__tcp_resolve(tcp_pool *p, shmrpc_buf *err);
/* Resolves the names again in the background, when due. */
void shmrpc__tcp_maybe_resolve(tcp_pool *p, int64_t now, shmrpc_buf *scratch);
/* Parses the address where, tcp://ENTRY[,ENTRY...], into p->entries. */
int shmrpc__tcp_parse_list(tcp_pool *p, const char *where, shmrpc_buf *err);

/* --- client_choose.c: choosing an endpoint */
/* The endpoint for the next try, not in mask (its index; -1 when none is left). */
int shmrpc__tcp_choose(tcp_pool *p, uint64_t mask, bool room, bool *full);
/* A call's deadline passed waiting on c: c is left out as a host that stalls, while another
 * endpoint takes calls. */
void shmrpc__tcp_stalled(tcp_pool *p, tcp_conn *c, int64_t now, const char *why);
/* Before a call goes to c: a connection whose server closed it or drains is let go. */
void shmrpc__tcp_refresh(tcp_conn *c, int64_t now, shmrpc_buf *scratch);
/* Connects a call to an endpoint, beginning with i (Happy Eyeballs): the endpoint, its index in
 * *won_at; NULL when none is left or the deadline passed. */
tcp_conn *shmrpc__tcp_race(tcp_pool *p, int i, tcp_search *s, int *won_at, shmrpc_buf *err);
/* The background work of the endpoints, without waiting: probes begun and moved on. */
void shmrpc__tcp_tend(tcp_pool *p, int64_t now, shmrpc_buf *scratch);
/* Why a call found no endpoint to try: each endpoint left out, and for how long, into why. */
void shmrpc__tcp_left_out(tcp_pool *p, int64_t now, shmrpc_buf *why);

/* --- client_route.c: what any reader of a connection meets (below the readers) */
/* The answer of one of c's requests was read. */
void shmrpc__tcp_answer_read(tcp_conn *c);
/* The body of the frame in hand at the front of c->in. */
shmrpc_bytes shmrpc__tcp_frame_body(const tcp_conn *c);
/* An ERROR frame's status, its message into err. */
int shmrpc__tcp_error_frame(tcp_conn *c, shmrpc_buf *err);
/* Whether id is a stream closed early on c, whose answer is still owed. */
bool shmrpc__tcp_dead_stream(const tcp_conn *c, uint64_t id);
/* Forgets the stream closed early id (if it is one): its answer came. */
void shmrpc__tcp_dead_forget(tcp_conn *c, uint64_t id);
/* Ends st with status (0: its end came) and why, once. */
void shmrpc__tcp_stream_set_end(tcp_cstream *st, int status, const char *why);
/* What the frame in hand on c (header h), an ITEMS frame or an answer, is to the streams:
 * 1 taken (the open stream's items kept, or its end recorded), 2 dropped (what came of a
 * stream closed early; its answer ends what is owed of it), 0 not a stream's; SHMRPC_EPROTO
 * with err for ITEMS that belong to no stream or break its rules (the open stream ends
 * with it, and the caller breaks c). */
int shmrpc__tcp_stream_route(tcp_conn *c, const shmrpc__frame_hdr *h, shmrpc_buf *err);
/* c's server takes no more calls (a DRAIN, or an ERROR that closes, in h): the stream open
 * on c, if any, ends (it did not run, when no item came). */
void shmrpc__tcp_stream_left(tcp_conn *c, const shmrpc__frame_hdr *h, const shmrpc_buf *why);

/* --- client_stream.c: a stream (shmrpc__conn_ops.stream_open, stream_recv, stream_end) */
int shmrpc__tcp_stream_open(shmrpc__conn *base, uint32_t sid, int ways, shmrpc_bytes req,
                            int64_t timeout_ms, shmrpc_buf *err);
int shmrpc__tcp_stream_recv(shmrpc__conn *base, shmrpc_buf *item, shmrpc_buf *err);
int shmrpc__tcp_stream_view(shmrpc__conn *base, shmrpc_bytes *item, shmrpc_buf *err);
void shmrpc__tcp_stream_end(shmrpc__conn *base);
/* A stream of the client's items (revision 9): shmrpc__conn_ops.stream_send, stream_done,
 * stream_cork. */
int shmrpc__tcp_stream_send(shmrpc__conn *base, const void *item, size_t n, shmrpc_buf *err);
void shmrpc__tcp_stream_done(shmrpc__conn *base);
int shmrpc__tcp_stream_cork(shmrpc__conn *base, bool on, shmrpc_buf *err);

/* --- client_call.c: a blocking call, and the search for an endpoint that a stream's open
 * shares with it */
/* The blocking call (shmrpc__conn_ops.call). */
int shmrpc__tcp_call(shmrpc__conn *base, uint32_t sid, shmrpc_bytes req, shmrpc_buf *resp,
                     int64_t timeout_ms, shmrpc_buf *err);
/* The index in p's method table of the client's method id sid; -1 when it has none. */
int64_t shmrpc__tcp_method_index(const tcp_pool *p, uint32_t sid);
/* The try of endpoint i ended with rc, which err says, and what it carried did not run
 * there: it is not tried again in search s, and err joins the reasons in p->why. */
void shmrpc__tcp_try_failed(tcp_pool *p, tcp_search *s, int i, int rc, const shmrpc_buf *err);
/* The status of a search s that no endpoint ended, after tries, with err saying why: what
 * ("call", "stream") did not run, and, when nothing was sent, "the <what> <unsent>". */
int shmrpc__tcp_none_took(tcp_pool *p, const tcp_search *s, int tries, const char *what,
                          const char *unsent, shmrpc_buf *err);

/* --- client_inflight.c: many calls in flight */
/* Starts an asynchronous call (shmrpc__conn_ops.start). */
int shmrpc__tcp_start(shmrpc__conn *base, shmrpc__pending *k, shmrpc_buf *err);
/* One round of the asynchronous calls, waiting until deadline at most
 * (shmrpc__conn_ops.progress). */
void shmrpc__tcp_progress(shmrpc__conn *base, int64_t deadline);
/* Acts on the frame in hand on c, the endpoint at index in p: an answer, a stream's frame, a
 * PING, a DRAIN. A frame that no correct server sends breaks c and fails what is in flight
 * on it with SHMRPC_EPROTO. */
void shmrpc__tcp_on_frame(tcp_pool *p, tcp_conn *c, int index, const shmrpc__frame_hdr *h,
                          shmrpc_buf *err);
/* Takes an asynchronous call off its connection (shmrpc__conn_ops.abandon), and, to cancel
 * it, tells its server first (a CANCEL: shmrpc__conn_ops.cancel). */
void shmrpc__tcp_abandon(shmrpc__conn *base, shmrpc__pending *k);
void shmrpc__tcp_cancel(shmrpc__conn *base, shmrpc__pending *k);

#endif
