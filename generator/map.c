/* SPDX-License-Identifier: MIT */
/* Typed maps ("map<string, Entry> cache;"): in NAME.h the map's name and type and its
 * functions, in NAME.c their bodies, which encode the key and the value with the same codec
 * glue as the calls (msgpack) around a shmrpc_map (docs/map.md, "Typed maps"). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "gen.h"

static const char *mname(gen *g, const svc_method *m)
{
    return gen_method_cname(g, m); /* snake case, as a method's */
}

/* "CACHE_MAP_ENTRIES": the map's shared-memory name. */
static const char *name_macro(gen *g, const svc_method *m)
{
    return S("%s_MAP_%s", g->P, (const char *)gen_must(svc_upper(g->a, mname(g, m))));
}

static const char *fn(gen *g, const svc_method *m, const char *what)
{
    return S("%s_%s_%s", g->own, mname(g, m), what);
}

static gtype *key_type(gen *g, const svc_method *m)
{
    return gen_type(g, m->params->type);
}

static const char *value_decl(gen *g, const gtype *t, const char *name)
{
    return t->kind == GK_STRUCT ? gen_ptr_decl(g, t->ctype, name, true)
                                : gen_decl(g, t->ctype, name);
}

/* Whether decoding a value of t takes memory of an arena: a list, a map, an optional
 * struct, or a struct that holds one (by value, so the walk ends: a struct holds itself
 * only through a list or an optional). Strings, bytes and dynamic values point into the
 * buffer. */
static bool allocates(gen *g, const gtype *t)
{
    switch (t->kind) {
    case GK_LIST:
    case GK_MAP:
        return true;
    case GK_OPT:
        return t->elem->kind == GK_STRUCT || allocates(g, t->elem);
    case GK_STRUCT:
        for (const svc_field *f = t->fields; f; f = f->next)
            if (allocates(g, gen_type(g, f->type))) return true;
        return false;
    default:
        return false;
    }
}

/* A get or iterate of a map whose keys or values need an arena refuses a NULL one, saying
 * so, rather than fail its first allocation as "out of memory". */
static void need_arena(gen *g, emitter *e, const svc_method *m, const char *what, const char *label)
{
    gtype *k = key_type(g, m), *v = gen_type(g, m->result);
    if (!allocates(g, k) && !allocates(g, v)) return;
    em_open(e, "if (arena_ == NULL)");
    em_last(e,
            "return shmrpc_client_error(NULL, SHMRPC_EINVAL, \"%s: %s needs an arena (arena_ is "
            "NULL): map<%s, %s> holds lists, maps or optional structs\");",
            label, what, k->canon, v->canon);
}

enum { P_OPEN, P_GET, P_PUT, P_PUT_IF_ABSENT, P_REMOVE, P_FN, P_ITERATE, P_COUNT };

static const char *protos(gen *g, const svc_method *m, int which)
{
    gtype *k = key_type(g, m), *v = gen_type(g, m->result);
    const char *key = gen_decl(g, k->ctype, "key_");
    switch (which) {
    case P_OPEN:
        return S("int %s(shmrpc_map **m_, const shmrpc_map_opts *opts_)", fn(g, m, "open"));
    case P_GET:
        return S("int %s(shmrpc_map *m_, shmrpc_buf *buf_, shmrpc_arena *arena_, %s, %s)",
                 fn(g, m, "get"), key, gen_ptr_decl(g, v->ctype, "out_", false));
    case P_PUT:
    case P_PUT_IF_ABSENT:
        return S("int %s(shmrpc_map *m_, shmrpc_buf *buf_, %s, %s)",
                 fn(g, m, which == P_PUT ? "put" : "put_if_absent"), key,
                 value_decl(g, v, "value_"));
    case P_REMOVE:
        return S("int %s(shmrpc_map *m_, shmrpc_buf *buf_, %s)", fn(g, m, "remove"), key);
    case P_FN:
        return S("typedef int (*%s)(void *arg_, %s, %s)", fn(g, m, "fn"), key,
                 value_decl(g, v, "value_"));
    default:
        return S("int %s(shmrpc_map *m_, shmrpc_arena *arena_, %s fn_, void *arg_)",
                 fn(g, m, "iterate"), fn(g, m, "fn"));
    }
}

