/* SPDX-License-Identifier: MIT */
/* The JSON gateway's failures over real HTTP (docs/web.md, "The JSON gateway"): each
 * status a call into a service can end with becomes its HTTP status, with the page's JSON
 * error body naming the status and saying why. shmrpc-service runs the page, bigdata (a
 * module= service, one worker, tcp_bind none) at a shm_name of this run, a service that
 * runs but serves nothing at its shm_name (ghost), one with no address at all (plain), one
 * that prints a line that is not all UTF-8 (talker), and echo-server at a tcp_port only
 * (tcpecho). A worker killed during a call, a
 * call past the gateway's timeout (5 s), a handler's ENOMEM, nobody at the address, no
 * address known; after each failure the next call is answered, on a connection made
 * afresh. Then what the page refuses before any call: actions it does not know, scale
 * bodies without a count, services it does not know, queries that are not numbers; and
 * the log's lines as JSON whatever bytes the service wrote. A second group puts the page
 * on host = ::1 (or, with a civetweb built without IPv6, checks that the supervisor says
 * it cannot and runs on). Every wait is bounded; the group teardowns stop the supervisor
 * and remove what a failure left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "config.h"
#include "procs.h"
#include "sup_helpers.h"
#include "web_http.h"

/* What talker prints (printf's octal escapes, in the ini's exec): valid UTF-8 of 2, 3 and
 * 4 bytes, then bytes that are not UTF-8: a lone 0xff, an overlong '/', a surrogate, past
 * U+10FFFF, and a 3-byte form cut short at the line's end. */
#define TALK                                                                                       \
    "talk \\303\\251 \\342\\202\\254 \\360\\237\\230\\200 | \\377 \\300\\257 \\355\\240\\200 "     \
    "\\364\\220\\200\\200 \\342\\202"
/* The same line as the page must show it: each byte that is not UTF-8 is U+FFFD. */
#define FFFD "\xef\xbf\xbd"
#define SHOWN                                                                                      \
    "talk \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 | " FFFD " " FFFD FFFD " " FFFD FFFD FFFD         \
    " " FFFD FFFD FFFD FFFD " " FFFD FFFD

static struct {
    char dir[64];
    char ini[128];
    char big[48];   /* bigdata's shm_name */
    char ghost[48]; /* the shm_name nobody serves */
    char control[96];
    int port;
    int tcp_port; /* tcpecho's */
    pid_t sup;
    sup_groups groups;
    char token[64];
    bool keep; /* a failure's evidence: the teardown leaves the folder */
} T;

/* --- helpers -------------------------------------------------------------------------------- */

static void post(const char *path, const char *body, resp *r)
{
    char extra[160];
    snprintf(extra, sizeof extra, "X-Shmrpc-Token: %s\r\nContent-Type: application/json\r\n",
             T.token);
    assert_int_equal(http_raw(T.port, NULL, "POST", path, extra, body, r), 0);
}

/* The request, sent on a connection of its own whose answer is read later: the fd. */
static int post_later(const char *path, const char *body)
{
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Shmrpc-Token: %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     path, T.port, T.token, strlen(body), body);
    assert_true(n > 0 && (size_t)n < sizeof req);
    int fd = http_connect(T.port);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, req, (size_t)n), n);
    return fd;
}

/* The error's message in the page's JSON error body, into a static buffer. */
static const char *message(const resp *r)
{
    static char text[1024];
    json_t *v = body_json(r);
    const char *m = json_string_value(json_object_get(json_object_get(v, "error"), "message"));
    snprintf(text, sizeof text, "%s", m ? m : "");
    json_decref(v);
    return text;
}

/* The code in the page's JSON error body. */
static long long code(const resp *r)
{
    json_t *v = body_json(r);
    long long c = json_integer_value(json_object_get(json_object_get(v, "error"), "code"));
    json_decref(v);
    return c;
}

/* bigdata's pid method: the pid of the worker that answered (200 asserted). */
static pid_t worker(void)
{
    resp r;
    post("/api/big/pid", "[]", &r);
    expect_status(&r, 200);
    pid_t pid = (pid_t)strtol(r.body, NULL, 10);
    resp_free(&r);
    assert_true(pid > 0);
    return pid;
}

