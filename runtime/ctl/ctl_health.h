/* SPDX-License-Identifier: MIT */
/* shmrpcctl health: the built-in health method of a running service, for scripts and
 * orchestrators' exec probes. */
#ifndef SHMRPC_CTL_HEALTH_H
#define SHMRPC_CTL_HEALTH_H

/* The subcommand: shmrpcctl health [--timeout MS] [--secret-file PATH] ADDRESS.
 * Prints serving, not_serving, draining or unreachable. Its exit status: 0 serving,
 * 1 anything else, 2 bad usage. */
int ctl_health_main(int argc, char **argv);

#endif