void gen_map_decls(gen *g, emitter *e)
{
    if (!g->svc->maps) return;
    em_blank(e);
    em(e, "/* Maps: each a shared map (shmrpc/map.h) named after the service, whose keys and");
    em(e, " * values are of its types, encoded as msgpack. open opens or creates it (opts_ may");
    em(e, " * be NULL) and refuses a map of other types. get copies the key's value into buf_");
    em(e, " * and decodes it, what it points to living in buf_ and arena_ until they are reused");
    em(e, " * (SHMRPC_ENOENT when absent); put and put_if_absent (SHMRPC_EBUSY when present)");
    em(e, " * encode into buf_; remove returns SHMRPC_ENOENT when absent. iterate calls fn_ for");
    em(e, " * every entry of one snapshot, what it is given living during the call (arena_, which");
    em(e, " * may be NULL when nothing is allocated, is reset before each entry); a non-zero");
    em(e, " * return of fn_ stops it and is returned. */");
    for (const svc_method *m = g->svc->maps; m; m = m->next) {
        gen_shared_head(g, e, m, name_macro(g, m), fn(g, m, "type"));
        for (int i = 0; i < P_COUNT; i++)
            em(e, "%s;", protos(g, m, i));
    }
}

/* The start of function which: its prototype, then the key encoded into buf_ (cleared
 * first), as every function but open and iterate begins. */
static void begin_keyed(gen *g, emitter *e, const svc_method *m, int which, const char *label)
{
    const cx c = {"&pk_", "&r_", "arena_", "rc_"};
    em_blank(e);
    em(e, "%s", protos(g, m, which));
    em_open(e, "{");
    em(e, "shmrpc_buf_clear(buf_);");
    em(e, "msgpack_packer pk_;");
    em(e, "msgpack_packer_init(&pk_, buf_, shmrpc_buf_msgpack_write);");
    gen_mp_write(g, e, &c, key_type(g, m), "key_");
    em_open(e, "if (buf_->err != 0)");
    em_last(e, "return shmrpc_client_error(NULL, buf_->err, \"%s: cannot encode the key\");",
            label);
}

/* Decodes what r_ reads into v, or runs fail; then checks that nothing follows. */
static void decode(gen *g, emitter *e, const gtype *t, const char *v, const char *fail)
{
    const cx c = {"&pk_", "&r_", "arena_", "rc_"};
    gen_mp_read(g, e, &c, t, v, fail);
    em_open(e, "if ((rc_ = shmrpc_mp_finish(&r_)) != 0)");
    em_last(e, "%s", fail);
}

static void put_fn(gen *g, emitter *e, const svc_method *m, int which, const char *label)
{
    const cx c = {"&pk_", "&r_", "arena_", "rc_"};
    gtype *v = gen_type(g, m->result);
    begin_keyed(g, e, m, which, label);
    em(e, "size_t klen_ = buf_->len;");
    gen_mp_write(g, e, &c, v, v->kind == GK_STRUCT ? "*value_" : "value_");
    em_open(e, "if (buf_->err != 0)");
    em_last(e, "return shmrpc_client_error(NULL, buf_->err, \"%s: cannot encode the value\");",
            label);
    em(e, "return %s(m_, buf_->data, klen_, buf_->data + klen_, buf_->len - klen_);",
       which == P_PUT ? "shmrpc_map_put" : "shmrpc_map_put_if_absent");
    em_close(e, "}");
}

