/* SPDX-License-Identifier: MIT */
/* service.ini's values and sections: each value parsed and checked on its own as its key's
 * type says (config_keys.c), unknown keys named with what was meant, defaults filled in. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shmrpc/status.h>
#include <shmrpc/tcp.h>

#include "config_internal.h"
#include "near.h"

/* speedysvc's keys that shmrpc spells otherwise or does without, and what to write. */
static const struct {
    const char *name;
    const char *hint;
} speedysvc_keys[] = {
    {"import_from", "speedysvc's import_from names a Python module: run a file of Python "
                    "services with python3 -m shmrpc.service; a C service is module = PATH (a "
                    "shared module built with shmrpc_generate) or exec = COMMAND"},
    {"host", "speedysvc's host is tcp_bind here"},
    {"port", "the port comes from the .svc's port option; tcp_port overrides it"},
    {"service_name", "the name comes from the .svc's name option; shm_name overrides it"},
    {"tcp_compression", "TCP frames are compressed with snappy when both sides agree "
                        "(docs/wire.md): there is nothing to set"},
};

/* Other spellings of a key, read as the key: speedysvc's README writes bind_tcp for the
 * tcp_bind its code reads. */
static const struct {
    const char *name;
    enum key k;
} key_aliases[] = {
    {"bind_tcp", K_TCP_BIND},
};

void cfg_error_at(loader *L, const ini_entry *at, bool at_value, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ini_verror(&L->ini, at ? at->line : 0, at ? (at_value ? at->vcol : at->col) : 0, fmt, ap);
    va_end(ap);
}

char *cfg_dup_str(loader *L, const char *s)
{
    char *d = shmrpc_arena_strndup(L->a, s, strlen(s));
    if (!d) L->ini.oom = true;
    return d;
}

static char *resolve_joined(loader *L, const char *p)
{
    if (p[0] == '/') return cfg_dup_str(L, p);
    while (p[0] == '.' && p[1] == '/') {
        p += 2;
        while (*p == '/')
            p++;
    }
    size_t dn = strlen(L->dir), pn = strlen(p);
    char *out = shmrpc_arena_alloc(L->a, dn + pn + 2, 1);
    if (!out) {
        L->ini.oom = true;
        return NULL;
    }
    memcpy(out, L->dir, dn);
    size_t n = dn;
    if (pn) {
        if (n == 0 || out[n - 1] != '/') out[n++] = '/';
        memcpy(out + n, p, pn);
        n += pn;
    }
    out[n] = '\0';
    return out;
}

/* p taken from the file's folder when it is relative, "./" and trailing '/' dropped. */
static char *resolve_path(loader *L, const char *p)
{
    char *out = resolve_joined(L, p);
    if (out)
        for (size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--)
            out[n - 1] = '\0';
    return out;
}

/* --- one value ----------------------------------------------------------------------- */

/* A whole number: an optional '-' and decimal digits. 0, -1 if malformed, -2 if it does
 * not fit in 63 bits. */
static int parse_i64(const char *s, int64_t *out)
{
    bool neg = *s == '-';
    if (neg) s++;
    if (*s < '0' || *s > '9') return -1;
    int64_t v = 0;
    bool big = false;
    for (; *s >= '0' && *s <= '9'; s++)
        if (!big && (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *s - '0', &v)))
            big = true;
    if (*s) return -1;
    if (big) return -2;
    *out = neg ? -v : v;
    return 0;
}

/* Bytes with an optional suffix K, M, G or T (1024-based), which may be spelled KiB, MiB,
 * GiB or TiB. 0, -1 if malformed, -2 if too large. */
static int parse_size(const char *s, int64_t *out)
{
    const char *p = s;
    while (*p >= '0' && *p <= '9')
        p++;
    if (p == s) return -1;
    int shift = 0;
    if (*p) {
        const char *units = "KMGT", *u = strchr(units, *p >= 'a' ? *p - 'a' + 'A' : *p);
        if (!u || !*u) return -1;
        shift = 10 * (int)(u - units + 1);
        p++;
        if (strcmp(p, "iB") == 0) p += 2;
        if (*p) return -1;
    }
    int64_t v = 0;
    for (const char *d = s; *d >= '0' && *d <= '9'; d++)
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *d - '0', &v)) return -2;
    if (v > (INT64_MAX >> shift)) return -2;
    *out = v << shift;
    return 0;
}

