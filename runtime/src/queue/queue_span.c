/* SPDX-License-Identifier: MIT */
/* Zero-copy spans: shmrpc_queue_reserve and shmrpc_queue_commit write a message in place,
 * shmrpc_queue_peek and shmrpc_queue_release read one in place. */
#include <string.h>

#include "queue/queue_int.h"

int shmrpc_queue_reserve(shmrpc_queue *q, size_t len, shmrpc_queue_span *s, int64_t timeout_ms)
{
    if (!q || !s) return fail(SHMRPC_EINVAL, "queue or span is NULL");
    memset(s, 0, sizeof *s);
    int rc = shmrpc__q_check_len(q, len);
    if (rc == 0) rc = shmrpc__q_check_timeout(timeout_ms);
    if (rc == 0 && gone(q)) rc = shmrpc__q_cut_fail(q);
    if (rc != 0) return rc;
    struct producing pr = {0};
    uint32_t pos, start;
    due dl = due_in(timeout_ms);
    uint32_t one = (uint32_t)len, c;
    if (q->sp)
        rc = shmrpc__q_sp_claim(q, one, &dl, &pr, &pos, &start);
    else
        rc = shmrpc__q_claim(q, &one, 1, &dl, &pr, &pos, &start, &c);
    shmrpc__q_flush_signal(q, &pr);
    if (cut(q)) rc = shmrpc__q_cut_fail(q);
    if (rc == SHMRPC_ETIMEDOUT) return shmrpc__q_timed_out(q, timeout_ms, "full");
    if (rc != 0) return rc;
    s->data = payload(q, pos, start, one);
    s->len = len;
    s->pos = pos;
    s->state = S_CLAIMED;
    if (q->sp) q->sp_reserved = true;
    return 0;
}

int shmrpc_queue_commit(shmrpc_queue *q, shmrpc_queue_span *s)
{
    if (!q || !s || s->state != S_CLAIMED) return fail(SHMRPC_EINVAL, "not a reserved span");
    struct producing pr = {0};
    int rc = 0;
    if (!q->sp) {
        rc = shmrpc__q_publish(q, s->pos, &pr);
    } else if (q->sp_reserved && q->prod_pid == self() && s->pos == msg_of(q->sp_tail)) {
        q->sp_reserved = false;
        shmrpc__q_sp_publish(q, s->pos, &pr);
    } else {
        rc = fail(SHMRPC_EINVAL, "queue '%s': not this single producer's reservation", q->name);
    }
    shmrpc__q_flush_signal(q, &pr);
    s->state = 0;
    s->data = NULL;
    return unless_cut(q, rc);
}

int shmrpc_queue_peek(shmrpc_queue *q, shmrpc_queue_span *s, int64_t timeout_ms)
{
    if (!q || !s) return fail(SHMRPC_EINVAL, "queue or span is NULL");
    memset(s, 0, sizeof *s);
    int rc = shmrpc__q_check_timeout(timeout_ms);
    if (rc == 0) rc = shmrpc__q_may_pop(q);
    if (rc == 0 && q->bcast && q->drop)
        rc = fail(SHMRPC_EINVAL,
                  "queue '%s' drops for slow subscribers: peek needs the block policy", q->name);
    if (rc == 0 && gone(q)) rc = shmrpc__q_cut_fail(q);
    if (rc != 0) return rc;
    uint32_t pos, start, len;
    due dl = due_in(timeout_ms);
    rc = shmrpc__q_take(q, SIZE_MAX, &dl, &pos, &start, &len);
    if (cut(q)) return shmrpc__q_cut_fail(q);
    if (rc == SHMRPC_ETIMEDOUT) return shmrpc__q_timed_out(q, timeout_ms, "empty");
    if (rc != 0) return rc;
    s->data = payload(q, pos, start, len);
    s->len = len;
    s->pos = pos;
    s->state = S_READING;
    return 0;
}

int shmrpc_queue_release(shmrpc_queue *q, shmrpc_queue_span *s)
{
    if (!q || !s || s->state != S_READING) return fail(SHMRPC_EINVAL, "not a peeked span");
    s->state = 0;
    s->data = NULL;
    if (gone(q)) return shmrpc__q_cut_fail(q);
    if (q->bcast) return q->sub < 0 || shmrpc__q_finish_read(q, s->pos) != 0 ? SHMRPC_EPROTO : 0;
    return unless_cut(q, shmrpc__q_give_back(q, s->pos));
}
