/* Named maps in shared memory: an open-addressing hash table of immutable entries in a
 * segment per generation, read without a lock, written under the lock "map.NAME" with a
 * redo record in the header, grown by building the next generation. docs/map.md has the
 * layout, the growth and the crash-safety argument. */
#include <shmrpc/map.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "internal.h"
#include "map_seg.h"
#include "segment.h"
#include "wait.h"

#define HDR_MAGIC 0x50414d53u /* "SMAP" */
#define GEN_MAGIC 0x4e454753u /* "SGEN" */
#define MAP_VERSION 1u
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

/* The redo record's states. */
#define REC_IDLE 0u
#define REC_ACTIVE 1u

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
    uint8_t pad0[12];
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
    /* Fourth line: statistics, written under the lock, read by get_info. */
    _Atomic uint64_t writes;
    _Atomic uint64_t growths;
    _Atomic uint64_t repairs;
    uint8_t pad3[40];
};

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "shared atomics must be lock-free");
_Static_assert(offsetof(struct map_hdr, gen) == 16, "layout");
_Static_assert(offsetof(struct map_hdr, type_len) == 48, "layout");
_Static_assert(offsetof(struct map_hdr, changes) == 64, "layout");
_Static_assert(offsetof(struct map_hdr, change) == 72, "layout");
_Static_assert(offsetof(struct map_hdr, rec_state) == 128, "layout");
_Static_assert(offsetof(struct map_hdr, rec_live) == 184, "layout");
_Static_assert(offsetof(struct map_hdr, writes) == 192, "layout");
_Static_assert(sizeof(struct map_hdr) == 256, "layout");
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
    uint64_t arena_off; /* HEAD_SIZE + nslots * 8 */
    uint8_t pad0[24];
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

_Static_assert(offsetof(struct gen_hdr, seq) == 64, "layout");
_Static_assert(sizeof(struct gen_hdr) == 128, "layout");
#define HEAD_SIZE sizeof(struct gen_hdr)

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

struct shmrpc_map {
    struct map_hdr *hdr;
    size_t hdr_len; /* mapped bytes of the header segment: the header and the type */
    char *type;     /* the map's type signature as stored ("" when untyped) */
    char *want;     /* the type this open asked for (opts.type points here), "" for any */
    shmrpc_lock *lock;
    /* The generation this handle maps. */
    uint8_t *base;
    shmrpc__map_geo geo;
    uid_t uid;
    shmrpc_map_opts opts;
    bool created; /* this open created the map */
    bool holding; /* inside a write that took the lock (not re-entrantly) */
    char name[SHMRPC_MAP_NAME_MAX + 1];
};

/* --- messages ---------------------------------------------------------------------- */

#define fail shmrpc__err_set
#define syserr shmrpc__seg_syserr

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

/* A wyhash-style hash: 8 bytes a step, one 128-bit multiply each. */
static uint64_t hash_key(const void *key, size_t n)
{
    const uint8_t *p = key;
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix(h ^ w, UINT64_C(0xa0761d6478bd642f));
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = mix(h ^ w ^ ((uint64_t)n << 56), UINT64_C(0xe7037ed1a0b428db));
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
    if (arena != HEAD_SIZE + nslots * 8 || arena > total || (total >> 3) > OFF_MASK)
        return why_fail(SHMRPC_EPROTO, why, cap,
                        "entries at %" PRIu64 " do not follow %" PRIu64 " slots in %" PRIu64
                        " bytes",
                        arena, nslots, total);
    geo->gen = g->gen;
    geo->total = total;
    geo->nslots = nslots;
    geo->arena_off = arena;
    return 0;
}

