/* The management page with real processes and real HTTP over loopback: shmrpc-service
 * runs echo-server; a small HTTP client here checks every endpoint's status, content type
 * and body, /metrics line by line, the JSON gateway against shmrpcctl call for every echo
 * method and for bad input, the token on POSTs, stop and start, and SIGTERM freeing the
 * port. Every wait is bounded; the group teardown removes what a failure left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "procs.h"
#include "sup_helpers.h"

static struct {
    char dir[64];
    char ini[128];
    char shm[48];
    char addr[64]; /* shm://SHM */
    char control[96];
    int port;
    pid_t sup;
    sup_groups groups; /* at most 16 */
    char token[64];
    long add_calls, add_errors; /* add calls made, to compare with /metrics */
} T;

typedef struct resp {
    int status;
    char head[8192];
    char *body;
    size_t len;
} resp;

static void resp_free(resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* One request with Connection: close; the whole answer read until EOF. -1: no answer. */
static int http_raw(const char *method, const char *path, const char *extra, const char *body,
                    resp *r)
{
    memset(r, 0, sizeof *r);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)T.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    size_t blen = body ? strlen(body) : 0;
    char req[16384];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n%s\r\n%s",
                     method, path, T.port, blen, extra ? extra : "", body ? body : "");
    assert_true(n > 0 && (size_t)n < sizeof req);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *all = malloc(cap);
    assert_non_null(all);
    for (;;) {
        if (len + 4096 > cap) all = realloc(all, cap *= 2);
        assert_non_null(all);
        ssize_t got = read(fd, all + len, cap - len - 1);
        if (got <= 0) break;
        len += (size_t)got;
    }
    close(fd);
    all[len] = '\0';
    char *end = strstr(all, "\r\n\r\n");
    if (!end || sscanf(all, "HTTP/1.1 %d", &r->status) != 1) {
        free(all);
        return -1;
    }
    size_t hl = (size_t)(end - all);
    snprintf(r->head, sizeof r->head, "%.*s", (int)hl, all);
    r->len = len - hl - 4;
    r->body = malloc(r->len + 1);
    memcpy(r->body, end + 4, r->len);
    r->body[r->len] = '\0';
    free(all);
    return 0;
}

static void http(const char *method, const char *path, const char *extra, const char *body, resp *r)
{
    assert_int_equal(http_raw(method, path, extra, body, r), 0);
}

/* A header's value (case-insensitive name), or "". */
static const char *header(const resp *r, const char *name)
{
    static char v[512];
    v[0] = '\0';
    for (const char *p = strstr(r->head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        size_t n = strlen(name);
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *s = p + 3 + n;
            while (*s == ' ')
                s++;
            snprintf(v, sizeof v, "%.*s", (int)strcspn(s, "\r"), s);
            break;
        }
    }
    return v;
}

static json_t *body_json(const resp *r)
{
    json_error_t je;
    json_t *v = json_loadb(r->body, r->len, JSON_DECODE_ANY, &je);
    if (!v) fprintf(stderr, "not JSON (%s): %s\n", je.text, r->body);
    assert_non_null(v);
    return v;
}

static void post(const char *path, const char *body, bool token, resp *r)
{
    char extra[160];
    snprintf(extra, sizeof extra, "X-Shmrpc-Token: %s\r\nContent-Type: application/json\r\n",
             T.token);
    http("POST", path, token ? extra : NULL, body, r);
}

/* The error body's status, checked for its shape. */
static void expect_error(const resp *r, int http_status, const char *status)
{
    if (r->status != http_status) fprintf(stderr, "got %d: %s\n", r->status, r->body);
    assert_int_equal(r->status, http_status);
    assert_string_equal(header(r, "Content-Type"), "application/json; charset=utf-8");
    json_t *v = body_json(r);
    json_t *e = json_object_get(v, "error");
    assert_true(json_is_object(e));
    assert_true(json_is_string(json_object_get(e, "message")));
    assert_string_equal(json_string_value(json_object_get(e, "status")), status);
    json_decref(v);
}

