/* SPDX-License-Identifier: MIT */
/* The options of shmrpcctl's commands (ctl_opts.h): one table, read with getopt_long. */
#include "ctl_opts.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/metadata.h>
#include <shmrpc/status.h>

#include "usage.h"

#define DEFAULT_WAIT_S 30 /* --wait: how long start, stop and restart wait to settle */
#define DEFAULT_LINES 50  /* -n: the lines of a log's tail */

enum {
    OPT_JSON = 256,
    OPT_BYTES,
    OPT_BASE64,
    OPT_TIMEOUT,
    OPT_DEADLINE,
    OPT_SECRET_FILE,
    OPT_TLS,
    OPT_TLS_CA,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_NAME,
    OPT_TLS_NO_VERIFY,
    OPT_TRACE,
    OPT_INI,
    OPT_WAIT,
    OPT_NO_WAIT,
    OPT_DRY_RUN,
};

/* Each option by the set it belongs to. Both --timeouts are spelt alike: a command knows
 * one of the two. */
static const struct {
    unsigned set;
    struct option opt;
} all[] = {
    {CTL_OPT_JSON, {"json", no_argument, NULL, OPT_JSON}},
    {CTL_OPT_FORM, {"bytes", no_argument, NULL, OPT_BYTES}},
    {CTL_OPT_FORM, {"base64", no_argument, NULL, OPT_BASE64}},
    {CTL_OPT_TIMEOUT, {"timeout", required_argument, NULL, OPT_TIMEOUT}},
    {CTL_OPT_DEADLINE, {"timeout", required_argument, NULL, OPT_DEADLINE}},
    {CTL_OPT_CLIENT, {"secret-file", required_argument, NULL, OPT_SECRET_FILE}},
    {CTL_OPT_CLIENT, {"tls", no_argument, NULL, OPT_TLS}},
    {CTL_OPT_CLIENT, {"tls-ca", required_argument, NULL, OPT_TLS_CA}},
    {CTL_OPT_CLIENT, {"tls-cert", required_argument, NULL, OPT_TLS_CERT}},
    {CTL_OPT_CLIENT, {"tls-key", required_argument, NULL, OPT_TLS_KEY}},
    {CTL_OPT_CLIENT, {"tls-server-name", required_argument, NULL, OPT_TLS_NAME}},
    {CTL_OPT_CLIENT, {"tls-no-verify", no_argument, NULL, OPT_TLS_NO_VERIFY}},
    {CTL_OPT_TRACE, {"trace", optional_argument, NULL, OPT_TRACE}},
    {CTL_OPT_SUPERVISOR, {"address", required_argument, NULL, 'a'}},
    {CTL_OPT_SUPERVISOR, {"ini", required_argument, NULL, OPT_INI}},
    {CTL_OPT_WAIT, {"wait", required_argument, NULL, OPT_WAIT}},
    {CTL_OPT_WAIT, {"no-wait", no_argument, NULL, OPT_NO_WAIT}},
    {CTL_OPT_DRY_RUN, {"dry-run", no_argument, NULL, OPT_DRY_RUN}},
    {CTL_OPT_FOLLOW, {"follow", no_argument, NULL, 'f'}},
};

#define N_ALL (sizeof all / sizeof all[0])

void ctl_opts_init(ctl_opts *o)
{
    *o = (ctl_opts){.form = CTL_FORM_AUTO, .wait_s = DEFAULT_WAIT_S, .lines = DEFAULT_LINES};
    shmrpc_client_opts_init(&o->client);
}

/* The set an option read belongs to: 'a', 'n' and 'f' are short options too. */
static unsigned set_of(int opt)
{
    if (opt == 'a') return CTL_OPT_SUPERVISOR;
    if (opt == 'n') return CTL_OPT_LINES;
    for (size_t k = 0; k < N_ALL; k++)
        if (all[k].opt.val == opt) return all[k].set;
    return 0;
}

