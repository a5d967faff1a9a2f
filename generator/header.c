/* SPDX-License-Identifier: MIT */
/* NAME.h: the service's types, the method ids, the client stubs' prototypes, the
 * handlers a server fills, and the prototypes of the codec glue that NAME.c defines. */
#include <stdio.h>
#include <string.h>

#include <shmrpc/version.h> /* SHMRPC_CODEGEN_VERSION: the contract the output is made for */

#include "gen.h"

static void enum_def(gen *g, emitter *e, const gtype *t)
{
    gen_doc(g, e, t->decl->doc);
    em_open(e, "typedef enum %s {", t->ctype);
    for (const svc_enumval *v = t->decl->values; v; v = v->next) {
        gen_doc(g, e, v->doc);
        em(e, "%s = %lld,", gen_enum_const(g, t, v), (long long)v->value);
    }
    em_close(e, "} %s;", t->ctype);
    em_blank(e);
}

/* Structs in an order where each follows the structs it holds by value. */
static void struct_defs(gen *g, emitter *e, gtype *t)
{
    if (t->defined) return;
    t->defined = true; /* by-value cycles are refused by the checks */
    for (const svc_field *f = t->fields; f; f = f->next) {
        gtype *ft = gen_type(g, f->type);
        if (ft->kind == GK_STRUCT) struct_defs(g, e, ft);
    }
    gen_doc(g, e, t->decl->doc);
    em_open(e, "struct %s {", t->ctype);
    for (const svc_field *f = t->fields; f; f = f->next) {
        gen_doc(g, e, f->doc);
        em(e, "%s;", gen_decl(g, gen_type(g, f->type)->ctype, gen_tokstr(g, f->name)));
    }
    if (t->fields == NULL) em(e, "char unused; /* C has no empty structs */");
    em_close(e, "};");
    em_blank(e);
}

/* The type definitions in an order C accepts: enums; names of every struct, map entry and
 * optional; lists and maps (which hold only pointers); optionals (which hold lists, maps
 * or scalars by value); structs, each after those it holds by value; and last the map
 * entries, which may hold structs. */
static void type_defs(gen *g, emitter *e)
{
    for (gtype *t = g->types; t; t = t->next)
        if (t->kind == GK_ENUM) enum_def(g, e, t);

    bool any = false;
    for (gtype *t = g->types; t; t = t->next) {
        if (t->kind == GK_STRUCT && !t->is_args)
            em(e, "typedef struct %s %s;", t->ctype, t->ctype);
        else if (t->kind == GK_MAP)
            em(e, "typedef struct %s_entry %s_entry;", t->ctype, t->ctype);
        else if (t->kind == GK_OPT && t->elem->kind != GK_STRUCT)
            em(e, "typedef struct %s %s;", t->ctype, t->ctype);
        else
            continue;
        any = true;
    }
    if (any) em_blank(e);

    for (gtype *t = g->types; t; t = t->next) {
        if (t->kind != GK_LIST && t->kind != GK_MAP) continue;
        em_open(e, "typedef struct %s {", t->ctype);
        if (t->kind == GK_LIST)
            em(e, "%s;", gen_ptr_decl(g, t->elem->ctype, "items", true));
        else
            em(e, "const %s_entry *items;", t->ctype);
        em(e, "size_t len;");
        em_close(e, "} %s;", t->ctype);
        em_blank(e);
    }
    for (gtype *t = g->types; t; t = t->next) {
        if (t->kind != GK_OPT || t->elem->kind == GK_STRUCT) continue;
        em_open(e, "struct %s {", t->ctype);
        em(e, "bool has;");
        em(e, "%s;", gen_decl(g, t->elem->ctype, "value"));
        em_close(e, "};");
        em_blank(e);
    }
    for (gtype *t = g->types; t; t = t->next)
        if (t->kind == GK_STRUCT && !t->is_args) struct_defs(g, e, t);
    for (gtype *t = g->types; t; t = t->next) {
        if (t->kind != GK_MAP) continue;
        em_open(e, "struct %s_entry {", t->ctype);
        em(e, "%s;", gen_decl(g, t->key->ctype, "key"));
        em(e, "%s;", gen_decl(g, t->elem->ctype, "value"));
        em_close(e, "};");
        em_blank(e);
    }
}

/* The include guard: the prefix keeps a stem that starts with a digit ("2d") or spells a
 * reserved name from making an invalid or clashing macro, and runs of other characters
 * become one '_', so that no "__" appears. */
