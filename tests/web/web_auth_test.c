/* SPDX-License-Identifier: MIT */
/* The management page's shared secret (docs/web.md, "The secret"). First web_auth.c on
 * its own, with a clock the test sets: the limit on wrong secrets per peer, who a local
 * peer is (asked of the kernel), sessions' lifetime and eviction,
 * logout, secret files it refuses, the secret read out of a JSON login, and what jansson
 * freed doing so wiped. Then real supervisors over real HTTP on loopback: one listening on 0.0.0.0
 * with a secret_file (which config allows only with a secret) is reached at 127.0.0.1: every page
 * but the login's needs a session, wrong secrets are limited per address and local user while the
 * right one gets in beside them, POSTs need the token as well, logout
 * ends the session; pages on 127.0.0.1 that require the secret of [defaults] or, with
 * `secret_file = none`, not; and no page when the secret cannot be read as it starts.
 * Every wait is bounded; the teardown removes what a failure left. */
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
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmrpc/buf.h>
#include <shmrpc/status.h>

#include "config.h"
#include "procs.h"
#include "skips.h"
#include "sup_helpers.h"
#include "web_auth.h"
#include "web_http.h"

/* The secret, and as a form field (URL-encoded, with the file's trailing newline, which
 * is not part of it). */
#define SECRET "web test secret/with+plus&amp=1"
#define SECRET_FORM "secret=web+test+secret%2Fwith%2Bplus%26amp%3D1%0A"

/* --- web_auth.c on its own ---------------------------------------------------------------- */

/* A peer elsewhere (no uid), or on this machine as uid. */
#define FROM(addr) ((web_login_from){(addr), -1})
#define FROM_UID(addr, uid) ((web_login_from){(addr), (uid)})

static void write_secret(const char *path, const char *text, mode_t mode)
{
    assert_int_equal(sup_write_file(path, text), 0);
    assert_int_equal(chmod(path, mode), 0);
}

/* The folder of the secret of test_table, test_wrong_limit and test_wrong_table: removed
 * by their teardown, also when the test fails. */
static char auth_dir[32];

static int auth_dir_rm(void **state)
{
    (void)state;
    if (auth_dir[0]) sup_rm_tree(auth_dir);
    auth_dir[0] = '\0';
    return 0;
}

/* Makes auth_dir: a new folder. */
static void auth_dir_make(void)
{
    strcpy(auth_dir, "/tmp/shmrpc-web-auth-XXXXXX");
    if (!mkdtemp(auth_dir)) {
        auth_dir[0] = '\0';
        fail_msg("mkdtemp: %s", strerror(errno));
    }
}

static void test_table(void **state)
{
    (void)state;
    char path[64];
    auth_dir_make();
    snprintf(path, sizeof path, "%s/web.secret", auth_dir);
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

    /* The right one gets in, the wrong ones are 403; sessions differ. */
    const size_t n = strlen(SECRET);
    char id[WEB_AUTH_ID_LEN + 1], id2[WEB_AUTH_ID_LEN + 1];
    int64_t t = 5000000, wait = -1;
    assert_int_equal(web_auth_login(&a, "not " SECRET, n + 4, FROM("192.0.2.1"), t, id, &wait),
                     SHMRPC_EPERM);
    assert_int_equal(web_auth_login(&a, SECRET "\n", n + 1, FROM("192.0.2.1"), t, id, &wait),
                     SHMRPC_EPERM);
    assert_int_equal(web_auth_login(&a, SECRET, n, FROM("192.0.2.1"), t + 2000, id, &wait), 0);
    assert_int_equal(strlen(id), WEB_AUTH_ID_LEN);
    assert_int_equal(strspn(id, "0123456789abcdef"), WEB_AUTH_ID_LEN);
    assert_int_equal(web_auth_login(&a, SECRET, n, FROM("192.0.2.1"), t + 2001, id2, &wait), 0);
    assert_string_not_equal(id, id2);

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
        assert_int_equal(web_auth_login(&a, SECRET, n, FROM("192.0.2.1"), t + i, ids[i], NULL), 0);
    int64_t now = t + WEB_AUTH_SESSIONS;
    assert_false(web_auth_session_ok(&a, ids[0], now));
    for (int i = 1; i <= WEB_AUTH_SESSIONS; i++)
        assert_true(web_auth_session_ok(&a, ids[i], now));
    /* A free slot is taken before a live session is ended. */
    web_auth_logout(&a, ids[5]);
    assert_int_equal(web_auth_login(&a, SECRET, n, FROM("192.0.2.1"), now + 1, id, NULL), 0);
    assert_true(web_auth_session_ok(&a, ids[1], now + 1));
    /* Expired sessions are spare: a login then ends no live one (ids[1..10] expired). */
    int64_t later = t + 10 + WEB_AUTH_LIFETIME_MS;
    assert_int_equal(web_auth_login(&a, SECRET, n, FROM("192.0.2.1"), later, id2, NULL), 0);
    for (int i = 11; i <= WEB_AUTH_SESSIONS; i++)
        if (i != 5) assert_true(web_auth_session_ok(&a, ids[i], later));
    assert_true(web_auth_session_ok(&a, id, later));
    assert_true(web_auth_session_ok(&a, id2, later));
    assert_false(web_auth_session_ok(&a, ids[10], later));
    web_auth_destroy(&a);
}

/* A web_auth on DIR/web.secret (SECRET), in a new folder, auth_dir. */
static void auth_begin(web_auth *a)
{
    auth_dir_make();
    char path[64], err[512];
    snprintf(path, sizeof path, "%s/web.secret", auth_dir);
    write_secret(path, SECRET "\n", 0600);
    assert_int_equal(web_auth_init(a, path, err, sizeof err), 0);
}

/* The status of a wrong secret from from at t, with the wait it was told in *wait. */
static int wrong_as(web_auth *a, web_login_from from, int64_t t, int64_t *wait)
{
    char id[WEB_AUTH_ID_LEN + 1];
    *wait = -1;
    return web_auth_login(a, "guess-guess-guess-guess", 23, from, t, id, wait);
}

static int wrong(web_auth *a, const char *from, int64_t t, int64_t *wait)
{
    return wrong_as(a, FROM(from), t, wait);
}

/* The status of the right secret from from at t. */
static int right(web_auth *a, web_login_from from, int64_t t)
{
    char id[WEB_AUTH_ID_LEN + 1];
    int64_t wait;
    return web_auth_login(a, SECRET, strlen(SECRET), from, t, id, &wait);
}

/* Wrong secrets per peer: 5 compared in a row, then one a second; past that nothing is
 * compared, the right secret neither; a right one gives its turn back; what one peer is
 * (an address, a /64, a local address and user); root and the page's user unlimited. */
