/* SPDX-License-Identifier: MIT */
/* shmrpc_strerror and shmrpc_status_name: the text and the name of every status,
 * including OS errors carried as SHMRPC_ESYS(errno); and shmrpc_errmsg: the calling
 * thread's message of its last failure (the rule is in status.h). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

/* Every status's name and text, in one table. */
static const struct {
    const char *name, *text;
} statuses[] = {
    [-SHMRPC_OK] = {"SHMRPC_OK", "success"},
    [-SHMRPC_EINVAL] = {"SHMRPC_EINVAL", "invalid argument"},
    [-SHMRPC_ENOMEM] = {"SHMRPC_ENOMEM", "out of memory"},
    [-SHMRPC_ETIMEDOUT] = {"SHMRPC_ETIMEDOUT", "timed out"},
    [-SHMRPC_ENOENT] = {"SHMRPC_ENOENT", "no such address, service or method"},
    [-SHMRPC_EPROTO] = {"SHMRPC_EPROTO", "protocol error"},
    [-SHMRPC_EHANDLER] = {"SHMRPC_EHANDLER", "the handler failed"},
    [-SHMRPC_ETOOBIG] = {"SHMRPC_ETOOBIG", "message too large"},
    [-SHMRPC_EMISMATCH] = {"SHMRPC_EMISMATCH", "client and server method tables differ"},
    [-SHMRPC_ECLOSED] = {"SHMRPC_ECLOSED", "closed"},
    [-SHMRPC_EUNAVAIL] = {"SHMRPC_EUNAVAIL", "unavailable"},
    [-SHMRPC_EPEERDIED] = {"SHMRPC_EPEERDIED", "the peer died"},
    [-SHMRPC_EVERSION] = {"SHMRPC_EVERSION", "version mismatch"},
    [-SHMRPC_EBUSY] = {"SHMRPC_EBUSY", "already in use"},
    [-SHMRPC_EPERM] = {"SHMRPC_EPERM", "not allowed"},
    [-SHMRPC_EOWNERDEAD] = {"SHMRPC_EOWNERDEAD", "the previous owner died holding it"},
    [-SHMRPC_ESTOLEN] = {"SHMRPC_ESTOLEN", "taken from a live holder"},
    [-SHMRPC_ECORRUPT] = {"SHMRPC_ECORRUPT", "shared state written over"},
    [-SHMRPC_ECUT] = {"SHMRPC_ECUT", "the segment was cut (truncated) under its holders"},
    [-SHMRPC_ECANCELLED] = {"SHMRPC_ECANCELLED", "cancelled by its client"},
};

#define N_STATUSES ((int)(sizeof statuses / sizeof statuses[0]))

const char *shmrpc_strerror(int rc)
{
    if (SHMRPC_IS_ESYS(rc)) {
        /* strerrordesc_np (glibc 2.32) returns a static string and is thread-safe,
         * unlike strerror; NULL for an errno it does not know. */
        const char *s = strerrordesc_np(SHMRPC_ESYSERR - rc);
        return s ? s : "unknown error";
    }
    if (rc > 0 || rc <= -N_STATUSES) return "unknown error";
    return statuses[-rc].text;
}

const char *shmrpc_status_name(int rc)
{
    if (SHMRPC_IS_ESYS(rc)) return "SHMRPC_ESYS";
    if (rc > 0 || rc <= -N_STATUSES) return "SHMRPC_EUNKNOWN";
    return statuses[-rc].name;
}

bool shmrpc__status_known(int rc)
{
    if (SHMRPC_IS_ESYS(rc)) return rc > SHMRPC_ESYS(4096); /* errno values stay below 4096 */
    return rc < 0 && rc > -N_STATUSES;
}

/* --- the calling thread's message ---------------------------------------------------- */

/* The status of the thread's last failure (0: none since the last begin) and its message.
 * The buffer grows to the largest message the thread has had and is kept, so steady
 * failures do not allocate; it is freed when the thread ends. */
struct thread_err {
    int rc;
    bool registered; /* with the key whose destructor frees msg */
    shmrpc_buf msg;
};

static _Thread_local struct thread_err tls;
static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static bool key_made;

static void free_err(void *p)
{
    struct thread_err *e = p;
    shmrpc_buf_destroy(&e->msg);
    e->registered = false;
}

static void make_key(void)
{
    key_made = pthread_key_create(&key, free_err) == 0;
}

static shmrpc_buf *thread_buf(void)
{
    if (!tls.registered) {
        pthread_once(&key_once, make_key);
        /* Without a key the buffer outlives its thread: a leak, not a fault. */
        tls.registered = !key_made || pthread_setspecific(key, &tls) == 0;
    }
    return &tls.msg;
}

const char *shmrpc_errmsg(void)
{
    if (tls.rc == 0) return "";
    return tls.msg.len ? shmrpc__msg_get(&tls.msg) : shmrpc_strerror(tls.rc);
}

shmrpc_buf *shmrpc__err_begin(void)
{
    shmrpc_buf *m = thread_buf();
    tls.rc = 0;
    shmrpc__msg_clear(m);
    return m;
}

int shmrpc__err_end(int rc)
{
    tls.rc = rc < 0 ? rc : 0;
    return rc;
}

int shmrpc__err_vset(int rc, const char *fmt, va_list ap)
{
    shmrpc__msg_vset(thread_buf(), fmt, ap);
    tls.rc = rc;
    return rc;
}

int shmrpc__err_set(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    shmrpc__err_vset(rc, fmt, ap);
    va_end(ap);
    return rc;
}

int shmrpc__err_code(int rc)
{
    shmrpc__msg_clear(thread_buf());
    tls.rc = rc;
    return rc;
}
