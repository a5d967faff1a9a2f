/* SPDX-License-Identifier: MIT */
/* The emitter of generated lines (see emit.h). */
#include "emit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Where a line may break: after ", " at index at (the comma), inside the parenthesis at
 * open, depth parentheses deep. */
typedef struct brk {
    size_t at, open;
    int depth;
} brk;

enum { MAX_BREAKS = 256 };

/* A walk over a line's characters outside string and character literals. */
typedef struct scanner {
    const char *s;
    size_t i;
    int depth;   /* brackets open at the character returned last, itself not counted */
    bool opened; /* that character opens a bracket */
} scanner;

/* The index of the next character outside literals, or -1 at the end. */
static long next_code(scanner *sc)
{
    const char *s = sc->s;
    sc->depth += sc->opened;
    sc->opened = false;
    while (s[sc->i]) {
        size_t i = sc->i++;
        char ch = s[i];
        if (ch == '"' || ch == '\'') {
            while (s[sc->i] && s[sc->i] != ch)
                sc->i += s[sc->i] == '\\' && s[sc->i + 1] ? 2 : 1;
            if (s[sc->i]) sc->i++;
            continue;
        }
        if (ch == '(' || ch == '[' || ch == '{') sc->opened = true;
        if (ch == ')' || ch == ']' || ch == '}') sc->depth--;
        return (long)i;
    }
    return -1;
}

/* The breaks of s outside string and character literals. */
static int find_breaks(const char *s, brk *b)
{
    size_t open[64];
    int n = 0;
    scanner sc = {s, 0, 0, false};
    for (long at; (at = next_code(&sc)) >= 0;) {
        size_t i = (size_t)at;
        if (sc.opened && sc.depth >= 0 && sc.depth < 64) /* a line may close what it did not open */
            open[sc.depth] = i;
        else if (s[i] == ',' && s[i + 1] == ' ' && sc.depth > 0 && sc.depth <= 64 && n < MAX_BREAKS)
            b[n++] = (brk){i, open[sc.depth - 1], sc.depth};
    }
    return n;
}

static void spaces(sbuf *o, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sb_puts(o, " ");
}

/* Where the first string literal of s[0..n) opens, or -1. */
static long literal_at(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'') {
            for (i++; i < n && s[i] != '\''; i++)
                if (s[i] == '\\') i++;
        } else if (s[i] == '"') {
            return (long)i;
        }
    }
    return -1;
}

/* Writes s, one line's text from column col on. Where it passes the limit, its first
 * string literal is split after a space into adjacent literals aligned under the first. */
static void put_piece(sbuf *o, size_t col, const char *s)
{
    sbuf rest;
    sb_init(&rest);
    sb_puts(&rest, s);
    long q = literal_at(s, strlen(s));
    while (q >= 0 && col + rest.len > EMIT_COLUMNS) {
        const char *p = sb_str(&rest);
        size_t lit = (size_t)q, cut = 0;
        for (size_t i = lit + 1; p[i] && p[i] != '"'; i += p[i] == '\\' ? 2 : 1)
            if (p[i] == ' ' && col + i + 2 <= EMIT_COLUMNS) cut = i + 1;
        if (cut == 0 || cut == lit + 1) break;
        sb_putn(o, p, cut);
        sb_puts(o, "\"\n");
        spaces(o, col + lit);
        sbuf next;
        sb_init(&next);
        sb_puts(&next, "\"");
        sb_puts(&next, p + cut);
        sb_free(&rest);
        rest = next;
        col += lit;
        q = 0;
    }
    sb_puts(o, sb_str(&rest));
    sb_puts(o, "\n");
    sb_free(&rest);
}

/* Where s assigns at its outermost level (" = " outside brackets and literals): the
 * index of the space before '=', or 0. */
static size_t assignment(const char *s)
{
    scanner sc = {s, 0, 0, false};
    for (long at; (at = next_code(&sc)) >= 0;) {
        size_t i = (size_t)at;
        if (sc.depth == 0 && i > 0 && s[i] == '=' && s[i - 1] == ' ' && s[i + 1] == ' ')
            return i - 1;
    }
    return 0;
}

/* Writes s from column col on, broken after the commas of its outermost argument list
 * that has any: each piece runs to the last break that fits, and the next is aligned with
 * the list's parenthesis. With out NULL, writes nothing and says whether every piece fits
 * (false as well when s has no such list). */
