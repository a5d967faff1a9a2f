/* Codec glue: for each type the methods need, functions that write and read it as
 * msgpack or JSON, and the snippets that stubs and invokers inline for scalars. */
#include <stdio.h>
#include <string.h>

#include "gen.h"

static const char *fn(gen *g, const gtype *t, const char *op)
{
    return S("%s__%s_%s", g->p, t->tag, op);
}

/* "const T *v", with the const in the right place for pointer types. */
static const char *const_ptr(gen *g, const char *ctype, const char *name)
{
    size_t n = strlen(ctype);
    if (ctype[n - 1] == '*') return S("%sconst *%s", ctype, name);
    return S("const %s *%s", ctype, name);
}

static const char *ptr(gen *g, const char *ctype, const char *name)
{
    size_t n = strlen(ctype);
    return S("%s%s*%s", ctype, ctype[n - 1] == '*' ? "" : " ", name);
}

/* The address of the lvalue v: "&v->x", or "out" for "*out". */
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

void gen_clear_needs(gen *g)
{
    for (gtype *t = g->types; t; t = t->next)
        t->need = 0;
}

void gen_mark(gen *g, gtype *t, unsigned need)
{
    if (t->kind == GK_SCALAR || (t->need & need) == need) return;
    t->need |= need;
    if (t->kind == GK_ENUM && (need & NEED_JSON_WRITE)) t->need |= NEED_ENUM_NAME;
    if (t->kind == GK_ENUM && (need & NEED_JSON_READ)) t->need |= NEED_ENUM_FROM_NAME;
    unsigned data = need & (NEED_MP_WRITE | NEED_MP_READ | NEED_JSON_WRITE | NEED_JSON_READ);
    if (t->elem) gen_mark(g, t->elem, data);
    if (t->key) {
        /* JSON keys are strings: an enum key needs only its names. */
        unsigned k = data & (NEED_MP_WRITE | NEED_MP_READ);
        if (data & NEED_JSON_WRITE) k |= t->key->kind == GK_ENUM ? NEED_ENUM_NAME : 0;
        if (data & NEED_JSON_READ) k |= t->key->kind == GK_ENUM ? NEED_ENUM_FROM_NAME : 0;
        if (k) gen_mark(g, t->key, k);
    }
    if (t->kind == GK_STRUCT)
        for (const svc_field *f = t->fields; f; f = f->next)
            gen_mark(g, gen_type(g, f->type), data);
}

/* Sums that cannot reach this stay exact; beyond it, any bound is as good. */
#define MIN_SIZE_CAP UINT32_MAX

size_t gen_mp_min_size(gen *g, gtype *t)
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
    for (const svc_field *f = t->fields; f; f = f->next) {
        size_t m = gen_mp_min_size(g, gen_type(g, f->type));
        sum = m > MIN_SIZE_CAP - sum ? MIN_SIZE_CAP : sum + m;
    }
    t->mp_min = sum;
    t->min_state = 2;
    return sum;
}

/* --- snippets --- */

void gen_mp_write(gen *g, sbuf *o, const char *ind, const cx *c, const gtype *t, const char *v)
{
    if (t->kind != GK_SCALAR) {
        sb_printf(o, "%s%s(%s, %s);\n", ind, fn(g, t, "mp_write"), c->pk, addr(g, v));
        return;
    }
    switch (t->scalar) {
    case SVC_T_BOOL:
        sb_printf(
            o, "%sif (%s)\n%s    msgpack_pack_true(%s);\n%selse\n%s    msgpack_pack_false(%s);\n",
            ind, v, ind, c->pk, ind, ind, c->pk);
        return;
    case SVC_T_F32:
        sb_printf(o, "%smsgpack_pack_float(%s, %s);\n", ind, c->pk, v);
        return;
    case SVC_T_F64:
        sb_printf(o, "%smsgpack_pack_double(%s, %s);\n", ind, c->pk, v);
        return;
    case SVC_T_STRING:
        sb_printf(o, "%smsgpack_pack_str_with_body(%s, %s.ptr, %s.len);\n", ind, c->pk, v, v);
        return;
    case SVC_T_BYTES:
        sb_printf(o, "%smsgpack_pack_bin_with_body(%s, %s.ptr, %s.len);\n", ind, c->pk, v, v);
        return;
    default:
        sb_printf(o, "%smsgpack_pack_%s(%s, %s);\n", ind,
                  gen_is_signed(t->scalar) ? "int64" : "uint64", c->pk, v);
        return;
    }
}