/* The first child of pid, waiting up to 10 s for one: 0 when none came. */
static pid_t first_child(pid_t pid)
{
    pid_t kid = 0;
    for (int64_t end = sup_now_ms() + 10000; sup_now_ms() < end; sup_nap_ms(10))
        if (sup_children(pid, &kid, 1) > 0) return kid;
    return 0;
}

/* Asserts the supervisor is alive. */
static void alive(void)
{
    assert_int_equal(sup_wait_exit(&T.sup, 0), -1);
}

/* --- the supervisor ----------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    strcpy(T.dir, "/tmp/shmrpc-web-gateway-XXXXXX");
    if (!mkdtemp(T.dir)) return -1;
    snprintf(T.ini, sizeof T.ini, "%s/service.ini", T.dir);
    snprintf(T.big, sizeof T.big, "web_gw_big_%d", (int)getpid());
    snprintf(T.ghost, sizeof T.ghost, "web_gw_ghost_%d", (int)getpid());
    T.groups.cap = 8;
    T.port = test_free_port();
    T.tcp_port = test_free_port();
    if (T.port <= 0 || T.tcp_port <= 0 || T.tcp_port == T.port) return -1;
    char ini[3072], errp[160];
    int n =
        snprintf(ini, sizeof ini,
                 "[defaults]\nlog_dir = logs\n\n[web monitor]\nport = %d\n\n"
                 "[big]\nmodule = %s\nshm_name = %s\ntcp_bind = none\n"
                 "min_proc_num = 1\nmax_proc_num = 1\n\n"
                 "[ghost]\nexec = sh -c 'exec tail --pid=$PPID -f /dev/null'\nshm_name = %s\n"
                 "wait_until_completed = false\n\n"
                 "[plain]\nexec = sh -c 'exec tail --pid=$PPID -f /dev/null'\n"
                 "wait_until_completed = false\n\n"
                 "[talker]\nexec = sh -c 'printf \"%s\\n\"; exec tail --pid=$PPID -f /dev/null'\n"
                 "wait_until_completed = false\n\n"
                 "[tcpecho]\nexec = %s --workers 1 tcp://127.0.0.1:%d\ntcp_port = %d\n",
                 T.port, BIGDATA_MODULE, T.big, T.ghost, TALK, ECHO_SERVER, T.tcp_port, T.tcp_port);
    if (n < 0 || (size_t)n >= sizeof ini || sup_write_file(T.ini, ini) != 0) return -1;
    if (cfg_control_address(T.ini, T.control, sizeof T.control) != 0) return -1;
    snprintf(errp, sizeof errp, "%s/supervisor.err", T.dir);
    T.sup = sup_spawn(T.ini, errp, true, 120, NULL);
    if (T.sup < 0) return -1;
    resp r;
    if (http_wait_ok(T.port, "/api/token", 10000, &T.sup, &r) != 0) return -1;
    json_t *v = json_loadb(r.body, r.len, 0, NULL);
    const char *tok = json_string_value(json_object_get(v, "token"));
    if (!tok || strlen(tok) != 32) return -1;
    snprintf(T.token, sizeof T.token, "%s", tok);
    json_decref(v);
    resp_free(&r);
    /* Every service's process group, for the teardown; bigdata answering. */
    static const char *const names[] = {"big", "ghost", "plain", "talker", "tcpecho"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[64];
        snprintf(path, sizeof path, "/api/services/%s", names[i]);
        for (int64_t end = sup_now_ms() + 10000;; sup_nap_ms(20)) {
            if (http_raw(T.port, NULL, "GET", path, NULL, NULL, &r) != 0 || r.status != 200)
                return -1;
            v = json_loadb(r.body, r.len, 0, NULL);
            resp_free(&r);
            json_int_t pid = json_integer_value(json_object_get(v, "pid"));
            json_decref(v);
            if (pid > 0) {
                sup_groups_add(&T.groups, (pid_t)pid);
                break;
            }
            if (sup_now_ms() > end) return -1;
        }
    }
    char extra[160];
    snprintf(extra, sizeof extra, "X-Shmrpc-Token: %s\r\nContent-Type: application/json\r\n",
             T.token);
    for (int64_t end = sup_now_ms() + 10000;; sup_nap_ms(50)) {
        if (http_raw(T.port, NULL, "POST", "/api/big/pid", extra, "[]", &r) != 0) return -1;
        int status = r.status;
        resp_free(&r);
        if (status == 200) break;
        if (sup_now_ms() > end) return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sup_end(&T.sup);
    sup_groups_kill(&T.groups);
    sup_remove_segments(T.big);
    sup_remove_tcp_stats(T.tcp_port);
    if (T.control[0]) sup_remove_segments(T.control + strlen("shm://"));
    if (T.keep)
        fprintf(stderr, "web_gateway: %s kept for what it shows\n", T.dir);
    else
        sup_rm_tree(T.dir);
    return 0;
}

