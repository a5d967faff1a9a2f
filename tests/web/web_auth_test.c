/* SPDX-License-Identifier: MIT */
/* The management page's shared secret (docs/web.md, "The secret"). First web_auth.c on
 * its own, with a clock the test sets: the throttle, sessions' lifetime and eviction,
 * logout, secret files it refuses, the secret read out of a JSON login. Then real
 * supervisors over real HTTP on loopback: one listening on 0.0.0.0 with a secret_file
 * (which config allows only with a secret) is reached at 127.0.0.1: every page but the
 * login's needs a session, the login is throttled, POSTs need the token as well, logout
 * ends the session; pages on 127.0.0.1 that require the secret of [defaults] or, with
 * `secret_file = none`, not; and no page when the secret cannot be read as it starts.
 * Every wait is bounded; the teardown removes what a failure left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmrpc/buf.h>
#include <shmrpc/status.h>

#include "config.h"
#include "procs.h"
#include "sup_helpers.h"
#include "web_auth.h"
#include "web_http.h"

/* The secret, and as a form field (URL-encoded, with the file's trailing newline, which
 * is not part of it). */
#define SECRET "web test secret/with+plus&amp=1"
#define SECRET_FORM "secret=web+test+secret%2Fwith%2Bplus%26amp%3D1%0A"

/* --- web_auth.c on its own ---------------------------------------------------------------- */

