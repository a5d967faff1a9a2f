/* SPDX-License-Identifier: MIT */
/* Named message queues in shared memory: a ring of descriptors whose state words carry
 * the message's position, and a byte arena given back in order. Every step is one CAS, so
 * a process killed between two steps leaves a state that the others recognise and repair.
 * The layout, the state machine and the reasoning are in docs/queue.md.
 *
 * What the queue's files share: the segment's layout (with the static asserts that pin
 * it), the handle, the small steps on state words and positions (inline), and what each
 * file gives the others (shmrpc__q_*, under the file that defines it). The files, from
 * the bottom up (each calls only those before it): queue_seg.c, queue_wake.c,
 * queue_frontier.c, queue_death.c, queue_check.c, queue_bcast.c, queue_wait.c,
 * queue_single.c, queue_push.c, queue_pop.c, queue_stats.c, queue_batch.c, queue_span.c,
 * queue_repair.c, queue_open.c. */
#ifndef SHMRPC_SRC_QUEUE_QUEUE_INT_H
#define SHMRPC_SRC_QUEUE_QUEUE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <shmrpc/queue.h>
#include <shmrpc/status.h>

#include "core/core.h"
#include "core/membarrier.h"
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

/* A single consumer's cons word: {next message to take, low half of popped}, packed as a
 * position is (its head where a position has its message, the count where its bytes). */
#define mkcons(head, popped) mkpos(head, popped)
#define cons_head(c) msg_of(c)
#define cons_popped(c) byte_of(c)

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

/* A failure says why in the calling thread's shmrpc_errmsg() (the rule is in status.h). */
#define fail shmrpc__err_set
#define syserr shmrpc__seg_syserr

/* A call's deadline, read from the clock only when the call first has to wait: a push or
 * pop that does not wait reads no clock. at: 0 until known; INT64_MIN for a try. */
typedef struct due {
    int64_t ms, at;
} due;

/* What a consumer's look at its next message says, besides 0 and a status. */
enum { TAKE_AGAIN = 1, TAKE_EMPTY = 2 };

/* What a producer's wait for room says, besides a status: look again. */
enum { LOOK_AGAIN = 1 };

/* A wait's check (queue_wait.c): the queue, what the waiter waits for, and when it next
 * looks at the processes that may block it. */
enum wait_for { FOR_MESSAGE, FOR_ROOM };

struct waiting {
    shmrpc_queue *q;
    enum wait_for what;
    int64_t next_probe_ns;
};

/* One push's wake-ups, deferred over a batch. */
struct producing {
    uint32_t unsignalled; /* commits not yet signalled to consumers */
};

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

/* --- what each file gives the others ------------------------------------------------ */

/* queue_seg.c: the segment's geometry and its header's checks. */
/* A call's failure on a segment cut under its handle: SHMRPC_ECUT, with its message. */
int shmrpc__q_cut_fail(const shmrpc_queue *q);
/* Where the type signature of a queue of n slots begins. */
uint64_t shmrpc__q_type_off_for(uint64_t n);
/* Where the arena of a queue of n slots and a type signature of type_len bytes begins. */
uint64_t shmrpc__q_arena_off_for(uint64_t n, uint64_t type_len);
/* The geometry a creator asks for, from the options: 0 or SHMRPC_EINVAL. */
int shmrpc__q_geometry_of(const shmrpc_queue_opts *o, struct geom *g);
/* Checks a header read from a segment of size bytes and fills g: 0, or the status with the
 * reason in why. */
int shmrpc__q_check_geometry(const struct q_hdr *s, size_t size, struct geom *g, char *why,
                             size_t cap);
/* Points the handle at a checked segment of geometry g (no truncation guard yet). */
void shmrpc__q_fill_handle(shmrpc_queue *q, void *seg, const struct geom *g);

/* queue_wake.c: the waiters' futex words, the changing side. */
/* n things changed that waiters on f wait for: moves the word and wakes n sleepers (0: all). */
void shmrpc__q_signal_waiters(shmrpc__futex *f, uint32_t n);
/* Announces a waiter on f: the word with WAITING, or 0 when it changed meanwhile. */
uint32_t shmrpc__q_announce(shmrpc__futex *f);
/* Wakes the consumers for the commits a push has not signalled yet. */
void shmrpc__q_flush_signal(shmrpc_queue *q, struct producing *pr);

/* queue_frontier.c: the release frontier. */
/* Gives back, in order, the room of messages done with (already: given back by the
 * caller), and wakes producers for it; a single consumer's is its own (sc_free). */