/* --- the statuses --------------------------------------------------------------------------- */

/* The worker dies during the call: 502 SHMRPC_EPEERDIED; the next call is answered by the
 * worker the server started in its place. */
static void test_worker_died(void **state)
{
    (void)state;
    pid_t w = worker();
    int fd = post_later("/api/big/helper", "[20000]");
    /* helper runs `sleep` through system(): the call is in the handler once it has a child. */
    pid_t kid = first_child(w);
    assert_true(kid > 0);
    assert_int_equal(kill(w, SIGKILL), 0);
    resp r;
    assert_int_equal(http_read_answer(fd, &r), 0);
    close(fd);
    kill(kid, SIGKILL); /* the helper's sh (or sleep): not the test's to leave behind */
    expect_error(&r, 502, "SHMRPC_EPEERDIED");
    assert_int_equal(code(&r), SHMRPC_EPEERDIED);
    if (strncmp(message(&r), "helper: ", 8) != 0) fail_msg("message: %s", message(&r));
    resp_free(&r);
    pid_t again = 0;
    for (int64_t end = sup_now_ms() + 10000; sup_now_ms() < end && again <= 0; sup_nap_ms(50)) {
        post("/api/big/pid", "[]", &r);
        if (r.status == 200) again = (pid_t)strtol(r.body, NULL, 10);
        resp_free(&r);
    }
    assert_true(again > 0 && again != w);
    alive();
}

/* A call past the gateway's timeout: 504 SHMRPC_ETIMEDOUT; then the next is answered. */
static void test_timed_out(void **state)
{
    (void)state;
    pid_t w = worker();
    resp r;
    post("/api/big/helper", "[6500]", &r);
    expect_error(&r, 504, "SHMRPC_ETIMEDOUT");
    assert_int_equal(code(&r), SHMRPC_ETIMEDOUT);
    if (strncmp(message(&r), "helper: ", 8) != 0) fail_msg("message: %s", message(&r));
    resp_free(&r);
    /* The same worker, once its handler is done (up to 1.5 s later): the connection the
     * timeout left was not reused for it. */
    pid_t again = 0;
    for (int64_t end = sup_now_ms() + 15000; sup_now_ms() < end && again <= 0; sup_nap_ms(50)) {
        post("/api/big/pid", "[]", &r);
        if (r.status == 200) again = (pid_t)strtol(r.body, NULL, 10);
        resp_free(&r);
    }
    assert_int_equal(again, w);
    alive();
}

/* A handler's own failure with a status the gateway has no HTTP status for (ENOMEM):
 * 500, the status and the handler's message as they came. */
static void test_handler_enomem(void **state)
{
    (void)state;
    resp r;
    post("/api/big/grow", "[4611686018427387904]", &r);
    expect_error(&r, 500, "SHMRPC_ENOMEM");
    assert_int_equal(code(&r), SHMRPC_ENOMEM);
    assert_non_null(strstr(message(&r), "grow: 4611686018427387904 bytes"));
    resp_free(&r);
    assert_true(worker() > 0);
    alive();
}

/* Arguments the signature refuses: 400 SHMRPC_EINVAL before any call. */
static void test_bad_arguments(void **state)
{
    (void)state;
    resp r;
    post("/api/big/spin", "[\"ten\"]", &r);
    expect_error(&r, 400, "SHMRPC_EINVAL");
    assert_int_equal(code(&r), SHMRPC_EINVAL);
    assert_non_null(strstr(message(&r), "spin: "));
    resp_free(&r);
    post("/api/big/nope", "[]", &r);
    expect_error(&r, 404, "SHMRPC_ENOENT");
    assert_non_null(strstr(message(&r), "no method 'nope'"));
    resp_free(&r);
    /* A method's name that is not UTF-8 (%FF): the error body stays JSON, and says so. */
    post("/api/big/%FF", "[]", &r);
    expect_error(&r, 404, "SHMRPC_ENOENT");
    assert_string_equal(message(&r), "(a message that is not UTF-8)");
    resp_free(&r);
    alive();
}

