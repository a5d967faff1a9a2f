/* SPDX-License-Identifier: MIT */
/* Named maps in shared memory: an open-addressing hash table of immutable entries in a
 * segment per generation, read without a lock, written under the lock "map.NAME" with a
 * redo record in the header, grown by building the next generation. docs/map.md has the
 * layout, the growth and the crash-safety argument. */
#include <shmrpc/map.h>

#include <dirent.h>
#include <linux/membarrier.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "core/core.h"
#include "map/map_seg.h"
#include "core/proc.h"
#include "core/segment.h"
#include "core/wait.h"

#define HDR_MAGIC 0x50414d53u /* "SMAP" */
#define GEN_MAGIC 0x4e454753u /* "SGEN" */
#define MAP_VERSION 4u
#define HDR_PREFIX "/shmrpc.map."
#define GEN_PREFIX "/shmrpc.mapgen."
#define SHM_DIR SHMRPC__SHM_DIR
#define PATH_CAP (sizeof GEN_PREFIX + SHMRPC_MAP_NAME_MAX + 24)

#define INIT_WAIT_NS ((int64_t)1000 * 1000 * 1000)
#define OPEN_ATTEMPTS 100

/* A slot: 0 empty, 1 a removed key (tombstone), else the entry's offset / 8 in the low
 * OFF_BITS and the top TAG bits of its hash above them. Entries begin past the header, so
 * an entry's word is never 0 or 1. */
#define EMPTY UINT64_C(0)
#define TOMB UINT64_C(1)
#define OFF_BITS 40
#define OFF_MASK ((UINT64_C(1) << OFF_BITS) - 1)
#define TAG_OF(h) ((h) >> OFF_BITS)

/* The change futex's word: the low 31 bits of the change counter, and this bit when a
 * waiter may sleep on it (the lock's WAITERS idea: a bad write costs one sleep or wake). */
#define CHANGE_WAITERS 0x80000000u

/* Load factor: grow when used slots (keys and tombstones) would pass 7/10 of them. */
#define LOAD_NUM 7
#define LOAD_DEN 10

#define DEFAULT_SLOTS 1024u
#define DEFAULT_BYTES (UINT64_C(1) << 20)
#define DEFAULT_MAX_BYTES (UINT64_C(1) << 30)
#define MAX_SLOTS (UINT64_C(1) << 31)
#define DEFAULT_LOCK_TIMEOUT_MS 10000

/* How many lock-free tries a snapshot makes before it takes the lock. */
#define SNAPSHOT_TRIES 4

/* Reader slots in the header: handles reading at once with the protection that lets
 * writers reuse space; more read without it and pause reuse while they do. */
#define MAP_READERS 60

/* Space reuse (docs/map.md, "Reusing space"): free lists by size class, and a ring of
 * replaced entries waiting for the readers that may still read them. */
#define NCLASSES 128
#define RING_MIN 2048
#define RING_MAX (UINT64_C(1) << 24)
/* Retired entries between two tries to advance the epoch, at most (a quarter of the ring
 * in small maps). Each try reads every reader slot and, with readers that make no fence,
 * makes membarrier interrupt every CPU that runs one: 10 to 15 us of a reader's time
 * here (a VM), which at 256 was a fifth of what a put cost a reader beside it. */
#define BATCH 1024
/* A cache line: entries of up to 256 bytes take whole lines (docs/map.md, "Allocating"). */
#define LINE 64u
/* How long a writer short of space waits for readers to let go of retired entries before
 * it grows the map or leaks them. */
#define HARD_WAIT_NS ((int64_t)2 * 1000 * 1000)
#define HARD_TRIES 8
#define HARD_LIVE (UINT64_C(1) << 20)

/* The redo record's states. */
#define REC_IDLE 0u
#define REC_ACTIVE 1u

/* A reader slot: claimed by a handle at its first read, released at its close or by a
 * process that finds the owner dead. */
struct map_reader {
    /* The owner's pid, 0 when free: set by the claimer (compare-and-swap from 0), cleared
     * by the owner's close or by whoever found it dead (compare-and-swap from the pid). */
    _Atomic uint64_t owner;
    /* The owner's start time (/proc), written by the claimer after its owner; 0 while a
     * claim is in progress, when the owner is judged by its pid alone. Cleared before the
     * owner is (compare-and-swap from the value read), so that the next claimer's slot never
     * shows the last owner's start: by it, a claimer would be taken for dead and its slot
     * taken from it, and two handles would share one hazard. */
    _Atomic uint64_t start;
    /* 0 between snapshots; during one, the epoch of the generation read, stored before
     * the snapshot's first look at a slot (a full fence after it). Written by the owner;
     * read by writers deciding what they may reuse. */
    _Atomic uint64_t epoch;
    /* Gets and views of the owner: written by the owner only (no shared line per get),
     * summed by get_info. */
    _Atomic uint64_t reads;
    /* 0 between gets; during a get (and while a view is held), the slot word of the entry
     * it reads, stored before it reads the entry and checked against the slot after a full
     * fence (a hazard pointer). Written by the owner (release: what it read of the entry
     * it looked at before is done); read by writers, which keep that one entry. */
    _Atomic uint64_t hazard;
    uint8_t pad[24];
};
_Static_assert(sizeof(struct map_reader) == 64, "layout");

/* The header segment: one per map, never replaced while the map exists. */
struct map_hdr {
    /* Written once by the creator, magic last (release); read by openers. */
    _Atomic uint32_t magic;
    uint32_t version;
    uint32_t size; /* sizeof(struct map_hdr) */
    uint32_t creator;
    /* The current generation. Written by a writer under the lock (release) when a new
     * generation is complete; read by every call, which follows it. */
    _Atomic uint64_t gen;
    /* Of new generations: written once by the creator, read by writers. */
    uint64_t init_slots;
    uint64_t init_bytes;
    uint64_t max_bytes;
    /* Written once by the creator: the length of the map's type signature, stored right
     * after this header in the same segment (0: untyped); read by openers and get_info. */
    uint32_t type_len;
    uint32_t pad0;
    /* Written once by the creator: the number of the map's first generation, whose file is
     * shmrpc.mapgen.NAME.FIRST, and the next FIRST + 1, and so on. The creation's time in
     * microseconds, so that a map created anew under the same name numbers its files above
     * every file of the map before it (each generation takes far longer than a microsecond
     * to make), and a handle still open on that one never makes, replaces or removes a
     * file of the new map (see first_number). 0 in a map made before this field: 1. */
    uint64_t first;
    /* Second line: the change counter, raised by writers under the lock; read by pollers;
     * the futex mirrors its low bits for waiters (who add CHANGE_WAITERS). */
    _Atomic uint64_t changes;
    shmrpc__futex change;
    uint8_t pad1[48];
    /* Third line: the redo record of the write in progress. Written by the writer under
     * the lock (fields, then state ACTIVE with release, then IDLE once applied); read by
     * the next writer after it took the lock from a dead one. Every value is absolute, so
     * applying it twice is applying it once. */
    _Atomic uint32_t rec_state;
    uint32_t rec_pad;
    uint64_t rec_gen;  /* the generation it applies to */
    uint64_t rec_slot; /* the slot and the word it gets */
    uint64_t rec_word;
    uint64_t rec_used; /* the generation's counters after the write */
    uint64_t rec_count;
    uint64_t rec_tombs;
    uint64_t rec_live;
    /* Fourth line: statistics, written under the lock, read by get_info; reads_gone: the
     * reads of reader slots released (at close, or by whoever found the owner dead), added
     * by the releaser. */
    _Atomic uint64_t writes;
    _Atomic uint64_t growths;
    _Atomic uint64_t repairs;
    _Atomic uint64_t reads_gone;
    /* Set (for good) by the first reader whose process registered for membarrier's global
     * expedited barrier and whose reads then use no fence of their own, before its first
     * such read (a read-modify-write: a full fence); read by writers, which must then make
     * that barrier before they read the readers' epochs and hazards. */
    _Atomic uint32_t no_fence;
    uint8_t pad3[28];
    /* The reader table: a slot per reading handle, each on its own line (see
     * struct map_reader), so that writers know when no reader can still be reading a
     * replaced entry and may reuse its space. */
    struct map_reader readers[MAP_READERS];
};

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "shared atomics must be lock-free");
_Static_assert(offsetof(struct map_hdr, gen) == 16, "layout");
_Static_assert(offsetof(struct map_hdr, type_len) == 48, "layout");
_Static_assert(offsetof(struct map_hdr, first) == 56, "layout");
_Static_assert(offsetof(struct map_hdr, changes) == 64, "layout");
_Static_assert(offsetof(struct map_hdr, change) == 72, "layout");
_Static_assert(offsetof(struct map_hdr, rec_state) == 128, "layout");
_Static_assert(offsetof(struct map_hdr, rec_live) == 184, "layout");
_Static_assert(offsetof(struct map_hdr, writes) == 192, "layout");
_Static_assert(offsetof(struct map_hdr, reads_gone) == 216, "layout");
_Static_assert(offsetof(struct map_hdr, no_fence) == 224, "layout");
_Static_assert(offsetof(struct map_hdr, readers) == 256, "layout");
_Static_assert(sizeof(struct map_hdr) == 256 + 64 * MAP_READERS, "layout");
#define HDR_SIZE sizeof(struct map_hdr)

/* The head of a generation segment; the slots follow it, then the entries. */
struct gen_hdr {
    /* Written once by the writer that builds the generation, before it is published;
     * read (and checked) by every process that maps it. */
    uint32_t magic;
    uint32_t version;
    uint64_t gen;
    uint64_t total;     /* bytes of the segment */
    uint64_t nslots;    /* a power of two */
    uint64_t arena_off; /* HEAD_SIZE + nslots * 8 + SPACE_SIZE */
    /* The epoch: written by a writer under the lock when it advances it (release), read
     * by every snapshot, which publishes it in its reader slot. It continues across
     * generations: epoch0, written once by the builder, is the first of this generation,
     * so a reader slot with an older epoch reads an older generation. */
    _Atomic uint64_t epoch;
    uint64_t epoch0;
    /* Entries the ring of retired ones holds (a power of two; about one per 256 bytes of
     * entry space, so that it rarely fills before the space runs out). By the builder. */
    uint64_t ring_cap;
    /* Second line: written by the writer under the lock, read by snapshots and info.
     * seq is odd while a write applies (a seqlock for snapshots; single gets need none,
     * a slot being one word and an entry never written once published). used: the end
     * of written entries; count: keys; tombs: tombstone slots; live: bytes of entries
     * that slots point to. */
    _Atomic uint64_t seq;
    _Atomic uint64_t used;
    _Atomic uint64_t count;
    _Atomic uint64_t tombs;
    _Atomic uint64_t live;
    uint8_t pad1[24];
};

_Static_assert(offsetof(struct gen_hdr, epoch) == 40, "layout");
_Static_assert(offsetof(struct gen_hdr, ring_cap) == 56, "layout");
_Static_assert(offsetof(struct gen_hdr, seq) == 64, "layout");
_Static_assert(sizeof(struct gen_hdr) == 128, "layout");
#define HEAD_SIZE sizeof(struct gen_hdr)

/* A generation's free space, between its slots and its entries. Only writers under the
 * lock read or write it, except unprot; a writer that died in it leaves it for the next
 * to forget (repair empties it: the space leaks until the next growth, never is handed
 * out twice). */
struct gen_space {
    /* Reads by handles without a reader slot, in progress: raised and lowered by them (a
     * read-modify-write, a full fence); writers reuse nothing while it is not 0. */
    _Atomic uint64_t unprot;
    uint8_t pad0[56];
    /* The ring of replaced entries: [tail, mark) retired before the current epoch,
     * [mark, head) during it; counters, the index is modulo ring_cap. since, since_bytes:
     * retired since the last try to advance. */
    uint64_t head, tail, mark, since, since_bytes;
    /* 1 while a writer moves retired entries to the free lists (advance), else 0: a writer
     * killed in the middle leaves blocks both on the ring and on a free list, and the next
     * writer that finds it so forgets the space, however it came by the lock (a batch's
     * holder learns of the death from the lock, not the map). */
    _Atomic uint64_t moving;
    uint8_t pad1[16];
    /* Free lists, one per size class: the offset of the first free block (0: none); a
     * free block's first 8 bytes hold the next one's. */
    uint64_t free_head[NCLASSES];
    /* Then the ring of retired entries, ring_cap words: offset / 8 in the low OFF_BITS,
     * the size class above. */
    uint64_t ring[];
};
_Static_assert(offsetof(struct gen_space, head) == 64, "layout");
_Static_assert(offsetof(struct gen_space, free_head) == 128, "layout");
_Static_assert(sizeof(struct gen_space) == 128 + 8 * NCLASSES, "layout");
/* Entries begin on a line (8 slots, the space and 2^11 ring words are whole lines). */
_Static_assert(sizeof(struct gen_hdr) % LINE == 0 && sizeof(struct gen_space) % LINE == 0,
               "entries on line boundaries");
#define SPACE_SIZE sizeof(struct gen_space)

/* An entry: written once, before a slot points to it; never written again. */
struct entry {
    uint32_t klen;
    uint32_t vlen;
    uint64_t hash;
    /* key bytes, then value bytes, then padding to 8 */
};
#define ENTRY_HEAD 16u

static inline uint64_t align8(uint64_t n)
{
    return (n + 7) & ~UINT64_C(7);
}

static inline uint64_t entry_size(uint64_t klen, uint64_t vlen)
{
    return align8(ENTRY_HEAD + klen + vlen);
}

/* The space an entry occupies: its size up to 256 bytes, above that rounded up to a
 * quarter of its power of two (at most 25% more), so that any free block of a size class
 * fits any entry of it. */
static inline uint64_t block_size(uint64_t klen, uint64_t vlen)
{
    uint64_t s = entry_size(klen, vlen);
    /* Whole cache lines: a new entry written, or a freed block linked, on a line that also
     * held a live entry made every reader of that entry miss (false sharing). */
    if (s <= 256) return (s + LINE - 1) & ~(uint64_t)(LINE - 1);
    unsigned k = 63u - (unsigned)__builtin_clzll(s - 1); /* 2^k < s <= 2^(k+1) */
    uint64_t step = UINT64_C(1) << (k - 2);
    return (s + step - 1) & ~(step - 1);
}

/* The size class of a block size: 0..31 for 8..256 bytes (of which only 64, 128, 192 and
 * 256 are used now, entries taking whole lines), then four a power of two. */
static inline unsigned size_class(uint64_t bs)
{
    if (bs <= 256) return (unsigned)(bs / 8) - 1;
    unsigned k = 63u - (unsigned)__builtin_clzll(bs - 1);
    uint64_t step = UINT64_C(1) << (k - 2);
    return 32 + (k - 8) * 4 + (unsigned)((bs - (UINT64_C(1) << k)) / step) - 1;
}

