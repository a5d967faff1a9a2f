/* SPDX-License-Identifier: MIT */
/* The hybrid wait's edges (runtime/src/core/wait.c), decided by status, never by time: the
 * options read from the environment (a bad SHMRPC_SPIN_NS keeps the default), a deadline
 * computed once and never overflowing, a count that never goes below 0, and a wait that
 * returns 0 for a word that changed, also when the change came while the deadline
 * passed, and SHMRPC_ETIMEDOUT only for one that did not; a second word that changes just
 * before the sleep ends the wait unslept. */
#include <limits.h>
#include <stdlib.h>
#include <time.h>

#include "unit.h"
#include "core/wait.h"

static void options_from_the_environment(void **state)
{
    (void)state;
    const struct {
        const char *spin;
        int64_t want;
    } spins[] = {
        {NULL, SHMRPC_DEFAULT_SPIN_NS},
        {"", SHMRPC_DEFAULT_SPIN_NS},
        {"0", 0},
        {"1234", 1234},
        {"12x", SHMRPC_DEFAULT_SPIN_NS},
        {"-5", SHMRPC_DEFAULT_SPIN_NS},
        {"99999999999999999999999", SHMRPC_DEFAULT_SPIN_NS}, /* ERANGE */
    };
    for (size_t i = 0; i < sizeof spins / sizeof *spins; i++) {
        if (spins[i].spin)
            setenv("SHMRPC_SPIN_NS", spins[i].spin, 1);
        else
            unsetenv("SHMRPC_SPIN_NS");
        shmrpc_wait_opts o;
        shmrpc_wait_opts_init(&o);
        if (o.spin_ns != spins[i].want)
            fail_msg("SHMRPC_SPIN_NS=%s: %lld", spins[i].spin ? spins[i].spin : "(unset)",
                     (long long)o.spin_ns);
    }
    unsetenv("SHMRPC_SPIN_NS");
    const struct {
        const char *mode;
        shmrpc_wait_mode want;
    } modes[] = {
        {"spin", SHMRPC_WAIT_SPIN},         {"sleep", SHMRPC_WAIT_SLEEP},
        {"adaptive", SHMRPC_WAIT_ADAPTIVE}, {"fast", SHMRPC_WAIT_ADAPTIVE},
        {NULL, SHMRPC_WAIT_ADAPTIVE},
    };
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        if (modes[i].mode)
            setenv("SHMRPC_WAIT", modes[i].mode, 1);
        else
            unsetenv("SHMRPC_WAIT");
        shmrpc_wait_opts o;
        shmrpc_wait_opts_init(&o);
        assert_int_equal(o.mode, modes[i].want);
        assert_int_equal(o.spin_ns, SHMRPC_DEFAULT_SPIN_NS);
    }
    unsetenv("SHMRPC_WAIT");
}

/* A deadline is computed once, from the first now it is given; an infinite one, or one so
 * far off that now plus it would overflow, is INT64_MAX. */
static void deadlines_once_and_without_overflow(void **state)
{
    (void)state;
    shmrpc__deadline d = {0, 250};
    assert_int_equal(shmrpc__deadline_at(&d, 1000), 1000 + 250 * 1000000LL);
    assert_int_equal(shmrpc__deadline_at(&d, 5000), 1000 + 250 * 1000000LL);
    shmrpc__deadline never = {0, SHMRPC_TIMEOUT_INFINITE};
    assert_int_equal(shmrpc__deadline_at(&never, 1000), INT64_MAX);
    shmrpc__deadline far = {0, INT64_MAX / 1000};
    assert_int_equal(shmrpc__deadline_at(&far, shmrpc__now_ns()), INT64_MAX);
    shmrpc__deadline just = {0, (INT64_MAX - 2000000000LL) / 1000000};
    assert_true(shmrpc__deadline_at(&just, 1000000000LL) > 0); /* fits: no overflow either */
}

