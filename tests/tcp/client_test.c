/* SPDX-License-Identifier: MIT */
/* What a tcp:// client promises about its address and its server (issue 40): malformed
 * addresses and listen addresses refused with a message that quotes them as written, names
 * that do not resolve (.invalid names: no real network), a stand-in server that answers the
 * secret's handshake wrongly or a call with what it should not, a late answer of a call that
 * gave up, and an endpoint left out after its server went (the next call is not sent, and a
 * probe takes it back once its server is there again). Real processes on 127.0.0.1; every
 * wait is bounded. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "calls_handlers.h"
#include "transport/tcp/frame.h"
#include "procs.h"
#include "standin.h"

static const char secret[] = "correct horse battery staple";

/* --- addresses refused ---------------------------------------------------------------- */

/* A client of info refuses at with status and exactly msg. */
static void expect_refused(const shmrpc_service_info *info, const char *at, int status,
                           const char *msg)
{
    shmrpc_client *c = NULL;
    assert_int_equal(shmrpc_client_new(&c, info, NULL), 0);
    int rc = shmrpc_client_connect(c, at);
    if (rc != status || strcmp(shmrpc_errmsg(), msg) != 0)
        fail_msg("%s: %s '%s', not %s '%s'", at, shmrpc_strerror(rc), shmrpc_errmsg(),
                 shmrpc_strerror(status), msg);
    shmrpc_client_free(c);
}

/* Addresses a client refuses (docs/wire.md, "Addresses"), each with its message, which
 * quotes the address as written: a scheme that is malformed or unknown, an entry whose
 * bracket is not closed or is followed by something other than :PORT (no port of the .svc
 * is appended to either), a port that is empty, 0, above 65535, too long or not digits, an
 * empty entry, a list too long, an address too long once the .svc's port is added, and
 * addresses that leave out what a service without a `port` or `name` cannot fill in. */
static void addresses_refused(void **state)
{
    (void)state;
    const shmrpc_service_info *calls = &Calls_service_info;
    shmrpc_service_info bare = Calls_service_info; /* a .svc with no port and no name */
    bare.port = 0;
    bare.svc_name = NULL;
    static const struct {
        bool bare;
        const char *at, *msg;
    } cases[] = {
        {false, "tcp://[::1]x:5000",
         "malformed address 'tcp://[::1]x:5000': entry 1 ('[::1]x:5000') has something other "
         "than :PORT after ']'"},
        {false, "tcp://[::1",
         "malformed address 'tcp://[::1': entry 1 ('[::1') has no ']' after "
         "its IPv6 address"},
        {false, "tcp://127.0.0.1:1,[::1]x",
         "malformed address 'tcp://127.0.0.1:1,[::1]x': entry 2 ('[::1]x') has something other "
         "than :PORT after ']'"},
        {false, "tcp://127.0.0.1:0",
         "malformed address 'tcp://127.0.0.1:0': entry 1 ('127.0.0.1:0') has a port that is not "
         "a number from 1 to 65535"},
        {false, "tcp://h:70000",
         "malformed address 'tcp://h:70000': entry 1 ('h:70000') has a port that is not a number "
         "from 1 to 65535"},
        {false, "tcp://127.0.0.1:123456",
         "malformed address 'tcp://127.0.0.1:123456': entry 1 ('127.0.0.1:123456') has a port "
         "that is not a number from 1 to 65535"},
        {false, "tcp://127.0.0.1:18446744073709551617", /* 2^64 + 1: would wrap to 1 */
         "malformed address 'tcp://127.0.0.1:18446744073709551617': entry 1 "
         "('127.0.0.1:18446744073709551617') has a port that is not a number from 1 to 65535"},
        {false, "tcp://127.0.0.1:5x",
         "malformed address 'tcp://127.0.0.1:5x': entry 1 ('127.0.0.1:5x') has a port that is "
         "not a number from 1 to 65535"},
        {false, "tcp://[::1]:+5",
         "malformed address 'tcp://[::1]:+5': entry 1 ('[::1]:+5') has a port that is not a "
         "number from 1 to 65535"},
        {false, "tcp://10.0.0.1:5555,,10.0.0.2:5555",
         "malformed address 'tcp://10.0.0.1:5555,,10.0.0.2:5555': entry 2 is empty"},
        {false, "tcp://::1:5555",
         "malformed address 'tcp://::1:5555': entry 1 ('::1:5555') is an IPv6 address without "
         "brackets: write [ADDRESS]:PORT"},
        {true, "tcp://127.0.0.1:",
         "malformed address 'tcp://127.0.0.1:': entry 1 ('127.0.0.1:') names no port, and the "
         "service's .svc has no `port`: write HOST:PORT"},
        {true, "tcp://127.0.0.1:1,[::1]",
         "malformed address 'tcp://127.0.0.1:1,[::1]': entry 2 ('[::1]') names no port, and the "
         "service's .svc has no `port`: write HOST:PORT"},
        {true, "tcp://[::1]",
         "tcp://[::1] names no port, and the .svc of Calls has no `port` to use: write "
         "tcp://HOST:PORT"},
        {true, "tcp://",
         "tcp:// names no port, and the .svc of Calls has no `port` to use: "
         "write tcp://HOST:PORT"},
        {true, "shm://",
         "shm:// names no service, and the .svc of Calls has no `name` to use: "
         "write shm://NAME"},
        {false, "Tcp://127.0.0.1:5000",
         "malformed address 'Tcp://127.0.0.1:5000': expected "
         "SCHEME://WHERE, e.g. inproc://echo"},
        {false, "1tcp://127.0.0.1:5000",
         "malformed address '1tcp://127.0.0.1:5000': expected "
         "SCHEME://WHERE, e.g. inproc://echo"},
        {false, "tc_p://127.0.0.1:5000",
         "malformed address 'tc_p://127.0.0.1:5000': expected "
         "SCHEME://WHERE, e.g. inproc://echo"},
        {false, "://127.0.0.1:5000",
         "malformed address '://127.0.0.1:5000': expected "
         "SCHEME://WHERE, e.g. inproc://echo"},
        {false, "tcp+tls2.x-y://127.0.0.1:5000",
         "unknown transport 'tcp+tls2.x-y' in address 'tcp+tls2.x-y://127.0.0.1:5000'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_refused(cases[i].bare ? &bare : calls, cases[i].at, SHMRPC_EINVAL, cases[i].msg);
    bare.svc_name = ""; /* an empty `name` is none */
    expect_refused(&bare, "shm://", SHMRPC_EINVAL,
                   "shm:// names no service, and the .svc of Calls has no `name` to use: write "
                   "shm://NAME");

    /* 65 entries */
    char list[1024] = "tcp://";
    for (int i = 0; i < SHMRPC_TCP_MAX_ENDPOINTS + 1; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "", 1000 + i);
    char msg[1200];
    snprintf(msg, sizeof msg, "malformed address '%s': 65 entries, and a list may have at most 64",
             list);
    expect_refused(calls, list, SHMRPC_EINVAL, msg);

    /* A host of 507 bytes with the .svc's port (:6003) does not fit an address. */
    char longer[600] = "tcp://";
    memset(longer + 6, 'a', 507);
    longer[6 + 507] = '\0';
    snprintf(msg, sizeof msg, "the address %s is too long", longer);
    expect_refused(calls, longer, SHMRPC_EINVAL, msg);
}

/* A server of Calls, not listening yet. */
static shmrpc_server *calls_server(void)
{
    shmrpc_server *s = NULL;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &Calls_service, &calls_test_handlers, NULL), 0);
    return s;
}