static inline uint64_t class_size(unsigned c)
{
    if (c < 32) return (uint64_t)(c + 1) * 8;
    unsigned k = 8 + (c - 32) / 4;
    return (UINT64_C(1) << k) + (uint64_t)((c - 32) % 4 + 1) * (UINT64_C(1) << (k - 2));
}

struct shmrpc_map {
    struct map_hdr *hdr;
    size_t hdr_len; /* mapped bytes of the header segment: the header and the type */
    /* The header's file, to tell whether its name still leads to it (still_named). */
    dev_t hdr_dev;
    ino_t hdr_ino;
    char *type; /* the map's type signature as stored ("" when untyped) */
    char *want; /* the type this open asked for (opts.type points here), "" for any */
    shmrpc_lock *lock;
    /* The generation this handle maps, and the number of the map's first (the header's
     * first, read at open): geo.gen - first + 1 is the generation a user is shown. */
    uint8_t *base;
    shmrpc__map_geo geo;
    uint64_t first;
    /* The geometry of new generations, from the header as checked at open: never read
     * from the segment again, which any process of the user can write over. */
    uint64_t init_slots, init_bytes, max_bytes;
    uid_t uid;
    shmrpc_map_opts opts;
    bool created;  /* this open created the map */
    pid_t creator; /* the process whose open that was: only its close removes the map */
    bool holding;  /* inside a write that took the lock (not re-entrantly) */
    /* The handle's reader slot (NULL: none yet, or the table was full), and the fork
     * count when it was claimed: a forked child claims its own. */
    struct map_reader *rd;
    unsigned rd_fork;
    uint32_t rd_retry; /* reads without a slot until the next try to claim one */
    uint8_t pin;       /* PIN_*: what the read in progress (or the view held) holds */
    unsigned pin_fork; /* the fork count when it was taken: a child's is its parent's */
    bool no_fence;     /* the slot's no_fence: reads rely on writers' membarrier */
    /* A writer's: whether to demote what it writes (another process read the map since its
     * last advance), and the reads of each reader slot then. */
    bool demote;
    uint64_t seen_reads[MAP_READERS];
    uint64_t unprot_reads; /* reads made without a slot, added to reads_gone at close */
    char name[SHMRPC_MAP_NAME_MAX + 1];
    /* The truncation guards of the header's and the generation's mappings (segment.h) and
     * their marks; was_cut: a generation mapped before was cut. Once cut, every call fails
     * with SHMRPC_ECUT. */
    int hdr_guard, gen_guard;
    _Atomic uint32_t *hdr_cut, *gen_cut;
    bool was_cut;
    /* What an open found cut, for an open with create to remove: the header's file, and
     * the generation's number (0: the header itself was cut). */
    dev_t cut_dev, removed_dev;
    ino_t cut_ino, removed_ino;
    uint64_t cut_gen;
};

/* What a handle's read holds until it ends (a get or a snapshot) or the next call (a
 * view): the epoch of its reader slot (a snapshot), the hazard of its reader slot (a get
 * or a view), or a count in the generation's unprot (no reader slot). */
enum { PIN_NONE, PIN_EPOCH, PIN_HAZARD, PIN_UNPROT };

/* --- messages ---------------------------------------------------------------------- */

#define fail shmrpc__err_set
#define syserr shmrpc__seg_syserr

/* Whether a segment of the map was cut under this handle: its mapping is then private zero
 * pages (segment.h). Loads (acquire: free on x86) of process-local words: the count of cuts,
 * and only when it is not 0 the marks of the handle's two mappings. */
static inline bool cut(const shmrpc_map *m)
{
    if (__builtin_expect(atomic_load_explicit(&shmrpc__seg_cuts, memory_order_acquire) == 0, 1))
        return false; /* no mapping of this process was ever cut */
    return __builtin_expect((atomic_load_explicit(m->hdr_cut, memory_order_relaxed) |
                             atomic_load_explicit(m->gen_cut, memory_order_relaxed)) != 0 ||
                                m->was_cut,
                            0);
}

static void gen_path(char *out, const char *name, uint64_t gen);
static void hdr_path(char *out, const char *name);

/* The message names the file that was cut: the header, or the generation. */
static int cut_fail(const shmrpc_map *m)
{
    char path[PATH_CAP];
    if (atomic_load_explicit(m->hdr_cut, memory_order_relaxed) || !m->base)
        hdr_path(path, m->name);
    else
        gen_path(path, m->name, m->geo.gen);
    return shmrpc__seg_cut_fail("map", m->name, path);
}

/* Reads the last byte of the generation's mapping (and of the header's, for a waiter), so
 * that a cut below it is found by a call that would touch no page past the cut (a get of
 * a key whose slot is empty, in the first page); true when the map was cut. The
 * generation's last line is written only by an entry at its very end. A cut within the
 * last page of a file that keeps it is not found so. */
static inline bool probe_cut(const shmrpc_map *m, bool hdr)
{
    if (hdr) (void)*(volatile const uint8_t *)((const uint8_t *)m->hdr + m->hdr_len - 1);
    if (m->base) (void)*(volatile const uint8_t *)(m->base + m->geo.total - 1);
    return cut(m);
}

/* The check of shmrpc_map_wait's sleep. */
static int wait_check(void *arg)
{
    return probe_cut(arg, true) ? SHMRPC_ECUT : 0;
}

/* rc, unless the map was cut meanwhile: what the call did, it did on zero pages. */
static inline int unless_cut(const shmrpc_map *m, int rc)
{
    return cut(m) ? cut_fail(m) : rc;
}

__attribute__((format(printf, 4, 5))) static int why_fail(int rc, char *why, size_t cap,
                                                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (cap) vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return rc;
}

/* --- hashing ----------------------------------------------------------------------- */

static inline uint64_t mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint64_t load32(const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* A wyhash-style hash: 8 bytes a step, one 128-bit multiply each. The last 1..8 bytes are
 * read as wyhash does, with loads that may overlap bytes already hashed (the length is
 * hashed too): copying them byte by byte into a word and loading that word stalled the
 * load on the bytes' stores, a fifth of a 16 B get in perf. */
static uint64_t hash_key(const void *key, size_t n)
{
    const uint8_t *p = key;
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ n;
    size_t left = n;
    for (; left > 8; p += 8, left -= 8)
        h = mix(h ^ load64(p), UINT64_C(0xa0761d6478bd642f));
    uint64_t w;
    if (n >= 8)
        w = load64(p + left - 8);
    else if (left >= 4)
        w = load32(p) << 32 | load32(p + left - 4);
    else if (left > 0)
        w = (uint64_t)p[0] << 16 | (uint64_t)p[left >> 1] << 8 | p[left - 1];
    else
        w = 0;
    h = mix(h ^ w ^ ((uint64_t)left << 56), UINT64_C(0xe7037ed1a0b428db));
    return mix(h, UINT64_C(0x8ebc6af09c88c6e3));
}

/* --- reading a generation (trusting nothing in it) ---------------------------------- */

int shmrpc__map_validate(const void *seg, uint64_t size, shmrpc__map_geo *geo, char *why,
                         size_t cap)
{
    if (size < HEAD_SIZE)
        return why_fail(SHMRPC_EPROTO, why, cap, "segment of %" PRIu64 " bytes, less than a header",
                        size);
    const struct gen_hdr *g = seg;
    uint32_t magic = g->magic, version = g->version;
    uint64_t total = g->total, nslots = g->nslots, arena = g->arena_off;
    if (magic != GEN_MAGIC)
        return why_fail(SHMRPC_EPROTO, why, cap, "not a map generation (magic 0x%08x)", magic);
    if (version != MAP_VERSION)
        return why_fail(SHMRPC_EVERSION, why, cap, "layout version %u, this library %u", version,
                        MAP_VERSION);
    if (total != size)
        return why_fail(SHMRPC_EPROTO, why, cap,
                        "header says %" PRIu64 " bytes, segment has %" PRIu64, total, size);
    if (nslots < 8 || nslots > MAX_SLOTS || (nslots & (nslots - 1)))
        return why_fail(SHMRPC_EPROTO, why, cap,
                        "slot count %" PRIu64 " is not a power of two in [8, 2^31]", nslots);
    uint64_t ring = g->ring_cap;
    if (ring < RING_MIN || ring > RING_MAX || (ring & (ring - 1)))
        return why_fail(SHMRPC_EPROTO, why, cap,
                        "ring of %" PRIu64 " is not a power of two in [2^11, 2^24]", ring);
    if (arena != HEAD_SIZE + nslots * 8 + SPACE_SIZE + ring * 8 || arena > total ||
        (total >> 3) > OFF_MASK)
        return why_fail(SHMRPC_EPROTO, why, cap,
                        "entries at %" PRIu64 " do not follow %" PRIu64 " slots in %" PRIu64
                        " bytes",
                        arena, nslots, total);
    geo->gen = g->gen;
    geo->total = total;
    geo->nslots = nslots;
    geo->arena_off = arena;
    geo->ring_cap = ring;
    return 0;
}

static inline _Atomic uint64_t *slots_of(const void *seg)
{
    return (_Atomic uint64_t *)((uint8_t *)seg + HEAD_SIZE);
}

static inline struct gen_space *space_of(const void *seg, const shmrpc__map_geo *geo)
{
    return (struct gen_space *)((uint8_t *)seg + HEAD_SIZE + geo->nslots * 8);
}

/* The entry a slot word points to, checked: its offset, klen and vlen (read once) lie
 * inside the segment. NULL when they do not. */
static const struct entry *entry_at(const void *seg, const shmrpc__map_geo *geo, uint64_t word,
                                    uint32_t *klen, uint32_t *vlen)
{
    uint64_t off = (word & OFF_MASK) << 3;
    if (off < geo->arena_off || off > geo->total - ENTRY_HEAD) return NULL;
    const struct entry *e = (const struct entry *)((const uint8_t *)seg + off);
    uint32_t k = e->klen, v = e->vlen;
    if (k > SHMRPC_MAP_KEY_MAX || v > SHMRPC_MAP_VALUE_MAX) return NULL;
    if ((uint64_t)k + v > geo->total - off - ENTRY_HEAD) return NULL;
    *klen = k;
    *vlen = v;
    return e;
}

/* A lock-free reader's protection of the entry a slot word names (a hazard pointer):
 * publishes the word in the reader slot's hazard, fences, and loads the slot again until
 * it holds what was published. A writer that replaced the entry before the fence sees the
 * new word here; one that replaced it after sees the hazard when it looks for what it may
 * reuse (advance: its store of the slot, a fence or membarrier, then its reads of the
 * hazards), and keeps that entry. With fence false the writers' membarrier is the fence. */
struct protect {
    _Atomic uint64_t *hazard;
    bool fence;
};

static inline uint64_t protect_word(const struct protect *pr, _Atomic uint64_t *slot, uint64_t w)
{
    for (;;) {
        /* Release: the reads of the entry looked at before (another key's) are done. */
        atomic_store_explicit(pr->hazard, w, memory_order_release);
        if (pr->fence)
            atomic_thread_fence(memory_order_seq_cst);
        else
            atomic_signal_fence(memory_order_seq_cst);
        uint64_t again = atomic_load_explicit(slot, memory_order_acquire);
        if (again == w) return w;
        w = again;
    }
}

/* Finds key: its slot in *at (or SIZE_MAX), the first reusable slot in *free_at. 0 found,
 * SHMRPC_ENOENT, SHMRPC_EPROTO for an entry out of bounds or a table without an empty
 * slot. pr: a lock-free reader's, which protects each entry before it reads it (NULL for
 * writers under the lock and for segments nobody writes). */
static inline int find(const void *seg, const shmrpc__map_geo *geo, const void *key, size_t klen,
                       uint64_t h, uint64_t *at, uint64_t *word_out, uint64_t *free_at,
                       const struct protect *pr)
{
    _Atomic uint64_t *slots = slots_of(seg);
    uint64_t mask = geo->nslots - 1, tag = TAG_OF(h), reuse = UINT64_MAX;
    *at = UINT64_MAX;
    for (uint64_t i = h & mask, n = 0; n < geo->nslots; i = (i + 1) & mask, n++) {
        uint64_t w = atomic_load_explicit(&slots[i], memory_order_acquire);
        if (w == EMPTY) {
            *at = UINT64_MAX;
            if (free_at) *free_at = reuse == UINT64_MAX ? i : reuse;
            return SHMRPC_ENOENT;
        }
        if (w == TOMB) {
            if (reuse == UINT64_MAX) reuse = i;
            continue;
        }
        if ((w >> OFF_BITS) != tag) continue;
        /* Replaced meanwhile by a removal (a slot is emptied only by a new generation) or
         * by another key's entry: on to the next slot, as if it had been so at the load. */
        if (pr && ((w = protect_word(pr, &slots[i], w)) <= TOMB || (w >> OFF_BITS) != tag))
            continue;
        uint32_t k, v;
        const struct entry *e = entry_at(seg, geo, w, &k, &v);
        if (!e) return SHMRPC_EPROTO;
        if (k == klen && memcmp(e + 1, key, klen) == 0) {
            *at = i;
            *word_out = w;
            return 0;
        }
    }
    *at = UINT64_MAX;
    if (free_at) *free_at = reuse;
    return reuse == UINT64_MAX ? SHMRPC_EPROTO : SHMRPC_ENOENT;
}

int shmrpc__map_lookup(const void *seg, const shmrpc__map_geo *geo, const void *key, size_t klen,
                       const void **value, size_t *vlen)
{
    uint64_t at, w;
    int rc = find(seg, geo, key, klen, hash_key(key, klen), &at, &w, NULL, NULL);
    if (rc != 0) return rc;
    uint32_t k, v;
    const struct entry *e = entry_at(seg, geo, w, &k, &v);
    if (!e) return SHMRPC_EPROTO;
    *value = (const uint8_t *)(e + 1) + k;
    *vlen = v;
    return 0;
}

/* A block of the entry space, for the overlap check. */
struct span {
    uint64_t off, len;
};

static int by_off(const void *a, const void *b)
{
    uint64_t x = ((const struct span *)a)->off, y = ((const struct span *)b)->off;
    return x < y ? -1 : x > y;
}

/* Whether the block at off of a class lies in the written entry space. */
static inline bool block_ok(const shmrpc__map_geo *geo, uint64_t used, uint64_t off, uint64_t bs)
{
    return !(off & 7) && off >= geo->arena_off && off <= used && bs <= used - off;
}

/* The free lists and the ring of retired entries against the live entries: every block in
 * them lies in the written space, and no two blocks overlap (a block handed out twice, or
 * freed while a slot points to it, would). */
static int check_space(const void *seg, const shmrpc__map_geo *geo, uint64_t used, char *why,
                       size_t cap)
{
    const struct gen_space *sp = space_of(seg, geo);
    uint64_t head = sp->head, tail = sp->tail, mark = sp->mark;
    if (tail > mark || mark > head || head - tail > geo->ring_cap)
        return why_fail(SHMRPC_EPROTO, why, cap,
                        "retired ring out of order (tail %" PRIu64 ", mark %" PRIu64
                        ", head %" PRIu64 ")",
                        tail, mark, head);
    /* Every block is at least 16 bytes: a list longer than the space can hold loops. */
    uint64_t most = (used - geo->arena_off) / 16 + 1, n = 0;
    struct span *v = malloc((size_t)(2 * most + geo->ring_cap) * sizeof *v);
    if (!v) return 0; /* nothing to check with: not a finding */
    _Atomic uint64_t *slots = slots_of(seg);
    for (uint64_t i = 0; i < geo->nslots && n < most; i++) {
        uint64_t w = atomic_load_explicit(&slots[i], memory_order_acquire);
        uint32_t k, vl;
        if (w == EMPTY || w == TOMB || !entry_at(seg, geo, w, &k, &vl)) continue;
        v[n++] = (struct span){(w & OFF_MASK) << 3, block_size(k, vl)};
    }
    int rc = 0;
    for (unsigned c = 0; c < NCLASSES && rc == 0; c++) {
        uint64_t bs = class_size(c), steps = 0;
        for (uint64_t off = sp->free_head[c]; off && rc == 0; steps++) {
            if (!block_ok(geo, used, off, bs) || steps >= most || n >= 2 * most)
                rc = why_fail(SHMRPC_EPROTO, why, cap,
                              "free list %u: block at %" PRIu64 " out of bounds or a loop", c, off);
            else {
                v[n++] = (struct span){off, bs};
                memcpy(&off, (const uint8_t *)seg + off, 8);
            }
        }
    }
    for (uint64_t i = tail; i != head && rc == 0; i++) {
        uint64_t x = sp->ring[i % geo->ring_cap], off = (x & OFF_MASK) << 3;
        unsigned c = (unsigned)(x >> OFF_BITS);
        if (c >= NCLASSES || !block_ok(geo, used, off, class_size(c)))
            rc = why_fail(SHMRPC_EPROTO, why, cap, "retired block at %" PRIu64 " out of bounds",
                          off);
        else
            v[n++] = (struct span){off, class_size(c)};
    }
    if (rc == 0) qsort(v, (size_t)n, sizeof *v, by_off);
    for (uint64_t i = 1; i < n && rc == 0; i++)
        if (v[i - 1].off + v[i - 1].len > v[i].off)
            rc = why_fail(SHMRPC_EPROTO, why, cap,
                          "blocks at %" PRIu64 " and %" PRIu64 " overlap (space handed out twice)",
                          v[i - 1].off, v[i].off);
    free(v);
    return rc;
}

int shmrpc__map_check_seg(const void *seg, const shmrpc__map_geo *geo, char *why, size_t cap)
{
    const struct gen_hdr *g = seg;
    _Atomic uint64_t *slots = slots_of(seg);
    uint64_t count = 0, tombs = 0, live = 0, used = atomic_load(&g->used);
    if (used < geo->arena_off || used > geo->total)
        return why_fail(SHMRPC_EPROTO, why, cap, "used end %" PRIu64 " outside the entries", used);
    for (uint64_t i = 0; i < geo->nslots; i++) {
        uint64_t w = atomic_load_explicit(&slots[i], memory_order_acquire);
        if (w == EMPTY) continue;
        if (w == TOMB) {
            tombs++;
            continue;
        }
        uint32_t k, v;
        const struct entry *e = entry_at(seg, geo, w, &k, &v);
        if (!e)
            return why_fail(SHMRPC_EPROTO, why, cap, "slot %" PRIu64 " points outside the segment",
                            i);
        uint64_t off = (uint64_t)((const uint8_t *)e - (const uint8_t *)seg);
        if (off + block_size(k, v) > used)
            return why_fail(SHMRPC_EPROTO, why, cap,
                            "slot %" PRIu64 " points past the used end %" PRIu64, i, used);
        uint64_t h = hash_key(e + 1, k);
        if (h != e->hash || TAG_OF(h) != (w >> OFF_BITS))
            return why_fail(SHMRPC_EPROTO, why, cap, "slot %" PRIu64 ": entry's hash is wrong", i);
        uint64_t at, w2;
        if (find(seg, geo, e + 1, k, h, &at, &w2, NULL, NULL) != 0 || at != i)
            return why_fail(SHMRPC_EPROTO, why, cap,
                            "slot %" PRIu64 ": key unreachable or present twice", i);
        count++;
        live += block_size(k, v);
    }
    uint64_t hc = atomic_load(&g->count), ht = atomic_load(&g->tombs), hl = atomic_load(&g->live);
    if (hc != count || ht != tombs || hl != live)
        return why_fail(SHMRPC_EPROTO, why, cap,
                        "header counts %" PRIu64 " keys, %" PRIu64 " tombstones, %" PRIu64
                        " live bytes; slots hold %" PRIu64 ", %" PRIu64 ", %" PRIu64,
                        hc, ht, hl, count, tombs, live);
    if (atomic_load(&g->seq) & 1)
        return why_fail(SHMRPC_EPROTO, why, cap, "a write is half applied (odd sequence)");
    return check_space(seg, geo, used, why, cap);
}

/* --- names and files --------------------------------------------------------------- */

static int check_name(const char *name)
{
    return shmrpc__seg_check_name("map", name, SHMRPC_MAP_NAME_MAX);
}

static void hdr_path(char *out, const char *name)
{
    snprintf(out, PATH_CAP, "%s%s", HDR_PREFIX, name);
}

static void gen_path(char *out, const char *name, uint64_t gen)
{
    snprintf(out, PATH_CAP, "%s%s.%" PRIu64, GEN_PREFIX, name, gen);
}

static void lock_name(char *out, const char *name)
{
    snprintf(out, SHMRPC_LOCK_NAME_MAX + 1, "map.%s", name);
}

/* Owner and mode of an existing segment (the lock's rule). */
static int check_owner(int fd, const char *name, mode_t perms, off_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        return fail(SHMRPC_ESYS(err), "fstat of map '%s': %s", name, syserr(err));
    }
    int rc = shmrpc__seg_check_owner(&st, "map", name, perms);
    if (rc != 0) return rc;
    *size = st.st_size;
    return 0;
}

