/* SPDX-License-Identifier: MIT */
/* shmrpc_queue_repair: the positions that a bad write left where no step leads, rewritten
 * from what the descriptors say (docs/queue.md, "Positions written over"). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "queue/queue_int.h"

static void said(shmrpc_queue_repair_info *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Counts a rewrite, and appends its line to what the repair says it did if the line fits
 * whole (with many subscribers' cursors it may not: the count is still every one). */
static void said(shmrpc_queue_repair_info *out, const char *fmt, ...)
{
    out->fixed++;
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t at = strlen(out->what);
    if (n > 0 && (size_t)n < sizeof line && at + (size_t)n < sizeof out->what)
        memcpy(out->what + at, line, (size_t)n + 1);
}

/* One look and rewrite of the positions that no single role holds: 0 (done), 1 (one moved
 * meanwhile: look again). Each word is rewritten by a CAS from the value read before the
 * scan, so a push or pop that moved it meanwhile is never undone. The frontier, head and
 * tail are read in that order before the scan: a claim or a take the scan sees then came
 * after them, so the tail the descriptors give is never behind a sound tail, nor their
 * frontier and head behind sound ones. */
static int repair_once(shmrpc_queue *q, shmrpc_queue_repair_info *out)
{
    struct q_hdr *h = q->hdr;
    uint64_t f = q->sc ? q->sc_freed : atomic_load(&h->freed);
    uint32_t hd = atomic_load(&h->head);
    uint64_t t = q->sp ? q->sp_tail : atomic_load(&h->tail);
    struct rebuilt r;
    uint32_t known[2] = {msg_of(f), cons_head(q->sc_cons)};
    shmrpc__q_rebuild(q, known, q->sp && q->sc ? 2 : 0, &r);
    uint64_t nt = t, nf = f;
    uint32_t nh = hd;
    if (!q->sp) {
        /* The tail: past every claim (a gap of slots nobody will fill), far behind them,
         * or behind a message already queued in its own slot. */
        uint64_t s = atomic_load(&desc_at(q, msg_of(t))->state);
        int64_t behind = (int32_t)(msg_of(r.tail) - msg_of(t));
        bool open =
            s == mkstate(msg_of(t), S_FREE, 0) || (lap_of(s) == msg_of(t) && st_of(s) == S_CLAIMED);
        if (behind < 0 || behind > q->n || (behind > 0 && !open)) nt = r.tail;
    }
    if (!q->sc) {
        /* The frontier: past a message not given back, out of the tail's reach. */
        int64_t d = (int32_t)(msg_of(r.freed) - msg_of(f)), tf = (int32_t)(msg_of(nt) - msg_of(f));
        if (d < 0 || d > q->n || tf < 0 || tf > q->n) nf = r.freed;
    }
    if ((uint32_t)(byte_of(nt) - byte_of(nf)) > q->b) { /* the bytes, as the descriptors say */
        if (!q->sp) nt = mkpos(msg_of(nt), byte_of(r.tail));
        if (!q->sc) nf = mkpos(msg_of(nf), byte_of(r.freed));
    }
    if (!q->bcast && !q->sc) {
        /* The head: out of reach, or past a message nobody took. */
        if ((int32_t)(hd - msg_of(nf)) < -(int32_t)q->n || (int32_t)(hd - msg_of(nt)) > 0 ||
            (int32_t)(hd - r.head) > 0)
            nh = r.head;
    }
    if (nt != t) {
        if (!atomic_compare_exchange_strong(&h->tail, &t, nt)) return 1;
        said(out, "tail {message %" PRIu32 ", byte %" PRIu32 "} -> {%" PRIu32 ", %" PRIu32 "}\n",
             msg_of(t), byte_of(t), msg_of(nt), byte_of(nt));
    }
    if (nf != f) {
        if (!atomic_compare_exchange_strong(&h->freed, &f, nf)) return 1;
        said(out,
             "frontier {message %" PRIu32 ", byte %" PRIu32 "} -> {%" PRIu32 ", %" PRIu32 "}\n",
             msg_of(f), byte_of(f), msg_of(nf), byte_of(nf));
    }
    if (nh != hd) {
        if (!atomic_compare_exchange_strong(&h->head, &hd, nh)) return 1;
        said(out, "head %" PRIu32 " -> %" PRIu32 "\n", hd, nh);
    }
    uint64_t mask = q->bcast ? atomic_load(&h->subs) : 0;
    while (mask) {
        int i = __builtin_ctzll(mask);
        mask &= mask - 1;
        uint32_t c = atomic_load(&q->subs[i].cursor);
        if ((int32_t)(c - msg_of(nf)) >= -(int32_t)q->n && (int32_t)(c - msg_of(nt)) <= 0) continue;
        /* What it read is not known: it goes on from the tail, at most once. */
        if (!atomic_compare_exchange_strong(&q->subs[i].cursor, &c, msg_of(nt))) return 1;
        said(out, "subscriber %d's cursor %" PRIu32 " -> %" PRIu32 "\n", i, c, msg_of(nt));
    }
    return 0;
}

