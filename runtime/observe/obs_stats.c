/* SPDX-License-Identifier: MIT */
/* A service's call statistics over every address it serves at (obs_stats.h). */
#include "obs_stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/status.h>

#include "obs_proc.h"

/* tcp://HOST:PORT as a server bound there spells it: an IPv6 host in brackets. */
static void tcp_at(char *out, size_t cap, const char *host, int port)
{
    bool v6 = strchr(host, ':') != NULL;
    snprintf(out, cap, "tcp://%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

/* The snapshot at addr, if a live server of group wrote it; NULL otherwise. */
static shmrpc_stats *read_at(const char *addr, pid_t group)
{
    shmrpc_stats *st = NULL;
    if (shmrpc_stats_read(addr, &st) != 0) st = NULL;
    if (st && !obs_proc_alive(st->pid, group)) { /* a stale segment of a killed run */
        shmrpc_stats_free(st);
        st = NULL;
    }
    return st;
}

/* Where slot's statistics may be, best first, into out; their count (0: none known). */
static int candidates(const cfg_service *s, int slot, char out[][96])
{
    if (slot == OBS_STATS_SHM) {
        if (!s->shm_name) return 0;
        snprintf(out[0], sizeof out[0], "shm://%s", s->shm_name);
        return 1;
    }
    if (!s->tcp_port) return 0;
    if (s->kind == CFG_MODULE) { /* its manager binds tcp_bind; none: no TCP */
        if (!s->s.tcp_bind) return 0;
        tcp_at(out[0], sizeof out[0], s->s.tcp_bind, s->tcp_port);
        return 1;
    }
    static const char *const hosts[OBS_STATS_TCP_GUESSES] = {"127.0.0.1", "0.0.0.0", "::1", "::"};
    for (int i = 0; i < OBS_STATS_TCP_GUESSES; i++)
        tcp_at(out[i], sizeof out[i], hosts[i], s->tcp_port);
    return OBS_STATS_TCP_GUESSES;
}

void obs_stats_read(const cfg_service *s, pid_t group, obs_stats *st)
{
    memset(st, 0, sizeof *st);
    for (int a = 0; a < OBS_STATS_ADDRS; a++) {
        char at[OBS_STATS_TCP_GUESSES][96];
        int n = candidates(s, a, at);
        int i = 0;
        while (i < n && !(st->part[a] = read_at(at[i], group)))
            i++;
        if (n) memcpy(st->addr[a], at[i < n ? i : 0], sizeof st->addr[a]); /* none: the first */
    }
    obs_stats_merge(st);
}

/* The index of the method called name in st, or -1; hint first (tables in the same order). */
static long find_method(const shmrpc_stats *st, const char *name, uint32_t hint)
{
    if (hint < st->n_methods && strcmp(st->methods[hint].name, name) == 0) return hint;
    for (uint32_t i = 0; i < st->n_methods; i++)
        if (strcmp(st->methods[i].name, name) == 0) return i;
    return -1;
}

static bool same_table(const shmrpc_stats *a, const shmrpc_stats *b)
{
    if (strcmp(a->service, b->service) != 0 || a->n_methods != b->n_methods) return false;
    for (uint32_t i = 0; i < b->n_methods; i++)
        if (find_method(a, b->methods[i].name, i) < 0) return false;
    return true;
}

static void add_method(shmrpc_method_stats *to, const shmrpc_method_stats *m)
{
    to->calls += m->calls;
    to->errors += m->errors;
    to->total_ns += m->total_ns;
    for (unsigned b = 0; b < SHMRPC_STATS_BUCKETS; b++)
        to->buckets[b] += m->buckets[b];
}

int obs_stats_merge(obs_stats *st)
{
    free(st->all);
    st->all = NULL;
    st->why[0] = '\0';
    const shmrpc_stats *first = NULL;
    for (int a = 0; a < OBS_STATS_ADDRS; a++) {
        st->left_out[a] = false;
        if (!st->part[a]) continue;
        if (!first) {
            first = st->part[a];
        } else if (!same_table(first, st->part[a])) {
            st->left_out[a] = true;
            snprintf(st->why, sizeof st->why,
                     "the statistics at %.95s (service %.64s, %u methods) are left out: not the "
                     "table of those at the first address (service %.64s, %u methods)",
                     st->addr[a], st->part[a]->service, st->part[a]->n_methods, first->service,
                     first->n_methods);
        }
    }
    if (!first) return 0;
    /* One block, as the runtime's snapshots; names borrowed from the first part. */
    shmrpc_stats *all = calloc(1, sizeof *all + first->n_methods * sizeof *all->methods);
    if (!all) return SHMRPC_ENOMEM;
    all->methods = (shmrpc_method_stats *)(all + 1);
    all->service = first->service;
    all->pid = first->pid;
    all->n_methods = first->n_methods;
    for (uint32_t i = 0; i < first->n_methods; i++)
        all->methods[i].name = first->methods[i].name;
    for (int a = 0; a < OBS_STATS_ADDRS; a++) {
        const shmrpc_stats *p = st->part[a];
        for (uint32_t i = 0; p && !st->left_out[a] && i < p->n_methods; i++) {
            long k = find_method(all, p->methods[i].name, i);
            if (k >= 0) add_method(&all->methods[k], &p->methods[i]);
        }
    }
    st->all = all;
    return 0;
}

void obs_stats_clear(obs_stats *st)
{
    free(st->all);
    for (int a = 0; a < OBS_STATS_ADDRS; a++)
        shmrpc_stats_free(st->part[a]);
    memset(st, 0, sizeof *st);
}