/* s as a whole number from lo to hi, into *out. */
static bool number(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* false, with why (NULL: the usage says it). */
static bool bad(ctl_opts *o, const char *why)
{
    o->why = why;
    return false;
}

/* Takes one option's value into o; false with o->why when it is bad. */
static bool take(ctl_opts *o, int opt, const char *arg)
{
    shmrpc_tcp_opts *tcp = &o->client.tcp;
    long long v;
    if (opt >= OPT_TLS && opt <= OPT_TLS_NO_VERIFY) /* each TLS option implies --tls */
        tcp->tls = SHMRPC_TLS_ON;
    switch (opt) {
    case OPT_JSON:
        o->json = true;
        return true;
    case OPT_BYTES:
        o->form = CTL_FORM_BYTES;
        return true;
    case OPT_BASE64:
        o->form = CTL_FORM_BASE64;
        return true;
    case OPT_TIMEOUT:
        if (!number(arg, -1, INT64_MAX, &v))
            return bad(o, "--timeout takes milliseconds (0: try once, -1: forever)");
        o->ms = v;
        return true;
    case OPT_DEADLINE:
        if (!number(arg, 1, INT32_MAX, &v))
            return bad(o, "--timeout takes milliseconds, 1 or more");
        o->client.timeout_ms = (int32_t)v;
        return true;
    case OPT_SECRET_FILE:
        /* Read now, so that a file refused for what it is is said before anything runs. */
        if (shmrpc_secret_load(arg, o->secret, sizeof o->secret, &tcp->secret_len) != 0) {
            snprintf(o->why_text, sizeof o->why_text, "%s", shmrpc_errmsg());
            return bad(o, o->why_text);
        }
        tcp->secret = o->secret;
        return true;
    case OPT_TLS:
        return true;
    case OPT_TLS_CA: /* the files are read when the client connects */
        tcp->tls_ca = arg;
        return true;
    case OPT_TLS_CERT:
        tcp->tls_cert = arg;
        return true;
    case OPT_TLS_KEY:
        tcp->tls_key = arg;
        return true;
    case OPT_TLS_NAME:
        tcp->tls_server_name = arg;
        return true;
    case OPT_TLS_NO_VERIFY:
        tcp->tls_verify = SHMRPC_TLS_VERIFY_OFF;
        return true;
    case OPT_TRACE:
        if (arg && shmrpc_traceparent_check(arg) != 0) {
            snprintf(o->why_text, sizeof o->why_text, "--trace: %s", shmrpc_errmsg());
            return bad(o, o->why_text);
        }
        o->trace = arg ? arg : "";
        return true;
    case 'a':
        o->addr = arg;
        return true;
    case OPT_INI:
        o->ini = arg;
        return true;
    case OPT_WAIT:
        if (!number(arg, 1, 3600, &v)) return bad(o, "--wait takes 1 to 3600 seconds");
        o->wait_s = (long)v;
        return true;
    case OPT_NO_WAIT:
        o->no_wait = true;
        return true;
    case 'n':
        if (!number(arg, 1, 1000, &v)) return bad(o, "-n takes 1 to 1000 lines");
        o->lines = (long)v;
        return true;
    case OPT_DRY_RUN:
        o->dry_run = true;
        return true;
    case 'f':
        o->follow = true;
        return true;
    default:
        return bad(o, "an option it does not take");
    }
}

/* An option as it is spelt: --name, or -c. */
static void spelt(int opt, char *out, size_t n)
{
    for (size_t k = 0; k < N_ALL; k++)
        if (all[k].opt.val == opt) {
            snprintf(out, n, "--%s", all[k].opt.name);
            return;
        }
    snprintf(out, n, "-%c", opt);
}

int ctl_usage_error(const char *cmd, const char *why)
{
    return shmrpc__usage_error("shmrpcctl", cmd, why);
}

int ctl_opts_read(int argc, char **argv, unsigned knows, unsigned takes, ctl_opts *o)
{
    /* Only the command's own, so that another is unrecognized as getopt says it. */
    struct option longopts[N_ALL + 2];
    size_t n = 0;
    for (size_t k = 0; k < N_ALL; k++)
        if (knows & all[k].set) longopts[n++] = all[k].opt;
    longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[n] = (struct option){NULL, 0, NULL, 0};
    /* ':' after the '+': getopt_long says nothing itself (the command says what is wrong,
     * once: ctl_usage_error), and a missing value is ':', not '?'. */
    char shorts[16] = "+:h";
    if (knows & CTL_OPT_SUPERVISOR) strcat(shorts, "a:");
    if (knows & CTL_OPT_LINES) strcat(shorts, "n:");
    if (knows & CTL_OPT_FOLLOW) strcat(shorts, "f");
    o->why = NULL;
    /* optind 0 starts getopt afresh: shmrpcctl's own options were read with it too. */
    optind = 0;
    for (int opt; (opt = getopt_long(argc, argv, shorts + o->anywhere, longopts, NULL)) != -1;) {
        if (opt == 'h') {
            o->help = true;
            return 0;
        }
        if (opt == '?' || opt == ':') {
            o->why = shmrpc__getopt_error(opt, argv, o->why_text, sizeof o->why_text);
            return -1;
        }
        if (!(set_of(opt) & takes)) {
            char name[64];
            spelt(opt, name, sizeof name);
            snprintf(o->why_text, sizeof o->why_text, "option '%s' does not go with this command",
                     name);
            o->why = o->why_text;
            return -1;
        }
        if (!take(o, opt, optarg)) return -1;
    }
    return optind;
}
