/* SPDX-License-Identifier: MIT */
/* The management page's routes (web_server.h, docs/web.md): one catch-all handler checks a
 * request (web_request.c), lets the login have it (web_login.c), then serves the pages,
 * the assets, the JSON API and /metrics (web_view.c, web_files.c), the actions on a
 * service and the JSON gateway (web_call.c). */
#include "web_server.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmrpc/codec.h>
#include <shmrpc/status.h>

#include "web_files.h"

/* The gateway's deadline per call. */
#define GATEWAY_TIMEOUT_MS 5000
/* Log lines in GET /api/services/NAME unless ?lines= says, and at most. */
#define DEFAULT_LOG_LINES 100
#define MAX_LOG_LINES 1000

#define JS "text/javascript; charset=utf-8"
#define CSS "text/css; charset=utf-8"

/* The scripts, style sheets and icon, served as they are: the path's one segment, the
 * file's name in assets/ or third_party/uplot/, its type. */
static const struct {
    const char *path, *file, *type;
} static_files[] = {
    {"app.js", "app.js", JS},
    {"favicon.svg", "favicon.svg", "image/svg+xml"},
    {"format.js", "format.js", JS},
    {"login.js", "login.js", JS},
    {"service.js", "service.js", JS},
    {"style.css", "style.css", CSS},
    {"uplot.min.js", "uPlot.iife.min.js", JS},
    {"uplot.min.css", "uPlot.min.css", CSS},
};

/* The index of service name, or -1. */
static long find_service(const web_server *s, const char *name)
{
    for (size_t i = 0; i < s->w.cfg->n_services; i++)
        if (strcmp(s->w.cfg->services[i].name, name) == 0) return (long)i;
    return -1;
}

static int no_service(struct mg_connection *conn, const web_server *s, const char *name)
{
    char msg[600];
    int used = snprintf(msg, sizeof msg, "no service '%.64s'; the services are: ", name);
    for (size_t i = 0; i < s->w.cfg->n_services && used > 0 && (size_t)used < sizeof msg; i++)
        used += snprintf(msg + used, sizeof msg - (size_t)used, "%s%s", i ? ", " : "",
                         s->w.cfg->services[i].name);
    return web_reply_error(conn, 404, SHMRPC_ENOENT, msg);
}

/* The integer ?name= of the query: 0 when absent, 1 when read into *v (clamped to
 * lo..hi), -1 when it is not an integer. */
static int query_int(const struct mg_request_info *ri, const char *name, long long lo, long long hi,
                     long long *v)
{
    char text[32];
    if (!ri->query_string) return 0;
    int n = mg_get_var(ri->query_string, strlen(ri->query_string), name, text, sizeof text);
    if (n == -1) return 0;
    if (n < 0) return -1;
    char *end;
    long long x = strtoll(text, &end, 10); /* past long long: its bound, then clamped */
    if (end == text || *end) return -1;
    *v = x < lo ? lo : x > hi ? hi : x;
    return 1;
}

/* The ?name= of the query as an unsigned 64-bit decimal (an inode, which may pass
 * 2^63): 0 when absent, 1 when read into *v, -1 when it is not such a number. */
static int query_u64(const struct mg_request_info *ri, const char *name, uint64_t *v)
{
    char text[32];
    if (!ri->query_string) return 0;
    int n = mg_get_var(ri->query_string, strlen(ri->query_string), name, text, sizeof text);
    if (n == -1) return 0;
    if (n <= 0 || strspn(text, "0123456789") != (size_t)n) return -1; /* no sign, no blank */
    char *end;
    errno = 0;
    unsigned long long x = strtoull(text, &end, 10);
    if (errno == ERANGE || *end) return -1;
    *v = (uint64_t)x;
    return 1;
}

static int bad_query(struct mg_connection *conn, const char *name)
{
    char msg[96];
    snprintf(msg, sizeof msg, "?%s= takes an integer", name);
    return web_reply_error(conn, 400, SHMRPC_EINVAL, msg);
}

