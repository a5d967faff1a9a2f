/* SPDX-License-Identifier: MIT */
/* The shm:// transport's client side: connect (the control segment, its method table, a
 * slot, a channel handed over at the rendezvous), the call, and its wait for the answer
 * while watching the worker and the server. */
#include "codec/dyn.h"
#include "transport/shm/shm_int.h"

#include "transport/shm/shm_rdv.h"
#include "transport/shm/shm_ring.h"
#include "core/core.h"
#include "core/proc.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define RDV_WAIT_NS ((int64_t)3 * 1000 * 1000 * 1000) /* a connect's wait at the rendezvous */

/* This process's pid (proc.h: learnt once, again after a fork). */
static inline int32_t self(void)
{
    return shmrpc__self_pid();
}

/* The server's method table, read from a private copy of the control segment's text. */
typedef struct table {
    char service[256];
    char *text;
    shmrpc_method_info *methods;
    const char **types;
    shmrpc_service_info info;
} table;

static void table_free(table *t)
{
    free(t->text);
    free(t->methods);
    free(t->types);
}

/* The table of ctl, of which size bytes are mapped. */
static int parse_table(const shmrpc__shm_ctl *ctl, uint64_t size, table *t, shmrpc_buf *err)
{
    uint32_t len = ctl->table_len; /* read once */
    memset(t, 0, sizeof *t);
    memcpy(t->service, ctl->service, sizeof t->service - 1); /* NUL-terminated here */
    if (len > size - sizeof *ctl) goto bad;
    t->text = malloc((size_t)len + 1);
    uint32_t lines = 0, n_types = 0;
    if (t->text == NULL) return SHMRPC_ENOMEM;
    memcpy(t->text, ctl->table, len);
    t->text[len] = '\0';
    for (uint32_t i = 0; i < len; i++) /* a line of a type starts with a tab */
        if (i == 0 || t->text[i - 1] == '\n') *(t->text[i] == '\t' ? &n_types : &lines) += 1;
    t->methods = calloc(lines ? lines : 1, sizeof *t->methods);
    t->types = calloc(n_types ? n_types : 1, sizeof *t->types);
    if (t->methods == NULL || t->types == NULL) return SHMRPC_ENOMEM;
    char *p = t->text;
    for (uint32_t i = 0; i < lines; i++) {
        char *name = p, *enc = strchr(p, '\t'), *fp = enc ? strchr(enc + 1, '\t') : NULL;
        char *sig = fp ? strchr(fp + 1, '\t') : NULL, *end = strchr(p, '\n');
        if (!sig || !end || sig > end || name == enc) goto bad;
        *enc++ = *fp++ = *sig++ = *end = '\0';
        t->methods[i] = (shmrpc_method_info){.name = name,
                                             .id = i,
                                             .encoding = (shmrpc_encoding)atoi(enc),
                                             .fingerprint = strtoull(fp, NULL, 16),
                                             .signature = sig};
        p = end + 1;
    }
    for (uint32_t i = 0; i < n_types; i++) {
        char *end = strchr(p, '\n'), *tab = strchr(p + 1, '\t');
        if (*p != '\t' || !end || (tab && tab < end)) goto bad;
        *end = '\0';
        t->types[i] = p + 1;
        p = end + 1;
    }
    t->info = (shmrpc_service_info){.magic = SHMRPC_SERVICE_MAGIC,
                                    .version = SHMRPC_DESCRIPTOR_VERSION,
                                    .name = t->service,
                                    .svc_name = t->service,
                                    .fingerprint = ctl->fingerprint,
                                    .n_methods = lines,
                                    .methods = t->methods,
                                    .n_types = n_types,
                                    .types = n_types ? t->types : NULL};
    if (shmrpc__info_check(&t->info, err) == 0) {
        int rc = shmrpc__types_check(&t->info, err);
        if (rc == 0 || rc == SHMRPC_ENOMEM) return rc;
        char why[256];
        snprintf(why, sizeof why, "%s", shmrpc__msg_get(err));
        shmrpc__msg_set(err, "the server's method table is malformed: %s", why);
        return SHMRPC_EPROTO;
    }
bad:
    shmrpc__msg_set(err, "the server's method table is malformed");
    return SHMRPC_EPROTO;
}

struct shm_conn;

/* The lanes of a connection's calls in flight: at[0] is the connection itself; the others
 * are opened as starts need them, up to LANES_MAX, and kept. */
#define LANES_MAX 64
typedef struct lanes {
    struct shm_conn *at[LANES_MAX];
    unsigned n;
    unsigned ended;   /* the lane whose call ended last: free, unless it took another since */
    int64_t retry_ns; /* a lane that failed to open is not tried again before this */
    /* Calls started while two lanes were busy, not sent yet: the next batch (form_post). */
    shmrpc__pending *form[SHMRPC__BATCH_MAX];
    unsigned nform;
    size_t form_bytes; /* their records' bytes */
} lanes;

typedef struct shm_conn {
    shmrpc__conn base;
    char key[SHMRPC__KEY_MAX + 1];
    int ctl_fd;
    shmrpc__shm_ctl *ctl;
    /* The connection to the server's rendezvous, kept open as long as the slot: the
     * manager holds the channel handed over on it, and its hang-up tells the manager that
     * this process died. -1 with a server of a version before it. */
    int rdv_fd;
    uint64_t ctl_size; /* what is mapped of ctl: its header and table */
    int32_t rdv_pid; /* who listens there (SO_PEERCRED): must be the segment's owner */
    int32_t owner;
    uint64_t owner_start;
    unsigned slot;
    uint32_t gen;
    shmrpc__chan_map chan;
    ino_t chan_ino;   /* the channel's inode: is chan.fd still the channel? */
    int32_t pid;      /* the process that connected: only it may call or close the slot */
    uint64_t max_msg; /* the server's maximum, read once and capped */
    bool broken;      /* the server went away: the next call connects again */
    bool lost;        /* the slot or the channel's fd stopped leading to this connection (a bad
                         write, a sweep, or the program closed the fd) */
    int64_t retry_ns, backoff_ns;    /* when a reconnect may be tried next, and the pause */
    const shmrpc_service_info *info; /* for reconnects, which check the table again */
    uint32_t *map;
    shmrpc__table *table; /* the server's, kept at every (re)connect */
    uint32_t last_worker; /* served the last call: likely the next one's */
    uint64_t call;        /* the number of the last call sent (from 1), as in the channel */
    uint64_t budget;      /* what this client last wrote in its channel's budget_ns */
    uint32_t meta_len;    /* what this client last wrote in its channel's meta_len */
    uint32_t ring;        /* what this client last wrote in its channel's stream */
    bool counted;         /* this call counts in the service's awake (shmrpc__waiter) */
    bool rung;            /* this call's request rang the doorbell */
    uint8_t *loan;        /* the channel's data while a loan waits for its call, or NULL */
    shmrpc_wait_opts wait;
    /* Calls in flight (shmrpc_client_start): each runs on a lane, a connection of its own
     * to the service (a slot and a channel), so that every call keeps the state machine,
     * the checks and the at-most-once of one call ("calls in flight" below). The connection
     * that connect made holds the table of them (NULL before the first start; and on every
     * other lane). As a lane, a connection has p, its call or NULL, dl its deadline, and
     * the times below. */
    struct lanes *lanes;
    struct shm_stream *stream; /* the stream open on the client (lane 0 holds it), or NULL */
    bool streams;              /* as a lane: it carries that stream */
    shmrpc__pending *p;
    shmrpc__deadline dl;
    int64_t next_check_ns; /* when the lane's call is looked at (client_check) next; 0: not
                              before the call's first clock read */
    int64_t late_at;       /* when its request rings after all (ring_late); 0: not */
    bool spin_counted;     /* the waiter of calls in flight counts in awake (lanes_wait) */
    /* As a lane that carries a batch (SHMRPC__SHM_BATCH): its calls in order (NULL where one
     * ended before its answer came), each one's record, how many there are, how many answers
     * were read, where the answers begin and where the next one is. */
    shmrpc__pending *bp[SHMRPC__BATCH_MAX];
    uint32_t brec[SHMRPC__BATCH_MAX];
    unsigned bn, bread;
    uint64_t baoff, bat;
} shm_conn;

static void shm_conn_close(shmrpc__conn *base);
static bool chan_held(shm_conn *c);
static void ring_request(shm_conn *c);
static int shm_call(shmrpc__conn *base, uint32_t sid, shmrpc_bytes req, shmrpc_buf *resp,
                    int64_t timeout_ms, shmrpc_buf *err);

static int shm_loan(shmrpc__conn *base, uint32_t sid, size_t size, void **ptr, int64_t timeout_ms,
                    shmrpc_buf *err);
static int shm_call_loaned(shmrpc__conn *base, uint32_t sid, size_t len, shmrpc_bytes *resp,
                           int64_t timeout_ms, shmrpc_buf *err);

static int shm_start(shmrpc__conn *base, shmrpc__pending *p, shmrpc_buf *err);
static void shm_progress(shmrpc__conn *base, int64_t deadline);
static void shm_abandon(shmrpc__conn *base, shmrpc__pending *p);
static void shm_cancel(shmrpc__conn *base, shmrpc__pending *p);

static int shm_call_view(shmrpc__conn *base, uint32_t sid, shmrpc_bytes req, shmrpc_bytes *resp,
                         int64_t timeout_ms, shmrpc_buf *err);

static int shm_stream_open(shmrpc__conn *base, uint32_t sid, int ways, shmrpc_bytes req,
                           int64_t timeout_ms, shmrpc_buf *err);
static int shm_stream_recv(shmrpc__conn *base, shmrpc_buf *item, shmrpc_buf *err);
static void shm_stream_end(shmrpc__conn *base);
static int shm_stream_send(shmrpc__conn *base, const void *item, size_t n, shmrpc_buf *err);
static void shm_stream_done(shmrpc__conn *base);

static const shmrpc__conn_ops shm_conn_ops = {.call = shm_call,
                                              .close = shm_conn_close,
                                              .start = shm_start,
                                              .progress = shm_progress,
                                              .abandon = shm_abandon,
                                              .cancel = shm_cancel,
                                              .loan = shm_loan,
                                              .call_loaned = shm_call_loaned,
                                              .call_view = shm_call_view,
                                              .stream_open = shm_stream_open,
                                              .stream_recv = shm_stream_recv,
                                              .stream_end = shm_stream_end,
                                              .stream_send = shm_stream_send,
                                              .stream_done = shm_stream_done};
static int attach(shm_conn *c, int64_t deadline, shmrpc_buf *err);

static int open_ctl(shm_conn *c, const shmrpc_service_info *info, uint32_t *map_ids,
                    shmrpc_buf *err)
{
    char name[SHMRPC__NS_MAX + SHMRPC__KEY_MAX + 16];
    uint64_t size;
    int rc = shmrpc__shm_path(name, sizeof name, c->key, "", false, err);
    if (rc != 0) return rc;
    rc = shmrpc__shm_open_segment(name, sizeof(shmrpc__shm_ctl), &c->ctl_fd, &size, err);
    if (rc == SHMRPC_ESYS(ENOENT)) {
        shmrpc__msg_set(err, "no server at shm://%s", c->key);
        return SHMRPC_EUNAVAIL;
    }
    if (rc == SHMRPC_EPROTO) { /* created but not sized yet: as good as not there yet */
        shmrpc__msg_set(err, "the server of shm://%s is still starting", c->key);
        return SHMRPC_EUNAVAIL;
    }
    if (rc != 0) return rc;
    /* The header and the table after it, as long as the segment (which its checks have
     * bounded), at most what a table may be. */
    if (size > shmrpc__shm_ctl_size(SHMRPC__TABLE_MAX)) size = shmrpc__shm_ctl_size(SHMRPC__TABLE_MAX);
    c->ctl = shmrpc__shm_map(c->ctl_fd, size);
    if (c->ctl == NULL) return shmrpc__shm_sys_error(err, "cannot map", name);
    c->ctl_size = size;
    uint32_t magic = atomic_load_explicit(&c->ctl->magic, memory_order_acquire);
    if (magic == 0) {
        shmrpc__msg_set(err, "the server of shm://%s is still starting", c->key);
        return SHMRPC_EUNAVAIL;
    }
    if (magic != SHMRPC__SHM_MAGIC || c->ctl->version != SHMRPC__SHM_VERSION) {
        shmrpc__msg_set(err, "shm://%s is not a shmrpc service of version %u", c->key,
                        SHMRPC__SHM_VERSION);
        return SHMRPC_EVERSION;
    }
    c->owner = atomic_load(&c->ctl->owner.pid);
    c->owner_start = atomic_load(&c->ctl->owner.start);
    c->max_msg = c->ctl->max_msg; /* read once, never trusted beyond the cap */
    if (c->max_msg > SHMRPC__MAX_MSG_CAP) c->max_msg = SHMRPC__MAX_MSG_CAP;
    if (atomic_load(&c->ctl->state) != SHM_READY || !shmrpc__proc_alive(c->owner, c->owner_start)) {
        shmrpc__msg_set(err, "the server of shm://%s is gone", c->key);
        return SHMRPC_EUNAVAIL;
    }
    table t;
    rc = parse_table(c->ctl, c->ctl_size, &t, err);
    if (rc == 0) rc = shmrpc__table_accept(info, &t.info, map_ids, c->table, err);
    table_free(&t);
    return rc;
}

static int claim_slot(shm_conn *c, shmrpc_buf *err)
{
    int32_t pid = getpid();
    uint64_t start = shmrpc__proc_start(pid);
    for (unsigned i = 0; i < SHMRPC__MAX_CONNS; i++) {
        shmrpc__shm_slot *s = &c->ctl->slots[i];
        uint32_t free_state = SHM_SLOT_FREE;
        if (!atomic_compare_exchange_strong(&s->state, &free_state, SHM_SLOT_CLAIMED)) continue;
        /* The gen first: a sweep's note of this slot without a pid, made before, no longer
         * matches (see pidless_for_long). */
        c->gen = atomic_fetch_add(&s->gen, 1) + 1;
        shmrpc__shm_proc_set(&s->client, pid, start);
        atomic_store(&s->counted, 0); /* whatever a bad write left */
        c->slot = i;
        return 0;
    }
    shmrpc__msg_set(err, "all %d connections of shm://%s are in use", SHMRPC__MAX_CONNS, c->key);
    return SHMRPC_EBUSY;
}

