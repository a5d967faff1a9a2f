/* SPDX-License-Identifier: MIT */
/* gather-server ADDRESS: serves gather.svc's Gather at ADDRESS until SIGTERM, with the tests'
 * handlers (gather_handlers.c), for the tests of what calls client streams from outside C
 * (ctl_stream_test.sh: shmrpcctl call). */
#include "gather.h"
#include "gather_handlers.h"
#include "serve_until_term.h"

int main(int argc, char **argv)
{
    return test_serve_until_term("gather-server", argc, argv, &Gather_service,
                                 &test_gather_handlers);
}