static inline _Atomic uint64_t *slots_of(const void *seg)
{
    return (_Atomic uint64_t *)((uint8_t *)seg + HEAD_SIZE);
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

/* Finds key: its slot in *at (or SIZE_MAX), the first reusable slot in *free_at. 0 found,
 * SHMRPC_ENOENT, SHMRPC_EPROTO for an entry out of bounds or a table without an empty
 * slot. */
static int find(const void *seg, const shmrpc__map_geo *geo, const void *key, size_t klen,
                uint64_t h, uint64_t *at, uint64_t *word_out, uint64_t *free_at)
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
    int rc = find(seg, geo, key, klen, hash_key(key, klen), &at, &w, NULL);
    if (rc != 0) return rc;
    uint32_t k, v;
    const struct entry *e = entry_at(seg, geo, w, &k, &v);
    if (!e) return SHMRPC_EPROTO;
    *value = (const uint8_t *)(e + 1) + k;
    *vlen = v;
    return 0;
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
        if (off + entry_size(k, v) > used)
            return why_fail(SHMRPC_EPROTO, why, cap,
                            "slot %" PRIu64 " points past the used end %" PRIu64, i, used);
        uint64_t h = hash_key(e + 1, k);
        if (h != e->hash || TAG_OF(h) != (w >> OFF_BITS))
            return why_fail(SHMRPC_EPROTO, why, cap, "slot %" PRIu64 ": entry's hash is wrong", i);
        uint64_t at, w2;
        if (find(seg, geo, e + 1, k, h, &at, &w2, NULL) != 0 || at != i)
            return why_fail(SHMRPC_EPROTO, why, cap,
                            "slot %" PRIu64 ": key unreachable or present twice", i);
        count++;
        live += entry_size(k, v);
    }
    uint64_t hc = atomic_load(&g->count), ht = atomic_load(&g->tombs), hl = atomic_load(&g->live);
    if (hc != count || ht != tombs || hl != live)
        return why_fail(SHMRPC_EPROTO, why, cap,
                        "header counts %" PRIu64 " keys, %" PRIu64 " tombstones, %" PRIu64
                        " live bytes; slots hold %" PRIu64 ", %" PRIu64 ", %" PRIu64,
                        hc, ht, hl, count, tombs, live);
    if (atomic_load(&g->seq) & 1)
        return why_fail(SHMRPC_EPROTO, why, cap, "a write is half applied (odd sequence)");
    return 0;
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
static int create_file(const char *path, const char *name, mode_t perms, uint64_t size, void **out)
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
 * writer that died while building it left. Not yet published. */
static int build_gen(shmrpc_map *m, uint64_t gen, uint64_t nslots, uint64_t bytes, uint8_t **out,
                     shmrpc__map_geo *geo)
{
    char path[PATH_CAP];
    gen_path(path, m->name, gen);
    uint64_t arena = HEAD_SIZE + nslots * 8;
    uint64_t total = (arena + bytes + 4095) & ~UINT64_C(4095);
    void *p = NULL;
    int rc = SHMRPC_ESYS(EEXIST);
    for (int i = 0; i < OPEN_ATTEMPTS && rc == SHMRPC_ESYS(EEXIST); i++) {
        shm_unlink(path);
        rc = create_file(path, m->name, m->opts.perms, total, &p);
    }
    if (rc == SHMRPC_ESYS(EEXIST))
        return fail(SHMRPC_EBUSY, "map '%s': generation %" PRIu64 " keeps being recreated", m->name,
                    gen);
    if (rc != 0) return rc;
    struct gen_hdr *g = p;
    g->magic = GEN_MAGIC;
    g->version = MAP_VERSION;
    g->gen = gen;
    g->total = total;
    g->nslots = nslots;
    g->arena_off = arena;
    atomic_store(&g->used, arena);
    geo->gen = gen;
    geo->total = total;
    geo->nslots = nslots;
    geo->arena_off = arena;
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
        return fail(SHMRPC_ESYS(err), "cannot open map '%s' generation %" PRIu64 ": %s", m->name,
                    gen, syserr(err));
    }
    off_t size;
    int rc = check_owner(fd, m->name, m->opts.perms, &size);
    void *p = MAP_FAILED;
    if (rc == 0 && (size < (off_t)HEAD_SIZE))
        rc = fail(SHMRPC_EPROTO, "map '%s' generation %" PRIu64 " is %lld bytes, too small",
                  m->name, gen, (long long)size);
    if (rc == 0) {
        p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int err = errno;
            rc = fail(SHMRPC_ESYS(err), "cannot map map '%s': %s", m->name, syserr(err));
        }
    }
    close(fd);
    if (rc != 0) return rc;
    char why[200];
    rc = shmrpc__map_validate(p, (uint64_t)size, geo, why, sizeof why);
    if (rc == 0 && geo->gen != gen)
        rc =
            why_fail(SHMRPC_EPROTO, why, sizeof why, "it says it is generation %" PRIu64, geo->gen);
    if (rc != 0) {
        munmap(p, (size_t)size);
        return fail(rc, "map '%s' generation %" PRIu64 " (%s%s) refused: %s", m->name, gen, SHM_DIR,
                    path, why);
    }
    *out = p;
    return 0;
}

