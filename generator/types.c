/* The type model: a registry of every distinct type in the service with its C name and
 * spelling, and the header's type definitions. */
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
};

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
    g->p = gen_must(svc_snake(a, g->svc->name.p, g->svc->name.n));
    g->P = gen_must(svc_upper(a, g->p));

    g->n_methods = g->svc->n_methods;
    g->sorted = gen_must(svc_arena_alloc(a, sizeof *g->sorted * (size_t)(g->n_methods + 1)));
    int i = 0;
    for (const svc_method *m = g->svc->methods; m; m = m->next)
        g->sorted[i++] = m;
    for (int j = 1; j < g->n_methods; j++) /* insertion sort: tables are small */
        for (int k = j; k > 0; k--) {
            const svc_method *x = g->sorted[k - 1], *y = g->sorted[k];
            int c = memcmp(x->name.p, y->name.p,
                           (size_t)(x->name.n < y->name.n ? x->name.n : y->name.n));
            if (c < 0 || (c == 0 && x->name.n <= y->name.n)) break;
            g->sorted[k - 1] = y;
            g->sorted[k] = x;
        }

    /* Register every type in declaration order so the header lists them all. */
    for (const svc_decl *d = g->svc->decls; d; d = d->next) {
        svc_type named = {.kind = SVC_T_NAMED, .tok = d->name, .decl = (svc_decl *)d};
        gen_type(g, &named);
        for (const svc_field *f2 = d->fields; f2; f2 = f2->next)
            gen_type(g, f2->type);
    }
    for (const svc_method *m = g->svc->methods; m; m = m->next) {
        for (const svc_field *p = m->params; p; p = p->next)
            gen_type(g, p->type);
        if (m->result->kind != SVC_T_VOID) gen_type(g, m->result);
    }
}

/* --- the registry's indexes: lookups stay O(1) with thousands of types --- */

static size_t hash(const char *s)
{
    size_t h = 14695981039346656037u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static gtype *gmap_get(const gmap *m, const char *key)
{
    if (!m->cap) return NULL;
    for (size_t j = hash(key) & (m->cap - 1); m->keys[j]; j = (j + 1) & (m->cap - 1))
        if (strcmp(m->keys[j], key) == 0) return m->vals[j];
    return NULL;
}

static void gmap_put(gen *g, gmap *m, const char *key, gtype *val)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        const char **keys = gen_must(svc_arena_alloc(g->a, cap * sizeof *keys));
        gtype **vals = gen_must(svc_arena_alloc(g->a, cap * sizeof *vals));
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->keys[i]) continue;
            size_t j = hash(m->keys[i]) & (cap - 1);
            while (keys[j])
                j = (j + 1) & (cap - 1);
            keys[j] = m->keys[i];
            vals[j] = m->vals[i];
        }
        m->keys = keys;
        m->vals = vals;
        m->cap = cap;
    }
    size_t j = hash(key) & (m->cap - 1);
    while (m->keys[j])
        j = (j + 1) & (m->cap - 1);
    m->keys[j] = key;
    m->vals[j] = val;
    m->n++;
}

static void add(gen *g, gtype *t)
{
    if (g->last_type)
        g->last_type->next = t;
    else
        g->types = t;
    g->last_type = t;
    if (!t->is_args) gmap_put(g, &g->by_canon, t->canon, t);
    if (!gmap_get(&g->by_tag, t->tag)) gmap_put(g, &g->by_tag, t->tag, t);
}

/* A tag not yet used by a type of another spelling ("map_a_b_c" can arise twice). */
static const char *unique_tag(gen *g, const char *tag, const char *canon)
{
    const char *cand = tag;
    for (int n = 2;; n++) {
        const gtype *t = gmap_get(&g->by_tag, cand);
        if (!t || strcmp(t->canon, canon) == 0) return cand;
        cand = S("%s_%d", tag, n);
    }
}

