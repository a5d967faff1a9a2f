/* SPDX-License-Identifier: MIT */
/* The table of transports (transport.c), which client.c and server.c reach them through:
 * an address's transport, connecting and listening, and the checks of a transport's
 * entries. */
#ifndef SHMRPC_SRC_API_H
#define SHMRPC_SRC_API_H

#include "rpc/rpc.h"

/* The transport for addr ("SCHEME://WHERE"), and where inside addr. SHMRPC_EINVAL with
 * a message for a malformed address, an unknown scheme, or one not available yet. */
int shmrpc__transport_for(const char *addr, const shmrpc__transport **t, const char **where,
                          shmrpc_buf *err);

/* Connects to or listens at addr through its transport (shmrpc__transport_for), and
 * checks the ops of what it made. What client.c and server.c call. */
int shmrpc__transport_connect(const char *addr, const shmrpc_service_info *info,
                              const shmrpc__client_cfg *cfg, uint32_t *map, shmrpc__table *table,
                              shmrpc__conn **out, shmrpc_buf *err);
int shmrpc__transport_listen(shmrpc_server *s, const char *addr, shmrpc__listener **out,
                             shmrpc_buf *err);

/* The required entries, as nng's transport registration checks them: a transport must
 * have a scheme, connect and listen; its connections call and close; its listeners close,
 * serve and stop together or neither, and poke only with serve. SHMRPC_EINVAL with a
 * message naming the transport and the entry. The table is checked whole at its first
 * use, and ops as connect and listen return them, so a transport missing an entry fails
 * loudly there, never with a NULL call later. */
int shmrpc__transport_check(const shmrpc__transport *t, shmrpc_buf *err);
int shmrpc__conn_ops_check(const char *scheme, const shmrpc__conn_ops *ops, shmrpc_buf *err);
int shmrpc__listener_ops_check(const char *scheme, const shmrpc__listener_ops *ops,
                               shmrpc_buf *err);

/* Every transport's check_opts on o: the first failure, or 0. */
int shmrpc__transport_check_opts(const shmrpc_server_opts *o);

#endif
