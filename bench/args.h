/* SPDX-License-Identifier: MIT */
/* The options of the small benchmark programs (shmrpc-bench-codec, -compress, -map,
 * -queue, -stall), read with getopt_long as every program of the project reads its own:
 * --help and --version answer with status 0, --json where the program takes it, -- ends
 * the options, and anything else is bad usage (status 2). shmrpc-bench has its own, larger
 * set. */
#ifndef SHMRPC_BENCH_ARGS_H
#define SHMRPC_BENCH_ARGS_H

#include <getopt.h> /* optind */
#include <stdbool.h>

/* Reads argv's options; usage is the program's usage text (printed for --help to stdout,
 * for bad usage to stderr). json: where --json is accepted, or NULL. most: how many
 * arguments may follow the options (more is bad usage), or -1 for any number. -1 when
 * read (optind is then the first argument), else the status to exit with. */
int bench_args(int argc, char **argv, const char *usage, bool *json, int most);

/* bench_args for a benchmark of rows given in seconds, whose arguments are
 * [SECONDS-PER-ROW [ONLY]]: *seconds is set when given (0 < s <= 60, else bad usage) and
 * keeps its default otherwise; *only is ONLY, or NULL. */
int bench_args_rows(int argc, char **argv, const char *usage, double *seconds, const char **only);

#endif
