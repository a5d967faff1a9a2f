/* shmrpcgen: reads a .svc file and writes the C code for its clients and servers.
 * Nothing is written unless the whole file checks out. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmrpc/version.h> /* SHMRPC_CODEGEN_VERSION: the contract the output is made for */

#include "embedded.h"
#include "gen.h"

/* templates/, built in (cmake/embed.cmake). */
extern const shmrpc__embedded_file shmrpcgen_templates[];

static const char *template_text(const char *name)
{
    const char *text = shmrpc__embedded_text(shmrpcgen_templates, name);
    if (text) return text;
    fprintf(stderr, "shmrpcgen: no template %s was built in\n", name);
    exit(2);
}

static void usage(FILE *f)
{
    fputs("usage: shmrpcgen [-o DIR] [--depfile FILE] FILE.svc\n"
          "       shmrpcgen --version\n"
          "Writes NAME.h, NAME.c (the method table), NAME_client.c and NAME_server.c\n"
          "for FILE.svc into DIR (default: the current directory).\n",
          f);
}

static void fill_methods(gen *g, tmpl_dict *d)
{
    for (const svc_method *m = g->svc->methods; m; m = m->next) {
        tmpl_dict *md = tmpl_push(d, "methods");
        tmpl_set(md, "cname", gen_method_cname(g, m));
        tmpl_set(md, "doc", gen_doc(g, m->doc, ""));
        tmpl_set(md, "doc_indented", gen_doc(g, m->doc, "    "));
        sbuf p;
        sb_init(&p);
        for (const svc_field *f = m->params; f; f = f->next)
            sb_printf(
                &p, ", %s",
                gen_decl(g, gen_param_ctype(g, gen_type(g, f->type)), gen_tokstr(g, f->name)));
        tmpl_set(md, "params_decl", sb_str(&p));
        sb_free(&p);
        if (m->result->kind == SVC_T_VOID)
            tmpl_set(md, "out_decl", "");
        else
            tmpl_setf(md, "out_decl", ", %s", gen_decl(g, gen_type(g, m->result)->ctype, "*out"));
        gen_client_stub(g, m, md);
        gen_server_invoke(g, m, md);
    }
}

static tmpl_dict *model(gen *g)
{
    tmpl_dict *d = tmpl_new(g->a);
    tmpl_set(d, "version", SHMRPCGEN_VERSION);
    tmpl_setf(d, "codegen_version", "%d", SHMRPC_CODEGEN_VERSION);
    tmpl_set(d, "source", g->src_base);
    tmpl_set(d, "stem", g->stem);
    tmpl_set(d, "prefix", g->p);
    tmpl_set(d, "PREFIX", g->P);
    tmpl_setf(d, "service", "%.*s", g->svc->name.n, g->svc->name.p);
    tmpl_set(d, "service_doc", gen_doc(g, g->svc->doc, ""));
    /* The prefix keeps a stem that starts with a digit ("2d") or spells a reserved name
     * from making an invalid or clashing macro. */
    char *guard = gen_must(svc_arena_printf(g->a, "SHMRPC_GEN_%s_H", svc_upper(g->a, g->stem)));
    for (char *c = guard; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9'))) *c = '_';
    tmpl_set(d, "guard", guard);
    sbuf types;
    sb_init(&types);
    gen_type_defs(g, &types);
    tmpl_set(d, "types", sb_str(&types));
    sb_free(&types);
    gen_descriptor(g, d);
    fill_methods(g, d);
    gen_codec(g, d);
    tmpl_set(d, "methods_ptr", g->n_methods ? S("%s__methods", g->p) : "NULL");
    tmpl_set(d, "invoke_ptr", g->n_methods ? S("%s__invoke", g->p) : "NULL");
    tmpl_set(d, "offsets_ptr", g->n_methods ? S("%s__handler_offset", g->p) : "NULL");
    return d;
}

typedef struct output {
    const char *tmpl;   /* template name */
    const char *suffix; /* appended to the stem */
    char *path, *tmp;
    sbuf text;
} output;

/* Templates stay simple when sections may leave blank lines behind: the output keeps
 * at most one blank line in a row. */
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

/* Writes every output to a temporary file first, then renames them all, so a failure
 * never leaves some files new and some old. */
static int write_outputs(output *out, int n)
{
    for (int i = 0; i < n; i++)
        if (write_file(out[i].tmp, &out[i].text) != 0) {
            fprintf(stderr, "shmrpcgen: cannot write %s: %s\n", out[i].tmp, strerror(errno));
            for (int j = 0; j <= i; j++)
                unlink(out[j].tmp);
            return -1;
        }
    for (int i = 0; i < n; i++)
        if (rename(out[i].tmp, out[i].path) != 0) {
            fprintf(stderr, "shmrpcgen: cannot write %s: %s\n", out[i].path, strerror(errno));
            for (int j = i; j < n; j++)
                unlink(out[j].tmp);
            return -1;
        }
    return 0;
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
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--version") == 0) {
            printf("shmrpcgen %s\n", SHMRPCGEN_VERSION);
            return 0;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if ((strcmp(a, "-o") == 0 || strcmp(a, "--depfile") == 0) && i + 1 < argc) {
            *(a[1] == 'o' ? &dir : &depfile) = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "shmrpcgen: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (input == NULL) {
            input = a;
        } else {
            fprintf(stderr, "shmrpcgen: one .svc file at a time ('%s' and '%s')\n", input, a);
            return 2;
        }
    }
    if (input == NULL) {
        usage(stderr);
        return 2;
    }

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
    tmpl_dict *d = model(&g);
    output out[] = {
        {"header.h.tmpl", ".h", NULL, NULL, {0}},
        {"common.c.tmpl", ".c", NULL, NULL, {0}},
        {"client.c.tmpl", "_client.c", NULL, NULL, {0}},
        {"server.c.tmpl", "_server.c", NULL, NULL, {0}},
    };
    int n = (int)(sizeof out / sizeof out[0]), rc = 0;
    for (int i = 0; i < n; i++) {
        out[i].path = svc_arena_printf(a, "%s/%s%s", dir, g.stem, out[i].suffix);
        out[i].tmp = svc_arena_printf(a, "%s.tmp%ld", out[i].path, (long)getpid());
        sb_init(&out[i].text);
        if (!tmpl_render(out[i].tmpl, template_text(out[i].tmpl), d, &out[i].text)) rc = 2;
        squeeze_blank_lines(&out[i].text);
    }
    if (rc == 0 && write_outputs(out, n) != 0) rc = 2;
    if (rc == 0 && depfile && write_depfile(depfile, out, n, input) != 0) rc = 2;
    for (int i = 0; i < n; i++)
        sb_free(&out[i].text);
    svc_arena_free(a);
    return rc;
}
