/* SPDX-License-Identifier: MIT */
/* shmrpcctl map: stat prints a shared map's geometry, type and counters; get, put, del and
 * keys read and write entries, as JSON for a typed map (converted by the library's dynamic
 * codec from the type signature the map stores) or as bytes (as given, or base64). */
#include "ctl_map.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/buf.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/map.h>
#include <shmrpc/status.h>

#include "ctl_bytes.h"
#include "ctl_opts.h"
#include "usage.h"

#define USAGE                                                                                      \
    "usage: shmrpcctl map stat [--json] NAME\n"                                                    \
    "       shmrpcctl map get  [--bytes|--base64] NAME KEY\n"                                      \
    "       shmrpcctl map put  [--bytes|--base64] NAME KEY [VALUE|-]\n"                            \
    "       shmrpcctl map del  [--bytes|--base64] NAME KEY\n"                                      \
    "       shmrpcctl map keys [--bytes|--base64] NAME\n"

/* One command on one map: how its keys and values are written, and its types when typed
 * and shown as JSON (sig NULL otherwise). */
typedef struct ctx {
    shmrpc_map *m;
    const char *name, *sub;
    ctl_form f;
    shmrpc_dyn *d;
    const shmrpc_dyn_sig *sig; /* the value's: a method key -> value */
    shmrpc_dyn_sig key_sig;    /* the same with the key's type as its result */
} ctx;

static int failed(const ctx *c, int rc)
{
    fprintf(stderr, "shmrpcctl: map %s %s: %s: %s\n", c->sub, c->name, shmrpc_strerror(rc),
            shmrpc_errmsg());
    return 1;
}

/* Bad usage of a subcommand's options: "shmrpcctl: map SUB: WHY" (ctl_usage_error). */
static int bad_option(const char *sub, const char *why)
{
    char cmd[32];
    snprintf(cmd, sizeof cmd, "map %.20s", sub);
    return ctl_usage_error(cmd, why);
}

/* Bad input, said: status 2, nothing written. */
static int bad_input(const ctx *c, const char *what, const char *why)
{
    fprintf(stderr, "shmrpcctl: map %s %s: %s: %s\n", c->sub, c->name, what, why);
    return 2;
}

/* Parses the map's type when it has one and JSON is wanted: 0, or 1 when it does not
 * parse (said). */
static int load_type(ctx *c)
{
    shmrpc_map_info info;
    int rc = shmrpc_map_get_info(c->m, &info);
    if (rc != 0) return failed(c, rc);
    if (c->f != CTL_FORM_AUTO || !*info.type) return 0;
    rc = shmrpc_dyn_new(&c->d, NULL);
    if (rc == 0) rc = shmrpc_dyn_sig_parse(c->d, info.type, &c->sig);
    if (rc == 0 && c->sig->n_params != 1) {
        fprintf(stderr, "shmrpcctl: map %s %s: its type is not a map's (one key): %s\n", c->sub,
                c->name, info.type);
        c->sig = NULL;
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "shmrpcctl: map %s %s: its type does not parse: %s\n", c->sub, c->name,
                shmrpc_errmsg());
        c->sig = NULL;
        return 1;
    }
    c->key_sig = *c->sig;
    c->key_sig.result = c->sig->params[0].type;
    return 0;
}

/* A string key may be written without its JSON quotes: "word" and word are one key. */
static void quote(const char *s, shmrpc_buf *out)
{
    shmrpc_buf_append(out, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            shmrpc_buf_appendf(out, "\\%c", *p);
        else if (*p < 0x20)
            shmrpc_buf_appendf(out, "\\u%04x", *p);
        else
            shmrpc_buf_append(out, p, 1);
    }
    shmrpc_buf_append(out, "\"", 1);
}

/* text (a key or a value, JSON or bytes by the form) to the bytes the map holds, appended
 * to out: 0, or 2 when it is not what the map takes (said). */
static int encode(const ctx *c, const char *what, const char *text, size_t n, shmrpc_buf *out)
{
    if (c->f == CTL_FORM_BASE64)
        return ctl_from_base64(text, n, out) ? 0 : bad_input(c, what, "not base64");
    if (!c->sig) return shmrpc_buf_append(out, text, n) == 0 ? 0 : failed(c, out->err);
    bool is_key = strcmp(what, "key") == 0;
    const shmrpc_dyn_sig *s = is_key ? &c->key_sig : c->sig;
    shmrpc_buf json;
    shmrpc_buf_init(&json);
    if (is_key && s->result->kind == SHMRPC_DYN_STRING && text[0] != '"')
        quote(text, &json);
    else
        shmrpc_buf_append(&json, text, n);
    int rc =
        json.err ? json.err : shmrpc_dyn_encode_result(s, (const char *)json.data, json.len, out);
    shmrpc_buf_destroy(&json);
    if (rc == SHMRPC_EINVAL) {
        /* The codec names the place from "value" ("value.x: expected ..."); a key's is "key". */
        const char *why = shmrpc_errmsg();
        if (!is_key || strncmp(why, "value", 5) != 0) return bad_input(c, "bad value", why);
        fprintf(stderr, "shmrpcctl: map %s %s: bad key: key%s\n", c->sub, c->name, why + 5);
        return 2;
    }
    return rc == 0 ? 0 : failed(c, rc);
}

