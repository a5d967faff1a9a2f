/* SPDX-License-Identifier: MIT */
/* shmrpcctl call: the arguments and the output of the subcommand; the library's dynamic
 * codec (shmrpc/dynamic.h) connects, learns the method table and converts. */
#include "ctl_call.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrpc/client.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/metadata.h>
#include <shmrpc/status.h>
#include <shmrpc/tcp.h>

#include "usage.h"

#define USAGE                                                                                      \
    "usage: shmrpcctl call [--timeout MS] [--secret-file PATH] [--trace[=TRACEPARENT]]\n"          \
    "                      [TLS OPTIONS] ADDRESS METHOD [ARGS-AS-JSON|-]\n"                        \
    "--trace sends a W3C traceparent with the call (a fresh one, or TRACEPARENT to continue a\n"   \
    "trace) and prints it on stderr as \"traceparent: 00-...\"; the server's span is its "         \
    "child.\n" CTL_TLS_USAGE

/* Reads all of stdin for ARGS "-". */
static char *read_stdin(size_t *n)
{
    size_t cap = 4096, len = 0;
    char *p = malloc(cap);
    while (p != NULL) {
        size_t got = fread(p + len, 1, cap - len, stdin);
        len += got;
        if (got == 0) break;
        if (len == cap) {
            char *q = cap < SIZE_MAX / 2 ? realloc(p, cap *= 2) : NULL;
            if (q == NULL) free(p);
            p = q;
        }
    }
    *n = len;
    return p;
}

static int connect_failed(const char *addr, int rc, const char *msg)
{
    fprintf(stderr, "shmrpcctl: %s: %s%s%s\n", addr, shmrpc_strerror(rc), *msg ? ": " : "", msg);
    return 1;
}

