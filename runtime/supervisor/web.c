/* The management page's HTTP side (web.h, docs/web.md): civetweb serves on a few threads
 * of its own, and one catch-all handler routes every request. Handlers never touch the
 * supervisor's state (the main loop's): what they need of it they ask the supervisor's
 * control service, as shmrpcctl does, through a pool of clients (web_call.c), and the
 * control service hands each request to the main loop (control.c). The rest comes from
 * shared memory, /proc and files (web_view.c). POSTs carry a token generated at start;
 * every request's Host must be a loopback name, against DNS rebinding. */
#include "web.h"

#include <civetweb.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "web_call.h"
#include "web_view.h"

/* The largest body a POST may carry. */
#define MAX_BODY ((size_t)8 << 20)
/* The gateway's deadline per call. */
#define GATEWAY_TIMEOUT_MS 5000
/* Log lines in GET /api/services/NAME unless ?lines= says (at most 1000). */
#define DEFAULT_LOG_LINES 100

/* The static assets (web/), embedded by cmake/embed.cmake; its symbols are renamed for
 * this program in CMakeLists.txt. */
typedef struct template_file {
    const char *name;
    const char *text;
} template_file;
extern const template_file sup_web_assets[];
extern const size_t sup_web_n_assets;

struct sup_web {
    struct mg_context *mg;
    web_ctx w;
    atomic_bool closing;
    atomic_bool stopped;            /* mg_stop returned: the poker may end */
    struct sockaddr_storage listen; /* where it listens, for the poker */
    socklen_t listen_len;
};

/* --- responses ------------------------------------------------------------------------ */

static int reply(struct mg_connection *conn, int status, const char *ctype, const void *body,
                 size_t n)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    bool head = strcmp(ri->request_method, "HEAD") == 0;
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\n"
              "Content-Type: %s\r\n"
              "Content-Length: %zu\r\n"
              "Cache-Control: no-store\r\n"
              "X-Content-Type-Options: nosniff\r\n"
              "X-Frame-Options: DENY\r\n"
              "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'\r\n"
              "Referrer-Policy: no-referrer\r\n"
              "Connection: close\r\n\r\n",
              status, mg_get_response_code_text(conn, status), ctype, n);
    if (!head && n) mg_write(conn, body, n);
    return status;
}

static int reply_json(struct mg_connection *conn, int status, const shmrpc_buf *b)
{
    return reply(conn, status, "application/json; charset=utf-8", b->data, b->len);
}

/* {"error": {"status": "SHMRPC_E...", "code": rc, "message": "..."}} */
static int reply_error(struct mg_connection *conn, int http, int rc, const char *msg)
{
    json_t *o = json_pack("{s:{s:s,s:i,s:s}}", "error", "status", web_status_name(rc), "code", rc,
                          "message", msg);
    if (!o)
        o = json_pack("{s:{s:s,s:i,s:s}}", "error", "status", web_status_name(rc), "code", rc,
                      "message", "(a message that is not UTF-8)");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    int r = reply(conn, http, "application/json; charset=utf-8", text ? text : "{}",
                  text ? strlen(text) : 2);
    free(text);
    return r;
}

static int reply_err(struct mg_connection *conn, const web_err *e)
{
    return reply_error(conn, e->http, e->rc, e->msg);
}

/* --- requests ------------------------------------------------------------------------- */

static const template_file *asset(const char *name)
{
    for (size_t i = 0; i < sup_web_n_assets; i++)
        if (strcmp(sup_web_assets[i].name, name) == 0) return &sup_web_assets[i];
    return NULL;
}

/* Whether the Host header names this page by a loopback name: a page of another site
 * that a DNS name rebound to 127.0.0.1 sends its own name, and is refused. */
static bool host_ok(const sup_web *s, const char *host)
{
    if (!host) return true; /* HTTP/1.0 without one: not a browser */
    char name[256];
    size_t n = 0;
    if (host[0] == '[') {
        const char *end = strchr(host, ']');
        if (!end || (size_t)(end - host - 1) >= sizeof name) return false;
        n = (size_t)(end - host - 1);
        memcpy(name, host + 1, n);
    } else {
        while (host[n] && host[n] != ':' && n < sizeof name - 1) {
            name[n] = host[n];
            n++;
        }
    }
    name[n] = '\0';
    if (strcasecmp(name, "localhost") == 0 || strcmp(name, "::1") == 0) return true;
    const char *h = s->w.cfg->web_host;
    if (h && (strcasecmp(name, h) == 0 ||
              (h[0] == '[' && strlen(h) == n + 2 && strncmp(h + 1, name, n) == 0)))
        return true;
    if (strncmp(name, "127.", 4) != 0) return false;
    for (const char *p = name; *p; p++)
        if ((*p < '0' || *p > '9') && *p != '.') return false;
    return true;
}

