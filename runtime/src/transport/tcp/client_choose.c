/* SPDX-License-Identifier: MIT */
/* Choosing a tcp:// client's endpoint (docs/wire.md, "Endpoint lists"): the least loaded
 * one not left out, endpoints left out and taken back by probes in the background, and the
 * race that connects a call to the first endpoint that ends its handshake. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "transport/tcp/tcp_int.h"
#include "core/wait.h"
#include "transport/tcp/tcp_client_int.h"

/* Between calls with no answer outstanding the server has nothing to say but a DRAIN:
 * anything else readable is its close (an idle timeout, a restart), so a new connection is
 * made before the request is sent rather than failing a call the server never saw. Calls
 * that follow an answer within a millisecond skip the look (a system call): a server that
 * closed in that millisecond fails the call with SHMRPC_EPEERDIED, which is never resent;
 * one that drains answers the request with its DRAIN, and the call goes elsewhere. */
#define SERVER_LEFT_AFTER_NS NS_PER_MS

/* The background work of a client's endpoints, done by each call before it chooses one
 * (the client has no thread of its own, and nothing here waits): a probe begins for each
 * endpoint whose backoff ended, and those under way move on as far as their sockets allow
 * (one poll that does not wait). A probe that ends its handshake takes its endpoint back;
 * one that fails, or has not ended within tcp.connect_timeout_ms, leaves it out for a
 * longer backoff, unless the server's process had answered it (its HELLO_ACK, or TLS's
 * flight) and then let it go or let it wait: a probe moves only when calls come, and a
 * client that calls less often than the server's handshake timeout (5 s) sends its AUTH,
 * or TLS's second flight, too late. Such a host answers: it is taken back without a
 * connection, and the next call that goes there makes one (race, which bounds the wait
 * by the attempt delay). An endpoint left out with asynchronous calls still in flight on
 * its connection waits for them first. Done at most once a millisecond, so that a client
 * calling back to back pays one poll per millisecond while a probe is under way. */
#define TEND_EVERY_NS NS_PER_MS

/* --- choosing an endpoint ----------------------------------------------------------------- */

/* Whether calls go to c: it is not left out (a probe of it takes it back). */
static bool usable(const tcp_conn *c)
{
    return !c->suspect;
}

/* Whether an endpoint but c takes calls. */
static bool others_usable(const tcp_pool *p, const tcp_conn *c)
{
    for (int i = 0; i < p->n_eps; i++)
        if (p->eps[i] != c && usable(p->eps[i])) return true;
    return false;
}

/* The endpoint for the next try (its index, -1 when none is left): of those not left out
 * and not in mask (tried by this call, or being connected for it), the one with the fewest
 * calls in flight, the first from the cursor among equals, so that a client with one call
 * at a time goes round them; with room (calls in flight on it below tcp.max_in_flight) when
 * room is set, and then *full says whether an endpoint had none. When every endpoint is
 * left out, the probes under way are all there is, and the call may wait for them. */
int shmrpc__tcp_choose(tcp_pool *p, uint64_t mask, bool room, bool *full)
{
    bool any = false;
    for (int i = 0; i < p->n_eps && !any; i++)
        any = usable(p->eps[i]);
    int best = -1;
    if (full) *full = false;
    for (int k = 0; k < p->n_eps; k++) {
        int i = (int)((p->cursor + (unsigned)k) % (unsigned)p->n_eps);
        tcp_conn *c = p->eps[i];
        if ((mask >> i & 1) || (any ? !usable(c) : !c->probe)) continue;
        if (room && c->n_inflight >= p->cfg->tcp.max_in_flight) {
            *full = true;
            continue;
        }
        if (best < 0 || c->outstanding < p->eps[best]->outstanding) best = i;
    }
    if (best >= 0) p->cursor = (unsigned)best + 1;
    return best;
}

/* How long c stays left out before its next probe: the probe interval, doubled per failure
 * in a row up to 16 times, with jitter (half to one and a half of it). */
static int64_t backoff(const tcp_pool *p, const tcp_conn *c, int64_t now)
{
    int n = c->fails > 0 ? c->fails - 1 : 0;
    int64_t b = p->cfg->tcp.probe_ns << (n < 4 ? n : 4);
    return b / 2 + (int64_t)((uint64_t)now % (uint64_t)b);
}