/* Creates a segment of size bytes, 0 on success, SHMRPC_ESYS(EEXIST) silently. */
static int create_file(const char *path, const char *name, mode_t perms, uint64_t size, void **out,
                       struct stat *st)
{
    int fd;
    int rc = shmrpc__seg_create("map", path, name, perms, &fd);
    if (rc != 0) return rc;
    if (fchmod(fd, perms) != 0 || ftruncate(fd, (off_t)size) != 0) {
        int err = errno;
        rc = fail(SHMRPC_ESYS(err), "cannot size map '%s' (%s%s, %" PRIu64 " bytes): %s", name,
                  SHM_DIR, path, size, syserr(err));
    }
    void *p = MAP_FAILED;
    if (rc == 0) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int err = errno;
            rc = fail(SHMRPC_ESYS(err), "cannot map map '%s': %s", name, syserr(err));
        }
    }
    /* Its identity, by which the creator later knows the name is still its map's (a
     * growth, auto_unlink): without it, the map would be taken for one made anew. */
    if (rc == 0 && st && fstat(fd, st) != 0) {
        int err = errno;
        munmap(p, size);
        rc = fail(SHMRPC_ESYS(err), "cannot stat map '%s' (%s%s): %s", name, SHM_DIR, path,
                  syserr(err));
    }
    close(fd);
    if (rc != 0) {
        shm_unlink(path);
        return rc;
    }
    *out = p;
    return 0;
}

/* --- generations --------------------------------------------------------------------- */

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 8;
    while (p < n && p < MAX_SLOTS)
        p <<= 1;
    return p;
}

/* Creates generation gen of nslots and bytes of entries, empty, replacing any file a
 * writer that died while building it left; a map's first (anew) replaces nothing, and a
 * file of its number fails it with SHMRPC_ESYS(EEXIST). Not yet published. */
static int build_gen(shmrpc_map *m, uint64_t gen, uint64_t epoch, uint64_t nslots, uint64_t bytes,
                     bool anew, uint8_t **out, shmrpc__map_geo *geo)
{
    char path[PATH_CAP];
    gen_path(path, m->name, gen);
    uint64_t ring = RING_MIN;
    while (ring < bytes / 256 && ring < RING_MAX)
        ring <<= 1;
    uint64_t arena = HEAD_SIZE + nslots * 8 + SPACE_SIZE + ring * 8;
    uint64_t total = (arena + bytes + 4095) & ~UINT64_C(4095);
    void *p = NULL;
    int rc = SHMRPC_ESYS(EEXIST);
    for (int i = 0; i < OPEN_ATTEMPTS && rc == SHMRPC_ESYS(EEXIST); i++) {
        if (!anew) shm_unlink(path);
        rc = create_file(path, m->name, m->opts.perms, total, &p, NULL);
        if (anew) break;
    }
    if (rc == SHMRPC_ESYS(EEXIST) && !anew)
        return fail(SHMRPC_EBUSY, "map '%s': generation file %" PRIu64 " keeps being recreated",
                    m->name, gen);
    if (rc != 0) return rc;
    struct gen_hdr *g = p;
    g->magic = GEN_MAGIC;
    g->version = MAP_VERSION;
    g->gen = gen;
    g->total = total;
    g->nslots = nslots;
    g->arena_off = arena;
    g->epoch0 = epoch;
    g->ring_cap = ring;
    atomic_store(&g->epoch, epoch);
    atomic_store(&g->used, arena);
    geo->gen = gen;
    geo->total = total;
    geo->nslots = nslots;
    geo->arena_off = arena;
    geo->ring_cap = ring;
    *out = p;
    return 0;
}

/* Maps generation gen; SHMRPC_ENOENT when its file is gone (a newer one replaced it). */
static int map_gen(shmrpc_map *m, uint64_t gen, uint8_t **out, shmrpc__map_geo *geo)
{
    char path[PATH_CAP];
    gen_path(path, m->name, gen);
    int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT) return SHMRPC_ENOENT;
        return fail(SHMRPC_ESYS(err), "cannot open map '%s' generation file %" PRIu64 ": %s",
                    m->name, gen, syserr(err));
    }
    off_t size = 0; /* set by check_owner when it succeeds (gcc -O3 cannot tell) */
    int rc = check_owner(fd, m->name, m->opts.perms, &size);
    void *p = MAP_FAILED;
    /* Published only once made whole: smaller than a head, it was cut. */
    if (rc == 0 && (size < (off_t)HEAD_SIZE))
        rc = fail(SHMRPC_ECUT,
                  "map '%s' generation file %" PRIu64 " (%s%s) was cut to %lld bytes under its "
                  "holders: the map's entries are gone; opening it with create makes it anew",
                  m->name, gen, SHM_DIR, path, (long long)size);
    if (rc == 0) {
        p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int err = errno;
            rc = fail(SHMRPC_ESYS(err), "cannot map map '%s': %s", m->name, syserr(err));
        }
    }
    close(fd);
    if (rc == SHMRPC_ECUT) m->cut_gen = gen;
    if (rc != 0) return rc;
    /* Cut, when the head adds up for the size it says, one that a growth makes (at most
     * max_bytes of entries), and the file is shorter; a head that does not add up is
     * refused below as a scribble. */
    uint64_t said = ((const struct gen_hdr *)p)->total;
    char no[8];
    shmrpc__map_geo whole;
    if (said > (uint64_t)size && shmrpc__map_validate(p, said, &whole, no, sizeof no) == 0 &&
        said <= whole.arena_off + m->max_bytes + 4095) {
        munmap(p, (size_t)size);
        m->cut_gen = gen;
        return fail(SHMRPC_ECUT,
                    "map '%s' generation file %" PRIu64 " (%s%s) was cut to %lld bytes under its "
                    "holders (its head says %" PRIu64 "): the map's entries are gone; opening it "
                    "with create makes it anew",
                    m->name, gen, SHM_DIR, path, (long long)size, said);
    }
    char why[200];
    rc = shmrpc__map_validate(p, (uint64_t)size, geo, why, sizeof why);
    if (rc == 0 && geo->gen != gen)
        rc = why_fail(SHMRPC_EPROTO, why, sizeof why, "it says it is number %" PRIu64, geo->gen);
    if (rc != 0) {
        munmap(p, (size_t)size);
        return fail(rc, "map '%s' generation file %" PRIu64 " (%s%s) refused: %s", m->name, gen,
                    SHM_DIR, path, why);
    }
    *out = p;
    return 0;
}

static void set_gen(shmrpc_map *m, uint8_t *base, const shmrpc__map_geo *geo)
{
    if (m->base) {
        if (atomic_load(m->gen_cut)) m->was_cut = true; /* the guard may be another's next */
        shmrpc__seg_unguard(m->gen_guard);
        munmap(m->base, m->geo.total);
    }
    m->base = base;
    m->geo = *geo;
    m->gen_guard = shmrpc__seg_guard(base, (size_t)geo->total);
    m->gen_cut = shmrpc__seg_guard_flag(m->gen_guard);
}

/* --- readers ------------------------------------------------------------------------ */

/* Raised in every forked child, so that a handle the child inherited claims a reader slot
 * of its own instead of sharing its parent's. */
static _Atomic unsigned fork_count;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add_explicit(&fork_count, 1, memory_order_relaxed);
}