static void set_gen(shmrpc_map *m, uint8_t *base, const shmrpc__map_geo *geo)
{
    if (m->base) munmap(m->base, m->geo.total);
    m->base = base;
    m->geo = *geo;
}

/* Follows the header to the current generation. */
static int follow(shmrpc_map *m)
{
    for (int i = 0; i < OPEN_ATTEMPTS; i++) {
        uint64_t gen = atomic_load_explicit(&m->hdr->gen, memory_order_acquire);
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
                "map '%s': generation %" PRIu64 " named by the header does not exist", m->name,
                atomic_load(&m->hdr->gen));
}

static inline int sync_gen(shmrpc_map *m)
{
    if (__builtin_expect(
            atomic_load_explicit(&m->hdr->gen, memory_order_acquire) == m->geo.gen && m->base, 1))
        return 0;
    return follow(m);
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

/* Copies the live entries of the mapped generation into a new one large enough for
 * extra more keys of need more bytes, publishes it, and maps it. Under the lock. */
static int grow(shmrpc_map *m, uint64_t extra_keys, uint64_t need, bool empty)
{
    struct gen_hdr *old = (struct gen_hdr *)m->base;
    struct map_hdr *h = m->hdr;
    uint64_t count = empty ? 0 : atomic_load(&old->count);
    uint64_t live = empty ? 0 : atomic_load(&old->live);
    uint64_t want = (count + extra_keys) * LOAD_DEN / LOAD_NUM + 1;
    uint64_t nslots = pow2_at_least(empty ? h->init_slots : want * 2);
    if (nslots < h->init_slots) nslots = h->init_slots;
    if (want > nslots)
        return fail(SHMRPC_ETOOBIG, "map '%s' cannot hold %" PRIu64 " keys", m->name,
                    count + extra_keys);
    /* Four times what is live: a generation then takes three times the live bytes of
     * replaced entries before the next copy, so a put copies a third of its bytes again
     * on average instead of all of them with twice. */
    uint64_t bytes = empty ? h->init_bytes : (live + need) * 4;
    if (bytes < h->init_bytes) bytes = h->init_bytes;
    if (bytes > h->max_bytes) bytes = h->max_bytes;
    if (live + need > bytes)
        return fail(SHMRPC_ETOOBIG,
                    "map '%s' would need %" PRIu64 " bytes of entries, max_bytes is %" PRIu64,
                    m->name, live + need, h->max_bytes);
    uint64_t gen = m->geo.gen + 1;
    uint8_t *nb;
    shmrpc__map_geo ng;
    int rc = build_gen(m, gen, nslots, bytes, &nb, &ng);
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
        uint64_t sz = entry_size(k, v);
        if (used + sz > ng.total) break;
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
    unlink_gen(m->name, prev);
    return 0;
}

/* --- writing ------------------------------------------------------------------------- */

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
    uint64_t seq = atomic_load(&g->seq);
    if (seq & 1) atomic_store(&g->seq, seq + 1);
    if (m->geo.gen > 1) unlink_gen(m->name, m->geo.gen - 1);
    atomic_fetch_add_explicit(&h->repairs, 1, memory_order_relaxed);
    bump_changes(h);
}

