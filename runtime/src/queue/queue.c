/* SPDX-License-Identifier: MIT */
/* Named message queues in shared memory: a ring of descriptors whose state words carry
 * the message's position, and a byte arena given back in order. Every step is one CAS, so
 * a process killed between two steps leaves a state that the others recognise and repair.
 * The layout, the state machine and the reasoning are in docs/queue.md. */
#include <shmrpc/queue.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "core/core.h"
#include "core/proc.h"
#include "queue/queue_seg.h"
#include "core/segment.h"
#include "core/wait.h"

#define Q_MAGIC 0x55455153u /* "SQEU" */
#define Q_VERSION 3u        /* 2 kept every payload in the arena */
#define PATH_PREFIX "/shmrpc.queue."
#define PATH_CAP (sizeof PATH_PREFIX + SHMRPC_QUEUE_NAME_MAX)

#define DESC_OFF 512u /* the descriptors follow the header */
#define DESC_SIZE                                                                                  \
    64u /* one cache line each: producers and consumers of neighbours                              \
           do not share lines */
#define ARENA_ALIGN 4096u
#define MSG_ALIGN 64u /* each message starts on a cache line of its own */
/* A message of at most this many bytes rides in its descriptor, in the line that its state
 * word hands over anyway: it takes no room in the arena, and a consumer reads one line for
 * it instead of two (docs/queue.md, "Segment layout"). */
#define INLINE_MAX SHMRPC_QUEUE_INLINE_MAX
#define DEFAULT_CAPACITY 1024u
#define DEFAULT_ARENA (UINT32_C(1) << 20)
#define DEFAULT_MAX_MSG (UINT32_C(64) << 10)

/* How long an opener waits for a creator to size and initialise the segment. */
#define INIT_WAIT_NS ((int64_t)1000 * 1000 * 1000)
/* How often a waiter looks at the process that blocks it (reads /proc). */
#define PROBE_NS ((int64_t)5 * 1000 * 1000)
/* How long a try waits for another producer to move the tail past a slot it claimed. */
#define CLAIM_GRACE_NS ((int64_t)200 * 1000)
/* A spinning waiter yields the CPU at each look at the clock once it has spun this long. */
#define SPIN_YIELD_NS ((int64_t)5 * 1000)
/* Spinners' seats in the header (at most this many: one per CPU), and how much longer than
 * a spin's budget a seat may be held before it is taken for one a dead or stopped process
 * left. */
#define SEATS 8
#define SEAT_GRACE_MS 20
#define OPEN_ATTEMPTS 100
#define REPLACE_HINT "CREATE_NEW_OVERWRITE or shmrpc_queue_unlink replaces it"

/* The wait's futex words: bit 0 says a waiter spins or sleeps on it (so a change must move
 * the word), bit 1 that one may sleep (so a change must also wake); the rest counts the
 * changes that found bit 0 set, in steps of STEP. With no waiter, a change costs a load. */
#define WAITING 1u
#define SLEEPING 2u
#define FLAGS 3u
#define STEP 4u
/* A check's status that ends a wait because there is something to look at again. */
#define READY 2

/* Descriptor states (docs/queue.md has the machine). */
enum { S_FREE = 0, S_CLAIMED = 1, S_COMMITTED = 2, S_READING = 3, S_RELEASED = 4, S_ABANDONED = 5 };

/* A state word: the message position it is for (its lap), the state, and the process
 * that holds it in CLAIMED and READING (Linux pids stay below 2^22). */
static inline uint64_t mkstate(uint32_t lap, unsigned st, uint32_t pid)
{
    return (uint64_t)lap << 32 | (uint64_t)(st & 0xff) << 24 | (pid & 0xffffffu);
}
static inline uint32_t lap_of(uint64_t w)
{
    return (uint32_t)(w >> 32);
}
static inline unsigned st_of(uint64_t w)
{
    return (unsigned)(w >> 24) & 0xff;
}
static inline uint32_t pid_of(uint64_t w)
{
    return (uint32_t)w & 0xffffffu;
}

/* tail and freed: a message position in the low half, a byte position in the high. */
static inline uint64_t mkpos(uint32_t m, uint32_t b)
{
    return (uint64_t)b << 32 | m;
}
static inline uint32_t msg_of(uint64_t p)
{
    return (uint32_t)p;
}
static inline uint32_t byte_of(uint64_t p)
{
    return (uint32_t)(p >> 32);
}

/* One message slot. Every field is read into a local and checked before use. */
struct q_desc {
    /* {lap, state, pid}: CAS by producers (FREE -> CLAIMED -> COMMITTED), consumers
     * (COMMITTED -> READING -> RELEASED), whoever advances the frontier (RELEASED or
     * ABANDONED -> FREE of the next lap), and repairers of dead holders. */
    _Atomic uint64_t state;
    /* lap << 32 | low 32 bits of the start time of the producer (prod) or consumer (cons)
     * that holds it, written by the holder just after its CAS; read by repairers, so that a
     * reused pid is not taken for the holder. A tag of another lap says nothing. */
    _Atomic uint64_t prod_tag;
    _Atomic uint64_t cons_tag;
    /* Written by the claiming producer before it moves the tail; read by consumers after
     * COMMITTED and by the frontier. start: byte position of the payload; end: the byte
     * position after it, rounded up to MSG_ALIGN. */
    _Atomic uint32_t start;
    _Atomic uint32_t len;
    _Atomic uint32_t end;
    /* The payload of a message of at most INLINE_MAX bytes (its start and end are then
     * equal), written by the producer while it holds the slot, as it would write the arena. */
    unsigned char inl[INLINE_MAX];
};

/* The header. Line 0 is written once by the creator (magic last, with a release store);
 * the others are each touched by one side on its fast path. */
struct q_hdr {
    _Atomic uint32_t magic;
    uint32_t version;
    uint32_t hdr_size;  /* DESC_OFF */
    uint32_t desc_size; /* DESC_SIZE */
    uint32_t capacity;  /* N, a power of two */
    uint32_t arena;     /* B, a power of two */
    uint32_t max_msg;
    uint32_t arena_off; /* where the arena begins */
    uint64_t total_size;
    _Atomic uint32_t creator_pid; /* written first after the mapping: a half-made segment
                                     whose creator died is known stale */
    uint32_t reserved;
    uint64_t creator_start;
    uint8_t pad0[8];
    /* Producers: tail {next message, next byte}; nonempty: consumers wait on it, and a
     * commit moves it when one does (WAITING, SLEEPING); pushed, counted at commit. */
    _Atomic uint64_t tail;
    shmrpc__futex nonempty;
    _Atomic uint64_t pushed;
    uint8_t pad1[40];
    /* Consumers: head, the next message to take; popped. A single consumer (ROLE_CONSUMER)
     * leaves head and uses cons {next message, low half of popped}, written with one store,
     * and popped only as a base that cons's low half extends (written now and then). */
    _Atomic uint32_t head;
    uint32_t reserved2;
    _Atomic uint64_t popped;
    _Atomic uint64_t cons;
    uint8_t pad2[40];
    /* The release frontier {first message not given back, first byte not given back},
     * advanced by consumers; nonfull: producers wait on it, moved as nonempty is. */
    _Atomic uint64_t freed;
    shmrpc__futex nonfull;
    uint8_t pad3[48];
    /* Slow-path counters, relaxed atomic adds by anyone. */
    _Atomic uint64_t timeouts;
    _Atomic uint64_t drops;
    _Atomic uint64_t sleeps;
    _Atomic uint64_t repairs;
    /* Messages whose producer died after moving the tail past them (ABANDONED): pushed and
     * popped are the tail and the head, extended, less these. */
    _Atomic uint64_t abandoned;
    /* Futex sleeps that ended by their timer (the wait's slice or its deadline) rather than
     * by a wake-up, added to by waiters after they wait; 0 in segments made before it (the
     * padding it took was 0, and older libraries leave it alone). */
    _Atomic uint64_t timer_wakes;
    uint8_t pad4[16];
    /* Written once by the creator: SHMRPC_QUEUE_WORK or _BROADCAST, and the slow policy. */
    uint32_t kind;
    uint32_t slow;
    /* Broadcast: a bit per subscriber slot in use. Set by a subscriber after it claimed
     * its slot and before its cursor counts; cleared when it leaves or is found dead. */
    _Atomic uint64_t subs;
    /* Written once by the creator: the length of the queue's type signature, stored right
     * after the subscriber table (0: untyped); read by openers and shmrpc_queue_get_info. */
    uint32_t type_len;
    /* Written once by the creator: ROLE_PRODUCER, ROLE_CONSUMER (a single one of each). */
    uint32_t roles;
    /* The leases of those roles: pid | low half of its start time << 32, 0 when free; CAS
     * by the handle that takes it (from 0, or from a dead holder) and by it at close. */
    _Atomic uint64_t prod_owner;
    _Atomic uint64_t cons_owner;
    uint8_t pad5[24];
    /* The spinners' seats: a waiter (of an ADAPTIVE handle) spins only in one, and there are
     * as many as CPUs. pid | the time it sat down (ms, low 32 bits) << 32, 0 when free; CAS
     * by the waiter as it begins and ends its spin, and by one that finds a seat held for
     * longer than a spin lasts. */
    _Atomic uint64_t seats[SEATS];
    uint8_t pad6[64];
};
#define ROLE_PRODUCER 1u
#define ROLE_CONSUMER 2u

/* A broadcast subscriber. owner: pid | low half of its start time << 32, 0 when free (CAS
 * by subscribers and by whoever finds its owner dead); cursor: the next message it reads,
 * written by it (CAS) and, with the drop policy, by producers that drop a message for it;
 * missed: what was dropped for it. */
struct q_sub {
    _Atomic uint64_t owner;
    _Atomic uint32_t cursor;
    uint32_t reserved;
    _Atomic uint64_t missed;
    uint8_t pad[40];
};
#define SUBS SHMRPC_QUEUE_SUBSCRIBERS_MAX
#define SUB_SIZE 64u

_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2,
               "atomics shared between processes must be lock-free");
_Static_assert(sizeof(struct q_desc) == DESC_SIZE, "layout");
_Static_assert(offsetof(struct q_desc, prod_tag) == 8, "layout");
_Static_assert(offsetof(struct q_desc, cons_tag) == 16, "layout");
_Static_assert(offsetof(struct q_desc, start) == 24, "layout");
_Static_assert(offsetof(struct q_desc, len) == 28, "layout");
_Static_assert(offsetof(struct q_desc, end) == 32, "layout");
_Static_assert(offsetof(struct q_desc, inl) == 36, "layout");
_Static_assert(offsetof(struct q_hdr, capacity) == 16, "layout");
_Static_assert(offsetof(struct q_hdr, total_size) == 32, "layout");
_Static_assert(offsetof(struct q_hdr, creator_pid) == 40, "layout");
_Static_assert(offsetof(struct q_hdr, tail) == 64, "layout");
_Static_assert(offsetof(struct q_hdr, nonempty) == 72, "layout");
_Static_assert(offsetof(struct q_hdr, pushed) == 80, "layout");
_Static_assert(offsetof(struct q_hdr, head) == 128, "layout");
_Static_assert(offsetof(struct q_hdr, popped) == 136, "layout");
_Static_assert(offsetof(struct q_hdr, cons) == 144, "layout");
_Static_assert(offsetof(struct q_hdr, freed) == 192, "layout");
_Static_assert(offsetof(struct q_hdr, nonfull) == 200, "layout");
_Static_assert(offsetof(struct q_hdr, timeouts) == 256, "layout");
_Static_assert(offsetof(struct q_hdr, abandoned) == 288, "layout");
_Static_assert(offsetof(struct q_hdr, timer_wakes) == 296, "layout");
_Static_assert(offsetof(struct q_hdr, kind) == 320, "layout");
_Static_assert(offsetof(struct q_hdr, subs) == 328, "layout");
_Static_assert(offsetof(struct q_hdr, type_len) == 336, "layout");
_Static_assert(offsetof(struct q_hdr, roles) == 340, "layout");
_Static_assert(offsetof(struct q_hdr, prod_owner) == 344, "layout");
_Static_assert(offsetof(struct q_hdr, cons_owner) == 352, "layout");
_Static_assert(offsetof(struct q_hdr, seats) == 384, "layout: a line of its own");
_Static_assert(sizeof(struct q_hdr) == DESC_OFF && DESC_OFF == SHMRPC__QUEUE_HEAD, "layout");
_Static_assert(sizeof(struct q_sub) == SUB_SIZE && SUBS == 64, "layout: one bit per slot");

/* The geometry, from the header once it is checked; never read from the segment again. */
struct geom {
    uint32_t n, b, max_msg, arena_off, kind, slow, type_len, roles;
    uint64_t total;
};

struct shmrpc_queue {
    struct q_hdr *hdr;
    struct q_desc *desc;
    unsigned char *arena;
    size_t map_size;
    bool mapped; /* unmapped at close (not for shmrpc__queue_wrap) */
    uint32_t n, mask, b, bmask, max_msg;
    bool bcast, drop; /* broadcast, and its drop policy */
    struct q_sub *subs;
    int sub; /* this handle's subscriber slot, or -1 */
    shmrpc_wait_opts wait;
    shmrpc_wait_opts wait_after_spin; /* ADAPTIVE becomes SLEEP: the spin was ours */
    _Atomic uint64_t freed_seen;      /* the last frontier seen: producers read the shared one
                                         only when this one says full */
    char *type;                       /* the type signature, copied at open ("" when untyped) */
    /* Single producer (sp) and single consumer (sc) queues: the pid for which this handle
     * holds the role's lease (0: not held; another pid: a forked child's copy, which does
     * not), and what only the holder writes, cached: the tail and the count of messages it
     * pushed; cons {head, low half of popped}, the frontier and the count popped. */
    bool sp, sc;
    bool sp_reserved; /* a reserve not yet committed: a single producer holds one at a time */
    uint32_t prod_pid, cons_pid;
    uint64_t sp_tail, sp_count;
    uint32_t sp_end; /* the byte position after the message the single producer claimed */
    uint64_t sc_cons, sc_freed, sc_count;
    char name[SHMRPC_QUEUE_NAME_MAX + 1];
    /* The truncation guard of the mapping (segment.h) and its mark: set when the segment
     * was cut under us and the mapping is now private zero pages; every call then fails. */
    int guard;
    _Atomic uint32_t *cut;
};

/* --- messages ---------------------------------------------------------------------- */

/* A failure says why in the calling thread's shmrpc_errmsg() (the rule is in status.h). */
#define fail shmrpc__err_set
#define syserr shmrpc__seg_syserr

/* Whether the segment was cut under this handle: loads of process-local words (acquire,
 * free on x86), the process's count of cuts first (each call looks once or twice). */
static inline bool cut(const shmrpc_queue *q)
{
    return __builtin_expect(atomic_load_explicit(&shmrpc__seg_cuts, memory_order_acquire) != 0,
                            0) &&
           atomic_load_explicit(q->cut, memory_order_acquire) != 0;
}

static int cut_fail(const shmrpc_queue *q)
{
    char path[sizeof "/shmrpc.queue." + SHMRPC_QUEUE_NAME_MAX];
    snprintf(path, sizeof path, "/shmrpc.queue.%s", q->name);
    return shmrpc__seg_cut_fail("queue", q->name, path);
}

/* Whether the segment was cut, looked for at the start of a call: a read of its last byte
 * (a line that only a message at the arena's very end writes), so that a cut is found even
 * by a call that would touch no page past it (an inline message in the first page's
 * descriptors), which would otherwise go on with the old file beside those who made it
 * anew. A cut within the last page of a file that keeps it is not found so. */
static inline bool gone(const shmrpc_queue *q)
{
    (void)*(volatile const unsigned char *)((const unsigned char *)q->hdr + q->map_size - 1);
    return cut(q);
}

/* rc, unless the segment was cut meanwhile: what the call did, it did on zero pages. */
static inline int unless_cut(const shmrpc_queue *q, int rc)
{
    return cut(q) ? cut_fail(q) : rc;
}

/* --- who we are -------------------------------------------------------------------- */

/* The process's pid (proc.h: learnt once, and again in a forked child). */
static inline uint32_t self(void)
{
    return (uint32_t)shmrpc__self_pid();
}

/* membarrier(2) registration (single producer and consumer queues): the process that
 * registered (a forked child is not registered: the kernel's state is per address space),
 * and whether it could: 1 registered, -1 not available. */
static _Atomic uint32_t barrier_pid;
static _Atomic int barrier_state;

static inline uint64_t self_tag(uint32_t lap)
{
    return (uint64_t)lap << 32 | (uint32_t)shmrpc__self_start();
}

/* Whether the process pid, which holds a slot of lap with this tag, is dead: gone from
 * /proc, a zombie, or a later process with its pid (the tag is of this lap and names
 * another start time). When /proc cannot say, it lives. Our own pid lives (another thread
 * of ours may hold the slot). */
static bool proc_dead(uint32_t pid, bool know_start, uint32_t start)
{
    if (pid == self()) return false;
    if (pid == 0) return true; /* no process holds a slot as pid 0: a bad write */
    shmrpc__proc_stat ps;
    if (shmrpc__read_proc_stat(pid, &ps) != 0) return errno == ENOENT || errno == ESRCH;
    if (ps.state == 'Z' || ps.state == 'X' || ps.state == 'x') return true;
    return know_start && start != (uint32_t)ps.start;
}

static bool holder_dead(uint32_t pid, uint64_t tag, uint32_t lap)
{
    return proc_dead(pid, lap_of(tag) == lap, (uint32_t)tag);
}

/* Gives the claim of the slot of message pos, state s, back (FREE of the same lap): its
 * producer's tag first goes to another lap. The next claimer writes its own tag only after
 * its claim, and with the last one's still of this lap, a repairer in between judged it by
 * that start, took it for dead, and freed its slot under it (the queue then stalled at a
 * FREE slot behind the tail; a helper's review). */
static bool unclaim(struct q_desc *d, uint32_t pos, uint64_t s)
{
    atomic_store(&d->prod_tag, (uint64_t)(pos - 1) << 32);
    return atomic_compare_exchange_strong(&d->state, &s, mkstate(pos, S_FREE, 0));
}

/* --- small things ------------------------------------------------------------------- */

static inline struct q_desc *desc_at(const shmrpc_queue *q, uint32_t pos)
{
    return &q->desc[pos & q->mask];
}

static inline uint32_t round_msg(uint32_t len)
{
    return (len + MSG_ALIGN - 1) & ~(MSG_ALIGN - 1);
}

/* The arena bytes a message of len takes: none when it rides in its descriptor. */
static inline uint32_t room_for(uint32_t len)
{
    return len <= INLINE_MAX ? 0 : round_msg(len);
}

