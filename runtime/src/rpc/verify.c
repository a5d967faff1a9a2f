/* SPDX-License-Identifier: MIT */
/* Checks of service descriptors, and the method-table comparison that every transport
 * runs when a client connects (equal fingerprints, else compat.c's verdict). */
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

static const char *nonnull(const char *s)
{
    return s ? s : "?";
}

int shmrpc__info_check(const shmrpc_service_info *info, shmrpc_buf *err)
{
    if (!info) {
        shmrpc__msg_set(err, "no service info");
        return SHMRPC_EINVAL;
    }
    if (info->magic != SHMRPC_SERVICE_MAGIC) {
        shmrpc__msg_set(err, "service info has a bad magic number 0x%08x (expected 0x%08x)",
                        info->magic, SHMRPC_SERVICE_MAGIC);
        return SHMRPC_EINVAL;
    }
    const char *name = nonnull(info->name);
    if (info->version != SHMRPC_DESCRIPTOR_VERSION) {
        shmrpc__msg_set(err,
                        "service '%s' has descriptor version %u; this runtime reads version %u "
                        "(regenerate it)",
                        name, info->version, SHMRPC_DESCRIPTOR_VERSION);
        return SHMRPC_EVERSION;
    }
    if (!info->name || !info->name[0]) {
        shmrpc__msg_set(err, "service info has no name");
        return SHMRPC_EINVAL;
    }
    uint32_t n = info->n_methods;
    if (n && !info->methods) {
        shmrpc__msg_set(err, "service '%s': %u methods but no method table", name, n);
        return SHMRPC_EINVAL;
    }
    for (uint32_t i = 0; i < n; i++) {
        const shmrpc_method_info *m = &info->methods[i];
        if (!m->name || !m->name[0] || !m->signature) {
            shmrpc__msg_set(err, "service '%s': method %u has no name or signature", name, i);
            return SHMRPC_EINVAL;
        }
        if (m->id != i) {
            shmrpc__msg_set(err, "service '%s': method '%s' has id %u at index %u", name, m->name,
                            m->id, i);
            return SHMRPC_EINVAL;
        }
        if ((unsigned)m->encoding > SHMRPC_ENC_RAW) {
            shmrpc__msg_set(err, "service '%s': method '%s' has unknown encoding %u", name, m->name,
                            (unsigned)m->encoding);
            return SHMRPC_EINVAL;
        }
        /* Lookups and the client-server merge walk rely on this order. */
        if (i > 0 && strcmp(info->methods[i - 1].name, m->name) >= 0) {
            shmrpc__msg_set(err,
                            "service '%s': method table is not sorted by name ('%s' before '%s')",
                            name, info->methods[i - 1].name, m->name);
            return SHMRPC_EINVAL;
        }
    }
    if (info->n_types && !info->types) {
        shmrpc__msg_set(err, "service '%s': %u types but no type table", name, info->n_types);
        return SHMRPC_EINVAL;
    }
    for (uint32_t i = 0; i < info->n_types; i++)
        if (!info->types[i]) {
            shmrpc__msg_set(err, "service '%s': type %u has no description", name, i);
            return SHMRPC_EINVAL;
        }
    return 0;
}

/* Adds one difference to the message, "; "-separated after the first. */
static void note(shmrpc_buf *err, unsigned *count, const char *fmt, ...) SHMRPC__FMT(3, 4);
static void note(shmrpc_buf *err, unsigned *count, const char *fmt, ...)
{
    if ((*count)++ == 0)
        shmrpc__msg_set(err, "method table differs from the server's: ");
    else
        shmrpc__msg_append(err, "; ");
    va_list ap;
    va_start(ap, fmt);
    shmrpc__msg_vappend(err, fmt, ap);
    va_end(ap);
}