/* Takes the lock for a write (unless this thread holds it already) and maps the current
 * generation; repairs after a dead writer. *took says whether to release. */
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
        /* An active record without a death: the lock was stolen from a writer, or its file
         * replaced under it; roll it forward all the same. */
        if (rc == SHMRPC_EOWNERDEAD ||
            atomic_load_explicit(&m->hdr->rec_state, memory_order_acquire) != REC_IDLE)
            repair(m);
        return 0;
    }
    int rc = follow(m);
    if (rc == 0 && (atomic_load(&m->hdr->rec_state) != REC_IDLE ||
                    (atomic_load(&((struct gen_hdr *)m->base)->seq) & 1)))
        repair(m); /* the lock was stolen from, or handed over by, a dead writer */
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
    uint64_t need = entry_size(klen, vlen);
    for (int attempt = 0; attempt < 3; attempt++) {
        struct gen_hdr *g = (struct gen_hdr *)m->base;
        uint64_t at, w = 0, free_at = UINT64_MAX;
        int rc = find(m->base, &m->geo, key, klen, h, &at, &w, &free_at);
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
            old_size = entry_size(k, v);
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
        if (used + need > m->geo.total || used < m->geo.arena_off ||
            filled * LOAD_DEN > m->geo.nslots * LOAD_NUM) {
            rc = grow(m, 1, need, false);
            if (rc != 0) return rc;
            continue;
        }
        uint8_t *dst = m->base + used;
        struct entry eh = {(uint32_t)klen, (uint32_t)vlen, h};
        memcpy(dst, &eh, ENTRY_HEAD);
        memcpy(dst + ENTRY_HEAD, key, klen);
        if (vlen) memcpy(dst + ENTRY_HEAD + klen, value, vlen);
        uint64_t word = (TAG_OF(h) << OFF_BITS) | (used >> 3);
        apply(m, insert ? free_at : at, word, used + need, count + insert, tombs - reuse_tomb,
              live - old_size + need);
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
    return end_write(m, took, put_locked(m, key, klen, h, value, vlen, how, expected, elen));
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
    int rc = find(m->base, &m->geo, key, klen, h, &at, &w, NULL);
    if (rc == SHMRPC_ENOENT) return fail(SHMRPC_ENOENT, "no such key");
    if (rc != 0) return fail(rc, "map '%s': an entry on the key's way is out of bounds", m->name);
    uint32_t k, v;
    if (!entry_at(m->base, &m->geo, w, &k, &v))
        return fail(SHMRPC_EPROTO, "map '%s': the key's entry is out of bounds", m->name);
    apply(m, at, TOMB, atomic_load(&g->used), atomic_load(&g->count) - 1,
          atomic_load(&g->tombs) + 1, atomic_load(&g->live) - entry_size(k, v));
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
    return end_write(m, took, remove_locked(m, key, klen, h));
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
    return end_write(m, took, rc);
}

/* --- reading ------------------------------------------------------------------------- */

static int lookup(shmrpc_map *m, const void *key, size_t klen, uint64_t *at, uint64_t *w,
                  const struct entry **e, uint32_t *k, uint32_t *v)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    if ((!key && klen) || klen > SHMRPC_MAP_KEY_MAX) return check_kv(key, klen, NULL, 0);
    int rc = sync_gen(m);
    if (rc != 0) return rc;
    rc = find(m->base, &m->geo, key, klen, hash_key(key, klen), at, w, NULL);
    if (rc == SHMRPC_ENOENT) return fail(SHMRPC_ENOENT, "no such key");
    if (rc != 0) return fail(rc, "map '%s': an entry on the key's way is out of bounds", m->name);
    *e = entry_at(m->base, &m->geo, *w, k, v);
    if (!*e) return fail(SHMRPC_EPROTO, "map '%s': the key's entry is out of bounds", m->name);
    return 0;
}

