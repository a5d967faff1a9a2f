/* SPDX-License-Identifier: MIT */
/* The .ini reader under service.ini, written by hand.
 *
 * Why not Debian's libinih: its handler is told no line number (Debian builds it without
 * INI_HANDLER_LINENO, a compile-time switch of the library), ini_parse() reports only the
 * first bad line and never a column, lines past 200 bytes are cut, ';' starts an inline
 * comment (configparser keeps it as part of the value), and duplicates are not noticed.
 * We need the line and column of every key and value, to point at the one that is wrong,
 * and every error of the file in one run. Why not re2c, as the .svc lexer does: the format
 * is one decision per line, made by its first non-blank byte; a lexer adds a build step
 * and does not make that shorter.
 *
 * The syntax is Python configparser's (speedysvc read its service.ini with a reader of
 * the same shape): [section], `key = value` or `key: value`, keys case-insensitive,
 * full-line comments starting with '#' or ';', a value continued on lines indented more
 * than its key, duplicate sections and keys refused (configparser's strict mode).
 * No interpolation: '%' is an ordinary character. */
#include "ini.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "caret.h"
#include "input.h"
#include "utf8.h"

/* Past this many, errors are counted but not kept: the first ones say enough. */
#define MAX_ERRORS 100
/* A service.ini has a few dozen of each; the caps keep the duplicate checks cheap on a
 * file that is something else. */
#define MAX_SECTIONS 1000
#define MAX_KEYS 200

struct ini_diag {
    int line, col;
    size_t seq; /* the order of report, for a stable sort */
    const char *msg;
};

static void init(ini_file *ini, const char *path)
{
    memset(ini, 0, sizeof *ini);
    ini->path = path ? path : "<input>";
}

void ini_destroy(ini_file *ini)
{
    shmrpc_arena_free(ini->arena);
    free(ini->errors);
    memset(ini, 0, sizeof *ini);
}

void ini_verror(ini_file *ini, int line, int col, const char *fmt, va_list ap)
{
    size_t seq = ini->n_errors++;
    if (ini->n_kept >= MAX_ERRORS) return;
    if (ini->n_kept == ini->cap_errors) {
        size_t cap = ini->cap_errors ? ini->cap_errors * 2 : 16;
        ini_diag *e = realloc(ini->errors, cap * sizeof *e);
        if (!e) {
            ini->oom = true;
            return;
        }
        ini->errors = e;
        ini->cap_errors = cap;
    }
    /* Sized to the message, not to a guess: a message names paths, which are as long as
     * the file system lets them be, and a cut one hides what the user must read. */
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, again);
    va_end(again);
    char *msg = n >= 0 && ini->arena ? shmrpc_arena_alloc(ini->arena, (size_t)n + 1, 1) : NULL;
    if (msg) vsnprintf(msg, (size_t)n + 1, fmt, ap);
    if (!msg) {
        ini->oom = true;
        msg = "out of memory";
    }
    ini->errors[ini->n_kept++] = (ini_diag){line, col, seq, msg};
}

void ini_error(ini_file *ini, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ini_verror(ini, line, col, fmt, ap);
    va_end(ap);
}

const char *ini_quote(ini_file *ini, const char *s, size_t max)
{
    size_t n = strlen(s), shown = n > max ? max : n;
    /* Do not cut a UTF-8 character in two. */
    while (shown < n && shown > 0 && ((unsigned char)s[shown] & 0xc0) == 0x80)
        shown--;
    char *out = shmrpc_arena_alloc(ini->arena, shown * 4 + 4, 1);
    if (!out) {
        ini->oom = true;
        return "";
    }
    char *o = out;
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];
        /* A byte of no valid UTF-8 sequence is escaped as a control byte is. */
        size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        if (len > 1 && (shown - i < len || shmrpc__utf8_invalid_at(s + i, len) != len)) len = 0;
        if (c < 0x20 || c == 0x7f || len == 0) {
            o += sprintf(o, "\\x%02x", c);
        } else {
            memcpy(o, s + i, len);
            o += len;
            i += len - 1;
        }
    }
    if (shown < n) {
        memcpy(o, "...", 3);
        o += 3;
    }
    *o = '\0';
    return out;
}