/* Leaves c out of the choice (why says why) until a probe of it, begun after its backoff,
 * ends its handshake (tend), or an answer comes on its connection. */
static void eject(tcp_pool *p, tcp_conn *c, int64_t now, const char *why)
{
    c->fails++;
    c->suspect = true;
    c->eject_until = now + backoff(p, c, now);
    if (why != c->why) snprintf(c->why, sizeof c->why, "%s", why);
    p->resolve_due = true;
}

/* A connection to c was made (by a call's attempt or by a probe): c is taken back if it was
 * left out (its failures in a row still count until a call succeeds there, so a host that
 * takes connections and stalls calls is probed less and less often), and the client's
 * table is that of the server it connected to last. */
static int made(tcp_pool *p, tcp_conn *c)
{
    c->probe = false;
    c->suspect = false;
    c->eject_until = 0;
    memcpy(p->map, c->map, (p->info->n_methods ? p->info->n_methods : 1) * sizeof *p->map);
    int rc = shmrpc__table_keep(p->table, &c->table->info);
    const char *compat = c->table->compat ? c->table->compat : "";
    if (rc == 0 && !(p->table->compat = shmrpc_arena_strndup(p->table->arena, compat,
                                                             strlen(compat))))
        rc = SHMRPC_ENOMEM;
    return rc;
}

/* A call's deadline passed waiting on c. While another endpoint takes calls, c is left out
 * as a host that stalls: the next calls go elsewhere, and a probe takes it back once a new
 * connection's handshake ends. Its connection is let go (the answers owed with it: the calls
 * that timed out may have run, and are never sent again), unless asynchronous calls are
 * still in flight on it, or a stream is open on it: those go on to their answers or
 * deadlines, and an answer takes c back. With no other endpoint, the calls go on waiting on it as before. */
void shmrpc__tcp_stalled(tcp_pool *p, tcp_conn *c, int64_t now, const char *why)
{
    if (c->suspect || !others_usable(p, c)) return;
    if (!c->n_inflight && !shmrpc__tcp_streaming(c)) shmrpc__tcp_conn_break(c);
    eject(p, c, now, why);
}

static bool server_left(const tcp_conn *c, int64_t now)
{
    if (now - c->answered_ns < SERVER_LEFT_AFTER_NS) return false;
    if (shmrpc__io_pending(&c->io)) return true;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}

/* The server sent something while no call was outstanding: a DRAIN (read within a bounded
 * wait, as the rest of a frame may still come), or its close. The connection is let go. */
static void look_at_close(tcp_conn *c, shmrpc_buf *scratch)
{
    shmrpc__frame_hdr h;
    int64_t deadline = shmrpc__now_ns() + 10 * NS_PER_MS;
    if (shmrpc__tcp_read_frame(c, SHMRPC__WIRE_MAX_ERRMSG + 64, &h, deadline, scratch) == 0 &&
        h.kind == SHMRPC__KIND_DRAIN)
        c->drained = true;
    shmrpc__tcp_conn_break(c);
}

/* Before a call goes to c: a connection whose server closed it or drains meanwhile is let
 * go (c->drained says which), so that one is made again for the call, never sent there. */
void shmrpc__tcp_refresh(tcp_conn *c, int64_t now, shmrpc_buf *scratch)
{
    c->drained = c->left = false;
    if (shmrpc__tcp_connected(c) && c->owed == 0 && server_left(c, now)) look_at_close(c, scratch);
}

/* An attempt to connect to c (index i) failed with rc (err says why): c is left out, the
 * search does not go there again, and the reason joins the call's (p->why). */
static void lost(tcp_pool *p, tcp_conn *c, int i, int rc, tcp_search *s, int64_t now,
                 shmrpc_buf *err)
{
    if (rc == SHMRPC_EUNAVAIL && c->drained) {
        char why[200];
        snprintf(why, sizeof why, "%s", shmrpc__msg_get(err));
        shmrpc__msg_set(err,
                        "tcp://%s is draining (its server stops), and connecting again "
                        "failed: %s",
                        c->where, why);
    }
    eject(p, c, now, shmrpc__msg_get(err));
    s->tried |= (uint64_t)1 << i;
    if (s->status == 0 || s->status == SHMRPC_EUNAVAIL) s->status = rc;
    shmrpc__msg_append(&p->why, "%s%s", shmrpc__msg_get(&p->why)[0] ? "; " : "",
                       shmrpc__msg_get(err));
}

