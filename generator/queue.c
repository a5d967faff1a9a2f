/* SPDX-License-Identifier: MIT */
/* Typed queues ("queue<Frame> frames;"): in NAME.h the queue's name and type and its
 * functions, in NAME.c their bodies, which encode and decode a value in the queue's
 * encoding with the same codec glue as the calls (msgpack or JSON; @raw: the bytes as they
 * are) around a shmrpc_queue (docs/queue.md, "Typed queues"). */
#include <stdio.h>
#include <string.h>

#include "gen.h"

static const char *qname(gen *g, const svc_method *q)
{
    return gen_method_cname(g, q); /* snake case, as a method's */
}

/* "ECHO_QUEUE_FRAMES": the queue's shared-memory name. */
static const char *name_macro(gen *g, const svc_method *q)
{
    return S("%s_QUEUE_%s", g->P, (const char *)gen_must(svc_upper(g->a, qname(g, q))));
}

static const char *value_decl(gen *g, const gtype *t)
{
    return gen_value_decl(g, t, "value_");
}

static const char *fn(gen *g, const svc_method *q, const char *what)
{
    return S("%s_%s_%s", g->own, qname(g, q), what);
}

static const char *protos(gen *g, const svc_method *q, int which)
{
    gtype *t = gen_type(g, q->result);
    switch (which) {
    case 0:
        return S("int %s(shmrpc_queue **q_, const shmrpc_queue_opts *opts_)", fn(g, q, "open"));
    case 1:
        return S("int %s(shmrpc_queue *q_, shmrpc_buf *buf_, %s, int64_t timeout_ms_)",
                 fn(g, q, "push"), value_decl(g, t));
    case 2:
        return S("int %s(shmrpc_queue *q_, shmrpc_buf *buf_, %s, size_t n_, size_t *done_, "
                 "int64_t timeout_ms_)",
                 fn(g, q, "push_batch"), gen_ptr_decl(g, t->ctype, "values_", true));
    case 3:
        return S("int %s(shmrpc_queue *q_, shmrpc_buf *buf_, shmrpc_arena *arena_, %s, "
                 "int64_t timeout_ms_)",
                 fn(g, q, "pop"), gen_ptr_decl(g, t->ctype, "out_", false));
    default:
        return S("int %s(shmrpc_queue *q_, shmrpc_buf *buf_, shmrpc_arena *arena_, %s, size_t n_, "
                 "size_t *done_, int64_t timeout_ms_)",
                 fn(g, q, "pop_batch"), gen_ptr_decl(g, t->ctype, "outs_", false));
    }
}

void gen_queue_decls(gen *g, emitter *e)
{
    if (!g->svc->queues) return;
    em_blank(e);
    em(e, "/* Queues: each a shared-memory queue (shmrpc/queue.h) named after the service, whose");
    em(e,
       " * messages are values of its type in its encoding (msgpack, JSON text, or for @raw the");
    em(e,
       " * bytes as they are). open opens or creates it (opts_ may be NULL) and refuses a queue");
    em(e, " * of another type or encoding; push encodes into buf_ and waits up to timeout_ms_ for");
    em(e,
       " * room; pop takes a message into buf_ and decodes it, what it points to living in buf_");
    em(e, " * and arena_ until they are reused. push_batch pushes n_ values in runs of up to 64,");
    em(e,
       " * waking consumers once a run, each run waiting up to timeout_ms_; *done_ (may be NULL)");
    em(e,
       " * says how many were queued. pop_batch waits up to timeout_ms_ for a first message and");
    em(e,
       " * takes up to n_ (at most 64) of those queued in one go into buf_; *done_ says how many");
    em(e, " * decoded into outs_. A message that does not decode is dropped and its status");
    em(e, " * returned, the others still delivered. */");
    for (const svc_method *q = g->svc->queues; q; q = q->next) {
        gen_shared_head(g, e, q, name_macro(g, q), fn(g, q, "type"));
        for (int i = 0; i < 5; i++)
            em(e, "%s;", protos(g, q, i));
    }
}

static void type_def(gen *g, emitter *e, const svc_method *q)
{
    const char *sig = gen_must(svc_signature(g->a, q, SVC_MAX_SIGNATURE, NULL));
    gen_string_def(g, e, S("const char %s[]", fn(g, q, "type")), sig);
}

