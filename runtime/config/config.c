/* service.ini's keys: their types, ranges and built-in defaults, the checks across keys
 * and services, and the settings each service ends up with. docs/service-ini.md says
 * what each key means; keep the two together. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shmrpc/arena.h>
#include <shmrpc/status.h>
#include <shmrpc/tcp.h>

#include "ini.h"

/* More workers than this for one service is a typing mistake, not a plan. */
#define MAX_PROCS 1024
/* Service and shm:// names, as the shm transport takes them. */
#define NAME_MAX_LEN 64
/* The longest log_dir: the longest path made in it, LOG_DIR/.NAME.methods.json.tmp,
 * must fit in PATH_MAX, as the supervisor's buffers for it do (a path cut to fit would
 * name another file). */
#define LOG_DIR_MAX (PATH_MAX - NAME_MAX_LEN - 64)
/* The one service name taken: LOG_DIR/NAME.log would be the supervisor's own log. */
#define RESERVED_NAME "shmrpc-service"
/* How much of a value a message quotes (the line under it shows the rest); a path,
 * which the file does not show whole (it is taken from the file's folder), is quoted
 * whole: QP. */
#define QUOTED 60

enum key {
    K_LOG_DIR,
    K_TCP_BIND,
    K_SECRET_FILE,
    K_MIN_PROC,
    K_MAX_PROC,
    K_MAX_MEM,
    K_WAIT,
    K_UP_CPU,
    K_UP_WINDOW,
    K_DOWN_CPU,
    K_DOWN_WINDOW,
    K_BACKOFF,
    K_BACKOFF_MAX,
    K_CRASH_RESTARTS,
    K_CRASH_WINDOW,
    K_LOG_MAX,
    K_LOG_KEEP,
    K_STOP_TIMEOUT,
    K_STARTUP_TIMEOUT,
    K_SERIES_INTERVAL,
    K_PICKLE_ALLOW,
    K_PICKLE_FORCE,
    K_MODULE,
    K_MODULE_ARGS,
    K_EXEC,
    K_SHM_NAME,
    K_TCP_PORT,
    K_WEB_HOST,
    K_WEB_PORT,
    K_WEB_SECRET,
    K_COUNT
};

typedef enum vtype {
    T_DIR,      /* a folder, created by the supervisor */
    T_BIND,     /* an address to bind, or none */
    T_SECRET,   /* a file holding a shared secret, or none */
    T_INT,      /* a whole number in [min, max], times unit_ms for durations */
    T_SIZE,     /* bytes with an optional K, M, G or T, in [min, max], or none */
    T_BOOL,     /* true or false, as configparser spells them */
    T_PICKLE,   /* speedysvc's insecure-serialisation switches: false, or an error */
    T_MODULE,   /* the path of a shared module */
    T_EXEC,     /* a command line */
    T_ARGS,     /* words, split as a command line is */
    T_SHM_NAME, /* NAME in shm://NAME */
    T_PORT,     /* 1 to 65535 */
    T_WEB_HOST, /* an address: loopback, or any with a secret_file */
} vtype;

/* Where a key may be written. */
enum { IN_DEFAULTS = 1, IN_SERVICE = 2, IN_WEB = 4, SETTING = IN_DEFAULTS | IN_SERVICE };

/* The C type of a field of shmrpc__config_settings, as the compiler sees the member (F). */
typedef enum ctype { C_NONE, C_STR, C_INT, C_I64, C_U64, C_BOOL } ctype;

typedef struct key_def {
    const char *name;
    vtype type;
    unsigned in;
    bool exec_too;    /* means something for an exec= service (the rest: module= only) */
    int64_t min, max; /* T_INT as written, T_SIZE in bytes */
    int64_t unit_ms;  /* T_INT durations: milliseconds per unit written; 0 if no duration */
    const char *dflt; /* the built-in default, as a file would write it; NULL: none */
    size_t field;     /* a setting (IN_DEFAULTS, not T_PICKLE): where it goes in
                       * shmrpc__config_settings, */
    ctype ctype;      /* and its C type, which must be what type calls for (field_ctype):
                       * checked by shmrpc__config_check_keys */
} key_def;

/* The offset and C type of a setting's field, both from the member itself: a member of
 * any other type does not compile. (clang-format misaligns the backslashes after
 * _Generic's "char *:".) */
// clang-format off
#define F(member)                                                                           \
    offsetof(shmrpc__config_settings, member),                                              \
        _Generic(((shmrpc__config_settings *)0)->member, char *: C_STR, int: C_INT,         \
                 int64_t: C_I64, uint64_t: C_U64, bool: C_BOOL)
// clang-format on
/* A key that is no field of shmrpc__config_settings. */
#define NO_FIELD 0, C_NONE

