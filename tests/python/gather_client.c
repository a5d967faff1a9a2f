/* SPDX-License-Identifier: MIT */
/* gather-client: a C client of tests/stream/gather.svc that streams both ways with a server
 * in Python (test_serve.py): doubled's values 0 .. N-1 sent one at a time, each answer
 * received before the next send, then the end. Prints "N doubled" when every value came back
 * doubled, in order, and the stream ended after them.
 *   gather-client ADDRESS N */
#include <stdio.h>
#include <stdlib.h>

#include "gather.h"

static int failed(const char *what, int rc)
{
    fprintf(stderr, "gather-client: %s: %s: %s\n", what, shmrpc_strerror(rc), shmrpc_errmsg());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: gather-client ADDRESS N\n");
        return 2;
    }
    int64_t n = atoll(argv[2]), v;
    shmrpc_client *c = NULL;
    shmrpc_stream *st = NULL;
    int rc = shmrpc_client_new(&c, &Gather_service_info, NULL);
    if (rc == 0) shmrpc_client_set_timeout(c, 30000);
    if (rc == 0) rc = shmrpc_client_connect(c, argv[1]);
    if (rc == 0) rc = gather_doubled_open(c, &st);
    if (rc != 0) {
        rc = failed("open", rc);
        shmrpc_client_free(c);
        return rc;
    }
    for (int64_t i = 0; i < n && rc == 0; i++) {
        if ((rc = gather_doubled_send(st, i)) != 0) {
            rc = failed("send", rc);
        } else if ((rc = gather_doubled_recv(st, &v)) != 1) {
            rc = failed("recv", rc);
        } else if (v != 2 * i) {
            fprintf(stderr, "gather-client: %lld came where %lld was due\n", (long long)v,
                    (long long)(2 * i));
            rc = 1;
        } else {
            rc = 0;
        }
    }
    if (rc == 0 && (rc = gather_doubled_done(st)) != 0) rc = failed("done", rc);
    if (rc == 0 && (rc = gather_doubled_recv(st, &v)) != 0)
        rc = rc == 1 ? failed("an item after the end", SHMRPC_EPROTO) : failed("the end", rc);
    if (rc == 0) printf("%lld doubled\n", (long long)n);
    shmrpc_stream_close(st);
    shmrpc_client_free(c);
    return rc;
}