/* Milliseconds for poll until at (INT64_MAX: -1, no end). */
static int poll_ms(int64_t at, int64_t now)
{
    if (at == INT64_MAX) return -1;
    if (at <= now) return 0;
    int64_t ms = (at - now + NS_PER_MS - 1) / NS_PER_MS;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* Connects a call to an endpoint, beginning with i (chosen, and not connected), as Happy
 * Eyeballs (RFC 8305) and gRPC's pick_first do: an attempt runs alone for
 * tcp.attempt_delay_ms (at most half the time left) before the next endpoint's attempt
 * begins beside it, the next begins at once when one fails, and the first to end its
 * handshake takes the call (an endpoint already connected ends it as soon as its turn
 * comes). The attempts still under way then are let go, and those that had had their time
 * are left out, as stalled. An attempt that fails leaves its endpoint out (lost). The
 * endpoint, its index in *won_at; NULL when none is left or the deadline passed (then the
 * attempts under way are let go in the same way). A probe (the call waits for it only when
 * every endpoint is left out) goes on in the background either way. */
tcp_conn *shmrpc__tcp_race(tcp_pool *p, int i, tcp_search *s, int *won_at, shmrpc_buf *err)
{
    uint64_t racing = 0;
    tcp_conn *won = NULL;
    int64_t now = shmrpc__now_ns(), next = now; /* when the next attempt may begin */
    bool more = true;                           /* choose may find another endpoint */
    bool dialed = false;                        /* the winner's connection is new */
    int cand = i;
    while (!won && now < s->deadline) {
        if (cand < 0 && more && (now >= next || !racing)) {
            cand = shmrpc__tcp_choose(p, s->tried | racing, s->room, NULL);
            more = cand >= 0;
        }
        if (cand >= 0) {
            tcp_conn *c = p->eps[cand];
            int at = cand;
            cand = -1;
            s->attempts++;
            if (at != i) shmrpc__tcp_refresh(c, now, err);
            if (shmrpc__tcp_connected(c)) {
                won = c, *won_at = at;
                break;
            }
            if (c->dial == DIAL_NONE) {
                int rc = shmrpc__tcp_dial_begin(c, now, now + p->cfg->tcp.connect_ns, err);
                if (rc) {
                    lost(p, c, at, rc, s, now, err);
                    next = now;
                    continue;
                }
            }
            racing |= (uint64_t)1 << at;
            int64_t wait = p->cfg->tcp.attempt_delay_ns;
            if (s->deadline != INT64_MAX && (s->deadline - now) / 2 < wait)
                wait = (s->deadline - now) / 2;
            /* A probe joined began earlier: its time runs from then. */
            c->dial_patient = c->dial_start + wait > now ? c->dial_start + wait : now;
            next = c->dial_patient;
            continue;
        }
        if (!racing) break; /* nothing under way, and nothing left to try */
        /* Wait for the sockets, until the next attempt's time, a dial's end or the deadline. */
        struct pollfd fds[SHMRPC_TCP_MAX_ENDPOINTS];
        int at[SHMRPC_TCP_MAX_ENDPOINTS], n = 0;
        int64_t wake = s->deadline;
        if (more && next < wake) wake = next;
        for (int k = 0; k < p->n_eps; k++) {
            if (!(racing >> k & 1)) continue;
            tcp_conn *c = p->eps[k];
            if (c->dial_end < wake) wake = c->dial_end;
            fds[n] = (struct pollfd){.fd = c->fd, .events = c->dial_events};
            at[n++] = k;
        }
        int r = poll(fds, (nfds_t)n, poll_ms(wake, now));
        int e = errno;
        now = shmrpc__now_ns();
        for (int k = 0; k < n; k++) {
            tcp_conn *c = p->eps[at[k]];
            int rc = r < 0 && e != EINTR
                         ? shmrpc__tcp_sys_error(err, e, "cannot poll", c->where)
                         : shmrpc__tcp_dial_step(c, r > 0 ? fds[k].revents : 0, now, err);
            if (rc > 0) continue;
            racing &= ~((uint64_t)1 << at[k]);
            if (rc < 0) {
                if (c->dial) shmrpc__tcp_conn_break(c);
                lost(p, c, at[k], rc, s, now, err);
                next = now;
            } else if (!won) {
                won = c, *won_at = at[k];
                dialed = true;
            } else if ((rc = made(p, c)) != 0) { /* connected too: kept */
                shmrpc__tcp_conn_break(c);
            }
        }
    }
    /* The attempts still under way: let go, those that had had their time left out as
     * stalled, and said among the call's reasons when none took it. */
    for (int k = 0; k < p->n_eps; k++) {
        tcp_conn *c = p->eps[k];
        if (!(racing >> k & 1) || c->probe) continue;
        shmrpc__tcp_dial_late(c, (now - c->dial_start) / NS_PER_MS, err);
        if (won) shmrpc__msg_append(err, "; tcp://%s answered first", won->where);
        if (!won)
            shmrpc__msg_append(&p->why, "%s%s", shmrpc__msg_get(&p->why)[0] ? "; " : "",
                               shmrpc__msg_get(err));
        bool late = now >= c->dial_patient;
        shmrpc__tcp_conn_break(c);
        if (late) eject(p, c, now, shmrpc__msg_get(err));
    }
    if (won && dialed) {
        int rc = made(p, won);
        if (rc) {
            shmrpc__tcp_conn_break(won);
            lost(p, won, *won_at, rc, s, now, err);
            won = NULL;
        }
    }
    return won;
}

void shmrpc__tcp_tend(tcp_pool *p, int64_t now, shmrpc_buf *scratch)
{
    if (now - p->tended_ns < TEND_EVERY_NS) return;
    p->tended_ns = now;
    struct pollfd fds[SHMRPC_TCP_MAX_ENDPOINTS];
    int at[SHMRPC_TCP_MAX_ENDPOINTS], n = 0;
    for (int i = 0; i < p->n_eps; i++) {
        tcp_conn *c = p->eps[i];
        if (!c->suspect || (!c->probe && now < c->eject_until)) continue;
        if (!c->probe) {
            if (shmrpc__tcp_connected(c) && (c->n_inflight || shmrpc__tcp_streaming(c))) {
                c->eject_until = now + backoff(p, c, now);
                continue;
            }
            shmrpc__tcp_conn_break(c);
            int rc = shmrpc__tcp_dial_begin(c, now, now + p->cfg->tcp.connect_ns, scratch);
            if (rc) {
                eject(p, c, now, shmrpc__msg_get(scratch));
                continue;
            }
            c->probe = true;
        }
        fds[n] = (struct pollfd){.fd = c->fd, .events = c->dial_events};
        at[n++] = i;
    }
    if (n == 0) return;
    int r = poll(fds, (nfds_t)n, 0);
    for (int k = 0; k < n; k++) {
        tcp_conn *c = p->eps[at[k]];
        int rc = shmrpc__tcp_dial_step(c, r > 0 ? fds[k].revents : 0, now, scratch);
        if (rc == 0 && (rc = made(p, c)) != 0) shmrpc__tcp_conn_break(c);
        if (rc < 0 && c->heard && (rc == SHMRPC_EUNAVAIL || rc == SHMRPC_ETIMEDOUT)) {
            c->suspect = false; /* it answered, too soon for this client */
            c->eject_until = 0;
        } else if (rc < 0) {
            eject(p, c, now, shmrpc__msg_get(scratch));
        }
    }
}

/* Why a call found no endpoint to try: each endpoint left out, and for how long. */
void shmrpc__tcp_left_out(tcp_pool *p, int64_t now, shmrpc_buf *why)
{
    for (int i = 0; i < p->n_eps; i++) {
        const tcp_conn *c = p->eps[i];
        if (!c->suspect) continue;
        const char *sep = shmrpc__msg_get(why)[0] ? "; " : "";
        if (c->probe)
            shmrpc__msg_append(why, "%stcp://%s is left out while a probe of it is under way (%s)",
                               sep, c->where, c->why);
        else
            shmrpc__msg_append(
                why, "%stcp://%s is left out for %" PRId64 " ms more (%s)", sep, c->where,
                c->eject_until > now ? (c->eject_until - now + NS_PER_MS - 1) / NS_PER_MS : 0,
                c->why);
    }
}