/* A service that runs but serves nothing at its address: 503 SHMRPC_EUNAVAIL naming the
 * address, each time (no connection is kept from a failed one). */
static void test_nobody_there(void **state)
{
    (void)state;
    char want[96];
    snprintf(want, sizeof want, "shm://%s: ", T.ghost);
    for (int i = 0; i < 2; i++) {
        resp r;
        post("/api/ghost/add", "[1,2]", &r);
        expect_error(&r, 503, "SHMRPC_EUNAVAIL");
        assert_int_equal(code(&r), SHMRPC_EUNAVAIL);
        if (strncmp(message(&r), want, strlen(want)) != 0)
            fail_msg("message: %s (want %s...)", message(&r), want);
        resp_free(&r);
    }
    alive();
}

/* A service with neither shm_name nor tcp_port: 503, and why. */
static void test_no_address(void **state)
{
    (void)state;
    resp r;
    post("/api/plain/add", "[1,2]", &r);
    expect_error(&r, 503, "SHMRPC_EUNAVAIL");
    assert_non_null(strstr(message(&r), "does not know where this service answers"));
    resp_free(&r);
    alive();
}

/* The control actions through the page: an action it does not know is 404 and says which
 * it knows; a scale without a count of workers is 400, whatever else its body holds; a
 * service it does not know is 404 and lists those it does. A count as {"workers": N},
 * [N] or N is taken. */
static void test_actions_refused(void **state)
{
    (void)state;
    resp r;
    post("/api/services/big/frobnicate", "", &r);
    expect_error(&r, 404, "SHMRPC_ENOENT");
    assert_string_equal(message(&r), "no such action: start, stop, restart and scale are");
    resp_free(&r);
    static const char *const bad[] = {
        "{\"workers\":-1}",         "\"two\"",  "[]", "{}", "1.5", "true",
        "{\"workers\":4294967296}", "not json", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        post("/api/services/big/scale", bad[i], &r);
        if (r.status != 400 ||
            strcmp(message(&r), "scale takes {\"workers\": N}, a count of workers") != 0)
            fail_msg("scale %s: %d %s", bad[i], r.status, r.body);
        expect_error(&r, 400, "SHMRPC_EINVAL");
        resp_free(&r);
    }
    static const char *const good[] = {"{\"workers\":1}", "[1]", "1"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        post("/api/services/big/scale", good[i], &r);
        if (r.status != 200) fail_msg("scale %s: %d %s", good[i], r.status, r.body);
        resp_free(&r);
    }
    post("/api/services/nosuch/restart", "", &r);
    expect_error(&r, 404, "SHMRPC_ENOENT");
    assert_string_equal(
        message(&r), "no service 'nosuch'; the services are: big, ghost, plain, talker, tcpecho");
    resp_free(&r);
    assert_true(worker() > 0);
    alive();
}

