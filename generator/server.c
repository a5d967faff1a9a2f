/* SPDX-License-Identifier: MIT */
/* NAME_server.c: per method, an invoker that decodes the arguments, calls the user's
 * handler and encodes its result; then the dispatch table and the service. No user's
 * name is in scope in an invoker (the arguments are members of args), so its locals
 * have plain names. */
#include <stdio.h>
#include <string.h>

#include "gen.h"

/* Calls the handler into a zeroed local `out` (when there is a result). */
static void call_handler(gen *g, emitter *e, const svc_method *m)
{
    bool has_out = m->result->kind != SVC_T_VOID && !m->server_stream;
    if (has_out) {
        em(e, "%s;", gen_decl(g, gen_type(g, m->result)->ctype, "out"));
        em(e, "memset(&out, 0, sizeof out);");
    }
    sbuf b;
    sb_init(&b);
    sb_printf(&b, "h->%s(ctx", gen_method_cname(g, m));
    for (const svc_field *p = m->client_stream ? NULL : m->params; p; p = p->next)
        sb_printf(&b, ", %sargs.%.*s", gen_type(g, p->type)->kind == GK_STRUCT ? "&" : "",
                  p->name.n, p->name.p);
    sb_puts(&b, has_out ? ", &out)" : ")");
    em(e, "rc = %s;", sb_str(&b));
    sb_free(&b);
    em_open(e, "if (rc != 0)");
    em_last(e, "return rc;");
}

static void decode_failed(emitter *e, const char *label)
{
    em_open(e, "if (rc != 0)");
    em_last(e, "return shmrpc_ctx_decode_error(ctx, \"%s\", \"arguments\", r.field, r.why);",
            label);
}

/* Reads the request's arguments into `args` with the reader r, or for a method without
 * any (or a client stream's, which come as items), checks that none came; assign begins
 * the statement that sets rc. */
static void read_args(gen *g, emitter *e, const svc_method *m, bool json, const char *assign)
{
    if (m->n_params && !m->client_stream) {
        const gtype *at = gen_args_type(g, m);
        em(e, "%s args;", at->ctype);
        em(e, "%s%s(&r, %s, &args);", assign, gen_codec_fn(g, at, json ? "json_read" : "mp_read"),
           json ? "r.root" : "shmrpc_ctx_arena(ctx)");
        return;
    }
    em(e, "%s n;", json ? "size_t" : "uint32_t");
    em(e, "%s%s;", assign,
       json ? "shmrpc_json_read_object(&r, r.root, &n)" : "shmrpc_mp_read_array(&r, &n)");
    em_open(e, "if (rc == 0 && n != 0) {");
    em(e, "r.why = \"expected no arguments\";");
    em(e, "rc = SHMRPC_EINVAL;");
    em_close(e, "}");
}

/* Whether a value of t may hold an any, whose bytes are the handler's, checked as they are
 * written (shmrpc_mp_write_any). seen holds the structs being looked into: types recurse
 * through structs, and nest at most 200 deep. */
static bool holds_any(gen *g, const gtype *t, const gtype **seen, int n)
{
    switch (t->kind) {
    case GK_SCALAR:
        return t->scalar == SVC_T_ANY;
    case GK_ENUM:
        return false;
    case GK_LIST:
    case GK_OPT:
    case GK_MAP: /* a key is never an any */
        return holds_any(g, t->elem, seen, n);
    case GK_STRUCT:
        for (int i = 0; i < n; i++)
            if (seen[i] == t) return false;
        if (n == 256) return true; /* deeper than any file nests: say yes, which is safe */
        seen[n] = t;
        for (const svc_field *f = t->fields; f != NULL; f = f->next)
            if (holds_any(g, gen_type(g, f->type), seen, n + 1)) return true;
        return false;
    }
    return false;
}