/* --- parsing ------------------------------------------------------------------------ */

typedef struct parser {
    ini_file *ini;
    ini_section *section; /* NULL before the first header or after a bad one */
    bool bad_header;      /* keys under a header that was refused are dropped */
    ini_entry *entry;     /* the entry whose value may continue, or NULL */
    int entry_indent;
    shmrpc_buf value; /* the value of entry, growing with its continuation lines */
} parser;

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\f' || c == '\v';
}

static void trim(const char **p, const char **e)
{
    while (*p < *e && is_blank(**p))
        (*p)++;
    while (*e > *p && is_blank((*e)[-1]))
        (*e)--;
}

static int col_of(const char *line, const char *at)
{
    return (int)(at - line) + 1;
}

/* Moves the value gathered so far into the arena: the entry is complete. */
static void finish_entry(parser *ps)
{
    ini_entry *en = ps->entry;
    if (!en) return;
    ps->entry = NULL;
    if (ps->value.err) {
        ps->ini->oom = true;
        return;
    }
    char *v = shmrpc_arena_strndup(ps->ini->arena, (const char *)ps->value.data, ps->value.len);
    if (!v) {
        ps->ini->oom = true;
        return;
    }
    en->value = v;
}

static void header(parser *ps, int lineno, const char *line, const char *p, const char *e)
{
    ini_file *ini = ps->ini;
    ps->section = NULL;
    ps->bad_header = true;
    ini->bad_headers++; /* until it proves good */
    const char *close = memchr(p, ']', (size_t)(e - p));
    if (!close) {
        ini_error(ini, lineno, col_of(line, e), "expected ']' to end the section name");
        return;
    }
    const char *rest = close + 1;
    while (rest < e && is_blank(*rest))
        rest++;
    if (rest < e && *rest != '#' && *rest != ';') {
        ini_error(ini, lineno, col_of(line, rest), "unexpected text after ']'");
        return;
    }
    const char *n = p + 1, *ne = close;
    trim(&n, &ne);
    if (n == ne) {
        ini_error(ini, lineno, col_of(line, p), "empty section name");
        return;
    }
    if (++ini->n_sections > MAX_SECTIONS) {
        ini_error(ini, lineno, col_of(line, p),
                  "more than %d sections: the rest of the file is not read", MAX_SECTIONS);
        ini->gave_up = true;
        return;
    }
    ini_section *s = shmrpc_arena_calloc(ini->arena, 1, sizeof *s, _Alignof(ini_section));
    char *name = shmrpc_arena_strndup(ini->arena, n, (size_t)(ne - n));
    if (!s || !name) {
        ini->oom = true;
        return;
    }
    s->name = name;
    s->line = lineno;
    s->col = col_of(line, n);
    for (const ini_section *o = ini->sections; o; o = o->next) {
        if (strcmp(o->name, name) == 0 && !o->duplicate) {
            ini_error(ini, lineno, s->col, "duplicate section [%s] (first at %d:%d)",
                      ini_quote(ini, name, 64), o->line, o->col);
            s->duplicate = true;
            break;
        }
    }
    if (ini->last)
        ini->last->next = s;
    else
        ini->sections = s;
    ini->last = s;
    ps->section = s;
    ps->bad_header = false;
    ini->bad_headers--;
}