int shmrpc_map_get(shmrpc_map *m, const void *key, size_t klen, void *buf, size_t cap, size_t *len)
{
    uint64_t at, w;
    const struct entry *e;
    uint32_t k, v;
    int rc = lookup(m, key, klen, &at, &w, &e, &k, &v);
    if (rc != 0) return rc;
    if (len) *len = v;
    if (v > cap) return fail(SHMRPC_ETOOBIG, "the value has %u bytes, the buffer %zu", v, cap);
    if (v) memcpy(buf, (const uint8_t *)(e + 1) + k, v);
    return 0;
}

int shmrpc_map_get_view(shmrpc_map *m, const void *key, size_t klen, shmrpc_map_view *view)
{
    if (!view) return fail(SHMRPC_EINVAL, "no view");
    uint64_t at, w;
    const struct entry *e;
    uint32_t k, v;
    int rc = lookup(m, key, klen, &at, &w, &e, &k, &v);
    if (rc != 0) return rc;
    view->data = (const uint8_t *)(e + 1) + k;
    view->len = v;
    view->gen = m->geo.gen;
    view->slot = at;
    view->word = w;
    return 0;
}

bool shmrpc_map_view_current(shmrpc_map *m, const shmrpc_map_view *v)
{
    if (!m || !v || !m->base) return false;
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
    return 0;
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
        int rc = sync_gen(m);
        if (rc != 0) return rc;
        struct gen_hdr *g = (struct gen_hdr *)m->base;
        uint64_t s1 = atomic_load_explicit(&g->seq, memory_order_acquire);
        if (s1 & 1) continue;
        rc = snap_copy(m, s);
        if (rc == SHMRPC_ENOMEM) return rc;
        atomic_thread_fence(memory_order_acquire);
        if (rc == 0 && atomic_load_explicit(&g->seq, memory_order_relaxed) == s1) return 0;
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
    for (size_t off = 0; rc == 0 && off < s.len;) {
        struct entry eh;
        memcpy(&eh, s.buf + off, ENTRY_HEAD);
        const uint8_t *kp = s.buf + off + ENTRY_HEAD;
        rc = fn(arg, kp, eh.klen, kp + eh.klen, eh.vlen);
        off += (size_t)entry_size(eh.klen, eh.vlen);
    }
    free(s.buf);
    return rc;
}

int shmrpc_map_changes(shmrpc_map *m, uint64_t *count)
{
    if (!m || !count) return fail(SHMRPC_EINVAL, m ? "no place for the count" : "no map");
    *count = atomic_load_explicit(&m->hdr->changes, memory_order_acquire);
    return 0;
}

int shmrpc_map_wait(shmrpc_map *m, uint64_t since, uint64_t *now, int64_t timeout_ms)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    if (timeout_ms < 0 && timeout_ms != SHMRPC_MAP_WAIT_FOREVER)
        return fail(SHMRPC_EINVAL, "negative timeout %" PRId64 " ms", timeout_ms);
    struct map_hdr *h = m->hdr;
    int64_t deadline = timeout_ms < 0 || timeout_ms > INT64_MAX / 2000000
                           ? INT64_MAX
                           : shmrpc__now_ns() + timeout_ms * 1000000;
    const shmrpc__waiter waiter = {
        .opts = &m->opts.wait, .flag = CHANGE_WAITERS, .check_ns = m->opts.wait.sleep_ns};
    for (;;) {
        uint32_t word = atomic_load_explicit(&h->change.word, memory_order_acquire);
        uint64_t c = atomic_load_explicit(&h->changes, memory_order_acquire);
        if (c != since) {
            if (now) *now = c;
            return 0;
        }
        if (shmrpc__now_ns() >= deadline)
            return fail(SHMRPC_ETIMEDOUT, "map '%s' did not change within %" PRId64 " ms", m->name,
                        timeout_ms);
        int rc = shmrpc__wait_while(&h->change, word, deadline, &waiter);
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
    out->generation = m->geo.gen;
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
            "\nlock_waits: %" PRIu64 "\ncreator: %d\n",
            m->name, i.generation, i.count, i.slots, i.tombstones, i.bytes, i.used, i.live,
            i.changes, i.writes, i.growths, i.repairs, i.lock_waits, (int)i.creator);
    return 0;
}

