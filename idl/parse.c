/* SPDX-License-Identifier: MIT */
/* The parse driver: feeds the lexer's tokens to the lemon parser, whose actions (tree.c)
 * build the tree, and reads files for svc_load. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "input.h"
#include "parse_int.h"

svc_file *svc_parse(svc_arena *a, svc_diag *d, const char *path, const char *src, size_t len)
{
    int errors0 = d->errors;
    svc_file *f = svc_arena_alloc(a, sizeof *f);
    char *copy = svc_arena_strndup(a, src, len);
    const char *p = path ? svc_arena_strndup(a, path, strlen(path)) : "<input>";
    d->path = p ? p : "<input>";
    d->src = copy;
    d->len = copy ? len : 0;
    void *parser = f && copy && p ? svc_parserAlloc(malloc) : NULL;
    if (!parser) {
        svc_error(d, 0, 0, "out of memory");
        return NULL;
    }
    f->path = p;
    f->src = copy;
    f->len = len;

    svc_pstate ps = {.a = a, .d = d, .file = f, .errors0 = errors0};
    svc_lexer lx;
    svc_lexer_init(&lx, a, d, copy, len);
    int major;
    bool lexed_error = false;
    do {
        int before = d->errors;
        ps.prev = ps.cur;
        major = svc_lex(&lx, &ps.cur);
        bool now = d->errors > before;
        ps.lex_error_near = now || lexed_error;
        if (now) ps.lex_error_line = lx.line;
        lexed_error = now;
        svc_parser(parser, major, ps.cur, &ps);
    } while (major != 0 && !ps.failed);
    svc_lexer_fini(&lx);
    svc_parserFree(parser, free);
    return d->errors > errors0 ? (f->service ? f : NULL) : f;
}

/* The whole file, copied into the arena; NULL with errno set if it cannot be read. */
static char *read_file(svc_arena *a, FILE *fp, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = NULL;
    for (;;) {
        char *nb = realloc(buf, cap);
        if (!nb) {
            free(buf);
            errno = ENOMEM;
            return NULL;
        }
        buf = nb;
        n += fread(buf + n, 1, cap - n, fp);
        if (n < cap || cap > SIZE_MAX / 4) break;
        cap *= 2;
    }
    char *out = NULL;
    if (ferror(fp))
        errno = errno ? errno : EIO;
    else if (!(out = svc_arena_strndup(a, buf, n)))
        errno = ENOMEM;
    free(buf);
    *len = n;
    return out;
}

svc_file *svc_load(svc_arena *a, FILE *errout, const char *path, int *nerrors)
{
    svc_diag d;
    svc_diag_init(&d, errout, path, NULL, 0);
    svc_file *f = NULL;
    /* Not fopen(): a FIFO would keep it waiting for a writer, forever if none comes. */
    const char *kind = NULL;
    int fd = shmrpc__open_regular(path, O_RDONLY, 0, &kind);
    FILE *fp = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (fd >= 0 && !fp) close(fd);
    size_t len = 0;
    char *src = NULL;
    if (fp) {
        errno = 0;
        src = read_file(a, fp, &len);
        int e = errno;
        fclose(fp);
        errno = e;
    }
    if (kind)
        svc_error(&d, 0, 0, "cannot read: %s, not a regular file", kind);
    else if (!src)
        svc_error(&d, 0, 0, "cannot read: %s", strerror(errno ? errno : EIO));
    else
        f = svc_parse(a, &d, path, src, len);
    if (f && d.errors == 0) svc_check(a, &d, f);
    if (nerrors) *nerrors = d.errors;
    return d.errors ? NULL : f;
}
