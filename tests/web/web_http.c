/* SPDX-License-Identifier: MIT */
/* The web tests' HTTP client and the checks of its answers (web_http.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "sup_helpers.h"
#include "web_http.h"

void resp_free(resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* Splits the answer all (len bytes, NUL-terminated) into r: 0, or -1 when it is no
 * HTTP/1.1 answer. */
static int split_answer(const char *all, size_t len, resp *r)
{
    const char *end = strstr(all, "\r\n\r\n");
    if (!end || sscanf(all, "HTTP/1.1 %d", &r->status) != 1) return -1;
    size_t hl = (size_t)(end - all);
    snprintf(r->head, sizeof r->head, "%.*s", (int)hl, all);
    r->len = len - hl - 4;
    r->body = malloc(r->len + 1);
    assert_non_null(r->body);
    memcpy(r->body, end + 4, r->len);
    r->body[r->len] = '\0';
    return 0;
}

int http_connect_from(const char *from, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in src = {.sin_family = AF_INET};
    if (from && (inet_pton(AF_INET, from, &src.sin_addr) != 1 ||
                 bind(fd, (struct sockaddr *)&src, sizeof src) != 0)) {
        close(fd);
        return -1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int http_connect(int port)
{
    return http_connect_from(NULL, port);
}

int http_read_answer(int fd, resp *r)
{
    memset(r, 0, sizeof *r);
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
    all[len] = '\0';
    int rc = split_answer(all, len, r);
    free(all);
    return rc;
}

int http_send(int port, const char *req, size_t n, resp *r)
{
    return http_send_from(NULL, port, req, n, r);
}

int http_send_from(const char *from, int port, const char *req, size_t n, resp *r)
{
    memset(r, 0, sizeof *r);
    int fd = http_connect_from(from, port);
    if (fd < 0) return -1;
    if (write(fd, req, n) != (ssize_t)n) {
        close(fd);
        return -1;
    }
    int rc = http_read_answer(fd, r);
    close(fd);
    return rc;
}

int http_raw(int port, const char *host, const char *method, const char *path, const char *extra,
             const char *body, resp *r)
{
    return http_raw_from(NULL, port, host, method, path, extra, body, r);
}

int http_raw_from(const char *from, int port, const char *host, const char *method,
                  const char *path, const char *extra, const char *body, resp *r)
{
    memset(r, 0, sizeof *r);
    char hostbuf[64];
    if (!host) snprintf(hostbuf, sizeof hostbuf, "127.0.0.1:%d", port), host = hostbuf;
    size_t blen = body ? strlen(body) : 0;
    size_t cap = 8192 + blen;
    char *req = malloc(cap);
    assert_non_null(req);
    int n = snprintf(req, cap,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n%s\r\n%s",
                     method, path, host, blen, extra ? extra : "", body ? body : "");
    assert_true(n > 0 && (size_t)n < cap);
    int rc = http_send_from(from, port, req, (size_t)n, r);
    free(req);
    return rc;
}

int http_wait_ok(int port, const char *path, int ms, pid_t *pid, resp *r)
{
    for (int64_t end = sup_now_ms() + ms;; sup_nap_ms(20)) {
        if (http_raw(port, NULL, "GET", path, NULL, NULL, r) == 0) {
            if (r->status == 200) return 0;
            resp_free(r);
        }
        if (sup_now_ms() > end || (pid && sup_wait_exit(pid, 0) != -1)) return -1;
    }
}

const char *header(const resp *r, const char *name)
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

json_t *body_json(const resp *r)
{
    json_error_t je;
    json_t *v = json_loadb(r->body, r->len, JSON_DECODE_ANY, &je);
    if (!v) fprintf(stderr, "not JSON (%s): %s\n", je.text, r->body);
    assert_non_null(v);
    return v;
}

void expect_status(const resp *r, int status)
{
    if (r->status != status) fprintf(stderr, "got %d: %s\n%s\n", r->status, r->head, r->body);
    assert_int_equal(r->status, status);
}

void expect_page(const resp *r, const char *token)
{
    expect_status(r, 200);
    assert_string_equal(header(r, "Content-Type"), "text/html; charset=utf-8");
    char meta[128];
    snprintf(meta, sizeof meta, "<meta name=\"shmrpc-token\" content=\"%s\">", token);
    assert_non_null(strstr(r->body, meta));
    /* The rest of the head every such page shares (assets/head.html, at {{HEAD}}). */
    assert_int_equal(strncmp(r->body, "<!doctype html>\n", 16), 0);
    assert_non_null(strstr(r->body, "<meta charset=\"utf-8\">"));
    assert_non_null(strstr(r->body, "<link rel=\"stylesheet\" href=\"/style.css\">"));
    assert_non_null(strstr(r->body, "<script src=\"/format.js\" defer></script>"));
}

void expect_error(const resp *r, int http_status, const char *status)
{
    expect_status(r, http_status);
    assert_string_equal(header(r, "Content-Type"), "application/json; charset=utf-8");
    json_t *v = body_json(r);
    json_t *e = json_object_get(v, "error");
    assert_true(json_is_object(e));
    assert_true(json_is_string(json_object_get(e, "message")));
    assert_string_equal(json_string_value(json_object_get(e, "status")), status);
    json_decref(v);
}

void expect_hosts(int port, bool any_ip, const char *path, int ok_status)
{
    /* lo, any: accepted by a loopback page, by a page on another address. "%d": the page's
     * own port. What a browser sends for the page's addresses, and everything close. */
    static const struct {
        const char *host;
        bool lo, any;
    } cases[] = {
        {"127.0.0.1", true, true},
        {"127.0.0.1:%d", true, true},
        {"127.0.0.1:80", true, true}, /* an SSH tunnel's local port, say */
        {"127.1.2.3:65535", true, true},
        {"localhost", true, true},
        {"LocalHost:%d", true, true},
        {"[::1]", true, true},
        {"[::1]:%d", true, true},
        {"[0:0:0:0:0:0:0:1]:80", true, true},
        {"[::ffff:127.0.0.1]", true, true},
        {"[::FFFF:7F00:1]:%d", true, true},
        {"192.0.2.7", false, true},
        {"192.0.2.7:%d", false, true},
        {"[2001:db8::7]", false, true},
        {"[::ffff:192.0.2.7]:80", false, true},
        {"127.0.0.1:%dx", false, false},
        {"127.0.0.1:", false, false},
        {"127.0.0.1:0", false, false},
        {"127.0.0.1:65536", false, false},
        {"127.0.0.1:99999", false, false},
        {"127.0.0.1:005155", false, false},
        {"127.0.0.1:-1", false, false},
        {"127.0.0.1:+80", false, false},
        {"127.0.0.1:80:80", false, false},
        {"127.0.0.1evil", false, false},
        {"127.0.0.1.evil.com", false, false},
        {"127.0.0.1.evil.com:%d", false, false},
        {"127.0.0.1.", false, false},
        {"127.1", false, false},
        {"127.999.999.999", false, false},
        {"127.", false, false},
        {"127..", false, false},
        {"127.0.0.01", false, false},
        {"0x7f.0.0.1", false, false},
        {"2130706433", false, false},
        {"192.0.2.7evil", false, false},
        {"192.0.2.7.evil.com", false, false},
        {"localhost:evil", false, false},
        {"localhost.", false, false},
        {"localhost.evil.com", false, false},
        {"[::1]evil", false, false},
        {"[::1]:x", false, false},
        {"[::1]:", false, false},
        {"[::1", false, false},
        {"::1", false, false},
        {"[localhost]", false, false},
        {"[127.0.0.1]", false, false},
        {"[fe80::1%%25lo]", false, false},
        {"[2001:db8::7]evil", false, false},
        {"evil.example", false, false},
        {"evil.example:%d", false, false},
        {"", false, false},
        {":%d", false, false},
        {"127.0.0.1@evil", false, false},
        {"evil@127.0.0.1", false, false},
        {"LONGDIGITS", false, false}, /* 127.0.0.1, 300 more digits, "evil" */
        {"LONGDOTS", false, false},   /* 127.0.0.1, 260 dots, "evil.com" */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char host[400];
        if (strcmp(cases[i].host, "LONGDIGITS") == 0) {
            snprintf(host, sizeof host, "127.0.0.1%0300devil", 0);
        } else if (strcmp(cases[i].host, "LONGDOTS") == 0) {
            int n = snprintf(host, sizeof host, "127.0.0.1");
            memset(host + n, '.', 260);
            snprintf(host + n + 260, sizeof host - (size_t)n - 260, "evil.com");
        } else {
            snprintf(host, sizeof host, cases[i].host, port);
        }
        bool ok = any_ip ? cases[i].any : cases[i].lo;
        resp r;
        assert_int_equal(http_raw(port, host, "GET", path, NULL, NULL, &r), 0);
        printf("Host: %-32.32s%s %d\n", host, strlen(host) > 32 ? "..." : "   ", r.status);
        if (ok)
            expect_status(&r, ok_status);
        else
            expect_error(&r, 403, "SHMRPC_EPERM");
        resp_free(&r);
    }
}