int ctl_client_options(int argc, char **argv, const char *cmd, const char *usage,
                       shmrpc_client_opts *opts, const char **trace)
{
    static uint8_t secret[SHMRPC_SECRET_MAX];
    enum {
        OPT_TIMEOUT = 256,
        OPT_SECRET_FILE,
        OPT_TLS,
        OPT_TLS_CA,
        OPT_TLS_CERT,
        OPT_TLS_KEY,
        OPT_TLS_NAME,
        OPT_TLS_NO_VERIFY,
        OPT_TRACE
    };
    static const struct option longopts[] = {
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"secret-file", required_argument, NULL, OPT_SECRET_FILE},
        {"tls", no_argument, NULL, OPT_TLS},
        {"tls-ca", required_argument, NULL, OPT_TLS_CA},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"tls-server-name", required_argument, NULL, OPT_TLS_NAME},
        {"tls-no-verify", no_argument, NULL, OPT_TLS_NO_VERIFY},
        {"trace", optional_argument, NULL, OPT_TRACE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* '+': the options end at ADDRESS, so that arguments such as -1 are never options. */
    optind = 0; /* afresh: shmrpcctl's own options were read with getopt too */
    for (int opt; (opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1;) {
        char *end;
        long long ms;
        switch (opt) {
        case OPT_TIMEOUT:
            ms = strtoll(optarg, &end, 10);
            if (*end != '\0' || end == optarg || ms < 1 || ms > INT32_MAX) {
                fprintf(stderr, "shmrpcctl: %s: --timeout takes milliseconds, 1 or more\n", cmd);
                return 2;
            }
            opts->timeout_ms = ms;
            break;
        case OPT_SECRET_FILE:
            if (shmrpc_secret_load(optarg, secret, sizeof secret, &opts->tcp.secret_len) != 0) {
                fprintf(stderr, "shmrpcctl: %s: %s\n", cmd, shmrpc_errmsg());
                return 2;
            }
            opts->tcp.secret = secret;
            break;
        /* Every TLS option implies --tls; the files are read when the client connects. */
        case OPT_TLS:
            opts->tcp.tls = SHMRPC_TLS_ON;
            break;
        case OPT_TLS_CA:
            opts->tcp.tls = SHMRPC_TLS_ON;
            opts->tcp.tls_ca = optarg;
            break;
        case OPT_TLS_CERT:
            opts->tcp.tls = SHMRPC_TLS_ON;
            opts->tcp.tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            opts->tcp.tls = SHMRPC_TLS_ON;
            opts->tcp.tls_key = optarg;
            break;
        case OPT_TLS_NAME:
            opts->tcp.tls = SHMRPC_TLS_ON;
            opts->tcp.tls_server_name = optarg;
            break;
        case OPT_TLS_NO_VERIFY:
            opts->tcp.tls = SHMRPC_TLS_ON;
            opts->tcp.tls_verify = SHMRPC_TLS_VERIFY_OFF;
            break;
        case OPT_TRACE:
            if (!trace) return shmrpc__usage(false, usage); /* not this command's */
            if (optarg && shmrpc_traceparent_check(optarg) != 0) {
                fprintf(stderr, "shmrpcctl: %s: --trace: %s\n", cmd, shmrpc_errmsg());
                return 2;
            }
            *trace = optarg ? optarg : ""; /* "": a fresh trace */
            break;
        default:
            return shmrpc__usage(opt == 'h', usage);
        }
    }
    return -1;
}

int ctl_call_main(int argc, char **argv)
{
    shmrpc_client_opts opts;
    shmrpc_client_opts_init(&opts);
    const char *trace = NULL;
    int parsed = ctl_client_options(argc, argv, "call", USAGE, &opts, &trace);
    if (parsed >= 0) return parsed;
    int i = optind;
    if (argc - i < 2 || argc - i > 3) return shmrpc__usage(false, USAGE);
    const char *addr = argv[i], *method = argv[i + 1];
    const char *args_text = argc - i == 3 ? argv[i + 2] : "[]";
    size_t args_len = strlen(args_text);
    char *stdin_args = NULL;
    if (strcmp(args_text, "-") == 0) {
        if ((stdin_args = read_stdin(&args_len)) == NULL) {
            fprintf(stderr, "shmrpcctl: call: cannot read the arguments from stdin\n");
            return 2;
        }
        args_text = stdin_args;
    }

    shmrpc_dyn *d = NULL;
    shmrpc_buf out;
    shmrpc_buf_init(&out);
    int status = 1, rc;
    if ((rc = shmrpc_dyn_new(&d, &opts)) != 0) {
        fprintf(stderr, "shmrpcctl: call: %s\n", shmrpc_strerror(rc));
        status = 2;
        goto done;
    }
    if ((rc = shmrpc_dyn_connect(d, addr)) != 0) {
        status = connect_failed(addr, rc, shmrpc_errmsg());
        if (rc == SHMRPC_EINVAL) status = 2;
        goto done;
    }
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    if ((rc = shmrpc_dyn_method(d, method, &m, &sig)) != 0) {
        if (rc == SHMRPC_ENOENT) {
            fprintf(stderr, "shmrpcctl: %s\n", shmrpc_errmsg());
            status = 2;
        } else if (m != NULL) {
            fprintf(stderr, "shmrpcctl: %s: cannot read its %s\n  %s\n", method, shmrpc_errmsg(),
                    m->signature);
        } else {
            fprintf(stderr, "shmrpcctl: %s: %s\n", method, shmrpc_errmsg());
        }
        goto done;
    }
    shmrpc_client *c = shmrpc_dyn_client(d);
    if (shmrpc_dyn_encode_args(sig, args_text, args_len, shmrpc_client_request(c)) != 0) {
        fprintf(stderr, "shmrpcctl: %s: %s\n", method, shmrpc_errmsg());
        status = 2;
        goto done;
    }
    if (trace) { /* said before the call, so that a failed one can be found in the trace too */
        char fresh[SHMRPC_TRACEPARENT_SIZE];
        if (*trace == 0) shmrpc_traceparent_new(fresh);
        const char *tp = *trace ? trace : fresh;
        if ((rc = shmrpc_client_metadata_set(c, "traceparent", tp)) != 0) {
            fprintf(stderr, "shmrpcctl: call: --trace: %s\n", shmrpc_errmsg());
            status = 2;
            goto done;
        }
        fprintf(stderr, "traceparent: %s\n", tp);
    }
    shmrpc_bytes resp;
    if ((rc = shmrpc_client_call(c, m->id, &resp)) != 0) {
        const char *msg = shmrpc_errmsg();
        fprintf(stderr, "shmrpcctl: %s: %s%s%s\n", method, shmrpc_strerror(rc), *msg ? ": " : "",
                msg);
        goto done;
    }
    if (shmrpc_dyn_decode_result(sig, resp.ptr, resp.len, &out) != 0) {
        fprintf(stderr, "shmrpcctl: %s: %s\n", method, shmrpc_errmsg());
        goto done;
    }
    fwrite(out.data, 1, out.len, stdout);
    fputc('\n', stdout);
    status = fflush(stdout) == 0 ? 0 : 1;
done:
    shmrpc_dyn_free(d);
    shmrpc_buf_destroy(&out);
    free(stdin_args);
    return status;
}
