/* SPDX-License-Identifier: MIT */
/* The shared map's insides, shared by the files of runtime/src/map/: the layout of its two
 * segments, the handle, and what one file calls in another. Named maps in shared memory:
 * an open-addressing hash table of immutable entries in a segment per generation, read
 * without a lock, written under the lock "map.NAME" with a redo record in the header, grown
 * by building the next generation. docs/map.md has the layout, the growth and the
 * crash-safety argument.
 *
 * The files, each calling only those above it (no circles):
 *   map_seg.c         a generation as laid out, trusting nothing in it; what admin reads
 *   map_files.c       names and files in /dev/shm, shmrpc_map_unlink
 *   map_generation.c  building, mapping and growing generations
 *   map_read.c        reader slots, following the generation, get, view, size
 *   map_space.c       reusing space: the ring of retired entries, the epoch, free lists
 *   map_write.c       writes under the lock, the repair after a dead writer
 *   map_iter.c        snapshots, shmrpc_map_iterate
 *   map_info.c        changes and the wait for one, info, status, check
 *   map_open.c        open, close, auto_unlink */
#ifndef SHMRPC_SRC_MAP_INT_H
#define SHMRPC_SRC_MAP_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <shmrpc/lock.h>
#include <shmrpc/map.h>
#include <shmrpc/status.h>

#include "core/core.h"
#include "core/membarrier.h"
#include "core/proc.h"
#include "core/segment.h"
#include "core/wait.h"
#include "map/map_seg.h"

/* --- layout -------------------------------------------------------------------------- */

#define HDR_MAGIC 0x50414d53u /* "SMAP" */
#define GEN_MAGIC 0x4e454753u /* "SGEN" */
#define MAP_VERSION 4u
#define HDR_PREFIX "/shmrpc.map."
#define GEN_PREFIX "/shmrpc.mapgen."
#define SHM_DIR SHMRPC__SHM_DIR
#define PATH_CAP (sizeof GEN_PREFIX + SHMRPC_MAP_NAME_MAX + 24)

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

#define MAX_SLOTS (UINT64_C(1) << 31)

/* Reader slots in the header: handles reading at once with the protection that lets
 * writers reuse space; more read without it and pause reuse while they do. */
#define MAP_READERS 60

/* Space reuse (docs/map.md, "Reusing space"): free lists by size class, and a ring of
 * replaced entries waiting for the readers that may still read them. */
#define NCLASSES 128
#define RING_MIN 2048
#define RING_MAX (UINT64_C(1) << 24)
/* A cache line: entries of up to 256 bytes take whole lines (docs/map.md, "Allocating"). */
#define LINE 64u

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
    uint64_t arena_off; /* gen_arena_off(nslots, ring_cap) */
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

/* Where a generation's entries begin: after its head, its nslots slots, the space and the
 * ring of ring_cap retired entries. Its builder writes it and every mapper checks it. */
static inline uint64_t gen_arena_off(uint64_t nslots, uint64_t ring_cap)
{
    return HEAD_SIZE + nslots * 8 + SPACE_SIZE + ring_cap * 8;
}

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

/* --- map_seg.c: a generation segment, trusting nothing in it ------------------------- */

/* rc, with the reason formatted into why (cap bytes). */
__attribute__((format(printf, 4, 5))) int shmrpc__map_why_fail(int rc, char *why, size_t cap,
                                                               const char *fmt, ...);
/* The hash of a key (wyhash-style). */
uint64_t shmrpc__map_hash_key(const void *key, size_t n);
/* The entry a slot word points to, checked to lie in the segment; NULL when it does not. */
const struct entry *shmrpc__map_entry_at(const void *seg, const shmrpc__map_geo *geo, uint64_t word,
                                         uint32_t *klen, uint32_t *vlen);

/* --- map_files.c: names and files ---------------------------------------------------- */

/* SHMRPC_ECUT with a message naming the file that was cut: the header, or the generation. */
int shmrpc__map_cut_fail(const shmrpc_map *m);
/* Checks a map's name: 0, or SHMRPC_EINVAL with a message. */
int shmrpc__map_check_name(const char *name);
/* The shm_open names of the header, of generation gen (PATH_CAP bytes), and the lock's name. */
void shmrpc__map_hdr_path(char *out, const char *name);
void shmrpc__map_gen_path(char *out, const char *name, uint64_t gen);
void shmrpc__map_lock_name(char *out, const char *name);
/* The map's words for a system call that failed on its header or a generation file
 * (shmrpc__seg_ops, core/seg_open.c). */
int shmrpc__map_sys_fail(const shmrpc__seg_how *how, enum shmrpc__seg_step step, int err,
                         uint64_t size);
