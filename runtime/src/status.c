/* shmrpc_strerror: the text of every status, including OS errors carried as
 * SHMRPC_ESYS(errno). */
#include <string.h>

#include "internal.h"

static const char *const texts[] = {
    [-SHMRPC_OK] = "success",
    [-SHMRPC_EINVAL] = "invalid argument",
    [-SHMRPC_ENOMEM] = "out of memory",
    [-SHMRPC_ETIMEDOUT] = "timed out",
    [-SHMRPC_ENOENT] = "no such address, service or method",
    [-SHMRPC_EPROTO] = "protocol error",
    [-SHMRPC_EHANDLER] = "the handler failed",
    [-SHMRPC_ETOOBIG] = "message too large",
    [-SHMRPC_EMISMATCH] = "client and server method tables differ",
    [-SHMRPC_ECLOSED] = "closed",
    [-SHMRPC_EUNAVAIL] = "unavailable",
    [-SHMRPC_EPEERDIED] = "the peer died",
    [-SHMRPC_EVERSION] = "version mismatch",
    [-SHMRPC_EBUSY] = "already in use",
    [-SHMRPC_EPERM] = "not allowed",
    [-SHMRPC_EOWNERDEAD] = "the previous owner died holding it",
};

const char *shmrpc_strerror(int rc)
{
    if (SHMRPC_IS_ESYS(rc)) {
        /* strerrordesc_np (glibc 2.32) returns a static string and is thread-safe,
         * unlike strerror; NULL for an errno it does not know. */
        const char *s = strerrordesc_np(SHMRPC_ESYSERR - rc);
        return s ? s : "unknown error";
    }
    if (rc > 0 || rc <= -(int)(sizeof texts / sizeof texts[0])) return "unknown error";
    return texts[-rc];
}

bool shmrpc__status_known(int rc)
{
    if (SHMRPC_IS_ESYS(rc)) return rc > SHMRPC_ESYS(4096); /* errno values stay below 4096 */
    return rc < 0 && rc > -(int)(sizeof texts / sizeof texts[0]);
}