/* Rings the doorbell: a server that serves in its listening process (no manager) looks at
 * its rendezvous when a worker wakes. */
static void ring(void *arg)
{
    shm_conn *c = arg;
    shmrpc__shm_bell(c->ctl);
}

/* Hands the channel over at the rendezvous, connecting again if the manager dropped the
 * connection before answering (it drops the oldest handshake when too many arrive at
 * once), within the deadline. */
static int hand_over(shm_conn *c, int64_t deadline, shmrpc_buf *err)
{
    uint32_t flags = prctl(PR_GET_DUMPABLE) == 1 ? SHMRPC__RDV_DUMPABLE : 0;
    for (int attempt = 0;; attempt++) {
        int rc = shmrpc__rdv_hello(c->rdv_fd, c->slot, c->gen, flags, c->chan.fd, deadline, ring, c,
                                   err);
        if ((rc != SHMRPC_EUNAVAIL && rc != SHMRPC_EBUSY) || attempt >= 8 ||
            shmrpc__now_ns() >= deadline)
            return rc;
        close(c->rdv_fd);
        c->rdv_fd = -1;
        int32_t pid;
        rc = shmrpc__rdv_connect(c->key, deadline - shmrpc__now_ns(), &c->rdv_fd, &pid, err);
        if (rc == 0 && pid != c->rdv_pid) {
            shmrpc__msg_set(err, "the rendezvous of shm://%s changed hands during the connect",
                            c->key);
            return SHMRPC_EUNAVAIL;
        }
        if (rc != 0) return rc == SHMRPC_ESYS(ECONNREFUSED) ? SHMRPC_EUNAVAIL : rc;
    }
}

static int create_chan(shm_conn *c, int64_t deadline, shmrpc_buf *err)
{
    /* Without a rendezvous (a server of an older version), workers open the channel
     * through /proc/PID/fd, which the kernel refuses for a process that is not dumpable:
     * say so now, rather than let every call time out. */
    if (c->rdv_fd < 0 && prctl(PR_GET_DUMPABLE) != 1) {
        shmrpc__msg_set(err,
                        "shm://%s has no rendezvous (a server of an older version), so its "
                        "workers open this process's channel through /proc/%d/fd, which needs "
                        "a dumpable process; this one is not (PR_SET_DUMPABLE, setuid or "
                        "capabilities)",
                        c->key, (int)getpid());
        return SHMRPC_EPERM;
    }
    c->budget = 0; /* as a new channel says */
    c->meta_len = 0;
    c->ring = 0;
    char name[160];
    shmrpc__shm_chan_name(name, sizeof name, c->key, c->owner, c->slot, c->gen);
    int rc = shmrpc__shm_create_channel(name + 1, PAGE, &c->chan.fd, err);
    if (rc != 0) return rc;
    struct stat st;
    if (fstat(c->chan.fd, &st) != 0) {
        /* Closed here: detach keeps only a descriptor of the channel's inode, unknown yet. */
        rc = shmrpc__shm_sys_error(err, "cannot stat", name);
        close(c->chan.fd);
        c->chan.fd = -1;
        return rc;
    }
    c->chan_ino = st.st_ino;
    c->chan.head = shmrpc__shm_map(c->chan.fd, PAGE);
    if (c->chan.head == NULL) return shmrpc__shm_sys_error(err, "cannot map", name);
    c->chan.mapped = PAGE;
    c->chan.max_size = shmrpc__chan_max_size(c->max_msg);
    c->call = 0; /* a new channel's claim is 0: its first call is 1 (shmrpc__shm_claimable) */
    atomic_store(&c->chan.head->size, PAGE);
    atomic_store(&c->chan.head->state.word, SHM_CHAN_IDLE);
    atomic_store(&c->ctl->slots[c->slot].chan_fd, c->chan.fd);
    if (c->rdv_fd >= 0 && (rc = hand_over(c, deadline, err)) != 0) return rc;
    uint32_t claimed = SHM_SLOT_CLAIMED;
    if (!atomic_compare_exchange_strong(&c->ctl->slots[c->slot].state, &claimed, SHM_SLOT_OPEN)) {
        shmrpc__msg_set(err, "the slot of shm://%s was taken back during the connect", c->key);
        return SHMRPC_EUNAVAIL;
    }
    return 0;
}

/* A connection to shm://key, not attached yet. */
static shm_conn *conn_new(const char *key, const shmrpc_service_info *info,
                          const shmrpc_wait_opts *wait, uint32_t *map_ids, shmrpc__table *table)
{
    shm_conn *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->base.ops = &shm_conn_ops;
    c->ctl_fd = c->chan.fd = c->rdv_fd = -1;
    c->slot = UINT_MAX;
    c->last_worker = UINT32_MAX;
    c->pid = self();
    c->info = info;
    c->map = map_ids;
    c->table = table;
    snprintf(c->key, sizeof c->key, "%s", key);
    c->wait = *wait;
    return c;
}

int shmrpc__shm_connect(const char *where, const shmrpc_service_info *info,
                        const shmrpc__client_cfg *cfg, uint32_t *map_ids, shmrpc__table *table,
                        shmrpc__conn **out, shmrpc_buf *err)
{
    int rc = shmrpc__shm_check_key(where, err);
    if (rc != 0) return rc;
    shm_conn *c = conn_new(where, info, &cfg->wait, map_ids, table);
    if (c == NULL) return SHMRPC_ENOMEM;
    rc = attach(c, shmrpc__now_ns() + RDV_WAIT_NS, err);
    if (rc != 0) {
        shm_conn_close(&c->base);
        return rc;
    }
    *out = &c->base;
    return 0;
}

/* Lets go of the server: the channel and the slot too, in the process that made them
 * (a forked child only unmaps what it inherited). A slot that names another process by
 * now (a sweep freed it after a bad write, and another client took it) is not ours. */
static void detach(shm_conn *c)
{
    bool mine = getpid() == c->pid;
    /* The program may have closed the channel's fd, and reused its number: not ours then. */
    if (c->chan.fd >= 0 && !chan_held(c)) c->chan.fd = -1;
    shmrpc__chan_unmap(&c->chan);
    c->loan = NULL;
    if (mine && c->ctl && c->slot < SHMRPC__MAX_CONNS) {
        shmrpc__shm_slot *s = &c->ctl->slots[c->slot];
        uint32_t state = atomic_load(&s->state);
        if (atomic_load(&s->client.pid) == c->pid && state != SHM_SLOT_FREE &&
            state != SHM_SLOT_FREEING) {
            shmrpc__shm_proc_set(&s->client, 0, 0); /* a free slot has no pid (see the sweep) */
            atomic_store(&s->state, SHM_SLOT_FREE);
        }
    }
    /* After the slot: the manager then finds it free at the hang-up. */
    if (c->rdv_fd >= 0) close(c->rdv_fd);
    c->rdv_fd = -1;
    if (c->ctl) munmap(c->ctl, c->ctl_size);
    if (c->ctl_fd >= 0) close(c->ctl_fd);
    c->ctl = NULL;
    c->ctl_fd = -1;
    c->slot = UINT_MAX;
}

/* Connects: the rendezvous first, so that a service of another uid is refused by what
 * the kernel says of it; then the control segment, a slot, and the channel, handed over
 * at the rendezvous. No rendezvous there: a server of an older version (or one still
 * starting, which binds it before it publishes the segment: so it is tried once more
 * once the segment is found ready). */
static int attach(shm_conn *c, int64_t deadline, shmrpc_buf *err)
{
    int64_t left = deadline - shmrpc__now_ns();
    int rc = shmrpc__rdv_connect(c->key, left, &c->rdv_fd, &c->rdv_pid, err);
    bool refused = rc == SHMRPC_ESYS(ECONNREFUSED);
    if (rc != 0 && !refused) return rc;
    rc = open_ctl(c, c->info, c->map, err);
    if (rc == 0 && refused) {
        rc = shmrpc__rdv_connect(c->key, deadline - shmrpc__now_ns(), &c->rdv_fd, &c->rdv_pid, err);
        if (rc == SHMRPC_ESYS(ECONNREFUSED)) rc = 0;
    }
    if (rc == 0 && c->rdv_fd >= 0 && c->rdv_pid != c->owner) {
        shmrpc__msg_set(err,
                        "the rendezvous of shm://%s is held by pid %" PRId32
                        ", not by the service's owner (pid %" PRId32 ")",
                        c->key, c->rdv_pid, c->owner);
        rc = SHMRPC_EUNAVAIL;
    }
    if (rc == 0) rc = claim_slot(c, err);
    if (rc == 0) rc = create_chan(c, deadline, err);
    return rc;
}

/* After the server went away, a later call connects again (never the failed call: it
 * is not sent twice), no more often than a backoff that doubles up to a second, with
 * jitter so that a crowd of clients does not come back at once. */
static int reconnect(shm_conn *c, int64_t deadline, shmrpc_buf *err)
{
    int64_t now = shmrpc__now_ns();
    if (now < c->retry_ns) {
        shmrpc__msg_set(err, "the server of shm://%s went away; trying again shortly", c->key);
        return SHMRPC_EUNAVAIL;
    }
    detach(c);
    /* The rendezvous is waited for within the call's deadline: a call waits nowhere else. */
    int rc = attach(c, deadline < now + RDV_WAIT_NS ? deadline : now + RDV_WAIT_NS, err);
    if (rc == 0) {
        c->broken = c->lost = false;
        c->backoff_ns = 0;
        return 0;
    }
    detach(c);
    c->backoff_ns = c->backoff_ns ? c->backoff_ns * 2 : 10 * 1000 * 1000;
    if (c->backoff_ns > 1000 * 1000 * 1000) c->backoff_ns = 1000 * 1000 * 1000;
    c->retry_ns = now + c->backoff_ns / 2 + (int64_t)((uint64_t)now % (uint64_t)c->backoff_ns);
    return rc == SHMRPC_EUNAVAIL || rc == SHMRPC_ESYS(ENOENT) ? SHMRPC_EUNAVAIL : rc;
}

static void shm_conn_close(shmrpc__conn *base)
{
    shm_conn *c = (shm_conn *)base;
    /* client.c ended the stream already, if one was open: this only makes sure. */
    shm_stream_end(base);
    for (unsigned i = 1; c->lanes && i < c->lanes->n; i++) { /* their calls were abandoned first */
        detach(c->lanes->at[i]);
        free(c->lanes->at[i]);
    }
    free(c->lanes);
    detach(c);
    free(c);
}

/* Whether the channel's fd still leads to the channel this client maps: workers open it
 * through that fd, so once the program closed it (or put another file in its place) a
 * worker that had not opened it yet can never serve it. */
static bool chan_held(shm_conn *c)
{
    struct stat st;
    return fstat(c->chan.fd, &st) == 0 ? st.st_ino == c->chan_ino : errno != EBADF;
}

/* Whether a worker that notes it is taking this connection's channel still runs: one
 * between its claim and naming itself the taker. */
static bool taking_alive(shm_conn *c)
{
    for (unsigned i = 0; i < SHMRPC__MAX_WORKERS; i++) {
        shmrpc__shm_worker *w = &c->ctl->workers[i];
        if (atomic_load_explicit(&w->taking, memory_order_acquire) != c->slot + 1 ||
            atomic_load(&w->state) != SHM_WORKER_RUNNING)
            continue;
        if (shmrpc__proc_running(atomic_load(&w->proc.pid), atomic_load(&w->proc.start)))
            return true;
    }
    return false;
}

/* Whether a worker has this connection's last call: took it, and may run it still. */
static bool worker_has(shm_conn *c, uint64_t claim)
{
    return claim == shmrpc__shm_claim(c->call, SHM_CLAIM_TAKEN) ||
           claim == shmrpc__shm_claim(c->call, SHM_CLAIM_ABANDONED) ||
           claim == shmrpc__shm_claim(c->call, SHM_CLAIM_CANCELLED);
}

/* Whether the process that took the channel's call, seen claimed, still runs (and is not
 * exiting: it lets go of the channel's lock early in its exit, and will never answer).
 * The worker writes the call's number after its pid and start, so the number read first
 * vouches for them. Until then the taker is a worker whose `taking` names the channel:
 * one that notes it before its exchange and clears it only after naming itself, so a call
 * neither named nor noted by a running worker was taken by one that died in between. */
static bool taker_alive(shm_conn *c)
{
    shmrpc__shm_chan *h = c->chan.head;
    if (atomic_load(&h->taker_call) != c->call) {
        if (taking_alive(c)) return true;
        /* A note found cleared was cleared after the naming: look again. */
        if (atomic_load(&h->taker_call) != c->call) return false;
    }
    int32_t pid = atomic_load(&h->taker.pid);
    return pid == 0 || shmrpc__proc_running(pid, atomic_load(&h->taker.start));
}

/* Whether the connection's slot still names it: open, of its gen, with its pid and its
 * channel's fd. Workers serve the channel that the slot names, so a slot that names
 * another (rewritten by a broken process, or freed by a sweep that took this client for
 * dead) is never served. */
static bool slot_ours(shm_conn *c)
{
    shmrpc__shm_slot *s = &c->ctl->slots[c->slot];
    return atomic_load(&s->state) == SHM_SLOT_OPEN && atomic_load(&s->gen) == c->gen &&
           atomic_load(&s->client.pid) == c->pid && atomic_load(&s->chan_fd) == c->chan.fd;
}

/* While a call waits: it must not have been cancelled, and the server, and the worker
 * serving it, must still be there. The
 * server is looked at first, so that a server killed with its workers reads as gone
 * (unavailable) rather than as one worker dead, unless the kill reached the worker
 * noticeably before the manager. */
