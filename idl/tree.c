/* SPDX-License-Identifier: MIT */
/* The grammar's actions (grammar.y calls one each): they build the tree in the parse's
 * arena, appending each member to the service, struct, enum or method being read, and
 * report what the grammar finds wrong. */
#include <string.h>

#include "parse_int.h"

/* ---- errors ---- */

void svc_p_error(svc_pstate *ps, svc_tok at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    svc_verror(ps->d, at.line, at.col, fmt, ap);
    va_end(ap);
}

static void oom(svc_pstate *ps)
{
    if (!ps->failed) svc_p_error(ps, ps->cur.t, "out of memory");
    ps->failed = true;
}

static void *alloc(svc_pstate *ps, size_t n)
{
    void *p = svc_arena_alloc(ps->a, n);
    if (!p) oom(ps);
    return p;
}

/* Past this many, the input is not worth reading on (the lexer has its own cap). */
enum { MAX_SYNTAX_ERRORS = 50 };

void svc_p_syntax_error(svc_pstate *ps, int major, const svc_ltok *tok, bool semi)
{
    /* A lexical error just before or on the same line (a bad character, an unterminated
     * string or comment) is the likely cause; saying "unexpected" about its consequence
     * only adds noise. Lemon itself keeps quiet until the parse has moved on. */
    if (ps->failed || ps->lex_error_near ||
        (ps->lex_error_line && tok->t.line == ps->lex_error_line))
        return;
    if (++ps->syntax_errors > MAX_SYNTAX_ERRORS) {
        svc_p_error(ps, tok->t, "too many errors; giving up");
        ps->failed = true;
        return;
    }
    const svc_tok *prev = &ps->prev.t;
    if (semi && prev->line > 0 && prev->n <= SVC_MAX_NAME) {
        /* Where it is missing: just after the token before, often on the line above. */
        svc_tok at = {prev->p + prev->n, 0, prev->line, prev->col + prev->n};
        const char *s = svc_printable(ps->a, prev->p, prev->n);
        svc_p_error(ps, at, "expected ';' after '%s'", s ? s : "?");
        return;
    }
    if (major == 0) {
        svc_p_error(ps, tok->t, "unexpected end of input");
        return;
    }
    if (tok->t.n > SVC_MAX_NAME) { /* a string: not quoted, the caret shows where it is */
        svc_p_error(ps, tok->t, "unexpected token of %d bytes", tok->t.n);
        return;
    }
    const char *s = svc_printable(ps->a, tok->t.p, tok->t.n);
    svc_p_error(ps, tok->t, "unexpected '%s'", s ? s : "?");
}

/* Lemon found nowhere to resume (an error outside any body, or at the end): its syntax
 * error, if it was worth one, is reported already. */
void svc_p_parse_failed(svc_pstate *ps)
{
    ps->failed = true;
}

void svc_p_overflow(svc_pstate *ps)
{
    if (!ps->failed) svc_p_error(ps, ps->cur.t, "too deeply nested");
    ps->failed = true;
}

/* ---- building the tree ---- */

#define APPEND(head, tail, node)                                                                   \
    do {                                                                                           \
        if (tail)                                                                                  \
            (tail)->next = (node);                                                                 \
        else                                                                                       \
            (head) = (node);                                                                       \
        (tail) = (node);                                                                           \
    } while (0)

void svc_p_service(svc_pstate *ps, svc_ltok kw, svc_ltok name)
{
    svc_service *s = alloc(ps, sizeof *s);
    if (!s) return;
    s->name = name.t;
    s->doc = kw.doc;
    if (ps->file->service) {
        svc_tok first = ps->file->service->name;
        svc_p_error(ps, kw.t, "only one service per file (the first is '%.*s' at %d:%d)", first.n,
                    first.p, first.line, first.col);
    } else {
        ps->file->service = s;
    }
    ps->svc = s;
    ps->decl = NULL;
    ps->meth = NULL;
    ps->decl_tail = NULL;
    ps->meth_tail = NULL;
    ps->opt_tail = NULL;
}

