/* SPDX-License-Identifier: MIT */
/* shmrpcctl queue stat|peek|push|pop|repair: a shared-memory queue from the shell
 * (docs/shmrpcctl.md). */
#ifndef SHMRPC_CTL_QUEUE_H
#define SHMRPC_CTL_QUEUE_H

/* shmrpcctl queue SUBCOMMAND ...: 0, 1 when it failed, 2 for bad usage or input. */
int ctl_queue_main(int argc, char **argv);

#endif
