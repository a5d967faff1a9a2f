/* SPDX-License-Identifier: MIT */
/* The threads that run a tcp:// worker's calls (docs/wire.md, "Calls in flight"): jobs
 * handed to them and taken back, the pool started as calls need it and ended. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "transport/tcp/tcp_int.h"
#include "core/wait.h"
#include "transport/tcp/tcp_server_int.h"
#include "rpc/meta.h"

/* A call larger than this keeps its buffers only for itself. */
#define CALL_KEEP ((size_t)1 << 20)

#define POOL_WAIT_NS (200 * 1000) /* a job waiting this long gets another thread */

void shmrpc__tcp_buf_shed(shmrpc_buf *b)
{
    if (b->cap > CALL_KEEP) {
        shmrpc_buf_destroy(b);
        shmrpc_buf_init(b);
    }
}

/* --- the threads that run calls ----------------------------------------------------------
 * The worker's own thread stays the only one that touches connections, the budget and the
 * statistics; a pool thread sees only the jobs it takes from todo and gives back in done. */

job *shmrpc__tcp_job_get(worker *w)
{
    job *j = w->spare_jobs;
    if (j) {
        w->spare_jobs = j->next;
        w->n_spare--;
    } else {
        j = calloc(1, sizeof *j);
        if (!j) return NULL;
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        int rc = pthread_cond_init(&j->scv, &ca);
        pthread_condattr_destroy(&ca);
        if (rc) {
            free(j);
            return NULL;
        }
        shmrpc_buf_init(&j->req);
        shmrpc_buf_init(&j->resp);
        shmrpc_buf_init(&j->meta);
        shmrpc_buf_init(&j->items);
        shmrpc_buf_init(&j->framing);
        shmrpc_buf_init(&j->in);
    }
    j->next = NULL;
    j->stream = false;
    j->ways = 0;
    atomic_store_explicit(&j->stopped, 0, memory_order_relaxed);
    j->charged = 0;
    j->ns = -1;
    return j;
}

static void job_free(job *j)
{
    shmrpc_buf_destroy(&j->req);
    shmrpc_buf_destroy(&j->resp);
    shmrpc_buf_destroy(&j->meta);
    shmrpc_buf_destroy(&j->items);
    shmrpc_buf_destroy(&j->framing);
    shmrpc_buf_destroy(&j->in);
    pthread_cond_destroy(&j->scv);
    free(j);
}

/* Gives j's budget back and keeps it for another call (as many as the threads, at most). */
void shmrpc__tcp_job_put(worker *w, job *j)
{
    shmrpc__tcp_budget_charge(w, j->charged, 0);
    j->charged = 0;
    j->p = NULL;
    if (w->n_spare >= w->pool_max) {
        job_free(j);
        return;
    }
    shmrpc__tcp_buf_shed(&j->req);
    shmrpc__tcp_buf_shed(&j->resp);
    shmrpc_buf_clear(&j->items);
    shmrpc__tcp_buf_shed(&j->items);
    shmrpc__tcp_buf_shed(&j->framing);
    shmrpc_buf_clear(&j->in);
    shmrpc__tcp_buf_shed(&j->in);
    j->next = w->spare_jobs;
    w->spare_jobs = j;
    w->n_spare++;
}

/* Whether the client of a call the pool runs still waits for it (shmrpc_ctx_cancelled): not
 * once the worker closed its connection (its end of stream, watched while the call runs,
 * or a reset), nor, for a stream, once the server stops or the client broke its window. */
static int job_wanted(void *arg)
{
    job *j = arg;
    int stopped = atomic_load_explicit(&j->stopped, memory_order_relaxed);
    if (stopped) return stopped;
    /* left first: a CANCEL served before the connection went is then seen (stream_why). */
    bool left = atomic_load_explicit(&j->p->left, memory_order_acquire);
    if (atomic_load_explicit(&j->cancelled, memory_order_acquire)) return SHMRPC_ECANCELLED;
    return left ? SHMRPC_EPEERDIED : 0;
}