/* Queries that are not numbers: 400, naming the parameter; nothing read. */
static void test_queries_refused(void **state)
{
    (void)state;
    const struct {
        const char *path, *msg;
    } cases[] = {
        {"/api/services/talker/log?max_bytes=abc", "?max_bytes= takes an integer"},
        {"/api/services/talker/log?max_bytes=5x", "?max_bytes= takes an integer"},
        {"/api/services/talker/log?after=-", "?after= takes an integer"},
        {"/api/services/talker/log?after=0&inode=-1",
         "?inode= takes the decimal digits of an inode number"},
        {"/api/services/talker/log?after=0&inode=99999999999999999999",
         "?inode= takes the decimal digits of an inode number"},
        {"/api/services/big/series?max=", "?max= takes an integer"},
        {"/api/services/big/series?since=1e3", "?since= takes an integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        resp r;
        assert_int_equal(http_raw(T.port, NULL, "GET", cases[i].path, NULL, NULL, &r), 0);
        if (r.status != 400 || strcmp(message(&r), cases[i].msg) != 0)
            fail_msg("%s: %d %s", cases[i].path, r.status, r.body);
        expect_error(&r, 400, "SHMRPC_EINVAL");
        resp_free(&r);
    }
    alive();
}

/* No line of talker came, or one holds a NUL: what the page said (twice) and what the log
 * holds, kept for the next one to read (twice in a coverage build, a line that began with
 * NUL bytes, which a C string of either would hide). The folder stays; the supervisor's
 * descriptors are listed, in case one of them is not the file it was opened as. */
static void log_evidence(const json_t *v, const char *what)
{
    T.keep = true;
    char *dump = json_dumps(v, JSON_ENSURE_ASCII | JSON_COMPACT); /* NUL as \u0000 */
    fprintf(stderr, "web_gateway: the page's answer: %s\n", dump ? dump : "(none)");
    free(dump);
    /* Asked again: a file that holds the NULs shows them again, a read that raced the
     * supervisor's append (the file is whole) does not. */
    resp r;
    if (http_raw(T.port, NULL, "GET", "/api/services/talker/log", NULL, NULL, &r) == 0) {
        fprintf(stderr, "web_gateway: asked again, %d: %.*s\n", r.status, (int)r.len, r.body);
        resp_free(&r);
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "echo 'web_gateway: the log:'; ls -li %s/logs; od -A d -c -N 1024 %s/logs/talker.log; "
             "echo 'web_gateway: the descriptors of the supervisor:'; ls -lv /proc/%d/fd",
             T.dir, T.dir, (int)T.sup);
    fflush(stderr);
    if (system(cmd) != 0) fprintf(stderr, "web_gateway: (%s: not all of it)\n", cmd);
    fail_msg("%s; %s kept", what, T.dir);
}

/* The log's lines as JSON strings, whatever the service wrote: valid UTF-8 as it came,
 * each byte that is not UTF-8 as U+FFFD; ?max_bytes= bounds the text of the lines. */
static void test_log_not_utf8(void **state)
{
    (void)state;
    const char *shown = NULL;
    json_t *v = NULL;
    for (int64_t end = sup_now_ms() + 10000; !shown; sup_nap_ms(50)) {
        resp r;
        assert_int_equal(http_raw(T.port, NULL, "GET", "/api/services/talker/log", NULL, NULL, &r),
                         0);
        expect_status(&r, 200);
        json_decref(v);
        /* NUL allowed: a line that holds one is shown below, not refused as JSON. */
        v = json_loadb(r.body, r.len, JSON_ALLOW_NUL, NULL);
        if (!v) fprintf(stderr, "not JSON: %.*s\n", (int)r.len, r.body);
        assert_non_null(v);
        resp_free(&r);
        json_t *lines = json_object_get(v, "lines");
        for (size_t i = 0; i < json_array_size(lines) && !shown; i++) {
            json_t *line = json_array_get(lines, i);
            const char *text = json_string_value(line);
            if (text && strlen(text) != json_string_length(line))
                log_evidence(v, "a line of talker's log holds a NUL byte");
            if (text && strstr(text, "talk ")) shown = text;
        }
        if (!shown && sup_now_ms() > end) log_evidence(v, "no line of talker within 10 s");
    }
    /* The supervisor may put a time before it: the line ends with what was written. */
    const char *at = strstr(shown, "talk ");
    if (strcmp(at, SHOWN) != 0) fail_msg("shown '%s', want '%s'", at, SHOWN);
    json_decref(v);
    /* Fewer bytes than the line: not shown in part. */
    resp r;
    assert_int_equal(
        http_raw(T.port, NULL, "GET", "/api/services/talker/log?max_bytes=8", NULL, NULL, &r), 0);
    expect_status(&r, 200);
    v = body_json(&r);
    resp_free(&r);
    json_t *lines = json_object_get(v, "lines");
    for (size_t i = 0; i < json_array_size(lines); i++)
        assert_null(strstr(json_string_value(json_array_get(lines, i)), "talk "));
    json_decref(v);
    alive();
}

/* A gateway body of blanks only is no arguments. */
static void test_blank_body(void **state)
{
    (void)state;
    resp r;
    post("/api/big/pid", " \t\r\n ", &r);
    expect_status(&r, 200);
    assert_true(strtol(r.body, NULL, 10) > 0);
    resp_free(&r);
    post("/api/big/spin", "  ", &r);
    expect_error(&r, 400, "SHMRPC_EINVAL");
    resp_free(&r);
}

/* The call count in fail's message ("fail: call N of this worker"). */
static int fail_calls(const resp *r)
{
    const char *at = strstr(message(r), "fail: call ");
    return at ? atoi(at + strlen("fail: call ")) : -1;
}

/* Each status a handler ends with, as the page answers it: the HTTP status of its kind,
 * the status's name and code, the handler's message. A changed table (EMISMATCH) is
 * tried once more on a fresh connection: the handler ran twice; any other failure once. */
static void test_each_status(void **state)
{
    (void)state;
    const struct {
        int code, http;
        const char *name;
    } cases[] = {
        {SHMRPC_EINVAL, 400, "SHMRPC_EINVAL"},     {SHMRPC_ENOENT, 404, "SHMRPC_ENOENT"},
        {SHMRPC_ETOOBIG, 413, "SHMRPC_ETOOBIG"},   {SHMRPC_EHANDLER, 500, "SHMRPC_EHANDLER"},
        {SHMRPC_ENOMEM, 500, "SHMRPC_ENOMEM"},     {SHMRPC_EPEERDIED, 502, "SHMRPC_EPEERDIED"},
        {SHMRPC_EPROTO, 502, "SHMRPC_EPROTO"},     {SHMRPC_EMISMATCH, 502, "SHMRPC_EMISMATCH"},
        {SHMRPC_EVERSION, 502, "SHMRPC_EVERSION"}, {SHMRPC_EPERM, 502, "SHMRPC_EPERM"},
        {SHMRPC_EUNAVAIL, 503, "SHMRPC_EUNAVAIL"}, {SHMRPC_ECLOSED, 503, "SHMRPC_ECLOSED"},
        {SHMRPC_EBUSY, 503, "SHMRPC_EBUSY"},       {SHMRPC_ETIMEDOUT, 504, "SHMRPC_ETIMEDOUT"},
    };
    resp r;
    char body[32];
    post("/api/big/fail", "[-1]", &r);
    int calls = fail_calls(&r);
    resp_free(&r);
    assert_true(calls > 0);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(body, sizeof body, "[%d]", cases[i].code);
        post("/api/big/fail", body, &r);
        if (r.status != cases[i].http) fail_msg("%s: %d %s", cases[i].name, r.status, r.body);
        expect_error(&r, cases[i].http, cases[i].name);
        assert_int_equal(code(&r), cases[i].code);
        int runs = cases[i].code == SHMRPC_EMISMATCH ? 2 : 1;
        if (fail_calls(&r) != calls + runs)
            fail_msg("%s: '%s' (the handler's calls were %d before)", cases[i].name, message(&r),
                     calls);
        calls += runs;
        resp_free(&r);
    }
    /* Not a status: the handler's bug, said as such. */
    post("/api/big/fail", "[7]", &r);
    expect_error(&r, 500, "SHMRPC_EHANDLER");
    assert_non_null(strstr(message(&r), "returned 7, which is not a status"));
    resp_free(&r);
    post("/api/big/fail", "[0]", &r);
    expect_status(&r, 200);
    resp_free(&r);
    alive();
}

