/* SPDX-License-Identifier: MIT */
/* libFuzzer target: request bodies for every method of tests/codec/types.svc, decoded by
 * the generated glue on the inproc dispatch path. The first byte picks the method. A bad
 * body may cost its call a status; anything else (a crash, a leak, a hang, another
 * status) is a finding. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "types_handlers.h"

static shmrpc_server *server;
static shmrpc_client *client;

static void setup(void)
{
    if (shmrpc_server_new(&server, NULL) != 0 ||
        shmrpc_server_register(server, &Types_service, &types_identity_handlers, NULL) != 0 ||
        shmrpc_server_listen(server, "inproc://fuzz-types") != 0 ||
        shmrpc_client_new(&client, &Types_service_info, NULL) != 0 ||
        shmrpc_client_connect(client, "inproc://fuzz-types") != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (client == NULL) setup();
    if (size < 1) return 0;
    shmrpc_buf *req = shmrpc_client_request(client);
    if (shmrpc_buf_append(req, data + 1, size - 1) != 0) abort();
    shmrpc_bytes resp;
    uint32_t method = data[0] % TYPES_METHODS;
    int before = types_handler_calls;
    int rc = shmrpc_client_call(client, method, &resp);
    /* A body that does not decode is refused with EINVAL before any handler runs. One
     * that decodes reaches its identity handler, whose result must encode: only
     * narrow() refuses arguments it did not expect. */
    bool ran = types_handler_calls != before;
    if (!ran && rc != SHMRPC_EINVAL) abort();
    if (ran && rc != 0 && !(method == TYPES_METHOD_NARROW && rc == SHMRPC_EINVAL)) abort();
    return 0;
}
