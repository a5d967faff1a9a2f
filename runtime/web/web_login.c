/* SPDX-License-Identifier: MIT */
/* The management page's login over HTTP (web_server.h; docs/web.md, "The secret"): with a
 * secret_file, every request but the login page's needs a session from POST /login, whose
 * cookie this reads and sets; web_auth.c keeps the secret's hash, the sessions and the
 * limit on wrong secrets. */
#include "web_server.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <shmrpc/status.h>

/* The largest body of POST /login, which anyone may send: a secret is 256 bytes. */
#define MAX_LOGIN_BODY 4096

/* The live session the request's cookie names, copied to id; false when there is none
 * (each cookie of that name is tried: a browser may hold a stale one beside it). */
static bool session_of(const web_server *s, struct mg_connection *conn,
                       char id[WEB_AUTH_ID_LEN + 1])
{
    const char *p = mg_get_header(conn, "Cookie");
    size_t n = strlen(s->cookie);
    int64_t now = web_auth_now_ms();
    while (p && *p) {
        p += strspn(p, " \t;");
        size_t len = strcspn(p, ";"), v = len > n ? len - n - 1 : 0;
        while (v && (p[n + v] == ' ' || p[n + v] == '\t'))
            v--;
        if (len > n && p[n] == '=' && strncmp(p, s->cookie, n) == 0 && v == WEB_AUTH_ID_LEN) {
            memcpy(id, p + n + 1, v);
            id[v] = '\0';
            if (web_auth_session_ok(s->auth, id, now)) return true;
        }
        p += len;
    }
    return false;
}

/* 303 to the login page, which returns to uri (percent-encoded in ?next=) after it. */
static int to_login(struct mg_connection *conn, const char *uri)
{
    char loc[3200] = "Location: /login";
    size_t k = strlen(loc);
    if (strcmp(uri, "/") != 0) {
        memcpy(loc + k, "?next=", 6);
        k += 6;
        for (const unsigned char *c = (const unsigned char *)uri; *c && k + 8 < sizeof loc; c++) {
            bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                         (*c >= '0' && *c <= '9') || strchr("/-._~", *c);
            if (plain)
                loc[k++] = (char)*c;
            else
                k += (size_t)snprintf(loc + k, sizeof loc - k, "%%%02X", *c);
        }
    }
    memcpy(loc + k, "\r\n", 3);
    static const char text[] = "this page requires its shared secret: log in at /login\n";
    return web_reply_with(conn, 303, loc, "text/plain; charset=utf-8", text, sizeof text - 1);
}

/* POST /login: the secret as a form (secret=...) or as JSON ({"secret": "..."}); a
 * session cookie and 303 to /, or 403 (wrong) or 429 (not compared: its peer is past its
 * limit on wrong secrets). */
static int post_login(struct mg_connection *conn, web_server *s)
{
    char body[MAX_LOGIN_BODY + 1], given[MAX_LOGIN_BODY + 1];
    size_t len = 0, n = 0;
    int bad = web_body_length(conn, MAX_LOGIN_BODY, &len);
    if (!bad) bad = web_read_exact(conn, s, body, len);
    if (bad) {
        explicit_bzero(body, sizeof body);
        return web_reply_error(conn, bad, web_body_error(bad),
                               web_body_why(bad, "the body is too large for a secret"));
    }
    body[len] = '\0';
    bool found = false;
    const char *ctype = mg_get_header(conn, "Content-Type");
    if (ctype && strncasecmp(ctype, "application/json", 16) == 0) {
        /* jansson, which wipes what it frees in the page's process (web_auth_json_wipe). */
        found = web_auth_json_secret(body, len, given, sizeof given, &n) == 0;
    } else {
        /* A form: '+' and %XX decoded; a secret that is not text goes this way. */
        int r = mg_get_var2(body, len, "secret", given, sizeof given, 0);
        if (r >= 0) n = (size_t)r, found = true;
    }
    explicit_bzero(body, sizeof body);
    /* One trailing newline is not part of it, as in the file (curl's secret@FILE). */
    if (found && n && given[n - 1] == '\n') n--;
    char id[WEB_AUTH_ID_LEN + 1];
    int64_t wait_ms = 0;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    web_login_from from = {ri->remote_addr, -1};
    if (found) from.uid = web_auth_peer_uid(ri->remote_addr, ri->remote_port, ri->server_port);
    int rc = found ? web_auth_login(s->auth, given, n, from, web_auth_now_ms(), id, &wait_ms) : 0;
    explicit_bzero(given, sizeof given);
    if (!found)
        return web_reply_error(conn, 400, SHMRPC_EINVAL,
                               "POST /login takes the secret as a form (secret=...) or as JSON "
                               "({\"secret\": \"...\"})");
    _Static_assert(WEB_AUTH_WRONG_EVERY_MS == 1000, "the message says one a second");
    if (rc == SHMRPC_EBUSY) {
        long long secs = (wait_ms + 999) / 1000;
        char retry[48], msg[160];
        snprintf(retry, sizeof retry, "Retry-After: %lld\r\n", secs);
        snprintf(msg, sizeof msg,
                 "too many wrong secrets from this address (%d in a row, then one a second): "
                 "not compared; try again in %lld s",
                 WEB_AUTH_WRONG_BURST, secs);
        return web_reply_error_with(conn, 429, retry, SHMRPC_EBUSY, msg);
    }
    if (rc == SHMRPC_EPERM) return web_reply_error(conn, 403, SHMRPC_EPERM, "wrong secret");
    if (rc) return web_reply_error(conn, 500, rc, "no random bytes for a session");
    char extra[256];
    snprintf(extra, sizeof extra,
             "Set-Cookie: %s=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%lld\r\n"
             "Location: /\r\n",
             s->cookie, id, (long long)(WEB_AUTH_LIFETIME_MS / 1000));
    explicit_bzero(id, sizeof id);
    static const char text[] = "logged in\n";
    int r = web_reply_with(conn, 303, extra, "text/plain; charset=utf-8", text, sizeof text - 1);
    explicit_bzero(extra, sizeof extra);
    return r;
}

