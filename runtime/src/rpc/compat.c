/* SPDX-License-Identifier: MIT */
/* The compatibility of a client's method with the server's method of the same name when
 * their fingerprints differ (docs/svc-language.md, "Compatible evolution"): both
 * signatures parsed against their tables' types and walked side by side, each difference
 * either one the codecs bridge (a member only one side has, optional and after the shared
 * ones; an enum value only one side knows) or a reason the method cannot be called. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "codec/dyn.h"
#include "rpc/rpc.h"

/* How deep the walk follows types into types: a peer's table may chain structs as long as
 * it likes, and the walk recurses once a level. A level is a struct, list, map or optional,
 * as the codecs count a value's (SHMRPC_MAX_DEPTH), so no schema whose values they carry
 * is refused for its depth. */
#define MAX_COMPARE_DEPTH SHMRPC_MAX_DEPTH

enum { PAIR_OPEN = 1, PAIR_OK, PAIR_BAD };

/* A pair of structs or enums compared (client's, server's) and how it went. */
typedef struct pair {
    const shmrpc_dyn_type *x, *y;
    int state;
    struct pair *next;
    uint64_t opened;       /* c->n_opened when it was opened */
    struct pair *ok_older; /* the pair found OK before it (c->ok) */
} pair;

#define PAIR_SLOTS 256u

struct shmrpc__compat {
    shmrpc_arena *a;
    const shmrpc_service_info *info[2]; /* the client's, the server's */
    const shmrpc__types *types[2];      /* parsed on first use */
    int types_rc[2];                    /* 0 until parsed; then 1 or a status */
    char types_why[2][256];
    pair *slots[PAIR_SLOTS]; /* every pair met, across methods: each compared once */
    uint64_t n_opened;       /* pairs opened so far */
    pair *ok;                /* the pairs found OK, newest first */
    shmrpc_buf *diffs;       /* this method's differences */
    unsigned n_diffs;
    char why[512]; /* this method's reason, when it cannot be called */
};

static const char *const side_name[2] = {"client", "server"};

int shmrpc__compat_new(shmrpc__compat **out, const shmrpc_service_info *client,
                       const shmrpc_service_info *server)
{
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc__compat *c = a ? shmrpc_arena_calloc(a, 1, sizeof *c, _Alignof(shmrpc__compat)) : NULL;
    if (c == NULL) {
        shmrpc_arena_free(a);
        return SHMRPC_ENOMEM;
    }
    c->a = a;
    c->info[0] = client;
    c->info[1] = server;
    *out = c;
    return 0;
}

void shmrpc__compat_free(shmrpc__compat *c)
{
    if (c) shmrpc_arena_free(c->a);
}

static int bad(shmrpc__compat *c, const char *fmt, ...) SHMRPC__FMT(2, 3);
static int bad(shmrpc__compat *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    return SHMRPC_EMISMATCH;
}

static void diff(shmrpc__compat *c, const char *fmt, ...) SHMRPC__FMT(2, 3);
static void diff(shmrpc__compat *c, const char *fmt, ...)
{
    if (c->n_diffs++) shmrpc__msg_append(c->diffs, ", ");
    va_list ap;
    va_start(ap, fmt);
    shmrpc__msg_vappend(c->diffs, fmt, ap);
    va_end(ap);
}

static pair *pair_of(shmrpc__compat *c, const shmrpc_dyn_type *x, const shmrpc_dyn_type *y)
{
    uintptr_t h = ((uintptr_t)x >> 4) * 31u + ((uintptr_t)y >> 4);
    pair **slot = &c->slots[(h * UINT64_C(0x9E3779B97F4A7C15) >> 40) % PAIR_SLOTS];
    for (pair *p = *slot; p; p = p->next)
        if (p->x == x && p->y == y) return p;
    pair *p = shmrpc_arena_calloc(c->a, 1, sizeof *p, _Alignof(pair));
    if (p == NULL) return NULL;
    *p = (pair){.x = x, .y = y, .next = *slot};
    *slot = p;
    return p;
}

static int compare(shmrpc__compat *c, const shmrpc_dyn_type *x, const shmrpc_dyn_type *y,
                   const char *where, unsigned depth);

/* A member only one side has (side: whose), at index i of what it is in: bridged when it is
 * optional, as the codecs read none for it where it is missing and skip it where it is
 * not known. */
