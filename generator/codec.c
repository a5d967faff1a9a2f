/* SPDX-License-Identifier: MIT */
/* Codec glue: for each type the methods need, functions that write and read it as
 * msgpack or JSON, and the snippets that stubs and invokers inline for scalars. */
#include <stdio.h>
#include <string.h>

#include "gen.h"

const char *gen_codec_fn(gen *g, const gtype *t, const char *op)
{
    return S("%s_%s_%s", g->own, t->tag, op);
}

/* The address of the lvalue v: "&v->x", or "out_" for "*out_". */
static const char *addr(gen *g, const char *v)
{
    return v[0] == '*' ? v + 1 : S("&%s", v);
}

/* The field named in decode errors: "Point.x", or a parameter's own name. */
static const char *field_label(gen *g, const gtype *t, const svc_field *f)
{
    if (t->is_args) return S("%.*s", f->name.n, f->name.p);
    return S("%s.%.*s", t->display, f->name.n, f->name.p);
}

static void mark(gen *g, gtype *t, unsigned need)
{
    if (t->kind == GK_SCALAR || (t->need & need) == need) return;
    t->need |= need;
    if (t->kind == GK_ENUM && (need & NEED_JSON_WRITE)) t->need |= NEED_ENUM_NAME;
    if (t->kind == GK_ENUM && (need & NEED_JSON_READ)) t->need |= NEED_ENUM_FROM_NAME;
    unsigned data = need & (NEED_MP_WRITE | NEED_MP_READ | NEED_JSON_WRITE | NEED_JSON_READ);
    if (t->elem) mark(g, t->elem, data);
    if (t->key) {
        /* JSON keys are strings: an enum key needs only its names. */
        unsigned k = data & (NEED_MP_WRITE | NEED_MP_READ);
        if (data & NEED_JSON_WRITE) k |= t->key->kind == GK_ENUM ? NEED_ENUM_NAME : 0;
        if (data & NEED_JSON_READ) k |= t->key->kind == GK_ENUM ? NEED_ENUM_FROM_NAME : 0;
        if (k) mark(g, t->key, k);
    }
    if (t->kind == GK_STRUCT)
        for (const svc_field *f = t->fields; f; f = f->next)
            mark(g, gen_type(g, f->type), data);
}

void gen_mark_needs(gen *g)
{
    for (gtype *t = g->types; t; t = t->next)
        t->need = 0;
    for (const svc_method *m = g->svc->methods; m; m = m->next) {
        if (svc_enc_is_raw(m->enc)) continue;
        unsigned rw = m->enc == SVC_ENC_JSON ? NEED_JSON_READ | NEED_JSON_WRITE
                                             : NEED_MP_READ | NEED_MP_WRITE;
        if (m->client_stream)
            mark(g, gen_type(g, gen_item_in(m)), rw);
        else if (m->n_params)
            mark(g, gen_args_type(g, m), rw);
        if (gen_answer(m)->kind != SVC_T_VOID) mark(g, gen_type(g, gen_answer(m)), rw);
    }
    for (const svc_method *q = g->svc->queues; q; q = q->next)
        if (q->enc != SVC_ENC_RAW)
            mark(g, gen_type(g, q->result),
                 q->enc == SVC_ENC_JSON ? NEED_JSON_READ | NEED_JSON_WRITE
                                        : NEED_MP_READ | NEED_MP_WRITE);
    for (const svc_method *m = g->svc->maps; m; m = m->next) {
        mark(g, gen_type(g, m->params->type), NEED_MP_READ | NEED_MP_WRITE);
        mark(g, gen_type(g, m->result), NEED_MP_READ | NEED_MP_WRITE);
    }
    /* The client writes arguments one by one, so only the server reads them whole. */
    for (gtype *t = g->types; t; t = t->next)
        if (t->is_args) t->need &= ~(unsigned)(NEED_MP_WRITE | NEED_JSON_WRITE);
}

/* How many of t's members a peer must send: those up to the last one not optional. The
 * optional ones after it may be missing (an older peer's: they read as none), and members
 * past t's own may follow (a newer peer's: skipped), by the rules of compatible evolution
 * (docs/svc-language.md). */
