/* SPDX-License-Identifier: MIT */
/* The type model: a registry of every distinct type in the service with its C names and
 * spelling, and the helpers that spell declarations and comments (each file's banner among
 * them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

const char *gen_tokstr(gen *g, svc_tok t)
{
    return gen_must(svc_arena_strndup(g->a, t.p, (size_t)t.n));
}

/* The C side of each scalar; the .svc names come from svc_builtin_name(). */
static const struct scalar {
    svc_type_kind kind;
    const char *ctype, *min, *max;
} scalars[] = {
    {SVC_T_VOID, "void", NULL, NULL},
    {SVC_T_BOOL, "bool", NULL, NULL},
    {SVC_T_I8, "int8_t", "INT8_MIN", "INT8_MAX"},
    {SVC_T_I16, "int16_t", "INT16_MIN", "INT16_MAX"},
    {SVC_T_I32, "int32_t", "INT32_MIN", "INT32_MAX"},
    {SVC_T_I64, "int64_t", "INT64_MIN", "INT64_MAX"},
    {SVC_T_U8, "uint8_t", NULL, "UINT8_MAX"},
    {SVC_T_U16, "uint16_t", NULL, "UINT16_MAX"},
    {SVC_T_U32, "uint32_t", NULL, "UINT32_MAX"},
    {SVC_T_U64, "uint64_t", NULL, "UINT64_MAX"},
    {SVC_T_F32, "float", NULL, NULL},
    {SVC_T_F64, "double", NULL, NULL},
    {SVC_T_STRING, "shmrpc_str", NULL, NULL},
    {SVC_T_BYTES, "shmrpc_bytes", NULL, NULL},
    {SVC_T_ANY, "shmrpc_any", NULL, NULL}, /* a view of its msgpack (shmrpc/any.h) */
}; /* a scalar's tag is its .svc name capitalized: "I64", "String" */

static const struct scalar *scalar_of(svc_type_kind k)
{
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++)
        if (scalars[i].kind == k) return &scalars[i];
    return NULL;
}

const char *gen_int_min(svc_type_kind k)
{
    return scalar_of(k)->min;
}

const char *gen_int_max(svc_type_kind k)
{
    return scalar_of(k)->max;
}

bool gen_is_signed(svc_type_kind k)
{
    return k >= SVC_T_I8 && k <= SVC_T_I64;
}

bool gen_is_unsigned(svc_type_kind k)
{
    return k >= SVC_T_U8 && k <= SVC_T_U64;
}

void gen_init(gen *g, svc_arena *a, const svc_file *f)
{
    memset(g, 0, sizeof *g);
    g->a = a;
    g->file = f;
    g->svc = f->service;
    const char *base = strrchr(f->path, '/');
    g->src_base = base ? base + 1 : f->path;
    size_t n = strlen(g->src_base);
    if (n > 4 && strcmp(g->src_base + n - 4, ".svc") == 0) n -= 4;
    g->stem = gen_must(svc_arena_strndup(a, g->src_base, n));
    g->name = gen_tokstr(g, g->svc->name);
    g->p = gen_must(svc_snake(a, g->svc->name.p, g->svc->name.n));
    g->P = gen_must(svc_upper(a, g->p));
    g->own = gen_must(svc_cap(a, g->name, -1));

    g->n_methods = g->svc->n_methods;
    g->sorted = gen_must(svc_methods_by_name(a, g->svc));

    /* Register every type in declaration order so the header lists them all. */
    for (const svc_decl *d = g->svc->decls; d; d = d->next) {
        svc_type named = {.kind = SVC_T_NAMED, .tok = d->name, .decl = (svc_decl *)d};
        gen_type(g, &named);
        for (const svc_field *f2 = d->fields; f2; f2 = f2->next)
            gen_type(g, f2->type);
    }
    for (const svc_method *m = g->svc->methods; m; m = m->next) {
        for (const svc_field *p = m->params; p; p = p->next)
            gen_type(g, m->client_stream ? gen_item_in(m) : p->type);
        if (gen_answer(m)->kind != SVC_T_VOID) gen_type(g, gen_answer(m));
    }
    for (const svc_method *q = g->svc->queues; q; q = q->next)
        gen_type(g, q->result);
    for (const svc_method *m = g->svc->maps; m; m = m->next) {
        gen_type(g, m->params->type);
        gen_type(g, m->result);
    }
}

/* --- the registry --- */

static void put(gen *g, svc_ntab *t, const char *key, gtype *val)
{
    bool oom = false;
    svc_ntab_put(g->a, t, key, val, &oom);
    if (oom) gen_must(NULL); /* says so and exits */
}

static void add(gen *g, gtype *t)
{
    if (g->last_type)
        g->last_type->next = t;
    else
        g->types = t;
    g->last_type = t;
    if (!t->is_args) put(g, &g->by_canon, t->canon, t);
    put(g, &g->by_tag, t->tag, t);
    /* A map's entry type is named after its tag: that name is taken too. */
    if (t->kind == GK_MAP) put(g, &g->by_tag, S("%s_entry", t->tag), t);
}