/* A server refuses at, as it listens, with the message of a malformed address. */
static void expect_listen_refused(const char *where)
{
    shmrpc_server *s = calls_server();
    char at[400], msg[800];
    snprintf(at, sizeof at, "tcp://%s", where);
    snprintf(msg, sizeof msg,
             "malformed address '%s': expected tcp://HOST:PORT with a numeric host (e.g. "
             "tcp://127.0.0.1:5555 or tcp://[::1]:5555) and a port of 1 to 65535",
             at);
    int rc = shmrpc_server_listen(s, at);
    if (rc != SHMRPC_EINVAL || strcmp(shmrpc_errmsg(), msg) != 0)
        fail_msg("%s: %s '%s'", at, shmrpc_strerror(rc), shmrpc_errmsg());
    shmrpc_server_free(s);
}

/* Listens at tcp://where, then a raw connection to 127.0.0.1:port is taken (the kernel's
 * backlog holds it: nothing is served). */
static void expect_listen_on_loopback(const char *where, int port)
{
    shmrpc_server *s = calls_server();
    char at[128];
    snprintf(at, sizeof at, "tcp://%s", where);
    int rc = shmrpc_server_listen(s, at);
    if (rc) fail_msg("%s: %s '%s'", at, shmrpc_strerror(rc), shmrpc_errmsg());
    int fd = test_raw_connect(port, 0);
    assert_true(fd >= 0);
    close(fd);
    shmrpc_server_free(s);
}

/* A server's address is numeric (a name, even one that would resolve, is refused without
 * asking DNS), its port 1 to 65535 in digits, its IPv6 host in brackets; an address of 300
 * bytes or more is refused, even one whose port would read as 5000. `:PORT` and
 * `localhost:PORT` are 127.0.0.1, and 127.0.0.1 mapped to IPv6 is loopback; an IPv6 host
 * that is not loopback (mapped or not) needs a secret. */
static void listen_addresses(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "[::1",
        "[::1]5000",
        "::1:5000",
        "127.0.0.1:0",
        "127.0.0.1:x",
        "127.0.0.1:5x",
        "127.0.0.1:65536",
        "127.0.0.1:99999999999999999999",
        "127.0.0.1:",
        "nothere.invalid:5000",
        "[nothere.invalid]:5000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_listen_refused(bad[i]);
    char longer[320] = "127.0.0.1:"; /* port 5000, with zeros before it to 300 bytes */
    memset(longer + 10, '0', 286);
    strcpy(longer + 296, "5000");
    expect_listen_refused(longer);

    int port = test_free_port();
    char where[64];
    snprintf(where, sizeof where, ":%d", port);
    expect_listen_on_loopback(where, port);
    port = test_free_port();
    snprintf(where, sizeof where, "localhost:%d", port);
    expect_listen_on_loopback(where, port);
    port = test_free_port();
    snprintf(where, sizeof where, "[::ffff:127.0.0.1]:%d", port);
    expect_listen_on_loopback(where, port);

    /* Not loopback, and no secret: refused. */
    static const char *const open_to_all[] = {"[::]", "[::ffff:10.0.0.1]", "[2001:db8::1]"};
    for (size_t i = 0; i < sizeof open_to_all / sizeof open_to_all[0]; i++) {
        shmrpc_server *s = calls_server();
        char at[128], msg[300];
        snprintf(at, sizeof at, "tcp://%s:%d", open_to_all[i], test_free_port());
        snprintf(msg, sizeof msg,
                 "binding %s, which is not a loopback address, needs a shared secret "
                 "(shmrpc_tcp_opts.secret) or mutual TLS (tls_cert and tls_ca)",
                 at);
        int rc = shmrpc_server_listen(s, at);
        if (rc != SHMRPC_EPERM || strcmp(shmrpc_errmsg(), msg) != 0)
            fail_msg("%s: %s '%s'", at, shmrpc_strerror(rc), shmrpc_errmsg());
        shmrpc_server_free(s);
    }
}

/* --- names that do not resolve ---------------------------------------------------------- */

static pid_t start_server(const char *at)
{
    test_server ts = {&Calls_service, &calls_test_handlers, at, 1, 0, NULL, NULL, NULL};
    pid_t pid = test_start_server(&ts);
    assert_true(pid > 0);
    return pid;
}

static shmrpc_client *connect_with(const char *at, const shmrpc_client_opts *o)
{
    int rc;
    shmrpc_client *c = test_connect(&Calls_service_info, o, at, &rc);
    if (!c || rc) fail_msg("connect %s: %s: %s", at, shmrpc_strerror(rc), shmrpc_errmsg());
    return c;
}

/* A server on a free port of 127.0.0.1 that serves already: its pid; its port in *port,
 * its address in at. */
static pid_t start_server_up(int *port, char at[static 64])
{
    *port = test_free_port();
    snprintf(at, 64, "tcp://127.0.0.1:%d", *port);
    pid_t server = start_server(at);
    shmrpc_client_free(connect_with(at, NULL)); /* it is up */
    return server;
}

static void check_add(shmrpc_client *c, int64_t a, int64_t b)
{
    int64_t sum = 0;
    int rc = calls_add(c, a, b, &sum);
    if (rc) fail_msg("add: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(sum, a + b);
}

/* A list whose names do not resolve (.invalid) is refused, saying the last name's failure;
 * a list with a numeric endpoint beside such a name connects, and its calls go to the
 * endpoint there is, also while the name is resolved again (and fails again) in the
 * background. A connect waits for the resolver's thread without a crash (it used
 * gai_suspend, whose waiter that thread could write through after it returned). */
static void names_that_do_not_resolve(void **state)
{
    (void)state;
    shmrpc_client *c = NULL;
    assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, NULL), 0);
    for (int i = 0; i < 5; i++) { /* a resolver thread racing the wait, several times */
        int rc = shmrpc_client_connect(c, "tcp://first.invalid:5000,second.invalid");
        if (i == 0) print_message("%s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
        if ((rc != SHMRPC_ENOENT && rc != SHMRPC_EUNAVAIL) ||
            strncmp(shmrpc_errmsg(), "cannot resolve 'second.invalid': ", 33) != 0)
            fail_msg("%s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    }
    shmrpc_client_free(c);

    int port = test_free_port();
    char at[128];
    snprintf(at, sizeof at, "tcp://127.0.0.1:%d", port);
    sh->calls = 0;
    pid_t server = start_server(at);
    snprintf(at, sizeof at, "tcp://nothere.invalid:%d,127.0.0.1:%d", port, port);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.resolve_interval_ms = 1; /* resolved again as calls come */
    for (int i = 0; i < 4; i++)    /* connects that wait for the name's failure */
        shmrpc_client_free(connect_with(at, &o));
    c = connect_with(at, &o);
    for (int i = 0; i < 20; i++) {
        check_add(c, i, 1);
        usleep(2000); /* a round ends between calls */
    }
    shmrpc_client_free(c);
    assert_int_equal(sh->calls, 20);
    assert_true(test_stop_server(server));
}

static uint32_t method_id(const char *name)
{
    for (uint32_t i = 0; i < Calls_service_info.n_methods; i++)
        if (strcmp(Calls_service_info.methods[i].name, name) == 0) return i;
    fail_msg("no method %s", name);
    return 0;
}

/* --- a stand-in server ------------------------------------------------------------------ */

/* The stand-in (common/standin.h) plays the script set in stand_in_case; a script's result
 * is what it counted, or 200 and above when the client sent what it should not have. */

static void put_frame(shmrpc_buf *b, uint8_t kind, uint16_t flags, uint32_t method, uint64_t rid,
                      const void *body, size_t len)
{
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    shmrpc__frame_hdr h = {kind, flags, method, rid, (uint32_t)len};
    shmrpc__frame_hdr_encode(&h, hdr);
    shmrpc_buf_append(b, hdr, sizeof hdr);
    if (len) shmrpc_buf_append(b, body, len);
}

/* Starts a stand-in that plays script in case i, and a client of it with the default
 * settings changed by set (or none); the stand-in's address in at. */
static shmrpc_client *stand_in_client(stand_in *s, int (*script)(int fd), int i,
                                      void (*set)(shmrpc_client_opts *o), char at[static 64])
{
    stand_in_case = i;
    *s = stand_in_start(script);
    snprintf(at, 64, "tcp://127.0.0.1:%d", s->port);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    if (set) set(&o);
    return connect_with(at, &o);
}

/* The handshake of a client with a secret answered wrongly (stand_in_case): a HELLO_ACK
 * with no challenge; the client's AUTH answered with a proof that is wrong, or of 5 bytes. */
static int wrong_auth(int fd)
{
    shmrpc_buf b, in;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&in);
    shmrpc__frame_hdr h;
    int rc = 0;
    put_ack(&b, 0, 64u << 20, stand_in_case != 0);
    if (!ssend(fd, &b)) rc = 202;
    if (!rc && stand_in_case != 0) {
        if (!sread_frame(fd, &h, &in) || h.kind != SHMRPC__KIND_AUTH) rc = 203;
        static const uint8_t proof[SHMRPC__AUTH_LEN] = {1, 2, 3};
        shmrpc_buf_clear(&b);
        put_frame(&b, SHMRPC__KIND_AUTH, 0, 0, 0, proof, stand_in_case == 1 ? sizeof proof : 5);
        if (!rc && !ssend(fd, &b)) rc = 204;
    }
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&in);
    return rc;
}