/* Prints a key or a value as the form says, a newline after it unless it is raw bytes of a
 * value. 0, or 1 when a stored entry does not decode as the map's type (said). */
static int print(const ctx *c, bool is_key, const void *p, size_t n)
{
    if (c->f == CTL_FORM_BASE64) {
        ctl_put_base64(p, n);
        return 0;
    }
    if (!c->sig) {
        fwrite(p, 1, n, stdout);
        if (is_key) putchar('\n');
        return 0;
    }
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    int rc = shmrpc_dyn_decode_result(is_key ? &c->key_sig : c->sig, p, n, &out);
    if (rc == 0)
        printf("%.*s\n", (int)out.len, (const char *)out.data);
    else
        fprintf(stderr, "shmrpcctl: map %s %s: a stored %s is not of the map's type: %s\n", c->sub,
                c->name, is_key ? "key" : "value", shmrpc_errmsg());
    shmrpc_buf_destroy(&out);
    return rc == 0 ? 0 : 1;
}

static int stat_map(const ctx *c, bool json)
{
    shmrpc_map_info i;
    int rc = shmrpc_map_get_info(c->m, &i);
    if (rc != 0) return failed(c, rc);
    if (json) {
        shmrpc_buf t;
        shmrpc_buf_init(&t);
        quote(i.type, &t); /* signatures hold no control characters, but quote says so */
        printf("{\"name\":\"%s\",\"type\":%.*s,\"creator\":%d,\"generation\":%" PRIu64
               ",\"count\":%" PRIu64 ",\"slots\":%" PRIu64 ",\"tombstones\":%" PRIu64
               ",\"bytes\":%" PRIu64 ",\"used\":%" PRIu64 ",\"live\":%" PRIu64
               ",\"changes\":%" PRIu64 ",\"writes\":%" PRIu64 ",\"growths\":%" PRIu64
               ",\"repairs\":%" PRIu64 ",\"lock_waits\":%" PRIu64 "}\n",
               c->name, (int)t.len, t.data ? (const char *)t.data : "\"\"", (int)i.creator,
               i.generation, i.count, i.slots, i.tombstones, i.bytes, i.used, i.live, i.changes,
               i.writes, i.growths, i.repairs, i.lock_waits);
        shmrpc_buf_destroy(&t);
        return 0;
    }
    printf("map         %s (/dev/shm/shmrpc.map.%s)\n", c->name, c->name);
    printf("type        %s\n", *i.type ? i.type : "(untyped)");
    printf("creator     pid %d\n", (int)i.creator);
    printf("keys        %" PRIu64 "\n", i.count);
    printf("generation  %" PRIu64 ": %" PRIu64 " slots (%" PRIu64 " tombstones), %" PRIu64
           " bytes, %" PRIu64 " written, %" PRIu64 " live\n",
           i.generation, i.slots, i.tombstones, i.bytes, i.used, i.live);
    printf("changes     %" PRIu64 "\nwrites      %" PRIu64 "\ngrowths     %" PRIu64
           "\nrepairs     %" PRIu64 "\nlock waits  %" PRIu64 "\n",
           i.changes, i.writes, i.growths, i.repairs, i.lock_waits);
    return 0;
}

/* Copies the value of key out, growing the buffer when a writer made it larger between the
 * two looks; a few rounds suffice unless the value grows without end. */
static int get(const ctx *c, const shmrpc_buf *key)
{
    size_t cap = 4096, len = 0;
    uint8_t *buf = NULL;
    int rc = SHMRPC_ETOOBIG;
    for (int round = 0; rc == SHMRPC_ETOOBIG && round < 8; round++) {
        uint8_t *nb = realloc(buf, cap);
        if (!nb) {
            rc = SHMRPC_ENOMEM;
            break;
        }
        buf = nb;
        rc = shmrpc_map_get(c->m, key->data, key->len, buf, cap, &len);
        if (rc == SHMRPC_ETOOBIG) cap = len;
    }
    int status;
    if (rc == SHMRPC_ENOENT)
        status = (fprintf(stderr, "shmrpcctl: map get %s: no such key\n", c->name), 1);
    else if (rc != 0)
        status = failed(c, rc);
    else
        status = print(c, false, buf, len);
    free(buf);
    return status;
}

