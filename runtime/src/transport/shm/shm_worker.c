/* SPDX-License-Identifier: MIT */
/* A worker of the shm:// transport: it takes calls from any connection (off the doorbell,
 * or from the channel it watches), maps and checks their channels, runs each call and
 * answers it in its channel, and between calls sweeps and lets go of closed connections. */
#include "transport/shm/shm_server_int.h"

#include "core/proc.h"
#include "rpc/meta.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SWEEP_LOOK_NS ((int64_t)1000 * 1000) /* how often a busy worker looks at the due time */

/* Whether any connection's request waits on the doorbell (its bits read, not taken). */
static bool any_pending(const shmrpc__shm_ctl *ctl)
{
    uint64_t any = 0;
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS / 64; i++)
        any |= atomic_load(&ctl->pending[i]);
    return any != 0;
}

/* Takes one pending request off the doorbell: the slot's index, or -1. The bits are read
 * once before the scan, which starts where the last one left off: a worker between calls
 * looks at them twice, and they are almost always all clear. */
static int take_pending(worker *w)
{
    if (!any_pending(w->ctl)) return -1;
    const unsigned words = SHMRPC__MAX_CONNS / 64;
    for (unsigned k = 0; k <= words; k++) {
        unsigned wi = (w->next / 64 + k) % words;
        uint64_t v = atomic_load(&w->ctl->pending[wi]);
        if (k == 0) v &= ~(uint64_t)0 << (w->next % 64); /* the start word's later bits first */
        while (v) {
            unsigned bit = (unsigned)__builtin_ctzll(v);
            uint64_t mask = (uint64_t)1 << bit;
            if (atomic_fetch_and(&w->ctl->pending[wi], ~mask) & mask) {
                w->next = (wi * 64 + bit + 1) % SHMRPC__MAX_CONNS;
                return (int)(wi * 64 + bit);
            }
            v &= ~mask;
        }
    }
    return -1;
}

static void worker_chan_close(worker_chan *c)
{
    shmrpc__chan_unmap(&c->map);
    c->open = false;
}

/* The channel that slot's connection of gen, whose client is pid, leads to now: taken
 * from the manager, or opened through /proc, and checked (name, seals, owner, mode, size).
 * Its descriptor, or -1. */
static int chan_fd_of(worker *w, unsigned slot, uint32_t gen, int32_t pid, uint64_t *size)
{
    char name[160];
    shmrpc__shm_chan_name(name, sizeof name, w->l->key, w->ctl->owner.pid, slot, gen);
    int32_t chan_fd = atomic_load(&w->ctl->slots[slot].chan_fd);
    int fd = shmrpc__shm_held_take(w->l, slot, gen), out = -1;
    shmrpc_buf err; /* why a channel cannot be opened: nobody to tell, the call goes unanswered */
    shmrpc_buf_init(&err);
    int rc = fd >= 0 ? shmrpc__shm_check_channel(fd, name + 1, PAGE, &out, size, &err)
                     : shmrpc__shm_open_channel(pid, chan_fd, name + 1, PAGE, &out, size, &err);
    shmrpc_buf_destroy(&err);
    return rc == 0 ? out : -1;
}

/* Maps the channel of slot's connection of gen anew (worker_chan_get). */
static worker_chan *worker_chan_open(worker *w, unsigned slot, uint32_t gen)
{
    worker_chan *c = &w->chans[slot];
    shmrpc__shm_slot *s = &w->ctl->slots[slot];
    worker_chan_close(c);
    int32_t pid = atomic_load(&s->client.pid);
    uint64_t size;
    c->map.fd = chan_fd_of(w, slot, gen, pid, &size);
    if (c->map.fd < 0) return NULL;
    c->map.max_size = shmrpc__chan_max_size(w->l->max_msg);
    /* Looked at again: the client may have let go and claimed it anew meanwhile. */
    if (size > c->map.max_size || atomic_load(&s->state) != SHM_SLOT_OPEN ||
        atomic_load(&s->gen) != gen || atomic_load(&s->client.pid) != pid) {
        close(c->map.fd);
        c->map.fd = -1;
        return NULL;
    }
    c->map.head = shmrpc__shm_map(c->map.fd, size);
    if (c->map.head == NULL) {
        close(c->map.fd);
        c->map.fd = -1;
        return NULL;
    }
    c->map.mapped = size;
    c->gen = gen;
    c->call = c->passed = 0;
    c->missed = 0;
    c->open = true;
    return c;
}

/* The channel of slot's connection, mapped (once per connection), or NULL when the slot
 * is not open or its channel cannot be had; *before: whether it was mapped already. */
static worker_chan *worker_chan_get(worker *w, unsigned slot, bool *before)
{
    worker_chan *c = &w->chans[slot];
    shmrpc__shm_slot *s = &w->ctl->slots[slot];
    if (atomic_load(&s->state) != SHM_SLOT_OPEN) return NULL;
    uint32_t gen = atomic_load(&s->gen);
    *before = c->open && c->gen == gen;
    return *before ? c : worker_chan_open(w, slot, gen);
}

/* Writes an answer whose bytes fit the state's line or have their room in the channel
 * already, and hands it back. */
static void hand_back(worker_chan *c, int status, const void *data, size_t n)
{
    shmrpc__shm_chan *h = c->map.head;
    /* A small answer rides in the state's line, which RESPONSE moves anyway. One that the
     * handler wrote in its loan (shmrpc_ctx_loan) is in place already. */
    uint8_t *dst = n <= SHMRPC__CHAN_SMALL ? h->small : shmrpc__chan_data(&c->map);
    if (n && dst != data) memcpy(dst, data, n);
    h->status = status;
    h->resp_len = (uint32_t)n;
    /* Before RESPONSE: the client's next request reads it after the answer. */
    if (atomic_load_explicit(&h->watcher, memory_order_relaxed) != c->watch_as)
        atomic_store_explicit(&h->watcher, c->watch_as, memory_order_relaxed);
    /* A store, not a compare-and-swap, which would wait for the line that the client keeps
     * reading: while the call is this worker's, nobody else writes the state (a client
     * that gave up on it marked the claim instead), and the client writes its next
     * request only after this answer. Only a client that took this worker for dead (a bad
     * write to the taker) may have moved on: then the channel holds another call's number,
     * and the answer is not published. The lock is let go of after the answer: with no
     * waiter that is a compare-and-swap and no syscall; a client asleep on it (the kernel
     * marked it so) is handed it then, and finds the answer there. A worker that claimed
     * the next call may have written the lock already: a word that no longer names this
     * worker is left alone. A number written over the call's (a bad write, which the
     * client's checks put back) moved nobody on: the claim still names this call, and a
     * client's next call is the number after it. */
    uint64_t call = atomic_load_explicit(&h->call, memory_order_relaxed);
    if (call == c->call || (call != c->call + 1 &&
                            atomic_load_explicit(&h->claim, memory_order_relaxed) >> 2 == c->call))
        atomic_store_explicit(&h->state.word, SHM_CHAN_RESPONSE, memory_order_release);
    /* The lock's exchange (or a fence) comes between the answer and the look at the state's
     * sleepers: a client that counts itself a sleeper and then finds no answer (the waiter
     * of calls in flight sleeps on the state) is seen, or sees the answer. */
    if (c->lock_tid)
        shmrpc__lock_release(&h->lock, c->lock_tid);
    else
        atomic_thread_fence(memory_order_seq_cst);
    c->lock_tid = 0;
    shmrpc__wake(&h->state, 1);
}