int shmrpc_map_check(shmrpc_map *m)
{
    if (!m) return fail(SHMRPC_EINVAL, "no map");
    int rc = sync_gen(m);
    if (rc != 0) return rc;
    char why[256];
    rc = shmrpc__map_check_seg(m->base, &m->geo, why, sizeof why);
    if (rc != 0) return fail(rc, "map '%s' generation %" PRIu64 ": %s", m->name, m->geo.gen, why);
    return 0;
}

/* --- auto_unlink --------------------------------------------------------------------- */

/* Maps that their creating process removes at exit, unless closed first. */
struct doomed {
    struct doomed *next;
    pid_t pid; /* a forked child inherits the list, not the duty */
    char name[SHMRPC_MAP_NAME_MAX + 1];
};
static pthread_mutex_t doomed_mu = PTHREAD_MUTEX_INITIALIZER;
static struct doomed *doomed_list;
static bool doomed_hooked;

static void unlink_doomed(void)
{
    pthread_mutex_lock(&doomed_mu);
    for (struct doomed *d = doomed_list; d; d = d->next)
        if (d->pid == getpid()) shmrpc_map_unlink_quiet(d->name);
    pthread_mutex_unlock(&doomed_mu);
}

static void doom(const char *name)
{
    struct doomed *d = calloc(1, sizeof *d);
    if (!d) return;
    d->pid = getpid();
    snprintf(d->name, sizeof d->name, "%s", name);
    pthread_mutex_lock(&doomed_mu);
    d->next = doomed_list;
    doomed_list = d;
    if (!doomed_hooked) doomed_hooked = atexit(unlink_doomed) == 0;
    pthread_mutex_unlock(&doomed_mu);
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

/* Creates the header, the lock and generation 1; SHMRPC_ESYS(EEXIST) silently. */
static int create_map(shmrpc_map *m)
{
    char path[PATH_CAP];
    hdr_path(path, m->name);
    void *p;
    size_t tlen = strlen(m->want);
    int rc = create_file(path, m->name, m->opts.perms, HDR_SIZE + tlen, &p);
    if (rc != 0) return rc;
    m->hdr = p;
    m->hdr_len = HDR_SIZE + tlen;
    struct map_hdr *h = p;
    h->version = MAP_VERSION;
    h->size = (uint32_t)HDR_SIZE;
    h->type_len = (uint32_t)tlen;
    memcpy((char *)p + HDR_SIZE, m->want, tlen);
    h->creator = (uint32_t)getpid();
    h->init_slots = pow2_at_least(m->opts.initial_slots);
    h->init_bytes = (m->opts.initial_bytes + 4095) & ~UINT64_C(4095);
    h->max_bytes = m->opts.max_bytes < h->init_bytes ? h->init_bytes : m->opts.max_bytes;
    char ln[SHMRPC_LOCK_NAME_MAX + 1];
    lock_name(ln, m->name);
    shmrpc_lock_unlink(ln); /* a lock left by an earlier map of this name */
    rc = open_lock_of(m);
    uint8_t *base = NULL;
    shmrpc__map_geo geo;
    if (rc == 0) rc = build_gen(m, 1, h->init_slots, h->init_bytes, &base, &geo);
    if (rc != 0) {
        shm_unlink(path);
        munmap(p, m->hdr_len);
        m->hdr = NULL;
        return rc;
    }
    set_gen(m, base, &geo);
    atomic_store(&h->gen, 1);
    atomic_store_explicit(&h->magic, HDR_MAGIC, memory_order_release);
    m->created = true;
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
    if (rc == 0 && (size < (off_t)HDR_SIZE || size > (off_t)(HDR_SIZE + SHMRPC_MAP_TYPE_MAX)))
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
    uint64_t is = h->init_slots, ib = h->init_bytes, mb = h->max_bytes;
    if (magic == 0)
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
    rc = open_lock_of(m);
    if (rc == 0) rc = follow(m);
    if (rc != 0) {
        munmap(p, plen);
        m->hdr = NULL;
        free(type);
        return rc;
    }
    free(m->type);
    m->type = type;
    return 0;
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
            shmrpc_map_unlink_quiet(m->name);
            int rc = create_map(m);
            if (rc != SHMRPC_ESYS(EEXIST)) return rc;
        }
        return fail(SHMRPC_EBUSY, "map '%s' keeps being recreated by others", m->name);
    case SHMRPC_MAP_CONNECT_OR_CREATE:
    default:
        for (int i = 0; i < OPEN_ATTEMPTS; i++) {
            int rc = create_map(m);
            if (rc != SHMRPC_ESYS(EEXIST)) return rc;
            rc = attach_map(m);
            if (rc != SHMRPC_ENOENT) return rc;
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
        if (m->base) munmap(m->base, m->geo.total);
        free(m->type);
        free(m->want);
        free(m);
        return shmrpc__err_end(rc);
    }
    if (m->created && o->auto_unlink) doom(m->name);
    *out = m;
    return shmrpc__err_end(0);
}

