/* SPDX-License-Identifier: MIT */
/* shmrpc_strerror, shmrpc_status_name and shmrpc_version. */
#include <errno.h>
#include <string.h>

#include "unit.h"

static void every_code_has_text(void **state)
{
    (void)state;
    for (int rc = SHMRPC_ECANCELLED; rc <= SHMRPC_OK; rc++) {
        const char *s = shmrpc_strerror(rc);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        assert_string_not_equal(s, "unknown error");
    }
    assert_string_equal(shmrpc_strerror(SHMRPC_OK), "success");
    assert_string_equal(shmrpc_strerror(SHMRPC_ETOOBIG), "message too large");
    assert_string_equal(shmrpc_strerror(SHMRPC_EUNAVAIL), "unavailable");
}

/* Each status's name is status.h's, and no two share one. */
static void every_code_has_a_name(void **state)
{
    (void)state;
    for (int rc = SHMRPC_ECANCELLED; rc <= SHMRPC_OK; rc++) {
        const char *s = shmrpc_status_name(rc);
        assert_non_null(s);
        assert_int_equal(strncmp(s, "SHMRPC_", 7), 0);
        assert_string_not_equal(s, "SHMRPC_EUNKNOWN");
        for (int other = SHMRPC_ECANCELLED; other < rc; other++)
            assert_string_not_equal(s, shmrpc_status_name(other));
    }
    assert_string_equal(shmrpc_status_name(SHMRPC_OK), "SHMRPC_OK");
    assert_string_equal(shmrpc_status_name(SHMRPC_EINVAL), "SHMRPC_EINVAL");
    assert_string_equal(shmrpc_status_name(SHMRPC_EOWNERDEAD), "SHMRPC_EOWNERDEAD");
    assert_string_equal(shmrpc_status_name(SHMRPC_ESTOLEN), "SHMRPC_ESTOLEN");
    assert_string_equal(shmrpc_status_name(SHMRPC_ECORRUPT), "SHMRPC_ECORRUPT");
    assert_string_equal(shmrpc_status_name(SHMRPC_ESYS(ENOENT)), "SHMRPC_ESYS");
    assert_string_equal(shmrpc_status_name(SHMRPC_ECANCELLED - 1), "SHMRPC_EUNKNOWN");
    assert_string_equal(shmrpc_status_name(SHMRPC_ECUT), "SHMRPC_ECUT");
    assert_string_equal(shmrpc_status_name(SHMRPC_ECANCELLED), "SHMRPC_ECANCELLED");
    assert_string_equal(shmrpc_status_name(1), "SHMRPC_EUNKNOWN");
    assert_string_equal(shmrpc_status_name(INT32_MIN), "SHMRPC_ESYS");
}

static void os_errors_keep_errno(void **state)
{
    (void)state;
    int rc = SHMRPC_ESYS(ENOENT);
    assert_true(SHMRPC_IS_ESYS(rc));
    assert_int_equal(SHMRPC_ESYSERR - rc, ENOENT);
    assert_string_equal(shmrpc_strerror(rc), "No such file or directory");
    assert_string_equal(shmrpc_strerror(SHMRPC_ESYS(EAGAIN)), "Resource temporarily unavailable");
    assert_false(SHMRPC_IS_ESYS(SHMRPC_EOWNERDEAD));
}

static void unknown_codes(void **state)
{
    (void)state;
    assert_string_equal(shmrpc_strerror(1), "unknown error");
    assert_string_equal(shmrpc_strerror(12345), "unknown error");
    assert_string_equal(shmrpc_strerror(SHMRPC_ECANCELLED - 1), "unknown error");
    assert_string_equal(shmrpc_strerror(-1000), "unknown error");
    assert_string_equal(shmrpc_strerror(SHMRPC_ESYSERR), "unknown error");
    assert_string_equal(shmrpc_strerror(SHMRPC_ESYS(100000)), "unknown error");
    assert_string_equal(shmrpc_strerror(INT32_MIN), "unknown error");
}

static void version(void **state)
{
    (void)state;
    assert_string_equal(shmrpc_version(), SHMRPC_VERSION_STRING);
    assert_int_equal(SHMRPC_VERSION, 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_code_has_text),
        cmocka_unit_test(every_code_has_a_name),
        cmocka_unit_test(os_errors_keep_errno),
        cmocka_unit_test(unknown_codes),
        cmocka_unit_test(version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
