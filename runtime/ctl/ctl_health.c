/* SPDX-License-Identifier: MIT */
/* shmrpcctl health: connects with an empty method table (any service accepts it) and asks
 * the built-in health method (shmrpc_client_health), which no user handler answers. */
#include "ctl_health.h"

#include "ctl_bytes.h"
#include "ctl_call.h"

#include <getopt.h> /* optind */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>

#include <shmrpc/admin.h>
#include <shmrpc/client.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/status.h>
#include <shmrpc/tcp.h>

#include "usage.h"

#define USAGE                                                                                      \
    "usage: shmrpcctl health [--json] [--timeout MS] [--secret-file PATH] [TLS OPTIONS] ADDRESS\n" \
    "prints serving, not_serving, draining or unreachable (--json: {\"address\": ..., "            \
    "\"health\":\n"                                                                                \
    "...}, and \"why\" when unreachable); exits 0 only when serving\n" CTL_TLS_USAGE

/* Whether addr is a shm:// service whose manager runs and marked its control segment
 * stopping: it takes no new connection then, so asking it is not possible, but the field
 * it wrote says it drains (docs/health.md). */
static bool shm_draining(const char *addr)
{
    if (strncmp(addr, "shm://", 6) != 0) return false;
    shmrpc_segment *v = NULL;
    size_t n = 0;
    const char *names[] = {addr};
    bool draining = false;
    if (shmrpc_segments_list(&v, &n, names, 1) != 0) return false;
    for (size_t i = 0; i < n; i++)
        if (v[i].kind == SHMRPC_SEG_CONTROL && v[i].valid && v[i].stopping &&
            v[i].owner == SHMRPC_LIFE_ALIVE)
            draining = true;
    shmrpc_segments_free(v);
    return draining;
}

int ctl_health_main(int argc, char **argv)
{
    ctl_opts o;
    ctl_opts_init(&o);
    shmrpc_client_opts *opts = &o.client;
    /* A probe answers quickly or not at all: a shorter default than a call's. */
    opts->timeout_ms = 1000;
    int status = ctl_client_options(argc, argv, CTL_OPT_JSON, USAGE, &o);
    if (status >= 0) return status;
    opts->tcp.connect_timeout_ms = opts->timeout_ms;
    if (argc - optind != 1) return shmrpc__usage(false, USAGE);
    const char *addr = argv[optind];
    shmrpc_dyn *d = NULL;
    int rc = shmrpc_dyn_new(&d, opts);
    if (rc != 0) {
        fprintf(stderr, "shmrpcctl: health: %s\n", shmrpc_strerror(rc));
        return 2;
    }
    shmrpc_health state = 0;
    rc = shmrpc_dyn_connect(d, addr);
    if (rc == SHMRPC_EINVAL) {
        const char *why = shmrpc_errmsg();
        fprintf(stderr, "shmrpcctl: %s: ", addr);
        ctl_put_safe(stderr, *why ? why : shmrpc_strerror(rc));
        fputc('\n', stderr);
        shmrpc_dyn_free(d);
        return 2;
    }
    if (rc == 0) rc = shmrpc_client_health(shmrpc_dyn_client(d), &state);
    /* Escaped, for the terminal and for JSON: a server's words may be among them. Read
     * before shm_draining, whose reading of the segments says its own. */
    char why[1024];
    ctl_safe_copy(why, sizeof why, *shmrpc_errmsg() ? shmrpc_errmsg() : shmrpc_strerror(rc));
    if (rc != 0 && shm_draining(addr)) {
        rc = 0;
        state = SHMRPC_HEALTH_DRAINING;
    }
    /* Unreachable is not a state the server says, but a probe's answer all the same:
     * stdout for scripts, the reason on stderr (and in the JSON). */
    const char *said = rc != 0 ? "unreachable" : shmrpc_health_name((int)state);
    if (o.json) {
        json_t *j = json_pack("{s:s, s:s}", "address", addr, "health", said);
        if (j && rc != 0) json_object_set_new(j, "why", json_string(why));
        if (j) json_dumpf(j, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(j);
    } else {
        printf("%s\n", said);
    }
    if (rc != 0) fprintf(stderr, "shmrpcctl: %s: %s\n", addr, why);
    shmrpc_dyn_free(d);
    return rc == 0 && state == SHMRPC_HEALTH_SERVING ? 0 : 1;
}
