/* SPDX-License-Identifier: MIT */
/* shmrpcctl call's client options with real processes (docs/shmrpcctl.md): --help and
 * unknown options, --timeout's bad values, --secret-file against a server that wants a
 * secret (the right one, a wrong one, none, and files refused for what they are), the TLS
 * options against a TLS server and a mutual-TLS one (certificates made by the openssl
 * program), and arguments read from stdin past the first 4 KiB. Each case checks the exit
 * status (0 answered, 1 the call failed, 2 bad usage) and what was printed. The servers
 * serve echo (examples/echo) over tcp://127.0.0.1 in children of the test; every wait is
 * bounded and the group teardown removes what a failure left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmrpc/server.h>
#include <shmrpc/status.h>
#include <shmrpc/tcp.h>

#include "echo_handlers.h"
#include "procs.h"
#include "skips.h"
#include "sup_helpers.h"

typedef sup_run run;

enum { PLAIN, SECRET, TLS, MUTUAL, N_SERVERS };

static struct {
    char dir[64];
    bool certs; /* the openssl program made them */
    char addr[N_SERVERS][64];
    pid_t srv[N_SERVERS];
    int port[N_SERVERS];
} T;

static const char *file(const char *name)
{
    static char paths[8][128];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", T.dir, name);
    return p;
}

/* shmrpcctl with the arguments (NULL-terminated) and stdin, 10 s at most. */
#define ctl(r, ...) sup_run_prog(r, SHMRPCCTL, __VA_ARGS__)

/* Asserts the exit status, stdout exactly, and that stderr holds err_has ("" for empty). */
static void expect(const run *r, int status, const char *out, const char *err_has)
{
    bool err_ok = err_has[0] ? strstr(r->err, err_has) != NULL : r->err[0] == '\0';
    if (r->status != status || strcmp(r->out, out) != 0 || !err_ok)
        fail_msg("status %d (want %d), out '%s' (want '%s'), err '%s' (want '%s')", r->status,
                 status, r->out, out, r->err, err_has);
}

/* --- the servers ------------------------------------------------------------------------- */

static shmrpc_server *served;

static void on_term(int sig)
{
    (void)sig;
    shmrpc_server_stop(served);
}

/* Forks a server of echo at addr with the options of kind, in a process group of its own;
 * its pid. */
static pid_t start_server(int kind, const char *addr)
{
    pid_t pid = fork();
    if (pid != 0) {
        if (pid > 0) setpgid(pid, pid);
        return pid;
    }
    setpgid(0, 0);
    alarm(120);
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    shmrpc_server_opts o;
    shmrpc_server_opts_init(&o);
    static uint8_t secret[SHMRPC_SECRET_MAX];
    if (kind == SECRET) {
        if (shmrpc_secret_load(file("right.secret"), secret, sizeof secret, &o.tcp.secret_len))
            _exit(3);
        o.tcp.secret = secret;
    }
    if (kind == TLS || kind == MUTUAL) {
        o.tcp.tls_cert = file("server.pem");
        o.tcp.tls_key = file("server.key");
        if (kind == MUTUAL) o.tcp.tls_ca = file("ca.pem"); /* clients must show one it signed */
    }
    if (shmrpc_server_new(&served, &o) ||
        shmrpc_server_register(served, &Echo_service, &echo_example_handlers, NULL) ||
        shmrpc_server_listen(served, addr)) {
        fprintf(stderr, "server %s: %s\n", addr, shmrpc_errmsg());
        _exit(4);
    }
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    int rc = shmrpc_server_serve(served, 1);
    shmrpc_server_free(served);
    exit(rc == 0 ? 0 : 5);
}

/* Whether the server of kind answers, with the options it needs, within 10 s. */
static bool ready(int kind)
{
    const char *opts[N_SERVERS][4] = {
        [SECRET] = {"--secret-file", file("right.secret")},
        [TLS] = {"--tls-ca", file("ca.pem")},
        [MUTUAL] = {"--tls-ca", file("ca.pem"), "--tls-cert", file("client.pem")},
    };
    for (int64_t end = sup_now_ms() + 10000; sup_now_ms() < end; sup_nap_ms(50)) {
        run r;
        const char *argv[12];
        int n = 0;
        for (int i = 0; i < 4 && opts[kind][i]; i++)
            argv[n++] = opts[kind][i];
        if (kind == MUTUAL) argv[n++] = "--tls-key", argv[n++] = file("client.key");
        while (n < 6)
            argv[n++] = "--timeout", argv[n++] = "5000";
        ctl(&r, NULL, "call", argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], T.addr[kind],
            "add", "[1,2]", NULL);
        if (r.status == 0 && strcmp(r.out, "3\n") == 0) return true;
        if (sup_wait_exit(&T.srv[kind], 0) != -1) return false;
    }
    return false;
}