/* "if ((rc = CALL) != 0)\n    FAIL\n" */
static void check(sbuf *o, const char *ind, const cx *c, const char *call, const char *fail)
{
    sb_printf(o, "%sif ((%s = %s) != 0)\n%s    %s\n", ind, c->rc, call, ind, fail);
}

/* An integer narrower than 64 bits goes through a 64-bit temporary. */
static void narrow(gen *g, sbuf *o, const char *ind, const cx *c, const gtype *t, const char *v,
                   const char *fail, const char *call_fmt)
{
    bool sig = gen_is_signed(t->scalar);
    const char *range =
        sig ? S("%s, %s", gen_int_min(t->scalar), gen_int_max(t->scalar)) : gen_int_max(t->scalar);
    const char *wide = sig ? "int64_t" : "uint64_t";
    if (t->scalar == SVC_T_I64 || t->scalar == SVC_T_U64) {
        check(o, ind, c, S(call_fmt, sig ? "int" : "uint", range, addr(g, v)), fail);
        return;
    }
    sb_printf(o, "%s{\n%s    %s tmp;\n", ind, ind, wide);
    check(o, S("%s    ", ind), c, S(call_fmt, sig ? "int" : "uint", range, "&tmp"), fail);
    sb_printf(o, "%s    %s = (%s)tmp;\n%s}\n", ind, v, t->ctype, ind);
}

void gen_mp_read(gen *g, sbuf *o, const char *ind, const cx *c, const gtype *t, const char *v,
                 const char *fail)
{
    const char *call;
    if (t->kind != GK_SCALAR) {
        call = S("%s(%s, %s, %s)", fn(g, t, "mp_read"), c->r, c->a, addr(g, v));
    } else if (gen_is_signed(t->scalar) || gen_is_unsigned(t->scalar)) {
        narrow(g, o, ind, c, t, v, fail, S("shmrpc_mp_read_%%s(%s, %%s, %%s)", c->r));
        return;
    } else {
        const char *op = t->scalar == SVC_T_BOOL     ? "bool"
                         : t->scalar == SVC_T_F32    ? "f32"
                         : t->scalar == SVC_T_F64    ? "f64"
                         : t->scalar == SVC_T_STRING ? "str"
                                                     : "bin";
        call = S("shmrpc_mp_read_%s(%s, %s)", op, c->r, addr(g, v));
    }
    check(o, ind, c, call, fail);
}

const char *gen_json_write_expr(gen *g, const gtype *t, const char *v)
{
    if (t->kind != GK_SCALAR) return S("%s(%s)", fn(g, t, "json_write"), addr(g, v));
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
    case SVC_T_U64:
        return S("shmrpc_json_uint(%s)", v);
    default:
        return S("shmrpc_json_int(%s)", v);
    }
}

void gen_json_read(gen *g, sbuf *o, const char *ind, const cx *c, const gtype *t, const char *j,
                   const char *v, const char *fail)
{
    const char *call;
    if (t->kind != GK_SCALAR) {
        call = S("%s(%s, %s, %s)", fn(g, t, "json_read"), c->r, j, addr(g, v));
    } else if (gen_is_signed(t->scalar) || gen_is_unsigned(t->scalar)) {
        narrow(g, o, ind, c, t, v, fail, S("shmrpc_json_read_%%s(%s, %s, %%s, %%s)", c->r, j));
        return;
    } else {
        const char *op = t->scalar == SVC_T_BOOL     ? "bool"
                         : t->scalar == SVC_T_F32    ? "f32"
                         : t->scalar == SVC_T_F64    ? "f64"
                         : t->scalar == SVC_T_STRING ? "str"
                                                     : "base64";
        call = S("shmrpc_json_read_%s(%s, %s, %s)", op, c->r, j, addr(g, v));
    }
    check(o, ind, c, call, fail);
}

/* --- functions --- */

static const cx fcx = {"pk", "r", "a", "rc"};

/* Codec functions are shared by the client and server files through NAME.c, except
 * those of a method's arguments, which only the server file has. */
static const char *linkage(const gtype *t)
{
    return t->is_args ? "static " : "";
}