static const key_def keys[K_COUNT] = {
    [K_LOG_DIR] = {"log_dir", T_DIR, SETTING, true, 0, 0, 0, NULL, F(log_dir)},
    [K_TCP_BIND] = {"tcp_bind", T_BIND, SETTING, false, 0, 0, 0, "127.0.0.1", F(tcp_bind)},
    [K_SECRET_FILE] = {"secret_file", T_SECRET, SETTING, false, 0, 0, 0, "none", F(secret_file)},
    [K_MIN_PROC] = {"min_proc_num", T_INT, SETTING, false, 1, MAX_PROCS, 0, "1", F(min_proc_num)},
    [K_MAX_PROC] = {"max_proc_num", T_INT, SETTING, false, 1, MAX_PROCS, 0, NULL, F(max_proc_num)},
    [K_MAX_MEM] = {"max_proc_mem_bytes", T_SIZE, SETTING, false, 1 << 20, INT64_MAX, 0, "none",
                   F(max_proc_mem_bytes)},
    [K_WAIT] = {"wait_until_completed", T_BOOL, SETTING, true, 0, 0, 0, "true",
                F(wait_until_completed)},
    [K_UP_CPU] = {"scale_up_cpu_percent", T_INT, SETTING, false, 1, 100, 0, "30",
                  F(scale_up_cpu_percent)},
    [K_UP_WINDOW] = {"scale_up_window_s", T_INT, SETTING, false, 1, 86400, 1000, "20",
                     F(scale_up_window_ms)},
    [K_DOWN_CPU] = {"scale_down_cpu_percent", T_INT, SETTING, false, 0, 100, 0, "30",
                    F(scale_down_cpu_percent)},
    [K_DOWN_WINDOW] = {"scale_down_window_s", T_INT, SETTING, false, 1, 86400, 1000, "240",
                       F(scale_down_window_ms)},
    [K_BACKOFF] = {"restart_backoff_ms", T_INT, SETTING, true, 1, 3600000, 1, "500",
                   F(restart_backoff_ms)},
    [K_BACKOFF_MAX] = {"restart_backoff_max_ms", T_INT, SETTING, true, 1, 3600000, 1, "30000",
                       F(restart_backoff_max_ms)},
    [K_CRASH_RESTARTS] = {"crash_loop_restarts", T_INT, SETTING, true, 1, 1000, 0, "5",
                          F(crash_loop_restarts)},
    [K_CRASH_WINDOW] = {"crash_loop_window_s", T_INT, SETTING, true, 1, 86400, 1000, "60",
                        F(crash_loop_window_ms)},
    [K_LOG_MAX] = {"log_max_bytes", T_SIZE, SETTING, true, 4096, INT64_MAX, 0, "10M",
                   F(log_max_bytes)},
    [K_LOG_KEEP] = {"log_keep", T_INT, SETTING, true, 0, 1000, 0, "5", F(log_keep)},
    [K_STOP_TIMEOUT] = {"stop_timeout_s", T_INT, SETTING, true, 0, 3600, 1000, "10",
                        F(stop_timeout_ms)},
    [K_STARTUP_TIMEOUT] = {"startup_timeout_s", T_INT, SETTING, true, 1, 3600, 1000, "30",
                           F(startup_timeout_ms)},
    [K_SERIES_INTERVAL] = {"series_interval_s", T_INT, SETTING, true, 1, 3600, 1000, "1",
                           F(series_interval_ms)},
    [K_PICKLE_ALLOW] = {"tcp_allow_insecure_serialisation", T_PICKLE, SETTING, true, 0, 0, 0,
                        "false", NO_FIELD},
    [K_PICKLE_FORCE] = {"force_insecure_serialisation", T_PICKLE, SETTING, true, 0, 0, 0, "false",
                        NO_FIELD},
    [K_MODULE] = {"module", T_MODULE, IN_SERVICE, false, 0, 0, 0, NULL, NO_FIELD},
    [K_MODULE_ARGS] = {"module_args", T_ARGS, IN_SERVICE, false, 0, 0, 0, NULL, NO_FIELD},
    [K_EXEC] = {"exec", T_EXEC, IN_SERVICE, true, 0, 0, 0, NULL, NO_FIELD},
    [K_SHM_NAME] = {"shm_name", T_SHM_NAME, IN_SERVICE, true, 0, 0, 0, NULL, NO_FIELD},
    [K_TCP_PORT] = {"tcp_port", T_PORT, IN_SERVICE, true, 1, 65535, 0, NULL, NO_FIELD},
    [K_WEB_HOST] = {"host", T_WEB_HOST, IN_WEB, false, 0, 0, 0, "127.0.0.1", NO_FIELD},
    [K_WEB_PORT] = {"port", T_PORT, IN_WEB, false, 1, 65535, 0, "5155", NO_FIELD},
    /* No default: [defaults]' secret_file (check_web). */
    [K_WEB_SECRET] = {"secret_file", T_SECRET, IN_WEB, false, 0, 0, 0, NULL, NO_FIELD},
};

/* speedysvc's keys that shmrpc spells otherwise or does without, and what to write. */
static const struct {
    const char *name;
    const char *hint;
} speedysvc_keys[] = {
    {"import_from", "speedysvc's import_from names a Python module; a C service is "
                    "module = PATH (a shared module built with shmrpc_generate) or exec = "
                    "COMMAND"},
    {"host", "speedysvc's host is tcp_bind here"},
    {"port", "the port comes from the .svc's port option; tcp_port overrides it"},
    {"service_name", "the name comes from the .svc's name option; shm_name overrides it"},
    {"tcp_compression", "TCP frames are compressed with snappy when both sides agree "
                        "(docs/wire.md): there is nothing to set"},
};

/* One key's value in a scope: [defaults], [web monitor] or a service. */
typedef struct value {
    const shmrpc__ini_entry *at; /* where it was written; NULL: built in */
    bool own;                    /* written in this scope's own section */
    bool set;                    /* has a value (written or built in) */
    bool bad;                    /* written but wrong (reported): checks on it are skipped */
    int64_t i;                   /* numbers, sizes (0: none), booleans, "is loopback" */
    char *s;                     /* text: paths, addresses, names (NULL: none) */
    char **argv;                 /* T_EXEC (with s the program's path), T_ARGS */
    int argc;
} value;

typedef struct scope {
    const shmrpc__ini_section *sec; /* NULL: no such section in the file */
    bool is_service;
    value v[K_COUNT];
} scope;

typedef struct loader {
    shmrpc__ini ini;
    shmrpc_arena *a; /* the configuration's: what ends up in it is allocated here */
    const char *dir; /* the file's absolute folder */
    int cpus;
    scope defaults, web;
} loader;

struct config_box {
    shmrpc__config c; /* first: shmrpc__config_free gets this pointer */
    shmrpc_arena *arena;
};

