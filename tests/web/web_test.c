/* SPDX-License-Identifier: MIT */
/* The management page with real processes and real HTTP over loopback: shmrpc-service
 * runs echo-server, and "talker" (tail -f of a file the test appends to, so that the test
 * decides what its log holds and when); a small HTTP client here checks every endpoint's
 * status, content type and body, /metrics line by line, the JSON gateway against
 * shmrpcctl call for every echo method and for bad input, the token on POSTs, the service
 * page and uPlot byte for byte, the series columns, the log tail that follows (partial
 * lines, invalid UTF-8, rotation), stop and start, and SIGTERM freeing the port. Once
 * talker is stopped its files are the test's: crafted ones check the readers' edges.
 * Every wait is bounded; the group teardown removes what a failure left. */
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
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrpc/buf.h>
#include <shmrpc/map.h>
#include <shmrpc/queue.h>

#include "config.h"
#include "procs.h"
#include "skips.h"
#include "sup_helpers.h"
#include "web_http.h"

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
    char talk[96];              /* what talker prints, appended to by the test */
    char logs[96];              /* its LOG_DIR */
    char queue[64], map[64];    /* made by test_queues_and_maps */
    char odd[160];              /* the queue renamed in /dev/shm, while it is */
} T;

static void http(const char *method, const char *path, const char *extra, const char *body, resp *r)
{
    assert_int_equal(http_raw(T.port, NULL, method, path, extra, body, r), 0);
}

static void post(const char *path, const char *body, bool token, resp *r)
{
    char extra[160];
    snprintf(extra, sizeof extra, "X-Shmrpc-Token: %s\r\nContent-Type: application/json\r\n",
             T.token);
    http("POST", path, token ? extra : NULL, body, r);
}

/* GET path, expected to answer 200 with a body of type; r holds it. */
static void get_ok(const char *path, const char *type, resp *r)
{
    http("GET", path, NULL, NULL, r);
    expect_status(r, 200);
    assert_string_equal(header(r, "Content-Type"), type);
}

/* GET path, expected to be an HTML page that carries the token; r holds it. */
static void get_page(const char *path, resp *r)
{
    http("GET", path, NULL, NULL, r);
    expect_page(r, T.token);
}