/* configparser's spellings of a boolean. 1 or 0, or -1. */
static int parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "yes", "true", "on"}, *const no[] = {"0", "no", "false",
                                                                                "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return 1;
        if (strcasecmp(s, no[i]) == 0) return 0;
    }
    return -1;
}

/* A numeric IPv4 or IPv6 address (brackets around IPv6 dropped) or localhost, copied to
 * out. 1 if it is a loopback address, 0 if not, -1 if it is no address. */
static int parse_host(const char *s, char *out, size_t cap)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') s++, n -= 2;
    if (n == 0 || n >= cap) return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    if (strcmp(out, "localhost") == 0) return 1;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, out, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, out, &a6) != 1) return -1;
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return 1;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

bool cfg_is_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(s[i])) return false;
    return true;
}

/* Where a bare program name is found, as execvp would; empty PATH entries (the current
 * folder) are skipped. */
static char *search_path(loader *L, const char *prog)
{
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    size_t pn = strlen(prog);
    for (const char *d = path; *d;) {
        const char *e = strchr(d, ':');
        size_t dn = e ? (size_t)(e - d) : strlen(d);
        if (dn > 0 && dn + pn + 2 <= PATH_MAX) {
            char cand[PATH_MAX];
            memcpy(cand, d, dn);
            cand[dn] = '/';
            memcpy(cand + dn + 1, prog, pn + 1);
            struct stat st;
            if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0)
                return cfg_dup_str(L, cand);
        }
        d += dn;
        if (*d == ':') d++;
    }
    return NULL;
}

/* Splits a command line (exec=, module_args) into words as a shell would, without a
 * shell: blanks separate, '...' is literal, "..." takes \" and \\, a backslash outside
 * quotes takes the next character literally. No expansion, globbing or redirection: the
 * characters that would ask for them are refused unquoted. Returns 0, or the 0-based
 * offset of the problem plus one with *why set. */
static size_t split_words(loader *L, enum key k, const char *s, value *v, const char **why)
{
    shmrpc_buf words;
    shmrpc_buf_init(&words);
    int argc = 0;
    size_t bad = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p) break;
        for (; *p && *p != ' ' && *p != '\t' && *p != '\n'; p++) {
            if (*p == '\'') {
                const char *q = strchr(p + 1, '\'');
                if (!q) {
                    bad = (size_t)(p - s) + 1, *why = "unterminated quote";
                    goto out;
                }
                shmrpc_buf_append(&words, p + 1, (size_t)(q - p - 1));
                p = q;
            } else if (*p == '"') {
                const char *open = p;
                for (p++; *p && *p != '"'; p++) {
                    if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
                    shmrpc_buf_append(&words, p, 1);
                }
                if (!*p) {
                    bad = (size_t)(open - s) + 1, *why = "unterminated quote";
                    goto out;
                }
            } else if (*p == '\\') {
                if (!p[1] || p[1] == '\n') {
                    bad = (size_t)(p - s) + 1, *why = "a backslash at the end of a line";
                    goto out;
                }
                shmrpc_buf_append(&words, ++p, 1);
            } else if (strchr("|&;<>()$`", *p)) {
                bad = (size_t)(p - s) + 1;
                *why = k == K_EXEC ? "shell syntax, but exec= runs the program without a "
                                     "shell: quote it to pass it on, or write exec = sh -c '...'"
                                   : "shell syntax, but module_args go to the module's init "
                                     "without a shell: quote it to pass it on";
                goto out;
            } else {
                shmrpc_buf_append(&words, p, 1);
            }
        }
        shmrpc_buf_append(&words, "", 1);
        argc++;
    }
    if (words.err) {
        L->ini.oom = true;
        goto out;
    }
    v->argv = shmrpc_arena_calloc(L->a, (size_t)argc + 1, sizeof *v->argv, _Alignof(char *));
    if (!v->argv) {
        L->ini.oom = true;
        goto out;
    }
    const char *w = (const char *)words.data;
    for (int i = 0; i < argc; i++) {
        v->argv[i] = cfg_dup_str(L, w);
        w += strlen(w) + 1;
    }
    v->argc = argc;
out:
    shmrpc_buf_destroy(&words);
    return bad;
}

/* Words of exec= or module_args into v->argv; false when they are wrong (reported). */
static bool parse_words(loader *L, enum key k, const ini_entry *at, const char *text, value *v)
{
    const char *why = NULL;
    size_t bad = split_words(L, k, text, v, &why);
    if (bad) {
        /* A column past the key's line cannot be shown: point at the value's start. */
        int col = at->multiline ? at->vcol : at->vcol + (int)bad - 1;
        ini_error(&L->ini, at->line, col, "%s: %s", key(k)->name, why);
        v->bad = true;
        return false;
    }
    return v->argv != NULL; /* NULL: out of memory */
}