static bool tok_is(svc_tok t, const char *s)
{
    return (size_t)t.n == strlen(s) && memcmp(t.p, s, (size_t)t.n) == 0;
}

/* A number token's value; reports a malformed or too large one (as 0). */
static int64_t number_value(svc_pstate *ps, svc_tok t)
{
    int64_t v = 0;
    int rc = svc_number(t.p, t.n, &v);
    if (rc == 0) return v;
    /* A token longer than any name is not quoted: the caret shows where it starts. */
    if (t.n > SVC_MAX_NAME) {
        if (rc == -1)
            svc_p_error(ps, t, "invalid number of %d bytes", t.n);
        else
            svc_p_error(ps, t, "number of %d bytes does not fit in 64 bits", t.n);
        return 0;
    }
    const char *s = svc_printable(ps->a, t.p, t.n);
    if (rc == -1)
        svc_p_error(ps, t, "invalid number '%s'", s ? s : "?");
    else
        svc_p_error(ps, t, "number '%s' does not fit in 64 bits", s ? s : "?");
    return 0;
}

/* Records the option; the first 'port' number and 'name' string also fill the service's
 * fields. svc_check judges the rest (unknown, mistyped, repeated). */
void svc_p_option(svc_pstate *ps, svc_ltok name, svc_ltok value, bool is_string)
{
    svc_service *s = ps->svc;
    svc_option *o = alloc(ps, sizeof *o);
    if (!s || !o) return;
    o->name = name.t;
    o->value = value.t;
    o->is_string = is_string;
    APPEND(s->options, ps->opt_tail, o);
    if (!is_string && tok_is(name.t, "port") && !s->has_port) {
        int64_t v = number_value(ps, value.t);
        s->has_port = true;
        s->port_tok = value.t;
        s->port = v < -1 ? -1 : v > 0x7fffffff ? 0x7fffffff : (long)v; /* range: svc_check */
    } else if (is_string && tok_is(name.t, "name") && !s->has_name) {
        s->has_name = true;
        s->name_tok = value.t;
        s->svc_name = svc_unquote(ps->a, value.t.p, value.t.n);
        if (!s->svc_name) oom(ps);
    }
}

static void new_decl(svc_pstate *ps, svc_decl_kind kind, svc_ltok kw, svc_ltok name)
{
    svc_service *s = ps->svc;
    svc_decl *d = alloc(ps, sizeof *d);
    ps->decl = d;
    ps->field_tail = NULL;
    ps->val_tail = NULL;
    if (!s || !d) return;
    d->kind = kind;
    d->name = name.t;
    d->doc = kw.doc;
    APPEND(s->decls, ps->decl_tail, d);
    s->n_decls++;
}

void svc_p_struct(svc_pstate *ps, svc_ltok kw, svc_ltok name)
{
    new_decl(ps, SVC_DECL_STRUCT, kw, name);
}

void svc_p_enum(svc_pstate *ps, svc_ltok kw, svc_ltok name)
{
    new_decl(ps, SVC_DECL_ENUM, kw, name);
}

static svc_field *new_field(svc_pstate *ps, svc_ltype type, svc_ltok name)
{
    svc_field *f = alloc(ps, sizeof *f);
    if (f) {
        f->name = name.t;
        f->type = type.t;
        f->doc = type.doc;
    }
    return f;
}

/* Appends a field to a struct's fields or a parameter to a method's (head, count). */
static void append_field(svc_pstate *ps, svc_field **head, int *count, svc_ltype type,
                         svc_ltok name)
{
    svc_field *f = new_field(ps, type, name);
    if (!f) return;
    APPEND(*head, ps->field_tail, f);
    (*count)++;
}

void svc_p_field(svc_pstate *ps, svc_ltype type, svc_ltok name)
{
    if (ps->decl) append_field(ps, &ps->decl->fields, &ps->decl->n_fields, type, name);
}

