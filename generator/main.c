/* SPDX-License-Identifier: MIT */
/* shmrpcgen: reads a .svc file and writes the C code for its clients and servers.
 * Nothing is written unless the whole file checks out. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gen.h"
#include "usage.h"

static void usage(FILE *f)
{
    fputs("usage: shmrpcgen [-o DIR] [--depfile FILE] [--] FILE.svc\n"
          "       shmrpcgen --check-compat OLD.svc NEW.svc\n"
          "       shmrpcgen --help | --version\n"
          "  -o, --out-dir=DIR  where the files go\n"
          "  --depfile=FILE     also write a Makefile rule: the outputs depend on FILE.svc\n"
          "Writes NAME.h, NAME.c (the method table), NAME_client.c and NAME_server.c\n"
          "for FILE.svc into DIR (default: the current directory), made if missing.\n"
          "--check-compat prints whether clients and servers of the two files can call\n"
          "each other, and how they differ: exit status 0 both ways, 1 when clients of\n"
          "OLD cannot call a server of NEW, 2 when only clients of NEW cannot call a\n"
          "server of OLD, 3 when a file does not check out.\n",
          f);
}

typedef struct output {
    void (*render)(gen *g, emitter *e);
    const char *suffix; /* appended to the stem */
    char *path, *tmp;
    sbuf text;
} output;

/* The pieces stay simple when one may end with a blank line and the next begin with
 * one: the output keeps at most one blank line in a row. */
static void squeeze_blank_lines(sbuf *b)
{
    size_t w = 0;
    for (size_t r = 0; r < b->len; r++) {
        if (b->p[r] == '\n' && w >= 2 && b->p[w - 1] == '\n' && b->p[w - 2] == '\n') continue;
        b->p[w++] = b->p[r];
    }
    b->len = w;
    if (b->p) b->p[w] = '\0';
}

static int write_file(const char *path, const sbuf *b)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    size_t n = b->len ? fwrite(b->p, 1, b->len, f) : 0;
    int bad = n != b->len;
    if (fclose(f) != 0) bad = 1;
    return bad ? -1 : 0;
}

/* Whether the file at path holds b's bytes exactly. */
static bool holds(const char *path, const sbuf *b)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return false;
    bool same = true;
    char chunk[8192];
    size_t at = 0, got;
    while (same && (got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        same = got <= b->len - at && memcmp(chunk, b->p + at, got) == 0;
        at += got;
    }
    same = same && !ferror(f) && at == b->len;
    fclose(f);
    return same;
}

/* Writes every output to a temporary file first, then renames them all, so a failure
 * never leaves some files new and some old. A file that already holds its text is left
 * as it is, its time too: a build system that looks again after the generator ran (ninja's
 * restat, which CMake sets) then compiles nothing of it, though the generator was built
 * anew (it links the runtime, so each change of the runtime rebuilds it). */
static int write_outputs(output *out, int n)
{
    bool *keep = calloc((size_t)n, sizeof *keep);
    if (keep == NULL) {
        fprintf(stderr, "shmrpcgen: out of memory\n");
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if ((keep[i] = holds(out[i].path, &out[i].text))) continue;
        if (write_file(out[i].tmp, &out[i].text) != 0) {
            fprintf(stderr, "shmrpcgen: cannot write %s: %s\n", out[i].tmp, strerror(errno));
            for (int j = 0; j <= i; j++)
                if (!keep[j]) unlink(out[j].tmp);
            rc = -1;
        }
    }
    for (int i = 0; i < n && rc == 0; i++)
        if (!keep[i] && rename(out[i].tmp, out[i].path) != 0) {
            fprintf(stderr, "shmrpcgen: cannot write %s: %s\n", out[i].path, strerror(errno));
            for (int j = i; j < n; j++)
                if (!keep[j]) unlink(out[j].tmp);
            rc = -1;
        }
    free(keep);
    return rc;
}

/* Makes dir and the folders above it that are missing, as mkdir -p does (the umask applies):
 * a build system names an output folder before anything is in it. */
static int make_dirs(const char *dir)
{
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (p == NULL) return -1;
    memcpy(p, dir, n + 1);
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        struct stat st;
        if (mkdir(p, 0777) != 0 && (errno != EEXIST || stat(p, &st) != 0 || !S_ISDIR(st.st_mode))) {
            if (errno == EEXIST) errno = ENOTDIR;
            fprintf(stderr, "shmrpcgen: cannot make the folder %s: %s\n", p, strerror(errno));
            rc = -1;
        }
        p[i] = c;
    }
    free(p);
    return rc;
}