static void key_value(parser *ps, int lineno, const char *line, const char *p, const char *e,
                      int indent)
{
    ini_file *ini = ps->ini;
    const char *delim = p;
    while (delim < e && *delim != '=' && *delim != ':')
        delim++;
    if (delim == e) {
        ini_error(ini, lineno, col_of(line, p), "expected 'key = value', a [section] or a comment");
        return;
    }
    const char *k = p, *ke = delim;
    trim(&k, &ke);
    if (k == ke) {
        ini_error(ini, lineno, col_of(line, delim), "expected a key before '%c'", *delim);
        return;
    }
    const char *v = delim + 1, *ve = e;
    trim(&v, &ve);

    ini_entry *en = shmrpc_arena_calloc(ini->arena, 1, sizeof *en, _Alignof(ini_entry));
    char *key = shmrpc_arena_strndup(ini->arena, k, (size_t)(ke - k));
    if (!en || !key) {
        ini->oom = true;
        return;
    }
    for (char *c = key; *c; c++)
        if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
    en->key = key;
    en->value = "";
    en->line = lineno;
    en->col = col_of(line, k);
    en->vcol = col_of(line, v);

    /* The entry takes continuation lines even when it is dropped below, so that they are
     * not read as keys of their own. */
    ps->entry = en;
    ps->entry_indent = indent;
    shmrpc_buf_clear(&ps->value);
    shmrpc_buf_append(&ps->value, v, (size_t)(ve - v));

    ini_section *s = ps->section;
    if (!s) {
        if (!ps->bad_header)
            ini_error(ini, lineno, en->col,
                      "'%s' is outside any section: keys go under [defaults], "
                      "[web monitor] or a service's [NAME]",
                      ini_quote(ini, key, 64));
        return;
    }
    if (s->n_entries == MAX_KEYS) {
        ini_error(ini, lineno, en->col, "more than %d keys in [%s]: the rest are not read",
                  MAX_KEYS, ini_quote(ini, s->name, 64));
        s->n_entries++;
        return;
    }
    if (s->n_entries > MAX_KEYS) return;
    for (const ini_entry *o = s->entries; o; o = o->next) {
        if (strcmp(o->key, key) == 0) {
            ini_error(ini, lineno, en->col, "duplicate key '%s' in [%s] (first at %d:%d)",
                      ini_quote(ini, key, 64), ini_quote(ini, s->name, 64), o->line, o->col);
            return;
        }
    }
    if (s->last)
        s->last->next = en;
    else
        s->entries = en;
    s->last = en;
    s->n_entries++;
}

static void parse_line(parser *ps, int lineno, const char *line, size_t n)
{
    const char *e = line + n;
    const char *nul = memchr(line, '\0', n);
    if (nul) {
        finish_entry(ps);
        ini_error(ps->ini, lineno, col_of(line, nul), "NUL byte in the file");
        return;
    }
    /* docs/service-ini.md says the file is UTF-8: a value that is not would reach paths,
     * argv and the page as bytes no one wrote on purpose. The line is read on, so that
     * the rest of its errors are found too. */
    size_t bad = shmrpc__utf8_invalid_at(line, n);
    if (bad < n)
        ini_error(ps->ini, lineno, (int)bad + 1,
                  "invalid UTF-8 (byte 0x%02x): the file must be UTF-8", (unsigned char)line[bad]);
    const char *p = line;
    while (p < e && is_blank(*p))
        p++;
    int indent = (int)(p - line);
    if (p == e) { /* a blank line ends a value */
        finish_entry(ps);
        return;
    }
    if (*p == '#' || *p == ';') return; /* comments may sit between continuation lines */
    if (ps->entry && indent > ps->entry_indent) {
        const char *ce = e;
        trim(&p, &ce);
        shmrpc_buf_append(&ps->value, "\n", 1);
        shmrpc_buf_append(&ps->value, p, (size_t)(ce - p));
        ps->entry->multiline = true;
        return;
    }
    finish_entry(ps);
    if (*p == '[')
        header(ps, lineno, line, p, e);
    else
        key_value(ps, lineno, line, p, e, indent);
}

int ini_parse(ini_file *ini, const char *path, const char *src, size_t len)
{
    init(ini, path);
    ini->arena = shmrpc_arena_new(len + 4096);
    if (!ini->arena) return SHMRPC_ENOMEM;
    if (len > INI_MAX_BYTES) {
        ini_error(ini, 0, 0, "larger than %zu KiB: not a service.ini", INI_MAX_BYTES >> 10);
        return 0;
    }
    if (len >= 3 && memcmp(src, "\xef\xbb\xbf", 3) == 0) { /* a UTF-8 byte order mark */
        src += 3;
        len -= 3;
    }
    char *copy = shmrpc_arena_strndup(ini->arena, src, len);
    if (!copy) return SHMRPC_ENOMEM;
    ini->src = copy;
    ini->len = len;

    parser ps = {.ini = ini};
    shmrpc_buf_init(&ps.value);
    const char *p = copy, *end = copy + len;
    for (int lineno = 1; p < end && !ini->oom && !ini->gave_up; lineno++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        if (n > 0 && p[n - 1] == '\r') n--;
        parse_line(&ps, lineno, p, n);
        p = nl ? nl + 1 : end;
    }
    finish_entry(&ps);
    shmrpc_buf_destroy(&ps.value);
    return ini->oom ? SHMRPC_ENOMEM : 0;
}