/* Puts the answer (or the error message) into the channel and hands it back. */
static void answer(worker_chan *c, int status, const void *data, size_t n)
{
    if (n <= SHMRPC__CHAN_SMALL) {
        hand_back(c, status, data, n);
        return;
    }
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    if (shmrpc__chan_reserve(&c->map, n, &err) != 0) {
        status = SHMRPC_ETOOBIG;
        data = shmrpc__msg_get(&err);
        n = strlen(data);
        if (n > SHMRPC__CHAN_SMALL && shmrpc__chan_reserve(&c->map, n, &err) != 0) n = 0;
    }
    hand_back(c, status, data, n); /* room made, or a short message */
    shmrpc_buf_destroy(&err);
}

static void run_call(worker *w, worker_chan *c);

/* Whether this worker may watch the channel of slot, which it answers: when it served
 * that connection last as well and no other connection waits, while it spins between
 * calls. Several clients keep the doorbell, which serves them in turn: a watched channel
 * would be served before the others' bits, once more each time the doorbell happened to
 * be empty. */
static bool may_watch(worker *w, unsigned slot)
{
    return w->l->wait.mode != SHMRPC_WAIT_SLEEP && w->last_slot == (int)slot &&
           !shmrpc__shm_stopping(w) && !any_pending(w->ctl);
}

/* Stops watching a channel: the watcher cleared (only if it still names this worker),
 * then the state looked at. A request that its client wrote while the watcher named this
 * worker did not ring: it rings now, so that whichever worker looks at the doorbell next
 * takes it (unless a worker claimed it already). */
static void unwatch(worker *w)
{
    int slot = w->watch;
    w->watch = -1;
    if (slot < 0 || !w->chans[slot].open) return;
    shmrpc__shm_chan *h = w->chans[slot].map.head;
    uint32_t me = w->index + 1;
    if (!atomic_compare_exchange_strong(&h->watcher, &me, 0)) return;
    uint64_t call = atomic_load(&h->call); /* before the state, as take() reads them */
    if (atomic_load(&h->state.word) == SHM_CHAN_REQUEST &&
        shmrpc__shm_claimable(atomic_load(&h->claim), call))
        shmrpc__shm_ring(w->ctl, (unsigned)slot); /* as its client would have */
}

/* Claims the call waiting in channel c for this worker. Its number is read before its
 * state: one read after a REQUEST may be the client's next call's, written but not yet
 * requested, and one read before is that REQUEST's or an older call's, which the claim
 * already names. The claim is a compare-and-swap from the number just before the call's
 * (shmrpc__shm_claimable), which a client withdrawing the call makes too, so one of them
 * has it; nothing is written on the state's line, which the client reads as it spins. A
 * number merely above the claim's would not do: one written over a call being served
 * would make it look new, and this worker would run it a second time (issue 40). */
static bool take(worker_chan *c)
{
    shmrpc__shm_chan *h = c->map.head;
    uint64_t call = atomic_load_explicit(&h->call, memory_order_acquire);
    if (atomic_load_explicit(&h->state.word, memory_order_acquire) != SHM_CHAN_REQUEST)
        return false;
    uint64_t claim = atomic_load_explicit(&h->claim, memory_order_relaxed);
    if (!shmrpc__shm_claimable(claim, call) ||
        !atomic_compare_exchange_strong(&h->claim, &claim,
                                        shmrpc__shm_claim(call, SHM_CLAIM_TAKEN))) {
        c->passed = call;
        return false;
    }
    c->call = call;
    return true;
}

/* After a take that found nothing to take in slot's channel, mapped by an earlier call:
 * the channel the slot leads to now, mapped in its stead when it is another file, or NULL
 * when it is the same (or cannot be had). Connections of a slot are told apart by their
 * gen, which a bad write can set back to one this worker mapped before (a claim over a
 * gen of ~0 makes gen 0 again): the new connection's channel then has the name of the one
 * mapped here, and each of its calls would be looked for in the old one, never taken,
 * until the slot's gen changed (issue 40: shm_scribble_test's client whose calls were
 * never taken again). So the file is compared here (its inode), at the second take in a
 * row on the channel that found nothing: a call that is taken costs nothing more, and one
 * lost to another worker (or withdrawn) seldom twice in a row (4 clients on 2 workers:
 * 0-71 checks in 25 000-70 000 calls a worker; at every such take, 160-220). The client
 * rings again within its next check (5 ms spinning, 20 asleep). */
static worker_chan *worker_chan_moved(worker *w, unsigned slot)
{
    worker_chan *c = &w->chans[slot];
    c->missed = 0;
    struct stat mapped, now;
    uint64_t size;
    int fd = chan_fd_of(w, slot, c->gen, atomic_load(&w->ctl->slots[slot].client.pid), &size);
    bool moved = fd >= 0 && fstat(fd, &now) == 0 && fstat(c->map.fd, &mapped) == 0 &&
                 (now.st_ino != mapped.st_ino || now.st_dev != mapped.st_dev);
    if (fd >= 0) close(fd);
    if (!moved) return NULL;
    if (w->watch == (int)slot) unwatch(w); /* the old channel's watcher named this worker */
    return worker_chan_open(w, slot, c->gen);
}

