/* SPDX-License-Identifier: MIT */
/* shmrpcctl ls and clean: the table and JSON of the segments that the library's admin API
 * (shmrpc/admin.h) lists with their owners, and the removal of the stale ones through it. */
#include "ctl_segments.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <shmrpc/admin.h>
#include <shmrpc/status.h>

#include "ctl_opts.h"
#include "usage.h"

typedef shmrpc_segment seg;

/* The segments of the names from argv[first] on (all when there are none); 0, or -1 after
 * saying why. */
static int list(int argc, char **argv, int first, seg **v, size_t *n)
{
    if (shmrpc_segments_list(v, n, (const char *const *)argv + first, (size_t)(argc - first)) == 0)
        return 0;
    fprintf(stderr, "shmrpcctl: %s\n", shmrpc_errmsg());
    return -1;
}

static json_t *seg_json(const seg *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(shmrpc_seg_kind_name(s->kind)));
    json_object_set_new(o, "name", json_string(s->name));
    json_object_set_new(o, "key", json_string(s->key));
    json_object_set_new(o, "size", s->readable ? json_integer(s->size) : json_null());
    json_object_set_new(o, "uid", s->readable ? json_integer(s->uid) : json_null());
    json_object_set_new(o, "owner_pid",
                        s->owner_pid > 0 ? json_integer(s->owner_pid) : json_null());
    json_object_set_new(o, "owner", json_string(shmrpc_seg_life_name(s->owner)));
    if (s->kind == SHMRPC_SEG_CONTROL && s->valid) {
        json_object_set_new(o, "service", json_string(s->service));
        json_object_set_new(o, "workers", json_integer(s->workers));
        json_object_set_new(o, "connections", json_integer(s->connections));
        json_object_set_new(o, "stopping", json_boolean(s->stopping));
    }
    if (s->kind == SHMRPC_SEG_STATS && s->valid) {
        json_object_set_new(o, "service", json_string(s->service));
        json_object_set_new(o, "methods", json_integer(s->methods));
    }
    if (s->kind == SHMRPC_SEG_QUEUE && s->valid) {
        const shmrpc_queue_stats *q = &s->queue;
        json_object_set_new(o, "depth", json_integer((json_int_t)q->depth));
        json_object_set_new(o, "pushed", json_integer((json_int_t)q->pushed));
        json_object_set_new(o, "popped", json_integer((json_int_t)q->popped));
        json_object_set_new(o, "timeouts", json_integer((json_int_t)q->timeouts));
        json_object_set_new(o, "drops", json_integer((json_int_t)q->drops));
    }
    if ((s->kind == SHMRPC_SEG_MAP || s->kind == SHMRPC_SEG_MAPGEN) && s->valid) {
        const shmrpc_map_info *m = &s->map;
        json_object_set_new(o, "generation", json_integer((json_int_t)m->generation));
        json_object_set_new(o, "entries", json_integer((json_int_t)m->count));
        json_object_set_new(o, "bytes", json_integer((json_int_t)m->bytes));
        json_object_set_new(o, "used", json_integer((json_int_t)m->used));
        if (s->kind == SHMRPC_SEG_MAP) {
            json_object_set_new(o, "writes", json_integer((json_int_t)m->writes));
            json_object_set_new(o, "growths", json_integer((json_int_t)m->growths));
            json_object_set_new(o, "lock_waits", json_integer((json_int_t)m->lock_waits));
        }
    }
    if (s->kind == SHMRPC_SEG_CHANNEL) {
        json_object_set_new(o, "client_pid",
                            s->client_pid > 0 ? json_integer(s->client_pid) : json_null());
        json_object_set_new(o, "client", json_string(shmrpc_seg_life_name(s->client)));
    }
    json_object_set_new(o, "note", json_string(s->detail));
    json_object_set_new(o, "stale", json_boolean(s->stale));
    if (s->stale) json_object_set_new(o, "reason", json_string(s->reason));
    return o;
}

/* A command's options and the segments it names. */
typedef struct listed {
    ctl_opts o;
    seg *v;
    size_t n;
} listed;