static int client_check(void *arg)
{
    shm_conn *c = arg;
    /* A call in flight is cancelled by client.c (shm_cancel), each by its own count. */
    if (c->p == NULL && c->bn == 0 && shmrpc__conn_cancelled(&c->base)) return SHMRPC_ECANCELLED;
    shmrpc__shm_chan *h = c->chan.head;
    uint32_t st = atomic_load(&h->state.word);
    uint64_t claim = atomic_load(&h->claim);
    bool busy = st == SHM_CHAN_REQUEST && worker_has(c, claim);
    /* Only this client writes the call's number: another one under its REQUEST is a bad
     * write, put back. Meanwhile no worker claims the call under it (it does not follow the
     * claim's), and the one serving the call answers it all the same (hand_back). */
    if (st == SHM_CHAN_REQUEST && atomic_load(&h->call) != c->call)
        atomic_store_explicit(&h->call, c->call, memory_order_release);
    /* A claim of neither this call nor the one before is a bad write, after which no
     * worker would take a call again: set back to the one before, so that one takes this
     * one. Not while a worker named itself this call's taker or notes it is taking the
     * channel: it may run the call under that claim, and a second one would run it too
     * (a note found cleared was cleared after the naming: the taker is read again). */
    if (st == SHM_CHAN_REQUEST && claim >> 2 != c->call && (claim >> 2) + 1 != c->call &&
        atomic_load(&h->taker_call) != c->call && !taking_alive(c) &&
        atomic_load(&h->taker_call) != c->call)
        atomic_compare_exchange_strong(&h->claim, &claim,
                                       shmrpc__shm_claim(c->call - 1, SHM_CLAIM_WITHDRAWN));
    if (!shmrpc__proc_alive(c->owner, c->owner_start)) return SHMRPC_EUNAVAIL;
    if (busy && !taker_alive(c)) return SHMRPC_EPEERDIED;
    /* A stopping server finishes the calls its workers took; the others will not run. */
    if (!busy && atomic_load(&c->ctl->state) != SHM_READY) return SHMRPC_EUNAVAIL;
    /* A call that a worker took is answered in the channel whatever the slot says; one
     * not taken yet never will be if the slot no longer names the channel. */
    if (!busy && (!slot_ours(c) || (st == SHM_CHAN_REQUEST && !chan_held(c)))) {
        c->lost = true;
        return SHMRPC_EUNAVAIL;
    }
    /* A bad write may have cleared the pending bit of a request not taken yet: ring again
     * (a worker that finds the call claimed meanwhile just moves on). */
    uint64_t bit = (uint64_t)1 << (c->slot % 64);
    if (st == SHM_CHAN_REQUEST && !busy && !(atomic_load(&c->ctl->pending[c->slot / 64]) & bit))
        ring_request(c);
    return 0;
}

/* Rings the doorbell for this connection's request (shmrpc__stream_ring). */
static void ring_request(shm_conn *c)
{
    shmrpc__shm_ring(c->ctl, c->slot);
    c->rung = true;
}

/* Rings for the request of a call in flight, which a worker may also watch: its pending bit
 * is set whatever the watcher (a worker that finds the call taken from the state moves on),
 * and that exchange, after the release of the REQUEST, hands the request to whoever takes
 * the bit, so the state needs no sequentially consistent store. The doorbell rings only
 * when another request of the bit's word was waiting or a worker sleeps: a worker takes
 * that other one, and every worker looks at the bits again after each call, before it
 * waits on the doorbell (and a bit cleared unserved rings for the others:
 * shmrpc__shm_unring). So a busy client's lanes cost one exchange a call, not three. */
static void ring_lane(shm_conn *c)
{
    uint64_t bit = (uint64_t)1 << (c->slot % 64);
    uint64_t was = atomic_fetch_or(&c->ctl->pending[c->slot / 64], bit);
    c->rung = (was & ~bit) == 0 || atomic_load(&c->ctl->sleeping) != 0;
    if (c->rung) shmrpc__shm_bell(c->ctl);
}

/* How long after its wait's first clock read (a few microseconds in, or its first yield)
 * a request that a watching worker left untaken rings after all. A watcher that runs
 * takes a request within a fraction of a microsecond; one that has not in 10 us was
 * preempted, is stuck or died (or a bad write made it up), and any worker may take the
 * call then. Ringing at the first clock read instead handed a call to the other worker
 * whenever the watcher was a little late, which kept that worker awake and spinning: with
 * one client on two workers, three processes then counted in awake on two CPUs, every
 * wait yielded as crowded, and yielding waits were late at once (0.37-0.87x the calls/s of
 * one worker; 0.68-1.69x with this; issue 37). On a busy machine the ring comes at the
 * first clock read past the 10 us, which may follow a yield that lasted a slice. */
#define RING_LATE_NS ((int64_t)10 * 1000)

/* The wait lasts (RING_LATE_NS): a request that a watching worker left untaken rings after
 * all. One that a worker claimed runs: ringing would only wake a worker for nothing. The
 * claim's line is read here, once per call that lasts, not per call. */
static void ring_late(void *arg)
{
    shm_conn *c = arg;
    shmrpc__shm_chan *h = c->chan.head;
    if (!c->rung && atomic_load(&h->state.word) == SHM_CHAN_REQUEST &&
        !worker_has(c, atomic_load(&h->claim)))
        ring_request(c);
}

/* A call that counted in awake no longer does: the mark first, so that a death between
 * the two leaves the count too high (repaired by sweeps), never too low. */
static void count_out(shm_conn *c)
{
    if (!c->counted) return;
    atomic_store(&c->ctl->slots[c->slot].counted, 0);
    atomic_fetch_sub(&c->ctl->awake, 1);
    c->counted = false;
}

/* Whether the channel's lock is this call's taker's: the worker stores its id into the
 * lock before it writes taker_call (release). Before that the word may still hold the
 * last call's taker, which would let go of it without a syscall once this call's taker
 * wrote over the waiter bit that the kernel set there: a sleeper on it would wait for its
 * whole slice. */
static bool lock_is_takers(void *arg)
{
    shm_conn *c = arg;
    return atomic_load_explicit(&c->chan.head->taker_call, memory_order_acquire) == c->call;
}

/* Waits until the call leaves REQUEST: its answer. */
static int await_answer(shm_conn *c, shmrpc__deadline *dl)
{
    shmrpc__shm_chan *h = c->chan.head;
    /* The worker that took the last call is the best guess at who takes this one. */
    uint32_t wi = c->last_worker;
    /* Once taken, the call's worker holds the channel's lock: sleeping on it, the client
     * is woken by the kernel at the worker's death as well as by its answer. Until the
     * taker named itself, the client sleeps on the state, which the taker then wakes. */
    shmrpc__waiter w = {.opts = &c->wait,
                        .peer = wi < SHMRPC__MAX_WORKERS ? &c->ctl->workers[wi].presence : NULL,
                        .self = &c->ctl->slots[c->slot].presence,
                        .check = client_check,
                        .check_arg = c,
                        .awake = &c->ctl->awake,
                        .counted = &c->counted,
                        .counted_mark = &c->ctl->slots[c->slot].counted,
                        .owner_lock = &h->lock,
                        .owner_ready = lock_is_takers,
                        .lazy = dl,
                        .lasts = ring_late,
                        .late_ns = RING_LATE_NS};
    return shmrpc__wait_while(&h->state, SHM_CHAN_REQUEST, 0, &w); /* the deadline: dl */
}

/* After a failed wait: withdraws a request no worker took (the claim's swap that a worker
 * taking it makes too; then *withdrawn), or leaves a call being served to finish on its own
 * (or resets the channel if its worker died). */
static int give_up_how(shm_conn *c, int rc, shmrpc_buf *err, bool *withdrawn)
{
    shmrpc__shm_chan *h = c->chan.head;
    uint32_t st;
    *withdrawn = false;
    for (;;) {
        st = atomic_load(&h->state.word);
        if (st == SHM_CHAN_RESPONSE) return 0; /* the answer came after all */
        uint64_t claim = atomic_load(&h->claim);
        bool taken = worker_has(c, claim);
        if (st == SHM_CHAN_REQUEST && !taken) {
            if (!atomic_compare_exchange_strong(&h->claim, &claim,
                                                shmrpc__shm_claim(c->call, SHM_CLAIM_WITHDRAWN)))
                continue;                                /* a worker took it meanwhile */
            atomic_store(&h->state.word, SHM_CHAN_IDLE); /* no worker will take it now */
            shmrpc__shm_unring(c->ctl, c->slot);
            *withdrawn = true;
            if (rc == SHMRPC_ETIMEDOUT)
                shmrpc__msg_set(
                    err, "the deadline passed before a worker took the call; it did not run");
            if (rc == SHMRPC_ECANCELLED)
                shmrpc__msg_set(err, "the call was cancelled by its client before a worker took "
                                     "it; it did not run");
        } else if (st == SHM_CHAN_REQUEST && rc == SHMRPC_EPEERDIED) {
            /* Its worker is dead: nobody else writes the state. */
            atomic_store(&h->state.word, SHM_CHAN_IDLE);
            if (atomic_load(&h->taker_call) == c->call)
                shmrpc__msg_set(err, "the worker (pid %" PRId32 ") died during the call",
                                atomic_load(&h->taker.pid));
            else
                shmrpc__msg_set(err, "the worker that took the call died before it ran it");
        } else if (st == SHM_CHAN_REQUEST &&
                   atomic_compare_exchange_strong(
                       &h->claim, &claim,
                       shmrpc__shm_claim(c->call, rc == SHMRPC_ECANCELLED ? SHM_CLAIM_CANCELLED
                                                                          : SHM_CLAIM_ABANDONED))) {
            if (rc == SHMRPC_ETIMEDOUT)
                shmrpc__msg_set(err,
                                "the deadline passed while the call ran; it may still complete");
            if (rc == SHMRPC_ECANCELLED)
                shmrpc__msg_set(err, "the call was cancelled by its client while it ran; it may "
                                     "still complete");
        }
        break;
    }
    if (rc == SHMRPC_EUNAVAIL && c->lost) {
        c->broken = true;
        shmrpc__msg_set(err,
                        "this connection's slot or channel at shm://%s no longer leads to it (a "
                        "broken client wrote over the slot, or this program closed the "
                        "channel's fd?); the call %s; the next call connects again",
                        c->key, *withdrawn ? "did not run" : "may have run");
    } else if (rc == SHMRPC_EUNAVAIL) {
        c->broken = true;
        shmrpc__msg_set(err, "the server of shm://%s went away during the call; it %s", c->key,
                        *withdrawn ? "did not run" : "may have run");
    }
    return rc;
}

static int give_up(shm_conn *c, int rc, shmrpc_buf *err)
{
    bool withdrawn;
    return give_up_how(c, rc, err, &withdrawn);
}

/* A call abandoned earlier may still occupy the channel: wait for its worker to let go. */
static int channel_ready(shm_conn *c, shmrpc__deadline *dl, shmrpc_buf *err)
{
    shmrpc__shm_chan *h = c->chan.head;
    for (;;) {
        uint32_t st = atomic_load(&h->state.word);
        /* The last call's answer stays until the next request: writing IDLE after it
         * would take the line back from a worker watching it, only to write it again. */
        if (st == SHM_CHAN_IDLE || st == SHM_CHAN_RESPONSE) return 0;
        /* A leftover answer, a state no side writes, or a call whose worker is gone: the
         * channel is ours again. A worker still serving one is waited for, never raced. */
        bool served = st == SHM_CHAN_REQUEST && worker_has(c, atomic_load(&h->claim));
        if (!served || !taker_alive(c)) {
            atomic_store(&h->state.word, SHM_CHAN_IDLE);
            return 0;
        }
        shmrpc__waiter w = {.opts = &c->wait,
                            .check = client_check,
                            .check_arg = c,
                            .owner_lock = &h->lock,
                            .owner_ready = lock_is_takers};
        int rc = shmrpc__wait_while(&h->state, st, shmrpc__deadline_at(dl, shmrpc__now_ns()), &w);
        if (rc == SHMRPC_ETIMEDOUT) {
            shmrpc__msg_set(err, "an earlier call that timed out still runs on this connection");
            return rc;
        }
        if (rc == SHMRPC_ECANCELLED) {
            shmrpc__msg_set(err, "the call was cancelled by its client while an earlier one held "
                                 "the connection; it did not run");
            return rc;
        }
        if (rc != 0 && rc != SHMRPC_EPEERDIED) return rc;
    }
}

/* A connection is used only by the process that opened it. */
static int not_ours(shm_conn *c, shmrpc_buf *err)
{
    shmrpc__msg_set(err,
                    "a shm:// connection belongs to the process that opened it "
                    "(pid %" PRId32 "): connect again in this one",
                    c->pid);
    return SHMRPC_EINVAL;
}

/* Before a request of len bytes is written: the connection's slot (connecting again if
 * it was lost), the server's maximum, an earlier call still holding the channel, and room
 * in the channel. */
static int call_begin(shm_conn *c, size_t len, shmrpc__deadline *dl, shmrpc_buf *err)
{
    /* A slot taken from this connection while it was idle: nothing was sent yet, so
     * connecting again now cannot run anything twice. */
    if (!c->broken && !slot_ours(c)) c->broken = c->lost = true;
    int rc = c->broken ? reconnect(c, shmrpc__deadline_at(dl, shmrpc__now_ns()), err) : 0;
    if (rc != 0) { /* said, for may_have_run (python/shmrpc): nothing left yet */
        shmrpc__msg_append(err, "; this call did not run");
        return rc;
    }
    if (len > c->max_msg) {
        shmrpc__msg_set(err, "a request of %zu bytes is above the server's maximum of %" PRIu64,
                        len, c->max_msg);
        return SHMRPC_ETOOBIG;
    }
    rc = channel_ready(c, dl, err);
    if (rc == SHMRPC_EUNAVAIL) { /* the server, or the slot, went away: nothing was sent */
        c->broken = true;
        shmrpc__msg_set(err, "%s shm://%s while an earlier call on it ended; this call did not run",
                        c->lost ? "this connection lost its slot or channel at"
                                : "the server went away from",
                        c->key);
    }
    /* A small request rides in the state's line, which REQUEST moves anyway. */
    if (rc == 0 && len > SHMRPC__CHAN_SMALL) rc = shmrpc__chan_reserve(&c->chan, len, err);
    return rc;
}

/* Sends the request of method sid with its metadata meta (after call_begin), and the size of
 * its stream's ring (0: a call): 0, or the status of a failure to make room for the
 * metadata (nothing sent). A request already in the channel's data (a loan) is not copied.
 * A call that counts may count in the service's awake at once; one of many in flight never
 * does (their waiter counts once for all, lanes_wait). */
