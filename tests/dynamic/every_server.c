/* SPDX-License-Identifier: MIT */
/* every-server: serves tests/dynamic/every.svc with handlers that hand back what they are
 * given, until SIGTERM, for the Python tests of every type both ways.
 *   every-server ADDRESS */
#include <signal.h>
#include <stdio.h>

#include "every_handlers.h"

static shmrpc_server *server;

static void on_signal(int sig)
{
    (void)sig;
    shmrpc_server_stop(server);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: every-server ADDRESS\n");
        return 2;
    }
    int rc = shmrpc_server_new(&server, NULL);
    if (rc == 0) rc = shmrpc_server_register(server, &Every_service, &every_identity, NULL);
    if (rc == 0) rc = shmrpc_server_listen(server, argv[1]);
    if (rc != 0) {
        fprintf(stderr, "every-server: %s: %s: %s\n", argv[1], shmrpc_strerror(rc),
                shmrpc_errmsg());
        shmrpc_server_free(server);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    rc = shmrpc_server_serve(server, 1);
    shmrpc_server_free(server);
    return rc == 0 ? 0 : 1;
}
