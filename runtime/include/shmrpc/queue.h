/* SPDX-License-Identifier: MIT */
/* Named message queues in shared memory: many producers and many consumers, bounded in
 * messages and in bytes, waiting with the hybrid spin, yield, sleep wait, and safe against
 * a process killed at any instruction. See docs/queue.md. */
#ifndef SHMRPC_QUEUE_H
#define SHMRPC_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <shmrpc/decls.h>
#include <shmrpc/open_mode.h>
#include <shmrpc/wait.h>

SHMRPC_BEGIN_DECLS

/* A handle may be shared by the threads of its process. */
typedef struct shmrpc_queue shmrpc_queue;

/* What shmrpc_queue_open does when the queue exists or does not: shmrpc/open_mode.h, under
 * the queue's own names (CONNECT_TO_EXISTING says SHMRPC_ENOENT after attach_timeout_ms). */
typedef shmrpc_open_mode shmrpc_queue_mode;
#define SHMRPC_QUEUE_CONNECT_OR_CREATE SHMRPC_CONNECT_OR_CREATE
#define SHMRPC_QUEUE_CONNECT_TO_EXISTING SHMRPC_CONNECT_TO_EXISTING
#define SHMRPC_QUEUE_CREATE_NEW_OVERWRITE SHMRPC_CREATE_NEW_OVERWRITE
#define SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE SHMRPC_CREATE_NEW_EXCLUSIVE

/* A name is 1..SHMRPC_QUEUE_NAME_MAX characters of [A-Za-z0-9_.-]; the segment is
 * /dev/shm/shmrpc.queue.NAME. */
#define SHMRPC_QUEUE_NAME_MAX 200

/* Timeouts: milliseconds; 0 tries once; this waits for as long as it takes (shmrpc/wait.h). */
#define SHMRPC_QUEUE_WAIT_FOREVER SHMRPC_WAIT_FOREVER

/* What a queue delivers: each message to one consumer (a work queue), or each message to
 * every subscriber, each at its own pace (broadcast). */
typedef enum shmrpc_queue_kind {
    SHMRPC_QUEUE_WORK = 0,
    SHMRPC_QUEUE_BROADCAST = 1,
} shmrpc_queue_kind;

/* Broadcast: what happens when the queue is full because a subscriber has not read. */
typedef enum shmrpc_queue_slow {
    SHMRPC_QUEUE_SLOW_BLOCK = 0, /* producers wait (up to their timeout) for the slowest */
    SHMRPC_QUEUE_SLOW_DROP = 1,  /* the oldest message is dropped for the subscribers that
                                    have not read it, and counted; producers never wait */
} shmrpc_queue_slow;

/* Subscribers a broadcast queue can have at once. */
#define SHMRPC_QUEUE_SUBSCRIBERS_MAX 64

/* Bounds of the geometry a queue may be created with. */
#define SHMRPC_QUEUE_CAPACITY_MAX (UINT32_C(1) << 24) /* messages */
#define SHMRPC_QUEUE_ARENA_MIN (UINT32_C(4096))       /* bytes */
#define SHMRPC_QUEUE_ARENA_MAX (UINT32_C(1) << 30)    /* bytes */

/* The longest message that rides in its slot (the cache line that a push and a pop touch
 * anyway) and takes no room in the arena. */
#define SHMRPC_QUEUE_INLINE_MAX 28u

typedef struct shmrpc_queue_opts {
    shmrpc_queue_mode mode; /* default SHMRPC_QUEUE_CONNECT_OR_CREATE */
    /* The geometry of a queue this open creates (an existing queue keeps its own;
     * shmrpc_queue_get_info tells it). capacity: messages, rounded up to a power of two
     * (default 1024, at least 2). arena_bytes: payload bytes, rounded up to a power of two
     * (default 1 MiB, or more to hold two messages of max_msg). max_msg: the largest
     * message (default 64 KiB, at most arena_bytes / 2). A message of up to
     * SHMRPC_QUEUE_INLINE_MAX bytes rides in its slot and takes none of the arena; a longer
     * one takes its length rounded up to 64 bytes. */
    uint32_t capacity;
    uint32_t arena_bytes;
    uint32_t max_msg;
    /* CONNECT_TO_EXISTING only: how long to wait for the queue to appear (0: do not wait,
     * the default; SHMRPC_QUEUE_WAIT_FOREVER). */
    int64_t attach_timeout_ms;
    /* Of a queue this open creates: work queue (default) or broadcast, and for broadcast
     * the policy for a slow subscriber (default block). */
    shmrpc_queue_kind kind;
    shmrpc_queue_slow slow;
    /* Broadcast: this handle subscribes, and sees every message committed from its open
     * on, at its own pace, until it is closed (a process that dies unsubscribes). Only a
     * subscribing handle may pop; SHMRPC_EBUSY when SHMRPC_QUEUE_SUBSCRIBERS_MAX are. */
    bool subscribe;
    mode_t perms;          /* of a created segment, regardless of the umask; default 0600.
                              An existing one is refused as the lock refuses one */
    shmrpc_wait_opts wait; /* how push and pop wait */
    /* The type of the messages, as a canonical signature (docs/queue.md, "Typed queues"):
     * stored in a queue this open creates; an existing queue of another type is refused
     * (SHMRPC_EPROTO). NULL (the default) or "": untyped, and any queue is accepted. */
    const char *type;
    /* Of a queue this open creates (work queues only): one producer at a time, and/or one
     * consumer at a time (docs/queue.md, "Single producer, single consumer"). The role is a
     * lease in the segment taken by a handle's first push (or pop) and kept until close: a
     * second live process (or handle) gets SHMRPC_EBUSY naming the holder, a dead holder's
     * lease is taken over. With the role held, push (pop) uses no locked instruction; the
     * handle's pushes (pops) must then not run in two threads at once. An open that asks for
     * a role refuses a queue created without it (SHMRPC_EPROTO); one that does not ask takes
     * any queue. */
    bool single_producer;
    bool single_consumer;
} shmrpc_queue_opts;