/* A client with a shared secret refuses a server that does not ask for it (it may not be
 * the server meant) and one whose proof is wrong (it does not hold the secret):
 * SHMRPC_EPERM, saying which; an AUTH of the wrong length is a protocol error. */
static void secret_handshakes_refused(void **state)
{
    (void)state;
    static const struct {
        int status;
        bool where; /* the message begins with the server's address */
        const char *says;
    } cases[] = {
        {SHMRPC_EPERM, true,
         "does not ask for the shared secret: it may not be the server this client is meant for"},
        {SHMRPC_EPERM, true, "does not hold the same shared secret (its proof is wrong)"},
        {SHMRPC_EPROTO, false, "AUTH frame has a body of 5 bytes (it has 32)"},
    };
    for (int i = 0; i < 3; i++) {
        stand_in_case = i;
        stand_in s = stand_in_start(wrong_auth);
        shmrpc_client_opts o;
        shmrpc_client_opts_init(&o);
        o.tcp.secret = secret;
        o.tcp.secret_len = strlen(secret);
        shmrpc_client *c = NULL;
        assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, &o), 0);
        char at[64], want[256];
        snprintf(at, sizeof at, "tcp://127.0.0.1:%d", s.port);
        snprintf(want, sizeof want, "%s%s%s", cases[i].where ? at : "", cases[i].where ? " " : "",
                 cases[i].says);
        int rc = shmrpc_client_connect(c, at);
        if (rc != cases[i].status || strcmp(shmrpc_errmsg(), want) != 0)
            fail_msg("case %d: %s '%s', not '%s'", i, shmrpc_strerror(rc), shmrpc_errmsg(), want);
        shmrpc_client_free(c);
        assert_int_equal(stand_in_end(&s), 0);
    }
}

/* Blocking calls answered wrongly (stand_in_case), after a HELLO_ACK that chose snappy:
 * 0: the first request answered with an ERROR of request id 0 (the server leaves, its
 * status EUNAVAIL); 1: the first request not answered until the second came, then both
 * answered in order (the first's a sum of 99); 2: the first answered with a HELLO_ACK;
 * 3: the first answered with a snappy body that does not decode; 4, 5: a health request
 * answered with a byte that is no state, or with two; 6: a health request answered with a
 * DRAIN. Exit code: the requests read, or 200 and above. */
static int answers_wrongly(int fd)
{
    shmrpc_buf b, in;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&in);
    shmrpc__frame_hdr h, second;
    int took = 0;
    put_ack(&b, SHMRPC__FLAG_SNAPPY, 64u << 20, false);
    if (!ssend(fd, &b) || !sread_frame(fd, &h, &in)) return 202;
    if (h.kind != SHMRPC__KIND_REQUEST || (stand_in_case < 4 && add_body_sum(&in) < 0)) return 203;
    took++;
    shmrpc_buf_clear(&b);
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3};
    switch (stand_in_case) {
    case 0:
        put_error(&b, 0, 0, SHMRPC_EUNAVAIL, "the stand-in leaves");
        break;
    case 1:
        if (!sread_frame(fd, &second, &in) || second.kind != SHMRPC__KIND_REQUEST) return 204;
        took++;
        put_sum(&b, &h, 99);
        put_sum(&b, &second, add_body_sum(&in));
        break;
    case 2:
        put_ack(&b, 0, 64u << 20, false);
        break;
    case 3:
        put_frame(&b, SHMRPC__KIND_RESPONSE, SHMRPC__FLAG_SNAPPY, h.method, h.request_id, garbage,
                  sizeof garbage);
        break;
    case 4: /* a health state that is none */
    case 5: /* two bytes */
        put_frame(&b, SHMRPC__KIND_RESPONSE, 0, h.method, h.request_id, "\x09\x01",
                  stand_in_case == 4 ? 1 : 2);
        break;
    case 6:
        put_frame(&b, SHMRPC__KIND_DRAIN, 0, 0, 0, NULL, 0);
        break;
    }
    if (!ssend(fd, &b)) return 205;
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&in);
    return took;
}

static void snappy(shmrpc_client_opts *o)
{
    o->tcp.compression = SHMRPC_COMPRESS_SNAPPY;
}

/* What a blocking call does with what a stand-in answers: a server that leaves (an ERROR
 * of request id 0) before the call's answer, alone: SHMRPC_EUNAVAIL with the server's
 * message (the call did not run there); the late answer of a call that gave up on it (its
 * deadline passed) is read past by the next call, which gets its own; a HELLO_ACK for an
 * answer is out of turn (SHMRPC_EPROTO); a compressed answer that does not decompress fails
 * the call (SHMRPC_ETOOBIG: it declares more than the client takes) and the connection; a
 * health answer that is not one state byte is a protocol error, and a DRAIN for it says
 * the server drains. */
