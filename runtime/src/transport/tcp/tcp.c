/* SPDX-License-Identifier: MIT */
/* The TCP transport, tcp://HOST:PORT, the part both sides share: its settings, addresses,
 * and the frames that carry a message or an error (the codec itself is frame.c). The
 * server side is tcp_server.c, the client side tcp_client.c, each with the files it names,
 * and tcp_transport.c holds the transport's table (docs/wire.md). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "transport/tcp/tcp_int.h"

#define MAX_CONNS_LIMIT (1 << 20) /* the most max_conns may be */
#define DEFAULT_BUDGET ((size_t)256 << 20)

/* --- settings (docs/wire.md, "Limits") ----------------------------------------------- */

/* The newest revision a handshake of this client or server offers or chooses: read from the
 * environment once, when it is made, so that no handshake calls getenv (cfg.wire_proto). */
static uint32_t wire_proto(void)
{
    const char *v = getenv("SHMRPC_TEST_WIRE_PROTO");
    char *end;
    unsigned long n = v && *v ? strtoul(v, &end, 10) : 0;
    if (n == 0 || *end || n > SHMRPC__WIRE_PROTO) return SHMRPC__WIRE_PROTO;
    return (uint32_t)n;
}

static bool ms_to_ns(int64_t ms, int64_t dflt_ms, int64_t *ns)
{
    if (ms < 0 || ms > INT64_MAX / NS_PER_MS / 2) return false;
    *ns = (ms ? ms : dflt_ms) * NS_PER_MS;
    return true;
}

/* A TLS setting into its field of SHMRPC_TLS_PATH_MAX bytes; false when it does not fit. */
static bool copy_text(char *to, const char *from)
{
    size_t n = from ? strlen(from) : 0;
    if (n >= SHMRPC_TLS_PATH_MAX) return false;
    memcpy(to, from ? from : "", n + 1);
    return true;
}

int shmrpc__tcp_cfg_init(shmrpc__tcp_cfg *cfg, const shmrpc_tcp_opts *o)
{
    static const shmrpc_tcp_opts defaults;
    if (!o) o = &defaults;
    memset(cfg, 0, sizeof *cfg);
    unsigned algos = SHMRPC_COMPRESS_SNAPPY | SHMRPC_COMPRESS_ZLIB;
    if (o->compression & ~(algos | SHMRPC_COMPRESS_NONE)) return SHMRPC_EINVAL;
    unsigned comp = o->compression & SHMRPC_COMPRESS_NONE ? 0
                    : o->compression                      ? o->compression
                                                          : algos;
    cfg->compression = (uint16_t)((comp & SHMRPC_COMPRESS_SNAPPY ? SHMRPC__FLAG_SNAPPY : 0) |
                                  (comp & SHMRPC_COMPRESS_ZLIB ? SHMRPC__FLAG_ZLIB : 0));
    cfg->compression_auto = o->compression == 0;
    cfg->threshold = o->compress_threshold ? o->compress_threshold : SHMRPC__WIRE_DEFAULT_THRESHOLD;
    if (!ms_to_ns(o->connect_timeout_ms, 5000, &cfg->connect_ns) ||
        !ms_to_ns(o->handshake_timeout_ms, 5000, &cfg->handshake_ns) ||
        !ms_to_ns(o->idle_timeout_ms, 300 * 1000, &cfg->idle_ns) ||
        !ms_to_ns(o->progress_timeout_ms, 10 * 1000, &cfg->progress_ns) ||
        !ms_to_ns(o->attempt_delay_ms, 250, &cfg->attempt_delay_ns) ||
        !ms_to_ns(o->probe_interval_ms, 100, &cfg->probe_ns) ||
        !ms_to_ns(o->resolve_interval_ms, 30 * 1000, &cfg->resolve_ns))
        return SHMRPC_EINVAL;
    if (o->max_conns < 0 || o->max_conns > MAX_CONNS_LIMIT) return SHMRPC_EINVAL;
    cfg->max_conns = o->max_conns ? o->max_conns : 1024;
    if (o->max_conns_per_addr < 0 || o->max_conns_per_addr > MAX_CONNS_LIMIT) return SHMRPC_EINVAL;
    cfg->max_per_addr = o->max_conns_per_addr ? o->max_conns_per_addr : 256;
    cfg->budget = o->buffer_budget ? o->buffer_budget : DEFAULT_BUDGET;
    if (o->max_in_flight < 0 || o->max_in_flight > 4096) return SHMRPC_EINVAL;
    cfg->max_in_flight = o->max_in_flight ? o->max_in_flight : 64;
    if (o->max_running < 0 || o->max_running > 256) return SHMRPC_EINVAL;
    cfg->max_running = o->max_running ? o->max_running : 16;
    cfg->wire_proto = wire_proto();
    if (!o->secret != !o->secret_len) return SHMRPC_EINVAL;
    if (o->secret && (o->secret_len < SHMRPC_SECRET_MIN || o->secret_len > SHMRPC_SECRET_MAX))
        return SHMRPC_EINVAL;
    if (o->secret) memcpy(cfg->secret, o->secret, o->secret_len);
    cfg->secret_len = o->secret_len;
    if (o->tls != SHMRPC_TLS_OFF && o->tls != SHMRPC_TLS_ON) return SHMRPC_EINVAL;
    if (o->tls_verify < SHMRPC_TLS_VERIFY_AUTO || o->tls_verify > SHMRPC_TLS_VERIFY_OFF)
        return SHMRPC_EINVAL;
    if (o->tls_key && !o->tls_cert) return SHMRPC_EINVAL;
    cfg->tls = o->tls;
    cfg->tls_verify = o->tls_verify;
    if (!copy_text(cfg->tls_cert, o->tls_cert) || !copy_text(cfg->tls_key, o->tls_key) ||
        !copy_text(cfg->tls_ca, o->tls_ca) || !copy_text(cfg->tls_server_name, o->tls_server_name))
        return SHMRPC_EINVAL;
    return 0;
}

