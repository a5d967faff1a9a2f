/* SPDX-License-Identifier: MIT */
/* Generated msgpack and raw paths do not allocate once warm: the echo example's stubs,
 * invokers and handlers, called 10,000 times over inproc://, call no malloc. (@json
 * methods allocate inside the JSON library; they are the convenient path, not the fast.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "alloc_count.h"
#include "echo_handlers.h"

static void generated_calls_do_not_allocate(void **state)
{
    (void)state;
    shmrpc_server *s;
    shmrpc_client *c;
    assert_int_equal(shmrpc_server_new(&s, NULL), 0);
    assert_int_equal(shmrpc_server_register(s, &Echo_service, &echo_example_handlers, NULL), 0);
    assert_int_equal(shmrpc_server_listen(s, "inproc://echo-nomalloc"), 0);
    assert_int_equal(shmrpc_client_new(&c, &Echo_service_info, NULL), 0);
    assert_int_equal(shmrpc_client_connect(c, "inproc://echo-nomalloc"), 0);

    static echo_Point pts[64];
    for (int i = 0; i < 64; i++)
        pts[i] = (echo_Point){i, -i, {i % 2 == 0, SHMRPC_STR("a label of some length")}};
    static uint8_t data[4096];
    int64_t sum;
    echo_Point mid;
    shmrpc_bytes raw;
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            assert_true(alloc_count() > 0); /* the counting sees the runtime */
            alloc_count_reset();
        }
        for (int i = 0; i < (round ? 10000 : 4096); i++) { /* warm-up: every size once */
            assert_int_equal(echo_add(c, i, 2, &sum), 0);
            assert_int_equal(sum, i + 2);
            assert_int_equal(echo_centroid(c, (echo_list_Point){pts, 1 + (size_t)i % 64}, &mid), 0);
            assert_true(mid.label.has);
            assert_int_equal(echo_echo_raw(c, shmrpc_bytes_of(data, (size_t)i % sizeof data), &raw),
                             0);
        }
    }
    assert_int_equal(alloc_count(), 0);
    shmrpc_client_free(c);
    shmrpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(generated_calls_do_not_allocate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
