/* SPDX-License-Identifier: MIT */
/* The management page's shared secret (docs/web.md, "The secret"): a page with a
 * secret_file admits whoever proved the secret at POST /login, by a session cookie. This
 * keeps a hash of the secret, the sessions and the limit on wrong secrets per source
 * address, reads the secret out of a JSON login (jansson, made to wipe what it frees), and
 * makes the random ids (web.c's token too); web_login.c speaks HTTP. */
#ifndef SHMRPC_SUPERVISOR_WEB_AUTH_H
#define SHMRPC_SUPERVISOR_WEB_AUTH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/buf.h>

/* Sessions kept at once: a login past them ends the oldest. */
#define WEB_AUTH_SESSIONS 64
/* A session's lifetime from its login. */
#define WEB_AUTH_LIFETIME_MS ((int64_t)12 * 3600 * 1000)
/* The limit on wrong secrets (docs/web.md, "Wrong secrets"): each peer (a source address,
 * and for a local one the user owning its socket) may have WEB_AUTH_WRONG_BURST secrets
 * compared in a row, then one every WEB_AUTH_WRONG_EVERY_MS; past that an attempt is
 * answered 429 without being compared, the right secret too, so that guessing goes no
 * faster. A right one gives its turn back. A local peer of root or of the page's own user,
 * who can read the secret's file, is never limited. */
#define WEB_AUTH_WRONG_BURST 5
#define WEB_AUTH_WRONG_EVERY_MS 1000
/* The peers the limit keeps at once: a new one past them takes the place of one whose
 * count has run out, else of the one whose last wrong secret is the oldest. */
#define WEB_AUTH_PEERS 256
/* A session id: 32 random bytes as hex digits. */
#define WEB_AUTH_ID_LEN 64

typedef struct web_session {
    char id[WEB_AUTH_ID_LEN + 1]; /* "": a free slot */
    int64_t created_ms;           /* web_auth_now_ms() at its login */
} web_session;

/* A peer's compared secrets: a token bucket kept as the one time at which it is full
 * again (the generic cell rate algorithm), so that a slot is 48 bytes and a bucket that
 * has filled up needs no sweep to be free. */
typedef struct web_wrongs {
    unsigned char key[16]; /* the address as IPv6 (IPv4 as ::ffff:a.b.c.d), cut to its /64 */
    long uid;              /* the local user owning the peer's socket; -1: not local, unknown */
    bool used;
    int64_t full_ms; /* when its bucket is full again: each compared secret adds the interval */
    int64_t last_ms; /* its last attempt: the oldest goes first from a full table */
} web_wrongs;

/* Login attempts since the page started, for /metrics. */
typedef struct web_auth_counts {
    uint64_t ok, wrong, limited; /* limited: past its peer's limit, not compared (429) */
    size_t peers;                /* slots of the limit in use, at most WEB_AUTH_PEERS */
} web_auth_counts;

/* Shared by the page's threads: hash is fixed once it runs; the rest is under mu. */
typedef struct web_auth {
    unsigned char hash[32]; /* BLAKE2b-256 of the secret: the secret itself is not kept */
    long uid;               /* the page's effective uid: its local peers are not limited */
    pthread_mutex_t mu;
    web_session sessions[WEB_AUTH_SESSIONS];
    web_wrongs wrongs[WEB_AUTH_PEERS];
    web_auth_counts counts; /* peers not kept up to date: web_auth_counts_get counts */
} web_auth;

/* Reads the secret in path with shmrpc_secret_load (owner, mode 0600, 16 to 256 bytes)
 * and keeps its hash; the bytes read are wiped. 0, or the loader's status with a message
 * in err (cap bytes). */
int web_auth_init(web_auth *a, const char *path, char *err, size_t cap);

/* Wipes the hash and the sessions; also after a web_auth_init that failed. */
void web_auth_destroy(web_auth *a);

/* CLOCK_BOOTTIME in ms: a suspended machine's hours count against a session too. */
int64_t web_auth_now_ms(void);

/* Where a login comes from: the peer's address as civetweb gives it (IPv4 or IPv6 text;
 * anything else is one address of its own), and the uid owning the peer's socket when it
 * is on this machine (web_auth_peer_uid), else -1. */
typedef struct web_login_from {
    const char *addr;
    long uid;
} web_login_from;

/* Compares given (n bytes), sent from from, with the secret in constant time (both hashed,
 * so that no length shows), unless from is past its limit: then nothing is compared. On
 * success makes a session, ending the oldest when the table is full, and writes its id
 * (NUL-terminated) to id; a wrong one is counted against from. 0; SHMRPC_EPERM: not the
 * secret; SHMRPC_EBUSY: from is past its limit, not compared: *retry_ms (when not NULL)
 * until its next attempt is within it; SHMRPC_ESYS(...): getrandom failed, no session. */
int web_auth_login(web_auth *a, const void *given, size_t n, web_login_from from, int64_t now_ms,
                   char id[WEB_AUTH_ID_LEN + 1], int64_t *retry_ms);

/* The uid owning the TCP socket on this machine at addr (text, as civetweb gives it) and
 * port that is connected to server_port, asked of the kernel (sock_diag, as ss(8) does),
 * or -1: addr is not a loopback address (a peer elsewhere, or on another of this
 * machine's addresses, is known by its address alone), or no such socket is open. */
long web_auth_peer_uid(const char *addr, int port, int server_port);

/* The counts of login attempts, and the limit's slots in use. */
void web_auth_counts_get(web_auth *a, web_auth_counts *out);

/* The string member "secret" of the JSON object body (len bytes), read with jansson and
 * copied into out (cap bytes, which the body's length always suffices for) with its
 * length in *n: 0, or SHMRPC_EINVAL when body is not a JSON object (UTF-8, nesting at most
 * 33 deep, no member twice) with such a string. The copies jansson makes are wiped as it
 * frees them once web_auth_json_wipe ran, so that the caller can wipe every other one. */
int web_auth_json_secret(const char *body, size_t len, char *out, size_t cap, size_t *n);

/* Makes jansson wipe every block it frees, in the whole process (json_set_alloc_funcs):
 * the page's process calls it once at its start, before any thread, so that no copy of a
 * secret that web_auth_json_secret read stays in freed memory. jansson's blocks stay
 * malloc's, so that other code of the process is unaffected. release: where a wiped block
 * goes, free when NULL (a test's, to look at the blocks instead). */
void web_auth_json_wipe(void (*release)(void *));

/* The most bytes web_random_hex makes at once. */
#define WEB_RANDOM_MAX 32

/* n_bytes (at most WEB_RANDOM_MAX) from getrandom as 2 * n_bytes lowercase hex digits
 * and a NUL in out; the bytes are wiped. 0; SHMRPC_EINVAL: n_bytes too large;
 * SHMRPC_ESYS(...): getrandom failed (a read of no bytes, which it does not do,
 * SHMRPC_ESYS(EIO)), out untouched. */
int web_random_hex(char *out, size_t n_bytes);

/* Whether id (NUL-terminated, NULL fine) is a live session; an expired one is dropped. */
bool web_auth_session_ok(web_auth *a, const char *id, int64_t now_ms);

/* Drops the session id, when there is one. */
void web_auth_logout(web_auth *a, const char *id);

#endif
