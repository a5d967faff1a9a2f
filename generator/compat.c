/* SPDX-License-Identifier: MIT */
/* shmrpcgen --check-compat OLD.svc NEW.svc: the verdict the handshake would give between
 * clients and servers built from the two files, both ways (docs/svc-language.md,
 * "Compatible evolution"). The comparison is the library's (shmrpc_service_compat), so
 * that the check before deployment and the one at connect are one. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <shmrpc/service.h>

#include "gen.h"

/* The method table a build of f has, as its generated NAME.c holds it; false when memory
 * ran out. */
static bool info_of(svc_arena *a, const svc_file *f, shmrpc_service_info *out)
{
    const svc_service *s = f->service;
    const svc_method **sorted = svc_methods_by_name(a, s);
    shmrpc_method_info *m = svc_arena_alloc(a, sizeof *m * (size_t)(s->n_methods + 1));
    int n_types = 0;
    const svc_decl **decls = svc_table_types(a, s, &n_types);
    const char **types = svc_arena_alloc(a, sizeof *types * (size_t)(n_types + 1));
    if (!sorted || !m || !decls || !types) return false;
    for (int i = 0; i < s->n_methods; i++) {
        const svc_method *x = sorted[i];
        const char *full = svc_signature(a, x, SIZE_MAX / 2, NULL);
        const char *sig = svc_table_signature(a, x, SVC_MAX_SIGNATURE, NULL);
        const char *name = svc_arena_strndup(a, x->name.p, (size_t)x->name.n);
        if (!full || !sig || !name) return false;
        m[i] = (shmrpc_method_info){
            .name = name,
            .id = (uint32_t)i,
            .encoding = x->enc == SVC_ENC_JSON   ? SHMRPC_ENC_JSON
                        : svc_enc_is_raw(x->enc) ? SHMRPC_ENC_RAW
                                                 : SHMRPC_ENC_MSGPACK,
            .fingerprint = svc_fingerprint(full),
            .signature = sig,
        };
    }
    for (int i = 0; i < n_types; i++)
        if ((types[i] = svc_type_text(a, decls[i], SVC_MAX_SIGNATURE, NULL)) == NULL) return false;
    const char *sname = svc_arena_strndup(a, s->name.p, (size_t)s->name.n);
    if (!sname) return false;
    *out = (shmrpc_service_info){
        .magic = SHMRPC_SERVICE_MAGIC,
        .version = SHMRPC_DESCRIPTOR_VERSION,
        .name = sname,
        .svc_name = s->svc_name ? s->svc_name : "",
        .n_methods = (uint32_t)s->n_methods,
        .methods = s->n_methods ? m : NULL,
        .n_types = (uint32_t)n_types,
        .types = n_types ? types : NULL,
    };
    return true;
}

/* One direction's verdict on stdout; its status. */
static int verdict(const char *clients, const shmrpc_service_info *c, const char *server,
                   const shmrpc_service_info *s)
{
    shmrpc_buf v;
    shmrpc_buf_init(&v);
    int rc = shmrpc_service_compat(c, s, &v);
    const char *text = v.len ? (const char *)v.data : "";
    printf("clients of %s, a server of %s: %s%s\n", clients, server,
           rc == 0 ? (*text ? "" : "the same") : "incompatible: ", text);
    shmrpc_buf_destroy(&v);
    return rc;
}

int gen_check_compat(const char *old_path, const char *new_path)
{
    svc_arena *a = svc_arena_new();
    if (a == NULL) {
        fputs("shmrpcgen: out of memory\n", stderr);
        return 3;
    }
    int nerrors = 0;
    svc_file *old = svc_load(a, stderr, old_path, &nerrors);
    svc_file *new = nerrors == 0 && old ? svc_load(a, stderr, new_path, &nerrors) : NULL;
    int status = 3;
    shmrpc_service_info oi, ni;
    if (old == NULL || new == NULL || nerrors > 0) {
        status = 3;
    } else if (!old->service || !new->service) {
        fprintf(stderr, "shmrpcgen: %s has no service\n", old->service ? new_path : old_path);
    } else if (!info_of(a, old, &oi) || !info_of(a, new, &ni)) {
        fputs("shmrpcgen: out of memory\n", stderr);
    } else {
        /* Servers first: what running clients of the old file meet once the new one
         * serves decides; new clients meeting old servers is the other half of a rollout. */
        int up = verdict(old_path, &oi, new_path, &ni);
        int down = verdict(new_path, &ni, old_path, &oi);
        status = up != 0 ? 1 : down != 0 ? 2 : 0;
    }
    svc_arena_free(a);
    return status;
}