static void test_wrong_limit(void **state)
{
    (void)state;
    web_auth a;
    auth_begin(&a);
    const int64_t t = 7000000, every = WEB_AUTH_WRONG_EVERY_MS;
    int64_t wait;
    for (int i = 0; i < WEB_AUTH_WRONG_BURST; i++) {
        assert_int_equal(wrong(&a, "192.0.2.1", t, &wait), SHMRPC_EPERM);
        assert_int_equal(wait, 0);
    }
    assert_int_equal(wrong(&a, "192.0.2.1", t, &wait), SHMRPC_EBUSY);
    assert_int_equal(wait, every);
    assert_int_equal(wrong(&a, "192.0.2.1", t + every - 1, &wait), SHMRPC_EBUSY);
    assert_int_equal(wait, 1);
    /* Past the limit the right one is not compared either: guessing goes no faster. */
    assert_int_equal(right(&a, FROM("192.0.2.1"), t + every - 1), SHMRPC_EBUSY);
    /* Another address is not limited. */
    assert_int_equal(wrong(&a, "192.0.2.2", t, &wait), SHMRPC_EPERM);
    /* One more a second; the refused ones do not put the next off. */
    assert_int_equal(wrong(&a, "192.0.2.1", t + every, &wait), SHMRPC_EPERM);
    assert_int_equal(wrong(&a, "192.0.2.1", t + every, &wait), SHMRPC_EBUSY);
    assert_int_equal(wait, every);
    assert_int_equal(wrong(&a, "192.0.2.1", t + every * 3 / 2, &wait), SHMRPC_EBUSY);
    assert_int_equal(wait, every / 2);
    /* Its turn comes: the right one gets in, and gives the turn back. */
    assert_int_equal(right(&a, FROM("192.0.2.1"), t + 2 * every), 0);
    assert_int_equal(right(&a, FROM("192.0.2.1"), t + 2 * every), 0);
    assert_int_equal(wrong(&a, "192.0.2.1", t + 2 * every, &wait), SHMRPC_EPERM);
    assert_int_equal(wrong(&a, "192.0.2.1", t + 2 * every, &wait), SHMRPC_EBUSY);
    /* Quiet for the whole burst's time: a whole burst again. */
    int64_t later = t + 3 * every + WEB_AUTH_WRONG_BURST * every;
    for (int i = 0; i < WEB_AUTH_WRONG_BURST; i++)
        assert_int_equal(wrong(&a, "192.0.2.1", later, &wait), SHMRPC_EPERM);
    assert_int_equal(wrong(&a, "192.0.2.1", later, &wait), SHMRPC_EBUSY);
    /* IPv4 as IPv6 sees it is the same address. */
    assert_int_equal(wrong(&a, "::ffff:192.0.2.1", later, &wait), SHMRPC_EBUSY);
    /* IPv6: an address's /64 is one address (a host has all of it); another /64 is not. */
    for (int i = 0; i < WEB_AUTH_WRONG_BURST; i++)
        assert_int_equal(wrong(&a, "2001:db8::1", t, &wait), SHMRPC_EPERM);
    assert_int_equal(wrong(&a, "2001:db8::ffff:2", t, &wait), SHMRPC_EBUSY);
    assert_int_equal(wrong(&a, "2001:db8:0:1::1", t, &wait), SHMRPC_EPERM);
    /* What is no address is one address of its own. */
    for (int i = 0; i < WEB_AUTH_WRONG_BURST; i++)
        assert_int_equal(wrong(&a, NULL, t, &wait), SHMRPC_EPERM);
    assert_int_equal(wrong(&a, "not an address", t, &wait), SHMRPC_EBUSY);
    /* On this machine, each user of an address is a peer of its own: 65534 past its limit
     * keeps neither 65533 nor the address seen from elsewhere out. */
    for (int i = 0; i < WEB_AUTH_WRONG_BURST; i++)
        assert_int_equal(wrong_as(&a, FROM_UID("127.0.0.1", 65534), t, &wait), SHMRPC_EPERM);
    assert_int_equal(wrong_as(&a, FROM_UID("127.0.0.1", 65534), t, &wait), SHMRPC_EBUSY);
    assert_int_equal(right(&a, FROM_UID("127.0.0.1", 65534), t), SHMRPC_EBUSY);
    assert_int_equal(right(&a, FROM_UID("127.0.0.1", 65533), t), 0);
    assert_int_equal(wrong_as(&a, FROM_UID("127.0.0.1", 65533), t, &wait), SHMRPC_EPERM);
    assert_int_equal(wrong(&a, "127.0.0.1", t, &wait), SHMRPC_EPERM);
    /* Root and the page's own user are never limited: 20 wrong ones each, then in. */
    const long self = (long)geteuid();
    for (int i = 0; i < 4 * WEB_AUTH_WRONG_BURST; i++) {
        assert_int_equal(wrong_as(&a, FROM_UID("127.0.0.1", 0), t, &wait), SHMRPC_EPERM);
        assert_int_equal(wrong_as(&a, FROM_UID("127.0.0.1", self), t, &wait), SHMRPC_EPERM);
    }
    assert_int_equal(right(&a, FROM_UID("127.0.0.1", 0), t), 0);
    assert_int_equal(right(&a, FROM_UID("127.0.0.1", self), t), 0);
    web_auth_counts c;
    web_auth_counts_get(&a, &c);
    assert_int_equal(c.ok, 5);
    /* 192.0.2.1: 5 + 1 + 1 + 5; 192.0.2.2; 2001:db8::/64: 5, 2001:db8:0:1::/64; none: 5;
     * 65534: 5, 65533, 127.0.0.1 from elsewhere; root and self: 20 each. */
    assert_int_equal(c.wrong, 12 + 1 + 6 + 5 + 7 + 2 * 4 * WEB_AUTH_WRONG_BURST);
    /* 192.0.2.1: 8 (one of them the right secret), 2001:db8::/64, none, 65534: 2. */
    assert_int_equal(c.limited, 8 + 1 + 1 + 2);
    /* 192.0.2.1, .2, 2001:db8::/64, 2001:db8:0:1::/64, none, 65534, 65533, elsewhere. */
    assert_int_equal(c.peers, 8);
    web_auth_destroy(&a);
}

/* How many wrong secrets from from at t are answered 403 before the first 429. */
static int burst(web_auth *a, const char *from, int64_t t)
{
    int64_t wait;
    int n = 0;
    while (n < 2 * WEB_AUTH_WRONG_BURST && wrong(a, from, t, &wait) == SHMRPC_EPERM)
        n++;
    return n;
}