/* Compares the token in constant time. */
static bool token_ok(const sup_web *s, const char *given)
{
    if (!given || strlen(given) != strlen(s->w.token)) return false;
    unsigned char diff = 0;
    for (size_t i = 0; given[i]; i++)
        diff |= (unsigned char)(given[i] ^ s->w.token[i]);
    return diff == 0;
}

/* The body, NUL-terminated, in *out (free it); 0, or an HTTP status. */
static int read_body(struct mg_connection *conn, char **out, size_t *len)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    *out = NULL;
    *len = 0;
    if (ri->content_length > (long long)MAX_BODY) return 413;
    size_t cap = ri->content_length > 0 ? (size_t)ri->content_length + 1 : 4096, n = 0;
    char *p = malloc(cap);
    if (!p) return 500;
    for (;;) {
        if (n + 1 >= cap) {
            char *q = cap <= MAX_BODY ? realloc(p, cap * 2) : NULL;
            if (!q) {
                free(p);
                return cap > MAX_BODY ? 413 : 500;
            }
            p = q, cap *= 2;
        }
        int r = mg_read(conn, p + n, cap - n - 1);
        if (r <= 0) break;
        n += (size_t)r;
        if (n > MAX_BODY) {
            free(p);
            return 413;
        }
    }
    p[n] = '\0';
    *out = p;
    *len = n;
    return 0;
}

/* The index of service name, or -1. */
static long find_service(const sup_web *s, const char *name)
{
    for (size_t i = 0; i < s->w.cfg->n_services; i++)
        if (strcmp(s->w.cfg->services[i].name, name) == 0) return (long)i;
    return -1;
}

static int no_service(struct mg_connection *conn, const sup_web *s, const char *name)
{
    char msg[600];
    int used = snprintf(msg, sizeof msg, "no service '%.64s'; the services are: ", name);
    for (size_t i = 0; i < s->w.cfg->n_services && used > 0 && (size_t)used < sizeof msg; i++)
        used += snprintf(msg + used, sizeof msg - (size_t)used, "%s%s", i ? ", " : "",
                         s->w.cfg->services[i].name);
    return reply_error(conn, 404, SHMRPC_ENOENT, msg);
}

static int get_index(struct mg_connection *conn, const sup_web *s)
{
    const template_file *f = asset("index.html");
    if (!f) return reply_error(conn, 500, SHMRPC_ENOENT, "index.html is missing");
    /* The token goes into the page at {{TOKEN}}, for its script to send with POSTs. */
    const char *at = strstr(f->text, "{{TOKEN}}");
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    if (at) {
        shmrpc_buf_append(&b, f->text, (size_t)(at - f->text));
        shmrpc_buf_append(&b, s->w.token, strlen(s->w.token));
        shmrpc_buf_append(&b, at + 9, strlen(at + 9));
    } else {
        shmrpc_buf_append(&b, f->text, strlen(f->text));
    }
    int r = reply(conn, 200, "text/html; charset=utf-8", b.data, b.len);
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

static int handle_get(struct mg_connection *conn, sup_web *s, const char *uri, char **seg, int n)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    shmrpc_buf b;
    web_err e;
    int rc = 0, status = 200;
    shmrpc_buf_init(&b);
    if (strcmp(uri, "/") == 0 || strcmp(uri, "/index.html") == 0) return get_index(conn, s);
    if (n == 1 && (strcmp(seg[0], "app.js") == 0 || strcmp(seg[0], "style.css") == 0)) {
        const template_file *f = asset(seg[0]);
        if (!f) return reply_error(conn, 404, SHMRPC_ENOENT, "no such asset");
        return reply(conn, 200,
                     seg[0][0] == 'a' ? "text/javascript; charset=utf-8"
                                      : "text/css; charset=utf-8",
                     f->text, strlen(f->text));
    }
    if (n == 1 && strcmp(seg[0], "metrics") == 0) {
        rc = web_view_metrics(&s->w, &b, &e);
        if (!rc)
            status = reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    } else if (n == 2 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "token") == 0) {
        char text[64];
        int len = snprintf(text, sizeof text, "{\"token\":\"%s\"}", s->w.token);
        return reply(conn, 200, "application/json; charset=utf-8", text, (size_t)len);
    } else if (n == 2 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "services") == 0) {
        rc = web_view_services(&s->w, &b, &e);
        if (!rc) status = reply_json(conn, 200, &b);
    } else if (n == 3 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "services") == 0) {
        long i = find_service(s, seg[2]);
        if (i < 0) return no_service(conn, s, seg[2]);
        char v[16];
        int lines = DEFAULT_LOG_LINES;
        if (ri->query_string &&
            mg_get_var(ri->query_string, strlen(ri->query_string), "lines", v, sizeof v) > 0) {
            lines = atoi(v);
            lines = lines < 0 ? 0 : lines > 1000 ? 1000 : lines;
        }
        rc = web_view_service(&s->w, (size_t)i, lines, &b, &e);
        if (!rc) status = reply_json(conn, 200, &b);
    } else {
        return reply_error(conn, 404, SHMRPC_ENOENT, "no such page");
    }
    if (rc) status = reply_err(conn, &e);
    shmrpc_buf_destroy(&b);
    return status;
}