static void hook_fork(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

/* Whether the owner o of slot r (o read first, then its start) is dead; *start: the start
 * read. An owner that changed meanwhile is not: the start read may be the next one's. */
static bool owner_dead(struct map_reader *r, uint64_t o, uint64_t *start)
{
    *start = atomic_load(&r->start);
    return atomic_load(&r->owner) == o && !shmrpc__proc_alive((int32_t)o, *start);
}

/* Frees the slot of an owner that died without closing (its reads kept), start the start
 * its death was judged by; false when someone else freed or took it first. */
static bool free_dead_slot(struct map_hdr *h, struct map_reader *r, uint64_t owner, uint64_t start)
{
    uint64_t reads = atomic_load_explicit(&r->reads, memory_order_relaxed), s = start;
    if (!atomic_compare_exchange_strong(&r->start, &s, 0)) return false;
    /* Taken meanwhile: its start stays 0, which judges its owner by pid alone (putting it
     * back could put it on a slot freed since, the very state this clearing avoids). */
    if (!atomic_compare_exchange_strong(&r->owner, &owner, 0)) return false;
    atomic_fetch_add_explicit(&h->reads_gone, reads, memory_order_relaxed);
    return true;
}

/* Claims a free reader slot, or the slot of an owner that died (checked only when none is
 * free); NULL when every slot has a live owner. */
static struct map_reader *claim_slot(shmrpc_map *m)
{
    pthread_once(&fork_once, hook_fork);
    struct map_hdr *h = m->hdr;
    uint64_t me = (uint64_t)getpid();
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < MAP_READERS; i++) {
            struct map_reader *r = &h->readers[i];
            uint64_t o = atomic_load(&r->owner), start;
            if (o != 0 &&
                (pass == 0 || !owner_dead(r, o, &start) || !free_dead_slot(h, r, o, start)))
                continue;
            o = 0;
            if (!atomic_compare_exchange_strong(&r->owner, &o, me)) continue;
            atomic_store(&r->start, shmrpc__proc_start((int32_t)me));
            /* With the barrier a writer makes on every CPU running this process, a read
             * needs no fence of its own (each costs a fifth of a get); without it (an old
             * kernel, a seccomp filter), every read fences. */
            m->no_fence =
                syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
            if (m->no_fence) atomic_fetch_or(&h->no_fence, 1);
            atomic_store_explicit(&r->reads, 0, memory_order_relaxed);
            atomic_store_explicit(&r->epoch, 0, memory_order_relaxed);
            atomic_store_explicit(&r->hazard, 0, memory_order_relaxed);
            m->rd_fork = atomic_load_explicit(&fork_count, memory_order_relaxed);
            return r;
        }
    return NULL;
}

/* Gives back the handle's slot (not one inherited from a parent). */
static void release_slot(shmrpc_map *m)
{
    struct map_reader *r = m->rd;
    m->rd = NULL;
    if (!r || m->rd_fork != atomic_load_explicit(&fork_count, memory_order_relaxed)) return;
    uint64_t me = (uint64_t)getpid(), reads = atomic_load(&r->reads);
    uint64_t start = atomic_load(&r->start);
    atomic_store_explicit(&r->epoch, 0, memory_order_release);
    atomic_store_explicit(&r->hazard, 0, memory_order_release);
    /* The start first, and only while the slot is still this handle's. */
    if (atomic_load(&r->owner) == me) atomic_compare_exchange_strong(&r->start, &start, 0);
    if (atomic_compare_exchange_strong(&r->owner, &me, 0))
        atomic_fetch_add_explicit(&m->hdr->reads_gone, reads, memory_order_relaxed);
}

/* Ends the read in progress or the view held: from here on, writers may reuse what it
 * read. */