static int required_members(gen *g, const gtype *t)
{
    int i = 0, req = 0;
    for (const svc_field *f = t->fields; f; f = f->next)
        if (++i && gen_type(g, f->type)->kind != GK_OPT) req = i;
    return req;
}

/* Sums that cannot reach this stay exact; beyond it, any bound is as good. */
#define MIN_SIZE_CAP UINT32_MAX

/* The fewest bytes a msgpack value of t takes as the generated decoders read it: what a
 * list's or map's count is checked against before anything is allocated for it. */
static size_t mp_min_size(gen *g, gtype *t)
{
    switch (t->kind) {
    case GK_SCALAR:
        return t->scalar == SVC_T_BYTES ? 2 : 1; /* bin8 of length 0; the rest fit in one */
    case GK_ENUM:
    case GK_LIST:
    case GK_MAP:
    case GK_OPT:
        return 1; /* a fixint, an empty fixarray or fixmap, nil */
    case GK_STRUCT:
        break;
    }
    if (t->min_state == 2) return t->mp_min;
    if (t->min_state == 1) return 1; /* a cycle, which the checks refuse: stay safe anyway */
    t->min_state = 1;
    size_t sum = 1; /* the array header */
    /* Only the members a peer must send: an older peer leaves the optional ones at the end
     * out, and a count checked against more would refuse its lists. */
    int req = required_members(g, t), i = 0;
    for (const svc_field *f = t->fields; f && i < req; f = f->next, i++) {
        size_t m = mp_min_size(g, gen_type(g, f->type));
        sum = m > MIN_SIZE_CAP - sum ? MIN_SIZE_CAP : sum + m;
    }
    t->mp_min = sum;
    t->min_state = 2;
    return sum;
}

/* --- snippets --- */

void gen_mp_write(gen *g, emitter *e, const cx *c, const gtype *t, const char *v)
{
    if (t->kind != GK_SCALAR) {
        em(e, "%s(%s, %s);", gen_codec_fn(g, t, "mp_write"), c->pk, addr(g, v));
        return;
    }
    switch (t->scalar) {
    case SVC_T_BOOL:
        em(e, "if (%s)", v); /* not em_open: an if with an else keeps two lines */
        e->depth++;
        em(e, "msgpack_pack_true(%s);", c->pk);
        e->depth--;
        em_open(e, "else");
        em_last(e, "msgpack_pack_false(%s);", c->pk);
        return;
    case SVC_T_F32:
        em(e, "msgpack_pack_float(%s, %s);", c->pk, v);
        return;
    case SVC_T_F64:
        em(e, "msgpack_pack_double(%s, %s);", c->pk, v);
        return;
    case SVC_T_STRING:
        em(e, "msgpack_pack_str_with_body(%s, %s.ptr, %s.len);", c->pk, v, v);
        return;
    case SVC_T_BYTES:
        em(e, "msgpack_pack_bin_with_body(%s, %s.ptr, %s.len);", c->pk, v, v);
        return;
    case SVC_T_ANY:
        /* Checked, since its bytes are the caller's: a malformed one fails in the buffer. */
        em(e, "shmrpc_mp_write_any(%s, %s);", c->pk, v);
        return;
    default:
        em(e, "msgpack_pack_%s(%s, %s);", gen_is_signed(t->scalar) ? "int64" : "uint64", c->pk, v);
        return;
    }
}

/* "if ((rc = CALL) != 0)\n    FAIL" */
static void check(emitter *e, const cx *c, const char *call, const char *fail)
{
    em_open(e, "if ((%s = %s) != 0)", c->rc, call);
    em_last(e, "%s", fail);
}

/* The reading function of a scalar, after "shmrpc_mp_read_" or "shmrpc_json_read_". */
static const char *scalar_op(const gtype *t, bool json)
{
    switch (t->scalar) {
    case SVC_T_BOOL:
        return "bool";
    case SVC_T_F32:
        return "f32";
    case SVC_T_F64:
        return "f64";
    case SVC_T_STRING:
        return "str";
    case SVC_T_ANY:
        return "any";
    default:
        return json ? "base64" : "bin";
    }
}

