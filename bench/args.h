/* SPDX-License-Identifier: MIT */
/* The options of the small benchmark programs (shmrpc-bench-codec, -compress, -map,
 * -queue), read with getopt_long as every program of the project reads its own: --help and
 * --version answer with status 0, --json where the program takes it, -- ends the options,
 * and anything else is bad usage (status 2). shmrpc-bench has its own, larger set. */
#ifndef SHMRPC_BENCH_ARGS_H
#define SHMRPC_BENCH_ARGS_H

#include <getopt.h> /* optind */
#include <stdbool.h>

/* Reads argv's options; usage is the program's usage text (printed for --help to stdout,
 * for bad usage to stderr). json: where --json is accepted, or NULL. -1 when read (optind
 * is then the first positional argument), else the status to exit with. */
int bench_args(int argc, char **argv, const char *usage, bool *json);

#endif