static int lone_member(shmrpc__compat *c, const shmrpc_dyn_field *f, int side, const char *what,
                       const char *where)
{
    char tt[160];
    shmrpc__dyn_type_text(f->type, tt, sizeof tt);
    if (f->type->kind != SHMRPC_DYN_OPT)
        return bad(c, "%s: %s '%s' (%s) is only on the %s, and not optional", where, what, f->name,
                   tt, side_name[side]);
    diff(c, "%s: %s '%s' (%s) only on the %s (where absent it reads as none; the %s skips it)",
         where, what, f->name, tt, side_name[side], side_name[!side]);
    return 0;
}

/* Members (fields or parameters) compared in order: the shared ones by name and type, the
 * rest by lone_member. */
static int members(shmrpc__compat *c, const shmrpc_dyn_field *xf, size_t xn,
                   const shmrpc_dyn_field *yf, size_t yn, const char *what, const char *where,
                   unsigned depth)
{
    size_t shared = xn < yn ? xn : yn;
    for (size_t i = 0; i < shared; i++) {
        if (strcmp(xf[i].name, yf[i].name) != 0)
            return bad(c,
                       "%s: %s %zu is '%s' on the client and '%s' on the server (renamed, "
                       "removed or reordered)",
                       where, what, i + 1, xf[i].name, yf[i].name);
        char in[200];
        if (*what == 'f') /* "struct Point.x", else "parameter 'a'" */
            snprintf(in, sizeof in, "%s.%s", where, xf[i].name);
        else
            snprintf(in, sizeof in, "%s '%s'", what, xf[i].name);
        int rc = compare(c, xf[i].type, yf[i].type, in, depth);
        if (rc) return rc;
    }
    for (size_t i = shared; i < xn; i++)
        if (lone_member(c, &xf[i], 0, what, where)) return SHMRPC_EMISMATCH;
    for (size_t i = shared; i < yn; i++)
        if (lone_member(c, &yf[i], 1, what, where)) return SHMRPC_EMISMATCH;
    return 0;
}

static const shmrpc_dyn_enumval *value_named(const shmrpc_dyn_type *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->values[i].name, name) == 0) return &t->values[i];
    return NULL;
}

/* An enum's values: a name both know must have one number; a value one side lacks is
 * refused by that side's codecs when it travels (SHMRPC_EINVAL for that call). */
static int enums(shmrpc__compat *c, const shmrpc_dyn_type *x, const shmrpc_dyn_type *y)
{
    const shmrpc_dyn_type *t[2] = {x, y};
    for (int side = 0; side < 2; side++)
        for (size_t i = 0; i < t[side]->n; i++) {
            const shmrpc_dyn_enumval *v = &t[side]->values[i];
            const shmrpc_dyn_enumval *o = value_named(t[!side], v->name);
            if (o != NULL && o->value != v->value)
                return bad(c, "enum %s: '%s' is %lld on the client and %lld on the server", x->name,
                           v->name, (long long)(side ? o : v)->value,
                           (long long)(side ? v : o)->value);
            for (size_t k = 0; o == NULL && k < t[!side]->n; k++)
                if (t[!side]->values[k].value == v->value)
                    return bad(c, "enum %s: %lld is '%s' on the %s and '%s' on the %s", x->name,
                               (long long)v->value, v->name, side_name[side],
                               t[!side]->values[k].name, side_name[!side]);
            if (o == NULL)
                diff(c,
                     "enum %s: '%s' (%lld) is only on the %s (a message that holds it fails on "
                     "the %s)",
                     x->name, v->name, (long long)v->value, side_name[side], side_name[!side]);
        }
    return 0;
}

