/* SPDX-License-Identifier: MIT */
/* The shared-memory transport's segments: one control segment per service and one
 * channel per connection (docs/shm-transport.md). No pointer is ever stored in them;
 * every length or index read from them is read once and checked before use. */
#ifndef SHMRPC_SRC_SHM_H
#define SHMRPC_SRC_SHM_H

#include <assert.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc/rpc.h"
#include "core/wait.h"

#define SHMRPC__SHM_MAGIC 0x53484d31u /* "SHM1" */
/* 3: the doorbell's sleepers are a mask, slots note a claim's age; 4: a channel's lock, and
 * channels are sealed memfds named by their client's fd; 5: a channel's method, lengths,
 * status and small messages on its state's line, and the taker's call number; a slot's
 * counted (clients count in awake only once a call's wait lasts); 6: a worker notes on a line
 * of its own the channel it is taking; 7: a worker takes a call by a claim on the channel's
 * second line, with the lock beside it, and the call's number is 64-bit; 8: a worker claims a
 * call only from the number just before it, so a number written over a call being served no
 * longer makes it look new (issue 40); 9: the method table holds its types, one a line, after
 * the header, and the segment is as long as the table needs, up to 1 MiB of it (issue 36); 10:
 * a call's metadata follows its request in the channel (meta_len; issue 36); 11: a stream's ring
 * follows its request in the channel (the head's `stream`; docs/streams.md), so that a worker of
 * 10, which would answer a stream's open once, is refused at connect; 12: the low bits of
 * `stream` say which ways the call streams, and a parameter that streams has a ring of its own,
 * which the client writes; 13: `stream`'s SHMRPC__SHM_BATCH says the request is a batch of calls in
 * flight (shmrpc__shm_batch_call), answered one by one after it (shmrpc__shm_batch_answers); 14:
 * a stream's record is read once its header says it is whole (SHMRPC__RING_WHOLE), past the
 * count its writer published, which the writer publishes only now and then */
#define SHMRPC__SHM_VERSION 14u
#define SHMRPC__MAX_CONNS 256
#define SHMRPC__MAX_WORKERS 64
#define SHMRPC__TABLE_MAX (1 << 20) /* the method table, as text: what tcp:// carries */
#define SHMRPC__KEY_MAX 64      /* a service's name in shm:// */
/* Lengths in a channel are 32-bit: no message may be larger, whatever max_msg says. */
#define SHMRPC__MAX_MSG_CAP ((uint64_t)UINT32_MAX)

/* A process: its pid and its start time (so a reused pid is not mistaken for it). */
typedef struct shmrpc__proc {
    _Atomic int32_t pid;
    uint32_t unused;
    _Atomic uint64_t start;
} shmrpc__proc;

enum { SHM_WORKER_FREE = 0, SHM_WORKER_RUNNING = 1 };

typedef struct shmrpc__shm_worker {
    _Atomic uint32_t state; /* written by the manager (FREE) and the worker (RUNNING) */
    uint32_t unused;
    shmrpc__proc proc;         /* written by the worker at start; read by clients */
    shmrpc__presence presence; /* written by the worker; read by waiting clients */
    char pad[64 - 32];
    /* The channel this worker is taking (its slot + 1), or 0: written before its claim of a
     * call and cleared once the channel names it as the taker (or the claim failed), so
     * that a client whose call is claimed with no taker named can tell a worker about to name
     * itself from one killed first. Written by the worker (0 at its start); read by such a
     * client. On a line of its own: written twice per call, while clients' spins read
     * presence. */
    alignas(64) _Atomic uint32_t taking;
    char pad1[64 - 4];
} shmrpc__shm_worker;
static_assert(sizeof(shmrpc__shm_worker) == 128, "two cache lines per worker");

/* FREEING: a sweep is freeing the slot of a dead client (it clears the pid first). */
enum { SHM_SLOT_FREE = 0, SHM_SLOT_CLAIMED = 1, SHM_SLOT_OPEN = 2, SHM_SLOT_FREEING = 3 };

