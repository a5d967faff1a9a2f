/* SPDX-License-Identifier: MIT */
/* A string-keyed hash table in an arena, shared by the checks and the generator. */
#include <string.h>

#include "svc.h"

static size_t hash(const char *s)
{
    size_t h = 14695981039346656037u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

void *svc_ntab_get(const svc_ntab *t, const char *key)
{
    if (!t->cap || !key) return NULL;
    for (size_t j = hash(key) & (t->cap - 1); t->keys[j]; j = (j + 1) & (t->cap - 1))
        if (strcmp(t->keys[j], key) == 0) return t->vals[j];
    return NULL;
}

static bool grow(svc_arena *a, svc_ntab *t)
{
    size_t cap = t->cap ? t->cap * 2 : 16;
    const char **keys = svc_arena_alloc(a, cap * sizeof *keys);
    void **vals = svc_arena_alloc(a, cap * sizeof *vals);
    if (!keys || !vals) return false;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->keys[i]) continue;
        size_t j = hash(t->keys[i]) & (cap - 1);
        while (keys[j])
            j = (j + 1) & (cap - 1);
        keys[j] = t->keys[i];
        vals[j] = t->vals[i];
    }
    t->keys = keys;
    t->vals = vals;
    t->cap = cap;
    return true;
}

void *svc_ntab_put(svc_arena *a, svc_ntab *t, const char *key, void *val, bool *oom)
{
    if (!key) {
        *oom = true;
        return NULL;
    }
    void *old = svc_ntab_get(t, key);
    if (old) return old;
    if ((t->n + 1) * 2 > t->cap && !grow(a, t)) {
        *oom = true;
        return NULL;
    }
    size_t j = hash(key) & (t->cap - 1);
    while (t->keys[j])
        j = (j + 1) & (t->cap - 1);
    t->keys[j] = key;
    t->vals[j] = val;
    t->n++;
    return NULL;
}