/* echo's object in GET /api/services (a new reference). */
static json_t *echo_status(void)
{
    resp r;
    http("GET", "/api/services", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *v = body_json(&r);
    resp_free(&r);
    json_t *s = json_incref(json_array_get(json_object_get(v, "services"), 0));
    json_decref(v);
    assert_string_equal(json_string_value(json_object_get(s, "name")), "echo");
    return s;
}

static const char *state_of(json_t *s)
{
    return json_string_value(json_object_get(s, "state"));
}

/* Waits up to ms for echo to be in state; its status object then (a new reference). */
static json_t *wait_state(const char *state, int ms)
{
    for (int64_t end = sup_now_ms() + ms;; sup_nap_ms(50)) {
        json_t *s = echo_status();
        sup_groups_add(&T.groups, (pid_t)json_integer_value(json_object_get(s, "pid")));
        if (strcmp(state_of(s), state) == 0) return s;
        json_decref(s);
        if (sup_now_ms() > end) fail_msg("echo never became %s", state);
    }
}

/* --- the supervisor ----------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    strcpy(T.dir, "/tmp/shmrpc-web-test-XXXXXX");
    if (!mkdtemp(T.dir)) return -1;
    snprintf(T.ini, sizeof T.ini, "%s/service.ini", T.dir);
    snprintf(T.shm, sizeof T.shm, "web_test_%d", (int)getpid());
    snprintf(T.addr, sizeof T.addr, "shm://%s", T.shm);
    T.groups.cap = 16;
    T.port = test_free_port();
    if (T.port <= 0) return -1;
    char ini[1024], errp[160];
    int n = snprintf(ini, sizeof ini,
                     "[defaults]\nlog_dir = logs\n\n[web monitor]\nport = %d\n\n"
                     "[echo]\nexec = %s --workers 2 %s\nshm_name = %s\n",
                     T.port, ECHO_SERVER, T.addr, T.shm);
    if (n < 0 || (size_t)n >= sizeof ini || sup_write_file(T.ini, ini) != 0) return -1;
    if (shmrpc__config_control_address(T.ini, T.control, sizeof T.control) != 0) return -1;
    snprintf(errp, sizeof errp, "%s/supervisor.err", T.dir);
    T.sup = sup_spawn(T.ini, errp, true, 60, NULL);
    if (T.sup < 0) return -1;
    /* The page comes up once echo has started and answered. */
    resp r;
    for (int64_t end = sup_now_ms() + 10000;; sup_nap_ms(20)) {
        if (http_raw("GET", "/api/token", NULL, NULL, &r) == 0 && r.status == 200) break;
        if (sup_now_ms() > end) return -1;
    }
    json_t *v = json_loadb(r.body, r.len, 0, NULL);
    const char *tok = json_string_value(json_object_get(v, "token"));
    if (!tok || strlen(tok) != 32) return -1;
    snprintf(T.token, sizeof T.token, "%s", tok);
    json_decref(v);
    resp_free(&r);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sup_kill_reap(&T.sup);
    sup_groups_kill(&T.groups);
    sup_remove_segments(T.shm);
    /* This supervisor's control segment only: every "shmrpc-control-" one would include
     * those of other tests' supervisors running beside this one (ctest -j). */
    if (T.control[0]) sup_remove_segments(T.control + strlen("shm://"));
    sup_rm_tree(T.dir);
    return 0;
}

/* --- the tests ------------------------------------------------------------------------------ */