/* Decodes a msgpack request into `args` (rc, the reader r), or returns its error. */
static void read_request(gen *g, emitter *e, const svc_method *m, const char *label)
{
    em(e, "shmrpc_mp_reader r;");
    em(e, "shmrpc_mp_reader_init(&r, req.ptr, req.len);");
    read_args(g, e, m, false, "int rc = ");
    em_open(e, "if (rc == 0)");
    em_last(e, "rc = shmrpc_mp_finish(&r);");
    decode_failed(e, label);
}

/* Encodes the handler's result `out` into resp, and returns. */
static void write_result(gen *g, emitter *e, const svc_method *m, const char *label)
{
    em(e, "msgpack_packer pk;");
    em(e, "msgpack_packer_init(&pk, resp, shmrpc_buf_msgpack_write);");
    if (m->result->kind == SVC_T_VOID) {
        em(e, "msgpack_pack_nil(&pk);");
    } else {
        const cx c = {"&pk", "&r", "", "rc"};
        gen_mp_write(g, e, &c, gen_type(g, m->result), "out");
        const gtype *seen[256];
        if (holds_any(g, gen_type(g, m->result), seen, 0)) {
            /* SHMRPC_EINVAL comes from no other writer: the handler built an any wrongly. */
            em_open(e, "if (resp->err == SHMRPC_EINVAL)");
            em_last(e,
                    "return shmrpc_ctx_error(ctx, SHMRPC_EHANDLER, \"%s: the result's %%s\", "
                    "shmrpc_errmsg());",
                    label);
        }
    }
    em(e, "return resp->err;");
}

static void invoke_msgpack(gen *g, emitter *e, const svc_method *m, const char *label)
{
    read_request(g, e, m, label);
    call_handler(g, e, m);
    write_result(g, e, m, label);
}

static void invoke_json(gen *g, emitter *e, const svc_method *m, const char *label)
{
    em(e, "shmrpc_json_reader r;");
    em(e, "int rc = shmrpc_json_parse(&r, shmrpc_ctx_arena(ctx), req.ptr, req.len);");
    em_open(e, "if (rc != 0)");
    em_last(e,
            "return shmrpc_ctx_error(ctx, rc, \"%s: arguments: malformed JSON: %%s\", r.detail);",
            label);
    read_args(g, e, m, true, "rc = ");
    em(e, "shmrpc_json_release(&r);");
    decode_failed(e, label);
    call_handler(g, e, m);
    em(e, "shmrpc_json *res = %s;",
       m->result->kind == SVC_T_VOID ? "shmrpc_json_null()"
                                     : gen_json_write_expr(g, gen_type(g, m->result), "out"));
    em_open(e, "if (res == NULL)");
    em_last(e,
            "return shmrpc_ctx_error(ctx, SHMRPC_EHANDLER, \"%s: the result has no JSON form\");",
            label);
    em(e, "return shmrpc_json_dump(res, resp);");
}

/* A stream's invoke: the arguments decoded as a call's, then the handler, which sends the
 * items itself; its status ends the stream, which has no result to encode. */
static void invoke_stream(gen *g, emitter *e, const svc_method *m, const char *label)
{
    if (svc_enc_is_raw(m->enc)) {
        em(e, "(void)resp;");
        em(e, "return h->%s(ctx, req);", gen_method_cname(g, m));
        return;
    }
    read_request(g, e, m, label);
    em(e, "(void)resp;");
    call_handler(g, e, m);
    em(e, "return 0;");
}

/* A client stream's invoke: no arguments (an empty array; a @raw method's, no bytes), then
 * the handler, which reads the items itself; then its result as a call's, unless that
 * streams too. */
