/* SPDX-License-Identifier: MIT */
/* The options every program of the project reads alike, and its rule for usage: -h and
 * --help print the usage on stdout, status 0; --version prints "NAME VERSION" on stdout,
 * status 0; bad usage is status 2, so that a script tells a question from a mistake: an
 * option or a value that is wrong is said on one line on stderr, which points at --help,
 * and an argument missing or too many prints the usage there. Depends on nothing but the
 * C library. */
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

/* Says bad usage on one line, "NAME: CMD: WHY (see 'NAME CMD --help')" (without CMD when it
 * is NULL), and returns 2: for an option or a value that is wrong. A wrong count of
 * arguments prints the usage instead, which is what the user needs then. */
int shmrpc__usage_error(const char *name, const char *cmd, const char *why);

/* What getopt_long found wrong, read with ':' first in its optstring (after any '+'), so
 * that it said nothing itself: opt is what it returned (':' for an option without its
 * value, '?' for one it does not know), argv what it read. Written into out (n bytes), and
 * returned. */
const char *shmrpc__getopt_error(int opt, char **argv, char *out, size_t n);

/* What a getopt_long loop does with an option that is none of the program's own: for
 * SHMRPC__OPT_VERSION prints "name version", for 'h' the usage on stdout, for ':' and '?'
 * what is wrong, on one line (shmrpc__usage_error). The status to exit with. The loop reads
 * with ':' first in its optstring, so that getopt_long says nothing itself. */
int shmrpc__opt_default(int opt, char **argv, const char *name, const char *version,
                        void (*usage)(FILE *to));

#endif
