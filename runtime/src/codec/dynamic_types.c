/* SPDX-License-Identifier: MIT */
/* A method table's types (shmrpc_service_info.types, docs/dynamic.md): the reader that
 * turns their descriptions into one node per struct and enum, refusing a table a hostile
 * peer could send (a type described twice, a name described nowhere, a struct that holds
 * itself with no list, map or optional between, more types than the wire carries), and the
 * printer of a signature's canonical text, which a peer of revision 5 or less reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/dyn.h"

/* The name and kind a description starts with ("struct Point{" -> Point), into a; NULL
 * with err when it starts otherwise. */
static const char *head(shmrpc_arena *a, const char *text, shmrpc_dyn_kind *k, char *err,
                        size_t cap)
{
    const char *p = text;
    if (strncmp(p, "struct ", 7) == 0)
        *k = SHMRPC_DYN_STRUCT, p += 7;
    else if (strncmp(p, "enum ", 5) == 0)
        *k = SHMRPC_DYN_ENUM, p += 5;
    else {
        snprintf(err, cap, "types, entry '%.40s': expected 'struct NAME{' or 'enum NAME{'", text);
        return NULL;
    }
    const char *b = p;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
           (*p >= '0' && *p <= '9' && p > b))
        p++;
    if (p == b || *p != '{') {
        snprintf(err, cap, "types, entry '%.40s': expected 'struct NAME{' or 'enum NAME{'", text);
        return NULL;
    }
    char *name = shmrpc_arena_strndup(a, b, (size_t)(p - b));
    if (name == NULL) snprintf(err, cap, "out of memory");
    return name;
}

static int by_name(const void *x, const void *y)
{
    return strcmp((*(shmrpc_dyn_type *const *)x)->name, (*(shmrpc_dyn_type *const *)y)->name);
}

/* A struct that holds itself through fields that are structs, with no list, map or optional
 * between (A{B b;} B{A a;}): its value never ends. A depth-first search without recursion
 * (a chain may be as long as the table), its stack and marks bounded by the table's count. */
static int find_cycle(shmrpc_arena *a, const shmrpc__types *t, char *err, size_t cap)
{
    enum { WHITE, GREY, BLACK };
    uint8_t *mark = shmrpc_arena_calloc(a, t->n ? t->n : 1, 1, 1);
    uint32_t *node = shmrpc_arena_alloc_items(a, t->n ? t->n : 1, sizeof *node, _Alignof(uint32_t));
    size_t *field = shmrpc_arena_alloc_items(a, t->n ? t->n : 1, sizeof *field, _Alignof(size_t));
    if (!mark || !node || !field) {
        snprintf(err, cap, "out of memory");
        return SHMRPC_ENOMEM;
    }
    for (uint32_t root = 0; root < t->n; root++) {
        if (mark[root] != WHITE || t->byname[root]->kind != SHMRPC_DYN_STRUCT) continue;
        uint32_t top = 0;
        node[0] = root, field[0] = 0, mark[root] = GREY;
        for (;;) {
            const shmrpc_dyn_type *s = t->byname[node[top]];
            if (field[top] == s->n) {
                mark[node[top]] = BLACK;
                if (top-- == 0) break;
                continue;
            }
            const shmrpc_dyn_type *ft = s->fields[field[top]++].type;
            if (ft->kind != SHMRPC_DYN_STRUCT) continue;
            uint32_t i = shmrpc__types_index(t, ft->name);
            if (mark[i] == GREY) {
                snprintf(err, cap,
                         "types, '%s': holds itself through '%s' with no list, map or optional "
                         "between (a value of it would never end)",
                         ft->name, s->name);
                return SHMRPC_EINVAL;
            }
            if (mark[i] == BLACK) continue;
            mark[i] = GREY;
            top++;
            node[top] = i, field[top] = 0;
        }
    }
    return 0;
}