static int write_mode(const char *name, const char *text, mode_t mode)
{
    return sup_write_file(file(name), text) == 0 && chmod(file(name), mode) == 0 ? 0 : -1;
}

static int group_setup(void **state)
{
    (void)state;
    strcpy(T.dir, "/tmp/shmrpc-ctl-options-XXXXXX");
    if (!mkdtemp(T.dir)) return -1;
    if (write_mode("right.secret", "0123456789abcdef0123456789abcdef\n", 0600) ||
        write_mode("wrong.secret", "fedcba9876543210fedcba9876543210\n", 0600) ||
        write_mode("open.secret", "0123456789abcdef0123456789abcdef\n", 0644) ||
        write_mode("short.secret", "0123456789\n", 0600) || mkfifo(file("fifo.secret"), 0600))
        return -1;
    /* A CA, a server certificate it signed for IP 127.0.0.1, a client certificate it
     * signed (as tests/tcp/tls_test.c makes them). */
    char cmd[2048];
    const char *key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    snprintf(cmd, sizeof cmd,
             "cd %s && (openssl req -x509 %s -keyout ca.key -out ca.pem -days 2"
             " -subj /CN=shmrpc-test-ca"
             " && printf \"subjectAltName=IP:127.0.0.1\\n\" > san.ext"
             " && openssl req %s -keyout server.key -out server.csr -subj /CN=127.0.0.1"
             " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
             " -out server.pem -days 2 -extfile san.ext"
             " && openssl req %s -keyout client.key -out client.csr -subj /CN=shmrpc-test-client"
             " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
             " -out client.pem -days 2) >/dev/null 2>&1",
             T.dir, key, key, key);
    T.certs = system(cmd) == 0 && access(file("client.pem"), R_OK) == 0;
    for (int k = 0; k < N_SERVERS; k++) {
        if ((k == TLS || k == MUTUAL) && !T.certs) continue;
        T.port[k] = test_free_port();
        if (T.port[k] <= 0) return -1;
        snprintf(T.addr[k], sizeof T.addr[k], "tcp://127.0.0.1:%d", T.port[k]);
        T.srv[k] = start_server(k, T.addr[k]);
        if (T.srv[k] <= 0 || !ready(k)) return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int k = 0; k < N_SERVERS; k++) {
        if (T.srv[k] > 0) {
            pid_t group = T.srv[k];
            if (sup_stop(&T.srv[k], 10000) < 0) sup_kill_reap(&T.srv[k]);
            kill(-group, SIGKILL); /* its workers, should it have left any */
        }
        sup_remove_tcp_stats(T.port[k]);
    }
    sup_rm_tree(T.dir);
    return 0;
}

/* --- the options ----------------------------------------------------------------------- */

/* --help: the usage on stdout, 0; an option it does not know: one line on stderr that
 * says so and where the usage is, 2, and no call. */