static int call_post(shm_conn *c, uint32_t sid, shmrpc_bytes req, shmrpc_bytes meta,
                     shmrpc__deadline *dl, bool counts, uint32_t ring, shmrpc_buf *err)
{
    int rc;
    shmrpc__shm_chan *h = c->chan.head;
    uint8_t *dst = req.len <= SHMRPC__CHAN_SMALL ? h->small : shmrpc__chan_data(&c->chan);
    if (req.len && dst != req.ptr) memcpy(dst, req.ptr, req.len);
    h->method = sid;
    h->req_len = (uint32_t)req.len;
    /* The call's metadata after the request (shm.h), in room made now: the request is in the
     * channel already, which a growth keeps. */
    uint32_t mlen = (uint32_t)meta.len;
    if (mlen) {
        uint64_t off = req.len <= SHMRPC__CHAN_SMALL ? 0 : req.len;
        if ((rc = shmrpc__chan_reserve(&c->chan, off + mlen, err)) != 0) return rc;
        h = c->chan.head;
        /* Left as they are when the channel holds these bytes already (the last call's
         * pairs, and no large message since): lines the worker only reads then stay in
         * both caches instead of moving to it again on every call. */
        uint8_t *at = shmrpc__chan_data(&c->chan) + off;
        if (memcmp(at, meta.ptr, mlen) != 0) memcpy(at, meta.ptr, mlen);
    }
    if (mlen != c->meta_len) {
        atomic_store_explicit(&h->meta_len, mlen, memory_order_relaxed);
        c->meta_len = mlen;
    }
    /* The time the call has, for the handler (shm.h): its timeout, or what is left of it
     * once the call has waited already (then the clock has been read anyway). */
    uint64_t budget = 0; /* none */
    if (dl->timeout_ms >= 0) {
        int64_t left = dl->at != 0                            ? dl->at - shmrpc__now_ns()
                       : dl->timeout_ms < INT64_MAX / 1000000 ? dl->timeout_ms * 1000000
                                                              : INT64_MAX;
        budget = left > 0 ? (uint64_t)left : 1; /* 0 would say "none" */
    }
    if (budget != c->budget) {
        atomic_store_explicit(&h->budget_ns, budget, memory_order_relaxed);
        c->budget = budget;
    }
    if (ring != c->ring) { /* a stream's ring, or 0 (shm.h) */
        atomic_store_explicit(&h->stream, ring, memory_order_relaxed);
        c->ring = ring;
    }
    /* Released: a worker that reads this number reads the request before it (shm.h). */
    atomic_store_explicit(&h->call, ++c->call, memory_order_release);
    /* Only this client sleeps on its channel, and not now: whatever a bad write left in
     * the count is undone here, so a lost wake-up cannot repeat on every call. */
    if (atomic_load_explicit(&h->state.sleepers, memory_order_relaxed) != 0)
        atomic_store(&h->state.sleepers, 0); /* only then: a locked store waits for the line */
    /* Where this call would make the service crowded, it counts at once, as every call did
     * before: waiters that outnumber the CPUs must see so from the first turn of their
     * spins, or the ones whose calls come back quickly keep the workers from the others
     * (4 clients on 2 workers: fairness 0.46 rather than 0.9). Elsewhere (one client of one
     * worker) it counts only once its wait lasts; the read alone does not move the line
     * where nobody writes it. */
    c->counted = false;
    if (counts &&
        (int)atomic_load_explicit(&c->ctl->awake, memory_order_relaxed) >= shmrpc__ncpus()) {
        atomic_fetch_add(&c->ctl->awake, 1);
        c->counted = true;
        atomic_store_explicit(&c->ctl->slots[c->slot].counted, 1, memory_order_relaxed);
    }
    /* Sequentially consistent, as the watcher's read after it and a worker's exchange of
     * the watcher before its look at the state: either the client sees that nobody
     * watches, and rings, or the worker that stops watching sees the request. A worker
     * that watches the channel takes the request from its state: no doorbell, whose line
     * would move twice more per call. */
    c->rung = false;
    if (!counts) { /* a call in flight: see ring_lane */
        atomic_store_explicit(&h->state.word, SHM_CHAN_REQUEST, memory_order_release);
        ring_lane(c);
        return 0;
    }
    atomic_store(&h->state.word, SHM_CHAN_REQUEST);
    if (atomic_load(&h->watcher) == 0) ring_request(c);
    return 0;
}

/* Sends the request of method sid and waits for its answer: 0 once it is there. */
static int call_send(shm_conn *c, uint32_t sid, shmrpc_bytes req, shmrpc__deadline *dl,
                     shmrpc_buf *err)
{
    int rc = call_post(c, sid, req, c->base.meta, dl, true, 0, err);
    if (rc != 0) return rc;
    /* A call not counted yet counts once its wait lasts (its first clock read): one
     * answered sooner writes nothing on awake's line, which the workers read as they spin.
     * Its slot's counted says so, for whoever takes back a dead client's share. */
    rc = await_answer(c, dl);
    if (rc != 0 && (rc = give_up(c, rc, err)) != 0) {
        count_out(c);
        return rc;
    }
    return 0;
}

/* The answer that came: its status, and its bytes where they are in the channel (which
 * it follows when the worker grew it). The caller then ends the call (call_end). */
static int call_answer(shm_conn *c, int32_t *status, shmrpc_bytes *data, shmrpc_buf *err)
{
    shmrpc__shm_chan *h = c->chan.head;
    *status = h->status;
    uint32_t len = h->resp_len; /* read once */
    /* Who took it, on the line the answer came on: the likely taker of the next call. */
    c->last_worker = atomic_load_explicit(&h->worker, memory_order_relaxed);
    int rc = len > c->max_msg            ? SHMRPC_EPROTO
             : len <= SHMRPC__CHAN_SMALL ? 0
                                         : shmrpc__chan_follow(&c->chan, len, err);
    /* Following an answer that grew the channel may have moved the mapping (mremap): h
     * pointed into the old one, unmapped now or reused by the next mmap. */
    h = c->chan.head;
    *data = shmrpc_bytes_of(len <= SHMRPC__CHAN_SMALL ? h->small : shmrpc__chan_data(&c->chan),
                            rc == 0 ? len : 0);
    return rc;
}

/* The call no longer counts as awake. The answer stays in the channel until the next
 * request (channel_ready takes RESPONSE as the client's): writing IDLE after it would take
 * the line back from a worker watching it, only to write it again. */
static void call_end(shm_conn *c)
{
    count_out(c);
}

/* A call that failed on the server: its status, its message from the answer's bytes. Only
 * the statuses of status.h pass, as over tcp:// (until this one, those after
 * SHMRPC_EOWNERDEAD read as SHMRPC_EPROTO: a handler's SHMRPC_ECANCELLED among them). */
static int call_failed(int32_t status, shmrpc_bytes data, shmrpc_buf *err)
{
    if (!shmrpc__status_known(status)) status = SHMRPC_EPROTO;
    shmrpc__msg_set(err, "%.*s", (int)data.len, (const char *)data.ptr);
    return status;
}

/* The answer that came, *resp pointing at it where it is, or why the call failed. Ends the
 * call; the answer stays where it is: only this client's next request writes the channel. */
static int answer_view(shm_conn *c, shmrpc_bytes *resp, shmrpc_buf *err)
{
    int32_t status;
    shmrpc_bytes data;
    int rc = call_answer(c, &status, &data, err);
    call_end(c);
    if (rc != 0) return rc;
    if (status != 0) return call_failed(status, data, err);
    *resp = data;
    return 0;
}

/* The answer that came, appended to resp, or why the call failed: its status. Ends the
 * call. */
static int call_result(shm_conn *c, shmrpc_buf *resp, shmrpc_buf *err)
{
    shmrpc_bytes data;
    int rc = answer_view(c, &data, err);
    if (rc != 0 || shmrpc_buf_append(resp, data.ptr, data.len) == 0) return rc;
    rc = resp->err; /* said as inproc:// says it */
    if (rc == SHMRPC_ETOOBIG)
        shmrpc__msg_set(err,
                        "a response of %zu bytes is larger than the client's maximum of %zu bytes",
                        data.len, resp->max);
    else
        shmrpc__msg_set(err, "%s", shmrpc_strerror(rc));
    return rc;
}

/* Whether a call of sid is the health method's while the manager drains: it marked the
 * control segment STOPPING, its workers finish what they took and take nothing new, so no
 * worker would answer; the field it wrote is its answer (docs/health.md). */
static bool health_draining(shm_conn *c, uint32_t sid)
{
    return sid == SHMRPC_HEALTH_METHOD_ID && c->ctl &&
           atomic_load(&c->ctl->state) == SHM_STOPPING &&
           shmrpc__proc_alive(c->owner, c->owner_start);
}

static int shm_call(shmrpc__conn *base, uint32_t sid, shmrpc_bytes req, shmrpc_buf *resp,
                    int64_t timeout_ms, shmrpc_buf *err)
{
    shm_conn *c = (shm_conn *)base;
    /* The deadline is computed when something first waits: a call answered within the
     * first turns of its spin reads no clock for it, and overruns by those turns at most. */
    shmrpc__deadline dl = {.at = 0, .timeout_ms = timeout_ms};
    c->loan = NULL; /* another call gives up the loan */
    if (self() != c->pid) return not_ours(c, err);
    if (health_draining(c, sid)) {
        uint8_t state = SHMRPC_HEALTH_DRAINING;
        return shmrpc_buf_append(resp, &state, 1) ? SHMRPC_ENOMEM : 0;
    }
    int rc = call_begin(c, req.len, &dl, err);
    if (rc == 0) rc = call_send(c, sid, req, &dl, err);
    return rc != 0 ? rc : call_result(c, resp, err);
}

/* --- calls in flight (shmrpc_client_start) ---------------------------------------------
 * Each call in flight runs on a lane: a connection of its own to the service, with its
 * slot and channel (lanes[0] is the one shmrpc__shm_connect made). A start takes a free
 * lane, opens another while all are busy (up to LANES_MAX, kept until the client closes),
 * or waits for one within its deadline. A lane carries one call at a time through the
 * state machine of a blocking call (its claim, its checks, its give-up), so every call runs
 * at most once and says whether it ran as one call does; workers take the lanes' requests
 * off the doorbell as anyone's, so calls run side by side on as many workers and are
 * answered in any order. One waiter (lanes_wait) watches all the lanes: it spins, counted
 * once in the service's awake, then sleeps on all their states at once (futex_waitv). */
#define LANE_RETRY_NS ((int64_t)100 * 1000 * 1000) /* after a lane failed to open */
#define LANE_CHECK_NS ((int64_t)5 * 1000 * 1000)   /* a lane's call is looked at so often */

/* Whether lane l's channel still holds a call its client gave up on (a worker runs it). */
static bool lane_held(shm_conn *l)
{
    if (l->p || l->bn || l->streams || l->broken || l->chan.head == NULL) return false;
    shmrpc__shm_chan *h = l->chan.head;
    return atomic_load(&h->state.word) == SHM_CHAN_REQUEST && worker_has(l, atomic_load(&h->claim));
}

/* Whether lane l may take a call now (one that is broken connects again at its start). */
static bool lane_free(shm_conn *l)
{
    return l->p == NULL && l->bn == 0 && !l->streams && !lane_held(l);
}

static int lanes_init(shm_conn *c, shmrpc_buf *err)
{
    if (c->lanes) return 0;
    c->lanes = calloc(1, sizeof *c->lanes);
    if (c->lanes == NULL) {
        shmrpc__msg_set(err, "out of memory for the calls in flight; the call did not run");
        return SHMRPC_ENOMEM;
    }
    c->lanes->at[0] = c;
    c->lanes->n = 1;
    return 0;
}

/* Opens one more lane within deadline: 0 and *out, or why not (in err). */
static int lane_open(shm_conn *c, int64_t deadline, shm_conn **out, shmrpc_buf *err)
{
    shm_conn *l = conn_new(c->key, c->info, &c->wait, c->map, c->table);
    if (l == NULL) return SHMRPC_ENOMEM;
    int64_t now = shmrpc__now_ns();
    int rc = attach(l, deadline - now < RDV_WAIT_NS ? deadline : now + RDV_WAIT_NS, err);
    if (rc != 0) {
        detach(l);
        free(l);
        return rc;
    }
    c->lanes->at[c->lanes->n++] = l;
    *out = l;
    return 0;
}

/* The wait of calls in flight no longer counts in awake (see count_out). */
static void lanes_count_out(shm_conn *c)
{
    if (!c->spin_counted) return;
    if (c->ctl && c->slot < SHMRPC__MAX_CONNS) atomic_store(&c->ctl->slots[c->slot].counted, 0);
    if (c->ctl) atomic_fetch_sub(&c->ctl->awake, 1);
    c->spin_counted = false;
}

/* Ends lane l's call: with its answer (rc 0), or after giving it up for rc (which finds
 * the answer there after all, or withdraws the call, or leaves it to its worker). */
static void lane_end(shm_conn *l, int rc)
{
    shmrpc__pending *p = l->p;
    if (rc != 0) rc = give_up(l, rc, &p->msg);
    if (rc == 0) rc = call_result(l, &p->resp, &p->msg);
    count_out(l);
    p->status = rc;
    p->done = true;
    p->where = NULL;
    l->p = NULL;
}

/* The server of lane gone went away: the idle lanes it served are broken too, and connect
 * again at their next call rather than each failing one first (5 ms or more later). */
static void lanes_server_gone(shm_conn *c, const shm_conn *gone)
{
    for (unsigned i = 0; i < c->lanes->n; i++) {
        shm_conn *l = c->lanes->at[i];
        if (l->p == NULL && l->bn == 0 && !l->streams && l->owner == gone->owner &&
            l->owner_start == gone->owner_start)
            l->broken = true;
    }
}

/* --- batches ----------------------------------------------------------------------------
 * While two lanes are busy, a start does not send its call: the call joins the next batch
 * (lanes' form), which goes on a lane of its own (form_post) once at most one lane is busy,
 * once it holds BATCH_CALLS calls or BATCH_BYTES of records, or once the waiter has waited
 * FORM_LATE_NS or is about to sleep. A worker takes a batch as one call (one claim, one doorbell)
 * and runs its calls in order, publishing each answer as it ends (shm.h): a client with many calls
 * in flight pays a handoff a batch, not a call, and each call still runs at most once and says
 * whether it ran (the worker's count of answers says which one runs). */
#define BATCH_BYTES 16384u   /* a batch's records at most */
#define BATCH_CALL_MAX 4096u /* a request above this goes alone */
/* A batch goes once it holds this many calls: batches small enough that the workers share a
 * client's calls, large enough that a handoff is spread over many. */
