/* SPDX-License-Identifier: MIT */
/* Making a tcp:// connection, one step at a time without waiting (docs/wire.md): the
 * connect, TLS, the HELLO and its HELLO_ACK, and the proofs of a shared secret. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "transport/tcp/tcp_int.h"
#include "transport/tcp/tcp_client_int.h"

/* --- making a connection: a dial, one step at a time ---------------------------------- */

/* Begins a dial of c: a non-blocking connect, given up at end. 0 with c->dial set, else a
 * status with err (nothing is left open). */
int shmrpc__tcp_dial_begin(tcp_conn *c, int64_t now, int64_t end, shmrpc_buf *err)
{
    int fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return shmrpc__tcp_sys_error(err, errno, "cannot open a socket for", c->where);
    c->fd = fd;
    shmrpc__io_init(&c->io, fd);
    c->rcvtimeo_ms = -1;
    c->comp = 0;
    c->agreed = 0;
    c->proto = 0;
    c->dial = DIAL_TCP;
    c->dial_events = POLLOUT;
    c->dial_start = now;
    c->dial_end = end;
    c->dial_patient = now;
    c->heard = false;
    shmrpc__tcp_set_nodelay(fd);
    if (connect(fd, (const struct sockaddr *)&c->addr, c->addr_len) == 0 || errno == EINPROGRESS ||
        errno == EINTR) /* the connect goes on: poll says when it ended */
        return 0;
    shmrpc__msg_set(err, "no server at tcp://%s: %s", c->where, strerror(errno));
    shmrpc__tcp_conn_break(c);
    return SHMRPC_EUNAVAIL;
}

/* The HELLO that c sends (and checks the HELLO_ACK against). */
static void hello_of(const tcp_conn *c, shmrpc__hello *hello)
{
    const shmrpc__tcp_cfg *cfg = &c->cfg->tcp;
    /* Over loopback, copying is faster than any compressor (bench: tcp/text-snappy): by
     * default a client offers compression to other hosts only. */
    bool local = cfg->compression_auto && shmrpc__tcp_is_loopback(&c->addr);
    *hello = (shmrpc__hello){.proto = cfg->wire_proto,
                             .info = *c->info,
                             .compression = local ? 0 : cfg->compression,
                             .threshold = cfg->threshold,
                             .max_msg = shmrpc__tcp_cap32(c->cfg->max_msg)};
    if (cfg->secret_len) hello->auth = shmrpc_bytes_of(c->nonce, sizeof c->nonce);
}

/* Puts the HELLO in c->out, to be sent by the next steps. */
static int hello_begin(tcp_conn *c, shmrpc_buf *err)
{
    if (c->cfg->tcp.secret_len) {
        int rc = shmrpc__auth_nonce(c->nonce);
        if (rc) return rc;
    }
    shmrpc__hello hello;
    hello_of(c, &hello);
    shmrpc_buf_clear(&c->out);
    size_t at = shmrpc__frame_begin(&c->out, SHMRPC__KIND_HELLO, 0, 0, 0);
    int rc = shmrpc__hello_write(&c->out, SHMRPC__KIND_HELLO, &hello, err);
    if (rc == 0) rc = shmrpc__frame_end(&c->out, at);
    c->sent = 0;
    c->dial = DIAL_HELLO;
    return rc;
}

/* The connection is made: the server's table (checked only now, once the server proved
 * it holds the secret) is mapped into c->map and kept. */
static int dial_done(tcp_conn *c, shmrpc_buf *err)
{
    int rc = shmrpc__table_accept(c->info, &c->ack.info, c->map, c->table, err);
    if (rc == 0) {
        c->comp = c->ack.compression;
        c->agreed = (uint16_t)(c->comp | (c->ack.proto >= 8 ? SHMRPC__AGREED_STREAMS : 0) |
                               (c->ack.proto >= 9 ? SHMRPC__AGREED_CLIENT_STREAMS : 0));
        c->threshold = c->ack.threshold;
        c->peer_max = c->ack.max_msg;
        c->proto = c->ack.proto;
        c->drained = false;
        c->dial = DIAL_NONE;
    }
    shmrpc_arena_reset(c->arena);
    memset(&c->ack, 0, sizeof c->ack);
    return rc;
}

/* The HELLO_ACK (or an ERROR) in hand: checked; with a shared secret, both sides then
 * prove they hold it (the client's AUTH goes out next), else the connection is made. */