static void parse_exec(loader *L, const ini_entry *at, const char *text, value *v)
{
    if (!parse_words(L, K_EXEC, at, text, v)) return;
    const char *prog = v->argv[0];
    if (strchr(prog, '/')) {
        char *path = resolve_path(L, prog);
        struct stat st;
        if (!path) return;
        if (stat(path, &st) != 0) {
            cfg_error_at(L, at, true, "program '%s' not found: %s", QP(L, path), strerror(errno));
            v->bad = true;
        } else if (!S_ISREG(st.st_mode) || access(path, X_OK) != 0) {
            cfg_error_at(L, at, true, "program '%s' is not an executable file", QP(L, path));
            v->bad = true;
        }
        v->s = path;
    } else {
        v->s = search_path(L, prog);
        if (!v->s) {
            cfg_error_at(L, at, true, "program '%s' not found in PATH", Q(L, prog));
            v->bad = true;
        }
    }
}

/* The TCP transport's own reader (shmrpc_secret_load) checks the file, so that a bad one
 * stops the supervisor before it starts anything, by the very rules the server applies. */
static void parse_secret(loader *L, const ini_entry *at, const char *text, value *v)
{
    if (strcmp(text, "none") == 0) return;
    char *path = resolve_path(L, text);
    if (!path) return;
    v->s = path;
    unsigned char secret[SHMRPC_SECRET_MAX];
    size_t len = 0;
    int rc = shmrpc_secret_load(path, secret, sizeof secret, &len);
    explicit_bzero(secret, sizeof secret);
    if (rc) {
        cfg_error_at(L, at, true, "secret_file: %s", shmrpc_errmsg());
        v->bad = true;
    }
}

/* A file the service reads (TLS's certificate, key or CAs): it must exist and be readable
 * by this user now, so that a missing one stops the supervisor before it starts anything;
 * whether OpenSSL takes it, the server says when it listens (in the service's log). */
static void parse_file(loader *L, const key_def *kd, const ini_entry *at, const char *text,
                       value *v)
{
    if (strcmp(text, "none") == 0) return;
    char *path = resolve_path(L, text);
    if (!path) return;
    v->s = path;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        cfg_error_at(L, at, true, "%s '%s' cannot be read: %s", kd->name, QP(L, path),
                     strerror(errno));
        v->bad = true;
        return;
    }
    close(fd);
}