/* Where message pos's payload lies: in its descriptor, or at byte position start. */
static inline unsigned char *payload(const shmrpc_queue *q, uint32_t pos, uint32_t start,
                                     uint32_t len)
{
    return len <= INLINE_MAX ? desc_at(q, pos)->inl : q->arena + (start & q->bmask);
}

/* Whether a descriptor's start, length and end, each read once, describe a message that a
 * producer could have placed: not over max_msg, its room as place() gives it, and within
 * the arena. Only these locals are used after. */
static inline bool sound(const shmrpc_queue *q, uint32_t start, uint32_t len, uint32_t end)
{
    return len <= q->max_msg && end - start == room_for(len) &&
           (len <= INLINE_MAX || (start & q->bmask) + (uint64_t)len <= q->b);
}

/* Where the frontier goes from byte *b past message m, given back, whose descriptor says
 * start, len and end (each read once): its end when they add up and it is within the
 * arena's reach. Else a bad write broke them (the message was dropped with EPROTO for it,
 * or written over while lent), and the tail says, read only then: its message and byte
 * halves move together, so a tail at m + 1 sits at m's end; a tail further on is past m's
 * successor, whose own end frees m's bytes with its own: none now. A tail not yet past m
 * (a single producer moves it after its commits) says nothing: false, and the frontier
 * waits at m until it does. Trusting a broken end sent the frontier past the tail or into
 * the next message's bytes; freeing nothing for it whatever the tail said left a queue
 * with nothing behind it full for good. */
static bool freed_to(const shmrpc_queue *q, uint32_t m, uint32_t start, uint32_t len, uint32_t end,
                     uint32_t *b)
{
    if (end - *b <= q->b && sound(q, start, len, end)) {
        *b = end;
        return true;
    }
    uint64_t t = atomic_load(&q->hdr->tail);
    int32_t ahead = (int32_t)(msg_of(t) - (m + 1));
    if (ahead < 0) return false;
    if (ahead == 0 && byte_of(t) - *b <= q->b) *b = byte_of(t);
    return true;
}

static inline void bump(_Atomic uint64_t *c, uint64_t by)
{
    atomic_fetch_add_explicit(c, by, memory_order_relaxed);
}

static int64_t deadline_in(int64_t timeout_ms)
{
    if (timeout_ms < 0 || timeout_ms > INT64_MAX / 2000000) return INT64_MAX;
    return shmrpc__now_ns() + timeout_ms * 1000000;
}

/* A call's deadline, read from the clock only when the call first has to wait: a push or
 * pop that does not wait reads no clock. at: 0 until known; INT64_MIN for a try. */
typedef struct due {
    int64_t ms, at;
} due;

static inline due due_in(int64_t timeout_ms)
{
    return (due){timeout_ms, timeout_ms == 0 ? INT64_MIN : timeout_ms < 0 ? INT64_MAX : 0};
}

static int64_t due_at(due *d)
{
    if (d->at == 0) d->at = deadline_in(d->ms);
    return d->at;
}

static bool due_passed(due *d)
{
    int64_t at = due_at(d);
    return at == INT64_MIN || (at != INT64_MAX && shmrpc__now_ns() >= at);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* n things changed that waiters on f wait for (the caller's change is sequentially
 * consistent, and so is this load, so a waiter that set WAITING before its last look is
 * seen). Only then does the word move, and only for a sleeper is there a syscall, which
 * wakes n sleepers (0: all) rather than all of them racing for n messages (or n messages'
 * room). The others sleep on: the word moved, so each looks again at the end of its
 * 20 ms slice at the latest, or sooner when a later change finds SLEEPING set again (by
 * a waiter that went back to sleep). Setting SLEEPING again here when n were woken, so
 * that the next change wakes the next, was measured: it made every other release a
 * useless FUTEX_WAKE and halved 64 KiB zero-copy throughput. */
static void signal_waiters(shmrpc__futex *f, uint32_t n)
{
    uint32_t w = atomic_load(&f->word);
    while (w & FLAGS)
        if (atomic_compare_exchange_weak(&f->word, &w, (w + STEP) & ~FLAGS)) {
            if (w & SLEEPING) shmrpc__futex_wake(f, n == 0 || n > INT32_MAX ? INT32_MAX : (int)n);
            return;
        }
}

/* Announces a waiter on f before its last look: the word with WAITING, or 0 when the word
 * changed meanwhile (look again). */
static uint32_t announce(shmrpc__futex *f)
{
    uint32_t w = atomic_load(&f->word);
    if (w & WAITING) return w;
    return atomic_compare_exchange_strong(&f->word, &w, w | WAITING) ? w | WAITING : 0;
}

/* A single producer commits, and a single consumer gives room back, with plain stores,
 * then loads the waiters' word: a store and a later load that the CPU may reorder, so a
 * waiter that announced itself (a CAS) and then looked might miss the change while the
 * changer misses its announcement. Rather than a fence on every message, the holders of
 * those roles register for membarrier(2), and a waiter, between its announcement and its
 * last look, has every such process run a full barrier (MEMBARRIER_CMD_GLOBAL_EXPEDITED):
 * the changer's store is then visible to the look, or its load comes after the barrier and
 * sees WAITING. Where membarrier is not available, the changer fences itself. */
static void register_barrier(void)
{
    if (atomic_load_explicit(&barrier_pid, memory_order_relaxed) == self()) return;
    long r = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0);
    atomic_store_explicit(&barrier_state, r == 0 ? 1 : -1, memory_order_relaxed);
    atomic_store_explicit(&barrier_pid, self(), memory_order_relaxed);
}

/* The changer's side: between its store and its load of the waiters' word. */
static inline void fence_for_waiters(void)
{
    if (atomic_load_explicit(&barrier_state, memory_order_relaxed) == 1 &&
        atomic_load_explicit(&barrier_pid, memory_order_relaxed) == self())
        atomic_signal_fence(memory_order_seq_cst); /* the compiler keeps the order */
    else
        atomic_thread_fence(memory_order_seq_cst);
}

/* The waiter's side, when the other side has a single holder (plain stores). */
static void barrier_for_waiter(void)
{
    (void)syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
}

/* --- single producer, single consumer: positions and counts ------------------------------ */

/* The 64-bit count whose low half is lo, from a base within 2^31 of it (either side). */
static inline uint64_t extend(uint64_t base, uint32_t lo)
{
    return base + (uint64_t)(int64_t)(int32_t)(lo - (uint32_t)base);
}

/* Moves a count's base up to position lo (never back): run by whoever moves the tail or
 * the head across a multiple of 2^16, so that the base lags the position by little. */
static void raise_base(_Atomic uint64_t *base, uint32_t lo)
{
    uint64_t b = atomic_load_explicit(base, memory_order_relaxed);
    for (;;) {
        int32_t ahead = (int32_t)(lo - (uint32_t)b);
        if (ahead <= 0 ||
            atomic_compare_exchange_weak_explicit(base, &b, b + (uint64_t)ahead,
                                                  memory_order_relaxed, memory_order_relaxed))
            return;
    }
}

/* Whether moving a position from a to b crossed a multiple of 2^16. */
static inline bool crossed(uint32_t a, uint32_t b)
{
    return (a >> 16) != (b >> 16);
}

/* A single consumer's cons word: {next message to take, low half of popped}. */
static inline uint64_t mkcons(uint32_t head, uint32_t popped)
{
    return (uint64_t)popped << 32 | head;
}
static inline uint32_t cons_head(uint64_t c)
{
    return (uint32_t)c;
}
static inline uint32_t cons_popped(uint64_t c)
{
    return (uint32_t)(c >> 32);
}

/* The next message to take: a single consumer's is in cons, the others' in head. */
static inline uint32_t head_now(const shmrpc_queue *q)
{
    return q->sc ? cons_head(atomic_load_explicit(&q->hdr->cons, memory_order_acquire))
                 : atomic_load_explicit(&q->hdr->head, memory_order_acquire);
}

/* A single producer's queue: whether message p, at the tail, was committed already (its
 * producer died between the commit and the move of the tail; it may be taken, even given
 * back, since). */
static bool published(const shmrpc_queue *q, uint32_t p)
{
    uint64_t s = atomic_load(&desc_at(q, p)->state);
    int32_t ahead = (int32_t)(lap_of(s) - p);
    return ahead > 0 || (ahead == 0 && st_of(s) != S_FREE && st_of(s) != S_CLAIMED);
}

/* --- the frontier and repairs --------------------------------------------------------- */

/* Broadcast: whether every subscriber has read message m (its cursor is past it). */
static bool all_past(const shmrpc_queue *q, uint32_t m)
{
    uint64_t mask = atomic_load(&q->hdr->subs);
    while (mask) {
        int i = __builtin_ctzll(mask);
        mask &= mask - 1;
        if ((int32_t)(atomic_load(&q->subs[i].cursor) - m) <= 0) return false;
    }
    return true;
}

/* Gives back, in order, the space of messages released or abandoned (broadcast: committed
 * or abandoned, and read by every subscriber), and wakes producers waiting for room if any
 * was (already: messages the caller gave back itself). Whoever releases (or moves a cursor)
 * runs it, so the last of a run of releases carries the frontier past all of it. A run of
 * such messages is freed one CAS of state each, then one CAS of the frontier past them all;
 * the state after the run is read again after that CAS. */
static void advance_frontier_by(shmrpc_queue *q, uint32_t already)
{
    /* A single consumer's frontier is its own (sc_free): nobody else moves it. */
    if (q->sc) return;
    struct q_hdr *h = q->hdr;
    uint32_t moved = already;
    uint64_t f = atomic_load(&h->freed);
    for (uint32_t i = 0; i <= q->n + 64; i++) {
        uint32_t m0 = msg_of(f), m = m0, b = byte_of(f);
        for (unsigned tries = 0; m - m0 < 64 && tries < 64; tries++) {
            struct q_desc *d = desc_at(q, m);
            uint64_t s = atomic_load(&d->state);
            unsigned st = st_of(s);
            bool mine = lap_of(s) == m &&
                        (q->bcast ? (st == S_COMMITTED || st == S_ABANDONED) && all_past(q, m)
                                  : st == S_RELEASED || st == S_ABANDONED);
            /* FREE of the next lap: freed by another that has not moved the frontier yet
             * (or died before it); finish its advance. */
            if (!mine && !(lap_of(s) == m + q->n && st == S_FREE)) break;
            /* end before the desc is freed: once FREE, a producer may reuse it, but not
             * before the frontier passes it (it needs m + N - freed < N). */
            uint32_t start = atomic_load_explicit(&d->start, memory_order_relaxed);
            uint32_t len = atomic_load_explicit(&d->len, memory_order_relaxed);
            uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed), to = b;
            if (!freed_to(q, m, start, len, end, &to)) break; /* until the tail passes m */
            if (mine &&
                !atomic_compare_exchange_strong(&d->state, &s, mkstate(m + q->n, S_FREE, 0)))
                continue; /* changed meanwhile: look at it again */
            b = to;
            m++;
        }
        if (m == m0) break;
        uint64_t next = mkpos(m, b);
        if (atomic_compare_exchange_strong(&h->freed, &f, next)) { /* else f is the new one */
            moved += m - m0;
            f = next;
        }
    }
    if (moved) signal_waiters(&h->nonfull, moved);
}

static void advance_frontier(shmrpc_queue *q)
{
    advance_frontier_by(q, 0);
}

static void help_head(shmrpc_queue *q, uint32_t hd)
{
    uint32_t seen = hd;
    if (atomic_compare_exchange_strong(&q->hdr->head, &seen, hd + 1) && crossed(hd, hd + 1))
        raise_base(&q->hdr->popped, hd + 1);
}

/* Takes back the slot of message pos from a process that died holding it: a claim whose
 * producer never moved the tail becomes FREE again (nothing was queued); one that did
 * becomes ABANDONED (skipped, never delivered half-written); a message a consumer was
 * reading becomes RELEASED (lost: at most once). A state no step leads to (a bad write)
 * is treated as its holder's death. Returns whether it changed anything. */
static bool repair_at(shmrpc_queue *q, uint32_t pos)
{
    struct q_hdr *h = q->hdr;
    struct q_desc *d = desc_at(q, pos);
    uint64_t s = atomic_load(&d->state);
    if (lap_of(s) != pos) return false;
    unsigned st = st_of(s);
    uint64_t to;
    bool lost;
    if (st == S_CLAIMED || st > S_ABANDONED) {
        if (st == S_CLAIMED && !holder_dead(pid_of(s), atomic_load(&d->prod_tag), pos))
            return false;
        /* A batch claims a run of slots before it moves the tail past them all. */
        bool tail_moved = (int32_t)(msg_of(atomic_load(&h->tail)) - pos) > 0;
        to = tail_moved ? mkstate(pos, S_ABANDONED, 0) : mkstate(pos, S_FREE, 0);
        lost = tail_moved;
    } else if (st == S_READING) {
        if (!holder_dead(pid_of(s), atomic_load(&d->cons_tag), pos)) return false;
        to = mkstate(pos, S_RELEASED, 0);
        lost = true;
    } else {
        return false;
    }
    bool done = st_of(to) == S_FREE ? unclaim(d, pos, s)
                                    : atomic_compare_exchange_strong(&d->state, &s, to);
    if (!done) return true; /* changed anyway */
    bump(&h->repairs, 1);
    if (lost) bump(&h->drops, 1);
    if (st_of(to) == S_ABANDONED) bump(&h->abandoned, 1);
    /* A single consumer skips an abandoned message itself. */
    if (st_of(to) != S_FREE && !q->sc) {
        help_head(q, pos);
        advance_frontier(q);
    }
    /* Consumers asleep at this slot wait for it, and no commit may come to wake them: the
     * producers may all be waiting for room that only they can make (a repair by one of
     * those producers left them asleep with messages queued behind the slot). */
    if (st_of(to) == S_ABANDONED) signal_waiters(&h->nonempty, q->bcast ? 0 : 1);
    return true;
}

/* What blocks the frontier: a dead holder at it, or a committed message that the head
 * went past (only a bad write moves the head so): the head is sent back to it, and the
 * consumers help it past what they took since (dropping the message, as before, lost every
 * message between). */
static bool repair_frontier(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    /* The head before the state: a consumer takes a message (READING) before it moves the
     * head, so a state read after the head went past m is COMMITTED only by a bad write. */
    uint32_t hd = atomic_load(&h->head);
    uint32_t m = msg_of(atomic_load(&h->freed));
    if (repair_at(q, m)) return true;
    if (q->sc) return false; /* a single consumer's taken messages stay COMMITTED */
    struct q_desc *d = desc_at(q, m);
    uint64_t s = atomic_load(&d->state);
    if (!q->bcast && lap_of(s) == m && st_of(s) == S_COMMITTED && (int32_t)(hd - m) > 0 &&
        atomic_compare_exchange_strong(&h->head, &hd, m)) {
        bump(&h->repairs, 1);
        signal_waiters(&h->nonempty, 0);
        return true;
    }
    return false;
}

/* --- positions no step leads to ------------------------------------------------------ */

/* A header position that a bad write left where no step leads (docs/queue.md, "Positions
 * written over"): every push and pop that meets it says so, naming the word and its value,
 * instead of waiting on a queue that cannot move; shmrpc_queue_repair rebuilds it from the
 * descriptors' own laps, which say which of the words is wrong. */
static int corrupt(const shmrpc_queue *q, const char *what)
{
    return fail(SHMRPC_ECORRUPT,
                "queue '%s' is corrupt: %s (written over); `shmrpcctl queue repair %s` "
                "rebuilds it",
                q->name, what, q->name);
}

/* Whether the header's positions are ones that steps lead to: the tail at most N messages
 * and B bytes past the frontier (a single producer moves it after its commits, so the
 * frontier may be past it as far); the head at most N behind the frontier (abandoned
 * messages given back before a consumer helped the head past them) and not past the tail
 * (a single producer's: not past the frontier's N). Each only grows, and others move them
 * while they are read, so the frontier is read twice, before the head or this subscriber's
 * cursor and the tail and after them: a bound below a later word is checked against the
 * first frontier, one above it against the second, each as it was when that word was read
 * or older on the safe side. (With one read, a frontier read before a tail that moved on
 * meanwhile made a live queue look corrupt: the tail 35 past a frontier 32 slots allow, in
 * queue_test kill_at_random under ASan.) A single consumer's head and frontier, and a
 * single producer's tail, are its handle's own. 0 or SHMRPC_ECORRUPT. Only slow paths run
 * it. */
static int check_positions(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    bool sc_own = q->sc && q->cons_pid == self(), sp_own = q->sp && q->prod_pid == self();
    uint64_t f = sc_own ? q->sc_freed : atomic_load(&h->freed);
    bool has_head = !q->bcast || q->sub >= 0;
    uint32_t hd = q->bcast ? (has_head ? atomic_load(&q->subs[q->sub].cursor) : 0)
                  : q->sc  ? (sc_own ? cons_head(q->sc_cons) : cons_head(atomic_load(&h->cons)))
                           : atomic_load(&h->head);
    uint64_t t = sp_own ? q->sp_tail : atomic_load(&h->tail);
    uint64_t f2 = sc_own ? f : atomic_load(&h->freed);
    uint32_t fm = msg_of(f), fm2 = msg_of(f2), tm = msg_of(t);
    /* Past the later frontier, and short of the earlier one. */
    int64_t dm = (int32_t)(tm - fm2), db = (int32_t)(byte_of(t) - byte_of(f2));
    int64_t sm = (int32_t)(tm - fm), sb = (int32_t)(byte_of(t) - byte_of(f));
    char what[256];
    if (dm > q->n || sm < (q->sp ? -(int64_t)q->n : 0) || db > q->b ||
        sb < (q->sp ? -(int64_t)q->b : 0)) {
        bool over = dm > q->n || db > q->b;
        snprintf(what, sizeof what,
                 "its tail {message %" PRIu32 ", byte %" PRIu32 "} is %" PRId64
                 " messages and %" PRId64 " bytes from its frontier {message %" PRIu32
                 ", byte %" PRIu32 "}, which %" PRIu32 " slots and %" PRIu32 " bytes do not allow",
                 tm, byte_of(t), over ? dm : sm, over ? db : sb, over ? fm2 : fm,
                 byte_of(over ? f2 : f), q->n, q->b);
        return corrupt(q, what);
    }
    if (!has_head) return 0;
    int64_t behind = (int32_t)(hd - fm), past = (int32_t)(hd - (q->sp ? fm2 + q->n : tm));
    if (behind < -(int64_t)q->n || past > 0) {
        snprintf(what, sizeof what,
                 "its %s is %" PRIu32 " (0x%08" PRIx32 "), outside [%" PRIu32 ", %" PRIu32
                 "] (the frontier less %" PRIu32 " slots, %s)",
                 q->bcast ? "subscriber's cursor"
                 : q->sc  ? "single consumer's head"
                          : "head",
                 hd, hd, fm - q->n, q->sp ? fm2 + q->n : tm, q->n,
                 q->sp ? "the frontier plus them" : "the tail");
        return corrupt(q, what);
    }
    return 0;
}

