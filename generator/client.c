/* The client stubs: encode the arguments, call through the client handle, decode the
 * result. Locals end in '_' so that no parameter name can shadow them. */
#include <stdio.h>

#include "gen.h"

static const char *pname(gen *g, const svc_field *p)
{
    return S("%.*s", p->name.n, p->name.p);
}

/* A parameter as a value: structs arrive by pointer. */
static const char *pvalue(gen *g, const svc_field *p)
{
    return gen_type(g, p->type)->kind == GK_STRUCT ? S("*%s", pname(g, p)) : pname(g, p);
}

static void call(sbuf *o, const char *id)
{
    sb_printf(o,
              "    shmrpc_bytes resp_;\n"
              "    if ((rc_ = shmrpc_client_call(client, %s, &resp_)) != 0)\n"
              "        return rc_;\n",
              id);
}

static void stub_msgpack(gen *g, sbuf *o, const svc_method *m, const char *label, const char *id)
{
    const cx c = {"&pk_", "&r_", "shmrpc_client_arena(client)", "rc_"};
    sb_puts(o, "    shmrpc_buf *req_ = shmrpc_client_request(client);\n"
               "    msgpack_packer pk_;\n"
               "    msgpack_packer_init(&pk_, req_, shmrpc_buf_msgpack_write);\n");
    sb_printf(o, "    msgpack_pack_array(&pk_, %d);\n", m->n_params);
    for (const svc_field *p = m->params; p; p = p->next)
        gen_mp_write(g, o, "    ", &c, gen_type(g, p->type), pvalue(g, p));
    sb_printf(
        o,
        "    int rc_ = req_->err;\n    if (rc_ != 0)\n"
        "        return shmrpc_client_error(client, rc_, \"%s: cannot encode the arguments\");\n",
        label);
    call(o, id);
    sb_puts(o, "    shmrpc_mp_reader r_;\n    shmrpc_mp_reader_init(&r_, resp_.ptr, resp_.len);\n");
    const char *fail =
        S("return shmrpc_client_decode_error(client, \"%s\", r_.field, r_.why);", label);
    if (m->result->kind == SVC_T_VOID)
        sb_printf(o, "    if ((rc_ = shmrpc_mp_read_nil(&r_)) != 0)\n        %s\n", fail);
    else
        gen_mp_read(g, o, "    ", &c, gen_type(g, m->result), "*out", fail);
    sb_printf(o, "    if ((rc_ = shmrpc_mp_finish(&r_)) != 0)\n        %s\n    return 0;\n", fail);
}

static void stub_json(gen *g, sbuf *o, const svc_method *m, const char *label, const char *id)
{
    const cx c = {"", "&r_", "", "rc_"};
    sb_printf(o,
              "    shmrpc_buf *req_ = shmrpc_client_request(client);\n"
              "    shmrpc_json *args_ = shmrpc_json_object();\n"
              "    if (args_ == NULL)\n"
              "        return shmrpc_client_error(client, SHMRPC_ENOMEM, \"%s: out of memory\");\n",
              label);
    for (const svc_field *p = m->params; p; p = p->next)
        sb_printf(o,
                  "    if (shmrpc_json_set(args_, \"%s\", %s) != 0) {\n"
                  "        shmrpc_json_free(args_);\n"
                  "        return shmrpc_client_error(client, SHMRPC_EINVAL,\n"
                  "                                   \"%s: argument '%s' has no JSON form\");\n"
                  "    }\n",
                  pname(g, p), gen_json_write_expr(g, gen_type(g, p->type), pvalue(g, p)), label,
                  pname(g, p));
    sb_printf(
        o,
        "    int rc_ = shmrpc_json_dump(args_, req_);\n    if (rc_ != 0)\n"
        "        return shmrpc_client_error(client, rc_, \"%s: cannot encode the arguments\");\n",
        label);
    call(o, id);
    sb_printf(o,
              "    shmrpc_json_reader r_;\n"
              "    if ((rc_ = shmrpc_json_parse(&r_, shmrpc_client_arena(client), resp_.ptr, "
              "resp_.len)) != 0)\n"
              "        return shmrpc_client_error(client, rc_, \"%s: result: malformed JSON: "
              "%%s\", r_.detail);\n",
              label);
    if (m->result->kind == SVC_T_VOID)
        sb_puts(o, "    if (!shmrpc_json_is_null(r_.root)) {\n        r_.why = \"expected null\";\n"
                   "        goto fail;\n    }\n");
    else
        gen_json_read(g, o, "    ", &c, gen_type(g, m->result), "r_.root", "*out", "goto fail;");
    sb_printf(o,
              "    shmrpc_json_release(&r_);\n    return 0;\nfail:\n    shmrpc_json_release(&r_);\n"
              "    return shmrpc_client_decode_error(client, \"%s\", r_.field, r_.why);\n",
              label);
}

static void stub_raw(gen *g, sbuf *o, const svc_method *m, const char *label, const char *id)
{
    sb_printf(
        o,
        "    shmrpc_buf *req_ = shmrpc_client_request(client);\n"
        "    int rc_ = shmrpc_buf_append(req_, %s.ptr, %s.len);\n"
        "    if (rc_ != 0)\n"
        "        return shmrpc_client_error(client, rc_, \"%s: cannot encode the arguments\");\n"
        "    return shmrpc_client_call(client, %s, out);\n",
        pname(g, m->params), pname(g, m->params), label, id);
}

/* Fills each method's stub_body; d is the method's item in the "methods" list. */
void gen_client_stub(gen *g, const svc_method *m, tmpl_dict *d)
{
    const char *label = S("%.*s.%.*s", g->svc->name.n, g->svc->name.p, m->name.n, m->name.p);
    const char *id = S("%s_METHOD_%s", g->P, svc_upper(g->a, gen_method_cname(g, m)));
    sbuf o;
    sb_init(&o);
    if (m->enc == SVC_ENC_RAW)
        stub_raw(g, &o, m, label, id);
    else if (m->enc == SVC_ENC_JSON)
        stub_json(g, &o, m, label, id);
    else
        stub_msgpack(g, &o, m, label, id);
    tmpl_set(d, "stub_body", sb_str(&o));
    sb_free(&o);
}