/* The longest type signature a queue stores. */
#define SHMRPC_QUEUE_TYPE_MAX 65535u

/* The defaults; the wait options honour SHMRPC_WAIT and SHMRPC_SPIN_NS. */
void shmrpc_queue_opts_init(shmrpc_queue_opts *o);

/* Opens the queue called name; o may be NULL for the defaults. Failures: SHMRPC_EINVAL
 * (bad name or opts), SHMRPC_ENOENT (CONNECT_TO_EXISTING, missing after the attach
 * timeout), SHMRPC_EBUSY (CREATE_NEW_EXCLUSIVE, exists), SHMRPC_EPERM (owner or mode
 * refused), SHMRPC_EPROTO (not a queue segment, or a header that does not add up),
 * SHMRPC_EVERSION, SHMRPC_ENOMEM, SHMRPC_ESYS(errno). shmrpc_errmsg() says why. */
int shmrpc_queue_open(shmrpc_queue **out, const char *name, const shmrpc_queue_opts *o);

/* Unmaps the queue. A reserved span not committed, or a peeked one not released, is left
 * to the dead-process rules (docs/queue.md) once this process ends. NULL is ignored. */
void shmrpc_queue_close(shmrpc_queue *q);

/* Removes the name; handles already open keep the old queue. SHMRPC_ENOENT if missing. */
int shmrpc_queue_unlink(const char *name);

/* Copies one message of len bytes in, waiting at most timeout_ms for room. 0;
 * SHMRPC_ETIMEDOUT (full: also at once for timeout 0); SHMRPC_ETOOBIG (len > max_msg:
 * nothing is queued); SHMRPC_EINVAL. */
int shmrpc_queue_push(shmrpc_queue *q, const void *data, size_t len, int64_t timeout_ms);

/* Takes the oldest message, waiting at most timeout_ms for one, and copies it into buf
 * (cap bytes); its length goes to *len. 0; SHMRPC_ETIMEDOUT (empty); SHMRPC_ETOOBIG
 * (the message is longer than cap: it stays queued, and *len says how long it is);
 * SHMRPC_EPROTO (a descriptor that a broken process wrote over: the message is dropped
 * and counted); SHMRPC_EINVAL. Once taken, no other consumer sees the message. */
int shmrpc_queue_pop(shmrpc_queue *q, void *buf, size_t cap, size_t *len, int64_t timeout_ms);

/* Copies the oldest message of a work queue without taking it: a look, for tools such as
 * shmrpcctl queue peek, which may be outdated as soon as it returns. Never waits. 0;
 * SHMRPC_ETIMEDOUT (empty); SHMRPC_ETOOBIG (longer than cap: *len says how long);
 * SHMRPC_EBUSY (consumers kept taking the head from under it); SHMRPC_EINVAL (broadcast). */
int shmrpc_queue_look(shmrpc_queue *q, void *buf, size_t cap, size_t *len);

/* One message of a batch: for push, data and len; for pop, data and cap in, len out. */
typedef struct shmrpc_queue_msg {
    void *data;
    size_t cap;
    size_t len;
} shmrpc_queue_msg;

/* Pushes the n messages in order, waiting as needed, all within timeout_ms; *done (may
 * be NULL) is how many were queued. Consumers are woken once, not per message. 0 when all
 * were; otherwise the status of the first that was not (SHMRPC_ETIMEDOUT, ETOOBIG...). */
int shmrpc_queue_push_batch(shmrpc_queue *q, const shmrpc_queue_msg *msgs, size_t n, size_t *done,
                            int64_t timeout_ms);

/* Takes up to n messages: waits at most timeout_ms for the first, then takes those queued
 * already. *done is how many were taken (at least 1 when 0 is returned). A message longer
 * than its msgs[i].cap ends the batch and stays queued (SHMRPC_ETOOBIG when it is the
 * first, with msgs[0].len set to its length). */