static bool comma_wrap(sbuf *out, size_t col, const char *s)
{
    size_t n = strlen(s);
    brk b[MAX_BREAKS];
    int nb = find_breaks(s, b), first = -1;
    for (int i = 0; i < nb; i++)
        if (first < 0 || b[i].depth < b[first].depth) first = i;
    if (first < 0) {
        if (out) put_piece(out, col, s);
        return col + n <= EMIT_COLUMNS;
    }
    size_t from = 0, at = col, align = col + b[first].open + 1;
    bool fits = true;
    while (from < n) {
        size_t cut = n;
        if (at + (n - from) > EMIT_COLUMNS) {
            size_t best = 0;
            for (int i = first; i < nb; i++) {
                if (b[i].depth != b[first].depth || b[i].open != b[first].open || b[i].at < from)
                    continue;
                bool ok = at + (b[i].at + 1 - from) <= EMIT_COLUMNS;
                if (ok || best == 0) best = b[i].at + 1;
                if (!ok) break;
            }
            if (best) cut = best;
        }
        fits &= at + (cut - from) <= EMIT_COLUMNS;
        if (out) {
            char *piece = gen_must(strndup(s + from, cut - from));
            put_piece(out, at, piece);
            free(piece);
        }
        if (cut >= n) break;
        from = cut + 1; /* the space after the comma */
        if (out) spaces(out, align);
        at = align;
    }
    return fits;
}

/* Writes s from column col on (its indentation is written), wrapped as emit.h says; an
 * assignment whose arguments do not fit breaks after its '=' first, as clang-format
 * would, and the right side continues one step deeper. */
static void wrap(sbuf *o, size_t col, const char *s)
{
    size_t eq = strlen(s) + col > EMIT_COLUMNS ? assignment(s) : 0;
    if (eq && !comma_wrap(NULL, col, s)) {
        sb_putn(o, s, eq + 2);
        sb_puts(o, "\n");
        spaces(o, col + 4);
        wrap(o, col + 4, s + eq + 3);
        return;
    }
    comma_wrap(o, col, s);
}

static void put_line(emitter *e, const char *s)
{
    size_t ind = (size_t)e->depth * 4;
    spaces(e->o, ind);
    if (strncmp(s, "/*", 2) == 0 || strncmp(s, " *", 2) == 0 || s[0] == '#') {
        /* comments and preprocessor lines stay as written */
        sb_puts(e->o, s);
        sb_puts(e->o, "\n");
        return;
    }
    wrap(e->o, ind, s);
}

static char *vformat(const char *fmt, va_list ap)
{
    sbuf b;
    sb_init(&b);
    sb_vprintf(&b, fmt, ap);
    return sb_take(&b);
}

void em_flush(emitter *e)
{
    if (e->pending == NULL) return;
    int depth = e->depth;
    e->depth = e->pending_depth;
    put_line(e, e->pending);
    e->depth = depth;
    free(e->pending);
    e->pending = NULL;
}

static void vline(emitter *e, const char *fmt, va_list ap)
{
    em_flush(e);
    char *line = vformat(fmt, ap);
    put_line(e, line);
    free(line);
}

void em_blank(emitter *e)
{
    em_flush(e);
    sb_puts(e->o, "\n");
}

/* The line of a variadic em* function: fmt and what follows it. */
#define LINE(e, fmt)                                                                               \
    do {                                                                                           \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        vline(e, fmt, ap);                                                                         \
        va_end(ap);                                                                                \
    } while (0)

void em(emitter *e, const char *fmt, ...)
{
    LINE(e, fmt);
}

void em_open(emitter *e, const char *fmt, ...)
{
    em_flush(e);
    va_list ap;
    va_start(ap, fmt);
    char *line = vformat(fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    if (strncmp(line, "if (", 4) == 0 && line[n - 1] != '{') {
        e->pending = line; /* em_last may join its statement to it */
        e->pending_depth = e->depth;
    } else {
        put_line(e, line);
        free(line);
    }
    e->depth++;
}

void em_close(emitter *e, const char *fmt, ...)
{
    e->depth--;
    LINE(e, fmt);
}

void em_last(emitter *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *stmt = vformat(fmt, ap);
    va_end(ap);
    if (e->pending && e->pending_depth == e->depth - 1) {
        size_t n = strlen(e->pending) + 1 + strlen(stmt);
        if ((size_t)e->pending_depth * 4 + n <= EMIT_COLUMNS) {
            char *joined = gen_must(malloc(n + 1));
            snprintf(joined, n + 1, "%s %s", e->pending, stmt);
            free(e->pending);
            e->pending = joined;
            free(stmt);
            e->depth--;
            em_flush(e);
            return;
        }
    }
    em_flush(e);
    put_line(e, stmt);
    free(stmt);
    e->depth--;
}

void em_guard(emitter *e, const char *cond, const char *stmt, const char *ret)
{
    em_open(e, "if (%s) {", cond);
    if (stmt) em(e, "%s", stmt);
    em(e, "return %s;", ret);
    em_close(e, "}");
}