void shmrpc__tcp_run_job(worker *w, shmrpc_ctx *ctx, job *j)
{
    ctx->draining = j->draining;
    const char *why;
    if (j->meta.len && (j->rc = shmrpc__ctx_set_meta(ctx, j->meta.data, j->meta.len, &why))) {
        snprintf(j->msg, sizeof j->msg, "%s", why);
        j->ns = -1;
        return;
    }
    ctx->budget_ns = j->budget_ns;
    ctx->wanted = job_wanted;
    ctx->wanted_arg = j;
    if (j->stream) {
        j->w = w;
        j->ctx = ctx;
        if (j->ways & SHMRPC__STREAM_OUT) {
            ctx->send = shmrpc__tcp_stream_write;
            ctx->send_arg = j;
        }
        if (j->ways & SHMRPC__STREAM_IN) {
            ctx->recv = shmrpc__tcp_stream_read;
            ctx->recv_arg = j;
        }
    }
    const uint8_t *at = j->off ? j->req.data + j->off : j->req.data; /* NULL when empty */
    j->rc = shmrpc__dispatch(w->l->server, ctx, j->method, shmrpc_bytes_of(at, j->req.len - j->off),
                             &j->resp);
    ctx->wanted = NULL; /* the job goes back to the worker */
    ctx->send = NULL;
    ctx->recv = NULL;
    j->ns = ctx->ran_ns;
    if (j->rc) snprintf(j->msg, sizeof j->msg, "%s", shmrpc__ctx_msg(ctx));
}

/* A pool thread: takes jobs in order and runs each on its own ctx until quit. It inherits
 * the worker's blocked SIGTERM, which only the worker's own thread opens. */
static void *pool_main(void *arg)
{
    worker *w = arg;
    shmrpc_ctx ctx;
    bool have_ctx = false;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->todo && !w->quit) {
            w->idle++;
            pthread_cond_wait(&w->cv, &w->mu);
            w->idle--;
            if (w->wakes) w->wakes--;
        }
        if (!w->todo) break;
        job *j = w->todo;
        w->todo = j->next;
        if (!w->todo) w->todo_end = &w->todo;
        w->n_todo--;
        pthread_mutex_unlock(&w->mu);
        /* Made for the first call, and again for the next when it could not be (no memory):
         * a thread that once had none does not fail every call it takes after. */
        if (!have_ctx && shmrpc__ctx_init(&ctx, w->l->server) == 0) {
            have_ctx = true;
            ctx.timed = true; /* the worker's own thread counts the call in the statistics */
        }
        if (have_ctx) {
            shmrpc__tcp_run_job(w, &ctx, j);
        } else {
            j->rc = SHMRPC_ENOMEM;
            snprintf(j->msg, sizeof j->msg, "out of memory for the call's context: not run");
        }
        pthread_mutex_lock(&w->mu);
        bool first = !w->done;
        j->next = w->done;
        w->done = j;
        if (first) {
            uint64_t one = 1;
            if (write(w->done_fd, &one, sizeof one) < 0) {
                /* the counter is far from full: never */
            }
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (have_ctx) shmrpc__ctx_destroy(&ctx);
    return NULL;
}

/* One more thread for the jobs waiting, with mu held: an idle one woken, else a new one
 * while there are fewer than pool_max and one for each stream (which holds its thread for
 * its life: streams do not take the threads of calls); true when one must be started (after
 * mu). */
static bool pool_more(worker *w)
{
    if (w->idle > w->wakes) {
        w->wakes++;
        pthread_cond_signal(&w->cv);
        return false;
    }
    return w->n_threads < w->pool_max + w->n_streams;
}

/* Hands j to the pool; false when no thread runs and none can be started (the caller runs
 * it in place). A thread is woken (or started) only when none is awake: an awake one takes
 * the jobs one after another, so quick calls cost one handoff, not a thread each. When the
 * oldest job waits longer than POOL_WAIT_NS (the awake threads are in slow calls),
 * pool_nudge adds another, up to pool_max. */