#define BATCH_CALLS 16u
/* A wait that lasts this long sends the next batch (lanes_wait), as one that sleeps does. */
#define FORM_LATE_NS ((int64_t)20 * 1000)

/* The bytes the record of a request of len bytes takes. */
static size_t batch_rec_size(size_t len)
{
    return sizeof(shmrpc__shm_batch_call) + ((len + 7) & ~(size_t)7);
}

/* Ends p with rc: its answer in data when rc is 0, else the server's message. */
static void pending_end(shmrpc__pending *p, int rc, shmrpc_bytes data)
{
    if (rc != 0) {
        rc = call_failed(rc, data, &p->msg);
    } else if (shmrpc_buf_append(&p->resp, data.ptr, data.len) != 0) {
        rc = p->resp.err;
        if (rc == SHMRPC_ETOOBIG)
            shmrpc__msg_set(&p->msg,
                            "a response of %zu bytes is larger than the client's maximum of %zu "
                            "bytes",
                            data.len, p->resp.max);
        else
            shmrpc__msg_set(&p->msg, "%s", shmrpc_strerror(rc));
    }
    p->status = rc;
    p->done = true;
    p->where = NULL;
}

/* Ends p, which did not run or may have, with rc and its message. */
static void pending_fail(shmrpc__pending *p, int rc, const char *msg)
{
    shmrpc__msg_set(&p->msg, "%s", msg);
    p->status = rc;
    p->done = true;
    p->where = NULL;
}

/* The answers of the batch on lane l, where the channel is mapped now. */
static shmrpc__shm_batch_answers *lane_answers(shm_conn *l)
{
    return (shmrpc__shm_batch_answers *)(shmrpc__chan_data(&l->chan) + l->baoff);
}

/* Reads the answers that the batch's worker published since the last look, ending their
 * calls: how many calls ended, or -1 when the answers are malformed (a count past the
 * batch's, an answer that does not fit the channel). */
static int batch_read(shm_conn *l)
{
    uint32_t done = atomic_load_explicit(&lane_answers(l)->done.word, memory_order_acquire);
    if (done > l->bn) return -1;
    int ended = 0;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    while (l->bread < done) {
        int32_t status;
        uint32_t len;
        if (shmrpc__chan_follow(&l->chan, l->bat + 8, &err) != 0) break;
        const uint8_t *at = shmrpc__chan_data(&l->chan) + l->bat;
        memcpy(&status, at, 4);
        memcpy(&len, at + 4, 4);
        if (len > l->max_msg || shmrpc__chan_follow(&l->chan, l->bat + 8 + len, &err) != 0) break;
        at = shmrpc__chan_data(&l->chan) + l->bat; /* the mapping may have moved */
        shmrpc__pending *p = l->bp[l->bread];
        l->bp[l->bread++] = NULL;
        l->bat += 8 + (((uint64_t)len + 7) & ~(uint64_t)7);
        if (p == NULL) continue; /* it ended before: its answer is dropped */
        pending_end(p, status, shmrpc_bytes_of(at + 8, len));
        ended++;
    }
    shmrpc_buf_destroy(&err);
    return l->bread < done ? -1 : ended;
}

/* Whether a call of the batch on l still waits for its answer. */
static bool batch_live(const shm_conn *l)
{
    for (unsigned k = l->bread; k < l->bn; k++)
        if (l->bp[k]) return true;
    return false;
}

static int batch_post(shm_conn *l, shmrpc__pending *const *calls, unsigned n, size_t bytes,
                      int64_t first, shmrpc_buf *msg);

/* Sends the calls of the batch on l from the k-th on again, on l, whose answer freed it: its
 * worker stopped before them for room, so they did not run. Those that cannot go fail. */
static void batch_again(shm_conn *l, unsigned k)
{
    shmrpc__pending *calls[SHMRPC__BATCH_MAX];
    unsigned n = 0;
    size_t bytes = 0;
    int64_t first = INT64_MAX;
    for (; k < l->bn; k++) {
        shmrpc__pending *p = l->bp[k];
        if (p == NULL) continue;
        calls[n++] = p;
        bytes += batch_rec_size(p->req.len);
        if (p->deadline < first) first = p->deadline;
    }
    memset(l->bp, 0, sizeof l->bp);
    l->bn = l->bread = 0;
    if (n == 0) return;
    shmrpc_buf msg;
    shmrpc_buf_init(&msg);
    int rc = batch_post(l, calls, n, bytes, first, &msg);
    for (unsigned j = 0; rc != 0 && j < n; j++)
        pending_fail(calls[j], rc, shmrpc__msg_get(&msg));
    shmrpc_buf_destroy(&msg);
}

/* The batch on lane l is over: answered (rc 0), or given up for rc (its worker died, its
 * server went away). The answers that came end their calls; the call the worker had reached
 * takes the batch's answer, or the reason; the calls after it did not run, and go again when
 * the worker stopped before them for room. */
static void batch_end(shm_conn *l, int rc)
{
    shmrpc_buf msg;
    shmrpc_buf_init(&msg);
    bool bad = batch_read(l) < 0, sure = true, withdrawn = false;
    if (rc != 0 && (rc = give_up_how(l, rc, &msg, &withdrawn)) != 0 &&
        atomic_load(&l->chan.head->state.word) == SHM_CHAN_REQUEST) {
        /* Its worker runs on under a claim given up on, and begins no call after its next
         * look at it: what it published before that look is read now, once a light
         * publisher's store is ordered before this read (the fence it leaves to its reader). */
        if (atomic_load(&lane_answers(l)->light)) sure = shmrpc__fence_wakers();
    }
    if (!bad) bad = batch_read(l) < 0; /* published before the answer, or the give-up */
    int32_t status = rc;
    shmrpc_bytes data = shmrpc_bytes_of(shmrpc__msg_get(&msg), strlen(shmrpc__msg_get(&msg)));
    if (rc == 0 && !bad && call_answer(l, &status, &data, &msg) != 0) bad = true;
    unsigned k = l->bread;
    count_out(l);
    if (!bad && rc == 0 && status == 0 && k < l->bn && atomic_load(&lane_answers(l)->stopped)) {
        shmrpc_buf_destroy(&msg);
        batch_again(l, k);
        return;
    }
    if (bad) {
        for (; k < l->bn; k++)
            if (l->bp[k])
                pending_fail(l->bp[k], SHMRPC_EPROTO,
                             "the answers of the batch the call went in are malformed; it may "
                             "have run");
    } else if (rc == 0 && status == 0 && k < l->bn) {
        for (; k < l->bn; k++)
            if (l->bp[k])
                pending_fail(l->bp[k], SHMRPC_EPROTO,
                             "the worker answered the batch the call went in without it; it may "
                             "have run");
    } else if (k < l->bn) {
        /* The call the worker had reached: the batch's answer is its own, or the reason. */
        if (l->bp[k]) {
            if (rc == 0)
                pending_end(l->bp[k], status, data);
            else
                pending_fail(l->bp[k], rc, shmrpc__msg_get(&msg));
        }
        char why[300];
        if (withdrawn && *shmrpc__msg_get(&msg)) /* no worker took it: every call's reason */
            snprintf(why, sizeof why, "%s", shmrpc__msg_get(&msg));
        else
            snprintf(why, sizeof why, "%s (for a call before it in its batch); the call %s",
                     rc == 0 ? shmrpc_strerror(status) : shmrpc__msg_get(&msg),
                     sure ? "did not run" : "may have run");
        for (k++; k < l->bn; k++)
            if (l->bp[k]) pending_fail(l->bp[k], rc == 0 ? status : rc, why);
    }
    shmrpc_buf_destroy(&msg);
    memset(l->bp, 0, sizeof l->bp);
    l->bn = l->bread = 0;
}

/* Every call of the batch on l ended before its answer, the last for why (its deadline, or
 * a cancel): the batch is given up (withdrawn when no worker took it yet, else its claim
 * marked so, and its worker begins none of the calls left, its handler told why), and the
 * lane is held as a call's given up on is. */
static void batch_drop(shm_conn *l, int why)
{
    shmrpc_buf msg;
    shmrpc_buf_init(&msg);
    give_up(l, why, &msg);
    shmrpc_buf_destroy(&msg);
    count_out(l);
    memset(l->bp, 0, sizeof l->bp);
    l->bn = l->bread = 0;
}

/* Looks at the calls of the batch on l whose deadline passed by now: one the worker has not
 * begun never will (its record's deadline), one it runs may complete. How many ended. */
static unsigned batch_late(shm_conn *l, int64_t now)
{
    unsigned ended = 0;
    bool taken = worker_has(l, atomic_load(&l->chan.head->claim));
    for (unsigned k = l->bread; k < l->bn; k++) {
        shmrpc__pending *p = l->bp[k];
        if (p == NULL || now < p->deadline) continue;
        bool begun = taken && k == l->bread;
        pending_fail(p, SHMRPC_ETIMEDOUT,
                     begun ? "the deadline passed while the call ran; it may still complete"
                           : "the deadline passed before a worker began the call; it did not run");
        l->bp[k] = NULL;
        ended++;
    }
    if (ended && !batch_live(l)) batch_drop(l, SHMRPC_ETIMEDOUT);
    return ended;
}

/* The calls of the next batch whose deadline passed by now: they were never sent. */
static unsigned form_late(shm_conn *c, int64_t now)
{
    lanes *ls = c->lanes;
    unsigned ended = 0, kept = 0;
    for (unsigned k = 0; k < ls->nform; k++) {
        shmrpc__pending *p = ls->form[k];
        if (now >= p->deadline) {
            ls->form_bytes -= batch_rec_size(p->req.len);
            pending_fail(p, SHMRPC_ETIMEDOUT,
                         "the deadline passed before the call was sent; it did not run");
            ended++;
        } else {
            ls->form[kept++] = p;
        }
    }
    ls->nform = kept;
    return ended;
}

/* How many lanes carry a call or a batch. */
static unsigned lanes_busy(const shm_conn *c)
{
    unsigned busy = 0;
    for (unsigned i = 0; i < c->lanes->n; i++)
        busy += c->lanes->at[i]->p != NULL || c->lanes->at[i]->bn != 0;
    return busy;
}

static int form_post(shm_conn *c, bool may_wait, int64_t deadline);

/* Looks at every lane: ends the calls answered, and at now (0: the clock was not read)
 * those whose deadline passed or whose check fails; frees a held lane whose worker died.
 * Whether the waiter may return: a call ended, or none is in flight (for_lane >= 0: a lane
 * from the for_lane-th on is free; one held by a call given up on frees up only when its
 * worker answers or dies). */
static bool lanes_look(shm_conn *c, int64_t now, int for_lane)
{
    unsigned ended = 0, busy = 0, idle = 0;
    for (unsigned i = 0; i < c->lanes->n; i++) {
        shm_conn *l = c->lanes->at[i];
        if (l->p == NULL && l->bn == 0) {
            if (l->streams) continue; /* the stream's own waits look at it */
            bool held = lane_held(l);
            /* A held lane whose worker died: nobody else will write its state. */
            if (now && held && now >= l->next_check_ns) {
                if (!taker_alive(l)) {
                    atomic_store(&l->chan.head->state.word, SHM_CHAN_IDLE);
                    held = false;
                }
                l->next_check_ns = now + LANE_CHECK_NS;
            }
            idle += !held && (int)i >= for_lane;
            continue;
        }
        /* A batch's answers come one by one before its own (shm.h). */
        bool batch = l->bn != 0;
        int got = batch ? batch_read(l) : 0;
        if (got > 0) ended += (unsigned)got;
        if (got < 0 || atomic_load_explicit(&l->chan.head->state.word, memory_order_acquire) !=
                           SHM_CHAN_REQUEST) {
            if (batch)
                batch_end(l, got < 0 ? SHMRPC_EPROTO : 0);
            else
                lane_end(l, 0);
            ended++;
            c->lanes->ended = i;
            continue;
        }
        if (batch && l->bread == l->bn) {
            /* Every call answered, the batch's own answer still to come: held until it does,
             * as a call given up on (lane_held), with nothing of the batch left to read. */
            l->bn = l->bread = 0;
            continue;
        }
        busy++;
        if (now == 0) continue;
        int rc = 0;
        if (l->next_check_ns == 0) { /* the call's first clock read */
            l->next_check_ns = now + LANE_CHECK_NS;
            /* A request whose ring_lane left the doorbell alone rings after all once no
             * worker took it within a check's time: another request of its word was
             * waiting, and its workers are busy, or asleep after a bad write. */
            l->late_at = l->rung ? 0 : now + LANE_CHECK_NS;
        } else if (now >= l->next_check_ns) {
            rc = client_check(l);
            l->next_check_ns = now + LANE_CHECK_NS;
        }
        if (rc == 0 && !batch && now >= l->p->deadline) rc = SHMRPC_ETIMEDOUT;
        if (rc == 0 && batch) {
            ended += batch_late(l, now);
            if (l->bn == 0) continue; /* all of its calls ended: the lane is held */
        }
        if (rc == 0 && l->late_at != 0 && now >= l->late_at) {
            l->late_at = 0;
            ring_late(l);
        }
        if (rc != 0) {
            if (batch)
                batch_end(l, rc);
            else
                lane_end(l, rc);
            ended++;
            c->lanes->ended = i;
            if (l->broken && !l->lost) lanes_server_gone(c, l);
        }
    }
    if (now != 0 && c->lanes->nform) ended += form_late(c, now);
    busy += c->lanes->nform != 0;
    return ended > 0 || (for_lane >= 0 ? idle > 0 : busy == 0);
}

/* Sleeps on the states of the lanes whose calls are in flight or held (and on the count of
 * answers of those that carry a batch), until one leaves REQUEST, an answer comes, the
 * deadline, the first call's deadline or ring, or SHMRPC__CHECK_NS. */
