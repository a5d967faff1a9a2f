/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the dynamic codec (shmrpc/dynamic.h) on any bytes, against the
 * generated codec of tests/dynamic/every.svc over inproc://. The first byte picks a method,
 * the second what the rest is:
 * - even: a response body, read back to JSON, which must then be JSON that jansson reads
 *   and that nests at most SHMRPC_JSON_MAX_DEPTH deep (it goes to the page's script);
 * - odd: JSON arguments; whatever the dynamic codec encodes, the generated server must
 *   decode (its handlers hand the value back), and the response must read back to JSON.
 * Anything else (a crash, a leak, a hang, a refusal on either side) is a finding. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <shmrpc/dynamic.h>

#include "every_handlers.h"

static shmrpc_server *server;
static shmrpc_dyn *d;
static shmrpc_buf out, back;

static void setup(void)
{
    shmrpc_buf_init(&out);
    shmrpc_buf_init(&back);
    if (shmrpc_server_new(&server, NULL) != 0 ||
        shmrpc_server_register(server, &Every_service, &every_identity, NULL) != 0 ||
        shmrpc_server_listen(server, "inproc://fuzz-dynamic") != 0 ||
        shmrpc_dyn_new(&d, NULL) != 0 || shmrpc_dyn_connect(d, "inproc://fuzz-dynamic") != 0)
        abort();
}

/* out holds JSON that jansson reads (integers above INT64_MAX as reals) within the bound. */
static void check_json(void)
{
    if (shmrpc_json_check_depth(out.data, out.len, SHMRPC_JSON_MAX_DEPTH) != 0) abort();
    json_t *v = json_loadb((const char *)out.data, out.len,
                           JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL);
    if (v == NULL) abort();
    json_decref(v);
}

/* What decode_result printed, encode_result reads back (a typed queue's message goes out
 * and in so: docs/dynamic.md), but for duplicate keys (docs/shmrpcctl.md, "Not yet") and
 * a u64 above INT64_MAX beside a string that starts with a NUL (docs/dynamic.md). */
static void check_reads_back(const shmrpc_dyn_sig *sig)
{
    shmrpc_buf_clear(&back);
    if (shmrpc_dyn_encode_result(sig, (const char *)out.data, out.len, &back) == 0) return;
    const char *why = shmrpc_errmsg();
    shmrpc_buf_append(&out, "", 1);
    if (strstr(why, "duplicate object key") == NULL &&
        (strstr(why, "too big integer") == NULL || strstr((char *)out.data, "\"\\u0000") == NULL)) {
        fprintf(stderr, "%s\n", shmrpc_errmsg());
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (d == NULL) setup();
    if (size < 2) return 0;
    const shmrpc_service_info *info = shmrpc_dyn_info(d);
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    if (shmrpc_dyn_method(d, info->methods[data[0] % info->n_methods].name, &m, &sig) != 0) abort();
    const uint8_t *body = data + 2;
    size_t n = size - 2;
    shmrpc_buf_clear(&out);
    if (data[1] % 2 == 0) {
        if (shmrpc_dyn_decode_result(sig, body, n, &out) == 0) {
            check_json();
            check_reads_back(sig);
        }
        return 0;
    }
    shmrpc_client *c = shmrpc_dyn_client(d);
    if (shmrpc_dyn_encode_args(sig, (const char *)body, n, shmrpc_client_request(c)) != 0) return 0;
    shmrpc_bytes resp;
    if (shmrpc_client_call(c, m->id, &resp) != 0) abort();
    if (shmrpc_dyn_decode_result(sig, resp.ptr, resp.len, &out) != 0) abort();
    check_json();
    return 0;
}
