/* SPDX-License-Identifier: MIT */
/* shmrpcctl call: any method of a running service called from the shell, through the
 * library's dynamic codec (shmrpc/dynamic.h), not generated code. */
#ifndef SHMRPC_CTL_CALL_H
#define SHMRPC_CTL_CALL_H

#include "ctl_opts.h"

/* The TLS options of the commands that connect, for their usage texts. */
#define CTL_TLS_USAGE                                                                              \
    "TLS options (tcp://): --tls, --tls-ca PATH (CAs to check the server with; default: the\n"     \
    "system's), --tls-cert PATH and --tls-key PATH (a client certificate for mutual TLS),\n"       \
    "--tls-server-name NAME (the name its certificate must carry), --tls-no-verify\n"

/* The subcommand: shmrpcctl call [--timeout MS] [--secret-file PATH] [--trace[=TP]] ADDRESS
 * METHOD [ARGS].
 * Its exit status: 0 done, 1 the call failed, 2 bad usage or input. */
int ctl_call_main(int argc, char **argv);

/* The options of the commands that connect (call, list, describe, health), read into o
 * (ctl_opts_init'ed, with the command's defaults in o->client): --timeout MS, --secret-file
 * PATH and the TLS options, and those of takes (CTL_OPT_TRACE: call's --trace). argv[0] names the command in
 * messages; usage is printed for --help (to stdout) and bad usage. -1 when read (optind is
 * the first argument), else the exit status. */
int ctl_client_options(int argc, char **argv, unsigned takes, const char *usage, ctl_opts *o);

#endif
