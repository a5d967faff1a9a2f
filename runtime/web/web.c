/* SPDX-License-Identifier: MIT */
/* The management page's HTTP server (web.h, docs/web.md): starts civetweb on threads of
 * its own (128), with one catch-all handler that routes every request (web_route.c), and
 * stops it. Handlers never touch the supervisor's state (the main loop's): what they need
 * of it they ask the supervisor's control service, as shmrpcctl does, through a pool of
 * clients (web_call.c), and the control service hands each request to the main loop
 * (sup_control.c). The rest comes from shared memory, /proc and files (web_view.c). POSTs
 * carry a token generated here at start; what a request must be (its headers, its Host,
 * its body) is web_request.c's, the login web_login.c's (web_auth.c), the answers
 * web_reply.c's. What a request or a peer may hold is bounded (docs/web.md, "Limits"),
 * and bodies and answers have deadlines (web_guard.c). */
#include "web.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "web_server.h"

/* civetweb's worker threads, each serving one connection at a time from its headers to
 * its close: idle and slow peers hold one each (docs/web.md, "Limits"). As many as the
 * guard has deadlines, since each thread arms one at a time. */
#define WEB_THREADS WEB_GUARD_SLOTS
/* How long civetweb waits for a request's headers, all of them, and for each byte of a
 * body or each write of an answer. */
#define REQUEST_TIMEOUT_MS 5000

static int quiet(const struct mg_connection *conn, const char *message)
{
    (void)conn, (void)message;
    return 1; /* civetweb's own messages go nowhere: its threads may not write the log */
}

static void free_web(web_server *s)
{
    if (s->w.svc)
        for (size_t i = 0; i < s->w.cfg->n_services; i++)
            web_pool_destroy(&s->w.svc[i]);
    free(s->w.svc);
    web_pool_destroy(&s->w.control);
    web_guard_stop(s->guard);
    if (s->auth) web_auth_destroy(s->auth);
    free(s->auth);
    free(s);
}

/* 127.x.y.z, ::1, ::ffff:127.x.y.z or localhost, as config_parse.c has it. */
static bool is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(host, "localhost") == 0) return true;
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) != 1) return false;
    return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
}

void web_logf(const web_logger *log, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (log) {
        log->vlogf(log->arg, fmt, ap);
    } else {
        /* One write: the keeper's and the page's lines share one pipe. */
        char *line = NULL;
        if (vasprintf(&line, fmt, ap) < 0) line = NULL;
        fprintf(stderr, "shmrpc-service: %s\n", line ? line : "web monitor: out of memory");
        free(line);
    }
    va_end(ap);
}

