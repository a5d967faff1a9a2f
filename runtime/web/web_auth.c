/* SPDX-License-Identifier: MIT */
/* The management page's secret, sessions and limit on wrong secrets (web_auth.h). The
 * cryptography is libsodium's, as for the TCP transport's secret (runtime/src/transport/tcp/auth.c). */
#include "web_auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/codec.h>
#include <shmrpc/status.h>
#include <shmrpc/tcp.h>

int64_t web_auth_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int web_auth_init(web_auth *a, const char *path, char *err, size_t cap)
{
    memset(a, 0, sizeof *a);
    a->uid = (long)geteuid();
    pthread_mutex_init(&a->mu, NULL);
    if (sodium_init() < 0) {
        /* It fails only when it cannot open /dev/urandom or get random bytes. */
        snprintf(err, cap, "libsodium did not initialize (no random bytes)");
        return SHMRPC_ESYS(EIO);
    }
    unsigned char secret[SHMRPC_SECRET_MAX];
    size_t len = 0;
    int rc = shmrpc_secret_load(path, secret, sizeof secret, &len);
    if (rc) snprintf(err, cap, "%s", shmrpc_errmsg());
    if (rc == 0) crypto_generichash(a->hash, sizeof a->hash, secret, len, NULL, 0);
    sodium_memzero(secret, sizeof secret);
    return rc;
}

void web_auth_destroy(web_auth *a)
{
    pthread_mutex_destroy(&a->mu);
    sodium_memzero(a->hash, sizeof a->hash);
    sodium_memzero(a->sessions, sizeof a->sessions);
}

_Static_assert(WEB_AUTH_ID_LEN / 2 <= WEB_RANDOM_MAX, "a session id is made in one call");

/* errno is read where it was set; a read of no bytes, which getrandom does not do but which
 * would loop here, is SHMRPC_ESYS(EIO). */
int web_random_hex(char *out, size_t n_bytes)
{
    unsigned char r[WEB_RANDOM_MAX];
    if (n_bytes > sizeof r) return SHMRPC_EINVAL;
    size_t got = 0;
    while (got < n_bytes) {
        ssize_t n = getrandom(r + got, n_bytes - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return SHMRPC_ESYS(errno);
        if (n == 0) return SHMRPC_ESYS(EIO);
        got += (size_t)n;
    }
    sodium_bin2hex(out, 2 * n_bytes + 1, r, n_bytes);
    sodium_memzero(r, sizeof r);
    return 0;
}

/* The limit's key of the address text: IPv4 as ::ffff:a.b.c.d, IPv6 cut to its /64 (one
 * host's share of a network: it has all of them), anything else all zeros. */
static void wrongs_key(const char *from, unsigned char key[16])
{
    struct in_addr a4;
    struct in6_addr a6;
    memset(key, 0, 16);
    if (from && inet_pton(AF_INET, from, &a4) == 1) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &a4, 4);
    } else if (from && inet_pton(AF_INET6, from, &a6) == 1) {
        memcpy(key, &a6, 16);
        if (!IN6_IS_ADDR_V4MAPPED(&a6)) memset(key + 8, 0, 8);
    }
}

/* The slot of key and uid: its own; else a free one or one whose bucket has filled up
 * again (it holds nothing a fresh one would not); else the one quiet longest. A peer that
 * goes on sending is the last to go, so that a flood of other addresses does not give it
 * a fresh burst. Under mu. */
static web_wrongs *wrongs_slot(web_auth *a, const unsigned char key[16], long uid, int64_t now)
{
    web_wrongs *spare = NULL, *oldest = NULL;
    for (size_t i = 0; i < WEB_AUTH_PEERS; i++) {
        web_wrongs *e = &a->wrongs[i];
        if (e->used && e->uid == uid && memcmp(e->key, key, 16) == 0) return e;
        if (!e->used || e->full_ms <= now)
            spare = spare ? spare : e;
        else if (!oldest || e->last_ms < oldest->last_ms)
            oldest = e;
    }
    web_wrongs *w = spare ? spare : oldest;
    memcpy(w->key, key, 16);
    w->uid = uid;
    w->used = true;
    w->full_ms = now;
    return w;
}

/* Takes w's turn to compare a secret at now: 0, or when w is past its limit the ms until
 * its next turn (nothing taken: waiting is all it takes). Under mu. */
static int64_t wrongs_take(web_wrongs *w, int64_t now)
{
    w->last_ms = now;
    /* Full at now at the latest; this one spends an interval more, within the burst. */
    int64_t full = (w->full_ms > now ? w->full_ms : now) + WEB_AUTH_WRONG_EVERY_MS;
    int64_t over = full - now - (int64_t)WEB_AUTH_WRONG_BURST * WEB_AUTH_WRONG_EVERY_MS;
    if (over > 0) return over;
    w->full_ms = full;
    return 0;
}

