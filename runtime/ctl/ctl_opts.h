/* SPDX-License-Identifier: MIT */
/* The options shmrpcctl's commands take after their name, read in this one place with
 * getopt_long: each command says which of them it knows and which it takes, and gets them
 * spelt, checked and refused alike. */
#ifndef SHMRPC_CTL_OPTS_H
#define SHMRPC_CTL_OPTS_H

#include <stdbool.h>
#include <stdint.h>

#include <shmrpc/client.h>
#include <shmrpc/tcp.h>

/* How a message, key or value is written: JSON for a typed queue or map, else the bytes
 * as given (auto); the bytes as given (--bytes); padded base64 (--base64). */
typedef enum ctl_form { CTL_FORM_AUTO, CTL_FORM_BYTES, CTL_FORM_BASE64 } ctl_form;

/* The options, as bits of a set. */
enum {
    CTL_OPT_JSON = 1 << 0,       /* --json */
    CTL_OPT_FORM = 1 << 1,       /* --bytes and --base64 */
    CTL_OPT_TIMEOUT = 1 << 2,    /* --timeout MS a push or pop waits: 0 tries once, -1 forever */
    CTL_OPT_DEADLINE = 1 << 3,   /* --timeout MS a call may take, 1 or more */
    CTL_OPT_CLIENT = 1 << 4,     /* --secret-file PATH and the TLS options (tcp://) */
    CTL_OPT_TRACE = 1 << 5,      /* --trace[=TRACEPARENT] */
    CTL_OPT_SUPERVISOR = 1 << 6, /* -a ADDRESS and --ini FILE */
    CTL_OPT_WAIT = 1 << 7,       /* --wait SECONDS and --no-wait */
    CTL_OPT_LINES = 1 << 8,      /* -n LINES */
    CTL_OPT_DRY_RUN = 1 << 9,    /* --dry-run */
    CTL_OPT_FOLLOW = 1 << 10,    /* -f, --follow */
};

typedef struct ctl_opts {
    /* Set before reading (ctl_opts_init sets the defaults): */
    bool anywhere;             /* options may follow the arguments too; else they end at the
                                * first, so that an argument such as -1 is no option */
    shmrpc_client_opts client; /* CTL_OPT_DEADLINE into timeout_ms; CTL_OPT_CLIENT into tcp */
    long wait_s;               /* --wait SECONDS, 1 to 3600 */
    long lines;                /* -n LINES, 1 to 1000 */
    /* Read: */
    bool json;          /* --json */
    ctl_form form;      /* --bytes or --base64, the last one given; auto without */
    int64_t ms;         /* --timeout MS of CTL_OPT_TIMEOUT (-1: forever); 0 without */
    const char *trace;  /* --trace: the traceparent given (checked), "" for a fresh one; NULL
                         * without */
    const char *addr;   /* -a ADDRESS */
    const char *ini;    /* --ini FILE */
    bool no_wait;       /* --no-wait */
    bool dry_run;       /* --dry-run */
    bool follow;        /* -f, --follow */
    bool help;          /* -h or --help, before anything wrong: print the usage, exit 0 */
    const char *why;    /* bad usage: what is wrong */
    char why_text[320]; /* where why is written when it says more than a constant */
    uint8_t secret[SHMRPC_SECRET_MAX]; /* --secret-file's bytes: client.tcp.secret */
} ctl_opts;

/* The defaults: the library's client options, 30 s of --wait, 50 lines of -n. */
void ctl_opts_init(ctl_opts *o);

/* Reads the options of argv[1..] (argv[0] is the command's name) in order. knows: the
 * options the command has (getopt calls any other unrecognized); takes: those of them this
 * use of it takes (another is bad usage). The index in argv of the first argument that is
 * no option (with o->anywhere, the arguments are moved there, in their order), or -1 for bad
 * usage (o->why); with o->help the rest was not read. client.tcp.secret points into o. */
int ctl_opts_read(int argc, char **argv, unsigned knows, unsigned takes, ctl_opts *o);

/* Says bad usage on one line, "shmrpcctl: CMD: WHY (see 'shmrpcctl CMD --help')", and
 * returns 2 (shmrpc__usage_error). */
int ctl_usage_error(const char *cmd, const char *why);

#endif
