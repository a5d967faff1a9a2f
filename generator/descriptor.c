/* The method table: canonical signatures, their fingerprints, and the service info
 * that client and server compare when they connect (docs/svc-language.md). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "gen.h"

/* The structs and enums spelled out so far in one signature: a set of pointers in the
 * arena that grows, as a signature may reach any number of them. */
typedef struct seen {
    gen *g;
    const svc_decl **slots; /* open addressing; NULL is empty */
    size_t n, cap;
} seen;

static size_t slot_of(const svc_decl *d, size_t cap)
{
    return (size_t)(((uintptr_t)d >> 4) * UINT64_C(0x9E3779B97F4A7C15) >> 20) & (cap - 1);
}

static void put(const svc_decl **slots, size_t cap, const svc_decl *d)
{
    size_t j = slot_of(d, cap);
    while (slots[j])
        j = (j + 1) & (cap - 1);
    slots[j] = d;
}

static bool first_time(seen *s, const svc_decl *d)
{
    if (s->cap) {
        for (size_t j = slot_of(d, s->cap); s->slots[j]; j = (j + 1) & (s->cap - 1))
            if (s->slots[j] == d) return false;
    }
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        const svc_decl **slots = gen_must(svc_arena_alloc(s->g->a, cap * sizeof *slots));
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i]) put(slots, cap, s->slots[i]);
        s->slots = slots;
        s->cap = cap;
    }
    put(s->slots, s->cap, d);
    s->n++;
    return true;
}

/* A type's canonical text: structs and enums spelled out where first met, by name after. */
static void sig_type(sbuf *o, const svc_type *t, seen *s)
{
    switch (t->kind) {
    case SVC_T_LIST:
        sb_puts(o, "list<");
        sig_type(o, t->elem, s);
        sb_puts(o, ">");
        return;
    case SVC_T_MAP:
        sb_puts(o, "map<");
        sig_type(o, t->key, s);
        sb_puts(o, ",");
        sig_type(o, t->elem, s);
        sb_puts(o, ">");
        return;
    case SVC_T_OPTIONAL:
        sig_type(o, t->elem, s);
        sb_puts(o, "?");
        return;
    case SVC_T_NAMED: {
        const svc_decl *d = t->decl;
        bool st = d->kind == SVC_DECL_STRUCT;
        sb_printf(o, "%s %.*s", st ? "struct" : "enum", d->name.n, d->name.p);
        if (!first_time(s, d)) return;
        sb_puts(o, "{");
        if (st) {
            for (const svc_field *f = d->fields; f; f = f->next) {
                sig_type(o, f->type, s);
                sb_printf(o, " %.*s;", f->name.n, f->name.p);
            }
        } else {
            for (const svc_enumval *v = d->values; v; v = v->next)
                sb_printf(o, "%s%.*s=%lld", v == d->values ? "" : ",", v->name.n, v->name.p,
                          (long long)v->value);
        }
        sb_puts(o, "}");
        return;
    }
    default:
        sb_puts(o, svc_builtin_name(t->kind));
        return;
    }
}

static const char *const enc_names[] = {
    [SVC_ENC_MSGPACK] = "msgpack", [SVC_ENC_JSON] = "json", [SVC_ENC_RAW] = "raw"};

const char *gen_signature(gen *g, const svc_method *m)
{
    sbuf o;
    seen s = {.g = g};
    sb_init(&o);
    sb_printf(&o, "%.*s(", m->name.n, m->name.p);
    for (const svc_field *p = m->params; p; p = p->next) {
        if (p != m->params) sb_puts(&o, ",");
        sig_type(&o, p->type, &s);
        sb_printf(&o, " %.*s", p->name.n, p->name.p);
    }
    sb_puts(&o, ")->");
    sig_type(&o, m->result, &s);
    sb_printf(&o, " @%s", enc_names[m->enc]);
    const char *r = svc_arena_strndup(g->a, sb_str(&o), o.len);
    sb_free(&o);
    return r;
}

uint64_t gen_fnv1a64(const char *s)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

/* Over every method's signature in name order, each followed by a newline. */
uint64_t gen_service_fingerprint(gen *g)
{
    sbuf o;
    sb_init(&o);
    for (int i = 0; i < g->n_methods; i++)
        sb_printf(&o, "%s\n", gen_signature(g, g->sorted[i]));
    uint64_t h = gen_fnv1a64(sb_str(&o));
    sb_free(&o);
    return h;
}

static const char *const enc_consts[] = {[SVC_ENC_MSGPACK] = "SHMRPC_ENC_MSGPACK",
                                         [SVC_ENC_JSON] = "SHMRPC_ENC_JSON",
                                         [SVC_ENC_RAW] = "SHMRPC_ENC_RAW"};

/* ISO C promises string literals of 4095 characters only (-Woverlength-strings). */
enum { MAX_LITERAL = 4095 };

/* A signature too long for a string literal, as a char array defined in *defs; its name. */
static const char *signature_array(gen *g, sbuf *defs, int i, const char *sig)
{
    const char *name = S("%s__signature_%d", g->p, i);
    sb_printf(defs, "\n/* Too long for a string literal in ISO C. */\nstatic const char %s[] = {",
              name);
    size_t n = strlen(sig);
    for (size_t k = 0; k <= n; k++)
        sb_printf(defs, "%s0x%02x,", k % 12 ? " " : "\n    ", (unsigned char)sig[k]);
    sb_puts(defs, "\n};\n");
    return name;
}

void gen_descriptor(gen *g, tmpl_dict *d)
{
    sbuf defs;
    sb_init(&defs);
    for (int i = 0; i < g->n_methods; i++) {
        const svc_method *m = g->sorted[i];
        tmpl_dict *md = tmpl_push(d, "table");
        const char *sig = gen_signature(g, m);
        tmpl_setf(md, "name", "%.*s", m->name.n, m->name.p);
        tmpl_set(md, "cname", gen_method_cname(g, m));
        tmpl_setf(md, "index", "%d", i);
        tmpl_set(md, "id_const", S("%s_METHOD_%s", g->P, svc_upper(g->a, gen_method_cname(g, m))));
        tmpl_set(md, "encoding", enc_consts[m->enc]);
        tmpl_setf(md, "fingerprint", "UINT64_C(0x%016" PRIx64 ")", gen_fnv1a64(sig));
        const char *lit = gen_cstr(g, sig);
        tmpl_set(md, "signature",
                 strlen(lit) - 2 > MAX_LITERAL ? signature_array(g, &defs, i, sig) : lit);
    }
    tmpl_set(d, "signature_defs", sb_str(&defs));
    sb_free(&defs);
    tmpl_flag(d, "has_methods", g->n_methods > 0);
    tmpl_setf(d, "service_fingerprint", "UINT64_C(0x%016" PRIx64 ")", gen_service_fingerprint(g));
    tmpl_set(d, "svc_name_literal", gen_cstr(g, g->svc->svc_name ? g->svc->svc_name : ""));
    tmpl_setf(d, "port", "%ld", g->svc->port);
    tmpl_setf(d, "n_methods", "%d", g->n_methods);
}