/* A connection. Claimed (FREE -> CLAIMED, gen bumped, then the pid written) and opened by
 * its client, which then creates the channel segment named by the slot and gen; freed by
 * its client at close, or by a worker's sweep once the client is dead. A free slot's pid
 * is 0, so a taken slot's pid is its client's or, while the claim is in progress, 0. */
typedef struct shmrpc__shm_slot {
    _Atomic uint32_t state;
    _Atomic uint32_t gen;
    shmrpc__proc client;       /* written by the client at claim; read by sweeps */
    shmrpc__presence presence; /* written by the client at each call; read by the worker
                                  that served it last, to yield rather than spin on its CPU */
    /* Written and read by sweeps: the gen of a slot taken without a pid, and when a sweep
     * first saw it so (0: never). A sweep at least half a sweep later that still sees it
     * so frees it: a client that died between its claim and its pid leaks no slot. */
    _Atomic uint32_t pidless_gen;
    /* The channel's file descriptor in its client: a sealed memfd, which workers open as
     * /proc/CLIENT/fd/N. Written by the client before OPEN; read by workers. */
    _Atomic int32_t chan_fd;
    _Atomic int64_t pidless_ns;
    /* 1 while the client counts in awake for a call (it does only once the call's wait
     * lasts; shmrpc__waiter's counted): written by the client, cleared by whoever frees the
     * slot; read by whoever frees the slot of a dead client, to take back its share. */
    _Atomic uint32_t counted;
    char pad[64 - 52];
} shmrpc__shm_slot;
static_assert(sizeof(shmrpc__shm_slot) == 64, "one cache line per slot");

enum { SHM_READY = 1, SHM_STOPPING = 2 };

typedef struct shmrpc__shm_ctl {
    /* Written once by the server before it publishes magic (release); read by all. */
    _Atomic uint32_t magic;
    uint32_t version;
    shmrpc__proc owner;     /* the server's manager process */
    uint64_t fingerprint;   /* the service's */
    uint64_t max_msg;       /* the largest request or response */
    uint32_t table_len;     /* bytes of table[] in use */
    _Atomic uint32_t state; /* SHM_READY, then SHM_STOPPING: written by the manager */
    char pad0[64 - 48];

    /* The doorbell: a client sets its slot's bit, then bumps doorbell.word and wakes a
     * worker if one sleeps; workers clear bits as they take requests. */
    alignas(64) _Atomic uint64_t pending[SHMRPC__MAX_CONNS / 64];
    shmrpc__futex doorbell; /* its sleepers count stays 0: `sleeping` says who sleeps */
    /* Bit i: worker i sleeps on the doorbell. Set and cleared by each worker around each
     * sleep, so a bit lost to a bad write costs that worker one bounded sleep, not every
     * one after it (a count would stay off for good); read by clients that ring; the bits
     * of workers not running are cleared by the manager when it reaps one, and by sweeps. */
    _Atomic uint64_t sleeping;
    char pad1[64 - 48];

    /* Processes of the service running rather than asleep: clients in calls, workers. */
    alignas(64) _Atomic uint32_t awake;
    _Atomic uint32_t sweeping; /* a worker is sweeping dead clients' slots */
    _Atomic int64_t next_sweep_ns;
    char pad2[64 - 16];

    shmrpc__shm_worker workers[SHMRPC__MAX_WORKERS];
    shmrpc__shm_slot slots[SHMRPC__MAX_CONNS];
    char service[256]; /* the service's name, NUL-terminated (cut at 255 bytes) */
    /* "NAME\tENCODING\tFINGERPRINT\tSIGNATURE\n" per method, in the server's id order,
     * then "\tTYPE\n" per type of the table, in its order: table_len bytes, which the
     * segment is made long enough to hold (shmrpc__shm_ctl_size), at most SHMRPC__TABLE_MAX. */
    char table[];
} shmrpc__shm_ctl;