void svc_p_enumval(svc_pstate *ps, svc_ltok name, const svc_ltok *value)
{
    svc_decl *d = ps->decl;
    svc_enumval *v = alloc(ps, sizeof *v);
    if (!d || !v) return;
    v->name = name.t;
    v->doc = name.doc;
    if (value) {
        v->explicit_value = true;
        v->value_tok = value->t;
        v->value = number_value(ps, value->t);
    } else if (ps->val_tail) {
        int64_t prev = ps->val_tail->value;
        v->value = prev < INT64_MAX ? prev + 1 : prev; /* out of int32 range: svc_check */
    }
    APPEND(d->values, ps->val_tail, v);
    d->n_values++;
}

void svc_p_method(svc_pstate *ps, const svc_annots *annots, svc_ltype result, svc_ltok name)
{
    svc_service *s = ps->svc;
    svc_method *m = alloc(ps, sizeof *m);
    ps->meth = m;
    ps->field_tail = NULL;
    if (!s || !m) return;
    m->name = name.t;
    m->doc = annots ? annots->doc : result.doc;
    m->annots = annots ? annots->head : NULL;
    m->result = result.t;
    APPEND(s->methods, ps->meth_tail, m);
    s->n_methods++;
}

/* "map<K, V> name;": a method of one parameter, 'key', that returns V. */
static void add_map(svc_pstate *ps, const svc_annots *annots, svc_ltype type, svc_ltok name)
{
    svc_service *s = ps->svc;
    svc_method *m = alloc(ps, sizeof *m);
    svc_field *k = alloc(ps, sizeof *k);
    if (!s || !m || !k) return;
    m->name = name.t;
    m->doc = annots ? annots->doc : type.doc;
    m->annots = annots ? annots->head : NULL;
    m->result = type.t->elem;
    k->name = type.t->tok; /* where the map was written, for messages */
    k->name.p = "key";
    k->name.n = 3;
    k->type = type.t->key;
    m->params = k;
    m->n_params = 1;
    APPEND(s->maps, ps->map_tail, m);
    s->n_maps++;
}

/* "queue<T> name;" or "map<K, V> name;": any other "type name;" among the members is a
 * method without its parentheses, or a field outside a struct. */
void svc_p_queue(svc_pstate *ps, const svc_annots *annots, svc_ltype type, svc_ltok name)
{
    svc_service *s = ps->svc;
    ps->meth = NULL;
    ps->field_tail = NULL;
    if (!type.t) return;
    if (!type.t->queue && type.t->kind == SVC_T_NAMED &&
        (tok_is(type.t->tok, "port") || tok_is(type.t->tok, "name"))) {
        svc_p_error(ps, name.t, "option '%.*s' takes a number or a string, not '%.*s'",
                    type.t->tok.n, type.t->tok.p, name.t.n, name.t.p);
        return;
    }
    if (type.t->kind == SVC_T_MAP) {
        add_map(ps, annots, type, name);
        return;
    }
    if (type.t->bad_args) return; /* "map<string> x;": its one error is the arguments' */
    if (!type.t->queue) {
        svc_p_error(ps, name.t,
                    "'%.*s' is neither a method (its parameters in '(...)'), a queue "
                    "('queue<T> %.*s;') nor a map ('map<K, V> %.*s;')",
                    name.t.n, name.t.p, name.t.n, name.t.p, name.t.n, name.t.p);
        return;
    }
    svc_method *q = alloc(ps, sizeof *q);
    if (!s || !q) return;
    q->name = name.t;
    q->doc = annots ? annots->doc : type.doc;
    q->annots = annots ? annots->head : NULL;
    q->result = type.t->elem;
    APPEND(s->queues, ps->queue_tail, q);
    s->n_queues++;
}

void svc_p_param(svc_pstate *ps, svc_ltype type, svc_ltok name)
{
    if (ps->meth) append_field(ps, &ps->meth->params, &ps->meth->n_params, type, name);
}

svc_annots svc_p_annot(svc_pstate *ps, svc_annots list, svc_ltok at)
{
    svc_annot *an = alloc(ps, sizeof *an);
    if (!an) return list;
    an->name = at.t;
    an->name.p++; /* without the '@' */
    an->name.n--;
    an->name.col++;
    if (!list.head) list.doc = at.doc;
    APPEND(list.head, list.tail, an);
    return list;
}