int shmrpc_queue_repair(shmrpc_queue *q, shmrpc_queue_repair_info *out)
{
    if (!q || !out) return fail(SHMRPC_EINVAL, "queue or out is NULL");
    memset(out, 0, sizeof *out);
    /* The roles' leases are the lock over the positions their holders alone write: taking
     * them runs the take-over, which rebuilds those (and refuses while a live holder has
     * one). The rest has no lock to take: every step there is a CAS, and so is each
     * rewrite. */
    bool had_p = q->prod_pid == self(), had_c = q->cons_pid == self();
    struct q_hdr *h = q->hdr;
    uint64_t tail0 = atomic_load(&h->tail), cons0 = atomic_load(&h->cons),
             freed0 = atomic_load(&h->freed);
    int rc = 0;
    if (q->sp) rc = shmrpc__q_hold(q, ROLE_PRODUCER);
    if (rc == 0 && q->sc) rc = shmrpc__q_hold(q, ROLE_CONSUMER);
    if (rc == 0) {
        /* What the take-overs rebuilt (or moved past a dead holder's last messages). */
        if (q->sp && !had_p && q->sp_tail != tail0)
            said(out,
                 "single producer's tail {message %" PRIu32 ", byte %" PRIu32 "} -> {%" PRIu32
                 ", %" PRIu32 "}\n",
                 msg_of(tail0), byte_of(tail0), msg_of(q->sp_tail), byte_of(q->sp_tail));
        if (q->sc && !had_c && (q->sc_cons != cons0 || q->sc_freed != freed0))
            said(out,
                 "single consumer's head %" PRIu32 " -> %" PRIu32 ", frontier {message %" PRIu32
                 ", byte %" PRIu32 "} -> {%" PRIu32 ", %" PRIu32 "}\n",
                 cons_head(cons0), cons_head(q->sc_cons), msg_of(freed0), byte_of(freed0),
                 msg_of(q->sc_freed), byte_of(q->sc_freed));
        int again = 1;
        for (int i = 0; i < OPEN_ATTEMPTS && again; i++)
            again = repair_once(q, out);
        if (again)
            rc = fail(SHMRPC_EBUSY, "queue '%s': its positions kept moving under the repair",
                      q->name);
    }
    /* A single consumer's frontier, its own: one that waits at a message written over
     * until the tail passed it (freed_to) moves now, fixed or not. */
    if (rc == 0 && q->sc) shmrpc__q_sc_free(q, 0);
    if (!had_p && q->sp) shmrpc__q_let_go_of(q, ROLE_PRODUCER);
    if (!had_c && q->sc) shmrpc__q_let_go_of(q, ROLE_CONSUMER);
    /* Messages given back while the frontier was out of place (released, nobody could
     * move it past them), or whose descriptor was written over while the tail lagged, are
     * freed now, whatever was fixed: waiters with short timeouts never probe. */
    shmrpc__q_advance_frontier(q);
    if (out->fixed) {
        bump(&q->hdr->repairs, out->fixed);
        shmrpc__q_signal_waiters(&q->hdr->nonempty, 0);
        shmrpc__q_signal_waiters(&q->hdr->nonfull, 0);
    }
    return rc;
}