void shmrpc__q_advance_frontier_by(shmrpc_queue *q, uint32_t already);
/* advance_frontier_by with nothing given back by the caller. */
void shmrpc__q_advance_frontier(shmrpc_queue *q);
/* A single consumer's frontier moved past what it gave back behind its head. */
void shmrpc__q_sc_free(shmrpc_queue *q, uint32_t already);
/* Moves the head past message hd, taken (if it is still there). */
void shmrpc__q_help_head(shmrpc_queue *q, uint32_t hd);
/* Moves a count's base up to position lo, never back. */
void shmrpc__q_raise_base(_Atomic uint64_t *base, uint32_t lo);

/* queue_death.c: repair after a death. */
/* Whether process pid, which holds a slot of lap with this tag, is dead. */
bool shmrpc__q_holder_dead(uint32_t pid, uint64_t tag, uint32_t lap);
/* This process as the owner of a subscriber slot or a role's lease. */
uint64_t shmrpc__q_owner_word(void);
/* Whether the owner of a subscriber slot or a role's lease is dead (0: nobody's). */
bool shmrpc__q_owner_dead(uint64_t owner);
/* Gives the claim of the slot of message pos, seen in state s, back: whether it did. */
bool shmrpc__q_unclaim(struct q_desc *d, uint32_t pos, uint64_t s);
/* Takes the slot of message pos back from a dead holder: whether it changed anything. */
bool shmrpc__q_repair_at(shmrpc_queue *q, uint32_t pos);
/* Repairs what blocks the frontier (a dead holder, a head sent past it): whether it did. */
bool shmrpc__q_repair_frontier(shmrpc_queue *q);

/* queue_check.c: positions no step leads to. */
/* SHMRPC_ECORRUPT, saying which word (what) is where no step leads. */
int shmrpc__q_corrupt(const shmrpc_queue *q, const char *what);
/* Whether the header's positions are ones that steps lead to: 0 or SHMRPC_ECORRUPT. */
int shmrpc__q_check_positions(shmrpc_queue *q);
/* A consumer's look before it reports empty: the positions, and the state at its head. */
int shmrpc__q_check_consuming(shmrpc_queue *q);
/* The positions as the descriptors' laps say, around the header's (known: frontiers that
 * the caller knows, for a queue whose slots are not freed). */
void shmrpc__q_rebuild(const shmrpc_queue *q, const uint32_t *known, int n_known,
                       struct rebuilt *r);

/* queue_bcast.c: broadcast subscribers. */
/* Unsubscribes dead subscribers that hold the frontier back: whether any was. */
bool shmrpc__q_reap_subscribers(shmrpc_queue *q);
/* The drop policy: the oldest message dropped for who has not read it; whether one was. */
bool shmrpc__q_drop_oldest(shmrpc_queue *q);
/* Takes a subscriber slot for the handle: 0 or SHMRPC_EBUSY. */
int shmrpc__q_subscribe(shmrpc_queue *q);
/* Gives the handle's subscriber slot back, if it has one. */
void shmrpc__q_unsubscribe(shmrpc_queue *q);
/* One look at the subscriber's next message (as a take): 0, TAKE_AGAIN, TAKE_EMPTY, or a
 * status. */
int shmrpc__q_try_read(shmrpc_queue *q, size_t cap, uint32_t *pos, uint32_t *start, uint32_t *len);
/* The subscriber is done with message pos: 0, or TAKE_AGAIN when it was dropped meanwhile. */
int shmrpc__q_finish_read(shmrpc_queue *q, uint32_t pos);

/* queue_wait.c: how a push or pop waits. */
/* The clock's time timeout_ms from now (INT64_MAX: never). */
int64_t shmrpc__q_deadline_in(int64_t timeout_ms);
/* A call's deadline, read from the clock the first time it is asked for. */
int64_t shmrpc__q_due_at(due *d);
/* Whether a call's deadline has passed (a try's always has). */
bool shmrpc__q_due_passed(due *d);
/* 0, or SHMRPC_EINVAL for a negative timeout other than SHMRPC_QUEUE_WAIT_FOREVER. */
int shmrpc__q_check_timeout(int64_t timeout_ms);
/* SHMRPC_ETIMEDOUT for a queue that stayed what (full, empty), counted unless a try. */
int shmrpc__q_timed_out(shmrpc_queue *q, int64_t timeout_ms, const char *what);
/* Waits until f moves from old, a repair, or the deadline: 0, or a status. */
int shmrpc__q_wait_on(shmrpc_queue *q, shmrpc__futex *f, uint32_t old, int64_t deadline,
                      struct waiting *w);