static inline void unpin(shmrpc_map *m)
{
    uint8_t pin = m->pin;
    m->pin = PIN_NONE;
    /* A read inherited through fork (a view held at the fork) is the parent's, which ends
     * it: clearing its hazard or epoch here let writers reuse what the parent still read. */
    if (pin == PIN_NONE || m->pin_fork != atomic_load_explicit(&fork_count, memory_order_relaxed))
        return;
    if (pin == PIN_HAZARD) {
        struct map_reader *r = m->rd;
        atomic_store_explicit(&r->reads, atomic_load_explicit(&r->reads, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        /* Release: the copy of the value is done before a writer may see the slot idle. */
        atomic_store_explicit(&r->hazard, 0, memory_order_release);
    } else if (pin == PIN_EPOCH) {
        atomic_store_explicit(&m->rd->epoch, 0, memory_order_release);
    } else if (pin == PIN_UNPROT) {
        atomic_fetch_sub_explicit(&space_of(m->base, &m->geo)->unprot, 1, memory_order_release);
        m->unprot_reads++;
    }
}

/* Follows the header to the current generation. */
static int follow(shmrpc_map *m)
{
    unpin(m);
    if (cut(m)) return cut_fail(m); /* a header of zero pages names no generation */
    for (int i = 0; i < OPEN_ATTEMPTS; i++) {
        uint64_t gen = atomic_load_explicit(&m->hdr->gen, memory_order_acquire);
        if (cut(m)) return cut_fail(m); /* the look above found zero pages */
        if (m->base && gen == m->geo.gen) return 0;
        uint8_t *base = NULL;
        shmrpc__map_geo geo;
        int rc = map_gen(m, gen, &base, &geo);
        if (rc == 0) {
            set_gen(m, base, &geo);
            return 0;
        }
        if (rc != SHMRPC_ENOENT) return rc;
        /* Replaced between reading the header and opening; or never made, when the header
         * is damaged: look again, bounded. */
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
    return fail(SHMRPC_EPROTO,
                "map '%s': generation file %" PRIu64 " named by the header does not exist", m->name,
                atomic_load(&m->hdr->gen));
}

static inline int sync_gen(shmrpc_map *m)
{
    if (m->pin) unpin(m);
    if (__builtin_expect(
            atomic_load_explicit(&m->hdr->gen, memory_order_acquire) == m->geo.gen && m->base, 1))
        return 0;
    return follow(m);
}

/* Begins a lock-free read of the current generation. A get (whole false) protects each
 * entry it reads with the hazard of the handle's reader slot (find with read_protect); a
 * snapshot (whole true), which reads every entry, publishes the generation's epoch in the
 * slot, so that no writer reuses an entry this read may still find. Without a slot, the
 * read is counted in the generation's unprot. unpin ends it. */
static inline int enter_read(shmrpc_map *m, bool whole)
{
    int rc = sync_gen(m);
    if (rc != 0) return rc;
    struct map_reader *r = m->rd;
    unsigned forks = atomic_load_explicit(&fork_count, memory_order_relaxed);
    m->pin_fork = forks;
    if (__builtin_expect(!r || m->rd_fork != forks, 0)) {
        if (r || m->rd_retry++ % 1024 == 0) r = m->rd = claim_slot(m);
        if (!r) {
            atomic_fetch_add(&space_of(m->base, &m->geo)->unprot, 1);
            m->pin = PIN_UNPROT;
            return 0;
        }
    }
    if (!whole) {
        m->pin = PIN_HAZARD;
        return 0;
    }
    const struct gen_hdr *g = (const struct gen_hdr *)m->base;
    atomic_store_explicit(&r->epoch, atomic_load_explicit(&g->epoch, memory_order_acquire),
                          memory_order_relaxed);
    /* The epoch is visible before this read looks at a slot (a writer's scan is the other
     * half: it stores a slot word, fences, then reads the epochs). With no_fence, the
     * writer's membarrier is this fence, made on this CPU only when a writer needs it. */
    if (m->no_fence)
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
    m->pin = PIN_EPOCH;
    return 0;
}

/* What find needs to protect the entries a get of m reads: none without a reader slot
 * (unprot holds back all reuse). */
static inline struct protect read_protect(shmrpc_map *m)
{
    if (m->pin != PIN_HAZARD) return (struct protect){NULL, false};
    return (struct protect){&m->rd->hazard, !m->no_fence};
}

/* --- reusing space (writers, under the lock) ------------------------------------------ */

/* Forgets every free and retired block of the mapped generation: after a writer died in
 * the middle of moving them, or when a bad write made them senseless. The blocks stay
 * unused until the next growth copies the live entries; none is handed out twice. */
static void forget_space(shmrpc_map *m)
{
    struct gen_space *sp = space_of(m->base, &m->geo);
    memset(sp->free_head, 0, sizeof sp->free_head);
    sp->head = sp->tail = sp->mark = sp->since = sp->since_bytes = 0;
    atomic_store_explicit(&sp->moving, 0, memory_order_release);
}

/* Whether the block at off (the low OFF_BITS of a slot word or ring entry) is one of the
 * n hazards. */
static inline bool hazarded(const uint64_t *hz, int n, uint64_t off)
{
    for (int i = 0; i < n; i++)
        if (hz[i] == off) return true;
    return false;
}

/* Frees what no reader can still read, and advances the epoch. Gets protect the one entry
 * they read with a hazard, which keeps that entry on the ring; snapshots publish an epoch:
 * when one of them holds an older epoch of this generation, nothing is freed; when one
 * holds the current epoch, what was retired before it ([tail, mark) of the ring) is;
 * when none is in progress, everything retired is. check_dead: also free the slots of
 * readers found dead that hold an old epoch (a /proc read each). */
static bool advance(shmrpc_map *m, bool check_dead)
{
    struct gen_hdr *g = (struct gen_hdr *)m->base;
    struct gen_space *sp = space_of(m->base, &m->geo);
    struct map_hdr *h = m->hdr;
    sp->since = sp->since_bytes = 0;
    /* The slot words this writer stored are visible before it reads the readers' epochs
     * and hazards: a reader either published its epoch or hazard in time to be seen here,
     * or sees the new words. Readers without a fence of their own get it from membarrier,
     * on every CPU that runs one (the asymmetric fence of liburcu's memb flavour); if it
     * fails, no reuse. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&h->no_fence, memory_order_relaxed) &&
        syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) != 0)
        return false;
    if (atomic_load_explicit(&sp->unprot, memory_order_relaxed) != 0) return false;
    uint64_t epoch = atomic_load_explicit(&g->epoch, memory_order_relaxed), e0 = g->epoch0;
    uint64_t hz[MAP_READERS];
    int nhz = 0;
    bool current = false; /* a snapshot at the current epoch */
    uint64_t me = (uint64_t)shmrpc__self_pid();
    m->demote = false; /* until a reader of another process is seen reading */
    for (int i = 0; i < MAP_READERS; i++) {
        struct map_reader *r = &h->readers[i];
        /* A free slot's epoch and hazard may be a dead owner's: its claimer clears them
         * before it reads. */
        uint64_t o = atomic_load_explicit(&r->owner, memory_order_relaxed);
        if (o == 0) continue;
        uint64_t n = atomic_load_explicit(&r->reads, memory_order_relaxed);
        if (o != me && n != m->seen_reads[i]) m->demote = true;
        m->seen_reads[i] = n;
        uint64_t e = atomic_load_explicit(&r->epoch, memory_order_relaxed);
        uint64_t x = atomic_load_explicit(&r->hazard, memory_order_relaxed);
        if (x > TOMB) hz[nhz++] = x & OFF_MASK;
        if (e == 0 || e < e0) continue;
        if (e >= epoch) {
            current = true;
            continue;
        }
        uint64_t start;
        if (check_dead && owner_dead(r, o, &start) && free_dead_slot(h, r, o, start)) continue;
        return false;
    }
    /* What those readers read was done before they stored 0 or the new epoch or hazard
     * (release). */
    atomic_thread_fence(memory_order_acquire);
    uint64_t used = atomic_load_explicit(&g->used, memory_order_relaxed);
    uint64_t cap = m->geo.ring_cap;
    if (sp->tail > sp->mark || sp->mark > sp->head || sp->head - sp->tail > cap) {
        forget_space(m); /* a bad write */
    } else {
        /* Frees [tail, end) but the hazards' entries, which move to its end (read from the
         * end down, each written at or above where it was read), and stay retired. */
        atomic_store_explicit(&sp->moving, 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_release); /* before the first block moves */
        uint64_t end = current ? sp->mark : sp->head, keep = end;
        for (uint64_t i = end; i-- != sp->tail;) {
            uint64_t x = sp->ring[i % cap], off = (x & OFF_MASK) << 3;
            unsigned c = (unsigned)(x >> OFF_BITS);
            if (c >= NCLASSES || !block_ok(&m->geo, used, off, class_size(c))) continue;
            if (nhz && hazarded(hz, nhz, x & OFF_MASK)) {
                sp->ring[--keep % cap] = x;
                continue;
            }
            memcpy(m->base + off, &sp->free_head[c], 8);
            sp->free_head[c] = off;
        }
        sp->tail = keep;
        sp->mark = sp->head;
        atomic_store_explicit(&sp->moving, 0, memory_order_release);
    }
    atomic_store_explicit(&g->epoch, epoch + 1, memory_order_release);
    return true;
}

/* Frees everything retired so far (two advances) when readers let go of it within
 * HARD_WAIT_NS and HARD_TRIES, yielding the CPU meanwhile: a reader that holds an old epoch
 * is a snapshot, most often one preempted, which a yield lets finish, and the growth or
 * leak that not waiting means costs more. Dead readers are looked for once. */
static bool advance_hard(shmrpc_map *m)
{
    /* Below HARD_LIVE live bytes, a growth copies less than a wait costs: no yield. */
    bool wait = atomic_load(&((struct gen_hdr *)m->base)->live) >= HARD_LIVE;
    int64_t until = shmrpc__now_ns() + HARD_WAIT_NS;
    for (int done = 0, i = 0;; i++) {
        if (advance(m, i == 0)) {
            if (++done == 2) return true;
            continue;
        }
        /* At least HARD_TRIES yields: on a busy machine one may take longer than the wait. */
        if (!wait || (i >= HARD_TRIES && shmrpc__now_ns() >= until)) return false;
        sched_yield();
    }
}

/* Puts the entry a slot no longer names (word) on the ring, to be freed once no reader can
 * read it; leaks it (until the next growth) when the ring is full of entries a snapshot
 * holds back: waiting for it here would make every put wait while it is preempted. */
static void retire(shmrpc_map *m, uint64_t word)
{
    struct gen_space *sp = space_of(m->base, &m->geo);
    uint32_t k, v;
    if (!entry_at(m->base, &m->geo, word, &k, &v)) return;
    uint64_t bs = block_size(k, v);
    uint64_t cap = m->geo.ring_cap;
    if (sp->head - sp->tail < cap) {
        sp->ring[sp->head % cap] = ((uint64_t)size_class(bs) << OFF_BITS) | (word & OFF_MASK);
        sp->head++;
    }
    /* Every BATCH entries, or sooner when they are large: an eighth of the space waiting
     * for readers would otherwise be taken fresh. */
    sp->since_bytes += bs;
    uint64_t batch = cap / 4 < BATCH ? cap / 4 : BATCH;
    if (++sp->since >= batch || sp->since_bytes >= (m->geo.total - m->geo.arena_off) / 8)
        advance(m, sp->head - sp->tail >= cap / 2);
}

static uint64_t take_class(shmrpc_map *m, unsigned c);

/* Puts the block at off of bs bytes on the free lists, cut into class sizes (the largest
 * that fits first; a last 8 bytes, smaller than any entry, is left out). */
static void free_pieces(shmrpc_map *m, uint64_t off, uint64_t bs)
{
    struct gen_space *sp = space_of(m->base, &m->geo);
    while (bs >= 16) {
        unsigned c = bs <= 256 ? (unsigned)(bs / 8) - 1 : size_class(bs);
        while (class_size(c) > bs)
            c--;
        memcpy(m->base + off, &sp->free_head[c], 8);
        sp->free_head[c] = off;
        off += class_size(c);
        bs -= class_size(c);
    }
}

/* A free block of class c: of the class itself, else cut from the smallest larger one
 * (the rest freed as pieces), so that space freed by entries of other sizes serves too;
 * 0 when there is none. */
static uint64_t take_free(shmrpc_map *m, unsigned c)
{
    uint64_t off = take_class(m, c);
    for (unsigned b = c + 1; !off && b < NCLASSES; b++) {
        if (!space_of(m->base, &m->geo)->free_head[b]) continue;
        off = take_class(m, b);
        if (off) free_pieces(m, off + class_size(c), class_size(b) - class_size(c));
    }
    return off;
}

static uint64_t take_class(shmrpc_map *m, unsigned c)
{
    struct gen_space *sp = space_of(m->base, &m->geo);
    uint64_t off = sp->free_head[c], bs = class_size(c);
    if (!off) return 0;
    uint64_t used = atomic_load_explicit(&((struct gen_hdr *)m->base)->used, memory_order_relaxed);
    uint64_t next = 0;
    if (block_ok(&m->geo, used, off, bs))
        memcpy(&next, m->base + off, 8);
    else
        off = 0; /* a bad write: forget the list */
    if (next && !block_ok(&m->geo, used, next, bs)) next = 0;
    sp->free_head[c] = next;
    return off;
}

static void bump_changes(struct map_hdr *h)
{
    uint64_t c = atomic_load_explicit(&h->changes, memory_order_relaxed) + 1;
    atomic_store_explicit(&h->changes, c, memory_order_release);
    uint32_t old = atomic_exchange(&h->change.word, (uint32_t)c & ~CHANGE_WAITERS);
    if (old & CHANGE_WAITERS) shmrpc__futex_wake(&h->change, INT32_MAX);
}

static void unlink_gen(const char *name, uint64_t gen)
{
    char path[PATH_CAP];
    gen_path(path, name, gen);
    shm_unlink(path);
}

/* Whether the map's name still leads to the header this handle opened. Generations are
 * found by the map's name and their number: a handle whose map was removed, or created
 * anew (CREATE_NEW_OVERWRITE), that grew or repaired its own by name would make, replace
 * or remove the new map's files. Looked at before a growth and a repair's unlink, which
 * are rare; a put or a get of such a handle goes on with the map it has mapped. 1 when it
 * does, 0 when it does not (no file, or another), -1 when the stat failed (errno). */
static int header_named(const char *name, dev_t dev, ino_t ino)
{
    char path[PATH_CAP], full[PATH_CAP + sizeof SHM_DIR];
    hdr_path(path, name);
    snprintf(full, sizeof full, "%s%s", SHM_DIR, path);
    struct stat st;
    if (stat(full, &st) != 0) return errno == ENOENT ? 0 : -1;
    return st.st_dev == dev && st.st_ino == ino;
}

/* Whether it does; false also when the stat failed (what it guards is then left alone). */
static bool names_header(const char *name, dev_t dev, ino_t ino)
{
    return header_named(name, dev, ino) == 1;
}

static bool still_named(shmrpc_map *m)
{
    return names_header(m->name, m->hdr_dev, m->hdr_ino);
}

/* The keys of the mapped generation and their bytes, counted from its slots: what a
 * growth copies. Not the header's count and live, which a bad write may have made too
 * low: a new table sized by them would drop keys, or fill, and its probe never end. */
static void count_live(shmrpc_map *m, uint64_t *count, uint64_t *live)
{
    const _Atomic uint64_t *os = slots_of(m->base);
    *count = *live = 0;
    for (uint64_t i = 0; i < m->geo.nslots; i++) {
        uint64_t w = atomic_load_explicit(&os[i], memory_order_relaxed);
        uint32_t k, v;
        if (w == EMPTY || w == TOMB || !entry_at(m->base, &m->geo, w, &k, &v)) continue;
        ++*count;
        *live += block_size(k, v);
    }
}

/* Copies the live entries of the mapped generation into a new one large enough for
 * extra more keys of need more bytes, publishes it, and maps it. Under the lock. */
static int grow(shmrpc_map *m, uint64_t extra_keys, uint64_t need, bool empty)
{
    struct gen_hdr *old = (struct gen_hdr *)m->base;
    struct map_hdr *h = m->hdr;
    if (cut(m)) return cut_fail(m); /* nothing to copy, and nothing to publish it in */
    int named = header_named(m->name, m->hdr_dev, m->hdr_ino);
    if (named < 0) {
        int err = errno;
        return fail(SHMRPC_ESYS(err), "map '%s': cannot tell whether its name is still its own: %s",
                    m->name, syserr(err));
    }
    if (!named)
        return fail(SHMRPC_ECLOSED,
                    "map '%s' was removed or created anew since this handle opened it, and its "
                    "generations' names are the new map's: close the handle and open it again",
                    m->name);
    uint64_t count = 0, live = 0;
    if (!empty) count_live(m, &count, &live);
    uint64_t want = (count + extra_keys) * LOAD_DEN / LOAD_NUM + 1;
    uint64_t nslots = pow2_at_least(empty ? m->init_slots : want * 2);
    if (nslots < m->init_slots) nslots = m->init_slots;
    if (want > nslots)
        return fail(SHMRPC_ETOOBIG, "map '%s' cannot hold %" PRIu64 " keys", m->name,
                    count + extra_keys);
    /* Four times what is live: room for the replaced entries that wait for readers before
     * their space is reused, and for those leaked while readers held it back. */
    uint64_t bytes = empty ? m->init_bytes : (live + need) * 4;
    if (bytes < m->init_bytes) bytes = m->init_bytes;
    if (bytes > m->max_bytes) bytes = m->max_bytes;
    if (live + need > bytes)
        return fail(SHMRPC_ETOOBIG,
                    "map '%s' would need %" PRIu64 " bytes of entries, max_bytes is %" PRIu64,
                    m->name, live + need, m->max_bytes);
    uint64_t gen = m->geo.gen + 1;
    uint8_t *nb;
    shmrpc__map_geo ng;
    /* The epoch goes on: readers still publishing the old generation's epochs are below
     * the new one's first and hold back nothing in it. */
    uint64_t epoch = atomic_load(&old->epoch) + 1;
    int rc = build_gen(m, gen, epoch, nslots, bytes, false, &nb, &ng);
    if (rc != 0) return rc;
    struct gen_hdr *g = (struct gen_hdr *)nb;
    _Atomic uint64_t *os = slots_of(m->base), *ns = slots_of(nb);
    uint64_t used = ng.arena_off, n = 0, nlive = 0;
    for (uint64_t i = 0; !empty && i < m->geo.nslots; i++) {
        uint64_t w = atomic_load_explicit(&os[i], memory_order_relaxed);
        if (w == EMPTY || w == TOMB) continue;
        uint32_t k, v;
        const struct entry *e = entry_at(m->base, &m->geo, w, &k, &v);
        if (!e) continue; /* a bad write's: not copied */
        uint64_t sz = block_size(k, v);
        /* Counted above, under the lock: more now is a bad write during the copy. */
        if (used + sz > ng.total || n == count) {
            munmap(nb, ng.total);
            unlink_gen(m->name, gen);
            return fail(SHMRPC_EPROTO,
                        "map '%s' changed while it grew, under its lock (a bad write?); it "
                        "stays as it was",
                        m->name);
        }
        memcpy(nb + used, e, ENTRY_HEAD + (size_t)k + v);
        uint64_t hh = e->hash, mask = nslots - 1, j = hh & mask;
        while (atomic_load_explicit(&ns[j], memory_order_relaxed) != EMPTY)
            j = (j + 1) & mask;
        atomic_store_explicit(&ns[j], (TAG_OF(hh) << OFF_BITS) | (used >> 3), memory_order_relaxed);
        used += sz;
        nlive += sz;
        n++;
    }
    atomic_store(&g->used, used);
    atomic_store(&g->count, n);
    atomic_store(&g->live, nlive);
    /* The commit: a reader that sees the new number maps a complete generation. A writer
     * killed before it leaves the old generation current and this file to be replaced. */
    atomic_store_explicit(&h->gen, gen, memory_order_release);
    if (!empty) atomic_fetch_add_explicit(&h->growths, 1, memory_order_relaxed);
    uint64_t prev = m->geo.gen;
    set_gen(m, nb, &ng);
    /* Not when the map was created anew during the copy (not ours), nor when that is not
     * known (a stat that failed): the file is then left to the map's removal. */
    if (still_named(m)) unlink_gen(m->name, prev);
    return 0;
}

/* --- writing ------------------------------------------------------------------------- */

/* Moves the line at p, just written, out of this CPU's own caches into the shared one
 * (CLDEMOTE; a no-op where the CPU lacks it, its encoding being a hint NOP), where a reader
 * on another CPU finds it sooner than in this CPU's cache. A get after a put of its key
 * misses twice, on the slot's line and on the new entry's: demoting both took a fifth off
 * what a put costs a reader running beside the writer here (134 to 108 ns). It costs the
 * writer about 100 ns a line when no reader takes the line meanwhile (15.5 M puts per
 * CPU-second to 5.0 M with its reader on its own CPU), so a writer demotes only after a
 * reader of another process made progress during its last batch (m->demote, set by
 * advance from the readers' counts), and only entries of up to 256 bytes. Spelled as
 * bytes, cldemote (%rax), for assemblers that do not know the name. */
static inline void demote(const void *p)
{
#if defined(__x86_64__)
    __asm__ __volatile__(".byte 0x0f, 0x1c, 0x00" ::"a"(p) : "memory");
#else
    (void)p;
#endif
}

/* After the lock came from a dead writer: rolls its recorded write forward (every field
 * absolute), evens the sequence, removes a generation it replaced but left behind. */
static void repair(shmrpc_map *m)
{
    struct map_hdr *h = m->hdr;
    struct gen_hdr *g = (struct gen_hdr *)m->base;
    if (atomic_load_explicit(&h->rec_state, memory_order_acquire) == REC_ACTIVE &&
        h->rec_gen == m->geo.gen) {
        uint64_t slot = h->rec_slot, word = h->rec_word, used = h->rec_used;
        if (slot < m->geo.nslots && used >= m->geo.arena_off && used <= m->geo.total) {
            atomic_store_explicit(&slots_of(m->base)[slot], word, memory_order_release);
            atomic_store(&g->used, used);
            atomic_store(&g->count, h->rec_count);
            atomic_store(&g->tombs, h->rec_tombs);
            atomic_store(&g->live, h->rec_live);
        }
    }
    atomic_store_explicit(&h->rec_state, REC_IDLE, memory_order_release);
    forget_space(m);
    uint64_t seq = atomic_load(&g->seq);
    if (seq & 1) atomic_store(&g->seq, seq + 1);
    if (m->geo.gen > m->first && still_named(m)) unlink_gen(m->name, m->geo.gen - 1);
    atomic_fetch_add_explicit(&h->repairs, 1, memory_order_relaxed);
    bump_changes(h);
}

/* Whether the mapped generation shows a write that its writer left unfinished: a record
 * active, a sequence odd, or blocks being moved. Only a writer that died (or one that the
 * lock was stolen from) leaves them so: the lock's holder finishes each before it returns. */
static bool left_unfinished(shmrpc_map *m)
{
    return atomic_load_explicit(&m->hdr->rec_state, memory_order_acquire) != REC_IDLE ||
           (atomic_load(&((struct gen_hdr *)m->base)->seq) & 1) ||
           atomic_load_explicit(&space_of(m->base, &m->geo)->moving, memory_order_acquire);
}

/* Takes the lock for a write (unless this thread holds it already) and maps the current
 * generation; repairs after a dead writer. *took says whether to release. A holder of a
 * batch (shmrpc_map_lock) that took the lock from a dead writer learnt so from the lock,
 * not the map: what that writer left unfinished says it here. */
static int begin_write(shmrpc_map *m, bool *took)
{
    *took = false;
    if (!shmrpc_lock_is_mine(m->lock)) {
        int rc = shmrpc_lock_acquire(m->lock, m->opts.lock_timeout_ms);
        if (rc != 0 && rc != SHMRPC_EOWNERDEAD) return rc; /* the lock said why */
        *took = true;
        int frc = follow(m);
        if (frc != 0) {
            shmrpc_lock_release(m->lock);
            return frc;
        }
        /* Unfinished without a death: the lock was stolen from a writer, or its file
         * replaced under it; roll it forward all the same. */
        bool unfinished = left_unfinished(m);
        if (probe_cut(m, false)) { /* zero pages, found by the looks above */
            shmrpc_lock_release(m->lock);
            return cut_fail(m);
        }
        if (rc == SHMRPC_EOWNERDEAD || unfinished) repair(m);
        return 0;
    }
    int rc = follow(m);
    bool unfinished = rc == 0 && left_unfinished(m);
    if (rc == 0 && probe_cut(m, false)) return cut_fail(m);
    if (unfinished) repair(m); /* the lock was stolen from, or handed over by, a dead writer */
    return rc;
}

static int end_write(shmrpc_map *m, bool took, int rc)
{
    if (took) shmrpc_lock_release(m->lock);
    return rc;
}

/* Applies one slot change through the redo record. */
static void apply(shmrpc_map *m, uint64_t slot, uint64_t word, uint64_t used, uint64_t count,
                  uint64_t tombs, uint64_t live)
{
    struct map_hdr *h = m->hdr;
    struct gen_hdr *g = (struct gen_hdr *)m->base;
    h->rec_gen = m->geo.gen;
    h->rec_slot = slot;
    h->rec_word = word;
    h->rec_used = used;
    h->rec_count = count;
    h->rec_tombs = tombs;
    h->rec_live = live;
    atomic_store_explicit(&h->rec_state, REC_ACTIVE, memory_order_release);
    uint64_t seq = atomic_load_explicit(&g->seq, memory_order_relaxed);
    atomic_store_explicit(&g->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&slots_of(m->base)[slot], word, memory_order_release);
    if (m->demote) demote(&slots_of(m->base)[slot]);
    atomic_store_explicit(&g->used, used, memory_order_relaxed);
    atomic_store_explicit(&g->count, count, memory_order_relaxed);
    atomic_store_explicit(&g->tombs, tombs, memory_order_relaxed);
    atomic_store_explicit(&g->live, live, memory_order_relaxed);
    atomic_store_explicit(&g->seq, seq + 2, memory_order_release);
    atomic_store_explicit(&h->rec_state, REC_IDLE, memory_order_release);
    atomic_fetch_add_explicit(&h->writes, 1, memory_order_relaxed);
    bump_changes(h);
}

enum put_how { PUT_ALWAYS, PUT_IF_ABSENT, PUT_IF_EQUAL };

static int check_kv(const void *key, size_t klen, const void *value, size_t vlen)
{
    if (!key && klen) return fail(SHMRPC_EINVAL, "key is NULL");
    if (!value && vlen) return fail(SHMRPC_EINVAL, "value is NULL");
    if (klen > SHMRPC_MAP_KEY_MAX)
        return fail(SHMRPC_EINVAL, "key of %zu bytes, more than %u", klen, SHMRPC_MAP_KEY_MAX);
    if (vlen > SHMRPC_MAP_VALUE_MAX)
        return fail(SHMRPC_EINVAL, "value of %zu bytes, more than %u", vlen, SHMRPC_MAP_VALUE_MAX);
    return 0;
}

static int put_locked(shmrpc_map *m, const void *key, size_t klen, uint64_t h, const void *value,
                      size_t vlen, enum put_how how, const void *expected, size_t elen)
{
    uint64_t need = block_size(klen, vlen);
    unsigned cls = size_class(need);
    for (int attempt = 0; attempt < 3; attempt++) {
        struct gen_hdr *g = (struct gen_hdr *)m->base;
        uint64_t at, w = 0, free_at = UINT64_MAX;
        int rc = find(m->base, &m->geo, key, klen, h, &at, &w, &free_at, NULL);
        if (rc == SHMRPC_EPROTO && free_at == UINT64_MAX && at == UINT64_MAX) {
            /* A full table (only a bad write makes one) or a bad entry: rebuild. */
            rc = grow(m, 1, need, false);
            if (rc != 0) return rc;
            continue;
        }
        if (rc == SHMRPC_EPROTO)
            return fail(SHMRPC_EPROTO, "map '%s': an entry on the key's way is out of bounds",
                        m->name);
        uint64_t old_size = 0;
        if (rc == 0) {
            uint32_t k, v;
            const struct entry *e = entry_at(m->base, &m->geo, w, &k, &v);
            if (!e)
                return fail(SHMRPC_EPROTO, "map '%s': the key's entry is out of bounds", m->name);
            old_size = block_size(k, v);
            if (how == PUT_IF_ABSENT) return fail(SHMRPC_EBUSY, "the key is present");
            if (how == PUT_IF_EQUAL &&
                (v != elen || memcmp((const uint8_t *)(e + 1) + k, expected, elen) != 0))
                return fail(SHMRPC_EBUSY, "the value differs from the expected one");
        } else if (how == PUT_IF_EQUAL) {
            return fail(SHMRPC_ENOENT, "no such key");
        }
        uint64_t used = atomic_load(&g->used), count = atomic_load(&g->count);
        uint64_t tombs = atomic_load(&g->tombs), live = atomic_load(&g->live);
        bool insert = rc != 0;
        bool reuse_tomb = insert && atomic_load_explicit(&slots_of(m->base)[free_at],
                                                         memory_order_relaxed) == TOMB;
        uint64_t filled = count + tombs + (insert && !reuse_tomb);
        bool full = filled * LOAD_DEN > m->geo.nslots * LOAD_NUM;
        /* A freed block of the class if there is one; else fresh space; else free what
         * readers let go of (twice: what was retired in the current epoch too) before
         * growing. */
        uint64_t off = full ? 0 : take_free(m, cls);
        if (!full && !off && (used + need > m->geo.total || used < m->geo.arena_off) &&
            advance_hard(m))
            off = take_free(m, cls);
        if (full || (!off && (used + need > m->geo.total || used < m->geo.arena_off))) {
            rc = grow(m, 1, need, false);
            if (rc != 0) return rc;
            continue;
        }
        uint64_t new_used = off ? used : used + need;
        if (!off) off = used;
        uint8_t *dst = m->base + off;
        struct entry eh = {(uint32_t)klen, (uint32_t)vlen, h};
        memcpy(dst, &eh, ENTRY_HEAD);
        memcpy(dst + ENTRY_HEAD, key, klen);
        if (vlen) memcpy(dst + ENTRY_HEAD + klen, value, vlen);
        if (m->demote && need <= 256) /* a large value's copy costs more than a miss */
            for (uint64_t l = 0; l < need; l += LINE)
                demote(dst + l);
        uint64_t word = (TAG_OF(h) << OFF_BITS) | (off >> 3);
        apply(m, insert ? free_at : at, word, new_used, count + insert, tombs - reuse_tomb,
              live - old_size + need);
        if (!insert) retire(m, w);
        return 0;
    }
    return fail(SHMRPC_EPROTO, "map '%s': no room after growing", m->name);
}

static int put_how(shmrpc_map *m, const void *key, size_t klen, const void *value, size_t vlen,
                   enum put_how how, const void *expected, size_t elen)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    int rc = check_kv(key, klen, value, vlen);
    if (rc == 0 && how == PUT_IF_EQUAL) rc = check_kv(key, klen, expected, elen);
    if (rc != 0) return rc;
    uint64_t h = hash_key(key, klen);
    bool took;
    rc = begin_write(m, &took);
    if (rc != 0) return rc;
    rc = end_write(m, took, put_locked(m, key, klen, h, value, vlen, how, expected, elen));
    return unless_cut(m, rc);
}

int shmrpc_map_put(shmrpc_map *m, const void *key, size_t klen, const void *value, size_t vlen)
{
    return put_how(m, key, klen, value, vlen, PUT_ALWAYS, NULL, 0);
}

int shmrpc_map_put_if_absent(shmrpc_map *m, const void *key, size_t klen, const void *value,
                             size_t vlen)
{
    return put_how(m, key, klen, value, vlen, PUT_IF_ABSENT, NULL, 0);
}

int shmrpc_map_cas(shmrpc_map *m, const void *key, size_t klen, const void *expected, size_t elen,
                   const void *value, size_t vlen)
{
    return put_how(m, key, klen, value, vlen, PUT_IF_EQUAL, expected, elen);
}

static int remove_locked(shmrpc_map *m, const void *key, size_t klen, uint64_t h)
{
    struct gen_hdr *g = (struct gen_hdr *)m->base;
    uint64_t at, w;
    int rc = find(m->base, &m->geo, key, klen, h, &at, &w, NULL, NULL);
    if (rc == SHMRPC_ENOENT) return fail(SHMRPC_ENOENT, "no such key");
    if (rc != 0) return fail(rc, "map '%s': an entry on the key's way is out of bounds", m->name);
    uint32_t k, v;
    if (!entry_at(m->base, &m->geo, w, &k, &v))
        return fail(SHMRPC_EPROTO, "map '%s': the key's entry is out of bounds", m->name);
    apply(m, at, TOMB, atomic_load(&g->used), atomic_load(&g->count) - 1,
          atomic_load(&g->tombs) + 1, atomic_load(&g->live) - block_size(k, v));
    retire(m, w);
    return 0;
}

int shmrpc_map_remove(shmrpc_map *m, const void *key, size_t klen)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    int rc = check_kv(key, klen, NULL, 0);
    if (rc != 0) return rc;
    uint64_t h = hash_key(key, klen);
    bool took;
    rc = begin_write(m, &took);
    if (rc != 0) return rc;
    return unless_cut(m, end_write(m, took, remove_locked(m, key, klen, h)));
}

int shmrpc_map_clear(shmrpc_map *m)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    bool took;
    int rc = begin_write(m, &took);
    if (rc != 0) return rc;
    rc = grow(m, 0, 0, true);
    if (rc == 0) {
        atomic_fetch_add_explicit(&m->hdr->writes, 1, memory_order_relaxed);
        bump_changes(m->hdr);
    }
    return unless_cut(m, end_write(m, took, rc));
}