static void lanes_sleep(shm_conn *c, int64_t now, int64_t deadline)
{
    shmrpc__futex *fs[2 * LANES_MAX];
    uint32_t old[2 * LANES_MAX];
    unsigned n = 0;
    bool light = false;
    int64_t until = deadline - now > SHMRPC__CHECK_NS ? now + SHMRPC__CHECK_NS : deadline;
    for (unsigned i = 0; i < c->lanes->n; i++) {
        shm_conn *l = c->lanes->at[i];
        if (l->p == NULL && l->bn == 0 && !lane_held(l)) continue;
        fs[n] = &l->chan.head->state;
        old[n++] = SHM_CHAN_REQUEST;
        if (l->p && l->p->deadline < until) until = l->p->deadline;
        if (l->late_at != 0 && l->late_at < until) until = l->late_at;
        if (l->bn == 0) continue;
        for (unsigned k = l->bread; k < l->bn; k++)
            if (l->bp[k] && l->bp[k]->deadline < until) until = l->bp[k]->deadline;
        shmrpc__shm_batch_answers *a = lane_answers(l);
        fs[n] = &a->done;
        old[n++] = l->bread;
        /* A worker that publishes its answers lightly (it may not have begun the batch yet)
         * looks at this bit: the fence below orders its look after this store, or its store
         * before the sleep's read. */
        atomic_store_explicit(&a->client_asleep, 1, memory_order_relaxed);
        light = true;
    }
    for (unsigned k = 0; k < c->lanes->nform; k++) /* calls not sent: their deadlines too */
        if (c->lanes->form[k]->deadline < until) until = c->lanes->form[k]->deadline;
    if (light && !shmrpc__fence_wakers() && until - now > 1000000) until = now + 1000000;
    if (n > 0 && until > now) shmrpc__sleep_any(fs, old, n, until - now);
    for (unsigned i = 0; light && i < c->lanes->n; i++)
        if (c->lanes->at[i]->bn) atomic_store(&lane_answers(c->lanes->at[i])->client_asleep, 0);
}

/* Waits until a call in flight ends, none is, (for_lane >= 0) a lane is free, or deadline
 * passes: spinning as a blocking call's wait does (yielding while the service is crowded),
 * then asleep. */
static void lanes_wait(shm_conn *c, int64_t deadline, int for_lane)
{
    const shmrpc_wait_opts *o = &c->wait;
    int64_t until = 0; /* when the spin ends; 0: the clock was not read yet */
    int64_t began = 0; /* the wait's first clock read */
    unsigned spent = 0;
    for (;;) {
        int64_t now = 0;
        if (spent >= SHMRPC__SPIN_QUIET || o->mode == SHMRPC_WAIT_SLEEP) {
            spent = 0;
            now = shmrpc__now_ns();
        }
        if (lanes_look(c, now, for_lane)) break;
        if (now == 0) {
            shmrpc__cpu_relax();
            spent++;
            continue;
        }
        if (now >= deadline) break;
        /* A wait that lasts sends the next batch, even one that only spins: a call waited
         * for may be in it. */
        if (began == 0) began = now;
        if (c->lanes->nform && now - began >= FORM_LATE_NS && form_post(c, false, deadline) > 0)
            continue;
        if (until == 0) {
            /* Counted while it spins, as one waiter whatever the calls (see call_post). */
            if (o->mode != SHMRPC_WAIT_SLEEP && !c->spin_counted && c->ctl &&
                c->slot < SHMRPC__MAX_CONNS) {
                atomic_fetch_add(&c->ctl->awake, 1);
                c->spin_counted = true;
                atomic_store_explicit(&c->ctl->slots[c->slot].counted, 1, memory_order_relaxed);
            }
            until = o->mode == SHMRPC_WAIT_SPIN                       ? deadline
                    : o->mode == SHMRPC_WAIT_SLEEP                    ? now
                    : o->spin_ns >= deadline - now                    ? deadline
                                                                      : now + o->spin_ns;
        }
        if (now < until) {
            if (o->mode == SHMRPC_WAIT_ADAPTIVE && c->ctl &&
                (int)atomic_load_explicit(&c->ctl->awake, memory_order_relaxed) > shmrpc__ncpus()) {
                sched_yield(); /* spinning would take a CPU that a worker needs */
                spent = SHMRPC__SPIN_QUIET;
            }
            continue;
        }
        /* Before it sleeps, the next batch goes: a call waited for may be in it. */
        if (c->lanes->nform && form_post(c, false, deadline) > 0) continue;
        lanes_count_out(c);
        lanes_sleep(c, now, deadline);
        spent = SHMRPC__SPIN_QUIET; /* looks with the clock after a sleep */
    }
    lanes_count_out(c); /* it returns: counted no more */
}

/* A free lane, connected first (one that is broken may wait out its reconnect's backoff),
 * the one that ended last before the others: a busy client's next call takes it, and the
 * other lanes' lines stay where they are. Lanes before from are not taken (a stream never
 * takes lane 0). NULL when none is free. */
static shm_conn *lane_free_one(shm_conn *c, unsigned from)
{
    shm_conn *broken = NULL;
    for (unsigned k = 0; k < c->lanes->n; k++) {
        unsigned i = (c->lanes->ended + k) % c->lanes->n;
        shm_conn *l = c->lanes->at[i];
        if (i < from || !lane_free(l)) continue;
        if (!l->broken) return l;
        if (broken == NULL) broken = l;
    }
    return broken;
}

/* A lane from the from-th on for a call (or a stream): a free one, a new one, or the first to
 * free up before deadline, unless the call is cancelled meanwhile. */
static int lane_get(shm_conn *c, unsigned from, int64_t deadline, shm_conn **out, bool *waited,
                    shmrpc_buf *msg)
{
    for (;; *waited = true) {
        if ((*out = lane_free_one(c, from)) != NULL) return 0;
        if (shmrpc__conn_cancelled(&c->base)) {
            shmrpc__msg_set(msg,
                            "the call was cancelled by its client while it waited for "
                            "a connection to shm://%s; it did not run",
                            c->key);
            return SHMRPC_ECANCELLED;
        }
        int64_t now = shmrpc__now_ns();
        if (c->lanes->n < LANES_MAX && now >= c->lanes->retry_ns) {
            /* A lane that cannot be opened (every slot of the service taken, say): the
             * call waits for one of the lanes it has, and no lane is tried for a while. */
            shmrpc_buf why;
            shmrpc_buf_init(&why);
            int rc = lane_open(c, deadline, out, &why);
            shmrpc_buf_destroy(&why);
            if (rc == 0) return 0;
            c->lanes->retry_ns = now + LANE_RETRY_NS;
        }
        if (now >= deadline) {
            shmrpc__msg_set(msg,
                            "the deadline passed while calls in flight, or given up on and still "
                            "running, held all %u connections to shm://%s; the call did not run",
                            c->lanes->n, c->key);
            return SHMRPC_ETIMEDOUT;
        }
        /* In steps, so that a cancel, or the time to try a new lane again, is seen within
         * one. */
        int64_t until = deadline - now > SHMRPC__CHECK_NS ? now + SHMRPC__CHECK_NS : deadline;
        lanes_wait(c, until, (int)from);
    }
}

/* Sends p alone on a lane (see lanes_look), waiting for one within its deadline. It is done
 * on return when it failed at once. */
static void start_one(shm_conn *c, shmrpc__pending *p)
{
    shm_conn *l = NULL;
    bool waited = false;
    int rc = lane_get(c, 0, p->deadline, &l, &waited, &p->msg);
    if (rc == 0) {
        /* The handler's budget is the call's timeout (no clock read), or what is left of it
         * once the call waited for a lane. */
        l->dl = waited ? (shmrpc__deadline){.at = p->deadline, .timeout_ms = p->timeout_ms}
                       : (shmrpc__deadline){.at = 0, .timeout_ms = p->timeout_ms};
        shmrpc_bytes req = shmrpc_bytes_of(p->req.data, p->req.len);
        rc = call_begin(l, req.len, &l->dl, &p->msg);
        if (rc == 0)
            rc = call_post(l, p->sid, req, shmrpc_bytes_of(p->meta.data, p->meta.len), &l->dl,
                           false, 0, &p->msg);
    }
    if (rc != 0) {
        p->status = rc;
        p->done = true;
        p->where = NULL;
        return;
    }
    l->p = p;
    l->next_check_ns = l->late_at = 0;
    p->where = l;
    /* Where its workers look to yield rather than spin on this process's CPU. */
    shmrpc__presence_update(&l->ctl->slots[l->slot].presence);
}

/* A free lane, or a new one opened by deadline, for a batch sent without waiting; NULL when
 * there is none. */
static shm_conn *lane_try(shm_conn *c, int64_t deadline)
{
    shm_conn *l = lane_free_one(c, 0);
    int64_t now = l ? 0 : shmrpc__now_ns();
    if (l == NULL && c->lanes->n < LANES_MAX && now >= c->lanes->retry_ns && now < deadline) {
        shmrpc_buf why;
        shmrpc_buf_init(&why);
        if (lane_open(c, deadline - now < RDV_WAIT_NS ? deadline : now + RDV_WAIT_NS, &l, &why) !=
            0) {
            l = NULL;
            c->lanes->retry_ns = now + LANE_RETRY_NS;
        }
        shmrpc_buf_destroy(&why);
    }
    return l;
}

/* Writes the batch of n calls into lane l's channel and sends it: 0, or why not (msg). */
static int batch_post(shm_conn *l, shmrpc__pending *const *calls, unsigned n, size_t bytes,
                      int64_t first, shmrpc_buf *msg)
{
    shmrpc__deadline dl = {.at = first, .timeout_ms = 0};
    shmrpc_bytes meta = shmrpc_bytes_of(calls[0]->meta.data, calls[0]->meta.len);
    uint64_t aoff = shmrpc__shm_batch_answers_off((uint32_t)bytes, (uint32_t)meta.len);
    /* Room for the records, the metadata, and the answers of small calls. */
    int rc = call_begin(l, 0, &dl, msg);
    if (rc == 0)
        rc = shmrpc__chan_reserve(&l->chan, aoff + sizeof(shmrpc__shm_batch_answers) + 32 * n, msg);
    if (rc != 0) return rc;
    uint8_t *data = shmrpc__chan_data(&l->chan);
    size_t off = 0;
    for (unsigned k = 0; k < n; k++) {
        const shmrpc__pending *p = calls[k];
        shmrpc__shm_batch_call rec = {.method = p->sid,
                                      .len = (uint32_t)p->req.len,
                                      .deadline = p->deadline == INT64_MAX ? 0 : p->deadline};
        memcpy(data + off, &rec, sizeof rec);
        if (p->req.len) memcpy(data + off + sizeof rec, p->req.data, p->req.len);
        l->brec[k] = (uint32_t)off;
        off += batch_rec_size(p->req.len);
    }
    shmrpc__shm_batch_answers *a = (shmrpc__shm_batch_answers *)(data + aoff);
    atomic_store_explicit(&a->done.word, 0, memory_order_relaxed);
    atomic_store_explicit(&a->done.sleepers, 0, memory_order_relaxed);
    atomic_store_explicit(&a->client_asleep, 0, memory_order_relaxed);
    atomic_store_explicit(&a->stopped, 0, memory_order_relaxed);
    atomic_store_explicit(&a->light, 0, memory_order_relaxed);
    rc = call_post(l, n, shmrpc_bytes_of(data, bytes), meta, &dl, false, SHMRPC__SHM_BATCH, msg);
    if (rc != 0) return rc;
    for (unsigned k = 0; k < n; k++) {
        l->bp[k] = calls[k];
        calls[k]->where = l;
    }
    l->bn = n;
    l->bread = 0;
    l->baoff = aoff;
    l->bat = aoff + sizeof(shmrpc__shm_batch_answers);
    l->next_check_ns = l->late_at = 0;
    shmrpc__presence_update(&l->ctl->slots[l->slot].presence);
    return 0;
}

/* Sends the next batch (lanes' form) on a free lane or a new one; with may_wait, waits for a
 * lane within its first deadline as a start does, and without, leaves it when none is free
 * (or can be opened by deadline). A batch of one call goes as a call. How many calls went or
 * failed (each ended). Calls that waited in vain for a lane go back to the next batch, but
 * for those whose deadline passed. */
static int form_post(shm_conn *c, bool may_wait, int64_t deadline)
{
    lanes *ls = c->lanes;
    unsigned n = ls->nform;
    if (n == 0) return 0;
    shm_conn *l = may_wait ? NULL : lane_try(c, deadline);
    if (!may_wait && l == NULL) return 0;
    shmrpc__pending *calls[SHMRPC__BATCH_MAX];
    memcpy(calls, ls->form, n * sizeof *calls);
    size_t bytes = ls->form_bytes;
    ls->nform = 0; /* off the list: the waits below may look at the lanes */
    ls->form_bytes = 0;
    if (n == 1) {
        start_one(c, calls[0]);
        return 1;
    }
    int64_t first = INT64_MAX;
    for (unsigned k = 0; k < n; k++)
        if (calls[k]->deadline < first) first = calls[k]->deadline;
    shmrpc_buf msg;
    shmrpc_buf_init(&msg);
    bool waited = false;
    int rc = l ? 0 : lane_get(c, 0, first, &l, &waited, &msg);
    if (rc == 0) rc = batch_post(l, calls, n, bytes, first, &msg);
    int64_t now = rc == SHMRPC_ETIMEDOUT || rc == SHMRPC_ECANCELLED ? shmrpc__now_ns() : 0;
    int went = rc == 0 ? (int)n : 0;
    for (unsigned k = 0; rc != 0 && k < n; k++) {
        if (now != 0 && now < calls[k]->deadline && ls->nform < BATCH_CALLS) {
            ls->form[ls->nform++] = calls[k]; /* the wait for a lane was not its own */
            ls->form_bytes += batch_rec_size(calls[k]->req.len);
            continue;
        }
        pending_fail(calls[k], rc, shmrpc__msg_get(&msg));
        went++;
    }
    shmrpc_buf_destroy(&msg);
    return went;
}

/* Whether p may go in a batch: a small request, with the metadata of the calls there. */
static bool batchable(const shm_conn *c, const shmrpc__pending *p)
{
    const lanes *ls = c->lanes;
    if (p->req.len > BATCH_CALL_MAX || p->req.len > c->max_msg) return false;
    if (ls->nform == 0) return true;
    const shmrpc__pending *q = ls->form[0];
    return q->meta.len == p->meta.len &&
           (p->meta.len == 0 || memcmp(q->meta.data, p->meta.data, p->meta.len) == 0);
}