#define Q(L, s) shmrpc__ini_quote(&(L)->ini, (s), QUOTED)
#define QP(L, s) shmrpc__ini_quote(&(L)->ini, (s), SIZE_MAX)

static void error_at(loader *L, const shmrpc__ini_entry *at, bool at_value, const char *fmt, ...)
    SHMRPC__INI_FMT(4, 5);
static void error_at(loader *L, const shmrpc__ini_entry *at, bool at_value, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    shmrpc__ini_verror(&L->ini, at ? at->line : 0, at ? (at_value ? at->vcol : at->col) : 0, fmt,
                       ap);
    va_end(ap);
}

static char *dup_str(loader *L, const char *s)
{
    char *d = shmrpc_arena_strndup(L->a, s, strlen(s));
    if (!d) L->ini.oom = true;
    return d;
}

static char *resolve_joined(loader *L, const char *p)
{
    if (p[0] == '/') return dup_str(L, p);
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

static bool is_name(const char *s)
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
                return dup_str(L, cand);
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
        v->argv[i] = dup_str(L, w);
        w += strlen(w) + 1;
    }
    v->argc = argc;
out:
    shmrpc_buf_destroy(&words);
    return bad;
}

/* Words of exec= or module_args into v->argv; false when they are wrong (reported). */
static bool parse_words(loader *L, enum key k, const shmrpc__ini_entry *at, const char *text,
                        value *v)
{
    const char *why = NULL;
    size_t bad = split_words(L, k, text, v, &why);
    if (bad) {
        /* A column past the key's line cannot be shown: point at the value's start. */
        int col = at->multiline ? at->vcol : at->vcol + (int)bad - 1;
        shmrpc__ini_error(&L->ini, at->line, col, "%s: %s", keys[k].name, why);
        v->bad = true;
        return false;
    }
    return v->argv != NULL; /* NULL: out of memory */
}

static void parse_exec(loader *L, const shmrpc__ini_entry *at, const char *text, value *v)
{
    if (!parse_words(L, K_EXEC, at, text, v)) return;
    const char *prog = v->argv[0];
    if (strchr(prog, '/')) {
        char *path = resolve_path(L, prog);
        struct stat st;
        if (!path) return;
        if (stat(path, &st) != 0) {
            error_at(L, at, true, "program '%s' not found: %s", QP(L, path), strerror(errno));
            v->bad = true;
        } else if (!S_ISREG(st.st_mode) || access(path, X_OK) != 0) {
            error_at(L, at, true, "program '%s' is not an executable file", QP(L, path));
            v->bad = true;
        }
        v->s = path;
    } else {
        v->s = search_path(L, prog);
        if (!v->s) {
            error_at(L, at, true, "program '%s' not found in PATH", Q(L, prog));
            v->bad = true;
        }
    }
}

/* The TCP transport's own reader (shmrpc_secret_load) checks the file, so that a bad one
 * stops the supervisor before it starts anything, by the very rules the server applies. */
static void parse_secret(loader *L, const shmrpc__ini_entry *at, const char *text, value *v)
{
    if (strcmp(text, "none") == 0) return;
    char *path = resolve_path(L, text);
    if (!path) return;
    v->s = path;
    unsigned char secret[SHMRPC_SECRET_MAX];
    size_t len = 0;
    shmrpc_buf msg;
    shmrpc_buf_init(&msg);
    int rc = shmrpc_secret_load(path, secret, sizeof secret, &len, &msg);
    explicit_bzero(secret, sizeof secret);
    if (rc) {
        shmrpc_buf_append(&msg, "", 1); /* a NUL, for %s */
        error_at(L, at, true, "secret_file: %s",
                 msg.err || !msg.len ? shmrpc_strerror(rc) : (const char *)msg.data);
        v->bad = true;
    }
    shmrpc_buf_destroy(&msg);
}