static void blocking_calls_answered_wrongly(void **state)
{
    (void)state;
    for (int i = 0; i < 7; i++) {
        stand_in s;
        char at[64];
        shmrpc_client *c = stand_in_client(&s, answers_wrongly, i, snappy, at);
        int64_t sum = -1;
        if (i == 1) shmrpc_client_next_timeout(c, 300);
        shmrpc_health state = SHMRPC_HEALTH_SERVING;
        int rc = i < 4 ? calls_add(c, 2, 3, &sum) : shmrpc_client_health(c, &state);
        print_message("case %d: %s: %s\n", i, shmrpc_strerror(rc), shmrpc_errmsg());
        char want[256];
        switch (i) {
        case 0:
            assert_int_equal(rc, SHMRPC_EUNAVAIL);
            assert_string_equal(shmrpc_errmsg(), "the stand-in leaves");
            break;
        case 1:
            assert_int_equal(rc, SHMRPC_ETIMEDOUT);
            rc = calls_add(c, 4, 5, &sum);
            if (rc) fail_msg("the next call: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
            assert_int_equal(sum, 9);
            break;
        case 2:
            assert_int_equal(rc, SHMRPC_EPROTO);
            snprintf(want, sizeof want,
                     "%s sent a HELLO_ACK frame for request 0 of method 0 out of turn", at);
            assert_string_equal(shmrpc_errmsg(), want);
            break;
        case 3:
            assert_int_equal(rc, SHMRPC_ETOOBIG);
            assert_string_equal(shmrpc_errmsg(), "snappy body declares 4294967295 bytes, above "
                                                 "the maximum message of 67108864");
            break;
        case 4:
        case 5:
            assert_int_equal(rc, SHMRPC_EPROTO);
            snprintf(want, sizeof want, "the health answer is not a state (%d bytes)", i - 3);
            assert_string_equal(shmrpc_errmsg(), want);
            assert_int_equal(state, 0);
            break;
        case 6:
            assert_int_equal(rc, 0);
            assert_int_equal(state, SHMRPC_HEALTH_DRAINING);
            break;
        }
        shmrpc_client_free(c);
        assert_int_equal(stand_in_end(&s), i == 1 ? 2 : 1);
    }
}

/* --- an endpoint left out ------------------------------------------------------------------ */

/* A client's only endpoint whose server went is left out once a connect to it failed: the
 * next call is not sent (SHMRPC_EUNAVAIL, saying for how long it is left out, at most one
 * and a half probe intervals, and why), not even once the server is back, until the backoff
 * ends; then a call waits for the probe it begins, which takes the endpoint back, and runs
 * there once. */
static void left_out_until_a_probe(void **state)
{
    (void)state;
    int port = test_free_port();
    char at[64], refused[128];
    snprintf(at, sizeof at, "tcp://127.0.0.1:%d", port);
    snprintf(refused, sizeof refused, "no server at %s: Connection refused", at);
    static const int probe_ms[] = {60000, 50};
    for (int round = 0; round < 2; round++) {
        pid_t server = start_server(at);
        shmrpc_client_opts o;
        shmrpc_client_opts_init(&o);
        o.tcp.probe_interval_ms = probe_ms[round];
        shmrpc_client *c = connect_with(at, &o);
        check_add(c, 1, 2);
        assert_true(test_stop_server(server));
        int64_t sum;
        int rc = calls_add(c, 3, 4, &sum);
        print_message("the server gone: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
        assert_int_equal(rc, SHMRPC_EUNAVAIL);
        if (!strstr(shmrpc_errmsg(), refused)) fail_msg("'%s'", shmrpc_errmsg());
        server = start_server(at);
        shmrpc_client_free(connect_with(at, NULL)); /* it is up */
        sh->calls = 0;
        if (round == 0) {
            rc = calls_add(c, 5, 6, &sum);
            print_message("left out: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
            assert_int_equal(rc, SHMRPC_EUNAVAIL);
            char head[128];
            snprintf(head, sizeof head, "%s is left out for ", at);
            const char *m = shmrpc_errmsg();
            assert_int_equal(strncmp(m, head, strlen(head)), 0);
            long ms = strtol(m + strlen(head), NULL, 10);
            assert_true(ms > 0 && ms <= 90000);
            assert_non_null(strstr(m, refused));
            const char *tail = "): the call was not sent";
            assert_string_equal(m + strlen(m) - strlen(tail), tail);
            assert_int_equal(sh->calls, 0);
        } else {
            usleep(100 * 1000); /* past the backoff: at most 75 ms */
            check_add(c, 5, 6);
            assert_int_equal(sh->calls, 1);
        }
        shmrpc_client_free(c);
        assert_true(test_stop_server(server));
    }
}

/* Calls started on a stand-in (stand_in_case): 0: it reads three requests (the first's call
 * gave up on it: its deadline passed), then answers the first (late), PONGs, and answers
 * the others; 1: it answers the first request with an answer for request 999, never sent;
 * 2: it answers with a header that says more than the client takes; 3: with an answer for
 * its id and another method; 4: for request 0; 5: with a HELLO_ACK. Exit code: the
 * requests read, or 200 and above. */
static int answers_in_flight(int fd)
{
    shmrpc_buf b, in;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&in);
    shmrpc__frame_hdr h[3];
    int sums[3], took = 0;
    put_ack(&b, 0, 64u << 20, false);
    if (!ssend(fd, &b)) return 202;
    shmrpc_buf_clear(&b);
    for (int n = stand_in_case == 0 ? 3 : 1; took < n; took++) {
        if (!sread_frame(fd, &h[took], &in) || h[took].kind != SHMRPC__KIND_REQUEST) return 203;
        sums[took] = add_body_sum(&in);
        if (sums[took] < 0) return 204;
    }
    if (stand_in_case == 0) {
        put_sum(&b, &h[0], sums[0]);
        put_frame(&b, SHMRPC__KIND_PONG, 0, 0, 5, NULL, 0);
        put_sum(&b, &h[2], sums[2]);
        put_sum(&b, &h[1], sums[1]);
    } else if (stand_in_case == 1) {
        h[0].request_id = 999;
        put_sum(&b, &h[0], sums[0]);
    } else if (stand_in_case == 3) {
        h[0].method++; /* the call's id, another method */
        put_sum(&b, &h[0], sums[0]);
    } else if (stand_in_case == 4) {
        h[0].request_id = 0;
        put_sum(&b, &h[0], sums[0]);
    } else if (stand_in_case == 5) {
        put_ack(&b, 0, 64u << 20, false);
    } else {
        uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
        shmrpc__frame_hdr big = {SHMRPC__KIND_RESPONSE, 0, h[0].method, h[0].request_id, 4096};
        shmrpc__frame_hdr_encode(&big, hdr);
        shmrpc_buf_append(&b, hdr, sizeof hdr);
    }
    int rc = ssend(fd, &b) ? took : 205;
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&in);
    return rc;
}

static void at_most_1_kib(shmrpc_client_opts *o)
{
    o->max_msg_bytes = 1024;
}

/* Calls in flight answered oddly: the late answer of a call that gave up on it (its
 * deadline passed: SHMRPC_ETIMEDOUT, it may have run) and a PONG are read past, and the
 * calls in flight get their own answers, in any order; an answer for a request never sent,
 * for the call's request but another method, or for request 0, or a HELLO_ACK, fails the
 * calls in flight with SHMRPC_EPROTO, saying they may have run; so does a header that
 * declares more than the client's maximum (1 KiB). */
static void started_calls_answered_oddly(void **state)
{
    (void)state;
    for (int i = 0; i < 6; i++) {
        stand_in s;
        char at[64], want[300];
        shmrpc_client *c = stand_in_client(&s, answers_in_flight, i, at_most_1_kib, at);
        shmrpc_call *k[3];
        int64_t sum = -1;
        shmrpc_client_next_timeout(c, i == 0 ? 200 : 5000);
        assert_int_equal(calls_add_start(c, 1, 2, &k[0]), 0);
        if (i == 0) {
            int rc = calls_add_finish(c, k[0], &sum);
            assert_int_equal(rc, SHMRPC_ETIMEDOUT);
            snprintf(want, sizeof want,
                     "the deadline passed waiting for %s (the call may have run; its answer will "
                     "be dropped)",
                     at);
            assert_string_equal(shmrpc_errmsg(), want);
            assert_int_equal(calls_add_start(c, 3, 4, &k[1]), 0);
            assert_int_equal(calls_add_start(c, 5, 6, &k[2]), 0);
            int rc2 = calls_add_finish(c, k[2], &sum);
            if (rc2) fail_msg("the third: %s: %s", shmrpc_strerror(rc2), shmrpc_errmsg());
            assert_int_equal(sum, 11);
            assert_int_equal(calls_add_finish(c, k[1], &sum), 0);
            assert_int_equal(sum, 7);
        } else {
            int rc = calls_add_finish(c, k[0], &sum);
            print_message("case %d: %s: %s\n", i, shmrpc_strerror(rc), shmrpc_errmsg());
            assert_int_equal(rc, SHMRPC_EPROTO);
            static const struct {
                const char *kind;
                unsigned rid, method;
            } odd[] = {{"", 0, 0},         {"RESPONSE", 999, 0}, {"", 0, 0},
                       {"RESPONSE", 1, 1}, {"RESPONSE", 0, 0},   {"HELLO_ACK", 0, 0}};
            if (i != 2)
                snprintf(want, sizeof want,
                         "%s sent a %s frame for request %u of method %u, which no call in "
                         "flight waits for; the calls in flight may have run",
                         at, odd[i].kind, odd[i].rid,
                         i == 5 ? 0 : (unsigned)method_id("add") + odd[i].method);
            else
                snprintf(want, sizeof want,
                         "RESPONSE frame body of 4096 bytes is above the "
                         "maximum of 1024");
            if (strcmp(shmrpc_errmsg(), want) != 0)
                fail_msg("'%s', not '%s'", shmrpc_errmsg(), want);
        }
        shmrpc_client_free(c);
        assert_int_equal(stand_in_end(&s), i == 0 ? 3 : 1);
    }
}

/* Both endpoints of a list left out (their servers went, and a connect to each failed): the
 * next call goes nowhere, blocking or started, and says why for each (SHMRPC_EUNAVAIL); a
 * started call whose deadline has passed already is not sent; a call whose deadline passes
 * before an endpoint that is not connected takes it did not run, and says no try ended. */
static void every_endpoint_left_out(void **state)
{
    (void)state;
    int ports[2] = {test_free_port(), 0};
    do
        ports[1] = test_free_port();
    while (ports[1] == ports[0]);
    char at[2][64], list[128];
    pid_t servers[2];
    for (int i = 0; i < 2; i++) {
        snprintf(at[i], sizeof at[i], "tcp://127.0.0.1:%d", ports[i]);
        servers[i] = start_server(at[i]);
        shmrpc_client_free(connect_with(at[i], NULL)); /* it is up */
    }
    snprintf(list, sizeof list, "tcp://127.0.0.1:%d,127.0.0.1:%d", ports[0], ports[1]);
    sh->calls = 0;
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.tcp.probe_interval_ms = 60000;
    shmrpc_client *c = connect_with(list, &o);
    check_add(c, 1, 2); /* on the first, connected by the connect */
    shmrpc_client_next_timeout(c, 0);
    int64_t sum;
    int rc = calls_add(c, 3, 4, &sum); /* to the second, not connected: no time to */
    assert_int_equal(rc, SHMRPC_ETIMEDOUT);
    assert_string_equal(shmrpc_errmsg(), "the deadline passed before an endpoint took the call, "
                                         "which did not run: no try ended");
    shmrpc_call *k;
    assert_int_equal(shmrpc_client_start(c, method_id("add"), 0, &k), 0);
    rc = shmrpc_client_finish(c, k, NULL);
    assert_int_equal(rc, SHMRPC_ETIMEDOUT);
    assert_string_equal(shmrpc_errmsg(), "the deadline passed before an endpoint took the call, "
                                         "which did not run");
    assert_int_equal(sh->calls, 1);

    for (int i = 0; i < 2; i++)
        assert_true(test_stop_server(servers[i]));
    rc = calls_add(c, 5, 6, &sum); /* each refused: both left out */
    print_message("both gone: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(rc, SHMRPC_EUNAVAIL);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) {
            rc = calls_add(c, 7, 8, &sum);
        } else {
            assert_int_equal(calls_add_start(c, 7, 8, &k), 0);
            rc = calls_add_finish(c, k, &sum);
        }
        print_message("left out: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
        assert_int_equal(rc, SHMRPC_EUNAVAIL);
        const char *m = shmrpc_errmsg();
        char head[400];
        snprintf(head, sizeof head,
                 "no endpoint of %s took the call, which did not run: %s is left "
                 "out for ",
                 list, at[0]);
        assert_int_equal(strncmp(m, head, strlen(head)), 0);
        snprintf(head, sizeof head, "; %s is left out for ", at[1]);
        assert_non_null(strstr(m, head));
    }
    shmrpc_client_free(c);
}

/* Reads the client's requests until it closes: their count. */
static int counts_requests(int fd)
{
    shmrpc_buf b, in;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&in);
    put_ack(&b, 0, 64u << 20, false);
    int took = ssend(fd, &b) ? 0 : 202;
    shmrpc__frame_hdr h;
    while (took < 200 && sread_frame(fd, &h, &in))
        took += h.kind == SHMRPC__KIND_REQUEST;
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&in);
    return took;
}