/* POST /logout (with the token): ends the session, clears the cookie, 303 to /login. */
int web_post_logout(struct mg_connection *conn, web_server *s)
{
    char id[WEB_AUTH_ID_LEN + 1], extra[160];
    if (session_of(s, conn, id)) web_auth_logout(s->auth, id);
    snprintf(extra, sizeof extra,
             "Set-Cookie: %s=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0\r\n"
             "Location: /login\r\n",
             s->cookie);
    static const char text[] = "logged out\n";
    return web_reply_with(conn, 303, extra, "text/plain; charset=utf-8", text, sizeof text - 1);
}

/* With a secret, the login page and what it needs are anyone's, and everything else
 * needs a session: an HTML page without one goes to /login, the rest get 401. The
 * answer's status when this answered, else 0. */
int web_login_gate(struct mg_connection *conn, web_server *s, const char *uri, char **seg, int n,
                   bool get, bool post)
{
    bool login = n == 1 && strcmp(seg[0], "login") == 0;
    if (login && get) return web_page(conn, s, "login.html", NULL);
    if (login && post) return post_login(conn, s);
    if (get && n == 1 &&
        (strcmp(seg[0], "login.js") == 0 || strcmp(seg[0], "style.css") == 0 ||
         strcmp(seg[0], "favicon.svg") == 0))
        return 0;
    char id[WEB_AUTH_ID_LEN + 1];
    if (session_of(s, conn, id)) return 0;
    bool html = strcmp(uri, "/") == 0 || strcmp(uri, "/index.html") == 0 ||
                (n == 2 && strcmp(seg[0], "services") == 0);
    if (get && html) return to_login(conn, uri);
    return web_reply_error(conn, 401, SHMRPC_EPERM,
                           "the page requires its shared secret: log in with POST /login "
                           "(secret=...) and send the cookie it sets");
}

/* /metrics' families of the login, after the others (docs/web.md, "GET /metrics"). */
void web_login_metrics(web_auth *a, shmrpc_buf *b)
{
    web_auth_counts c;
    web_auth_counts_get(a, &c);
    shmrpc_buf_appendf(b,
                       "# HELP shmrpc_web_logins_total Secrets sent to POST /login since the page "
                       "started: ok (the right one), wrong (403), limited (not compared, its "
                       "peer past its limit on wrong secrets: 429).\n"
                       "# TYPE shmrpc_web_logins_total counter\n"
                       "shmrpc_web_logins_total{result=\"ok\"} %llu\n"
                       "shmrpc_web_logins_total{result=\"wrong\"} %llu\n"
                       "shmrpc_web_logins_total{result=\"limited\"} %llu\n"
                       "# HELP shmrpc_web_login_peers Peers (an address, and a local "
                       "peer's user) whose attempts the page keeps count of (at most %d).\n"
                       "# TYPE shmrpc_web_login_peers gauge\n"
                       "shmrpc_web_login_peers %zu\n",
                       (unsigned long long)c.ok, (unsigned long long)c.wrong,
                       (unsigned long long)c.limited, WEB_AUTH_PEERS, c.peers);
}