/* talker's log made unreadable (a folder in its place): the log's page is 500 with the
 * path and why; the service's page still answers, its log empty and log_error saying why. */
static void test_log_unreadable(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/logs/talker.log", T.dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    resp r;
    assert_int_equal(http_raw(T.port, NULL, "GET", "/api/services/talker/log", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 500);
    if (strncmp(message(&r), path, strlen(path)) != 0 || message(&r)[strlen(path)] != ':')
        fail_msg("%s", r.body);
    resp_free(&r);
    assert_int_equal(http_raw(T.port, NULL, "GET", "/api/services/talker", NULL, NULL, &r), 0);
    expect_status(&r, 200);
    json_t *v = body_json(&r);
    resp_free(&r);
    assert_int_equal(json_array_size(json_object_get(v, "log")), 0);
    const char *why = json_string_value(json_object_get(v, "log_error"));
    if (!why || !*why) fail_msg("no log_error");
    json_decref(v);
    alive();
}

/* A service that answers at its tcp_port only (no shm_name): the supervisor waited for it
 * to answer there, the gateway calls it over TCP, and /metrics counts its calls from the
 * TCP server's statistics. */
static void test_tcp_only_service(void **state)
{
    (void)state;
    char said[128];
    snprintf(said, sizeof said, "tcpecho: answering at tcp://127.0.0.1:%d, ", T.tcp_port);
    assert_non_null(strstr(sup_slurp(T.dir, "supervisor.err"), said));
    resp r;
    for (int i = 0; i < 3; i++) {
        post("/api/tcpecho/add", "[40,2]", &r);
        expect_status(&r, 200);
        assert_string_equal(r.body, "42");
        resp_free(&r);
    }
    static const char key[] = "shmrpc_calls_total{service=\"tcpecho\",method=\"add\"} ";
    long calls = -1;
    for (int64_t end = sup_now_ms() + 10000; calls != 3; sup_nap_ms(50)) {
        assert_int_equal(http_raw(T.port, NULL, "GET", "/metrics", NULL, NULL, &r), 0);
        expect_status(&r, 200);
        const char *at = strstr(r.body, key);
        calls = at ? strtol(at + strlen(key), NULL, 10) : -1;
        resp_free(&r);
        if (calls != 3 && sup_now_ms() > end) fail_msg("tcpecho's add calls: %ld", calls);
    }
    alive();
}

/* --- a page on IPv6 loopback ------------------------------------------------------------ */

static struct {
    char dir[64];
    char control[96];
    int port;
    pid_t sup;
    bool no_ipv6; /* this civetweb cannot listen on IPv6 */
} V;

#define NO_IPV6 ": this civetweb has no IPv6; running without the page"

/* One request to [::1]:V.port with the Host header host, Connection: close; the answer in
 * r. -1: no connection or no answer. */
static int v6_request(const char *method, const char *path, const char *host, const char *extra,
                      const char *body, resp *r)
{
    memset(r, 0, sizeof *r);
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)V.port)};
    sa.sin6_addr = in6addr_loopback;
    char req[1024];
    int n =
        snprintf(req, sizeof req,
                 "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %zu\r\nConnection: close\r\n"
                 "\r\n%s",
                 method, path, host, extra ? extra : "", body ? strlen(body) : 0, body ? body : "");
    int rc = -1;
    if (n > 0 && (size_t)n < sizeof req && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        write(fd, req, (size_t)n) == n)
        rc = http_read_answer(fd, r);
    close(fd);
    return rc;
}