static int compare(shmrpc__compat *c, const shmrpc_dyn_type *x, const shmrpc_dyn_type *y,
                   const char *where, unsigned depth)
{
    if (depth > MAX_COMPARE_DEPTH)
        return bad(c, "%s: types nested more than %u deep", where, MAX_COMPARE_DEPTH);
    if (x->kind != y->kind) {
        char xt[160], yt[160];
        shmrpc__dyn_type_text(x, xt, sizeof xt);
        shmrpc__dyn_type_text(y, yt, sizeof yt);
        return bad(c, "%s is %s on the client and %s on the server", where, xt, yt);
    }
    switch (x->kind) {
    case SHMRPC_DYN_LIST:
    case SHMRPC_DYN_OPT:
        return compare(c, x->elem, y->elem, where, depth + 1);
    case SHMRPC_DYN_MAP: {
        int rc = compare(c, x->key, y->key, where, depth + 1);
        return rc ? rc : compare(c, x->elem, y->elem, where, depth + 1);
    }
    case SHMRPC_DYN_STRUCT:
    case SHMRPC_DYN_ENUM: {
        bool st = x->kind == SHMRPC_DYN_STRUCT;
        if (strcmp(x->name, y->name) != 0)
            return bad(c, "%s is %s %s on the client and %s on the server", where,
                       st ? "struct" : "enum", x->name, y->name);
        pair *p = pair_of(c, x, y);
        if (p == NULL) return bad(c, "out of memory");
        if (p->state == PAIR_BAD)
            return bad(c, "%s: %s %s differs (said at the method that first uses it)", where,
                       st ? "struct" : "enum", x->name);
        if (p->state) return 0; /* compared, or being compared further up: a recursive type */
        p->state = PAIR_OPEN;
        p->opened = c->n_opened++;
        char in[200];
        snprintf(in, sizeof in, "struct %s", x->name);
        int rc = st ? members(c, x->fields, x->n, y->fields, y->n, "field", in, depth + 1)
                    : enums(c, x, y);
        if (rc == 0) {
            p->state = PAIR_OK;
            p->ok_older = c->ok;
            c->ok = p;
            return 0;
        }
        p->state = PAIR_BAD;
        /* A pair found OK since p opened may have been OK only because it took p, still
         * open, to be (A{list<B> bs;} B{A? a;}): compared again where it is next met. */
        for (; c->ok && c->ok->opened > p->opened; c->ok = c->ok->ok_older)
            c->ok->state = 0;
        return rc;
    }
    default:
        return 0; /* a scalar, any, void: the kind says it all */
    }
}

/* side's signature of m parsed against its table's types; NULL with c->why. */
static const shmrpc_dyn_sig *parsed(shmrpc__compat *c, int side, const shmrpc_method_info *m)
{
    const shmrpc_service_info *info = c->info[side];
    if (c->types_rc[side] == 0) {
        int rc = shmrpc__types_parse(c->a, info->types, info->n_types, &c->types[side],
                                     c->types_why[side], sizeof c->types_why[side]);
        c->types_rc[side] = rc ? rc : 1;
    }
    if (c->types_rc[side] != 1) {
        bad(c, "the %s's table: %s", side_name[side], c->types_why[side]);
        return NULL;
    }
    const shmrpc_dyn_sig *s;
    char why[256];
    if (shmrpc__dyn_parse(c->a, m->signature, c->types[side], &s, why, sizeof why) != 0) {
        bad(c, "the %s's %s", side_name[side], why);
        return NULL;
    }
    return s;
}

int shmrpc__compat_method(shmrpc__compat *c, const shmrpc_method_info *cm,
                          const shmrpc_method_info *sm, shmrpc_buf *diffs, const char **why)
{
    c->diffs = diffs;
    c->n_diffs = 0;
    c->why[0] = '\0';
    *why = c->why;
    const shmrpc_dyn_sig *x = parsed(c, 0, cm), *y = x ? parsed(c, 1, sm) : NULL;
    if (y == NULL) return SHMRPC_EMISMATCH;
    if (x->encoding != y->encoding || !x->python_only != !y->python_only ||
        (x->python_only && strcmp(x->python_only, y->python_only) != 0))
        return bad(c, "the encoding differs");
    /* An item is not a call's whole answer, nor a call's whole request. */
    if (x->server_stream != y->server_stream)
        return bad(c, "the result is a stream on the %s only", side_name[!x->server_stream]);
    if (x->client_stream != y->client_stream)
        return bad(c, "the parameter is a stream on the %s only", side_name[!x->client_stream]);
    /* Whether a call may be retried is the client's concern alone: the server's table says
     * it, and a call of either kind runs the same (docs/retries.md). */
    if (x->idempotent != y->idempotent)
        diff(c,
             "@idempotent only on the %s (a call that may have run is retried only when the "
             "server's table says @idempotent)",
             side_name[!x->idempotent]);
    int rc =
        members(c, x->params, x->n_params, y->params, y->n_params, "parameter", "arguments", 0);
    return rc ? rc : compare(c, x->result, y->result, "the result", 0);
}