/* Takes the HELLO and answers nothing: its exit code is 0 once the client closed. */
static int answers_no_hello(int fd)
{
    uint8_t byte;
    while (recv(fd, &byte, 1, 0) > 0) {
    }
    return 0;
}

/* An endpoint whose server stalls (it reads a call and never answers) beside one that
 * answers: the call's deadline passes there (SHMRPC_ETIMEDOUT; it may have run, and is not
 * sent again), it is left out, and the calls that follow go to the other, each run once.
 * An endpoint that takes the connection and never answers its handshake loses the connect's
 * race to the next one, which begins after the attempt delay: the calls run there. */
static void stalls_and_races(void **state)
{
    (void)state;
    int port;
    char at[64], list[128];
    pid_t server = start_server_up(&port, at);
    for (int round = 0; round < 2; round++) {
        stand_in s = stand_in_start(round == 0 ? counts_requests : answers_no_hello);
        /* round 0: the stand-in alone in the race (it answers); 1: the other joins it */
        snprintf(list, sizeof list, "tcp://127.0.0.1:%d,127.0.0.1:%d", s.port, port);
        sh->calls = 0;
        shmrpc_client_opts o;
        shmrpc_client_opts_init(&o);
        o.tcp.attempt_delay_ms = round == 0 ? 5000 : 50;
        o.tcp.probe_interval_ms = 60000;
        shmrpc_client *c = connect_with(list, &o);
        if (round == 0) {
            shmrpc_client_next_timeout(c, 300);
            int64_t sum;
            int rc = calls_add(c, 1, 2, &sum); /* the stand-in took the connect's race */
            assert_int_equal(rc, SHMRPC_ETIMEDOUT);
            char want[128];
            snprintf(want, sizeof want, "the deadline passed waiting for tcp://127.0.0.1:%d",
                     s.port);
            assert_string_equal(shmrpc_errmsg(), want);
        }
        for (int i = 0; i < 4; i++)
            check_add(c, i, 10);
        assert_int_equal(sh->calls, 4);
        shmrpc_client_free(c);
        assert_int_equal(stand_in_end(&s), round == 0 ? 1 : 0);
    }
    assert_true(test_stop_server(server));
}

/* The revision a client offers in its HELLO: SHMRPC_TEST_WIRE_PROTO when it names one it
 * speaks (1 up to the newest), else the newest (a value that is not a number, 0, above the
 * newest, empty). The stand-in's exit code is the HELLO's revision. */

