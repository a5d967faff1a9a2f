/* SPDX-License-Identifier: MIT */
/* service.ini through the API: resolved values, paths taken from the file's folder, the
 * shared-secret file's checks (modes a git checkout cannot carry), and the reader's edges
 * (CRLF, a byte order mark, NUL bytes, an error flood) that golden files handle badly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shmrpc/status.h>

#include "config.h"
#include "input.h"
#include "utf8.h"

/* A temporary folder per test, removed with what the test wrote in it. */
typedef struct fixture {
    char dir[64];
    char files[16][640]; /* removed last to first: a folder before what it holds */
    int n;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/shmrpc-config-test-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    for (int i = f->n - 1; i >= 0; i--)
        remove(f->files[i]);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Writes len bytes to DIR/name with mode; returns the path. */
static const char *put_bytes(fixture *f, const char *name, const void *text, size_t len, int mode)
{
    assert_true(f->n < 16);
    char buf[sizeof f->files[0]];
    snprintf(buf, sizeof buf, "%s/%s", f->dir, name);
    char *path = strcpy(f->files[f->n++], buf);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, (mode_t)mode), 0);
    close(fd);
    return path;
}

static const char *put(fixture *f, const char *name, const char *text)
{
    return put_bytes(f, name, text, strlen(text), 0644);
}

/* Loads path with 3 CPUs; on failure returns NULL with the messages in *msgs (a static
 * NUL-terminated copy). */
static cfg_file *load(const char *path, int want_rc, const char **msgs)
{
    static char text[16384];
    cfg_opts o;
    cfg_opts_init(&o);
    o.online_cpus = 3;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    cfg_file *c = (cfg_file *)1;
    int rc = cfg_load(path, &o, &c, &err);
    size_t n = err.len < sizeof text - 1 ? err.len : sizeof text - 1;
    if (n) memcpy(text, err.data, n);
    text[n] = '\0';
    shmrpc_buf_destroy(&err);
    if (rc != want_rc) fprintf(stderr, "rc %d, expected %d; messages:\n%s", rc, want_rc, text);
    assert_int_equal(rc, want_rc);
    if (rc) assert_null(c);
    if (msgs) *msgs = text;
    return c;
}