/* The table of peers is bounded: a flood of other addresses neither grows it nor pushes
 * out an address that goes on sending wrong secrets (which would get a fresh burst); a
 * full table gives up a slot whose count has run out before the slot of the address quiet
 * longest; the right secret gets in from all of them once their turn comes. */
static void test_wrong_table(void **state)
{
    (void)state;
    web_auth a;
    char from[32];
    auth_begin(&a);
    const int64_t t = 9000000, every = WEB_AUTH_WRONG_EVERY_MS;
    const int flood = 4 * WEB_AUTH_PEERS;
    int64_t wait;
    const char *hammer = "198.51.100.1";
    assert_int_equal(burst(&a, hammer, t), WEB_AUTH_WRONG_BURST);
    /* 4 tables' worth of other addresses, 1 ms apart, the hammer's after each: within its
     * limit one more a second (at t + 1000), and no fresh burst. */
    int hammer_wrong = 0;
    for (int i = 0; i < flood; i++) {
        snprintf(from, sizeof from, "10.%d.%d.1", i / 256, i % 256);
        assert_int_equal(wrong(&a, from, t + 1 + i, &wait), SHMRPC_EPERM);
        hammer_wrong += wrong(&a, hammer, t + 1 + i, &wait) == SHMRPC_EPERM;
    }
    assert_true(flood < 2 * every);
    assert_int_equal(hammer_wrong, 1);
    web_auth_counts c;
    web_auth_counts_get(&a, &c);
    assert_int_equal(c.peers, WEB_AUTH_PEERS);
    /* The flood's last address is kept (one of its burst spent), its first was let go. */
    int64_t now = t + flood;
    snprintf(from, sizeof from, "10.%d.%d.1", (flood - 1) / 256, (flood - 1) % 256);
    assert_int_equal(burst(&a, from, now), WEB_AUTH_WRONG_BURST - 1);
    assert_int_equal(burst(&a, "10.0.0.1", now), WEB_AUTH_WRONG_BURST);

    /* Every count has run out. B spends its burst, 255 others one each, and fill the
     * table; 3 s later theirs have run out, B's not (3 of 5 back), though B has been quiet
     * longest: a new address takes one of theirs. */
    now += 10 * every;
    const char *b = "198.51.100.2";
    assert_int_equal(burst(&a, b, now), WEB_AUTH_WRONG_BURST);
    for (int i = 0; i < WEB_AUTH_PEERS - 1; i++) {
        snprintf(from, sizeof from, "10.100.%d.%d", i / 256, i % 256);
        assert_int_equal(wrong(&a, from, now + 1 + i, &wait), SHMRPC_EPERM);
    }
    now += 3 * every;
    assert_int_equal(wrong(&a, "10.200.0.1", now, &wait), SHMRPC_EPERM);
    assert_int_equal(burst(&a, b, now), 3);
    web_auth_counts_get(&a, &c);
    assert_int_equal(c.peers, WEB_AUTH_PEERS);
    assert_int_equal(right(&a, FROM(hammer), now), 0);
    assert_int_equal(right(&a, FROM(b), now + every), 0);
    assert_int_equal(right(&a, FROM("10.200.0.1"), now), 0);
    assert_int_equal(right(&a, FROM("10.250.0.1"), now), 0);
    web_auth_destroy(&a);
}