/* A consumer's spin, before it announces itself, for a message at its head. */
void shmrpc__q_spin_for_message(shmrpc_queue *q, due *dl);
/* A producer without room for message p waits for some, once: LOOK_AGAIN, or a status. */
int shmrpc__q_wait_for_room(shmrpc_queue *q, uint32_t p, uint32_t len, uint32_t end, due *dl,
                            struct producing *pr, bool *spun, bool *looked);

/* queue_single.c: single producer, single consumer. */
/* A single producer's queue: whether message p, at the tail, was committed already. */
bool shmrpc__q_published(const shmrpc_queue *q, uint32_t p);
/* Makes sure the handle holds the role (ROLE_PRODUCER, ROLE_CONSUMER): 0 or SHMRPC_EBUSY. */
int shmrpc__q_hold(shmrpc_queue *q, unsigned role);
/* Gives a role the handle holds back. */
void shmrpc__q_let_go_of(shmrpc_queue *q, unsigned role);
/* Gives the roles the handle holds back (at close). */
void shmrpc__q_let_go(shmrpc_queue *q);
/* A single producer's claim of the slot at its tail, waiting for room: 0 or a status. */
int shmrpc__q_sp_claim(shmrpc_queue *q, uint32_t len, due *dl, struct producing *pr, uint32_t *pos,
                       uint32_t *start);
/* Publishes a single producer's message pos, written, and moves the tail past it. */
void shmrpc__q_sp_publish(shmrpc_queue *q, uint32_t pos, struct producing *pr);
/* A single producer's push of one message. */
int shmrpc__q_sp_push(shmrpc_queue *q, const void *data, size_t len, due *dl, struct producing *pr);
/* A single consumer's look at its head (as a take): 0, TAKE_AGAIN, TAKE_EMPTY, or a status. */
int shmrpc__q_sc_try_take(shmrpc_queue *q, size_t cap, uint32_t *pos, uint32_t *start,
                          uint32_t *len);
/* A single consumer gives message pos back: 0 or SHMRPC_EPROTO. */
int shmrpc__q_sc_give_back(shmrpc_queue *q, uint32_t pos);

/* queue_push.c: pushing. */
/* 0, or SHMRPC_ETOOBIG for a message over the queue's max_msg. */
int shmrpc__q_check_len(const shmrpc_queue *q, size_t len);
/* Claims the next slots and their room for k >= 1 messages, with one move of the tail. */
int shmrpc__q_claim(shmrpc_queue *q, const uint32_t *lens, uint32_t k, due *dl,
                    struct producing *pr, uint32_t *pos, uint32_t *starts, uint32_t *claimed);
/* Makes message pos, claimed and written, visible: 0 or SHMRPC_EPROTO. */
int shmrpc__q_publish(shmrpc_queue *q, uint32_t pos, struct producing *pr);

/* queue_pop.c: popping. */
/* Takes the next message, waiting until the deadline: 0, or a status. */
int shmrpc__q_take(shmrpc_queue *q, size_t cap, due *dl, uint32_t *pos, uint32_t *start,
                   uint32_t *len);
/* Gives message pos, taken, back: 0 or SHMRPC_EPROTO. */
int shmrpc__q_give_back(shmrpc_queue *q, uint32_t pos);
/* Pops one message into buf: 0, or a status. */
int shmrpc__q_pop_one(shmrpc_queue *q, void *buf, size_t cap, size_t *len, due *dl);
/* 0, or SHMRPC_EINVAL for a broadcast handle that does not subscribe. */
int shmrpc__q_may_pop(shmrpc_queue *q);

/* --- small steps, inline ---------------------------------------------------------- */

/* Whether the segment was cut under this handle: loads of process-local words (acquire,
 * free on x86), the process's count of cuts first (each call looks once or twice). */
static inline bool cut(const shmrpc_queue *q)
{
    return __builtin_expect(atomic_load_explicit(&shmrpc__seg_cuts, memory_order_acquire) != 0,
                            0) &&
           atomic_load_explicit(q->cut, memory_order_acquire) != 0;
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
    return cut(q) ? shmrpc__q_cut_fail(q) : rc;
}

/* The process's pid (proc.h: learnt once, and again in a forked child). */
static inline uint32_t self(void)
{
    return (uint32_t)shmrpc__self_pid();
}

static inline uint64_t self_tag(uint32_t lap)
{
    return (uint64_t)lap << 32 | (uint32_t)shmrpc__self_start();
}

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

/* Copies a message of len <= INLINE_MAX bytes (a descriptor's) without a call to memcpy: two
 * copies of a fixed size that overlap, each within [0, len) of both sides. */