static int shm_start(shmrpc__conn *base, shmrpc__pending *p, shmrpc_buf *err)
{
    shm_conn *c = (shm_conn *)base;
    (void)err;      /* a call that fails at once says why in its own message */
    c->loan = NULL; /* another call gives up the loan */
    int rc = self() != c->pid ? not_ours(c, &p->msg) : lanes_init(c, &p->msg);
    if (rc != 0) {
        p->status = rc;
        p->done = true;
        return 0;
    }
    if (health_draining(c, p->sid)) {
        uint8_t state = SHMRPC_HEALTH_DRAINING;
        p->status = shmrpc_buf_append(&p->resp, &state, 1) ? SHMRPC_ENOMEM : 0;
        p->done = true;
        return 0;
    }
    lanes *ls = c->lanes;
    /* While two lanes are busy (a worker on one, the next call waiting on the other), the
     * call joins the next batch; else it goes now. */
    if (ls->nform == 0 && lanes_busy(c) < 2) {
        start_one(c, p);
        return 0;
    }
    size_t size = batch_rec_size(p->req.len);
    if (!batchable(c, p) || ls->nform >= BATCH_CALLS || ls->form_bytes + size > BATCH_BYTES)
        form_post(c, true, INT64_MAX);
    /* Calls the wait for a lane left there, or a call that goes in no batch: it goes alone. */
    if (!batchable(c, p) || ls->nform >= BATCH_CALLS || ls->form_bytes + size > BATCH_BYTES) {
        start_one(c, p);
        return 0;
    }
    ls->form[ls->nform++] = p;
    ls->form_bytes += size;
    p->where = ls;
    if (ls->nform >= BATCH_CALLS || ls->form_bytes >= BATCH_BYTES) form_post(c, true, INT64_MAX);
    return 0;
}

/* Ends p, a call a forked child inherited: its parent's to wait for. */
static void pending_not_ours(shm_conn *c, shmrpc__pending *p)
{
    p->status = not_ours(c, &p->msg);
    p->done = true;
    p->where = NULL;
}

static void shm_progress(shmrpc__conn *base, int64_t deadline)
{
    shm_conn *c = (shm_conn *)base;
    if (c->lanes == NULL) return;
    if (self() == c->pid) {
        /* The next batch goes once at most one lane is busy: a worker is free for it. */
        if (c->lanes->nform && lanes_busy(c) < 2) form_post(c, false, deadline);
        lanes_wait(c, deadline, -1);
        return;
    }
    /* A forked child inherited its parent's calls: they are the parent's to wait for. */
    for (unsigned i = 0; i < c->lanes->n; i++) {
        shm_conn *l = c->lanes->at[i];
        if (l->p != NULL) pending_not_ours(c, l->p);
        l->p = NULL;
        for (unsigned k = l->bread; k < l->bn; k++)
            if (l->bp[k] != NULL) pending_not_ours(c, l->bp[k]);
        memset(l->bp, 0, sizeof l->bp);
        l->bn = l->bread = 0;
    }
    for (unsigned k = 0; k < c->lanes->nform; k++)
        pending_not_ours(c, c->lanes->form[k]);
    c->lanes->nform = 0;
    c->lanes->form_bytes = 0;
}

/* Forgets p, not done: its request withdrawn if no worker took it, else its claim marked
 * given up for why (the handler sees ETIMEDOUT, or cancelled), and an answer that comes
 * dropped at the lane's next call. In a forked child only the child's record of it goes:
 * the channel is the parent's, whose call it still is. */
static void lane_drop(shm_conn *c, shmrpc__pending *p, int why)
{
    lanes *ls = c->lanes;
    if (ls != NULL && p->where == ls) { /* not sent yet */
        unsigned kept = 0;
        for (unsigned k = 0; k < ls->nform; k++)
            if (ls->form[k] != p) ls->form[kept++] = ls->form[k];
        ls->nform = kept;
        ls->form_bytes -= batch_rec_size(p->req.len);
        p->where = NULL;
        if (why == SHMRPC_ECANCELLED) /* exactly: no worker can see it */
            pending_fail(p, why,
                         "the call was cancelled by its client before it was sent; it did not run");
        return;
    }
    shm_conn *l = p->where;
    if (l != NULL && l->bn != 0) { /* in a batch: its worker begins it no more */
        for (unsigned k = l->bread; k < l->bn; k++) {
            if (l->bp[k] != p) continue;
            l->bp[k] = NULL;
            p->where = NULL;
            if (self() != c->pid) return;
            shmrpc__shm_batch_call *rec =
                (shmrpc__shm_batch_call *)(shmrpc__chan_data(&l->chan) + l->brec[k]);
            atomic_store(&rec->cancelled, 1);
            if (!batch_live(l)) batch_drop(l, why == SHMRPC_ECANCELLED ? why : SHMRPC_ETIMEDOUT);
            return;
        }
        return;
    }
    if (l == NULL || l->p != p) return;
    if (self() == c->pid) {
        shmrpc_buf msg;
        shmrpc_buf_init(&msg);
        give_up(l, why, &msg);
        shmrpc_buf_destroy(&msg);
        count_out(l);
    }
    l->p = NULL;
    p->where = NULL;
}

static void shm_abandon(shmrpc__conn *base, shmrpc__pending *p)
{
    lane_drop((shm_conn *)base, p, SHMRPC_ETIMEDOUT);
}

static void shm_cancel(shmrpc__conn *base, shmrpc__pending *p)
{
    lane_drop((shm_conn *)base, p, SHMRPC_ECANCELLED);
}

/* Room for a request of size bytes in the channel's data, where the worker reads it
 * (shmrpc_client_loan): everything a call does before it writes its request. */
static int shm_loan(shmrpc__conn *base, uint32_t sid, size_t size, void **ptr, int64_t timeout_ms,
                    shmrpc_buf *err)
{
    shm_conn *c = (shm_conn *)base;
    (void)sid;
    shmrpc__deadline dl = {.at = 0, .timeout_ms = timeout_ms};
    c->loan = NULL;
    if (self() != c->pid) return not_ours(c, err);
    int rc = call_begin(c, size, &dl, err);
    if (rc != 0) return rc;
    c->loan = shmrpc__chan_data(&c->chan);
    *ptr = c->loan;
    return 0;
}

/* Sends the loan's first len bytes where the program wrote them, and points *resp at the
 * answer in the channel: no copy either way (one of at most 24 bytes rides in the state's
 * line, as any). */
static int shm_call_loaned(shmrpc__conn *base, uint32_t sid, size_t len, shmrpc_bytes *resp,
                           int64_t timeout_ms, shmrpc_buf *err)
{
    shm_conn *c = (shm_conn *)base;
    shmrpc__deadline dl = {.at = 0, .timeout_ms = timeout_ms};
    uint8_t *loan = c->loan;
    c->loan = NULL;
    if (self() != c->pid) return not_ours(c, err);
    /* The program wrote into the channel mapped at the loan: one that this connection no
     * longer serves (its slot was taken since, or it connected again) cannot send it. */
    if (!c->broken && !slot_ours(c)) c->broken = c->lost = true;
    if (loan == NULL || c->broken || loan != shmrpc__chan_data(&c->chan)) {
        shmrpc__msg_set(err,
                        "this connection to shm://%s lost its slot or its server after the loan; "
                        "the call did not run (loan again)",
                        c->key);
        return SHMRPC_EUNAVAIL;
    }
    int rc = call_send(c, sid, shmrpc_bytes_of(loan, len), &dl, err);
    return rc != 0 ? rc : answer_view(c, resp, err);
}

/* A call whose answer is left where it came (for a @raw method's stub): the request
 * copied into the channel once, from where the caller has it, and nothing copied back. */
static int shm_call_view(shmrpc__conn *base, uint32_t sid, shmrpc_bytes req, shmrpc_bytes *resp,
                         int64_t timeout_ms, shmrpc_buf *err)
{
    shm_conn *c = (shm_conn *)base;
    shmrpc__deadline dl = {.at = 0, .timeout_ms = timeout_ms};
    c->loan = NULL; /* another call gives up the loan */
    if (self() != c->pid) return not_ours(c, err);
    int rc = call_begin(c, req.len, &dl, err);
    if (rc == 0) rc = call_send(c, sid, req, &dl, err);
    return rc != 0 ? rc : answer_view(c, resp, err);
}

/* --- streams (docs/streams.md, "How shm:// carries it") --------------------------------
 * A stream's open is a call on a lane of its own, never lane 0: that one carries the
 * client's calls (and maybe a started one), and after an early close the worker keeps the
 * stream's lane until its handler returns. Its request names the size of the rings that
 * follow it in the channel and the ways it streams (shm.h): the worker hands a result's items
 * over through its ring, and the client a parameter's through its own; the end's status then
 * comes as a call's answer. The client waits on the rings' counts, never on the channel's
 * lock, which the worker holds for the whole stream.
 * A stream both ways may be sent on by one thread while another receives: each owns its
 * ring and its half of the stream, and what both touch (the end, the lane's call) is under
 * mu, which a wait lets go of. Only the receiving thread counts itself awake. */

typedef struct shm_stream {
    shm_conn *c;            /* the client's connection: its cancels */
    shm_conn *lane;         /* the lane that carries the stream */
    int ways;               /* SHMRPC__STREAM_OUT, _IN, or both */
    uint64_t off;           /* where the worker's ring is in the lane's channel data */
    uint64_t in_off;        /* where the client's ring is */
    shmrpc__ring_reader rd; /* how far the client read the worker's ring */
    uint32_t tail;          /* the bytes written into the client's ring */
    bool light;             /* this process may publish lightly (shmrpc__fence_register) */
    bool sent_end;          /* the end of the client's items was written */
    /* Its answer was read, or it was given up on (looked at by the other thread's wait). */
    _Atomic bool ended;
    pthread_mutex_t mu; /* held by a send or a recv of a stream both ways, but its waits */
    /* Why a send ended it (or 0), and what it said. */
    int status;
    char msg[SHMRPC__CTX_MSG_CAP];
} shm_stream;

/* A stream's check: the answer came without the end of the items, or the handler returned
 * without reading the client's. Not 1, which shmrpc__wait_while's spin keeps for itself. */
#define LOOK_AGAIN 2

/* The worker's ring (a result's items) and the client's (a parameter's), computed at each
 * use: following an answer may have moved the mapping. */
static shmrpc__stream_ring *stream_ring(shm_stream *st)
{
    return (shmrpc__stream_ring *)(shmrpc__chan_data(&st->lane->chan) + st->off);
}

static shmrpc__stream_ring *stream_in_ring(shm_stream *st)
{
    return (shmrpc__stream_ring *)(shmrpc__chan_data(&st->lane->chan) + st->in_off);
}

/* The check of a wait for items: a cancel, the lane's call (client_check: the server, the
 * worker, the slot), an answer that came without the end of the items (a refusal before the
 * handler ran), which does not wake a waiter on a ring, and the other thread's end of a
 * stream both ways. */
static int stream_check(void *arg)
{
    shm_stream *st = arg;
    if (shmrpc__conn_cancelled(&st->c->base)) return SHMRPC_ECANCELLED;
    int rc = client_check(st->lane);
    if (rc != 0) return rc;
    if (st->ways == SHMRPC__STREAM_WAYS && st->ended) return LOOK_AGAIN;
    return atomic_load(&st->lane->chan.head->state.word) != SHM_CHAN_REQUEST ? LOOK_AGAIN : 0;
}

/* The check of a wait for room: the same, and a handler that returned without reading the
 * client's items. */
static int stream_send_check(void *arg)
{
    shm_stream *st = arg;
    if (atomic_load(&stream_in_ring(st)->returned) != 0) return LOOK_AGAIN;
    return stream_check(arg);
}

/* A stream both ways is under its mu, but while a send or a recv waits; a stream one way
 * has one thread. */
static void stream_lock(shm_stream *st)
{
    if (st->ways == SHMRPC__STREAM_WAYS) pthread_mutex_lock(&st->mu);
}

static void stream_unlock(shm_stream *st)
{
    if (st->ways == SHMRPC__STREAM_WAYS) pthread_mutex_unlock(&st->mu);
}

/* After a record of the client's ring, or now: its tail published if the worker sleeps for
 * an item (shmrpc__ring_publish), lightly once the worker said that it fences before it
 * sleeps (the ring's fences), as it publishes its own items (shm_worker.c, ring_write); a
 * fence of the client's own stalls it each item. */
static void stream_in_publish(shm_stream *st, shmrpc__stream_ring *r, bool now)
{
    bool light = st->light && atomic_load_explicit(&r->fences, memory_order_relaxed);
    shmrpc__ring_publish(r, st->rd.cap, st->tail, light, now);
}

/* Writes the end of the client's items (shmrpc_stream_done), once. There is room: every
 * piece left 8 bytes free. Not once the answer came: the ring's bytes may be the answer's. */
static void stream_end_items(shm_stream *st)
{
    if (!(st->ways & SHMRPC__STREAM_IN) || st->sent_end) return;
    st->sent_end = true;
    if (atomic_load(&st->lane->chan.head->state.word) != SHM_CHAN_REQUEST) return;
    shmrpc__stream_ring *r = stream_in_ring(st);
    shmrpc__ring_put(r, st->rd.cap, &st->tail, "", 0, SHMRPC__RING_END);
    stream_in_publish(st, r, true);
}

/* Ends the stream on the client's side: a call not taken yet withdrawn, one being run marked
 * given up on (why: cancelled, or its deadline), the worker's ring emptied of what is left,
 * so that a worker waiting for room wakes and learns so, and a worker waiting for the
 * client's items woken. Returns rc. */
static int stream_stop(shm_stream *st, int rc, int why)
{
    shm_conn *l = st->lane;
    if (!st->ended) {
        shmrpc_buf ignored; /* the stream's status is rc, with its own message */
        shmrpc_buf_init(&ignored);
        give_up(l, why, &ignored);
        shmrpc_buf_destroy(&ignored);
        if (st->ways & SHMRPC__STREAM_OUT) {
            /* All that the worker published, which is all it wrote when it waits for room. */
            shmrpc__stream_ring *r = stream_ring(st);
            uint32_t tail = atomic_load_explicit(&r->tail.word, memory_order_relaxed);
            if (tail - st->rd.head <= st->rd.cap) st->rd.head = tail;
            shmrpc__ring_give_back(r, &st->rd, true);
        }
        if (st->ways & SHMRPC__STREAM_IN) {
            shmrpc__stream_ring *r = stream_in_ring(st);
            shmrpc__wake_mask(&r->tail, &r->reader_asleep, 1);
        }
        /* Both ways, only the receiving thread counts itself, and counts out after each wait:
         * a send's failure leaves its count alone. */
        if (st->ways != SHMRPC__STREAM_WAYS) count_out(l);
        st->ended = true;
        l->streams = false;
    }
    return rc;
}

