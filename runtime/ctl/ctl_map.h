/* SPDX-License-Identifier: MIT */
/* shmrpcctl map stat|get|put|del|keys: a shared map from the shell (docs/shmrpcctl.md). */
#ifndef SHMRPC_CTL_MAP_H
#define SHMRPC_CTL_MAP_H

/* shmrpcctl map SUBCOMMAND ...: 0, 1 when it failed, 2 for bad usage or input. */
int ctl_map_main(int argc, char **argv);

#endif