static int v6_setup(void **state)
{
    (void)state;
    strcpy(V.dir, "/tmp/shmrpc-web-v6-XXXXXX");
    if (!mkdtemp(V.dir)) return -1;
    V.port = test_free_port();
    if (V.port <= 0) return -1;
    char ini[512], path[128], errp[160];
    snprintf(ini, sizeof ini,
             "[defaults]\nlog_dir = logs\n\n[web monitor]\nhost = ::1\nport = %d\n\n"
             "[plain]\nexec = sh -c 'exec tail --pid=$PPID -f /dev/null'\n"
             "wait_until_completed = false\n",
             V.port);
    snprintf(path, sizeof path, "%s/service.ini", V.dir);
    if (sup_write_file(path, ini) != 0) return -1;
    if (cfg_control_address(path, V.control, sizeof V.control) != 0) return -1;
    snprintf(errp, sizeof errp, "%s/supervisor.err", V.dir);
    /* Its registry of supervisors in the test's folder, to be read below. */
    const char *env[] = {"XDG_RUNTIME_DIR", V.dir, NULL};
    V.sup = sup_spawn(path, errp, true, 60, env);
    if (V.sup < 0) return -1;
    /* The page answers, or says it cannot listen there (a civetweb built without IPv6, as
     * Debian 12's is). */
    char host[64];
    snprintf(host, sizeof host, "[::1]:%d", V.port);
    for (int64_t end = sup_now_ms() + 10000;; sup_nap_ms(20)) {
        resp r;
        int ok = v6_request("GET", "/api/token", host, NULL, NULL, &r) == 0 && r.status == 200;
        resp_free(&r);
        if (ok) return 0;
        if (strstr(sup_slurp(V.dir, "supervisor.err"), NO_IPV6)) {
            V.no_ipv6 = true;
            return 0;
        }
        if (sup_now_ms() > end || sup_wait_exit(&V.sup, 0) != -1) return -1;
    }
}