static void help_and_unknown(void **state)
{
    (void)state;
    run r;
    ctl(&r, NULL, "call", "--help", NULL);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "usage: shmrpcctl call [--timeout MS] [--secret-file PATH]", 57) ==
                0);
    assert_non_null(strstr(r.out, "--tls-no-verify"));
    assert_string_equal(r.err, "");
    ctl(&r, NULL, "call", "-h", T.addr[PLAIN], "add", "[1,2]", NULL);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "usage: shmrpcctl call ", 22) == 0);
    ctl(&r, NULL, "call", "--frobnicate", T.addr[PLAIN], "add", "[1,2]", NULL);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "shmrpcctl: call: unrecognized option '--frobnicate' (see "
                               "'shmrpcctl call --help')\n");
    ctl(&r, NULL, "call", "-x", T.addr[PLAIN], "add", "[1,2]", NULL);
    expect(&r, 2, "", "shmrpcctl: call: unrecognized option '-x' (see 'shmrpcctl call --help')\n");
    ctl(&r, NULL, "call", "--timeout", NULL);
    expect(&r, 2, "",
           "shmrpcctl: call: option '--timeout' requires an argument (see 'shmrpcctl call "
           "--help')\n");
    /* shmrpcctl's own options and commands: the same. */
    ctl(&r, NULL, "--frobnicate", "ls", NULL);
    expect(&r, 2, "", "shmrpcctl: unrecognized option '--frobnicate' (see 'shmrpcctl --help')\n");
    ctl(&r, NULL, "-a", NULL);
    expect(&r, 2, "", "shmrpcctl: option '-a' requires an argument (see 'shmrpcctl --help')\n");
    ctl(&r, NULL, "frobnicate", NULL);
    expect(&r, 2, "", "shmrpcctl: unknown command 'frobnicate' (see 'shmrpcctl --help')\n");
    /* ls and clean: the same rules. */
    ctl(&r, NULL, "ls", "--help", NULL);
    expect(&r, 0, "usage: shmrpcctl ls [--json] [NAME...]\n", "");
    ctl(&r, NULL, "ls", "--frobnicate", NULL);
    expect(&r, 2, "",
           "shmrpcctl: ls: unrecognized option '--frobnicate' (see 'shmrpcctl ls --help')\n");
    ctl(&r, NULL, "clean", "-h", NULL);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "usage: shmrpcctl clean ", 23) == 0);
    ctl(&r, NULL, "clean", "--json", NULL); /* ls's flag, not clean's */
    expect(&r, 2, "",
           "shmrpcctl: clean: unrecognized option '--json' (see 'shmrpcctl clean --help')\n");
    /* The options end at ADDRESS: what follows is the method and its arguments. */
    ctl(&r, NULL, "call", T.addr[PLAIN], "--timeout", "[1,2]", NULL);
    expect(&r, 2, "", "Echo has no method '--timeout'");
}

/* --timeout takes 1 to 2^31-1 milliseconds: anything else is refused with the same words
 * and 2; the largest is taken. */
static void timeout_values(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "0", "-5", "abc", "5x", "", "2147483648", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        run r;
        ctl(&r, NULL, "call", "--timeout", bad[i], T.addr[PLAIN], "add", "[1,2]", NULL);
        if (r.status != 2 ||
            strcmp(r.err, "shmrpcctl: call: --timeout takes milliseconds, 1 or more (see "
                          "'shmrpcctl call --help')\n") != 0 ||
            r.out[0])
            fail_msg("--timeout '%s': status %d, out '%s', err '%s'", bad[i], r.status, r.out,
                     r.err);
    }
    run r;
    ctl(&r, NULL, "call", "--timeout=2147483647", T.addr[PLAIN], "add", "[40,2]", NULL);
    expect(&r, 0, "42\n", "");
    ctl(&r, NULL, "call", "--timeout", "1", "--timeout", "3000", T.addr[PLAIN], "add", "[40,2]",
        NULL);
    expect(&r, 0, "42\n", ""); /* the last one given counts */
}

/* A server that wants a secret: answered with the right one; refused (1) with a wrong one
 * or none; a file refused for what it is (2, and why), before any connection. */
static void secret_file(void **state)
{
    (void)state;
    const char *a = T.addr[SECRET];
    run r;
    ctl(&r, NULL, "call", "--secret-file", file("right.secret"), a, "add", "[40,2]", NULL);
    expect(&r, 0, "42\n", "");
    ctl(&r, NULL, "call", "--secret-file", file("wrong.secret"), a, "add", "[40,2]", NULL);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    assert_true(strncmp(r.err, "shmrpcctl: ", 11) == 0 && strstr(r.err, a));
    ctl(&r, NULL, "call", a, "add", "[40,2]", NULL);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, a));
    /* Files refused for what they are, before anything is sent. */
    const struct {
        const char *name, *why;
    } refused[] = {
        {"missing.secret", "cannot open the secret file "},
        {"open.secret", "has mode 0644: others may read it (chmod 600)"},
        {"short.secret", "is 10 bytes; it must be "},
        {"fifo.secret", "is a FIFO, not a regular file"},
        {"", "is a folder, not a regular file"}, /* T.dir/ */
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        ctl(&r, NULL, "call", "--secret-file", file(refused[i].name), a, "add", "[40,2]", NULL);
        if (r.status != 2 || r.out[0] || strncmp(r.err, "shmrpcctl: call: ", 17) != 0 ||
            !strstr(r.err, refused[i].why) || !strstr(r.err, file(refused[i].name)))
            fail_msg("--secret-file %s: status %d, out '%s', err '%s'", refused[i].name, r.status,
                     r.out, r.err);
    }
}

