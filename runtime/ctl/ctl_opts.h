/* SPDX-License-Identifier: MIT */
/* The options shmrpcctl queue and map take after their subcommand: --json, --bytes,
 * --base64 and --timeout MS, each where the subcommand takes it, and --help. */
#ifndef SHMRPC_CTL_OPTS_H
#define SHMRPC_CTL_OPTS_H

#include <stdbool.h>
#include <stdint.h>

/* How a message, key or value is written: JSON for a typed queue or map, else the bytes
 * as given (auto); the bytes as given (--bytes); padded base64 (--base64). */
typedef enum ctl_form { CTL_FORM_AUTO, CTL_FORM_BYTES, CTL_FORM_BASE64 } ctl_form;

/* The options, as bits of a set: --json; --bytes and --base64; --timeout MS. */
enum { CTL_OPT_JSON = 1, CTL_OPT_FORM = 2, CTL_OPT_TIMEOUT = 4 };

typedef struct ctl_opts {
    bool json;       /* --json */
    ctl_form form;   /* --bytes or --base64, the last one given; auto without */
    int64_t ms;      /* --timeout MS (-1: forever); 0 without */
    bool help;       /* -h or --help, before anything wrong: print the usage, exit 0 */
    const char *why; /* bad usage: what is wrong, or NULL for the usage alone */
} ctl_opts;

/* Reads argv's options after argv[1], the subcommand, in order, up to NAME ('+': a KEY or
 * VALUE such as -1 is no option). knows: the options the command has (getopt calls any
 * other unrecognized); takes: those of them this subcommand takes (another is bad usage).
 * The index of NAME in argv, or -1 for bad usage (o->why); o->help: the rest was not
 * read. */
int ctl_opts_read(int argc, char **argv, unsigned knows, unsigned takes, ctl_opts *o);

#endif
