/* SPDX-License-Identifier: MIT */
/* shmrpcctl call: any method of a running service called from the shell, through the
 * library's dynamic codec (shmrpc/dynamic.h), not generated code. */
#ifndef SHMRPC_CTL_CALL_H
#define SHMRPC_CTL_CALL_H

/* The subcommand: shmrpcctl call [--timeout MS] [--secret-file PATH] ADDRESS METHOD [ARGS].
 * Its exit status: 0 done, 1 the call failed, 2 bad usage or input. */
int ctl_call_main(int argc, char **argv);

#endif
