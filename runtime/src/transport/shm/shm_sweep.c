/* SPDX-License-Identifier: MIT */
/* The sweeps of the shm:// server side's workers: they free the slots of clients that died
 * without closing (or during their claim), and repair what a dead or broken process left
 * wrong in the control segment: its header, its shared counters, a worker's own entry. */
#include "transport/shm/shm_server_int.h"

#include "core/proc.h"

#include <string.h>

/* Whether the client of a slot counts in awake: it marks so while a call of its lasts,
 * and lowers awake itself (clearing the mark) while it sleeps. */
bool shmrpc__shm_counts_awake(shmrpc__shm_slot *s)
{
    return atomic_load(&s->counted) && !atomic_load(&s->presence.asleep);
}

/* Whether a taken slot without a pid has been so long enough to be a dead claim: the
 * first sweep that sees it so notes its gen and the time; one at least half a sweep
 * later frees it. A live client writes its pid a few instructions after its claim. */
static bool pidless_for_long(shmrpc__shm_slot *s, uint32_t gen, int64_t now)
{
    int64_t since = atomic_load(&s->pidless_ns);
    if (since > 0 && since <= now && atomic_load(&s->pidless_gen) == gen)
        return now - since >= SWEEP_EVERY_NS / 2;
    atomic_store(&s->pidless_gen, gen);
    atomic_store(&s->pidless_ns, now);
    return false;
}

/* Frees slot i, seen in state with gen and client, whose client is dead or never finished
 * its claim: its pending bit, and the client's share of awake (in_call: it died counted as
 * awake). Its channel, a memfd, goes with its last holder (workers let go of theirs in
 * forget_closed). */
void shmrpc__shm_free_slot(shmrpc__shm_ctl *ctl, unsigned i, uint32_t state, uint32_t gen,
                           proc_id client, bool in_call)
{
    shmrpc__shm_slot *s = &ctl->slots[i];
    /* FREEING first: no client claims the slot while its pid is cleared. */
    uint32_t seen = state;
    if (!atomic_compare_exchange_strong(&s->state, &seen, SHM_SLOT_FREEING)) return;
    /* The state alone may have come back to what was seen: freed meanwhile, and claimed
     * anew by a client now in that state. No claim moves while FREEING, so the gen and pid
     * looked at now are the ones that hold: another client's slot is given back. */
    if (atomic_load(&s->gen) != gen || atomic_load(&s->client.pid) != client.pid ||
        atomic_load(&s->client.start) != client.start) {
        seen = SHM_SLOT_FREEING;
        atomic_compare_exchange_strong(&s->state, &seen, state);
        return;
    }
    shmrpc__shm_proc_set(&s->client, 0, 0);
    atomic_store(&s->pidless_ns, 0);
    atomic_store(&s->counted, 0);
    shmrpc__shm_unring(ctl, i);
    if (in_call) shmrpc__count_down(&ctl->awake); /* it died counted as awake */
    atomic_store(&s->state, SHM_SLOT_FREE);
}

/* Repairs the counters that a dead or broken process can leave wrong: the doorbell's
 * bits of workers that are not running (they would cost every call a needless wake-up
 * syscall), and awake above the processes that can be awake (waiters would yield for
 * good). */
static void repair_counters(shmrpc__shm_ctl *ctl)
{
    /* The mask is read before the states, and cleared only if it did not change: a worker
     * marks itself RUNNING before it first sleeps, so a bit that a starting worker set is
     * either seen with its RUNNING or changes the mask. */
    uint64_t mask = atomic_load(&ctl->sleeping), stray = 0;
    unsigned running = 0, taken = 0;
    for (unsigned i = 0; i < SHMRPC__MAX_WORKERS; i++) {
        bool runs = atomic_load(&ctl->workers[i].state) == SHM_WORKER_RUNNING;
        running += runs;
        if (!runs) stray |= mask & ((uint64_t)1 << i);
    }
    if (stray) atomic_compare_exchange_strong(&ctl->sleeping, &mask, mask & ~stray);
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++)
        taken += atomic_load(&ctl->slots[i].state) != SHM_SLOT_FREE;
    uint32_t bound = running + taken, awake = atomic_load(&ctl->awake);
    while (awake > bound && !atomic_compare_exchange_weak(&ctl->awake, &awake, bound)) {
    }
}

/* Restores what the server wrote into the header at listen, where a broken process wrote
 * over it: clients would refuse the service (magic, version, table), take it for dead
 * (owner) or stopping (state) until it restarted. A stop is the manager's: it marks the
 * state STOPPING and tells each worker at once (SIGTERM), so a state that is still not
 * READY half a sweep later, in a worker not told to stop, was written by someone else. */