static void prototypes(gen *g, sbuf *o, const gtype *t)
{
    if (t->need & NEED_ENUM_NAME)
        sb_printf(o, "const char *%s(%s v);\n", fn(g, t, "to_name"), t->ctype);
    if (t->need & NEED_ENUM_FROM_NAME)
        sb_printf(o, "bool %s(shmrpc_str s, %s *v);\n", fn(g, t, "from_name"), t->ctype);
    if (t->need & NEED_MP_WRITE)
        sb_printf(o, "%svoid %s(msgpack_packer *pk, %s);\n", linkage(t), fn(g, t, "mp_write"),
                  const_ptr(g, t->ctype, "v"));
    if (t->need & NEED_MP_READ)
        sb_printf(o, "%sint %s(shmrpc_mp_reader *r, shmrpc_arena *a, %s);\n", linkage(t),
                  fn(g, t, "mp_read"), ptr(g, t->ctype, "v"));
    if (t->need & NEED_JSON_WRITE)
        sb_printf(o, "%sshmrpc_json *%s(%s);\n", linkage(t), fn(g, t, "json_write"),
                  const_ptr(g, t->ctype, "v"));
    if (t->need & NEED_JSON_READ)
        sb_printf(o, "%sint %s(shmrpc_json_reader *r, const shmrpc_json *j, %s);\n", linkage(t),
                  fn(g, t, "json_read"), ptr(g, t->ctype, "v"));
}

static void enum_names(gen *g, sbuf *o, const gtype *t)
{
    if (t->need & NEED_ENUM_NAME) {
        sb_printf(o, "\nconst char *%s(%s v)\n{\n    switch (v) {\n", fn(g, t, "to_name"),
                  t->ctype);
        for (const svc_enumval *e = t->decl->values; e; e = e->next)
            sb_printf(o, "    case %s:\n        return \"%.*s\";\n", gen_enum_const(g, t, e),
                      e->name.n, e->name.p);
        sb_puts(o, "    }\n    return NULL;\n}\n");
    }
    if (t->need & NEED_ENUM_FROM_NAME) {
        sb_printf(o, "\nbool %s(shmrpc_str s, %s *v)\n{\n", fn(g, t, "from_name"), t->ctype);
        sb_printf(o,
                  "    static const struct {\n        const char *name;\n        %s value;\n"
                  "    } names[] = {\n",
                  t->ctype);
        for (const svc_enumval *e = t->decl->values; e; e = e->next)
            sb_printf(o, "        {\"%.*s\", %s},\n", e->name.n, e->name.p,
                      gen_enum_const(g, t, e));
        sb_puts(o, "    };\n"
                   "    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)\n"
                   "        if (strlen(names[i].name) == s.len && memcmp(names[i].name, s.ptr, "
                   "s.len) == 0) {\n"
                   "            *v = names[i].value;\n"
                   "            return true;\n"
                   "        }\n"
                   "    return false;\n}\n");
    }
}

static void oom(sbuf *o, const char *ind, const char *r)
{
    sb_printf(o, "%s    %s->why = \"out of memory\";\n%s    return SHMRPC_ENOMEM;\n%s}\n", ind, r,
              ind, ind);
}

static void mp_write_fn(gen *g, sbuf *o, const gtype *t)
{
    sb_printf(o, "\n%svoid %s(msgpack_packer *pk, %s)\n{\n", linkage(t), fn(g, t, "mp_write"),
              const_ptr(g, t->ctype, "v"));
    switch (t->kind) {
    case GK_STRUCT:
        sb_printf(o, "    msgpack_pack_array(pk, %d);\n", t->n_fields);
        if (t->fields == NULL) sb_puts(o, "    (void)v;\n");
        for (const svc_field *f = t->fields; f; f = f->next)
            gen_mp_write(g, o, "    ", &fcx, gen_type(g, f->type),
                         S("v->%.*s", f->name.n, f->name.p));
        break;
    case GK_ENUM:
        sb_puts(o, "    msgpack_pack_int64(pk, (int64_t)*v);\n");
        break;
    case GK_LIST:
        sb_puts(o,
                "    msgpack_pack_array(pk, v->len);\n    for (size_t i = 0; i < v->len; i++) {\n");
        gen_mp_write(g, o, "        ", &fcx, t->elem, "v->items[i]");
        sb_puts(o, "    }\n");
        break;
    case GK_MAP:
        sb_puts(o,
                "    msgpack_pack_map(pk, v->len);\n    for (size_t i = 0; i < v->len; i++) {\n");
        gen_mp_write(g, o, "        ", &fcx, t->key, "v->items[i].key");
        gen_mp_write(g, o, "        ", &fcx, t->elem, "v->items[i].value");
        sb_puts(o, "    }\n");
        break;
    case GK_OPT:
        if (t->elem->kind == GK_STRUCT) {
            sb_puts(
                o,
                "    if (*v == NULL) {\n        msgpack_pack_nil(pk);\n        return;\n    }\n");
            gen_mp_write(g, o, "    ", &fcx, t->elem, "**v");
        } else {
            sb_puts(o,
                    "    if (!v->has) {\n        msgpack_pack_nil(pk);\n        return;\n    }\n");
            gen_mp_write(g, o, "    ", &fcx, t->elem, "v->value");
        }
        break;
    case GK_SCALAR:
        break;
    }
    sb_puts(o, "}\n");
}

