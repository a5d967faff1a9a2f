/* SPDX-License-Identifier: MIT */
/* The chain of interceptors of a client or a server, and the order its hooks run in around
 * a call (docs/interceptors.md). Where a call begins and ends is the caller's: client.c and
 * dispatch.c. */
#include <stdio.h>
#include <stdlib.h>

#include "rpc/intercept.h"
#include "rpc/rpc.h"

struct shmrpc__icpts {
    uint32_t n;
    struct {
        shmrpc_interceptor i;
        void *arg;
    } at[SHMRPC_MAX_INTERCEPTORS];
};

int shmrpc__icpts_add(shmrpc__icpts **chain, const shmrpc_interceptor *i, void *arg)
{
    if (!i) return shmrpc__err_set(SHMRPC_EINVAL, "no interceptor");
    if (!i->before && !i->after)
        return shmrpc__err_set(SHMRPC_EINVAL, "an interceptor with neither before nor after");
    if (*chain && (*chain)->n == SHMRPC_MAX_INTERCEPTORS)
        return shmrpc__err_set(SHMRPC_EINVAL, "already %d interceptors (SHMRPC_MAX_INTERCEPTORS)",
                               SHMRPC_MAX_INTERCEPTORS);
    if (!*chain && !(*chain = calloc(1, sizeof **chain))) return shmrpc__err_code(SHMRPC_ENOMEM);
    shmrpc__icpts *ch = *chain;
    ch->at[ch->n].i = *i;
    ch->at[ch->n].arg = arg;
    ch->n++;
    return shmrpc__err_end(0);
}

void shmrpc__icpts_free(shmrpc__icpts *chain)
{
    free(chain);
}

static void icall_vmsg(shmrpc__icall *ic, const char *fmt, va_list ap)
{
    if (ic->pub.ctx) {
        vsnprintf(ic->pub.ctx->msg, sizeof ic->pub.ctx->msg, fmt, ap);
        ic->pub.ctx->has_msg = true;
    } else {
        shmrpc__msg_vset(ic->msg, fmt, ap);
    }
    ic->msg_set = true;
}

static void icall_msg(shmrpc__icall *ic, const char *fmt, ...) SHMRPC__FMT(2, 3);
static void icall_msg(shmrpc__icall *ic, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    icall_vmsg(ic, fmt, ap);
    va_end(ap);
}

int shmrpc_intercept_error(const shmrpc_call_info *call, int rc, const char *fmt, ...)
{
    if (!call) return rc;
    /* The library made call as the head of a shmrpc__icall (never const). */
    shmrpc__icall *ic = (shmrpc__icall *)call;
    va_list ap;
    va_start(ap, fmt);
    icall_vmsg(ic, fmt, ap);
    va_end(ap);
    return rc;
}

int shmrpc__icpts_before(const shmrpc__icpts *chain, shmrpc__icall *ic, uint32_t *ran)
{
    ic->msg_set = false;
    uint32_t k = 0;
    int rc = 0;
    for (; k < chain->n; k++) {
        if (!chain->at[k].i.before) continue;
        rc = chain->at[k].i.before(chain->at[k].arg, &ic->pub);
        if (rc == 0) continue;
        if (rc > 0 || !shmrpc__status_known(rc)) {
            icall_msg(ic,
                      "interceptor %u of '%s' returned %d before the call, which is not a status",
                      k, ic->pub.method->name, rc);
            rc = SHMRPC_EINVAL;
        } else if (!ic->msg_set) {
            icall_msg(ic, "refused by an interceptor: %s", shmrpc_strerror(rc));
        }
        break;
    }
    /* A message a before left on a call it let go on is no handler's. */
    if (rc == 0 && ic->msg_set && ic->pub.ctx) ic->pub.ctx->has_msg = false;
    *ran = k;
    return rc;
}

int shmrpc__icpts_after(const shmrpc__icpts *chain, shmrpc__icall *ic, uint32_t ran, int rc)
{
    for (uint32_t k = ran; k-- > 0;) {
        if (!chain->at[k].i.after) continue;
        ic->msg_set = false;
        int r = chain->at[k].i.after(chain->at[k].arg, &ic->pub, rc);
        /* Only a failure replaces: a failed call has no answer to turn into a success. */
        if (r >= 0 || r == rc || !shmrpc__status_known(r)) continue;
        rc = r;
        if (!ic->msg_set) icall_msg(ic, "%s", shmrpc_strerror(rc));
    }
    return rc;
}
