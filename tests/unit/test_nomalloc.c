/* SPDX-License-Identifier: MIT */
/* The fast path does not allocate: once a client and its connection have warmed up,
 * calls reuse their buffers and arenas. */
#include <stdlib.h>

#include "alloc_count.h"
#include "calc_service.h"
#include "unit.h"

static void calls_do_not_allocate(void **state)
{
    (void)state;
    shmrpc_server *s;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &calc_service, &calc_default_handlers, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s, "inproc://nomalloc"), 0);
    shmrpc_client *c;
    assert_int_equal(shmrpc_client_new(&c, &calc_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(c, "inproc://nomalloc"), 0);

    static uint8_t data[5000];
    int64_t sum;
    shmrpc_bytes out;
    /* Warm up: buffers grow to their working size, failures size their messages. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(calc_add(c, i, 1, &sum), 0);
        assert_int_equal(calc_echo(c, shmrpc_bytes_of(data, sizeof data), &out), 0);
        assert_int_equal(calc_fail(c), SHMRPC_EHANDLER);
    }
    assert_true(alloc_count() > 0); /* the wrapping sees the runtime's allocations */
    alloc_count_reset();
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(calc_add(c, i, 1, &sum), 0);
        assert_int_equal(calc_echo(c, shmrpc_bytes_of(data, (size_t)i % sizeof data), &out), 0);
        if (i % 100 == 0) assert_int_equal(calc_fail(c), SHMRPC_EHANDLER);
    }
    assert_int_equal(alloc_count(), 0);
    shmrpc_client_free(c);
    shmrpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(calls_do_not_allocate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