/* Reads a value of t into the lvalue v. head is the reader function's name less its
 * last part ("shmrpc_mp_read_") and args what it takes before the range or the address
 * ("r"; "r, j"). An integer narrower than 64 bits goes through a 64-bit temporary. */
static void read_value(gen *g, emitter *e, const cx *c, const gtype *t, const char *head,
                       const char *args, const char *v, const char *fail)
{
    if (!gen_is_signed(t->scalar) && !gen_is_unsigned(t->scalar)) {
        check(e, c,
              S("%s%s(%s, %s)", head, scalar_op(t, strstr(head, "json") != NULL), args, addr(g, v)),
              fail);
        return;
    }
    bool sig = gen_is_signed(t->scalar);
    const char *range =
        sig ? S("%s, %s", gen_int_min(t->scalar), gen_int_max(t->scalar)) : gen_int_max(t->scalar);
    const char *fn = S("%s%s", head, sig ? "int" : "uint");
    if (t->scalar == SVC_T_I64 || t->scalar == SVC_T_U64) {
        check(e, c, S("%s(%s, %s, %s)", fn, args, range, addr(g, v)), fail);
        return;
    }
    em_open(e, "{");
    em(e, "%s tmp;", sig ? "int64_t" : "uint64_t");
    check(e, c, S("%s(%s, %s, &tmp)", fn, args, range), fail);
    em(e, "%s = (%s)tmp;", v, t->ctype);
    em_close(e, "}");
}

void gen_mp_read(gen *g, emitter *e, const cx *c, const gtype *t, const char *v, const char *fail)
{
    if (t->kind != GK_SCALAR)
        check(e, c, S("%s(%s, %s, %s)", gen_codec_fn(g, t, "mp_read"), c->r, c->a, addr(g, v)),
              fail);
    else
        read_value(g, e, c, t, "shmrpc_mp_read_", c->r, v, fail);
}

void gen_mp_decode(gen *g, emitter *e, const cx *c, const char *bytes, const gtype *t,
                   const char *v, const char *fail, const char *ok)
{
    em(e, "shmrpc_mp_reader r_;");
    em(e, "shmrpc_mp_reader_init(&r_, %s.ptr, %s.len);", bytes, bytes);
    if (t == NULL) {
        em_open(e, "if ((rc_ = shmrpc_mp_read_nil(&r_)) != 0)");
        em_last(e, "%s", fail);
    } else {
        gen_mp_read(g, e, c, t, v, fail);
    }
    em_open(e, "if ((rc_ = shmrpc_mp_finish(&r_)) != 0)");
    em_last(e, "%s", fail);
    em(e, "return %s;", ok);
}

void gen_item_reader(gen *g, emitter *e, const char *proto, const char *recv, const svc_method *m,
                     const gtype *t, const char *arena, const char *fail)
{
    em_blank(e);
    em(e, "%s", proto);
    em_open(e, "{");
    if (svc_enc_is_raw(m->enc)) {
        em(e, "return %s, item_);", recv);
    } else {
        const cx c = {"", "&r_", arena, "rc_"};
        em(e, "shmrpc_bytes b_;");
        em(e, "int rc_ = %s, &b_);", recv);
        em_open(e, "if (rc_ != 1)");
        em_last(e, "return rc_;");
        gen_mp_decode(g, e, &c, "b_", t, "*item_", fail, "1");
    }
    em_close(e, "}");
}

void gen_json_read(gen *g, emitter *e, const cx *c, const gtype *t, const char *j, const char *v,
                   const char *fail)
{
    if (t->kind != GK_SCALAR)
        check(e, c, S("%s(%s, %s, %s)", gen_codec_fn(g, t, "json_read"), c->r, j, addr(g, v)),
              fail);
    else
        read_value(g, e, c, t, "shmrpc_json_read_", S("%s, %s", c->r, j), v, fail);
}