static int hello_acked(tcp_conn *c, const shmrpc__frame_hdr *h, shmrpc_buf *err)
{
    const shmrpc__tcp_cfg *cfg = &c->cfg->tcp;
    c->heard = true;
    if (h->kind == SHMRPC__KIND_ERROR) return shmrpc__tcp_error_frame(c, err);
    if (h->kind != SHMRPC__KIND_HELLO_ACK) {
        shmrpc__msg_set(err, "tcp://%s answered the HELLO with a %s frame", c->where,
                        shmrpc__frame_kind_name(h->kind));
        return SHMRPC_EPROTO;
    }
    shmrpc__hello hello;
    hello_of(c, &hello);
    shmrpc_arena_reset(c->arena);
    int rc = shmrpc__hello_parse(shmrpc__tcp_frame_body(c), SHMRPC__KIND_HELLO_ACK, c->arena,
                                 &c->ack, err);
    if (rc == 0) rc = shmrpc__hello_accept(&hello, &c->ack, err);
    if (rc == 0 && c->ack.auth.len && !cfg->secret_len) {
        shmrpc__msg_set(err,
                        "tcp://%s requires a shared secret, and this client has none "
                        "(shmrpc_tcp_opts.secret)",
                        c->where);
        rc = SHMRPC_EPERM;
    } else if (rc == 0 && cfg->secret_len && c->ack.auth.len != SHMRPC__AUTH_LEN) {
        shmrpc__msg_set(err,
                        "tcp://%s does not ask for the shared secret: it may not be the "
                        "server this client is meant for",
                        c->where);
        rc = SHMRPC_EPERM;
    }
    if (rc) return rc;
    if (!cfg->secret_len) return dial_done(c, err);
    /* The proofs are over both bodies as they went over the wire: the HELLO still in out,
     * the HELLO_ACK in hand. */
    uint8_t proof[2][SHMRPC__AUTH_LEN];
    shmrpc_bytes sent =
        shmrpc_bytes_of(c->out.data + SHMRPC__FRAME_HDR_SIZE, c->out.len - SHMRPC__FRAME_HDR_SIZE);
    shmrpc__auth_proofs(cfg, sent, shmrpc__tcp_frame_body(c), proof[0], proof[1]);
    c->ack.auth = shmrpc_bytes_of(NULL, 0); /* it pointed into the frame in hand */
    shmrpc_buf_clear(&c->out);
    shmrpc__frame_hdr a = {.kind = SHMRPC__KIND_AUTH, .body_len = SHMRPC__AUTH_LEN};
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    shmrpc__frame_hdr_encode(&a, hdr);
    if (shmrpc_buf_append(&c->out, hdr, sizeof hdr) == 0)
        shmrpc_buf_append(&c->out, proof[0], SHMRPC__AUTH_LEN);
    memcpy(c->proof, proof[1], sizeof c->proof);
    shmrpc__auth_wipe(proof, sizeof proof);
    if (c->out.err) return c->out.err;
    c->sent = 0;
    c->dial = DIAL_AUTH;
    return 0;
}

/* The server's AUTH (or an ERROR) in hand: its proof must be the one expected. */
static int auth_answered(tcp_conn *c, const shmrpc__frame_hdr *h, shmrpc_buf *err)
{
    int rc = 0;
    if (h->kind == SHMRPC__KIND_ERROR) {
        rc = shmrpc__tcp_error_frame(c, err);
    } else if (h->kind != SHMRPC__KIND_AUTH) {
        shmrpc__msg_set(err, "tcp://%s answered the AUTH with a %s frame", c->where,
                        shmrpc__frame_kind_name(h->kind));
        rc = SHMRPC_EPROTO;
    } else if (shmrpc__tcp_frame_body(c).len != SHMRPC__AUTH_LEN ||
               !shmrpc__auth_equal(shmrpc__tcp_frame_body(c).ptr, c->proof)) {
        shmrpc__msg_set(err, "tcp://%s does not hold the same shared secret (its proof is wrong)",
                        c->where);
        rc = SHMRPC_EPERM;
    }
    shmrpc__auth_wipe(c->proof, sizeof c->proof);
    return rc ? rc : dial_done(c, err);
}

/* Reads what has come of the next handshake frame, without waiting: 0 once it is whole
 * at the front of c->in (c->used), 1 while more must come, else a status with err. */