/* GET path, expected to be refused with the JSON error body. */
static void get_error(const char *path, int http_status, const char *status)
{
    resp r;
    http("GET", path, NULL, NULL, &r);
    expect_error(&r, http_status, status);
    resp_free(&r);
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
    /* talker prints what the test appends to talk.in; its log rotates at 4 KiB. tail
     * also ends with the supervisor (--pid), should the teardown not run. */
    int n = snprintf(ini, sizeof ini,
                     "[defaults]\nlog_dir = logs\n\n[web monitor]\nport = %d\n\n"
                     "[echo]\nexec = %s --workers 2 %s\nshm_name = %s\n\n"
                     "[talker]\nexec = sh -c 'exec tail --pid=$PPID -c +1 -f talk.in'\n"
                     "wait_until_completed = false\nlog_max_bytes = 4096\nlog_keep = 1\n",
                     T.port, ECHO_SERVER, T.addr, T.shm);
    if (n < 0 || (size_t)n >= sizeof ini || sup_write_file(T.ini, ini) != 0) return -1;
    snprintf(T.talk, sizeof T.talk, "%s/talk.in", T.dir);
    snprintf(T.logs, sizeof T.logs, "%s/logs", T.dir);
    if (sup_write_file(T.talk, "") != 0) return -1;
    if (cfg_control_address(T.ini, T.control, sizeof T.control) != 0) return -1;
    snprintf(errp, sizeof errp, "%s/supervisor.err", T.dir);
    T.sup = sup_spawn(T.ini, errp, true, 60, NULL);
    if (T.sup < 0) return -1;
    /* The page comes up once echo has started and answered. */
    resp r;
    if (http_wait_ok(T.port, "/api/token", 10000, &T.sup, &r) != 0) return -1;
    json_t *v = json_loadb(r.body, r.len, 0, NULL);
    const char *tok = json_string_value(json_object_get(v, "token"));
    if (!tok || strlen(tok) != 32) return -1;
    snprintf(T.token, sizeof T.token, "%s", tok);
    json_decref(v);
    resp_free(&r);
    /* Both services' groups, for the teardown. */
    for (int64_t end = sup_now_ms() + 10000;; sup_nap_ms(20)) {
        if (http_raw(T.port, NULL, "GET", "/api/services", NULL, NULL, &r) != 0 || r.status != 200)
            return -1;
        v = json_loadb(r.body, r.len, 0, NULL);
        resp_free(&r);
        size_t i, running = 0;
        json_t *s;
        json_array_foreach(json_object_get(v, "services"), i, s)
        {
            json_int_t pid = json_integer_value(json_object_get(s, "pid"));
            sup_groups_add(&T.groups, (pid_t)pid);
            running += pid > 0;
        }
        json_decref(v);
        if (running == 2) break;
        if (sup_now_ms() > end) return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sup_end(&T.sup);
    sup_groups_kill(&T.groups);
    sup_remove_segments(T.shm);
    if (T.odd[0]) unlink(T.odd);
    if (T.queue[0]) shmrpc_queue_unlink(T.queue);
    if (T.map[0]) shmrpc_map_unlink_quiet(T.map);
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
    get_page("/", &r);
    assert_non_null(strstr(r.body, "/app.js"));
    resp_free(&r);
    get_ok("/app.js", "text/javascript; charset=utf-8", &r);
    assert_non_null(strstr(r.body, "/api/services"));
    assert_non_null(strstr(r.body, "X-Shmrpc-Token"));
    resp_free(&r);
    get_ok("/style.css", "text/css; charset=utf-8", &r);
    resp_free(&r);
    get_error("/nope", 404, "SHMRPC_ENOENT");
    get_error("/api/services/nobody", 404, "SHMRPC_ENOENT");
    http("DELETE", "/api/services", NULL, NULL, &r);
    expect_error(&r, 405, "SHMRPC_EINVAL");
    resp_free(&r);
    /* A name that is not loopback: a DNS name rebound to 127.0.0.1. */
    assert_int_equal(http_raw(T.port, "evil.example:80", "GET", "/api/token", NULL, NULL, &r), 0);
    expect_status(&r, 403);
    resp_free(&r);
}

/* Requests the page has no answer for, each refused with its status and message
 * (docs/web.md): paths of too many or unknown segments, a path too long, queries that
 * are no number, actions and POSTs to what is not there, Host names too long. */
static void test_hostile_requests(void **state)
{
    (void)state;
    static const char NO_PAGE[] = "no such page";
    static const char NOBODY[] = "no service 'nobody'; the services are: echo, talker";
    static const struct {
        const char *method, *path, *host, *body;
        bool token;
        int http;
        const char *status, *message;
    } cases[] = {
        {"GET", "/a/b/c/d/e/f/g", NULL, NULL, false, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"GET", "/api/services/echo/other", NULL, NULL, false, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"GET", "/api/services/echo/log/x", NULL, NULL, false, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"GET", "/x/services/echo/log", NULL, NULL, false, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"GET", "/api/other", NULL, NULL, false, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"GET", "/x/token", NULL, NULL, false, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"GET", "/x/services", NULL, NULL, false, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"GET", "/x/services/echo", NULL, NULL, false, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"GET", "/api/x/echo", NULL, NULL, false, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"GET", "/metrics/x", NULL, NULL, false, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"GET", "/app.js/x", NULL, NULL, false, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"GET", "/services/nobody", NULL, NULL, false, 404, "SHMRPC_ENOENT", NOBODY},
        {"GET", "/api/services/nobody/series", NULL, NULL, false, 404, "SHMRPC_ENOENT", NOBODY},
        {"GET", "/api/services/echo?lines=12345678901234567890123456789012345", NULL, NULL, false,
         400, "SHMRPC_EINVAL", "?lines= takes an integer"},
        {"GET", "/api/services/echo?lines=", NULL, NULL, false, 400, "SHMRPC_EINVAL",
         "?lines= takes an integer"},
        {"GET", "/api/services/talker/log?inode=99999999999999999999999", NULL, NULL, false, 400,
         "SHMRPC_EINVAL", "?inode= takes the decimal digits of an inode number"},
        {"GET", "/api/services/talker/log?inode=123456789012345678901234567890123", NULL, NULL,
         false, 400, "SHMRPC_EINVAL", "?inode= takes the decimal digits of an inode number"},
        {"GET", "/api/services/talker/log?after=-", NULL, NULL, false, 400, "SHMRPC_EINVAL",
         "?after= takes an integer"},
        {"GET", "/api/services/talker/log?max_bytes=1k", NULL, NULL, false, 400, "SHMRPC_EINVAL",
         "?max_bytes= takes an integer"},
        {"GET", "/api/services/talker/series?since=x", NULL, NULL, false, 400, "SHMRPC_EINVAL",
         "?since= takes an integer"},
        {"GET", "/api/services/talker/series?max=1.5", NULL, NULL, false, 400, "SHMRPC_EINVAL",
         "?max= takes an integer"},
        {"GET", "/api/services/talker/series?step=1m", NULL, NULL, false, 400, "SHMRPC_EINVAL",
         "?step= takes an integer"},
        {"GET", "/api/services/talker/series?span_s=", NULL, NULL, false, 400, "SHMRPC_EINVAL",
         "?span_s= takes an integer"},
        {"POST", "/api/services/nobody/start", NULL, "", true, 404, "SHMRPC_ENOENT", NOBODY},
        {"POST", "/api/nobody/add", NULL, "[1,2]", true, 404, "SHMRPC_ENOENT", NOBODY},
        {"POST", "/api/services/echo/pause", NULL, "", true, 404, "SHMRPC_ENOENT",
         "no such action: start, stop, restart and scale are"},
        {"POST", "/api/services/echo/scale", NULL, "{\"workers\": -1}", true, 400, "SHMRPC_EINVAL",
         "scale takes {\"workers\": N}, a count of workers"},
        {"POST", "/api/services/echo/scale", NULL, "[4294967296]", true, 400, "SHMRPC_EINVAL",
         "scale takes {\"workers\": N}, a count of workers"},
        {"POST", "/api/services/echo/scale", NULL, "\"2\"", true, 400, "SHMRPC_EINVAL",
         "scale takes {\"workers\": N}, a count of workers"},
        {"POST", "/logout", NULL, "", true, 404, "SHMRPC_ENOENT", NO_PAGE}, /* no secret */
        {"POST", "/api/echo", NULL, "", true, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"POST", "/x/services/echo/start", NULL, "", true, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"POST", "/x/echo/add", NULL, "", true, 404, "SHMRPC_ENOENT", NO_PAGE},
        {"POST", "/api/echo/add", NULL, "", false, 403, "SHMRPC_EPERM",
         "a POST needs the page's token in the X-Shmrpc-Token header (GET /api/token)"},
        {"PUT", "/api/token", NULL, NULL, false, 405, "SHMRPC_EINVAL", "GET, HEAD and POST only"},
        {"GET", "/api/token", "[aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]",
         NULL, false, 403, "SHMRPC_EPERM",
         "the page answers to a loopback host name only (localhost, 127.x.y.z, [::1])"},
        {"GET", "/api/token", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:80",
         NULL, false, 403, "SHMRPC_EPERM",
         "the page answers to a loopback host name only (localhost, 127.x.y.z, [::1])"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char extra[160];
        snprintf(extra, sizeof extra, "X-Shmrpc-Token: %s\r\nContent-Type: application/json\r\n",
                 T.token);
        resp r;
        assert_int_equal(http_raw(T.port, cases[i].host, cases[i].method, cases[i].path,
                                  cases[i].token ? extra : NULL, cases[i].body, &r),
                         0);
        printf("%s %s: %d %s\n", cases[i].method, cases[i].path, r.status, r.body);
        expect_error(&r, cases[i].http, cases[i].status);
        json_t *v = body_json(&r);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(v, "error"), "message")),
            cases[i].message);
        json_decref(v);
        resp_free(&r);
    }
    /* A token of another length (its first 8 characters), or of its length but another: 403. */
    char tok[160];
    snprintf(tok, sizeof tok, "X-Shmrpc-Token: %.8s\r\n", T.token);
    for (int k = 0; k < 2; k++) {
        if (k) snprintf(tok, sizeof tok, "X-Shmrpc-Token: %032d\r\n", 7);
        resp r;
        http("POST", "/api/echo/add", tok, "[1,2]", &r);
        expect_error(&r, 403, "SHMRPC_EPERM");
        resp_free(&r);
    }
    /* A path of 1024 bytes or more names no page; /index.html is / . */
    char path[1100] = "/";
    memset(path + 1, 'a', 1050);
    path[1051] = '\0';
    get_error(path, 404, "SHMRPC_ENOENT");
    resp r;
    get_page("/index.html", &r);
    assert_non_null(strstr(r.body, "/app.js"));
    resp_free(&r);
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
    get_ok("/metrics", "text/plain; version=0.0.4; charset=utf-8", &r);
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

static json_t *get_json(const char *path, int status);

/* The value of the /metrics sample line that begins with head ("name{labels}"); -1 when
 * there is none. */
static long long metric(const char *text, const char *head)
{
    size_t n = strlen(head);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, head, n) == 0 && p[n] == ' ') return strtoll(p + n + 1, NULL, 10);
    return -1;
}

static json_int_t member(json_t *list, const char *name, const char *key)
{
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o)
    {
        if (strcmp(json_string_value(json_object_get(o, "name")), name) == 0)
            return json_is_integer(json_object_get(o, key))
                       ? json_integer_value(json_object_get(o, key))
                       : -2;
    }
    return -1;
}

/* A queue and a map of the supervisor's user, made here with known figures, in /metrics
 * and in /api/services (the overview's "Queues and maps"); gone from both once removed. */