static void mp_read_struct(gen *g, sbuf *o, const gtype *t)
{
    const char *noun = t->is_args ? "arguments" : "fields";
    /* Failures of the struct as a whole name no field of their own: the field or
     * parameter that holds the struct does, or for the arguments, nothing. */
    sb_puts(o, "    uint32_t n;\n    int rc = shmrpc_mp_read_array(r, &n);\n"
               "    if (rc != 0)\n        return rc;\n");
    sb_printf(o,
              "    if (n != %d) {\n        r->why = \"expected %d %s\";\n"
              "        return SHMRPC_EINVAL;\n    }\n",
              t->n_fields, t->n_fields,
              t->n_fields == 1 ? (t->is_args ? "argument" : "field") : noun);
    if (!t->is_args)
        sb_puts(
            o, "    if (++r->depth > SHMRPC_MAX_DEPTH) {\n        r->why = \"nested too deeply\";\n"
               "        return SHMRPC_EINVAL;\n    }\n");
    bool uses_arena = false;
    for (const svc_field *f = t->fields; f; f = f->next) {
        const gtype *ft = gen_type(g, f->type);
        uses_arena |= ft->kind != GK_SCALAR;
        gen_mp_read(g, o, "    ", &fcx, ft, S("v->%.*s", f->name.n, f->name.p),
                    S("return shmrpc_mp_fail_at(r, rc, \"%s\");", field_label(g, t, f)));
    }
    if (!uses_arena) sb_puts(o, "    (void)a;\n");
    if (t->n_fields == 0) sb_puts(o, "    (void)v;\n");
    if (!t->is_args) sb_puts(o, "    r->depth--;\n");
}

/* Room for the n items of a list or map, not zeroed: the loop that follows writes each
 * one before anything reads it. n may come from the wire, so the size is checked. */
static void items_alloc(gen *g, sbuf *o, const char *ctype, const char *arena, const char *r)
{
    sb_printf(o, "    %s = shmrpc_arena_alloc_items(%s, n, sizeof *items, _Alignof(%s));\n",
              ptr(g, ctype, "items"), arena, ctype);
    sb_puts(o, "    if (items == NULL) {\n");
    oom(o, "    ", r);
}