static void resolves_defaults_and_overrides(void **state)
{
    fixture *f = *state;
    put(f, "m.so", "not loaded");
    const char *ini = put(f, "service.ini",
                          "[defaults]\n"
                          "log_dir = logs/\n"
                          "restart_backoff_ms = 200\n"
                          "stop_timeout_s = 3\n"
                          "[a]\n"
                          "module = m.so\n"
                          "min_proc_num = 5\n"
                          "[b]\n"
                          "exec = /bin/sh -c 'exit 0'\n"
                          "  --more\n"
                          "tcp_port = 7001\n"
                          "log_keep = 9\n");
    cfg_file *c = load(ini, 0, NULL);
    char want[128];

    assert_string_equal(c->dir, f->dir);
    snprintf(want, sizeof want, "%s/logs", f->dir);
    assert_string_equal(c->defaults.log_dir, want);
    assert_string_equal(c->defaults.tcp_bind, "127.0.0.1");
    assert_null(c->defaults.secret_file);
    assert_int_equal(c->defaults.min_proc_num, 1);
    assert_int_equal(c->defaults.max_proc_num, 3); /* the CPUs */
    assert_int_equal(c->defaults.max_proc_mem_bytes, 0);
    assert_true(c->defaults.wait_until_completed);
    assert_int_equal(c->defaults.scale_up_cpu_percent, 30);
    assert_int_equal(c->defaults.scale_up_window_ms, 20000);
    assert_int_equal(c->defaults.scale_down_cpu_percent, 30);
    assert_int_equal(c->defaults.scale_down_window_ms, 240000);
    assert_int_equal(c->defaults.restart_backoff_ms, 200);
    assert_int_equal(c->defaults.restart_backoff_max_ms, 30000);
    assert_int_equal(c->defaults.crash_loop_restarts, 5);
    assert_int_equal(c->defaults.crash_loop_window_ms, 60000);
    assert_int_equal(c->defaults.log_max_bytes, 10 << 20);
    assert_int_equal(c->defaults.log_keep, 5);
    assert_int_equal(c->defaults.stop_timeout_ms, 3000);
    assert_string_equal(c->web_host, "127.0.0.1");
    assert_int_equal(c->web_port, 5155);

    assert_int_equal(c->n_services, 2);
    const cfg_service *a = &c->services[0], *b = &c->services[1];
    assert_string_equal(a->name, "a");
    assert_int_equal(a->line, 5);
    assert_int_equal(a->kind, CFG_MODULE);
    snprintf(want, sizeof want, "%s/m.so", f->dir);
    assert_string_equal(a->module, want);
    assert_null(a->shm_name);
    assert_int_equal(a->tcp_port, 0);
    assert_int_equal(a->s.min_proc_num, 5);
    assert_int_equal(a->s.max_proc_num, 5); /* follows min_proc_num past the CPUs */
    assert_int_equal(a->s.restart_backoff_ms, 200);
    assert_int_equal(a->s.stop_timeout_ms, 3000);

    assert_string_equal(b->name, "b");
    assert_int_equal(b->kind, CFG_EXEC);
    assert_int_equal(b->argc, 4);
    assert_string_equal(b->argv[0], "/bin/sh");
    assert_string_equal(b->argv[1], "-c");
    assert_string_equal(b->argv[2], "exit 0");
    assert_string_equal(b->argv[3], "--more");
    assert_null(b->argv[4]);
    assert_string_equal(b->program, "/bin/sh");
    assert_int_equal(b->tcp_port, 7001);
    assert_int_equal(b->s.log_keep, 9);

    assert_ptr_equal(cfg_find(c, "b"), b);
    assert_null(cfg_find(c, "c"));
    cfg_free(c);
}

/* A relative program is taken from the file's folder, not from the current one. */
static void relative_program_from_the_files_folder(void **state)
{
    fixture *f = *state;
    put_bytes(f, "server", "#!/bin/sh\n", 10, 0755);
    const char *ini = put(f, "service.ini",
                          "[defaults]\nlog_dir = /tmp\n[s]\nexec = ./server --x\nshm_name = s\n");
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir("/"), 0);
    cfg_file *c = load(ini, 0, NULL);
    assert_int_equal(chdir(cwd), 0);
    char want[128];
    snprintf(want, sizeof want, "%s/server", f->dir);
    assert_string_equal(c->services[0].program, want);
    assert_string_equal(c->services[0].argv[0], "./server");
    cfg_free(c);
}

static void secret_file_checks(void **state)
{
    fixture *f = *state;
    put_bytes(f, "good.secret", "0123456789abcdef\n", 17, 0600);
    put_bytes(f, "open.secret", "0123456789abcdef", 16, 0640);
    put_bytes(f, "short.secret", "0123456789", 10, 0400);
    put(f, "m.so", "");
    const char *ok = put(f, "ok.ini",
                         "[defaults]\nlog_dir = /tmp\ntcp_bind = 0.0.0.0\n"
                         "secret_file = good.secret\n[a]\nmodule = m.so\n");
    cfg_file *c = load(ok, 0, NULL);
    char want[128];
    snprintf(want, sizeof want, "%s/good.secret", f->dir);
    assert_string_equal(c->services[0].s.secret_file, want);
    assert_string_equal(c->services[0].s.tcp_bind, "0.0.0.0");
    cfg_free(c);

    const char *bad = put(f, "bad.ini",
                          "[defaults]\nlog_dir = /tmp\ntcp_bind = 0.0.0.0\n"
                          "secret_file = good.secret\n"
                          "[a]\nmodule = m.so\nsecret_file = open.secret\n"
                          "[b]\nmodule = m.so\nsecret_file = short.secret\n"
                          "[c]\nmodule = m.so\nsecret_file = none\n");
    const char *msgs;
    assert_null(load(bad, SHMRPC_EINVAL, &msgs));
    /* The messages are shmrpc_secret_load's, at the value's position. */
    assert_non_null(strstr(msgs, "bad.ini:7:15: error: secret_file: the secret file "));
    assert_non_null(strstr(msgs, "open.secret has mode 0640: others may read it"));
    assert_non_null(strstr(msgs, "bad.ini:10:15: error: secret_file: the secret in "));
    assert_non_null(strstr(msgs, "short.secret is 10 bytes; it must be 16 to 256"));
    /* [c] turned the secret off while [defaults] binds everywhere. */
    assert_non_null(strstr(msgs, "bad.ini:13:15: error: tcp_bind 0.0.0.0 (from [defaults] at "
                                 "3:1) is not a loopback address"));
}