/* The length of a control segment whose table has len bytes. */
static inline uint64_t shmrpc__shm_ctl_size(uint64_t len)
{
    return sizeof(shmrpc__shm_ctl) + (len ? len : 1);
}
static_assert(offsetof(shmrpc__shm_ctl, pending) == 64, "doorbell on its own line");
static_assert(offsetof(shmrpc__shm_ctl, sleeping) == 104, "the doorbell's sleepers beside it");
static_assert(offsetof(shmrpc__shm_ctl, awake) == 128, "awake on its own line");
static_assert(offsetof(shmrpc__shm_ctl, workers) == 192, "workers after the shared lines");

enum {
    SHM_CHAN_IDLE = 0,      /* no call: the client may write a request */
    SHM_CHAN_REQUEST = 1,   /* a request is there, waiting or being served (the claim says
                               which): client IDLE or RESPONSE -> REQUEST */
    SHM_CHAN_BUSY = 2,      /* layout 6 and before; now only shmrpc_segment.chan_state's
                               name for a REQUEST that a worker claimed */
    SHM_CHAN_RESPONSE = 3,  /* the answer is there: worker REQUEST -> RESPONSE */
    SHM_CHAN_ABANDONED = 4, /* likewise: a claimed REQUEST that its client gave up on */
};

/* Who has a call (shmrpc__shm_chan.claim): a worker that took it to run it, or its client,
 * which withdrew it before any worker took it, or gave up on it while a worker ran it: at
 * its deadline (ABANDONED), or because it was cancelled (CANCELLED, which the worker's
 * handler learns: shmrpc_ctx_cancelled). No claim of a call (numbers start at 1) was ever
 * (N, 0) before CANCELLED: a worker of an earlier version, which reads no claim it did not
 * make, is not misled. */
enum {
    SHM_CLAIM_CANCELLED = 0,
    SHM_CLAIM_TAKEN = 1,
    SHM_CLAIM_WITHDRAWN = 2,
    SHM_CLAIM_ABANDONED = 3
};

/* A claim word: the call's number and who has it. */
static inline uint64_t shmrpc__shm_claim(uint64_t call, unsigned who)
{
    return call << 2 | who;
}

/* Whether a REQUEST numbered call may be claimed from claim: only the call just after the
 * claim's, which is the client's next call. Any other number is a bad write over `call`:
 * over a call being served (the claim names it already), a higher number would make the
 * request look new, and a worker would run it a second time; over a waiting one, nobody
 * takes it until its client's checks put its number back. */
static inline bool shmrpc__shm_claimable(uint64_t claim, uint64_t call)
{
    return (claim >> 2) + 1 == call;
}

/* A message of at most this many bytes rides in the state's line (shmrpc__shm_chan.small)
 * instead of the data area: a small call then moves that one line each way (issue 18). */
#define SHMRPC__CHAN_SMALL 24u

/* The head of a channel segment; the data area follows it. The request and then the
 * response use the same data area (or, when small, the state's line): a worker copies
 * the request out before it runs it. The state's line is written only by the client's
 * request and the worker's answer, as the one line of the limit is: a worker takes a call
 * on the second line, which its client reads only in its slow checks (issue 18). */
