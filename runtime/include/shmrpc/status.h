/* SPDX-License-Identifier: MIT */
/* Status codes, and the one rule by which the public API reports its errors.
 *
 * Every public function that can fail returns an int: 0 (or a count, where its header
 * says so) on success, a negative SHMRPC_E... on failure. The status says what kind of
 * failure it was, and shmrpc_strerror() names it. The details (the method whose
 * fingerprint differs, the process that holds an address, the segment's owner and mode,
 * a handler's own message) go to the calling thread: shmrpc_errmsg() returns them, and a
 * failure with nothing to add leaves shmrpc_strerror(rc) there. This holds alike for
 * calls on a handle (a client, a server, a lock), for those that fail before a handle
 * exists (shmrpc_client_new, shmrpc_server_new, shmrpc_lock_open) and for those that
 * take none (shmrpc_stats_read, shmrpc_secret_load, shmrpc_lock_unlink).
 *
 * The message belongs to the thread, not to a handle, so that a lock shared by the
 * threads of a process and a function without a handle report alike, and no handle has
 * to exist for a failure to open one (libgit2's git_error_last; sqlite's per-handle
 * sqlite3_errmsg needs a handle even from a failed open). Two exceptions, each for a
 * reason: the async-signal-safe shmrpc_server_set_workers and shmrpc_server_stop leave
 * the message alone, so that a signal handler does not overwrite the message of the
 * code it interrupted; and the helpers for generated code (codec.h, buf.h, arena.h),
 * which run per field, keep the reason in the reader or buffer they are given (or return
 * NULL), and the generated stub turns it into the call's message. docs/errors.md has
 * examples. */
#ifndef SHMRPC_STATUS_H
#define SHMRPC_STATUS_H

#include <shmrpc/decls.h>

SHMRPC_BEGIN_DECLS

enum {
    SHMRPC_OK = 0,
    SHMRPC_EINVAL = -1,      /* invalid argument, or a body that does not decode */
    SHMRPC_ENOMEM = -2,      /* out of memory */
    SHMRPC_ETIMEDOUT = -3,   /* the call's deadline passed */
    SHMRPC_ENOENT = -4,      /* no such address, service or method */
    SHMRPC_EPROTO = -5,      /* the peer broke the protocol */
    SHMRPC_EHANDLER = -6,    /* the handler failed; its message travels with the status */
    SHMRPC_ETOOBIG = -7,     /* a message above the configured maximum */
    SHMRPC_EMISMATCH = -8,   /* client and server were built from different .svc files */
    SHMRPC_ECLOSED = -9,     /* the handle or connection is closed */
    SHMRPC_EUNAVAIL = -10,   /* the server is not there, or went away */
    SHMRPC_EPEERDIED = -11,  /* the peer died during the call: it may have run */
    SHMRPC_EVERSION = -12,   /* a descriptor or peer of another version */
    SHMRPC_EBUSY = -13,      /* already in use, e.g. a second server for one address */
    SHMRPC_EPERM = -14,      /* not allowed */
    SHMRPC_EOWNERDEAD = -15, /* acquired, but its previous owner died holding it */
    SHMRPC_ESTOLEN = -16,    /* acquired by taking it from a live holder (a lock's steal) */
    /* A shared segment holds a state that no operation leads to (it was written over) and
     * that the library cannot repair on its own: e.g. a queue's head or tail out of range
     * (shmrpc_queue_repair). */
    SHMRPC_ECORRUPT = -17,
    /* A queue's or map's segment was cut (its file truncated) under its holders: what it
     * held is gone; close the handle and open it again (with create, to make it anew). */
    SHMRPC_ECUT = -18,
    /* The client cancelled the call (shmrpc_client_cancel, shmrpc_call_cancel); the message
     * says whether it may have run. A handler learns so from shmrpc_ctx_cancelled. */
    SHMRPC_ECANCELLED = -19,
    /* An OS error keeps its errno: SHMRPC_ESYS(errno), errno = SHMRPC_ESYSERR - rc. */
    SHMRPC_ESYSERR = -0x10000,
};

#define SHMRPC_ESYS(e) (SHMRPC_ESYSERR - (e))
#define SHMRPC_IS_ESYS(rc) ((rc) < SHMRPC_ESYSERR)

/* Text for any status, including SHMRPC_ESYS(errno) and unknown codes. Never NULL;
 * the string is static and safe to use from any thread. */
const char *shmrpc_strerror(int rc);

/* Why the calling thread's last failed shmrpc call failed, e.g. "no server at
 * shm://echo_serv" or "service 'Echo': no handler for method 'add'"; "" when none has.
 * Read it right after the failure: any later shmrpc call on the same thread may replace
 * or clear it (shmrpc_strerror does not). Never NULL; valid until then. */
const char *shmrpc_errmsg(void);

/* The status's name as status.h spells it ("SHMRPC_EINVAL"): "SHMRPC_ESYS" for any OS
 * error, "SHMRPC_EUNKNOWN" for a code it does not know. Static, like shmrpc_strerror's. */
const char *shmrpc_status_name(int rc);

SHMRPC_END_DECLS
#endif