/* TLS: each option turns it on. Against the TLS server: the test's CA is answered, and a
 * CA that did not sign its certificate, or another server name, are refused (1), unless
 * --tls-no-verify; --tls alone is answered (a loopback address is not checked without a
 * CA, docs/tcp.md); no TLS option is told the server speaks TLS only. Against the mutual
 * one: no client certificate is refused, the one the CA signed is answered. */
static void tls_options(void **state)
{
    (void)state;
    if (!T.certs) {
        test_skip("the openssl program could not make the certificates");
        return;
    }
    const char *a = T.addr[TLS], *ca = file("ca.pem"), *not_ca = file("client.pem");
    run r;
    ctl(&r, NULL, "call", "--tls-ca", ca, a, "add", "[40,2]", NULL);
    expect(&r, 0, "42\n", "");
    ctl(&r, NULL, "call", "--tls-ca", not_ca, a, "add", "[40,2]", NULL);
    expect(&r, 1, "", "certificate verify failed");
    ctl(&r, NULL, "call", "--tls-ca", not_ca, "--tls-no-verify", a, "add", "[40,2]", NULL);
    expect(&r, 0, "42\n", "");
    ctl(&r, NULL, "call", "--tls-ca", ca, "--tls-server-name", "127.0.0.1", a, "add", "[40,2]",
        NULL);
    expect(&r, 0, "42\n", "");
    ctl(&r, NULL, "call", "--tls-ca", ca, "--tls-server-name", "other.example", a, "add", "[40,2]",
        NULL);
    expect(&r, 1, "", "certificate verify failed");
    ctl(&r, NULL, "call", "--tls", a, "add", "[40,2]", NULL);
    expect(&r, 0, "42\n", "");
    ctl(&r, NULL, "call", a, "add", "[40,2]", NULL);
    expect(&r, 1, "", "speaks TLS only");
    /* A CA file that is not there is named when the client connects. */
    ctl(&r, NULL, "call", "--tls-ca", file("missing.pem"), a, "add", "[40,2]", NULL);
    expect(&r, 1, "", "missing.pem");

    const char *m = T.addr[MUTUAL];
    ctl(&r, NULL, "call", "--tls-ca", ca, m, "add", "[40,2]", NULL);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, m));
    ctl(&r, NULL, "call", "--tls-ca", ca, "--tls-cert", file("client.pem"), "--tls-key",
        file("client.key"), m, "add", "[40,2]", NULL);
    expect(&r, 0, "42\n", "");
    /* A certificate with another's key is the caller's mistake (2), said before the
     * server is asked. */
    ctl(&r, NULL, "call", "--tls-ca", ca, "--tls-cert", file("client.pem"), "--tls-key",
        file("server.key"), m, "add", "[40,2]", NULL);
    expect(&r, 2, "", "is not the key of the certificate");
}

/* "-" reads the arguments from stdin, all of them: a 20 KB string comes back whole. */
static void arguments_from_stdin(void **state)
{
    (void)state;
    enum { N = 20000 };
    char *in = malloc(N + 8), *want = malloc(N + 8);
    assert_non_null(in);
    assert_non_null(want);
    strcpy(in, "[\"");
    memset(in + 2, 'x', N);
    strcpy(in + 2 + N, "\"]");
    want[0] = '"';
    memset(want + 1, 'x', N);
    strcpy(want + 1 + N, "\"\n");
    run r;
    ctl(&r, in, "call", T.addr[PLAIN], "echo_json", "-", NULL);
    if (r.status != 0 || strcmp(r.out, want) != 0)
        fail_msg("status %d, %zu bytes out (want %zu), err '%s'", r.status, strlen(r.out),
                 strlen(want), r.err);
    ctl(&r, "[40,", "call", T.addr[PLAIN], "add", "-", NULL);
    expect(&r, 2, "",
           "shmrpcctl: add: arguments: bad JSON at line 1, column 4: ']' expected near end of "
           "file\n");
    free(in);
    free(want);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_and_unknown),     cmocka_unit_test(timeout_values),
        cmocka_unit_test(secret_file),          cmocka_unit_test(tls_options),
        cmocka_unit_test(arguments_from_stdin),
    };
    return test_exit(
        cmocka_run_group_tests_name("ctl_options", tests, group_setup, group_teardown));
}