static int says_its_hello(int fd)
{
    shmrpc_arena *a = shmrpc_arena_new(0);
    shmrpc__hello hello;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    int rc = shmrpc__hello_parse(shmrpc_bytes_of(stand_in_hello.data, stand_in_hello.len),
                                 SHMRPC__KIND_HELLO, a, &hello, &err)
                 ? 202
                 : (int)hello.proto;
    shutdown(fd, SHUT_WR);
    shmrpc_buf_destroy(&err);
    shmrpc_arena_free(a);
    return rc;
}

static void wire_proto_of_the_environment(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        int proto;
    } cases[] = {{"2", 2},
                 {"1", 1},
                 {"x", SHMRPC__WIRE_PROTO},
                 {"2x", SHMRPC__WIRE_PROTO},
                 {"0", SHMRPC__WIRE_PROTO},
                 {"99", SHMRPC__WIRE_PROTO},
                 {"", SHMRPC__WIRE_PROTO}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        stand_in s = stand_in_start(says_its_hello);
        setenv("SHMRPC_TEST_WIRE_PROTO", cases[i].v, 1);
        shmrpc_client *c = NULL;
        assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, NULL), 0);
        unsetenv("SHMRPC_TEST_WIRE_PROTO");
        char at[64];
        snprintf(at, sizeof at, "tcp://127.0.0.1:%d", s.port);
        assert_int_equal(shmrpc_client_connect(c, at), SHMRPC_EUNAVAIL);
        shmrpc_client_free(c);
        int proto = stand_in_end(&s);
        if (proto != cases[i].proto)
            fail_msg("'%s': revision %d, not %d", cases[i].v, proto, cases[i].proto);
    }
}

/* 16 MiB of text into b: far more than the sockets of a connection hold. */
static void fill_big(shmrpc_buf *b)
{
    size_t n = 16u << 20;
    assert_int_equal(shmrpc__buf_grow(b, n), 0);
    for (size_t i = 0; i < n; i++)
        b->data[i] = (uint8_t)('a' + i % 26);
    b->len = n;
}

/* Reads the header of the first request, then resets the connection (no FIN: an RST). */
static int resets_at_the_first_request(int fd)
{
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    put_ack(&b, 0, 64u << 20, false);
    uint8_t hdr[SHMRPC__FRAME_HDR_SIZE];
    int rc = ssend(fd, &b) && sread(fd, hdr, sizeof hdr) ? 0 : 202;
    struct linger now = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof now);
    close(fd);
    shmrpc_buf_destroy(&b);
    _exit(rc);
}

/* A request that the first endpoint of a list reset before it was written whole (16 MiB)
 * did not run there: the call, blocking or started, goes to the next endpoint, runs there
 * once, and gets its whole answer. */
