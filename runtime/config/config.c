/* SPDX-License-Identifier: MIT */
/* service.ini, read and checked: the file's sections in order ([defaults], [web monitor],
 * then each service), and the configuration the supervisor gets. The reader of values is
 * config_parse.c, the checks across keys config_check.c, the writer config_write.c. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmrpc/arena.h>
#include <shmrpc/status.h>

#include "config_internal.h"

struct config_box {
    cfg_file c; /* first: cfg_free gets this pointer */
    shmrpc_arena *arena;
};

/* --- the result ---------------------------------------------------------------------- */

static void settings_out(const scope *sc, cfg_settings *o)
{
    for (int k = 0; k < K_COUNT; k++) {
        if (!cfg_is_field(k)) continue;
        const value *v = &sc->v[k];
        char *at = (char *)o + key(k)->field;
        /* Written as the member's own type is (F), so that even a table whose type and
         * field disagree (cfg_check_keys says so) writes no byte past it. */
        switch (key(k)->ctype) {
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
        /* GCOVR_EXCL_START: unreachable: every field key of the constant table has one of
         * the types above (cfg_check_keys passes for it) */
        case C_NONE:
            break;
            /* GCOVR_EXCL_STOP */
        }
    }
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_PROCS ? MAX_PROCS : (int)n;
}