/* A consumer found the slot of message hd (its state s) empty for now. If the tail is past
 * hd, though, hd was claimed, and its slot holds lap hd or a later one from then on: FREE of
 * lap hd or an earlier lap there is a bad write (a scribbled head descriptor). The tail is
 * read after the state, and the state again after the tail, so that a producer's claim and
 * move of the tail in between is seen. Such a slot is skipped as abandoned (what it held is
 * lost and counted) with SHMRPC_EPROTO naming it; 0 while the slot may be empty. */
static int check_head_slot(shmrpc_queue *q, uint32_t hd, uint64_t s)
{
    int32_t ahead = (int32_t)(lap_of(s) - hd);
    if (ahead > 0 || (ahead == 0 && st_of(s) != S_FREE)) return 0;
    uint64_t t = q->sp && q->prod_pid == self() ? q->sp_tail : atomic_load(&q->hdr->tail);
    if ((int32_t)(msg_of(t) - hd) <= 0) return 0;
    struct q_desc *d = desc_at(q, hd);
    uint64_t seen = s;
    if (!atomic_compare_exchange_strong(&d->state, &seen, mkstate(hd, S_ABANDONED, 0))) return 0;
    bump(&q->hdr->repairs, 1);
    bump(&q->hdr->drops, 1);
    if (!q->sc && !q->bcast) help_head(q, hd);
    if (!q->sc) advance_frontier(q);
    return fail(SHMRPC_EPROTO,
                "queue '%s': the slot of message %" PRIu32 " held 0x%016" PRIx64
                " with the tail at %" PRIu32 ", a state no step leads to (written over); "
                "skipped",
                q->name, hd, s, msg_of(t));
}

static void sc_free(shmrpc_queue *q, uint32_t already);

/* A consumer's look before it reports empty, and a waiter's now and then: the positions,
 * and the state at the head (a subscriber's cursor). A single consumer's frontier may wait
 * at a message whose descriptor was written over until its producer moved the tail past it
 * (freed_to): it looks again here, since nobody else moves it and the producers may wait
 * for that room. */
static int check_consuming(shmrpc_queue *q)
{
    int rc = check_positions(q);
    if (rc != 0 || (q->bcast && q->sub < 0)) return rc;
    uint32_t hd = q->bcast ? atomic_load(&q->subs[q->sub].cursor)
                  : q->sc  ? cons_head(q->sc_cons)
                           : atomic_load(&q->hdr->head);
    if (q->sc && q->cons_pid != self()) return 0; /* not taken the role yet */
    if (q->sc) sc_free(q, 0);
    return check_head_slot(q, hd, atomic_load(&desc_at(q, hd)->state));
}

/* What the descriptors' own laps say of the positions (the repair's source, docs/queue.md
 * "Positions written over"): the tail after the last message claimed, the frontier at the
 * first claimed and not given back (for a queue with both roles, whose slots are not freed,
 * the first of the caller's known frontiers within the tail's reach, else the tail), the
 * head at the first not taken, each message position with its byte position; and how many
 * slots hold no state of a lap near the anchor (broken). */
struct rebuilt {
    uint64_t tail, freed;
    uint32_t head, broken;
};

/* Scans the descriptors around anchor, a position from the header: a slot's laps are
 * within N of the tail, and a state of another lap is broken. A FREE slot was last claimed
 * a lap before its own (the first lap's FREE states say N..1 before message 0). */
static void rebuild_around(const shmrpc_queue *q, uint32_t anchor, const uint32_t *known,
                           int n_known, struct rebuilt *r)
{
    int64_t n = q->n, last = INT64_MIN, first = INT64_MAX;
    r->broken = 0;
    for (uint32_t i = 0; i < q->n; i++) {
        uint64_t s = atomic_load(&q->desc[i].state);
        int64_t d = (int32_t)(lap_of(s) - anchor);
        if (st_of(s) > S_ABANDONED || (lap_of(s) & q->mask) != i || d < -2 * n || d > 2 * n) {
            r->broken++;
            continue;
        }
        int64_t claimed = st_of(s) == S_FREE ? d - n : d;
        if (claimed > last) last = claimed;
        if (st_of(s) != S_FREE && d < first) first = d;
    }
    uint32_t tm = last == INT64_MIN ? anchor : anchor + (uint32_t)(last + 1);
    uint32_t fm = first == INT64_MAX || first > last ? tm : anchor + (uint32_t)first;
    if (n_known > 0) { /* the first of the frontiers known that is within the tail's reach */
        fm = tm;
        for (int i = n_known; i-- > 0;)
            if ((int32_t)(tm - known[i]) >= 0 && (int32_t)(tm - known[i]) <= (int32_t)q->n)
                fm = known[i];
    }
    if ((int32_t)(tm - fm) < 0 || (int32_t)(tm - fm) > (int32_t)q->n) fm = tm;
    /* The bytes: the tail's after the last message's end; the frontier's at the first
     * message's start (the padding before it, if any, is then free: nobody uses it), or
     * the tail's when none is queued. */
    const struct q_desc *dl = desc_at(q, tm - 1), *df = desc_at(q, fm);
    uint32_t tb = atomic_load(&dl->end), fb = tb;
    if (fm != tm) fb = atomic_load(&df->start);
    if (tb - fb > q->b) fb = tb - q->b; /* broken ends: room for nothing rather than overlap */
    r->tail = mkpos(tm, tb);
    r->freed = mkpos(fm, fb);
    /* The head: at the first message from the frontier that is not taken yet. */
    r->head = tm;
    for (uint32_t m = fm; m != tm; m++) {
        uint64_t s = atomic_load(&desc_at(q, m)->state);
        if (lap_of(s) != m ||
            (st_of(s) != S_FREE && st_of(s) != S_CLAIMED && st_of(s) != S_COMMITTED))
            continue;
        r->head = m;
        break;
    }
}

/* The scan around whichever of the header's positions (or two slots' own laps) leaves the
 * fewest slots broken: a bad write rarely hits them all. */
static void rebuild(const shmrpc_queue *q, const uint32_t *known, int n_known, struct rebuilt *r)
{
    const struct q_hdr *h = q->hdr;
    uint32_t anchors[5] = {msg_of(atomic_load(&h->tail)), msg_of(atomic_load(&h->freed)),
                           q->sc ? cons_head(atomic_load(&h->cons)) : atomic_load(&h->head),
                           lap_of(atomic_load(&q->desc[0].state)),
                           lap_of(atomic_load(&q->desc[q->n / 2].state))};
    r->broken = UINT32_MAX;
    for (int i = 0; i < 5; i++) {
        struct rebuilt c;
        rebuild_around(q, anchors[i], known, n_known, &c);
        if (c.broken < r->broken) *r = c;
    }
}

/* --- broadcast subscribers ------------------------------------------------------------- */

static uint64_t owner_word(void)
{
    uint32_t pid = self();
    return (uint64_t)(uint32_t)shmrpc__self_start() << 32 | pid;
}

static bool owner_dead(uint64_t owner)
{
    return owner == 0 || proc_dead((uint32_t)owner, true, (uint32_t)(owner >> 32));
}

/* Frees subscriber slot i, whose owner was seen as `owner`. The slot is first made ours
 * (one CAS from exactly that owner to our own owner word), so that only one freer clears
 * its bit and nobody takes the slot before the bit is clear; then the bit, then the owner.
 * Clearing the bit first, as before, let a freer that had read the dead owner before
 * another freed the slot and a new subscriber took it clear the new subscriber's bit: its
 * cursor then held nothing back and it could lose messages. A freer that dies holding the
 * slot leaves it to a dead owner, freed the same way. */
static void free_sub(shmrpc_queue *q, int i, uint64_t owner)
{
    uint64_t mine = owner_word();
    if (!atomic_compare_exchange_strong(&q->subs[i].owner, &owner, mine)) return;
    atomic_fetch_and(&q->hdr->subs, ~(UINT64_C(1) << i));
    atomic_compare_exchange_strong(&q->subs[i].owner, &mine, 0);
}

/* Unsubscribes dead subscribers that hold the frontier back. Whether any was. */
static bool reap_subscribers(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    uint32_t m = msg_of(atomic_load(&h->freed));
    uint64_t mask = atomic_load(&h->subs);
    bool reaped = false;
    while (mask) {
        int i = __builtin_ctzll(mask);
        mask &= mask - 1;
        struct q_sub *sb = &q->subs[i];
        if ((int32_t)(atomic_load(&sb->cursor) - m) > 0) continue;
        uint64_t owner = atomic_load(&sb->owner);
        if (!owner_dead(owner)) continue;
        free_sub(q, i, owner);
        bump(&h->repairs, 1);
        reaped = true;
    }
    if (reaped) advance_frontier(q);
    return reaped;
}

/* The drop policy: drops the oldest message for the subscribers that have not read it, so
 * that the frontier passes it. Whether there was one to drop (not one being written). */
static bool drop_oldest(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    uint32_t m = msg_of(atomic_load(&h->freed));
    uint64_t s = atomic_load(&desc_at(q, m)->state);
    if (lap_of(s) != m || (st_of(s) != S_COMMITTED && st_of(s) != S_ABANDONED)) return false;
    uint64_t mask = atomic_load(&h->subs);
    while (mask) {
        int i = __builtin_ctzll(mask);
        mask &= mask - 1;
        struct q_sub *sb = &q->subs[i];
        uint32_t c = atomic_load(&sb->cursor);
        while ((int32_t)(c - m) <= 0)
            if (atomic_compare_exchange_weak(&sb->cursor, &c, m + 1)) {
                bump(&sb->missed, m + 1 - c);
                bump(&h->drops, 1);
                break;
            }
    }
    advance_frontier(q);
    return true;
}

/* Takes a subscriber slot; its cursor starts at the frontier (which its bit then holds)
 * and moves to the tail: it sees what is committed from now on. */
static int subscribe(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    uint64_t me = owner_word();
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < SUBS; i++) {
            struct q_sub *sb = &q->subs[i];
            uint64_t cur = atomic_load(&sb->owner);
            if (cur != 0) {
                /* A second pass takes the slots of dead subscribers. */
                if (pass == 0 || !owner_dead(cur)) continue;
                free_sub(q, i, cur);
                cur = 0;
            }
            if (!atomic_compare_exchange_strong(&sb->owner, &cur, me)) continue;
            atomic_store(&sb->missed, 0);
            atomic_store(&sb->cursor, msg_of(atomic_load(&h->freed)));
            atomic_fetch_or(&h->subs, UINT64_C(1) << i);
            atomic_store(&sb->cursor, msg_of(atomic_load(&h->tail)));
            q->sub = i;
            return 0;
        }
    return fail(SHMRPC_EBUSY, "queue '%s' has %d subscribers already", q->name, SUBS);
}

static void unsubscribe(shmrpc_queue *q)
{
    if (q->sub < 0) return;
    free_sub(q, q->sub, atomic_load(&q->subs[q->sub].owner));
    q->sub = -1;
    advance_frontier(q);
}

/* --- waiting ---------------------------------------------------------------------------- */

enum wait_for { FOR_MESSAGE, FOR_ROOM };

struct waiting {
    shmrpc_queue *q;
    enum wait_for what;
    int64_t next_probe_ns;
};

/* The wait's check: now and then, and before every sleep, look whether a dead process
 * blocks us and take its slot back. */
static int on_check(void *arg)
{
    struct waiting *w = arg;
    int64_t now = shmrpc__now_ns();
    if (now < w->next_probe_ns) return cut(w->q) ? SHMRPC_ECUT : 0;
    /* A waiter may touch no page past a cut (an empty queue's wait reads the first page
     * alone): its last page then says so. Zero pages move no more: the wait ends. */
    (void)*(volatile const unsigned char *)((const unsigned char *)w->q->hdr + w->q->map_size - 1);
    if (cut(w->q)) return SHMRPC_ECUT;
    w->next_probe_ns = now + PROBE_NS;
    shmrpc_queue *q = w->q;
    bool fixed = false;
    int rc = w->what == FOR_MESSAGE ? check_consuming(q) : check_positions(q);
    if (rc != 0) return rc;
    if (w->what == FOR_MESSAGE) {
        fixed = repair_at(q, q->bcast ? atomic_load(&q->subs[q->sub].cursor) : head_now(q));
        fixed |= repair_frontier(q);
    } else {
        fixed = repair_frontier(q);
        if (q->bcast) fixed |= reap_subscribers(q);
        advance_frontier(q);
    }
    return fixed ? READY : 0;
}

/* Waits until the futex f moves from old (or the check finds a repair), the deadline
 * passes (SHMRPC_ETIMEDOUT), or 0 for "look again". */
static int wait_on(shmrpc_queue *q, shmrpc__futex *f, uint32_t old, int64_t deadline,
                   struct waiting *w)
{
    bool slept = false;
    uint64_t timer_ends = 0; /* sleeps that ended by their timer, not by a wake-up */
    const shmrpc__waiter waiter = {
        .opts = &q->wait_after_spin,
        .check = on_check,
        .check_arg = w,
        .flag = SLEEPING,
        .slept = &slept,
        .timer_ends = &timer_ends,
        .check_ns = q->wait.sleep_ns,
    };
    int rc = shmrpc__wait_while(f, old, deadline, &waiter);
    if (slept) bump(&q->hdr->sleeps, 1);
    if (timer_ends) bump(&q->hdr->timer_wakes, timer_ends);
    return rc == READY ? 0 : rc;
}

/* The first part of a wait: spin (pause) for the spin budget, watching the head's slot or
 * the frontier itself, without announcing the waiter, so that the other side pays nothing
 * for it (no CAS on the waiters' word, no syscall). Then the caller announces itself and
 * waits through wait_on, whose own spin this one replaces (wait_after_spin). */
struct spin {
    int64_t until, yield_after;
    int seat;          /* the spinner's seat, or -1 */
    uint64_t occupant; /* what this waiter wrote in it */
};

/* Takes a free seat for this waiter (one per CPU, the first SEATS at most): a spin beside
 * as many spinners as CPUs only keeps the processes it waits for from running, so past
 * them a waiter sleeps at once. Its index, or -1 when every seat is held. A seat held
 * longer than a spin can last (a dead or stopped spinner's) is free. */
static int take_seat(shmrpc_queue *q, int64_t now, uint64_t *occupant)
{
    int n = shmrpc__ncpus() < SEATS ? shmrpc__ncpus() : SEATS;
    int64_t budget_ms = q->wait.spin_ns / 1000000;
    if (budget_ms < 0) budget_ms = 0;
    if (budget_ms > INT32_MAX / 2) budget_ms = INT32_MAX / 2;
    int32_t stale = (int32_t)budget_ms + SEAT_GRACE_MS;
    uint32_t ms = (uint32_t)(now / 1000000);
    *occupant = (uint64_t)ms << 32 | self();
    for (int i = 0; i < n; i++) {
        uint64_t s = atomic_load_explicit(&q->hdr->seats[i], memory_order_relaxed);
        /* Held: for at most stale so far, or taken after our clock read (as long ago as
         * that at most: a stamp further ahead was written by no spinner of this clock, or
         * wrapped around in the 49 days of a 32-bit millisecond count). */
        int32_t age = (int32_t)(ms - (uint32_t)(s >> 32));
        if (s != 0 && age <= stale && age >= -stale) continue;
        if (atomic_compare_exchange_strong(&q->hdr->seats[i], &s, *occupant)) return i;
    }
    return -1;
}

/* Whether the waiter spins, and for how long (in SPIN mode always, beside any number of
 * spinners: the user asked for it; in ADAPTIVE mode only in a seat; in SLEEP mode never). */
static bool spin_begin(shmrpc_queue *q, due *dl, struct spin *sp)
{
    sp->seat = -1;
    if (q->wait.mode == SHMRPC_WAIT_SLEEP) return false;
    int64_t now = shmrpc__now_ns(), at = due_at(dl);
    /* Any budget the options hold: a sum past INT64_MAX (a signed overflow) is forever. */
    int64_t end = q->wait.spin_ns < INT64_MAX - now ? now + q->wait.spin_ns : INT64_MAX;
    if (q->wait.mode == SHMRPC_WAIT_ADAPTIVE && (sp->seat = take_seat(q, now, &sp->occupant)) < 0)
        return false;
    sp->yield_after = now + SPIN_YIELD_NS;
    sp->until = end < at ? end : at;
    return true;
}

static void spin_end(shmrpc_queue *q, const struct spin *sp)
{
    uint64_t s = sp->occupant;
    if (sp->seat >= 0) atomic_compare_exchange_strong(&q->hdr->seats[sp->seat], &s, 0);
}

/* A spin's pause; every 64th also a look at the clock: true once the budget is spent.
 * After the first SPIN_YIELD_NS each look also yields the CPU: when the process the
 * spinner waits for shares its CPU (a busy machine), a spin that never yields keeps it
 * from running for the whole budget (measured: a queue echo with both processes on one
 * CPU took 205 us per call, two budgets). */
static bool spin_pause(unsigned i, const struct spin *sp)
{
    cpu_relax();
    if (i % 64 != 0) return false;
    int64_t now = shmrpc__now_ns();
    if (now >= sp->until) return true;
    if (now >= sp->yield_after) sched_yield();
    return false;
}

static void spin_for_message(shmrpc_queue *q, due *dl)
{
    struct spin sp;
    if (!spin_begin(q, dl, &sp)) return;
    for (unsigned i = 1;; i++) {
        uint32_t hd = q->bcast ? atomic_load(&q->subs[q->sub].cursor) : head_now(q);
        uint64_t s = atomic_load_explicit(&desc_at(q, hd)->state, memory_order_acquire);
        int32_t ahead = (int32_t)(lap_of(s) - hd);
        if (ahead > 0 || (ahead == 0 && st_of(s) != S_FREE && st_of(s) != S_CLAIMED)) break;
        if (spin_pause(i, &sp)) break;
    }
    spin_end(q, &sp);
}

/* --- producing ------------------------------------------------------------------------ */

/* Where a message of len bytes goes when the tail's byte position is b: contiguous, so a
 * message that would cross the arena's end starts at its beginning, the rest padding. */
static inline void place(const shmrpc_queue *q, uint32_t b, uint32_t len, uint32_t *start,
                         uint32_t *end)
{
    uint32_t need = room_for(len), off = b & q->bmask, s = b;
    if (off + need > q->b) s = b + (q->b - off);
    *start = s;
    *end = s + need;
}

static inline bool fits(const shmrpc_queue *q, uint32_t p, uint32_t end, uint64_t f)
{
    return p - msg_of(f) < q->n && end - byte_of(f) <= q->b;
}

/* A producer that found the queue full spins until a quarter of it is free (or its
 * message fits when the spin budget ends): it then pushes that quarter without reading
 * the frontier, which consumers write, once per message. */
