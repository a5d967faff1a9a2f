/* SPDX-License-Identifier: MIT */
/* The TCP transport's table, shmrpc__tcp_transport: the server side's listen
 * (tcp_server.c), the client side's connect (tcp_client.c), and the check of a server's
 * settings, above both sides and tcp.c. */
#include "transport/tcp/auth.h"
#include "transport/tcp/tcp_int.h"

static int tcp_check_opts(const shmrpc_server_opts *o)
{
    shmrpc__tcp_cfg cfg;
    int rc = shmrpc__tcp_cfg_init(&cfg, &o->tcp);
    shmrpc__auth_wipe(&cfg, sizeof cfg);
    return rc;
}

const shmrpc__transport shmrpc__tcp_transport = {
    .scheme = "tcp",
    .connect = shmrpc__tcp_connect,
    .listen = shmrpc__tcp_listen,
    .check_opts = tcp_check_opts,
};