/* A socket listening on 127.0.0.1 at an ephemeral port: its fd, the port in *port. */
static int listen_lo(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* The peer's port of an accepted connection. */
static int peer_port(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    assert_int_equal(getpeername(fd, (struct sockaddr *)&sa, &len), 0);
    return ntohs(sa.sin_port);
}

/* web_auth_peer_uid(addr, port, server) polled every 10 ms for up to 2 s until it is
 * want: the kernel moves a closed socket on by itself. What it said last. */
static long peer_uid_becomes(const char *addr, int port, int server, long want)
{
    long uid = web_auth_peer_uid(addr, port, server);
    for (int64_t end = sup_now_ms() + 2000; uid != want && sup_now_ms() < end; sup_nap_ms(10))
        uid = web_auth_peer_uid(addr, port, server);
    return uid;
}

/* test_peer_uid's descriptors and child, which its teardown closes and ends, also when the
 * test fails. */
static int peer_fds[12];
static int n_peer_fds;
static pid_t peer_kid;

/* fd, held for the teardown; the test fails when it is not a descriptor (what made it
 * failed: says which). */
static int held(int fd, const char *what)
{
    if (fd < 0) fail_msg("%s: %s", what, strerror(errno));
    assert_true(n_peer_fds < (int)(sizeof peer_fds / sizeof peer_fds[0]));
    peer_fds[n_peer_fds++] = fd;
    return fd;
}

/* Closes a held fd, which the teardown then leaves alone. */
static void let_go(int fd)
{
    for (int i = 0; i < n_peer_fds; i++)
        if (peer_fds[i] == fd) {
            peer_fds[i] = peer_fds[--n_peer_fds];
            break;
        }
    close(fd);
}

static int peer_fds_close(void **state)
{
    (void)state;
    while (n_peer_fds > 0)
        close(peer_fds[--n_peer_fds]);
    if (peer_kid > 0) { /* its pipes are closed: it ends by itself, or is ended here */
        kill(peer_kid, SIGKILL);
        waitpid(peer_kid, NULL, 0);
    }
    peer_kid = 0;
    return 0;
}

/* Who a local peer is: the owner of its socket, asked of the kernel; a socket that was
 * closed (the kernel keeps it a while, and says uid 0 for it) and an address that is not
 * loopback are nobody's (-1). As root, a peer of nobody's from 127.0.0.3 too. */
static void test_peer_uid(void **state)
{
    (void)state;
    int server, lfd = held(listen_lo(&server), "listen");
    int c = held(http_connect_from("127.0.0.2", server), "connect from 127.0.0.2");
    int s = held(accept4(lfd, NULL, NULL, SOCK_CLOEXEC), "accept");
    int port = peer_port(s);
    assert_int_equal(web_auth_peer_uid("127.0.0.2", port, server), (long)geteuid());
    assert_int_equal(web_auth_peer_uid("::ffff:127.0.0.2", port, server), (long)geteuid());
    /* Not that socket: another port, another address, or not loopback at all. */
    assert_int_equal(web_auth_peer_uid("127.0.0.2", port, server == 65535 ? 1 : server + 1), -1);
    assert_int_equal(web_auth_peer_uid("127.0.0.4", port, server), -1);
    assert_int_equal(web_auth_peer_uid("192.0.2.1", port, server), -1);
    assert_int_equal(web_auth_peer_uid("not an address", port, server), -1);
    assert_int_equal(web_auth_peer_uid("127.0.0.2", 0, server), -1);
    /* Half closed (shutdown, as nc -N does): still its owner's; closed: nobody's. */
    assert_int_equal(shutdown(c, SHUT_WR), 0);
    assert_int_equal(peer_uid_becomes("127.0.0.2", port, server, (long)geteuid()), (long)geteuid());
    let_go(c);
    assert_int_equal(peer_uid_becomes("127.0.0.2", port, server, -1), -1);
    let_go(s);
    /* Ports out of range, no address. */
    assert_int_equal(web_auth_peer_uid(NULL, port, server), -1);
    assert_int_equal(web_auth_peer_uid("127.0.0.2", 65536, server), -1);
    assert_int_equal(web_auth_peer_uid("127.0.0.2", port, 0), -1);
    assert_int_equal(web_auth_peer_uid("127.0.0.2", port, 65536), -1);
    /* IPv6: a peer at ::1, and a peer whose own socket is IPv6 with an IPv4 address mapped
     * into it (::ffff:127.x.y.z), which a page on :: sees so; a mapped address that is not
     * loopback, and an IPv6 one that is not, are nobody's. */
    int l6 = held(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"), server6;
    struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6, .sin6_addr = in6addr_loopback};
    socklen_t len6 = sizeof sa6;
    if (bind(l6, (struct sockaddr *)&sa6, sizeof sa6) != 0) {
        test_skip_part("IPv6 peers: no ::1 here");
        let_go(l6);
    } else {
        assert_int_equal(listen(l6, 4), 0);
        assert_int_equal(getsockname(l6, (struct sockaddr *)&sa6, &len6), 0);
        server6 = ntohs(sa6.sin6_port);
        int c6 = held(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
        assert_int_equal(connect(c6, (struct sockaddr *)&sa6, sizeof sa6), 0);
        struct sockaddr_in6 me = {0};
        len6 = sizeof me;
        assert_int_equal(getsockname(c6, (struct sockaddr *)&me, &len6), 0);
        port = ntohs(me.sin6_port);
        assert_int_equal(web_auth_peer_uid("::1", port, server6), (long)geteuid());
        assert_int_equal(web_auth_peer_uid("::1", port, server6 == 65535 ? 1 : server6 + 1), -1);
        assert_int_equal(web_auth_peer_uid("2001:db8::1", port, server6), -1);
        let_go(c6);
        let_go(l6);
    }
    /* A socket of IPv6 from ::ffff:127.0.0.5 to the IPv4 listener: one that takes IPv4
     * addresses (IPV6_V6ONLY off, which net.ipv6.bindv6only = 1 would not leave it). */
    int m6 = held(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"), off = 0;
    if (setsockopt(m6, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) != 0) {
        test_skip_part("IPv6 sockets with IPv4 addresses: no IPv6 here");
        let_go(m6);
    } else {
        struct sockaddr_in6 from = {.sin6_family = AF_INET6}, to = {.sin6_family = AF_INET6};
        assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.5", &from.sin6_addr), 1);
        assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.1", &to.sin6_addr), 1);
        to.sin6_port = htons((uint16_t)server);
        if (bind(m6, (struct sockaddr *)&from, sizeof from) != 0)
            fail_msg("bind to ::ffff:127.0.0.5: %s", strerror(errno));
        if (connect(m6, (struct sockaddr *)&to, sizeof to) != 0)
            fail_msg("connect to ::ffff:127.0.0.1: %s", strerror(errno));
        s = held(accept4(lfd, NULL, NULL, SOCK_CLOEXEC), "accept");
        port = peer_port(s);
        assert_int_equal(web_auth_peer_uid("::ffff:127.0.0.5", port, server), (long)geteuid());
        assert_int_equal(web_auth_peer_uid("::ffff:10.0.0.5", port, server), -1);
        let_go(m6);
        let_go(s);
    }
    /* More random bytes than it gives at once: refused, out untouched. */
    char hex[2 * WEB_RANDOM_MAX + 3] = "untouched";
    assert_int_equal(web_random_hex(hex, WEB_RANDOM_MAX + 1), SHMRPC_EINVAL);
    assert_string_equal(hex, "untouched");
    if (geteuid() != 0) {
        test_skip_part("nobody's peer: needs root to become another user");
        let_go(lfd);
        return;
    }
    /* A child of uid 65534 connects, half closes, closes, each when told (bounded: the
     * pipe's end, should the test fail, ends it). */
    int go[2], told[2];
    assert_int_equal(pipe2(go, O_CLOEXEC), 0);
    held(go[0], "pipe"), held(go[1], "pipe");
    assert_int_equal(pipe2(told, O_CLOEXEC), 0);
    held(told[0], "pipe"), held(told[1], "pipe");
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        close(go[1]);
        close(told[0]);
        alarm(20);
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
        int fd = http_connect_from("127.0.0.3", server);
        char step = fd >= 0 ? 'c' : 'x';
        if (write(told[1], &step, 1) != 1) _exit(3);
        while (read(go[0], &step, 1) == 1) {
            if (step == 's') shutdown(fd, SHUT_WR);
            if (step == 'x') close(fd);
            if (write(told[1], &step, 1) != 1) _exit(3);
        }
        _exit(0);
    }
    peer_kid = kid;
    let_go(go[0]);
    let_go(told[1]);
    char step = 0;
    assert_int_equal(read(told[0], &step, 1), 1);
    assert_int_equal(step, 'c');
    s = held(accept4(lfd, NULL, NULL, SOCK_CLOEXEC), "accept");
    port = peer_port(s);
    assert_int_equal(web_auth_peer_uid("127.0.0.3", port, server), 65534);
    assert_int_equal(write(go[1], "s", 1), 1);
    assert_int_equal(read(told[0], &step, 1), 1);
    assert_int_equal(peer_uid_becomes("127.0.0.3", port, server, 65534), 65534);
    assert_int_equal(write(go[1], "x", 1), 1);
    assert_int_equal(read(told[0], &step, 1), 1);
    assert_int_equal(peer_uid_becomes("127.0.0.3", port, server, -1), -1);
    let_go(go[1]);
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    peer_kid = 0;
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    let_go(told[0]);
    let_go(s);
    let_go(lfd);
}

/* The secret of a JSON login, read with jansson: escapes, other members of any kind,
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
        /* JSON is UTF-8: jansson refuses other bytes (such a secret goes as a form, %XX). */
        {"{\"secret\": \"\xff raw\"}", NULL, 0},
        {"{\"a\": 1, \"a\": 2, \"secret\": \"x\"}", NULL, 0}, /* any member twice */
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
        /* Hex digits of either case; a surrogate pair's edges; names longer than "secret"
         * (skipped, as another member); numbers, literals and members that stop short. */
        {"{\"secret\": \"\\u00E9\\uE000\\uFfFf\"}", "\xc3\xa9\xee\x80\x80\xef\xbf\xbf", 8},
        {"{\"secretsecret\": 1, \"secret\": \"a\", \"much-longer\": {}}", "a", 1},
        {"{\"x\": [1E5, 0.5e-3, -0, 7e+1, \"\"], \"secret\": \"b\"}", "b", 1},
        {"{\"secret\": \"\\u00 0\"}", NULL, 0},
        {"{\"secret\": \"\\u00:0\"}", NULL, 0},
        {"{\"secret\": \"\\u1", NULL, 0},
        {"{\"secret\": \"\\", NULL, 0},
        {"{\"secret\": \"\\ud83d", NULL, 0},
        {"{\"secret\": \"\\ud83dxy\"}", NULL, 0},
        {"{\"secret\": \"\\ud83d\\n\"}", NULL, 0},
        {"{\"secret\": \"\\ud83d\\uzzzz\"}", NULL, 0},
        {"{\"secret\": \"\\ud83d\\u0041\"}", NULL, 0},
        {"{\"secret\": \"\\ud83d\\ue000\"}", NULL, 0},
        {"{\"a\x01\": 1, \"secret\": \"a\"}", NULL, 0},
        {"{\"x\": nul", NULL, 0},
        {"{\"x\": -", NULL, 0},
        {"{\"x\": -x, \"secret\": \"a\"}", NULL, 0},
        {"{\"x\": 1.", NULL, 0},
        {"{\"x\": 1", NULL, 0},
        {"{\"x\": 1e", NULL, 0},
        {"{\"x\": 1e+, \"secret\": \"a\"}", NULL, 0},
        {"{\"x\": 1E-x, \"secret\": \"a\"}", NULL, 0},
        {"{\"x\": {1: 2}, \"secret\": \"a\"}", NULL, 0},
        {"{\"x\": {\"a\" 1}, \"secret\": \"a\"}", NULL, 0},
        {"{\"x\": {\"a\x01\": 1}, \"secret\": \"a\"}", NULL, 0},
        {"{\"x\": [1 2], \"secret\": \"a\"}", NULL, 0},
        {"{\"x\": ", NULL, 0},
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
    /* A character of more than one byte that does not fit whole is refused as well, at its
     * first byte or at a later one. */
    const char *lead = "{\"secret\": \"abcde\\u00e9\"}", *tail = "{\"secret\": \"abcd\\u20ac\"}";
    assert_int_equal(web_auth_json_secret(lead, strlen(lead), out, 5, &(size_t){0}), SHMRPC_EINVAL);
    assert_int_equal(web_auth_json_secret(tail, strlen(tail), out, 5, &(size_t){0}), SHMRPC_EINVAL);
    assert_int_equal(web_auth_json_secret(tail, strlen(tail), out, 7, &(size_t){0}), 0);
    assert_memory_equal(out, "abcd\xe2\x82\xac", 7);
}

/* The blocks jansson freed through web_auth_json_wipe's free, kept here instead of freed
 * so that the test can look at them (with free, the page's, they go back to malloc). */
static void *kept[512];
static size_t n_kept;

static void keep(void *p)
{
    assert_true(n_kept < sizeof kept / sizeof kept[0]);
    kept[n_kept++] = p;
}

/* Frees what keep kept (something, or the test would say nothing): whether every byte of
 * every block was wiped. */
static bool kept_wiped(void)
{
    assert_true(n_kept > 0);
    bool wiped = true;
    for (size_t i = 0; i < n_kept; i++) {
        const unsigned char *b = kept[i];
        for (size_t k = 0, size = malloc_usable_size(kept[i]); k < size; k++)
            wiped &= b[k] == 0;
        free(kept[i]);
    }
    n_kept = 0;
    return wiped;
}

/* What jansson frees while it reads a JSON login is wiped once web_auth_json_wipe ran, as
 * the page's process does at its start: its lexer's buffers and the decoded string, for a
 * body it takes, ones it refuses after the secret, and a secret too large for out. */
static void test_json_secret_wiped(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"n\": [1, 2.5, {\"m\": null}], \"secret\": \"0123456789abcdefghij\\u00e9klmnopqrstuv\"}",
        "{\"secret\": \"0123456789abcdefghij\\u00e9klmnopqrstuv\", \"x\": tru}",
        "{\"secret\": \"0123456789abcdefghij\\u00e9klmnopqrstuv\", \"secret\": \"b\"}",
    };
    web_auth_json_wipe(keep);
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char out[64];
        size_t n = 0;
        int rc = web_auth_json_secret(bodies[i], strlen(bodies[i]), out, sizeof out, &n);
        assert_int_equal(rc, i == 0 ? 0 : SHMRPC_EINVAL);
        if (i == 0) {
            assert_int_equal(n, 34);
            assert_memory_equal(out, "0123456789abcdefghij\xc3\xa9klmnopqrstuv", 34);
        }
        if (!kept_wiped()) fail_msg("%s: a block jansson freed is not wiped", bodies[i]);
    }
    char out[8];
    assert_int_equal(
        web_auth_json_secret(bodies[0], strlen(bodies[0]), out, sizeof out, &(size_t){0}),
        SHMRPC_EINVAL);
    if (!kept_wiped()) fail_msg("a secret too large for out: a block jansson freed is not wiped");
    web_auth_json_wipe(NULL); /* as in the page: the other tests' jansson runs with it */
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

