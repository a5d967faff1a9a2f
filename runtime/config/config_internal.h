/* SPDX-License-Identifier: MIT */
/* What the files of service.ini's reader share (config.c loads, config_keys.c holds the
 * key table, config_parse.c reads values and sections, config_check.c checks across keys,
 * config_write.c writes the result): the key table, and the loader's state. Not for the
 * programs: they include config.h. */
#ifndef SHMRPC_CONFIG_INTERNAL_H
#define SHMRPC_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/arena.h>

#include "config.h"
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
    K_TLS_CERT,
    K_TLS_KEY,
    K_TLS_CA,
    K_TCP_MAX_RUNNING,
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
    T_FILE,     /* a file the service reads (TLS's PEM files), or none */
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

/* The C type of a field of cfg_settings, as the compiler sees the member (F). */
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
                       * cfg_settings, */
    ctype ctype;      /* and its C type, which must be what type calls for (field_ctype):
                       * checked by cfg_check_keys */
} key_def;

/* Every key of service.ini, one row each (config_keys.c): what the parser, the checks and
 * the writer know of a key, written once. */
extern const key_def cfg_keys[K_COUNT];

static inline const key_def *key(int k)
{
    return &cfg_keys[k];
}

/* Whether key k is a field of cfg_settings (key(k)->field). */
bool cfg_is_field(int k);

/* One key's value in a scope: [defaults], [web monitor] or a service. */
typedef struct value {
    const ini_entry *at; /* where it was written; NULL: built in */
    bool own;            /* written in this scope's own section */
    bool set;            /* has a value (written or built in) */
    bool bad;            /* written but wrong (reported): checks on it are skipped */
    int64_t i;           /* numbers, sizes (0: none), booleans, "is loopback" */
    char *s;             /* text: paths, addresses, names (NULL: none) */
    char **argv;         /* T_EXEC (with s the program's path), T_ARGS */
    int argc;
} value;

typedef struct scope {
    const ini_section *sec; /* NULL: no such section in the file */
    bool is_service;
    value v[K_COUNT];
} scope;

typedef struct loader {
    ini_file ini;
    shmrpc_arena *a; /* the configuration's: what ends up in it is allocated here */
    const char *dir; /* the file's absolute folder */
    int cpus;
    scope defaults, web;
} loader;

#define Q(L, s) ini_quote(&(L)->ini, (s), QUOTED)
#define QP(L, s) ini_quote(&(L)->ini, (s), SIZE_MAX)

/* An error at a key (at_value false) or at its value; at NULL: of the file. */
void cfg_error_at(loader *L, const ini_entry *at, bool at_value, const char *fmt, ...)
    INI_FMT(4, 5);
/* A copy of s in the configuration's arena; NULL (and L->ini.oom) when out of memory. */
char *cfg_dup_str(loader *L, const char *s);

/* config_parse.c: the keys of a section, each value parsed and checked on its own. */
bool cfg_is_name(const char *s);
/* The reserved section ([defaults], [web monitor]) a section's name is a typo of, or NULL. */
const char *cfg_close_reserved(const char *name);
/* Reads the keys written in sc's section. */
void cfg_read_section(loader *L, scope *sc, unsigned in);
/* Fills what sc's section did not write: from [defaults] for a service, else built in. */
void cfg_fill_defaults(loader *L, scope *sc, unsigned in);

/* config_check.c: the checks across keys of a scope, and across services. */
void cfg_check_settings(loader *L, scope *sc);
void cfg_check_web(loader *L);
void cfg_check_service(loader *L, scope *sc);
void cfg_check_addresses(loader *L, scope *svcs, size_t n);

#endif
