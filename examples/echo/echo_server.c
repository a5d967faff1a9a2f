/* SPDX-License-Identifier: MIT */
/* echo-server: serves the echo service until SIGTERM or SIGINT.
 *   echo-server [--workers N] [ADDRESS]     (default: shm://echo_serv, 1 worker) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo_handlers.h"

int main(int argc, char **argv)
{
    const char *addr = "shm://" ECHO_NAME;
    int workers = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end != '\0' || n < 1 || n > 64) {
                fprintf(stderr, "echo-server: --workers takes 1 to 64\n");
                return 2;
            }
            workers = (int)n;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: echo-server [--workers N] [ADDRESS]\n");
            return 2;
        } else {
            addr = argv[i];
        }
    }
    shmrpc_server *server;
    int rc = shmrpc_server_new(&server, NULL);
    if (rc == 0) rc = shmrpc_server_register(server, &Echo_service, &echo_example_handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(server, addr);
    if (rc != 0) {
        fprintf(stderr, "echo-server: %s: %s: %s\n", addr, shmrpc_strerror(rc), shmrpc_errmsg());
        shmrpc_server_free(server);
        return 1;
    }
    fprintf(stderr, "echo-server: serving %s with %d worker%s\n", addr, workers,
            workers == 1 ? "" : "s");
    rc = shmrpc_server_serve_until_signal(server, workers);
    shmrpc_server_free(server);
    fprintf(stderr, "echo-server: stopped\n");
    return rc == 0 ? 0 : 1;
}
