/* SPDX-License-Identifier: MIT */
/* libFuzzer target: a method table's types and signatures as a hostile peer may send them
 * (codec/dynamic_types.c, the signature parser with a table, rpc/compat.c). The input is
 * one table, or two separated by a NUL byte (a client's, then a server's); each line is a
 * type's description when it starts with "struct " or "enum ", else a method's signature.
 * Checks, besides the sanitizers': a table that parses finds each of its types by name;
 * a signature that parses against it prints a canonical text that parses on its own (or
 * nests too deeply for the parser once spelled out); the comparison of two tables ends
 * with a verdict (0, SHMRPC_EMISMATCH or a refused table), whatever they hold. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/dyn.h"
#include "rpc/rpc.h"

#define MAX_LINES 512

typedef struct table {
    const char *types[MAX_LINES];
    shmrpc_method_info methods[MAX_LINES];
    uint32_t n_types, n_methods;
    shmrpc_service_info info;
} table;

static int by_name(const void *x, const void *y)
{
    return strcmp(((const shmrpc_method_info *)x)->name, ((const shmrpc_method_info *)y)->name);
}

/* Splits text (NUL-terminated, written over) into t; a method's name is its signature up
 * to '(' (made in a), duplicates dropped so that the table is one a peer could pass. */
static void split(shmrpc_arena *a, char *text, table *t)
{
    memset(t, 0, sizeof *t);
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (strncmp(line, "struct ", 7) == 0 || strncmp(line, "enum ", 5) == 0) {
            if (t->n_types < MAX_LINES) t->types[t->n_types++] = line;
            continue;
        }
        const char *paren = strchr(line, '(');
        if (!paren || paren == line || t->n_methods == MAX_LINES) continue;
        char *name = shmrpc_arena_strndup(a, line, (size_t)(paren - line));
        if (!name) abort();
        t->methods[t->n_methods++] =
            (shmrpc_method_info){.name = name, .fingerprint = (uint64_t)t->n_methods, .signature = line};
    }
    qsort(t->methods, t->n_methods, sizeof *t->methods, by_name);
    uint32_t w = 0;
    for (uint32_t i = 0; i < t->n_methods; i++)
        if (w == 0 || strcmp(t->methods[w - 1].name, t->methods[i].name) != 0)
            t->methods[w++] = t->methods[i];
    t->n_methods = w;
    for (uint32_t i = 0; i < w; i++)
        t->methods[i].id = i;
    t->info = (shmrpc_service_info){.magic = SHMRPC_SERVICE_MAGIC,
                                    .version = SHMRPC_DESCRIPTOR_VERSION,
                                    .name = "Fuzz",
                                    .n_methods = w,
                                    .methods = t->methods,
                                    .n_types = t->n_types,
                                    .types = t->types};
}

static void read_table(shmrpc_arena *a, const table *t)
{
    char err[256];
    const shmrpc__types *types;
    int rc = shmrpc__types_parse(a, t->types, t->n_types, &types, err, sizeof err);
    if (rc != 0) {
        if (rc != SHMRPC_EINVAL || err[0] == '\0') abort();
        return;
    }
    for (uint32_t i = 0; i < types->n; i++)
        if (shmrpc__types_find(types, types->nodes[i]->name) != types->nodes[i]) abort();
    shmrpc_buf text;
    shmrpc_buf_init(&text);
    for (uint32_t i = 0; i < t->n_methods; i++) {
        const shmrpc_dyn_sig *s, *again;
        if (shmrpc__dyn_parse(a, t->methods[i].signature, types, &s, err, sizeof err) != 0) continue;
        shmrpc_buf_clear(&text);
        shmrpc__dyn_sig_text(s, &text, SHMRPC__DYN_SIG_TEXT_MAX);
        if (text.err || shmrpc_buf_append(&text, "", 1) != 0) abort();
        if (shmrpc__dyn_parse(a, (const char *)text.data, NULL, &again, err, sizeof err) != 0 &&
            strstr(err, "nested too deeply") == NULL)
            abort();
    }
    shmrpc_buf_destroy(&text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16) return 0;
    char *copy = malloc(size + 2);
    if (!copy) abort();
    memcpy(copy, data, size);
    copy[size] = copy[size + 1] = '\0';
    size_t first = strlen(copy);
    shmrpc_arena *a = shmrpc_arena_new(0);
    static table x, y;
    if (!a) abort();
    split(a, copy, &x);
    read_table(a, &x);
    if (first < size) {
        split(a, copy + first + 1, &y);
        read_table(a, &y);
        shmrpc_buf verdict;
        shmrpc_buf_init(&verdict);
        int rc = shmrpc_service_compat(&x.info, &y.info, &verdict);
        if (rc != 0 && rc != SHMRPC_EMISMATCH && rc != SHMRPC_EINVAL) abort();
        shmrpc_buf_destroy(&verdict);
    }
    shmrpc_arena_free(a);
    free(copy);
    return 0;
}
