/* SPDX-License-Identifier: MIT */
/* Compiler-style error messages: "path:line:col: error: msg", the source line, a caret. */
#include <string.h>

#include "caret.h"
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

/* The source line under an error, and the caret (common/caret.c), to a stream. */
static void put_bytes(void *out, const char *s, size_t n)
{
    fwrite(s, 1, n, out);
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
        shmrpc__caret(d->src + start, end - start, col, put_bytes, d->out);
}

void svc_error(svc_diag *d, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    svc_verror(d, line, col, fmt, ap);
    va_end(ap);
}
