/* A small logic-less template renderer (see tmpl.h). */
#include "tmpl.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    const char *key;
    const char *str;         /* a value, or NULL for a list */
    tmpl_dict *first, *last; /* a list's items */
    struct entry *next;
} entry;

struct tmpl_dict {
    svc_arena *arena;
    entry *entries;
    tmpl_dict *next; /* the next item of the list this dict is in */
};

tmpl_dict *tmpl_new(svc_arena *a)
{
    tmpl_dict *d = gen_must(svc_arena_alloc(a, sizeof *d));
    d->arena = a;
    return d;
}

static entry *find_own(const tmpl_dict *d, const char *key, size_t n)
{
    for (entry *e = d->entries; e; e = e->next)
        if (strlen(e->key) == n && memcmp(e->key, key, n) == 0) return e;
    return NULL;
}

static entry *get_entry(tmpl_dict *d, const char *key)
{
    entry *e = find_own(d, key, strlen(key));
    if (e) return e;
    e = gen_must(svc_arena_alloc(d->arena, sizeof *e));
    e->key = gen_must(svc_arena_strndup(d->arena, key, strlen(key)));
    e->next = d->entries;
    d->entries = e;
    return e;
}

void tmpl_set(tmpl_dict *d, const char *key, const char *val)
{
    entry *e = get_entry(d, key);
    e->str = gen_must(svc_arena_strndup(d->arena, val, strlen(val)));
    e->first = e->last = NULL;
}

void tmpl_setf(tmpl_dict *d, const char *key, const char *fmt, ...)
{
    sbuf b;
    sb_init(&b);
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&b, fmt, ap);
    va_end(ap);
    tmpl_set(d, key, sb_str(&b));
    sb_free(&b);
}

tmpl_dict *tmpl_push(tmpl_dict *d, const char *key)
{
    entry *e = get_entry(d, key);
    tmpl_dict *item = tmpl_new(d->arena);
    e->str = NULL;
    if (e->last)
        e->last->next = item;
    else
        e->first = item;
    e->last = item;
    return item;
}

void tmpl_flag(tmpl_dict *d, const char *key, bool on)
{
    entry *e = get_entry(d, key);
    e->str = NULL;
    e->first = e->last = NULL;
    if (on) tmpl_push(d, key);
}

/* The scopes being rendered, innermost last. */
typedef struct scope {
    const tmpl_dict *d;
    const struct scope *up;
} scope;

typedef struct render {
    const char *name, *text;
    sbuf *out;
    bool ok;
} render;

static const entry *lookup(const scope *s, const char *key, size_t n)
{
    for (; s; s = s->up) {
        const entry *e = find_own(s->d, key, n);
        if (e) return e;
    }
    return NULL;
}

static int line_of(const render *r, const char *at)
{
    int line = 1;
    for (const char *p = r->text; p < at; p++)
        line += *p == '\n';
    return line;
}

static void fail(render *r, const char *at, const char *what, const char *key, size_t n)
{
    if (r->ok)
        fprintf(stderr, "shmrpcgen: template %s:%d: %s '%.*s'\n", r->name, line_of(r, at), what,
                (int)n, key);
    r->ok = false;
}

/* A tag at p: its sigil ('\0' for a plain value) and name. */
typedef struct tag {
    const char *start, *end; /* the whole {{...}} */
    char sigil;
    const char *key;
    size_t n;
} tag;

static bool next_tag(const char *p, const char *end, tag *t)
{
    const char *open = p;
    for (;;) {
        open = memchr(open, '{', (size_t)(end - open));
        if (open == NULL || end - open < 4) return false;
        if (open[1] == '{') break;
        open++;
    }
    const char *close = strstr(open + 2, "}}");
    if (close == NULL || close > end - 2) return false;
    t->start = open;
    t->end = close + 2;
    const char *k = open + 2;
    t->sigil = (*k == '#' || *k == '^' || *k == '/' || *k == '!') ? *k++ : '\0';
    while (k < close && *k == ' ')
        k++;
    const char *ke = close;
    while (ke > k && ke[-1] == ' ')
        ke--;
    t->key = k;
    t->n = (size_t)(ke - k);
    return true;
}

/* Where a section tag stands alone on its line, the line's indentation and newline go
 * with it: returns the span [*from, *to) to drop instead of the tag itself. */
static void standalone(const render *r, const tag *t, const char *end, const char **from,
                       const char **to)
{
    *from = t->start;
    *to = t->end;
    if (t->sigil == '\0') return;
    const char *b = t->start;
    while (b > r->text && (b[-1] == ' ' || b[-1] == '\t'))
        b--;
    if (b > r->text && b[-1] != '\n') return;
    const char *a = t->end;
    while (a < end && (*a == ' ' || *a == '\t'))
        a++;
    if (a < end && *a != '\n') return;
    *from = b;
    *to = a < end ? a + 1 : a;
}

/* Finds the {{/key}} closing the section opened just before p. */
static bool find_close(const char *p, const char *end, const tag *open, tag *close)
{
    int depth = 1;
    tag t;
    while (next_tag(p, end, &t)) {
        if ((t.sigil == '#' || t.sigil == '^') && t.n == open->n &&
            memcmp(t.key, open->key, t.n) == 0)
            depth++;
        if (t.sigil == '/' && t.n == open->n && memcmp(t.key, open->key, t.n) == 0 &&
            --depth == 0) {
            *close = t;
            return true;
        }
        p = t.end;
    }
    return false;
}

static void render_span(render *r, const char *p, const char *end, const scope *s)
{
    tag t;
    while (r->ok && next_tag(p, end, &t)) {
        const char *cut, *resume;
        standalone(r, &t, end, &cut, &resume);
        sb_putn(r->out, p, (size_t)(cut - p));
        p = resume;
        if (t.sigil == '!') continue;
        if (t.sigil == '/') {
            fail(r, t.start, "unopened section", t.key, t.n);
            return;
        }
        const entry *e = lookup(s, t.key, t.n);
        if (t.sigil == '\0') {
            if (e == NULL || e->str == NULL)
                fail(r, t.start, "no value for", t.key, t.n);
            else
                sb_puts(r->out, e->str);
            continue;
        }
        tag close;
        if (!find_close(p, end, &t, &close)) {
            fail(r, t.start, "unclosed section", t.key, t.n);
            return;
        }
        const char *body_end, *after;
        standalone(r, &close, end, &body_end, &after);
        bool empty = e == NULL || (e->str ? e->str[0] == '\0' : e->first == NULL);
        if (t.sigil == '^') {
            if (empty) render_span(r, p, body_end, s);
        } else if (e && e->str) {
            if (!empty) render_span(r, p, body_end, s);
        } else if (e) {
            for (const tmpl_dict *item = e->first; item; item = item->next) {
                scope inner = {item, s};
                render_span(r, p, body_end, &inner);
            }
        }
        p = after;
    }
    if (r->ok) sb_putn(r->out, p, (size_t)(end - p));
}

bool tmpl_render(const char *name, const char *text, const tmpl_dict *d, sbuf *out)
{
    render r = {name, text, out, true};
    scope top = {d, NULL};
    render_span(&r, text, text + strlen(text), &top);
    return r.ok;
}