static void serve_one(worker *w, unsigned slot)
{
    bool mapped_before;
    worker_chan *c = worker_chan_get(w, slot, &mapped_before);
    if (c == NULL) { /* closed or broken: nothing to answer */
        /* Nor to watch: its state, left at REQUEST by a client that died, would bring this
         * worker back here at once, for ever, and keep it from every other connection. */
        if (w->watch == (int)slot) w->watch = -1;
        return;
    }
    /* Noted before the claim, which publishes it: a client that finds its call claimed
     * with no taker named judges this worker until it is named. */
    _Atomic uint32_t *taking = &w->ctl->workers[w->index].taking;
    /* Release, as each store of the note, so that whichever of them a client reads
     * carries what this worker wrote before it (the naming, for a clear). */
    atomic_store_explicit(taking, slot + 1, memory_order_release);
    /* Two takes in a row that found nothing: another worker's, or the client's withdrawal,
     * now and then; every one, in a mapping of a file the slot no longer leads to. */
    if (!take(c) && (!mapped_before || ++c->missed < 2 ||
                     (c = worker_chan_moved(w, slot)) == NULL || !take(c))) {
        atomic_store_explicit(taking, 0, memory_order_release);
        return;
    }
    c->missed = 0;
    shmrpc__shm_chan *h = c->map.head;
    /* The lock right after the claim, on the claim's line. A store: the claim makes the
     * channel this worker's, and whoever held the lock before finished or died (one that
     * has yet to let go of it finds a word that no longer names it, and leaves it be). */
    atomic_store_explicit(&h->lock, w->tid, memory_order_release);
    /* Only when it changes: it is on the state's line, which the client reads as it spins. */
    if (atomic_load_explicit(&h->worker, memory_order_relaxed) != w->index)
        atomic_store_explicit(&h->worker, w->index, memory_order_relaxed);
    /* The client watches the taker once taker_call is its call's number, written last;
     * until then it judges the workers whose `taking` names the channel, so that note is
     * cleared only after. */
    if (atomic_load_explicit(&h->taker.pid, memory_order_relaxed) != w->pid ||
        atomic_load_explicit(&h->taker.start, memory_order_relaxed) != w->start)
        shmrpc__shm_proc_set(&h->taker, w->pid, w->start);
    atomic_store_explicit(&h->taker_call, c->call, memory_order_release);
    atomic_store_explicit(taking, 0, memory_order_release);
    /* A client that slept before the call was taken sleeps on the state: wake it, so it
     * sleeps on the lock from now on (no syscall when it spins). */
    shmrpc__wake(&h->state, 1);
    c->lock_tid = w->tid;
    /* Watching the channel after the answer: its client's next request needs no doorbell. */
    c->watch_as = may_watch(w, slot) ? w->index + 1 : 0;
    w->watch = c->watch_as ? (int)slot : -1;
    run_call(w, c); /* its answer lets go of the lock */
    if (c->lock_tid) shmrpc__lock_release(&c->map.head->lock, w->tid);
    c->lock_tid = 0;
}

/* Room for the answer in the channel of the call being run (shmrpc_ctx_loan). When the
 * channel must grow while the handler reads its request there, it grows into a new mapping
 * and the old one stays until the answer is sent, so the request's view stays valid. */
static int worker_loan(void *arg, size_t size, void **ptr)
{
    worker *w = arg;
    worker_chan *c = w->serving;
    if (c == NULL) return SHMRPC_EINVAL;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    int rc = w->in_place && w->kept.head == NULL
                 ? shmrpc__chan_reserve_keep(&c->map, size, &w->kept, &err)
                 : shmrpc__chan_reserve(&c->map, size, &err);
    shmrpc_buf_destroy(&err);
    if (rc == 0) *ptr = shmrpc__chan_data(&c->map);
    return rc;
}

/* Why the client of the call being run gave up on it by its claim: it cancelled it (or
 * ended its stream), or its deadline passed by its own clock, which may end before the
 * server's; or 0. */
static int claim_why(const worker_chan *c)
{
    uint64_t claim = atomic_load(&c->map.head->claim);
    if (claim == shmrpc__shm_claim(c->call, SHM_CLAIM_CANCELLED)) return SHMRPC_ECANCELLED;
    return claim == shmrpc__shm_claim(c->call, SHM_CLAIM_ABANDONED) ? SHMRPC_ETIMEDOUT : 0;
}

/* Whether the slot of channel c no longer names its connection: freed by the manager when
 * the client's rendezvous hangs up (it died, or closed), or by a sweep when its process is
 * gone. */
static bool slot_gone(const worker *w, const worker_chan *c)
{
    const shmrpc__shm_slot *s = &w->ctl->slots[c - w->chans];
    return atomic_load(&s->state) != SHM_SLOT_OPEN || atomic_load(&s->gen) != c->gen;
}

/* Whether the client of the call being run still waits for it (shmrpc_ctx_cancelled; its
 * deadline is dispatch's to tell): not once its slot was freed, nor once the claim says it
 * gave up. Three loads: a handler may ask often. */
static int worker_wanted(void *arg)
{
    worker *w = arg;
    worker_chan *c = w->serving;
    if (c == NULL) return 0;
    if (slot_gone(w, c)) return SHMRPC_EPEERDIED;
    if (w->batch_cancel && atomic_load_explicit(w->batch_cancel, memory_order_relaxed))
        return SHMRPC_ECANCELLED;
    return claim_why(c);
}

/* After the answer: the answer buffer's own storage back, the mapping a loan kept gone. */
static void loan_end(worker *w)
{
    shmrpc__ctx_unloan(&w->ctx);
    if (w->kept.head) shmrpc__chan_unmap(&w->kept); /* fd -1: the mapping only */
    w->serving = NULL;
    w->in_place = w->ctx.req_in_room = false;
}

/* --- streams (docs/streams.md, "How shm:// carries it") ------------------------------- */

/* Serving in the listening process, the worker answers the rendezvous now and then, during
 * a long stream as between calls: no client would connect otherwise. */
static void worker_pump(worker *w, int64_t now)
{
    if (!w->pumps || now < w->next_pump_ns) return;
    shmrpc__rdv_pump(w->l->rdv);
    w->next_pump_ns = now + 1000 * 1000;
}

/* Whether the client of the stream being run still wants its items: the claim first (a
 * client that ends its stream and then closes its connection ended the stream: it did not
 * die), then this server's stop (the handler is told as on inproc://), then the slot. */
static int worker_stream_wanted(void *arg)
{
    worker *w = arg;
    worker_chan *c = w->serving;
    int why = claim_why(c);
    if (why == 0 && shmrpc__shm_stopping(w)) why = SHMRPC_ECANCELLED;
    if (why == 0 && slot_gone(w, c)) why = SHMRPC_EPEERDIED;
    return why;
}

/* Whether the process of the stream's client still runs. */
static bool client_runs(const worker *w)
{
    const shmrpc__shm_slot *s = &w->ctl->slots[w->serving - w->chans];
    return shmrpc__proc_running(atomic_load(&s->client.pid), atomic_load(&s->client.start));
}

/* The check of a wait for room: the rendezvous pumped, whether the stream goes on, and
 * whether its client still runs. Its slot is freed when its rendezvous hangs up, which a
 * child it forked delays for as long as that child holds a copy of the socket; and sweeps
 * do not run while this worker serves the stream. */
static int worker_stream_check(void *arg)
{
    worker *w = arg;
    worker_pump(w, shmrpc__now_ns());
    int why = worker_stream_wanted(w);
    return why == 0 && !client_runs(w) ? SHMRPC_EPEERDIED : why;
}

static shmrpc__stream_ring *worker_ring(worker *w)
{
    /* Computed at each use: a loan of the handler's may have moved the mapping. */
    return (shmrpc__stream_ring *)(shmrpc__chan_data(&w->serving->map) + w->st.off);
}

static shmrpc__stream_ring *worker_in_ring(worker *w)
{
    return (shmrpc__stream_ring *)(shmrpc__chan_data(&w->serving->map) + w->st.in_off);
}

