/* SPDX-License-Identifier: MIT */
/* shmrpcctl list and describe: a running service's methods, read from the method table its
 * server sends at the handshake (shmrpc_dyn_info), as grpcurl's list and describe read a
 * gRPC server's reflection. describe spells them in the .svc language, so that what it
 * prints is a .svc file that shmrpcgen reads into a table of the same fingerprints. */
#include "ctl_describe.h"

#include "ctl_call.h"

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

/* The structs and enums the methods reach, each once, in the order first met. */
typedef struct types {
    const shmrpc_dyn_type **v;
    size_t n, cap;
    bool nomem;
} types;

static bool known(const types *ts, const shmrpc_dyn_type *t)
{
    for (size_t i = 0; i < ts->n; i++)
        if (ts->v[i] == t || strcmp(ts->v[i]->name, t->name) == 0) return true;
    return false;
}

/* Adds the structs and enums t reaches. A struct that holds itself is a node met again:
 * known() ends the walk there, so it is bounded by the number of types. */
static void reach(types *ts, const shmrpc_dyn_type *t)
{
    for (; t; t = t->elem) {
        if (t->kind == SHMRPC_DYN_MAP) reach(ts, t->key);
        if (t->kind != SHMRPC_DYN_STRUCT && t->kind != SHMRPC_DYN_ENUM) continue;
        if (known(ts, t)) return;
        if (ts->n == ts->cap) {
            size_t cap = ts->cap ? ts->cap * 2 : 16;
            const shmrpc_dyn_type **v = realloc(ts->v, cap * sizeof *v);
            if (!v) {
                ts->nomem = true;
                return;
            }
            ts->v = v;
            ts->cap = cap;
        }
        ts->v[ts->n++] = t;
        for (size_t i = 0; t->kind == SHMRPC_DYN_STRUCT && i < t->n; i++)
            reach(ts, t->fields[i].type);
        return;
    }
}

static void reach_sig(types *ts, const shmrpc_dyn_sig *s)
{
    for (size_t i = 0; i < s->n_params; i++)
        reach(ts, s->params[i].type);
    reach(ts, s->result);
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
    put_type(f, s->result);
    fprintf(f, " %s(", s->method);
    for (size_t i = 0; i < s->n_params; i++) {
        if (i) fputs(", ", f);
        put_type(f, s->params[i].type);
        fprintf(f, " %s", s->params[i].name);
    }
    fputs(");\n", f);
}

/* Connects with the command's options; NULL after a message, with *status the exit status. */
static shmrpc_dyn *connect_to(const char *addr, ctl_opts *o, int *status)
{
    shmrpc_dyn *d = NULL;
    int rc = shmrpc_dyn_new(&d, &o->client);
    if (rc == 0) rc = shmrpc_dyn_connect(d, addr);
    if (rc == 0) return d;
    const char *why = shmrpc_errmsg();
    fprintf(stderr, "shmrpcctl: %s: %s%s%s\n", addr, shmrpc_strerror(rc), *why ? ": " : "", why);
    *status = rc == SHMRPC_EINVAL ? 2 : 1;
    shmrpc_dyn_free(d);
    return NULL;
}

/* The signature of method i of d's table, parsed; NULL after a message. */
static const shmrpc_dyn_sig *sig_of(shmrpc_dyn *d, uint32_t i)
{
    const shmrpc_method_info *m = &shmrpc_dyn_info(d)->methods[i];
    const shmrpc_dyn_sig *s;
    if (shmrpc_dyn_method(d, m->name, &m, &s) == 0) return s;
    fprintf(stderr, "shmrpcctl: %s: cannot read its %s\n  %s\n", m->name, shmrpc_errmsg(),
            m->signature ? m->signature : "");
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

/* The first lines of the .svc: the service, and the options a method table does not
 * carry, from the address it was reached at: a shm://NAME is served under its name, a
 * tcp://HOST:PORT (the first of a list) at its port. An option the address does not give
 * is said in a comment, so that shmrpcgen names what is missing. */
static void put_head(FILE *f, const char *service, const char *addr)
{
    fprintf(f,
            "// The service at %s, from the method table its server sent. A table carries\n"
            "// neither the port nor the name option: those below are where it was reached.\n"
            "service %s {\n",
            addr, service);
    unsigned long port = 0;
    if (strncmp(addr, "tcp://", 6) == 0) {
        const char *end = addr + strcspn(addr, ","), *num = end;
        while (num > addr + 6 && num[-1] != ':')
            num--;
        char *stop = NULL;
        if (num > addr + 6 && num < end) port = strtoul(num, &stop, 10);
        if (stop != end || port > 65535) port = 0;
    }
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
    types ts = {0};
    int status = sigs ? 0 : 1;
    for (uint32_t i = 0; sigs && i < info->n_methods; i++) {
        if ((sigs[i] = sig_of(d, i)) == NULL)
            status = 1;
        else
            reach_sig(&ts, sigs[i]);
    }
    if (!sigs || ts.nomem) {
        fprintf(stderr, "shmrpcctl: describe: out of memory\n");
        status = 1;
    } else {
        qsort(ts.v, ts.n, sizeof *ts.v, by_name);
        put_head(stdout, info->name, addr);
        if (ts.n) putchar('\n');
        for (size_t i = 0; i < ts.n; i++)
            put_decl(stdout, "    ", ts.v[i]);
        if (info->n_methods) putchar('\n');
        for (uint32_t i = 0; i < info->n_methods; i++)
            if (sigs[i]) put_method(stdout, "    ", sigs[i]);
        printf("}\n");
    }
    free(ts.v);
    free(sigs);
    return status;
}

/* One method and the types it uses, or one type and those its fields use. */
static int describe_name(shmrpc_dyn *d, const char *name)
{
    const shmrpc_service_info *info = shmrpc_dyn_info(d);
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *s;
    types ts = {0};
    int rc = shmrpc_dyn_method(d, name, &m, &s), status = 0;
    if (rc == 0) {
        reach_sig(&ts, s);
    } else if (rc != SHMRPC_ENOENT) {
        fprintf(stderr, "shmrpcctl: %s: cannot read its %s\n  %s\n", name, shmrpc_errmsg(),
                m && m->signature ? m->signature : "");
        return 1;
    } else { /* a struct or an enum: look for it among the types the methods use */
        types all = {0};
        for (uint32_t i = 0; i < info->n_methods; i++)
            if ((s = sig_of(d, i)) != NULL) reach_sig(&all, s);
        s = NULL;
        for (size_t i = 0; i < all.n; i++)
            if (strcmp(all.v[i]->name, name) == 0) reach(&ts, all.v[i]);
        bool nomem = all.nomem;
        free(all.v);
        if (ts.n == 0 && !nomem && !ts.nomem) {
            fprintf(stderr, "shmrpcctl: %s has no method or type '%s' (see 'shmrpcctl list')\n",
                    info->name, name);
            return 2;
        }
        ts.nomem |= nomem;
    }
    if (ts.nomem) {
        fprintf(stderr, "shmrpcctl: describe: out of memory\n");
        status = 1;
    } else {
        if (s) put_method(stdout, "", s);
        for (size_t i = 0; i < ts.n; i++) /* the type asked for first, then in the order met */
            put_decl(stdout, "", ts.v[i]);
    }
    free(ts.v);
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