static void spin_for_room(shmrpc_queue *q, uint32_t p, uint32_t len, uint32_t end, due *dl)
{
    struct spin sp;
    if (!spin_begin(q, dl, &sp)) return;
    uint32_t need = room_for(len);
    uint32_t slack_msgs = q->n / 4, slack_bytes = need && need <= q->b / 4 ? q->b / 4 : 0;
    for (unsigned i = 1;; i++) {
        uint64_t f = atomic_load_explicit(&q->hdr->freed, memory_order_acquire);
        if (fits(q, p + slack_msgs, end + slack_bytes, f) ||
            msg_of(atomic_load_explicit(&q->hdr->tail, memory_order_relaxed)) != p)
            break;
        if (spin_pause(i, &sp)) break;
    }
    spin_end(q, &sp);
}

/* A producer that found no room by its deadline: full, or the positions say why not; or
 * LOOK_AGAIN, once a call (*looked), when its move of the frontier freed some. A frontier
 * waiting at a message whose descriptor was written over until the tail passed it
 * (freed_to) is moved by a release or a waiter's check alone: a push that does not wait
 * (or not long enough for a check) said full for good on an empty queue. */
enum { LOOK_AGAIN = 1 };
static int full_or_corrupt(shmrpc_queue *q, bool *looked)
{
    if (!*looked) {
        *looked = true;
        uint64_t f = atomic_load(&q->hdr->freed);
        advance_frontier(q); /* none for a single consumer's (check_consuming moves it) */
        if (atomic_load(&q->hdr->freed) != f) return LOOK_AGAIN;
    }
    int rc = check_positions(q);
    return rc != 0 ? rc : SHMRPC_ETIMEDOUT;
}

/* The slot of the tail's message p holds s, neither FREE nor CLAIMED of lap p. A state of
 * this slot's laps that steps lead to says that a header word is wrong, not the slot:
 * message p or a later one committed (or given back) here, the tail was sent back behind
 * them; the message of the lap before not given back, the frontier was sent past it.
 * Resetting the slot, as for a state no step leads to, lost what it held; SHMRPC_ECORRUPT
 * instead, or 0 for a slot that a bad write broke. */
static int tail_behind(shmrpc_queue *q, uint64_t t, uint64_t s)
{
    uint32_t p = msg_of(t), lap = lap_of(s);
    unsigned st = st_of(s);
    if (st > S_ABANDONED || ((lap ^ p) & q->mask) != 0) return 0;
    int32_t ahead = (int32_t)(lap - p);
    char what[200];
    if (ahead > 0 || (ahead == 0 && st > S_CLAIMED))
        snprintf(what, sizeof what,
                 "its tail {message %" PRIu32 ", byte %" PRIu32 "} is behind message %" PRIu32
                 ", queued in the tail's slot already",
                 p, byte_of(t), lap);
    else if (ahead == -(int32_t)q->n && st != S_FREE)
        snprintf(what, sizeof what,
                 "its frontier (message %" PRIu32 ") is past message %" PRIu32
                 ", which was not given back",
                 msg_of(atomic_load(&q->hdr->freed)), lap);
    else
        return 0;
    return corrupt(q, what);
}

/* A producer lost the claim of slot p (tail t) to another: wait for that one to move the
 * tail, briefly spinning, then yielding, then napping; take the slot back if it died, or
 * if the slot is in a state no step leads to while the tail stays. */
static int wait_claimer(shmrpc_queue *q, uint64_t t, due *dl)
{
    int64_t deadline = due_at(dl);
    struct q_hdr *h = q->hdr;
    uint32_t p = msg_of(t);
    struct q_desc *d = desc_at(q, p);
    int64_t start = shmrpc__now_ns(), next_probe = start + PROBE_NS;
    /* Even a try waits the moment another producer takes to move the tail. */
    if (deadline < start + CLAIM_GRACE_NS) deadline = start + CLAIM_GRACE_NS;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&h->tail, memory_order_acquire) != t) return 0;
        if (i % 64 != 0) {
            cpu_relax();
            continue;
        }
        int64_t now = shmrpc__now_ns();
        if (cut(q)) return SHMRPC_ECUT;
        if (now >= deadline) return SHMRPC_ETIMEDOUT;
        if (now >= next_probe) {
            next_probe = now + PROBE_NS;
            uint64_t s = atomic_load(&d->state);
            /* The state is judged only if the tail was still at p after it was read. */
            if (atomic_load(&h->tail) != t) return 0;
            if (lap_of(s) == p && st_of(s) == S_FREE) return 0;
            int rc = tail_behind(q, t, s);
            if (rc != 0) return rc;
            if (lap_of(s) != p || st_of(s) != S_CLAIMED) {
                /* The tail is at p, so nothing but FREE or CLAIMED of lap p can be here. */
                if (atomic_compare_exchange_strong(&d->state, &s, mkstate(p, S_FREE, 0)))
                    bump(&h->repairs, 1);
                return 0;
            }
            if (repair_at(q, p)) return 0;
        }
        if (now - start > q->wait.spin_ns) {
            struct timespec ts = {0, 50 * 1000};
            nanosleep(&ts, NULL);
        } else if (now - start > q->wait.spin_ns / 2) {
            sched_yield();
        }
    }
}

/* The most messages a batch claims with one move of the tail. */
#define RUN 32u

/* One push's wake-ups, deferred over a batch. */
struct producing {
    uint32_t unsignalled; /* commits not yet signalled to consumers */
};

static void flush_signal(shmrpc_queue *q, struct producing *pr)
{
    uint32_t n = pr->unsignalled;
    if (n == 0) return;
    pr->unsignalled = 0;
    if (q->sp) fence_for_waiters();
    /* Broadcast: every subscriber wants every message, so every sleeper is woken. */
    signal_waiters(&q->hdr->nonempty, q->bcast ? 0 : n);
}

/* Claims the next slots and their bytes for k >= 1 messages of lens[] (<= max_msg each),
 * moving the tail past them with one CAS: 0 with the first position, each payload's byte
 * position and how many were claimed (at least 1: those that fit at once, after the first,
 * which may wait). The slots after the first are claimed while the tail is still at the
 * first, so nobody else can (the tail must be at a slot to claim it); one left CLAIMED by a
 * producer that died before it moved the tail is freed by the one that next finds the tail
 * at it (repair_at: the tail is not past it). */
static int claim(shmrpc_queue *q, const uint32_t *lens, uint32_t k, due *dl, struct producing *pr,
                 uint32_t *pos, uint32_t *starts, uint32_t *claimed)
{
    uint32_t len = lens[0];
    struct q_hdr *h = q->hdr;
    uint32_t me = self();
    bool spun = false, looked = false;
    for (;;) {
        uint64_t t = atomic_load_explicit(&h->tail, memory_order_acquire);
        uint32_t p = msg_of(t), start, end;
        place(q, byte_of(t), len, &start, &end);
        uint64_t f = atomic_load_explicit(&q->freed_seen, memory_order_relaxed);
        if (!fits(q, p, end, f)) {
            f = atomic_load(&h->freed);
            if (!fits(q, p, end, f) && q->bcast) {
                /* Subscribers that moved on, or none: the frontier may pass more. */
                advance_frontier(q);
                f = atomic_load(&h->freed);
            }
            atomic_store_explicit(&q->freed_seen, f, memory_order_relaxed);
            if (!fits(q, p, end, f)) {
                /* Again only when the drop moved the frontier: one that cannot pass the
                 * message (a descriptor written over) would drop it forever. */
                if (q->bcast && q->drop && drop_oldest(q) && atomic_load(&h->freed) != f) continue;
                if (due_passed(dl)) {
                    int rc = full_or_corrupt(q, &looked);
                    if (rc == LOOK_AGAIN) continue;
                    return rc;
                }
                flush_signal(q, pr); /* consumers must see what we queued to make room */
                if (!spun) {
                    spun = true;
                    spin_for_room(q, p, len, end, dl);
                    continue;
                }
                uint32_t old = announce(&h->nonfull);
                if (old != 0 && q->sc) barrier_for_waiter();
                if (old == 0 || fits(q, p, end, atomic_load(&h->freed))) continue;
                struct waiting w = {q, FOR_ROOM, shmrpc__now_ns() + PROBE_NS};
                int rc = wait_on(q, &h->nonfull, old, due_at(dl), &w);
                if (rc != 0 && rc != SHMRPC_ETIMEDOUT) return rc;
                if (rc == SHMRPC_ETIMEDOUT && !fits(q, p, end, atomic_load(&h->freed)) &&
                    msg_of(atomic_load(&h->tail)) == p) {
                    rc = full_or_corrupt(q, &looked);
                    if (rc != LOOK_AGAIN) return rc;
                }
                continue;
            }
        }
        struct q_desc *d = desc_at(q, p);
        uint64_t s = mkstate(p, S_FREE, 0);
        if (atomic_compare_exchange_strong(&d->state, &s, mkstate(p, S_CLAIMED, me))) {
            uint32_t c = 0, run_end;
            for (;;) {
                atomic_store_explicit(&d->prod_tag, self_tag(p + c), memory_order_relaxed);
                atomic_store_explicit(&d->start, start, memory_order_relaxed);
                atomic_store_explicit(&d->len, lens[c], memory_order_relaxed);
                atomic_store_explicit(&d->end, end, memory_order_relaxed);
                starts[c++] = start;
                run_end = end;
                if (c == k) break;
                /* The next of the run, if it fits at once (against the frontier known). */
                uint32_t b = end;
                place(q, b, lens[c], &start, &end);
                if (!fits(q, p + c, end, f)) break;
                d = desc_at(q, p + c);
                s = mkstate(p + c, S_FREE, 0);
                if (!atomic_compare_exchange_strong(&d->state, &s, mkstate(p + c, S_CLAIMED, me)))
                    break; /* a dead batch's claim, or a bad write: its repair is the next's */
            }
            uint64_t seen = t;
            if (atomic_compare_exchange_strong(&h->tail, &seen, mkpos(p + c, run_end))) {
                if (crossed(p, p + c)) raise_base(&h->pushed, p + c);
                *pos = p;
                *claimed = c;
                return 0;
            }
            /* Only the claimer moves the tail from p: a bad write did. Give the slots back
             * and start over from the tail as it is. */
            for (uint32_t j = c; j-- > 0;)
                unclaim(desc_at(q, p + j), p + j, mkstate(p + j, S_CLAIMED, me));
            continue;
        }
        int rc = wait_claimer(q, t, dl);
        if (rc != 0) return rc;
    }
}

/* Makes message pos visible: CLAIMED by us -> COMMITTED. */
static int publish(shmrpc_queue *q, uint32_t pos, struct producing *pr)
{
    struct q_desc *d = desc_at(q, pos);
    uint64_t s = mkstate(pos, S_CLAIMED, self());
    if (!atomic_compare_exchange_strong_explicit(&d->state, &s, mkstate(pos, S_COMMITTED, 0),
                                                 memory_order_release, memory_order_relaxed))
        return fail(SHMRPC_EPROTO,
                    "queue '%s': message %" PRIu32 " was taken from this process before it "
                    "was committed (its slot was written over)",
                    q->name, pos);
    pr->unsignalled++;
    return 0;
}

/* --- single producer, single consumer: the roles ----------------------------------------- */

enum { TAKE_AGAIN = 1, TAKE_EMPTY = 2 };

/* What a new holder of the producer's role finds: the tail, moved past the messages that a
 * dead holder committed but did not move it past, and the count of pushes. */
static void take_over_producing(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    uint64_t t = atomic_load(&h->tail), f = atomic_load(&h->freed);
    /* A tail that a bad write sent out of the frontier's reach (on either side: the
     * frontier may pass a single producer's tail) is rebuilt from the descriptors; the
     * role's lease is the lock over it (docs/queue.md, "Positions written over"). */
    int64_t dm = (int32_t)(msg_of(t) - msg_of(f)), db = (int32_t)(byte_of(t) - byte_of(f));
    if (dm > q->n || dm < -(int64_t)q->n || db > q->b || db < -(int64_t)q->b) {
        struct rebuilt r;
        uint32_t known[2] = {msg_of(f), cons_head(atomic_load(&h->cons))};
        rebuild(q, known, q->sc ? 2 : 0, &r);
        t = r.tail;
        atomic_store(&h->tail, t);
        bump(&h->repairs, 1);
    }
    /* A batch publishes its run before it moves the tail once: a holder killed between
     * the two left up to a run of committed messages there, in order. */
    uint32_t moved = 0;
    for (uint32_t i = 0; i < q->n && published(q, msg_of(t)); i++) {
        uint32_t p = msg_of(t);
        struct q_desc *d = desc_at(q, p);
        uint32_t start = atomic_load(&d->start), len = atomic_load(&d->len);
        uint32_t end = atomic_load(&d->end);
        /* A bad write (its start, length and end do not add up): where its bytes end is
         * not known, and a consumer may be reading them (it took the message while it was
         * sound): it takes all the room the frontier left, so that nothing with arena
         * bytes lands on them before the frontier passes it, which then frees them at once
         * (freed_to: the tail at p + 1, or a later message's end). No bytes for it let the
         * next push write over a message being read; its end alone sent the tail out of
         * the frontier's reach. */
        if (end - byte_of(t) > q->b || !sound(q, start, len, end)) end = byte_of(f) + q->b;
        t = mkpos(p + 1, end);
        atomic_store(&h->tail, t);
        bump(&h->repairs, 1);
        moved++;
    }
    /* A frontier that waited at a message written over until the tail passed it (freed_to)
     * moves now; a single consumer's moves when it looks (check_consuming). */
    if (moved) advance_frontier(q);
    q->sp_tail = t;
    q->sp_count = extend(atomic_load(&h->pushed), msg_of(t));
    atomic_store_explicit(&h->pushed, q->sp_count, memory_order_relaxed);
}

/* A new single consumer's head and frontier that a bad write sent where no step leads (the
 * head behind the frontier or past the tail, the frontier out of the tail's reach) are
 * rebuilt from the descriptors under the role's lease: the frontier at the first message
 * not given back (with a single producer too, whose slots are not freed: the frontier as
 * it was if within the tail's reach, else the head if that is, else the tail), the head
 * kept if it lies between the frontier and the tail, else at the frontier. */
static void rebuild_consuming(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    uint64_t t = atomic_load(&h->tail);
    uint32_t hd = cons_head(q->sc_cons), fm = msg_of(q->sc_freed), tm = msg_of(t);
    int64_t slack = q->sp ? q->n : 0, n = q->n;
    int64_t hf = (int32_t)(hd - fm), th = (int32_t)(tm - hd), tf = (int32_t)(tm - fm),
            db = (int32_t)(byte_of(t) - byte_of(q->sc_freed));
    if (hf >= 0 && hf <= n && th >= -slack && tf >= -slack && tf <= n && db <= q->b &&
        db >= -(q->sp ? (int64_t)q->b : 0))
        return;
    struct rebuilt r;
    uint32_t known[2] = {fm, hd}; /* with a single producer: the frontier, else the head */
    rebuild(q, known, q->sp ? 2 : 0, &r);
    uint32_t nf = msg_of(r.freed);
    if ((int32_t)(hd - nf) < 0 || (int32_t)(msg_of(r.tail) - hd) < 0) hd = nf;
    q->sc_freed = r.freed;
    q->sc_cons = mkcons(hd, cons_popped(q->sc_cons));
    atomic_store(&h->freed, q->sc_freed);
    atomic_store(&h->cons, q->sc_cons);
    bump(&h->repairs, 1);
}

/* What a new holder of the consumer's role finds: what the last holder took and did not
 * give back (it died, or closed while it held a peek) is lost, counted and given back;
 * and the count of pops. */
static void take_over_consuming(shmrpc_queue *q)
{
    struct q_hdr *h = q->hdr;
    q->sc_cons = atomic_load(&h->cons);
    q->sc_freed = atomic_load(&h->freed);
    rebuild_consuming(q);
    q->sc_count = extend(atomic_load(&h->popped), cons_popped(q->sc_cons));
    atomic_store_explicit(&h->popped, q->sc_count, memory_order_relaxed);
    uint32_t hd = cons_head(q->sc_cons), m = msg_of(q->sc_freed);
    for (uint32_t i = 0; i < q->n && m + i != hd; i++) {
        struct q_desc *d = desc_at(q, m + i);
        uint64_t s = mkstate(m + i, S_COMMITTED, 0);
        if (atomic_compare_exchange_strong(&d->state, &s, mkstate(m + i, S_RELEASED, 0))) {
            bump(&h->drops, 1);
            bump(&h->repairs, 1);
        }
    }
    sc_free(q, 0);
}

/* Takes the lease of a single producer's (or consumer's) role for this handle: from nobody,
 * or from a dead holder (then repaired as above); SHMRPC_EBUSY, naming the holder, while a
 * live one holds it. */
static int take_role(shmrpc_queue *q, unsigned role)
{
    bool prod = role == ROLE_PRODUCER;
    struct q_hdr *h = q->hdr;
    _Atomic uint64_t *w = prod ? &h->prod_owner : &h->cons_owner;
    uint64_t me = owner_word(), cur = atomic_load(w);
    for (;;) {
        if (cur != 0 && !owner_dead(cur))
            return fail(SHMRPC_EBUSY,
                        "queue '%s' has a single %s, and process %" PRIu32 "%s holds the role",
                        q->name, prod ? "producer" : "consumer", (uint32_t)cur,
                        (uint32_t)cur == self() ? " (this one, through another handle)" : "");
        if (atomic_compare_exchange_strong(w, &cur, me)) break;
    }
    if (cur != 0) bump(&h->repairs, 1); /* taken from a dead holder */
    register_barrier();
    if (prod) {
        take_over_producing(q);
        q->prod_pid = self();
    } else {
        take_over_consuming(q);
        q->cons_pid = self();
    }
    return 0;
}

static inline int hold(shmrpc_queue *q, unsigned role)
{
    uint32_t held = role == ROLE_PRODUCER ? q->prod_pid : q->cons_pid;
    return held == self() ? 0 : take_role(q, role);
}

/* Gives a role this handle holds back (at close, and after a repair that took it). */
static void let_go_of(shmrpc_queue *q, unsigned role)
{
    struct q_hdr *h = q->hdr;
    uint64_t me = owner_word();
    if (role == ROLE_PRODUCER && q->prod_pid == self()) {
        atomic_store_explicit(&h->pushed, q->sp_count, memory_order_relaxed);
        atomic_compare_exchange_strong(&h->prod_owner, &me, 0);
    }
    if (role == ROLE_CONSUMER && q->cons_pid == self()) {
        atomic_store_explicit(&h->popped, q->sc_count, memory_order_relaxed);
        atomic_compare_exchange_strong(&h->cons_owner, &me, 0);
    }
    if (role == ROLE_PRODUCER)
        q->prod_pid = 0;
    else
        q->cons_pid = 0;
}