static const cx codec_cx = {"&pk_", "&r_", "arena_", "rc_"};

static void open_body(gen *g, emitter *e, const svc_method *q, gtype *t, const char *label)
{
    (void)t, (void)label;
    em(e, "shmrpc_queue_opts o_;");
    em(e, "if (opts_ != NULL)");
    e->depth++;
    em(e, "o_ = *opts_;");
    e->depth--;
    em_open(e, "else");
    em_last(e, "shmrpc_queue_opts_init(&o_);");
    em(e, "o_.type = %s;", fn(g, q, "type"));
    em(e, "return shmrpc_queue_open(q_, %s, &o_);", name_macro(g, q));
}

/* Appends the encoding of v, an lvalue, to buf_ (JSON: setting rc_ when it fails). */
static void encode(gen *g, emitter *e, const svc_method *q, gtype *t, const char *v)
{
    if (q->enc == SVC_ENC_JSON) {
        em_open(e, "if ((rc_ = shmrpc_json_dump(%s, buf_)) != 0)", gen_json_write_expr(g, t, v));
        em_last(e, "break;");
    } else {
        gen_mp_write(g, e, &codec_cx, t, v);
    }
}

static void push_body(gen *g, emitter *e, const svc_method *q, gtype *t, const char *label)
{
    if (q->enc == SVC_ENC_RAW) {
        em(e, "(void)buf_; /* the bytes are the message */");
        em(e, "return shmrpc_queue_push(q_, value_.ptr, value_.len, timeout_ms_);");
        return;
    }
    em(e, "shmrpc_buf_clear(buf_);");
    if (q->enc == SVC_ENC_JSON) {
        em(e, "int rc_ = shmrpc_json_dump(%s, buf_);",
           gen_json_write_expr(g, t, t->kind == GK_STRUCT ? "*value_" : "value_"));
    } else {
        em(e, "msgpack_packer pk_;");
        em(e, "msgpack_packer_init(&pk_, buf_, shmrpc_buf_msgpack_write);");
        gen_mp_write(g, e, &codec_cx, t, t->kind == GK_STRUCT ? "*value_" : "value_");
        em(e, "int rc_ = buf_->err;");
    }
    em_open(e, "if (rc_ != 0)");
    em_last(e, "return shmrpc_client_error(NULL, rc_, \"%s: cannot encode the value\");", label);
    em(e, "return shmrpc_queue_push(q_, buf_->data, buf_->len, timeout_ms_);");
}

static void push_batch_body(gen *g, emitter *e, const svc_method *q, gtype *t, const char *label)
{
    bool raw = q->enc == SVC_ENC_RAW;
    if (raw) em(e, "(void)buf_; /* the bytes are the messages */");
    em(e, "shmrpc_queue_msg msgs_[64];");
    em(e, raw ? "size_t sent_ = 0;" : "size_t ends_[64], sent_ = 0;");
    em(e, "int rc_ = 0;");
    em_open(e, "while (rc_ == 0 && sent_ < n_) {");
    em(e, "size_t run_ = n_ - sent_ < 64 ? n_ - sent_ : 64, pushed_ = 0;");
    if (raw) {
        em_open(e, "for (size_t i_ = 0; i_ < run_; i_++) {");
        em(e, "msgs_[i_].data = (void *)(uintptr_t)values_[sent_ + i_].ptr; /* only read */");
        em(e, "msgs_[i_].cap = msgs_[i_].len = values_[sent_ + i_].len;");
        em_close(e, "}");
    } else {
        em(e, "shmrpc_buf_clear(buf_);");
        if (q->enc != SVC_ENC_JSON) {
            em(e, "msgpack_packer pk_;");
            em(e, "msgpack_packer_init(&pk_, buf_, shmrpc_buf_msgpack_write);");
        }
        em_open(e, "for (size_t i_ = 0; i_ < run_; i_++) {");
        encode(g, e, q, t, "values_[sent_ + i_]");
        em(e, "ends_[i_] = buf_->len;");
        em_close(e, "}");
        em_open(e, q->enc == SVC_ENC_JSON ? "if (rc_ != 0 || (rc_ = buf_->err) != 0) {"
                                          : "if ((rc_ = buf_->err) != 0) {");
        em(e, "rc_ = shmrpc_client_error(NULL, rc_, \"%s: cannot encode the values\");", label);
        em(e, "break;");
        em_close(e, "}");
        em_open(e, "for (size_t i_ = 0; i_ < run_; i_++) {");
        em(e, "size_t start_ = i_ ? ends_[i_ - 1] : 0;");
        em(e, "msgs_[i_].data = buf_->data + start_;");
        em(e, "msgs_[i_].cap = msgs_[i_].len = ends_[i_] - start_;");
        em_close(e, "}");
    }
    em(e, "rc_ = shmrpc_queue_push_batch(q_, msgs_, run_, &pushed_, timeout_ms_);");
    em(e, "sent_ += pushed_;");
    em_close(e, "}");
    em_open(e, "if (done_ != NULL)");
    em_last(e, "*done_ = sent_;");
    em(e, "return rc_;");
}