static void attack_stop(void);

static int group_teardown(void **state)
{
    (void)state;
    attack_stop();
    sup_end(&T.pub.pid);
    sup_end(&T.lo.pid);
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

/* Runs fn in a child process of uid (the test's own when uid < 0, or when it is not root,
 * which a caller checks), that ends within 70 s whatever fn does: its pid. The child
 * makes no cmocka assertion; what it finds goes through shared memory or a pipe. */
static pid_t as_user(long uid, void (*fn)(void))
{
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        alarm(70);
        if (uid >= 0 && geteuid() == 0 && (setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0))
            _exit(2);
        fn();
        _exit(0);
    }
    return kid;
}

/* Waits up to 20 s for kid (as_user's) and asserts it exited 0; SIGKILL if it did not. */
static void as_user_wait(pid_t kid)
{
    int st = sup_wait_exit(&kid, 20000);
    if (st == -1) sup_kill_reap(&kid);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* What one_login of a child sends, and where its answer goes. */
static struct {
    const char *from, *form;
    int out; /* the pipe the answer is copied to */
} L;

static void one_login(void)
{
    char req[512], buf[4096];
    int fd = http_connect_from(L.from, T.pub.port);
    int n = snprintf(req, sizeof req,
                     "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(L.form), L.form);
    if (fd < 0 || n <= 0 || (size_t)n >= sizeof req || write(fd, req, (size_t)n) != n) _exit(3);
    ssize_t k;
    while ((k = read(fd, buf, sizeof buf)) > 0)
        if (write(L.out, buf, (size_t)k) != k) _exit(3);
    close(fd);
}

/* POST /login of form from the source address from by a process of uid: the answer. */
static void login_as(long uid, const char *from, const char *form, resp *r)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    L.from = from;
    L.form = form;
    L.out = p[1];
    pid_t kid = as_user(uid, one_login);
    close(p[1]);
    int rc = http_read_answer(p[0], r);
    close(p[0]);
    as_user_wait(kid);
    assert_int_equal(rc, 0);
}

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
    /* The test's own user (root in CI, or the page's) can read the secret's file: its
     * wrong secrets are all compared, 403, never 429. */
    for (int i = 0; i < 3 * WEB_AUTH_WRONG_BURST; i++) {
        assert_int_equal(http_raw_from("127.0.1.1", T.pub.port, NULL, "POST", "/login", FORM,
                                       "secret=guess-guess-guess-guess", &r),
                         0);
        expect_error(&r, 403, "SHMRPC_EPERM");
        resp_free(&r);
    }
    if (geteuid() != 0) {
        test_skip_part("the limit of another user: needs root to become one");
    } else {
        /* nobody's wrong secrets from one address: 5 are answered 403, the next within the
         * second 429, and nobody's right one too (not compared); the right one of another
         * user of that address gets in, and another address of nobody's is not limited.
         * The eight logins take tens of ms; should this machine be so slow that a second
         * passed, the round is tried again from another address. */
        for (int round = 0;; round++) {
            char from[32];
            snprintf(from, sizeof from, "127.0.1.%d", round + 2);
            int64_t t0 = sup_now_ms();
            int forbidden = 0;
            for (int i = 0; i < WEB_AUTH_WRONG_BURST; i++) {
                login_as(65534, from, "secret=guess-guess-guess-guess", &r);
                forbidden += r.status == 403;
                resp_free(&r);
            }
            resp wrong6, right;
            login_as(65534, from, "secret=guess-guess-guess-gues2", &wrong6);
            login_as(65534, from, SECRET_FORM, &right);
            bool in_time = sup_now_ms() - t0 < WEB_AUTH_WRONG_EVERY_MS;
            if (in_time) {
                assert_int_equal(forbidden, WEB_AUTH_WRONG_BURST);
                expect_error(&wrong6, 429, "SHMRPC_EBUSY");
                assert_string_equal(header(&wrong6, "Retry-After"), "1");
                expect_error(&right, 429, "SHMRPC_EBUSY");
            }
            resp_free(&wrong6);
            resp_free(&right);
            login_as(65533, from, SECRET_FORM, &r);
            expect_status(&r, 303);
            resp_free(&r);
            login_as(65534, "127.0.2.1", "secret=guess-guess-guess-guess", &r);
            expect_error(&r, 403, "SHMRPC_EPERM");
            resp_free(&r);
            if (in_time) break;
            assert_true(round < 3);
        }
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
    /* The right one: a session. */
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
    /* A second session, logged in with JSON (a right secret gives its turn back), the
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

/* The session cookie among others and as browsers and scripts send it: blanks after its
 * value (civetweb answers a tab in a header with its own 400); a name that only begins like it,
 * another port's, a value of another length are no session. The login page's ?next= is
 * percent-encoded; a login form without a Content-Type is a form; an empty secret is a wrong one;
 * JSON is known in any case. */
static void test_cookies(void **state)
{
    (void)state;
    resp r;
    const char *id = strchr(T.cookie, '=') + 1;
    char extra[512];
    snprintf(extra, sizeof extra, "Cookie: %s   ; a=1\r\n", T.cookie);
    req("GET", "/api/token", false, false, extra, NULL, &r);
    expect_status(&r, 200);
    resp_free(&r);
    const char *const refused[] = {"shmrpc_session_%dx=%s", "shmrpc_session_%d0=%s",
                                   "xshmrpc_session_%d=%s", "shmrpc_session_%d=%.63s",
                                   "shmrpc_session_%d=%sf", "shmrpc_session_%d %s"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char c[200];
        snprintf(c, sizeof c, refused[i], T.pub.port, id);
        snprintf(extra, sizeof extra, "Cookie: %s\r\n", c);
        req("GET", "/api/token", false, false, extra, NULL, &r);
        if (r.status != 401) fprintf(stderr, "%s: %d\n", c, r.status);
        expect_error(&r, 401, "SHMRPC_EPERM");
        resp_free(&r);
    }
    /* Back to the page asked for, as the browser asked for it. */
    req("GET", "/services/Ab9%20x~%3C", false, false, NULL, NULL, &r);
    expect_status(&r, 303);
    assert_string_equal(header(&r, "Location"), "/login?next=/services/Ab9%20x~%3C");
    resp_free(&r);
    /* A form as such, without its Content-Type: the right one; empty: a wrong one. */
    char cookie[160];
    req("POST", "/login", false, false, NULL, SECRET_FORM, &r);
    take_cookie(&r, cookie, sizeof cookie);
    resp_free(&r);
    req("POST", "/login", false, false, NULL, "secret=", &r);
    expect_error(&r, 403, "SHMRPC_EPERM");
    resp_free(&r);
    req("POST", "/login", false, false, NULL, "secret=%0A", &r);
    expect_error(&r, 403, "SHMRPC_EPERM");
    resp_free(&r);
    req("POST", "/login", false, false, "Content-Type: Application/JSON; charset=utf-8\r\n",
        "{\"secret\": \"" SECRET "\"}", &r);
    take_cookie(&r, cookie, sizeof cookie);
    resp_free(&r);
}

/* --- wrong secrets beside the right one ------------------------------------------------- */

/* One POST /login of form from the source address from to the public page: its status, or
 * -1 without an answer. No cmocka assertion: the attackers' threads call it. */
static int login_status(const char *from, const char *form)
{
    int fd = http_connect_from(from, T.pub.port);
    if (fd < 0) return -1;
    char req[512], buf[4096];
    int n = snprintf(req, sizeof req,
                     "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(form), form);
    int status = -1;
    size_t got = 0;
    if (n > 0 && (size_t)n < sizeof req && write(fd, req, (size_t)n) == n) {
        ssize_t k;
        while (got < sizeof buf - 1 && (k = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
            got += (size_t)k;
        buf[got] = '\0';
        if (sscanf(buf, "HTTP/1.1 %d", &status) != 1) status = -1;
    }
    close(fd);
    return status;
}

/* Attackers: a child process of a given user whose threads send wrong secrets from one
 * address, as fast as the page answers, until told to stop (or for 60 s at most, should a
 * failed test not tell them); or that sends one each from many addresses (flood). Their
 * counts are in memory shared with the test. */
#define ATTACKERS 4
typedef struct attack_shared {
    atomic_bool stop;
    atomic_long forbidden, limited, other; /* answers: 403, 429, anything else */
} attack_shared;
static struct {
    attack_shared *sh;
    const char *from;
    long uid;
    int threads, flood;
    pid_t kid;
    int64_t t0, t1;
} A;

static void *attack(void *arg)
{
    (void)arg;
    int64_t until = sup_now_ms() + 60000;
    while (!atomic_load(&A.sh->stop) && sup_now_ms() < until) {
        int st = login_status(A.from, "secret=wrong-wrong-wrong-wrong");
        atomic_fetch_add(st == 403   ? &A.sh->forbidden
                         : st == 429 ? &A.sh->limited
                                     : &A.sh->other,
                         1);
    }
    return NULL;
}

static void attackers(void)
{
    pthread_t t[ATTACKERS];
    int n = 0;
    while (n < A.threads && pthread_create(&t[n], NULL, attack, NULL) == 0)
        n++;
    while (n > 0)
        pthread_join(t[--n], NULL);
}

/* One wrong secret from each of A.flood addresses 127.1.x.y. */
static void flooder(void)
{
    for (int i = 0; i < A.flood; i++) {
        char from[32];
        snprintf(from, sizeof from, "127.1.%d.%d", i / 200, i % 200 + 1);
        int st = login_status(from, "secret=wrong-wrong-wrong-wrong");
        atomic_fetch_add(st == 403   ? &A.sh->forbidden
                         : st == 429 ? &A.sh->limited
                                     : &A.sh->other,
                         1);
    }
}

static void attack_reset(void)
{
    if (!A.sh) {
        A.sh = mmap(NULL, sizeof *A.sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        assert_true(A.sh != MAP_FAILED);
    }
    atomic_store(&A.sh->stop, false);
    atomic_store(&A.sh->forbidden, 0);
    atomic_store(&A.sh->limited, 0);
    atomic_store(&A.sh->other, 0);
}

/* Starts threads attackers of uid from from, and waits (up to 10 s) until the page has
 * answered them 20 times: past a limited address's burst, they send hundreds a second. */
static void attack_start(const char *from, long uid, int threads)
{
    attack_reset();
    A.from = from;
    A.uid = uid;
    A.threads = threads;
    A.t0 = sup_now_ms();
    A.kid = as_user(uid, attackers);
    for (int64_t end = sup_now_ms() + 10000; sup_now_ms() < end; sup_nap_ms(10))
        if (atomic_load(&A.sh->forbidden) + atomic_load(&A.sh->limited) >= 20) break;
}

static void attack_stop(void)
{
    if (!A.kid) return;
    atomic_store(&A.sh->stop, true);
    as_user_wait(A.kid);
    A.kid = 0;
    A.t1 = sup_now_ms();
}

/* Prints what the attackers got and asserts it: every answer 403 or 429; a limited user's
 * no more 403s than its limit allows in the time they ran (a count lost would give it a
 * fresh burst), and 429 for the rest; the page's own user's all 403. */
static void attack_check(bool limited)
{
    long forbidden = atomic_load(&A.sh->forbidden), over = atomic_load(&A.sh->limited);
    int64_t ms = A.t1 - A.t0;
    printf("wrong secrets from %s as uid %ld: %ld in %lld ms (%.0f a second): %ld 403, %ld "
           "429, %ld other\n",
           A.from, A.uid < 0 ? (long)geteuid() : A.uid,
           forbidden + over + atomic_load(&A.sh->other), (long long)ms,
           (double)(forbidden + over) * 1000.0 / (double)(ms ? ms : 1), forbidden, over,
           atomic_load(&A.sh->other));
    assert_int_equal(atomic_load(&A.sh->other), 0);
    if (limited) {
        assert_true(over > 0);
        assert_true(forbidden >= WEB_AUTH_WRONG_BURST);
        assert_true(forbidden <= WEB_AUTH_WRONG_BURST + ms / WEB_AUTH_WRONG_EVERY_MS + 1);
    } else {
        assert_int_equal(over, 0);
        assert_true(forbidden >= 20);
    }
}

/* The value of the /metrics sample line that begins with head, or -1. */
static long long metric(const char *head)
{
    resp r;
    req("GET", "/metrics", true, false, NULL, NULL, &r);
    expect_status(&r, 200);
    long long v = -1;
    for (const char *p = r.body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, head, strlen(head)) == 0 && p[strlen(head)] == ' ')
            v = strtoll(p + strlen(head) + 1, NULL, 10);
    resp_free(&r);
    return v;
}

/* The right secret, TRIES times 100 ms apart, from each of n (address, user) pairs while
 * the attackers run: each must get in (303) within 5 s (a loaded machine; it takes
 * milliseconds); prints how many got in and the slowest. */
typedef struct right_one {
    const char *from;
    long uid; /* -1: the test's own */
} right_one;

static void rights_beside(const right_one *who, int n)
{
    enum { TRIES = 5 };
    for (int k = 0; k < n; k++) {
        int in = 0;
        int64_t most = 0;
        for (int i = 0; i < TRIES; i++) {
            int64_t t = sup_now_ms();
            int st;
            if (who[k].uid < 0) {
                st = login_status(who[k].from, SECRET_FORM);
            } else {
                resp r;
                login_as(who[k].uid, who[k].from, SECRET_FORM, &r);
                st = r.status;
                resp_free(&r);
            }
            int64_t took = sup_now_ms() - t;
            most = took > most ? took : most;
            in += st == 303 && took < 5000;
            sup_nap_ms(100);
        }
        printf("the right secret from %s as uid %ld beside them: %d of %d in, the slowest in "
               "%lld ms\n",
               who[k].from, who[k].uid < 0 ? (long)geteuid() : who[k].uid, in, TRIES,
               (long long)most);
        assert_int_equal(in, TRIES);
    }
}

/* While 4 threads of nobody's send wrong secrets as fast as the page answers them, from
 * 127.0.0.2 and then from 127.0.0.1, the right secret gets in at its first try: from the
 * other address, from theirs as another user, and from theirs as the page's own user
 * (the operator); nobody gets 403 within its limit and 429 past it, counted in /metrics.
 * Then the page's own user sends wrong secrets from 127.0.0.1 (a script with a stale
 * secret): never limited, and the right one from the same address and user gets in. */
static void test_wrong_beside_right(void **state)
{
    (void)state;
    if (geteuid() == 0) {
        static const char *const froms[] = {"127.0.0.2", "127.0.0.1"};
        for (int f = 0; f < 2; f++) {
            long long limited0 = metric("shmrpc_web_logins_total{result=\"limited\"}");
            attack_start(froms[f], 65534, ATTACKERS);
            const right_one who[] = {{froms[1 - f], -1}, {froms[f], -1}, {froms[f], 65533}};
            rights_beside(who, 3);
            attack_stop();
            attack_check(true);
            assert_true(metric("shmrpc_web_logins_total{result=\"limited\"}") - limited0 >=
                        atomic_load(&A.sh->limited));
        }
    } else {
        test_skip_part("nobody's attackers: needs root to become another user");
    }
    long long limited0 = metric("shmrpc_web_logins_total{result=\"limited\"}");
    attack_start("127.0.0.1", -1, ATTACKERS);
    const right_one self[] = {{"127.0.0.1", -1}};
    rights_beside(self, 1);
    attack_stop();
    attack_check(false);
    assert_int_equal(metric("shmrpc_web_logins_total{result=\"limited\"}"), limited0);
}

/* Wrong secrets of nobody's from 3 tables' worth of addresses (127.1.x.y), one each, while
 * 2 threads of nobody's go on from 127.0.0.11: the table stays within its bound, the
 * attackers' address keeps its count (no fresh burst), and the right secret gets in from
 * theirs as another user and, once its turn has come, from one of the flood's. */
static void test_address_flood(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        test_skip("needs root to become another user");
    }
    attack_start("127.0.0.11", 65534, 2);
    attack_shared *hammer = A.sh;
    A.sh = NULL;
    attack_reset();
    attack_shared *flood_sh = A.sh;
    A.flood = 3 * WEB_AUTH_PEERS;
    int64_t t0 = sup_now_ms();
    as_user_wait(as_user(65534, flooder));
    int64_t flood_ms = sup_now_ms() - t0;
    long forbidden = atomic_load(&flood_sh->forbidden);
    munmap(flood_sh, sizeof *flood_sh);
    A.sh = hammer;
    resp theirs, flooded;
    login_as(65533, "127.0.0.11", SECRET_FORM, &theirs);
    login_as(65534, "127.1.0.1", SECRET_FORM, &flooded);
    attack_stop();
    long long kept = metric("shmrpc_web_login_peers");
    printf("%d addresses sent a wrong secret each in %lld ms: %ld got 403; the page keeps "
           "%lld peers; the right secret from the attackers' address as another user: %d, "
           "from the flood's first: %d\n",
           A.flood, (long long)flood_ms, forbidden, kept, theirs.status, flooded.status);
    assert_int_equal(forbidden, A.flood);
    assert_true(kept > 0 && kept <= WEB_AUTH_PEERS);
    expect_status(&theirs, 303);
    expect_status(&flooded, 303);
    resp_free(&theirs);
    resp_free(&flooded);
    attack_check(true);
}

/* What Host the page on 0.0.0.0 answers to (with a secret: /login is open): numeric
 * addresses and loopback names, each exactly as a browser sends it. */
static void test_hosts(void **state)
{
    (void)state;
    expect_hosts(T.pub.port, true, "/login", 200);
}

/* The page's "web monitor at" line of s's log, waited for up to 5 s: the page may answer
 * before its line has come through its keeper's pipe. "" when it does not come. */
static const char *log_line(const sup *s)
{
    for (int64_t end = sup_now_ms() + 5000;; sup_nap_ms(20)) {
        const char *at = strstr(sup_slurp(s->dir, "supervisor.err"), "web monitor at ");
        if (at) return at;
        if (sup_now_ms() > end) return "";
    }
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
    assert_non_null(strstr(log_line(&T.lo), "/ (the secret of "));
    assert_int_equal(sup_down(&T.lo), 0); /* exit 0: under ASan, no leak either */
    assert_int_equal(sup_up(&T.lo, "secret_file = web.secret\n", "secret_file = none\n"), 0);
    assert_int_equal(http_raw(T.lo.port, NULL, "GET", "/api/services", NULL, NULL, &r), 0);
    expect_status(&r, 200);
    resp_free(&r);
    assert_int_equal(http_raw(T.lo.port, NULL, "GET", "/login", NULL, NULL, &r), 0);
    expect_error(&r, 404, "SHMRPC_ENOENT");
    resp_free(&r);
    assert_null(strstr(log_line(&T.lo), "(the secret of "));
    assert_int_equal(sup_down(&T.lo), 0);
    /* host = localhost: the page listens on 127.0.0.1 and answers to that name. */
    assert_int_equal(sup_up(&T.lo, "", "host = localhost\n"), 0);
    char want[64], host[64];
    snprintf(want, sizeof want, "web monitor at http://127.0.0.1:%d/\n", T.lo.port);
    assert_memory_equal(log_line(&T.lo), want, strlen(want));
    snprintf(host, sizeof host, "localhost:%d", T.lo.port);
    assert_int_equal(http_raw(T.lo.port, host, "GET", "/api/services", NULL, NULL, &r), 0);
    expect_status(&r, 200);
    resp_free(&r);
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
    const struct CMUnitTest table[] = {cmocka_unit_test_teardown(test_table, auth_dir_rm),
                                       cmocka_unit_test_teardown(test_wrong_limit, auth_dir_rm),
                                       cmocka_unit_test_teardown(test_wrong_table, auth_dir_rm),
                                       cmocka_unit_test_teardown(test_peer_uid, peer_fds_close),
                                       cmocka_unit_test(test_json_secret),
                                       cmocka_unit_test(test_json_secret_wiped)};
    const struct CMUnitTest http[] = {
        cmocka_unit_test(test_no_session),    cmocka_unit_test(test_login),
        cmocka_unit_test(test_actions),       cmocka_unit_test(test_logout),
        cmocka_unit_test(test_cookies),       cmocka_unit_test(test_wrong_beside_right),
        cmocka_unit_test(test_address_flood), cmocka_unit_test(test_hosts),
        cmocka_unit_test(test_loopback),      cmocka_unit_test(test_secret_unreadable),
        cmocka_unit_test(test_sigterm),
    };
    /* WEB_TEST_ONLY=GLOB runs only the matching tests (the mutant kit narrows by it). */
    if (getenv("WEB_TEST_ONLY")) cmocka_set_test_filter(getenv("WEB_TEST_ONLY"));
    int failed = cmocka_run_group_tests_name("web_auth", table, NULL, NULL);
    failed += cmocka_run_group_tests_name("web_auth_http", http, group_setup, group_teardown);
    return test_exit(failed);
}