/* The waiter of a wait for room in the worker's ring, or for items in the client's. */
static shmrpc__waiter stream_waiter(worker *w)
{
    worker_chan *c = w->serving;
    return (shmrpc__waiter){.opts = &w->l->wait,
                            .self = &w->ctl->workers[w->index].presence,
                            .peer = &w->ctl->slots[c - w->chans].presence,
                            .check = worker_stream_check,
                            .check_arg = w,
                            .awake = &w->ctl->awake,
                            .check_ns = w->pumps ? 1000 * 1000 : 0};
}

/* The waiter of a wait for the client's items in r: asleep on the reader's line (shm.h), and
 * making the fence for the client, which publishes lightly once the ring's fences says so. */
static shmrpc__waiter stream_in_waiter(worker *w, shmrpc__stream_ring *r)
{
    shmrpc__waiter waiter = stream_waiter(w);
    waiter.sleeping = &r->reader_asleep;
    waiter.sleeping_bit = 1;
    waiter.fence_wakers = w->st.fences;
    return waiter;
}

/* The checks of a look after the first: the rendezvous pumped, the deadline, and whether the
 * stream goes on. */
static int stream_looks_again(worker *w, int64_t deadline)
{
    int64_t now = shmrpc__now_ns();
    worker_pump(w, now);
    return now >= deadline ? SHMRPC_ETIMEDOUT : worker_stream_wanted(w);
}

/* Waits until the ring has room for the next piece of an item with left bytes still to go
 * (shmrpc__ring_fit): *piece, how many go now. The client's count is read once a look and
 * checked: one that says it read more than was written ends the stream. */
static int ring_room(worker *w, size_t left, int64_t deadline, uint32_t *piece)
{
    worker_stream *st = &w->st;
    for (bool again = false;; again = true) {
        /* A client's count that moves without making room ends each wait at once: what a
         * send looks at is looked at each time round, not only when a wait lasts. */
        int why = again ? stream_looks_again(w, deadline) : 0;
        if (why != 0) return why;
        shmrpc__stream_ring *r = worker_ring(w);
        uint32_t head = atomic_load_explicit(&r->head.word, memory_order_acquire);
        st->drained = head == st->tail;
        int fit = shmrpc__ring_fit(st->cap, st->tail, head, left, piece);
        if (fit != 1) {
            st->broken = fit == SHMRPC_EPROTO;
            return fit;
        }
        /* All of it, for a client that stops meanwhile. */
        shmrpc__ring_publish(r, st->cap, st->tail, st->light, true);
        shmrpc__waiter waiter = stream_waiter(w);
        int rc = shmrpc__wait_while(&r->head, head, deadline, &waiter);
        if (rc != 0) return rc;
    }
}

/* Writes a record of len bytes at p, with left bytes of its item after it, and wakes the
 * client if it sleeps (shmrpc__ring_publish). Lightly where the kernel lets the client make
 * the fence (its wait's fence_wakers): a fence of the worker's own stalls it each item and
 * keeps it from running ahead (4.5 M items a second of 16 B, against 13 M so, when it was a
 * sequentially consistent store of the count; bench/stream_bench.c). */
static void ring_write(worker *w, const uint8_t *p, uint32_t len, uint32_t left)
{
    worker_stream *st = &w->st;
    shmrpc__stream_ring *r = worker_ring(w);
    shmrpc__ring_put(r, st->cap, &st->tail, p, len, left);
    shmrpc__ring_publish(r, st->cap, st->tail, st->light, left == SHMRPC__RING_END);
}

/* What a stream's status says to its handler, for the statuses every wait may end with. */
static const char *stream_why(int why)
{
    return why == SHMRPC_ETIMEDOUT    ? "the stream's deadline passed"
           : why == SHMRPC_EPEERDIED  ? "the stream's client died"
           : why == SHMRPC_ECANCELLED ? "the client closed or cancelled the stream, or the server "
                                        "stops"
                                      : shmrpc_strerror(why);
}

/* shmrpc_ctx_send over shm://: the item into the ring, in pieces when it is larger. A
 * writer that runs ahead of its reader reads the clock at every 64th item only (a read costs
 * 20-50 ns, as much as the rest of a small item's send), and its deadline waits that long
 * at most; one that its reader keeps up with (the ring was empty at its last look) reads
 * it at each, as does a worker that keeps the rendezvous (the pump, every millisecond). A
 * client that gives up at its own deadline marks the claim, which every send reads. */
static int worker_send(void *arg, const void *item, size_t n)
{
    worker *w = arg;
    int64_t deadline = shmrpc_ctx_deadline(&w->ctx);
    bool look = w->pumps || w->st.drained || w->st.sends++ % 64 == 0;
    int64_t now = look ? shmrpc__now_ns() : 0;
    if (now != 0) worker_pump(w, now);
    int why = n > UINT32_MAX ? SHMRPC_ETOOBIG : worker_stream_wanted(w);
    if (why == 0 && now != 0 && now >= deadline) why = SHMRPC_ETIMEDOUT;
    if (why == 0 && w->st.broken) why = SHMRPC_EPROTO;
    const uint8_t *p = item;
    size_t left = n;
    while (why == 0) {
        uint32_t piece;
        if ((why = ring_room(w, left, deadline, &piece)) != 0) break;
        left -= piece;
        ring_write(w, p, piece, (uint32_t)left);
        p += piece;
        if (left == 0) return 0;
    }
    return shmrpc_ctx_error(&w->ctx, why, "%s",
                            why == SHMRPC_ETOOBIG ? "an item of 4 GiB or more"
                            : why == SHMRPC_EPROTO
                                ? "the client's count of the stream's ring is off"
                                : stream_why(why));
}

/* Gives the handler why it can read no more of the client's items, with msg (NULL: the
 * status's own), and keeps it for its later reads. */
static int recv_failed(worker *w, int why, const char *msg)
{
    w->st.in_failed = why;
    return shmrpc_ctx_error(&w->ctx, why, "%s", msg ? msg : stream_why(why));
}

/* shmrpc_ctx_recv over shm://: the client's next item out of its ring, waiting for it (a
 * piece at a time when it is larger than a quarter of the ring): 1, 0 after the client's end,
 * or why not. The room goes back to the client every quarter of the ring, and before each
 * wait. The client's count is read once a look and checked, as is every record. */
