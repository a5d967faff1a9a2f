/* SPDX-License-Identifier: MIT */
/* A client of Calc built from another .svc than mismatch_test's server: calc_v1.svc (with
 * CALC_V1) or calc_changed.svc. Two builds of one service give the same C names, so they
 * cannot link into one program; each is a program of its own, as it would be in use.
 *
 * Usage: calc_client ADDR. Prints the status of connecting to ADDR and then
 * shmrpc_errmsg(), a line each; once connected it calls every method of its build
 * and prints "calls ok", or the call that went wrong. Exits 0 when connected and every
 * call worked, 1 when connect failed, 2 when a call did. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#ifdef CALC_V1
#include "calc_v1.h"
#else
#include "calc_changed.h"
#endif

/* True when a call returned 0 and the right result; else prints why. */
static bool check(const char *what, int rc, bool right)
{
    if (rc == 0 && right) return true;
    printf("%s: %s: %s\n", what, rc ? shmrpc_strerror(rc) : "wrong result", shmrpc_errmsg());
    return false;
}

#ifdef CALC_V1
static bool calls(shmrpc_client *c)
{
    int64_t r = 0;
    int rc = calc_add(c, 40, 2, &r);
    if (!check("add", rc, r == 42)) return false;
    rc = calc_mul(c, 6, 7, &r); /* its id is 1 here and 2 on a v2 server */
    if (!check("mul", rc, r == 42)) return false;
    return check("reset", calc_reset(c), true);
}
#else
/* What this build expects; a v2 server should never let it get this far. */
static bool calls(shmrpc_client *c)
{
    double d = 0;
    int rc = calc_add(c, 40.5, 1.5, &d);
    if (!check("add", rc, d == 42.0)) return false;
    int64_t r = 0;
    rc = calc_div(c, 84, 2, &r);
    return check("div", rc, r == 42);
}
#endif

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s ADDR\n", argv[0]);
        return 64;
    }
    alarm(30); /* a watchdog; mismatch_test kills it sooner */
    shmrpc_client *c;
    int rc = shmrpc_client_new(&c, &Calc_service_info, NULL);
    if (rc != 0) {
        printf("%d\n%s\n", rc, shmrpc_strerror(rc));
        return 1;
    }
    rc = shmrpc_client_connect(c, argv[1]);
    printf("%d\n%s\n", rc, shmrpc_errmsg());
    int status = rc != 0 ? 1 : !calls(c) ? 2 : 0;
    if (status == 0) printf("calls ok\n");
    shmrpc_client_free(c);
    return status;
}