web_server *web_start(const cfg_file *c, const char *control_addr, pid_t supervisor,
                      const web_logger *log, char *err, size_t cap)
{
    const char *host = c->web_host ? c->web_host : "127.0.0.1";
    int port = c->web_port ? c->web_port : 5155;
    char ports[128], bare[64]; /* bare: host without brackets */
    snprintf(bare, sizeof bare, "%.*s", (int)strcspn(host + (host[0] == '['), "]"),
             host + (host[0] == '['));
    bool v6 = strchr(host, ':') != NULL;
    if (strcasecmp(host, "localhost") == 0)
        snprintf(ports, sizeof ports, "127.0.0.1:%d", port);
    else if (v6)
        snprintf(ports, sizeof ports, "%s%s%s:%d", host[0] == '[' ? "" : "[", host,
                 host[0] == '[' ? "" : "]", port);
    else
        snprintf(ports, sizeof ports, "%s:%d", host, port);
    web_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    s->w.cfg = c;
    s->w.supervisor = supervisor;
    web_pool_init(&s->w.control, control_addr);
    s->w.svc = calloc(c->n_services ? c->n_services : 1, sizeof *s->w.svc);
    if (!s->w.svc) {
        snprintf(err, cap, "out of memory");
        free_web(s);
        return NULL;
    }
    for (size_t i = 0; i < c->n_services; i++) {
        char addr[128];
        web_service_address(&c->services[i], addr, sizeof addr);
        web_pool_init(&s->w.svc[i], addr);
    }
    /* config_check.c refuses this already; the page does not rely on it. */
    s->any_ip_host = !is_loopback(bare);
    if (s->any_ip_host && !c->web_secret_file) {
        snprintf(err, cap, "%s is not a loopback address and there is no secret_file", host);
        free_web(s);
        return NULL;
    }
    if (c->web_secret_file) {
        char msg[512] = "out of memory";
        s->auth = malloc(sizeof *s->auth);
        int rc =
            s->auth ? web_auth_init(s->auth, c->web_secret_file, msg, sizeof msg) : SHMRPC_ENOMEM;
        if (rc) {
            snprintf(err, cap, "cannot read its secret: %s", msg);
            free_web(s);
            return NULL;
        }
        snprintf(s->cookie, sizeof s->cookie, "shmrpc_session_%d", port);
    }
    int token_rc = web_random_hex(s->w.token, (sizeof s->w.token - 1) / 2);
    if (token_rc != 0) {
        snprintf(err, cap, "no random bytes for its token: %s", shmrpc_strerror(token_rc));
        free_web(s);
        return NULL;
    }
    if (v6 && !mg_check_feature(8)) {
        snprintf(err, cap, "cannot listen on %s: this civetweb has no IPv6", ports);
        free_web(s);
        return NULL;
    }
    json_object_seed(0); /* jansson's hash seed, before its first use on several threads */
    s->guard = web_guard_start(port);
    if (!s->guard) web_logf(log, "web monitor: no thread for its deadlines; running without them");
    mg_init_library(0);
    struct mg_callbacks cb = {.log_message = quiet, .connection_close = web_on_close};
    /* docs/web.md, "Limits". No linger_timeout_ms: a close never waits for a peer. */
    char threads[16], timeout[16];
    snprintf(threads, sizeof threads, "%d", WEB_THREADS);
    snprintf(timeout, sizeof timeout, "%d", REQUEST_TIMEOUT_MS);
    const char *options[] = {"listening_ports",
                             ports,
                             "num_threads",
                             threads,
                             "request_timeout_ms",
                             timeout,
                             "enable_keep_alive",
                             "no",
                             "connection_queue",
                             "64",
                             "listen_backlog",
                             "256",
                             NULL};
    char why[256] = "";
    unsigned code = 0;
    struct mg_init_data init = {.callbacks = &cb, .user_data = s, .configuration_options = options};
    struct mg_error_data mg_err = {.code = &code, .text = why, .text_buffer_size = sizeof why};
    s->mg = mg_start2(&init, &mg_err);
    if (!s->mg) {
        snprintf(err, cap, "cannot listen on %s: %s", ports, *why ? why : "civetweb did not start");
        mg_exit_library();
        free_web(s);
        return NULL;
    }
    mg_set_request_handler(s->mg, "/", web_handle, s);
    /* GCOVR_EXCL_START: unreachable: Debian 12's civetweb has no IPv6, so web_start refused
     * an IPv6 host above (web_gateway_test's test_ipv6_page); a civetweb with IPv6 runs it */
    if (strchr(ports, '[')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s->listen;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, bare, &a->sin6_addr) != 1) a->sin6_addr = in6addr_loopback;
        s->listen_len = sizeof *a;
    } else {
        /* GCOVR_EXCL_STOP */
        struct sockaddr_in *a = (struct sockaddr_in *)&s->listen;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        char ip[64];
        snprintf(ip, sizeof ip, "%.*s", (int)strcspn(ports, ":"), ports);
        if (inet_pton(AF_INET, ip, &a->sin_addr) != 1) a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s->listen_len = sizeof *a;
    }
    if (s->auth)
        web_logf(log, "web monitor at http://%s/ (the secret of %s required)", ports,
                 c->web_secret_file);
    else
        web_logf(log, "web monitor at http://%s/", ports);
    return s;
}

/* civetweb's listening thread looks at its stop flag between polls of up to 2 s; a
 * connection to the port wakes it, so mg_stop returns in milliseconds. */
static void *poke(void *arg)
{
    web_server *s = arg;
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

void web_stop(web_server *s)
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