static void test_queues_and_maps(void **state)
{
    (void)state;
    snprintf(T.queue, sizeof T.queue, "webq_%d", (int)getpid());
    snprintf(T.map, sizeof T.map, "webm_%d", (int)getpid());
    shmrpc_queue_opts qo;
    shmrpc_queue_opts_init(&qo);
    qo.mode = SHMRPC_QUEUE_CREATE_NEW_EXCLUSIVE;
    qo.capacity = 2;
    shmrpc_queue *q;
    assert_int_equal(shmrpc_queue_open(&q, T.queue, &qo), 0);
    assert_int_equal(shmrpc_queue_push(q, "a", 1, 0), 0);
    assert_int_equal(shmrpc_queue_push(q, "b", 1, 0), 0);
    assert_int_equal(shmrpc_queue_push(q, "c", 1, 1), SHMRPC_ETIMEDOUT); /* full */
    char buf[8];
    size_t len;
    assert_int_equal(shmrpc_queue_pop(q, buf, sizeof buf, &len, 0), 0);
    shmrpc_queue_close(q);
    shmrpc_map_opts mo;
    shmrpc_map_opts_init(&mo);
    mo.mode = SHMRPC_MAP_CREATE_NEW_EXCLUSIVE;
    mo.initial_slots = 8;
    mo.initial_bytes = 4096;
    shmrpc_map *m;
    assert_int_equal(shmrpc_map_open(&m, T.map, &mo), 0);
    for (int i = 0; i < 6; i++) /* past 7/10 of 8 slots: one growth */
        assert_int_equal(shmrpc_map_put(m, &i, sizeof i, "value", 5), 0);
    int k = 0;
    assert_int_equal(shmrpc_map_remove(m, &k, sizeof k), 0);
    shmrpc_map_info mi;
    assert_int_equal(shmrpc_map_get_info(m, &mi), 0);
    assert_int_equal(mi.generation, 2);
    shmrpc_map_close(m);

    resp r;
    get_ok("/metrics", "text/plain; version=0.0.4; charset=utf-8", &r);
    char head[160];
#define Q(fam, want)                                                                               \
    snprintf(head, sizeof head, "%s{queue=\"%s\"}", fam, T.queue);                                 \
    if (metric(r.body, head) != (want))                                                            \
    fail_msg("%s: %lld, not %d", head, metric(r.body, head), want)
#define M(fam, want)                                                                               \
    snprintf(head, sizeof head, "%s{map=\"%s\"}", fam, T.map);                                     \
    if (metric(r.body, head) != (long long)(want))                                                 \
    fail_msg("%s: %lld, not %lld", head, metric(r.body, head), (long long)(want))
    Q("shmrpc_queue_depth", 1);
    Q("shmrpc_queue_pushed_total", 2);
    Q("shmrpc_queue_popped_total", 1);
    Q("shmrpc_queue_timeouts_total", 1);
    Q("shmrpc_queue_drops_total", 0);
    Q("shmrpc_queue_repairs_total", 0);
    M("shmrpc_map_entries", 5);
    M("shmrpc_map_capacity_bytes", mi.bytes);
    M("shmrpc_map_used_bytes", mi.used);
    M("shmrpc_map_generation", 2);
    M("shmrpc_map_writes_total", 7);
    M("shmrpc_map_growths_total", 1);
    M("shmrpc_map_lock_waits_total", 0);
    for (const char *fam = "# TYPE shmrpc_queue_depth gauge\n# TYPE shmrpc_queue_pushed_total "
                           "counter\n# TYPE shmrpc_map_entries gauge\n# TYPE "
                           "shmrpc_map_lock_waits_total counter\n";
         *fam; fam = strchr(fam, '\n') + 1) {
        snprintf(head, sizeof head, "%.*s", (int)(strchr(fam, '\n') - fam + 1), fam);
        if (!strstr(r.body, head)) fail_msg("no %s", head);
    }
    resp_free(&r);

    json_t *v = get_json("/api/services", 200);
    json_t *qs = json_object_get(v, "queues"), *ms = json_object_get(v, "maps");
    assert_int_equal(member(qs, T.queue, "depth"), 1);
    assert_int_equal(member(qs, T.queue, "pushed"), 2);
    assert_int_equal(member(qs, T.queue, "popped"), 1);
    assert_int_equal(member(qs, T.queue, "timeouts"), 1);
    assert_int_equal(member(qs, T.queue, "drops"), 0);
    assert_int_equal(member(ms, T.map, "entries"), 5);
    assert_int_equal(member(ms, T.map, "bytes"), (json_int_t)mi.bytes);
    assert_int_equal(member(ms, T.map, "writes"), 7);
    assert_int_equal(member(ms, T.map, "growths"), 1);
    assert_int_equal(member(ms, T.map, "lock_waits"), 0);
    json_decref(v);

    /* A name that shmrpc does not make, read from /dev/shm as it is: escaped in its label
     * (backslash, double quote, line feed; '?' for other bytes that are not printable
     * ASCII), and in JSON with '?' for each byte that is not, as it is no UTF-8. */
    char path[128];
    snprintf(path, sizeof path, "/dev/shm/shmrpc.queue.%s", T.queue);
    snprintf(T.odd, sizeof T.odd, "%s\"\\\n\xff\x01", path);
    assert_int_equal(rename(path, T.odd), 0);
    get_ok("/metrics", "text/plain; version=0.0.4; charset=utf-8", &r);
    snprintf(head, sizeof head, "shmrpc_queue_pushed_total{queue=\"%s\\\"\\\\\\n??\"} 2\n",
             T.queue);
    if (!strstr(r.body, head)) fail_msg("no %s", head);
    resp_free(&r);
    v = get_json("/api/services", 200);
    char odd[96];
    snprintf(odd, sizeof odd, "%s\"\\???", T.queue);
    assert_int_equal(member(json_object_get(v, "queues"), odd, "pushed"), 2);
    json_decref(v);
    assert_int_equal(rename(T.odd, path), 0);
    T.odd[0] = '\0';
    /* Another user's queue (its file given to nobody): not the page's to show. */
    if (geteuid() != 0) {
        test_skip_part("another user's queue: needs root to give it away");
    } else {
        assert_int_equal(chown(path, 65534, 65534), 0);
        v = get_json("/api/services", 200);
        assert_int_equal(member(json_object_get(v, "queues"), T.queue, "depth"), -1);
        assert_int_equal(member(json_object_get(v, "maps"), T.map, "entries"), 5);
        json_decref(v);
        get_ok("/metrics", "text/plain; version=0.0.4; charset=utf-8", &r);
        assert_null(strstr(r.body, T.queue));
        resp_free(&r);
        assert_int_equal(chown(path, 0, 0), 0);
    }

    assert_int_equal(shmrpc_queue_unlink(T.queue), 0);
    assert_int_equal(shmrpc_map_unlink(T.map), 0);
    v = get_json("/api/services", 200);
    assert_int_equal(member(json_object_get(v, "queues"), T.queue, "depth"), -1);
    assert_int_equal(member(json_object_get(v, "maps"), T.map, "entries"), -1);
    json_decref(v);
    get_ok("/metrics", "text/plain; version=0.0.4; charset=utf-8", &r);
    assert_null(strstr(r.body, T.queue));
    assert_null(strstr(r.body, T.map));
    resp_free(&r);
#undef Q
#undef M
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
    /* Each worker with its own figures, for the service page's table. */
    json_t *procs = json_object_get(v, "worker_procs"), *pids = json_object_get(v, "worker_pids");
    assert_int_equal(json_array_size(procs), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *p = json_array_get(procs, i);
        assert_true(json_equal(json_object_get(p, "pid"), json_array_get(pids, i)));
        assert_true(json_integer_value(json_object_get(p, "rss_bytes")) > 0);
        assert_true(json_is_real(json_object_get(p, "cpu_seconds")));
        assert_int_equal(strlen(json_string_value(json_object_get(p, "state"))), 1);
    }
    json_t *log = json_object_get(v, "log");
    assert_true(json_array_size(log) >= 1 && json_array_size(log) <= 5);
    bool serving = false;
    for (size_t i = 0; i < json_array_size(log); i++)
        serving |=
            strstr(json_string_value(json_array_get(log, i)), "echo-server: serving") != NULL;
    assert_true(serving);
    json_decref(v);
    resp_free(&r);
    /* ?lines= out of range is brought into it; one that is no integer is refused. */
    http("GET", "/api/services/echo?lines=-3", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    v = body_json(&r);
    assert_int_equal(json_array_size(json_object_get(v, "log")), 0);
    json_decref(v);
    resp_free(&r);
    get_error("/api/services/echo?lines=lots", 400, "SHMRPC_EINVAL");
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

/* --- the service page, uPlot, the series and the log ----------------------------------- */

/* path whole (malloc'd; free it), its length in *len; NULL when it cannot be read. */
static char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    for (size_t got; p && (got = fread(p + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) p = realloc(p, cap *= 2);
    }
    fclose(f);
    *len = n;
    return p;
}

/* GET path, expected to answer status with JSON: its body (a new reference). */
static json_t *get_json(const char *path, int status)
{
    resp r;
    http("GET", path, NULL, NULL, &r);
    if (r.status != status) fprintf(stderr, "GET %s: %d %s\n", path, r.status, r.body);
    assert_int_equal(r.status, status);
    assert_string_equal(header(&r, "Content-Type"), "application/json; charset=utf-8");
    json_t *v = body_json(&r);
    resp_free(&r);
    return v;
}

static void test_assets(void **state)
{
    (void)state;
    static const struct {
        const char *path, *type, *file;
    } assets[] = {
        {"/uplot.min.js", "text/javascript; charset=utf-8", UPLOT_DIR "/uPlot.iife.min.js"},
        {"/uplot.min.css", "text/css; charset=utf-8", UPLOT_DIR "/uPlot.min.css"},
        {"/service.js", "text/javascript; charset=utf-8", NULL},
        {"/format.js", "text/javascript; charset=utf-8", NULL},
        {"/favicon.svg", "image/svg+xml", NULL},
    };
    for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++) {
        resp r;
        get_ok(assets[i].path, assets[i].type, &r);
        assert_string_equal(header(&r, "Content-Security-Policy"),
                            "default-src 'self'; frame-ancestors 'none'");
        if (assets[i].file) { /* the vendored file as it is */
            size_t n;
            char *want = read_whole(assets[i].file, &n);
            assert_non_null(want);
            assert_true(n > 1000);
            assert_int_equal(r.len, n);
            assert_memory_equal(r.body, want, n);
            free(want);
        }
        resp_free(&r);
    }
    /* The overview links each service to its page. */
    resp r;
    http("GET", "/app.js", NULL, NULL, &r);
    assert_non_null(strstr(r.body, "service-link"));
    assert_non_null(strstr(r.body, "\"/services/\""));
    resp_free(&r);
}

static void test_service_html(void **state)
{
    (void)state;
    resp r;
    get_page("/services/echo", &r);
    assert_non_null(strstr(r.body, "<body data-service=\"echo\">"));
    static const char *const parts[] = {
        "src=\"/uplot.min.js\"",
        "href=\"/uplot.min.css\"",
        "src=\"/service.js\"",
        "id=\"state\"",
        "id=\"workers\"",
        "id=\"methods\"",
        "id=\"log\"",
        "id=\"result\"",
        "data-action=\"start\"",
        "data-action=\"stop\"",
        "data-action=\"restart\"",
        "data-action=\"scale\"",
        "data-metric=\"cpu\"",
        "data-metric=\"memory\"",
        "data-metric=\"io\"",
        "data-metric=\"calls\"",
        "data-metric=\"latency\"",
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (!strstr(r.body, parts[i])) fail_msg("the page has no %s", parts[i]);
    assert_null(strstr(r.body, "{{")); /* every placeholder filled */
    assert_null(strstr(r.body, "<script>"));
    assert_null(strstr(r.body, " onclick="));
    resp_free(&r);
    http("HEAD", "/services/talker", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    resp_free(&r);
    get_error("/services/nobody", 404, "SHMRPC_ENOENT");
    get_error("/services/echo/more", 404, "SHMRPC_ENOENT");
}

static const char *const series_cols[] = {"t",      "dt_ms",   "cpu",   "rss",    "pss",
                                          "read",   "write",   "calls", "errors", "p50_us",
                                          "p99_us", "workers", "pid"};

/* Checks v's columns (all there, numbers or null, as long as t, t increasing): how many. */
static size_t columns(json_t *v)
{
    assert_true(json_is_object(v));
    assert_int_equal(json_object_size(v), sizeof series_cols / sizeof series_cols[0]);
    json_t *t = json_object_get(v, "t");
    size_t n = json_array_size(t);
    for (size_t c = 0; c < sizeof series_cols / sizeof series_cols[0]; c++) {
        json_t *col = json_object_get(v, series_cols[c]);
        assert_true(json_is_array(col));
        assert_int_equal(json_array_size(col), n);
        for (size_t i = 0; i < n; i++) {
            json_t *x = json_array_get(col, i);
            assert_true(json_is_number(x) || json_is_null(x));
        }
    }
    for (size_t i = 0; i < n; i++) {
        assert_true(json_is_integer(json_array_get(t, i)));
        if (i)
            assert_true(json_integer_value(json_array_get(t, i)) >
                        json_integer_value(json_array_get(t, i - 1)));
    }
    return n;
}

static json_int_t t_at(json_t *v, size_t i)
{
    return json_integer_value(json_array_get(json_object_get(v, "t"), i));
}

/* Column `field` of a series answer at i, as a number (a test fails at null). */
static double num_at(json_t *v, const char *field, size_t i)
{
    json_t *x = json_array_get(json_object_get(v, field), i);
    if (!json_is_number(x)) fail_msg("%s[%zu] is no number", field, i);
    return json_number_value(x);
}

static void test_series(void **state)
{
    (void)state;
    /* A sample a second, the first 2 s after the start: three within 8 s. */
    json_t *v = NULL;
    for (int64_t end = sup_now_ms() + 8000;; sup_nap_ms(200)) {
        v = get_json("/api/services/echo/series", 200);
        if (columns(v) >= 3) break;
        json_decref(v);
        if (sup_now_ms() > end) fail_msg("echo.series has no 3 samples after 8 s");
    }
    size_t n = columns(v);
    json_t *pid = json_array_get(json_object_get(v, "pid"), n - 1);
    assert_true(json_integer_value(pid) > 0);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(v, "workers"), n - 1)), 2);
    assert_true(json_integer_value(json_array_get(json_object_get(v, "rss"), n - 1)) > 0);
    /* Each sample's interval, which the charts tell gaps by: series_interval_s (1 s by
     * default), or a little more. */
    for (size_t i = 0; i < n; i++) {
        json_t *dt = json_array_get(json_object_get(v, "dt_ms"), i);
        assert_true(json_is_integer(dt));
        assert_in_range(json_integer_value(dt), 1000, 3000);
    }
    json_int_t before_last = t_at(v, n - 2), last = t_at(v, n - 1);
    json_decref(v);
    /* since: only later samples (another may have come meanwhile). */
    char path[160];
    snprintf(path, sizeof path, "/api/services/echo/series?since=%lld", (long long)before_last);
    v = get_json(path, 200);
    size_t k = columns(v);
    assert_true(k >= 1);
    assert_int_equal(t_at(v, 0), last);
    json_decref(v);
    /* max: the last N. */
    v = get_json("/api/services/echo/series?max=2", 200);
    assert_int_equal(columns(v), 2);
    assert_true(t_at(v, 1) >= last);
    json_decref(v);
    v = get_json("/api/services/echo/series?max=0", 200); /* at least 1 */
    assert_int_equal(columns(v), 1);
    json_decref(v);
    snprintf(path, sizeof path, "/api/services/echo/series?since=%lld&max=1",
             (long long)last + 3600000);
    v = get_json(path, 200);
    assert_int_equal(columns(v), 0);
    json_decref(v);
    get_error("/api/services/echo/series?since=yesterday", 400, "SHMRPC_EINVAL");
    get_error("/api/services/nobody/series", 404, "SHMRPC_ENOENT");
}