/* GET /api/services/NAME/series[?since=T_MS][&span_s=S][&step=S][&max=N] */
static int get_series(struct mg_connection *conn, const web_server *s, size_t i)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    long long since = INT64_MIN, span = 0, step = 0, max = WEB_SERIES_DEFAULT;
    if (query_int(ri, "since", INT64_MIN, INT64_MAX, &since) < 0) return bad_query(conn, "since");
    /* The last span_s seconds by this host's clock, which stamped the samples. */
    if (query_int(ri, "span_s", 1, INT32_MAX, &span) < 0) return bad_query(conn, "span_s");
    if (query_int(ri, "step", 1, WEB_SERIES_STEP_MAX, &step) < 0) return bad_query(conn, "step");
    if (query_int(ri, "max", 1, WEB_SERIES_MAX, &max) < 0) return bad_query(conn, "max");
    if (span > 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        long long from = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 - span * 1000;
        if (from > since) since = from;
    }
    web_series_req q = {.since = since, .max = (int)max, .step_ms = step * 1000};
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    web_err e;
    int r = web_series(&s->w.cfg->services[i], &q, &b, &e) == 0
                ? web_reply_json(conn, 200, &b)
                : web_reply_err(conn, &e);
    shmrpc_buf_destroy(&b);
    return r;
}

/* GET /api/services/NAME/log[?after=OFFSET[&inode=INO]][&max_bytes=N] */
static int get_log(struct mg_connection *conn, const web_server *s, size_t i)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    long long after = 0, max_bytes = (long long)WEB_LOG_DEFAULT_BYTES;
    uint64_t inode = 0;
    int follow = query_int(ri, "after", 0, INT64_MAX, &after);
    if (follow < 0) return bad_query(conn, "after");
    if (query_u64(ri, "inode", &inode) < 0)
        return web_reply_error(conn, 400, SHMRPC_EINVAL,
                               "?inode= takes the decimal digits of an inode number");
    if (query_int(ri, "max_bytes", 1, (long long)WEB_LOG_MAX_BYTES, &max_bytes) < 0)
        return bad_query(conn, "max_bytes");
    web_log_req q = {
        .follow = follow == 1, .after = after, .inode = inode, .max_bytes = (size_t)max_bytes};
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    web_err e;
    int r = web_log(&s->w.cfg->services[i], &q, &b, &e) == 0 ? web_reply_json(conn, 200, &b)
                                                             : web_reply_err(conn, &e);
    shmrpc_buf_destroy(&b);
    return r;
}

/* The path's segments, split at '/', in place; how many (at most max). */
static int split(char *path, char **segs, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *p = strtok_r(path, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
        if (n == max) return max + 1;
        segs[n++] = p;
    }
    return n;
}

