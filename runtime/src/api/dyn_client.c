/* SPDX-License-Identifier: MIT */
/* The dynamic codec's handle (shmrpc/dynamic.h): a client of a service whose table the
 * caller does not know, which learns the table at connect (codec/dynamic.c parses its
 * signatures). */
#include <stdlib.h>
#include <string.h>

#include "codec/dyn.h"

/* --- the handle and the connection ------------------------------------------------------ */

static const shmrpc_service_info probe_info = {
    SHMRPC_SERVICE_MAGIC, SHMRPC_DESCRIPTOR_VERSION, "Probe", "probe", 0, 0, 0, NULL, 0, NULL};

int shmrpc_dyn_new(shmrpc_dyn **out, const shmrpc_client_opts *opts)
{
    *out = NULL;
    shmrpc_dyn *d = calloc(1, sizeof *d);
    if (d == NULL) return shmrpc__err_code(SHMRPC_ENOMEM);
    if (opts)
        d->opts = *opts;
    else
        shmrpc_client_opts_init(&d->opts);
    /* The probe is made now, so that opts out of range fail here, before any connect. */
    int rc = shmrpc_client_new(&d->probe, &probe_info, &d->opts);
    if (rc == 0 && (d->a = shmrpc_arena_new(4096)) == NULL) rc = shmrpc__err_code(SHMRPC_ENOMEM);
    if (rc != 0) {
        shmrpc_dyn_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

void shmrpc_dyn_free(shmrpc_dyn *d)
{
    if (d == NULL) return;
    shmrpc_client_free(d->probe);
    shmrpc_client_free(d->c);
    shmrpc_arena_free(d->a);
    free(d);
}

const shmrpc_service_info *shmrpc_dyn_info(const shmrpc_dyn *d)
{
    return d->c ? d->info : NULL;
}

shmrpc_client *shmrpc_dyn_client(shmrpc_dyn *d)
{
    return d->c;
}

int shmrpc_dyn_connect(shmrpc_dyn *d, const char *addr)
{
    shmrpc_client_free(d->c);
    d->c = NULL;
    d->info = NULL;
    d->sigs = NULL;
    d->sig_errs = NULL;
    d->types = NULL;
    d->types_err = NULL;
    shmrpc_arena_reset(d->a);
    int rc;
    if (d->probe == NULL && (rc = shmrpc_client_new(&d->probe, &probe_info, &d->opts)) != 0)
        return shmrpc__err_set(rc, "cannot make a client: %s", shmrpc_strerror(rc));
    /* A client's failure leaves its message on the thread, as this call's. */
    if ((rc = shmrpc_client_connect(d->probe, addr)) != 0) return rc;
    const shmrpc_service_info *info =
        shmrpc_dyn_info_copy(d->a, shmrpc_client_server_info(d->probe));
    /* The probe's connection is not wanted any more (a shm:// one holds a channel). */
    shmrpc_client_free(d->probe);
    d->probe = NULL;
    /* The status says it all: no message. */
    if (info == NULL) return shmrpc__err_code(SHMRPC_ENOMEM);
    d->sigs = shmrpc_arena_calloc(d->a, info->n_methods ? info->n_methods : 1, sizeof *d->sigs,
                                  _Alignof(const shmrpc_dyn_sig *));
    d->sig_errs = shmrpc_arena_calloc(d->a, info->n_methods ? info->n_methods : 1,
                                      sizeof *d->sig_errs, _Alignof(const char *));
    if (d->sigs == NULL || d->sig_errs == NULL) return shmrpc__err_code(SHMRPC_ENOMEM);
    if ((rc = shmrpc_client_new(&d->c, info, &d->opts)) != 0) return rc;
    if ((rc = shmrpc_client_connect(d->c, addr)) != 0) {
        shmrpc_client_free(d->c);
        d->c = NULL;
        return rc;
    }
    d->info = info;
    return 0;
}

int shmrpc_dyn_method(shmrpc_dyn *d, const char *name, const shmrpc_method_info **m,
                      const shmrpc_dyn_sig **sig)
{
    *m = NULL;
    *sig = NULL;
    const shmrpc_service_info *info = shmrpc_dyn_info(d);
    if (info == NULL) return shmrpc__err_set(SHMRPC_ECLOSED, "not connected");
    uint32_t i = 0;
    while (i < info->n_methods && strcmp(info->methods[i].name, name) != 0)
        i++;
    if (i == info->n_methods) {
        shmrpc_buf *msg = shmrpc__err_begin();
        shmrpc__msg_set(msg, "%s has no method '%s' (it has:", info->name, name);
        for (uint32_t k = 0; k < info->n_methods; k++)
            shmrpc__msg_append(msg, "%s %s", k ? "," : "", info->methods[k].name);
        shmrpc__msg_append(msg, "%s)", info->n_methods ? "" : " none");
        return shmrpc__err_end(SHMRPC_ENOENT);
    }
    *m = &info->methods[i];
    if (d->types == NULL && d->types_err == NULL) {
        /* The table's types, once per connection: the signatures name them. */
        char why[256];
        int rc = shmrpc__types_parse(d->a, info->types, info->n_types, &d->types, why, sizeof why);
        if (rc == SHMRPC_ENOMEM) return shmrpc__err_code(rc);
        if (rc != 0) d->types_err = shmrpc_arena_strndup(d->a, why, strlen(why));
        if (rc != 0 && d->types_err == NULL) return shmrpc__err_code(SHMRPC_ENOMEM);
    }
    if (d->types_err != NULL) return shmrpc__err_set(SHMRPC_EPROTO, "%s", d->types_err);
    if (d->sig_errs[i] != NULL) return shmrpc__err_set(SHMRPC_EPROTO, "%s", d->sig_errs[i]);
    if (d->sigs[i] == NULL) {
        char why[256];
        int rc = shmrpc__dyn_parse(d->a, info->methods[i].signature, d->types, &d->sigs[i], why,
                                   sizeof why);
        if (rc != 0) {
            /* Kept: a pooled handle asked again and again for a method that does not parse
             * must not parse it (into memory held until the next connect) every time. */
            d->sig_errs[i] = shmrpc_arena_strndup(d->a, why, strlen(why));
            return shmrpc__err_set(rc == SHMRPC_EINVAL ? SHMRPC_EPROTO : rc, "%s", why);
        }
    }
    *sig = d->sigs[i];
    return 0;
}