/* --- reading ------------------------------------------------------------------------- */

static int lookup(shmrpc_map *m, const void *key, size_t klen, uint64_t *at, uint64_t *w,
                  const struct entry **e, uint32_t *k, uint32_t *v)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    if ((!key && klen) || klen > SHMRPC_MAP_KEY_MAX) return check_kv(key, klen, NULL, 0);
    int rc = enter_read(m, false);
    if (rc != 0) return rc;
    if (probe_cut(m, false)) {
        unpin(m);
        return cut_fail(m);
    }
    struct protect pr = read_protect(m);
    rc =
        find(m->base, &m->geo, key, klen, hash_key(key, klen), at, w, NULL, pr.hazard ? &pr : NULL);
    if (rc == 0) {
        *e = entry_at(m->base, &m->geo, *w, k, v);
        if (*e) return 0;
        rc = SHMRPC_EPROTO;
    }
    unpin(m);
    if (cut(m)) return cut_fail(m); /* found nothing in zero pages */
    if (rc == SHMRPC_ENOENT) return fail(SHMRPC_ENOENT, "no such key");
    return fail(rc, "map '%s': an entry on the key's way is out of bounds", m->name);
}

int shmrpc_map_get(shmrpc_map *m, const void *key, size_t klen, void *buf, size_t cap, size_t *len)
{
    uint64_t at, w;
    const struct entry *e;
    uint32_t k = 0, v = 0; /* set by lookup when it succeeds (gcc -O3 cannot tell) */
    int rc = lookup(m, key, klen, &at, &w, &e, &k, &v);
    if (rc != 0) return rc;
    if (len) *len = v;
    if (v <= cap && v) memcpy(buf, (const uint8_t *)(e + 1) + k, v);
    unpin(m);
    if (cut(m)) { /* what was copied may be the zero pages' */
        if (len) *len = 0;
        return cut_fail(m);
    }
    if (v > cap) return fail(SHMRPC_ETOOBIG, "the value has %u bytes, the buffer %zu", v, cap);
    return 0;
}

int shmrpc_map_get_view(shmrpc_map *m, const void *key, size_t klen, shmrpc_map_view *view)
{
    if (!view) return fail(SHMRPC_EINVAL, "no view");
    uint64_t at, w;
    const struct entry *e;
    uint32_t k = 0, v = 0;
    int rc = lookup(m, key, klen, &at, &w, &e, &k, &v);
    if (rc != 0) return rc;
    if (cut(m)) {
        unpin(m);
        return cut_fail(m);
    }
    view->data = (const uint8_t *)(e + 1) + k;
    view->len = v;
    view->gen = m->geo.gen;
    view->slot = at;
    view->word = w;
    return 0; /* the handle holds the read until its next call */
}

bool shmrpc_map_view_current(shmrpc_map *m, const shmrpc_map_view *v)
{
    if (!m || !v || !m->base || cut(m)) return false;
    if (atomic_load_explicit(&m->hdr->gen, memory_order_acquire) != v->gen || m->geo.gen != v->gen)
        return false;
    if (v->slot >= m->geo.nslots) return false;
    return atomic_load_explicit(&slots_of(m->base)[v->slot], memory_order_acquire) == v->word;
}

int shmrpc_map_size(shmrpc_map *m, uint64_t *count)
{
    if (!m || !count) return fail(SHMRPC_EINVAL, m ? "no place for the count" : "no map");
    int rc = sync_gen(m);
    if (rc != 0) return rc;
    *count = atomic_load(&((struct gen_hdr *)m->base)->count);
    return probe_cut(m, false) ? cut_fail(m) : 0;
}

/* A snapshot: the entries copied into one buffer, each as struct entry + bytes. */
struct snap {
    uint8_t *buf;
    size_t len, cap;
};

static int snap_copy(shmrpc_map *m, struct snap *s)
{
    s->len = 0;
    _Atomic uint64_t *slots = slots_of(m->base);
    for (uint64_t i = 0; i < m->geo.nslots; i++) {
        uint64_t w = atomic_load_explicit(&slots[i], memory_order_acquire);
        if (w == EMPTY || w == TOMB) continue;
        uint32_t k, v;
        const struct entry *e = entry_at(m->base, &m->geo, w, &k, &v);
        if (!e) return SHMRPC_EPROTO;
        size_t sz = (size_t)entry_size(k, v);
        if (s->len + sz > s->cap) {
            size_t nc = s->cap ? s->cap * 2 : 4096;
            while (nc < s->len + sz)
                nc *= 2;
            uint8_t *nb = realloc(s->buf, nc);
            if (!nb) return fail(SHMRPC_ENOMEM, "out of memory for a snapshot");
            s->buf = nb;
            s->cap = nc;
        }
        struct entry eh = {k, v, 0};
        memcpy(s->buf + s->len, &eh, ENTRY_HEAD);
        memcpy(s->buf + s->len + ENTRY_HEAD, e + 1, (size_t)k + v);
        s->len += sz;
    }
    return 0;
}

static int take_snapshot(shmrpc_map *m, struct snap *s)
{
    for (int t = 0; t < SNAPSHOT_TRIES; t++) {
        int rc = enter_read(m, true);
        if (rc != 0) return rc;
        struct gen_hdr *g = (struct gen_hdr *)m->base;
        uint64_t s1 = atomic_load_explicit(&g->seq, memory_order_acquire);
        if (s1 & 1) {
            unpin(m);
            continue;
        }
        rc = snap_copy(m, s);
        atomic_thread_fence(memory_order_acquire);
        bool same = atomic_load_explicit(&g->seq, memory_order_relaxed) == s1;
        unpin(m);
        if (rc == SHMRPC_ENOMEM) return rc;
        if (rc == 0 && same) return 0;
    }
    /* Writers kept changing it: copy under the lock. */
    bool took;
    int rc = begin_write(m, &took);
    if (rc != 0) return rc;
    rc = snap_copy(m, s);
    if (rc == SHMRPC_EPROTO)
        rc = fail(rc, "map '%s': an entry is out of bounds (shmrpc_map_check tells more)", m->name);
    return end_write(m, took, rc);
}

int shmrpc_map_iterate(shmrpc_map *m, shmrpc_map_iter_fn fn, void *arg)
{
    if (!m || !fn) return fail(SHMRPC_EINVAL, m ? "no function" : "no map");
    struct snap s = {0};
    int rc = take_snapshot(m, &s);
    if (cut(m)) rc = cut_fail(m); /* the entries are the zero pages': none to show */
    for (size_t off = 0; rc == 0 && off < s.len;) {
        struct entry eh;
        memcpy(&eh, s.buf + off, ENTRY_HEAD);
        const uint8_t *kp = s.buf + off + ENTRY_HEAD;
        rc = fn(arg, kp, eh.klen, kp + eh.klen, eh.vlen);
        off += (size_t)entry_size(eh.klen, eh.vlen);
    }
    free(s.buf);
    return unless_cut(m, rc);
}

int shmrpc_map_changes(shmrpc_map *m, uint64_t *count)
{
    if (!m || !count) return fail(SHMRPC_EINVAL, m ? "no place for the count" : "no map");
    *count = atomic_load_explicit(&m->hdr->changes, memory_order_acquire);
    return unless_cut(m, 0);
}