static int v6_teardown(void **state)
{
    (void)state;
    sup_end(&V.sup);
    if (V.control[0]) sup_remove_segments(V.control + strlen("shm://"));
    sup_rm_tree(V.dir);
    return 0;
}

static void ipv6_page_answers(void)
{
    char host[64], extra[160];
    snprintf(host, sizeof host, "[::1]:%d", V.port);
    resp r;
    assert_int_equal(v6_request("GET", "/api/token", host, NULL, NULL, &r), 0);
    expect_status(&r, 200);
    json_t *v = body_json(&r);
    const char *tok = json_string_value(json_object_get(v, "token"));
    assert_non_null(tok);
    assert_int_equal(strlen(tok), 32);
    snprintf(extra, sizeof extra, "X-Shmrpc-Token: %s\r\nContent-Type: application/json\r\n", tok);
    json_decref(v);
    resp_free(&r);
    assert_int_equal(v6_request("GET", "/healthz", "localhost", NULL, NULL, &r), 0);
    expect_status(&r, 200);
    resp_free(&r);
    assert_int_equal(v6_request("GET", "/healthz", "example.com", NULL, NULL, &r), 0);
    expect_error(&r, 403, "SHMRPC_EPERM");
    resp_free(&r);
    assert_int_equal(v6_request("POST", "/api/services/plain/frobnicate", host, extra, "{}", &r),
                     0);
    expect_error(&r, 404, "SHMRPC_ENOENT");
    assert_string_equal(message(&r), "no such action: start, stop, restart and scale are");
    resp_free(&r);
    /* Nothing at 127.0.0.1: the page is on ::1 only. */
    assert_int_equal(http_connect(V.port), -1);
}

/* host = ::1: the page answers there, to [::1] and the loopback names, not to another name;
 * a POST is refused for what it is (its deadline armed for an IPv6 peer). A civetweb
 * without IPv6 cannot listen there: the supervisor says so, with the address, and runs its
 * services without the page. Either way the registry of supervisors gives the page's
 * address with brackets, as a browser takes it, and SIGTERM ends it with 0. */
static void test_ipv6_page(void **state)
{
    (void)state;
    char reg[160], want[96];
    snprintf(reg, sizeof reg, "shmrpc/%d.sup", (int)V.sup);
    snprintf(want, sizeof want, "\npage=http://[::1]:%d/\n", V.port);
    if (!strstr(sup_slurp(V.dir, reg), want))
        fail_msg("%s/%s: '%s' (want %s)", V.dir, reg, sup_slurp(V.dir, reg), want);
    if (V.no_ipv6) {
        print_message("this civetweb has no IPv6: the page's refusal checked, not the page\n");
        snprintf(want, sizeof want, "web monitor: cannot listen on [::1]:%d" NO_IPV6, V.port);
        assert_non_null(strstr(sup_slurp(V.dir, "supervisor.err"), want));
        assert_int_equal(http_connect(V.port), -1);
        for (int64_t end = sup_now_ms() + 5000;
             !strstr(sup_slurp(V.dir, "logs/status.json"), "\"plain\": {\"state\": \"running\"");
             sup_nap_ms(20))
            assert_true(sup_now_ms() < end);
    } else {
        ipv6_page_answers();
    }
    int st = sup_stop(&V.sup, 10000);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments),   cmocka_unit_test(test_handler_enomem),
        cmocka_unit_test(test_worker_died),     cmocka_unit_test(test_timed_out),
        cmocka_unit_test(test_nobody_there),    cmocka_unit_test(test_no_address),
        cmocka_unit_test(test_actions_refused), cmocka_unit_test(test_queries_refused),
        cmocka_unit_test(test_log_not_utf8),    cmocka_unit_test(test_each_status),
        cmocka_unit_test(test_log_unreadable),  cmocka_unit_test(test_tcp_only_service),
        cmocka_unit_test(test_blank_body),
    };
    const struct CMUnitTest v6_tests[] = {cmocka_unit_test(test_ipv6_page)};
    int failed = cmocka_run_group_tests_name("web_gateway", tests, group_setup, group_teardown);
    return failed + cmocka_run_group_tests_name("web_ipv6", v6_tests, v6_setup, v6_teardown);
}
