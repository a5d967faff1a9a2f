/* SPDX-License-Identifier: MIT */
/* A service's call statistics as the programs read them from outside (docs/stats.md): one
 * snapshot per address it is known to serve at, summed per method into one, for the
 * supervisor's series (sup_series.c) and the page (web_view.c) alike. */
#ifndef SHMRPC_OBSERVE_STATS_H
#define SHMRPC_OBSERVE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <shmrpc/stats.h>

#include "config.h"

/* The address slots: a service serves at most one shm:// and one tcp:// address. */
enum { OBS_STATS_SHM, OBS_STATS_TCP, OBS_STATS_ADDRS };

/* Room for obs_stats.why's longest message (at most 362 bytes with its bounded fields). */
#define OBS_STATS_WHY 384

typedef struct obs_stats {
    shmrpc_stats *part[OBS_STATS_ADDRS]; /* each slot's snapshot; NULL: none read there */
    char addr[OBS_STATS_ADDRS][96];      /* where it was read ("": nowhere known) */
    bool left_out[OBS_STATS_ADDRS];      /* read, but its table is not the first one's */
    shmrpc_stats *all;                   /* the parts not left out, summed per method in the
                                          * first one's order; NULL: no part */
    char why[OBS_STATS_WHY];             /* why a part was left out; "" when none was */
} obs_stats;

/* Where an exec= program's TCP statistics may be: it binds what it will. */
#define OBS_STATS_TCP_GUESSES 4

/* st (zeroed first) read from every address the supervisor knows s serves at, and merged
 * (obs_stats_merge): shm://SHM_NAME, and tcp://BIND:PORT of tcp_port, spelled as the TCP
 * server names its segment (an IPv6 host in brackets). A module= service's manager binds
 * tcp_bind (none: no TCP); for an exec= program the first of tcp://127.0.0.1, 0.0.0.0,
 * [::1] and [::] with a segment is taken. A segment whose server (its pid) is not
 * obs_proc_alive in group, s's process group (its leader's pid; 0: not known), is
 * a stale one of a run that was killed: not read. */
void obs_stats_read(const cfg_service *s, pid_t group, obs_stats *st);

/* st->all from st->part: counts, times and buckets added by method name. A part whose
 * service name or set of method names differs from the first part's is not the same
 * table (a stale segment of another program at that address): left out, and said in
 * st->why. 0, or SHMRPC_ENOMEM (st->all NULL). */
int obs_stats_merge(obs_stats *st);

/* Frees what st holds and zeroes it. */
void obs_stats_clear(obs_stats *st);

#endif
