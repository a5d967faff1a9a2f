/* SPDX-License-Identifier: MIT */
/* See serve_until_term.h. */
#include "serve_until_term.h"

#include <signal.h>
#include <stdio.h>

static shmrpc_server *server;

static void on_term(int sig)
{
    (void)sig;
    shmrpc_server_stop(server); /* async-signal-safe (server.h) */
}

int test_serve_until_term(const char *prog, int argc, char **argv, const shmrpc_service *svc,
                          const void *handlers)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s ADDRESS\n", prog);
        return 2;
    }
    int rc = shmrpc_server_new(&server, NULL);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    if (rc == 0) rc = shmrpc_server_register(server, svc, handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(server, argv[1]);
    if (rc == 0) rc = shmrpc_server_serve(server, 2);
    if (rc) fprintf(stderr, "%s: %s\n", prog, shmrpc_errmsg());
    shmrpc_server_free(server);
    return rc ? 1 : 0;
}