static void parse_module(loader *L, const shmrpc__ini_entry *at, const char *text, value *v)
{
    char *path = resolve_path(L, text);
    if (!path) return;
    v->s = path;
    struct stat st;
    if (stat(path, &st) != 0) {
        error_at(L, at, true, "module '%s': %s", QP(L, path), strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        error_at(L, at, true, "module '%s' is not a regular file", QP(L, path));
    } else if (access(path, R_OK) != 0) {
        error_at(L, at, true, "module '%s' cannot be read: %s", QP(L, path), strerror(errno));
    } else {
        return;
    }
    v->bad = true;
}

static void range_error(loader *L, const shmrpc__ini_entry *at, const key_def *kd, const char *text)
{
    error_at(L, at, true, "%s must be from %lld to %lld, got %s", kd->name, (long long)kd->min,
             (long long)kd->max, Q(L, text));
}

static void size_error(loader *L, const shmrpc__ini_entry *at, const key_def *kd, const char *text)
{
    error_at(L, at, true,
             "%s: expected a size in bytes, with an optional K, M, G or T (1024-based), or "
             "none; got '%s'",
             kd->name, Q(L, text));
}

/* Parses text as key k into v. Built-in defaults (at NULL) are valid by construction. */
static void parse_value(loader *L, enum key k, const shmrpc__ini_entry *at, const char *text,
                        value *v)
{
    const key_def *kd = &keys[k];
    *v = (value){.at = at, .set = true};
    if (at && !*text) {
        error_at(L, at, true, "%s has no value", kd->name);
        v->bad = true;
        return;
    }
    if (at && at->multiline && kd->type != T_EXEC && kd->type != T_ARGS) {
        error_at(L, at, true, "%s takes one line, but its value goes on to line %d", kd->name,
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
            error_at(L, at, true,
                     "%s is %zu bytes long once taken from the file's folder; at most %d, so "
                     "that the paths of the files made in it fit in PATH_MAX",
                     kd->name, strlen(v->s), LOG_DIR_MAX);
            v->bad = true;
        } else if (v->s && stat(v->s, &st) == 0 && !S_ISDIR(st.st_mode)) {
            error_at(L, at, true, "%s '%s' is not a folder", kd->name, QP(L, v->s));
            v->bad = true;
        }
        return;
    }
    case T_BIND:
        if (strcmp(text, "none") == 0) return;
        n = parse_host(text, host, sizeof host);
        if (n < 0) {
            error_at(L, at, true,
                     "tcp_bind: expected a numeric IPv4 or IPv6 address, localhost or none; "
                     "got '%s'",
                     Q(L, text));
            v->bad = true;
            return;
        }
        v->s = dup_str(L, host);
        v->i = n; /* loopback */
        return;
    case T_WEB_HOST:
        n = parse_host(text, host, sizeof host);
        if (n < 0) {
            error_at(L, at, true,
                     "host: expected a numeric IPv4 or IPv6 address or localhost; got '%s'",
                     Q(L, text));
            v->bad = true;
        } else {
            v->s = dup_str(L, host); /* parse_host fills host only when it is an address */
            v->i = n;                /* loopback: check_web wants a secret otherwise */
        }
        return;
    case T_SECRET:
        parse_secret(L, at, text, v);
        return;
    case T_INT:
    case T_PORT:
        switch (parse_i64(text, &n)) {
        case -1:
            error_at(L, at, true, "%s: expected a whole number from %lld to %lld, got '%s'",
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
            error_at(L, at, true, "%s: %s is too large", kd->name, Q(L, text));
            v->bad = true;
            return;
        }
        if (n < kd->min) {
            bool mib = kd->min % (1 << 20) == 0;
            error_at(L, at, true,
                     "%s of %s is less than %lld%s: a suffix (K, M, G) missing? none means no "
                     "limit",
                     kd->name, Q(L, text), (long long)kd->min >> (mib ? 20 : 10), mib ? "M" : "K");
            v->bad = true;
            return;
        }
        v->i = n;
        return;
    case T_BOOL:
    case T_PICKLE:
        n = parse_bool(text);
        if (n < 0) {
            error_at(L, at, true, "%s: expected true or false (or yes/no, on/off, 1/0), got '%s'",
                     kd->name, Q(L, text));
            v->bad = true;
            return;
        }
        if (kd->type == T_PICKLE && n) {
            error_at(L, at, true,
                     "%s has no C meaning: it let speedysvc take pickle and marshal over TCP, "
                     "and shmrpc's encodings (msgpack, json, raw) are all safe to decode; "
                     "remove it",
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
        if (!is_name(text)) {
            error_at(L, at, true,
                     "shm_name '%s': expected 1 to %d letters, digits, '_', '-' or '.'", Q(L, text),
                     NAME_MAX_LEN);
            v->bad = true;
            return;
        }
        v->s = dup_str(L, text);
        return;
    }
}

/* --- keys of a section --------------------------------------------------------------- */

/* Edit distance with transpositions, ignoring case: how far a typo is from a key. */
static int distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 64 || m > 64) return 99;
    int d[65][65];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            int ca = a[i - 1] | 0x20, cb = b[j - 1] | 0x20;
            int best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == (b[j - 2] | 0x20) && (a[i - 2] | 0x20) == cb &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

/* Whether a typo is close enough to name to suggest it. */
static bool close_to(const char *typo, const char *name)
{
    return distance(typo, name) <= (strlen(name) <= 5 ? 1 : 2);
}

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

static void unknown_key(loader *L, const scope *sc, unsigned in, const shmrpc__ini_entry *en)
{
    for (size_t i = 0; i < sizeof speedysvc_keys / sizeof *speedysvc_keys; i++) {
        if (strcmp(en->key, speedysvc_keys[i].name) == 0) {
            error_at(L, en, false, "unknown key '%s' in %s: %s", en->key, section_label(L, sc),
                     speedysvc_keys[i].hint);
            return;
        }
    }
    for (int k = 0; k < K_COUNT; k++) {
        if (strcmp(en->key, keys[k].name) == 0) { /* a key, but of another section */
            const char *where = keys[k].in & IN_WEB        ? "[web monitor]"
                                : keys[k].in & IN_DEFAULTS ? "[defaults] or a service's section"
                                                           : "a service's section";
            error_at(L, en, false, "%s is not a key of %s: it belongs in %s", en->key,
                     section_label(L, sc), where);
            return;
        }
    }
    const char *best = NULL;
    int best_d = 99;
    for (int k = 0; k < K_COUNT; k++) {
        if (!(keys[k].in & in)) continue;
        int d = starts(en->key, keys[k].name) ? 3 : distance(en->key, keys[k].name);
        if (d < best_d && (d == 3 || close_to(en->key, keys[k].name)))
            best = keys[k].name, best_d = d;
    }
    const char *q = Q(L, en->key);
    if (best)
        error_at(L, en, false, "unknown key '%s' in %s; did you mean '%s'?", q,
                 section_label(L, sc), best);
    else
        error_at(L, en, false, "unknown key '%s' in %s", q, section_label(L, sc));
}

/* Reads the keys written in sc's section. */
static void read_section(loader *L, scope *sc, unsigned in)
{
    for (const shmrpc__ini_entry *en = sc->sec->entries; en; en = en->next) {
        int k = 0;
        while (k < K_COUNT && !(strcmp(en->key, keys[k].name) == 0 && (keys[k].in & in)))
            k++;
        if (k == K_COUNT) {
            unknown_key(L, sc, in, en);
            continue;
        }
        parse_value(L, (enum key)k, en, en->value, &sc->v[k]);
        sc->v[k].own = true;
    }
}

/* Fills what sc's section did not write: from [defaults] for a service, else built in. */
static void fill_defaults(loader *L, scope *sc, unsigned in)
{
    for (int k = 0; k < K_COUNT; k++) {
        value *v = &sc->v[k];
        if (v->set || !(keys[k].in & in)) continue;
        /* max_proc_num that no one wrote follows the service's own min_proc_num. */
        if (sc->is_service && k == K_MAX_PROC && !L->defaults.v[k].at) continue;
        if (sc->is_service && (keys[k].in & IN_DEFAULTS)) {
            *v = L->defaults.v[k];
            v->own = false;
        } else if (keys[k].dflt) {
            parse_value(L, (enum key)k, NULL, keys[k].dflt, v);
        }
    }
}

/* --- checks across keys -------------------------------------------------------------- */

/* Where a value that sc did not write itself came from, so that a message about a
 * service says where its other half is: "from [defaults] at L:C" or "the default", after
 * sep; "" for a value of sc's own. */
static const char *origin(loader *L, const value *v, const char *sep)
{
    if (v->own) return "";
    char buf[64];
    if (v->at)
        snprintf(buf, sizeof buf, "%sfrom [defaults] at %d:%d", sep, v->at->line, v->at->col);
    else
        snprintf(buf, sizeof buf, "%sthe default", sep);
    const char *s = shmrpc_arena_strndup(L->ini.arena, buf, strlen(buf));
    return s ? s : "";
}

/* A check over two keys belongs to the scope that wrote one of them: a problem made in
 * [defaults] is reported once, there, not again for every service. NULL: not ours. */
static const value *ours(const scope *sc, enum key a, enum key b)
{
    const value *va = &sc->v[a], *vb = &sc->v[b];
    if (va->bad || vb->bad) return NULL;
    if (va->own && va->at) return va;
    if (vb->own && vb->at) return vb;
    return NULL;
}

/* a must not be above b. */
static void check_order(loader *L, const scope *sc, enum key a, enum key b, const char *why)
{
    const value *at = ours(sc, a, b);
    const value *va = &sc->v[a], *vb = &sc->v[b];
    if (!at || !va->set || !vb->set || va->i <= vb->i) return;
    int64_t ua = keys[a].unit_ms ? keys[a].unit_ms : 1, ub = keys[b].unit_ms ? keys[b].unit_ms : 1;
    error_at(L, at->at, true, "%s (%lld%s) is above %s (%lld%s)%s", keys[a].name,
             (long long)(va->i / ua), origin(L, va, ", "), keys[b].name, (long long)(vb->i / ub),
             origin(L, vb, ", "), why);
}

static void check_settings(loader *L, scope *sc)
{
    value *mx = &sc->v[K_MAX_PROC], *mn = &sc->v[K_MIN_PROC];
    if (!mx->set) { /* no one wrote it: the CPUs, or min_proc_num if that is more */
        *mx = (value){.set = true, .i = L->cpus > mn->i ? L->cpus : mn->i};
    }
    bool exec = sc->is_service && sc->v[K_EXEC].set && !sc->v[K_MODULE].set;
    if (!exec) {
        check_order(L, sc, K_MIN_PROC, K_MAX_PROC, "");
        check_order(L, sc, K_DOWN_CPU, K_UP_CPU, ": workers would be added and removed in turn");
    }
    check_order(L, sc, K_BACKOFF, K_BACKOFF_MAX, "");

    const value *bind = &sc->v[K_TCP_BIND], *secret = &sc->v[K_SECRET_FILE];
    const value *at = ours(sc, K_TCP_BIND, K_SECRET_FILE);
    if (!exec && at && bind->s && !bind->i && !secret->s)
        error_at(L, at->at, true,
                 "tcp_bind %s%s%s is not a loopback address: clients on other hosts must prove "
                 "a shared secret, so set secret_file (a file of %d to %d bytes, mode 0600)",
                 bind->s, origin(L, bind, " ("), bind->own ? "" : ")", SHMRPC_SECRET_MIN,
                 SHMRPC_SECRET_MAX);
}

/* [web monitor]: its secret_file is its own or [defaults]', and a page that listens on
 * other hosts than this one requires it (docs/web.md). */
static void check_web(loader *L)
{
    value *secret = &L->web.v[K_WEB_SECRET];
    if (!secret->set) {
        *secret = L->defaults.v[K_SECRET_FILE];
        secret->own = false;
    }
    const value *host = &L->web.v[K_WEB_HOST];
    if (host->bad || host->i || secret->bad || secret->s) return;
    error_at(L, host->at, true,
             "the web monitor's host '%s' is not a loopback address: the page can stop and "
             "start services, so from other hosts it requires the shared secret; set "
             "secret_file in [web monitor] or [defaults] (a file of %d to %d bytes, mode "
             "0600), or listen on 127.0.0.1, ::1 or localhost",
             host->s, SHMRPC_SECRET_MIN, SHMRPC_SECRET_MAX);
}

/* --- sections ------------------------------------------------------------------------ */

/* Keys that mean nothing for an exec= service, whose program runs its own workers. */
static void check_exec_keys(loader *L, const scope *sc)
{
    for (int k = 0; k < K_COUNT; k++) {
        const value *v = &sc->v[k];
        if (!v->own || !v->at || keys[k].exec_too || k == K_MODULE) continue;
        if (k == K_MODULE_ARGS)
            error_at(L, v->at, false,
                     "module_args does not apply to an exec= service: write the program's "
                     "arguments in exec=");
        else
            error_at(L, v->at, false,
                     "%s does not apply to an exec= service: the program runs its own workers "
                     "and TCP server",
                     keys[k].name);
    }
}

static void check_service(loader *L, scope *sc)
{
    const shmrpc__ini_section *s = sc->sec;
    value *mod = &sc->v[K_MODULE], *ex = &sc->v[K_EXEC];
    if (mod->set && ex->set) {
        const value *second = mod->at->line > ex->at->line ? mod : ex;
        const value *first = second == mod ? ex : mod;
        error_at(L, second->at, false,
                 "service [%s] has both module= and exec= (%s at %d:%d): keep one", s->name,
                 second == mod ? "exec" : "module", first->at->line, first->at->col);
        return;
    }
    if (!mod->set && !ex->set) {
        shmrpc__ini_error(&L->ini, s->line, s->col,
                          "service [%s] has neither module= (a shared module) nor exec= (a "
                          "server program)",
                          s->name);
        return;
    }
    if (ex->set) {
        check_exec_keys(L, sc);
        if (!ex->bad && sc->v[K_WAIT].i && !sc->v[K_SHM_NAME].set && !sc->v[K_TCP_PORT].set)
            error_at(L, ex->at, false,
                     "wait_until_completed%s%s needs to know where [%s] answers: set shm_name "
                     "or tcp_port to where the program serves, or wait_until_completed = false",
                     origin(L, &sc->v[K_WAIT], " ("), sc->v[K_WAIT].own ? "" : ")", s->name);
    }
}

/* Services must not share an address they name; the web monitor's port is taken too. */
static void check_addresses(loader *L, scope *svcs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const value *name = &svcs[i].v[K_SHM_NAME], *port = &svcs[i].v[K_TCP_PORT];
        for (size_t j = 0; j < i; j++) {
            const value *n2 = &svcs[j].v[K_SHM_NAME], *p2 = &svcs[j].v[K_TCP_PORT];
            if (name->s && n2->s && strcmp(name->s, n2->s) == 0)
                error_at(L, name->at, true, "shm_name '%s' is also service [%s]'s (at %d:%d)",
                         name->s, svcs[j].sec->name, n2->at->line, n2->at->vcol);
            if (port->set && !port->bad && p2->set && !p2->bad && port->i == p2->i)
                error_at(L, port->at, true, "tcp_port %lld is also service [%s]'s (at %d:%d)",
                         (long long)port->i, svcs[j].sec->name, p2->at->line, p2->at->vcol);
        }
        const value *web = &L->web.v[K_WEB_PORT];
        if (port->set && !port->bad && !web->bad && port->i == web->i) {
            if (web->at)
                error_at(L, port->at, true,
                         "tcp_port %lld is the web monitor's port too (at %d:%d)",
                         (long long)port->i, web->at->line, web->at->vcol);
            else
                error_at(L, port->at, true,
                         "tcp_port %lld is the web monitor's default port: choose another, or "
                         "move the web monitor with [web monitor] port",
                         (long long)port->i);
        }
    }
}

static const char *close_reserved(const char *name)
{
    if (close_to(name, "defaults")) return "defaults";
    if (close_to(name, "web monitor")) return "web monitor";
    return NULL;
}

/* --- the result ---------------------------------------------------------------------- */

/* Whether key k is a field of shmrpc__config_settings (keys[k].field). */
static bool is_field(int k)
{
    return (keys[k].in & IN_DEFAULTS) && keys[k].type != T_PICKLE;
}

/* The C type key k's value calls for: char * for T_DIR, T_BIND and T_SECRET; int64_t for
 * a T_INT duration (in ms, so it may pass INT_MAX), int for another T_INT; uint64_t for
 * T_SIZE; bool for T_BOOL. */
static ctype field_ctype(int k)
{
    switch (keys[k].type) {
    case T_DIR:
    case T_BIND:
    case T_SECRET:
        return C_STR;
    case T_INT:
        return keys[k].unit_ms ? C_I64 : C_INT;
    case T_SIZE:
        return C_U64;
    case T_BOOL:
        return C_BOOL;
    default:
        return C_NONE;
    }
}

int shmrpc__config_check_keys(char *msg, size_t cap)
{
    static const char *const names[] = {"none", "char *", "int", "int64_t", "uint64_t", "bool"};
    for (int k = 0; k < K_COUNT; k++) {
        ctype want = is_field(k) ? field_ctype(k) : C_NONE;
        if (keys[k].ctype == want && (want != C_NONE || keys[k].field == 0)) continue;
        snprintf(msg, cap,
                 "config.c: key %s: its field in shmrpc__config_settings is %s, its type "
                 "calls for %s",
                 keys[k].name, names[keys[k].ctype], names[want]);
        return -1;
    }
    return 0;
}

static void settings_out(const scope *sc, shmrpc__config_settings *o)
{
    for (int k = 0; k < K_COUNT; k++) {
        if (!is_field(k)) continue;
        const value *v = &sc->v[k];
        char *at = (char *)o + keys[k].field;
        /* Written as the member's own type is (F), so that even a table whose type and
         * field disagree (shmrpc__config_check_keys says so) writes no byte past it. */
        switch (keys[k].ctype) {
        case C_STR:
            *(char **)at = v->s;
            break;
        case C_INT:
            *(int *)at = (int)v->i;
            break;
        case C_I64:
            *(int64_t *)at = v->i;
            break;
        case C_U64:
            *(uint64_t *)at = (uint64_t)v->i;
            break;
        case C_BOOL:
            *(bool *)at = v->i != 0;
            break;
        case C_NONE:
            break;
        }
    }
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_PROCS ? MAX_PROCS : (int)n;
}

void shmrpc__config_opts_init(shmrpc__config_opts *o)
{
    o->online_cpus = 0;
}

/* The absolute folder of path, or NULL with errno set. */
static char *folder_of(shmrpc_arena *a, const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else if ((size_t)(slash - path) < sizeof dir)
        memcpy(dir, path, (size_t)(slash - path)), dir[slash - path] = '\0';
    else
        return errno = ENAMETOOLONG, NULL;
    char real[PATH_MAX];
    if (!realpath(dir, real)) return NULL;
    char *d = shmrpc_arena_strndup(a, real, strlen(real));
    if (!d) errno = ENOMEM;
    return d;
}

/* Everything but writing the result; errors go to L->ini. */
static int check_file(loader *L, const char *path, scope **svcs_out, size_t *n_out)
{
    int rc = shmrpc__ini_load(&L->ini, path);
    if (rc) return rc;
    if (L->ini.n_errors && !L->ini.src) return 0; /* could not be read */
    L->dir = folder_of(L->a, path);
    if (!L->dir) {
        if (errno == ENOMEM) return SHMRPC_ENOMEM;
        shmrpc__ini_error(&L->ini, 0, 0, "cannot find its folder: %s", strerror(errno));
        return 0;
    }

    size_t n_sections = 0;
    for (const shmrpc__ini_section *s = L->ini.sections; s; s = s->next)
        n_sections++;
    scope *svcs = calloc(n_sections ? n_sections : 1, sizeof *svcs);
    if (!svcs) return SHMRPC_ENOMEM;
    *svcs_out = svcs;
    size_t n = 0, refused = 0;

    for (const shmrpc__ini_section *s = L->ini.sections; s; s = s->next) {
        if (s->duplicate) continue;
        if (strcmp(s->name, "defaults") == 0) {
            L->defaults.sec = s;
        } else if (strcmp(s->name, "web monitor") == 0) {
            L->web.sec = s;
        } else {
            const char *near = close_reserved(s->name);
            if (near) {
                shmrpc__ini_error(&L->ini, s->line, s->col,
                                  "unknown section [%s]; did you mean [%s]?", Q(L, s->name), near);
                refused++;
                continue;
            }
            if (!is_name(s->name) || s->name[0] == '.' || s->name[0] == '-') {
                shmrpc__ini_error(&L->ini, s->line, s->col,
                                  "[%s] is not a service name: 1 to %d letters, digits, '_', "
                                  "'-' or '.', not starting with '.' or '-'",
                                  Q(L, s->name), NAME_MAX_LEN);
                refused++;
                continue;
            }
            if (strcmp(s->name, RESERVED_NAME) == 0) {
                shmrpc__ini_error(&L->ini, s->line, s->col,
                                  "[%s] is reserved: %s.log in log_dir is the supervisor's own "
                                  "log; name the service otherwise",
                                  RESERVED_NAME, RESERVED_NAME);
                refused++;
                continue;
            }
            svcs[n].sec = s;
            svcs[n].is_service = true;
            n++;
        }
    }
    *n_out = n;

    if (L->defaults.sec) read_section(L, &L->defaults, IN_DEFAULTS);
    fill_defaults(L, &L->defaults, IN_DEFAULTS);
    check_settings(L, &L->defaults);
    if (!L->defaults.v[K_LOG_DIR].set) {
        if (L->defaults.sec)
            shmrpc__ini_error(&L->ini, L->defaults.sec->line, L->defaults.sec->col,
                              "[defaults] has no log_dir: the folder for the services' logs");
        else
            shmrpc__ini_error(&L->ini, 0, 0,
                              "no [defaults] with log_dir: the folder for the services' logs");
    }

    if (L->web.sec) read_section(L, &L->web, IN_WEB);
    fill_defaults(L, &L->web, IN_WEB);
    check_web(L);

    for (size_t i = 0; i < n; i++) {
        read_section(L, &svcs[i], IN_SERVICE);
        fill_defaults(L, &svcs[i], IN_SERVICE);
        check_settings(L, &svcs[i]);
        check_service(L, &svcs[i]);
    }
    check_addresses(L, svcs, n);
    if (n == 0 && refused == 0 && L->ini.bad_headers == 0)
        shmrpc__ini_error(&L->ini, 0, 0,
                          "no services: add a section [NAME] with module= or exec= for each");
    return L->ini.oom ? SHMRPC_ENOMEM : 0;
}

int shmrpc__config_load(const char *path, const shmrpc__config_opts *opts, shmrpc__config **out,
                        shmrpc_buf *err)
{
    char table[256];
    if (shmrpc__config_check_keys(table, sizeof table) != 0) { /* a bug of this program */
        fprintf(stderr, "%s\n", table);
        abort();
    }
    *out = NULL;
    struct config_box *box = calloc(1, sizeof *box);
    loader L = {.cpus = opts && opts->online_cpus > 0 ? opts->online_cpus : online_cpus()};
    scope *svcs = NULL;
    size_t n = 0;
    int rc = SHMRPC_ENOMEM;
    if (!box || !(box->arena = shmrpc_arena_new(0))) goto fail;
    L.a = box->arena;
    rc = check_file(&L, path, &svcs, &n);
    if (rc) goto fail;
    if (L.ini.n_errors) {
        if (err) shmrpc__ini_write_errors(&L.ini, err);
        rc = SHMRPC_EINVAL;
        goto fail;
    }

    shmrpc__config *c = &box->c;
    c->path = dup_str(&L, path);
    c->dir = (char *)L.dir;
    settings_out(&L.defaults, &c->defaults);
    c->web_host = L.web.v[K_WEB_HOST].s;
    c->web_port = (int)L.web.v[K_WEB_PORT].i;
    c->web_secret_file = L.web.v[K_WEB_SECRET].s;
    c->services =
        shmrpc_arena_calloc(L.a, n ? n : 1, sizeof *c->services, _Alignof(shmrpc__config_service));
    if (!c->services || L.ini.oom) goto fail;
    c->n_services = n;
    for (size_t i = 0; i < n; i++) {
        const value *v = svcs[i].v;
        shmrpc__config_service *s = &c->services[i];
        s->name = dup_str(&L, svcs[i].sec->name);
        s->line = svcs[i].sec->line;
        if (v[K_MODULE].set) {
            s->kind = SHMRPC__CONFIG_MODULE;
            s->module = v[K_MODULE].s;
            s->module_args = v[K_MODULE_ARGS].argv;
            s->module_argc = v[K_MODULE_ARGS].argc;
        } else {
            s->kind = SHMRPC__CONFIG_EXEC;
            s->argv = v[K_EXEC].argv;
            s->argc = v[K_EXEC].argc;
            s->program = v[K_EXEC].s;
        }
        s->shm_name = v[K_SHM_NAME].s;
        s->tcp_port = v[K_TCP_PORT].set ? (int)v[K_TCP_PORT].i : 0;
        settings_out(&svcs[i], &s->s);
    }
    if (L.ini.oom) goto fail;
    free(svcs);
    shmrpc__ini_destroy(&L.ini);
    *out = c;
    return 0;

fail:
    if (rc == 0) rc = SHMRPC_ENOMEM;
    free(svcs);
    shmrpc__ini_destroy(&L.ini);
    if (box) shmrpc_arena_free(box->arena);
    free(box);
    return rc;
}

void shmrpc__config_free(shmrpc__config *c)
{
    if (!c) return;
    struct config_box *box = (struct config_box *)c;
    shmrpc_arena_free(box->arena);
    free(box);
}

char *shmrpc__config_strdup(shmrpc__config *c, const char *text)
{
    return shmrpc_arena_strndup(((struct config_box *)c)->arena, text, strlen(text));
}

const shmrpc__config_service *shmrpc__config_find(const shmrpc__config *c, const char *name)
{
    for (size_t i = 0; i < c->n_services; i++)
        if (strcmp(c->services[i].name, name) == 0) return &c->services[i];
    return NULL;
}

int shmrpc__config_control_address(const char *path, char *out, size_t cap)
{
    char real[PATH_MAX];
    if (!realpath(path, real)) return SHMRPC_ESYS(errno);
    uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a, 64 bits */
    for (const unsigned char *p = (const unsigned char *)real; *p; p++)
        h = (h ^ *p) * UINT64_C(1099511628211);
    int n = snprintf(out, cap, "shm://shmrpc-control-%016llx", (unsigned long long)h);
    return n < 0 || (size_t)n >= cap ? SHMRPC_ESYS(ENAMETOOLONG) : 0;
}

/* --- the resolved configuration as text ---------------------------------------------- */

static void outf(shmrpc_buf *out, const char *fmt, ...) SHMRPC__INI_FMT(2, 3);
static void outf(shmrpc_buf *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    shmrpc__ini_vappend(out, fmt, ap);
    va_end(ap);
}

static void out_size(shmrpc_buf *out, const char *name, uint64_t v)
{
    if (v)
        outf(out, "%s = %llu\n", name, (unsigned long long)v);
    else
        outf(out, "%s = none\n", name);
}

/* A number, size or boolean field of key k, read as the member's own type is. */
static int64_t field_number(const shmrpc__config_settings *s, int k)
{
    const char *at = (const char *)s + keys[k].field;
    switch (keys[k].ctype) {
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
static void out_setting(shmrpc_buf *out, int k, const shmrpc__config_settings *s)
{
    const char *name = keys[k].name;
    int64_t v = field_number(s, k);
    switch (keys[k].type) {
    case T_DIR:
    case T_BIND:
    case T_SECRET: {
        const char *text =
            keys[k].ctype == C_STR ? *(char *const *)((const char *)s + keys[k].field) : NULL;
        outf(out, "%s = %s\n", name, text ? text : keys[k].type == T_DIR ? "" : "none");
        return;
    }
    case T_INT:
        outf(out, "%s = %lld\n", name, (long long)(keys[k].unit_ms ? v / keys[k].unit_ms : v));
        return;
    case T_SIZE:
        out_size(out, name, (uint64_t)v);
        return;
    case T_BOOL:
        outf(out, "%s = %s\n", name, v ? "true" : "false");
        return;
    default:
        return;
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

void shmrpc__config_write(const shmrpc__config *c, shmrpc_buf *out)
{
    outf(out, "[defaults]\n");
    for (int k = 0; k < K_COUNT; k++)
        if (is_field(k)) out_setting(out, k, &c->defaults);
    outf(out, "\n[web monitor]\nhost = %s\nport = %d\nsecret_file = %s\n", c->web_host, c->web_port,
         c->web_secret_file ? c->web_secret_file : "none");
    for (size_t i = 0; i < c->n_services; i++) {
        const shmrpc__config_service *s = &c->services[i];
        bool exec = s->kind == SHMRPC__CONFIG_EXEC;
        outf(out, "\n[%s]\n", s->name);
        if (exec) {
            outf(out, "exec =");
            for (int a = 0; a < s->argc; a++) {
                shmrpc_buf_append(out, " ", 1);
                out_word(out, s->argv[a]);
            }
            outf(out, "\n; program: %s\n", s->program);
        } else {
            outf(out, "module = %s\n", s->module);
            if (s->module_argc) {
                outf(out, "module_args =");
                for (int a = 0; a < s->module_argc; a++) {
                    shmrpc_buf_append(out, " ", 1);
                    out_word(out, s->module_args[a]);
                }
                outf(out, "\n");
            }
        }
        /* What the file leaves to the .svc is a comment, so that the text reads back. */
        const char *unknown = exec ? "not set" : "from the .svc";
        if (s->shm_name)
            outf(out, "shm_name = %s\n", s->shm_name);
        else
            outf(out, "; shm_name: %s\n", unknown);
        if (s->tcp_port)
            outf(out, "tcp_port = %d\n", s->tcp_port);
        else
            outf(out, "; tcp_port: %s\n", unknown);
        for (int k = 0; k < K_COUNT; k++)
            if (is_field(k) && (!exec || keys[k].exec_too)) out_setting(out, k, &s->s);
    }
}
