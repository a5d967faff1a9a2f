/* Addresses: "SCHEME://WHERE", and the transport that serves each scheme. */
#include <string.h>

#include "internal.h"

static const shmrpc__transport *const transports[] = {
    &shmrpc__inproc_transport,
    &shmrpc__shm_transport,
    &shmrpc__tcp_transport,
};

static bool scheme_char(char c, bool first)
{
    if (c >= 'a' && c <= 'z') return true;
    if (first) return false;
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

int shmrpc__transport_for(const char *addr, const shmrpc__transport **t, const char **where,
                          shmrpc_buf *err)
{
    if (!addr) {
        shmrpc__msg_set(err, "no address");
        return SHMRPC_EINVAL;
    }
    const char *sep = strstr(addr, "://");
    size_t n = sep ? (size_t)(sep - addr) : 0;
    bool ok = n > 0;
    for (size_t i = 0; ok && i < n; i++)
        ok = scheme_char(addr[i], i == 0);
    if (!ok) {
        shmrpc__msg_set(err, "malformed address '%s': expected SCHEME://WHERE, e.g. inproc://echo",
                        addr);
        return SHMRPC_EINVAL;
    }
    for (size_t i = 0; i < sizeof transports / sizeof transports[0]; i++) {
        const char *s = transports[i]->scheme;
        if (strlen(s) == n && memcmp(s, addr, n) == 0) {
            *t = transports[i];
            *where = sep + 3;
            return 0;
        }
    }
    shmrpc__msg_set(err, "unknown transport '%.*s' in address '%s'", (int)n, addr, addr);
    return SHMRPC_EINVAL;
}

int shmrpc__transport_check_opts(const shmrpc_server_opts *o)
{
    for (size_t i = 0; i < sizeof transports / sizeof transports[0]; i++) {
        int rc = transports[i]->check_opts ? transports[i]->check_opts(o) : 0;
        if (rc) return rc;
    }
    return 0;
}