int shmrpc_map_wait(shmrpc_map *m, uint64_t since, uint64_t *now, int64_t timeout_ms)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    if (timeout_ms < 0 && timeout_ms != SHMRPC_MAP_WAIT_FOREVER)
        return fail(SHMRPC_EINVAL, "negative timeout %" PRId64 " ms", timeout_ms);
    unpin(m); /* a view held would keep writers from reusing space while this sleeps */
    struct map_hdr *h = m->hdr;
    int64_t deadline = timeout_ms < 0 || timeout_ms > INT64_MAX / 2000000
                           ? INT64_MAX
                           : shmrpc__now_ns() + timeout_ms * 1000000;
    const shmrpc__waiter waiter = {.opts = &m->opts.wait,
                                   .flag = CHANGE_WAITERS,
                                   .check_ns = m->opts.wait.sleep_ns,
                                   .check = wait_check,
                                   .check_arg = m};
    for (;;) {
        uint32_t word = atomic_load_explicit(&h->change.word, memory_order_acquire);
        uint64_t c = atomic_load_explicit(&h->changes, memory_order_acquire);
        if (cut(m)) return cut_fail(m); /* zero pages: no change will ever come */
        if (c != since) {
            if (now) *now = c;
            return 0;
        }
        if (shmrpc__now_ns() >= deadline)
            return fail(SHMRPC_ETIMEDOUT, "map '%s' did not change within %" PRId64 " ms", m->name,
                        timeout_ms);
        int rc = shmrpc__wait_while(&h->change, word, deadline, &waiter);
        if (rc == SHMRPC_ECUT) return cut_fail(m);
        if (rc != 0 && rc != SHMRPC_ETIMEDOUT) return fail(rc, "waiting for a change failed");
    }
}

shmrpc_lock *shmrpc_map_lock(shmrpc_map *m)
{
    return m ? m->lock : NULL;
}

int shmrpc_map_get_info(shmrpc_map *m, shmrpc_map_info *out)
{
    if (!m || !out) return fail(SHMRPC_EINVAL, m ? "no place for the info" : "no map");
    int rc = sync_gen(m);
    if (rc != 0) return rc;
    const struct gen_hdr *g = (const struct gen_hdr *)m->base;
    const struct map_hdr *h = m->hdr;
    memset(out, 0, sizeof *out);
    if (probe_cut(m, false)) return cut_fail(m);
    out->generation = shmrpc__map_shown_gen(m->geo.gen, m->first);
    out->count = atomic_load(&g->count);
    out->slots = m->geo.nslots;
    out->tombstones = atomic_load(&g->tombs);
    out->bytes = m->geo.total - m->geo.arena_off;
    out->used = atomic_load(&g->used) - m->geo.arena_off;
    out->live = atomic_load(&g->live);
    out->changes = atomic_load(&h->changes);
    out->writes = atomic_load(&h->writes);
    out->growths = atomic_load(&h->growths);
    out->repairs = atomic_load(&h->repairs);
    shmrpc_lock_stats ls;
    if (shmrpc_lock_get_stats(m->lock, &ls) == 0) out->lock_waits = ls.contended;
    out->creator = (pid_t)h->creator;
    out->reads = atomic_load_explicit(&h->reads_gone, memory_order_relaxed) + m->unprot_reads;
    for (int i = 0; i < MAP_READERS; i++)
        if (atomic_load_explicit(&h->readers[i].owner, memory_order_relaxed))
            out->reads += atomic_load_explicit(&h->readers[i].reads, memory_order_relaxed);
    out->type = m->type;
    return 0;
}

int shmrpc_map_print_status(shmrpc_map *m, FILE *f)
{
    shmrpc_map_info i;
    int rc = shmrpc_map_get_info(m, &i);
    if (rc != 0) return rc;
    if (!f) return fail(SHMRPC_EINVAL, "no file");
    fprintf(f,
            "map: %s\ngeneration: %" PRIu64 "\nkeys: %" PRIu64 "\nslots: %" PRIu64
            "\ntombstones: %" PRIu64 "\nbytes: %" PRIu64 "\nused: %" PRIu64 "\nlive: %" PRIu64
            "\nchanges: %" PRIu64 "\nwrites: %" PRIu64 "\ngrowths: %" PRIu64 "\nrepairs: %" PRIu64
            "\nlock_waits: %" PRIu64 "\nreads: %" PRIu64 "\ncreator: %d\n",
            m->name, i.generation, i.count, i.slots, i.tombstones, i.bytes, i.used, i.live,
            i.changes, i.writes, i.growths, i.repairs, i.lock_waits, i.reads, (int)i.creator);
    return 0;
}

int shmrpc_map_check(shmrpc_map *m)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    int rc = sync_gen(m);
    if (rc != 0) return rc;
    char why[256];
    rc = shmrpc__map_check_seg(m->base, &m->geo, why, sizeof why);
    if (cut(m)) return cut_fail(m);
    if (rc != 0)
        return fail(rc, "map '%s' generation %" PRIu64 ": %s", m->name,
                    shmrpc__map_shown_gen(m->geo.gen, m->first), why);
    return 0;
}

/* --- auto_unlink --------------------------------------------------------------------- */

/* Maps that their creating process removes at exit, unless closed first. */
struct doomed {
    struct doomed *next;
    pid_t pid; /* a forked child inherits the list, not the duty */
    dev_t dev; /* the header it created: a map that replaced it under the name is not its */
    ino_t ino;
    char name[SHMRPC_MAP_NAME_MAX + 1];
};
static pthread_mutex_t doomed_mu = PTHREAD_MUTEX_INITIALIZER;
static struct doomed *doomed_list;
static bool doomed_hooked;

/* At exit: the maps this process created with auto_unlink, while their names still lead
 * to them. One whose name cannot be looked at (a stat that fails), or whose generations
 * cannot be listed, is left, as a removal that could take another's map is not made. */
static void unlink_doomed(void)
{
    pthread_mutex_lock(&doomed_mu);
    for (struct doomed *d = doomed_list; d; d = d->next)
        if (d->pid == getpid() && names_header(d->name, d->dev, d->ino))
            shmrpc_map_unlink_quiet(d->name);
    pthread_mutex_unlock(&doomed_mu);
}

/* False when out of memory: nothing would remove the map at exit. */
static bool doom(const char *name, dev_t dev, ino_t ino)
{
    struct doomed *d = calloc(1, sizeof *d);
    if (!d) return false;
    d->pid = getpid();
    d->dev = dev;
    d->ino = ino;
    snprintf(d->name, sizeof d->name, "%s", name);
    pthread_mutex_lock(&doomed_mu);
    d->next = doomed_list;
    doomed_list = d;
    if (!doomed_hooked) doomed_hooked = atexit(unlink_doomed) == 0;
    pthread_mutex_unlock(&doomed_mu);
    return true;
}

static void spare(const char *name)
{
    pthread_mutex_lock(&doomed_mu);
    for (struct doomed **p = &doomed_list; *p; p = &(*p)->next)
        if (strcmp((*p)->name, name) == 0 && (*p)->pid == getpid()) {
            struct doomed *d = *p;
            *p = d->next;
            free(d);
            break;
        }
    pthread_mutex_unlock(&doomed_mu);
}

/* --- opening ------------------------------------------------------------------------- */

void shmrpc_map_opts_init(shmrpc_map_opts *o)
{
    memset(o, 0, sizeof *o);
    o->mode = SHMRPC_MAP_CONNECT_OR_CREATE;
    o->initial_slots = DEFAULT_SLOTS;
    o->initial_bytes = DEFAULT_BYTES;
    o->max_bytes = DEFAULT_MAX_BYTES;
    o->auto_unlink = false;
    o->lock_timeout_ms = DEFAULT_LOCK_TIMEOUT_MS;
    o->perms = 0600;
    shmrpc_wait_opts_init(&o->wait);
}

static int check_opts(const shmrpc_map_opts *o)
{
    int rc = shmrpc__seg_check_mode("map", (int)o->mode, SHMRPC_MAP_CREATE_NEW_EXCLUSIVE, o->perms);
    if (rc != 0) return rc;
    if (o->initial_slots < 8 || o->initial_slots > MAX_SLOTS / 2)
        return fail(SHMRPC_EINVAL, "initial_slots %u outside [8, 2^30]", o->initial_slots);
    if (o->initial_bytes < 4096 || o->max_bytes < o->initial_bytes ||
        o->max_bytes > (OFF_MASK << 3) / 2)
        return fail(SHMRPC_EINVAL,
                    "initial_bytes %" PRIu64 " and max_bytes %" PRIu64
                    ": want 4096 <= initial_bytes <= max_bytes <= 2^42",
                    o->initial_bytes, o->max_bytes);
    if (o->lock_timeout_ms < 0 && o->lock_timeout_ms != SHMRPC_MAP_WAIT_FOREVER)
        return fail(SHMRPC_EINVAL, "negative lock timeout");
    size_t tlen = o->type ? strlen(o->type) : 0;
    if (tlen > SHMRPC_MAP_TYPE_MAX)
        return fail(SHMRPC_EINVAL, "map type signature of %zu bytes is above %u", tlen,
                    SHMRPC_MAP_TYPE_MAX);
    return 0;
}

static int open_lock_of(shmrpc_map *m)
{
    char ln[SHMRPC_LOCK_NAME_MAX + 1];
    lock_name(ln, m->name);
    shmrpc_lock_opts lo;
    shmrpc_lock_opts_init(&lo);
    lo.perms = m->opts.perms;
    lo.wait = m->opts.wait;
    return shmrpc_lock_open(&m->lock, ln, &lo);
}

/* The number of a new map's first generation: the time in microseconds (2^53 in the year
 * 2255, so that JSON's readers read it whole). A handle on a map of this name created
 * earlier numbered its first from its creation's time, T, and growth k, which began more
 * than k microseconds after T (making a generation takes longer than one), T + k: below
 * this, as long as the growth began before this creation, and a growth that begins after
 * it finds the name no longer its map's (still_named). Unless the clock was set back
 * between the two creations by more than the time between them. */
static uint64_t first_number(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || ts.tv_sec <= 0) return 1;
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Creates the header, the lock and the first generation; SHMRPC_ESYS(EEXIST) silently. */
static int create_map(shmrpc_map *m)
{
    char path[PATH_CAP];
    hdr_path(path, m->name);
    void *p;
    size_t tlen = strlen(m->want);
    struct stat st;
    /* The number before the header: a map that replaces this one (an overwrite unlinks
     * this header first) takes its own after, so never a smaller one. */
    uint64_t first = first_number();
    int rc = create_file(path, m->name, m->opts.perms, HDR_SIZE + tlen, &p, &st);
    if (rc != 0) return rc;
    m->hdr = p;
    m->hdr_dev = st.st_dev;
    m->hdr_ino = st.st_ino;
    m->hdr_len = HDR_SIZE + tlen;
    struct map_hdr *h = p;
    h->version = MAP_VERSION;
    h->size = (uint32_t)HDR_SIZE;
    h->type_len = (uint32_t)tlen;
    memcpy((char *)p + HDR_SIZE, m->want, tlen);
    h->creator = (uint32_t)getpid();
    m->init_slots = h->init_slots = pow2_at_least(m->opts.initial_slots);
    m->init_bytes = h->init_bytes = (m->opts.initial_bytes + 4095) & ~UINT64_C(4095);
    m->max_bytes = h->max_bytes =
        m->opts.max_bytes < m->init_bytes ? m->init_bytes : m->opts.max_bytes;
    m->first = h->first = first;
    /* The lock of an earlier map of this name, if its unlink died before removing it, is
     * taken over as it is (a dead holder's is repaired at the first write): removing it here,
     * with the header visible, could remove that of a map that replaced this one meanwhile. */
    rc = open_lock_of(m);
    uint8_t *base = NULL;
    shmrpc__map_geo geo;
    /* Its first generation replaces no file: one of its number is of another map of this
     * name, made within the same microsecond (one that replaced this one meanwhile). */
    if (rc == 0) rc = build_gen(m, m->first, 1, m->init_slots, m->init_bytes, true, &base, &geo);
    if (rc != 0) {
        /* Not the lock, which another opener of the name may have taken already (for a map
         * it makes once this header is gone): the next map of the name takes it over, and
         * shmrpc_map_unlink removes it. */
        if (still_named(m)) shm_unlink(path);
        munmap(p, m->hdr_len);
        m->hdr = NULL;
        shmrpc_lock_close(m->lock);
        m->lock = NULL;
        return rc;
    }
    set_gen(m, base, &geo);
    m->hdr_guard = shmrpc__seg_guard(p, m->hdr_len);
    m->hdr_cut = shmrpc__seg_guard_flag(m->hdr_guard);
    atomic_store(&h->gen, m->first);
    atomic_store_explicit(&h->magic, HDR_MAGIC, memory_order_release);
    m->created = true;
    m->creator = getpid();
    return 0;
}

/* Takes the type stored in an existing map, refusing a map of another type than the one
 * this open names. */