void shmrpc_map_close(shmrpc_map *m)
{
    if (!m) return;
    if (m->created && m->opts.auto_unlink) {
        spare(m->name);
        shmrpc_map_unlink_quiet(m->name);
    }
    if (m->base) munmap(m->base, m->geo.total);
    munmap(m->hdr, m->hdr_len);
    shmrpc_lock_close(m->lock);
    free(m->type);
    free(m->want);
    free(m);
}

/* Removes every generation file of the map: whatever number a dead writer left. */
static void unlink_gens(const char *name)
{
    DIR *d = opendir(SHM_DIR);
    if (!d) return;
    char prefix[PATH_CAP];
    int n = snprintf(prefix, sizeof prefix, "%s%s.", &GEN_PREFIX[1], name);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, prefix, (size_t)n) != 0) continue;
        const char *rest = de->d_name + n;
        if (!*rest || strspn(rest, "0123456789") != strlen(rest)) continue;
        char path[sizeof de->d_name + 2];
        snprintf(path, sizeof path, "/%s", de->d_name);
        shm_unlink(path);
    }
    closedir(d);
}

int shmrpc_map_unlink(const char *name)
{
    int rc = check_name(name);
    if (rc != 0) return rc;
    char path[PATH_CAP], ln[SHMRPC_LOCK_NAME_MAX + 1];
    hdr_path(path, name);
    int err = shm_unlink(path) == 0 ? 0 : errno;
    unlink_gens(name);
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
    out->changes = atomic_load_explicit(&h->changes, memory_order_relaxed);
    out->writes = atomic_load_explicit(&h->writes, memory_order_relaxed);
    out->growths = atomic_load_explicit(&h->growths, memory_order_relaxed);
    out->repairs = atomic_load_explicit(&h->repairs, memory_order_relaxed);
}

int shmrpc__map_read_gen(const void *head, uint64_t size, shmrpc_map_info *info, char *why,
                         size_t cap)
{
    shmrpc__map_geo geo;
    int rc = shmrpc__map_validate(head, size, &geo, why, cap); /* reads the head alone */
    if (rc != 0) return rc;
    const struct gen_hdr *g = head;
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
