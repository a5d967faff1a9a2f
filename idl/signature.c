/* SPDX-License-Identifier: MIT */
/* A method's canonical signature (docs/svc-language.md, "Signatures and fingerprints"):
 * one home for the text that the generator hashes (each struct and enum spelled out), the
 * shorter text the method table carries (structs and enums by name) with the table's types,
 * each described once, and whose lengths the checks hold to what the tcp:// handshake
 * carries (docs/wire.md). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svc.h"

/* The text so far (malloc'd, growing), and the structs and enums spelled out in it: a set
 * of pointers in the arena that grows, as a signature may reach any number of them. */
typedef struct sig {
    svc_arena *a;
    char *p;
    size_t n, cap;
    const svc_decl **slots; /* open addressing; NULL is empty */
    size_t n_seen, cap_seen;
    size_t max; /* past this many bytes the text is dropped, and the walk stops */
    bool by_name; /* the method table's text: structs and enums by name only */
    bool over, oom;
} sig;

static void put(sig *s, const char *p, size_t n)
{
    if (s->oom || s->over) return;
    if (n > s->max - s->n) {
        s->over = true;
        return;
    }
    if (s->n + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->n + n + 1)
            cap *= 2;
        char *np = realloc(s->p, cap);
        if (!np) {
            s->oom = true;
            return;
        }
        s->p = np;
        s->cap = cap;
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
    s->p[s->n] = '\0';
}

static void puts_(sig *s, const char *p)
{
    put(s, p, strlen(p));
}

static void put_tok(sig *s, svc_tok t)
{
    put(s, t.p, (size_t)t.n);
}

static size_t slot_of(const svc_decl *d, size_t cap)
{
    return (size_t)(((uintptr_t)d >> 4) * UINT64_C(0x9E3779B97F4A7C15) >> 20) & (cap - 1);
}

static void place(const svc_decl **slots, size_t cap, const svc_decl *d)
{
    size_t j = slot_of(d, cap);
    while (slots[j])
        j = (j + 1) & (cap - 1);
    slots[j] = d;
}

/* Whether d is met here for the first time in this signature (and now seen). */
static bool first_time(sig *s, const svc_decl *d)
{
    if (s->cap_seen) {
        for (size_t j = slot_of(d, s->cap_seen); s->slots[j]; j = (j + 1) & (s->cap_seen - 1))
            if (s->slots[j] == d) return false;
    }
    if ((s->n_seen + 1) * 2 > s->cap_seen) {
        size_t cap = s->cap_seen ? s->cap_seen * 2 : 16;
        const svc_decl **slots = svc_arena_alloc(s->a, cap * sizeof *slots);
        if (!slots) {
            s->oom = true;
            return false;
        }
        for (size_t i = 0; i < s->cap_seen; i++)
            if (s->slots[i]) place(slots, cap, s->slots[i]);
        s->slots = slots;
        s->cap_seen = cap;
    }
    place(s->slots, s->cap_seen, d);
    s->n_seen++;
    return true;
}

static void sig_body(sig *s, const svc_decl *d);

/* A type's canonical text: structs and enums spelled out where first met, by name after
 * (by name only in the method table's text). */
static void sig_type(sig *s, const svc_type *t)
{
    /* Every step writes a byte at least: past max, the walk costs nothing more. */
    if (s->over || s->oom) return;
    switch (t->kind) {
    case SVC_T_LIST:
        puts_(s, "list<");
        sig_type(s, t->elem);
        puts_(s, ">");
        return;
    case SVC_T_MAP:
        puts_(s, "map<");
        sig_type(s, t->key);
        puts_(s, ",");
        sig_type(s, t->elem);
        puts_(s, ">");
        return;
    case SVC_T_OPTIONAL:
        sig_type(s, t->elem);
        puts_(s, "?");
        return;
    case SVC_T_STREAM:
        puts_(s, "stream<");
        sig_type(s, t->elem);
        puts_(s, ">");
        return;
    case SVC_T_NAMED: {
        const svc_decl *d = t->decl;
        bool st = d->kind == SVC_DECL_STRUCT;
        puts_(s, st ? "struct " : "enum ");
        put_tok(s, d->name);
        if (s->by_name || !first_time(s, d)) return;
        sig_body(s, d);
        return;
    }
    default:
        puts_(s, svc_builtin_name(t->kind));
        return;
    }
}

/* The braces of a struct or enum and what is between them. */
static void sig_body(sig *s, const svc_decl *d)
{
    puts_(s, "{");
    if (d->kind == SVC_DECL_STRUCT) {
        for (const svc_field *f = d->fields; f; f = f->next) {
            sig_type(s, f->type);
            puts_(s, " ");
            put_tok(s, f->name);
            puts_(s, ";");
        }
    } else {
        for (const svc_enumval *v = d->values; v; v = v->next) {
            char num[32];
            if (v != d->values) puts_(s, ",");
            put_tok(s, v->name);
            snprintf(num, sizeof num, "=%lld", (long long)v->value);
            puts_(s, num);
        }
    }
    puts_(s, "}");
}