static int dial_read(tcp_conn *c, shmrpc__frame_hdr *h, shmrpc_buf *err)
{
    shmrpc__tcp_consume(c);
    for (;;) {
        size_t need = SHMRPC__FRAME_HDR_SIZE;
        if (c->in.len >= need) {
            int rc = shmrpc__frame_hdr_decode(c->in.data, SHMRPC__FRAME_HDR_SIZE,
                                              SHMRPC__WIRE_MAX_HELLO, c->comp, h, err);
            if (rc) return rc;
            need += h->body_len;
            if (c->in.len >= need) {
                c->used = need;
                return 0;
            }
        }
        if (shmrpc__buf_grow(&c->in, need - c->in.len + READ_AHEAD)) return c->in.err;
        ssize_t k =
            shmrpc__io_recv(&c->io, c->in.data + c->in.len, c->in.cap - c->in.len, MSG_DONTWAIT);
        if (k > 0) {
            c->in.len += (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        if (k == 0) errno = 0;
        return shmrpc__tcp_broken(c, err, k == 0 ? "(the server closed it)" : "while receiving");
    }
}

/* Why c's dial, at its step now, has not ended after its time (ms). */
void shmrpc__tcp_dial_late(const tcp_conn *c, int64_t ms, shmrpc_buf *err)
{
    if (c->dial == DIAL_TCP)
        shmrpc__msg_set(err, "connecting to tcp://%s timed out (%" PRId64 " ms)", c->where, ms);
    else if (c->dial == DIAL_TLS)
        shmrpc__msg_set(err, "the TLS handshake with tcp://%s did not end in time (%" PRId64 " ms)",
                        c->where, ms);
    else
        shmrpc__msg_set(err,
                        "tcp://%s took the connection but did not answer its handshake within "
                        "%" PRId64 " ms",
                        c->where, ms);
}

/* Moves c's dial on as far as it goes without waiting, from what poll said of its socket
 * (revents; 0: nothing). 0 once the connection is made; while it waits, the events its
 * socket waits for; else a status with err, and c let go. It gives up at c->dial_end. */
int shmrpc__tcp_dial_step(tcp_conn *c, short revents, int64_t now, shmrpc_buf *err)
{
    int rc = 0;
    if (!revents && !shmrpc__io_pending(&c->io)) goto waits;
    while (rc == 0 && c->dial != DIAL_NONE) {
        if (c->dial == DIAL_TCP) {
            int e = 0;
            socklen_t el = sizeof e;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0) e = errno;
            if (e == 0 && !(revents & POLLOUT)) e = ECONNREFUSED; /* a hang-up, no error */
            if (e) {
                shmrpc__msg_set(err, "no server at tcp://%s: %s", c->where, strerror(e));
                rc = SHMRPC_EUNAVAIL;
                break;
            }
            /* From now on receives block (see fill) and sends do not (MSG_DONTWAIT); the
             * dial's receives say MSG_DONTWAIT. */
            fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) & ~O_NONBLOCK);
            if (c->tls) {
                rc = shmrpc__io_tls(&c->io, c->tls);
                c->dial = DIAL_TLS;
            } else {
                rc = hello_begin(c, err);
            }
        } else if (c->dial == DIAL_TLS) {
            /* The server's certificate is checked here; whether it accepts ours, a TLS 1.3
             * client learns at its first read (broken() then says why). */
            int step = shmrpc__io_handshake(&c->io);
            if (step < 0) {
                rc = shmrpc__io_error(&c->io, c->where, err);
                break;
            }
            if (step > 0) {
                c->dial_events = step == 1 ? POLLIN : POLLOUT;
                goto waits;
            }
            c->heard = true; /* the server's flight came, and checked */
            rc = hello_begin(c, err);
        } else {
            while (c->sent < c->out.len) {
                ssize_t k = shmrpc__io_send(&c->io, c->out.data + c->sent, c->out.len - c->sent);
                if (k > 0) {
                    c->sent += (size_t)k;
                } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    c->dial_events = POLLOUT;
                    goto waits;
                } else if (k >= 0 || errno != EINTR) {
                    return shmrpc__tcp_broken(c, err, "while sending the handshake");
                }
            }
            shmrpc__frame_hdr h;
            rc = dial_read(c, &h, err);
            if (rc == 1) {
                c->dial_events = POLLIN;
                goto waits;
            }
            if (rc == 0)
                rc = c->dial == DIAL_HELLO ? hello_acked(c, &h, err) : auth_answered(c, &h, err);
        }
    }
    if (rc) shmrpc__tcp_conn_break(c);
    return rc;
waits:
    if (now < c->dial_end) return c->dial_events;
    shmrpc__tcp_dial_late(c, (c->dial_end - c->dial_start) / NS_PER_MS, err);
    shmrpc__tcp_conn_break(c);
    return SHMRPC_ETIMEDOUT;
}