/* POST /api/services/NAME/{start,stop,restart,scale}: the control service's answer. */
static int handle_action(struct mg_connection *conn, sup_web *s, const char *name,
                         const char *action, const char *body, size_t len)
{
    if (find_service(s, name) < 0) return no_service(conn, s, name);
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
            return reply_error(conn, 400, SHMRPC_EINVAL,
                               "scale takes {\"workers\": N}, a count of workers");
        snprintf(args, sizeof args, "[\"%s\",%lld]", name, n);
    } else if (strcmp(action, "start") == 0 || strcmp(action, "stop") == 0 ||
               strcmp(action, "restart") == 0) {
        snprintf(args, sizeof args, "[\"%s\"]", name);
    } else {
        return reply_error(conn, 404, SHMRPC_ENOENT,
                           "no such action: start, stop, restart and scale are");
    }
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    web_err e;
    int r = web_call(&s->w.control, action, args, strlen(args), WEB_CONTROL_TIMEOUT_MS, &b, &e) == 0
                ? reply_json(conn, 200, &b)
                : reply_err(conn, &e);
    shmrpc_buf_destroy(&b);
    return r;
}

static int handle_post(struct mg_connection *conn, sup_web *s, char **seg, int n)
{
    if (!token_ok(s, mg_get_header(conn, "X-Shmrpc-Token")))
        return reply_error(conn, 403, SHMRPC_EPERM,
                           "a POST needs the page's token in the X-Shmrpc-Token header "
                           "(GET /api/token)");
    bool action = n == 4 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "services") == 0;
    bool gateway = n == 3 && strcmp(seg[0], "api") == 0;
    if (!action && !gateway) return reply_error(conn, 404, SHMRPC_ENOENT, "no such page");
    long i = find_service(s, seg[action ? 2 : 1]);
    if (i < 0) return no_service(conn, s, seg[action ? 2 : 1]);
    char *body;
    size_t len;
    int bad = read_body(conn, &body, &len);
    if (bad)
        return reply_error(conn, bad, bad == 413 ? SHMRPC_ETOOBIG : SHMRPC_ENOMEM,
                           bad == 413 ? "the body is too large (8 MiB at most)" : "out of memory");
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
                ? reply_json(conn, 200, &b)
                : reply_err(conn, &e);
        shmrpc_buf_destroy(&b);
    }
    free(body);
    return r;
}

static int handle(struct mg_connection *conn, void *data)
{
    sup_web *s = data;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (atomic_load(&s->closing))
        return reply_error(conn, 503, SHMRPC_EUNAVAIL, "the supervisor is exiting");
    if (!host_ok(s, mg_get_header(conn, "Host")))
        return reply_error(conn, 403, SHMRPC_EPERM,
                           "the page answers to a loopback host name only (localhost, 127.x.y.z, "
                           "[::1])");
    const char *uri = ri->local_uri ? ri->local_uri : "/";
    char path[1024], *seg[8];
    if (strlen(uri) >= sizeof path) return reply_error(conn, 404, SHMRPC_ENOENT, "no such page");
    strcpy(path, uri);
    int n = split(path, seg, 6);
    const char *m = ri->request_method;
    if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0) return handle_get(conn, s, uri, seg, n);
    if (strcmp(m, "POST") == 0) return handle_post(conn, s, seg, n);
    return reply_error(conn, 405, SHMRPC_EINVAL, "GET, HEAD and POST only");
}

static int quiet(const struct mg_connection *conn, const char *message)
{
    (void)conn, (void)message;
    return 1; /* civetweb's own messages go nowhere: its threads may not write the log */
}