int shmrpc__types_parse(shmrpc_arena *a, const char *const *texts, uint32_t n,
                        const shmrpc__types **out, char *err, size_t cap)
{
    *out = NULL;
    if (n > SHMRPC__MAX_TYPES) {
        snprintf(err, cap, "types: %u of them, above the maximum of %u", n, SHMRPC__MAX_TYPES);
        return SHMRPC_EINVAL;
    }
    shmrpc__types *t = shmrpc_arena_calloc(a, 1, sizeof *t, _Alignof(shmrpc__types));
    if (t == NULL ||
        !(t->nodes = shmrpc_arena_alloc_items(a, n ? n : 1, sizeof *t->nodes,
                                              _Alignof(shmrpc_dyn_type *))) ||
        !(t->byname = shmrpc_arena_alloc_items(a, n ? n : 1, sizeof *t->byname,
                                               _Alignof(shmrpc_dyn_type *)))) {
        snprintf(err, cap, "out of memory");
        return SHMRPC_ENOMEM;
    }
    /* Every name first, so that a description may name one described after it. */
    for (uint32_t i = 0; i < n; i++) {
        shmrpc_dyn_kind k;
        if (texts[i] == NULL) {
            snprintf(err, cap, "types, entry %u: missing", i);
            return SHMRPC_EINVAL;
        }
        const char *name = head(a, texts[i], &k, err, cap);
        if (name == NULL) return strcmp(err, "out of memory") ? SHMRPC_EINVAL : SHMRPC_ENOMEM;
        shmrpc_dyn_type *node = shmrpc_arena_calloc(a, 1, sizeof *node, _Alignof(shmrpc_dyn_type));
        if (node == NULL) {
            snprintf(err, cap, "out of memory");
            return SHMRPC_ENOMEM;
        }
        node->kind = k;
        node->name = name;
        t->nodes[i] = t->byname[i] = node;
    }
    if (n > 0) qsort(t->byname, n, sizeof *t->byname, by_name);
    for (uint32_t i = 1; i < n; i++)
        if (strcmp(t->byname[i - 1]->name, t->byname[i]->name) == 0) {
            snprintf(err, cap, "types, '%s': described twice", t->byname[i]->name);
            return SHMRPC_EINVAL;
        }
    t->n = n;
    for (uint32_t i = 0; i < n; i++) {
        char why[200];
        bool nomem = false;
        if (shmrpc__dyn_parse_description(a, texts[i], t, t->nodes[i], why, sizeof why, &nomem)) {
            snprintf(err, cap, "types, '%s': %s", t->nodes[i]->name, why);
            return nomem ? SHMRPC_ENOMEM : SHMRPC_EINVAL;
        }
    }
    int rc = find_cycle(a, t, err, cap);
    if (rc == 0) *out = t;
    return rc;
}

int shmrpc__types_check(const shmrpc_service_info *info, shmrpc_buf *err)
{
    if (info->n_types == 0) return 0;
    shmrpc_arena *a = shmrpc_arena_new(0);
    if (a == NULL) return SHMRPC_ENOMEM;
    char why[256];
    const shmrpc__types *t;
    int rc = shmrpc__types_parse(a, info->types, info->n_types, &t, why, sizeof why);
    shmrpc_arena_free(a);
    if (rc == SHMRPC_EINVAL) shmrpc__msg_set(err, "%s", why);
    return rc;
}

/* --- the canonical text ---------------------------------------------------------------- */

/* One text being written: the structs and enums spelled out in it so far, a set of their
 * nodes (open addressing; the nodes' addresses, which no peer chooses, are the keys), and
 * its bounds: a text stops, with out->err, at `limit` bytes (SHMRPC_ETOOBIG) or types
 * nested SHMRPC_MAX_DEPTH deep (SHMRPC_EINVAL), so that what a table can make it cost
 * is bounded by the limit, not by its methods times its types. */
typedef struct printer {
    shmrpc_buf *out;
    size_t limit;
    unsigned depth;
    const shmrpc_dyn_type **seen;
    size_t n_seen, cap_seen; /* cap_seen: a power of two, or 0 */
    shmrpc_arena *a;
} printer;

