/* SPDX-License-Identifier: MIT */
/* NAME_client.c: the client stubs, which encode the arguments, call through the client
 * handle and decode the result. The parameters are the user's names; every name a stub
 * declares itself ends in '_', which no .svc name may, so none can shadow another. */
#include <stdbool.h>
#include <stdio.h>

#include "gen.h"

/* A parameter as a value: structs arrive by pointer. */
static const char *pvalue(gen *g, const svc_field *p)
{
    return S("%s%.*s", gen_type(g, p->type)->kind == GK_STRUCT ? "*" : "", p->name.n, p->name.p);
}

/* Which part of a call a stub does: all of it (NAME), encode and start (NAME_start), or
 * wait and decode (NAME_finish). */
enum { PART_ALL, PART_START, PART_FINISH };

/* The call, once the request is written; resp_ holds the response. false when the stub
 * ends here (NAME_start). */
static bool call(emitter *e, const char *id, int part)
{
    if (part == PART_START) {
        em(e, "return shmrpc_client_start(client_, %s, SHMRPC_TIMEOUT_DEFAULT, call_);", id);
        return false;
    }
    em(e, "shmrpc_bytes resp_;");
    if (part == PART_FINISH) {
        em(e, "int rc_;");
        em_open(e, "if ((rc_ = shmrpc_client_finish(client_, call_, &resp_)) != 0)");
    } else {
        em_open(e, "if ((rc_ = shmrpc_client_call(client_, %s, &resp_)) != 0)", id);
    }
    em_last(e, "return rc_;");
    return true;
}

static void encode_failed(emitter *e, const char *label)
{
    em_open(e, "if (rc_ != 0)");
    em_last(e, "return shmrpc_client_error(client_, rc_, \"%s: cannot encode the arguments\");",
            label);
}

/* Writes the arguments into req_ (a @raw method's bytes as they are, else msgpack; a
 * client stream's are none, its items sent apart), and returns from the stub when they
 * did not fit. */
static void encode_args(gen *g, emitter *e, const svc_method *m, const char *label)
{
    if (m->client_stream) {
        em(e, "msgpack_packer pk_;");
        em(e, "msgpack_packer_init(&pk_, req_, shmrpc_buf_msgpack_write);");
        em(e, "msgpack_pack_array(&pk_, 0);");
        em(e, "int rc_ = req_->err;");
    } else if (svc_enc_is_raw(m->enc)) {
        const char *data = gen_tokstr(g, m->params->name);
        em(e, "int rc_ = shmrpc_buf_append(req_, %s.ptr, %s.len);", data, data);
    } else {
        const cx c = {"&pk_", "&r_", "shmrpc_client_arena(client_)", "rc_"};
        em(e, "msgpack_packer pk_;");
        em(e, "msgpack_packer_init(&pk_, req_, shmrpc_buf_msgpack_write);");
        em(e, "msgpack_pack_array(&pk_, %d);", m->n_params);
        for (const svc_field *p = m->params; p; p = p->next)
            gen_mp_write(g, e, &c, gen_type(g, p->type), pvalue(g, p));
        em(e, "int rc_ = req_->err;");
    }
    encode_failed(e, label);
}

/* The type a call's answer decodes as: its result's, or NULL for void (a nil). */
static const gtype *result_type(gen *g, const svc_method *m)
{
    return m->result->kind == SVC_T_VOID ? NULL : gen_type(g, m->result);
}

/* What a stream's stub returns when an item or its answer does not decode. */
static const char *stream_fail(gen *g, const char *label)
{
    return S("return shmrpc_stream_decode_error(stream_, \"%s\", r_.field, r_.why);", label);
}

static void stub_msgpack(gen *g, emitter *e, const svc_method *m, const char *label, int part)
{
    const cx c = {"&pk_", "&r_", "shmrpc_client_arena(client_)", "rc_"};
    if (part != PART_FINISH) encode_args(g, e, m, label);
    if (!call(e, gen_method_id(g, m), part)) return;
    gen_mp_decode(g, e, &c, "resp_", result_type(g, m), "*out_",
                  S("return shmrpc_client_decode_error(client_, \"%s\", r_.field, r_.why);", label),
                  "0");
}

