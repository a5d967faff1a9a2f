/* SPDX-License-Identifier: MIT */
/* Addresses that leave out what the .svc says (issue 15, speedysvc's connect(S, 'shm://')):
 * shm:// alone connects to the .svc's `name`, tcp://HOST and tcp:// alone to its `port`,
 * with a real server on both transports on a thread of this process; a descriptor without
 * them is refused with a message that says what to write. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "calc_service.h"
#include "port.h"
#include "unit.h"

static char name[64];
static shmrpc_service_info info; /* calc's, with a name and port of this run's */
static shmrpc_service svc;
static shmrpc_server *srv[2]; /* one server per address: shm://, tcp:// */
static pthread_t thread[2];
static int started;

static void *serve(void *arg)
{
    shmrpc_server_serve(arg, 0);
    return NULL;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        if (i < started) {
            shmrpc_server_stop(srv[i]);
            pthread_join(thread[i], NULL);
        }
        shmrpc_server_free(srv[i]); /* removes its segments */
        srv[i] = NULL;
    }
    started = 0;
    return 0;
}

static int setup(void **state)
{
    snprintf(name, sizeof name, "addr-test-%d", (int)getpid());
    info = calc_service_info;
    info.svc_name = name;
    info.port = (uint16_t)test_free_port();
    svc = calc_service;
    svc.info = &info;
    char addr[2][96];
    snprintf(addr[0], sizeof addr[0], "shm://%s", name);
    snprintf(addr[1], sizeof addr[1], "tcp://127.0.0.1:%u", (unsigned)info.port);
    for (int i = 0; i < 2; i++) {
        if (shmrpc_server_new(&srv[i], NULL) ||
            shmrpc_server_register(srv[i], &svc, &calc_default_handlers, NULL) ||
            shmrpc_server_listen(srv[i], addr[i])) {
            fprintf(stderr, "server at %s: %s\n", addr[i], shmrpc_errmsg());
            teardown(state);
            return -1;
        }
        if (pthread_create(&thread[i], NULL, serve, srv[i]) != 0) {
            teardown(state);
            return -1;
        }
        started++;
    }
    return 0;
}

static void connect_and_add(const shmrpc_service_info *with, const char *addr)
{
    shmrpc_client_opts o;
    shmrpc_client_opts_init(&o);
    o.timeout_ms = 10000;
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, with, &o), 0);
    int rc = shmrpc_client_connect(c, addr);
    if (rc) fail_msg("connect %s: %s: %s", addr, shmrpc_strerror(rc), shmrpc_errmsg());
    int64_t sum = 0;
    rc = calc_add(c, 40, 2, &sum);
    if (rc) fail_msg("add over %s: %s: %s", addr, shmrpc_strerror(rc), shmrpc_errmsg());
    assert_int_equal(sum, 42);
    shmrpc_client_free(c);
}

static void shm_alone_is_the_svc_name(void **state)
{
    (void)state;
    connect_and_add(&info, "shm://");
}

static void tcp_host_takes_the_svc_port(void **state)
{
    (void)state;
    connect_and_add(&info, "tcp://127.0.0.1");
    connect_and_add(&info, "tcp://localhost");
    connect_and_add(&info, "tcp://");
    char port_only[32]; /* tcp://PORT, as before: on 127.0.0.1 */
    snprintf(port_only, sizeof port_only, "tcp://%u", (unsigned)info.port);
    connect_and_add(&info, port_only);
}

static void refused(const shmrpc_service_info *with, const char *addr, const char *why)
{
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, with, NULL), 0);
    assert_int_equal(shmrpc_client_connect(c, addr), SHMRPC_EINVAL);
    if (!strstr(shmrpc_errmsg(), why)) fail_msg("%s said '%s'", addr, shmrpc_errmsg());
    shmrpc_client_free(c);
}

static void without_name_or_port_it_says_what_to_write(void **state)
{
    (void)state;
    shmrpc_service_info bare = info;
    bare.svc_name = NULL;
    bare.port = 0;
    refused(&bare, "shm://", "shm:// names no service, and the .svc of Calc has no `name`");
    refused(&bare, "tcp://127.0.0.1", "tcp://127.0.0.1 names no port");
    refused(&bare, "tcp://[::1]", "write tcp://HOST:PORT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shm_alone_is_the_svc_name),
        cmocka_unit_test(tcp_host_takes_the_svc_port),
        cmocka_unit_test(without_name_or_port_it_says_what_to_write),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