typedef struct shmrpc__shm_chan {
    /* The call's state: the word both sides wait on. Everything a call needs from both
     * sides shares its line, which the handoff moves anyway: a small call moves no other. */
    shmrpc__futex state;
    _Atomic uint32_t worker; /* the index of the worker that took the last call: worker,
                                only when it changes */
    /* The worker watching this channel's state as it spins (its index + 1), or 0: written
     * by a worker before its answer's RESPONSE when no other connection waits, and cleared
     * by it (exchange, then a look at the state) before it stops watching; read by the
     * client after its REQUEST (sequentially consistent: one of the two sees the other),
     * which rings the doorbell only when nobody watches, or once its wait lasts. A value
     * that a dead worker or a bad write left costs each call that short wait, until the
     * next answer rewrites it. */
    _Atomic uint32_t watcher;
    /* Written by the client before REQUEST; read by the worker. */
    uint32_t method; /* the server's method id */
    uint32_t req_len;
    /* Written by the worker before RESPONSE; read by the client. */
    int32_t status; /* 0, or the call's status with its message as the data */
    uint32_t resp_len;
    /* The call's number (from 1 in each channel, one more per call), written by the
     * client before REQUEST (release); a worker reads it before the state (acquire), so a
     * number it read with a REQUEST is that request's, and claims it. A number that a bad
     * write left here while the state is REQUEST is put back by the client's checks. */
    _Atomic uint64_t call;
    /* The request, then the answer, when it is at most SHMRPC__CHAN_SMALL bytes. */
    uint8_t small[SHMRPC__CHAN_SMALL];
    /* The segment's size: whoever grew it last. Off the state's line: only a message
     * above SHMRPC__CHAN_SMALL bytes that grows the channel writes it. */
    alignas(64) _Atomic uint64_t size;
    /* The process serving the call and the call's number, written by the worker after it
     * claimed the call. The client watches it, not the worker slot, which a replacement
     * may hold already, and only while taker_call is its call's number (until then it
     * judges the workers whose `taking` names the channel). Off the state's line: the
     * client reads it only in its slow checks and never writes it, so it stays with the
     * workers. */
    shmrpc__proc taker;
    _Atomic uint64_t taker_call;
    /* Who has the last call (shmrpc__shm_claim): a worker takes a REQUEST by a
     * compare-and-swap from the number just before the call's to (call, TAKEN)
     * (shmrpc__shm_claimable); its client withdraws one by the same swap to (call,
     * WITHDRAWN), so exactly one of them has it, and gives up on a taken one by (call,
     * TAKEN) -> (call, ABANDONED) (or CANCELLED). Numbers go up by one a call: one that is neither
     * the client's last call nor the one before is a bad write, which the client's checks set back
     * to the one before, unless a worker named itself this call's taker or notes that it is taking
     * the channel (it may run the call under that claim). */
    _Atomic uint64_t claim;
    /* A PI futex (owner's thread id, or 0): the worker takes it (a store) just after its
     * claim and lets go of it after its answer, and the kernel lets go of it when the
     * worker dies. A client whose call is served sleeps locking it, so the kernel wakes it
     * either way: at the answer, or at the worker's death (docs/shm-transport.md). Only a
     * worker that claimed a call writes it, so what a dead worker or a bad write left
     * lasts until the next claim. */
    _Atomic uint32_t lock;
    /* How long the client gives the call, in ns from when a worker begins it; 0: no
     * deadline (or a client of a version before it). Written by the client before REQUEST
     * only when it differs from what it wrote last (once a connection, for a client whose
     * timeout does not change), read by the worker that takes the call: its handler's
     * deadline (shmrpc_ctx_deadline), and the deadline of the calls the handler makes. */
    _Atomic uint64_t budget_ns;
    /* The bytes of the call's metadata (rpc/meta.h's encoding, docs/metadata.md), which follow
     * the request in the channel's data (from its start when the request rides in small);
     * 0: none. Written by the client before REQUEST only when it differs from what it wrote
     * last (never, for a client that sends none), as are the bytes (a client whose pairs do
     * not change leaves them, and the worker's cache keeps them); read once by the worker
     * that takes the call, which copies and checks the bytes before its handler sees them. */
    _Atomic uint32_t meta_len;
    /* 0 for a call; for a stream's open, the bytes of each of its rings (shmrpc__stream_ring),
     * which follow the request and its metadata, with the ways it streams in the low bits
     * (SHMRPC__STREAM_OUT: a ring the worker writes the result's items into; _IN: a ring the
     * client writes the parameter's into, after the other when both are). Written by the
     * client before REQUEST only when it differs from what it wrote last, as budget_ns; read
     * once by the worker that takes the call, which checks it (shmrpc__shm_stream_ok). */
    _Atomic uint32_t stream;
} shmrpc__shm_chan;
static_assert(sizeof(shmrpc__shm_chan) == 128, "two cache lines of head");
static_assert(offsetof(shmrpc__shm_chan, call) == 32, "the call's number aligned");
static_assert(offsetof(shmrpc__shm_chan, small) + SHMRPC__CHAN_SMALL == 64,
              "a small message on the state's line");
static_assert(offsetof(shmrpc__shm_chan, size) == 64, "the size and taker on the second line");
static_assert(offsetof(shmrpc__shm_chan, claim) == 96 && offsetof(shmrpc__shm_chan, lock) == 104,
              "the claim and the lock on the second line, which only workers write per call");