/* [web monitor] host may be any address once a secret_file is set, its own or [defaults]';
 * the resolved path is in the configuration and in the text shmrpc-ini-check prints. */
static void web_monitor_secret(void **state)
{
    fixture *f = *state;
    put_bytes(f, "web.secret", "0123456789abcdef\n", 17, 0600);
    put_bytes(f, "other.secret", "fedcba9876543210\n", 17, 0600);
    char want[128], line[256];
    const char *own = put(f, "own.ini",
                          "[defaults]\nlog_dir = /tmp\n[a]\nexec = /bin/true\n"
                          "wait_until_completed = false\n"
                          "[web monitor]\nhost = 0.0.0.0\nsecret_file = web.secret\n");
    cfg_file *c = load(own, 0, NULL);
    snprintf(want, sizeof want, "%s/web.secret", f->dir);
    assert_string_equal(c->web_host, "0.0.0.0");
    assert_string_equal(c->web_secret_file, want);
    assert_null(c->defaults.secret_file);
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    cfg_write(c, &out);
    shmrpc_buf_append(&out, "", 1);
    snprintf(line, sizeof line, "[web monitor]\nhost = 0.0.0.0\nport = 5155\nsecret_file = %s\n",
             want);
    assert_non_null(strstr((const char *)out.data, line));
    shmrpc_buf_destroy(&out);
    cfg_free(c);

    const char *inherited = put(f, "inherited.ini",
                                "[defaults]\nlog_dir = /tmp\nsecret_file = other.secret\n"
                                "[a]\nexec = /bin/true\nwait_until_completed = false\n"
                                "[web monitor]\nhost = ::\n");
    c = load(inherited, 0, NULL);
    snprintf(want, sizeof want, "%s/other.secret", f->dir);
    assert_string_equal(c->web_host, "::");
    assert_string_equal(c->web_secret_file, want);
    cfg_free(c);

    /* A loopback page needs none; [web monitor] secret_file = none turns [defaults]' off,
     * and then a public host is refused. */
    const char *off = put(f, "off.ini",
                          "[defaults]\nlog_dir = /tmp\nsecret_file = other.secret\n"
                          "[a]\nexec = /bin/true\nwait_until_completed = false\n"
                          "[web monitor]\nhost = 10.0.0.1\nsecret_file = none\n");
    const char *msgs;
    assert_null(load(off, SHMRPC_EINVAL, &msgs));
    assert_non_null(strstr(msgs, "off.ini:8:8: error: the web monitor's host '10.0.0.1' is not "
                                 "a loopback address"));
}

/* Windows line ends and a byte order mark read as plain text; columns stay right. */
static void crlf_and_bom(void **state)
{
    fixture *f = *state;
    put(f, "m.so", "");
    const char *ini = put(f, "crlf.ini",
                          "\xef\xbb\xbf[defaults]\r\nlog_dir = /tmp\r\n[a]\r\nmodule = m.so\r\n"
                          "log_keep = many\r\n");
    const char *msgs;
    assert_null(load(ini, SHMRPC_EINVAL, &msgs));
    assert_non_null(strstr(msgs, "crlf.ini:5:12: error: log_keep: expected a whole number"));
    assert_non_null(strstr(msgs, "\nlog_keep = many\n           ^\n"));
    assert_null(strchr(msgs, '\r'));
}