void gen_map_functions(gen *g, emitter *e)
{
    for (const svc_method *m = g->svc->maps; m; m = m->next) {
        gtype *k = key_type(g, m), *v = gen_type(g, m->result);
        const char *label = S("%s.%.*s", g->name, m->name.n, m->name.p);
        const char *fail =
            S("return shmrpc_client_decode_error(NULL, \"%s\", r_.field, r_.why);", label);
        em_blank(e);
        gen_string_def(g, e, S("const char %s[]", fn(g, m, "type")),
                       gen_must(svc_signature(g->a, m, SVC_MAX_SIGNATURE, NULL)));

        em_blank(e);
        em(e, "%s", protos(g, m, P_OPEN));
        em_open(e, "{");
        em(e, "shmrpc_map_opts o_;");
        em(e, "if (opts_ != NULL)");
        e->depth++;
        em(e, "o_ = *opts_;");
        e->depth--;
        em_open(e, "else");
        em_last(e, "shmrpc_map_opts_init(&o_);");
        em(e, "o_.type = %s;", fn(g, m, "type"));
        em(e, "return shmrpc_map_open(m_, %s, &o_);", name_macro(g, m));
        em_close(e, "}");

        /* The view is copied before the next call on the map can unmap what it shows. */
        begin_keyed(g, e, m, P_GET, label);
        need_arena(g, e, m, "get", label);
        em(e, "shmrpc_map_view view_;");
        em(e, "int rc_ = shmrpc_map_get_view(m_, buf_->data, buf_->len, &view_);");
        em_open(e, "if (rc_ != 0)");
        em_last(e, "return rc_;");
        em(e, "shmrpc_buf_clear(buf_);");
        em_open(e, "if ((rc_ = shmrpc_buf_append(buf_, view_.data, view_.len)) != 0)");
        em_last(e, "return shmrpc_client_error(NULL, rc_, \"%s: no room for the value\");", label);
        em(e, "shmrpc_mp_reader r_;");
        em(e, "shmrpc_mp_reader_init(&r_, buf_->data, buf_->len);");
        if (v->kind == GK_SCALAR || v->kind == GK_ENUM)
            em(e, "(void)arena_; /* nothing to allocate */");
        decode(g, e, v, "*out_", fail);
        em(e, "return 0;");
        em_close(e, "}");

        put_fn(g, e, m, P_PUT, label);
        put_fn(g, e, m, P_PUT_IF_ABSENT, label);

        begin_keyed(g, e, m, P_REMOVE, label);
        em(e, "return shmrpc_map_remove(m_, buf_->data, buf_->len);");
        em_close(e, "}");

        /* iterate: shmrpc_map_iterate's callback decodes each entry for the user's. */
        const char *walk = fn(g, m, "walk");
        em_blank(e);
        em_open(e, "struct %s {", walk);
        em(e, "%s fn_;", fn(g, m, "fn"));
        em(e, "void *arg_;");
        em(e, "shmrpc_arena *arena_;");
        em_close(e, "};");
        em_blank(e);
        em(e, "static int %s(void *w_, const void *kp_, size_t kn_, const void *vp_, size_t vn_)",
           fn(g, m, "visit"));
        em_open(e, "{");
        em(e, "struct %s *walk_ = w_;", walk);
        em(e, "shmrpc_arena *arena_ = walk_->arena_;");
        em_open(e, "if (arena_ != NULL)");
        em_last(e, "shmrpc_arena_reset(arena_);");
        em(e, "%s;", gen_decl(g, k->ctype, "key_"));
        em(e, "%s;", gen_decl(g, v->ctype, "value_"));
        em(e, "memset(&key_, 0, sizeof key_);");
        em(e, "memset(&value_, 0, sizeof value_);");
        em(e, "int rc_;");
        em(e, "shmrpc_mp_reader r_;");
        em(e, "shmrpc_mp_reader_init(&r_, kp_, kn_);");
        decode(g, e, k, "key_", fail);
        em(e, "shmrpc_mp_reader_init(&r_, vp_, vn_);");
        decode(g, e, v, "value_", fail);
        em(e, "return walk_->fn_(walk_->arg_, key_, %svalue_);", v->kind == GK_STRUCT ? "&" : "");
        em_close(e, "}");
        em_blank(e);
        em(e, "%s", protos(g, m, P_ITERATE));
        em_open(e, "{");
        need_arena(g, e, m, "iterate", label);
        em(e, "struct %s walk_ = {fn_, arg_, arena_};", walk);
        em(e, "return shmrpc_map_iterate(m_, %s, &walk_);", fn(g, m, "visit"));
        em_close(e, "}");
    }
}