#define SHMRPC__CHAN_DATA sizeof(shmrpc__shm_chan)

/* A stream's ring (docs/streams.md, "How shm:// carries it"): one side writes the items as
 * records (the worker, a result's; the client, a parameter's), the other reads them, and each
 * publishes how far it went on a line of its own, a futex the other sleeps on. Both counts are
 * of bytes ever written or read, mod 2^32; a record is {u32 len, u32 left} and then len bytes,
 * 8-aligned (so a header never wraps, while its bytes may): a piece of an item, with left
 * bytes of it still to come (0: its last piece). An item that does not fit goes in pieces.
 * {0, UINT32_MAX} ends the items; after the worker's, the status follows in the channel, as a
 * call's answer. The writer keeps 8 bytes free for that end.
 *
 * A record's len carries SHMRPC__RING_WHOLE once it is whole: the writer zeroes the header
 * after it (but after the end's), writes the bytes and left, and stores len last with release
 * order. The reader reads records so, as they come, also past the published tail, which the
 * writer publishes only when the reader sleeps (reader_asleep), every quarter of the ring,
 * before it waits for room, and with the end: a store each record on the line the reader
 * keeps reading cost the writer half its speed (bench/stream_bench.c). So the tail says only
 * that the records below it are whole, and the reader is never two rings past it.
 * The client zeroes the first header of each ring at the stream's open. Each side reads the
 * other's count once a look, checks it against the ring's size and its own count, and reads
 * its own counts back never (transport/shm/shm_ring.h). */
typedef struct shmrpc__stream_ring {
    shmrpc__futex tail; /* bytes the writer published: written by the writer */
    char pad0[64 - sizeof(shmrpc__futex)];
    shmrpc__futex head; /* bytes the reader took: written by the reader */
    /* Bit 0 while the reader sleeps on tail (shmrpc__waiter's sleeping), instead of tail's
     * sleepers: on the reader's line, which the writer reads each item anyway, rather than
     * on the line it writes, where its look after each store stalled it. */
    _Atomic uint64_t reader_asleep;
    /* In the client's ring: set by the worker once the handler returned without reading the
     * end. The client then writes the end at its next send, which fails, and the worker
     * answers once it read that end: a call's answer may reach into this ring. */
    _Atomic uint32_t returned;
    /* In the client's ring: set by the worker before it first waits for an item, since it
     * makes the fence for a light publisher before each sleep (its wait's fence_wakers). The
     * client publishes its items lightly (shmrpc__ring_publish) only then: a worker of
     * before it fences for nobody. */
    _Atomic uint32_t fences;
    char pad1[64 - sizeof(shmrpc__futex) - 8 - 4 - 4];
} shmrpc__stream_ring;
static_assert(sizeof(shmrpc__stream_ring) == 128, "each side's count on a line of its own");

#define SHMRPC__RING_MIN 4096u
/* What clients ask for: the room that inproc:// gives a stream. */
#define SHMRPC__RING_MAX 65536u
#define SHMRPC__RING_END UINT32_MAX /* a record's left that ends the items */
#define SHMRPC__RING_WHOLE 0x80000000u /* in a record's len: written whole (above) */

/* Where a stream's ring begins in the channel's data, past a request of len bytes and its
 * metadata of mlen, and never before the end's message (shmrpc_ctx's at most
 * SHMRPC__CTX_MSG_CAP bytes, which the answer writes from the data's start): 64-aligned. */
static inline uint64_t shmrpc__shm_ring_off(uint32_t len, uint32_t mlen)
{
    uint64_t end = (len <= SHMRPC__CHAN_SMALL ? 0 : (uint64_t)len) + mlen;
    if (end < SHMRPC__CTX_MSG_CAP) end = SHMRPC__CTX_MSG_CAP;
    return (end + 63) & ~(uint64_t)63;
}

/* The bytes a record of len bytes takes in a stream's ring: its header and its bytes,
 * 8-aligned. */
static inline uint32_t shmrpc__shm_record_size(uint32_t len)
{
    return 8 + ((len + 7) & ~7u);
}