static void nul_byte(void **state)
{
    fixture *f = *state;
    static const char text[] = "[defaults]\nlog_dir = /t\0mp\n";
    const char *ini = put_bytes(f, "nul.ini", text, sizeof text - 1, 0644);
    const char *msgs;
    assert_null(load(ini, SHMRPC_EINVAL, &msgs));
    assert_non_null(strstr(msgs, "nul.ini:2:13: error: NUL byte in the file\n"
                                 "log_dir = /t?mp\n"
                                 "            ^\n"));
}

/* The file is UTF-8 (docs/service-ini.md): every way a sequence can be wrong is refused
 * at its first byte, and the message and the line shown carry no invalid byte. */
static void invalid_utf8(void **state)
{
    fixture *f = *state;
    put(f, "m.so", "");
    static const char text[] = "[defaults]\n"
                               "log_dir = /tmp/caf\xc3\xa9\n"          /* valid: é */
                               "[a]\nmodule = m.so\n"                  /* lines 3, 4 */
                               "module_args = x\xc0\xafy\n"            /* 5: overlong '/' */
                               "log_keep = \xed\xa0\x80\n"             /* 6: a surrogate */
                               "log_max_bytes = 1M\xe2\x82\n"          /* 7: cut short */
                               "stop_timeout = \xff\n"                 /* 8: never UTF-8 */
                               "startup_timeout = 1\x80\n"             /* 9: a lone continuation */
                               "series_interval = \xf4\x90\x80\x80\n"; /* 10: past U+10FFFF */
    const char *ini = put_bytes(f, "u.ini", text, sizeof text - 1, 0644);
    const char *msgs;
    assert_null(load(ini, SHMRPC_EINVAL, &msgs));
    assert_null(strstr(msgs, "u.ini:2:"));
    assert_non_null(strstr(msgs, "u.ini:5:16: error: invalid UTF-8 (byte 0xc0): the file must "
                                 "be UTF-8\nmodule_args = x??y\n               ^\n"));
    assert_non_null(strstr(msgs, "u.ini:6:12: error: invalid UTF-8 (byte 0xed)"));
    assert_non_null(strstr(msgs, "u.ini:7:19: error: invalid UTF-8 (byte 0xe2)"));
    assert_non_null(strstr(msgs, "u.ini:8:16: error: invalid UTF-8 (byte 0xff)"));
    assert_non_null(strstr(msgs, "u.ini:9:20: error: invalid UTF-8 (byte 0x80)"));
    assert_non_null(strstr(msgs, "u.ini:10:19: error: invalid UTF-8 (byte 0xf4)"));
    /* The value's own error quotes the bytes escaped. */
    assert_non_null(strstr(msgs, "got '\\xed\\xa0\\x80'"));
    assert_int_equal(shmrpc__utf8_invalid_at(msgs, strlen(msgs)), strlen(msgs));
}

/* Past 100 errors the rest are counted, not shown. */
static void error_flood(void **state)
{
    fixture *f = *state;
    char text[4096] = "[defaults]\nlog_dir = /tmp\n";
    for (int i = 0; i < 150; i++)
        strcat(text, "x\n");
    const char *ini = put(f, "flood.ini", text);
    const char *msgs;
    assert_null(load(ini, SHMRPC_EINVAL, &msgs));
    assert_non_null(strstr(msgs, "flood.ini:102:1: error: expected"));
    assert_null(strstr(msgs, "flood.ini:103:1:"));
    assert_non_null(strstr(msgs, "flood.ini: error: 51 more errors not shown\n"));
}

/* A file far larger than any service.ini is cut short, with a message, not read slowly. */
static void caps(void **state)
{
    fixture *f = *state;
    static char text[1 << 16];
    strcpy(text, "[defaults]\n");
    for (int i = 0; i < 300; i++)
        sprintf(text + strlen(text), "key%d = 1\n", i);
    for (int i = 0; i < 1100; i++)
        sprintf(text + strlen(text), "[s%d]\n", i);
    const char *ini = put(f, "caps.ini", text);
    const char *msgs;
    assert_null(load(ini, SHMRPC_EINVAL, &msgs));
    assert_non_null(strstr(msgs, "caps.ini:202:1: error: more than 200 keys in [defaults]"));
    assert_non_null(strstr(msgs, "caps.ini:1301:1: error: more than 1000 sections"));
}