static void put_make_path(FILE *f, const char *p)
{
    for (; *p; p++) {
        if (*p == ' ' || *p == '#') fputc('\\', f);
        if (*p == '$') fputc('$', f);
        fputc(*p, f);
    }
}

static int write_depfile(const char *depfile, output *out, int n, const char *input)
{
    FILE *f = fopen(depfile, "w");
    if (f == NULL) {
        fprintf(stderr, "shmrpcgen: cannot write %s: %s\n", depfile, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        put_make_path(f, out[i].path);
        fputs(i + 1 < n ? " " : ": ", f);
    }
    put_make_path(f, input);
    fputc('\n', f);
    if (fclose(f) != 0) {
        fprintf(stderr, "shmrpcgen: cannot write %s: %s\n", depfile, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = ".", *depfile = NULL, *input = NULL;
    bool check_compat = false;
    enum { OPT_DEPFILE = 256, OPT_CHECK_COMPAT };
    static const struct option longopts[] = {
        {"out-dir", required_argument, NULL, 'o'},
        {"depfile", required_argument, NULL, OPT_DEPFILE},
        {"check-compat", no_argument, NULL, OPT_CHECK_COMPAT},
        SHMRPC__OPTS_HELP_VERSION,
        {NULL, 0, NULL, 0},
    };
    /* getopt_long: options before or after the file, -oDIR, --depfile=F, and -- before a
     * file whose name begins with '-'. */
    /* ':' first: getopt_long says nothing itself (shmrpc__opt_default does, on one line). */
    for (int opt; (opt = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1;) {
        switch (opt) {
        case 'o':
            dir = optarg;
            break;
        case OPT_DEPFILE:
            depfile = optarg;
            break;
        case OPT_CHECK_COMPAT:
            check_compat = true;
            break;
        default:
            return shmrpc__opt_default(opt, argv, "shmrpcgen", SHMRPCGEN_VERSION, usage);
        }
    }
    if (check_compat) {
        if (argc - optind != 2) {
            fputs("shmrpcgen: --check-compat takes two .svc files, the old and the new\n", stderr);
            return 3;
        }
        return gen_check_compat(argv[optind], argv[optind + 1]);
    }
    for (int i = optind; i < argc; i++) {
        if (input == NULL) {
            input = argv[i];
        } else {
            fprintf(stderr, "shmrpcgen: one .svc file at a time ('%s' and '%s')\n", input, argv[i]);
            return 2;
        }
    }
    if (input == NULL) return shmrpc__usage_by(false, usage);

    svc_arena *a = svc_arena_new();
    if (a == NULL) {
        fputs("shmrpcgen: out of memory\n", stderr);
        return 2;
    }
    int nerrors = 0;
    svc_file *f = svc_load(a, stderr, input, &nerrors);
    if (f == NULL || nerrors > 0) {
        svc_arena_free(a);
        return 1;
    }

    gen g;
    gen_init(&g, a, f);
    gen_mark_needs(&g);
    output out[] = {
        {gen_header, ".h", NULL, NULL, {0}},
        {gen_descriptor, ".c", NULL, NULL, {0}},
        {gen_client, "_client.c", NULL, NULL, {0}},
        {gen_server, "_server.c", NULL, NULL, {0}},
    };
    int n = (int)(sizeof out / sizeof out[0]), rc = 0;
    for (int i = 0; i < n; i++) {
        out[i].path = svc_arena_printf(a, "%s/%s%s", dir, g.stem, out[i].suffix);
        out[i].tmp = svc_arena_printf(a, "%s.tmp%ld", out[i].path, (long)getpid());
        sb_init(&out[i].text);
        emitter e = {&out[i].text, 0, NULL, 0};
        out[i].render(&g, &e);
        em_flush(&e);
        squeeze_blank_lines(&out[i].text);
    }
    if (rc == 0 && make_dirs(dir) != 0) rc = 2;
    if (rc == 0 && write_outputs(out, n) != 0) rc = 2;
    if (rc == 0 && depfile && write_depfile(depfile, out, n, input) != 0) rc = 2;
    for (int i = 0; i < n; i++)
        sb_free(&out[i].text);
    svc_arena_free(a);
    return rc;
}