static int handle_get(struct mg_connection *conn, web_server *s, const char *uri, char **seg, int n)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    shmrpc_buf b;
    web_err e;
    int rc = 0, status = 200;
    shmrpc_buf_init(&b);
    if (strcmp(uri, "/") == 0 || strcmp(uri, "/index.html") == 0)
        return web_page(conn, s, "index.html", NULL);
    for (size_t k = 0; n == 1 && k < sizeof static_files / sizeof static_files[0]; k++) {
        if (strcmp(seg[0], static_files[k].path) != 0) continue;
        const char *text = shmrpc__embedded_text(web_assets, static_files[k].file);
        if (!text) return web_reply_error(conn, 404, SHMRPC_ENOENT, "no such asset");
        return web_reply(conn, 200, static_files[k].type, text, strlen(text));
    }
    if (n == 2 && strcmp(seg[0], "services") == 0) {
        if (find_service(s, seg[1]) < 0) return no_service(conn, s, seg[1]);
        return web_page(conn, s, "service.html", seg[1]);
    }
    if (n == 4 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "services") == 0 &&
        (strcmp(seg[3], "series") == 0 || strcmp(seg[3], "log") == 0)) {
        long i = find_service(s, seg[2]);
        if (i < 0) return no_service(conn, s, seg[2]);
        return seg[3][0] == 's' ? get_series(conn, s, (size_t)i) : get_log(conn, s, (size_t)i);
    }
    if (n == 1 && strcmp(seg[0], "metrics") == 0) {
        rc = web_view_metrics(&s->w, &b, &e);
        if (!rc && s->auth) web_login_metrics(s->auth, &b);
        if (!rc)
            status =
                web_reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    } else if (n == 2 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "token") == 0) {
        char text[64];
        int len = snprintf(text, sizeof text, "{\"token\":\"%s\"}", s->w.token);
        return web_reply(conn, 200, "application/json; charset=utf-8", text, (size_t)len);
    } else if (n == 2 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "services") == 0) {
        rc = web_view_services(&s->w, &b, &e);
        if (!rc) status = web_reply_json(conn, 200, &b);
    } else if (n == 3 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "services") == 0) {
        long i = find_service(s, seg[2]);
        if (i < 0) return no_service(conn, s, seg[2]);
        long long lines = DEFAULT_LOG_LINES;
        if (query_int(ri, "lines", 0, MAX_LOG_LINES, &lines) < 0) return bad_query(conn, "lines");
        rc = web_view_service(&s->w, (size_t)i, (int)lines, &b, &e);
        if (!rc) status = web_reply_json(conn, 200, &b);
    } else {
        return web_reply_error(conn, 404, SHMRPC_ENOENT, "no such page");
    }
    if (rc) status = web_reply_err(conn, &e);
    shmrpc_buf_destroy(&b);
    return status;
}

/* POST /api/services/NAME/{start,stop,restart,scale}, NAME one of the services (handle_post
 * found it): the control service's answer. */
static int handle_action(struct mg_connection *conn, web_server *s, const char *name,
                         const char *action, const char *body, size_t len)
{
    char args[160];
    if (strcmp(action, "scale") == 0) {
        /* {"workers": N}, [N] or N */
        json_t *v = json_loadb(body, len, JSON_DECODE_ANY, NULL);
        json_t *w = json_is_object(v)  ? json_object_get(v, "workers")
                    : json_is_array(v) ? json_array_get(v, 0)
                                       : v;
        bool ok =
            json_is_integer(w) && json_integer_value(w) >= 0 && json_integer_value(w) <= UINT32_MAX;
        long long n = ok ? (long long)json_integer_value(w) : 0;
        json_decref(v);
        if (!ok)
            return web_reply_error(conn, 400, SHMRPC_EINVAL,
                                   "scale takes {\"workers\": N}, a count of workers");
        snprintf(args, sizeof args, "[\"%s\",%lld]", name, n);
    } else if (strcmp(action, "start") == 0 || strcmp(action, "stop") == 0 ||
               strcmp(action, "restart") == 0) {
        snprintf(args, sizeof args, "[\"%s\"]", name);
    } else {
        return web_reply_error(conn, 404, SHMRPC_ENOENT,
                               "no such action: start, stop, restart and scale are");
    }
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    web_err e;
    int r = web_call(&s->w.control, action, args, strlen(args), WEB_CONTROL_TIMEOUT_MS, &b, &e) == 0
                ? web_reply_json(conn, 200, &b)
                : web_reply_err(conn, &e);
    shmrpc_buf_destroy(&b);
    return r;
}