static void unreadable(void **state)
{
    fixture *f = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/missing.ini", f->dir);
    const char *msgs;
    assert_null(load(path, SHMRPC_EINVAL, &msgs));
    char want[192];
    snprintf(want, sizeof want, "%s: error: cannot read: No such file or directory\n", path);
    assert_string_equal(msgs, want);
}

/* A FIFO named as the file, or as its secret_file: open() would wait for a writer that
 * never comes. The alarm turns such a hang into a failure (SIGALRM ends the test). */
static void fifo_is_refused(void **state)
{
    fixture *f = *state;
    char fifo[128], want[256];
    snprintf(fifo, sizeof fifo, "%s/fifo.ini", f->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    strcpy(f->files[f->n++], fifo);
    alarm(10);
    const char *msgs;
    assert_null(load(fifo, SHMRPC_EINVAL, &msgs));
    snprintf(want, sizeof want, "%s: error: cannot read: a FIFO, not a regular file\n", fifo);
    assert_string_equal(msgs, want);

    char secret[128];
    snprintf(secret, sizeof secret, "%s/fifo.secret", f->dir);
    assert_int_equal(mkfifo(secret, 0600), 0);
    strcpy(f->files[f->n++], secret);
    put(f, "m.so", "");
    const char *ini = put(f, "s.ini",
                          "[defaults]\nlog_dir = /tmp\ntcp_bind = 0.0.0.0\n"
                          "secret_file = fifo.secret\n[a]\nmodule = m.so\n");
    assert_null(load(ini, SHMRPC_EINVAL, &msgs));
    assert_non_null(strstr(msgs, "s.ini:4:15: error: secret_file: the secret file "));
    assert_non_null(strstr(msgs, "fifo.secret is a FIFO, not a regular file\n"));
    alarm(0);
}

/* Paths are quoted whole, however deep the file sits: a message that cut them ("module
 * '/home/.../build/echo.s...'") hid what the user must read, and made the golden files
 * pass or fail by where the project was checked out. */
static void long_paths_are_not_cut(void **state)
{
    fixture *f = *state;
    char mid[300], deep[512], ini[600], so[600], notdir[600], want[1400];
    int n = snprintf(mid, sizeof mid, "%s/", f->dir);
    memset(mid + n, 'd', 150); /* two folders of 150 bytes: a name is at most 255 */
    mid[n + 150] = '\0';
    snprintf(deep, sizeof deep, "%s/%s", mid, mid + n);
    assert_int_equal(mkdir(mid, 0700), 0);
    strcpy(f->files[f->n++], mid);
    assert_int_equal(mkdir(deep, 0700), 0);
    strcpy(f->files[f->n++], deep);
    snprintf(ini, sizeof ini, "%s/s.ini", deep);
    snprintf(so, sizeof so, "%s/m.so", deep);
    snprintf(notdir, sizeof notdir, "%s/file", deep);
    strcpy(f->files[f->n++], notdir);
    strcpy(f->files[f->n++], so);
    strcpy(f->files[f->n++], ini);
    static const char bad[] = "[defaults]\nlog_dir = file\n"
                              "[a]\nmodule = missing.so\n"
                              "[b]\nexec = ./missing-program\nwait_until_completed = false\n";
    static const char good[] = "[defaults]\nlog_dir = logs\n[a]\nmodule = m.so\n";
    FILE *w = fopen(notdir, "w");
    assert_non_null(w);
    fclose(w);
    w = fopen(so, "w");
    assert_non_null(w);
    fclose(w);
    w = fopen(ini, "w");
    assert_non_null(w);
    fputs(bad, w);
    fclose(w);

    const char *msgs;
    assert_null(load(ini, SHMRPC_EINVAL, &msgs));
    char *copy = strdup(msgs);
    snprintf(want, sizeof want, "log_dir '%s/file' is not a folder\n", deep);
    assert_non_null(strstr(copy, want));
    snprintf(want, sizeof want, "module '%s/missing.so': No such file or directory\n", deep);
    assert_non_null(strstr(copy, want));
    snprintf(want, sizeof want, "program '%s/missing-program' not found: No such file", deep);
    assert_non_null(strstr(copy, want));
    free(copy);

    /* A log_dir too long for the paths made in it is refused, not cut. */
    static char longer[5000];
    strcpy(longer, "[defaults]\nlog_dir = ");
    memset(longer + strlen(longer), 'l', 4000);
    strcat(longer, "\n[a]\nmodule = m.so\n");
    w = fopen(ini, "w");
    assert_non_null(w);
    fputs(longer, w);
    fclose(w);
    assert_null(load(ini, SHMRPC_EINVAL, &msgs));
    snprintf(want, sizeof want,
             "s.ini:2:11: error: log_dir is %zu bytes long once taken from the file's folder; "
             "at most %d, so that",
             strlen(deep) + 1 + 4000, PATH_MAX - 64 - 64);
    assert_non_null(strstr(msgs, want));

    /* The resolved form, as shmrpc-ini-check prints it, names the module whole too. */
    w = fopen(ini, "w");
    assert_non_null(w);
    fputs(good, w);
    fclose(w);
    cfg_file *c = load(ini, 0, NULL);
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    cfg_write(c, &out);
    shmrpc_buf_append(&out, "", 1);
    snprintf(want, sizeof want, "module = %s\n", so);
    assert_non_null(strstr((const char *)out.data, want));
    shmrpc_buf_destroy(&out);
    cfg_free(c);
}

/* The written form reads back to the same configuration. */
static void written_form_reads_back(void **state)
{
    fixture *f = *state;
    put(f, "m.so", "");
    const char *ini = put(f, "one.ini",
                          "[defaults]\nlog_dir = /tmp\nmax_proc_mem_bytes = 2G\n"
                          "[web monitor]\nport = 6100\n"
                          "[a]\nmodule = m.so\nshm_name = a1\n"
                          "[b]\nexec = /bin/sh -c \"echo \\\"hi\\\"\" 'a b'\nshm_name = b1\n");
    cfg_file *c = load(ini, 0, NULL);
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    cfg_write(c, &out);
    cfg_free(c);
    const char *again = put_bytes(f, "two.ini", out.data, out.len, 0644);
    c = load(again, 0, NULL);
    shmrpc_buf out2;
    shmrpc_buf_init(&out2);
    cfg_write(c, &out2);
    assert_int_equal(c->defaults.max_proc_mem_bytes, (uint64_t)2 << 30);
    assert_int_equal(c->services[1].argc, 4);
    assert_string_equal(c->services[1].argv[2], "echo \"hi\"");
    assert_string_equal(c->services[1].argv[3], "a b");
    assert_int_equal(out.len, out2.len);
    assert_memory_equal(out.data, out2.data, out.len);
    cfg_free(c);
    shmrpc_buf_destroy(&out);
    shmrpc_buf_destroy(&out2);
}

/* Every setting's field in cfg_settings has the C type its key's value calls
 * for: a mismatch would write a value of one size into a member of another. */
static void key_table_types(void **state)
{
    (void)state;
    char msg[256] = "";
    int rc = cfg_check_keys(msg, sizeof msg);
    if (rc) fail_msg("%s", msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_table_types),
        cmocka_unit_test_setup_teardown(resolves_defaults_and_overrides, setup, teardown),
        cmocka_unit_test_setup_teardown(relative_program_from_the_files_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(secret_file_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(web_monitor_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(crlf_and_bom, setup, teardown),
        cmocka_unit_test_setup_teardown(nul_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(error_flood, setup, teardown),
        cmocka_unit_test_setup_teardown(caps, setup, teardown),
        cmocka_unit_test_setup_teardown(unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(fifo_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(long_paths_are_not_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(written_form_reads_back, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