bool shmrpc__tcp_pool_give(worker *w, job *j)
{
    j->queued_ns = shmrpc__now_ns();
    pthread_mutex_lock(&w->mu);
    *w->todo_end = j;
    w->todo_end = &j->next;
    w->n_todo++;
    bool start = w->n_threads - w->idle + w->wakes == 0 && pool_more(w);
    pthread_mutex_unlock(&w->mu);
    if (!start) return true;
    if (pthread_create(&w->threads[w->n_threads], NULL, pool_main, w) == 0) {
        w->n_threads++;
        return true;
    }
    if (w->n_threads) return true; /* those that run will take it */
    pthread_mutex_lock(&w->mu);    /* nobody took it: it was the only one */
    w->todo = NULL;
    w->todo_end = &w->todo;
    w->n_todo = 0;
    pthread_mutex_unlock(&w->mu);
    return false;
}

static void pool_start(worker *w)
{
    if (pthread_create(&w->threads[w->n_threads], NULL, pool_main, w) == 0) w->n_threads++;
}

/* Called by the worker's own thread while jobs wait: another thread when the oldest has
 * waited POOL_WAIT_NS. */
void shmrpc__tcp_pool_nudge(worker *w, int64_t now)
{
    pthread_mutex_lock(&w->mu);
    bool start = w->todo && now - w->todo->queued_ns >= POOL_WAIT_NS && pool_more(w);
    pthread_mutex_unlock(&w->mu);
    if (start) pool_start(w);
}

void shmrpc__tcp_count_busy(worker *w)
{
    if (w->index >= 0)
        atomic_store_explicit(&w->l->load->busy[w->index], w->running, memory_order_relaxed);
}

/* The calls of p that wait for a thread of the pool are not run: their client is gone,
 * and nobody would read their answers. Those a thread took run to their end. */
void shmrpc__tcp_drop_waiting(worker *w, peer *p)
{
    job *dropped = NULL;
    pthread_mutex_lock(&w->mu);
    job **at = &w->todo;
    while (*at) {
        job *j = *at;
        if (j->p != p) {
            at = &j->next;
            continue;
        }
        *at = j->next;
        w->n_todo--;
        j->next = dropped;
        dropped = j;
    }
    w->todo_end = at;
    pthread_mutex_unlock(&w->mu);
    while (dropped) {
        job *j = dropped;
        dropped = j->next;
        p->running--;
        w->running--;
        if (j->stream) {
            shmrpc__tcp_results_close(w, j);
            p->n_streams--;
            w->n_streams--;
            shmrpc__tcp_stream_ended(w);
        }
        if (j->peer_prev)
            j->peer_prev->peer_next = j->peer_next;
        else
            p->jobs = j->peer_next;
        if (j->peer_next) j->peer_next->peer_prev = j->peer_prev;
        shmrpc__tcp_job_put(w, j);
    }
    shmrpc__tcp_count_busy(w);
}

void shmrpc__tcp_pool_join(worker *w)
{
    if (!w->threads) return;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_mutex_unlock(&w->mu);
    pthread_cond_broadcast(&w->cv);
    for (int i = 0; i < w->n_threads; i++)
        pthread_join(w->threads[i], NULL);
    w->n_threads = 0;
}

/* Ends the pool: true when its threads are gone. Threads still in a handler (the drain
 * ran out of time) are left to the process's exit, with what they use. */
bool shmrpc__tcp_pool_end(worker *w)
{
    if (!w->threads) return true;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_mutex_unlock(&w->mu);
    pthread_cond_broadcast(&w->cv);
    if (w->running) return false;
    for (int i = 0; i < w->n_threads; i++)
        pthread_join(w->threads[i], NULL);
    while (w->spare_jobs) {
        job *j = w->spare_jobs;
        w->spare_jobs = j->next;
        job_free(j);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->threads);
    if (w->done_fd >= 0) close(w->done_fd);
    return true;
}

int shmrpc__tcp_pool_init(worker *w, int n)
{
    w->threads = calloc((size_t)n + STREAMS_MAX, sizeof *w->threads);
    w->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!w->threads || w->done_fd < 0) {
        free(w->threads);
        w->threads = NULL;
        if (w->done_fd >= 0) close(w->done_fd);
        w->done_fd = -1;
        return 0; /* the calls run in place, one after another */
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->todo_end = &w->todo;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->tag_done};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->done_fd, &ev) != 0) return SHMRPC_ESYS(errno);
    w->pool_max = n;
    return 0;
}