/* Removes generation file gen of the map; every one numbered below below. */
void shmrpc__map_unlink_gen(const char *name, uint64_t gen);
void shmrpc__map_unlink_gens(const char *name, uint64_t below);
/* Whether the name leads to the header file dev/ino: 1, 0, or -1 when the stat failed. */
int shmrpc__map_header_named(const char *name, dev_t dev, ino_t ino);
/* Whether it does; false also when the stat failed. */
bool shmrpc__map_names_header(const char *name, dev_t dev, ino_t ino);
/* Whether the map's name still leads to the header this handle opened. */
bool shmrpc__map_still_named(shmrpc_map *m);

/* --- map_generation.c: generations --------------------------------------------------- */

/* The power of two at least n, in [8, MAX_SLOTS]. */
uint64_t shmrpc__map_pow2_at_least(uint64_t n);
/* Creates generation gen, empty and not yet published (anew: a map's first). */
int shmrpc__map_build_gen(shmrpc_map *m, uint64_t gen, uint64_t epoch, uint64_t nslots,
                          uint64_t bytes, bool anew, uint8_t **out, shmrpc__map_geo *geo);
/* Maps generation gen, checked; SHMRPC_ENOENT when its file is gone. */
int shmrpc__map_map_gen(shmrpc_map *m, uint64_t gen, uint8_t **out, shmrpc__map_geo *geo);
/* Makes base the handle's generation, unmapping the one before. */
void shmrpc__map_set_gen(shmrpc_map *m, uint8_t *base, const shmrpc__map_geo *geo);
/* Copies the live entries into a new generation with room for more, and publishes it. */
int shmrpc__map_grow(shmrpc_map *m, uint64_t extra_keys, uint64_t need, bool empty);

/* --- map_read.c: lock-free reads ----------------------------------------------------- */

/* Whether the owner o of reader slot r is dead (*start: the start time read). */
bool shmrpc__map_owner_dead(struct map_reader *r, uint64_t o, uint64_t *start);
/* Frees the slot of a dead owner; false when someone else freed or took it first. */
bool shmrpc__map_free_dead_slot(struct map_hdr *h, struct map_reader *r, uint64_t owner,
                                uint64_t start);
/* Gives back the handle's reader slot. */
void shmrpc__map_release_slot(shmrpc_map *m);
/* Ends the read in progress or the view held. */
void shmrpc__map_unpin(shmrpc_map *m);
/* Follows the header to the current generation. */
int shmrpc__map_follow(shmrpc_map *m);
/* Ends what the handle holds and follows the header when it names another generation. */
int shmrpc__map_sync_gen(shmrpc_map *m);
/* Begins a lock-free read of the current generation (whole: a snapshot). */
int shmrpc__map_enter_read(shmrpc_map *m, bool whole);
/* Checks a key and a value given to a call: 0, or SHMRPC_EINVAL with a message. */
int shmrpc__map_check_kv(const void *key, size_t klen, const void *value, size_t vlen);

/* --- map_space.c: reusing space (under the lock) ------------------------------------- */

/* Forgets every free and retired block of the mapped generation. */
void shmrpc__map_forget_space(shmrpc_map *m);
/* Frees everything retired so far when readers let go of it soon enough. */
bool shmrpc__map_advance_hard(shmrpc_map *m);
/* Puts the entry a slot no longer names on the ring of retired ones. */
void shmrpc__map_retire(shmrpc_map *m, uint64_t word);
/* A free block of size class c, 0 when there is none. */
uint64_t shmrpc__map_take_free(shmrpc_map *m, unsigned c);

/* --- map_write.c: writes ------------------------------------------------------------- */

/* Takes the lock for a write (unless held) and maps the current generation, repairing after
 * a dead writer; *took says whether shmrpc__map_end_write releases it. */
int shmrpc__map_begin_write(shmrpc_map *m, bool *took);
int shmrpc__map_end_write(shmrpc_map *m, bool took, int rc);

/* --- messages ------------------------------------------------------------------------ */

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

/* rc, unless the map was cut meanwhile: what the call did, it did on zero pages. */
static inline int unless_cut(const shmrpc_map *m, int rc)
{
    return cut(m) ? shmrpc__map_cut_fail(m) : rc;
}

/* --- a generation's slots and entries ------------------------------------------------ */

static inline _Atomic uint64_t *slots_of(const void *seg)
{
    return (_Atomic uint64_t *)((uint8_t *)seg + HEAD_SIZE);
}

static inline struct gen_space *space_of(const void *seg, const shmrpc__map_geo *geo)
{
    return (struct gen_space *)((uint8_t *)seg + HEAD_SIZE + geo->nslots * 8);
}

/* Whether the block at off of a class lies in the written entry space. */
static inline bool block_ok(const shmrpc__map_geo *geo, uint64_t used, uint64_t off, uint64_t bs)
{
    return !(off & 7) && off >= geo->arena_off && off <= used && bs <= used - off;
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
        const struct entry *e = shmrpc__map_entry_at(seg, geo, w, &k, &v);
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

#endif