static int put(const ctx *c, const shmrpc_buf *key, const char *value)
{
    shmrpc_buf in, v;
    shmrpc_buf_init(&in);
    shmrpc_buf_init(&v);
    int rc = value && strcmp(value, "-") != 0 ? shmrpc_buf_append(&in, value, strlen(value))
                                              : ctl_read_stdin(&in);
    shmrpc_buf_append(&in, "", 1); /* a NUL after the text, not part of it */
    int status =
        rc != 0 ? failed(c, rc) : encode(c, "value", (const char *)in.data, in.len - 1, &v);
    if (status == 0 && (rc = shmrpc_map_put(c->m, key->data, key->len, v.data, v.len)) != 0)
        status = failed(c, rc);
    shmrpc_buf_destroy(&in);
    shmrpc_buf_destroy(&v);
    return status;
}

static int del(const ctx *c, const shmrpc_buf *key)
{
    int rc = shmrpc_map_remove(c->m, key->data, key->len);
    if (rc == SHMRPC_ENOENT) {
        fprintf(stderr, "shmrpcctl: map del %s: no such key\n", c->name);
        return 1;
    }
    return rc == 0 ? 0 : failed(c, rc);
}

static int print_key(void *arg, const void *key, size_t klen, const void *value, size_t vlen)
{
    (void)value, (void)vlen;
    return print(arg, true, key, klen);
}

static int keys(const ctx *c)
{
    int rc = shmrpc_map_iterate(c->m, print_key, (void *)c);
    if (rc == 1) return 1; /* a key that does not decode, said */
    return rc == 0 ? 0 : failed(c, rc);
}

int ctl_map_main(int argc, char **argv)
{
    if (argc < 2) return shmrpc__usage(false, USAGE);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
        return shmrpc__usage(true, USAGE);
    static const char *const subs[] = {"stat", "get", "put", "del", "keys"};
    static const int n_args[] = {0, 1, 2, 1, 0}; /* after NAME, at most */
    int which = -1;
    for (int k = 0; k < 5; k++)
        if (strcmp(argv[1], subs[k]) == 0) which = k;
    if (which < 0) return ctl_usage_error("map", "no such subcommand");
    ctl_opts op;
    ctl_opts_init(&op);
    /* After the subcommand: argv + 1 is its own list. */
    int i = 1 + ctl_opts_read(argc - 1, argv + 1, CTL_OPT_JSON | CTL_OPT_FORM,
                              which == 0 ? CTL_OPT_JSON : CTL_OPT_FORM, &op);
    if (i < 1) return bad_option(subs[which], op.why);
    if (op.help) return shmrpc__usage(true, USAGE);
    ctx c = {.sub = subs[which], .f = op.form};
    bool json = op.json;
    int rest = argc - i, least = which == 1 || which == 2 || which == 3 ? 2 : 1;
    if (rest < least || rest > 1 + n_args[which]) return shmrpc__usage(false, USAGE);
    c.name = argv[i];
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    char file[300];
    snprintf(file, sizeof file, "shmrpc.map.%s", c.name);
    o.perms = ctl_perms_of(file);
    int rc = shmrpc_map_open(&c.m, c.name, &o);
    if (rc == SHMRPC_ENOENT) { /* the library's message says it all: "no map 'x' (path)" */
        fprintf(stderr, "shmrpcctl: map %s %s: %s\n", c.sub, c.name, shmrpc_errmsg());
        return 1;
    }
    if (rc != 0) return failed(&c, rc);
    int status = which == 0 ? 0 : load_type(&c);
    shmrpc_buf key;
    shmrpc_buf_init(&key);
    if (status == 0 && (which == 1 || which == 2 || which == 3))
        status = encode(&c, "key", argv[i + 1], strlen(argv[i + 1]), &key);
    if (status == 0) {
        switch (which) {
        case 0:
            status = stat_map(&c, json);
            break;
        case 1:
            status = get(&c, &key);
            break;
        case 2:
            status = put(&c, &key, rest == 3 ? argv[i + 2] : NULL);
            break;
        case 3:
            status = del(&c, &key);
            break;
        default:
            status = keys(&c);
            break;
        }
    }
    shmrpc_buf_destroy(&key);
    shmrpc_dyn_free(c.d);
    shmrpc_map_close(c.m);
    return fflush(stdout) == 0 ? status : 1;
}