int ini_load(ini_file *ini, const char *path)
{
    /* Not open(): a FIFO would keep it waiting for a writer, forever if none comes. */
    const char *kind = NULL;
    int fd = shmrpc__open_regular(path, O_RDONLY, 0, &kind);
    struct stat st;
    const char *why = NULL;
    char kind_why[64];
    int e = 0;
    if (fd < 0 && kind) {
        snprintf(kind_why, sizeof kind_why, "cannot read: %s, not a regular file", kind);
        why = kind_why;
    } else if (fd < 0) {
        e = errno;
    } else if (fstat(fd, &st) != 0)
        e = errno;
    else if ((uint64_t)st.st_size > INI_MAX_BYTES)
        why = "larger than 1024 KiB: not a service.ini";
    char *buf = NULL;
    size_t len = 0;
    if (!e && !why) {
        buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
            close(fd);
            init(ini, path);
            return SHMRPC_ENOMEM;
        }
        /* Read to the end: the file may have grown since fstat, up to the limit. */
        size_t cap = (size_t)st.st_size + 1;
        for (;;) {
            if (len == cap) {
                if (cap > INI_MAX_BYTES) {
                    why = "larger than 1024 KiB: not a service.ini";
                    break;
                }
                char *b = realloc(buf, cap * 2);
                if (!b) {
                    free(buf);
                    close(fd);
                    init(ini, path);
                    return SHMRPC_ENOMEM;
                }
                buf = b;
                cap *= 2;
            }
            ssize_t n = read(fd, buf + len, cap - len);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) e = errno;
            if (n <= 0) break;
            len += (size_t)n;
        }
    }
    if (fd >= 0) close(fd);
    int rc;
    if (e || why) {
        rc = ini_parse(ini, path, "", 0);
        ini->src = NULL; /* there is no text to show */
        if (e)
            ini_error(ini, 0, 0, "cannot read: %s", strerror(e));
        else
            ini_error(ini, 0, 0, "%s", why);
    } else {
        rc = ini_parse(ini, path, buf, len);
    }
    free(buf);
    return rc;
}

/* --- writing the errors ------------------------------------------------------------- */

static int by_position(const void *a, const void *b)
{
    const ini_diag *x = a, *y = b;
    /* Errors of the whole file come after those with a place. */
    int xl = x->line ? x->line : 0x7fffffff, yl = y->line ? y->line : 0x7fffffff;
    if (xl != yl) return xl < yl ? -1 : 1;
    if (x->col != y->col) return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The source line under an error, and the caret (common/caret.c), into a buffer. */
static void put_bytes(void *out, const char *s, size_t n)
{
    shmrpc_buf_append(out, s, n);
}

void ini_write_errors(const ini_file *ini, shmrpc_buf *out)
{
    size_t kept = ini->n_kept;
    qsort(ini->errors, kept, sizeof *ini->errors, by_position);
    /* Sorted by line, so one walk through the text finds every line shown. */
    const char *p = ini->src, *end = ini->src ? ini->src + ini->len : NULL;
    int at_line = 1;
    for (size_t i = 0; i < kept; i++) {
        const ini_diag *er = &ini->errors[i];
        if (er->line <= 0) {
            shmrpc_buf_appendf(out, "%s: error: %s\n", ini->path, er->msg);
            continue;
        }
        shmrpc_buf_appendf(out, "%s:%d:%d: error: %s\n", ini->path, er->line, er->col, er->msg);
        while (p && p < end && at_line < er->line) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            p = nl ? nl + 1 : end;
            at_line++;
        }
        if (!p || at_line != er->line || p >= end) continue;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (le > p && le[-1] == '\r') le--;
        shmrpc__caret(p, (size_t)(le - p), er->col, put_bytes, out);
    }
    if (ini->n_errors > kept)
        shmrpc_buf_appendf(out, "%s: error: %zu more errors not shown\n", ini->path,
                           ini->n_errors - kept);
}