static void stub_json(gen *g, emitter *e, const svc_method *m, const char *label, int part)
{
    const cx c = {"", "&r_", "", "rc_"};
    if (part == PART_FINISH) goto finish;
    em(e, "shmrpc_json *args_ = shmrpc_json_object();");
    em_open(e, "if (args_ == NULL)");
    em_last(e, "return shmrpc_client_error(client_, SHMRPC_ENOMEM, \"%s: out of memory\");", label);
    for (const svc_field *p = m->params; p; p = p->next) {
        em_open(e, "if (shmrpc_json_set(args_, \"%.*s\", %s) != 0) {", p->name.n, p->name.p,
                gen_json_write_expr(g, gen_type(g, p->type), pvalue(g, p)));
        em(e, "shmrpc_json_free(args_);");
        em(e,
           "return shmrpc_client_error(client_, SHMRPC_EINVAL, \"%s: argument '%.*s' has no "
           "JSON form\");",
           label, p->name.n, p->name.p);
        em_close(e, "}");
    }
    em(e, "int rc_ = shmrpc_json_dump(args_, req_);");
    encode_failed(e, label);
finish:
    if (!call(e, gen_method_id(g, m), part)) return;
    em(e, "shmrpc_json_reader r_;");
    em_open(e, "if ((rc_ = shmrpc_json_parse(&r_, shmrpc_client_arena(client_), resp_.ptr, "
               "resp_.len)) != 0)");
    em_last(e,
            "return shmrpc_client_error(client_, rc_, \"%s: result: malformed JSON: %%s\", "
            "r_.detail);",
            label);
    if (m->result->kind == SVC_T_VOID) {
        em_open(e, "if (!shmrpc_json_is_null(r_.root)) {");
        em(e, "r_.why = \"expected null\";");
        em(e, "goto fail;");
        em_close(e, "}");
    } else {
        gen_json_read(g, e, &c, gen_type(g, m->result), "r_.root", "*out_", "goto fail;");
    }
    em(e, "shmrpc_json_release(&r_);");
    em(e, "return 0;");
    e->depth--;
    em(e, "fail:");
    e->depth++;
    em(e, "shmrpc_json_release(&r_);");
    em(e, "return shmrpc_client_decode_error(client_, \"%s\", r_.field, r_.why);", label);
}

static void stub_raw(gen *g, emitter *e, const svc_method *m, const char *label, int part)
{
    if (part == PART_FINISH) {
        em(e, "return shmrpc_client_finish(client_, call_, out_);");
        return;
    }
    if (part == PART_ALL) { /* sent from the caller's bytes: the transport copies them once */
        em(e, "return shmrpc_client_call_raw(client_, %s, %s, out_);", gen_method_id(g, m),
           gen_tokstr(g, m->params->name));
        return;
    }
    encode_args(g, e, m, label);
    em(e, "return shmrpc_client_start(client_, %s, SHMRPC_TIMEOUT_DEFAULT, call_);",
       gen_method_id(g, m));
}

/* A client stream's NAME_send, which encodes an item as an argument is and sends it, and
 * NAME_done, which ends the items and, when the result is no stream, decodes it. */
static void stub_send(gen *g, emitter *e, const svc_method *m, const char *label)
{
    const char *name = gen_method_cname(g, m);
    const gtype *t = gen_type(g, gen_item_in(m));
    em_blank(e);
    em(e, "int %s_%s_send(shmrpc_stream *stream_, %s)", g->p, name, gen_value_decl(g, t, "item_"));
    em_open(e, "{");
    if (svc_enc_is_raw(m->enc)) {
        em(e, "return shmrpc_stream_send(stream_, item_.ptr, item_.len);");
    } else {
        const cx c = {"&pk_", "", "", "rc_"};
        em(e, "shmrpc_buf *b_ = shmrpc_stream_item(stream_);");
        em_open(e, "if (b_ == NULL)");
        em_last(e, "return shmrpc_stream_send(stream_, NULL, 0); /* says why */");
        em(e, "msgpack_packer pk_;");
        em(e, "msgpack_packer_init(&pk_, b_, shmrpc_buf_msgpack_write);");
        gen_mp_write(g, e, &c, t, t->kind == GK_STRUCT ? "*item_" : "item_");
        em_open(e, "if (b_->err != 0)");
        em_last(e,
                "return shmrpc_client_error(NULL, b_->err, \"%s: an item: %%s\", "
                "shmrpc_strerror(b_->err));",
                label);
        em(e, "return shmrpc_stream_send(stream_, b_->data, b_->len);");
    }
    em_close(e, "}");
    em_blank(e);
    em(e, "int %s_%s_done(shmrpc_stream *stream_%s)", g->p, name, gen_out_decl(g, m));
    em_open(e, "{");
    if (m->server_stream) {
        em(e, "return shmrpc_stream_done(stream_);");
    } else if (svc_enc_is_raw(m->enc)) {
        em(e, "return shmrpc_stream_answer(stream_, out_);");
    } else {
        const cx c = {"", "&r_", "shmrpc_stream_arena(stream_)", "rc_"};
        em(e, "shmrpc_bytes b_;");
        em(e, "int rc_ = shmrpc_stream_answer(stream_, &b_);");
        em_open(e, "if (rc_ != 0)");
        em_last(e, "return rc_;");
        gen_mp_decode(g, e, &c, "b_", result_type(g, m), "*out_", stream_fail(g, label), "0");
    }
    em_close(e, "}");
}