static int worker_recv(void *arg, shmrpc_buf *item)
{
    worker *w = arg;
    worker_stream *st = &w->st;
    if (st->in_ended) return 0;
    if (st->in_failed) return recv_failed(w, st->in_failed, NULL);
    int64_t deadline = shmrpc_ctx_deadline(&w->ctx);
    int why = worker_stream_wanted(w);
    for (bool again = false; why == 0; again = true) {
        if (again && (why = stream_looks_again(w, deadline)) != 0) break;
        shmrpc__stream_ring *r = worker_in_ring(w);
        uint32_t tail = atomic_load_explicit(&r->tail.word, memory_order_acquire);
        shmrpc_buf err;
        shmrpc_buf_init(&err);
        int rc = shmrpc__ring_take(r, &st->rd, tail, item, &err);
        if (rc < 0) rc = recv_failed(w, rc, shmrpc__msg_get(&err));
        shmrpc_buf_destroy(&err);
        if (rc != SHMRPC__RING_NONE) {
            shmrpc__ring_give_back(r, &st->rd, rc == 2);
            if (rc == 2) st->in_ended = true;
            if (rc != 0) return rc == 2 ? 0 : rc;
            continue; /* a piece */
        }
        shmrpc__ring_give_back(r, &st->rd, true); /* the client may wait for the room */
        shmrpc__waiter waiter = stream_in_waiter(w, r);
        waiter.also = shmrpc__ring_next(r, &st->rd);
        waiter.also_old = st->rd.seen;
        rc = shmrpc__wait_while(&r->tail, tail, deadline, &waiter);
        /* Items that came meanwhile are read before a failure. */
        if (rc != 0 && !shmrpc__ring_came(r, &st->rd, tail)) why = rc;
    }
    return recv_failed(w, why, NULL);
}

/* After a handler that reads the client's items returned (with rc): the client is told, if it
 * did not send its end, so that its sends fail, and the room it waits for is given back. An
 * answer that reaches into the client's ring (a large one: an error's message and a stream's
 * status lie below it) waits until the client wrote its end, which it does at its next send,
 * done or answer; what it wrote meanwhile is passed over. A client that gave up or died
 * writes no more, and one whose ring lies suffers what it wrote: the answer then goes. When
 * the wait ends otherwise (the deadline by this worker's clock, the server's stop), the call
 * fails with that status instead, whose message lies below the ring: returned, with the
 * message in the call's. 0: the handler's answer goes. */
static int in_returned(worker *w, int rc)
{
    worker_stream *st = &w->st;
    if (st->in_ended) return 0;
    shmrpc__stream_ring *r = worker_in_ring(w);
    atomic_store(&r->returned, 1);
    size_t n = w->resp.len;
    bool reaches =
        !(st->ways & SHMRPC__STREAM_OUT) && rc == 0 && n > SHMRPC__CHAN_SMALL && n > st->in_off;
    int64_t deadline = st->deadline; /* the call's: dispatch forgot it */
    int why = 0, took = 0;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    while (reaches && st->in_failed != SHMRPC_EPROTO) {
        r = worker_in_ring(w);
        uint32_t tail = atomic_load_explicit(&r->tail.word, memory_order_acquire);
        do /* at most a ring's worth: shmrpc__ring_take checks against the room given back */
            took = shmrpc__ring_take(r, &st->rd, tail, NULL, &err);
        while (took == 0 || took == 1);
        shmrpc__ring_give_back(r, &st->rd, true);
        if (took < 0 || took == 2 || (why = stream_looks_again(w, deadline)) != 0) break;
        shmrpc__waiter waiter = stream_in_waiter(w, r);
        waiter.also = shmrpc__ring_next(r, &st->rd);
        waiter.also_old = st->rd.seen;
        int waited = shmrpc__wait_while(&r->tail, tail, deadline, &waiter);
        if (waited != 0 && !shmrpc__ring_came(r, &st->rd, tail)) {
            why = waited;
            break;
        }
    }
    shmrpc_buf_destroy(&err);
    if (!reaches) { /* what the client wrote is dropped: the room it may wait for, back */
        r = worker_in_ring(w);
        uint32_t tail = atomic_load_explicit(&r->tail.word, memory_order_acquire);
        if (tail - st->rd.head <= st->cap) st->rd.head = tail;
    }
    if (st->rd.pub != st->rd.head)
        shmrpc__ring_give_back(r, &st->rd, true); /* a changed head: no wake is missed */
    else
        shmrpc__wake(&r->head, 1);
    worker_chan *c = w->serving;
    if (why == 0 || claim_why(c) != 0 || slot_gone(w, c) || !client_runs(w)) return 0;
    return shmrpc_ctx_error(&w->ctx, why, "%s before the client's last item; the answer is lost",
                            why == SHMRPC_ETIMEDOUT ? "the stream's deadline passed"
                                                    : "the server stops");
}

/* --- batches of calls in flight (docs/shm-transport.md, "Calls in flight") ------------- */

/* The answers of the batch being run, in the channel as it is mapped now. */
static shmrpc__shm_batch_answers *batch_answers(worker_chan *c, uint64_t aoff)
{
    return (shmrpc__shm_batch_answers *)(shmrpc__chan_data(&c->map) + aoff);
}

/* Why a call of a batch is not run, its message in *why, or 0: its client went away, cancelled
 * it (or gave up on the whole batch), or its deadline passed before it began (now). */
static int batch_skip(worker *w, worker_chan *c, const _Atomic uint32_t *cancelled,
                      int64_t deadline, int64_t now, const char **why)
{
    if (slot_gone(w, c)) {
        *why = "the client went away before a worker began the call; it did not run";
        return SHMRPC_EPEERDIED;
    }
    if (claim_why(c) != 0 || atomic_load_explicit(cancelled, memory_order_relaxed)) {
        *why = "the call was cancelled by its client before a worker began it; it did not run";
        return SHMRPC_ECANCELLED;
    }
    if (deadline != 0 && now >= deadline) {
        *why = "the deadline passed before a worker began the call; it did not run";
        return SHMRPC_ETIMEDOUT;
    }
    return 0;
}

/* Writes the answer of call k of the batch at *at and publishes it (done): 0, or
 * SHMRPC_ETOOBIG when it does not fit what is left of the channel (nothing written then). */
static int batch_answer(worker_chan *c, uint64_t aoff, uint64_t *at, uint32_t k, bool light,
                        int status, const void *data, size_t n)
{
    uint64_t end = *at + 8 + ((n + 7) & ~(uint64_t)7);
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    int rc = shmrpc__chan_reserve(&c->map, end, &err); /* may move the mapping */
    shmrpc_buf_destroy(&err);
    if (rc != 0) return SHMRPC_ETOOBIG;
    uint8_t *p = shmrpc__chan_data(&c->map) + *at;
    int32_t st = status;
    uint32_t len = (uint32_t)n;
    memcpy(p, &st, 4);
    memcpy(p + 4, &len, 4);
    if (n) memcpy(p + 8, data, n);
    *at = end;
    shmrpc__shm_batch_answers *a = batch_answers(c, aoff);
    if (light) {
        shmrpc__publish_light(&a->done, k + 1, &a->client_asleep, 1);
    } else {
        atomic_store(&a->done.word, k + 1); /* sequentially consistent: then the sleepers */
        shmrpc__wake(&a->done, 1);
    }
    return 0;
}