const char *gen_json_write_expr(gen *g, const gtype *t, const char *v)
{
    if (t->kind != GK_SCALAR) return S("%s(%s)", gen_codec_fn(g, t, "json_write"), addr(g, v));
    switch (t->scalar) {
    case SVC_T_BOOL:
        return S("shmrpc_json_bool(%s)", v);
    case SVC_T_F32:
    case SVC_T_F64:
        return S("shmrpc_json_real(%s)", v);
    case SVC_T_STRING:
        return S("shmrpc_json_string(%s)", v);
    case SVC_T_BYTES:
        return S("shmrpc_json_base64(%s)", v);
    case SVC_T_ANY:
        return S("shmrpc_json_any(%s)", v);
    case SVC_T_U64:
        return S("shmrpc_json_uint(%s)", v);
    default:
        return S("shmrpc_json_int(%s)", v);
    }
}

/* --- functions --- */

static const cx fcx = {"pk", "r", "a", "rc"};

/* Codec functions are shared by the client and server files through NAME.c, except
 * those of a method's arguments, which only the server file has. */
static const char *linkage(const gtype *t)
{
    return t->is_args ? "static " : "";
}

/* The signature of t's codec function op, without the ';' or body. */
static const char *signature(gen *g, const gtype *t, const char *op)
{
    const char *fn = gen_codec_fn(g, t, op), *l = linkage(t);
    if (strcmp(op, "to_name") == 0) return S("const char *%s(%s v)", fn, t->ctype);
    if (strcmp(op, "from_name") == 0) return S("bool %s(shmrpc_str s, %s *v)", fn, t->ctype);
    if (strcmp(op, "mp_write") == 0)
        return S("%svoid %s(msgpack_packer *pk, %s)", l, fn, gen_ptr_decl(g, t->ctype, "v", true));
    if (strcmp(op, "mp_read") == 0)
        return S("%sint %s(shmrpc_mp_reader *r, shmrpc_arena *a, %s)", l, fn,
                 gen_ptr_decl(g, t->ctype, "v", false));
    if (strcmp(op, "json_write") == 0)
        return S("%sshmrpc_json *%s(%s)", l, fn, gen_ptr_decl(g, t->ctype, "v", true));
    return S("%sint %s(shmrpc_json_reader *r, const shmrpc_json *j, %s)", l, fn,
             gen_ptr_decl(g, t->ctype, "v", false));
}

/* Whether the optional *v holds nothing: a struct's is a pointer, the rest a has flag. */
static const char *absent(const gtype *t)
{
    return t->elem->kind == GK_STRUCT ? "*v == NULL" : "!v->has";
}

/* The value the optional *v holds. */
static const char *present(const gtype *t)
{
    return t->elem->kind == GK_STRUCT ? "**v" : "v->value";
}

/* "if (rc != 0) return rc;", after the call that sets rc. */
static void rc_checked(emitter *e)
{
    em_open(e, "if (rc != 0)");
    em_last(e, "return rc;");
}

/* When cond holds (an allocation came back NULL), fails the decoding for want of memory. */
static void oom_if(emitter *e, const char *cond)
{
    em_guard(e, cond, "r->why = \"out of memory\";", "SHMRPC_ENOMEM");
}

/* When cond holds, fails the decoding as invalid, why (a C string literal) the reason. */
static void invalid_if(gen *g, emitter *e, const char *cond, const char *why)
{
    em_guard(e, cond, S("r->why = %s;", why), "SHMRPC_EINVAL");
}

/* The bodies of the codec functions, between the braces that codec_function writes. */

static void to_name_body(gen *g, emitter *e, gtype *t)
{
    em(e, "switch (v) {");
    for (const svc_enumval *v = t->decl->values; v; v = v->next) {
        em(e, "case %s:", gen_enum_const(g, t, v));
        e->depth++;
        em(e, "return \"%.*s\";", v->name.n, v->name.p);
        e->depth--;
    }
    em(e, "}");
    em(e, "return NULL;");
}

static void from_name_body(gen *g, emitter *e, gtype *t)
{
    em_open(e, "static const struct {");
    em(e, "const char *name;");
    em(e, "%s value;", t->ctype);
    em_close(e, "} names[] = {");
    e->depth++;
    for (const svc_enumval *v = t->decl->values; v; v = v->next)
        em(e, "{\"%.*s\", %s},", v->name.n, v->name.p, gen_enum_const(g, t, v));
    em_close(e, "};");
    em_open(e, "for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)");
    em_guard(e, "strlen(names[i].name) == s.len && memcmp(names[i].name, s.ptr, s.len) == 0",
             "*v = names[i].value;", "true");
    e->depth--;
    em(e, "return false;");
}