static void invoke_client_stream(gen *g, emitter *e, const svc_method *m, const char *label)
{
    if (svc_enc_is_raw(m->enc)) {
        em_open(e, "if (req.len != 0)");
        em_last(e, "return shmrpc_ctx_error(ctx, SHMRPC_EINVAL, \"%s: arguments: expected none\");",
                label);
        if (m->server_stream) {
            em(e, "(void)resp;");
            em(e, "return h->%s(ctx);", gen_method_cname(g, m));
        } else {
            em(e, "shmrpc_bytes out = {NULL, 0};");
            em(e, "int rc = h->%s(ctx, &out);", gen_method_cname(g, m));
            em_open(e, "if (rc != 0)");
            em_last(e, "return rc;");
            em(e, "return shmrpc_ctx_answer_raw(ctx, resp, out);");
        }
        return;
    }
    read_request(g, e, m, label);
    call_handler(g, e, m);
    if (m->server_stream) {
        em(e, "(void)resp;");
        em(e, "return 0;");
        return;
    }
    write_result(g, e, m, label);
}

/* NAME_read: the client's next item, decoded as an argument is into the item arena. */
static void stream_read(gen *g, emitter *e, const svc_method *m, const char *label)
{
    const gtype *t = gen_type(g, gen_item_in(m));
    gen_item_reader(
        g, e,
        S("int %s_%s_read(shmrpc_ctx *ctx_, %s)", g->p, gen_method_cname(g, m),
          gen_ptr_decl(g, t->ctype, "item_", false)),
        "shmrpc_ctx_recv(ctx_", m, t, "shmrpc_ctx_item_arena(ctx_)",
        S("return shmrpc_ctx_decode_error(ctx_, \"%s\", \"item\", r_.field, r_.why);", label));
}

/* NAME_write: encodes an item as a result into the call's item buffer, and sends it. */
static void stream_write(gen *g, emitter *e, const svc_method *m, const char *label)
{
    const gtype *t = gen_type(g, gen_answer(m));
    em_blank(e);
    em(e, "int %s_%s_write(shmrpc_ctx *ctx_, %s)", g->p, gen_method_cname(g, m),
       gen_value_decl(g, t, "item_"));
    em_open(e, "{");
    if (svc_enc_is_raw(m->enc)) {
        em(e, "return shmrpc_ctx_send(ctx_, item_.ptr, item_.len);");
        em_close(e, "}");
        return;
    }
    const cx c = {"&pk_", "", "", "rc_"};
    em(e, "shmrpc_buf *b_ = shmrpc_ctx_item(ctx_);");
    em_open(e, "if (b_ == NULL)");
    em_last(e, "return SHMRPC_EINVAL;");
    em(e, "msgpack_packer pk_;");
    em(e, "msgpack_packer_init(&pk_, b_, shmrpc_buf_msgpack_write);");
    gen_mp_write(g, e, &c, t, t->kind == GK_STRUCT ? "*item_" : "item_");
    const gtype *seen[256];
    /* SHMRPC_EINVAL comes from no other writer: the handler built an any wrongly. */
    if (holds_any(g, t, seen, 0)) {
        em_open(e, "if (b_->err == SHMRPC_EINVAL)");
        em_last(e,
                "return shmrpc_ctx_error(ctx_, SHMRPC_EHANDLER, \"%s: the item's %%s\", "
                "shmrpc_errmsg());",
                label);
    }
    em_open(e, "if (b_->err != 0)");
    em_last(e,
            "return shmrpc_ctx_error(ctx_, b_->err, \"%s: an item: %%s\", "
            "shmrpc_strerror(b_->err));",
            label);
    em(e, "return shmrpc_ctx_send(ctx_, b_->data, b_->len);");
    em_close(e, "}");
}

static void invoke_raw(gen *g, emitter *e, const svc_method *m)
{
    em(e, "shmrpc_bytes out = {NULL, 0};");
    em(e, "int rc = h->%s(ctx, req, &out);", gen_method_cname(g, m));
    em_open(e, "if (rc != 0)");
    em_last(e, "return rc;");
    em(e, "return shmrpc_ctx_answer_raw(ctx, resp, out);");
}

static const char *invoke_fn(gen *g, const svc_method *m)
{
    return S("%s_%s_invoke", g->own, gen_method_cname(g, m));
}