static void put(printer *p, const char *s)
{
    size_t n = strlen(s);
    if (p->out->err) return;
    if (n > p->limit - (p->out->len < p->limit ? p->out->len : p->limit))
        p->out->err = SHMRPC_ETOOBIG;
    else
        shmrpc_buf_append(p->out, s, n);
}

static size_t slot_of(const printer *p, const shmrpc_dyn_type *t)
{
    uint64_t h = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15u; /* Fibonacci hashing */
    size_t i = (size_t)(h >> 32) & (p->cap_seen - 1);
    while (p->seen[i] && p->seen[i] != t)
        i = (i + 1) & (p->cap_seen - 1);
    return i;
}

/* Whether t was spelled out in this text already; if not, it is from now on. */
static bool spelled(printer *p, const shmrpc_dyn_type *t)
{
    if (p->cap_seen && p->seen[slot_of(p, t)] == t) return true;
    if (2 * (p->n_seen + 1) > p->cap_seen) {
        printer grown = *p;
        grown.cap_seen = p->cap_seen ? 2 * p->cap_seen : 16;
        grown.seen = shmrpc_arena_calloc(p->a, grown.cap_seen, sizeof *grown.seen,
                                         _Alignof(const shmrpc_dyn_type *));
        if (grown.seen == NULL) {
            p->out->err = SHMRPC_ENOMEM;
            return true;
        }
        for (size_t i = 0; i < p->cap_seen; i++)
            if (p->seen[i]) grown.seen[slot_of(&grown, p->seen[i])] = p->seen[i];
        *p = grown;
    }
    p->seen[slot_of(p, t)] = t;
    p->n_seen++;
    return false;
}

static void print_type(printer *p, const shmrpc_dyn_type *t);

static void print_body(printer *p, const shmrpc_dyn_type *t)
{
    put(p, "{");
    for (size_t i = 0; i < t->n && !p->out->err; i++) {
        if (t->kind == SHMRPC_DYN_STRUCT) {
            print_type(p, t->fields[i].type);
            put(p, " ");
            put(p, t->fields[i].name);
            put(p, ";");
        } else {
            char num[32];
            snprintf(num, sizeof num, "=%lld", (long long)t->values[i].value);
            if (i) put(p, ",");
            put(p, t->values[i].name);
            put(p, num);
        }
    }
    put(p, "}");
}

static void print_type(printer *p, const shmrpc_dyn_type *t)
{
    if (p->out->err) return;
    if (p->depth >= SHMRPC_MAX_DEPTH) {
        p->out->err = SHMRPC_EINVAL;
        return;
    }
    p->depth++;
    switch (t->kind) {
    case SHMRPC_DYN_LIST:
        put(p, "list<");
        print_type(p, t->elem);
        put(p, ">");
        break;
    case SHMRPC_DYN_MAP:
        put(p, "map<");
        print_type(p, t->key);
        put(p, ",");
        print_type(p, t->elem);
        put(p, ">");
        break;
    case SHMRPC_DYN_OPT:
        print_type(p, t->elem);
        put(p, "?");
        break;
    case SHMRPC_DYN_ANY:
        put(p, "any");
        break;
    case SHMRPC_DYN_STRUCT:
    case SHMRPC_DYN_ENUM:
        put(p, t->kind == SHMRPC_DYN_STRUCT ? "struct " : "enum ");
        put(p, t->name);
        if (!spelled(p, t)) print_body(p, t);
        break;
    default:
        put(p, shmrpc__dyn_scalar_names[t->kind]);
        break;
    }
    p->depth--;
}

int shmrpc_dyn_sig_text(const shmrpc_dyn_sig *s, shmrpc_buf *out)
{
    shmrpc__dyn_sig_text(s, out, SHMRPC__DYN_SIG_TEXT_MAX);
    return out->err;
}

