/* The method table: canonical signatures, their fingerprints, and the service info
 * that client and server compare when they connect (docs/svc-language.md). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "gen.h"

typedef struct seen {
    const svc_decl *decls[256];
    int n;
    bool overflow;
} seen;

static bool first_time(seen *s, const svc_decl *d)
{
    for (int i = 0; i < s->n; i++)
        if (s->decls[i] == d) return false;
    if (s->n < (int)(sizeof s->decls / sizeof s->decls[0])) s->decls[s->n++] = d;
    return true;
}

static const char *const scalar_names[] = {
    [SVC_T_VOID] = "void",     [SVC_T_BOOL] = "bool",   [SVC_T_I8] = "i8",   [SVC_T_I16] = "i16",
    [SVC_T_I32] = "i32",       [SVC_T_I64] = "i64",     [SVC_T_U8] = "u8",   [SVC_T_U16] = "u16",
    [SVC_T_U32] = "u32",       [SVC_T_U64] = "u64",     [SVC_T_F32] = "f32", [SVC_T_F64] = "f64",
    [SVC_T_STRING] = "string", [SVC_T_BYTES] = "bytes",
};

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
        sb_puts(o, scalar_names[t->kind]);
        return;
    }
}

static const char *const enc_names[] = {
    [SVC_ENC_MSGPACK] = "msgpack", [SVC_ENC_JSON] = "json", [SVC_ENC_RAW] = "raw"};

const char *gen_signature(gen *g, const svc_method *m)
{
    sbuf o;
    seen s = {.n = 0};
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

void gen_descriptor(gen *g, tmpl_dict *d)
{
    for (int i = 0; i < g->n_methods; i++) {
        const svc_method *m = g->sorted[i];
        tmpl_dict *md = tmpl_push(d, "table");
        const char *sig = gen_signature(g, m);
        tmpl_setf(md, "name", "%.*s", m->name.n, m->name.p);
        tmpl_set(md, "cname", gen_method_cname(g, m));
        tmpl_setf(md, "index", "%d", i);
        tmpl_set(
            md, "id_const",
            svc_arena_printf(g->a, "%s_METHOD_%s", g->P, svc_upper(g->a, gen_method_cname(g, m))));
        tmpl_set(md, "encoding", enc_consts[m->enc]);
        tmpl_setf(md, "fingerprint", "UINT64_C(0x%016" PRIx64 ")", gen_fnv1a64(sig));
        tmpl_set(md, "signature", gen_cstr(g, sig));
    }
    tmpl_flag(d, "has_methods", g->n_methods > 0);
    tmpl_setf(d, "service_fingerprint", "UINT64_C(0x%016" PRIx64 ")", gen_service_fingerprint(g));
    tmpl_set(d, "svc_name_literal", gen_cstr(g, g->svc->svc_name ? g->svc->svc_name : ""));
    tmpl_setf(d, "port", "%ld", g->svc->port);
    tmpl_setf(d, "n_methods", "%d", g->n_methods);
}