int web_auth_login(web_auth *a, const void *given, size_t n, web_login_from from, int64_t now_ms,
                   char id[WEB_AUTH_ID_LEN + 1], int64_t *retry_ms)
{
    /* A turn is taken before comparing, so that threads racing for an address's last turn
     * compare one secret, not one each; the right secret gives it back. Root and the
     * page's own user can read the secret's file: limiting them guards nothing, and would
     * let a script of theirs with a stale secret keep their operator out. */
    bool limited = from.uid < 0 || (from.uid != 0 && from.uid != a->uid);
    unsigned char key[16];
    wrongs_key(from.addr, key);
    web_wrongs *w = NULL;
    if (retry_ms) *retry_ms = 0;
    if (limited) {
        pthread_mutex_lock(&a->mu);
        w = wrongs_slot(a, key, from.uid, now_ms);
        int64_t wait = wrongs_take(w, now_ms);
        if (wait) a->counts.limited++;
        pthread_mutex_unlock(&a->mu);
        if (wait) {
            if (retry_ms) *retry_ms = wait;
            return SHMRPC_EBUSY;
        }
    }
    unsigned char h[sizeof a->hash];
    crypto_generichash(h, sizeof h, given, n, NULL, 0);
    bool ok = sodium_memcmp(h, a->hash, sizeof h) == 0;
    sodium_memzero(h, sizeof h);
    pthread_mutex_lock(&a->mu);
    if (ok) {
        a->counts.ok++;
        /* The turn back, unless the slot went to another peer meanwhile. */
        if (w && w->used && w->uid == from.uid && memcmp(w->key, key, 16) == 0)
            w->full_ms -= WEB_AUTH_WRONG_EVERY_MS;
    } else {
        a->counts.wrong++;
    }
    pthread_mutex_unlock(&a->mu);
    if (!ok) return SHMRPC_EPERM;
    int rc = web_random_hex(id, WEB_AUTH_ID_LEN / 2);
    if (rc) return rc;
    pthread_mutex_lock(&a->mu);
    web_session *slot = &a->sessions[0];
    for (size_t i = 0; i < WEB_AUTH_SESSIONS; i++) {
        web_session *s = &a->sessions[i];
        bool spare = !s->id[0] || now_ms - s->created_ms >= WEB_AUTH_LIFETIME_MS;
        if (spare) {
            slot = s;
            break;
        }
        if (s->created_ms < slot->created_ms) slot = s; /* the oldest, when none is spare */
    }
    memcpy(slot->id, id, WEB_AUTH_ID_LEN + 1);
    slot->created_ms = now_ms;
    pthread_mutex_unlock(&a->mu);
    return 0;
}

/* The uid of the socket of family at src:sport connected to port dport, from the kernel's
 * table of TCP sockets: a dump filtered in the kernel by the two ports (bytecode of
 * inet_diag, as ss(8) writes for "sport = :P and dport = :Q"), then by the address here.
 * -1 when there is none, or the kernel will not say. */
static long socket_uid(int family, const void *src, size_t src_len, int sport, int dport)
{
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return -1;
    struct timeval tv = {1, 0}; /* the kernel answers at once; never hang a login on it */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
        struct nlattr bc_hdr;
        struct inet_diag_bc_op bc[8]; /* 4 comparisons, each an op and a port */
    } req;
    memset(&req, 0, sizeof req);
    req.nlh.nlmsg_len = sizeof req;
    req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.r.sdiag_family = (uint8_t)family;
    req.r.sdiag_protocol = IPPROTO_TCP;
    /* Full sockets only: a closed one waiting out its FIN (a time-wait socket) has no
     * owner, and the kernel says uid 0 for it. */
    req.r.idiag_states = 1u << TCP_ESTABLISHED | 1u << TCP_FIN_WAIT1 | 1u << TCP_FIN_WAIT2;
    req.bc_hdr.nla_type = INET_DIAG_REQ_BYTECODE;
    req.bc_hdr.nla_len = (uint16_t)(sizeof req.bc_hdr + sizeof req.bc);
    static const uint8_t codes[4] = {INET_DIAG_BC_S_GE, INET_DIAG_BC_S_LE, INET_DIAG_BC_D_GE,
                                     INET_DIAG_BC_D_LE};
    for (int i = 0; i < 4; i++) {
        /* Met: on to the next; not met: past the end, which rejects the socket. */
        req.bc[2 * i] = (struct inet_diag_bc_op){
            .code = codes[i], .yes = 8, .no = (uint16_t)(sizeof req.bc - 8 * (size_t)i + 4)};
        req.bc[2 * i + 1].no = (uint16_t)(i < 2 ? sport : dport);
    }
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    long uid = -1;
    if (sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel) !=
        (ssize_t)sizeof req) {
        close(fd);
        return -1;
    }
    for (bool done = false; !done;) {
        long buf[8192 / sizeof(long)];
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got <= 0) break;
        /* NLMSG_OK and NLMSG_NEXT, without their mix of signed and unsigned lengths. */
        size_t left = (size_t)got;
        for (const char *p = (const char *)buf; left >= sizeof(struct nlmsghdr);) {
            const struct nlmsghdr *h = (const struct nlmsghdr *)p;
            if (h->nlmsg_len < sizeof *h || h->nlmsg_len > left) break;
            if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
                done = true;
                break;
            }
            if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
                h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
                const struct inet_diag_msg *m = NLMSG_DATA(h);
                if (m->idiag_inode != 0 && ntohs(m->id.idiag_sport) == sport &&
                    ntohs(m->id.idiag_dport) == dport && memcmp(m->id.idiag_src, src, src_len) == 0)
                    uid = (long)m->idiag_uid;
            }
            size_t step = NLMSG_ALIGN(h->nlmsg_len);
            if (step >= left) break;
            p += step;
            left -= step;
        }
    }
    close(fd);
    return uid;
}

