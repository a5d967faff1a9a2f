/* Compiler-style error messages: "path:line:col: error: msg", the source line, a caret. */
#include <string.h>

#include "svc.h"

void svc_diag_init(svc_diag *d, FILE *out, const char *path, const char *src, size_t len)
{
    d->out = out;
    d->path = path ? path : "<input>";
    d->src = src;
    d->len = src ? len : 0;
    d->errors = 0;
}

/* The bounds of 1-based line `line`, without its newline (or "\r\n"); false if absent. */
static bool find_line(const svc_diag *d, int line, size_t *start, size_t *end)
{
    size_t i = 0;
    for (int l = 1; l < line; l++) {
        const char *nl = memchr(d->src + i, '\n', d->len - i);
        if (!nl) return false;
        i = (size_t)(nl - d->src) + 1;
    }
    const char *nl = memchr(d->src + i, '\n', d->len - i);
    size_t e = nl ? (size_t)(nl - d->src) : d->len;
    if (e > i && d->src[e - 1] == '\r') e--;
    *start = i;
    *end = e;
    return true;
}

/* The line as written, except that control characters (which could drive the terminal)
 * become '?'. Bytes of UTF-8 text pass through. */
static void print_text(FILE *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        fputc(c == '\t' || (c >= 0x20 && c != 0x7f) ? c : '?', out);
    }
}

/* Spaces up to column col, keeping tabs so the caret lines up, and counting a UTF-8
 * character as one column however many bytes it has. */
static void print_pad(FILE *out, const char *s, size_t n, size_t upto)
{
    for (size_t i = 0; i < upto && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\t')
            fputc('\t', out);
        else if ((c & 0xc0) != 0x80)
            fputc(' ', out);
    }
}

/* A very long line (minified or binary input) is shown as a window around the column. */
enum { LINE_SHOWN = 160 };

static void print_source(FILE *out, const char *s, size_t n, int col)
{
    size_t at = (size_t)(col > 0 ? col - 1 : 0), ws = 0, we = n;
    if (n > LINE_SHOWN) {
        ws = at > LINE_SHOWN / 2 ? at - LINE_SHOWN / 2 : 0;
        while (ws < n && ((unsigned char)s[ws] & 0xc0) == 0x80)
            ws++;
        we = ws + LINE_SHOWN < n ? ws + LINE_SHOWN : n;
        while (we < n && ((unsigned char)s[we] & 0xc0) == 0x80)
            we++;
    }
    if (ws > 0) fputs("...", out);
    print_text(out, s + ws, we - ws);
    fputs(we < n ? "...\n" : "\n", out);
    if (ws > 0) fputs("   ", out);
    print_pad(out, s + ws, we - ws, at > ws ? at - ws : 0);
    fputs("^\n", out);
}

void svc_verror(svc_diag *d, int line, int col, const char *fmt, va_list ap)
{
    d->errors++;
    if (!d->out) return;
    if (line <= 0) {
        fprintf(d->out, "%s: error: ", d->path);
        vfprintf(d->out, fmt, ap);
        fputc('\n', d->out);
        return;
    }
    fprintf(d->out, "%s:%d:%d: error: ", d->path, line, col);
    vfprintf(d->out, fmt, ap);
    fputc('\n', d->out);
    size_t start, end;
    if (d->src && find_line(d, line, &start, &end))
        print_source(d->out, d->src + start, end - start, col);
}

void svc_error(svc_diag *d, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    svc_verror(d, line, col, fmt, ap);
    va_end(ap);
}
