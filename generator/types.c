/* The type model: a registry of every distinct type in the service with its C name and
 * spelling, and the header's type definitions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

static void *must(void *p)
{
    if (p == NULL) {
        fputs("shmrpcgen: out of memory\n", stderr);
        exit(2);
    }
    return p;
}

static const char *tokstr(gen *g, svc_tok t)
{
    return must(svc_arena_strndup(g->a, t.p, (size_t)t.n));
}

static const struct scalar {
    svc_type_kind kind;
    const char *name, *ctype, *min, *max;
} scalars[] = {
    {SVC_T_VOID, "void", "void", NULL, NULL},
    {SVC_T_BOOL, "bool", "bool", NULL, NULL},
    {SVC_T_I8, "i8", "int8_t", "INT8_MIN", "INT8_MAX"},
    {SVC_T_I16, "i16", "int16_t", "INT16_MIN", "INT16_MAX"},
    {SVC_T_I32, "i32", "int32_t", "INT32_MIN", "INT32_MAX"},
    {SVC_T_I64, "i64", "int64_t", "INT64_MIN", "INT64_MAX"},
    {SVC_T_U8, "u8", "uint8_t", NULL, "UINT8_MAX"},
    {SVC_T_U16, "u16", "uint16_t", NULL, "UINT16_MAX"},
    {SVC_T_U32, "u32", "uint32_t", NULL, "UINT32_MAX"},
    {SVC_T_U64, "u64", "uint64_t", NULL, "UINT64_MAX"},
    {SVC_T_F32, "f32", "float", NULL, NULL},
    {SVC_T_F64, "f64", "double", NULL, NULL},
    {SVC_T_STRING, "string", "shmrpc_str", NULL, NULL},
    {SVC_T_BYTES, "bytes", "shmrpc_bytes", NULL, NULL},
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
    g->stem = must(svc_arena_strndup(a, g->src_base, n));
    g->p = svc_snake(a, g->svc->name.p, g->svc->name.n);
    g->P = svc_upper(a, g->p);

    g->n_methods = g->svc->n_methods;
    g->sorted = must(svc_arena_alloc(a, sizeof *g->sorted * (size_t)(g->n_methods + 1)));
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

static void add(gen *g, gtype *t)
{
    if (g->last_type)
        g->last_type->next = t;
    else
        g->types = t;
    g->last_type = t;
}

/* A tag not yet used by a type of another spelling ("map_a_b_c" can arise twice). */
static const char *unique_tag(gen *g, const char *tag, const char *canon)
{
    const char *cand = tag;
    for (int n = 2;; n++) {
        bool taken = false;
        for (gtype *t = g->types; t; t = t->next)
            if (strcmp(t->tag, cand) == 0 && strcmp(t->canon, canon) != 0) taken = true;
        if (!taken) return cand;
        cand = svc_arena_printf(g->a, "%s_%d", tag, n);
    }
}

static gtype *find(gen *g, const char *canon)
{
    for (gtype *t = g->types; t; t = t->next)
        if (!t->is_args && strcmp(t->canon, canon) == 0) return t;
    return NULL;
}