static void mp_read_fn(gen *g, sbuf *o, const gtype *t)
{
    sb_printf(o, "\n%sint %s(shmrpc_mp_reader *r, shmrpc_arena *a, %s)\n{\n", linkage(t),
              fn(g, t, "mp_read"), ptr(g, t->ctype, "v"));
    const cx ret = fcx;
    switch (t->kind) {
    case GK_STRUCT:
        mp_read_struct(g, o, t);
        break;
    case GK_ENUM:
        sb_puts(o, "    (void)a;\n    int64_t tmp;\n"
                   "    int rc = shmrpc_mp_read_int(r, INT32_MIN, INT32_MAX, &tmp);\n"
                   "    if (rc != 0)\n        return rc;\n    switch (tmp) {\n");
        for (const svc_enumval *e = t->decl->values; e; e = e->next)
            sb_printf(o, "    case %lld:\n", (long long)e->value);
        sb_printf(o,
                  "        *v = (%s)tmp;\n        return 0;\n    default:\n"
                  "        r->why = \"not a value of enum %s\";\n        return SHMRPC_EINVAL;\n   "
                  " }\n}\n",
                  t->ctype, t->display);
        return;
    case GK_LIST:
        sb_printf(o,
                  "    uint32_t n;\n    int rc = shmrpc_mp_read_array_of(r, %zu, &n);\n"
                  "    if (rc != 0)\n        return rc;\n",
                  gen_mp_min_size(g, t->elem));
        items_alloc(g, o, t->elem->ctype, "a", "r");
        sb_puts(o, "    for (uint32_t i = 0; i < n; i++) {\n");
        gen_mp_read(g, o, "        ", &ret, t->elem, "items[i]", "return rc;");
        sb_puts(o, "    }\n    v->items = items;\n    v->len = n;\n");
        break;
    case GK_MAP: {
        size_t kmin = gen_mp_min_size(g, t->key), vmin = gen_mp_min_size(g, t->elem);
        sb_printf(o,
                  "    uint32_t n;\n    int rc = shmrpc_mp_read_map_of(r, %zu, &n);\n"
                  "    if (rc != 0)\n        return rc;\n",
                  vmin > MIN_SIZE_CAP - kmin ? (size_t)MIN_SIZE_CAP : kmin + vmin);
        items_alloc(g, o, S("%s_entry", t->ctype), "a", "r");
        sb_puts(o, "    for (uint32_t i = 0; i < n; i++) {\n");
        gen_mp_read(g, o, "        ", &ret, t->key, "items[i].key", "return rc;");
        gen_mp_read(g, o, "        ", &ret, t->elem, "items[i].value", "return rc;");
        sb_puts(o, "    }\n    v->items = items;\n    v->len = n;\n");
        break;
    }
    case GK_OPT:
        sb_puts(o, "    int rc = shmrpc_mp_try_nil(r);\n    if (rc < 0)\n        return rc;\n");
        if (t->elem->kind == GK_STRUCT) {
            sb_puts(o, "    *v = NULL;\n    if (rc == 1)\n        return 0;\n");
            sb_printf(o, "    %s *p = shmrpc_arena_alloc(a, sizeof *p, _Alignof(%s));\n",
                      t->elem->ctype, t->elem->ctype);
            sb_puts(o, "    if (p == NULL) {\n");
            oom(o, "    ", "r");
            gen_mp_read(g, o, "    ", &ret, t->elem, "*p", "return rc;");
            sb_puts(o, "    *v = p;\n");
        } else {
            sb_puts(o, "    memset(v, 0, sizeof *v);\n    if (rc == 1)\n        return 0;\n"
                       "    v->has = true;\n");
            if (t->elem->kind == GK_SCALAR) sb_puts(o, "    (void)a;\n");
            gen_mp_read(g, o, "    ", &ret, t->elem, "v->value", "return rc;");
        }
        break;
    case GK_SCALAR:
        break;
    }
    sb_puts(o, "    return 0;\n}\n");
}