void cfg_opts_init(cfg_opts *o)
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
    int rc = ini_load(&L->ini, path);
    if (rc) return rc;
    if (L->ini.n_errors && !L->ini.src) return 0; /* could not be read */
    L->dir = folder_of(L->a, path);
    if (!L->dir) {
        if (errno == ENOMEM) return SHMRPC_ENOMEM;
        ini_error(&L->ini, 0, 0, "cannot find its folder: %s", strerror(errno));
        return 0;
    }

    size_t n_sections = 0;
    for (const ini_section *s = L->ini.sections; s; s = s->next)
        n_sections++;
    scope *svcs = calloc(n_sections ? n_sections : 1, sizeof *svcs);
    if (!svcs) return SHMRPC_ENOMEM;
    *svcs_out = svcs;
    size_t n = 0, refused = 0;

    for (const ini_section *s = L->ini.sections; s; s = s->next) {
        if (s->duplicate) continue;
        if (strcmp(s->name, "defaults") == 0) {
            L->defaults.sec = s;
        } else if (strcmp(s->name, "web monitor") == 0) {
            L->web.sec = s;
        } else {
            const char *near = cfg_close_reserved(s->name);
            if (near) {
                ini_error(&L->ini, s->line, s->col, "unknown section [%s]; did you mean [%s]?",
                          Q(L, s->name), near);
                refused++;
                continue;
            }
            if (!cfg_is_name(s->name) || s->name[0] == '.' || s->name[0] == '-') {
                ini_error(&L->ini, s->line, s->col,
                          "[%s] is not a service name: 1 to %d letters, digits, '_', "
                          "'-' or '.', not starting with '.' or '-'",
                          Q(L, s->name), NAME_MAX_LEN);
                refused++;
                continue;
            }
            if (strcmp(s->name, RESERVED_NAME) == 0) {
                ini_error(&L->ini, s->line, s->col,
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

    if (L->defaults.sec) cfg_read_section(L, &L->defaults, IN_DEFAULTS);
    cfg_fill_defaults(L, &L->defaults, IN_DEFAULTS);
    cfg_check_settings(L, &L->defaults);
    if (!L->defaults.v[K_LOG_DIR].set) {
        if (L->defaults.sec)
            ini_error(&L->ini, L->defaults.sec->line, L->defaults.sec->col,
                      "[defaults] has no log_dir: the folder for the services' logs");
        else
            ini_error(&L->ini, 0, 0,
                      "no [defaults] with log_dir: the folder for the services' logs");
    }

    if (L->web.sec) cfg_read_section(L, &L->web, IN_WEB);
    cfg_fill_defaults(L, &L->web, IN_WEB);
    cfg_check_web(L);

    for (size_t i = 0; i < n; i++) {
        cfg_read_section(L, &svcs[i], IN_SERVICE);
        cfg_fill_defaults(L, &svcs[i], IN_SERVICE);
        cfg_check_settings(L, &svcs[i]);
        cfg_check_service(L, &svcs[i]);
    }
    cfg_check_addresses(L, svcs, n);
    if (n == 0 && refused == 0 && L->ini.bad_headers == 0)
        ini_error(&L->ini, 0, 0,
                  "no services: add a section [NAME] with module= or exec= for each");
    return L->ini.oom ? SHMRPC_ENOMEM : 0;
}

int cfg_load(const char *path, const cfg_opts *opts, cfg_file **out, shmrpc_buf *err)
{
    char table[256];
    if (cfg_check_keys(table, sizeof table) != 0) { /* a bug of this program */
        /* GCOVR_EXCL_START: unreachable: the key table is a constant that agrees with
         * cfg_settings (config_keys.c; every load checks it) */
        fprintf(stderr, "%s\n", table);
        abort();
        /* GCOVR_EXCL_STOP */
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
        if (err) ini_write_errors(&L.ini, err);
        rc = SHMRPC_EINVAL;
        goto fail;
    }

    cfg_file *c = &box->c;
    c->path = cfg_dup_str(&L, path);
    c->dir = (char *)L.dir;
    settings_out(&L.defaults, &c->defaults);
    c->web_host = L.web.v[K_WEB_HOST].s;
    c->web_port = (int)L.web.v[K_WEB_PORT].i;
    c->web_secret_file = L.web.v[K_WEB_SECRET].s;
    c->services = shmrpc_arena_calloc(L.a, n ? n : 1, sizeof *c->services, _Alignof(cfg_service));
    if (!c->services || L.ini.oom) goto fail;
    c->n_services = n;
    for (size_t i = 0; i < n; i++) {
        const value *v = svcs[i].v;
        cfg_service *s = &c->services[i];
        s->name = cfg_dup_str(&L, svcs[i].sec->name);
        s->line = svcs[i].sec->line;
        if (v[K_MODULE].set) {
            s->kind = CFG_MODULE;
            s->module = v[K_MODULE].s;
            s->module_args = v[K_MODULE_ARGS].argv;
            s->module_argc = v[K_MODULE_ARGS].argc;
        } else {
            s->kind = CFG_EXEC;
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
    ini_destroy(&L.ini);
    *out = c;
    return 0;

fail:
    if (rc == 0) rc = SHMRPC_ENOMEM;
    free(svcs);
    ini_destroy(&L.ini);
    if (box) shmrpc_arena_free(box->arena);
    free(box);
    return rc;
}

void cfg_free(cfg_file *c)
{
    if (!c) return;
    struct config_box *box = (struct config_box *)c;
    shmrpc_arena_free(box->arena);
    free(box);
}

char *cfg_strdup(cfg_file *c, const char *text)
{
    return shmrpc_arena_strndup(((struct config_box *)c)->arena, text, strlen(text));
}

const cfg_service *cfg_find(const cfg_file *c, const char *name)
{
    for (size_t i = 0; i < c->n_services; i++)
        if (strcmp(c->services[i].name, name) == 0) return &c->services[i];
    return NULL;
}

int cfg_control_address(const char *path, char *out, size_t cap)
{
    char real[PATH_MAX];
    if (!realpath(path, real)) return SHMRPC_ESYS(errno);
    uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a, 64 bits */
    for (const unsigned char *p = (const unsigned char *)real; *p; p++)
        h = (h ^ *p) * UINT64_C(1099511628211);
    int n = snprintf(out, cap, "shm://shmrpc-control-%016llx", (unsigned long long)h);
    return n < 0 || (size_t)n >= cap ? SHMRPC_ESYS(ENAMETOOLONG) : 0;
}
