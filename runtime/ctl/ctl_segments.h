/* SPDX-License-Identifier: MIT */
/* shmrpcctl ls and clean: the shmrpc segments in /dev/shm with their owners, and the
 * removal of those whose owners are dead (docs/shmrpcctl.md gives the rules). */
#ifndef SHMRPC_CTL_SEGMENTS_H
#define SHMRPC_CTL_SEGMENTS_H

/* shmrpcctl ls [--json] [NAME...]: 0, or 2 for bad usage. */
int ctl_ls_main(int argc, char **argv);

/* shmrpcctl clean [--dry-run] [NAME...]: 0, 1 when a removal failed, 2 for bad usage. */
int ctl_clean_main(int argc, char **argv);

#endif
