/* SPDX-License-Identifier: MIT */
/* The echo example's client side: one call of each method, with the results printed. */
#include <string.h>

#include "echo_handlers.h"

static int failed(FILE *out, const char *what, int rc)
{
    fprintf(out, "%s failed: %s (%s)\n", what, shmrpc_strerror(rc), shmrpc_errmsg());
    return rc;
}

int echo_example_calls(shmrpc_client *c, FILE *out)
{
    const char msg[] = "hello, shmrpc";
    shmrpc_bytes raw;
    int rc = echo_echo_raw(c, shmrpc_bytes_of(msg, sizeof msg - 1), &raw);
    if (rc != 0) return failed(out, "echo_raw", rc);
    fprintf(out, "echo_raw(\"%s\") = \"%.*s\"\n", msg, (int)raw.len, (const char *)raw.ptr);

    shmrpc_str text;
    rc = echo_echo_json(c, SHMRPC_STR("gr\xc3\xbc\xc3\x9f dich"), &text);
    if (rc != 0) return failed(out, "echo_json", rc);
    fprintf(out, "echo_json(\"gr\xc3\xbc\xc3\x9f dich\") = \"%.*s\"\n", (int)text.len, text.ptr);

    int64_t sum;
    rc = echo_add(c, 40, 2, &sum);
    if (rc != 0) return failed(out, "add", rc);
    fprintf(out, "add(40, 2) = %lld\n", (long long)sum);

    const echo_Point pts[] = {
        {0, 0, {false, {NULL, 0}}}, {4, 0, {false, {NULL, 0}}}, {2, 3, {true, SHMRPC_STR("apex")}}};
    echo_Point mid;
    rc = echo_centroid(c, (echo_list_Point){pts, 3}, &mid);
    if (rc != 0) return failed(out, "centroid", rc);
    fprintf(out, "centroid((0,0), (4,0), (2,3)) = (%g, %g) \"%.*s\"\n", mid.x, mid.y,
            (int)mid.label.value.len, mid.label.value.ptr);

    rc = echo_add(c, INT64_MAX, 1, &sum);
    fprintf(out, "add(INT64_MAX, 1) -> %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
    return rc == SHMRPC_EINVAL ? 0 : (rc ? rc : SHMRPC_EPROTO);
}