static int handle_post(struct mg_connection *conn, web_server *s, char **seg, int n)
{
    if (!web_token_ok(s, mg_get_header(conn, "X-Shmrpc-Token")))
        return web_reply_error(conn, 403, SHMRPC_EPERM,
                               "a POST needs the page's token in the X-Shmrpc-Token header "
                               "(GET /api/token)");
    if (s->auth && n == 1 && strcmp(seg[0], "logout") == 0) return web_post_logout(conn, s);
    bool action = n == 4 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "services") == 0;
    bool gateway = n == 3 && strcmp(seg[0], "api") == 0;
    if (!action && !gateway) return web_reply_error(conn, 404, SHMRPC_ENOENT, "no such page");
    long i = find_service(s, seg[action ? 2 : 1]);
    if (i < 0) return no_service(conn, s, seg[action ? 2 : 1]);
    char *body;
    size_t len;
    int bad = web_read_body(conn, s, &body, &len);
    if (bad)
        return web_reply_error(conn, bad, web_body_error(bad),
                               web_body_why(bad, "the body is too large (8 MiB at most)"));
    /* Before any parser sees it: jansson recurses once a level, on a 100 KiB stack. */
    if (shmrpc_json_check_depth(body, len, SHMRPC_JSON_MAX_DEPTH) != 0) {
        web_free_body(s, body, len);
        char msg[96];
        snprintf(msg, sizeof msg, "the body's JSON nests more than %u deep", SHMRPC_JSON_MAX_DEPTH);
        return web_reply_error(conn, 400, SHMRPC_EINVAL, msg);
    }
    int r;
    if (action) {
        r = handle_action(conn, s, seg[2], seg[3], body, len);
    } else {
        /* The JSON gateway: no body is no arguments. */
        size_t blank = 0;
        while (blank < len && strchr(" \t\r\n", body[blank]))
            blank++;
        shmrpc_buf b;
        shmrpc_buf_init(&b);
        web_err e;
        const char *args = blank == len ? "[]" : body;
        size_t alen = blank == len ? 2 : len;
        r = web_call(&s->w.svc[i], seg[2], args, alen, GATEWAY_TIMEOUT_MS, &b, &e) == 0
                ? web_reply_json(conn, 200, &b)
                : web_reply_err(conn, &e);
        shmrpc_buf_destroy(&b);
    }
    web_free_body(s, body, len);
    return r;
}

int web_handle(struct mg_connection *conn, void *data)
{
    web_server *s = data;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (atomic_load(&s->closing))
        return web_reply_error(conn, 503, SHMRPC_EUNAVAIL, "the supervisor is exiting");
    const char *m = ri->request_method;
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
    int refused = web_headers_ok(conn, get);
    if (refused) return refused;
    if (!web_host_ok(s, mg_get_header(conn, "Host")))
        return web_reply_error(conn, 403, SHMRPC_EPERM,
                               s->any_ip_host
                                   ? "the page answers to a numeric address or a loopback "
                                     "host name only, not to a DNS name"
                                   : "the page answers to a loopback host name only "
                                     "(localhost, 127.x.y.z, [::1])");
    const char *uri = ri->local_uri ? ri->local_uri : "/";
    char path[1024], *seg[8];
    if (strlen(uri) >= sizeof path)
        return web_reply_error(conn, 404, SHMRPC_ENOENT, "no such page");
    strcpy(path, uri);
    int n = split(path, seg, 6);
    /* The probes are anyone's, as an orchestrator's probe carries no session: they say
     * live or ready and which services are not, nothing more (docs/web.md). */
    if (get && n == 1 && (strcmp(seg[0], "healthz") == 0 || strcmp(seg[0], "readyz") == 0)) {
        shmrpc_buf b;
        shmrpc_buf_init(&b);
        int ok = seg[0][0] == 'h' ? web_view_live(&s->w, &b) : web_view_ready(&s->w, &b);
        int r = web_reply_json(conn, ok ? 200 : 503, &b);
        shmrpc_buf_destroy(&b);
        return r;
    }
    if (s->auth) {
        int answered = web_login_gate(conn, s, uri, seg, n, get, post);
        if (answered) return answered;
    }
    if (get) return handle_get(conn, s, uri, seg, n);
    if (post) return handle_post(conn, s, seg, n);
    return web_reply_error(conn, 405, SHMRPC_EINVAL, "GET, HEAD and POST only");
}
