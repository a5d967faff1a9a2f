/* SPDX-License-Identifier: MIT */
/* shmrpcctl list and describe: a running service's methods, read from the method table its
 * server sends at the handshake (shmrpc_dyn_info), as grpcurl's list and describe read a
 * gRPC server's reflection. describe spells them in the .svc language, so that what it
 * prints is a .svc file that shmrpcgen reads into a table of the same fingerprints. */
#include "ctl_describe.h"

#include "ctl_bytes.h"
#include "ctl_call.h"

#include <ctype.h>
#include <getopt.h> /* optind */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/client.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/status.h>

#include "usage.h"

#define LIST_USAGE                                                                                 \
    "usage: shmrpcctl list [--timeout MS] [--secret-file PATH] [TLS OPTIONS] ADDRESS\n"            \
    "prints the methods of the service at ADDRESS, a name a line\n" CTL_TLS_USAGE
#define DESCRIBE_USAGE                                                                             \
    "usage: shmrpcctl describe [--timeout MS] [--secret-file PATH] [TLS OPTIONS] ADDRESS [NAME]\n" \
    "prints the service at ADDRESS as a .svc file, or its method or type NAME and the types\n"     \
    "it uses\n" CTL_TLS_USAGE

/* The structs and enums the methods reach, each once by name, in the order first met. A
 * hostile table may chain thousands of them: the walk keeps its own list (no recursion but
 * through a type's wrappers, which the parser bounds) and finds names through an index. */
typedef struct types {
    const shmrpc_dyn_type **v;
    size_t n, cap;
    size_t walked;     /* v[0..walked) had their fields walked */
    size_t *index;     /* by the hash of a name: 1 + its place in v; 0: empty */
    size_t slots;      /* a power of two, at least twice n */
    const char *clash; /* a name the table describes twice, differently */
    bool nomem;
} types;

static size_t hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * 0x100000001b3u;
    return (size_t)h;
}

/* The slot of name in ts->index: its own, or the empty one it would take. */
static size_t *slot(const types *ts, const char *name)
{
    size_t i = hash(name) & (ts->slots - 1);
    while (ts->index[i] && strcmp(ts->v[ts->index[i] - 1]->name, name) != 0)
        i = (i + 1) & (ts->slots - 1);
    return &ts->index[i];
}

/* Room for one more in v and in the index; false (nomem) without. */
static bool room(types *ts)
{
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 16;
        const shmrpc_dyn_type **v = realloc(ts->v, cap * sizeof *v);
        if (!v) return !(ts->nomem = true);
        ts->v = v;
        ts->cap = cap;
    }
    if (2 * (ts->n + 1) > ts->slots) {
        size_t slots = ts->slots ? ts->slots * 2 : 32;
        size_t *index = calloc(slots, sizeof *index);
        if (!index) return !(ts->nomem = true);
        free(ts->index);
        ts->index = index;
        ts->slots = slots;
        for (size_t k = 0; k < ts->n; k++)
            *slot(ts, ts->v[k]->name) = k + 1;
    }
    return true;
}

static void put_decl(FILE *f, const char *indent, const shmrpc_dyn_type *t);

/* t's declaration as put_decl writes it, in *n bytes to free; NULL without memory. */
static char *decl_text(const shmrpc_dyn_type *t, size_t *n)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, n);
    if (!f) return NULL;
    put_decl(f, "", t);
    if (fclose(f) == 0) return text;
    free(text);
    return NULL;
}

/* Whether a and b, two structs or enums of one name, are described alike: their members
 * name the types they hold, so the first level says it (those are compared where met). */
static bool alike(types *ts, const shmrpc_dyn_type *a, const shmrpc_dyn_type *b)
{
    size_t na, nb;
    char *ta = decl_text(a, &na), *tb = decl_text(b, &nb);
    if (!ta || !tb) ts->nomem = true;
    bool same = !ta || !tb || (na == nb && memcmp(ta, tb, na) == 0);
    free(ta);
    free(tb);
    return same;
}

/* Adds the struct or enum t holds, through lists, maps and optionals. */
static void add(types *ts, const shmrpc_dyn_type *t)
{
    for (; t; t = t->elem) {
        if (t->kind == SHMRPC_DYN_MAP) add(ts, t->key);
        if (t->kind != SHMRPC_DYN_STRUCT && t->kind != SHMRPC_DYN_ENUM) continue;
        if (!room(ts)) return;
        size_t *at = slot(ts, t->name);
        if (*at) {
            const shmrpc_dyn_type *had = ts->v[*at - 1];
            if (had != t && !ts->clash && !alike(ts, had, t)) ts->clash = t->name;
            return;
        }
        ts->v[ts->n++] = t;
        *at = ts->n;
        return;
    }
}