static void repair_header(worker *w, int64_t now)
{
    shm_listener *l = w->l;
    shmrpc__shm_ctl *ctl = w->ctl;
    uint64_t fingerprint = shmrpc__server_info(l->server)->fingerprint;
    if (atomic_load(&ctl->owner.pid) != l->pid || atomic_load(&ctl->owner.start) != l->start)
        shmrpc__shm_proc_set(&ctl->owner, l->pid, l->start);
    if (ctl->version != SHMRPC__SHM_VERSION) ctl->version = SHMRPC__SHM_VERSION;
    if (ctl->fingerprint != fingerprint) ctl->fingerprint = fingerprint;
    if (ctl->max_msg != l->max_msg) ctl->max_msg = l->max_msg;
    if (memcmp(ctl->service, l->service, sizeof l->service) != 0)
        memcpy(ctl->service, l->service, sizeof l->service);
    if (l->table &&
        (ctl->table_len != l->table_len || memcmp(ctl->table, l->table, l->table_len) != 0)) {
        memcpy(ctl->table, l->table, l->table_len);
        ctl->table_len = l->table_len;
    }
    if (atomic_load(&ctl->magic) != SHMRPC__SHM_MAGIC)
        atomic_store_explicit(&ctl->magic, SHMRPC__SHM_MAGIC, memory_order_release);
    if (atomic_load(&ctl->state) == SHM_READY || shmrpc__shm_stopping(w)) {
        w->not_ready_ns = 0;
    } else if (w->not_ready_ns == 0) {
        w->not_ready_ns = now;
    } else if (now - w->not_ready_ns >= SWEEP_EVERY_NS / 2) {
        atomic_store(&ctl->state, SHM_READY);
        w->not_ready_ns = 0;
    }
}

/* Frees the slots of clients that died without closing (or during their claim); then
 * repairs the header and the shared counters. */
void shmrpc__shm_sweep(worker *w)
{
    shmrpc__shm_ctl *ctl = w->ctl;
    int64_t now = shmrpc__now_ns();
    int64_t due = atomic_load(&ctl->next_sweep_ns);
    /* A due time further off than one sweep was written by no sweep: sweep now. */
    if ((now < due && due - now <= SWEEP_EVERY_NS) ||
        !atomic_compare_exchange_strong(&ctl->next_sweep_ns, &due, now + SWEEP_EVERY_NS))
        return;
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++) {
        shmrpc__shm_slot *s = &ctl->slots[i];
        uint32_t state = atomic_load(&s->state), gen = atomic_load(&s->gen);
        int32_t pid = atomic_load_explicit(&s->client.pid, memory_order_acquire);
        uint64_t start = atomic_load(&s->client.start); /* written before the pid */
        if (state == SHM_SLOT_FREE) continue;
        if (pid == 0 ? !pidless_for_long(s, gen, now) : shmrpc__proc_alive(pid, start)) continue;
        /* Looked at again: a claim may have moved on during the look at /proc. Checked
         * before the swap too, so that a live client's slot is seldom FREEING even for the
         * moment shmrpc__shm_free_slot takes to give it back (its hello, or its check of the
         * slot, would fail meanwhile). */
        if (atomic_load(&s->gen) != gen || atomic_load(&s->client.pid) != pid ||
            atomic_load(&s->client.start) != start)
            continue;
        shmrpc__shm_free_slot(ctl, i, state, gen, (proc_id){pid, start},
                              shmrpc__shm_counts_awake(s));
    }
    repair_header(w, now);
    repair_counters(ctl);
}

/* Restores this worker's entry where a bad write changed it. The worker writes it once,
 * at its start, and nothing else would mend it: with its state not RUNNING, sweeps took the
 * worker for gone and cleared its bit in `sleeping` while it slept (its clients' rings then
 * woke nobody until its sleep ended), bounded awake by one worker less, and clients could
 * not tell its pid while it was taking their call (issue 40: shm_scribble_test's workers'
 * entries still held the scribbler's bytes 10 s after the writes). Called between calls,
 * where the worker is taking no channel. */
void shmrpc__shm_restore_entry(worker *w)
{
    shmrpc__shm_worker *me = &w->ctl->workers[w->index];
    if (atomic_load(&me->proc.pid) != w->pid || atomic_load(&me->proc.start) != w->start)
        shmrpc__shm_proc_set(&me->proc, w->pid, w->start);
    if (atomic_load(&me->taking) != 0) atomic_store(&me->taking, 0);
    if (atomic_load(&me->state) != SHM_WORKER_RUNNING) atomic_store(&me->state, SHM_WORKER_RUNNING);
}