/* Gives the roles this handle holds back (at close). */
static void let_go(shmrpc_queue *q)
{
    let_go_of(q, ROLE_PRODUCER);
    let_go_of(q, ROLE_CONSUMER);
}

/* A single producer's claim of the slot at its tail, waiting for room as claim() does.
 * Nothing in the segment changes until the message is whole (sp_publish): a producer
 * killed before that leaves the slot FREE and the tail where it was. */
static int sp_claim(shmrpc_queue *q, uint32_t len, due *dl, struct producing *pr, uint32_t *pos,
                    uint32_t *start)
{
    int rc = hold(q, ROLE_PRODUCER);
    if (rc != 0) return rc;
    if (q->sp_reserved)
        return fail(SHMRPC_EBUSY, "queue '%s': this single producer holds a reservation", q->name);
    struct q_hdr *h = q->hdr;
    uint32_t p = msg_of(q->sp_tail), end;
    place(q, byte_of(q->sp_tail), len, start, &end);
    bool spun = false, looked = false;
    uint64_t f = atomic_load_explicit(&q->freed_seen, memory_order_relaxed);
    while (!fits(q, p, end, f)) {
        f = atomic_load_explicit(&h->freed, memory_order_acquire);
        atomic_store_explicit(&q->freed_seen, f, memory_order_relaxed);
        if (fits(q, p, end, f)) break;
        if (due_passed(dl)) {
            rc = full_or_corrupt(q, &looked);
            if (rc == LOOK_AGAIN) continue;
            return rc;
        }
        flush_signal(q, pr); /* consumers must see what we queued to make room */
        if (!spun) {
            spun = true;
            spin_for_room(q, p, len, end, dl);
            continue;
        }
        uint32_t old = announce(&h->nonfull);
        if (old == 0) continue;
        if (q->sc) barrier_for_waiter();
        if (fits(q, p, end, atomic_load(&h->freed))) continue;
        struct waiting w = {q, FOR_ROOM, shmrpc__now_ns() + PROBE_NS};
        rc = wait_on(q, &h->nonfull, old, due_at(dl), &w);
        if (rc != 0 && rc != SHMRPC_ETIMEDOUT) return rc;
        if (rc == SHMRPC_ETIMEDOUT && !fits(q, p, end, atomic_load(&h->freed))) {
            rc = full_or_corrupt(q, &looked);
            if (rc != LOOK_AGAIN) return rc;
        }
    }
    /* The frontier passed message p - N, so the slot is FREE{p}: nobody reads these
     * until the state says COMMITTED{p}. */
    struct q_desc *d = desc_at(q, p);
    atomic_store_explicit(&d->start, *start, memory_order_relaxed);
    atomic_store_explicit(&d->len, len, memory_order_relaxed);
    atomic_store_explicit(&d->end, end, memory_order_relaxed);
    q->sp_end = end;
    *pos = p;
    return 0;
}

/* Publishes a single producer's message pos (written): COMMITTED{pos}, a release store,
 * then the tail (which only the producer and get_stats read) and, every 2^16 messages, the
 * base of the pushed count. A producer killed between the two stores left a committed
 * message behind the tail: its successor moves the tail past it (take_over_producing). */
static void sp_publish(shmrpc_queue *q, uint32_t pos, struct producing *pr)
{
    struct q_hdr *h = q->hdr;
    struct q_desc *d = desc_at(q, pos);
    atomic_store_explicit(&d->state, mkstate(pos, S_COMMITTED, 0), memory_order_release);
    q->sp_tail = mkpos(pos + 1, q->sp_end);
    atomic_store_explicit(&h->tail, q->sp_tail, memory_order_release);
    if ((++q->sp_count & 0xffff) == 0)
        atomic_store_explicit(&h->pushed, q->sp_count, memory_order_relaxed);
    pr->unsignalled++;
}

/* A single producer's batch: the first of lens[0..k) waits for room as a push does, the
 * others follow while they fit against the frontier known; all are written, then
 * published in order (COMMITTED, release stores) and the tail moved past them once. A
 * consumer that keeps up then finds the whole run at once and takes it as one (its batch
 * would otherwise take what one push had published, a message or two, per call). Killed
 * before the tail moved, the holder left a prefix of the run committed at the tail: its
 * successor moves the tail past it (take_over_producing). 0 with *pushed >= 1, or the
 * status of the first. */
static int sp_push_run(shmrpc_queue *q, const shmrpc_queue_msg *msgs, const uint32_t *lens,
                       uint32_t k, due *dl, struct producing *pr, uint32_t *pushed)
{
    uint32_t pos, start;
    int rc = sp_claim(q, lens[0], dl, pr, &pos, &start);
    if (rc != 0) return rc;
    uint64_t f = atomic_load_explicit(&q->freed_seen, memory_order_relaxed);
    uint32_t c = 0, end = q->sp_end; /* not read back: another process may write there */
    for (;;) {
        if (lens[c]) memcpy(payload(q, pos + c, start, lens[c]), msgs[c].data, lens[c]);
        if (++c == k) break;
        uint32_t next;
        place(q, end, lens[c], &start, &next);
        if (!fits(q, pos + c, next, f)) break;
        struct q_desc *d = desc_at(q, pos + c);
        atomic_store_explicit(&d->start, start, memory_order_relaxed);
        atomic_store_explicit(&d->len, lens[c], memory_order_relaxed);
        atomic_store_explicit(&d->end, next, memory_order_relaxed);
        end = next;
    }
    for (uint32_t j = 0; j < c; j++)
        atomic_store_explicit(&desc_at(q, pos + j)->state, mkstate(pos + j, S_COMMITTED, 0),
                              memory_order_release);
    q->sp_tail = mkpos(pos + c, end);
    atomic_store_explicit(&q->hdr->tail, q->sp_tail, memory_order_release);
    uint64_t was = q->sp_count;
    q->sp_count += c;
    if (crossed((uint32_t)was, (uint32_t)q->sp_count))
        atomic_store_explicit(&q->hdr->pushed, q->sp_count, memory_order_relaxed);
    pr->unsignalled += c;
    *pushed = c;
    return 0;
}

static int sp_push(shmrpc_queue *q, const void *data, size_t len, due *dl, struct producing *pr)
{
    uint32_t pos, start;
    int rc = sp_claim(q, (uint32_t)len, dl, pr, &pos, &start);
    if (rc != 0) return rc;
    if (len) memcpy(payload(q, pos, start, (uint32_t)len), data, len);
    sp_publish(q, pos, pr);
    return 0;
}

/* A single consumer's frontier: gives back, in order from it, the messages released (or
 * abandoned by a dead producer) behind its head, with plain stores (nobody else moves it),
 * then wakes producers waiting for room if any was (already: given back by the caller). */
static void sc_free(shmrpc_queue *q, uint32_t already)
{
    uint64_t f = q->sc_freed;
    uint32_t m = msg_of(f), b = byte_of(f), hd = cons_head(q->sc_cons), moved = already;
    while (m != hd && moved < q->n) {
        struct q_desc *d = desc_at(q, m);
        uint64_t s = atomic_load_explicit(&d->state, memory_order_acquire);
        bool done = lap_of(s) == m && (st_of(s) == S_RELEASED || st_of(s) == S_ABANDONED);
        /* FREE of the next lap: freed by a holder that died before moving the frontier. */
        if (!done && !(lap_of(s) == m + q->n && st_of(s) == S_FREE)) break;
        uint32_t start = atomic_load_explicit(&d->start, memory_order_relaxed);
        uint32_t len = atomic_load_explicit(&d->len, memory_order_relaxed);
        uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed), to = b;
        if (!freed_to(q, m, start, len, end, &to)) break; /* until the tail passes m */
        if (done && !q->sp)
            atomic_store_explicit(&d->state, mkstate(m + q->n, S_FREE, 0), memory_order_release);
        b = to;
        m++;
        moved++;
    }
    if (moved == 0) return;
    q->sc_freed = mkpos(m, b);
    atomic_store_explicit(&q->hdr->freed, q->sc_freed, memory_order_release);
    fence_for_waiters();
    signal_waiters(&q->hdr->nonfull, moved);
}

/* A single consumer moves its head (and counts a pop) with one store. */
static inline void sc_advance(shmrpc_queue *q, uint32_t hd, uint32_t popped)
{
    q->sc_cons = mkcons(hd, popped);
    atomic_store_explicit(&q->hdr->cons, q->sc_cons, memory_order_release);
}

/* A single consumer's look at its head, as try_take: 0 (taken: the head moved past it,
 * which stays COMMITTED until given back), TAKE_AGAIN, TAKE_EMPTY, SHMRPC_ETOOBIG,
 * SHMRPC_EPROTO. A consumer killed after the move of the head loses that message. */
static int sc_try_take(shmrpc_queue *q, size_t cap, uint32_t *pos, uint32_t *start, uint32_t *len)
{
    int rc = hold(q, ROLE_CONSUMER);
    if (rc != 0) return rc;
    uint32_t hd = cons_head(q->sc_cons), popped = cons_popped(q->sc_cons);
    struct q_desc *d = desc_at(q, hd);
    uint64_t s = atomic_load_explicit(&d->state, memory_order_acquire);
    if (s != mkstate(hd, S_COMMITTED, 0)) {
        int32_t ahead = (int32_t)(lap_of(s) - hd);
        unsigned st = st_of(s);
        if (ahead < 0 || (ahead == 0 && (st == S_FREE || st == S_CLAIMED || st > S_ABANDONED)))
            return TAKE_EMPTY; /* not yet; an unknown state waits for a repair (on_check) */
        /* ABANDONED: a producer died before its commit; skip it. READING, RELEASED or a
         * later lap: only a bad write leaves them here; skip them too. */
        if (ahead == 0 && st == S_READING)
            atomic_store_explicit(&d->state, mkstate(hd, S_RELEASED, 0), memory_order_relaxed);
        sc_advance(q, hd + 1, popped);
        sc_free(q, 0);
        return TAKE_AGAIN;
    }
    uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
    if (l > cap) {
        *len = l;
        return fail(SHMRPC_ETOOBIG,
                    "queue '%s': the next message has %" PRIu32 " bytes, the buffer %zu", q->name,
                    l, cap);
    }
    uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
    uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
    if (!sound(q, st, l, end)) {
        atomic_store_explicit(&d->state, mkstate(hd, S_RELEASED, 0), memory_order_relaxed);
        bump(&q->hdr->drops, 1);
        sc_advance(q, hd + 1, popped);
        sc_free(q, 0);
        return fail(SHMRPC_EPROTO,
                    "queue '%s': message %" PRIu32 " has a broken descriptor (start %" PRIu32
                    ", length %" PRIu32 ", end %" PRIu32 "); dropped",
                    q->name, hd, st, l, end);
    }
    sc_advance(q, hd + 1, popped + 1);
    if ((++q->sc_count & 0xffff) == 0)
        atomic_store_explicit(&q->hdr->popped, q->sc_count, memory_order_relaxed);
    *pos = hd;
    *start = st;
    *len = l;
    return 0;
}

/* A single consumer gives message pos back: at its frontier, FREE of the next lap and the
 * frontier moved (plain stores, release); else RELEASED, freed when the frontier gets
 * there (peeks released out of order). */
static int sc_give_back(shmrpc_queue *q, uint32_t pos)
{
    struct q_desc *d = desc_at(q, pos);
    /* Behind the frontier it was given back already: with a single producer too, its state
     * stays COMMITTED until the slot's next message. */
    if (q->cons_pid != self() || (int32_t)(cons_head(q->sc_cons) - pos) <= 0 ||
        (int32_t)(pos - msg_of(q->sc_freed)) < 0 ||
        atomic_load_explicit(&d->state, memory_order_relaxed) != mkstate(pos, S_COMMITTED, 0))
        return fail(SHMRPC_EPROTO,
                    "queue '%s': message %" PRIu32 " is not one this single consumer took", q->name,
                    pos);
    /* Its descriptor read again: one written over since the take frees what the tail says
     * (sc_free, freed_to); its end alone sent the frontier past the tail, and the producers
     * wrote over messages not yet read. */
    uint32_t b = byte_of(q->sc_freed);
    uint32_t start = atomic_load_explicit(&d->start, memory_order_relaxed);
    uint32_t len = atomic_load_explicit(&d->len, memory_order_relaxed);
    uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
    if (msg_of(q->sc_freed) != pos || end - b > q->b || !sound(q, start, len, end)) {
        atomic_store_explicit(&d->state, mkstate(pos, S_RELEASED, 0), memory_order_release);
        sc_free(q, 0);
        return 0;
    }
    /* Only other producers need to see FREE (they claim by a CAS from it); a single
     * producer goes by the frontier alone, so the slot's line stays the producer's to
     * write, and a message behind the frontier is old whatever its state says. */
    if (!q->sp)
        atomic_store_explicit(&d->state, mkstate(pos + q->n, S_FREE, 0), memory_order_release);
    q->sc_freed = mkpos(pos + 1, end);
    sc_free(q, 1);
    return 0;
}

static int check_len(const shmrpc_queue *q, size_t len)
{
    if (len > q->max_msg)
        return fail(SHMRPC_ETOOBIG, "queue '%s': a message of %zu bytes, the maximum is %" PRIu32,
                    q->name, len, q->max_msg);
    return 0;
}

static int check_timeout(int64_t timeout_ms)
{
    if (timeout_ms < 0 && timeout_ms != SHMRPC_QUEUE_WAIT_FOREVER)
        return fail(SHMRPC_EINVAL, "negative timeout %" PRId64 " ms", timeout_ms);
    return 0;
}

static int timed_out(shmrpc_queue *q, int64_t timeout_ms, const char *what)
{
    if (timeout_ms != 0) bump(&q->hdr->timeouts, 1);
    return fail(SHMRPC_ETIMEDOUT, "queue '%s' stayed %s for %" PRId64 " ms", q->name, what,
                timeout_ms);
}

static int push_one(shmrpc_queue *q, const void *data, size_t len, due *dl, struct producing *pr)
{
    if (q->sp) return sp_push(q, data, len, dl, pr);
    uint32_t pos, start, one = (uint32_t)len, c;
    int rc = claim(q, &one, 1, dl, pr, &pos, &start, &c);
    if (rc != 0) return rc;
    if (len) memcpy(payload(q, pos, start, one), data, len);
    return publish(q, pos, pr);
}

int shmrpc_queue_push(shmrpc_queue *q, const void *data, size_t len, int64_t timeout_ms)
{
    if (!q || (!data && len)) return fail(SHMRPC_EINVAL, "queue or data is NULL");
    int rc = check_len(q, len);
    if (rc == 0) rc = check_timeout(timeout_ms);
    if (rc == 0 && gone(q)) rc = cut_fail(q);
    if (rc != 0) return rc;
    struct producing pr = {0};
    due dl = due_in(timeout_ms);
    rc = push_one(q, data, len, &dl, &pr);
    flush_signal(q, &pr);
    /* A push that went through is not looked at again: one that met the cut is lost as one
     * just before it, which no look could tell; the next call says so. A push that failed
     * is: what it found wrong (a slot written over, a position out of range) may be the
     * zero pages', and then the cut is what to say. */
    if (rc == 0) return 0;
    if (cut(q)) return cut_fail(q);
    if (rc == SHMRPC_ETIMEDOUT) return timed_out(q, timeout_ms, "full");
    return rc;
}

int shmrpc_queue_push_batch(shmrpc_queue *q, const shmrpc_queue_msg *msgs, size_t n, size_t *done,
                            int64_t timeout_ms)
{
    if (done) *done = 0;
    if (!q || (!msgs && n)) return fail(SHMRPC_EINVAL, "queue or msgs is NULL");
    int rc = check_timeout(timeout_ms);
    if (rc == 0 && gone(q)) rc = cut_fail(q);
    if (rc != 0) return rc;
    due dl = due_in(timeout_ms);
    struct producing pr = {0};
    size_t i = 0;
    while (i < n) {
        /* A run of valid messages, claimed with one move of the tail. */
        uint32_t lens[RUN], starts[RUN], k = 0, c = 0, pos;
        for (; k < RUN && i + k < n; k++) {
            const shmrpc_queue_msg *m = &msgs[i + k];
            if (!m->data && m->len) {
                rc = fail(SHMRPC_EINVAL, "message %zu of the batch has no data", i + k);
                break;
            }
            if ((rc = check_len(q, m->len)) != 0) break;
            lens[k] = (uint32_t)m->len;
        }
        if (k == 0) break;
        rc = 0; /* a bad message after the run is reported once the run is pushed */
        if (q->sp) {
            if ((rc = sp_push_run(q, msgs + i, lens, k, &dl, &pr, &c)) != 0) break;
            i += c;
            continue;
        }
        if ((rc = claim(q, lens, k, &dl, &pr, &pos, starts, &c)) != 0) break;
        /* Every claimed slot is committed, even after one that failed (it was taken from
         * us: a repairer judged us dead), so none stays claimed. */
        uint32_t ok = c;
        for (uint32_t j = 0; j < c; j++) {
            if (lens[j]) memcpy(payload(q, pos + j, starts[j], lens[j]), msgs[i + j].data, lens[j]);
            int prc = publish(q, pos + j, &pr);
            if (prc != 0 && rc == 0) {
                rc = prc;
                ok = j;
            }
        }
        i += ok;
        if (rc != 0) break;
    }
    flush_signal(q, &pr);
    if (cut(q)) i = 0; /* not one of them is in the queue */
    if (done) *done = i;
    if (cut(q)) return cut_fail(q);
    if (rc == SHMRPC_ETIMEDOUT) return timed_out(q, timeout_ms, "full");
    return rc;
}

int shmrpc_queue_reserve(shmrpc_queue *q, size_t len, shmrpc_queue_span *s, int64_t timeout_ms)
{
    if (!q || !s) return fail(SHMRPC_EINVAL, "queue or span is NULL");
    memset(s, 0, sizeof *s);
    int rc = check_len(q, len);
    if (rc == 0) rc = check_timeout(timeout_ms);
    if (rc == 0 && gone(q)) rc = cut_fail(q);
    if (rc != 0) return rc;
    struct producing pr = {0};
    uint32_t pos, start;
    due dl = due_in(timeout_ms);
    uint32_t one = (uint32_t)len, c;
    if (q->sp)
        rc = sp_claim(q, one, &dl, &pr, &pos, &start);
    else
        rc = claim(q, &one, 1, &dl, &pr, &pos, &start, &c);
    flush_signal(q, &pr);
    if (cut(q)) rc = cut_fail(q);
    if (rc == SHMRPC_ETIMEDOUT) return timed_out(q, timeout_ms, "full");
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
        rc = publish(q, s->pos, &pr);
    } else if (q->sp_reserved && q->prod_pid == self() && s->pos == msg_of(q->sp_tail)) {
        q->sp_reserved = false;
        sp_publish(q, s->pos, &pr);
    } else {
        rc = fail(SHMRPC_EINVAL, "queue '%s': not this single producer's reservation", q->name);
    }
    flush_signal(q, &pr);
    s->state = 0;
    s->data = NULL;
    return unless_cut(q, rc);
}