static void mp_write_body(gen *g, emitter *e, gtype *t)
{
    switch (t->kind) {
    case GK_STRUCT:
        em(e, "msgpack_pack_array(pk, %d);", t->n_fields);
        if (t->fields == NULL) em(e, "(void)v;");
        for (const svc_field *f = t->fields; f; f = f->next)
            gen_mp_write(g, e, &fcx, gen_type(g, f->type), S("v->%.*s", f->name.n, f->name.p));
        break;
    case GK_ENUM:
        em(e, "msgpack_pack_int64(pk, (int64_t)*v);");
        break;
    case GK_LIST:
    case GK_MAP:
        em(e, "msgpack_pack_%s(pk, v->len);", t->kind == GK_LIST ? "array" : "map");
        em_open(e, "for (size_t i = 0; i < v->len; i++) {");
        if (t->kind == GK_LIST) {
            gen_mp_write(g, e, &fcx, t->elem, "v->items[i]");
        } else {
            gen_mp_write(g, e, &fcx, t->key, "v->items[i].key");
            gen_mp_write(g, e, &fcx, t->elem, "v->items[i].value");
        }
        em_close(e, "}");
        break;
    case GK_OPT:
        em_open(e, "if (%s) {", absent(t));
        em(e, "msgpack_pack_nil(pk);");
        em(e, "return;");
        em_close(e, "}");
        gen_mp_write(g, e, &fcx, t->elem, present(t));
        break;
    case GK_SCALAR:
        break;
    }
}

static void mp_read_struct(gen *g, emitter *e, const gtype *t)
{
    const char *noun = t->is_args ? "argument" : "field";
    int req = required_members(g, t);
    /* Failures of the struct as a whole name no field of their own: the field or
     * parameter that holds the struct does, or for the arguments, nothing. */
    em(e, "uint32_t n;");
    em(e, "int rc = shmrpc_mp_read_array(r, &n);");
    rc_checked(e);
    if (req > 0)
        invalid_if(g, e, S("n < %d", req),
                   req == t->n_fields
                       ? S("\"expected %d %s%s\"", t->n_fields, noun, t->n_fields == 1 ? "" : "s")
                       : S("\"expected at least %d %s%s\"", req, noun, req == 1 ? "" : "s"));
    if (!t->is_args) invalid_if(g, e, "++r->depth > SHMRPC_MAX_DEPTH", "\"nested too deeply\"");
    bool uses_arena = false;
    int i = 0;
    for (const svc_field *f = t->fields; f; f = f->next, i++) {
        const gtype *ft = gen_type(g, f->type);
        const char *dst = S("v->%.*s", f->name.n, f->name.p);
        uses_arena |= ft->kind != GK_SCALAR;
        bool maybe_absent = i >= req; /* an older peer may not have sent it: none */
        if (maybe_absent) {
            em_open(e, "if (n <= %d) {", i);
            em(e, "memset(&%s, 0, sizeof %s);", dst, dst);
            e->depth--;
            em_open(e, "} else {");
        }
        gen_mp_read(g, e, &fcx, ft, dst,
                    S("return shmrpc_mp_fail_at(r, rc, \"%s\");", field_label(g, t, f)));
        if (maybe_absent) em_close(e, "}");
    }
    /* What a newer peer appended. */
    em_guard(e, S("n > %d && (rc = shmrpc_mp_skip(r, n - %d)) != 0", t->n_fields, t->n_fields),
             NULL, "rc");
    if (!uses_arena) em(e, "(void)a;");
    if (t->n_fields == 0) em(e, "(void)v;");
    if (!t->is_args) em(e, "r->depth--;");
}

/* Room for the n items of a list or map, not zeroed: the loop that follows writes each
 * one before anything reads it. n may come from the wire, so the size is checked. */