static const char *const enc_names[] = {[SVC_ENC_MSGPACK] = "msgpack",
                                        [SVC_ENC_JSON] = "json",
                                        [SVC_ENC_RAW] = "raw",
                                        [SVC_ENC_PICKLE] = "pickle",
                                        [SVC_ENC_MARSHAL] = "marshal"};

const char *svc_encoding_name(svc_encoding enc)
{
    return enc_names[enc];
}

/* The text so far as a string in a, its length in *len (as svc_signature says). */
static const char *sig_done(sig *s, size_t *len)
{
    const char *r = s->oom || s->over ? NULL : svc_arena_strndup(s->a, s->p ? s->p : "", s->n);
    if (len) *len = r ? s->n : s->over ? s->max + 1 : 0;
    free(s->p);
    return r;
}

static const char *signature(svc_arena *a, const svc_method *m, size_t max, size_t *len,
                             bool by_name)
{
    sig s = {.a = a, .max = max, .by_name = by_name};
    put_tok(&s, m->name);
    puts_(&s, "(");
    for (const svc_field *p = m->params; p && !s.over; p = p->next) {
        if (p != m->params) puts_(&s, ",");
        sig_type(&s, p->type);
        puts_(&s, " ");
        put_tok(&s, p->name);
    }
    puts_(&s, ")->");
    sig_type(&s, m->result);
    puts_(&s, " @");
    puts_(&s, svc_encoding_name(m->enc));
    if (m->idempotent) puts_(&s, " @idempotent");
    return sig_done(&s, len);
}

const char *svc_signature(svc_arena *a, const svc_method *m, size_t max, size_t *len)
{
    return signature(a, m, max, len, false);
}

const char *svc_table_signature(svc_arena *a, const svc_method *m, size_t max, size_t *len)
{
    return signature(a, m, max, len, true);
}

const char *svc_type_text(svc_arena *a, const svc_decl *d, size_t max, size_t *len)
{
    sig s = {.a = a, .max = max, .by_name = true};
    puts_(&s, d->kind == SVC_DECL_STRUCT ? "struct " : "enum ");
    put_tok(&s, d->name);
    sig_body(&s, d);
    return sig_done(&s, len);
}

/* Marks the structs and enums t reaches in s's set, each walked once. */
static void reach(sig *s, const svc_type *t)
{
    for (; t && !s->oom; t = t->elem) {
        if (t->kind == SVC_T_MAP) reach(s, t->key);
        if (t->kind != SVC_T_NAMED) continue;
        if (first_time(s, t->decl))
            for (const svc_field *f = t->decl->kind == SVC_DECL_STRUCT ? t->decl->fields : NULL;
                 f; f = f->next)
                reach(s, f->type);
        return;
    }
}

static int tok_cmp(svc_tok x, svc_tok y)
{
    int c = memcmp(x.p, y.p, (size_t)(x.n < y.n ? x.n : y.n));
    return c ? c : (x.n > y.n) - (x.n < y.n);
}

static int decl_cmp(const void *x, const void *y)
{
    return tok_cmp((*(const svc_decl *const *)x)->name, (*(const svc_decl *const *)y)->name);
}

const svc_decl **svc_table_types(svc_arena *a, const svc_service *sv, int *n)
{
    sig s = {.a = a};
    for (const svc_method *m = sv->methods; m && !s.oom; m = m->next) {
        for (const svc_field *p = m->params; p; p = p->next)
            reach(&s, p->type);
        reach(&s, m->result);
    }
    const svc_decl **v = s.oom ? NULL : svc_arena_alloc(a, sizeof *v * (s.n_seen + 1));
    if (v == NULL) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < s.cap_seen; i++)
        if (s.slots[i]) v[k++] = s.slots[i];
    v[k] = NULL;
    qsort(v, k, sizeof *v, decl_cmp);
    *n = (int)k;
    return v;
}

const svc_method **svc_methods_by_name(svc_arena *a, const svc_service *s)
{
    const svc_method **v = svc_arena_alloc(a, sizeof *v * (size_t)(s->n_methods + 1));
    if (v == NULL) return NULL;
    int n = 0;
    for (const svc_method *m = s->methods; m && n < s->n_methods; m = m->next)
        v[n++] = m;
    v[n] = NULL;
    for (int j = 1; j < n; j++) /* insertion sort: tables are small */
        for (int k = j; k > 0; k--) {
            const svc_method *x = v[k - 1], *y = v[k];
            if (tok_cmp(x->name, y->name) <= 0) break;
            v[k - 1] = y;
            v[k] = x;
        }
    return v;
}

uint64_t svc_fingerprint(const char *text)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        h ^= *p;
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}