int shmrpc__method_map(const shmrpc_service_info *client, const shmrpc_service_info *server,
                       uint32_t *map, shmrpc_buf *err, shmrpc_buf *diffs)
{
    const shmrpc_method_info *cm = client->methods, *sm = server->methods;
    uint32_t cn = client->n_methods, sn = server->n_methods;
    unsigned bad = 0, n_diffs = 0;
    shmrpc__compat *compat = NULL;
    uint32_t i = 0, j = 0;
    if (diffs) shmrpc_buf_clear(diffs);
    /* Both tables are sorted by name: one walk pairs them. Server methods the client
     * lacks are fine (an older client); client methods the server lacks are not. */
    while (i < cn) {
        int cmp = j < sn ? strcmp(cm[i].name, sm[j].name) : -1;
        if (cmp > 0) {
            j++;
            continue;
        }
        if (cmp < 0) {
            note(err, &bad, "'%s' is missing on the server", cm[i].name);
            i++;
            continue;
        }
        map[i] = j;
        if (cm[i].fingerprint != sm[j].fingerprint) {
            /* Compared only here: tables of equal fingerprints (the common case) cost no
             * parse. */
            const char *why = "out of memory";
            shmrpc_buf d;
            shmrpc_buf_init(&d);
            int rc = compat ? 0 : shmrpc__compat_new(&compat, client, server);
            if (rc == 0) rc = shmrpc__compat_method(compat, &cm[i], &sm[j], &d, &why);
            if (rc != 0) {
                note(err, &bad,
                     "'%s' has another signature, incompatible: %s (client: %s, server: %s)",
                     cm[i].name, why, cm[i].signature, sm[j].signature);
            } else if (diffs && d.len) {
                shmrpc__msg_append(diffs, "%s'%s': %s",
                                   n_diffs++ ? "; " : "compatible, with these differences: ",
                                   cm[i].name, shmrpc__msg_get(&d));
            } else if (diffs && !n_diffs++) {
                /* Compatible with nothing to say (a change in a type another method
                 * reported): still not identical. */
                shmrpc__msg_append(diffs, "compatible, with these differences: '%s': as above",
                                   cm[i].name);
            } else if (diffs) {
                shmrpc__msg_append(diffs, "; '%s': as above", cm[i].name);
            }
            shmrpc_buf_destroy(&d);
        }
        i++;
        j++;
    }
    shmrpc__compat_free(compat);
    if (!bad) return 0;
    if (strcmp(client->name, server->name) != 0)
        shmrpc__msg_append(err, " (the server serves '%s', not '%s')", server->name, client->name);
    return SHMRPC_EMISMATCH;
}

bool shmrpc__sig_idempotent(const char *signature)
{
    static const char tail[] = " @idempotent";
    size_t n = signature ? strlen(signature) : 0;
    return n >= sizeof tail - 1 &&
           memcmp(signature + n - (sizeof tail - 1), tail, sizeof tail - 1) == 0;
}

int shmrpc__sig_streams(const char *signature)
{
    /* Types hold no parentheses: the first "(" opens the parameters, the first ")->" ends
     * them. */
    const char *p = signature ? strchr(signature, '(') : NULL;
    const char *r = signature ? strstr(signature, ")->") : NULL;
    return (r && strncmp(r + 3, "stream<", 7) == 0 ? SHMRPC__STREAM_OUT : 0) |
           (p && strncmp(p + 1, "stream<", 7) == 0 ? SHMRPC__STREAM_IN : 0);
}

/* FNV-1a 64 of the names (each with its NUL) of the methods info marks @idempotent. */
static uint64_t idempotent_set(const shmrpc_service_info *info)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (uint32_t i = 0; i < info->n_methods; i++) {
        if (!shmrpc__sig_idempotent(info->methods[i].signature)) continue;
        const char *p = info->methods[i].name;
        do
            h = (h ^ (uint8_t)*p) * UINT64_C(0x100000001b3);
        while (*p++);
    }
    return h;
}

int shmrpc__table_keep(shmrpc__table *t, const shmrpc_service_info *server)
{
    uint64_t idem = idempotent_set(server);
    if (t->kept && idem != t->idem) t->idem_differs = true;
    t->idem = idem;
    t->kept = true;
    shmrpc_arena_reset(t->arena);
    t->info = (shmrpc_service_info){0};
    t->compat = "";
    const shmrpc_service_info *copy = shmrpc_dyn_info_copy(t->arena, server);
    if (!copy) return SHMRPC_ENOMEM;
    t->info = *copy;
    if (!t->info.svc_name) t->info.svc_name = t->info.name;
    return 0;
}

int shmrpc__table_accept(const shmrpc_service_info *client, const shmrpc_service_info *server,
                         uint32_t *map, shmrpc__table *t, shmrpc_buf *err)
{
    shmrpc_buf diffs;
    shmrpc_buf_init(&diffs);
    int rc = shmrpc__method_map(client, server, map, err, &diffs);
    if (rc == 0) rc = shmrpc__table_keep(t, server);
    if (rc == 0) {
        const char *d = shmrpc__msg_get(&diffs);
        t->compat = shmrpc_arena_strndup(t->arena, d, strlen(d));
        if (t->compat == NULL) rc = SHMRPC_ENOMEM;
    }
    shmrpc_buf_destroy(&diffs);
    return rc;
}

int shmrpc_service_compat(const shmrpc_service_info *client, const shmrpc_service_info *server,
                          shmrpc_buf *verdict)
{
    shmrpc_buf_clear(verdict);
    int rc = shmrpc__info_check(client, verdict);
    if (rc == 0) rc = shmrpc__info_check(server, verdict);
    if (rc != 0) return rc;
    uint32_t *map = calloc(client->n_methods ? client->n_methods : 1, sizeof *map);
    if (map == NULL) return SHMRPC_ENOMEM;
    shmrpc_buf diffs;
    shmrpc_buf_init(&diffs);
    rc = shmrpc__method_map(client, server, map, verdict, &diffs);
    if (rc == 0) shmrpc__msg_set(verdict, "%s", shmrpc__msg_get(&diffs));
    shmrpc_buf_destroy(&diffs);
    free(map);
    return rc;
}