/* Adds what the fields of those added reach, until nothing new is added. */
static void walk(types *ts)
{
    for (; ts->walked < ts->n && !ts->nomem; ts->walked++) {
        const shmrpc_dyn_type *t = ts->v[ts->walked];
        for (size_t i = 0; t->kind == SHMRPC_DYN_STRUCT && i < t->n; i++)
            add(ts, t->fields[i].type);
    }
}

static void reach_sig(types *ts, const shmrpc_dyn_sig *s)
{
    for (size_t i = 0; i < s->n_params; i++)
        add(ts, s->params[i].type);
    add(ts, s->result);
    walk(ts);
}

static void types_free(types *ts)
{
    free(ts->v);
    free(ts->index);
}

/* Says what a walk found wrong; true when it did. */
static bool types_failed(const types *ts)
{
    if (ts->nomem)
        fprintf(stderr, "shmrpcctl: describe: out of memory\n");
    else if (ts->clash)
        fprintf(stderr,
                "shmrpcctl: describe: the method table describes '%s' twice, "
                "differently\n",
                ts->clash);
    return ts->nomem || ts->clash;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const shmrpc_dyn_type *const *)a)->name,
                  (*(const shmrpc_dyn_type *const *)b)->name);
}

/* The .svc words of the scalar kinds, SHMRPC_DYN_VOID to SHMRPC_DYN_BYTES. */
static const char *const scalar[] = {
    "void", "bool", "i8",  "i16", "i32", "i64",    "u8",
    "u16",  "u32",  "u64", "f32", "f64", "string", "bytes",
};

/* t as a .svc file spells it: "list<Point>", "map<string, i64>", "string?". */
static void put_type(FILE *f, const shmrpc_dyn_type *t)
{
    switch (t->kind) {
    case SHMRPC_DYN_LIST:
        fputs("list<", f);
        put_type(f, t->elem);
        fputc('>', f);
        break;
    case SHMRPC_DYN_MAP:
        fputs("map<", f);
        put_type(f, t->key);
        fputs(", ", f);
        put_type(f, t->elem);
        fputc('>', f);
        break;
    case SHMRPC_DYN_OPT:
        put_type(f, t->elem);
        fputc('?', f);
        break;
    case SHMRPC_DYN_STRUCT:
    case SHMRPC_DYN_ENUM:
        fputs(t->name, f);
        break;
    case SHMRPC_DYN_ANY:
        fputs("any", f);
        break;
    default:
        fputs((size_t)t->kind < sizeof scalar / sizeof *scalar ? scalar[t->kind] : "?", f);
        break;
    }
}

/* The members of a struct or enum, each after sep: "f64 x;", "green = 5". */
static void put_members(FILE *f, const shmrpc_dyn_type *t, const char *sep)
{
    for (size_t i = 0; i < t->n; i++) {
        fputs(sep, f);
        if (t->kind == SHMRPC_DYN_STRUCT) {
            put_type(f, t->fields[i].type);
            fprintf(f, " %s;", t->fields[i].name);
        } else {
            fprintf(f, "%s = %lld%s", t->values[i].name, (long long)t->values[i].value,
                    i + 1 < t->n ? "," : "");
        }
    }
}

/* "struct Point { f64 x; f64 y; string? label; }" on one line when it fits in WIDTH
 * columns, else a member a line. */
#define WIDTH 90
static void put_decl(FILE *f, const char *indent, const shmrpc_dyn_type *t)
{
    const char *word = t->kind == SHMRPC_DYN_STRUCT ? "struct" : "enum";
    char *line = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&line, &len);
    if (m) {
        fprintf(m, "%s%s %s {", indent, word, t->name);
        put_members(m, t, " ");
        fputs(t->n ? " }\n" : "}\n", m);
    }
    if (m && fclose(m) == 0 && len <= WIDTH + 1) {
        fputs(line, f);
    } else {
        char sep[64];
        snprintf(sep, sizeof sep, "\n%s    ", indent);
        fprintf(f, "%s%s %s {", indent, word, t->name);
        put_members(f, t, sep);
        fprintf(f, "\n%s}\n", indent);
    }
    free(line);
}