/* Runs the batch of count calls (their records: len bytes; their metadata: mlen) that this
 * worker took on channel c, in order, each answered as it ends; then answers the batch, with
 * a message that fits the state's line (the records and answers before it stay as they are).
 * Before a call whose answer might not fit what is left of the channel, it stops (`stopped`):
 * the client sends the calls left again. A malformed record stops it with SHMRPC_EPROTO for
 * that call and the ones after. */
static void run_batch(worker *w, worker_chan *c, uint32_t count, uint32_t len, uint32_t mlen)
{
    uint64_t aoff = shmrpc__shm_batch_answers_off(len, mlen);
    const char *bad = NULL;
    if (count == 0 || count > SHMRPC__BATCH_MAX)
        bad = "a malformed batch";
    else if (mlen > SHMRPC_METADATA_MAX_BYTES)
        bad = "metadata over 4096 bytes";
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    if (!bad && shmrpc__chan_follow(&c->map, aoff + sizeof(shmrpc__shm_batch_answers), &err) != 0)
        bad = "a batch past its channel";
    shmrpc_buf_destroy(&err);
    if (bad) {
        answer(c, SHMRPC_EPROTO, bad, strlen(bad));
        return;
    }
    bool light = shmrpc__fence_register(); /* the client fences before it sleeps */
    if (light) atomic_store_explicit(&batch_answers(c, aoff)->light, 1, memory_order_relaxed);
    w->serving = c;
    w->ctx.loan = NULL; /* each answer goes into its record */
    w->ctx.draining = shmrpc__shm_stopping(w);
    uint64_t off = 0, at = aoff + sizeof(shmrpc__shm_batch_answers);
    bool stopped = false, lost = false;
    for (uint32_t k = 0; k < count && !bad && !stopped && !lost; k++) {
        /* Each field read once, and checked: the client may write over its records. */
        const uint8_t *data = shmrpc__chan_data(&c->map);
        shmrpc__shm_batch_call *rec = (shmrpc__shm_batch_call *)(data + off);
        uint32_t method, rlen;
        int64_t deadline;
        if (off > len || len - off < sizeof *rec) {
            bad = "a malformed call record";
            break;
        }
        /* Room for the largest answer, or the call waits for a batch of its own: the calls
         * from this one on did not run, and the client sends them again. */
        if (k > 0 && c->map.max_size - SHMRPC__CHAN_DATA - at < w->l->max_msg + 8) {
            stopped = true;
            break;
        }
        memcpy(&method, &rec->method, sizeof method);
        memcpy(&rlen, &rec->len, sizeof rlen);
        memcpy(&deadline, &rec->deadline, sizeof deadline);
        if (rlen > len - off - sizeof *rec || rlen > w->l->max_msg) {
            bad = "a malformed call record";
            break;
        }
        /* One clock read a call: it ends the call before in its method's statistics (its
         * answer is out), and tells whether this one's deadline passed. serve() counts the
         * batch's last call. */
        int64_t now = shmrpc__now_ns();
        shmrpc__ctx_count(&w->ctx, now);
        const char *why = NULL;
        int rc = batch_skip(w, c, &rec->cancelled, deadline, now, &why);
        if (rc == 0) {
            shmrpc_buf_clear(&w->req); /* a private copy, as run_call's */
            if (shmrpc_buf_append(&w->req, data + off + sizeof *rec, rlen) != 0) {
                rc = SHMRPC_ENOMEM;
                why = "out of memory";
            }
        }
        if (rc == 0 && mlen) rc = shmrpc__ctx_set_meta(&w->ctx, data + len, mlen, &why);
        if (rc == 0) {
            w->batch_cancel = &rec->cancelled;
            w->ctx.budget_ns = deadline == 0 ? -1 : deadline > now ? deadline - now : 1;
            w->ctx.now_ns = now; /* the call begins now: no second clock read */
            rc = shmrpc__dispatch(w->l->server, &w->ctx, method,
                                  shmrpc_bytes_of(w->req.data, w->req.len), &w->resp);
            w->batch_cancel = NULL;
            why = rc != 0 ? shmrpc__ctx_msg(&w->ctx) : NULL;
        }
        if (batch_answer(c, aoff, &at, k, light, rc, rc != 0 ? (const void *)why : w->resp.data,
                         rc != 0 ? strlen(why) : w->resp.len) != 0)
            lost = true; /* the channel could not grow: said in the batch's answer */
        off += sizeof *rec + ((rlen + 7) & ~7u);
    }
    /* The batch's answer: in the state's line (a message of at most 24 bytes), never over the
     * records and answers, which the client reads still. */
    if (bad) {
        answer(c, SHMRPC_EPROTO, bad, strlen(bad)); /* at most 24 bytes, as every bad */
    } else if (lost) {
        answer(c, SHMRPC_ENOMEM, "no room for its answer", 22);
    } else {
        if (stopped)
            atomic_store_explicit(&batch_answers(c, aoff)->stopped, 1, memory_order_relaxed);
        hand_back(c, 0, NULL, 0);
    }
    w->ctx.loan = worker_loan;
    loan_end(w);
}