static inline void copy_small(unsigned char *dst, const unsigned char *src, uint32_t len)
{
    _Static_assert(INLINE_MAX <= 32, "two copies of 16 bytes cover a message in its descriptor");
    if (len >= 16) {
        memcpy(dst, src, 16);
        memcpy(dst + len - 16, src + len - 16, 16);
    } else if (len >= 8) {
        memcpy(dst, src, 8);
        memcpy(dst + len - 8, src + len - 8, 8);
    } else if (len >= 4) {
        memcpy(dst, src, 4);
        memcpy(dst + len - 4, src + len - 4, 4);
    } else if (len > 0) {
        dst[0] = src[0];
        dst[len / 2] = src[len / 2];
        dst[len - 1] = src[len - 1];
    }
}

/* Whether a descriptor's start, length and end, each read once, describe a message that a
 * producer could have placed: not over max_msg, its room as place() gives it, and within
 * the arena. Only these locals are used after. */
static inline bool sound(const shmrpc_queue *q, uint32_t start, uint32_t len, uint32_t end)
{
    return len <= q->max_msg && end - start == room_for(len) &&
           (len <= INLINE_MAX || (start & q->bmask) + (uint64_t)len <= q->b);
}

static inline void bump(_Atomic uint64_t *c, uint64_t by)
{
    atomic_fetch_add_explicit(c, by, memory_order_relaxed);
}

static inline due due_in(int64_t timeout_ms)
{
    return (due){timeout_ms, timeout_ms == 0 ? INT64_MIN : timeout_ms < 0 ? INT64_MAX : 0};
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* A single producer commits, and a single consumer gives room back, with plain stores,
 * then loads the waiters' word: a store and a later load that the CPU may reorder, so a
 * waiter that announced itself (a CAS) and then looked might miss the change while the
 * changer misses its announcement. Rather than a fence on every message, the holders of
 * those roles register for membarrier(2), and a waiter, between its announcement and its
 * last look, has every such process run a full barrier (MEMBARRIER_CMD_GLOBAL_EXPEDITED):
 * the changer's store is then visible to the look, or its load comes after the barrier and
 * sees WAITING (core/membarrier.h). Where membarrier is not available, the changer fences
 * itself. The changer's side: between its store and its load of the waiters' word. */
static inline void fence_for_waiters(void)
{
    if (shmrpc__membarrier_registered())
        atomic_signal_fence(memory_order_seq_cst); /* the compiler keeps the order */
    else
        atomic_thread_fence(memory_order_seq_cst);
}

/* The 64-bit count whose low half is lo, from a base within 2^31 of it (either side). */
static inline uint64_t extend(uint64_t base, uint32_t lo)
{
    return base + (uint64_t)(int64_t)(int32_t)(lo - (uint32_t)base);
}

/* Whether moving a position from a to b crossed a multiple of 2^16. */
static inline bool crossed(uint32_t a, uint32_t b)
{
    return (a >> 16) != (b >> 16);
}

/* The next message to take: a single consumer's is in cons, the others' in head. */
static inline uint32_t head_now(const shmrpc_queue *q)
{
    return q->sc ? cons_head(atomic_load_explicit(&q->hdr->cons, memory_order_acquire))
                 : atomic_load_explicit(&q->hdr->head, memory_order_acquire);
}

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

/* Whether a descriptor's start, length and end (each read once) are where a producer put
 * the message that follows byte b, the end of the message before it: at b, or at the
 * arena's start (place), within the arena's reach of b. Implies sound(). A frontier moves
 * past a message to its end only so: a descriptor written over with its start and end moved
 * on together is still sound, and its end took the frontier past the tail's bytes, where
 * producers then wrote over messages still queued (test frontier_never_past_the_tail). */
static inline bool placed(const shmrpc_queue *q, uint32_t b, uint32_t start, uint32_t len,
                          uint32_t end)
{
    uint32_t need = room_for(len), off = b & q->bmask;
    if (len > q->max_msg || end - start != need) return false;
    if (off + need <= q->b) return start == b;
    return start == b + (q->b - off) && end - b <= q->b; /* at the arena's start */
}

static inline bool fits(const shmrpc_queue *q, uint32_t p, uint32_t end, uint64_t f)
{
    return p - msg_of(f) < q->n && end - byte_of(f) <= q->b;
}

/* A single consumer moves its head (and counts a pop) with one store. */
static inline void sc_advance(shmrpc_queue *q, uint32_t hd, uint32_t popped)
{
    q->sc_cons = mkcons(hd, popped);
    atomic_store_explicit(&q->hdr->cons, q->sc_cons, memory_order_release);
}

#endif
