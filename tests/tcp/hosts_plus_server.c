/* SPDX-License-Identifier: MIT */
/* A server of hosts_plus.svc, Calls with one more method sorted first, for hosts_test's
 * rolling upgrade: a program of its own, as the two builds of Calls give the same C names.
 *
 * Usage: hosts_plus_server ADDR. Serves ADDR on its own thread until SIGTERM (alarm(120)
 * as a watchdog); nap answers this process's pid. Exits 0 when it served and stopped. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "hosts_plus.h"

static shmrpc_server *server;

static void on_term(int sig)
{
    (void)sig;
    shmrpc_server_stop(server);
}

static int h_aaa(shmrpc_ctx *ctx, int32_t *out)
{
    (void)ctx;
    *out = -1;
    return 0;
}

static int h_echo(shmrpc_ctx *ctx, shmrpc_bytes data, shmrpc_bytes *out)
{
    (void)ctx;
    *out = data;
    return 0;
}

static int h_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    (void)ctx;
    *out = a + b;
    return 0;
}

static int h_nap(shmrpc_ctx *ctx, uint32_t ms, int32_t *out)
{
    (void)ctx;
    usleep(ms * 1000);
    *out = getpid();
    return 0;
}

static const Calls_handlers handlers = {.aaa = h_aaa, .echo = h_echo, .add = h_add, .nap = h_nap};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: hosts_plus_server ADDR\n");
        return 2;
    }
    alarm(120);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    int rc = shmrpc_server_new(&server, NULL);
    if (rc == 0) rc = shmrpc_server_register(server, &Calls_service, &handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(server, argv[1]);
    if (rc == 0) rc = shmrpc_server_serve(server, 0);
    if (rc != 0) fprintf(stderr, "hosts_plus_server: %s\n", shmrpc_errmsg());
    shmrpc_server_free(server);
    return rc == 0 ? 0 : 1;
}