/* Runs the call that this worker took on channel c, and answers it. */
static void run_call(worker *w, worker_chan *c)
{
    shmrpc__shm_chan *h = c->map.head;
    uint32_t method = h->method, len = h->req_len; /* read once */
    /* Before a large request maps the channel anew (h is then gone): 0, no deadline. */
    uint64_t budget = atomic_load_explicit(&h->budget_ns, memory_order_relaxed);
    uint32_t mlen = atomic_load_explicit(&h->meta_len, memory_order_relaxed);
    uint32_t stream = atomic_load_explicit(&h->stream, memory_order_relaxed);
    if (stream == SHMRPC__SHM_BATCH) {
        run_batch(w, c, method, len, mlen);
        return;
    }
    /* The metadata follows the request, and a stream's ring them (shm.h): where, and how far
     * the channel must reach. */
    uint64_t moff = len <= SHMRPC__CHAN_SMALL ? 0 : len;
    uint64_t reach = moff + mlen;
    int rc = len > w->l->max_msg ? SHMRPC_ETOOBIG : 0;
    const char *bad = NULL;
    if (mlen > SHMRPC_METADATA_MAX_BYTES)
        bad = "the call's metadata is longer than 4096 bytes";
    else if (stream && !shmrpc__shm_stream_ok(stream))
        bad = "the stream's ring is malformed";
    if (rc == 0 && bad) {
        answer(c, SHMRPC_EPROTO, bad, strlen(bad));
        return;
    }
    int ways = (int)(stream & SHMRPC__STREAM_WAYS);
    uint32_t cap = stream & ~(uint32_t)SHMRPC__STREAM_WAYS;
    uint64_t off = ways ? shmrpc__shm_ring_off(len, mlen) : 0;
    uint64_t in_off = off + (ways & SHMRPC__STREAM_OUT ? SHMRPC__RING_BYTES(cap) : 0);
    w->st = (worker_stream){.ways = ways,
                            .cap = cap,
                            .off = off,
                            .in_off = in_off,
                            .light = (ways & SHMRPC__STREAM_OUT) && shmrpc__fence_register(),
                            /* A kernel that knows the fence: membarrier's registration. */
                            .fences = (ways & SHMRPC__STREAM_IN) && shmrpc__fence_register(),
                            .rd = {.cap = cap, .writer = "client", .reader = "server"}};
    if (ways) reach = in_off + (ways & SHMRPC__STREAM_IN ? SHMRPC__RING_BYTES(cap) : 0);
    if (rc == 0 && (len > SHMRPC__CHAN_SMALL || reach)) {
        shmrpc_buf err; /* the reason goes unsaid: the client sent what its channel lacks */
        shmrpc_buf_init(&err);
        rc = shmrpc__chan_follow(&c->map, reach, &err);
        shmrpc_buf_destroy(&err);
        h = c->map.head; /* the mapping may have moved */
    }
    if (rc != 0) {
        const char *why = "the request's length does not fit its channel";
        answer(c, rc == SHMRPC_ETOOBIG ? rc : SHMRPC_EPROTO, why, strlen(why));
        return;
    }
    /* The client could rewrite the request while it runs: run a private copy, unless the
     * handler said it reads in place (shmrpc_server_set_in_place), or is a @raw handler left
     * as it is and the request is large (docs/shm-transport.md, "Large @raw calls": the
     * client is a process of this user, who could do worse to this one, as the channel's
     * owner and mode say). A small request is copied anyway, out of the state's line, onto
     * the stack: the whole line's part, which the compiler copies without a loop. */
    uint8_t small[SHMRPC__CHAN_SMALL];
    const uint8_t *data = small;
    int reads = shmrpc__server_reads(w->l->server, method);
    w->in_place = len > SHMRPC__CHAN_SMALL &&
                  (reads == SHMRPC__READ_IN_PLACE ||
                   (reads == SHMRPC__READ_LARGE && len >= SHMRPC__IN_PLACE_MIN));
    w->ctx.req_in_room = w->in_place && reads == SHMRPC__READ_LARGE;
    if (len <= SHMRPC__CHAN_SMALL) {
        memcpy(small, h->small, sizeof small);
    } else {
        data = shmrpc__chan_data(&c->map);
        if (!w->in_place) {
            shmrpc_buf_clear(&w->req);
            if (shmrpc_buf_append(&w->req, data, len) != 0) {
                answer(c, SHMRPC_ENOMEM, "out of memory", 13);
                return;
            }
            data = w->req.data;
        }
    }
    if (mlen) { /* copied and checked before the handler sees any of it */
        const char *why;
        rc = shmrpc__ctx_set_meta(&w->ctx, shmrpc__chan_data(&c->map) + moff, mlen, &why);
        if (rc != 0) {
            answer(c, rc, why, strlen(why));
            loan_end(w);
            return;
        }
    }
    w->serving = c;
    if (w->st.fences) /* its waits for items fence (stream_in_waiter) */
        atomic_store_explicit(&worker_in_ring(w)->fences, 1, memory_order_relaxed);
    w->ctx.budget_ns = budget == 0 || budget > INT64_MAX ? -1 : (int64_t)budget;
    /* A forked worker's SIGTERM is its own, not the server's. */
    w->ctx.draining = shmrpc__shm_stopping(w);
    if (ways) { /* its items go through the rings, its handler told of its client's end */
        w->ctx.send = ways & SHMRPC__STREAM_OUT ? worker_send : NULL;
        w->ctx.send_arg = w;
        w->ctx.recv = ways & SHMRPC__STREAM_IN ? worker_recv : NULL;
        w->ctx.recv_arg = w;
        w->ctx.wanted = worker_stream_wanted;
        /* No answer in the channel while the rings are in use there: the arena's. */
        w->ctx.loan = NULL;
        int64_t b = w->ctx.budget_ns;
        w->st.deadline = b < 0 || b > INT64_MAX / 2 ? INT64_MAX : shmrpc__now_ns() + b;
    }
    rc = shmrpc__dispatch(w->l->server, &w->ctx, method, shmrpc_bytes_of(data, len), &w->resp);
    if (ways) {
        w->ctx.send = NULL;
        w->ctx.recv = NULL;
        w->ctx.wanted = worker_wanted;
        w->ctx.loan = worker_loan;
        if (ways & SHMRPC__STREAM_IN) {
            int lost = in_returned(w, rc);
            if (lost != 0) rc = lost;
        }
    }
    if (ways & SHMRPC__STREAM_OUT) {
        /* The end of the items, before the answer: after it, the client may reuse the
         * channel. There is room: every piece left 8 bytes free. What dispatch encoded after
         * the items (nil) is not sent, as on inproc://. */
        if (!w->st.broken) ring_write(w, (const uint8_t *)"", 0, SHMRPC__RING_END);
        w->resp.len = 0;
    }
    if (rc != 0) {
        const char *msg = shmrpc__ctx_msg(&w->ctx);
        answer(c, rc, msg, strlen(msg));
    } else {
        answer(c, 0, w->resp.data, w->resp.len);
    }
    loan_end(w);
}

/* Lets go of the mappings of connections that are gone or were claimed anew. */
static void forget_closed(worker *w)
{
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++) {
        worker_chan *c = &w->chans[i];
        shmrpc__shm_slot *s = &w->ctl->slots[i];
        if (c->open && (atomic_load(&s->state) != SHM_SLOT_OPEN || atomic_load(&s->gen) != c->gen))
            worker_chan_close(c);
    }
}

/* The state of the channel this worker watches, or UINT32_MAX when it no longer may: its
 * mapping went, or its watcher names another (a worker that took a call this one left,
 * or a bad write). */
static uint32_t watched(worker *w)
{
    worker_chan *c = &w->chans[w->watch];
    if (!c->open ||
        atomic_load_explicit(&c->map.head->watcher, memory_order_relaxed) != w->index + 1)
        return UINT32_MAX;
    return atomic_load_explicit(&c->map.head->state.word, memory_order_acquire);
}

/* Whether the watched channel's state, seen, is a request for this worker to try: not
 * one it found claimed already (another worker's call runs with its state at REQUEST). */
static bool watched_request(worker *w, uint32_t seen)
{
    const worker_chan *c = &w->chans[w->watch];
    return seen == SHM_CHAN_REQUEST &&
           atomic_load_explicit(&c->map.head->call, memory_order_relaxed) != c->passed;
}

static int worker_check(void *arg)
{
    return shmrpc__shm_stopping(arg) ? SHMRPC_ECLOSED : 0;
}

/* Serves the call waiting in slot's channel; returns the time it ended. The call counts
 * in its method's statistics then, after its answer: its client waits for no clock read. */
static int64_t serve(worker *w, int slot)
{
    if (slot != w->watch) unwatch(w);
    serve_one(w, (unsigned)slot);
    w->last_slot = slot;
    w->last_call_ns = shmrpc__now_ns();
    shmrpc__ctx_count(&w->ctx, w->last_call_ns);
    return w->last_call_ns;
}

