/* SPDX-License-Identifier: MIT */
/* The limits a tcp:// worker keeps (docs/wire.md, "Limits"): its connections in their
 * handshake, counted in all and per address, the server's memory budget over all its
 * workers, finished connections per address, the progress a frame must make, and the log
 * line of a limit that refused or cut a peer; with the few steps on a connection that every
 * part of the worker takes (refuse it, bury it). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/tcp/tcp_int.h"
#include "core/wait.h"
#include "transport/tcp/tcp_server_int.h"

/* A frame being read, and answers that wait to go out, must keep moving at 2^FRAME_RATE_SHIFT
 * bytes a second (1 MiB/s), and may fall behind that by the progress timeout at most
 * (kept_up). */
#define FRAME_RATE_SHIFT 20

volatile sig_atomic_t shmrpc__tcp_told_to_stop; /* a forked worker's SIGTERM */

bool shmrpc__tcp_stopping(const worker *w)
{
    return shmrpc__tcp_told_to_stop || atomic_load(&w->l->stop);
}

void shmrpc__tcp_count_open(worker *w, int delta)
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

void shmrpc__tcp_shaking_add(worker *w, peer *p)
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
void shmrpc__tcp_shaking_drop(worker *w, peer *p)
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
uint32_t shmrpc__tcp_shaking_from(const worker *w, addr_key key)
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
peer *shmrpc__tcp_oldest_shaking(worker *w, const uint64_t *id)
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

uint64_t shmrpc__tcp_budget_used(const tcp_listener *l)
{
    uint64_t sum = 0;
    for (int i = 0; i < MAX_WORKERS; i++)
        sum += atomic_load_explicit(&l->load->charged[i], memory_order_relaxed);
    return sum;
}

void shmrpc__tcp_budget_charge(worker *w, size_t old, size_t now)
{
    if (old != now)
        atomic_fetch_add(&w->l->load->charged[row_of(w)], (uint64_t)now - (uint64_t)old);
}

/* Takes n bytes of the budget, or nothing (false) when that would pass it. The charge
 * comes first and the check after, so two workers never both pass on the same room. */
bool shmrpc__tcp_budget_take(worker *w, size_t n)
{
    shmrpc__tcp_budget_charge(w, 0, n);
    if (shmrpc__tcp_budget_used(w->l) <= w->l->cfg.budget) return true;
    shmrpc__tcp_budget_charge(w, n, 0);
    return false;
}

/* What a buffer costs the budget: nothing up to KEEP_BYTES, all of it above. */
size_t shmrpc__tcp_buf_cost(const shmrpc_buf *b)
{
    return b->cap > KEEP_BYTES ? b->cap : 0;
}

/* Brings the budget up to date with p's buffers after they grew or shrank. */
void shmrpc__tcp_peer_recharge(worker *w, peer *p)
{
    size_t now = shmrpc__tcp_buf_cost(&p->in) + shmrpc__tcp_buf_cost(&p->out);
    shmrpc__tcp_budget_charge(w, p->charged, now);
    p->charged = now;
}

/* Frees b when it is above KEEP_BYTES and empty: a connection between frames holds little. */
void shmrpc__tcp_buf_trim(shmrpc_buf *b)
{
    if (b->len == 0 && b->cap > KEEP_BYTES) {
        shmrpc_buf_destroy(b);
        shmrpc_buf_init(b);
    }
}

/* Grows b to exactly cap bytes (a large frame's size, not the next power of two). */
int shmrpc__tcp_buf_resize(shmrpc_buf *b, size_t cap)
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
void shmrpc__tcp_log_limit(worker *w, const char *fmt, ...)
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
void shmrpc__tcp_bury(worker *w, peer *p)
{
    p->next_dead = w->dead;
    w->dead = p;
}

void shmrpc__tcp_unbury(worker *w)
{
    while (w->dead) {
        peer *p = w->dead;
        w->dead = p->next_dead;
        free(p);
    }
}

size_t shmrpc__tcp_out_left(const peer *p)
{
    return p->out.len - p->out_off;
}

/* A progress deadline due moved on for n bytes that moved: 1 s later per MiB, and never
 * more than the progress timeout ahead of now. */
int64_t shmrpc__tcp_kept_up(const worker *w, int64_t due, size_t n, int64_t now)
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
void shmrpc__tcp_frame_begins(const worker *w, peer *p, int64_t now)
{
    p->frame_ns = now;
    p->in_due_ns = now + w->l->cfg.progress_ns;
}

void shmrpc__tcp_frame_came(const worker *w, peer *p, size_t n, int64_t now)
{
    p->in_due_ns = shmrpc__tcp_kept_up(w, p->in_due_ns, n, now);
}

/* Queues an ERROR frame with request id 0 and closes after it; while calls of p run, once
 * their answers are queued (a client moves the calls in flight at that ERROR elsewhere). */
void shmrpc__tcp_peer_refuse(peer *p, int status, const char *msg)
{
    if (p->running) {
        p->tail_status = status ? status : SHMRPC_EPROTO;
        snprintf(p->tail_msg, sizeof p->tail_msg, "%s", msg);
    } else {
        shmrpc__tcp_put_error_frame(&p->out, 0, 0, status, msg);
    }
    p->closing = true;
}

/* The buckets of fd's peer address in tcp_load.by_addr, its text into from. An IPv4 peer
 * is its address; an IPv6 peer its /64, which one holder has 2^64 addresses of. The
 * buckets are keyed with a secret seed: a peer cannot choose addresses that share one. */
addr_key shmrpc__tcp_addr_buckets(const tcp_listener *l, int fd, char *from, size_t n, uint64_t *id)
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
uint64_t shmrpc__tcp_addr_seed(void)
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
void shmrpc__tcp_addr_count(worker *w, addr_key key, int delta)
{
    for (int h = 0; h < 2; h++)
        atomic_fetch_add(&w->l->load->by_addr[row_of(w)][h][key.bucket[h]], (uint32_t)delta);
}

/* Counts a connection that finished its handshake from the address of key, unless it has
 * max_per_addr already: its count is the smaller of its two buckets' (addr_key). */
bool shmrpc__tcp_addr_admit(worker *w, addr_key key)
{
    tcp_load *t = w->l->load;
    shmrpc__tcp_addr_count(w, key, 1);
    uint64_t least = UINT64_MAX;
    for (int h = 0; h < 2; h++) {
        uint64_t sum = 0;
        for (int i = 0; i < MAX_WORKERS; i++)
            sum += atomic_load_explicit(&t->by_addr[i][h][key.bucket[h]], memory_order_relaxed);
        if (sum < least) least = sum;
    }
    if (least <= (uint64_t)w->l->cfg.max_per_addr) return true;
    shmrpc__tcp_addr_count(w, key, -1);
    return false;
}