int shmrpc_queue_pop_batch(shmrpc_queue *q, shmrpc_queue_msg *msgs, size_t n, size_t *done,
                           int64_t timeout_ms);

/* A message in place in the segment: the zero-copy path. Fill data[0..len) between
 * reserve and commit; read it between peek and release, and touch nothing past it. Other
 * producers and consumers go on meanwhile, but space is given back in order, so hold a
 * span briefly. A message of up to SHMRPC_QUEUE_INLINE_MAX bytes lies in its slot,
 * aligned to 4 bytes, right before the next slot's state; a longer one in the arena,
 * aligned to 64. */
typedef struct shmrpc_queue_span {
    void *data;
    size_t len;
    uint32_t pos;   /* private: the message's position */
    uint32_t state; /* private */
} shmrpc_queue_span;

/* Reserves room for a message of len bytes (waiting at most timeout_ms, like push), to be
 * written in place and then committed. Consumers wait at this message until it is. */
int shmrpc_queue_reserve(shmrpc_queue *q, size_t len, shmrpc_queue_span *s, int64_t timeout_ms);

/* Makes a reserved message visible to consumers. SHMRPC_EINVAL for a span that is not a
 * reservation of this handle's process. */
int shmrpc_queue_commit(shmrpc_queue *q, shmrpc_queue_span *s);

/* Takes the oldest message (waiting like pop) and lends it in place: s->data, s->len,
 * valid until shmrpc_queue_release. No other consumer sees it. Broadcast: the
 * subscriber's next message, with the block policy only (a dropped message's bytes are
 * reused at once). */
int shmrpc_queue_peek(shmrpc_queue *q, shmrpc_queue_span *s, int64_t timeout_ms);

/* Gives a peeked message's space back. */
int shmrpc_queue_release(shmrpc_queue *q, shmrpc_queue_span *s);

/* What the queue is, from its header. */
typedef struct shmrpc_queue_info {
    uint32_t capacity;    /* messages */
    uint32_t arena_bytes; /* payload bytes */
    uint32_t max_msg;     /* the largest message */
    pid_t creator;        /* the process that created it */
    shmrpc_queue_kind kind;
    shmrpc_queue_slow slow;
    const char *type; /* its type signature, "" when untyped; valid until close */
    bool single_producer, single_consumer; /* the roles it was created with */
} shmrpc_queue_info;

int shmrpc_queue_get_info(const shmrpc_queue *q, shmrpc_queue_info *out);

/* Counters kept in the segment, shared by every user of the queue since its creation;
 * relaxed, so a snapshot while in use. */
typedef struct shmrpc_queue_stats {
    uint64_t depth;    /* messages pushed (or being pushed) and not yet taken (broadcast:
                          not yet read by this subscriber, or by the slowest) */
    uint64_t pushed;   /* messages queued (committed, or being written in a claimed slot) */
    uint64_t popped;   /* messages taken by pop, pop_batch or peek (broadcast: reads) */
    uint64_t timeouts; /* pushes and pops with a timeout other than 0 that timed out */
    uint64_t drops;    /* messages lost: half-written by a producer that died, taken by a
                          consumer that died before releasing, or with a descriptor that
                          a broken process wrote over */
    uint64_t sleeps;   /* futex sleeps of waiters */
    uint64_t repairs;  /* slots taken back from dead processes */
    uint64_t missed;   /* broadcast, this handle's subscription: messages dropped before it
                          read them (the drop policy) */
    /* Of the sleeps, those that ended by their timer (the wait's slice, wait.sleep_ns, 20 ms
     * by default, or its deadline) rather than by a wake-up: a push wakes the consumers it
     * brought messages for (every subscriber of a broadcast queue), and a pop the producers
     * it made room for, so this grows while nothing comes for a whole slice, or when a
     * wake-up was lost. */
    uint64_t timer_wakes;
} shmrpc_queue_stats;

int shmrpc_queue_get_stats(const shmrpc_queue *q, shmrpc_queue_stats *out);

/* What shmrpc_queue_repair did. */
typedef struct shmrpc_queue_repair_info {
    unsigned fixed; /* positions rewritten; 0 when none was out of place */
    char what[512]; /* one line per position: "head 4294967295 -> 1000" */
} shmrpc_queue_repair_info;

/* Rebuilds the positions of the queue (its tail, frontier and head, a single consumer's
 * head, subscribers' cursors) that a bad write left where no step leads, from what its
 * slots' own states say, while others push and pop: what push and pop answer with
 * SHMRPC_ECORRUPT. Each position is rewritten by a compare-and-swap from the value read,
 * so a move by a live push or pop is never undone. 0 (out says what it rewrote, if
 * anything); SHMRPC_EBUSY while a live process holds a single producer's or consumer's
 * role (the repair takes them, as the lock over what they write), or when the positions
 * kept moving; SHMRPC_EINVAL. docs/queue.md, "Positions written over", says what is lost. */
int shmrpc_queue_repair(shmrpc_queue *q, shmrpc_queue_repair_info *out);

SHMRPC_END_DECLS
#endif