static const char *guard(gen *g)
{
    const char *up = svc_upper(g->a, g->stem);
    sbuf b;
    sb_init(&b);
    sb_puts(&b, "SHMRPC_GEN_");
    for (const char *c = up; *c; c++) {
        bool ok = (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9');
        if (ok)
            sb_putn(&b, c, 1);
        else if (b.p[b.len - 1] != '_')
            sb_puts(&b, "_");
    }
    if (b.p[b.len - 1] != '_') sb_puts(&b, "_");
    sb_puts(&b, "H");
    const char *r = S("%s", sb_str(&b));
    sb_free(&b);
    return r;
}

static void methods(gen *g, emitter *e)
{
    em(e, "/* Method ids: indexes into the method table, which is sorted by name. */");
    em_open(e, "enum {");
    for (int i = 0; i < g->n_methods; i++)
        em(e, "%s = %d,", gen_method_id(g, g->sorted[i]), i);
    em(e, "%s_METHODS = %d /* how many */", g->P, g->n_methods);
    em_close(e, "};");
    em_blank(e);
    em(e, "/* The method table that client and server compare when they connect. */");
    em(e, "extern const shmrpc_service_info %s_service_info;", g->own);
    em_blank(e);
    em(e, "/* Client stubs. Each returns 0 or a negative SHMRPC_E... status, with a message in");
    em(e, " * shmrpc_errmsg(). What a result points to (strings, bytes, lists, maps, optional");
    em(e, " * structs) stays valid until the client's next call. */");
    bool streams = false, streams_in = false, streams_out = false;
    for (const svc_method *m = g->svc->methods; m; m = m->next) {
        streams_out |= m->server_stream;
        streams_in |= m->client_stream;
        streams |= m->server_stream || m->client_stream;
        if (m->server_stream || m->client_stream) continue;
        em_blank(e);
        gen_doc(g, e, m->doc);
        em(e, "int %s_%s(shmrpc_client *client_%s%s);", g->p, gen_method_cname(g, m),
           gen_params_decl(g, m), gen_out_decl(g, m));
    }
    em_blank(e);
    em(e, "/* Asynchronous stubs (shmrpc/client.h, \"many calls in flight\"): NAME_start sends");
    em(e, " * the call with the client's timeout as its deadline and sets *call_ (see");
    em(e, " * shmrpc_client_start); NAME_finish waits for it, frees it and decodes its result,");
    em(e, " * which stays valid until the client's next call or start. */");
    for (const svc_method *m = g->svc->methods; m; m = m->next) {
        if (m->server_stream || m->client_stream) continue;
        em(e, "int %s_%s_start(shmrpc_client *client_%s, shmrpc_call **call_);", g->p,
           gen_method_cname(g, m), gen_params_decl(g, m));
        em(e, "int %s_%s_finish(shmrpc_client *client_, shmrpc_call *call_%s);", g->p,
           gen_method_cname(g, m), gen_out_decl(g, m));
    }
    if (streams) {
        em_blank(e);
        em(e,
           "/* Streams (shmrpc/client.h, \"streams\"; docs/streams.md): NAME_open sends the call");
        em(e,
           " * and sets *stream_; shmrpc_stream_close() ends it; the client makes no other call");
        em(e, " * while it is open.");
        if (streams_out) {
            em(e, " * NAME_recv gives the next item of a result that streams: 1 (what the item");
            em(e, " * points to valid until the next recv), 0 at its end, or the stream's status.");
        }
        if (streams_in) {
            em(e, " * NAME_send sends an item of a parameter that streams: 0, or the stream's");
            em(e, " * status once it ended (SHMRPC_ECLOSED: the handler returned before reading");
            em(e, " * it). NAME_done says that no item follows, and, when the result is no");
            em(e, " * stream, waits for it (valid until the close): 0, or the stream's status.");
        }
        em(e, " */");
    }
    for (const svc_method *m = g->svc->methods; m; m = m->next) {
        if (!m->server_stream && !m->client_stream) continue;
        const char *name = gen_method_cname(g, m);
        em_blank(e);
        gen_doc(g, e, m->doc);
        em(e, "int %s_%s_open(shmrpc_client *client_%s, shmrpc_stream **stream_);", g->p, name,
           gen_params_decl(g, m));
        if (m->client_stream) {
            em(e, "int %s_%s_send(shmrpc_stream *stream_, %s);", g->p, name,
               gen_value_decl(g, gen_type(g, gen_item_in(m)), "item_"));
            em(e, "int %s_%s_done(shmrpc_stream *stream_%s);", g->p, name, gen_out_decl(g, m));
        }
        if (m->server_stream)
            em(e, "int %s_%s_recv(shmrpc_stream *stream_, %s);", g->p, name,
               gen_ptr_decl(g, gen_type(g, gen_answer(m))->ctype, "item_", false));
    }
    em_blank(e);
    em(e, "/* Server: one handler per method, registered with shmrpc_server_register() together");
    em(e, " * with %s_service. A handler returns 0 or a status (shmrpc_ctx_error() adds a", g->own);
    em(e,
       " * message). Its arguments live until it returns; memory its result points to must live");
    em(e, " * until the call is answered: take it from shmrpc_ctx_arena(ctx). */");
    em_open(e, "typedef struct %s_handlers {", g->own);
    for (const svc_method *m = g->svc->methods; m; m = m->next) {
        gen_doc(g, e, m->doc);
        em(e, "int (*%s)(shmrpc_ctx *ctx_%s%s);", gen_method_cname(g, m), gen_params_decl(g, m),
           gen_out_decl(g, m));
    }
    if (g->n_methods == 0) em(e, "char unused; /* C has no empty structs */");
    em_close(e, "} %s_handlers;", g->own);
    if (streams_out) {
        em_blank(e);
        em(e,
           "/* The handler of a stream writes its items (NAME_write), in order, then returns its");
        em(e, " * status: a write waits while the client is behind, and fails once the stream");
        em(e, " * cannot go on (closed, cancelled, past its deadline), which the handler returns.");
        em(e, " * (A handler reads and writes: NAME_read and NAME_write; a client sends and");
        em(e, " * receives: NAME_send and NAME_recv.) */");
    }
    if (streams_in) {
        em_blank(e);
        em(e, "/* The handler of a stream it takes reads its items (NAME_read): 1 and the item");
        em(e,
           " * (what it points to valid until the next read), 0 after the client's last, or why");
        em(e, " * the stream cannot go on (closed, cancelled, past its deadline, or an item that");
        em(e, " * does not decode), which the handler returns. It may return before the last. */");
    }
    for (const svc_method *m = g->svc->methods; m; m = m->next) {
        if (m->client_stream)
            em(e, "int %s_%s_read(shmrpc_ctx *ctx_, %s);", g->p, gen_method_cname(g, m),
               gen_ptr_decl(g, gen_type(g, gen_item_in(m))->ctype, "item_", false));
        if (m->server_stream)
            em(e, "int %s_%s_write(shmrpc_ctx *ctx_, %s);", g->p, gen_method_cname(g, m),
               gen_value_decl(g, gen_type(g, gen_answer(m)), "item_"));
    }
    em_blank(e);
    em(e, "extern const shmrpc_service %s_service;", g->own);
}

void gen_header(gen *g, emitter *e)
{
    gen_banner(g, e, ".h", NULL);
    const char *gd = guard(g);
    em(e, "#ifndef %s", gd);
    em(e, "#define %s", gd);
    em_blank(e);
    em(e, "#include <stdbool.h>");
    em(e, "#include <stddef.h>");
    em(e, "#include <stdint.h>");
    em_blank(e);
    em(e, "#include <msgpack.h>");
    em(e, "#include <shmrpc.h>");
    em_blank(e);
    em(e, "#if !defined(SHMRPC_CODEGEN_VERSION) || SHMRPC_CODEGEN_VERSION != %d",
       SHMRPC_CODEGEN_VERSION);
    em(e, "#error \"%s.h was generated by shmrpcgen %s for another shmrpc runtime: regenerate it\"",
       g->stem, SHMRPCGEN_VERSION);
    em(e, "#endif");
    em_blank(e);
    em(e, "#ifdef __cplusplus");
    em(e, "extern \"C\" {");
    em(e, "#endif");
    em_blank(e);
    gen_doc(g, e, g->svc->doc);
    em(e, "#define %s_PORT %ld", g->P, g->svc->port);
    em(e, "#define %s_NAME %s", g->P, gen_cstr(g, g->svc->svc_name ? g->svc->svc_name : ""));
    em(e, "#define %s_FINGERPRINT UINT64_C(0x%016llx)", g->P,
       (unsigned long long)gen_service_fingerprint(g));
    em_blank(e);
    type_defs(g, e);
    methods(g, e);
    gen_queue_decls(g, e);
    gen_map_decls(g, e);
    em_blank(e);
    em(e, "/* The codec glue that the stubs and the server share (in %s.c): not for direct use. */",
       g->stem);
    gen_codec_prototypes(g, e, false);
    em_blank(e);
    em(e, "#ifdef __cplusplus");
    em(e, "}");
    em(e, "#endif");
    em(e, "#endif");
}