/* Decodes the message of len bytes at data into out. In a batch, a failure goes to bad_,
 * which sets status_ and goes on with the next message; otherwise it is returned. */
static void decode(gen *g, emitter *e, const svc_method *q, gtype *t, const char *data,
                   const char *len, const char *out, const char *label, bool batch)
{
    const char *why = S("shmrpc_client_decode_error(NULL, \"%s\", r_.field, r_.why)", label);
    if (q->enc == SVC_ENC_JSON) {
        const char *fail = batch ? "goto bad_;" : "goto fail_;";
        em(e, "shmrpc_json_reader r_;");
        const char *parse = S("(rc_ = shmrpc_json_parse(&r_, arena_, %s, %s)) != 0", data, len);
        const char *bad =
            S("shmrpc_client_error(NULL, rc_, \"%s: malformed JSON: %%s\", r_.detail)", label);
        if (batch) {
            em_open(e, "if (%s) {", parse);
            em(e, "status_ = %s;", bad);
            em(e, "continue;");
            em_close(e, "}");
        } else {
            em_open(e, "if (%s)", parse);
            em_last(e, "return %s;", bad);
        }
        gen_json_read(g, e, &(cx){"", "&r_", "", "rc_"}, t, "r_.root", out, fail);
        em(e, "shmrpc_json_release(&r_);");
        em(e, batch ? "ok_++;" : "return 0;");
        if (batch) em(e, "continue;");
        e->depth--;
        em(e, batch ? "bad_:" : "fail_:");
        e->depth++;
        em(e, "shmrpc_json_release(&r_);");
        em(e, batch ? "status_ = %s;" : "return %s;", why);
        return;
    }
    const char *fail = batch ? "goto bad_;" : S("return %s;", why);
    em(e, "shmrpc_mp_reader r_;");
    em(e, "shmrpc_mp_reader_init(&r_, %s, %s);", data, len);
    gen_mp_read(g, e, &codec_cx, t, out, fail);
    em_open(e, "if ((rc_ = shmrpc_mp_finish(&r_)) != 0)");
    em_last(e, "%s", fail);
    if (!batch) {
        em(e, "return 0;");
        return;
    }
    em(e, "ok_++;");
    em(e, "continue;");
    e->depth--;
    em(e, "bad_:");
    e->depth++;
    em(e, "status_ = %s;", why);
}

static bool uses_arena(const svc_method *q, const gtype *t)
{
    return q->enc == SVC_ENC_JSON ||
           (q->enc == SVC_ENC_MSGPACK && t->kind != GK_SCALAR && t->kind != GK_ENUM);
}

static void pop_body(gen *g, emitter *e, const svc_method *q, gtype *t, const char *label)
{
    em(e, "shmrpc_queue_span s_;");
    em(e, "int rc_ = shmrpc_queue_peek(q_, &s_, timeout_ms_);");
    em_open(e, "if (rc_ != 0)");
    em_last(e, "return rc_;");
    em(e, "shmrpc_buf_clear(buf_);");
    em(e, "rc_ = shmrpc_buf_append(buf_, s_.data, s_.len);");
    em(e, "shmrpc_queue_release(q_, &s_);");
    em_open(e, "if (rc_ != 0)");
    em_last(e, "return shmrpc_client_error(NULL, rc_, \"%s: no room for a message\");", label);
    if (!uses_arena(q, t)) em(e, "(void)arena_; /* nothing to allocate */");
    if (q->enc == SVC_ENC_RAW) {
        em(e, "out_->ptr = buf_->data;");
        em(e, "out_->len = buf_->len;");
        em(e, "return 0;");
    } else {
        decode(g, e, q, t, "buf_->data", "buf_->len", "*out_", label, false);
    }
}

