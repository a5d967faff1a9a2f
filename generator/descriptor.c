/* The method table: canonical signatures, their fingerprints, and the service info
 * that client and server compare when they connect (docs/svc-language.md). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "gen.h"

/* The text is the front end's (idl/signature.c), whose length the checks hold to what
 * the tcp:// handshake carries: a checked file's signatures all fit. */
const char *gen_signature(gen *g, const svc_method *m)
{
    return gen_must(svc_signature(g->a, m, SVC_MAX_SIGNATURE, NULL));
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
