/* SPDX-License-Identifier: MIT */
/* The management page's shared secret (docs/web.md, "The secret"): a page with a
 * secret_file admits whoever proved the secret at POST /login, by a session cookie. This
 * keeps a hash of the secret, the sessions and the login throttle, reads the secret out
 * of a JSON login without copies, and makes the random ids (web.c's token too); web.c
 * speaks HTTP. */
#ifndef SHMRPC_SUPERVISOR_WEB_AUTH_H
#define SHMRPC_SUPERVISOR_WEB_AUTH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/buf.h>

/* Sessions kept at once: a login past them ends the oldest. */
#define WEB_AUTH_SESSIONS 64
/* A session's lifetime from its login. */
#define WEB_AUTH_LIFETIME_MS ((int64_t)12 * 3600 * 1000)
/* At most one login attempt is compared with the secret in this long. */
#define WEB_AUTH_THROTTLE_MS 1000
/* A session id: 32 random bytes as hex digits. */
#define WEB_AUTH_ID_LEN 64

typedef struct web_session {
    char id[WEB_AUTH_ID_LEN + 1]; /* "": a free slot */
    int64_t created_ms;           /* web_auth_now_ms() at its login */
} web_session;

/* Shared by the page's threads: hash is fixed once it runs, sessions are under mu, and
 * last_try_ms is claimed with a compare-and-swap. */
typedef struct web_auth {
    unsigned char hash[32]; /* BLAKE2b-256 of the secret: the secret itself is not kept */
    pthread_mutex_t mu;
    web_session sessions[WEB_AUTH_SESSIONS];
    _Atomic int64_t last_try_ms; /* when the attempt being compared, or the last failed
                                  * one, began: the next is compared 1 s after it */
} web_auth;

/* Reads the secret in path with shmrpc_secret_load (owner, mode 0600, 16 to 256 bytes)
 * and keeps its hash; the bytes read are wiped. 0, or the loader's status with a message
 * in err (cap bytes). */
int web_auth_init(web_auth *a, const char *path, char *err, size_t cap);

/* Wipes the hash and the sessions; also after a web_auth_init that failed. */
void web_auth_destroy(web_auth *a);

/* CLOCK_BOOTTIME in ms: a suspended machine's hours count against a session too. */
int64_t web_auth_now_ms(void);

/* Compares given (n bytes) with the secret in constant time (both hashed, so that no
 * length shows), unless the throttle refuses it first; on success makes a session, ending
 * the oldest when the table is full, and writes its id (NUL-terminated) to id. 0;
 * SHMRPC_EPERM: not the secret; SHMRPC_EBUSY: another attempt was compared less than a
 * second ago, not this one; SHMRPC_ESYS(...): getrandom failed, no session. */
int web_auth_login(web_auth *a, const void *given, size_t n, int64_t now_ms,
                   char id[WEB_AUTH_ID_LEN + 1]);

/* The string member "secret" of the JSON object body (len bytes), decoded into out (cap
 * bytes, which the body's length always suffices for) with its length in *n: 0, or
 * SHMRPC_EINVAL when body is not a JSON object with one such string. It allocates
 * nothing and copies the secret nowhere but out, so that the caller can wipe every copy
 * (jansson would leave some in freed memory). out may hold part of it even on failure. */
int web_auth_json_secret(const char *body, size_t len, char *out, size_t cap, size_t *n);

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