static int copy_type(shmrpc_map *m, const char *stored, uint32_t tlen, char **out)
{
    char *t = malloc((size_t)tlen + 1);
    if (!t) return fail(SHMRPC_ENOMEM, "out of memory");
    memcpy(t, stored, tlen);
    t[tlen] = '\0';
    const char *want = m->want;
    if (*want && (strlen(t) != tlen || strcmp(want, t) != 0)) {
        int rc = fail(SHMRPC_EPROTO, "map '%s' holds %s%s, not %s", m->name,
                      tlen ? "" : "untyped entries", t, want);
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

static int attach_map(shmrpc_map *m)
{
    char path[PATH_CAP];
    hdr_path(path, m->name);
    int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT) return fail(SHMRPC_ENOENT, "no map '%s' (%s%s)", m->name, SHM_DIR, path);
        return fail(SHMRPC_ESYS(err), "cannot open map '%s' (%s%s): %s", m->name, SHM_DIR, path,
                    syserr(err));
    }
    off_t size = 0;
    int rc = 0;
    int64_t give_up = shmrpc__now_ns() + INIT_WAIT_NS;
    for (;;) {
        rc = check_owner(fd, m->name, m->opts.perms, &size);
        if (rc != 0 || size != 0 || shmrpc__now_ns() >= give_up) break;
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    struct stat st;
    if (fstat(fd, &st) == 0) {
        m->cut_dev = st.st_dev;
        m->cut_ino = st.st_ino;
        m->cut_gen = 0;
    }
    /* A creator sizes it right after it makes it: smaller, it was cut (or, at 0 bytes, its
     * creator may have died before sizing it: it is made anew all the same). */
    if (rc == 0 && size < (off_t)HDR_SIZE)
        rc = fail(SHMRPC_ECUT,
                  "map '%s' (%s%s) was cut to %lld bytes, less than a header (%zu)%s; opening it "
                  "with create makes it anew",
                  m->name, SHM_DIR, path, (long long)size, HDR_SIZE,
                  size ? "" : ", or its creator died before sizing it");
    if (rc == 0 && size > (off_t)(HDR_SIZE + SHMRPC_MAP_TYPE_MAX))
        rc = fail(SHMRPC_EPROTO, "'%s' is not a map (%s%s has %lld bytes, a header %zu)", m->name,
                  SHM_DIR, path, (long long)size, HDR_SIZE);
    void *p = MAP_FAILED;
    size_t plen = (size_t)size;
    if (rc == 0) {
        p = mmap(NULL, plen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int err = errno;
            rc = fail(SHMRPC_ESYS(err), "cannot map map '%s': %s", m->name, syserr(err));
        }
    }
    if (rc == 0) {
        m->hdr_dev = st.st_dev;
        m->hdr_ino = st.st_ino;
    }
    close(fd);
    if (rc != 0) return rc;
    struct map_hdr *h = p;
    uint32_t magic;
    while ((magic = atomic_load_explicit(&h->magic, memory_order_acquire)) == 0 &&
           shmrpc__now_ns() < give_up) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    uint32_t version = h->version, hsize = h->size, tlen = h->type_len;
    uint64_t is = h->init_slots, ib = h->init_bytes, mb = h->max_bytes, first = h->first;
    uint64_t gen = atomic_load_explicit(&h->gen, memory_order_acquire);
    uint32_t creator = h->creator;
    if (magic == 0 && (creator == 0 || (kill((pid_t)creator, 0) != 0 && errno == ESRCH))) {
        /* Half-made by a creator now gone (its pid is written before the rest): stale, as a
         * cut one is, so that an open with create makes it anew (remove_cut), with the one
         * generation it may have made. */
        m->cut_gen = first;
        rc = fail(SHMRPC_ECUT,
                  "map '%s' was never initialised: its creator (pid %u) died making it; opening "
                  "it with create makes it anew",
                  m->name, creator);
    } else if (magic == 0)
        rc = fail(SHMRPC_EPROTO,
                  "map '%s' was never initialised (its creator died?); CREATE_NEW_OVERWRITE or "
                  "shmrpc_map_unlink replaces it",
                  m->name);
    else if (magic != HDR_MAGIC || hsize != HDR_SIZE)
        rc =
            fail(SHMRPC_EPROTO, "'%s' is not a map (magic 0x%08x, size %u)", m->name, magic, hsize);
    else if (version != MAP_VERSION)
        rc = fail(SHMRPC_EVERSION, "map '%s' has layout version %u, this library %u", m->name,
                  version, MAP_VERSION);
    else if (is < 8 || is > MAX_SLOTS / 2 || (is & (is - 1)) || ib < 4096 || mb < ib ||
             mb > (OFF_MASK << 3) / 2)
        rc = fail(SHMRPC_EPROTO,
                  "map '%s' has a corrupt header (geometry %" PRIu64 " slots, %" PRIu64 "..%" PRIu64
                  " bytes)",
                  m->name, is, ib, mb);
    else if (first > gen)
        rc = fail(SHMRPC_EPROTO,
                  "map '%s' has a corrupt header (its first generation, %" PRIu64
                  ", after its current, %" PRIu64 ")",
                  m->name, first, gen);
    else if ((size_t)HDR_SIZE + tlen > plen)
        rc = fail(SHMRPC_ECUT,
                  "map '%s' (%s%s) was cut to %zu bytes, its header and type are %zu; opening it "
                  "with create makes it anew",
                  m->name, SHM_DIR, path, plen, (size_t)HDR_SIZE + tlen);
    else if ((size_t)HDR_SIZE + tlen != plen)
        rc = fail(SHMRPC_EPROTO,
                  "map '%s' has a corrupt header (a type of %u bytes in a segment of %zu)", m->name,
                  tlen, plen);
    char *type = NULL;
    if (rc == 0) rc = copy_type(m, (const char *)p + HDR_SIZE, tlen, &type);
    if (rc != 0) {
        munmap(p, plen);
        return rc;
    }
    m->hdr = h;
    m->hdr_len = plen;
    m->init_slots = is;
    m->init_bytes = ib;
    m->max_bytes = mb;
    m->first = first ? first : 1;
    m->hdr_guard = shmrpc__seg_guard(p, plen);
    m->hdr_cut = shmrpc__seg_guard_flag(m->hdr_guard);
    rc = open_lock_of(m);
    if (rc == 0) rc = follow(m);
    if (rc != 0) {
        shmrpc__seg_unguard(m->hdr_guard);
        m->hdr_guard = -1;
        m->hdr_cut = shmrpc__seg_guard_flag(-1);
        munmap(p, plen);
        m->hdr = NULL;
        free(type);
        return rc;
    }
    free(m->type);
    m->type = type;
    return 0;
}

static void unlink_gens(const char *name, uint64_t below);

/* Removes the map that attach_map found cut (its header's file, while the name still
 * leads to it, as a stale queue is removed; and the generation file that was cut, whose
 * number no map made after it takes), so that the next create makes it anew. Its holders
 * keep their mappings, and SHMRPC_ECUT. False when it could not be removed (the same file
 * found cut again: another user's, which this one may not unlink). */
static bool remove_cut(shmrpc_map *m)
{
    char path[PATH_CAP];
    hdr_path(path, m->name);
    if (m->cut_dev == m->removed_dev && m->cut_ino == m->removed_ino) return false;
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_dev = m->cut_dev;
    st.st_ino = m->cut_ino;
    m->removed_dev = m->cut_dev;
    m->removed_ino = m->cut_ino;
    /* A map made after the removal numbers its generations from a time after this one. */
    uint64_t before = first_number();
    if (shmrpc__seg_remove_stale(path, &st)) {
        if (m->cut_gen)
            unlink_gen(m->name, m->cut_gen);
        else
            unlink_gens(m->name, before); /* the header was cut: which they were is gone */
    }
    shmrpc_lock_close(m->lock); /* opened by attach_map: the next open opens it again */
    m->lock = NULL;
    return true;
}

static int open_map(shmrpc_map *m)
{
    switch (m->opts.mode) {
    case SHMRPC_MAP_CONNECT_TO_EXISTING:
        return attach_map(m);
    case SHMRPC_MAP_CREATE_NEW_EXCLUSIVE: {
        int rc = create_map(m);
        if (rc == SHMRPC_ESYS(EEXIST))
            return fail(SHMRPC_EBUSY, "map '%s' already exists (%s%s%s)", m->name, SHM_DIR,
                        HDR_PREFIX, m->name);
        return rc;
    }
    case SHMRPC_MAP_CREATE_NEW_OVERWRITE:
        for (int i = 0; i < OPEN_ATTEMPTS; i++) {
            int rc = shmrpc_map_unlink(m->name);
            if (rc != 0 && rc != SHMRPC_ENOENT) return rc;
            rc = create_map(m);
            if (rc != SHMRPC_ESYS(EEXIST)) return rc;
        }
        return fail(SHMRPC_EBUSY, "map '%s' keeps being recreated by others", m->name);
    case SHMRPC_MAP_CONNECT_OR_CREATE:
    default:
        for (int i = 0; i < OPEN_ATTEMPTS; i++) {
            int rc = create_map(m);
            if (rc != SHMRPC_ESYS(EEXIST)) return rc;
            rc = attach_map(m);
            if (rc == SHMRPC_ECUT && !remove_cut(m)) return rc;
            if (rc != SHMRPC_ENOENT && rc != SHMRPC_ECUT) return rc;
        }
        return fail(SHMRPC_EBUSY, "map '%s' keeps being removed and recreated by others", m->name);
    }
}

int shmrpc_map_open(shmrpc_map **out, const char *name, const shmrpc_map_opts *o)
{
    if (!out) return fail(SHMRPC_EINVAL, "out is NULL");
    *out = NULL;
    shmrpc_map_opts defaults;
    if (!o) {
        shmrpc_map_opts_init(&defaults);
        o = &defaults;
    }
    int rc = check_name(name);
    if (rc == 0) rc = check_opts(o);
    if (rc != 0) return rc;
    shmrpc_map *m = calloc(1, sizeof *m);
    if (!m) return fail(SHMRPC_ENOMEM, "out of memory");
    m->hdr_guard = m->gen_guard = -1;
    m->hdr_cut = m->gen_cut = shmrpc__seg_guard_flag(-1);
    m->opts = *o;
    /* The caller's string need not outlive the open. */
    m->want = strdup(o->type ? o->type : "");
    m->type = strdup(m->want ? m->want : "");
    m->opts.type = m->want;
    snprintf(m->name, sizeof m->name, "%s", name);
    shmrpc__err_begin();
    rc = m->want && m->type ? open_map(m) : fail(SHMRPC_ENOMEM, "out of memory");
    if (rc != 0) {
        shmrpc_lock_close(m->lock);
        shmrpc__seg_unguard(m->gen_guard);
        if (m->base) munmap(m->base, m->geo.total);
        free(m->type);
        free(m->want);
        free(m);
        return shmrpc__err_end(rc);
    }
    if (m->created && o->auto_unlink && !doom(m->name, m->hdr_dev, m->hdr_ino)) {
        shmrpc_map_close(m); /* which removes it, as its creator's close does */
        return shmrpc__err_end(fail(SHMRPC_ENOMEM, "out of memory"));
    }
    *out = m;
    return shmrpc__err_end(0);
}

void shmrpc_map_close(shmrpc_map *m)
{
    if (!m) return;
    if (m->created && m->opts.auto_unlink && m->creator == getpid()) { /* not a forked child */
        spare(m->name);
        if (still_named(m)) shmrpc_map_unlink_quiet(m->name);
    }
    if (m->base) unpin(m);
    release_slot(m);
    if (m->unprot_reads)
        atomic_fetch_add_explicit(&m->hdr->reads_gone, m->unprot_reads, memory_order_relaxed);
    shmrpc__seg_unguard(m->gen_guard);
    shmrpc__seg_unguard(m->hdr_guard);
    if (m->base) munmap(m->base, m->geo.total);
    munmap(m->hdr, m->hdr_len);
    shmrpc_lock_close(m->lock);
    free(m->type);
    free(m->want);
    free(m);
}

/* Removes every generation file of the map numbered below below, listed from d (/dev/shm,
 * closed here): whatever number a dead writer left. */
static void unlink_gens_in(DIR *d, const char *name, uint64_t below)
{
    char prefix[PATH_CAP];
    int n = snprintf(prefix, sizeof prefix, "%s%s.", &GEN_PREFIX[1], name);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, prefix, (size_t)n) != 0) continue;
        const char *rest = de->d_name + n;
        if (!*rest || strspn(rest, "0123456789") != strlen(rest)) continue;
        if (strtoull(rest, NULL, 10) >= below) continue;
        char path[sizeof de->d_name + 2];
        snprintf(path, sizeof path, "/%s", de->d_name);
        shm_unlink(path);
    }
    closedir(d);
}

static void unlink_gens(const char *name, uint64_t below)
{
    DIR *d = opendir(SHM_DIR);
    if (d) unlink_gens_in(d, name, below);
}

int shmrpc_map_unlink(const char *name)
{
    int rc = check_name(name);
    if (rc != 0) return rc;
    char path[PATH_CAP], ln[SHMRPC_LOCK_NAME_MAX + 1];
    hdr_path(path, name);
    /* The list of generations first: a header removed without its generations would leave
     * them behind, found only by the removal of a later map of the name. */
    DIR *d = opendir(SHM_DIR);
    if (!d) {
        int err = errno;
        return fail(SHMRPC_ESYS(err), "cannot remove map '%s': cannot list %s: %s", name, SHM_DIR,
                    syserr(err));
    }
    int err = shm_unlink(path) == 0 ? 0 : errno;
    unlink_gens_in(d, name, UINT64_MAX);
    lock_name(ln, name);
    shmrpc_lock_unlink(ln);
    if (err == ENOENT) return fail(SHMRPC_ENOENT, "no map '%s'", name);
    if (err) return fail(SHMRPC_ESYS(err), "cannot remove map '%s': %s", name, syserr(err));
    return 0;
}

void shmrpc_map_unlink_quiet(const char *name)
{
    shmrpc__err_begin();
    shmrpc_map_unlink(name);
    shmrpc__err_end(0);
}

/* --- for the admin API (map_seg.h) ----------------------------------------------------- */

_Static_assert(HDR_SIZE == SHMRPC__MAP_HDR_SIZE && HEAD_SIZE == SHMRPC__MAP_GEN_HEAD, "layout");

void shmrpc__map_read_head(const void *hdr, shmrpc__map_head *out)
{
    const struct map_hdr *h = hdr;
    memset(out, 0, sizeof *out);
    out->magic = atomic_load_explicit(&h->magic, memory_order_acquire);
    out->version = h->version;
    out->ours = out->magic == HDR_MAGIC && out->version == MAP_VERSION && h->size == HDR_SIZE;
    uint32_t pid = h->creator;
    out->creator = pid <= INT32_MAX ? (int32_t)pid : 0;
    if (!out->ours) return;
    out->gen = atomic_load_explicit(&h->gen, memory_order_acquire);
    out->first = h->first ? h->first : 1;
    out->changes = atomic_load_explicit(&h->changes, memory_order_relaxed);
    out->writes = atomic_load_explicit(&h->writes, memory_order_relaxed);
    out->growths = atomic_load_explicit(&h->growths, memory_order_relaxed);
    out->repairs = atomic_load_explicit(&h->repairs, memory_order_relaxed);
    out->reads = atomic_load_explicit(&h->reads_gone, memory_order_relaxed);
    for (int i = 0; i < MAP_READERS; i++)
        if (atomic_load_explicit(&h->readers[i].owner, memory_order_relaxed))
            out->reads += atomic_load_explicit(&h->readers[i].reads, memory_order_relaxed);
}

int shmrpc__map_read_gen(const void *head, uint64_t size, shmrpc_map_info *info, char *why,
                         size_t cap)
{
    shmrpc__map_geo geo;
    const struct gen_hdr *g = head;
    uint64_t said = g->total;
    char no[8];
    if (said > size && shmrpc__map_validate(head, said, &geo, no, sizeof no) == 0) {
        snprintf(why, cap, "cut to %" PRIu64 " bytes under its holders (its head says %" PRIu64 ")",
                 size, said);
        return SHMRPC_ECUT;
    }
    int rc = shmrpc__map_validate(head, size, &geo, why, cap); /* reads the head alone */
    if (rc != 0) return rc;
    uint64_t used = atomic_load_explicit(&g->used, memory_order_relaxed);
    info->generation = geo.gen;
    info->count = atomic_load_explicit(&g->count, memory_order_relaxed);
    info->slots = geo.nslots;
    info->tombstones = atomic_load_explicit(&g->tombs, memory_order_relaxed);
    info->bytes = geo.total - geo.arena_off;
    info->used = used > geo.arena_off && used <= geo.total ? used - geo.arena_off : 0;
    info->live = atomic_load_explicit(&g->live, memory_order_relaxed);
    return 0;
}