gtype *gen_type(gen *g, const svc_type *t)
{
    gtype *elem = NULL, *key = NULL;
    const char *canon, *tag;
    gkind kind;
    switch (t->kind) {
    case SVC_T_NAMED:
        canon = tokstr(g, t->decl->name);
        tag = svc_snake(g->a, t->decl->name.p, t->decl->name.n);
        kind = t->decl->kind == SVC_DECL_STRUCT ? GK_STRUCT : GK_ENUM;
        break;
    case SVC_T_LIST:
        elem = gen_type(g, t->elem);
        canon = svc_arena_printf(g->a, "list<%s>", elem->canon);
        tag = svc_arena_printf(g->a, "list_%s", elem->tag);
        kind = GK_LIST;
        break;
    case SVC_T_MAP:
        key = gen_type(g, t->key);
        elem = gen_type(g, t->elem);
        canon = svc_arena_printf(g->a, "map<%s,%s>", key->canon, elem->canon);
        tag = svc_arena_printf(g->a, "map_%s_%s", key->tag, elem->tag);
        kind = GK_MAP;
        break;
    case SVC_T_OPTIONAL:
        elem = gen_type(g, t->elem);
        canon = svc_arena_printf(g->a, "%s?", elem->canon);
        tag = svc_arena_printf(g->a, "opt_%s", elem->tag);
        kind = GK_OPT;
        break;
    default:
        canon = scalar_of(t->kind)->name;
        tag = canon;
        kind = GK_SCALAR;
        break;
    }
    gtype *found = find(g, canon);
    if (found) return found;

    gtype *n = must(svc_arena_alloc(g->a, sizeof *n));
    n->kind = kind;
    n->canon = canon;
    n->tag = kind == GK_SCALAR ? tag : unique_tag(g, tag, canon);
    n->elem = elem;
    n->key = key;
    if (kind == GK_SCALAR) {
        n->scalar = t->kind;
        n->ctype = scalar_of(t->kind)->ctype;
    } else if (kind == GK_OPT && elem->kind == GK_STRUCT) {
        n->ctype = svc_arena_printf(g->a, "const %s *", elem->ctype);
    } else {
        n->ctype = svc_arena_printf(g->a, "%s_%s", g->p, n->tag);
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
    gtype *n = must(svc_arena_alloc(g->a, sizeof *n));
    n->kind = GK_STRUCT;
    n->is_args = true;
    n->canon = svc_arena_printf(g->a, "%s()", tokstr(g, m->name));
    /* The method's own C name: checks keep it apart from every type's, and container
     * tags begin list_, map_ or opt_, which no declared name may. */
    n->tag = name;
    n->ctype = svc_arena_printf(g->a, "%s__%s_args", g->p, name);
    n->display = tokstr(g, m->name);
    n->fields = m->params;
    n->n_fields = m->n_params;
    for (const svc_field *f = m->params; f; f = f->next)
        gen_type(g, f->type);
    add(g, n);
    return n;
}

const char *gen_method_cname(gen *g, const svc_method *m)
{
    return svc_snake(g->a, m->name.p, m->name.n);
}

const char *gen_param_ctype(gen *g, const gtype *t)
{
    if (t->kind == GK_STRUCT) return svc_arena_printf(g->a, "const %s *", t->ctype);
    return t->ctype;
}

const char *gen_param_arg(gen *g, const gtype *t, const char *v)
{
    if (t->kind == GK_STRUCT) return svc_arena_printf(g->a, "&%s", v);
    return v;
}

/* "T name" for a declaration, without a space after a pointer's star. */
static const char *decl(gen *g, const char *ctype, const char *name)
{
    size_t n = strlen(ctype);
    return svc_arena_printf(g->a, "%s%s%s", ctype, ctype[n - 1] == '*' ? "" : " ", name);
}

/* The element pointer of a list: "const int64_t *", or "const echo_point *const *". */
static const char *items_decl(gen *g, const char *ctype, const char *name)
{
    size_t n = strlen(ctype);
    if (ctype[n - 1] == '*') return svc_arena_printf(g->a, "%sconst *%s", ctype, name);
    return svc_arena_printf(g->a, "const %s *%s", ctype, name);
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
        for (size_t i = 0; i < n; i++) { /* a doc comment must not end ours */
            sb_putn(&b, p + i, 1);
            if (p[i] == '*' && i + 1 < n && p[i + 1] == '/') sb_puts(&b, " ");
        }
        p += n;
        if (*p == '\n') p++;
    }
    sb_printf(&b, one_line ? " */\n" : "\n%s */\n", indent);
    const char *r = must(svc_arena_strndup(g->a, sb_str(&b), b.len));
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
    const char *r = must(svc_arena_strndup(g->a, sb_str(&b), b.len));
    sb_free(&b);
    return r;
}

const char *gen_enum_const(gen *g, const gtype *t, const svc_enumval *v)
{
    return svc_arena_printf(g->a, "%s_%s_%s", g->P, svc_upper(g->a, t->tag),
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
static void struct_defs(gen *g, sbuf *o, const gtype *t, const gtype **done, int *n_done)
{
    for (int i = 0; i < *n_done; i++)
        if (done[i] == t) return;
    for (const svc_field *f = t->fields; f; f = f->next) {
        const gtype *ft = gen_type(g, f->type);
        if (ft->kind == GK_STRUCT) struct_defs(g, o, ft, done, n_done);
    }
    done[(*n_done)++] = t;
    sb_puts(o, gen_doc(g, t->decl->doc, ""));
    sb_printf(o, "struct %s {\n", t->ctype);
    for (const svc_field *f = t->fields; f; f = f->next) {
        const gtype *ft = gen_type(g, f->type);
        sb_puts(o, gen_doc(g, f->doc, "    "));
        sb_printf(o, "    %s;\n", decl(g, ft->ctype, tokstr(g, f->name)));
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
    int n = 0;
    for (gtype *t = g->types; t; t = t->next)
        n++;
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
                      decl(g, t->elem->ctype, "value"));

    const gtype **done = must(svc_arena_alloc(g->a, sizeof *done * (size_t)(n + 1)));
    int n_done = 0;
    for (gtype *t = g->types; t; t = t->next)
        if (t->kind == GK_STRUCT && !t->is_args) struct_defs(g, o, t, done, &n_done);

    for (gtype *t = g->types; t; t = t->next)
        if (t->kind == GK_MAP)
            sb_printf(o, "struct %s_entry {\n    %s;\n    %s;\n};\n\n", t->ctype,
                      decl(g, t->key->ctype, "key"), decl(g, t->elem->ctype, "value"));
}
