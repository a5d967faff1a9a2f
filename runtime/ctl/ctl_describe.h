/* SPDX-License-Identifier: MIT */
/* shmrpcctl list and describe: what a running service serves, from the method table its
 * server sends, as grpcurl's list and describe read a gRPC server's reflection. */
#ifndef SHMRPC_CTL_DESCRIBE_H
#define SHMRPC_CTL_DESCRIBE_H

/* shmrpcctl list [--timeout MS] [--secret-file PATH] [TLS OPTIONS] ADDRESS: the service's
 * method names, one a line. Exit status: 0 done, 1 unreachable, 2 bad usage. */
int ctl_list_main(int argc, char **argv);

/* shmrpcctl describe [...] ADDRESS [NAME]: the service as a .svc file, or its method or
 * struct or enum NAME and the structs and enums that uses. Exit status: 0 done, 1
 * unreachable or a signature that does not read, 2 bad usage or no such NAME. */
int ctl_describe_main(int argc, char **argv);

#endif