static void test_pages(void **state)
{
    (void)state;
    resp r;
    http("GET", "/", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "Content-Type"), "text/html; charset=utf-8");
    char meta[128];
    snprintf(meta, sizeof meta, "<meta name=\"shmrpc-token\" content=\"%s\">", T.token);
    assert_non_null(strstr(r.body, meta));
    assert_non_null(strstr(r.body, "/app.js"));
    resp_free(&r);
    http("GET", "/app.js", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "Content-Type"), "text/javascript; charset=utf-8");
    assert_non_null(strstr(r.body, "/api/services"));
    assert_non_null(strstr(r.body, "X-Shmrpc-Token"));
    resp_free(&r);
    http("GET", "/style.css", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "Content-Type"), "text/css; charset=utf-8");
    resp_free(&r);
    http("GET", "/nope", NULL, NULL, &r);
    expect_error(&r, 404, "SHMRPC_ENOENT");
    resp_free(&r);
    http("GET", "/api/services/nobody", NULL, NULL, &r);
    expect_error(&r, 404, "SHMRPC_ENOENT");
    resp_free(&r);
    http("DELETE", "/api/services", NULL, NULL, &r);
    expect_error(&r, 405, "SHMRPC_EINVAL");
    resp_free(&r);
    /* A name that is not loopback: a DNS name rebound to 127.0.0.1. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)T.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *req =
        "GET /api/token HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n";
    assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    char buf[256] = "";
    assert_true(read(fd, buf, sizeof buf - 1) > 12);
    close(fd);
    assert_memory_equal(buf, "HTTP/1.1 403", 12);
}

static void test_services(void **state)
{
    (void)state;
    json_t *s = wait_state("running", 5000);
    assert_string_equal(json_string_value(json_object_get(s, "kind")), "exec");
    assert_string_equal(json_string_value(json_object_get(s, "address")), T.addr);
    json_int_t pid = json_integer_value(json_object_get(s, "pid"));
    assert_true(pid > 0);
    assert_int_equal(json_integer_value(json_object_get(s, "workers")), 2);
    json_t *pids = json_object_get(s, "worker_pids");
    assert_int_equal(json_array_size(pids), 2);
    for (size_t i = 0; i < 2; i++) {
        json_int_t w = json_integer_value(json_array_get(pids, i));
        assert_true(w > 0 && w != pid);
        assert_int_equal(getpgid((pid_t)w), (pid_t)pid); /* in echo's group */
    }
    assert_int_equal(json_integer_value(json_object_get(s, "restarts")), 0);
    assert_true(json_number_value(json_object_get(s, "uptime_s")) >= 0);
    assert_true(json_integer_value(json_object_get(s, "rss_bytes")) > 0);
    assert_true(json_is_number(json_object_get(s, "cpu_seconds")));
    assert_true(json_is_integer(json_object_get(s, "calls_total")));
    static const char *const keys[] = {"calls_per_s", "error_rate", "p50_us",    "p99_us",
                                       "cpu_percent", "sample_t",   "last_exit", "log_path"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_non_null(json_object_get(s, keys[i]));
    json_decref(s);
    resp r;
    http("GET", "/api/services", NULL, NULL, &r);
    assert_string_equal(header(&r, "Content-Type"), "application/json; charset=utf-8");
    assert_string_equal(header(&r, "Cache-Control"), "no-store");
    json_t *v = body_json(&r);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "supervisor"), "pid")),
                     T.sup);
    assert_true(json_is_array(json_object_get(v, "top_methods")));
    json_decref(v);
    resp_free(&r);
}

