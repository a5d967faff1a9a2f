/* The server glue: per method, an invoker that decodes the arguments, calls the
 * user's handler and encodes its result; then the dispatch table. */
#include <stdio.h>
#include <string.h>

#include "gen.h"

static const char *handler_call(gen *g, const svc_method *m, bool has_out)
{
    sbuf o;
    sb_init(&o);
    sb_printf(&o, "h->%s(ctx", gen_method_cname(g, m));
    for (const svc_field *p = m->params; p; p = p->next)
        sb_printf(&o, ", %s",
                  gen_param_arg(g, gen_type(g, p->type), S("args.%.*s", p->name.n, p->name.p)));
    sb_puts(&o, has_out ? ", &out)" : ")");
    const char *r = S("%s", sb_str(&o));
    sb_free(&o);
    return r;
}

/* Calls the handler into a zeroed local `out` (when there is a result). */
static void call_handler(gen *g, sbuf *o, const svc_method *m)
{
    bool has_out = m->result->kind != SVC_T_VOID;
    if (has_out) {
        sb_printf(o, "    %s;\n    memset(&out, 0, sizeof out);\n",
                  gen_decl(g, gen_type(g, m->result)->ctype, "out"));
    }
    sb_printf(o, "    rc = %s;\n    if (rc != 0)\n        return rc;\n",
              handler_call(g, m, has_out));
}

static void invoke_msgpack(gen *g, sbuf *o, const svc_method *m, const char *label)
{
    sb_puts(o, "    shmrpc_mp_reader r;\n    shmrpc_mp_reader_init(&r, req.ptr, req.len);\n");
    if (m->n_params) {
        const gtype *at = gen_args_type(g, m);
        sb_printf(o,
                  "    %s args;\n    int rc = %s__%s_mp_read(&r, shmrpc_ctx_arena(ctx), &args);\n",
                  at->ctype, g->p, at->tag);
    } else {
        sb_puts(o, "    uint32_t n;\n    int rc = shmrpc_mp_read_array(&r, &n);\n"
                   "    if (rc == 0 && n != 0) {\n        r.why = \"expected no arguments\";\n"
                   "        rc = SHMRPC_EINVAL;\n    }\n");
    }
    sb_printf(
        o,
        "    if (rc == 0)\n        rc = shmrpc_mp_finish(&r);\n    if (rc != 0)\n"
        "        return shmrpc_ctx_decode_error(ctx, \"%s\", \"arguments\", r.field, r.why);\n",
        label);
    call_handler(g, o, m);
    sb_puts(
        o,
        "    msgpack_packer pk;\n    msgpack_packer_init(&pk, resp, shmrpc_buf_msgpack_write);\n");
    if (m->result->kind == SVC_T_VOID) {
        sb_puts(o, "    msgpack_pack_nil(&pk);\n");
    } else {
        const cx c = {"&pk", "&r", "", "rc"};
        gen_mp_write(g, o, "    ", &c, gen_type(g, m->result), "out");
    }
    sb_puts(o, "    return resp->err;\n");
}

static void invoke_json(gen *g, sbuf *o, const svc_method *m, const char *label)
{
    sb_printf(o,
              "    shmrpc_json_reader r;\n"
              "    int rc = shmrpc_json_parse(&r, shmrpc_ctx_arena(ctx), req.ptr, req.len);\n"
              "    if (rc != 0)\n"
              "        return shmrpc_ctx_error(ctx, rc, \"%s: arguments: malformed JSON: %%s\", "
              "r.detail);\n",
              label);
    if (m->n_params) {
        const gtype *at = gen_args_type(g, m);
        sb_printf(o, "    %s args;\n    rc = %s__%s_json_read(&r, r.root, &args);\n", at->ctype,
                  g->p, at->tag);
    } else {
        sb_puts(o, "    size_t n;\n    rc = shmrpc_json_read_object(&r, r.root, &n);\n"
                   "    if (rc == 0 && n != 0) {\n        r.why = \"expected no arguments\";\n"
                   "        rc = SHMRPC_EINVAL;\n    }\n");
    }
    sb_printf(
        o,
        "    shmrpc_json_release(&r);\n    if (rc != 0)\n"
        "        return shmrpc_ctx_decode_error(ctx, \"%s\", \"arguments\", r.field, r.why);\n",
        label);
    call_handler(g, o, m);
    const char *res = m->result->kind == SVC_T_VOID
                          ? "shmrpc_json_null()"
                          : gen_json_write_expr(g, gen_type(g, m->result), "out");
    sb_printf(o,
              "    shmrpc_json *res = %s;\n    if (res == NULL)\n"
              "        return shmrpc_ctx_error(ctx, SHMRPC_EHANDLER, \"%s: the result has no JSON "
              "form\");\n"
              "    return shmrpc_json_dump(res, resp);\n",
              res, label);
}

