/* A service's call statistics as the supervisor reads them (docs/stats.md): one snapshot
 * per address it knows the service serves at, summed per method into one, for the series
 * (sup_series.c) and the page (web_view.c) alike. */
#ifndef SHMRPC_SUPERVISOR_STATS_MERGE_H
#define SHMRPC_SUPERVISOR_STATS_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <shmrpc/stats.h>

#include "config.h"

/* The address slots: a service serves at most one shm:// and one tcp:// address. */
enum { SUP_STATS_SHM, SUP_STATS_TCP, SUP_STATS_ADDRS };

/* Room for sup_stats.why's longest message (at most 362 bytes with its bounded fields). */
#define SUP_STATS_WHY 384

typedef struct sup_stats {
    shmrpc_stats *part[SUP_STATS_ADDRS]; /* each slot's snapshot; NULL: none read there */
    char addr[SUP_STATS_ADDRS][96];      /* where it was read ("": nowhere known) */
    bool left_out[SUP_STATS_ADDRS];      /* read, but its table is not the first one's */
    shmrpc_stats *all;                   /* the parts not left out, summed per method in the
                                          * first one's order; NULL: no part */
    char why[SUP_STATS_WHY];             /* why a part was left out; "" when none was */
} sup_stats;

/* Where an exec= program's TCP statistics may be: it binds what it will. */
#define SUP_STATS_TCP_GUESSES 4

/* st (zeroed first) read from every address the supervisor knows s serves at, and merged
 * (sup_stats_merge): shm://SHM_NAME, and tcp://BIND:PORT of tcp_port, spelled as the TCP
 * server names its segment (an IPv6 host in brackets). A module= service's manager binds
 * tcp_bind (none: no TCP); for an exec= program the first of tcp://127.0.0.1, 0.0.0.0,
 * [::1] and [::] with a segment is taken. A segment whose server (its pid) is not
 * sup_stats_owner_live in group, s's process group (its leader's pid; 0: not known), is
 * a stale one of a run that was killed: not read. */
void sup_stats_read(const shmrpc__config_service *s, pid_t group, sup_stats *st);

/* Whether process pid is alive (not a zombie) and, when group > 0, in process group
 * group; with group <= 0, only that it is alive (kill(pid, 0) not ESRCH). */
bool sup_stats_owner_live(pid_t pid, pid_t group);

/* st->all from st->part: counts, times and buckets added by method name. A part whose
 * service name or set of method names differs from the first part's is not the same
 * table (a stale segment of another program at that address): left out, and said in
 * st->why. 0, or SHMRPC_ENOMEM (st->all NULL). */
int sup_stats_merge(sup_stats *st);

/* Frees what st holds and zeroes it. */
void sup_stats_clear(sup_stats *st);

#endif
