/* Status codes: 0 is success, a negative SHMRPC_E... is a failure. */
#ifndef SHMRPC_STATUS_H
#define SHMRPC_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

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
    SHMRPC_EPEERDIED = -11,  /* the peer died during the call */
    SHMRPC_EVERSION = -12,   /* a descriptor or peer of another version */
    SHMRPC_EBUSY = -13,      /* already in use, e.g. a second server for one address */
    SHMRPC_EPERM = -14,      /* not allowed */
    SHMRPC_EOWNERDEAD = -15, /* acquired, but its previous owner died holding it */
    /* An OS error keeps its errno: SHMRPC_ESYS(errno), errno = SHMRPC_ESYSERR - rc. */
    SHMRPC_ESYSERR = -0x10000,
};

#define SHMRPC_ESYS(e) (SHMRPC_ESYSERR - (e))
#define SHMRPC_IS_ESYS(rc) ((rc) < SHMRPC_ESYSERR)

/* Text for any status, including SHMRPC_ESYS(errno) and unknown codes. Never NULL;
 * the string is static and safe to use from any thread. */
const char *shmrpc_strerror(int rc);

#ifdef __cplusplus
}
#endif
#endif