/* One shmrpc_queue_pop_batch into buf_: the first message gets room for the longest, the
 * others up to 16 KiB each (a longer one ends the batch and stays queued for the next). */
static void pop_batch_body(gen *g, emitter *e, const svc_method *q, gtype *t, const char *label)
{
    em(e, "shmrpc_queue_msg msgs_[64];");
    em(e, "shmrpc_queue_info info_;");
    em(e, "size_t got_ = 0, run_ = n_ < 64 ? n_ : 64;");
    em_open(e, "if (done_ != NULL)");
    em_last(e, "*done_ = 0;");
    em_open(e, "if (n_ == 0)");
    em_last(e, "return shmrpc_client_error(NULL, SHMRPC_EINVAL, \"%s: n_ is 0\");", label);
    em(e, "int rc_ = shmrpc_queue_get_info(q_, &info_);");
    em_open(e, "if (rc_ != 0)");
    em_last(e, "return rc_;");
    em(e, "size_t small_ = info_.max_msg < 16384 ? info_.max_msg : 16384;");
    em(e, "size_t need_ = info_.max_msg + (run_ - 1) * small_;");
    em(e, "shmrpc_buf_clear(buf_);");
    em_open(e, "if ((rc_ = shmrpc_buf_reserve(buf_, need_)) != 0)");
    em_last(e,
            "return shmrpc_client_error(NULL, rc_, \"%s: no room for %%zu bytes of messages\", "
            "need_);",
            label);
    em_open(e, "for (size_t i_ = 0; i_ < run_; i_++) {");
    em(e, "msgs_[i_].data = buf_->data + (i_ ? info_.max_msg + (i_ - 1) * small_ : 0);");
    em(e, "msgs_[i_].cap = i_ ? small_ : info_.max_msg;");
    em_close(e, "}");
    em(e, "buf_->len = need_;");
    em_open(e, "if ((rc_ = shmrpc_queue_pop_batch(q_, msgs_, run_, &got_, timeout_ms_)) != 0)");
    em_last(e, "return rc_;");
    if (!uses_arena(q, t)) em(e, "(void)arena_; /* nothing to allocate */");
    if (q->enc == SVC_ENC_RAW) {
        em_open(e, "for (size_t i_ = 0; i_ < got_; i_++) {");
        em(e, "outs_[i_].ptr = msgs_[i_].data;");
        em(e, "outs_[i_].len = msgs_[i_].len;");
        em_close(e, "}");
        em_open(e, "if (done_ != NULL)");
        em_last(e, "*done_ = got_;");
        em(e, "return 0;");
        return;
    }
    em(e, "size_t ok_ = 0;");
    em(e, "int status_ = 0;");
    em_open(e, "for (size_t i_ = 0; i_ < got_; i_++) {");
    decode(g, e, q, t, "msgs_[i_].data", "msgs_[i_].len", "outs_[ok_]", label, true);
    em_close(e, "}");
    em_open(e, "if (done_ != NULL)");
    em_last(e, "*done_ = ok_;");
    em(e, "return status_;");
}

/* A function's body, between the "{" and "}" that gen_queue_functions writes. */
typedef void body_fn(gen *g, emitter *e, const svc_method *q, gtype *t, const char *label);

/* The bodies, numbered as protos numbers the prototypes. */
static body_fn *const bodies[] = {open_body, push_body, push_batch_body, pop_body, pop_batch_body};

void gen_queue_functions(gen *g, emitter *e)
{
    for (const svc_method *q = g->svc->queues; q; q = q->next) {
        gtype *t = gen_type(g, q->result);
        const char *label = S("%s.%.*s", g->name, q->name.n, q->name.p);
        em_blank(e);
        type_def(g, e, q);
        for (int i = 0; i < 5; i++) {
            em_blank(e);
            em(e, "%s", protos(g, q, i));
            em_open(e, "{");
            bodies[i](g, e, q, t, label);
            em_close(e, "}");
        }
    }
}