/* "@json string echo_json(string text);": the annotations, the result, the parameters. */
static void put_method(FILE *f, const char *indent, const shmrpc_dyn_sig *s)
{
    fputs(indent, f);
    if (s->python_only)
        fprintf(f, "@%s ", s->python_only);
    else if (s->encoding == SHMRPC_ENC_JSON)
        fputs("@json ", f);
    else if (s->encoding == SHMRPC_ENC_RAW)
        fputs("@raw ", f);
    if (s->idempotent) fputs("@idempotent ", f);
    fputs(s->server_stream ? "stream<" : "", f);
    put_type(f, s->result);
    fprintf(f, "%s %s(", s->server_stream ? ">" : "", s->method);
    for (size_t i = 0; i < s->n_params; i++) {
        if (i) fputs(", ", f);
        fputs(s->client_stream ? "stream<" : "", f);
        put_type(f, s->params[i].type);
        fprintf(f, "%s %s", s->client_stream ? ">" : "", s->params[i].name);
    }
    fputs(");\n", f);
}


/* Whether s is an identifier of the .svc language, as every name the generator writes into
 * a method table is: the only names a server's table may show here. */
static bool identifier(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255 || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

/* Connects with the command's options and checks the names of the table it read; NULL
 * after a message, with *status the exit status. */
static shmrpc_dyn *connect_to(const char *addr, ctl_opts *o, int *status)
{
    shmrpc_dyn *d = NULL;
    int rc = shmrpc_dyn_new(&d, &o->client);
    if (rc == 0) rc = shmrpc_dyn_connect(d, addr);
    if (rc != 0) {
        const char *why = shmrpc_errmsg();
        fprintf(stderr, "shmrpcctl: %s: %s%s", addr, shmrpc_strerror(rc), *why ? ": " : "");
        ctl_put_safe(stderr, why);
        fputc('\n', stderr);
        *status = rc == SHMRPC_EINVAL ? 2 : 1;
        shmrpc_dyn_free(d);
        return NULL;
    }
    const shmrpc_service_info *info = shmrpc_dyn_info(d);
    const char *bad = identifier(info->name) ? NULL : info->name;
    for (uint32_t i = 0; !bad && i < info->n_methods; i++)
        if (!identifier(info->methods[i].name)) bad = info->methods[i].name;
    if (!bad) return d;
    fprintf(stderr, "shmrpcctl: %s: the server's method table has a name that is no identifier: '",
            addr);
    ctl_put_safe(stderr, bad);
    fputs("'\n", stderr);
    *status = 1;
    shmrpc_dyn_free(d);
    return NULL;
}

/* The signature of method i of d's table, parsed, and for that method; NULL after a
 * message. */
static const shmrpc_dyn_sig *sig_of(shmrpc_dyn *d, uint32_t i)
{
    const shmrpc_method_info *m = &shmrpc_dyn_info(d)->methods[i];
    const shmrpc_dyn_sig *s;
    if (shmrpc_dyn_method(d, m->name, &m, &s) == 0) {
        if (strcmp(s->method, m->name) == 0) return s;
        fprintf(stderr, "shmrpcctl: %s: the method table gives it the signature of '%s'\n", m->name,
                s->method);
        return NULL;
    }
    fprintf(stderr, "shmrpcctl: %s: cannot read its ", m->name);
    ctl_put_safe(stderr, shmrpc_errmsg());
    fputs("\n  ", stderr);
    ctl_put_safe(stderr, m->signature ? m->signature : "");
    fputc('\n', stderr);
    return NULL;
}

int ctl_list_main(int argc, char **argv)
{
    ctl_opts o;
    ctl_opts_init(&o);
    int status = ctl_client_options(argc, argv, 0, LIST_USAGE, &o);
    if (status >= 0) return status;
    if (argc - optind != 1) return shmrpc__usage(false, LIST_USAGE);
    shmrpc_dyn *d = connect_to(argv[optind], &o, &status);
    if (!d) return status;
    const shmrpc_service_info *info = shmrpc_dyn_info(d);
    for (uint32_t i = 0; i < info->n_methods; i++)
        printf("%s\n", info->methods[i].name);
    shmrpc_dyn_free(d);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* The port of a tcp:// address of one endpoint, tcp://HOST:PORT or tcp://PORT; 0 for
 * another address (of a list, the one that answered is not known here). */
static unsigned long port_of(const char *addr)
{
    if (strncmp(addr, "tcp://", 6) != 0 || strchr(addr, ',')) return 0;
    const char *colon = strrchr(addr + 6, ':'), *num = colon ? colon + 1 : addr + 6;
    if (!*num || strspn(num, "0123456789") != strlen(num) || strlen(num) > 5) return 0;
    unsigned long port = strtoul(num, NULL, 10);
    return port <= 65535 ? port : 0;
}

/* The first lines of the .svc: the service, and the options a method table does not
 * carry, from the address it was reached at: a shm://NAME is served under its name, a
 * tcp://HOST:PORT at its port. An option the address does not give is said in a comment,
 * so that shmrpcgen names what is missing. */
static void put_head(FILE *f, const char *service, const char *addr)
{
    fprintf(f,
            "// The service at %s, from the method table its server sent. A table carries\n"
            "// neither the port nor the name option: those below are where it was reached.\n"
            "service %s {\n",
            addr, service);
    unsigned long port = port_of(addr);
    if (port)
        fprintf(f, "    port %lu;\n", port);
    else
        fputs("    // port: not in the method table\n", f);
    if (strncmp(addr, "shm://", 6) == 0 && addr[6])
        fprintf(f, "    name \"%s\";\n", addr + 6);
    else
        fputs("    // name: not in the method table\n", f);
}

/* The whole service as a .svc file. */
static int describe_service(shmrpc_dyn *d, const char *addr)
{
    const shmrpc_service_info *info = shmrpc_dyn_info(d);
    const shmrpc_dyn_sig **sigs = calloc(info->n_methods ? info->n_methods : 1, sizeof *sigs);
    types ts = {.nomem = !sigs};
    int status = 0;
    for (uint32_t i = 0; sigs && i < info->n_methods; i++) {
        if ((sigs[i] = sig_of(d, i)) == NULL)
            status = 1;
        else
            reach_sig(&ts, sigs[i]);
    }
    if (types_failed(&ts) || status) { /* a .svc short of a method is none */
        status = 1;
    } else {
        qsort(ts.v, ts.n, sizeof *ts.v, by_name);
        put_head(stdout, info->name, addr);
        if (ts.n) putchar('\n');
        for (size_t i = 0; i < ts.n; i++)
            put_decl(stdout, "    ", ts.v[i]);
        if (info->n_methods) putchar('\n');
        for (uint32_t i = 0; i < info->n_methods; i++)
            put_method(stdout, "    ", sigs[i]);
        printf("}\n");
    }
    types_free(&ts);
    free(sigs);
    return status;
}

/* One method and the types it uses, or one type and those its fields use. */
static int describe_name(shmrpc_dyn *d, const char *name)
{
    const shmrpc_service_info *info = shmrpc_dyn_info(d);
    const shmrpc_dyn_sig *s = NULL;
    types ts = {0};
    int status = 0;
    for (uint32_t i = 0; i < info->n_methods; i++)
        if (strcmp(info->methods[i].name, name) == 0 && (s = sig_of(d, i)) == NULL) return 1;
    if (s) {
        reach_sig(&ts, s);
    } else { /* a struct or an enum: look for it among the types the methods use */
        types all = {0};
        for (uint32_t i = 0; i < info->n_methods; i++) {
            const shmrpc_dyn_sig *m = sig_of(d, i);
            if (m)
                reach_sig(&all, m);
            else
                status = 1;
        }
        if (!all.nomem && !all.clash && all.n) {
            size_t at = *slot(&all, name);
            if (at) add(&ts, all.v[at - 1]);
            walk(&ts);
        }
        bool found = ts.n > 0, failed = types_failed(&all);
        types_free(&all);
        if (failed) {
            types_free(&ts);
            return 1;
        }
        if (!found && !ts.nomem) {
            fprintf(stderr, "shmrpcctl: %s has no method or type '", info->name);
            ctl_put_safe(stderr, name);
            fputs("' (see 'shmrpcctl list')\n", stderr);
            return 2;
        }
    }
    if (types_failed(&ts)) {
        status = 1;
    } else {
        if (s) put_method(stdout, "", s);
        for (size_t i = 0; i < ts.n; i++) /* the type asked for first, then in the order met */
            put_decl(stdout, "", ts.v[i]);
    }
    types_free(&ts);
    return status;
}

int ctl_describe_main(int argc, char **argv)
{
    ctl_opts o;
    ctl_opts_init(&o);
    int status = ctl_client_options(argc, argv, 0, DESCRIBE_USAGE, &o);
    if (status >= 0) return status;
    int n = argc - optind;
    if (n < 1 || n > 2) return shmrpc__usage(false, DESCRIBE_USAGE);
    shmrpc_dyn *d = connect_to(argv[optind], &o, &status);
    if (!d) return status;
    status = n == 1 ? describe_service(d, argv[optind]) : describe_name(d, argv[optind + 1]);
    shmrpc_dyn_free(d);
    if (fflush(stdout) != 0) status = 1;
    return status;
}