/* Whether stream, a head's, names a stream's rings: a size that is a power of two from
 * SHMRPC__RING_MIN to SHMRPC__RING_MAX, and one way at least (shmrpc__shm_chan's stream). */
static inline bool shmrpc__shm_stream_ok(uint32_t stream)
{
    uint32_t cap = stream & ~(uint32_t)SHMRPC__STREAM_WAYS, ways = stream & SHMRPC__STREAM_WAYS;
    return ways != 0 && cap >= SHMRPC__RING_MIN && cap <= SHMRPC__RING_MAX &&
           (cap & (cap - 1)) == 0;
}

/* The bytes a ring of cap takes in the channel: its counts and its records. */
#define SHMRPC__RING_BYTES(cap) (sizeof(shmrpc__stream_ring) + (uint64_t)(cap))

/* A batch of calls in flight (docs/shm-transport.md, "Calls in flight"): a head whose `stream`
 * is SHMRPC__SHM_BATCH, whose `method` is the number of calls (at most SHMRPC__BATCH_MAX) and
 * whose req_len is the bytes of their records, which begin the channel's data (never in
 * `small`); the calls' one metadata follows them (meta_len). A record is this head and then len
 * bytes of request, 8-aligned. The worker that takes the batch runs its calls in order and
 * writes their answers after it, each published as it is written; the batch's own answer
 * (RESPONSE) comes once it stops. */
#define SHMRPC__SHM_BATCH 4u
#define SHMRPC__BATCH_MAX 64u
typedef struct shmrpc__shm_batch_call {
    uint32_t method; /* the server's method id */
    uint32_t len;    /* the request's bytes, which follow */
    /* CLOCK_MONOTONIC ns by which a worker must begin the call, or 0: none. A worker that
     * begins it later answers SHMRPC_ETIMEDOUT without running it, so a client whose clock
     * passed it while the worker had not begun the call (answers.done) knows it never runs. */
    int64_t deadline;
    /* Set by the client when it cancelled the call: a worker that has not begun it answers
     * SHMRPC_ECANCELLED without running it; its handler, running, is told
     * (shmrpc_ctx_cancelled). */
    _Atomic uint32_t cancelled;
    uint32_t unused;
} shmrpc__shm_batch_call;
static_assert(sizeof(shmrpc__shm_batch_call) == 24, "a record's head, 8-aligned");

/* After a batch's records and metadata, 64-aligned: what the worker says of its calls, then
 * their answers, one record each, in the calls' order: {int32 status, u32 len} and len bytes
 * (the answer, or the message of a failure), 8-aligned. */
typedef struct shmrpc__shm_batch_answers {
    /* The answers written, published (release) after each: written by the worker; set to 0
     * by the client before the batch's REQUEST. The call numbered done runs while the batch
     * does: those after it have not begun. */
    shmrpc__futex done;
    /* Bit 0 while the client sleeps on done (shmrpc__publish_light's mask): written by the
     * client, read by the worker after each answer. */
    _Atomic uint64_t client_asleep;
    /* 1 when the worker stopped before the call numbered done, what is left of the channel
     * being too little for the largest answer: that call and the ones after it did not run, and
     * the client sends them again. Written by the worker before RESPONSE; set to 0 by the
     * client. */
    _Atomic uint32_t stopped;
    /* 1 when the worker publishes done lightly (the client then fences before it sleeps):
     * written by the worker before its first answer. */
    _Atomic uint32_t light;
    char pad[64 - sizeof(shmrpc__futex) - 8 - 4 - 4];
} shmrpc__shm_batch_answers;
static_assert(sizeof(shmrpc__shm_batch_answers) == 64, "a line of its own");

/* Where a batch's answers begin in the channel's data: after its records of len bytes and its
 * metadata of mlen, 64-aligned. */
static inline uint64_t shmrpc__shm_batch_answers_off(uint32_t len, uint32_t mlen)
{
    return ((uint64_t)len + mlen + 63) & ~(uint64_t)63;
}

extern const shmrpc__transport shmrpc__shm_transport;

#endif
