/* SPDX-License-Identifier: MIT */
/* shmrpc_buf: growth, reuse after clear, the sticky error, the maximum; and the message
 * buffers built on it. */
#include <string.h>

#include <msgpack.h>

#include "unit.h"

static void grows_and_keeps_bytes(void **state)
{
    (void)state;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    assert_null(b.data);
    for (int i = 0; i < 10000; i++) {
        uint8_t v = (uint8_t)i;
        assert_int_equal(shmrpc_buf_append(&b, &v, 1), 0);
    }
    assert_int_equal(b.len, 10000);
    assert_true(b.cap >= 10000);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(b.data[i], (uint8_t)i);
    shmrpc_buf_destroy(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
}

static void clear_keeps_memory(void **state)
{
    (void)state;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    char chunk[300];
    memset(chunk, 'a', sizeof chunk);
    assert_int_equal(shmrpc_buf_append(&b, chunk, sizeof chunk), 0);
    uint8_t *data = b.data;
    size_t cap = b.cap;
    shmrpc_buf_clear(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(shmrpc_buf_append(&b, chunk, sizeof chunk), 0);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.cap, cap);
    shmrpc_buf_destroy(&b);
}

static void zero_length_append(void **state)
{
    (void)state;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    assert_int_equal(shmrpc_buf_append(&b, NULL, 0), 0);
    assert_int_equal(b.len, 0);
    shmrpc_buf_destroy(&b);
}

static void max_is_sticky_too_big(void **state)
{
    (void)state;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    b.max = 100;
    char chunk[60] = {0};
    assert_int_equal(shmrpc_buf_append(&b, chunk, 60), 0);
    assert_true(b.cap <= 100);
    assert_int_equal(shmrpc_buf_append(&b, chunk, 40), 0); /* exactly max */
    assert_int_equal(b.len, 100);
    assert_int_equal(shmrpc_buf_append(&b, chunk, 1), SHMRPC_ETOOBIG);
    assert_int_equal(b.err, SHMRPC_ETOOBIG);
    /* Sticky: even an append that would fit does nothing until the next clear. */
    assert_int_equal(shmrpc_buf_append(&b, chunk, 0), SHMRPC_ETOOBIG);
    assert_int_equal(b.len, 100);
    shmrpc_buf_clear(&b);
    assert_int_equal(b.err, 0);
    assert_int_equal(shmrpc_buf_append(&b, chunk, 10), 0);
    shmrpc_buf_destroy(&b);
}

static void grow_overflow(void **state)
{
    (void)state;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    assert_int_equal(shmrpc_buf_append(&b, "abc", 3), 0);
    assert_int_equal(shmrpc__buf_grow(&b, SIZE_MAX - 1), SHMRPC_ETOOBIG);
    assert_int_equal(b.err, SHMRPC_ETOOBIG);
    /* No append goes through until a clear. */
    assert_int_equal(shmrpc_buf_append(&b, "d", 1), SHMRPC_ETOOBIG);
    assert_int_equal(b.len, 3);
    shmrpc_buf_clear(&b);
    assert_int_equal(shmrpc_buf_append(&b, "d", 1), 0);
    shmrpc_buf_destroy(&b);
}

static void msgpack_writes_into_buf(void **state)
{
    (void)state;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    b.max = 6; /* set before the first append: the capacity never grows past it */
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, shmrpc_buf_msgpack_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str_with_body(&pk, "hi", 2);
    assert_int_equal(b.err, 0);
    assert_memory_equal(b.data, "\x92\x01\xa2hi", 5);
    assert_int_equal(b.len, 5);
    assert_int_not_equal(msgpack_pack_str_with_body(&pk, "long", 4), 0);
    assert_int_equal(b.err, SHMRPC_ETOOBIG);
    shmrpc_buf_destroy(&b);
}

static void messages(void **state)
{
    (void)state;
    shmrpc_buf m;
    shmrpc_buf_init(&m);
    assert_string_equal(shmrpc__msg_get(&m), "");
    shmrpc__msg_set(&m, "a %d", 1);
    shmrpc__msg_append(&m, ", b %s", "two");
    assert_string_equal(shmrpc__msg_get(&m), "a 1, b two");
    char long_text[5000];
    memset(long_text, 'z', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    shmrpc__msg_set(&m, "%s!", long_text);
    assert_int_equal(strlen(shmrpc__msg_get(&m)), 5000);
    assert_int_equal(shmrpc__msg_get(&m)[4999], '!');
    shmrpc__msg_clear(&m);
    assert_string_equal(shmrpc__msg_get(&m), "");
    /* Capped: a peer cannot make us hold an endless message. */
    for (int i = 0; i < 40; i++)
        shmrpc__msg_append(&m, "%s", long_text);
    assert_true(strlen(shmrpc__msg_get(&m)) < (size_t)(64 << 10));
    assert_true(strlen(shmrpc__msg_get(&m)) > (size_t)(60 << 10));
    shmrpc_buf_destroy(&m);
}

/* shmrpc_buf_appendf: short and long texts whole (the programs' messages name paths,
 * which a cut would hide), a NUL after them, max honoured to the byte, errors sticky. */
static void appendf(void **state)
{
    (void)state;
    shmrpc_buf b;
    shmrpc_buf_init(&b);
    assert_int_equal(shmrpc_buf_appendf(&b, "%s=%d", "a", 1), 0);
    assert_int_equal(b.len, 3);
    assert_string_equal((const char *)b.data, "a=1");
    char long_text[5000];
    memset(long_text, 'p', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    assert_int_equal(shmrpc_buf_appendf(&b, ";%s!", long_text), 0);
    assert_int_equal(b.len, 3 + 1 + 4999 + 1);
    assert_int_equal(b.data[b.len - 1], '!');
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(shmrpc_buf_appendf(&b, "%s", ""), 0);
    assert_int_equal(b.len, 5004);
    shmrpc_buf_destroy(&b);

    /* Exactly max bytes of text fit (without their NUL); one more does not, and stays out. */
    shmrpc_buf_init(&b);
    b.max = 8;
    assert_int_equal(shmrpc_buf_appendf(&b, "%s", "1234"), 0);
    assert_int_equal(shmrpc_buf_appendf(&b, "%d", 5678), 0);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "12345678", 8);
    assert_int_equal(shmrpc_buf_appendf(&b, "x"), SHMRPC_ETOOBIG);
    assert_int_equal(b.len, 8);
    assert_int_equal(shmrpc_buf_appendf(&b, "%s", ""), SHMRPC_ETOOBIG); /* sticky */
    shmrpc_buf_clear(&b);
    assert_int_equal(shmrpc_buf_appendf(&b, "%s", "123456789"), SHMRPC_ETOOBIG);
    assert_int_equal(b.len, 0);
    shmrpc_buf_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grows_and_keeps_bytes),
        cmocka_unit_test(clear_keeps_memory),
        cmocka_unit_test(zero_length_append),
        cmocka_unit_test(max_is_sticky_too_big),
        cmocka_unit_test(grow_overflow),
        cmocka_unit_test(msgpack_writes_into_buf),
        cmocka_unit_test(messages),
        cmocka_unit_test(appendf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