static void reset_before_the_request_went_out(void **state)
{
    (void)state;
    int port;
    char at[64], list[128];
    pid_t server = start_server_up(&port, at);
    shmrpc_buf big;
    shmrpc_buf_init(&big);
    fill_big(&big);
    for (int started = 0; started < 2; started++) {
        stand_in s = stand_in_start(resets_at_the_first_request);
        snprintf(list, sizeof list, "tcp://127.0.0.1:%d,127.0.0.1:%d", s.port, port);
        sh->calls = 0;
        shmrpc_client_opts o;
        shmrpc_client_opts_init(&o);
        o.max_msg_bytes = 32u << 20;
        shmrpc_client *c = connect_with(list, &o); /* the stand-in's: the first to answer */
        shmrpc_bytes out = {0};
        int rc;
        if (started) {
            shmrpc_call *k;
            assert_int_equal(calls_echo_start(c, shmrpc_bytes_of(big.data, big.len), &k), 0);
            rc = calls_echo_finish(c, k, &out);
        } else {
            rc = calls_echo(c, shmrpc_bytes_of(big.data, big.len), &out);
        }
        if (rc) fail_msg("%s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
        assert_int_equal(out.len, big.len);
        assert_memory_equal(out.ptr, big.data, big.len);
        assert_int_equal(sh->calls, 1);
        shmrpc_client_free(c);
        assert_int_equal(stand_in_end(&s), 0);
    }
    shmrpc_buf_destroy(&big);
    assert_true(test_stop_server(server));
}

/* Reads requests (adds) until it has two (case 2) or one, then reads nothing more and sends
 * (stand_in_case) 0: a PING, a PONG, an ERROR answering the first request, a DRAIN, an ERROR
 * of request 0, then a RESPONSE for request 0; 1: a HELLO_ACK; 2: the answer of the first
 * request (whose call gave up on it) twice and the second's, then a RESPONSE for request 0.
 * Exit code: the requests read. */
static int talks_while_not_reading(int fd)
{
    shmrpc_buf b, in;
    shmrpc_buf_init(&b);
    shmrpc_buf_init(&in);
    put_ack(&b, 0, 64u << 20, false);
    if (!ssend(fd, &b)) return 202;
    shmrpc__frame_hdr h, first = {0};
    int took = 0;
    for (int n = stand_in_case == 2 ? 2 : 1; took < n; took++) {
        if (!sread_frame(fd, &h, &in) || h.kind != SHMRPC__KIND_REQUEST) return 203;
        if (took == 0) first = h;
    }
    shmrpc__frame_hdr second = h;
    shmrpc_buf_clear(&b);
    static const uint8_t three[] = {3};
    if (stand_in_case == 0) {
        put_frame(&b, SHMRPC__KIND_PING, 0, 0, 7, NULL, 0);
        put_frame(&b, SHMRPC__KIND_PONG, 0, 0, 8, NULL, 0);
        put_error(&b, first.method, first.request_id, SHMRPC_EHANDLER, "no");
        put_frame(&b, SHMRPC__KIND_DRAIN, 0, 0, 0, NULL, 0);
        put_error(&b, 0, 0, SHMRPC_EUNAVAIL, "the stand-in leaves");
    } else if (stand_in_case == 1) {
        put_ack(&b, 0, 64u << 20, false);
    } else { /* the first's answer is let go as it comes, so the second's still is read */
        put_sum(&b, &first, 3);
        put_sum(&b, &first, 3);
        put_sum(&b, &second, 3);
    }
    if (stand_in_case != 1)
        put_frame(&b, SHMRPC__KIND_RESPONSE, 0, first.method, 0, three, sizeof three);
    if (!ssend(fd, &b)) return 204;
    struct pollfd pf = {.fd = stand_in_go, .events = POLLIN}; /* nothing read until told */
    poll(&pf, 1, 15000);
    shmrpc_buf_destroy(&b);
    shmrpc_buf_destroy(&in);
    return took;
}

/* What a server sends while a large request goes out (16 MiB to a server that reads none of
 * it), with a call in flight, is read and checked frame by frame: PINGs, PONGs, a DRAIN, an
 * ERROR of request 0, an answer of the call in flight and the late answer of a call that
 * gave up on it pass (the late one is let go as it comes: it does not count against the
 * answers a correct server may send meanwhile, so the reading goes on past a second copy);
 * an answer for request 0 (never sent) or a HELLO_ACK (which a server does not send then)
 * fails the connection with SHMRPC_EPROTO: the large call did not run (no endpoint took it),
 * the call in flight may have. */
static void frames_while_a_request_goes_out(void **state)
{
    (void)state;
    shmrpc_buf big;
    shmrpc_buf_init(&big);
    fill_big(&big);
    stand_in_rcvbuf = 64 << 10;
    for (int i = 0; i < 3; i++) {
        stand_in s;
        char at[64], want[300];
        shmrpc_client *c = stand_in_client(&s, talks_while_not_reading, i, NULL, at);
        shmrpc_call *gone, *flight, *large;
        int64_t sum;
        if (i == 2) {
            shmrpc_client_next_timeout(c, 100);
            assert_int_equal(calls_add_start(c, 1, 2, &gone), 0);
            assert_int_equal(calls_add_finish(c, gone, &sum), SHMRPC_ETIMEDOUT);
        }
        shmrpc_client_next_timeout(c, 10000);
        assert_int_equal(calls_add_start(c, 1, 2, &flight), 0);
        shmrpc_client_next_timeout(c, 10000);
        assert_int_equal(calls_echo_start(c, shmrpc_bytes_of(big.data, big.len), &large), 0);
        shmrpc_bytes out;
        int rc = calls_echo_finish(c, large, &out);
        print_message("case %d: the large call: %s: %s\n", i, shmrpc_strerror(rc), shmrpc_errmsg());
        if (i == 1)
            snprintf(want, sizeof want, "%s sent a HELLO_ACK frame, which a server does not send",
                     at);
        else
            snprintf(want, sizeof want,
                     "%s sent a RESPONSE frame for request 0, which was never sent, while a "
                     "request went out",
                     at);
        char large_says[800];
        snprintf(large_says, sizeof large_says,
                 "no endpoint of %s took the call, which did not run: %s", at, want);
        assert_int_equal(rc, SHMRPC_EPROTO);
        assert_string_equal(shmrpc_errmsg(), large_says);
        rc = calls_add_finish(c, flight, &sum);
        assert_int_equal(rc, SHMRPC_EPROTO);
        snprintf(large_says, sizeof large_says, "%s; the calls in flight may have run", want);
        assert_string_equal(shmrpc_errmsg(), large_says);
        shmrpc_client_free(c);
        assert_int_equal(stand_in_end(&s), i == 2 ? 2 : 1);
    }
    stand_in_rcvbuf = 0;
    shmrpc_buf_destroy(&big);
}

/* --- settings --------------------------------------------------------------------------- */

/* Settings out of range are refused when the client (or server) is made, SHMRPC_EINVAL
 * with the client's message: each duration negative or too large to be nanoseconds, each
 * count below 0 or above its cap, a secret above 256 bytes, TLS modes that are none, a key
 * without a certificate, a TLS file name of 1024 bytes or more. */
static void settings_out_of_range(void **state)
{
    (void)state;
    static char path[SHMRPC_TLS_PATH_MAX + 1];
    memset(path, 'p', SHMRPC_TLS_PATH_MAX);
    static char long_secret[SHMRPC_SECRET_MAX + 1];
    memset(long_secret, 's', sizeof long_secret);
    const int64_t huge = INT64_MAX / 1000000 / 2 + 1;
    shmrpc_tcp_opts bad[] = {
        {.connect_timeout_ms = -1},
        {.handshake_timeout_ms = huge},
        {.progress_timeout_ms = -1},
        {.attempt_delay_ms = -1},
        {.probe_interval_ms = -1},
        {.resolve_interval_ms = huge},
        {.max_conns = (1 << 20) + 1},
        {.max_in_flight = -1},
        {.max_in_flight = 4097},
        {.max_running = -1},
        {.max_running = 257},
        {.secret = long_secret, .secret_len = sizeof long_secret},
        {.tls = 2},
        {.tls_verify = SHMRPC_TLS_VERIFY_AUTO - 1},
        {.tls_verify = SHMRPC_TLS_VERIFY_OFF + 1},
        {.tls_key = "key.pem"},
        {.tls_cert = path},
        {.tls_cert = "cert.pem", .tls_key = path},
        {.tls_ca = path},
        {.tls_server_name = path},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shmrpc_client_opts co;
        shmrpc_client_opts_init(&co);
        co.tcp = bad[i];
        shmrpc_client *c = (shmrpc_client *)&c;
        int rc = shmrpc_client_new(&c, &Calls_service_info, &co);
        if (rc != SHMRPC_EINVAL ||
            strcmp(shmrpc_errmsg(),
                   "tcp settings out of range (shmrpc_client_opts.tcp, shmrpc/tcp.h)") != 0)
            fail_msg("row %zu: %s '%s'", i, shmrpc_strerror(rc), shmrpc_errmsg());
        assert_null(c);
        shmrpc_server_opts so;
        shmrpc_server_opts_init(&so);
        so.tcp = bad[i];
        shmrpc_server *s = NULL;
        assert_int_equal(shmrpc_server_new(&s, &so), SHMRPC_EINVAL);
    }
    /* At the limits: taken. */
    shmrpc_client_opts co;
    shmrpc_client_opts_init(&co);
    co.tcp = (shmrpc_tcp_opts){.max_conns = 1 << 20,
                               .max_in_flight = 4096,
                               .max_running = 256,
                               .secret = long_secret,
                               .secret_len = SHMRPC_SECRET_MAX,
                               .connect_timeout_ms = huge - 1};
    shmrpc_client *c = NULL;
    assert_int_equal(shmrpc_client_new(&c, &Calls_service_info, &co), 0);
    shmrpc_client_free(c);
}

/* --- the client's API, called wrongly and rightly ------------------------------------------- */

static void expect_status(int rc, int status, const char *msg)
{
    if (rc != status || (msg && strcmp(shmrpc_errmsg(), msg) != 0))
        fail_msg("%s '%s', not %s '%s'", shmrpc_strerror(rc), shmrpc_errmsg(),
                 shmrpc_strerror(status), msg ? msg : "");
}

/* Starts an echo of n bytes of x (a raw method: the request is its bytes). */
static shmrpc_call *start_echo(shmrpc_client *c, int x, size_t n, int64_t timeout_ms)
{
    shmrpc_buf *req = shmrpc_client_request(c);
    for (size_t i = 0; i < n; i++)
        shmrpc_buf_append(req, &(uint8_t){(uint8_t)x}, 1);
    shmrpc_call *k = NULL;
    int rc = shmrpc_client_start(c, method_id("echo"), timeout_ms, &k);
    if (rc) fail_msg("start: %s: %s", shmrpc_strerror(rc), shmrpc_errmsg());
    return k;
}

/* The client's functions refuse what is missing or not theirs with SHMRPC_EINVAL and say
 * what (a client, a place for the result, a call of this client), and a method id outside
 * the table with SHMRPC_ENOENT; a call not done is SHMRPC_CALL_PENDING, and a wait for it
 * that ends first SHMRPC_ETIMEDOUT; a request above the client's maximum fails before it is
 * sent; results may be asked for without a place for them (NULL); an empty request gets an
 * empty answer; the health method takes the next call's timeout; a next timeout that is
 * negative but not infinite is none; a client connected again, or freed, with a call in
 * flight finishes it with SHMRPC_ECLOSED. */
static void api_called_wrongly_and_rightly(void **state)
{
    (void)state;
    int port = test_free_port();
    char at[64];
    snprintf(at, sizeof at, "tcp://127.0.0.1:%d", port);
    sh->calls = 0;
    pid_t server = start_server(at);
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.max_msg_bytes = 64;
    shmrpc_client *c = connect_with(at, &o), *d = connect_with(at, NULL);
    shmrpc_client *nc = NULL; /* never connected */
    assert_int_equal(shmrpc_client_new(&nc, &Calls_service_info, NULL), 0);
    const char *no_loan = "no client or no place for the loan";
    void *ptr = &ptr;
    expect_status(shmrpc_client_loan(NULL, 0, 0, &ptr), SHMRPC_EINVAL, no_loan);
    assert_null(ptr);
    expect_status(shmrpc_client_loan(c, 0, 0, NULL), SHMRPC_EINVAL, no_loan);
    expect_status(shmrpc_client_health(c, NULL), SHMRPC_EINVAL,
                  "no client or no place for the state");
    shmrpc_health hs;
    expect_status(shmrpc_client_health(nc, &hs), SHMRPC_ECLOSED, "not connected");
    shmrpc_call *k = (shmrpc_call *)&k;
    expect_status(shmrpc_client_start(NULL, 0, 100, &k), SHMRPC_EINVAL,
                  "no client or no place for the call");
    assert_null(k);
    expect_status(shmrpc_client_start(c, 0, 100, NULL), SHMRPC_EINVAL,
                  "no client or no place for the call");
    expect_status(shmrpc_client_start(c, 9, 100, &k), SHMRPC_ENOENT,
                  "no method with id 9 (service 'Calls' has 3)");
    expect_status(shmrpc_client_start(nc, 0, 100, &k), SHMRPC_ECLOSED, "not connected");

    /* A request above the client's maximum (64 bytes): refused, not sent. */
    shmrpc_buf *req = shmrpc_client_request(c);
    uint8_t big[100] = {0};
    shmrpc_buf_append(req, big, sizeof big);
    expect_status(shmrpc_client_call(c, method_id("echo"), NULL), SHMRPC_ETOOBIG,
                  "the request is larger than the client's maximum of 64 bytes");
    assert_int_equal(sh->calls, 0);

    /* A call without a place for its answer; an empty request started: an empty answer. */
    req = shmrpc_client_request(c);
    shmrpc_buf_append(req, "abc", 3);
    expect_status(shmrpc_client_call(c, method_id("echo"), NULL), 0, NULL);
    shmrpc_buf_clear(shmrpc_client_request(c));
    assert_int_equal(shmrpc_client_start(c, method_id("echo"), 5000, &k), 0);
    shmrpc_bytes out = shmrpc_bytes_of("x", 1);
    expect_status(shmrpc_client_finish(c, k, &out), 0, NULL);
    assert_int_equal(out.len, 0);

    /* Waits and results asked wrongly, and a call not done. */
    k = start_echo(c, 1, 8, 5000);
    shmrpc_call *one[1] = {k}, *none[1] = {NULL};
    size_t which = 7;
    const char *no_wait = "no client, no calls or no place for which";
    expect_status(shmrpc_client_wait(NULL, one, 1, 0, &which), SHMRPC_EINVAL, no_wait);
    assert_int_equal(which, 0);
    expect_status(shmrpc_client_wait(c, NULL, 1, 0, &which), SHMRPC_EINVAL, no_wait);
    expect_status(shmrpc_client_wait(c, one, 0, 0, &which), SHMRPC_EINVAL, no_wait);
    expect_status(shmrpc_client_wait(c, one, 1, 0, NULL), SHMRPC_EINVAL, no_wait);
    expect_status(shmrpc_client_wait(c, none, 1, 0, &which), SHMRPC_EINVAL,
                  "call 0 is not one of this client's");
    expect_status(shmrpc_client_wait(d, one, 1, 0, &which), SHMRPC_EINVAL,
                  "call 0 is not one of this client's");
    assert_int_equal(shmrpc_call_status(NULL), SHMRPC_EINVAL);
    expect_status(shmrpc_call_result(NULL, &out), SHMRPC_EINVAL, "no call");
    expect_status(shmrpc_client_finish(NULL, k, &out), SHMRPC_EINVAL, "no client or no call");
    expect_status(shmrpc_client_finish(c, NULL, &out), SHMRPC_EINVAL, "no client or no call");
    expect_status(shmrpc_client_wait(c, one, 1, 2000, &which), 0, NULL);
    assert_int_equal(shmrpc_call_status(k), 0);
    expect_status(shmrpc_call_result(k, NULL), 0, NULL);
    expect_status(shmrpc_client_finish(c, k, NULL), 0, NULL);

    shmrpc_call *nap = NULL;
    assert_int_equal(calls_nap_start(c, 400, &nap), 0);
    assert_int_equal(shmrpc_call_status(nap), SHMRPC_CALL_PENDING);
    expect_status(shmrpc_call_result(nap, &out), SHMRPC_CALL_PENDING, "the call is not done");
    one[0] = nap;
    expect_status(shmrpc_client_wait(c, one, 1, 0, &which), SHMRPC_ETIMEDOUT,
                  "none of the 1 calls was done in time");
    /* Another client's call to finish: refused (and freed, as finish always does). */
    expect_status(shmrpc_client_finish(d, nap, &out), SHMRPC_EINVAL,
                  "the call is not one of this client's");

    /* The health method with the next call's timeout: none (0) has passed at once; then
     * the client's: the server serves (the late answer is read past). */
    shmrpc_client_next_timeout(c, 0);
    expect_status(shmrpc_client_health(c, &hs), SHMRPC_ETIMEDOUT, NULL);
    assert_int_equal(shmrpc_client_health(c, &hs), 0);
    assert_int_equal(hs, SHMRPC_HEALTH_SERVING);

    /* A timeout of the next call that is negative but not infinite reads as none: it undoes
     * one of 50 ms set before, and the client's own (5 s) lets a nap of 300 ms end. */
    shmrpc_client_next_timeout(d, 50);
    shmrpc_client_next_timeout(d, -5);
    int32_t pid = 0;
    expect_status(calls_nap(d, 300, &pid), 0, NULL);
    assert_true(pid > 0);

    /* Connected again (here to an address refused) with a call in flight: the call is done,
     * SHMRPC_ECLOSED, and the client is not connected until it connects. */
    assert_int_equal(calls_nap_start(c, 300, &nap), 0);
    expect_status(shmrpc_client_connect(c, "tcp://[::1"), SHMRPC_EINVAL, NULL);
    assert_int_equal(shmrpc_call_status(nap), SHMRPC_ECLOSED);
    expect_status(shmrpc_call_result(nap, &out), SHMRPC_ECLOSED,
                  "the client connected again while the call was in flight");
    shmrpc_call_free(nap);
    expect_status(shmrpc_client_call(c, method_id("echo"), &out), SHMRPC_ECLOSED, "not connected");
    c = (shmrpc_client_free(c), connect_with(at, &o));

    /* Freed with a call in flight: it is done, SHMRPC_ECLOSED. */
    k = start_echo(c, 2, 8, 5000);
    assert_int_equal(calls_nap_start(c, 300, &nap), 0);
    shmrpc_client_free(c);
    assert_int_equal(shmrpc_call_status(nap), SHMRPC_ECLOSED);
    expect_status(shmrpc_call_result(nap, &out), SHMRPC_ECLOSED,
                  "the client was freed while the call was in flight");
    shmrpc_call_free(nap);
    shmrpc_call_free(k);
    shmrpc_client_free(d);
    shmrpc_client_free(nc);
    assert_true(test_stop_server(server));
}

int main(void)
{
    if (calls_shared_map() != 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(addresses_refused),
        cmocka_unit_test(listen_addresses),
        cmocka_unit_test(names_that_do_not_resolve),
        cmocka_unit_test(secret_handshakes_refused),
        cmocka_unit_test(blocking_calls_answered_wrongly),
        cmocka_unit_test(left_out_until_a_probe),
        cmocka_unit_test(started_calls_answered_oddly),
        cmocka_unit_test(every_endpoint_left_out),
        cmocka_unit_test(api_called_wrongly_and_rightly),
        cmocka_unit_test(settings_out_of_range),
        cmocka_unit_test(stalls_and_races),
        cmocka_unit_test(wire_proto_of_the_environment),
        cmocka_unit_test(frames_while_a_request_goes_out),
        cmocka_unit_test(reset_before_the_request_went_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