/* A container's tag that no other type has taken, nor its entry type when it is a map:
 * "map_A_B_C" can arise twice, as can "list_I32" from list<i32> and list<I32>. */
static const char *unique_tag(gen *g, const char *tag, gkind kind)
{
    const char *cand = tag;
    for (int n = 2;; n++) {
        if (!svc_ntab_get(&g->by_tag, cand) &&
            (kind != GK_MAP || !svc_ntab_get(&g->by_tag, S("%s_entry", cand))))
            return cand;
        cand = S("%s_%d", tag, n);
    }
}

gtype *gen_type(gen *g, const svc_type *t)
{
    gtype *elem = NULL, *key = NULL;
    const char *canon, *tag;
    gkind kind;
    switch (t->kind) {
    case SVC_T_NAMED:
        canon = gen_tokstr(g, t->decl->name);
        tag = gen_must(svc_cap(g->a, t->decl->name.p, t->decl->name.n));
        kind = t->decl->kind == SVC_DECL_STRUCT ? GK_STRUCT : GK_ENUM;
        break;
    case SVC_T_LIST:
    case SVC_T_OPTIONAL: {
        bool list = t->kind == SVC_T_LIST;
        elem = gen_type(g, t->elem);
        canon = list ? S("list<%s>", elem->canon) : S("%s?", elem->canon);
        tag = S("%s_%s", list ? "list" : "opt", elem->tag);
        kind = list ? GK_LIST : GK_OPT;
        break;
    }
    case SVC_T_MAP:
        key = gen_type(g, t->key);
        elem = gen_type(g, t->elem);
        canon = S("map<%s,%s>", key->canon, elem->canon);
        tag = S("map_%s_%s", key->tag, elem->tag);
        kind = GK_MAP;
        break;
    default:
        canon = svc_builtin_name(t->kind);
        tag = gen_must(svc_cap(g->a, canon, -1));
        kind = GK_SCALAR;
        break;
    }
    gtype *found = svc_ntab_get(&g->by_canon, canon);
    if (found) return found;

    gtype *n = gen_must(svc_arena_alloc(g->a, sizeof *n));
    n->kind = kind;
    n->canon = canon;
    bool container = kind == GK_LIST || kind == GK_MAP || kind == GK_OPT;
    n->tag = container ? unique_tag(g, tag, kind) : tag;
    n->elem = elem;
    n->key = key;
    if (kind == GK_SCALAR) { /* no C names: scalars are not in the registry's tags */
        n->scalar = t->kind;
        n->ctype = scalar_of(t->kind)->ctype;
    } else if (kind == GK_OPT && elem->kind == GK_STRUCT) {
        n->ctype = S("const %s *", elem->ctype);
    } else {
        n->ctype = S("%s_%s", g->p, n->tag);
    }
    if (kind == GK_STRUCT || kind == GK_ENUM) {
        n->decl = t->decl;
        n->display = canon;
        n->fields = t->decl->fields;
        n->n_fields = t->decl->n_fields;
    }
    if (kind == GK_SCALAR) {
        put(g, &g->by_canon, canon, n);
    } else {
        add(g, n);
    }
    if (kind == GK_STRUCT)
        for (const svc_field *f = n->fields; f; f = f->next)
            gen_type(g, f->type);
    return n;
}

gtype *gen_args_type(gen *g, const svc_method *m)
{
    const char *name = gen_method_cname(g, m);
    for (gtype *t = g->types; t; t = t->next)
        if (t->is_args && t->fields == m->params && t->n_fields == m->n_params) return t;
    gtype *n = gen_must(svc_arena_alloc(g->a, sizeof *n));
    n->kind = GK_STRUCT;
    n->is_args = true;
    n->canon = S("%s()", gen_tokstr(g, m->name));
    /* All lower case, so apart from every type's tag (upper-case initial) and container's
     * (which holds an upper-case letter). */
    n->tag = S("%s_args", name);
    n->ctype = S("%s_%s", g->own, n->tag);
    n->display = gen_tokstr(g, m->name);
    n->fields = m->params;
    n->n_fields = m->n_params;
    for (const svc_field *f = m->params; f; f = f->next)
        gen_type(g, f->type);
    add(g, n);
    return n;
}

const char *gen_method_cname(gen *g, const svc_method *m)
{
    return gen_must(svc_snake(g->a, m->name.p, m->name.n));
}

const char *gen_method_id(gen *g, const svc_method *m)
{
    return S("%s_METHOD_%s", g->P, svc_upper(g->a, gen_method_cname(g, m)));
}

const char *gen_decl(gen *g, const char *ctype, const char *name)
{
    size_t n = strlen(ctype);
    return S("%s%s%s", ctype, ctype[n - 1] == '*' ? "" : " ", name);
}