static void invoke_raw(gen *g, sbuf *o, const svc_method *m)
{
    sb_printf(o,
              "    shmrpc_bytes out = {NULL, 0};\n    int rc = h->%s(ctx, req, &out);\n"
              "    if (rc != 0)\n        return rc;\n"
              "    return shmrpc_buf_append(resp, out.ptr, out.len);\n",
              gen_method_cname(g, m));
}

/* Fills a method's invoke_body and, when it has arguments, its args struct. */
void gen_server_invoke(gen *g, const svc_method *m, tmpl_dict *d)
{
    const char *label = S("%.*s.%.*s", g->svc->name.n, g->svc->name.p, m->name.n, m->name.p);
    sbuf o;
    sb_init(&o);
    sb_printf(&o, "    const %s_handlers *h = handlers;\n", g->p);
    if (m->enc == SVC_ENC_RAW)
        invoke_raw(g, &o, m);
    else if (m->enc == SVC_ENC_JSON)
        invoke_json(g, &o, m, label);
    else
        invoke_msgpack(g, &o, m, label);
    tmpl_set(d, "invoke_body", sb_str(&o));
    sb_free(&o);

    bool has_args = m->n_params > 0 && m->enc != SVC_ENC_RAW;
    tmpl_flag(d, "has_args", has_args);
    if (!has_args) return;
    const gtype *at = gen_args_type(g, m);
    sbuf f;
    sb_init(&f);
    for (const svc_field *p = m->params; p; p = p->next)
        sb_printf(&f, "    %s;\n",
                  gen_decl(g, gen_type(g, p->type)->ctype, gen_tokstr(g, p->name)));
    tmpl_set(d, "args_ctype", at->ctype);
    tmpl_set(d, "args_fields", sb_str(&f));
    sb_free(&f);
}

void gen_codec(gen *g, tmpl_dict *d)
{
    gen_clear_needs(g);
    for (const svc_method *m = g->svc->methods; m; m = m->next) {
        if (m->enc == SVC_ENC_RAW) continue;
        unsigned rw = m->enc == SVC_ENC_JSON ? NEED_JSON_READ | NEED_JSON_WRITE
                                             : NEED_MP_READ | NEED_MP_WRITE;
        if (m->n_params) gen_mark(g, gen_args_type(g, m), rw);
        if (m->result->kind != SVC_T_VOID) gen_mark(g, gen_type(g, m->result), rw);
    }
    /* The client writes arguments one by one, so only the server reads them whole. */
    for (gtype *t = g->types; t; t = t->next)
        if (t->is_args) t->need &= ~(unsigned)(NEED_MP_WRITE | NEED_JSON_WRITE);

    sbuf o;
    sb_init(&o);
    gen_codec_prototypes(g, &o, false);
    tmpl_set(d, "codec_prototypes", sb_str(&o));
    sb_free(&o);
    sb_init(&o);
    gen_codec_functions(g, &o, false);
    tmpl_set(d, "codec", sb_str(&o));
    sb_free(&o);
    sb_init(&o);
    gen_codec_prototypes(g, &o, true);
    gen_codec_functions(g, &o, true);
    tmpl_set(d, "args_codec", sb_str(&o));
    sb_free(&o);
}