void shmrpc__dyn_sig_text(const shmrpc_dyn_sig *s, shmrpc_buf *out, size_t limit)
{
    shmrpc_arena *a = shmrpc_arena_new(0);
    if (a == NULL) {
        out->err = SHMRPC_ENOMEM;
        return;
    }
    size_t room = SIZE_MAX - out->len;
    printer p = {.out = out, .limit = out->len + (limit < room ? limit : room), .a = a};
    put(&p, s->method);
    put(&p, "(");
    for (size_t i = 0; i < s->n_params; i++) {
        if (i) put(&p, ",");
        if (s->client_stream) put(&p, "stream<");
        print_type(&p, s->params[i].type);
        put(&p, s->client_stream ? "> " : " ");
        put(&p, s->params[i].name);
    }
    put(&p, ")->");
    if (s->server_stream) put(&p, "stream<");
    print_type(&p, s->result);
    if (s->server_stream) put(&p, ">");
    put(&p, " @");
    put(&p, s->python_only                   ? s->python_only
            : s->encoding == SHMRPC_ENC_JSON ? "json"
            : s->encoding == SHMRPC_ENC_RAW  ? "raw"
                                             : "msgpack");
    if (s->idempotent) put(&p, " @idempotent");
    shmrpc_arena_free(a);
}

int shmrpc__info_spelled(shmrpc_arena *a, const shmrpc_service_info *in, size_t max_total,
                         shmrpc_service_info *out, shmrpc_buf *err)
{
    char why[256];
    const shmrpc__types *types;
    int rc = shmrpc__types_parse(a, in->types, in->n_types, &types, why, sizeof why);
    shmrpc_method_info *m = rc ? NULL
                               : shmrpc_arena_alloc_items(a, in->n_methods ? in->n_methods : 1,
                                                          sizeof *m, _Alignof(shmrpc_method_info));
    if (rc == 0 && m == NULL) rc = SHMRPC_ENOMEM;
    shmrpc_buf text;
    shmrpc_buf_init(&text);
    /* What a handshake carries bounds the whole table's text, so a table that would spell
     * out to more costs no more than that to refuse. */
    size_t total = 0;
    for (uint32_t i = 0; rc == 0 && i < in->n_methods; i++) {
        const shmrpc_dyn_sig *s;
        m[i] = in->methods[i];
        rc = shmrpc__dyn_parse(a, in->methods[i].signature, types, &s, why, sizeof why);
        if (rc) break;
        size_t room = max_total - total;
        shmrpc_buf_clear(&text);
        shmrpc__dyn_sig_text(s, &text, room < 65535u ? room : 65535u);
        if (text.err == SHMRPC_ETOOBIG && room < 65535u)
            snprintf(why, sizeof why,
                     "the method table spelled out for a peer of protocol revision 5 or less "
                     "needs more than the %zu bytes a handshake carries (upgrade the peer)",
                     max_total);
        else if (text.err == SHMRPC_ETOOBIG)
            snprintf(why, sizeof why,
                     "the signature of '%s' spelled out for a peer of protocol revision 5 or "
                     "less has more than the 65535 bytes it reads (upgrade the peer)",
                     m[i].name);
        else if (text.err == SHMRPC_EINVAL)
            snprintf(why, sizeof why, "the signature of '%s' nests types more than %u deep",
                     m[i].name, SHMRPC_MAX_DEPTH);
        if ((rc = text.err) != 0) break;
        total += text.len;
        if ((m[i].signature = shmrpc_arena_strndup(a, (const char *)text.data, text.len)) == NULL)
            rc = SHMRPC_ENOMEM;
    }
    shmrpc_buf_destroy(&text);
    if (rc == SHMRPC_EINVAL) rc = SHMRPC_EPROTO;
    if (rc != 0) {
        shmrpc__msg_set(err, "%s", rc == SHMRPC_ENOMEM ? "out of memory" : why);
        return rc;
    }
    *out = *in;
    out->methods = in->n_methods ? m : NULL;
    out->n_types = 0;
    out->types = NULL;
    return 0;
}