static void json_write_fn(gen *g, sbuf *o, const gtype *t)
{
    sb_printf(o, "\n%sshmrpc_json *%s(%s)\n{\n", linkage(t), fn(g, t, "json_write"),
              const_ptr(g, t->ctype, "v"));
    const char *fail = "        shmrpc_json_free(o);\n        return NULL;\n    }\n";
    switch (t->kind) {
    case GK_STRUCT:
        sb_puts(o, "    shmrpc_json *o = shmrpc_json_object();\n    if (o == NULL)\n        return "
                   "NULL;\n");
        if (t->fields == NULL) {
            sb_puts(o, "    (void)v;\n    return o;\n}\n");
            return;
        }
        sb_puts(o, "    if (");
        for (const svc_field *f = t->fields; f; f = f->next)
            sb_printf(
                o, "%sshmrpc_json_set(o, \"%.*s\", %s) != 0", f == t->fields ? "" : " ||\n        ",
                f->name.n, f->name.p,
                gen_json_write_expr(g, gen_type(g, f->type), S("v->%.*s", f->name.n, f->name.p)));
        sb_printf(o, ") {\n%s", fail);
        break;
    case GK_ENUM:
        sb_printf(o, "    const char *name = %s(*v);\n", fn(g, t, "to_name"));
        sb_puts(o, "    return name ? shmrpc_json_string(shmrpc_str_c(name)) : NULL;\n}\n");
        return;
    case GK_LIST:
        sb_puts(
            o,
            "    shmrpc_json *o = shmrpc_json_array();\n    if (o == NULL)\n        return NULL;\n"
            "    for (size_t i = 0; i < v->len; i++)\n");
        sb_printf(o, "        if (shmrpc_json_append(o, %s) != 0) {\n    %s",
                  gen_json_write_expr(g, t->elem, "v->items[i]"),
                  "        shmrpc_json_free(o);\n            return NULL;\n        }\n");
        break;
    case GK_MAP: {
        const gtype *k = t->key;
        const char *val = gen_json_write_expr(g, t->elem, "v->items[i].value");
        sb_puts(
            o,
            "    shmrpc_json *o = shmrpc_json_object();\n    if (o == NULL)\n        return NULL;\n"
            "    for (size_t i = 0; i < v->len; i++) {\n");
        const char *set;
        if (k->kind == GK_ENUM) {
            sb_printf(o, "        const char *key = %s(v->items[i].key);\n", fn(g, k, "to_name"));
            set = S("key == NULL || shmrpc_json_set(o, key, %s) != 0", val);
        } else if (k->scalar == SVC_T_STRING) {
            set = S("shmrpc_json_setn(o, v->items[i].key, %s) != 0", val);
        } else {
            bool sig = gen_is_signed(k->scalar);
            sb_puts(o, "        char key[24];\n");
            set = S("shmrpc_json_setn(o, shmrpc_json_%s_key(v->items[i].key, key), %s) != 0",
                    sig ? "int" : "uint", val);
        }
        sb_printf(o,
                  "        if (%s) {\n            shmrpc_json_free(o);\n            return NULL;\n"
                  "        }\n    }\n",
                  set);
        break;
    }
    case GK_OPT:
        if (t->elem->kind == GK_STRUCT)
            sb_printf(
                o, "    if (*v == NULL)\n        return shmrpc_json_null();\n    return %s;\n}\n",
                gen_json_write_expr(g, t->elem, "**v"));
        else
            sb_printf(o,
                      "    if (!v->has)\n        return shmrpc_json_null();\n    return %s;\n}\n",
                      gen_json_write_expr(g, t->elem, "v->value"));
        return;
    case GK_SCALAR:
        break;
    }
    sb_puts(o, "    return o;\n}\n");
}

static void json_read_struct(gen *g, sbuf *o, const gtype *t)
{
    sb_puts(o, "    size_t n, seen = 0;\n    int rc = shmrpc_json_read_object(r, j, &n);\n"
               "    if (rc != 0)\n        return rc;\n");
    if (t->fields) sb_puts(o, "    const shmrpc_json *f;\n");
    for (const svc_field *f = t->fields; f; f = f->next) {
        const gtype *ft = gen_type(g, f->type);
        const char *label = field_label(g, t, f);
        sb_printf(o, "    f = shmrpc_json_get(j, \"%.*s\");\n", f->name.n, f->name.p);
        if (ft->kind == GK_OPT)
            sb_puts(o, "    seen += f != NULL;\n");
        else
            sb_printf(o,
                      "    if (f == NULL) {\n        r->why = \"missing\";\n"
                      "        return shmrpc_json_fail_at(r, SHMRPC_EINVAL, \"%s\");\n    }\n"
                      "    seen++;\n",
                      label);
        gen_json_read(g, o, "    ", &fcx, ft, "f", S("v->%.*s", f->name.n, f->name.p),
                      S("return shmrpc_json_fail_at(r, rc, \"%s\");", label));
    }
    if (t->fields == NULL) sb_puts(o, "    (void)v;\n");
    sb_printf(o,
              "    if (seen != n) {\n        r->why = \"unknown %s\";\n"
              "        return SHMRPC_EINVAL;\n    }\n",
              t->is_args ? "argument" : "field");
}