/* The failure rc that ends st, said in err: kept, for what is asked of st after (the
 * answer's wait after a send, the other thread of a stream both ways). */
static int stream_failed(shm_stream *st, int rc, shmrpc_buf *err)
{
    snprintf(st->msg, sizeof st->msg, "%s", shmrpc__msg_get(err));
    st->status = rc;
    return rc;
}

/* The stream failed on the client's side (a cancel, an item it cannot take, a ring that is
 * off): the handler is told, and rc with msg is the stream's status. */
static int stream_refuse(shm_stream *st, int rc, shmrpc_buf *err, const char *msg)
{
    shmrpc__msg_set(err, "%s", msg);
    return stream_failed(st, stream_stop(st, rc, SHMRPC_ECANCELLED), err);
}

/* A wait's failure, said (a deadline, a cancel) and ending the stream. */
static int stream_wait_failed(shm_stream *st, int rc, shmrpc_buf *err)
{
    if (rc == SHMRPC_ETIMEDOUT) shmrpc__msg_set(err, "the stream's deadline passed");
    if (rc == SHMRPC_ECANCELLED)
        shmrpc__msg_set(err, "the stream was cancelled (shmrpc_client_cancel)");
    return stream_failed(st, stream_stop(st, rc, rc), err);
}

/* The stream's answer, after the end of its items (or without it): its status and message,
 * and the handler's answer appended to item when the result is no stream. */
static int stream_answer(shm_stream *st, shmrpc_buf *item, shmrpc_buf *err)
{
    shm_conn *l = st->lane;
    int rc = await_answer(l, &l->dl); /* the worker writes it just after the end */
    if (rc != 0 && (rc = give_up(l, rc, err)) != 0) {
        count_out(l); /* its wait counted it (both ways, stream_stop leaves it) */
        return stream_wait_failed(st, rc, err);
    }
    int32_t status;
    shmrpc_bytes data;
    rc = call_answer(l, &status, &data, err);
    if (rc == 0 && status != 0) rc = call_failed(status, data, err);
    if (rc == 0 && data.len > item->max) {
        shmrpc__msg_set(err, "an answer of %zu bytes is larger than the client's maximum of %zu",
                        data.len, item->max);
        rc = SHMRPC_ETOOBIG;
    }
    if (rc == 0 && shmrpc_buf_append(item, data.ptr, data.len) != 0) {
        shmrpc__msg_set(err, "out of memory for the answer");
        rc = SHMRPC_ENOMEM;
    }
    count_out(l);
    st->ended = true;
    l->streams = false;
    return rc;
}

/* What a stream that ended said: the status of the send that ended it, with its message. */
static int stream_said(const shm_stream *st, shmrpc_buf *err)
{
    if (st == NULL || st->status == 0) {
        shmrpc__msg_set(err, "no stream is open");
        return SHMRPC_EINVAL;
    }
    shmrpc__msg_set(err, "%s", st->msg);
    return st->status;
}

static int shm_stream_open(shmrpc__conn *base, uint32_t sid, int ways, shmrpc_bytes req,
                           int64_t timeout_ms, shmrpc_buf *err)
{
    shm_conn *c = (shm_conn *)base;
    c->loan = NULL; /* another call gives up the loan */
    if (self() != c->pid) return not_ours(c, err);
    shm_stream *st = calloc(1, sizeof *st);
    if (st == NULL) {
        shmrpc__msg_set(err, "out of memory");
        return SHMRPC_ENOMEM;
    }
    /* The deadline bounds the whole stream: computed now. */
    shmrpc__deadline dl = {.at = 0, .timeout_ms = timeout_ms};
    int64_t deadline = shmrpc__deadline_at(&dl, shmrpc__now_ns());
    bool waited = false;
    shm_conn *l = NULL;
    uint32_t cap = SHMRPC__RING_MAX;
    uint64_t off = shmrpc__shm_ring_off((uint32_t)req.len, (uint32_t)c->base.meta.len);
    uint64_t in_off = off + (ways & SHMRPC__STREAM_OUT ? SHMRPC__RING_BYTES(cap) : 0);
    uint64_t reach = in_off + (ways & SHMRPC__STREAM_IN ? SHMRPC__RING_BYTES(cap) : 0);
    int rc = lanes_init(c, err);
    if (rc == 0) rc = lane_get(c, 1, deadline, &l, &waited, err);
    if (rc == 0) {
        l->dl = dl;
        rc = call_begin(l, req.len, &l->dl, err);
    }
    if (rc == 0) rc = shmrpc__chan_reserve(&l->chan, reach, err);
    if (rc == 0) {
        *st = (shm_stream){.c = c,
                           .lane = l,
                           .ways = ways & SHMRPC__STREAM_WAYS,
                           .off = off,
                           .in_off = in_off,
                           .light = (ways & SHMRPC__STREAM_IN) && shmrpc__fence_register(),
                           .rd = {.cap = cap, .writer = "worker", .reader = "client"}};
        pthread_mutex_init(&st->mu, NULL);
        /* The counts of the last one, its returned, and the first record's len (shm.h). */
        size_t zeroed = sizeof(shmrpc__stream_ring) + 8;
        if (ways & SHMRPC__STREAM_OUT) memset(stream_ring(st), 0, zeroed);
        if (ways & SHMRPC__STREAM_IN) memset(stream_in_ring(st), 0, zeroed);
        rc = call_post(l, sid, req, c->base.meta, &l->dl, false, cap | (uint32_t)st->ways, err);
    }
    if (rc != 0) {
        free(st);
        return rc;
    }
    l->streams = true;
    c->stream = st;
    /* Where its worker looks to yield rather than spin on this process's CPU. */
    shmrpc__presence_update(&l->ctl->slots[l->slot].presence);
    return 0;
}

/* The waiter of a wait for the worker's items or for room in the client's ring. */
static shmrpc__waiter stream_waiter(shm_stream *st)
{
    shm_conn *l = st->lane;
    return (shmrpc__waiter){.opts = &l->wait,
                            .peer = l->last_worker < SHMRPC__MAX_WORKERS
                                        ? &l->ctl->workers[l->last_worker].presence
                                        : NULL,
                            .self = &l->ctl->slots[l->slot].presence,
                            .check = stream_check,
                            .check_arg = st,
                            .awake = &l->ctl->awake,
                            .counted = &l->counted,
                            .counted_mark = &l->ctl->slots[l->slot].counted,
                            .lazy = &l->dl};
}

/* The next item of st, or its end: with st's lock held, which its waits let go of. */
static int stream_recv(shm_stream *st, shmrpc_buf *item, shmrpc_buf *err)
{
    shm_conn *l = st->lane;
    if (!(st->ways & SHMRPC__STREAM_OUT)) { /* the answer, after the client's last item */
        stream_end_items(st);
        return stream_answer(st, item, err);
    }
    for (;;) {
        if (st->ended) return stream_said(st, err); /* a send's failure ended it (both ways) */
        /* Before an item: a cancel ends a stream that is behind. */
        if (shmrpc__conn_cancelled(&st->c->base))
            return stream_refuse(st, SHMRPC_ECANCELLED, err,
                                 "the stream was cancelled (shmrpc_client_cancel)");
        /* The state before the tail: whatever the worker published before its answer is
         * seen with it. */
        uint32_t s = atomic_load_explicit(&l->chan.head->state.word, memory_order_acquire);
        shmrpc__stream_ring *r = stream_ring(st);
        uint32_t tail = atomic_load_explicit(&r->tail.word, memory_order_acquire);
        int rc = shmrpc__ring_take(r, &st->rd, tail, item, err);
        if (rc == 2) return stream_answer(st, item, err);
        if (rc < 0) return stream_failed(st, stream_stop(st, rc, SHMRPC_ECANCELLED), err);
        if (rc != SHMRPC__RING_NONE) {
            /* The room given back in steps, or at once to a worker asleep waiting for it. */
            shmrpc__ring_give_back(r, &st->rd, false);
            if (rc == 1) return 1;
            continue;
        }
        if (s != SHM_CHAN_REQUEST) return stream_answer(st, item, err); /* no items: a refusal */
        shmrpc__ring_give_back(r, &st->rd, true); /* the worker may wait for the room */
        shmrpc__waiter w = stream_waiter(st);
        w.sleeping = &r->reader_asleep; /* on its own line (shm.h) */
        w.sleeping_bit = 1;
        w.fence_wakers = true; /* the worker publishes lightly */
        w.also = shmrpc__ring_next(r, &st->rd); /* the next record, which it writes alone */
        w.also_old = st->rd.seen;
        stream_unlock(st);
        rc = shmrpc__wait_while(&r->tail, tail, 0, &w); /* the deadline: l->dl */
        stream_lock(st);
        count_out(l);
        if (st->ended) continue; /* the sending thread's end came first (both ways) */
        /* Items that came meanwhile are read before a failure: the deadline, or a worker
         * that died, ends the stream after what it wrote. */
        if (rc == LOOK_AGAIN || (rc < 0 && shmrpc__ring_came(r, &st->rd, tail))) continue;
        if (rc < 0 && (rc = give_up(l, rc, err)) == 0) continue; /* the answer came */
        if (rc != 0) return stream_wait_failed(st, rc, err);
    }
}

static int shm_stream_recv(shmrpc__conn *base, shmrpc_buf *item, shmrpc_buf *err)
{
    shm_conn *c = (shm_conn *)base;
    shm_stream *st = c->stream;
    if (self() != c->pid) return not_ours(c, err);
    if (st == NULL) return stream_said(st, err);
    stream_lock(st);
    int rc = st->ended ? stream_said(st, err) : stream_recv(st, item, err);
    stream_unlock(st);
    return rc;
}

/* The item of n bytes into st's ring, in pieces when it is larger, each waiting for room;
 * with st's lock held, which its waits let go of. Once the handler returned without reading
 * the end (or the call was answered, refused), the send writes the end instead, so that the
 * worker may answer, and fails: the answer then says the rest. */
static int stream_send(shm_stream *st, const uint8_t *p, size_t n, shmrpc_buf *err)
{
    shm_conn *c = st->c, *l = st->lane;
    size_t left = n;
    for (;;) {
        if (st->ended) { /* the receiving thread's end (both ways), or a send's */
            if (st->status != 0) return stream_said(st, err);
            shmrpc__msg_set(err, "the handler returned before it read the item");
            return SHMRPC_ECLOSED;
        }
        if (shmrpc__conn_cancelled(&c->base)) {
            return stream_refuse(st, SHMRPC_ECANCELLED, err,
                                 "the stream was cancelled (shmrpc_client_cancel)");
        }
        shmrpc__stream_ring *r = stream_in_ring(st);
        if (st->sent_end || atomic_load(&r->returned) != 0 ||
            atomic_load(&l->chan.head->state.word) != SHM_CHAN_REQUEST) {
            stream_end_items(st);
            shmrpc__msg_set(err, "the handler returned before it read the item");
            return SHMRPC_ECLOSED;
        }
        uint32_t head = atomic_load_explicit(&r->head.word, memory_order_acquire), piece;
        int fit = shmrpc__ring_fit(st->rd.cap, st->tail, head, left, &piece);
        if (fit == SHMRPC_EPROTO) {
            return stream_refuse(st, SHMRPC_EPROTO, err,
                                 "the worker's count of the stream's ring is off");
        }
        if (fit == 0) {
            left -= piece;
            shmrpc__ring_put(r, st->rd.cap, &st->tail, p, piece, (uint32_t)left);
            stream_in_publish(st, r, false);
            p += piece;
            if (left == 0) return 0;
            continue;
        }
        stream_in_publish(st, r, true); /* all of it, for a worker that returns meanwhile */
        shmrpc__waiter w = stream_waiter(st);
        w.check = stream_send_check;
        if (st->ways == SHMRPC__STREAM_WAYS) { /* the receiving thread counts, and publishes */
            w.self = NULL;
            w.awake = NULL;
            w.counted = NULL;
            w.counted_mark = NULL;
        }
        stream_unlock(st);
        int rc = shmrpc__wait_while(&r->head, head, 0, &w); /* the deadline: l->dl */
        stream_lock(st);
        if (st->ways != SHMRPC__STREAM_WAYS) count_out(l);
        if (rc == 0 || rc == LOOK_AGAIN) continue;
        if (st->ended) continue; /* the receiving thread's end came first */
        if (rc < 0 && (rc = give_up(l, rc, err)) == 0) continue; /* the answer came */
        return stream_wait_failed(st, rc, err);
    }
}

static int shm_stream_send(shmrpc__conn *base, const void *item, size_t n, shmrpc_buf *err)
{
    shm_conn *c = (shm_conn *)base;
    shm_stream *st = c->stream;
    if (self() != c->pid) return not_ours(c, err);
    if (st == NULL) return stream_said(st, err);
    if (n > c->max_msg || n > UINT32_MAX) { /* the stream goes on without it */
        shmrpc__msg_set(err, "an item of %zu bytes is above the server's maximum of %" PRIu64, n,
                        c->max_msg);
        return SHMRPC_ETOOBIG;
    }
    stream_lock(st);
    int rc = stream_send(st, item, n, err);
    stream_unlock(st);
    return rc;
}

/* shmrpc__conn_ops.stream_done over shm://: the end of the client's items. */
static void shm_stream_done(shmrpc__conn *base)
{
    shm_conn *c = (shm_conn *)base;
    shm_stream *st = c->stream;
    if (st == NULL || self() != c->pid) return;
    stream_lock(st);
    if (!st->ended) stream_end_items(st);
    stream_unlock(st);
}

static void shm_stream_end(shmrpc__conn *base)
{
    shm_conn *c = (shm_conn *)base;
    shm_stream *st = c->stream;
    if (st == NULL) return;
    /* In a forked child the stream is the parent's: only the child's record of it goes. */
    if (self() == c->pid) stream_stop(st, 0, SHMRPC_ECANCELLED);
    pthread_mutex_destroy(&st->mu);
    free(st);
    c->stream = NULL;
}
