/* SPDX-License-Identifier: MIT */
/* gather-server ADDRESS: serves gather.svc's Gather at ADDRESS until SIGTERM, with the tests'
 * handlers (gather_handlers.c), for the tests of what calls client streams from outside C
 * (ctl_stream_test.sh: shmrpcctl call). */
#include <signal.h>
#include <stdio.h>

#include "gather.h"
#include "gather_handlers.h"

static shmrpc_server *server;

static void on_term(int sig)
{
    (void)sig;
    shmrpc_server_stop(server); /* async-signal-safe (server.h) */
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gather-server ADDRESS\n");
        return 2;
    }
    int rc = shmrpc_server_new(&server, NULL);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    if (rc == 0) rc = shmrpc_server_register(server, &Gather_service, &test_gather_handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(server, argv[1]);
    if (rc == 0) rc = shmrpc_server_serve(server, 2);
    if (rc) fprintf(stderr, "gather-server: %s\n", shmrpc_errmsg());
    shmrpc_server_free(server);
    return rc ? 1 : 0;
}
