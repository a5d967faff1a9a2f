/* SPDX-License-Identifier: MIT */
/* echo-inproc: serves the echo service and calls it in one process, through the same
 * encode, dispatch and decode path that the other transports use. */
#include <stdio.h>
#include <stdlib.h>

#include "echo_handlers.h"

int main(int argc, char **argv)
{
    const char *addr = argc > 1 ? argv[1] : "inproc://echo";
    shmrpc_server *s = NULL;
    shmrpc_client *c = NULL;
    int rc = shmrpc_server_new(&s, NULL);
    if (rc == 0) rc = shmrpc_server_register(s, &Echo_service, &echo_example_handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(s, addr);
    if (rc != 0) {
        fprintf(stderr, "echo-inproc: server: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
        shmrpc_server_free(s);
        return 1;
    }
    rc = shmrpc_client_new(&c, &Echo_service_info, NULL);
    if (rc == 0) rc = shmrpc_client_connect(c, addr);
    if (rc != 0) {
        fprintf(stderr, "echo-inproc: connect %s: %s: %s\n", addr, shmrpc_strerror(rc),
                shmrpc_errmsg());
    } else {
        printf("connected to %s\n", addr);
        rc = echo_example_calls(c, stdout);
    }
    shmrpc_client_free(c);
    shmrpc_server_free(s);
    return rc == 0 ? 0 : 1;
}