int shmrpc__tcp_sys_error(shmrpc_buf *err, int e, const char *what, const char *where)
{
    shmrpc__msg_set(err, "%s tcp://%s: %s", what, where, strerror(e));
    return SHMRPC_ESYS(e);
}

/* --- addresses ------------------------------------------------------------------------- */

int shmrpc__tcp_parse_addr(const char *where, struct sockaddr_storage *ss, socklen_t *len,
                           shmrpc_buf *err)
{
    char host[ADDR_MAX] = "127.0.0.1";
    const char *port = where;
    size_t n = strlen(where);
    if (n >= ADDR_MAX) goto bad;
    const char *colon = strrchr(where, ':');
    if (where[0] == '[') {
        const char *close = strchr(where, ']');
        if (!close || close[1] != ':') goto bad;
        memcpy(host, where + 1, (size_t)(close - where - 1));
        host[close - where - 1] = '\0';
        port = close + 2;
    } else if (colon) {
        if (memchr(where, ':', (size_t)(colon - where))) goto bad; /* IPv6 needs brackets */
        if (colon > where) {
            memcpy(host, where, (size_t)(colon - where));
            host[colon - where] = '\0';
        }
        port = colon + 1;
    }
    char *end;
    errno = 0;
    unsigned long p = strtoul(port, &end, 10);
    if (*port < '0' || *port > '9' || *end || errno || p == 0 || p > 65535) goto bad;
    if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) goto bad;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
bad:
    shmrpc__msg_set(err,
                    "malformed address 'tcp://%s': expected tcp://HOST:PORT with a numeric host "
                    "(e.g. tcp://127.0.0.1:5555 or tcp://[::1]:5555) and a port of 1 to 65535",
                    where);
    return SHMRPC_EINVAL;
}

bool shmrpc__tcp_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127;
}

void shmrpc__tcp_queue_read(shmrpc_buf *q, size_t *head)
{
    if (*head == q->len) {
        q->len = *head = 0;
    } else if (*head >= SHMRPC__STREAM_WINDOW && *head >= q->len / 2) {
        memmove(q->data, q->data + *head, q->len - *head);
        q->len -= *head;
        *head = 0;
    }
}

void shmrpc__tcp_set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* --- frames with bodies (both sides) ---------------------------------------------------- */

int shmrpc__tcp_put_msg_frame(shmrpc_buf *out, uint8_t kind, uint16_t flags, uint32_t method,
                              uint64_t rid, int64_t budget_ns, shmrpc_bytes meta, shmrpc_bytes msg,
                              uint16_t comp, uint32_t threshold)
{
    if (budget_ns >= 0) flags |= SHMRPC__FLAG_DEADLINE;
    if (meta.len) flags |= SHMRPC__FLAG_META;
    size_t at = shmrpc__frame_begin(out, kind, flags, method, rid);
    if (budget_ns >= 0) {
        uint8_t dl[SHMRPC__DEADLINE_LEN];
        shmrpc__deadline_encode(budget_ns, dl);
        shmrpc_buf_append(out, dl, sizeof dl);
    }
    if (meta.len) {
        uint8_t ml[SHMRPC__META_LEN_SIZE] = {(uint8_t)(meta.len >> 8), (uint8_t)meta.len};
        shmrpc_buf_append(out, ml, sizeof ml);
        shmrpc_buf_append(out, meta.ptr, meta.len);
    }
    uint16_t used = 0;
    if (comp && msg.len > 0 && msg.len >= threshold) {
        int rc = shmrpc__body_compress(comp, msg, out, &used);
        if (rc) {
            out->len = at;
            return rc;
        }
    }
    if (used) {
        used |= flags;
        out->data[at + 6] = (uint8_t)(used >> 8);
        out->data[at + 7] = (uint8_t)used;
    } else {
        shmrpc_buf_append(out, msg.ptr, msg.len);
    }
    int rc = shmrpc__frame_end(out, at);
    if (rc && !out->err) out->len = at;
    return rc;
}

void shmrpc__tcp_put_error_frame(shmrpc_buf *out, uint32_t method, uint64_t rid, int status,
                                 const char *msg)
{
    size_t at = shmrpc__frame_begin(out, SHMRPC__KIND_ERROR, 0, method, rid);
    shmrpc__error_write(out, status < 0 ? status : SHMRPC_EPROTO, shmrpc_str_c(msg));
    shmrpc__frame_end(out, at);
}
