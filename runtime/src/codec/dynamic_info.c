/* SPDX-License-Identifier: MIT */
/* shmrpc_dyn_info_copy (shmrpc/dynamic.h): a deep copy of a service's method table and its types. Apart
 * from the rest of the dynamic codec because the client's table check keeps its copy of
 * the server's table with it, and a program that links it must not pull the codec in. */
#include <string.h>

#include <shmrpc/dynamic.h>

const shmrpc_service_info *shmrpc_dyn_info_copy(shmrpc_arena *a, const shmrpc_service_info *in)
{
    shmrpc_service_info *out = shmrpc_arena_alloc(a, sizeof *out, _Alignof(shmrpc_service_info));
    shmrpc_method_info *m = shmrpc_arena_calloc(a, in->n_methods ? in->n_methods : 1, sizeof *m,
                                                _Alignof(shmrpc_method_info));
    if (out == NULL || m == NULL) return NULL;
    *out = *in;
    out->name = shmrpc_arena_strndup(a, in->name, strlen(in->name));
    out->svc_name =
        in->svc_name ? shmrpc_arena_strndup(a, in->svc_name, strlen(in->svc_name)) : NULL;
    for (uint32_t i = 0; i < in->n_methods; i++) {
        m[i] = in->methods[i];
        m[i].name = shmrpc_arena_strndup(a, in->methods[i].name, strlen(in->methods[i].name));
        m[i].signature =
            shmrpc_arena_strndup(a, in->methods[i].signature, strlen(in->methods[i].signature));
        if (m[i].name == NULL || m[i].signature == NULL) return NULL;
    }
    out->methods = m;
    const char **types = shmrpc_arena_calloc(a, in->n_types ? in->n_types : 1, sizeof *types,
                                             _Alignof(const char *));
    if (types == NULL) return NULL;
    for (uint32_t i = 0; i < in->n_types; i++)
        if ((types[i] = shmrpc_arena_strndup(a, in->types[i], strlen(in->types[i]))) == NULL)
            return NULL;
    out->types = in->n_types ? types : NULL;
    return out->name != NULL && (in->svc_name == NULL || out->svc_name != NULL) ? out : NULL;
}