static void write_secret(const char *path, const char *text, mode_t mode)
{
    assert_int_equal(sup_write_file(path, text), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_table(void **state)
{
    (void)state;
    char dir[] = "/tmp/shmrpc-web-auth-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/web.secret", dir);
    web_auth a;
    char err[512];
    /* Refused as the TCP transport refuses it: missing, readable by others. */
    int rc = web_auth_init(&a, path, err, sizeof err);
    web_auth_destroy(&a);
    assert_int_equal(rc, SHMRPC_ESYS(ENOENT));
    assert_non_null(strstr(err, path));
    write_secret(path, SECRET "\n", 0644);
    rc = web_auth_init(&a, path, err, sizeof err);
    web_auth_destroy(&a);
    assert_int_equal(rc, SHMRPC_EPERM);
    assert_non_null(strstr(err, "chmod 600"));
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(web_auth_init(&a, path, err, sizeof err), 0);

    /* One compared attempt a second; successes do not count. */
    const size_t n = strlen(SECRET);
    char id[WEB_AUTH_ID_LEN + 1], id2[WEB_AUTH_ID_LEN + 1];
    int64_t t = 5000000;
    assert_int_equal(web_auth_login(&a, "not " SECRET, n + 4, t, id), SHMRPC_EPERM);
    assert_int_equal(web_auth_login(&a, SECRET, n, t + 999, id), SHMRPC_EBUSY);
    assert_int_equal(web_auth_login(&a, SECRET "\n", n + 1, t + 1000, id), SHMRPC_EPERM);
    assert_int_equal(web_auth_login(&a, SECRET, n, t + 2000, id), 0);
    assert_int_equal(strlen(id), WEB_AUTH_ID_LEN);
    assert_int_equal(strspn(id, "0123456789abcdef"), WEB_AUTH_ID_LEN);
    assert_int_equal(web_auth_login(&a, SECRET, n, t + 2001, id2), 0);
    assert_string_not_equal(id, id2);
    /* The failure before them still governs: 1 s after t + 1000. */
    assert_int_equal(web_auth_login(&a, SECRET, n - 1, t + 1999, id2), SHMRPC_EBUSY);
    assert_int_equal(web_auth_login(&a, SECRET, n - 1, t + 2002, id2), SHMRPC_EPERM);
    assert_int_equal(web_auth_login(&a, SECRET, n, t + 2500, id2), SHMRPC_EBUSY);
    assert_int_equal(web_auth_login(&a, SECRET, n, t + 3002, id2), 0);

    /* Sessions: live for 12 h from their login, then gone; logout ends one. */
    assert_true(web_auth_session_ok(&a, id, t + 2000));
    assert_true(web_auth_session_ok(&a, id, t + 2000 + WEB_AUTH_LIFETIME_MS - 1));
    assert_false(web_auth_session_ok(&a, NULL, t + 2000));
    assert_false(web_auth_session_ok(&a, "", t + 2000));
    char other[WEB_AUTH_ID_LEN + 1];
    memcpy(other, id, sizeof other);
    other[7] = other[7] == '0' ? '1' : '0';
    assert_false(web_auth_session_ok(&a, other, t + 2000));
    other[WEB_AUTH_ID_LEN - 1] = '\0';
    assert_false(web_auth_session_ok(&a, other, t + 2000));
    assert_false(web_auth_session_ok(&a, id, t + 2000 + WEB_AUTH_LIFETIME_MS));
    assert_false(web_auth_session_ok(&a, id, t + 2000)); /* dropped */
    assert_true(web_auth_session_ok(&a, id2, t + 3002));
    web_auth_logout(&a, id2);
    assert_false(web_auth_session_ok(&a, id2, t + 3002));
    web_auth_destroy(&a);

    /* A full table: a login ends the oldest session. */
    assert_int_equal(web_auth_init(&a, path, err, sizeof err), 0);
    static char ids[WEB_AUTH_SESSIONS + 1][WEB_AUTH_ID_LEN + 1];
    for (int i = 0; i <= WEB_AUTH_SESSIONS; i++)
        assert_int_equal(web_auth_login(&a, SECRET, n, t + i, ids[i]), 0);
    int64_t now = t + WEB_AUTH_SESSIONS;
    assert_false(web_auth_session_ok(&a, ids[0], now));
    for (int i = 1; i <= WEB_AUTH_SESSIONS; i++)
        assert_true(web_auth_session_ok(&a, ids[i], now));
    /* A free slot is taken before a live session is ended. */
    web_auth_logout(&a, ids[5]);
    assert_int_equal(web_auth_login(&a, SECRET, n, now + 1, id), 0);
    assert_true(web_auth_session_ok(&a, ids[1], now + 1));
    web_auth_destroy(&a);
    sup_rm_tree(dir);
}

/* The secret of a JSON login, read without jansson: escapes, other members of any kind,
 * and what is no such object. */
static void test_json_secret(void **state)
{
    (void)state;
    static const struct {
        const char *body, *want; /* want NULL: refused */
        size_t want_len;
    } cases[] = {
        {"{\"secret\": \"abc\"}", "abc", 3},
        {" \r\n{ \"a\" : [1, -2.5e+3, 0, {\"b\": null, \"c\": [[], {}]}], \"t\": true,\t"
         "\"secret\" : \"x\\\"y\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20ac\\ud83d\\ude00\", "
         "\"f\": false, \"s\": \"\\u0041\" } \n",
         "x\"y\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 19},
        {"{\"\\u0073ecret\": \"k\"}", "k", 1},
        {"{\"secret\": \"\\u0000x\"}", "\0x", 2},
        {"{\"secret\": \"\xff raw\"}", "\xff raw", 5}, /* compared as bytes */
        {"{\"secret\": \"\"}", "", 0},
        {"{\"secrets\": \"no\"}", NULL, 0},
        {"{\"secret\": 5}", NULL, 0},
        {"{\"secret\": null}", NULL, 0},
        {"{\"secret\": \"a\", \"secret\": \"b\"}", NULL, 0},
        {"[\"secret\", \"a\"]", NULL, 0},
        {"{\"secret\": \"a\"} x", NULL, 0},
        {"{\"secret\": \"a\"", NULL, 0},
        {"{\"secret\": \"a}", NULL, 0},
        {"{\"secret\": \"a\",}", NULL, 0},
        {"{\"secret\": \"\\ud800\"}", NULL, 0},
        {"{\"secret\": \"\\udc00\"}", NULL, 0},
        {"{\"secret\": \"\\u00g0\"}", NULL, 0},
        {"{\"secret\": \"\\x\"}", NULL, 0},
        {"{\"secret\": \"a\x01\"}", NULL, 0},
        {"{\"x\": 01, \"secret\": \"a\"}", NULL, 0},
        {"{\"x\": 1., \"secret\": \"a\"}", NULL, 0},
        {"{\"x\": tru, \"secret\": \"a\"}", NULL, 0},
        {"{\"x\" \"secret\": \"a\"}", NULL, 0},
        {"{}", NULL, 0},
        {"", NULL, 0},
    };
    char out[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 99;
        int rc = web_auth_json_secret(cases[i].body, strlen(cases[i].body), out, sizeof out, &n);
        if (rc != (cases[i].want ? 0 : SHMRPC_EINVAL)) fail_msg("%s: %d", cases[i].body, rc);
        if (!cases[i].want) continue;
        assert_int_equal(n, cases[i].want_len);
        assert_memory_equal(out, cases[i].want, n);
    }
    /* Nesting beside the secret is bounded (32); a secret larger than out is refused. */
    for (int depth = 31; depth <= 33; depth++) {
        char deep[200] = "{\"x\": ";
        for (int i = 0; i < depth; i++)
            strcat(deep, "[");
        for (int i = 0; i < depth; i++)
            strcat(deep, "]");
        strcat(deep, ", \"secret\": \"a\"}");
        assert_int_equal(web_auth_json_secret(deep, strlen(deep), out, sizeof out, &(size_t){0}),
                         depth <= 32 ? 0 : SHMRPC_EINVAL);
    }
    const char *big = "{\"secret\": \"abcdef\"}";
    assert_int_equal(web_auth_json_secret(big, strlen(big), out, 5, &(size_t){0}), SHMRPC_EINVAL);
}

/* --- supervisors over HTTP ---------------------------------------------------------------- */

typedef struct sup {
    char dir[64];
    char ini[128];
    char control[96];
    int port;
    pid_t pid;
} sup;

static struct {
    sup pub;           /* [web monitor] host = 0.0.0.0 with a secret_file */
    sup lo;            /* test_loopback's, one at a time */
    sup_groups groups; /* the services' groups, at most 8 */
    char token[64];
    char cookie[160]; /* NAME=VALUE of the session */
} T;

/* A request to the public page, with the session cookie and/or the token when asked. */
static void req(const char *method, const char *path, bool cookie, bool token, const char *extra,
                const char *body, resp *r)
{
    char head[1024];
    snprintf(head, sizeof head, "%s%s%s%s%s%s%s", cookie ? "Cookie: " : "", cookie ? T.cookie : "",
             cookie ? "\r\n" : "", token ? "X-Shmrpc-Token: " : "", token ? T.token : "",
             token ? "\r\n" : "", extra ? extra : "");
    assert_int_equal(http_raw(T.pub.port, NULL, method, path, head, body, r), 0);
}

/* The sleeper ends with the supervisor (--pid), should the teardown not run. */
#define SLEEPER "exec = sh -c 'exec tail --pid=$PPID -f /dev/null'\n"

/* Writes DIR/web.secret (0600) and DIR/service.ini with the given [defaults] and
 * [web monitor] lines and services, and starts the supervisor. */
static int sup_begin(sup *s, const char *defaults, const char *web, const char *services)
{
    memset(s, 0, sizeof *s);
    strcpy(s->dir, "/tmp/shmrpc-web-auth-XXXXXX");
    if (!mkdtemp(s->dir)) return -1;
    snprintf(s->ini, sizeof s->ini, "%s/service.ini", s->dir);
    s->port = test_free_port();
    if (s->port <= 0) return -1;
    char path[128], ini[1024], errp[160];
    snprintf(path, sizeof path, "%s/web.secret", s->dir);
    if (sup_write_file(path, SECRET "\n") != 0 || chmod(path, 0600) != 0) return -1;
    int n = snprintf(ini, sizeof ini,
                     "[defaults]\nlog_dir = logs\n%s\n[web monitor]\nport = %d\n%s\n%s", defaults,
                     s->port, web, services);
    if (n < 0 || (size_t)n >= sizeof ini || sup_write_file(s->ini, ini) != 0) return -1;
    if (cfg_control_address(s->ini, s->control, sizeof s->control) != 0) return -1;
    snprintf(errp, sizeof errp, "%s/supervisor.err", s->dir);
    s->pid = sup_spawn(s->ini, errp, true, 60, NULL);
    return s->pid < 0 ? -1 : 0;
}

/* sup_begin with one service, "sleeper", then waits up to 10 s for the page. */
static int sup_up(sup *s, const char *defaults, const char *web)
{
    if (sup_begin(s, defaults, web, "[sleeper]\n" SLEEPER "wait_until_completed = false\n") != 0)
        return -1;
    resp r;
    if (http_wait_ok(s->port, "/favicon.svg", 10000, &s->pid, &r) != 0) {
        fprintf(stderr, "no page: %s\n", sup_slurp(s->dir, "supervisor.err"));
        return -1;
    }
    resp_free(&r);
    return 0;
}

/* Stops the supervisor (SIGTERM, then SIGKILL after 10 s) and removes its files and
 * control segment: its wait status, or -1 when it had to be killed or was not running. */
static int sup_down(sup *s)
{
    int st = s->pid > 0 ? sup_stop(&s->pid, 10000) : -1;
    sup_kill_reap(&s->pid);
    if (s->control[0]) sup_remove_segments(s->control + strlen("shm://"));
    if (s->dir[0]) sup_rm_tree(s->dir);
    memset(s, 0, sizeof *s);
    return st;
}

static int group_setup(void **state)
{
    (void)state;
    T.groups.cap = 8;
    return sup_up(&T.pub, "", "host = 0.0.0.0\nsecret_file = web.secret\n");
}

static int group_teardown(void **state)
{
    (void)state;
    sup_kill_reap(&T.pub.pid);
    sup_kill_reap(&T.lo.pid);
    sup_groups_kill(&T.groups);
    sup_down(&T.pub);
    sup_down(&T.lo);
    return 0;
}

/* Without a session: HTML pages go to /login, the rest is refused, the login page and
 * what it needs are served. */
static void test_no_session(void **state)
{
    (void)state;
    resp r;
    req("GET", "/", false, false, NULL, NULL, &r);
    expect_status(&r, 303);
    assert_string_equal(header(&r, "Location"), "/login");
    resp_free(&r);
    req("HEAD", "/index.html", false, false, NULL, NULL, &r);
    expect_status(&r, 303);
    resp_free(&r);
    req("GET", "/services/sleeper", false, false, NULL, NULL, &r);
    expect_status(&r, 303);
    assert_string_equal(header(&r, "Location"), "/login?next=/services/sleeper");
    resp_free(&r);
    static const char *const closed[] = {"/api/services",         "/api/token", "/metrics",
                                         "/api/services/sleeper", "/app.js",    "/nope"};
    for (size_t i = 0; i < sizeof closed / sizeof closed[0]; i++) {
        req("GET", closed[i], false, false, NULL, NULL, &r);
        expect_error(&r, 401, "SHMRPC_EPERM");
        resp_free(&r);
    }
    /* A POST with no session, even with a token-shaped header; a cookie that is no
     * session. */
    req("POST", "/api/services/sleeper/stop", false, true, NULL, "", &r);
    expect_error(&r, 401, "SHMRPC_EPERM");
    resp_free(&r);
    char cookie[200];
    snprintf(cookie, sizeof cookie, "Cookie: shmrpc_session_%d=%064d\r\n", T.pub.port, 0);
    req("GET", "/api/services", false, false, cookie, NULL, &r);
    expect_error(&r, 401, "SHMRPC_EPERM");
    resp_free(&r);
    req("POST", "/logout", false, false, NULL, "", &r);
    expect_error(&r, 401, "SHMRPC_EPERM");
    resp_free(&r);
    /* The login page and what it loads. */
    req("GET", "/login", false, false, NULL, NULL, &r);
    expect_status(&r, 200);
    assert_string_equal(header(&r, "Content-Type"), "text/html; charset=utf-8");
    assert_non_null(strstr(r.body, "<script src=\"/login.js\""));
    assert_non_null(strstr(r.body, "name=\"secret\""));
    assert_null(strstr(r.body, "<script>")); /* nothing inline: the CSP is default-src 'self' */
    assert_null(strstr(r.body, "shmrpc-token"));
    resp_free(&r);
    static const char *const public_files[][2] = {{"/login.js", "text/javascript; charset=utf-8"},
                                                  {"/style.css", "text/css; charset=utf-8"},
                                                  {"/favicon.svg", "image/svg+xml"}};
    for (size_t i = 0; i < sizeof public_files / sizeof public_files[0]; i++) {
        req("GET", public_files[i][0], false, false, NULL, NULL, &r);
        expect_status(&r, 200);
        assert_string_equal(header(&r, "Content-Type"), public_files[i][1]);
        resp_free(&r);
    }
    /* Host: numeric addresses and loopback names; no DNS name. */
    char host[64];
    snprintf(host, sizeof host, "192.0.2.7:%d", T.pub.port);
    assert_int_equal(http_raw(T.pub.port, host, "GET", "/", NULL, NULL, &r), 0);
    expect_status(&r, 303);
    resp_free(&r);
    assert_int_equal(http_raw(T.pub.port, "[2001:db8::7]", "GET", "/", NULL, NULL, &r), 0);
    expect_status(&r, 303);
    resp_free(&r);
    assert_int_equal(http_raw(T.pub.port, "localhost", "GET", "/", NULL, NULL, &r), 0);
    expect_status(&r, 303);
    resp_free(&r);
    assert_int_equal(http_raw(T.pub.port, "evil.example:80", "GET", "/login", NULL, NULL, &r), 0);
    expect_error(&r, 403, "SHMRPC_EPERM");
    resp_free(&r);
}

static const char *const FORM = "Content-Type: application/x-www-form-urlencoded\r\n";
static const char *const JSON = "Content-Type: application/json\r\n";

/* The session cookie of a 303 from POST /login into T.cookie (NAME=VALUE), checked. */
static void take_cookie(const resp *r, char *out, size_t cap)
{
    expect_status(r, 303);
    assert_string_equal(header(r, "Location"), "/");
    const char *c = header(r, "Set-Cookie");
    char name[64];
    int k = snprintf(name, sizeof name, "shmrpc_session_%d=", T.pub.port);
    assert_memory_equal(c, name, (size_t)k);
    assert_int_equal(strspn(c + k, "0123456789abcdef"), WEB_AUTH_ID_LEN);
    assert_string_equal(c + k + WEB_AUTH_ID_LEN,
                        "; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200");
    snprintf(out, cap, "%.*s", k + WEB_AUTH_ID_LEN, c);
}

static void test_login(void **state)
{
    (void)state;
    resp r;
    /* A wrong secret, then anything within the second (the right one too) is not
     * compared. The three requests take milliseconds; should this machine be so slow
     * that a second passed, the round is tried again. */
    for (int round = 0;; round++) {
        int64_t t0 = sup_now_ms();
        req("POST", "/login", false, false, FORM, "secret=guess-guess-guess-guess", &r);
        expect_error(&r, 403, "SHMRPC_EPERM");
        resp_free(&r);
        req("POST", "/login", false, false, FORM, "secret=guess-guess-guess-gues2", &r);
        int second = r.status;
        if (second == 429) {
            expect_error(&r, 429, "SHMRPC_EBUSY");
            assert_string_equal(header(&r, "Retry-After"), "1");
        }
        resp_free(&r);
        req("POST", "/login", false, false, FORM, SECRET_FORM, &r);
        int third = r.status;
        resp_free(&r);
        if (second == 429 && third == 429) break;
        assert_true(sup_now_ms() - t0 >= 1000 && round < 3);
        sup_nap_ms(1100);
    }
    /* Not a form of a secret: 400, not compared. Too large: 413. */
    req("POST", "/login", false, false, FORM, "password=x", &r);
    expect_error(&r, 400, "SHMRPC_EINVAL");
    resp_free(&r);
    req("POST", "/login", false, false, JSON, "{\"secret\": 5}", &r);
    expect_error(&r, 400, "SHMRPC_EINVAL");
    resp_free(&r);
    char big[6000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "secret=", 7);
    req("POST", "/login", false, false, FORM, big, &r);
    expect_error(&r, 413, "SHMRPC_ETOOBIG");
    resp_free(&r);
    /* The right one once the second has passed: a session. */
    sup_nap_ms(1100);
    req("POST", "/login", false, false, FORM, SECRET_FORM, &r);
    take_cookie(&r, T.cookie, sizeof T.cookie);
    resp_free(&r);
    /* With it, everything; the token is the page's. */
    req("GET", "/api/token", true, false, NULL, NULL, &r);
    expect_status(&r, 200);
    json_t *v = body_json(&r);
    snprintf(T.token, sizeof T.token, "%s", json_string_value(json_object_get(v, "token")));
    json_decref(v);
    assert_int_equal(strlen(T.token), 32);
    resp_free(&r);
    req("GET", "/api/services", true, false, NULL, NULL, &r);
    expect_status(&r, 200);
    v = body_json(&r);
    json_t *s = json_array_get(json_object_get(v, "services"), 0);
    assert_string_equal(json_string_value(json_object_get(s, "name")), "sleeper");
    sup_groups_add(&T.groups, (pid_t)json_integer_value(json_object_get(s, "pid")));
    json_decref(v);
    resp_free(&r);
    req("GET", "/", true, false, NULL, NULL, &r);
    expect_page(&r, T.token);
    resp_free(&r);
    req("GET", "/services/sleeper", true, false, NULL, NULL, &r);
    expect_status(&r, 200);
    resp_free(&r);
    req("GET", "/metrics", true, false, NULL, NULL, &r);
    expect_status(&r, 200);
    resp_free(&r);
    /* Among other cookies, and with a stale one of the same name before it. */
    char extra[512];
    snprintf(extra, sizeof extra, "Cookie: a=1; shmrpc_session_%d=%064d; %s; z=2\r\n", T.pub.port,
             7, T.cookie);
    req("GET", "/api/services", false, false, extra, NULL, &r);
    expect_status(&r, 200);
    resp_free(&r);
}

static void test_actions(void **state)
{
    (void)state;
    resp r;
    /* The session does not stand for the token. */
    req("POST", "/api/services/sleeper/restart", true, false, JSON, "", &r);
    expect_error(&r, 403, "SHMRPC_EPERM");
    resp_free(&r);
    req("POST", "/api/services/sleeper/restart", true, true, JSON, "", &r);
    expect_status(&r, 200);
    resp_free(&r);
    /* The restarted sleeper's group, for the teardown. */
    for (int64_t end = sup_now_ms() + 10000;; sup_nap_ms(50)) {
        req("GET", "/api/services", true, false, NULL, NULL, &r);
        expect_status(&r, 200);
        json_t *v = body_json(&r);
        resp_free(&r);
        json_t *s = json_array_get(json_object_get(v, "services"), 0);
        bool running = strcmp(json_string_value(json_object_get(s, "state")), "running") == 0;
        sup_groups_add(&T.groups, (pid_t)json_integer_value(json_object_get(s, "pid")));
        json_decref(v);
        if (running) break;
        assert_true(sup_now_ms() < end);
    }
}

static void test_logout(void **state)
{
    (void)state;
    resp r;
    /* A second session, logged in with JSON (successes do not wait for the throttle), the
     * secret escaped as JSON may escape it, with its file's newline. */
    char second[160];
    req("POST", "/login", false, false, JSON,
        "{\"before\": [1, {\"x\": null}], "
        "\"secret\": \"web test secret\\/with\\u002bplus\\u0026amp=1\\n\"}",
        &r);
    take_cookie(&r, second, sizeof second);
    resp_free(&r);
    /* Logout is a POST like the others: the token too. */
    req("POST", "/logout", true, false, NULL, "", &r);
    expect_error(&r, 403, "SHMRPC_EPERM");
    resp_free(&r);
    req("POST", "/logout", true, true, NULL, "", &r);
    expect_status(&r, 303);
    assert_string_equal(header(&r, "Location"), "/login");
    char cleared[64];
    snprintf(cleared, sizeof cleared, "shmrpc_session_%d=;", T.pub.port);
    assert_memory_equal(header(&r, "Set-Cookie"), cleared, strlen(cleared));
    assert_non_null(strstr(header(&r, "Set-Cookie"), "Max-Age=0"));
    resp_free(&r);
    req("GET", "/api/services", true, false, NULL, NULL, &r);
    expect_error(&r, 401, "SHMRPC_EPERM");
    resp_free(&r);
    req("GET", "/", true, false, NULL, NULL, &r);
    expect_status(&r, 303);
    resp_free(&r);
    /* The other session lives on. */
    memcpy(T.cookie, second, sizeof second);
    req("GET", "/api/services", true, false, NULL, NULL, &r);
    expect_status(&r, 200);
    resp_free(&r);
}

/* Loopback pages: the secret of [defaults] is the page's too, unless [web monitor] says
 * none. */
static void test_loopback(void **state)
{
    (void)state;
    resp r;
    assert_int_equal(sup_up(&T.lo, "secret_file = web.secret\n", "host = 127.0.0.1\n"), 0);
    assert_int_equal(http_raw(T.lo.port, NULL, "GET", "/api/services", NULL, NULL, &r), 0);
    expect_error(&r, 401, "SHMRPC_EPERM");
    resp_free(&r);
    assert_int_equal(http_raw(T.lo.port, NULL, "GET", "/", NULL, NULL, &r), 0);
    expect_status(&r, 303);
    resp_free(&r);
    assert_non_null(strstr(sup_slurp(T.lo.dir, "supervisor.err"), "/ (the secret of "));
    assert_int_equal(sup_down(&T.lo), 0); /* exit 0: under ASan, no leak either */
    assert_int_equal(sup_up(&T.lo, "secret_file = web.secret\n", "secret_file = none\n"), 0);
    assert_int_equal(http_raw(T.lo.port, NULL, "GET", "/api/services", NULL, NULL, &r), 0);
    expect_status(&r, 200);
    resp_free(&r);
    assert_int_equal(http_raw(T.lo.port, NULL, "GET", "/login", NULL, NULL, &r), 0);
    expect_error(&r, 404, "SHMRPC_ENOENT");
    resp_free(&r);
    assert_null(strstr(sup_slurp(T.lo.dir, "supervisor.err"), "(the secret of "));
    assert_int_equal(sup_down(&T.lo), 0);
}

/* A secret_file that cannot be read when the page starts (the configuration read it when
 * the supervisor started): no page, said in the log; the supervisor runs on. The page
 * starts once the first service answers at its address, and that service makes the
 * secret readable by others before it serves: the order is the supervisor's, not a race
 * with the test. */
static void test_secret_unreadable(void **state)
{
    (void)state;
    char services[512];
    snprintf(services, sizeof services,
             "[echo]\nexec = sh -c 'echo $$ > echo.pid && chmod 644 web.secret && "
             "exec %s shm://web_auth_echo_%d'\nshm_name = web_auth_echo_%d\n",
             ECHO_SERVER, (int)getpid(), (int)getpid());
    assert_int_equal(sup_begin(&T.lo, "", "secret_file = web.secret\n", services), 0);
    pid_t echo = 0;
    for (int64_t end = sup_now_ms() + 10000;; sup_nap_ms(20)) {
        if (!echo && (echo = (pid_t)atoi(sup_slurp(T.lo.dir, "echo.pid"))) > 0)
            sup_groups_add(&T.groups, echo); /* for the teardown, should the test fail */
        if (strstr(sup_slurp(T.lo.dir, "supervisor.err"), "web monitor: cannot read its secret: "))
            break;
        assert_true(sup_now_ms() < end);
    }
    const char *log = sup_slurp(T.lo.dir, "supervisor.err");
    assert_non_null(strstr(log, "has mode 0644: others may read it (chmod 600); running without "
                                "the page"));
    assert_null(strstr(log, "web monitor at"));
    resp r;
    assert_int_equal(http_raw(T.lo.port, NULL, "GET", "/favicon.svg", NULL, NULL, &r), -1);
    assert_int_equal(sup_wait_exit(&T.lo.pid, 0), -1); /* still running */
    assert_int_equal(sup_down(&T.lo), 0);
    char shm[64];
    snprintf(shm, sizeof shm, "web_auth_echo_%d", (int)getpid());
    assert_false(sup_segment_left(shm));
}

/* SIGTERM: the page stops (its secret wiped), the supervisor exits 0. */
static void test_sigterm(void **state)
{
    (void)state;
    assert_int_equal(kill(T.pub.pid, SIGTERM), 0);
    int st = sup_wait_exit(&T.pub.pid, 10000);
    assert_true(st != -1);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    const struct CMUnitTest table[] = {cmocka_unit_test(test_table),
                                       cmocka_unit_test(test_json_secret)};
    const struct CMUnitTest http[] = {
        cmocka_unit_test(test_no_session), cmocka_unit_test(test_login),
        cmocka_unit_test(test_actions),    cmocka_unit_test(test_logout),
        cmocka_unit_test(test_loopback),   cmocka_unit_test(test_secret_unreadable),
        cmocka_unit_test(test_sigterm),
    };
    int failed = cmocka_run_group_tests_name("web_auth", table, NULL, NULL);
    return failed + cmocka_run_group_tests_name("web_auth_http", http, group_setup, group_teardown);
}
