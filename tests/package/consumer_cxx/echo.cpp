/* SPDX-License-Identifier: MIT */
// echo-cxx: the echo service from C++.
//   echo-cxx serve ADDRESS   serves it until SIGTERM
//   echo-cxx call ADDRESS    calls add(40, 2) and prints "add(40, 2) = 42"
#include <csignal>
#include <cstdio>
#include <cstring>

#include "echo.h"

namespace
{

shmrpc_server *server;

int echo_raw(shmrpc_ctx *, shmrpc_bytes data, shmrpc_bytes *out)
{
    *out = data;
    return 0;
}

int echo_json(shmrpc_ctx *, shmrpc_str text, shmrpc_str *out)
{
    *out = text;
    return 0;
}

int add(shmrpc_ctx *, int64_t a, int64_t b, int64_t *out)
{
    *out = a + b;
    return 0;
}

int centroid(shmrpc_ctx *, echo_list_Point points, echo_Point *out)
{
    *out = echo_Point{};
    for (size_t i = 0; i < points.len; i++) {
        out->x += points.items[i].x / static_cast<double>(points.len);
        out->y += points.items[i].y / static_cast<double>(points.len);
    }
    return 0;
}

void on_signal(int)
{
    shmrpc_server_stop(server);
}

int serve(const char *addr)
{
    Echo_handlers handlers{};
    handlers.echo_raw = echo_raw;
    handlers.echo_json = echo_json;
    handlers.add = add;
    handlers.centroid = centroid;
    int rc = shmrpc_server_new(&server, nullptr);
    if (rc == 0) rc = shmrpc_server_register(server, &Echo_service, &handlers, nullptr);
    if (rc == 0) rc = shmrpc_server_listen(server, addr);
    if (rc == 0) {
        std::signal(SIGTERM, on_signal);
        rc = shmrpc_server_serve(server, 1);
    }
    if (rc != 0) std::fprintf(stderr, "echo-cxx: serve %s: %s\n", addr, shmrpc_errmsg());
    shmrpc_server_free(server);
    return rc == 0 ? 0 : 1;
}

int call(const char *addr)
{
    shmrpc_client *c = nullptr;
    int64_t sum = 0;
    int rc = shmrpc_client_new(&c, &Echo_service_info, nullptr);
    if (rc == 0) rc = shmrpc_client_connect(c, addr);
    if (rc == 0) rc = echo_add(c, 40, 2, &sum);
    if (rc == 0)
        std::printf("add(40, 2) = %lld\n", static_cast<long long>(sum));
    else
        std::fprintf(stderr, "echo-cxx: call %s: %s\n", addr, shmrpc_errmsg());
    shmrpc_client_free(c);
    return rc == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc == 3 && std::strcmp(argv[1], "serve") == 0) return serve(argv[2]);
    if (argc == 3 && std::strcmp(argv[1], "call") == 0) return call(argv[2]);
    std::fprintf(stderr, "usage: echo-cxx serve|call ADDRESS\n");
    return 2;
}
