/* SPDX-License-Identifier: MIT */
/* The supervisor's own lines, to its log, the journal or stderr, and the states' names
 * (sup_ctx.h). */
#include "sup_ctx.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void sup_vlogf(const sup_ctx *ctx, const char *fmt, va_list ap)
{
    /* On the stack when it fits; a longer line (it names paths, as long as the file
     * system lets them be) on the heap, whole: a cut path hides what the user must read. */
    char small[1024], *line = small;
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof small - 1, fmt, ap);
    if (n < 0) {
        va_end(again);
        return;
    }
    if ((size_t)n > sizeof small - 2) {
        char *big = malloc((size_t)n + 2);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, again);
            line = big;
        } else {
            n = (int)sizeof small - 2; /* no memory: the start of it, rather than nothing */
        }
    }
    va_end(again);
    line[n++] = '\n';
    int prio = 6, skip = 0; /* SUP_INFO unless the format began with a priority */
    if (n >= 3 && line[0] == '<' && line[1] >= '0' && line[1] <= '7' && line[2] == '>') {
        prio = line[1] - '0';
        skip = 3;
    }
    if (ctx->own_log) {
        sup_log_write(ctx->own_log, line + skip, (size_t)(n - skip));
    } else if (ctx->journal) {
        /* The journal stamps the lines itself, and reads <N> as the line's priority. */
        fprintf(stderr, "<%d>shmrpc-service: %.*s", prio, n - skip, line + skip);
    } else {
        fprintf(stderr, "shmrpc-service: %.*s", n - skip, line + skip);
    }
    if (line != small) free(line);
}

void sup_logf(const sup_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sup_vlogf(ctx, fmt, ap);
    va_end(ap);
}

const char *sup_state_name(sup_state st)
{
    switch (st) {
    case SUP_STOPPED:
        return "stopped";
    case SUP_STARTING:
        return "starting";
    case SUP_RUNNING:
        return "running";
    case SUP_BACKOFF:
        return "backoff";
    case SUP_STOPPING:
        return "stopping";
    case SUP_FAILED:
        return "failed";
    }
    return "?";
}
