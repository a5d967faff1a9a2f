/* Typed queues ("queue<Frame> frames;"): in NAME.h the queue's name and type and three
 * functions, in NAME.c their bodies, which encode and decode a value with the same codec
 * glue as the calls (msgpack) around a shmrpc_queue (docs/queue.md, "Typed queues"). */
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
    return t->kind == GK_STRUCT ? gen_ptr_decl(g, t->ctype, "value_", true)
                                : gen_decl(g, t->ctype, "value_");
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
    case 3:
        return S("int %s(shmrpc_queue *q_, shmrpc_buf *buf_, %s, size_t n_, size_t *done_, "
                 "int64_t timeout_ms_)",
                 fn(g, q, "push_batch"), gen_ptr_decl(g, t->ctype, "values_", true));
    default:
        return S("int %s(shmrpc_queue *q_, shmrpc_buf *buf_, shmrpc_arena *arena_, %s, "
                 "int64_t timeout_ms_)",
                 fn(g, q, "pop"), gen_ptr_decl(g, t->ctype, "out_", false));
    }
}

void gen_queue_decls(gen *g, emitter *e)
{
    if (!g->svc->queues) return;
    em_blank(e);
    em(e, "/* Queues: each a shared-memory queue (shmrpc/queue.h) named after the service, whose");
    em(e,
       " * messages are values of its type, encoded as msgpack. open opens or creates it (opts_");
    em(e, " * may be NULL) and refuses a queue of another type; push encodes into buf_ and waits");
    em(e, " * up to timeout_ms_ for room; pop takes a message into buf_ and decodes it, what it");
    em(e, " * points to living in buf_ and arena_ until they are reused. push_batch pushes n_");
    em(e, " * values in runs of up to 64, waking consumers once a run, each run waiting up to");
    em(e, " * timeout_ms_; *done_ (may be NULL) says how many were queued. */");
    for (const svc_method *q = g->svc->queues; q; q = q->next) {
        em_blank(e);
        gen_doc(g, e, q->doc);
        em(e, "#define %s %s", name_macro(g, q),
           gen_cstr(g, S("%s.%.*s", g->svc->svc_name, q->name.n, q->name.p)));
        em(e, "extern const char %s[];", fn(g, q, "type"));
        for (int i = 0; i < 4; i++)
            em(e, "%s;", protos(g, q, i));
    }
}

static void type_def(gen *g, emitter *e, const svc_method *q)
{
    const char *sig = gen_must(svc_signature(g->a, q, SVC_MAX_SIGNATURE, NULL));
    gen_string_def(g, e, S("const char %s[]", fn(g, q, "type")), sig);
}

void gen_queue_functions(gen *g, emitter *e)
{
    for (const svc_method *q = g->svc->queues; q; q = q->next) {
        gtype *t = gen_type(g, q->result);
        const char *label = S("%s.%.*s", g->name, q->name.n, q->name.p);
        em_blank(e);
        type_def(g, e, q);

        em_blank(e);
        em(e, "%s", protos(g, q, 0));
        em_open(e, "{");
        em(e, "shmrpc_queue_opts o_;");
        em(e, "if (opts_ != NULL)");
        e->depth++;
        em(e, "o_ = *opts_;");
        e->depth--;
        em_open(e, "else");
        em_last(e, "shmrpc_queue_opts_init(&o_);");
        em(e, "o_.type = %s;", fn(g, q, "type"));
        em(e, "return shmrpc_queue_open(q_, %s, &o_);", name_macro(g, q));
        em_close(e, "}");

        em_blank(e);
        em(e, "%s", protos(g, q, 1));
        em_open(e, "{");
        const cx c = {"&pk_", "&r_", "arena_", "rc_"};
        em(e, "shmrpc_buf_clear(buf_);");
        em(e, "msgpack_packer pk_;");
        em(e, "msgpack_packer_init(&pk_, buf_, shmrpc_buf_msgpack_write);");
        gen_mp_write(g, e, &c, t, t->kind == GK_STRUCT ? "*value_" : "value_");
        em(e, "int rc_ = buf_->err;");
        em_open(e, "if (rc_ != 0)");
        em_last(e, "return shmrpc_client_error(NULL, rc_, \"%s: cannot encode the value\");",
                label);
        em(e, "return shmrpc_queue_push(q_, buf_->data, buf_->len, timeout_ms_);");
        em_close(e, "}");

        em_blank(e);
        em(e, "%s", protos(g, q, 3));
        em_open(e, "{");
        em(e, "shmrpc_queue_msg msgs_[64];");
        em(e, "size_t ends_[64], sent_ = 0;");
        em(e, "int rc_ = 0;");
        em_open(e, "while (rc_ == 0 && sent_ < n_) {");
        em(e, "size_t run_ = n_ - sent_ < 64 ? n_ - sent_ : 64, pushed_ = 0;");
        em(e, "shmrpc_buf_clear(buf_);");
        em(e, "msgpack_packer pk_;");
        em(e, "msgpack_packer_init(&pk_, buf_, shmrpc_buf_msgpack_write);");
        em_open(e, "for (size_t i_ = 0; i_ < run_; i_++) {");
        gen_mp_write(g, e, &c, t, "values_[sent_ + i_]");
        em(e, "ends_[i_] = buf_->len;");
        em_close(e, "}");
        em_open(e, "if ((rc_ = buf_->err) != 0) {");
        em(e, "rc_ = shmrpc_client_error(NULL, rc_, \"%s: cannot encode the values\");", label);
        em(e, "break;");
        em_close(e, "}");
        em_open(e, "for (size_t i_ = 0; i_ < run_; i_++) {");
        em(e, "size_t start_ = i_ ? ends_[i_ - 1] : 0;");
        em(e, "msgs_[i_].data = buf_->data + start_;");
        em(e, "msgs_[i_].cap = msgs_[i_].len = ends_[i_] - start_;");
        em_close(e, "}");
        em(e, "rc_ = shmrpc_queue_push_batch(q_, msgs_, run_, &pushed_, timeout_ms_);");
        em(e, "sent_ += pushed_;");
        em_close(e, "}");
        em_open(e, "if (done_ != NULL)");
        em_last(e, "*done_ = sent_;");
        em(e, "return rc_;");
        em_close(e, "}");

        em_blank(e);
        em(e, "%s", protos(g, q, 2));
        em_open(e, "{");
        em(e, "shmrpc_queue_span s_;");
        em(e, "int rc_ = shmrpc_queue_peek(q_, &s_, timeout_ms_);");
        em_open(e, "if (rc_ != 0)");
        em_last(e, "return rc_;");
        em(e, "shmrpc_buf_clear(buf_);");
        em(e, "rc_ = shmrpc_buf_append(buf_, s_.data, s_.len);");
        em(e, "shmrpc_queue_release(q_, &s_);");
        em_open(e, "if (rc_ != 0)");
        em_last(e, "return shmrpc_client_error(NULL, rc_, \"%s: no room for a message\");", label);
        em(e, "shmrpc_mp_reader r_;");
        em(e, "shmrpc_mp_reader_init(&r_, buf_->data, buf_->len);");
        if (t->kind == GK_SCALAR || t->kind == GK_ENUM)
            em(e, "(void)arena_; /* nothing to allocate */");
        const char *fail =
            S("return shmrpc_client_decode_error(NULL, \"%s\", r_.field, r_.why);", label);
        gen_mp_read(g, e, &c, t, "*out_", fail);
        em_open(e, "if ((rc_ = shmrpc_mp_finish(&r_)) != 0)");
        em_last(e, "%s", fail);
        em(e, "return 0;");
        em_close(e, "}");
    }
}
