/* SPDX-License-Identifier: MIT */
/* The options every program of the project reads alike, and its rule for usage: -h and
 * --help print the usage on stdout, status 0; --version prints "NAME VERSION" on stdout,
 * status 0; after bad usage (an option getopt_long refused and has named, an argument
 * missing or too many) the usage goes to stderr, status 2, so that a script tells a
 * question from a mistake. Depends on nothing but the C library. */
#ifndef SHMRPC_COMMON_USAGE_H
#define SHMRPC_COMMON_USAGE_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

/* getopt_long's value for --version: above any value of a program's own options. */
#define SHMRPC__OPT_VERSION 0x10000

/* The rows every program's long options end with, before {NULL, 0, NULL, 0}: --help (as
 * -h: "h" goes in its short options) and --version. */
// clang-format off
#define SHMRPC__OPTS_HELP_VERSION \
    {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, SHMRPC__OPT_VERSION}
// clang-format on

/* Writes text to stdout when help, else to stderr; the status to exit with: 0 or 2. */
int shmrpc__usage(bool help, const char *text);

/* The same for a usage that write writes to the stream it is given. */
int shmrpc__usage_by(bool help, void (*write)(FILE *to));

/* What a getopt_long loop does with an option that is none of the program's own: for
 * SHMRPC__OPT_VERSION prints "name version", for 'h' the usage on stdout, for anything
 * else (getopt_long has said what was wrong) the usage on stderr. The status to exit with. */
int shmrpc__opt_default(int opt, const char *name, const char *version, void (*usage)(FILE *to));

#endif