/* --- consuming ------------------------------------------------------------------------ */

/* One look at the head: 0 (taken: READING by us, head moved past it), TAKE_AGAIN (the
 * head moved, or we helped it past a message others hold), TAKE_EMPTY, SHMRPC_ETOOBIG
 * (longer than cap, left queued; *len says how long) or SHMRPC_EPROTO (a descriptor a
 * bad write broke: dropped). */
static int try_take(shmrpc_queue *q, size_t cap, uint32_t *pos, uint32_t *start, uint32_t *len)
{
    struct q_hdr *h = q->hdr;
    uint32_t hd = atomic_load_explicit(&h->head, memory_order_acquire);
    struct q_desc *d = desc_at(q, hd);
    uint64_t s = atomic_load_explicit(&d->state, memory_order_acquire);
    int32_t ahead = (int32_t)(lap_of(s) - hd);
    if (ahead < 0) return TAKE_EMPTY; /* the slot's last message is still being read */
    if (ahead > 0) {                  /* taken and given back already */
        /* Unless the head is further behind the frontier than steps leave it: said, not
         * walked one message at a time (for up to 2^31 of them). */
        if ((int32_t)(hd - msg_of(atomic_load(&h->freed))) < -(int32_t)q->n) {
            int rc = check_positions(q);
            if (rc != 0) return rc;
        }
        help_head(q, hd);
        return TAKE_AGAIN;
    }
    switch (st_of(s)) {
    case S_COMMITTED:
        break;
    case S_READING:
    case S_RELEASED:
    case S_ABANDONED:
        help_head(q, hd);
        return TAKE_AGAIN;
    default: /* FREE, CLAIMED: not yet; anything else waits for a repair */
        return TAKE_EMPTY;
    }
    uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
    if (l > cap) {
        if (atomic_load(&d->state) != s) return TAKE_AGAIN; /* l was of another message */
        *len = l;
        return fail(SHMRPC_ETOOBIG,
                    "queue '%s': the next message has %" PRIu32 " bytes, the buffer %zu", q->name,
                    l, cap);
    }
    if (!atomic_compare_exchange_strong(&d->state, &s, mkstate(hd, S_READING, self())))
        return TAKE_AGAIN;
    atomic_store_explicit(&d->cons_tag, self_tag(hd), memory_order_relaxed);
    help_head(q, hd);
    uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
    l = atomic_load_explicit(&d->len, memory_order_relaxed);
    uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
    if (!sound(q, st, l, end) || l > cap) {
        s = mkstate(hd, S_READING, self());
        atomic_compare_exchange_strong(&d->state, &s, mkstate(hd, S_RELEASED, 0));
        bump(&h->drops, 1);
        advance_frontier(q);
        return fail(SHMRPC_EPROTO,
                    "queue '%s': message %" PRIu32 " has a broken descriptor (start %" PRIu32
                    ", length %" PRIu32 ", end %" PRIu32 "); dropped",
                    q->name, hd, st, l, end);
    }
    *pos = hd;
    *start = st;
    *len = l;
    return 0;
}

/* Broadcast: one look at the subscriber's next message, as try_take: 0 (its position, not
 * yet passed: finish_read does), TAKE_AGAIN, TAKE_EMPTY, SHMRPC_ETOOBIG, SHMRPC_EPROTO. */
static int try_read(shmrpc_queue *q, size_t cap, uint32_t *pos, uint32_t *start, uint32_t *len)
{
    struct q_sub *me = &q->subs[q->sub];
    uint32_t c = atomic_load(&me->cursor);
    struct q_desc *d = desc_at(q, c);
    uint64_t s = atomic_load_explicit(&d->state, memory_order_acquire);
    int32_t ahead = (int32_t)(lap_of(s) - c);
    if (ahead < 0) return TAKE_EMPTY; /* the slot's last message is not given back yet */
    if (ahead > 0) {
        /* The slot was reused: the frontier passed this cursor (only a bad write lets it);
         * catch up with the frontier, counting what was missed. */
        uint32_t was = c, fm = msg_of(atomic_load(&q->hdr->freed));
        if ((int32_t)(fm - c) > 0 && atomic_compare_exchange_strong(&me->cursor, &c, fm))
            bump(&me->missed, fm - was);
        return TAKE_AGAIN;
    }
    if (st_of(s) == S_ABANDONED) {
        atomic_compare_exchange_strong(&me->cursor, &c, c + 1);
        advance_frontier(q);
        return TAKE_AGAIN;
    }
    if (st_of(s) != S_COMMITTED) return TAKE_EMPTY;
    uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
    uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
    uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
    /* Still this message after the reads (with the drop policy, the slot can be reused
     * as soon as a producer has moved this cursor). */
    if (atomic_load(&d->state) != s || atomic_load(&me->cursor) != c) return TAKE_AGAIN;
    if (!sound(q, st, l, end)) {
        if (atomic_compare_exchange_strong(&me->cursor, &c, c + 1)) bump(&q->hdr->drops, 1);
        advance_frontier(q);
        return fail(SHMRPC_EPROTO,
                    "queue '%s': message %" PRIu32 " has a broken descriptor (start %" PRIu32
                    ", length %" PRIu32 ", end %" PRIu32 "); skipped",
                    q->name, c, st, l, end);
    }
    if (l > cap) {
        *len = l;
        return fail(SHMRPC_ETOOBIG,
                    "queue '%s': the next message has %" PRIu32 " bytes, the buffer %zu", q->name,
                    l, cap);
    }
    *pos = c;
    *start = st;
    *len = l;
    return 0;
}

/* Broadcast: the subscriber is done with message pos: 0, or TAKE_AGAIN when a producer
 * dropped it meanwhile (what was read of it may be torn: the caller reads again). */
static int finish_read(shmrpc_queue *q, uint32_t pos)
{
    uint32_t c = pos;
    if (!atomic_compare_exchange_strong(&q->subs[q->sub].cursor, &c, pos + 1)) return TAKE_AGAIN;
    bump(&q->hdr->popped, 1);
    advance_frontier(q);
    return 0;
}

static int try_next(shmrpc_queue *q, size_t cap, uint32_t *pos, uint32_t *start, uint32_t *len)
{
    if (q->sc) return sc_try_take(q, cap, pos, start, len);
    return q->bcast ? try_read(q, cap, pos, start, len) : try_take(q, cap, pos, start, len);
}

/* Takes a message, waiting until the deadline: 0, or a status. */
static int take(shmrpc_queue *q, size_t cap, due *dl, uint32_t *pos, uint32_t *start, uint32_t *len)
{
    struct q_hdr *h = q->hdr;
    bool spun = false;
    for (unsigned again = 0;;) {
        int rc = try_next(q, cap, pos, start, len);
        if (rc <= 0) return rc;
        if (rc == TAKE_AGAIN) {
            /* Each time, another consumer moved on; bounded by the deadline anyway, and a
             * head that a bad write sent far behind is said, not walked for minutes. */
            if (++again % 64 == 0) {
                if ((rc = check_positions(q)) != 0) return rc;
                if (due_passed(dl)) return SHMRPC_ETIMEDOUT;
            }
            continue;
        }
        if (due_passed(dl)) {
            rc = check_consuming(q); /* empty, or stuck where no step leads? */
            return rc != 0 ? rc : SHMRPC_ETIMEDOUT;
        }
        if (!spun) {
            spun = true;
            spin_for_message(q, dl);
            continue;
        }
        uint32_t old = announce(&h->nonempty);
        if (old == 0) continue;
        if (q->sp) barrier_for_waiter();
        rc = try_next(q, cap, pos, start, len);
        if (rc <= 0) return rc;
        if (rc == TAKE_AGAIN) continue;
        struct waiting w = {q, FOR_MESSAGE, shmrpc__now_ns() + PROBE_NS};
        rc = wait_on(q, &h->nonempty, old, due_at(dl), &w);
        if (rc != 0 && rc != SHMRPC_ETIMEDOUT) return rc;
        if (rc == SHMRPC_ETIMEDOUT) {
            rc = try_next(q, cap, pos, start, len); /* a last look */
            if (rc <= 0) return rc;
            rc = check_consuming(q);
            return rc != 0 ? rc : SHMRPC_ETIMEDOUT;
        }
    }
}

/* Gives message pos back: READING by us -> RELEASED, then the frontier; or, when the
 * frontier is at pos (a consumer that keeps up), READING -> FREE of the next lap and the
 * frontier moved past it at once, one CAS fewer. Nobody else moves the frontier past a
 * message we read, so the frontier loaded stays at pos until we move it. */
static int give_back(shmrpc_queue *q, uint32_t pos)
{
    if (q->sc) return sc_give_back(q, pos);
    struct q_hdr *h = q->hdr;
    struct q_desc *d = desc_at(q, pos);
    uint64_t s = mkstate(pos, S_READING, self());
    uint64_t f = atomic_load(&h->freed);
    uint32_t start = atomic_load_explicit(&d->start, memory_order_relaxed);
    uint32_t len = atomic_load_explicit(&d->len, memory_order_relaxed);
    uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
    /* A descriptor written over since the take goes the slow way: the advance asks the
     * tail where it ends (freed_to). */
    if (msg_of(f) == pos && end - byte_of(f) <= q->b && sound(q, start, len, end)) {
        if (atomic_compare_exchange_strong(&d->state, &s, mkstate(pos + q->n, S_FREE, 0))) {
            /* A failed CAS: another advancer finished our step (FREE, frontier at pos). */
            bool moved = atomic_compare_exchange_strong(&h->freed, &f, mkpos(pos + 1, end));
            advance_frontier_by(q, moved);
            return 0;
        }
    }
    /* Sequentially consistent: the frontier's advancer reads this state after its CAS of
     * the frontier, and we read the frontier after this (docs/queue.md). */
    s = mkstate(pos, S_READING, self());
    if (!atomic_compare_exchange_strong(&d->state, &s, mkstate(pos, S_RELEASED, 0)))
        return fail(SHMRPC_EPROTO,
                    "queue '%s': message %" PRIu32 " was taken back from this process before "
                    "it was released",
                    q->name, pos);
    advance_frontier(q);
    return 0;
}

/* A work queue's pop_batch, after its first message (READING by us at pos, head moved):
 * takes the messages right behind it that are committed and fit their buffers, up to n
 * more, each by a CAS of its state, and moves the head past them all with one CAS (or
 * leaves it to the helpers, which move it past a message taken). Returns how many. */
static uint32_t take_run(shmrpc_queue *q, uint32_t pos, shmrpc_queue_msg *msgs, uint32_t n,
                         uint32_t *starts)
{
    struct q_hdr *h = q->hdr;
    uint32_t c = 0, me = self();
    while (c < n) {
        uint32_t at = pos + 1 + c;
        struct q_desc *d = desc_at(q, at);
        uint64_t s = atomic_load_explicit(&d->state, memory_order_acquire);
        if (s != mkstate(at, S_COMMITTED, 0)) break;
        uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
        if (l > msgs[c].cap) break; /* left queued: the next call says ETOOBIG */
        if (!atomic_compare_exchange_strong(&d->state, &s, mkstate(at, S_READING, me))) break;
        atomic_store_explicit(&d->cons_tag, self_tag(at), memory_order_relaxed);
        uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
        l = atomic_load_explicit(&d->len, memory_order_relaxed);
        uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
        if (!sound(q, st, l, end) || l > msgs[c].cap) {
            /* A broken descriptor: dropped and counted, as a pop drops it (the run ends
             * before it; the head's helpers and the frontier pass it). */
            s = mkstate(at, S_READING, me);
            if (atomic_compare_exchange_strong(&d->state, &s, mkstate(at, S_RELEASED, 0)))
                bump(&h->drops, 1);
            break;
        }
        starts[c] = st;
        msgs[c].len = l;
        c++;
    }
    if (c == 0) return 0;
    uint32_t hd = atomic_load(&h->head);
    while ((int32_t)(hd - (pos + 1)) >= 0 && (int32_t)(pos + 1 + c - hd) > 0) {
        if (atomic_compare_exchange_weak(&h->head, &hd, pos + 1 + c)) {
            if (crossed(hd, pos + 1 + c)) raise_base(&h->popped, pos + 1 + c);
            break;
        }
    }
    return c;
}

/* Gives back messages pos..pos+c-1, all READING by us: at the frontier, each freed
 * directly and the frontier moved past them all with one CAS; else each RELEASED, then
 * the frontier. */
static void give_back_run(shmrpc_queue *q, uint32_t pos, uint32_t c)
{
    struct q_hdr *h = q->hdr;
    uint64_t f = atomic_load(&h->freed);
    uint32_t j = 0, b = byte_of(f), me = self();
    if (msg_of(f) == pos) {
        for (; j < c; j++) {
            struct q_desc *d = desc_at(q, pos + j);
            uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
            uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
            uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
            uint64_t s = mkstate(pos + j, S_READING, me);
            if (end - b > q->b || !sound(q, st, l, end)) break; /* written over: the advance */
            if (!atomic_compare_exchange_strong(&d->state, &s, mkstate(pos + j + q->n, S_FREE, 0)))
                break;
            b = end;
        }
        if (j > 0) {
            bool moved = atomic_compare_exchange_strong(&h->freed, &f, mkpos(pos + j, b));
            if (j == c) {
                advance_frontier_by(q, moved ? j : 0);
                return;
            }
        }
    }
    for (; j < c; j++) {
        uint64_t s = mkstate(pos + j, S_READING, me);
        atomic_compare_exchange_strong(&desc_at(q, pos + j)->state, &s,
                                       mkstate(pos + j, S_RELEASED, 0));
    }
    advance_frontier(q);
}

static int pop_one(shmrpc_queue *q, void *buf, size_t cap, size_t *len, due *dl)
{
    for (;;) {
        uint32_t pos, start, l = 0;
        int rc = take(q, cap, dl, &pos, &start, &l);
        if (rc == SHMRPC_ETOOBIG) *len = l;
        if (rc != 0) return rc;
        if (l) memcpy(buf, payload(q, pos, start, l), l);
        *len = l;
        if (!q->bcast) return give_back(q, pos);
        if (finish_read(q, pos) == 0) return 0;
        /* Dropped while we copied it: the next one. */
    }
}

static int may_pop(shmrpc_queue *q)
{
    if (q->bcast && q->sub < 0)
        return fail(SHMRPC_EINVAL, "queue '%s' is a broadcast queue: only a subscribed handle pops",
                    q->name);
    return 0;
}

int shmrpc_queue_pop(shmrpc_queue *q, void *buf, size_t cap, size_t *len, int64_t timeout_ms)
{
    if (!q || !len || (!buf && cap)) return fail(SHMRPC_EINVAL, "queue, buf or len is NULL");
    *len = 0;
    int rc = check_timeout(timeout_ms);
    if (rc == 0) rc = may_pop(q);
    if (rc == 0 && gone(q)) rc = cut_fail(q);
    if (rc != 0) return rc;
    due dl = due_in(timeout_ms);
    rc = pop_one(q, buf, cap, len, &dl);
    if (cut(q)) { /* what was copied may be the zero pages' */
        *len = 0;
        return cut_fail(q);
    }
    if (rc == SHMRPC_ETIMEDOUT) return timed_out(q, timeout_ms, "empty");
    return rc;
}

static int look(shmrpc_queue *q, void *buf, size_t cap, size_t *len);

int shmrpc_queue_look(shmrpc_queue *q, void *buf, size_t cap, size_t *len)
{
    if (!q || !len || (!buf && cap)) return fail(SHMRPC_EINVAL, "queue, buf or len is NULL");
    *len = 0;
    if (gone(q)) return cut_fail(q);
    int rc = look(q, buf, cap, len);
    if (cut(q)) *len = 0;
    return unless_cut(q, rc);
}

static int look(shmrpc_queue *q, void *buf, size_t cap, size_t *len)
{
    if (q->bcast) return fail(SHMRPC_EINVAL, "queue '%s' is a broadcast queue", q->name);
    /* A seqlock read: the bytes are ours to trust only if, after they were copied, the
     * message was still COMMITTED and still at the head, so neither taken nor its room
     * given back. Both: a single consumer and a single producer leave the state COMMITTED
     * when they take the message and write the next into its slot, and only the head
     * says it was taken. */
    for (int tries = 0; tries < 1000; tries++) {
        uint32_t hd = head_now(q);
        struct q_desc *d = desc_at(q, hd);
        uint64_t s = atomic_load_explicit(&d->state, memory_order_acquire);
        if (lap_of(s) != hd || st_of(s) != S_COMMITTED) {
            /* An earlier lap's state, whatever it is (a single consumer leaves COMMITTED
             * behind its frontier), or FREE or CLAIMED of this one: nothing at the head. */
            int32_t ahead = (int32_t)(lap_of(s) - hd);
            if (ahead < 0 || (ahead == 0 && (st_of(s) == S_FREE || st_of(s) == S_CLAIMED)))
                return fail(SHMRPC_ETIMEDOUT, "queue '%s' is empty", q->name);
            sched_yield(); /* taken: the head is about to move */
            continue;
        }
        uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
        uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
        uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
        bool sane = sound(q, st, l, end);
        if (sane && l <= cap && l) memcpy(buf, payload(q, hd, st, l), l);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&d->state, memory_order_relaxed) != s || head_now(q) != hd)
            continue;
        if (!sane)
            return fail(SHMRPC_EPROTO, "queue '%s': message %" PRIu32 " has a broken descriptor",
                        q->name, hd);
        *len = l;
        if (l > cap)
            return fail(SHMRPC_ETOOBIG,
                        "queue '%s': the next message has %" PRIu32 " bytes, the buffer %zu",
                        q->name, l, cap);
        return 0;
    }
    return fail(SHMRPC_EBUSY, "queue '%s': the head kept moving", q->name);
}

/* A single consumer's pop_batch after its first message (taken at pos): takes those
 * already queued right behind it, up to RUN in all, copies them out, and gives them back
 * as a run, with one move of the frontier and one look at the producers' waiters' word.
 * Returns how many. */