/* A stream's NAME_open, which encodes the arguments as a call's and opens the stream; then
 * a client stream's NAME_send and NAME_done, and NAME_recv, which decodes each item of a
 * result that streams as a result. */
static void stub_stream(gen *g, emitter *e, const svc_method *m, const char *label)
{
    const char *name = gen_method_cname(g, m);
    em_blank(e);
    em(e, "int %s_%s_open(shmrpc_client *client_%s, shmrpc_stream **stream_)", g->p, name,
       gen_params_decl(g, m));
    em_open(e, "{");
    if (m->client_stream && svc_enc_is_raw(m->enc)) {
        em(e, "shmrpc_client_request(client_); /* cleared: no bytes */");
    } else {
        em(e, "shmrpc_buf *req_ = shmrpc_client_request(client_);");
        encode_args(g, e, m, label);
    }
    em(e, "return shmrpc_client_open(client_, %s, stream_);", gen_method_id(g, m));
    em_close(e, "}");
    if (m->client_stream) stub_send(g, e, m, label);
    if (!m->server_stream) return;
    const gtype *t = gen_type(g, gen_answer(m));
    gen_item_reader(g, e,
                    S("int %s_%s_recv(shmrpc_stream *stream_, %s)", g->p, name,
                      gen_ptr_decl(g, t->ctype, "item_", false)),
                    "shmrpc_stream_recv(stream_", m, t, "shmrpc_stream_arena(stream_)",
                    stream_fail(g, label));
}

void gen_client(gen *g, emitter *e)
{
    gen_banner(g, e, "_client.c",
               "Client stubs of %s: encode the arguments, call, decode the result.");
    em(e, "#include \"%s.h\"", g->stem);
    for (const svc_method *m = g->svc->methods; m; m = m->next) {
        const char *label = S("%s.%.*s", g->name, m->name.n, m->name.p);
        if (m->server_stream || m->client_stream) {
            stub_stream(g, e, m, label);
            continue;
        }
        for (int part = PART_ALL; part <= PART_FINISH; part++) {
            em_blank(e);
            if (part == PART_ALL)
                em(e, "int %s_%s(shmrpc_client *client_%s%s)", g->p, gen_method_cname(g, m),
                   gen_params_decl(g, m), gen_out_decl(g, m));
            else if (part == PART_START)
                em(e, "int %s_%s_start(shmrpc_client *client_%s, shmrpc_call **call_)", g->p,
                   gen_method_cname(g, m), gen_params_decl(g, m));
            else
                em(e, "int %s_%s_finish(shmrpc_client *client_, shmrpc_call *call_%s)", g->p,
                   gen_method_cname(g, m), gen_out_decl(g, m));
            em_open(e, "{");
            /* The request, which each stub but NAME_finish writes its arguments into (a @raw
             * call sends its bytes from where the caller has them). */
            if (part == PART_START || (part == PART_ALL && !svc_enc_is_raw(m->enc)))
                em(e, "shmrpc_buf *req_ = shmrpc_client_request(client_);");
            if (svc_enc_is_raw(m->enc))
                stub_raw(g, e, m, label, part);
            else if (m->enc == SVC_ENC_JSON)
                stub_json(g, e, m, label, part);
            else
                stub_msgpack(g, e, m, label, part);
            em_close(e, "}");
        }
    }
}