/* shmrpcctl call ADDRESS METHOD ARGS: its stdout without the line end, and its status. */
static int ctl_call(const char *method, const char *args, char *out, size_t cap)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 2);
        execl(SHMRPCCTL, "shmrpcctl", "call", T.addr, method, args, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    size_t n = 0;
    for (ssize_t got; n < cap - 1 && (got = read(p[0], out + n, cap - 1 - n)) > 0;)
        n += (size_t)got;
    close(p[0]);
    out[n] = '\0';
    if (n && out[n - 1] == '\n') out[n - 1] = '\0';
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_gateway(void **state)
{
    (void)state;
    static const struct {
        const char *method, *args;
    } calls[] = {
        {"add", "[40,2]"},
        {"add", "{\"a\":1,\"b\":2}"},
        {"centroid", "[[{\"x\":1,\"y\":2},{\"x\":3,\"y\":4,\"label\":\"b\"}]]"},
        {"echo_json", "[\"h\\u00e9llo\"]"},
        {"echo_raw", "[\"hi\"]"},
        {"echo_raw", "[{\"base64\":\"/wA=\"}]"},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        char path[128], want[4096];
        snprintf(path, sizeof path, "/api/echo/%s", calls[i].method);
        resp r;
        post(path, calls[i].args, true, &r);
        assert_int_equal(ctl_call(calls[i].method, calls[i].args, want, sizeof want), 0);
        if (strcmp(calls[i].method, "add") == 0) T.add_calls += 2;
        if (r.status != 200) fprintf(stderr, "%s: %s\n", path, r.body);
        assert_int_equal(r.status, 200);
        assert_string_equal(header(&r, "Content-Type"), "application/json; charset=utf-8");
        assert_string_equal(r.body, want); /* the very JSON shmrpcctl call prints */
        resp_free(&r);
    }
    /* Bad input, each with its status. */
    resp r;
    post("/api/nobody/add", "[1,2]", true, &r);
    expect_error(&r, 404, "SHMRPC_ENOENT");
    resp_free(&r);
    post("/api/echo/nope", "[1,2]", true, &r);
    expect_error(&r, 404, "SHMRPC_ENOENT");
    assert_non_null(strstr(r.body, "it has: add, centroid, echo_json, echo_raw"));
    resp_free(&r);
    post("/api/echo/add", "[1,", true, &r);
    expect_error(&r, 400, "SHMRPC_EINVAL");
    assert_non_null(strstr(r.body, "bad JSON"));
    resp_free(&r);
    post("/api/echo/add", "[\"x\",2]", true, &r);
    expect_error(&r, 400, "SHMRPC_EINVAL");
    assert_non_null(strstr(r.body, "argument 'a': expected an integer (i64)"));
    resp_free(&r);
    post("/api/echo/centroid", "[[{\"x\":1,\"y\":\"a\"}]]", true, &r);
    expect_error(&r, 400, "SHMRPC_EINVAL");
    resp_free(&r);
    /* The handler's own refusal, which reaches the service and counts as its error. */
    post("/api/echo/add", "[9223372036854775807,1]", true, &r);
    expect_error(&r, 400, "SHMRPC_EINVAL");
    assert_non_null(strstr(r.body, "overflows i64"));
    T.add_calls++, T.add_errors++;
    resp_free(&r);
    /* No token: refused before anything is called. */
    post("/api/echo/add", "[1,2]", false, &r);
    expect_error(&r, 403, "SHMRPC_EPERM");
    resp_free(&r);
}

static void test_metrics(void **state)
{
    (void)state;
    resp r;
    http("GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    char typed[64][96]; /* families with a # TYPE so far */
    int n_typed = 0;
    long calls = -1, errors = -1, count = -1, inf = -1, prev_bucket = -1;
    bool up = false, workers = false, buckets_ok = true;
    char *save = NULL;
    for (char *line = strtok_r(r.body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[96];
        if (strncmp(line, "# HELP ", 7) == 0) continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char type[32];
            assert_int_equal(sscanf(line, "# TYPE %95s %31s", name, type), 2);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            for (int i = 0; i < n_typed; i++)
                assert_string_not_equal(typed[i], name); /* each family once, grouped */
            assert_true(n_typed < 64);
            snprintf(typed[n_typed++], sizeof typed[0], "%s", name);
            continue;
        }
        assert_true(line[0] != '#');
        /* name{labels} value: the family typed just before it. */
        size_t nl = strcspn(line, "{ ");
        snprintf(name, sizeof name, "%.*s", (int)nl, line);
        assert_true(n_typed > 0);
        const char *fam = typed[n_typed - 1];
        bool ok = strcmp(name, fam) == 0;
        if (!ok && strncmp(name, fam, strlen(fam)) == 0) {
            const char *suf = name + strlen(fam);
            ok = !strcmp(suf, "_bucket") || !strcmp(suf, "_sum") || !strcmp(suf, "_count");
        }
        if (!ok) fail_msg("%s after # TYPE %s", line, fam);
        const char *sp = strrchr(line, ' ');
        assert_non_null(sp);
        char *end;
        double value = strtod(sp + 1, &end);
        assert_true(*end == '\0');
        if (strcmp(line, "shmrpc_service_up{service=\"echo\"} 1") == 0) up = true;
        if (strcmp(line, "shmrpc_service_workers{service=\"echo\"} 2") == 0) workers = true;
        const char *add = "{service=\"echo\",method=\"add\"}";
        if (!strncmp(line, "shmrpc_calls_total", 18) && !strncmp(line + 18, add, strlen(add)))
            calls = (long)value;
        if (!strncmp(line, "shmrpc_call_errors_total", 24) && !strncmp(line + 24, add, strlen(add)))
            errors = (long)value;
        if (!strncmp(line, "shmrpc_call_duration_seconds_count", 34) &&
            !strncmp(line + 34, add, strlen(add)))
            count = (long)value;
        const char *b = "shmrpc_call_duration_seconds_bucket{service=\"echo\",method=\"add\",le=\"";
        if (!strncmp(line, b, strlen(b))) {
            buckets_ok &= (long)value >= prev_bucket; /* cumulative */
            prev_bucket = (long)value;
            if (!strncmp(line + strlen(b), "+Inf\"}", 6)) inf = (long)value;
        }
    }
    assert_true(up);
    assert_true(workers);
    assert_true(buckets_ok);
    assert_int_equal(calls, T.add_calls);
    assert_int_equal(errors, T.add_errors);
    assert_int_equal(inf, T.add_calls);
    assert_int_equal(count, T.add_calls);
    for (const char *want = "shmrpc_service_restarts_total shmrpc_service_cpu_seconds_total "
                            "shmrpc_service_resident_memory_bytes shmrpc_call_duration_seconds";
         *want;) {
        size_t len = strcspn(want, " ");
        bool found = false;
        for (int i = 0; i < n_typed; i++)
            found |= strlen(typed[i]) == len && !strncmp(typed[i], want, len);
        assert_true(found);
        want += len + (want[len] == ' ');
    }
    resp_free(&r);
}

static void test_service_page(void **state)
{
    (void)state;
    resp r;
    http("GET", "/api/services/echo?lines=5", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *v = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(v, "service")), "Echo");
    json_t *methods = json_object_get(v, "methods");
    assert_int_equal(json_array_size(methods), 4);
    json_t *add = json_array_get(methods, 0);
    assert_string_equal(json_string_value(json_object_get(add, "name")), "add");
    assert_int_equal(json_integer_value(json_object_get(add, "calls")), T.add_calls);
    assert_true(json_number_value(json_object_get(add, "p99_us")) > 0);
    json_t *log = json_object_get(v, "log");
    assert_true(json_array_size(log) >= 1 && json_array_size(log) <= 5);
    bool serving = false;
    for (size_t i = 0; i < json_array_size(log); i++)
        serving |=
            strstr(json_string_value(json_array_get(log, i)), "echo-server: serving") != NULL;
    assert_true(serving);
    json_decref(v);
    resp_free(&r);
}

static void test_actions(void **state)
{
    (void)state;
    json_t *s = wait_state("running", 5000);
    json_int_t old = json_integer_value(json_object_get(s, "pid"));
    json_decref(s);
    resp r;
    post("/api/services/echo/stop", "", false, &r);
    expect_error(&r, 403, "SHMRPC_EPERM");
    resp_free(&r);
    http("POST", "/api/services/echo/stop", "X-Shmrpc-Token: 0123456789abcdef0123456789abcdef\r\n",
         "", &r);
    expect_error(&r, 403, "SHMRPC_EPERM");
    resp_free(&r);
    s = echo_status();
    assert_string_equal(state_of(s), "running"); /* the refused POSTs did nothing */
    json_decref(s);
    post("/api/services/echo/stop", "", true, &r);
    assert_int_equal(r.status, 200);
    json_t *v = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(v, "name")), "echo");
    assert_true(!strcmp(state_of(v), "stopping") || !strcmp(state_of(v), "stopped"));
    json_decref(v);
    resp_free(&r);
    json_decref(wait_state("stopped", 5000));
    /* The gateway says so. */
    post("/api/echo/add", "[1,2]", true, &r);
    expect_error(&r, 503, "SHMRPC_EUNAVAIL");
    resp_free(&r);
    post("/api/services/echo/scale", "{\"workers\":2}", true, &r);
    expect_error(&r, 400, "SHMRPC_EINVAL"); /* an exec= service runs its own workers */
    resp_free(&r);
    post("/api/services/echo/start", "", true, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    s = wait_state("running", 5000);
    assert_true(json_integer_value(json_object_get(s, "pid")) != old);
    json_decref(s);
    post("/api/echo/add", "[1,2]", true, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "3");
    resp_free(&r);
    post("/api/services/nobody/stop", "", true, &r);
    expect_error(&r, 404, "SHMRPC_ENOENT");
    resp_free(&r);
}

static void test_sigterm(void **state)
{
    (void)state;
    assert_int_equal(kill(T.sup, SIGTERM), 0);
    int st = sup_wait_exit(&T.sup, 10000);
    assert_true(st != -1);
    assert_int_equal(T.sup, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* The port is free: a listener can bind it (SO_REUSEADDR lets it past the closed
     * connections' TIME_WAIT, not past another listener). */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)T.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 1), 0);
    close(fd);
    assert_false(sup_segment_left(T.shm));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages),        cmocka_unit_test(test_services),
        cmocka_unit_test(test_gateway),      cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_service_page), cmocka_unit_test(test_actions),
        cmocka_unit_test(test_sigterm),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