const char *gen_ptr_decl(gen *g, const char *ctype, const char *name, bool konst)
{
    size_t n = strlen(ctype);
    if (ctype[n - 1] == '*') return S("%s%s*%s", ctype, konst ? "const " : "", name);
    return S("%s%s *%s", konst ? "const " : "", ctype, name);
}

const char *gen_value_decl(gen *g, const gtype *t, const char *name)
{
    return t->kind == GK_STRUCT ? gen_ptr_decl(g, t->ctype, name, true)
                                : gen_decl(g, t->ctype, name);
}

/* Structs travel by const pointer, the rest by value. */
const char *gen_params_decl(gen *g, const svc_method *m)
{
    if (m->client_stream) return "";
    sbuf b;
    sb_init(&b);
    for (const svc_field *f = m->params; f; f = f->next)
        sb_printf(&b, ", %s", gen_value_decl(g, gen_type(g, f->type), gen_tokstr(g, f->name)));
    const char *r = S("%s", sb_str(&b));
    sb_free(&b);
    return r;
}

const char *gen_out_decl(gen *g, const svc_method *m)
{
    if (m->result->kind == SVC_T_VOID || m->server_stream) return "";
    return S(", %s", gen_ptr_decl(g, gen_type(g, m->result)->ctype, "out_", false));
}

void gen_doc(gen *g, emitter *e, const char *doc)
{
    (void)g;
    if (doc == NULL) return;
    bool one_line = strchr(doc, '\n') == NULL;
    sbuf b;
    sb_init(&b);
    sb_puts(&b, "/*");
    const char *p = doc;
    while (*p) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (!one_line) {
            em(e, "%s", sb_str(&b));
            sb_free(&b);
            sb_puts(&b, " *");
        }
        if (n) sb_puts(&b, " ");
        /* A doc must neither end our comment ("*\/") nor seem to open one inside it
         * ("/\*", which -Wcomment rejects), nor hold a trigraph ("??/" at the end of a line
         * splices it, which -Wtrigraphs rejects in ISO modes): a space splits each. */
        for (size_t i = 0; i < n; i++) {
            sb_putn(&b, p + i, 1);
            char next = i + 1 < n ? p[i + 1] : '\0';
            if ((p[i] == '*' && next == '/') || (p[i] == '/' && next == '*') ||
                (p[i] == '?' && next == '?'))
                sb_puts(&b, " ");
        }
        p += n;
        if (*p == '\n') p++;
    }
    if (one_line) {
        sb_puts(&b, " */");
        em(e, "%s", sb_str(&b));
    } else {
        em(e, "%s", sb_str(&b));
        em(e, " */");
    }
    sb_free(&b);
}

void gen_banner(gen *g, emitter *e, const char *suffix, const char *what)
{
    const char *head = S("/* %s%s: generated by shmrpcgen %s from %s. DO NOT EDIT.", g->stem,
                         suffix, SHMRPCGEN_VERSION, g->src_base);
    if (what == NULL) {
        em(e, "%s */", head);
        return;
    }
    em(e, "%s", head);
    em(e, " * %s */", S(what, g->name));
}

void gen_shared_head(gen *g, emitter *e, const svc_method *m, const char *macro, const char *type)
{
    em_blank(e);
    gen_doc(g, e, m->doc);
    em(e, "#define %s %s", macro,
       gen_cstr(g, S("%s.%.*s", g->svc->svc_name, m->name.n, m->name.p)));
    em(e, "extern const char %s[];", type);
}

const char *gen_cstr(gen *g, const char *s)
{
    sbuf b;
    sb_init(&b);
    sb_puts(&b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            sb_printf(&b, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            sb_printf(&b, "\\%03o", *p);
        else
            sb_putn(&b, (const char *)p, 1);
    }
    sb_puts(&b, "\"");
    const char *r = gen_must(svc_arena_strndup(g->a, sb_str(&b), b.len));
    sb_free(&b);
    return r;
}

void gen_string_def(gen *g, emitter *e, const char *decl, const char *text)
{
    const char *lit = gen_cstr(g, text);
    if (strlen(lit) - 2 <= GEN_MAX_LITERAL) {
        em(e, "%s = %s;", decl, lit);
        return;
    }
    em(e, "/* Too long for a string literal in ISO C. */");
    em_open(e, "%s = {", decl);
    sbuf b;
    sb_init(&b);
    size_t n = strlen(text);
    for (size_t k = 0; k <= n; k++) {
        sb_printf(&b, "0x%02x,", (unsigned char)text[k]);
        if (k % 12 == 11 || k == n) {
            em(e, "%s", sb_str(&b));
            sb_free(&b);
        } else {
            sb_puts(&b, " ");
        }
    }
    em_close(e, "};");
}

const char *gen_enum_const(gen *g, const gtype *t, const svc_enumval *v)
{
    return S("%s_%.*s", t->ctype, v->name.n, v->name.p);
}