static void parse_module(loader *L, const ini_entry *at, const char *text, value *v)
{
    char *path = resolve_path(L, text);
    if (!path) return;
    v->s = path;
    struct stat st;
    if (stat(path, &st) != 0) {
        cfg_error_at(L, at, true, "module '%s': %s", QP(L, path), strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        cfg_error_at(L, at, true, "module '%s' is not a regular file", QP(L, path));
    } else if (access(path, R_OK) != 0) {
        cfg_error_at(L, at, true, "module '%s' cannot be read: %s", QP(L, path), strerror(errno));
    } else {
        return;
    }
    v->bad = true;
}

static void range_error(loader *L, const ini_entry *at, const key_def *kd, const char *text)
{
    cfg_error_at(L, at, true, "%s must be from %lld to %lld, got %s", kd->name, (long long)kd->min,
                 (long long)kd->max, Q(L, text));
}

static void size_error(loader *L, const ini_entry *at, const key_def *kd, const char *text)
{
    cfg_error_at(L, at, true,
                 "%s: expected a size in bytes, with an optional K, M, G or T (1024-based), or "
                 "none; got '%s'",
                 kd->name, Q(L, text));
}

/* Parses text as key k into v. Built-in defaults (at NULL) are valid by construction. */
static void parse_value(loader *L, enum key k, const ini_entry *at, const char *text, value *v)
{
    const key_def *kd = key(k);
    *v = (value){.at = at, .set = true};
    if (at && !*text) {
        cfg_error_at(L, at, true, "%s has no value", kd->name);
        v->bad = true;
        return;
    }
    if (at && at->multiline && kd->type != T_EXEC && kd->type != T_ARGS) {
        cfg_error_at(L, at, true, "%s takes one line, but its value goes on to line %d", kd->name,
                     at->line + 1);
        v->bad = true;
        return;
    }
    int64_t n = 0;
    char host[64];
    switch (kd->type) {
    case T_DIR: {
        v->s = resolve_path(L, text);
        struct stat st;
        if (v->s && strlen(v->s) > LOG_DIR_MAX) {
            cfg_error_at(L, at, true,
                         "%s is %zu bytes long once taken from the file's folder; at most %d, so "
                         "that the paths of the files made in it fit in PATH_MAX",
                         kd->name, strlen(v->s), LOG_DIR_MAX);
            v->bad = true;
        } else if (v->s && stat(v->s, &st) == 0 && !S_ISDIR(st.st_mode)) {
            cfg_error_at(L, at, true, "%s '%s' is not a folder", kd->name, QP(L, v->s));
            v->bad = true;
        }
        return;
    }
    case T_BIND:
        if (strcmp(text, "none") == 0) return;
        n = parse_host(text, host, sizeof host);
        if (n < 0) {
            cfg_error_at(L, at, true,
                         "tcp_bind: expected a numeric IPv4 or IPv6 address, localhost or none; "
                         "got '%s'",
                         Q(L, text));
            v->bad = true;
            return;
        }
        v->s = cfg_dup_str(L, host);
        v->i = n; /* loopback */
        return;
    case T_WEB_HOST:
        n = parse_host(text, host, sizeof host);
        if (n < 0) {
            cfg_error_at(L, at, true,
                         "host: expected a numeric IPv4 or IPv6 address or localhost; got '%s'",
                         Q(L, text));
            v->bad = true;
        } else {
            v->s = cfg_dup_str(L, host); /* parse_host fills host only when it is an address */
            v->i = n;                    /* loopback: check_web wants a secret otherwise */
        }
        return;
    case T_SECRET:
        parse_secret(L, at, text, v);
        return;
    case T_FILE:
        parse_file(L, kd, at, text, v);
        return;
    case T_INT:
    case T_PORT:
        switch (parse_i64(text, &n)) {
        case -1:
            cfg_error_at(L, at, true, "%s: expected a whole number from %lld to %lld, got '%s'",
                         kd->name, (long long)kd->min, (long long)kd->max, Q(L, text));
            v->bad = true;
            return;
        case -2:
            range_error(L, at, kd, text);
            v->bad = true;
            return;
        }
        if (n < kd->min || n > kd->max) {
            range_error(L, at, kd, text);
            v->bad = true;
            return;
        }
        v->i = kd->unit_ms ? n * kd->unit_ms : n;
        return;
    case T_SIZE:
        if (strcmp(text, "none") == 0) return; /* i = 0: no limit */
        switch (parse_size(text, &n)) {
        case -1:
            size_error(L, at, kd, text);
            v->bad = true;
            return;
        case -2:
            cfg_error_at(L, at, true, "%s: %s is too large", kd->name, Q(L, text));
            v->bad = true;
            return;
        }
        if (n < kd->min) {
            bool mib = kd->min % (1 << 20) == 0;
            cfg_error_at(L, at, true,
                         "%s of %s is less than %lld%s: a suffix (K, M, G) missing? none means no "
                         "limit",
                         kd->name, Q(L, text), (long long)kd->min >> (mib ? 20 : 10),
                         mib ? "M" : "K");
            v->bad = true;
            return;
        }
        v->i = n;
        return;
    case T_BOOL:
    case T_PICKLE:
        n = parse_bool(text);
        if (n < 0) {
            cfg_error_at(L, at, true,
                         "%s: expected true or false (or yes/no, on/off, 1/0), got '%s'", kd->name,
                         Q(L, text));
            v->bad = true;
            return;
        }
        if (kd->type == T_PICKLE && n) {
            cfg_error_at(
                L, at, true,
                "%s has no C meaning: it lets a Python service of python3 -m shmrpc.service "
                "take pickle and marshal over TCP, and the other encodings (msgpack, "
                "json, raw) are all safe to decode; remove it",
                kd->name);
            v->bad = true;
            return;
        }
        v->i = n;
        return;
    case T_MODULE:
        parse_module(L, at, text, v);
        return;
    case T_EXEC:
        parse_exec(L, at, text, v);
        return;
    case T_ARGS:
        parse_words(L, k, at, text, v);
        return;
    case T_SHM_NAME:
        if (!cfg_is_name(text)) {
            cfg_error_at(L, at, true,
                         "shm_name '%s': expected 1 to %d letters, digits, '_', '-' or '.'",
                         Q(L, text), NAME_MAX_LEN);
            v->bad = true;
            return;
        }
        v->s = cfg_dup_str(L, text);
        return;
    }
}

/* --- keys of a section --------------------------------------------------------------- */

/* Or a good part of it: "max_proc" for max_proc_num. */
static bool starts(const char *typo, const char *name)
{
    size_t n = strlen(typo);
    return n >= 5 && strncmp(typo, name, n) == 0;
}

static const char *section_label(loader *L, const scope *sc)
{
    if (!sc->is_service) return sc == &L->web ? "[web monitor]" : "[defaults]";
    char buf[NAME_MAX_LEN + 16];
    snprintf(buf, sizeof buf, "service [%s]", sc->sec->name);
    const char *s = shmrpc_arena_strndup(L->ini.arena, buf, strlen(buf));
    return s ? s : "a service";
}

static void unknown_key(loader *L, const scope *sc, unsigned in, const ini_entry *en)
{
    for (size_t i = 0; i < sizeof speedysvc_keys / sizeof *speedysvc_keys; i++) {
        if (strcmp(en->key, speedysvc_keys[i].name) == 0) {
            cfg_error_at(L, en, false, "unknown key '%s' in %s: %s", en->key, section_label(L, sc),
                         speedysvc_keys[i].hint);
            return;
        }
    }
    for (int k = 0; k < K_COUNT; k++) {
        if (strcmp(en->key, key(k)->name) == 0) { /* a key, but of another section */
            const char *where = key(k)->in & IN_WEB        ? "[web monitor]"
                                : key(k)->in & IN_DEFAULTS ? "[defaults] or a service's section"
                                                           : "a service's section";
            cfg_error_at(L, en, false, "%s is not a key of %s: it belongs in %s", en->key,
                         section_label(L, sc), where);
            return;
        }
    }
    const char *best = NULL;
    int best_d = 99;
    for (int k = 0; k < K_COUNT; k++) {
        if (!(key(k)->in & in)) continue;
        int d = starts(en->key, key(k)->name) ? 3 : shmrpc__distance(en->key, key(k)->name);
        if (d < best_d && (d == 3 || shmrpc__near(en->key, key(k)->name)))
            best = key(k)->name, best_d = d;
    }
    const char *q = Q(L, en->key);
    if (best)
        cfg_error_at(L, en, false, "unknown key '%s' in %s; did you mean '%s'?", q,
                     section_label(L, sc), best);
    else
        cfg_error_at(L, en, false, "unknown key '%s' in %s", q, section_label(L, sc));
}

/* Reads the keys written in sc's section. */
void cfg_read_section(loader *L, scope *sc, unsigned in)
{
    for (const ini_entry *en = sc->sec->entries; en; en = en->next) {
        int k = 0;
        while (k < K_COUNT && !(strcmp(en->key, key(k)->name) == 0 && (key(k)->in & in)))
            k++;
        for (size_t i = 0; k == K_COUNT && i < sizeof key_aliases / sizeof *key_aliases; i++)
            if (strcmp(en->key, key_aliases[i].name) == 0 && (key(key_aliases[i].k)->in & in))
                k = key_aliases[i].k;
        if (k == K_COUNT) {
            unknown_key(L, sc, in, en);
            continue;
        }
        if (sc->v[k].own) { /* the ini reader refuses a key twice; its other spelling here */
            cfg_error_at(L, en, false, "%s is %s, which %d:%d sets already", en->key,
                         sc->v[k].at->key, sc->v[k].at->line, sc->v[k].at->col);
            continue;
        }
        parse_value(L, (enum key)k, en, en->value, &sc->v[k]);
        sc->v[k].own = true;
    }
}

/* Fills what sc's section did not write: from [defaults] for a service, else built in. */
void cfg_fill_defaults(loader *L, scope *sc, unsigned in)
{
    for (int k = 0; k < K_COUNT; k++) {
        value *v = &sc->v[k];
        if (v->set || !(key(k)->in & in)) continue;
        /* max_proc_num that no one wrote follows the service's own min_proc_num. */
        if (sc->is_service && k == K_MAX_PROC && !L->defaults.v[k].at) continue;
        if (sc->is_service && (key(k)->in & IN_DEFAULTS)) {
            *v = L->defaults.v[k];
            v->own = false;
        } else if (key(k)->dflt) {
            parse_value(L, (enum key)k, NULL, key(k)->dflt, v);
        }
    }
}

const char *cfg_close_reserved(const char *name)
{
    if (shmrpc__near(name, "defaults")) return "defaults";
    if (shmrpc__near(name, "web monitor")) return "web monitor";
    return NULL;
}
