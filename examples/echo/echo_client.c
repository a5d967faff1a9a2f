/* SPDX-License-Identifier: MIT */
/* echo-client: calls every method of an echo server and prints what came back.
 *   echo-client [ADDRESS]     (default: shm://echo_serv) */
#include <stdio.h>

#include "echo_handlers.h"

int main(int argc, char **argv)
{
    const char *addr = argc > 1 ? argv[1] : "shm://" ECHO_NAME;
    shmrpc_client *c = NULL;
    int rc = shmrpc_client_new(&c, &Echo_service_info, NULL);
    if (rc == 0) rc = shmrpc_client_connect(c, addr);
    if (rc != 0) {
        fprintf(stderr, "echo-client: connect %s: %s: %s\n", addr, shmrpc_strerror(rc),
                shmrpc_errmsg());
        shmrpc_client_free(c);
        return 1;
    }
    printf("connected to %s\n", addr);
    rc = echo_example_calls(c, stdout);
    shmrpc_client_free(c);
    return rc == 0 ? 0 : 1;
}