int shmrpc__shm_worker_run(shm_listener *l, unsigned index)
{
    worker *w = calloc(1, sizeof *w);
    if (w == NULL) return SHMRPC_ENOMEM;
    w->l = l;
    w->ctl = l->ctl;
    w->index = index;
    w->next = index * 17 % SHMRPC__MAX_CONNS;
    w->last_slot = -1;
    w->watch = -1;
    shmrpc_buf_init(&w->req);
    shmrpc_buf_init(&w->resp);
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++)
        w->chans[i].map.fd = -1;
    w->kept.fd = -1;
    int rc = shmrpc__ctx_init(&w->ctx, l->server);
    if (rc != 0) {
        free(w);
        return rc;
    }
    w->ctx.loan = worker_loan; /* answers in the channel (shmrpc_ctx_loan) */
    w->ctx.loan_arg = w;
    w->ctx.wanted = worker_wanted;
    w->ctx.wanted_arg = w;
    uint32_t n_rows;
    shmrpc__stats_row *rows = shmrpc__stats_rows(&l->stats, (int)index, &n_rows);
    shmrpc__ctx_set_stats(&w->ctx, rows, n_rows);
    w->ctx.count_later = true;
    shmrpc__shm_worker *me = &w->ctl->workers[index];
    w->pid = getpid();
    w->start = shmrpc__proc_start(w->pid);
    w->tid = (uint32_t)gettid();
    atomic_store(&me->taking, 0); /* what a dead worker of this slot was taking */
    shmrpc__shm_proc_set(&me->proc, w->pid, w->start);
    shmrpc__presence_update(&me->presence);
    atomic_store(&me->state, SHM_WORKER_RUNNING);
    atomic_fetch_add(&w->ctl->awake, 1);
    shmrpc_wait_opts idle = l->wait;
    idle.mode = SHMRPC_WAIT_SLEEP;
    /* Stopping rings the doorbell, so a sleeping worker needs no frequent checks. */
    shmrpc__waiter waiter = {.self = &me->presence,
                             .check = worker_check,
                             .check_arg = w,
                             .awake = &w->ctl->awake,
                             .check_ns = SWEEP_EVERY_NS,
                             .sleeping = &w->ctl->sleeping,
                             .sleeping_bit = (uint64_t)1 << index};
    /* Serving in the listening process, the worker looks after the rendezvous too: when it
     * has nothing to do (a client rings the doorbell when its hello is not answered at
     * once), and every millisecond while calls keep it busy. */
    w->pumps = l->rdv && w->pid == l->pid;
    bool pumps = w->pumps;
    /* The clock read just after the last call, while nothing else took time since: one
     * read per call serves the call's statistics, the pump, the sweep's and the spin's
     * times (each read costs 20-50 ns here, while the client waits for the worker to watch
     * again; issue 18). */
    int64_t fresh = 0;
    while (!shmrpc__shm_stopping(w)) {
        /* The channel this worker watches: its request came without the doorbell. */
        int slot = w->watch >= 0 && watched_request(w, watched(w)) ? w->watch : -1;
        if (w->first_look) { /* the pause before it: one less if the request was there */
            w->first_look = false;
            if (slot < 0 && w->quiet < SHMRPC__SPIN_QUIET) w->quiet++;
            if (slot >= 0 && w->quiet > 0) w->quiet--;
        }
        if (slot < 0) slot = take_pending(w);
        if (slot >= 0) {
            fresh = serve(w, slot);
            worker_pump(w, w->last_call_ns);
            /* Its client reads the answer and then writes its next request on the line
             * this worker watches: a look in between takes the line back, and the
             * request's write must fetch it again, a transfer more per call (on cores far
             * apart, 5-8% of a call; docs/shm-transport.md). So a watching worker first
             * pauses about as long as its client takes to call again: learnt at the look
             * that follows, which finds the request there about half the time. */
            w->first_look = w->watch >= 0;
            for (unsigned i = 0; w->first_look && i < w->quiet; i++)
                shmrpc__cpu_relax();
            continue;
        }
        if (pumps) shmrpc__rdv_pump(l->rdv);
        /* Whether a sweep is due is looked at once a millisecond at most: the due time
         * shares a line with awake, which every call's client writes, and reading it after
         * every call pulls that line away from the next one (issue 18). */
        int64_t idle_ns = fresh && !pumps ? fresh : shmrpc__now_ns();
        bool looked = false; /* whether the sweep or the forgetting took time */
        fresh = 0;
        if (idle_ns >= w->next_look_ns) {
            shmrpc__shm_sweep(w);
            w->next_look_ns = idle_ns + SWEEP_LOOK_NS;
            looked = true;
        }
        if (idle_ns >= w->next_forget_ns) {
            forget_closed(w);
            shmrpc__shm_restore_entry(w);
            w->next_forget_ns = idle_ns + SWEEP_EVERY_NS;
            looked = true;
        }
        uint32_t bell = atomic_load(&w->ctl->doorbell.word);
        slot = take_pending(w); /* a request may have rung before we read the bell */
        if (slot >= 0) {
            fresh = serve(w, slot);
            continue;
        }
        /* Spinning on the CPU of the client that will call next only keeps it away; and
         * once the spin budget has passed since the last call, an idle worker sleeps at
         * once, waking only to sweep: an idle service costs next to nothing. */
        int64_t now = looked ? shmrpc__now_ns() : idle_ns;
        bool spins = now - w->last_call_ns < l->wait.spin_ns;
        /* Watching a channel, the worker spins on its state as well as on the doorbell,
         * and never sleeps so: once its spin is over it stops watching, and sleeps on the
         * doorbell alone. */
        uint32_t seen = 0;
        if (w->watch >= 0 && (!spins || (seen = watched(w)) == UINT32_MAX)) unwatch(w);
        if (w->watch >= 0 && watched_request(w, seen)) continue;
        waiter.also = w->watch >= 0 ? &w->chans[w->watch].map.head->state.word : NULL;
        waiter.also_old = seen;
        waiter.peer = w->last_slot >= 0 ? &w->ctl->slots[w->last_slot].presence : NULL;
        waiter.opts = spins ? &l->wait : &idle;
        shmrpc__wait_while(&w->ctl->doorbell, bell,
                           waiter.also ? w->last_call_ns + l->wait.spin_ns : now + SWEEP_EVERY_NS,
                           &waiter);
    }
    unwatch(w);
    atomic_fetch_sub(&w->ctl->awake, 1);
    atomic_store(&me->state, SHM_WORKER_FREE);
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++)
        worker_chan_close(&w->chans[i]);
    shmrpc__ctx_destroy(&w->ctx);
    shmrpc_buf_destroy(&w->req);
    shmrpc_buf_destroy(&w->resp);
    free(w);
    return 0;
}
