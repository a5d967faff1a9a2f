/* SPDX-License-Identifier: MIT */
/* The server's side of a tcp:// handshake (docs/wire.md): the HELLO answered, the proofs
 * of a shared secret exchanged, and the connection then counted as finished. */
#include <stdio.h>

#include "codec/dyn.h"
#include "transport/tcp/tcp_int.h"
#include "transport/tcp/tcp_server_int.h"

/* p has finished its handshake (its HELLO, or its proof of the secret, was right): only
 * now does it count against its address's limit, so that connections which never finish
 * cannot fill it (docs/wire.md, "Limits"). false, with the refusal in msg, when the
 * address has max_per_addr finished connections already. */
static bool peer_ready(worker *w, peer *p, char *msg, size_t n)
{
    if (!shmrpc__tcp_addr_admit(w, p->addr)) {
        snprintf(msg, n,
                 "too many connections from %s (the server admits at most %d from one address)",
                 p->from, w->l->cfg.max_per_addr);
        shmrpc__tcp_log_limit(w, "refused a connection: %s", msg);
        return false;
    }
    p->counted = true;
    shmrpc__tcp_shaking_drop(w, p);
    p->state = P_READY;
    return true;
}

/* Answers a HELLO with a HELLO_ACK. A server with a secret sends a challenge in it and
 * waits for the client's proof (P_AUTH); otherwise requests may come. */
void shmrpc__tcp_serve_hello(worker *w, peer *p, shmrpc_bytes body)
{
    const shmrpc__tcp_cfg *cfg = &w->l->cfg;
    shmrpc__hello hello, ack;
    uint8_t challenge[SHMRPC__AUTH_LEN];
    shmrpc_arena_reset(w->arena);
    shmrpc__msg_clear(&w->err);
    int rc = shmrpc__hello_parse(body, SHMRPC__KIND_HELLO, w->arena, &hello, &w->err);
    if (rc == 0 && cfg->secret_len && hello.auth.len != SHMRPC__AUTH_LEN) {
        shmrpc__msg_set(&w->err, "tcp://%s admits only clients that hold its shared secret",
                        w->l->where);
        rc = SHMRPC_EPERM;
    }
    if (rc == 0)
        rc = shmrpc__hello_answer(&hello, shmrpc__server_info(w->l->server), cfg->compression,
                                  cfg->threshold, w->l->max_msg, w->arena, &ack, &w->err);
    if (rc == 0 && ack.proto > cfg->wire_proto) ack.proto = cfg->wire_proto;
    /* A client of revision 5 or less reads signatures with their types spelled out. */
    if (rc == 0 && ack.proto < SHMRPC__WIRE_PROTO_TYPES && ack.info.n_types)
        rc = shmrpc__info_spelled(w->arena, &ack.info, SHMRPC__WIRE_MAX_HELLO, &ack.info,
                                  &w->err);
    if (rc == 0 && cfg->secret_len) {
        rc = shmrpc__auth_nonce(challenge);
        ack.auth = shmrpc_bytes_of(challenge, sizeof challenge);
    }
    char full[160];
    if (rc == 0 && !cfg->secret_len && !peer_ready(w, p, full, sizeof full)) {
        shmrpc__msg_set(&w->err, "%s", full);
        rc = SHMRPC_EBUSY;
    }
    size_t at = p->out.len;
    if (rc == 0) {
        shmrpc__frame_begin(&p->out, SHMRPC__KIND_HELLO_ACK, 0, 0, 0);
        rc = shmrpc__hello_write(&p->out, SHMRPC__KIND_HELLO_ACK, &ack, &w->err);
        size_t body = p->out.len - at - SHMRPC__FRAME_HDR_SIZE;
        if (rc == 0 && body > SHMRPC__WIRE_MAX_HELLO) {
            /* Only a table spelled out for an older client can grow so (issue 36). */
            shmrpc__msg_set(&w->err,
                            "the method table spelled out for a client of protocol revision %u "
                            "needs %zu bytes, more than a handshake carries (%u): upgrade the "
                            "client",
                            ack.proto, body, SHMRPC__WIRE_MAX_HELLO);
            rc = SHMRPC_ETOOBIG;
        }
        if (rc == 0) rc = shmrpc__frame_end(&p->out, at);
        if (rc) p->out.len = at;
    }
    if (rc) {
        shmrpc__tcp_peer_refuse(p, rc, shmrpc__msg_get(&w->err));
    } else {
        if (cfg->secret_len) p->state = P_AUTH;
        p->comp = ack.compression;
        p->threshold = ack.threshold;
        p->peer_max = hello.max_msg;
        p->proto = ack.proto;
        if (cfg->secret_len) {
            size_t hdr = at + SHMRPC__FRAME_HDR_SIZE;
            shmrpc__auth_proofs(cfg, body, shmrpc_bytes_of(p->out.data + hdr, p->out.len - hdr),
                                p->proof[0], p->proof[1]);
        }
    }
    shmrpc_arena_reset(w->arena);
}

/* The client's proof of the secret: a wrong one closes the connection, a right one is
 * answered with the server's (unless its address is full). */
void shmrpc__tcp_serve_auth(worker *w, peer *p, shmrpc_bytes body)
{
    if (!shmrpc__auth_equal(body.ptr, p->proof[0])) {
        shmrpc__tcp_peer_refuse(p, SHMRPC_EPERM, "authentication failed: wrong shared secret");
        return;
    }
    char full[160];
    if (!peer_ready(w, p, full, sizeof full)) {
        shmrpc__tcp_peer_refuse(p, SHMRPC_EBUSY, full);
        return;
    }
    size_t at = shmrpc__frame_begin(&p->out, SHMRPC__KIND_AUTH, 0, 0, 0);
    shmrpc_buf_append(&p->out, p->proof[1], SHMRPC__AUTH_LEN);
    shmrpc__frame_end(&p->out, at);
    shmrpc__auth_wipe(p->proof, sizeof p->proof);
}