static svc_type *new_type(svc_pstate *ps, svc_type_kind kind, svc_tok tok)
{
    svc_type *t = alloc(ps, sizeof *t);
    if (t) {
        t->kind = kind;
        t->tok = tok;
    }
    return t;
}

/* A built-in scalar, or the name of a struct or enum; list and map need arguments. */
svc_ltype svc_p_type_name(svc_pstate *ps, svc_ltok name)
{
    const svc_builtin *b = svc_builtin_by_name(name.t.p, name.t.n);
    svc_type_kind kind = b ? b->kind : SVC_T_NAMED;
    bool bad_args = kind == SVC_T_LIST || kind == SVC_T_MAP || kind == SVC_T_STREAM;
    if (bad_args) {
        svc_p_error(ps, name.t,
                    kind == SVC_T_LIST  ? "'list' takes one type argument: list<T>"
                    : kind == SVC_T_MAP ? "'map' takes two type arguments: map<K, V>"
                                        : "'stream' takes one type argument: stream<T>");
        kind = SVC_T_NAMED;
    }
    svc_type *t = new_type(ps, kind, name.t);
    if (t) t->bad_args = bad_args;
    return (svc_ltype){t, name.doc};
}

svc_ltype svc_p_type_args(svc_pstate *ps, svc_ltok name, svc_ltype a, const svc_ltype *b)
{
    svc_ltype r = {NULL, name.doc};
    if ((tok_is(name.t, "list") || tok_is(name.t, "queue")) && !b) {
        r.t = new_type(ps, SVC_T_LIST, name.t);
        if (r.t) {
            r.t->elem = a.t;
            r.t->queue = tok_is(name.t, "queue");
        }
    } else if (tok_is(name.t, "stream") && !b) {
        r.t = new_type(ps, SVC_T_STREAM, name.t);
        if (r.t) r.t->elem = a.t;
    } else if (tok_is(name.t, "map") && b) {
        r.t = new_type(ps, SVC_T_MAP, name.t);
        if (r.t) {
            r.t->key = a.t;
            r.t->elem = b->t;
        }
    } else {
        if (tok_is(name.t, "list"))
            svc_p_error(ps, name.t, "'list' takes one type argument: list<T>");
        else if (tok_is(name.t, "map"))
            svc_p_error(ps, name.t, "'map' takes two type arguments: map<K, V>");
        else if (tok_is(name.t, "stream"))
            svc_p_error(ps, name.t, "'stream' takes one type argument: stream<T>");
        else if (tok_is(name.t, "queue")) {
            svc_p_error(ps, name.t, "'queue' takes one type argument: queue<T> name;");
            r.t = new_type(ps, SVC_T_LIST, name.t); /* still a queue: one message, not two */
            if (r.t) {
                r.t->elem = a.t;
                r.t->queue = true;
            }
            return r;
        } else
            svc_p_error(ps, name.t,
                        "'%.*s' takes no type arguments; only list<T>, map<K, V> and stream<T> do",
                        name.t.n, name.t.p);
        r.t = a.t;
        if (r.t) r.t->bad_args = true;
    }
    return r;
}

/* The optional's token spans the whole type, "Point?", so errors point at its start. */
svc_ltype svc_p_type_opt(svc_pstate *ps, svc_ltype elem, svc_ltok q)
{
    if (!elem.t) return elem;
    if (elem.t->kind == SVC_T_OPTIONAL) {
        svc_p_error(ps, q.t, "a type can be optional only once");
        return elem;
    }
    svc_tok span = elem.t->tok;
    if (span.line == q.t.line && q.t.p > span.p) span.n = (int)(q.t.p + 1 - span.p);
    svc_ltype r = {new_type(ps, SVC_T_OPTIONAL, span), elem.doc};
    if (r.t) {
        r.t->elem = elem.t;
        r.t->bad_args = elem.t->bad_args;
    }
    return r;
}