static void counts_stop_at_zero(void **state)
{
    (void)state;
    _Atomic uint32_t n = 2;
    shmrpc__count_down(&n);
    assert_int_equal(n, 1);
    shmrpc__count_down(&n);
    shmrpc__count_down(&n);
    assert_int_equal(n, 0);
}

/* The check of a sleeping waiter changes the word, then lets the deadline pass: the
 * change is what the wait reports. */
typedef struct late_change {
    shmrpc__futex *f;
    int64_t deadline;
    int checks;
} late_change;

static int change_then_run_out(void *arg)
{
    late_change *l = arg;
    l->checks++;
    atomic_fetch_add(&l->f->word, 1);
    while (shmrpc__now_ns() < l->deadline) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int refuse(void *arg)
{
    (void)arg;
    return SHMRPC_EPEERDIED;
}

static void waits_end_by_status(void **state)
{
    (void)state;
    shmrpc__futex f = {0};
    /* No options (ADAPTIVE and its default spin): a word changed already, and one that
     * does not change before the deadline. */
    shmrpc__waiter plain = {0};
    atomic_store(&f.word, 1);
    assert_int_equal(shmrpc__wait_while(&f, 0, shmrpc__now_ns() + 1000000000LL, &plain), 0);
    assert_int_equal(shmrpc__wait_while(&f, 1, shmrpc__now_ns() + 20 * 1000000LL, &plain),
                     SHMRPC_ETIMEDOUT);
    assert_int_equal(atomic_load(&f.word), 1);
    /* Asleep: the check's status ends the wait. */
    shmrpc_wait_opts sleep_only;
    shmrpc_wait_opts_init(&sleep_only);
    sleep_only.mode = SHMRPC_WAIT_SLEEP;
    shmrpc__waiter dies = {.opts = &sleep_only, .check = refuse};
    assert_int_equal(shmrpc__wait_while(&f, 1, shmrpc__now_ns() + 1000000000LL, &dies),
                     SHMRPC_EPEERDIED);
    /* Asleep: the word changes during the check that outlasts the deadline. */
    late_change l = {&f, shmrpc__now_ns() + 20 * 1000000LL, 0};
    shmrpc__waiter late = {.opts = &sleep_only, .check = change_then_run_out, .check_arg = &l};
    assert_int_equal(shmrpc__wait_while(&f, 1, l.deadline, &late), 0);
    assert_int_equal(l.checks, 1);
    assert_int_equal(atomic_load(&f.word), 2);
}

/* The second word (a stream's next record) changes after the wait's last look but before it
 * sleeps, as a writer's that saw no sleeper yet: the wait ends without sleeping, since it looks
 * at the second word again once it counted itself asleep (the writer wakes sleepers only). */
static int change_also(void *arg)
{
    atomic_store((_Atomic uint32_t *)arg, 7);
    return 0;
}

static void a_second_word_that_changes_before_the_sleep(void **state)
{
    (void)state;
    shmrpc__futex f = {0};
    _Atomic uint32_t next = 0;
    _Atomic uint64_t asleep = 0;
    uint64_t timer_ends = 0;
    shmrpc_wait_opts sleep_only;
    shmrpc_wait_opts_init(&sleep_only);
    sleep_only.mode = SHMRPC_WAIT_SLEEP;
    shmrpc__waiter w = {.opts = &sleep_only,
                        .check = change_also,
                        .check_arg = (void *)&next,
                        .check_ns = 200 * 1000000LL,
                        .sleeping = &asleep,
                        .sleeping_bit = 1,
                        .timer_ends = &timer_ends,
                        .also = &next,
                        .also_old = 0};
    assert_int_equal(shmrpc__wait_while(&f, 0, shmrpc__now_ns() + 2000000000LL, &w), 0);
    assert_int_equal(timer_ends, 0);
    assert_int_equal(atomic_load(&asleep), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(options_from_the_environment),
        cmocka_unit_test(deadlines_once_and_without_overflow),
        cmocka_unit_test(counts_stop_at_zero),
        cmocka_unit_test(waits_end_by_status),
        cmocka_unit_test(a_second_word_that_changes_before_the_sleep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