static void items_alloc(gen *g, emitter *e, const char *ctype, const char *arena)
{
    em(e, "%s = shmrpc_arena_alloc_items(%s, n, sizeof *items, _Alignof(%s));",
       gen_ptr_decl(g, ctype, "items", false), arena, ctype);
    oom_if(e, "items == NULL");
}

/* Room for the struct an optional points to. */
static void struct_alloc(emitter *e, const gtype *t, const char *arena)
{
    em(e, "%s *p = shmrpc_arena_alloc(%s, sizeof *p, _Alignof(%s));", t->ctype, arena, t->ctype);
    oom_if(e, "p == NULL");
}

/* An enum reads as an integer that must be one of its values. */
static void mp_read_enum(emitter *e, const gtype *t)
{
    em(e, "(void)a;");
    em(e, "int64_t tmp;");
    em(e, "int rc = shmrpc_mp_read_int(r, INT32_MIN, INT32_MAX, &tmp);");
    rc_checked(e);
    em(e, "switch (tmp) {");
    for (const svc_enumval *v = t->decl->values; v; v = v->next)
        em(e, "case %lld:", (long long)v->value);
    e->depth++;
    em(e, "*v = (%s)tmp;", t->ctype);
    em(e, "return 0;");
    e->depth--;
    em(e, "default:");
    e->depth++;
    em(e, "r->why = \"not a value of enum %s\";", t->display);
    em(e, "return SHMRPC_EINVAL;");
    e->depth--;
    em(e, "}");
}

static void mp_read_body(gen *g, emitter *e, gtype *t)
{
    switch (t->kind) {
    case GK_STRUCT:
        mp_read_struct(g, e, t);
        break;
    case GK_ENUM:
        mp_read_enum(e, t);
        return;
    case GK_LIST:
    case GK_MAP: {
        bool list = t->kind == GK_LIST;
        size_t min = mp_min_size(g, t->elem);
        if (!list) {
            size_t kmin = mp_min_size(g, t->key);
            min = min > MIN_SIZE_CAP - kmin ? (size_t)MIN_SIZE_CAP : kmin + min;
        }
        em(e, "uint32_t n;");
        em(e, "int rc = shmrpc_mp_read_%s_of(r, %zu, &n);", list ? "array" : "map", min);
        rc_checked(e);
        items_alloc(g, e, list ? t->elem->ctype : S("%s_entry", t->ctype), "a");
        em_open(e, "for (uint32_t i = 0; i < n; i++) {");
        if (list) {
            gen_mp_read(g, e, &fcx, t->elem, "items[i]", "return rc;");
        } else {
            gen_mp_read(g, e, &fcx, t->key, "items[i].key", "return rc;");
            gen_mp_read(g, e, &fcx, t->elem, "items[i].value", "return rc;");
        }
        em_close(e, "}");
        em(e, "v->items = items;");
        em(e, "v->len = n;");
        break;
    }
    case GK_OPT:
        em(e, "int rc = shmrpc_mp_try_nil(r);");
        em_open(e, "if (rc < 0)");
        em_last(e, "return rc;");
        if (t->elem->kind == GK_STRUCT) {
            em(e, "*v = NULL;");
            em_open(e, "if (rc == 1)");
            em_last(e, "return 0;");
            struct_alloc(e, t->elem, "a");
            gen_mp_read(g, e, &fcx, t->elem, "*p", "return rc;");
            em(e, "*v = p;");
        } else {
            em(e, "memset(v, 0, sizeof *v);");
            em_open(e, "if (rc == 1)");
            em_last(e, "return 0;");
            em(e, "v->has = true;");
            if (t->elem->kind == GK_SCALAR) em(e, "(void)a;");
            gen_mp_read(g, e, &fcx, t->elem, "v->value", "return rc;");
        }
        break;
    case GK_SCALAR:
        break;
    }
    em(e, "return 0;");
}

/* "if (COND) {\n    shmrpc_json_free(o);\n    return NULL;\n}" */
static void json_free_if(emitter *e, const char *cond)
{
    em_guard(e, cond, "shmrpc_json_free(o);", "NULL");
}

static void json_new(emitter *e, const char *what)
{
    em(e, "shmrpc_json *o = shmrpc_json_%s();", what);
    em_open(e, "if (o == NULL)");
    em_last(e, "return NULL;");
}

