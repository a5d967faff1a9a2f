/* SPDX-License-Identifier: MIT */
/* speedy-client: a C client generated from speedy_kinds.svc, the .svc that
 * python3 -m shmrpc.svc prints for the Python class speedy_kinds.Speedy, calling each of its
 * methods served from Python (test_speedysvc.py). The @pickle method's bytes are passed
 * through: a request Python pickled (the list [21]), and its answer printed in hex.
 *   speedy-client ADDRESS */
#include <stdio.h>

#include "speedy_kinds.h"

static int failed(const char *what, int rc)
{
    fprintf(stderr, "speedy-client: %s: %s: %s\n", what, shmrpc_strerror(rc), shmrpc_errmsg());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: speedy-client ADDRESS\n");
        return 2;
    }
    shmrpc_client *c = NULL;
    int rc = shmrpc_client_new(&c, &Speedy_service_info, NULL);
    if (rc == 0) rc = shmrpc_client_connect(c, argv[1]);
    if (rc != 0) {
        rc = failed("connect", rc);
        shmrpc_client_free(c);
        return rc;
    }
    int64_t sum;
    if ((rc = speedy_add(c, 40, 2, &sum)) != 0) goto fail;
    printf("add %lld\n", (long long)sum);
    shmrpc_str hello;
    if ((rc = speedy_greet(c, SHMRPC_STR("C"), &hello)) != 0) goto fail;
    printf("greet %.*s\n", (int)hello.len, hello.ptr);
    const speedy_Point pts[] = {{0, 0}, {4, 2}};
    speedy_Point mid;
    if ((rc = speedy_centroid(c, (speedy_list_Point){pts, 2}, &mid)) != 0) goto fail;
    printf("centroid %g %g\n", mid.x, mid.y);
    static const char pickled[] = "\x80\x02]q\x00K\x15"
                                  "a."; /* pickle.dumps([21], 2) */
    shmrpc_bytes twice;
    if ((rc = speedy_twice(c, shmrpc_bytes_of(pickled, sizeof pickled - 1), &twice)) != 0)
        goto fail;
    printf("twice ");
    for (size_t i = 0; i < twice.len; i++)
        printf("%02x", ((const unsigned char *)twice.ptr)[i]);
    printf("\n");
    shmrpc_client_free(c);
    return 0;
fail:
    rc = failed("call", rc);
    shmrpc_client_free(c);
    return rc;
}