static gtype *find(gen *g, const char *canon)
{
    return gmap_get(&g->by_canon, canon);
}

gtype *gen_type(gen *g, const svc_type *t)
{
    gtype *elem = NULL, *key = NULL;
    const char *canon, *tag;
    gkind kind;
    switch (t->kind) {
    case SVC_T_NAMED:
        canon = gen_tokstr(g, t->decl->name);
        tag = gen_must(svc_snake(g->a, t->decl->name.p, t->decl->name.n));
        kind = t->decl->kind == SVC_DECL_STRUCT ? GK_STRUCT : GK_ENUM;
        break;
    case SVC_T_LIST:
        elem = gen_type(g, t->elem);
        canon = S("list<%s>", elem->canon);
        tag = S("list_%s", elem->tag);
        kind = GK_LIST;
        break;
    case SVC_T_MAP:
        key = gen_type(g, t->key);
        elem = gen_type(g, t->elem);
        canon = S("map<%s,%s>", key->canon, elem->canon);
        tag = S("map_%s_%s", key->tag, elem->tag);
        kind = GK_MAP;
        break;
    case SVC_T_OPTIONAL:
        elem = gen_type(g, t->elem);
        canon = S("%s?", elem->canon);
        tag = S("opt_%s", elem->tag);
        kind = GK_OPT;
        break;
    default:
        canon = svc_builtin_name(t->kind);
        tag = canon;
        kind = GK_SCALAR;
        break;
    }
    gtype *found = find(g, canon);
    if (found) return found;

    gtype *n = gen_must(svc_arena_alloc(g->a, sizeof *n));
    n->kind = kind;
    n->canon = canon;
    n->tag = kind == GK_SCALAR ? tag : unique_tag(g, tag, canon);
    n->elem = elem;
    n->key = key;
    if (kind == GK_SCALAR) {
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
    add(g, n);
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
    /* The method's own C name: checks keep it apart from every type's, and container
     * tags begin list_, map_ or opt_, which no declared name may. */
    n->tag = name;
    n->ctype = S("%s__%s_args", g->p, name);
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

const char *gen_param_ctype(gen *g, const gtype *t)
{
    if (t->kind == GK_STRUCT) return S("const %s *", t->ctype);
    return t->ctype;
}

const char *gen_param_arg(gen *g, const gtype *t, const char *v)
{
    if (t->kind == GK_STRUCT) return S("&%s", v);
    return v;
}

const char *gen_decl(gen *g, const char *ctype, const char *name)
{
    size_t n = strlen(ctype);
    return S("%s%s%s", ctype, ctype[n - 1] == '*' ? "" : " ", name);
}

/* The element pointer of a list: "const int64_t *", or "const echo_point *const *". */
static const char *items_decl(gen *g, const char *ctype, const char *name)
{
    size_t n = strlen(ctype);
    if (ctype[n - 1] == '*') return S("%sconst *%s", ctype, name);
    return S("const %s *%s", ctype, name);
}

const char *gen_doc(gen *g, const char *doc, const char *indent)
{
    if (doc == NULL) return "";
    sbuf b;
    sb_init(&b);
    sb_printf(&b, "%s/*", indent);
    bool one_line = strchr(doc, '\n') == NULL;
    const char *p = doc;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (!one_line) sb_printf(&b, "\n%s *", indent);
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
    sb_printf(&b, one_line ? " */\n" : "\n%s */\n", indent);
    const char *r = gen_must(svc_arena_strndup(g->a, sb_str(&b), b.len));
    sb_free(&b);
    return r;
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

const char *gen_enum_const(gen *g, const gtype *t, const svc_enumval *v)
{
    return S("%s_%s_%s", g->P, svc_upper(g->a, t->tag),
             svc_upper(g->a, svc_snake(g->a, v->name.p, v->name.n)));
}

static void enum_def(gen *g, sbuf *o, const gtype *t)
{
    sb_puts(o, gen_doc(g, t->decl->doc, ""));
    sb_printf(o, "typedef enum %s {\n", t->ctype);
    for (const svc_enumval *v = t->decl->values; v; v = v->next) {
        sb_puts(o, gen_doc(g, v->doc, "    "));
        sb_printf(o, "    %s = %lld,\n", gen_enum_const(g, t, v), (long long)v->value);
    }
    sb_printf(o, "} %s;\n\n", t->ctype);
}

/* Structs in an order where each follows the structs it holds by value. */
static void struct_defs(gen *g, sbuf *o, gtype *t)
{
    if (t->defined) return;
    t->defined = true; /* by-value cycles are refused by the checks */
    for (const svc_field *f = t->fields; f; f = f->next) {
        gtype *ft = gen_type(g, f->type);
        if (ft->kind == GK_STRUCT) struct_defs(g, o, ft);
    }
    sb_puts(o, gen_doc(g, t->decl->doc, ""));
    sb_printf(o, "struct %s {\n", t->ctype);
    for (const svc_field *f = t->fields; f; f = f->next) {
        const gtype *ft = gen_type(g, f->type);
        sb_puts(o, gen_doc(g, f->doc, "    "));
        sb_printf(o, "    %s;\n", gen_decl(g, ft->ctype, gen_tokstr(g, f->name)));
    }
    if (t->fields == NULL) sb_puts(o, "    char unused; /* C has no empty structs */\n");
    sb_puts(o, "};\n\n");
}

/* The header's type definitions in an order C accepts: enums; names of every struct,
 * map entry and optional; lists and maps (which hold only pointers); optionals (which
 * hold lists, maps or scalars by value); structs, each after those it holds by value;
 * and last the map entries, which may hold structs. */
void gen_type_defs(gen *g, sbuf *o)
{
    for (gtype *t = g->types; t; t = t->next)
        if (t->kind == GK_ENUM) enum_def(g, o, t);

    bool any = false;
    for (gtype *t = g->types; t; t = t->next) {
        if (t->kind == GK_STRUCT && !t->is_args)
            sb_printf(o, "typedef struct %s %s;\n", t->ctype, t->ctype);
        else if (t->kind == GK_MAP)
            sb_printf(o, "typedef struct %s_entry %s_entry;\n", t->ctype, t->ctype);
        else if (t->kind == GK_OPT && t->elem->kind != GK_STRUCT)
            sb_printf(o, "typedef struct %s %s;\n", t->ctype, t->ctype);
        else
            continue;
        any = true;
    }
    if (any) sb_puts(o, "\n");

    for (gtype *t = g->types; t; t = t->next) {
        if (t->kind == GK_LIST)
            sb_printf(o, "typedef struct %s {\n    %s;\n    size_t len;\n} %s;\n\n", t->ctype,
                      items_decl(g, t->elem->ctype, "items"), t->ctype);
        else if (t->kind == GK_MAP)
            sb_printf(o,
                      "typedef struct %s {\n    const %s_entry *items;\n    size_t len;\n} %s;\n\n",
                      t->ctype, t->ctype, t->ctype);
    }
    for (gtype *t = g->types; t; t = t->next)
        if (t->kind == GK_OPT && t->elem->kind != GK_STRUCT)
            sb_printf(o, "struct %s {\n    bool has;\n    %s;\n};\n\n", t->ctype,
                      gen_decl(g, t->elem->ctype, "value"));

    for (gtype *t = g->types; t; t = t->next)
        if (t->kind == GK_STRUCT && !t->is_args) struct_defs(g, o, t);

    for (gtype *t = g->types; t; t = t->next)
        if (t->kind == GK_MAP)
            sb_printf(o, "struct %s_entry {\n    %s;\n    %s;\n};\n\n", t->ctype,
                      gen_decl(g, t->key->ctype, "key"), gen_decl(g, t->elem->ctype, "value"));
}
