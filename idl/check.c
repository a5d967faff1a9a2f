/* SPDX-License-Identifier: MIT */
/* The semantic checks of a parsed .svc file. Errors are gathered, then printed sorted by
 * position, so a file's problems read top to bottom whichever pass found them. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "near.h"
#include "parse_int.h"

typedef struct cerr {
    int line, col, seq;
    const char *msg;
    struct cerr *next;
} cerr;

/* What a type name stands for, and its state in the search for by-value cycles. */
typedef struct tinfo {
    svc_decl *decl;
    int color; /* 0: not visited, 1: on the search path, 2: done */
    int pos;   /* its frame on the search path while color is 1 */
} tinfo;

typedef struct check {
    svc_arena *a;
    svc_diag *d;
    svc_service *s;
    cerr *errs;
    int nerrs;
    bool oom;
    svc_ntab types; /* type name -> tinfo of its first declaration */
    const char *S;  /* svc_snake(service name) */
} check;

static void err(check *c, svc_tok at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void err(check *c, svc_tok at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    cerr *e = svc_arena_alloc(c->a, sizeof *e);
    char *msg = n < 0 ? NULL : svc_arena_alloc(c->a, (size_t)n + 1);
    if (!e || !msg) {
        c->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
    e->line = at.line;
    e->col = at.col;
    e->seq = c->nerrs++;
    e->msg = msg;
    e->next = c->errs;
    c->errs = e;
}

static int cerr_cmp(const void *x, const void *y)
{
    const cerr *a = *(const cerr *const *)x, *b = *(const cerr *const *)y;
    if (a->line != b->line) return a->line < b->line ? -1 : 1;
    if (a->col != b->col) return a->col < b->col ? -1 : 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

static void flush_errors(check *c)
{
    cerr **v = c->nerrs ? svc_arena_alloc(c->a, sizeof *v * (size_t)c->nerrs) : NULL;
    if (c->nerrs && !v) {
        c->oom = true;
    } else {
        int i = 0;
        for (cerr *e = c->errs; e; e = e->next)
            v[i++] = e;
        if (i) qsort(v, (size_t)i, sizeof *v, cerr_cmp);
        for (int k = 0; k < i; k++)
            svc_error(c->d, v[k]->line, v[k]->col, "%s", v[k]->msg);
    }
    if (c->oom) svc_error(c->d, 0, 0, "out of memory");
}

/* ---- the name table ---- */

static const void *ntab_get(const svc_ntab *t, const char *key)
{
    return svc_ntab_get(t, key);
}

/* Adds key -> val unless key is there; returns what was there, or NULL. */
static const void *ntab_put(check *c, svc_ntab *t, const char *key, const void *val)
{
    return svc_ntab_put(c->a, t, key, (void *)val, &c->oom);
}

/* ---- names ---- */

static const char *snake(check *c, svc_tok t)
{
    const char *s = svc_snake(c->a, t.p, t.n);
    if (!s) c->oom = true;
    return s ? s : "";
}

static const char *text(check *c, svc_tok t)
{
    const char *s = svc_arena_strndup(c->a, t.p, (size_t)t.n);
    if (!s) c->oom = true;
    return s;
}

static bool tok_eq(svc_tok a, svc_tok b)
{
    return a.n == b.n && memcmp(a.p, b.p, (size_t)a.n) == 0;
}

static bool tok_is(svc_tok t, const char *s)
{
    return (size_t)t.n == strlen(s) && memcmp(t.p, s, (size_t)t.n) == 0;
}

/* C reserves a leading '_' and C++ any '__'; a trailing '_' would make a '__' where the
 * generated code joins a name to another ("echo_Point_" + "_mp_write"), and the names
 * the client stubs give their own locals end in '_'. */
static bool is_reserved_c(svc_tok t)
{
    if (t.n > 0 && (t.p[0] == '_' || t.p[t.n - 1] == '_')) return true;
    for (int i = 0; i + 1 < t.n; i++)
        if (t.p[i] == '_' && t.p[i + 1] == '_') return true;
    return false;
}

enum name_problem {
    NAME_OK,
    NAME_BUILTIN, /* a type named like a built-in type */
    NAME_KEYWORD,
    NAME_RESERVED,
    NAME_MACRO,  /* a predefined macro: "unix" */
    NAME_C_TYPE, /* a field or parameter named like a C type: "size_t" */
};

/* What is wrong with a name as a C name; a field or parameter is a plain C identifier
 * in the generated code, where types, methods and enum values get a prefix. */
static enum name_problem name_problem(svc_tok t, bool is_type, bool is_plain)
{
    if (is_type && svc_builtin_by_name(t.p, t.n)) return NAME_BUILTIN;
    if (svc_is_c_keyword(t.p, t.n)) return NAME_KEYWORD;
    if (is_reserved_c(t)) return NAME_RESERVED;
    if (svc_is_c_macro(t.p, t.n)) return NAME_MACRO;
    if (is_plain && svc_is_c_type_name(t.p, t.n)) return NAME_C_TYPE;
    return NAME_OK;
}

/* What each problem is, after the name in quotes. */
static const char *const problem_text[] = {
    [NAME_BUILTIN] = "is a built-in type name",
    [NAME_KEYWORD] = "is a C keyword and cannot be used as a name",
    [NAME_RESERVED] = "is not a name: a name may not begin or end with '_' or hold '__'",
    [NAME_MACRO] = "is a predefined macro in C and cannot be used as a name",
    [NAME_C_TYPE] = "is a C type name and cannot be used as a name",
};

/* Reports a name unfit for C; true if it is fine. */
static bool check_name(check *c, svc_tok t, bool is_type, bool is_plain)
{
    enum name_problem p = name_problem(t, is_type, is_plain);
    if (p != NAME_OK) err(c, t, "'%.*s' %s", t.n, t.p, problem_text[p]);
    return p == NAME_OK;
}

/* The service's snake name prefixes every generated name, so it must not be one that the
 * runtime or msgpack-c already prefix theirs with. */
static void check_service_name(check *c)
{
    svc_tok t = c->s->name;
    if (!check_name(c, t, false, false)) return;
    static const char *const taken[][2] = {{"shmrpc", "the shmrpc runtime"},
                                           {"msgpack", "msgpack-c"}};
    for (size_t i = 0; i < sizeof taken / sizeof taken[0]; i++) {
        size_t n = strlen(taken[i][0]);
        if (strncmp(c->S, taken[i][0], n) == 0 && (c->S[n] == '\0' || c->S[n] == '_')) {
            err(c, t, "service '%.*s' would prefix its C names with '%s_', like %s", t.n, t.p, c->S,
                taken[i][1]);
            return;
        }
    }
}

/* A parameter is in scope in the client stub, which calls shmrpc_*, msgpack_* and the
 * service's own functions (echo_*, Echo_*, ECHO_*): those prefixes are the C namespaces of
 * the libraries and of the service, as '_' is C's, and a parameter in one could hide a
 * callee. Any other name is free: the stubs' own names end in '_', which no name may.
 * Returns the length of the prefix the name begins with, or 0. */
static int hides_a_callee(check *c, svc_tok t)
{
    char *low = svc_arena_strndup(c->a, t.p, (size_t)t.n);
    if (!low) {
        c->oom = true;
        return false;
    }
    for (char *w = low; *w; w++)
        if (*w >= 'A' && *w <= 'Z') *w = (char)(*w - 'A' + 'a');
    size_t ns = strlen(c->S), nw = (size_t)c->s->name.n;
    if (strncmp(low, "shmrpc_", 7) == 0) return 7;
    if (strncmp(low, "msgpack_", 8) == 0) return 8;
    if (ns && strncmp(low, c->S, ns) == 0 && low[ns] == '_') return (int)ns + 1;
    if (strlen(low) > nw && strncasecmp(low, c->s->name.p, nw) == 0 && low[nw] == '_')
        return (int)nw + 1;
    return 0;
}

/* ---- service options ---- */

static bool valid_service_name(const char *s)
{
    for (; *s; s++) {
        char ch = *s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return false;
    }
    return true;
}

static void check_port(check *c, const svc_option *o)
{
    svc_tok v = o->value;
    const char *digits = v.p + (v.n > 0 && v.p[0] == '-');
    if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X'))
        err(c, v, "port '%.*s' must be written in decimal", v.n, v.p);
    else if (c->s->port < 1 || c->s->port > 65535)
        err(c, v, "port %.*s is outside 1..65535", v.n, v.p);
}

static void check_svc_name(check *c, const svc_option *o)
{
    const char *name = c->s->svc_name ? c->s->svc_name : "";
    svc_tok v = o->value;
    size_t n = strlen(name);
    if (!name[0] && !memchr(v.p, '\0', (size_t)v.n)) {
        err(c, v, "the service's name must not be empty");
    } else if (n > SVC_MAX_SHM_NAME) { /* not quoted: the caret shows it */
        err(c, v, "service name of %zu bytes is longer than %d, the longest shm:// name", n,
            SVC_MAX_SHM_NAME);
    } else if (name[0] == '.') {
        err(c, v, "service name must not start with '.'");
    } else if (!valid_service_name(name) || memchr(v.p, '\0', (size_t)v.n)) {
        const char *shown = svc_printable(c->a, v.p, v.n);
        err(c, v, "service name %s may only hold letters, digits, '_', '-' and '.'",
            shown ? shown : "?");
    }
}

/* A service option: its name, its kind, its check, and what the walk has seen of it. */
typedef struct opt_rule {
    const char *name;
    bool is_string;
    void (*check)(check *c, const svc_option *o);
    const svc_option *first;
    bool written;
} opt_rule;

static void check_options(check *c)
{
    opt_rule rules[] = {{"port", false, check_port, NULL, false},
                        {"name", true, check_svc_name, NULL, false}};
    size_t n = sizeof rules / sizeof rules[0];
    for (const svc_option *o = c->s->options; o; o = o->next) {
        opt_rule *r = NULL;
        for (size_t k = 0; k < n; k++)
            if (tok_is(o->name, rules[k].name)) r = &rules[k];
        if (r == NULL) {
            err(c, o->name, "unknown service option '%.*s'", o->name.n, o->name.p);
            continue;
        }
        r->written = true;
        if (o->is_string != r->is_string)
            err(c, o->value, "option '%s' takes a %s", r->name, r->is_string ? "string" : "number");
        else if (r->first)
            err(c, o->name, "duplicate %s option (first at %d:%d)", r->name, r->first->name.line,
                r->first->name.col);
        else
            r->check(c, r->first = o);
    }
    svc_tok sn = c->s->name;
    for (size_t k = 0; k < n; k++)
        if (!rules[k].written) err(c, sn, "service '%.*s' has no %s", sn.n, sn.p, rules[k].name);
}

/* ---- types ---- */

static bool is_integer(svc_type_kind k)
{
    return k >= SVC_T_I8 && k <= SVC_T_U64;
}

static void check_map_key(check *c, const svc_type *k)
{
    if (!k || k->kind == SVC_T_VOID || (k->kind == SVC_T_NAMED && !k->decl))
        return; /* reported already */
    if (k->kind == SVC_T_STRING || is_integer(k->kind) ||
        (k->kind == SVC_T_NAMED && k->decl->kind == SVC_DECL_ENUM))
        return;
    const char *s = svc_type_str(c->a, k);
    err(c, k->tok, "invalid map key type '%s': keys must be string, an integer type or an enum",
        s ? s : "?");
}

/* Whether name is nearer to typo than *best (d_best apart), or as near and first in
 * byte order (so that the suggestion does not depend on a hash table's order). */
static void nearer(const char *typo, const char *name, const char **best, int *d_best)
{
    if (!name || !shmrpc__near(typo, name)) return;
    int d = shmrpc__distance(typo, name);
    if (d < *d_best || (d == *d_best && strcmp(name, *best) < 0)) {
        *best = name;
        *d_best = d;
    }
}

/* "unknown type 'Pont'", and the declared or built-in type nearest to it, if one is. */
static void unknown_type(check *c, svc_tok t)
{
    const char *typo = text(c, t), *best = NULL;
    int d_best = 99;
    for (size_t i = 0; typo && i < c->types.cap; i++)
        nearer(typo, c->types.keys[i], &best, &d_best);
    size_t n;
    const svc_builtin *b = svc_builtins(&n);
    for (size_t i = 0; typo && i < n; i++)
        nearer(typo, b[i].name, &best, &d_best);
    if (best)
        err(c, t, "unknown type '%.*s'; did you mean '%s'?", t.n, t.p, best);
    else
        err(c, t, "unknown type '%.*s'", t.n, t.p);
}

/* Where a type is written, for what may stand there besides a value's type. */
typedef enum where {
    IN_VALUE,
    IN_PARAM_ALONE, /* a method's one parameter: stream<T> too */
    IN_RESULT,      /* a method's result: void and stream<T> too */
} where;

/* Resolves names and checks the type. */
static void check_type(check *c, svc_type *t, where at)
{
    if (!t) return;
    if (t->queue)
        err(c, t->tok,
            "'queue<T>' is no type: it declares a queue, 'queue<T> name;', among the "
            "service's members");
    switch (t->kind) {
    case SVC_T_VOID:
        if (at != IN_RESULT) err(c, t->tok, "'void' is only valid as a method's result type");
        break;
    case SVC_T_STREAM:
        if (at == IN_VALUE)
            err(c, t->tok, "'stream<T>' is only valid as a method's result or its one parameter");
        check_type(c, t->elem, IN_VALUE);
        break;
    case SVC_T_NAMED: {
        const tinfo *ti = ntab_get(&c->types, text(c, t->tok));
        if (ti)
            t->decl = ti->decl;
        else
            unknown_type(c, t->tok);
        break;
    }
    case SVC_T_LIST:
        check_type(c, t->elem, IN_VALUE);
        break;
    case SVC_T_OPTIONAL:
        check_type(c, t->elem, IN_VALUE);
        /* One null, not two: any? would need a form on the wire for "absent" apart from an
         * any that holds null, and msgpack has one nil. */
        if (t->elem && t->elem->kind == SVC_T_ANY)
            err(c, t->tok, "'any' holds null already: write 'any', not 'any?'");
        break;
    case SVC_T_MAP:
        check_type(c, t->key, IN_VALUE);
        check_type(c, t->elem, IN_VALUE);
        check_map_key(c, t->key);
        break;
    default:
        break;
    }
}

/* ---- declarations ---- */

static void declare_types(check *c)
{
    for (svc_decl *d = c->s->decls; d; d = d->next) {
        check_name(c, d->name, true, false);
        tinfo *ti = svc_arena_alloc(c->a, sizeof *ti);
        if (!ti) {
            c->oom = true;
            return;
        }
        ti->decl = d;
        const tinfo *first = ntab_put(c, &c->types, text(c, d->name), ti);
        if (first)
            err(c, d->name, "duplicate type '%.*s' (first declared at %d:%d)", d->name.n, d->name.p,
                first->decl->name.line, first->decl->name.col);
    }
}

/* Checks struct fields or method parameters; what names the struct or method. */
static void check_fields(check *c, svc_field *fields, const char *what, svc_tok owner, bool params)
{
    svc_ntab seen = {0};
    for (svc_field *f = fields; f; f = f->next) {
        int taken = check_name(c, f->name, false, true) && params ? hides_a_callee(c, f->name) : 0;
        if (taken)
            err(c, f->name,
                "parameter name '%.*s' begins with '%.*s', a prefix of what the stub calls",
                f->name.n, f->name.p, taken, f->name.p);
        const svc_field *first = ntab_put(c, &seen, text(c, f->name), f);
        if (first)
            err(c, f->name, "duplicate %s '%.*s' in %s '%.*s' (first declared at %d:%d)",
                params ? "parameter" : "field", f->name.n, f->name.p, what, owner.n, owner.p,
                first->name.line, first->name.col);
        check_type(c, f->type, params && f == fields && !f->next ? IN_PARAM_ALONE : IN_VALUE);
    }
}

static void check_enum(check *c, svc_decl *d)
{
    if (!d->values) {
        err(c, d->name, "enum '%.*s' has no values", d->name.n, d->name.p);
        return;
    }
    svc_ntab names = {0}, values = {0};
    for (svc_enumval *v = d->values; v; v = v->next) {
        svc_tok at = v->explicit_value ? v->value_tok : v->name;
        check_name(c, v->name, false, false);
        const svc_enumval *first = ntab_put(c, &names, text(c, v->name), v);
        if (first)
            err(c, v->name,
                "duplicate enum value name '%.*s' in enum '%.*s' (first declared at %d:%d)",
                v->name.n, v->name.p, d->name.n, d->name.p, first->name.line, first->name.col);
        if (v->value < INT32_MIN || v->value > INT32_MAX) {
            err(c, at, "enum value '%.*s' = %" PRId64 " does not fit in int32", v->name.n,
                v->name.p, v->value);
            continue;
        }
        const char *key = svc_arena_printf(c->a, "%" PRId64, v->value);
        const svc_enumval *same = ntab_put(c, &values, key, v);
        if (same)
            err(c, at, "duplicate enum value %" PRId64 " in enum '%.*s' ('%.*s' already has it)",
                v->value, d->name.n, d->name.p, same->name.n, same->name.p);
    }
}

static void check_decls(check *c)
{
    for (svc_decl *d = c->s->decls; d; d = d->next) {
        if (d->kind == SVC_DECL_STRUCT)
            check_fields(c, d->fields, "struct", d->name, false);
        else
            check_enum(c, d);
    }
}

/* ---- methods ---- */

static svc_encoding encoding_of(svc_tok name, bool *known)
{
    *known = true;
    if (tok_is(name, "msgpack")) return SVC_ENC_MSGPACK;
    if (tok_is(name, "json")) return SVC_ENC_JSON;
    if (tok_is(name, "raw")) return SVC_ENC_RAW;
    if (tok_is(name, "pickle")) return SVC_ENC_PICKLE;
    if (tok_is(name, "marshal")) return SVC_ENC_MARSHAL;
    *known = false;
    return SVC_ENC_MSGPACK;
}

/* A method's annotations: one encoding at most, and @idempotent, which only a method takes
 * (what is a retry of a queue's or a map's?); kind is "method", "queue" or "map". */
static void check_annots(check *c, svc_method *m, const char *kind)
{
    const svc_annot *first = NULL, *idem = NULL;
    m->enc = SVC_ENC_MSGPACK;
    m->idempotent = false;
    for (const svc_annot *an = m->annots; an; an = an->next) {
        svc_tok at = an->name; /* point at the '@' */
        at.col--;
        bool known;
        svc_encoding enc = encoding_of(an->name, &known);
        if (tok_is(an->name, "idempotent")) {
            if (idem)
                err(c, at, "duplicate annotation '@idempotent'");
            else if (strcmp(kind, "method") != 0)
                err(c, at,
                    "@idempotent is for methods only (a client retries their calls), not %s "
                    "'%.*s'",
                    kind, m->name.n, m->name.p);
            idem = an;
            m->idempotent = strcmp(kind, "method") == 0;
        } else if (!known)
            err(c, at,
                "unknown annotation '@%.*s' (known: @msgpack, @json, @raw, @pickle, @marshal, "
                "@idempotent)",
                an->name.n, an->name.p);
        else if (!first) {
            m->enc = enc;
            first = an;
        } else if (tok_eq(first->name, an->name))
            err(c, at, "duplicate annotation '@%.*s'", an->name.n, an->name.p);
        else
            err(c, at, "conflicting annotations ('@%.*s' and '@%.*s')", first->name.n,
                first->name.p, an->name.n, an->name.p);
    }
}

/* What a value of t is: a stream's item, or t. */
static const svc_type *item_of(const svc_type *t)
{
    return t && t->kind == SVC_T_STREAM ? t->elem : t;
}

static void check_raw(check *c, const svc_method *m)
{
    const svc_field *p = m->params;
    const svc_type *r = item_of(m->result), *a = p ? item_of(p->type) : NULL;
    bool ok = r && r->kind == SVC_T_BYTES && m->n_params == 1 && a && a->kind == SVC_T_BYTES;
    if (!ok)
        err(c, m->name,
            "@%s method '%.*s' must take exactly one bytes parameter and return bytes%s",
            svc_encoding_name(m->enc), m->name.n, m->name.p,
            m->enc == SVC_ENC_RAW ? " (either may be a stream<bytes>)" : "");
}

/* A method that streams: items of @msgpack or @raw, and never retried (a retry would
 * deliver again the items that came before the failure). */
static void check_streams(check *c, svc_method *m)
{
    m->server_stream = m->result && m->result->kind == SVC_T_STREAM;
    m->client_stream = m->n_params == 1 && m->params->type && m->params->type->kind == SVC_T_STREAM;
    if (!m->server_stream && !m->client_stream) return;
    if (m->enc != SVC_ENC_MSGPACK && m->enc != SVC_ENC_RAW)
        err(c, m->name, "streaming method '%.*s' is @%s: streams are @msgpack or @raw", m->name.n,
            m->name.p, svc_encoding_name(m->enc));
    if (m->idempotent)
        err(c, m->name,
            "streaming method '%.*s' is @idempotent: a stream is never retried (its items would "
            "come twice)",
            m->name.n, m->name.p);
}

static void check_methods(check *c)
{
    svc_ntab seen = {0};
    for (svc_method *m = c->s->methods; m; m = m->next) {
        check_name(c, m->name, false, false);
        const svc_method *first = ntab_put(c, &seen, text(c, m->name), m);
        if (first)
            err(c, m->name, "duplicate method '%.*s' (first declared at %d:%d)", m->name.n,
                m->name.p, first->name.line, first->name.col);
        check_annots(c, m, "method");
        check_type(c, m->result, IN_RESULT);
        check_fields(c, m->params, "method", m->name, true);
        if (svc_enc_is_raw(m->enc)) check_raw(c, m);
        check_streams(c, m);
    }
}

/* A map's key: what the shared map hashes, the msgpack of one value whose encoding has a
 * single form (so no floats, structs or containers). */
static void check_map_decl_key(check *c, const svc_method *m, const svc_type *k)
{
    if (!k || k->kind == SVC_T_VOID || (k->kind == SVC_T_NAMED && !k->decl))
        return; /* reported already */
    if (k->kind == SVC_T_STRING || k->kind == SVC_T_BYTES || is_integer(k->kind) ||
        (k->kind == SVC_T_NAMED && k->decl->kind == SVC_DECL_ENUM))
        return;
    const char *s = svc_type_str(c->a, k);
    err(c, k->tok,
        "invalid key type '%s' of map '%.*s': keys must be string, bytes, an integer type or "
        "an enum",
        s ? s : "?", m->name.n, m->name.p);
}

/* Maps as queues, below, with a key; found as "SERVICE-NAME.MAP", a map name of at most
 * 180 characters (SHMRPC_MAP_NAME_MAX, docs/map.md). */
static void check_maps(check *c, svc_ntab *seen, size_t prefix)
{
    for (svc_method *m = c->s->maps; m; m = m->next) {
        check_name(c, m->name, false, false);
        const svc_method *first = ntab_put(c, seen, text(c, m->name), m);
        if (first)
            err(c, m->name, "duplicate name '%.*s' (a method, queue or map at %d:%d)", m->name.n,
                m->name.p, first->name.line, first->name.col);
        check_annots(c, m, "map");
        if (m->enc != SVC_ENC_MSGPACK)
            err(c, m->name, "map '%.*s' is @msgpack only (@json and @raw are for methods)",
                m->name.n, m->name.p);
        svc_type *k = m->params ? m->params->type : NULL;
        check_type(c, k, IN_VALUE);
        check_map_decl_key(c, m, k);
        check_type(c, m->result, IN_VALUE);
        if (prefix + (size_t)m->name.n > 180)
            err(c, m->name, "map name '%s.%.*s' is longer than 180 characters", c->s->svc_name,
                m->name.n, m->name.p);
    }
}

/* A queue shares the methods' names (a name is a method, a queue or a map), carries one
 * value of its type per message in its encoding (@raw: bytes only), and is found as
 * "SERVICE-NAME.QUEUE", a queue name of at most 200 characters (docs/queue.md). */
static void check_queues(check *c)
{
    svc_ntab seen = {0};
    for (const svc_method *m = c->s->methods; m; m = m->next)
        ntab_put(c, &seen, text(c, m->name), m);
    size_t prefix = c->s->svc_name ? strlen(c->s->svc_name) + 1 : 0;
    for (svc_method *q = c->s->queues; q; q = q->next) {
        check_name(c, q->name, false, false);
        const svc_method *first = ntab_put(c, &seen, text(c, q->name), q);
        if (first)
            err(c, q->name, "duplicate name '%.*s' (a method, queue or map at %d:%d)", q->name.n,
                q->name.p, first->name.line, first->name.col);
        check_annots(c, q, "queue");
        if (q->enc == SVC_ENC_PICKLE || q->enc == SVC_ENC_MARSHAL)
            err(c, q->name, "@%s is for methods only (Python to Python), not queue '%.*s'",
                svc_encoding_name(q->enc), q->name.n, q->name.p);
        check_type(c, q->result, IN_VALUE);
        /* As a @raw method's result, a @raw queue's message is its bytes as they are. */
        if (q->enc == SVC_ENC_RAW && q->result && q->result->kind != SVC_T_BYTES)
            err(c, q->name,
                "@raw queue '%.*s' must carry bytes ('@raw queue<bytes> %.*s;'); @msgpack and "
                "@json carry any type",
                q->name.n, q->name.p, q->name.n, q->name.p);
        if (prefix + (size_t)q->name.n > 200)
            err(c, q->name, "queue name '%s.%.*s' is longer than 200 characters", c->s->svc_name,
                q->name.n, q->name.p);
    }
    check_maps(c, &seen, prefix);
}

/* ---- structs that contain themselves ---- */

typedef struct frame {
    tinfo *ti;
    svc_field *next; /* the next field to follow */
    svc_field *via;  /* the field followed to the frame above */
} frame;

/* The struct that a field holds by value, or NULL: lists, maps and optionals hold theirs
 * behind a pointer or a count, so they end a chain. */
static tinfo *held_struct(check *c, const svc_field *f)
{
    const svc_type *t = f->type;
    if (!t || t->kind != SVC_T_NAMED || !t->decl || t->decl->kind != SVC_DECL_STRUCT) return NULL;
    tinfo *ti = (tinfo *)ntab_get(&c->types, text(c, t->decl->name));
    return ti && ti->decl == t->decl ? ti : NULL;
}

static void report_cycle(check *c, frame *stack, int from, int top, svc_field *closing)
{
    size_t len = 1;
    for (int i = from; i <= top; i++)
        len += (size_t)stack[i].ti->decl->name.n + 4;
    len += (size_t)stack[from].ti->decl->name.n;
    char *path = svc_arena_alloc(c->a, len);
    if (!path) {
        c->oom = true;
        return;
    }
    char *o = path;
    for (int i = from; i <= top; i++) {
        svc_tok n = stack[i].ti->decl->name;
        o += sprintf(o, "%.*s -> ", n.n, n.p);
    }
    svc_tok n = stack[from].ti->decl->name;
    sprintf(o, "%.*s", n.n, n.p);
    svc_field *first = from < top ? stack[from].via : closing;
    err(c, first->type->tok,
        "struct '%.*s' contains itself (%s); add a list or an optional to break the cycle", n.n,
        n.p, path);
}

/* A depth-first search without recursion, so a long chain of structs cannot exhaust the
 * C stack; every edge back onto the search path is a cycle. */
static void check_cycles(check *c)
{
    frame *stack = svc_arena_alloc(c->a, sizeof *stack * ((size_t)c->s->n_decls + 1));
    if (!stack) {
        c->oom = true;
        return;
    }
    for (svc_decl *d = c->s->decls; d; d = d->next) {
        tinfo *root = (tinfo *)ntab_get(&c->types, text(c, d->name));
        if (d->kind != SVC_DECL_STRUCT || !root || root->decl != d || root->color) continue;
        int top = 0;
        stack[0] = (frame){root, d->fields, NULL};
        root->color = 1;
        root->pos = 0;
        while (top >= 0) {
            frame *fr = &stack[top];
            svc_field *f = fr->next;
            if (!f) {
                fr->ti->color = 2;
                top--;
                continue;
            }
            fr->next = f->next;
            tinfo *to = held_struct(c, f);
            if (!to || to->color == 2) continue;
            if (to->color == 1) {
                report_cycle(c, stack, to->pos, top, f);
                continue;
            }
            fr->via = f;
            to->color = 1;
            to->pos = ++top;
            stack[top] = (frame){to, to->decl->fields, NULL};
        }
    }
}

/* ---- generated C names ---- */

/* The C names made of the user's names (docs/svc-language.md, "C names"): a method is
 * echo_<snake>, a struct or enum echo_<Name> (its first letter upper case), an enum value
 * echo_<Name>_<value>. A method's name has no upper-case letter and a type's begins with
 * one, so the two never meet; the generator's own names (containers, the handlers, the
 * codec) take forms none of these can. What is left to check is two of the user's names
 * that C would spell alike: getX and get_x, or an enum value and a type. */

/* A name that the generated code will declare, and who asked for it. */
typedef struct cname {
    svc_tok src;
    const char *role; /* what of src's it names ("asynchronous stub"), or NULL: src itself */
} cname;

/* Claims the C name cn for src (the name of src's role, when not NULL); reports and
 * returns false if someone has it. */
static bool claim_as(check *c, svc_ntab *names, const char *cn, svc_tok src, const char *role)
{
    cname *me = svc_arena_alloc(c->a, sizeof *me);
    if (!me || !cn) {
        c->oom = true;
        return false;
    }
    me->src = src;
    me->role = role;
    const cname *other = ntab_put(c, names, cn, me);
    if (other) {
        const char *be =
            role ? svc_arena_printf(c->a, "have %s %s", strchr("aeiou", role[0]) ? "an" : "a", role)
                 : "be";
        const char *of = other->role ? svc_arena_printf(c->a, "the %s of ", other->role) : "";
        err(c, src, "'%.*s' would %s named '%s' in C, like %s'%.*s' at %d:%d", src.n, src.p,
            be ? be : "", cn, of ? of : "", other->src.n, other->src.p, other->src.line,
            other->src.col);
    }
    return !other;
}

static bool claim(check *c, svc_ntab *names, const char *cn, svc_tok src)
{
    return claim_as(c, names, cn, src, NULL);
}

static const char *cap(check *c, svc_tok t)
{
    const char *s = svc_cap(c->a, t.p, t.n);
    if (!s) c->oom = true;
    return s ? s : "";
}

static void claim_type(check *c, svc_ntab *names, const svc_decl *d)
{
    const tinfo *ti = ntab_get(&c->types, text(c, d->name));
    if (!ti || ti->decl != d || name_problem(d->name, true, false))
        return; /* a duplicate or an unfit name, reported already */
    const char *type = svc_arena_printf(c->a, "%s_%s", c->S, cap(c, d->name));
    if (!claim(c, names, type, d->name) || d->kind != SVC_DECL_ENUM) return;
    svc_ntab seen = {0};
    for (const svc_enumval *v = d->values; v; v = v->next) {
        if (name_problem(v->name, false, false) || ntab_put(c, &seen, text(c, v->name), v))
            continue;
        claim(c, names, svc_arena_printf(c->a, "%s_%.*s", type ? type : "", v->name.n, v->name.p),
              v->name);
    }
}

/* A method's stub, S_m, and its asynchronous pair, S_m_start and S_m_finish; a stream's
 * functions instead of those: S_m_open, and S_m_recv and S_m_write when its result streams,
 * S_m_send, S_m_done and S_m_read when its parameter does (a handler reads and writes, a
 * client sends and receives, so that a stream both ways names each once): so a method
 * m_start clashes with m's (both would define S_m_start). */
static void claim_method(check *c, svc_ntab *names, svc_ntab *seen, const svc_method *m)
{
    if (name_problem(m->name, false, false) || ntab_put(c, seen, text(c, m->name), m)) return;
    const char *stub = svc_arena_printf(c->a, "%s_%s", c->S, snake(c, m->name));
    const char *suffixes[6];
    int n = 0;
    if (!m->server_stream && !m->client_stream) {
        suffixes[n++] = "";
        suffixes[n++] = "_start";
        suffixes[n++] = "_finish";
    } else {
        suffixes[n++] = "_open";
    }
    if (m->server_stream) {
        suffixes[n++] = "_recv";
        suffixes[n++] = "_write";
    }
    if (m->client_stream) {
        suffixes[n++] = "_send";
        suffixes[n++] = "_done";
        suffixes[n++] = "_read";
    }
    bool stream = m->server_stream || m->client_stream;
    for (int i = 0; i < n; i++) {
        const char *role = stream ? "stream function" : i ? "asynchronous stub" : NULL;
        const char *cn = svc_arena_printf(c->a, "%s%s", stub ? stub : "", suffixes[i]);
        if (!claim_as(c, names, cn, m->name, role)) return;
    }
}

/* Visits types and methods in source order, so the earlier of two clashing names is the
 * one the message points back to. */
static void check_cnames(check *c)
{
    /* A queue's functions are the generator's (Echo_<snake(q)>_push), apart from every name
     * of the user's; only two queues can clash, getX and get_x. */
    svc_ntab qnames = {0}, queues = {0};
    const char *own = cap(c, c->s->name);
    for (const svc_method *q = c->s->queues; q; q = q->next)
        if (!name_problem(q->name, false, false) && !ntab_put(c, &queues, text(c, q->name), q))
            claim(c, &qnames, svc_arena_printf(c->a, "%s_%s_push", own, snake(c, q->name)),
                  q->name);
    /* A map's (Echo_<snake(m)>_get and the rest) clash with another map's the same way, or
     * with a queue's through the open function both have. */
    svc_ntab maps = {0};
    for (const svc_method *m = c->s->maps; m; m = m->next) {
        if (name_problem(m->name, false, false) || ntab_put(c, &maps, text(c, m->name), m) ||
            ntab_get(&queues, text(c, m->name)))
            continue; /* an unfit or duplicate name, reported already */
        const char *sn = snake(c, m->name);
        const svc_method *q = NULL;
        for (q = c->s->queues; q; q = q->next)
            if (!name_problem(q->name, false, false) && strcmp(snake(c, q->name), sn) == 0) break;
        if (q)
            err(c, m->name, "'%.*s' would be named '%s_%s_open' in C, like '%.*s' at %d:%d",
                m->name.n, m->name.p, own, sn, q->name.n, q->name.p, q->name.line, q->name.col);
        else
            claim(c, &qnames, svc_arena_printf(c->a, "%s_%s_get", own, sn), m->name);
    }
    svc_ntab names = {0}, methods = {0};
    const svc_decl *d = c->s->decls;
    const svc_method *m = c->s->methods;
    while (d || m) {
        if (d && (!m || d->name.p < m->name.p)) {
            claim_type(c, &names, d);
            d = d->next;
        } else {
            claim_method(c, &names, &methods, m);
            m = m->next;
        }
    }
}

/* ---- what the wire carries ---- */

/* Upper bounds of what msgpack adds around the strings of a handshake body (docs/wire.md):
 * per method entry, an array header, id, fingerprint, encoding and two string headers;
 * per type, a string header; per body, the other elements, the auth nonce at its largest
 * and the types' array header included. */
enum {
    HELLO_PER_METHOD = 1 + 5 + 3 + 9 + 1 + 3,
    HELLO_PER_TYPE = 3,
    HELLO_FIXED = 1 + 5 + 3 + 9 + 5 + 3 + 5 + 5 + 259 + 5
};

/* The length of m's signature as the method table carries it (svc_table_signature), or of
 * a queue's or map's type (svc_signature: they store it whole), walked no further than
 * SVC_MAX_SIGNATURE, and too_long (a format taking m's name and that limit) reported at m
 * when it is longer; 0 when out of memory (c->oom). */
static size_t signature_len(check *c, const svc_method *m, bool table, const char *too_long)
    __attribute__((format(printf, 4, 0)));

static size_t signature_len(check *c, const svc_method *m, bool table, const char *too_long)
{
    size_t len = 0;
    const char *text = table ? svc_table_signature(c->a, m, SVC_MAX_SIGNATURE, &len)
                             : svc_signature(c->a, m, SVC_MAX_SIGNATURE, &len);
    if (!text && len == 0) {
        c->oom = true;
        return 0;
    }
    if (len > SVC_MAX_SIGNATURE) err(c, m->name, too_long, m->name.n, m->name.p, SVC_MAX_SIGNATURE);
    return len;
}

/* A file that compiles must connect over tcp:// too: each method's signature and each
 * type's description at most 65535 bytes, the method table (methods naming their types,
 * each type described once) within one handshake body. Run on a tree known good (types
 * resolved, encodings set); each text is walked no further than the limit, and the walk
 * stops where the table passes its own, so the checks keep at most about 1 MiB of text. */
static void check_wire(check *c)
{
    size_t hello = HELLO_FIXED + (size_t)c->s->name.n;
    for (const svc_method *m = c->s->methods; m; m = m->next) {
        size_t len =
            signature_len(c, m, true,
                          "the signature of '%.*s' is longer than %d bytes, the most "
                          "tcp:// carries (fewer parameters, or shorter names, would fit)");
        if (len == 0) return;
        hello += HELLO_PER_METHOD + (size_t)m->name.n + len;
        if (hello > SVC_MAX_HELLO) break; /* said below; the rest would cost, not tell */
    }
    int n_types = 0;
    const svc_decl **types = hello > SVC_MAX_HELLO ? NULL : svc_table_types(c->a, c->s, &n_types);
    if (hello <= SVC_MAX_HELLO && types == NULL) {
        c->oom = true;
        return;
    }
    for (int i = 0; i < n_types && hello <= SVC_MAX_HELLO; i++) {
        size_t len = 0;
        if (!svc_type_text(c->a, types[i], SVC_MAX_SIGNATURE, &len) && len == 0) {
            c->oom = true;
            return;
        }
        if (len > SVC_MAX_SIGNATURE)
            err(c, types[i]->name,
                "the description of '%.*s' is longer than %d bytes, the most "
                "tcp:// carries (fewer fields, or shorter names, would fit)",
                types[i]->name.n, types[i]->name.p, SVC_MAX_SIGNATURE);
        hello += HELLO_PER_TYPE + len;
    }
    for (const svc_method *q = c->s->queues; q; q = q->next)
        if (!signature_len(c, q, false,
                           "the type of queue '%.*s' is longer than %d bytes, the most a "
                           "queue stores"))
            return;
    for (const svc_method *m = c->s->maps; m; m = m->next)
        if (!signature_len(c, m, false,
                           "the types of map '%.*s' are longer than %d bytes, the most a map "
                           "stores"))
            return;
    if (hello > SVC_MAX_HELLO)
        err(c, c->s->name,
            "the method table of '%.*s' needs up to %zu bytes of the tcp:// handshake, whose "
            "limit is %d: split the service, or shorten its signatures",
            c->s->name.n, c->s->name.p, hello, SVC_MAX_HELLO);
}

/* ---- limits ---- */

static void limit(check *c, svc_tok at, const char *what, const svc_tok *owner, int limit_)
{
    if (owner)
        err(c, at, "too many %s in '%.*s' (limit %d)", what, owner->n, owner->p, limit_);
    else
        err(c, at, "too many %s (limit %d)", what, limit_);
}

/* Every count the generator walks is capped (SVC_MAX_*), which also bounds how deep it
 * recurses; past a cap the file is not checked further. */
static bool check_limits(check *c)
{
    int n = 0;
    for (const svc_decl *d = c->s->decls; d; d = d->next) {
        if (++n == SVC_MAX_TYPES + 1) limit(c, d->name, "types", NULL, SVC_MAX_TYPES);
        int k = 0;
        for (const svc_field *f = d->fields; f; f = f->next)
            if (++k == SVC_MAX_MEMBERS + 1) limit(c, f->name, "fields", &d->name, SVC_MAX_MEMBERS);
        k = 0;
        for (const svc_enumval *v = d->values; v; v = v->next)
            if (++k == SVC_MAX_MEMBERS + 1) limit(c, v->name, "values", &d->name, SVC_MAX_MEMBERS);
    }
    n = 0;
    for (const svc_method *m = c->s->queues; m; m = m->next)
        if (++n == SVC_MAX_METHODS + 1) limit(c, m->name, "queues", NULL, SVC_MAX_METHODS);
    n = 0;
    for (const svc_method *m = c->s->maps; m; m = m->next)
        if (++n == SVC_MAX_METHODS + 1) limit(c, m->name, "maps", NULL, SVC_MAX_METHODS);
    n = 0;
    for (const svc_method *m = c->s->methods; m; m = m->next) {
        if (++n == SVC_MAX_METHODS + 1) limit(c, m->name, "methods", NULL, SVC_MAX_METHODS);
        int k = 0;
        for (const svc_field *p = m->params; p; p = p->next)
            if (++k == SVC_MAX_MEMBERS + 1)
                limit(c, p->name, "parameters", &m->name, SVC_MAX_MEMBERS);
    }
    return c->nerrs == 0;
}

bool svc_check(svc_arena *a, svc_diag *d, svc_file *f)
{
    int errors0 = d->errors;
    if (!f || !f->service) {
        svc_error(d, 0, 0, "no service to check");
        return false;
    }
    check c = {.a = a, .d = d, .s = f->service};
    c.S = snake(&c, c.s->name);
    if (!check_limits(&c)) {
        flush_errors(&c);
        return false;
    }
    check_service_name(&c);
    check_options(&c);
    declare_types(&c);
    check_decls(&c);
    check_methods(&c);
    check_queues(&c);
    check_cycles(&c);
    check_cnames(&c);
    if (c.nerrs == 0 && !c.oom) check_wire(&c);
    flush_errors(&c);
    return d->errors == errors0;
}
