/* SPDX-License-Identifier: MIT */
/* service.ini, read and checked: what the supervisor (shmrpc-service) runs and how, with
 * defaults applied and each service's overrides merged. The keys are in docs/service-ini.md.
 *
 * Every program includes this header, so the programs' one error rule is written here
 * (docs/errors.md, "Inside the programs"): a function that fails says why into its
 * caller's (char *err, size_t cap), or the page's web_err where an HTTP status goes with
 * the message, or, for the errors of a file, the shmrpc_buf that cfg_load fills with
 * file:line:col lines, and returns its status; it prints nothing and logs nothing about
 * that failure. Only main(), a subcommand's entry point (ctl_status(), ...) or a static
 * helper that returns the entry point's exit status for it (ctl_control.c's failed())
 * prints, once. The supervisor's loop and the page's keeper are entry points too: what
 * they cannot do and go on without, they log (sup_logf, web_logf) where they decide to go
 * on, as they log the events that are no failure (a start, a restart). The library's
 * own functions follow theirs: a status, and why in shmrpc_errmsg(). */
#ifndef SHMRPC_SUPERVISOR_CONFIG_H
#define SHMRPC_SUPERVISOR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/buf.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The keys of [defaults], which each service may override. Paths are absolute: relative
 * ones in the file are taken from the file's folder. Durations are milliseconds. */
typedef struct cfg_settings {
    char *log_dir;                  /* where the service's log files go */
    char *tcp_bind;                 /* host its TCP server binds (numeric, or "localhost");
                                     * NULL: no TCP server ("none") */
    char *secret_file;              /* the shared secret for TCP clients; NULL: none */
    char *tls_cert_file;            /* TLS: the TCP server's certificate; NULL: plain TCP */
    char *tls_key_file;             /* its key; NULL: in tls_cert_file */
    char *tls_ca_file;              /* clients must have a certificate of these CAs; NULL:
                                     * any client (mutual TLS off) */
    int tcp_max_running;            /* calls of one TCP connection that run at once in a
                                     * worker (shmrpc_tcp_opts.max_running); module= only */
    int min_proc_num;               /* workers never fewer than this */
    int max_proc_num;               /* nor more than this */
    uint64_t max_proc_mem_bytes;    /* a worker above it is replaced; 0: no limit ("none") */
    bool wait_until_completed;      /* start the next service only once this one answers */
    int scale_up_cpu_percent;       /* add a worker when CPU per worker passes this ... */
    int64_t scale_up_window_ms;     /* ... averaged over this window */
    int scale_down_cpu_percent;     /* remove one when all workers' CPU stays under this ... */
    int64_t scale_down_window_ms;   /* ... over this window */
    int64_t restart_backoff_ms;     /* delay before the first restart of a crashed worker, */
    int64_t restart_backoff_max_ms; /* doubled per crash in a row up to this */
    int crash_loop_restarts;        /* this many restarts ... */
    int64_t crash_loop_window_ms;   /* ... within this window mark the service failed */
    uint64_t log_max_bytes;         /* a log is rotated at this size; 0: never ("none") */
    int log_keep;                   /* rotated logs kept */
    int64_t stop_timeout_ms;        /* on stop, calls in flight get this long */
    int64_t startup_timeout_ms;     /* wait_until_completed waits this long for an answer */
    int64_t series_interval_ms;     /* NAME.series is sampled this often */
} cfg_settings;

typedef enum cfg_kind {
    CFG_MODULE = 1, /* module=: a shared module loaded by a manager that forks */
    CFG_EXEC = 2,   /* exec=: a standalone server program */
} cfg_kind;

typedef struct cfg_service {
    char *name; /* its [NAME]: 1 to 64 letters, digits, '_', '-' or '.' */
    int line;   /* where [NAME] is, for messages */
    cfg_kind kind;
    char *module;       /* MODULE: the path of the shared module */
    char **module_args; /* MODULE: module_args split into words, NULL-terminated; init gets
                         * them after argv[0] (NULL when not written: module_argc 0) */
    int module_argc;
    char **argv; /* EXEC: the command split into words, NULL-terminated, as written */
    int argc;
    char *program;  /* EXEC: the path argv[0] was found at (through PATH if it has no '/') */
    char *shm_name; /* shm://NAME it serves; NULL: the .svc's `name` (MODULE), unknown (EXEC) */
    int tcp_port;   /* its TCP port; 0: the .svc's `port` (MODULE), unknown (EXEC) */
    cfg_settings s;
} cfg_service;

typedef struct cfg_file {
    char *path;            /* of the file, as given */
    char *dir;             /* the absolute folder of the file */
    cfg_settings defaults; /* [defaults] with the built-in defaults applied */
    char *web_host;        /* [web monitor] host */
    int web_port;          /*               port */
    char *web_secret_file; /*               secret_file, else [defaults]'; the
                            * page requires its secret; NULL: none (the host is
                            * then a loopback address) */
    size_t n_services;
    cfg_service *services; /* in file order: the order they start in */
} cfg_file;

typedef struct cfg_opts {
    int online_cpus; /* max_proc_num's default; 0: the CPUs online now */
} cfg_opts;

void cfg_opts_init(cfg_opts *o);

/* Checks the key table: every setting's field in cfg_settings has the C type its
 * value calls for (char *, int, int64_t for durations in ms, uint64_t for sizes, bool).
 * 0, or -1 with the key and both types in msg. cfg_load aborts when it fails. */
int cfg_check_keys(char *msg, size_t cap);

/* Reads and checks path. On success *out is the configuration (cfg_free it).
 * Otherwise *out is NULL and err receives every error of the file, each as
 * "path:line:col: error: message" with the source line and a caret, sorted by position;
 * the status is SHMRPC_EINVAL for errors in the file (or one that cannot be read), or
 * SHMRPC_ENOMEM. opts may be NULL for the defaults, err NULL to count on the status alone. */
int cfg_load(const char *path, const cfg_opts *opts, cfg_file **out, shmrpc_buf *err);

void cfg_free(cfg_file *c);

/* The configuration as service.ini text with every key written out, in a stable order,
 * which reads back to the same configuration: what `shmrpc-ini-check FILE` prints. What
 * is not a value (the program exec= found, addresses left to the .svc) is a comment. */
void cfg_write(const cfg_file *c, shmrpc_buf *out);

/* A copy of text that lives as long as c (cfg_free frees it); NULL: no memory.
 * For values the supervisor fills in, such as a module's shm_name from its .svc. */
char *cfg_strdup(cfg_file *c, const char *text);

/* The service called name, or NULL. */
const cfg_service *cfg_find(const cfg_file *c, const char *name);

/* The address of the control service of the supervisor that runs the service.ini at
 * path: shm://shmrpc-control-HASH, HASH 16 hex digits of the FNV-1a hash of the file's
 * real path, so that shmrpcctl finds it from the same file and two supervisors of two
 * files do not meet. 0, or SHMRPC_ESYS(errno) when the path cannot be resolved. */
int cfg_control_address(const char *path, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
