/* SPDX-License-Identifier: MIT */
/* The resolved configuration as service.ini text (cfg_write): every key of the
 * table (config_keys.c) written out, which reads back to the same configuration. */
#include <stdbool.h>
#include <string.h>

#include "config_internal.h"

static void out_size(shmrpc_buf *out, const char *name, uint64_t v)
{
    if (v)
        shmrpc_buf_appendf(out, "%s = %llu\n", name, (unsigned long long)v);
    else
        shmrpc_buf_appendf(out, "%s = none\n", name);
}

/* A number, size or boolean field of key k, read as the member's own type is. */
static int64_t field_number(const cfg_settings *s, int k)
{
    const char *at = (const char *)s + key(k)->field;
    switch (key(k)->ctype) {
    case C_INT:
        return *(const int *)at;
    case C_I64:
        return *(const int64_t *)at;
    case C_U64:
        return (int64_t) * (const uint64_t *)at;
    case C_BOOL:
        return *(const bool *)at;
    default:
        return 0;
    }
}

/* One key of the settings, as a file would write it. */
static void out_setting(shmrpc_buf *out, int k, const cfg_settings *s)
{
    const char *name = key(k)->name;
    int64_t v = field_number(s, k);
    switch (key(k)->type) {
    case T_DIR:
    case T_BIND:
    case T_SECRET:
    case T_FILE: {
        const char *text =
            key(k)->ctype == C_STR ? *(char *const *)((const char *)s + key(k)->field) : NULL;
        shmrpc_buf_appendf(out, "%s = %s\n", name,
                           text                    ? text
                           : key(k)->type == T_DIR ? ""
                                                   : "none");
        return;
    }
    case T_INT:
        shmrpc_buf_appendf(out, "%s = %lld\n", name,
                           (long long)(key(k)->unit_ms ? v / key(k)->unit_ms : v));
        return;
    case T_SIZE:
        out_size(out, name, (uint64_t)v);
        return;
    case T_BOOL:
        shmrpc_buf_appendf(out, "%s = %s\n", name, v ? "true" : "false");
        return;
    /* GCOVR_EXCL_START: unreachable: called for fields only, and every field key of the
     * constant table has one of the types above */
    default:
        return;
        /* GCOVR_EXCL_STOP */
    }
}

/* A word of a command line, quoted when it needs to be, so that exec= would read it back. */
static void out_word(shmrpc_buf *out, const char *w)
{
    bool plain = *w != '\0';
    for (const char *p = w; *p; p++)
        if (strchr(" \t\n'\"\\|&;<>()$`", *p)) plain = false;
    if (plain) {
        shmrpc_buf_append(out, w, strlen(w));
        return;
    }
    shmrpc_buf_append(out, "\"", 1);
    for (const char *p = w; *p; p++) {
        if (*p == '"' || *p == '\\') shmrpc_buf_append(out, "\\", 1);
        shmrpc_buf_append(out, p, 1);
    }
    shmrpc_buf_append(out, "\"", 1);
}

void cfg_write(const cfg_file *c, shmrpc_buf *out)
{
    shmrpc_buf_appendf(out, "[defaults]\n");
    for (int k = 0; k < K_COUNT; k++)
        if (cfg_is_field(k)) out_setting(out, k, &c->defaults);
    shmrpc_buf_appendf(out, "\n[web monitor]\n%s = %s\n%s = %d\n%s = %s\n", key(K_WEB_HOST)->name,
                       c->web_host, key(K_WEB_PORT)->name, c->web_port, key(K_WEB_SECRET)->name,
                       c->web_secret_file ? c->web_secret_file : "none");
    for (size_t i = 0; i < c->n_services; i++) {
        const cfg_service *s = &c->services[i];
        bool exec = s->kind == CFG_EXEC;
        shmrpc_buf_appendf(out, "\n[%s]\n", s->name);
        if (exec) {
            shmrpc_buf_appendf(out, "%s =", key(K_EXEC)->name);
            for (int a = 0; a < s->argc; a++) {
                shmrpc_buf_append(out, " ", 1);
                out_word(out, s->argv[a]);
            }
            shmrpc_buf_appendf(out, "\n; program: %s\n", s->program);
        } else {
            shmrpc_buf_appendf(out, "%s = %s\n", key(K_MODULE)->name, s->module);
            if (s->module_argc) {
                shmrpc_buf_appendf(out, "%s =", key(K_MODULE_ARGS)->name);
                for (int a = 0; a < s->module_argc; a++) {
                    shmrpc_buf_append(out, " ", 1);
                    out_word(out, s->module_args[a]);
                }
                shmrpc_buf_appendf(out, "\n");
            }
        }
        /* What the file leaves to the .svc is a comment, so that the text reads back. */
        const char *unknown = exec ? "not set" : "from the .svc";
        if (s->shm_name)
            shmrpc_buf_appendf(out, "%s = %s\n", key(K_SHM_NAME)->name, s->shm_name);
        else
            shmrpc_buf_appendf(out, "; %s: %s\n", key(K_SHM_NAME)->name, unknown);
        if (s->tcp_port)
            shmrpc_buf_appendf(out, "%s = %d\n", key(K_TCP_PORT)->name, s->tcp_port);
        else
            shmrpc_buf_appendf(out, "; %s: %s\n", key(K_TCP_PORT)->name, unknown);
        for (int k = 0; k < K_COUNT; k++)
            if (cfg_is_field(k) && (!exec || key(k)->exec_too)) out_setting(out, k, &s->s);
    }
}