static void json_read_fn(gen *g, sbuf *o, const gtype *t)
{
    sb_printf(o, "\n%sint %s(shmrpc_json_reader *r, const shmrpc_json *j, %s)\n{\n", linkage(t),
              fn(g, t, "json_read"), ptr(g, t->ctype, "v"));
    switch (t->kind) {
    case GK_STRUCT:
        json_read_struct(g, o, t);
        break;
    case GK_ENUM:
        sb_puts(o, "    shmrpc_str s;\n    int rc = shmrpc_json_read_str(r, j, &s);\n"
                   "    if (rc != 0)\n        return rc;\n");
        sb_printf(o,
                  "    if (!%s(s, v)) {\n        r->why = \"not a value of enum %s\";\n"
                  "        return SHMRPC_EINVAL;\n    }\n",
                  fn(g, t, "from_name"), t->display);
        break;
    case GK_LIST:
        sb_puts(o, "    size_t n;\n    int rc = shmrpc_json_read_array(r, j, &n);\n"
                   "    if (rc != 0)\n        return rc;\n");
        items_alloc(g, o, t->elem->ctype, "r->arena", "r");
        sb_puts(o, "    for (size_t i = 0; i < n; i++) {\n");
        gen_json_read(g, o, "        ", &fcx, t->elem, "shmrpc_json_at(j, i)", "items[i]",
                      "return rc;");
        sb_puts(o, "    }\n    v->items = items;\n    v->len = n;\n");
        break;
    case GK_MAP: {
        const gtype *k = t->key;
        sb_puts(o, "    size_t n;\n    int rc = shmrpc_json_read_object(r, j, &n);\n"
                   "    if (rc != 0)\n        return rc;\n");
        items_alloc(g, o, S("%s_entry", t->ctype), "r->arena", "r");
        /* An iterator of its own: walking the values' maps must not restart this walk. */
        sb_puts(o,
                "    shmrpc_json_iter it;\n    shmrpc_json_iter_init(&it, j);\n"
                "    shmrpc_str key;\n    const shmrpc_json *val;\n    size_t i = 0;\n"
                "    while (i < n && (rc = shmrpc_json_iter_next(r, &it, &key, &val)) == 1) {\n");
        if (k->kind == GK_ENUM) {
            sb_printf(o,
                      "        if (!%s(key, &items[i].key)) {\n"
                      "            r->why = \"not a value of enum %s\";\n"
                      "            return SHMRPC_EINVAL;\n        }\n",
                      fn(g, k, "from_name"), k->display);
        } else if (k->scalar == SVC_T_STRING) {
            sb_puts(o, "        items[i].key = key;\n");
        } else {
            narrow(g, o, "        ", &fcx, k, "items[i].key", "return rc;",
                   "shmrpc_json_key_%s(r, key, %s, %s)");
        }
        gen_json_read(g, o, "        ", &fcx, t->elem, "val", "items[i].value", "return rc;");
        sb_puts(o, "        i++;\n    }\n    if (rc < 0)\n        return rc;\n"
                   "    v->items = items;\n    v->len = i;\n");
        break;
    }
    case GK_OPT:
        if (t->elem->kind == GK_STRUCT) {
            sb_puts(o, "    *v = NULL;\n    if (shmrpc_json_is_null(j))\n        return 0;\n");
            sb_printf(o, "    %s *p = shmrpc_arena_alloc(r->arena, sizeof *p, _Alignof(%s));\n",
                      t->elem->ctype, t->elem->ctype);
            sb_puts(o, "    if (p == NULL) {\n");
            oom(o, "    ", "r");
            sb_puts(o, "    int rc;\n");
            gen_json_read(g, o, "    ", &fcx, t->elem, "j", "*p", "return rc;");
            sb_puts(o, "    *v = p;\n");
        } else {
            sb_puts(
                o,
                "    memset(v, 0, sizeof *v);\n    if (shmrpc_json_is_null(j))\n        return 0;\n"
                "    v->has = true;\n    int rc;\n");
            gen_json_read(g, o, "    ", &fcx, t->elem, "j", "v->value", "return rc;");
        }
        break;
    case GK_SCALAR:
        break;
    }
    sb_puts(o, "    return 0;\n}\n");
}

void gen_codec_prototypes(gen *g, sbuf *o, bool args)
{
    for (gtype *t = g->types; t; t = t->next)
        if (t->need && t->is_args == args) prototypes(g, o, t);
}

void gen_codec_functions(gen *g, sbuf *o, bool args)
{
    for (gtype *t = g->types; t; t = t->next) {
        if (t->is_args != args) continue;
        if (t->kind == GK_ENUM) enum_names(g, o, t);
        if (t->need & NEED_MP_WRITE) mp_write_fn(g, o, t);
        if (t->need & NEED_MP_READ) mp_read_fn(g, o, t);
        if (t->need & NEED_JSON_WRITE) json_write_fn(g, o, t);
        if (t->need & NEED_JSON_READ) json_read_fn(g, o, t);
    }
}