static void json_write_body(gen *g, emitter *e, gtype *t)
{
    switch (t->kind) {
    case GK_STRUCT:
        json_new(e, "object");
        if (t->fields == NULL) {
            em(e, "(void)v;");
            break;
        }
        for (const svc_field *f = t->fields; f; f = f->next)
            json_free_if(e, S("shmrpc_json_set(o, \"%.*s\", %s) != 0", f->name.n, f->name.p,
                              gen_json_write_expr(g, gen_type(g, f->type),
                                                  S("v->%.*s", f->name.n, f->name.p))));
        break;
    case GK_ENUM:
        em(e, "const char *name = %s(*v);", gen_codec_fn(g, t, "to_name"));
        em(e, "return name ? shmrpc_json_string(shmrpc_str_c(name)) : NULL;");
        return;
    case GK_LIST:
        json_new(e, "array");
        em_open(e, "for (size_t i = 0; i < v->len; i++)");
        json_free_if(
            e, S("shmrpc_json_append(o, %s) != 0", gen_json_write_expr(g, t->elem, "v->items[i]")));
        e->depth--;
        break;
    case GK_MAP: {
        const gtype *k = t->key;
        const char *val = gen_json_write_expr(g, t->elem, "v->items[i].value");
        json_new(e, "object");
        em_open(e, "for (size_t i = 0; i < v->len; i++) {");
        const char *set;
        if (k->kind == GK_ENUM) {
            em(e, "const char *key = %s(v->items[i].key);", gen_codec_fn(g, k, "to_name"));
            set = S("key == NULL || shmrpc_json_set(o, key, %s) != 0", val);
        } else if (k->scalar == SVC_T_STRING) {
            set = S("shmrpc_json_setn(o, v->items[i].key, %s) != 0", val);
        } else {
            em(e, "char key[24];");
            set = S("shmrpc_json_setn(o, shmrpc_json_%s_key(v->items[i].key, key), %s) != 0",
                    gen_is_signed(k->scalar) ? "int" : "uint", val);
        }
        json_free_if(e, set);
        em_close(e, "}");
        break;
    }
    case GK_OPT:
        em_open(e, "if (%s)", absent(t));
        em_last(e, "return shmrpc_json_null();");
        em(e, "return %s;", gen_json_write_expr(g, t->elem, present(t)));
        return;
    case GK_SCALAR:
        break;
    }
    em(e, "return o;");
}

/* By name: an optional member that is missing is none (an older peer's), a member this side
 * does not know is skipped (a newer peer's), by the rules of compatible evolution. */
static void json_read_struct(gen *g, emitter *e, const gtype *t)
{
    em(e, "size_t n;");
    em(e, "int rc = shmrpc_json_read_object(r, j, &n);");
    rc_checked(e);
    em(e, "(void)n;");
    if (t->fields) em(e, "const shmrpc_json *f;");
    for (const svc_field *f = t->fields; f; f = f->next) {
        const gtype *ft = gen_type(g, f->type);
        const char *label = field_label(g, t, f);
        em(e, "f = shmrpc_json_get(j, \"%.*s\");", f->name.n, f->name.p);
        if (ft->kind != GK_OPT)
            em_guard(e, "f == NULL", "r->why = \"missing\";",
                     S("shmrpc_json_fail_at(r, SHMRPC_EINVAL, \"%s\")", label));
        gen_json_read(g, e, &fcx, ft, "f", S("v->%.*s", f->name.n, f->name.p),
                      S("return shmrpc_json_fail_at(r, rc, \"%s\");", label));
    }
    if (t->fields == NULL) em(e, "(void)v;");
}