/* A method's arguments as a struct, which the server decodes in one go. */
static void args_struct(gen *g, emitter *e, const svc_method *m)
{
    const gtype *at = gen_args_type(g, m);
    em_blank(e);
    em_open(e, "typedef struct %s {", at->ctype);
    for (const svc_field *p = m->params; p; p = p->next)
        em(e, "%s;", gen_decl(g, gen_type(g, p->type)->ctype, gen_tokstr(g, p->name)));
    em_close(e, "} %s;", at->ctype);
}

static void tables(gen *g, emitter *e)
{
    em_blank(e);
    em_open(e, "static const shmrpc_invoke_fn %s_invoke[] = {", g->own);
    for (int i = 0; i < g->n_methods; i++)
        em(e, "[%s] = %s,", gen_method_id(g, g->sorted[i]), invoke_fn(g, g->sorted[i]));
    em_close(e, "};");
    em_blank(e);
    em_open(e, "static const size_t %s_handler_offset[] = {", g->own);
    for (int i = 0; i < g->n_methods; i++)
        em(e, "[%s] = offsetof(%s_handlers, %s),", gen_method_id(g, g->sorted[i]), g->own,
           gen_method_cname(g, g->sorted[i]));
    em_close(e, "};");
}

void gen_server(gen *g, emitter *e)
{
    gen_banner(g, e, "_server.c",
               "Server glue of %s: decode the arguments, call the handler, encode the result.");
    em(e, "#include <stddef.h>");
    em(e, "#include <string.h>");
    em_blank(e);
    em(e, "#include \"%s.h\"", g->stem);
    for (const svc_method *m = g->svc->methods; m; m = m->next)
        if (m->n_params > 0 && !svc_enc_is_raw(m->enc) && !m->client_stream) args_struct(g, e, m);
    bool any = false;
    for (gtype *t = g->types; t; t = t->next)
        any |= t->is_args && t->need;
    if (any) em_blank(e);
    gen_codec_prototypes(g, e, true);
    gen_codec_functions(g, e, true);
    for (const svc_method *m = g->svc->methods; m; m = m->next) {
        const char *label = S("%s.%.*s", g->name, m->name.n, m->name.p);
        em_blank(e);
        em(e,
           "static int %s(shmrpc_ctx *ctx, const void *handlers, shmrpc_bytes req, "
           "shmrpc_buf *resp)",
           invoke_fn(g, m));
        em_open(e, "{");
        em(e, "const %s_handlers *h = handlers;", g->own);
        if (m->client_stream)
            invoke_client_stream(g, e, m, label);
        else if (m->server_stream)
            invoke_stream(g, e, m, label);
        else if (svc_enc_is_raw(m->enc))
            invoke_raw(g, e, m);
        else if (m->enc == SVC_ENC_JSON)
            invoke_json(g, e, m, label);
        else
            invoke_msgpack(g, e, m, label);
        em_close(e, "}");
    }
    for (const svc_method *m = g->svc->methods; m; m = m->next) {
        const char *label = S("%s.%.*s", g->name, m->name.n, m->name.p);
        if (m->client_stream) stream_read(g, e, m, label);
        if (m->server_stream) stream_write(g, e, m, label);
    }
    if (g->n_methods) tables(g, e);
    em_blank(e);
    em_open(e, "const shmrpc_service %s_service = {", g->own);
    em(e, ".magic = SHMRPC_SERVICE_MAGIC,");
    em(e, ".version = SHMRPC_DESCRIPTOR_VERSION,");
    em(e, ".info = &%s_service_info,", g->own);
    em(e, ".invoke = %s,", g->n_methods ? S("%s_invoke", g->own) : "NULL");
    em(e, ".handler_offset = %s,", g->n_methods ? S("%s_handler_offset", g->own) : "NULL");
    em(e, ".handlers_size = sizeof(%s_handlers),", g->own);
    em_close(e, "};");
}