static size_t sc_pop_run(shmrpc_queue *q, shmrpc_queue_msg *msgs, size_t n, uint32_t pos,
                         uint32_t start)
{
    uint32_t starts[RUN], c = 1;
    starts[0] = start;
    /* Only committed messages with a sound descriptor that fit their buffers, so that
     * nothing fails here (the next take reports the one that ends the run); taken with one
     * move of the head (cons) for the run. */
    while (c < RUN && c < n) {
        struct q_desc *d = desc_at(q, pos + c);
        if (atomic_load_explicit(&d->state, memory_order_acquire) !=
            mkstate(pos + c, S_COMMITTED, 0))
            break;
        uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
        uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
        uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
        if (l > msgs[c].cap || !sound(q, st, l, end)) break;
        starts[c] = st;
        msgs[c].len = l;
        c++;
    }
    if (c > 1) {
        sc_advance(q, pos + c, cons_popped(q->sc_cons) + (c - 1));
        uint64_t was = q->sc_count;
        q->sc_count += c - 1;
        if (crossed((uint32_t)was, (uint32_t)q->sc_count))
            atomic_store_explicit(&q->hdr->popped, q->sc_count, memory_order_relaxed);
    }
    for (uint32_t j = 0; j < c; j++)
        if (msgs[j].len)
            memcpy(msgs[j].data, payload(q, pos + j, starts[j], (uint32_t)msgs[j].len),
                   msgs[j].len);
    if (msg_of(q->sc_freed) != pos) { /* a peek held before them: the frontier waits for it */
        for (uint32_t j = 0; j < c; j++)
            sc_give_back(q, pos + j);
        return c;
    }
    uint32_t b = byte_of(q->sc_freed), j = 0;
    for (; j < c; j++) {
        struct q_desc *d = desc_at(q, pos + j);
        uint32_t st = atomic_load_explicit(&d->start, memory_order_relaxed);
        uint32_t l = atomic_load_explicit(&d->len, memory_order_relaxed);
        uint32_t end = atomic_load_explicit(&d->end, memory_order_relaxed);
        if (end - b > q->b || !sound(q, st, l, end)) break; /* written over since: below */
        if (!q->sp)
            atomic_store_explicit(&d->state, mkstate(pos + j + q->n, S_FREE, 0),
                                  memory_order_release);
        b = end;
    }
    q->sc_freed = mkpos(pos + j, b);
    sc_free(q, j);
    for (; j < c; j++)
        sc_give_back(q, pos + j);
    return c;
}

/* A work queue's pop_batch: the first message as a pop (it may wait), then runs of those
 * queued right behind it, each taken with one move of the head and given back with one
 * move of the frontier. 0 or the status that ended it; *done: how many were taken. */
static int pop_run(shmrpc_queue *q, shmrpc_queue_msg *msgs, size_t n, size_t *done,
                   int64_t timeout_ms)
{
    size_t i = 0;
    int rc = 0;
    while (i < n) {
        uint32_t pos, start, l = 0, starts[RUN];
        due dl = due_in(i == 0 ? timeout_ms : 0);
        rc = take(q, msgs[i].cap, &dl, &pos, &start, &l);
        if (rc == SHMRPC_ETOOBIG) msgs[i].len = l;
        if (rc != 0) break;
        msgs[i].len = l;
        if (q->sc) {
            i += sc_pop_run(q, msgs + i, n - i, pos, start);
            continue;
        }
        size_t more = n - i - 1;
        uint32_t c = 1 + take_run(q, pos, msgs + i + 1, more < RUN - 1 ? (uint32_t)more : RUN - 1,
                                  starts + 1);
        starts[0] = start;
        for (uint32_t j = 0; j < c; j++)
            if (msgs[i + j].len)
                memcpy(msgs[i + j].data, payload(q, pos + j, starts[j], (uint32_t)msgs[i + j].len),
                       msgs[i + j].len);
        give_back_run(q, pos, c);
        i += c;
    }
    *done = i;
    return rc;
}

int shmrpc_queue_pop_batch(shmrpc_queue *q, shmrpc_queue_msg *msgs, size_t n, size_t *done,
                           int64_t timeout_ms)
{
    if (done) *done = 0;
    if (!q || !msgs || n == 0) return fail(SHMRPC_EINVAL, "queue or msgs is NULL, or n is 0");
    int rc = check_timeout(timeout_ms);
    if (rc == 0) rc = may_pop(q);
    if (rc == 0 && gone(q)) rc = cut_fail(q);
    if (rc != 0) return rc;
    size_t valid = 0, i = 0;
    for (; valid < n && (msgs[valid].data || !msgs[valid].cap); valid++)
        msgs[valid].len = 0;
    if (!q->bcast) {
        rc = pop_run(q, msgs, valid, &i, timeout_ms);
    } else {
        for (; i < valid; i++) {
            /* The first waits; the rest are taken only if queued already. */
            due dl = due_in(i == 0 ? timeout_ms : 0);
            rc = pop_one(q, msgs[i].data, msgs[i].cap, &msgs[i].len, &dl);
            if (rc != 0) break;
        }
    }
    if (rc == 0 && i == valid && valid < n) {
        msgs[valid].len = 0;
        rc = fail(SHMRPC_EINVAL, "message %zu of the batch has no buffer", valid);
    }
    if (cut(q)) { /* what was copied may be the zero pages' */
        for (size_t j = 0; j < i; j++)
            msgs[j].len = 0;
        return cut_fail(q);
    }
    if (done) *done = i;
    if (i > 0 && (rc == SHMRPC_ETIMEDOUT || rc == SHMRPC_ETOOBIG)) return 0;
    if (rc == SHMRPC_ETIMEDOUT) return timed_out(q, timeout_ms, "empty");
    return rc;
}

int shmrpc_queue_peek(shmrpc_queue *q, shmrpc_queue_span *s, int64_t timeout_ms)
{
    if (!q || !s) return fail(SHMRPC_EINVAL, "queue or span is NULL");
    memset(s, 0, sizeof *s);
    int rc = check_timeout(timeout_ms);
    if (rc == 0) rc = may_pop(q);
    if (rc == 0 && q->bcast && q->drop)
        rc = fail(SHMRPC_EINVAL,
                  "queue '%s' drops for slow subscribers: peek needs the block policy", q->name);
    if (rc == 0 && gone(q)) rc = cut_fail(q);
    if (rc != 0) return rc;
    uint32_t pos, start, len;
    due dl = due_in(timeout_ms);
    rc = take(q, SIZE_MAX, &dl, &pos, &start, &len);
    if (cut(q)) return cut_fail(q);
    if (rc == SHMRPC_ETIMEDOUT) return timed_out(q, timeout_ms, "empty");
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
    if (gone(q)) return cut_fail(q);
    if (q->bcast) return q->sub < 0 || finish_read(q, s->pos) != 0 ? SHMRPC_EPROTO : 0;
    return unless_cut(q, give_back(q, s->pos));
}

/* --- information ---------------------------------------------------------------------- */

int shmrpc_queue_get_info(const shmrpc_queue *q, shmrpc_queue_info *out)
{
    if (!q || !out) return fail(SHMRPC_EINVAL, "queue or out is NULL");
    if (cut(q)) return cut_fail(q);
    out->capacity = q->n;
    out->arena_bytes = q->b;
    out->max_msg = q->max_msg;
    out->creator = (pid_t)atomic_load_explicit(&q->hdr->creator_pid, memory_order_relaxed);
    out->kind = q->bcast ? SHMRPC_QUEUE_BROADCAST : SHMRPC_QUEUE_WORK;
    out->slow = q->drop ? SHMRPC_QUEUE_SLOW_DROP : SHMRPC_QUEUE_SLOW_BLOCK;
    out->type = q->type ? q->type : "";
    out->single_producer = q->sp;
    out->single_consumer = q->sc;
    return 0;
}

/* The counters, and the depth from the head hd (or a subscriber's cursor). q: the handle,
 * or NULL when only the header is mapped (shmrpc__queue_read_head); then a single
 * producer's message committed at the tail by one that died before moving it is not
 * counted until the next producer moves the tail. */
static void counters(const struct q_hdr *h, uint32_t hd, const shmrpc_queue *q,
                     shmrpc_queue_stats *out)
{
    bool sp = h->roles & ROLE_PRODUCER, sc = h->roles & ROLE_CONSUMER;
    bool bcast = h->kind == SHMRPC_QUEUE_BROADCAST;
    uint32_t tl = msg_of(atomic_load_explicit(&h->tail, memory_order_relaxed));
    int32_t depth = (int32_t)(tl - hd);
    out->depth = depth > 0 ? (uint64_t)depth : 0;
    out->pushed = atomic_load_explicit(&h->pushed, memory_order_relaxed);
    out->popped = atomic_load_explicit(&h->popped, memory_order_relaxed);
    /* pushed: the tail's position extended, less the messages abandoned behind it (the
     * tail counts claims; a single producer's counts commits, plus one committed at the tail
     * by a producer that died before moving it). popped: the head's, less those abandoned
     * (the head passes them; one abandoned just ahead of it is subtracted a moment early),
     * or a single consumer's own count; broadcast counts reads. No push or pop adds to a
     * shared counter. */
    uint64_t abandoned = atomic_load_explicit(&h->abandoned, memory_order_relaxed);
    out->pushed = extend(out->pushed, tl) - abandoned;
    if (sp && q) out->pushed += published(q, tl);
    if (sc) {
        out->popped =
            extend(out->popped, cons_popped(atomic_load_explicit(&h->cons, memory_order_acquire)));
    } else if (!bcast) {
        uint64_t p = extend(out->popped, atomic_load_explicit(&h->head, memory_order_relaxed));
        out->popped = p > abandoned ? p - abandoned : 0;
        if (out->popped > out->pushed) out->popped = out->pushed;
    }
    out->timeouts = atomic_load_explicit(&h->timeouts, memory_order_relaxed);
    out->drops = atomic_load_explicit(&h->drops, memory_order_relaxed);
    out->sleeps = atomic_load_explicit(&h->sleeps, memory_order_relaxed);
    out->repairs = atomic_load_explicit(&h->repairs, memory_order_relaxed);
    out->timer_wakes = atomic_load_explicit(&h->timer_wakes, memory_order_relaxed);
}

int shmrpc_queue_get_stats(const shmrpc_queue *q, shmrpc_queue_stats *out)
{
    if (!q || !out) return fail(SHMRPC_EINVAL, "queue or out is NULL");
    if (gone(q)) return cut_fail(q);
    const struct q_hdr *h = q->hdr;
    uint32_t hd = head_now(q);
    if (q->bcast)
        hd = q->sub >= 0 ? atomic_load_explicit(&q->subs[q->sub].cursor, memory_order_relaxed)
                         : msg_of(atomic_load_explicit(&h->freed, memory_order_relaxed));
    out->missed =
        q->sub >= 0 ? atomic_load_explicit(&q->subs[q->sub].missed, memory_order_relaxed) : 0;
    counters(h, hd, q, out);
    return unless_cut(q, 0);
}

void shmrpc__queue_read_head(const void *head, shmrpc__queue_head *out)
{
    const struct q_hdr *h = head;
    memset(out, 0, sizeof *out);
    out->magic = atomic_load_explicit(&h->magic, memory_order_acquire);
    out->version = h->version;
    out->ours = out->magic == Q_MAGIC && out->version == Q_VERSION;
    uint32_t pid = atomic_load_explicit(&h->creator_pid, memory_order_relaxed);
    out->creator = pid <= INT32_MAX ? (int32_t)pid : 0;
    out->creator_start = h->creator_start;
    if (!out->ours) return;
    out->total = h->total_size;
    out->capacity = h->capacity;
    out->arena = h->arena;
    out->max_msg = h->max_msg;
    uint32_t kind = h->kind;
    out->kind = kind == SHMRPC_QUEUE_BROADCAST ? SHMRPC_QUEUE_BROADCAST : SHMRPC_QUEUE_WORK;
    /* A broadcast queue's consumers have no shared head: the release frontier is what the
     * slowest subscriber has not read, as for a handle that does not subscribe. */
    uint32_t hd = out->kind == SHMRPC_QUEUE_BROADCAST
                      ? msg_of(atomic_load_explicit(&h->freed, memory_order_relaxed))
                  : h->roles & ROLE_CONSUMER
                      ? cons_head(atomic_load_explicit(&h->cons, memory_order_acquire))
                      : atomic_load_explicit(&h->head, memory_order_relaxed);
    counters(h, hd, NULL, &out->stats);
}

/* --- the repair ------------------------------------------------------------------------ */

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
    rebuild(q, known, q->sp && q->sc ? 2 : 0, &r);
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
    if (q->sp) rc = hold(q, ROLE_PRODUCER);
    if (rc == 0 && q->sc) rc = hold(q, ROLE_CONSUMER);
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
    if (rc == 0 && q->sc) sc_free(q, 0);
    if (!had_p && q->sp) let_go_of(q, ROLE_PRODUCER);
    if (!had_c && q->sc) let_go_of(q, ROLE_CONSUMER);
    /* Messages given back while the frontier was out of place (released, nobody could
     * move it past them), or whose descriptor was written over while the tail lagged, are
     * freed now, whatever was fixed: waiters with short timeouts never probe. */
    advance_frontier(q);
    if (out->fixed) {
        bump(&q->hdr->repairs, out->fixed);
        signal_waiters(&q->hdr->nonempty, 0);
        signal_waiters(&q->hdr->nonfull, 0);
    }
    return rc;
}

/* --- the segment's geometry and header ----------------------------------------------- */

static bool pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

static uint64_t pow2_at_least(uint64_t v)
{
    uint64_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

/* The descriptors, then the subscriber table, then the type signature, then the arena on
 * a page of its own. */
static uint64_t type_off_for(uint64_t n)
{
    return DESC_OFF + n * DESC_SIZE + SUBS * SUB_SIZE;
}

static uint64_t arena_off_for(uint64_t n, uint64_t type_len)
{
    return (type_off_for(n) + type_len + ARENA_ALIGN - 1) & ~(uint64_t)(ARENA_ALIGN - 1);
}

/* The geometry a creator asks for, from the options. */
static int geometry_of(const shmrpc_queue_opts *o, struct geom *g)
{
    uint64_t cap = o->capacity ? o->capacity : DEFAULT_CAPACITY;
    if (cap > SHMRPC_QUEUE_CAPACITY_MAX)
        return fail(SHMRPC_EINVAL, "queue capacity %" PRIu32 " is above %" PRIu32, o->capacity,
                    SHMRPC_QUEUE_CAPACITY_MAX);
    if (cap < 2) cap = 2;
    uint64_t max = o->max_msg ? o->max_msg : DEFAULT_MAX_MSG;
    uint64_t want = 2 * (uint64_t)round_msg((uint32_t)(max > SHMRPC_QUEUE_ARENA_MAX ? 0 : max));
    if (max > SHMRPC_QUEUE_ARENA_MAX / 2)
        return fail(SHMRPC_EINVAL, "queue max_msg %" PRIu32 " is above %" PRIu32, o->max_msg,
                    SHMRPC_QUEUE_ARENA_MAX / 2);
    uint64_t arena;
    if (o->arena_bytes) {
        arena = pow2_at_least(o->arena_bytes < SHMRPC_QUEUE_ARENA_MIN ? SHMRPC_QUEUE_ARENA_MIN
                                                                      : o->arena_bytes);
        if (arena > SHMRPC_QUEUE_ARENA_MAX)
            return fail(SHMRPC_EINVAL, "queue arena_bytes %" PRIu32 " is above %" PRIu32,
                        o->arena_bytes, SHMRPC_QUEUE_ARENA_MAX);
        if (arena < want)
            return fail(SHMRPC_EINVAL,
                        "queue arena of %" PRIu64
                        " bytes cannot hold two messages of max_msg %" PRIu64,
                        arena, max);
    } else {
        arena = pow2_at_least(want > DEFAULT_ARENA ? want : DEFAULT_ARENA);
    }
    g->n = (uint32_t)pow2_at_least(cap);
    g->b = (uint32_t)arena;
    g->max_msg = (uint32_t)max;
    size_t tlen = o->type ? strlen(o->type) : 0;
    if (tlen > SHMRPC_QUEUE_TYPE_MAX)
        return fail(SHMRPC_EINVAL, "queue type signature of %zu bytes is above %u", tlen,
                    SHMRPC_QUEUE_TYPE_MAX);
    g->type_len = (uint32_t)tlen;
    g->arena_off = (uint32_t)arena_off_for(g->n, tlen);
    g->total = g->arena_off + arena;
    g->kind = (uint32_t)o->kind;
    g->slow = (uint32_t)o->slow;
    g->roles = (o->single_producer ? ROLE_PRODUCER : 0) | (o->single_consumer ? ROLE_CONSUMER : 0);
    return 0;
}

/* Checks a header read from a segment of size bytes; fills g. why gets the reason. */
static int check_geometry(const struct q_hdr *s, size_t size, struct geom *g, char *why, size_t cap)
{
    uint32_t version = s->version, hsz = s->hdr_size, dsz = s->desc_size, n = s->capacity,
             b = s->arena, max = s->max_msg, aoff = s->arena_off, kind = s->kind, slow = s->slow,
             tlen = s->type_len, roles = s->roles;
    uint64_t total = s->total_size;
    uint32_t magic = atomic_load_explicit(&s->magic, memory_order_acquire);
    if (magic != Q_MAGIC) {
        snprintf(why, cap, "not a queue segment (magic 0x%08" PRIx32 ")", magic);
        return SHMRPC_EPROTO;
    }
    if (version != Q_VERSION) {
        snprintf(why, cap, "layout version %" PRIu32 ", this library %u", version, Q_VERSION);
        return SHMRPC_EVERSION;
    }
    const char *bad = NULL;
    if (hsz != DESC_OFF || dsz != DESC_SIZE)
        bad = "header or descriptor size";
    else if (!pow2(n) || n < 2 || n > SHMRPC_QUEUE_CAPACITY_MAX)
        bad = "capacity";
    else if (!pow2(b) || b < SHMRPC_QUEUE_ARENA_MIN || b > SHMRPC_QUEUE_ARENA_MAX)
        bad = "arena size";
    else if (max > b / 2 || 2 * (uint64_t)round_msg(max) > b)
        bad = "max_msg";
    else if (tlen > SHMRPC_QUEUE_TYPE_MAX)
        bad = "type signature length";
    else if (aoff != arena_off_for(n, tlen))
        bad = "arena offset";
    else if (total != (uint64_t)aoff + b || total != size)
        bad = "total size";
    else if (kind > SHMRPC_QUEUE_BROADCAST || slow > SHMRPC_QUEUE_SLOW_DROP)
        bad = "kind or slow policy";
    else if (roles > (ROLE_PRODUCER | ROLE_CONSUMER) || (roles && kind != SHMRPC_QUEUE_WORK))
        bad = "roles";
    if (bad) {
        snprintf(why, cap,
                 "its header does not add up (%s: capacity %" PRIu32 ", arena %" PRIu32
                 ", max_msg %" PRIu32 ", arena at %" PRIu32 ", total %" PRIu64 ", file %zu)",
                 bad, n, b, max, aoff, total, size);
        return SHMRPC_EPROTO;
    }
    g->n = n;
    g->b = b;
    g->max_msg = max;
    g->arena_off = aoff;
    g->total = total;
    g->kind = kind;
    g->slow = slow;
    g->type_len = tlen;
    g->roles = roles;
    return 0;
}

int shmrpc__queue_validate(const void *seg, size_t size, char *why, size_t cap)
{
    if (size < DESC_OFF) {
        snprintf(why, cap, "not a queue segment (size %zu)", size);
        return SHMRPC_EPROTO;
    }
    struct geom g;
    return check_geometry(seg, size, &g, why, cap);
}

static void fill_handle(shmrpc_queue *q, void *seg, const struct geom *g)
{
    q->hdr = seg;
    q->desc = (struct q_desc *)((unsigned char *)seg + DESC_OFF);
    q->arena = (unsigned char *)seg + g->arena_off;
    q->map_size = (size_t)g->total;
    q->n = g->n;
    q->mask = g->n - 1;
    q->b = g->b;
    q->bmask = g->b - 1;
    q->max_msg = g->max_msg;
    q->bcast = g->kind == SHMRPC_QUEUE_BROADCAST;
    q->drop = g->slow == SHMRPC_QUEUE_SLOW_DROP;
    q->subs = (struct q_sub *)((unsigned char *)seg + DESC_OFF + (size_t)g->n * DESC_SIZE);
    q->sub = -1;
    q->sp = g->roles & ROLE_PRODUCER;
    q->sc = g->roles & ROLE_CONSUMER;
    q->guard = -1;
    q->cut = shmrpc__seg_guard_flag(-1);
    atomic_store_explicit(&q->freed_seen, atomic_load(&q->hdr->freed), memory_order_relaxed);
}

int shmrpc__queue_wrap(void *seg, size_t size, shmrpc_queue **out)
{
    char why[256];
    struct geom g;
    *out = NULL;
    if (size < DESC_OFF) return SHMRPC_EPROTO;
    int rc = check_geometry(seg, size, &g, why, sizeof why);
    if (rc != 0) return fail(rc, "%s", why);
    shmrpc_queue *q = calloc(1, sizeof *q);
    if (!q) return shmrpc__err_code(SHMRPC_ENOMEM);
    shmrpc_wait_opts_init(&q->wait);
    q->wait.mode = SHMRPC_WAIT_SPIN; /* nobody else touches it: nothing to sleep for */
    q->wait_after_spin = q->wait;
    snprintf(q->name, sizeof q->name, "(memory)");
    fill_handle(q, seg, &g);
    *out = q;
    return 0;
}

int shmrpc__queue_subscribe(shmrpc_queue *q)
{
    if (!q->bcast || q->sub >= 0) return SHMRPC_EINVAL;
    return subscribe(q);
}

/* --- opening ------------------------------------------------------------------------- */

void shmrpc_queue_opts_init(shmrpc_queue_opts *o)
{
    memset(o, 0, sizeof *o);
    o->mode = SHMRPC_QUEUE_CONNECT_OR_CREATE;
    o->perms = 0600;
    shmrpc_wait_opts_init(&o->wait);
}

static int check_name(const char *name)
{
    return shmrpc__seg_check_name("queue", name, SHMRPC_QUEUE_NAME_MAX);
}

static int check_opts(const shmrpc_queue_opts *o)
{
    int rc =
        shmrpc__seg_check_mode("queue", (int)o->mode, SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE, o->perms);
    if (rc != 0) return rc;
    if ((unsigned)o->kind > SHMRPC_QUEUE_BROADCAST || (unsigned)o->slow > SHMRPC_QUEUE_SLOW_DROP)
        return fail(SHMRPC_EINVAL, "unknown queue kind %d or slow policy %d", (int)o->kind,
                    (int)o->slow);
    if (o->attach_timeout_ms < 0 && o->attach_timeout_ms != SHMRPC_QUEUE_WAIT_FOREVER)
        return fail(SHMRPC_EINVAL, "negative attach timeout %" PRId64 " ms", o->attach_timeout_ms);
    if (o->wait.sleep_ns < 0)
        return fail(SHMRPC_EINVAL, "negative wait.sleep_ns %" PRId64, o->wait.sleep_ns);
    if ((o->single_producer || o->single_consumer) && o->kind != SHMRPC_QUEUE_WORK)
        return fail(SHMRPC_EINVAL, "a single producer or consumer is for work queues only");
    return 0;
}

/* Not statuses: the segment is half-made and its creator is gone; or it was cut (its file
 * is shorter than its header says, or than a header), and its holders see SHMRPC_ECUT. */
#define STALE 1
#define CUT 2
#define CUT_HINT "opening it with create makes it anew"

static int map_fd(int fd, size_t size, void **out, const char *name)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int err = errno;
        return fail(SHMRPC_ESYS(err), "cannot map queue '%s' (%zu bytes): %s", name, size,
                    syserr(err));
    }
    *out = p;
    return 0;
}