/* The one option (set: CTL_OPT_JSON for ls, CTL_OPT_DRY_RUN for clean) and the names
 * (services, NAME or shm://NAME, locks, queues and maps), in any order, -- ending the
 * options; then the segments of those names. -1: listed (l->v to free); else the exit
 * status. */
static int parse_and_list(int argc, char **argv, unsigned set, const char *usage, listed *l)
{
    ctl_opts_init(&l->o);
    l->o.anywhere = true;
    int first = ctl_opts_read(argc, argv, set, set, &l->o); /* the names are moved there */
    if (l->o.help) return shmrpc__usage(true, usage);
    if (first < 0) return ctl_usage_error(argv[0], l->o.why);
    return list(argc, argv, first, &l->v, &l->n) == 0 ? -1 : 1;
}

#define LS_USAGE "usage: shmrpcctl ls [--json] [NAME...]\n"

int ctl_ls_main(int argc, char **argv)
{
    listed l;
    int st = parse_and_list(argc, argv, CTL_OPT_JSON, LS_USAGE, &l);
    if (st >= 0) return st;
    seg *v = l.v;
    size_t n = l.n;
    bool as_json = l.o.json;
    if (as_json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, seg_json(&v[i]));
        char *text = json_dumps(arr, JSON_COMPACT);
        json_decref(arr);
        if (text) puts(text);
        free(text);
    } else {
        int w = 4;
        for (size_t i = 0; i < n; i++)
            if ((int)strlen(v[i].name) > w) w = (int)strlen(v[i].name);
        printf("%-8s %-*s %10s %-11s %-7s %s\n", "KIND", w, "NAME", "SIZE", "OWNER", "STATE",
               "NOTE");
        for (size_t i = 0; i < n; i++) {
            const seg *s = &v[i];
            char owner[24] = "-", size[24] = "?";
            if (s->owner_pid > 0)
                snprintf(owner, sizeof owner, "%s %" PRId32,
                         s->kind == SHMRPC_SEG_LOCK ? "tid" : "pid", s->owner_pid);
            if (s->readable) snprintf(size, sizeof size, "%lld", s->size);
            printf("%-8s %-*s %10s %-11s %-7s %s%s%s\n", shmrpc_seg_kind_name(s->kind), w, s->name,
                   size, owner, shmrpc_seg_life_name(s->owner), s->detail,
                   s->stale ? "; stale: " : "", s->stale ? s->reason : "");
        }
    }
    shmrpc_segments_free(v);
    return fflush(stdout) == 0 ? 0 : 1;
}

#define CLEAN_USAGE "usage: shmrpcctl clean [--dry-run] [NAME...]\n"

int ctl_clean_main(int argc, char **argv)
{
    listed l;
    int st = parse_and_list(argc, argv, CTL_OPT_DRY_RUN, CLEAN_USAGE, &l);
    if (st >= 0) return st;
    int status = 0;
    size_t removed = 0;
    /* Channels before their control segment, so that a failure leaves nothing orphaned. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < l.n; i++) {
            const seg *s = &l.v[i];
            if (!s->stale || (pass == 0) != (s->kind == SHMRPC_SEG_CHANNEL)) continue;
            if (l.o.dry_run) {
                printf("would remove %s %s: %s\n", shmrpc_seg_kind_name(s->kind), s->name,
                       s->reason);
                removed++;
                continue;
            }
            int rc = shmrpc_segment_remove(s);
            if (rc == SHMRPC_EBUSY) continue; /* no longer stale: not ours to remove */
            if (rc != 0) {
                fprintf(stderr, "shmrpcctl: %s\n", shmrpc_errmsg());
                status = 1;
                continue;
            }
            printf("removed %s %s: %s\n", shmrpc_seg_kind_name(s->kind), s->name, s->reason);
            removed++;
        }
    }
    if (removed == 0) printf("nothing to remove\n");
    shmrpc_segments_free(l.v);
    if (fflush(stdout) != 0) status = 1;
    return status;
}