static void talk(const char *text)
{
    int fd = open(T.talk, O_WRONLY | O_APPEND | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* Waits up to 5 s for LOG_DIR/name to hold needle. */
static void wait_file_has(const char *name, const char *needle)
{
    for (int64_t end = sup_now_ms() + 5000; !strstr(sup_slurp(T.logs, name), needle);
         sup_nap_ms(20))
        if (sup_now_ms() > end) fail_msg("%s never held \"%s\"", name, needle);
}

static long long file_size(const char *name, unsigned long long *ino)
{
    char p[160];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", T.logs, name);
    if (stat(p, &st) != 0) return -1;
    if (ino) *ino = (unsigned long long)st.st_ino;
    return (long long)st.st_size;
}

typedef struct tail {
    long long offset;
    unsigned long long inode; /* sent as a string of decimal digits */
    bool reset;
    json_t *lines; /* owned by v */
    json_t *v;
} tail;

static tail log_get(const char *query)
{
    char path[256];
    snprintf(path, sizeof path, "/api/services/talker/log%s", query);
    tail t = {.v = get_json(path, 200)};
    assert_int_equal(json_object_size(t.v), 4);
    assert_true(json_is_integer(json_object_get(t.v, "offset")));
    const char *ino = json_string_value(json_object_get(t.v, "inode"));
    assert_non_null(ino);
    assert_true(ino[0] && strspn(ino, "0123456789") == strlen(ino));
    assert_true(json_is_boolean(json_object_get(t.v, "reset")));
    t.offset = json_integer_value(json_object_get(t.v, "offset"));
    t.inode = strtoull(ino, NULL, 10);
    t.reset = json_is_true(json_object_get(t.v, "reset"));
    t.lines = json_object_get(t.v, "lines");
    assert_true(json_is_array(t.lines));
    return t;
}

static tail log_after(long long after, unsigned long long inode, const char *more)
{
    char q[160];
    snprintf(q, sizeof q, "?after=%lld&inode=%llu%s", after, inode, more ? more : "");
    return log_get(q);
}

static const char *line_at(const tail *t, size_t i)
{
    return json_string_value(json_array_get(t->lines, i));
}

/* Whether line (as the log holds it: a time stamp, a blank, then the text) is text. */
static bool is_line(const char *line, const char *text)
{
    const char *sp = line ? strchr(line, ' ') : NULL;
    return sp && strcmp(sp + 1, text) == 0;
}

/* Polls after offset until a line comes (5 s at most). */
static tail log_wait(long long offset, unsigned long long inode)
{
    for (int64_t end = sup_now_ms() + 5000;; sup_nap_ms(20)) {
        tail t = log_after(offset, inode, NULL);
        if (json_array_size(t.lines) > 0 || t.reset) return t;
        assert_int_equal(t.offset, offset);
        json_decref(t.v);
        if (sup_now_ms() > end) fail_msg("no new line in talker.log after %lld", offset);
    }
}

static void test_log_follow(void **state)
{
    (void)state;
    tail t0 = log_get(""); /* the tail: nothing but whole lines */
    assert_false(t0.reset);
    unsigned long long ino0 = 0;
    assert_int_equal(t0.offset, file_size("talker.log", &ino0)); /* opened at the start */
    assert_true(t0.inode == ino0);
    talk("first line\n");
    tail t1 = log_wait(t0.offset, t0.inode);
    assert_false(t1.reset);
    assert_int_equal(t1.inode, t0.inode);
    assert_int_equal(json_array_size(t1.lines), 1);
    assert_true(is_line(line_at(&t1, 0), "first line"));
    assert_int_equal(t1.offset, file_size("talker.log", NULL));
    /* Half a line waits in the file until its end comes. */
    talk("half a");
    wait_file_has("talker.log", "half a");
    tail t2 = log_after(t1.offset, t1.inode, NULL);
    assert_int_equal(json_array_size(t2.lines), 0);
    assert_int_equal(t2.offset, t1.offset);
    assert_true(file_size("talker.log", NULL) > t1.offset);
    talk(" line\nbad \xff\xfe bytes\n");
    wait_file_has("talker.log", "bytes\n");
    tail t3 = log_after(t2.offset, t2.inode, NULL);
    assert_int_equal(json_array_size(t3.lines), 2);
    assert_true(is_line(line_at(&t3, 0), "half a line"));
    assert_true(is_line(line_at(&t3, 1), "bad \xef\xbf\xbd\xef\xbf\xbd bytes")); /* U+FFFD */
    assert_int_equal(t3.offset, file_size("talker.log", NULL));
    /* Without after: the last lines, up to the end. */
    tail t4 = log_get("");
    assert_true(json_array_size(t4.lines) >= 3);
    assert_true(
        is_line(line_at(&t4, json_array_size(t4.lines) - 1), "bad \xef\xbf\xbd\xef\xbf\xbd bytes"));
    assert_int_equal(t4.offset, t3.offset);
    /* max_bytes: a piece of a line longer than it. */
    tail t5 = log_after(t1.offset, t1.inode, "&max_bytes=10");
    assert_int_equal(json_array_size(t5.lines), 1);
    assert_int_equal(strlen(line_at(&t5, 0)), 10);
    assert_int_equal(t5.offset, t1.offset + 10);
    /* Past the end (a file that was cut, or another one): the tail again, said so. */
    tail t6 = log_after(t3.offset + 100000, 0, NULL);
    assert_true(t6.reset);
    assert_int_equal(t6.offset, t3.offset);
    assert_true(json_array_size(t6.lines) >= 3);
    /* Rotation: over 4 KiB, talker.log becomes talker.log.1 and a new file begins. */
    char line[128];
    for (int i = 0; i < 50; i++) {
        snprintf(line, sizeof line, "rotation %02d %s\n", i,
                 "................................................................");
        talk(line);
    }
    wait_file_has("talker.log", "rotation 49");
    unsigned long long ino = 0;
    file_size("talker.log", &ino);
    assert_true(ino != t3.inode);
    assert_true(file_size("talker.log.1", NULL) > 0);
    tail t7 = log_after(t3.offset, t3.inode, NULL);
    assert_true(t7.reset);
    assert_int_equal(t7.inode, ino);
    assert_int_equal(t7.offset, file_size("talker.log", NULL));
    size_t n7 = json_array_size(t7.lines);
    assert_true(n7 >= 1 && n7 <= 100);
    snprintf(line, sizeof line, "rotation 49 %s",
             "................................................................");
    assert_true(is_line(line_at(&t7, n7 - 1), line));
    /* Following the new file. */
    talk("after the rotation\n");
    tail t8 = log_wait(t7.offset, t7.inode);
    assert_false(t8.reset);
    assert_int_equal(json_array_size(t8.lines), 1);
    assert_true(is_line(line_at(&t8, 0), "after the rotation"));
    /* An inode is any unsigned 64-bit number, in decimal digits (2^64 - 1: not this file's,
     * so the tail again); nothing else is. */
    tail t9 = log_after(t8.offset, 18446744073709551615ull, NULL);
    assert_true(t9.reset);
    assert_int_equal(t9.offset, t8.offset);
    static const char *const bad[] = {"?after=x",           "?after=0&inode=18446744073709551616",
                                      "?after=0&inode=-1",  "?after=0&inode=+5",
                                      "?after=0&inode=1e3", "?after=0&inode="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "/api/services/talker/log%s", bad[i]);
        get_error(path, 400, "SHMRPC_EINVAL");
    }
    get_error("/api/services/nobody/log", 404, "SHMRPC_ENOENT");
    tail *all[] = {&t0, &t1, &t2, &t3, &t4, &t5, &t6, &t7, &t8, &t9};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        json_decref(all[i]->v);
}

/* LOG_DIR/name becomes text, by a rename (the supervisor may hold the old one open). */
static void craft(const char *name, const char *text, size_t n)
{
    char tmp[160], p[160];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", T.logs, name);
    snprintf(p, sizeof p, "%s/%s", T.logs, name);
    FILE *f = fopen(tmp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, p), 0);
}