/* --- start and stop ------------------------------------------------------------------- */

static int make_token(char out[33])
{
    unsigned char r[16];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
    return 0;
}

static void free_web(sup_web *s)
{
    if (s->w.svc)
        for (size_t i = 0; i < s->w.cfg->n_services; i++)
            web_pool_destroy(&s->w.svc[i]);
    free(s->w.svc);
    web_pool_destroy(&s->w.control);
    free(s);
}

sup_web *sup_web_start(const shmrpc__config *c, const char *control_addr, const sup_ctx *ctx)
{
    const char *host = c->web_host ? c->web_host : "127.0.0.1";
    int port = c->web_port ? c->web_port : 5155;
    char ports[128];
    bool v6 = strchr(host, ':') != NULL;
    if (strcasecmp(host, "localhost") == 0)
        snprintf(ports, sizeof ports, "127.0.0.1:%d", port);
    else if (v6)
        snprintf(ports, sizeof ports, "%s%s%s:%d", host[0] == '[' ? "" : "[", host,
                 host[0] == '[' ? "" : "]", port);
    else
        snprintf(ports, sizeof ports, "%s:%d", host, port);
    sup_web *s = calloc(1, sizeof *s);
    if (!s) {
        sup_logf(ctx, "web monitor: out of memory");
        return NULL;
    }
    s->w.cfg = c;
    web_pool_init(&s->w.control, control_addr);
    s->w.svc = calloc(c->n_services ? c->n_services : 1, sizeof *s->w.svc);
    if (!s->w.svc) {
        sup_logf(ctx, "web monitor: out of memory");
        free_web(s);
        return NULL;
    }
    for (size_t i = 0; i < c->n_services; i++) {
        char addr[128];
        web_service_address(&c->services[i], addr, sizeof addr);
        web_pool_init(&s->w.svc[i], addr);
    }
    if (make_token(s->w.token) != 0) {
        sup_logf(ctx, "web monitor: no random bytes for its token: %s", strerror(errno));
        free_web(s);
        return NULL;
    }
    if (v6 && !mg_check_feature(8)) {
        sup_logf(ctx, "web monitor: cannot listen on %s: this civetweb has no IPv6", ports);
        free_web(s);
        return NULL;
    }
    json_object_seed(0); /* jansson's hash seed, before its first use on several threads */
    mg_init_library(0);
    struct mg_callbacks cb = {.log_message = quiet};
    const char *options[] = {
        "listening_ports",   ports, "num_threads", "4", "request_timeout_ms", "10000",
        "enable_keep_alive", "no",  NULL};
    char why[256] = "";
    unsigned code = 0;
    struct mg_init_data init = {.callbacks = &cb, .user_data = s, .configuration_options = options};
    struct mg_error_data err = {.code = &code, .text = why, .text_buffer_size = sizeof why};
    s->mg = mg_start2(&init, &err);
    if (!s->mg) {
        sup_logf(ctx, "web monitor: cannot listen on %s: %s; running without the page", ports,
                 *why ? why : "civetweb did not start");
        mg_exit_library();
        free_web(s);
        return NULL;
    }
    mg_set_request_handler(s->mg, "/", handle, s);
    if (strchr(ports, '[')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s->listen;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        s->listen_len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&s->listen;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        char ip[64];
        snprintf(ip, sizeof ip, "%.*s", (int)strcspn(ports, ":"), ports);
        if (inet_pton(AF_INET, ip, &a->sin_addr) != 1) a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s->listen_len = sizeof *a;
    }
    sup_logf(ctx, "web monitor at http://%s/", ports);
    return s;
}

/* civetweb's listening thread looks at its stop flag between polls of up to 2 s; a
 * connection to the port wakes it, so mg_stop returns in milliseconds. */
static void *poke(void *arg)
{
    sup_web *s = arg;
    while (!atomic_load(&s->stopped)) {
        int fd = socket(s->listen.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd >= 0) {
            (void)connect(fd, (struct sockaddr *)&s->listen, s->listen_len);
            close(fd);
        }
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

void sup_web_stop(sup_web *s)
{
    if (!s) return;
    atomic_store(&s->closing, true);
    pthread_t poker;
    bool poking = pthread_create(&poker, NULL, poke, s) == 0;
    mg_stop(s->mg); /* joins its threads: each request ends within its call's timeout */
    atomic_store(&s->stopped, true);
    if (poking) pthread_join(poker, NULL);
    mg_exit_library();
    free_web(s);
}