long web_auth_peer_uid(const char *addr, int port, int server_port)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (!addr || port <= 0 || port > 65535 || server_port <= 0 || server_port > 65535) return -1;
    if (inet_pton(AF_INET6, addr, &a6) == 1 && IN6_IS_ADDR_V4MAPPED(&a6)) {
        /* A page on :: sees an IPv4 peer so; the peer's own socket may be either. */
        if ((a6.s6_addr[12]) != 127) return -1;
        long uid = socket_uid(AF_INET, a6.s6_addr + 12, 4, port, server_port);
        return uid >= 0 ? uid : socket_uid(AF_INET6, &a6, 16, port, server_port);
    }
    if (inet_pton(AF_INET6, addr, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) ? socket_uid(AF_INET6, &a6, 16, port, server_port) : -1;
    if (inet_pton(AF_INET, addr, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127)
        return socket_uid(AF_INET, &a4, 4, port, server_port);
    return -1;
}

void web_auth_counts_get(web_auth *a, web_auth_counts *out)
{
    pthread_mutex_lock(&a->mu);
    *out = a->counts;
    out->peers = 0;
    for (size_t i = 0; i < WEB_AUTH_PEERS; i++)
        out->peers += a->wrongs[i].used;
    pthread_mutex_unlock(&a->mu);
}

/* The slot holding id (compared in constant time), or NULL. Under mu. */
static web_session *find(web_auth *a, const char *id)
{
    if (!id || strlen(id) != WEB_AUTH_ID_LEN) return NULL;
    web_session *found = NULL;
    for (size_t i = 0; i < WEB_AUTH_SESSIONS; i++)
        if (a->sessions[i].id[0] && sodium_memcmp(a->sessions[i].id, id, WEB_AUTH_ID_LEN) == 0)
            found = &a->sessions[i];
    return found;
}

bool web_auth_session_ok(web_auth *a, const char *id, int64_t now_ms)
{
    pthread_mutex_lock(&a->mu);
    web_session *s = find(a, id);
    bool ok = s && now_ms - s->created_ms < WEB_AUTH_LIFETIME_MS;
    if (s && !ok) sodium_memzero(s, sizeof *s);
    pthread_mutex_unlock(&a->mu);
    return ok;
}

void web_auth_logout(web_auth *a, const char *id)
{
    pthread_mutex_lock(&a->mu);
    web_session *s = find(a, id);
    if (s) sodium_memzero(s, sizeof *s);
    pthread_mutex_unlock(&a->mu);
}

/* --- the secret as JSON ----------------------------------------------------------------- */

/* How deep a login's JSON may nest: the object, and 32 levels of arrays and objects
 * beside the secret. Counted before jansson, which recurses once a level, sees it. */
#define LOGIN_JSON_DEPTH 33

/* Where a block goes once wiped: free, but for a test's release (web_auth_json_wipe). */
static void (*json_release)(void *) = free;

/* jansson's free once web_auth_json_wipe ran: the whole block wiped first. The blocks are
 * malloc's, so that what other code frees with free() (json_dumps' text) stays right. */
static void json_free_wiped(void *p)
{
    if (!p) return;
    sodium_memzero(p, malloc_usable_size(p));
    json_release(p);
}

void web_auth_json_wipe(void (*release)(void *))
{
    json_release = release ? release : free;
    json_set_alloc_funcs(malloc, json_free_wiped);
}

int web_auth_json_secret(const char *body, size_t len, char *out, size_t cap, size_t *n)
{
    if (shmrpc_json_check_depth(body, len, LOGIN_JSON_DEPTH) != 0) return SHMRPC_EINVAL;
    /* No json_error_t: its text quotes the body where jansson stopped, the secret too. A
     * member twice is refused (two secrets would be ambiguous); a NUL is a byte as any. */
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    json_t *v = json_object_get(o, "secret");
    size_t k = json_string_length(v);
    int rc = json_is_string(v) && k <= cap ? 0 : SHMRPC_EINVAL;
    if (rc == 0) {
        memcpy(out, json_string_value(v), k);
        *n = k;
    }
    json_decref(o);
    return rc;
}
