/* SPDX-License-Identifier: MIT */
/* NAME.c: the method table (signatures naming their types, each type described once,
 * fingerprints over the canonical signatures) and the service info that client and server
 * compare when they connect (docs/svc-language.md), and the codec glue that the client and
 * server files share. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "gen.h"

/* The canonical text, which fingerprints hash: the front end's (idl/signature.c). It is
 * never sent, so only memory bounds it (each type spelled out once in it). */
static const char *signature(gen *g, const svc_method *m)
{
    return gen_must(svc_signature(g->a, m, SIZE_MAX / 2, NULL));
}

/* The texts the table carries, whose lengths the checks hold to what the tcp:// handshake
 * carries: a checked file's all fit. */
static const char *table_signature(gen *g, const svc_method *m)
{
    return gen_must(svc_table_signature(g->a, m, SVC_MAX_SIGNATURE, NULL));
}

/* A C expression for text: a literal, or a static array defined first when too long
 * for one (named NAME_WHAT_i). */
static const char *text_expr(gen *g, emitter *e, const char *what, int i, const char *text)
{
    const char *lit = gen_cstr(g, text);
    if (strlen(lit) - 2 <= GEN_MAX_LITERAL) return lit;
    const char *name = S("%s_%s_%d", g->own, what, i);
    em_blank(e);
    gen_string_def(g, e, S("static const char %s[]", name), text);
    return name;
}

/* NAME_types[], the table's types; their count in *n (0: no array). */
static void type_table(gen *g, emitter *e, int *n)
{
    const svc_decl **types = gen_must(svc_table_types(g->a, g->svc, n));
    if (*n == 0) return;
    const char **exprs = gen_must(svc_arena_alloc(g->a, sizeof *exprs * (size_t)*n));
    for (int i = 0; i < *n; i++)
        exprs[i] = text_expr(g, e, "type", i,
                             gen_must(svc_type_text(g->a, types[i], SVC_MAX_SIGNATURE, NULL)));
    em_blank(e);
    em_open(e, "static const char *const %s_types[] = {", g->own);
    /* A literal long enough to be cut over lines goes in parentheses: else compilers ask
     * whether a comma was meant between its pieces. */
    for (int i = 0; i < *n; i++)
        em(e, strlen(exprs[i]) > 80 ? "(%s)," : "%s,", exprs[i]);
    em_close(e, "};");
}

/* Over every method's signature in name order, each followed by a newline. */
uint64_t gen_service_fingerprint(gen *g)
{
    sbuf o;
    sb_init(&o);
    for (int i = 0; i < g->n_methods; i++)
        sb_printf(&o, "%s\n", signature(g, g->sorted[i]));
    uint64_t h = svc_fingerprint(sb_str(&o));
    sb_free(&o);
    return h;
}

/* @pickle and @marshal travel as @raw: only their signature names them. */
static const char *const enc_consts[] = {[SVC_ENC_MSGPACK] = "SHMRPC_ENC_MSGPACK",
                                         [SVC_ENC_JSON] = "SHMRPC_ENC_JSON",
                                         [SVC_ENC_RAW] = "SHMRPC_ENC_RAW",
                                         [SVC_ENC_PICKLE] = "SHMRPC_ENC_RAW",
                                         [SVC_ENC_MARSHAL] = "SHMRPC_ENC_RAW"};

void gen_descriptor(gen *g, emitter *e)
{
    gen_banner(g, e, ".c",
               "What clients and servers of %s both link: the method table and the "
               "codec glue.");
    em(e, "#include <string.h>");
    em_blank(e);
    em(e, "#include \"%s.h\"", g->stem);
    const char **sigs = gen_must(svc_arena_alloc(g->a, sizeof *sigs * (size_t)(g->n_methods + 1)));
    for (int i = 0; i < g->n_methods; i++)
        sigs[i] = text_expr(g, e, "signature", i, table_signature(g, g->sorted[i]));
    int n_types = 0;
    type_table(g, e, &n_types);
    if (g->n_methods) {
        em_blank(e);
        em_open(e, "static const shmrpc_method_info %s_methods[] = {", g->own);
        for (int i = 0; i < g->n_methods; i++) {
            const svc_method *m = g->sorted[i];
            em_open(e, "{");
            em(e, ".name = \"%.*s\",", m->name.n, m->name.p);
            em(e, ".id = %s,", gen_method_id(g, m));
            em(e, ".encoding = %s,", enc_consts[m->enc]);
            em(e, ".fingerprint = UINT64_C(0x%016" PRIx64 "),", svc_fingerprint(signature(g, m)));
            em(e, ".signature = %s,", sigs[i]);
            em_close(e, "},");
        }
        em_close(e, "};");
    }
    em_blank(e);
    em_open(e, "const shmrpc_service_info %s_service_info = {", g->own);
    em(e, ".magic = SHMRPC_SERVICE_MAGIC,");
    em(e, ".version = SHMRPC_DESCRIPTOR_VERSION,");
    em(e, ".name = \"%s\",", g->name);
    em(e, ".svc_name = %s_NAME,", g->P);
    em(e, ".port = %s_PORT,", g->P);
    em(e, ".fingerprint = %s_FINGERPRINT,", g->P);
    em(e, ".n_methods = %s_METHODS,", g->P);
    em(e, ".methods = %s,", g->n_methods ? S("%s_methods", g->own) : "NULL");
    em(e, ".n_types = %d,", n_types);
    em(e, ".types = %s,", n_types ? S("%s_types", g->own) : "NULL");
    em_close(e, "};");
    gen_codec_functions(g, e, false);
    gen_queue_functions(g, e);
    gen_map_functions(g, e);
}