static void json_read_body(gen *g, emitter *e, gtype *t)
{
    switch (t->kind) {
    case GK_ENUM:
        em(e, "shmrpc_str s;");
        em(e, "int rc = shmrpc_json_read_str(r, j, &s);");
        rc_checked(e);
        invalid_if(g, e, S("!%s(s, v)", gen_codec_fn(g, t, "from_name")),
                   S("\"not a value of enum %s\"", t->display));
        break;
    case GK_STRUCT:
        json_read_struct(g, e, t);
        break;
    case GK_LIST:
        em(e, "size_t n;");
        em(e, "int rc = shmrpc_json_read_array(r, j, &n);");
        rc_checked(e);
        items_alloc(g, e, t->elem->ctype, "r->arena");
        em_open(e, "for (size_t i = 0; i < n; i++) {");
        gen_json_read(g, e, &fcx, t->elem, "shmrpc_json_at(j, i)", "items[i]", "return rc;");
        em_close(e, "}");
        em(e, "v->items = items;");
        em(e, "v->len = n;");
        break;
    case GK_MAP: {
        const gtype *k = t->key;
        em(e, "size_t n;");
        em(e, "int rc = shmrpc_json_read_object(r, j, &n);");
        rc_checked(e);
        items_alloc(g, e, S("%s_entry", t->ctype), "r->arena");
        /* An iterator of its own: walking the values' maps must not restart this walk. */
        em(e, "shmrpc_json_iter it;");
        em(e, "shmrpc_json_iter_init(&it, j);");
        em(e, "shmrpc_str key;");
        em(e, "const shmrpc_json *val;");
        em(e, "size_t i = 0;");
        em_open(e, "while (i < n && (rc = shmrpc_json_iter_next(r, &it, &key, &val)) == 1) {");
        if (k->kind == GK_ENUM) {
            invalid_if(g, e, S("!%s(key, &items[i].key)", gen_codec_fn(g, k, "from_name")),
                       S("\"not a value of enum %s\"", k->display));
        } else if (k->scalar == SVC_T_STRING) {
            em(e, "items[i].key = key;");
        } else {
            read_value(g, e, &fcx, k, "shmrpc_json_key_", "r, key", "items[i].key", "return rc;");
        }
        gen_json_read(g, e, &fcx, t->elem, "val", "items[i].value", "return rc;");
        em(e, "i++;");
        em_close(e, "}");
        em_open(e, "if (rc < 0)");
        em_last(e, "return rc;");
        em(e, "v->items = items;");
        em(e, "v->len = i;");
        break;
    }
    case GK_OPT:
        if (t->elem->kind == GK_STRUCT) {
            em(e, "*v = NULL;");
            em_open(e, "if (shmrpc_json_is_null(j))");
            em_last(e, "return 0;");
            struct_alloc(e, t->elem, "r->arena");
            em(e, "int rc;");
            gen_json_read(g, e, &fcx, t->elem, "j", "*p", "return rc;");
            em(e, "*v = p;");
        } else {
            em(e, "memset(v, 0, sizeof *v);");
            em_open(e, "if (shmrpc_json_is_null(j))");
            em_last(e, "return 0;");
            em(e, "v->has = true;");
            em(e, "int rc;");
            gen_json_read(g, e, &fcx, t->elem, "j", "v->value", "return rc;");
        }
        break;
    case GK_SCALAR:
        break;
    }
    em(e, "return 0;");
}

static const struct {
    unsigned need;
    const char *op;
    void (*body)(gen *g, emitter *e, gtype *t);
} ops[] = {
    {NEED_ENUM_NAME, "to_name", to_name_body},
    {NEED_ENUM_FROM_NAME, "from_name", from_name_body},
    {NEED_MP_WRITE, "mp_write", mp_write_body},
    {NEED_MP_READ, "mp_read", mp_read_body},
    {NEED_JSON_WRITE, "json_write", json_write_body},
    {NEED_JSON_READ, "json_read", json_read_body},
};

void gen_codec_prototypes(gen *g, emitter *e, bool args)
{
    for (gtype *t = g->types; t; t = t->next)
        if (t->need && t->is_args == args)
            for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
                if (t->need & ops[i].need) em(e, "%s;", signature(g, t, ops[i].op));
}

void gen_codec_functions(gen *g, emitter *e, bool args)
{
    for (gtype *t = g->types; t; t = t->next) {
        if (t->is_args != args) continue;
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
            if (!(t->need & ops[i].need)) continue;
            em_blank(e);
            em(e, "%s", signature(g, t, ops[i].op));
            em_open(e, "{");
            ops[i].body(g, e, t);
            em_close(e, "}");
        }
    }
}