static void craft_samples(shmrpc_buf *b, long from, long to)
{
    char line[256];
    for (long t = from; t < to; t++) {
        int n = snprintf(line, sizeof line,
                         "{\"t\": %ld, \"dt_ms\": 1000, \"pid\": 7, \"workers\": 1, \"cpu\": 1.50, "
                         "\"rss\": 4096, \"pss\": null, \"read\": 0.0, \"write\": 0.0, \"calls\": "
                         "2.000, \"errors\": 0.000, \"p50_us\": null, \"p99_us\": 1.024}\n",
                         t);
        shmrpc_buf_append(b, line, (size_t)n);
    }
}

/* With talker stopped, its files are the test's: crafted ones for the readers' edges. */
static void test_crafted_files(void **state)
{
    (void)state;
    resp r;
    post("/api/services/talker/stop", "", true, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    for (int64_t end = sup_now_ms() + 5000;; sup_nap_ms(50)) {
        json_t *v = get_json("/api/services/talker?lines=0", 200);
        bool stopped = !strcmp(state_of(v), "stopped");
        json_decref(v);
        if (stopped) break;
        if (sup_now_ms() > end) fail_msg("talker never stopped");
    }
    /* NAME.series: 4000 samples, among them lines that are none, a line of 100 KB, and a
     * last one being written; NAME.series.1: the 10 before. */
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    craft_samples(&b, 2000, 3000);
    static const char not_samples[] = "not JSON\n{\"x\": 1}\n\n";
    shmrpc_buf_append(&b, not_samples, sizeof not_samples - 1);
    char *big = malloc(100000);
    assert_non_null(big);
    memset(big, 'x', 100000);
    big[99999] = '\n';
    shmrpc_buf_append(&b, big, 100000);
    craft_samples(&b, 3000, 6000);
    static const char being_written[] = "{\"t\": 9999, \"cp";
    shmrpc_buf_append(&b, being_written, sizeof being_written - 1);
    craft("talker.series", (const char *)b.data, b.len);
    shmrpc_buf_clear(&b);
    craft_samples(&b, 1000, 1010);
    craft("talker.series.1", (const char *)b.data, b.len);
    json_t *v = get_json("/api/services/talker/series", 200);
    assert_int_equal(columns(v), 900);
    assert_int_equal(t_at(v, 0), 5100);
    assert_int_equal(t_at(v, 899), 5999);
    assert_true(json_is_null(json_array_get(json_object_get(v, "p50_us"), 0)));
    assert_true(json_is_null(json_array_get(json_object_get(v, "pss"), 0)));
    assert_true(json_number_value(json_array_get(json_object_get(v, "cpu"), 0)) == 1.5);
    json_decref(v);
    v = get_json("/api/services/talker/series?max=100000", 200);
    assert_int_equal(columns(v), 3600); /* at most */
    assert_int_equal(t_at(v, 0), 2400);
    json_decref(v);
    v = get_json("/api/services/talker/series?since=2990&max=20", 200);
    assert_int_equal(columns(v), 20); /* the last 20, past the lines that are no samples */
    assert_int_equal(t_at(v, 0), 5980);
    json_decref(v);
    v = get_json("/api/services/talker/series?since=2995&max=3600", 200);
    assert_int_equal(columns(v), 3004);
    assert_int_equal(t_at(v, 0), 2996);
    json_decref(v);
    /* ?step=S: a window of S seconds (t / 1000S) as one sample: its newest t, workers and
     * pid, the sum of its dt_ms, its rates weighted by their dt_ms, p50 by their calls,
     * the highest rss, pss and p99. */
    shmrpc_buf_clear(&b);
    static const char varied[] =
        "{\"t\": 10000, \"dt_ms\": 1000, \"pid\": 7, \"workers\": 1, \"cpu\": 10, \"rss\": 100, "
        "\"calls\": 10, \"p50_us\": 1, \"p99_us\": 5}\n"
        "{\"t\": 10500, \"dt_ms\": 3000, \"pid\": 7, \"workers\": 2, \"cpu\": 50, \"rss\": 300, "
        "\"calls\": 30, \"p50_us\": 3, \"p99_us\": 4}\n"
        "{\"t\": 11000, \"dt_ms\": 1000, \"pid\": 8, \"workers\": 1, \"cpu\": 20, \"rss\": 200, "
        "\"calls\": 0, \"p50_us\": null, \"p99_us\": null}\n"
        "{\"t\": 12500, \"dt_ms\": 1000, \"pid\": 8, \"workers\": 1, \"cpu\": 30, \"rss\": 50, "
        "\"calls\": 5, \"p50_us\": 2, \"p99_us\": 2}\n";
    shmrpc_buf_append(&b, varied, sizeof varied - 1);
    craft("talker.series", (const char *)b.data, b.len);
    v = get_json("/api/services/talker/series?since=9999&step=1", 200);
    assert_int_equal(columns(v), 3);
    assert_int_equal(t_at(v, 0), 10500);
    assert_int_equal(t_at(v, 1), 11000);
    assert_int_equal(t_at(v, 2), 12500);
    assert_true(num_at(v, "dt_ms", 0) == 4000);
    assert_true(num_at(v, "cpu", 0) == 40);   /* (10 * 1000 + 50 * 3000) / 4000 */
    assert_true(num_at(v, "calls", 0) == 25); /* (10 * 1000 + 30 * 3000) / 4000 */
    assert_float_equal(num_at(v, "p50_us", 0), 2.8, 1e-9); /* 10 000 calls at 1, 90 000 at 3 */
    assert_true(num_at(v, "p99_us", 0) == 5);
    assert_true(num_at(v, "rss", 0) == 300);
    assert_true(num_at(v, "workers", 0) == 2);
    assert_true(num_at(v, "pid", 0) == 7);
    assert_true(json_is_null(json_array_get(json_object_get(v, "p50_us"), 1))); /* no calls */
    assert_true(json_is_null(json_array_get(json_object_get(v, "p99_us"), 1)));
    assert_true(json_is_null(json_array_get(json_object_get(v, "pss"), 0))); /* none had one */
    assert_true(num_at(v, "pid", 1) == 8);
    json_decref(v);
    v = get_json("/api/services/talker/series?since=9999&step=1&max=2", 200); /* the newest */
    assert_int_equal(columns(v), 2);
    assert_int_equal(t_at(v, 0), 11000);
    json_decref(v);
    v = get_json("/api/services/talker/series?since=9999&step=2", 200); /* 10 000 to 11 999 */
    assert_int_equal(columns(v), 2);
    assert_int_equal(t_at(v, 0), 11000);
    assert_true(num_at(v, "dt_ms", 0) == 5000);
    assert_true(num_at(v, "cpu", 0) == 36); /* (10 000 + 150 000 + 20 000) / 5000 */
    assert_true(num_at(v, "pid", 0) == 8);
    json_decref(v);
    v = get_json("/api/services/talker/series?since=10000&step=1", 200); /* after 10 000 */
    assert_int_equal(columns(v), 3);
    assert_true(num_at(v, "cpu", 0) == 50);
    assert_true(num_at(v, "dt_ms", 0) == 3000);
    json_decref(v);
    /* ?span_s=S: the samples of the last S seconds by the clock, which stamps them. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long now_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    char recent[256];
    int len = snprintf(recent, sizeof recent,
                       "{\"t\": %lld, \"dt_ms\": 1000, \"cpu\": 1}\n"
                       "{\"t\": %lld, \"dt_ms\": 1000, \"cpu\": 2}\n",
                       now_ms - 120000, now_ms - 30000);
    shmrpc_buf_append(&b, recent, (size_t)len);
    craft("talker.series", (const char *)b.data, b.len);
    v = get_json("/api/services/talker/series?span_s=60", 200);
    assert_int_equal(columns(v), 1);
    assert_true(num_at(v, "cpu", 0) == 2);
    json_decref(v);
    v = get_json("/api/services/talker/series?span_s=600", 200);
    assert_int_equal(columns(v), 2);
    json_decref(v);
    /* A new NAME.series (after a rotation): the samples before are in NAME.series.1. */
    /* dt_ms: a sample's own interval, here 60 s (series_interval_s = 60); a sample
     * without it (none in its line) has null. */
    shmrpc_buf_clear(&b);
    craft_samples(&b, 2000, 2005);
    static const char intervals[] = "{\"t\": 62004, \"dt_ms\": 60000, \"pid\": 7}\n"
                                    "{\"t\": 62005, \"pid\": 7}\n";
    shmrpc_buf_append(&b, intervals, sizeof intervals - 1);
    craft("talker.series", (const char *)b.data, b.len);
    v = get_json("/api/services/talker/series?since=1005", 200);
    assert_int_equal(columns(v), 11);
    assert_int_equal(t_at(v, 0), 1006);
    assert_int_equal(t_at(v, 8), 2004);
    json_t *dt = json_object_get(v, "dt_ms");
    assert_int_equal(json_integer_value(json_array_get(dt, 0)), 1000);
    assert_int_equal(json_integer_value(json_array_get(dt, 9)), 60000);
    assert_true(json_is_null(json_array_get(dt, 10)));
    assert_true(json_is_null(json_array_get(json_object_get(v, "cpu"), 9)));
    json_decref(v);
    /* No files: no samples. */
    char p[160];
    snprintf(p, sizeof p, "%s/talker.series", T.logs);
    assert_int_equal(unlink(p), 0);
    snprintf(p, sizeof p, "%s/talker.series.1", T.logs);
    assert_int_equal(unlink(p), 0);
    v = get_json("/api/services/talker/series", 200);
    assert_int_equal(columns(v), 0);
    json_decref(v);
    /* NAME.series.1 that is NAME.series (a hard link: a rotation between the two opens, as
     * the reader sees it): its samples once, not twice. */
    char p1[160];
    snprintf(p, sizeof p, "%s/talker.series", T.logs);
    snprintf(p1, sizeof p1, "%s/talker.series.1", T.logs);
    shmrpc_buf_clear(&b);
    craft_samples(&b, 7000, 7003);
    craft("talker.series", (const char *)b.data, b.len);
    assert_int_equal(link(p, p1), 0);
    v = get_json("/api/services/talker/series", 200);
    assert_int_equal(columns(v), 3);
    assert_int_equal(t_at(v, 0), 7000);
    json_decref(v);
    /* Samples all older than ?since=: none, and NAME.series.1 not read (its own, newer,
     * would be shown). */
    assert_int_equal(unlink(p1), 0);
    shmrpc_buf_clear(&b);
    craft_samples(&b, 9000, 9002);
    craft("talker.series.1", (const char *)b.data, b.len);
    v = get_json("/api/services/talker/series?since=7005", 200);
    assert_int_equal(columns(v), 0);
    json_decref(v);
    assert_int_equal(unlink(p1), 0);
    /* A folder in NAME.series' place, or in NAME.series.1's: 500, the path and why. */
    for (int k = 0; k < 2; k++) {
        const char *dir = k ? p1 : p;
        if (!k) assert_int_equal(unlink(p), 0); /* then no NAME.series: NAME.series.1 is read */
        assert_int_equal(mkdir(dir, 0700), 0);
        resp er;
        http("GET", "/api/services/talker/series", NULL, NULL, &er);
        expect_error(&er, 500, "SHMRPC_ESYS");
        json_t *ev = body_json(&er);
        const char *msg =
            json_string_value(json_object_get(json_object_get(ev, "error"), "message"));
        char want[256];
        snprintf(want, sizeof want, "%s: ", dir);
        assert_non_null(msg);
        if (strncmp(msg, want, strlen(want)) != 0) fail_msg("%s, not %s...", msg, want);
        json_decref(ev);
        resp_free(&er);
        assert_int_equal(rmdir(dir), 0);
    }

    /* NAME.log: a line longer than an answer (64 KiB) comes in pieces by the follow; the
     * tail stops before it. */
    shmrpc_buf_clear(&b);
    shmrpc_buf_append(&b, "one\n", 4);
    shmrpc_buf_append(&b, big, 100000);
    shmrpc_buf_append(&b, "two\nthree", 9);
    craft("talker.log", (const char *)b.data, b.len);
    tail t1 = log_get("");
    assert_int_equal(json_array_size(t1.lines), 1);
    assert_string_equal(line_at(&t1, 0), "two");
    assert_int_equal(t1.offset, 4 + 100000 + 4);
    tail t2 = log_after(0, t1.inode, NULL);
    assert_int_equal(json_array_size(t2.lines), 1);
    assert_string_equal(line_at(&t2, 0), "one");
    assert_int_equal(t2.offset, 4);
    tail t3 = log_after(4, t1.inode, NULL);
    assert_int_equal(json_array_size(t3.lines), 1);
    assert_int_equal(strlen(line_at(&t3, 0)), 65536);
    assert_int_equal(t3.offset, 4 + 65536);
    tail t4 = log_after(t3.offset, t1.inode, NULL);
    assert_int_equal(json_array_size(t4.lines), 2);
    assert_int_equal(strlen(line_at(&t4, 0)), 100000 - 1 - 65536);
    assert_string_equal(line_at(&t4, 1), "two");
    assert_int_equal(t4.offset, t1.offset);
    /* No log: nothing, and a client that had read one starts again. */
    snprintf(p, sizeof p, "%s/talker.log", T.logs);
    assert_int_equal(unlink(p), 0);
    tail t5 = log_get("");
    assert_int_equal(json_array_size(t5.lines), 0);
    assert_int_equal(t5.offset, 0);
    assert_false(t5.reset);
    tail t6 = log_after(t4.offset, t1.inode, NULL);
    assert_true(t6.reset);
    assert_int_equal(t6.offset, 0);
    tail t6b = log_after(0, 0, NULL); /* from its start: nothing to start again */
    assert_false(t6b.reset);
    assert_int_equal(json_array_size(t6b.lines), 0);
    json_decref(t6b.v);
    /* Bytes that are no UTF-8, each one U+FFFD, in the tail and in the follow alike: a
     * sequence too long for its code point, a surrogate, one past U+10FFFF, a lead byte
     * without its continuation bytes, one cut by the line's end, a byte that leads
     * nothing. */
#define R "\xef\xbf\xbd"
    static const char odd[] = "a\xe0\x80\x80"
                              "b\n\xed\xa0\x80\n\xf4\x90\x80\x80\n\xe2(\xa1\n"
                              "\xf0\x9f\x98\x80 \xe2\x82\n\xc1\xbf\n";
    static const char *const shown[] = {"a" R R R "b",           R R R, R R R R, R "(" R,
                                        "\xf0\x9f\x98\x80 " R R, R R};
#undef R
    craft("talker.log", odd, sizeof odd - 1);
    tail t7 = log_get(""), t8 = log_after(0, t7.inode, NULL);
    for (tail *t = &t7; t; t = t == &t7 ? &t8 : NULL) {
        assert_int_equal(json_array_size(t->lines), 6);
        for (size_t i = 0; i < 6; i++)
            assert_string_equal(line_at(t, i), shown[i]);
        assert_int_equal(t->offset, (long long)sizeof odd - 1);
    }
    tail *all[] = {&t1, &t2, &t3, &t4, &t5, &t6, &t7, &t8};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        json_decref(all[i]->v);
    free(big);
    shmrpc_buf_destroy(&b);
}

/* echo's figures of its last sample (docs/web.md, GET /api/services/NAME): from the last
 * whole line of LOG_DIR/echo.series when it is a sample of echo's process, else null. The
 * supervisor appends to the file it opened: one renamed in its place is the test's. */
static void test_last_sample(void **state)
{
    (void)state;
    json_t *s = wait_state("running", 10000);
    json_int_t pid = json_integer_value(json_object_get(s, "pid"));
    json_decref(s);
    char good[256], other[256], deep[512] = "", zero[256];
    snprintf(good, sizeof good,
             "{\"t\": 123, \"pid\": %lld, \"cpu\": 12.5, \"calls\": 8.0, \"errors\": 2, "
             "\"p50_us\": 3.5, \"p99_us\": 9, \"pss\": 4096}\n",
             (long long)pid);
    snprintf(other, sizeof other, "{\"t\": 124, \"pid\": %lld, \"calls\": 8.0}\n",
             (long long)pid + 1);
    snprintf(zero, sizeof zero, "{\"t\": 1.5, \"pid\": %lld, \"calls\": 0, \"errors\": 0}\n",
             (long long)pid);
    for (int i = 0; i < 200; i++)
        strcat(deep, "[");
    for (int i = 0; i < 200; i++)
        strcat(deep, "]");
    strcat(deep, "\n");
    char partial[256]; /* the good sample without its line feed: being written */
    snprintf(partial, sizeof partial, "%.*s", (int)strlen(good) - 1, good);
    char cut[300]; /* a whole sample, then one being written */
    snprintf(cut, sizeof cut, "%s{\"t\": 125, \"pid\": %lld, \"cp", good, (long long)pid);
    static const char *const keys[] = {"calls_per_s", "error_rate", "cpu_percent", "p50_us",
                                       "p99_us",      "pss_bytes",  "sample_t"};
    const struct {
        const char *text, *want; /* want: the keys' values, in order, as JSON */
    } cases[] = {
        {good, "[8.0,0.25,12.5,3.5,9.0,4096.0,123]"},
        {cut, "[8.0,0.25,12.5,3.5,9.0,4096.0,123]"},
        {zero, "[0.0,null,null,null,null,null,null]"},
        {"", "[null,null,null,null,null,null,null]"},
        {partial, "[null,null,null,null,null,null,null]"},
        {other, "[null,null,null,null,null,null,null]"},
        {deep, "[null,null,null,null,null,null,null]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        craft("echo.series", cases[i].text, strlen(cases[i].text));
        json_t *v = get_json("/api/services/echo?lines=0", 200);
        json_t *got = json_array();
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            json_array_append(got, json_object_get(v, keys[k]));
        char *text = json_dumps(got, JSON_COMPACT | JSON_REAL_PRECISION(10));
        if (strcmp(text, cases[i].want) != 0)
            fail_msg("case %zu: %s, not %s", i, text, cases[i].want);
        free(text);
        json_decref(got);
        json_decref(v);
    }
}

/* Gateway calls at once, more than the page keeps connections idle for (4): each its own
 * answer. */
typedef struct at_once {
    int a, rc, ok; /* ok: answers that were a + b */
} at_once;

static void *at_once_run(void *arg)
{
    at_once *q = arg;
    for (int b = 0; b < 4; b++) {
        char extra[160], body[64], want[32];
        snprintf(extra, sizeof extra, "X-Shmrpc-Token: %s\r\nContent-Type: application/json\r\n",
                 T.token);
        snprintf(body, sizeof body, "[%d,%d]", q->a, b);
        snprintf(want, sizeof want, "%d", q->a + b);
        resp r;
        if (http_raw(T.port, NULL, "POST", "/api/echo/add", extra, body, &r) != 0) {
            q->rc = -1;
            continue;
        }
        q->ok += r.status == 200 && strcmp(r.body, want) == 0;
        resp_free(&r);
    }
    return NULL;
}

static void test_gateway_at_once(void **state)
{
    (void)state;
    json_decref(wait_state("running", 10000));
    enum { N = 8 };
    at_once q[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        q[i] = (at_once){.a = 1000 * (i + 1)};
        assert_int_equal(pthread_create(&th[i], NULL, at_once_run, &q[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        assert_int_equal(q[i].rc, 0);
        assert_int_equal(q[i].ok, 4);
    }
    T.add_calls += N * 4;
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
        cmocka_unit_test(test_pages),           cmocka_unit_test(test_hostile_requests),
        cmocka_unit_test(test_services),        cmocka_unit_test(test_gateway),
        cmocka_unit_test(test_metrics),         cmocka_unit_test(test_queues_and_maps),
        cmocka_unit_test(test_service_page),    cmocka_unit_test(test_assets),
        cmocka_unit_test(test_service_html),    cmocka_unit_test(test_series),
        cmocka_unit_test(test_log_follow),      cmocka_unit_test(test_actions),
        cmocka_unit_test(test_crafted_files),   cmocka_unit_test(test_last_sample),
        cmocka_unit_test(test_gateway_at_once), cmocka_unit_test(test_sigterm),
    };
    /* WEB_TEST_ONLY=GLOB runs only the matching tests (the mutant kit narrows by it). */
    if (getenv("WEB_TEST_ONLY")) cmocka_set_test_filter(getenv("WEB_TEST_ONLY"));
    return test_exit(cmocka_run_group_tests(tests, group_setup, group_teardown));
}