/* The creator's part: its pid first (so a half-made segment of a dead creator is known),
 * then the descriptors and header, then the magic with a release store. */
static void init_segment(void *seg, const struct geom *g, const char *type)
{
    struct q_hdr *h = seg;
    uint32_t me = self();
    atomic_store(&h->creator_pid, me);
    shmrpc__proc_stat ps;
    h->creator_start = shmrpc__read_proc_stat(me, &ps) == 0 ? ps.start : 0;
    struct q_desc *d = (struct q_desc *)((unsigned char *)seg + DESC_OFF);
    for (uint32_t i = 0; i < g->n; i++)
        atomic_store_explicit(&d[i].state, mkstate(i, S_FREE, 0), memory_order_relaxed);
    h->version = Q_VERSION;
    h->hdr_size = DESC_OFF;
    h->desc_size = DESC_SIZE;
    h->capacity = g->n;
    h->arena = g->b;
    h->max_msg = g->max_msg;
    h->arena_off = g->arena_off;
    h->total_size = g->total;
    h->kind = g->kind;
    h->slow = g->slow;
    h->type_len = g->type_len;
    h->roles = g->roles;
    if (g->type_len) memcpy((unsigned char *)seg + type_off_for(g->n), type, g->type_len);
    atomic_store_explicit(&h->magic, Q_MAGIC, memory_order_release);
}

/* Creates the segment; SHMRPC_ESYS(EEXIST) (without a message) when it exists. */
static int create(const char *path, const char *name, const shmrpc_queue_opts *o,
                  const struct geom *g, void **seg)
{
    int fd;
    int rc = shmrpc__seg_create("queue", path, name, o->perms, &fd);
    if (rc != 0) return rc;
    /* fchmod: the umask must neither widen nor narrow what was asked. */
    if (fchmod(fd, o->perms) != 0 || ftruncate(fd, (off_t)g->total) != 0) {
        int err = errno;
        rc = fail(SHMRPC_ESYS(err), "cannot set up queue '%s' (%" PRIu64 " bytes): %s", name,
                  g->total, syserr(err));
    }
    if (rc == 0) rc = map_fd(fd, (size_t)g->total, seg, name);
    close(fd);
    if (rc != 0) {
        shm_unlink(path);
        return rc;
    }
    init_segment(*seg, g, o->type);
    return 0;
}

/* Whether a half-made segment's creator is gone (or never wrote its pid). */
static bool creator_gone(const struct q_hdr *h)
{
    uint32_t pid = atomic_load(&h->creator_pid);
    return pid == 0 || (pid != self() && holder_dead(pid, 0, 1));
}

/* Opens an existing segment: owner, size, magic and header checked before use;
 * SHMRPC_ENOENT when there is none, STALE when it is half-made by a creator now gone, CUT
 * when it was cut (its file then in *stale, when not NULL). */
static int attach(const char *path, const char *name, const shmrpc_queue_opts *o, void **seg,
                  struct geom *g, struct stat *stale)
{
    int fd;
    int rc = shmrpc__seg_open("queue", path, name, &fd);
    if (rc != 0) return rc;
    int64_t give_up = shmrpc__now_ns() + INIT_WAIT_NS;
    struct stat st;
    for (;;) { /* the creator sizes it right after creating it */
        if (fstat(fd, &st) != 0) {
            int err = errno;
            close(fd);
            return fail(SHMRPC_ESYS(err), "fstat of queue '%s': %s", name, syserr(err));
        }
        if ((rc = shmrpc__seg_check_owner(&st, "queue", name, o->perms)) != 0) {
            close(fd);
            return rc;
        }
        if (st.st_size != 0) break;
        if (shmrpc__now_ns() >= give_up) {
            /* A creator sizes it right after it makes it: cut to 0, or its creator died. */
            close(fd);
            fail(SHMRPC_ECUT,
                 "queue '%s' (%s%s) has 0 bytes: it was cut under its holders, or its creator "
                 "died before sizing it; %s",
                 name, SHMRPC__SHM_DIR, path, CUT_HINT);
            if (stale) *stale = st;
            return CUT;
        }
        shmrpc__seg_nap();
    }
    size_t size = (size_t)st.st_size;
    if (st.st_size < (off_t)DESC_OFF) { /* no creator makes a file so small: a cut one */
        close(fd);
        fail(SHMRPC_ECUT, "queue '%s' (%s%s) was cut to %lld bytes, less than a header; %s", name,
             SHMRPC__SHM_DIR, path, (long long)st.st_size, CUT_HINT);
        if (stale) *stale = st;
        return CUT;
    }
    if ((uint64_t)st.st_size >
        arena_off_for(SHMRPC_QUEUE_CAPACITY_MAX, SHMRPC_QUEUE_TYPE_MAX) + SHMRPC_QUEUE_ARENA_MAX) {
        close(fd);
        return fail(SHMRPC_EPROTO, "'%s' is not a queue segment (size %lld)", name,
                    (long long)st.st_size);
    }
    rc = map_fd(fd, size, seg, name);
    close(fd);
    if (rc != 0) return rc;
    struct q_hdr *h = *seg;
    while (atomic_load_explicit(&h->magic, memory_order_acquire) == 0) {
        if (shmrpc__now_ns() >= give_up) {
            bool gone = creator_gone(h);
            munmap(*seg, size);
            fail(SHMRPC_EPROTO, "queue '%s' was never initialised (its creator died?); %s", name,
                 REPLACE_HINT);
            if (stale) *stale = st;
            return gone ? STALE : SHMRPC_EPROTO;
        }
        shmrpc__seg_nap();
    }
    /* Cut, when the header adds up for the size it says and the file is shorter; a header
     * that does not add up is refused below as a scribble. */
    uint64_t said = h->total_size;
    struct geom whole;
    char no[8];
    if (said > size && check_geometry(h, (size_t)said, &whole, no, sizeof no) == 0) {
        munmap(*seg, size);
        fail(SHMRPC_ECUT, "queue '%s' (%s%s) was cut to %zu bytes; its header says %" PRIu64 "; %s",
             name, SHMRPC__SHM_DIR, path, size, said, CUT_HINT);
        if (stale) *stale = st;
        return CUT;
    }
    char why[256];
    rc = check_geometry(h, size, g, why, sizeof why);
    if (rc != 0) {
        munmap(*seg, size);
        char who[PATH_CAP + 64];
        shmrpc__seg_describe(path, who, sizeof who);
        return fail(rc, "queue '%s' refused (%s): %s", name, who, why);
    }
    return 0;
}

static int exists(const char *path, const char *name)
{
    char who[PATH_CAP + 64];
    shmrpc__seg_describe(path, who, sizeof who);
    return fail(SHMRPC_EBUSY, "queue '%s' already exists (%s)", name, who);
}

static int overwrite(const char *path, const char *name, const shmrpc_queue_opts *o,
                     const struct geom *g, void **seg)
{
    for (int i = 0; i < OPEN_ATTEMPTS; i++) {
        int rc = shmrpc__seg_remove("queue", path, name);
        if (rc != 0) return rc;
        rc = create(path, name, o, g, seg);
        if (rc != SHMRPC_ESYS(EEXIST)) return rc;
    }
    return fail(SHMRPC_EBUSY, "queue '%s' keeps being recreated by others", name);
}

/* Create first (O_EXCL decides the race between openers), else open what another made;
 * a half-made segment of a dead creator is removed and made again. */
static int connect_or_create(const char *path, const char *name, const shmrpc_queue_opts *o,
                             const struct geom *cg, void **seg, struct geom *g)
{
    for (int i = 0; i < OPEN_ATTEMPTS; i++) {
        int rc = create(path, name, o, cg, seg);
        if (rc != SHMRPC_ESYS(EEXIST)) {
            if (rc == 0) *g = *cg;
            return rc;
        }
        struct stat stale;
        rc = attach(path, name, o, seg, g, &stale);
        if (rc == STALE || rc == CUT) {
            /* Only the file found half-made: another opener that found it so too may have
             * replaced it already with a queue now in use, and unlinking that by name split
             * the queue in two (a helper's review). */
            shmrpc__seg_remove_stale(path, &stale);
            continue;
        }
        if (rc != SHMRPC_ENOENT) return rc;
    }
    return fail(SHMRPC_EBUSY, "queue '%s' keeps being removed and recreated by others", name);
}

/* CONNECT_TO_EXISTING: waits, bounded, for the queue to appear (a consumer started before
 * its producer). */
static int connect_existing(const char *path, const char *name, const shmrpc_queue_opts *o,
                            void **seg, struct geom *g)
{
    int64_t deadline = deadline_in(o->attach_timeout_ms);
    for (;;) {
        int rc = attach(path, name, o, seg, g, NULL);
        if (rc == STALE) return SHMRPC_EPROTO; /* the message says so */
        if (rc == CUT) return SHMRPC_ECUT;
        if (rc != SHMRPC_ENOENT) return rc;
        int64_t now = shmrpc__now_ns();
        if (now >= deadline) {
            if (o->attach_timeout_ms > 0)
                return fail(SHMRPC_ENOENT, "no queue '%s' (%s%s) appeared within %" PRId64 " ms",
                            name, SHMRPC__SHM_DIR, path, o->attach_timeout_ms);
            return rc;
        }
        /* 2 ms: a consumer that waits costs nothing, and starts within 2 ms of its queue. */
        int64_t ns = deadline - now < 2000000 ? deadline - now : 2000000;
        struct timespec ts = {0, (long)ns};
        nanosleep(&ts, NULL);
    }
}

/* Copies the segment's type signature into the handle (whose buffer holds have bytes and
 * a NUL: a longer one is allocated anew), refusing a queue of another type than the one
 * this open names (o->type). */
static int copy_type(shmrpc_queue *q, const void *seg, const struct geom *g,
                     const shmrpc_queue_opts *o, uint32_t have)
{
    if (g->type_len > have) {
        char *t = realloc(q->type, (size_t)g->type_len + 1);
        if (!t) return fail(SHMRPC_ENOMEM, "out of memory");
        q->type = t;
    }
    memcpy(q->type, (const unsigned char *)seg + type_off_for(g->n), g->type_len);
    q->type[g->type_len] = '\0';
    if (o->type && *o->type && strcmp(o->type, q->type) != 0)
        return fail(SHMRPC_EPROTO, "queue '%s' carries %s%s, not %s", q->name,
                    g->type_len ? "" : "untyped messages", q->type, o->type);
    return 0;
}

int shmrpc_queue_open(shmrpc_queue **out, const char *name, const shmrpc_queue_opts *o)
{
    (void)shmrpc__err_begin();
    if (!out) return fail(SHMRPC_EINVAL, "out is NULL");
    *out = NULL;
    shmrpc_queue_opts defaults;
    if (!o) {
        shmrpc_queue_opts_init(&defaults);
        o = &defaults;
    }
    int rc = check_name(name);
    if (rc == 0) rc = check_opts(o);
    struct geom want = {0}, g = {0};
    if (rc == 0 && o->mode != SHMRPC_QUEUE_CONNECT_TO_EXISTING) rc = geometry_of(o, &want);
    if (rc != 0) return rc;
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s%s", PATH_PREFIX, name);
    /* The handle and its type first: a queue this open made may be in use by others as
     * soon as it is, so it is not removed again, and nothing after it may fail (the
     * open's failure would leave behind a queue it said it did not make). */
    shmrpc_queue *q = calloc(1, sizeof *q);
    if (q) q->type = malloc((size_t)want.type_len + 1);
    if (!q || !q->type) {
        free(q);
        return fail(SHMRPC_ENOMEM, "out of memory");
    }
    void *seg = NULL;
    switch (o->mode) {
    case SHMRPC_QUEUE_CONNECT_TO_EXISTING:
        rc = connect_existing(path, name, o, &seg, &g);
        break;
    case SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE:
        rc = create(path, name, o, &want, &seg);
        if (rc == SHMRPC_ESYS(EEXIST)) rc = exists(path, name);
        g = want;
        break;
    case SHMRPC_QUEUE_CREATE_NEW_OVERWRITE:
        rc = overwrite(path, name, o, &want, &seg);
        g = want;
        break;
    case SHMRPC_QUEUE_CONNECT_OR_CREATE:
    default:
        rc = connect_or_create(path, name, o, &want, &seg, &g);
        break;
    }
    if (rc != 0) {
        free(q->type);
        free(q);
        return rc;
    }
    q->wait = o->wait;
    q->wait_after_spin = o->wait;
    if (o->wait.mode == SHMRPC_WAIT_ADAPTIVE) q->wait_after_spin.mode = SHMRPC_WAIT_SLEEP;
    q->mapped = true;
    snprintf(q->name, sizeof q->name, "%s", name);
    fill_handle(q, seg, &g);
    q->guard = shmrpc__seg_guard(seg, (size_t)g.total);
    q->cut = shmrpc__seg_guard_flag(q->guard);
    if ((rc = copy_type(q, seg, &g, o, want.type_len)) != 0) {
        shmrpc_queue_close(q);
        return rc;
    }
    if ((o->single_producer && !q->sp) || (o->single_consumer && !q->sc)) {
        const char *role = o->single_producer && !q->sp ? "producer" : "consumer";
        shmrpc_queue_close(q); /* the role read first: q is freed */
        return fail(SHMRPC_EPROTO, "queue '%s' was created without a single %s", name, role);
    }
    if (o->subscribe) {
        rc = q->bcast
                 ? subscribe(q)
                 : fail(SHMRPC_EINVAL, "queue '%s' is a work queue: nobody subscribes to it", name);
        if (rc != 0) {
            shmrpc_queue_close(q);
            return rc;
        }
    }
    *out = q;
    return 0;
}

void shmrpc_queue_close(shmrpc_queue *q)
{
    if (!q) return;
    unsubscribe(q);
    let_go(q);
    shmrpc__seg_unguard(q->guard);
    if (q->mapped) munmap(q->hdr, q->map_size);
    free(q->type);
    free(q);
}

int shmrpc_queue_unlink(const char *name)
{
    int rc = check_name(name);
    if (rc != 0) return rc;
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s%s", PATH_PREFIX, name);
    if (shm_unlink(path) == 0) return 0;
    if (errno == ENOENT) return fail(SHMRPC_ENOENT, "no queue '%s'", name);
    int err = errno;
    return fail(SHMRPC_ESYS(err), "cannot remove queue '%s': %s", name, syserr(err));
}
